"""The annotation app, page by page and role by role, with Streamlit's AppTest against a real server.

The server (the `ui_server` fixture, tests/conftest.py) is the real FastAPI app under uvicorn on a free port, over
a database seeded by tests/support/ui_data.py; nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from db import users
from tests.support.ui_data import DATASET, PASSWORDS, VISUAL_DATASET

APP = str(Path(__file__).resolve().parents[2] / "annotate" / "streamlit_app.py")
TIMEOUT = 30


def login(name: str, password: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PASSWORDS[name] if password is None else password)
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything markdown-ish on the page, joined (to look for what a person would read)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    return "\n".join(parts)


def ranking_of(ui_server, user: str, prompt_id: int) -> dict | None:
    rows = ui_server.store.query(
        "SELECT r.id, r.status, r.skip_reason, r.flag_reason, r.comment, r.time_on_task_ms, r.guideline_version "
        "FROM rankings r JOIN users u ON u.id = r.user_id WHERE u.name = ? AND r.prompt_id = ?",
        [user, prompt_id],
    )
    if not rows:
        return None
    row = rows[0]
    row["ranks"] = {
        r["generation_id"]: r["rank"]
        for r in ui_server.store.query(
            "SELECT generation_id, rank FROM ranking_items WHERE ranking_id = ?", [row["id"]]
        )
    }
    return row


# ---- login and roles ---------------------------------------------------------------------------------


def test_wrong_password_shows_a_message_and_stays_on_login(ui_server):
    at = login("ann", "not-the-password")
    assert any("wrong user name or password" in e.value for e in at.error), [e.value for e in at.error]
    assert "auth" not in at.session_state
    assert at.text_input(key="login_name").value == "ann"


def test_annotator_sees_rank_only_and_cannot_reach_reviewer_or_admin_pages(ui_server):
    at = login("ann")
    assert at.session_state["auth"]["user"]["role"] == "annotator"
    assert [t.value for t in at.title] == ["Rank answers"]
    for page in ("views/review.py", "views/data.py", "views/admin.py"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)
    # and the server refuses the routes behind those pages, whatever the UI shows
    with ui_server.api("ann") as api:
        for method, path in [
            ("GET", "/api/stats"),
            ("GET", f"/api/review/disagreements?dataset={DATASET}"),
            ("GET", "/api/prompts/1/rankings"),
            ("POST", "/api/adjudications"),
            ("GET", "/api/users"),
            ("POST", "/api/users"),
            ("GET", "/api/export"),
            ("POST", "/api/import"),
            ("PATCH", f"/api/datasets/{DATASET}"),
            ("GET", "/api/engines"),
            ("POST", "/api/sampling-jobs"),
        ]:
            r = api.request(method, path, json={} if method != "GET" else None)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.json()["error"]["message"]


def test_reviewer_gets_review_but_not_admin_pages(ui_server):
    at = login("rev")
    for page in ("views/data.py", "views/admin.py"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Review"]


def test_logout_returns_to_login(ui_server):
    at = login("ann")
    at.button(key="logout").click().run()
    assert "auth" not in at.session_state
    assert "login_name" in {t.key for t in at.text_input}  # the login form again


def test_expired_session_goes_back_to_login_with_a_message(ui_server):
    at = login("ann2")
    user_id = ui_server.store.scalar("SELECT id FROM users WHERE name = 'ann2'")
    with ui_server.store._lock:  # what an expiry looks like to the server: the token no longer exists
        ui_server.store.con.execute("DELETE FROM api_tokens WHERE user_id = ?", [user_id])
    users.forget_tokens()  # the server remembers tokens it has seen; a real expiry is checked on every use
    at.session_state["rank_datasets"] = None  # force a call to the server on the next run
    del at.session_state["rank_datasets"]
    at.run()
    assert "auth" not in at.session_state
    assert any("session has expired" in w.value for w in at.warning), [w.value for w in at.warning]


# ---- ranking -----------------------------------------------------------------------------------------


def test_rank_with_a_tie_is_stored_and_the_next_prompt_follows(ui_server):
    at = login("ann")
    item = at.session_state["rank_queue"]["item"]
    aid, prompt_id = item["assignment_id"], item["prompt"]["id"]
    answers = [a["id"] for a in item["answers"]]
    page = texts(at)
    # the prompt and answers show with their characters; HTML in an answer is escaped, never raw
    assert "Say hello in Chinese and Spanish 🌍" in page
    assert "你好！这是中文回答" in page and "español con ñ" in page and "🎉🚀" in page
    assert "<script>" not in page and "&lt;script>" in page
    assert "model-" not in page  # model names never reach the annotator
    assert "Left in queue" in [m.label for m in at.metric]

    at.segmented_control(key=f"rank_{aid}_0").set_value(2)
    at.segmented_control(key=f"rank_{aid}_1").set_value(1)
    at.segmented_control(key=f"rank_{aid}_2").set_value(2).run()
    assert any("Answer 2 > Answer 1 = Answer 3" in m.value for m in at.markdown), texts(at)
    at.text_input(key=f"rank_{aid}_comment").input("两个都可以 👍")
    at.button(key="rank_submit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    stored = ranking_of(ui_server, "ann", prompt_id)
    assert stored is not None and stored["status"] == "submitted"
    assert stored["ranks"] == {answers[0]: 2, answers[1]: 1, answers[2]: 2}
    assert stored["comment"] == "两个都可以 👍"
    assert stored["time_on_task_ms"] > 0  # from the first time the item was on screen to the submit
    assert stored["guideline_version"] == ui_server.store.scalar(
        "SELECT guideline_version FROM datasets WHERE name = ?", [DATASET]
    )
    nxt = at.session_state["rank_queue"]["item"]
    assert nxt is not None and nxt["prompt"]["id"] != prompt_id
    assert at.metric[0].value == "1"  # done today


def test_submit_with_an_unranked_answer_is_refused_with_a_message(ui_server):
    at = login("ann")
    item = at.session_state["rank_queue"]["item"]
    aid = item["assignment_id"]
    before = ui_server.store.scalar("SELECT count(*) FROM rankings")
    at.segmented_control(key=f"rank_{aid}_0").set_value(1).run()
    at.button(key="rank_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("Rank every answer" in e and "Answer 2" in e for e in errors), errors
    assert ui_server.store.scalar("SELECT count(*) FROM rankings") == before
    assert at.session_state["rank_queue"]["item"]["assignment_id"] == aid  # still on the same prompt


def test_typed_order_sets_every_rank_picker(ui_server):
    at = login("ann")
    aid = at.session_state["rank_queue"]["item"]["assignment_id"]
    k = len(at.session_state["rank_queue"]["item"]["answers"])
    order = "2 > 1 = 3" + (" > 4" if k == 4 else "")
    at.text_input(key=f"rank_{aid}_typed").input(order).run()
    values = [at.segmented_control(key=f"rank_{aid}_{i}").value for i in range(k)]
    assert values[:3] == [2, 1, 2]
    at.text_input(key=f"rank_{aid}_typed").input("1 > 9").run()
    assert any("not an answer number" in e.value for e in at.error)


def test_skip_with_a_reason_is_stored(ui_server):
    at = login("ann2")
    item = at.session_state["rank_queue"]["item"]
    aid, prompt_id = item["assignment_id"], item["prompt"]["id"]
    at.selectbox(key=f"rank_{aid}_skip_reason").set_value("Outside my expertise")
    at.text_input(key=f"rank_{aid}_skip_note").input("no sé Python")
    at.button(key="rank_skip").click().run()
    assert not at.exception, at.exception
    stored = ranking_of(ui_server, "ann2", prompt_id)
    assert stored["status"] == "skipped"
    assert stored["skip_reason"] == "Outside my expertise: no sé Python"
    assert at.session_state["rank_queue"]["item"]["prompt"]["id"] != prompt_id


def test_flag_harmful_with_a_reason_is_stored(ui_server):
    at = login("ann2")
    item = at.session_state["rank_queue"]["item"]
    aid, prompt_id = item["assignment_id"], item["prompt"]["id"]
    at.selectbox(key=f"rank_{aid}_flag_reason").set_value("Personal or private data")
    at.button(key="rank_flag").click().run()
    stored = ranking_of(ui_server, "ann2", prompt_id)
    assert stored["status"] == "flagged" and stored["flag_reason"] == "Personal or private data"


def test_visual_question_shows_its_image(ui_server):
    at = login("rev")  # any role ranks; rev has no lease in the visual dataset yet
    at.selectbox(key="rank_dataset").set_value(VISUAL_DATASET).run()
    item = at.session_state["rank_queue"]["item"]
    assert item["prompt"]["assets"], item
    assert "What colour is this image? 🎨" in texts(at)
    assert len(at.image) == 1  # fetched through /api/prompts/{id}/assets/0 with the token
    assert not any("Image: `" in c.value for c in at.caption)  # the path fallback was not needed


# ---- review and admin ------------------------------------------------------------------------------------


def test_review_shows_agreement_disagreements_and_records_an_adjudication(ui_server):
    at = login("rev")
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Review"]
    labels = [m.label for m in at.metric]
    assert "Kendall's W" in labels and "Rankings" in labels
    disputed = at.session_state["review_prompt"]
    assert disputed is not None
    # every annotator's ranking side by side: one column per annotator
    columns = [" ".join(map(str, t.value.columns)) for t in at.table]
    assert any("ria" in c and "sam" in c for c in columns), columns
    prefix = f"adj_{disputed}"
    for i, rank in enumerate([1, 2, 2]):
        at.segmented_control(key=f"{prefix}_{i}").set_value(rank)
    at.run()
    at.button(key="review_adjudicate").click().run()
    assert any("Final ranking recorded" in s.value for s in at.success), [e.value for e in at.error]
    source = ui_server.store.scalar(
        "SELECT source FROM rankings WHERE prompt_id = ? AND source = 'adjudication'", [disputed]
    )
    assert source == "adjudication"


def test_admin_pages_render_and_add_a_user(ui_server):
    at = login("adm")
    pages = (("views/data.py", "Data"), ("views/admin.py", "Admin"), ("views/review.py", "Review"))
    for page, title in pages:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert [t.value for t in at.title] == [title]
    at.switch_page("views/admin.py").run()
    at.text_input(key="admin_new_name").input("zoë")
    at.selectbox(key="admin_new_role").set_value("reviewer")
    at.text_input(key="admin_new_password").input("zoë-secret-1")
    at.button(key="admin_add_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    assert ui_server.store.scalar("SELECT role FROM users WHERE name = 'zoë'") == "reviewer"


def test_admin_changes_k_and_guidelines(ui_server):
    version = ui_server.store.scalar("SELECT guideline_version FROM datasets WHERE name = ?", [DATASET])
    at = login("adm")
    at.switch_page("views/admin.py").run()
    at.number_input(key=f"admin_k_{DATASET}").set_value(3)
    at.text_area(key=f"admin_guidelines_{DATASET}").input("Nuevas pautas: sé amable. 新的指南 ✨")
    at.button(key="admin_ds_save").click().run()
    assert not at.error, [e.value for e in at.error]
    row = ui_server.store.query(
        "SELECT annotators_per_prompt AS k, guidelines, guideline_version AS v FROM datasets WHERE name = ?", [DATASET]
    )[0]
    assert row == {"k": 3, "guidelines": "Nuevas pautas: sé amable. 新的指南 ✨", "v": version + 1}


def test_data_page_import_reports_counts_and_errors(ui_server):
    at = login("adm")
    at.switch_page("views/data.py").run()
    good = '{"prompt": "¿Qué es DuckDB? 🦆", "responses": ["Una base de datos.", "Un pato."], "ranks": [1, 2]}\n'
    at.file_uploader(key="data_upload").upload("ranked.jsonl", good.encode("utf-8"))
    at.selectbox(key="data_format").set_value("ranked")
    at.text_input(key="data_dataset").input("imported-ui")
    at.run()
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    report = at.session_state["data_report"]
    assert "error" not in report, report
    metrics = {m.label: m.value for m in at.metric}
    assert metrics.get("Records read") == "1" and metrics.get("Rankings added") == "1", metrics
    assert (
        ui_server.store.scalar(
            "SELECT count(*) FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE d.name = 'imported-ui'"
        )
        == 1
    )

    before = ui_server.store.counts()
    at.file_uploader(key="data_upload").upload("broken.jsonl", b'{"prompt": "x", "responses": ["a"]\n')
    at.run()
    at.button(key="data_import").click().run()
    messages = [e.value for e in at.error]
    assert any("Nothing was imported" in m and "broken.jsonl" in m for m in messages), messages
    assert ui_server.store.counts() == before


def test_ui_command_starts_streamlit_headless_without_usage_stats(run_cli):
    from serving.ui_launch import streamlit_command

    result = run_cli("ui", "--help")
    assert result.exit_code == 0, result.output
    assert "--server" in result.output and "--port" in result.output
    cmd = streamlit_command(8555)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("annotate/streamlit_app.py")
    assert "--server.headless=true" in cmd and "--browser.gatherUsageStats=false" in cmd
    assert "--server.port=8555" in cmd


def test_admin_starts_a_sampling_job_and_sees_it_in_the_list(ui_server):
    from serving.engines.registry import save_engine

    # an external endpoint nobody listens on: the job starts, then fails to reach it (and says so)
    save_engine({"name": "ext", "backend": "external", "url": "http://127.0.0.1:9/v1", "models": ["tiny-chat"]})
    at = login("adm")
    at.switch_page("views/admin.py").run()
    at.selectbox(key="sample_dataset").set_value(DATASET)
    at.selectbox(key="sample_engine").set_value("ext")
    at.selectbox(key="sample_model").set_value("tiny-chat")
    at.number_input(key="sample_n").set_value(2)
    at.number_input(key="sample_temperature").set_value(0.5)
    at.button(key="sample_start").click().run()
    assert not at.error, [e.value for e in at.error]
    job = ui_server.store.query("SELECT dataset, model, engine, CAST(params AS VARCHAR) AS params FROM sampling_jobs")
    assert len(job) == 1 and job[0]["dataset"] == DATASET and job[0]["model"] == "tiny-chat"
    assert '"n": 2' in job[0]["params"] and '"temperature": 0.5' in job[0]["params"]
    assert any("tiny-chat" in m.value for m in at.markdown)  # the job list shows it


def test_safe_markdown_escapes_html_outside_code_only():
    from annotate.render import order_preview, safe_markdown

    text = "Hi <script>x()</script> costs $5\n```html\n<b>$kept</b>\n```\nand `a<b` ok <img src=x onerror=y>"
    out = safe_markdown(text)
    assert "<script>" not in out and "&lt;script>" in out and "&lt;img" in out
    assert "\\$5" in out  # not LaTeX
    assert "```html\n<b>$kept</b>\n```" in out  # code blocks verbatim
    assert "`a<b`" in out  # inline code verbatim
    assert (
        order_preview({"Answer 1": 2, "Answer 2": 1, "Answer 3": 2, "Answer 4": None})
        == "Answer 2 > Answer 1 = Answer 3"
    )


def test_a_prompt_submitted_in_another_tab_gives_a_clear_way_on(ui_server):
    first, second = login("rev"), login("rev")  # two tabs of one person: the same live lease
    for at in (first, second):
        at.selectbox(key="rank_dataset").set_value(DATASET).run()
    item = first.session_state["rank_queue"]["item"]
    assert second.session_state["rank_queue"]["item"]["assignment_id"] == item["assignment_id"]
    for at in (first, second):
        for i in range(len(item["answers"])):
            at.segmented_control(key=f"rank_{item['assignment_id']}_{i}").set_value(i + 1)
        at.run()
    first.button(key="rank_submit").click().run()
    second.button(key="rank_submit").click().run()
    assert any("no longer holds this prompt" in w.value for w in second.warning), [e.value for e in second.error]
    second.button(key="rank_reload").click().run()
    nxt = second.session_state["rank_queue"]["item"]
    assert nxt is None or nxt["assignment_id"] != item["assignment_id"]


@pytest.mark.parametrize("name", ["ann", "rev", "adm"])
def test_every_page_in_the_navigation_renders(ui_server, name):
    """Each role's menu, including pages other areas add (arena, leaderboard, training, loop), opens cleanly."""
    at = login(name)
    pages = [Path(info["script_path"]) for info in at._registered_pages.values() if info.get("script_path")]
    assert pages, at._registered_pages
    allowed = {
        "ann": {"rank"},
        "rev": {"rank", "review", "annotators"},
        "adm": {"rank", "review", "annotators", "data", "admin"},
    }[name]
    assert allowed <= {p.stem for p in pages}
    if name != "adm":
        assert not {"data", "admin", "training", "loop"} & {p.stem for p in pages}
    if name == "ann":
        assert not {"review", "annotators"} & {p.stem for p in pages}
    for page in pages:
        at.switch_page(f"views/{page.name}").run()
        assert not at.exception, (page.name, at.exception)


