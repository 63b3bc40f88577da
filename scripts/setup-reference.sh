#!/usr/bin/env bash
# The Python reference stack the tests and benchmarks compare nave-lab against,
# in its own environment .venv-ref (the Rust build's .venv stays CPU-only and
# small): PyTorch 2.11.0 (Python's `import torch` needs the full wheel with its
# CUDA libraries, ~4.7 GB), torchvision, timm, TensorBoard's reader and
# scikit-learn. Idempotent: a second run does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-ref"
stamp="$venv/.nave-lab-reference-v1"
python=${PYTHON:-python3}
[ -f "$stamp" ] && exit 0
start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "nave-lab setup: installing the Python reference stack into $venv (PyTorch with CUDA libraries, ~5 GB)"
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
  torch==2.11.0 torchvision==0.26.0 timm==1.0.31 tensorboard==2.21.0 scikit-learn==1.9.1 numpy safetensors
"$venv/bin/python" -c "import torch, torchvision, timm, tensorboard, sklearn; print('reference stack: torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
touch "$stamp"
echo "nave-lab setup: reference stack ready in $(( $(date +%s) - start )) s ($(du -sh "$venv" | cut -f1))"
