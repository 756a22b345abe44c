from db.hashing import prompt_hash, text_hash
from db.staging import Batch


def _ranked_batch(answers_by_rank, annotator="ann1"):
    msgs = [{"role": "user", "content": "¿Qué es 東京? 🗼"}]
    pk = prompt_hash(msgs)
    b = Batch()
    b.prompts.append({"key": pk, "messages": __import__("json").dumps(msgs, ensure_ascii=False)})
    b.rankings.append({"ranking_key": "r1", "prompt_key": pk, "annotator": annotator})
    for text, rank in answers_by_rank:
        b.generations.append({"prompt_key": pk, "gen_key": text_hash(text), "text": text, "kind": "imported"})
        b.items.append({"ranking_key": "r1", "gen_key": text_hash(text), "rank": rank})
    return b


def test_migrations_recorded(store):
    status = store.migration_status()
    assert status[0][0] == "0001_core"
    assert all(applied for _, applied in status)  # Store.open applied every migration, in name order
    assert [name for name, _ in status] == sorted(name for name, _ in status)
    assert store.scalar("SELECT count(*) FROM migrations") == len(status)
    assert store.migrate() == []  # idempotent


def test_write_batch_derives_all_pairs_and_is_idempotent(store):
    # B > A > C > D gives six pairs with the better rank chosen
    batch = _ranked_batch([("B", 1), ("A", 2), ("C", 3), ("D", 4)])
    n = store.write_batch("demo", batch, created_by="test")
    assert (n.prompts, n.generations, n.rankings, n.pairs) == (1, 4, 1, 6)
    rows = store.query(
        "SELECT c.text AS chosen, r.text AS rejected, margin FROM pairs "
        "JOIN generations c ON c.id = chosen_id JOIN generations r ON r.id = rejected_id ORDER BY 1, 2"
    )
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ("A", "C"),
        ("A", "D"),
        ("B", "A"),
        ("B", "C"),
        ("B", "D"),
        ("C", "D"),
    ]
    assert {r["margin"] for r in rows if (r["chosen"], r["rejected"]) == ("B", "D")} == {3}
    before = store.counts()
    again = store.write_batch("demo", _ranked_batch([("B", 1), ("A", 2), ("C", 3), ("D", 4)]), created_by="test")
    assert again.as_dict() == {k: 0 for k in again.as_dict()}
    assert store.counts() == before


def test_ties_are_stored_marked(store):
    n = store.write_batch("demo", _ranked_batch([("x", 1), ("y", 1), ("z", 2)]), created_by="test")
    assert n.pairs == 3
    assert store.scalar("SELECT count(*) FROM pairs WHERE is_tie") == 1


def test_failed_write_changes_nothing(store):
    store.write_batch("demo", _ranked_batch([("x", 1), ("y", 2)]), created_by="test")
    before = store.counts()
    bad = _ranked_batch([("p", 1), ("q", 0)], annotator="ann2")  # rank 0 violates CHECK (rank >= 1)
    import duckdb
    import pytest

    with pytest.raises(duckdb.ConstraintException):
        store.write_batch("demo", bad, created_by="test")
    assert store.counts() == before


def test_row_reads_one_row_as_a_dict_or_none(store):
    store.write_batch("demo", _ranked_batch([("B", 1), ("A", 2)]), created_by="test")
    assert store.has_dataset("demo") and not store.has_dataset("nope")
    row = store.row("SELECT name, annotators_per_prompt AS k FROM datasets WHERE name = ?", ["demo"])
    assert row == {"name": "demo", "k": 1}
    assert store.row("SELECT name FROM datasets WHERE name = ?", ["nope"]) is None


def test_memory_limit_is_set_for_the_database(store):
    store.set_memory_limit("512MB")
    assert store.scalar("SELECT current_setting('memory_limit')") == "488.2 MiB"  # DuckDB shows it in MiB
