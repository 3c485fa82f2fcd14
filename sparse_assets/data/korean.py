"""Korean text helpers: Kiwi morphemes (batch mode), sentences, Hangul ratio."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

from kiwipiepy import Kiwi

# Tags kept as "content" morphemes for BM25 and key-noun queries:
# nouns (N*), verbs/adjectives (V*), roots (XR), foreign/hanja/number (SL, SH, SN), adverbs (MA*).
CONTENT_TAG_PREFIXES = ("N", "V", "XR", "SL", "SH", "SN", "MA")
NOUN_TAGS = ("NNG", "NNP")

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"\w", re.UNICODE)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def kiwi() -> Kiwi:
    """One Kiwi analyser per process (loading its model takes about a second)."""
    return Kiwi()


def normalize_text(text: str) -> str:
    """Unicode NFC, one space for any run of whitespace, stripped."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def hangul_ratio(text: str) -> float:
    """Share of letters (\\w characters, digits excluded) that are Hangul. Each distinct character
    is tested once (a text has a few thousand), not each of its millions of occurrences."""
    letters = {c: n for c, n in Counter(text).items() if _LETTER.match(c) and not c.isdigit()}
    if not letters:
        return 0.0
    return sum(n for c, n in letters.items() if _HANGUL.match(c)) / sum(letters.values())


def morphemes(texts: Sequence[str], content_only: bool = True) -> list[list[str]]:
    """Kiwi morphemes of each text, in batch mode; `content_only` keeps CONTENT_TAG_PREFIXES tags."""
    if not texts:
        return []
    analysed = kiwi().tokenize(list(texts))
    return [[token.form for token in tokens if not content_only or token.tag.startswith(CONTENT_TAG_PREFIXES)] for tokens in analysed]


def nouns(texts: Sequence[str]) -> list[list[str]]:
    """Common and proper nouns of each text (Kiwi NNG / NNP), in order of appearance."""
    if not texts:
        return []
    return [[t.form for t in tokens if t.tag in NOUN_TAGS] for tokens in kiwi().tokenize(list(texts))]


def sentences(text: str) -> list[tuple[str, int, int]]:
    """Kiwi sentence split: (sentence, start, end) character offsets into `text`."""
    return [(s.text, s.start, s.end) for s in kiwi().split_into_sents(text)]


def split_sentences(texts: Iterable[str]) -> list[list[str]]:
    """Sentences of each text (Kiwi batch mode)."""
    return [[s.text for s in sents] for sents in kiwi().split_into_sents(list(texts))]
