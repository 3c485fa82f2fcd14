"""Base-vs-enhanced comparison: metric rows, a paired bootstrap on per-query NDCG@10, a Markdown
table and a bar plot (no Dagster here)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

from sparse_assets.tables import markdown_table

TABLE_COLUMNS = [
    "system",
    "ndcg@10",
    "mrr@10",
    "recall@10",
    "recall@100",
    "flops",
    "query_active_dims",
    "doc_active_dims",
    "query_latency_ms",
]
PLOT_METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]


def paired_bootstrap(
    baseline: Mapping[str, float], candidate: Mapping[str, float], samples: int = 2000, seed: int = 13, confidence: float = 0.95
) -> dict:
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


# the row of BM25-Kiwi + v2 fused as OpenSearch's hybrid search does (sparse_assets.evaluation.hybrid)
HYBRID = "hybrid_bm25_v2"

# (label, candidate system, baseline system): the differences the comparison reports, when both ran
DIFFERENCES = (
    ("v1 - BM25-Kiwi", "v1", "bm25"),
    ("v2 - BM25-Kiwi", "v2", "bm25"),
    ("v1 - IDF-only", "v1", "idf_only"),
    ("v2 - v1", "v2", "v1"),
    ("v2 - v2 without LLM data (what the LLM's pairs add)", "v2", "v2_without_llm"),
    ("hybrid BM25-Kiwi + v2 - BM25-Kiwi", HYBRID, "bm25"),
    ("hybrid BM25-Kiwi + v2 - v2", HYBRID, "v2"),
)


def paired_differences(
    per_query: Mapping[str, Mapping[str, float]], samples: int = 2000, seed: int = 13, confidence: float = 0.95
) -> dict[str, dict]:
    """label -> paired bootstrap of each DIFFERENCES pair whose systems were both evaluated."""
    return {
        label: {"candidate": cand, "baseline": base, **paired_bootstrap(per_query[base], per_query[cand], samples, seed, confidence)}
        for label, cand, base in DIFFERENCES
        if cand in per_query and base in per_query
    }


def difference_line(label: str, difference: Mapping) -> str:
    if difference["excludes_zero"]:
        verdict = "significantly better" if difference["mean_difference"] > 0 else "significantly WORSE"
    else:
        verdict = "no significant difference"
    return (
        f"- {label}: {difference['mean_difference']:+.4f} NDCG@10, {difference['confidence']:.0%} paired bootstrap interval "
        f"[{difference['ci_low']:+.4f}, {difference['ci_high']:+.4f}]: {verdict} (better on {difference['candidate_wins']}, "
        f"worse on {difference['candidate_losses']} of {difference['queries']} queries)"
    )


def results_table(rows: Sequence[Mapping]) -> str:
    """The systems' metrics as a Markdown table."""
    return markdown_table(rows, [c for c in TABLE_COLUMNS if any(c in r for r in rows)])


def differences_text(differences: Mapping[str, Mapping], human: bool, queries: int) -> str:
    """What was evaluated on, and one line per paired difference (a noise warning below 100 queries)."""
    kind = "human questions" if human else "held-out pseudo-queries (the corpus has no human questions)"
    lines = [f"Evaluated on {queries} {kind}.", "", *[difference_line(label, d) for label, d in differences.items()]]
    if queries < 100:
        lines += ["", f"Only {queries} evaluation queries: differences this small a sample shows are mostly noise."]
    return "\n".join(lines)


def markdown_report(rows: Sequence[Mapping], differences: Mapping[str, Mapping], human: bool, queries: int) -> str:
    return results_table(rows) + "\n\n" + differences_text(differences, human, queries)


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
