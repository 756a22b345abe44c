"""Annotators (reviewers and admins): which labels to trust, per annotator, and the controls that act on it.

The table and series come from GET /api/annotators; pausing and weighting an annotator is
POST /api/annotators/{name}/controls. A paused annotator gets no new items in the dataset; weight 0 leaves their
votes out of weighted consensus and quality-filtered exports.
"""

from __future__ import annotations

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.picker import pick_dataset
from annotate.quality_view import MEASURES, column_config, quality_frame, series_chart, speed_chart, styled
from annotate.render import safe_markdown
from annotate.session import get_client


def _num(value, digits: int = 2) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN


require_role("reviewer", "admin")
client = get_client()

st.title("Annotators", anchor=False)
st.caption(
    "Which labels to trust: each annotator's agreement with the others, accuracy on gold items, speed and "
    "habits. Sort by any column; hover a header for what it measures."
)

dataset = pick_dataset(client, key="annotators_dataset")
try:
    data = client.annotators(dataset)
except ApiError as e:
    st.error(f"Could not load the annotators of {dataset}: {e}")
    st.stop()
rows: list[dict] = data.get("annotators") or []
if not rows:
    st.info(
        f"No rankings in **{safe_markdown(dataset)}** yet. Once annotators submit rankings, each of them gets a "
        "row here with their agreement, gold accuracy and speed."
    )
    st.stop()

frame = quality_frame(rows)
flagged = frame[frame["gold_flagged"]]["annotator"].tolist()
paused = frame[frame["paused"]]["annotator"].tolist()
cols = st.columns(4)
cols[0].metric("Annotators", len(frame), border=True)
cols[1].metric("Median quality", _num(frame["quality"].median()), border=True, help=MEASURES["quality"])
cols[2].metric("Failing gold", len(flagged), border=True, help="Accuracy below 0.7 on their first gold items.")
cols[3].metric("Paused", len(paused), border=True)
if flagged:
    st.warning(
        "Gold items flag " + ", ".join(f"**{safe_markdown(n)}**" for n in flagged) + ": they disagree with the "
        "known order of the gold items. Look at their rows, then pause them or lower their weight below.",
        icon=":material/warning:",
    )
if len(frame) == 1:
    st.info(
        "Only one annotator has ranked this dataset, so there is no agreement to measure yet: agreement compares "
        "each annotator with the others on the prompts they share. Gold accuracy and speed still show.",
        icon=":material/person:",
    )
elif frame["pair_agreement"].isna().all():
    st.info(
        "No two annotators have ranked the same prompt yet, so agreement is a dash. With k ≥ 2 annotators per "
        "prompt it fills in.",
        icon=":material/group:",
    )
if frame["gold_items"].fillna(0).sum() == 0:
    st.caption("No one has ranked a gold item yet: gold accuracy shows once gold items (marked in Review) come up.")

st.subheader("Per annotator", divider="gray", anchor=False)
st.dataframe(
    styled(frame),
    column_config=column_config(),
    hide_index=True,
    width="stretch",
    height=min(len(frame), 25) * 35 + 38,  # every row in view up to 25, no scrolling inside the table
    key="annotators_table",
)

st.subheader("Speed against agreement", divider="gray", anchor=False)
left, right = st.columns([3, 1])
with right:
    measure = st.radio(
        "Agreement measure",
        list(MEASURES),
        format_func=MEASURES.get,
        key="annotators_measure",
        help="Quality is the reliability model's estimate; pair agreement and τ-b compare with the others directly.",
    )
    st.caption(
        "One point per annotator. Bottom left, fast and near the dashed coin-flip line, is where spammers sit; "
        "careful annotators are to the right and high."
    )
chart = speed_chart(frame, y=measure)
if chart is None:
    left.info(f"No annotator has both a median time and a {MEASURES[measure]} yet.")
else:
    left.altair_chart(chart, width="stretch", key="annotators_scatter")

st.subheader("Over time", divider="gray", anchor=False)
series = data.get("series") or []
by_quality = frame.sort_values("quality", na_position="last")["annotator"].tolist()  # lowest quality first
pick_col, measure_col = st.columns([3, 1])
shown = pick_col.multiselect(
    "Annotators",
    by_quality,
    default=by_quality[:3] + [n for n in by_quality[-3:] if n not in by_quality[:3]],
    key=f"annotators_series_{dataset}",
    help="By default the three lowest and the three highest quality; the dashed line is everyone's median.",
)
per_day = measure_col.radio(
    "Measure",
    ["items", "median_seconds"],
    format_func={"items": "items per day", "median_seconds": "median seconds"}.get,
    key="annotators_series_measure",
)
chart = series_chart(series, shown, measure=per_day)
if chart is None:
    st.caption("No rankings with a date yet.")
else:
    st.altair_chart(chart, width="stretch", key="annotators_series_chart")

st.subheader("Pause or weight an annotator", divider="gray", anchor=False)
st.caption(
    "Pausing stops new items in this dataset at once (what they already submitted stays). The weight scales "
    "their votes in weighted consensus and quality-filtered exports; 0 leaves them out."
)
row_of = {r["annotator"]: r for r in rows}
name = st.selectbox(
    "Annotator", by_quality, key="annotators_pick", help="Lowest quality first.", index=0 if by_quality else None
)
if name is None:
    st.stop()
row = row_of[name]
st.markdown(
    f"**{safe_markdown(name)}** · quality {_num(row.get('quality'))} · agreement {_num(row.get('pair_agreement'))}"
    f" · gold accuracy {_num(row.get('gold_accuracy'))} · median {_num(row.get('median_seconds'), 1)} s"
    + (" · **fails gold**" if row.get("gold_flagged") else "")
    + (" · **paused**" if row.get("paused") else "")
)
act_col, weight_col, save_col = st.columns([1.2, 2.5, 1], vertical_alignment="bottom")
if row.get("paused"):
    toggle = act_col.button("Resume", key="annotators_resume", icon=":material/play_arrow:", width="stretch")
else:
    toggle = act_col.button("Pause", key="annotators_pause", icon=":material/pause:", width="stretch")
weight = weight_col.slider(
    "Weight (0 = exclude)",
    min_value=0.0,
    max_value=1.0,
    value=float(row.get("weight") if row.get("weight") is not None else 1.0),
    step=0.05,
    key=f"annotators_weight_{dataset}_{name}",
)
save = save_col.button("Save weight", key="annotators_save_weight", icon=":material/save:", width="stretch")
try:
    if toggle:
        client.set_annotator_control(name, dataset, paused=not row.get("paused"))
        st.session_state["annotators_done"] = f"{name} {'resumed' if row.get('paused') else 'paused'} in {dataset}."
        st.rerun()
    if save:
        client.set_annotator_control(name, dataset, weight=weight)
        st.session_state["annotators_done"] = f"{name}'s weight in {dataset} is now {weight:.2f}."
        st.rerun()
except ApiError as e:
    st.error(f"Not changed: {e}")
done = st.session_state.pop("annotators_done", None)
if done:
    st.success(safe_markdown(done), icon=":material/check:")
