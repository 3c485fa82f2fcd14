"""Pivoted document length normalisation as a sentence-transformers module (imported only where a
model is built or loaded: it pulls in sentence-transformers)."""

from __future__ import annotations

from typing import ClassVar

import torch
from sentence_transformers.base.modules.module import Module


class PivotedLengthNormalization(Module):
    """Divides a document's SPLADE vector by ``1 - slope + slope * tokens / pivot`` (pivoted document
    length normalisation, Singhal, Buckley & Mitra, SIGIR 1996). Max pooling alone does not see a
    document's length, so a long document matches more query tokens by chance; BM25 corrects that
    with its `b` and so does this. `pivot` is the mean token count of the training documents, `slope`
    is learnt (clamped to [0, 1]); `tokens` is the attention mask's count (all windows of a long
    document, see `encode_documents`)."""

    config_keys: ClassVar[list[str]] = ["slope", "pivot"]
    config_file_name = "length_normalization.json"

    def __init__(self, slope: float = 0.0, pivot: float = 1.0, trainable: bool = False) -> None:
        super().__init__()
        if pivot <= 0:
            raise ValueError(f"length normalisation pivot must be > 0, got {pivot}")
        self.slope_parameter = torch.nn.Parameter(torch.tensor(float(slope)), requires_grad=trainable)
        self.pivot = float(pivot)

    @property
    def slope(self) -> float:
        return float(self.slope_parameter.detach().clamp(0.0, 1.0))

    def factor(self, tokens):
        """The divisor per document, from its token counts (a tensor); differentiable in the slope."""
        slope = self.slope_parameter.clamp(0.0, 1.0)
        return 1.0 - slope + slope * tokens.to(slope.dtype) / self.pivot

    def forward(self, features: dict) -> dict:
        tokens = features["attention_mask"].sum(dim=1)
        embedding = features["sentence_embedding"]
        features["sentence_embedding"] = embedding / self.factor(tokens).to(embedding.dtype).unsqueeze(-1)
        return features

    def get_config_dict(self) -> dict:
        return {"slope": self.slope, "pivot": self.pivot}

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
