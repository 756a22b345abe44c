"""Each training stage on the tiny model: a few steps, the adapter changes, the run directory is complete.

CPU, one torch thread (two shared cores thrash with more), tiny batches and max_length.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from alignment.config import load_config
from alignment.errors import ConfigError
from alignment.job import prepare_run, run_job
from tests.support.training import FAST, PAIRS, lora_b, write_jsonl

STAGE_METRICS = {
    "sft": {"loss", "learning_rate", "mean_token_accuracy"},
    "reward": {"loss", "learning_rate", "accuracy", "margin"},
    "dpo": {"loss", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"},
    "rloo": {"loss", "learning_rate", "reward", "kl"},
    "grpo": {"loss", "learning_rate", "reward"},
    "ppo": {"learning_rate", "reward", "kl", "value_loss", "clip_fraction", "entropy"},
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    rows = [{"messages": [*p["prompt"], *p["chosen"]]} for p in PAIRS]
    return write_jsonl(tmp_path_factory.mktemp("data") / "sft.jsonl", rows)


def assert_run_dir(run_dir: Path, stage: str) -> None:
    """Everything a run directory promises (see alignment/runs.py)."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["stage"] == stage
    snap = json.loads((run_dir / "snapshot.json").read_text(encoding="utf-8"))
    assert len(snap["snapshot_id"]) == 64 and snap["snapshot_id"] == cfg["snapshot_id"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    seen = set().union(*(r.keys() for r in records))
    assert STAGE_METRICS[stage] <= seen, STAGE_METRICS[stage] - seen
    assert (run_dir / "train.log").stat().st_size > 0
    assert list(run_dir.glob("checkpoint-*")), "no checkpoint"
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((run_dir / "adapter" / "preflab_adapter.json").read_text())["stage"] == stage
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*")), "no TensorBoard events"
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "rloo", "grpo"])
def test_stage_trains_and_fills_run_dir(stage, tmp_path, tiny_model_dir, tiny_reward_dir, pairs_file, sft_file):
    values = {**FAST, "base": str(tiny_model_dir), "data": str(sft_file if stage == "sft" else pairs_file)}
    if stage in ("sft", "reward", "dpo"):
        values["max_length"] = 48
    if stage in ("rloo", "grpo"):
        values.update(reward_model=str(tiny_reward_dir), num_generations=2, max_completion_length=6)
    run_dir = tmp_path / stage
    prepare_run(stage, run_dir, values=values)
    result = run_job(run_dir)
    assert result["status"] == "finished"
    changed = [k for k, v in lora_b(run_dir / "adapter").items() if v.abs().max() > 0]
    assert changed, "every LoRA B matrix is still zero: the adapter did not train"
    assert_run_dir(run_dir, stage)


def test_sft_on_a_parent_adapter_keeps_training_it(tmp_path, tiny_model_dir, sft_file):
    first = tmp_path / "first"
    prepare_run("sft", first, values={**FAST, "base": str(tiny_model_dir), "data": str(sft_file), "max_length": 48})
    run_job(first)
    second = tmp_path / "second"
    prepare_run(
        "sft",
        second,
        values={
            **FAST,
            "base": str(tiny_model_dir),
            "data": str(sft_file),
            "max_length": 48,
            "adapter": str(first / "adapter"),
        },
    )
    run_job(second)
    before, after = lora_b(first / "adapter"), lora_b(second / "adapter")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    meta = json.loads((second / "adapter" / "preflab_adapter.json").read_text())
    assert meta["parent"] == str(first / "adapter")


# ---- configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key", "fix"),
    [
        ({"lerning_rate": 1e-4}, "lerning_rate", "did you mean 'learning_rate'"),
        ({"beta": "high"}, "beta", "expected float"),
        ({"lora_r": 0}, "lora_r", ">= 1"),
        ({"base": ""}, "base", "--base"),
    ],
)
def test_bad_dpo_config_names_the_key_and_the_fix(values, key, fix, pairs_file):
    with pytest.raises(ConfigError) as e:
        load_config(stage="dpo", values={"base": "m", "data": str(pairs_file), "output_dir": "x", **values})
    assert e.value.key == key and fix in str(e.value)


@pytest.mark.parametrize("stage", ["ppo", "rloo", "grpo"])
def test_online_stages_need_a_reward_model(stage, pairs_file):
    with pytest.raises(ConfigError, match="reward_model.*preflab train reward"):
        load_config(stage=stage, values={"base": "m", "data": str(pairs_file), "output_dir": "x"})


def test_yaml_round_trip_and_cpu_defaults(tmp_path, pairs_file):
    prepare_run(
        "dpo",
        tmp_path / "r",
        values={"base": "m", "data": str(pairs_file)},
        overrides=["beta=0.3", "loss_type=ipo", "learning_rate=1e-4"],
    )
    again = load_config(tmp_path / "r" / "config.yaml")
    assert (again.beta, again.loss_type, again.learning_rate) == (0.3, ["ipo"], 1e-4)
    if not torch.cuda.is_available():
        assert again.use_cpu and not again.bf16
    assert "tensorboard" in again.report_to


