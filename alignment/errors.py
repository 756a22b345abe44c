"""Errors a user can cause when configuring or launching training. The CLI prints them as one line."""

from __future__ import annotations

from db.errors import PrefLabError


class ConfigError(PrefLabError):
    """A training config is wrong: names the key and says how to fix it. Raised before any model loads."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key, self.source, self.reason = key, source, message
        where = f"{source}: " if source else ""
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}{what}{message}")


class DataError(PrefLabError):
    """A snapshot file cannot be used for this stage (missing columns, empty, unreadable)."""
