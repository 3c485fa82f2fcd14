"""Record shapes shared by every stage: what the assets under `dataset/` hold."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Document(TypedDict):
    """One retrievable passage."""

    id: str
    title: str
    text: str
    source: str
    date: NotRequired[str]
    source_id: NotRequired[str]  # the id the passage has in its source (a BEIR corpus.jsonl `_id`), for tracing


class QDPair(TypedDict):
    """A training query with its positive document and mined hard negatives."""

    query: str
    positive_id: str
    negative_ids: list[str]
    source: str
    generator: NotRequired[str]
    filter_scores: NotRequired[dict[str, float]]


class EvalQuery(TypedDict):
    """A held-out question (human where the corpus has them), evaluation only. `positive_id` is its
    (highest-graded) relevant document; `relevant`, where the source has graded judgments (BEIR qrels),
    is every judged kept document -> grade as given (0 = judged not relevant)."""

    id: str
    query: str
    positive_id: str
    source: str
    human: bool
    relevant: NotRequired[dict[str, int]]
