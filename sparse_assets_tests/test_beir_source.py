"""The `beir:DIR` corpus source on real data (msmarco_ko from ../shared/data, and small BEIR folders
written here from its lines): documents, labelled queries with graded judgments, dedupe, mixing,
the `documents` asset, and the clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from sparse_assets.data import corpus, evalset
from sparse_assets.data.corpus import (
    CorpusError,
    CorpusFilter,
    clean_documents,
    document_id,
    load_source,
)
from sparse_assets.data.korean import normalize_text
from sparse_assets.evaluation.retrieval import qrels_from_queries
from sparse_assets_tests.korquad_data import SHARED_DATA, korquad_slice

MSMARCO_KO = SHARED_DATA / "msmarco_ko"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _msmarco(passages: int) -> tuple[list[dict], list[dict], list[tuple[str, str, int]]]:
    """The first `passages` msmarco_ko passages plus p97 (too short for the default filter), the
    queries judged only on those, and their qrels lines."""
    rows = _jsonl(MSMARCO_KO / "corpus.jsonl")
    chosen = rows[:passages] + [rows[97]]
    ids = {r["_id"] for r in chosen}
    lines = (MSMARCO_KO / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    judged: dict[str, list[tuple[str, str, int]]] = {}
    for line in lines:
        q, d, score = line.split("\t")
        judged.setdefault(q, []).append((q, d, int(score)))
    qrels = [row for rows_ in judged.values() if all(d in ids for _, d, _ in rows_) for row in rows_]
    query_ids = {q for q, _, _ in qrels}
    queries = [r for r in _jsonl(MSMARCO_KO / "queries.jsonl") if r["_id"] in query_ids]
    return chosen, queries, qrels


def write_beir(folder: Path, docs, queries, qrels, qrels_name: str = "qrels/test.tsv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8")
    (folder / qrels_name).parent.mkdir(parents=True, exist_ok=True)
    (folder / qrels_name).write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels), encoding="utf-8")
    return folder


@pytest.fixture
def small_beir(tmp_path) -> Path:
    """40 msmarco_ko passages (+ p97, too short) and their queries, with added cases: q27 graded
    (p27: 2, p28: 1, p29: 0 = judged not relevant), a near-duplicate of p28 (`p28dup`) that q-dup is
    judged on, a query without any qrels line and one judged only grade 0."""
    docs, queries, qrels = _msmarco(40)
    by_id = {d["_id"]: d for d in docs}
    docs.append({"_id": "p28dup", "title": "", "text": by_id["p28"]["text"].replace(".", "!") + " 2024"})
    qrels = [row for row in qrels if row[0] != "q27"] + [("q27", "p27", 2), ("q27", "p28", 1), ("q27", "p29", 0)]
    queries += [
        {"_id": "q-dup", "text": "중복된 문단에 대한 질문"},
        {"_id": "q-unlabelled", "text": "판정이 없는 질문"},
        {"_id": "q-zero", "text": "관련 문서가 없는 질문"},
    ]
    qrels += [("q-dup", "p28dup", 1), ("q-zero", "p0", 0)]
    return write_beir(tmp_path / "msmarco_ko", docs, queries, qrels)


# ----------------------------------------------------------------------------- msmarco_ko, in full


def test_msmarco_ko_through_the_beir_source():
    raw = load_source(f"beir:{MSMARCO_KO}")
    assert len(raw.documents) == 7279 and len(raw.questions) == 6980
    assert not raw.dropped_questions  # every query has a label
    assert {d["source"] for d in raw.documents} == {"beir:msmarco_ko"}
    assert all(d["source_id"] == d["id"] for d in raw.documents)
    assert sum(1 for q in raw.questions if len(q.relevant) > 1) == 250

    docs, report = clean_documents(raw.documents, CorpusFilter())
    assert len(docs) == 7266 and dict(report.dropped) == {"too_short": 12, "low_hangul": 1}
    assert len({d["source_id"] for d in docs}) == 7266  # every kept passage traceable to its BEIR id

    queries, orphaned = evalset.human_eval_queries(raw.questions, docs, report.resolved)
    assert len(queries) == 6969 and orphaned == 11
    kept_ids = {d["id"] for d in docs}
    assert all(q["human"] and q["positive_id"] in q["relevant"] and set(q["relevant"]) <= kept_ids for q in queries)
    assert sum(1 for q in queries if len(q["relevant"]) > 1) == 248  # two lost one of their positives
    by_source_id = {d["source_id"]: d for d in docs}
    q1 = next(q for q in queries if q["id"] == "q1")
    assert q1["relevant"] == {by_source_id["p0"]["id"]: 1} and q1["source"] == "beir:msmarco_ko"


# ------------------------------------------------------------------------- judgments through cleaning


def test_multi_positive_graded_queries_keep_their_judgments_and_follow_dedupe(small_beir):
    raw = load_source(f"beir:{small_beir}")
    assert raw.dropped_questions == {"no_relevance_label": 1, "no_positive_label": 1}
    assert "q-unlabelled" not in {q.id for q in raw.questions} and "q-zero" not in {q.id for q in raw.questions}
    q27 = next(q for q in raw.questions if q.id == "q27")
    assert q27.relevant == {"p27": 2, "p28": 1, "p29": 0} and q27.context is None

    docs, report = clean_documents(raw.documents, CorpusFilter())
    assert report.dropped["near_duplicate"] == 1 and report.dropped["too_short"] == 1
    text = {d["_id"]: normalize_text(d["text"]) for d in _jsonl(small_beir / "corpus.jsonl")}
    kept = {d["source_id"]: d["id"] for d in docs}
    assert "p28dup" not in kept and "p97" not in kept
    assert report.resolved[("beir:msmarco_ko", "p28dup")] == [kept["p28"]] == [document_id(text["p28"])]
    assert report.resolved[("beir:msmarco_ko", "p97")] == []

    queries, orphaned = evalset.human_eval_queries(raw.questions, docs, report.resolved)
    by_id = {q["id"]: q for q in queries}
    assert orphaned == 1 and "q93" not in by_id  # its only positive, p97, is too short
    assert by_id["q27"]["relevant"] == {kept["p27"]: 2, kept["p28"]: 1, kept["p29"]: 0}
    assert by_id["q27"]["positive_id"] == kept["p27"]  # the highest grade
    assert by_id["q-dup"]["relevant"] == {kept["p28"]: 1} and by_id["q-dup"]["positive_id"] == kept["p28"]
    q12 = by_id["q12"]  # two positives in msmarco_ko
    assert q12["relevant"] == {kept["p11"]: 1, kept["p12"]: 1}
    qrels = qrels_from_queries(queries)
    assert qrels["q27"] == {kept["p27"]: 2, kept["p28"]: 1, kept["p29"]: 0}
    assert qrels_from_queries([{"id": "s", "positive_id": "d1"}]) == {"s": {"d1": 1}}


def test_qrels_tsv_at_the_top_and_mixing_with_other_sources(tmp_path):
    docs, queries, qrels = _msmarco(20)
    first = write_beir(tmp_path / "one", docs, queries, qrels, qrels_name="qrels.tsv")
    second = write_beir(
        tmp_path / "two", docs[:10], [q for q in queries if q["_id"] in {"q1", "q2"}], [r for r in qrels if r[0] in {"q1", "q2"}]
    )
    squad = korquad_slice(tmp_path / "korquad.json", articles=1)
    raw = corpus.RawCorpus()
    for source in (f"beir:{first}", str(squad), f"beir:{second}"):
        raw.extend(load_source(source))
    sources = {d["source"] for d in raw.documents}
    assert sources == {"beir:one", "beir:two", str(squad)}
    docs_kept, report = clean_documents(raw.documents, CorpusFilter())
    queries_out, _ = evalset.human_eval_queries(raw.questions, docs_kept, report.resolved)
    squad_queries = [q for q in queries_out if q["source"] == str(squad)]
    assert squad_queries and not any("relevant" in q for q in squad_queries)
    # the second folder's passages are duplicates of the first's: its queries point at the kept copies
    ids = [q["id"] for q in queries_out]
    assert len(ids) == len(set(ids)) and {"beir:two/q1", "beir:two/q2"} <= set(ids)
    one, two = ({q["id"].split("/")[-1]: q for q in queries_out if q["source"] == s} for s in ("beir:one", "beir:two"))
    assert two["q1"]["relevant"] == one["q1"]["relevant"] and two["q1"]["positive_id"] in {d["id"] for d in docs_kept}

    with pytest.raises(CorpusError, match="'beir:one' appears twice"):
        raw.extend(load_source(f"beir:{first}"))


def test_the_environment_takes_a_beir_source(monkeypatch, korquad_small):
    from sparse_assets.defs.definitions import definitions_from_environment

    monkeypatch.setenv("SPARSE_ASSETS_CORPUS", f"beir:{MSMARCO_KO}, {korquad_small}")
    assert definitions_from_environment().resources["corpus_sources"].sources == [f"beir:{MSMARCO_KO}", str(korquad_small)]


# ------------------------------------------------------------------------------------- bad input


def _good(tmp_path) -> Path:
    docs, queries, qrels = _msmarco(5)
    return write_beir(tmp_path / "bad", docs, queries, qrels)


def _remove(name):
    return lambda folder: (folder / name).unlink()


def _write(name, text):
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


def _append(name, text):
    return lambda folder: (folder / name).write_text((folder / name).read_text(encoding="utf-8") + text, encoding="utf-8")


@pytest.mark.parametrize(
    "break_it, file, expected",
    [
        (lambda folder: None, "nowhere", "does not exist"),
        (_remove("corpus.jsonl"), "corpus.jsonl", "not found"),
        (_remove("queries.jsonl"), "queries.jsonl", "not found"),
        (_remove("qrels/test.tsv"), "qrels/test.tsv", "not found, nor"),
        (
            _append("qrels/test.tsv", "q900\tp0\t1\nq901\tp1\t1\n"),
            "qrels/test.tsv",
            "2 of its 8 query ids are not in .*queries.jsonl \\(e.g. q900, q901\\)",
        ),
        (
            _append("qrels/test.tsv", "q1\tp9999\t1\n"),
            "qrels/test.tsv",
            "1 of its 7 judged corpus ids are not in .*corpus.jsonl \\(e.g. p9999\\)",
        ),
        (_write("qrels/test.tsv", "query-id\tcorpus-id\tscore\n"), "qrels/test.tsv", "no query of .* has a relevance label"),
        (_write("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tp0\t0\n"), "qrels/test.tsv", "only grade-0 lines"),
        (_write("corpus.jsonl", "\n"), "corpus.jsonl", "no passages"),
        (_append("corpus.jsonl", '{"_id": "p77", "text": "깨진 줄\n'), "corpus.jsonl", ", line 7: not valid JSON"),
        (
            _append("corpus.jsonl", '{"_id": "p0", "text": "같은 아이디를 가진 두 번째 문단입니다."}\n'),
            "corpus.jsonl",
            "line 7: _id 'p0' is already on line 1",
        ),
        (_write("queries.jsonl", '{"text": "아이디 없는 질문"}\n'), "queries.jsonl", ", line 1: no '_id' field"),
        (_append("qrels/test.tsv", "q1 p0 1\n"), "qrels/test.tsv", ", line 8: expected 3 tab-separated columns"),
        (_write("qrels/test.tsv", "q1\tp0\t1\n"), "qrels/test.tsv", "line 1: the first line must be the header"),
        (_append("qrels/test.tsv", "q1\tp0\tyes\n"), "qrels/test.tsv", "line 8: score 'yes' is not an integer grade"),
    ],
)
def test_bad_beir_input_names_the_file(tmp_path, break_it, file, expected):
    folder = _good(tmp_path)
    assert load_source(f"beir:{folder}").questions  # the unbroken folder loads
    break_it(folder)
    source = f"beir:{folder / file}" if file == "nowhere" else f"beir:{folder}"
    with pytest.raises(CorpusError, match=expected) as error:
        load_source(source)
    assert str(folder / file) in str(error.value)


def test_qrels_of_another_split_only_says_how_to_pick_it(tmp_path):
    folder = _good(tmp_path)
    (folder / "qrels" / "test.tsv").rename(folder / "qrels" / "dev.tsv")
    with pytest.raises(CorpusError, match=r"qrels/test.tsv not found.*found qrels/dev.tsv: copy or link"):
        load_source(f"beir:{folder}")


# ------------------------------------------------------------------------------ the documents asset


def test_documents_asset_on_a_beir_folder_mixed_with_squad(tmp_path, small_beir, model_cache):
    from sparse_assets.defs.assets.base_model import documents
    from sparse_assets.defs.definitions import build_definitions

    root = tmp_path / "dataset"
    squad = korquad_slice(tmp_path / "korquad.json", articles=1)
    defs = build_definitions(root, [f"beir:{small_beir}", str(squad)], cache_dir=model_cache)
    result = dg.materialize([documents], resources=defs.resources)
    assert result.success
    docs = json.loads((root / "base_model/documents.json").read_text())
    queries = json.loads((root / "base_model/eval_queries.json").read_text())
    beir_docs = [d for d in docs if d["source"] == "beir:msmarco_ko"]
    assert len(beir_docs) == 40 and all(d["source_id"].startswith("p") for d in beir_docs)
    beir_queries = [q for q in queries if q["source"] == "beir:msmarco_ko"]
    assert beir_queries and all(q["human"] and q["relevant"] and q["positive_id"] in q["relevant"] for q in beir_queries)
    assert any(q["source"] == str(squad) and "relevant" not in q for q in queries)
    doc_ids = {d["id"] for d in docs}
    assert all(set(q["relevant"]) <= doc_ids for q in beir_queries)
    meta = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("documents")}["eval_queries"]
    assert meta["human_questions"].value is True
    assert meta["queries_with_judgments"].value == len(beir_queries)
    assert meta["queries_without_kept_positive"].value == 1
    assert meta["queries_without_relevance_label"].value == 1 and meta["queries_without_positive_label"].value == 1
    assert "left out of the evaluation" in meta["note"].value


def _documents_failure(tmp_path, folder, model_cache) -> str:
    """Materialize `documents` from a BEIR folder; it must fail without writing: the error text."""
    from sparse_assets.defs.assets.base_model import documents
    from sparse_assets.defs.definitions import build_definitions

    root = tmp_path / "dataset"
    defs = build_definitions(root, [f"beir:{folder}"], cache_dir=model_cache)
    result = dg.materialize([documents], resources=defs.resources, raise_on_error=False)
    assert not result.success
    assert not (root / "base_model").exists()
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()


def test_documents_asset_fails_on_bad_beir_input_before_writing(tmp_path, model_cache):
    folder = _good(tmp_path)
    _append("qrels/test.tsv", "q1\tp9999\t1\n")(folder)
    assert "p9999" in _documents_failure(tmp_path, folder, model_cache)


def test_documents_asset_fails_when_every_labelled_query_lost_its_positives(tmp_path, model_cache):
    folder = _good(tmp_path)
    _write("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq93\tp97\t1\n")(folder)  # p97 is too short to keep
    assert "none of the 1 human questions" in _documents_failure(tmp_path, folder, model_cache)
