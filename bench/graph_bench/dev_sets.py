"""Where the benchmarks find the dev sets and the bilingual dictionary: `../shared/data` beside the
repository (read there, never copied), and each dev set as the corpus source string the graph takes."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
KORQUAD_DEV = SHARED_DATA / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"
MSMARCO_KO = SHARED_DATA / "msmarco_ko"
MUSE_KO_EN = SHARED_DATA / "muse_ko_en" / "ko-en.txt"  # the bilingual dictionary `make run` uses here
CORPUS_SOURCES = {"korquad": str(KORQUAD_DEV), "msmarco": f"beir:{MSMARCO_KO}"}
