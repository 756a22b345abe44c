"""Shared fixtures. Tests are offline: no hub, no network beyond localhost.

Helpers that are plain functions live in tests/support/ (imported as `tests.support.<module>`); everything
that starts something lives here as a fixture. A fixture in SLOW_FIXTURES starts a real server, engine or
browser: every test that uses one, directly or through another fixture, is marked `slow` at collection, so
`pytest -m "not slow"` (`make test-fast`) leaves it out.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from db.store import Store
from serving.engines.launcher import free_port

SLOW_FIXTURES = {"serve_app", "tiny_hf_engine", "hf_engine", "vllm_engine", "browser"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Mark `slow` every test whose fixture closure starts a server, engine or browser (SLOW_FIXTURES)."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def db_path(tmp_path, monkeypatch):
    """A fresh database file for one test; PREFLAB_DB points at it so the CLI uses it too."""
    path = tmp_path / "test.duckdb"
    monkeypatch.setenv("PREFLAB_DB", str(path))
    monkeypatch.delenv("PREFLAB_URL", raising=False)
    return path


@pytest.fixture
def store(db_path):
    """The Store over `db_path`, closed after the test."""
    s = Store.open(db_path)
    yield s
    s.close()


@pytest.fixture
def run_cli(db_path):
    """Invoke `preflab ...` in-process; returns the click Result. Use `assert r.exit_code == 0, r.output`."""
    from serving.cli import cli

    runner = CliRunner()

    def _run(*args, input=None):
        return runner.invoke(cli, ["--db", str(db_path), *map(str, args)], input=input, catch_exceptions=False)

    return _run


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded tiny causal LM (briefly pre-trained, trained BPE tokenizer, chat template), built once."""
    from serving.engines.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory):
    """The tiny model with a sequence-classification head (num_labels=1): a reward model to train."""
    from serving.engines.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-rm", reward=True)


@pytest.fixture(scope="session")
def tiny_hf_engine(tiny_model_dir, tmp_path_factory):
    """One transformers engine for the session serving `tiny` and a strong random LoRA adapter `tiny-lora`
    (answers differ from the base's). Yields its registry record; a test that resolves models by name
    registers it in its own PREFLAB_HOME with `serving.engines.registry.save_engine(record)`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from serving.engines.launcher import start_engine, stop_engine

    home = tmp_path_factory.mktemp("engine-home")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data.normal_(0.0, 1.0)
    model.save_pretrained(home / "tiny-lora")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(home))
        record = start_engine(
            model=tiny_model_dir,
            name="tiny",
            backend="transformers",
            loras={"tiny-lora": str(home / "tiny-lora")},
            timeout=420,
        )
        try:
            yield record
        finally:
            stop_engine("tiny")


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter on the tiny model with random (non-zero) B weights, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    out = tmp_path_factory.mktemp("adapters") / "sft1"
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir, lora_dir, tmp_path_factory):
    """One transformers engine for the module serving `tiny` and the adapter `sft1`, started and stopped through
    the CLI (and checked gone after), registered in its own PREFLAB_HOME."""
    from serving.cli import cli
    from serving.engines import registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(tmp_path_factory.mktemp("home")))
        runner = CliRunner()
        r = runner.invoke(cli, ["engine", "start", "--model", str(tiny_model_dir), "--name", "tiny", "--backend",
                                "transformers", "--lora", f"sft1={lora_dir}", "--timeout", "120"])  # fmt: skip
        assert r.exit_code == 0, r.output
        record = registry.get_engine("tiny")
        yield record
        r = runner.invoke(cli, ["engine", "stop", "--all"])
        assert r.exit_code == 0, r.output
        assert not registry.pid_alive(record["pid"])


@pytest.fixture(scope="module")
def vllm_engine(tiny_model_dir, tmp_path_factory):
    """vLLM on the tiny model from .venv-vllm, started and stopped through the CLI in its own PREFLAB_HOME. A
    missing venv fails (`make test` builds it); PREFLAB_SKIP_VLLM=1 skips the tests that use it."""
    from serving.cli import cli
    from serving.engines import registry
    from serving.engines.launcher import vllm_python

    if os.environ.get("PREFLAB_SKIP_VLLM") == "1":
        pytest.skip("PREFLAB_SKIP_VLLM=1")
    assert vllm_python().exists(), f"{vllm_python()} is missing: run `make vllm-env` (or PREFLAB_SKIP_VLLM=1)"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(tmp_path_factory.mktemp("home")))
        runner = CliRunner()
        r = runner.invoke(cli, ["engine", "start", "--model", str(tiny_model_dir), "--name", "tiny", "--timeout",
                                "420", "--max-model-len", "512", "--enforce-eager"])  # fmt: skip
        assert r.exit_code == 0, r.output
        record = registry.get_engine("tiny")
        yield record
        r = runner.invoke(cli, ["engine", "stop", "tiny"])
        assert r.exit_code == 0, r.output
        assert not registry.pid_alive(record["pid"])


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by Playwright (`make browser` installs it; skipped where it is missing)."""
    executable = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if executable is None:
        pytest.skip("chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class LiveServer:
    """A FastAPI app served by uvicorn in a daemon thread on a free localhost port."""

    url: str
    store: Store | None
    server: object
    thread: threading.Thread
    passwords: dict[str, str] = field(default_factory=dict)

    def token(self, name: str, password: str | None = None) -> str:
        """A bearer token for `name` (the password defaults to the one the fixture seeded for that user)."""
        body = {"name": name, "password": password or self.passwords[name]}
        r = httpx.post(f"{self.url}/api/auth/login", json=body, timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def api(self, name: str, password: str | None = None) -> httpx.Client:
        """An HTTP client signed in as `name`."""
        headers = {"Authorization": f"Bearer {self.token(name, password)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_app():
    """Factory: `serve_app(app, store=...)` serves a FastAPI app with uvicorn in a thread on a free port and
    returns a LiveServer once it accepts connections. For module- and session-scoped fixtures (a test uses
    `live_server`); the caller stops it, and any still running stop when the session ends."""
    import uvicorn

    started: list[LiveServer] = []

    def start(app, *, store: Store | None = None, passwords: dict[str, str] | None = None) -> LiveServer:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True, name="preflab-test-server")
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        live = LiveServer(f"http://127.0.0.1:{port}", store, server, thread, dict(passwords or {}))
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def live_server(serve_app, store):
    """Factory: `live_server()` serves the PrefLab app over this test's fresh `store` (`live_server(config)` with
    a ServerConfig) and returns the LiveServer; call it after seeding what the app should see at start. Stopped
    when the test ends."""
    from serving.api.app import create_app

    started: list[LiveServer] = []

    def start(config=None) -> LiveServer:
        started.append(serve_app(create_app(store, config), store=store))
        return started[-1]

    yield start
    for live in started:
        live.stop()


@pytest.fixture(scope="module")
def ui_server(serve_app, tmp_path_factory):
    """One real server per test module for the UI tests: a fresh database seeded by tests/support/ui_data.py
    (users ann, ann2, rev, adm; DATASET with k=2, VISUAL_DATASET), its own PREFLAB_HOME, PREFLAB_URL at it."""
    from serving.api.app import create_app
    from tests.support.ui_data import PASSWORDS, seed_ui

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(tmp_path_factory.mktemp("home")))  # engine registry, server state
        store = Store.open(tmp_path_factory.mktemp("ui") / "ui.duckdb")
        try:
            seed_ui(store, k=2)
            live = serve_app(create_app(store), store=store, passwords=PASSWORDS)
            mp.setenv("PREFLAB_URL", live.url)
            yield live
            live.stop()
        finally:
            store.close()
