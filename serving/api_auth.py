"""Sign-in and users: POST /api/auth/login, POST /api/auth/logout, GET /api/me, /api/users (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from db import users as user_db
from db.store import Store
from serving import auth
from serving.deps import ApiError, bearer_token, current_user, get_store, require_role

router = APIRouter(prefix="/api", tags=["auth and users"])

Role = Literal["annotator", "reviewer", "admin"]


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=user_db.MAX_NAME)
    role: Role = "annotator"
    password: str = Field(min_length=auth.MIN_PASSWORD_LENGTH, max_length=1024)


class UserPatch(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=auth.MIN_PASSWORD_LENGTH, max_length=1024)


@router.post("/auth/login")
def login(body: LoginIn, request: Request, store: Store = Depends(get_store)) -> dict:
    """Exchange name and password for a bearer token: {token, expires_at, user}. 401 on a wrong password."""
    try:
        token, expires_at, user = auth.login(
            store, body.name, body.password, ttl_s=request.app.state.config.token_ttl_s
        )
    except auth.AuthError as e:
        raise ApiError(401, str(e), field="password") from None
    return {"token": token, "expires_at": expires_at.isoformat(timespec="seconds"), "user": user}


@router.post("/auth/logout")
def logout(request: Request, store: Store = Depends(get_store), user: dict = Depends(current_user)) -> dict:
    """End this token's session."""
    auth.logout(store, bearer_token(request))
    return {"ok": True}


@router.get("/me")
def me(user: dict = Depends(current_user)) -> dict:
    """The signed-in user: {id, name, role}."""
    return user


@router.get("/users")
def list_users(store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))) -> list[dict]:
    """Every user (never the password hash)."""
    return user_db.list_users(store)


@router.post("/users", status_code=201)
def add_user(body: UserIn, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))) -> dict:
    """Create a user with a role and a password (409 if the name is taken)."""
    return user_db.add_user(
        store, body.name, role=body.role, password_hash=auth.hash_password(body.password), created_by=admin["name"]
    )


@router.patch("/users/{name}")
def update_user(
    name: str, body: UserPatch, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Change role, disable/enable, or reset the password. Disabling or a new password ends their sessions."""
    if name == admin["name"] and (body.disabled or (body.role and body.role != "admin")):
        raise ApiError(400, "you cannot disable or demote yourself; ask another admin", field="name")
    pw_hash = auth.hash_password(body.password) if body.password is not None else None
    return user_db.update_user(store, name, role=body.role, disabled=body.disabled, password_hash=pw_hash)
