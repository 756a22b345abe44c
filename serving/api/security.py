"""Passwords and tokens: argon2id hashes (memory-hard), random bearer tokens stored as sha256 with an expiry.

    from serving.api.security import hash_password, login, user_for_token
    token, expires_at, user = login(store, "alice", "s3cret")   # AuthError on a wrong name or password

The same message answers an unknown user and a wrong password (no user enumeration), and an unknown
user costs one argon2 verify too, so timing says little either. Repeated failures lock a name and a client
address out for a while (LoginThrottle, applied by serving.api.auth before any hashing).
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
from db.errors import InputError, PrefLabError
from db.store import Store

DEFAULT_TOKEN_TTL_S = 12 * 3600  # one working day
# Passwords the demo and the docs use: a server reachable from other machines refuses to start with them.
# The users `preflab up --demo` creates (name, role, password): their passwords count as demo passwords too.
DEMO_USERS = [("admin", "admin", "admin"), ("alice", "annotator", "annotator"), ("bob", "annotator", "annotator")]
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


class LoginThrottle:
    """Locks out a sign-in name, and a client address, after too many failures, without ever sleeping.

    `max_failures` misses for one name within `window_s` lock that name for `lockout_s`; an address gets
    `address_factor` times as many (an office or a classroom behind one NAT shares an address). A locked
    attempt is refused before any password hashing (serving.api.auth), so a flood of guesses costs the server
    almost nothing and other users' requests stay fast. State is in memory: a restart forgets it.
    """

    MAX_KEYS = 100_000  # bounds the memory a spray of made-up names can take

    def __init__(self, *, max_failures: int = 10, window_s: float = 300, lockout_s: float = 300, address_factor=5):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.address_factor = address_factor
        self._fails: dict[tuple[str, str], list[float]] = {}
        self._locked: dict[tuple[str, str], float] = {}  # key -> monotonic time the lockout ends
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("name", name.casefold())]
        if address:
            keys.append(("address", address))
        return keys

    def retry_after(self, name: str, address: str | None) -> float:
        """Seconds until `name` from `address` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            return max([self._locked.get(key, now) - now for key in self._keys(name, address)] + [0.0])

    def failed(self, name: str, address: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) > self.MAX_KEYS:
                self._prune(now)
            for key in self._keys(name, address):
                limit = self.max_failures * (self.address_factor if key[0] == "address" else 1)
                recent = [t for t in self._fails.get(key, []) if now - t < self.window_s]
                recent.append(now)
                if len(recent) >= limit:
                    self._locked[key] = now + self.lockout_s
                    self._fails.pop(key, None)
                else:
                    self._fails[key] = recent

    def succeeded(self, name: str) -> None:
        """A right password clears the name's misses (not the address's: one good account does not buy an
        address more guesses at others)."""
        with self._lock:
            self._fails.pop(("name", name.casefold()), None)

    def _prune(self, now: float) -> None:
        self._fails = {k: v for k, v in self._fails.items() if v and now - v[-1] < self.window_s}
        self._locked = {k: t for k, t in self._locked.items() if t > now}
        if len(self._fails) > self.MAX_KEYS:  # still full: forget the oldest half
            keep = sorted(self._fails, key=lambda k: self._fails[k][-1])[len(self._fails) // 2 :]
            self._fails = {k: self._fails[k] for k in keep}


def login(store: Store, name: str, password: str, *, ttl_s: int = DEFAULT_TOKEN_TTL_S) -> tuple[str, datetime, dict]:
    """A new token for `name` if the password matches and the user is enabled; AuthError otherwise. Costs one
    argon2 verify whether or not the user exists. Throttling is the caller's (LoginThrottle)."""
    user = user_db.get_user(store, name, with_hash=True)
    ok = verify_password(user["password_hash"] if user else None, password)
    if not ok or user is None or user["disabled"]:
        raise AuthError("wrong user name or password (or the account is disabled)")
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


def _demo_passwords() -> list[str]:
    candidates = list(DEMO_PASSWORDS)
    candidates += [pw for _, _, pw in DEMO_USERS if pw not in candidates]
    return candidates


def check_public_password(name: str, password: str) -> None:
    """InputError if `password` is one a server reachable from other machines refuses: a demo or default
    password, or the user's own name (ignoring case). The same rule as users_with_demo_passwords at start-up."""
    weak = {p.casefold() for p in _demo_passwords()} | {name.casefold()}
    if password.casefold() in weak:
        raise InputError(
            "this server listens beyond localhost: choose a password that is not a demo or default one "
            "and not the user's name",
            field="password",
        )


def users_with_demo_passwords(store: Store) -> list[str]:
    """Enabled users whose password is one of DEMO_PASSWORDS or equal to their name (checked by hash)."""
    candidates = _demo_passwords()
    found = []
    for user in user_db.list_users(store, with_hash=True):
        if user["disabled"] or not user["password_hash"]:
            continue
        for candidate in (*candidates, user["name"]):
            if _safe_verify(user["password_hash"], candidate):
                found.append(user["name"])
                break
    return found