def test_data_page_exports_a_download_with_filters(ui_server):
    at = login("adm")
    at.switch_page("views/data.py").run()
    at.selectbox(key="export_format").set_value("trl")
    at.selectbox(key="export_dataset").set_value(DATASET)
    at.radio(key="export_ties").set_value("keep")
    at.button(key="export_prepare").click().run()
    assert not at.error, [e.value for e in at.error]
    ready = at.session_state["export_file"]
    lines = [json.loads(line) for line in ready["content"].decode("utf-8").splitlines()]
    assert lines and {"prompt", "chosen", "rejected"} <= set(lines[0])
    assert ready["snapshot"]  # the snapshot id travels with the download
    assert at.get("download_button")


def test_switching_dataset_gives_the_held_prompt_back(ui_server):
    at = login("adm")
    at.selectbox(key="rank_dataset").set_value(DATASET).run()
    held = at.session_state["rank_queue"]["item"]["assignment_id"]
    at.selectbox(key="rank_dataset").set_value(VISUAL_DATASET).run()
    assert ui_server.store.scalar("SELECT status FROM assignments WHERE id = ?", [held]) == "released"


def test_admin_disables_a_user_and_resets_a_password(ui_server):
    with ui_server.api("adm") as api:
        assert api.post("/api/users", json={"name": "olga", "role": "annotator", "password": "olga-old-1"}).is_success
    at = login("adm")
    at.switch_page("views/admin.py").run()
    at.selectbox(key="admin_edit_user").set_value("olga").run()
    at.selectbox(key="admin_role_olga").set_value("reviewer")
    at.text_input(key="admin_password_olga").input("olga-new-2")
    at.button(key="admin_edit_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    assert ui_server.store.scalar("SELECT role FROM users WHERE name = 'olga'") == "reviewer"
    r = httpx.post(f"{ui_server.url}/api/auth/login", json={"name": "olga", "password": "olga-new-2"}, timeout=30)
    assert r.status_code == 200 and r.json()["user"]["role"] == "reviewer"
    at.toggle(key="admin_disabled_olga").set_value(True)
    at.button(key="admin_edit_submit").click().run()
    assert ui_server.store.scalar("SELECT disabled FROM users WHERE name = 'olga'") is True
    with httpx.Client(base_url=ui_server.url, headers={"Authorization": f"Bearer {r.json()['token']}"}) as api:
        assert api.get("/api/me").status_code == 401  # disabling ended the session


def test_an_empty_queue_shows_all_done(ui_server):
    with ui_server.api("adm") as api:
        assert api.post("/api/datasets", json={"name": "zz-empty"}).is_success
    at = login("ann")
    at.selectbox(key="rank_dataset").set_value("zz-empty").run()
    assert at.session_state["rank_queue"]["item"] is None
    assert any("All done for now" in h.value for h in at.subheader)  # a heading without a link anchor
    assert "rank_refresh" in {b.key for b in at.button}


# ---- review numbering and queue, per-day chart, sampling models, engines tab ---------------------------


def _seed_review_dataset(ui_server) -> int:
    """A dataset where tia saw the answers in reverse order (and said "2 and 3 tie"), and uma flagged it."""
    from db.hashing import prompt_hash, text_hash
    from db.staging import Batch

    messages = [{"role": "user", "content": "¿Qué color tiene el cielo? 🌤"}]
    key, answers = prompt_hash(messages), ["Azul.", "Rojo.", "Verde 🌿"]
    batch = Batch(prompts=[{"key": key, "messages": json.dumps(messages, ensure_ascii=False)}])
    batch.generations = [{"prompt_key": key, "gen_key": text_hash(t), "text": t} for t in answers]
    batch.rankings = [
        {"ranking_key": "tia", "prompt_key": key, "annotator": "tia", "status": "submitted", "comment": "2 and 3 tie"},
        {"ranking_key": "uma", "prompt_key": key, "annotator": "uma", "status": "flagged", "flag_reason": "dañino ⚠"},
    ]
    # tia's screen showed Verde first, Rojo second, Azul third (positions reversed against the answer ids)
    batch.items = [
        {"ranking_key": "tia", "gen_key": text_hash(t), "rank": r, "position": p}
        for t, r, p in (("Azul.", 1, 2), ("Rojo.", 2, 1), ("Verde 🌿", 2, 0))
    ]
    ui_server.store.write_batch("ui-review-numbering", batch, created_by="test")
    return ui_server.store.scalar(
        "SELECT p.id FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE d.name = 'ui-review-numbering'"
    )


def test_review_queue_opens_a_flagged_prompt_with_each_annotators_own_numbering(ui_server):
    prompt_id = _seed_review_dataset(ui_server)
    with ui_server.api("rev") as c:
        queue = c.get("/api/review/flagged", params={"dataset": "ui-review-numbering"}).json()
    assert [(q["annotator"], q["status"], q["reason"], q["prompt_id"]) for q in queue] == [
        ("uma", "flagged", "dañino ⚠", prompt_id)
    ]
    with ui_server.api("ann") as c:
        assert c.get("/api/review/flagged").status_code == 403

    at = login("rev")
    at.switch_page("views/review.py").run()
    at.selectbox(key="review_dataset").set_value("ui-review-numbering").run()
    assert not at.exception, at.exception
    assert "flagged by **uma**: dañino ⚠" in texts(at)
    at.button(key=f"review_open_{queue[0]['ranking_id']}").click().run()
    assert not at.exception, at.exception
    assert at.number_input(key="review_prompt_id").value == prompt_id
    page = texts(at)
    # Review numbers the answers by id; tia saw Verde first, Rojo second, Azul third
    with ui_server.api("rev") as c:
        on_review = [a["text"] for a in c.get(f"/api/prompts/{prompt_id}/rankings").json()["answers"]]
    seen = " · ".join(f"{n}=Answer {on_review.index(t) + 1}" for n, t in enumerate(["Verde 🌿", "Rojo.", "Azul."], 1))
    assert f"**tia (import)** saw: {seen}" in page, page
    assert "**tia (import)** commented: 2 and 3 tie" in page
    grid = next(t.value for t in at.table if "tia (import)" in map(str, t.value.columns))
    their = {"Verde 🌿": "(their #1)", "Rojo.": "(their #2)", "Azul.": "(their #3)"}
    ranks = {"Azul.": 1, "Rojo.": 2, "Verde 🌿": 2}
    assert list(grid["tia (import)"]) == [f"{ranks[t]} {their[t]}" for t in on_review]


def test_rankings_per_day_draws_bars_with_a_single_day():
    def page():
        from annotate.stats_view import charts

        charts({"per_day": [{"day": "2025-03-01", "rankings": 7}], "per_annotator": [], "agreement_distribution": []})

    at = AppTest.from_function(page).run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in [*at.get("vega_lite_chart"), *at.get("arrow_vega_lite_chart")]]
    assert specs, "no chart drawn"
    marks = [s.get("mark") for s in specs]
    assert all((m.get("type") if isinstance(m, dict) else m) == "bar" for m in marks), marks


