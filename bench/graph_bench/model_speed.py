"""The trained model's speed: documents/s of our encoding against plain SparseEncoder, and
per-query latency against bm25s."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

ENCODING_BATCH_SIZES = (8, 32)


def spread(values: list[float], digits: int = 3) -> dict:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "values": [round(v, digits) for v in values],
    }


def load_dataset(dataset: Path) -> tuple[list[dict], list[dict]]:
    docs = json.loads((dataset / "base_model" / "documents.json").read_text(encoding="utf-8"))
    queries = json.loads((dataset / "base_model" / "eval_queries.json").read_text(encoding="utf-8"))
    return docs, queries


def section_encoding(model_dir: Path, docs: list[dict], n_docs: int, repeats: int, log) -> dict:
    import torch

    from sparse_assets.encoder.sparse_model import document_module, document_text, encode_documents, load_sparse_encoder, token_windows

    model = load_sparse_encoder(model_dir)
    texts = [document_text(d) for d in docs[:n_docs]]
    doc_mod, _ = document_module(model)
    max_length = doc_mod.max_seq_length
    lengths = [len(ids) for ids in doc_mod.tokenizer(texts, verbose=False)["input_ids"]]
    log(
        f"encoding {len(texts)} documents ({sum(n > max_length for n in lengths)} longer than {max_length} tokens), "
        f"batch sizes {ENCODING_BATCH_SIZES}, {repeats} repeats, torch threads {torch.get_num_threads()}"
    )

    def plain(batch_size):
        with torch.no_grad():
            return model.encode_document(texts, batch_size=batch_size, convert_to_tensor=True, convert_to_sparse_tensor=True)

    variants = {
        f"{name}_batch_{bs}": (lambda bs=bs, fn=fn: fn(bs))
        for bs in ENCODING_BATCH_SIZES
        for name, fn in (("ours", lambda bs: encode_documents(model, texts, batch_size=bs)), ("plain", plain))
    }
    encode_documents(model, texts[:8])  # warm-up
    timings = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            timings[name].append(len(texts) / (time.perf_counter() - t))
        log(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} docs/s" for k, v in timings.items()))
    best = {name: max(statistics.median(timings[f"{name}_batch_{bs}"]) for bs in ENCODING_BATCH_SIZES) for name in ("ours", "plain")}
    return {
        "model": str(model_dir),
        "documents": len(texts),
        "max_length": max_length,
        "documents_longer_than_max_length": sum(n > max_length for n in lengths),
        "windows_ours": len(token_windows(doc_mod.tokenizer, texts, max_length)[0]),
        "tokens_encoded_ours": sum(lengths),
        "tokens_encoded_plain": sum(min(n, max_length) for n in lengths),
        "docs_per_s": {name: spread(v, 2) for name, v in timings.items()},
        "ours_docs_per_s_best": round(best["ours"], 2),
        "plain_docs_per_s_best": round(best["plain"], 2),
        "ratio_ours_to_plain": round(best["ours"] / best["plain"], 3),
        **{
            f"ratio_ours_to_plain_batch_{bs}": round(
                statistics.median(timings[f"ours_batch_{bs}"]) / statistics.median(timings[f"plain_batch_{bs}"]), 3
            )
            for bs in ENCODING_BATCH_SIZES
        },
        "note": "ours = sparse_model.encode_documents (one tokenization; length-sorted batches; SPLADE max taken over "
        "the logits of each window's own tokens before log1p(relu); a document longer than max_length is cut "
        "into windows that are encoded and max-pooled, so all of its text counts); plain = "
        "SparseEncoder.encode_document (text beyond max_length dropped). Both at each batch size; the goal "
        "ratio compares each at its faster batch size (median docs/s)",
    }


def section_latency(model_dir: Path, docs: list[dict], queries: list[dict], n_queries: int, repeats: int, log) -> dict:
    import bm25s
    import numpy as np
    import torch

    from sparse_assets.encoder.sparse_model import (
        IdfQueryEncoder,
        document_text,
        encode_documents,
        encode_queries,
        is_inference_free,
        load_sparse_encoder,
        model_tokenizer,
    )
    from sparse_assets.evaluation.bm25 import KiwiBM25
    from sparse_assets.evaluation.retrieval import SparseIndex

    model = load_sparse_encoder(model_dir)
    texts = [document_text(d) for d in docs]
    ids = [d["id"] for d in docs]
    qs = [q["query"] for q in queries[:n_queries]]
    log(f"latency: indexing {len(texts)} documents; {len(qs)} queries one at a time, {repeats} repeats")
    t = time.perf_counter()
    index = SparseIndex(ids, encode_documents(model, texts))
    index_s = time.perf_counter() - t
    tokenizer = model_tokenizer(model)

    def subwords(batch: list[str]) -> list[list[str]]:
        return [tokenizer.convert_ids_to_tokens(x) or [""] for x in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]]

    bm25 = bm25s.BM25()
    bm25.index(subwords(texts), show_progress=False)
    kiwi = KiwiBM25(ids, texts)

    query_encoder = IdfQueryEncoder.of(model)  # None for a SPLADE query side (a forward pass per query)

    def ours(q: str):
        if query_encoder is not None:
            return index.search_terms(*query_encoder.terms(q), k=10)
        return index.search(encode_queries(model, [q]), k=10)

    def bm25_subwords(q: str):
        return bm25.retrieve(subwords([q]), k=10, show_progress=False)

    def bm25_kiwi(q: str):
        return kiwi.search([q], k=10)

    systems = {"sparse_inference_free": ours, "bm25s_subwords": bm25_subwords, "bm25s_kiwi": bm25_kiwi}
    query_diff = None
    if is_inference_free(model):  # encode_queries skips the forward pass: check it equals encode_query
        with torch.no_grad():
            reference = model.encode_query(qs, convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().to_dense().numpy()
        query_diff = float(np.abs(encode_queries(model, qs).toarray() - reference).max())
    per_pass = {name: [] for name in systems}
    per_query = {name: [] for name in systems}
    for fn in systems.values():  # warm-up
        for q in qs[:5]:
            fn(q)
    for r in range(repeats):
        for name, fn in systems.items():
            times = []
            for q in qs:
                t = time.perf_counter()
                fn(q)
                times.append(1000 * (time.perf_counter() - t))
            per_pass[name].append(statistics.mean(times))
            per_query[name] += times
        log(f"  repeat {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f} ms" for n, v in per_pass.items()))
    out = {
        "model": str(model_dir),
        "inference_free": is_inference_free(model),
        "documents": len(texts),
        "queries": len(qs),
        "k": 10,
        "index_build_s": round(index_s, 1),
        "systems": {},
    }
    for name in systems:
        pq = np.asarray(per_query[name])
        out["systems"][name] = {
            "mean_ms_per_pass": spread(per_pass[name], 3),
            "p50_ms": round(float(np.percentile(pq, 50)), 3),
            "p95_ms": round(float(np.percentile(pq, 95)), 3),
        }
    med = {n: statistics.median(v) for n, v in per_pass.items()}
    out["ratio_to_bm25s_subwords"] = round(med["sparse_inference_free"] / med["bm25s_subwords"], 3)
    out["ratio_to_bm25s_kiwi"] = round(med["sparse_inference_free"] / med["bm25s_kiwi"], 3)
    out["query_vectors_max_abs_diff_to_encode_query"] = query_diff
    out["note"] = (
        "one query at a time, query encoding included (sparse_inference_free: IdfQueryEncoder.terms, the "
        "query's distinct tokens weighted by the model's IDF without a forward pass (the vectors of "
        "SparseEncoder.encode_query), then SparseIndex.search_terms, term at a time; BM25: tokenizer / "
        "Kiwi analysis, then bm25s), top 10 over the same documents"
    )
    return out
