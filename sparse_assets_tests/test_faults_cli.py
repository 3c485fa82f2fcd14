"""Faults at the edges the user touches (issue 28): dataset roots given as fsspec URLs, exit codes,
`clear`, `reindex`, `export` into a folder that holds other files, inputs that cost more than their
size, and `search` / `evaluate` on bad arguments."""

from __future__ import annotations

import pytest

from sparse_assets.data.corpus import CorpusError, read_beir_corpus, read_beir_queries

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
