"""Held-out evaluation queries (no Dagster here).

Human questions (SQuAD-format sources such as KorQuAD) are evaluation only: they are never training
queries. A corpus without them gets held-out pseudo-queries instead, flagged ``human: False`` so
every report can say so.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from sparse_assets.corpus import Question, canonical_text
from sparse_assets.korean import normalize_text
from sparse_assets.pairs import PseudoQuerySettings, pseudo_queries
from sparse_assets.records import Document, EvalQuery


def human_eval_queries(questions: Sequence[Question], documents: Sequence[Document]) -> tuple[list[EvalQuery], int]:
    """Each question tied to the kept document holding its paragraph (near-duplicates resolved to the
    kept copy); returns the queries and how many questions lost their paragraph to filtering."""
    by_text = {canonical_text(d["text"]): d for d in documents}
    queries: list[EvalQuery] = []
    orphaned = 0
    for question in questions:
        doc = by_text.get(canonical_text(normalize_text(question.context)))
        if doc is None:
            orphaned += 1
            continue
        queries.append(EvalQuery(id=question.id, query=normalize_text(question.question), positive_id=doc["id"], source=doc["source"], human=True))
    return queries, orphaned


def pseudo_eval_queries(documents: Sequence[Document], fraction: float, limit: int, seed: int) -> list[EvalQuery]:
    """Key-noun pseudo-queries for a seeded sample of documents, used when no human questions exist."""
    rng = random.Random(seed)
    count = min(limit, max(1, int(len(documents) * fraction)))
    sample = rng.sample(list(documents), min(count, len(documents)))
    triples = pseudo_queries(sample, PseudoQuerySettings(kinds=("keynoun",), seed=seed + 1))
    return [
        EvalQuery(id=f"pseudo-{i}", query=query, positive_id=positive, source="pseudo", human=False)
        for i, (query, positive, _) in enumerate(triples)
    ]


def training_overlap(eval_queries: Sequence[EvalQuery], training_queries: Sequence[str]) -> list[str]:
    """Eval query texts that are also training queries (after whitespace/Unicode normalisation)."""
    held_out = {normalize_text(q["query"]) for q in eval_queries}
    return sorted({q for q in map(normalize_text, training_queries) if q in held_out})
