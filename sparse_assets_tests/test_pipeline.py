"""The whole graph against a real Dagster instance, and the seed's re-run scenarios proven from the
instance's event log. The LLM step talks to a scripted OpenAI-compatible server here (the real
vLLM engine is exercised in test_llm_worker.py / test_llm_openai.py); everything else is real."""

import json
import shutil

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from sparse_assets.defs.assets.base_model import base_assets, base_checks
from sparse_assets.defs.assets.enhanced_model import enhanced_assets, enhanced_checks
from sparse_assets.defs.assets.llm_generated import llm_assets, llm_checks
from sparse_assets.defs.definitions import build_definitions
from sparse_assets.defs.resources import LLMResource
from sparse_assets.encoder.sparse_model import SparseTrainingSettings
from sparse_assets_tests.conftest import REPO, korquad_slice
from sparse_assets_tests.llm_fakes import FakeOpenAI

GRAPH = [*base_assets, *llm_assets, *enhanced_assets]
ASSETS = [*GRAPH, *base_checks, *llm_checks, *enhanced_checks]
# Tiny data: the quality check tolerates a small validation loss against IDF-only (collapse still fails it).
TINY_TRAINING = {"steps": 60, "batch_size": 8, "max_length": 128, "validation_fraction": 0.2, "seed": 5, "min_gain_over_idf_only": -0.15}
LLM_GROUP = {"synthetic_qd_pairs", "enhanced_synonyms"}
ENHANCED_GROUP = {"neural_sparse_v2_model", "neural_sparse_v2_without_llm_model", "performance_comparison"}


def answer(prompt: str, i: int) -> str:
    """Synonym verdicts say yes, expansions propose nothing, query prompts get a question on the title."""
    if prompt.rstrip().endswith("같은 뜻:"):
        return " 예"
    if prompt.rstrip().endswith("영어 동의어:"):
        return " "
    document = prompt.rsplit("문서:", 1)[1].rsplit("질문:", 1)[0]
    words = sorted({w.strip(".,()\"'") for w in document.split()}, key=len, reverse=True)[3 * i : 3 * i + 3]
    return f" {' '.join(words)}와 관련된 것은 무엇인가?"


def run_config(llm_seed: int = 13, v2_seed: int = 5) -> dict:
    return {
        "ops": {
            "neural_sparse_v1_model": {"config": TINY_TRAINING},
            "neural_sparse_v2_model": {"config": {**TINY_TRAINING, "seed": v2_seed}},
            "neural_sparse_v2_without_llm_model": {"config": {**TINY_TRAINING, "seed": v2_seed}},
            "synthetic_qd_pairs": {"config": {"queries_per_document": 2, "seed": llm_seed}},
            "enhanced_synonyms": {"config": {"max_terms": 10, "expand_terms": 2}},
        }
    }


class Pipeline:
    def __init__(self, tmp, server, model_cache):
        self.home = tmp / "dagster_home"
        self.home.mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", self.home / "dagster.yaml")
        self.corpus = korquad_slice(tmp / "korquad.json", articles=3)
        self.root = tmp / "dataset"
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        defs = build_definitions(self.root, [str(self.corpus)], cache_dir=model_cache)
        self.resources = {**defs.resources, "llm": LLMResource(backend="openai", base_url=server.url)}
        self.graph = defs.resolve_asset_graph()

    def materialize(self, selection=None, **config) -> dg.ExecuteInProcessResult:
        chosen = selection if isinstance(selection, dg.AssetSelection) else dg.AssetSelection.assets(*(selection or self.graph.get_all_asset_keys()))
        names = {key.to_user_string() for key in chosen.resolve(self.graph)}
        ops = {name: value for name, value in run_config(**config)["ops"].items() if name in names}
        result = dg.materialize(ASSETS, instance=self.instance, resources=self.resources, selection=selection, run_config={"ops": ops})
        assert result.success
        return result

    def materialized_in(self, run_id: str) -> set[str]:
        records = self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        return {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}

    def latest_run(self, asset: str) -> str:
        return self.instance.get_latest_materialization_event(dg.AssetKey(asset)).run_id

    def stale(self) -> set[str]:
        resolver = get_stale_status_resolver(self.instance, GRAPH)
        return {k.to_user_string() for k in self.graph.get_all_asset_keys() if resolver.get_status(k) == StaleStatus.STALE}


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
    assert set(systems) == {"bm25", "idf_only", "v1", "v2", "v2_without_llm"}
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
    assert set(report["differences"]) >= {"v2 - v1", "v1 - BM25-Kiwi", "v2 - v2 without LLM data (what the LLM's pairs add)"}
    ablation = report["differences"]["v2 - v2 without LLM data (what the LLM's pairs add)"]
    assert ablation["mean_difference"] == pytest.approx(systems["v2"]["ndcg@10"] - systems["v2_without_llm"]["ndcg@10"], abs=1e-9)
    v2_config = json.loads((pipeline.root / "enhanced_model/neural_sparse_v2_model/training_report.json").read_text())["config"]
    assert v2_config["warm_start"]  # v2 continues v1, gently: a third of the steps at a quarter of the learning rate
    assert v2_config["steps"] <= 20 and v2_config["learning_rate"] == pytest.approx(0.25 * SparseTrainingSettings().learning_rate)
    assert (pipeline.root / "enhanced_model/evaluation/performance_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert pipeline.stale() == set()


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
