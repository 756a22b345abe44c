"""One training run from start to end: prepare the run directory, then train the stage it names.

    prepare_run("dpo", run_dir, values={"base": ..., "data": ...})   # validates, writes config + snapshot info
    run_job(run_dir)                                                  # trains; resume=True continues

`python -m alignment` calls run_job; `preflab train`, the server and the loop call prepare_run through
alignment.launch.register_run, then start the job with alignment.launch.start_job. Under `accelerate launch`
every process runs run_job; the main one (rank 0) writes launch.json and the finished result.json.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from pathlib import Path

from alignment.config import load_config, save_config
from alignment.data import snapshot_id as file_snapshot_id
from alignment.errors import ConfigError
from alignment.runs import (
    CONFIG,
    LOG,
    TENSORBOARD,
    StopSignal,
    last_checkpoint,
    launch_info,
    write_launch,
    write_result,
    write_snapshot_info,
)

log = logging.getLogger(__name__)


def prepare_run(
    stage: str | None,
    run_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    values: dict | None = None,
    overrides: list[str] | tuple[str, ...] = (),
):
    """Validate the config (nothing is loaded), create RUN_DIR, write config.yaml and snapshot.json."""
    run_dir = Path(run_dir).resolve()
    values = {**(values or {}), "output_dir": str(run_dir)}
    cfg = load_config(config_file, stage=stage, values=values, overrides=overrides)
    if not Path(cfg.data).exists():
        raise ConfigError(f"'{cfg.data}' does not exist: export a snapshot first (preflab export ...)", key="data")
    cfg.data = str(Path(cfg.data).resolve())
    if cfg.accelerate_config:  # the job starts in the code folder: a relative path must not change meaning
        cfg.accelerate_config = str(Path(cfg.accelerate_config).resolve())
    if not cfg.snapshot_id:
        cfg.snapshot_id = file_snapshot_id(cfg.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    write_snapshot_info(run_dir, data=cfg.data, snapshot_id=cfg.snapshot_id, origin=cfg.snapshot_origin)
    return cfg


class _Tee:
    """Write to the terminal and to RUN_DIR/train.log at once."""

    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.file.write(text)
        self.file.flush()
        return self.stream.write(text)

    def flush(self):
        self.file.flush()
        self.stream.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


def run_job(run_dir: str | Path, *, resume: bool = False, tee: bool = True, stop: StopSignal | None = None) -> dict:
    """Train the run in RUN_DIR (config.yaml there). Writes result.json (the main process; any process that
    fails writes its error); returns it."""
    run_dir = Path(run_dir).resolve()
    cfg = load_config(run_dir / CONFIG, values={"output_dir": str(run_dir)})
    launch = launch_info()
    main = launch["rank"] == 0
    if main:
        write_launch(run_dir, launch)
    saved = sys.stdout, sys.stderr
    log_file = None
    if tee:
        log_file = (run_dir / LOG).open("a", encoding="utf-8")
        sys.stdout, sys.stderr = _Tee(sys.stdout, log_file), _Tee(sys.stderr, log_file)
    handler = logging.StreamHandler(sys.stderr)
    rank = f" rank{launch['rank']}" if launch["world_size"] > 1 else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s{rank} %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD)
    try:
        from transformers import set_seed

        set_seed(cfg.seed)
        resume_from = None
        if resume:
            ckpt = last_checkpoint(run_dir)
            resume_from = str(ckpt) if ckpt else None
            log.info("resuming from %s", resume_from or "the start (no checkpoint yet)")
        log.info("stage %s: base=%s adapter=%s data=%s", cfg.stage, cfg.base, cfg.adapter, cfg.data)
        if launch["world_size"] > 1:
            how = (launch["launcher"], launch["processes"], launch["world_size"])
            log.info("%s: %d processes here, world size %d", *how)
        module = importlib.import_module(f"alignment.{cfg.stage}")
        result = module.train(cfg, run_dir, resume_from=resume_from, stop=stop or StopSignal().install())
        result["stage"] = cfg.stage
        if main:
            write_result(run_dir, result)
        log.info("run %s: %s", run_dir, result["status"])
        return result
    except BaseException as e:
        error = f"{type(e).__name__}: {e}" + (f" (rank {launch['rank']})" if launch["world_size"] > 1 else "")
        write_result(run_dir, {"status": "failed", "stage": cfg.stage, "error": error})
        traceback.print_exc()
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        if tee:
            sys.stdout, sys.stderr = saved
            log_file.close()
