"""Reward model: TRL's RewardTrainer on chosen/rejected pairs; a score head on the base (or base + SFT adapter).

LoRA on the blocks, the score head trained in full (task SEQ_CLS). With eval_fraction > 0 the pairwise
accuracy on the held-out split is logged as eval_accuracy / final_eval_accuracy, and once training ends the
held-out pairs are evaluated RewardBench-style (alignment.reward_eval: by category, by annotator agreement, margin
calibration) into RUN_DIR/reward_eval.json and the run's metrics (reward_eval_accuracy, ...).
"""

from __future__ import annotations

from alignment.common import run_trainer
from alignment.data import load_dataset_for
from alignment.lora import lora_config_for
from alignment.models import dtype_for, load_tokenizer, load_with_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import RewardTrainer

    tok = load_tokenizer(cfg.base)
    # an SFT parent is merged into the weights; the reward LoRA and score head go on top
    model, chain = load_with_adapter(
        cfg.base, cfg.adapter, mode="merge", reward=True, dtype=dtype_for(cfg), pad_token_id=tok.pad_token_id
    )
    train_ds, eval_ds = load_dataset_for(
        "reward", cfg.data, max_samples=cfg.max_samples, eval_fraction=cfg.eval_fraction, seed=cfg.seed
    )
    if eval_ds is not None and cfg.eval_strategy == "no":
        cfg.eval_strategy = "epoch"
    result = run_trainer(
        RewardTrainer,
        cfg,
        run_dir,
        model=model,
        tokenizer=tok,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        peft_config=lora_config_for(model, cfg, task_type="SEQ_CLS"),
        merged_parents=chain,
        resume_from=resume_from,
        stop=stop,
    )
    if result.get("status") == "finished" and eval_ds is not None:
        from alignment import reward_eval

        report = reward_eval.evaluate_reward(
            result["adapter"], cfg.data, eval_fraction=cfg.eval_fraction, seed=cfg.seed, max_samples=cfg.max_samples
        )
        result["metrics"].update(reward_eval.record(run_dir, report, result["step"]))
        result["reward_eval"] = report
    return result
