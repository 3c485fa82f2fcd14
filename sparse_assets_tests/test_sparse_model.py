"""Training a few steps on a KorQuAD slice, the saved folder, determinism, collapse detection."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from sparse_assets.defs.assets.training import SparseTrainingConfig
from sparse_assets.defs.checks import model_check_results
from sparse_assets.encoder.sparse_model import (
    SparseModelError,
    SparseTrainingSettings,
    build_sparse_encoder,
    document_floor,
    document_floor_matrix,
    document_module,
    document_text,
    encode_documents,
    encode_queries,
    folder_tokenizer,
    load_sparse_encoder,
    model_tokenizer,
    prepare_mlm_folder,
    query_weights,
    read_idf_json,
    token_windows,
    with_corpus_statistics,
)
from sparse_assets.evaluation.retrieval import evaluate_systems, model_idf
from sparse_assets_tests.korquad_data import korquad_records
from sparse_assets_tests.sparse_helpers import base_idf, teacher_for, tiny_settings, trained_tiny_model

QUERIES = ["대한민국의 수도는 어디인가?", "", "임진왜란 " * 400, "이순신 장군"]  # empty, and longer than the tokenizer allows


@pytest.fixture(scope="module")
def tiny(base_encoder_dir, tmp_path_factory):
    return trained_tiny_model(base_encoder_dir, tmp_path_factory.mktemp("tiny"))


def test_training_moves_loss_and_writes_a_loadable_folder(tiny):
    folder, report, docs, pairs, _ = tiny
    assert len(report.losses) == 30  # one per step
    assert np.mean(report.losses[-10:]) < np.mean(report.losses[:10])  # the loss moved down (a batch's loss is noisy: tens of steps)
    assert report.device == "cpu" and report.steps == 30 and report.steps_per_second > 0
    assert report.train_pairs + report.validation_pairs <= len(pairs) and report.validation_pairs > 0
    model = load_sparse_encoder(folder)
    tok = folder_tokenizer(folder)
    assert (
        model.get_embedding_dimension() == len(tok.get_vocab()) == len(folder_tokenizer(folder / "document_0_Transformer"))
    )  # full vocabulary
    assert model.get_embedding_dimension() > 200_000
    weights = read_idf_json(folder / "idf.json", tok)
    assert (weights > 0).sum() > 500
    dmat = encode_documents(model, [d["text"] for d in docs[:5]])
    assert (np.diff(dmat.indptr) > 10).all()  # non-zero, sparse-but-not-empty document vectors
    assert (np.diff(dmat.indptr) < 0.5 * dmat.shape[1]).all()
    qmat = encode_queries(model, ["대한민국의 수도"])
    assert set(qmat.indices) <= set(np.flatnonzero(weights))  # inference-free query = IDF of its tokens
    validation = report.validation[-1]
    assert json.loads((folder / "training_report.json").read_text())["validation"][-1] == validation  # kept beside the model
    assert validation["doc_active_dims"] > 10 and validation["zero_doc_share"] == 0.0
    gain = validation["minus_idf_only_ndcg@10"]  # the paired interval around the validation gain over IDF-only
    assert gain == pytest.approx(validation["ndcg@10"] - validation["idf_only_ndcg@10"])
    assert validation["minus_idf_only_ci_low"] <= gain <= validation["minus_idf_only_ci_high"]
    assert json.loads((folder / "sparse_training.json").read_text())["steps"] == 30


def test_same_seed_same_model(base_encoder_dir, tmp_path):
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.training.sparse_training import train_sparse_encoder

    docs = list(korquad_records(1)[0])
    pairs = build_pairs(docs, PseudoQuerySettings())
    idf = base_idf(base_encoder_dir, docs)
    settings = tiny_settings(steps=3, validation_fraction=0.0)
    teacher = teacher_for(base_encoder_dir, docs, pairs)
    a = train_sparse_encoder(docs, pairs, idf, settings, tmp_path / "a", base_encoder_dir, teacher)
    b = train_sparse_encoder(docs, pairs, idf, settings, tmp_path / "b", base_encoder_dir, teacher)
    assert a.losses == b.losses
    ma, mb = load_sparse_encoder(tmp_path / "a"), load_sparse_encoder(tmp_path / "b")
    texts = [d["text"] for d in docs[:3]]
    assert (encode_documents(ma, texts) != encode_documents(mb, texts)).nnz == 0


def test_token_state_cache_trains_alike_and_keeps_to_its_limit(base_encoder_dir, tmp_path):
    """Training from cached token states gives the same losses as computing them; a hit marks its
    entry used; a new entry beyond the limit deletes the others, never itself."""
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.training.sparse_training import train_sparse_encoder

    cache = tmp_path / "cache"
    articles = list(korquad_records(3)[0])

    def train(docs, name, **overrides):
        pairs = build_pairs(docs, PseudoQuerySettings())
        settings = tiny_settings(steps=3, validation_fraction=0.0, **overrides)
        teacher = teacher_for(base_encoder_dir, docs, pairs)
        report = train_sparse_encoder(docs, pairs, base_idf(base_encoder_dir, docs), settings, tmp_path / name, base_encoder_dir, teacher)
        return report.losses, set(cache.glob("hidden-*.safetensors"))

    uncached, _ = train(articles[:2], "uncached")
    first_losses, (first,) = train(articles[:2], "first", hidden_cache_dir=str(cache))
    os.utime(first, (1, 1))
    hit_losses, files = train(articles[:2], "hit", hidden_cache_dir=str(cache))
    assert first_losses == hit_losses == uncached
    assert files == {first} and first.stat().st_mtime > 1
    _, files = train(articles[2:], "second", hidden_cache_dir=str(cache), hidden_cache_limit_gb=1e-9)
    assert len(files) == 1 and first not in files  # the new entry, alone although over the limit


def test_token_state_cache_deletes_the_least_recently_used_first(tmp_path):
    from sparse_assets.training.sparse_training import prune_hidden_cache

    for age, name in enumerate(["newest", "second", "third", "oldest"]):
        (tmp_path / f"hidden-{name}.safetensors").write_bytes(b"x" * 100)
        os.utime(tmp_path / f"hidden-{name}.safetensors", (10_000 - age, 10_000 - age))
    (tmp_path / "hidden-crashed.77.tmp").write_bytes(b"x")
    os.utime(tmp_path / "hidden-crashed.77.tmp", (1, 1))
    (tmp_path / "hidden-writing.78.tmp").write_bytes(b"x")  # another run's file in progress
    (tmp_path / "unrelated.bin").write_bytes(b"x" * 1000)
    deleted = prune_hidden_cache(tmp_path, limit_bytes=250, keep=tmp_path / "hidden-oldest.safetensors")
    assert [p.name for p in deleted] == ["hidden-third.safetensors", "hidden-second.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hidden-newest.safetensors",
        "hidden-oldest.safetensors",
        "hidden-writing.78.tmp",
        "unrelated.bin",
    ]


def test_untrained_model_starts_near_each_token_marking_itself(base_encoder_dir, tmp_path):
    from sparse_assets.encoder.sparse_model import idf_vector

    docs = list(korquad_records(1)[0])[:4]
    texts = [d["text"] for d in docs]
    settings = SparseTrainingSettings(layers=6, max_length=128, length_slope=0.0)
    mlm = prepare_mlm_folder(base_encoder_dir, tmp_path / "mlm", settings)
    tok = folder_tokenizer(mlm)
    weights = idf_vector(base_idf(base_encoder_dir, docs), tok)
    model = build_sparse_encoder(mlm, weights, settings)
    dmat = encode_documents(model, texts)
    for i, text in enumerate(texts):
        own = set(tok(text, add_special_tokens=False)["input_ids"])
        active = set(dmat.getrow(i).indices)
        row = dmat.getrow(i)
        weight = dict(zip(row.indices.tolist(), row.data.tolist()))
        assert len(own & active) / len(own) > 0.8  # the document's own tokens are active
        assert len(active) < 0.02 * dmat.shape[1]  # and not the whole vocabulary
        own_mean = np.mean([weight.get(t, 0.0) for t in own])
        other_mean = np.mean([w for t, w in weight.items() if t not in own])
        assert own_mean > 2 * other_mean  # the own tokens weigh most (training prunes the rest)


def test_checks_fail_on_a_collapsed_model(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    folder, report, docs, pairs, _ = tiny
    collapsed = tmp_path / "collapsed"
    shutil.copytree(folder, collapsed)
    weights_file = next(collapsed.glob("document_0_*/model.safetensors"))
    state = load_file(str(weights_file))
    bias_keys = [k for k in state if k.endswith(("predictions.bias", "decoder.bias"))]
    assert bias_keys
    for k in bias_keys:
        state[k] = torch.full_like(state[k], -100.0)  # every logit negative: all-zero documents
    save_file(state, str(weights_file))
    queries = [{"id": f"q{i}", "query": p["query"], "positive_id": p["positive_id"]} for i, p in enumerate(pairs[:40])]
    idf_row, row = evaluate_systems(docs, queries, models={"collapsed": collapsed}, bm25=False, idf_only=model_idf(collapsed))
    # its lexical floor holds: a collapsed head leaves the documents' own pieces, the IDF-only baseline
    assert row["ndcg@10"] == pytest.approx(idf_row["ndcg@10"], abs=1e-9) and row["zero_doc_share"] == 0.0
    router = json.loads((collapsed / "router_config.json").read_text())  # without the floor: empty documents
    floor_module = router["structure"]["document"].pop()
    del router["types"][floor_module]
    (collapsed / "router_config.json").write_text(json.dumps(router))
    idf_row, row = evaluate_systems(docs, queries, models={"collapsed": collapsed}, bm25=False, idf_only=model_idf(collapsed))
    validation = {**row, "idf_only_mrr@10": idf_row["mrr@10"]}
    assert validation["zero_doc_share"] == 1.0 and validation["doc_active_dims"] == 0.0
    # the training asset's check results fail every check on these numbers, at the default bounds
    results = model_check_results(validation, SparseTrainingConfig())
    assert [r.check_name for r in results] == ["active_dims", "zero_vectors", "beats_idf_only"]
    assert not any(r.passed for r in results)
    assert [r.severity.value for r in results] == ["ERROR", "ERROR", "WARN"]  # IDF-only is a warning
    # the healthy model passes the dims and zero-vector checks; no validation at all passes nothing
    healthy = model_check_results(report.validation[-1], SparseTrainingConfig())
    assert [r.passed for r in healthy][:2] == [True, True]
    assert not any(r.passed for r in model_check_results({}, SparseTrainingConfig()))
    # the config's bounds decide: a floor above the healthy model's active dims fails it
    strict = model_check_results(
        report.validation[-1], SparseTrainingConfig(min_doc_active_dims=report.validation[-1]["doc_active_dims"] + 1)
    )
    assert strict[0].passed is False and "outside" in strict[0].description


def test_idf_json_of_another_vocabulary_is_rejected(tiny, base_encoder_dir, tmp_path):
    folder, *_ = tiny
    other = tmp_path / "idf.json"
    other.write_text(json.dumps({f"▁없는토큰{i}": 1.0 for i in range(50)}, ensure_ascii=False))
    with pytest.raises(SparseModelError, match="another vocabulary"):
        read_idf_json(other, folder_tokenizer(folder))
    with pytest.raises(SparseModelError, match="modules.json"):
        load_sparse_encoder(base_encoder_dir)


def test_token_windows_cover_long_documents_and_cut_at_word_starts(base_encoder_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_encoder_dir))
    texts = [" ".join(d["text"] for d in korquad_records(1)[0][:4]), "짧은 문서", ""]
    windows, owner = token_windows(tok, texts, 64)
    assert owner.count(0) > 3 and owner[-2:] == [1, 2]
    assert all(len(w) <= 64 and w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id for w in windows)
    long_ids = tok(texts[0], add_special_tokens=False, verbose=False)["input_ids"]
    assert np.concatenate([w[1:-1] for w, o in zip(windows, owner) if o == 0]).tolist() == long_ids  # nothing lost
    assert all(tok.convert_ids_to_tokens(int(w[1])).startswith("▁") for w, o in zip(windows, owner) if o == 0)
    assert windows[-2].tolist() == tok("짧은 문서")["input_ids"]  # a text that fits: the tokenizer's own ids
    assert windows[-1].tolist() == tok("")["input_ids"]


def test_document_and_query_vectors_match_sentence_transformers(tiny):
    """encode_documents (one tokenization, max before activation) and the IDF query encoder give
    the vectors of SparseEncoder.encode_document / encode_query."""
    import torch

    folder, _, docs, _, _ = tiny
    model = load_sparse_encoder(folder)
    texts = [d["text"] for d in docs[:6]] + [d["text"][:120] for d in docs[6:12]] + ["대한민국의 수도는 서울이다."]
    max_length = document_module(model)[0].max_seq_length
    fits = [i for i, t in enumerate(texts) if len(model_tokenizer(model)(t)["input_ids"]) <= max_length]
    with torch.no_grad():
        plain = model.encode_document(texts, convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().to_dense().numpy()
        plain_queries = model.encode_query(QUERIES, convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().to_dense().numpy()
    ours = encode_documents(model, texts).toarray()
    plain = plain[:, : ours.shape[1]]  # the MLM's padded output rows past the tokenizer's vocabulary are unreachable
    assert 3 <= len(fits) < len(texts)  # both kinds: documents that fit, documents cut into windows
    np.testing.assert_allclose(ours[fits], plain[fits], atol=1e-4)
    assert (ours > 0).sum() > 10 * len(texts)
    np.testing.assert_array_equal(encode_queries(model, QUERIES).toarray(), plain_queries)


def test_train_model_asset_metadata_and_checks(base_encoder_dir):
    import dagster as dg

    from sparse_assets.defs.assets.training import SparseTrainingConfig, train_model_asset
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs

    docs = list(korquad_records(1)[0])
    pairs = build_pairs(docs, PseudoQuerySettings())
    config = SparseTrainingConfig(steps=4, batch_size=4, layers=2, max_length=96, validation_fraction=0.3, seed=3)
    teacher = teacher_for(base_encoder_dir, docs, pairs)
    handover, metadata, checks = train_model_asset(
        dg.build_asset_context(), config, docs, pairs, base_idf(base_encoder_dir, docs), base_encoder_dir, teacher, cache_dir=""
    )
    folder = handover.path
    assert (folder / "modules.json").exists() and (folder / "idf.json").exists()
    assert metadata["steps"] == 4 and metadata["steps_per_second"] > 0
    assert "| step | loss |" in metadata["loss_curve"].value
    assert metadata["config"].value["layers"] == 2
    assert metadata["validation_doc_active_dims"] > 10
    assert [(r.check_name, r.passed) for r in checks][:2] == [
        ("active_dims", True),
        ("zero_vectors", True),
    ]  # dims within bounds, no zero vectors
    shutil.rmtree(folder)  # the model IO manager would have removed this handover folder


def test_length_normalisation_divides_by_the_pivoted_length(tiny):
    """A document's weights are its max-pooled weights over 1 - s + s * tokens / pivot (tokens: all
    its windows' tokens): a long document is discounted, a short one lifted."""
    import torch

    from sparse_assets.encoder.sparse_model import document_length_normalization

    folder, report, docs, _, _ = tiny
    model = load_sparse_encoder(folder)
    length = document_length_normalization(model)
    assert length.pivot == pytest.approx(report.length_pivot) and 0.0 < length.slope <= 1.0
    slope = length.slope
    texts = [docs[0]["text"][:100], " ".join(d["text"] for d in docs[:3])]
    tokens = np.array([sum(len(w) for w, o in zip(*token_windows(model_tokenizer(model), texts, 128)) if o == i) for i in range(2)])
    floor = document_floor_matrix(model, texts).toarray()  # added after the division (test below)
    normalised = encode_documents(model, texts).toarray() - floor
    with torch.no_grad():
        length.slope_parameter.fill_(0.0)
    raw = encode_documents(model, texts).toarray() - floor
    expected = 1 - slope + slope * tokens / length.pivot
    for i in range(2):
        active = raw[i] > 0
        np.testing.assert_allclose(raw[i][active] / normalised[i][active], expected[i], rtol=1e-4)
    assert expected[0] < 1 < expected[1]


