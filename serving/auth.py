"""Passwords and tokens: argon2id hashes (memory-hard), random bearer tokens stored as sha256 with an expiry.

    from serving.auth import hash_password, login, user_for_token
    token, expires_at, user = login(store, "alice", "s3cret")   # AuthError on a wrong name or password

The same message answers an unknown user and a wrong password (no user enumeration), and an unknown
user costs one argon2 verify too, so timing says little either.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from db import users as user_db
from db.errors import PrefLabError
from db.store import Store

DEFAULT_TOKEN_TTL_S = 12 * 3600  # one working day
# Passwords the demo and the docs use: a server reachable from other machines refuses to start with them.
DEMO_PASSWORDS = ("admin", "annotator", "reviewer", "password", "demo", "preflab", "changeme", "secret")
MIN_PASSWORD_LENGTH = 4

# argon2id, 64 MiB, t=3: the library's RFC 9106 "low memory" profile. PREFLAB_KDF_MEMORY_KIB lowers the memory
# for test suites only (hashes record their own parameters, so verifying works across settings).
_hasher = PasswordHasher(
    memory_cost=int(os.environ.get("PREFLAB_KDF_MEMORY_KIB", "65536")),
    time_cost=3 if "PREFLAB_KDF_MEMORY_KIB" not in os.environ else 1,
)
_DUMMY_HASH = _hasher.hash("not a real password")


class AuthError(PrefLabError):
    """Sign-in failed; the message never says whether the user exists."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PrefLabError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        _safe_verify(_DUMMY_HASH, password)  # same cost as a real check
        return False
    return _safe_verify(password_hash, password)


def _safe_verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _Throttle:
    """Slows repeated failures per name: after 5 misses in a minute each attempt waits a little longer."""

    def __init__(self):
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def delay_for(self, name: str) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._fails.get(name, []) if now - t < 60]
            self._fails[name] = recent
            return 0.0 if len(recent) < 5 else min(0.2 * (len(recent) - 4), 2.0)

    def failed(self, name: str) -> None:
        with self._lock:
            self._fails.setdefault(name, []).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._fails.pop(name, None)


_throttle = _Throttle()


def login(store: Store, name: str, password: str, *, ttl_s: int = DEFAULT_TOKEN_TTL_S) -> tuple[str, datetime, dict]:
    """A new token for `name` if the password matches and the user is enabled; AuthError otherwise."""
    delay = _throttle.delay_for(name)
    if delay:
        time.sleep(delay)
    user = user_db.get_user(store, name, with_hash=True)
    ok = verify_password(user["password_hash"] if user else None, password)
    if not ok or user is None or user["disabled"]:
        _throttle.failed(name)
        raise AuthError("wrong user name or password (or the account is disabled)")
    _throttle.succeeded(name)
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now() + timedelta(seconds=ttl_s)
    user_db.add_token(store, token_hash(token), user["id"], expires_at)
    return token, expires_at, public_user(user)


def user_for_token(store: Store, token: str) -> dict | None:
    """{id, name, role} for a live token of an enabled user, else None."""
    user = user_db.user_for_token_hash(store, token_hash(token), datetime.now())
    return public_user(user) if user else None


def logout(store: Store, token: str) -> None:
    user_db.delete_token(store, token_hash(token))


def public_user(user: dict) -> dict:
    return {"id": user["id"], "name": user["name"], "role": user["role"]}


def users_with_demo_passwords(store: Store) -> list[str]:
    """Enabled users whose password is one of DEMO_PASSWORDS or equal to their name (checked by hash)."""
    candidates = list(DEMO_PASSWORDS)
    try:  # whatever `preflab up --demo` hands out is a demo password by definition
        from serving.up import DEMO_USERS

        candidates += [pw for _, _, pw in DEMO_USERS if pw not in candidates]
    except ImportError:
        pass
    found = []
    for user in user_db.list_users(store, with_hash=True):
        if user["disabled"] or not user["password_hash"]:
            continue
        for candidate in (*candidates, user["name"]):
            if _safe_verify(user["password_hash"], candidate):
                found.append(user["name"])
                break
    return found
