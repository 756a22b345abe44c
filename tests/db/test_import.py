"""Import: every format, multilingual text intact, atomic on bad files, idempotent, CLI behaviour."""

from __future__ import annotations

import gzip
import json
import shutil
from itertools import combinations
from pathlib import Path

import pytest

from db.errors import InputError
from db.importers import MAX_FIELD_BYTES, import_file

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = DATA / "bad"
OASST_SAMPLE = Path(__file__).resolve().parents[2] / "serving" / "data" / "oasst2_sample.jsonl"


def texts(store, sql):
    return {r[0] for r in store.con.execute(sql).fetchall()}


def prompt_contents(store):
    return {
        m["content"]
        for (raw,) in store.con.execute("SELECT messages FROM prompts").fetchall()
        for m in json.loads(raw)
    }


def pair_texts(store):
    return sorted(
        store.con.execute(
            "SELECT c.text, r.text, margin, is_tie FROM pairs JOIN generations c ON c.id = chosen_id "
            "JOIN generations r ON r.id = rejected_id"
        ).fetchall()
    )


# ---- every format, read back from the database -------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt, counts, must_have",
    [
        ("alpaca.jsonl", "alpaca", (3, 3, 0), {"把这句话翻译成英文\n我喜欢喝茶 🍵", "Madrid, por supuesto. ¡Olé! 💃"}),
        (
            "messages.jsonl",
            "messages",
            (3, 2, 0),
            {"你好！👋", "¿Por qué el libro de matemáticas estaba triste? Porque tenía demasiados problemas."},
        ),
        ("sharegpt.jsonl", "sharegpt", (3, 3, 0), {"<image>这张图片是什么颜色？", "红色 🟥", "蓝色 🟦"}),
        ("preference.jsonl", "preference", (3, 6, 3), {"写一首关于月亮的短诗 🌙", "Se dice 谢谢 (xièxie) 🙏"}),
        ("implicit_preference.jsonl", "implicit-preference", (3, 6, 3), {"讲个笑话 😂", "Un color."}),
        ("ranked.jsonl", "ranked", (3, 10, 3), {"¿Cuál es el mejor desayuno? 🥐", "植物吃阳光 ☀️"}),
        ("ranked_array.json", "ranked", (3, 10, 3), {"解释一下光合作用 🌱", "Churros con chocolate ☕"}),
        ("oasst.jsonl", "oasst", (3, 7, 2), {"¿Qué es un 熊猫? 🐼", "Unos 12-38 kg diarios 🍃"}),
        ("prompts.jsonl", "prompts", (3, 0, 0), {"Escribe un haiku sobre el otoño 🍂", "Tell me about cats 🐱"}),
        ("prompts.txt", "prompts", (3, 0, 0), {"¿Qué hora es? ⏰", "今天星期几？"}),
    ],
)
def test_every_format_imports_with_text_intact(run_cli, store, name, fmt, counts, must_have):
    r = run_cli("import", DATA / name, "--dataset", "d")
    assert r.exit_code == 0, r.output
    assert f"detected format: {fmt}" in r.output
    c = store.counts()
    assert (c["prompts"], c["generations"], c["rankings"]) == counts
    stored = prompt_contents(store) | texts(store, "SELECT text FROM generations")
    assert must_have <= stored


def test_classification_csv_and_jsonl(run_cli, store):
    for name in ("classification.csv", "classification.jsonl"):
        r = run_cli("import", DATA / name, "--dataset", "cls")
        assert r.exit_code == 0, r.output
        assert "detected format: classification" in r.output
    rows = dict(store.con.execute("SELECT text, label FROM examples").fetchall())
    assert rows["这部电影太好看了！🎬"] == "positive"
    assert rows["Multi-line, with comma\nand a second line 🤔"] == "neutral"  # a quoted CSV cell over two lines
    assert rows["Score as a number 🔢"] == "3"
    assert len(rows) == 6


