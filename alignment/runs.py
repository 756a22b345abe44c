"""The run directory: everything one training run reads and writes, in one folder.

RUN_DIR/
  config.yaml        the resolved config (alignment.config.save_config)
  snapshot.json      {"snapshot_id": content hash, "origin": {...}, "data": path}
  metrics.jsonl      one JSON object per logging step: step, loss, learning_rate, stage metrics
  train.log          the job's log (stdout and stderr)
  checkpoint-N/      Trainer checkpoints (resume continues from the last one)
  adapter/           the final LoRA adapter (+ tokenizer, + preflab_adapter.json lineage)
  tensorboard/       event files: `tensorboard --logdir RUN_DIR/tensorboard`
  launch.json        how the job was started: launcher (python or accelerate), processes, world size
  result.json        written at the end: status, final metrics, adapter path

Under several processes (accelerate launch) only the main process writes here: metrics, checkpoints (the
Trainer's own rule), the adapter, launch.json and a finished result.json.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

METRICS = "metrics.jsonl"
LOG = "train.log"
CONFIG = "config.yaml"
SNAPSHOT = "snapshot.json"
RESULT = "result.json"
ADAPTER = "adapter"
TENSORBOARD = "tensorboard"
ADAPTER_META = "preflab_adapter.json"
LAUNCH = "launch.json"
LAUNCHER_ENV = "PREFLAB_LAUNCHER"  # set by alignment.launch.job_env; absent when a person launches by hand


def append_metrics(run_dir: str | Path, record: dict) -> None:
    """Add one record to metrics.jsonl (NaN/inf written as null so every line stays valid JSON)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    clean.setdefault("time", time.time())
    with (Path(run_dir) / METRICS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(clean, ensure_ascii=False) + "\n")


def read_metrics(run_dir: str | Path, *, since_line: int = 0) -> list[dict]:
    """Records of metrics.jsonl from line `since_line` (0-based); a half-written last line is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[since_line:]:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def tail_log(run_dir: str | Path, *, lines: int = 50) -> str:
    path = Path(run_dir) / LOG
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64_000))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint-N folder with the highest N, or None."""
    found = [
        (int(m.group(1)), p)
        for p in Path(run_dir).glob("checkpoint-*")
        if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    ]
    return max(found)[1] if found else None


def write_snapshot_info(run_dir: str | Path, *, data: str, snapshot_id: str, origin: dict | None) -> None:
    info = {"snapshot_id": snapshot_id, "origin": origin or {}, "data": str(data)}
    (Path(run_dir) / SNAPSHOT).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")


def launch_info(environ: dict | None = None) -> dict:
    """How this process was started, from the environment torchrun (under accelerate launch) sets: the launcher,
    the processes on this machine (LOCAL_WORLD_SIZE), the world size (all machines), this process's rank."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE") or 1)
    local = int(env.get("LOCAL_WORLD_SIZE") or world)
    launcher = env.get(LAUNCHER_ENV) or ("accelerate" if "ACCELERATE_MIXED_PRECISION" in env else "python")
    if launcher == "python" and world > 1:
        launcher = "torchrun"  # several processes without accelerate: torchrun or a cluster's own launcher
    return {
        "launcher": launcher,
        "processes": local,
        "world_size": world,
        "machines": max(1, world // max(local, 1)),
        "rank": int(env.get("RANK") or 0),
    }


def is_main_process(environ: dict | None = None) -> bool:
    """Rank 0 of the job (also true for a plain single process)."""
    return launch_info(environ)["rank"] == 0


def write_launch(run_dir: str | Path, info: dict) -> None:
    """RUN_DIR/launch.json (the main process writes it when the job starts)."""
    record = {k: v for k, v in info.items() if k != "rank"}
    (Path(run_dir) / LAUNCH).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")


def read_launch(run_dir: str | Path) -> dict | None:
    """RUN_DIR/launch.json, or None before the job started (or for a run older than the file)."""
    try:
        return json.loads((Path(run_dir) / LAUNCH).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_result(run_dir: str | Path, result: dict) -> None:
    (Path(run_dir) / RESULT).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


def read_result(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / RESULT
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def final_metrics(run_dir: str | Path) -> dict:
    """The last value of every metric in metrics.jsonl (what the models table records)."""
    last: dict = {}
    for rec in read_metrics(run_dir):
        last.update({k: v for k, v in rec.items() if v is not None and k != "time"})
    return last


class MetricsCallback(TrainerCallback):
    """Writes every Trainer log (loss, learning_rate, rewards/..., accuracy, margin, ...) to metrics.jsonl."""

    def __init__(self, run_dir: str | Path, stage: str):
        self.run_dir, self.stage = Path(run_dir), stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "stage": self.stage}
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        append_metrics(self.run_dir, record)


class StopSignal:
    """SIGTERM (a cancel) sets a flag; training stops at the next step boundary after saving a checkpoint."""

    def __init__(self):
        self.requested = False

    def install(self) -> StopSignal:
        def _handler(signum, frame):
            self.requested = True

        try:
            signal.signal(signal.SIGTERM, _handler)
        except ValueError:  # not the main thread (e.g. in tests): cancellation then relies on the kill
            pass
        return self


class StopOnSignalCallback(TrainerCallback):
    """Stops training at a step boundary once SIGTERM came. Under several processes every rank stops at the
    same step (a rank that stopped alone would leave the others waiting in their next all-reduce)."""

    def __init__(self, stop: StopSignal):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.stop.requested, args.device):
            control.should_save = True
            control.should_training_stop = True
        return control


def _any_rank(flag: bool, device) -> bool:
    """`flag` or-ed over the processes of a distributed job (just `flag` in a single process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
