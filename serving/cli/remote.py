"""The CLI's HTTP transport: when a server holds the database, commands send their work there.

    url = remote.server_url(ctx)          # None: no server runs for this database; use the file
    if url:
        from serving.cli import remote
        report = remote.import_file(url, path, dataset="demo", format="oasst")

The CLI signs in with `preflab login NAME` (token in PREFLAB_HOME/token) or PREFLAB_TOKEN. Server errors
come back as PrefLabError with the server's one-line message, so the CLI prints them like local ones.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from db.errors import InputError, NotFoundError, PrefLabError
from db.paths import home
from db.store import DEFAULT_DB

TIMEOUT = httpx.Timeout(30.0, read=3600.0)  # long imports and exports stream for a while


def server_url(ctx=None) -> str | None:
    """URL of the PrefLab server that holds this database, or None: then the command opens the file itself.

    PREFLAB_URL wins; otherwise the server's state file (PREFLAB_HOME/server.json) counts when its process is
    alive and it serves the same database file as the --db of `ctx` (a click context; its root's obj holds
    db_path), or PREFLAB_DB. Commands that work through a
    server (import, export, stats, sample) call serving.cli.remote when this returns a URL.
    """
    if os.environ.get("PREFLAB_URL"):
        return os.environ["PREFLAB_URL"].rstrip("/")
    state = home() / "server.json"
    try:
        info = json.loads(state.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ctx is not None:
        root = ctx.find_root()
        db_path = (root.obj or {}).get("db_path") or os.environ.get("PREFLAB_DB", DEFAULT_DB)
        if info.get("db") and Path(db_path).resolve() != Path(info["db"]):
            return None
    return str(info["url"]).rstrip("/")


def token_path() -> Path:
    return home() / "token"


def token() -> str | None:
    if os.environ.get("PREFLAB_TOKEN"):
        return os.environ["PREFLAB_TOKEN"]
    try:
        return token_path().read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        message = err["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    if response.status_code == 401:
        message += " (run `preflab login NAME`, or set PREFLAB_TOKEN)"
    if response.status_code == 404:
        raise NotFoundError(message)
    if response.status_code in (400, 413, 422):
        raise InputError(message)  # the server's message already names file, line and field
    if response.status_code >= 500:
        raise PrefLabError(f"the server failed: {message}")
    raise PrefLabError(message)


class Client:
    """A signed-in HTTP client of one server."""

    def __init__(self, base_url: str, api_token: str | None = None):
        self.base = base_url.rstrip("/")
        tok = api_token if api_token is not None else token()
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise PrefLabError(f"cannot reach the PrefLab server at {self.base}: {e}") from e
        _raise_for(response)
        return response

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs).json()


# ---- sign-in --------------------------------------------------------------------------------------------


def login(base_url: str, name: str, password: str) -> tuple[Path, str]:
    """Sign in and store the token (readable by this user only); returns (token file, expires_at)."""
    with Client(base_url, api_token="") as c:
        data = c.post("/api/auth/login", json={"name": name, "password": password})
    path = token_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data["token"])
    return path, data["expires_at"]


def logout() -> None:
    base = server_url()
    if base and token():
        try:
            with Client(base) as c:
                c.post("/api/auth/logout")
        except PrefLabError:
            pass
    token_path().unlink(missing_ok=True)


# ---- the commands that work through a server ----------------------------------------------------------


def import_file(
    base_url: str,
    path: str | Path,
    *,
    dataset: str | None = None,
    fmt: str = "auto",
    dry_run: bool = False,
    skip_invalid: bool = False,
) -> dict:
    """Upload `path` to POST /api/import; returns the server's report (see serving.api.data.import_report)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    form = {"format": fmt or "auto", "dry_run": str(dry_run).lower(), "skip_invalid": str(skip_invalid).lower()}
    if dataset:
        form["dataset"] = dataset
    with Client(base_url) as c, open(path, "rb") as fh:
        data = c.post("/api/import", data=form, files={"file": (path.name, fh, "application/octet-stream")})
    return data["report"]


def export(base_url: str, fmt: str, out: str | Path, **options) -> dict:
    """Stream GET /api/export into `out` (a zip of several files is unpacked next to it, as a local export
    would write them). Files appear only when complete. Returns {snapshot_id, counts, paths}."""
    out = Path(out)
    params = {"format": fmt, "out_name": out.name}
    params.update(
        {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items() if v is not None}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".part-{os.getpid()}-{out.name}")
    with Client(base_url) as c:
        try:
            with c.http.stream("GET", "/api/export", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                with open(tmp, "wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
                headers = response.headers
        except httpx.TransportError as e:
            tmp.unlink(missing_ok=True)
            raise PrefLabError(f"cannot reach the PrefLab server at {base_url}: {e}") from e
    counts = json.loads(headers.get("X-PrefLab-Counts") or "{}")
    if headers.get("content-type", "").startswith("application/zip"):
        with zipfile.ZipFile(tmp) as z:
            names = z.namelist()
            z.extractall(out.parent)
        tmp.unlink()
        paths = [out.parent / n for n in names]
    else:
        tmp.replace(out)
        paths = [out]
    return {"snapshot_id": headers.get("X-PrefLab-Snapshot"), "counts": counts, "paths": [str(p) for p in paths]}


def stats(base_url: str, *, dataset: str | None = None, source: str = "all") -> dict:
    params = {"source": source, **({"dataset": dataset} if dataset else {})}
    with Client(base_url) as c:
        return c.get("/api/stats", params=params)


def sample(
    base_url: str,
    *,
    dataset: str,
    model: str,
    engine: str | None = None,
    progress: Callable[[dict], None] | None = None,
    poll_s: float = 1.0,
    **params,
) -> dict:
    """Start a sampling job on the server and follow it until it ends; Ctrl-C cancels it. The final job row."""
    body = {"dataset": dataset, "model": model, "engine": engine, **{k: v for k, v in params.items() if v is not None}}
    with Client(base_url) as c:
        job = c.post("/api/sampling-jobs", json=body)
        try:
            while job["status"] in ("queued", "running"):
                if progress:
                    progress(job)
                time.sleep(poll_s)
                job = c.get(f"/api/sampling-jobs/{job['id']}")
        except KeyboardInterrupt:
            c.post(f"/api/sampling-jobs/{job['id']}/cancel")
            raise
        if progress:
            progress(job)
    if job["status"] == "failed":
        raise PrefLabError(f"sampling job {job['id']} failed: {job.get('error')}")
    return job


def dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
