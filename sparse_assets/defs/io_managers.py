"""IO managers: every read and write of `dataset/` goes through these (pickle, JSON, model folder).

They are `UPathIOManager`s, so the root may be a local folder or any fsspec URL (``s3://bucket/ds``,
``memory://ds``). Paths follow `sparse_assets.store.layout`. Writes are atomic and recorded in
`metadata.json` (asset key, path, run id, time, bytes, sha256).
"""

from __future__ import annotations

import json
import multiprocessing.util
import pickle
import resource
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from sparse_assets.defs.resources import DenseVectorStore, LLMCompletionStore
from sparse_assets.store.layout import METADATA_FILE, STORE_PATHS, asset_path
from sparse_assets.store.storage import (
    INDEX_FIX,
    DatasetBusyError,
    InvalidClaimError,
    UnsafePickleError,
    WriterClaim,
    atomic_replace_folder,
    atomic_write_any,
    atomic_write_bytes,
    atomic_write_json,
    claim_dataset_root,
    content_hash,
    load_plain_pickle,
    read_index,
    record_artifact,
    torn_members,
)
from sparse_assets.tables import sample_markdown

SAMPLE_ROWS = 5


@dataclass
class WithSidecars:
    """An asset value plus side files written next to it (e.g. idf.json beside the pickle): bytes as
    they are, str as text, anything else as JSON. Downstream assets load only `value`."""

    value: Any
    sidecars: dict[str, Any] = field(default_factory=dict)


class MissingArtifactError(FileNotFoundError):
    pass


class CorruptArtifactError(ValueError):
    pass


class ModifiedArtifactError(CorruptArtifactError):
    """The artifact's content is not what its asset wrote (sha256 differs from metadata.json)."""


class UnrecordedArtifactError(CorruptArtifactError):
    """The artifact is there but metadata.json has no entry for it to check it against."""


PICKLED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")  # loading them can run code


