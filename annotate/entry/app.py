"""Streamlit's entry script for PrefLab (`preflab ui` runs this file; the app itself is annotate/app.py).

It sits in its own folder on purpose: Streamlit turns a `pages/` folder beside the entry script into an
old-style multipage app and would serve every file in annotate/pages/ by URL, to anyone, bypassing the
role-based navigation.
"""

from annotate.app import main

main()
