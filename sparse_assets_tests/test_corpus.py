"""Corpus sources, cleaning, and the clear errors on bad input."""

import json

import pandas as pd
import pytest

from sparse_assets.data.corpus import CorpusError, CorpusFilter, clean_documents, document_id, load_source
from sparse_assets.data.korean import hangul_ratio
from sparse_assets_tests.korquad_data import KORQUAD_DEV


def test_korquad_dev_loads_every_paragraph_and_question():
    raw = load_source(str(KORQUAD_DEV))
    assert len(raw.documents) == 964
    assert len(raw.questions) == 5774
    docs, report = clean_documents(raw.documents, CorpusFilter())
    # 961 distinct contexts; one more is the same paragraph with different punctuation.
    assert report.dropped["duplicate"] == 3 and report.dropped["near_duplicate"] == 1
    assert len(docs) == 960
    assert len({d["id"] for d in docs}) == 960
    assert all("_" not in d["title"] for d in docs)


def test_embedded_default_is_korean_text_from_installed_packages():
    docs, _report = clean_documents(load_source("embedded").documents, CorpusFilter())
    assert len(docs) > 150
    assert {d["source"] for d in docs} == {"embedded:kolaw", "embedded:kobill"}
    assert min(hangul_ratio(d["text"]) for d in docs) >= 0.2
    assert all(d["date"] == "1987-10-29" for d in docs if d["source"] == "embedded:kolaw")


def test_cleaning_normalises_dedupes_and_bounds_length():
    text = "대한민국의 수도는 서울이며 가장 큰 도시이다. 한강이 도시를 가로지른다."
    raw = [
        {"id": "", "title": "서울", "text": "  " + text.replace(" ", "\n  "), "source": "t"},
        {"id": "", "title": "서울", "text": text, "source": "t"},
        {"id": "", "title": "서울", "text": text.replace(".", "!") + " 123", "source": "t"},
        {"id": "", "title": "짧음", "text": "짧다", "source": "t"},
        {"id": "", "title": "English", "text": "This paragraph has no Korean letters at all, only English.", "source": "t"},
    ]
    docs, report = clean_documents(raw, CorpusFilter(min_chars=10))
    assert [d["text"] for d in docs] == [text]
    assert docs[0]["id"] == document_id(text)
    assert dict(report.dropped) == {"duplicate": 1, "near_duplicate": 1, "too_short": 1, "low_hangul": 1}


def test_a_one_megabyte_document_is_split_into_bounded_passages():
    sentence = "한국어 문장이 아주 길게 이어지는 문서의 한 부분이다 "
    huge = (sentence * (1_000_000 // len(sentence.encode("utf-8")) + 1)).strip()
    assert len(huge.encode("utf-8")) >= 1_000_000
    docs, report = clean_documents([{"id": "", "title": "긴 문서", "text": huge, "source": "t"}], CorpusFilter(max_chars=4000))
    assert report.split_long == 1
    assert max(len(d["text"]) for d in docs) <= 4000
    # identical pieces collapse to one passage: the split text repeats itself
    assert len(docs) >= 1 and report.kept == len(docs)


def test_jsonl_and_parquet_records(tmp_path):
    records = [
        {"id": "a", "title": "제목", "text": "첫 번째 문서의 본문은 충분히 길어야 한다. 그래서 두 문장을 쓴다.", "date": "2024-05-01"}
    ]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    parquet = tmp_path / "docs.parquet"
    pd.DataFrame(records).to_parquet(parquet)
    for path in (jsonl, parquet):
        docs = load_source(str(path)).documents
        assert docs[0]["text"] == records[0]["text"] and docs[0]["date"] == "2024-05-01"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.json", None, "does not exist"),
        ("broken.json", b'{"data": [', "not valid JSON (line 1"),
        ("cp949.json", '{"data": []} 한국어'.encode("cp949"), "is not UTF-8"),
        ("wrong.json", json.dumps({"data": [{"title": "x"}]}).encode(), "not SQuAD format (missing 'paragraphs')"),
        ("other.json", json.dumps({"rows": []}).encode(), "neither SQuAD format"),
        ("records.jsonl", b'{"body": "no text field"}\n', "record 1 has no string 'text' field"),
        (
            "ids.jsonl",
            '{"id": "a", "text": "가"}\n{"id": "b", "text": "나"}\n{"id": "a", "text": "다"}\n'.encode(),
            "records 1 and 3 have the same id 'a'; ids must be unique (or left out)",
        ),
        ("table.csv", b"a,b\n", "unsupported file type '.csv'"),
    ],
)
def test_bad_sources_say_what_is_wrong(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorpusError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_source(str(path))


def test_hub_source_offline_names_the_source(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CorpusError, match=r"'hf:squad_kor_v1' could not be loaded .*pass the local file"):
        load_source("hf:squad_kor_v1")
