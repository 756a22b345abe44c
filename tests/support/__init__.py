"""Plain helpers the tests share (data to seed, users to sign in, training rows), imported as
`tests.support.<module>`. Nothing here starts a server, engine or browser: those are fixtures in
tests/conftest.py, so that using one marks a test `slow`."""
