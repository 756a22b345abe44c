"""The one job runner: background work of the server (sampling jobs, training runs, loops) and of `preflab loop`.

    runner = JobRunner()
    runner.start_thread("sampling", 7, work)                  # work(job) runs in a thread; job.cancel is its Event
    runner.start_process("run", 3, launch, on_exit)           # launch() -> Popen; a watcher thread waits for it
    runner.cancel("sampling", 7)                              # sets the Event; a process also gets SIGTERM
    runner.shutdown()                                         # cancel everything, stop processes, join every thread

A job is named by its kind and key (the id of its row or loop). Each kind is a `JobKind` (serving.api.sampling,
serving.api.runs, serving.api.loops) over one runner: it knows how to start its work, where its progress is kept
(a sampling_jobs row, a run's metrics.jsonl, a loop's state), and what a restart left behind (`recover`). A
training run is a subprocess (`start_run`: alignment.launch.start_job, then alignment.launch.record_end when it
ends), so the server, the CLI and the loop start and record runs the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from db import runs
from db.errors import ConflictError

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 30.0  # a cancelled training job saves a checkpoint; SIGKILL only if it takes longer than this
JOIN_MARGIN_S = 5.0  # after the grace period: time for a killed job's watcher to record its end


class ShuttingDownError(ConflictError):
    """The runner is stopping with its server: it starts nothing more."""


@dataclass(eq=False)
class Job:
    """One piece of background work: a thread, or a subprocess with the thread that waits for it."""

    kind: str
    key: int
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None
    grace: float = CANCEL_GRACE_S

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the work (and, for a process, the recording of its end) is over; True when it is."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.alive


class JobRunner:
    """Starts, cancels and joins background jobs; after `shutdown` it starts nothing more."""

    def __init__(self):
        self._jobs: dict[tuple[str, int], Job] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _claim(self, kind: str, key: int) -> None:
        if self._closed:
            raise ShuttingDownError("the server is shutting down: no new background jobs")
        if (kind, key) in self._jobs:
            raise ConflictError(f"{kind} {key} is already running")

    def start_thread(
        self, kind: str, key: int, work: Callable[[Job], None], *, cancel: threading.Event | None = None
    ) -> Job:
        """Run `work(job)` in a daemon thread named KIND-KEY; `job.cancel` (or the given Event) asks it to stop.
        An exception in `work` is logged (the kind records failures where its progress lives)."""
        with self._lock:
            self._claim(kind, key)
            job = Job(kind, key, cancel=cancel or threading.Event())
            job.thread = threading.Thread(target=self._run, args=(job, work), name=f"{kind}-{key}", daemon=True)
            self._jobs[(kind, key)] = job
            job.thread.start()
        return job

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        try:
            work(job)
        except Exception:  # a background job must never take the server down
            log.exception("%s %s failed", job.kind, job.key)
        finally:
            self._forget(job)

    def start_process(
        self,
        kind: str,
        key: int,
        launch: Callable[[], subprocess.Popen],
        on_exit: Callable[[int, bool], None],
        *,
        grace: float = CANCEL_GRACE_S,
    ) -> Job:
        """Start a subprocess with `launch()` and a thread that waits for it, then calls `on_exit(exit_code,
        cancelled)`. `launch` runs under the runner's lock, so one key never has two processes; whatever it records
        about the start (a pid) is recorded before `on_exit` can run."""
        with self._lock:
            self._claim(kind, key)
            job = Job(kind, key, proc=launch(), grace=grace)
            job.thread = threading.Thread(target=self._watch, args=(job, on_exit), name=f"{kind}-{key}", daemon=True)
            self._jobs[(kind, key)] = job
            job.thread.start()
        return job

    def _watch(self, job: Job, on_exit: Callable[[int, bool], None]) -> None:
        code = job.proc.wait()
        try:
            on_exit(code, job.cancel.is_set())
        except Exception:  # a watcher must never take the server down
            log.exception("recording the end of %s %s failed", job.kind, job.key)
        finally:
            self._forget(job)

    def _forget(self, job: Job) -> None:
        with self._lock:
            if self._jobs.get((job.kind, job.key)) is job:
                del self._jobs[(job.kind, job.key)]

    def get(self, kind: str, key: int) -> Job | None:
        with self._lock:
            return self._jobs.get((kind, key))

    def jobs(self, kind: str | None = None) -> list[Job]:
        """The jobs running now (of one kind, or all)."""
        with self._lock:
            return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def cancel(self, kind: str, key: int) -> bool:
        """Ask a running job to stop: its Event is set, and a process gets SIGTERM (SIGKILL after its grace
        period). False when no such job runs. A second cancel of one job changes nothing."""
        job = self.get(kind, key)
        if job is None:
            return False
        self._stop(job, job.grace)
        return True

    def _stop(self, job: Job, grace: float) -> None:
        with self._lock:
            first = not job.cancel.is_set()
            job.cancel.set()
        if first and job.proc is not None:
            stop_process(job.proc, grace)

    def shutdown(self, timeout: float = CANCEL_GRACE_S) -> None:
        """Cancel every job and wait for all of them: processes get SIGTERM, then SIGKILL after `timeout` s; a
        thread still running after `timeout` + JOIN_MARGIN_S s is logged and left (it is a daemon). Idempotent."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            self._stop(job, min(job.grace, timeout))
        deadline = time.monotonic() + timeout + JOIN_MARGIN_S
        for job in jobs:
            if not job.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s %s did not stop within %.0f s", job.kind, job.key, timeout + JOIN_MARGIN_S)


