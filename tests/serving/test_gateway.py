"""The /v1 gateway with the official openai client, against the transformers engine on the tiny model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import numpy as np
import openai
import pytest

from db import apikeys
from db.store import Store


@pytest.fixture(scope="module")
def gw(tiny_hf_engine, serve_app, tmp_path_factory):
    from serving.api.app import create_app
    from serving.engines.registry import save_engine

    home = tmp_path_factory.mktemp("gateway-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(home))
        save_engine(tiny_hf_engine)  # the session's transformers engine: tiny + tiny-lora
        store = Store.open(home / "gw.duckdb")
        try:
            live = serve_app(create_app(store), store=store)
            client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=120)
            yield SimpleNamespace(url=live.url, store=store, home=home, client=client)
            live.stop()
        finally:
            store.close()


def test_models_lists_engine_models_registered_adapters_and_embeddings(gw):
    gw.store.con.execute(
        "INSERT INTO models (name, kind, base, path, stage, created_by) "
        "VALUES ('sft-unloaded', 'adapter', 'tiny', '/nowhere', 'sft', 'test')"
    )
    ids = {m.id for m in gw.client.models.list()}
    assert {"tiny", "tiny-lora", "sft-unloaded", "all-MiniLM-L6-v2"} <= ids
    # registered but not loaded in any engine: a 404 that says how to serve it
    with pytest.raises(openai.NotFoundError) as e:
        gw.client.chat.completions.create(model="sft-unloaded", messages=[{"role": "user", "content": "hi"}])
    assert "--lora sft-unloaded=" in str(e.value)


def test_chat_completion_with_sampling_parameters(gw):
    kwargs = dict(
        model="tiny",
        messages=[{"role": "user", "content": "Hola, ¿qué tal? 你好 🙂"}],
        max_tokens=8,
        n=2,
        temperature=0.9,
        top_p=0.95,
        seed=7,
        stop=["\n\n"],
    )
    first = gw.client.chat.completions.create(**kwargs)
    assert first.model == "tiny" and len(first.choices) == 2
    assert first.usage.completion_tokens <= 16 and first.usage.prompt_tokens > 0
    again = gw.client.chat.completions.create(**kwargs)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]  # same seed


def test_adapter_names_route_to_the_adapter(gw):
    kwargs = dict(messages=[{"role": "user", "content": "Hello"}], max_tokens=8, seed=5, temperature=0.0)
    base = gw.client.chat.completions.create(model="tiny", **kwargs)
    lora = gw.client.chat.completions.create(model="tiny-lora", **kwargs)
    assert lora.model == "tiny-lora" and lora.choices[0].message.content != base.choices[0].message.content


def test_chat_streaming_passes_chunks_through(gw):
    stream = gw.client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Tell a story"}],
        max_tokens=12,
        stream=True,
        seed=3,
        temperature=1.0,
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(chunks) >= 3 and deltas, chunks
    assert finishes and finishes[-1] in ("length", "stop")


def test_completions(gw):
    out = gw.client.completions.create(model="tiny", prompt=["The cat", "El perro"], max_tokens=5, temperature=0)
    assert len(out.choices) == 2 and all(isinstance(c.text, str) for c in out.choices)


def test_embeddings_are_unit_vectors_that_rank_by_meaning(gw):
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by 4%."]
    out = gw.client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the client asks for base64
    vecs = np.array([d.embedding for d in out.data])
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    floats = httpx.post(gw.url + "/v1/embeddings", json={"model": "minilm", "input": texts[0]}).json()
    assert np.allclose(floats["data"][0]["embedding"], vecs[0], atol=1e-5)


def test_errors_are_openai_shaped(gw):
    with pytest.raises(openai.NotFoundError) as e:
        gw.client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    r = httpx.post(gw.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as e:
        gw.client.chat.completions.create(model="tiny", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):  # the engine's own validation comes back as a 400 too
        gw.client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], temperature=-1)
    with pytest.raises(openai.NotFoundError):
        gw.client.embeddings.create(model="text-embedding-3-large", input="x")


def test_api_keys_once_created_are_required(gw):
    key = apikeys.create_key(gw.store, "ci", created_by="test")
    try:
        assert "pl-" in key and key not in json.dumps(apikeys.list_keys(gw.store))  # stored hashed
        with pytest.raises(openai.AuthenticationError) as e:
            gw.client.models.list()  # the fixture's client sends a wrong key
        assert e.value.body["code"] == "invalid_api_key"
        assert httpx.get(gw.url + "/v1/models").status_code == 401  # and no key at all
        good = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        assert "tiny" in {m.id for m in good.models.list()}
    finally:
        apikeys.revoke_key(gw.store, "ci")
    assert apikeys.check_key(gw.store, key) is None
    assert "tiny" in {m.id for m in gw.client.models.list()}  # no active key left: open again


def test_rag_through_the_gateway_returns_citations(gw, tmp_path):
    from serving.rag import ingest_paths

    doc = tmp_path / "fjords.md"
    doc.write_text(
        "# Fjords\n\nThe Sognefjord in Norway is the longest fjord in the country, 205 km long.\n\n"
        "# Glaciers\n\nJostedalsbreen is the largest glacier in continental Europe.\n",
        encoding="utf-8",
    )
    ingest_paths(gw.store, [doc], collection="geo")
    out = gw.client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "How long is the Sognefjord?"}],
        max_tokens=4,
        extra_body={"rag": {"collection": "geo", "k": 1}},
    )
    cites = out.model_extra["citations"]
    assert len(cites) == 1 and cites[0]["index"] == 1
    assert cites[0]["source"] == str(doc.resolve()) and "205 km" in cites[0]["text"]
    # the same by model-name suffix, streamed: the citations arrive first
    stream = gw.client.chat.completions.create(
        model="tiny+rag:geo", stream=True, max_tokens=4, messages=[{"role": "user", "content": "largest glacier?"}]
    )
    first = next(iter(stream))
    assert first.model_extra["citations"][0]["title"] == "Fjords"
    assert "Jostedalsbreen" in first.model_extra["citations"][0]["text"]
    with pytest.raises(openai.NotFoundError):
        gw.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "x"}], extra_body={"rag": {"collection": "nope"}}
        )
