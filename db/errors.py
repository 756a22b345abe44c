"""Errors a user can cause in the data layer. The CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


class PrefLabError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class InputError(PrefLabError):
    """Bad input, located as precisely as we can: file, line (1-based) and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        field_part = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{field_part}{message}")


class NotFoundError(PrefLabError):
    """A named thing (dataset, user, model, run) does not exist."""


class ConflictError(PrefLabError):
    """The request contradicts what is stored (a second ranking of one prompt by one person, ...)."""


class ForbiddenError(PrefLabError):
    """The user may not do this now (a reviewer paused their work, ...)."""


class LimitError(PrefLabError):
    """The user reached a limit on how much they may do (arena votes a day, ...); HTTP 429."""
