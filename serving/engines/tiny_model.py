"""Embedded models, built offline: a small Qwen2 causal LM with a BPE tokenizer trained here.

    preflab tiny-model models/tiny                 # ~0.14M parameters, briefly pre-trained: tests and the demo
    preflab tiny-model models/small --size small   # ~90M parameters, random weights: benchmarks
    preflab tiny-model models/tiny-rm --reward     # random weights with a sequence-classification head (num_labels=1)

The folder is a normal Hugging Face model folder (save_pretrained), so AutoModelForCausalLM, AutoTokenizer
and vLLM load it like any downloaded model. head_dim is 32 or more because vLLM rejects 16. Nothing is
downloaded: the tokenizer is trained on serving/data/tokenizer_corpus.txt, shipped in the project.

The tiny causal LM is pre-trained for a few hundred steps (seconds on one CPU thread, deterministic) on chat
turns made from the same corpus: a user turn, then an assistant answer cut to a random length of 1 to 30
words and closed by the template's end token. A random-weight model has a near-uniform next-token
distribution (entropy ln 1024 = 6.93 nats), almost never stops, and its tied, near-zero embeddings cap how far
an adapter can move a logit, so no preference can be learnt from its samples. After pre-training it writes
word-like text and stops after a varied number of tokens: `preflab loop` then has something to align (for
instance the synthetic rule's "shorter is better" is one token, the end token, raised earlier).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

# ChatML, as Qwen2 uses it: the engine applies it, so the sampler can send plain messages.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(kw_only=True)
class TinyModelConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048
    pretrain_steps: int = 0  # causal-LM steps on chat turns from the shipped corpus (0: random weights)

    def __post_init__(self):
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim < 32:  # vLLM's attention kernels reject head_dim 16
            raise ValueError(f"head_dim is {head_dim}; use hidden_size / num_attention_heads >= 32")


SIZES = {
    # well under 1M parameters: seconds to build, milliseconds per token on a CPU
    "tiny": TinyModelConfig(
        vocab_size=1024,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=128,
        pretrain_steps=240,
    ),
    # about 90M parameters: big enough that batching and KV caches matter in benchmarks
    "small": TinyModelConfig(
        vocab_size=8192,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        intermediate_size=2048,
    ),
    # Qwen2-0.5B's layer shapes (24 layers of 896, 14 heads, 2 KV heads) with our small vocabulary: about 0.4B
    # parameters, for GPU checks (bench/gpu_check.py); random weights
    "half": TinyModelConfig(
        vocab_size=8192,
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
    ),
}


def train_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer trained on the shipped corpus, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = (resources.files("serving") / "data" / "tokenizer_corpus.txt").read_text(encoding="utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.split("\n\n"), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.padding_side = "left"  # decoder-only generation pads on the left
    return wrapped


# Pre-training of the tiny model (see the module docstring). Chosen so the build stays well under a minute on
# one shared core while the model stops within 24 tokens about half the time at temperature 1.
PRETRAIN_BATCH = 16
PRETRAIN_LR = 5e-3
PRETRAIN_USER_WORDS = 16  # the user turn is cut to this many words
PRETRAIN_ANSWER_WORDS = (1, 30)  # the answer is cut to a uniform random number of words in this range
PRETRAIN_MAX_TOKENS = 96


def _pretrain_turns() -> list[str]:
    """The corpus messages that are mostly ASCII (English and Spanish): the loop's prompts are English."""
    corpus = (resources.files("serving") / "data" / "tokenizer_corpus.txt").read_text(encoding="utf-8")
    messages = [" ".join(m.split()) for m in corpus.split("\n\n")]
    return [m for m in messages if m and sum(ch.isascii() for ch in m) >= 0.97 * len(m)]


def pretrain(model, tokenizer, *, steps: int, seed: int = 0) -> dict:
    """Train `model` (a causal LM) in place for `steps` steps on chat turns from the shipped corpus.

    Each example is a user turn (a corpus message cut to PRETRAIN_USER_WORDS words) followed by an assistant
    answer (another message cut to a random number of words) and the end token, in the chat template. The
    loss covers every token but the padding. Deterministic for a given seed: one torch thread, a seeded
    example order. Returns {"steps", "loss_first", "loss_last", "seconds"}.
    """
    import random
    import time

    import torch

    turns = _pretrain_turns()
    rng = random.Random(f"pretrain:{seed}")
    pad = tokenizer.pad_token_id

    def example() -> list[int]:
        user = " ".join(rng.choice(turns).split()[:PRETRAIN_USER_WORDS])
        answer = " ".join(rng.choice(turns).split()[: rng.randint(*PRETRAIN_ANSWER_WORDS)])
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"][:PRETRAIN_MAX_TOKENS]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # determinism, and a shared CPU
    t0 = time.perf_counter()
    losses = []
    try:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.0)
        warmup = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps)
        )
        for _ in range(steps):
            seqs = [example() for _ in range(PRETRAIN_BATCH)]
            width = max(len(q) for q in seqs)
            # right padding and no attention mask: with causal attention no real token sees a pad after it
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            labels = torch.full((len(seqs), width), -100, dtype=torch.long)
            for i, q in enumerate(seqs):
                ids[i, : len(q)] = torch.tensor(q)
                labels[i, : len(q)] = ids[i, : len(q)]
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        model.eval()
    finally:
        torch.set_num_threads(threads)
    return {
        "steps": steps,
        "loss_first": losses[0] if losses else None,
        "loss_last": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "seconds": time.perf_counter() - t0,
    }


def build_tiny_model(
    out_dir: str | Path,
    size: str = "tiny",
    *,
    reward: bool = False,
    seed: int = 0,
    pretrain_steps: int | None = None,
) -> Path:
    """Write a Qwen2 model + tokenizer + chat template to `out_dir` and return it.

    The causal LM of size "tiny" is pre-trained for SIZES["tiny"].pretrain_steps steps (see `pretrain`);
    pretrain_steps overrides that (0: random weights). With reward=True the model is
    Qwen2ForSequenceClassification with num_labels=1 (a reward model) with random weights.
    The same seed gives the same weights and tokenizer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, Qwen2Config

    if size not in SIZES:
        raise ValueError(f"unknown size '{size}'; choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    if reward:
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
        steps = spec.pretrain_steps if pretrain_steps is None else pretrain_steps
        if steps > 0:
            stats = pretrain(model, tokenizer, steps=steps, seed=seed)
            log.info(
                "pre-trained %d steps in %.1f s: loss %.2f -> %.2f",
                steps,
                stats["seconds"],
                stats["loss_first"],
                stats["loss_last"],
            )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not reward:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.save_pretrained(out)
    # Older transformers (the vLLM environment pins transformers < 5.20) read the class name from here.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    # transformers 4.x reads a list under this key
    tok_cfg["additional_special_tokens"] = tok_cfg.pop("extra_special_tokens", ["<|im_start|>"])
    tok_cfg["model_max_length"] = spec.max_position_embeddings
    tok_cfg.setdefault("chat_template", CHAT_TEMPLATE)
    tok_cfg_path.write_text(json.dumps(tok_cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "built %s model (%s, %.2fM parameters) in %s", size, "reward" if reward else "causal-lm", n_params / 1e6, out
    )
    return out
