"""A real materialization of the base_model group's data assets on KorQuAD dev slices (and the
bad-input paths); the v1 model of the group is exercised in test_sparse_model.py and test_pipeline.py."""

import json
import logging
import pickle

import dagster as dg
import pytest

from sparse_assets.defs.assets.base_model import base_checks, data_assets, teacher_assets
from sparse_assets.defs.definitions import build_definitions
from sparse_assets_tests.korquad_data import MUSE_KO_EN, korquad_slice


def materialize_base(root, sources, cache, **kwargs):
    defs = build_definitions(root, sources, cache_dir=cache, muse_path=MUSE_KO_EN)
    return dg.materialize([*data_assets, *base_checks], resources=defs.resources, **kwargs)


def test_base_group_on_korquad(tmp_path, korquad_small, model_cache):
    root = tmp_path / "dataset"
    result = materialize_base(root, [str(korquad_small)], model_cache)
    assert result.success
    docs = json.loads((root / "base_model/documents.json").read_text())
    queries = json.loads((root / "base_model/eval_queries.json").read_text())
    raw = json.loads(korquad_small.read_text())
    paragraphs = {p["context"] for a in raw["data"] for p in a["paragraphs"]}
    questions = sum(len(p["qas"]) for a in raw["data"] for p in a["paragraphs"])
    assert len(docs) == len(paragraphs)
    assert len(queries) == questions and all(q["human"] for q in queries)
    assert {q["positive_id"] for q in queries} <= {d["id"] for d in docs}

    idf_by_id = pickle.loads((root / "base_model/idf_statistics.pkl").read_bytes())
    idf_json = json.loads((root / "base_model/idf.json").read_text())
    assert len(idf_by_id) == len(idf_json) > 500
    # the morphology table: particle and ending pieces weigh (about) 0, content pieces their IDF
    assert all(value >= 0 for value in idf_json.values())
    assert sum(1 for value in idf_json.values() if value > 1.0) > len(idf_json) / 2
    assert idf_json.get("의", 0.0) < 0.01 and idf_json.get("는", 0.0) < 0.01

    pairs = pickle.loads((root / "base_model/qd_pairs_base.pkl").read_bytes())
    assert len(pairs) >= len(docs)
    assert not {p["query"] for p in pairs} & {q["query"] for q in queries}
    synonyms = json.loads((root / "base_model/bilingual_synonyms.json").read_text())
    assert len(synonyms) > 100

    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["overlapping_queries"].value == 0
    meta = result.asset_materializations_for_node("documents")
    by_key = {m.asset_key.to_user_string(): m.metadata for m in meta}
    assert by_key["documents"]["documents"].value == len(docs)
    assert by_key["eval_queries"]["human_questions"].value is True
    index = json.loads((root / "metadata.json").read_text())["artifacts"]
    assert set(index) == {"documents", "eval_queries", "idf_statistics", "qd_pairs_base", "bilingual_synonyms"}


def test_the_dense_teacher_encodes_only_what_it_has_not_seen(tmp_path, model_cache):
    """document_embeddings and teacher_scores on two KorQuAD articles, then on three: only the third
    article's paragraphs and pseudo-queries are encoded, the others come from the store bit for bit;
    a store file that does not load is reported and rebuilt."""
    root = tmp_path / "dataset"
    instance = dg.DagsterInstance.ephemeral()

    def run(articles: int) -> tuple[dict, dict, dict]:
        defs = build_definitions(root, [str(korquad_slice(tmp_path / f"k{articles}.json", articles=articles))], cache_dir=model_cache)
        result = dg.materialize([*data_assets, *teacher_assets], resources=defs.resources, instance=instance)
        assert result.success
        meta = {m.asset_key.to_user_string(): m.metadata for m in result.get_asset_materialization_events() for m in [m.materialization]}
        embeddings = pickle.loads((root / "base_model/document_embeddings.pkl").read_bytes())
        logs = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= logging.INFO]
        return meta["document_embeddings"], embeddings, logs

    meta, two, _ = run(2)
    assert meta["encoded"].value == len(two["ids"]) and meta["from_store"].value == 0
    meta, three, logs = run(3)
    assert meta["from_store"].value == len(two["ids"]) and meta["encoded"].value == len(three["ids"]) - len(two["ids"]) > 0
    old = [three["ids"].index(i) for i in two["ids"]]
    assert (three["vectors"][old] == two["vectors"]).all()
    pairs = pickle.loads((root / "base_model/qd_pairs_base.pkl").read_bytes())
    [counts] = [m for m in logs if m.startswith("dense e5:") and "from the store" in m]
    encoded, reused = (int(w) for w in counts.split() if w.isdigit())
    assert encoded + reused == len(pairs) and 0 < encoded < len(pairs)

    [passages] = root.glob("base_model/dense_store/*/passage.npz")
    passages.write_bytes(passages.read_bytes()[:100])  # torn behind the store's back
    meta, again, logs = run(3)
    assert meta["encoded"].value == len(three["ids"]) and any("unreadable" in m for m in logs)
    assert abs(again["vectors"] - three["vectors"]).max() < 1e-5


def test_a_corpus_without_questions_falls_back_to_pseudo_queries_and_says_so(tmp_path, model_cache):
    root = tmp_path / "dataset"
    result = materialize_base(root, ["embedded"], model_cache)
    assert result.success
    queries = json.loads((root / "base_model/eval_queries.json").read_text())
    assert queries and not any(q["human"] for q in queries)
    meta = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("documents")}
    assert meta["eval_queries"]["kind"].value.startswith("held-out pseudo-queries")
    pairs = pickle.loads((root / "base_model/qd_pairs_base.pkl").read_bytes())
    assert not {p["query"] for p in pairs} & {q["query"] for q in queries}
    held_out = {q["positive_id"] for q in queries}
    assert len(queries) >= 1.5 * len(held_out)  # lead nouns and a key-noun query per held-out document
    assert not held_out & {p["positive_id"] for p in pairs}  # their documents are no training positives
    pairs_meta = result.asset_materializations_for_node("qd_pairs_base")[0].metadata
    assert pairs_meta["held_out_documents (pseudo-query evaluation)"].value == len(held_out)


def test_mixed_sources_are_counted_per_source(tmp_path, model_cache):
    first = korquad_slice(tmp_path / "a.json", articles=2)
    second = korquad_slice(tmp_path / "b.json", articles=2, start=2)
    result = materialize_base(tmp_path / "dataset", [str(first), str(second)], model_cache, selection=["documents", "eval_queries"])
    per_source = result.asset_materializations_for_node("documents")[0].metadata["per_source"].value
    assert str(first) in per_source and str(second) in per_source


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda tmp: str(tmp / "missing.json"), "does not exist"),
        (
            lambda tmp: _write(tmp / "english.jsonl", '{"text": "Only English words in this long enough document."}\n'),
            "no documents left after filtering",
        ),
    ],
)
def test_bad_input_fails_with_one_message_and_keeps_earlier_artifacts(tmp_path, korquad_small, model_cache, make_source, message):
    root = tmp_path / "dataset"
    assert materialize_base(root, [str(korquad_small)], model_cache).success
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = materialize_base(root, [make_source(tmp_path)], model_cache, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert message in failure.step_failure_data.error.to_string()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)
