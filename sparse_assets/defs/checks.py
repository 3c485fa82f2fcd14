"""Blocking quality checks for every sparse model asset (v1, v2): a collapsed model fails the run.

The checks read the validation numbers that training measured on held-out pseudo-query pairs
(``training_report.json`` in the model folder, written by sparse_assets.training.sparse_training) and apply the
pure checks of sparse_assets.evaluation.retrieval.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from sparse_assets.evaluation.retrieval import check_active_dims, check_beats_idf_only, check_zero_share
from sparse_assets.training.sparse_training import REPORT_FILE

MIN_DOC_ACTIVE_DIMS = 10.0
MAX_DOC_ACTIVE_DIMS = 2000.0
MAX_ZERO_SHARE = 0.01


def model_validation(folder) -> dict:
    """The last validation record of a model folder ({} when training measured none)."""
    path = Path(folder) / REPORT_FILE
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return (report.get("validation") or [{}])[-1]


def evaluate_checks(
    validation: dict, min_dims: float = MIN_DOC_ACTIVE_DIMS, max_dims: float = MAX_DOC_ACTIVE_DIMS, max_zero: float = MAX_ZERO_SHARE, margin: float = 0.0
) -> dict[str, tuple[bool, str]]:
    """name -> (passed, description) for the three model checks (pure; no Dagster objects)."""
    if not validation:
        missing = (False, "no validation measurement in the model folder (training_report.json): cannot vouch for the model")
        return {"active_dims": missing, "zero_vectors": missing, "beats_idf_only": missing}
    return {
        "active_dims": check_active_dims(float(validation["doc_active_dims"]), min_dims, max_dims),
        "zero_vectors": check_zero_share(float(validation["zero_doc_share"]), max_zero),
        "beats_idf_only": check_beats_idf_only(float(validation["mrr@10"]), float(validation["idf_only_mrr@10"]), margin, gain=validation),
    }


def sparse_model_checks(
    asset_key: str,
    min_dims: float = MIN_DOC_ACTIVE_DIMS,
    max_dims: float = MAX_DOC_ACTIVE_DIMS,
    max_zero: float = MAX_ZERO_SHARE,
) -> list[dg.AssetChecksDefinition]:
    """Checks for the model-folder asset `asset_key` (its value is the folder Path): blocking ones on collapse, a warning on IDF-only. Bounds on
    active dims come from the folder's check_bounds.json (written from SparseTrainingConfig) or these defaults."""

    def make(name: str, description: str, blocking: bool = True):
        severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

        @dg.asset_check(asset=asset_key, name=name, description=description, blocking=blocking)
        def _check(context, model_folder) -> dg.AssetCheckResult:
            validation = model_validation(model_folder)
            bounds_file = Path(model_folder) / "check_bounds.json"  # the asset config's bounds, when it wrote them
            bounds = json.loads(bounds_file.read_text()) if bounds_file.exists() else {}
            low, high = bounds.get("min_doc_active_dims", min_dims), bounds.get("max_doc_active_dims", max_dims)
            passed, text = evaluate_checks(validation, low, high, max_zero, bounds.get("min_gain_over_idf_only", 0.0))[name]
            meta = {"result": text}
            meta.update({k: float(v) for k, v in validation.items() if isinstance(v, (int, float))})
            return dg.AssetCheckResult(passed=passed, description=text, metadata=meta, severity=severity)

        return _check

    return [
        make("active_dims", f"mean active dimensions per document within [{min_dims}, {max_dims}]"),
        make("zero_vectors", f"share of all-zero document vectors at most {max_zero:.0%}"),
        # A warning, not a block: on a small corpus it rests on a few dozen pseudo-queries (the embedded
        # corpus: 44), and a collapsed model already fails the two checks above.
        make("beats_idf_only", "validation MRR@10 above the untrained IDF-only baseline (a warning)", blocking=False),
    ]
