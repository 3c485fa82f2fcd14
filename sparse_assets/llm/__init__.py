"""The LLM step: engine settings, prompts, parsing, filters, backends and the Pipes worker.

Plain Python. Modules here import neither dagster nor vLLM at import time, so the main environment
(filters, settings) and the LLM environment (worker, backends) can both import them; the heavy
imports (vllm, transformers, kiwipiepy via ``filters``) happen inside the functions that need them.
"""
