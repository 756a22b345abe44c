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

# API field -> (column title, width in pixels); the order is the table's order. Short titles and fixed widths
# keep all fifteen columns in view beside the sidebar; each header's tooltip says what it measures.
TITLES = {
    "annotator": ("annotator", 150),
    "flag": ("status", 56),
    "quality": ("quality", 58),
    "pair_agreement": ("agree", 56),
    "pairs_compared": ("pairs", 50),
    "tau_b": ("τ-b", 50),
    "gold_accuracy": ("gold acc", 62),
    "gold_items": ("gold n", 54),
    "median_seconds": ("sec/item", 62),
    "too_fast": ("too fast", 60),
    "position_bias": ("pos. bias", 64),
    "tie_rate": ("ties", 48),
    "all_bad_rate": ("all bad", 58),
    "rankings": ("items", 50),
    "weight": ("weight", 56),
}
COUNTS = ("pairs_compared", "gold_items", "rankings")
HELP = {
    "flag": "⚠ fails gold: accuracy below 0.7 on their first gold items (the row is tinted red). "
    "⏸ paused: gets no new items here.",
    "quality": "Dawid-Skene reliability: the annotator's estimated accuracy on pairs (1 never wrong, 0.5 a coin). "
    "Pair agreement where the model could not be fitted.",
    "pair_agreement": "Pair agreement, leave-one-out: the share of their votes that go the way the other "
    "annotators' majority goes.",
    "pairs_compared": "How many pair votes the agreement is measured on.",
    "tau_b": "Mean Kendall tau-b against the consensus of the others' rankings of the same prompt.",
    "gold_accuracy": "Pair agreement with the known order of gold items (a tie counts half).",
    "gold_items": "Gold items this annotator has ranked.",
    "median_seconds": "Median seconds per item.",
    "too_fast": "Share of items done in under a quarter of the dataset's median time (at least 1 s).",
    "position_bias": "Position bias: how often the answer shown first was ranked best, divided by what a "
    "position-blind annotator would get (about 1/K). 1 is no bias; 4 with four answers: the first always wins.",
    "rankings": "Items ranked (gold items included).",
    "tie_rate": "Share of pair votes that are ties.",
    "all_bad_rate": "Share of rankings marked 'all answers bad'.",
    "weight": "Weight of their votes in weighted consensus and quality-filtered exports (0 excludes them).",
}
LABELLED = 3  # how many of the lowest points the scatter names
MEASURES = {"quality": "quality (reliability)", "pair_agreement": "pair agreement", "tau_b": "τ-b"}


def _flag(row: dict) -> str:
    marks = []
    if row.get("gold_flagged"):
        marks.append("⚠")
    if row.get("paused"):
        marks.append("⏸")
    return " ".join(marks)


def quality_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per annotator with the columns of TITLES (API names), numbers as floats (None -> NaN), plus
    `paused` and `gold_flagged` as booleans."""
    frame = pd.DataFrame([{**{k: row.get(k) for k in TITLES}, "flag": _flag(row)} for row in rows])
    for key in TITLES:
        if key not in ("flag", "annotator"):
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    frame["paused"] = [bool(row.get("paused")) for row in rows]
    frame["gold_flagged"] = [bool(row.get("gold_flagged")) for row in rows]
    return frame


def styled(frame: pd.DataFrame):
    """The table as shown: two decimals, whole counts, a dash for "not measured", suspect rows tinted.

    A Styler changes only what is shown; the values underneath stay numbers, so a click on a header sorts
    numerically."""
    shown = frame[list(TITLES)]
    decimals = [k for k in TITLES if k not in (*COUNTS, "flag", "annotator")]
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
    config = {key: st.column_config.Column(title, help=HELP.get(key), width=w) for key, (title, w) in TITLES.items()}
    config["annotator"] = st.column_config.TextColumn("annotator", pinned=True, width=TITLES["annotator"][1])
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
    # names on the suspects only (the lowest few and anyone flagged or paused): the careful crowd is one cluster
    # whose labels would print over each other; a tooltip names every point
    lowest = set(data.nsmallest(LABELLED, y)["annotator"])
    data["label"] = [n if n in lowest or s != "ok" else "" for n, s in zip(data.annotator, data.status, strict=True)]
    colors = alt.Scale(domain=["ok", "fails gold", "paused"], range=["#1f77b4", "#e4572e", "#9a9a9a"])
    top = max(1.0, float(data[y].max()))
    low = min(-0.1 if y == "tau_b" else 0.4, float(data[y].min()) - 0.05)
    y_scale = alt.Scale(domain=[low, top], zero=False)
    fastest, slowest = float(data["median_seconds"].min()), float(data["median_seconds"].max())
    x_scale = alt.Scale(type="log", domain=[fastest / 1.3, slowest * 1.3], nice=False)  # room for points and names
    base = alt.Chart(data).encode(
        x=alt.X("median_seconds:Q", title="median seconds per item (log)", scale=x_scale),
        y=alt.Y(f"{y}:Q", title=MEASURES[y], scale=y_scale),
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
    # neighbours' names go to opposite sides of their points, so two close suspects stay readable
    data["side"] = ""
    named = data[data["label"] != ""].sort_values(y).index
    data.loc[named, "side"] = ["right" if i % 2 else "left" for i in range(len(named))]
    labels = [
        base.transform_filter(alt.datum.side == side)
        .mark_text(align=align, dx=dx, fontSize=12, color="#444")
        .encode(text="label:N")
        for side, align, dx in (("left", "left", 9), ("right", "right", -9))
    ]
    chance = (  # a coin flip agrees on half the pairs; its tau-b is 0
        alt.Chart(pd.DataFrame({"y": [0.0 if y == "tau_b" else 0.5]}))
        .mark_rule(strokeDash=[4, 4], color="#999")
        .encode(y=alt.Y("y:Q", scale=y_scale), tooltip=alt.value("a coin flip"))
    )
    return alt.layer(chance, points, *labels).properties(height=380)


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
