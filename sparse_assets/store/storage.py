"""Atomic artifact writes and the `metadata.json` index of every artifact (no Dagster here).

Every write goes to a temporary sibling first and is renamed into place, so a crash leaves either
the previous artifact or the new one, never half of one. Paths are `UPath`s, so the same code
writes to local disk or any fsspec filesystem (``memory://``, ``s3://``, ...).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import glob
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from upath import UPath

from sparse_assets.store.layout import ASSET_PATHS, METADATA_FILE, SIDECAR_PATHS, asset_path


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def _temp_sibling(path: UPath) -> UPath:
    """A hidden sibling named after the writer (host and process id), so that what a killed writer
    left behind can be told from what a live one is writing."""
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_abandoned_temps(path: UPath) -> list[str]:
    """Delete the temp siblings of `path` that a writer on this host left when it was killed (its
    process is gone); a live writer's and another host's are kept. Returns the names removed."""
    if not _is_local(path) or not path.parent.exists():
        return []
    removed = []
    prefix = f".{path.name}.{socket.gethostname()}-"
    for temp in Path(path.parent).glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = temp.name[len(prefix) :].split("-", 1)[0] if temp.name.startswith(prefix) else ""
        if pid.isdigit() and not _process_alive(int(pid)):
            _discard(UPath(temp))  # a file, or a model folder's staging copy
            removed.append(temp.name)
    return removed


def _discard(temp: UPath) -> None:
    """Remove a temp file or staging folder, on local disk or any fsspec filesystem."""
    if _is_local(temp):
        if Path(temp).is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            Path(temp).unlink(missing_ok=True)
    elif temp.exists():
        temp.fs.rm(temp.path, recursive=True)


@contextlib.contextmanager
def _written_whole_or_not_at_all(temp: UPath, target: UPath) -> Iterator[None]:
    """Remove `temp` at once when writing it fails (a full disk would otherwise keep the partial
    file until the next run), and raise the OSError again naming `target`."""
    try:
        yield
    except OSError as error:
        _discard(temp)
        advice = " (the disk is full: free space, or point SPARSE_ASSETS_DATASET at a larger disk)" if error.errno == errno.ENOSPC else ""
        message = f"{error.strerror or error} while writing {target}{advice}; the partial copy was removed, what was there is kept"
        raise (OSError(error.errno, message) if error.errno else OSError(message)) from error


def atomic_write_bytes(path: UPath, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and a rename (first removing the temps a
    killed writer left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(path)
    tmp = _temp_sibling(path)
    with _written_whole_or_not_at_all(tmp, path):
        if _is_local(path):
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:
            tmp.write_bytes(data)
            tmp.fs.mv(tmp.path, path.path)


def atomic_write_json(path: UPath, value: Any) -> None:
    """`value` as JSON at `path`; a NaN or Infinity (which JSON has no way to hold) is a ValueError
    naming the file, and nothing is written."""
    try:
        text = json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"{path} was not written: it would hold a NaN or Infinity, which is not JSON ({error})") from error
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_any(path: UPath, value: Any) -> None:
    """bytes as they are, str as UTF-8 text, anything else as JSON."""
    if isinstance(value, bytes):
        atomic_write_bytes(path, value)
    elif isinstance(value, str):
        atomic_write_bytes(path, value.encode("utf-8"))
    else:
        atomic_write_json(path, value)


def atomic_replace_folder(source: Path, target: UPath) -> None:
    """Copy the local folder `source` into place at `target`, replacing what was there only once
    the copy is complete."""
    if not source.is_dir():
        raise FileNotFoundError(f"model folder {source} does not exist or is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(target)
    staging = _temp_sibling(target)
    if _is_local(target):
        with _written_whole_or_not_at_all(staging, target):
            shutil.copytree(source, staging)
        retired = _temp_sibling(target)
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        with _written_whole_or_not_at_all(staging, target):
            target.fs.put(str(source), staging.path, recursive=True)
        if target.exists():
            target.fs.rm(target.path, recursive=True)
        target.fs.mv(staging.path, target.path, recursive=True)


def json_digest(value: Any) -> str:
    """The sha256 of `value` as canonical JSON (sorted keys): a key for settings and records."""
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def content_hash(path: UPath) -> tuple[str, int]:
    """(sha256, bytes) of a file, or of a folder's files (relative path + content, sorted)."""
    digest = hashlib.sha256()
    if path.is_dir():
        total = 0
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            data = file.read_bytes()
            digest.update(str(file.relative_to(path)).encode())
            digest.update(hashlib.sha256(data).digest())
            total += len(data)
        return digest.hexdigest(), total
    data = path.read_bytes()
    digest.update(data)
    return digest.hexdigest(), len(data)


