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
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from sparse_assets.llm.korean_output import korean_pieces, with_prompt_tokens
from sparse_assets.llm.prompt_copy import EXTRA_ARG
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

    def engine_stats(self) -> dict[str, float]: ...

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


def check_prompt_lengths(lengths: dict[str, int], max_model_len: int, max_tokens: int) -> None:
    """Refuse, naming the settings to change, prompts that leave no room in the engine's context for
    `max_tokens` more (vLLM would fail the whole batch with its own message)."""
    room = max_model_len - max_tokens
    too_long = {request_id: n for request_id, n in lengths.items() if n > room}
    if too_long:
        request_id, n = max(too_long.items(), key=lambda item: item[1])
        raise BackendError(
            f"{len(too_long)} prompt(s) are longer than the engine's context allows ({request_id!r}: {n} tokens + "
            f"max_tokens {max_tokens} > max_model_len {max_model_len}): lower synthetic_qd_pairs' max_doc_chars, or raise "
            f"the LLM resource's max_model_len"
        )


def free_cores(sample_s: float = 1.0) -> int:
    """Cores that other processes leave free (at least one): the CPU engine's thread count. Its threads
    meet at a barrier in every operation, so one thread on a core that another process also runs
    holds up the other: with one CPU-bound neighbour on two cores, 48 documents took 67 s with one
    thread and 204 s with two (measured here with GNU OpenMP's default spinning)."""
    import psutil

    cores = os.cpu_count() or 1
    busy = int(psutil.cpu_percent(interval=sample_s) / 100 * cores + 0.5)  # whole cores' worth of other work
    return max(1, cores - busy)


