"""Rank: one prompt, its K answers (labelled Answer 1..K in this annotator's stored order), a rank each.

The item comes from GET /api/queue/next and is kept in session state, so clicking rank pickers never goes
back to the server; submitting (POST /api/rankings) returns the next item, shown at once, with a badge under
the title saying what was saved. Time on task runs from the moment an item is first shown to the submit.
"""

from __future__ import annotations

import time

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError, submit_feedback
from annotate.feedback import (
    THUMBS,
    aspect_rows,
    field_errors,
    missing_feedback,
    rationale_box,
    shortcut_help,
    thumbs_picker,
)
from annotate.ranking import answer_cards, label, number_keys, preview_line, typed_order_box
from annotate.render import dense_ranks, safe_markdown, show_conversation
from annotate.session import get_client

SKIP_REASONS = [
    "Outside my expertise",
    "The prompt is unclear or incomplete",
    "The answers do not load or are cut off",
    "Needs a language I do not read",
    "Other",
]
FLAG_REASONS = [
    "Harmful or dangerous content",
    "Hate, harassment or sexual content",
    "Personal or private data",
    "Illegal activity",
    "Other",
]

require_role()
client = get_client()

for key, default in (("rank_queue", None), ("rank_shown_at", {}), ("rank_assets", {})):
    if key not in st.session_state:
        st.session_state[key] = default


def _load(dataset: str | None) -> None:
    """Fetch the next item for `dataset` into session state."""
    st.session_state.rank_queue = {"dataset": dataset, **client.queue_next(dataset)}


def _accept(response: dict, dataset: str | None, notice: str) -> None:
    """After a submit: the response carries the next item; show it at once, with a word on what was saved."""
    nxt = response.get("next") or client.queue_next(dataset)
    st.session_state.rank_queue = {"dataset": dataset, **nxt}
    st.session_state.rank_notice = ((nxt.get("item") or {}).get("assignment_id"), notice)
    st.rerun()


# ---- dataset ------------------------------------------------------------------------------------------

if "rank_datasets" not in st.session_state:
    try:
        st.session_state.rank_datasets = [d["name"] for d in client.datasets()]
    except ApiError as e:
        st.error(f"Could not load the datasets: {e}")
        st.stop()
names: list[str] = st.session_state.rank_datasets

title_col, ds_col, done_col, left_col = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
title_col.title("Rank answers", anchor=False)
if not names:
    st.info("There is nothing to rank yet: no dataset exists. An admin can import prompts on the Data page.")
    st.stop()
dataset = ds_col.selectbox("Dataset", names, key="rank_dataset") if len(names) > 1 else names[0]

queue = st.session_state.rank_queue
if queue is None or queue.get("dataset") != dataset:
    st.session_state.pop("rank_notice", None)
    held = (queue or {}).get("item")
    if held:  # switching datasets: hand the old prompt back instead of sitting on it until the lease ends
        try:
            client.release(held["assignment_id"])
        except ApiError:
            pass  # the lease still runs out on its own
    try:
        _load(dataset)
    except ApiError as e:
        st.error(f"Could not fetch the next prompt: {e}")
        st.stop()
    queue = st.session_state.rank_queue

progress = queue.get("progress") or {}
done_col.metric("Done today", progress.get("done_today", 0))
left_col.metric("Left in queue", progress.get("remaining", "—"))

item = queue.get("item")
# What the last submit did, under the title while its next prompt is on screen: a toast would sit in the top-right
# corner, over the progress counters, and vanish before it is read.
notice = st.session_state.get("rank_notice")
if notice and notice[0] == (item or {}).get("assignment_id"):
    title_col.badge(notice[1], icon=":material/check_circle:", color="green")
if not item:
    st.write("")
    with st.container(border=True, key="rank_all_done"):
        st.subheader("🎉 All done for now", anchor=False)
        st.write(
            f"Nothing is waiting for you in **{dataset}**. Thank you! New prompts show up here as they are "
            "added; try another dataset or check back later."
        )
        if st.button("Check again", key="rank_refresh", icon=":material/refresh:"):
            _load(dataset)
            st.rerun()
    st.stop()

assignment_id = item["assignment_id"]
answers: list[dict] = item.get("answers") or []
prompt = item.get("prompt") or {}
prefix = f"rank_{assignment_id}"
shown_at = st.session_state.rank_shown_at
if assignment_id not in shown_at:  # time on task starts the first time this item is on screen
    shown_at.clear()
    shown_at[assignment_id] = time.time()

