"""Training (admin): start a run (stage, base or parent adapter, dataset + filters, main hyperparameters),
watch it live (metric curves, log tail, status, cancel, resume), and browse past runs with their lineage
snapshot -> run -> adapter. The server runs the job as a subprocess (serving/api/runs.py); this page only
asks for it and watches.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from annotate import training_client as tc
from annotate.app import require_role
from annotate.client import ApiError
from annotate.picker import pick_run
from annotate.session import get_client
from annotate.stats_view import curve

CHART_KEYS = {
    "sft": ["loss", "mean_token_accuracy"],
    "reward": ["loss", "accuracy", "margin", "eval_accuracy"],
    "dpo": ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"],
    "ppo": ["reward", "kl", "value_loss", "clip_fraction", "entropy"],
    "rloo": ["loss", "reward", "kl"],
    "grpo": ["loss", "reward"],
    "kto": ["loss", "kl", "rewards/chosen", "rewards/rejected"],  # what TRL's KTOTrainer logs
}


def field_input(col, stage: str, field: dict):
    """One config field of GET /api/train/stages as a widget holding its starting value; returns what it holds."""
    key, value = f"train_p_{stage}_{field['name']}", field["value"]
    tip = f"{field['help']}\n\nType `{field['type']}`; a run without this field uses `{json.dumps(field['default'])}`."
    if field["choices"]:
        choices = field["choices"]
        return col.selectbox(
            field["name"], choices, index=choices.index(value) if value in choices else 0, key=key, help=tip
        )
    if isinstance(value, bool):
        return col.checkbox(field["name"], value=value, key=key, help=tip)
    if isinstance(value, float):
        return col.number_input(field["name"], value=value, format="%g", key=key, help=tip)
    if isinstance(value, int):
        return int(col.number_input(field["name"], value=value, step=1, key=key, help=tip))
    return col.text_input(field["name"], value="" if value is None else str(value), key=key, help=tip)


require_role("admin")
client = get_client()
st.title("Training", anchor=False)

try:
    models = client.models()
    datasets = [d["name"] for d in client.datasets()]
    if "train_stages" not in st.session_state:  # the stages and their fields stay as the server said for the session
        st.session_state.train_stages = {s["stage"]: s for s in tc.train_stages(client)}
except ApiError as e:
    st.error(f"Could not reach the server: {e}")
    st.stop()
stages = st.session_state.train_stages
adapters = [m["name"] for m in models if m["kind"] == "adapter"]
bases = [m["name"] for m in models if m["kind"] in ("base", "merged")]

with st.expander("Start a run", expanded="train_run_id" not in st.session_state):
    c1, c2, c3 = st.columns(3)
    stage = c1.selectbox("Stage", list(stages), index=list(stages).index("dpo"), key="train_stage")
    base = c2.text_input(
        "Base model (folder or registered name)", value=bases[0] if bases else "models/tiny", key="train_base"
    )
    parent = c3.selectbox(
        "Parent adapter",
        ["(none)", *adapters],
        key="train_parent",
        help="e.g. the SFT adapter under DPO/PPO; the reference is this model",
    )
    c4, c5, c6 = st.columns(3)
    dataset = c4.selectbox("Dataset (exported to a snapshot now)", datasets, key="train_dataset")
    min_annotators = c5.number_input("Min. annotators per pair", 1, 20, 1, key="train_min_annotators")
    min_agreement = c6.slider("Min. agreement", 0.0, 1.0, 0.0, 0.05, key="train_min_agreement")
    reward_model = None
    if stages[stage]["needs_reward_model"]:
        rms = [m["name"] for m in models if m.get("stage") == "reward"]
        reward_model = st.selectbox(
            "Reward model", rms, key="train_reward_model", help="train one with the reward stage first"
        )
    st.caption(
        "Hyperparameters (starting values that suit LoRA on a small model; any other key of the stage's config "
        f"can go in the YAML box: `preflab train {stage} --help-config` lists them)."
    )
    cols = st.columns(4)
    params = {field["name"]: field_input(cols[i % 4], stage, field) for i, field in enumerate(stages[stage]["fields"])}
    extra = st.text_area("More config (YAML key: value)", value="", key="train_extra", height=80)
    name = st.text_input("Model name for the adapter (optional)", key="train_name")
    if st.button("Start training", type="primary", key="train_start", disabled=not datasets):
        import yaml

        try:
            more = yaml.safe_load(extra) if extra.strip() else {}
            if not isinstance(more, dict):
                raise ValueError("the YAML box must hold key: value lines")
            run = tc.start_run(
                client,
                stage=stage,
                base=base,
                adapter=None if parent == "(none)" else parent,
                dataset=dataset,
                filters={"min_annotators": int(min_annotators), "min_agreement": float(min_agreement)},
                config={**params, **more},
                name=name or None,
                reward_model=reward_model,
            )
            st.session_state.train_run_id = run["id"]
            st.session_state.train_pick_next = run["id"]  # the picker follows the new run (annotate.picker)
            st.toast(f"run {run['id']} started", icon=":material/play_arrow:")
        except (ApiError, ValueError, yaml.YAMLError) as e:
            st.error(f"Could not start: {e}")

try:
    runs = tc.list_runs(client)
except ApiError as e:
    st.error(f"Could not load runs: {e}")
    st.stop()
if not runs:
    st.info("No training run yet.")
    st.stop()

ids = [r["id"] for r in runs]
status_of = {r["id"]: r["status"] for r in runs}  # this rerun's statuses: the labels below are never older
picked = pick_run("Run", ids, {r["id"]: f"#{r['id']} {r['stage']} · {r['status']}" for r in runs}, key="train_pick")


@st.fragment(run_every=2)
def live(run_id: int) -> None:
    """Status, curves and log of one run, refreshed every 2 s."""
    try:
        run = tc.get_run(client, run_id)
        records = tc.run_metrics(client, run_id)["records"]
        log_tail = tc.run_log(client, run_id, lines=40)
    except ApiError as e:
        st.error(str(e))
        return
    if run["status"] != status_of.get(run_id):
        # the fragment alone reruns every 2 s: redraw the whole page so the picker and the table say it too
        st.rerun()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", run["status"])
    c2.metric("Stage", run["stage"])
    c3.metric("Step", max((r.get("step") or 0 for r in records), default=0))
    c4.metric("Snapshot", (run["snapshot_id"] or "")[:12])
    b1, b2, _ = st.columns([1, 1, 4])
    if run["status"] == "running" and b1.button("Cancel", key=f"train_cancel_{run_id}"):
        tc.cancel_run(client, run_id)
    if run["status"] in ("cancelled", "failed") and b2.button("Resume", key=f"train_resume_{run_id}"):
        tc.resume_run(client, run_id)
    if records:
        frame = pd.DataFrame(records)
        keys = [k for k in CHART_KEYS.get(run["stage"], ["loss"]) if k in frame]
        if keys:
            chart = frame.dropna(subset=keys, how="all").set_index("step")[keys]
            curve(chart)
        if "learning_rate" in frame:
            curve(frame.dropna(subset=["learning_rate"]).set_index("step")[["learning_rate"]], height=150)
    if run.get("error"):
        st.error(run["error"][-2000:])
    evaluation = (run.get("result") or {}).get("reward_eval")
    if evaluation:  # a reward run's held-out pairs, RewardBench-style (alignment/reward_eval.py)
        st.markdown(
            f"**Held-out evaluation:** accuracy {evaluation['accuracy']:.3f} on {evaluation['pairs']} pairs"
            + "".join(
                f" · agreement {name}: {b['accuracy']:.3f} ({b['pairs']})"
                for name, b in (evaluation.get("by_agreement") or {}).items()
            )
        )
        bins = evaluation.get("calibration") or []
        if bins:
            st.caption(
                "Calibration (accuracy per quintile of |margin|, smallest first): "
                + ", ".join(f"{b['accuracy']:.2f}" for b in bins)
            )
    st.code(log_tail or "(no log yet)", language="text")
    lineage = run.get("lineage") or {}
    st.caption(
        f"Lineage: snapshot {(lineage.get('snapshot_id') or '')[:12]} → run #{run_id} → adapter "
        f"{lineage.get('model') or '(not yet)'}; parent {lineage.get('parent') or 'none'}"
    )


live(picked)

st.subheader("Past runs", anchor=False)
table = pd.DataFrame(
    [
        {
            "id": r["id"],
            "stage": r["stage"],
            "status": r["status"],
            "base": r["base"],
            "parent": r["parent"],
            "snapshot": (r["snapshot_id"] or "")[:12],
            "created": r["created_at"],
            **{
                k: (r.get("metrics") or {}).get(k)
                for k in ("loss", "rewards/accuracies", "accuracy", "reward", "reward_eval_accuracy")
            },
        }
        for r in runs
    ]
)
st.dataframe(table, hide_index=True, key="train_runs_table")
