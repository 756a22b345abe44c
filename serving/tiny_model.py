"""Embedded models, built offline: a random-weight Qwen2 causal LM with a BPE tokenizer trained here.

    preflab tiny-model models/tiny                 # ~0.3M parameters: tests and the demo
    preflab tiny-model models/small --size small   # ~90M parameters: benchmarks
    preflab tiny-model models/tiny-rm --reward     # the same with a sequence-classification head (num_labels=1)

The folder is a normal Hugging Face model folder (save_pretrained), so AutoModelForCausalLM, AutoTokenizer
and vLLM load it like any downloaded model. head_dim is 32 or more because vLLM rejects 16. Nothing is
downloaded: the tokenizer is trained on serving/data/tokenizer_corpus.txt, shipped in the project.
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


def build_tiny_model(out_dir: str | Path, size: str = "tiny", *, reward: bool = False, seed: int = 0) -> Path:
    """Write a random-weight Qwen2 model + tokenizer + chat template to `out_dir` and return it.

    With reward=True the model is Qwen2ForSequenceClassification with num_labels=1 (a reward model).
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
