"""IDF over the encoder's own token ids, with bounded trend-keyword boosting (no Dagster here).

Formula (the BM25 / OpenSearch form, never negative):
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
where N is the number of documents and df(t) the number of documents (title + text) whose
tokenisation contains token t. Only tokens seen in the corpus get an entry.

Trend boosting multiplies idf(t) by a factor in [1, max_boost]:
- configured keywords: every token of each keyword gets ``keyword_boost``;
- dated documents: with ``recent_days`` before the newest date as the cut, a token whose share of
  recent documents is at least ``growth_ratio`` times its (add-one smoothed) share of older
  documents, in at least ``min_recent_df`` recent documents, gets 1 + ln(growth) / ln(growth_ratio) * 0.1,
  capped at max_boost.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sparse_assets.data.records import Document


class Tokenizer(Protocol):
    def __call__(self, texts: list[str], add_special_tokens: bool = ..., verbose: bool = ...) -> dict: ...
    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...

    @property
    def all_special_ids(self) -> list[int]: ...


@dataclass(frozen=True)
class TrendSettings:
    keywords: tuple[str, ...] = ()
    keyword_boost: float = 1.3
    recent_days: int = 365
    growth_ratio: float = 2.0
    min_recent_df: int = 3
    max_boost: float = 1.5


@dataclass
class IdfTable:
    idf: dict[int, float]
    idf_by_token: dict[str, float]
    boosts: dict[str, float] = field(default_factory=dict)
    documents: int = 0


def bm25_idf(df: int, n_docs: int) -> float:
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def document_frequencies(token_ids: Sequence[Sequence[int]], ignore: set[int]) -> Counter:
    return Counter(t for ids in token_ids for t in set(ids) if t not in ignore)


def compute_idf(documents: Sequence[Document], tokenizer: Tokenizer, trends: TrendSettings) -> IdfTable:
    """IDF per token id of `tokenizer` over the documents, trend boosts applied."""
    if not documents:
        raise ValueError("cannot compute IDF over an empty corpus")
    ignore = set(tokenizer.all_special_ids)
    token_ids = tokenizer([f"{d['title']} {d['text']}" for d in documents], add_special_tokens=False, verbose=False)["input_ids"]
    df = document_frequencies(token_ids, ignore)
    idf = {token: bm25_idf(count, len(documents)) for token, count in df.items()}
    boosts = _keyword_boosts(tokenizer, trends, ignore)
    for token, factor in _date_boosts(documents, token_ids, trends, ignore).items():
        boosts[token] = min(trends.max_boost, max(boosts.get(token, 1.0), factor))
    for token, factor in boosts.items():
        if token in idf:
            idf[token] *= factor
    ordered = sorted(idf)
    names = tokenizer.convert_ids_to_tokens(ordered)
    return IdfTable(
        idf={token: idf[token] for token in ordered},
        idf_by_token=dict(zip(names, (idf[t] for t in ordered))),
        boosts={tokenizer.convert_ids_to_tokens([t])[0]: f for t, f in boosts.items() if t in idf},
        documents=len(documents),
    )


def _keyword_boosts(tokenizer: Tokenizer, trends: TrendSettings, ignore: set[int]) -> dict[int, float]:
    if not trends.keywords:
        return {}
    ids = tokenizer(list(trends.keywords), add_special_tokens=False)["input_ids"]
    factor = min(trends.keyword_boost, trends.max_boost)
    return {token: factor for keyword in ids for token in keyword if token not in ignore}


def _date_boosts(
    documents: Sequence[Document], token_ids: Sequence[Sequence[int]], trends: TrendSettings, ignore: set[int]
) -> dict[int, float]:
    dates = [_parse_date(d.get("date")) for d in documents]
    known = [d for d in dates if d]
    if len(set(known)) < 2:
        return {}
    cut = max(known) - dt.timedelta(days=trends.recent_days)
    recent = [ids for ids, date in zip(token_ids, dates) if date and date > cut]
    past = [ids for ids, date in zip(token_ids, dates) if date and date <= cut]
    if not recent or not past:
        return {}
    recent_df, past_df = document_frequencies(recent, ignore), document_frequencies(past, ignore)
    boosts = {}
    for token, count in recent_df.items():
        if count < trends.min_recent_df:
            continue
        growth = (count / len(recent)) / ((past_df.get(token, 0) + 1) / (len(past) + 1))
        if growth >= trends.growth_ratio:
            boosts[token] = min(trends.max_boost, 1 + 0.1 * math.log(growth) / math.log(trends.growth_ratio))
    return boosts


def _parse_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
