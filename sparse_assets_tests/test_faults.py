"""Faults and bad input through real materializations. Each case ends in a clear message,
and every artifact made before it stays byte-for-byte intact and still loads through the IO managers.

One base_model materialization on a KorQuAD slice is made per module (`golden`) and copied for each
case. The LLM cases use the scripted OpenAI-compatible server (no vLLM here); the crash and cancel
cases run `dagster asset materialize` in a subprocess with their own DAGSTER_HOME (the project's
dagster.yaml, with the "gpu" concurrency pool).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from sparse_assets.defs.assets.base_model import base_assets, eval_queries_are_not_training_queries
from sparse_assets.defs.definitions import build_definitions
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import LLMResource
from sparse_assets.environment import DEFAULT_LLM_PYTHON
from sparse_assets.store.dataset_manager import DatasetManager
from sparse_assets.store.layout import METADATA_FILE
from sparse_assets_tests.korquad_data import KORQUAD_DEV, REPO, korquad_slice
from sparse_assets_tests.llm_fakes import FakeOpenAI

needs_llm_env = pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing")
DAGSTER = Path(sys.executable).parent / "dagster"
BASE_ARTIFACTS = {"documents", "eval_queries", "idf_statistics", "bilingual_synonyms", "qd_pairs_base"}
# the base_model group's data assets (its model, neural_sparse_v1_model, is trained elsewhere in the tests)
DATA_ASSETS = [a for a in base_assets if not {k.path[-1] for k in a.keys} - BASE_ARTIFACTS]

# ----------------------------------------------------------------------------- helpers


def start_materialize(select: str, env: dict, log: Path) -> subprocess.Popen:
    """`dagster asset materialize --select SELECT` in its own process group (so that a test can
    signal or kill all of it), its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(DAGSTER), "asset", "materialize", "-m", "sparse_assets.defs.definitions", "--select", select],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def io_manager_key(relative_path: str) -> str:
    if relative_path.endswith(".json"):
        return "json_io_manager"
    if relative_path.endswith(".pkl"):
        return "pickle_io_manager"
    return "model_io_manager"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every artifact file under `root` (temp files of interrupted writes left out)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def assert_intact(root: Path, before: dict[str, bytes], keys: set[str] = BASE_ARTIFACTS) -> None:
    """Same bytes as `before`, and each of `keys` loads through its IO manager."""
    after = snapshot(root)
    assert after.keys() == before.keys(), f"files changed: {sorted(set(after) ^ set(before))}"
    changed = [name for name in before if after[name] != before[name]]
    assert not changed, f"artifacts were modified: {changed}"
    index = json.loads((root / METADATA_FILE).read_text())["artifacts"]
    assert keys <= set(index), f"metadata.json lost entries: {sorted(keys - set(index))}"
    managers = io_managers(str(root))
    for key in sorted(keys):
        value = managers[io_manager_key(index[key]["path"])].load_input(dg.build_input_context(asset_key=dg.AssetKey(key)))
        assert value, f"{key} loaded empty"


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a failed step"
    return failures[0].step_failure_data.error.to_string()


def materialize_base(root: Path, sources: list[str], cache: Path, **kwargs) -> dg.ExecuteInProcessResult:
    defs = build_definitions(root, sources, cache_dir=cache)
    return dg.materialize([*DATA_ASSETS, eval_queries_are_not_training_queries], resources=defs.resources, raise_on_error=False, **kwargs)


@dg.asset(name="pairs_probe")
def pairs_probe(idf_statistics: dict, qd_pairs_base: list) -> None:
    """Stands in for a model asset: consumes the two pickled base artifacts through their IO manager."""
    assert idf_statistics and qd_pairs_base


@pytest.fixture(scope="module")
def golden(tmp_path_factory, model_cache) -> Path:
    """The base_model group's data assets materialized once on two KorQuAD dev articles."""
    base = tmp_path_factory.mktemp("golden")
    source = korquad_slice(base / "korquad_2.json", articles=2)
    root = base / "dataset"
    result = materialize_base(root, [str(source)], model_cache)
    assert result.success
    return root


