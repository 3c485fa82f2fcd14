"""Faults at the edges the user touches (issue 28): dataset roots given as fsspec URLs, exit codes,
`clear`, `reindex`, `export` into a folder that holds other files, inputs that cost more than their
size, and `search` / `evaluate` on bad arguments."""

from __future__ import annotations

import json
import uuid

import pytest
from upath import UPath

from sparse_assets.cli import main
from sparse_assets.data import corpus, korean
from sparse_assets.data.corpus import CorpusError, read_beir_corpus, read_beir_queries
from sparse_assets.store.storage import atomic_write_json, read_index, record_artifact
from sparse_assets_tests.korquad_data import KORQUAD_DEV

# ------------------------------------------------------------------------------ a dataset root as a URL


@pytest.fixture
def memory_root():
    """A dataset root on fsspec's in-memory filesystem with two recorded artifacts."""
    root = UPath(f"memory://sparse-assets-{uuid.uuid4().hex[:8]}/dataset")
    for relative, value in [("base_model/documents.json", [{"id": "d1"}]), ("llm_generated/enhanced_synonyms.json", {"학교": ["school"]})]:
        atomic_write_json(root / relative, value)
        record_artifact(root, relative.split("/")[1].split(".")[0], relative, "run-1")
    yield root
    root.fs.rm(root.parent.path, recursive=True)


def test_the_cli_works_on_a_memory_root_as_the_io_managers_do(memory_root, capsys):
    url = str(memory_root)
    assert main(["--dataset", url, "summary"]) == 0
    out = capsys.readouterr().out
    assert f"dataset: {url}" in out and "| base_model | documents.json | documents |" in out and "no artifacts yet" not in out
    assert main(["--dataset", url, "check", "base_model/documents.json"]) == 0
    atomic_write_json(memory_root / "base_model/documents.json", [{"id": "d2"}])
    assert main(["--dataset", url, "check", "base_model/documents.json"]) == 1
    assert f"modified: {url}/base_model/documents.json" in capsys.readouterr().out
    assert main(["--dataset", url, "accept", "base_model/documents.json"]) == 0
    assert main(["--dataset", url, "check", "base_model/documents.json"]) == 0
    assert main(["--dataset", url, "clear", "llm_generated", "--yes"]) == 0
    assert f"deleted {url}/llm_generated (1 metadata entries removed)" in capsys.readouterr().out
    assert not (memory_root / "llm_generated").exists() and set(read_index(memory_root)) == {"documents"}
    assert main(["--dataset", url, "summary"]) == 0


# ------------------------------------------------------------------- inputs that cost more than their size


@pytest.mark.parametrize("reader", [read_beir_corpus, read_beir_queries])
def test_a_beir_line_nested_too_deep_names_the_file_and_the_line(tmp_path, reader):
    path = tmp_path / "lines.jsonl"
    path.write_text('{"_id": "1", "text": "첫 줄"}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=f"{path}, line 2: not valid JSON \\(nested too deeply"):
        reader(path)


def test_a_beir_line_with_a_number_too_long_to_read_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": 1' + "0" * 5000 + ', "text": "본문"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=f"{path}, line 1: not valid JSON"):
        read_beir_corpus(path)


class _CountingText(str):
    """A str whose slices and strips are again _CountingText, counting every character they copy."""

    copied = 0

    def __getitem__(self, key):
        part = _CountingText(super().__getitem__(key))
        _CountingText.copied += len(part)
        return part

    def strip(self, chars=None):
        part = _CountingText(super().strip(chars))
        _CountingText.copied += len(part)
        return part


def test_splitting_a_long_document_copies_each_character_a_bounded_number_of_times():
    """Linear in the length: copying what is left after every piece made 50 MB take 115 s."""
    text = " ".join(["한국어 문장입니다"] * 40_000)  # 360,000 characters, 90 pieces of 4,000
    _CountingText.copied = 0
    pieces = corpus._split_long(_CountingText(text), 4000)
    assert len(pieces) >= len(text) // 4000
    assert _CountingText.copied <= 3 * len(text), f"{_CountingText.copied} characters copied to split {len(text)}"


def _split_long_as_before(text: str, max_chars: int) -> list[str]:
    """The splitter as it was before it was made linear: the reference for its output."""
    pieces = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        cut = cut if cut > max_chars // 2 else max_chars
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    return [*pieces, text] if text else pieces


def test_splitting_gives_the_same_pieces_as_before():
    data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
    article = " ".join(p["context"] for p in data["data"][0]["paragraphs"])
    texts = [
        corpus.normalize_text(article),
        "가" * 9000,  # no space at all: hard cuts
        " ".join(["가" * 2500, "나" * 100, "다" * 5000, "라"]),  # a space too early to cut at, then none
        "가나다 " * 1333 + "끝",  # a space right at the limit
        "짧은 문서",
    ]
    for text in texts:
        for max_chars in (100, 700, 4000):
            assert corpus._split_long(text, max_chars) == _split_long_as_before(text, max_chars)


@pytest.mark.parametrize("text", ["한국어 문장입니다", "Korean 한국어 123 ²³ _ 漢字", "12345 !!", "", "ㄱㄴㄷ abc"])
def test_the_hangul_ratio_is_the_share_of_letters_it_was(text):
    letters = [c for c in text if korean._LETTER.match(c) and not c.isdigit()]  # as it was computed before
    expected = sum(1 for c in letters if korean._HANGUL.match(c)) / len(letters) if letters else 0.0
    assert korean.hangul_ratio(text) == expected
