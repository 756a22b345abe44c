"""Showing GET /api/annotators: the per-annotator table and its two charts (the Annotators page).

    frame = quality_frame(rows)          # one row per annotator, numbers kept numeric so the table sorts
    st.dataframe(styled(frame), column_config=COLUMNS)
    st.altair_chart(speed_chart(frame, y="quality"))
    st.altair_chart(series_chart(series, names, measure="items"))

Rows are read defensively (a missing field shows as a dash), so a server that adds fields never breaks the page.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

# API field -> column title; the order is the table's order
TITLES = {
    "flag": "⚑",
    "annotator": "annotator",
    "quality": "quality",
    "pair_agreement": "agreement",
    "pairs_compared": "pairs",
    "tau_b": "τ-b",
    "gold_accuracy": "gold acc.",
    "gold_items": "gold items",
    "median_seconds": "median s",
    "too_fast": "too fast",
    "first_best": "first best",
    "first_best_chance": "chance",
    "position_bias": "position bias",
    "tie_rate": "ties",
    "all_bad_rate": "all bad",
    "rankings": "rankings",
    "paused": "paused",
    "weight": "weight",
}
COUNTS = ("pairs_compared", "gold_items", "rankings")
HELP = {
    "flag": "⚠ gold: fails the gold items (accuracy below 0.7 over their first gold items). ⏸ paused.",
    "quality": "Dawid-Skene reliability: the annotator's estimated accuracy on pairs (1 never wrong, 0.5 a coin). "
    "Pair agreement where the model could not be fitted.",
    "pair_agreement": "Leave-one-out: the share of their votes that go the way the other annotators' majority goes.",
    "pairs_compared": "How many pair votes the agreement is measured on.",
    "tau_b": "Mean Kendall tau-b against the consensus of the others' rankings of the same prompt.",
    "gold_accuracy": "Pair agreement with the known order of gold items (a tie counts half).",
    "gold_items": "Gold items this annotator has ranked.",
    "median_seconds": "Median seconds per item.",
    "too_fast": "Share of items done in under a quarter of the dataset's median time (at least 1 s).",
    "first_best": "How often the answer shown first was ranked best.",
    "first_best_chance": "What a position-blind annotator would give for 'first best'.",
    "position_bias": "First best ÷ chance: 1 is no bias; 4 with four answers means always the first.",
    "tie_rate": "Share of pair votes that are ties.",
    "all_bad_rate": "Share of rankings marked 'all answers bad'.",
    "weight": "Weight of their votes in weighted consensus and quality-filtered exports (0 excludes them).",
}
MEASURES = {"quality": "quality (reliability)", "pair_agreement": "pair agreement", "tau_b": "τ-b"}


def _flag(row: dict) -> str:
    marks = []
    if row.get("gold_flagged"):
        marks.append("⚠ gold")
    if row.get("paused"):
        marks.append("⏸ paused")
    return " ".join(marks)


def quality_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per annotator with the columns of TITLES (API names), numbers as floats (None -> NaN)."""
    frame = pd.DataFrame([{**{k: row.get(k) for k in TITLES}, "flag": _flag(row)} for row in rows])
    for key in TITLES:
        if key not in ("flag", "annotator", "paused"):
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    frame["paused"] = frame["paused"].fillna(False).astype(bool)
    frame["gold_flagged"] = [bool(row.get("gold_flagged")) for row in rows]
    return frame


def styled(frame: pd.DataFrame):
    """The table as shown: two decimals, whole counts, a dash for "not measured", suspect rows tinted.

    A Styler changes only what is shown; the values underneath stay numbers, so a click on a header sorts
    numerically."""
    shown = frame[list(TITLES)]
    decimals = [k for k in TITLES if k not in (*COUNTS, "flag", "annotator", "paused")]
    flagged = frame["gold_flagged"].to_numpy()

    def tint(row: pd.Series) -> list[str]:
        bad = flagged[shown.index.get_loc(row.name)]
        return ["background-color: rgba(255, 75, 75, 0.12)" if bad else ""] * len(row)

    return (
        shown.style.format("{:.2f}", subset=decimals, na_rep="—")
        .format("{:.0f}", subset=list(COUNTS), na_rep="—")
        .apply(tint, axis=1)
    )