def test_sharegpt_images_are_copied_into_the_media_folder(store):
    from db.media import media_dir

    import_file(store, DATA / "sharegpt.jsonl", dataset="vqa")
    assets = [
        json.loads(a) for (a,) in store.con.execute("SELECT assets FROM prompts WHERE assets IS NOT NULL").fetchall()
    ]
    # the same question about two pictures stays two prompts; each image is kept under its content hash
    assert len(assets) == 2 and all(len(a) == 1 for a in assets)
    stored = sorted(Path(a[0]) for a in assets)
    assert all(p.parent == media_dir(store) for p in stored)
    assert sorted(p.read_bytes() for p in stored) == sorted(
        (DATA / "images" / n).read_bytes() for n in ("blue.png", "red.png")
    )


def _sharegpt_file(folder: Path, image: str) -> Path:
    f = folder / "vqa.jsonl"
    row = {"conversations": [{"from": "human", "value": "<image>¿Qué es? 🐱"}, {"from": "gpt", "value": "猫"}]}
    f.write_text(json.dumps({**row, "images": [image]}, ensure_ascii=False) + "\n", encoding="utf-8")
    return f


@pytest.mark.parametrize(
    "image, words",
    [
        ("/etc/passwd", "leads outside the allowed folders"),
        ("../../../../../../etc/passwd", "leads outside the allowed folders"),
        ("escape.png", "leads outside the allowed folders"),  # a symbolic link out of the folder
        ("notes.png", "is not a PNG, JPEG, GIF, WebP or BMP image"),  # named .png, but text
        ("missing.png", "image not found"),
    ],
)
def test_image_paths_must_stay_inside_the_folder_and_be_images(tmp_path, run_cli, store, image, words):
    (tmp_path / "escape.png").symlink_to("/etc/passwd")
    (tmp_path / "notes.png").write_text("root:x:0:0\n", encoding="utf-8")
    f = _sharegpt_file(tmp_path, image)
    before = store.counts()
    r = run_cli("import", f, "--format", "sharegpt", "--dataset", "vqa")
    assert r.exit_code != 0
    assert "vqa.jsonl:1: field 'images[0]'" in r.output and words in r.output, r.output
    assert store.counts() == before


def test_a_configured_media_root_allows_absolute_image_paths(tmp_path, monkeypatch, store):
    from db.media import media_dir

    shared = tmp_path / "shared-images"
    shared.mkdir()
    shutil.copy(DATA / "images" / "red.png", shared / "red.png")
    data = tmp_path / "data"
    data.mkdir()
    f = _sharegpt_file(data, str(shared / "red.png"))
    with pytest.raises(InputError, match="leads outside the allowed folders"):
        import_file(store, f, dataset="vqa")
    monkeypatch.setenv("PREFLAB_MEDIA_ROOT", str(shared))
    assert import_file(store, f, dataset="vqa", dry_run=True).records == 1
    assert not media_dir(store).exists()  # a dry run writes nothing, images included
    assert import_file(store, f, dataset="vqa").added.prompts == 1
    assert [p.read_bytes() for p in media_dir(store).iterdir()] == [(DATA / "images" / "red.png").read_bytes()]


def test_ranked_ties_and_annotators(store):
    import_file(store, DATA / "ranked.jsonl", dataset="r")
    assert ("red", "blue", 0, True) in pair_texts(store) or ("blue", "red", 0, True) in pair_texts(store)
    assert ("Churros con chocolate ☕", "Nada", 3, False) in pair_texts(store)
    users = dict(store.con.execute("SELECT name, kind FROM users").fetchall())
    assert users == {"imported:ranked": "imported", "ana": "imported"}


