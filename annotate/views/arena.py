"""Arena: ask two hidden models the same thing, compare the answers side by side, vote, then see who they were.

Routes: GET /api/arena/models and /api/arena/collections fill the settings; POST /api/arena/battles starts a
battle; POST /api/arena/battles/{id}/turn (streamed) sends each message to both; POST /api/arena/votes votes
and reveals the names; after it, POST /api/feedback takes a thumbs up or down on each answer (a second click
changes it). With RAG on, both sides get the same retrieved passages; each answer lists the passages it cites.
"""

from __future__ import annotations

import json

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError, give_thumbs
from annotate.feedback import THUMBS
from annotate.ranking import number_keys
from annotate.render import safe_markdown
from annotate.session import get_client

require_role("annotator", "reviewer", "admin")
client = get_client()

VOTES = {"a": "👈 A is better", "b": "👉 B is better", "tie": "🤝 Tie", "both_bad": "👎 Both are bad"}

for key, value in (
    ("arena_battle", None),
    ("arena_turns", []),
    ("arena_reveal", None),
    ("arena_error", None),
    ("arena_thumbs", {}),
):
    if key not in st.session_state:
        st.session_state[key] = value


def new_battle() -> None:
    st.session_state.arena_battle = None
    st.session_state.arena_turns = []
    st.session_state.arena_reveal = None
    st.session_state.arena_thumbs = {}
    st.session_state.arena_error = None


def _thumb_changed(side: str, key: str) -> None:
    """Send the new thumbs for one side; a click on the chosen one keeps it (a thumbs is changed, never taken back)."""
    value, current = st.session_state[key], st.session_state.arena_thumbs.get(side)
    if value is None or value == current:
        st.session_state[key] = current
        return
    try:
        give_thumbs(client, battle_id=st.session_state.arena_battle, side=side, label=value)
    except ApiError as e:
        st.session_state[key] = current
        st.session_state.arena_error = (side, f"Not saved: {e}")
        return
    st.session_state.arena_thumbs[side] = value
    st.session_state.arena_error = None


def thumbs(side: str) -> None:
    """Thumbs up or down on one answer, once the vote is in (before it the server has no answer to attach it to)."""
    battle_id = st.session_state.arena_battle
    key = f"arena_{battle_id}_thumb_{side}"
    current = st.session_state.arena_thumbs.get(side)
    st.segmented_control(
        f"Thumbs for model {side.upper()}",
        [True, False],
        format_func=THUMBS.get,
        key=key,
        on_change=_thumb_changed,
        args=(side, key),
        label_visibility="collapsed",
        help="Is this answer good on its own? A second click on the other one changes it. Keyboard: U or D.",
    )
    if current is not None:
        st.caption(f"Saved: {THUMBS[current]}")
    error = st.session_state.arena_error
    if isinstance(error, tuple) and error[0] == side:
        st.error(error[1], icon=":material/error:")


st.title("Arena", anchor=False)
st.caption(
    "Two anonymous models answer the same question. Vote for the better answer; the names are revealed "
    "after your vote."
)

try:
    models = client.get("/api/arena/models")["models"]
    collections = [c["name"] for c in client.get("/api/arena/collections")["collections"]]
except ApiError as e:
    st.error(f"Could not load the arena settings: {e}")
    st.stop()

battle = st.session_state.arena_battle
with st.expander("Battle settings", expanded=battle is None):
    locked = battle is not None  # settings apply to the next battle
    pick = st.radio("Models", ["Draw two at random", "Choose two"], key="arena_pick", horizontal=True, disabled=locked)
    chosen = []
    if pick == "Choose two":
        chosen = st.multiselect(
            "Two models (their sides are shuffled)", models, max_selections=2, key="arena_models", disabled=locked
        )
    rag_on = st.toggle(
        "Retrieval (RAG): give both models the same retrieved passages",
        key="arena_rag",
        disabled=locked or not collections,
    )
    collection = k = None
    if rag_on:
        collection = st.selectbox("Collection", collections, key="arena_collection", disabled=locked)
        k = st.slider("Passages", 1, 10, 4, key="arena_k", disabled=locked)
    if not collections:
        st.caption("No RAG collections yet: `preflab rag ingest FILES --collection NAME`.")
    max_tokens = st.slider("Max tokens per answer", 16, 1024, 256, step=16, key="arena_max_tokens")
if len(models) < 2:
    st.warning(f"The arena needs two served models; running engines serve: {', '.join(models) or 'none'}.")
    st.stop()


def show_citations(answer: dict) -> None:
    cites = answer.get("citations") or []
    if cites:
        st.caption(
            "Sources: "
            + "; ".join(
                f"[{c['index']}] {c['title']}"
                + (f" / {c['heading']}" if c.get("heading") and c["heading"] != c["title"] else "")
                for c in cites
            )
        )


