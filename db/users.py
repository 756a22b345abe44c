"""Users and API tokens (SQL only; hashing lives in serving.api.security, which the db package may not import).

from db import users
users.add_user(store, "alice", role="annotator", password_hash=h, created_by="admin")
"""

from __future__ import annotations

import re
import threading
from datetime import datetime

from db.errors import ConflictError, InputError, NotFoundError
from db.store import Store

ROLES = ("annotator", "reviewer", "admin")
MAX_NAME = 64
# Letters (any script), digits, '.', '_', '-'; starting with a letter or digit. No '/', spaces or control
# characters, so a name is safe in a URL path (PATCH /api/users/{name}), a file name and a log line.
NAME_RULE = f"1-{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
_NAME = re.compile(r"[^\W_][\w.\-]*")

# Signed-in tokens already looked up: {(database path, token hash): (user, token expiry)}. Every request checks its
# token, and on the server a DuckDB read after an idle moment costs tens of ms (docs/benchmarks.md), so a known
# token is answered from memory. Whatever changes who may sign in (update_user, delete_token) clears it; the
# expiry is checked on every use. Only this process's writes are seen, which is why only the server (the one
# process that holds the database) relies on it.
_tokens: dict[tuple[str, str], tuple[dict, datetime]] = {}
_tokens_lock = threading.Lock()
_tokens_generation = [0]  # bumped by each clear: a lookup that raced a change does not fill the cache
_TOKENS_MAX = 10_000


def forget_tokens() -> None:
    """Clear the signed-in token cache (after changing users or tokens by hand, as a test does)."""
    with _tokens_lock:
        _tokens.clear()
        _tokens_generation[0] += 1


_COLUMNS = "id, name, role, disabled, kind, created_by, CAST(created_at AS VARCHAR) AS created_at"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InputError(f"unknown role '{role}': use one of {', '.join(ROLES)}", field="role")


def check_name(name: str) -> None:
    """InputError unless `name` follows NAME_RULE. Only new names are checked: users imported or created before
    the rule keep signing in and can be managed under their old names."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.fullmatch(name) or ".." in name:
        raise InputError(f"invalid user name {name!r}: use {NAME_RULE}", field="name")


def same_name(store: Store, name: str) -> dict | None:
    """The user whose name equals `name` ignoring case (ADMIN and admin are one name), else None."""
    folded = name.casefold()
    for user in store.query("SELECT id, name FROM users"):
        if user["name"].casefold() == folded:
            return user
    return None


def get_user(store: Store, name: str, *, with_hash: bool = False) -> dict | None:
    cols = _COLUMNS + (", password_hash" if with_hash else "")
    rows = store.query(f"SELECT {cols} FROM users WHERE name = ?", [name])  # constant columns
    return rows[0] if rows else None


def require_user(store: Store, name: str) -> dict:
    user = get_user(store, name)
    if user is None:
        raise NotFoundError(f"no user named '{name}'")
    return user


def list_users(store: Store, *, with_hash: bool = False, humans_only: bool = False) -> list[dict]:
    cols = _COLUMNS + (", password_hash" if with_hash else "")
    where = "WHERE kind = 'human'" if humans_only else ""
    return store.query(f"SELECT {cols} FROM users {where} ORDER BY name")


def add_user(store: Store, name: str, *, role: str, password_hash: str | None, created_by: str) -> dict:
    """Create a human user; an imported annotator of the same name (no password) is upgraded instead."""
    check_name(name)
    _check_role(role)
    with store.transaction():
        existing = get_user(store, name, with_hash=True)
        if existing is None and (other := same_name(store, name)) is not None:
            raise ConflictError(f"user '{other['name']}' already exists (user names ignore case)")
        if existing is not None:
            if existing["password_hash"] or existing["kind"] == "human":
                raise ConflictError(f"user '{name}' already exists (use `user passwd` or PATCH /api/users/{name})")
            store.con.execute(
                "UPDATE users SET role = ?, password_hash = ?, kind = 'human' WHERE id = ?",
                [role, password_hash, existing["id"]],
            )
        else:
            store.con.execute(
                "INSERT INTO users (name, role, password_hash, kind, created_by) VALUES (?, ?, ?, 'human', ?)",
                [name, role, password_hash, created_by],
            )
    return require_user(store, name)


def update_user(
    store: Store,
    name: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    password_hash: str | None = None,
) -> dict:
    """Change role, disabled flag or password; disabling or a new password ends the user's sessions."""
    user = require_user(store, name)
    if role is not None:
        _check_role(role)
    with store.transaction():
        if role is not None:
            store.con.execute("UPDATE users SET role = ? WHERE id = ?", [role, user["id"]])
        if disabled is not None:
            store.con.execute("UPDATE users SET disabled = ? WHERE id = ?", [disabled, user["id"]])
        if password_hash is not None:
            store.con.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user["id"]])
        if disabled or password_hash is not None:
            store.con.execute("DELETE FROM api_tokens WHERE user_id = ?", [user["id"]])
    forget_tokens()  # a new role, a disabled account or a new password: every cached sign-in is looked up again
    return require_user(store, name)


def add_token(store: Store, token_hash: str, user_id: int, expires_at: datetime) -> None:
    with store._lock:
        store.con.execute(
            "INSERT INTO api_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
            [token_hash, user_id, expires_at],
        )


def user_for_token_hash(store: Store, token_hash: str, now: datetime) -> dict | None:
    """{id, name, role} of an enabled user whose token this is and has not expired, else None."""
    key = (store.path, token_hash)
    hit = _tokens.get(key)
    if hit is not None and hit[1] > now:
        return dict(hit[0])
    generation = _tokens_generation[0]
    rows = store.query(
        "SELECT u.id, u.name, u.role, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = ? AND t.expires_at > ? AND NOT u.disabled",
        [token_hash, now],
    )
    if not rows:
        return None
    user = rows[0]
    expires_at = user.pop("expires_at")
    with _tokens_lock:
        if generation == _tokens_generation[0]:
            if len(_tokens) >= _TOKENS_MAX:
                _tokens.clear()
            _tokens[key] = (dict(user), expires_at)
    return user


def delete_token(store: Store, token_hash: str) -> None:
    with store._lock:
        store.con.execute("DELETE FROM api_tokens WHERE token_hash = ?", [token_hash])
    forget_tokens()


def purge_expired_tokens(store: Store, now: datetime) -> int:
    """Delete the tokens that expired before `now` (the server does it when it starts); returns how many."""
    with store._lock:
        return store.con.execute("DELETE FROM api_tokens WHERE expires_at <= ?", [now]).fetchall()[0][0]
