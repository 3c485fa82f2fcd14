"""IO managers: layout paths, round trips, metadata.json, atomic writes under SIGKILL, clear errors."""

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from upath import UPath

from sparse_assets.defs.io_managers import CorruptArtifactError, WithSidecars, io_managers
from sparse_assets.store.dataset_manager import DatasetManager
from sparse_assets.store.storage import content_hash, read_index, record_artifact

DOCS = [{"id": "d1", "title": "제목", "text": "본문", "source": "t"}]


@dg.asset(io_manager_key="json_io_manager")
def documents():
    return DOCS


@dg.asset(io_manager_key="pickle_io_manager")
def idf_statistics(documents):
    return WithSidecars(value={5: 1.25, 7: 0.5}, sidecars={"idf.json": {"▁본문": 1.25}})


@dg.asset(io_manager_key="model_io_manager")
def neural_sparse_v1_model(idf_statistics):
    return Path(os.environ["TEST_MODEL_SOURCE"])


@dg.asset(io_manager_key="pickle_io_manager")
def qd_pairs_base(documents, idf_statistics, neural_sparse_v1_model):
    assert isinstance(neural_sparse_v1_model, Path) and (neural_sparse_v1_model / "config.json").exists()
    return [{"query": "q", "positive_id": documents[0]["id"], "negative_ids": [], "source": "t", "idf": idf_statistics[5]}]


ALL = [documents, idf_statistics, neural_sparse_v1_model, qd_pairs_base]


@pytest.fixture
def model_source(tmp_path, monkeypatch):
    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(os.urandom(2048))
    monkeypatch.setenv("TEST_MODEL_SOURCE", str(folder))
    return folder


def test_round_trip_in_the_seed_layout_with_an_index(tmp_path, model_source):
    root = tmp_path / "dataset"
    result = dg.materialize(ALL, resources=io_managers(str(root)))
    assert result.success
    assert json.loads((root / "base_model/documents.json").read_text()) == DOCS
    assert pickle.loads((root / "base_model/idf_statistics.pkl").read_bytes()) == {5: 1.25, 7: 0.5}
    assert json.loads((root / "base_model/idf.json").read_text()) == {"▁본문": 1.25}
    assert (root / "base_model/neural_sparse_v1_model/model.safetensors").read_bytes() == (model_source / "model.safetensors").read_bytes()
    assert pickle.loads((root / "base_model/qd_pairs_base.pkl").read_bytes())[0]["idf"] == 1.25
    index = read_index(UPath(root))
    assert set(index) == {"documents", "idf_statistics", "neural_sparse_v1_model", "qd_pairs_base"}
    for entry in index.values():
        assert (entry["sha256"], entry["bytes"]) == content_hash(UPath(root / entry["path"]))
        assert entry["run_id"] == result.run_id and entry["time"]
    metadata = result.asset_materializations_for_node("documents")[0].metadata
    assert metadata["records"].value == 1 and "제목" in metadata["sample"].value
    assert metadata["sha256"].value == index["documents"]["sha256"]
    # the step process's peak memory in MB (here the test's own process, the in-process executor, or
    # the largest child it waited for: an earlier test's subprocess)
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    assert 50 < metadata["step_peak_memory_mb"].value <= peak / 1024 + 1
    assert not list(root.rglob("*.tmp"))
    assert index["idf_statistics"]["sidecars"] == {"base_model/idf.json": content_hash(UPath(root / "base_model/idf.json"))[0]}
    rows = {row["name"]: row for row in DatasetManager(root).artifacts()}
    assert (rows["idf.json"]["asset"], rows["idf.json"]["status"]) == ("idf_statistics", "ok")  # a sidecar is tracked


def test_a_handed_over_model_folder_is_removed_once_in_place_and_others_are_kept(tmp_path, model_source):
    from sparse_assets.defs.io_managers import HandoverFolder

    handover = HandoverFolder.new()
    built = handover.path
    (built / "config.json").write_text('{"model_type": "bert"}')

    @dg.asset(io_manager_key="model_io_manager")
    def neural_sparse_v2_model():
        return handover

    root = tmp_path / "dataset"
    assert dg.materialize(
        [neural_sparse_v1_model, neural_sparse_v2_model, idf_statistics, documents], resources=io_managers(str(root))
    ).success
    assert not built.exists()  # the temp folder the asset built in is gone
    assert (root / "enhanced_model/neural_sparse_v2_model/config.json").exists()
    assert (model_source / "model.safetensors").exists()  # a folder the asset did not build is left alone


def test_a_model_folder_holding_pickled_weights_is_refused(tmp_path, model_source):
    """Loading a .bin / .pt checkpoint unpickles it, which can run code: model folders load from
    safetensors only, even when metadata.json vouches for the folder."""
    root = tmp_path / "dataset"
    assert dg.materialize(ALL, resources=io_managers(str(root))).success
    (root / "base_model/neural_sparse_v1_model/pytorch_model.bin").write_bytes(pickle.dumps({"weights": 1}))
    DatasetManager(root).accept("base_model/neural_sparse_v1_model")
    with pytest.raises(
        CorruptArtifactError,
        match=r"holds pickled files \['pytorch_model.bin'\].*safetensors only.*re-materialize 'neural_sparse_v1_model'",
    ):
        io_managers(str(root))["model_io_manager"].load_input(dg.build_input_context(asset_key=dg.AssetKey("neural_sparse_v1_model")))


