"""BM25 over Kiwi content morphemes (bm25s): the lexical baseline and the hard-negative miner."""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np

from sparse_assets.korean import morphemes


class KiwiBM25:
    """A bm25s index whose terms are Kiwi content morphemes of each document's title and text."""

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], content_only: bool = True):
        if not doc_ids:
            raise ValueError("KiwiBM25 needs at least one document to index")
        self.doc_ids = list(doc_ids)
        self.content_only = content_only
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokens(texts), show_progress=False)

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        # bm25s drops documents/queries with no terms; an empty string keeps positions aligned.
        return [tokens or [""] for tokens in morphemes(texts, content_only=self.content_only)]

    def search(self, queries: Sequence[str], k: int = 100) -> list[list[tuple[str, float]]]:
        """Top-k (doc_id, score) per query, best first; documents with score 0 are left out."""
        if not queries:
            return []
        k = min(k, len(self.doc_ids))
        indices, scores = self._retriever.retrieve(self._tokens(queries), k=k, show_progress=False)
        return [
            [(self.doc_ids[i], float(s)) for i, s in zip(row_ids, row_scores) if s > 0]
            for row_ids, row_scores in zip(np.asarray(indices), np.asarray(scores))
        ]
