"""`preflab up`: the server, the UI and a default engine as one foreground command; Ctrl-C stops them all.

    preflab up                 # engine (vLLM from .venv-vllm when it exists, else transformers), server, UI
    preflab up --demo          # first: tiny model, OpenAssistant sample, demo users, a sampling job (idempotent)

Order: prepare the database (demo data, users) while no server holds it -> engine -> server -> UI. The server
and the UI run in their own process groups, so the terminal's Ctrl-C reaches only this process, which then
stops them in reverse order (SIGTERM, SIGKILL after a grace period) and the engine it started. An engine that
was already running is reused and left running.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from db import paths
from db.store import Store
from serving.api.security import DEMO_USERS
from serving.jobs import CANCEL_GRACE_S, JOIN_MARGIN_S
from serving.ui_launch import streamlit_command

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = Path(__file__).resolve().parent / "data" / "oasst2_sample.jsonl"
DEMO_DATASET = "oasst-demo"
DEMO_PROMPTS = "demo-prompts"  # short keyword prompts the tiny model answers; sampled at start
# Demo logins. These passwords are on the server's list of demo passwords, so it refuses to listen beyond
# localhost while they are set (serving.api.app.check_public_bind).


@dataclass(kw_only=True)
class UpConfig:
    db_path: str
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    ui_port: int = 8501
    backend: str = "auto"  # auto | vllm | transformers | none
    model: str = "models/tiny"
    engine_port: int = 8001
    demo_samples: int = 4  # answers per demo prompt
    demo_prompts: int = 16


def pick_backend(backend: str) -> str | None:
    """auto -> vllm when the vLLM environment exists, else transformers; none -> None."""
    if backend == "none":
        return None
    if backend == "auto":
        from serving.engines.launcher import vllm_python

        return "vllm" if vllm_python().exists() else "transformers"
    return backend


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def prepare_demo(store: Store, cfg: UpConfig, echo: Callable[[str], None]) -> None:
    """Tiny model, the OpenAssistant sample (once), demo users and demo prompts. Safe to run again."""
    from db import users
    from serving.api.security import hash_password
    from serving.loop import add_prompts, make_prompts

    model = Path(cfg.model)
    if not (model / "config.json").exists():
        from serving.engines.tiny_model import build_tiny_model

        echo(f"building the tiny model in {model} ...")
        build_tiny_model(model)
    have = {d["name"]: d for d in store.list_datasets()}
    if not have.get(DEMO_DATASET, {}).get("prompts"):
        from db.importers import import_file

        report = import_file(store, DEMO_DATA, fmt="oasst", dataset=DEMO_DATASET)
        added = report.added.as_dict() if hasattr(report, "added") else report
        echo(f"imported {DEMO_DATA.name} into {DEMO_DATASET}: " + ", ".join(f"{v} {k}" for k, v in added.items()))
    for name, role, password in DEMO_USERS:
        if users.get_user(store, name) is None:
            users.add_user(store, name, role=role, password_hash=hash_password(password), created_by="preflab up")
    add_prompts(store, DEMO_PROMPTS, make_prompts(cfg.demo_prompts, seed=12345))


def _start(cmd: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, what: str, log_path: Path) -> None:
    from serving.engines.launcher import log_tail

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; log {log_path}:\n{log_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s; log {log_path}")


def _terminate(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after `grace` seconds."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _demo_sampling(server: str, model: str, engine: str, cfg: UpConfig, echo: Callable[[str], None]) -> None:
    """The demo's sampling job, through the server's job API (so the admin page lists it)."""
    name, _, password = DEMO_USERS[0]
    with httpx.Client(base_url=server, timeout=30.0) as client:
        token = client.post("/api/auth/login", json={"name": name, "password": password}).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        r = client.post(
            "/api/sampling-jobs",
            json={
                "dataset": DEMO_PROMPTS,
                "model": model,
                "engine": engine,
                "n": cfg.demo_samples,
                "max_tokens": 24,
                "temperature": 1.0,
            },
        )
        if r.status_code >= 400:
            echo(f"warning: the demo sampling job did not start: {r.text[:300]}")
            return
        job = r.json()
        while job.get("status") in ("queued", "running"):
            time.sleep(1.0)
            job = client.get(f"/api/sampling-jobs/{job['id']}").json()
        echo(
            f"sampling job {job['id']} ({engine}): {job.get('status')}, {job.get('answers_stored')} new answers "
            f"for {DEMO_PROMPTS}"
        )


def run_up(cfg: UpConfig, echo: Callable[[str], None]) -> int:
    """Start everything, print the URLs, wait for Ctrl-C (or SIGTERM), stop everything. Returns an exit code."""
    from serving.engines import registry
    from serving.engines.launcher import start_engine, stop_engine

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    logs = paths.home() / "up"
    procs: list[tuple[str, subprocess.Popen]] = []
    started_engine: str | None = None
    code = 0
    try:
        store = Store.open(cfg.db_path)
        try:
            if cfg.demo:
                prepare_demo(store, cfg, echo)
        finally:
            store.close()
        backend, engine_name = pick_backend(cfg.backend), Path(cfg.model).name
        if backend:
            alive = [e for e in registry.list_engines() if e["name"] == engine_name and e["alive"]]
            if alive:
                echo(f"engine {engine_name} already running at {alive[0]['url']} (left running on exit)")
            else:
                echo(f"starting the {backend} engine for {cfg.model} (vLLM on CPU takes up to a minute) ...")
                port = cfg.engine_port if port_free("127.0.0.1", cfg.engine_port) else None
                start_engine(model=cfg.model, name=engine_name, backend=backend, port=port)
                started_engine = engine_name
        server_url = f"http://{cfg.host}:{cfg.port}"
        server_log = logs / "server.log"
        db_path = str(Path(cfg.db_path).resolve())
        server = _start(
            [
                sys.executable,
                "-c",
                "from serving.cli import main; main()",
                "--db",
                db_path,
                "server",
                "--host",
                cfg.host,
                "--port",
                str(cfg.port),
            ],
            server_log,
        )
        procs.append(("server", server))
        _wait_http(f"{server_url}/api/health", server, 60, "the server", server_log)
        if cfg.demo and backend:
            _demo_sampling(server_url, engine_name, engine_name, cfg, echo)
        ui_log = logs / "ui.log"
        ui = _start(
            streamlit_command(cfg.ui_port, host=cfg.host), ui_log, env={**os.environ, "PREFLAB_URL": server_url}
        )
        procs.append(("ui", ui))
        _wait_http(f"http://{cfg.host}:{cfg.ui_port}/_stcore/health", ui, 120, "the UI", ui_log)
        engine = registry.get_engine(engine_name)["url"] if backend else "none"
        echo("")
        echo(f"  UI      http://{cfg.host}:{cfg.ui_port}")
        echo(f"  server  {server_url}   (API docs {server_url}/docs)")
        echo(f"  engine  {engine}   ({backend or 'no engine'}; model {engine_name})")
        if cfg.demo:
            echo(
                "  logins  "
                + ", ".join(f"{n} / {p} ({r})" for n, r, p in DEMO_USERS)
                + "   (demo passwords: localhost only)"
            )
        echo(f"  logs    {logs}")
        echo("Ctrl-C stops everything.")
        while not stop.is_set():
            for what, p in procs:
                if p.poll() is not None:
                    echo(f"{what} exited with code {p.returncode} (log {logs / (what + '.log')}); stopping")
                    code = 1
                    stop.set()
            stop.wait(0.5)
    except Exception as e:  # one line for the user, then clean up
        echo(f"preflab up: {e}")
        code = 1
    finally:
        echo("stopping ...")
        for what, p in reversed(procs):
            # the server stops its training runs first (SIGTERM, a checkpoint, SIGKILL after CANCEL_GRACE_S) and
            # records how they ended: give it that long before killing it
            _terminate(p, grace=CANCEL_GRACE_S + JOIN_MARGIN_S + 10 if what == "server" else 15.0)
        if started_engine:
            try:
                stop_engine(started_engine)
            except Exception as e:
                log.warning("could not stop engine %s: %s", started_engine, e)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
