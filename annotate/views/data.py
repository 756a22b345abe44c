"""Data (admins): upload and import a file, export with filters as a download, and activity charts.

Import goes to POST /api/import (multipart); the server detects the format unless one is chosen and answers
with a report, or with a 400 naming the file, line and field (nothing imported). Export is
GET /api/export, offered as a download; charts come from GET /api/stats/activity.
"""

from __future__ import annotations

import streamlit as st

from annotate.app import require_role
from annotate.client import ApiError
from annotate.session import get_client
from annotate.stats_view import agreement_metrics, charts

ALL = "(all datasets)"

require_role("admin")
client = get_client()
st.title("Data", anchor=False)

try:
    datasets = client.datasets()
    formats = client.formats()
except ApiError as e:
    st.error(f"Could not load the datasets: {e}")
    st.stop()
IMPORT_FORMATS = formats["import"]
EXPORT_FORMATS = {f["name"]: (f["suffix"], f["description"]) for f in formats["export"]}  # name -> (suffix, what)
names = [d["name"] for d in datasets]

import_tab, export_tab, charts_tab = st.tabs(["Import", "Export", "Charts"])

# ---- import -----------------------------------------------------------------------------------------

with import_tab:
    upload = st.file_uploader(
        "File to import (JSON Lines, JSON, CSV, .gz)",
        key="data_upload",
        type=["jsonl", "json", "csv", "gz", "txt", "parquet"],
    )
    c1, c2 = st.columns(2)
    fmt = c1.selectbox(
        "Format",
        IMPORT_FORMATS,
        key="data_format",
        help="auto detects the format from the file and says what it found.",
    )
    target = c2.text_input(
        "Dataset",
        key="data_dataset",
        value=names[0] if names else "",
        help="An existing dataset, or a new name to create one.",
    )
    t1, t2 = st.columns(2)
    dry_run = t1.toggle("Dry run (check only, import nothing)", key="data_dry_run")
    skip_invalid = t2.toggle("Skip invalid rows (import the rest, list the bad ones)", key="data_skip_invalid")
    if st.button(
        "Check file" if dry_run else "Import",
        type="primary",
        key="data_import",
        icon=":material/upload:",
        disabled=upload is None,
    ):
        if not target.strip():
            st.error("Name the dataset to import into.")
            st.stop()
        with st.spinner(f"{'Checking' if dry_run else 'Importing'} {upload.name}…"):
            try:
                result = client.import_file(
                    upload.name,
                    upload.getvalue(),
                    dataset=target.strip(),
                    fmt=fmt,
                    dry_run=dry_run,
                    skip_invalid=skip_invalid,
                )
            except ApiError as e:
                st.session_state.data_report = {"error": str(e), "file": upload.name}
            else:
                st.session_state.data_report = {"result": result, "dry_run": dry_run, "file": upload.name}

    report = st.session_state.get("data_report")
    if report:
        if "error" in report:
            st.error(f"Nothing was imported from **{report['file']}**.\n\n{report['error']}", icon=":material/error:")
        else:
            body = report["result"].get("report", report["result"])
            added = body.get("added") if isinstance(body.get("added"), dict) else {}
            counts = {"records read": body.get("records")} if isinstance(body.get("records"), int) else {}
            counts.update(
                {
                    f"{k} {'to add' if report['dry_run'] else 'added'}": v
                    for k, v in added.items()
                    if isinstance(v, int)
                }
            )
            verb = "checked" if report["dry_run"] else "imported"
            how = ""
            if body.get("format"):
                how = f" as `{body['format']}`" + (" (detected)" if body.get("detected") else "")
            st.success(f"**{report['file']}**: {verb}{how}", icon=":material/check_circle:")
            if counts:
                cols = st.columns(min(len(counts), 6))
                for i, (name, value) in enumerate(counts.items()):
                    cols[i % len(cols)].metric(name.capitalize(), f"{value:,}")
            stored = {k: v for k, v in (body.get("already_stored") or {}).items() if v}
            if stored:
                st.caption("Already stored, not added again: " + ", ".join(f"{v:,} {k}" for k, v in stored.items()))
            outcome = body.get("records_outcome")
            if isinstance(outcome, dict) and outcome.get("read"):
                st.caption(
                    f"Records: {outcome['read']:,} read = {outcome['added']:,} added + "
                    f"{outcome['already_stored']:,} already stored + {outcome['merged']:,} merged (the same "
                    f"ranking as an earlier record) + {outcome['skipped_invalid']:,} skipped as invalid + "
                    f"{outcome['skipped_empty']:,} with nothing to import"
                    + (f" ({body['empty']['reason']})" if outcome["skipped_empty"] else "")
                )
            skipped = body.get("skipped")
            if isinstance(skipped, list) and skipped:
                st.warning(f"{len(skipped)} invalid row(s) skipped; the rest was {verb}:")
                st.dataframe(skipped, width="stretch", key="data_skipped")
            with st.expander("Full report"):
                st.json(report["result"])

