"""Run the loop (admin): parameters, start, progress, and the report when it is written.

The server runs the loop (POST /api/loop, serving/api/loops.py): sample -> synthetic ranks -> pairs -> snapshot
-> train -> blind arena on held-out prompts -> report. This page only starts it and watches it.
"""

from __future__ import annotations

import time

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.picker import pick_run
from annotate.session import get_client

require_role("admin")
client = get_client()
st.title("Run the loop", anchor=False)
st.caption(
    "Sample answers from the current policy, rank them with synthetic annotators (real words over made-up ones, "
    "no length term), train over LoRA, and compare the new adapter with its parent, and from round 2 on with the "
    "loop's start, in a blind arena on held-out prompts. On the tiny model and a laptop CPU a demo round takes "
    "one to two minutes."
)

with st.form("loop_form"):
    c1, c2, c3 = st.columns(3)
    base = c1.text_input("Base model folder", value="models/tiny", key="loop_base")
    preset = c2.selectbox(
        "Preset",
        ["demo", "test"],
        key="loop_preset",
        help="demo: tuned for the tiny model; test: a few prompts, two training steps",
    )
    method = c3.selectbox(
        "Method",
        ["dpo", "ppo", "rloo", "grpo"],
        key="loop_method",
        help="dpo learns from the pairs; ppo, rloo and grpo train a reward model on them, then learn from it",
    )
    c4, c5, c6 = st.columns(3)
    rounds = c4.number_input("Rounds", min_value=1, max_value=10, value=1, key="loop_rounds")
    annotators = c5.number_input("Synthetic annotators", min_value=1, max_value=10, value=3, key="loop_annotators")
    noise = c6.slider(
        "Annotator noise",
        0.0,
        0.5,
        0.1,
        0.05,
        key="loop_noise",
        help="probability an annotator swaps two neighbouring ranks",
    )
    start = st.form_submit_button("Start the loop", type="primary", key="loop_start")

if start:
    try:
        started = client.post(
            "/api/loop",
            {
                "base_model": base,
                "preset": preset,
                "method": method,
                "rounds": int(rounds),
                "annotators": int(annotators),
                "noise": float(noise),
            },
        )
        st.session_state.loop_id = started["id"]
        st.session_state.loop_pick_next = started["id"]  # the picker follows the new loop
        st.toast(f"loop {started['id']} started", icon=":material/play_arrow:")
    except ApiError as e:
        st.error(f"Could not start the loop: {e}")

try:
    loops = client.get("/api/loop").get("loops", [])
except ApiError as e:
    st.error(f"Could not load the loops: {e}")
    st.stop()

if not loops:
    st.info("No loop has run on this server yet.")
    st.stop()

ids = [lp["id"] for lp in loops]
labels = {lp["id"]: f"#{lp['id']} {lp['status']} ({lp['config']['method']})" for lp in loops}
chosen = pick_run("Loop", ids, labels, key="loop_pick")
view = next(lp for lp in loops if lp["id"] == chosen)

steps = ["engine", "sample", "rank", "snapshot", "train", "arena", "done"]
rounds_total = view["config"]["rounds"]
within = steps.index(view["step"]) / (len(steps) - 1) if view["step"] in steps else 0.0
done_rounds = max(view["round"] - 1, 0) + within
st.progress(
    min(done_rounds / rounds_total, 1.0) if view["status"] == "running" else 1.0,
    text=f"{view['status']}: round {view['round']} of {rounds_total}, {view['step']} {view['detail']}",
)
if view["error"]:
    st.error(view["error"])
if view["status"] == "running":
    if st.button("Cancel", key="loop_cancel"):
        client.post(f"/api/loop/{chosen}/cancel")
        st.rerun()

for r in view.get("results", []):
    t, m = r["tally"], r["mean_reward"]
    c1, c2, c3 = st.columns(3)
    c1.metric(
        f"Round {r['round']} win rate",
        "n/a" if t["win_rate"] is None else f"{t['win_rate']:.0%}",
        help=f"{t['wins']} wins, {t['losses']} losses, {t['ties']} ties",
    )
    c2.metric("95% CI", f"{t['ci_low']:.0%} - {t['ci_high']:.0%}")
    c3.metric("Mean rule reward", f"{m['child']:.3f}", delta=f"{m['delta']:.3f}")
    ml = m.get("mean_length") or {}
    start = r.get("arena_vs_start") or {}
    if start.get("tally"):
        ts = start["tally"]
        st.caption(
            f"Against the loop's start `{start['parent']}`: win rate "
            f"{'n/a' if ts['win_rate'] is None else format(ts['win_rate'], '.0%')} "
            f"(95% CI {ts['ci_low']:.0%} - {ts['ci_high']:.0%})"
        )
    if ml.get("parent"):
        st.caption(
            f"Mean answer length {ml['parent']:.0f} -> {ml['child']:.0f} characters "
            f"(x{ml['child'] / ml['parent']:.2f} its parent's)"
        )
    st.caption(
        f"adapter `{r['lineage']['adapter']}` from `{r['lineage']['parent']}`, snapshot "
        f"`{r['lineage']['snapshot_id'][:12]}`, run {r['lineage']['run_id']}"
    )

if view.get("report"):
    st.caption(f"Report: `{view['report']}`")
    with st.expander("Report", expanded=view["status"] == "finished"):
        try:
            text = client.request("GET", f"/api/loop/{chosen}/report").text
        except ApiError as e:
            st.warning(f"Could not load the report: {e}")
            text = ""
        block: list[str] = []
        for line in text.splitlines():
            if line.startswith("![") and line.endswith(".svg)"):  # a plot: fetch the SVG through the API
                st.markdown("\n".join(block))
                block = []
                name = line[line.rindex("(") + 1 : -1]
                try:
                    st.image(client.request("GET", f"/api/loop/{chosen}/files/{name}").text)
                except ApiError:
                    st.caption(f"(plot {name} not available)")
            else:
                block.append(line)
        st.markdown("\n".join(block))

with st.expander("History"):
    st.dataframe(view["history"], hide_index=True, key="loop_history")

if any(lp["status"] == "running" for lp in loops):  # any: the picker's labels must not go stale either
    time.sleep(3)
    st.rerun()
