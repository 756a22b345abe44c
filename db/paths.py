"""Where PrefLab keeps its local state (engine registry, run folders, server state, RAG indexes)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """PREFLAB_HOME, default ./.preflab; created on first use."""
    path = Path(os.environ.get("PREFLAB_HOME", ".preflab")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
