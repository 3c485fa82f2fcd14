"""Helpers for the sparse-model tests: the base query table (as `idf_statistics` makes it), the real teacher, one tiny trained model per session."""

from __future__ import annotations

from pathlib import Path

from sparse_assets_tests.korquad_data import korquad_records


def base_idf(base_folder: Path, documents) -> dict[int, float]:
    from transformers import AutoTokenizer

    from sparse_assets.data.idf import TrendSettings
    from sparse_assets.data.morph_idf import query_table

    return query_table(list(documents), AutoTokenizer.from_pretrained(str(base_folder)), TrendSettings())[0].idf


_TEACHERS: dict[tuple, dict] = {}


def teacher_for(base_folder: Path, documents, pairs) -> dict:
    """The real BM25 + dense-e5 teacher {(query, positive_id): record} of `pairs` (memoised per session)."""
    key = (str(base_folder), tuple(d["id"] for d in documents), tuple((p["query"], p["positive_id"]) for p in pairs))
    if key not in _TEACHERS:
        from sparse_assets.encoder.sparse_model import document_text
        from sparse_assets.training.sparse_training import teacher_key
        from sparse_assets.training.teacher import DenseEncoder, teacher_records

        encoder = DenseEncoder(base_folder)
        doc_vectors = encoder([document_text(d) for d in documents], is_query=False)
        query_vectors = encoder([p["query"] for p in pairs], is_query=True)
        records = teacher_records(pairs, documents, doc_vectors, query_vectors, depth=10)
        _TEACHERS[key] = {teacher_key(p): r.to_dict() for p, r in zip(pairs, records)}
    return _TEACHERS[key]


_TRAINED: dict[str, tuple] = {}


def tiny_settings(**overrides):
    from sparse_assets.encoder.sparse_model import SparseTrainingSettings

    values = {"steps": 30, "batch_size": 8, "layers": 2, "max_length": 128, "validation_fraction": 0.2, "seed": 5}
    values.update(overrides)
    return SparseTrainingSettings(**values)


def trained_tiny_model(base_folder: Path, root: Path):
    """(model folder, report, documents, pairs, idf): 30 frozen-encoder steps on 3 KorQuAD articles;
    trained once per test session (shared across test modules)."""
    key = str(base_folder)
    if key not in _TRAINED:
        from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
        from sparse_assets.training.sparse_training import train_sparse_encoder

        docs, _ = korquad_records(3)
        docs = list(docs)
        pairs = build_pairs(docs, PseudoQuerySettings())
        idf = base_idf(base_folder, docs)
        out = Path(root) / "tiny_model"
        report = train_sparse_encoder(docs, pairs, idf, tiny_settings(), out, base_folder, teacher_for(base_folder, docs, pairs))
        _TRAINED[key] = (out, report, docs, pairs, idf)
    return _TRAINED[key]
