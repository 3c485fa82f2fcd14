"""The weekly re-synthesis schedule and the new-documents sensor, against a real (temporary) instance."""

import dagster as dg
import pytest

from sparse_assets.defs.automation import new_documents_sensor, resynthesis_job, weekly_resynthesis
from sparse_assets.defs.definitions import defs


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def record_documents(instance, version: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("documents", tags={"dagster/data_version": version}))


def start_resynthesis_run(instance) -> str:
    run = instance.create_run_for_job(defs.resolve_job_def(resynthesis_job.name), status=dg.DagsterRunStatus.STARTED)
    return run.run_id


def test_schedule_is_off_by_default_and_skips_while_a_run_is_in_flight(instance):
    assert weekly_resynthesis.default_status == dg.DefaultScheduleStatus.STOPPED
    assert weekly_resynthesis.cron_schedule == "0 3 * * 1"
    assert isinstance(weekly_resynthesis(dg.build_schedule_context(instance=instance)), dg.RunRequest)
    busy = start_resynthesis_run(instance)
    skipped = weekly_resynthesis(dg.build_schedule_context(instance=instance))
    assert isinstance(skipped, dg.SkipReason) and busy in skipped.skip_message


def test_sensor_requests_resynthesis_only_for_a_new_documents_version(instance):
    context = dg.build_sensor_context(instance=instance)
    assert "has not been materialized" in new_documents_sensor(context).skip_message
    record_documents(instance, "a" * 64)
    request = new_documents_sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "documents-" + "a" * 64
    assert "unchanged" in new_documents_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor)).skip_message
    record_documents(instance, "b" * 64)
    busy = start_resynthesis_run(instance)
    waiting = new_documents_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    assert isinstance(waiting, dg.SkipReason) and busy in waiting.skip_message and "will retry" in waiting.skip_message
