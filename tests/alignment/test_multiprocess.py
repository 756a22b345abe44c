"""Training on several processes: `preflab train --processes 2` runs the stage under `accelerate launch` (DDP,
gloo on this CPU machine) and matches one process on the same global batch; the shipped accelerate configs are
accepted by accelerate's own launch-time parsing.

Loss tolerance: 1e-4 relative per logged step (loss and gradient norm). The snapshot holds exactly one global batch
(4 rows), so every step of both runs sees the same rows whatever order the samplers draw them in; LoRA dropout is 0,
so the forward passes are deterministic; and the per-device batch is halved so 2 x 2 = 1 x 4. What is left differs
only in the order float32 sums are taken (gloo's all-reduce of gradients, the loss averaged over ranks): about 1e-7
relative when this was written. 1e-4 keeps the check a thousand times above that noise and far below a real mismatch
(a batch of 2 instead of 4 moved SFT's first logged loss by 10%; a gradient counted twice moves the second step's
loss).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from alignment.job import prepare_run, run_job
from alignment.launch import CONFIGS, DDP_CONFIG, job_command
from tests.support.training import FAST, PAIRS, write_jsonl

ROWS = PAIRS  # four rows: one global batch
COMMON = {**FAST, "max_steps": 2, "save_steps": 2, "lora_dropout": 0.0, "max_length": 48}
RTOL = 1e-4


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread in the test process and in each training process (two shared cores thrash with more)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(tmp_path: Path, stage: str) -> Path:
    if stage == "sft":
        rows = [{"messages": [*p["prompt"], *p["chosen"]]} for p in ROWS]
        return write_jsonl(tmp_path / "sft.jsonl", rows)
    return write_jsonl(tmp_path / "pairs.jsonl", ROWS)


def _losses(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, loss, grad_norm) of each logged training step."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r["loss"], r["grad_norm"]) for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_two_processes_match_one_on_the_same_global_batch(stage, tmp_path, tiny_model_dir, run_cli, monkeypatch):
    from serving.engines.launcher import free_port

    data = _data(tmp_path, stage)
    # reference: one process, per-device batch 4
    one = tmp_path / "one"
    prepare_run(
        stage, one, values={**COMMON, "per_device_train_batch_size": 4, "base": str(tiny_model_dir), "data": str(data)}
    )
    assert run_job(one, tee=False)["status"] == "finished"

    # two processes under accelerate launch, per-device batch 2: the same global batch of 4
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    two = tmp_path / "two"
    sets = [f"--set={k}={v}" for k, v in {**COMMON, "per_device_train_batch_size": 2}.items()]
    r = run_cli("train", stage, "--base", tiny_model_dir, "--data", data, "--out", two, "--processes", 2, *sets)
    assert r.exit_code == 0, r.output + (two / "train.log").read_text(encoding="utf-8")[-4000:]

    launch = json.loads((two / "launch.json").read_text(encoding="utf-8"))
    assert launch == {"launcher": "accelerate", "processes": 2, "world_size": 2, "machines": 1}
    result = json.loads((two / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "finished" and result["world_size"] == 2
    assert yaml.safe_load((two / "config.yaml").read_text(encoding="utf-8"))["processes"] == 2

    # one writer: each step once in metrics.jsonl, one adapter, one checkpoint per save
    steps = [s for s, *_ in _losses(two)]
    assert steps == [1, 2], steps
    assert [p.name for p in two.glob("adapter*")] == ["adapter"]
    assert (two / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((two / "adapter" / "preflab_adapter.json").read_text(encoding="utf-8"))["stage"] == stage
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-2"]

    ref, got = _losses(one), _losses(two)
    assert [s for s, *_ in ref] == [1, 2]
    for (step, *a), (_, *b) in zip(ref, got, strict=True):
        assert b == pytest.approx(a, rel=RTOL), (stage, step, a, b)

    # the run and its launch are recorded and shown
    shown = run_cli("runs", "show", 1)
    assert shown.exit_code == 0, shown.output
    assert "launch: accelerate, 2 process(es) per machine, world size 2" in shown.output
    models = run_cli("models", "list")
    assert f"{stage}-run1" in models.output


def test_processes_is_checked_and_offered_on_the_training_page(tmp_path):
    from alignment.config import TRAINING_GROUP, load_config, page_fields
    from alignment.errors import ConfigError
    from alignment.preflab_fields import TRAINING

    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    values = {"base": "m", "data": str(data), "output_dir": str(tmp_path)}
    assert TRAINING == TRAINING_GROUP
    page = {f["name"]: f for f in page_fields("dpo")}
    assert page["processes"]["value"] == 1 and page["processes"]["group"] == TRAINING_GROUP
    assert load_config(stage="dpo", values={**values, "processes": 4}).processes == 4
    for bad in (0, 65, 1.5, "two"):
        with pytest.raises(ConfigError, match="processes"):
            load_config(stage="dpo", values={**values, "processes": bad})
    with pytest.raises(ConfigError, match="accelerate_config.*not a file"):
        load_config(stage="dpo", values={**values, "accelerate_config": str(tmp_path / "nope.yaml")})
    with pytest.raises(ConfigError, match="ppo trains in one process"):
        load_config(stage="ppo", values={**values, "processes": 2, "reward_model": str(tmp_path)})


def test_the_job_command_uses_accelerate_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert job_command(tmp_path, "sft", python="py")[:3] == ["py", "-m", "alignment"]
    cmd = job_command(tmp_path, "dpo", python="py", processes=3, resume=True)
    assert cmd[:5] == ["py", "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG)]
    assert cmd[cmd.index("--num_processes") + 1] == "3" and int(cmd[cmd.index("--main_process_port") + 1]) > 0
    assert cmd[-6:] == ["-m", "alignment", "dpo", str(tmp_path), "--no-tee", "--resume"]
    # a config file alone keeps its own process count
    cmd = job_command(tmp_path, "dpo", python="py", accelerate_config=CONFIGS / "zero2.yaml")
    assert "--num_processes" not in cmd and str(CONFIGS / "zero2.yaml") in cmd
    # a file for several machines keeps its rendezvous port: every machine must use the same one
    multi = tmp_path / "multi.yaml"
    multi.write_text("distributed_type: MULTI_GPU\nnum_machines: 2\nmain_process_port: 29555\n", encoding="utf-8")
    assert "--main_process_port" not in job_command(tmp_path, "sft", accelerate_config=multi, processes=2)


@pytest.mark.parametrize("name", ["ddp.yaml", "zero2.yaml", "zero3.yaml", "fsdp.yaml"])
def test_accelerate_accepts_the_shipped_configs(name, monkeypatch):
    """What `accelerate launch --config_file F --num_processes 2` does before it starts anything: read the file,
    merge it with the command line, and build the environment the workers get; then the plugin each worker builds
    from that environment (DeepSpeed's and FSDP's check their settings there)."""
    from unittest import mock

    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = CONFIGS / name
    config = load_config_from_file(str(path))
    argv = ["--config_file", str(path), "--num_processes", "2", "--main_process_port", "29599", "-m", "alignment"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args([*argv, "sft", "RUN"]))
    assert args.num_processes == 2 and args.num_machines == 1
    expected = {"ddp.yaml": "MULTI_GPU", "zero2.yaml": "DEEPSPEED", "zero3.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP"}
    assert config.distributed_type.value == expected[name]
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        with mock.patch.dict(os.environ, env):
            plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == (2 if name == "zero2.yaml" else 3)
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    else:
        env = prepare_multi_gpu_env(args)
        assert args.nproc_per_node == "2" and env["ACCELERATE_MIXED_PRECISION"] in ("no", "bf16")
    if args.use_fsdp:
        # FSDP syncs module states from rank 0 only on GPUs: let the check see one, the rest is validated as is
        with (
            mock.patch.dict(os.environ, env),
            mock.patch("accelerate.utils.dataclasses.get_torch_accelerator_backend", return_value=("cuda", None)),
        ):
            plugin = FullyShardedDataParallelPlugin()
        assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.use_orig_params