@pytest.fixture
def dataset(golden, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A private copy of the golden dataset and its snapshot."""
    root = tmp_path / "dataset"
    shutil.copytree(golden, root)
    return root, snapshot(root)


def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME with the project's instance settings (the "gpu" pool limit of 1)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


# ----------------------------------------------------------------------------- bad corpus input


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _korean_as_english(tmp: Path) -> str:
    data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
    data["data"] = [
        {
            "title": "English",
            "paragraphs": [
                {"context": "An English paragraph about the history of the city and its long river, with no Korean at all.", "qas": []}
            ],
        }
    ]
    return _write(tmp / "english_squad.json", json.dumps(data).encode())


@pytest.mark.parametrize(
    "make_source, expected",
    [
        pytest.param(
            lambda tmp: _write(tmp / "empty.json", b'{"version": "1", "data": []}'),
            ["empty.json holds no passages (an empty file?): fix it or remove it from the corpus sources"],
            id="empty-corpus",
        ),
        pytest.param(lambda tmp: _write(tmp / "empty.jsonl", b""), ["empty.jsonl holds no passages", "CORPUS="], id="empty-jsonl"),
        pytest.param(
            lambda tmp: _write(
                tmp / "cp949.json", json.dumps({"data": [{"title": "제목", "paragraphs": []}]}, ensure_ascii=False).encode("cp949")
            ),
            ["is not UTF-8", "cp949.json"],
            id="non-utf8",
        ),
        pytest.param(
            lambda tmp: _write(tmp / "wrong.json", json.dumps({"data": [{"title": "x", "context": "본문"}]}).encode()),
            ["not SQuAD format (missing 'paragraphs')"],
            id="wrong-squad-schema",
        ),
        pytest.param(
            lambda tmp: _write(tmp / "broken.json", b'{"data": [{"title": "x", "paragraphs": ['),
            ["not valid JSON"],
            id="corrupt-json-source",
        ),
        pytest.param(_korean_as_english, ["no documents left after filtering 1 passages", "low_hangul"], id="no-hangul"),
    ],
)
def test_bad_corpus_fails_clearly_and_keeps_every_artifact(dataset, tmp_path, model_cache, make_source, expected):
    root, before = dataset
    result = materialize_base(root, [make_source(tmp_path)], model_cache)
    assert not result.success
    message = failure_message(result)
    for part in expected:
        assert part in message, f"{part!r} not in: {message[:600]}"
    assert_intact(root, before)


def test_a_one_megabyte_document_goes_through_documents_in_bounded_passages(dataset, tmp_path, model_cache):
    root, before = dataset
    data = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))
    paragraphs, size = [], 0
    for article in data["data"][10:]:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            size += len(paragraph["context"].encode("utf-8")) + 1
        if size >= 1_000_000:
            break
    text = " ".join(paragraphs)
    assert len(text.encode("utf-8")) >= 1_000_000
    source = tmp_path / "huge.jsonl"
    source.write_text(json.dumps({"id": "huge", "title": "아주 긴 문서", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    started = time.perf_counter()
    result = materialize_base(root, [str(source)], model_cache, selection=["documents", "eval_queries"])
    seconds = time.perf_counter() - started
    assert result.success
    docs = json.loads((root / "base_model/documents.json").read_text(encoding="utf-8"))
    meta = result.asset_materializations_for_node("documents")[0].metadata
    assert meta["split_long_texts"].value == 1
    assert max(len(d["text"]) for d in docs) <= 4000
    assert len(docs) >= len(text) // 4000
    kept_chars = sum(len(d["text"]) for d in docs)
    assert kept_chars >= 0.95 * len(text), f"only {kept_chars} of {len(text)} characters kept"
    assert seconds < 120, f"a 1 MB document took {seconds:.0f} s through `documents`"
    # everything else from before is untouched and loads
    others = {k: v for k, v in before.items() if not k.startswith(("base_model/documents", "base_model/eval_queries", METADATA_FILE))}
    assert {k: v for k, v in snapshot(root).items() if k in others} == others
    assert_intact(root, snapshot(root))


@pytest.mark.parametrize(
    ("asset", "setting", "value", "expected"),
    [
        ("documents", "max_chars", 0, "greater than or equal to 100"),  # used to loop without end in the splitter
        ("documents", "eval_fraction", -0.5, "greater than 0"),
        ("qd_pairs_base", "hard_negatives", -1, "greater than or equal to 0"),
        ("qd_pairs_base", "bm25_depth", -5, "greater than or equal to 1"),
        ("qd_pairs_base", "max_terms", 0, "greater than or equal to 1"),
    ],
)
def test_an_out_of_range_setting_fails_before_the_step_works_naming_field_and_bound(
    dataset, tmp_path, model_cache, asset, setting, value, expected
):
    root, before = dataset
    started = time.perf_counter()
    selection = ["documents", "eval_queries"] if asset == "documents" else [asset]  # upstream assets load from the dataset
    result = materialize_base(
        root, ["embedded"], model_cache, selection=selection, run_config={"ops": {asset: {"config": {setting: value}}}}
    )
    assert not result.success
    message = failure_message(result)
    assert setting in message and expected in message and f"input_value={value}" in message, message[-800:]
    assert time.perf_counter() - started < 120
    assert_intact(root, before)


# ----------------------------------------------------------------------------- bad artifacts in dataset/


def test_corrupt_json_artifact_names_the_file_and_the_asset_to_rematerialize(dataset, model_cache):
    from sparse_assets.cli import main as cli

    root, before = dataset
    (root / "base_model/documents.json").write_bytes(b'[{"id": "d1", "title": ')
    corrupted = snapshot(root)
    message = failure_message(materialize_base(root, ["unused"], model_cache, selection=["idf_statistics"]))
    assert "documents.json is not what 'documents' wrote" in message and "re-materialize 'documents'" in message
    assert "sparse-assets accept base_model/documents.json" in message
    assert snapshot(root) == corrupted  # nothing else was rewritten, the corrupt file included
    # accepted by hand, the file is loaded, and its corruption named
    assert cli(["--dataset", str(root), "accept", "base_model/documents.json"]) == 0
    accepted = snapshot(root)
    assert accepted.keys() == before.keys()
    message = failure_message(materialize_base(root, ["unused"], model_cache, selection=["idf_statistics"]))
    assert "documents.json is not a readable JSON artifact" in message and "re-materialize 'documents'" in message
    assert_intact(root, accepted, keys=BASE_ARTIFACTS - {"documents"})


def test_a_valid_artifact_changed_behind_the_index_is_refused(dataset, model_cache):
    """documents.json cut down by hand to 5 documents is valid JSON: without the hash check it would
    silently give an IDF over 5 documents."""
    root, _ = dataset
    documents = json.loads((root / "base_model/documents.json").read_text(encoding="utf-8"))
    (root / "base_model/documents.json").write_text(json.dumps(documents[:5], ensure_ascii=False), encoding="utf-8")
    cut = snapshot(root)
    result = materialize_base(root, ["unused"], model_cache, selection=["idf_statistics"])
    assert not result.success
    assert "documents.json is not what 'documents' wrote" in failure_message(result)
    assert snapshot(root) == cut
    assert_intact(root, cut, keys=BASE_ARTIFACTS - {"documents"})


def test_corrupt_pickle_artifact_names_the_file_and_the_asset_to_rematerialize(dataset, model_cache):
    from sparse_assets.cli import main as cli

    root, before = dataset
    pickle_path = root / "base_model/idf_statistics.pkl"
    pickle_path.write_bytes(pickle_path.read_bytes()[: len(pickle_path.read_bytes()) // 2])
    assert cli(["--dataset", str(root), "accept", "base_model/idf_statistics.pkl"]) == 0  # past the hash check
    corrupted = snapshot(root)
    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    result = dg.materialize([*base_assets, pairs_probe], resources=defs.resources, selection=[pairs_probe.key], raise_on_error=False)
    message = failure_message(result)
    assert "idf_statistics.pkl is not a readable pickle artifact" in message and "re-materialize 'idf_statistics'" in message
    assert corrupted.keys() == before.keys()
    assert_intact(root, corrupted, keys=BASE_ARTIFACTS - {"idf_statistics"})


def test_a_torn_write_of_a_file_and_its_sidecar_is_refused(dataset, model_cache):
    """A kill between the sidecar and the file it belongs with leaves idf.json of a new corpus beside
    the old idf_statistics.pkl: loading names it instead of using a mismatched pair."""
    root, _ = dataset
    (root / "base_model/idf.json").write_text(json.dumps({"▁다른": 1.0}), encoding="utf-8")
    torn = snapshot(root)
    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    result = dg.materialize([*base_assets, pairs_probe], resources=defs.resources, selection=[pairs_probe.key], raise_on_error=False)
    message = failure_message(result)
    assert "idf.json does not belong with" in message and "idf_statistics.pkl" in message and "re-materialize 'idf_statistics'" in message
    assert snapshot(root) == torn


class _RunsCode:
    """What a crafted pickle holds: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_before_it_runs_code_even_with_a_matching_hash(dataset, tmp_path, model_cache):
    """Someone who can write to the dataset root may rewrite metadata.json too (here: `accept`); the
    pickle IO manager still admits only plain data."""
    from sparse_assets.cli import main as cli

    root, _ = dataset
    marker = tmp_path / "code-ran"
    (root / "base_model/qd_pairs_base.pkl").write_bytes(pickle.dumps([{"query": "x", "payload": _RunsCode(marker)}]))
    assert cli(["--dataset", str(root), "accept", "base_model/qd_pairs_base.pkl"]) == 0
    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    result = dg.materialize([*base_assets, pairs_probe], resources=defs.resources, selection=[pairs_probe.key], raise_on_error=False)
    message = failure_message(result)
    assert "qd_pairs_base.pkl was not loaded: it names posix.system, which is not plain data" in message
    assert "re-materialize 'qd_pairs_base'" in message
    assert not marker.exists()


def test_artifact_deleted_behind_the_index_shows_missing_and_names_what_to_rematerialize(dataset, model_cache, capsys):
    from sparse_assets.cli import main as cli

    root, before = dataset
    (root / "base_model/qd_pairs_base.pkl").unlink()
    del before["base_model/qd_pairs_base.pkl"]
    assert cli(["--dataset", str(root), "summary"]) == 1
    summary = capsys.readouterr().out
    row = next(line for line in summary.splitlines() if "qd_pairs_base.pkl" in line)
    assert "missing or modified: re-materialize qd_pairs_base (make run, or the UI)" in summary
    assert "| qd_pairs_base |" in row and row.rstrip().endswith("| missing |")
    status = {row["name"]: row["status"] for row in DatasetManager(root).artifacts()}
    assert status.pop("qd_pairs_base.pkl") == "missing"
    assert {name: s for name, s in status.items() if s != "ok"} == {}  # sidecars (idf.json) are indexed too
    assert cli(["--dataset", str(root), "check", "base_model/qd_pairs_base.pkl"]) == 1

    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    result = dg.materialize([*base_assets, pairs_probe], resources=defs.resources, selection=[pairs_probe.key], raise_on_error=False)
    message = failure_message(result)
    assert "upstream artifact 'qd_pairs_base' is missing" in message and "materialize it first" in message
    assert_intact(root, before, keys=BASE_ARTIFACTS - {"qd_pairs_base"})


# ----------------------------------------------------------------------------- a crash during a write

SITECUSTOMIZE = """
import os, time
_fsync = os.fsync
def fsync(fd):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = ""
    name = os.path.basename(target)
    if os.environ["FAULT_FILE"] in name and name.endswith(".tmp"):
        open(os.environ["FAULT_MARKER"], "w").close()  # the new bytes are written, not yet renamed into place
        time.sleep(300)
    return _fsync(fd)
os.fsync = fsync
"""


@pytest.mark.processes
def test_sigkill_of_a_real_materialization_mid_write_keeps_the_previous_artifacts(dataset, tmp_path, model_cache):
    root, before = dataset
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "mid-write"
    other = korquad_slice(tmp_path / "other.json", articles=2, start=5)  # different documents: a real rewrite
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(tmp_path)),
        "SPARSE_ASSETS_DATASET": str(root),
        "SPARSE_ASSETS_CORPUS": str(other),
        "SPARSE_ASSETS_CACHE": str(model_cache),
        "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}",
        "FAULT_FILE": "documents.json",
        "FAULT_MARKER": str(marker),
    }
    log = tmp_path / "materialize.log"
    process = start_materialize("documents,eval_queries", env, log)
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), f"the run never reached the write:\n{log.read_text()[-3000:]}"
        leftovers = list((root / "base_model").glob(".documents.json.*.tmp"))
        assert leftovers and leftovers[0].stat().st_size > 0  # caught with the new bytes on disk
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert_intact(root, before)
    # the killed run no longer shows as running once `make run`'s upkeep has looked at it
    from sparse_assets.defs.instance_upkeep import fail_runs_whose_process_ended

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert fail_runs_whose_process_ended(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert fail_runs_whose_process_ended(instance) == []
    # the dataset summary still reports everything as ok (the temp file is not an artifact)
    status = {row["name"]: row["status"] for row in DatasetManager(root).artifacts()}
    assert {name: s for name, s in status.items() if s != "ok"} == {}  # sidecars (idf.json) are indexed too
    assert len(status) == len(before) - 1  # metadata.json is the index, not an artifact
    # and a downstream asset still loads what is there
    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    assert dg.materialize([*base_assets, pairs_probe], resources=defs.resources, selection=[pairs_probe.key]).success


@pytest.mark.processes
def test_a_second_run_on_a_dataset_root_in_use_fails_at_once_naming_the_first(dataset, tmp_path, model_cache):
    """Run A (a real `dagster asset materialize`) is held mid-write; run B on the same root, same
    instance, fails at its first write naming A, and writes nothing; once A is gone B goes through."""
    from sparse_assets.defs.instance_upkeep import fail_runs_whose_process_ended

    root, before = dataset
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "mid-write"
    home = dagster_home(tmp_path)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SPARSE_ASSETS_DATASET": str(root),
        "SPARSE_ASSETS_CORPUS": str(korquad_slice(tmp_path / "a.json", articles=2, start=5)),
        "SPARSE_ASSETS_CACHE": str(model_cache),
        "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}",
        "FAULT_FILE": "documents.json",
        "FAULT_MARKER": str(marker),
    }
    log = tmp_path / "run_a.log"
    process = start_materialize("documents,eval_queries", env, log)
    other = korquad_slice(tmp_path / "b.json", articles=2, start=8)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        try:
            deadline = time.time() + 120
            while not marker.exists() and time.time() < deadline and process.poll() is None:
                time.sleep(0.1)
            assert marker.exists(), f"run A never reached its write:\n{log.read_text()[-3000:]}"
            [run_a] = instance.get_runs()
            result = materialize_base(root, [str(other)], model_cache, instance=instance)
            message = failure_message(result)
            assert f"in use by run {run_a.run_id}" in message and "SPARSE_ASSETS_DATASET" in message
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        assert_intact(root, before)
        # A was killed: until the upkeep of `make run` marks it failed, it still holds the root
        assert f"in use by run {run_a.run_id}" in failure_message(materialize_base(root, [str(other)], model_cache, instance=instance))
        assert fail_runs_whose_process_ended(instance) == [run_a.run_id]
        assert materialize_base(root, [str(other)], model_cache, instance=instance).success


