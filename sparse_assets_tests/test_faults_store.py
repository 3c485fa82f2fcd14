"""Trusting what the dataset root holds: a step's outputs belong together, metadata.json is neither
optional nor a way out of the root, `.writer.json` never steers the run, written JSON is valid JSON,
and a full disk leaves no partial file. Real materializations run on a copy of the `golden` KorQuAD
slice of test_faults.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import math
import socket
from pathlib import Path
from typing import Annotated

import dagster as dg
import pytest
from upath import UPath

from sparse_assets.bounds import Ge, check_bounds
from sparse_assets.defs import io_managers as io_managers_module
from sparse_assets.store import storage
from sparse_assets.store.layout import METADATA_FILE
from sparse_assets_tests import test_faults
from sparse_assets_tests.korquad_data import korquad_slice
from sparse_assets_tests.test_faults import assert_intact, failure_message, materialize_base, snapshot

golden = test_faults.golden  # the fixtures: a base_model materialization per module, a copy per test
dataset = test_faults.dataset

# ----------------------------------------------------------------------------- a step's outputs belong together


def test_a_step_torn_between_its_outputs_is_refused_naming_the_asset_to_rematerialize(dataset, tmp_path, model_cache, monkeypatch):
    """`documents` and `eval_queries` are one step: a run that stops after recording new documents
    leaves them beside the previous run's questions, and nothing downstream may use that pair."""
    root, _ = dataset
    groups = {key: entry["group"] for key, entry in storage.read_index(UPath(root)).items()}
    assert groups["documents"] == groups["eval_queries"] and groups["documents"]["outputs"] == ["documents", "eval_queries"]
    assert groups["idf_statistics"]["outputs"] == ["idf_statistics"]
    write = io_managers_module.JsonIOManager.write

    def stop_at_eval_queries(self, value, path):
        if path.name == "eval_queries.json":
            raise OSError("killed between the outputs of one step")
        write(self, value, path)

    monkeypatch.setattr(io_managers_module.JsonIOManager, "write", stop_at_eval_queries)
    other = korquad_slice(tmp_path / "other.json", articles=2, start=5)
    assert not materialize_base(root, [str(other)], model_cache, selection=["documents", "eval_queries"]).success
    monkeypatch.undo()
    index = storage.read_index(UPath(root))
    assert index["documents"]["run_id"] != index["eval_queries"]["run_id"]  # the tear
    torn = snapshot(root)

    result = materialize_base(root, ["unused"], model_cache, selection=["qd_pairs_base"])
    message = failure_message(result)
    assert "eval_queries.json does not belong with" in message and "documents.json" in message, message[-800:]
    assert "re-materialize 'documents' and 'eval_queries'" in message
    assert snapshot(root) == torn
    # re-materializing the step makes the pair whole again
    assert materialize_base(root, [str(other)], model_cache, selection=["documents", "eval_queries", "qd_pairs_base"]).success


def test_an_output_materialized_on_its_own_since_still_belongs_with_its_step(tmp_path):
    """A step that allows a subset may re-materialize one output alone: that is no tear."""

    def entry(asset: str, run_id: str, outputs: list[str]) -> dict:
        return {"asset_key": asset, "path": f"base_model/{asset}.json", "group": {"step": "s", "run_id": run_id, "outputs": outputs}}

    whole = {
        "documents": entry("documents", "r1", ["documents", "eval_queries"]),
        "eval_queries": entry("eval_queries", "r1", ["documents", "eval_queries"]),
    }
    alone = {**whole, "eval_queries": entry("eval_queries", "r2", ["eval_queries"])}
    torn = {**whole, "eval_queries": entry("eval_queries", "r0", ["documents", "eval_queries"])}
    root = UPath(tmp_path)
    assert storage.torn_members(root, whole, "documents") == storage.torn_members(root, alone, "documents") == []
    assert storage.torn_members(root, alone, "eval_queries") == []
    assert storage.torn_members(root, torn, "documents") == ["base_model/eval_queries.json"]
    assert storage.torn_members(root, {"documents": whole["documents"]}, "documents") == ["base_model/eval_queries.json"]


# ----------------------------------------------------------------------------- metadata.json is not optional


def test_an_artifact_without_an_index_entry_is_refused_until_reindexed(dataset, model_cache):
    root, before = dataset
    (root / METADATA_FILE).unlink()
    message = failure_message(materialize_base(root, ["unused"], model_cache, selection=["idf_statistics"]))
    assert "documents.json has no entry in" in message and METADATA_FILE in message, message[-800:]
    assert "sparse-assets reindex" in message and "re-materialize 'documents'" in message
    assert not (root / METADATA_FILE).exists() and snapshot(root) == {k: v for k, v in before.items() if k != METADATA_FILE}

    entries = storage.rebuild_index(UPath(root))
    assert {e["asset_key"] for e in entries} == {"documents", "eval_queries", "idf_statistics", "bilingual_synonyms", "qd_pairs_base"}
    assert next(e for e in entries if e["asset_key"] == "idf_statistics")["sidecars"] == {
        "base_model/idf.json": storage.content_hash(UPath(root / "base_model/idf.json"))[0]
    }
    assert_intact(root, snapshot(root))


