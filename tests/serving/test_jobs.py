"""The one job runner (serving/jobs.py): start, cancel, restart recovery and shutdown, for sampling jobs, training
runs and loops alike; a stopping server leaves no job thread and no training process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from db import runs, sampling
from db.errors import ConflictError
from serving.jobs import JOIN_MARGIN_S, JobRunner, stop_process


def test_runner_cancels_and_forgets_a_thread_and_refuses_a_second_job_with_one_key():
    runner = JobRunner()
    started = threading.Event()

    def work(job):
        started.set()
        job.cancel.wait(10)

    job = runner.start_thread("t", 1, work)
    assert started.wait(5) and job.thread.name == "t-1"
    with pytest.raises(ConflictError, match="t 1 is already running"):
        runner.start_thread("t", 1, work)
    assert runner.cancel("t", 1) and job.wait(5)
    assert runner.jobs() == [] and not runner.cancel("t", 1)


def test_shutdown_kills_a_process_that_ignores_sigterm_and_records_its_end_then_starts_nothing():
    runner = JobRunner()
    ended = []
    code = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('ready', flush=True); time.sleep(9)"

    def launch():
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)

    job = runner.start_process("p", 1, launch, lambda exit_code, cancelled: ended.append((exit_code, cancelled)))
    assert job.proc.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
    t0 = time.monotonic()
    runner.shutdown(timeout=1.0)
    assert time.monotonic() - t0 < 1.0 + JOIN_MARGIN_S
    assert ended == [(-signal.SIGKILL, True)]  # SIGTERM first, SIGKILL after the timeout; the end was recorded
    assert not job.alive and job.proc.poll() is not None and runner.jobs() == []
    with pytest.raises(ConflictError, match="shutting down"):
        runner.start_thread("t", 2, lambda job: None)
    runner.shutdown()  # idempotent


def test_stopping_a_process_that_has_ended_sends_no_signal(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    sent = []
    monkeypatch.setattr(os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    stop_process(proc, 0.1)  # its pid may belong to another process by now
    assert sent == []


def test_work_refused_while_the_server_shuts_down_is_recorded_as_failed_not_left_waiting(store, tmp_path):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.api.deps import ApiError
    from serving.api.sampling import SamplingJobIn

    store.ensure_dataset("qs", created_by="test")
    run_id = runs.create_run(store, stage="sft", run_dir=str(tmp_path / "r"), base="b", parent=None,
                             snapshot_id=None, config={}, created_by="test")  # fmt: skip
    with TestClient(create_app(store)) as c:
        app = c.app
        app.state.runner.shutdown()
        with pytest.raises(ApiError) as refused:
            app.state.jobs.start(SamplingJobIn(dataset="qs", model="m"), "adm")
        assert refused.value.status_code == 503
        with pytest.raises(ApiError) as refused:
            app.state.runs.launch(run_id)
        assert refused.value.status_code == 503
    job = sampling.list_jobs(store, dataset="qs")[0]
    assert (job["status"], job["error"]) == ("failed", "the server is shutting down: no new background jobs")
    assert runs.get_run(store, run_id)["status"] == "failed"


def test_a_new_server_records_the_end_of_jobs_and_runs_a_stopped_one_left_running(store, tmp_path):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app

    store.ensure_dataset("qs", created_by="test")
    job_id = sampling.create_job(store, dataset="qs", model="m", engine=None, params={}, created_by="test")
    sampling.update_job(store, job_id, status="running")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    def run_row(pid: int) -> int:
        run_id = runs.create_run(store, stage="sft", run_dir=str(tmp_path / str(pid)), base="b", parent=None,
                                 snapshot_id=None, config={}, created_by="test")  # fmt: skip
        runs.mark_running(store, run_id, pid)
        return run_id

    lost, alive = run_row(gone.pid), run_row(os.getpid())  # a process nobody waits for, and one still going
    with TestClient(create_app(store)) as c:
        app = c.app
    job = sampling.get_job(store, job_id)
    assert (job["status"], job["error"]) == ("failed", "server restarted")
    assert runs.get_run(store, lost)["status"] == "failed"
    assert "server restarted" in runs.get_run(store, lost)["error"]
    assert runs.get_run(store, alive)["status"] == "running"  # e.g. `preflab train --background`: left alone
    assert app.state.runner.jobs() == [] and app.state.loops.loops == {}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_server_shutdown_stops_and_joins_sampling_jobs_training_runs_and_loops(
    store, run_cli, serve_app, tmp_path, tiny_model_dir, monkeypatch
):
    """A sampling job (a thread talking to a slow engine), a training run (a `python -m alignment` process) and a
    loop (a thread whose training run is a process of the same runner) are all running when the server stops: all
    are cancelled, every thread is joined, every process has exited, and each end is recorded."""
    from fastapi.testclient import TestClient

    from db.export import export
    from serving.api.app import create_app
    from serving.loop import Loop
    from serving.loop.training import train_policy
    from tests.serving.test_sampler import ScriptedEngine, _reply
    from tests.support.data import add_prompts, add_user, signed_in
    from tests.support.training import FAST, seed_rankings

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    seed_rankings(store)
    add_prompts(store, "qs", [f"question {i}" for i in range(20)])
    add_user(store, "adm", "admin")

    def slow(body, attempt):
        time.sleep(1.0)
        return _reply(["a", "b"])

    engine = serve_app(ScriptedEngine(slow).app)
    assert run_cli("engine", "add", "ext", engine.url).exit_code == 0
    snap = export(store, "trl", tmp_path / "snap.jsonl", dataset="prefs")

    def one_training_run(self, r, prompts, heldout, policy):  # a real loop round also starts an engine: not here
        self._step("train", self.cfg.method)
        train_policy(self.store, self.runner, self.cfg, snap={"path": str(snap.path), "snapshot_id": snap.snapshot_id,
                     "dataset": "prefs"}, parent_path=None, round_dir=self.out / "round-1", child="stop-r1-dpo",
                     cancel=self.cancel, step=lambda detail: self._step("train", detail))  # fmt: skip
        raise AssertionError("the server stopped: this training cannot have finished")

    monkeypatch.setattr(Loop, "_round", one_training_run)
    app = create_app(store)
    try:
        with TestClient(app) as c:
            h = signed_in(c, "adm")
            run = c.post("/api/runs", headers=h, json={"stage": "dpo", "base": str(tiny_model_dir), "dataset": "prefs",
                         "threads": 1, "config": {**FAST, "max_steps": 400}})  # fmt: skip
            assert run.status_code == 201, run.text
            body = {"base_model": str(tiny_model_dir), "preset": "test", "name": "stop", "max_steps": 400}
            loop = c.post("/api/loop", headers=h, json=body)
            assert loop.status_code == 202, loop.text
            deadline = time.monotonic() + 120
            while len(app.state.runner.jobs("run")) < 2:
                assert time.monotonic() < deadline, c.get(f"/api/loop/{loop.json()['id']}", headers=h).json()
                time.sleep(0.1)
            job = c.post("/api/sampling-jobs", headers=h, json={"dataset": "qs", "model": "scripted", "engine": "ext",
                         "n": 2, "concurrency": 1})  # fmt: skip
            assert job.status_code == 201, job.text
            while sampling.get_job(store, job.json()["id"])["status"] != "running":
                assert time.monotonic() < deadline, "the sampling job did not start"
                time.sleep(0.05)
            jobs = app.state.runner.jobs()
            assert sorted(j.kind for j in jobs) == ["loop", "run", "run", "sampling"]
    finally:
        engine.stop()
    assert not [j for j in jobs if j.alive] and all(j.proc.poll() is not None for j in jobs if j.proc)
    assert app.state.runner.jobs() == []
    stopped = sampling.get_job(store, job.json()["id"])
    assert stopped["status"] == "cancelled" and stopped["prompts_done"] < 20, stopped
    rows = runs.list_runs(store)
    assert [(r["status"], r["pid"], r["created_by"]) for r in rows] == [
        ("cancelled", None, "preflab-loop"),
        ("cancelled", None, "adm"),
    ], rows
    entry = app.state.loops.get(loop.json()["id"])
    assert entry["status"] == "cancelled" and entry["loop"].state.step == "train", entry["error"]
