"""The readable console of `make run` (sparse_assets/defs/run_output.py) on a real Dagster run."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from sparse_assets.defs.run_output import RUN_OUTPUT_CONFIG, readable_console

pytestmark = pytest.mark.processes  # the multiprocess executor: a process per step

RUN_CONFIG = yaml.safe_load(RUN_OUTPUT_CONFIG.read_text())


@dg.asset
def passages(context) -> dg.Output:
    for done in range(1, 9):
        context.log.info(f"dense e5: {done}/8 documents")
    context.log.info("a detail for the event log only")
    context.log.warning("the corpus has no human questions")
    return dg.Output([1, 2, 3], metadata={"chars_max": 40, "documents": 3, "validation_mrr@10": 0.91234})


@dg.asset_check(asset=passages)
def enough_passages() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="3 passages; training needs 10")


@dg.asset
def broken(passages: list) -> None:
    raise ValueError("the teacher scores lack 2 training pairs: re-materialize teacher_scores")


def both_job() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[passages, broken],
        asset_checks=[enough_passages],
        jobs=[dg.define_asset_job("both", selection="*")],
        loggers={"readable_console": readable_console({enough_passages.node_def.name})},
    )
    return defs.resolve_job_def("both")


def test_a_line_per_step_with_its_figures_progress_in_quarters_warnings_and_the_failure(capfd):
    """As `make run` runs it: the multiprocess executor, a step per process, the run config file."""
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(both_job), instance=instance, run_config=RUN_CONFIG)
    assert not result.success
    lines = [line.split(" ", 1)[1] for line in capfd.readouterr().out.splitlines()]  # without the clock

    assert "  > passages" in lines and "  > broken" in lines
    assert [line for line in lines if "dense e5" in line] == [f"    passages: dense e5: {n}/8 documents" for n in (2, 4, 6)]
    assert "  ! passages: the corpus has no human questions" in lines
    done = next(line for line in lines if line.startswith("  ok passages ("))
    assert done.endswith("s): documents 3, validation_mrr@10 0.9123")  # the figures that matter, not chars_max
    assert "  FAILED broken: ValueError: the teacher scores lack 2 training pairs: re-materialize teacher_scores" in lines
    assert not any("a detail" in line or "STEP_OUTPUT" in line or "LOADED_INPUT" in line for line in lines)
    assert "  ! check enough_passages on passages failed: 3 passages; training needs 10" in lines
    assert not any("passages_enough_passages" in line for line in lines)  # a check step has no lines of its own
    assert len(lines) == 9
