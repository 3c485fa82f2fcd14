#!/usr/bin/env bash
# GPU check (device machine): install the carried wheels, then train on CUDA with bf16.
# Prepare first on the CPU machine: nice .venv/bin/python bench/gpu_prepare.py  (+ wheels, see the report)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu_carry/wheels/*.whl
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, transformers, sentence_transformers, datasets; print(torch.__version__, transformers.__version__, sentence_transformers.__version__, datasets.__version__)"
python3 bench/gpu_train.py "${1:-400}" "${2:-300}" 2>&1 | grep -v -i "warn\|LOAD REPORT\|UNEXPECTED\|^Key\|^---\|^bert" | tee "${OUT:-/tmp}/gpu_log.txt"
