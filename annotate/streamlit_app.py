"""Streamlit's entry script for PrefLab: `preflab ui` runs `streamlit run annotate/streamlit_app.py`.

The app itself is annotate/app.py (imported, so tests and pages share one module); the pages are the scripts
in annotate/views/, which st.navigation shows by role.
"""

from annotate.app import main

main()
