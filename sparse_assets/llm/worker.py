"""The LLM step's own process: runs in the LLM environment (.venv-llm), launched through Dagster
Pipes by ``synthetic_qd_pairs`` / ``enhanced_synonyms``.

Input: the Pipes extra ``job_file``, a JSON file with the backend, engine and sampling settings and
either ``documents`` (task ``queries``: prompts are built here) or ready ``requests``.
Output: ``result_file`` (JSON, written atomically): one completion per request plus run stats;
``progress_file`` after every batch (how far it got), and, when the job names a ``partial_file``,
each batch's completions appended to it as a JSON line (what was done survives a crash). Logs and progress stream to
Dagster; run stats are reported as materialization metadata. SIGINT/SIGTERM (a cancelled run)
ends vLLM's engine processes and this process. Needs neither dagster nor kiwipiepy: filtering
happens in the asset, in the main environment.

Run: ``<.venv-llm>/bin/python -m sparse_assets.llm.worker`` with cwd = the repository root.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file path: make `sparse_assets` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sparse_assets.llm.prompts import fewshot_prompt, query_messages
from sparse_assets.llm.settings import EngineSettings, SamplingSettings

# Expected on this project's machines, nothing a user can act on: vLLM's own use of deprecated torch
# names, and its note that the CPU build's Triton has no CPU backend (printed before vLLM sets up its
# logging, so VLLM_LOGGING_LEVEL does not reach it)
warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)

EXIT_CANCELLED = 130
_ABORT_ENV = "SPARSE_ASSETS_WORKER_ABORT_AFTER_BATCHES"  # tests: die hard mid-run


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False))
    os.replace(tmp, path)


def kill_descendants() -> None:
    """SIGKILL every process this worker started (vLLM engine core / workers)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with vLLM
        return
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def install_signal_handlers(log) -> None:
    def handler(signum, _frame):
        log(f"received signal {signal.Signals(signum).name}: stopping the LLM engine and exiting")
        kill_descendants()
        os._exit(EXIT_CANCELLED)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if sys.platform.startswith("linux"):  # die with the orchestrating process, even on SIGKILL
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def request_groups(job: dict, engine: EngineSettings) -> list[tuple[str, SamplingSettings, list[dict]]]:
    """(name, sampling, requests) groups that share one engine. A job gives ``groups`` as is, or
    (task ``queries``) ``documents`` + ``sampling``: one prompt per document."""
    if job.get("groups") is not None:
        return [(g["name"], SamplingSettings.from_dict(g["sampling"]), g["requests"]) for g in job["groups"]]
    n = int(job.get("queries_per_document", 3))
    max_chars = int(job.get("max_doc_chars", 600))
    requests = []
    for doc in job["documents"]:
        title = doc["title"].replace("_", " ")
        if engine.prompt_style == "fewshot":
            requests.append({"id": doc["id"], "prompt": fewshot_prompt(title, doc["text"], max_chars)})
        else:
            requests.append({"id": doc["id"], "messages": query_messages(title, doc["text"], n, max_chars)})
    return [("queries", SamplingSettings.from_dict(job["sampling"]), requests)]


