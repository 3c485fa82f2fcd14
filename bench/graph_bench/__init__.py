"""The benchmarks' shared parts, one module per concern: where the dev sets are, and the parts of
the project benchmark (bench/run_bench.py)."""
