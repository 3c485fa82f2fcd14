"""Korean questions from a model whose vocabulary is mostly not Korean: the output tokens a question
may use, and a Gemma 3 head that computes logits for those tokens only. Runs in the LLM environment.

Gemma 3's 262,144-token vocabulary has 4,626 pieces with Hangul; its tied output layer
(262,144 x 640) is 62% of a decode step's FLOPs at 270M parameters, and a question the filters keep
is Korean (``min_hangul_ratio``). ``korean_output_tokens`` keeps the Hangul pieces, the pieces
without letters (digits, punctuation, spaces, the newline and the "?" the question ends with), the
special tokens and every token of the prompts (the document's own Latin names, numbers and Hanja):
about 9,000 tokens for a batch of the embedded corpus. A question is sampled among those only:

- on any vLLM engine through ``SamplingParams.allowed_token_ids`` (the sampler masks the others);
- on the CPU's Gemma 3, whose head (``KoreanHeadGemma3ForCausalLM``) multiplies the hidden states by
  the kept rows of the output layer alone and gives every other token -inf: the same
  distribution, for a seventh of the layer's cost (generation 56.3 s -> 46.7 s on 48 documents of
  the embedded corpus, same acceptance: 55 vs 53 of 144; exp probe, bench/llm.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

HEAD_ARCHITECTURE = "KoreanHeadGemma3ForCausalLM"

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3131-\u318e]")
_SPACE_MARK = "\u2581"  # SentencePiece's word-start mark


def is_korean_or_letterless(piece: str) -> bool:
    """A piece with Hangul in it, or one without letters (digits, punctuation, spaces)."""
    return bool(_HANGUL.search(piece)) or not any(ch.isalpha() for ch in piece.replace(_SPACE_MARK, ""))


def korean_output_tokens(pieces: Sequence[str], special_ids: Iterable[int], prompts: Iterable[Sequence[int]]) -> list[int]:
    """Token ids a Korean question may use: Korean or letterless ``pieces`` (the vocabulary, by id),
    the special tokens and every token of the ``prompts`` (token ids), sorted."""
    kept = {token for token, piece in enumerate(pieces) if piece and is_korean_or_letterless(piece)}
    kept.update(special_ids)
    for prompt in prompts:
        kept.update(prompt)
    return sorted(kept)


def register_head() -> None:
    """Make ``HEAD_ARCHITECTURE`` known to vLLM (this process; the CPU engine runs in it)."""
    import torch
    from vllm import ModelRegistry
    from vllm.model_executor.models.gemma3 import Gemma3ForCausalLM

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

    ModelRegistry.register_model(HEAD_ARCHITECTURE, KoreanHeadGemma3ForCausalLM)
