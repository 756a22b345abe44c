"""Showing GET /api/stats: agreement numbers, the per-annotator table and the charts (Review and Data pages).

The stats body is read defensively (missing parts are simply not shown), so a server that adds fields never
breaks the page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st


def _agreement(stats: dict) -> dict:
    value = stats.get("agreement")
    return value if isinstance(value, dict) else {}


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


COUNT_LABELS = {
    "prompts": "Prompts",
    "generations": "Answers",
    "submitted": "Rankings",
    "annotators": "Annotators",
    "pairs": "Pairs",
    "ties": "Ties",
}
AGREEMENT_LABELS = {
    "prompts_with_overlap": "Overlap",  # six metrics to a row: a longer label is cut off
    "kendall_tau": "Kendall τ-b",
    "kendall_w": "Kendall's W",
    "krippendorff_alpha": "Krippendorff α",
    "pair_agreement": "Pair agreement",
}
AGREEMENT_HELP = {
    "prompts_with_overlap": "Prompts ranked by two or more annotators: agreement is measured on these.",
    "kendall_tau": "Mean Kendall tau-b over every two rankings of a prompt: 1 same order, 0 unrelated, -1 reversed.",
    "kendall_w": "Kendall's W per prompt, averaged: 1 means every annotator gave the same order.",
    "krippendorff_alpha": "Ordinal Krippendorff's alpha over the dataset; 0.667+ is usually called acceptable.",
    "pair_agreement": "Share of votes agreeing with the consensus, over pairs with two or more votes.",
}


def _metric_row(items: list[tuple[str, object, str | None]]) -> None:
    cols = st.columns(6)
    for col, (name, value, help_text) in zip(cols, items[:6], strict=False):
        col.metric(name, _num(value), help=help_text, border=True)


def agreement_metrics(stats: dict) -> None:
    """Two rows of st.metric: how much there is, and how well the annotators agree."""
    counts = stats.get("counts") if isinstance(stats.get("counts"), dict) else stats
    volume = [
        (name, counts[key], None) for key, name in COUNT_LABELS.items() if isinstance(counts.get(key), int | float)
    ]
    agreement = _agreement(stats)
    agree = [
        (name, agreement.get(key, counts.get(key)), AGREEMENT_HELP.get(key))
        for key, name in AGREEMENT_LABELS.items()
        if key in agreement or key in counts
    ]
    if not volume and not agree:
        st.caption("No statistics yet.")
        return
    if volume:
        _metric_row(volume)
    if agree:
        _metric_row(agree)


def annotator_table(stats: dict) -> pd.DataFrame | None:
    """One row per annotator (rankings, agreement with others, time on task), if the stats carry it."""
    rows = stats.get("per_annotator") or stats.get("annotators") or _agreement(stats).get("per_annotator")
    if isinstance(rows, dict):  # {name: {...}}
        rows = [{"annotator": name, **(v if isinstance(v, dict) else {"value": v})} for name, v in rows.items()]
    if not isinstance(rows, list) or not rows:
        return None
    return pd.DataFrame(rows)


def _series(stats: dict, *keys: str) -> pd.DataFrame | None:
    for key in keys:
        rows = stats.get(key)
        if rows is None:
            rows = _agreement(stats).get(key)
        if isinstance(rows, dict) and rows:
            return pd.DataFrame({"key": list(rows.keys()), "value": list(rows.values())})
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            return pd.DataFrame(rows)
    return None


def charts(stats: dict) -> None:
    """Rankings per day, per annotator, and the distribution of per-prompt agreement."""
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**Rankings per day**")
        frame = _series(stats, "per_day", "rankings_per_day")
        if frame is not None:
            x = "day" if "day" in frame else frame.columns[0]
            y = "rankings" if "rankings" in frame else frame.columns[-1]
            # bars, not a line: a line needs two days, and a first day of rankings would draw nothing at all
            st.bar_chart(frame.assign(**{x: frame[x].astype(str)}), x=x, y=y, height=240, x_label="day")
        else:
            st.caption("No rankings yet.")
    with middle:
        st.markdown("**Rankings per annotator**")
        frame = annotator_table(stats)
        if frame is not None and "rankings" in frame:
            x = "annotator" if "annotator" in frame else frame.columns[0]
            st.bar_chart(frame, x=x, y="rankings", height=240, horizontal=True)
        else:
            st.caption("No rankings yet.")
    with right:
        st.markdown("**Agreement per prompt** (Kendall's W)")
        frame = _series(stats, "agreement_distribution", "agreement_histogram")
        if frame is not None and "prompts" in frame and frame["prompts"].sum() > 0:
            if "kendall_w_from" in frame:
                frame = frame.assign(
                    w=[f"{a:.1f}–{b:.1f}" for a, b in zip(frame.kendall_w_from, frame.kendall_w_to, strict=True)]
                )
            x = "w" if "w" in frame else frame.columns[0]
            st.bar_chart(frame, x=x, y="prompts", height=240, x_label="Kendall's W", y_label="prompts")
        else:
            st.caption("Needs prompts ranked by two or more annotators.")


def curve(frame: pd.DataFrame, **kwargs) -> None:
    """A line per column over the index; points while there is one row (a line through one point draws nothing,
    as after a run's first logged step)."""
    (st.line_chart if len(frame) > 1 else st.scatter_chart)(frame, **kwargs)
