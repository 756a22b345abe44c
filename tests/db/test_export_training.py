"""The `trl` and `trl-messages` files load unchanged into TRL's trainers (slow: a real training step each)."""

import pytest

from db.export import export
from tests.db.test_export import Q, add_prompt


@pytest.fixture
def trl_files(store, tmp_path):
    for i, q in enumerate([Q, "¿Cuál es la raíz de 16?", "写一首诗 🌸", "Hola 👋"]):
        add_prompt(store, q, [f"Buena respuesta {i} ✅", f"Mala {i}", f"很差 {i}"], {"ana": [1, 2, 3]})
    return {fmt: export(store, fmt, tmp_path / f"{fmt}.jsonl").path for fmt in ("trl", "trl-messages")}


@pytest.mark.slow  # a real TRL training on the export
@pytest.mark.parametrize("fmt", ["trl", "trl-messages"])
def test_dpo_trainer_trains_on_the_export(trl_files, tiny_model_dir, tmp_path, fmt):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = load_dataset("json", data_files=str(trl_files[fmt]), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        report_to=[],
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
        max_length=64,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.slow  # a real TRL training on the export
@pytest.mark.parametrize("fmt", ["trl", "trl-messages"])
def test_reward_trainer_trains_on_the_export(trl_files, tiny_reward_dir, tmp_path, fmt):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    ds = load_dataset("json", data_files=str(trl_files[fmt]), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir, num_labels=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = RewardConfig(
        output_dir=str(tmp_path / "rm"),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        report_to=[],
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
        max_length=64,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
