"""The thinking-trace stripper and the strict parsers, on Qwen3-style completions."""

import pytest

from sparse_assets.llm.parsing import (
    ParseError,
    parse_fewshot_question,
    parse_queries,
    parse_queries_json,
    parse_term_list,
    parse_yes_no,
    strip_thinking,
)

# Shapes recorded from Qwen3 thinking models (Thinking-2507's chat template opens <think> itself,
# so its completions start inside the trace and carry only the closing tag).
WITH_TAGS = (
    "<think>\n좋아, 문서는 이순신과 한산도 대첩에 관한 것이다. 질문 두 개를 만들어야 한다.\n</think>\n\n"
    '{"queries": ["한산도 대첩에서 조선 수군을 지휘한 장수는 누구인가?", "학익진은 어느 해전에서 쓰였나?"]}'
)
MISSING_OPEN = (
    "The user wants two Korean questions. The document says the battle happened in 1592...\n</think>\n\n"
    '{"queries": ["한산도 대첩은 몇 년에 일어났나?", "학익진을 펼친 장수는 누구인가?"]}'
)
TRUNCATED = "<think>\nOkay, let me read the document carefully. It talks about 1592 and the Japanese navy, and"
TRUNCATED_NO_OPEN = "Okay, let me think about which facts the document states. First, the"  # cut before </think>
FENCED = '<think>x</think>\n```json\n{"queries": ["세종은 훈민정음을 언제 반포했나?"]}\n```'
MALFORMED = '</think>\n{"queries": ["세종은 훈민정음을 언제 반포했나?", }'
PROSE = "</think>\n물론입니다! 다음은 질문입니다: 세종은 훈민정음을 언제 반포했나?"
WRONG_SCHEMA = '</think>{"questions": "세종은 언제?"}'


def test_strip_both_tags():
    s = strip_thinking(WITH_TAGS)
    assert s.answer.startswith('{"queries"') and "이순신" in s.thinking and not s.truncated


def test_strip_missing_opening_tag():
    s = strip_thinking(MISSING_OPEN)
    assert s.answer.startswith("{") and s.thinking.startswith("The user wants") and not s.truncated


def test_strip_unterminated_trace():
    s = strip_thinking(TRUNCATED)
    assert s.truncated and s.answer == "" and s.thinking.startswith("Okay")


def test_no_tags_is_all_answer():
    s = strip_thinking('{"queries": ["a"]}')
    assert s.answer == '{"queries": ["a"]}' and s.thinking == "" and not s.truncated


def test_parse_queries_from_each_shape():
    assert parse_queries_json(WITH_TAGS) == ["한산도 대첩에서 조선 수군을 지휘한 장수는 누구인가?", "학익진은 어느 해전에서 쓰였나?"]
    assert parse_queries_json(MISSING_OPEN) == ["한산도 대첩은 몇 년에 일어났나?", "학익진을 펼친 장수는 누구인가?"]
    assert parse_queries_json(FENCED) == ["세종은 훈민정음을 언제 반포했나?"]
    assert parse_queries_json('["가나다라마 질문?", "  "]') == ["가나다라마 질문?"]


@pytest.mark.parametrize(
    "text, reason",
    [
        (TRUNCATED, "truncated_thinking"),
        (MALFORMED, "malformed_json"),
        (PROSE, "malformed_json"),
        (WRONG_SCHEMA, "wrong_schema"),
        ("<think>생각</think>   ", "empty"),
        # a trace cut off before </think> without an opening tag looks like a (non-JSON) answer
        (TRUNCATED_NO_OPEN, "malformed_json"),
    ],
)
def test_parse_failures_have_reasons(text, reason):
    with pytest.raises(ParseError) as info:
        parse_queries_json(text)
    assert info.value.reason == reason


def test_fewshot_question_takes_first_line_without_label():
    assert parse_fewshot_question(" 질문: 이순신은 어느 해전에서 승리했나?\n\n제목: 다음") == "이순신은 어느 해전에서 승리했나?"
    assert parse_queries(" 노아의 방주는 무엇을 의미하는가?", "fewshot") == ["노아의 방주는 무엇을 의미하는가?"]
    with pytest.raises(ParseError):
        parse_fewshot_question("   \n")


def test_yes_no_and_term_lists():
    assert parse_yes_no(" 예") is True
    assert parse_yes_no(" 아니오\n") is False
    assert parse_yes_no("</think>yes") is True
    with pytest.raises(ParseError):
        parse_yes_no(" 모르겠다")
    assert parse_term_list(" hospital, Clinic., 병원, infirmary\n한국어") == ["hospital", "clinic", "infirmary"]
