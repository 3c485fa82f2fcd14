"""Filters for LLM-synthesised queries; every dropped query is counted under one reason.

Order (a query is counted under the first filter it fails):
``parse_failure`` (and the parser's own reasons, e.g. ``malformed_json``, ``truncated_thinking``)
-> ``truncated`` (a few-shot line cut by max_tokens) -> ``too_short`` / ``too_long`` ->
``not_korean`` (Hangul share of letters) -> ``not_question`` (no question mark, or one after a
declarative -다 ending) -> ``fewshot_copy``
(copies a few-shot example, or uses one of its distinctive terms that the document lacks) ->
``copied_span`` (a long span copied from the document) ->
``duplicate`` (same normalised text as an accepted query, any document) -> ``roundtrip`` (the
source document is not in the top ``roundtrip_k`` for the query under the ranker: BM25 by default).

Runs in the main environment (Kiwi + bm25s through ``sparse_assets.evaluation.bm25``), after the worker.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Annotated

from sparse_assets.bounds import Ge, Le, check_bounds
from sparse_assets.data.korean import hangul_ratio, normalize_text
from sparse_assets.data.records import Document
from sparse_assets.llm.parsing import ParseError, parse_queries
from sparse_assets.llm.prompts import FEWSHOT_MARKERS, FEWSHOT_QUESTIONS

REASONS = (
    "parse_failure",
    "truncated",
    "too_short",
    "too_long",
    "not_korean",
    "not_question",
    "fewshot_copy",
    "copied_span",
    "duplicate",
    "roundtrip",
)

# ranker(queries) -> per query, ranked document ids (best first)
Ranker = Callable[[Sequence[str]], list[list[str]]]


@dataclass(frozen=True)
class FilterSettings:
    min_chars: Annotated[int, Ge(1)] = 8
    max_chars: Annotated[int, Ge(1)] = 80
    min_hangul_ratio: Annotated[float, Ge(0), Le(1)] = 0.5
    require_question: bool = True  # the query must end with a question mark
    # longest span shared with the document, as a share of the query (spaces/punctuation ignored)
    max_copy_ratio: Annotated[float, Ge(0), Le(1)] = 0.75
    max_fewshot_similarity: Annotated[float, Ge(0), Le(1)] = 0.8
    roundtrip_k: Annotated[int, Ge(1)] = 10

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class Candidate:
    query: str
    doc_id: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class FilterReport:
    accepted: list[Candidate]
    dropped: Counter  # reason -> count
    generated: int  # completions seen (each may hold several queries for chat_json)
    rejected_samples: list[tuple[str, str, str]]  # (reason, doc_id, query), a few per reason

    @property
    def accepted_per_doc(self) -> Counter:
        return Counter(c.doc_id for c in self.accepted)


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def squash(text: str) -> str:
    """Lower-case, NFC, letters and digits only: the key for duplicate and copy checks."""
    return _NON_WORD.sub("", normalize_text(text).lower())


def copy_ratio(query: str, document: str) -> float:
    """Longest contiguous span (squashed) shared by query and document, over the query's length."""
    q, d = squash(query), squash(document)
    if not q:
        return 0.0
    match = SequenceMatcher(None, q, d, autojunk=False).find_longest_match(0, len(q), 0, len(d))
    return match.size / len(q)


def fewshot_similarity(query: str, examples: Sequence[str] = FEWSHOT_QUESTIONS) -> float:
    q = squash(query)
    return max((SequenceMatcher(None, q, squash(e), autojunk=False).ratio() for e in examples), default=0.0)


def fewshot_leak(query: str, document: str, markers: Sequence[str] = FEWSHOT_MARKERS) -> str | None:
    """A distinctive few-shot term used by the query but absent from its document, if any."""
    return next((m for m in markers if m in query and m not in document), None)


_QUESTION_END = re.compile(r"[?？][\s\"'”’)」』]*$")


