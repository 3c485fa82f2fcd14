"""Real Korean test data from ../shared/data (KorQuAD 1.0 dev, MUSE ko-en), shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

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


def korquad_documents(count: int) -> list[dict]:
    """The first paragraph of `count` different KorQuAD dev articles."""
    data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
    return [
        {"id": f"kq{i}", "title": a["title"], "text": a["paragraphs"][0]["context"], "source": "korquad"}
        for i, a in enumerate(data["data"][:count])
    ]


def five_documents() -> list[dict]:
    return korquad_documents(5)


def documents_asset(docs: list[dict]) -> dg.AssetsDefinition:
    """A `documents` asset that returns `docs`."""

    @dg.asset(name="documents")
    def documents_stub() -> list[dict]:
        return docs

    return documents_stub


documents_stub = documents_asset(five_documents())
