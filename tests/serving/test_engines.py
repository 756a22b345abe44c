"""The transformers engine for real: started through the CLI on the tiny model, sampled, queried with the
official openai client, a LoRA adapter chosen by model name, and killed in the middle of a sampling run.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support.data import add_prompts

PROMPTS = ["¿Qué es la luz?", "解释一下重力", "Tell me a joke 🃏", "hello", "why is the sky blue?", "¿y el mar?"]


@pytest.fixture
def engine_env(hf_engine, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("PREFLAB_HOME", str(__import__("pathlib").Path(hf_engine["log"]).parents[1]))
    return hf_engine


def test_engine_list_shows_models_and_alive(engine_env, run_cli):
    r = run_cli("engine", "list")
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("tiny\t"))
    assert "\ttransformers\talive\t" in line and "tiny,sft1" in line
    from serving.engines.registry import resolve_model

    t = resolve_model("sft1")
    assert (t["engine"], t["model"], t["adapter"], t["base_model"]) == ("tiny", "sft1", "sft1", "tiny")
    assert t["url"] == engine_env["url"]


def test_sample_n4_stores_answers_with_provenance(engine_env, store, run_cli):
    add_prompts(store, "qs", PROMPTS[:3])
    r = run_cli("sample", "--dataset", "qs", "--model", "tiny", "--n", "4", "--max-tokens", "24", "--seed", "7",
                "--temperature", "1.0")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "12 answers stored for 3 prompts" in r.output
    rows = store.query("SELECT *, CAST(params AS VARCHAR) AS p FROM generations ORDER BY id")
    assert len(rows) == 12 and all(r["text"].strip() for r in rows)
    assert {(r["model"], r["adapter"], r["engine"], r["kind"]) for r in rows} == {("tiny", None, "tiny", "model")}
    assert json.loads(rows[0]["p"]) == {"n": 4, "temperature": 1.0, "top_p": 0.95, "max_tokens": 24, "seed": 7}
    assert all(1 <= r["completion_tokens"] <= 24 and r["prompt_tokens"] > 0 and r["latency_ms"] > 0 for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    r = run_cli("sample", "--dataset", "qs", "--model", "tiny", "--n", "4", "--max-tokens", "24", "--seed", "7",
                "--temperature", "1.0")  # fmt: skip
    assert r.exit_code == 0 and "0 answers stored for 0 prompts (3 already complete" in r.output


def test_openai_client_chat_completions_and_streaming(engine_env):
    from openai import OpenAI

    client = OpenAI(base_url=engine_env["url"], api_key="unused")
    assert {m.id for m in client.models.list()} == {"tiny", "sft1"}
    msgs = [{"role": "user", "content": "Hola, ¿qué tal? 😀"}]
    chat = client.chat.completions.create(model="tiny", messages=msgs, n=3, max_tokens=10, seed=1, temperature=0.9)
    assert len(chat.choices) == 3 and chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0
    again = client.chat.completions.create(model="tiny", messages=msgs, n=3, max_tokens=10, seed=1, temperature=0.9)
    assert [c.message.content for c in again.choices] == [c.message.content for c in chat.choices]  # seeded
    comp = client.completions.create(model="tiny", prompt=["Once upon", "Érase"], n=2, max_tokens=6)
    assert len(comp.choices) == 4 and all(c.finish_reason in ("stop", "length") for c in comp.choices)
    fixed = client.completions.create(model="tiny", prompt="x", max_tokens=9, extra_body={"ignore_eos": True})
    assert fixed.usage.completion_tokens == 9 and fixed.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, stream=True, seed=3,
                                            temperature=0.9)  # fmt: skip
    parts, finish = [], None
    for chunk in stream:
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    full = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, seed=3, temperature=0.9)
    assert "".join(parts) == full.choices[0].message.content and finish in ("stop", "length")
    assert len([p for p in parts if p]) >= 2  # delivered in pieces, not one blob
    with pytest.raises(Exception, match="not served"):
        client.chat.completions.create(model="nope", messages=msgs, max_tokens=3)


def test_lora_adapter_selected_by_model_name_changes_answers(engine_env, store, run_cli):
    from openai import OpenAI

    client = OpenAI(base_url=engine_env["url"], api_key="unused")
    msgs = [{"role": "user", "content": "Say something"}]

    def greedy(model):
        out = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0,
                                             extra_body={"ignore_eos": True})  # fmt: skip
        return out.choices[0].message.content

    base, adapted = greedy("tiny"), greedy("sft1")
    assert adapted != base
    assert greedy("tiny") == base  # the adapter is off again for the base name
    add_prompts(store, "lora", PROMPTS[:2])
    r = run_cli("sample", "--dataset", "lora", "--model", "sft1", "--n", "2", "--max-tokens", "8")
    assert r.exit_code == 0, r.output
    rows = store.query("SELECT model, adapter, engine FROM generations")
    assert len(rows) == 4 and {tuple(r.values()) for r in rows} == {("tiny", "sft1", "tiny")}


def test_engine_killed_mid_run_then_second_run_completes_without_duplicates(
    engine_env, store, tiny_model_dir, lora_dir, run_cli
):
    from serving.engines import registry
    from serving.engines.launcher import start_engine
    from serving.sampling.sampler import run_sampling

    texts = [f"{p} #{i}" for i in range(2) for p in PROMPTS]  # 12 prompts
    add_prompts(store, "faults", texts)
    killed = []

    def kill_after_some(p):
        if p["prompts_finished"] >= 3 and not killed:
            os.killpg(engine_env["pid"], signal.SIGKILL)
            killed.append(p["prompts_finished"])

    kw = dict(n=4, max_tokens=16, ignore_eos=True, temperature=1.0, concurrency=2, retries=1, backoff_s=0.05)
    first = run_sampling(store, "faults", "tiny", progress=kill_after_some, **kw)
    assert killed and first.failures, first.summary()
    assert 3 <= first.prompts_done < 12 and first.prompts_done + len(first.failures) == 12
    assert all("gave up" in f["error"] for f in first.failures)
    stored_first = store.scalar("SELECT count(*) FROM generations")
    assert stored_first == first.answers_stored
    assert "dead" in run_cli("engine", "list").output
    # restart (new port) and run again: only the missing prompts are asked, nothing is duplicated
    start_engine(model=tiny_model_dir, name="tiny", backend="transformers", loras={"sft1": str(lora_dir)})
    engine_env.update(registry.get_engine("tiny"))  # later teardown stops the new process
    second = run_sampling(store, "faults", "tiny", **kw)
    assert second.failures == [] and second.prompts_skipped == first.prompts_done
    per_prompt = store.query(
        "SELECT p.id, count(g.id) AS k, count(DISTINCT g.content_hash) AS d FROM prompts p "
        "JOIN datasets d ON d.id = p.dataset_id AND d.name = 'faults' LEFT JOIN generations g ON g.prompt_id = p.id "
        "GROUP BY p.id"
    )
    assert len(per_prompt) == 12 and all(r["k"] == 4 and r["d"] == 4 for r in per_prompt)


@pytest.mark.parametrize("body", [[{"id": "m"}], {"data": [{"name": "m"}]}, {"data": "m"}, "not json"])
def test_fetch_models_turns_an_odd_answer_into_one_error(monkeypatch, body):
    """An endpoint that answers /models with something other than an OpenAI model list: a ValueError (which
    both callers, resolve_model and `engine add`, turn into 'did not answer'), not a crash of the route."""
    import httpx

    from serving.engines import registry

    def fake_get(url, **kwargs):
        content = body if isinstance(body, str) else json.dumps(body)
        return httpx.Response(200, content=content, request=httpx.Request("GET", url))

    monkeypatch.setattr(registry.httpx, "get", fake_get)
    with pytest.raises(ValueError):
        registry.fetch_models("http://127.0.0.1:9/v1")


def test_fetch_models_refuses_an_unusable_url():
    from serving.engines import registry

    with pytest.raises(ValueError, match="unusable URL"):
        registry.fetch_models("http://[::1/v1")


@pytest.mark.slow  # starts a transformers engine through the API, not through a fixture
def test_admin_serves_a_registered_adapter_by_starting_then_hot_loading(store, tiny_model_dir, lora_dir, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    """POST /api/models/{name}/serve: nothing runs the base -> a transformers engine is started for the adapter;
    a second adapter on the same base -> loaded into that engine while it serves (no restart, same pid)."""
    import httpx
    from fastapi.testclient import TestClient

    from db import models_registry
    from serving.api.app import create_app
    from serving.engines import registry
    from serving.engines.launcher import stop_engine
    from tests.support.data import add_user, signed_in

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    add_user(store, "adm", "admin")
    add_user(store, "ann", "annotator")
    for name in ("sft-ui", "sft-ui-2"):
        models_registry.register_model(store, name=name, kind="adapter", path=str(lora_dir),
                                       base=str(tiny_model_dir), stage="sft", created_by="test")  # fmt: skip
    try:
        with TestClient(create_app(store)) as c:
            assert c.post("/api/models/sft-ui/serve", headers=signed_in(c, "ann"), json={}).status_code == 403
            h = signed_in(c, "adm")
            first = c.post("/api/models/sft-ui/serve", headers=h, json={"timeout": 180})
            assert first.status_code == 200, first.text
            assert first.json()["action"] == "started" and first.json()["models"] == ["tiny", "sft-ui"]
            pid = registry.get_engine(first.json()["engine"])["pid"]
            second = c.post("/api/models/sft-ui-2/serve", headers=h, json={})
            assert second.status_code == 200, second.text
            assert second.json()["action"] == "loaded" and second.json()["engine"] == first.json()["engine"]
            engine = registry.get_engine(first.json()["engine"])
            assert engine["pid"] == pid
            listed = c.get(f"/api/engines/{engine['name']}/models", headers=h).json()
            assert listed["live"] and listed["models"] == ["tiny", "sft-ui", "sft-ui-2"]
            ask = {"model": "sft-ui-2", "messages": [{"role": "user", "content": "¿hola? 👋"}], "max_tokens": 4}
            answer = httpx.post(engine["url"] + "/chat/completions", timeout=120, json=ask)
            assert answer.status_code == 200 and answer.json()["model"] == "sft-ui-2", answer.text
            again = c.post("/api/models/sft-ui-2/serve", headers=h, json={}).json()
            assert again["action"] == "served"
            models_registry.register_model(store, name="gone", kind="adapter", path=str(tmp_path / "nope"),
                                           base=str(tiny_model_dir), created_by="test")  # fmt: skip
            bad = c.post("/api/models/gone/serve", headers=h, json={})
            assert bad.status_code == 400 and bad.json()["error"]["field"] == "model", bad.text
    finally:
        for e in registry.list_engines():
            stop_engine(e["name"])