# ----------------------------------------------------------------------------- the LLM step


@needs_llm_env
def test_an_llm_that_returns_junk_for_every_document(dataset, model_cache):
    from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs

    root, before = dataset
    defs = build_definitions(root, ["unused"], cache_dir=model_cache)
    with FakeOpenAI(lambda prompt, i: " ### lorem ipsum dolor ###") as server:
        result = dg.materialize(
            [*base_assets, synthetic_qd_pairs],
            selection=[synthetic_qd_pairs.key],
            raise_on_error=False,
            resources={**defs.resources, "llm": LLMResource(backend="openai", base_url=server.url)},
            run_config={"ops": {"synthetic_qd_pairs": {"config": {"max_documents": 3}}}},
        )
        assert len(server.requests) == 3
    message = failure_message(result)
    assert "the LLM produced no usable query: 0 of 9 completions for 3 documents" in message
    assert "dropped per reason" in message
    # only the completion store was written (the LLM's answers, kept so the same settings never ask again)
    assert [p.name for p in (root / "llm_generated").iterdir()] == ["store"]
    assert len(list((root / "llm_generated" / "store").glob("*/*/*.json"))) == 3
    shutil.rmtree(root / "llm_generated")
    assert_intact(root, before)


@pytest.mark.processes
@needs_llm_env
def test_cancelling_a_run_during_the_llm_step_ends_the_worker_and_frees_the_gpu_pool(dataset, tmp_path, model_cache):
    root, before = dataset
    home = dagster_home(tmp_path)
    release = threading.Event()

    def slow(prompt: str, i: int) -> str:
        release.wait(120)
        return " 끝나지 않는 질문은 무엇인가?"

    # initialise the instance's storage before the run does (two processes creating it at once race on its schema)
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
    with FakeOpenAI(slow) as server:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "SPARSE_ASSETS_DATASET": str(root),
            "SPARSE_ASSETS_CORPUS": "unused",
            "SPARSE_ASSETS_CACHE": str(model_cache),
            "SPARSE_ASSETS_LLM_BACKEND": "openai",
            "SPARSE_ASSETS_LLM_BASE_URL": server.url,
            "PYTHONPATH": str(REPO),
        }
        log = tmp_path / "run.log"
        process = start_materialize("synthetic_qd_pairs", env, log)
        try:
            deadline = time.time() + 120
            while not server.requests and time.time() < deadline and process.poll() is None:
                time.sleep(0.2)
            assert server.requests, (
                "the worker never reached the LLM server:\n"
                + "\n".join(line for line in log.read_text().splitlines() if "rror" in line or "STEP_FAILURE" in line)[-4000:]
            )
            workers = [
                p for p in psutil.Process(process.pid).children(recursive=True) if "sparse_assets.llm.worker" in " ".join(p.cmdline())
            ]
            assert len(workers) == 1
            pool = instance.event_log_storage.get_concurrency_info("gpu")
            assert pool.limit == 1 and pool.active_slot_count == 1  # the step holds the GPU pool's one slot
            [run] = instance.get_runs(limit=1)

            process.send_signal(signal.SIGINT)  # what terminating a run sends to its process
            workers[0].wait(timeout=60)  # raises TimeoutExpired if the worker outlives the cancel
            process.wait(timeout=90)
        finally:
            release.set()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        assert not any(
            "sparse_assets.llm.worker" in " ".join(p.cmdline())
            for p in psutil.process_iter()
            if p.pid in {w.pid for w in workers} and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        )
        pool = instance.event_log_storage.get_concurrency_info("gpu")
        assert pool.active_slot_count == 0 and not pool.claimed_slots, f"GPU pool still claimed: {pool.claimed_slots}"
        status = instance.get_run_by_id(run.run_id).status
        assert status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE), status
        assert "interrupt" in log.read_text().lower() or status == dg.DagsterRunStatus.CANCELED
        instance.dispose()
    assert not (root / "llm_generated").exists()
    assert_intact(root, before)


