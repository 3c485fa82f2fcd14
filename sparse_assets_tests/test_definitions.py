"""The Definitions load and validate the way `dagster dev` loads them (workspace.yaml)."""

import subprocess
import sys
from pathlib import Path

from sparse_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]


def test_workspace_validates():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_every_asset_has_a_group_a_code_version_and_a_description():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name, key
        assert node.code_version, key
        assert node.description and len(node.description) > 40, key
