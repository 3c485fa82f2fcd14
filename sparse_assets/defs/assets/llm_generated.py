"""Group `llm_generated`: synthetic training queries and LLM-verified synonyms.

Both assets launch `sparse_assets/llm/worker.py` in the LLM environment through Dagster Pipes
(`PipesSubprocessClient`): vLLM pins its own torch, so it never shares a process with the rest.
The worker streams logs/progress and reports run stats; parsing, filtering and negative mining
happen here, in the main environment. Both assets share the concurrency pool "gpu" (one LLM job at
a time). A failure (unreachable server, missing model folder, a worker that dies, nothing usable
generated) raises with the cause; the IO manager writes only on success, so earlier artifacts stay.
"""

import hashlib
import json
import shutil
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError  # not re-exported by `dagster`

from sparse_assets.bounds import Ge
from sparse_assets.data import evalset
from sparse_assets.data.records import QDPair
from sparse_assets.defs import code_versions
from sparse_assets.defs.assets.settings_config import SettingsConfig, config_from_settings, settings_fields, settings_from_config
from sparse_assets.defs.names import GPU_POOL, LLM_GROUP
from sparse_assets.defs.resources import PROJECT_ROOT, LLMCompletionStore, LLMResource
from sparse_assets.llm import filters
from sparse_assets.llm import synonyms as llm_synonyms
from sparse_assets.llm.prompts import QUERIES_SCHEMA
from sparse_assets.llm.settings import sampling_settings
from sparse_assets.llm.store import CompletionStore, document_key, prompt_templates_version, request_key
from sparse_assets.tables import markdown_table
from sparse_assets.training.pairs import PseudoQuerySettings, document_bm25, mine_negatives

SyntheticQueriesConfig = config_from_settings(
    "SyntheticQueriesConfig",
    filters.FilterSettings,
    "Generation, filter (sparse_assets.llm.filters.FilterSettings) and negative-mining settings for `synthetic_qd_pairs`.",
    # 0: every document; 300 bounds the LLM's cost on a CPU (README: the LLM step); a seeded sample that
    # stays put when documents are added
    max_documents=(Annotated[int, Ge(0)], 300),
    queries_per_document=(Annotated[int, Ge(1)], 3),
    max_doc_chars=(Annotated[int, Ge(50)], 600),  # the document is cut here in the prompt (CPU prefill time)
    temperature=(Annotated[float, Ge(0)] | None, None),  # None: the prompt style's default (0.7 few-shot, 0.6 Qwen3 thinking)
    max_tokens=(Annotated[int, Ge(1)] | None, None),  # None: 48 few-shot, 8192 for a thinking model (trace first)
    **settings_fields(PseudoQuerySettings, "hard_negatives", "random_negatives", "bm25_depth", "seed"),
)


class EnhancedSynonymsConfig(SettingsConfig):
    """How many dictionary terms the LLM judges and how many frequent corpus terms it expands."""

    max_terms: Annotated[int, Ge(0)] = 100  # most frequent dictionary terms judged (each of their English candidates)
    expand_terms: Annotated[int, Ge(0)] = 30
    max_additions: Annotated[int, Ge(0)] = 3
    # None: decided by the model (trusted: an instruction/thinking model; not: the CPU's 270M base model)
    enforce_verdicts: bool | None = None  # drop pairs the LLM says "no" to (else flag and keep them)
    accept_additions: bool | None = None  # add the LLM's proposed synonyms (else record them as proposals)


def _sample(documents: list[dict], limit: int, seed: int) -> list[dict]:
    """At most `limit` documents (0: all), in corpus order: those whose content hashes (seeded) rank
    lowest, a uniform sample over every source and article that keeps its members when documents
    are added (a new document displaces an old one only if it ranks lower), so re-synthesis after a
    corpus grows asks the LLM about few documents."""
    if limit <= 0 or len(documents) <= limit:
        return documents
    rank = {d["id"]: hashlib.sha256(f"{seed}:{document_key(d)}".encode()).hexdigest() for d in documents}
    chosen = set(sorted(rank, key=rank.__getitem__)[:limit])
    return [d for d in documents if d["id"] in chosen]


