"""The morphology-aware query table (sparse_assets.data.morph_idf) on real Korean text."""

import pytest

from sparse_assets.data import idf, morph_idf
from sparse_assets.defs.assets.base_model import morphology_metadata
from sparse_assets_tests.korquad_data import korquad_records


def doc(i, text, title=""):
    return {"id": f"d{i}", "title": title, "text": text, "source": "t"}


TERMS = [
    doc(0, "대통령의 임기는 5년이다."),
    doc(1, "국회의원의 임기는 4년이다."),
    doc(2, "임기 중에 장관이 사임했다."),
    doc(3, "서울은 대한민국의 수도이다."),
    doc(4, "부산은 대한민국의 항구 도시이다."),
]


@pytest.fixture(scope="module")
def tokenizer(base_encoder_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_encoder_dir))


def test_the_ending_piece_of_imgineun_gets_no_weight_and_the_stem_keeps_its_idf(tokenizer):
    assert tokenizer.convert_ids_to_tokens(tokenizer("임기는", add_special_tokens=False)["input_ids"]) == ["▁임", "기는"]
    plain = idf.compute_idf(TERMS, tokenizer, idf.TrendSettings()).idf_by_token
    for share in ("whole", "separate"):
        table = morph_idf.morph_query_table(morph_idf.document_texts(TERMS), tokenizer, morph_idf.MorphTableSettings(share=share))
        assert not table.fell_back and table.reason == ""
        weights = table.weights_by_token
        assert weights["기는"] == pytest.approx(0.0, abs=1e-9)  # 임기 + 는: never wholly inside a content morpheme
        assert weights["▁임"] == pytest.approx(plain["▁임"])  # the stem of 임기 keeps its IDF
        assert weights["▁대통령"] == pytest.approx(plain["▁대통령"])
        assert weights["의"] == pytest.approx(0.0, abs=1e-9)  # the genitive particle
    # "fraction" counts the share of characters: 기는 is half inside 임기, the particle 의 not at all
    fraction = morph_idf.morph_query_table(morph_idf.document_texts(TERMS), tokenizer, morph_idf.MorphTableSettings(share="fraction"))
    assert fraction.share[tokenizer.convert_tokens_to_ids("기는")] == pytest.approx(0.5)
    assert fraction.weights_by_token["의"] == pytest.approx(0.0, abs=1e-9)
    assert fraction.weights_by_token["▁임"] == pytest.approx(plain["▁임"])


def test_power_and_the_content_idf_shape_the_weights(tokenizer):
    base = morph_idf.morph_query_table(morph_idf.document_texts(TERMS), tokenizer, morph_idf.MorphTableSettings(share="fraction"))
    squared = morph_idf.morph_query_table(
        morph_idf.document_texts(TERMS), tokenizer, morph_idf.MorphTableSettings(share="fraction", power=2.0)
    )
    token = tokenizer.convert_tokens_to_ids("기는")
    assert squared.weights[token] == pytest.approx(base.idf[token] * 0.25)
    content = morph_idf.morph_query_table(
        morph_idf.document_texts(TERMS), tokenizer, morph_idf.MorphTableSettings(share="whole", idf="content")
    )
    # df over the content morphemes' pieces: 기는 never occurs there, so it gets no entry at all
    assert "기는" not in content.weights_by_token and "▁임" in content.weights_by_token
    with pytest.raises(ValueError, match="share must be one of"):
        morph_idf.MorphTableSettings(share="tags")
    with pytest.raises(ValueError, match="power"):
        morph_idf.MorphTableSettings(power=float("nan"))


def test_the_query_table_is_the_boosted_idf_times_the_content_share(tokenizer):
    trends = idf.TrendSettings(keywords=("대통령",), keyword_boost=1.5)
    plain, analysis = morph_idf.query_table(TERMS, tokenizer, trends, "idf")
    assert analysis is None and plain.idf == idf.compute_idf(TERMS, tokenizer, trends).idf
    table, analysis = morph_idf.query_table(TERMS, tokenizer, trends)
    president = tokenizer.convert_tokens_to_ids("▁대통령")
    assert plain.idf[president] == pytest.approx(1.5 * analysis.idf[president])  # the keyword boost ...
    assert table.idf[president] == pytest.approx(plain.idf[president])  # ... kept: a noun is all content
    assert table.idf_by_token["▁대통령"] == pytest.approx(table.idf[president])
    assert table.idf_by_token["의"] == pytest.approx(0.0, abs=1e-9) and plain.idf_by_token["의"] > 0.1
    assert table.idf_by_token["기는"] == pytest.approx(0.5 * plain.idf_by_token["기는"])
    assert table.boosts == plain.boosts and table.documents == len(TERMS)
    with pytest.raises(ValueError, match="query table must be one of"):
        morph_idf.query_table(TERMS, tokenizer, trends, "tags")


@pytest.mark.parametrize(
    "texts",
    [["Hello world 2024", "The quick brown fox", "Release 3.1 notes"], ["2024 12 31", "3.14 2.71", "100 200 300"]],
    ids=["latin", "numbers"],
)
def test_a_corpus_without_korean_content_falls_back_to_plain_idf_and_says_so(tokenizer, texts):
    documents = [doc(i, t) for i, t in enumerate(texts)]
    table = morph_idf.morph_query_table(morph_idf.document_texts(documents), tokenizer)
    plain = idf.compute_idf(documents, tokenizer, idf.TrendSettings())
    assert table.fell_back and "no Hangul content morphemes" in table.reason and "plain IDF" in table.reason
    assert table.weights == pytest.approx(plain.idf)
    assert table.weights_by_token == pytest.approx(plain.idf_by_token)
    # the asset's table (idf.json) is then the plain IDF table, and its metadata says why
    served, analysis = morph_idf.query_table(documents, tokenizer, idf.TrendSettings())
    assert served.idf_by_token == pytest.approx(plain.idf_by_token) and analysis.fell_back
    metadata = morphology_metadata("morphology", analysis)
    assert metadata["query_table"] == "idf (morphology fell back)"
    assert "no Hangul content morphemes" in metadata["morphology_fallback"]


def test_on_korquad_particles_and_endings_fall_and_nouns_keep_their_idf(tokenizer):
    documents = list(korquad_records(4)[0])
    table = morph_idf.morph_query_table(morph_idf.document_texts(documents), tokenizer, morph_idf.MorphTableSettings(share="whole"))
    assert not table.fell_back
    ratio = {t: table.weights_by_token[t] / table.idf[tokenizer.convert_tokens_to_ids(t)] for t in table.weights_by_token}
    for particle in ("의", "는", "을", "를", "에서", "으로"):
        if particle in ratio:
            assert ratio[particle] < 0.1, (particle, ratio[particle])
    nouns = [t for t in ("▁대통령", "▁음악", "▁교향곡", "▁작곡") if t in ratio]
    assert nouns and all(ratio[t] > 0.9 for t in nouns), {t: ratio[t] for t in nouns}
    assert table.stats["pieces_below_1pct_of_idf"] > 0
