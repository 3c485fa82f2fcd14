"""Engine settings: one function decides model, quantization, eager mode and env per machine."""

import re

import pytest

from sparse_assets.llm.prompts import QUESTION_LINE
from sparse_assets.llm.settings import (
    AARCH64_ENV,
    OFFLINE_MODEL,
    PRODUCTION_MODEL,
    EngineSettings,
    engine_settings,
    sampling_settings,
)


def test_gpu_x86_defaults_to_qwen_fp8_on_one_gpu():
    s = engine_settings(machine="x86_64", accelerator="cuda")
    assert s.model == PRODUCTION_MODEL == "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8"
    assert s.quantization == "fp8" and s.tensor_parallel_size == 1
    assert s.prompt_style == "chat_json" and s.structured_outputs and s.reasoning_parser == "deepseek_r1"
    assert not s.enforce_eager and s.compilation_mode is None and s.env == {}
    kwargs = s.llm_kwargs()
    assert kwargs["quantization"] == "fp8" and kwargs["gpu_memory_utilization"] == 0.90
    assert kwargs["max_model_len"] == 32768 and "compilation_config" not in kwargs


def test_gpu_aarch64_is_eager_without_triton_or_compile():
    s = engine_settings(machine="aarch64", accelerator="cuda")
    assert s.model == PRODUCTION_MODEL and s.quantization == "fp8"
    assert s.enforce_eager and s.compilation_mode == 0
    assert s.env == AARCH64_ENV
    assert s.env["TORCH_COMPILE_DISABLE"] == "1" and s.env["TORCHDYNAMO_DISABLE"] == "1"
    assert s.llm_kwargs()["compilation_config"] == {"mode": 0}


def test_gpu_non_fp8_model_has_no_quantization():
    s = engine_settings(
        "Qwen/Qwen3-30B-A3B-Instruct-2507",
        machine="x86_64",
        accelerator="cuda",
        max_model_len=4096,
        gpu_memory_utilization=0.5,
        max_num_seqs=8,
    )
    assert s.quantization is None and s.reasoning_parser is None and s.prompt_style == "chat_json"
    assert (s.max_model_len, s.gpu_memory_utilization, s.max_num_seqs) == (4096, 0.5, 8)
    assert "quantization" not in s.llm_kwargs()


def test_cpu_default_is_gemma_float32_fewshot():
    s = engine_settings(machine="x86_64", accelerator="cpu")
    assert s.model == OFFLINE_MODEL and s.dtype == "float32" and s.prompt_style == "fewshot"
    assert s.quantization is None and not s.structured_outputs and s.enforce_eager
    assert s.env["VLLM_CPU_KVCACHE_SPACE"] == "2" and s.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    kwargs = s.llm_kwargs("/models/gemma")
    assert kwargs["model"] == "/models/gemma" and "gpu_memory_utilization" not in kwargs
    assert kwargs["distributed_executor_backend"] == "uni" and kwargs["max_num_seqs"] == 64
    # the prefix cache shares a prompt between its samples in 32-token blocks; the engine keeps its counters
    assert kwargs["block_size"] == 32 and kwargs["disable_log_stats"] is False


def test_cpu_aarch64_adds_the_arm_env():
    s = engine_settings(machine="arm64", accelerator="cpu")
    assert s.enforce_eager and s.compilation_mode == 0
    assert set(AARCH64_ENV) <= set(s.env) and s.env["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_fp8_on_cpu_is_refused_with_a_reason_unless_remote():
    with pytest.raises(ValueError, match="FP8.*CUDA GPU"):
        engine_settings(PRODUCTION_MODEL, machine="x86_64", accelerator="cpu")
    remote = engine_settings(PRODUCTION_MODEL, machine="x86_64", accelerator="cpu", remote=True)
    assert remote.prompt_style == "chat_json"


def test_settings_round_trip_as_json_data():
    import json

    s = engine_settings(machine="aarch64", accelerator="cuda")
    assert EngineSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_sampling_per_style():
    cpu = sampling_settings(engine_settings(machine="x86_64", accelerator="cpu"), n=4)
    assert (cpu.n, cpu.stop, cpu.stop_kept, cpu.max_tokens, cpu.seed) == (4, ("\n",), ("?",), 48, None)
    assert cpu.top_p == 1.0 and cpu.top_k == 40  # no top-p: on the CPU it sorts the whole vocabulary every step
    assert cpu.regex == QUESTION_LINE and re.fullmatch(cpu.regex, " 임종석을 검거한 경찰서는 어디인가?")
    assert not any(re.fullmatch(cpu.regex, text) for text in (" 임종석은 검거되었다.", " 임종석은 검거되었다?", " 임종석은 누구\n?"))
    gpu = sampling_settings(engine_settings(machine="x86_64", accelerator="cuda"), n=4, json_schema={"type": "object"})
    assert gpu.n == 1 and gpu.max_tokens == 8192 and gpu.temperature == 0.6 and gpu.top_k == 20
    assert gpu.json_schema == {"type": "object"} and gpu.seed == 0


def test_the_cpu_engine_leaves_a_core_that_another_process_keeps_busy():
    """Two engine threads beside one CPU-bound process wait for each other at every operation: the
    engine takes the cores the others leave free (at least one)."""
    import os
    import subprocess
    import sys

    from sparse_assets.llm.backends import free_cores

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: nothing to leave free")
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert 1 <= free_cores(sample_s=1.5) <= (os.cpu_count() or 1) - 1
    finally:
        neighbour.kill()
        neighbour.wait()


def test_a_prompt_longer_than_the_context_is_refused_naming_the_settings():
    from sparse_assets.llm.backends import BackendError, check_prompt_lengths

    check_prompt_lengths({"d1": 2000, "d2": 300}, max_model_len=2048, max_tokens=40)  # fits
    with pytest.raises(BackendError, match=r"2 prompt\(s\).*'d2': 2100 tokens.*max_doc_chars.*max_model_len"):
        check_prompt_lengths({"d1": 2009, "d2": 2100, "d3": 10}, max_model_len=2048, max_tokens=40)
