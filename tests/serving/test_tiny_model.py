import json

import pytest


def test_tiny_model_loads_generates_and_round_trips_text(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.config.hidden_size // model.config.num_attention_heads >= 32  # vLLM rejects head_dim 16
    text = "¿Dónde está 東京? 🗼"
    assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    assert chat.endswith("<|im_start|>assistant\n")
    ids = tok(chat, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=5, min_new_tokens=5, do_sample=True)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    cfg = json.loads((tiny_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" in cfg


def test_same_seed_same_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from serving.engines.tiny_model import build_tiny_model

    # a short pre-training (the default is longer) still runs every part of it: init, examples, optimizer
    a = load_file(build_tiny_model(tmp_path / "a", pretrain_steps=8) / "model.safetensors")
    b = load_file(build_tiny_model(tmp_path / "b", pretrain_steps=8) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(build_tiny_model(tmp_path / "c", pretrain_steps=8, seed=1) / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_pretrained_tiny_model_is_not_uniform_and_stops(tiny_model_dir):
    """The loop needs a model whose answers can be shaped: a random one is uniform over the vocabulary
    (entropy ln 1024 = 6.93 nats) and almost never emits the end token within 24 tokens."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = [[{"role": "user", "content": f'Tell me about topic {i}. Use the word "water".'}] for i in range(16)]
    enc = tok.apply_chat_template(
        prompts, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True
    )
    torch.manual_seed(0)
    with torch.no_grad():
        probs = model(**enc).logits[:, -1].softmax(-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean().item()
        out = model.generate(**enc, do_sample=True, top_k=0, max_new_tokens=24, num_return_sequences=4)
    answers = out[:, enc["input_ids"].shape[1] :]
    stopped = (answers == tok.eos_token_id).any(dim=1).float().mean().item()
    assert entropy < math.log(len(tok)) - 1.0  # well below uniform
    assert stopped >= 0.1  # a random-weight model: ~0.02


def test_reward_variant_scores_one_number(tiny_reward_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir)
    batch = tok(["short", "a longer answer"], return_tensors="pt", padding=True)
    assert model(**batch).logits.shape == (2, 1)


def test_head_dim_16_is_refused():
    from serving.engines.tiny_model import TinyModelConfig

    with pytest.raises(ValueError, match="head_dim"):
        TinyModelConfig(
            vocab_size=10,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=8,
        )
