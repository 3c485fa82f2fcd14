"""Real Korean test data from ../shared/data (KorQuAD 1.0 dev, MUSE ko-en), shared by the test modules."""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import dagster as dg

from sparse_assets.data.corpus import CorpusFilter
from sparse_assets.data.evalset import read_corpus

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KORQUAD_DEV = SHARED_DATA / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"
MUSE_KO_EN = SHARED_DATA / "muse_ko_en" / "ko-en.txt"


def korquad_slice(target: Path, articles: int, start: int = 0) -> Path:
    """Write the first `articles` KorQuAD dev articles (from `start`) as a SQuAD file at `target`."""
    data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
    data["data"] = data["data"][start : start + articles]
    target.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return target


@lru_cache(maxsize=8)
def korquad_records(articles: int, start: int = 0) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(documents, human eval queries) of `articles` KorQuAD dev articles from `start`, loaded as the
    `documents` / `eval_queries` assets load them (sparse_assets.data.evalset.read_corpus)."""
    with tempfile.TemporaryDirectory() as folder:
        loaded = read_corpus([str(korquad_slice(Path(folder) / "korquad.json", articles, start))], CorpusFilter())
    return tuple(loaded.documents), tuple(dict(q) for q in loaded.queries)


def korquad_documents(count: int) -> list[dict]:
    """The first paragraph of `count` different KorQuAD dev articles (as `documents` holds them)."""
    firsts: dict[str, dict] = {}
    for document in korquad_records(count)[0]:
        firsts.setdefault(document["title"], dict(document))
    return list(firsts.values())


def five_documents() -> list[dict]:
    return korquad_documents(5)


def documents_asset(docs: list[dict]) -> dg.AssetsDefinition:
    """A `documents` asset that returns `docs`."""

    @dg.asset(name="documents")
    def documents_stub() -> list[dict]:
        return docs

    return documents_stub


documents_stub = documents_asset(five_documents())
