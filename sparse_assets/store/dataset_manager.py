"""DatasetManager: the seed notebooks' API over `dataset/`, kept for notebook users (no Dagster here).

The root is a `UPath`, as for the IO managers: a local folder or any fsspec URL (``file:///...``,
``memory://...``, ``s3://...``).
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
from pathlib import Path, PurePosixPath

from upath import UPath
from upath.implementations.local import LocalPath

from sparse_assets.environment import read_environment
from sparse_assets.store.layout import METADATA_FILE, STORE_PATHS
from sparse_assets.store.storage import (
    WRITER_FILE,
    CorruptIndexError,
    DatasetBusyError,
    content_hash,
    forget_artifacts,
    read_claim,
    read_index,
    rebuild_index,
    record_artifact,
)
from sparse_assets.tables import markdown_table

MODEL_FOLDER_MARKERS = ("config.json", "modules.json")  # transformers / sentence-transformers


class MissingIndexError(ValueError):
    """Artifacts are under the root but metadata.json is not: their content cannot be checked."""


def _is_model_folder(path: UPath) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in MODEL_FOLDER_MARKERS)


def shown(path: UPath) -> str:
    """How a path is printed: a local one absolute (as given, `file://` or not), any other as its URL."""
    return str(Path(os.fspath(path)).resolve()) if isinstance(path, LocalPath) else str(path)


class DatasetManager:
    """Look at, check and clear the artifacts under `base_path` (what the IO managers wrote)."""

    def __init__(self, base_path: str | os.PathLike | None = None):
        """`base_path`: the dataset root, a folder or an fsspec URL; default the environment's
        (SPARSE_ASSETS_DATASET, else ./dataset)."""
        self.base_path = UPath(base_path if base_path is not None else read_environment().dataset_root)

    def _existing_root(self) -> UPath:
        """The root, or an error saying it is not a folder."""
        root = self.base_path
        if root.is_file():
            raise NotADirectoryError(f"dataset root {shown(root)} is a file, not a folder: give the dataset folder with --dataset")
        if not root.is_dir():
            raise FileNotFoundError(
                f"dataset root {shown(root)} does not exist: give the dataset folder with --dataset "
                "(or SPARSE_ASSETS_DATASET), or create it with `make run`"
            )
        return root

    def _index(self) -> dict[str, dict]:
        """metadata.json's entries by relative path, sidecars (e.g. idf.json beside idf_statistics.pkl)
        included. Artifacts without a metadata.json beside them are an error (MissingIndexError)."""
        root = self._existing_root()
        if not (root / METADATA_FILE).exists():
            _require_no_artifacts(root)
        index = {}
        for entry in read_index(root).values():
            index[entry["path"]] = entry
            for path, sha256 in entry.get("sidecars", {}).items():
                index[path] = {"asset_key": entry["asset_key"], "path": path, "sha256": sha256}
        return index

    def artifacts(self) -> list[dict]:
        """One row per artifact on disk or in metadata.json: subdir, name, bytes, modified, status.
        Status: ok, modified (hash differs from metadata.json), missing (indexed, not on disk),
        untracked (on disk, not indexed); a re-use store (layout.STORE_PATHS) is one row, "kept".
        Each artifact is read once."""
        index = self._index()
        rows = []
        for relative in sorted(set(index) | set(artifacts_on_disk(self.base_path))):
            path = self.base_path / relative
            where = {"subdir": posixpath.dirname(relative), "name": posixpath.basename(relative)}
            if relative in STORE_PATHS.values():
                files = [f for f in path.rglob("*") if f.is_file()]
                rows.append(
                    {
                        **where,
                        "asset": f"(store, {len(files)} files)",
                        "bytes": sum(f.stat().st_size for f in files),
                        "modified": _modified(path),
                        "status": "kept",
                    }
                )
                continue
            entry = index.get(relative)
            sha256, size = content_hash(path) if path.exists() else (None, 0)
            rows.append(
                {
                    **where,
                    "asset": entry["asset_key"] if entry else "",
                    "bytes": size,
                    "modified": _modified(path) if path.exists() else "",
                    "status": _status(sha256, entry),
                }
            )
        return rows

    def print_summary(self) -> bool:
        """Print every artifact's row; True when none is missing or modified."""
        rows = self.artifacts()
        print(f"dataset: {shown(self.base_path)}")
        print(
            markdown_table(rows, ["subdir", "name", "asset", "bytes", "modified", "status"])
            if rows
            else "(no artifacts yet: run `make run`)"
        )
        broken = sorted({row["asset"] for row in rows if row["status"] in ("missing", "modified")})
        if broken:
            print(f"missing or modified: re-materialize {', '.join(broken)} (make run, or the UI)")
        return not broken

    def check_data_exists(self, filename: str, subdir: str) -> bool:
        return (self.base_path / subdir / filename).exists()

    def check_dependencies(self, dependencies: list[tuple[str, str]]) -> bool:
        """True when every (subdir, filename) exists and, where metadata.json records it, has the
        recorded content; prints each missing or modified one."""
        index = self._index()
        bad = []
        for subdir, name in dependencies:
            relative = posixpath.join(subdir, name)
            path = self.base_path / relative
            found = _status(content_hash(path)[0], index.get(relative)) if path.exists() else "missing"
            if found in ("missing", "modified"):
                bad.append(relative)
                print(f"{found}: {shown(path)}")
        return not bad

    def accept(self, relative: str) -> dict:
        """Record the current content of the artifact at `relative` (e.g. base_model/documents.json) in
        metadata.json, for a file changed on purpose: the IO managers refuse to load a changed artifact
        until then. Returns its new entry."""
        entry = next((e for e in read_index(self.base_path).values() if e["path"] == relative), None)
        if entry is None:
            raise FileNotFoundError(f"{relative} is not an artifact recorded in {shown(self.base_path / METADATA_FILE)}")
        if not (self.base_path / relative).exists():
            raise FileNotFoundError(f"{shown(self.base_path / relative)} does not exist: re-materialize {entry['asset_key']!r}")
        accepted = record_artifact(self.base_path, entry["asset_key"], relative, "accepted by hand", list(entry.get("sidecars", {})))
        print(f"accepted {shown(self.base_path / relative)} as {entry['asset_key']!r} (sha256 {accepted['sha256'][:12]}...)")
        return accepted

    def reindex(self) -> list[dict]:
        """Build a missing or unreadable metadata.json from the artifacts there now (`rebuild_index`) and
        print what it recorded and what it left untracked; a valid metadata.json is left alone (an error)."""
        root = self._existing_root()
        if (root / METADATA_FILE).exists() and _readable_index(root):
            raise FileExistsError(
                f"{shown(root / METADATA_FILE)} exists: reindex only builds a missing one. For a file changed on "
                "purpose use `sparse-assets accept SUBDIR/FILE`; to rebuild it all, move metadata.json away first"
            )
        entries = rebuild_index(root)
        for entry in entries:
            print(f"recorded {entry['path']} as {entry['asset_key']!r} (sha256 {entry['sha256'][:12]}...)")
        recorded = {entry["path"] for entry in entries} | {path for entry in entries for path in entry.get("sidecars", {})}
        for relative in sorted(set(artifacts_on_disk(root)) - recorded - set(STORE_PATHS.values())):
            print(f"left untracked {relative}: it has no place in the dataset layout (sparse_assets/store/layout.py)")
        print(f"{len(entries)} artifacts recorded in {shown(root / METADATA_FILE)}")
        return entries

    def clear_subdirectory(self, subdir: str, confirm: bool = False, force: bool = False) -> bool:
        """Delete `subdir` (a folder, a model folder included) and its metadata.json entries; refuses
        (returns False) unless confirm=True. A path outside the root, a file or a folder that does not
        exist, a metadata.json that cannot be read, and a root a run holds (`.writer.json`, unless
        force=True) are errors, raised before anything is deleted."""
        relative = _relative_inside(self.base_path, subdir)
        target = self.base_path / relative
        if target.is_file():
            raise ValueError(
                f"{shown(target)} is a file, not a subdirectory: clear its folder ({posixpath.dirname(relative)}) and re-materialize"
            )
        if not target.is_dir():
            present = (
                sorted(p.name for p in self.base_path.iterdir() if p.is_dir() and not p.name.startswith("."))
                if self.base_path.is_dir()
                else []
            )
            raise FileNotFoundError(
                f"{shown(target)} does not exist: nothing to clear (subdirectories of {shown(self.base_path)}: {', '.join(present) or 'none'})"
            )
        read_index(self.base_path)  # a corrupt metadata.json raises here, before anything is deleted
        if not force:
            _refuse_while_held(self.base_path)
        if not confirm:
            print(f"refusing to delete {shown(target)}: call clear_subdirectory({subdir!r}, confirm=True) (CLI: --yes)")
            return False
        target.fs.rm(target.path, recursive=True)
        forgotten = forget_artifacts(self.base_path, relative)
        print(f"deleted {shown(target)} ({len(forgotten)} metadata entries removed)")
        return True


