"""CLI: `preflab rag ...`: ingest, query, eval, list.

    preflab rag ingest docs/ notes.md --collection handbook --chunk-size 800 --overlap 120
    preflab rag query "how do I reset my password?" --collection handbook -k 4 [--hybrid]
    preflab rag eval questions.jsonl --collection handbook -k 5

These commands open the database file: run them while no server holds it.
`rag eval` reads JSONL lines {"question": ..., and one of "source" (file name or path of the right
document), "chunk_ids" (list of right chunk ids) or "contains" (text the right chunk contains)}.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from serving.cli.root import open_store


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _is_relevant(case: dict, hit) -> bool:
    if "chunk_ids" in case:
        return hit.chunk_id in set(case["chunk_ids"])
    if "source" in case:
        want = str(case["source"])
        return hit.source == want or Path(hit.source.split("#")[0]).name == want or hit.source.endswith(want)
    return str(case["contains"]) in hit.text


def _read_eval(path: str) -> list[dict]:
    from db.errors import InputError

    cases = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON ({e.msg})", file=path, line=lineno) from e
        if not isinstance(case, dict) or not isinstance(case.get("question"), str):
            raise InputError("each line needs a string 'question'", file=path, line=lineno, field="question")
        if not any(k in case for k in ("source", "chunk_ids", "contains")):
            raise InputError(
                "each line needs 'source', 'chunk_ids' or 'contains' (what the right hit is)",
                file=path,
                line=lineno,
                field="source",
            )
        cases.append(case)
    if not cases:
        raise InputError("no questions", file=path)
    return cases


def register(cli: click.Group) -> None:
    @cli.group("rag")
    def rag_group() -> None:
        """Retrieval: ingest files into a collection, query it, evaluate retrieval."""

    @rag_group.command("ingest")
    @click.argument("paths", nargs=-1, required=True, type=click.Path())
    @click.option("--collection", required=True, help="Collection name (one faiss index per collection).")
    @click.option(
        "--chunk-size",
        default=800,
        show_default=True,
        type=click.IntRange(50),
        help="Characters per chunk (split on headings and sentences).",
    )
    @click.option(
        "--overlap",
        default=120,
        show_default=True,
        type=click.IntRange(0),
        help="Characters of trailing sentences repeated in the next chunk.",
    )
    @click.option(
        "--index",
        "index_kind",
        type=click.Choice(["auto", "flat", "hnsw", "ivf"]),
        default="auto",
        show_default=True,
        help="auto: exact search up to --approx-above vectors, then HNSW.",
    )
    @click.option("--approx-above", default=50_000, show_default=True, type=click.IntRange(1))
    @click.pass_context
    def rag_ingest(ctx, paths, collection, chunk_size, overlap, index_kind, approx_above) -> None:
        """Ingest txt, md, html, pdf and jsonl files (folders recursively). Changed files replace their chunks;
        unreadable files are reported and skipped (exit code 1 if any)."""
        from serving.rag.index import IndexConfig
        from serving.rag.ingest import RagConfig, ingest_paths

        if overlap >= chunk_size:
            raise click.BadParameter(f"--overlap {overlap} must be smaller than --chunk-size {chunk_size}")
        cfg = RagConfig(
            chunk_size=chunk_size, overlap=overlap, index=IndexConfig(kind=index_kind, approx_above=approx_above)
        )
        report = ingest_paths(open_store(ctx), list(paths), collection=collection, config=cfg, progress=True)
        click.echo(
            f"{collection}: {len(report.added)} added, {len(report.replaced)} replaced, "
            f"{len(report.unchanged)} unchanged, {len(report.failed)} skipped; {report.chunks} chunks "
            f"written; index {report.index_kind}"
        )
        for _path, reason in report.failed:
            click.echo(f"skipped {reason}", err=True)
        if report.failed:
            ctx.exit(1)

    @rag_group.command("query")
    @click.argument("question")
    @click.option("--collection", required=True)
    @click.option("-k", default=4, show_default=True, type=click.IntRange(1, 100))
    @click.option("--hybrid", is_flag=True, help="Fuse BM25 with the dense ranking (reciprocal rank fusion).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON line per hit.")
    @click.pass_context
    def rag_query(ctx, question, collection, k, hybrid, as_json) -> None:
        """Show the k best chunks with their scores and documents."""
        from serving.rag.retrieve import retrieve

        hits = retrieve(open_store(ctx), collection, question, k=k, hybrid=hybrid)
        for i, h in enumerate(hits, 1):
            if as_json:
                click.echo(json.dumps({"rank": i, **h.as_dict()}, ensure_ascii=False))
            else:
                where = h.title + (f" / {h.heading}" if h.heading and h.heading != h.title else "")
                click.echo(f"[{i}] {h.score:.4f}  {where}  ({h.source}, chunk {h.chunk_id})\n    {_short(h.text)}")
        if not hits:
            click.echo("no hits (is the collection empty?)")

    @rag_group.command("eval")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--collection", required=True)
    @click.option("-k", default=5, show_default=True, type=click.IntRange(1, 100))
    @click.option("--hybrid", is_flag=True)
    @click.pass_context
    def rag_eval(ctx, file, collection, k, hybrid) -> None:
        """Hit rate@k and MRR@k over questions whose right document or chunk is known."""
        from serving.rag.retrieve import retrieve

        store = open_store(ctx)
        cases = _read_eval(file)
        hits_at, rr = 0, 0.0
        for case in cases:
            hits = retrieve(store, collection, case["question"], k=k, hybrid=hybrid)
            rank = next((i for i, h in enumerate(hits, 1) if _is_relevant(case, h)), None)
            if rank:
                hits_at += 1
                rr += 1.0 / rank
        click.echo(
            json.dumps(
                {
                    "questions": len(cases),
                    "k": k,
                    "hybrid": hybrid,
                    "hit_rate": round(hits_at / len(cases), 4),
                    "mrr": round(rr / len(cases), 4),
                }
            )
        )

    @rag_group.command("list")
    @click.pass_context
    def rag_list(ctx) -> None:
        """Collections with their document and chunk counts."""
        from db import rag_store

        for c in rag_store.list_collections(open_store(ctx)):
            click.echo(f"{c['name']}\t{c['documents']} documents\t{c['chunks']} chunks\t{c['index_kind']}")
