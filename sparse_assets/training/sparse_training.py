"""Training the sparse encoder (no Dagster): `train_sparse_encoder(...) -> TrainingReport`.

The recipe (defaults in sparse_model.SparseTrainingSettings, chosen on the two dev sets):
- **Distillation from a heterogeneous ensemble teacher** (sparse_assets.training.teacher: BM25 + dense e5, each
  min-max normalised per query, mixed) with sentence-transformers' SparseMarginMSELoss over the
  positive and the teacher's hardest other candidates. The teacher's margins are scaled to the spread
  of the starting student's, so that training reorders candidates instead of inflating weights.
- **IDF-aware sparsity**: the student's score is sum_t idf(t) * w_d(t) (the inference-free query), so
  the ranking loss pulls on informative tokens in proportion to their IDF while FLOPS (FlopsLoss on
  the document side, its weight warmed up quadratically) pushes every token down alike: low-IDF
  tokens lose. This is the IDF-aware penalty of Geng et al. 2024 (arXiv 2411.04403), as OpenSearch's
  sparse-model tuning sample implements it (IDF in the matching function, plain FLOPS on documents).
- **Pivoted length normalisation** of document vectors with a learnt slope
  (sparse_assets.encoder.length_normalization): on KorQuAD it is worth more than any other change.
- **A lexical floor** (sparse_assets.encoder.lexical_floor): the document's own pieces with BM25's
  saturation sit under the head's expansion, in training as at search time, so the head learns what
  to add to exact match rather than re-learning it, and cannot silence a piece the document holds.

Two paths, one set of loss classes:
- ``freeze_encoder=True`` (CPU default): the transformer's token states are computed once (and kept
  on disk with ``hidden_cache_dir``); only the MLM head transform, the output bias and the length
  slope train. Scores of an inference-free model only need the document weights of the batch's query
  tokens, so each step computes the head on those columns (plus a stratified sample of the
  vocabulary for an unbiased FLOPS estimate) and hands the embeddings to the loss classes'
  ``compute_loss_from_embeddings``, cheap enough for a CPU.
- ``freeze_encoder=False``: the library's SparseEncoderTrainer with SpladeLoss around the ranking loss
  (Router columns mapped query -> query side, documents -> document side). The GPU path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sparse_assets.data.records import Document, QDPair
from sparse_assets.encoder.sparse_model import (
    SETTINGS_FILE,
    MlmHead,
    SparseTrainingSettings,
    TrainingReport,
    add_document_floor,
    build_sparse_encoder,
    document_floor_matrix,
    document_length_normalization,
    document_module,
    document_text,
    encode_documents,
    fit_document_floor,
    idf_vector,
    padded_batches,
    prepare_mlm_folder,
    read_query_token_scale,
    resolve_device,
    set_query_weights,
    splade_activation,
    token_windows,
    write_idf_json,
    write_query_token_scale,
)
from sparse_assets.training.pairs import EXTRACTIVE_KINDS
from sparse_assets.training.teacher import margin_scale, mixed_scores

Progress = Callable[[int, int, float], None]  # (step, total, loss)
REPORT_FILE = "training_report.json"
PSEUDO_SOURCE = "pseudo:"
SCALE_SAMPLE = 200  # training queries whose starting-student scores set the teacher scale
CORPUS_SHARE_OF_FLOPS_SAMPLE = 0.75  # the rest of the FLOPS sample comes from tokens no document uses


def teacher_key(pair: Mapping) -> tuple[str, str]:
    return pair["query"], pair["positive_id"]


def split_pairs(pairs: Sequence[QDPair], fraction: float, seed: int) -> tuple[list[QDPair], list[QDPair]]:
    """Seeded split of the pseudo-query pairs by positive document (a validation document is never
    a pseudo-query positive in training). Validation keeps the held-out documents' non-extractive
    queries (title, lead, key nouns; `pairs.EXTRACTIVE_KINDS` favour exact match, see there). Other
    pairs (the LLM's questions, synonym copies) always train: every document the LLM step has seen
    contributes."""
    pseudo_docs = sorted({p["positive_id"] for p in pairs if p["source"].startswith(PSEUDO_SOURCE)})
    rng = random.Random(seed)
    rng.shuffle(pseudo_docs)
    held = set(pseudo_docs[: round(len(pseudo_docs) * fraction)]) if fraction > 0 and len(pseudo_docs) > 1 else set()
    extractive = {PSEUDO_SOURCE + kind for kind in EXTRACTIVE_KINDS}
    val = [p for p in pairs if p["source"].startswith(PSEUDO_SOURCE) and p["positive_id"] in held and p["source"] not in extractive]
    train = [p for p in pairs if not (p["source"].startswith(PSEUDO_SOURCE) and p["positive_id"] in held)]
    return train, val


def epoch_capped(settings: SparseTrainingSettings, train_pairs: int) -> SparseTrainingSettings:
    """`settings` with at most `max_epochs` passes over the training pairs: the step budget is for a
    corpus of KorQuAD's size (3,000 steps of 8 are 2.5 passes over its 9,500 pairs); on a small corpus
    the same steps would repeat each pair dozens of times and overfit it."""
    if not settings.max_epochs:
        return settings
    cap = max(1, math.ceil(settings.max_epochs * train_pairs / settings.batch_size))
    return dataclasses.replace(settings, steps=min(settings.steps, cap))


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
FREED_MEMORY_THRESHOLD = 1 << 20


def return_freed_memory_to_the_system() -> None:
    """Fix glibc's mmap and trim thresholds at 1 MB for this process. By default glibc raises its mmap
    threshold each time a large block is freed, after which the training loop's tensors (a different
    size every step) come from the heap and fragment it: 1,000 steps of KorQuAD's v1 training reached
    5.4 GB in the loop and 6.5 GB with validation; with the thresholds fixed, 2.2 GB and 3.2 GB, at the
    same speed. Nothing happens off glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(GLIBC_M_MMAP_THRESHOLD, FREED_MEMORY_THRESHOLD)
    mallopt(GLIBC_M_TRIM_THRESHOLD, FREED_MEMORY_THRESHOLD)


