"""The server's group commit: many of its queue writes in one transaction (apply_batch), with the work they share
done once per batch instead of once per write.

Why (issue 18, docs/benchmarks.md): the writer behind the server's journaled submits stores a submit and leases
the user's next item ahead, ~20 statements, and on the shared 2-core machine each costs 1-7 ms whatever it does,
so the commit was the smaller part and the rate the writer keeps up with was set by the statements per job. A
batch therefore
- reads its dataset's state (k, settings, sync marks, the sequences' last ids, gold rate; the dearest statement)
  and the dataset's paused annotators once, and carries them from step to step, each step moving the marks it
  moves, so every step sees what it would see in a transaction of its own;
- looks up once which of its reserved ranking ids are stored already (a journal replayed twice);
- writes the ranking items and pairs of all its submits in one INSERT each, at the end: no step reads them;
- moves the dataset's ranking mark past the ranking ids its items ahead reserved once, at the end;
- renews the leases handed out with its submits in one UPDATE at the end, where a lease stays live for at least
  RENEW_SLACK beyond the present anyway (then every step in between judges it live either way; otherwise it is
  renewed at once).

    from db import queue
    results = queue.apply_batch(store, [("reserved", {...}), ("ahead", {...}), ("renew", {...})])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from db.queue import leases  # by module: a replaced leases._next_in_tx (tests) reaches every caller
from db.queue.state import _read_dataset, _user_leases
from db.queue.submits import _reserved_and_state
from db.store import Store

RENEW_SLACK = timedelta(seconds=60)  # far longer than a batch holds the lock (BATCH_MAX jobs: about a second)


@dataclass
class Batch:
    """What the steps of one batch share: the datasets' state, and the writes they leave to the end."""

    datasets: dict[int, dict] = field(default_factory=dict)  # dataset id -> state without a user's leases
    stored: set[int] = field(default_factory=set)  # reserved ranking ids already in the database
    rows: dict[str, list] = field(default_factory=lambda: {"items": [], "pairs": []})
    renewals: dict[int, datetime] = field(default_factory=dict)  # assignment id -> new expiry
    marks: dict[int, int] = field(default_factory=dict)  # dataset id -> the ranking mark its items ahead moved to

    def state(self, store: Store, dataset_id: int, live: list) -> dict:
        """The dataset's state as the steps so far left it, with a user's live leases (read once per batch)."""
        if dataset_id not in self.datasets:
            self.datasets[dataset_id] = _read_dataset(store, dataset_id)
        return dict(self.datasets[dataset_id], leases=live)

    def keep(self, state: dict) -> None:
        """Carry the marks a step moved (a fold-in, a reserved ranking id) to the steps after it."""
        shared = self.datasets.get(state["dataset_id"])
        if shared is not None:
            shared.update(mark=state["mark"], gmax=state["gmax"], rmax=state["rmax"])

    def defer_renewal(self, extend: tuple[int, datetime], live: list, present: datetime) -> bool:
        """Leave a lease's renewal to the end of the batch if it is live past the slack (then it is renewed: True)."""
        aid, until = extend
        expires_at = next((lease[3] for lease in live if lease[0] == aid), None)
        if expires_at is None or expires_at - present < RENEW_SLACK:
            return False
        self.renewals[aid] = until
        return True

    def flush(self, store: Store) -> None:
        """The writes left to the end, one statement each."""
        c, items, pairs = store.con, self.rows["items"], self.rows["pairs"]
        if items:
            c.execute(
                "INSERT INTO ranking_items (ranking_id, generation_id, rank, position) "
                "SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::INTEGER[]), unnest(?::INTEGER[])",
                [list(col) for col in zip(*items, strict=True)],
            )
        if pairs:
            c.execute(
                "INSERT INTO pairs (ranking_id, prompt_id, chosen_id, rejected_id, margin, is_tie, source) "
                "SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), "
                "unnest(?::INTEGER[]), unnest(?::BOOLEAN[]), 'human'",
                [list(col) for col in zip(*pairs, strict=True)],
            )
        for dataset_id, mark in self.marks.items():
            c.execute("UPDATE queue_sync SET ranking_mark = ? WHERE dataset_id = ?", [mark, dataset_id])
        if self.renewals:
            c.execute(
                "UPDATE assignments SET expires_at = v.e FROM (SELECT unnest(?::BIGINT[]) AS id, "
                "unnest(?::TIMESTAMP[]) AS e) v WHERE assignments.id = v.id AND assignments.status = 'leased'",
                [list(self.renewals), list(self.renewals.values())],
            )