class _DatasetIOManager(dg.UPathIOManager):
    """Shared behaviour: layout paths, atomic writes, metadata.json, readable metadata."""

    format_name = ""

    def get_asset_relative_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        return UPath(asset_path(context.asset_key.path[-1]))

    def claim(self, context: dg.InputContext | dg.OutputContext) -> None:
        """One run at a time per dataset root (`storage.claim_dataset_root`): a second run fails at its
        first read or write, naming the run that holds the root. Outside a run (a context built by
        hand) there is nothing to claim."""
        try:
            step = context.step_context
        except dg.DagsterInvariantViolationError:
            return
        home = None if step.instance.is_ephemeral else str(step.instance.root_directory)
        try:
            claim_dataset_root(
                self._base_path, {"run_id": step.run_id, "instance": home}, lambda holder: holder_is_running(step.instance, holder)
            )
        except (DatasetBusyError, InvalidClaimError) as error:
            raise dg.Failure(description=str(error)) from None

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        self.claim(context)
        value, sidecars = (obj.value, obj.sidecars) if isinstance(obj, WithSidecars) else (obj, {})
        for name, sidecar in sidecars.items():
            atomic_write_any(path.parent / name, sidecar)
        self.write(value, path)
        relative = asset_path(context.asset_key.path[-1])
        sidecar_paths = [str(Path(relative).parent / name) for name in sidecars]
        entry = record_artifact(
            self._base_path, context.asset_key.to_user_string(), relative, context.run_id, sidecar_paths, step_group(context)
        )
        context.add_output_metadata(
            {
                "bytes": dg.MetadataValue.int(entry["bytes"]),
                "sha256": dg.MetadataValue.text(entry["sha256"]),
                **({"sidecars": dg.MetadataValue.text(", ".join(sidecars))} if sidecars else {}),
                "step_peak_memory_mb": dg.MetadataValue.float(step_peak_memory_mb()),
                **describe_value(value),
            }
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        self.claim(context)
        if not path.exists():
            raise MissingArtifactError(
                f"upstream artifact {context.asset_key.to_user_string()!r} is missing at {path}; "
                f"materialize it first (e.g. `make run`, or select it in the UI and click Materialize)"
            )
        asset = context.asset_key.to_user_string()
        self.verify(asset, path)
        try:
            return self.read(path)
        except UnsafePickleError as error:
            raise CorruptArtifactError(f"{path} was not loaded: {error}; re-materialize {asset!r} to rewrite it") from error
        except (ValueError, pickle.UnpicklingError, EOFError, UnicodeDecodeError, AttributeError) as error:
            raise CorruptArtifactError(
                f"{path} is not a readable {self.format_name} artifact ({type(error).__name__}: {error}); "
                f"re-materialize {asset!r} to rewrite it"
            ) from error

    def verify(self, asset: str, path: UPath) -> None:
        """Refuse an artifact whose content differs from what its asset recorded in metadata.json
        (edited, truncated or replaced since), and one metadata.json does not record (the index was
        deleted or edited: without it there is nothing to check the content against)."""
        index = read_index(self._base_path)
        entry = index.get(asset)
        if entry is None or entry["path"] != asset_path(asset.split("/")[-1]):
            raise UnrecordedArtifactError(
                f"{path} has no entry in {self._base_path / METADATA_FILE}, so its content cannot be checked (the index was deleted, "
                f"replaced or edited): {INDEX_FIX}; or re-materialize {asset!r}"
            )
        if content_hash(path)[0] != entry["sha256"]:
            raise ModifiedArtifactError(
                f"{path} is not what {asset!r} wrote (its sha256 differs from the one in metadata.json): re-materialize {asset!r}; "
                f"if you changed it on purpose, `sparse-assets accept {entry['path']}` records its current content"
            )
        torn = torn_members(self._base_path, index, asset)  # written with it: an interrupted step shows here
        if torn:
            outputs = (entry.get("group") or {}).get("outputs", [asset])
            together = " (one step writes them together)" if len(outputs) > 1 else ""
            raise ModifiedArtifactError(
                f"{', '.join(str(self._base_path / relative) for relative in torn)} does not belong with {path} (missing, or not "
                f"written by the same run of the step; an interrupted write leaves that): re-materialize "
                f"{' and '.join(map(repr, outputs))}{together}"
            )

    def write(self, value: Any, path: UPath) -> None:
        raise NotImplementedError

    def read(self, path: UPath) -> Any:
        raise NotImplementedError


class PickleIOManager(_DatasetIOManager):
    format_name = "pickle"

    def write(self, value: Any, path: UPath) -> None:
        atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def read(self, path: UPath) -> Any:
        return load_plain_pickle(path.read_bytes())


class JsonIOManager(_DatasetIOManager):
    format_name = "JSON"

    def write(self, value: Any, path: UPath) -> None:
        atomic_write_json(path, value)

    def read(self, path: UPath) -> Any:
        return json.loads(path.read_bytes().decode("utf-8"))


@dataclass(frozen=True)
class HandoverFolder:
    """A model folder an asset built in a temp folder of its own (`HandoverFolder.new()`): the model
    IO manager moves its content into the dataset and removes it."""

    path: Path

    @classmethod
    def new(cls) -> HandoverFolder:
        return cls(Path(tempfile.mkdtemp(prefix="sparse-assets-handover-")))


class ModelFolderIOManager(_DatasetIOManager):
    """Assets return a `HandoverFolder` (copied into place atomically, then removed) or any local
    folder (copied, left as it is). Loading gives a local folder Path (downloaded first when the root
    is remote, into a temp folder removed when the process ends)."""

    format_name = "model folder"

    def write(self, value: Any, path: UPath) -> None:
        source = value.path if isinstance(value, HandoverFolder) else Path(value)
        atomic_replace_folder(source, path)
        if isinstance(value, HandoverFolder):
            shutil.rmtree(source, ignore_errors=True)

    def read(self, path: UPath) -> Path:
        if not path.is_dir():
            raise ValueError("not a folder")
        pickled = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix in PICKLED_WEIGHT_SUFFIXES)
        if pickled:
            raise ValueError(
                f"it holds pickled files {pickled[:3]}, which can run code when loaded (model folders load from safetensors only)"
            )
        if getattr(path, "protocol", "") in ("", "file", "local"):
            return Path(path)
        download = Path(tempfile.mkdtemp(prefix="sparse_assets_model_"))
        # removed when this process ends (a step's own process under the multiprocess executor)
        multiprocessing.util.Finalize(None, shutil.rmtree, args=(download, True), exitpriority=0)
        local = download / path.name
        path.fs.get(path.path, str(local), recursive=True)
        return local


