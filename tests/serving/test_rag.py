"""RAG: loaders, chunking, ingest into DuckDB + faiss, retrieval, citations, re-ingest, unreadable files, CLI."""

from __future__ import annotations

import json

import pytest

from db import rag_store
from serving.rag import ChunkConfig, augment, chunk_document, cited_indices, ingest_paths, load_path, retrieve
from serving.rag.index import CollectionIndex, IndexConfig, build_index
from serving.rag.loaders import LoadError

ZH = "长城是中国古代的军事防御工程，全长两万多公里。\n\n大熊猫生活在四川的山区，主要吃竹子。\n"
HTML = """<html><head><title>Volcano Guide</title><script>var hidden = "do not index";</script></head><body>
<h1>Volcanoes</h1><p>Mount Etna in Sicily is one of the most active volcanoes in Europe.</p>
<h2>Lava</h2><p>Lava temperatures typically range from 700 to 1200 degrees Celsius &amp; glow red.</p>
</body></html>"""
MD = """# Baking bread

## Sourdough
A sourdough starter is a fermented mixture of flour and water that contains wild yeast.
Feed the starter every day with equal weights of flour and water.

## Baguettes
French baguettes are baked at a high temperature with steam to form a crisp crust.
"""


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with `text` in Helvetica (ASCII), xref offsets computed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "china.txt").write_text(ZH, encoding="utf-8")
    (d / "volcano.html").write_text(HTML, encoding="utf-8")
    (d / "bread.md").write_text(MD, encoding="utf-8")
    (d / "report.pdf").write_bytes(minimal_pdf("The Zephyr turbine produces 12 megawatts at full load."))
    return d


def test_chunks_split_on_headings_and_sentences_with_overlap():
    text = "# A\n" + " ".join(f"Sentence {i} is here." for i in range(12)) + "\n# B\n第一句。第二句。"
    chunks = chunk_document(text, ChunkConfig(chunk_size=100, overlap=40))
    assert [c.heading for c in chunks][-1] == "B" and chunks[-1].text.endswith("第二句。")
    a = [c for c in chunks if c.heading == "A"]
    assert all(len(c.text) <= 100 for c in a)
    assert all(c.text.rstrip().endswith(".") for c in a)  # cut on sentence boundaries only
    for prev, nxt in zip(a, a[1:], strict=False):  # the next chunk repeats the last sentence of the previous
        assert prev.text.split(". ")[-1] in nxt.text
    assert "Sentence 11 is here." in a[-1].text and not any("# B" in c.text for c in a)
    with pytest.raises(ValueError, match="overlap"):
        ChunkConfig(chunk_size=100, overlap=100)


def test_loaders_read_each_format(docs):
    html = load_path(docs / "volcano.html")[0]
    assert html.title == "Volcano Guide" and "do not index" not in html.text and "& glow" in html.text
    assert "# Volcanoes" in html.text and "## Lava" in html.text  # headings kept for the chunker
    assert load_path(docs / "bread.md")[0].title == "Baking bread"
    assert "Zephyr turbine" in load_path(docs / "report.pdf")[0].text
    (docs / "faq.jsonl").write_text(
        '{"id": "q1", "title": "Hours", "text": "Open 9-17."}\n{"text": "Closed on Sunday.", "lang": "en"}\n',
        encoding="utf-8",
    )
    rows = load_path(docs / "faq.jsonl")
    assert [r.source.rsplit("#", 1)[1] for r in rows] == ["q1", "2"] and rows[1].metadata == {"lang": "en"}


def test_ingest_then_retrieve_the_right_chunk_with_citations(store, home, docs):
    report = ingest_paths(store, [docs], collection="kb", config=None)
    assert len(report.added) == 4 and not report.failed and report.index_kind == "flat"
    assert (home / "rag" / "kb" / "index.faiss").exists()
    cases = {
        "长城有多长？": ("china.txt", "两万多公里"),
        "How hot is lava?": ("volcano.html", "700 to 1200"),
        "how often should I feed my sourdough starter": ("bread.md", "Feed the starter"),
        "How much power does the Zephyr turbine produce?": ("report.pdf", "12 megawatts"),
    }
    for question, (file, needle) in cases.items():
        hits = retrieve(store, "kb", question, k=2)
        assert hits[0].source == str((docs / file).resolve()) and needle in hits[0].text, (question, hits)
        assert hits[0].score >= hits[1].score and -1.0 <= hits[0].score <= 1.0
    hits = retrieve(store, "kb", "Mount Etna eruption temperatures", k=2)
    prompt, cites = augment("How hot is Etna's lava?", hits)
    assert prompt.index("Background:") < prompt.index("Question: How hot is Etna's lava?")  # background first
    assert "[1] Volcano Guide" in prompt and cites[0]["index"] == 1
    assert cites[0]["chunk_id"] == hits[0].chunk_id and cites[0]["source"].endswith("volcano.html")
    chunk = rag_store.chunks_by_ids(store, [cites[0]["chunk_id"]])[cites[0]["chunk_id"]]
    assert chunk["document_id"] == cites[0]["document_id"] and chunk["text"] == cites[0]["text"]
    assert cited_indices("Lava is hot [2], very hot [1][2]; see [9].", n_citations=2) == [2, 1]
    hybrid = retrieve(store, "kb", "Zephyr", k=3, hybrid=True)  # a rare name: BM25 pulls it up
    assert hybrid[0].source.endswith("report.pdf")


