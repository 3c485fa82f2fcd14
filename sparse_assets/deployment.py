"""Where the graph runs, chosen by one setting: SPARSE_ASSETS_DEPLOYMENT = local (default) | k8s.

- local: Dagster's multiprocess executor on this machine; the LLM worker is a subprocess
  (`PipesSubprocessClient`); GPU steps share the instance's concurrency pool "gpu" (limit 1).
- k8s: every step in its own Kubernetes job (dagster-k8s `k8s_job_executor`). Model training steps
  request one GPU each (`GPU_OP_TAGS`, applied per step by the executor). The LLM worker runs in its
  own pod (`PipesK8sClient`, through `K8sWorkerClient`, which takes the arguments the LLM assets
  pass to `PipesSubprocessClient.run`) that requests `SPARSE_ASSETS_LLM_GPUS` GPUs (default 1; set
  it to vLLM's tensor_parallel_size for a model larger than one GPU); its step pod needs no GPU.
  With SPARSE_ASSETS_LLM_LAUNCHER=subprocess the worker stays a subprocess of its step pod, and that
  step pod requests the GPUs instead.

Environment (k8s): SPARSE_ASSETS_IMAGE (the image with both virtualenvs; else DAGSTER_CURRENT_IMAGE,
set by the k8s run launcher), SPARSE_ASSETS_K8S_NAMESPACE (default `default`),
SPARSE_ASSETS_SHARED_PVC + SPARSE_ASSETS_SHARED_MOUNT (a ReadWriteMany volume mounted in the step
pods and the worker pod: the worker's job and result files go there; the step pods set TMPDIR to it).
Artifacts go wherever SPARSE_ASSETS_DATASET points (a folder or an fsspec URL such as s3://bucket/ds:
install s3fs / gcsfs / adlfs into the image).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

DEPLOYMENTS = ("local", "k8s")
LLM_LAUNCHERS = ("pod", "subprocess")

# Steps that need an accelerator (op names = asset names); those absent from the graph are ignored.
LLM_STEPS = ("synthetic_qd_pairs", "enhanced_synonyms")
# the dense teacher's encoding and the sparse encoders' training: one GPU each
TRAINING_STEPS = (
    "document_embeddings",
    "teacher_scores",
    "neural_sparse_v1_model",
    "neural_sparse_v2_model",
    "neural_sparse_v2_without_llm_model",
)
GPU_STEPS = LLM_STEPS + TRAINING_STEPS


def gpu_k8s_config(gpus: int = 1) -> dict:
    """dagster-k8s user-defined config of a pod that requests `gpus` NVIDIA GPUs."""
    count = str(int(gpus))
    return {"container_config": {"resources": {"requests": {"nvidia.com/gpu": count}, "limits": {"nvidia.com/gpu": count}}}}


# Read by dagster-k8s for the step's pod (as op tags or as the executor's per-step config); ignored locally.
GPU_OP_TAGS = {"dagster-k8s/config": gpu_k8s_config(1)}


def deployment_from_env() -> str:
    return os.environ.get("SPARSE_ASSETS_DEPLOYMENT", "local").strip() or "local"


def llm_launcher_from_env() -> str:
    launcher = os.environ.get("SPARSE_ASSETS_LLM_LAUNCHER", "pod").strip() or "pod"
    if launcher not in LLM_LAUNCHERS:
        raise ValueError(f"SPARSE_ASSETS_LLM_LAUNCHER={launcher!r} is not one of {LLM_LAUNCHERS}")
    return launcher


def llm_gpus_from_env() -> int:
    """GPUs for the LLM worker: vLLM's tensor_parallel_size (SPARSE_ASSETS_LLM_GPUS, default 1)."""
    value = os.environ.get("SPARSE_ASSETS_LLM_GPUS", "1")
    try:
        gpus = int(value)
    except ValueError:
        raise ValueError(f"SPARSE_ASSETS_LLM_GPUS={value!r} is not a whole number of GPUs") from None
    if gpus < 1:
        raise ValueError(f"SPARSE_ASSETS_LLM_GPUS={gpus} must be at least 1")
    return gpus


def _check(deployment: str) -> None:
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"SPARSE_ASSETS_DEPLOYMENT={deployment!r} is not one of {DEPLOYMENTS}")


def _image() -> str | None:
    return os.environ.get("SPARSE_ASSETS_IMAGE") or os.environ.get("DAGSTER_CURRENT_IMAGE") or None


def _shared_volume() -> tuple[dict, dict] | None:
    """(volume, volumeMount) of the shared ReadWriteMany claim, when configured."""
    claim = os.environ.get("SPARSE_ASSETS_SHARED_PVC")
    if not claim:
        return None
    mount = os.environ.get("SPARSE_ASSETS_SHARED_MOUNT", "/shared")
    return ({"name": "sparse-assets-shared", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "sparse-assets-shared", "mountPath": mount})


