"""The data API end to end with FastAPI's TestClient: the queue, submitting, review, datasets, bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from tests.support.data import add_user, rank_all, seed, signed_in

XSS = ["<script>alert('x')</script>", "<img src=x onerror=alert(1)>", "**bold** and `code`", "普通话 🙂 ¿sí?"]


@pytest.fixture
def env(store):
    prompts = seed(store, prompts=4, answers=4, k=2, texts=XSS)
    for name, role in (("ann", "annotator"), ("bob", "annotator"), ("rev", "reviewer"), ("adm", "admin")):
        add_user(store, name, role)
    with TestClient(create_app(store)) as c:
        heads = {n: signed_in(c, n) for n in ("ann", "bob", "rev", "adm")}
        yield c, store, prompts, heads


def test_next_item_shape_without_model_names_and_html_unchanged(env):
    c, store, prompts, h = env
    r = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"])
    assert r.status_code == 200, r.text
    body = r.json()
    item = body["item"]
    assert set(item) >= {"assignment_id", "dataset", "prompt", "answers", "guidelines", "guideline_version"}
    assert item["prompt"]["id"] == prompts[0] and item["prompt"]["messages"][0]["content"].endswith("東京 🗼")
    assert sorted(a["text"] for a in item["answers"]) == sorted(XSS)  # raw HTML comes back as data, untouched
    assert all(set(a) == {"id", "text"} for a in item["answers"])
    assert "secret-model" not in r.text
    stored = json.loads(store.scalar("SELECT answer_order FROM assignments WHERE id = ?", [item["assignment_id"]]))
    assert [a["id"] for a in item["answers"]] == stored
    assert body["progress"] == {"done_today": 0, "remaining": 4}
    again = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    assert again == item  # same lease, same order


def test_submit_stores_ranking_and_returns_next_item(env):
    c, store, prompts, h = env
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    r = c.post(
        "/api/rankings",
        headers=h["ann"],
        json={
            "assignment_id": item["assignment_id"],
            "status": "submitted",
            "ranks": rank_all(item, first_tie=True),
            "comment": "两个都好 👍",
            "time_on_task_ms": 4200,
        },
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["next"]["item"]["prompt"]["id"] == prompts[1]
    assert out["next"]["progress"] == {"done_today": 1, "remaining": 3}
    row = store.query(
        "SELECT status, comment, time_on_task_ms, guideline_version, source FROM rankings WHERE id = ?",
        [out["ranking_id"]],
    )[0]
    assert row == {
        "status": "submitted",
        "comment": "两个都好 👍",
        "time_on_task_ms": 4200,
        "guideline_version": 1,
        "source": "human",
    }
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [out["ranking_id"]]) == 6
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ? AND is_tie", [out["ranking_id"]]) == 1
    dup = c.post(
        "/api/rankings", headers=h["ann"], json={"assignment_id": item["assignment_id"], "ranks": rank_all(item)}
    )
    assert dup.status_code == 409 and dup.json()["error"]["message"]


def test_skip_and_flag_need_reasons(env):
    c, store, prompts, h = env
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    r = c.post("/api/rankings", headers=h["ann"], json={"assignment_id": item["assignment_id"], "status": "skipped"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "skip_reason"
    r = c.post(
        "/api/rankings",
        headers=h["ann"],
        json={"assignment_id": item["assignment_id"], "status": "flagged", "flag_reason": "harmful advice"},
    )
    assert r.status_code == 201
    assert store.scalar("SELECT flag_reason FROM rankings WHERE id = ?", [r.json()["ranking_id"]]) == "harmful advice"


BAD_RANKINGS = [
    ('{"assignment_id": 1, "ranks": {', 400, "body"),  # malformed JSON
    ({"assignment_id": "one"}, 422, "assignment_id"),  # wrong type
    ({"assignment_id": 1, "ranks": {"5": "first"}}, 422, "ranks.5"),
    ({"assignment_id": 1, "status": "maybe"}, 422, "status"),
    ({"assignment_id": 999999}, 404, "assignment_id"),  # unknown assignment
    ({"assignment_id": 1, "comment": "x" * 10_001}, 422, "comment"),  # huge comment
    ({"assignment_id": 1, "time_on_task_ms": -5}, 422, "time_on_task_ms"),
    ([1, 2, 3], 422, None),
]
BAD_QUERIES = [
    "/api/stats?source=weird",
    "/api/export?format=nope",
    "/api/export?format=trl&split=x",
    "/api/export?format=trl&dataset=ghost",
    "/api/prompts/abc/rankings",
    "/api/sampling-jobs/999",
    "/api/stats/activity?dataset=ghost",
]


def test_bad_requests_get_4xx_json_and_change_nothing(env):
    c, store, prompts, h = env
    c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"])  # assignment 1 exists
    before = store.counts()
    for payload, status, field in BAD_RANKINGS:
        if isinstance(payload, str):
            r = c.post("/api/rankings", headers={**h["ann"], "Content-Type": "application/json"}, content=payload)
        else:
            r = c.post("/api/rankings", headers=h["ann"], json=payload)
        assert r.status_code == status, (payload, r.text)
        err = r.json()["error"]
        assert err["message"] and (field is None or err["field"] == field), (payload, err)
    for path in BAD_QUERIES:
        r = c.get(path, headers=h["adm"])
        assert 400 <= r.status_code < 500, (path, r.text)
        assert r.json()["error"]["message"]
    assert store.counts() == before


def test_bad_uploads_get_400_naming_the_file(env):
    c, store, prompts, h = env
    before = store.counts()
    r = c.post(
        "/api/import", headers=h["adm"], data={"dataset": "z"}, files={"file": ("mine.jsonl", b"\xff\xfe not utf-8")}
    )
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("mine.jsonl:1:")
    r = c.post("/api/import", headers=h["adm"], data={"dataset": "z"}, files={"file": ("empty.jsonl", b"")})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    assert c.post("/api/import", headers=h["adm"], data={"dataset": "z"}).json()["error"]["field"] == "file"
    assert store.counts() == before


def test_cannot_submit_someone_elses_assignment(env):
    c, store, prompts, h = env
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    r = c.post(
        "/api/rankings", headers=h["bob"], json={"assignment_id": item["assignment_id"], "ranks": rank_all(item)}
    )
    assert r.status_code == 404


def test_unknown_dataset_and_empty_queue(env):
    c, store, prompts, h = env
    r = c.get("/api/queue/next", params={"dataset": "nope"}, headers=h["ann"])
    assert r.status_code == 404 and r.json()["error"]["field"] == "dataset"
    assert c.get("/api/queue/next", headers=h["ann"]).status_code == 422  # dataset is required
    store.ensure_dataset("empty", created_by="test")
    body = c.get("/api/queue/next", params={"dataset": "empty"}, headers=h["ann"]).json()
    assert body["item"] is None and body["progress"]["remaining"] == 0


def test_datasets_settings_and_guideline_version_on_rankings(env):
    c, store, prompts, h = env
    r = c.post(
        "/api/datasets",
        headers=h["adm"],
        json={"name": "new", "annotators_per_prompt": 3, "guidelines": "# Prefer honest answers"},
    )
    assert r.status_code == 201 and r.json()["annotators_per_prompt"] == 3 and r.json()["guideline_version"] == 1
    assert c.post("/api/datasets", headers=h["adm"], json={"name": "new"}).status_code == 409
    r = c.patch("/api/datasets/d", headers=h["adm"], json={"guidelines": "## v2: 中文 too"})
    assert r.json()["guideline_version"] == 2
    assert c.patch("/api/datasets/d", headers=h["adm"], json={"annotators_per_prompt": 0}).status_code == 422
    assert c.patch("/api/datasets/ghost", headers=h["adm"], json={"guidelines": "x"}).status_code == 404
    ds = {d["name"]: d for d in c.get("/api/datasets", headers=h["ann"]).json()}
    assert ds["d"]["guideline_version"] == 2
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    assert item["guidelines"] == "## v2: 中文 too" and item["guideline_version"] == 2
    rid = c.post(
        "/api/rankings", headers=h["ann"], json={"assignment_id": item["assignment_id"], "ranks": rank_all(item)}
    ).json()["ranking_id"]
    assert store.scalar("SELECT guideline_version FROM rankings WHERE id = ?", [rid]) == 2


def test_review_side_by_side_disagreement_and_adjudication(env):
    c, store, prompts, h = env
    for name, reverse in (("ann", False), ("bob", True)):
        item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h[name]).json()["item"]
        assert item["prompt"]["id"] == prompts[0]
        by_text = sorted(item["answers"], key=lambda a: a["text"], reverse=reverse)
        ranks = {str(a["id"]): i + 1 for i, a in enumerate(by_text)}
        assert (
            c.post(
                "/api/rankings", headers=h[name], json={"assignment_id": item["assignment_id"], "ranks": ranks}
            ).status_code
            == 201
        )
    side = c.get(f"/api/prompts/{prompts[0]}/rankings", headers=h["rev"]).json()
    assert [r["annotator"] for r in side["rankings"]] == ["ann", "bob"]
    assert side["kendall_w"] == pytest.approx(0.0)
    dis = c.get("/api/review/disagreements", params={"dataset": "d"}, headers=h["rev"]).json()
    assert dis[0]["prompt_id"] == prompts[0] and dis[0]["rankings"] == 2 and not dis[0]["adjudicated"]
    final = {str(a["id"]): 1 if i < 2 else 2 for i, a in enumerate(side["answers"])}
    r = c.post(
        "/api/adjudications",
        headers=h["rev"],
        json={"prompt_id": prompts[0], "ranks": final, "comment": "the first two are equally good"},
    )
    assert r.status_code == 201, r.text
    again = c.post("/api/adjudications", headers=h["rev"], json={"prompt_id": prompts[0], "ranks": final})
    assert again.json()["ranking_id"] == r.json()["ranking_id"]  # replaced, not duplicated
    row = store.query("SELECT source, created_by FROM rankings WHERE id = ?", [r.json()["ranking_id"]])[0]
    assert row == {"source": "adjudication", "created_by": "rev"}
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [r.json()["ranking_id"]]) == 6
    # an answer added to the prompt later is ranked too when the prompt is adjudicated again
    seed(store, "d", prompts=1, answers=1, k=2, texts=["una respuesta nueva 🆕"])
    answers = c.get(f"/api/prompts/{prompts[0]}/rankings", headers=h["rev"]).json()["answers"]
    assert len(answers) == 5
    final5 = {str(a["id"]): i + 1 for i, a in enumerate(answers)}
    third = c.post("/api/adjudications", headers=h["rev"], json={"prompt_id": prompts[0], "ranks": final5})
    assert third.status_code == 201 and third.json()["ranking_id"] == r.json()["ranking_id"], third.text
    assert store.scalar("SELECT count(*) FROM ranking_items WHERE ranking_id = ?", [r.json()["ranking_id"]]) == 5
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [r.json()["ranking_id"]]) == 10
    bad = c.post("/api/adjudications", headers=h["rev"], json={"prompt_id": prompts[0], "ranks": {"1": 1}})
    assert bad.status_code == 400 and bad.json()["error"]["field"].startswith("ranks.")
    assert c.post("/api/adjudications", headers=h["rev"], json={"prompt_id": 424242, "ranks": {}}).status_code == 404
    # a prompt with fewer than two answers has nothing to order: a 4xx naming it, not a database error (fuzzing)
    lone = seed(store, "lone", prompts=1, answers=0) + seed(store, "one", prompts=1, answers=1)
    before = store.scalar("SELECT count(*) FROM rankings")
    for pid in lone:
        r = c.post("/api/adjudications", headers=h["rev"], json={"prompt_id": pid, "ranks": {}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "prompt_id", r.text
        assert "at least two" in r.json()["error"]["message"]
    assert store.scalar("SELECT count(*) FROM rankings") == before
    act = c.get("/api/stats/activity", params={"dataset": "d"}, headers=h["rev"]).json()
    assert sum(d["rankings"] for d in act["per_day"]) == 2
    assert {a["annotator"] for a in act["per_annotator"]} == {"ann", "bob"}
    assert sum(b["prompts"] for b in act["agreement_distribution"]) == 1
    stats = c.get("/api/stats", params={"dataset": "d"}, headers=h["rev"]).json()
    assert stats["counts"]["prompts"] == 4


def test_models_engines_and_docs(env):
    c, store, prompts, h = env
    assert c.get("/api/models", headers=h["ann"]).json() == []
    assert isinstance(c.get("/api/engines", headers=h["adm"]).json(), list)
    assert "/api/queue/next" in c.get("/openapi.json").json()["paths"]
    t0 = time.perf_counter()
    r = c.get("/api/health")
    wall_ms = (time.perf_counter() - t0) * 1000
    # the server's own time for the request: more than nothing, less than the client waited, and in Server-Timing
    assert r.json()["ok"] is True and 0 < float(r.headers["X-Process-Time"]) < wall_ms
    assert r.headers["Server-Timing"] == f"app;dur={r.headers['X-Process-Time']}"


def test_formats_list_what_import_and_export_accept_for_admins_only(env, tmp_path):
    c, store, prompts, h = env
    assert c.get("/api/formats", headers=h["ann"]).status_code == 403
    formats = c.get("/api/formats", headers=h["adm"]).json()
    assert formats["import"][0] == "auto" and {"oasst", "ranked", "preference"} <= set(formats["import"])
    by_name = {f["name"]: f for f in formats["export"]}
    assert by_name["parquet"]["suffix"] == "parquet" and by_name["trl"]["description"]
    # every listed export format is one the export route takes
    for name in by_name:
        r = c.get(f"/api/export?format={name}", headers=h["adm"])
        assert r.status_code == 200, (name, r.text)
    assert c.get("/api/export?format=csv-ish", headers=h["adm"]).status_code == 400


def test_prompt_image_is_served_by_index(env):
    from db import media

    c, store, prompts, h = env
    image = Path(__file__).resolve().parents[1] / "data" / "images" / "red.png"
    kept, _ = media.keep(image, media.media_dir(store))
    store.con.execute("UPDATE prompts SET assets = ? WHERE id = ?", [json.dumps([str(kept)]), prompts[0]])
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    assert item["prompt"]["id"] == prompts[0]
    # the annotator learns where to fetch the image, not where the server keeps it
    assert item["prompt"]["assets"] == [{"url": f"/api/prompts/{prompts[0]}/assets/0", "name": "image 1"}]
    assert str(kept.parent) not in json.dumps(item)
    r = c.get(f"/api/prompts/{prompts[0]}/assets/0", headers=h["ann"])
    assert r.status_code == 200 and r.content == image.read_bytes()
    assert r.headers["content-type"] == "image/png" and r.headers["x-content-type-options"] == "nosniff"
    assert c.get(f"/api/prompts/{prompts[0]}/assets/1", headers=h["ann"]).status_code == 404
    assert c.get(f"/api/prompts/{prompts[0]}/assets/0").status_code == 401


def test_prompt_assets_never_serve_a_file_outside_the_media_folder(env, tmp_path):
    """An asset path stored by an older import, a link out of the media folder, a non-image: all refused."""
    from db import media

    c, store, prompts, h = env
    root = media.media_dir(store)
    root.mkdir(parents=True, exist_ok=True)
    (root / "escape.png").symlink_to("/etc/passwd")
    (root / "notes.png").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    stored = ["/etc/passwd", str(root / ".." / "test.duckdb"), str(root / "escape.png"), str(root / "notes.png")]
    store.con.execute("UPDATE prompts SET assets = ? WHERE id = ?", [json.dumps(stored), prompts[0]])
    for who in ("adm", "rev"):
        for index in range(len(stored)):
            r = c.get(f"/api/prompts/{prompts[0]}/assets/{index}", headers=h[who])
            assert r.status_code == 404, (who, index, r.text)
            assert "root:" not in r.text and r.json()["error"]["field"] == "index"


def test_an_annotator_fetches_images_only_of_prompts_handed_to_them(env):
    from db import media

    c, store, prompts, h = env
    kept, _ = media.keep(Path(__file__).resolve().parents[1] / "data" / "images" / "blue.png", media.media_dir(store))
    store.con.execute("UPDATE prompts SET assets = ?", [json.dumps([str(kept)])])
    mine = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]["prompt"]["id"]
    # the queue also leases one ahead for her (store.query waits for the queue's writer to do so)
    sql = "SELECT a.prompt_id FROM assignments a JOIN users u ON u.id = a.user_id WHERE u.name = 'ann'"
    other = next(p for p in prompts if p not in {r["prompt_id"] for r in store.query(sql)})
    assert c.get(f"/api/prompts/{mine}/assets/0", headers=h["ann"]).status_code == 200
    r = c.get(f"/api/prompts/{other}/assets/0", headers=h["ann"])
    assert r.status_code == 404 and r.json()["error"]["field"] == "prompt_id"
    assert c.get(f"/api/prompts/{other}/assets/0", headers=h["rev"]).status_code == 200


def test_sampling_job_records_failure_and_refuses_bad_requests(env, tmp_path, monkeypatch):
    c, store, prompts, h = env
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path))  # an empty engine registry
    assert c.post("/api/sampling-jobs", headers=h["adm"], json={"dataset": "nope", "model": "m"}).status_code == 404
    r = c.post("/api/sampling-jobs", headers=h["adm"], json={"dataset": "d", "model": "m", "n": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "n"
    before = store.scalar("SELECT count(*) FROM sampling_jobs")
    for body, field in (({"model": "no-such-model"}, "model"), ({"model": "m", "engine": "no-such-engine"}, "engine")):
        r = c.post("/api/sampling-jobs", headers=h["adm"], json={"dataset": "d", **body})
        assert r.status_code == 404 and r.json()["error"]["field"] == field, r.text
        assert body[field] in r.json()["error"]["message"]
    # a named local engine must be running and serve the model
    from serving.engines.registry import save_engine

    local = {"backend": "transformers", "url": "http://127.0.0.1:9/v1", "model": "tiny", "loras": {"tiny-lora": "x"}}
    save_engine({"name": "down", "pid": None, **local})
    save_engine({"name": "up", "pid": os.getpid(), **local})
    for body, code, field, words in (
        ({"model": "tiny", "engine": "down"}, 409, "engine", "not running"),
        ({"model": "other", "engine": "up"}, 404, "model", "serves: tiny, tiny-lora"),
    ):
        r = c.post("/api/sampling-jobs", headers=h["adm"], json={"dataset": "d", **body})
        assert r.status_code == code and r.json()["error"]["field"] == field, r.text
        assert words in r.json()["error"]["message"], r.text
    assert store.scalar("SELECT count(*) FROM sampling_jobs") == before  # refused before a job row exists
    # a served model whose endpoint does not answer: the job starts, fails, and says why
    save_engine({"name": "ext", "backend": "external", "url": "http://127.0.0.1:9/v1", "models": ["no-answer"]})
    job = c.post(
        "/api/sampling-jobs", headers=h["adm"], json={"dataset": "d", "model": "no-answer", "engine": "ext"}
    ).json()
    deadline = time.monotonic() + 60  # the sampler retries each prompt with backoff (about 8 s in all)
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = c.get(f"/api/sampling-jobs/{job['id']}", headers=h["adm"]).json()
    assert job["status"] == "failed" and "every prompt sampled failed (4)" in job["error"], job
    assert job["failures"] == 4 and job["answers_stored"] == 0
    assert [j["id"] for j in c.get("/api/sampling-jobs", headers=h["adm"]).json()] == [job["id"]]
    assert c.post(f"/api/sampling-jobs/{job['id']}/cancel", headers=h["adm"]).status_code == 409


def test_releasing_someone_elses_assignment_is_refused_with_a_json_error(env):
    c, store, prompts, h = env
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    r = c.post(f"/api/assignments/{item['assignment_id']}/release", headers=h["bob"])
    assert r.status_code == 404 and r.json()["error"]["field"] == "assignment_id", r.text
    assert store.scalar("SELECT status FROM assignments WHERE id = ?", [item["assignment_id"]]) == "leased"
    r = c.post(f"/api/assignments/{item['assignment_id']}/release", headers=h["ann"])
    assert r.status_code == 200 and r.json() == {"ok": True, "released": True}, r.text
    assert store.scalar("SELECT status FROM assignments WHERE id = ?", [item["assignment_id"]]) == "released"


def test_my_rankings_are_paged_and_can_be_changed_only_by_me_while_open(env):
    c, store, prompts, h = env  # k = 2
    ids = []
    for _ in range(3):
        item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
        r = c.post(
            "/api/rankings", headers=h["ann"], json={"assignment_id": item["assignment_id"], "ranks": rank_all(item)}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["ranking_id"])
    page = c.get("/api/rankings/mine", params={"limit": 2}, headers=h["ann"]).json()
    assert [row["id"] for row in page] == ids[::-1][:2]  # newest first
    assert page[0]["snippet"].endswith("東京 🗼") and page[0]["editable"] and page[0]["created_at"]
    older = c.get("/api/rankings/mine", params={"limit": 2, "offset": 2}, headers=h["ann"]).json()
    assert [row["id"] for row in older] == [ids[0]]
    assert c.get("/api/rankings/mine", headers=h["bob"]).json() == []

    rid = ids[0]
    one = c.get(f"/api/rankings/{rid}", headers=h["ann"]).json()
    assert "secret-model" not in json.dumps(one) and len(one["answers"]) == 4
    order = [a["id"] for a in one["answers"]]
    new_ranks = {str(g): 1 for g in order}  # all tied now
    assert c.get(f"/api/rankings/{rid}", headers=h["bob"]).status_code == 403
    r = c.put(f"/api/rankings/{rid}", headers=h["bob"], json={"ranks": new_ranks})
    assert r.status_code == 403 and r.json()["error"]["field"] == "ranking_id", r.text
    assert c.put("/api/rankings/999999", headers=h["ann"], json={"ranks": new_ranks}).status_code == 404
    r = c.put(f"/api/rankings/{rid}", headers=h["ann"], json={"ranks": {str(order[0]): 1}})
    assert r.status_code == 400 and r.json()["error"]["field"].startswith("ranks."), r.text
    r = c.put(f"/api/rankings/{rid}", headers=h["ann"], json={"ranks": new_ranks, "comment": "todos iguales 🤝"})
    assert r.status_code == 200, r.text
    assert r.json()["ranks"] == {str(g): 1 for g in order} and r.json()["comment"] == "todos iguales 🤝"
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ? AND is_tie", [rid]) == 6

    # bob ranks the same prompt: k = 2 reached, the prompt is closed and ann's ranking is final
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["bob"]).json()["item"]
    assert item["prompt"]["id"] == one["prompt_id"]
    c.post("/api/rankings", headers=h["bob"], json={"assignment_id": item["assignment_id"], "ranks": rank_all(item)})
    r = c.put(f"/api/rankings/{rid}", headers=h["ann"], json={"ranks": {str(g): i + 1 for i, g in enumerate(order)}})
    assert r.status_code == 409 and "closed" in r.json()["error"]["message"], r.text
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ? AND is_tie", [rid]) == 6
    assert c.get(f"/api/rankings/{rid}", headers=h["ann"]).json()["editable"] is False