# ---- export -----------------------------------------------------------------------------------------

with export_tab:
    e1, e2 = st.columns(2)
    out_fmt = e1.selectbox(
        "Format", list(EXPORT_FORMATS), key="export_format", format_func=lambda f: f"{f} — {EXPORT_FORMATS[f][1]}"
    )
    out_ds = e2.selectbox("Dataset", [ALL, *names], key="export_dataset")
    f1, f2, f3 = st.columns(3)
    min_annotators = f1.number_input(
        "Min annotators per prompt", min_value=1, value=1, step=1, key="export_min_annotators"
    )
    min_agreement = f2.slider(
        "Min agreement",
        0.0,
        1.0,
        0.0,
        0.05,
        key="export_min_agreement",
        help="Per-prompt agreement (Kendall's W); 0 keeps everything.",
    )
    ties = f3.radio("Ties", ["drop", "keep"], horizontal=True, key="export_ties")
    g1, g2, g3 = st.columns(3)
    source = g1.radio(
        "Source",
        ["all", "human", "arena"],
        horizontal=True,
        key="export_source",
        help="human: annotators, imports and adjudications; arena: blind A/B votes.",
    )
    test_share = g2.slider(
        "Test split",
        0.0,
        0.5,
        0.0,
        0.05,
        key="export_split",
        help="Share of prompts held out as a test set (split by prompt).",
    )
    seed = g3.number_input("Seed", min_value=0, value=0, step=1, key="export_seed")

    if st.button("Prepare export", key="export_prepare", icon=":material/download:"):
        filters = {
            "format": out_fmt,
            "dataset": None if out_ds == ALL else out_ds,
            "min_annotators": int(min_annotators),
            "min_agreement": float(min_agreement) or None,
            "ties": ties,
            "source": source,
            "split": f"test={test_share:g}" if test_share else None,
            "seed": int(seed) if test_share else None,
        }
        with st.spinner("Exporting…"):
            try:
                content, headers = client.export(**filters)
            except ApiError as e:
                st.session_state.export_file = None
                st.error(f"Export failed: {e}")
            else:
                disposition = headers.get("content-disposition", "")
                filename = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else None
                suffix = EXPORT_FORMATS[out_fmt][0]
                st.session_state.export_file = {
                    "content": content,
                    "snapshot": headers.get("x-preflab-snapshot", ""),
                    "name": filename or f"{out_ds if out_ds != ALL else 'preflab'}-{out_fmt}.{suffix}",
                }
    ready = st.session_state.get("export_file")
    if ready:
        st.download_button(
            f"Download {ready['name']} ({len(ready['content']):,} bytes)",
            ready["content"],
            file_name=ready["name"],
            key="export_download",
            type="primary",
            icon=":material/file_download:",
        )
        if ready["snapshot"]:
            st.caption(f"Snapshot id `{ready['snapshot']}` (training runs record it)")

# ---- charts -----------------------------------------------------------------------------------------

with charts_tab:
    chart_ds = st.selectbox("Dataset", [ALL, *names], key="charts_dataset")
    try:
        scope = None if chart_ds == ALL else chart_ds
        stats, activity = client.stats(scope), client.get("/api/stats/activity", dataset=scope)
    except ApiError as e:
        st.error(f"Could not load the activity data: {e}")
    else:
        agreement_metrics(stats)
        charts(activity)
