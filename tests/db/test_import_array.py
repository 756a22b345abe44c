"""A JSON array file holds one array: anything but whitespace after its ']' is an error naming the offset."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from db.errors import InputError
from db.importers import import_file, reader

ROWS = [
    {"prompt": "¿Qué es 熊猫? 🐼", "responses": ["Un oso 🐻", "Un gato"], "ranks": [1, 2]},
    {"prompt": "Di hola 👋", "responses": ["¡Hola!", "你好"], "ranks": [2, 1]},
]


def array_text(trailing: str) -> str:
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n]" + trailing


@pytest.mark.parametrize("trailing", ["\ntrailing", " ,", "\n\n[]\n", "}", "\n\n  x  \n"])
def test_text_after_the_array_is_refused_with_its_offset(tmp_path, run_cli, store, trailing):
    good = tmp_path / "good.json"
    good.write_text(array_text("\n"), encoding="utf-8")
    assert run_cli("import", good, "--dataset", "d").exit_code == 0
    before = store.counts()
    f = tmp_path / "trailing.json"
    f.write_text(array_text(trailing), encoding="utf-8")
    for flags in ([], ["--skip-invalid"]):
        r = run_cli("import", f, "--dataset", "d", *flags)
        assert r.exit_code != 0, r.output
        assert "trailing.json:" in r.output and "after the JSON array's closing ']'" in r.output, r.output
        assert "Traceback" not in r.output
        assert store.counts() == before
    m = re.search(r"byte offset ([\d,]+) \(character ([\d,]+)\)", r.output)
    at_byte, at_char = (int(g.replace(",", "")) for g in m.groups())
    data, text = f.read_bytes(), f.read_text(encoding="utf-8")
    first = trailing.strip()[0]
    assert data[at_byte : at_byte + 1].decode() == first and text[at_char] == first
    assert at_byte > at_char  # the Chinese and emoji before it take several bytes each
    line = text[:at_char].count("\n") + 1
    assert f"trailing.json:{line}:" in r.output, r.output


def test_offset_is_right_when_the_buffer_has_slid(tmp_path, monkeypatch, store):
    monkeypatch.setattr(reader, "CHUNK", 7)  # many refills: the offset must count what slid out
    f = tmp_path / "t.json.gz"
    with gzip.open(f, "wt", encoding="utf-8") as out:
        out.write(array_text("   oops"))
    with pytest.raises(InputError, match="after the JSON array") as e:
        import_file(store, f, fmt="ranked", dataset="d")
    text = array_text("   oops")
    at_byte = int(re.search(r"byte offset ([\d,]+)", str(e.value)).group(1).replace(",", ""))
    assert at_byte == len(text[: text.index("oops")].encode("utf-8"))
    assert store.counts()["rankings"] == 0


def test_whitespace_after_the_array_is_fine(tmp_path, store):
    f = tmp_path / "ok.json"
    f.write_text("\ufeff" + array_text(" \n\t\r\n\n"), encoding="utf-8")
    assert import_file(store, f, fmt="ranked", dataset="d").added.rankings == 2
