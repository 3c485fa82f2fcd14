"""DatasetManager: the seed notebooks' API over `dataset/`, kept for notebook users (no Dagster here)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from upath import UPath

from sparse_assets.environment import read_environment
from sparse_assets.store.layout import METADATA_FILE, STORE_PATHS
from sparse_assets.store.storage import content_hash, forget_artifacts, read_index, record_artifact
from sparse_assets.tables import markdown_table

MODEL_FOLDER_MARKERS = ("config.json", "modules.json")  # transformers / sentence-transformers


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in MODEL_FOLDER_MARKERS)


class DatasetManager:
    """Look at, check and clear the artifacts under `base_path` (what the IO managers wrote)."""

    def __init__(self, base_path: str | Path | None = None):
        """`base_path`: the dataset root, default the environment's (SPARSE_ASSETS_DATASET, else ./dataset)."""
        self.base_path = Path(base_path if base_path is not None else read_environment().dataset_root)

    def _index(self) -> dict[str, dict]:
        """metadata.json's entries by relative path, sidecars (e.g. idf.json beside idf_statistics.pkl) included."""
        index = {}
        for entry in read_index(UPath(self.base_path)).values():
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
        for relative in sorted(set(index) | set(self._on_disk())):
            path = self.base_path / relative
            entry = index.get(relative)
            if relative in STORE_PATHS.values():
                files = [f for f in path.rglob("*") if f.is_file()]
                rows.append(
                    {
                        "subdir": str(Path(relative).parent),
                        "name": Path(relative).name,
                        "asset": f"(store, {len(files)} files)",
                        "bytes": sum(f.stat().st_size for f in files),
                        "modified": dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds"),
                        "status": "kept",
                    }
                )
                continue
            sha256, size = content_hash(UPath(path)) if path.exists() else (None, 0)
            rows.append(
                {
                    "subdir": str(Path(relative).parent),
                    "name": Path(relative).name,
                    "asset": entry["asset_key"] if entry else "",
                    "bytes": size,
                    "modified": dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds") if path.exists() else "",
                    "status": _status(sha256, entry),
                }
            )
        return rows

    def _on_disk(self) -> list[str]:
        """Artifact paths: files and model folders (a folder holding a model's config.json or a
        SparseEncoder's modules.json counts as one)."""
        if not self.base_path.exists():
            return []
        found = []
        for path in self.base_path.rglob("*"):
            relative = path.relative_to(self.base_path)
            hidden = any(part.startswith(".") for part in relative.parts)
            inside_model = any(_is_model_folder(self.base_path / p) for p in list(relative.parents)[:-1])
            inside_store = any(str(p) in STORE_PATHS.values() for p in list(relative.parents)[:-1])
            if hidden or inside_model or inside_store or relative.name in (METADATA_FILE, "README.md"):
                continue
            if _is_model_folder(path) or str(relative) in STORE_PATHS.values() or (path.is_file() and len(relative.parts) > 1):
                found.append(str(relative))
        return found

    def print_summary(self) -> bool:
        """Print every artifact's row; True when none is missing or modified."""
        rows = self.artifacts()
        print(f"dataset: {self.base_path.resolve()}")
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
            relative = str(Path(subdir) / name)
            path = self.base_path / relative
            found = _status(content_hash(UPath(path))[0], index.get(relative)) if path.exists() else "missing"
            if found in ("missing", "modified"):
                bad.append(relative)
                print(f"{found}: {path.resolve()}")
        return not bad

    def accept(self, relative: str) -> dict:
        """Record the current content of the artifact at `relative` (e.g. base_model/documents.json) in
        metadata.json, for a file changed on purpose: the IO managers refuse to load a changed artifact
        until then. Returns its new entry."""
        entry = next((e for e in read_index(UPath(self.base_path)).values() if e["path"] == relative), None)
        if entry is None:
            raise FileNotFoundError(f"{relative} is not an artifact recorded in {(self.base_path / METADATA_FILE).resolve()}")
        if not (self.base_path / relative).exists():
            raise FileNotFoundError(f"{(self.base_path / relative).resolve()} does not exist: re-materialize {entry['asset_key']!r}")
        accepted = record_artifact(UPath(self.base_path), entry["asset_key"], relative, "accepted by hand", list(entry.get("sidecars", {})))
        print(f"accepted {(self.base_path / relative).resolve()} as {entry['asset_key']!r} (sha256 {accepted['sha256'][:12]}...)")
        return accepted

    def clear_subdirectory(self, subdir: str, confirm: bool = False) -> bool:
        """Delete `subdir` and its metadata.json entries; refuses (returns False) unless confirm=True.
        A path outside the root, a file or a folder that does not exist is an error."""
        root = self.base_path.resolve()
        target = (self.base_path / subdir).resolve()
        if target == root or root not in target.parents:
            raise ValueError(f"{subdir!r} is not a subdirectory of {root}")
        if target.is_file():
            raise ValueError(
                f"{target} is a file, not a subdirectory: clear its folder ({target.parent.relative_to(root)}) and re-materialize"
            )
        if not target.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
            raise FileNotFoundError(f"{target} does not exist: nothing to clear (subdirectories of {root}: {', '.join(present) or 'none'})")
        if not confirm:
            print(f"refusing to delete {target}: call clear_subdirectory({subdir!r}, confirm=True) (CLI: --yes)")
            return False
        shutil.rmtree(target)
        forgotten = forget_artifacts(UPath(self.base_path), subdir)
        print(f"deleted {target} ({len(forgotten)} metadata entries removed)")
        return True


def _status(sha256: str | None, entry: dict | None) -> str:
    """missing (no content), untracked (no metadata.json entry), ok or modified (the recorded hash)."""
    if sha256 is None:
        return "missing"
    if entry is None:
        return "untracked"
    return "ok" if sha256 == entry["sha256"] else "modified"