def test_bad_config_fails_before_any_model_loads(tmp_path, pairs_file, monkeypatch):
    """`python -m alignment` on a broken config.yaml: exit 2, one line, and the model loader never runs."""
    import alignment.__main__ as entry
    import alignment.models

    def boom(*a, **k):
        raise AssertionError("a model was loaded for a bad config")

    monkeypatch.setattr(alignment.models, "load_base", boom)
    run_dir = tmp_path / "bad"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"stage: ppo\nbase: m\ndata: {pairs_file}\n", encoding="utf-8")
    t0 = time.perf_counter()
    assert entry.main(["ppo", str(run_dir)]) == 2
    assert time.perf_counter() - t0 < 5
    assert not (run_dir / "result.json").exists()


# ---- learning signals -----------------------------------------------------------------------------------


def test_dpo_margin_rises_and_accuracy_reaches_one(tmp_path, tiny_model_dir):
    """Pairs that prefer one pattern: the log-prob margin grows and every training pair is ranked right."""
    rows = [{"prompt": f"Question {i}:", "chosen": " yes yes yes", "rejected": " no no no"} for i in range(4)]
    data = write_jsonl(tmp_path / "pattern.jsonl", rows)
    run_dir = tmp_path / "dpo"
    prepare_run(
        "dpo",
        run_dir,
        values={
            **FAST,
            "base": str(tiny_model_dir),
            "data": str(data),
            "max_steps": 12,
            "per_device_train_batch_size": 4,
            "learning_rate": 5e-3,
            "beta": 0.1,
            "max_length": 32,
            "save_steps": 100,
        },
    )
    run_job(run_dir)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if "rewards/margins" in x]
    margins = [r["rewards/margins"] for r in records]
    assert margins[-1] > margins[0] + 0.5, margins
    assert records[-1]["rewards/accuracies"] == 1.0  # the batch is all four training pairs


def test_ppo_rewards_ignore_a_constant_offset_in_the_scores():
    """A reward model's scores carry an arbitrary offset. With the rollout's mean taken out (center_scores, the
    default), adding 10 to every score leaves every token's reward as it was; without it the offset lands on each
    answer's last token (often the end-of-answer token), which moved answer length by itself in the loop."""
    from types import SimpleNamespace

    from alignment.ppo import token_rewards
    from alignment.ppo_config import PPORunConfig

    assert PPORunConfig.__dataclass_fields__["center_scores"].default is True
    scores, kl = torch.tensor([0.5, -1.0, 2.0]), torch.rand(3, 4) * 0.1
    cmask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    ended = torch.tensor([False, True, True])
    for whiten in (False, True):
        cfg = SimpleNamespace(center_scores=True, missing_eos_penalty=None, kl_coef=0.2, whiten_rewards=whiten)
        plain = token_rewards(cfg, scores, kl * cmask, cmask, ended=ended)
        assert torch.allclose(plain, token_rewards(cfg, scores + 10, kl * cmask, cmask, ended=ended), atol=1e-5)
        cfg.center_scores = False
        raw = token_rewards(cfg, scores + 10, kl * cmask, cmask, ended=ended)
        assert not torch.allclose(plain, raw, atol=1e-3)
    # a rollout that scores every answer alike is left as it is: centred, it would carry no signal at all
    cfg = SimpleNamespace(center_scores=True, missing_eos_penalty=None, kl_coef=0.0, whiten_rewards=False)
    same = token_rewards(cfg, torch.ones(3), kl * cmask, cmask, ended=ended)
    assert float(same.sum()) == pytest.approx(3.0)
    # the score sits on each answer's last token, the KL penalty on every token of it
    cfg = SimpleNamespace(center_scores=False, missing_eos_penalty=1.0, kl_coef=0.0, whiten_rewards=False)
    r = token_rewards(cfg, scores, kl * cmask, cmask, ended=ended)
    assert r[0, 3] == pytest.approx(0.5 - 1.0) and r[1, 1] == pytest.approx(-1.0) and r[2, 0] == pytest.approx(2.0)
    assert float(r.abs().sum()) == pytest.approx(0.5 + 1.0 + 2.0)


def test_ppo_mean_reward_rises_with_a_rule_reward(tmp_path, tiny_model_dir):
    """Toy reward: the share of answer tokens whose output embedding points along the head's main direction.

    That set of tokens is what a change of the last hidden state can favour all at once, so a LoRA policy
    can learn it in a few dozen steps. The random model's logits are nearly flat, so sampling at a low
    temperature makes its policy peaked like a trained model's.
    """
    from alignment import ppo

    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    head = weights.get("lm_head.weight", weights["model.embed_tokens.weight"])
    direction = torch.linalg.svd(head.float(), full_matrices=False).Vh[0]
    good = set((head.float() @ direction > 0).nonzero().flatten().tolist())

    def rule(*, completion_ids, **_):
        return [sum(t in good for t in ids) / max(1, len(ids)) for ids in completion_ids]

    prompts = [{"prompt": [{"role": "user", "content": f"question {i} about things"}]} for i in range(16)]
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    run_dir = tmp_path / "ppo"
    cfg = prepare_run(
        "ppo",
        run_dir,
        values={
            "base": str(tiny_model_dir),
            "data": str(data),
            "reward_model": str(tiny_model_dir),
            "max_steps": 24,
            "learning_rate": 1e-2,
            "per_device_train_batch_size": 16,
            "max_completion_length": 8,
            "temperature": 0.15,
            "save_steps": 12,
            "logging_steps": 4,
            "seed": 0,
        },
    )
    result = ppo.train(cfg, run_dir, reward_fn=rule)
    assert result["status"] == "finished"
    rewards = [json.loads(x)["reward"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(rewards[:6]) / 6, sum(rewards[-6:]) / 6
    assert last > first + 0.05, rewards
    assert any(v.abs().max() > 0 for v in lora_b(run_dir / "adapter").values())
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert STAGE_METRICS["ppo"] <= set(records[-1])
    assert (run_dir / "checkpoint-12" / "value_head.pt").exists()
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))


