"""Teacher scores for distillation (no Dagster).

The teacher is the heterogeneous ensemble of Geng et al. 2024, "Towards Competitive Search Relevance
For Inference-Free Learned Sparse Retrievers" (arXiv 2411.04403): a lexical retriever (BM25 over Kiwi
content morphemes) and a dense one (multilingual-e5), each min-max normalised over a query's
candidates so that their scales agree, then mixed: ``(1 - w) * bm25 + w * dense``. On the dev sets
the mix is above both parts (KorQuAD paragraphs: BM25 0.953, dense 0.880, w=0.5 0.963; msmarco_ko:
0.879 / 0.948 / w=0.7 0.954), so the student has head-room above BM25.

Candidates per training query: the positive, the pair's mined negatives, and the top ``depth`` of
each retriever (so the dense teacher can promote documents BM25 misses). Raw scores are kept per
candidate; the mix is taken at training time, so changing the weight costs no re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparse_assets.data.records import Document, QDPair

DENSE_PREFIXES = {True: "query: ", False: "passage: "}  # the e5 convention
Progress = Callable[[int, int], None]  # (done, total)


class DenseEncoder:
    """multilingual-e5 sentence embeddings from a transformers folder: "query: " / "passage: "
    prefixes, mean pooling over the attention mask, L2-normalised. Texts are batched longest first
    (less padding: 2.5x faster than arrival order on KorQuAD's paragraphs)."""

    def __init__(self, folder: Path, device: str = "cpu", batch_size: int = 32, max_length: int = 512):
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).to(device).eval()
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def __call__(self, texts: Sequence[str], is_query: bool, progress: Progress | None = None) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not len(texts):
            return out
        prefixed = [DENSE_PREFIXES[is_query] + t for t in texts]
        ids = self.tokenizer(prefixed, truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                out[rows] = vectors.cpu().numpy()
                if progress:
                    progress(min(start + self.batch_size, len(order)), len(order))
        return out


@dataclass
class TeacherRecord:
    """One training query's candidates (the positive first) with each teacher's raw score."""

    candidates: list[str]
    bm25: list[float]
    dense: list[float]

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "bm25": self.bm25, "dense": self.dense}


def teacher_records(
    pairs: Sequence[QDPair],
    documents: Sequence[Document],
    document_vectors: np.ndarray,
    query_vectors: np.ndarray,
    depth: int,
    progress: Progress | None = None,
) -> list[TeacherRecord]:
    """Per pair: candidates = positive, its negatives, BM25's and the dense model's top `depth`; raw
    BM25 (Kiwi content morphemes, title + text) and dense cosine scores of every candidate.
    `document_vectors` are aligned with `documents`, `query_vectors` with `pairs`."""
    from sparse_assets.encoder.sparse_model import document_text
    from sparse_assets.evaluation.bm25 import KiwiBM25

    ids = [d["id"] for d in documents]
    row = {doc_id: i for i, doc_id in enumerate(ids)}
    bm25 = KiwiBM25(ids, [document_text(d) for d in documents])
    depth = max(1, min(depth, len(ids) - 1))
    records = []
    for i, (pair, scores) in enumerate(zip(pairs, bm25.score_all([p["query"] for p in pairs]))):
        cosines = document_vectors @ query_vectors[i]
        top = set(np.argpartition(-scores, depth)[:depth].tolist()) | set(np.argpartition(-cosines, depth)[:depth].tolist())
        first = [row[pair["positive_id"]]] + [row[n] for n in pair["negative_ids"] if n in row and n != pair["positive_id"]]
        order = list(dict.fromkeys(first + sorted(top - set(first))))
        records.append(
            TeacherRecord(
                [ids[j] for j in order], scores[order].astype(float).round(5).tolist(), cosines[order].astype(float).round(5).tolist()
            )
        )
        if progress and (i + 1) % 2000 == 0:
            progress(i + 1, len(pairs))
    if progress:
        progress(len(pairs), len(pairs))
    return records


def teacher_score_records(
    pairs: Sequence[QDPair],
    documents: Sequence[Document],
    document_embeddings: dict,
    encoder: DenseEncoder,
    depth: int,
    progress: Progress | None = None,
) -> list[dict]:
    """Teacher records {query, positive_id, candidates, bm25, dense} of `pairs`: the queries are
    encoded with `encoder`, the documents come from `document_embeddings` ({"ids", "vectors"},
    aligned with `documents`)."""
    if list(document_embeddings["ids"]) != [d["id"] for d in documents]:
        raise ValueError("the document embeddings were computed for other documents: re-materialize document_embeddings")
    query_vectors = encoder([p["query"] for p in pairs], is_query=True, progress=progress)
    records = teacher_records(pairs, documents, document_embeddings["vectors"], query_vectors, depth)
    return [{"query": p["query"], "positive_id": p["positive_id"], **r.to_dict()} for p, r in zip(pairs, records)]


def teacher_lookup(records: Sequence[dict]) -> dict[tuple[str, str], dict]:
    """(query, positive_id) -> record, as train_sparse_encoder takes the teacher."""
    return {(r["query"], r["positive_id"]): r for r in records}


def minmax(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread > 1e-9 else np.zeros_like(values)


def mixed_scores(record: TeacherRecord | dict, dense_weight: float) -> np.ndarray:
    """The ensemble score of each candidate: (1 - w) * minmax(BM25) + w * minmax(dense)."""
    bm25 = np.asarray(record["bm25"] if isinstance(record, dict) else record.bm25, dtype=np.float64)
    dense = np.asarray(record["dense"] if isinstance(record, dict) else record.dense, dtype=np.float64)
    return ((1 - dense_weight) * minmax(bm25) + dense_weight * minmax(dense)).astype(np.float32)


def margin_scale(teacher: Sequence[np.ndarray], student: Sequence[np.ndarray]) -> float:
    """Factor that gives the teacher's positive-minus-candidate margins the spread of the untrained
    student's, so that MarginMSE reorders candidates instead of inflating every weight."""
    t = np.concatenate([s[0] - s[1:] for s in teacher if len(s) > 1])
    u = np.concatenate([s[0] - s[1:] for s in student if len(s) > 1])
    return float(u.std() / t.std()) if t.size and t.std() > 1e-9 else 1.0
