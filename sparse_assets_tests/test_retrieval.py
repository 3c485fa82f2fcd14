"""Inverted index, metrics against hand-computed values, baselines on a KorQuAD slice, check helpers."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_assets.evaluation.retrieval import (
    SparseIndex,
    bm25_system,
    check_active_dims,
    check_beats_idf_only,
    check_zero_share,
    flops,
    idf_only_matrices,
    mean_active_dims,
    qrels_from_queries,
    run_metrics,
    zero_share,
)
from sparse_assets_tests.korquad_data import korquad_records


def test_metrics_hand_computed():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d9": 1}}
    run = {
        "q1": [("d3", 3.0), ("d1", 2.0)],  # relevant at rank 2
        "q2": [("d2", 5.0), ("d1", 1.0)],  # relevant at rank 1
        "q3": [("d1", 1.0)],  # relevant not retrieved
    }
    m = run_metrics(qrels, run)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0 + 0.0) / 3)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["recall@100"] == pytest.approx(2 / 3)
    # a query without any run counts as zero
    assert run_metrics({"q1": {"d1": 1}, "q4": {"d1": 1}}, {"q1": [("d1", 1.0)]})["mrr@10"] == pytest.approx(0.5)


def test_index_search_and_sparsity_statistics():
    docs = sp.csr_matrix(np.array([[1.0, 0, 2.0, 0], [0, 0, 1.0, 1.0], [0, 0, 0, 0]], dtype=np.float32))
    queries = sp.csr_matrix(np.array([[0, 0, 1.0, 0], [0, 3.0, 0, 0.5]], dtype=np.float32))
    hits = SparseIndex(["a", "b", "c"], docs).search(queries, k=10)
    assert hits[0] == [("a", 2.0), ("b", 1.0)]  # zero scores left out
    assert hits[1] == [("b", 0.5)]
    assert mean_active_dims(docs) == pytest.approx(4 / 3)
    assert zero_share(docs) == pytest.approx(1 / 3)
    # FLOPS = sum_v P(q_v != 0) P(d_v != 0): v1 (1/2)(0) + v2 (1/2)(2/3) + v3 (1/2)(1/3) = 1/2
    assert flops(queries, docs) == pytest.approx(0.5 * 0 + 0.5 * 2 / 3 + 0.5 / 3)


def test_index_search_equals_brute_force_dot_products():
    docs = sp.random(300, 500, density=0.03, format="csr", dtype=np.float32, random_state=1)
    queries = sp.random(40, 500, density=0.02, format="csr", dtype=np.float32, random_state=2)
    index = SparseIndex([f"d{i}" for i in range(300)], docs)
    dense = (queries @ docs.T).toarray()
    for row, hits in zip(dense, index.search(queries, k=10)):
        best = [i for i in np.argsort(-row, kind="stable")[:10] if row[i] > 0]
        assert [h for h, _ in hits] == [f"d{i}" for i in best]
        np.testing.assert_allclose([s for _, s in hits], row[best], rtol=1e-5)
    q = queries[3]
    assert index.search_terms(q.indices, q.data, k=5) == index.search(q, k=5)[0]
    assert index.search_terms(np.zeros(0, np.int64), np.zeros(0, np.float32)) == []  # no terms: nothing found


def test_idf_only_matrices():
    class Tok:
        all_special_ids: ClassVar[list[int]] = [0]

        def __call__(self, texts, add_special_tokens=False, verbose=True):
            return {"input_ids": [[int(c) for c in t.split()] for t in texts]}

    weights = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float32)
    dmat, qmat = idf_only_matrices(Tok(), weights, ["1 1 2", "3"], ["2 3 3 0"])
    # BM25 saturation and length normalisation (k1 1.5, b 0.75; lengths 3 and 1, average 2)
    norm_long, norm_short = 1.5 * (0.25 + 0.75 * 1.5), 1.5 * (0.25 + 0.75 * 0.5)
    expected = [[0, 2 * 2.5 / (2 + norm_long), 2.5 / (1 + norm_long), 0], [0, 0, 0, 2.5 / (1 + norm_short)]]
    np.testing.assert_allclose(dmat.toarray(), expected, rtol=1e-6)
    twice, once, short = dmat[0, 1], dmat[0, 2], dmat[1, 3]
    assert once < twice < 2 * once  # a repeated piece counts more, saturating
    assert short > once  # the same single occurrence counts more in a shorter document
    assert qmat.toarray().tolist() == [[0, 0, 2.0, 3.0]]  # IDF weights, each token once, specials dropped


def test_bm25_baseline_on_korquad_slice():
    docs, queries = korquad_records(3)
    queries = list(queries)[:60]
    row = bm25_system([d["id"] for d in docs], [f"{d['title']} {d['text']}" for d in docs], queries, qrels_from_queries(queries))
    assert row["system"] == "bm25"
    assert row["ndcg@10"] > 0.7 and row["recall@100"] == pytest.approx(1.0)
    assert row["query_latency_ms"] > 0


def test_check_helpers():
    assert check_active_dims(150, 10, 2000)[0] and not check_active_dims(0.0, 10, 2000)[0]
    assert not check_active_dims(5000, 10, 2000)[0]
    assert check_zero_share(0.0)[0] and not check_zero_share(0.3)[0]
    ok, text = check_beats_idf_only(0.8, 0.7)
    assert ok and "0.8000" in text
    assert not check_beats_idf_only(0.7, 0.7)[0]
    few = {"minus_idf_only_ndcg@10": -0.01, "minus_idf_only_ci_low": -0.05, "minus_idf_only_ci_high": 0.03, "queries": 44}
    ok, text = check_beats_idf_only(0.70, 0.72, gain=few)
    assert not ok and "-0.0100 (95% CI -0.0500 .. +0.0300) on 44 held-out pseudo-queries, level" in text
    ok, text = check_beats_idf_only(
        0.80, 0.70, gain={**few, "minus_idf_only_ndcg@10": 0.1, "minus_idf_only_ci_low": 0.06, "minus_idf_only_ci_high": 0.14}
    )
    assert ok and text.endswith("pseudo-queries, above")
