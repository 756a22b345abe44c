"""The assignment queue: who ranks which prompt next, under a lease, at most k annotators per prompt.

The package owns the queue's rules and its writes, one module each, listed so that each imports only
those before it: `rules` (what a submit must satisfy, no SQL), `state` (the open-prompt bookkeeping in
queue_open and queue_sync), `leases` (the next item, leases and progress), `submits` (a ranking with its
items and pairs), `batch` (the server's group commit of many such writes); `settings` (a dataset's k and
guidelines) stands alone. Every call takes a Store and runs under its lock in one transaction; the package
never holds anything in memory between calls, never answers from memory (serving.api.queue_front does,
through lease_ahead and apply_reserved) and never speaks HTTP.

    from db import queue
    lease = queue.next_assignment(store, dataset_id, user_id)       # None when nothing is left
    ranking_id = queue.submit(store, user_id, lease["assignment_id"], status="submitted", ranks={...})
    ranking_id, lease, progress = queue.submit_and_next(store, user_id, aid, status=..., ranks=...)  # the server
"""

from db.queue.batch import apply_batch
from db.queue.leases import (
    DEFAULT_LEASE_S,
    FRONT,
    ahead_progress,
    lease_ahead,
    next_assignment,
    next_item,
    progress,
    release,
    renew,
)
from db.queue.rules import (
    COUNTED_SOURCES,
    MAX_TEXT,
    STATUSES,
    dense_ranks,
    parse_ranks,
    ranking_pairs,
    validate,
    validate_feedback,
)
from db.queue.settings import dataset_of_ranking, get_dataset, update_dataset
from db.queue.state import invalidate, sync
from db.queue.submits import apply_reserved, submit, submit_and_next, write_feedback, write_items

__all__ = [
    "COUNTED_SOURCES",
    "DEFAULT_LEASE_S",
    "FRONT",
    "MAX_TEXT",
    "STATUSES",
    "ahead_progress",
    "apply_batch",
    "apply_reserved",
    "dataset_of_ranking",
    "dense_ranks",
    "get_dataset",
    "invalidate",
    "lease_ahead",
    "next_assignment",
    "next_item",
    "parse_ranks",
    "progress",
    "ranking_pairs",
    "release",
    "renew",
    "submit",
    "submit_and_next",
    "write_feedback",
    "sync",
    "update_dataset",
    "validate",
    "validate_feedback",
    "write_items",
]
