"""OpenSearch ML Commons packages for a trained model folder (no Dagster).

- SPARSE_ENCODING zip: ``<name>.pt`` (TorchScript: input_ids, attention_mask -> [batch, vocab] document
  weights over the full vocabulary, log1p(relu(MLM logits)) max-pooled over tokens, divided by the
  pivoted length normalisation of the model, plus its lexical floor) + ``tokenizer.json``;
- SPARSE_TOKENIZE zip: ``tokenizer.json`` + ``idf.json`` (the inference-free query side: the model's,
  or with ``corpus_texts`` the IDF of the target corpus, which is what OpenSearch should weight by);
- ``register_<function>.json`` per zip: the body of ``POST /_plugins/_ml/models/_register`` with the zip's
  sha256 (``model_content_hash_value``) and size (``model_content_size_in_bytes``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from sparse_assets.encoder.sparse_model import (
    SparseModelError,
    document_floor,
    document_length_normalization,
    document_module,
    folder_tokenizer,
    load_sparse_encoder,
    model_tokenizer,
    query_weights,
    with_corpus_statistics,
    write_idf_json,
)

FUNCTIONS = ("SPARSE_ENCODING", "SPARSE_TOKENIZE")


def _module(mlm, slope: float, pivot: float, vocabulary: int, floor=None):
    """`floor`: the model's LexicalFloor (or None), added after the length normalisation as in the model."""
    import torch

    class SparseDocumentEncoder(torch.nn.Module):
        def __init__(self, mlm, floor):
            super().__init__()
            self.mlm = mlm
            self.floor = floor

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask)[0]
            weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
            tokens = attention_mask.sum(dim=1, keepdim=True).to(logits.dtype)
            pooled = weights.max(dim=1).values[:, :vocabulary]  # the MLM's padding rows past the vocabulary have no token
            pooled = pooled / (1.0 - slope + slope * tokens / pivot)
            if self.floor is None:
                return pooled
            return pooled + self.floor.weights(input_ids, attention_mask, vocabulary).to(pooled.dtype)

    return SparseDocumentEncoder(mlm, floor)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trace_document_encoder(model, out_file: Path, max_length: int = 128):
    """TorchScript of a loaded model's document side; returns the traced module (saved at `out_file`)."""
    import torch

    doc, pooling = document_module(model)
    if getattr(pooling, "activation_function", "relu") != "relu":
        raise SparseModelError("export supports SpladePooling activation 'relu' only")
    length = document_length_normalization(model)
    mlm = doc.auto_model.eval()
    mlm.config.torchscript = True
    tok = doc.tokenizer
    wrapper = _module(mlm, length.slope if length else 0.0, length.pivot if length else 1.0, len(tok), document_floor(model)).eval()
    example = tok(["예시 문서 텍스트 입니다", "두 번째"], padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (example["input_ids"], example["attention_mask"]), strict=False, check_trace=False)
    traced.save(str(out_file))
    return traced


def export_opensearch(
    model_dir: Path, out_dir: Path, name: str | None = None, version: str = "1.0.0", corpus_texts=None, force: bool = False
) -> dict:
    """Write both zips and their register JSON into `out_dir`; returns {function: {zip, json, sha256, size}}.
    `corpus_texts`: the documents of the target index; idf.json and the length pivot are computed from them.
    Everything is made in a fresh hidden folder inside `out_dir` and renamed into place at the end, so a
    failure leaves `out_dir` as it was; a register JSON of another export (another name) is replaced
    only with `force`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    name = name or model_dir.name
    idf_path = model_dir / "idf.json"
    if not idf_path.exists():
        raise SparseModelError(f"{idf_path} is missing: export needs the model's idf.json (train with the inference-free architecture)")
    tokenizer = folder_tokenizer(model_dir)
    from sparse_assets.encoder.sparse_model import read_idf_json

    read_idf_json(idf_path, tokenizer)  # validates that idf.json matches the vocabulary
    if not force:
        _refuse_other_exports(out_dir, name)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".export-{name}-"))
    try:
        result = _write_packages(model_dir, tokenizer, staging, name, version, corpus_texts, idf_path)
        for info in result.values():
            for kind in ("zip", "json"):
                info[kind] = str(Path(info[kind]).replace(out_dir / Path(info[kind]).name))
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _refuse_other_exports(out_dir: Path, name: str) -> None:
    """Raise FileExistsError when a register JSON in `out_dir` belongs to an export of another name."""
    for function in FUNCTIONS:
        path = out_dir / f"register_{function.lower()}.json"
        if not path.exists():
            continue
        try:
            theirs = json.loads(path.read_text()).get("name")
        except (ValueError, AttributeError):
            theirs = None
        if theirs != f"{name}-{function.lower()}":
            raise FileExistsError(
                f"{path} belongs to another export ({theirs or 'not a register body'}): export into another --out folder, "
                "or pass --force to replace it (Python: force=True)"
            )


def _write_packages(model_dir: Path, tokenizer, staging: Path, name: str, version: str, corpus_texts, idf_path: Path) -> dict:
    """Both zips and their register JSON, written in `staging`."""
    tokenizer_dir = staging / "tokenizer"
    tokenizer.save_pretrained(str(tokenizer_dir))
    model = load_sparse_encoder(model_dir)
    if corpus_texts is not None:
        model = with_corpus_statistics(model, corpus_texts)
        idf_path = write_idf_json(tokenizer_dir, query_weights(model), model_tokenizer(model))
    pt = tokenizer_dir / f"{name}.pt"
    trace_document_encoder(model, pt)
    packages = {
        "SPARSE_ENCODING": [(pt, pt.name), (tokenizer_dir / "tokenizer.json", "tokenizer.json")],
        "SPARSE_TOKENIZE": [(tokenizer_dir / "tokenizer.json", "tokenizer.json"), (idf_path, "idf.json")],
    }
    result = {}
    for function, files in packages.items():
        zip_path = staging / f"{name}-{function.lower()}.zip"
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src, arc in files:
                info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))  # fixed time: same content, same hash
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, Path(src).read_bytes())
        digest, size = sha256_file(zip_path), zip_path.stat().st_size
        register = {
            "name": f"{name}-{function.lower()}",
            "version": version,
            "description": f"Korean inference-free neural sparse model ({function}), exported by sparse_assets",
            "model_format": "TORCH_SCRIPT",
            "function_name": function,
            "model_content_hash_value": digest,
            "model_content_size_in_bytes": size,
            "url": zip_path.name,
            "model_config": {
                "model_type": "bert",
                "embedding_dimension": len(tokenizer.get_vocab()),
                "framework_type": "huggingface_transformers",
            },
        }
        json_path = staging / f"register_{function.lower()}.json"
        json_path.write_text(json.dumps(register, indent=1))
        result[function] = {"zip": str(zip_path), "json": str(json_path), "sha256": digest, "size": size}
    return result
