"""vLLM for real, on CPU, with the tiny model: started through the CLI from .venv-vllm, sampled into the
database, queried with the official openai client (directly and through PrefLab's /v1 gateway), then the
offline batch mode, then stopped.

`make test` builds .venv-vllm first, so a missing venv FAILS here; PREFLAB_SKIP_VLLM=1 skips these tests
for quick local runs.
"""

from __future__ import annotations

import json

import pytest

from tests.support.data import add_prompts

PROMPTS = ["¿Qué es la luz?", "解释一下重力", "Tell me a joke 🃏"]


def test_vllm_engine_serves_and_samples(vllm_engine, store, run_cli):
    assert vllm_engine["backend"] == "vllm"
    r = run_cli("engine", "list")
    assert "\tvllm\talive\t" in r.output
    add_prompts(store, "qs", PROMPTS)
    args = ["sample", "--dataset", "qs", "--model", "tiny", "--n", "4", "--max-tokens", "20", "--seed", "3"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    assert "12 answers stored for 3 prompts" in r.output
    rows = store.query("SELECT *, CAST(params AS VARCHAR) AS p FROM generations ORDER BY id")
    assert len(rows) == 12 and all(r["text"].strip() for r in rows)
    assert {(r["model"], r["adapter"], r["engine"], r["kind"]) for r in rows} == {("tiny", None, "tiny", "model")}
    assert json.loads(rows[0]["p"]) == {"n": 4, "temperature": 0.8, "top_p": 0.95, "max_tokens": 20, "seed": 3}
    assert all(1 <= r["completion_tokens"] <= 20 and r["prompt_tokens"] > 0 and r["latency_ms"] > 0 for r in rows)
    assert all(r["metadata"] is None for r in rows)  # exact per-answer token counts (return_token_ids)
    assert len({r["seed"] for r in rows}) == 3  # one seed per request
    r = run_cli(*args)
    assert r.exit_code == 0 and "(3 already complete" in r.output


def test_openai_client_against_vllm(vllm_engine):
    from openai import OpenAI

    client = OpenAI(base_url=vllm_engine["url"], api_key="unused")
    assert [m.id for m in client.models.list()] == ["tiny"]
    msgs = [{"role": "user", "content": "Hola 😀"}]
    chat = client.chat.completions.create(model="tiny", messages=msgs, n=4, max_tokens=8, seed=5)
    assert len(chat.choices) == 4 and chat.usage.completion_tokens > 0
    comp = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=7,
                                     extra_body={"ignore_eos": True})  # fmt: skip
    assert comp.usage.completion_tokens == 7 and comp.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, stream=True,
                                            extra_body={"ignore_eos": True})  # fmt: skip
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in parts if p]) >= 2 and "".join(parts)


def test_openai_client_through_the_gateway_to_vllm(vllm_engine, live_server):
    """PrefLab's /v1 gateway routes the model name to the vLLM engine: plain, n > 1 and streaming."""
    import openai

    url = live_server().url
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert "tiny" in [m.id for m in client.models.list()]
    msgs = [{"role": "user", "content": "¿Qué tal? 你好 😀"}]
    chat = client.chat.completions.create(model="tiny", messages=msgs, n=3, max_tokens=6, seed=1)
    assert len(chat.choices) == 3 and chat.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, stream=True,
                                            extra_body={"ignore_eos": True})  # fmt: skip
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in parts if p]) >= 2
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=2)


def test_offline_batch_mode_writes_the_same_rows(vllm_engine, tiny_model_dir, store, run_cli):
    add_prompts(store, "off", PROMPTS[:2])
    r = run_cli("sample", "--dataset", "off", "--model", str(tiny_model_dir), "--n", "3", "--max-tokens", "12",
                "--offline", "--enforce-eager")  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = store.query("SELECT * FROM generations g JOIN prompts p ON p.id = g.prompt_id "
                       "JOIN datasets d ON d.id = p.dataset_id WHERE d.name = 'off'")  # fmt: skip
    assert len(rows) == 6 and {r["engine"] for r in rows} == {"vllm-offline"}
    assert {r["model"] for r in rows} == {tiny_model_dir.name}
    assert all(r["completion_tokens"] >= 1 and r["seed"] is not None for r in rows)
    r = run_cli("sample", "--dataset", "off", "--model", str(tiny_model_dir), "--n", "3", "--max-tokens", "12",
                "--offline", "--enforce-eager")  # fmt: skip
    assert r.exit_code == 0 and "(2 already complete" in r.output
