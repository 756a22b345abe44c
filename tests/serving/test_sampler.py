"""The sampler's bookkeeping against a scripted OpenAI-compatible endpoint (registered as an external engine).

The endpoint is a small FastAPI app on a random local port whose answers the test chooses, so duplicates,
empty answers, 5xx/429/4xx and resuming can be checked exactly. Real engines: tests/serving/test_engines.py and
tests/serving/test_vllm_engine.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from db import sampling
from serving.engines.launcher import free_port
from tests.support.data import add_prompts

PROMPTS = ["¿Qué es la luz?", "解释一下重力", "Tell me a joke 🃏"]


class ScriptedEngine:
    """An OpenAI-compatible app that answers chat requests from `script(body, attempt) -> (status, json)` and
    records every request; the `scripted` fixture serves it on a free port (`url`)."""

    def __init__(self, script):
        self.script, self.requests, self.url = script, [], ""
        self.app = FastAPI()

        @self.app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "scripted", "object": "model"}]}

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append(body)
            status, payload = self.script(body, len(self.requests))
            return JSONResponse(status_code=status, content=payload)


def _reply(texts, usage=True):
    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
               for i, t in enumerate(texts)]  # fmt: skip
    data = {"id": "x", "object": "chat.completion", "choices": choices}
    if usage:
        data["usage"] = {"prompt_tokens": 7, "completion_tokens": 3 * len(texts), "total_tokens": 7 + 3 * len(texts)}
    return 200, data


@pytest.fixture
def dataset(store):
    add_prompts(store, "qs", PROMPTS)
    return "qs"


@pytest.fixture
def engine_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def scripted(engine_home, run_cli, serve_app):
    """Factory: `scripted(script)` serves a ScriptedEngine and registers it as the external engine `ext`."""
    servers = []

    def make(script):
        eng = ScriptedEngine(script)
        servers.append(serve_app(eng.app))
        eng.url = servers[-1].url
        r = run_cli("engine", "add", "ext", eng.url)
        assert r.exit_code == 0, r.output
        assert "scripted" in r.output
        return eng

    yield make
    for server in servers:
        server.stop()


def test_stores_answers_with_provenance_and_drops_duplicates(store, dataset, scripted):
    from serving.sampling.sampler import run_sampling

    def script(body, attempt):
        p = body["messages"][0]["content"]
        return _reply([f"Uno {p}", f"  uno   {p.upper()} ", "", f"Dos {p} ✨"][: body["n"]])

    eng = scripted(script)
    report = run_sampling(store, dataset, "scripted", n=4, temperature=0.7, top_p=0.9, max_tokens=32, seed=11)
    assert report.failures == []
    assert (report.prompts_done, report.answers_stored) == (3, 6)
    assert (report.duplicates_dropped, report.empty_dropped) == (3, 3)  # case/space variant, empty: per prompt
    rows = store.query("SELECT g.*, CAST(g.params AS VARCHAR) AS p FROM generations g ORDER BY id")
    assert {r["text"] for r in rows} >= {"Dos ¿Qué es la luz? ✨", "Uno 解释一下重力"}
    r = rows[0]
    assert (r["kind"], r["model"], r["adapter"], r["engine"]) == ("model", "scripted", None, "ext")
    assert json.loads(r["p"]) == {"n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "seed": 11}
    assert r["prompt_tokens"] == 7 and r["completion_tokens"] == 3 and r["latency_ms"] > 0
    assert r["finish_reason"] == "stop" and r["seed"] is not None
    assert len({b["seed"] for b in eng.requests}) == 3  # a distinct, recorded seed per request
    assert "return_token_ids" not in eng.requests[0]  # no vLLM extensions sent to external endpoints


def test_resume_skips_complete_prompts_and_tops_up_the_rest(store, dataset, scripted):
    from serving.sampling.sampler import run_sampling

    calls = []

    def script(body, attempt):
        calls.append(body["n"])
        p = body["messages"][0]["content"]
        texts = [f"{p} answer {attempt}-{i}" for i in range(body["n"])]
        if p == PROMPTS[1] and attempt <= 3:  # the first time, this prompt gets a duplicate: 3 of 4 stored
            texts[1] = texts[0]
        return _reply(texts)

    eng = scripted(script)
    first = run_sampling(store, dataset, "scripted", n=4, seed=5)
    assert (first.answers_stored, first.duplicates_dropped) == (11, 1)
    second = run_sampling(store, dataset, "scripted", n=4, seed=5)
    assert second.prompts_skipped == 2 and second.answers_stored == 1
    assert eng.requests[-1]["n"] == 1  # asked only for the missing answer
    third = run_sampling(store, dataset, "scripted", n=4, seed=5)
    assert third.prompts_skipped == 3 and third.answers_received == 0
    # other parameters are another sampling: all prompts are asked again
    other = run_sampling(store, dataset, "scripted", n=2, seed=5)
    assert other.prompts_skipped == 0 and other.answers_stored == 6
    assert store.scalar("SELECT count(*) FROM generations") == 18


def test_retries_5xx_and_429_then_succeeds(store, dataset, scripted):
    from serving.sampling.sampler import run_sampling

    def script(body, attempt):
        if attempt <= 2:
            return (503, {"error": "busy"}) if attempt == 1 else (429, {"error": "slow down"})
        return _reply([f"{body['messages'][0]['content']} {attempt}"])

    eng = scripted(script)
    report = run_sampling(store, dataset, "scripted", n=1, concurrency=1, backoff_s=0.01, limit=1)
    assert report.failures == [] and report.answers_stored == 1
    assert len(eng.requests) == 3


def test_4xx_is_not_retried_and_is_reported_per_prompt(store, dataset, scripted, run_cli):
    from serving.sampling.sampler import run_sampling

    def script(body, attempt):
        if body["messages"][0]["content"] == PROMPTS[2]:
            return 400, {"error": {"message": "context too long"}}
        return _reply(["ok " + body["messages"][0]["content"]])

    eng = scripted(script)
    report = run_sampling(store, dataset, "scripted", n=1, backoff_s=0.01)
    assert len(report.failures) == 1 and "context too long" in report.failures[0]["error"]
    assert report.answers_stored == 2
    assert len(eng.requests) == 3  # no retry of the 400
    r = run_cli("sample", "--dataset", dataset, "--model", "scripted", "--n", "1")
    assert r.exit_code == 1 and "1 prompt(s) failed" in r.output and "context too long" in r.output


def test_unreachable_engine_fails_every_prompt_after_retries(store, dataset, engine_home, run_cli):
    from serving.sampling.sampler import run_sampling

    port = free_port()  # nothing listens here
    assert run_cli("engine", "add", "gone", f"http://127.0.0.1:{port}/v1", "--no-check").exit_code == 0
    report = run_sampling(store, dataset, "m", engine="gone", retries=2, backoff_s=0.01)
    assert [f["prompt_id"] for f in report.failures] == [1, 2, 3]
    assert "gave up after 3 attempts" in report.failures[0]["error"]
    assert store.scalar("SELECT count(*) FROM generations") == 0


def test_cancel_stops_sending(store, dataset, scripted):
    from serving.sampling.sampler import run_sampling

    cancel = threading.Event()
    eng = scripted(lambda body, attempt: _reply(["a " + body["messages"][0]["content"]]))
    report = run_sampling(store, dataset, "scripted", n=1, concurrency=1, cancel=cancel,
                          progress=lambda p: cancel.set() if p["prompts_finished"] >= 1 else None)  # fmt: skip
    assert report.cancelled and report.answers_stored == 1 and len(eng.requests) == 1


def test_unknown_model_and_dataset_are_one_line_errors(store, dataset, scripted, run_cli):
    scripted(lambda body, attempt: _reply(["x"]))
    r = run_cli("sample", "--dataset", dataset, "--model", "nope")
    assert r.exit_code == 1 and "no running engine serves model 'nope'" in r.output and "scripted" in r.output
    r = run_cli("sample", "--dataset", "missing", "--model", "scripted")
    assert r.exit_code == 1 and "no dataset named 'missing'" in r.output
    r = run_cli("sample", "--dataset", dataset, "--model", "scripted", "--n", "0")
    assert r.exit_code == 1 and "--n 0" in r.output


def test_sampling_jobs_rows(store, dataset):
    job = sampling.create_job(store, dataset=dataset, model="m", engine=None, params={"n": 4}, created_by="ann")
    sampling.update_job(store, job, status="running", started_at="now", prompts_total=3)
    sampling.update_job(store, job, status="finished", finished_at="now", report={"answers_stored": 9, "é": "✓"})
    row = sampling.get_job(store, job)
    assert (row["status"], row["prompts_total"], row["params"]) == ("finished", 3, {"n": 4})
    assert row["report"] == {"answers_stored": 9, "é": "✓"} and row["finished_at"]
    assert [j["id"] for j in sampling.list_jobs(store, dataset=dataset)] == [job]
    with pytest.raises(ValueError):
        sampling.update_job(store, job, bogus=1)


def test_engine_start_errors_are_one_clear_line(engine_home, run_cli, tmp_path, monkeypatch):
    not_model = tmp_path / "empty"
    not_model.mkdir()
    r = run_cli("engine", "start", "--model", not_model, "--backend", "transformers")
    assert r.exit_code == 1 and "not a model folder (no config.json there)" in r.output
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    r = run_cli("engine", "start", "--model", model, "--lora", "no-equals-sign")
    assert r.exit_code == 2 and "expected NAME=PATH" in r.output
    r = run_cli("engine", "start", "--model", model, "--lora", f"a={tmp_path}")
    assert r.exit_code == 1 and "not a PEFT adapter folder" in r.output
    monkeypatch.setenv("PREFLAB_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    r = run_cli("engine", "start", "--model", model)
    assert r.exit_code == 1 and "make vllm-env" in r.output
    # an engine that dies while starting: the error carries the tail of its log, and nothing is registered
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'RuntimeError: head_dim 16 is not supported'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PREFLAB_VLLM_PYTHON", str(fake))
    r = run_cli("engine", "start", "--model", model, "--name", "broken")
    assert r.exit_code == 1 and "exited with code 3" in r.output and "head_dim 16 is not supported" in r.output
    assert "broken" not in run_cli("engine", "list").output
    r = run_cli("engine", "stop")
    assert r.exit_code == 2 and "name an engine, or pass --all" in r.output
    r = run_cli("engine", "stop", "ghost")
    assert r.exit_code == 1 and "no engine named 'ghost'" in r.output
    r = run_cli("engine", "add", "x", "ftp://host")
    assert r.exit_code == 1 and "must start with http" in r.output


def test_server_shutdown_cancels_running_sampling_jobs_first(store, dataset, scripted):
    """A stopping server (uvicorn, or a test's TestClient) cancels its sampling jobs and waits for their threads,
    so no job outlives it and writes to a Store its owner is about to close."""
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.api.sampling import SamplingJobIn

    def slow(body, attempt):
        time.sleep(1.0)
        return _reply(["a", "b"])

    scripted(slow)
    app = create_app(store)
    with TestClient(app):
        job_id = app.state.jobs.start(SamplingJobIn(dataset=dataset, model="scripted", n=2, concurrency=1), "test")
        deadline = time.monotonic() + 20
        while sampling.get_job(store, job_id)["status"] != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        thread = app.state.jobs.threads[job_id]
    assert not thread.is_alive()
    job = sampling.get_job(store, job_id)
    assert job["status"] == "cancelled" and job["prompts_done"] < len(PROMPTS), job
