"""A morphology-aware query table: still one static weight per token of the encoder's tokenizer, but
particles and endings weighed down by how the corpus's Kiwi analysis uses each piece (no Dagster here).

The idea. An inference-free sparse model scores a query with a static table over its tokenizer's
pieces (IDF today, `sparse_assets.data.idf`). XLM-R's unigram pieces cut Korean words without
regard to morphology: 임기는 ("the term", 임기 + topic particle 는) is pieced ``▁임`` + ``기는``, so the
query side gives the fragment ``기는`` (mostly the tail of a nominalised verb plus a particle) its full,
high IDF. BM25-Kiwi avoids this by indexing Kiwi's content morphemes only; a probe measured BM25 over
the XLM-R pieces of the content morphemes (particles and endings dropped by Kiwi before piecing) at
NDCG@10 0.876 on msmarco_ko against 0.808 over the pieces of the whole text. A static table cannot
run Kiwi at query time, but it can learn offline, from the corpus analysed once with Kiwi, which
pieces are content: each piece's weight is its IDF scaled by the share of its occurrences that lie
inside content morphemes,

    w(t) = idf(t) * share(t) ** power

so a particle or ending piece (``의``, ``는``, ``기는``, ``이다``) goes to (near) zero and a stem piece
(``▁임``, ``▁대통령``) keeps its IDF. This is corpus-statistics term weighting in the spirit of the
IDF prior of inference-free sparse retrievers (OpenSearch neural-sparse doc-v2/v3: query weights =
IDF of the tokenizer's pieces) with the stop-morpheme filtering of Korean BM25 (Kiwi content tags)
folded into the table instead of into a query-time analyser.

How `share(t)` is counted (`MorphTableSettings.share`):
- ``"fraction"``: the documents' whole text is pieced with character offsets; each occurrence of a
  piece contributes the fraction of its (non-space) characters that fall inside a content morpheme's
  span in Kiwi's analysis of that text; share = mean over occurrences (``기는`` of 임기는: 0.5).
- ``"whole"``: an occurrence counts only when all its characters fall inside content morphemes
  (``기는`` of 임기는: 0); share = the counted occurrences / all occurrences.
- ``"separate"``: each content morpheme's form is pieced on its own (as the BM25 probe did) and the
  whole text as usual; share = min(1, count in the content pieces / count in the whole-text pieces).

`MorphTableSettings.idf` picks the IDF: ``"all"`` (df over the documents' whole-text pieces, as
`idf.compute_idf`) or ``"content"`` (df over the pieces of their content morphemes, the IDF of the
BM25 probe; a piece never seen there gets no weight).

Where it is used: `query_table` is the `idf_statistics` asset's table (idf.json, the query side of
v1 and v2, and the IDF-only baseline's), with the default settings, picked on the dev sets' tuning
questions (bench/query_table.md: fraction, all, power 1); the trend boosts of `idf.compute_idf`
multiply it as they multiply plain IDF. `corpus_query_weights` re-fits a model's query side to another
corpus. ``query_table: idf`` in the asset's config keeps plain IDF.

Fallback: a corpus in which Kiwi finds no Hangul content morpheme (numbers or Latin script only, or no
content at all) has nothing for the analysis to separate; it gets the plain IDF table and
``fell_back=True`` with the reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sparse_assets.data.idf import IdfTable, Tokenizer, TrendSettings, bm25_idf, compute_idf, document_frequencies
from sparse_assets.data.korean import CONTENT_TAG_PREFIXES, kiwi
from sparse_assets.data.records import Document

SHARES = ("fraction", "whole", "separate")
IDFS = ("all", "content")
QUERY_TABLES = ("morphology", "idf")  # the query table the models use: IDF x content share, or plain IDF
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


class Morpheme(NamedTuple):
    form: str
    tag: str
    start: int
    end: int


@dataclass(frozen=True)
class MorphTableSettings:
    share: str = "fraction"
    idf: str = "all"
    power: float = 1.0
    content_tags: tuple[str, ...] = CONTENT_TAG_PREFIXES  # Kiwi tag prefixes that count as content
    exclude_tags: tuple[str, ...] = ()  # tags (prefixes) dropped from content, e.g. the copula VCP

    def __post_init__(self):
        if self.share not in SHARES:
            raise ValueError(f"share must be one of {SHARES}, not {self.share!r}")
        if self.idf not in IDFS:
            raise ValueError(f"idf must be one of {IDFS}, not {self.idf!r}")
        if not (self.power >= 0 and self.power < float("inf")):
            raise ValueError(f"power must be a finite number >= 0, not {self.power!r}")

    def is_content(self, tag: str) -> bool:
        return tag.startswith(self.content_tags) and not (self.exclude_tags and tag.startswith(self.exclude_tags))


@dataclass
class MorphQueryTable:
    """`weights` (token id -> query weight) is the table; `idf` and `share` its two factors (the
    share of a piece with no whole-text occurrence is 1.0). `fell_back`: the plain IDF table was
    returned instead, `reason` says why."""

    weights: dict[int, float]
    weights_by_token: dict[str, float]
    idf: dict[int, float]
    share: dict[int, float]
    documents: int
    settings: MorphTableSettings
    fell_back: bool = False
    reason: str = ""
    content_morphemes: int = 0
    stats: dict = field(default_factory=dict)


def document_texts(documents: Sequence[Document]) -> list[str]:
    """The text each document is analysed as: title and text, as `idf.compute_idf` pieces it."""
    return [f"{d['title']} {d['text']}" for d in documents]


def analyse(texts: Sequence[str]) -> list[list[Morpheme]]:
    """Kiwi's morphemes of each text with character spans (batch mode): run once, reuse across settings."""
    if not texts:
        return []
    return [[Morpheme(t.form, t.tag, t.start, t.start + t.len) for t in tokens] for tokens in kiwi().tokenize(list(texts))]