def test_sampling_form_offers_only_the_picked_engines_models(ui_server):
    from serving.engines.registry import remove_engine, save_engine

    # external endpoints nobody listens on: the form falls back to the models recorded for each
    save_engine({"name": "ext-a", "backend": "external", "url": "http://127.0.0.1:9/v1", "models": ["a-chat"]})
    save_engine({"name": "ext-b", "backend": "external", "url": "http://127.0.0.1:9/v1", "models": ["b-1", "b-2"]})
    try:
        with ui_server.api("adm") as c:
            assert c.get("/api/engines/ext-b/models").json() == {
                "engine": "ext-b",
                "models": ["b-1", "b-2"],
                "live": False,
            }
            assert c.get("/api/engines/nope/models").json()["error"]["field"] == "engine"
        at = login("adm")
        at.switch_page("views/admin.py").run()
        at.selectbox(key="sample_engine").set_value("ext-a").run()
        assert at.selectbox(key="sample_model").options == ["a-chat"]
        at.selectbox(key="sample_engine").set_value("ext-b").run()
        assert not at.exception, at.exception
        assert at.selectbox(key="sample_model").options == ["b-1", "b-2"]
        assert at.selectbox(key="sample_model").value == "b-1"
    finally:
        remove_engine("ext-a")
        remove_engine("ext-b")