def run_job(job: dict, log, report=lambda stats: None) -> dict:
    """Run every request of ``job`` through its backend; write and return the result."""
    from sparse_assets.llm.backends import make_backend

    engine = EngineSettings.from_dict(job["engine"])
    result_file = Path(job["result_file"])
    progress_file = Path(job.get("progress_file") or result_file.with_suffix(".progress.json"))
    groups = request_groups(job, engine)
    total = sum(len(requests) for _, _, requests in groups)
    api_key = os.environ.get(job["api_key_env"]) if job.get("api_key_env") else None
    backend = make_backend(
        job["backend"],
        engine,
        job.get("base_url"),
        api_key,
        float(job.get("timeout_s", 300)),
        int(job.get("concurrency", 8)),
        log=log,
        cache_dir=job.get("cache_dir"),
    )
    log(
        f"starting {job['backend']} backend for {engine.model} ({engine.accelerator}, {engine.machine}, "
        f"{engine.prompt_style}); {total} prompts in {len(groups)} group(s)"
    )
    t0 = time.perf_counter()
    backend.start()
    engine_start_s = time.perf_counter() - t0
    log(f"engine ready in {engine_start_s:.1f} s (model {backend.model_name})")

    abort_after = int(os.environ.get(_ABORT_ENV, "0") or 0)
    results: dict[str, list[dict]] = {}
    batch = max(1, engine.batch_size)
    done = batches = prompt_tokens = completion_tokens = generated = 0
    t_gen = time.perf_counter()
    try:
        for name, sampling, requests in groups:
            results[name] = []
            for start in range(0, len(requests), batch):
                if abort_after and batches >= abort_after:
                    log("test hook: the worker dies mid-run")
                    kill_descendants()
                    os._exit(9)
                out = backend.complete(requests[start : start + batch], sampling)
                for completion in out:
                    completion["generator"] = f"{job['backend']}:{backend.model_name or engine.model}"
                batches += 1
                results[name].extend(out)
                if job.get("partial_file"):  # what is done survives a worker that dies later
                    with open(job["partial_file"], "a", encoding="utf-8") as handle:
                        handle.write(json.dumps({"group": name, "completions": out}, ensure_ascii=False) + "\n")
                done += len(out)
                generated += sum(len(c["texts"]) for c in out)
                prompt_tokens += sum(c["prompt_tokens"] for c in out)
                completion_tokens += sum(c["completion_tokens"] for c in out)
                elapsed = time.perf_counter() - t_gen
                log(
                    f"progress {done}/{total} prompts ({name}), {completion_tokens} tokens generated, "
                    f"{completion_tokens / max(elapsed, 1e-9):.1f} tokens/s"
                )
                write_json_atomic(progress_file, {"done": done, "total": total, "elapsed_s": round(elapsed, 2)})
        counters = backend.engine_stats()
    finally:
        backend.close()
    generation_s = time.perf_counter() - t_gen
    stats = {
        "backend": job["backend"],
        "model": backend.model_name or engine.model,
        "accelerator": engine.accelerator,
        "prompt_style": engine.prompt_style,
        "prompts": total,
        "generated": generated,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "engine_start_s": round(engine_start_s, 2),
        "generation_s": round(generation_s, 2),
        "tokens_per_s": round(completion_tokens / max(generation_s, 1e-9), 2),
        "total_tokens_per_s": round((prompt_tokens + completion_tokens) / max(generation_s, 1e-9), 2),
        **engine_figures(counters, generation_s),
    }
    if job.get("documents") is not None:
        stats["documents"] = len(job["documents"])
    write_json_atomic(result_file, {"results": results, "stats": stats})
    report(stats)
    return {"results": results, "stats": stats}


def engine_figures(counters: dict[str, float], generation_s: float) -> dict[str, float]:
    """Where the generation time went, from the engine's counters: prompt tokens it computed (not
    served from the prefix cache) per second, the prefix cache's hit rate and the mean number of
    sequences decoded per engine step (batch occupancy), and the tokens a Korean question could use
    (``output_tokens``, when the batches restricted them). Empty for a backend without counters."""
    if not counters.get("engine_steps"):
        return {}
    computed = counters["prompt_tokens"] - counters["cached_prompt_tokens"]
    restricted = {"output_tokens": counters["output_tokens"]} if "output_tokens" in counters else {}
    return {
        **restricted,
        "prefill_tokens_per_s": round(computed / max(generation_s, 1e-9), 2),
        "prefix_cache_hit_rate": round(counters["cached_prompt_tokens"] / max(counters["prompt_tokens"], 1), 4),
        "batch_occupancy": round(counters["generation_tokens"] / counters["engine_steps"], 2),
        "engine_steps": int(counters["engine_steps"]),
        "preemptions": int(counters.get("preemptions", 0)),
    }


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        install_signal_handlers(pipes.log.info)
        job = json.loads(Path(pipes.get_extra("job_file")).read_text())
        error_file = Path(job["result_file"]).with_suffix(".error.json")
        try:
            run_job(job, pipes.log.info, lambda stats: pipes.report_asset_materialization(metadata=stats))
        except Exception as exc:  # name the cause for the asset, then let Pipes report it too
            write_json_atomic(error_file, {"type": type(exc).__name__, "message": str(exc)})
            pipes.log.error(f"LLM worker failed: {type(exc).__name__}: {exc}")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