def test_a_document_keeps_its_own_pieces_under_its_expansion(tiny, base_encoder_dir, tmp_path):
    """The lexical floor: every piece a document holds weighs at least `document_floor` x its BM25
    saturation (tf (k1 + 1) / (tf + k1 (1 - b + b dl / pivot)), pivot the training corpus' mean piece
    count), over all windows of a long document, and what the head adds is >= 0; `document_floor` 0
    builds a model without it."""
    from sparse_assets.encoder.saturation import K1, B, document_pieces

    folder, _, docs, _, _ = tiny
    model = load_sparse_encoder(folder)
    floor = document_floor(model)
    tok = model_tokenizer(model)
    pieces = document_pieces(tok, [document_text(d) for d in docs])
    assert floor.weight == SparseTrainingSettings().document_floor == 1.0
    assert floor.pivot == pytest.approx(np.mean([len(p) for p in pieces]), rel=1e-6)  # fitted to the training corpus, saved
    texts = [docs[0]["text"], " ".join(d["text"] for d in docs[:4]), "서울 서울 서울 부산"]  # one window, several, repeats
    dmat = encode_documents(model, texts).toarray()
    for text, row in zip(texts, dmat):
        own = document_pieces(tok, [text])[0]
        terms, tf = np.unique(own, return_counts=True)
        expected = floor.weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(own) / floor.pivot))
        assert (row[terms] >= expected - 1e-5).all()
    head = dmat - document_floor_matrix(model, texts).toarray()
    assert head.min() > -1e-5 and (head > 0).sum() > 100  # the expansion adds, and the head still expands
    seoul, busan = tok("서울 부산", add_special_tokens=False)["input_ids"]
    lexical = document_floor_matrix(model, texts[2:]).toarray()[0]
    assert lexical[busan] < lexical[seoul] < 3 * lexical[busan]  # three counts saturate
    mlm = prepare_mlm_folder(base_encoder_dir, tmp_path / "mlm", tiny_settings())
    without = build_sparse_encoder(mlm, np.ones(len(tok), dtype=np.float32), tiny_settings(document_floor=0.0))
    assert document_floor(without) is None and document_floor_matrix(without, texts) is None


