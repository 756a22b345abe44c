"""The annotation queue's front in server memory: a submit is acknowledged once it is in a journal on disk,
and written to DuckDB right behind the request.

    front = QueueFront(store, lease_s=600)       # replays the journal left by a killed server
    store.set_gate(front.drain)                   # every Store lock first waits for acknowledged submits
    fast = front.submit(user, assignment_id, fields)   # (ranking id, next lease, progress), or None: go to DuckDB

Why (issue 4, docs/benchmarks.md): on this kind of machine memory that sat idle for a fraction of a second is
slow to touch again, and a DuckDB statement after such a pause costs 20-50 ms whatever it does. Twenty annotators
who think for seconds leave the server idle between requests, so a submit that runs a transaction (13
statements) misses 100 ms at p95. The answer the annotator waits for needs no DuckDB statement at all:

- Every lease this server hands out is remembered (assignment id -> user, prompt, dataset, answer order,
  expiry). Right after handing one out, the writer thread leases the user's next item ahead
  (queue.lease_ahead): a second lease, on another prompt, with a ranking id reserved for the current item's
  submit, its texts and the progress as it will be after that submit, all kept in memory.
- POST /api/rankings for a remembered, live lease of the user's own, with an item ahead: validated in memory
  (queue.validate), appended to the journal and fsynced, then answered with the item ahead. The writer thread
  stores the ranking (under its reserved id and with the submit's own time), renews the handed-out lease and
  leases the next item ahead. It takes all the jobs queued (up to BATCH_MAX) at once and stores them in order in
  one transaction (queue.apply_batch, a group commit): with hundreds of annotators the jobs arrive faster than
  one transaction each can store them (issue 18, docs/benchmarks.md). A job the database refuses is reported
  on its own and the others are stored.
- Everything else goes straight to DuckDB: a lease this server did not hand out (after a restart), a lease
  within a minute of expiring, no item ahead (the queue's end), and every other route. Before it does, the
  Store's gate (Store.set_gate) waits until the writer has stored every submit acknowledged so far, so all
  reads and writes through the Store see them: k, one ranking per person and the leases stay DuckDB's rules.
- On start the journal is replayed (db.journal; the CLI does the same when it opens the file), and
  apply_reserved skips a ranking id already stored: a SIGKILL loses no acknowledged submit. A journaled
  submit the database refuses when it is written (a change behind the front's back, such as an import of a
  ranking of the same prompt by the same person) is kept with the reason in
  <database>.submits.failed.jsonl, never dropped, and logged.

The cost: an annotator holds two leases while working (the item and the one after it), so at the very end of
a queue a prompt can wait up to a lease for someone who stopped, as it already could for their current item.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from db import journal, queue
from db.errors import ConflictError
from db.store import Store

log = logging.getLogger(__name__)

MARGIN = timedelta(seconds=60)  # a lease closer than this to its expiry goes to DuckDB, which checks the slot
DRAIN_LOG_S = 30.0  # a wait for the writer this long is logged (and a dead writer restarted); it goes on waiting
COMPACT_BYTES = 1 << 20  # the journal is emptied when everything in it is stored and it has grown past this
_HELD_MAX = 20_000  # remembered leases before the done and expired ones are forgotten
BATCH_MAX = 64  # writer jobs per transaction (a group commit); bounds how long the Store lock is held


@dataclass
class Held:
    """A lease this server handed out."""

    user_id: int
    prompt_id: int
    dataset_id: int
    order: list[int]
    expires_at: datetime
    done: bool = False
    settings: dict | None = None  # the dataset's task, aspects and rationale mode the item was shown with


@dataclass
class Ahead:
    """The next item of one user in one dataset, leased and read before they ask for it."""

    lease: dict
    progress: dict
    ranking_id: int  # reserved for the submit of the user's current item


class QueueFront:
    def __init__(self, store: Store, *, lease_s: int = queue.DEFAULT_LEASE_S):
        self.store, self.lease_s = store, lease_s
        self.path = journal.path_of(store)
        self._lock = threading.Lock()  # the maps and the journal file; never held while waiting for the Store
        self._held: dict[int, Held] = {}
        self._ahead: dict[tuple[int, int], Ahead] = {}
        self._making: set[tuple[int, int]] = set()  # (user, dataset) with an item ahead being leased
        self._epoch: dict[int, int] = {}  # per dataset, bumped by reclaim: an item ahead leased before is let go
        self._cv = threading.Condition()  # the writer's jobs; taken after _lock when both are needed
        self._jobs: deque = deque()
        self._queued = self._done = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._reader: Store | None = None
        self._journaled = 0
        self._job_ms: deque[float] = deque(maxlen=1000)  # the writer's last batches, for stats()
        self._batch_sizes: deque[int] = deque(maxlen=1000)
        self.replayed = journal.replay(store)
        self._file = journal.open_private(self.path) if self.path else None  # open for the server's life

    # ---- the fast path -----------------------------------------------------------------------------

    def submit(self, user: dict, assignment_id: int, fields: dict) -> tuple[int, dict, dict] | None:
        """(ranking id, next lease, progress) once the submit is in the journal; None where DuckDB must decide.

        InputError for fields that do not fit the assignment (nothing is written then)."""
        for _ in range(2):
            now = datetime.now()
            with self._lock:
                held = self._held.get(assignment_id)
                mine = held is not None and held.user_id == user["id"] and not held.done
                if self._closed or not mine or held.expires_at - now < MARGIN:
                    return None
                key = (user["id"], held.dataset_id)
                ahead = self._ahead.get(key)
                if ahead is not None:
                    return self._accept(user, assignment_id, held, key, ahead, fields, now)
                waiting = key in self._making
            if not waiting or not self._wait_for_ahead(key):
                return None
        return None

    def _accept(self, user: dict, aid: int, held: Held, key: tuple, ahead: Ahead, fields: dict, now: datetime):
        if ahead.lease["expires_at"] - now < MARGIN:
            del self._ahead[key]  # DuckDB hands it out as the user's live lease, or recycles it
            return None
        settings = held.settings or {}
        queue.validate(
            fields["status"],
            fields.get("ranks"),
            held.order,
            fields.get("skip_reason"),
            fields.get("flag_reason"),
            fields.get("comment"),
            task=settings.get("task", "rank"),
        )
        # ratings, rationale and thumbs travel in `fields`, so the journal holds them: a crash loses none
        queue.validate_feedback(fields["status"], fields, held.order, settings)
        lease = dict(ahead.lease, expires_at=now + timedelta(seconds=self.lease_s))
        record = {
            "ranking_id": ahead.ranking_id,
            "assignment_id": aid,
            "user_id": user["id"],
            "dataset_id": held.dataset_id,
            "created_by": user["name"],
            "at": now.isoformat(),
            "fields": fields,
            "extend": [lease["assignment_id"], lease["expires_at"].isoformat()],
        }
        self._append(record)  # raises before anything changes if the disk refuses
        self._journaled += 1
        held.done = True
        del self._ahead[key]
        self._remember(lease, user["id"])
        self._making.add(key)  # the writer leases the next one after storing this
        self._enqueue(("apply", record))
        return ahead.ranking_id, lease, ahead.progress

    def _wait_for_ahead(self, key: tuple) -> bool:
        """Wait (outside the lock) for the writer to finish leasing this user's item ahead; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: key not in self._making, timeout=5.0)

    # ---- what the DuckDB path tells the front ---------------------------------------------------------

    def forget(self, assignment_id: int, user_id: int) -> Held | None:
        """Before DuckDB handles a submit or release of this assignment: 409 if it was submitted here already.
        Returns what was remembered of it (None if nothing)."""
        with self._lock:
            held = self._held.get(assignment_id)
            if held is None or held.user_id != user_id:
                return None
            del self._held[assignment_id]
            if held.done:
                raise ConflictError(f"assignment {assignment_id} was already submitted")
            return held

    def stats(self) -> dict:
        """Submits acknowledged from the journal, the writer's backlog, its recent batch times (one transaction each)
        and how many jobs its batches held (GET /api/health)."""
        times, sizes = sorted(self._job_ms), list(self._batch_sizes)
        return {
            "journaled": self._journaled,
            "writer_jobs": self._done,
            "writer_behind": self._queued - self._done,
            "writer_p50_ms": round(times[len(times) // 2], 1) if times else None,
            "writer_p95_ms": round(times[int(len(times) * 0.95)], 1) if times else None,
            "writer_batch_mean": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "writer_batch_max": max(sizes) if sizes else None,
        }

    def release_ahead(self, user_id: int, dataset_id: int) -> None:
        """Give back the user's item ahead in this dataset (with the lease it followed)."""
        with self._lock:
            ahead = self._ahead.pop((user_id, dataset_id), None)
            if ahead is not None:
                self._enqueue(("release", user_id, ahead.lease["assignment_id"]))

    def reclaim(self, dataset_id: int) -> int:
        """Give back every item leased ahead in this dataset, which nobody has seen yet; how many. For the end
        of a queue, where the items held ahead are the last free ones, and after a change of k or guidelines,
        which they were leased under (one being leased right now is let go too). The releases are writer jobs
        queued under the lock, so whoever uses the Store next sees them (the gate)."""
        with self._lock:
            self._epoch[dataset_id] = self._epoch.get(dataset_id, 0) + 1
            keys = [key for key in self._ahead if key[1] == dataset_id]
            for key in keys:
                self._enqueue(("release", key[0], self._ahead.pop(key).lease["assignment_id"]))
            return len(keys)

    def settings_changed(self, dataset_id: int) -> None:
        """After a change of the dataset's task, aspects or rationale mode: the items ahead were leased under the old
        settings (reclaim), and the leases remembered here would be checked against them, so their submits go to
        DuckDB, which checks against the new ones."""
        self.reclaim(dataset_id)
        with self._lock:
            for aid in [a for a, h in self._held.items() if h.dataset_id == dataset_id and not h.done]:
                del self._held[aid]

    def handed_out(self, lease: dict | None, user: dict) -> None:
        """After DuckDB gave `user` this lease: remember it, and lease their next item ahead if none is."""
        if lease is None:
            return
        key, aid = (user["id"], lease["dataset_id"]), lease["assignment_id"]
        with self._lock:
            if self._closed:
                return
            ahead = self._ahead.get(key)
            if ahead is not None and ahead.lease["assignment_id"] == aid:
                # DuckDB handed out the item ahead itself (the user's lowest live lease): it is new to the user,
                # so it gets a whole lease from now, as the fast path gives
                del self._ahead[key]
                ahead = None
                lease["expires_at"] = datetime.now() + timedelta(seconds=self.lease_s)
                self._enqueue(("renew", aid, lease["expires_at"]))
            held = self._held.get(aid)
            if held is None or not held.done:  # a submit journaled meanwhile stays submitted
                self._remember(lease, user["id"])
            if ahead is None and key not in self._making:
                self._making.add(key)
                self._enqueue(("ahead", user["id"], lease["dataset_id"], user["name"], aid))

    def _remember(self, lease: dict, user_id: int) -> None:
        if len(self._held) >= _HELD_MAX:
            now = datetime.now()
            self._held = {a: h for a, h in self._held.items() if not h.done and h.expires_at > now}
        settings = {key: lease.get(key) for key in ("task", "aspects", "rationale")}
        self._held[lease["assignment_id"]] = Held(
            user_id,
            lease["prompt_id"],
            lease["dataset_id"],
            list(lease["answer_order"]),
            lease["expires_at"],
            settings=settings,
        )

    # ---- the journal ----------------------------------------------------------------------------------

    def _append(self, record: dict) -> None:
        if self._file is not None:
            journal.write_line(self._file, record)

    def _lapsed(self, assignment_id: int) -> None:
        """A lease handed out lapsed before it was renewed: its submit goes to DuckDB's checks."""
        with self._lock:
            self._held.pop(assignment_id, None)

    def _compact(self, at_least: int = COMPACT_BYTES) -> None:
        """Empty the journal once all of it is stored and it holds `at_least` bytes (it only grows otherwise)."""
        if self._file is None or self._file.tell() < at_least:
            return
        with self._lock, self._cv:
            if self._done == self._queued:
                self._file.truncate(0)
                self._file.seek(0)
                os.fsync(self._file.fileno())

    # ---- the writer thread ------------------------------------------------------------------------------

    def _enqueue(self, job: tuple) -> None:
        with self._cv:
            self._jobs.append(job)
            self._queued += 1
            self._start_writer()
            self._cv.notify_all()

    def _start_writer(self) -> None:
        """(Re)start the writer thread if it is not running; called with _cv held."""
        if self._thread is None or not self._thread.is_alive():
            if self._thread is not None:
                log.error("the queue writer thread had stopped; starting a new one")
            self._thread = threading.Thread(target=self._run, name="preflab-queue-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._jobs or self._closed)
                if not self._jobs:
                    return
                batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), BATCH_MAX))]
            t0 = time.perf_counter()
            try:
                self._do(batch)
            except Exception:  # a batch must never stop the writer
                log.exception("queue writer batch of %d job(s) failed", len(batch))
            finally:
                self._job_ms.append((time.perf_counter() - t0) * 1000)
                self._batch_sizes.append(len(batch))
                with self._cv:
                    self._done += len(batch)
                    self._cv.notify_all()
            try:
                self._compact()
            except OSError:
                log.exception("could not empty the journal %s; it is replayed (harmlessly) on start", self.path)

    def _do(self, batch: list[tuple]) -> None:
        """Everything queued, in order, in one transaction (queue.apply_batch): a submit's ranking and renewal, the
        user's next item ahead, releases and renewals. A step the database refuses is reported on its own: a
        journaled submit goes to the failed file, the others are stored."""
        if self._reader is None:
            self._reader = self.store.cursor()
        now = datetime.now()
        steps, owners, aheads = self._steps(batch, now)
        try:
            made = []
            for (what, subject), (result, error) in zip(owners, queue.apply_batch(self.store, steps), strict=True):
                if what == "stored":  # a refused submit is kept in the failed file, never dropped
                    if error is not None:
                        journal.refused(self.store, subject, error)
                    if (error is not None or not result[1]) and subject.get("extend"):
                        self._lapsed(subject["extend"][0])  # its next submit goes to DuckDB's checks
                elif what == "renewed" and not result:
                    self._lapsed(subject)
                elif what == "ahead" and error is None and result[0] is not None:
                    try:  # its texts and the progress shown with it, off the Store lock
                        progress = queue.ahead_progress(self._reader, result[0], subject[1], subject[0], now)
                        made.append((subject, result, progress))
                    except Exception:
                        log.exception("could not read the item leased ahead of user %d", subject[0])
                        made.append((subject, result, None))
                elif error is not None:
                    log.error("queue writer: %s %s failed: %s", what, subject, error)
            with self._lock:
                for key, (lease, ranking_id), progress in made:
                    if key not in self._ahead and self._epoch.get(key[1], 0) == aheads[key] and progress is not None:
                        self._ahead[key] = Ahead(lease, progress, ranking_id)
                    else:  # reclaimed while it was being leased, or a second one: give it back
                        self._enqueue(("release", key[0], lease["assignment_id"]))
        finally:  # whatever happened, these users' submits stop waiting for an item ahead
            with self._lock, self._cv:
                self._making.difference_update(aheads)
                self._cv.notify_all()

    def _steps(self, batch: list[tuple], now: datetime) -> tuple[list, list, dict]:
        """(queue.apply_batch steps, what each is for, {(user, dataset): epoch} of the items ahead asked for)."""
        steps: list[tuple[str, dict]] = []
        owners: list[tuple] = []
        aheads: dict[tuple[int, int], int] = {}
        for job in batch:
            if job[0] == "apply":
                record = job[1]
                steps.append(journal.step_of(record))
                owners.append(("stored", record))
                job = ("ahead", record["user_id"], record["dataset_id"], record["created_by"], record["extend"][0])
            if job[0] == "renew":
                steps.append(("renew", {"assignment_id": job[1], "expires_at": job[2]}))
                owners.append(("renewed", job[1]))
            elif job[0] == "release":
                steps.append(("release", {"user_id": job[1], "assignment_id": job[2]}))
                owners.append(("release", job[2]))
            else:
                user_id, dataset_id, created_by, current = job[1:]
                key = (user_id, dataset_id)
                with self._lock:
                    ready = key in self._ahead or key in aheads  # asked twice; the first one stands
                    aheads.setdefault(key, self._epoch.get(dataset_id, 0))
                if not ready:
                    args = {"dataset_id": dataset_id, "user_id": user_id, "current": current, "now": now}
                    steps.append(("ahead", {**args, "lease_s": self.lease_s, "created_by": created_by}))
                    owners.append(("ahead", key))
        return steps, owners, aheads

    def drain(self) -> None:
        """Wait until every submit acknowledged so far is stored (the Store's gate); a no-op on the writer."""
        if threading.current_thread() is self._thread:
            return
        with self._cv:
            target = self._queued
            while not self._cv.wait_for(lambda: self._done >= target, timeout=DRAIN_LOG_S):
                log.warning("waiting for the queue writer: %d job(s) behind", target - self._done)
                self._start_writer()

    def close(self) -> None:
        """Store what is queued, stop the writer, empty the journal. Later submits go to DuckDB."""
        with self._lock, self._cv:
            if self._closed:
                return
            self._closed = True  # no new jobs from here on; the writer stops once the queue is empty
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._reader is not None:
            self._reader.close()
        if self._file is not None:
            self._compact(at_least=0)
            self._file.close()
            self._file = None
