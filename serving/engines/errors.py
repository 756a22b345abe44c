"""Engine errors a user can cause or meet (a dead engine, an unknown model, a start that failed)."""

from __future__ import annotations

from db.errors import NotFoundError, PrefLabError


class EngineError(PrefLabError):
    """An engine could not be started, stopped or reached; the message says which and why."""


class ModelNotFoundError(NotFoundError):
    """No registered engine serves the requested model name."""
