"""The code base stays ruff-clean (the rules of pyproject.toml's [tool.ruff], ruff pinned in the dev extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--output-format", "concise", "."],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
