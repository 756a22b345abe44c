"""Review (reviewers and admins): how well annotators agree, where they disagree most, and adjudication.

Agreement comes from GET /api/stats, the most disputed prompts from GET /api/review/disagreements, every
annotator's ranking of one prompt from GET /api/prompts/{id}/rankings; POST /api/adjudications records the
final ranking.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError, get_client
from annotate.ranking import answer_cards, label, preview_line
from annotate.render import dense_ranks, show_conversation
from annotate.stats_view import agreement_metrics, annotator_table

require_role("reviewer", "admin")
client = get_client()

st.title("Review")

try:
    names = [d["name"] for d in client.datasets()]
except ApiError as e:
    st.error(f"Could not load the datasets: {e}")
    st.stop()
if not names:
    st.info("No datasets yet.")
    st.stop()

dataset = st.selectbox("Dataset", names, key="review_dataset")
try:
    stats = client.stats(dataset)
    disputed = client.disagreements(dataset)
except ApiError as e:
    st.error(f"Could not load the review data: {e}")
    st.stop()

st.subheader("Agreement", divider="gray")
agreement_metrics(stats)
table = annotator_table(stats)
if table is not None and not table.empty:
    st.markdown("**Per annotator**")
    if "time_on_task_ms" in table:  # seconds read better than milliseconds
        table = table.assign(time_on_task_ms=table["time_on_task_ms"] / 1000).rename(
            columns={"time_on_task_ms": "mean time on task (s)"}
        )
    table = table.rename(
        columns={
            "prompts_with_overlap": "overlap prompts",
            "tau_b_vs_consensus": "τ-b vs consensus",
            "tau_b_vs_others": "τ-b vs others",
        }
    )
    # two decimals and a dash for "not measured", not pandas' 0.0000 and None
    st.table(table.set_index(table.columns[0]).style.format(precision=2, na_rep="—"))

st.subheader("Most disagreement", divider="gray")
if not disputed:
    st.info(
        "No prompt has two or more rankings that disagree yet. With k ≥ 2 annotators per prompt, "
        "disputed prompts show up here."
    )
    prompt_ids: list[int] = []
else:
    frame = pd.DataFrame(disputed)
    frame = frame.rename(columns={"prompt_id": "prompt", "kendall_w": "Kendall's W", "preview": "last user turn"})
    if "adjudicated" in frame:
        frame["adjudicated"] = frame["adjudicated"].map({True: "yes", False: "no"})
    frame = frame.set_index("prompt") if "prompt" in frame else frame
    st.table(frame.style.format(precision=2, na_rep="—"))
    prompt_ids = [int(row.get("prompt_id", row.get("id"))) for row in disputed]


def _describe(pid: int) -> str:
    row = next((r for r in disputed if int(r.get("prompt_id", r.get("id"))) == pid), {})
    text = str(row.get("prompt") or row.get("preview") or row.get("text") or "")
    score = row.get("agreement", row.get("disagreement"))
    extra = f" · agreement {score:.2f}" if isinstance(score, int | float) else ""
    return f"#{pid}{extra} · {text[:70]}"


st.subheader("One prompt, every ranking", divider="gray")
pick_col, id_col = st.columns([3, 1])
picked = pick_col.selectbox(
    "Prompt",
    prompt_ids,
    format_func=_describe,
    key="review_prompt",
    index=0 if prompt_ids else None,
    placeholder="Pick a disputed prompt",
)
typed = id_col.number_input("or prompt id", min_value=1, step=1, value=None, key="review_prompt_id")
prompt_id = int(typed) if typed else picked
if prompt_id is None:
    st.stop()

try:
    detail = client.prompt_rankings(prompt_id)
except ApiError as e:
    st.error(f"Could not load prompt {prompt_id}: {e}")
    st.stop()

answers: list[dict] = detail.get("answers") or []
rankings: list[dict] = detail.get("rankings") or []
with st.expander("Prompt", expanded=True, icon=":material/chat:"):
    show_conversation((detail.get("prompt") or {}).get("messages") or [])

if not rankings:
    st.info("Nobody has ranked this prompt yet.")
else:
    side = {}
    notes = []
    for r in rankings:
        who = r.get("annotator") or r.get("user") or f"user {r.get('user_id')}"
        if r.get("source") and r.get("source") != "human":
            who = f"{who} ({r['source']})"
        ranks = {int(g): v for g, v in (r.get("ranks") or {}).items()}
        side[who] = [ranks.get(a["id"]) for a in answers]
        if r.get("status") and r["status"] != "submitted":
            notes.append(f"**{who}** {r['status']}: {r.get('skip_reason') or r.get('flag_reason') or ''}")
        if r.get("comment"):
            notes.append(f"**{who}** commented: {r['comment']}")
        if r.get("all_bad"):
            notes.append(f"**{who}** marked all answers bad")
    grid = pd.DataFrame(side, index=[label(i) for i in range(len(answers))])
    st.markdown("**Ranks side by side** (1 is best, equal numbers are ties)")
    st.table(grid)
    for note in notes:
        st.markdown(f"- {note}")

st.subheader("Adjudicate", divider="gray")
st.caption(
    "Record the final ranking for this prompt. It is stored as an adjudication and wins over the "
    "individual rankings when pairs are built by consensus."
)
per_answer = {}
for a in answers:
    parts = []
    for r in rankings:
        rank = (r.get("ranks") or {}).get(str(a["id"]), (r.get("ranks") or {}).get(a["id"]))
        if rank is not None:
            parts.append(f"{r.get('annotator') or r.get('user')}: {rank}")
    per_answer[a["id"]] = " · ".join(parts)
prefix = f"adj_{prompt_id}"
ranks = answer_cards(answers, prefix=prefix, extra=per_answer)
order, missing = preview_line(answers, ranks)
st.markdown(f"**Final order:** {order or '—'}")
note = st.text_input("Note (optional)", key=f"{prefix}_note")
if st.button("Record final ranking", type="primary", key="review_adjudicate", icon=":material/gavel:"):
    if missing:
        st.error(f"Rank every answer first: {', '.join(missing)}.")
    else:
        try:
            client.adjudicate(prompt_id, dense_ranks({g: r for g, r in ranks.items() if r is not None}), note)
        except ApiError as e:
            st.error(f"Not recorded: {e}")
        else:
            st.success(f"Final ranking recorded for prompt #{prompt_id}: {order}")
