"""The synthetic annotator: a documented, rule-based preference that stands in for people in `preflab loop`.

    rule_reward("Tell me about rivers. Use the word \"water\".", "the water is cold")   # (1 + 2 + 1 + 1) / 4
    ranks = rule_ranks(prompt_text, answers)                 # 1 = best, equal scores tie
    annotate_dataset(store, "loop-r1", SyntheticConfig(annotators=3, noise=0.1, seed=0))

The rule (the same one judges the arena, so a model that learned it wins there) prefers real words over made-up
ones, the tiny model's real flaw, and has no length term:

1. Window. Only the answer's first WINDOW (4) words are judged (a word is a run of letters, any script), so every
   answer is judged on the same number of words: at matched length.
2. Each of those words scores 1 if it is a real word, 0 if it is made up; the keyword the prompt requests (`Use
   the word "X"`, `keyword: X`, case-insensitive) scores 2. A real word is one that occurs at least 3 times in
   serving/data/tokenizer_corpus.txt, the text the tiny model is pre-trained on (about 3,100 words).
3. A slot that an answer shorter than the window leaves empty scores MISSING_WORD (0.4), the base tiny model's
   share of real words, so stopping early earns nothing on average and neither does running on.

reward = the mean of the window's slot scores, in [0, 2]. Answers are ranked by reward, highest first; equal
rewards are ties.

Why a tiny model can learn it: about 40% of its words are real words already (the rest are fragments that its
byte-level tokenizer glues together), so every ranking has real-word answers above made-up ones, and moving
probability toward whole-word tokens at the start of an answer is a small change a LoRA can make in one round.
The loop's report shows the mean length of each round's chosen and rejected answers (docs/loop.md).

Several annotators rank each prompt. Each sees the rule's ranking and, for every adjacent position of it, swaps
the two answers' ranks with probability `noise`, so annotators disagree at a controlled rate and the agreement
and consensus code has something to measure. noise = 0: every annotator gives the same ranking. Randomness is
seeded per (seed, annotator, prompt), so a run is reproducible and does not depend on processing order.

Rankings are written as source 'synthetic' by users of kind 'synthetic' (named `synthetic-1`, `synthetic-2`,
...), through Store.write_batch, which derives the pairs in SQL.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources

from db import synthetic
from db.staging import Batch
from db.store import Store

log = logging.getLogger(__name__)

WINDOW = 4  # words judged per answer
KEYWORD_SCORE = 2.0
MISSING_WORD = 0.4  # the base tiny model's share of real words (measured on 160 of its answers: 0.41)
MIN_COUNT = 3  # occurrences in the pre-training corpus that make a word real
_WORD = re.compile(r"[^\W\d_]+")
_KEYWORD_PATTERNS = [
    re.compile(r"use the word\s+[\"'“«]?([^\s\"'”».,;:!?]+)", re.IGNORECASE),
    re.compile(r"keyword\s*[:=]\s*[\"'“«]?([^\s\"'”».,;:!?]+)", re.IGNORECASE),
]


def requested_keyword(prompt_text: str) -> str | None:
    """The keyword a prompt asks for (`Use the word "X"` or `keyword: X`), or None."""
    for pattern in _KEYWORD_PATTERNS:
        m = pattern.search(prompt_text)
        if m:
            return m.group(1)
    return None


@functools.cache
def real_words() -> frozenset[str]:
    """The words (lower case) that occur at least MIN_COUNT times in the tiny model's pre-training corpus."""
    corpus = (resources.files("serving") / "data" / "tokenizer_corpus.txt").read_text(encoding="utf-8")
    counts = Counter(_WORD.findall(corpus.lower()))
    return frozenset(w for w, c in counts.items() if c >= MIN_COUNT)


def rule_reward(prompt_text: str, answer: str) -> float:
    """The rule's score of one answer (higher is better), in [0, 2]; see the module docstring."""
    keyword = (requested_keyword(prompt_text) or "").lower()
    vocabulary = real_words()
    words = _WORD.findall(answer.lower())[:WINDOW]
    total = sum(KEYWORD_SCORE if w == keyword else 1.0 if w in vocabulary else 0.0 for w in words)
    return (total + (WINDOW - len(words)) * MISSING_WORD) / WINDOW


def ranks_from_scores(scores: list[float]) -> list[int]:
    """Dense ranks, 1 = highest score; equal scores share a rank (a tie)."""
    distinct = sorted(set(scores), reverse=True)
    place = {s: i + 1 for i, s in enumerate(distinct)}
    return [place[s] for s in scores]


