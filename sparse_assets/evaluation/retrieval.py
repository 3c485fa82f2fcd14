"""Retrieval over sparse document vectors + metrics (no Dagster).

- `SparseIndex`: an inverted index (scipy CSC: one posting column per vocabulary term) over document
  vectors; `search` scores each query vector term at a time (as BM25 engines do) and returns the top k.
- Systems: a trained model folder (its own query side: IDF bag or SPLADE), the IDF-only baseline
  (the document's own pieces, BM25-saturated; query = the query table), BM25 over Kiwi morphemes, and
  hybrids of BM25 with a model (OpenSearch's min-max + weighted arithmetic mean, `hybrid`).
- Metrics with ir-measures: NDCG@10, RR@10 (MRR@10), R@10, R@100; plus FLOPS (expected number of
  multiplications per query-document pair, the SPLADE paper's sum_v p_q(v) p_d(v)), mean active
  dimensions of queries and documents, and query latency.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sparse_assets.data.records import Document
from sparse_assets.encoder.saturation import document_pieces, saturated_documents
from sparse_assets.evaluation.hybrid import Hits, HybridSettings, hybrid_run

METRICS = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "recall@10": "R@10", "recall@100": "R@100"}


class SparseIndex:
    """Inverted index over document vectors (rows of a CSR matrix [n_docs, vocab])."""

    def __init__(self, doc_ids: Sequence[str], doc_matrix: sp.spmatrix):
        if doc_matrix.shape[0] != len(doc_ids):
            raise ValueError(f"{doc_matrix.shape[0]} document vectors for {len(doc_ids)} ids")
        self.doc_ids = list(doc_ids)
        self.postings = sp.csc_matrix(doc_matrix, dtype=np.float32)  # term -> (doc, weight) postings

    def search(self, query_matrix: sp.spmatrix, k: int = 100) -> list[list[tuple[str, float]]]:
        """Top `k` (document id, score) by dot product for each query row, best first, scores > 0."""
        q = sp.csr_matrix(query_matrix, dtype=np.float32)
        return [self.search_terms(q.indices[a:b], q.data[a:b], k) for a, b in zip(q.indptr[:-1], q.indptr[1:])]

    def search_terms(self, terms: np.ndarray, weights: np.ndarray, k: int = 100) -> list[tuple[str, float]]:
        """One query given as (vocabulary ids, weights): the posting lists of its terms gathered in
        one pass and summed per document (term at a time, vectorised), then the top `k`."""
        indptr = self.postings.indptr
        terms = np.asarray(terms, dtype=np.int64)
        starts = indptr[terms]
        lengths = indptr[terms + 1] - starts
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        contributions = self.postings.data[positions] * np.repeat(np.asarray(weights, dtype=np.float32), lengths)
        scores = np.bincount(self.postings.indices[positions], weights=contributions, minlength=len(self.doc_ids))
        return self._top_k(scores, min(k, len(scores)))

    def _top_k(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        candidates = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(self.doc_ids[i], float(scores[i])) for i in candidates if scores[i] > 0]


# ----------------------------------------------------------------------------- metrics


def run_metrics(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[tuple[str, float]]]) -> dict[str, float]:
    """Mean NDCG@10, MRR@10, Recall@10, Recall@100 over the queries of `qrels` (missing runs count 0)."""
    n = len(qrels)
    return {name: float(sum(vals.values()) / n) if n else 0.0 for name, vals in per_query_metrics(qrels, run).items()}


def per_query_metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[tuple[str, float]]]
) -> dict[str, dict[str, float]]:
    """metric name -> {query id: value} for every query of `qrels` (0.0 where the run found nothing).
    Each query's hits are ranked by score, ties in the order given, and handed to ir-measures as that
    strict ranking: its measures come from different providers that break ties differently (with
    tied scores RR@10 and nDCG@10 disagreed, MRR above NDCG for a single relevant document)."""
    import ir_measures

    measures = {name: ir_measures.parse_measure(m) for name, m in METRICS.items()}
    qrel_list = [ir_measures.Qrel(q, d, int(rel)) for q, docs in qrels.items() for d, rel in docs.items()]
    run_list = [
        ir_measures.ScoredDoc(q, d, float(len(hits) - rank))
        for q, hits in run.items()
        if q in qrels
        for rank, (d, _) in enumerate(sorted(hits, key=lambda hit: -hit[1]))
    ]
    per_query = {name: dict.fromkeys(qrels, 0.0) for name in measures}
    by_measure = {m: name for name, m in measures.items()}
    for metric in ir_measures.iter_calc(list(measures.values()), qrel_list, run_list):
        per_query[by_measure[metric.measure]][metric.query_id] = metric.value
    return per_query


def flops(query_matrix: sp.spmatrix, doc_matrix: sp.spmatrix) -> float:
    """Expected multiplications per query-document pair: sum_v P(q_v != 0) * P(d_v != 0)."""
    pq = np.asarray((sp.csr_matrix(query_matrix) != 0).mean(axis=0)).ravel()
    pd = np.asarray((sp.csr_matrix(doc_matrix) != 0).mean(axis=0)).ravel()
    return float(pq @ pd)


def mean_active_dims(matrix: sp.spmatrix) -> float:
    m = sp.csr_matrix(matrix)
    m.eliminate_zeros()
    return float(np.diff(m.indptr).mean()) if m.shape[0] else 0.0


def zero_share(matrix: sp.spmatrix) -> float:
    """Share of rows (document vectors) with no non-zero entry."""
    m = sp.csr_matrix(matrix)
    m.eliminate_zeros()
    return float((np.diff(m.indptr) == 0).mean()) if m.shape[0] else 1.0


# ----------------------------------------------------------------------------- systems


def qrels_from_queries(queries: Sequence[Mapping]) -> dict[str, dict[str, int]]:
    """{query id: {document id: grade}} from EvalQuery-like records: their graded judgments `relevant`
    as given where they have them (BEIR qrels), else {positive_id: 1}."""
    return {q["id"]: dict(q["relevant"]) if q.get("relevant") else {q["positive_id"]: 1} for q in queries}


def _timed_search(index: SparseIndex, qmat, k: int) -> tuple[list, float]:
    t = time.perf_counter()
    hits = index.search(qmat, k=k)
    return hits, (time.perf_counter() - t)


def _run(queries: Sequence[Mapping], hits: Sequence[Hits]) -> dict[str, Hits]:
    """{query id: its hits}."""
    return dict(zip([q["id"] for q in queries], hits))


def _row(system: str, qrels, run: Mapping[str, Hits], qmat, dmat, seconds_encode: float, seconds_search: float) -> dict:
    per_query = per_query_metrics(qrels, run)
    n_queries = max(len(qrels), 1)
    row = {"system": system, **{name: float(sum(values.values()) / n_queries) for name, values in per_query.items()}}
    row["per_query_ndcg@10"] = per_query["ndcg@10"]
    n = max(len(run), 1)
    row.update(
        {
            "flops": flops(qmat, dmat) if qmat is not None else None,
            "query_active_dims": mean_active_dims(qmat) if qmat is not None else None,
            "doc_active_dims": mean_active_dims(dmat) if dmat is not None else None,
            "zero_doc_share": zero_share(dmat) if dmat is not None else None,
            "query_latency_ms": 1000.0 * (seconds_encode + seconds_search) / n,
            "queries": len(run),
        }
    )
    return row


def bm25_system(
    doc_ids: Sequence[str], doc_texts: Sequence[str], queries: Sequence[Mapping], qrels, k: int = 100, content_only: bool = True
) -> dict:
    return _bm25_row_and_run(doc_ids, doc_texts, queries, qrels, k, content_only)[0]


def _bm25_row_and_run(doc_ids, doc_texts, queries, qrels, k: int, content_only: bool = True) -> tuple[dict, dict]:
    from sparse_assets.evaluation.bm25 import KiwiBM25

    index = KiwiBM25(doc_ids, doc_texts, content_only=content_only)
    t = time.perf_counter()
    run = _run(queries, index.search([q["query"] for q in queries], k=k))
    seconds = time.perf_counter() - t
    return _row("bm25" if content_only else "bm25_all_morphemes", qrels, run, None, None, 0.0, seconds), run


def idf_only_matrices(tokenizer, weights: np.ndarray, doc_texts: Sequence[str], queries: Sequence[str]):
    """The IDF-only baseline, the inference-free model before any training: a document is its own
    pieces with BM25's saturation and length normalisation (`saturation.saturated_documents`, the
    floor a trained document side keeps: with the morphology query table, NDCG@10 0.870 on
    msmarco_ko's held-out questions against 0.806 for binary bags, bench/query_table.md); a query is
    its unique pieces weighted by `weights` (the query table), specials dropped."""
    special = set(tokenizer.all_special_ids)
    dmat = saturated_documents(document_pieces(tokenizer, doc_texts), len(weights))
    qr, qc, qv = [], [], []
    for i, ids in enumerate(tokenizer(list(queries), add_special_tokens=False)["input_ids"] if queries else []):
        for t in sorted(set(ids) - special):
            if weights[t] > 0:
                qr.append(i)
                qc.append(t)
                qv.append(weights[t])
    qmat = sp.csr_matrix((np.array(qv, dtype=np.float32), (qr, qc)), shape=(len(queries), len(weights)))
    return dmat, qmat


def evaluation_vocabulary(tokenizer, doc_texts: Sequence[str], query_matrix) -> np.ndarray:
    """The token ids of the documents and every column the query vectors use: the columns
    `encode_documents` needs for exact scores of these queries, and the ones active dimensions are
    counted over (an inference-free query token that no document holds has no IDF anyway)."""
    ids = tokenizer(list(doc_texts), add_special_tokens=False, verbose=False)["input_ids"] if len(doc_texts) else []
    corpus = np.concatenate([np.asarray(row, dtype=np.int64) for row in ids]) if ids else np.zeros(0, np.int64)
    return np.union1d(corpus, sp.csr_matrix(query_matrix).indices.astype(np.int64))


def evaluate_matrices(doc_ids: Sequence[str], queries: Sequence[Mapping], dmat, qmat, k: int = 100) -> dict:
    """The metric row of document and query vectors already computed (no timing)."""
    hits = SparseIndex(doc_ids, dmat).search(qmat, k=k)
    return _row("model", qrels_from_queries(queries), _run(queries, hits), qmat, dmat, 0.0, 0.0)


def evaluate_systems(
    documents: Sequence[Document],
    queries: Sequence[Mapping],
    models: Mapping[str, Path] | None = None,
    bm25: bool = True,
    idf_only: tuple | None = None,
    max_length: int | None = None,
    k: int = 100,
    hybrids: Mapping[str, tuple[str, HybridSettings]] | None = None,
) -> list[dict]:
    """Rows {"system", "ndcg@10", "mrr@10", "recall@10", "recall@100", "flops", "query_active_dims",
    "doc_active_dims", "zero_doc_share", "query_latency_ms", "queries"} for BM25-Kiwi, the IDF-only
    baseline (`idf_only`: (tokenizer, vocabulary-sized IDF weights)), each named model folder and each
    hybrid (`hybrids`: row name -> (the model fused with BM25-Kiwi, the fusion's settings), `hybrid.fuse`).
    `queries` are EvalQuery-like records {id, query, positive_id, relevant?}."""
    from sparse_assets.encoder.sparse_model import document_text

    qrels = qrels_from_queries(queries)
    doc_ids = [d["id"] for d in documents]
    texts = [document_text(d) for d in documents]
    if hybrids and not bm25:
        raise ValueError("a hybrid fuses BM25-Kiwi with a model: evaluate it with bm25=True")
    rows, runs = {}, {}
    if bm25:
        rows["bm25"], runs["bm25"] = _bm25_row_and_run(doc_ids, texts, queries, qrels, k)
    if idf_only is not None:
        rows["idf_only"] = idf_only_system(*idf_only, doc_ids, texts, queries, qrels, k=k)
    for name, folder in (models or {}).items():
        rows[name], runs[name] = _model_row_and_run(folder, doc_ids, texts, queries, qrels, max_length, k)
        rows[name]["system"] = name
    for name, (model, settings) in (hybrids or {}).items():
        searches_ms = rows["bm25"]["query_latency_ms"] + rows[model]["query_latency_ms"]
        rows[name] = _hybrid_row(name, qrels, runs["bm25"], runs[model], settings, k, searches_ms)
    return list(rows.values())


def _hybrid_row(name: str, qrels, bm25_run, sparse_run, settings: HybridSettings, k: int, searches_ms: float) -> dict:
    """The row of BM25 and a sparse model fused per query (`hybrid.hybrid_run`). Its latency is the two
    searches' (`searches_ms`: a hybrid query runs both) and the fusion's."""
    t = time.perf_counter()
    run = hybrid_run(bm25_run, sparse_run, settings, k)
    row = _row(name, qrels, run, None, None, 0.0, time.perf_counter() - t)
    row["query_latency_ms"] += searches_ms
    return row


def model_idf(folder: Path, texts: Sequence[str] | None = None) -> tuple:
    """(tokenizer, query weights) of a model folder: its idf.json, or the query table of `texts` (a
    corpus the model is moved to) with its tokenizer."""
    from sparse_assets.encoder.sparse_model import corpus_query_weights, folder_tokenizer, read_idf_json

    tokenizer = folder_tokenizer(folder)
    return tokenizer, corpus_query_weights(tokenizer, texts) if texts is not None else read_idf_json(Path(folder) / "idf.json", tokenizer)


def idf_only_system(tokenizer, weights: np.ndarray, doc_ids, texts, queries, qrels, k: int = 100) -> dict:
    """The IDF-only baseline (`idf_only_matrices`): the query table `weights` over the documents' own pieces."""
    dmat, qmat = idf_only_matrices(tokenizer, weights, texts, [])
    t = time.perf_counter()
    _, qmat = idf_only_matrices(tokenizer, weights, [], [q["query"] for q in queries])
    enc = time.perf_counter() - t
    index = SparseIndex(doc_ids, dmat)
    hits, seconds = _timed_search(index, qmat, k)
    return _row("idf_only", qrels, _run(queries, hits), qmat, dmat, enc, seconds)


def model_system(
    folder: Path, doc_ids, texts, queries, qrels, max_length: int | None = None, k: int = 100, model=None, corpus_statistics: bool = False
) -> dict:
    """A model folder (or a loaded `model`) over the documents, scored on `queries`. Document vectors
    are computed over the evaluation vocabulary (exact scores; active dimensions are counted over the
    tokens of the corpus and the queries). `corpus_statistics`: query IDF and length pivot re-fitted
    to `texts` (a model moved to another corpus, see `with_corpus_statistics`)."""
    return _model_row_and_run(folder, doc_ids, texts, queries, qrels, max_length, k, model, corpus_statistics)[0]


def _model_row_and_run(
    folder: Path, doc_ids, texts, queries, qrels, max_length: int | None, k: int, model=None, corpus_statistics: bool = False
) -> tuple[dict, dict]:
    from sparse_assets.encoder.sparse_model import (
        encode_documents,
        encode_queries,
        load_sparse_encoder,
        model_tokenizer,
        with_corpus_statistics,
    )

    model = model or load_sparse_encoder(folder)
    if corpus_statistics:
        model = with_corpus_statistics(model, texts)
    t = time.perf_counter()
    qmat = encode_queries(model, [q["query"] for q in queries])
    enc = time.perf_counter() - t
    dmat = encode_documents(model, texts, max_length=max_length, vocabulary=evaluation_vocabulary(model_tokenizer(model), texts, qmat))
    index = SparseIndex(doc_ids, dmat)
    hits, seconds = _timed_search(index, qmat, k)
    run = _run(queries, hits)
    return _row("model", qrels, run, qmat, dmat, enc, seconds), run


# ----------------------------------------------------------------------------- model-quality checks (pure)


def check_active_dims(doc_active_dims: float, low: float, high: float) -> tuple[bool, str]:
    ok = low <= doc_active_dims <= high
    return ok, f"mean active dims per document {doc_active_dims:.1f} {'within' if ok else 'outside'} [{low}, {high}]"


def check_zero_share(zero_doc_share: float, max_share: float = 0.01) -> tuple[bool, str]:
    ok = zero_doc_share <= max_share
    return ok, f"all-zero document vectors {zero_doc_share:.2%} ({'<=' if ok else '>'} {max_share:.2%})"


def check_beats_idf_only(
    model_mrr: float, idf_only_mrr: float, margin: float = 0.0, ceiling: float = 0.999, gain: Mapping[str, float] | None = None
) -> tuple[bool, str]:
    """Above the IDF-only baseline; a tie counts only when both are at the ceiling (nothing left to beat).
    `gain` (validation's minus_idf_only_ndcg@10, _ci_low, _ci_high and queries) says how sure that is."""
    at_ceiling = model_mrr >= ceiling and idf_only_mrr >= ceiling
    ok = model_mrr > idf_only_mrr + margin or at_ceiling
    note = " (both at the ceiling: the validation set is too easy to tell them apart)" if at_ceiling else ""
    text = f"validation MRR@10 {model_mrr:.4f} vs IDF-only {idf_only_mrr:.4f} (+margin {margin}){note}"
    if gain and "minus_idf_only_ci_low" in gain:
        low, high = gain["minus_idf_only_ci_low"], gain["minus_idf_only_ci_high"]
        verdict = "above" if low > 0 else "below" if high < 0 else "level: too few queries to tell them apart"
        text += (
            f"; NDCG@10 {gain['minus_idf_only_ndcg@10']:+.4f} (95% CI {low:+.4f} .. {high:+.4f}) "
            f"on {int(gain['queries'])} held-out pseudo-queries, {verdict}"
        )
    return ok, text
