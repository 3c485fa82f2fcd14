"""Beyond one machine, as far as a machine without a cluster can test it: the same
Definitions load and validate with the k8s executor (SPARSE_ASSETS_DEPLOYMENT=k8s), every GPU step
gets its GPU request, the LLM worker's pod client takes the LLM assets' call unchanged, and the IO
managers round-trip a real base_model materialization through an fsspec filesystem (`memory://`)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from upath import UPath

from sparse_assets.defs import deployment
from sparse_assets.defs.assets.base_model import base_assets, data_assets, eval_queries_are_not_training_queries, teacher_assets
from sparse_assets.defs.definitions import build_definitions
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource
from sparse_assets.environment import DEFAULT_LLM_PYTHON, Deployment, read_environment
from sparse_assets.store.storage import content_hash, read_index
from sparse_assets_tests.korquad_data import REPO, korquad_slice
from sparse_assets_tests.llm_fakes import FakeOpenAI, last_title

DAGSTER = Path(sys.executable).parent / "dagster"
# the base group's inputs to training, the teacher's dense encodings included
BASE_DATA = {"documents", "eval_queries", "idf_statistics", "bilingual_synonyms", "qd_pairs_base", "document_embeddings", "teacher_scores"}
# a v1 model small enough for a test (its quality checks are not the point here)
TINY_V1 = {
    "ops": {
        "neural_sparse_v1_model": {
            "config": {"steps": 8, "batch_size": 8, "layers": 2, "max_length": 128, "teacher_dense_weight": 0.0, "validation_fraction": 0.2}
        }
    }
}
K8S_ENV = {
    "SPARSE_ASSETS_DEPLOYMENT": "k8s",
    "SPARSE_ASSETS_IMAGE": "registry.example/sparse-assets:test",
    "SPARSE_ASSETS_K8S_NAMESPACE": "ml",
}


def step_pod(op_name: str, op_tags: dict, executor_config: dict) -> dict:
    """The pod spec dagster-k8s's k8s_job_executor builds for a step, merged as the executor merges it:
    its step_k8s_config, then the op's `dagster-k8s/config` tag, then per_step_k8s_config[op]."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_user_defined_k8s_config
    from kubernetes.client import ApiClient

    context = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor_config.get("step_k8s_config", {})))
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(dict(op_tags)))).merge(
        K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor_config["per_step_k8s_config"].get(op_name, {})))
    )
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image=executor_config.get("job_image", "image"),
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="dagster-instance",
        ),
        ["dagster", "api", "execute_step"],
        f"dagster-step-{op_name.replace('_', '-')}",
        context.run_k8s_config,
        f"dagster-step-{op_name.replace('_', '-')}",
        component="step_worker",
    )
    return ApiClient().sanitize_for_serialization(job)["spec"]["template"]["spec"]


