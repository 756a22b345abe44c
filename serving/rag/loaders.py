"""Read source files into Documents: txt, md, html, pdf (pypdf), jsonl (one document per line).

Every loader either returns complete documents or raises LoadError naming the file (and line, for jsonl):
a file is never partly loaded. Headings are kept as markdown-style '# ' lines so the chunker can split on them.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}


class LoadError(Exception):
    """A file could not be read as a document (the message names the file and why)."""


@dataclass
class Document:
    source: str  # resolved path, or path#id for a jsonl line
    title: str
    text: str
    format: str
    metadata: dict = field(default_factory=dict)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoadError(f"{path}: not UTF-8 text (byte {e.start}); convert it, e.g. `iconv -t utf-8`") from e


class _HTMLText(HTMLParser):
    """HTML -> text with headings as '# ' lines; script/style/nav dropped."""

    SKIP = {"script", "style", "noscript", "nav", "footer", "head"}
    BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "blockquote", "pre", "table", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n")
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if not self.skip:
            self.parts.append(data)


def _html_to_text(source: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    text = html.unescape("".join(parser.parts))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n\s*", "\n\n", text)
    return parser.title.strip(), "\n".join(line.strip() for line in text.split("\n")).strip()


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError, KeyError) as e:
        raise LoadError(f"{path}: not a readable PDF ({e})") from e
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _first_heading(text: str) -> str | None:
    m = re.search(r"^#{1,6}\s+(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else None


def load_path(path: str | Path) -> list[Document]:
    """All documents in one file (a jsonl file gives one per line). Raises LoadError if unreadable or empty."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LoadError(f"{path}: unsupported file type '{path.suffix}' (supported: {', '.join(sorted(SUFFIXES))})")
    source = str(path.resolve())
    if kind == "jsonl":
        return _load_jsonl(path, source)
    if kind == "pdf":
        if not path.is_file():
            raise LoadError(f"{path}: cannot read (no such file)")
        text, title = _pdf_text(path), path.stem
    elif kind == "html":
        title, text = _html_to_text(_read_text(path))
        title = title or _first_heading(text) or path.stem
    else:
        text = _read_text(path)
        title = (_first_heading(text) if kind == "md" else None) or path.stem
    if not text.strip():
        raise LoadError(f"{path}: no text found")
    return [Document(source=source, title=title, text=text, format=kind)]


def _load_jsonl(path: Path, source: str) -> list[Document]:
    docs = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LoadError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise LoadError(f"{path}:{lineno}: field 'text': each line needs a non-empty string 'text'")
        doc_id = str(row.get("id", lineno))
        meta = {k: v for k, v in row.items() if k not in {"text", "title", "id"}}
        docs.append(
            Document(
                source=f"{source}#{doc_id}",
                title=str(row.get("title") or f"{path.stem} #{doc_id}"),
                text=row["text"],
                format="jsonl",
                metadata=meta,
            )
        )
    if not docs:
        raise LoadError(f"{path}: no documents (empty file)")
    return docs


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files named, plus supported files inside named folders (sorted, recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES))
        else:
            out.append(p)
    return out
