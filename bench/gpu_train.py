"""Device side of the GPU check (run by bench/gpu_train.sh): the same train_sparse_encoder code on CUDA
(bf16 autocast): the default frozen-encoder path and the full fine-tuning path (SparseEncoderTrainer +
SpladeLoss), a few hundred steps each; writes steps/s to $OUT/gpu_train.json."""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_assets.sparse_model import SparseTrainingSettings
    from sparse_assets.sparse_training import train_sparse_encoder

    out = Path(os.environ.get("OUT", "/tmp/out"))
    carry = ROOT / ".gpu_carry"
    data = pickle.loads((carry / "data.pkl").read_bytes())
    base = Path("/tmp/mlm32")  # fp16 carry -> fp32 folder
    AutoModelForMaskedLM.from_pretrained(str(carry / "mlm"), dtype=torch.float32).save_pretrained(str(base))
    AutoTokenizer.from_pretrained(str(carry / "mlm")).save_pretrained(str(base))
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "runs": []}
    steps = {"frozen": int(sys.argv[1]) if len(sys.argv) > 1 else 400, "full": int(sys.argv[2]) if len(sys.argv) > 2 else 300}
    for name, freeze in (("frozen", True), ("full", False)):
        settings = SparseTrainingSettings(
            steps=steps[name], freeze_encoder=freeze, trim_vocabulary=False, layers=None, validation_fraction=0.0,
            teacher_scale=data["teacher_scale"], device="cuda",
        )
        t = time.perf_counter()
        report = train_sparse_encoder(data["documents"], data["pairs"], data["idf"], settings, Path(f"/tmp/model_{name}"), base,
                                      progress=lambda s, n, l: print(f"{name} step {s}/{n} loss {l:.3f}", flush=True) if s % 50 == 0 else None,
                                      teacher=data["teacher"])
        row = {"name": name, "steps": report.steps, "steps_per_second": report.steps_per_second, "train_seconds": report.train_seconds,
               "prepare_seconds": report.prepare_seconds, "wall_seconds": time.perf_counter() - t, "dtype": report.dtype,
               "batch_size": settings.batch_size, "loss_first": report.losses[0], "loss_last": report.losses[-1],
               "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20}
        torch.cuda.reset_peak_memory_stats()
        print(json.dumps(row), flush=True)
        results["runs"].append(row)
        (out / "gpu_train.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
