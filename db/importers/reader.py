"""Streaming readers for import files: JSON Lines, a JSON array, CSV or plain text, each optionally `.gz`.

    for rec in read_records(path, container="jsonl"):
        rec.line, rec.value          # 1-based line where the record starts, the parsed value

Nothing holds the whole file: JSON Lines and text go line by line, a JSON array is decoded element by
element from a sliding buffer, CSV rows come from the csv module fed one decoded line at a time. Bytes are
decoded as strict UTF-8 so a file in another encoding fails on the line where it first shows, not as
mojibake in the database.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from db.errors import InputError

MAX_RECORD_BYTES = 64 * 1024 * 1024  # one JSON record (line or array element); protects memory
CHUNK = 1 << 20
CONTAINERS = ("jsonl", "json-array", "csv", "text")


@dataclass
class Record:
    line: int  # 1-based line where the record starts
    value: Any  # dict for JSON / CSV rows, str for text lines
    file: Path | None = None  # the shard it came from, when the input is a dataset folder (db.importers.hf_folder)


class BadRecord(InputError):
    """A record that could not be read at all (broken JSON, bad encoding). `--skip-invalid` skips it."""


def display_name(path: Path) -> str:
    return str(path)


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, gunzipped when the name ends in .gz."""
    raw = open(path, "rb")  # closed by the caller via the returned object
    if path.name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def raw_position(f: BinaryIO) -> int:
    """Bytes of the file on disk consumed so far (for progress; gz counts compressed bytes)."""
    inner = getattr(f, "fileobj", None)
    try:
        return (inner or f).tell()
    except (OSError, ValueError):
        return 0


def _decode_line(raw: bytes, path: Path, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(
            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); re-save the file as UTF-8",
            file=str(path),
            line=line,
        ) from None
    if line == 1 and text.startswith("\ufeff"):  # byte order mark some editors add
        text = text[1:]
    return text


def _lines(f: BinaryIO, path: Path) -> Iterator[tuple[int, str | None, BadRecord | None]]:
    """(line number, decoded text or None, error) for every line; an undecodable line yields its error."""
    for n, raw in enumerate(iter(lambda: f.readline(MAX_RECORD_BYTES + 1), b""), start=1):
        if len(raw) > MAX_RECORD_BYTES:
            raise InputError(
                f"a line longer than {MAX_RECORD_BYTES // 2**20} MiB; is this really a text file?",
                file=str(path),
                line=n,
            )
        try:
            yield n, _decode_line(raw, path, n), None
        except BadRecord as e:
            yield n, None, e


def read_records(
    path: Path, container: str, *, on_progress: Callable[[int], None] | None = None
) -> Iterator[Record | BadRecord]:
    """Every record of `path` in order; unreadable ones come as BadRecord values (the caller decides)."""
    with open_binary(path) as f:
        reader = {"jsonl": _jsonl, "text": _text, "csv": _csv, "json-array": _json_array}[container]
        for i, item in enumerate(reader(f, path)):
            if on_progress is not None and i % 1000 == 0:
                on_progress(raw_position(f))
            yield item
        if on_progress is not None:
            on_progress(raw_position(f))


def _jsonl(f: BinaryIO, path: Path) -> Iterator[Record | BadRecord]:
    for n, text, err in _lines(f, path):
        if err is not None:
            yield err
            continue
        if not text.strip():
            continue
        try:
            yield Record(n, json.loads(text))
        except json.JSONDecodeError as e:
            yield BadRecord(f"broken JSON: {e.msg} at column {e.colno}", file=str(path), line=n)


def _text(f: BinaryIO, path: Path) -> Iterator[Record | BadRecord]:
    for n, text, err in _lines(f, path):
        if err is not None:
            yield err
        elif text.strip():
            yield Record(n, text.rstrip("\r\n"))


def _csv(f: BinaryIO, path: Path) -> Iterator[Record | BadRecord]:
    lines = _lines(f, path)
    current = {"line": 0}

    def decoded() -> Iterator[str]:
        for n, text, err in lines:
            current["line"] = n
            if err is not None:
                raise err  # inside csv's iteration: a row cannot be re-synchronised after bad bytes
            yield text

    reader = csv.reader(decoded())
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    for row in reader:
        if not any(cell.strip() for cell in row):
            start = reader.line_num + 1
            continue
        if len(row) != len(header):
            yield BadRecord(
                f"{len(row)} columns, the header has {len(header)} ({', '.join(header)})", file=str(path), line=start
            )
        else:
            yield Record(start, dict(zip(header, row, strict=True)))
        start = reader.line_num + 1


def _json_array(f: BinaryIO, path: Path) -> Iterator[Record | BadRecord]:
    """Elements of a top-level JSON array, decoded one at a time from a growing/sliding text buffer."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    dec = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False  # buf[pos:] is unread; `line` is the line of buf[pos]
    dropped_chars = dropped_bytes = 0  # what slid out of the buffer, so an offset can be named in the file

    def more() -> bool:
        nonlocal buf, pos, eof, dropped_chars, dropped_bytes
        if eof:
            return False
        chunk = f.read(CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            bad_line = line + buf.count("\n", pos) + chunk[: e.start].count(b"\n")
            raise BadRecord("not UTF-8 text; re-save the file as UTF-8", file=str(path), line=bad_line) from None
        eof = not chunk
        dropped_chars += pos
        dropped_bytes += len(buf[:pos].encode("utf-8"))
        buf = buf[pos:] + text
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or not more():
                return

    def fail(msg: str) -> InputError:
        return InputError(msg, file=str(path), line=line)

    skip_ws()
    if pos >= len(buf) or buf[pos] != "[":
        raise fail("expected a JSON array ('[' first)")
    pos += 1
    first = True
    while True:
        skip_ws()
        if pos >= len(buf):
            raise fail("the JSON array is not closed (missing ']')")
        if buf[pos] == "]":
            pos += 1
            skip_ws()
            if pos < len(buf):  # `[...] more`: json.load refuses it too, and what follows would be lost silently
                at_byte = dropped_bytes + len(buf[:pos].encode("utf-8"))
                raise fail(
                    f"unexpected {buf[pos : pos + 20]!r} after the JSON array's closing ']' at byte offset "
                    f"{at_byte:,} (character {dropped_chars + pos:,}); a file holds one JSON array and nothing after "
                    "it (for one record per line use JSON Lines)"
                )
            return
        if not first:
            if buf[pos] != ",":
                raise fail(f"broken JSON: expected ',' or ']' between array elements, found {buf[pos]!r}")
            pos += 1
            skip_ws()
        first = False
        while True:
            try:
                value, end = dec.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as e:
                if len(buf) - pos > MAX_RECORD_BYTES or not more():
                    bad = line + buf.count("\n", pos, e.pos)
                    raise InputError(f"broken JSON: {e.msg}", file=str(path), line=bad) from None
        yield Record(line, value)
        line += buf.count("\n", pos, end)
        pos = end