def is_question(query: str) -> bool:
    """Ends with a question mark, not after a declarative -다 ending ("…했다?" is a statement)."""
    end = _QUESTION_END.search(query)
    return bool(end) and not query[: end.start()].rstrip().endswith("다")


def bm25_ranker(documents: Sequence[Document], depth: int) -> Ranker:
    """A ranker over ``documents`` with the project's Kiwi BM25 (``pairs.document_bm25``)."""
    from sparse_assets.training.pairs import document_bm25

    bm25 = document_bm25(documents)
    return lambda queries: [[doc_id for doc_id, _ in hits] for hits in bm25.search(list(queries), k=depth)]


def filter_generations(
    generations: Sequence[tuple[str, str] | tuple[str, str, str | None]],
    documents: Sequence[Document],
    prompt_style: str,
    settings: FilterSettings = FilterSettings(),
    ranker: Ranker | None = None,
    fewshot_questions: Sequence[str] = FEWSHOT_QUESTIONS,
    samples_per_reason: int = 3,
) -> FilterReport:
    """Parse and filter raw completions ``(doc_id, text[, finish_reason])``; ``ranker`` defaults to
    BM25 over ``documents``. Returns accepted candidates (with filter scores) and drops by reason."""
    by_id = {d["id"]: d for d in documents}
    dropped: Counter = Counter({reason: 0 for reason in REASONS})
    samples: list[tuple[str, str, str]] = []
    per_reason_samples: Counter = Counter()

    def drop(reason: str, doc_id: str, query: str) -> None:
        dropped[reason] += 1
        if per_reason_samples[reason] < samples_per_reason:
            per_reason_samples[reason] += 1
            samples.append((reason, doc_id, query))

    survivors: list[Candidate] = []
    seen: set[str] = set()
    for generation in generations:
        doc_id, text = generation[0], generation[1]
        finish_reason = generation[2] if len(generation) > 2 else None
        document = by_id[doc_id]
        doc_text = f"{document['title']} {document['text']}"
        try:
            queries = parse_queries(text, prompt_style)
        except ParseError as exc:
            drop("parse_failure", doc_id, f"[{exc.reason}] {text[:80]}")
            continue
        if prompt_style == "fewshot" and finish_reason == "length":
            drop("truncated", doc_id, queries[0])
            continue
        for raw in queries:
            query = normalize_text(raw)
            ratio = hangul_ratio(query)
            if len(query) < settings.min_chars:
                drop("too_short", doc_id, query)
                continue
            if len(query) > settings.max_chars:
                drop("too_long", doc_id, query)
                continue
            if ratio < settings.min_hangul_ratio:
                drop("not_korean", doc_id, query)
                continue
            if settings.require_question and not is_question(query):
                drop("not_question", doc_id, query)
                continue
            few = fewshot_similarity(query, fewshot_questions)
            if few >= settings.max_fewshot_similarity or fewshot_leak(query, doc_text):
                drop("fewshot_copy", doc_id, query)
                continue
            copied = copy_ratio(query, doc_text)
            if copied >= settings.max_copy_ratio:
                drop("copied_span", doc_id, query)
                continue
            key = squash(query)
            if key in seen:
                drop("duplicate", doc_id, query)
                continue
            seen.add(key)
            survivors.append(
                Candidate(
                    query, doc_id, {"hangul_ratio": round(ratio, 3), "copy_ratio": round(copied, 3), "fewshot_similarity": round(few, 3)}
                )
            )

    accepted: list[Candidate] = []
    if survivors:
        rank = ranker or bm25_ranker(documents, settings.roundtrip_k)
        rankings = rank([c.query for c in survivors])
        for candidate, ranked in zip(survivors, rankings):
            top = ranked[: settings.roundtrip_k]
            if candidate.doc_id not in top:
                drop("roundtrip", candidate.doc_id, candidate.query)
                continue
            candidate.scores["roundtrip_rank"] = float(top.index(candidate.doc_id) + 1)
            accepted.append(candidate)
    return FilterReport(accepted, dropped, len(generations), samples)
