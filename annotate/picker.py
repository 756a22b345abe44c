"""Pickers: a dataset (pick_dataset), and runs (training runs, loops) that follow the one just started and whose
labels stay current (pick_run).

    dataset = pick_dataset(client, key="review_dataset")     # stops the page when there is none to pick

    st.session_state.train_pick_next = run["id"]            # after starting a run: select it on the next draw
    picked = pick_run("Run", ids, labels, key="train_pick")   # labels: {id: "#3 dpo · running"}

For runs, two Streamlit habits are in the way of a plain keyed selectbox. Its value sticks to the widget's state
whatever `index` says, so a run just started is not selected; and when only the label of the selected option changes
("running" -> "finished"), the browser's combobox keeps showing the old text. So the widget's key carries a
digest of the labels: new labels make a new widget, opened on the run chosen before, kept in
st.session_state[key].
"""

from __future__ import annotations

import hashlib
import json

import streamlit as st


def pick_run(label: str, ids: list, labels: dict, *, key: str):
    """A selectbox over `ids` shown as `labels[id]`; returns the chosen id (also in st.session_state[key]).
    st.session_state[f"{key}_next"], when set, selects that id once."""
    pending = st.session_state.pop(f"{key}_next", None)
    chosen = pending if pending in ids else st.session_state.get(key)
    if chosen not in ids:
        chosen = ids[0]
    digest = hashlib.sha256(json.dumps([[str(i), labels[i]] for i in ids]).encode()).hexdigest()[:12]
    picked = st.selectbox(label, ids, index=ids.index(chosen), key=f"{key}_{digest}", format_func=labels.__getitem__)
    st.session_state[key] = picked
    return picked


def pick_dataset(client, *, key: str) -> str:
    """A selectbox of every dataset's name; the one chosen. Stops the page, saying why, when the list cannot be
    loaded or is empty."""
    from annotate.client import ApiError

    try:
        names = [d["name"] for d in client.datasets()]
    except ApiError as e:
        st.error(f"Could not load the datasets: {e}")
        st.stop()
    if not names:
        st.info("No datasets yet.")
        st.stop()
    return st.selectbox("Dataset", names, key=key)
