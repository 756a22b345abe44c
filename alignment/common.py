"""What every TRL-backed stage does the same way: callbacks, train (or resume), save the adapter + lineage."""

from __future__ import annotations

import logging
from pathlib import Path

from alignment.models import write_adapter_meta
from alignment.runs import ADAPTER, MetricsCallback, StopOnSignalCallback, StopSignal, final_metrics

log = logging.getLogger(__name__)


def run_trainer(
    trainer_cls,
    cfg,
    run_dir: str | Path,
    *,
    model,
    tokenizer,
    train_dataset,
    eval_dataset=None,
    peft_config=None,
    merged_parents: list[str] | None = None,
    resume_from: str | None = None,
    stop: StopSignal | None = None,
    **trainer_kwargs,
) -> dict:
    """Build `trainer_cls`, train, save RUN_DIR/adapter with its lineage; return the final metrics."""
    run_dir = Path(run_dir)
    stop = stop or StopSignal()
    trainer = trainer_cls(
        model=model,
        args=cfg,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[MetricsCallback(run_dir, cfg.stage), StopOnSignalCallback(stop)],
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume_from)
    if stop.requested:
        log.warning("stopped on request at step %d (checkpoint saved)", trainer.state.global_step)
        return {"status": "cancelled", "step": trainer.state.global_step}
    if eval_dataset is not None:
        trainer.log({f"final_{k}": v for k, v in trainer.evaluate().items()})
    adapter_dir = run_dir / ADAPTER
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    write_adapter_meta(
        adapter_dir,
        base=cfg.base,
        stage=cfg.stage,
        parent=cfg.adapter,
        merged_parents=merged_parents or [],
        snapshot_id=cfg.snapshot_id,
    )
    return {
        "status": "finished",
        "step": trainer.state.global_step,
        "adapter": str(adapter_dir),
        "metrics": final_metrics(run_dir),
    }
