"""Training the sparse encoder (no Dagster): `train_sparse_encoder(...) -> TrainingReport`.

Two paths, one loss definition (sentence-transformers' SparseMarginMSELoss /
SparseMultipleNegativesRankingLoss + FlopsLoss on documents, as SpladeLoss combines them):
- ``freeze_encoder=False``: the library's SparseEncoderTrainer with SpladeLoss around the ranking loss
  (Router columns mapped query -> query side, documents -> document side). The GPU path.
- ``freeze_encoder=True`` (CPU default): the transformer's token outputs are computed once and cached;
  only the MLM head transform and the output bias train. Scores of an inference-free model only need
  the document weights of the batch's query tokens, so each step computes the head on those columns
  (plus a random sample of the vocabulary for an unbiased FLOPS estimate) and hands the embeddings to
  the same loss classes' ``compute_loss_from_embeddings``. Thousands of steps fit in minutes.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sparse_assets.encoder_base import corpus_token_ids, load_token_map
from sparse_assets.records import Document, QDPair
from sparse_assets.sparse_model import (
    SETTINGS_FILE,
    SparseTrainingSettings,
    TrainingReport,
    build_sparse_encoder,
    document_module,
    document_text,
    idf_vector,
    padded_batches,
    prepare_mlm_folder,
    resolve_device,
    token_windows,
    write_idf_json,
)
from sparse_assets.teacher import candidate_lists, dense_encoder, idf_overlap_scores, margin_scale, teacher_scores

Progress = Callable[[int, int, float], None]  # (step, total, loss)
REPORT_FILE = "training_report.json"


def split_pairs(pairs: Sequence[QDPair], fraction: float, seed: int) -> tuple[list[QDPair], list[QDPair]]:
    """Seeded split by positive document (a validation document is never a training positive)."""
    docs = sorted({p["positive_id"] for p in pairs})
    rng = random.Random(seed)
    rng.shuffle(docs)
    held = set(docs[: int(round(len(docs) * fraction))]) if fraction > 0 and len(docs) > 1 else set()
    train = [p for p in pairs if p["positive_id"] not in held]
    val = [p for p in pairs if p["positive_id"] in held]
    return train, val


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_sparse_encoder(
    documents: Sequence[Document],
    pairs: Sequence[QDPair],
    idf: Mapping,
    settings: SparseTrainingSettings,
    out_dir: Path,
    base_folder: Path,
    progress: Progress | None = None,
    teacher: Mapping[tuple[str, str], tuple[list[str], np.ndarray | None]] | None = None,
) -> TrainingReport:
    """Train on `pairs` over `documents` and write a SparseEncoder folder (with idf.json) at `out_dir`.
    `idf` maps base-tokenizer token id (or token string) -> weight (the idf_statistics asset).
    `teacher` (optional, see `compute_teacher`): (query, positive_id) -> (candidate ids, teacher scores)
    computed beforehand, e.g. on a CPU machine for a GPU run without Kiwi/BM25 installed."""
    import torch

    t_start = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    _seed_everything(settings.seed)
    device, dtype = resolve_device(settings.device)
    out_dir = Path(out_dir)
    doc_by_id = {d["id"]: document_text(d) for d in documents}
    pairs = [p for p in pairs if p["positive_id"] in doc_by_id]
    if not pairs:
        raise ValueError("no training pair has its positive document in the corpus")
    train, val = split_pairs(pairs, settings.validation_fraction, settings.seed)
    if not train:
        train, val = list(pairs), []

    work = Path(tempfile.mkdtemp(prefix="sparse-train-"))
    try:
        keep = None
        if settings.trim_vocabulary:
            keep = corpus_token_ids(base_folder, list(doc_by_id.values()) + [p["query"] for p in pairs])
        mlm = prepare_mlm_folder(base_folder, work / "mlm", settings, keep)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(mlm))
        weights = idf_vector(idf, tokenizer, load_token_map(mlm))
        model = build_sparse_encoder(mlm, weights, settings, device=device)

        losses, steps_logged = [], []

        def log(step: int, loss: float) -> None:
            losses.append(float(loss))
            steps_logged.append(step)
            if progress:
                progress(step, settings.steps, float(loss))

        n_neg = 3
        if teacher is None:
            teacher, teacher_scale_used = compute_teacher(documents, train, settings, base_folder, tokenizer, weights, device)
        else:
            teacher_scale_used = "precomputed"
        missing = [p["query"] for p in train if (p["query"], p["positive_id"]) not in teacher]
        if missing:
            raise ValueError(f"the precomputed teacher lacks {len(missing)} training pairs (e.g. {missing[:2]}): recompute it for these pairs")
        cands = [list(teacher[(p["query"], p["positive_id"])][0]) for p in train]
        labels = [teacher[(p["query"], p["positive_id"])][1] for p in train] if settings.loss == "margin_mse" else None
        if labels is not None and any(lab is None for lab in labels):
            raise ValueError("loss margin_mse needs teacher scores for every training pair")
        prepare_seconds = time.perf_counter() - t_start

        t_train = time.perf_counter()
        if settings.freeze_encoder and settings.architecture == "inference_free":
            _train_frozen(model, tokenizer, weights, train, cands, labels, doc_by_id, settings, device, dtype, n_neg, log)
        else:
            _train_trainer(model, train, cands, labels, doc_by_id, settings, device, dtype, n_neg, work, log)
        train_seconds = time.perf_counter() - t_train

        model.eval()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        model.save(str(out_dir))
        if (mlm / "vocab_trim.json").exists():
            shutil.copy(mlm / "vocab_trim.json", out_dir / "vocab_trim.json")
        write_idf_json(out_dir, weights, tokenizer)
        tokenizer.save_pretrained(str(out_dir))
        (out_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = TrainingReport(
        losses=losses,
        loss_steps=steps_logged,
        config={**settings.to_dict(), "teacher_scale_used": teacher_scale_used},
        steps=settings.steps,
        steps_per_second=settings.steps / train_seconds if train_seconds > 0 else 0.0,
        train_seconds=train_seconds,
        prepare_seconds=prepare_seconds,
        device=device,
        dtype=dtype,
        vocab_size=len(weights),
        train_pairs=len(train),
        validation_pairs=len(val),
    )
    if val:
        report.validation.append(validation_scores(out_dir, documents, val, settings))
        report.doc_active_dims = float(report.validation[-1]["doc_active_dims"])
        report.zero_doc_share = float(report.validation[-1]["zero_doc_share"])
    report.wall_seconds = time.perf_counter() - t_start
    report.peak_memory_mb = peak_memory_mb()
    (out_dir / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1))
    return report


def compute_teacher(documents, train, settings: SparseTrainingSettings, base_folder: Path, tokenizer, weights, device: str = "cpu"):
    """(query, positive_id) -> (candidates [positive, negatives..., BM25 hits], teacher scores or None),
    and the teacher scale used. Scores: BM25 + dense e5 ensemble, scaled to the student's margin spread."""
    from sparse_assets.bm25 import KiwiBM25

    doc_by_id = {d["id"]: document_text(d) for d in documents}
    doc_ids = sorted(doc_by_id)
    bm25 = KiwiBM25(doc_ids, [doc_by_id[d] for d in doc_ids])
    cands, bm25_scores = candidate_lists(train, doc_ids, bm25, settings.teacher_candidates, settings.seed)
    labels, scale = None, None
    if settings.loss == "margin_mse":
        dense = None
        if settings.teacher_dense_weight > 0:
            dense = dense_encoder(base_folder, settings.dense_teacher, device=device)
        labels = teacher_scores(train, doc_by_id, cands, bm25_scores, dense, settings.teacher_dense_weight, 1.0)
        scale = settings.teacher_scale
        if scale is None:
            student = idf_overlap_scores(tokenizer, weights, [p["query"] for p in train], doc_by_id, cands)
            scale = margin_scale(labels, student)
        labels = [lab * scale for lab in labels]
    return {(p["query"], p["positive_id"]): (c, labels[i] if labels else None) for i, (p, c) in enumerate(zip(train, cands))}, scale


