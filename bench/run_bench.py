"""The project benchmark: every stage against its peer, in one run.

    .venv/bin/python bench/run_bench.py                      # everything, KorQuAD 1.0 dev (what `make bench` runs)
    .venv/bin/python bench/run_bench.py --quick              # a KorQuAD slice, small LLM/training settings
    .venv/bin/python bench/run_bench.py --only encoding,latency --model DIR

Sections (``--only`` takes a comma-separated subset; default: all):

- ``full``: ``dagster job execute -j all_assets_job`` in a subprocess, DAGSTER_HOME and SPARSE_ASSETS_*
  pointing under bench/out/<name>/. Wall time and peak memory (RSS summed over the whole process
  tree, sampled with psutil: the run, every step process, the LLM worker). Per step (asset): wall
  time from the run's event log (STEP_START -> STEP_SUCCESS) and peak RSS of the step's own
  process subtree (its pid is on its events; the LLM worker is a child of its step).
- ``stages``: with ``--stages-mode separate`` every asset is materialized alone,
  ``dagster asset materialize --select NAME`` in its own subprocess, in dependency order, in a fresh
  bench folder (costs a second pipeline run); with ``--stages-mode job`` (default) the per-step
  figures of ``full`` are the stage table.
- ``rerun``: "LLM settings changed" (resynthesis_job with another sampling temperature and seed)
  and "training settings changed" (only group enhanced_model, another training seed), each as a
  ratio of the full run's wall time; both run on the folder of ``full``.
- ``encoding``: documents/s of sparse_assets.encoder.sparse_model.encode_documents against plain
  ``SparseEncoder.encode_document`` on the same model folder (v1 of ``full`` or ``--model``).
- ``latency``: per-query latency (one query at a time: encode + top-10) of SparseIndex with the
  model's inference-free query vectors against bm25s over the same corpus and the same subword
  tokens (and the project's Kiwi-morpheme BM25 for reference).
- ``llm``: LLM tokens/s from the ``synthetic_qd_pairs`` / ``enhanced_synonyms`` materialization
  metadata of the runs above.

Results: bench/results.json and the table in bench/README.md (``--quick``: bench/out/quick/).
A subset run updates only its sections of an existing results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from graph_bench.dev_sets import KORQUAD_DEV
from graph_bench.model_speed import load_dataset, section_encoding, section_latency, spread
from graph_bench.processes import wait_for_no_llm
from graph_bench.report import goals, machine_notes, markdown
from graph_bench.runs import BenchFolder, RunFailed, base_run_config, graph_info, merged, restricted

SECTIONS = ("full", "stages", "rerun", "encoding", "latency", "llm")


def section_full(folder: BenchFolder, run_config: dict, log) -> dict:
    log("full pipeline: all_assets_job")
    result = folder.run("all_assets_job", ["job", "execute", "-j", "all_assets_job"], run_config)
    steps = result["run"]["steps"]
    log(
        f"  {result['wall_s']:.0f} s, peak {result['peak_mb']:.0f} MB PSS ({result['peak_rss_sum_mb']:.0f} MB RSS summed), {len(steps)} steps"
    )
    return {**result, "run_config": run_config}


def section_stages_separate(base: Path, corpus: str, graph: dict, run_config: dict, log) -> dict:
    folder = BenchFolder(base, "stages", corpus, fresh=True)
    rows = []
    for keys in graph["steps"]:
        log(f"stage {','.join(keys)}")
        result = folder.run("_".join(keys), ["asset", "materialize", "--select", ",".join(keys)], restricted(run_config, keys) or None)
        rows.append(
            {
                "stage": ",".join(keys),
                "group": graph["groups"][keys[0]],
                "wall_s": result["wall_s"],
                "peak_mb": result["peak_mb"],
                "peak_rss_sum_mb": result["peak_rss_sum_mb"],
                "step_wall_s": sum(s["wall_s"] for s in result["run"]["steps"].values()),
                "run_id": result["run"]["run_id"],
                "log": result["log"],
            }
        )
        log(f"  {result['wall_s']:.1f} s (process), peak {result['peak_mb']:.0f} MB")
    return {
        "mode": "separate",
        "note": "each asset in its own `dagster asset materialize` process (wall_s includes "
        "process start and loading the definitions); peak = PSS summed over the process tree",
        "rows": rows,
        "total_wall_s": round(sum(r["wall_s"] for r in rows), 1),
    }


def stages_from_job(full: dict, graph: dict) -> dict:
    rows = []
    t0 = min((step.get("start", 0) for step in full["run"]["steps"].values()), default=0)
    for key, step in full["run"]["steps"].items():  # in the order they started
        group = graph["groups"].get(key)
        rows.append(
            {
                "stage": key,
                "group": group or "(asset check)",
                "started_s": round(step.get("start", t0) - t0, 1),
                "wall_s": step["wall_s"],
                "peak_mb": step["peak_mb"],
                "peak_rss_sum_mb": step["peak_rss_sum_mb"],
                "status": step["status"],
            }
        )
    return {
        "mode": "job",
        "note": "per step of the all_assets_job run (multiprocess executor: each step in its own process): wall time from "
        "the event log, peak = PSS of the step's process subtree (step process + LLM worker + vLLM engine)",
        "rows": rows,
    }


def rerun_llm_changed(folder: BenchFolder, graph: dict, run_config: dict, full_wall: float, log) -> dict:
    """'LLM settings changed': resynthesis_job (groups llm_generated + enhanced_model) with another
    sampling temperature and seed for synthetic_qd_pairs; upstream assets are reused."""
    if "synthetic_qd_pairs" not in graph["order"]:
        return {"skipped": "synthetic_qd_pairs is not in the definitions"}
    resynthesis = [k for k in graph["order"] if graph["groups"][k] in ("llm_generated", "enhanced_model")]
    config = merged(restricted(run_config, resynthesis), "synthetic_qd_pairs", {"temperature": 0.8, "seed": 14})
    log("re-run: LLM settings changed (resynthesis_job, temperature 0.8, seed 14)")
    result = folder.run("resynthesis_llm_changed", ["job", "execute", "-j", "resynthesis_job"], config)
    out = {
        "job": "resynthesis_job",
        "change": "synthetic_qd_pairs temperature 0.8, seed 14",
        "wall_s": result["wall_s"],
        "peak_mb": result["peak_mb"],
        "peak_rss_sum_mb": result["peak_rss_sum_mb"],
        "ratio_to_full": round(result["wall_s"] / full_wall, 3),
        "steps": result["run"]["steps"],
        "llm": result["run"]["llm"],
    }
    log(f"  {result['wall_s']:.0f} s = {out['ratio_to_full']:.2f} of the full run")
    return out


def rerun_training_changed(folder: BenchFolder, graph: dict, run_config: dict, full_wall: float, log) -> dict:
    """'Training settings changed': only group enhanced_model, with another training seed for v2."""
    enhanced = [k for k in graph["order"] if graph["groups"][k] == "enhanced_model"]
    if not enhanced:
        return {"skipped": "group enhanced_model is not in the definitions yet"}
    model = "neural_sparse_v2_model" if "neural_sparse_v2_model" in enhanced else None
    config = merged(restricted(run_config, enhanced), model, {"seed": 14}) if model else restricted(run_config, enhanced)
    log(f"re-run: training settings changed (group enhanced_model: {','.join(enhanced)}; seed 14)")
    result = folder.run("enhanced_training_changed", ["asset", "materialize", "--select", ",".join(enhanced)], config)
    out = {
        "selection": enhanced,
        "change": f"{model} seed 14",
        "wall_s": result["wall_s"],
        "peak_mb": result["peak_mb"],
        "peak_rss_sum_mb": result["peak_rss_sum_mb"],
        "ratio_to_full": round(result["wall_s"] / full_wall, 3),
        "steps": result["run"]["steps"],
    }
    log(f"  {result['wall_s']:.0f} s = {out['ratio_to_full']:.2f} of the full run")
    return out


def section_llm(runs: list[dict]) -> dict:
    rows = []
    for label, run in runs:
        for asset, meta in (run or {}).get("llm", {}).items():
            if "llm/tokens_per_s" in meta:
                rows.append({"run": label, "asset": asset, **{k.split("/", 1)[1]: v for k, v in meta.items()}})
    out = {"rows": rows}
    speeds = [r["tokens_per_s"] for r in rows if r["asset"] == "synthetic_qd_pairs"]
    if speeds:
        out["synthetic_qd_pairs_completion_tokens_per_s"] = spread(speeds, 2)
        out["synthetic_qd_pairs_total_tokens_per_s"] = spread(
            [r["total_tokens_per_s"] for r in rows if r["asset"] == "synthetic_qd_pairs"], 2
        )
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="a KorQuAD slice and small LLM/training settings")
    parser.add_argument("--articles", type=int, default=None, help="KorQuAD dev articles (default: all; --quick: 5)")
    parser.add_argument("--stages-mode", choices=("job", "separate"), default="job")
    parser.add_argument("--llm-documents", type=int, default=None, help="synthetic_qd_pairs max_documents (default: the asset's)")
    parser.add_argument("--training-steps", type=int, default=None, help="steps of the model assets (default: the assets')")
    parser.add_argument("--model", type=Path, default=None, help="model folder for encoding/latency (default: v1 of the full run)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of encoding and latency (default 3 / 5)")
    parser.add_argument("--encode-docs", type=int, default=None, help="documents encoded per repeat (default 128; --quick 48)")
    parser.add_argument("--queries", type=int, default=None, help="queries per latency pass (default 300; --quick 50)")
    parser.add_argument("--reuse", action="store_true", help="do not re-run the full pipeline when its folder is complete")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/, --quick bench/out/quick)")
    parser.add_argument("--wait-llm-s", type=float, default=1800, help="wait this long for another vLLM engine to finish")
    parser.add_argument(
        "--time-budget-s", type=float, default=None, help="skip the 'LLM settings changed' re-run when it could end past this many seconds"
    )
    args = parser.parse_args(argv)

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    work = ROOT / "bench" / "out" / ("quick" if args.quick else "full")
    out_dir = args.out or (work if args.quick else ROOT / "bench")
    work.mkdir(parents=True, exist_ok=True)
    articles = args.articles or (5 if args.quick else None)
    if not KORQUAD_DEV.exists():
        raise SystemExit(f"KorQuAD dev is not at {KORQUAD_DEV} (../shared/data beside the project)")
    if articles:
        data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
        data["data"] = data["data"][:articles]
        corpus_file = work / f"korquad_dev_{articles}_articles.json"
        corpus_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        corpus, corpus_note = str(corpus_file), f"KorQuAD 1.0 dev, first {articles} articles"
    else:
        corpus, corpus_note = str(KORQUAD_DEV), "KorQuAD 1.0 dev (all 140 articles, 960 paragraphs after cleaning)"
    repeats_enc = args.repeats or (3 if not args.quick else 2)
    repeats_lat = args.repeats or (5 if not args.quick else 3)

    results_file = out_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results.update(
        {
            "command": " ".join(["bench/run_bench.py", *(argv if argv is not None else sys.argv[1:])]),
            "corpus": corpus_note,
            "quick": args.quick,
        }
    )
    loadavg = os.getloadavg()

    folder = BenchFolder(work, "pipeline", corpus, fresh=False)
    graph = graph_info(folder.env())
    assets = set(graph["order"])
    results["assets"] = graph["order"]
    run_config = base_run_config(assets, args.quick, args.llm_documents, args.training_steps)
    log(f"assets: {', '.join(graph['order'])}")

    needs_pipeline = any(s in only for s in ("full", "rerun", "llm")) or ("stages" in only and args.stages_mode == "job")
    complete = (folder.path / "complete.json").exists()

    def save() -> None:  # after every section, so an interrupted benchmark keeps what it measured
        results["machine"] = machine_notes(loadavg)
        results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results["bench_wall_s"] = round(time.time() - started, 1)
        results["goals"] = goals(results)
        out_dir.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
        (out_dir / ("README.md" if out_dir == ROOT / "bench" else "results.md")).write_text(markdown(results))

    def attempt(section: str, fn, into: dict | None = None):
        target = results if into is None else into
        try:
            target[section] = fn()
        except RunFailed as failure:
            log(f"{section} FAILED: {failure}")
            target[section] = {**failure.result, "error": str(failure)}
        except Exception as error:  # noqa: BLE001 - the other sections still run
            log(f"{section} FAILED: {type(error).__name__}: {error}")
            target[section] = {"error": f"{type(error).__name__}: {error}"}
        save()
        return "error" not in target[section]

    full_ok = True
    if needs_pipeline and not (args.reuse and complete):
        if assets & {"synthetic_qd_pairs", "enhanced_synonyms"}:
            wait_for_no_llm(args.wait_llm_s, log)
        folder = BenchFolder(work, "pipeline", corpus, fresh=True)
        full_ok = attempt("full", lambda: section_full(folder, run_config, log))
        if full_ok:
            (folder.path / "complete.json").write_text(json.dumps(results["full"]))
        else:
            results["full"]["run_config"] = run_config
    elif needs_pipeline:
        results["full"] = json.loads((folder.path / "complete.json").read_text())
        log(f"reusing the full run in {folder.path} ({results['full']['wall_s']} s)")
    if "stages" in only:
        if args.stages_mode == "job":
            if results.get("full", {}).get("run"):
                attempt("stages", lambda: stages_from_job(results["full"], graph))
        else:
            if assets & {"synthetic_qd_pairs", "enhanced_synonyms"}:
                wait_for_no_llm(args.wait_llm_s, log)
            attempt("stages", lambda: section_stages_separate(work, corpus, graph, run_config, log))
    llm_runs = [("all_assets_job", results.get("full", {}).get("run"))] if needs_pipeline else []
    if "rerun" in only:  # the training re-run first: it is a goal; the LLM re-run costs the most and comes last
        results["rerun"] = {}
        if not full_ok:
            results["rerun"]["training_settings_changed"] = {"skipped": "the full run failed"}
        else:
            attempt(
                "training_settings_changed",
                lambda: rerun_training_changed(folder, graph, run_config, results["full"]["wall_s"], log),
                results["rerun"],
            )

    if "encoding" in only or "latency" in only:
        dataset = folder.dataset
        if not (dataset / "base_model" / "documents.json").exists():
            dataset = work / "stages" / "dataset"
        model_dir = args.model or dataset / "base_model" / "neural_sparse_v1_model"
        if not (model_dir / "modules.json").exists() or not (dataset / "base_model" / "documents.json").exists():
            reason = (
                f"no model folder at {model_dir} (neural_sparse_v1_model not materialized or not in the graph yet): "
                "run the full section first or pass --model"
            )
            log(f"encoding/latency skipped: {reason}")
            for section in ("encoding", "latency"):
                if section in only:
                    results[section] = {"skipped": reason}
        else:
            docs, queries = load_dataset(dataset)
            if "encoding" in only:
                attempt(
                    "encoding", lambda: section_encoding(model_dir, docs, args.encode_docs or (48 if args.quick else 128), repeats_enc, log)
                )
            if "latency" in only:
                attempt(
                    "latency",
                    lambda: section_latency(model_dir, docs, queries, args.queries or (50 if args.quick else 300), repeats_lat, log),
                )

    if "rerun" in only:
        elapsed = time.time() - started
        if not full_ok:
            results["rerun"]["llm_settings_changed"] = {"skipped": "the full run failed"}
        elif args.time_budget_s and elapsed + results["full"]["wall_s"] > args.time_budget_s:
            results["rerun"]["llm_settings_changed"] = {
                "skipped": f"time budget: {elapsed:.0f} s spent, a resynthesis run may take up to the full run's "
                f"{results['full']['wall_s']:.0f} s, budget {args.time_budget_s:.0f} s"
            }
            log(f"LLM re-run skipped: {results['rerun']['llm_settings_changed']['skipped']}")
        else:
            if "synthetic_qd_pairs" in assets:
                wait_for_no_llm(args.wait_llm_s, log)
            attempt(
                "llm_settings_changed",
                lambda: rerun_llm_changed(folder, graph, run_config, results["full"]["wall_s"], log),
                results["rerun"],
            )
            llm_settings = results["rerun"]["llm_settings_changed"]
            if llm_settings.get("llm"):
                llm_runs.append(("resynthesis_job (LLM settings changed)", {"llm": llm_settings["llm"]}))
    if "llm" in only:
        attempt("llm", lambda: section_llm(llm_runs))

    save()
    log(f"wrote {results_file.relative_to(ROOT) if results_file.is_relative_to(ROOT) else results_file}")
    for g in results["goals"]:
        log(f"goal: {g['goal']}: {g['value']} ({'met' if g['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