def test_a_model_moved_to_another_corpus_takes_its_idf_and_keeps_unseen_tokens(tiny):
    """The saved model has the full vocabulary: on a corpus with words the training corpus never
    had, the re-fitted query table weights them (all but the particle and ending pieces, which the
    morphology table weighs down), and the documents hold them."""
    from sparse_assets.data.morph_idf import morph_query_table

    folder, *_ = tiny
    model = load_sparse_encoder(folder)
    trained_idf = query_weights(model).copy()
    other = [d["text"] for d in korquad_records(2, start=20)[0]]
    moved = with_corpus_statistics(load_sparse_encoder(folder), other)
    tok = model_tokenizer(moved)
    used = set(tok(" ".join(other), add_special_tokens=False)["input_ids"]) - set(tok.all_special_ids)
    new_tokens = sorted(used - set(np.flatnonzero(trained_idf)))
    assert len(new_tokens) > 100  # words of the new corpus the training corpus never had
    weights = query_weights(moved)[new_tokens]
    share = morph_query_table(other, tok).share
    assert [w > 0 for w in weights] == [share[t] > 0 for t in new_tokens]
    assert (weights > 0).mean() > 0.75  # 0.85 here
    dmat = encode_documents(moved, other[:3])
    assert len(set(dmat.indices) & set(new_tokens)) > 10


