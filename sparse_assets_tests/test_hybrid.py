"""The BM25 + sparse hybrid (OpenSearch's min-max + weighted arithmetic mean) on hand-made score lists,
its weight's bounds, and its row in `performance_comparison`."""

from __future__ import annotations

import pydantic
import pytest

from sparse_assets.evaluation.hybrid import MIN_SCORE, HybridSettings, fuse, hybrid_run, min_max

BM25 = [("a", 10.0), ("b", 6.0), ("c", 2.0)]  # min-max: a 1, b 0.5, c 0 -> MIN_SCORE
SPARSE = [("b", 3.0), ("d", 2.0), ("a", 1.0)]  # min-max: b 1, d 0.5, a 0 -> MIN_SCORE


def ranking(hits) -> list[str]:
    return [doc for doc, _ in hits]


def test_min_max_normalises_each_list_over_its_own_hits():
    assert min_max(BM25) == pytest.approx({"a": 1.0, "b": 0.5, "c": MIN_SCORE})
    assert min_max([("x", -4.0), ("y", -1.0), ("z", -3.0)]) == pytest.approx({"x": MIN_SCORE, "y": 1.0, "z": 1 / 3})
    assert min_max([("x", 7.0), ("y", 7.0)]) == {"x": 1.0, "y": 1.0}  # all tied: each gets 1, as OpenSearch's single result
    assert min_max([]) == {}


def test_fuse_is_the_weighted_mean_and_a_missing_document_gets_zero_from_that_list():
    fused = dict(fuse(BM25, SPARSE, HybridSettings(sparse_weight=0.5)))
    assert fused == pytest.approx(
        {
            "b": 0.5 * 1.0 + 0.5 * 0.5,
            "a": 0.5 * MIN_SCORE + 0.5 * 1.0,
            "d": 0.5 * 0.5 + 0.5 * 0.0,  # not in BM25's hits
            "c": 0.5 * 0.0 + 0.5 * MIN_SCORE,  # not in the sparse model's hits
        }
    )
    assert ranking(fuse(BM25, SPARSE, HybridSettings(sparse_weight=0.5))) == ["b", "a", "d", "c"]
    # a lighter sparse weight lets BM25's top document lead: a 0.7003, b 0.65, d 0.15, c 0.0007
    assert ranking(fuse(BM25, SPARSE, HybridSettings(sparse_weight=0.3))) == ["a", "b", "d", "c"]
    assert ranking(fuse(BM25, SPARSE, HybridSettings(sparse_weight=0.5), k=2)) == ["b", "a"]


def test_weight_zero_ranks_as_bm25_and_weight_one_as_the_sparse_model():
    only_bm25 = fuse(BM25, SPARSE, HybridSettings(sparse_weight=0.0))
    assert ranking(only_bm25)[: len(BM25)] == ranking(BM25) and dict(only_bm25)["d"] == 0.0
    only_sparse = fuse(BM25, SPARSE, HybridSettings(sparse_weight=1.0))
    assert ranking(only_sparse)[: len(SPARSE)] == ranking(SPARSE) and dict(only_sparse)["c"] == 0.0
    # tied scores keep the order of the list that weighs
    tied = [("b", 5.0), ("a", 5.0)]
    assert ranking(fuse([("a", 2.0), ("b", 1.0)], tied, HybridSettings(sparse_weight=1.0))) == ["b", "a"]
    assert ranking(fuse(tied, [("a", 2.0), ("b", 1.0)], HybridSettings(sparse_weight=0.0))) == ["b", "a"]


def test_hybrid_run_fuses_every_query_of_either_run():
    run = hybrid_run({"q1": BM25, "q2": [("a", 1.0)]}, {"q1": SPARSE, "q3": [("d", 2.0)]}, HybridSettings(sparse_weight=0.5))
    assert set(run) == {"q1", "q2", "q3"}
    assert run["q2"] == [("a", 0.5)] and run["q3"] == [("d", 0.5)]


@pytest.mark.parametrize("weight", [-0.1, 1.1, float("nan")])
def test_the_weight_is_bounded_to_0_1_in_the_settings_and_the_run_config(weight):
    from sparse_assets.defs.assets.enhanced_model import ComparisonConfig

    with pytest.raises(ValueError, match="sparse_weight"):
        HybridSettings(sparse_weight=weight)
    with pytest.raises(pydantic.ValidationError, match="sparse_weight"):
        ComparisonConfig(sparse_weight=weight)
    assert ComparisonConfig().sparse_weight == HybridSettings().sparse_weight  # one default


@pytest.fixture(scope="module")
def tiny(base_encoder_dir, tmp_path_factory):
    from sparse_assets_tests.sparse_helpers import trained_tiny_model

    return trained_tiny_model(base_encoder_dir, tmp_path_factory.mktemp("tiny"))


def comparison_report(tiny, base_encoder_dir, sparse_weight: float) -> dict:
    """`performance_comparison` run on the tiny model (as v1, v2 and the ablation) over its articles' human questions."""
    import dagster as dg

    from sparse_assets.defs.assets.enhanced_model import ComparisonConfig, performance_comparison
    from sparse_assets.defs.resources import BaseEncoder
    from sparse_assets_tests.korquad_data import korquad_records

    folder, _, docs, _, idf = tiny
    output = performance_comparison(
        context=dg.build_asset_context(),
        config=ComparisonConfig(sparse_weight=sparse_weight, bootstrap_samples=200),
        documents=docs,
        eval_queries=list(korquad_records(3)[1]),
        neural_sparse_v1_model=folder,
        neural_sparse_v2_model=folder,
        neural_sparse_v2_without_llm_model=folder,
        idf_statistics=idf,
        base_encoder=BaseEncoder(model=str(base_encoder_dir)),
    )
    return output.value.value


def test_performance_comparison_reports_the_hybrid_at_the_configured_weight(tiny, base_encoder_dir):
    from sparse_assets.evaluation.comparison import HYBRID

    for weight, twin in ((0.0, "bm25"), (1.0, "v2")):
        report = comparison_report(tiny, base_encoder_dir, sparse_weight=weight)
        systems = {row["system"]: row for row in report["rows"]}
        assert set(systems) == {"bm25", "idf_only", "v1", "v2", "v2_without_llm", HYBRID}
        assert systems["bm25"]["ndcg@10"] != systems["v2"]["ndcg@10"]  # so that the weight shows
        # the config's weight reaches the fusion: all on one system, the hybrid ranks as that one does
        assert systems[HYBRID]["ndcg@10"] == pytest.approx(systems[twin]["ndcg@10"], abs=1e-9)
        assert systems[HYBRID]["query_latency_ms"] > systems["bm25"]["query_latency_ms"] + systems["v2"]["query_latency_ms"]
        for label, baseline in (("hybrid BM25-Kiwi + v2 - BM25-Kiwi", "bm25"), ("hybrid BM25-Kiwi + v2 - v2", "v2")):
            difference = report["differences"][label]
            assert (difference["candidate"], difference["baseline"]) == (HYBRID, baseline)
            assert difference["mean_difference"] == pytest.approx(systems[HYBRID]["ndcg@10"] - systems[baseline]["ndcg@10"], abs=1e-9)
