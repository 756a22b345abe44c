"""Review (reviewers and admins): how well annotators agree, where they disagree most, and adjudication.

Agreement comes from GET /api/stats, the most disputed prompts from GET /api/review/disagreements, every
annotator's ranking of one prompt from GET /api/prompts/{id}/rankings; POST /api/adjudications records the
final ranking. The "Gold item" section below it (annotate.gold_view) marks the prompt gold from the same answer
cards, through GET/POST /api/gold, DELETE /api/gold/{id} and POST /api/gold/rate.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.gold_view import gold_section
from annotate.picker import pick_dataset
from annotate.ranking import answer_cards, label, number_keys, preview_line
from annotate.render import dense_ranks, safe_markdown, show_conversation
from annotate.session import get_client
from annotate.stats_view import agreement_metrics, annotator_table

require_role("reviewer", "admin")
client = get_client()

st.title("Review", anchor=False)

dataset = pick_dataset(client, key="review_dataset")
try:
    stats = client.stats(dataset)
    disputed = client.disagreements(dataset)
except ApiError as e:
    st.error(f"Could not load the review data: {e}")
    st.stop()

st.subheader("Agreement", divider="gray", anchor=False)
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

st.subheader("Most disagreement", divider="gray", anchor=False)
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


st.subheader("Flagged and skipped", divider="gray", anchor=False)
try:
    queue = client.get("/api/review/flagged", dataset=dataset, limit=50)
except ApiError as e:
    st.error(f"Could not load the flagged and skipped prompts: {e}")
    queue = []
if not queue:
    st.caption("Nobody has skipped or flagged a prompt of this dataset.")
for row in queue:
    with st.container(border=True, key=f"review_queue_{row['ranking_id']}"):
        text, action = st.columns([6, 1], vertical_alignment="center")
        # reasons and comments are people's text: nothing in them may load a remote image or act as HTML
        why = safe_markdown(" · ".join(str(x) for x in (row.get("reason"), row.get("comment")) if x))
        done = " · adjudicated" if row.get("adjudicated") else ""
        text.markdown(
            f"**#{row['prompt_id']}** {row['status']} by **{safe_markdown(row['annotator'])}**"
            f"{(': ' + why) if why else ''}{done}"
        )
        text.caption(safe_markdown(f"{row['preview'][:120]} · {str(row.get('created_at') or '')[:16]}"))
        if action.button("Open", key=f"review_open_{row['ranking_id']}", icon=":material/open_in_new:"):
            st.session_state.review_prompt_id_next = row["prompt_id"]  # applied before the id box is drawn
            st.rerun()


def _describe(pid: int) -> str:
    row = next((r for r in disputed if int(r.get("prompt_id", r.get("id"))) == pid), {})
    text = str(row.get("prompt") or row.get("preview") or row.get("text") or "")
    score = row.get("agreement", row.get("disagreement"))
    extra = f" · agreement {score:.2f}" if isinstance(score, int | float) else ""
    return f"#{pid}{extra} · {text[:70]}"


st.subheader("One prompt, every ranking", divider="gray", anchor=False)
pick_col, id_col = st.columns([3, 1])
picked = pick_col.selectbox(
    "Prompt",
    prompt_ids,
    format_func=_describe,
    key="review_prompt",
    index=0 if prompt_ids else None,
    placeholder="Pick a disputed prompt",
)
if "review_prompt_id_next" in st.session_state:  # "Open" in the queue above
    st.session_state.review_prompt_id = st.session_state.pop("review_prompt_id_next")
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

index = {a["id"]: i for i, a in enumerate(answers)}  # answer id -> row on this page ("Answer 1" = row 0)


def _numbering(ranking: dict) -> dict[int, int]:
    """Answer id -> the number the annotator saw it under (1-based), from where each answer was shown."""
    pos = {int(g): p for g, p in (ranking.get("positions") or {}).items() if p is not None}
    return {g: p + 1 for g, p in pos.items()}


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
            reason = safe_markdown(r.get("skip_reason") or r.get("flag_reason") or "")
            notes.append(f"**{safe_markdown(who)}** {r['status']}: {reason}")
        # their own numbering: a comment like "2 and 3 tie" means what they saw, not this page's order
        seen = _numbering(r)
        if any(index.get(g) is not None and n != index[g] + 1 for g, n in seen.items()):
            side[who] = [
                f"{rank} (their #{seen[a['id']]})" if a["id"] in seen else rank
                for a, rank in zip(answers, side[who], strict=True)
            ]
            order = sorted(seen.items(), key=lambda kv: kv[1])
            notes.append(f"**{who}** saw: " + " · ".join(f"{n}={label(index[g])}" for g, n in order if g in index))
        if r.get("comment"):
            notes.append(f"**{who}** commented: {safe_markdown(r['comment'])}")
        if r.get("all_bad"):
            notes.append(f"**{who}** marked all answers bad")
    grid = pd.DataFrame(side, index=[label(i) for i in range(len(answers))])
    st.markdown(
        "**Ranks side by side** (1 is best, equal numbers are ties; *their #n* is the number that annotator "
        "saw the answer under)"
    )
    st.table(grid)
    for note in notes:
        st.markdown(f"- {note}")

st.subheader("Adjudicate", divider="gray", anchor=False)
st.caption(
    "Record the final ranking for this prompt. It is stored as an adjudication and wins over the "
    "individual rankings when pairs are built by consensus. The same ranks give a gold item's known order "
    "(below)."
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
number_keys()
st.caption(
    f"Keyboard: Tab to an answer's picker and press 1–{len(answers)}; Tab on to the buttons here and in Gold item "
    "below (arrow keys choose whole order or best answer), Space presses one."
)
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

gold_section(client, dataset, prompt_id, answers, ranks)