def test_the_same_managers_work_on_another_fsspec_filesystem(model_source):
    root = "memory://sparse-assets-test/dataset"
    assert dg.materialize(ALL, resources=io_managers(root)).success
    assert json.loads(UPath(root, "base_model/documents.json").read_text()) == DOCS
    assert UPath(root, "base_model/neural_sparse_v1_model/config.json").exists()
    assert set(read_index(UPath(root))) == {"documents", "idf_statistics", "neural_sparse_v1_model", "qd_pairs_base"}


REMOTE_MODEL_READER = """
import sys
from pathlib import Path
import dagster as dg
from sparse_assets.defs.io_managers import io_managers
managers = io_managers("memory://sparse-assets-download-test/dataset")
with dg.build_output_context(asset_key=dg.AssetKey("neural_sparse_v1_model")) as context:
    managers["model_io_manager"].handle_output(context, Path(sys.argv[1]))
local = managers["model_io_manager"].load_input(dg.build_input_context(asset_key=dg.AssetKey("neural_sparse_v1_model")))
assert (local / "model.safetensors").read_bytes() == (Path(sys.argv[1]) / "model.safetensors").read_bytes()
print(local)
"""


def test_a_model_folder_downloaded_from_a_remote_root_is_removed_when_the_process_ends(model_source):
    """A remote root's model folder is copied to a local temp folder to load from; the process that
    loaded it removes the copy when it ends (each step's own process under the multiprocess executor)."""
    done = subprocess.run(
        [sys.executable, "-c", REMOTE_MODEL_READER, str(model_source)], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    local = Path(done.stdout.strip().splitlines()[-1])
    assert local.name == "neural_sparse_v1_model" and "sparse_assets_model_" in local.parent.name
    assert not local.parent.exists()
    assert model_source.exists()


def test_missing_upstream_artifact_says_to_materialize_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"upstream artifact 'documents' is missing .* materialize it first"):
        dg.materialize([documents, idf_statistics], resources=io_managers(str(tmp_path)), selection=[idf_statistics.key])


def test_corrupt_upstream_artifact_is_named(tmp_path):
    (tmp_path / "base_model").mkdir(parents=True)
    (tmp_path / "base_model/documents.json").write_text('[{"id": ')
    record_artifact(UPath(tmp_path), "documents", "base_model/documents.json", "accepted by hand")  # past the hash check
    with pytest.raises(ValueError, match=r"documents.json is not a readable JSON artifact .* re-materialize 'documents'"):
        dg.materialize([documents, idf_statistics], resources=io_managers(str(tmp_path)), selection=[idf_statistics.key])


CRASHING_WRITER = """
import os, sys, time
from upath import UPath
import sparse_assets.store.storage as storage
marker = sys.argv[2]
def hang(*args, **kwargs):
    open(marker, "w").close()
    time.sleep(60)
storage.os.{hook} = hang
{call}
"""


@pytest.mark.parametrize(
    "hook, call",
    [
        ("fsync", "storage.atomic_write_bytes(UPath(sys.argv[1]) / 'base_model/documents.json', b'[' * 5_000_000)"),
        (
            "replace",
            "from pathlib import Path; storage.atomic_replace_folder(Path(sys.argv[3]), UPath(sys.argv[1]) / 'base_model/neural_sparse_v1_model')",
        ),
    ],
)
def test_sigkill_during_a_write_leaves_the_previous_artifact(tmp_path, model_source, hook, call):
    root = tmp_path / "dataset"
    assert dg.materialize(ALL, resources=io_managers(str(root))).success
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    new_model = tmp_path / "new_model"
    new_model.mkdir()
    (new_model / "config.json").write_text("{}")
    marker = tmp_path / "mid-write"
    script = CRASHING_WRITER.format(hook=hook, call=call)
    process = subprocess.Popen([sys.executable, "-c", script, str(root), str(marker), str(new_model)])
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached the middle of its write"
    process.send_signal(signal.SIGKILL)
    process.wait()
    after = {
        p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".tmp" not in p.name and not any(".tmp" in part for part in p.parts)
    }
    assert after == before
    # and the artifacts still load through the IO managers
    assert dg.materialize(ALL, resources=io_managers(str(root)), selection=[qd_pairs_base.key]).success
    # what the killed writer left is removed by the next write of the same artifact, not before
    leftovers = [p.name for p in root.rglob("*.tmp")]
    assert len(leftovers) == 1 and f"-{process.pid}-" in leftovers[0]
    assert dg.materialize(ALL, resources=io_managers(str(root))).success
    assert not list(root.rglob("*.tmp"))


def test_a_dataset_root_that_is_a_file_is_refused_before_any_step_runs(tmp_path):
    from sparse_assets.defs.definitions import build_definitions

    root = tmp_path / "dataset"
    root.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder: point SPARSE_ASSETS_DATASET at a folder"):
        build_definitions(str(root), ["embedded"])


def test_a_live_writers_temp_and_another_hosts_are_kept(tmp_path):
    import socket

    from sparse_assets.store.storage import remove_abandoned_temps

    target = tmp_path / "base_model/documents.json"
    target.parent.mkdir()
    live = target.with_name(f".documents.json.{socket.gethostname()}-{os.getpid()}-0123abcd.tmp")
    other_host = target.with_name(".documents.json.another-host-1-0123abcd.tmp")
    for temp in (live, other_host):
        temp.write_text("being written")
    assert remove_abandoned_temps(UPath(target)) == []
    assert live.exists() and other_host.exists()
