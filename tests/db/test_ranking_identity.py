"""A ranking's identity is its source record: rankings of one prompt by one annotator from different records all
survive, the same record twice is one ranking, and the import accounts for every record it read."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from db import store as store_module
from db.importers import import_file
from db.store import Store

SAMPLE = Path(__file__).resolve().parents[2] / "serving" / "data" / "oasst2_sample.jsonl"


def tree(tree_id: str, root_id: str, question: str, replies: list[tuple[str, str, int]], **extra) -> dict:
    """An oasst tree: a prompter message with assistant replies [(message_id, text, rank)]."""
    return {
        "message_tree_id": tree_id,
        **extra,
        "prompt": {
            "message_id": root_id,
            "role": "prompter",
            "text": question,
            "replies": [{"message_id": m, "role": "assistant", "text": t, "rank": r} for m, t, r in replies],
        },
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def outcome(**counts) -> dict:
    return {"added": 0, "already_stored": 0, "merged": 0, "skipped_invalid": 0, "skipped_empty": 0, **counts}


def test_trees_opening_with_the_same_message_keep_a_ranking_each(tmp_path, store):
    q = "¿Cómo se dice «gracias» en chino? 🙏"
    f = write_jsonl(
        tmp_path / "oasst.jsonl",
        [
            tree("t1", "m1", q, [("a1", "谢谢 (xièxie) 😊", 0), ("a2", "Arigatō.", 1)]),
            tree("t2", "m2", q, [("b1", "Se dice 谢谢.", 0), ("b2", "No lo sé 🤷", 1), ("b3", "Gracias.", 2)]),
            tree("t1", "m1", q, [("a1", "谢谢 (xièxie) 😊", 0), ("a2", "Arigatō.", 1)], CRITERIA={"score": 0.7}),
            tree("t3", "m3", "¿Nada? 🤐", [("c1", "Sin rango.", None)]),  # nothing to rank
        ],
    )
    report = import_file(store, f, fmt="oasst", dataset="o")
    # one prompt, two rankings by the consensus annotator (one per opening message), 1 + 3 pairs; the third record
    # is the first tree again (other metadata only): merged into it, not a third ranking
    assert (report.added.prompts, report.added.rankings, report.added.pairs) == (1, 2, 4)
    assert sorted(store.con.execute("SELECT source_record FROM rankings").fetchall()) == [("oasst:m1",), ("oasst:m2",)]
    assert report.accounting() == {"read": 4, **outcome(added=2, merged=1, skipped_empty=1)}
    assert (
        report.as_dict()["empty"] == {"lines": [4], "reason": report.empty_reason} and "ranked" in report.empty_reason
    )

    again = import_file(store, f, fmt="oasst", dataset="o")
    assert again.added.rankings == again.added.pairs == 0
    assert again.accounting() == {"read": 4, **outcome(already_stored=3, skipped_empty=1)}


def test_shipped_oasst_sample_accounts_for_every_record(run_cli, store):
    pairs_per_message: dict[str, int] = {}  # a tree repeated in the sample ranks the same messages: counted once
    pairs_per_record = 0

    def walk(m):
        nonlocal pairs_per_record
        replies = [r for r in m.get("replies", []) if r["role"] == "assistant" and not r.get("deleted")]
        ranks = [r["rank"] for r in replies if r.get("rank") is not None]
        if not m.get("deleted") and m["role"] == "prompter" and len(replies) >= 2 and len(ranks) >= 2:
            n = sum(1 for i, a in enumerate(ranks) for b in ranks[i + 1 :] if a != b)
            pairs_per_message[m["message_id"]] = n
            pairs_per_record += n
        for r in m.get("replies", []):
            walk(r)

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    for line in lines:
        walk(json.loads(line)["prompt"])
    assert (sum(pairs_per_message.values()), pairs_per_record) == (502, 512)  # 10 pairs are in repeated trees

    r = run_cli("import", SAMPLE, "--dataset", "oasst")
    assert r.exit_code == 0, r.output
    assert store.scalar("SELECT count(*) FROM pairs WHERE NOT is_tie") == 502
    assert store.scalar("SELECT count(*) FROM rankings") == len(pairs_per_message)
    first = import_file(store, SAMPLE, dataset="oasst-2")
    done = first.accounting()
    assert done["read"] == len(lines) == sum(v for k, v in done.items() if k != "read")
    assert done["merged"] == 3 and done["added"] > 100 and done["skipped_empty"] > 0
    assert "records: 551 read = " in r.output and "merged (the same ranking as an earlier record)" in r.output

    r = run_cli("import", SAMPLE, "--dataset", "oasst")
    assert r.exit_code == 0, r.output
    assert "added: 0 prompts, 0 generations, 0 rankings, 0 pairs" in r.output
    again = import_file(store, SAMPLE, dataset="oasst-2")
    assert again.accounting() == {
        "read": len(lines),
        **outcome(already_stored=done["added"] + done["merged"], skipped_empty=done["skipped_empty"]),
    }


def test_a_person_in_the_queue_still_ranks_a_prompt_once(store):
    with store.transaction() as c:
        c.execute("INSERT INTO datasets (name, created_by) VALUES ('d', 't')")
        c.execute("INSERT INTO prompts (dataset_id, messages, content_hash, created_by) VALUES (1, '[]', 'h', 't')")
        c.execute("INSERT INTO users (name, role, kind, created_by) VALUES ('ana', 'annotator', 'human', 't')")
        c.execute("INSERT INTO rankings (prompt_id, user_id, status, created_by) VALUES (1, 1, 'submitted', 'ana')")
    with pytest.raises(duckdb.ConstraintException, match="source_record"):
        store.con.execute(
            "INSERT INTO rankings (prompt_id, user_id, status, created_by) VALUES (1, 1, 'skipped', 'a')"
        )


def test_migration_keeps_rows_and_keeps_reimports_idempotent(tmp_path, monkeypatch):
    """A database made before source_record existed migrates with every row intact; its imported rankings get the
    source record the importers give now, so importing the same files again adds nothing."""
    ranked = write_jsonl(
        tmp_path / "ranked.jsonl",
        [
            {
                "prompt": "¿Qué es el té? 🍵",
                "responses": ["茶是一种饮料。", "Una bebida.", "No sé"],
                "ranks": [1, 1, 3],
            },
            {"prompt": "Hola 👋", "responses": ["¡Hola!", "你好"], "ranks": [2, 1]},
        ],
    )
    # the rows today's importers write, copied into a database of the schema before migration 0006
    made = Store.open(tmp_path / "made.duckdb")
    import_file(made, SAMPLE, dataset="oasst")
    import_file(made, ranked, dataset="r")
    made.close()
    every = store_module._migrations()
    new = "0006_ranking_source_record"
    monkeypatch.setattr(store_module, "_migrations", lambda: [m for m in every if m[0] < new])
    path = tmp_path / "old.duckdb"
    old = Store.open(path)
    with old.transaction() as c:
        c.execute(f"ATTACH '{tmp_path / 'made.duckdb'}' AS made (READ_ONLY)")
        for table in ("datasets", "users", "prompts", "generations", "rankings", "ranking_items", "pairs"):
            drop = " EXCLUDE (source_record)" if table == "rankings" else ""
            c.execute(f"INSERT INTO {table} SELECT *{drop} FROM made.{table}")
            if table != "ranking_items":  # ids come from sequences: move them past the copied ids
                c.execute(f"SELECT max(nextval('seq_{table}')) FROM range((SELECT max(id) FROM {table}))")
        c.execute("INSERT INTO users (name, role, kind, created_by) VALUES ('ana', 'annotator', 'human', 't')")
        c.execute(
            "INSERT INTO rankings (prompt_id, user_id, status, created_by) "
            "SELECT 1, id, 'submitted', 'ana' FROM users WHERE name = 'ana'"
        )
    old.con.execute("DETACH made")
    tables = ("rankings", "ranking_items", "pairs")
    before = {t: sorted(old.con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    old.close()

    monkeypatch.setattr(store_module, "_migrations", lambda: every)
    store = Store.open(path)
    assert new in dict(store.migration_status()) and all(applied for _, applied in store.migration_status())
    after = {
        t: sorted(
            store.con.execute(f"SELECT * {'EXCLUDE (source_record)' if t == 'rankings' else ''} FROM {t}").fetchall()
        )
        for t in tables
    }
    assert after == before
    by_kind = dict(
        store.con.execute("SELECT source, count(DISTINCT source_record) FROM rankings GROUP BY source").fetchall()
    )
    assert by_kind == {"consensus": 202, "import": 2, "human": 1}
    assert store.scalar("SELECT source_record FROM rankings WHERE source = 'human'") == ""
    for f, ds in ((SAMPLE, "oasst"), (ranked, "r")):
        again = import_file(store, f, dataset=ds)
        assert again.added.rankings == again.added.pairs == 0 and again.outcome.added == 0
    # new rankings still get ids after the migrated ones (the sequence is kept)
    assert store.scalar("SELECT nextval('seq_rankings')") > store.scalar("SELECT max(id) FROM rankings")
    store.close()
