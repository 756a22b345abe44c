"""Ingest files into a collection: load -> chunk -> embed -> store chunks (DuckDB) + vectors (faiss).

Unchanged files (same content hash) are skipped; a changed file's chunks are replaced; an unreadable file is
reported in IngestReport.failed and nothing of it is written. Chunk rows and the index files change together:
the index files are written to temporary names inside the database transaction and renamed after it commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from db import rag_store
from db.hashing import text_hash
from db.store import Store
from serving.rag import embed
from serving.rag.chunking import ChunkConfig, chunk_document
from serving.rag.index import CollectionIndex, IndexConfig
from serving.rag.loaders import LoadError, expand_paths, load_path

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RagConfig:
    chunk_size: int = 800
    overlap: int = 120
    batch_size: int = 64  # embedding batch
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self):
        ChunkConfig(chunk_size=self.chunk_size, overlap=self.overlap)  # validates the sizes


@dataclass
class IngestReport:
    collection: str
    added: list[str] = field(default_factory=list)  # new sources
    replaced: list[str] = field(default_factory=list)  # sources whose content changed
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks: int = 0  # chunks written now
    index_kind: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def embedding_text(title: str, heading: str | None, text: str) -> str:
    """What gets embedded: the chunk with its heading (or document title) in front, for context."""
    return f"{heading or title}\n{text}"


def ingest_paths(
    store: Store,
    paths: list[str | Path],
    *,
    collection: str,
    config: RagConfig | None = None,
    progress: bool = False,
    created_by: str = "cli",
) -> IngestReport:
    """Ingest files and folders into `collection` (created if missing). Returns what happened per file."""
    cfg = config or RagConfig()
    rag_store.check_collection_name(collection)
    report = IngestReport(collection=collection)
    docs = []
    for path in expand_paths(paths):
        try:
            docs.extend(load_path(path))
        except LoadError as e:
            log.warning("skipped %s", e)
            report.failed.append((str(path), str(e)))
    coll = rag_store.ensure_collection(
        store,
        collection,
        embedding_model=embed.MODEL_NAME,
        dim=embed.DIM,
        chunk_size=cfg.chunk_size,
        overlap=cfg.overlap,
        created_by=created_by,
    )
    stored = rag_store.document_hashes(store, collection)
    chunk_cfg = ChunkConfig(chunk_size=cfg.chunk_size, overlap=cfg.overlap)
    todo = []
    for doc in docs:
        h = text_hash(doc.text)
        if stored.get(doc.source) == h:
            report.unchanged.append(doc.source)
            continue
        chunks = chunk_document(doc.text, chunk_cfg)
        todo.append((doc, h, chunks))
    report.index_kind = coll["index_kind"]
    if not todo:
        return report
    texts = [embedding_text(d.title, c.heading, c.text) for d, _, chunks in todo for c in chunks]
    vectors = embed.embed_texts(texts, batch_size=cfg.batch_size, progress=progress)
    index = CollectionIndex(collection, coll["dim"])
    new_ids: list[int] = []
    removed: list[int] = []
    try:
        with store.transaction():
            for doc, h, chunks in todo:
                _, ids, gone = rag_store.replace_document(
                    store,
                    collection,
                    source=doc.source,
                    title=doc.title,
                    content_hash=h,
                    chunks=[c.__dict__ for c in chunks],
                    metadata=doc.metadata,
                    created_by=created_by,
                )
                new_ids.extend(ids)
                removed.extend(gone)
                (report.replaced if doc.source in stored else report.added).append(doc.source)
            report.index_kind = index.update(removed, new_ids, vectors, cfg.index)
            rag_store.set_index_kind(store, collection, report.index_kind)
    except BaseException:
        index.discard()
        raise
    index.commit()
    report.chunks = len(new_ids)
    return report
