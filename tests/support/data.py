"""Helpers shared by the tests: seed a dataset with prompts (and answers), create users, sign in."""

from __future__ import annotations

import json
import os

# a cheap argon2 setting for tests (the default, 64 MiB x 3 passes, is meant to be slow)
os.environ.setdefault("PREFLAB_KDF_MEMORY_KIB", "1024")

from db import users
from db.hashing import prompt_hash, text_hash
from db.staging import Batch
from db.store import Store

PASSWORD = "correct horse battery"


def add_prompts(store: Store, dataset: str, texts) -> None:
    """One single-turn user prompt per text in `dataset` (no answers): what a sampling job starts from."""
    b = Batch()
    for text in texts:
        msgs = [{"role": "user", "content": text}]
        b.prompts.append({"key": prompt_hash(msgs), "messages": json.dumps(msgs, ensure_ascii=False)})
    store.write_batch(dataset, b, created_by="test")


def seed(store: Store, dataset: str = "d", *, prompts: int = 3, answers: int = 4, k: int = 1, texts=None) -> list[int]:
    """`prompts` prompts with `answers` answers each (model names model-0..); returns the prompt ids."""
    b = Batch()
    for i in range(prompts):
        msgs = [{"role": "user", "content": f"question {i} ¿qué? 東京 🗼"}]
        key = prompt_hash(msgs)
        b.prompts.append({"key": key, "messages": json.dumps(msgs, ensure_ascii=False)})
        for j in range(answers):
            text = texts[j] if texts else f"answer {j} to question {i}"
            b.generations.append(
                {
                    "prompt_key": key,
                    "gen_key": text_hash(text),
                    "text": text,
                    "model": f"secret-model-{j}",
                    "kind": "model",
                }
            )
    store.write_batch(dataset, b, created_by="test")
    store.con.execute("UPDATE datasets SET annotators_per_prompt = ? WHERE name = ?", [k, dataset])
    return [
        r[0]
        for r in store.con.execute(
            "SELECT p.id FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE d.name = ? ORDER BY p.id",
            [dataset],
        ).fetchall()
    ]


def add_user(store: Store, name: str, role: str = "annotator", password: str | None = PASSWORD) -> int:
    """A human user; password=None makes one that cannot sign in (and skips the deliberately slow hash)."""
    from serving.api.security import hash_password

    pw_hash = hash_password(password) if password is not None else None
    return users.add_user(store, name, role=role, password_hash=pw_hash, created_by="test")["id"]


def signed_in(client, name: str, password: str = PASSWORD) -> dict:
    """Headers with a bearer token for `name` (asserts the login worked)."""
    r = client.post("/api/auth/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def rank_all(item: dict, first_tie: bool = False) -> dict[str, int]:
    """Ranks for every answer of an API item in the order shown (1, 2, ...); `first_tie` ties the first two."""
    ids = [a["id"] for a in item["answers"]]
    ranks = {str(g): i + 1 for i, g in enumerate(ids)}
    if first_tie:
        ranks[str(ids[1])] = 1
    return ranks