def test_reingest_replaces_changed_files_only(store, home, docs):
    ingest_paths(store, [docs], collection="kb")
    before = rag_store.get_collection(store, "kb")["chunks"]
    (docs / "bread.md").write_text(
        MD.replace("every day", "twice a week").replace("French baguettes", "Rye loaves"), encoding="utf-8"
    )
    report = ingest_paths(store, [docs], collection="kb")
    assert report.replaced == [str((docs / "bread.md").resolve())] and len(report.unchanged) == 3
    texts = " ".join(rag_store.chunk_texts(store, "kb")[1])
    assert "twice a week" in texts and "every day" not in texts and "French baguettes" not in texts
    assert rag_store.get_collection(store, "kb")["chunks"] == before
    index = CollectionIndex.load("kb", 384)
    assert index.index().ntotal == before and set(index.ids) == set(rag_store.chunk_texts(store, "kb")[0])
    hit = retrieve(store, "kb", "how often do I feed the starter?", k=1)[0]
    assert "twice a week" in hit.text


def test_unreadable_files_are_reported_and_skipped(store, home, docs):
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "bad.jsonl").write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    (docs / "empty.md").write_text("   \n", encoding="utf-8")
    report = ingest_paths(store, [docs], collection="kb")
    failed = {p.rsplit("/", 1)[1]: why for p, why in report.failed}
    assert set(failed) == {"latin1.txt", "broken.pdf", "bad.jsonl", "empty.md"}
    assert "UTF-8" in failed["latin1.txt"] and "bad.jsonl:2" in failed["bad.jsonl"]
    sources = {d["source"].rsplit("/", 1)[1] for d in rag_store.list_documents(store, "kb")}
    assert sources == {"china.txt", "volcano.html", "bread.md", "report.pdf"}  # nothing of the bad files
    with pytest.raises(LoadError, match="unsupported"):
        load_path(docs / "x.docx")


def test_approximate_indexes_agree_with_exact_search():
    import numpy as np

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(100, 3100, dtype=np.int64)
    queries = vecs[:50] + 0.05 * rng.standard_normal((50, 32)).astype(np.float32)
    exact = build_index(vecs, ids, "flat").search(queries, 5)[1]
    assert IndexConfig(kind="auto", approx_above=1000).resolve(3000) == "ivf"
    assert IndexConfig(kind="auto", approx_above=1000).resolve(1000) == "flat"
    for kind in ("hnsw", "ivf"):
        approx = build_index(vecs, ids, kind, IndexConfig()).search(queries, 5)[1]
        recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact, strict=True)])
        assert recall >= 0.9, (kind, recall)


def test_query_vectors_match_document_vectors_of_the_same_text():
    """A query (<= 4 texts: one thread, PREFLAB_EMBED_QUERY_DTYPE) must land where the float32 document
    embedding of the same text lies, in every language; otherwise retrieval silently degrades."""
    import numpy as np

    from serving.rag import embed

    texts = ["Mount Etna in Sicily is an active volcano.", "¿Dónde vive el oso panda? 🐼", ZH.split("\n")[0]]
    docs = embed.embed_texts(texts * 2)  # 6 texts: the document path, float32
    for i, text in enumerate(texts):
        query = embed.embed_texts([text])[0]
        assert abs(float(np.linalg.norm(query)) - 1) < 1e-3
        assert float(query @ docs[i]) > 0.999, (embed.query_dtype(), text)
        assert int(np.argmax(docs[:3] @ query)) == i


def test_cli_ingest_query_eval(run_cli, home, docs, tmp_path):
    (docs / "latin1.txt").write_bytes(b"caf\xe9")
    r = run_cli("rag", "ingest", docs, "--collection", "kb", "--chunk-size", "300", "--overlap", "50")
    assert r.exit_code == 1 and "4 added" in r.output and "latin1.txt" in r.output  # reported, the rest ingested
    r = run_cli("rag", "query", "How hot is lava?", "--collection", "kb", "-k", "2")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("[1] ") and "Volcano Guide / Lava" in r.output and "700 to 1200" in r.output
    qs = tmp_path / "qs.jsonl"
    qs.write_text(
        "\n".join(
            json.dumps(q, ensure_ascii=False)
            for q in [
                {"question": "熊猫吃什么？", "source": "china.txt"},
                {"question": "What temperature is lava?", "contains": "700 to 1200"},
                {"question": "How are baguettes baked?", "source": "bread.md"},
                {"question": "Zephyr turbine output", "source": "report.pdf"},
            ]
        ),
        encoding="utf-8",
    )
    r = run_cli("rag", "eval", qs, "--collection", "kb", "-k", "3")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["questions"] == 4 and result["hit_rate"] == 1.0 and 0.5 < result["mrr"] <= 1.0
    r = run_cli("rag", "query", "x", "--collection", "missing")
    assert r.exit_code == 1 and "no RAG collection named 'missing'" in r.output
    r = run_cli("rag", "ingest", docs, "--collection", "../evil")
    assert r.exit_code == 1 and "bad collection name" in r.output
