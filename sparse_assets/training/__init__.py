"""Training a sparse encoder: query-document pairs (pseudo-queries), the BM25 + dense teacher, and
the training loop."""
