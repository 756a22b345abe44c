"""Content hashes that make imports idempotent and snapshots identifiable.

The prompt hash is defined on a plain rendering (not on JSON) so that SQL can compute the same value:
for each message, role + U+001F + content + U+001E, then sha256 as hex. `db.importers.fastimport` relies on that.
"""

from __future__ import annotations

import hashlib

UNIT_SEP, RECORD_SEP = "\x1f", "\x1e"


def text_hash(text: str) -> str:
    """sha256 hex of a UTF-8 string: the identity of an answer within its prompt."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_hash(messages: list[dict]) -> str:
    """Identity of a conversation context, independent of key order or extra fields."""
    rendered = "".join(f"{m['role']}{UNIT_SEP}{m['content']}{RECORD_SEP}" for m in messages)
    return text_hash(rendered)


# The same definition in DuckDB SQL, for a single-user-turn prompt held in column `p`.
SQL_USER_PROMPT_HASH = "sha256('user' || chr(31) || {col} || chr(30))"