def test_engines_tab_offers_registered_adapters_to_serve(ui_server):
    from db import models_registry

    models_registry.register_model(
        ui_server.store, name="dpo-ui-tab", kind="adapter", path="/nonexistent/adapter", base="models/tiny",
        stage="dpo", created_by="test",
    )  # fmt: skip
    at = login("adm")
    at.switch_page("views/admin.py").run()
    assert "dpo-ui-tab (dpo)" in at.selectbox(key="admin_serve_adapter").options
    at.selectbox(key="admin_serve_adapter").set_value("dpo-ui-tab").run()
    at.button(key="admin_serve_submit").click().run()
    # the folder is gone: one clear refusal from the server, no engine started
    assert any("not a PEFT adapter folder" in e.value for e in at.error), [e.value for e in at.error]


# ---- sign-in cookie, remote images, headings, notices, my rankings --------------------------------------------


def _cookie_scripts(at: AppTest) -> list[str]:
    return [h.value for h in at.html if "preflab_session=" in h.value]


def test_a_reload_signs_in_again_from_the_cookie_and_logout_clears_it(ui_server, monkeypatch):
    at = login("ann")
    [script] = _cookie_scripts(at)  # the login writes the token to a cookie, expiring with it
    token = at.session_state["auth"]["token"]
    assert token in script and "SameSite=Strict" in script and "Max-Age=0" not in script
    assert "Max-Age=" in script and "location.protocol==='https:'?'; Secure'" in script

    # a reload is a new session whose only memory is the cookie the browser sends
    monkeypatch.setattr("annotate.app.read_cookie", lambda: token)
    again = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not again.exception, again.exception
    assert again.session_state["auth"]["user"]["name"] == "ann"
    assert [t.value for t in again.title] == ["Rank answers"]

    again.button(key="logout").click().run()
    assert "auth" not in again.session_state
    assert any("Max-Age=0" in s for s in _cookie_scripts(again))  # the cookie is cleared
    assert httpx.get(f"{ui_server.url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again.run()  # the session still carries the old cookie: it is not used again
    assert "auth" not in again.session_state

    # a cookie whose token the server refuses shows the login page and is cleared
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "auth" not in fresh.session_state and "login_name" in {t.key for t in fresh.text_input}
    assert any("Max-Age=0" in s for s in _cookie_scripts(fresh))


def test_markdown_images_from_outside_are_links_and_never_loaded():
    from markdown_it import MarkdownIt

    from annotate.render import safe_markdown

    md = MarkdownIt("commonmark")
    texts_in = [
        "Mira: ![gato](https://tracker.example/p.gif?u=ann) 🐱",
        "![](https://tracker.example/empty.png)",
        "![ref][r]\n\n[r]: https://tracker.example/ref.png",
        "![a [nested] alt](https://tracker.example/n.png)",
        "\\\\![escaped backslash](https://tracker.example/b.png)",
        "[![badge](https://tracker.example/badge.svg)](https://example.org)",
    ]
    for text in texts_in:
        html = md.render(safe_markdown(text))
        assert "<img" not in html, (text, html)
    assert md.render(safe_markdown(texts_in[0])).count('<a href="https://tracker.example/p.gif?u=ann">🖼 gato</a>') == 1
    assert "```\n![keep](x.png)\n```" in safe_markdown("```\n![keep](x.png)\n```")  # code shows as written


def test_rank_page_headings_have_no_anchor_links_and_the_saved_notice_is_no_toast(ui_server):
    who = _own_dataset(ui_server, "kai", "ui-keys")
    at = login("kai", who["password"])
    at.selectbox(key="rank_dataset").set_value("ui-keys").run()
    headings = list(at.title) + list(at.header) + list(at.subheader)
    assert headings and all(h.proto.hide_anchor for h in headings), [(h.value, h.proto.hide_anchor) for h in headings]
    assert not [m.value for m in at.markdown if m.value.lstrip().startswith("#")]  # markdown headings get anchors
    item = at.session_state["rank_queue"]["item"]
    aid = item["assignment_id"]
    for pos in range(len(item["answers"])):
        at.segmented_control(key=f"rank_{aid}_{pos}").set_value(pos + 1)
    at.button(key="rank_submit").click().run()
    assert not at.exception, at.exception
    assert not at.toast, [t.value for t in at.toast]  # a toast would cover the progress counters
    assert any("Ranking saved" in m.value for m in at.markdown), texts(at)
    assert all(h.proto.hide_anchor for h in at.subheader)  # "All done for now" too


def _own_dataset(ui_server, user: str, dataset: str, *, k: int = 3) -> dict:
    """A user of our own with a dataset of our own (one prompt, three answers, k annotators), so a test does not
    depend on what earlier tests ranked: {"password", "head"} (the user's API headers)."""
    from argon2 import PasswordHasher

    from db import queue
    from db.hashing import prompt_hash, text_hash
    from db.staging import Batch

    store, password = ui_server.store, f"{user}-secret-1"
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users.add_user(store, user, role="annotator", password_hash=hasher.hash(password), created_by="test")
    messages = [{"role": "user", "content": "¿Qué hora es en Tokio? 東京 🕰️"}]
    key = prompt_hash(messages)
    batch = Batch(prompts=[{"key": key, "messages": json.dumps(messages, ensure_ascii=False)}])
    batch.generations = [{"prompt_key": key, "gen_key": text_hash(t), "text": t} for t in ("Las 9.", "No sé.", "9 AM")]
    store.write_batch(dataset, batch, created_by="test")
    queue.update_dataset(store, dataset, k=k)
    token = httpx.post(f"{ui_server.url}/api/auth/login", json={"name": user, "password": password}, timeout=30)
    return {"password": password, "head": {"Authorization": f"Bearer {token.json()['token']}"}}


def _history_fixture(ui_server) -> tuple[int, list[int]]:
    """User hana and one open prompt (k = 3) she ranked 1, 2, 3 in the order shown: (ranking id, that order)."""
    who = _own_dataset(ui_server, "hana", "ui-history")
    with httpx.Client(base_url=ui_server.url, timeout=30, headers=who["head"]) as api:
        item = api.get("/api/queue/next", params={"dataset": "ui-history"}).json()["item"]
        order = [a["id"] for a in item["answers"]]
        body = {"assignment_id": item["assignment_id"], "ranks": {str(g): i + 1 for i, g in enumerate(order)}}
        r = api.post("/api/rankings", json=body)
        assert r.status_code == 201, r.text
    return r.json()["ranking_id"], order


def test_my_rankings_lists_mine_and_changes_one_while_its_prompt_is_open(ui_server):
    rid, order = _history_fixture(ui_server)
    at = login("hana", "hana-secret-1")
    at.switch_page("views/history.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["My rankings"]
    assert "¿Qué hora es en Tokio? 東京 🕰️" in texts(at)
    at.button(key=f"history_open_{rid}").click().run()
    assert not at.exception, at.exception
    # the answers come in hana's own order, with her ranks in the pickers
    assert [at.segmented_control(key=f"history_{rid}_{pos}").value for pos in range(3)] == [1, 2, 3]
    at.segmented_control(key=f"history_{rid}_2").set_value(1).run()  # Answer 3 ties for best
    at.text_input(key=f"history_{rid}_comment").input("3 también vale 👍")
    at.button(key="history_save").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any(f"Ranking {rid} changed" in s.value for s in at.success)
    rows = ui_server.store.query("SELECT generation_id, rank FROM ranking_items WHERE ranking_id = ?", [rid])
    stored = {row["generation_id"]: row["rank"] for row in rows}
    assert stored == {order[0]: 1, order[1]: 2, order[2]: 1}
    assert ui_server.store.scalar("SELECT comment FROM rankings WHERE id = ?", [rid]) == "3 también vale 👍"
    pairs = ui_server.store.query("SELECT chosen_id, rejected_id, is_tie FROM pairs WHERE ranking_id = ?", [rid])
    assert len(pairs) == 3 and sum(p["is_tie"] for p in pairs) == 1
