"""One training code path for the v1 and v2 sparse model assets: the run config (built from
`SparseTrainingSettings`, the one definition of the knobs) and `train_model_asset`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sparse_assets.defs import code_versions
from sparse_assets.defs.assets.settings_config import config_from_settings, settings_from_config
from sparse_assets.defs.checks import model_check_results, model_check_specs
from sparse_assets.defs.deployment import GPU_OP_TAGS
from sparse_assets.defs.io_managers import HandoverFolder
from sparse_assets.defs.names import GPU_POOL
from sparse_assets.encoder.sparse_model import SparseTrainingSettings
from sparse_assets.training.sparse_training import train_sparse_encoder

_CHECK_BOUNDS = {
    # bounds of the blocking checks (mean active dims per document)
    "min_doc_active_dims": (float, 10.0),
    "max_doc_active_dims": (float, 2000.0),
    # validation MRR@10 must exceed IDF-only's by this much (a small negative value tolerates a tie on tiny data)
    "min_gain_over_idf_only": (float, 0.0),
}
SparseTrainingConfig = config_from_settings(
    "SparseTrainingConfig",
    SparseTrainingSettings,
    "Hyperparameters of a sparse model asset: the fields, defaults and bounds of "
    "sparse_assets.encoder.sparse_model.SparseTrainingSettings, plus the bounds of the blocking checks.",
    **_CHECK_BOUNDS,
)


def sparse_model_asset(group_name: str):
    """The decorator of a sparse model asset (v1, v2, v2 without LLM data), named after its function:
    a model folder through the model IO manager, the training code's version, the accelerator pool and
    GPU request, and the model checks it reports (`sparse_assets.defs.checks`)."""

    def decorate(fn):
        return dg.asset(
            name=fn.__name__,
            group_name=group_name,
            io_manager_key="model_io_manager",
            code_version=code_versions.MODEL,
            pool=GPU_POOL,
            op_tags=GPU_OP_TAGS,
            check_specs=model_check_specs(fn.__name__),
        )(fn)

    return decorate


def loss_curve_markdown(steps: list[int], losses: list[float], points: int = 20) -> str:
    if not losses:
        return "(no loss logged)"
    stride = max(1, len(losses) // points)
    rows = ["| step | loss |", "|---|---|"]
    picked = list(range(0, len(losses), stride))
    if picked[-1] != len(losses) - 1:
        picked.append(len(losses) - 1)
    rows += [f"| {steps[i]} | {losses[i]:.4f} |" for i in picked]
    return "\n".join(rows)


def loss_curve_png(steps: list[int], losses: list[float], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def train_model_asset(
    context,
    config: dg.Config,
    documents,
    pairs,
    idf_statistics,
    base_folder: Path,
    teacher: dict,
    cache_dir: str,
    warm_start: Path | None = None,
    overrides: dict | None = None,
) -> tuple[HandoverFolder, dict, list[dg.AssetCheckResult]]:
    """Train, and return (the model folder, built in a temp folder that the model IO manager moves
    into place, the asset's metadata, the model checks' results from the run's last validation).
    `teacher`: (query, positive_id) -> teacher record for every pair;
    `cache_dir` keeps the frozen encoder's token states between runs; `overrides` replace settings of
    `config` (a warm start's shorter, gentler schedule)."""
    settings = settings_from_config(
        SparseTrainingSettings, config, hidden_cache_dir=config.hidden_cache_dir or cache_dir, **(overrides or {})
    )
    idf = idf_statistics.idf if hasattr(idf_statistics, "idf") else idf_statistics
    handover = HandoverFolder.new()
    out = handover.path

    def progress(step: int, total: int, loss: float) -> None:
        if step == total or step % max(1, total // 20) == 0:
            context.log.info(f"step {step}/{total} loss {loss:.4f}")

    report = train_sparse_encoder(
        documents, pairs, idf, settings, out, Path(base_folder), teacher, progress=progress, warm_start=warm_start
    )
    png = loss_curve_png(report.loss_steps, report.losses, out / "loss_curve.png")
    validation = report.validation[-1] if report.validation else {}
    metadata = {
        "loss_curve": dg.MetadataValue.md(loss_curve_markdown(report.loss_steps, report.losses)),
        "config": dg.MetadataValue.json(report.config),
        "steps": report.steps,
        "steps_per_second": round(report.steps_per_second, 3),
        "train_seconds": round(report.train_seconds, 1),
        "wall_seconds": round(report.wall_seconds, 1),
        "peak_memory_mb": round(report.peak_memory_mb, 1),
        "device": f"{report.device} ({report.dtype})",
        "vocab_size": report.vocab_size,
        "train_pairs": report.train_pairs,
        "validation_pairs": report.validation_pairs,
        "final_loss": report.losses[-1] if report.losses else None,
        "validation": dg.MetadataValue.json(validation),
        "length_slope": round(report.length_slope, 4),
        "length_pivot_tokens": round(report.length_pivot, 1),
        "warm_start": str(warm_start) if warm_start else "none (fresh head on the base encoder)",
    }
    for key in ("mrr@10", "idf_only_mrr@10", "doc_active_dims", "query_active_dims", "zero_doc_share"):
        if key in validation:
            metadata[f"validation_{key}"] = float(validation[key])
    if png is not None:
        metadata["loss_curve_png"] = dg.MetadataValue.path(str(png))
    return handover, metadata, model_check_results(validation, config)
