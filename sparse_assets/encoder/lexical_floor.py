"""The floor under a document's expansion as a sentence-transformers module (imported only where a
model is built or loaded: it pulls in sentence-transformers)."""

from __future__ import annotations

from typing import ClassVar

import torch
from sentence_transformers.base.modules.module import Module

from sparse_assets.encoder.saturation import saturate


class LexicalFloor(Module):
    """Adds `weight` x the document's own pieces with BM25's saturation (`saturation.saturate`, the
    IDF-only document side) to its SPLADE vector. Fixed: the masked-LM head's weights are >= 0 and add
    to it, so training can raise a piece the document holds but never take it below its own count.
    A document thus never scores below its own words under the query table (issue 26: SPLADE's
    expansion otherwise competes with exact match, and on Korean the exact match is BM25-Kiwi's lead).
    `pivot` is the mean piece count of the corpus (re-fitted with the query table for another corpus);
    `special_ids` are not counted. One window's pieces here; `sparse_model.add_document_floor` counts
    every window of a long document."""

    config_keys: ClassVar[list[str]] = ["weight", "pivot", "special_ids"]
    config_file_name = "lexical_floor.json"

    def __init__(self, weight: float = 1.0, pivot: float = 1.0, special_ids: list[int] | None = None) -> None:
        super().__init__()
        if weight <= 0 or pivot <= 0:
            raise ValueError(f"lexical floor weight and pivot must be > 0, got {weight} and {pivot}")
        self.weight = float(weight)
        self.pivot = float(pivot)
        self.special_ids = sorted(int(i) for i in special_ids or [])

    def weights(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dim: int) -> torch.Tensor:
        """[batch, dim]: the floor of each row of token ids."""
        counted = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(self.special_ids, dtype=input_ids.dtype))
        tf = torch.zeros(input_ids.shape[0], dim, dtype=torch.float32, device=input_ids.device)
        tf = tf.scatter_add(1, input_ids, counted.float())
        return self.weight * saturate(tf, counted.sum(dim=1, keepdim=True).float(), self.pivot)

    def forward(self, features: dict) -> dict:
        embedding = features["sentence_embedding"]
        floor = self.weights(features["input_ids"], features["attention_mask"], embedding.shape[-1])
        features["sentence_embedding"] = embedding + floor.to(embedding.dtype)
        return features

    def get_config_dict(self) -> dict:
        return {"weight": self.weight, "pivot": self.pivot, "special_ids": self.special_ids}

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
