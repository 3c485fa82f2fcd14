"""`sparse-assets`: look at and manage what the pipeline made; evaluate, search and export models."""

from __future__ import annotations

import argparse
import sys

from sparse_assets.cli.model_commands import add_model_commands
from sparse_assets.environment import read_environment
from sparse_assets.store.dataset_manager import DatasetManager
from sparse_assets.store.storage import DatasetBusyError, InvalidClaimError


def _summary(args: argparse.Namespace) -> int:
    return 0 if DatasetManager(args.dataset).print_summary() else 1


def _check(args: argparse.Namespace) -> int:
    manager = DatasetManager(args.dataset)
    dependencies = [tuple(item.rsplit("/", 1)) if "/" in item else ("", item) for item in args.paths]
    ok = manager.check_dependencies(dependencies)
    print("all present" if ok else "some artifacts are missing or modified: run `make run` (or materialize them in the UI)")
    return 0 if ok else 1


def _accept(args: argparse.Namespace) -> int:
    DatasetManager(args.dataset).accept(args.path)
    return 0


def _reindex(args: argparse.Namespace) -> int:
    DatasetManager(args.dataset).reindex()
    return 0


def _clear(args: argparse.Namespace) -> int:
    return 0 if DatasetManager(args.dataset).clear_subdirectory(args.subdir, confirm=args.yes, force=args.force) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparse-assets", description=__doc__)
    parser.add_argument(
        "--dataset",
        default=read_environment().dataset_root,
        help="the dataset root, a folder or an fsspec URL such as s3://bucket/dataset (default: $SPARSE_ASSETS_DATASET, else ./dataset)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser(
        "summary", help="list every artifact with size, time and status (exit 1 when one is missing or modified)"
    ).set_defaults(run=_summary)
    check = verbs.add_parser("check", help="exit 0 when every given SUBDIR/FILE exists and matches its recorded hash")
    check.add_argument("paths", nargs="+", metavar="SUBDIR/FILE", help="e.g. base_model/documents.json")
    check.set_defaults(run=_check)
    accept = verbs.add_parser(
        "accept", help="record the current content of an artifact you changed on purpose (loads refuse a changed one)"
    )
    accept.add_argument("path", metavar="SUBDIR/FILE", help="e.g. base_model/documents.json")
    accept.set_defaults(run=_accept)
    verbs.add_parser(
        "reindex", help="metadata.json is lost: record the artifacts there now (their hashes as they are) in a new one"
    ).set_defaults(run=_reindex)
    clear = verbs.add_parser("clear", help="delete a subdirectory and its metadata entries")
    clear.add_argument("subdir", help="e.g. llm_generated")
    clear.add_argument("--yes", action="store_true", help="really delete (without it, nothing is deleted)")
    clear.add_argument("--force", action="store_true", help="clear although .writer.json names a run (once that run has finished)")
    clear.set_defaults(run=_clear)
    add_model_commands(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, DatasetBusyError, InvalidClaimError) as error:  # bad input, unreadable paths, a root in use
        print(f"error: {error}", file=sys.stderr)
        return 2
