"""Where the graph runs (`sparse_assets.environment.Deployment`), chosen by one setting:
SPARSE_ASSETS_DEPLOYMENT = local (default) | k8s.

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

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from sparse_assets.environment import Deployment

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


def _shared_volume(deployment: Deployment) -> tuple[dict, dict] | None:
    """(volume, volumeMount) of the shared ReadWriteMany claim, when configured."""
    if not deployment.shared_pvc:
        return None
    return (
        {"name": "sparse-assets-shared", "persistentVolumeClaim": {"claimName": deployment.shared_pvc}},
        {"name": "sparse-assets-shared", "mountPath": deployment.shared_mount},
    )


def per_step_k8s_config(deployment: Deployment) -> dict[str, dict]:
    """k8s config per GPU step: training steps get one GPU; LLM steps get `llm_gpus` only when the
    worker runs inside the step pod (launcher `subprocess`), else the worker's own pod gets them."""
    config = {step: gpu_k8s_config(1) for step in TRAINING_STEPS}
    # launcher pod: the LLM step pod only waits for the worker pod, so it asks for no GPU (even if tagged)
    llm_step_gpus = deployment.llm_gpus if deployment.llm_launcher == "subprocess" else 0
    config.update({step: gpu_k8s_config(llm_step_gpus) for step in LLM_STEPS})
    return config


def _step_pod_config(deployment: Deployment) -> dict:
    """Every step pod: the shared volume (when configured) mounted, TMPDIR on it (the LLM worker's
    job/result files are made with tempfile, so the worker pod can read and write them)."""
    shared = _shared_volume(deployment)
    if not shared:
        return {}
    volume, mount = shared
    return {
        "container_config": {"volume_mounts": [mount], "env": [{"name": "TMPDIR", "value": mount["mountPath"]}]},
        "pod_spec_config": {"volumes": [volume]},
    }


def executor_config(deployment: Deployment) -> dict:
    """The k8s_job_executor config of this deployment (namespace, image, GPU requests per step)."""
    config: dict[str, Any] = {
        "job_namespace": deployment.k8s_namespace,
        "max_concurrent": 4,
        "per_step_k8s_config": per_step_k8s_config(deployment),
    }
    step = _step_pod_config(deployment)
    if step:
        config["step_k8s_config"] = step
    if deployment.image:
        config["job_image"] = deployment.image
    return config


def executor_for(deployment: Deployment) -> dg.ExecutorDefinition | None:
    """The executor of a deployment (None: Dagster's default multiprocess executor)."""
    if deployment.kind == "local":
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(executor_config(deployment), name="sparse_assets_k8s_executor")


def _worker_client_class():
    from dagster._core.errors import DagsterPipesExecutionError
    from dagster_k8s import PipesK8sClient

    class K8sWorkerClient(PipesK8sClient):
        """`PipesK8sClient` that takes what the LLM assets pass to `PipesSubprocessClient.run`
        (context, command, extras, env, cwd) and runs the worker in its own pod: same image (it holds
        the LLM virtualenv at the same path), `cwd` as the container's working directory, the GPU
        request, the shared volume. A failed pod is reported as `DagsterPipesExecutionError`, as a
        failed subprocess is, so the asset names the cause the same way."""

        def __init__(self, deployment: Deployment, **kwargs):
            super().__init__(**kwargs)
            self.deployment = deployment

        def pod_spec(self, cwd: str | None = None) -> dict:
            container: dict[str, Any] = {"resources": gpu_k8s_config(self.deployment.llm_gpus)["container_config"]["resources"]}
            if cwd:
                container["workingDir"] = cwd
            spec: dict[str, Any] = {"containers": [container]}
            shared = _shared_volume(self.deployment)
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
            if not self.deployment.image:
                raise DagsterPipesExecutionError(
                    "the LLM worker pod needs an image: set SPARSE_ASSETS_IMAGE (or run under the k8s run launcher)"
                )
            from dagster_k8s.client import DagsterK8sError

            try:
                return super().run(
                    context=context,
                    command=list(command) if not isinstance(command, str) else command,
                    extras=extras,
                    env=env,
                    image=self.deployment.image,
                    namespace=self.deployment.k8s_namespace,
                    base_pod_spec=self.pod_spec(cwd),
                    **kwargs,
                )
            except DagsterK8sError as error:
                raise DagsterPipesExecutionError(f"LLM worker pod failed: {error}") from error

    return K8sWorkerClient


def k8s_worker_client(deployment: Deployment):
    """The LLM worker's Pipes client for the k8s deployment (a PipesK8sClient in its own pod)."""
    return _worker_client_class()(deployment)


def resource_overrides(deployment: Deployment) -> dict:
    """Resources a deployment replaces: under k8s (launcher `pod`) the LLM assets'
    `llm_worker_client` is a `K8sWorkerClient` (same key, same call)."""
    if deployment.kind == "k8s" and deployment.llm_launcher == "pod":
        return {"llm_worker_client": k8s_worker_client(deployment)}
    return {}
