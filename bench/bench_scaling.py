"""How the whole graph's cost grows with the corpus: `all_assets_job` (what `make run`
runs) on KorQuAD dev (960 documents) and on msmarco_ko (7,266 passages, through the BEIR source),
each on a fresh dataset root and Dagster instance, then per stage (Dagster step) the wall time and
the step process's peak memory, side by side with the cost per 1,000 documents.

    nice .venv/bin/python bench/bench_scaling.py [--corpora korquad,msmarco]

Every run starts from nothing a user would not already have after `make install`: an empty dataset
root (no LLM completions, no dense vectors) and an empty cache except the converted base models
(the base encoder and the LLM, converted once per machine). Step times come from the run's event
log (STEP_SUCCESS durations; steps of the multiprocess executor may overlap, so they need not sum
to the wall time); peak memory from each materialization's `step_peak_memory_mb`. The LLM step is
capped at its `max_documents` (default 300; `--llm-documents N`), so its cost is per sampled
document, not per corpus document. A stage whose cost per document on the larger corpus exceeds 1.5x its KorQuAD figure is
flagged. The comparison the run itself wrote (`performance_comparison.json`) is reported too.
Writes bench/scaling.json and bench/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from graph_bench.dev_sets import CORPUS_SOURCES, MUSE_KO_EN

CORPORA = {"embedded": "embedded", **CORPUS_SOURCES}  # embedded: the default corpus, a quick check of this script
CONVERTED_MODELS = ("e5-small-mlm-v1", "gemma-3-270m-f32")  # made once per machine, kept between runs
GROWTH_LIMIT = 1.5  # a stage's cost per document on the larger corpus, relative to KorQuAD's


def fresh_cache(work: Path) -> Path:
    """A cache folder holding only the converted base models (linked from the project's cache)."""
    cache = work / "cache"
    cache.mkdir()
    shared = Path(os.environ.get("SPARSE_ASSETS_CACHE", ROOT / ".cache"))
    for name in CONVERTED_MODELS:
        if (shared / name).is_dir():
            (cache / name).symlink_to((shared / name).resolve())
    return cache


def run_graph(name: str, corpus: str, work: Path, log: Path, llm_documents: int | None = None) -> dict:
    """`all_assets_job` on `corpus` with a fresh instance, dataset root and cache; its wall time, and
    per step the duration and the peak memory from the instance's event log. `llm_documents`: the
    LLM step's `max_documents` (None: its default)."""
    import dagster as dg

    from sparse_assets.defs.run_output import RUN_OUTPUT_CONFIG
    from sparse_assets.store.layout import ASSET_PATHS

    home, dataset = work / "dagster_home", work / "dataset"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SPARSE_ASSETS_CORPUS": corpus,
        "SPARSE_ASSETS_DATASET": str(dataset),
        "SPARSE_ASSETS_CACHE": str(fresh_cache(work)),
        "SPARSE_ASSETS_MUSE": str(MUSE_KO_EN),
        "PYTHONPATH": str(ROOT),
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "sparse_assets.defs.definitions",
        "-j",
        "all_assets_job",
        "-c",
        str(RUN_OUTPUT_CONFIG),
    ]
    if llm_documents is not None:
        llm_config = work / "llm_documents.yaml"
        llm_config.write_text(json.dumps({"ops": {"synthetic_qd_pairs": {"config": {"max_documents": llm_documents}}}}))  # JSON is YAML
        command += ["-c", str(llm_config)]
    print(f"{name}: {corpus} (log: {log})", flush=True)
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, check=False, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if code:
        raise SystemExit(f"{name}: the run failed (exit {code}); see {log}")

    steps: dict[str, dict] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or not record.step_key:
                continue
            step = steps.setdefault(record.step_key, {"seconds": 0.0, "peak_mb": 0.0})
            if event.event_type_value == "STEP_SUCCESS":
                step["seconds"] = round(event.event_specific_data.duration_ms / 1000, 1)
            elif event.event_type_value == "ASSET_MATERIALIZATION":
                peak = event.event_specific_data.materialization.metadata.get("step_peak_memory_mb")
                step["peak_mb"] = max(step["peak_mb"], getattr(peak, "value", 0.0) or 0.0)
    documents = len(json.loads((dataset / ASSET_PATHS["documents"]).read_text()))
    comparison = json.loads((dataset / ASSET_PATHS["performance_comparison"]).read_text())
    return {
        "corpus": corpus,
        "documents": documents,
        "wall_s": round(wall, 1),
        "peak_mb": max((s["peak_mb"] for s in steps.values()), default=0.0),
        "steps": {key: value for key, value in steps.items() if value["peak_mb"]},  # asset steps (checks write nothing)
        "comparison": {row["system"]: round(row["ndcg@10"], 4) for row in comparison["rows"]},
        "eval_queries": comparison["queries"],
        "differences": comparison["differences"],
    }


