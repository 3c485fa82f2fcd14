"""Everything Dagster: the asset definitions per group (`assets/`), their checks, jobs, schedules and
sensors (`automation`), resources, IO managers, the deployment (executor and LLM launcher) and the
run's console output. The domain library beside this package never imports Dagster."""