def index_mismatch(path: Path) -> str | None:
    """What is wrong when the local artifact at `path` (e.g. a model folder) lies in a dataset root
    whose metadata.json records other content for it; None when it matches or is not recorded."""
    path = Path(path).resolve()
    root = next((folder for folder in path.parents if (folder / METADATA_FILE).is_file()), None)
    if root is None:
        return None
    relative = path.relative_to(root).as_posix()
    try:
        entry = next((e for e in read_index(UPath(root)).values() if e["path"] == relative), None)
    except CorruptIndexError as error:
        return f"{path} cannot be checked against its dataset's index: {error}"
    if entry is None or content_hash(UPath(path))[0] == entry["sha256"]:
        return None
    return (
        f"{path} is not what {root / METADATA_FILE} recorded for {entry['asset_key']!r} (run {entry['run_id']}): it was "
        f"changed since. Re-materialize {entry['asset_key']!r}, or if the change is on purpose: "
        f"sparse-assets --dataset {root} accept {relative}"
    )


def artifacts_on_disk(root: UPath) -> list[str]:
    """Artifact paths relative to `root`: files and model folders (a folder holding a model's
    config.json or a SparseEncoder's modules.json counts as one), and the re-use stores."""
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*"):
        relative = PurePosixPath(str(path.relative_to(root)))
        folders = [str(p) for p in list(relative.parents)[:-1]]
        hidden = any(part.startswith(".") for part in relative.parts)
        inside_model = any(_is_model_folder(root / p) for p in folders)
        inside_store = any(p in STORE_PATHS.values() for p in folders)
        if hidden or inside_model or inside_store or relative.name in (METADATA_FILE, "README.md"):
            continue
        if _is_model_folder(path) or str(relative) in STORE_PATHS.values() or (path.is_file() and len(relative.parts) > 1):
            found.append(str(relative))
    return found


