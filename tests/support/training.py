"""Training test data shared by the stage, run and Training-page tests: preference pairs in TRL's
conversational format, a run config that trains in seconds on CPU, and a ranked dataset to export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from db.hashing import prompt_hash, text_hash
from db.staging import Batch

if TYPE_CHECKING:
    import torch

PAIRS = [
    {
        "prompt": [{"role": "user", "content": "Say hi"}],
        "chosen": [{"role": "assistant", "content": "hello friend"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    },
    {
        "prompt": [{"role": "user", "content": "¿Qué tal?"}],
        "chosen": [{"role": "assistant", "content": "¡Muy bien! 😀"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    },
    {
        "prompt": [{"role": "user", "content": "你好"}],
        "chosen": [{"role": "assistant", "content": "你好，朋友"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    },
    {
        "prompt": [{"role": "user", "content": "Count"}],
        "chosen": [{"role": "assistant", "content": "one two three"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    },
]
FAST = {
    "max_steps": 2,
    "save_steps": 1,
    "logging_steps": 1,
    "per_device_train_batch_size": 2,
    "gradient_checkpointing": False,
    "learning_rate": 1e-3,
    "lora_r": 4,
    "lora_alpha": 8,
    "seed": 0,
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write `rows` as JSON lines (UTF-8, non-ASCII kept) and return `path`."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def lora_b(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """The LoRA B matrices of a saved adapter: zero at initialisation, so non-zero means it trained."""
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return {k: v for k, v in weights.items() if "lora_B" in k}


def seed_rankings(store, dataset="prefs"):
    """Four prompts (Spanish, Chinese, emoji), three answers each, ranked by one annotator."""
    batch = Batch()
    for i, q in enumerate(["¿Qué es 東京? 🗼", "¿Cuál es la raíz de 16?", "写一首诗 🌸", "Hola 👋"]):
        msgs = [{"role": "user", "content": q}]
        pk = prompt_hash(msgs)
        batch.prompts.append({"key": pk, "messages": json.dumps(msgs, ensure_ascii=False)})
        answers = [f"Buena respuesta {i} ✅", f"Mala {i}", f"很差 {i}"]
        for a in answers:
            batch.generations.append({"prompt_key": pk, "gen_key": text_hash(a), "text": a, "kind": "model"})
        batch.rankings.append({"ranking_key": pk, "prompt_key": pk, "annotator": "ana"})
        for rank, a in enumerate(answers, 1):
            batch.items.append({"ranking_key": pk, "gen_key": text_hash(a), "rank": rank})
    store.write_batch(dataset, batch, created_by="test")


def fake_model_folder(root: Path) -> Path:
    """A folder that passes the base check (config.json); nothing loads it in these tests."""
    folder = root / "models" / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder
