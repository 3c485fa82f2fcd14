"""Retrieval and evaluation: BM25-Kiwi, sparse retrieval with NDCG/MRR/recall, and the comparison of
systems with paired bootstrap intervals."""
