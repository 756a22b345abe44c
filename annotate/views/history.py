"""My rankings: what you ranked, newest first, and a way to change a ranking while its prompt is still open.

The list is GET /api/rankings/mine, a page at a time; opening one shows it as you saw it (GET /api/rankings/{id}:
the prompt and the answers in your order, with your ranks), and saving sends PUT /api/rankings/{id}. The server
refuses a change once the prompt is closed (it has its k rankings, or a reviewer adjudicated it).
"""

from __future__ import annotations

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.ranking import answer_cards, preview_line, rank_key
from annotate.render import dense_ranks, safe_markdown, show_conversation
from annotate.session import get_client

PAGE_SIZE = 20
STATUS_LABELS = {"submitted": "Ranked", "skipped": "Skipped", "flagged": "Flagged"}
STATUS_COLORS = {"submitted": "green", "skipped": "gray", "flagged": "red"}

require_role()
client = get_client()

if "history_page" not in st.session_state:
    st.session_state.history_page = 0

st.title("My rankings", anchor=False)
flash = st.session_state.pop("history_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")


def _open(ranking_id: int) -> None:
    st.session_state.history_open = ranking_id


def _close() -> None:
    st.session_state.pop("history_open", None)


def _editor(ranking_id: int) -> None:
    """One ranking as you saw it, editable while its prompt is open."""
    try:
        one = client.my_ranking(ranking_id)
    except ApiError as e:
        st.error(f"Could not open ranking {ranking_id}: {e}")
        st.button("Back to the list", key="history_back", icon=":material/arrow_back:", on_click=_close)
        return
    st.button("Back to the list", key="history_back", icon=":material/arrow_back:", on_click=_close)
    answers = one.get("answers") or []
    prefix = f"history_{ranking_id}"
    if f"{prefix}_loaded" not in st.session_state:  # the stored ranking fills the pickers once
        stored = {int(g): r for g, r in (one.get("ranks") or {}).items()}
        for pos, answer in enumerate(answers):
            st.session_state[rank_key(prefix, pos)] = stored.get(answer["id"])
        st.session_state[f"{prefix}_status"] = STATUS_LABELS.get(one["status"], "Ranked")
        st.session_state[f"{prefix}_reason"] = one.get("skip_reason") or one.get("flag_reason") or ""
        st.session_state[f"{prefix}_comment"] = one.get("comment") or ""
        st.session_state[f"{prefix}_all_bad"] = bool(one.get("all_bad"))
        st.session_state[f"{prefix}_loaded"] = True
    editable = bool(one.get("editable"))
    st.caption(
        f"{one.get('dataset')} · prompt #{one.get('prompt_id')} · submitted {str(one.get('created_at') or '')[:16]}"
    )
    if not editable:
        st.info(
            "This prompt is closed (it has all its rankings, or a reviewer decided it): the ranking can no "
            "longer be changed.",
            icon=":material/lock:",
        )
    st.subheader("Prompt", divider="gray", anchor=False)
    show_conversation((one.get("prompt") or {}).get("messages") or [])
    st.subheader(f"{len(answers)} answers", divider="gray", anchor=False)
    ranks = answer_cards(answers, prefix=prefix)
    order, missing = preview_line(answers, ranks)
    with st.container(border=True, key="history_summary"):
        st.markdown(f"**Your order:** {order or '—'}")
        status_col, reason_col = st.columns([1, 2])
        status = status_col.segmented_control(
            "This prompt was", list(STATUS_LABELS.values()), key=f"{prefix}_status", disabled=not editable
        )
        reason = ""
        if status in ("Skipped", "Flagged"):
            reason = reason_col.text_input(
                "Why skip?" if status == "Skipped" else "What is wrong?", key=f"{prefix}_reason", disabled=not editable
            )
        opt_col, comment_col = st.columns([1, 2])
        all_bad = opt_col.checkbox("All answers are bad", key=f"{prefix}_all_bad", disabled=not editable)
        comment = comment_col.text_input("Comment (optional)", key=f"{prefix}_comment", disabled=not editable)
        saved = st.button(
            "Save changes", type="primary", key="history_save", icon=":material/save:", disabled=not editable
        )
        message = st.empty()
    if not saved:
        return
    code = {label: s for s, label in STATUS_LABELS.items()}.get(status or "", "submitted")
    if code == "submitted" and missing:
        message.error(f"Rank every answer: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no rank.")
        return
    if code != "submitted" and not reason.strip():
        message.error("Say why, in a few words.")
        return
    complete = {gid: r for gid, r in ranks.items() if r is not None}
    try:
        client.change_ranking(
            ranking_id,
            status=code,
            ranks=dense_ranks(complete) if not missing else None,
            all_bad=all_bad,
            skip_reason=reason.strip() if code == "skipped" else None,
            flag_reason=reason.strip() if code == "flagged" else None,
            comment=comment.strip(),
        )
    except ApiError as e:
        message.error(f"Not changed: {e}", icon=":material/error:")
        return
    st.session_state.history_flash = f"Ranking {ranking_id} changed."
    for key in [k for k in st.session_state if str(k).startswith(prefix)]:
        del st.session_state[key]  # a later visit reads the stored ranking again
    _close()
    st.rerun()


opened = st.session_state.get("history_open")
if opened is not None:
    _editor(opened)
    st.stop()

st.caption(
    "Everything you ranked, skipped or flagged, newest first. You can change a ranking while its prompt is still "
    "open: until it has all its rankings and no reviewer has decided it."
)
page = st.session_state.history_page
try:
    rows = client.my_rankings(limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE)  # one more: is there an older page?
except ApiError as e:
    st.error(f"Could not load your rankings: {e}")
    st.stop()
if not rows and page == 0:
    st.info("You have not ranked anything yet. Your rankings show up here once you submit them on the Rank page.")
    st.stop()

for row in rows[:PAGE_SIZE]:
    with st.container(border=True, key=f"history_row_{row['id']}"):
        text_col, action_col = st.columns([6, 1], vertical_alignment="center")
        with text_col:
            st.badge(STATUS_LABELS.get(row["status"], row["status"]), color=STATUS_COLORS.get(row["status"], "gray"))
            st.markdown(safe_markdown(row.get("snippet") or "(no text)"))
            st.caption(
                f"{row.get('dataset')} · prompt #{row['prompt_id']} · {str(row.get('created_at') or '')[:16]}"
                + ("" if row.get("editable") else " · closed")
            )
        label, icon = ("Change", ":material/edit:") if row.get("editable") else ("View", ":material/visibility:")
        action_col.button(label, key=f"history_open_{row['id']}", icon=icon, on_click=_open, args=(row["id"],))

newer_col, _, older_col = st.columns([1, 4, 1])
if page > 0 and newer_col.button("Newer", key="history_newer", icon=":material/arrow_back:"):
    st.session_state.history_page = page - 1
    st.rerun()
if len(rows) > PAGE_SIZE and older_col.button("Older", key="history_older", icon=":material/arrow_forward:"):
    st.session_state.history_page = page + 1
    st.rerun()
