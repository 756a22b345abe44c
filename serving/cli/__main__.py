"""`python -m serving.cli ...` is `preflab ...` (for a checkout that is not the installed one, as bench/ runs)."""

from serving.cli import main

main()
