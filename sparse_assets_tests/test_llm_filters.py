"""Synthetic-query filters on real Korean (KorQuAD dev paragraphs from ../shared/data).
The queries below were written for this test (KorQuAD's questions are evaluation only)."""

import pytest

from sparse_assets.llm.filters import REASONS, FilterSettings, copy_ratio, filter_generations, squash
from sparse_assets_tests.korquad_data import korquad_records


@pytest.fixture(scope="module")
def documents():
    return list(korquad_records(6)[0][:30])


def test_copy_ratio_measures_the_longest_shared_span(documents):
    doc = documents[0]["text"]
    assert copy_ratio("임종석은 청량리경찰서에서 약 1시간 동안 조사를 받은 뒤", doc) == 1.0
    assert copy_ratio("임종석을 체포한 경찰서는 어디인가?", doc) < 0.5
    assert squash(" 임종석은,  누구?") == "임종석은누구"


def test_each_filter_drops_and_counts_real_korean(documents):
    assert documents[0]["text"].startswith("1989년 2월 15일 여의도 농민 폭력 시위")
    good = "임종석을 검거한 경찰서는 어디인가?"
    kq0 = documents[0]["id"]
    generations = [
        (kq0, f" {good}"),
        (kq0, " 임종석은 청량리경찰서에서 약 1시간 동안 조사를 받은 뒤 오전 9시 50분 경 인계되었나?"),  # copied
        (kq0, " 임종석을 검거한 경찰은 모두 몇 명이었고 어떤 장비로", "length"),  # cut by max_tokens
        (kq0, " 임종석은 1989년 12월에 검거되었다."),  # a statement, not a question
        (kq0, " 임종석은 1989년 12월에 검거되었다?"),  # a statement with a question mark
        (kq0, " 임종석의 체포는 광합성과 어떤 관계인가?"),  # a few-shot term the document lacks
        (kq0, " Who arrested the student leader in 1989?"),  # not Korean
        (kq0, " 임종석?"),  # too short
        (kq0, " " + "임종석이 " * 30 + "누구인가?"),  # too long
        (kq0, " KTX 열차는 어느 나라의 고속철도 기술을 도입했는가?"),  # few-shot example copied
        (kq0, f" {good.replace(' ', '  ')}"),  # duplicate after normalisation
        (kq0, " 한국 프로야구 최다 홈런 타자는 누구인가?"),  # the document does not come back: round-trip
        (kq0, "   \n"),  # nothing to parse
    ]
    report = filter_generations(generations, documents, "fewshot", FilterSettings(roundtrip_k=5))
    assert [c.query for c in report.accepted] == [good]
    assert report.accepted[0].doc_id == kq0
    assert report.accepted[0].scores["roundtrip_rank"] >= 1
    assert report.accepted[0].scores["hangul_ratio"] == 1.0
    assert {reason: report.dropped[reason] for reason in REASONS} == {
        "parse_failure": 1,
        "truncated": 1,
        "too_short": 1,
        "too_long": 1,
        "not_korean": 1,
        "not_question": 2,
        "fewshot_copy": 2,
        "copied_span": 1,
        "duplicate": 1,
        "roundtrip": 1,
    }
    assert report.generated == len(generations)
    assert report.accepted_per_doc == {kq0: 1}
    assert {r for r, _, _ in report.rejected_samples} == set(REASONS)


def test_json_style_parses_several_queries_per_completion(documents):
    text = (
        "The user wants Korean questions about 임종석.\n</think>\n"
        '{"queries": ["임종석이 지명수배된 혐의는 무엇인가?", "임종석의 구속영장을 발부받은 곳은?"]}'
    )
    broken = '</think>{"queries": ["임종석의 사전구속영장",'
    kq0 = documents[0]["id"]
    report = filter_generations([(kq0, text), (kq0, broken)], documents, "chat_json")
    assert sorted(c.query for c in report.accepted) == sorted(
        ["임종석이 지명수배된 혐의는 무엇인가?", "임종석의 구속영장을 발부받은 곳은?"]
    )
    assert report.dropped["parse_failure"] == 1


def test_custom_ranker_replaces_bm25(documents):
    kq1 = documents[1]["id"]
    report = filter_generations([(kq1, " 임종석을 검거한 경찰서는 어디인가?")], documents, "fewshot", ranker=lambda qs: [[kq1] for _ in qs])
    assert len(report.accepted) == 1 and report.accepted[0].scores["roundtrip_rank"] == 1.0