class VLLMBackend:
    """vLLM offline inference in this process. Import vLLM only in ``start()``, after the engine
    settings' environment (aarch64: no Triton / torch.compile) is applied."""

    def __init__(self, engine: EngineSettings, log=print, cache_dir: str | Path | None = None):
        self.engine = engine
        self.log = log
        self.cache_dir = cache_dir
        self.model_name = engine.model
        self.llm = None
        self._korean_pieces: frozenset[int] | None = None  # the vocabulary's part of korean_output, on first use
        self._output_tokens: list[int] = []  # per korean_output batch, the tokens its questions could use

    def start(self) -> None:
        os.environ.update(self.engine.env)
        if self.engine.accelerator == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # before torch starts its threads
            threads, cores = free_cores(), os.cpu_count() or 1
            os.environ["OMP_NUM_THREADS"] = str(threads)
            self.log(f"engine threads: {threads} of {cores} cores ({cores - threads} busy with other processes)")
        model_path = resolve_model_path(self.engine.model, self.cache_dir, log=self.log)
        from vllm import LLM

        if self.engine.korean_head:
            from sparse_assets.llm.vllm_plugins import register_head

            register_head()
        try:
            self.llm = LLM(**self.engine.llm_kwargs(model_path))
        except Exception as exc:  # vLLM raises many kinds; the user needs the settings that decide the start
            raise BackendError(
                f"the vLLM engine did not start for {model_path}: {type(exc).__name__}: {exc}; {self._fit_settings()}"
            ) from exc

    def _fit_settings(self) -> str:
        """The settings that decide whether the engine fits, with their values here."""
        engine = self.engine
        memory = (
            f"gpu_memory_utilization {engine.gpu_memory_utilization}"
            if engine.accelerator == "cuda"
            else f"the KV cache VLLM_CPU_KVCACHE_SPACE {engine.env.get('VLLM_CPU_KVCACHE_SPACE', '-')} GiB"
        )
        return (
            f"check the LLM resource's model ({engine.model}), max_model_len ({engine.max_model_len}), max_num_seqs "
            f"({engine.max_num_seqs}) and dtype ({engine.dtype}), and {memory}"
        )

    def _sampling_params(self, sampling: SamplingSettings, allowed_token_ids: list[int] | None = None):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if sampling.json_schema:
            structured = StructuredOutputsParams(json=sampling.json_schema)
        elif sampling.regex:
            structured = StructuredOutputsParams(regex=sampling.regex)
        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=max(0, sampling.top_k),
            max_tokens=sampling.max_tokens,
            stop=[*sampling.stop, *sampling.stop_kept] or None,
            include_stop_str_in_output=bool(sampling.stop_kept),
            seed=sampling.seed,
            structured_outputs=structured,
            allowed_token_ids=allowed_token_ids,
            extra_args={EXTRA_ARG: sampling.max_copied_tokens} if sampling.max_copied_tokens else None,
        )

    def complete(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[Completion]:
        if self.llm is None:
            raise BackendError("VLLMBackend.complete() before start()")
        if not requests:
            return []
        if all("messages" in r for r in requests):
            outputs = self.llm.chat([r["messages"] for r in requests], self._restrict_output(sampling, []), use_tqdm=False)
        elif all("prompt" in r for r in requests):
            prompts = self._token_prompts(requests, sampling)
            params = self._restrict_output(sampling, [p["prompt_token_ids"] for p in prompts])
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
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

    def _restrict_output(self, sampling: SamplingSettings, prompts: list[list[int]]):
        """The batch's sampling parameters. A `korean_output` batch samples among `korean_output_tokens` (the
        vocabulary's part computed once):
        through the engine's Korean head when it has one (the same distribution, computed for those tokens
        only), else through vLLM's `allowed_token_ids`. A Korean head computes every token for other batches."""
        allowed = None
        if sampling.korean_output:
            if self._korean_pieces is None:  # the whole vocabulary is read once, not per batch
                tokenizer = self.llm.get_tokenizer()
                self._korean_pieces = korean_pieces(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), tokenizer.all_special_ids)
            allowed = with_prompt_tokens(self._korean_pieces, prompts)
            self._output_tokens.append(len(allowed))
        if self.engine.korean_head:
            self.llm.apply_model(lambda model: model.keep_output_tokens(allowed))
            allowed = None
        return self._sampling_params(sampling, allowed)

    def _token_prompts(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[dict]:
        """The prompts as the engine's tokens (tokenized once, here), each checked to leave room for
        `max_tokens` in the context (`check_prompt_lengths`)."""
        tokenizer = self.llm.get_tokenizer()
        token_ids = {r["id"]: tokenizer(r["prompt"]).input_ids for r in requests}
        check_prompt_lengths(
            {request_id: len(ids) for request_id, ids in token_ids.items()}, self.engine.max_model_len, sampling.max_tokens
        )
        return [{"prompt_token_ids": token_ids[r["id"]]} for r in requests]

    def engine_stats(self) -> dict[str, float]:
        """The engine's own counters since start (vLLM's metrics; empty when it keeps none):
        prompt tokens, those served from the prefix cache, generated tokens and engine steps; with
        `korean_output` batches, the mean number of tokens their questions could use."""
        wanted = {
            "vllm:prompt_tokens": "prompt_tokens",
            "vllm:prompt_tokens_cached": "cached_prompt_tokens",
            "vllm:generation_tokens": "generation_tokens",
            "vllm:iteration_tokens_total": "engine_steps",
            "vllm:num_preemptions": "preemptions",
        }
        try:
            metrics = self.llm.get_metrics() if self.llm is not None else []
        except (AssertionError, AttributeError, RuntimeError):  # stats switched off
            return {}
        counters = {wanted[m.name]: getattr(m, "value", getattr(m, "count", 0)) for m in metrics if m.name in wanted}
        if self._output_tokens:
            counters["output_tokens"] = round(sum(self._output_tokens) / len(self._output_tokens))
        return counters

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
        self.keeps_stop_strings = False  # vLLM's server can keep a stop string in the text; others drop it

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
        listed = [m for m in models.get("data", []) if isinstance(m, dict)]
        ids = [m.get("id") for m in listed]
        self.keeps_stop_strings = any(m.get("owned_by") == "vllm" for m in listed)
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
        kept = list(sampling.stop_kept) if self.keeps_stop_strings else []
        if sampling.stop or kept:
            body["stop"] = [*sampling.stop, *kept]
        if kept:
            body["include_stop_str_in_output"] = True  # vLLM's extension
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
        """One request's ``n`` completions; a server that answers fewer choices than ``n`` (llama.cpp's
        serves one) is asked again for the rest."""
        completion: Completion = {"id": request["id"], "texts": [], "finish_reasons": [], "prompt_tokens": 0, "completion_tokens": 0}
        while len(completion["texts"]) < sampling.n:
            path, body = self._body(request, replace(sampling, n=sampling.n - len(completion["texts"])))
            response = self._call("POST", path, body)
            choices = sorted(response.get("choices", []), key=lambda c: c.get("index", 0))
            if not choices:
                raise BackendError(f"LLM server at {self.base_url} answered no choices for {request['id']!r}")
            completion["texts"].extend(_choice_text(choice) for choice in choices)
            completion["finish_reasons"].extend(c.get("finish_reason") for c in choices)
            usage = response.get("usage") or {}
            completion["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            completion["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        return completion

    def complete(self, requests: Sequence[Request], sampling: SamplingSettings) -> list[Completion]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def engine_stats(self) -> dict[str, float]:
        return {}  # a server's counters are its own

    def close(self) -> None:
        pass


def _choice_text(choice: dict) -> str:
    """A choice's text (completion) or message content (chat); a chat answer cut off while thinking
    keeps its trace visible to the parser."""
    if "message" not in choice:
        return choice.get("text") or ""
    message = choice["message"] or {}
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if content is None and reasoning:
        content = f"<think>{reasoning}"
    return content or ""


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
