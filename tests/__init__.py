"""PrefLab's test suite. A package, so helpers import as `tests.support.<module>` from any test folder and a
test folder named like a product package (tests/db/) never shadows it; fixtures live in tests/conftest.py."""
