"""Prompts for the LLM step. Two styles, chosen by the engine settings (``prompt_style``):

- ``fewshot``: raw text completion for a *base* model (the offline Gemma 3 270M): a few
  document -> question examples, then the target document; the model continues with one question
  line (stop at newline). Several questions per document come from sampling (``n``).
- ``chat_json``: chat messages for an instruction/thinking model (production Qwen3): ask for
  ``{"queries": [...]}`` in JSON (vLLM structured outputs enforce the schema where available).

The few-shot examples are written for this project (they are *not* KorQuAD questions: those are
evaluation only). ``FEWSHOT_QUESTIONS`` lets the filters drop answers that copy an example.
"""

from __future__ import annotations

from collections.abc import Sequence

# (title, passage, question) written for this project.
FEWSHOT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "제주 감귤",
        (
            "제주도는 따뜻한 해양성 기후 덕분에 감귤 재배가 활발하다. 조선 시대에는 감귤을 한양의 "
            "임금에게 진상하였고, 오늘날에는 한라봉과 천혜향 같은 만감류 품종도 많이 재배된다."
        ),
        "조선 시대 제주도의 감귤은 누구에게 진상되었나?",
    ),
    (
        "경부고속철도",
        (
            "경부고속철도는 서울과 부산을 잇는 고속철도 노선으로 2004년 4월에 1단계 구간이 개통되었다. "
            "이 노선에는 프랑스의 TGV 기술을 도입한 KTX 열차가 운행된다."
        ),
        "KTX 열차는 어느 나라의 고속철도 기술을 도입했는가?",
    ),
    (
        "광합성",
        (
            "광합성은 식물이 빛 에너지를 이용해 이산화탄소와 물로부터 포도당을 만드는 과정이다. "
            "이 과정은 잎의 엽록체에서 일어나며 부산물로 산소가 방출된다."
        ),
        "식물의 광합성은 세포의 어느 부분에서 일어나는가?",
    ),
)
FEWSHOT_QUESTIONS: tuple[str, ...] = tuple(q for _, _, q in FEWSHOT_EXAMPLES)
# Distinctive terms of the examples: a query that uses one its own document lacks has leaked from
# the examples (the 270M model does this: "닉슨 대통령의 행동은 광합성과 관련하여 ...").
FEWSHOT_MARKERS: tuple[str, ...] = (
    "제주",
    "감귤",
    "한라봉",
    "천혜향",
    "만감류",
    "진상",
    "경부고속철도",
    "고속철도",
    "KTX",
    "TGV",
    "광합성",
    "엽록체",
    "포도당",
    "이산화탄소",
)

DOC_LABEL, QUESTION_LABEL = "문서", "질문"
# What a few-shot completion may be, as vLLM's structured output: one line with no sentence end but its
# closing "?", and that "?" not after a space or the declarative -다 ending ("…했다?" is a statement).
# The model still chooses where the question ends; only the ways to end as a statement are closed.
QUESTION_LINE = r"[^\n.?]+[^\n.?다 ]\?"


def truncate(text: str, max_chars: int) -> str:
    """The document cut to ``max_chars`` at a sentence or word boundary (prompts stay short on CPU)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max(head.rfind(". "), head.rfind("다."))
    if cut >= max_chars // 2:
        return head[: cut + (2 if head[cut : cut + 2] == "다." else 1)].strip()
    space = head.rfind(" ")
    return head[:space].strip() if space > 0 else head


def fewshot_prompt(title: str, text: str, max_doc_chars: int = 600, shots: int = 3) -> str:
    """Few-shot completion prompt; the model writes one question after the last ``질문:``."""
    blocks = [f"제목: {t}\n{DOC_LABEL}: {p}\n{QUESTION_LABEL}: {q}" for t, p, q in FEWSHOT_EXAMPLES[:shots]]
    blocks.append(f"제목: {title}\n{DOC_LABEL}: {truncate(text, max_doc_chars)}\n{QUESTION_LABEL}:")
    return "\n\n".join(blocks)


QUERY_SYSTEM = (
    "You write search queries for a Korean retrieval system. Given a Korean document, write "
    "natural Korean questions that a person could ask and that this document answers. Each question "
    "must be answerable from the document alone, must not copy a sentence from it, and must be "
    'written in Korean. Reply with JSON only: {"queries": ["...", ...]}.'
)

QUERIES_SCHEMA = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["queries"],
    "additionalProperties": False,
}


def query_messages(title: str, text: str, n: int, max_doc_chars: int = 2000) -> list[dict[str, str]]:
    """Chat messages asking for ``n`` Korean questions as JSON."""
    user = (
        f"제목: {title}\n{DOC_LABEL}: {truncate(text, max_doc_chars)}\n\n"
        f"Write {n} different Korean questions about this document. JSON only."
    )
    return [{"role": "system", "content": QUERY_SYSTEM}, {"role": "user", "content": user}]


# --- synonyms -------------------------------------------------------------------------------

JUDGE_FEWSHOT: tuple[tuple[str, str, str], ...] = (
    ("자동차", "car", "예"),
    ("학교", "river", "아니오"),
    ("도서관", "library", "예"),
    ("바다", "mountain", "아니오"),
)
EXPAND_FEWSHOT: tuple[tuple[str, str], ...] = (
    ("병원", "hospital, clinic, infirmary"),
    ("음악", "music, tune, melody"),
)

SYNONYM_SYSTEM = (
    "You check a Korean-English dictionary for a search engine. For a Korean term and English "
    "candidates, decide for each candidate whether it means the same as the Korean term in general "
    "usage, give a short reason, and propose up to 3 more English synonyms. Reply with JSON only: "
    '{"verdicts": [{"english": str, "keep": bool, "reason": str}], "additions": [str]}.'
)

SYNONYMS_SCHEMA = {
    "type": "object",
    "properties": {
        "verdicts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "english": {"type": "string"},
                    "keep": {"type": "boolean"},
                    "reason": {"type": "string"},
                },
                "required": ["english", "keep", "reason"],
            },
        },
        "additions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["verdicts", "additions"],
}


def judge_prompt(korean: str, english: str) -> str:
    """Few-shot yes/no prompt (base model): does ``english`` mean ``korean``? Answer 예 / 아니오."""
    shots = "\n".join(f"한국어: {k}\n영어: {e}\n같은 뜻: {a}\n" for k, e, a in JUDGE_FEWSHOT)
    return f"{shots}\n한국어: {korean}\n영어: {english}\n같은 뜻:"


def expand_prompt(korean: str) -> str:
    """Few-shot prompt (base model): English synonyms of a Korean term, comma separated."""
    shots = "\n".join(f"한국어: {k}\n영어 동의어: {e}\n" for k, e in EXPAND_FEWSHOT)
    return f"{shots}\n한국어: {korean}\n영어 동의어:"


def synonym_messages(korean: str, candidates: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages (instruction model): verdict per candidate + additions, as JSON."""
    user = f"Korean term: {korean}\nEnglish candidates: {json_list(candidates)}\nJSON only."
    return [{"role": "system", "content": SYNONYM_SYSTEM}, {"role": "user", "content": user}]


def json_list(items: Sequence[str]) -> str:
    import json

    return json.dumps(list(items), ensure_ascii=False)