# ---- guidelines and prompt -------------------------------------------------------------------------------

version = item.get("guideline_version")
with st.expander(f"Guidelines{f' · version {version}' if version else ''}", icon=":material/menu_book:"):
    if item.get("guidelines"):
        st.markdown(safe_markdown(item["guidelines"]))
    else:
        st.caption("This dataset has no guidelines yet. Rank by helpfulness, correctness and safety.")

st.subheader("Prompt", divider="gray", anchor=False)
show_conversation(prompt.get("messages") or [])

assets = prompt.get("assets") or []
if assets:
    cache = st.session_state.rank_assets
    for index, asset in enumerate(assets):
        cache_key = f"{prompt.get('id')}:{index}"
        if cache_key not in cache:
            try:
                cache[cache_key] = client.asset(prompt["id"], index)
            except ApiError:
                cache[cache_key] = None  # no asset route or file: name it instead of failing the page
        path = asset.get("name") if isinstance(asset, dict) else asset
        if cache[cache_key]:
            st.image(cache[cache_key], caption=str(path).rsplit("/", 1)[-1], width=480)
        else:
            st.caption(f":material/image: Image: `{path}`")

# ---- answers ------------------------------------------------------------------------------------------

# What the dataset asks for beside the order (docs/api.md): a 'rate' task takes thumbs instead of ranks; aspects
# and a rationale appear only where configured, so a plain 'rank' dataset gets exactly the page above.
task = item.get("task") or "rank"
aspects: list[dict] = item.get("aspects") or []
rationale_mode = item.get("rationale") or "off"
rating = task == "rate"
held_error = st.session_state.get("rank_field_error")
errors: dict[str, str] = held_error[1] if held_error and held_error[0] == assignment_id else {}

st.subheader(f"{len(answers)} answer{'s' if len(answers) != 1 else ''}", divider="gray", anchor=False)
if rating:
    intro = "Give each answer a thumbs up (good) or down (bad). Model names are hidden on purpose. "
else:
    intro = "Give each answer a rank: **1 is best**. Equal numbers mean a tie. Model names are hidden on purpose. "
if aspects:
    intro += "Score each answer on the aspects under it (hover a name for what it means; :red[\\*] required). "
st.caption(intro + shortcut_help(len(answers), task=task, aspects=aspects))

ratings: dict[int, dict] = {}


def _aspects(pos: int, answer: dict) -> None:
    with st.container(key=f"{prefix}_aspects_{pos}", gap="small"):
        ratings[answer["id"]] = aspect_rows(aspects, prefix=prefix, pos=pos, answer_id=answer["id"], errors=errors)


def _thumbs(pos: int, answer: dict) -> bool | None:
    return thumbs_picker(prefix=prefix, pos=pos, answer_id=answer["id"], errors=errors)


values = answer_cards(answers, prefix=prefix, picker=_thumbs if rating else None, footer=_aspects if aspects else None)
ranks = {} if rating else values
thumbs = values if rating else None
number_keys()

