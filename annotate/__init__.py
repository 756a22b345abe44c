"""The Streamlit annotation app: a client of the PrefLab server over HTTP, never of the database file."""
