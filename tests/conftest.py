"""Shared fixtures. Tests are offline: no hub, no network beyond localhost."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from click.testing import CliRunner

from db.store import Store


@pytest.fixture
def db_path(tmp_path, monkeypatch):
    """A fresh database file for one test; PREFLAB_DB points at it so the CLI uses it too."""
    path = tmp_path / "test.duckdb"
    monkeypatch.setenv("PREFLAB_DB", str(path))
    monkeypatch.delenv("PREFLAB_URL", raising=False)
    return path


@pytest.fixture
def store(db_path):
    s = Store.open(db_path)
    yield s
    s.close()


@pytest.fixture
def run_cli(db_path):
    """Invoke `preflab ...` in-process; returns the click Result. Use `assert r.exit_code == 0, r.output`."""
    from serving.cli import cli

    runner = CliRunner()

    def _run(*args, input=None):
        return runner.invoke(cli, ["--db", str(db_path), *map(str, args)], input=input, catch_exceptions=False)

    return _run


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded tiny causal LM (briefly pre-trained, trained BPE tokenizer, chat template), built once."""
    from serving.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory):
    """The tiny model with a sequence-classification head (num_labels=1): a reward model to train."""
    from serving.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-rm", reward=True)


@pytest.fixture(scope="session")
def tiny_hf_engine(tiny_model_dir, tmp_path_factory):
    """One transformers engine for the session serving `tiny` and a strong random LoRA adapter `tiny-lora`
    (answers differ from the base's). Yields its registry record; a test that resolves models by name
    registers it in its own PREFLAB_HOME with `serving.engines.registry.save_engine(record)`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from serving.engines.launcher import start_engine, stop_engine

    home = tmp_path_factory.mktemp("engine-home")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data.normal_(0.0, 1.0)
    model.save_pretrained(home / "tiny-lora")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(home))
        record = start_engine(
            model=tiny_model_dir,
            name="tiny",
            backend="transformers",
            loras={"tiny-lora": str(home / "tiny-lora")},
            timeout=420,
        )
        try:
            yield record
        finally:
            stop_engine("tiny")
