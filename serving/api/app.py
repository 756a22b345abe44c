"""The PrefLab server: FastAPI app over the one Store, run by uvicorn. `preflab server --port 8000`.

    from serving.api.app import create_app, ServerConfig
    app = create_app(store, ServerConfig(token_ttl_s=60))   # e.g. in tests, with fastapi.testclient.TestClient

The server is the only process that opens the DuckDB file. It writes db.paths.home()/server.json ({url, pid, db})
while it runs, so the CLI sends its commands here instead of hitting the file lock (serving.cli.remote). Its routes:
the other modules of serving.api (/api: auth, queue, data, review, sampling jobs, training runs, arena, loop) and
serving.api.gateway (/v1, OpenAI-compatible). Its background work (sampling jobs, training runs, loops) runs under
one serving.jobs.JobRunner, which the app's shutdown stops and joins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request

from db import users
from db.errors import PrefLabError
from db.paths import home
from db.store import Store
from serving.api.deps import ApiError, bearer_token, error_response, install_error_handlers, thread_reader
from serving.api.queue_front import QueueFront
from serving.api.security import LoginThrottle, user_for_token
from serving.jobs import JobRunner

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
KEEP_ALIVE_S = 75  # seconds an idle client connection stays open (nginx's default)


@dataclass(kw_only=True)
class ServerConfig:
    token_ttl_s: int = 12 * 3600  # a sign-in lasts a working day
    lease_s: int = 600  # how long an annotator holds a prompt before it returns to the queue
    # Request bodies: the largest JSON a client sends is a dataset's guidelines (200,000 characters, up to
    # ~2.4 MB as escaped JSON) or a long chat for /v1; 8 MiB leaves room and stops a huge body before it is read.
    max_body_mb: int = 8
    max_upload_mb: int = 2048  # POST /api/import, the one route allowed more; streamed to disk
    # Sign-in lockout (serving.api.security.LoginThrottle): this many failures for one name within the window lock
    # it for login_lockout_s; a client address gets 5 times as many (several annotators can share one address).
    login_max_failures: int = 10
    login_window_s: int = 300
    login_lockout_s: int = 300
    login_concurrency: int = 2  # password checks at once (argon2 takes 64 MiB and ~0.1 s of a CPU each)
    # Listening beyond localhost (run_server sets it from --host): every new password must pass the demo-password
    # check, and /v1 needs an API key even while none exists.
    public: bool = False
    arena_daily_votes: int = 500  # arena votes one user may cast a day: enough for a long session, not for a bot

    def __post_init__(self):
        if self.token_ttl_s <= 0:
            raise PrefLabError("token_ttl_s must be > 0 seconds (e.g. 43200 for 12 hours)")
        if self.lease_s <= 0:
            raise PrefLabError("lease_s must be > 0 seconds (e.g. 600 for 10 minutes)")
        if self.max_body_mb <= 0 or self.max_upload_mb < self.max_body_mb:
            raise PrefLabError("max_body_mb must be > 0 and max_upload_mb at least as large (e.g. 8 and 2048)")
        if min(self.login_max_failures, self.login_window_s, self.login_lockout_s, self.login_concurrency) <= 0:
            raise PrefLabError("login_max_failures, login_window_s, login_lockout_s and login_concurrency must be > 0")


class TimingMiddleware:
    """Server-side time per request in X-Process-Time (ms): bench/annotate.py reads it to leave out client and
    network cost. Plain ASGI rather than @app.middleware("http"), whose call_next streams every response through
    an extra task and memory channel: on a loaded 2-core machine each such hand-off waits for a CPU."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                ms = f"{(time.perf_counter() - t0) * 1000:.3f}"
                headers = list(message.get("headers", []))
                headers += [(b"x-process-time", ms.encode()), (b"server-timing", f"app;dur={ms}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


class BodyTooLargeError(ApiError):
    """Raised from a request's receive channel once its body passes the limit: FastAPI passes HTTP errors raised
    while reading the body on to the error handlers, which answer 413 with the JSON error body."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit // 2**20} MiB", field="body")


class BodyLimitMiddleware:
    """413 for a request body over the limit, before it is read: at once when Content-Length says so, else
    counted as it streams in (chunked bodies) and stopped at the limit. `upload_paths` get `upload_bytes` when
    `may_upload(scope)` says so (an admin's token: FastAPI reads a body before it checks who sent it, so without
    this anyone could make the server spool an upload to disk). Plain ASGI like TimingMiddleware."""

    def __init__(
        self, app, *, max_bytes: int, upload_bytes: int, may_upload, upload_paths: tuple[str, ...] = ("/api/import",)
    ):
        self.app, self.max_bytes, self.upload_bytes, self.upload_paths = app, max_bytes, upload_bytes, upload_paths
        self.may_upload = may_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        if scope["path"] in self.upload_paths and await anyio.to_thread.run_sync(self.may_upload, scope):
            limit = self.upload_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            return await self._refuse(limit, scope, receive, send)
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLargeError:  # read outside FastAPI's body parsing (a streaming handler): answer here
            if started:
                raise
            await self._refuse(limit, scope, receive, send)

    @staticmethod
    async def _refuse(limit, scope, receive, send):
        error = BodyTooLargeError(limit)
        # Connection: close, so the server does not wait to read the rest of a body nobody will use
        await error_response(413, error.detail, error.field, {"Connection": "close"})(scope, receive, send)


def create_app(store: Store, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving `store`: data API under /api, OpenAPI docs at /docs."""
    from serving.api import (
        arena,
        auth,
        data,
        feedback,
        gateway,
        loops,
        quality,
        queue,
        review,
        runs,
        sampling,
        settings,
        train_config,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        # stop the background jobs and store the queued submits before whoever owns the Store (run_server, a
        # test's server) closes it
        await asyncio.to_thread(app.state.runner.shutdown)
        await asyncio.to_thread(close_front, app)

    app = FastAPI(
        lifespan=lifespan,
        title="PrefLab",
        version="0.1.0",
        description="Human preference data: datasets, the annotation queue, rankings, review, export. "
        "Sign in with POST /api/auth/login and send `Authorization: Bearer <token>`. See docs/api.md.",
    )
    app.state.store = store
    app.state.config = config or ServerConfig()
    # background work, one runner for every kind: sampling jobs, training runs, loops; creating each kind records
    # the end of what a previous server left running
    runner = app.state.runner = JobRunner()
    app.state.jobs = sampling.SamplingManager(store, runner)
    app.state.runs = runs.RunManager(store, runner)
    app.state.loops = loops.LoopManager(store, runner)
    # submits answered from memory once journaled (serving.api.queue_front); the journal of a killed server is
    # stored first, and from here on every use of the Store waits for the submits acknowledged before it
    app.state.front = QueueFront(store, lease_s=app.state.config.lease_s)
    users.purge_expired_tokens(store, datetime.now())  # sign-ins that ended while the server was down
    store.set_gate(app.state.front.drain)
    install_error_handlers(app)

    config = app.state.config
    app.state.login_throttle = LoginThrottle(
        max_failures=config.login_max_failures, window_s=config.login_window_s, lockout_s=config.login_lockout_s
    )
    app.state.login_slots = anyio.CapacityLimiter(config.login_concurrency)

    app.add_middleware(TimingMiddleware)

    def may_upload(scope) -> bool:
        user = user_for_token(thread_reader(store), token) if (token := bearer_token(Request(scope))) else None
        return user is not None and user["role"] == "admin"

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.max_body_mb * 2**20,
        upload_bytes=config.max_upload_mb * 2**20,
        may_upload=may_upload,
    )

    @app.get("/api/health", tags=["server"])
    def health(request: Request) -> dict:
        """Liveness for the CLI and `preflab up`: {"ok": true}, with no sign-in. An admin's token adds the database
        path, the pid and `queue_writer`: submits acknowledged from the journal and how far the database write
        behind them is (serving.api.queue_front)."""
        token = bearer_token(request)
        user = user_for_token(thread_reader(store), token) if token else None
        if user is None or user["role"] != "admin":
            return {"ok": True}
        return {"ok": True, "db": store.path, "pid": os.getpid(), "queue_writer": app.state.front.stats()}

    for routes in (
        auth,
        queue,
        data,
        review,
        quality,
        settings,
        feedback,
        sampling,
        runs,
        train_config,
        arena,
        gateway,
        loops,
    ):
        app.include_router(routes.router)
    return app


def close_front(app: FastAPI) -> None:
    """Store the submits still queued and stop the queue's writer (idempotent)."""
    front = getattr(app.state, "front", None)
    if front is not None:
        front.close()
        app.state.store.set_gate(None)


# ---- running it ---------------------------------------------------------------------------------------


def state_file() -> Path:
    return home() / "server.json"


def is_public(host: str) -> bool:
    """Whether listening on `host` is reachable from other machines (anything but a loopback address)."""
    if host in LOCAL_HOSTS:
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost
        return True


def check_public_bind(store: Store, host: str) -> None:
    """Refuse to listen beyond this machine while an enabled user has a demo/default password."""
    if not is_public(host):
        return
    from serving.api.security import users_with_demo_passwords

    weak = users_with_demo_passwords(store)
    if weak:
        raise PrefLabError(
            f"refusing to listen on {host}: user(s) {', '.join(weak)} have a default or demo password. "
            "Set real ones with `preflab user passwd NAME` (or disable them), or listen on 127.0.0.1."
        )


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def run_server(db_path: str, *, host: str = "127.0.0.1", port: int = 8000, config: ServerConfig | None = None) -> None:
    """Open the database, write the state file, serve until interrupted, then remove the state file."""
    import uvicorn

    # DuckDB releases the GIL while a statement runs; a submit is ~13 statements, and after each the worker
    # thread waits for the GIL while the event loop or another request's thread holds it, up to the switch
    # interval (5 ms by default). 1 ms keeps a transaction (and so the Store lock) from stretching under load.
    sys.setswitchinterval(0.001)
    # Files this process creates are its user's alone: DuckDB's write-ahead log (<db>.wal, made anew after each
    # checkpoint with no way to pass a mode), the journal, exports on their way out. Store.open and the journal
    # ask for 0600 themselves; the umask covers what they cannot.
    os.umask(0o077)
    store = Store.open(db_path)
    try:
        check_public_bind(store, host)
        app = create_app(store, replace(config or ServerConfig(), public=is_public(host)))
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}"
        path = state_file()
        path.write_text(
            json.dumps({"url": url, "pid": os.getpid(), "db": str(Path(db_path).resolve())}), encoding="utf-8"
        )
        # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that kills the process
        # before the cleanup below runs, so turn it into SystemExit like Ctrl-C's KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            # keep idle connections longer than clients do (httpx drops its own after 5 s, uvicorn's default is
            # also 5 s): otherwise a request sent as the server closes the connection fails with "Server
            # disconnected", and annotators who pause seconds between submits send requests at that moment
            uvicorn.run(
                app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=KEEP_ALIVE_S
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
            app.state.runner.shutdown()
            close_front(app)
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass
    finally:
        store.close()  # a clean close checkpoints the WAL into the database file