def per_step_k8s_config(launcher: str | None = None, llm_gpus: int | None = None) -> dict[str, dict]:
    """k8s config per GPU step: training steps get one GPU; LLM steps get `llm_gpus` only when the
    worker runs inside the step pod (launcher `subprocess`), else the worker's own pod gets them."""
    launcher = launcher or llm_launcher_from_env()
    llm_gpus = llm_gpus or llm_gpus_from_env()
    config = {step: gpu_k8s_config(1) for step in TRAINING_STEPS}
    # launcher pod: the LLM step pod only waits for the worker pod, so it asks for no GPU (even if tagged)
    config.update({step: gpu_k8s_config(llm_gpus if launcher == "subprocess" else 0) for step in LLM_STEPS})
    return config


def _step_pod_config() -> dict:
    """Every step pod: the shared volume (when configured) mounted, TMPDIR on it (the LLM worker's
    job/result files are made with tempfile, so the worker pod can read and write them)."""
    shared = _shared_volume()
    if not shared:
        return {}
    volume, mount = shared
    return {"container_config": {"volume_mounts": [mount], "env": [{"name": "TMPDIR", "value": mount["mountPath"]}]},
            "pod_spec_config": {"volumes": [volume]}}


def executor_config(launcher: str | None = None, llm_gpus: int | None = None) -> dict:
    """The k8s_job_executor config of this deployment (namespace, image, GPU requests per step)."""
    config: dict[str, Any] = {
        "job_namespace": os.environ.get("SPARSE_ASSETS_K8S_NAMESPACE", "default"),
        "max_concurrent": 4,
        "per_step_k8s_config": per_step_k8s_config(launcher, llm_gpus),
    }
    step = _step_pod_config()
    if step:
        config["step_k8s_config"] = step
    image = _image()
    if image:
        config["job_image"] = image
    return config


def executor_for(deployment: str) -> dg.ExecutorDefinition | None:
    """The executor of a deployment (None: Dagster's default multiprocess executor)."""
    _check(deployment)
    if deployment == "local":
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(executor_config(), name="sparse_assets_k8s_executor")


def _worker_client_class():
    from dagster._core.errors import DagsterPipesExecutionError
    from dagster_k8s import PipesK8sClient

    class K8sWorkerClient(PipesK8sClient):
        """`PipesK8sClient` that takes what the LLM assets pass to `PipesSubprocessClient.run`
        (context, command, extras, env, cwd) and runs the worker in its own pod: same image (it holds
        the LLM virtualenv at the same path), `cwd` as the container's working directory, the GPU
        request, the shared volume. A failed pod is reported as `DagsterPipesExecutionError`, as a
        failed subprocess is, so the asset names the cause the same way."""

        def __init__(self, image: str | None, namespace: str | None, gpus: int = 1, **kwargs):
            super().__init__(**kwargs)
            self.image = image
            self.namespace = namespace
            self.gpus = gpus

        def pod_spec(self, cwd: str | None = None) -> dict:
            container: dict[str, Any] = {"resources": gpu_k8s_config(self.gpus)["container_config"]["resources"]}
            if cwd:
                container["workingDir"] = cwd
            spec: dict[str, Any] = {"containers": [container]}
            shared = _shared_volume()
            if shared:
                volume, mount = shared
                container["volumeMounts"] = [mount]
                spec["volumes"] = [volume]
            return spec

        def run(  # the PipesSubprocessClient.run signature the assets use
            self,
            *,
            context,
            command: str | Sequence[str],
            extras: Mapping[str, Any] | None = None,
            env: Mapping[str, str] | None = None,
            cwd: str | None = None,
            **kwargs,
        ):
            if not self.image:
                raise DagsterPipesExecutionError(
                    "the LLM worker pod needs an image: set SPARSE_ASSETS_IMAGE (or run under the k8s run launcher)")
            from dagster_k8s.client import DagsterK8sError

            try:
                return super().run(context=context, command=list(command) if not isinstance(command, str) else command,
                                   extras=extras, env=env, image=self.image, namespace=self.namespace,
                                   base_pod_spec=self.pod_spec(cwd), **kwargs)
            except DagsterK8sError as error:
                raise DagsterPipesExecutionError(f"LLM worker pod failed: {error}") from error

    return K8sWorkerClient


def k8s_worker_client(gpus: int | None = None):
    """The LLM worker's Pipes client for the k8s deployment (a PipesK8sClient in its own pod)."""
    return _worker_client_class()(
        image=_image(), namespace=os.environ.get("SPARSE_ASSETS_K8S_NAMESPACE", "default"),
        gpus=gpus or llm_gpus_from_env(),
    )


def resource_overrides(deployment: str) -> dict:
    """Resources a deployment replaces: under k8s (launcher `pod`) the LLM assets'
    `pipes_subprocess_client` is a `K8sWorkerClient` (same key, same call)."""
    _check(deployment)
    if deployment == "k8s" and llm_launcher_from_env() == "pod":
        return {"pipes_subprocess_client": k8s_worker_client()}
    return {}
