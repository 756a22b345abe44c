"""Split documents into overlapping chunks on heading and sentence boundaries.

A section runs from one heading ('# ' lines; html headings are converted to them) to the next; a chunk
never spans two sections. Inside a section, whole sentences are packed up to `chunk_size` characters;
the next chunk repeats the last sentences of the previous one up to `overlap` characters, so a fact cut
at a boundary is still whole in one chunk. A single sentence longer than chunk_size is cut hard.
Sentence ends: . ! ? followed by space, the CJK marks 。！？；, and blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；])\s*|\n\s*\n")


@dataclass(kw_only=True)
class ChunkConfig:
    chunk_size: int = 800  # characters (~200 MiniLM tokens of English; MiniLM reads at most 256 tokens)
    overlap: int = 120  # characters of trailing sentences repeated at the start of the next chunk

    def __post_init__(self):
        if self.chunk_size < 50:
            raise ValueError(f"chunk_size must be >= 50 characters, got {self.chunk_size}")
        if not 0 <= self.overlap < self.chunk_size:
            raise ValueError(f"overlap must be in [0, chunk_size), got {self.overlap} (chunk_size {self.chunk_size})")


@dataclass
class Chunk:
    ordinal: int
    text: str
    heading: str | None
    start: int  # character offsets in the document text
    end: int


def _sections(text: str) -> list[tuple[str | None, int, int]]:
    """(heading, start, end) spans; the heading line itself belongs to its section."""
    marks = [(m.group(1).strip(), m.start()) for m in HEADING.finditer(text)]
    spans = []
    if not marks or marks[0][1] > 0:
        spans.append((None, 0, marks[0][1] if marks else len(text)))
    for i, (title, start) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else len(text)
        spans.append((title, start, end))
    # a heading with no text under it (a title right above a subheading) makes no useful chunk
    return [s for s in spans if HEADING.sub("", text[s[1] : s[2]]).strip()]


def _sentences(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets) in text[start:end], whitespace-trimmed, none longer than limit."""
    spans, pos = [], start
    for m in SENTENCE_END.finditer(text, start, end):
        if m.end() > pos:
            spans.append((pos, m.start() if m.start() > pos else m.end()))
            pos = m.end()
    spans.append((pos, end))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        while e - s > limit:  # one giant "sentence" (a table, minified text): cut at a space, else hard
            cut = text.rfind(" ", s + limit // 2, s + limit)
            cut = cut if cut > s else s + limit
            out.append((s, cut))
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if e > s:
            out.append((s, e))
    return out


def chunk_document(text: str, config: ChunkConfig | None = None) -> list[Chunk]:
    """The chunks of one document text, in order."""
    cfg = config or ChunkConfig()
    chunks: list[Chunk] = []
    for heading, s_start, s_end in _sections(text):
        sents = _sentences(text, s_start, s_end, cfg.chunk_size)
        i = 0
        while i < len(sents):
            j, start = i, sents[i][0]
            while j < len(sents) and sents[j][1] - start <= cfg.chunk_size:
                j += 1
            j = max(j, i + 1)
            end = sents[j - 1][1]
            chunks.append(Chunk(ordinal=len(chunks), text=text[start:end], heading=heading, start=start, end=end))
            if j >= len(sents):
                break
            # step back over trailing sentences that fit in the overlap, but only as far as the next chunk
            # still has room for the next new sentence (else it would repeat the overlap and nothing else)
            back = j
            while (
                back - 1 > i
                and end - sents[back - 1][0] <= cfg.overlap
                and sents[j][1] - sents[back - 1][0] <= cfg.chunk_size
            ):
                back -= 1
            i = back
    return chunks