def test_validation_holds_out_documents_and_leaves_copied_spans_out():
    """The validation split holds out whole documents and validates on their non-extractive queries
    only: copied spans are what exact match wins (the cause of a check that disagreed with the
    human-question comparison), so none of them validates, and none of a held document trains."""
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.training.sparse_training import split_pairs

    docs, _ = korquad_records(2)
    pairs = build_pairs(list(docs), PseudoQuerySettings())
    train, val = split_pairs(pairs, fraction=0.25, seed=3)
    held = {p["positive_id"] for p in val}
    assert val and {p["source"] for p in val} <= {"pseudo:title", "pseudo:lead", "pseudo:keynoun"}
    assert not held & {p["positive_id"] for p in train}
    assert {p["source"] for p in train} >= {"pseudo:span", "pseudo:keynoun"}
    kept = {(p["query"], p["positive_id"]) for p in [*train, *val]}
    dropped = [p for p in pairs if (p["query"], p["positive_id"]) not in kept]
    assert dropped and {p["source"] for p in dropped} == {"pseudo:span"}


def test_the_step_budget_is_capped_at_max_epochs_over_the_training_pairs():
    from sparse_assets.encoder.sparse_model import SparseTrainingSettings
    from sparse_assets.training.sparse_training import epoch_capped

    settings = SparseTrainingSettings()  # 3,000 steps of 8, at most 3 passes
    assert epoch_capped(settings, 9452).steps == 3000  # KorQuAD-sized: the budget holds
    assert epoch_capped(settings, 1200).steps == 450  # a small corpus: 3 passes, not 20
    assert epoch_capped(SparseTrainingSettings(max_epochs=None), 1200).steps == 3000


