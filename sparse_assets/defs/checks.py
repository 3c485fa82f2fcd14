"""Quality checks of every sparse model asset (v1, v2, v2 without LLM data): a collapsed model fails
its step, so nothing downstream runs on it.

The training asset reports them itself (`check_specs` on the asset, `AssetCheckResult`s from the
in-memory training report): the validation numbers training measured on held-out pseudo-query pairs,
judged by the pure checks of sparse_assets.evaluation.retrieval against the bounds of the run config.
"""

from __future__ import annotations

import dagster as dg

from sparse_assets.evaluation.retrieval import check_active_dims, check_beats_idf_only, check_zero_share

MAX_ZERO_SHARE = 0.01
MODEL_CHECKS = {  # name -> (description, blocking)
    "active_dims": ("mean active dimensions per document within the config's [min_doc_active_dims, max_doc_active_dims]", True),
    "zero_vectors": (f"share of all-zero document vectors at most {MAX_ZERO_SHARE:.0%}", True),
    # A warning, not a block: on a small corpus it rests on a few dozen pseudo-queries (the embedded
    # corpus: 44), and a collapsed model already fails the two checks above.
    "beats_idf_only": ("validation MRR@10 above the untrained IDF-only baseline (a warning)", False),
}


def evaluate_checks(
    validation: dict, min_dims: float, max_dims: float, max_zero: float = MAX_ZERO_SHARE, margin: float = 0.0
) -> dict[str, tuple[bool, str]]:
    """name -> (passed, description) for the model checks (pure; no Dagster objects)."""
    if not validation:
        missing = (False, "training measured no validation (validation_fraction 0?): cannot vouch for the model")
        return dict.fromkeys(MODEL_CHECKS, missing)
    return {
        "active_dims": check_active_dims(float(validation["doc_active_dims"]), min_dims, max_dims),
        "zero_vectors": check_zero_share(float(validation["zero_doc_share"]), max_zero),
        "beats_idf_only": check_beats_idf_only(float(validation["mrr@10"]), float(validation["idf_only_mrr@10"]), margin, gain=validation),
    }


def model_check_specs(asset_key: str) -> list[dg.AssetCheckSpec]:
    """The checks a model asset declares (and reports with `model_check_results`)."""
    return [
        dg.AssetCheckSpec(name, asset=asset_key, description=text, blocking=blocking) for name, (text, blocking) in MODEL_CHECKS.items()
    ]


def model_check_results(validation: dict, config) -> list[dg.AssetCheckResult]:
    """The results of `model_check_specs` for a training run's last validation record; `config`
    (SparseTrainingConfig) holds the bounds."""
    verdicts = evaluate_checks(
        validation, config.min_doc_active_dims, config.max_doc_active_dims, MAX_ZERO_SHARE, config.min_gain_over_idf_only
    )
    numbers = {key: float(value) for key, value in validation.items() if isinstance(value, (int, float))}
    return [
        dg.AssetCheckResult(
            check_name=name,
            passed=passed,
            description=text,
            metadata={"result": text, **numbers},
            severity=dg.AssetCheckSeverity.ERROR if MODEL_CHECKS[name][1] else dg.AssetCheckSeverity.WARN,
        )
        for name, (passed, text) in verdicts.items()
    ]
