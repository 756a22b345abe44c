"""A pool of engines behind one model name: least outstanding requests, retry elsewhere, health marking.

    pool = EnginePool(registry.resolve_pool("tiny"))
    member, resp = await pool.send("chat/completions", body)   # the member that answered, its response
    await pool.aclose()

Every registry record that serves the name is a member (local vLLM, local transformers, external URLs).
A request goes to the healthy member with the fewest requests in flight from this process; a connection
error, a timeout or a 5xx is retried on another member (on the same one, after a backoff, when there is
no other). A member whose request failed is health-checked (GET /health, else GET /v1/models); failing
that it is out: chosen only when no member is healthy, and checked again every HEALTH_INTERVAL seconds
until it passes. The state (healthy/out, last error, requests in flight per process) is shared by every
pool of this process and written to engine-pool.json under db.paths.home(), which `list_engines` reads
so `preflab engine list` and GET /api/engines show it from any process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable

import httpx

from db import paths

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 2.0  # seconds between checks of a member that is out
HEALTH_TIMEOUT = 2.0
STATE_FILE = "engine-pool.json"
WRITE_EVERY = 0.5  # seconds: in-flight counts are written at most this often

_lock = threading.Lock()
_state: dict[tuple[str, str], dict] = {}  # (engine name, url) -> healthy, error, since, next_check, outstanding
_write_timer: threading.Timer | None = None
_last_write = 0.0


class PoolError(Exception):
    """Every attempt failed; the message names the last error."""


def _key(target: dict) -> tuple[str, str]:
    return target["engine"], target["url"]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _entry(key: tuple[str, str]) -> dict:
    """This process's state of one member (caller holds _lock); seeded from the shared file's health."""
    if key not in _state:
        seen = _read_file().get("health", {}).get(key[0], {})
        out = seen.get("url") == key[1] and seen.get("healthy") is False
        _state[key] = {"healthy": not out, "error": seen.get("error") if out else None,
                       "since": seen.get("since") if out else None, "next_check": 0.0, "outstanding": 0,
                       "chosen": 0}  # fmt: skip
    return _state[key]


# ---- the shared state file -----------------------------------------------------------------------------------


def _path():
    return paths.home() / STATE_FILE


def _read_file() -> dict:
    try:
        return json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_now() -> None:
    """Merge this process's state into the file (under a lock, so processes do not lose each other's)."""
    global _write_timer, _last_write
    with _lock:
        _write_timer = None
        _last_write = time.monotonic()
        mine = {k: dict(v) for k, v in _state.items()}
    home = paths.home()
    if not home.is_dir():
        return
    try:
        with open(home / "engine-pool.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data = _read_file()
            health = data.get("health", {})
            for (name, url), s in mine.items():
                health[name] = {"url": url, "healthy": s["healthy"], "error": s["error"], "since": s["since"]}
            busy = {p: v for p, v in data.get("outstanding", {}).items() if p.isdigit() and _pid_running(int(p))}
            busy[str(os.getpid())] = {n: s["outstanding"] for (n, _), s in mine.items() if s["outstanding"]}
            tmp = _path().with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"health": health, "outstanding": busy}, ensure_ascii=False, indent=1),
                           encoding="utf-8")  # fmt: skip
            os.replace(tmp, _path())
    except OSError as e:  # the file is a view for people; routing never depends on it
        log.warning("could not write %s: %s", _path(), e)


def _persist(now: bool = False) -> None:
    """Write the state now (health changed) or within WRITE_EVERY seconds (in-flight counts changed)."""
    global _write_timer
    with _lock:
        if not now and (_write_timer is not None or time.monotonic() - _last_write < WRITE_EVERY):
            if _write_timer is None:
                _write_timer = threading.Timer(WRITE_EVERY, _write_now)
                _write_timer.daemon = True
                _write_timer.start()
            return
    _write_now()


def member_state(record: dict) -> dict:
    """{state, outstanding, error, since} of one registry record as this process and the file know it.

    state: "out" when the pool took it out (or a local engine's process is gone), else "healthy".
    outstanding: requests in flight to it, summed over the processes that use it.
    """
    data = _read_file()
    seen = data.get("health", {}).get(record["name"], {})
    key = (record["name"], record["url"])
    with _lock:
        mine = dict(_state[key]) if key in _state else None
    if mine is not None:
        healthy, error, since = mine["healthy"], mine["error"], mine["since"]
    elif seen.get("url") == record["url"]:
        healthy, error, since = seen.get("healthy", True), seen.get("error"), seen.get("since")
    else:
        healthy, error, since = True, None, None
    outstanding = sum(int(v.get(record["name"], 0)) for p, v in data.get("outstanding", {}).items()
                      if p != str(os.getpid()) and p.isdigit() and _pid_running(int(p)))  # fmt: skip
    outstanding += mine["outstanding"] if mine else 0
    return {"state": "healthy" if healthy else "out", "outstanding": outstanding, "error": error, "since": since}


# ---- health ---------------------------------------------------------------------------------------------------


async def check_health(target: dict, transport: httpx.AsyncBaseTransport | None = None) -> str | None:
    """None when the member answers GET /health (or, where that route is missing, GET /v1/models) with 200;
    otherwise why not."""
    headers = {"Authorization": f"Bearer {target['api_key']}"} if target.get("api_key") else {}
    root = target["url"].removesuffix("/v1")
    try:
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT, headers=headers, transport=transport) as c:
            r = await c.get(root + "/health")
            if r.status_code == 404:
                r = await c.get(target["url"] + "/models")
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}".rstrip(": ")
    return None if r.status_code == 200 else f"health check answered HTTP {r.status_code}"


def mark(target: dict, error: str | None) -> None:
    """Record a member's health: error None puts it in the pool, a message takes it out."""
    with _lock:
        e = _entry(_key(target))
        changed = e["healthy"] != (error is None)
        e["healthy"], e["error"] = error is None, error
        if changed:
            e["since"] = _now_iso()
        if error is not None:
            e["next_check"] = time.monotonic() + HEALTH_INTERVAL
    if changed:
        log.warning("engine %s at %s is %s", target["engine"], target["url"], f"out: {error}" if error else "back")
    _persist(now=changed)


async def check_members(targets: list[dict], transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Health-check every member now and record the result (for `preflab engine list`)."""
    errors = await asyncio.gather(*(check_health(t, transport) for t in targets))
    for t, err in zip(targets, errors, strict=True):
        mark(t, err)


# ---- the pool -------------------------------------------------------------------------------------------------


class EnginePool:
    """Spread requests for one model over its members; see the module docstring. One per event loop."""

    def __init__(self, targets: list[dict], *, timeout: httpx.Timeout | float = 600.0,
                 limits: httpx.Limits | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:  # fmt: skip
        if not targets:
            raise ValueError("a pool needs at least one member")
        self.targets = list(targets)
        self._timeout, self._limits, self._transport = timeout, limits, transport
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}
        self._checks: set[asyncio.Task] = set()

    def _client(self, target: dict) -> httpx.AsyncClient:
        key = _key(target)
        if key not in self._clients:
            headers = {"Authorization": f"Bearer {target['api_key']}"} if target.get("api_key") else {}
            kw = {"limits": self._limits} if self._limits else {}
            self._clients[key] = httpx.AsyncClient(base_url=target["url"].rstrip("/") + "/", headers=headers,
                                                   timeout=self._timeout, transport=self._transport, **kw)  # fmt: skip
        return self._clients[key]

    def choose(self, tried: set[tuple[str, str]] = frozenset()) -> dict:
        """The member for the next attempt, counted as in flight: healthy and not tried for this request
        first, then healthy, then any (a pool whose members are all out still tries them). Ties go to the
        member chosen least often, so an idle pool takes turns."""
        with _lock:
            states = [(t, _entry(_key(t))) for t in self.targets]
            for ok in (lambda k, s: s["healthy"] and k not in tried, lambda k, s: s["healthy"], lambda k, s: True):
                cands = [(t, s) for t, s in states if ok(_key(t), s)]
                if cands:
                    break
            target, s = min(cands, key=lambda ts: (ts[1]["outstanding"], ts[1]["chosen"]))
            s["outstanding"] += 1
            s["chosen"] += 1
        _persist()
        self._recheck_due()
        return target

    def release(self, target: dict) -> None:
        """One request to `target` is over (answered, failed or its stream closed)."""
        with _lock:
            s = _entry(_key(target))
            s["outstanding"] = max(0, s["outstanding"] - 1)
        _persist()

    def _recheck_due(self) -> None:
        """Start a background health check of each out member whose next check is due."""
        now = time.monotonic()
        due = []
        with _lock:
            for t in self.targets:
                s = _entry(_key(t))
                if not s["healthy"] and now >= s["next_check"]:
                    s["next_check"] = now + HEALTH_INTERVAL
                    due.append(t)
        for t in due:
            self._spawn_check(t)

    def _spawn_check(self, target: dict) -> None:
        async def run() -> None:
            mark(target, await check_health(target, self._transport))

        try:
            task = asyncio.get_running_loop().create_task(run())
        except RuntimeError:  # no loop: the next request checks it
            return
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def send(self, path: str, body: dict | Callable[[dict], dict], *, attempts: int = 3,
                   backoff_s: float = 0.5, stream: bool = False,
                   cancelled: Callable[[], bool] | None = None) -> tuple[dict, httpx.Response]:  # fmt: skip
        """POST `path` (relative to the members' /v1) to the pool; returns (member, response).

        `body` may be a function of the member (per-backend fields). Retried on another member: transport
        errors and timeouts, 429 and 5xx; any other response is returned as it is. With `stream` the
        response is open and the member stays counted in flight until the caller calls `release(member)`.
        Raises PoolError after `attempts` failures (or when `cancelled()` turns true between attempts).
        """
        tried: set[tuple[str, str]] = set()
        last = "no attempt"
        for attempt in range(attempts):
            if cancelled is not None and cancelled():
                raise PoolError("cancelled")
            target = self.choose(tried)
            if attempt and _key(target) in tried:  # nowhere else to go: give it time
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
            tried.add(_key(target))
            payload = body(target) if callable(body) else body
            client = self._client(target)
            keep = False
            try:
                resp = await client.send(client.build_request("POST", path, json=payload), stream=stream)
                if resp.status_code == 429 or resp.status_code >= 500:
                    text = (await resp.aread()).decode("utf-8", "replace")[:300] if stream else resp.text[:300]
                    await resp.aclose()
                    last = f"{target['engine']}: HTTP {resp.status_code}: {text}"
                    if resp.status_code >= 500:
                        self._spawn_check(target)
                    continue
                with _lock:
                    healthy = _entry(_key(target))["healthy"]
                if not healthy:
                    mark(target, None)  # it answered: back in the pool
                keep = stream
                return target, resp
            except httpx.TransportError as e:  # connect/read errors, a dropped connection, timeouts
                last = f"{target['engine']}: {type(e).__name__}: {e}".rstrip(": ")
                if isinstance(e, httpx.ConnectError):
                    mark(target, last)  # refused or unreachable: what a health check would find
                else:
                    self._spawn_check(target)
            finally:
                if not keep:
                    self.release(target)
        raise PoolError(f"gave up after {attempts} attempts: {last}")

    async def aclose(self) -> None:
        """Close the members' connections (health checks still running finish on their own)."""
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
