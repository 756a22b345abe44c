"""The loop's prompts: each asks for a keyword the synthetic annotators reward, in a seeded, reproducible order.

texts = make_prompts(200, seed=0)            # the same seed, the same list
add_prompts(store, "loop-r1", texts)         # one dataset of them (idempotent: prompts are deduplicated)
"""

from __future__ import annotations

import json
import random

from db.hashing import prompt_hash
from db.staging import Batch
from db.store import Store

# Single tokens of the tiny model's tokenizer (" water" is one token), so a tiny model can emit them by chance
# and DPO has examples to learn from.
KEYWORDS = ["water", "food", "health", "robot", "people", "climate", "farm", "diet", "logic", "chord", "acid", "text"]
TOPICS = [
    "rivers",
    "cities",
    "breakfast",
    "machines",
    "friendship",
    "the weather",
    "gardens",
    "music",
    "travel",
    "old books",
    "the ocean",
    "mountains",
    "a small village",
    "winter",
    "markets",
    "bicycles",
    "the moon",
    "a library",
    "school",
    "trains",
]
STYLES = [
    "Tell me about {topic}.",
    "Write one sentence about {topic}.",
    "Describe {topic} briefly.",
    "What do you think of {topic}?",
]
VARIANTS = 10  # "(#1)" ... "(#9)" suffixes make more distinct prompts from one combination
MAX_PROMPTS = len(KEYWORDS) * len(TOPICS) * len(STYLES) * VARIANTS


def make_prompts(count: int, seed: int) -> list[str]:
    """`count` distinct prompts that each request a keyword, in a seeded order (the same seed, the same list)."""
    combos = [(s, t, k, v) for s in STYLES for t in TOPICS for k in KEYWORDS for v in range(VARIANTS)]
    random.Random(seed).shuffle(combos)
    out = []
    for style, topic, keyword, variant in combos[:count]:
        suffix = f" (#{variant})" if variant else ""
        out.append(f'{style.format(topic=topic)} Use the word "{keyword}".{suffix}')
    return out


def add_prompts(store: Store, dataset: str, texts: list[str]) -> None:
    """Store each text as a one-message user prompt of `dataset` (created if missing); a prompt already there is
    kept as it is."""
    batch = Batch()
    for text in texts:
        messages = [{"role": "user", "content": text}]
        batch.prompts.append(
            {
                "key": prompt_hash(messages),
                "messages": json.dumps(messages, ensure_ascii=False),
                "source": "preflab loop",
            }
        )
    store.write_batch(dataset, batch, created_by="preflab-loop")
