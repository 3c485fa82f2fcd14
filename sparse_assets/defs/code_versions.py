"""Asset code versions derived from the code they describe.

An asset's `code_version` is a digest of the library modules whose code decides its output, so the
UI marks an asset (and what it feeds) stale exactly when that code changed since its last
materialization: a new pair sampler marks `qd_pairs_base` and the models trained on it, an edited
LLM prompt marks the LLM's assets, and nothing else."""

import hashlib
import importlib.util
from pathlib import Path


def code_version(*modules: str) -> str:
    """12 hex digits of the SHA-256 over the named modules' source files (read, not imported; the
    order of the names does not matter)."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(f"sparse_assets.{name}")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"sparse_assets.{name}: no such module to version")
        digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return digest.hexdigest()[:12]


_TRAINING = (
    "training.sparse_training",
    "training.teacher",
    "training.pairs",
    "encoder.sparse_model",
    "encoder.length_normalization",
    "encoder.lexical_floor",
    "encoder.saturation",
    "encoder.mlm_base",
)
_LLM = (
    "llm.worker",
    "llm.backends",
    "llm.settings",
    "llm.prompts",
    "llm.parsing",
    "llm.korean_output",
    "llm.prompt_copy",
    "llm.vllm_plugins",
)

DOCUMENTS = code_version("data.corpus", "data.evalset", "data.korean")
IDF_STATISTICS = code_version("data.idf", "data.morph_idf", "data.korean")
BILINGUAL_SYNONYMS = code_version("data.bilingual_dictionary", "data.korean")
PAIRS = code_version("training.pairs", "data.korean", "evaluation.bm25")
DOCUMENT_EMBEDDINGS = code_version("training.teacher", "store.vector_store", "encoder.sparse_model")
TEACHER_SCORES = code_version("training.teacher", "evaluation.bm25", "data.korean")
MODEL = code_version(*_TRAINING)
SYNTHETIC_QUERIES = code_version(*_LLM, "llm.filters", "training.pairs")
ENHANCED_SYNONYMS = code_version(*_LLM, "llm.synonyms")
COMPARISON = code_version(
    "evaluation.retrieval", "evaluation.comparison", "evaluation.hybrid", "evaluation.bm25", "encoder.sparse_model", "encoder.saturation"
)
