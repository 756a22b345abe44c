"""Retrieval-augmented generation: load files, chunk, embed, index with faiss, retrieve, build prompts.

    from serving.rag import RagConfig, ingest_paths, retrieve, augment
    report = ingest_paths(store, ["docs/"], collection="handbook")   # txt, md, html, pdf, jsonl
    hits = retrieve(store, "handbook", "how do I reset my password?", k=4)
    prompt, citations = augment("how do I reset my password?", hits)

Chunk text and source metadata live in DuckDB (db/rag_store.py); vectors live in one faiss index per
collection under db.paths.home()/rag/<collection>/ (serving/rag/index.py).
"""

from serving.rag.augment import DEFAULT_TEMPLATE, augment, cited_indices
from serving.rag.chunking import Chunk, ChunkConfig, chunk_document
from serving.rag.ingest import IngestReport, RagConfig, ingest_paths
from serving.rag.loaders import Document, LoadError, load_path
from serving.rag.retrieve import Hit, retrieve

__all__ = [
    "DEFAULT_TEMPLATE",
    "Chunk",
    "ChunkConfig",
    "Document",
    "Hit",
    "IngestReport",
    "LoadError",
    "RagConfig",
    "augment",
    "chunk_document",
    "cited_indices",
    "ingest_paths",
    "load_path",
    "retrieve",
]
