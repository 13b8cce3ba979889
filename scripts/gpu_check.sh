#!/usr/bin/env bash
# Device checks on a machine with a GPU, in under 5 minutes (see scripts/gpu_check.py):
#   1. cross-device decoding: encode on the GPU / decode on the CPU and vice versa, identical images (.tcz v2);
#   2. one batched shard of the ImageNet recipe's task-aware method (batch 16 and 1) and maps per second.
# Usage: scripts/gpu_check.sh [gpu_check.py options, e.g. --limit 3 --q 0.2 1.0]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python}
command -v "$PY" >/dev/null || PY=python3
nvidia-smi -L 2>/dev/null || echo "nvidia-smi not found"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
# Leave time for a rerun within a 5-minute slot: the checks stop after 280 s.
timeout 280 "$PY" scripts/gpu_check.py "$@"
