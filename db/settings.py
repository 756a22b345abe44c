"""A dataset's annotation settings beyond k and guidelines: the task, the aspects rated per answer and the rationale.

    get_settings(store, dataset_id)   # {"task": "rank", "aspects": [], "rationale": "off", "gold_rate": 0.05,
                                      #  "selection": "order"}
    set_settings(store, dataset_id, task="rank", aspects=helpsteer2_aspects(), rationale="optional")
    set_settings(store, dataset_id, selection="uncertainty")

task 'rank' asks for an order of the answers (with aspect ratings and a rationale if configured); 'rate' asks for a
thumbs up or down on each answer (binary feedback, no pairs). `selection` is the order the queue
hands prompts out in: 'order' (prompt id) or 'uncertainty' (highest stored priority first, db.priority; prompts
without a score after the scored ones). A dataset without a row has the defaults. The checks
of a submit against these settings are db.queue.rules.validate_feedback.
"""

from __future__ import annotations

import json

from db.errors import InputError

TASKS = ("rank", "rate")
RATIONALE_MODES = ("off", "optional", "required")
SELECTIONS = ("order", "uncertainty")
MAX_ASPECTS = 12  # more than a screen shows beside four answers
MAX_NAME = 40
MAX_DESCRIPTION = 1_000

# HelpSteer2's attributes, 0-4 each, with the dataset card's descriptions (nvidia/HelpSteer2)
_HELPSTEER2 = (
    ("helpfulness", "Overall helpfulness of the response to the prompt."),
    ("correctness", "Inclusion of all pertinent facts without errors."),
    ("coherence", "Consistency and clarity of expression."),
    ("complexity", "Intellectual depth required to write response (i.e. whether the response can be written by "
     "anyone with basic language competency or requires deep domain expertise)."),
    ("verbosity", "Amount of detail included in the response, relative to what is asked for in the prompt."),
)  # fmt: skip


def helpsteer2_aspects(*, required: bool = False) -> list[dict]:
    """HelpSteer2's five aspects on 0-4 (the default preset of the Datasets page)."""
    return [{"name": n, "min": 0, "max": 4, "description": d, "required": required} for n, d in _HELPSTEER2]


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"must be a number, got {value!r}", field=field)
    return value


def clean_aspects(aspects) -> list[dict]:
    """The aspects in canonical form; InputError naming the field (aspects[i].name, ...) for a bad one.

    Each is {name (1-40 characters, unique), min < max (numbers), description (optional), required (bool)}."""
    if aspects is None:
        return []
    if not isinstance(aspects, list):
        raise InputError("aspects must be a list of {name, min, max, description, required}", field="aspects")
    if len(aspects) > MAX_ASPECTS:
        raise InputError(f"at most {MAX_ASPECTS} aspects, got {len(aspects)}", field="aspects")
    out, seen = [], set()
    for i, a in enumerate(aspects):
        where = f"aspects[{i}]"
        if not isinstance(a, dict):
            raise InputError("each aspect is an object {name, min, max, description, required}", field=where)
        strange = sorted(set(a) - {"name", "min", "max", "description", "required"})
        if strange:
            raise InputError(f"unknown key(s) {strange}", field=f"{where}.{strange[0]}")
        name = a.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
            raise InputError(f"a name of 1 to {MAX_NAME} characters", field=f"{where}.name")
        name = name.strip()
        if name in seen:
            raise InputError(f"aspect '{name}' is named twice", field=f"{where}.name")
        seen.add(name)
        lo, hi = _number(a.get("min"), f"{where}.min"), _number(a.get("max"), f"{where}.max")
        if not lo < hi:
            raise InputError(f"min ({lo}) must be below max ({hi})", field=f"{where}.max")
        description = a.get("description") or ""
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InputError(f"a text of at most {MAX_DESCRIPTION} characters", field=f"{where}.description")
        required = a.get("required", False)
        if not isinstance(required, bool):
            raise InputError("true or false", field=f"{where}.required")
        out.append({"name": name, "min": lo, "max": hi, "description": description, "required": required})
    return out


def parse_aspects(raw) -> list[dict]:
    """The stored aspects column (JSON text or None) as a list."""
    if raw is None:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def get_settings(store, dataset_id: int) -> dict:
    """{task, aspects, rationale, gold_rate, selection} of a dataset (the defaults where it has no row)."""
    row = store.row(
        "SELECT task, CAST(aspects AS VARCHAR) AS aspects, rationale, gold_rate, coalesce(selection, 'order') "
        "AS selection FROM dataset_settings WHERE dataset_id = ?",
        [dataset_id],
    )
    if row is None:
        return {"task": "rank", "aspects": [], "rationale": "off", "gold_rate": 0.05, "selection": "order"}
    return {**row, "aspects": parse_aspects(row["aspects"])}


def set_settings(
    store,
    dataset_id: int,
    *,
    task: str | None = None,
    aspects: list | None = None,
    rationale: str | None = None,
    selection: str | None = None,
) -> dict:
    """Change the task, the aspects (a list; [] for none), the rationale mode or the selection; what is None stays.
    Returns get_settings. A change of task rebuilds the dataset's open queue (a 'rate' item may have one answer)."""
    if task is not None and task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, not {task!r}", field="task")
    if rationale is not None and rationale not in RATIONALE_MODES:
        raise InputError(
            f"rationale must be one of {', '.join(RATIONALE_MODES)}, not {rationale!r}", field="rationale"
        )
    if selection is not None and selection not in SELECTIONS:
        raise InputError(f"selection must be one of {', '.join(SELECTIONS)}, not {selection!r}", field="selection")
    clean = None if aspects is None else clean_aspects(aspects)
    with store.transaction() as c:
        if not c.execute("SELECT 1 FROM datasets WHERE id = ?", [dataset_id]).fetchall():
            store.dataset_id(str(dataset_id))  # NotFoundError naming the known datasets
        before = get_settings(store, dataset_id)
        c.execute("INSERT INTO dataset_settings (dataset_id) VALUES (?) ON CONFLICT DO NOTHING", [dataset_id])
        if task is not None:
            c.execute("UPDATE dataset_settings SET task = ? WHERE dataset_id = ?", [task, dataset_id])
        if clean is not None:
            c.execute(
                "UPDATE dataset_settings SET aspects = ? WHERE dataset_id = ?",
                [json.dumps(clean, ensure_ascii=False) if clean else None, dataset_id],
            )
        if rationale is not None:
            c.execute("UPDATE dataset_settings SET rationale = ? WHERE dataset_id = ?", [rationale, dataset_id])
        if selection is not None:
            c.execute("UPDATE dataset_settings SET selection = ? WHERE dataset_id = ?", [selection, dataset_id])
        if task is not None and task != before["task"]:
            c.execute("DELETE FROM queue_sync WHERE dataset_id = ?", [dataset_id])
    return get_settings(store, dataset_id)
