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


def validate(
    status: str, ranks: dict | None, order: list[int], skip_reason, flag_reason, comment, *, task: str = "rank"
) -> dict[int, int]:
    """The dense ranks of a submit of an assignment whose answers are `order`; InputError naming the field.
    A 'rate' task takes no ranks (its answers get thumbs, validate_feedback): always {}."""
    if status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, not '{status}'", field="status")
    for name, value in (("skip_reason", skip_reason), ("flag_reason", flag_reason), ("comment", comment)):
        if value is not None and len(value) > MAX_TEXT:
            raise InputError(f"too long ({len(value)} characters; at most {MAX_TEXT})", field=name)
    if status == "skipped" and not (skip_reason or "").strip():
        raise InputError("a skip needs a reason", field="skip_reason")
    if status == "flagged" and not (flag_reason or "").strip():
        raise InputError("a flag needs a reason", field="flag_reason")
    if task == "rate":
        if ranks:
            raise InputError("this dataset rates each answer (thumbs); it takes no ranks", field="ranks")
        return {}
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


def _answer_id(key, order: list[int], field: str) -> int:
    try:
        gid = int(key)
    except (TypeError, ValueError):
        raise InputError(f"'{key}' is not an answer id", field=field) from None
    if gid not in order:
        raise InputError(f"answer {gid} is not part of this assignment", field=field)
    return gid


def validate_feedback(status: str, fields: dict, order: list[int], settings: dict) -> dict:
    """A submit's feedback beyond the ranks, checked against the dataset's `settings` ({task, aspects, rationale},
    db.settings): {"ratings": {answer id: {aspect: value}}, "rationale": text or None, "thumbs": {answer id: bool}}.

    `fields` may hold `ratings` {answer id: {aspect: value}}, `rationale` (text) and, for task 'rate', `thumbs`
    {answer id: true|false}. InputError naming the field (ratings.<id>.<aspect>, rationale, thumbs.<id>). Only a
    'submitted' status has to be complete; a skip or flag keeps no ratings or thumbs."""
    task, mode = settings.get("task", "rank"), settings.get("rationale", "off")
    aspects = {a["name"]: a for a in settings.get("aspects") or []}
    rationale = fields.get("rationale")
    if rationale is not None:
        if not isinstance(rationale, str):
            raise InputError("the rationale is text", field="rationale")
        if len(rationale) > MAX_TEXT:
            raise InputError(f"too long ({len(rationale)} characters; at most {MAX_TEXT})", field="rationale")
        if mode == "off" and rationale.strip():
            raise InputError("this dataset takes no rationale", field="rationale")
        rationale = rationale.strip() or None
    ratings: dict[int, dict[str, float]] = {}
    for key, per in (fields.get("ratings") or {}).items():
        gid = _answer_id(key, order, f"ratings.{key}")
        if not isinstance(per, dict):
            raise InputError("ratings of an answer are {aspect: value}", field=f"ratings.{key}")
        for name, value in per.items():
            where = f"ratings.{key}.{name}"
            if name not in aspects:
                known = ", ".join(aspects) or "none"
                raise InputError(f"unknown aspect '{name}' (this dataset rates: {known})", field=where)
            a = aspects[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not a["min"] <= value <= a["max"]:
                raise InputError(f"a number from {a['min']} to {a['max']}, got {value!r}", field=where)
            ratings.setdefault(gid, {})[name] = float(value)
    thumbs: dict[int, bool] = {}
    raw_thumbs = fields.get("thumbs") or {}
    if raw_thumbs and task != "rate":
        raise InputError("thumbs are for a 'rate' task; this dataset ranks", field="thumbs")
    for key, label in raw_thumbs.items():
        gid = _answer_id(key, order, f"thumbs.{key}")
        if not isinstance(label, bool):
            raise InputError(f"true (thumbs up) or false (thumbs down), got {label!r}", field=f"thumbs.{key}")
        thumbs[gid] = label
    if status != "submitted":
        return {"ratings": {}, "rationale": rationale, "thumbs": {}}
    if task == "rate":
        missing = [g for g in order if g not in thumbs]
        if missing:
            raise InputError(f"every answer needs a thumbs up or down; missing answer {missing[0]}",
                             field=f"thumbs.{missing[0]}")  # fmt: skip
    for name, a in aspects.items():
        if a.get("required"):
            for g in order:
                if name not in ratings.get(g, {}):
                    raise InputError(f"aspect '{name}' is required for every answer", field=f"ratings.{g}.{name}")
    if mode == "required" and not rationale:
        raise InputError("this dataset asks for a rationale with every ranking", field="rationale")
    return {"ratings": ratings, "rationale": rationale, "thumbs": thumbs}
