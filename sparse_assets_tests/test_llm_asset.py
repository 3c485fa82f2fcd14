"""`synthetic_qd_pairs` end to end with the real worker under Pipes (LLM env), against a scripted
OpenAI-compatible server: fast (no vLLM), and every fault path names its cause."""

import hashlib
import json
import logging
import os
from pathlib import Path

import dagster as dg
import pytest

from sparse_assets.defs.assets.llm_generated import enhanced_synonyms, synthetic_qd_pairs
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import PROJECT_ROOT, LLMResource
from sparse_assets.environment import DEFAULT_LLM_PYTHON
from sparse_assets.llm.backends import OpenAIBackend
from sparse_assets.llm.settings import SamplingSettings
from sparse_assets_tests.korquad_data import documents_asset, documents_stub, five_documents, korquad_documents
from sparse_assets_tests.llm_fakes import FakeOpenAI, free_port, last_title, start_llm_materialization

pytestmark = pytest.mark.skipif(not DEFAULT_LLM_PYTHON.exists(), reason="the LLM environment (.venv-llm) is missing")


@dg.asset(name="bilingual_synonyms")
def synonyms_stub() -> dict[str, list[str]]:
    return {"경찰": ["police", "banana"], "대통령": ["president"]}


def materialize(tmp_path, llm: LLMResource, env: dict | None = None, config: dict | None = None, assets=None, instance=None):
    assets = assets or [documents_stub, synthetic_qd_pairs]
    return dg.materialize(
        assets,
        instance=instance,
        resources={
            **io_managers(str(tmp_path / "dataset")),
            "llm": llm,
            "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT), env=env or {}),
        },
        run_config={"ops": {"synthetic_qd_pairs": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a failed step"
    return str(failures[0].event_specific_data.error)


def good_question(prompt: str, i: int) -> str:
    return f" {last_title(prompt).replace('_', ' ')}에 대해 {['무엇', '언제', '누가'][i % 3]} 알려져 있나?"


def artifact(tmp_path) -> Path:
    return tmp_path / "dataset" / "llm_generated" / "synthetic_qd_pairs.pkl"


def test_asset_with_openai_backend_and_fault_paths(tmp_path):
    # 1. a server that answers questions: the asset materializes, every document gets queries
    with FakeOpenAI(good_question) as server:
        result = materialize(tmp_path, LLMResource(backend="openai", base_url=server.url))
        assert result.success
        pairs = result.output_for_node("synthetic_qd_pairs")
        assert len(server.requests) == 5 and all(r["n"] == 3 and r["stop"] == ["\n"] for r in server.requests)
    assert {p["positive_id"] for p in pairs} == {d["id"] for d in five_documents()}
    assert all(p["generator"] == "openai:fake-gemma" and p["source"] == "llm:fewshot" for p in pairs)
    assert all(p["positive_id"] not in p["negative_ids"] and p["negative_ids"] for p in pairs)
    meta = result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata
    assert meta["documents_with_query"].value == 5
    assert meta["llm/prompts"].value == 5 and meta["llm/generated"].value == 15
    assert meta["llm/generated_items"].value == 5 and meta["llm/from_store"].value == 0
    assert meta["accepted"].value + sum(meta["dropped_per_reason"].value.values()) == 15
    saved = artifact(tmp_path).read_bytes()
    digest = hashlib.sha256(saved).hexdigest()

    # Each later case changes the sampling temperature: new LLM settings, so nothing comes from the store.
    # 2. junk for every document: fails with the reason counts; the earlier artifact is untouched
    with FakeOpenAI(lambda prompt, i: " lorem ipsum dolor sit amet") as server:
        result = materialize(tmp_path, LLMResource(backend="openai", base_url=server.url), config={"temperature": 0.5})
    message = failure_message(result)
    assert "no usable query" in message and "'not_korean': 15" in message
    assert hashlib.sha256(artifact(tmp_path).read_bytes()).hexdigest() == digest

    # 3. nothing listens on the port: unreachable, named as such
    result = materialize(
        tmp_path, LLMResource(backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1"), config={"temperature": 0.55}
    )
    message = failure_message(result)
    assert "BackendUnreachable" in message and "unreachable" in message

    # 4. a model folder that does not exist (checked before vLLM is imported)
    result = materialize(tmp_path, LLMResource(backend="vllm", model=str(tmp_path / "no-such-model")))
    assert "ModelNotFound" in failure_message(result) and "does not exist" in failure_message(result)

    # 5. an engine that does not start (a context longer than Gemma 3 allows): named, with the settings to change
    result = materialize(tmp_path, LLMResource(backend="vllm", max_model_len=10_000_000), config={"temperature": 0.6})
    message = failure_message(result)
    assert "engine did not start" in message and "max_model_len (10000000)" in message, message

    # 6. the worker dies after its first batch (SIGKILL-like exit without an error report): the two
    # prompts it finished are kept, so the next run asks only for the other three
    with FakeOpenAI(good_question) as server:
        result = materialize(
            tmp_path,
            LLMResource(backend="openai", base_url=server.url, batch_size=2),
            env={"SPARSE_ASSETS_WORKER_ABORT_AFTER_BATCHES": "1"},
            config={"temperature": 0.65},
        )
    message = failure_message(result)
    assert "LLM worker died" in message and "after 2 of 5 prompts" in message
    assert hashlib.sha256(artifact(tmp_path).read_bytes()).hexdigest() == digest
    with FakeOpenAI(good_question) as server:
        result = materialize(tmp_path, LLMResource(backend="openai", base_url=server.url), config={"temperature": 0.65})
        assert result.success and len(server.requests) == 3
    meta = result.asset_materializations_for_node("synthetic_qd_pairs")[0].metadata
    assert meta["llm/from_store"].value == 2 and meta["llm/generated_items"].value == 3


def store_entries(tmp_path) -> list[Path]:
    return sorted((tmp_path / "dataset" / "llm_generated" / "store").glob("*/*/*.json"))


def test_a_server_that_answers_fewer_choices_than_asked_is_asked_again():
    """llama.cpp's server answers one choice whatever `n` says: the backend asks again until it has n,
    adding up the usage. It drops stop strings from the text too, so it is not asked to stop at the
    question's "?" (the question then ends with its line, "?" included)."""
    sampling = SamplingSettings(n=3, max_tokens=40, stop=("\n",), stop_kept=("?",))
    with FakeOpenAI(lambda prompt, i: f" 질문 {i}?", max_choices=1) as server:
        backend = OpenAIBackend(server.url, "fake-gemma", concurrency=1)
        backend.start()
        [completion] = backend.complete([{"id": "d1", "prompt": "제목: 가\n문서: 나\n질문:"}], sampling)
    assert [r["n"] for r in server.requests] == [3, 2, 1]
    assert all(r["stop"] == ["\n"] and "include_stop_str_in_output" not in r for r in server.requests)
    assert len(completion["texts"]) == 3 and completion["finish_reasons"] == ["stop"] * 3
    assert completion["completion_tokens"] == 30


def test_a_vllm_server_is_asked_to_end_a_question_at_its_kept_question_mark():
    sampling = SamplingSettings(n=2, max_tokens=40, stop=("\n",), stop_kept=("?",))
    with FakeOpenAI(lambda prompt, i: f" 질문 {i}?", owned_by="vllm") as server:
        backend = OpenAIBackend(server.url, "fake-gemma")
        backend.start()
        backend.complete([{"id": "d1", "prompt": "제목: 가\n문서: 나\n질문:"}], sampling)
    [request] = server.requests
    assert request["stop"] == ["\n", "?"] and request["include_stop_str_in_output"] is True


def test_store_generates_only_what_changed(tmp_path):
    """Re-synthesis on a real Dagster instance: added documents are the only ones generated, removed
    ones drop out, a corrupt store entry is generated again with a warning, new settings regenerate all."""
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    docs = korquad_documents(6)
    asked: list[str] = []
    run_ids: list[str] = []

    def run(documents, config=None):
        asked.clear()
        with FakeOpenAI(good_question) as server:
            result = materialize(
                tmp_path,
                LLMResource(backend="openai", base_url=server.url),
                config=config,
                assets=[documents_asset(documents), synthetic_qd_pairs],
                instance=instance,
            )
            asked.extend(last_title(r["prompt"]) for r in server.requests)
        assert result.success
        run_ids.append(result.run_id)
        event = instance.get_latest_materialization_event(dg.AssetKey("synthetic_qd_pairs"))
        meta = event.asset_materialization.metadata
        return result.output_for_node("synthetic_qd_pairs"), meta["llm/from_store"].value, meta["llm/generated_items"].value

    title = {d["id"]: d["title"].replace("_", " ") for d in docs}
    pairs, reused, generated = run(docs[:5])
    assert (reused, generated, len(store_entries(tmp_path))) == (0, 5, 5)
    pairs, reused, generated = run(docs)  # one document added
    assert (reused, generated) == (5, 1) and asked == [title[docs[5]["id"]]]
    assert {p["positive_id"] for p in pairs} == set(title)
    pairs, reused, generated = run(docs[1:])  # one removed: it drops out, nothing is generated
    assert (reused, generated, asked) == (5, 0, []) and docs[0]["id"] not in {p["positive_id"] for p in pairs}

    victim = next(e for e in store_entries(tmp_path) if json.loads(e.read_text())["value"]["texts"][0].find(title[docs[3]["id"]]) >= 0)
    victim.write_text(victim.read_text().replace("알려져", "알려저"))  # edited behind the store's back
    pairs, reused, generated = run(docs[1:])
    assert (reused, generated, asked) == (4, 1, [title[docs[3]["id"]]])
    warnings = [e for e in instance.all_logs(run_ids[-1]) if e.level >= logging.WARNING]
    assert any("LLM store entry unusable" in e.user_message and victim.name in e.user_message for e in warnings)
    assert "알려저" not in victim.read_text()  # regenerated and kept again

    pairs, reused, generated = run(docs[1:], config={"queries_per_document": 2})  # new LLM settings
    assert (reused, generated) == (0, 5) and len(asked) == 5


def test_missing_llm_environment_is_named(tmp_path):
    result = materialize(
        tmp_path, LLMResource(backend="openai", base_url="http://127.0.0.1:9/v1", python=str(tmp_path / "nope" / "python"))
    )
    assert "make llm-env" in failure_message(result)


def test_enhanced_synonyms_with_openai_backend(tmp_path):
    def answer(prompt: str, i: int) -> str:
        if prompt.rstrip().endswith("같은 뜻:"):
            return " 아니오" if "banana" in prompt.rsplit("영어:", 1)[1] else " 예"
        return " cop, officer" if prompt.rstrip().endswith("경찰\n영어 동의어:") else " "

    with FakeOpenAI(answer) as server:
        result = dg.materialize(
            [documents_stub, synonyms_stub, enhanced_synonyms],
            resources={
                **io_managers(str(tmp_path / "dataset")),
                "llm": LLMResource(backend="openai", base_url=server.url),
                "llm_worker_client": dg.PipesSubprocessClient(cwd=str(PROJECT_ROOT)),
            },
            run_config={"ops": {"enhanced_synonyms": {"config": {"expand_terms": 50, "enforce_verdicts": True, "accept_additions": True}}}},
        )
    value = result.output_for_node("enhanced_synonyms")
    assert value["synonyms"]["대통령"] == ["president"]
    assert value["synonyms"]["경찰"][0] == "police" and "banana" not in value["synonyms"]["경찰"]
    verdicts = {(v["korean"], v["english"]): v["verdict"] for v in value["verdicts"]}
    assert verdicts[("경찰", "banana")] == "reject" and verdicts[("경찰", "police")] == "keep"
    meta = result.asset_materializations_for_node("enhanced_synonyms")[0].metadata
    assert meta["kept"].value == 2 and meta["rejected"].value == 1 and meta["added"].value >= 1
    saved = json.loads((tmp_path / "dataset" / "llm_generated" / "enhanced_synonyms.json").read_text())
    assert saved["verdicts"] == value["verdicts"]


def test_base_model_verdicts_flag_without_changing_the_dictionary():
    from sparse_assets.llm.settings import engine_settings
    from sparse_assets.llm.synonyms import SynonymSettings, merge, trusted_by_default

    assert not trusted_by_default(engine_settings(machine="x86_64", accelerator="cpu"))
    assert trusted_by_default(engine_settings(machine="x86_64", accelerator="cuda"))
    results = {
        "judge": [{"id": "judge#경제#economy", "texts": [" 아니오"]}, {"id": "judge#경제#economic", "texts": [" 예"]}],
        "expand": [{"id": "expand#김영삼", "texts": [" kim jong-il, president"]}],
    }
    value, counts = merge(
        {"경제": ["economy", "economic"]}, results, SynonymSettings(enforce_verdicts=False, accept_additions=False), "gemma"
    )
    assert value["synonyms"] == {"경제": ["economy", "economic"]}
    assert (counts["flagged"], counts["kept"], counts["proposed"], counts["added"]) == (1, 1, 2, 0)
    assert {v["verdict"] for v in value["verdicts"]} == {"flagged", "keep", "proposed"}


@pytest.mark.processes
def test_cancelling_the_run_ends_the_worker(tmp_path):
    """SIGINT to the orchestrating process (what cancelling a run sends) ends the worker."""
    import signal
    import threading
    import time

    import psutil

    release = threading.Event()

    def slow(prompt: str, i: int) -> str:
        release.wait(60)
        return " 끝나지 않는 질문은 무엇인가?"

    with FakeOpenAI(slow) as server:
        process, log = start_llm_materialization(tmp_path, f"LLMResource(backend='openai', base_url={server.url!r})")
        try:
            deadline = time.time() + 90
            while not server.requests and time.time() < deadline and process.poll() is None:
                time.sleep(0.2)
            assert server.requests, f"the worker never reached the server:\n{log.read_text()[-3000:]}"
            workers = [
                p for p in psutil.Process(process.pid).children(recursive=True) if "sparse_assets.llm.worker" in " ".join(p.cmdline())
            ]
            assert len(workers) == 1
            process.send_signal(signal.SIGINT)
            workers[0].wait(timeout=30)  # raises TimeoutExpired if the worker outlives the cancel
            assert not workers[0].is_running()
            process.wait(timeout=60)
        finally:
            release.set()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
