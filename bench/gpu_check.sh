#!/usr/bin/env bash
# The device checks, as one script for a lent GPU machine (see README "Benchmarks"): the step's
# host synchronisations, then levl's step against open_clip's with MFU. Each figure names its
# device. Run from the repository root with the venv built: bash bench/gpu_check.sh
set -euo pipefail
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
timeout 240 "$PY" bench/host_syncs.py --size base --batch 128 --steps 20
timeout 300 "$PY" bench/train.py --repeats 5
