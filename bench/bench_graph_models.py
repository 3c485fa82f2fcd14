"""The models of a whole-graph run, on the quality benchmark's held-out questions: BM25-Kiwi, IDF-only,
v1, v2 and v2 without LLM data from a dataset root (`make run CORPUS=...`, or
`bench/bench_scaling.py --keep DIR`, whose roots are DIR/<set>/dataset), each on the seeded sample of
the set's human questions that bench_quality.py reports (2,000; the tuning questions the defaults
were picked on lie outside it), with the paired bootstrap differences the run's comparison reports.

    nice .venv/bin/python bench/bench_graph_models.py --set msmarco --dataset DIR/msmarco/dataset

The run's own comparison evaluates every human question of the set, the tuning ones included; this
one does not. Writes bench/graph_models_<set>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODELS = {"v1": "neural_sparse_v1_model", "v2": "neural_sparse_v2_model", "v2_without_llm": "neural_sparse_v2_without_llm_model"}


def main(argv: list[str] | None = None) -> int:
    from bench_quality import load_set

    from sparse_assets.evaluation.comparison import paired_differences
    from sparse_assets.evaluation.retrieval import evaluate_systems, model_idf
    from sparse_assets.store.layout import ASSET_PATHS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, choices=("korquad", "msmarco"))
    ap.add_argument("--dataset", type=Path, required=True, help="the run's dataset root")
    ap.add_argument("--questions", type=int, default=2000, help="the seeded sample bench_quality.py reports")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write

    documents = json.loads((args.dataset / ASSET_PATHS["documents"]).read_text())
    _, queries, _ = load_set(args.set)
    random.Random(7).shuffle(queries)  # the same sample as bench_quality.py
    queries = queries[: args.questions]
    known = {d["id"] for d in documents}
    if missing := [q["id"] for q in queries if q["positive_id"] not in known]:
        raise SystemExit(
            f"{len(missing)} questions' documents are not in the run's documents (e.g. {missing[0]}): was the run on --set {args.set}?"
        )
    models = {name: args.dataset / ASSET_PATHS[asset] for name, asset in MODELS.items() if (args.dataset / ASSET_PATHS[asset]).is_dir()}
    rows = evaluate_systems(documents, queries, models=models, bm25=True, idf_only=model_idf(models["v1"]))
    per_query = {row["system"]: row.pop("per_query_ndcg@10") for row in rows}
    differences = paired_differences(per_query)
    command = "nice .venv/bin/python bench/bench_graph_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {
        "command": command,
        "finished": finished,
        "documents": len(documents),
        "queries": len(queries),
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
    ]
    (args.out / f"graph_models_{args.set}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
