"""The Admin page's editor of a dataset's annotation settings: task, aspects rated per answer, rationale mode.

    settings_editor(client, "oasst-demo")   # inside the Datasets tab, under k and guidelines

Reads GET /api/datasets/{name}/settings and saves with PUT (docs/api.md); the server checks the aspects and
answers a 400 naming the field (`aspects[1].max`), shown under the table. Widget keys start with `admin_set_`.
"""

from __future__ import annotations

import json
import math
import zlib

import pandas as pd
import streamlit as st

from annotate.client import ApiError, Client, dataset_settings, recompute_priorities, save_dataset_settings

TASKS = {"rank": "Rank the answers", "rate": "Rate each answer (👍 / 👎)"}
RATIONALE = {"off": "Off", "optional": "Optional", "required": "Required"}
SELECTIONS = {"order": "In prompt order", "uncertainty": "Most uncertain first"}
COLUMNS = ["name", "min", "max", "description", "required"]


def _number(value):
    """A cell as JSON wants it: whole floats as ints, blanks as None (the server names a missing number)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    return int(value) if value.is_integer() else value


def aspects_from_rows(rows: list[dict]) -> list[dict]:
    """The table's rows as the API's aspects; rows without a name are dropped (a blank row the editor added)."""
    aspects = []
    for row in rows:
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        description = row.get("description")
        required = row.get("required")
        aspects.append(
            {
                "name": name.strip(),
                "min": _number(row.get("min")),
                "max": _number(row.get("max")),
                "description": description if isinstance(description, str) else "",
                "required": bool(required) if isinstance(required, bool | int) else False,
            }
        )
    return aspects


def _put(client: Client, name: str, **fields) -> None:
    try:
        save_dataset_settings(client, name, **fields)
    except ApiError as e:
        st.session_state.admin_set_error = (name, str(e))
    else:
        st.session_state.admin_set_error = None
        st.session_state.admin_flash = f"Saved the annotation settings of {name}"
    st.rerun()


def settings_editor(client: Client, name: str) -> None:
    """Task, rationale and aspects of dataset `name`, with the HelpSteer2 preset and a Save button."""
    st.markdown("**Annotation task**")
    try:
        current = dataset_settings(client, name)
    except ApiError as e:
        st.error(f"Could not load the settings of {name}: {e}")
        return
    task_col, why_col = st.columns(2)
    task = task_col.radio(
        "Task",
        list(TASKS),
        index=list(TASKS).index(current.get("task") or "rank"),
        format_func=TASKS.get,
        key=f"admin_set_task_{name}",
        help="Rank: order the answers of a prompt. Rate: a thumbs up or down on each answer (binary feedback).",
    )
    rationale = why_col.radio(
        "Rationale",
        list(RATIONALE),
        index=list(RATIONALE).index(current.get("rationale") or "off"),
        format_func=RATIONALE.get,
        key=f"admin_set_rationale_{name}",
        horizontal=True,
        help="A free-text 'why' under the ranking; Required refuses a submit without one.",
    )
    selection = st.radio(
        "Queue order",
        list(SELECTIONS),
        index=list(SELECTIONS).index(current.get("selection") or "order"),
        format_func=SELECTIONS.get,
        key=f"admin_set_selection_{name}",
        horizontal=True,
        help="Most uncertain first hands out the prompts the reward model is least sure about first, from the scores "
        "`preflab prioritize` stored; prompts without a score come after them.",
    )
    if st.button(
        "Recompute priorities",
        key=f"admin_set_prioritize_{name}",
        icon=":material/insights:",
        help="Fit the reward-model ensemble on the rankings so far and score every prompt (docs/active.md); do it "
        "after each round of labels.",
    ):
        try:
            r = recompute_priorities(client, name)
        except ApiError as e:
            st.error(f"Not recomputed: {e}", icon=":material/error:")
        else:
            st.success(
                f"Scored {r['ensemble']} prompts by the ensemble's uncertainty and {r['novelty']} without answers by "
                f"novelty, from {r['pairs']} ranked pairs",
                icon=":material/check:",
            )
    aspects = current.get("aspects") or []
    st.caption(
        "Aspects each answer is scored on (e.g. 0–4). Leave the table empty for none; a required aspect needs a "
        "score for every answer. The description is the help annotators see."
    )
    # keyed by what the server holds: after a preset or a save, the table starts again from the stored aspects
    version = zlib.crc32(json.dumps(aspects, sort_keys=True).encode())
    table = st.data_editor(
        pd.DataFrame(aspects, columns=COLUMNS),
        num_rows="dynamic",
        width="stretch",
        hide_index=True,
        key=f"admin_set_aspects_{name}_{version}",
        column_config={
            "name": st.column_config.TextColumn("name", max_chars=40, required=True),
            "min": st.column_config.NumberColumn("min", default=0),
            "max": st.column_config.NumberColumn("max", default=4),
            "description": st.column_config.TextColumn("description", width="large"),
            "required": st.column_config.CheckboxColumn("required", default=False),
        },
    )
    save_col, preset_col, clear_col = st.columns([1, 1.4, 1])
    if save_col.button("Save settings", type="primary", key="admin_set_save", icon=":material/save:"):
        rows = table.astype(object).where(table.notna(), None).to_dict("records")
        _put(client, name, task=task, rationale=rationale, selection=selection, aspects=aspects_from_rows(rows))
    if preset_col.button(
        "Use HelpSteer2's aspects",
        key="admin_set_preset",
        icon=":material/auto_awesome:",
        help="helpfulness, correctness, coherence, complexity and verbosity on 0–4, with HelpSteer2's descriptions",
    ):
        _put(client, name, task=task, rationale=rationale, selection=selection, aspects="helpsteer2")
    if clear_col.button("No aspects", key="admin_set_clear", disabled=not aspects):
        _put(client, name, aspects=[])
    error = st.session_state.get("admin_set_error")
    if error and error[0] == name:
        st.error(f"Not saved: {error[1]}", icon=":material/error:")
