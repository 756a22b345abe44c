"""What a submit must satisfy, in plain Python: statuses, text limits, ranks checked and made dense, and the pairs
a ranking gives. No SQL here, so the queue, review (db.review), history edits (db.history) and the server's
in-memory front (serving.api.queue_front) apply one rule set.
"""

from __future__ import annotations

from db.errors import InputError

COUNTED_SOURCES = ("human", "import", "synthetic")  # rankings that fill a slot (not adjudication or arena)
STATUSES = ("submitted", "skipped", "flagged")
MAX_TEXT = 10_000  # comment / reasons


def ranking_pairs(ranks: dict[int, int]) -> list[tuple[int, int, int, bool]]:
    """(chosen, rejected, margin, is_tie) for every two answers: the rule of Store._derive_pairs_for, in Python.

    Computed here from the ranks in hand because the SQL version joins ranking_items with itself, a cost that
    grows with every ranking ever stored; tests/db/test_queue.py checks both give the same rows.
    """
    out = []
    for a, ra in ranks.items():
        for b, rb in ranks.items():
            if ra < rb or (ra == rb and a < b):
                out.append((a, b, rb - ra, ra == rb))
    return out


def dense_ranks(ranks: dict[int, int]) -> dict[int, int]:
    """{gen: rank} with ranks renumbered 1, 2, 3 ... keeping ties: {a: 1, b: 3, c: 3} -> {a: 1, b: 2, c: 2}."""
    levels = {r: i + 1 for i, r in enumerate(sorted(set(ranks.values())))}
    return {g: levels[r] for g, r in ranks.items()}


def parse_ranks(ranks: dict, answers: list[int], outsider: str) -> dict[int, int]:
    """{answer id: rank} from a request body: ids must be among `answers`, ranks integers >= 1.

    `outsider` finishes the message for an id that is not one of `answers` ("answer 7 <outsider>").
    """
    clean: dict[int, int] = {}
    for key, rank in ranks.items():
        try:
            gid = int(key)
        except (TypeError, ValueError):
            raise InputError(f"'{key}' is not an answer id", field=f"ranks.{key}") from None
        if gid not in answers:
            raise InputError(f"answer {gid} {outsider}", field=f"ranks.{key}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise InputError(f"rank must be an integer >= 1, got {rank!r}", field=f"ranks.{key}")
        clean[gid] = rank
    return clean


def validate(status: str, ranks: dict | None, order: list[int], skip_reason, flag_reason, comment) -> dict[int, int]:
    """The dense ranks of a submit of an assignment whose answers are `order`; InputError naming the field."""
    if status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, not '{status}'", field="status")
    for name, value in (("skip_reason", skip_reason), ("flag_reason", flag_reason), ("comment", comment)):
        if value is not None and len(value) > MAX_TEXT:
            raise InputError(f"too long ({len(value)} characters; at most {MAX_TEXT})", field=name)
    if status == "skipped" and not (skip_reason or "").strip():
        raise InputError("a skip needs a reason", field="skip_reason")
    if status == "flagged" and not (flag_reason or "").strip():
        raise InputError("a flag needs a reason", field="flag_reason")
    clean = parse_ranks(ranks or {}, order, "is not part of this assignment")
    if status == "submitted":
        missing = [g for g in order if g not in clean]
        if missing:
            raise InputError(
                f"every answer needs a rank; missing {len(missing)} (answer {missing[0]})", field=f"ranks.{missing[0]}"
            )
    elif clean and len(clean) != len(order):
        clean = {}  # a partial ranking on a skip or flag carries no preference
    return dense_ranks(clean) if clean else {}
