"""Sign-in and users: POST /api/auth/login, POST /api/auth/logout, GET /api/me, /api/users (admin)."""

from __future__ import annotations

import functools
import math
from typing import Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from db import users as user_db
from db.store import Store
from serving.api import security
from serving.api.deps import ApiError, bearer_token, current_user, get_store, require_role

router = APIRouter(prefix="/api", tags=["auth and users"])

Role = Literal["annotator", "reviewer", "admin"]


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=user_db.MAX_NAME)
    role: Role = "annotator"
    password: str = Field(min_length=security.MIN_PASSWORD_LENGTH, max_length=1024)


class UserPatch(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=security.MIN_PASSWORD_LENGTH, max_length=1024)


def _refuse_if_locked(throttle: security.LoginThrottle, name: str, address: str | None) -> None:
    wait = throttle.retry_after(name, address)
    if wait > 0:
        raise ApiError(
            429,
            f"too many failed sign-ins for this name or from this address: try again in {math.ceil(wait)} s",
            field="name",
            headers={"Retry-After": str(math.ceil(wait))},
        )


@router.post("/auth/login")
async def login(body: LoginIn, request: Request) -> dict:
    """Exchange name and password for a bearer token: {token, expires_at, user}. 401 on a wrong password, 429
    with Retry-After while the name or the client address is locked out after repeated failures.

    Async on purpose: a locked-out attempt is answered on the event loop without touching a worker thread, and
    the password check (argon2, deliberately slow) runs on at most `login_concurrency` threads, so a flood of
    guesses queues here instead of taking every worker thread from the other requests."""
    state = request.app.state
    address = request.client.host if request.client else None
    _refuse_if_locked(state.login_throttle, body.name, address)
    async with state.login_slots:
        _refuse_if_locked(state.login_throttle, body.name, address)  # locked while this one waited its turn
        try:
            token, expires_at, user = await anyio.to_thread.run_sync(
                functools.partial(
                    security.login, get_store(request), body.name, body.password, ttl_s=state.config.token_ttl_s
                )
            )
        except security.AuthError as e:
            state.login_throttle.failed(body.name, address)
            raise ApiError(401, str(e), field="password") from None
    state.login_throttle.succeeded(body.name)
    return {"token": token, "expires_at": expires_at.isoformat(timespec="seconds"), "user": user}


@router.post("/auth/logout")
def logout(request: Request, store: Store = Depends(get_store), user: dict = Depends(current_user)) -> dict:
    """End this token's session."""
    security.logout(store, bearer_token(request))
    return {"ok": True}


@router.get("/me")
def me(user: dict = Depends(current_user)) -> dict:
    """The signed-in user: {id, name, role}."""
    return user


@router.get("/users")
def list_users(store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))) -> list[dict]:
    """Every user (never the password hash)."""
    return user_db.list_users(store)


def _check_new_password(request: Request, name: str, password: str) -> None:
    if request.app.state.config.public:  # the start-up rule (check_public_bind) holds for every later password
        security.check_public_password(name, password)


@router.post("/users", status_code=201)
def add_user(
    body: UserIn, request: Request, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Create a user with a role and a password (409 if the name is taken, ignoring case). Names: letters,
    digits, '.', '_', '-', starting with a letter or digit (db.users.NAME_RULE)."""
    user_db.check_name(body.name)
    _check_new_password(request, body.name, body.password)
    return user_db.add_user(
        store, body.name, role=body.role, password_hash=security.hash_password(body.password), created_by=admin["name"]
    )


@router.patch("/users/{name:path}")  # :path: a user named before the name rule may hold a '/' (send it as %2F)
def update_user(
    name: str,
    body: UserPatch,
    request: Request,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Change role, disable/enable, or reset the password. Disabling or a new password ends their sessions."""
    if name == admin["name"] and (body.disabled or (body.role and body.role != "admin")):
        raise ApiError(400, "you cannot disable or demote yourself; ask another admin", field="name")
    if body.password is not None:
        user_db.require_user(store, name)  # 404 before a password complaint about nobody
        _check_new_password(request, name, body.password)
    pw_hash = security.hash_password(body.password) if body.password is not None else None
    return user_db.update_user(store, name, role=body.role, disabled=body.disabled, password_hash=pw_hash)
