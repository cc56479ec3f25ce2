#!/usr/bin/env bash
# The device checks, as one script for a lent GPU machine (see README "Benchmarks"), under 8
# minutes on one GPU: each check runs under its own timeout (150 + 30 + 220 + 60 s, the 30 for
# the smoke's synthetic data) and prints exactly one line, PASS or FAIL with its figure:
#
#   train.py  bench/train.py on CUDA: ViT-B/16 + GPT-2 at batch 256 against open_clip's own
#             ViT-B-16 (samples/s, MFU, per-FLOP ratio, peak memory, SIGReg's share of the step).
#             PASS: it ran; the line says which of the issue's goals (MFU >= 45%, >= 1.2x
#             open_clip per FLOP, SIGReg <= 3%) the figures meet.
#   smoke     levl-train run vit_b16_datacomp_l --smoke on one GPU: bf16, DeepSpeed ZeRO-2 and
#             dist.compile=true, on the micro synthetic world. PASS: it exits 0, its losses are
#             finite and it wrote model.safetensors.
#   syncs     bench/host_syncs.py: synchronising CUDA calls in one levl step. PASS: none.
#
# Each check's full output goes to $LOGS (default: a temp dir, named at the end), for
# bench/RESULTS.md; under the device tool (which sets $OUT) the logs, the smoke's metrics and
# the versions are copied to $OUT, which comes back (the 4 GB of checkpoints do not).
#
# Run from the repository root: bash bench/gpu_check.sh. With the venv built it uses it. On a
# lent GPU machine there is none: the machine's python3 holds torch, transformers and most of
# what levl imports, and the rest travels as wheels in .whl/ (made here by bench/gpu_kit.sh,
# carried by the device tool: run(command="bash bench/gpu_check.sh", carry=[".whl"],
# timeout_s=540)), installed into /tmp/site first.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_DEBUG=WARN  # a check cut short by its timeout keeps its output
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    [ -d .whl ] || { echo "FAIL setup: no .venv and no .whl/ (run bash bench/gpu_kit.sh here)"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "FAIL setup: installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD/packages/data/src:$PWD/packages/model/src:$PWD/packages/train/src
    PY=python3
fi
LOGS=${LOGS:-$(mktemp -d /tmp/levl-gpu-check.XXXXXX)}
mkdir -p "$LOGS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - >"$LOGS/versions.txt" 2>&1 <<'EOF'
import importlib.metadata as m, platform, torch
names = ("torch", "transformers", "deepspeed", "timm", "open_clip_torch", "triton")
found = {d.metadata["Name"] for d in m.distributions()}
print(f"python {platform.python_version()}, CUDA {torch.version.cuda}, "
      + ", ".join(f"{n} {m.version(n)}" for n in names if n in found))
EOF
cat "$LOGS/versions.txt"

failed() {  # failed STATUS WHAT LOG: print the check's FAIL line when STATUS is not 0
    [ "$1" -eq 0 ] && return 1
    local why="exit $1"
    [ "$1" -eq 124 ] && why="timed out"
    echo "FAIL $2: $why (see $3)"
}

train_check() {
    timeout 150 "$PY" bench/train.py --repeats 5 >"$LOGS/train.log" 2>&1
    failed $? "train.py" "$LOGS/train.log" && return
    "$PY" - "$LOGS/train.log" <<'EOF'
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("summary:")]
if not lines:
    sys.exit(print("FAIL train.py: no summary line (see the log)"))
line = lines[-1].strip()
fig = dict(re.findall(r"(\w+)=([\d.]+)", line))
goals = {"mfu>=45%": float(fig.get("mfu", 0)) >= 45,
         "per_flop>=1.2x": float(fig.get("per_flop_vs_open_clip", 0)) >= 1.2,
         "sigreg<=3%": float(fig.get("sigreg_share", 100)) <= 3}
met = ", ".join(f"{k} {'met' if ok else 'missed'}" for k, ok in goals.items())
print(f"PASS train.py: {line.removeprefix('summary: ')} (goals: {met})")
EOF
}

smoke_check() {
    local data=$LOGS/synth run=$LOGS/smoke-run
    timeout 30 "$PY" -m levl_data.cli synth --out "$data" --size micro >"$LOGS/synth.log" 2>&1
    failed $? "smoke: levl-data synth" "$LOGS/synth.log" && return
    local start=$SECONDS
    timeout 220 "$PY" -m levl_train.cli run vit_b16_datacomp_l --smoke \
        --data "$data/train/manifest.json" --out "$run" --set device=cuda \
        --set engine=deepspeed --set dist.zero_stage=2 --set precision=bf16 \
        --set dist.compile=true >"$LOGS/smoke.log" 2>&1
    failed $? "smoke: levl-train run" "$LOGS/smoke.log" && return
    "$PY" - "$run" $((SECONDS - start)) <<'EOF'
import json, math, pathlib, sys
run, wall = pathlib.Path(sys.argv[1]), sys.argv[2]
records = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if "loss" in r]
if not records:
    sys.exit(print(f"FAIL smoke: no loss logged in {run}/metrics.jsonl"))
last, weights = records[-1], list(run.glob("checkpoints/*/model.safetensors"))
finite = all(math.isfinite(r["loss"]) for r in records)
ok = finite and bool(weights)
print(f"{'PASS' if ok else 'FAIL'} smoke: vit_b16_datacomp_l bf16 ZeRO-2 compile, "
      f"{last['step']} steps in {wall} s incl. compile, loss {last['loss']:.4f}, "
      f"{last['samples_per_s']:.1f} samples/s at the last step, "
      f"{'finite' if finite else 'NON-FINITE'} losses, "
      f"{'checkpoint written' if weights else 'NO checkpoint'}")
EOF
}

syncs_check() {
    timeout 60 "$PY" bench/host_syncs.py --size base --batch 64 --steps 10 --repeats 2 \
        >"$LOGS/host_syncs.log" 2>&1
    failed $? "syncs: host_syncs.py" "$LOGS/host_syncs.log" && return
    local count
    count=$(sed -n 's/^synchronising calls in one step: //p' "$LOGS/host_syncs.log")
    if [ "$count" = "0" ]; then
        echo "PASS syncs: 0 synchronising calls in one levl step (ViT-B/16, batch 64)"
    else
        echo "FAIL syncs: ${count:-?} synchronising calls in one levl step (see $LOGS/host_syncs.log)"
    fi
}

train_check
smoke_check
syncs_check
echo "logs: $LOGS"
if [ -n "${OUT:-}" ]; then
    cp "$LOGS"/*.log "$LOGS/versions.txt" "$OUT"/ 2>/dev/null
    cp "$LOGS/smoke-run/metrics.jsonl" "$OUT/smoke-metrics.jsonl" 2>/dev/null
    echo "copied to \$OUT: $(ls "$OUT" | tr '\n' ' ')"
fi