def test_an_index_without_the_artifacts_entry_is_refused(dataset, model_cache):
    root, _ = dataset
    index = json.loads((root / METADATA_FILE).read_text())
    del index["artifacts"]["documents"]
    (root / METADATA_FILE).write_text(json.dumps(index))
    message = failure_message(materialize_base(root, ["unused"], model_cache, selection=["idf_statistics"]))
    assert "documents.json has no entry in" in message and "sparse-assets reindex" in message, message[-800:]


def test_a_corrupt_index_advises_restoring_or_reindexing_not_deleting(tmp_path):
    (tmp_path / METADATA_FILE).write_text('{"artifacts": ')
    with pytest.raises(storage.CorruptIndexError) as raised:
        storage.read_index(UPath(tmp_path))
    assert "restore metadata.json from a backup" in str(raised.value) and "sparse-assets reindex" in str(raised.value)
    assert "delete" not in str(raised.value)


# ----------------------------------------------------------------------------- paths from metadata.json stay inside the root


def _index_with(root: Path, **changes) -> None:
    entry = {"asset_key": "documents", "path": "base_model/documents.json", "run_id": "r", "time": "t", "bytes": 1, "sha256": "0" * 64}
    (root / METADATA_FILE).write_text(json.dumps({"artifacts": {"documents": {**entry, **changes}}}))


@pytest.mark.parametrize(
    "changes",
    [
        {"path": "../../../../../dev/zero"},
        {"path": "/etc/passwd"},
        {"sidecars": {"../../../../../dev/zero": "0" * 64}},
    ],
    ids=["dotdot", "absolute", "sidecar"],
)
def test_an_index_entry_leading_out_of_the_root_is_refused_naming_the_index(tmp_path, changes):
    _index_with(tmp_path, **changes)
    with pytest.raises(storage.CorruptIndexError, match=rf"{METADATA_FILE}.*outside the dataset root"):
        storage.read_index(UPath(tmp_path))


@pytest.mark.parametrize("entry", [[], {"asset_key": "documents"}, {"path": 5}], ids=["list", "no-path", "path-not-text"])
def test_an_index_entry_of_another_shape_is_refused_naming_the_index(tmp_path, entry):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"artifacts": {"documents": entry}}))
    with pytest.raises(storage.CorruptIndexError, match=rf"{METADATA_FILE} is not a valid metadata index: entry 'documents'"):
        storage.read_index(UPath(tmp_path))


def test_inside_root_refuses_escapes_and_symlinks_out(tmp_path):
    root = tmp_path / "dataset"
    (root / "base_model").mkdir(parents=True)
    (root / "base_model/link").symlink_to(tmp_path)
    assert storage.inside_root(UPath(root), "base_model/documents.json") == UPath(root / "base_model/documents.json")
    for relative in ("../outside.json", "/etc/passwd", "base_model/link/outside.json", ""):
        with pytest.raises(storage.CorruptIndexError, match="outside the dataset root"):
            storage.inside_root(UPath(root), relative)


# ----------------------------------------------------------------------------- .writer.json never steers the run


def _claim_file(root: Path, record) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / storage.WRITER_FILE).write_text(json.dumps(record))


def _now(seconds: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    "record",
    [["not", "a", "claim"], {"host": "h", "time": _now()}, {"run_id": "other", "time": "yesterday"}],
    ids=["list", "no-run-id", "bad-time"],
)
def test_a_writer_file_of_another_shape_is_a_clear_error_naming_it(tmp_path, record):
    _claim_file(tmp_path, record)
    with pytest.raises(storage.InvalidClaimError, match=rf"{storage.WRITER_FILE} is not a writer claim.*delete"):
        storage.claim_dataset_root(UPath(tmp_path), {"run_id": "mine", "instance": None}, lambda holder: True)


@pytest.fixture
def instance_with_a_running_run():
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    with dg.instance_for_test() as instance:
        instance.add_run(DagsterRun(job_name="all_assets_job", run_id="running-run", status=DagsterRunStatus.STARTED))
        yield instance


def _claim_by_running_run(dagster_instance, folder: Path, **changes) -> None:
    """`.writer.json` as the running run of `dagster_instance` writes it, with `changes`."""
    own = {"run_id": "running-run", "instance": str(dagster_instance.root_directory), "host": socket.gethostname(), "time": _now()}
    _claim_file(folder, {**own, "root": str(folder.resolve()), **changes})


def _claim_from(instance, root: Path) -> None:
    storage.claim_dataset_root(
        UPath(root),
        {"run_id": "second-run", "instance": str(instance.root_directory)},
        lambda h: io_managers_module.holder_is_running(instance, h),
    )


