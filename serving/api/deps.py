"""What every /api router shares: the Store, the signed-in user, role checks and the JSON error format.

    from serving.api.deps import get_store, read_store, current_user, require_role, ApiError

    @router.get("/api/things")
    def things(store=Depends(get_store), user=Depends(require_role("reviewer", "admin"))):
        ...
        raise ApiError(404, "no thing named 'x'", field="name")

Every error a client can cause comes back as a 4xx with the body {"error": {"message": ..., "field": ...}}
(`field` names the offending input, or is null). `install_error_handlers(app)` maps PrefLabError,
pydantic validation errors, DuckDB constraint violations and HTTPException to that shape, so bad input
never turns into a 500.
"""

from __future__ import annotations

import logging
import threading
import weakref

import duckdb
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.errors import ConflictError, ForbiddenError, InputError, LimitError, NotFoundError, PrefLabError
from db.store import Store

log = logging.getLogger(__name__)

ROLES = ("annotator", "reviewer", "admin")


class ApiError(HTTPException):
    """An HTTP error with the field it is about: `raise ApiError(400, "rank must be >= 1", field="ranks.12")`."""

    def __init__(self, status_code: int, message: str, *, field: str | None = None, headers: dict | None = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.field = field


def error_body(message: str, field: str | None = None) -> dict:
    return {"error": {"message": message, "field": field}}


def error_response(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, field), status_code=status, headers=headers)


# ---- dependencies ---------------------------------------------------------------------------------


def get_store(request: Request) -> Store:
    """The one Store of this server process (set by serving.api.app.create_app on app.state.store)."""
    return request.app.state.store


def read_store(request: Request):
    """A Store on its own DuckDB cursor, for long reads (export, stats, review): they see a consistent snapshot
    and do not hold the main connection's lock, so annotators keep submitting meanwhile. Closed after the
    request. Writes belong on get_store."""
    reader = get_store(request).cursor()
    try:
        yield reader
    finally:
        reader.close()


_thread_readers = threading.local()


def thread_reader(store: Store) -> Store:
    """A Store on this worker thread's own DuckDB cursor, for short reads of committed data (the signed-in user,
    the next item's texts and progress) that need not wait for the main connection's lock while another request
    writes. Cached per thread; closing the main Store closes its cursors. Writes belong on get_store."""
    readers = getattr(_thread_readers, "stores", None)
    if readers is None:
        readers = _thread_readers.stores = weakref.WeakKeyDictionary()
    reader = readers.get(store)
    if reader is None:
        reader = readers[store] = store.cursor()
    return reader


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_user(request: Request) -> dict:
    """The signed-in user {id, name, role} from `Authorization: Bearer <token>`; 401 if missing or invalid.

    Reads the Store from the app itself rather than through Depends(get_store): FastAPI runs every sync
    dependency in a worker thread of its own, and on a loaded 2-core machine each hand-off waits for a CPU.
    The token is looked up on the thread's own cursor (thread_reader), off the lock writers hold."""
    from serving.api.security import user_for_token  # auth imports this module's ApiError

    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "sign in first: send 'Authorization: Bearer <token>' (POST /api/auth/login gives one)",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = user_for_token(thread_reader(get_store(request)), token)
    if user is None:
        raise ApiError(
            401,
            "the token is unknown, expired or its user is disabled: sign in again",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.user = user
    return user


def require_role(*roles: str):
    """A dependency that returns the user dict if their role is one of `roles`, else 403 (401 if not signed in)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"require_role needs roles from {ROLES}, got {roles}")

    async def _check(user: dict = Depends(current_user)) -> dict:  # no I/O: no worker-thread hop
        if user["role"] not in roles:
            raise ApiError(403, f"this needs the role {' or '.join(roles)}; you are {user['role']}", field=None)
        return user

    return _check


# ---- error handlers -------------------------------------------------------------------------------


def _loc_field(loc: tuple | list) -> str | None:
    # ('body', 'ranks', '12') -> 'ranks.12'; ('query', 'dataset') -> 'dataset'
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or (str(loc[0]) if loc else None)


def install_error_handlers(app: FastAPI) -> None:
    """Make every client error a 4xx with {"error": {"message", "field"}}; log real 500s with a traceback."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        field = getattr(exc, "field", None)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, message, field, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = tuple(first.get("loc") or ())
        field = _loc_field(loc)
        if first.get("type") == "json_invalid":
            status, message = 400, f"the request body is not valid JSON: {first.get('msg')}"
            field = "body"
        else:
            status = 422
            message = f"{field or 'request'}: {first.get('msg', 'invalid value')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return error_response(status, message, field)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError):
        return error_response(400, str(exc), exc.field)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError):
        return error_response(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError):
        return error_response(409, str(exc))

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError):
        return error_response(403, str(exc))

    @app.exception_handler(LimitError)
    async def _limit(request: Request, exc: LimitError):
        return error_response(429, str(exc))

    @app.exception_handler(PrefLabError)
    async def _preflab(request: Request, exc: PrefLabError):
        return error_response(400, str(exc))

    @app.exception_handler(duckdb.ConstraintException)
    async def _constraint(request: Request, exc: duckdb.ConstraintException):
        return error_response(409, f"conflicts with stored data: {exc}")

    @app.exception_handler(UnicodeDecodeError)
    async def _unicode(request: Request, exc: UnicodeDecodeError):
        return error_response(400, f"the request is not valid UTF-8: {exc.reason} at byte {exc.start}", "body")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