def run_llm_worker(
    context: dg.AssetExecutionContext,
    llm: LLMResource,
    client: dg.PipesSubprocessClient,
    job: dict,
    on_partial: Callable[[str, list[dict]], None] = lambda group, completions: None,
) -> tuple[dict, dict]:
    """Run the worker on `job` through Pipes; (results by group, stats). Failures name their cause;
    `on_partial(group, completions)` gets what a worker that died had finished, before the failure
    is raised."""
    workdir = Path(tempfile.mkdtemp(prefix="sparse_assets_llm_"))
    try:
        result_file = workdir / "result.json"
        progress_file = workdir / "result.progress.json"
        error_file = workdir / "result.error.json"
        partial_file = workdir / "result.partial.jsonl"
        job = {
            **llm.job_base(),
            **job,
            "result_file": str(result_file),
            "progress_file": str(progress_file),
            "partial_file": str(partial_file),
        }
        job_file = workdir / "job.json"
        job_file.write_text(json.dumps(job, ensure_ascii=False))
        env = {**job["engine"]["env"], "PYTHONPATH": str(PROJECT_ROOT)}
        try:
            invocation = client.run(
                context=context,
                command=llm.worker_command(),
                extras={"job_file": str(job_file)},
                env=env,
                cwd=str(PROJECT_ROOT),
            )
        except (DagsterPipesExecutionError, FileNotFoundError) as exc:
            for group, completions in _finished_batches(partial_file):
                on_partial(group, completions)
            raise dg.Failure(description=_worker_failure(exc, error_file, progress_file)) from exc
        if not result_file.exists():
            raise dg.Failure(description=f"LLM worker exited without writing its result ({result_file})")
        result = json.loads(result_file.read_text())
        stats = dict(result["stats"])
        materialization = invocation.get_materialize_result()
        stats.update({k: v.value for k, v in (materialization.metadata or {}).items()})
        return result["results"], stats
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finished_batches(partial_file: Path) -> list[tuple[str, list[dict]]]:
    """(group, completions) of each batch the worker finished (a torn last line is left out)."""
    if not partial_file.exists():
        return []
    batches = []
    for line in partial_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        batches.append((record["group"], record["completions"]))
    return batches


def generate_with_store(
    context: dg.AssetExecutionContext,
    llm: LLMResource,
    client: dg.PipesSubprocessClient,
    groups: dict[str, tuple[CompletionStore, dict[str, str]]],
    job: Callable[[dict[str, list[str]]], dict],
) -> tuple[dict[str, dict[str, dict]], dict]:
    """Completions of each worker group's items ({group: (its store, {request id: store key})}):
    reused from the store where it has them, else generated by one worker run on `job({group:
    missing ids})` and kept in the store when the worker ends (if it dies, the batches it finished).
    A corrupt entry is generated again, with a warning. Returns ({group: {request id: completion}},
    stats with `llm/from_store`, `llm/generated_items` and `llm/store_corrupt_entries`)."""
    completions: dict[str, dict[str, dict]] = {}
    missing: dict[str, list[str]] = {}
    corrupt_entries = 0
    for group, (store, items) in groups.items():
        stored, corrupt = store.load(items.values())
        for reason in corrupt.values():
            context.log.warning(f"LLM store entry unusable, generating it again: {reason}")
        corrupt_entries += len(corrupt)
        completions[group] = {item_id: stored[key] for item_id, key in items.items() if key in stored}
        missing[group] = [item_id for item_id, key in items.items() if key not in stored]
    total = sum(len(items) for _, items in groups.values())
    to_generate = sum(len(ids) for ids in missing.values())
    context.log.info(f"LLM store: {total - to_generate} of {total} prompts answered before, {to_generate} to generate")

    def keep(group: str, finished: list[dict]) -> None:
        store, items = groups[group]
        for completion in finished:
            value = {k: completion[k] for k in ("texts", "finish_reasons", "generator") if k in completion}
            store.save(items[completion["id"]], value)
            completions[group][completion["id"]] = value

    stats: dict = {}
    if to_generate:
        results, stats = run_llm_worker(context, llm, client, job(missing), on_partial=keep)
        for group, finished in results.items():
            keep(group, finished)
    stats.update({"llm/from_store": total - to_generate, "llm/generated_items": to_generate, "llm/store_corrupt_entries": corrupt_entries})
    return completions, stats


