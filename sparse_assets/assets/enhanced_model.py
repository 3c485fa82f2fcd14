"""Group `enhanced_model`: the v2 encoder trained with the LLM's queries and synonyms, and the
base-vs-enhanced comparison on held-out questions."""

import base64
from pathlib import Path

import dagster as dg

from sparse_assets import comparison, pairs, retrieval
from sparse_assets.assets.model_checks import sparse_model_checks
from sparse_assets.assets.training import SparseTrainingConfig, train_model_asset
from sparse_assets.deployment import GPU_OP_TAGS
from sparse_assets.io_managers import WithSidecars
from sparse_assets.resources import BaseEncoder

GROUP = "enhanced_model"
PER_QUERY = "per_query_ndcg@10"


class EnhancedTrainingConfig(SparseTrainingConfig):
    """v1's hyperparameters, plus how v2 uses the LLM's output."""

    warm_start_from_v1: bool = False
    synonym_substitution_share: float = 0.2


@dg.asset(group_name=GROUP, io_manager_key="model_io_manager", code_version="1", pool="gpu", op_tags=GPU_OP_TAGS)
def neural_sparse_v2_model(
    context: dg.AssetExecutionContext,
    config: EnhancedTrainingConfig,
    documents: list[dict],
    qd_pairs_base: list[dict],
    synthetic_qd_pairs: list[dict],
    idf_statistics: dict,
    enhanced_synonyms: dict,
    neural_sparse_v1_model: Path,
    base_encoder: BaseEncoder,
) -> Path:
    """The enhanced sparse encoder: v1's trainer (same code path) on the pseudo-query pairs plus the
    LLM's synthetic questions, plus synonym-substituted copies of a share of them (a Korean query word
    replaced by its LLM-verified English synonym, so documents learn to match English renderings).
    Optionally warm-started from v1's document encoder. Same blocking checks as v1."""
    substituted = pairs.synonym_substituted_pairs(
        [*qd_pairs_base, *synthetic_qd_pairs], enhanced_synonyms.get("synonyms", {}), config.synonym_substitution_share, config.seed
    )
    training_pairs = [*qd_pairs_base, *synthetic_qd_pairs, *substituted]
    context.log.info(f"{len(qd_pairs_base)} pseudo + {len(synthetic_qd_pairs)} synthetic + {len(substituted)} synonym-substituted pairs")
    base_folder = neural_sparse_v1_model / "document_0_Transformer" if config.warm_start_from_v1 else base_encoder.folder()
    folder, metadata = train_model_asset(context, config, documents, training_pairs, idf_statistics, base_folder)
    context.add_output_metadata(
        {**metadata, "pairs_pseudo": len(qd_pairs_base), "pairs_synthetic": len(synthetic_qd_pairs), "pairs_synonym_substituted": len(substituted)}
    )
    return folder


class ComparisonConfig(dg.Config):
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    seed: int = 13


@dg.asset(group_name=GROUP, io_manager_key="json_io_manager", code_version="1")
def performance_comparison(
    context: dg.AssetExecutionContext,
    config: ComparisonConfig,
    documents: list[dict],
    eval_queries: list[dict],
    neural_sparse_v1_model: Path,
    neural_sparse_v2_model: Path,
):
    """BM25-Kiwi, IDF-only, v1 and v2 on the held-out `eval_queries`: NDCG@10, MRR@10, Recall@10,
    Recall@100, FLOPS, mean active dimensions, query latency; v2 - v1 NDCG@10 with a paired bootstrap
    interval. Also written as performance_comparison.md and performance_comparison.png."""
    if not eval_queries:
        raise dg.Failure("eval_queries is empty: there is nothing to evaluate on; re-materialize `documents` with a corpus that has questions or enough text")
    rows = retrieval.evaluate_systems(
        documents, eval_queries, models={"v1": neural_sparse_v1_model, "v2": neural_sparse_v2_model}, bm25=True, idf_only=neural_sparse_v1_model
    )
    per_query = {row["system"]: row.pop(PER_QUERY) for row in rows}
    difference = comparison.paired_bootstrap(per_query["v1"], per_query["v2"], config.bootstrap_samples, config.seed, config.confidence)
    human = all(q.get("human", False) for q in eval_queries)
    table = comparison.markdown_report(rows, difference, human, len(eval_queries))
    plot = comparison.bar_plot_png(rows)
    report = {"rows": rows, "v2_minus_v1_ndcg@10": difference, "queries": len(eval_queries), "human_questions": human, "documents": len(documents)}
    context.log.info("\n" + table)
    metadata = {
        "table": dg.MetadataValue.md(table),
        "plot": dg.MetadataValue.md(f"![comparison](data:image/png;base64,{base64.b64encode(plot).decode()})"),
        "v2_minus_v1_ndcg@10": difference["mean_difference"],
        "ci_low": difference["ci_low"],
        "ci_high": difference["ci_high"],
        "human_questions": human,
        **{f"{row['system']}_ndcg@10": row["ndcg@10"] for row in rows},
    }
    return dg.Output(
        WithSidecars(report, {"performance_comparison.md": table + "\n", "performance_comparison.png": plot}), metadata=metadata
    )


enhanced_assets = [neural_sparse_v2_model, performance_comparison]
enhanced_checks = [*sparse_model_checks("neural_sparse_v2_model")]
