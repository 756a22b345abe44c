"""PPO against a reward model, ours (TRL 1.16 has no PPOTrainer). Small on purpose; one step is:

1. rollout   sample completions from the policy (a LoRA adapter on the SFT/base model)
2. score     the reward model (or a reward function) scores each whole answer
3. reference log-probs of the same tokens with the adapter *disabled*: the reference costs no memory
4. rewards   per token: -kl_coef * (logp - logp_ref), plus the score (less the rollout's mean: center_scores) on
             the last token; whitened
5. GAE       advantages and returns from a value head (a Linear on the last hidden state)
6. update    ppo_epochs passes of the clipped surrogate objective + clipped value loss

    python -m alignment ppo RUN_DIR     # config: base, adapter (the SFT adapter), data (prompts), reward_model

Logged per step (metrics.jsonl, TensorBoard): reward (mean raw score), kl, value_loss, policy_loss,
clip_fraction, entropy, learning_rate. Runs on one device; for several GPUs use rloo/grpo.
"""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from alignment.data import load_dataset_for
from alignment.lora import lora_config_for
from alignment.models import dtype_for, load_reward_model, load_tokenizer, load_with_adapter, write_adapter_meta
from alignment.runs import ADAPTER, TENSORBOARD, StopSignal, append_metrics, final_metrics

log = logging.getLogger(__name__)

RewardFn = Callable[..., list[float]]  # (prompts=[str], completions=[str], completion_ids=[[int]]) -> scores


class ValueHead(nn.Module):
    """V(s) for every position: one Linear on the policy's last hidden state (trained, saved in checkpoints)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.float()).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over completion tokens; returns (advantages, returns)."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, adv + values


def token_rewards(cfg, scores: torch.Tensor, kl: torch.Tensor, cmask: torch.Tensor, *, ended: torch.Tensor):
    """Per-token rewards of a rollout: -kl_coef * kl on every answer token, plus each answer's score (less the
    rollout's mean with center_scores; less missing_eos_penalty when it never `ended`) on its last token; whitened
    with whiten_rewards.

    A rollout whose answers all score the same is not centred: it says nothing about which answer is better, and
    centred it would leave the update nothing but the value head's noise, which the advantages' whitening blows up
    (a policy that had reached the top score then drifted off it); uncentred it keeps what it sampled."""
    if cfg.center_scores and len(scores) > 1 and float(scores.std()) > 1e-6:
        scores = scores - scores.mean()
    if cfg.missing_eos_penalty is not None:
        scores = scores - cfg.missing_eos_penalty * (~ended).float()
    rewards = -cfg.kl_coef * kl
    last = (cmask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last)), last] += scores
    if cfg.whiten_rewards:
        rewards = masked_whiten(rewards, cmask, shift_mean=False)
    return rewards


def completion_mask(completion: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 for tokens up to and including the first EOS, 0 after it."""
    is_eos = completion == eos_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0
    return (~after).float()


def forward_tokens(
    policy, value_head, seqs, attn, prompt_len: int, *, temperature: float = 1.0, with_values: bool = True
):
    """Log-probs (at the sampling temperature), entropies and values of the completion tokens."""
    position_ids = (attn.long().cumsum(1) - 1).clamp(min=0)
    out = policy(
        input_ids=seqs,
        attention_mask=attn,
        position_ids=position_ids,
        output_hidden_states=with_values,
        use_cache=False,
    )
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    targets = seqs[:, prompt_len:]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1]) if with_values else None
    return logp, entropy, values


