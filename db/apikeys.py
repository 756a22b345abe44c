"""API keys for the /v1 gateway: created once (the key is shown then and never again), stored as sha256.

key = create_key(store, "ci-bot", created_by="admin")   # 'pl-...'
check_key(store, key)                                   # the key's name, or None
"""

from __future__ import annotations

import hashlib
import secrets

from db.errors import ConflictError, InputError, NotFoundError
from db.store import Store

KEY_PREFIX = "pl-"


def _hash(key: str) -> str:
    # The keys are 32 random bytes: a plain sha256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: Store, name: str, *, created_by: str) -> str:
    """Create a key called `name` and return it (the only time the plain key is available)."""
    if not name or not name.strip():
        raise InputError("an API key needs a name, e.g. `preflab apikey create ci-bot`", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with store.transaction():
        if store._first("SELECT 1 FROM api_keys WHERE name = ?", [name]):
            raise ConflictError(f"an API key named '{name}' exists; revoke it or choose another name")
        store.con.execute(
            "INSERT INTO api_keys (name, key_hash, prefix, created_by) VALUES (?, ?, ?, ?)",
            [name, _hash(key), key[: len(KEY_PREFIX) + 4], created_by],
        )
    return key


def list_keys(store: Store) -> list[dict]:
    return store.query(
        "SELECT name, prefix, revoked, CAST(last_used_at AS VARCHAR) AS last_used_at, created_by, "
        "CAST(created_at AS VARCHAR) AS created_at FROM api_keys ORDER BY name"
    )


def revoke_key(store: Store, name: str) -> None:
    with store.transaction():
        if not store._first("SELECT 1 FROM api_keys WHERE name = ?", [name]):
            raise NotFoundError(f"no API key named '{name}' (see `preflab apikey list`)")
        store.con.execute("UPDATE api_keys SET revoked = true WHERE name = ?", [name])


def keys_required(store: Store, *, public: bool = False) -> bool:
    """Whether /v1 requests need a key: always on a server reachable from other machines (`public`), and on
    localhost once any active key exists."""
    return public or bool(store.scalar("SELECT count(*) FROM api_keys WHERE NOT revoked"))


def check_key(store: Store, key: str | None) -> str | None:
    """The name of the active key `key`, or None (unknown, revoked or missing)."""
    if not key:
        return None
    with store._lock:
        row = store._first("SELECT name FROM api_keys WHERE key_hash = ? AND NOT revoked", [_hash(key)])
        if row:
            store.con.execute("UPDATE api_keys SET last_used_at = current_timestamp WHERE name = ?", [row[0]])
    return row[0] if row else None
