"""Top-k retrieval by cosine similarity, optionally fused with BM25 by reciprocal rank fusion (RRF).

Dense search catches paraphrases; BM25 catches rare exact terms (names, codes, CJK terms MiniLM barely
knows). RRF adds 1 / (60 + rank) from each list, so neither score scale has to be calibrated.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from db import rag_store
from db.store import Store
from serving.rag import embed
from serving.rag.index import CollectionIndex

RRF_K = 60
TOKEN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\u3040-\u30ff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


@dataclass
class Hit:
    chunk_id: int
    document_id: int
    score: float  # cosine similarity (dense), or the RRF score (hybrid)
    text: str
    heading: str | None
    source: str
    title: str
    ordinal: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def tokenize(text: str) -> list[str]:
    """Lower-cased words; CJK text as single characters plus bigrams (no word segmenter needed)."""
    toks = TOKEN.findall(text.lower())
    cjk = [t for t in toks if len(t) == 1 and "\u3040" <= t <= "\ud7af"]
    return toks + [a + b for a, b in zip(cjk, cjk[1:], strict=False)]


class BM25:
    """Okapi BM25 over a fixed list of texts (k1 = 1.5, b = 0.75)."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.docs = [Counter(tokenize(t)) for t in texts]
        self.lengths = np.array([sum(d.values()) for d in self.docs], dtype=np.float64)
        self.avg = float(self.lengths.mean()) if len(self.docs) else 0.0
        df: Counter = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.postings: dict[str, list[int]] = {}
        for i, d in enumerate(self.docs):
            for t in d:
                self.postings.setdefault(t, []).append(i)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        scores: dict[int, float] = {}
        for t in set(tokenize(query)):
            idf = self.idf.get(t)
            if idf is None:
                continue
            for i in self.postings[t]:
                f = self.docs[i][t]
                norm = f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg))
                scores[i] = scores.get(i, 0.0) + idf * norm
        return sorted(scores.items(), key=lambda x: -x[1])[:k]


_bm25_cache: dict[str, tuple[tuple[int, int], list[int], BM25]] = {}
_bm25_lock = threading.Lock()


def _bm25(store: Store, collection: str) -> tuple[list[int], BM25]:
    version = rag_store.collection_version(store, collection)
    with _bm25_lock:
        hit = _bm25_cache.get(collection)
        if hit and hit[0] == version:
            return hit[1], hit[2]
        ids, texts = rag_store.chunk_texts(store, collection)
        bm = BM25(texts)
        _bm25_cache[collection] = (version, ids, bm)
        return ids, bm


def retrieve(
    store: Store, collection: str, query: str, *, k: int = 4, hybrid: bool = False, candidates: int = 50
) -> list[Hit]:
    """The k best chunks for `query` in `collection`, best first, with their documents."""
    coll = rag_store.get_collection(store, collection)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    qv = embed.embed_texts([query])
    index = CollectionIndex.load(collection, coll["dim"])
    scores, ids = index.search(qv, max(k, candidates) if hybrid else k)
    dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    if hybrid:
        chunk_ids, bm = _bm25(store, collection)
        sparse = [(chunk_ids[i], s) for i, s in bm.top(query, candidates)]
        fused: dict[int, float] = {}
        for ranked in (dense, sparse):
            for rank, (cid, _) in enumerate(ranked):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
        ranked = sorted(fused.items(), key=lambda x: -x[1])[:k]
    else:
        ranked = dense[:k]
    rows = rag_store.chunks_by_ids(store, [cid for cid, _ in ranked])
    hits = []
    for cid, score in ranked:
        row = rows.get(cid)
        if row is None:  # index written but its transaction failed: ignore vectors without a chunk
            continue
        hits.append(
            Hit(
                chunk_id=cid,
                document_id=row["document_id"],
                score=round(score, 6),
                text=row["text"],
                heading=row["heading"],
                source=row["source"],
                title=row["title"],
                ordinal=row["ordinal"],
            )
        )
    return hits
