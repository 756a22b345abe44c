"""Leaderboard: Bradley-Terry ratings from arena votes with 95% bootstrap intervals, online Elo, vote counts
and the win-rate matrix (GET /api/arena/leaderboard)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.session import get_client

require_role("annotator", "reviewer", "admin")
client = get_client()

st.title("Leaderboard", anchor=False)
exclude = st.toggle("Leave out battles where an answer named a model (identity leak)", key="lb_exclude")
try:
    board = client.get("/api/arena/leaderboard", exclude_flagged=str(exclude).lower(), bootstrap_rounds=1000)
except ApiError as e:
    st.error(f"Could not load the leaderboard: {e}")
    st.stop()

c1, c2, c3 = st.columns(3)
c1.metric("Votes counted", board["n_votes"])
c2.metric("Models", len(board["rows"]))
c3.metric("Flagged votes", board.get("flagged", 0))
if not board["rows"]:
    st.info("No votes yet: battle in the Arena page.")
    st.stop()

table = pd.DataFrame(board["rows"])
st.caption(
    "Rating: Bradley-Terry maximum likelihood on the Elo scale (400 points = 10:1 odds; a tie counts "
    "half). The interval is the 95% bootstrap interval over 1,000 resamples of the votes. Elo is the "
    "online, order-dependent estimate, shown for comparison."
)
# rank order, top first (sort="-x" sorted a layered chart by the first layer's field, not the rating)
bars = alt.Chart(table).encode(y=alt.Y("model:N", sort=list(table.sort_values("rank")["model"]), title=None))
chart = bars.mark_rule(strokeWidth=2).encode(
    x=alt.X("ci_low:Q", title="rating (95% CI)", scale=alt.Scale(zero=False)),
    x2="ci_high:Q",
) + bars.mark_point(filled=True, size=80).encode(
    x="rating:Q", tooltip=["model", "rating", "ci_low", "ci_high", "votes", "wins", "losses", "ties", "elo"]
)
chart = chart.properties(height=alt.Step(36))  # a row per model, readable labels
st.altair_chart(chart, width="stretch")
st.dataframe(
    table[["rank", "model", "rating", "ci_low", "ci_high", "elo", "votes", "wins", "losses", "ties"]],
    hide_index=True,
    width="stretch",
    key="lb_table",
    column_config={  # ratings to the point: the intervals are hundreds of points wide until many votes are in
        "rating": st.column_config.NumberColumn("rating", format="%.0f"),
        "ci_low": st.column_config.NumberColumn("95% CI low", format="%.0f"),
        "ci_high": st.column_config.NumberColumn("95% CI high", format="%.0f"),
        "elo": st.column_config.NumberColumn("Elo", format="%.0f"),
    },
)

style = board.get("style_controlled") or {}
if style.get("rows"):
    st.subheader("Style-controlled", divider="gray", anchor=False)
    coef = style.get("coefficients") or {}
    st.caption(
        "The same votes with answer style held equal, as Chatbot Arena's style control does: Bradley-Terry with "
        "the answers' differences in length, markdown headers, list items and bold as covariates. A model that "
        "wins on length alone drops here. How much each style feature sways a vote (log-odds per standard "
        "deviation; above 0: more of it wins): "
        + ", ".join(f"{name} {value:+.2f}" for name, value in coef.items())
        + "."
    )
    raw = {r["model"]: r for r in board["rows"]}
    both = pd.DataFrame(
        [
            {
                "model": r["model"],
                "controlled rank": r["rank"],
                "controlled": r["rating"],
                "controlled CI low": r["ci_low"],
                "controlled CI high": r["ci_high"],
                "raw rank": raw.get(r["model"], {}).get("rank"),
                "raw": raw.get(r["model"], {}).get("rating"),
            }
            for r in style["rows"]
        ]
    )
    fmt = {c: st.column_config.NumberColumn(c, format="%.0f") for c in both.columns if c not in ("model",)}
    st.dataframe(both, hide_index=True, width="stretch", key="lb_style", column_config=fmt)

st.subheader("Win rate", divider="gray", anchor=False)
st.caption(
    "Row model's share of its games against the column model (ties count half); the label is the number "
    "of votes between them."
)
models = board["models"]
cells = [
    {"model": m, "opponent": o, "win_rate": board["winrate"][i][j], "games": board["games"][i][j]}
    for i, m in enumerate(models)
    for j, o in enumerate(models)
    if board["winrate"][i][j] is not None
]
if cells:
    heat = pd.DataFrame(cells)
    base = alt.Chart(heat).encode(
        x=alt.X("opponent:N", title="against", axis=alt.Axis(labelAngle=0)), y=alt.Y("model:N", title=None)
    )
    st.altair_chart(
        (
            base.mark_rect().encode(
                color=alt.Color("win_rate:Q", title="win rate", scale=alt.Scale(domain=[0, 1], scheme="redblue")),
                tooltip=["model", "opponent", "win_rate", "games"],
            )
            + base.mark_text(fontSize=14).encode(
                text="games:Q",
                color=alt.condition("abs(datum.win_rate - 0.5) > 0.3", alt.value("white"), alt.value("black")),
            )
        ).properties(height=alt.Step(44)),  # Vega's default squeezes a few models' rows flat
        width="stretch",
    )
