"""Loading base models, parent adapters and reward models; the lineage file every adapter carries.

An adapter folder holds `preflab_adapter.json`: {"base", "stage", "parent", "merged_parents"}.
`merged_parents` lists adapters that were merged into the base *before* this adapter was trained on top
(PPO and reward runs merge their parent so the reference / the classifier sees the parent's weights).
Loading an adapter merges that chain first, so every adapter loads the same way everywhere.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from alignment.runs import ADAPTER_META

log = logging.getLogger(__name__)


def adapter_meta(adapter: str | Path | None) -> dict:
    if not adapter:
        return {}
    path = Path(adapter) / ADAPTER_META
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    cfg = Path(adapter) / "adapter_config.json"
    base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path") if cfg.exists() else None
    return {"base": base, "merged_parents": []}


def write_adapter_meta(
    adapter_dir: str | Path,
    *,
    base: str,
    stage: str,
    parent: str | None,
    merged_parents: list[str],
    snapshot_id: str | None,
) -> None:
    meta = {
        "base": base,
        "stage": stage,
        "parent": parent,
        "merged_parents": merged_parents,
        "snapshot_id": snapshot_id,
    }
    (Path(adapter_dir) / ADAPTER_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def dtype_for(cfg) -> torch.dtype:
    return torch.bfloat16 if getattr(cfg, "bf16", False) else torch.float32


def load_tokenizer(base: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _merge_chain(model, chain: list[str]):
    from peft import PeftModel

    for parent in chain:
        model = PeftModel.from_pretrained(model, parent).merge_and_unload()
    return model


def load_base(base: str, *, reward: bool = False, dtype: torch.dtype = torch.float32, pad_token_id: int | None = None):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if reward:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        if pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
        return model
    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def load_with_adapter(
    base: str,
    adapter: str | None,
    *,
    mode: str,
    reward: bool = False,
    dtype: torch.dtype = torch.float32,
    pad_token_id: int | None = None,
):
    """Base model plus `adapter` according to `mode`:

    - "continue": the adapter stays a trainable PEFT adapter (its merged_parents merged first);
      the result is (PeftModel, merged_parents of the new adapter = the parent's).
    - "merge": the adapter (and its chain) is merged into the weights; a fresh LoRA goes on top later;
      the result is (plain model, chain + [adapter]).
    """
    from peft import PeftModel

    model = load_base(base, reward=reward, dtype=dtype, pad_token_id=pad_token_id)
    if not adapter:
        return model, []
    chain = list(adapter_meta(adapter).get("merged_parents") or [])
    model = _merge_chain(model, chain)
    if mode == "merge":
        return _merge_chain(model, [str(adapter)]), [*chain, str(adapter)]
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), chain


def load_reward_model(path: str, *, dtype: torch.dtype = torch.float32, pad_token_id: int | None = None):
    """A frozen sequence-classification model: a full model folder, or a reward run's adapter (merged)."""
    path = str(path)
    if (Path(path) / "adapter_config.json").exists():
        meta = adapter_meta(path)
        model = load_base(meta["base"], reward=True, dtype=dtype, pad_token_id=pad_token_id)
        model = _merge_chain(model, [*(meta.get("merged_parents") or []), path])
    else:
        model = load_base(path, reward=True, dtype=dtype, pad_token_id=pad_token_id)
    model.eval().requires_grad_(False)
    return model


def merge_adapter(adapter: str, out_dir: str | Path, *, base: str | None = None) -> Path:
    """Write base + adapter chain merged into full weights (merge_and_unload) with the tokenizer."""
    meta = adapter_meta(adapter)
    base = base or meta.get("base")
    if not base:
        raise ValueError(f"{adapter}: cannot tell its base model; pass --base")
    reward = meta.get("stage") == "reward"
    model = load_base(base, reward=reward)
    model = _merge_chain(model, [*(meta.get("merged_parents") or []), str(adapter)])
    out = Path(out_dir)
    model.save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    return out
