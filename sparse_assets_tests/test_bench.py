"""The benchmark's own measuring parts (bench/graph_bench/): process-tree memory, runs read back from
a Dagster instance, the graph's steps, run configs, the report."""

from __future__ import annotations

import sys

import dagster as dg

from sparse_assets_tests.korquad_data import REPO

sys.path.insert(0, str(REPO / "bench"))
from graph_bench import processes, report, runs

ALLOCATE = "import time; block = bytearray({mb} * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep({sleep})"


def test_tree_memory_counts_a_grandchild_in_its_parents_subtree(tmp_path):
    # parent (python) -> child (python) that touches 300 MB; the parent itself stays small
    script = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {ALLOCATE.format(mb=300, sleep=2.5)!r}])"
    result = processes.run_measured([sys.executable, "-c", script], env=None, log_file=tmp_path / "log.txt", interval=0.1)
    sampler = result["_sampler"]
    assert result["returncode"] == 0 and sampler.samples >= 5
    assert 300 <= result["peak_mb"] < 600, result["peak_mb"]
    assert result["peak_rss_sum_mb"] >= result["peak_mb"]  # RSS summed counts shared pages once per process
    root = max(sampler.subtree_peak_mb, key=sampler.subtree_peak_mb.get)
    assert sampler.subtree_peak_mb[root] >= 300  # the grandchild's memory shows in its ancestor's subtree
    assert result["largest_processes"][0]["peak_pss_mb"] >= 300 and "bytearray" in result["largest_processes"][0]["cmdline"]
    assert result["wall_s"] >= 2.5


def test_the_latest_run_is_read_back_from_its_instance(tmp_path):
    @dg.asset
    def probe() -> int:
        return 1

    home = tmp_path / "dagster_home"
    home.mkdir()
    assert runs.latest_run_summary(home) is None
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([probe], instance=instance)
    summary = runs.latest_run_summary(home)
    assert summary["run_id"] == result.run_id and summary["status"] == "SUCCESS"
    assert list(summary["steps"]) == ["probe"] and summary["steps"]["probe"]["status"] == "STEP_SUCCESS"
    assert summary["steps"]["probe"]["wall_s"] >= 0 and summary["llm"] == {}


def test_graph_info_lists_steps_in_dependency_order(tmp_path):
    graph = runs.graph_info({"SPARSE_ASSETS_DATASET": str(tmp_path / "dataset")})
    assert ["documents", "eval_queries"] in graph["steps"]  # one multi-asset step, two keys
    order = graph["order"]
    assert order.index("documents") < order.index("neural_sparse_v1_model") < order.index("neural_sparse_v2_model")
    assert order.index("neural_sparse_v2_model") < order.index("performance_comparison")
    assert graph["groups"]["synthetic_qd_pairs"] == "llm_generated"


def test_run_configs_only_name_ops_in_the_selection():
    config = runs.base_run_config(
        {"synthetic_qd_pairs", "enhanced_synonyms", "neural_sparse_v1_model", "neural_sparse_v2_model"},
        quick=True,
        llm_documents=None,
        training_steps=None,
    )
    assert config["ops"]["synthetic_qd_pairs"] == {"config": {"max_documents": 6}}
    assert config["ops"]["neural_sparse_v1_model"] == {"config": {"steps": 20}}
    assert runs.restricted(config, ["neural_sparse_v2_model", "performance_comparison"]) == {
        "ops": {"neural_sparse_v2_model": {"config": {"steps": 20}}}
    }
    assert runs.restricted(config, ["documents"]) == {}
    changed = runs.merged(runs.restricted(config, ["synthetic_qd_pairs"]), "synthetic_qd_pairs", {"seed": 14})
    assert changed == {"ops": {"synthetic_qd_pairs": {"config": {"max_documents": 6, "seed": 14}}}}
    assert config["ops"]["synthetic_qd_pairs"] == {"config": {"max_documents": 6}}  # not mutated
    full = runs.base_run_config({"synthetic_qd_pairs"}, quick=False, llm_documents=None, training_steps=None)
    assert full == {}  # the full benchmark runs the assets' own defaults unless told otherwise


def test_report_states_goals_and_failures():
    results = {
        "command": "bench/run_bench.py",
        "finished": "now",
        "corpus": "KorQuAD",
        "machine": report.machine_notes((1.0, 1.0, 1.0)),
        "full": {"wall_s": 1500.0, "peak_mb": 5000.0, "peak_rss_sum_mb": 5500.0, "run": {"steps": {}}},
        "stages": {
            "mode": "job",
            "note": "n",
            "rows": [
                {"stage": "synthetic_qd_pairs", "group": "llm_generated", "wall_s": 600.0, "peak_mb": 6500.0, "peak_rss_sum_mb": 7000.0}
            ],
        },
        "rerun": {
            "training_settings_changed": {
                "change": "seed",
                "wall_s": 450.0,
                "peak_mb": 3000.0,
                "peak_rss_sum_mb": 3100.0,
                "ratio_to_full": 0.3,
            },
            "llm_settings_changed": {"wall_s": 10.0, "error": "resynthesis_job failed: boom"},
        },
        "encoding": {"skipped": "no model"},
        "latency": {"error": "ValueError: x"},
    }
    goals = {g["goal"]: g for g in report.goals(results)}
    assert goals["full pipeline <= 30 min"]["met"] and goals["full pipeline <= 30 min"]["value"] == "25.0 min"
    assert not goals["peak memory of any stage < 6 GB"]["met"]
    assert goals["'training settings changed' re-run <= 40% of the full run"]["met"]
    results["goals"] = report.goals(results)
    text = report.markdown(results)
    assert "| 'training settings changed' re-run <= 40% of the full run | 30.0% | yes |" in text
    assert "FAILED: resynthesis_job failed: boom" in text and "- `rerun.llm_settings_changed`:" in text
    assert "- `latency`:" in text and "Skipped: no model." in text
