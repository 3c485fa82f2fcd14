"""Instance upkeep before a run: mark failed the runs whose process is gone, and free the pool slots
that finished runs still hold.

A run whose process was killed (`kill -9`, out of memory, a closed terminal) never reports its end:
it stays "Started" in the UI for ever. A step process that dies without reporting (killed for
memory, a crashed LLM engine) can leave its `gpu` pool slot claimed after its run has ended; every
later run's LLM and training steps then wait for that slot without end ("Step blocked by limit for
pool gpu"). `make run` calls this first. The instance of `make run` / `make ui` (DAGSTER_HOME=
dagster_home) is local to this machine, so a run's process id is looked up here."""

from __future__ import annotations

import dagster as dg
import psutil

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _process_alive(pid: int, started_at: float) -> bool:
    """Is the process `pid` running, and is it the one that started at `started_at` (not a later one
    that reuses the number)?"""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= started_at + 1.0
    except psutil.NoSuchProcess:
        return False


def fail_runs_whose_process_ended(instance: dg.DagsterInstance) -> list[str]:
    """Run ids of the runs in progress whose run process (the pid of their RUN_START event) is gone,
    after reporting each of them failed. A run that has not started its process yet is left alone."""
    ended = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        if not starts or not starts[0].dagster_event.pid:
            continue
        pid = starts[0].dagster_event.pid
        if not _process_alive(pid, starts[0].timestamp):
            instance.report_run_failed(run, message=f"the run's process (pid {pid}) ended without reporting its end: killed or crashed")
            ended.append(run.run_id)
    return ended


def free_stale_pool_slots(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(pool, run id) for every run that had claimed or queued for a pool slot and is finished (or
    gone from the run storage), after freeing its slots. Runs still in progress keep theirs."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        holders = {slot.run_id for slot in info.claimed_slots} | {step.run_id for step in info.pending_steps}
        for run_id in sorted(holders):
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                freed.append((pool, run_id))
    return freed


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_runs_whose_process_ended(instance):
            print(f"marked run {run_id} failed: its process ended without reporting (killed or crashed)")
        for pool, run_id in free_stale_pool_slots(instance):
            print(f"freed the {pool!r} pool slot held by run {run_id}, which has ended")


if __name__ == "__main__":
    main()
