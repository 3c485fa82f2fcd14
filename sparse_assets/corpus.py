"""Corpus sources, normalisation and filtering (no Dagster here).

A source is a string:
- ``embedded``: Korean text that installed packages ship (konlpy's constitution and bills), offline;
- a local file: SQuAD-format JSON (KorQuAD, KLUE-MRC exports), JSON list / JSONL / Parquet of records
  with ``text`` (and optionally ``title``, ``id``, ``date``);
- ``hf:<dataset id>[:<config>][@<split>]``: a Hugging Face dataset (needs the hub), either SQuAD-shaped
  (``context`` + ``question``) or plain text (``text``), e.g. ``hf:squad_kor_v1``, ``hf:klue:mrc@validation``,
  ``hf:wikimedia/wikipedia:20231101.ko``.
SQuAD-shaped sources also yield their human questions (evaluation only).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sparse_assets.korean import hangul_ratio, normalize_text
from sparse_assets.records import Document

EMBEDDED = "embedded"
_CANONICAL = re.compile(r"[\W\d_]+", re.UNICODE)
_ARTICLE = re.compile(r"(?=제\d+조)")
EMBEDDED_PASSAGE_CHARS = 700


class CorpusError(ValueError):
    """A corpus source that cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class Question:
    """A human question from a SQuAD-format source, tied to its paragraph's text."""

    id: str
    question: str
    context: str
    answer_start: int | None


@dataclass
class RawCorpus:
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


@dataclass(frozen=True)
class CorpusFilter:
    min_chars: int = 40
    max_chars: int = 4000
    min_hangul_ratio: float = 0.2


@dataclass
class FilterReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    split_long: int = 0


def canonical_text(text: str) -> str:
    """The near-duplicate key: the text without spaces, punctuation, digits and case."""
    return _CANONICAL.sub("", text.lower())


def document_id(text: str) -> str:
    """Stable id of a passage: the hash of its normalised text."""
    return "d" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------- loading


def load_source(source: str) -> RawCorpus:
    """Read one source; raises CorpusError with what is wrong and what to do."""
    if source == EMBEDDED:
        return RawCorpus(documents=list(_embedded_documents()))
    if source.startswith("hf:"):
        return _load_hub(source)
    path = Path(source)
    if not path.exists():
        raise CorpusError(
            f"corpus source {source!r} does not exist; give a SQuAD/JSON/JSONL/Parquet file, "
            f"'{EMBEDDED}', or 'hf:<dataset id>'"
        )
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return RawCorpus(documents=list(_records_to_documents(_read_parquet(path), source)))
    if suffix == ".jsonl":
        return RawCorpus(documents=list(_records_to_documents(_read_jsonl(path), source)))
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and "data" in data:
            return _squad_corpus(data, source)
        if isinstance(data, list):
            return RawCorpus(documents=list(_records_to_documents(data, source)))
        raise CorpusError(
            f"{source}: JSON is neither SQuAD format (an object with 'data' -> articles -> 'paragraphs') "
            "nor a list of records with 'text'; convert it to one of these"
        )
    raise CorpusError(f"{source}: unsupported file type {suffix!r}; use .json (SQuAD or records), .jsonl or .parquet")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); re-encode it, "
            f"e.g. `iconv -f cp949 -t utf-8 {path.name} > fixed.json`"
        ) from error
    except OSError as error:
        raise CorpusError(f"{path} cannot be read ({error.strerror}); check its permissions") from error


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from error


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CorpusError(f"{path}, line {number}: not valid JSON ({error.msg})") from error
    return records


def _read_parquet(path: Path) -> list[dict]:
    import pandas as pd

    try:
        return pd.read_parquet(path).to_dict(orient="records")
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise CorpusError(f"{path} is not a readable Parquet file ({error})") from error


def _records_to_documents(records: Iterable, source: str) -> Iterator[Document]:
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(
                f"{source}: record {number} has no string 'text' field (keys: {sorted(record) if isinstance(record, dict) else type(record).__name__}); "
                "each record needs 'text' and may have 'title', 'id', 'date'"
            )
        doc = Document(id=str(record.get("id") or ""), title=str(record.get("title") or ""), text=record["text"], source=source)
        if record.get("date"):
            doc["date"] = str(record["date"])[:10]
        yield doc


