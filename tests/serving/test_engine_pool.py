"""The pool of engines behind one model name: least outstanding, retry on another member, health marking,
and a sampling job that loses one of two real transformers engines midway.

The fast tests drive serving.engines.pool through httpx.MockTransport (no network); the slow one starts two
engines on the tiny model under one served name and kills one while a few hundred answers are sampled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest

from serving.engines import pool as pool_mod
from serving.engines.pool import EnginePool, PoolError
from tests.support.data import add_prompts

PROMPTS = ["¿Qué es la luz?", "解释一下重力", "Tell me a joke 🃏", "hello", "why is the sky blue?", "¿y el mar? 🌊"]


def _member(name: str, port: int, backend: str = "external") -> dict:
    return {"engine": name, "backend": backend, "url": f"http://127.0.0.1:{port}/v1", "api_key": None,
            "model": "m", "adapter": None, "base_model": "m"}  # fmt: skip


def _answer(texts) -> httpx.Response:
    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
               for i, t in enumerate(texts)]  # fmt: skip
    return httpx.Response(200, json={"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setattr(pool_mod, "_state", {})
    monkeypatch.setattr(pool_mod, "HEALTH_INTERVAL", 0.05)


def test_choice_goes_to_the_member_with_least_outstanding():
    a, b, c = _member("a", 1), _member("b", 2), _member("c", 3)
    pool = EnginePool([a, b, c])
    first = [pool.choose()["engine"] for _ in range(3)]
    assert sorted(first) == ["a", "b", "c"]  # an idle pool takes turns
    pool.release(b)
    assert pool.choose()["engine"] == "b"  # the only one with nothing in flight
    pool.release(a)
    pool.release(a)  # never below 0: a 0, b 1, c 1
    assert pool.choose()["engine"] == "a"
    assert pool.choose()["engine"] == "c"  # all at 1: the one chosen least often
    states = {k[0]: v["outstanding"] for k, v in pool_mod._state.items()}
    assert states == {"a": 1, "b": 1, "c": 2}


def test_failed_request_is_retried_on_another_member_and_a_refusing_member_goes_out():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.port)
        if request.url.port == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.port == 2:
            return httpx.Response(503, text="overloaded")
        return _answer(["hola 😀"])

    async def go():
        pool = EnginePool([_member("a", 1), _member("b", 2), _member("c", 3)], transport=httpx.MockTransport(handler))
        results = []
        for _ in range(3):
            member, resp = await pool.send("chat/completions", {"model": "m"}, attempts=3, backoff_s=0)
            results.append((member["engine"], resp.status_code))
        await asyncio.sleep(0.05)  # the health checks the failures started
        await pool.aclose()
        return results

    results = asyncio.run(go())
    assert results == [("c", 200)] * 3
    assert seen[:3] in ([1, 2, 3], [2, 1, 3])  # least outstanding, ties in turn, each member once per request
    states = {k[0]: v for k, v in pool_mod._state.items()}
    assert states["a"]["healthy"] is False and "ConnectError" in states["a"]["error"]
    assert states["b"]["healthy"] is False  # its 503 started a health check, which also answered 503
    assert all(s["outstanding"] == 0 for s in states.values())
    on_file = json.loads((pool_mod._path()).read_text(encoding="utf-8"))
    assert on_file["health"]["a"]["healthy"] is False


def test_an_out_member_comes_back_when_its_health_check_passes():
    up = {"a": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.port == 1 and not up["a"]:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        return _answer([f"from {request.url.port}"])

    async def go():
        a, b = _member("a", 1), _member("b", 2)
        pool = EnginePool([a, b], transport=httpx.MockTransport(handler))
        await pool.send("chat/completions", {}, attempts=2, backoff_s=0)
        key = ("a", a["url"])
        assert pool_mod._state[key]["healthy"] is False
        # while out, a is not chosen: every request goes to b
        got = [(await pool.send("chat/completions", {}, attempts=1))[0]["engine"] for _ in range(4)]
        assert got == ["b"] * 4
        up["a"] = True
        await asyncio.sleep(0.06)
        pool.release(pool.choose())  # a request after the interval starts a check of a
        for _ in range(20):
            await asyncio.sleep(0.02)
            if pool_mod._state[key]["healthy"]:
                break
        assert pool_mod._state[key]["healthy"] is True and pool_mod._state[key]["error"] is None
        await pool.aclose()

    asyncio.run(go())


def test_all_members_out_still_tries_them_and_then_gives_up():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async def go():
        pool = EnginePool([_member("a", 1), _member("b", 2)], transport=httpx.MockTransport(handler))
        with pytest.raises(PoolError, match="gave up after 4 attempts: .*ReadTimeout"):
            await pool.send("chat/completions", {}, attempts=4, backoff_s=0)
        await pool.aclose()

    asyncio.run(go())


def test_a_retried_request_answered_twice_stores_n_answers_once(store, monkeypatch):
    """A request times out on member a after a's engine generated the answers; the retry on b answers too.
    Storing both (the late answer arriving after the retry's) must leave exactly n answers per prompt."""
    from db import sampling
    from serving.engines import registry
    from serving.sampling.sampler import SamplingReport, run_sampling, store_prompt_answers

    add_prompts(store, "qs", PROMPTS[:3])
    registry.save_engine({"name": "a", "backend": "external", "url": "http://127.0.0.1:1/v1", "models": ["m"],
                          "loras": {}, "pid": None, "api_key_env": None})  # fmt: skip
    registry.save_engine({"name": "b", "backend": "external", "url": "http://127.0.0.1:2/v1", "models": ["m"],
                          "loras": {}, "pid": None, "api_key_env": None})  # fmt: skip
    monkeypatch.setattr(registry, "_external_serves", lambda r, m: m == "m")
    late: list[tuple[int, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = body["messages"][0]["content"]
        texts = [f"{prompt} · {request.url.port} · {i} ✨" for i in range(body["n"])]
        if request.url.port == 1:  # generated, but the answer comes too late for the client
            late.append((prompt, texts))
            raise httpx.ReadTimeout("timed out", request=request)
        return _answer(texts)

    report = run_sampling(store, "qs", "m", n=4, backoff_s=0, transport=httpx.MockTransport(handler))
    assert report.failures == [] and report.answers_stored == 12
    assert late  # some requests went to a first and were retried on b
    ids = {r["text"]: r["id"] for r in store.query("SELECT p.id, CAST(p.messages AS VARCHAR) AS text FROM prompts p")}
    extra = SamplingReport(dataset="qs", model="m")
    params = sampling.canonical_params({"n": 4, "temperature": 0.8, "top_p": 0.95, "max_tokens": 256, "seed": None})
    for prompt, texts in late:  # the late answers arrive now
        pid = next(i for t, i in ids.items() if prompt in t)
        store_prompt_answers(store, extra, pid, [{"text": t} for t in texts], n=4, created_by="sampler",
                             provenance={"model": "m", "adapter": None, "engine": "a", "params": params})  # fmt: skip
    assert extra.answers_stored == 0 and extra.surplus_dropped == 4 * len(late)
    counts = store.query("SELECT prompt_id, count(*) AS c, count(DISTINCT text) AS d FROM generations GROUP BY 1")
    assert sorted((r["c"], r["d"]) for r in counts) == [(4, 4)] * 3
    assert store.scalar("SELECT count(*) FROM generations WHERE engine = 'a'") == 0


# ---- two real engines, one killed midway -----------------------------------------------------------------------


@pytest.fixture
def two_engines(tiny_model_dir, tmp_path, monkeypatch):
    from serving.engines.launcher import start_engine, stop_engine

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    started = []
    try:
        for name in ("tiny-a", "tiny-b"):
            started.append(start_engine(model=tiny_model_dir, name=name, served_name="tiny",
                                        backend="transformers", timeout=420))  # fmt: skip
        yield started
    finally:
        for rec in started:
            stop_engine(rec["name"])


@pytest.mark.slow
def test_sampling_survives_a_member_killed_midway(two_engines, store, run_cli):
    from serving.engines import registry
    from serving.sampling.sampler import run_sampling

    a, b = two_engines
    assert [t["engine"] for t in registry.resolve_pool("tiny")] == ["tiny-a", "tiny-b"]
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} #{i}" for i in range(75)]
    add_prompts(store, "qs", prompts)
    n = 4
    killed = threading.Event()

    def progress(p: dict) -> None:  # kill a once a quarter of the prompts are stored
        if not killed.is_set() and p["prompts_finished"] >= len(prompts) // 4:
            killed.set()
            os.killpg(a["pid"], signal.SIGKILL)

    kw = dict(n=n, temperature=1.0, top_p=1.0, max_tokens=8, concurrency=8, backoff_s=0.2, seed=5)
    t0 = time.perf_counter()
    report = run_sampling(store, "qs", "tiny", progress=progress, **kw)
    for _ in range(3):  # the tiny model may repeat itself: a rerun tops up the answers dropped as duplicates
        if report.answers_stored + report.prompts_skipped * n >= len(prompts) * n:
            break
        report = run_sampling(store, "qs", "tiny", **kw)
    elapsed = time.perf_counter() - t0
    assert killed.is_set() and report.failures == [], report.failures
    rows = store.query("SELECT prompt_id, engine, content_hash FROM generations")
    assert len(rows) == len(prompts) * n, elapsed  # nothing lost
    assert len({(r["prompt_id"], r["content_hash"]) for r in rows}) == len(rows)  # nothing duplicated
    per_prompt = store.query("SELECT prompt_id, count(*) AS c FROM generations GROUP BY 1")
    assert {r["c"] for r in per_prompt} == {n} and len(per_prompt) == len(prompts)
    by_engine = {e: sum(r["engine"] == e for r in rows) for e in ("tiny-a", "tiny-b")}
    assert by_engine["tiny-a"] > 0 and by_engine["tiny-b"] > by_engine["tiny-a"]
    listed = {r["name"]: r for r in registry.list_engines()}
    assert listed["tiny-a"]["state"] == "out" and listed["tiny-b"]["state"] == "healthy"
    assert listed["tiny-b"]["outstanding"] == 0
    r = run_cli("engine", "list")
    assert r.exit_code == 0, r.output
    line = {ln.split("\t")[0]: ln for ln in r.output.splitlines()}
    assert "\tdead\t" in line["tiny-a"] and "pool=out" in line["tiny-a"]
    assert "pool=healthy, 0 outstanding" in line["tiny-b"]
