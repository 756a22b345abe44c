"""The UI's only way to the data: an HTTP client of the PrefLab server (never the DuckDB file).

    from annotate.client import get_client, ApiError
    client = get_client()                 # one per Streamlit session; the token lives in st.session_state
                                          # (and in a cookie, so a reload keeps the sign-in)
    item = client.queue_next("oasst")     # {"item": {...} | None, "progress": {...}}

Each API call is one method. A failed call raises ApiError carrying the server's
{"error": {"message", "field"}}, so pages can show it as one readable line. A 401 on any call but login
means the session expired: `get_client()` wires that to "log out and show the login page with a message".
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
AUTH_KEY = "auth"  # st.session_state[AUTH_KEY] = {"token", "expires_at", "user": {id, name, role}}
FLASH_KEY = "login_flash"  # a message the login page shows once (e.g. "your session expired")


class ApiError(Exception):
    """A request the server refused (or could not be sent). `str(e)` is the line to show a person."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        self.message, self.status, self.field = message, status, field
        super().__init__(f"{message} (field: {field})" if field else message)


class SessionExpiredError(ApiError):
    """The token is missing, expired or revoked: the person has to log in again."""


def server_url() -> str:
    """PREFLAB_URL (set by `preflab ui --server`), default the local server."""
    return os.environ.get("PREFLAB_URL", DEFAULT_URL).rstrip("/")


def _error_from(response: httpx.Response) -> ApiError:
    """Turn a 4xx/5xx into ApiError, reading {"error": {"message", "field"}} (or FastAPI's {"detail"})."""
    message, field = None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message, field = err.get("message"), err.get("field")
        elif isinstance(err, str):
            message = err
        elif "detail" in body:  # a route that raised HTTPException the FastAPI way
            detail = body["detail"]
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                message = detail[0].get("msg")
                loc = [str(p) for p in detail[0].get("loc", []) if p not in ("body", "query", "path")]
                field = ".".join(loc) or None
            else:
                message = str(detail)
    if not message:
        message = f"the server answered {response.status_code} {response.reason_phrase}"
    cls = SessionExpiredError if response.status_code == 401 else ApiError
    return cls(message, status=response.status_code, field=field)


def _ranking_body(status, ranks, all_bad, skip_reason, flag_reason, comment) -> dict:
    """The fields a submit and a change of a ranking share, as the API takes them (ids as strings, no empty text)."""
    return {
        "status": status,
        "ranks": {str(g): int(r) for g, r in (ranks or {}).items()},
        "all_bad": all_bad,
        "skip_reason": skip_reason or None,
        "flag_reason": flag_reason or None,
        "comment": comment or None,
    }


