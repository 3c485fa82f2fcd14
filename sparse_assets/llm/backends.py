"""LLM backends with one interface: ``start()``, ``complete(requests, sampling)``, ``close()``.

- ``VLLMBackend``: vLLM's offline ``LLM`` in this process (used inside the worker, LLM env).
- ``OpenAIBackend``: any OpenAI-compatible server by URL (``vllm serve``, ...), stdlib urllib only.

A request is ``{"id": str, "prompt": str}`` (completion) or ``{"id": str, "messages": [...]}``
(chat). A completion is ``{"id", "texts": [str]*n, "finish_reasons", "prompt_tokens",
"completion_tokens"}``. Errors name their cause: ``BackendUnreachable`` (server down / wrong URL),
``ModelNotFound`` (a model folder that does not exist), ``BackendError`` (the server said no).
"""

from __future__ import annotations

import gc
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from sparse_assets.llm.settings import OFFLINE_MODEL, EngineSettings, SamplingSettings

Request = dict[str, Any]
Completion = dict[str, Any]


class BackendError(RuntimeError):
    """The LLM backend failed; the message names the cause."""


class BackendUnreachable(BackendError):
    pass


class ModelNotFound(BackendError):
    pass


class Backend(Protocol):
    model_name: str

    def start(self) -> None: ...

    def complete(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[Completion]: ...

    def close(self) -> None: ...


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def resolve_model_path(model: str, cache_dir: str | Path | None = None, log=print) -> str:
    """A servable model location: the converted Gemma folder for ``OFFLINE_MODEL`` (in `cache_dir`,
    default <repository>/.cache), a local folder (must exist and hold config.json), or a hub id
    (passed through, for GPU hosts with a hub/cache)."""
    if model == OFFLINE_MODEL:
        from sparse_assets.llm.gemma import ensure_gemma_folder

        return str(ensure_gemma_folder(Path(cache_dir) if cache_dir else None, log=log))
    if looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelNotFound(f"model folder {path} does not exist")
        if not (path / "config.json").exists():
            raise ModelNotFound(f"model folder {path} has no config.json (not a transformers model folder)")
        return str(path)
    return model


class VLLMBackend:
    """vLLM offline inference in this process. Import vLLM only in ``start()``, after the engine
    settings' environment (aarch64: no Triton / torch.compile) is applied."""

    def __init__(self, engine: EngineSettings, log=print, cache_dir: str | Path | None = None):
        self.engine = engine
        self.log = log
        self.cache_dir = cache_dir
        self.model_name = engine.model
        self.llm = None

    def start(self) -> None:
        os.environ.update(self.engine.env)
        model_path = resolve_model_path(self.engine.model, self.cache_dir, log=self.log)
        from vllm import LLM

        self.llm = LLM(**self.engine.llm_kwargs(model_path))

    def _sampling_params(self, sampling: SamplingSettings):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = StructuredOutputsParams(json=sampling.json_schema) if sampling.json_schema else None
        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=max(0, sampling.top_k),
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            structured_outputs=structured,
        )

    def complete(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[Completion]:
        if self.llm is None:
            raise BackendError("VLLMBackend.complete() before start()")
        if not requests:
            return []
        params = self._sampling_params(sampling)
        if all("messages" in r for r in requests):
            outputs = self.llm.chat([r["messages"] for r in requests], params, use_tqdm=False)
        elif all("prompt" in r for r in requests):
            outputs = self.llm.generate([r["prompt"] for r in requests], params, use_tqdm=False)
        else:
            raise BackendError("a batch mixes chat and completion requests")
        return [
            {
                "id": r["id"],
                "texts": [c.text for c in out.outputs],
                "finish_reasons": [c.finish_reason for c in out.outputs],
                "prompt_tokens": len(out.prompt_token_ids or []),
                "completion_tokens": sum(len(c.token_ids) for c in out.outputs),
            }
            for r, out in zip(requests, outputs)
        ]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm
            gc.collect()


class OpenAIBackend:
    """An OpenAI-compatible server (``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        concurrency: int = 8,
        log=print,
    ):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model_name = model or ""
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.log = log

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout_s) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise BackendError(f"LLM server at {url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnreachable(
                f"LLM server at {self.base_url} is unreachable ({reason}); start it (e.g. `vllm serve <model>`) or fix the base_url"
            ) from None
        except json.JSONDecodeError as exc:
            raise BackendError(f"LLM server at {url} answered non-JSON: {exc}") from None

    def start(self) -> None:
        models = self._call("GET", "/models", timeout=min(self.timeout_s, 15.0))
        ids = [m.get("id") for m in models.get("data", []) if isinstance(m, dict)]
        if not self.model_name:
            if not ids:
                raise BackendError(f"LLM server at {self.base_url} lists no models")
            self.model_name = ids[0]
        elif ids and self.model_name not in ids:
            raise BackendError(f"LLM server at {self.base_url} does not serve {self.model_name!r} (it serves {ids})")

    def _body(self, request: Request, sampling: SamplingSettings) -> tuple[str, dict]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k  # vLLM extension
        if "messages" in request:
            body["messages"] = request["messages"]
            if sampling.json_schema:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": sampling.json_schema},
                }
            return "/chat/completions", body
        body["prompt"] = request["prompt"]
        return "/completions", body

    def _one(self, request: Request, sampling: SamplingSettings) -> Completion:
        path, body = self._body(request, sampling)
        response = self._call("POST", path, body)
        choices = sorted(response.get("choices", []), key=lambda c: c.get("index", 0))
        texts = []
        for choice in choices:
            if "message" in choice:
                message = choice["message"] or {}
                content = message.get("content")
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                if content is None and reasoning:  # cut off while thinking: keep it visible to the parser
                    content = f"<think>{reasoning}"
                texts.append(content or "")
            else:
                texts.append(choice.get("text") or "")
        usage = response.get("usage") or {}
        return {
            "id": request["id"],
            "texts": texts,
            "finish_reasons": [c.get("finish_reason") for c in choices],
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
        }

    def complete(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[Completion]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        pass


def make_backend(
    backend: str,
    engine: EngineSettings,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 300.0,
    concurrency: int = 8,
    log=print,
    cache_dir: str | Path | None = None,
) -> Backend:
    """The backend the worker runs; `cache_dir` holds the converted offline model (vllm only)."""
    if backend == "vllm":
        return VLLMBackend(engine, log=log, cache_dir=cache_dir)
    if backend == "openai":
        if not base_url:
            raise BackendError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        model = None if engine.model == OFFLINE_MODEL and not looks_like_path(engine.model) else engine.model
        return OpenAIBackend(base_url, model, api_key, timeout_s, concurrency, log=log)
    raise BackendError(f"unknown LLM backend {backend!r}; choose 'vllm' or 'openai'")
