"""The sparse encoder itself (no Dagster): settings, building and loading the sentence-transformers
SparseEncoder (inference-free Router or SPLADE bi-encoder), IDF vectors / idf.json, document windows,
encoding.

Inference-free: query = its tokens weighted by IDF (`SparseStaticEmbedding`, frozen), document =
masked-LM logits -> log1p(relu) -> max over tokens (`Transformer(fill-mask)` + `SpladePooling`) ->
pivoted length normalisation (`PivotedLengthNormalization`) -> plus the document's own pieces,
BM25-saturated (`LexicalFloor`). The MLM head is tied to the input
embeddings; its output bias starts at ``output_bias`` (about -7) so that the untrained model is close
to "each document token marks itself" (near IDF-only).

The model keeps the base encoder's whole vocabulary (tokenizer, embeddings and output head), so a
model moved to another corpus loses no token; only the query side's IDF belongs to a corpus, and
`with_corpus_statistics` recomputes it (and the length pivot) for the documents at hand.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from sparse_assets.bounds import Ge, Gt, Le, Lt, check_bounds
from sparse_assets.encoder.mlm_base import BaseEncoderError, validate_mlm_folder
from sparse_assets.encoder.saturation import document_pieces, mean_length, saturated_documents

IDF_FILE = "idf.json"
QUERY_SCALE_FILE = "query_token_scale.json"  # learned multipliers of the query tokens' IDF
SETTINGS_FILE = "sparse_training.json"
ARCHITECTURES = ("inference_free", "splade")
LOSSES = ("margin_mse", "mnrl")
ACTIVATIONS = ("relu", "log1p_relu")


class SparseModelError(ValueError):
    """A model folder / idf.json that cannot be used, with the file and what to do."""


@dataclass
class SparseTrainingSettings:
    """Every knob of v1/v2 training, defined once (the Dagster config is built from it).

    Defaults were chosen on the two dev sets (KorQuAD 1.0 dev paragraphs and msmarco_ko, their human
    questions; bench/README.md has the runs), never on other question sets."""

    architecture: str = "inference_free"  # | "splade" (bi-encoder: queries through the MLM too)
    loss: str = "margin_mse"  # distillation from the teacher's margins | "mnrl" (InfoNCE with the candidates)
    steps: Annotated[int, Ge(1)] = 3000
    max_epochs: Annotated[float, Gt(0)] | None = 3.0  # fewer steps where 3,000 would pass over the pairs more often (a small corpus)
    batch_size: Annotated[int, Ge(1)] = 8  # training queries per step
    candidates_per_query: Annotated[int, Ge(2)] = 4  # the positive + the teacher's hardest other candidates, per query and step
    learning_rate: Annotated[float, Gt(0)] = 2e-3  # head / bias / length slope (frozen encoder); encoder lr below when not frozen
    encoder_learning_rate: Annotated[float, Ge(0)] = 3e-5
    warmup_ratio: Annotated[float, Ge(0), Le(1)] = 0.05
    max_length: Annotated[int, Ge(8)] = 512  # tokens per document window, the encoder's limit (longer documents are split and max-pooled)
    query_max_length: Annotated[int, Ge(1)] = 64
    seed: Annotated[int, Ge(0)] = 13
    output_bias: float = -7.0
    layers: Annotated[int, Ge(1)] | None = (
        4  # keep the first N transformer layers (None = all; the lower layers' token states are the more lexical)
    )
    freeze_encoder: bool = True  # cache the encoder's token outputs; train the MLM head transform + bias
    document_regularizer_weight: Annotated[float, Ge(0)] = 1e-3  # FLOPS on documents (IDF-aware through the IDF-weighted score)
    regularizer_warmup_ratio: Annotated[float, Ge(0), Le(1)] = 0.1  # the FLOPS weight grows quadratically over this share of the steps
    query_regularizer_weight: Annotated[float, Ge(0)] = 5e-4  # FLOPS on queries (splade architecture only)
    teacher_dense_weight: Annotated[float, Ge(0), Le(1)] = 0.5  # teacher = (1-w) * minmax(BM25) + w * minmax(dense e5), per query
    teacher_scale: Annotated[float, Gt(0)] | None = None  # None = match the spread of the untrained student's margins
    length_slope: Annotated[float, Ge(0), Le(1)] = 0.25  # pivoted length normalisation: weights / (1 - s + s * tokens / mean tokens)
    train_length_slope: bool = True
    validation_fraction: Annotated[float, Ge(0), Lt(1)] = 0.1
    activation: str = "relu"  # SpladePooling: log1p(relu(x)) ; "log1p_relu" = OpenSearch v3's double log
    mnrl_scale: Annotated[float, Gt(0)] = 1.0
    device: str = "auto"  # auto = cuda (bf16) when available, else cpu
    threads: Annotated[int, Ge(1)] | None = None
    query_weight_learning_rate: Annotated[float, Ge(0)] = (
        0.0  # frozen path: > 0 learns a multiplier of each query token's IDF (0 = IDF as is)
    )
    flops_vocab_sample: Annotated[int, Ge(1)] = 128  # frozen path: vocabulary columns sampled per step for the FLOPS estimate
    hidden_cache_dir: str | None = None  # frozen path: keep the encoder's token states on disk between runs
    hidden_cache_limit_gb: Annotated[float, Gt(0)] = 4.0  # frozen path: beyond this, the least recently used token states are deleted
    document_floor: Annotated[float, Ge(0)] = (
        1.0  # inference-free: weight of the document's own pieces (BM25-saturated) under its expansion; 0 = none
    )

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check_bounds(self)

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
    length_slope: float = 0.0
    length_pivot: float = 0.0

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


def idf_vector(idf: Mapping, tokenizer) -> np.ndarray:
    """IDF weights as a vocabulary-sized float32 vector of `tokenizer`. `idf` maps a token id or a
    token string (idf.json) -> weight; tokens outside the vocabulary are dropped, specials get 0."""
    vocab = tokenizer.get_vocab()
    vec = np.zeros(len(vocab), dtype=np.float32)
    for key, weight in idf.items():
        tid = vocab.get(key) if isinstance(key, str) else int(key)
        if tid is not None and 0 <= tid < len(vec):
            vec[tid] = float(weight)
    vec[tokenizer.all_special_ids] = 0.0
    return vec


def _write_token_json(path: Path, values: np.ndarray, ids: np.ndarray, tokenizer) -> Path:
    """{token string: value} of the vocabulary ids `ids` (the format of OpenSearch's idf.json)."""
    token_of = {i: t for t, i in tokenizer.get_vocab().items()}
    path.write_text(json.dumps({token_of[i]: round(float(values[i]), 6) for i in ids if i in token_of}, ensure_ascii=False))
    return path


def _read_token_json(path: Path, tokenizer, allowed_unknown_share: float, fix: str) -> dict[int, float]:
    """{vocabulary id: value} of a token json; an error naming `fix` when more than
    `allowed_unknown_share` of its tokens are not in the tokenizer's vocabulary."""
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = tokenizer.get_vocab()
    unknown = [t for t in data if t not in vocab]
    if unknown and len(unknown) > allowed_unknown_share * max(len(data), 1):
        raise SparseModelError(f"{path}: {len(unknown)} of {len(data)} tokens (e.g. {unknown[:3]}) are not in the model's tokenizer: {fix}")
    return {vocab[t]: float(v) for t, v in data.items() if t in vocab}


def write_idf_json(folder: Path, weights: np.ndarray, tokenizer) -> Path:
    """idf.json (token string -> weight, OpenSearch format) over the whole vocabulary, zeros included.
    OpenSearch's SPARSE_TOKENIZE weighs a token that idf.json lacks 1.0 (ml-commons
    SparseTokenizerModel: ``idf.getOrDefault(token, 1.0f)``), so a token this model weighs 0 (a particle
    piece of the morphology table, a piece the corpus never had) is served as 0 only when written."""
    return _write_token_json(Path(folder) / IDF_FILE, weights, np.arange(len(weights)), tokenizer)


def write_query_token_scale(folder: Path, scale: np.ndarray, tokenizer) -> Path | None:
    """query_token_scale.json (token string -> the multiplier training learned for its IDF), for the
    tokens whose multiplier moved; none when training kept the IDF as it is. A model moved to another
    corpus keeps the multipliers over that corpus's IDF (`with_corpus_statistics`)."""
    moved = np.flatnonzero(np.abs(np.asarray(scale) - 1.0) > 1e-4)
    return _write_token_json(Path(folder) / QUERY_SCALE_FILE, scale, moved, tokenizer) if len(moved) else None


def read_query_token_scale(folder: Path, tokenizer) -> np.ndarray:
    """The vocabulary-sized multipliers of a model folder's query_token_scale.json (ones without it)."""
    scale = np.ones(len(tokenizer.get_vocab()), dtype=np.float32)
    path = Path(folder) / QUERY_SCALE_FILE
    if path.exists():
        for tid, value in _read_token_json(path, tokenizer, 0.0, "it belongs to another model").items():
            scale[tid] = value
    return scale


def read_idf_json(path: Path, tokenizer) -> np.ndarray:
    """Vocabulary-sized weights from an idf.json; a clear error when it belongs to another vocabulary."""
    path = Path(path)
    if not path.exists():
        raise SparseModelError(f"{path} is missing: an inference-free model folder needs its idf.json")
    fix = "this idf.json belongs to another vocabulary; recompute it with the model's tokenizer (materialize idf_statistics for this base encoder)"
    return idf_vector(_read_token_json(path, tokenizer, 0.01, fix), tokenizer)


def corpus_query_weights(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """The query-side weights for a corpus, as a vocabulary-sized vector: the morphology query table
    of `idf_statistics`' default (`morph_idf.corpus_query_weights`: BM25 IDF times each piece's share
    inside Kiwi's content morphemes; no trend boosts) over `texts`. A model trained on the plain IDF
    table (``query_table: idf``) is re-fitted to this table too."""
    from sparse_assets.data.morph_idf import corpus_query_weights as table

    return idf_vector(table(list(texts), tokenizer) if len(texts) else {}, tokenizer)


# ----------------------------------------------------------------------------- building and loading


def prepare_mlm_folder(base_folder: Path, out_dir: Path, settings: SparseTrainingSettings, reset_bias: bool = True) -> Path:
    """The document-side MLM for training: the first `settings.layers` layers, the vocabulary cut to the
    tokenizer's (XLM-R checkpoints carry unused padding rows past it, which the query side does not
    have) and, unless it continues a trained head (`reset_bias=False`, a warm start), the output bias
    set to `settings.output_bias`."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    base_folder = validate_mlm_folder(Path(base_folder))
    out_dir = Path(out_dir)
    kwargs = {"num_hidden_layers": settings.layers} if settings.layers else {}
    model = AutoModelForMaskedLM.from_pretrained(str(base_folder), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    if model.get_output_embeddings() is not None and model.get_output_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    out = model.get_output_embeddings()
    if out is None or getattr(out, "bias", None) is None:
        raise BaseEncoderError(f"{base_folder}: the masked-LM head has no output bias to start from")
    if reset_bias:
        with torch.no_grad():
            out.bias.fill_(settings.output_bias)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def build_sparse_encoder(
    mlm_folder: Path,
    idf_weights: np.ndarray | None,
    settings: SparseTrainingSettings,
    device: str = "cpu",
    length_pivot: float = 1.0,
    length_slope: float | None = None,
):
    """SparseEncoder over a prepared MLM folder: inference-free Router (IDF query side; document side
    MLM + SPLADE max pooling + pivoted length normalisation) or SPLADE bi-encoder."""
    import torch
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer

    from sparse_assets.encoder.length_normalization import PivotedLengthNormalization
    from sparse_assets.encoder.lexical_floor import LexicalFloor

    doc = Transformer(str(mlm_folder), transformer_task="fill-mask", max_seq_length=settings.max_length)
    pooling = SpladePooling(pooling_strategy="max", activation_function=settings.activation)
    if settings.architecture == "splade":
        return SparseEncoder(modules=[doc, pooling], similarity_fn_name="dot", device=device)
    if idf_weights is None:
        raise SparseModelError("the inference-free architecture needs IDF weights for its query side")
    slope = settings.length_slope if length_slope is None else length_slope
    length = PivotedLengthNormalization(slope, length_pivot, trainable=settings.train_length_slope)
    query = SparseStaticEmbedding(tokenizer=doc.tokenizer, weight=torch.tensor(idf_weights, dtype=torch.float32), frozen=True)
    query.max_seq_length = settings.query_max_length
    document = [doc, pooling, length]
    if settings.document_floor > 0:  # its pivot is fitted to the corpus (`fit_document_floor`)
        document.append(LexicalFloor(settings.document_floor, special_ids=doc.tokenizer.all_special_ids))
    router = Router.for_query_document(query_modules=[query], document_modules=document)
    return SparseEncoder(modules=[router], similarity_fn_name="dot", device=device)


def _declared_module_types(folder: Path) -> list[str]:
    """Every module type a saved folder names (modules.json and a Router's router_config.json)."""
    entries = json.loads((folder / "modules.json").read_text())
    types = [e.get("type", "") for e in entries]
    for entry in entries:
        router = folder / entry.get("path", "") / "router_config.json"
        if router.exists():
            types += list(json.loads(router.read_text()).get("types", {}).values())
    return types


def load_sparse_encoder(folder: Path, device: str | None = None):
    """Load a saved model folder. Module types outside sentence-transformers and this project are
    refused (loading them would import code the folder chose); weights come from safetensors."""
    from sentence_transformers.sparse_encoder import SparseEncoder

    from sparse_assets.encoder.length_normalization import PivotedLengthNormalization
    from sparse_assets.encoder.lexical_floor import LexicalFloor

    folder = Path(folder)
    if not (folder / "modules.json").exists():
        raise SparseModelError(
            f"{folder} has no modules.json: not a saved SparseEncoder folder (train one with the "
            "neural_sparse_v1_model asset, or point --model at its folder)"
        )
    own = {f"{c.__module__}.{c.__name__}": c for c in (PivotedLengthNormalization, LexicalFloor)}
    foreign = [t for t in _declared_module_types(folder) if t not in own and not t.startswith("sentence_transformers.")]
    if foreign:
        raise SparseModelError(
            f"{folder} names module types {foreign} that are neither sentence-transformers' nor this project's: refusing to import them"
        )
    if any(folder.rglob("pytorch_model.bin")):
        raise SparseModelError(f"{folder} holds pickled weights (pytorch_model.bin): only safetensors are loaded; re-save the model")
    model = SparseEncoder._load_with_module_classes(str(folder), own, device=device or "cpu")
    if is_inference_free(model):
        model.query_token_scale = read_query_token_scale(folder, model_tokenizer(model))
    return model


def with_corpus_statistics(model, texts: Sequence[str]):
    """The model re-fitted to a corpus: query-side table (times the multipliers training learned, see
    `write_query_token_scale`) and the length pivots (length normalisation, document floor) computed
    over `texts` (what `idf_statistics` and training do for the training corpus). The masked-LM head's
    weights are unchanged."""
    tokenizer = model_tokenizer(model)
    if is_inference_free(model):
        set_query_weights(model, corpus_query_weights(tokenizer, texts) * getattr(model, "query_token_scale", 1.0))
    length = document_length_normalization(model)
    if length is not None and len(texts):
        windows, _ = token_windows(tokenizer, texts, document_module(model)[0].max_seq_length)
        length.pivot = float(sum(len(w) for w in windows)) / len(texts)
    fit_document_floor(model, texts)
    return model


def document_floor(model):
    """The document side's LexicalFloor, or None."""
    from sparse_assets.encoder.lexical_floor import LexicalFloor

    return next((m for m in document_modules(model) if isinstance(m, LexicalFloor)), None)


def fit_document_floor(model, texts: Sequence[str]) -> None:
    """The floor's length pivot: the mean piece count of `texts`."""
    floor = document_floor(model)
    if floor is not None and len(texts):
        floor.pivot = mean_length(document_pieces(model_tokenizer(model), texts))


def document_floor_matrix(model, texts: Sequence[str]):
    """CSR [texts, vocab]: the model's floor over every piece of each text (all its windows:
    `LexicalFloor` sees one), or None for a model without one."""
    floor = document_floor(model)
    if floor is None:
        return None
    pieces = document_pieces(model_tokenizer(model), texts)
    return floor.weight * saturated_documents(pieces, model.get_embedding_dimension(), floor.pivot)


def add_document_floor(model, texts: Sequence[str], matrix):
    """CSR `matrix` (document vectors of `texts`) plus the model's floor (`document_floor_matrix`)."""
    import scipy.sparse as sp

    floor = document_floor_matrix(model, texts)
    return matrix if floor is None else sp.csr_matrix(matrix + floor, dtype=np.float32)


def folder_tokenizer(folder: Path):
    """The tokenizer of a model folder: top level, else the document Transformer's subfolder."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    candidates = [folder] + sorted(p for p in folder.glob("*Transformer*") if p.is_dir())
    for c in candidates:
        if (c / "tokenizer.json").exists() or (c / "vocab.txt").exists():
            return AutoTokenizer.from_pretrained(str(c))
    raise SparseModelError(f"{folder} has no tokenizer (tokenizer.json): save the tokenizer beside the model")


def document_modules(model) -> list:
    """The document side's modules: [transformer, pooling, (length normalisation)]."""
    from sentence_transformers.sparse_encoder.modules import Router

    first = model[0]
    return list(first.sub_modules["document"]) if isinstance(first, Router) else list(model)


def document_module(model):
    """(transformer module, pooling module) of the document side."""
    mods = document_modules(model)
    return mods[0], mods[1]


def document_length_normalization(model):
    """The document side's PivotedLengthNormalization, or None."""
    from sparse_assets.encoder.length_normalization import PivotedLengthNormalization

    return next((m for m in document_modules(model) if isinstance(m, PivotedLengthNormalization)), None)


def model_tokenizer(model):
    return document_module(model)[0].tokenizer


def is_inference_free(model) -> bool:
    from sentence_transformers.sparse_encoder.modules import Router

    return isinstance(model[0], Router)


def query_weights(model) -> np.ndarray | None:
    """The IDF weight of every vocabulary id on the query side of an inference-free model (else None)."""
    if not is_inference_free(model):
        return None
    return model[0].sub_modules["query"][0].weight.detach().float().cpu().numpy()


def set_query_weights(model, weights: np.ndarray) -> None:
    """Replace the query-side token weights of an inference-free model (learned query weights)."""
    import torch

    module = model[0].sub_modules["query"][0]
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weights, dtype=module.weight.dtype))


class MlmHead:
    """The masked-LM head of a document transformer split into its transform and its tied decoder
    rows + bias, so that logits can be computed for a subset of the vocabulary (the columns a batch
    of queries uses): the full 250k-token head is what a CPU cannot afford per token."""

    def __init__(self, auto_model):
        import torch

        if hasattr(auto_model, "cls") and hasattr(auto_model.cls, "predictions"):  # BERT
            pred = auto_model.cls.predictions
            self.modules = [pred.transform]
            self.transform = pred.transform
            self.bias = pred.decoder.bias if pred.decoder.bias is not None else pred.bias
        elif hasattr(auto_model, "lm_head") and hasattr(auto_model.lm_head, "dense"):  # RoBERTa / XLM-R
            head = auto_model.lm_head
            self.modules = [head.dense, head.layer_norm]
            self.transform = lambda h: head.layer_norm(torch.nn.functional.gelu(head.dense(h)))
            self.bias = head.bias
        else:
            raise SparseModelError(
                f"the frozen-encoder path supports BERT / RoBERTa style MLM heads, not {type(auto_model).__name__}; "
                "set freeze_encoder=False"
            )
        self.encoder = auto_model.base_model
        self.embedding = auto_model.get_output_embeddings().weight

    def parameters(self) -> list:
        return [p for m in self.modules for p in m.parameters()] + [self.bias]

    def logits(self, transformed, columns):
        """[tokens, len(columns)] logits of already transformed token states."""
        return transformed @ self.embedding[columns].T + self.bias[columns]


class IdfQueryEncoder:
    """The query side of an inference-free model without a forward pass: the query's distinct
    tokens (the query module's own tokenizer, no special tokens, truncated like it) with their IDF
    weights. The same vectors as ``SparseEncoder.encode_query``, at a fraction of its latency."""

    def __init__(self, tokenizer, weights: np.ndarray):
        self.tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer  # the Rust tokenizer: no per-call Python wrapping
        self.weights = np.asarray(weights, dtype=np.float32)

    @classmethod
    def of(cls, model) -> IdfQueryEncoder | None:
        weights = query_weights(model)
        return None if weights is None else cls(model[0].sub_modules["query"][0].tokenizer, weights)

    def terms(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary ids, IDF weights) of the query's distinct tokens with a weight."""
        ids = self._backend.encode(query, add_special_tokens=False).ids[: self.tokenizer.model_max_length]
        distinct = np.unique(np.asarray(ids, dtype=np.int64))
        weights = self.weights[distinct]
        keep = weights != 0
        return distinct[keep], weights[keep]

    def encode(self, queries: Sequence[str]):
        """scipy CSR [n_queries, vocab]."""
        import scipy.sparse as sp

        pairs = [self.terms(q) for q in queries]
        indptr = np.cumsum([0] + [len(ids) for ids, _ in pairs])
        ids = np.concatenate([ids for ids, _ in pairs]) if pairs else np.zeros(0, np.int64)
        weights = np.concatenate([w for _, w in pairs]) if pairs else np.zeros(0, np.float32)
        return sp.csr_matrix((weights, ids, indptr), shape=(len(queries), len(self.weights)))


def window_spans(word_starts: Sequence[bool], budget: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `budget` tokens that cover all tokens in order; a cut moves
    back to a word start when there is one in the second half of the window."""
    spans, start, n = [], 0, len(word_starts)
    while start < n:
        end = min(start + budget, n)
        if end < n:
            cut = end
            while cut > start + budget // 2 and not word_starts[cut]:
                cut -= 1
            end = cut if cut > start + budget // 2 else end
        spans.append((start, end))
        start = end
    return spans or [(0, 0)]


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a text (XLM-R: <s> ... </s>)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(inner) + 1):
        if full[i : i + len(inner)] == inner:
            return full[:i], full[i + len(inner) :]
    raise SparseModelError(f"cannot tell the special tokens of {type(tokenizer).__name__} apart from the text")


def word_start_table(tokenizer) -> np.ndarray:
    """For every vocabulary id: does the token begin a word (SentencePiece "▁")?"""
    return np.array([t.startswith("▁") for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))])


def token_windows(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[np.ndarray], list[int]]:
    """Each text tokenized once and cut into windows of at most `max_length` tokens, special
    tokens included, so that all of a long text is encoded; returns (windows, index of the text of
    each window). A text that fits is one window: exactly the tokenizer's ids for it."""
    prefix, suffix = special_token_frame(tokenizer)
    budget = max(max_length - len(prefix) - len(suffix), 4)
    word_start = word_start_table(tokenizer)
    token_ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if len(texts) else []
    windows, owner = [], []
    for i, ids in enumerate(token_ids):
        ids = np.asarray(ids, dtype=np.int64)
        for a, b in window_spans(word_start[ids], budget):
            windows.append(np.concatenate([prefix, ids[a:b], suffix]).astype(np.int64))
            owner.append(i)
    return windows, owner


def padded_batches(windows: Sequence[np.ndarray], batch_size: int, pad_id: int):
    """(window indices, input_ids, attention_mask) batches, longest windows first (less padding)."""
    import torch

    order = np.argsort([-len(w) for w in windows], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids = np.full((len(idx), len(windows[idx[0]])), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, j in enumerate(idx):
            ids[row, : len(windows[j])] = windows[j]
            mask[row, : len(windows[j])] = 1
        yield idx, torch.from_numpy(ids), torch.from_numpy(mask)


def document_text(doc: Mapping) -> str:
    title = doc.get("title") or ""
    return f"{title} {doc['text']}".strip() if title and not doc["text"].startswith(title) else doc["text"]


def splade_activation(pooling):
    """log1p(relu(x)) (or OpenSearch v3's log1p(log1p(relu(x)))) of the document side's SpladePooling."""
    import torch

    if pooling.pooling_strategy != "max" or pooling.activation_function not in ACTIVATIONS:
        raise SparseModelError(
            f"document pooling {pooling.pooling_strategy!r} with {pooling.activation_function!r}: only SPLADE "
            "max pooling with relu or log1p_relu is supported (retrain, or convert the model)"
        )
    if pooling.activation_function == "relu":
        return lambda x: torch.log1p(torch.relu(x))
    return lambda x: torch.log1p(torch.log1p(torch.relu(x)))


COLUMN_CHUNK = 16384  # vocabulary columns per logits block: bounds memory with a 250k-token head


def encode_documents(model, texts: Sequence[str], max_length: int | None = None, batch_size: int | None = None, vocabulary=None):
    """scipy CSR [n_docs, vocab]: each text tokenized once and cut into windows of `max_length`
    tokens, windows encoded in length-sorted batches and max-pooled per text, then divided by the
    model's length normalisation (with the text's token count over all its windows), plus its document
    floor over all the text's pieces (`add_document_floor`). The SPLADE max
    is taken over each window's raw logits and only then activated (log1p(relu) is monotonic): the
    vectors of SparseEncoder.encode_document for texts that fit one window.

    `vocabulary` (token ids) computes the weights of those columns only: exact for every query whose
    tokens it holds (no other column enters a score), at a fraction of the full head's cost. Pass the
    tokens of the corpus and the queries to evaluate (`retrieval.evaluation_vocabulary`); a query
    token that no document holds has no IDF, so it scores nothing either way.
    `batch_size`: windows per forward pass (default 8 on a CPU, 64 on a GPU)."""
    import scipy.sparse as sp
    import torch

    doc_mod, pooling = document_module(model)
    activate = splade_activation(pooling)
    length = document_length_normalization(model)
    tokenizer = doc_mod.tokenizer
    head = MlmHead(doc_mod.auto_model)
    dim = model.get_embedding_dimension()
    columns = torch.arange(dim) if vocabulary is None else torch.as_tensor(np.unique(np.asarray(vocabulary, dtype=np.int64)))
    columns = columns.to(model.device)
    windows, owner = token_windows(tokenizer, texts, max_length or doc_mod.max_seq_length)
    owner = np.asarray(owner, dtype=np.int64)
    tokens = np.bincount(owner, weights=[len(w) for w in windows], minlength=len(texts)) if len(windows) else np.zeros(len(texts))
    batch_size = batch_size or (8 if model.device.type == "cpu" else 64)
    rows, cols, vals = [], [], []
    with torch.inference_mode():
        for idx, ids, mask in padded_batches(windows, batch_size, tokenizer.pad_token_id):
            ids, mask = ids.to(model.device), mask.to(model.device)
            states = head.transform(head.encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
            padding = (mask == 0).unsqueeze(-1)
            pooled = torch.cat(
                [head.logits(states, chunk).masked_fill(padding, float("-inf")).amax(dim=1) for chunk in columns.split(COLUMN_CHUNK)], dim=1
            )
            pooled = activate(pooled.float())
            r, c = pooled.nonzero(as_tuple=True)
            rows.append(owner[idx][r.cpu().numpy()])
            cols.append(columns[c].cpu().numpy())
            vals.append(pooled[r, c].cpu().numpy())
    matrix = sp.csr_matrix((len(texts), dim), dtype=np.float32)
    if rows:  # several windows of one document are max-pooled (not summed)
        matrix = _max_pool_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (len(texts), dim))
    if length is not None:
        divisor = length.factor(torch.from_numpy(tokens).float()).detach().numpy()
        matrix = sp.diags((1.0 / divisor).astype(np.float32)) @ matrix
    return add_document_floor(model, texts, sp.csr_matrix(matrix, dtype=np.float32))


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
    """scipy CSR [n_queries, vocab] from the model's query side (IDF bag: tokenizer + lookup; SPLADE: a forward pass)."""
    import scipy.sparse as sp
    import torch

    idf_encoder = IdfQueryEncoder.of(model)
    if idf_encoder is not None:
        return idf_encoder.encode(queries)
    dim = model.get_embedding_dimension()
    if not queries:
        return sp.csr_matrix((0, dim), dtype=np.float32)
    with torch.no_grad():
        emb = model.encode_query(list(queries), convert_to_tensor=True, convert_to_sparse_tensor=True, batch_size=batch_size)
    emb = emb.coalesce().cpu()
    r, c = emb.indices().numpy()
    return sp.csr_matrix((emb.values().float().numpy(), (r, c)), shape=(len(queries), dim))