class RewardModelScorer:
    """Scores prompt + completion text with a frozen sequence-classification model."""

    def __init__(self, path: str, tokenizer, dtype, device):
        self.model = load_reward_model(path, dtype=dtype, pad_token_id=tokenizer.pad_token_id).to(device)
        self.tok, self.device = tokenizer, device

    @torch.no_grad()
    def __call__(self, *, prompts: list, completions: list[str], **_) -> list[float]:
        texts = []
        for p, c in zip(prompts, completions, strict=True):
            if isinstance(p, list):
                texts.append(self.tok.apply_chat_template([*p, {"role": "assistant", "content": c}], tokenize=False))
            else:
                texts.append(p + c)
        self.tok.padding_side = "right"
        enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=1024).to(self.device)
        self.tok.padding_side = "left"
        return self.model(**enc).logits[:, 0].float().tolist()


def _encode_prompts(tok, prompts: list, max_len: int) -> list[list[int]]:
    out = []
    for p in prompts:
        if isinstance(p, list):
            ids = tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False)
        else:
            ids = tok(p, add_special_tokens=False)["input_ids"]
        out.append(list(ids)[-max_len:])
    return out


def _save_checkpoint(path: Path, policy, value_head, optimizer, step: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(str(path))
    torch.save(value_head.state_dict(), path / "value_head.pt")
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")


def _load_checkpoint(path: Path, policy, value_head, optimizer) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(policy, load_file(str(path / "adapter_model.safetensors")))
    value_head.load_state_dict(torch.load(path / "value_head.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]


def train(cfg, run_dir, *, resume_from=None, stop: StopSignal | None = None, reward_fn: RewardFn | None = None):
    """Run PPO for cfg.max_steps rollout batches (or num_train_epochs over the prompts)."""
    from peft import get_peft_model

    run_dir, stop = Path(run_dir), stop or StopSignal()
    device = torch.device("cuda" if torch.cuda.is_available() and not cfg.use_cpu else "cpu")
    tok = load_tokenizer(cfg.base)
    tok.padding_side = "left"
    # the parent (SFT) adapter is merged: "adapter disabled" then means exactly the SFT model, the reference
    model, chain = load_with_adapter(cfg.base, cfg.adapter, mode="merge", dtype=dtype_for(cfg))
    policy = get_peft_model(model, lora_config_for(model, cfg)).to(device)
    value_head = ValueHead(model.config.hidden_size).to(device)
    scorer = reward_fn or RewardModelScorer(cfg.reward_model, tok, dtype_for(cfg), device)

    prompts = load_dataset_for("ppo", cfg.data, max_samples=cfg.max_samples)[0]["prompt"]
    prompt_ids = _encode_prompts(tok, prompts, cfg.max_prompt_length)
    bs = cfg.per_device_train_batch_size
    max_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * len(prompts) / bs)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=1e-5)
    start = _load_checkpoint(Path(resume_from), policy, value_head, optimizer) if resume_from else 0
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / TENSORBOARD))
    eos = tok.eos_token_id
    for step in range(start, max_steps):
        torch.manual_seed(cfg.seed + step)  # rollouts depend on the step only: a resumed run repeats them
        idx = random.Random(cfg.seed + step).sample(range(len(prompts)), k=min(bs, len(prompts)))
        stats = ppo_step(
            cfg,
            policy,
            value_head,
            optimizer,
            scorer,
            tok,
            [prompts[i] for i in idx],
            [prompt_ids[i] for i in idx],
            eos,
            device,
        )
        record = {"step": step + 1, "stage": "ppo", "learning_rate": cfg.learning_rate, **stats}
        append_metrics(run_dir, record)
        for k, v in stats.items():
            writer.add_scalar(f"ppo/{k}", v, step + 1)
        if (step + 1) % cfg.logging_steps == 0 or step == start:
            log.info("step %d/%d %s", step + 1, max_steps, {k: round(v, 4) for k, v in stats.items()})
        save_now = cfg.save_steps and (step + 1) % int(cfg.save_steps) == 0
        if save_now or stop.requested:
            _save_checkpoint(run_dir / f"checkpoint-{step + 1}", policy, value_head, optimizer, step + 1)
        if stop.requested:
            writer.close()
            return {"status": "cancelled", "step": step + 1}
    writer.close()
    adapter_dir = run_dir / ADAPTER
    policy.save_pretrained(str(adapter_dir))
    torch.save(value_head.state_dict(), adapter_dir / "value_head.pt")
    tok.save_pretrained(str(adapter_dir))
    write_adapter_meta(
        adapter_dir, base=cfg.base, stage="ppo", parent=cfg.adapter, merged_parents=chain, snapshot_id=cfg.snapshot_id
    )
    return {"status": "finished", "step": max_steps, "adapter": str(adapter_dir), "metrics": final_metrics(run_dir)}