def _worker_failure(exc: Exception, error_file: Path, progress_file: Path) -> str:
    if isinstance(exc, FileNotFoundError):
        return str(exc)
    if error_file.exists():
        error = json.loads(error_file.read_text())
        return f"LLM worker failed: {error['type']}: {error['message']}"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"done": 0, "total": "?"}
    return (
        f"LLM worker died ({exc}) after {progress['done']} of {progress['total']} prompts, without an error "
        f"report (killed, out of memory or crashed): see the run's stderr"
    )


def _speed_metadata(stats: dict) -> dict:
    keys = (
        "backend",
        "model",
        "accelerator",
        "prompt_style",
        "prompts",
        "generated",
        "prompt_tokens",
        "completion_tokens",
        "engine_start_s",
        "generation_s",
        "tokens_per_s",
        "total_tokens_per_s",
        "prefill_tokens_per_s",
        "prefix_cache_hit_rate",
        "batch_occupancy",
        "engine_steps",
        "preemptions",
        "output_tokens",
    )
    reuse = ("llm/from_store", "llm/generated_items", "llm/store_corrupt_entries")
    return {**{f"llm/{k}": stats[k] for k in keys if k in stats}, **{k: stats[k] for k in reuse if k in stats}}


@dg.asset(
    group_name=LLM_GROUP,
    pool=GPU_POOL,
    code_version=code_versions.SYNTHETIC_QUERIES,
    io_manager_key="pickle_io_manager",
    kinds={"python", "vllm"},
)
def synthetic_qd_pairs(
    context: dg.AssetExecutionContext,
    config: SyntheticQueriesConfig,
    documents: list[dict],
    llm: LLMResource,
    llm_store: LLMCompletionStore,
    llm_worker_client: dg.ResourceParam[dg.PipesClient],
) -> dg.Output[list[dict]]:
    """LLM-synthesised Korean training queries, one record per accepted query:
    {query, positive_id, negative_ids, source, generator, filter_scores}. The LLM writes questions
    for each document (few-shot for the CPU's base Gemma, JSON for the production Qwen3); a query
    is kept only if it parses, has a sane length, is Korean, copies neither a few-shot example nor a
    long span of its document, is new, and finds its own document in BM25's top k (round-trip).
    Hard negatives are mined as for `qd_pairs_base` (BM25 top-k minus the positive, + random)."""
    selected = _sample(documents, config.max_documents, config.seed)
    if not selected:
        raise dg.Failure(description="no documents to generate queries for")
    engine = llm.engine()
    sampling = sampling_settings(
        engine, n=config.queries_per_document, temperature=config.temperature, max_tokens=config.max_tokens, json_schema=QUERIES_SCHEMA
    )
    context.log.info(f"LLM: {llm.backend} {engine.model} ({engine.accelerator}, {engine.prompt_style}) for {len(selected)} documents")
    store = llm_store.for_settings(
        {
            "task": "queries",
            "model": engine.model,
            "prompt_style": engine.prompt_style,
            "prompt_templates": prompt_templates_version(),
            "sampling": sampling.to_dict(),
            "queries_per_document": config.queries_per_document,
            "max_doc_chars": config.max_doc_chars,
        }
    )
    by_id = {d["id"]: d for d in selected}
    answered, stats = generate_with_store(
        context,
        llm,
        llm_worker_client,
        {"queries": (store, {d["id"]: document_key(d) for d in selected})},
        lambda missing: {
            "task": "queries",
            "documents": [{"id": i, "title": by_id[i]["title"], "text": by_id[i]["text"]} for i in missing["queries"]],
            "sampling": sampling.to_dict(),
            "queries_per_document": config.queries_per_document,
            "max_doc_chars": config.max_doc_chars,
        },
    )
    completions = answered["queries"]
    generations = [
        (doc_id, text, reason)
        for doc_id, c in ((d["id"], completions[d["id"]]) for d in selected)
        for text, reason in zip(c["texts"], c.get("finish_reasons") or [None] * len(c["texts"]))
    ]
    bm25 = document_bm25(documents)
    depth = max(config.roundtrip_k, config.bm25_depth)
    hits_cache: dict[str, list[str]] = {}

    def ranker(queries):
        missing = [q for q in queries if q not in hits_cache]
        for q, hits in zip(missing, bm25.search(missing, k=depth)):
            hits_cache[q] = [doc_id for doc_id, _ in hits]
        return [hits_cache[q] for q in queries]

    settings = settings_from_config(filters.FilterSettings, config)
    report = filters.filter_generations(generations, documents, engine.prompt_style, settings, ranker)
    dropped = {k: int(v) for k, v in report.dropped.items()}
    if not report.accepted:
        raise dg.Failure(
            description=(
                f"the LLM produced no usable query: 0 of {report.generated} completions for {len(selected)} "
                f"documents were accepted; dropped per reason: {dropped}"
            ),
            metadata={
                "dropped_per_reason": dg.MetadataValue.json(dropped),
                "rejected_sample": dg.MetadataValue.md(_rejected_table(report)),
            },
        )
    negatives = mine_negatives(
        [c.query for c in report.accepted],
        [c.doc_id for c in report.accepted],
        documents,
        bm25,
        settings_from_config(PseudoQuerySettings, config),
    )
    pairs_out = [
        QDPair(
            query=c.query,
            positive_id=c.doc_id,
            negative_ids=negs,
            source=f"llm:{engine.prompt_style}",
            generator=completions[c.doc_id].get("generator", f"{llm.backend}:{engine.model}"),
            filter_scores=c.scores,
        )
        for c, negs in zip(report.accepted, negatives)
    ]
    per_doc = report.accepted_per_doc
    counts = [per_doc.get(d["id"], 0) for d in selected]
    # Pipes puts the step in "typed event stream" mode: return an Output, not a bare value.
    return dg.Output(
        pairs_out,
        metadata={
            "documents": len(selected),
            "completions": report.generated,
            "accepted": len(pairs_out),
            "acceptance_rate": round(len(pairs_out) / max(sum(dropped.values()) + len(pairs_out), 1), 4),
            "documents_with_query": sum(1 for c in counts if c > 0),
            "documents_with_query_share": round(sum(1 for c in counts if c > 0) / len(selected), 4),
            "accepted_per_document_mean": round(statistics.mean(counts), 3),
            "accepted_per_document": dg.MetadataValue.json(dict(sorted(Counter(counts).items()))),
            "dropped_per_reason": dg.MetadataValue.json(dropped),
            **{f"dropped/{reason}": count for reason, count in dropped.items()},
            "sample": dg.MetadataValue.md(
                markdown_table([{"query": p["query"], "positive_id": p["positive_id"], **p["filter_scores"]} for p in pairs_out[:10]])
            ),
            "rejected_sample": dg.MetadataValue.md(_rejected_table(report)),
            **_speed_metadata(stats),
        },
    )