def query_table(
    documents: Sequence[Document], tokenizer: Tokenizer, trends: TrendSettings, kind: str = "morphology"
) -> tuple[IdfTable, MorphQueryTable | None]:
    """The query side of the inference-free models (the `idf_statistics` asset, idf.json):
    `idf.compute_idf`'s BM25 IDF with trend boosts, and for ``kind="morphology"`` each piece's weight
    times its content share (`MorphTableSettings()`: the variant picked on the dev sets' tuning
    questions, bench/query_table.md). The second value is the morphology analysis (None for "idf")."""
    if kind not in QUERY_TABLES:
        raise ValueError(f"query table must be one of {QUERY_TABLES}, not {kind!r}")
    table = compute_idf(documents, tokenizer, trends)
    if kind == "idf":
        return table, None
    morph = morph_query_table(document_texts(documents), tokenizer)
    weights = _weighed(table.idf, morph.share, morph.settings.power)
    by_token = dict(zip(tokenizer.convert_ids_to_tokens(list(weights)), weights.values()))
    return IdfTable(weights, by_token, table.boosts, table.documents), morph


def corpus_query_weights(texts: Sequence[str], tokenizer: Tokenizer) -> dict[int, float]:
    """The morphology query table of a corpus given as plain texts, without trend boosts (the query side
    of a model moved to another corpus)."""
    return morph_query_table(texts, tokenizer).weights


