"""Put retrieved chunks into the prompt (background first, then the question) and map citations back.

prompt, citations = augment("Who founded X?", hits)
citations[0] == {"index": 1, "chunk_id": ..., "document_id": ..., "source": ..., "title": ..., ...}
cited_indices("X was founded by Y [1].") == [1]
"""

from __future__ import annotations

import re

DEFAULT_TEMPLATE = (
    "Answer the question using the background passages below. Cite the passages you use by their number, "
    "like [1] or [2]. If the background does not contain the answer, say so.\n\n"
    "Background:\n{context}\n\n"
    "Question: {question}"
)
PASSAGE = "[{index}] {title}: {text}"
CITE = re.compile(r"\[(\d{1,3})\]")


def augment(question: str, hits: list, *, template: str = DEFAULT_TEMPLATE) -> tuple[str, list[dict]]:
    """(prompt text, citations). Citation i (1-based) is hits[i-1] with its chunk and document."""
    if "{context}" not in template or "{question}" not in template:
        raise ValueError("a RAG prompt template needs both {context} and {question} placeholders")
    citations = []
    passages = []
    for i, h in enumerate(hits, 1):
        d = h if isinstance(h, dict) else h.as_dict()
        label = d["title"] + (f" / {d['heading']}" if d.get("heading") and d["heading"] != d["title"] else "")
        passages.append(PASSAGE.format(index=i, title=label, text=d["text"].strip()))
        citations.append(
            {
                "index": i,
                "chunk_id": d["chunk_id"],
                "document_id": d["document_id"],
                "source": d["source"],
                "title": d["title"],
                "heading": d.get("heading"),
                "score": d["score"],
                "text": d["text"],
            }
        )
    prompt = template.replace("{context}", "\n\n".join(passages)).replace("{question}", question)
    return prompt, citations


def cited_indices(answer: str, n_citations: int | None = None) -> list[int]:
    """The citation numbers an answer uses, in first-use order (numbers past n_citations are dropped)."""
    seen: list[int] = []
    for m in CITE.finditer(answer or ""):
        i = int(m.group(1))
        if i >= 1 and (n_citations is None or i <= n_citations) and i not in seen:
            seen.append(i)
    return seen
