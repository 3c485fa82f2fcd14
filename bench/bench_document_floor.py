"""The document floor's weight, checked on tuning questions (issue 26, step 2): each trained v1's
document vectors plus lam x more of the floor, the document's own pieces with BM25 saturation
(`saturation.saturated_documents`, IDF-only's document side), scored with v1's own query side on each
set's tuning and held-out questions. The extra floor is scaled to the mean weight of v1's document
vectors, so lam 1 gives both the same mean. lam 0 is the model as trained: with the floor in training
(`document_floor`), a best lam near 0 on the tuning questions says the trained weight is right; before
it (stop 34), this probe is what showed a floor was worth training in.

    nice .venv/bin/python bench/bench_document_floor.py [--sets korquad,msmarco]

Needs the v1 models that bench_quality.py keeps (.cache/bench/v1_<set>): run it first. Nothing is
retrained here. Writes bench/document_floor.json and .md.
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

LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
TUNING = 2000  # the first tuning questions (bench_quality's held_out_split order) the floor is picked on


def floor_ndcg(name: str, model_folder: Path) -> dict[str, dict[float, float]]:
    """{"tuning" | "held_out": {lam: NDCG@10}} of v1 + lam x the saturated floor on one set."""
    import numpy as np
    from bench_quality import held_out_split, load_set

    from sparse_assets.encoder.sparse_model import document_text, encode_documents, encode_queries, load_sparse_encoder, model_tokenizer
    from sparse_assets.evaluation.retrieval import evaluate_matrices, evaluation_vocabulary, idf_only_matrices, model_idf

    documents, questions, _ = load_set(name)
    held_out, tuning = held_out_split(questions)
    model = load_sparse_encoder(model_folder)
    tokenizer = model_tokenizer(model)
    ids, texts = [d["id"] for d in documents], [document_text(d) for d in documents]
    floor, _ = idf_only_matrices(tokenizer, model_idf(model_folder)[1], texts, [])
    results = {}
    for split, queries in (("tuning", tuning[:TUNING]), ("held_out", held_out)):
        qmat = encode_queries(model, [q["query"] for q in queries])
        dmat = encode_documents(model, texts, vocabulary=evaluation_vocabulary(tokenizer, texts, qmat)).tocsr()
        scale = float(np.mean(dmat.data)) / float(np.mean(floor.data))
        results[split] = {lam: evaluate_matrices(ids, queries, dmat + lam * scale * floor, qmat)["ndcg@10"] for lam in LAMBDAS}
        print(json.dumps({name: {split: {str(lam): round(v, 4) for lam, v in results[split].items()}}}), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="korquad,msmarco", help="comma-separated: korquad, msmarco")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench", help="where bench_quality.py kept its v1 models")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    if missing := [name for name in names if not (args.cache / f"v1_{name}").is_dir()]:
        raise SystemExit(f"no v1 model for {missing} in {args.cache}: run bench/bench_quality.py --sets {','.join(missing)} first")
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write
    command = "nice .venv/bin/python bench/bench_document_floor.py " + " ".join(argv if argv is not None else sys.argv[1:])
    sets = {name: floor_ndcg(name, args.cache / f"v1_{name}") for name in names}
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# v1's documents plus lam x more of their own pieces (BM25 saturation), at inference",
        "",
        f"`{command}` — {finished}; NDCG@10, lam 0 is v1 as trained; tuning: the first {TUNING:,} tuning questions",
        "",
        "| set | questions | " + " | ".join(f"lam {lam:g}" for lam in LAMBDAS) + " |",
        "|---|---|" + "---|" * len(LAMBDAS),
    ]
    picks = [""]
    for name, splits in sets.items():
        picked = max(LAMBDAS, key=splits["tuning"].get)
        for split, ndcg in splits.items():
            lines.append(f"| {name} | {split} | " + " | ".join(f"{ndcg[lam]:.4f}" for lam in LAMBDAS) + " |")
        gain = splits["held_out"][picked] - splits["held_out"][0.0]
        picks.append(f"- {name}: picked on tuning lam {picked:g}, held-out {gain:+.4f} against lam 0")
    lines += picks
    results = {
        "command": command,
        "finished": finished,
        "sets": {n: {s: {str(k): v for k, v in d.items()} for s, d in x.items()} for n, x in sets.items()},
    }
    (args.out / "document_floor.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "document_floor.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
