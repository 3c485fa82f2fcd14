"""The Dagster UI in a real browser: `dagster dev` (webserver + daemon) over a materialized tiny
dataset, driven by headless Chromium (Debian's, through Playwright)."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sparse_assets_tests.korquad_data import REPO
from sparse_assets_tests.llm_fakes import FakeOpenAI, free_port
from sparse_assets_tests.pipeline_helpers import Pipeline, answer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UPSTREAM_OF_COMPARISON = ["documents", "eval_queries", "neural_sparse_v1_model", "neural_sparse_v2_model"]

pytestmark = [pytest.mark.ui, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory, model_cache):
    with FakeOpenAI(answer) as server:
        pipeline = Pipeline(tmp_path_factory.mktemp("ui"), server, model_cache)
        pipeline.materialize()
    return pipeline


@pytest.fixture(scope="module")
def dagster_dev(materialized, tmp_path_factory):
    """`dagster dev` on a free loopback port, in its own process group so that all of it stops."""
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(materialized.home),
        "SPARSE_ASSETS_DATASET": str(materialized.root),
        "SPARSE_ASSETS_CORPUS": str(materialized.corpus),
    }
    log = tmp_path_factory.mktemp("dev") / "dagster_dev.log"
    dagster = Path(sys.executable).parent / "dagster"
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "dagster dev did not come up in 180 s:\n" + log.read_text()[-3000:]
                time.sleep(1)
        yield url
    finally:
        stop_group(process)
    assert not live_group_members(process.pid), "dagster dev left processes running"


def live_group_members(pgid: int) -> list[str]:
    """'pid state command' of the processes in group `pgid` that are not zombies (a killed child
    reparented to init stays in the table until init reaps it, but runs nothing)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we looked
            continue
        command, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{stat.parent.name} {fields[0]} {command}")
    return members


def stop_group(process: subprocess.Popen, grace_s: float = 30, kill_wait_s: float = 60) -> None:
    """SIGTERM the whole process group (webserver, daemon, code servers), SIGKILL what outlives the
    grace, then wait (on a loaded machine, for up to `kill_wait_s`) until no member runs."""
    for sent, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            break
        deadline = time.time() + wait_s
        while time.time() < deadline and live_group_members(process.pid):
            process.poll()
            time.sleep(0.5)
        if not live_group_members(process.pid):
            break
    process.wait()


@pytest.fixture
def page(dagster_dev):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        yield page
        browser.close()


def open_page(page, url: str, expect: str) -> str:
    page.goto(url, wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
    page.wait_for_function("text => document.body.innerText.includes(text)", arg=expect, timeout=60_000)
    time.sleep(2)  # let the remaining panels render
    return page.inner_text("body")


def shown(name: str, text: str) -> bool:
    """The name is on the page, whole or as the graph elides long names (`neural_s…_v2_model`)."""
    elided = [line.split("…") for line in text.splitlines() if line.count("…") == 1]
    return name in text.splitlines() or any(len(a) >= 5 and name.startswith(a) and name.endswith(b) for a, b in elided)


def test_asset_graph_and_comparison_page(page, dagster_dev, materialized, tmp_path):
    shots = Path(os.environ.get("SPARSE_ASSETS_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    # the lineage of performance_comparison, all the way up: every asset of the graph, with its edges
    lineage = f"{dagster_dev}/assets/performance_comparison?view=lineage&lineageScope=upstream&lineageDepth=6"
    text = open_page(page, lineage, "bilingual_synonyms")
    for asset in materialized.graph.get_all_asset_keys():
        assert shown(asset.to_user_string(), text), asset
    page.screenshot(path=str(shots / "asset_graph.png"))
    edges = page.locator("svg path").count()
    assert edges >= len(UPSTREAM_OF_COMPARISON)

    # wait for a metadata key (the description's words render before the metadata does)
    text = open_page(page, f"{dagster_dev}/assets/performance_comparison", "v2_minus_v1_ndcg@10")
    for system in ("bm25", "idf_only", "v1", "v2", "v2_without_llm"):
        assert f"\n{system}\t" in text or f"\n{system}\n" in text, system
    assert "ndcg@10" in text and "v2_minus_v1_ndcg@10" in text
    page.screenshot(path=str(shots / "performance_comparison.png"), full_page=True)
    assert (shots / "asset_graph.png").stat().st_size > 20_000
