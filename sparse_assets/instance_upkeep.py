"""Instance upkeep before a run: free the pool slots that finished runs still hold.

A step process that dies without reporting (killed for memory, a crashed LLM engine) can leave its
`gpu` pool slot claimed after its run has ended; every later run's LLM and training steps then wait
for that slot without end ("Step blocked by limit for pool gpu"). `make run` calls this first."""

from __future__ import annotations

import dagster as dg


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
        for pool, run_id in free_stale_pool_slots(instance):
            print(f"freed the {pool!r} pool slot held by run {run_id}, which has ended")


if __name__ == "__main__":
    main()
