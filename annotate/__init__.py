"""The Streamlit annotation app: sign-in, navigation by role, and one page per task (views/).

It owns what people see and click. It is a client of the PrefLab server over HTTP (client.py) and never
opens the database file, imports db/, serving/ or alignment/, or runs a model in the UI process.
"""
