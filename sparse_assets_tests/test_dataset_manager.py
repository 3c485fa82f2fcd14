"""The seed's DatasetManager API and the `sparse-assets summary / check / clear` verbs."""

import json
import subprocess
import sys

import pytest
from upath import UPath

from sparse_assets.cli import main
from sparse_assets.store.dataset_manager import DatasetManager
from sparse_assets.store.storage import atomic_write_json, read_index, record_artifact


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    for relative, value in [("base_model/documents.json", [{"id": "d1"}]), ("llm_generated/enhanced_synonyms.json", {"학교": ["school"]})]:
        atomic_write_json(UPath(root / relative), value)
        record_artifact(UPath(root), relative.split("/")[1].split(".")[0], relative, "run-1")
    model = root / "base_model/neural_sparse_v1_model"  # a SparseEncoder folder: modules.json on top, config.json below
    (model / "document_0_Transformer").mkdir(parents=True)
    (model / "modules.json").write_text("[]")
    (model / "document_0_Transformer/config.json").write_text("{}")
    return root


def test_a_store_is_one_row_however_many_files_it_holds(dataset):
    for name in ("aa/aa1.json", "ab/ab2.json", "settings.json"):
        atomic_write_json(UPath(dataset / "llm_generated/store/0123456789abcdef" / name), {"value": name})
    rows = {row["name"]: row for row in DatasetManager(dataset).artifacts()}
    assert set(rows) == {"documents.json", "enhanced_synonyms.json", "neural_sparse_v1_model", "store"}
    assert rows["store"]["status"] == "kept" and rows["store"]["asset"] == "(store, 3 files)" and rows["store"]["bytes"] > 0
    assert DatasetManager(dataset).print_summary() is True  # a store is not an artifact that can be missing or modified


def test_summary_reports_status_of_every_artifact(dataset, capsys):
    (dataset / "base_model/documents.json").write_text("[]")  # changed behind the index's back
    (dataset / "llm_generated/enhanced_synonyms.json").unlink()  # deleted behind its back
    rows = {row["name"]: row for row in DatasetManager(dataset).artifacts()}
    assert rows["documents.json"]["status"] == "modified"
    assert rows["enhanced_synonyms.json"]["status"] == "missing"
    assert rows["neural_sparse_v1_model"]["status"] == "untracked"
    assert set(rows) == {"documents.json", "enhanced_synonyms.json", "neural_sparse_v1_model"}
    assert DatasetManager(dataset).print_summary() is False
    out = capsys.readouterr().out
    assert "| base_model | documents.json | documents |" in out and "missing" in out
    assert "re-materialize documents, enhanced_synonyms" in out
    assert main(["--dataset", str(dataset), "summary"]) == 1


def test_check_data_exists_and_dependencies(dataset, capsys):
    manager = DatasetManager(dataset)
    assert manager.check_data_exists("documents.json", "base_model")
    assert not manager.check_data_exists("qd_pairs_base.pkl", "base_model")
    assert manager.check_dependencies([("base_model", "documents.json")])
    assert not manager.check_dependencies([("base_model", "documents.json"), ("base_model", "idf_statistics.pkl")])
    assert "missing: " in capsys.readouterr().out


def test_clear_refuses_without_confirm_and_forgets_entries_with_it(dataset, capsys):
    manager = DatasetManager(dataset)
    assert manager.clear_subdirectory("llm_generated") is False
    assert "confirm=True" in capsys.readouterr().out
    assert (dataset / "llm_generated").exists()
    assert manager.clear_subdirectory("llm_generated", confirm=True) is True
    assert not (dataset / "llm_generated").exists()
    assert set(read_index(UPath(dataset))) == {"documents"}
    with pytest.raises(ValueError, match="not a subdirectory"):
        manager.clear_subdirectory("..", confirm=True)
    with pytest.raises(ValueError, match="is a file, not a subdirectory: clear its folder \\(base_model\\)"):
        manager.clear_subdirectory("base_model/documents.json", confirm=True)
    with pytest.raises(FileNotFoundError, match="nothing to clear \\(subdirectories of .*: base_model\\)"):
        manager.clear_subdirectory("nonexistent", confirm=True)
    assert (dataset / "base_model/documents.json").exists()