def _rejected_table(report: filters.FilterReport) -> str:
    return markdown_table([{"reason": r, "doc": d, "query": q} for r, d, q in report.rejected_samples])


@dg.asset_check(asset=synthetic_qd_pairs, additional_ins={"eval_queries": dg.AssetIn()}, blocking=True)
def synthetic_queries_are_not_eval_queries(synthetic_qd_pairs: list[dict], eval_queries: list[dict]) -> dg.AssetCheckResult:
    """No synthetic training query is a held-out evaluation question (after normalisation)."""
    leaked = evalset.training_overlap(eval_queries, [p["query"] for p in synthetic_qd_pairs])
    return dg.AssetCheckResult(passed=not leaked, metadata={"leaked": len(leaked), "examples": ", ".join(leaked[:5])})


@dg.asset(
    group_name=LLM_GROUP,
    pool=GPU_POOL,
    code_version=code_versions.ENHANCED_SYNONYMS,
    io_manager_key="json_io_manager",
    kinds={"python", "vllm"},
)
def enhanced_synonyms(
    context: dg.AssetExecutionContext,
    config: EnhancedSynonymsConfig,
    bilingual_synonyms: dict[str, list[str]],
    documents: list[dict],
    llm: LLMResource,
    llm_store: LLMCompletionStore,
    llm_worker_client: dg.ResourceParam[dg.PipesClient],
) -> dg.Output[dict]:
    """`bilingual_synonyms` checked and extended by the LLM: {"synonyms": {korean: [english]},
    "verdicts": [{korean, english, verdict, reason, source}], "model"}, verdict one of keep / reject /
    flagged / unjudged / added / proposed. The LLM judges each dictionary pair of the `max_terms`
    most frequent terms and proposes English synonyms for the `expand_terms` most frequent corpus
    nouns; pairs it did not judge are kept. Verdicts and additions change the dictionary only with
    a trusted (instruction/thinking) model unless the config says otherwise."""
    from sparse_assets.data.korean import nouns

    if not bilingual_synonyms:
        raise dg.Failure(description="bilingual_synonyms is empty: nothing to verify")
    noun_counts = Counter(n for doc_nouns in nouns([f"{d['title']} {d['text']}" for d in documents]) for n in doc_nouns if len(n) >= 2)
    judge_terms = llm_synonyms.choose_terms(bilingual_synonyms, noun_counts, config.max_terms)
    expand_terms = [t for t, _ in noun_counts.most_common(config.expand_terms)]
    engine = llm.engine()
    groups = llm_synonyms.synonym_request_groups(bilingual_synonyms, judge_terms, expand_terms, engine)
    stores = {
        g["name"]: (
            llm_store.for_settings(
                {
                    "task": "synonyms",
                    "group": g["name"],
                    "model": engine.model,
                    "prompt_style": engine.prompt_style,
                    "sampling": g["sampling"],
                }
            ),
            {r["id"]: request_key(r) for r in g["requests"]},
        )
        for g in groups
    }

    def job(missing: dict[str, list[str]]) -> dict:
        wanted = {name: set(ids) for name, ids in missing.items()}
        return {
            "task": "synonyms",
            "groups": [{**g, "requests": [r for r in g["requests"] if r["id"] in wanted[g["name"]]]} for g in groups],
        }

    answered, stats = generate_with_store(context, llm, llm_worker_client, stores, job)
    results = {group: [{"id": i, **c} for i, c in by_id.items()] for group, by_id in answered.items()}
    trusted = llm_synonyms.trusted_by_default(engine)
    settings = llm_synonyms.SynonymSettings(
        max_terms=config.max_terms,
        expand_terms=config.expand_terms,
        max_additions=config.max_additions,
        enforce_verdicts=trusted if config.enforce_verdicts is None else config.enforce_verdicts,
        accept_additions=trusted if config.accept_additions is None else config.accept_additions,
    )
    value, counts = llm_synonyms.merge(bilingual_synonyms, results, settings, stats.get("model", engine.model))
    judged = counts["kept"] + counts["rejected"] + counts["flagged"]
    if judged == 0 and counts["added"] + counts["proposed"] == 0:
        raise dg.Failure(description=f"the LLM gave no usable verdict or addition: {dict(counts)}")
    return dg.Output(
        value,
        metadata={
            "kept": counts["kept"],
            "rejected": counts["rejected"],
            "flagged": counts["flagged"],
            "added": counts["added"],
            "proposed": counts["proposed"],
            "verdicts_enforced": settings.enforce_verdicts,
            "additions_accepted": settings.accept_additions,
            "unjudged": counts["unjudged"],
            "parse_failures": counts["parse_failure"],
            "korean_terms": len(value["synonyms"]),
            "judged_terms": len(judge_terms),
            "expanded_terms": len(expand_terms),
            "sample_verdicts": dg.MetadataValue.md(markdown_table([v for v in value["verdicts"] if v["verdict"] != "unjudged"][:12])),
            **_speed_metadata(stats),
        },
    )


llm_assets = [synthetic_qd_pairs, enhanced_synonyms]
llm_checks = [synthetic_queries_are_not_eval_queries]