order, missing = ("", []) if rating else preview_line(answers, ranks)
with st.container(border=True, key="rank_summary"):
    if rating:
        given = [
            f"{THUMBS[v][:1]} {label(i)}" for i, a in enumerate(answers) if (v := thumbs.get(a["id"])) is not None
        ]
        st.markdown("**Your ratings:** " + (" · ".join(given) if given else "a 👍 or 👎 for each answer"))
    else:
        preview_col, typed_col = st.columns([3, 2], vertical_alignment="center")
        with preview_col:
            if order:
                st.markdown(f"**Your order:** {order}")
            else:
                st.markdown("**Your order:** pick a rank for each answer")
            if missing and order:
                st.caption("Not ranked yet: " + ", ".join(missing))
        with typed_col:
            typed_order_box(prefix, len(answers))
    rationale = rationale_box(rationale_mode, prefix=prefix, errors=errors)
    lacking = missing_feedback(answers, aspects, ratings, thumbs, rationale_mode, rationale)

    opt_col, comment_col = st.columns([1, 2])
    all_bad = False
    if not rating:  # a thumbs down on each says it already
        all_bad = opt_col.checkbox(
            "All answers are bad", key=f"{prefix}_all_bad", help="Still rank them: which is least bad matters too."
        )
    comment = comment_col.text_input(
        "Comment (optional)", key=f"{prefix}_comment", placeholder="Anything a reviewer should know"
    )

    submit_col, skip_col, flag_col, _ = st.columns([1.7, 1, 1.1, 1.2], vertical_alignment="top")
    still = (missing if not rating else []) + lacking
    submitted = submit_col.button(
        "Submit ratings" if rating else "Submit ranking",
        type="primary",
        key="rank_submit",
        width="stretch",
        icon=":material/send:",
        shortcut="Ctrl+Enter",
        help=("Still needed: " + "; ".join(still)) if still else None,
    )
    # keyed by the assignment: the next prompt gets closed popovers (with one key, the open one stayed open)
    with skip_col.popover("Skip", icon=":material/skip_next:", width="stretch", key=f"{prefix}_skip_popover"):
        skip_reason = st.selectbox("Why skip?", SKIP_REASONS, key=f"{prefix}_skip_reason")
        skip_note = st.text_input("Details (optional)", key=f"{prefix}_skip_note")
        skipped = st.button("Skip this prompt", key="rank_skip", width="stretch")
    with flag_col.popover("Flag harmful", icon=":material/flag:", width="stretch", key=f"{prefix}_flag_popover"):
        flag_reason = st.selectbox("What is wrong?", FLAG_REASONS, key=f"{prefix}_flag_reason")
        flag_note = st.text_input("Details (optional)", key=f"{prefix}_flag_note")
        flagged = st.button("Flag this prompt", key="rank_flag", type="primary", width="stretch")
    message = st.empty()
    if errors:
        message.error(f"Not saved: {held_error[2]}", icon=":material/error:")
    if st.session_state.get("rank_stale") == assignment_id:
        message.warning(
            "The server no longer holds this prompt for you (the lease ran out or it was already "
            "ranked). Copy anything you want to keep, then load the next prompt.",
            icon=":material/schedule:",
        )
        if st.button("Load the next prompt", key="rank_reload", icon=":material/refresh:"):
            st.session_state.pop("rank_stale", None)
            _load(dataset)
            st.rerun()


def _reason(choice: str, note: str) -> str:
    return f"{choice}: {note.strip()}" if note.strip() else choice


def _send(status: str, **fields) -> None:
    elapsed_ms = int((time.time() - shown_at.get(assignment_id, time.time())) * 1000)
    try:
        response = submit_feedback(
            client,
            assignment_id,
            status=status,
            all_bad=all_bad,
            comment=comment.strip(),
            time_on_task_ms=elapsed_ms,
            **fields,
        )
    except ApiError as e:
        placed = field_errors(e)
        if placed:  # shown under the control the server named, on the page drawn again
            st.session_state.rank_field_error = (assignment_id, placed, str(e))
            st.rerun()
        message.error(f"Not saved: {e}", icon=":material/error:")
        if e.status in (404, 409, 410):  # lease gone or already done: offer a way on (the page stays as it is)
            st.session_state.rank_stale = assignment_id
            st.rerun()
        st.stop()
    labels = {"submitted": "Ranking saved", "skipped": "Skipped", "flagged": "Flagged for review"}
    _accept(response, dataset, labels[status])


complete = {gid: r for gid, r in ranks.items() if r is not None}
if submitted:
    st.session_state.pop("rank_field_error", None)  # this try is judged afresh
    if missing:
        message.error(
            f"Rank every answer before submitting: {', '.join(missing)} "
            f"{'has' if len(missing) == 1 else 'have'} no rank yet. Equal numbers mean a tie.",
            icon=":material/warning:",
        )
    elif lacking:
        message.error("Not submitted yet. Still needed: " + "; ".join(lacking) + ".", icon=":material/warning:")
    else:
        _send(
            "submitted",
            ranks=dense_ranks(complete) if complete else None,
            ratings={gid: v for gid, v in ratings.items() if v},
            rationale=rationale,
            thumbs=thumbs,
        )
elif skipped:
    _send("skipped", skip_reason=_reason(skip_reason, skip_note), rationale=rationale)
elif flagged:
    # a flag needs no ranking; if the person ranked everything anyway, keep that too
    keep = dense_ranks(complete) if complete and not missing else None
    _send("flagged", flag_reason=_reason(flag_reason, flag_note), ranks=keep, rationale=rationale)