def test_cli_verbs(dataset, capsys):
    assert main(["--dataset", str(dataset), "summary"]) == 0
    assert "documents.json" in capsys.readouterr().out
    assert main(["--dataset", str(dataset), "check", "base_model/documents.json"]) == 0
    assert main(["--dataset", str(dataset), "check", "base_model/documents.json", "base_model/idf_statistics.pkl"]) == 1
    assert "some artifacts are missing" in capsys.readouterr().out
    assert main(["--dataset", str(dataset), "clear", "llm_generated"]) == 1
    assert (dataset / "llm_generated").exists()
    assert main(["--dataset", str(dataset), "clear", "llm_generated", "--yes"]) == 0
    assert f"deleted {dataset.resolve() / 'llm_generated'}" in capsys.readouterr().out
    assert not (dataset / "llm_generated").exists()
    assert main(["--dataset", str(dataset), "clear", "nonexistent", "--yes"]) == 2
    assert "does not exist: nothing to clear" in capsys.readouterr().err


def test_check_reports_a_file_changed_behind_the_index(dataset, capsys):
    (dataset / "base_model/documents.json").write_text('[{"id": "d2"}]')
    assert main(["--dataset", str(dataset), "check", "base_model/documents.json"]) == 1
    assert f"modified: {dataset.resolve() / 'base_model/documents.json'}" in capsys.readouterr().out