def ppo_step(cfg, policy, value_head, optimizer, scorer, tok, prompts, prompt_ids, eos, device) -> dict:
    """One rollout batch and its PPO updates; returns the step's statistics."""
    width = max(map(len, prompt_ids))
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=device)
    pmask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=device)
    policy.eval()
    with torch.no_grad():
        seqs = policy.generate(
            input_ids=ids,
            attention_mask=pmask,
            max_new_tokens=cfg.max_completion_length,
            do_sample=True,
            temperature=cfg.temperature,
            top_k=cfg.top_k or None,
            top_p=1.0,
            pad_token_id=pad,
            eos_token_id=eos,
        )
        completion = seqs[:, width:]
        cmask = completion_mask(completion, eos)
        attn = torch.cat([pmask, cmask.long()], dim=1)
        old_logp, _, old_values = forward_tokens(policy, value_head, seqs, attn, width, temperature=cfg.temperature)
        with policy.disable_adapter():  # the reference: same weights, adapter off
            ref_logp, _, _ = forward_tokens(
                policy, value_head, seqs, attn, width, temperature=cfg.temperature, with_values=False
            )
        texts = [tok.decode(c[m.bool()], skip_special_tokens=True) for c, m in zip(completion, cmask, strict=True)]
        comp_ids = [c[m.bool()].tolist() for c, m in zip(completion, cmask, strict=True)]
        scores = torch.tensor(
            scorer(prompts=prompts, completions=texts, completion_ids=comp_ids), dtype=torch.float32, device=device
        )
        raw_scores = scores.clone()
        kl = (old_logp - ref_logp) * cmask
        rewards = token_rewards(cfg, scores, kl, cmask, ended=(completion == eos).any(1))
        advantages, returns = gae(rewards, old_values * cmask, cmask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, cmask)

    policy.train()
    n, mb = seqs.shape[0], seqs.shape[0] // cfg.num_mini_batches
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "approx_kl": 0.0}
    updates = 0
    for _ in range(cfg.ppo_epochs):
        for start in range(0, n, mb):
            sl = slice(start, start + mb)
            m = cmask[sl]
            logp, entropy, values = forward_tokens(
                policy, value_head, seqs[sl], attn[sl], width, temperature=cfg.temperature
            )
            ratio = torch.exp(logp - old_logp[sl])
            adv = advantages[sl]
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange))
            policy_loss = masked_mean(pg, m)
            v_clip = old_values[sl] + (values - old_values[sl]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
            value_loss = 0.5 * masked_mean(torch.max((values - returns[sl]) ** 2, (v_clip - returns[sl]) ** 2), m)
            loss = policy_loss + cfg.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                totals["policy_loss"] += policy_loss.item()
                totals["value_loss"] += value_loss.item()
                totals["clip_fraction"] += masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), m).item()
                totals["entropy"] += masked_mean(entropy, m).item()
                totals["approx_kl"] += masked_mean(0.5 * (logp - old_logp[sl]) ** 2, m).item()
            updates += 1
    stats = {k: v / updates for k, v in totals.items()}
    stats.update(
        {
            "reward": raw_scores.mean().item(),
            "reward_std": raw_scores.std().item() if len(raw_scores) > 1 else 0.0,
            "kl": kl.sum(1).mean().item(),
            "completion_length": cmask.sum(1).mean().item(),
        }
    )
    return stats
