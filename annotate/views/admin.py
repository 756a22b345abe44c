"""Admin: users (add, role, disable, reset password), datasets (k, guidelines, task, aspects, rationale), sampling
jobs, and engines (serve a registered adapter, so the arena can pit it against the base without a command line).

Training runs have their own page (annotate/views/training.py, from the alignment work), listed under
Manage in the navigation next to this one.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError, engine_models, serve_adapter
from annotate.render import safe_markdown
from annotate.session import current_user, get_client
from annotate.settings_editor import settings_editor

ROLES = ["annotator", "reviewer", "admin"]
ACTIVE = ("queued", "running")

require_role("admin")
client = get_client()
me = current_user() or {}
st.title("Admin", anchor=False)

users_tab, datasets_tab, sampling_tab, engines_tab = st.tabs(["Users", "Datasets", "Sampling jobs", "Engines"])


def _done(message: str) -> None:
    st.session_state.admin_flash = message
    st.rerun()


flash = st.session_state.pop("admin_flash", None)
if flash:
    st.toast(flash, icon=":material/check_circle:")

_WHEN_COLUMN = st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")


def _when(frame: pd.DataFrame) -> pd.DataFrame:
    """created_at as a time (the API sends ISO text), so the table shows minutes, not microseconds."""
    if "created_at" in frame:
        try:
            frame = frame.assign(created_at=pd.to_datetime(frame["created_at"], errors="coerce", format="ISO8601"))
        except (TypeError, ValueError):  # e.g. times with and without a zone mixed: show the text as it came
            pass
    return frame


# ---- users ------------------------------------------------------------------------------------------

with users_tab:
    try:
        users = client.users()
    except ApiError as e:
        st.error(f"Could not load the users: {e}")
        users = []
    humans = [u for u in users if u.get("kind", "human") == "human"]
    if users:
        frame = pd.DataFrame(users)
        cols = [c for c in ("name", "role", "disabled", "kind", "created_by", "created_at") if c in frame]
        st.dataframe(
            _when(frame[cols]),
            hide_index=True,
            width="stretch",
            key="admin_users_table",
            column_config={"created_at": _WHEN_COLUMN, "created_by": "created by"},
        )

    add_col, edit_col = st.columns(2, gap="large")
    with add_col, st.form("admin_add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        new_name = st.text_input("Name", key="admin_new_name")
        new_role = st.selectbox("Role", ROLES, key="admin_new_role")
        new_pw = st.text_input(
            "Password",
            type="password",
            key="admin_new_password",
            help="Give it to the person; they can use it right away.",
        )
        if st.form_submit_button("Add user", type="primary", key="admin_add_submit"):
            try:
                client.add_user(new_name.strip(), new_role, new_pw)
            except ApiError as e:
                st.error(f"Not added: {e}")
            else:
                _done(f"Added {new_name.strip()} as {new_role}")

    with edit_col:
        st.markdown("**Change a user**")
        if not humans:
            st.caption("No users to change yet.")
        else:
            names = [u["name"] for u in humans]
            who = st.selectbox("User", names, key="admin_edit_user")
            current = next(u for u in humans if u["name"] == who)
            with st.form(f"admin_edit_{who}"):
                role = st.selectbox("Role", ROLES, index=ROLES.index(current["role"]), key=f"admin_role_{who}")
                disabled = st.toggle(
                    "Disabled (cannot log in)", value=bool(current.get("disabled")), key=f"admin_disabled_{who}"
                )
                password = st.text_input(
                    "New password (leave empty to keep)", type="password", key=f"admin_password_{who}"
                )
                if st.form_submit_button("Save changes", key="admin_edit_submit"):
                    fields = {}
                    if role != current["role"]:
                        fields["role"] = role
                    if disabled != bool(current.get("disabled")):
                        fields["disabled"] = disabled
                    if password:
                        fields["password"] = password
                    if not fields:
                        st.info("Nothing changed.")
                    else:
                        try:
                            client.update_user(who, **fields)
                        except ApiError as e:
                            st.error(f"Not saved: {e}")
                        else:
                            _done(f"Saved {who}: {', '.join(fields)} changed")
            if who == me.get("name"):
                st.caption("That is you: you cannot disable or demote yourself.")

# ---- datasets -----------------------------------------------------------------------------------------

with datasets_tab:
    try:
        datasets = client.datasets()
    except ApiError as e:
        st.error(f"Could not load the datasets: {e}")
        datasets = []
    if datasets:
        st.dataframe(
            _when(pd.DataFrame(datasets)),
            hide_index=True,
            width="stretch",
            key="admin_datasets_table",
            column_config={
                "id": None,
                "annotators_per_prompt": st.column_config.NumberColumn("k", help="Annotators per prompt"),
                "guideline_version": "guidelines",
                "created_at": _WHEN_COLUMN,
            },
        )
    names = [d["name"] for d in datasets]
    edit, create = st.columns([2, 1], gap="large")
    with edit:
        st.markdown("**Settings and guidelines**")
        if not names:
            st.caption("No datasets yet: create one here or import a file on the Data page.")
        else:
            ds_name = st.selectbox("Dataset", names, key="admin_ds")
            try:
                ds = client.get(f"/api/datasets/{ds_name}")
            except ApiError as e:
                st.error(f"Could not load {ds_name}: {e}")
                st.stop()
            k = st.number_input(
                "Annotators per prompt (k)",
                min_value=1,
                max_value=100,
                value=int(ds.get("annotators_per_prompt") or 1),
                key=f"admin_k_{ds_name}",
                help="How many people rank each prompt; agreement needs k ≥ 2.",
            )
            write, preview = st.tabs(["Write", "Preview"])
            guidelines = write.text_area(
                f"Guidelines (markdown) · version {ds.get('guideline_version', 1)}",
                value=ds.get("guidelines") or "",
                height=260,
                key=f"admin_guidelines_{ds_name}",
                help="Saving changed text makes a new version; every ranking records the version it followed.",
            )
            preview.markdown(safe_markdown(guidelines) or "*(empty)*")
            if st.button("Save dataset", type="primary", key="admin_ds_save"):
                fields = {}
                if int(k) != int(ds.get("annotators_per_prompt") or 1):
                    fields["annotators_per_prompt"] = int(k)
                if guidelines != (ds.get("guidelines") or ""):
                    fields["guidelines"] = guidelines
                if not fields:
                    st.info("Nothing changed.")
                else:
                    try:
                        client.update_dataset(ds_name, **fields)
                    except ApiError as e:
                        st.error(f"Not saved: {e}")
                    else:
                        _done(f"Saved {ds_name}")
            st.divider()
            settings_editor(client, ds_name)
    with create, st.form("admin_new_dataset", clear_on_submit=True):
        st.markdown("**New dataset**")
        new_ds = st.text_input("Name", key="admin_new_ds")
        new_k = st.number_input("Annotators per prompt (k)", min_value=1, max_value=100, value=1, key="admin_new_k")
        new_desc = st.text_input("Description (optional)", key="admin_new_desc")
        if st.form_submit_button("Create dataset", key="admin_new_ds_submit"):
            try:
                client.create_dataset(
                    new_ds.strip(), annotators_per_prompt=int(new_k), description=new_desc.strip() or None
                )
            except ApiError as e:
                st.error(f"Not created: {e}")
            else:
                _done(f"Created {new_ds.strip()}")

# ---- sampling jobs ------------------------------------------------------------------------------------

with sampling_tab:
    try:
        engines = client.engines()
    except ApiError as e:
        st.error(f"Could not list the engines: {e}")
        engines = []
    if not engines:
        st.info(
            "No inference engine is registered. Start one with `preflab engine start ...` or add an "
            "OpenAI-compatible URL with `preflab engine add ...`, then come back."
        )
    else:
        st.markdown("**Sample answers**")
        # Dataset, engine and model sit outside the form: the model list is what the picked engine serves, so
        # it must follow the choice at once (widgets inside a form only report on submit).
        r1 = st.columns(3)
        engine_names = [e["name"] for e in engines]
        s_engine = r1[1].selectbox(
            "Engine",
            engine_names,
            key="sample_engine",
            format_func=lambda n: (
                n + ("" if next(e for e in engines if e["name"] == n).get("alive") is not False else " (not running)")
            ),
        )
        try:
            served = engine_models(client, s_engine)
        except ApiError as e:
            st.error(f"Could not ask {s_engine} for its models: {e}")
            served = {"models": [], "live": False}
        engine_served = list(served.get("models") or [])
        if st.session_state.get("sample_model") not in engine_served:  # a model of the engine picked before
            st.session_state.pop("sample_model", None)
        s_dataset = r1[0].selectbox("Dataset", names, key="sample_dataset")
        s_model = r1[2].selectbox(
            "Model",
            engine_served,
            key="sample_model",
            help="What this engine serves" + ("" if served.get("live") else " (as recorded: it did not answer)"),
        )
        with st.form("admin_sampling_form"):
            r2 = st.columns(5)
            s_n = r2[0].number_input("Answers per prompt (n)", 1, 64, 4, key="sample_n")
            s_temp = r2[1].number_input("Temperature", 0.0, 2.0, 0.8, 0.05, key="sample_temperature")
            s_top_p = r2[2].number_input("Top-p", 0.01, 1.0, 0.95, 0.01, key="sample_top_p")
            s_max = r2[3].number_input("Max tokens", 1, 32768, 256, key="sample_max_tokens")
            s_seed = r2[4].number_input("Seed", 0, 2**31 - 1, 0, key="sample_seed")
            start = st.form_submit_button(
                "Start sampling", type="primary", key="sample_start", icon=":material/play_arrow:"
            )
            if start:
                if not s_dataset or not s_model:
                    st.error("Choose a dataset and a model.")
                else:
                    try:
                        job = client.start_sampling(
                            dataset=s_dataset,
                            engine=s_engine,
                            model=s_model,
                            n=int(s_n),
                            temperature=float(s_temp),
                            top_p=float(s_top_p),
                            max_tokens=int(s_max),
                            seed=int(s_seed),
                        )
                    except ApiError as e:
                        st.error(f"Not started: {e}")
                    else:
                        _done(f"Sampling job {job.get('id', '')} started")

    @st.fragment(run_every=2.0)
    def _jobs() -> None:
        """The job list refreshes itself every 2 s (only this fragment reruns, not the page)."""
        try:
            jobs = client.sampling_jobs()
        except ApiError as e:
            st.error(f"Could not list the sampling jobs: {e}")
            return
        if not jobs:
            st.caption("No sampling jobs yet.")
            return
        st.markdown("**Jobs**")
        for job in jobs[:20]:
            total, done = job.get("prompts_total") or 0, job.get("prompts_done") or 0
            with st.container(border=True, key=f"sample_job_{job['id']}"):
                head, stop = st.columns([5, 1], vertical_alignment="center")
                line = (
                    f"**#{job['id']}** · {job.get('dataset')} · `{job.get('model')}` · **{job['status']}** · "
                    f"{job.get('answers_stored', 0)} answers stored"
                )
                head.markdown(line + (f" · {job['failures']} failures" if job.get("failures") else ""))
                if job["status"] in ACTIVE:
                    st.progress(done / total if total else 0.0, text=f"{done} / {total or '?'} prompts")
                    if stop.button("Cancel", key=f"sample_cancel_{job['id']}", icon=":material/stop:"):
                        try:
                            client.cancel_sampling(job["id"])
                        except ApiError as e:
                            st.error(f"Not cancelled: {e}")
                elif job.get("error"):
                    st.caption(f"Error: {job['error']}")

    _jobs()

# ---- engines: serve a registered adapter ----------------------------------------------------------------

with engines_tab:
    try:
        engine_rows = client.engines()
        adapters = [m for m in client.models() if m["kind"] == "adapter"]
    except ApiError as e:
        st.error(f"Could not list the engines and models: {e}")
        engine_rows, adapters = [], []
    if engine_rows:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": e["name"],
                        "backend": e["backend"],
                        "running": {True: "yes", False: "no", None: "external"}[e.get("alive")],
                        "models": ", ".join(e.get("models") or []),
                        "url": e["url"],
                    }
                    for e in engine_rows
                ]
            ),
            hide_index=True,
            width="stretch",
            key="admin_engines_table",
        )
    else:
        st.caption("No engine is registered yet; serving an adapter starts one.")
    st.markdown("**Serve an adapter** (for sampling and the arena)")
    if not adapters:
        st.caption("No adapter is registered yet: finish a training run first.")
    else:
        local = [e["name"] for e in engine_rows if e["backend"] != "external" and e.get("alive")]
        c1, c2 = st.columns(2)
        to_serve = c1.selectbox(
            "Adapter",
            [m["name"] for m in adapters],
            key="admin_serve_adapter",
            format_func=lambda n: f"{n} ({next(m for m in adapters if m['name'] == n).get('stage') or 'adapter'})",
        )
        into = c2.selectbox(
            "Engine",
            ["(automatic)", *local],
            key="admin_serve_engine",
            help="Automatic: load it into a running engine on its base model when that engine can load adapters "
            "while serving; otherwise start a transformers engine for it.",
        )
        if st.button("Serve adapter", type="primary", key="admin_serve_submit", icon=":material/rocket_launch:"):
            with st.spinner(f"Serving {to_serve} (starting an engine can take a minute) ..."):
                try:
                    done = serve_adapter(client, to_serve, None if into == "(automatic)" else into)
                except ApiError as e:
                    st.error(f"Not served: {e}")
                else:
                    verb = {"served": "was already served by", "loaded": "loaded into", "started": "served by new"}
                    _done(f"{to_serve} {verb.get(done['action'], done['action'])} engine {done['engine']}")

# Training runs: annotate/views/training.py (alignment) is its own page under "Manage" when installed.