class JobKind:
    """One kind of background job over the shared runner (subclasses: sampling jobs, training runs, loops).
    Creating one recovers what a previous server left recorded as running."""

    kind = "job"

    def __init__(self, store, runner: JobRunner):
        self.store, self.runner = store, runner
        self.recover()

    def recover(self) -> None:
        """Record the end of work a previous server left marked as running (nothing, for a kind kept in memory)."""

    @property
    def threads(self) -> dict[int, threading.Thread]:
        """The thread of each running job of this kind (for a process: the thread that waits for it)."""
        return {job.key: job.thread for job in self.runner.jobs(self.kind)}

    def cancel(self, key: int) -> bool:
        return self.runner.cancel(self.kind, key)


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group now (a training job saves a checkpoint and exits); SIGKILL if it is still alive
    after `grace` s. Returns at once; the caller waits for the process if it needs to. A process that has ended
    already is left alone: its pid may have been given to another process since."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()

    def _kill_later():
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    threading.Thread(target=_kill_later, name=f"kill-{proc.pid}", daemon=True).start()


def start_run(runner: JobRunner, store, run_id: int, *, resume: bool = False) -> Job:
    """Start the training job of a recorded run under the runner (alignment.launch.start_job: `python -m alignment`,
    or `accelerate launch` when the run's config asks for several processes or an accelerate config file):
    the row becomes running with the job's pid, and when the process ends alignment.launch.record_end records how
    (finished + adapter registered, cancelled, or failed with the log's tail); a finished run's adapter is then
    loaded into the running engines on its base that asked for it (adapters.load_finished_run). ConflictError
    if it runs already."""
    from alignment.launch import record_end, start_job

    row = runs.get_run(store, run_id)

    def launch() -> subprocess.Popen:
        proc = start_job(row["run_dir"], row["stage"], resume=resume, threads=(row["config"] or {}).get("threads"))
        runs.mark_running(store, run_id, proc.pid)
        return proc

    def on_exit(code: int, cancelled: bool) -> None:
        if record_end(store, runs.get_run(store, run_id), cancelled=cancelled, exit_code=code) == "finished":
            from serving.engines.adapters import load_finished_run

            load_finished_run(store, run_id)  # into engines started with --load-finished-runs on its base

    return runner.start_process("run", run_id, launch, on_exit)