class Client:
    """One method per API call. `token` authenticates; `on_expired` runs when the server answers 401."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        http: httpx.Client | None = None,
        on_expired: Callable[[SessionExpiredError], None] | None = None,
    ):
        self.base_url = (base_url or server_url()).rstrip("/")
        self.token = token
        self.on_expired = on_expired
        self._http = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0))

    # ---- plumbing ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        """Send one request; raise ApiError on a refusal, SessionExpiredError (after on_expired) on 401."""
        headers = kwargs.pop("headers", {}) or {}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if "params" in kwargs:  # drop unset filters so the server sees only what the person chose
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None and v != ""}
        try:
            response = self._http.request(method, self.base_url + path, headers=headers, **kwargs)
        except httpx.TransportError as e:
            raise ApiError(
                f"cannot reach the PrefLab server at {self.base_url} ({type(e).__name__}). "
                "Start it with `preflab server`, or point the UI at it with `preflab ui --server URL`."
            ) from e
        if response.status_code >= 400:
            error = _error_from(response)
            if isinstance(error, SessionExpiredError) and auth and self.token and self.on_expired:
                self.on_expired(error)
            raise error
        return response

    def get(self, path: str, **params) -> Any:
        """GET path?params -> JSON. Also the way for pages of other areas (runs, arena) to reach their routes."""
        return self.request("GET", path, params=params).json()

    def post(self, path: str, payload: dict | None = None) -> Any:
        return self.request("POST", path, json=payload or {}).json()

    def patch(self, path: str, payload: dict) -> Any:
        return self.request("PATCH", path, json=payload).json()

    # ---- auth -------------------------------------------------------------------------------------

    def login(self, name: str, password: str) -> dict:
        """-> {token, expires_at, user}; the token is kept on this client."""
        data = self.request("POST", "/api/auth/login", auth=False, json={"name": name, "password": password}).json()
        self.token = data["token"]
        return data

    def logout(self) -> None:
        """Tell the server to forget the token (best effort: an unreachable server still logs the UI out)."""
        if self.token:
            try:
                self.request("POST", "/api/auth/logout", auth=True)
            except ApiError:
                pass
        self.token = None

    def me(self) -> dict:
        return self.get("/api/me")

    # ---- datasets ---------------------------------------------------------------------------------

    def datasets(self) -> list[dict]:
        data = self.get("/api/datasets")
        return data.get("datasets", data) if isinstance(data, dict) else data

    def create_dataset(self, name: str, **fields) -> dict:
        return self.post("/api/datasets", {"name": name, **fields})

    def update_dataset(self, name: str, **fields) -> dict:
        return self.patch(f"/api/datasets/{name}", fields)

    # ---- ranking ----------------------------------------------------------------------------------

    def queue_next(self, dataset: str | None = None) -> dict:
        """-> {"item": {assignment_id, dataset, prompt, answers, guidelines, guideline_version} | None,
        "progress": {done_today, remaining}}"""
        return self.get("/api/queue/next", dataset=dataset)

    def submit_ranking(
        self,
        assignment_id: int,
        *,
        status: str = "submitted",
        ranks: dict[int, int] | None = None,
        all_bad: bool = False,
        skip_reason: str | None = None,
        flag_reason: str | None = None,
        comment: str | None = None,
        time_on_task_ms: int | None = None,
    ) -> dict:
        """-> {ranking_id, next: <same shape as queue_next>}"""
        payload = _ranking_body(status, ranks, all_bad, skip_reason, flag_reason, comment)
        return self.post(
            "/api/rankings", {"assignment_id": assignment_id, **payload, "time_on_task_ms": time_on_task_ms}
        )

    def release(self, assignment_id: int) -> dict:
        """Give a lease back (the annotator moved to another dataset): the prompt returns to the queue now."""
        return self.post(f"/api/assignments/{assignment_id}/release")

    def my_rankings(self, *, limit: int = 20, offset: int = 0, dataset: str | None = None) -> list[dict]:
        """Your rankings, newest first: [{id, prompt_id, dataset, status, snippet, created_at, editable, ...}]."""
        return self.get("/api/rankings/mine", limit=limit, offset=offset, dataset=dataset)

    def my_ranking(self, ranking_id: int) -> dict:
        """One of your rankings as you saw it: {prompt, answers (your order), ranks, status, editable, ...}."""
        return self.get(f"/api/rankings/{ranking_id}")

    def change_ranking(
        self,
        ranking_id: int,
        *,
        status: str = "submitted",
        ranks: dict[int, int] | None = None,
        all_bad: bool = False,
        skip_reason: str | None = None,
        flag_reason: str | None = None,
        comment: str | None = None,
    ) -> dict:
        """Change one of your rankings while its prompt is open (PUT /api/rankings/{id}); -> my_ranking's shape."""
        payload = _ranking_body(status, ranks, all_bad, skip_reason, flag_reason, comment)
        return self.request("PUT", f"/api/rankings/{ranking_id}", json=payload).json()

    def asset(self, prompt_id: int, index: int) -> bytes:
        """The bytes of a prompt's asset (the image of a visual question)."""
        return self.request("GET", f"/api/prompts/{prompt_id}/assets/{index}").content

    # ---- review -----------------------------------------------------------------------------------

    def stats(self, dataset: str | None = None) -> dict:
        return self.get("/api/stats", dataset=dataset)

    def disagreements(self, dataset: str | None = None, limit: int | None = None) -> list[dict]:
        data = self.get("/api/review/disagreements", dataset=dataset, limit=limit)
        return data.get("prompts", data.get("disagreements", [])) if isinstance(data, dict) else data

    def prompt_rankings(self, prompt_id: int) -> dict:
        """-> {prompt, answers, rankings: [{annotator, ranks, ...}]}"""
        return self.get(f"/api/prompts/{prompt_id}/rankings")

    def adjudicate(self, prompt_id: int, ranks: dict[int, int], comment: str | None = None) -> dict:
        payload = {
            "prompt_id": prompt_id,
            "ranks": {str(g): int(r) for g, r in ranks.items()},
            "comment": comment or None,
        }
        return self.post("/api/adjudications", payload)

    # ---- data -------------------------------------------------------------------------------------

    def import_file(
        self,
        filename: str,
        content: bytes,
        *,
        dataset: str,
        fmt: str = "auto",
        dry_run: bool = False,
        skip_invalid: bool = False,
    ) -> dict:
        """Upload a file to import; -> the import report (counts, errors)."""
        form = {
            "dataset": dataset,
            "format": fmt,
            "dry_run": str(dry_run).lower(),
            "skip_invalid": str(skip_invalid).lower(),
        }
        files = {"file": (filename, content, "application/octet-stream")}
        return self.request("POST", "/api/import", data=form, files=files).json()

    def export(self, **filters) -> tuple[bytes, dict]:
        """-> (file bytes, response headers); filters: format, dataset, split, min_annotators, ..."""
        response = self.request("GET", "/api/export", params=filters)
        return response.content, dict(response.headers)

    # ---- users ------------------------------------------------------------------------------------

    def users(self) -> list[dict]:
        data = self.get("/api/users")
        return data.get("users", data) if isinstance(data, dict) else data

    def add_user(self, name: str, role: str, password: str) -> dict:
        return self.post("/api/users", {"name": name, "role": role, "password": password})

    def update_user(self, name: str, **fields) -> dict:
        """fields: role, disabled, password."""
        return self.patch(f"/api/users/{quote(name, safe='')}", fields)  # an older name may hold a '/'

    # ---- engines, models and sampling -------------------------------------------------------------

    def engines(self) -> list[dict]:
        data = self.get("/api/engines")
        return data.get("engines", data) if isinstance(data, dict) else data

    def models(self) -> list[dict]:
        data = self.get("/api/models")
        return data.get("models", data.get("data", data)) if isinstance(data, dict) else data

    def start_sampling(self, **params) -> dict:
        """params: dataset, engine, model, n, temperature, top_p, max_tokens, seed."""
        return self.post("/api/sampling-jobs", params)

    def sampling_jobs(self) -> list[dict]:
        data = self.get("/api/sampling-jobs")
        return data.get("jobs", data) if isinstance(data, dict) else data

    def sampling_job(self, job_id: int | str) -> dict:
        return self.get(f"/api/sampling-jobs/{job_id}")

    def cancel_sampling(self, job_id: int | str) -> dict:
        return self.post(f"/api/sampling-jobs/{job_id}/cancel")


