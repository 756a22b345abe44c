"""The Review page's "Gold item" section: mark the shown prompt gold, unmark it, set the dataset's gold rate.

    gold_section(client, dataset, prompt_id, answers, ranks)   # ranks: the answer cards' {generation id: rank}

The known order comes from the same answer cards as the adjudication: the whole order (every answer ranked) or
only the best answer (the one answer ranked 1). Gold prompts leave the queue and are mixed into each annotator's
items at the gold rate; annotators cannot tell them apart, and they never count toward k or become pairs.
"""

from __future__ import annotations

import streamlit as st

from annotate.client import ApiError, Client
from annotate.ranking import label
from annotate.render import dense_ranks, safe_markdown

KINDS = {"order": "whole order", "best": "best answer only"}


def _known(answers: list[dict], ranks: dict[int, int | None], kind: str) -> tuple[dict[int, int] | None, str]:
    """-> (ranks to send, "") or (None, what is missing) for the chosen kind."""
    if kind == "best":
        best = [g for g, r in ranks.items() if r == 1]
        if len(best) != 1:
            return None, "Give exactly one answer rank 1 in the cards above: that is the known best answer."
        return {best[0]: 1}, ""
    missing = [label(i) for i, a in enumerate(answers) if ranks.get(a["id"]) is None]
    if missing:
        return None, f"Rank every answer in the cards above first: {', '.join(missing)}."
    known = dense_ranks({g: r for g, r in ranks.items() if r is not None})
    if len(set(known.values())) < 2:
        return None, "A known order puts at least one answer above another; these are all tied."
    return known, ""


def _gold_rate(client: Client, dataset: str, rate: float) -> None:
    with st.container(border=True):
        percent = st.number_input(
            "Gold rate (% of each annotator's items)",
            min_value=0.0,
            max_value=50.0,
            value=round(rate * 100, 2),
            step=1.0,
            format="%.1f",
            key=f"review_gold_rate_{dataset}",
            help=f"For {dataset}. 0 turns gold items off; 5% is one gold item in every twenty.",
        )
        if st.button("Save rate", key="review_gold_rate_save", icon=":material/save:"):
            try:
                client.set_gold_rate(dataset, percent / 100)
            except ApiError as e:
                st.error(f"Not saved: {e}")
            else:
                st.success(f"Gold rate of {dataset}: {percent:.1f}%.")


def gold_section(client: Client, dataset: str, prompt_id: int, answers: list[dict], ranks: dict) -> None:
    """The section itself; `ranks` are the adjudication cards' current picks."""
    st.subheader("Gold item", divider="gray", anchor=False)
    st.caption(
        "A gold item is a prompt whose order you know. It leaves the queue and is mixed into each annotator's "
        "items at the gold rate, looking like any other item; their answers on it measure them (gold accuracy "
        "on the Annotators page) and never count toward k or become training pairs."
    )
    try:
        gold = client.gold(dataset)
    except ApiError as e:
        st.error(f"Could not load the gold items: {e}")
        return
    items = {int(g["prompt_id"]): g for g in gold.get("items") or []}
    mine = items.get(int(prompt_id))
    mark_col, rate_col = st.columns([3, 2], gap="large")
    with mark_col:
        if mine:
            info_col, unmark_col = st.columns([3, 1], vertical_alignment="center")
            info_col.success(
                f"Prompt #{prompt_id} is a gold item ({KINDS.get(mine.get('kind'), mine.get('kind'))}), marked by "
                f"{safe_markdown(str(mine.get('created_by') or '?'))}; {mine.get('rankings') or 0} ranking(s) so far.",
                icon=":material/workspace_premium:",
            )
            if unmark_col.button("Unmark", key="review_gold_unmark", icon=":material/remove_circle:"):
                try:
                    client.unmark_gold(prompt_id)
                except ApiError as e:
                    st.error(f"Not unmarked: {e}")
                else:
                    st.session_state["review_gold_done"] = f"Prompt #{prompt_id} is an ordinary prompt again."
                    st.rerun()
        else:
            st.caption(f"Prompt #{prompt_id} is not a gold item.")
        kind = st.radio(
            "Known",
            list(KINDS),
            format_func=KINDS.get,
            horizontal=True,
            key="review_gold_kind",
            help="Whole order: every answer's rank from the cards above. Best answer only: the answer ranked 1.",
        )
        verb = "Replace the known order" if mine else "Mark as gold"
        if st.button(verb, key="review_gold_mark", icon=":material/workspace_premium:"):
            known, problem = _known(answers, ranks, kind)
            if known is None:
                st.error(problem)
            else:
                try:
                    client.mark_gold(prompt_id, known, kind=kind)
                except ApiError as e:
                    st.error(f"Not marked: {e}")
                else:
                    st.session_state["review_gold_done"] = f"Prompt #{prompt_id} is a gold item ({KINDS[kind]})."
                    st.rerun()
        done = st.session_state.pop("review_gold_done", None)
        if done:
            st.success(done, icon=":material/check:")
    with rate_col:
        st.caption(f"{len(items)} gold item(s) in {safe_markdown(dataset)}.")
        _gold_rate(client, dataset, float(gold.get("rate") or 0.0))