def gpus_of(pod_spec: dict) -> int:
    return int(((pod_spec["containers"][0].get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))


def load_in_subprocess(env: dict, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False
    )


# ----------------------------------------------------------------------------- one setting


def test_definitions_validate_with_the_k8s_executor():
    env = {**os.environ, **K8S_ENV}
    done = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-m", "sparse_assets.defs.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr

    probe = load_in_subprocess(
        K8S_ENV,
        (
            "import json\n"
            "from sparse_assets.defs.definitions import defs\n"
            "jobs = {j: defs.resolve_job_def(j).executor_def.name for j in ('all_assets_job', 'base_job', 'resynthesis_job')}\n"
            "client = type(defs.resources['llm_worker_client']).__name__\n"
            "print(json.dumps({'jobs': jobs, 'client': client}))\n"
        ),
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    loaded = json.loads(probe.stdout.strip().splitlines()[-1])
    assert set(loaded["jobs"].values()) == {"sparse_assets_k8s_executor"}
    assert loaded["client"] == "K8sWorkerClient"


def test_local_is_the_default_and_a_wrong_setting_is_named():
    probe = load_in_subprocess(
        {"SPARSE_ASSETS_DEPLOYMENT": ""},
        (
            "from sparse_assets.defs.definitions import defs\n"
            "print(defs.resolve_job_def('all_assets_job').executor_def.name, type(defs.resources['llm_worker_client']).__name__)\n"
        ),
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["multi_or_in_process_executor", "PipesSubprocessClient"]
    assert read_environment({}).deployment == Deployment()
    assert deployment.executor_for(Deployment()) is None and deployment.resource_overrides(Deployment()) == {}
    with pytest.raises(ValueError, match=r"SPARSE_ASSETS_DEPLOYMENT='kubernetes' is not one of \('local', 'k8s'\)"):
        read_environment({"SPARSE_ASSETS_DEPLOYMENT": "kubernetes"})
    with pytest.raises(ValueError, match="SPARSE_ASSETS_DEPLOYMENT='cloud'"):
        build_definitions("dataset", ["embedded"], deployment=Deployment(kind="cloud"))
    with pytest.raises(ValueError, match="SPARSE_ASSETS_LLM_GPUS='two' is not a whole number"):
        read_environment({"SPARSE_ASSETS_LLM_GPUS": "two"})
    with pytest.raises(ValueError, match="SPARSE_ASSETS_LLM_LAUNCHER='job' is not one of"):
        read_environment({"SPARSE_ASSETS_LLM_LAUNCHER": "job"})


# ----------------------------------------------------------------------------- GPU placement


@pytest.mark.parametrize("launcher", ["pod", "subprocess"])
def test_every_gpu_asset_gets_its_gpus_under_k8s(launcher):
    k8s = read_environment(
        {
            **K8S_ENV,
            "SPARSE_ASSETS_LLM_LAUNCHER": launcher,
            "SPARSE_ASSETS_LLM_GPUS": "2",  # tensor parallel over two GPUs
            "SPARSE_ASSETS_SHARED_PVC": "sparse-assets-rwx",
        }
    ).deployment
    config = deployment.executor_config(k8s)
    assert config["job_namespace"] == "ml" and config["job_image"] == K8S_ENV["SPARSE_ASSETS_IMAGE"]
    # the config is valid for dagster-k8s's executor (it is checked only when a run starts)
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    checked = process_config(k8s_job_executor.config_schema.config_type, config)
    assert checked.success, checked.errors
    assert deployment.executor_for(k8s).name == "sparse_assets_k8s_executor"

    graph = build_definitions("dataset", ["embedded"]).resolve_asset_graph()
    worker_gpus = deployment.k8s_worker_client(k8s).deployment.llm_gpus if launcher == "pod" else 0
    gpu_assets, cpu_assets = [], []
    for key in graph.get_all_asset_keys():
        op = graph.get(key).assets_def.op
        (gpu_assets if op.pool == "gpu" else cpu_assets).append(op.name)
        pod = step_pod(op.name, op.tags, config)
        gpus = gpus_of(pod)
        # every step pod mounts the shared volume and keeps its temp files there
        assert {"name": "TMPDIR", "value": "/shared"} in pod["containers"][0]["env"]
        assert pod["containers"][0]["volumeMounts"] == [{"name": "sparse-assets-shared", "mountPath": "/shared"}]
        assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "sparse-assets-rwx"}
        if op.name in deployment.LLM_STEPS:
            assert (gpus, worker_gpus) == ((0, 2) if launcher == "pod" else (2, 0)), op.name
        elif op.name in deployment.TRAINING_STEPS:
            assert gpus == 1, op.name
        else:
            assert gpus == 0, f"{op.name} asks for a GPU it does not use"
    # a GPU tag on an LLM asset does not make its step pod hold GPUs the worker pod needs
    tagged = step_pod("synthetic_qd_pairs", {"dagster-k8s/config": json.dumps(deployment.GPU_OP_TAGS["dagster-k8s/config"])}, config)
    assert gpus_of(tagged) == (0 if launcher == "pod" else 2)
    # every asset in the accelerator pool is a GPU step (the LLM assets now; the model assets once integrated)
    assert {"synthetic_qd_pairs", "enhanced_synonyms"} <= set(gpu_assets) <= set(deployment.GPU_STEPS)
    assert "documents" in cpu_assets


def test_the_worker_pod_client_takes_the_llm_assets_call(monkeypatch):
    from dagster._core.errors import DagsterPipesExecutionError
    from dagster_k8s import PipesK8sClient
    from dagster_k8s.client import DagsterK8sError
    from dagster_k8s.pipes import build_pod_body
    from kubernetes.client import ApiClient

    k8s = read_environment(
        {**K8S_ENV, "SPARSE_ASSETS_LLM_GPUS": "4", "SPARSE_ASSETS_SHARED_PVC": "sparse-assets-rwx", "SPARSE_ASSETS_SHARED_MOUNT": "/shared"}
    ).deployment
    calls = []
    monkeypatch.setattr(PipesK8sClient, "run", lambda self, **kwargs: calls.append(kwargs) or "invocation")
    client = deployment.resource_overrides(k8s)["llm_worker_client"]
    assert isinstance(client, PipesK8sClient)
    # exactly the call sparse_assets.defs.assets.llm_generated.run_llm_worker makes
    llm = LLMResource(backend="openai", base_url="http://llm:8000/v1")
    command = [llm.python, "-m", "sparse_assets.llm.worker"]
    result = client.run(
        context="ctx",
        command=command,
        extras={"job_file": "/shared/tmp/job.json"},
        env={"PYTHONPATH": str(PROJECT_ROOT)},
        cwd=str(PROJECT_ROOT),
    )
    assert result == "invocation"
    [call] = calls
    assert call["image"] == K8S_ENV["SPARSE_ASSETS_IMAGE"] and call["namespace"] == "ml"
    assert call["command"] == command and call["extras"] == {"job_file": "/shared/tmp/job.json"}
    pod = build_pod_body(
        "worker", call["image"], call["command"], {**call["env"], "DAGSTER_PIPES_CONTEXT": "x"}, None, call["base_pod_spec"]
    )  # what the client would send to the API server
    body = ApiClient().sanitize_for_serialization(pod)
    container = body["spec"]["containers"][0]
    assert container["image"] == K8S_ENV["SPARSE_ASSETS_IMAGE"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["workingDir"] == str(PROJECT_ROOT) and container["command"] == command
    assert {"name": "PYTHONPATH", "value": str(PROJECT_ROOT)} in container["env"]
    assert container["volumeMounts"] == [{"name": "sparse-assets-shared", "mountPath": "/shared"}]
    assert body["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "sparse-assets-rwx"}
    assert body["spec"]["restartPolicy"] == "Never"
    # the step pods mount the same volume and put their temp files (the worker's job/result files) on it
    step = deployment.executor_config(k8s)["step_k8s_config"]
    assert {"name": "TMPDIR", "value": "/shared"} in step["container_config"]["env"]

    def failing(self, **kwargs):
        raise DagsterK8sError("Pod did not exit successfully: OOMKilled")

    monkeypatch.setattr(PipesK8sClient, "run", failing)
    with pytest.raises(DagsterPipesExecutionError, match="LLM worker pod failed: .*OOMKilled"):
        client.run(context="ctx", command=command, extras={}, env={}, cwd="/app")
    with pytest.raises(DagsterPipesExecutionError, match="set SPARSE_ASSETS_IMAGE"):
        deployment.k8s_worker_client(dataclasses.replace(k8s, image=None)).run(
            context="ctx", command=command, extras={}, env={}, cwd="/app"
        )


@pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing")
def test_the_llm_asset_runs_through_the_pod_client(tmp_path, monkeypatch):
    """The k8s resource swap end to end, with the pod emulated by a local subprocess: the asset's
    call goes through K8sWorkerClient into PipesK8sClient.run, whose pod spec (working dir) and
    Pipes session run the real worker against a scripted OpenAI-compatible server."""
    from dagster_k8s import PipesK8sClient

    from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
    from sparse_assets_tests.korquad_data import documents_stub, five_documents

    k8s = read_environment({"SPARSE_ASSETS_DEPLOYMENT": "k8s", "SPARSE_ASSETS_IMAGE": "registry.example/sparse-assets:test"}).deployment
    pods = []

    def emulated_pod(self, *, context, command, extras, env, image, namespace, base_pod_spec, **kwargs):
        pods.append({"image": image, "spec": base_pod_spec})
        return dg.PipesSubprocessClient(cwd=base_pod_spec["containers"][0]["workingDir"]).run(
            context=context, command=command, extras=extras, env=env
        )

    monkeypatch.setattr(PipesK8sClient, "run", emulated_pod)

    def question(prompt: str, i: int) -> str:
        return f" {last_title(prompt).replace('_', ' ')}에 대해 {['무엇', '언제', '누가'][i % 3]} 알려져 있나?"

    with FakeOpenAI(question) as server:
        result = dg.materialize(
            [documents_stub, synthetic_qd_pairs],
            resources={
                **io_managers(str(tmp_path / "dataset")),
                "llm": LLMResource(backend="openai", base_url=server.url),
                **deployment.resource_overrides(k8s),
            },
        )
    assert result.success
    assert len(pods) == 1 and pods[0]["image"] == "registry.example/sparse-assets:test"
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pairs = result.output_for_node("synthetic_qd_pairs")
    assert {p["positive_id"] for p in pairs} == {d["id"] for d in five_documents()}
    meta = result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata
    assert meta["llm/prompts"].value == 5  # the worker's report came back through the Pipes session


# ----------------------------------------------------------------------------- object storage


@pytest.fixture(scope="module")
def local_base(tmp_path_factory, model_cache) -> tuple[Path, Path]:
    """(KorQuAD slice, dataset root) with the base_model group materialized on local disk."""
    base = tmp_path_factory.mktemp("deploy")
    source = korquad_slice(base / "korquad_2.json", articles=2)
    root = base / "dataset"
    defs = build_definitions(root, [str(source)], cache_dir=model_cache)
    assert dg.materialize([*data_assets, *teacher_assets, eval_queries_are_not_training_queries], resources=defs.resources).success
    return source, root


def test_a_base_group_materialization_round_trips_through_memory_fs(local_base, model_cache):
    source, local_root = local_base
    remote_root = "memory://sparse-assets-deploy-test/dataset"
    defs = build_definitions(remote_root, [str(source)], cache_dir=model_cache)
    # the whole group, its model folder included (trained briefly)
    result = dg.materialize([*base_assets, eval_queries_are_not_training_queries], resources=defs.resources, run_config=TINY_V1)
    assert result.success
    remote = UPath(remote_root)
    assert remote.protocol == "memory"
    index = read_index(remote)
    assert set(index) == BASE_DATA | {"neural_sparse_v1_model"}
    local_index = read_index(UPath(local_root))
    for key, entry in index.items():
        assert (entry["sha256"], entry["bytes"]) == content_hash(remote / entry["path"])
        assert key == "neural_sparse_v1_model" or entry["path"] == local_index[key]["path"]
    assert (remote / "base_model/neural_sparse_v1_model/modules.json").exists()
    # same content on both filesystems (documents are deterministic; pairs and IDF too)
    for name in ("base_model/documents.json", "base_model/eval_queries.json", "base_model/idf.json"):
        assert (remote / name).read_bytes() == (local_root / name).read_bytes(), name
    assert pickle.loads((remote / "base_model/idf_statistics.pkl").read_bytes()) == pickle.loads(
        (local_root / "base_model/idf_statistics.pkl").read_bytes()
    )
    # and a downstream asset loads them back through the same IO managers
    seen = {}

    @dg.asset
    def probe(documents: list, idf_statistics: dict, qd_pairs_base: list, neural_sparse_v1_model) -> None:
        from sparse_assets.encoder.sparse_model import encode_documents, load_sparse_encoder

        assert neural_sparse_v1_model.exists() and not str(neural_sparse_v1_model).startswith("memory")  # downloaded
        vectors = encode_documents(load_sparse_encoder(neural_sparse_v1_model), [documents[0]["text"]])
        seen.update(documents=len(documents), idf=len(idf_statistics), pairs=len(qd_pairs_base), nnz=vectors.nnz)

    defs = build_definitions(remote_root, [str(source)], cache_dir=model_cache)
    assert dg.materialize([*base_assets, probe], resources=defs.resources, selection=[probe.key]).success
    assert seen["documents"] == result.asset_materializations_for_node("documents")[0].metadata["documents"].value
    assert seen["idf"] > 500 and seen["pairs"] >= seen["documents"] and seen["nnz"] > 0
    assert not [p for p in remote.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- multi-GPU training


def test_torchrun_trains_one_model_with_distributed_data_parallel(local_base, model_cache, tmp_path):
    """`torchrun --nproc_per_node 2 -m sparse_assets.defs.train_multi_gpu`: two processes (gloo on this CPU,
    NCCL on GPUs) train one model through SparseEncoderTrainer; rank 0 writes the folder."""
    from sparse_assets.encoder.sparse_model import encode_documents, load_sparse_encoder

    _, root = local_base
    out = tmp_path / "ddp_model"
    settings = {
        "steps": 3,
        "batch_size": 4,
        "layers": 2,
        "max_length": 32,
        "validation_fraction": 0.2,
        "threads": 1,
    }  # 32-token windows: each process holds [documents, tokens, 250k vocabulary] logits
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc_per_node",
            "2",
            "-m",
            "sparse_assets.defs.train_multi_gpu",
            "--dataset",
            str(root),
            "--out",
            str(out),
            "--settings",
            json.dumps(settings),
        ],
        cwd=REPO,
        env={**os.environ, "SPARSE_ASSETS_CACHE": str(model_cache), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"world_size"')))
    assert summary["world_size"] == 2 and summary["steps"] == 3 and summary["validation"]["queries"] > 0
    # the trainer saw 3 steps x 4 pairs x 2 processes
    runtime = next(line for line in done.stdout.splitlines() if "train_runtime" in line)
    stats = {k: float(v) for k, v in (item.split(": ") for item in runtime.strip("{}").replace("'", "").split(", ")) if k != "epoch"}
    assert round(stats["train_runtime"] * stats["train_samples_per_second"]) == 3 * 4 * 2
    assert not list(tmp_path.glob(".ddp_model.rank*"))
    model = load_sparse_encoder(out)
    vectors = encode_documents(model, ["대한민국의 수도는 서울이다."])
    assert vectors.nnz > 0
