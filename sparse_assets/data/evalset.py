"""Held-out evaluation queries (no Dagster here).

Human questions (SQuAD-format sources such as KorQuAD, BEIR folders' labelled queries) are evaluation
only: they are never training queries. A corpus without them gets held-out pseudo-queries instead, flagged ``human: False`` so
every report can say so.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sparse_assets.data.corpus import (
    CorpusError,
    CorpusFilter,
    FilterReport,
    Question,
    RawCorpus,
    canonical_text,
    clean_documents,
    load_source,
)
from sparse_assets.data.korean import normalize_text
from sparse_assets.data.records import Document, EvalQuery
from sparse_assets.training.pairs import PseudoQuerySettings, pseudo_queries


@dataclass
class CorpusWithQuestions:
    """Cleaned documents and the human evaluation questions about them, as the `documents` and
    `eval_queries` assets hold them; `raw` is what the sources held, `orphaned` how many questions lost
    every relevant document to filtering."""

    documents: list[Document]
    queries: list[EvalQuery]
    orphaned: int
    report: FilterReport
    raw: RawCorpus


def read_corpus(sources: Sequence[str], settings: CorpusFilter, log: Callable[[str], None] = lambda _: None) -> CorpusWithQuestions:
    """Every source read (`corpus.load_source`), cleaned together (`corpus.clean_documents`) and its
    human questions tied to the kept documents: the one way the assets, the benchmarks and the tests
    load a corpus. `log` gets a line per source. Raises CorpusError naming the fix when a source holds
    no passages, nothing survives filtering, or no question keeps a relevant document."""
    raw = RawCorpus()
    for source in sources:
        loaded = load_source(source)
        if not loaded.documents:
            raise CorpusError(f"{source} holds no passages (an empty file?): fix it or remove it from the corpus sources (CORPUS=...)")
        dropped = f" (not evaluated: {dict(loaded.dropped_questions)})" if loaded.dropped_questions else ""
        log(f"{source}: {len(loaded.documents)} passages, {len(loaded.questions)} questions{dropped}")
        raw.extend(loaded)
    documents, report = clean_documents(raw.documents, settings)
    if not documents:
        raise CorpusError(
            f"no documents left after filtering {len(raw.documents)} passages from {list(sources)} "
            f"(dropped: {dict(report.dropped)}); check the sources or loosen min_chars / min_hangul_ratio"
        )
    queries, orphaned = human_eval_queries(raw.questions, documents, report.resolved)
    if raw.questions and not queries:
        raise CorpusError(
            f"none of the {len(raw.questions)} human questions of {list(sources)} has a relevant document left "
            f"after filtering (dropped: {dict(report.dropped)}); check the sources or loosen min_chars / min_hangul_ratio"
        )
    return CorpusWithQuestions(documents, queries, orphaned, report, raw)


def human_eval_queries(
    questions: Sequence[Question], documents: Sequence[Document], resolved: Mapping[tuple[str, str], Sequence[str]] | None = None
) -> tuple[list[EvalQuery], int]:
    """Each question tied to the kept documents it is about; returns the queries and how many questions
    lost every relevant document to filtering.

    A SQuAD question points at the kept document holding its paragraph (near-duplicates resolved to the
    kept copy, by canonical text). A question with judgments (`relevant`, from a BEIR folder) is mapped
    through `resolved` (`FilterReport.resolved` of `clean_documents`: (source, source_id) -> kept ids,
    dedupe resolved to the kept copy): its query gets `relevant` {kept id: grade} and `positive_id` = the
    highest-graded kept positive; it is lost when no positive (grade > 0) is kept. A BEIR query id that an
    earlier query already has becomes ``<source>/<id>``."""
    by_text = {canonical_text(d["text"]): d for d in documents}
    queries: list[EvalQuery] = []
    used_ids: set[str] = set()
    orphaned = 0
    for question in questions:
        if question.relevant is None:
            doc = by_text.get(canonical_text(normalize_text(question.context or "")))
            if doc is None:
                orphaned += 1
                continue
            queries.append(
                EvalQuery(id=question.id, query=normalize_text(question.question), positive_id=doc["id"], source=doc["source"], human=True)
            )
            used_ids.add(question.id)
            continue
        if resolved is None:
            raise ValueError("questions with judgments need `resolved` (the FilterReport.resolved of clean_documents)")
        relevant = kept_judgments(question, resolved)
        positives = {doc_id: grade for doc_id, grade in relevant.items() if grade > 0}
        if not positives:
            orphaned += 1
            continue
        query_id = question.id if question.id not in used_ids else f"{question.source}/{question.id}"
        used_ids.add(query_id)
        queries.append(
            EvalQuery(
                id=query_id,
                query=normalize_text(question.question),
                positive_id=max(positives, key=positives.__getitem__),
                source=question.source,
                human=True,
                relevant=relevant,
            )
        )
    return queries, orphaned


def kept_judgments(question: Question, resolved: Mapping[tuple[str, str], Sequence[str]]) -> dict[str, int]:
    """A judged question's {kept document id: grade}: each judged source id through `resolved` to the kept
    documents holding its text (two judged passages deduplicated into one keep the higher grade)."""
    relevant: dict[str, int] = {}
    for source_id, grade in (question.relevant or {}).items():
        for doc_id in resolved.get((question.source, source_id), ()):
            relevant[doc_id] = max(grade, relevant.get(doc_id, grade))
    return relevant


def pseudo_eval_queries(documents: Sequence[Document], fraction: float, limit: int, seed: int) -> list[EvalQuery]:
    """Pseudo-queries for a seeded sample of documents, used when no human questions exist: per
    document its lead-sentence nouns and one key-noun query (the non-extractive kinds: copied spans
    would favour the exact-match IDF-only baseline, see `pairs.EXTRACTIVE_KINDS`). Their documents are
    held out: `held_out_documents` names them, and the training pairs leave them out as positives."""
    rng = random.Random(seed)
    count = min(limit, max(1, int(len(documents) * fraction)))
    sample = rng.sample(list(documents), min(count, len(documents)))
    settings = PseudoQuerySettings(kinds=("lead", "keynoun"), keynouns_per_document=1, question_frame_share=0.0, seed=seed + 1)
    triples = pseudo_queries(sample, settings)
    return [
        EvalQuery(id=f"pseudo-{i}", query=query, positive_id=positive, source="pseudo", human=False)
        for i, (query, positive, _) in enumerate(triples)
    ]


def held_out_documents(eval_queries: Sequence[EvalQuery]) -> set[str]:
    """Documents whose pseudo-queries evaluate the models: no training pair may have them as positive
    (human questions hold out nothing: their documents are the corpus people search)."""
    return {q["positive_id"] for q in eval_queries if not q.get("human", False)}


def training_overlap(eval_queries: Sequence[EvalQuery], training_queries: Sequence[str]) -> list[str]:
    """Eval query texts that are also training queries (after whitespace/Unicode normalisation)."""
    held_out = {normalize_text(q["query"]) for q in eval_queries}
    return sorted({q for q in map(normalize_text, training_queries) if q in held_out})