def rule_ranks(prompt_text: str, answers: list[str]) -> list[int]:
    """The noiseless ranking of `answers` under the rule (1 = best, ties share a rank)."""
    return ranks_from_scores([round(rule_reward(prompt_text, a), 9) for a in answers])


def noisy_ranks(ranks: list[int], noise: float, rng: random.Random) -> list[int]:
    """Swap the ranks of neighbours in the ranking's order, each adjacent position with probability `noise`."""
    out = list(ranks)
    order = sorted(range(len(out)), key=lambda i: (out[i], i))
    for pos in range(len(order) - 1):
        if rng.random() < noise:
            i, j = order[pos], order[pos + 1]
            out[i], out[j] = out[j], out[i]
            order[pos], order[pos + 1] = j, i
    return out


def judge(prompt_text: str, answer_a: str, answer_b: str) -> str:
    """An arena verdict under the same rule: 'a', 'b' or 'tie'."""
    ra, rb = round(rule_reward(prompt_text, answer_a), 9), round(rule_reward(prompt_text, answer_b), 9)
    return "a" if ra > rb else "b" if rb > ra else "tie"


@dataclass(kw_only=True)
class SyntheticConfig:
    annotators: int = 3  # >= 2 so agreement and consensus have something to compare
    noise: float = 0.1  # probability of swapping each adjacent pair of a ranking
    seed: int = 0
    name_prefix: str = "synthetic"

    def __post_init__(self):
        if self.annotators < 1:
            raise ValueError(f"annotators must be >= 1 (e.g. 3); got {self.annotators}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise is a probability: use a value in [0, 1] (e.g. 0.1); got {self.noise}")

    def annotator_names(self) -> list[str]:
        return [f"{self.name_prefix}-{i + 1}" for i in range(self.annotators)]


@dataclass
class AnnotationResult:
    prompts: int = 0
    rankings: int = 0
    pairs: int = 0
    ties: int = 0
    expected_pairs: int = 0  # sum over rankings of C(K, 2): pairs + ties must equal it
    annotators: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _prompt_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m.get("role") == "user")


def annotate_dataset(store: Store, dataset: str, config: SyntheticConfig, *, min_answers: int = 2) -> AnnotationResult:
    """Rank every prompt of `dataset` that has >= min_answers model answers, once per synthetic annotator.

    Prompts an annotator has already ranked are left alone (the UNIQUE (prompt, user) rule), so running this
    twice adds nothing. Returns counts; pairs and ties are what the SQL derivation stored for the new rankings.
    """
    dataset_id = store.dataset_id(dataset)
    rows = synthetic.model_answers(store, dataset_id)
    by_prompt: dict[int, dict] = {}
    for r in rows:
        entry = by_prompt.setdefault(
            r["prompt_id"], {"key": r["prompt_key"], "messages": r["messages"], "answers": []}
        )
        entry["answers"].append((r["gen_key"], r["text"]))
    batch = Batch()
    result = AnnotationResult(annotators=config.annotator_names())
    for entry in by_prompt.values():
        answers = entry["answers"]
        if len(answers) < min_answers:
            continue
        result.prompts += 1
        text = _prompt_text(json.loads(entry["messages"]))
        truth = rule_ranks(text, [a for _, a in answers])
        for name in config.annotator_names():
            rng = random.Random(f"{config.seed}:{name}:{entry['key']}")
            ranks = noisy_ranks(truth, config.noise, rng)
            order = list(range(len(answers)))
            rng.shuffle(order)  # the order the "annotator saw" the answers in: position-bias columns get data
            ranking_key = f"{name}:{entry['key']}"
            batch.rankings.append(
                {
                    "ranking_key": ranking_key,
                    "prompt_key": entry["key"],
                    "annotator": name,
                    "user_kind": "synthetic",
                    "status": "submitted",
                    "source": "synthetic",
                    "comment": f"rule-based, noise={config.noise}",
                }
            )
            for position, i in enumerate(order):
                batch.items.append(
                    {"ranking_key": ranking_key, "gen_key": answers[i][0], "rank": ranks[i], "position": position}
                )
    if not batch.rankings:
        return result
    after_ranking, after_pair = synthetic.last_ids(store)
    counts = store.write_batch(dataset, batch, created_by="synthetic-annotator")
    result.rankings = counts.rankings
    result.pairs, result.ties, result.expected_pairs = synthetic.pairs_added(
        store, dataset_id, after_ranking=after_ranking, after_pair=after_pair
    )
    log.info("synthetic annotation of %s: %s", dataset, result.as_dict())
    return result