def show_turn(turn: dict, *, last: bool = False) -> None:
    with st.chat_message("user"):
        st.markdown(safe_markdown(turn["user"]))
    left, right = st.columns(2)
    voted = last and st.session_state.arena_reveal is not None
    for col, side in ((left, "a"), (right, "b")):
        # a key with "_card_" lets the page's keys (U / D) reach the thumbs of the answer in focus
        key = f"arena_{st.session_state.arena_battle}_card_{side}" if voted else None
        with col, st.container(border=True, key=key):
            st.markdown(f"**Model {side.upper()}**")
            st.markdown(safe_markdown(turn[side]["text"]) or "_(empty answer)_")
            show_citations(turn[side])
            if voted:
                thumbs(side)
    if turn.get("context"):
        with st.expander(f"Retrieved passages ({len(turn['context'])}), the same for both"):
            for c in turn["context"]:
                st.markdown(
                    f"**[{c['index']}] {safe_markdown(c['title'])}** · score {c['score']:.3f} · `{c['source']}`"
                )
                st.markdown(safe_markdown(c["text"]))


for index, turn in enumerate(st.session_state.arena_turns):
    show_turn(turn, last=index == len(st.session_state.arena_turns) - 1)


def stream_turn(battle_id: int, message: str) -> dict | None:
    """Send the message, show both answers as they stream in; returns the stored turn (or None on error)."""
    with st.chat_message("user"):
        st.markdown(safe_markdown(message))
    left, right = st.columns(2)
    boxes, texts = {}, {"a": "", "b": ""}
    for col, side in ((left, "a"), (right, "b")):
        with col, st.container(border=True):
            st.markdown(f"**Model {side.upper()}**")
            boxes[side] = st.empty()
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    body = {"message": message, "stream": True, "params": {"max_tokens": max_tokens}}
    url = f"{client.base_url}/api/arena/battles/{battle_id}/turn"
    try:
        with client._http.stream("POST", url, json=body, headers=headers, timeout=600) as resp:
            if resp.status_code >= 400:
                resp.read()
                st.error(f"The server refused the message: {resp.json().get('error', {}).get('message')}")
                return None
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "delta" in event:
                    texts[event["side"]] += event["delta"]
                    boxes[event["side"]].markdown(safe_markdown(texts[event["side"]]) + " ▌")
                elif event.get("error") and not event.get("done"):
                    st.error(f"Model {event['side'].upper()} failed: {event['error']}")
                elif event.get("done"):
                    if event.get("error"):
                        st.error(event["error"])
                        return None
                    return event["turn"]
    except Exception as e:  # network trouble: say so, keep the page alive
        st.error(f"The answer stream broke off: {e}")
    return None


reveal = st.session_state.arena_reveal
if reveal is None:
    message = st.chat_input("Ask both models…", key="arena_input")
    if message:
        try:
            if battle is None:
                payload = {
                    "models": chosen if len(chosen) == 2 else None,
                    "rag": {"collection": collection, "k": k} if rag_on and collection else None,
                }
                if pick == "Choose two" and len(chosen) != 2:
                    st.error("Choose two models, or let the arena draw them.")
                    st.stop()
                battle = client.post("/api/arena/battles", payload)["battle_id"]
                st.session_state.arena_battle = battle
        except ApiError as e:
            st.error(f"Could not start a battle: {e}")
            st.stop()
        turn = stream_turn(battle, message)
        if turn is not None:
            st.session_state.arena_turns.append(turn)
            st.rerun()

if st.session_state.arena_turns and reveal is None:
    st.markdown("**Which answer is better?**")
    cols = st.columns(4)
    for col, (winner, label) in zip(cols, VOTES.items(), strict=True):
        if col.button(label, key=f"arena_vote_{winner}", width="stretch"):
            try:
                st.session_state.arena_reveal = client.post(
                    "/api/arena/votes", {"battle_id": st.session_state.arena_battle, "winner": winner}
                )
            except ApiError as e:
                st.error(f"The vote was not recorded: {e}")
                st.stop()
            st.rerun()

if reveal is not None:
    st.success(
        f"Model A was **{reveal['model_a']}**, model B was **{reveal['model_b']}**. "
        f"You voted: {VOTES[reveal['winner']]}."
    )
    st.caption("Rate each answer on its own too: 👍 or 👎 under it (Tab to it, then U or D).")
    number_keys()
    if reveal.get("identity_leak"):
        st.warning("An answer named a model, so this battle is flagged; the leaderboard can leave it out.")
    st.button("New battle", key="arena_new", type="primary", on_click=new_battle)
elif st.session_state.arena_turns:
    st.button("Skip: new battle without voting", key="arena_skip", on_click=new_battle)
