"""The feedback controls of the Rank page beyond the rank picker: aspect ratings, thumbs and the rationale.

    values = aspect_rows(item["aspects"], prefix=prefix, pos=0, answer_id=31, errors=errors)  # {aspect: score}
    label = thumbs_picker(prefix=prefix, pos=0, answer_id=31, errors=errors)                 # True | False | None
    text = rationale_box(item["rationale"], prefix=prefix, errors=errors)

What they ask for comes with the served item (`task`, `aspects`, `rationale`, docs/api.md); a dataset without
them gets none of these. `errors` is {field: message} from the server's last 400 (`ratings.31.helpfulness`,
`thumbs.31`, `rationale`), shown under the control the field names. Widget keys: `{prefix}_asp_{pos}_{i}`,
`{prefix}_thumb_{pos}`, `{prefix}_rationale`. The keys that drive them are in annotate/ranking.py's script.
"""

from __future__ import annotations

import math

import streamlit as st

from annotate.render import safe_markdown

THUMBS = {True: "👍 Good", False: "👎 Bad"}
MAX_BUTTONS = 11  # a scale with more steps than this gets a number box instead of one button per step


def aspect_key(prefix: str, pos: int, index: int) -> str:
    return f"{prefix}_asp_{pos}_{index}"


def thumb_key(prefix: str, pos: int) -> str:
    return f"{prefix}_thumb_{pos}"


def scale(aspect: dict) -> list[int] | None:
    """The whole numbers from min to max (the buttons to show), or None for a scale too fine or wide for buttons."""
    lo, hi = math.ceil(aspect["min"]), math.floor(aspect["max"])
    if hi < lo or hi - lo + 1 > MAX_BUTTONS:
        return None
    return list(range(lo, hi + 1))


def field_errors(error) -> dict[str, str]:
    """{field: message} from an ApiError the page can place next to a control; {} for one it cannot."""
    field = getattr(error, "field", None)
    if getattr(error, "status", None) == 400 and field and field.split(".")[0] in ("ratings", "thumbs", "rationale"):
        return {field: error.message}
    return {}


def aspect_rows(aspects: list[dict], *, prefix: str, pos: int, answer_id: int, errors: dict[str, str]) -> dict:
    """Per aspect its name (the description as help) over a picker of its scale; -> {aspect: value}."""
    values: dict[str, float] = {}
    for index, aspect in enumerate(aspects):
        name = aspect["name"]
        # the name above its scale, not beside it: three answers side by side leave a card no room for both
        title = safe_markdown(name) + (" :red[\\*]" if aspect.get("required") else "")
        tip = (aspect.get("description") or name) + (" Required." if aspect.get("required") else "")
        options = scale(aspect)
        key = aspect_key(prefix, pos, index)
        if options is None:
            value = st.number_input(
                title,
                min_value=float(aspect["min"]),
                max_value=float(aspect["max"]),
                value=None,
                key=key,
                help=tip,
                placeholder=f"{aspect['min']}–{aspect['max']}",
            )
        else:
            value = st.segmented_control(title, options, key=key, help=tip, width="stretch")
        if value is not None:
            values[name] = value
        error = errors.get(f"ratings.{answer_id}.{name}")
        if error:
            st.error(error, icon=":material/error:")
    error = errors.get(f"ratings.{answer_id}")
    if error:
        st.error(error, icon=":material/error:")
    return values


def thumbs_picker(*, prefix: str, pos: int, answer_id: int, errors: dict[str, str]) -> bool | None:
    """Thumbs up or down for one answer (a two-button picker; U and D press them from the keyboard)."""
    label = st.segmented_control(
        f"Thumbs for answer {pos + 1}",
        [True, False],
        format_func=THUMBS.get,
        key=thumb_key(prefix, pos),
        label_visibility="collapsed",
        width="stretch",
        help="Is this answer good? Keyboard: U for 👍, D for 👎 on the answer in focus.",
    )
    error = errors.get(f"thumbs.{answer_id}")
    if error:
        st.error(error, icon=":material/error:")
    return label


def rationale_box(mode: str | None, *, prefix: str, errors: dict[str, str]) -> str:
    """The rationale text area ('' where the dataset's rationale is off: nothing is shown then)."""
    if mode not in ("optional", "required"):
        return ""
    text = st.text_area(
        "Why this order? (required)" if mode == "required" else "Why this order? (optional)",
        key=f"{prefix}_rationale",
        height=90,
        placeholder="What made the best answer better, and what was wrong with the others",
        max_chars=10_000,
    )
    if errors.get("rationale"):
        st.error(errors["rationale"], icon=":material/error:")
    return text


def missing_feedback(
    answers: list[dict], aspects: list[dict], ratings: dict, thumbs: dict | None, rationale_mode, rationale: str
) -> list[str]:
    """What a submit still lacks, as short phrases: required aspects per answer, thumbs, a required rationale."""
    missing = []
    required = [a["name"] for a in aspects if a.get("required")]
    for pos, answer in enumerate(answers):
        lacking = [name for name in required if name not in ratings.get(answer["id"], {})]
        if lacking:
            missing.append(f"Answer {pos + 1}: {', '.join(lacking)}")
    if thumbs is not None:
        no_thumb = [f"{pos + 1}" for pos, a in enumerate(answers) if thumbs.get(a["id"]) is None]
        if no_thumb:
            missing.append(f"a thumbs up or down for answer {', '.join(no_thumb)}")
    if rationale_mode == "required" and not rationale.strip():
        missing.append("the rationale")
    return missing


def shortcut_help(k: int, *, task: str, aspects: list[dict]) -> str:
    """The page's keyboard line: what each key does on this item."""
    parts = []
    if task == "rate":
        parts.append("Tab to an answer's 👍/👎 and press **U** (good) or **D** (bad)")
    else:
        parts.append(f"Tab to an answer's picker and press 1–{k}")
    if aspects:
        parts.append("**A** moves to the answer's next aspect (Shift+A back), a digit sets its score")
    parts.append("Ctrl+Enter submits")
    return "Keyboard: " + "; ".join(parts) + "."
