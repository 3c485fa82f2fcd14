"""BM25 over Kiwi content morphemes (bm25s): the lexical baseline and the hard-negative miner."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import bm25s
import numpy as np

from sparse_assets.data.korean import morphemes


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

    def _known_tokens(self, queries: Sequence[str]) -> list[list[str]]:
        """Each query's morphemes that occur in the index (bm25s rejects terms it never indexed)."""
        known = self._retriever.vocab_dict
        return [[t for t in tokens if t in known] for tokens in morphemes(list(queries), content_only=self.content_only)]

    def score_all(self, queries: Sequence[str]) -> Iterator[np.ndarray]:
        """The BM25 score of every document (in index order) for each query, one array per query."""
        for tokens in self._known_tokens(queries):
            yield np.asarray(self._retriever.get_scores(tokens), dtype=np.float32) if tokens else np.zeros(len(self.doc_ids), np.float32)

    def search(self, queries: Sequence[str], k: int = 100) -> list[list[tuple[str, float]]]:
        """Top-k (doc_id, score) per query, best first; documents with score 0 are left out."""
        if not queries:
            return []
        k = min(k, len(self.doc_ids))
        hits: list[list[tuple[str, float]]] = []
        for scores in self.score_all(queries):
            top = np.argsort(-scores, kind="stable")[:k]
            hits.append([(self.doc_ids[i], float(scores[i])) for i in top if scores[i] > 0])
        return hits
