"""Re-synthesis cost after the corpus grows: the LLM step on KorQuAD dev with 10% of its
documents held back, then again on the whole corpus, with the real LLM backend and the completion
store between them.

    nice .venv/bin/python bench/bench_resynthesis.py [--new-share 0.1] [--max-documents 300]

The first run starts from an empty store (the full cost); the second asks the LLM only about the
sampled documents it has not seen. Reports both runs' wall time, the ratio (goal: <= 15%), how many
prompts came from the store and how many were generated. Writes bench/resynthesis.json and
bench/resynthesis.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def documents_asset(docs: list[dict]):
    import dagster as dg

    @dg.asset(name="documents")
    def documents() -> list[dict]:
        return docs

    return documents


def materialize_llm_step(docs: list[dict], dataset: Path, max_documents: int) -> dict:
    """One materialization of `synthetic_qd_pairs` over `docs`: wall time and the step's metadata."""
    import dagster as dg

    from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
    from sparse_assets.defs.io_managers import io_managers
    from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource

    started = time.perf_counter()
    result = dg.materialize(
        [documents_asset(docs), synthetic_qd_pairs],
        resources={
            **io_managers(str(dataset)),
            "llm": LLMResource(),
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
        run_config={"ops": {"synthetic_qd_pairs": {"config": {"max_documents": max_documents}}}},
    )
    wall = time.perf_counter() - started
    meta = {
        k: v.value
        for k, v in result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata.items()
        if isinstance(v.value, int | float | str)
    }
    keys = ("documents", "accepted", "llm/from_store", "llm/generated_items", "llm/prompts", "llm/engine_start_s", "llm/generation_s")
    return {"corpus_documents": len(docs), "wall_s": round(wall, 1), **{k: meta[k] for k in keys if k in meta}}


def main(argv: list[str] | None = None) -> int:
    from bench_quality import load_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-share", type=float, default=0.1, help="share of the documents held back from the first run")
    ap.add_argument("--max-documents", type=int, default=300, help="synthetic_qd_pairs max_documents (the default)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write

    documents, _, _ = load_set("korquad")
    every = round(1 / args.new_share)
    before = [d for i, d in enumerate(documents) if i % every != every - 1]
    with tempfile.TemporaryDirectory(prefix="bench_resynthesis_") as work:
        dataset = Path(work) / "dataset"
        print(f"full run: {len(before)} documents, empty store", flush=True)
        full = materialize_llm_step(before, dataset, args.max_documents)
        print(json.dumps(full), flush=True)
        print(f"re-synthesis: {len(documents)} documents ({len(documents) - len(before)} new)", flush=True)
        again = materialize_llm_step(documents, dataset, args.max_documents)
        print(json.dumps(again), flush=True)
    ratio = again["wall_s"] / full["wall_s"]
    results = {
        "command": "nice .venv/bin/python bench/bench_resynthesis.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "full": full,
        "resynthesis": again,
        "ratio": round(ratio, 3),
        "goal": "<= 0.15",
        "met": ratio <= 0.15,
    }
    (args.out / "resynthesis.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = [("full run (empty store)", full), (f"after {len(documents) - len(before)} new documents", again)]
    lines = [
        "# Re-synthesis after the corpus grows",
        "",
        f"`{results['command']}` — {results['finished']}",
        "",
        "| run | corpus documents | sampled | from store | generated | engine start s | generation s | wall s |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {r['corpus_documents']} | {r.get('documents')} | {r.get('llm/from_store')} | {r.get('llm/generated_items')} | "
            f"{r.get('llm/engine_start_s', '-')} | {r.get('llm/generation_s', '-')} | {r['wall_s']} |"
            for name, r in rows
        ],
        "",
        f"Re-synthesis / full: {ratio:.1%} (goal <= 15%: {'met' if results['met'] else 'NOT met'}).",
        "",
    ]
    (args.out / "resynthesis.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
