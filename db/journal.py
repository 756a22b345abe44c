"""The server's journal of acknowledged submits (`<database>.submits`), read back into DuckDB.

    from db import journal
    journal.replay(store)          # what a killed server acknowledged and did not store: stored now

The server (serving/api/queue_front.py) answers an annotator's submit once it is a line of this file, fsynced,
and stores it right behind. A server that is killed leaves lines that may not be in the database yet:
`preflab server` and every CLI command that opens the database file store them first (serving/cli/root.py), so
nothing acknowledged is missing from what they read. Storing is idempotent (queue.apply_reserved skips a
ranking id already there). A line the database refuses is kept, with the reason, in
`<database>.submits.failed.jsonl`, never dropped.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from db import queue
from db.store import Store

log = logging.getLogger(__name__)


def path_of(store: Store) -> Path | None:
    """The journal next to the database file (None for an in-memory database)."""
    return None if store.path in (":memory:", "") else Path(store.path + ".submits")


def store_record(store: Store, record: dict) -> tuple[bool, bool]:
    """Store one journaled submit: (stored now, its handed-out lease renewed). Keeps it in the failed file and
    returns (False, False) if the database refuses it."""
    try:
        return queue.apply_reserved(store, **step_of(record)[1])
    except Exception as e:  # the submit was acknowledged: keep it whatever went wrong
        refused(store, record, e)
        return False, False


def step_of(record: dict) -> tuple[str, dict]:
    """A journaled submit as a step of queue.apply_batch (the server's group commit)."""
    extend = record.get("extend")
    args = {
        "user_id": record["user_id"],
        "assignment_id": record["assignment_id"],
        "ranking_id": record["ranking_id"],
        "now": datetime.fromisoformat(record["at"]),
        "created_by": record["created_by"],
        "fields": record["fields"],
        "extend": (extend[0], datetime.fromisoformat(extend[1])) if extend else None,
    }
    return "reserved", args


def refused(store: Store, record: dict, error: Exception) -> None:
    """A journaled submit the database refused: logged and kept in the failed file, never dropped."""
    log.error("could not store the acknowledged submit %s: %s", record.get("ranking_id"), error)
    keep_failed(store, record, f"{type(error).__name__}: {error}")


def write_line(f, record: dict) -> None:
    """Append `record` to the binary file `f` as one JSON line, flushed and fsynced: on disk when this returns."""
    f.write((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
    f.flush()
    os.fsync(f.fileno())


def open_private(path: Path | str, mode: str = "ab"):
    """Open `path` in binary `mode`, created 0600 (owner only) when new: submits carry annotators' comments."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def keep_failed(store: Store, record: dict, reason: str) -> None:
    path = Path(f"{path_of(store) or 'preflab.submits'}.failed.jsonl")
    with open_private(path) as f:
        write_line(f, {"reason": reason, "submit": record})


def replay(store: Store) -> int:
    """Store what a stopped server acknowledged, then empty the journal; how many were stored now."""
    path = path_of(store)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return 0
    lines = path.read_bytes().split(b"\n")
    stored = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if number == len(lines):  # cut off mid-write by the kill: never acknowledged
                log.warning("%s line %d: an unfinished last line (never acknowledged); dropped", path, number)
            else:
                keep_failed(store, {"line": number, "raw": raw.decode("utf-8", "replace")}, "unreadable line")
            continue
        stored += store_record(store, record)[0]
    with open_private(path, "wb") as f:
        os.fsync(f.fileno())
    if stored:
        log.warning("stored %d acknowledged submit(s) from %s left by a server that stopped", stored, path)
    return stored
