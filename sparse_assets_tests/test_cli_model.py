"""`evaluate`, `search`, `export` verbs on a tiny BEIR folder written here from KorQuAD dev."""

from __future__ import annotations

import json
import shutil

import pytest
from upath import UPath

from sparse_assets.cli import main
from sparse_assets.store.storage import record_artifact
from sparse_assets_tests.korquad_data import korquad_records
from sparse_assets_tests.sparse_helpers import trained_tiny_model


@pytest.fixture(scope="module")
def tiny(base_encoder_dir, tmp_path_factory):
    return trained_tiny_model(base_encoder_dir, tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def beir(tmp_path):
    docs, queries = korquad_records(3)
    queries = list(queries)[:40]
    folder = tmp_path / "beir"
    folder.mkdir()
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}, ensure_ascii=False) + "\n" for d in docs)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": q["id"], "text": q["query"]}, ensure_ascii=False) + "\n" for q in queries)
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q['id']}\t{q['positive_id']}\t1\n" for q in queries))
    return folder


def evaluate_args(model, beir, out) -> list[str]:
    """`evaluate` of `model` on the BEIR folder's three files, results to `out`."""
    files = ["--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels.tsv")]
    return ["evaluate", "--model", str(model), *files, "--output", str(out)]


def test_evaluate_writes_rows(tiny, beir, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main([*evaluate_args(tiny[0], beir, out), "--bm25"]) == 0
    printed = capsys.readouterr().out
    assert "bm25" in printed and "model" in printed and "ndcg@10" in printed
    result = json.loads(out.read_text())
    systems = [r["system"] for r in result["rows"]]
    assert systems == ["bm25", "idf_only", "model"]
    assert "query IDF and length pivot from this corpus (re-fitted)" in printed
    for row in result["rows"]:
        for key in ("ndcg@10", "mrr@10", "recall@10", "recall@100"):
            assert 0.0 <= row[key] <= 1.0
    assert result["rows"][0]["ndcg@10"] > 0.7  # BM25 on KorQuAD questions
    assert result["rows"][2]["recall@100"] > 0.9 and result["queries"] == 40


def test_evaluate_says_which_queries_it_could_not_score(tiny, beir, tmp_path, capsys):
    """Queries without relevance labels are left out, and it says so (a blank query is an input error)."""
    lines = (beir / "qrels.tsv").read_text().splitlines()
    (beir / "qrels.tsv").write_text("\n".join(lines[:11]) + "\n")  # labels for 10 of the 40 queries
    out = tmp_path / "results.json"
    args = evaluate_args(tiny[0], beir, out)
    assert main(args) == 0
    assert "30 of 40 queries have no relevance labels" in capsys.readouterr().err
    assert (json.loads(out.read_text())["queries"], json.loads(out.read_text())["unlabelled_queries"]) == (10, 30)
    (beir / "queries.jsonl").write_text('{"_id": "q-blank", "text": "  "}\n', encoding="utf-8")
    assert main(args) == 2
    assert "no query 'text' (a non-empty string)" in capsys.readouterr().err


def test_export_to_a_folder_that_cannot_be_written_is_one_line(tiny, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.write_text("a file where the export folder should go")
    assert main(["export", "--model", str(tiny[0]), "--out", str(locked / "os")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and str(locked) in err


def test_search_prints_terms(tiny, beir, capsys):
    assert main(["search", "--model", str(tiny[0]), "--corpus", str(beir / "corpus.jsonl"), "-k", "3", "대한민국 애국가"]) == 0
    printed = capsys.readouterr().out
    assert "query terms:" in printed and "  1. " in printed and "terms:" in printed


def test_export_verb(tiny, tmp_path, capsys):
    assert main(["export", "--model", str(tiny[0]), "--out", str(tmp_path / "os")]) == 0
    assert "SPARSE_ENCODING" in capsys.readouterr().out
    assert len(list((tmp_path / "os").glob("*.zip"))) == 2


def test_bad_input_exits_2_with_the_file_named(tiny, beir, base_encoder_dir, tmp_path, capsys):
    folder = tiny[0]
    args = ["--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl")]
    # qrels of another corpus
    bad = tmp_path / "qrels.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\tnot-a-doc\t1\n")
    assert main(["evaluate", "--model", str(folder), *args, "--qrels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not in" in err
    # qrels without header
    bad.write_text("q1\tx\t1\n")
    assert main(["evaluate", "--model", str(folder), *args, "--qrels", str(bad)]) == 2
    assert "header" in capsys.readouterr().err
    # a base masked-LM folder, not a trained sparse model
    assert main(["evaluate", "--model", str(base_encoder_dir), *args, "--qrels", str(beir / "qrels.tsv")]) == 2
    assert "modules.json" in capsys.readouterr().err
    # a corpus line without _id
    broken = tmp_path / "corpus.jsonl"
    broken.write_text('{"text": "무엇"}\n')
    assert main(["search", "--model", str(folder), "--corpus", str(broken), "질문"]) == 2
    assert "_id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "expected"), [(["  "], "is empty: give the text to search for"), (["-k", "-5", "질문"], "-k -5: give how many")]
)
def test_search_refuses_an_empty_query_and_a_k_below_one(tiny, beir, capsys, extra, expected):
    assert main(["search", "--model", str(tiny[0]), "--corpus", str(beir / "corpus.jsonl"), *extra]) == 2
    assert expected in capsys.readouterr().err


def test_evaluate_warns_when_the_model_folder_differs_from_its_index_entry(tiny, beir, tmp_path, capsys):
    root = tmp_path / "dataset"
    model = root / "base_model/neural_sparse_v1_model"
    shutil.copytree(tiny[0], model)
    record_artifact(UPath(root), "neural_sparse_v1_model", "base_model/neural_sparse_v1_model", "run-1")
    assert main(evaluate_args(model, beir, tmp_path / "results.json")) == 0
    assert f"warning: {model.resolve()}" not in capsys.readouterr().err
    (model / "README.md").write_text("changed by hand")
    assert main(evaluate_args(model, beir, tmp_path / "results.json")) == 0
    err = capsys.readouterr().err
    assert f"warning: {model.resolve()} is not what {root.resolve() / 'metadata.json'} recorded for 'neural_sparse_v1_model'" in err
    assert "accept base_model/neural_sparse_v1_model" in err
