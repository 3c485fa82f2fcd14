"""Base-vs-enhanced comparison: metric rows, a paired bootstrap on per-query NDCG@10, a Markdown
table and a bar plot (no Dagster here)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

from sparse_assets.tables import markdown_table

TABLE_COLUMNS = ["system", "ndcg@10", "mrr@10", "recall@10", "recall@100", "flops", "query_active_dims", "doc_active_dims", "query_latency_ms"]
PLOT_METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]


def paired_bootstrap(baseline: Mapping[str, float], candidate: Mapping[str, float], samples: int = 2000, seed: int = 13, confidence: float = 0.95) -> dict:
    """Mean of candidate - baseline over the shared queries, with a percentile bootstrap interval
    (queries resampled with replacement, the same resample for both systems)."""
    queries = sorted(set(baseline) & set(candidate))
    if not queries:
        raise ValueError("no query is scored by both systems; nothing to compare")
    diff = np.array([candidate[q] - baseline[q] for q in queries])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {
        "mean_difference": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "queries": len(queries),
        "bootstrap_samples": samples,
        "excludes_zero": bool(low > 0 or high < 0),
        "candidate_wins": int((diff > 0).sum()),
        "candidate_losses": int((diff < 0).sum()),
    }


def markdown_report(rows: Sequence[Mapping], difference: Mapping, human: bool, queries: int) -> str:
    kind = "human questions" if human else "held-out pseudo-queries (the corpus has no human questions)"
    verdict = "excludes zero" if difference["excludes_zero"] else "includes zero: no significant difference"
    return "\n".join(
        [
            f"Evaluated on {queries} {kind}.",
            "",
            markdown_table(rows, [c for c in TABLE_COLUMNS if any(c in r for r in rows)]),
            "",
            f"v2 - v1 NDCG@10: {difference['mean_difference']:+.4f}, {difference['confidence']:.0%} paired bootstrap interval "
            f"[{difference['ci_low']:+.4f}, {difference['ci_high']:+.4f}] ({verdict}; v2 better on {difference['candidate_wins']}, "
            f"worse on {difference['candidate_losses']} queries).",
        ]
    )


def bar_plot_png(rows: Sequence[Mapping]) -> bytes:
    """Grouped bars: one group per metric, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(rows), 1)
    positions = np.arange(len(PLOT_METRICS))
    for i, row in enumerate(rows):
        values = [row.get(m) or 0.0 for m in PLOT_METRICS]
        bars = ax.bar(positions + i * width, values, width, label=row["system"])
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(positions + width * (len(rows) - 1) / 2, PLOT_METRICS)
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7, ncols=len(rows), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.set_title("retrieval on held-out queries")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
