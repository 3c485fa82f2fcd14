"""Model verbs of the `sparse-assets` command: evaluate, search, export (BEIR-format input).

    sparse-assets evaluate --model DIR --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--bm25] [--model-idf] [--output results.json]
    sparse-assets search --model DIR --corpus corpus.jsonl "질문" [-k 10]
    sparse-assets export --model DIR --out DIR [--corpus corpus.jsonl] [--force]

A model moved to another corpus keeps its document weights (full vocabulary) and takes that corpus's
statistics: `evaluate` and `search` re-fit the query-side IDF and the length pivot to `--corpus`
(`--model-idf` keeps the training corpus's), `export --corpus` writes idf.json from that corpus.

The BEIR files are read and cross-checked by `sparse_assets.data.corpus.read_beir` (the reader of the
`beir:DIR` corpus source). Errors in the input raise `ModelCommandError` or `CorpusError` (both
ValueErrors) with the file and what to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sparse_assets.store.dataset_manager import index_mismatch


class ModelCommandError(ValueError):
    """Bad input to a model verb; the message names the file and what to do."""


def _model_folder(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ModelCommandError(
            f"{path}: model folder not found (give the folder of a trained model, e.g. dataset/base_model/neural_sparse_v1_model)"
        )
    if not (path / "modules.json").exists():
        raise ModelCommandError(
            f"{path}: no modules.json, so this is not a saved sparse model folder; give a folder written by "
            "the neural_sparse_v1_model / v2 asset (a plain masked-LM folder must be trained first)"
        )
    if changed := index_mismatch(path):
        print(f"warning: {changed}", file=sys.stderr)
    return path


def _evaluate(args) -> int:
    from sparse_assets.data.corpus import read_beir
    from sparse_assets.evaluation.retrieval import bm25_system, idf_only_system, model_idf, model_system

    model = _model_folder(args.model)
    data = read_beir(args.corpus, args.queries, args.qrels)
    corpus, qrels = data.documents, data.qrels
    records = [{"id": q, "query": data.queries[q]} for q in qrels]
    unlabelled = len(set(data.queries) - set(qrels))
    if unlabelled:
        print(
            f"note: {unlabelled} of {len(data.queries)} queries have no relevance labels in {args.qrels} and are not scored",
            file=sys.stderr,
        )
    from sparse_assets.encoder.sparse_model import document_text

    ids, texts = [d["id"] for d in corpus], [document_text(d) for d in corpus]
    rows = []
    refit = not args.model_idf
    if args.bm25:
        rows.append(bm25_system(ids, texts, records, qrels))
        rows.append(idf_only_system(*model_idf(model, texts if refit else None), ids, texts, records, qrels))
    row = model_system(model, ids, texts, records, qrels, corpus_statistics=refit)
    row["system"] = "model"
    rows.append(row)
    for r in rows:
        r.pop("per_query_ndcg@10", None)
    print(format_table(rows))
    idf = "this corpus (re-fitted)" if refit else "the model's own idf.json"
    print(f"{len(records)} queries over {len(corpus)} documents; query IDF and length pivot from {idf}")
    result = {
        "rows": rows,
        "model": str(model),
        "corpus": str(args.corpus),
        "queries": len(records),
        "unlabelled_queries": unlabelled,
        "documents": len(corpus),
        "query_idf": idf,
    }
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

    from sparse_assets.data.corpus import read_beir_corpus
    from sparse_assets.encoder.sparse_model import (
        document_text,
        encode_documents,
        encode_queries,
        load_sparse_encoder,
        model_tokenizer,
        with_corpus_statistics,
    )
    from sparse_assets.evaluation.retrieval import SparseIndex

    if not args.query.strip():
        raise ModelCommandError(
            f'the query {args.query!r} is empty: give the text to search for, e.g. sparse-assets search ... "대한민국 애국가"'
        )
    if args.k < 1:
        raise ModelCommandError(f"-k {args.k}: give how many documents to show, at least 1 (e.g. -k 10)")
    corpus = read_beir_corpus(args.corpus)
    model = with_corpus_statistics(load_sparse_encoder(_model_folder(args.model)), [document_text(d) for d in corpus])
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

    texts = None
    if args.corpus:
        from sparse_assets.data.corpus import read_beir_corpus
        from sparse_assets.encoder.sparse_model import document_text

        texts = [document_text(d) for d in read_beir_corpus(args.corpus)]
    result = export_opensearch(_model_folder(args.model), Path(args.out), name=args.name, corpus_texts=texts, force=args.force)
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
    ev.add_argument("--bm25", action="store_true", help="also evaluate BM25 over Kiwi morphemes and the IDF-only baseline")
    ev.add_argument(
        "--model-idf", action="store_true", help="keep the model's idf.json and length pivot instead of re-fitting them to --corpus"
    )
    ev.add_argument("--output", type=Path, help="write the rows as JSON here")
    ev.set_defaults(run=_evaluate)
    se = subparsers.add_parser("search", help="rank a corpus for one query, with the matching terms")
    se.add_argument("--model", type=Path, required=True)
    se.add_argument("--corpus", type=Path, required=True)
    se.add_argument("-k", type=int, default=10, help="how many documents to show (at least 1; default 10)")
    se.add_argument("query")
    se.set_defaults(run=_search)
    ex = subparsers.add_parser("export", help="write the OpenSearch ML Commons packages")
    ex.add_argument("--model", type=Path, required=True)
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--name", default=None)
    ex.add_argument(
        "--corpus", type=Path, default=None, help="corpus.jsonl of the target index: idf.json and length pivot are computed from it"
    )
    ex.add_argument("--force", action="store_true", help="replace the register JSON another export left in --out")
    ex.set_defaults(run=_export)
