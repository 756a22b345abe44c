"""The synthetic annotator: a documented, rule-based preference that stands in for people in `preflab loop`.

    rule_reward("Tell me about rivers. Use the word \"water\".", "water is wet")   # 1.0 + 0.5 - 11/200
    ranks = rule_ranks(prompt_text, answers)                 # 1 = best, equal scores tie
    annotate_dataset(store, "loop-r1", SyntheticConfig(annotators=3, noise=0.1, seed=0))

The rule (the same one judges the arena, so a model that learned it wins there):

1. Keyword. A prompt may request a keyword (`Use the word "X"`, `keyword: X`, case-insensitive). An answer that
   contains it scores 1, plus up to 0.5 more the earlier it appears: 1 + 0.5 * (1 - start / len(answer)).
2. Length. Every answer loses len(answer) / 200 (characters), capped at 1: shorter is better, and the keyword
   always outweighs length.

reward = keyword term - length term. Answers are ranked by reward, highest first; equal rewards are ties.

Several annotators rank each prompt. Each sees the rule's ranking and, for every adjacent position of it, swaps
the two answers' ranks with probability `noise`, so annotators disagree at a controlled rate and the agreement
and consensus code has something to measure. noise = 0: every annotator gives the same ranking. Randomness is
seeded per (seed, annotator, prompt), so a run is reproducible and does not depend on processing order.

Rankings are written as source 'synthetic' by users of kind 'synthetic' (named `synthetic-1`, `synthetic-2`,
...), through Store.write_batch, which derives the pairs in SQL.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field

from db import synthetic
from db.staging import Batch
from db.store import Store

log = logging.getLogger(__name__)

LENGTH_SCALE = 200.0  # characters per unit of penalty: 24 tokens of the tiny model are ~60-120 characters
KEYWORD_BONUS = 1.0
EARLY_BONUS = 0.5
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


def rule_reward(prompt_text: str, answer: str) -> float:
    """The rule's score of one answer (higher is better); see the module docstring."""
    score = -min(len(answer) / LENGTH_SCALE, 1.0)
    keyword = requested_keyword(prompt_text)
    if keyword:
        start = answer.lower().find(keyword.lower())
        if start >= 0:
            score += KEYWORD_BONUS + EARLY_BONUS * (1.0 - start / max(len(answer), 1))
    return score


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