def _require_no_artifacts(root: UPath) -> None:
    """Raise MissingIndexError when artifacts (not stores) are under `root`, which has no metadata.json
    (loading one such artifact is refused too: storage.UnrecordedArtifactError)."""
    found = sorted(set(artifacts_on_disk(root)) - set(STORE_PATHS.values()))
    if found:
        raise MissingIndexError(
            f"{shown(root / METADATA_FILE)} is missing, but {len(found)} artifacts are there ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}): without it nothing can be checked. Run `sparse-assets reindex` to "
            "record them as they are now, or re-materialize them"
        )


def _relative_inside(root: UPath, relative: str) -> str:
    """`relative`, a path a user gave, normalised; ValueError when it leaves `root` (absolute, '..', the
    root itself). (storage.inside_root does the same for paths read from metadata.json.)"""
    normal = posixpath.normpath(relative)
    if posixpath.isabs(normal) or normal in (".", "..") or normal.startswith("../"):
        raise ValueError(f"{relative!r} is not a subdirectory of {shown(root)}")
    return normal


def _refuse_while_held(root: UPath) -> None:
    """Raise DatasetBusyError when a run's claim on `root` (`.writer.json`, storage.read_claim) is there:
    without Dagster it cannot be told whether that run still runs."""
    holder = read_claim(root)
    if holder:
        raise DatasetBusyError(
            f"{shown(root / WRITER_FILE)} says run {holder.run_id} (host {holder.host}, since {holder.time.isoformat()}) "
            f"reads and writes {shown(root)}: clearing under it would pull its artifacts away. Wait for that run to "
            "finish; once it has finished (or is gone for good), clear with --force (Python: force=True)"
        )


def _readable_index(root: UPath) -> bool:
    try:
        read_index(root)
    except CorruptIndexError:
        return False
    return True


def _modified(path: UPath) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")


def _status(sha256: str | None, entry: dict | None) -> str:
    """missing (no content), untracked (no metadata.json entry), ok or modified (the recorded hash)."""
    if sha256 is None:
        return "missing"
    if entry is None:
        return "untracked"
    return "ok" if sha256 == entry["sha256"] else "modified"