def _squad_corpus(data: dict, source: str) -> RawCorpus:
    corpus = RawCorpus()
    try:
        for article in data["data"]:
            title = str(article.get("title", "")).replace("_", " ")
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                corpus.documents.append(Document(id="", title=title, text=context, source=source))
                for qa in paragraph.get("qas", []):
                    answers = qa.get("answers") or [{}]
                    corpus.questions.append(Question(qa["id"], qa["question"], context, answers[0].get("answer_start")))
    except (KeyError, TypeError) as error:
        raise CorpusError(
            f"{source}: not SQuAD format (missing {error}); expected data[] -> paragraphs[] -> context, qas[] -> id, question"
        ) from error
    return corpus


def _embedded_documents() -> Iterator[Document]:
    """konlpy's bundled Korean texts (the constitution, one document per article; ten bills, one per
    paragraph), read straight from the package's data folder."""
    spec = importlib.util.find_spec("konlpy")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the embedded corpus needs the konlpy package; run `make install`")
    corpus_dir = Path(next(iter(spec.submodule_search_locations))) / "data" / "corpus"
    constitution = (corpus_dir / "kolaw" / "constitution.txt").read_text(encoding="utf-8")
    for article in _ARTICLE.split(constitution):
        title = article.split("\n", 1)[0].strip()[:20]
        yield Document(id="", title=f"대한민국헌법 {title}", text=article, source="embedded:kolaw", date="1987-10-29")
    for bill in sorted((corpus_dir / "kobill").glob("*.txt")):
        title, _, body = bill.read_text(encoding="utf-8").partition("\n")
        for passage in _split_long(normalize_text(body), EMBEDDED_PASSAGE_CHARS):
            yield Document(id="", title=normalize_text(title), text=passage, source="embedded:kobill")


def _load_hub(source: str) -> RawCorpus:
    spec = source[3:]
    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets

        rows = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as error:  # offline hubs fail in many ways; name the source either way
        raise CorpusError(
            f"Hugging Face dataset {source!r} could not be loaded ({type(error).__name__}: {str(error)[:200]}); "
            "the hub may be unreachable: download it where the hub is reachable and pass the local file instead"
        ) from error
    columns = set(rows.column_names)
    if {"context", "question"} <= columns:
        corpus = RawCorpus()
        for row in rows:
            corpus.documents.append(Document(id="", title=str(row.get("title", "")), text=row["context"], source=source))
            starts = (row.get("answers") or {}).get("answer_start") or [None]
            corpus.questions.append(Question(str(row.get("id", len(corpus.questions))), row["question"], row["context"], starts[0]))
        return corpus
    if "text" in columns:
        return RawCorpus(documents=list(_records_to_documents(rows, source)))
    raise CorpusError(f"{source}: columns {sorted(columns)} have neither 'context'+'question' (SQuAD) nor 'text'")


# ----------------------------------------------------------------------------------- cleaning


def _split_long(text: str, max_chars: int) -> list[str]:
    """Cut a long text at whitespace into pieces of at most max_chars."""
    pieces = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        cut = cut if cut > max_chars // 2 else max_chars
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    return [*pieces, text] if text else pieces


def clean_documents(documents: Iterable[Document], settings: CorpusFilter) -> tuple[list[Document], FilterReport]:
    """NFC + whitespace, long texts split, length and Hangul-ratio bounds, exact and near-duplicate
    removal (texts equal once spaces, punctuation, digits and case are removed). Ids become the hash
    of the text."""
    report = FilterReport()
    kept: list[Document] = []
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    for doc in documents:
        text = normalize_text(doc["text"])
        pieces = _split_long(text, settings.max_chars) if len(text) > settings.max_chars else [text]
        report.split_long += len(pieces) > 1
        for piece in pieces:
            reason = _drop_reason(piece, settings, seen_exact, seen_near)
            if reason:
                report.dropped[reason] += 1
                continue
            seen_exact.add(piece)
            seen_near.add(canonical_text(piece))
            cleaned = Document(id=document_id(piece), title=normalize_text(doc["title"]), text=piece, source=doc["source"])
            if doc.get("date"):
                cleaned["date"] = doc["date"]
            kept.append(cleaned)
    report.kept = len(kept)
    return kept, report


def _drop_reason(text: str, settings: CorpusFilter, seen_exact: set[str], seen_near: set[str]) -> str | None:
    if not text:
        return "empty"
    if len(text) < settings.min_chars:
        return "too_short"
    if hangul_ratio(text) < settings.min_hangul_ratio:
        return "low_hangul"
    if text in seen_exact:
        return "duplicate"
    if canonical_text(text) in seen_near:
        return "near_duplicate"
    return None
