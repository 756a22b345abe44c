"""One faiss index per collection, persisted under db.paths.home()/rag/<collection>/.

Files: vectors.npy (float32, unit rows), ids.npy (int64 chunk ids, row-aligned) and index.faiss (built from
them). Keeping the raw vectors lets a re-ingest drop a document's old vectors and rebuild any index kind
(HNSW cannot remove vectors in place). Writes go to temporary files and are renamed into place by
`commit()`, after the database transaction that holds the chunk rows has committed.

Index kind: exact IndexFlatIP while the collection is small; above `approx_above` vectors, IVF (default)
or HNSW. At 100k vectors bench/rag.py measured recall@5 against exact search of 0.98 for IVF and 0.79 for
HNSW with these settings, hence IVF.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from db import paths

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclass(kw_only=True)
class IndexConfig:
    kind: str = "auto"  # auto: flat up to approx_above vectors, then `approx`
    # ivf by default: at 100k MiniLM-like vectors bench/rag.py measured recall@5 0.98 for IVF (nprobe 24) against
    # 0.79 for HNSW (M 32, efSearch 96), and IVF searched faster (p95 10 ms vs 40 ms); see docs/benchmarks.md
    approx: str = "ivf"  # ivf | hnsw
    approx_above: int = 50_000  # exact search over 50k x 384 floats is ~5 ms here; past that go approximate
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 96
    ivf_nprobe: int = 24

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        if self.approx not in ("hnsw", "ivf"):
            raise ValueError(f"approx must be 'hnsw' or 'ivf', got '{self.approx}'")

    def resolve(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return self.approx if n > self.approx_above else "flat"


def collection_dir(collection: str) -> Path:
    return paths.home() / "rag" / collection


def build_index(vectors: np.ndarray, ids: np.ndarray, kind: str, config: IndexConfig | None = None):
    """A faiss index (IndexIDMap over the chosen kind) holding `vectors` under `ids`."""
    import faiss

    cfg = config or IndexConfig()
    dim = vectors.shape[1]
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = cfg.hnsw_ef_construction
        inner.hnsw.efSearch = cfg.hnsw_ef_search
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors)
        inner.nprobe = min(cfg.ivf_nprobe, nlist)
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


class CollectionIndex:
    """The vectors and index of one collection, cached per process and reloaded when the files change."""

    _cache: dict[str, tuple[float, CollectionIndex]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, collection: str, dim: int):
        self.collection, self.dim = collection, dim
        self.dir = collection_dir(collection)
        vec_file, id_file = self.dir / "vectors.npy", self.dir / "ids.npy"
        if vec_file.exists() and id_file.exists():
            self.vectors = np.load(vec_file)
            self.ids = np.load(id_file)
        else:
            self.vectors = np.zeros((0, dim), dtype=np.float32)
            self.ids = np.zeros(0, dtype=np.int64)
        self._index = None
        self._pending: list[Path] = []

    @classmethod
    def load(cls, collection: str, dim: int) -> CollectionIndex:
        """The current index for searching (cached; reloaded after an ingest from any process)."""
        marker = collection_dir(collection) / "index.faiss"
        mtime = marker.stat().st_mtime if marker.exists() else -1.0
        with cls._cache_lock:
            hit = cls._cache.get(collection)
            if hit and hit[0] == mtime:
                return hit[1]
            idx = cls(collection, dim)
            idx.index()  # load or build now, not under a request lock later
            cls._cache[collection] = (mtime, idx)
            return idx

    def index(self):
        if self._index is None:
            import faiss

            f = self.dir / "index.faiss"
            if f.exists():
                self._index = faiss.read_index(str(f))
            else:
                self._index = build_index(self.vectors, self.ids, "flat")
        return self._index

    def update(
        self, remove_ids: list[int], new_ids: list[int], new_vectors: np.ndarray, config: IndexConfig | None = None
    ) -> str:
        """Drop `remove_ids`, add the new vectors, rebuild, write temp files. Returns the index kind used."""
        import faiss

        cfg = config or IndexConfig()
        if remove_ids:
            keep = ~np.isin(self.ids, np.asarray(remove_ids, dtype=np.int64))
            self.vectors, self.ids = self.vectors[keep], self.ids[keep]
        if len(new_ids):
            self.vectors = np.concatenate([self.vectors, new_vectors.astype(np.float32)])
            self.ids = np.concatenate([self.ids, np.asarray(new_ids, dtype=np.int64)])
        kind = cfg.resolve(len(self.ids))
        self._index = build_index(self.vectors, self.ids, kind, cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp_vec, tmp_ids, tmp_idx = (self.dir / n for n in ("vectors.tmp.npy", "ids.tmp.npy", "index.tmp.faiss"))
        np.save(tmp_vec, self.vectors)
        np.save(tmp_ids, self.ids)
        faiss.write_index(self._index, str(tmp_idx))
        self._pending = [tmp_vec, tmp_ids, tmp_idx]
        return kind

    def commit(self) -> None:
        """Move the files written by update() into place (after the database commit)."""
        for tmp in self._pending:
            os.replace(tmp, tmp.with_name(tmp.name.replace(".tmp", "")))
        self._pending = []
        with self._cache_lock:
            self._cache.pop(self.collection, None)

    def discard(self) -> None:
        for tmp in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, chunk ids) of shape (len(queries), k); id -1 where fewer than k vectors exist."""
        index = self.index()
        k = max(1, min(k, index.ntotal)) if index.ntotal else 1
        if index.ntotal == 0:
            return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        return search(index, queries, k)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """index.search, single-threaded for a handful of queries: OpenMP workers for one query cost more than they
    save, and spin badly when the machine is busy (bench/rag.py)."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(queries) > 4:
        return index.search(queries, k)
    with _omp_lock:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(before)


_omp_lock = threading.Lock()
