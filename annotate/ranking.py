"""The ranking control shared by Rank and Review: a card per answer with a 1..K rank picker.

    ranks = answer_cards(answers, prefix=f"rank_{assignment_id}")   # {generation_id: rank | None}

Equal ranks are ties. Widget keys are `{prefix}_{position}` (position = where the answer is shown), so a new
item gets fresh widgets and tests can drive them. `typed_order_box` lets a keyboard user type "2 > 1 = 3 > 4"
and sets the pickers from it; `number_keys` lets them press a digit to rank the answer whose picker has focus
(or score its aspect in focus; A moves between pickers, U/D give thumbs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import streamlit as st

from annotate.render import order_preview, show_answer


def label(position: int) -> str:
    return f"Answer {position + 1}"


def rank_key(prefix: str, position: int) -> str:
    return f"{prefix}_{position}"


def grid_columns(k: int) -> int:
    """Side by side for 2-3 answers; a 2-wide grid for 4 or more so code and tables keep room."""
    return k if k <= 3 else 2


def answer_cards(
    answers: list[dict],
    *,
    prefix: str,
    extra: dict[int, str] | None = None,
    picker: Callable[[int, dict], Any] | None = None,
    footer: Callable[[int, dict], None] | None = None,
) -> dict[int, Any]:
    """Show every answer in a bordered card with its rank picker; -> {generation_id: rank or None}.

    `extra` optionally adds a caption under an answer's header (the review page shows who ranked it how).
    `picker(pos, answer)` replaces the rank picker in the header (the rate task's thumbs; its value is returned
    instead of the rank) and `footer(pos, answer)` adds controls under the answer text (aspect ratings).
    """
    k = len(answers)
    ncols = grid_columns(k)
    ranks: dict[int, int | None] = {}
    for row_start in range(0, k, ncols):
        cols = st.columns(ncols, gap="medium")
        for offset, col in enumerate(cols):
            pos = row_start + offset
            if pos >= k:
                break
            answer = answers[pos]
            with col, st.container(border=True, key=f"{prefix}_card_{pos}"):
                head, pick_col = st.columns([1, 1.6], vertical_alignment="center")
                head.markdown(f"**{label(pos)}**")  # not a markdown heading: its link anchor would be a tab stop
                with pick_col:
                    if picker is not None:
                        ranks[answer["id"]] = picker(pos, answer)
                    else:
                        ranks[answer["id"]] = st.segmented_control(
                            f"Rank for {label(pos)}",
                            list(range(1, k + 1)),
                            key=rank_key(prefix, pos),
                            label_visibility="collapsed",
                            width="stretch",
                            help="1 is best. Give two answers the same number to mark a tie.",
                        )
                if extra and extra.get(answer["id"]):
                    st.caption(extra[answer["id"]])
                show_answer(answer.get("text") or "", key=f"{prefix}_text_{pos}")
                if footer is not None:
                    footer(pos, answer)
    return ranks


def preview_line(answers: list[dict], ranks: dict[int, int | None]) -> tuple[str, list[str]]:
    """('Answer 2 > Answer 1 = Answer 3', ['Answer 4']): the order so far and the answers still unranked."""
    by_label = {label(i): ranks.get(a["id"]) for i, a in enumerate(answers)}
    missing = [name for name, r in by_label.items() if r is None]
    return order_preview(by_label), missing


def parse_order(text: str, k: int) -> list[int]:
    """'2 > 1 = 3 > 4' (or '2>1=3>4', '2 1=3 4') -> rank per position [2, 1, 2, 3]. ValueError if malformed."""
    groups = [g for g in re.split(r"[>\s,;]+", re.sub(r"\s*=\s*", "=", text.strip())) if g]
    ranks: dict[int, int] = {}
    for level, group in enumerate(groups, start=1):
        for token in group.split("="):
            if not token.isdigit() or not 1 <= int(token) <= k:
                raise ValueError(f"'{token}' is not an answer number (1-{k})")
            pos = int(token) - 1
            if pos in ranks:
                raise ValueError(f"answer {token} appears twice")
            ranks[pos] = level
    if len(ranks) != k:
        left = ", ".join(str(p + 1) for p in range(k) if p not in ranks)
        raise ValueError(f"the order leaves out answer {left}")
    return [ranks[p] for p in range(k)]


def _apply_typed(prefix: str, k: int, box_key: str) -> None:
    text = st.session_state.get(box_key, "")
    if not text.strip():
        return
    try:
        ranks = parse_order(text, k)
    except ValueError as e:
        st.session_state[f"{box_key}_error"] = f"Could not read “{text}”: {e}. Example: 2 > 1 = 3"
        return
    for pos, r in enumerate(ranks):
        st.session_state[rank_key(prefix, pos)] = r
    st.session_state.pop(f"{box_key}_error", None)
    st.session_state[box_key] = ""


def typed_order_box(prefix: str, k: int) -> None:
    """A text box: type the order with the keyboard ('2 > 1 = 3 > 4'), Enter sets every rank picker."""
    box_key = f"{prefix}_typed"
    st.text_input(
        "Type the order",
        key=box_key,
        placeholder="e.g. 2 > 1 = 3" + (" > 4" if k >= 4 else ""),
        on_change=_apply_typed,
        args=(prefix, k, box_key),
        help="Answer numbers from best to worst; '=' for a tie. Enter applies it to the rank pickers.",
    )
    error = st.session_state.pop(f"{box_key}_error", None)
    if error:
        st.error(error)


# Keys inside an answer's card: a digit picks that value in the picker that has focus (the rank picker when focus is
# elsewhere in the card), A / Shift+A move focus to the card's next / previous picker (rank, then each aspect), and
# U / D press thumbs up / down. Streamlit has no key events, so a few lines of script in the page do it by clicking
# the picker's button, as a mouse would; keys typed into text boxes are left alone. Installed once per browser tab.
_NUMBER_KEYS_JS = """<script>(function () {
  if (window.__preflabNumberKeys) return;
  window.__preflabNumberKeys = true;
  function press(group, match) {
    var buttons = Array.prototype.slice.call(group.querySelectorAll("button"));
    var button = typeof match === "number" ? buttons[match] : buttons.find(function (b) {
      return b.textContent.trim() === match;
    });
    if (!button) return false;
    if (button.getAttribute("aria-checked") !== "true") button.click();  // a second click would clear the value
    button.focus();
    return true;
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    var target = e.target;
    if (!target || !target.closest || target.closest("input, textarea, select, [contenteditable]")) return;
    var card = target.closest("[class*='st-key-'][class*='_card_']");
    if (!card) return;
    var groups = Array.prototype.slice.call(card.querySelectorAll("[role='radiogroup']"));
    if (!groups.length) return;
    var here = target.closest("[role='radiogroup']");
    var key = e.key.toLowerCase();
    if (/^[0-9]$/.test(key)) {
      if (press(here && groups.indexOf(here) >= 0 ? here : groups[0], key)) e.preventDefault();
    } else if (key === "a") {
      var at = groups.indexOf(here);
      var next = groups[e.shiftKey ? (at <= 0 ? groups.length - 1 : at - 1) : (at + 1) % groups.length];
      var focus = next.querySelector("button[aria-checked='true']") || next.querySelector("button");
      if (focus) { focus.focus(); e.preventDefault(); }
    } else if (key === "u" || key === "d") {
      var thumbs = card.querySelector("[class*='_thumb_'] [role='radiogroup']");
      if (thumbs && press(thumbs, key === "u" ? 0 : 1)) e.preventDefault();
    }
  }, true);
})();</script>"""


def number_keys() -> None:
    """Keys for the focused answer: digits set its rank or aspect score, A moves between them, U/D give thumbs."""
    st.html(_NUMBER_KEYS_JS, unsafe_allow_javascript=True)