def morph_query_table(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    settings: MorphTableSettings = MorphTableSettings(),
    analysis: Sequence[Sequence[Morpheme]] | None = None,
) -> MorphQueryTable:
    """The morphology-aware query weights (see the module docstring) of `tokenizer`'s pieces over the
    corpus `texts` (`document_texts` of its documents). `analysis`: `analyse(texts)` when already
    computed."""
    if not texts:
        raise ValueError("cannot compute a query table over an empty corpus")
    texts = list(texts)
    analysis = analyse(texts) if analysis is None else analysis
    if len(analysis) != len(texts):
        raise ValueError(f"{len(analysis)} analysed texts for {len(texts)} documents")
    ignore = set(tokenizer.all_special_ids)
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    full_ids = encoded["input_ids"]
    n = len(texts)
    all_idf = {t: bm25_idf(c, n) for t, c in document_frequencies(full_ids, ignore).items()}

    contents = [[m for m in morphemes if settings.is_content(m.tag)] for morphemes in analysis]
    hangul = sum(1 for ms in contents for m in ms if _HANGUL.search(m.form))
    if not hangul:
        reason = (
            "Kiwi found no content morphemes in the corpus"
            if not any(contents)
            else "Kiwi found no Hangul content morphemes (numbers or Latin script only)"
        )
        return _table(tokenizer, all_idf, dict.fromkeys(all_idf, 1.0), n, settings, True, f"{reason}: plain IDF", hangul)

    content_ids = tokenizer([" ".join(m.form for m in ms) for ms in contents], add_special_tokens=False, verbose=False)["input_ids"]
    if settings.share == "separate":
        full_counts = Counter(t for ids in full_ids for t in ids if t not in ignore)
        content_counts = Counter(t for ids in content_ids for t in ids if t not in ignore)
        share = {t: min(1.0, content_counts.get(t, 0) / c) for t, c in full_counts.items()}
    else:
        share = _aligned_shares(texts, full_ids, encoded["offset_mapping"], contents, ignore, whole=settings.share == "whole")
    if settings.idf == "content":
        idf = {t: bm25_idf(c, n) for t, c in document_frequencies(content_ids, ignore).items()}
    else:
        idf = all_idf
    return _table(tokenizer, idf, share, n, settings, False, "", hangul)


def _aligned_shares(texts, full_ids, offsets, contents, ignore: set[int], whole: bool) -> dict[int, float]:
    """Per piece id: the mean over its whole-text occurrences of the share of its non-space
    characters inside content-morpheme spans (`whole`: 1 only when all of them are)."""
    total: Counter = Counter()
    inside: Counter = Counter()
    for text, ids, spans, morphemes in zip(texts, full_ids, offsets, contents):
        mask = bytearray(len(text))
        for m in morphemes:
            end = min(m.end, len(text))
            mask[m.start : end] = b"\x01" * max(0, end - m.start)
        for token, (a, b) in zip(ids, spans):
            if token in ignore:
                continue
            chars = [i for i in range(a, b) if not text[i].isspace()]
            if not chars:
                continue
            covered = sum(mask[i] for i in chars)
            total[token] += 1
            inside[token] += (covered == len(chars)) if whole else covered / len(chars)
    return {t: inside[t] / c for t, c in total.items()}


def _weighed(idf: dict[int, float], share: dict[int, float], power: float) -> dict[int, float]:
    """The table's formula, in token id order: each piece's IDF times its content share to `power` (a
    piece without a share keeps its IDF)."""
    return {t: idf[t] * share.get(t, 1.0) ** power for t in sorted(idf)}


def _table(tokenizer, idf, share, n, settings, fell_back, reason, hangul) -> MorphQueryTable:
    weights = _weighed(idf, share, settings.power)
    names = tokenizer.convert_ids_to_tokens(list(weights))
    zeroed = sum(1 for t in weights if weights[t] < 0.01 * idf[t]) if idf else 0
    return MorphQueryTable(
        weights=weights,
        weights_by_token=dict(zip(names, weights.values())),
        idf={t: idf[t] for t in weights},
        share={t: share.get(t, 1.0) for t in weights},
        documents=n,
        settings=settings,
        fell_back=fell_back,
        reason=reason,
        content_morphemes=hangul,
        stats={"pieces": len(weights), "pieces_below_1pct_of_idf": zeroed},
    )