def validation_scores(model_dir: Path, documents: Sequence[Document], val: Sequence[QDPair], settings: SparseTrainingSettings) -> dict:
    """Validation MRR@10 / NDCG@10 of the model and of the IDF-only baseline on held-out pseudo pairs."""
    from sparse_assets.retrieval import evaluate_model_folder

    queries = [{"id": f"v{i}", "query": p["query"], "positive_id": p["positive_id"]} for i, p in enumerate(val)]
    return evaluate_model_folder(model_dir, documents, queries, max_length=settings.max_length)


# ----------------------------------------------------------------------------- frozen encoder path


class _Head:
    """The MLM head split into transform (trainable) and tied decoder rows + bias."""

    def __init__(self, auto_model):
        if hasattr(auto_model, "cls") and hasattr(auto_model.cls, "predictions"):
            pred = auto_model.cls.predictions
            self.transform = pred.transform
            self.bias = pred.decoder.bias if pred.decoder.bias is not None else pred.bias
        elif hasattr(auto_model, "lm_head") and hasattr(auto_model.lm_head, "dense"):
            head = auto_model.lm_head
            import torch

            act = torch.nn.GELU()
            self.transform = lambda h: head.layer_norm(act(head.dense(h)))
            self._modules = [head.dense, head.layer_norm]
            self.bias = head.bias
        else:
            raise ValueError(
                f"freeze_encoder supports BERT / RoBERTa style MLM heads, not {type(auto_model).__name__}; "
                "set freeze_encoder=False"
            )
        self.embedding = auto_model.get_output_embeddings().weight

    def parameters(self):
        mods = getattr(self, "_modules", None) or [self.transform]
        params = [p for m in mods for p in m.parameters()]
        return params + [self.bias]


