"""Pseudo-queries from documents and negative mining (BM25 hard negatives + random negatives).

How the pseudo-queries are made (one record per kind, per document, when the kind applies):
- ``title``: the document title alone, only when no other document shares it (else it is ambiguous).
- ``lead``: the nouns of the document's first sentence (Kiwi NNG/NNP), in order, at most ``max_terms``.
- ``keynoun``: the title plus the ``max_terms`` nouns of one other sentence (seeded choice) that are
  rarest in the corpus (highest document-frequency IDF), in sentence order; ``keynouns_per_document``
  of them, from different sentences where the document has them.
- ``span``: word spans of the document's sentences (``min_span_words`` to ``max_span_words`` words
  from a seeded start, each word then dropped with ``span_word_dropout``): the function words, verbs
  and particles of a sentence as people write them in questions, which noun queries never have. An
  unsupervised stand-in for real questions in the spirit of the Inverse Cloze Task (Lee et al., 2019,
  "Latent Retrieval for Weakly Supervised Open Domain Question Answering"). ``span_count`` says how
  many a document gets: ``spans_per_document`` each ("fixed"), or as many as it has sentences beyond
  its noun queries ("uncovered_sentences"); either way each span's sentence is a seeded draw.
- **question frames**: a seeded ``question_frame_share`` of the span and key-noun queries is wrapped
  in a Korean question form (``QUESTION_FRAMES``: 무엇, 누구, 언제, 어디, 몇, 얼마, 이름 ... in the plain
  written form, "…인가?", and the polite spoken one, "…인가요?", "…나요?", "…입니까?", with a question
  mark). People's questions carry such words; documents rarely do, so the corpus IDF rates them among
  the most informative tokens, and a student that never met them in training expands documents onto
  them at random (on KorQuAD questions outside the benchmark's sample, "?", 누구 and 몇 were the
  tokens that most often lifted a wrong document above the right one). Framed queries teach the
  document side that the teacher ignores them.
Training on noun queries alone teaches the document side that only nouns matter (the sparsity penalty
then removes every other token), which loses on real questions; the spans keep the rest. Real
questions stay evaluation only (``eval_queries``); the LLM step adds natural questions.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from sparse_assets.bounds import Ge, Le, Lt, check_bounds
from sparse_assets.data.korean import nouns, split_sentences
from sparse_assets.data.records import Document, QDPair
from sparse_assets.evaluation.bm25 import KiwiBM25

QUERY_KINDS = ("title", "lead", "keynoun", "span")
# Kinds that copy a run of the document's words: an exact-match model (IDF-only) retrieves them almost
# perfectly (KorQuAD validation: IDF-only NDCG@10 0.992 on spans vs 0.961 for a trained v1 that beats
# it on human questions), so they train but never validate or evaluate.
EXTRACTIVE_KINDS = ("span",)
FRAMED_KINDS = ("span", "keynoun")
QUESTION_FRAMES = (
    "{}은 무엇인가?",
    "{}는 누구인가?",
    "{} 언제인가?",
    "{}은 어디인가?",
    "{}은 몇 개인가?",
    "{}의 이름은?",
    "{}을 무엇이라 하는가?",
    "{}는 어느 것인가?",
    "{} 누가 했나?",
    "{}는 몇 년인가?",
    "{}은 왜 그런가?",
    "{}은 어떻게 되었나?",
    "{}은 무엇인가요?",
    "{}는 누구인가요?",
    "{}는 언제인가요?",
    "{}은 어디에 있나요?",
    "{}은 얼마인가요?",
    "{}에는 몇 개가 있나요?",
    "{}란 무엇입니까?",
    "{}은 얼마나 걸리나요?",
    "{}에는 어떤 종류가 있나요?",
    "{}은 어떻게 하나요?",
    "{}의 뜻은 무엇인가요?",
    "{}은 왜 그런가요?",
)


@dataclass(frozen=True)
class PseudoQuerySettings:
    kinds: tuple[str, ...] = QUERY_KINDS
    max_terms: Annotated[int, Ge(1)] = 5
    min_terms: Annotated[int, Ge(1)] = 2
    keynouns_per_document: Annotated[int, Ge(0)] = 2
    spans_per_document: Annotated[int, Ge(0)] = 16
    min_span_words: Annotated[int, Ge(1)] = 3
    max_span_words: Annotated[int, Ge(1)] = 10
    span_word_dropout: Annotated[float, Ge(0), Lt(1)] = 0.2
    hard_negatives: Annotated[int, Ge(0)] = 3
    random_negatives: Annotated[int, Ge(0)] = 1
    bm25_depth: Annotated[int, Ge(1)] = 30
    # At most this many pairs, spans last (`_within_budget`): the default recipe trains 3,000 steps x 8
    # queries, so more pairs than that are never seen once, yet each one costs a dense teacher encoding
    # (msmarco_ko's 7,279 passages make about 70,000). 0 keeps every pair.
    max_pairs: Annotated[int, Ge(0)] = 24_000
    # Spans only top the other kinds up to this many pairs (0: up to `max_pairs`): they are the filler of a
    # corpus too small to give enough noun queries (`_within_budget`).
    span_fill_to: Annotated[int, Ge(0)] = 16_000
    # "fixed": `spans_per_document` each; "uncovered_sentences": as many as the document has sentences
    # beyond its noun queries (its usable sentences minus the title, lead and key-noun queries it gave)
    span_count: Literal["fixed", "uncovered_sentences"] = "fixed"
    question_frame_share: Annotated[float, Ge(0), Le(1)] = 0.3
    seed: Annotated[int, Ge(0)] = 13

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.min_terms > self.max_terms or self.min_span_words > self.max_span_words:
            raise ValueError(
                f"min_terms / min_span_words must not exceed max_terms / max_span_words, got {self.min_terms}/{self.max_terms} and {self.min_span_words}/{self.max_span_words}"
            )


def document_bm25(documents: Sequence[Document]) -> KiwiBM25:
    """BM25 over each document's title and text."""
    return KiwiBM25([d["id"] for d in documents], [f"{d['title']} {d['text']}" for d in documents])


