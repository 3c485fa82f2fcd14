"""Parse raw LLM completions: strip the thinking trace, then parse strictly.

Qwen3 thinking models put their reasoning in ``<think>...</think>`` before the answer. Three shapes
occur and all are handled:
- both tags: ``<think>reasoning</think>answer``;
- no opening tag (Qwen3 Thinking-2507: the chat template already opened it): ``reasoning</think>answer``;
- unterminated (cut off by ``max_tokens`` while still thinking): ``<think>reasoning...`` -> no answer.
Parsing is strict: the answer must be one JSON value (optionally inside a single ```json fence);
anything else is a parse failure with a reason, never a guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sparse_assets.llm.prompts import QUESTION_LABEL

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class ParseError(ValueError):
    """A completion that cannot be used; ``reason`` is the drop-reason key counted in metadata."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Stripped:
    answer: str
    thinking: str
    truncated: bool  # the trace never ended: there is no answer


def strip_thinking(text: str) -> Stripped:
    """Split a completion into (thinking, answer); see the module docstring for the shapes."""
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        thinking = text[:close]
        open_at = thinking.find(THINK_OPEN)
        if open_at >= 0:
            thinking = thinking[open_at + len(THINK_OPEN) :]
        return Stripped(text[close + len(THINK_CLOSE) :].strip(), thinking.strip(), False)
    open_at = text.find(THINK_OPEN)
    if open_at >= 0:
        return Stripped("", text[open_at + len(THINK_OPEN) :].strip(), True)
    return Stripped(text.strip(), "", False)


def parse_json(text: str) -> Any:
    """One strict JSON value from a (thinking-stripped) answer, optionally in one ``` fence."""
    stripped = strip_thinking(text)
    if stripped.truncated:
        raise ParseError("truncated_thinking", "the thinking trace never ended (raise max_tokens)")
    answer = stripped.answer
    if not answer:
        raise ParseError("empty", "no answer after the thinking trace")
    fenced = _FENCE.match(answer)
    if fenced:
        answer = fenced.group(1).strip()
    try:
        return json.loads(answer)
    except json.JSONDecodeError as exc:
        raise ParseError("malformed_json", f"{exc.msg} at char {exc.pos}") from None


def parse_queries_json(text: str) -> list[str]:
    """``{"queries": [str, ...]}`` (or a bare list of strings) -> the queries, stripped."""
    value = parse_json(text)
    if isinstance(value, dict):
        value = value.get("queries")
    if not isinstance(value, list) or not value or not all(isinstance(q, str) for q in value):
        raise ParseError("wrong_schema", 'expected {"queries": [string, ...]}')
    return [q.strip() for q in value if q.strip()]


_LABEL = re.compile(rf"^\s*(?:{QUESTION_LABEL}|Q|질문\s*\d*)\s*[:：.]\s*")


def parse_fewshot_question(text: str) -> str:
    """The first line of a few-shot completion, without a repeated ``질문:`` label."""
    stripped = strip_thinking(text)
    if stripped.truncated:
        raise ParseError("truncated_thinking")
    line = stripped.answer.split("\n", 1)[0].strip()
    line = _LABEL.sub("", line).strip().strip('"').strip()
    if not line:
        raise ParseError("empty", "blank completion")
    return line


def parse_queries(text: str, prompt_style: str) -> list[str]:
    """Queries from one completion, by prompt style (``fewshot``: one line; ``chat_json``: JSON)."""
    if prompt_style == "fewshot":
        return [parse_fewshot_question(text)]
    if prompt_style == "chat_json":
        return parse_queries_json(text)
    raise ValueError(f"unknown prompt style {prompt_style!r}")


_YES = ("예", "네", "yes", "true", "같음", "맞음")
_NO = ("아니오", "아니요", "아니", "no", "false", "다름")


def parse_yes_no(text: str) -> bool:
    """A few-shot verdict (``예`` / ``아니오``, or yes/no) from the first word of the answer."""
    answer = strip_thinking(text).answer.split("\n", 1)[0].strip().lower()
    for word in _NO:  # "아니오" starts with "아니": check the negatives first
        if answer.startswith(word):
            return False
    for word in _YES:
        if answer.startswith(word):
            return True
    raise ParseError("no_verdict", f"expected 예/아니오, got {answer[:20]!r}")


def parse_term_list(text: str) -> list[str]:
    """A comma-separated line of (English) terms from a few-shot expansion."""
    line = strip_thinking(text).answer.split("\n", 1)[0]
    terms = [t.strip().strip(".").lower() for t in line.split(",")]
    return [t for t in terms if t and re.fullmatch(r"[a-z][a-z \-']{0,40}", t)]
