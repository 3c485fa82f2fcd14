"""BM25's term-frequency saturation over a document's own pieces (no torch, no Dagster): the IDF-only
baseline's document side and the floor under a trained document side (`lexical_floor`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

K1, B = 1.5, 0.75  # bm25s' defaults, as BM25-Kiwi indexes


def saturate(tf, length, pivot: float):
    """tf (k1 + 1) / (tf + k1 (1 - b + b length / pivot)) (Robertson & Zaragoza 2009, BM25 without
    its IDF): arrays or tensors alike; 0 where tf is 0."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / pivot))


def mean_length(doc_pieces: Sequence[Sequence[int]]) -> float:
    """The pivot of `saturate`: the mean piece count of the documents (1 for none)."""
    return max(float(np.mean([len(p) for p in doc_pieces])), 1e-9) if len(doc_pieces) else 1.0


def saturated_documents(doc_pieces: Sequence[Sequence[int]], dim: int, pivot: float | None = None) -> sp.csr_matrix:
    """CSR [docs, dim]: each document's piece ids saturated with `saturate`, its length over `pivot`
    (default: the mean of these documents)."""
    pivot = mean_length(doc_pieces) if pivot is None else pivot
    rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for i, pieces in enumerate(doc_pieces):
        if not len(pieces):
            continue
        terms, tf = np.unique(np.asarray(pieces, dtype=np.int64), return_counts=True)
        rows.append(np.full(len(terms), i))
        cols.append(terms)
        vals.append(saturate(tf, len(pieces), pivot).astype(np.float32))
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return sp.csr_matrix(data, shape=(len(doc_pieces), dim), dtype=np.float32)


def document_pieces(tokenizer, texts: Sequence[str], batch: int = 256) -> list[list[int]]:
    """Each text's piece ids, special tokens dropped (no truncation)."""
    special = set(tokenizer.all_special_ids)
    pieces = []
    for start in range(0, len(texts), batch):
        ids = tokenizer(list(texts[start : start + batch]), add_special_tokens=False, verbose=False)["input_ids"]
        pieces += [[t for t in row if t not in special] for row in ids]
    return pieces