def step_group(context: dg.OutputContext) -> dict[str, Any]:
    """The write group of an output: its step, its run and the assets that run of the step writes
    (its selected outputs), recorded in each one's entry so that loading one can tell a step stopped
    between its outputs (`storage.torn_members`). Outside a run (a context built by hand), the asset
    alone."""
    try:
        step = context.step_context
    except dg.DagsterInvariantViolationError:
        return {"step": None, "run_id": context.run_id, "outputs": [context.asset_key.to_user_string()]}
    outputs = sorted(key.to_user_string() for key in step.get_output_asset_keys())
    return {"step": context.step_key, "run_id": context.run_id, "outputs": outputs}


def holder_is_running(instance: dg.DagsterInstance, holder: WriterClaim) -> bool:
    """Is the run that holds a dataset root (its `.writer.json` claim) still in progress? Asked of
    this run's own instance when the claim names it. A run on a throwaway in-process instance
    (`dg.materialize` in a test or notebook) has no status to ask and holds nothing once its call
    returns; one on another host holds the root for REMOTE_LEASE_SECONDS after its last claim (a
    time further in the future than the clock skew allows holds nothing). One on another instance of
    this host counts as ended: asking it would mean opening whatever folder the file names."""
    if holder.instance is None:
        return False
    if holder.host != socket.gethostname():
        return holder.within_lease()
    if instance.is_ephemeral or holder.instance != str(instance.root_directory):
        return False
    run = instance.get_run_by_id(holder.run_id)
    return run is not None and not run.is_finished


def step_peak_memory_mb() -> float:
    """Peak resident memory so far of this process or the largest child it waited for (the LLM step's
    worker), in MB: under the multiprocess executor each step has a process of its own, so this is the
    step's peak (the bench's per-stage memory); in one process (tests) it is the whole run's."""
    usage = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return round(usage / 1024, 1)


def describe_value(value: Any) -> dict[str, dg.MetadataValue]:
    """Counts and a sample table for lists of records and dicts."""
    if isinstance(value, list):
        return {"records": dg.MetadataValue.int(len(value)), "sample": dg.MetadataValue.md(sample_markdown(value[:SAMPLE_ROWS]))}
    if isinstance(value, dict):
        head = [{"key": str(k), "value": str(v)[:120]} for k, v in list(value.items())[:SAMPLE_ROWS]]
        return {"entries": dg.MetadataValue.int(len(value)), "sample": dg.MetadataValue.md(sample_markdown(head))}
    return {}


def io_managers(base_path: str) -> dict[str, dg.IOManager | dg.ConfigurableResource]:
    """The three IO managers and the two stores (LLM completions, dense vectors) over one dataset
    root, under the keys the assets use."""
    root = UPath(base_path)
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"the dataset root {root} is a file, not a folder: point SPARSE_ASSETS_DATASET at a folder (a missing one is created)"
        )
    return {
        "pickle_io_manager": PickleIOManager(base_path=root),
        "json_io_manager": JsonIOManager(base_path=root),
        "model_io_manager": ModelFolderIOManager(base_path=root),
        "llm_store": LLMCompletionStore(root=str(root / STORE_PATHS["llm_store"])),
        "dense_store": DenseVectorStore(root=str(root / STORE_PATHS["dense_store"])),
    }