def test_one_config_class_per_stage_on_the_method_s_trl_config():
    import dataclasses

    import trl
    from transformers import TrainingArguments

    from alignment import STAGES
    from alignment.config import CONFIG_CLASSES
    from alignment.preflab_fields import PrefLabFields

    assert tuple(CONFIG_CLASSES) == STAGES
    expected = {"sft": trl.SFTConfig, "reward": trl.RewardConfig, "dpo": trl.DPOConfig, "rloo": trl.RLOOConfig}
    expected |= {"grpo": trl.GRPOConfig, "ppo": TrainingArguments, "kto": trl.KTOConfig}
    for stage, cls in CONFIG_CLASSES.items():
        assert cls.stage == stage and issubclass(cls, expected[stage]) and issubclass(cls, PrefLabFields), stage
        assert dataclasses.is_dataclass(cls) and cls.__name__.endswith("RunConfig"), cls
        assert cls.needs_reward_model == (stage in ("ppo", "rloo", "grpo"))


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "rloo", "grpo", "dpo", "kto"])
def test_every_field_is_described_once_with_preflab_groups_first(stage):
    import dataclasses

    from alignment.config import CONFIG_CLASSES, TRAINING_GROUP, describe_fields

    rows = describe_fields(stage)
    names = [r["name"] for r in rows]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(CONFIG_CLASSES[stage]) if f.init)
    groups = list(dict.fromkeys(r["group"] for r in rows))
    assert groups[:3] == ["Model", "Data", "LoRA"] and groups[-1] == TRAINING_GROUP, groups
    assert len(groups) == 5  # the method's own group (TRL's fields, or our PPO knobs) sits between
    ours = [r for r in rows if r["group"] not in (TRAINING_GROUP, groups[3])] + (
        [r for r in rows if r["group"] == "PPO"] if stage == "ppo" else []
    )
    assert all(r["help"] for r in ours), [r["name"] for r in ours if not r["help"]]
    by_name = {r["name"]: r for r in rows}
    assert by_name["lora_r"]["type"] == "int" and by_name["lora_r"]["default"] == 16
    assert by_name["lora_target_modules"]["type"] == "list[str] | None"


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "rloo", "grpo", "dpo", "kto"])
def test_the_admin_page_values_make_a_valid_config(stage, pairs_file, tmp_path):
    """What the Training page fills in is what the config accepts: a run started with them validates."""
    from alignment.config import page_fields

    fields = page_fields(stage)
    for f in fields:
        assert f["choices"] is None or f["value"] in f["choices"], f
    values = {f["name"]: f["value"] for f in fields}
    assert {"learning_rate", "lora_r", "max_steps"} <= set(values)
    cfg = load_config(
        stage=stage,
        values={
            **values,
            "base": "m",
            "data": str(pairs_file),
            "output_dir": str(tmp_path),
            "reward_model": str(tmp_path),
        },
    )
    assert cfg.learning_rate == values["learning_rate"]


def test_dpo_page_offers_loss_type_from_a_list():
    from alignment.config import page_fields

    loss = next(f for f in page_fields("dpo") if f["name"] == "loss_type")
    assert loss["value"] == "sigmoid" and "ipo" in loss["choices"] and loss["default"] == ["sigmoid"]
    lr = next(f for f in page_fields("dpo") if f["name"] == "learning_rate")
    assert (lr["value"], lr["default"]) == (5e-5, 1e-6)  # the page's starting value; a CLI run keeps TRL's


def test_an_unknown_key_points_to_help_config(pairs_file):
    with pytest.raises(ConfigError, match=r"see `preflab train dpo --help-config`") as e:
        load_config(stage="dpo", values={"base": "m", "data": str(pairs_file), "zzqqxx": 1})
    assert e.value.key == "zzqqxx"


def test_a_check_in_post_init_names_the_file_and_the_key_once(tmp_path, pairs_file):
    path = tmp_path / "run.yaml"
    path.write_text(f"stage: ppo\nbase: m\ndata: {pairs_file}\nreward_model: {tmp_path}\nnum_mini_batches: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert message.startswith(f"{path}: key 'num_mini_batches': ") and message.count("key '") == 1
    assert "set num_mini_batches to one of its divisors" in message
