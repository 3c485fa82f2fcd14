"""Korean questions from a model whose vocabulary is mostly not Korean: the output tokens a question
may use, and a Gemma 3 head that computes logits for those tokens only. Runs in the LLM environment.

Gemma 3's 262,144-token vocabulary has 4,626 pieces with Hangul; its tied output layer
(262,144 x 640) is 62% of a decode step's FLOPs at 270M parameters, and a question the filters keep
is Korean (``min_hangul_ratio``). ``korean_output_tokens`` keeps the Hangul pieces, the pieces
without letters (digits, punctuation, spaces, the newline and the "?" the question ends with), the
special tokens and every token of the prompts (the document's own Latin names, numbers and Hanja):
9,000-14,000 tokens for a batch of the embedded corpus. A question is sampled among those only:

- on any vLLM engine through ``SamplingParams.allowed_token_ids`` (the sampler masks the others);
- on the CPU's Gemma 3, whose head (``vllm_plugins.KoreanHeadGemma3ForCausalLM``) multiplies the hidden states by
  the kept rows of the output layer alone and gives every other token -inf: the same
  distribution, for a twentieth of the layer's cost (generation 56.3 s -> 46.7 s on 48 documents of
  the embedded corpus, same acceptance: 55 vs 53 of 144, measured with a one-off probe of the engine;
  bench/llm.md has the step end to end).
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


def korean_pieces(pieces: Sequence[str], special_ids: Iterable[int]) -> frozenset[int]:
    """The part of the set that depends on the vocabulary alone: Korean or letterless ``pieces`` (the
    vocabulary, by id) and the special tokens."""
    return frozenset(token for token, piece in enumerate(pieces) if piece and is_korean_or_letterless(piece)) | set(special_ids)


def korean_output_tokens(pieces: Sequence[str], special_ids: Iterable[int], prompts: Iterable[Sequence[int]]) -> list[int]:
    """Token ids a Korean question may use: ``korean_pieces`` and every token of the ``prompts``
    (token ids), sorted."""
    return with_prompt_tokens(korean_pieces(pieces, special_ids), prompts)


def with_prompt_tokens(base: frozenset[int], prompts: Iterable[Sequence[int]]) -> list[int]:
    """``base`` and every token of the ``prompts``, sorted."""
    kept = set(base)
    for prompt in prompts:
        kept.update(prompt)
    return sorted(kept)