def _cache_key(auto_model, texts: Sequence[str], max_length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(json.dumps(auto_model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, p in auto_model.base_model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(float(p.detach().float().sum())).encode())
    h.update(str(max_length).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _cache_hidden(auto_model, tokenizer, texts: Sequence[str], max_length: int, device: str, dtype, batch_size: int = 16, cache_dir: str | None = None):
    """Per text: the base model's final token states for all its windows, concatenated [T, H].
    With `cache_dir`, the states are kept on disk (fp16) keyed by model weights, texts and max_length."""
    import torch

    path = None
    if cache_dir:
        path = Path(cache_dir) / f"hidden-{_cache_key(auto_model, texts, max_length)}.pt"
        if path.exists():
            return [h.to(device=device, dtype=torch.float32) for h in torch.load(path)]
    states = _compute_hidden(auto_model, tokenizer, texts, max_length, device, dtype, batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save([h.to(torch.float16).cpu() for h in states], tmp)
        tmp.replace(path)
    return states


def _compute_hidden(auto_model, tokenizer, texts: Sequence[str], max_length: int, device: str, dtype, batch_size: int = 16):
    import torch

    base = auto_model.base_model
    windows, owner = token_windows(tokenizer, texts, max_length)
    parts: list[list] = [[] for _ in texts]
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
        for idx, ids, mask in padded_batches(windows, batch_size, tokenizer.pad_token_id):
            hidden = base(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            for row, j in enumerate(idx):
                parts[owner[j]].append((j, hidden[row, : len(windows[j])].float().clone()))
    return [torch.cat([h for _, h in sorted(p, key=lambda x: x[0])]) for p in parts]


def _train_frozen(model, tokenizer, weights, train, cands, labels, doc_by_id, settings, device, dtype_name, n_neg, log):
    import torch
    from sentence_transformers.sparse_encoder.losses import FlopsLoss, SparseMarginMSELoss, SparseMultipleNegativesRankingLoss

    dtype = getattr(torch, dtype_name)
    doc_mod, _ = document_module(model)
    auto_model = doc_mod.auto_model
    auto_model.to(device).eval()
    head = _Head(auto_model)
    for p in auto_model.parameters():
        p.requires_grad_(False)
    params = head.parameters()
    for p in params:
        p.requires_grad_(True)

    needed = sorted({d for c in cands for d in c})
    index = {d: i for i, d in enumerate(needed)}
    hidden = _cache_hidden(auto_model, tokenizer, [doc_by_id[d] for d in needed], settings.max_length, device, dtype, cache_dir=settings.hidden_cache_dir)

    q_ids = tokenizer([p["query"] for p in train], add_special_tokens=False, truncation=True, max_length=settings.query_max_length)["input_ids"]
    w = torch.tensor(weights, device=device)
    vocab = len(weights)
    rng = random.Random(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    margin = SparseMarginMSELoss(model)
    mnrl = SparseMultipleNegativesRankingLoss(model, scale=settings.mnrl_scale)
    flops = FlopsLoss(model)
    opt = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    warm = max(1, int(settings.warmup_ratio * settings.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (settings.steps - s) / max(1, settings.steps - warm))))
    order: list[int] = []
    flops_sample = min(settings.flops_vocab_sample, vocab)
    log_every = max(1, settings.steps // 100)
    running = []
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            more = list(range(len(train)))
            rng.shuffle(more)
            order += more
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        picks = []
        for qi in batch:
            negs = list(range(1, len(cands[qi])))
            chosen = rng.sample(negs, min(n_neg, len(negs)))
            while len(chosen) < n_neg:  # pad with repeats so every row has n_neg negatives
                chosen.append(chosen[-1] if chosen else 0)
            picks.append([0] + chosen)
        docs = sorted({index[cands[qi][j]] for qi, row in zip(batch, picks) for j in row})
        slot = {d: i for i, d in enumerate(docs)}
        cols = sorted({t for qi in batch for t in q_ids[qi] if weights[t] > 0})
        sample = torch.randperm(vocab, generator=gen)[:flops_sample].tolist()
        col_t = torch.tensor(cols + sample, device=device, dtype=torch.long)

        # all tokens of the batch's documents in one flat [tokens, H] tensor (no padding); the max over a
        # document's tokens commutes with log1p(relu(.)), so take the segment max of the logits first
        flat = torch.cat([hidden[d] for d in docs])
        owner = torch.repeat_interleave(torch.arange(len(docs), device=device), torch.tensor([len(hidden[d]) for d in docs], device=device))
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            t = head.transform(flat)
            logits = (t @ head.embedding[col_t].T + head.bias[col_t]).float()
        pooled = torch.full((len(docs), logits.shape[1]), -1e4, device=device, dtype=logits.dtype)
        pooled = pooled.scatter_reduce(0, owner[:, None].expand_as(logits), logits, reduce="amax", include_self=True)
        doc_w = torch.log1p(torch.relu(pooled))  # [docs, cols + sample]
        dq = doc_w[:, : len(cols)]
        q_emb = torch.zeros(len(batch), len(cols), device=device)
        col_pos = {c: i for i, c in enumerate(cols)}
        for r, qi in enumerate(batch):
            for tkn in set(q_ids[qi]):
                if tkn in col_pos:
                    q_emb[r, col_pos[tkn]] = w[tkn]
        emb = [q_emb] + [dq[[slot[index[cands[qi][row[j]]]] for qi, row in zip(batch, picks)]] for j in range(1 + n_neg)]
        if settings.loss == "margin_mse":
            lab = torch.tensor(np.stack([labels[qi][row] for qi, row in zip(batch, picks)]), device=device)
            base_loss = margin.compute_loss_from_embeddings(emb, lab)
        else:
            base_loss = mnrl.compute_loss_from_embeddings(emb, None)
        reg = flops.compute_loss_from_embeddings(doc_w[:, len(cols) :]) * (vocab / flops_sample)
        loss = base_loss + settings.document_regularizer_weight * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == settings.steps:
            log(step + 1, float(np.mean(running)))
            running = []
    for p in params:
        p.requires_grad_(True)
    for p in auto_model.parameters():
        p.requires_grad_(True)
    auto_model.to("cpu" if device == "cpu" else device)


# ----------------------------------------------------------------------------- library trainer path


def _train_trainer(model, train, cands, labels, doc_by_id, settings, device, dtype_name, n_neg, work: Path, log):
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseMarginMSELoss, SparseMultipleNegativesRankingLoss, SpladeLoss
    from transformers import TrainerCallback

    rng = random.Random(settings.seed)
    rows: dict[str, list] = {"query": [], "positive": []}
    for j in range(n_neg):
        rows[f"negative_{j + 1}"] = []
    if settings.loss == "margin_mse":
        rows["label"] = []
    for qi, pair in enumerate(train):
        negs = list(range(1, len(cands[qi])))
        chosen = rng.sample(negs, min(n_neg, len(negs)))
        while len(chosen) < n_neg:
            chosen.append(chosen[-1] if chosen else 0)
        rows["query"].append(pair["query"])
        rows["positive"].append(doc_by_id[cands[qi][0]])
        for j, c in enumerate(chosen):
            rows[f"negative_{j + 1}"].append(doc_by_id[cands[qi][c]])
        if labels is not None:
            rows["label"].append([float(labels[qi][0])] + [float(labels[qi][c]) for c in chosen])
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
    mapping = {} if splade else {"query": "query", "positive": "document", **{f"negative_{j + 1}": "document" for j in range(n_neg)}}
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