# ---- Streamlit glue -------------------------------------------------------------------------------


def _shared_http() -> httpx.Client:
    """One pooled httpx client per UI process (thread-safe), shared by every session."""
    import streamlit as st

    @st.cache_resource(show_spinner=False)
    def _make() -> httpx.Client:
        return httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0))

    return _make()


def _expire_session(error: SessionExpiredError) -> None:
    import streamlit as st

    st.session_state.pop(AUTH_KEY, None)
    st.session_state[FLASH_KEY] = "Your session has expired. Please log in again."
    forget_sign_in()
    st.rerun()


# ---- the sign-in cookie: a reload (F5) keeps you signed in ------------------------------------------------
#
# A reload starts a new Streamlit session with empty session state; the browser's cookies come with it
# (st.context.cookies, read-only). The token is written to a cookie by a small script in the page, since Streamlit
# cannot set one itself: SameSite=Strict, Secure over https, expiring with the token. It is never put in a URL.
# The API reads only the Authorization header, never this cookie, so the cookie adds no cross-site request risk.

COOKIE = "preflab_session"
COOKIE_KEY = "auth_cookie"  # st.session_state: (token, max-age seconds) to write, or (None, 0) to clear
COOKIE_CHECKED = "auth_cookie_checked"  # the cookie was read once this session (it does not change until a reload)


