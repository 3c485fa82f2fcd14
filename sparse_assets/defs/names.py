"""The graph's group and pool names, defined once."""

BASE_GROUP = "base_model"
LLM_GROUP = "llm_generated"
ENHANCED_GROUP = "enhanced_model"
# The accelerator's concurrency pool (limit 1 in dagster_home/dagster.yaml): the LLM, training and dense
# encoding steps take turns on it.
GPU_POOL = "gpu"