def _open(store: Store, steps: list[tuple[str, dict]]) -> Batch:
    batch = Batch()
    ids = [args["ranking_id"] for kind, args in steps if kind == "reserved"]
    if ids:
        rows = store.con.execute("SELECT id FROM rankings WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])
        batch.stored = {r[0] for r in rows.fetchall()}
    return batch


class _StepFailed(Exception):
    def __init__(self, index: int, error: Exception):
        self.index, self.error = index, error


class _FlushFailed(Exception):
    pass


def _step(store: Store, step: tuple, carry: dict, batch: Batch | None = None) -> object:
    """Run one step; `carry` holds what a submit's state tells the same user's item ahead right after it."""
    kind, args = step
    state, carry["state"] = carry.pop("state", None), None
    if kind == "reserved":
        stored, renewed, state = _reserved_and_state(store, **args, batch=batch)
        if state is not None:
            carry["state"] = dict(state, user_id=args["user_id"])
            if batch is not None:
                batch.keep(state)
        return stored, renewed
    if kind == "ahead":
        mine = state is not None and state["user_id"] == args["user_id"] and state["dataset_id"] == args["dataset_id"]
        if not mine:
            state = None
            if batch is not None:
                state = batch.state(store, args["dataset_id"], _user_leases(store, args["user_id"], args["now"]))
        result = leases._ahead_in_tx(store, **args, state=state, mark_later=batch is not None)
        if batch is not None:
            batch.keep(state)
            if result[1] is not None:
                batch.marks[args["dataset_id"]] = result[1]
        return result
    if kind == "renew":
        return leases.renew(store, args["assignment_id"], args["expires_at"])
    if kind == "release":
        return leases.release(store, args["user_id"], args["assignment_id"])
    raise ValueError(f"unknown queue step {kind!r}")


def _alone(store: Store, step: tuple) -> tuple[object, Exception | None]:
    try:
        with store.transaction():
            return _step(store, step, {}), None
    except Exception as e:  # reported for this step alone
        return None, e


def apply_batch(store: Store, steps: list[tuple[str, dict]]) -> list[tuple[object, Exception | None]]:
    """Many of the server's queue writes, in order, in one transaction (one commit: a group commit); per step
    (result, None) or (None, the error it raised).

    Steps: ("reserved", apply_reserved's arguments) -> (stored, renewed); ("ahead", {dataset_id, user_id, current,
    now, lease_s, created_by}) -> (lease without its texts, reserved ranking id), texts and progress read after the
    commit with leases.ahead_progress; ("renew", {assignment_id, expires_at}) -> bool; ("release", {user_id,
    assignment_id}) -> bool. A step that fails leaves nothing, and the others are stored as if it had run alone:
    DuckDB has no savepoints and aborts a transaction on a failed statement, so the batch is rolled back and run
    again without it (each step sees what the ones before it wrote, as one transaction per step would). Should the
    writes left to the end fail, the batch runs again writing each step's rows as it goes, so the step at fault is
    found; should the commit itself fail, each step is run in a transaction of its own.
    """
    results: list[tuple[object, Exception | None]] = [(None, None)] * len(steps)
    pending = list(range(len(steps)))
    grouped = True
    while pending:
        out, carry = [], {}
        try:
            with store.transaction():
                batch = _open(store, [steps[i] for i in pending]) if grouped else None
                for i in pending:
                    try:
                        out.append(_step(store, steps[i], carry, batch))
                    except Exception as e:  # reported for this step alone
                        raise _StepFailed(i, e) from e
                if batch is not None:
                    try:
                        batch.flush(store)
                    except Exception as e:
                        raise _FlushFailed from e
        except _StepFailed as failed:
            results[failed.index] = (None, failed.error)
            pending.remove(failed.index)
            continue
        except _FlushFailed:
            grouped = False
            continue
        except Exception:  # the commit itself failed: one transaction per step, so each gets its own outcome
            for i in pending:
                results[i] = _alone(store, steps[i])
            return results
        for i, result in zip(pending, out, strict=True):
            results[i] = (result, None)
        pending = []
    return results
