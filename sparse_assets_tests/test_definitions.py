"""The Definitions load and validate the way `dagster dev` loads them (workspace.yaml), and match the
reviewed snapshot of every asset, check, job, schedule and sensor."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_assets.defs import code_versions
from sparse_assets.defs.definitions import defs

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def test_workspace_validates():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
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


def definitions_snapshot() -> dict:
    """What a reviewer should see change in a diff: each asset's group, inputs, IO manager, resources, pools and
    kinds, each check's asset and blocking flag, each job's assets, the schedules and sensors.
    (Code versions are digests of the code, checked below; descriptions are prose.)"""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "io_manager": node.io_manager_key,
            "resources": sorted(node.assets_def.op.required_resource_keys),
            "pools": sorted(node.pools or []),
            "kinds": sorted(node.kinds),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {"blocking": spec.blocking}
    jobs = {
        job.name: sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__")
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in defs.schedules or []},
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_definitions_match_the_snapshot():
    """A change to the graph's shape shows up here and in the snapshot's diff. After a deliberate
    change: `UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest sparse_assets_tests/test_definitions.py`."""
    current = definitions_snapshot()
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_code_versions_are_digests_of_the_code_they_name(tmp_path, monkeypatch):
    graph = defs.resolve_asset_graph()
    versions = {key.to_user_string(): graph.get(key).code_version for key in graph.get_all_asset_keys()}
    assert all(re.fullmatch(r"[0-9a-f]{12}", v) for v in versions.values()), versions
    assert versions["neural_sparse_v1_model"] == versions["neural_sparse_v2_model"]  # one training code
    assert versions["neural_sparse_v1_model"] != versions["qd_pairs_base"]
    assert code_versions.code_version("data.idf", "data.korean") == code_versions.code_version("data.korean", "data.idf")
    with pytest.raises(ModuleNotFoundError, match="sparse_assets.data.nothing"):
        code_versions.code_version("data.nothing")

    source = tmp_path / "module.py"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: importlib.util.spec_from_file_location(name, source))
    source.write_text("WEIGHT = 1\n")
    before = code_versions.code_version("edited")
    assert code_versions.code_version("edited") == before
    source.write_text("WEIGHT = 2\n")
    assert code_versions.code_version("edited") != before