def pseudo_queries(documents: Sequence[Document], settings: PseudoQuerySettings) -> list[tuple[str, str, str]]:
    """(query, positive_id, kind) for every document and applicable kind, deduplicated by query text
    (before a share of them is put in a question frame, so a span drawn twice trains once), then cut
    to the budget (`_within_budget`)."""
    unknown = set(settings.kinds) - set(QUERY_KINDS)
    if unknown:
        raise ValueError(f"unknown pseudo-query kinds {sorted(unknown)}; choose from {QUERY_KINDS}")
    rng, frame_rng = random.Random(settings.seed), random.Random(settings.seed + 1)
    title_counts = Counter(d["title"] for d in documents)
    doc_sentences = split_sentences([d["text"] for d in documents])
    flat = [s for sents in doc_sentences for s in sents]
    flat_nouns = iter(nouns(flat))
    sentence_nouns = [[next(flat_nouns) for _ in sents] for sents in doc_sentences]
    idf = _noun_idf(sentence_nouns)

    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for doc, sentences, per_sentence in zip(documents, doc_sentences, sentence_nouns):
        made = [
            (kind, _noun_queries(kind, doc, per_sentence, idf, title_counts, settings, rng))
            for kind in settings.kinds
            if kind not in EXTRACTIVE_KINDS
        ]
        if "span" in settings.kinds:
            made.append(("span", _span_queries(sentences, sum(len(q) for _, q in made), settings, rng)))
        for kind, queries in made:
            for query in queries:
                if query in seen:
                    continue
                seen.add(query)
                if kind in FRAMED_KINDS and frame_rng.random() < settings.question_frame_share:
                    query = frame_rng.choice(QUESTION_FRAMES).format(query.rstrip(".,;:!?"))
                out.append((query, doc["id"], kind))
    return _within_budget(out, settings)


def _within_budget(queries: list[tuple[str, str, str]], settings: PseudoQuerySettings) -> list[tuple[str, str, str]]:
    """The (query, positive_id, kind) triples training gets, in their order: every title, lead and
    key-noun query (a seeded sample of `max_pairs` of them when there are more), then a seeded sample
    of the extractive spans while the pairs number fewer than `span_fill_to` (and `max_pairs`).

    Spans are the kind a document yields most of (16 each), and they pull the two dev sets apart
    (their tuning questions, outside the benchmark's sample): KorQuAD's 960 paragraphs give 2,867 noun
    queries, msmarco_ko's 7,266 passages 18,605, so the spans fill KorQuAD and a large corpus trains on
    nouns alone. With the lexical floor (bench/span_mix.md, NDCG@10): KorQuAD's paragraphs no longer
    need the spans (0.9568 without, 0.9573 filling 16,000, 0.9575 with one per uncovered sentence;
    3,000 steps over the noun queries alone 0.9499), its sentence task does (0.8290 / 0.8381 /
    0.8356), and msmarco_ko's questions still lose to them (0.9014 without, 0.8953 with one per
    uncovered sentence, -0.0061 [-0.0084, -0.0037]). A count from each document's length is no better
    than the fill line on either set."""
    rng = random.Random(settings.seed)
    others = [i for i, triple in enumerate(queries) if triple[2] not in EXTRACTIVE_KINDS]
    spans = [i for i, triple in enumerate(queries) if triple[2] in EXTRACTIVE_KINDS]
    if settings.max_pairs and len(others) > settings.max_pairs:
        others = rng.sample(others, settings.max_pairs)
    limits = [limit for limit in (settings.max_pairs, settings.span_fill_to) if limit]
    span_room = max(0, min(limits) - len(others)) if limits else len(spans)
    kept = others + (rng.sample(spans, span_room) if span_room < len(spans) else spans)
    return [queries[i] for i in sorted(kept)]


def _noun_idf(sentence_nouns: list[list[list[str]]]) -> dict[str, float]:
    df = Counter(noun for doc in sentence_nouns for noun in {n for sent in doc for n in sent})
    n_docs = max(len(sentence_nouns), 1)
    return {noun: math.log(1 + n_docs / count) for noun, count in df.items()}


