"""Round trips: import a public-format fixture into store A, export it, import the export with --format auto into a
fresh store B, and get the same pairs back.

What is compared is the consensus pairs an export writes: one row per answer pair of a prompt in its majority
direction (multi-annotator data such as the OpenAssistant sample, ranked by several people, collapses to those),
ties dropped unless --ties keep. A `trl` file comes back through the HH-layout rule of db.importers.preference
(prompt text -> messages, one leading space off each answer) and a kept tie through the record's `is_tie`, so
both `trl` and `trl-messages` give B the pairs of A, ties included. B holds one single-vote ranking per pair:
the votes behind a pair (counts, agreement, annotators) are in the parquet export, not in these files.

Row order follows the stores' ids (prompt, then answer ids), which an import does not promise to keep, so the
files are compared as multisets of lines: every line of B's export is byte for byte a line of A's, but for a
kept tie, whose two answers may come out in either order.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from db.export import export
from db.importers import import_file
from db.importers.preference import hh_prompt
from db.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
PAIR_FIXTURES = {
    "preference": "preference.jsonl",
    "implicit-preference": "implicit_preference.jsonl",
    "ranked": "ranked.jsonl",
    "oasst": "oasst.jsonl",
    "nectar": "nectar.jsonl",
    "shp": "shp.jsonl",
    "arena-conversations": "arena_conversations.jsonl",
}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def pairs_of(path: Path, fmt: str) -> Counter:
    """(prompt messages as JSON, chosen, rejected, is_tie) per row of a trl / trl-messages file; a tie's two
    answers in sorted order, as a tie has no direction."""
    out = Counter()
    for line in lines(path):
        row = json.loads(line)
        if fmt == "trl":
            msgs = hh_prompt(row["prompt"])
            assert msgs is not None, row["prompt"]  # every prompt the export writes reads back as messages
            chosen, rejected = (a[1:] if a.startswith(" ") else a for a in (row["chosen"], row["rejected"]))
        else:
            msgs, chosen, rejected = row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"]
        tie = row.get("is_tie", False)
        if tie:
            chosen, rejected = sorted((chosen, rejected))
        out[json.dumps(msgs, ensure_ascii=False), chosen, rejected, tie] += 1
    return out


def directed(path: Path) -> list[str]:
    return [line for line in lines(path) if '"is_tie":true' not in line]


def parquet_pairs(path: Path) -> Counter:
    import pyarrow.parquet as pq

    out = Counter()
    for r in pq.read_table(path).to_pylist():
        chosen, rejected = sorted((r["chosen"], r["rejected"])) if r["is_tie"] else (r["chosen"], r["rejected"])
        msgs = [{"role": m["role"], "content": m["content"]} for m in r["prompt"]]
        out[json.dumps(msgs, ensure_ascii=False), chosen, rejected, r["is_tie"]] += 1
    return out


@pytest.mark.parametrize("ties", ["drop", "keep"])
@pytest.mark.parametrize("out_fmt", ["trl", "trl-messages"])
@pytest.mark.parametrize("in_fmt", list(PAIR_FIXTURES))
def test_export_reimports_as_the_same_pairs(tmp_path, in_fmt, out_fmt, ties):
    a = Store.open(tmp_path / "a.duckdb")
    b = Store.open(tmp_path / "b.duckdb")
    try:
        import_file(a, DATA / PAIR_FIXTURES[in_fmt], fmt=in_fmt, dataset="src")
        first = export(a, out_fmt, tmp_path / "a.jsonl", ties=ties)
        report = import_file(b, first.path, fmt="auto", dataset="back")
        assert report.format == "preference" and report.records == first.counts["pairs"] > 0
        again = export(b, out_fmt, tmp_path / "b.jsonl", ties=ties)
        want = parquet_pairs(export(a, "parquet", tmp_path / "a.parquet", ties=ties).path)
        assert pairs_of(first.path, out_fmt) == want  # the file holds A's consensus pairs (the parquet view)
        assert pairs_of(again.path, out_fmt) == want  # and B holds them too
        assert parquet_pairs(export(b, "parquet", tmp_path / "b.parquet", ties=ties).path) == want
        # each line byte-identical; a tie's two answers may come out in either order (it has no direction)
        assert Counter(directed(again.path)) == Counter(directed(first.path))
        assert again.counts == first.counts
        assert (ties == "keep") or not any(tie for *_, tie in want)
    finally:
        a.close()
        b.close()


def test_ties_come_back_as_ties(tmp_path):
    a = Store.open(tmp_path / "a.duckdb")
    b = Store.open(tmp_path / "b.duckdb")
    try:
        import_file(a, DATA / "ranked.jsonl", fmt="ranked", dataset="src")
        first = export(a, "trl", tmp_path / "a.jsonl", ties="keep")
        assert first.counts["ties"] >= 1
        import_file(b, first.path, fmt="auto", dataset="back")
        again = export(b, "trl", tmp_path / "b.jsonl", ties="keep")
        assert again.counts["ties"] == first.counts["ties"]
        # dropped on the way out, a tie is not in the file at all: B has no tie to drop or keep
        dropped = export(a, "trl", tmp_path / "d.jsonl")
        c = Store.open(tmp_path / "c.duckdb")
        try:
            import_file(c, dropped.path, fmt="auto", dataset="back")
            assert export(c, "trl", tmp_path / "c.jsonl", ties="keep").counts["ties"] == 0
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_multilingual_text_survives(tmp_path):
    """The fixtures' Chinese, Spanish and emoji reach B unchanged (the pair equality above covers every character;
    this says the fixtures hold such characters at all)."""
    text = ""
    for in_fmt, name in PAIR_FIXTURES.items():
        s = Store.open(tmp_path / f"{in_fmt}.duckdb")
        try:
            import_file(s, DATA / name, fmt=in_fmt, dataset="src")
            text += (export(s, "trl", tmp_path / f"{in_fmt}.jsonl").path).read_text(encoding="utf-8")
        finally:
            s.close()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # CJK
    assert any(ch in "¿¡ñáéíóú" for ch in text)  # Spanish
    assert any(ord(ch) >= 0x1F300 for ch in text)  # emoji
    assert "\\u" not in text  # the characters themselves, not escapes


# ---- the HH-layout rule of the preference importer ----------------------------------------------------------

HH_CASES = [
    ("\n\nHuman: ¿2+2?\n\nAssistant:", [("user", "¿2+2?")]),
    (
        "Sé breve.\n\nHuman: Hola 👋\n\nAssistant: ¡Hola!\n\nHuman: 东京?\n\nAssistant:",
        [("system", "Sé breve."), ("user", "Hola 👋"), ("assistant", "¡Hola!"), ("user", "东京?")],
    ),
    ("\n\nHuman: a\n\nAssistant:\n\nHuman:  b\n\nAssistant:", [("user", "a"), ("assistant", ""), ("user", " b")]),
    # ordinary prompts stay one user message
    ("¿Qué es 東京? 🗼", None),
    ("Human: q\n\nAssistant:", None),  # no blank line before Human
    ("\n\nHuman:q\n\nAssistant:", None),  # no space after the marker
    ("\n\nHuman: q\n\nAssistant: a", None),  # does not end on the cue
    ("\n\nAssistant: x\n\nHuman: q\n\nAssistant:", None),  # first turn is not Human
    ("\n\nHuman: \n\nAssistant:", None),  # an empty question
    ("\n\nHuman: a\n\nAssistant: b\n\nAssistant:", None),  # does not end on a question
]


@pytest.mark.parametrize(("text", "want"), HH_CASES)
def test_hh_prompt_rule(text, want):
    got = hh_prompt(text)
    assert (None if got is None else [(m["role"], m["content"]) for m in got]) == want


def _import_one(store, tmp_path, records, **kw):
    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    import_file(store, path, fmt="preference", dataset="one", **kw)
    prompts = [json.loads(m) for (m,) in store.con.execute("SELECT messages FROM prompts ORDER BY id").fetchall()]
    answers = {t for (t,) in store.con.execute("SELECT text FROM generations").fetchall()}
    return prompts, answers


def test_hh_prompt_strips_one_space_plain_prompt_keeps_everything(store, tmp_path):
    prompts, answers = _import_one(
        store,
        tmp_path,
        [
            {"prompt": "Sé breve.\n\nHuman: 东京?\n\nAssistant:", "chosen": "  Tokio 🗼", "rejected": "Osaka"},
            {"prompt": "Human: hola", "chosen": " sí", "rejected": [{"role": "assistant", "content": " no"}]},
        ],
    )
    assert prompts == [
        [{"role": "system", "content": "Sé breve."}, {"role": "user", "content": "东京?"}],
        [{"role": "user", "content": "Human: hola"}],
    ]
    assert answers == {" Tokio 🗼", "Osaka", " sí", " no"}  # exactly one space off, and only after an HH prompt


def test_is_tie_must_be_a_boolean(store, tmp_path):
    from db.errors import InputError

    with pytest.raises(InputError) as e:
        _import_one(store, tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "b", "is_tie": "yes"}])
    assert (e.value.line, e.value.field) == (1, "is_tie") and "true or false" in e.value.reason
    assert store.counts()["prompts"] == 0


def test_duckdb_engine_hands_hh_and_ties_to_the_python_path(tmp_path):
    rows = [
        {"prompt": "\n\nHuman: ¿2+2?\n\nAssistant:", "chosen": " 4", "rejected": " 5"},
        {"prompt": "Name a fruit 🍎", "chosen": "Apple", "rejected": "Kiwi", "is_tie": True},
    ]
    got = {}
    for engine in ("python", "duckdb"):
        s = Store.open(tmp_path / f"{engine}.duckdb")
        try:
            got[engine] = _import_one(s, tmp_path, rows, engine=engine)
            ranks = "SELECT list_sort(list(rank)) FROM ranking_items GROUP BY ranking_id ORDER BY 1"
            got[engine] += (s.con.execute(ranks).fetchall(),)
        finally:
            s.close()
    assert got["duckdb"] == got["python"]
    assert [{"role": "user", "content": "¿2+2?"}] in got["python"][0] and ([1, 1],) in got["python"][2]
