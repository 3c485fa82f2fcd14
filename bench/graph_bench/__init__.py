"""The parts of the project benchmark (bench/run_bench.py), one module per concern."""