def column_config() -> dict:
    """Titles and help for every column (header tooltips explain each measure)."""
    config = {key: st.column_config.Column(title, help=HELP.get(key)) for key, title in TITLES.items()}
    config["annotator"] = st.column_config.TextColumn("annotator", pinned=True)
    config["paused"] = st.column_config.CheckboxColumn("paused", help="Paused annotators get no new items.")
    return config


def speed_chart(frame: pd.DataFrame, *, y: str) -> alt.Chart | None:
    """Speed against agreement, one labelled point per annotator; None when no one has both numbers.

    Spammers sit bottom left (fast and no better than a coin), careful annotators top right."""
    data = frame.dropna(subset=["median_seconds", y]).copy()
    if data.empty:
        return None
    data["status"] = [
        "fails gold" if g else "paused" if p else "ok" for g, p in zip(data.gold_flagged, data.paused, strict=True)
    ]
    colors = alt.Scale(domain=["ok", "fails gold", "paused"], range=["#1f77b4", "#e4572e", "#9a9a9a"])
    top = max(1.0, float(data[y].max()))
    low = min(0.4, float(data[y].min()) - 0.05)
    base = alt.Chart(data).encode(
        x=alt.X("median_seconds:Q", title="median seconds per item (log)", scale=alt.Scale(type="log", nice=False)),
        y=alt.Y(f"{y}:Q", title=MEASURES[y], scale=alt.Scale(domain=[low, top])),
    )
    points = base.mark_circle(size=110, opacity=0.85).encode(
        color=alt.Color("status:N", scale=colors, legend=alt.Legend(title=None, orient="bottom")),
        tooltip=[
            alt.Tooltip("annotator:N"),
            alt.Tooltip(f"{y}:Q", title=MEASURES[y], format=".2f"),
            alt.Tooltip("median_seconds:Q", title="median s", format=".1f"),
            alt.Tooltip("rankings:Q", format=".0f"),
        ],
    )
    labels = base.mark_text(align="left", dx=8, dy=-6, fontSize=11, color="#555").encode(text="annotator:N")
    chance = (
        alt.Chart(pd.DataFrame({"y": [0.5]}))
        .mark_rule(strokeDash=[4, 4], color="#999")
        .encode(y="y:Q", tooltip=alt.value("a coin flip"))
    )
    return (chance + points + labels).properties(height=380)


def series_chart(series: list[dict], names: list[str], *, measure: str) -> alt.Chart | None:
    """Per-annotator daily series (items per day or median seconds) for `names`, with every annotator's daily
    median as a grey dashed line to compare against; None when there is nothing to draw."""
    frame = pd.DataFrame(series)
    if frame.empty or measure not in frame:
        return None
    frame[measure] = pd.to_numeric(frame[measure], errors="coerce")
    title = "items per day" if measure == "items" else "median seconds per item"
    crowd = frame.groupby("day", as_index=False)[measure].median().assign(annotator="everyone (median)")
    picked = frame[frame["annotator"].isin(names)]
    lines = (
        alt.Chart(picked)
        .mark_line(point=alt.OverlayMarkDef(size=60), strokeWidth=2)
        .encode(
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d")),
            y=alt.Y(f"{measure}:Q", title=title),
            color=alt.Color("annotator:N", legend=alt.Legend(title=None, orient="bottom", columns=4)),
            tooltip=[
                "annotator:N",
                alt.Tooltip("day:T", format="%Y-%m-%d"),
                alt.Tooltip(f"{measure}:Q", format=".1f"),
            ],
        )
    )
    median = (
        alt.Chart(crowd)
        .mark_line(point=True, strokeDash=[5, 4], color="#888")
        .encode(x="day:T", y=f"{measure}:Q", tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), f"{measure}:Q"])
    )
    return (median + lines).properties(height=320)