def test_the_cli_and_dataset_manager_use_the_dataset_root_of_the_environment(dataset, tmp_path, monkeypatch, capsys):
    """SPARSE_ASSETS_DATASET decides the root for the CLI and DatasetManager as for the assets; a
    ./dataset of the current folder is left alone."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dataset/base_model").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("SPARSE_ASSETS_DATASET", str(dataset))
    assert DatasetManager().base_path == dataset
    done = subprocess.run(
        [sys.executable, "-m", "sparse_assets.cli", "clear", "base_model", "--yes"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"deleted {dataset.resolve() / 'base_model'}" in done.stdout
    assert (elsewhere / "dataset/base_model").exists() and not (dataset / "base_model").exists()


def test_console_script_and_a_corrupt_index(dataset):
    (dataset / "metadata.json").write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "sparse_assets.cli", "--dataset", str(dataset), "summary"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "metadata.json is not a valid metadata index" in done.stderr and "Traceback" not in done.stderr
    json.loads((dataset / "base_model/documents.json").read_text())  # artifacts untouched


def test_a_file_url_root_is_summarised_as_its_plain_path(dataset, capsys):
    assert DatasetManager(f"file://{dataset}").artifacts() == DatasetManager(dataset).artifacts()
    assert main(["--dataset", f"file://{dataset}", "summary"]) == 0
    assert "| base_model | documents.json | documents |" in capsys.readouterr().out


@pytest.mark.parametrize("verb", [["summary"], ["check", "base_model/documents.json"]])
def test_summary_and_check_fail_on_a_root_that_is_missing_or_a_file(tmp_path, capsys, verb):
    assert main(["--dataset", str(tmp_path / "nowhere"), *verb]) == 2
    assert f"dataset root {(tmp_path / 'nowhere').resolve()} does not exist" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["--dataset", str(tmp_path / "a_file"), *verb]) == 2
    assert f"dataset root {(tmp_path / 'a_file').resolve()} is a file, not a folder" in capsys.readouterr().err


def test_a_lost_index_beside_artifacts_is_an_error_and_reindex_rebuilds_it(dataset, capsys):
    atomic_write_json(UPath(dataset / "base_model/idf_statistics.pkl"), "pickled")
    atomic_write_json(UPath(dataset / "base_model/idf.json"), {"학교": 1.5})  # idf_statistics' sidecar
    (dataset / "base_model/notes.txt").write_text("the user's own")
    (dataset / "metadata.json").unlink()
    for verb in (["summary"], ["check", "base_model/documents.json"]):
        assert main(["--dataset", str(dataset), *verb]) == 2
        err = capsys.readouterr().err
        assert "metadata.json is missing, but 6 artifacts are there" in err and "sparse-assets reindex" in err
    assert main(["--dataset", str(dataset), "reindex"]) == 0
    out = capsys.readouterr().out
    assert "recorded base_model/documents.json as 'documents'" in out and "4 artifacts recorded" in out
    assert "left untracked base_model/notes.txt" in out
    index = read_index(UPath(dataset))
    assert set(index) == {"documents", "enhanced_synonyms", "idf_statistics", "neural_sparse_v1_model"}
    assert list(index["idf_statistics"]["sidecars"]) == ["base_model/idf.json"]
    assert main(["--dataset", str(dataset), "summary"]) == 0
    assert main(["--dataset", str(dataset), "reindex"]) == 2  # it never replaces an index
    assert "reindex only builds a missing one" in capsys.readouterr().err


def test_clear_deletes_nothing_when_the_index_is_corrupt(dataset, capsys):
    (dataset / "metadata.json").write_text("{not json")
    assert main(["--dataset", str(dataset), "clear", "llm_generated", "--yes"]) == 2
    assert "metadata.json is not a valid metadata index" in capsys.readouterr().err
    assert (dataset / "llm_generated/enhanced_synonyms.json").exists()


def test_clearing_a_model_folder_by_its_own_path_removes_its_entry(dataset, capsys):
    record_artifact(UPath(dataset), "neural_sparse_v1_model", "base_model/neural_sparse_v1_model", "run-1")
    assert main(["--dataset", str(dataset), "clear", "base_model/neural_sparse_v1_model", "--yes"]) == 0
    assert "(1 metadata entries removed)" in capsys.readouterr().out
    assert set(read_index(UPath(dataset))) == {"documents", "enhanced_synonyms"}
    assert main(["--dataset", str(dataset), "summary"]) == 0  # nothing reported missing


def test_clear_refuses_while_a_run_holds_the_root_unless_forced(dataset, capsys):
    atomic_write_json(UPath(dataset / ".writer.json"), {"run_id": "run-42", "host": "here", "time": "2025-01-01T00:00:00+00:00"})
    assert main(["--dataset", str(dataset), "clear", "llm_generated", "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"{dataset.resolve() / '.writer.json'} says run run-42" in err and "--force" in err
    assert (dataset / "llm_generated/enhanced_synonyms.json").exists()
    assert main(["--dataset", str(dataset), "clear", "llm_generated", "--yes", "--force"]) == 0
    assert not (dataset / "llm_generated").exists()


def test_clear_names_a_writer_file_of_another_shape_and_deletes_nothing(dataset, capsys):
    (dataset / ".writer.json").write_text('["run-42"]')
    assert main(["--dataset", str(dataset), "clear", "llm_generated", "--yes"]) == 2
    assert f"{dataset / '.writer.json'} is not a writer claim" in capsys.readouterr().err
    assert (dataset / "llm_generated/enhanced_synonyms.json").exists()


def test_reindex_replaces_an_unreadable_index_as_its_error_advises(tmp_path, capsys):
    root = tmp_path / "dataset"
    (root / "base_model").mkdir(parents=True)
    (root / "base_model" / "documents.json").write_text('[{"id": "d1", "title": "가", "text": "나"}]')
    record_artifact(UPath(root), "documents", "base_model/documents.json", "run-1")
    (root / "metadata.json").write_text("{not json")
    assert main(["--dataset", str(root), "summary"]) == 2
    assert "sparse-assets reindex" in capsys.readouterr().err
    assert main(["--dataset", str(root), "reindex"]) == 0
    assert main(["--dataset", str(root), "summary"]) == 0