def test_a_claim_held_by_a_running_run_of_this_instance_holds_the_root(tmp_path, instance_with_a_running_run):
    _claim_by_running_run(instance_with_a_running_run, tmp_path)
    with pytest.raises(storage.DatasetBusyError, match="in use by run running-run"):
        _claim_from(instance_with_a_running_run, tmp_path)


def test_a_claim_recorded_for_another_root_does_not_hold_this_one(tmp_path, instance_with_a_running_run):
    """A root copied elsewhere (with its .writer.json) is not in use by the run of the original."""
    _claim_by_running_run(instance_with_a_running_run, tmp_path, root=str(tmp_path / "original"))
    _claim_from(instance_with_a_running_run, tmp_path)
    claim = json.loads((tmp_path / storage.WRITER_FILE).read_text())
    assert claim["run_id"] == "second-run" and claim["root"] == str(tmp_path.resolve())


def test_a_claim_naming_another_instance_folder_is_not_opened(tmp_path, instance_with_a_running_run, monkeypatch):
    other_home = tmp_path / "other_home"
    other_home.mkdir()
    (other_home / "dagster.yaml").write_text("{}")

    def never(*args, **kwargs):
        raise AssertionError("opened the instance folder .writer.json names")

    monkeypatch.setattr(dg.DagsterInstance, "from_config", never)
    _claim_by_running_run(instance_with_a_running_run, tmp_path / "dataset", instance=str(other_home))
    _claim_from(instance_with_a_running_run, tmp_path / "dataset")


@pytest.mark.parametrize(("seconds", "holds"), [(-60, True), (-2 * 3600, False), (30, True), (24 * 3600, False)])
def test_a_claim_from_another_host_is_a_lease_that_a_future_time_does_not_extend(tmp_path, instance_with_a_running_run, seconds, holds):
    _claim_by_running_run(instance_with_a_running_run, tmp_path, host="another-host", time=_now(seconds))
    if holds:
        with pytest.raises(storage.DatasetBusyError, match="host another-host"):
            _claim_from(instance_with_a_running_run, tmp_path)
    else:
        _claim_from(instance_with_a_running_run, tmp_path)


# ----------------------------------------------------------------------------- output that is what it claims


def test_json_with_nan_or_infinity_is_not_written(tmp_path):
    target = UPath(tmp_path / "base_model/idf.json")
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match=r"idf\.json was not written: .*NaN or Infinity"):
            storage.atomic_write_json(target, {"▁토큰": value})
    assert not list(tmp_path.rglob("*idf.json*"))


@dataclasses.dataclass
class _Boost:
    factor: Annotated[float, Ge(1)] = 1.0


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_check_bounds_refuses_a_non_finite_float_naming_the_field(value):
    with pytest.raises(ValueError, match=r"_Boost\.factor must be a finite number"):
        check_bounds(_Boost(value))


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("keyword_boost", math.inf, "finite number"),
        ("max_boost", math.inf, "finite number"),
        ("recent_days", 10**20, "less than or equal to"),
    ],
)
def test_a_non_finite_or_overflowing_idf_setting_fails_before_the_step_works(dataset, model_cache, setting, value, expected):
    root, before = dataset
    config = {"trend_keywords": ["역사"], setting: value}
    result = materialize_base(
        root, ["unused"], model_cache, selection=["idf_statistics"], run_config={"ops": {"idf_statistics": {"config": config}}}
    )
    message = failure_message(result)
    assert setting in message and expected in message, message[-800:]
    assert_intact(root, before)


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_names_the_path_and_removes_the_partial_file_at_once(tmp_path, monkeypatch):
    target = UPath(tmp_path / "base_model/documents.json")
    storage.atomic_write_json(target, [{"id": "d1"}])

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", disk_full)
    with pytest.raises(OSError, match=rf"No space left on device.*{target}") as raised:
        storage.atomic_write_json(target, [{"id": "d2", "text": "본문" * 1000}])
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert [p.name for p in target.parent.iterdir()] == ["documents.json"]  # the partial temp file is gone
    assert json.loads(Path(target).read_text()) == [{"id": "d1"}]


def test_a_full_disk_while_copying_a_model_folder_removes_the_partial_copy(tmp_path, monkeypatch):
    source = tmp_path / "trained"
    source.mkdir()
    (source / "config.json").write_text("{}")
    target = UPath(tmp_path / "dataset/base_model/neural_sparse_v1_model")

    def disk_full(src, dst, **kwargs):
        Path(dst).write_text("{")  # some bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copyfile", disk_full)  # what copytree's copy2 calls
    with pytest.raises(OSError, match=rf"{target}"):
        storage.atomic_replace_folder(source, target)
    monkeypatch.undo()
    assert list(target.parent.iterdir()) == []
