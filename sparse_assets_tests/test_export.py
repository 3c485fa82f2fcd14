"""OpenSearch packages: TorchScript parity with the Python model, zip contents, register JSON."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparse_assets.encoder.sparse_model import SparseModelError, load_sparse_encoder, query_weights
from sparse_assets.export import export_opensearch
from sparse_assets_tests.sparse_helpers import trained_tiny_model


@pytest.fixture(scope="module")
def tiny(base_encoder_dir, tmp_path_factory):
    return trained_tiny_model(base_encoder_dir, tmp_path_factory.mktemp("tiny"))


def test_export_packages_and_torchscript_parity(tiny, tmp_path):
    import torch
    from transformers import PreTrainedTokenizerFast

    folder, _, docs, _, _ = tiny
    result = export_opensearch(folder, tmp_path / "out", name="ko-sparse")
    enc, tok_pkg = result["SPARSE_ENCODING"], result["SPARSE_TOKENIZE"]
    assert sorted(zipfile.ZipFile(enc["zip"]).namelist()) == ["ko-sparse.pt", "tokenizer.json"]
    assert sorted(zipfile.ZipFile(tok_pkg["zip"]).namelist()) == ["idf.json", "tokenizer.json"]
    for info in (enc, tok_pkg):
        register = json.loads(Path(info["json"]).read_text())
        data = Path(info["zip"]).read_bytes()
        assert register["model_content_hash_value"] == hashlib.sha256(data).hexdigest() == info["sha256"]
        assert register["model_content_size_in_bytes"] == len(data)
        assert register["model_format"] == "TORCH_SCRIPT"
    assert json.loads(Path(enc["json"]).read_text())["function_name"] == "SPARSE_ENCODING"

    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(enc["zip"]).extractall(unpacked)
    traced = torch.jit.load(str(unpacked / "ko-sparse.pt"))
    tok = PreTrainedTokenizerFast(tokenizer_file=str(unpacked / "tokenizer.json"), pad_token="<pad>")
    texts = [docs[0]["text"][:200], docs[1]["text"][:120], "짧은 문서"]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        exported = traced(batch["input_ids"], batch["attention_mask"])
    model = load_sparse_encoder(folder)
    python = model.encode_document(texts, convert_to_tensor=True)
    python = (python.to_dense() if python.is_sparse else python)[:, : len(tok.get_vocab())]  # past it: the MLM's padding rows
    assert exported.shape == python.shape == (3, len(tok.get_vocab()))
    assert torch.allclose(exported, python, atol=1e-4)
    assert (exported > 0).sum(dim=1).min() > 0

    # same content, same hash
    again = export_opensearch(folder, tmp_path / "out2", name="ko-sparse")
    assert again["SPARSE_TOKENIZE"]["sha256"] == tok_pkg["sha256"]


def test_export_for_another_corpus_writes_that_corpus_idf(tiny, tmp_path):
    from sparse_assets_tests.korquad_data import korquad_records

    folder, *_ = tiny
    texts = [d["text"] for d in korquad_records(2, start=20)[0]]
    result = export_opensearch(folder, tmp_path / "out", name="moved", corpus_texts=texts)
    with zipfile.ZipFile(result["SPARSE_TOKENIZE"]["zip"]) as zf:
        idf = json.loads(zf.read("idf.json"))
    trained = json.loads((folder / "idf.json").read_text())
    assert sum(1 for t, w in idf.items() if w > 0 and trained[t] == 0) > 100  # the target corpus's own tokens get weights
    assert idf != trained


def test_idf_json_lists_the_whole_vocabulary_so_that_opensearch_serves_zeros_as_zeros(tiny):
    """OpenSearch weighs a token missing from idf.json 1.0 (ml-commons SparseTokenizerModel), so the
    model's idf.json lists every token: the pieces the corpus never had and the particle 의, which the
    morphology table weighs down, are served as the model scores them."""
    from sparse_assets.encoder.sparse_model import folder_tokenizer, read_idf_json

    folder, *_ = tiny
    idf = json.loads((folder / "idf.json").read_text())
    tokenizer = folder_tokenizer(folder)
    assert len(idf) == len(tokenizer.get_vocab())
    assert sum(1 for w in idf.values() if w == 0) > len(idf) / 2  # never in the corpus: 0, not OpenSearch's 1.0
    assert idf["의"] < 0.01 * max(idf.values())
    assert sum(1 for w in idf.values() if w > 1.0) > 100  # the corpus's content pieces keep their IDF
    np.testing.assert_allclose(read_idf_json(folder / "idf.json", tokenizer), query_weights(load_sparse_encoder(folder)), atol=1e-5)


def test_export_needs_idf_json(tiny, tmp_path):
    import shutil

    folder, *_ = tiny
    copy = tmp_path / "no_idf"
    shutil.copytree(folder, copy)
    (copy / "idf.json").unlink()
    with pytest.raises(SparseModelError, match="idf.json"):
        export_opensearch(copy, tmp_path / "out")


def test_export_keeps_what_it_did_not_make_and_never_overwrites_another_export(tiny, tmp_path):
    folder, *_ = tiny
    out = tmp_path / "out"
    (out / ".staging/sub").mkdir(parents=True)  # the user's own hidden folder, with a folder inside
    (out / ".staging/notes.txt").write_text("mine")
    v1 = export_opensearch(folder, out, name="v1")
    assert (out / ".staging/notes.txt").read_text() == "mine" and (out / ".staging/sub").is_dir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) == {
        "v1-sparse_encoding.zip",
        "v1-sparse_tokenize.zip",
        "register_sparse_encoding.json",
        "register_sparse_tokenize.json",
    }
    with pytest.raises(FileExistsError, match="register_sparse_encoding.json belongs to another export \\(v1-sparse_encoding\\).*--force"):
        export_opensearch(folder, out, name="v2")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before and sorted(
        p.name for p in out.iterdir() if p.is_dir()
    ) == [".staging"]
    assert (
        export_opensearch(folder, out, name="v1")["SPARSE_TOKENIZE"]["sha256"] == v1["SPARSE_TOKENIZE"]["sha256"]
    )  # the same export again
    v1_zip = (out / "v1-sparse_encoding.zip").read_bytes()  # (traced again: TorchScript bytes differ run to run)
    v2 = export_opensearch(folder, out, name="v2", force=True)
    assert json.loads(Path(v2["SPARSE_ENCODING"]["json"]).read_text())["name"] == "v2-sparse_encoding"
    assert (out / "v1-sparse_encoding.zip").read_bytes() == v1_zip


def test_a_failed_export_leaves_its_folder_as_it_was(tiny, tmp_path, monkeypatch):
    import sparse_assets.export

    folder, *_ = tiny
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def broken_trace(model, out_file, max_length=128):
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(sparse_assets.export, "trace_document_encoder", broken_trace)
    with pytest.raises(RuntimeError, match="tracing failed"):
        export_opensearch(folder, out, name="ko")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(RuntimeError, match="tracing failed"):
        export_opensearch(folder, tmp_path / "new/out", name="ko")
    assert not (tmp_path / "new/out").exists()
