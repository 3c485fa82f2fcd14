"""The code base stays ruff-clean and ruff-formatted (pyproject.toml's [tool.ruff], ruff pinned in the dev extra)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--output-format", "concise", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_format_changes_nothing():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "format", "--check", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, "run `.venv/bin/ruff format .`:\n" + done.stdout[-3000:] + done.stderr[-1000:]


def test_only_the_defs_package_imports_dagster():
    """The domain library stays Dagster-free: Dagster definitions live in `sparse_assets/defs/`
    (the LLM worker talks the Pipes protocol through `dagster_pipes`, which is not Dagster)."""
    offenders = []
    for path in sorted((REPO / "sparse_assets").rglob("*.py")):
        if path.is_relative_to(REPO / "sparse_assets" / "defs"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n == "dagster" or n.startswith("dagster.")]
    assert not offenders, offenders
    assert (REPO / "sparse_assets" / "defs" / "definitions.py").is_file()
