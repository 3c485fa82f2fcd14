"""Jobs, the weekly re-synthesis schedule and the new-documents sensor."""

import dagster as dg

from sparse_assets.defs.names import BASE_GROUP, ENHANCED_GROUP, LLM_GROUP

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]

all_assets_job = dg.define_asset_job(
    "all_assets_job", selection=dg.AssetSelection.all(), description="Materialize every asset (what `make run` runs)."
)
base_job = dg.define_asset_job(
    "base_job",
    selection=dg.AssetSelection.groups(BASE_GROUP),
    description="The base_model group: corpus, IDF, synonyms, pairs, v1 model.",
)
resynthesis_job = dg.define_asset_job(
    "resynthesis_job",
    selection=dg.AssetSelection.groups(LLM_GROUP, ENHANCED_GROUP),
    description="Re-synthesise LLM queries and synonyms, retrain v2 and re-run the comparison; upstream assets are reused.",
)


def _in_flight_run(instance: dg.DagsterInstance, job_name: str) -> str | None:
    runs = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1)
    return runs[0].dagster_run.run_id if runs else None


@dg.schedule(job=resynthesis_job, cron_schedule="0 3 * * 1", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)
def weekly_resynthesis(context: dg.ScheduleEvaluationContext):
    """Every Monday 03:00 UTC: re-synthesis (off until switched on in the UI); skipped while one runs."""
    busy = _in_flight_run(context.instance, resynthesis_job.name)
    if busy:
        return dg.SkipReason(f"resynthesis_job run {busy} is still in progress; not starting another")
    return dg.RunRequest()


@dg.sensor(job=resynthesis_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def new_documents_sensor(context: dg.SensorEvaluationContext):
    """Requests re-synthesis when `documents` is materialized with a new data version (content hash)."""
    record = context.instance.get_latest_materialization_event(dg.AssetKey("documents"))
    version = record and record.asset_materialization and record.asset_materialization.tags.get("dagster/data_version")
    if not version:
        return dg.SkipReason("`documents` has not been materialized with a data version yet")
    if version == context.cursor:
        return dg.SkipReason(f"`documents` is unchanged (data version {version[:12]})")
    busy = _in_flight_run(context.instance, resynthesis_job.name)
    if busy:
        return dg.SkipReason(f"new documents ({version[:12]}), but resynthesis_job run {busy} is in progress; will retry")
    context.update_cursor(version)
    return dg.RunRequest(run_key=f"documents-{version}")