def test_pool_slots_of_ended_runs_are_freed_before_a_run_and_running_ones_kept():
    """A step that died without reporting left its gpu slot claimed after its run ended: the next
    run's LLM and training steps would wait for it without end."""
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from sparse_assets.defs.instance_upkeep import free_stale_pool_slots

    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 2)
        for run_id, status in [("ended-run", DagsterRunStatus.FAILURE), ("running-run", DagsterRunStatus.STARTED)]:
            instance.add_run(DagsterRun(job_name="all_assets_job", run_id=run_id, status=status))
            assert storage.claim_concurrency_slot("gpu", run_id, "synthetic_qd_pairs").is_claimed
        assert storage.claim_concurrency_slot("gpu", "vanished-run", "teacher_scores").is_claimed is False  # queued
        assert free_stale_pool_slots(instance) == [("gpu", "ended-run"), ("gpu", "vanished-run")]
        info = storage.get_concurrency_info("gpu")
        assert [slot.run_id for slot in info.claimed_slots] == ["running-run"]
        assert not [step for step in info.pending_steps if step.run_id != "running-run"]
        assert free_stale_pool_slots(instance) == []
        # the running run's process is this one: upkeep leaves it running
        from dagster._core.events import DagsterEvent

        from sparse_assets.defs.instance_upkeep import fail_runs_whose_process_ended

        started = DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name="all_assets_job", pid=os.getpid())
        instance.report_dagster_event(started, run_id="running-run")
        assert fail_runs_whose_process_ended(instance) == []
        assert instance.get_run_by_id("running-run").status == DagsterRunStatus.STARTED
