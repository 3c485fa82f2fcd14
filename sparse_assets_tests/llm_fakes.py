"""A scripted OpenAI-compatible server (stdlib) for fast tests of the worker under Pipes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_title(prompt: str) -> str:
    titles = re.findall(r"제목: (.+)", prompt)
    return titles[-1].strip() if titles else ""


class FakeOpenAI:
    """Serves /v1/models and /v1/completions; ``answer(prompt, i)`` writes completion i. With
    ``max_choices``, a call answers at most that many of the ``n`` asked for (llama.cpp's server: one);
    ``owned_by`` is what /v1/models says of the model ("vllm" for vLLM's server)."""

    def __init__(
        self, answer: Callable[[str, int], str], model: str = "fake-gemma", max_choices: int | None = None, owned_by: str = "fake"
    ):
        self.answer = answer
        self.model = model
        self.max_choices = max_choices
        self.owned_by = owned_by
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: dict, status: int = 200):
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send({"object": "list", "data": [{"id": outer.model, "object": "model", "owned_by": outer.owned_by}]})
                else:
                    self._send({"error": "not found"}, 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if self.path != "/v1/completions":
                    self._send({"error": "not found"}, 404)
                    return
                n = min(body.get("n", 1), outer.max_choices or body.get("n", 1))
                texts = [outer.answer(body["prompt"], i) for i in range(n)]
                self._send(
                    {
                        "choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)],
                        "usage": {"prompt_tokens": len(body["prompt"]) // 2, "completion_tokens": 10 * len(texts)},
                    }
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def start_llm_materialization(tmp_path: Path, llm_resource: str) -> tuple[subprocess.Popen, Path]:
    """Materialize `documents_stub` + `synthetic_qd_pairs` in a child process of its own process
    group (so that a test can cancel it with SIGINT, as the UI does, and kill what is left);
    `llm_resource` is the LLMResource(...) expression. Returns (process, its log file)."""
    from sparse_assets.defs.resources import PROJECT_ROOT

    script = tmp_path / "run.py"
    script.write_text(
        "import dagster as dg\n"
        "from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs\n"
        "from sparse_assets.defs.io_managers import io_managers\n"
        "from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource\n"
        "from sparse_assets_tests.korquad_data import documents_stub\n"
        f"dg.materialize([documents_stub, synthetic_qd_pairs], resources={{**io_managers({str(tmp_path / 'ds')!r}),"
        f" 'llm': {llm_resource},"
        " 'llm_worker_client': dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT))}, raise_on_error=False)\n"
    )
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=PROJECT_ROOT,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )
    return process, log
