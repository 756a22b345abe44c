"""The training job entry point (also under `accelerate launch`):

    python -m alignment STAGE RUN_DIR [--resume]        # RUN_DIR/config.yaml written by `preflab train`
    python -m alignment --config RUN_DIR/config.yaml [--resume]
    accelerate launch --config_file alignment/configs/zero2.yaml -m alignment dpo RUN_DIR

Exit status: 0 finished, 1 failed (traceback in RUN_DIR/train.log), 3 stopped by SIGTERM (checkpoint saved).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alignment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", nargs="?")
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--config", help="RUN_DIR/config.yaml (the run directory is its folder)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-tee", action="store_true", help="do not copy output to RUN_DIR/train.log")
    args = parser.parse_args(argv)
    if args.config:
        run_dir = Path(args.config).parent
    elif args.stage and args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        parser.error("give STAGE RUN_DIR or --config RUN_DIR/config.yaml")

    from alignment.config import load_config
    from alignment.errors import ConfigError
    from alignment.job import run_job

    try:
        cfg = load_config(run_dir / "config.yaml", values={"output_dir": str(run_dir.resolve())})
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    if args.stage and args.stage != cfg.stage:
        sys.stderr.write(f"error: {run_dir}/config.yaml is a '{cfg.stage}' run, not '{args.stage}'\n")
        return 2
    result = run_job(run_dir, resume=args.resume, tee=not args.no_tee)
    return {"finished": 0, "cancelled": 3}.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(main())
