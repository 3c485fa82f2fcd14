"""Model verbs of the `sparse-assets` command: evaluate, search, export (BEIR-format input).

    sparse-assets evaluate --model DIR --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--bm25] [--output results.json]
    sparse-assets search --model DIR --corpus corpus.jsonl "질문" [-k 10]
    sparse-assets export --model DIR --out DIR

Errors in the input raise `ModelCommandError` (a ValueError) with the file and what to do; the CLI
prints it and exits 2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


class ModelCommandError(ValueError):
    """Bad input to a model verb; the message names the file and what to do."""


def _read_jsonl(path: Path, kind: str) -> list[dict]:
    if not path.exists():
        raise ModelCommandError(f"{path}: {kind} file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ModelCommandError(f"{path}:{n}: not valid JSON ({exc.msg}); a BEIR {kind} file has one JSON object per line") from None
            if "_id" not in row:
                raise ModelCommandError(f"{path}:{n}: no '_id' field; BEIR {kind} lines look like {{\"_id\": ..., \"text\": ...}}")
            rows.append(row)
    if not rows:
        raise ModelCommandError(f"{path}: empty {kind} file")
    return rows


def read_corpus(path: Path) -> list[dict]:
    """BEIR corpus.jsonl -> Document records."""
    return [
        {"id": str(r["_id"]), "title": r.get("title", "") or "", "text": r.get("text", ""), "source": str(path)}
        for r in _read_jsonl(Path(path), "corpus")
    ]


def read_queries(path: Path) -> dict[str, str]:
    return {str(r["_id"]): r.get("text", "") for r in _read_jsonl(Path(path), "queries")}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """qrels.tsv with a header line: query-id, corpus-id, score."""
    path = Path(path)
    if not path.exists():
        raise ModelCommandError(f"{path}: qrels file not found")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if not header or len(header) < 3 or header[2].strip().lstrip("-").isdigit():
            raise ModelCommandError(f"{path}: the first line must be the header 'query-id<TAB>corpus-id<TAB>score' (BEIR format)")
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 3:
                raise ModelCommandError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score)")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise ModelCommandError(f"{path}:{n}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def _check_consistency(corpus: list[dict], queries: dict[str, str], qrels: dict, paths) -> dict:
    ids = {d["id"] for d in corpus}
    missing_docs = sorted({d for rel in qrels.values() for d in rel} - ids)
    if missing_docs:
        raise ModelCommandError(
            f"{paths.qrels}: {len(missing_docs)} judged documents (e.g. {missing_docs[:3]}) are not in {paths.corpus}: "
            "the qrels belong to another corpus; give the matching corpus.jsonl"
        )
    missing_q = sorted(set(qrels) - set(queries))
    if len(missing_q) == len(qrels):
        raise ModelCommandError(f"{paths.qrels}: none of its query ids are in {paths.queries}: give the matching queries.jsonl")
    return {q: rel for q, rel in qrels.items() if q in queries and any(s > 0 for s in rel.values())}


def _model_folder(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ModelCommandError(f"{path}: model folder not found (give the folder of a trained model, e.g. dataset/base_model/neural_sparse_v1_model)")
    if not (path / "modules.json").exists():
        raise ModelCommandError(
            f"{path}: no modules.json, so this is not a saved sparse model folder; give a folder written by "
            "the neural_sparse_v1_model / v2 asset (a plain masked-LM folder must be trained first)"
        )
    return path


def _evaluate(args) -> int:
    from sparse_assets.retrieval import SparseIndex, bm25_system, model_system, run_metrics  # noqa: F401

    model = _model_folder(args.model)
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    qrels = _check_consistency(corpus, queries, read_qrels(args.qrels), args)
    records = [{"id": q, "query": queries[q]} for q in qrels]
    from sparse_assets.sparse_model import document_text

    ids, texts = [d["id"] for d in corpus], [document_text(d) for d in corpus]
    rows = []
    if args.bm25:
        rows.append(bm25_system(ids, texts, records, qrels))
    row = model_system(model, ids, texts, records, qrels)
    row["system"] = "model"
    rows.append(row)
    print(format_table(rows))
    result = {"rows": rows, "model": str(model), "corpus": str(args.corpus), "queries": len(records), "documents": len(corpus)}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
    return 0


def format_table(rows: list[dict]) -> str:
    cols = ["ndcg@10", "mrr@10", "recall@10", "recall@100", "doc_active_dims", "query_latency_ms"]
    out = [f"{'system':<20}" + "".join(f"{c:>18}" for c in cols)]
    for r in rows:
        out.append(f"{r['system']:<20}" + "".join(f"{'-' if r.get(c) is None else format(r[c], '.4f'):>18}" for c in cols))
    return "\n".join(out)


def _search(args) -> int:
    import numpy as np

    from sparse_assets.retrieval import SparseIndex
    from sparse_assets.sparse_model import document_text, encode_documents, encode_queries, load_sparse_encoder, model_tokenizer

    model = load_sparse_encoder(_model_folder(args.model))
    corpus = read_corpus(args.corpus)
    dmat = encode_documents(model, [document_text(d) for d in corpus])
    qmat = encode_queries(model, [args.query])
    hits = SparseIndex([d["id"] for d in corpus], dmat).search(qmat, k=args.k)[0]
    tokenizer = model_tokenizer(model)
    row = {d["id"]: i for i, d in enumerate(corpus)}
    q = qmat.getrow(0)
    print(f"query: {args.query}")
    print("query terms: " + ", ".join(f"{t}={w:.2f}" for t, w in zip(tokenizer.convert_ids_to_tokens(q.indices.tolist()), q.data)))
    if not hits:
        print("no document matches")
    for rank, (doc_id, score) in enumerate(hits, 1):
        d = dmat.getrow(row[doc_id])
        common = np.intersect1d(q.indices, d.indices)
        terms = sorted(((float(q[0, t] * d[0, t]), t) for t in common), reverse=True)
        shown = ", ".join(f"{tokenizer.convert_ids_to_tokens([t])[0]}({q[0, t]:.2f}x{d[0, t]:.2f})" for _, t in terms[:8])
        text = corpus[row[doc_id]]["text"].replace("\n", " ")
        print(f"{rank:>3}. {score:8.3f}  {doc_id}  {text[:80]}")
        print(f"      terms: {shown}")
    return 0


def _export(args) -> int:
    from sparse_assets.export import export_opensearch

    result = export_opensearch(_model_folder(args.model), Path(args.out), name=args.name)
    for function, info in result.items():
        print(f"{function}: {info['zip']} ({info['size']} bytes, sha256 {info['sha256']})\n  register body: {info['json']}")
    return 0


def add_model_commands(subparsers) -> None:
    """Add `evaluate`, `search` and `export` to an argparse subparsers object (each sets `run`)."""
    ev = subparsers.add_parser("evaluate", help="evaluate a model (and BM25) on a BEIR-format data set")
    ev.add_argument("--model", type=Path, required=True)
    ev.add_argument("--corpus", type=Path, required=True)
    ev.add_argument("--queries", type=Path, required=True)
    ev.add_argument("--qrels", type=Path, required=True, help="qrels.tsv with a header line")
    ev.add_argument("--bm25", action="store_true", help="also evaluate BM25 over Kiwi morphemes")
    ev.add_argument("--output", type=Path, help="write the rows as JSON here")
    ev.set_defaults(run=_evaluate)
    se = subparsers.add_parser("search", help="rank a corpus for one query, with the matching terms")
    se.add_argument("--model", type=Path, required=True)
    se.add_argument("--corpus", type=Path, required=True)
    se.add_argument("-k", type=int, default=10)
    se.add_argument("query")
    se.set_defaults(run=_search)
    ex = subparsers.add_parser("export", help="write the OpenSearch ML Commons packages")
    ex.add_argument("--model", type=Path, required=True)
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--name", default=None)
    ex.set_defaults(run=_export)
