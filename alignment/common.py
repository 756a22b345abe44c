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
    """Build `trainer_cls`, train, save RUN_DIR/adapter with its lineage; return the final metrics. Every process
    of a distributed job runs this (save_model gathers sharded weights); only the main one writes files."""
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
    if trainer.is_fsdp_enabled:  # a sharded state dict would not be a PEFT folder an engine can load
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(adapter_dir))  # every process takes part (sharded weights); the main one writes
    if trainer.is_world_process_zero():
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
        "world_size": trainer.args.world_size,
        "metrics": final_metrics(run_dir),
    }


def train_policy_adapter(trainer_cls, stage: str, cfg, run_dir: str | Path, *, resume_from=None, stop=None, **extra):
    """SFT and DPO alike: the causal LM with its parent adapter (kept training) or a new LoRA, the stage's data,
    then `run_trainer`. `extra` goes to the trainer (DPO: ref_model=None, the adapter-disabled model)."""
    from alignment.data import load_dataset_for
    from alignment.lora import lora_config_for
    from alignment.models import dtype_for, load_tokenizer, load_with_adapter

    tok = load_tokenizer(cfg.base)
    # a parent adapter keeps training (the result stays one adapter on the base, servable as is)
    model, chain = load_with_adapter(cfg.base, cfg.adapter, mode="continue", dtype=dtype_for(cfg))
    peft_config = None if cfg.adapter else lora_config_for(model, cfg)
    train_ds, eval_ds = load_dataset_for(
        stage, cfg.data, max_samples=cfg.max_samples, eval_fraction=cfg.eval_fraction, seed=cfg.seed
    )
    return run_trainer(
        trainer_cls,
        cfg,
        run_dir,
        model=model,
        tokenizer=tok,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        peft_config=peft_config,
        merged_parents=chain,
        resume_from=resume_from,
        stop=stop,
        **extra,
    )