def cookie_script(token: str | None, max_age_s: int) -> str:
    """A <script> that sets the sign-in cookie to `token` for `max_age_s` seconds, or clears it (token None)."""
    value = json.dumps(token or "").replace("<", "\\u003c")  # a JS string literal that cannot end the script
    age = max(0, int(max_age_s)) if token else 0
    return (
        "<script>(function(){var secure=location.protocol==='https:'?'; Secure':'';"
        f"document.cookie='{COOKIE}='+encodeURIComponent({value})+'; Max-Age={age}; Path=/; SameSite=Strict'+secure;"
        "})();</script>"
    )


def remember_sign_in(auth: dict) -> None:
    """After a login: write the cookie on the next page render, expiring when the token does."""
    import streamlit as st

    max_age = 12 * 3600  # the server's default token lifetime, if its expiry cannot be read
    raw = auth.get("expires_at")
    if raw:
        try:
            expires = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            now = datetime.now(expires.tzinfo) if expires.tzinfo else datetime.now()
            max_age = int((expires - now).total_seconds())
        except ValueError:
            pass
    if max_age > 0:
        st.session_state[COOKIE_KEY] = (auth["token"], max_age)


def forget_sign_in() -> None:
    """Clear the cookie on the next page render (log out, expired or refused token)."""
    import streamlit as st

    st.session_state[COOKIE_KEY] = (None, 0)


def write_cookie() -> None:
    """Render the pending cookie change, if any (an invisible script element)."""
    import streamlit as st

    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending is not None:
        st.html(cookie_script(*pending), unsafe_allow_javascript=True)


def read_cookie() -> str | None:
    """The token in the sign-in cookie the browser sent when this session started, if any."""
    import streamlit as st

    return st.context.cookies.get(COOKIE) or None


def restore_sign_in(token: str) -> dict | None:
    """A token from the cookie, checked with GET /api/me: the session's auth dict, or None (and the cookie is
    cleared) if the server refuses it. An unreachable server keeps the cookie for the next try."""
    client = Client(server_url(), token=token, http=_shared_http())
    try:
        user = client.me()
    except SessionExpiredError:
        forget_sign_in()
        return None
    except ApiError:
        return None
    return {"token": token, "expires_at": None, "user": user}


def get_client() -> Client:
    """The client for this Streamlit session: the shared connection pool plus this person's token."""
    import streamlit as st

    auth = st.session_state.get(AUTH_KEY) or {}
    return Client(server_url(), token=auth.get("token"), http=_shared_http(), on_expired=_expire_session)


def current_user() -> dict | None:
    """{id, name, role} of the logged-in person, or None."""
    import streamlit as st

    auth = st.session_state.get(AUTH_KEY)
    return auth.get("user") if auth else None


# ---- engines: what each serves, serving an adapter (Admin page) --------------------------------------------


def engine_models(client: Client, engine: str) -> dict:
    """{"engine", "models", "live"}: the models ENGINE serves now (GET /api/engines/{name}/models)."""
    return client.get(f"/api/engines/{engine}/models")


def serve_adapter(client: Client, model: str, engine: str | None = None, timeout_s: float = 300.0) -> dict:
    """Serve registered adapter MODEL (hot-load, or start an engine): {"model", "engine", "action", "models"}.
    Waits up to `timeout_s` (plus a margin) for an engine to start, longer than the client's usual 60 s."""
    body = {"engine": engine, "timeout": timeout_s}
    return client.request("POST", f"/api/models/{model}/serve", json=body, timeout=timeout_s + 30).json()