def mean_document_tokens(tokenizer, texts: Sequence[str], max_length: int) -> float:
    """The length pivot: the mean token count of the documents (all windows, special tokens included)."""
    windows, _ = token_windows(tokenizer, texts, max_length)
    return float(sum(len(w) for w in windows)) / max(len(texts), 1)


def train_sparse_encoder(
    documents: Sequence[Document],
    pairs: Sequence[QDPair],
    idf: Mapping,
    settings: SparseTrainingSettings,
    out_dir: Path,
    base_folder: Path,
    teacher: Mapping[tuple[str, str], Mapping],
    progress: Progress | None = None,
    warm_start: Path | None = None,
) -> TrainingReport:
    """Train on `pairs` over `documents` and write a SparseEncoder folder (with idf.json) at `out_dir`.
    `idf` maps base-tokenizer token id (or token string) -> weight (the idf_statistics asset).
    `teacher`: (query, positive_id) -> {"candidates", "bm25", "dense"} (sparse_assets.training.teacher), for
    every pair. `warm_start`: a model folder of the same architecture to continue from (its head and
    length slope; v2 continues v1), instead of `base_folder` with a fresh head."""
    import torch

    t_start = time.perf_counter()
    return_freed_memory_to_the_system()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    _seed_everything(settings.seed)
    device, dtype = resolve_device(settings.device)
    out_dir = Path(out_dir)
    doc_by_id = {d["id"]: document_text(d) for d in documents}
    pairs = [p for p in pairs if p["positive_id"] in doc_by_id]
    if not pairs:
        raise ValueError("no training pair has its positive document in the corpus")
    missing = [p["query"] for p in pairs if teacher_key(p) not in teacher]
    if missing:
        raise ValueError(f"the teacher scores lack {len(missing)} training pairs (e.g. {missing[:2]}): re-materialize teacher_scores")
    train, val = split_pairs(pairs, settings.validation_fraction, settings.seed)
    settings = epoch_capped(settings, len(train))

    work = Path(tempfile.mkdtemp(prefix="sparse-train-"))
    try:
        source, slope = Path(base_folder), None
        if warm_start is not None:
            source, slope = _warm_start_parts(Path(warm_start))
        mlm = prepare_mlm_folder(source, work / "mlm", settings, reset_bias=warm_start is None)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(mlm))
        weights = idf_vector(idf, tokenizer)
        query_scale = read_query_token_scale(warm_start, tokenizer) if warm_start is not None else np.ones(len(weights), dtype=np.float32)
        texts = [doc_by_id[d["id"]] for d in documents]
        pivot = mean_document_tokens(tokenizer, texts, settings.max_length)
        query_weights = weights * query_scale  # the query side training starts from
        model = build_sparse_encoder(mlm, query_weights, settings, device=device, length_pivot=pivot, length_slope=slope)
        fit_document_floor(model, texts)

        candidates = [list(teacher[teacher_key(p)]["candidates"]) for p in train]
        mixed = [mixed_scores(teacher[teacher_key(p)], settings.teacher_dense_weight) for p in train]
        scale = settings.teacher_scale
        if scale is None:
            scale = margin_scale(*_scale_sample(model, train, candidates, mixed, query_weights, doc_by_id, settings))
        labels = [m * scale for m in mixed]
        prepare_seconds = time.perf_counter() - t_start

        losses, steps_logged = [], []

        def log(step: int, loss: float) -> None:
            losses.append(float(loss))
            steps_logged.append(step)
            if progress:
                progress(step, settings.steps, float(loss))

        t_train = time.perf_counter()
        hidden = None
        if settings.freeze_encoder and settings.architecture == "inference_free":
            hidden, query_scale = _train_frozen(
                model, tokenizer, weights, query_scale, train, candidates, labels, documents, doc_by_id, settings, device, dtype, log
            )
        else:
            _train_trainer(model, train, candidates, labels, doc_by_id, settings, device, dtype, work, log)
        train_seconds = time.perf_counter() - t_train
        query_weights = weights * query_scale  # the learned query side
        set_query_weights(model, query_weights)

        model.eval()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        model.save(str(out_dir))
        write_idf_json(out_dir, query_weights, tokenizer)
        write_query_token_scale(out_dir, query_scale, tokenizer)
        tokenizer.save_pretrained(str(out_dir))
        (out_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=1))
        length = document_length_normalization(model)
        report = TrainingReport(
            losses=losses,
            loss_steps=steps_logged,
            config={**settings.to_dict(), "teacher_scale_used": scale, "warm_start": str(warm_start) if warm_start else None},
            steps=settings.steps,
            steps_per_second=settings.steps / train_seconds if train_seconds > 0 else 0.0,
            train_seconds=train_seconds,
            prepare_seconds=prepare_seconds,
            device=device,
            dtype=dtype,
            vocab_size=len(weights),
            train_pairs=len(train),
            validation_pairs=len(val),
            length_slope=length.slope if length is not None else 0.0,
            length_pivot=length.pivot if length is not None else 0.0,
        )
        if val:
            report.validation.append(validation_scores(model, documents, val, tokenizer, weights, settings, hidden))
            report.doc_active_dims = float(report.validation[-1]["doc_active_dims"])
            report.zero_doc_share = float(report.validation[-1]["zero_doc_share"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.wall_seconds = time.perf_counter() - t_start
    report.peak_memory_mb = peak_memory_mb()
    (out_dir / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _warm_start_parts(folder: Path) -> tuple[Path, float | None]:
    """(document transformer folder, length slope) of a saved inference-free model folder."""
    from sparse_assets.encoder.sparse_model import SparseModelError

    transformers = sorted(p for p in folder.glob("document_*Transformer") if p.is_dir())
    if not transformers:
        raise SparseModelError(f"{folder}: no document transformer to warm-start from (not an inference-free model folder)")
    length_files = sorted(folder.glob("document_*PivotedLengthNormalization/length_normalization.json"))
    slope = json.loads(length_files[0].read_text())["slope"] if length_files else None
    return transformers[0], slope


def _scale_sample(model, train, candidates, mixed, weights, doc_by_id, settings) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(teacher, starting student) scores over the first `candidates_per_query` candidates of a seeded
    sample of training queries, for `teacher.margin_scale`."""
    from sparse_assets.encoder.sparse_model import IdfQueryEncoder, model_tokenizer

    rng = random.Random(settings.seed)
    sample = rng.sample(range(len(train)), min(SCALE_SAMPLE, len(train)))
    rows = [candidates[i][: settings.candidates_per_query] for i in sample]
    docs = sorted({d for row in rows for d in row})
    queries = IdfQueryEncoder(model_tokenizer(model), weights).encode([train[i]["query"] for i in sample])
    dmat = encode_documents(model, [doc_by_id[d] for d in docs], vocabulary=np.unique(queries.indices))
    position = {d: j for j, d in enumerate(docs)}
    scores = (queries @ dmat.T).toarray()
    student = [scores[k, [position[d] for d in row]] for k, row in enumerate(rows)]
    return [mixed[i][: len(row)] for i, row in zip(sample, rows)], student


def validation_scores(model, documents, val, tokenizer, weights, settings, hidden=None) -> dict:
    """Validation MRR@10 / NDCG@10 of the model and of the IDF-only baseline on held-out pseudo pairs
    (documents from the cached token states when the encoder was frozen), and the model's NDCG@10
    gain over IDF-only with its 95% paired-bootstrap interval (a small corpus validates on a few dozen
    queries, too few to separate two models a few points apart)."""
    from sparse_assets.encoder.sparse_model import encode_queries
    from sparse_assets.evaluation.comparison import paired_bootstrap
    from sparse_assets.evaluation.retrieval import evaluate_matrices, evaluation_vocabulary, idf_only_matrices

    queries = [{"id": f"v{i}", "query": p["query"], "positive_id": p["positive_id"]} for i, p in enumerate(val)]
    doc_ids = [d["id"] for d in documents]
    texts = [document_text(d) for d in documents]
    qmat = encode_queries(model, [q["query"] for q in queries])
    vocabulary = evaluation_vocabulary(tokenizer, texts, qmat)
    if hidden is not None:
        dmat = add_document_floor(model, texts, _matrix_from_states(model, hidden, vocabulary))
    else:
        dmat = encode_documents(model, texts, max_length=settings.max_length, vocabulary=vocabulary)
    row = evaluate_matrices(doc_ids, queries, dmat, qmat)
    idf_dmat, idf_qmat = idf_only_matrices(tokenizer, weights, texts, [q["query"] for q in queries])
    idf_row = evaluate_matrices(doc_ids, queries, idf_dmat, idf_qmat)
    out = {key: row[key] for key in ("mrr@10", "ndcg@10", "recall@10", "doc_active_dims", "query_active_dims", "zero_doc_share", "flops")}
    out.update({"idf_only_mrr@10": idf_row["mrr@10"], "idf_only_ndcg@10": idf_row["ndcg@10"], "queries": len(queries)})
    gain = paired_bootstrap(idf_row["per_query_ndcg@10"], row["per_query_ndcg@10"])
    out.update(
        {
            "minus_idf_only_ndcg@10": gain["mean_difference"],
            "minus_idf_only_ci_low": gain["ci_low"],
            "minus_idf_only_ci_high": gain["ci_high"],
        }
    )
    return out


# ----------------------------------------------------------------------------- frozen encoder path


def _cache_key(auto_model, texts: Sequence[str], max_length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    config = {k: v for k, v in auto_model.config.to_dict().items() if k != "_name_or_path"}  # the folder, new per training
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, p in auto_model.base_model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(float(p.detach().float().sum())).encode())
    h.update(str(max_length).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _cache_hidden(
    auto_model,
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    device: str,
    dtype,
    *,
    cache_dir: str | None,
    cache_limit_bytes: int,
    batch_size: int = 16,
):
    """Per text: the base model's final token states for all its windows, concatenated [T, H], in
    float16. With `cache_dir`, kept on disk (safetensors) keyed by model weights, texts and max_length;
    the folder keeps to `cache_limit_bytes` by deleting its least recently used entries."""
    from safetensors.torch import load_file, save_file

    if not cache_dir:
        return _compute_hidden(auto_model, tokenizer, texts, max_length, device, dtype, batch_size)
    path = Path(cache_dir) / f"hidden-{_cache_key(auto_model, texts, max_length)}.safetensors"
    try:
        stored = load_file(str(path), device=device)
    except FileNotFoundError:  # not computed yet, or evicted by another run
        pass
    else:
        with contextlib.suppress(FileNotFoundError):  # evicted since: the states are loaded
            os.utime(path)  # most recently used
        return [stored[str(i)] for i in range(len(texts))]
    states = _compute_hidden(auto_model, tokenizer, texts, max_length, device, dtype, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")  # per process: two runs may compute the same entry
    save_file({str(i): h.contiguous().cpu() for i, h in enumerate(states)}, str(tmp))
    tmp.replace(path)
    prune_hidden_cache(path.parent, cache_limit_bytes, keep=path)
    return states


def prune_hidden_cache(cache_dir: Path, limit_bytes: int, keep: Path) -> list[Path]:
    """Delete the least recently used token-state files of `cache_dir` (oldest modification time
    first; a cache hit touches its file) until the rest fit in `limit_bytes`; `keep` stays. Returns
    the deleted paths. States are recomputed when needed again, so nothing is lost. Partial files
    that a crashed run left (older than an hour) go too."""
    an_hour_ago = time.time() - 3600
    for partial in cache_dir.glob("hidden-*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if partial.stat().st_mtime < an_hour_ago:
                partial.unlink()
    entries = []
    for file in cache_dir.glob("hidden-*.safetensors"):
        try:
            stat = file.stat()
        except FileNotFoundError:  # deleted by a concurrent run
            continue
        entries.append((stat.st_mtime, stat.st_size, file))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, file in sorted(entries):
        if total <= limit_bytes:
            break
        if file == keep:
            continue
        file.unlink(missing_ok=True)
        total -= size
        deleted.append(file)
    return deleted


def _compute_hidden(auto_model, tokenizer, texts: Sequence[str], max_length: int, device: str, dtype, batch_size: int = 16):
    import torch

    base = auto_model.base_model
    windows, owner = token_windows(tokenizer, texts, max_length)
    parts: list[list] = [[] for _ in texts]
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
        for idx, ids, mask in padded_batches(windows, batch_size, tokenizer.pad_token_id):
            hidden = base(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            for row, j in enumerate(idx):
                parts[owner[j]].append((j, hidden[row, : len(windows[j])].to(torch.float16).clone()))
    return [torch.cat([h for _, h in sorted(p, key=lambda x: x[0])]) for p in parts]


def _pooled_weights(head, states, lengths, columns, activate, length):
    """Document weights [docs, len(columns)] from token states (the max over each document's tokens
    commutes with the monotonic activation, so the segment max of the logits is taken first)."""
    import torch

    flat = torch.cat(states).float()
    owner = torch.repeat_interleave(torch.arange(len(states), device=flat.device), lengths)
    logits = head.logits(head.transform(flat), columns).float()
    pooled = torch.full((len(states), logits.shape[1]), -1e4, device=flat.device, dtype=logits.dtype)
    pooled = pooled.scatter_reduce(0, owner[:, None].expand_as(logits), logits, reduce="amax", include_self=True)
    weights = activate(pooled)
    if length is not None:
        weights = weights / length.factor(lengths.to(weights.device)).unsqueeze(-1)
    return weights


def _matrix_from_states(model, hidden, vocabulary, tokens_per_block: int = 32768, columns_per_block: int = 4096):
    """scipy CSR [docs, vocab] from cached token states (the frozen path's fast encoding), in blocks of
    `tokens_per_block` tokens x `columns_per_block` vocabulary columns (0.5 GB of logits)."""
    import scipy.sparse as sp
    import torch

    doc_mod, pooling = document_module(model)
    head = MlmHead(doc_mod.auto_model)
    activate, length = splade_activation(pooling), document_length_normalization(model)
    columns = torch.as_tensor(np.asarray(vocabulary, dtype=np.int64))
    rows, cols, vals = [], [], []
    with torch.inference_mode():
        start = 0
        while start < len(hidden):
            end, count = start, 0
            while end < len(hidden) and (end == start or count + len(hidden[end]) <= tokens_per_block):
                count += len(hidden[end])
                end += 1
            lengths = torch.tensor([len(h) for h in hidden[start:end]])
            for chunk in columns.split(columns_per_block):  # logits of one block: tokens x columns floats
                weights = _pooled_weights(head, hidden[start:end], lengths, chunk, activate, length)
                r, c = weights.nonzero(as_tuple=True)
                rows.append(r.numpy() + start)
                cols.append(chunk[c].numpy())
                vals.append(weights[r, c].numpy())
            start = end
    dim = model.get_embedding_dimension()
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(hidden), dim), dtype=np.float32)


def _hard_candidates(scores: np.ndarray, count: int, rng: random.Random) -> list[int]:
    """The positive (index 0) and `count` others drawn from the teacher's top 3 x `count` (repeats pad
    a short list, so every row has the same width)."""
    others = sorted(range(1, len(scores)), key=lambda j: -scores[j])[: 3 * count]
    chosen = rng.sample(others, min(count, len(others)))
    while len(chosen) < count:
        chosen.append(chosen[-1] if chosen else 0)
    return [0, *chosen]


def _train_frozen(
    model, tokenizer, weights, query_scale, train, candidates, labels, documents, doc_by_id, settings, device, dtype_name, log
):
    """Returns the cached token states of `documents` (for validation) and the query tokens' IDF
    multipliers (`query_scale`, learned when `query_weight_learning_rate` > 0: the query side stays an
    IDF-weighted bag of tokens, its weights fitted to the teacher like the document side's)."""
    import torch
    from sentence_transformers.sparse_encoder.losses import FlopsLoss, SparseMarginMSELoss, SparseMultipleNegativesRankingLoss

    dtype = getattr(torch, dtype_name)
    doc_mod, pooling = document_module(model)
    auto_model = doc_mod.auto_model
    auto_model.to(device).eval()
    head = MlmHead(auto_model)
    length = document_length_normalization(model)
    activate = splade_activation(pooling)
    for p in auto_model.parameters():
        p.requires_grad_(False)
    params = head.parameters()
    for p in params:
        p.requires_grad_(True)
    groups = [{"params": params, "lr": settings.learning_rate}]
    log_scale = torch.tensor(np.log(query_scale), device=device, dtype=torch.float32).requires_grad_(
        settings.query_weight_learning_rate > 0
    )
    if settings.query_weight_learning_rate > 0:
        groups.append({"params": [log_scale], "lr": settings.query_weight_learning_rate})
    if length is not None and settings.train_length_slope:
        groups.append({"params": [length.slope_parameter], "lr": settings.learning_rate * 5})

    index = {d["id"]: i for i, d in enumerate(documents)}
    hidden = _cache_hidden(
        auto_model,
        tokenizer,
        [doc_by_id[d["id"]] for d in documents],
        settings.max_length,
        device,
        dtype,
        cache_dir=settings.hidden_cache_dir,
        cache_limit_bytes=int(settings.hidden_cache_limit_gb * 2**30),
    )
    token_counts = torch.tensor([len(h) for h in hidden], device=device)
    floor = document_floor_matrix(model, [doc_by_id[d["id"]] for d in documents])  # fixed: added, never trained
    corpus_vocab = np.unique(
        np.concatenate([np.asarray(tokenizer(doc_by_id[d["id"]], add_special_tokens=False, verbose=False)["input_ids"]) for d in documents])
    )
    rest_vocab = np.setdiff1d(np.arange(len(weights)), corpus_vocab)
    corpus_sample = min(len(corpus_vocab), int(settings.flops_vocab_sample * CORPUS_SHARE_OF_FLOPS_SAMPLE))
    rest_sample = min(len(rest_vocab), settings.flops_vocab_sample - corpus_sample)

    q_ids = tokenizer([p["query"] for p in train], add_special_tokens=False, truncation=True, max_length=settings.query_max_length)[
        "input_ids"
    ]
    w = torch.tensor(weights, device=device)
    rng = random.Random(settings.seed)
    sampler = np.random.default_rng(settings.seed)
    n_other = settings.candidates_per_query - 1
    margin = SparseMarginMSELoss(model)
    mnrl = SparseMultipleNegativesRankingLoss(model, scale=settings.mnrl_scale)
    flops = FlopsLoss(model)
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    warm = max(1, int(settings.warmup_ratio * settings.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (settings.steps - s) / max(1, settings.steps - warm)))
    )
    reg_warm = max(1, int(settings.regularizer_warmup_ratio * settings.steps))
    order: list[int] = []
    log_every = max(1, settings.steps // 100)
    running = []
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            more = list(range(len(train)))
            rng.shuffle(more)
            order += more
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        picks = [_hard_candidates(labels[qi], n_other, rng) for qi in batch]
        docs = sorted({index[candidates[qi][j]] for qi, row in zip(batch, picks) for j in row})
        slot = {d: i for i, d in enumerate(docs)}
        cols = sorted({t for qi in batch for t in q_ids[qi] if weights[t] > 0})
        sample = np.concatenate(
            [sampler.choice(corpus_vocab, corpus_sample, replace=False), sampler.choice(rest_vocab, rest_sample, replace=False)]
        )
        columns = torch.tensor(cols + sample.tolist(), device=device, dtype=torch.long)
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            doc_w = _pooled_weights(head, [hidden[d] for d in docs], token_counts[docs], columns, activate, length)
        dq = doc_w[:, : len(cols)]
        if floor is not None:  # the loss sees the documents as served; FLOPS below weighs the head's part only
            dq = dq + torch.from_numpy(floor[docs][:, cols].toarray()).to(device)
        col_pos = {c: i for i, c in enumerate(cols)}
        entries = [(r, col_pos[tkn], tkn) for r, qi in enumerate(batch) for tkn in set(q_ids[qi]) if tkn in col_pos]
        q_emb = torch.zeros(len(batch), len(cols), device=device)
        if entries:
            q_rows, q_cols, q_tokens = (torch.tensor(x, device=device, dtype=torch.long) for x in zip(*entries))
            q_emb = q_emb.index_put((q_rows, q_cols), w[q_tokens] * log_scale[q_tokens].exp())
        emb = [q_emb] + [dq[[slot[index[candidates[qi][row[j]]]] for qi, row in zip(batch, picks)]] for j in range(1 + n_other)]
        if settings.loss == "margin_mse":
            target = torch.tensor(np.stack([labels[qi][row] for qi, row in zip(batch, picks)]), device=device)
            base_loss = margin.compute_loss_from_embeddings(emb, target)
        else:
            base_loss = mnrl.compute_loss_from_embeddings(emb, None)
        sampled = doc_w[:, len(cols) :]
        reg = flops.compute_loss_from_embeddings(sampled[:, :corpus_sample]) * (len(corpus_vocab) / max(corpus_sample, 1))
        if rest_sample:
            reg = reg + flops.compute_loss_from_embeddings(sampled[:, corpus_sample:]) * (len(rest_vocab) / rest_sample)
        reg_weight = settings.document_regularizer_weight * min(1.0, ((step + 1) / reg_warm) ** 2)
        loss = base_loss + reg_weight * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == settings.steps:
            log(step + 1, float(np.mean(running)))
            running = []
    for p in auto_model.parameters():
        p.requires_grad_(True)
    return hidden, log_scale.detach().exp().cpu().numpy()


# ----------------------------------------------------------------------------- library trainer path


def _train_trainer(model, train, candidates, labels, doc_by_id, settings, device, dtype_name, work: Path, log):
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseMarginMSELoss, SparseMultipleNegativesRankingLoss, SpladeLoss
    from transformers import TrainerCallback

    rng = random.Random(settings.seed)
    n_other = settings.candidates_per_query - 1
    rows: dict[str, list] = {"query": [], "positive": []}
    for j in range(n_other):
        rows[f"negative_{j + 1}"] = []
    if settings.loss == "margin_mse":
        rows["label"] = []
    for qi, pair in enumerate(train):
        row = _hard_candidates(labels[qi], n_other, rng)
        rows["query"].append(pair["query"])
        rows["positive"].append(doc_by_id[candidates[qi][0]])
        for j, c in enumerate(row[1:]):
            rows[f"negative_{j + 1}"].append(doc_by_id[candidates[qi][c]])
        if settings.loss == "margin_mse":
            rows["label"].append([float(labels[qi][c]) for c in row])
    dataset = Dataset.from_dict(rows)

    if settings.loss == "margin_mse":
        base = SparseMarginMSELoss(model)
    else:
        base = SparseMultipleNegativesRankingLoss(model, scale=settings.mnrl_scale)
    splade = settings.architecture == "splade"
    loss = SpladeLoss(
        model,
        base,
        document_regularizer_weight=settings.document_regularizer_weight,
        query_regularizer_weight=settings.query_regularizer_weight if splade else None,
    )
    mapping = {} if splade else {"query": "query", "positive": "document", **{f"negative_{j + 1}": "document" for j in range(n_other)}}
    args = SparseEncoderTrainingArguments(
        output_dir=str(work / "trainer"),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.encoder_learning_rate,
        warmup_ratio=settings.warmup_ratio,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=dtype_name == "bfloat16",
        use_cpu=device == "cpu",
        logging_steps=max(1, settings.steps // 100),
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        router_mapping=mapping,
        batch_sampler="no_duplicates" if settings.loss == "mnrl" else "batch_sampler",
    )

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                log(state.global_step, float(logs["loss"]))

    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[_Log()])
    trainer.train()
    model.to("cpu")
