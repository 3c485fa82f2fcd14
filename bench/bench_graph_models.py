"""The models of a whole-graph run, on the quality benchmark's held-out questions: BM25-Kiwi, IDF-only,
v1, v2, v2 without LLM data and the hybrid BM25-Kiwi + v2 from a dataset root (`make run CORPUS=...`,
or `bench/bench_scaling.py --keep DIR`, whose roots are DIR/<set>/dataset), each on the seeded sample
of the set's human questions that bench_quality.py reports (2,000; the tuning questions the defaults
were picked on lie outside it), with the paired bootstrap differences the run's comparison reports.

    nice .venv/bin/python bench/bench_graph_models.py --set msmarco --dataset DIR/msmarco/dataset

The hybrid's weight on v2 is picked on the tuning questions (bench_quality.py's `held_out_split`: the
set's other human questions): the grid's NDCG@10 there, then the held-out rows at the picked weight.
The run's own comparison evaluates every human question of the set, the tuning ones included, at the
default weight; this one does not. Writes bench/graph_models_<set>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sparse_assets.evaluation.comparison import HYBRID

MODELS = {"v1": "neural_sparse_v1_model", "v2": "neural_sparse_v2_model", "v2_without_llm": "neural_sparse_v2_without_llm_model"}
WEIGHTS = tuple(i / 10 for i in range(11))  # the hybrid's weight on v2, tried on the tuning questions


def tuning_ndcg(documents, tuning: list[dict], model: Path) -> dict[float, float]:
    """{weight on the model: the hybrid BM25-Kiwi + model's NDCG@10 on the tuning questions} over WEIGHTS."""
    from sparse_assets.evaluation.hybrid import HybridSettings
    from sparse_assets.evaluation.retrieval import evaluate_systems

    hybrids = {str(weight): ("model", HybridSettings(sparse_weight=weight)) for weight in WEIGHTS}
    rows = evaluate_systems(documents, tuning, models={"model": model}, bm25=True, hybrids=hybrids)
    return {weight: next(r["ndcg@10"] for r in rows if r["system"] == str(weight)) for weight in WEIGHTS}


def main(argv: list[str] | None = None) -> int:
    from bench_quality import HELD_OUT, held_out_split, load_set

    from sparse_assets.evaluation.comparison import paired_differences
    from sparse_assets.evaluation.hybrid import HybridSettings
    from sparse_assets.evaluation.retrieval import evaluate_systems, model_idf
    from sparse_assets.store.layout import ASSET_PATHS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, choices=("korquad", "msmarco"))
    ap.add_argument("--dataset", type=Path, required=True, help="the run's dataset root")
    ap.add_argument("--questions", type=int, default=HELD_OUT, help="the seeded sample bench_quality.py reports")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write

    documents = json.loads((args.dataset / ASSET_PATHS["documents"]).read_text())
    _, questions, _ = load_set(args.set)
    queries, tuning = held_out_split(questions, args.questions)  # the same sample as bench_quality.py
    if not tuning:
        raise SystemExit(f"{args.set} has no human question outside the {args.questions:,} held out: none to pick the hybrid's weight on")
    known = {d["id"] for d in documents}
    if missing := [q["id"] for q in questions if q["positive_id"] not in known]:
        raise SystemExit(
            f"{len(missing)} questions' documents are not in the run's documents (e.g. {missing[0]}): was the run on --set {args.set}?"
        )
    models = {name: args.dataset / ASSET_PATHS[asset] for name, asset in MODELS.items() if (args.dataset / ASSET_PATHS[asset]).is_dir()}
    tuned = tuning_ndcg(documents, tuning, models["v2"])
    picked = max(WEIGHTS, key=tuned.get)
    hybrids = {HYBRID: ("v2", HybridSettings(sparse_weight=picked))}
    rows = evaluate_systems(documents, queries, models=models, bm25=True, idf_only=model_idf(models["v1"]), hybrids=hybrids)
    per_query = {row["system"]: row.pop("per_query_ndcg@10") for row in rows}
    differences = paired_differences(per_query)
    command = "nice .venv/bin/python bench/bench_graph_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {
        "command": command,
        "finished": finished,
        "documents": len(documents),
        "queries": len(queries),
        "tuning_questions": len(tuning),
        "hybrid_weight_tuning_ndcg@10": {str(weight): ndcg for weight, ndcg in tuned.items()},
        "hybrid_weight": picked,
        "hybrid_default_weight": HybridSettings().sparse_weight,
        "rows": rows,
        "differences": differences,
    }
    (args.out / f"graph_models_{args.set}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    lines = [
        f"# Whole-graph models on {args.set}'s held-out questions",
        "",
        f"`{command}` — {finished}",
        "",
        f"{len(documents):,} documents, {len(queries):,} human questions (bench_quality.py's seeded sample; no tuning question)",
        "",
        "| system | NDCG@10 | MRR@10 | R@100 |",
        "|---|---|---|---|",
        *[f"| {r['system']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} |" for r in rows],
        "",
        *[f"- {label}: {d['mean_difference']:+.4f} (95% CI {d['ci_low']:+.4f} .. {d['ci_high']:+.4f})" for label, d in differences.items()],
        "",
        *hybrid_weight_lines(tuned, picked, len(tuning)),
    ]
    (args.out / f"graph_models_{args.set}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def hybrid_weight_lines(
    tuned: dict[float, float], picked: float, tuning_questions: int, hybrid: str = HYBRID, model: str = "v2"
) -> list[str]:
    """The weight grid's tuning NDCG@10, the pick, and the default a corpus without tuning questions gets."""
    from sparse_assets.evaluation.hybrid import HybridSettings

    return [
        f"## {hybrid}: its weight on {model}, picked on {tuning_questions:,} tuning questions (the set's other human questions)",
        "",
        f"| weight on {model} | " + " | ".join(f"{weight:.1f}" for weight in tuned) + " |",
        "|---|" + "---|" * len(tuned),
        "| tuning NDCG@10 | " + " | ".join(f"{ndcg:.4f}" for ndcg in tuned.values()) + " |",
        "",
        f"Picked: {picked:.1f} (the held-out rows above use it; 0 ranks as BM25-Kiwi, 1 as {model}).",
        (
            f"Default for a corpus without tuning questions (`HybridSettings.sparse_weight`, `performance_comparison`'s "
            f"`sparse_weight`): {HybridSettings().sparse_weight:.1f}, both systems weighed alike, OpenSearch's arithmetic_mean "
            "when the pipeline gives no weights."
        ),
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
