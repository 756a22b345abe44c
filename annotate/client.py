"""The UI's only way to the data: an HTTP client of the PrefLab server (never the DuckDB file).

    from annotate.session import get_client   # the Streamlit pages' way in: one per session, token in session state
    client = get_client()
    item = client.queue_next("oasst")     # {"item": {...} | None, "progress": {...}}

Each API call is one method. A failed call raises ApiError carrying the server's
{"error": {"message", "field"}}, so pages can show it as one readable line. A 401 on any call but login
means the session expired: annotate.session's `get_client()` wires that to "log out and show the login page with a
message".
"""

from __future__ import annotations

import os
from collections.abc import Callable
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

    def formats(self) -> dict:
        """{"import": [names], "export": [{name, suffix, description}]} (admin)."""
        return self.get("/api/formats")

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

    # ---- annotator quality and gold items ---------------------------------------------------------------

    def annotators(self, dataset: str) -> dict:
        """-> {dataset, annotators: [{annotator, quality, pair_agreement, tau_b, gold_accuracy, median_seconds,
        too_fast, first_best, position_bias, tie_rate, all_bad_rate, paused, weight, gold_flagged, ...}], series}"""
        return self.get("/api/annotators", dataset=dataset)

    def set_annotator_control(
        self, name: str, dataset: str, *, paused: bool | None = None, weight: float | None = None
    ) -> dict:
        """Pause or resume NAME in DATASET, or set the weight of their votes (0 excludes them)."""
        body = {"dataset": dataset, "paused": paused, "weight": weight}
        return self.post(f"/api/annotators/{quote(name, safe='')}/controls", body)

    def gold(self, dataset: str) -> dict:
        """-> {dataset, rate, items: [{prompt_id, kind, created_by, created_at, rankings, preview}]}"""
        return self.get("/api/gold", dataset=dataset)

    def mark_gold(self, prompt_id: int, ranks: dict[int, int], *, kind: str = "order") -> dict:
        """Make a prompt gold with its known ranks (kind 'order') or its one best answer (kind 'best', {id: 1})."""
        payload = {"prompt_id": prompt_id, "ranks": {str(g): int(r) for g, r in ranks.items()}, "kind": kind}
        return self.post("/api/gold", payload)

    def unmark_gold(self, prompt_id: int) -> dict:
        return self.request("DELETE", f"/api/gold/{prompt_id}").json()

    def set_gold_rate(self, dataset: str, rate: float) -> dict:
        """The share of each annotator's items that are gold (0 turns gold items off, at most 0.5)."""
        return self.post("/api/gold/rate", {"dataset": dataset, "rate": rate})

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


def engine_models(client: Client, engine: str) -> dict:
    """{"engine", "models", "live"}: the models ENGINE serves now (GET /api/engines/{name}/models)."""
    return client.get(f"/api/engines/{engine}/models")


def serve_adapter(client: Client, model: str, engine: str | None = None, timeout_s: float = 300.0) -> dict:
    """Serve registered adapter MODEL (hot-load, or start an engine): {"model", "engine", "action", "models"}.
    Waits up to `timeout_s` (plus a margin) for an engine to start, longer than the client's usual 60 s."""
    body = {"engine": engine, "timeout": timeout_s}
    return client.request("POST", f"/api/models/{model}/serve", json=body, timeout=timeout_s + 30).json()


# ---- richer feedback: aspect ratings, rationale, thumbs, dataset settings -------------------------------------


def submit_feedback(
    client: Client,
    assignment_id: int,
    *,
    status: str = "submitted",
    ranks: dict[int, int] | None = None,
    ratings: dict[int, dict[str, float]] | None = None,
    rationale: str | None = None,
    thumbs: dict[int, bool] | None = None,
    all_bad: bool = False,
    skip_reason: str | None = None,
    flag_reason: str | None = None,
    comment: str | None = None,
    time_on_task_ms: int | None = None,
) -> dict:
    """POST /api/rankings with the dataset's extra feedback: `ratings` {answer id: {aspect: value}}, `rationale`
    and, for a 'rate' task, `thumbs` {answer id: bool} (and no ranks). -> {ranking_id, next}."""
    body = {"assignment_id": assignment_id, **_ranking_body(status, ranks, all_bad, skip_reason, flag_reason, comment)}
    body["time_on_task_ms"] = time_on_task_ms
    if ratings:
        body["ratings"] = {str(g): dict(values) for g, values in ratings.items() if values}
    if rationale and rationale.strip():
        body["rationale"] = rationale.strip()
    if thumbs:
        body["thumbs"] = {str(g): bool(label) for g, label in thumbs.items()}
    return client.post("/api/rankings", body)


def dataset_settings(client: Client, name: str) -> dict:
    """{dataset, task, aspects, rationale, gold_rate, presets: {helpsteer2: [...]}} (reviewer, admin)."""
    return client.get(f"/api/datasets/{quote(name, safe='')}/settings")


def save_dataset_settings(client: Client, name: str, **fields) -> dict:
    """PUT the settings: any of task ('rank'|'rate'), aspects (a list, [] or "helpsteer2"), rationale, selection
    ('order'|'uncertainty') (admin)."""
    return client.request("PUT", f"/api/datasets/{quote(name, safe='')}/settings", json=fields).json()


def recompute_priorities(client: Client, name: str) -> dict:
    """POST: the server scores every prompt of the dataset for active selection -> {pairs, ensemble, novelty, ...}
    (admin; 400 while the dataset has no ranked pairs)."""
    return client.request("POST", f"/api/datasets/{quote(name, safe='')}/priorities").json()


def give_thumbs(
    client: Client,
    *,
    label: bool,
    battle_id: int | None = None,
    side: str | None = None,
    generation_id: int | None = None,
    comment: str | None = None,
) -> dict:
    """POST /api/feedback: a thumbs up (True) or down on an arena answer (battle_id + side) or a generation."""
    body = {"label": label, "battle_id": battle_id, "side": side, "generation_id": generation_id, "comment": comment}
    return client.post("/api/feedback", {k: v for k, v in body.items() if v is not None})