def test_oasst_ranks_shift_to_one_based_and_unranked_stay_unranked(store):
    import_file(store, DATA / "oasst.jsonl", dataset="o")
    ranks = dict(
        store.con.execute(
            "SELECT g.text, i.rank FROM ranking_items i JOIN generations g ON g.id = i.generation_id"
        ).fetchall()
    )
    assert ranks["Un oso de China que come bambú 🎋"] == 1 and ranks["Un animal."] == 3
    assert "Borrado" not in texts(store, "SELECT text FROM generations")  # deleted replies are dropped
    assert "No." in texts(store, "SELECT text FROM generations") and "No." not in ranks  # unranked stays unranked
    who = store.con.execute(
        "SELECT DISTINCT u.name, u.kind, r.source FROM rankings r JOIN users u ON u.id = r.user_id"
    ).fetchall()
    assert who == [("oasst-consensus", "consensus", "consensus")]
    follow_up = [
        json.loads(m)
        for (m,) in store.con.execute("SELECT messages FROM prompts").fetchall()
        if len(json.loads(m)) == 3
    ]
    assert [m["role"] for m in follow_up[0]] == ["user", "assistant", "user"]  # the whole conversation so far


def test_shipped_oasst_sample_yields_the_pairs_its_ranks_imply(run_cli, store):
    expected: dict[str, int] = {}  # message id -> pairs; the sample repeats some trees, counted once

    def walk(m):
        if m.get("deleted"):
            return
        replies = [r for r in m.get("replies", []) if r["role"] == "assistant" and not r.get("deleted")]
        ranked = {r["text"]: r["rank"] for r in replies if r.get("rank") is not None}
        if len(replies) >= 2 and len(ranked) >= 2:
            expected[m["message_id"]] = sum(1 for a, b in combinations(ranked.values(), 2) if a != b)
        for r in m.get("replies", []):
            walk(r)

    with open(OASST_SAMPLE, encoding="utf-8") as f:
        for line in f:
            walk(json.loads(line)["prompt"])
    r = run_cli("import", OASST_SAMPLE, "--format", "oasst", "--dataset", "oasst")
    assert r.exit_code == 0, r.output
    assert store.scalar("SELECT count(*) FROM pairs WHERE NOT is_tie") == sum(expected.values()) > 400
    assert store.scalar("SELECT count(*) FROM rankings") == len(expected)
    # the best-ranked reply is chosen over every other: check one ranking against the raw ranks
    assert store.scalar("SELECT count(*) FROM pairs WHERE margin < 1") == 0


# ---- idempotency, containers ---------------------------------------------------------------------------


def test_importing_twice_adds_nothing(run_cli, store):
    for name in ("ranked.jsonl", "preference.jsonl", "oasst.jsonl", "alpaca.jsonl", "classification.csv"):
        assert run_cli("import", DATA / name, "--dataset", "d").exit_code == 0
    before = store.counts()
    for name in ("ranked.jsonl", "preference.jsonl", "oasst.jsonl", "alpaca.jsonl", "classification.csv"):
        r = run_cli("import", DATA / name, "--dataset", "d")
        assert r.exit_code == 0, r.output
        assert "added: 0 prompts, 0 generations, 0 rankings, 0 pairs, 0 examples" in r.output
    assert store.counts() == before