def test_learned_query_weights_are_saved_kept_on_another_corpus_and_continued_by_a_warm_start(base_encoder_dir, tmp_path):
    """query_weight_learning_rate > 0 fits a multiplier of each training-query token's IDF: idf.json
    holds IDF x multiplier, query_token_scale.json the multipliers, a corpus re-fit keeps them over
    the new IDF, and v2's warm start continues from them."""
    from sparse_assets.encoder.sparse_model import corpus_query_weights, idf_vector, read_query_token_scale
    from sparse_assets.training.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.training.sparse_training import train_sparse_encoder

    docs, _ = korquad_records(3)
    docs = list(docs)
    pairs = build_pairs(docs, PseudoQuerySettings())
    idf, teacher = base_idf(base_encoder_dir, docs), teacher_for(base_encoder_dir, docs, pairs)
    v1 = tmp_path / "v1"
    train_sparse_encoder(docs, pairs, idf, tiny_settings(query_weight_learning_rate=0.05), v1, base_encoder_dir, teacher)
    tok = folder_tokenizer(v1)
    scale = read_query_token_scale(v1, tok)
    moved = np.flatnonzero(scale != 1.0)
    assert len(moved) > 20
    assert set(moved) <= set(np.concatenate(tok([p["query"] for p in pairs], add_special_tokens=False)["input_ids"]))
    np.testing.assert_allclose(read_idf_json(v1 / "idf.json", tok), idf_vector(idf, tok) * scale, rtol=1e-4, atol=1e-5)

    other = [d["text"] for d in korquad_records(2, start=20)[0]]
    moved_model = with_corpus_statistics(load_sparse_encoder(v1), other)
    np.testing.assert_allclose(query_weights(moved_model), corpus_query_weights(tok, other) * scale, rtol=1e-5)

    v2 = tmp_path / "v2"
    train_sparse_encoder(docs, pairs, idf, tiny_settings(steps=2), v2, base_encoder_dir, teacher, warm_start=v1)
    np.testing.assert_allclose(read_query_token_scale(v2, tok), scale, rtol=1e-5)