def report(results: dict, command: str) -> str:
    names = list(results)
    base = results[names[0]]
    lines = [
        "# Whole-graph cost at two corpus sizes",
        "",
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        " · ".join(
            f"{n}: {r['documents']:,} documents, wall {r['wall_s'] / 60:.1f} min, peak {r['peak_mb'] / 1024:.1f} GB"
            for n, r in results.items()
        ),
        "",
        "| stage | " + " | ".join(f"{n} s | {n} s / 1k docs | {n} peak GB" for n in names) + " | per-doc ratio |",
        "|---|" + "---|---|---|" * len(names) + "---|",
    ]
    flagged = []
    for step in base["steps"]:
        cells, per_doc = [], []
        for n in names:
            s = results[n]["steps"].get(step, {"seconds": 0.0, "peak_mb": 0.0})
            per_doc.append(s["seconds"] / results[n]["documents"] * 1000)
            cells.append(f"{s['seconds']:.1f} | {per_doc[-1]:.1f} | {s['peak_mb'] / 1024:.2f}")
        ratio = per_doc[-1] / per_doc[0] if len(per_doc) > 1 and per_doc[0] else None
        if ratio is not None and ratio > GROWTH_LIMIT:
            flagged.append(f"{step} ({ratio:.2f}x)")
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {'-' if ratio is None else f'{ratio:.2f}'} |")
    lines += [
        "",
        f"Stages whose cost per document grows more than {GROWTH_LIMIT}x: {', '.join(flagged) or 'none'}.",
        "",
        "## The runs' own comparison (NDCG@10 on each set's evaluation questions)",
        "",
        "| system | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    systems = dict.fromkeys(s for r in results.values() for s in r["comparison"])
    lines += [f"| {s} | " + " | ".join(f"{results[n]['comparison'].get(s, float('nan')):.4f}" for n in names) + " |" for s in systems]
    lines += ["", " · ".join(f"{n}: {r['eval_queries']} questions" for n, r in results.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="korquad,msmarco", help=f"comma-separated, from {sorted(CORPORA)}; the first is the baseline")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    ap.add_argument(
        "--keep", type=Path, help="run in DIR/<corpus> and keep its dataset root and Dagster instance (default: a temporary folder)"
    )
    ap.add_argument("--llm-documents", type=int, help="the LLM step's max_documents (0: every document; default: its default)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.corpora.split(",")) - set(CORPORA))
    if unknown:
        ap.error(f"--corpora: unknown {', '.join(unknown)}; choose from {', '.join(sorted(CORPORA))}")
    args.out.mkdir(parents=True, exist_ok=True)  # before the work: a long run must not fail at its last write
    command = "nice .venv/bin/python bench/bench_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {}
    for name in args.corpora.split(","):
        log = Path(tempfile.gettempdir()) / f"bench_scaling_{name}.log"
        if args.keep:
            (args.keep / name).mkdir(parents=True)  # fails on a folder left by an earlier run
            results[name] = run_graph(name, CORPORA[name], args.keep / name, log, args.llm_documents)
        else:
            with tempfile.TemporaryDirectory(prefix=f"bench_scaling_{name}_") as work:
                results[name] = run_graph(name, CORPORA[name], Path(work), log, args.llm_documents)
        print(json.dumps(results[name]), flush=True)
        (args.out / "scaling.json").write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")
    text = report(results, command)
    (args.out / "scaling.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
