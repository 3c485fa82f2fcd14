"""Hybrid retrieval as OpenSearch serves it: BM25 and a sparse model as the two sub-queries of a hybrid
query, fused by the normalization processor with ``normalization: min_max`` and ``combination:
arithmetic_mean`` (no Dagster here).

OpenSearch documentation, "Normalization processor"
(https://docs.opensearch.org/latest/search-plugins/search-pipelines/normalization-processor/), and
its code in opensearch-project/neural-search (processor/normalization/MinMaxScoreNormalizationTechnique,
processor/combination/ArithmeticMeanScoreCombinationTechnique, ScoreCombiner, ScoreCombinationUtil):

- Each sub-query is normalised on its own, over the hits it returned: (score - min) / (max - min). A
  hit that lands on 0 gets MIN_SCORE (0.001) instead, so a sub-query's last hit still counts above a
  document that sub-query did not return; when every hit has the same score, each gets 1.0.
- A document missing from one sub-query's hits gets 0.0 from it, and that sub-query's weight still
  counts in the mean.
- The weighted arithmetic mean is sum(weight * score) / sum(weights); the weights lie in [0, 1] and
  sum to 1, so here it is sparse_weight * sparse + (1 - sparse_weight) * bm25.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from sparse_assets.bounds import Ge, Le, check_bounds

MIN_SCORE = 0.001  # a sub-query's lowest hit after min-max (OpenSearch: MinMaxScoreNormalizationTechnique.MIN_SCORE)
TIED_SCORE = 1.0  # every hit of a sub-query when they all score the same (OpenSearch: SINGLE_RESULT_SCORE)

Hits = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class HybridSettings:
    # The sparse model's weight in the mean; BM25's is 1 - sparse_weight. The default, for a corpus with
    # no tuning questions to pick it on, weighs both alike: OpenSearch's own arithmetic_mean when the
    # pipeline gives no weights. bench/bench_graph_models.py picks it on each dev set's tuning questions.
    sparse_weight: Annotated[float, Ge(0), Le(1)] = 0.5

    def __post_init__(self) -> None:
        check_bounds(self)


def min_max(hits: Hits) -> dict[str, float]:
    """{document id: score} of one sub-query's hits, min-max normalised over those hits as OpenSearch does."""
    if not hits:
        return {}
    scores = [score for _, score in hits]
    low, high = min(scores), max(scores)
    if high == low:
        return {doc: TIED_SCORE for doc, _ in hits}
    return {doc: (score - low) / (high - low) or MIN_SCORE for doc, score in hits}  # the lowest hit: MIN_SCORE, not 0


def fuse(bm25_hits: Hits, sparse_hits: Hits, settings: HybridSettings, k: int = 100) -> list[tuple[str, float]]:
    """The top `k` (document id, fused score) of one query, best first: each list min-max normalised on
    its own, then the weighted arithmetic mean (a document one list lacks gets 0 from that list). Ties
    keep the order of the list that weighs more (BM25's at 0.5), so that weight 0 ranks as BM25 and
    weight 1 as the sparse model; after them, scored 0, come the documents only the other list holds."""
    lexical, sparse = min_max(bm25_hits), min_max(sparse_hits)
    weight = settings.sparse_weight
    heavier, lighter = (sparse, lexical) if weight > 0.5 else (lexical, sparse)
    fused = {doc: weight * sparse.get(doc, 0.0) + (1 - weight) * lexical.get(doc, 0.0) for doc in heavier | lighter}
    return sorted(fused.items(), key=lambda hit: -hit[1])[:k]


def hybrid_run(
    bm25_run: Mapping[str, Hits], sparse_run: Mapping[str, Hits], settings: HybridSettings, k: int = 100
) -> dict[str, list[tuple[str, float]]]:
    """{query id: fused hits} for every query of either run."""
    return {query: fuse(bm25_run.get(query, ()), sparse_run.get(query, ()), settings, k) for query in bm25_run | sparse_run}