def test_gzip_gives_the_same_rows(tmp_path, store):
    gz = tmp_path / "ranked.jsonl.gz"
    with open(DATA / "ranked.jsonl", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    report = import_file(store, gz, dataset="r")
    assert report.format == "ranked" and report.added.pairs == 12
    assert import_file(store, DATA / "ranked.jsonl", dataset="r").added.as_dict() == dict.fromkeys(
        report.added.as_dict(), 0
    )  # same annotator (named after the file's stem): nothing new


def test_duplicate_prompt_without_annotator_is_a_second_ranking(tmp_path, store):
    rows = [
        {"prompt": "¿Sí?", "responses": ["a", "b"], "ranks": [1, 2]},
        {"prompt": "¿Sí?", "responses": ["a", "b"], "ranks": [2, 1]},
    ]
    f = tmp_path / "dup.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert import_file(store, f, dataset="d").added.rankings == 2
    assert texts(store, "SELECT name FROM users") == {"imported:dup", "imported:dup#2"}


# ---- bad files: one clear error, database unchanged ----------------------------------------------------


@pytest.mark.parametrize(
    "name, where, words",
    [
        ("broken_json.jsonl", ":2:", "broken JSON"),
        ("missing_field.jsonl", ":2: field 'ranks'", "missing"),
        ("mistyped_field.jsonl", ":2: field 'responses'", "expected a list"),
        ("latin1.jsonl", ":2:", "not UTF-8"),
        ("missing_image.jsonl", ":2: field 'image'", "image not found"),
        ("unknown_role.jsonl", ":2: field 'messages[1].role'", "unknown role 'bot'"),
        ("ranks_length.jsonl", ":2: field 'ranks'", "2 ranks for 3 responses"),
        ("ranks_not_int.jsonl", ":2: field 'ranks[1]'", "expected an integer"),
        ("ranks_below_one.jsonl", ":2: field 'ranks[0]'", "rank 0 is out of range"),
        ("empty.jsonl", ":", "the file is empty"),
        ("answer_not_text.jsonl", ":2: field 'chosen'", "expected a string or a list with one assistant message"),
    ],
)
def test_bad_file_changes_nothing(run_cli, store, name, where, words):
    assert run_cli("import", DATA / "ranked.jsonl", "--dataset", "d").exit_code == 0
    before = store.counts()
    r = run_cli("import", BAD / name, "--dataset", "d")
    assert r.exit_code != 0
    assert f"{name}{where}" in r.output and words in r.output, r.output
    assert "Traceback" not in r.output
    assert store.counts() == before


def test_huge_field_is_refused_with_the_limit(tmp_path, run_cli, store):
    f = tmp_path / "huge.jsonl"
    f.write_text(
        json.dumps({"prompt": "ok", "responses": ["a", "b"], "ranks": [1, 2]})
        + "\n"
        + json.dumps({"prompt": "x" * (MAX_FIELD_BYTES + 1), "responses": ["a", "b"], "ranks": [1, 2]})
        + "\n",
        encoding="utf-8",
    )
    before = store.counts()
    r = run_cli("import", f)
    assert r.exit_code != 0
    assert "huge.jsonl:2: field 'prompt'" in r.output and f"limit of {MAX_FIELD_BYTES:,} bytes" in r.output
    assert store.counts() == before


def test_array_and_csv_errors_name_the_line(tmp_path, run_cli):
    arr = tmp_path / "a.json"
    arr.write_text(
        '[\n  {"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2]},\n  {"prompt": "q",\n'
        '   "responses": ["a", "b"], "ranks": [1, 7]}\n]\n',
        encoding="utf-8",
    )
    r = run_cli("import", arr)
    assert r.exit_code != 0 and "a.json:3: field 'ranks[1]'" in r.output, r.output
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("text,label\nhola,pos\nadiós,\n", encoding="utf-8")
    r = run_cli("import", csv_file)
    assert r.exit_code != 0 and "c.csv:3: field 'label'" in r.output, r.output


def test_skip_invalid_lists_bad_rows_and_imports_the_rest(tmp_path, run_cli, store):
    f = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"prompt": "uno 🥇", "responses": ["a", "b"], "ranks": [1, 2]}, ensure_ascii=False),
        '{"prompt": broken',
        json.dumps({"prompt": "dos", "responses": ["a", "b"], "ranks": [1]}),
        json.dumps({"prompt": "tres", "responses": ["a", "b"], "ranks": [2, 1]}),
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = run_cli("import", f, "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "mixed.jsonl:2: broken JSON" in r.output
    assert "mixed.jsonl:3: field 'ranks': 1 ranks for 2 responses" in r.output
    assert "skipped 2 invalid records" in r.output
    assert store.counts()["rankings"] == 2
    assert {"uno 🥇", "tres"} == prompt_contents(store)


def test_dry_run_writes_nothing_but_reports(run_cli, store):
    before = store.counts()
    r = run_cli("import", DATA / "ranked.jsonl", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "would add: 3 prompts, 10 generations, 3 rankings, 12 pairs" in r.output
    assert store.counts() == before


def test_explicit_format_that_does_not_fit_names_the_field(run_cli):
    r = run_cli("import", DATA / "preference.jsonl", "--format", "ranked")
    assert r.exit_code != 0 and "preference.jsonl:1: field 'responses': missing" in r.output, r.output


# ---- the DuckDB-native path gives the same rows as the Python path -------------------------------------


def snapshot(store) -> dict[str, list]:
    """Every stored row by content (ids and timestamps differ between runs and are left out)."""
    q = {
        "prompts": "SELECT messages, content_hash, source, external_id, metadata, assets, created_by FROM prompts",
        "generations": "SELECT p.content_hash, g.text, g.content_hash, kind, model, g.metadata, g.created_by "
        "FROM generations g JOIN prompts p ON p.id = prompt_id",
        "users": "SELECT name, role, kind, created_by FROM users",
        "rankings": "SELECT p.content_hash, u.name, status, r.source, all_bad, comment, r.created_by, source_record "
        "FROM rankings r JOIN prompts p ON p.id = prompt_id JOIN users u ON u.id = user_id",
        "items": "SELECT p.content_hash, u.name, g.content_hash, rank, position FROM ranking_items i "
        "JOIN rankings r ON r.id = ranking_id JOIN prompts p ON p.id = r.prompt_id "
        "JOIN users u ON u.id = r.user_id JOIN generations g ON g.id = generation_id",
        # a tie's two sides are ordered by generation id, which differs between runs: compare them unordered
        "pairs": "SELECT p.content_hash, CASE WHEN is_tie THEN least(c.text, x.text) ELSE c.text END, "
        "CASE WHEN is_tie THEN greatest(c.text, x.text) ELSE x.text END, margin, is_tie, pairs.source FROM pairs "
        "JOIN prompts p ON p.id = pairs.prompt_id JOIN generations c ON c.id = chosen_id "
        "JOIN generations x ON x.id = rejected_id",
    }
    return {k: sorted(map(repr, store.con.execute(sql).fetchall())) for k, sql in q.items()}


NONE_SKIPPED = {"added": 0, "already_stored": 0, "merged": 0, "skipped_invalid": 0, "skipped_empty": 0}

TRICKY = [
    'comillas "dobles" y \\ barra',
    "línea\nnueva\ttab \u2028 sep",
    "控制字符\u0001 y 🧪",
    "a/b <html>&amp;",
    "ñandú",
    "🙂🙃",
    "x" * 300,
]


def _write_ranked(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            answers = [f"{TRICKY[(i + j) % len(TRICKY)]} #{i}-{j}" for j in range(4)]
            row = {
                "prompt": f"{TRICKY[i % len(TRICKY)]} ¿pregunta {i}? 问题",
                "responses": answers,
                "ranks": [1, 2, 2, 4] if i % 3 == 0 else [4, 3, 2, 1],
                "extra": {"ignored": True},
            }
            if i % 5 == 0:
                row["annotator"] = f"ana-{i % 2} 🐝"
            # alternate escaping styles: DuckDB and Python must read both the same
            f.write(json.dumps(row, ensure_ascii=i % 2 == 0) + "\n")
            if i % 10 == 0:
                f.write("\n")  # blank lines are skipped by both


@pytest.mark.parametrize("fmt", ["ranked", "preference"])
def test_duckdb_path_equals_python_path(tmp_path, fmt):
    from db.store import Store

    src = tmp_path / f"{fmt}.jsonl"
    if fmt == "ranked":
        _write_ranked(src, 60)
    else:
        with open(src, "w", encoding="utf-8") as f:
            for i, t in enumerate(TRICKY * 3):
                row = {"prompt": f"{t} {i}", "chosen": f"sí {t}", "rejected": f"no {i} 🚫"}
                f.write(json.dumps(row, ensure_ascii=i % 2 == 1) + "\n")
    snaps, engines = [], []
    for engine in ("python", "duckdb"):
        store = Store.open(tmp_path / f"{engine}.duckdb")
        report = import_file(store, src, fmt=fmt, dataset="same", engine=engine)
        engines.append(report.engine)
        again = import_file(store, src, fmt=fmt, dataset="same", engine=engine)
        assert again.added.rankings == 0 and again.already_stored()["pairs"] == report.added.pairs
        snaps.append(snapshot(store))
        store.close()
    assert engines == ["python", "duckdb"]
    assert snaps[0] == snaps[1]
    assert len(snaps[0]["pairs"]) > 0


def test_duckdb_path_hands_bad_files_to_the_python_path(tmp_path, store):
    f = tmp_path / "r.jsonl"
    _write_ranked(f, 20)
    with open(f, "a", encoding="utf-8") as out:
        out.write(json.dumps({"prompt": "mal", "responses": ["a", "b"], "ranks": [1, 3]}) + "\n")
    before = store.counts()
    with pytest.raises(InputError, match=r"r\.jsonl:23: field 'ranks\[1\]': rank 3 is out of range"):
        import_file(store, f, fmt="ranked", engine="duckdb")
    assert store.counts() == before
    report = import_file(store, f, fmt="ranked", engine="duckdb", skip_invalid=True)
    assert report.records == 20 and len(report.skipped) == 1
    assert report.as_dict()["skipped"][0]["line"] == 23 and report.as_dict()["added"]["rankings"] == 20


def test_duckdb_path_commits_big_files_in_chunks(tmp_path, monkeypatch):
    """Over COMMIT_ROWS records the DuckDB path commits in chunks (memory); the rows are those of one
    transaction, including prompts ranked by several annotators in different chunks, and a re-run adds nothing."""
    from db.importers import fastimport
    from db.store import Store

    src = tmp_path / "multi.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for who in ("ana 🐝", "beto", "张伟"):  # the same 10 prompts, in three blocks of 10 records
            for i in range(10):
                answers = [f"respuesta {i}-{j} {TRICKY[j]}" for j in range(3)] + [f"{who} {i}"]
                ranks = [1, 2, 3, 3] if who == "beto" else [4, 3, 2, 1]
                row = {"prompt": f"¿pregunta {i}? 问题 🙂", "responses": answers, "ranks": ranks, "annotator": who}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    commits = []
    real_write = fastimport.write_staged

    def counting_write(*args, **kwargs):
        commits.append(kwargs.get("dry_run"))
        return real_write(*args, **kwargs)

    monkeypatch.setattr(fastimport, "write_staged", counting_write)
    snaps, reports = {}, {}
    for name, engine, chunk in (("python", "python", None), ("one", "duckdb", 1000), ("chunked", "duckdb", 7)):
        monkeypatch.setattr(fastimport, "COMMIT_ROWS", chunk or 1000)
        commits.clear()
        store = Store.open(tmp_path / f"{name}.duckdb")
        if name == "chunked":
            dry = import_file(store, src, fmt="ranked", dataset="d", engine=engine, dry_run=True)
            assert store.counts()["rankings"] == 0 and dry.added == reports["one"].added
        reports[name] = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
        # one transaction per 7 records (30 records: 5), after a dry run that stays one transaction
        assert commits == {"python": [], "one": [False], "chunked": [True, False, False, False, False, False]}[name]
        again = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
        assert again.added.rankings == again.added.generations == again.added.pairs == 0
        # every record accounted for, in chunks as in one transaction: 30 added, then 30 already stored
        assert reports[name].accounting() == {**NONE_SKIPPED, "read": 30, "added": 30}
        assert again.accounting() == {**NONE_SKIPPED, "read": 30, "already_stored": 30}
        snaps[name] = snapshot(store)
        store.close()
    assert reports["chunked"].engine == "duckdb"
    assert reports["chunked"].added == reports["one"].added == reports["python"].added
    assert reports["chunked"].added.prompts == 10 and reports["chunked"].added.rankings == 30
    assert snaps["chunked"] == snaps["one"] == snaps["python"]