@contextlib.contextmanager
def _index_lock(root: UPath) -> Iterator[None]:
    """Serialise read-modify-write of metadata.json between processes (local disk only)."""
    if not _is_local(root):
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(Path(root) / ".metadata.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


WRITER_FILE = ".writer.json"
REMOTE_LEASE_SECONDS = 3600  # a claim no one here can ask about (another host's) holds the root this long after it was made
CLOCK_SKEW_SECONDS = 300  # how far in the future a claim's time may be (hosts' clocks differ); beyond that it holds nothing


class DatasetBusyError(RuntimeError):
    """Another run is reading and writing this dataset root."""


class InvalidClaimError(RuntimeError):
    """`.writer.json` holds something other than a writer claim."""


@dataclass(frozen=True)
class WriterClaim:
    """A run's claim on a dataset root, as `.writer.json` records it."""

    run_id: str
    time: dt.datetime
    host: str | None = None
    instance: str | None = None  # the holder's DAGSTER_HOME; None for a throwaway in-process instance
    root: str | None = None  # the root it claimed (`_root_identity`); None in claims written by older versions

    @classmethod
    def from_record(cls, record: Any) -> WriterClaim:
        """The claim in a parsed `.writer.json`; TypeError or ValueError saying what is wrong with another shape."""
        if not isinstance(record, dict):
            raise TypeError(f"a JSON {type(record).__name__}, not an object")
        for field in ("run_id", "time"):
            if not isinstance(record.get(field), str):
                raise TypeError(f"no text {field!r}")
        for field in ("host", "instance", "root"):
            if not isinstance(record.get(field), str | None):
                raise TypeError(f"{field!r} is not text")
        time = dt.datetime.fromisoformat(record["time"])
        if time.tzinfo is None:
            raise ValueError(f"its time {record['time']!r} has no time zone")
        return cls(record["run_id"], time, record.get("host"), record.get("instance"), record.get("root"))

    def within_lease(self) -> bool:
        """Made less than REMOTE_LEASE_SECONDS ago, and not later than the clock skew allows."""
        age = (dt.datetime.now(dt.UTC) - self.time).total_seconds()
        return -CLOCK_SKEW_SECONDS <= age < REMOTE_LEASE_SECONDS


def _root_identity(root: UPath) -> str:
    """What a claim records as its root: the resolved folder on local disk, the URL elsewhere."""
    return str(Path(root).resolve()) if _is_local(root) else str(root)


def read_claim(root: UPath) -> WriterClaim | None:
    """The claim `root/.writer.json` holds; None when there is none, or it is torn (not JSON: nobody
    holds the root). Another shape raises InvalidClaimError naming the file and the fix."""
    path = root / WRITER_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    try:
        return WriterClaim.from_record(record)
    except (TypeError, ValueError) as error:
        raise InvalidClaimError(
            f"{path} is not a writer claim ({error}): it records which run uses the dataset root {root}; if no run is "
            f"using it now, delete {path} (the next run writes a new one)"
        ) from error


def claim_dataset_root(root: UPath, claim: dict[str, Any], holder_is_active: Callable[[WriterClaim], bool]) -> None:
    """Make the run of `claim` ({"run_id", "instance"}) the one run that reads and writes under `root`
    (`.writer.json`: the claim, the host, the time and the root), or raise DatasetBusyError naming the
    run that holds it, when `holder_is_active(that claim)`. A claim recorded for another root (this
    one copied from there, `.writer.json` included) holds nothing here."""
    path = root / WRITER_FILE
    here = _root_identity(root)
    with _index_lock(root):
        holder = read_claim(root)
        if holder and holder.run_id != claim["run_id"] and holder.root in (None, here) and holder_is_active(holder):
            raise DatasetBusyError(
                f"the dataset root {root} is in use by run {holder.run_id} (host {holder.host}, since "
                f"{holder.time.isoformat()}): two runs on one root would read each other's artifacts. Wait for that run "
                f"to finish (or cancel it), or point SPARSE_ASSETS_DATASET at another folder; if that run is gone "
                f"for good, delete {path}"
            )
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        atomic_write_json(path, {**claim, "host": socket.gethostname(), "time": now, "root": here})


class CorruptIndexError(ValueError):
    """metadata.json cannot be trusted: unreadable, of another shape, or naming a path outside the root."""


INDEX_FIX = "restore metadata.json from a backup, or run `sparse-assets reindex` (it records the artifacts that are there, as they are now)"


def inside_root(root: UPath, relative: str) -> UPath:
    """`root / relative` for a path read from metadata.json, refused (CorruptIndexError) when it leads
    out of the root: empty, absolute, climbing out with `..`, or (on local disk) resolving through a
    symlink to a place outside the root."""
    pure = PurePosixPath(relative)
    path = root / relative
    escapes = not relative or pure.is_absolute() or ".." in pure.parts
    if not escapes and _is_local(root):
        escapes = not Path(path).resolve().is_relative_to(Path(root).resolve())
    if escapes:
        raise CorruptIndexError(f"{root / METADATA_FILE} names {relative!r}, a path outside the dataset root {root}: {INDEX_FIX}")
    return path


def _entry_problem(key: str, entry: Any) -> str | None:
    """What makes `entry` (recorded under `key`) not an artifact entry, or None."""
    if not isinstance(entry, dict):
        return f"is a JSON {type(entry).__name__}, not an object"
    for field in ("asset_key", "path", "sha256"):
        if not isinstance(entry.get(field), str):
            return f"has no text {field!r}"
    if entry["asset_key"] != key:
        return f"is recorded for another asset ({entry['asset_key']!r})"
    sidecars = entry.get("sidecars", {})
    if not isinstance(sidecars, dict) or not all(isinstance(value, str) for value in sidecars.values()):
        return "has sidecars that are not {path: sha256}"
    if "group" in entry and not _is_group(entry["group"]):
        return "has a group that is not {step, run_id, outputs: [asset key, ...]}"
    return None


def _is_group(group: Any) -> bool:
    return isinstance(group, dict) and isinstance(group.get("outputs"), list) and all(isinstance(key, str) for key in group["outputs"])


def read_index(root: UPath) -> dict[str, dict[str, Any]]:
    """The artifact entries of `root/metadata.json`, keyed by asset key ({} when there is none). An
    index that is unreadable, holds an entry of another shape, or names a path outside the root
    (`inside_root`) raises CorruptIndexError."""
    index_path = root / METADATA_FILE
    if not index_path.exists():
        return {}
    try:
        artifacts = json.loads(index_path.read_text(encoding="utf-8"))["artifacts"]
        problems = {key: _entry_problem(key, entry) for key, entry in artifacts.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptIndexError(f"{index_path} is not a valid metadata index ({error}); {INDEX_FIX}") from error
    for key, problem in problems.items():
        if problem:
            raise CorruptIndexError(f"{index_path} is not a valid metadata index: entry {key!r} {problem}; {INDEX_FIX}")
    for entry in artifacts.values():
        for relative in (entry["path"], *entry.get("sidecars", {})):
            inside_root(root, relative)
    return artifacts


def _artifact_entry(root: UPath, asset_key: str, relative_path: str, run_id: str | None, sidecars: Sequence[str]) -> dict[str, Any]:
    """The metadata.json entry of the artifact at `root/relative_path` (and its `sidecars`, files
    written beside it) as it is now."""
    sha256, size = content_hash(root / relative_path)
    entry = {
        "asset_key": asset_key,
        "path": relative_path,
        "run_id": run_id,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "bytes": size,
        "sha256": sha256,
    }
    if sidecars:
        entry["sidecars"] = {path: content_hash(root / path)[0] for path in sidecars}
    return entry


def _write_index(root: UPath, artifacts: dict[str, dict[str, Any]]) -> None:
    atomic_write_json(root / METADATA_FILE, {"artifacts": dict(sorted(artifacts.items()))})


def record_artifact(
    root: UPath, asset_key: str, relative_path: str, run_id: str | None, sidecars: Sequence[str] = (), group: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Hash the artifact at `root/relative_path` (and its `sidecars`, files written beside it) and add
    or replace its entry in metadata.json. `group`: the write group of the step that wrote it
    ({"step", "run_id", "outputs": the asset keys that run of the step writes}, see `torn_members`);
    None keeps the entry's group (recording content accepted by hand vouches for it, not for a run)."""
    entry = _artifact_entry(root, asset_key, relative_path, run_id, sidecars)
    with _index_lock(root):
        artifacts = read_index(root)
        group = group if group is not None else artifacts.get(asset_key, {}).get("group")
        if group is not None:
            entry["group"] = group
        artifacts[asset_key] = entry
        _write_index(root, artifacts)
    return entry


def torn_members(root: UPath, index: dict[str, dict[str, Any]], asset_key: str) -> list[str]:
    """The paths (relative to `root`) of what was written together with the artifact of `asset_key`
    but does not belong with it, which a run stopped in the middle of a step leaves: a sidecar that
    is missing or not the content recorded with it, and another output of the same step (its
    entry's group) whose entry is missing or comes from another run of the step. An output that was
    since materialized on its own (its group leaves this asset out: a subset of a step that allows
    one) belongs. [] when everything belongs together."""
    entry = index[asset_key]
    torn = [relative for relative, sha256 in entry.get("sidecars", {}).items() if not _holds(root / relative, sha256)]
    group = entry.get("group") or {"outputs": []}
    for sibling in group["outputs"]:
        if not _written_with(index.get(sibling), group.get("run_id"), asset_key):
            torn.append(index[sibling]["path"] if sibling in index else asset_path(sibling))
    return torn


def _holds(path: UPath, sha256: str) -> bool:
    return path.exists() and content_hash(path)[0] == sha256


def _written_with(sibling: dict[str, Any] | None, run_id: str | None, asset_key: str) -> bool:
    """Whether the entry of a sibling output comes from the run `run_id` of the step that wrote
    `asset_key`, or was materialized on its own since."""
    group = (sibling or {}).get("group")
    return group is not None and (group.get("run_id") == run_id or asset_key not in group["outputs"])


REINDEXED = "reindexed"  # the run id of the entries rebuild_index records


def rebuild_index(root: UPath) -> list[dict[str, Any]]:
    """Replace `root/metadata.json` with entries for the artifacts that are there now, hashed as they
    are (run id "reindexed"): each asset of the layout (`layout.ASSET_PATHS`) whose file or model
    folder exists, with those of its sidecars (`layout.SIDECAR_PATHS`, e.g. idf.json) that exist.
    For an index that was lost, deleted or is unreadable (`sparse-assets reindex`): loads refuse an
    artifact the index does not record, and this vouches for whatever the files hold, so look at
    them first (or re-materialize instead). An asset that is not there gets no entry (it stays
    "missing"), and the entries of the index there was are dropped. Returns the new entries."""
    entries = {}
    for asset, relative in ASSET_PATHS.items():
        if (root / relative).exists():
            sidecars = [path for path in SIDECAR_PATHS.get(asset, ()) if (root / path).exists()]
            entries[asset] = _artifact_entry(root, asset, relative, REINDEXED, sidecars)
    with _index_lock(root):
        _write_index(root, entries)
    return list(entries.values())


def forget_artifacts(root: UPath, relative: str) -> list[str]:
    """Drop the metadata.json entries of the artifact at `relative` and of everything under it (a
    folder, or a model folder by its own path); returns their keys."""
    relative = relative.rstrip("/")
    with _index_lock(root):
        artifacts = read_index(root)
        gone = [key for key, entry in artifacts.items() if entry["path"] == relative or entry["path"].startswith(relative + "/")]
        for key in gone:
            del artifacts[key]
        if gone:
            _write_index(root, artifacts)
    return gone


# What a pickled artifact may name besides plain data (dict, list, tuple, set, str, bytes, int, float,
# bool, None, which pickle encodes without naming a class): numpy arrays, their dtypes and scalars.
SAFE_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise UnsafePickleError(
                f"it names {module}.{name}, which is not plain data (only dicts, lists, numbers, strings and numpy arrays are loaded)"
            )
        return super().find_class(module, name)


def load_plain_pickle(data: bytes):
    """Unpickle `data` admitting only plain data and numpy arrays: a pickle that names any other class
    or function (the way a crafted pickle runs code) raises UnsafePickleError before anything runs."""
    return _PlainDataUnpickler(io.BytesIO(data)).load()