def _noun_queries(
    kind: str,
    doc: Document,
    per_sentence: list[list[str]],
    idf: dict[str, float],
    title_counts: Counter,
    settings: PseudoQuerySettings,
    rng: random.Random,
) -> list[str]:
    if kind == "title":
        return [doc["title"]] if doc["title"] and title_counts[doc["title"]] == 1 else []
    if kind == "lead":
        terms = list(dict.fromkeys(per_sentence[0]))[: settings.max_terms] if per_sentence else []
        return [" ".join(terms)] if len(terms) >= settings.min_terms else []
    candidates = [sent for sent in per_sentence[1:] if len(set(sent)) >= settings.min_terms]  # keynoun
    picked = rng.sample(candidates, min(settings.keynouns_per_document, len(candidates)))
    return [query for sentence in picked if (query := _keynoun_query(doc, sentence, idf, settings))]


def _keynoun_query(doc: Document, sentence_nouns: list[str], idf: dict[str, float], settings: PseudoQuerySettings) -> str | None:
    sentence = list(dict.fromkeys(sentence_nouns))
    rarest = set(sorted(sentence, key=lambda n: -idf.get(n, 0.0))[: settings.max_terms])
    terms = [n for n in sentence if n in rarest and n not in doc["title"]]
    return " ".join([doc["title"], *terms]).strip() if len(terms) >= settings.min_terms else None


def _span_queries(sentences: list[str], noun_queries: int, settings: PseudoQuerySettings, rng: random.Random) -> list[str]:
    """Word spans of seeded sentences (with replacement when the document has fewer sentences than
    spans), each word kept with probability 1 - span_word_dropout (at least min_span_words kept); as
    many as `span_count` gives the document beside its `noun_queries`."""
    usable = [s.split() for s in sentences if len(s.split()) >= settings.min_span_words]
    count = settings.spans_per_document if settings.span_count == "fixed" else max(0, len(usable) - noun_queries)
    spans = []
    for _ in range(count if usable else 0):
        words = rng.choice(usable)
        length = rng.randint(settings.min_span_words, settings.max_span_words)
        start = rng.randint(0, max(0, len(words) - length))
        span = words[start : start + length]
        kept = [w for w in span if rng.random() >= settings.span_word_dropout]
        spans.append(" ".join(kept if len(kept) >= settings.min_span_words else span[: settings.min_span_words]))
    return spans


def mine_negatives(
    queries: Sequence[str],
    positive_ids: Sequence[str],
    documents: Sequence[Document],
    bm25: KiwiBM25,
    settings: PseudoQuerySettings,
) -> list[list[str]]:
    """Per query: up to ``hard_negatives`` BM25 top hits that are not the positive (nor a document
    with the positive's exact text), then ``random_negatives`` random other documents."""
    rng = random.Random(settings.seed)
    text_of = {d["id"]: d["text"] for d in documents}
    all_ids = list(text_of)
    hits = bm25.search(list(queries), k=settings.bm25_depth)
    negatives = []
    for positive, ranked in zip(positive_ids, hits):
        same_text = text_of[positive]
        hard = [doc_id for doc_id, _ in ranked if doc_id != positive and text_of[doc_id] != same_text]
        chosen = hard[: settings.hard_negatives]
        pool_size = len(all_ids) - 1 - len(chosen)
        for _ in range(min(settings.random_negatives, max(pool_size, 0))):
            pick = rng.choice(all_ids)
            while pick == positive or pick in chosen:
                pick = rng.choice(all_ids)
            chosen.append(pick)
        negatives.append(chosen)
    return negatives


def build_pairs(documents: Sequence[Document], settings: PseudoQuerySettings, source: str = "pseudo") -> list[QDPair]:
    """Pseudo-queries with their positives and mined negatives, ready for training."""
    triples = pseudo_queries(documents, settings)
    bm25 = document_bm25(documents)
    negatives = mine_negatives([q for q, _, _ in triples], [p for _, p, _ in triples], documents, bm25, settings)
    return [
        QDPair(query=query, positive_id=positive, negative_ids=negs, source=f"{source}:{kind}")
        for (query, positive, kind), negs in zip(triples, negatives)
    ]


def synonym_substituted_pairs(pairs: Sequence[QDPair], synonyms: dict[str, list[str]], share: float, seed: int) -> list[QDPair]:
    """Extra training pairs: for a seeded `share` of the pairs whose query holds a word with an English
    synonym (whole word, or a word starting with it as in 학교에서), a copy with that word replaced by its
    first synonym, so the document side learns to score English renderings of Korean terms."""
    rng = random.Random(seed)
    terms = sorted(synonyms, key=len, reverse=True)
    extra: list[QDPair] = []
    for pair in pairs:
        if rng.random() >= share:
            continue
        words = pair["query"].split()
        for position, word in enumerate(words):
            term = next((t for t in terms if word.startswith(t) and synonyms[t]), None)
            if term:
                words[position] = synonyms[term][0]
                extra.append(
                    QDPair(
                        query=" ".join(words),
                        positive_id=pair["positive_id"],
                        negative_ids=list(pair["negative_ids"]),
                        source=f"synonym:{pair['source']}",
                    )
                )
                break
    return extra
