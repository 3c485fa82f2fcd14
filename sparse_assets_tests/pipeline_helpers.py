"""The whole graph on a real Dagster instance over a KorQuAD slice, with the LLM step answered by a
scripted OpenAI-compatible server: shared by test_pipeline.py and test_ui.py."""

import shutil

import dagster as dg
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from sparse_assets.defs.assets.base_model import base_assets, base_checks
from sparse_assets.defs.assets.enhanced_model import enhanced_assets
from sparse_assets.defs.assets.llm_generated import llm_assets, llm_checks
from sparse_assets.defs.definitions import build_definitions
from sparse_assets.defs.resources import LLMResource
from sparse_assets_tests.korquad_data import MUSE_KO_EN, REPO, korquad_slice

GRAPH = [*base_assets, *llm_assets, *enhanced_assets]
ASSETS = [*GRAPH, *base_checks, *llm_checks]
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
        defs = build_definitions(self.root, [str(self.corpus)], cache_dir=model_cache, muse_path=MUSE_KO_EN)
        self.resources = {**defs.resources, "llm": LLMResource(backend="openai", base_url=server.url)}
        self.graph = defs.resolve_asset_graph()

    def materialize(self, selection=None, **config) -> dg.ExecuteInProcessResult:
        chosen = (
            selection
            if isinstance(selection, dg.AssetSelection)
            else dg.AssetSelection.assets(*(selection or self.graph.get_all_asset_keys()))
        )
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
