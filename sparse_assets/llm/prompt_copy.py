"""Questions that do not copy their prompt: a question never repeats more than ``max_copied_tokens``
consecutive tokens of its prompt (the document and the few-shot examples). Runs in the LLM environment.

The 270M model's commonest failure is to copy its document: a statute's sentence ending in "다.",
or a run-on copy cut at ``max_tokens``. The filters drop both, after a full decode. Banning, at each
step, the one token that would extend a copy past the limit is the decoder-side twin of the
``copied_span`` filter: Hugging Face's ``encoder_no_repeat_ngram_size`` (no n-gram of the encoder
input in the output), applied to a decoder-only model's prompt. The filters stay as they are: a copy
respaced to slip past the ban ("정하는바에") is the same copy to ``copied_span``, which ignores spaces.
Measured on 48 documents (3 samples each, bench/llm.md): the embedded corpus 57 -> 87 of 144 accepted
with at most 3 copied tokens, 86 with 5, 74 with 7; KorQuAD 88 -> 96 with 4.
"""

from __future__ import annotations

from collections.abc import Sequence

EXTRA_ARG = "max_copied_tokens"  # the SamplingParams.extra_args key that switches the ban on


def copy_continuations(prompt: Sequence[int], max_copied: int) -> dict[tuple[int, ...], set[int]]:
    """For every run of ``max_copied`` consecutive prompt tokens, the tokens that follow it in the prompt."""
    continuations: dict[tuple[int, ...], set[int]] = {}
    for end in range(max_copied, len(prompt)):
        continuations.setdefault(tuple(prompt[end - max_copied : end]), set()).add(prompt[end])
    return continuations


class CopyBan:
    """One request's ban: the logits of the tokens that would make the output's last ``max_copied`` + 1
    tokens a run of the prompt are set to -inf (the prompt's runs are indexed on first use)."""

    def __init__(self, max_copied: int):
        self.max_copied = max_copied
        self.continuations: dict[tuple[int, ...], set[int]] | None = None

    def __call__(self, prompt: Sequence[int], output: Sequence[int], logits):
        if len(output) < self.max_copied:
            return logits
        if self.continuations is None:
            self.continuations = copy_continuations(prompt, self.max_copied)
        banned = self.continuations.get(tuple(output[-self.max_copied :]))
        if banned:
            logits[list(banned)] = float("-inf")
        return logits
