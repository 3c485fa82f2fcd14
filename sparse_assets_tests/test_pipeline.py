"""The whole graph against a real Dagster instance, and the seed's re-run scenarios proven from the
instance's event log. The LLM step talks to a scripted OpenAI-compatible server here (the real
vLLM engine is exercised in test_llm_worker.py / test_llm_openai.py); everything else is real."""

import json

import dagster as dg
import pytest

from sparse_assets.encoder.sparse_model import SparseTrainingSettings
from sparse_assets_tests.korquad_data import korquad_slice
from sparse_assets_tests.llm_fakes import FakeOpenAI
from sparse_assets_tests.pipeline_helpers import ENHANCED_GROUP, LLM_GROUP, Pipeline, answer


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, model_cache):
    with FakeOpenAI(answer) as server:
        yield Pipeline(tmp_path_factory.mktemp("pipeline"), server, model_cache)


@pytest.fixture(scope="module")
def first_run(pipeline):
    return pipeline.materialize()


def test_the_whole_graph_materializes_and_reports_the_comparison(pipeline, first_run):
    assert pipeline.materialized_in(first_run.run_id) == {k.to_user_string() for k in pipeline.graph.get_all_asset_keys()}
    assert all(check.passed for check in first_run.get_asset_check_evaluations())
    report = json.loads((pipeline.root / "enhanced_model/evaluation/performance_comparison.json").read_text())
    systems = {row["system"]: row for row in report["rows"]}
    assert set(systems) == {"bm25", "idf_only", "v1", "v2", "v2_without_llm", "hybrid_bm25_v2"}
    eval_queries = json.loads((pipeline.root / "base_model/eval_queries.json").read_text())
    assert report["queries"] == len(eval_queries) and report["human_questions"] is True
    for row in systems.values():
        assert 0.0 < row["ndcg@10"] <= 1.0 and row["recall@10"] <= row["recall@100"] <= 1.0
    assert systems["v1"]["doc_active_dims"] > 10 and systems["v2"]["doc_active_dims"] > 10
    difference = report["v2_minus_v1_ndcg@10"]
    assert difference["ci_low"] <= difference["mean_difference"] <= difference["ci_high"]
    assert difference["mean_difference"] == pytest.approx(systems["v2"]["ndcg@10"] - systems["v1"]["ndcg@10"], abs=1e-9)
    table = (pipeline.root / "enhanced_model/evaluation/performance_comparison.md").read_text()
    assert "| v2 |" in table and "paired bootstrap" in table
    assert set(report["differences"]) >= {
        "v2 - v1",
        "v1 - BM25-Kiwi",
        "v2 - v2 without LLM data (what the LLM's pairs add)",
        "hybrid BM25-Kiwi + v2 - BM25-Kiwi",
        "hybrid BM25-Kiwi + v2 - v2",
    }
    ablation = report["differences"]["v2 - v2 without LLM data (what the LLM's pairs add)"]
    assert ablation["mean_difference"] == pytest.approx(systems["v2"]["ndcg@10"] - systems["v2_without_llm"]["ndcg@10"], abs=1e-9)
    v2_config = json.loads((pipeline.root / "enhanced_model/neural_sparse_v2_model/training_report.json").read_text())["config"]
    assert v2_config["warm_start"]  # v2 continues v1, gently: a third of the steps at a quarter of the learning rate
    assert v2_config["steps"] <= 20 and v2_config["learning_rate"] == pytest.approx(0.25 * SparseTrainingSettings().learning_rate)
    assert (pipeline.root / "enhanced_model/evaluation/performance_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert pipeline.stale() == set()


def test_the_query_table_weighs_particles_down_and_says_so(pipeline, first_run):
    table = json.loads((pipeline.root / "base_model/idf.json").read_text())
    for particle in ("의", "은", "는", "을", "를"):  # particles of every KorQuAD paragraph: about zero
        assert table.get(particle, 0.0) < 0.01, (particle, table.get(particle))
    nouns = [t for t in ("▁대통령", "▁교향곡", "▁작곡") if t in table]
    assert nouns and all(table[t] > 1.0 for t in nouns)
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("idf_statistics"))
    metadata = event.asset_materialization.metadata
    assert metadata["query_table"].value == "morphology" and metadata["morphology_fallback"].value == "none"
    assert metadata["pieces_below_1pct_of_idf"].value > 10


def test_llm_settings_changed_reruns_only_llm_and_enhanced_groups(pipeline, first_run):
    run = pipeline.materialize(selection=dg.AssetSelection.groups("llm_generated", "enhanced_model"), llm_seed=99)
    assert pipeline.materialized_in(run.run_id) == LLM_GROUP | ENHANCED_GROUP
    for asset in ("documents", "idf_statistics", "qd_pairs_base", "neural_sparse_v1_model"):
        assert pipeline.latest_run(asset) == first_run.run_id


def test_training_settings_changed_reruns_only_the_enhanced_group(pipeline, first_run):
    llm_run = pipeline.latest_run("synthetic_qd_pairs")
    run = pipeline.materialize(selection=dg.AssetSelection.groups("enhanced_model"), v2_seed=77)
    assert pipeline.materialized_in(run.run_id) == ENHANCED_GROUP
    assert pipeline.latest_run("synthetic_qd_pairs") == llm_run
    assert pipeline.latest_run("neural_sparse_v1_model") == first_run.run_id


def test_data_changed_makes_everything_downstream_stale_and_rematerializes_it(pipeline, first_run):
    korquad_slice(pipeline.corpus, articles=4)  # the corpus grows by one article
    documents_run = pipeline.materialize(selection=["documents", "eval_queries"])
    downstream = {k.to_user_string() for k in pipeline.graph.get_all_asset_keys()} - {"documents", "eval_queries"}
    assert pipeline.stale() == downstream
    run = pipeline.materialize(selection=sorted(downstream))
    assert pipeline.materialized_in(run.run_id) == downstream
    assert pipeline.latest_run("documents") == documents_run.run_id
    assert pipeline.stale() == set()
