"""LLM-verified synonyms: judge each (Korean, English) dictionary pair, propose expansions for
frequent corpus terms, and merge the verdicts into ``enhanced_synonyms``.

Requests are built here (plain Python) and run by the worker; results are parsed here.
fewshot style (base model): one yes/no prompt per pair, one comma-list prompt per expanded term.
chat_json style (instruction/thinking model): one JSON prompt per term (verdicts + additions).
The output keeps every verdict with its reason, so the file says why a pair is (not) there.

Whether verdicts and additions change the dictionary is a setting, by default decided by the prompt
style: an instruction/thinking model (chat_json) is trusted; the offline 270M base model is not
(measured: it rejects "경제 -> economy" and proposes "김영삼 -> kim jong-il"), so with it a "no" only
flags the pair and additions are recorded as proposals.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparse_assets.llm.parsing import ParseError, parse_json, parse_term_list, parse_yes_no
from sparse_assets.llm.prompts import SYNONYMS_SCHEMA, expand_prompt, judge_prompt, synonym_messages
from sparse_assets.llm.settings import EngineSettings, SamplingSettings

_ENGLISH = re.compile(r"^[a-z][a-z \-']{0,40}$")


@dataclass(frozen=True)
class SynonymSettings:
    max_terms: int = 100  # dictionary terms judged (most frequent in the corpus first)
    expand_terms: int = 30  # frequent corpus terms the LLM proposes English synonyms for
    max_additions: int = 3
    enforce_verdicts: bool = True  # a pair the LLM says "no" to is dropped (else flagged and kept)
    accept_additions: bool = True  # proposed synonyms join the dictionary (else recorded as proposed)


def trusted_by_default(engine: EngineSettings) -> bool:
    """Verdicts/additions change the dictionary by default only with an instruction/thinking model."""
    return engine.prompt_style == "chat_json"


def choose_terms(synonyms: Mapping[str, Sequence[str]], frequency: Mapping[str, int], limit: int) -> list[str]:
    """Dictionary terms ordered by corpus frequency (ties: alphabetical), at most ``limit``."""
    return sorted(synonyms, key=lambda t: (-frequency.get(t, 0), t))[:limit]


def synonym_request_groups(
    synonyms: Mapping[str, Sequence[str]],
    judge_terms: Sequence[str],
    expand_terms: Sequence[str],
    engine: EngineSettings,
) -> list[dict]:
    """Worker groups (name, sampling, requests) for judging and expanding."""
    if engine.prompt_style == "chat_json":
        terms = list(dict.fromkeys([*judge_terms, *expand_terms]))
        requests = [{"id": f"term#{t}", "messages": synonym_messages(t, list(synonyms.get(t, [])))} for t in terms]
        thinking_tokens = 4096 if "thinking" in engine.model.lower() else 512
        sampling = SamplingSettings(
            n=1,
            temperature=0.3,
            top_p=0.95,
            top_k=20,
            max_tokens=thinking_tokens,
            json_schema=SYNONYMS_SCHEMA if engine.structured_outputs else None,
        )
        return [{"name": "terms", "sampling": sampling.to_dict(), "requests": requests}]
    judge = [{"id": f"judge#{k}#{e}", "prompt": judge_prompt(k, e)} for k in judge_terms for e in synonyms.get(k, [])]
    expand = [{"id": f"expand#{k}", "prompt": expand_prompt(k)} for k in expand_terms]
    return [
        {"name": "judge", "sampling": SamplingSettings(n=1, temperature=0.0, max_tokens=4, stop=("\n",)).to_dict(), "requests": judge},
        {"name": "expand", "sampling": SamplingSettings(n=1, temperature=0.0, max_tokens=24, stop=("\n",)).to_dict(), "requests": expand},
    ]


def merge(
    synonyms: Mapping[str, Sequence[str]],
    results: Mapping[str, list[dict]],
    settings: SynonymSettings,
    model: str,
) -> tuple[dict, Counter]:
    """The enhanced synonyms value and counts (kept / rejected / flagged / unjudged / added /
    proposed / parse_failure).

    Value: ``{"synonyms": {korean: [english...]}, "verdicts": [{korean, english, verdict, reason,
    source}], "model": str}``; verdict is keep / reject / flagged (a "no" not enforced) /
    unjudged / added / proposed (an addition not accepted)."""
    counts: Counter = Counter({"kept": 0, "rejected": 0, "flagged": 0, "unjudged": 0, "added": 0, "proposed": 0, "parse_failure": 0})
    judged: dict[tuple[str, str], tuple[bool, str]] = {}
    additions: dict[str, list[str]] = {}

    for completion in results.get("judge", []):
        _, korean, english = completion["id"].split("#", 2)
        try:
            judged[(korean, english)] = (parse_yes_no(completion["texts"][0]), "few-shot yes/no")
        except ParseError:
            counts["parse_failure"] += 1
    for completion in results.get("expand", []):
        korean = completion["id"].split("#", 1)[1]
        additions[korean] = parse_term_list(completion["texts"][0])
    for completion in results.get("terms", []):
        korean = completion["id"].split("#", 1)[1]
        try:
            value = parse_json(completion["texts"][0])
            if not isinstance(value, dict):
                raise ParseError("wrong_schema")
        except ParseError:
            counts["parse_failure"] += 1
            continue
        for verdict in value.get("verdicts") or []:
            if isinstance(verdict, dict) and isinstance(verdict.get("english"), str) and isinstance(verdict.get("keep"), bool):
                judged[(korean, verdict["english"].strip().lower())] = (verdict["keep"], str(verdict.get("reason", ""))[:200])
        extra = value.get("additions") or []
        additions[korean] = [a.strip().lower() for a in extra if isinstance(a, str)]

    out: dict[str, list[str]] = {}
    verdicts: list[dict] = []
    for korean, english_list in synonyms.items():
        kept: list[str] = []
        for english in english_list:
            verdict = judged.get((korean, english)) or judged.get((korean, english.lower()))
            if verdict is None:
                counts["unjudged"] += 1
                kept.append(english)
                verdicts.append({"korean": korean, "english": english, "verdict": "unjudged", "reason": "", "source": "dictionary"})
            elif verdict[0]:
                counts["kept"] += 1
                kept.append(english)
                verdicts.append({"korean": korean, "english": english, "verdict": "keep", "reason": verdict[1], "source": "dictionary"})
            elif not settings.enforce_verdicts:
                counts["flagged"] += 1
                kept.append(english)
                verdicts.append({"korean": korean, "english": english, "verdict": "flagged", "reason": verdict[1], "source": "dictionary"})
            else:
                counts["rejected"] += 1
                verdicts.append({"korean": korean, "english": english, "verdict": "reject", "reason": verdict[1], "source": "dictionary"})
        if kept:
            out[korean] = kept
    for korean, proposed in additions.items():
        present = {e.lower() for e in out.get(korean, [])}
        fresh = [a for a in dict.fromkeys(proposed) if _ENGLISH.match(a) and a not in present][: settings.max_additions]
        if not fresh:
            continue
        if settings.accept_additions:
            out.setdefault(korean, []).extend(fresh)
        status = "added" if settings.accept_additions else "proposed"
        counts[status] += len(fresh)
        verdicts.extend(
            {"korean": korean, "english": a, "verdict": status, "reason": "proposed by the LLM", "source": "llm"} for a in fresh
        )
    return {"synonyms": out, "verdicts": verdicts, "model": model}, counts
