"""Corpus sources, normalisation and filtering (no Dagster here).

A source is a string:
- ``embedded``: Korean text that installed packages ship (konlpy's constitution and bills), offline;
- a local file: SQuAD-format JSON (KorQuAD, KLUE-MRC exports), JSON list / JSONL / Parquet of records
  with ``text`` (and optionally ``title``, ``id``, ``date``);
- ``hf:<dataset id>[:<config>][@<split>]``: a Hugging Face dataset (needs the hub), either SQuAD-shaped
  (``context`` + ``question``) or plain text (``text``), e.g. ``hf:squad_kor_v1``, ``hf:klue:mrc@validation``,
  ``hf:wikimedia/wikipedia:20231101.ko``;
- ``beir:<folder>``: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv`` or ``qrels.tsv``),
  e.g. ``beir:data/msmarco_ko``; its documents keep their corpus ``_id`` as ``source_id``.
SQuAD-shaped sources and BEIR folders also yield their human questions (evaluation only): a SQuAD
question is tied to its paragraph's text, a BEIR query to its graded judgments (qrels).
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
from typing import Annotated, Any

from sparse_assets.bounds import Ge, Le, check_bounds
from sparse_assets.data.korean import hangul_ratio, normalize_text
from sparse_assets.data.records import Document
from sparse_assets.environment import EMBEDDED

_CANONICAL = re.compile(r"[\W\d_]+", re.UNICODE)
_ARTICLE = re.compile(r"(?=제\d+조)")
EMBEDDED_PASSAGE_CHARS = 700


class CorpusError(ValueError):
    """A corpus source that cannot be used; the message says which and what to do."""


BEIR = "beir:"
BEIR_QRELS = ("qrels/test.tsv", "qrels.tsv")
BEIR_QRELS_HEADER = "query-id<TAB>corpus-id<TAB>score"


@dataclass(frozen=True)
class Question:
    """A human question (evaluation only). From a SQuAD-format source it is tied to its paragraph's
    text (`context`); from a BEIR folder to its judgments `relevant` {source-corpus id: grade} over
    the documents of `source` whose `source_id` is that id (grade 0 = judged not relevant)."""

    id: str
    question: str
    context: str | None = None
    answer_start: int | None = None
    relevant: dict[str, int] | None = field(default=None, hash=False)
    source: str = ""


@dataclass
class RawCorpus:
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    # questions a source holds but that cannot be evaluated, by reason (e.g. BEIR queries without a
    # relevance label: "no_relevance_label", or judged but with no score > 0: "no_positive_label")
    dropped_questions: Counter = field(default_factory=Counter)

    def extend(self, other: RawCorpus) -> None:
        """Append another source's documents and questions (mixing sources); two BEIR folders with the
        same name would make their ids ambiguous, so that is refused."""
        mine, theirs = _id_scoped_sources(self), _id_scoped_sources(other)
        if clash := sorted(mine & theirs):
            raise CorpusError(
                f"{clash[0]!r} appears twice in the corpus sources (the same BEIR folder given twice, or two folders with "
                "the same name): give each BEIR folder once, and rename one of two folders that share a name"
            )
        self.documents += other.documents
        self.questions += other.questions
        self.dropped_questions.update(other.dropped_questions)


def _id_scoped_sources(raw: RawCorpus) -> set[str]:
    return {d["source"] for d in raw.documents if "source_id" in d} | {q.source for q in raw.questions if q.relevant is not None}


@dataclass(frozen=True)
class CorpusFilter:
    min_chars: Annotated[int, Ge(1)] = 40
    max_chars: Annotated[int, Ge(100)] = 4000  # longer texts are split at whitespace into pieces of at most this
    min_hangul_ratio: Annotated[float, Ge(0), Le(1)] = 0.2

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.min_chars > self.max_chars:
            raise ValueError(f"CorpusFilter.min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")


@dataclass
class FilterReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    split_long: int = 0
    # where each input document that has a `source_id` ended up: (source, source_id) -> ids of the kept
    # documents holding its text (its own pieces, or the kept copies they duplicate); [] when dropped
    resolved: dict[tuple[str, str], list[str]] = field(default_factory=dict)


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
    if source.startswith(BEIR):
        return load_beir(source[len(BEIR) :], source)
    path = Path(source)
    if not path.exists():
        raise CorpusError(
            f"corpus source {source!r} does not exist; give a SQuAD/JSON/JSONL/Parquet file, "
            f"'{EMBEDDED}', 'hf:<dataset id>' or '{BEIR}<folder>'"
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
    except (ValueError, RecursionError) as error:
        raise CorpusError(f"{path} is not valid JSON ({_why_not_json(error)})") from None


def _read_jsonl(path: Path) -> list[dict]:
    return [value for _, value in _json_lines(path)]


def _json_lines(path: Path, advice: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-empty line of a JSONL file; a line that is not JSON raises
    CorpusError naming the file and the line (then `advice`)."""
    for number, line in enumerate(_read_text(path).lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (ValueError, RecursionError) as error:
            raise CorpusError(f"{path}, line {number}: not valid JSON ({_why_not_json(error)}){advice}") from None


def _why_not_json(error: ValueError | RecursionError) -> str:
    """What json.loads found wrong; a RecursionError is a value nested too deeply (e.g. 100,000 '[')."""
    if isinstance(error, RecursionError):
        return "nested too deeply to read: thousands of '[' or '{' inside each other"
    return error.msg if isinstance(error, json.JSONDecodeError) else str(error)


def _read_parquet(path: Path) -> list[dict]:
    import pandas as pd

    try:
        return pd.read_parquet(path).to_dict(orient="records")
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise CorpusError(f"{path} is not a readable Parquet file ({error})") from error


def _records_to_documents(records: Iterable, source: str) -> Iterator[Document]:
    first_with_id: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(
                f"{source}: record {number} has no string 'text' field (keys: {sorted(record) if isinstance(record, dict) else type(record).__name__}); "
                "each record needs 'text' and may have 'title', 'id', 'date'"
            )
        if record.get("id") not in (None, ""):
            earlier = first_with_id.setdefault(str(record["id"]), number)
            if earlier != number:
                raise CorpusError(
                    f"{source}: records {earlier} and {number} have the same id {str(record['id'])!r}; ids must be unique (or left out)"
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


# ------------------------------------------------------------------------------------------ BEIR


@dataclass
class BeirData:
    """A BEIR data set as read and checked by `read_beir`."""

    documents: list[Document]  # id = source_id = the corpus `_id`
    queries: dict[str, str]  # query id -> text, every query of queries.jsonl
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: grade}, only queries with a grade > 0
    unlabelled: list[str]  # query ids without any qrels line
    without_positive: list[str]  # query ids judged, but none with a grade > 0


def beir_files(folder: str | Path, source: str | None = None) -> tuple[Path, Path, Path]:
    """(corpus.jsonl, queries.jsonl, qrels) of a BEIR folder; the qrels are qrels/test.tsv, else qrels.tsv."""
    folder = Path(folder)
    named = f" (from {source!r})" if source else ""
    layout = "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv (or qrels.tsv)"
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CorpusError(f"BEIR folder {folder}{named} {what}; {layout}")
    present = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
    for name, shape in (("corpus.jsonl", '{"_id", "title", "text"}'), ("queries.jsonl", '{"_id", "text"}')):
        if not (folder / name).is_file():
            raise CorpusError(
                f"{folder / name} not found{named} (the folder holds: {present}); {layout}, {name} with one {shape} object per line"
            )
    for name in BEIR_QRELS:
        if (folder / name).is_file():
            return folder / "corpus.jsonl", folder / "queries.jsonl", folder / name
    splits = sorted(p.relative_to(folder).as_posix() for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    fix = f"found {', '.join(splits)}: copy or link the split to evaluate on to qrels/test.tsv" if splits else layout
    raise CorpusError(
        f"{folder / BEIR_QRELS[0]} not found, nor {folder / BEIR_QRELS[1]}{named}; {fix} ({BEIR_QRELS_HEADER} with a header line)"
    )


def _beir_lines(path: Path, kind: str, shape: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-empty line of a BEIR JSONL file that has an `_id`."""
    for number, row in _json_lines(path, f"; a BEIR {kind} file has one {shape} object per line"):
        if not isinstance(row, dict) or row.get("_id") in (None, ""):
            raise CorpusError(f"{path}, line {number}: no '_id' field; BEIR {kind} lines look like {shape}")
        yield number, row


def _unique(path: Path, number: int, key: str, first_line: dict[str, int]) -> None:
    if key in first_line:
        raise CorpusError(f"{path}, line {number}: _id {key!r} is already on line {first_line[key]}; ids must be unique, remove one")
    first_line[key] = number


def read_beir_corpus(path: str | Path, source: str | None = None) -> list[Document]:
    """BEIR corpus.jsonl -> Documents {id and source_id: `_id`, title, text, source: `source` or the path}."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f'{path}: corpus file not found; a BEIR corpus.jsonl has one {{"_id", "title", "text"}} object per line')
    documents, first_line = [], {}
    for number, row in _beir_lines(path, "corpus", '{"_id": ..., "title": ..., "text": ...}'):
        if not isinstance(row.get("text"), str) or not isinstance(row.get("title") or "", str):
            raise CorpusError(f"{path}, line {number}: 'text' (and 'title', if given) must be strings")
        key = str(row["_id"])
        _unique(path, number, key, first_line)
        documents.append(Document(id=key, title=row.get("title") or "", text=row["text"], source=source or str(path), source_id=key))
    if not documents:
        raise CorpusError(
            f'{path}: no passages (the file is empty); give a corpus.jsonl with one {{"_id", "title", "text"}} object per line'
        )
    return documents


def read_beir_queries(path: str | Path) -> dict[str, str]:
    """BEIR queries.jsonl -> {query id: text}."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f'{path}: queries file not found; a BEIR queries.jsonl has one {{"_id", "text"}} object per line')
    queries, first_line = {}, {}
    for number, row in _beir_lines(path, "queries", '{"_id": ..., "text": ...}'):
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise CorpusError(f"{path}, line {number}: no query 'text' (a non-empty string)")
        key = str(row["_id"])
        _unique(path, number, key, first_line)
        queries[key] = row["text"]
    if not queries:
        raise CorpusError(f'{path}: no queries (the file is empty); give a queries.jsonl with one {{"_id", "text"}} object per line')
    return queries


def read_beir_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR qrels (tab-separated `query-id corpus-id score` after a header line) -> {query id: {corpus id: grade}},
    every line as given (grades may be graded; 0 = judged not relevant; a repeated pair keeps its highest grade)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: qrels file not found; BEIR qrels are {BEIR_QRELS_HEADER} lines after a header line")
    qrels: dict[str, dict[str, int]] = {}
    lines = _read_text(path).lstrip("\ufeff").splitlines()
    header = lines[0].split("\t") if lines else []
    if len(header) < 3 or _number(header[2]) is not None:
        raise CorpusError(f"{path}, line 1: the first line must be the header '{BEIR_QRELS_HEADER}' (BEIR format); add it")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = [cell.strip() for cell in line.split("\t")]
        if len(row) < 3 or not row[0] or not row[1]:
            raise CorpusError(f"{path}, line {number}: expected 3 tab-separated columns (query-id, corpus-id, score), got {line[:80]!r}")
        score = _number(row[2])
        if score is None or not score.is_integer():
            raise CorpusError(f"{path}, line {number}: score {row[2]!r} is not an integer grade (0 = not relevant, 1, 2, ... = relevant)")
        judged = qrels.setdefault(row[0], {})
        judged[row[1]] = max(int(score), judged.get(row[1], int(score)))
    return qrels


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_beir(corpus_path: str | Path, queries_path: str | Path, qrels_path: str | Path, source: str | None = None) -> BeirData:
    """Read and cross-check a BEIR data set: every qrels query id must be in queries.jsonl and every judged
    corpus id in corpus.jsonl, and at least one query must have a grade > 0; queries without such a label
    are listed (`unlabelled`, `without_positive`), not evaluated. Raises CorpusError naming the file."""
    documents = read_beir_corpus(corpus_path, source)
    queries = read_beir_queries(queries_path)
    qrels = read_beir_qrels(qrels_path)
    problems = []
    unknown_queries = [q for q in qrels if q not in queries]
    if unknown_queries:
        problems.append(
            f"{len(unknown_queries)} of its {len(qrels)} query ids are not in {queries_path} (e.g. {', '.join(unknown_queries[:3])})"
        )
    corpus_ids = {d["source_id"] for d in documents}
    unknown_docs = list(dict.fromkeys(d for judged in qrels.values() for d in judged if d not in corpus_ids))
    if unknown_docs:
        judged = len({d for judged in qrels.values() for d in judged})
        problems.append(
            f"{len(unknown_docs)} of its {judged} judged corpus ids are not in {corpus_path} (e.g. {', '.join(unknown_docs[:3])})"
        )
    if problems:
        raise CorpusError(
            f"{qrels_path}: {'; '.join(problems)}: the qrels belong to another data set; give the matching corpus.jsonl / queries.jsonl / qrels"
        )
    labelled = {q: judged for q, judged in qrels.items() if any(grade > 0 for grade in judged.values())}
    if not labelled:
        what = f"its {len(qrels)} judged queries have only grade-0 lines" if qrels else "it has no judgments (only the header)"
        raise CorpusError(
            f"{qrels_path}: no query of {queries_path} has a relevance label with a score > 0 ({what}); "
            "give the qrels of these queries (query-id, corpus-id, score >= 1 for a relevant passage)"
        )
    ordered = {q: labelled[q] for q in queries if q in labelled}
    return BeirData(
        documents=documents,
        queries=queries,
        qrels=ordered,
        unlabelled=[q for q in queries if q not in qrels],
        without_positive=[q for q in queries if q in qrels and q not in labelled],
    )


def beir_source_name(folder: str | Path) -> str:
    """The `source` of a BEIR folder's documents and questions: ``beir:<folder name>``."""
    return BEIR + Path(folder).resolve().name


def load_beir(folder: str | Path, source: str | None = None) -> RawCorpus:
    """A BEIR folder as a RawCorpus: its passages (source ``beir:<folder name>``, `source_id` = `_id`) and
    its labelled queries as questions with their judgments (evaluation only); queries without a label
    are counted in `dropped_questions`."""
    name = beir_source_name(folder)
    data = read_beir(*beir_files(folder, source), source=name)
    questions = [Question(id=q, question=data.queries[q], relevant=dict(judged), source=name) for q, judged in data.qrels.items()]
    dropped = Counter({"no_relevance_label": len(data.unlabelled), "no_positive_label": len(data.without_positive)})
    return RawCorpus(documents=data.documents, questions=questions, dropped_questions=+dropped)


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
    """Cut a long normalised text (`normalize_text`) at whitespace into pieces of at most max_chars.
    It walks an offset through the text and copies only the pieces, so the time is linear in the length."""
    pieces = []
    start = 0
    while len(text) - start > max_chars:
        cut = text.rfind(" ", start, start + max_chars)
        cut = cut if cut - start > max_chars // 2 else start + max_chars
        pieces.append(text[start:cut].strip())
        start = _skip_spaces(text, cut)
    return [*pieces, text[start:]] if start < len(text) else pieces


def _skip_spaces(text: str, start: int) -> int:
    """The offset of the first character at or after `start` that is not whitespace."""
    while start < len(text) and text[start].isspace():
        start += 1
    return start


def clean_documents(documents: Iterable[Document], settings: CorpusFilter) -> tuple[list[Document], FilterReport]:
    """NFC + whitespace, long texts split, length and Hangul-ratio bounds, exact and near-duplicate
    removal (texts equal once spaces, punctuation, digits and case are removed). Ids become the hash
    of the text; a `source_id` is kept, and `report.resolved` says where each such document went."""
    report = FilterReport()
    kept: list[Document] = []
    seen_exact: dict[str, str] = {}  # text -> id of the kept document
    seen_near: dict[str, str] = {}  # canonical text -> id of the kept document
    for doc in documents:
        text = normalize_text(doc["text"])
        pieces = _split_long(text, settings.max_chars) if len(text) > settings.max_chars else [text]
        report.split_long += len(pieces) > 1
        holders: list[str] = []
        for piece in pieces:
            reason = _drop_reason(piece, settings, seen_exact, seen_near)
            if reason:
                report.dropped[reason] += 1
                if reason == "duplicate":
                    holders.append(seen_exact[piece])
                elif reason == "near_duplicate":
                    holders.append(seen_near[canonical_text(piece)])
                continue
            cleaned = Document(id=document_id(piece), title=normalize_text(doc["title"]), text=piece, source=doc["source"])
            seen_exact[piece] = seen_near[canonical_text(piece)] = cleaned["id"]
            if doc.get("date"):
                cleaned["date"] = doc["date"]
            if doc.get("source_id"):
                cleaned["source_id"] = doc["source_id"]
            kept.append(cleaned)
            holders.append(cleaned["id"])
        if doc.get("source_id"):
            report.resolved[(doc["source"], doc["source_id"])] = list(dict.fromkeys(holders))
    report.kept = len(kept)
    return kept, report


def _drop_reason(text: str, settings: CorpusFilter, seen_exact: dict[str, str], seen_near: dict[str, str]) -> str | None:
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
