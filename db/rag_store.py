"""SQL for RAG collections, documents and chunks (the vectors themselves are in faiss files on disk)."""

from __future__ import annotations

import json
import re

from db.errors import InputError, NotFoundError
from db.store import Store

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_collection_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InputError(
            f"bad collection name '{name}': use letters, digits, '_', '.', '-' (max 64, no '/')", field="collection"
        )
    return name


def ensure_collection(
    store: Store, name: str, *, embedding_model: str, dim: int, chunk_size: int, overlap: int, created_by: str
) -> dict:
    check_collection_name(name)
    with store._lock:
        if not store._first("SELECT 1 FROM rag_collections WHERE name = ?", [name]):
            store.con.execute(
                "INSERT INTO rag_collections (name, embedding_model, dim, chunk_size, overlap, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [name, embedding_model, dim, chunk_size, overlap, created_by],
            )
    return get_collection(store, name)


def get_collection(store: Store, name: str) -> dict:
    rows = store.query(
        "SELECT c.*, (SELECT count(*) FROM rag_documents d WHERE d.collection = c.name) AS documents, "
        "(SELECT count(*) FROM rag_chunks k WHERE k.collection = c.name) AS chunks "
        "FROM rag_collections c WHERE c.name = ?",
        [name],
    )
    if not rows:
        known = ", ".join(r["name"] for r in list_collections(store)) or "none"
        raise NotFoundError(f"no RAG collection named '{name}' (known: {known}); create it with `preflab rag ingest`")
    return rows[0]


def list_collections(store: Store) -> list[dict]:
    return store.query(
        "SELECT c.name, c.embedding_model, c.index_kind, c.chunk_size, c.overlap, "
        "(SELECT count(*) FROM rag_documents d WHERE d.collection = c.name) AS documents, "
        "(SELECT count(*) FROM rag_chunks k WHERE k.collection = c.name) AS chunks "
        "FROM rag_collections c ORDER BY c.name"
    )


def set_index_kind(store: Store, name: str, kind: str) -> None:
    with store._lock:
        store.con.execute("UPDATE rag_collections SET index_kind = ? WHERE name = ?", [kind, name])


def document_hashes(store: Store, collection: str) -> dict[str, str]:
    """source -> content hash of what is stored now."""
    rows = store.query("SELECT source, content_hash FROM rag_documents WHERE collection = ?", [collection])
    return {r["source"]: r["content_hash"] for r in rows}


def replace_document(
    store: Store,
    collection: str,
    *,
    source: str,
    title: str,
    content_hash: str,
    chunks: list[dict],
    metadata: dict | None,
    created_by: str,
) -> tuple[int, list[int], list[int]]:
    """Store a document's chunks, replacing an older version of the same source. Call inside a transaction.

    `chunks`: dicts with ordinal, text, heading, start, end. Returns (document id, new chunk ids, removed
    chunk ids); the caller puts the new vectors under the new ids and drops the removed ones from the index.
    """
    c = store.con
    meta = json.dumps(metadata or {}, ensure_ascii=False)
    row = store._first("SELECT id FROM rag_documents WHERE collection = ? AND source = ?", [collection, source])
    removed: list[int] = []
    if row:
        doc_id = row[0]
        removed = [r[0] for r in c.execute("SELECT id FROM rag_chunks WHERE document_id = ?", [doc_id]).fetchall()]
        c.execute("DELETE FROM rag_chunks WHERE document_id = ?", [doc_id])
        # UPDATE keeps the id (a DELETE + INSERT of one unique key inside a transaction trips DuckDB)
        c.execute(
            "UPDATE rag_documents SET title = ?, content_hash = ?, n_chunks = ?, metadata = ? WHERE id = ?",
            [title, content_hash, len(chunks), meta, doc_id],
        )
    else:
        doc_id = c.execute(
            "INSERT INTO rag_documents (collection, source, title, content_hash, n_chunks, metadata, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [collection, source, title, content_hash, len(chunks), meta, created_by],
        ).fetchall()[0][0]
    ids = [r[0] for r in c.execute("SELECT nextval('seq_rag_chunks') FROM range(?)", [len(chunks)]).fetchall()]
    if chunks:
        c.executemany(
            "INSERT INTO rag_chunks (id, document_id, collection, ordinal, text, heading, start_char, end_char) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [i, doc_id, collection, ch["ordinal"], ch["text"], ch["heading"], ch["start"], ch["end"]]
                for i, ch in zip(ids, chunks, strict=True)
            ],
        )
    return doc_id, ids, removed


def chunks_by_ids(store: Store, ids: list[int]) -> dict[int, dict]:
    """chunk id -> chunk with its document's source and title (ids not stored are absent)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = store.query(
        "SELECT k.id AS chunk_id, k.document_id, k.ordinal, k.text, k.heading, d.source, d.title "
        f"FROM rag_chunks k JOIN rag_documents d ON d.id = k.document_id WHERE k.id IN ({marks})",
        ids,
    )
    return {r["chunk_id"]: r for r in rows}


def chunk_texts(store: Store, collection: str) -> tuple[list[int], list[str]]:
    """All (ids, texts) of a collection, for the BM25 side of hybrid search."""
    with store._lock:
        rows = store.con.execute(
            "SELECT id, text FROM rag_chunks WHERE collection = ? ORDER BY id", [collection]
        ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def collection_version(store: Store, collection: str) -> tuple[int, int]:
    """(chunk count, max chunk id): changes whenever chunks are added or replaced."""
    row = store.query(
        "SELECT count(*) AS n, coalesce(max(id), 0) AS m FROM rag_chunks WHERE collection = ?", [collection]
    )[0]
    return int(row["n"]), int(row["m"])


def list_documents(store: Store, collection: str) -> list[dict]:
    return store.query(
        "SELECT id, source, title, n_chunks, content_hash, CAST(created_at AS VARCHAR) AS created_at "
        "FROM rag_documents WHERE collection = ? ORDER BY source",
        [collection],
    )
