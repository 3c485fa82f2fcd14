"""vLLM parts of the LLM step's CPU engine, imported by vLLM inside the worker (the LLM environment):
the Korean output head of Gemma 3 (``korean_output``) and the prompt-copy ban (``prompt_copy``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from vllm import ModelRegistry, SamplingParams
from vllm.model_executor.models.gemma3 import Gemma3ForCausalLM
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from sparse_assets.llm.korean_output import HEAD_ARCHITECTURE
from sparse_assets.llm.prompt_copy import EXTRA_ARG, CopyBan


class KoreanHeadGemma3ForCausalLM(Gemma3ForCausalLM):
    """Gemma 3 whose logits cover the tokens ``keep_output_tokens`` names (all until then)."""

    kept_ids: torch.Tensor | None = None
    kept_rows: torch.Tensor | None = None

    def keep_output_tokens(self, token_ids: Sequence[int] | None) -> None:
        processor = self.logits_processor  # Gemma 3 neither caps nor scales its logits: the plain product is right
        if processor.soft_cap is not None or processor.scale != 1.0:
            raise NotImplementedError("a Korean output head for a model with capped or scaled logits")
        if token_ids is None:
            self.kept_ids = self.kept_rows = None
            return
        self.kept_ids = torch.tensor(token_ids, dtype=torch.long)
        self.kept_rows = self.lm_head.weight.data[self.kept_ids].contiguous()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        if self.kept_ids is None:
            return super().compute_logits(hidden_states)
        logits = hidden_states.new_full((hidden_states.shape[0], self.config.vocab_size), float("-inf"))
        logits[:, self.kept_ids] = hidden_states @ self.kept_rows.T
        return logits


def register_head() -> None:
    """Make ``HEAD_ARCHITECTURE`` known to vLLM (this process; the CPU engine runs in it)."""
    ModelRegistry.register_model(HEAD_ARCHITECTURE, KoreanHeadGemma3ForCausalLM)


class PromptCopyBan(AdapterLogitsProcessor):
    """vLLM's per-request adapter around ``CopyBan``, for requests whose ``extra_args`` name
    ``max_copied_tokens``."""

    @classmethod
    def validate_params(cls, params: SamplingParams) -> None:
        limit = (params.extra_args or {}).get(EXTRA_ARG)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{EXTRA_ARG} must be a whole number of at least 1, not {limit!r}")

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: SamplingParams) -> CopyBan | None:
        limit = (params.extra_args or {}).get(EXTRA_ARG)
        return CopyBan(limit) if limit else None
