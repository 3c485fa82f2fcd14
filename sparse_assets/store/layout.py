"""Where each asset lives under `dataset/` (the layout every entry point and the dataset manager share)."""

from __future__ import annotations

ASSET_PATHS: dict[str, str] = {
    "documents": "base_model/documents.json",
    "eval_queries": "base_model/eval_queries.json",
    "idf_statistics": "base_model/idf_statistics.pkl",
    "qd_pairs_base": "base_model/qd_pairs_base.pkl",
    "bilingual_synonyms": "base_model/bilingual_synonyms.json",
    "document_embeddings": "base_model/document_embeddings.pkl",
    "teacher_scores": "base_model/teacher_scores.pkl",
    "neural_sparse_v1_model": "base_model/neural_sparse_v1_model",
    "synthetic_qd_pairs": "llm_generated/synthetic_qd_pairs.pkl",
    "enhanced_synonyms": "llm_generated/enhanced_synonyms.json",
    "neural_sparse_v2_model": "enhanced_model/neural_sparse_v2_model",
    "neural_sparse_v2_without_llm_model": "enhanced_model/neural_sparse_v2_without_llm_model",
    "performance_comparison": "enhanced_model/evaluation/performance_comparison.json",
}

# Files an asset writes beside its artifact (`WithSidecars` in the IO managers), recorded in its entry:
# what `storage.rebuild_index` looks for.
SIDECAR_PATHS: dict[str, tuple[str, ...]] = {
    "idf_statistics": ("base_model/idf.json",),
    "performance_comparison": (
        "enhanced_model/evaluation/performance_comparison.md",
        "enhanced_model/evaluation/performance_comparison.png",
    ),
}

# Content-addressed stores kept for re-use (not artifacts: no metadata.json entry, no asset of their own).
STORE_PATHS: dict[str, str] = {
    "llm_store": "llm_generated/store",  # LLM completions (sparse_assets/llm/store.py)
    "dense_store": "base_model/dense_store",  # dense teacher vectors (sparse_assets/store/vector_store.py)
}

METADATA_FILE = "metadata.json"


def asset_path(asset_name: str) -> str:
    """The path of an asset relative to the dataset root; unknown names are a programming error."""
    try:
        return ASSET_PATHS[asset_name]
    except KeyError:
        raise KeyError(f"asset {asset_name!r} has no place in the dataset layout (sparse_assets/store/layout.py)") from None
