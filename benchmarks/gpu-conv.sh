#!/usr/bin/env bash
# benchmarks/gpu-conv.sh OUTDIR: the convolutional LTC network on a GPU (issue #18), in at most
# 5 minutes once built (the stages' limits add up to 285 s):
#
#   1. the conv GPU tests on that GPU: the kernels against the f64 reference, the element-wise cell
#      step, split weight gradients, and whole training sequences (one-step FPTT, chunks, BPTT)
#      against reference::conv_network (60 s);
#   2. the authors' DVS Gesture network training at batch 16 on synthetic frames: time per frame
#      (one-step FPTT, one update per frame) and per kernel (`fptt bench network --profile`, 90 s;
#      the DvsGesture recordings are not needed);
#   3. its convolutions alone on every cell's shapes (`fptt bench conv --cells 1,2,3,4,5,6`, 60 s);
#   4. its GPU bytes at 20 frames, one-step FPTT against BPTT, measured on engines built for them
#      (`fptt bench memory --experiment … --steps 20`, 60 s; planned: 1.28 and 13.5 GiB).
#
# Writes to OUTDIR: gpu-conv.log (everything printed), tests.log, bench-dvs.csv,
# bench-dvs-kernels.csv, bench-conv-dvs.csv, memory-dvs.csv. A failed test does not stop the
# benchmarks, but the script then exits with 1. FPTT_PREBUILT=DIR as in benchmarks/gpu.sh (build
# with benchmarks/prebuild.sh DIR, which includes the conv tests).
set -euo pipefail
out=${1:?usage: benchmarks/gpu-conv.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/gpu-conv.log") 2>&1
source benchmarks/common.sh

conv_tests=(--test gpu_conv --test gpu_conv_neuron --test gpu_split --test gpu_conv_engine)
if [ -n "${FPTT_PREBUILT:-}" ]; then
    fptt="$FPTT_PREBUILT/fptt"
    tests=("$FPTT_PREBUILT"/gpu_conv "$FPTT_PREBUILT"/gpu_conv_neuron "$FPTT_PREBUILT"/gpu_split "$FPTT_PREBUILT"/gpu_conv_engine)
else
    cargo build --release --quiet
    cargo test --release --no-run --quiet "${conv_tests[@]}"
    fptt=target/release/fptt
    tests=()
fi
start=$SECONDS
dev=${FPTT_DEVICE:-gpu}

step "adapters"
if command -v nvidia-smi >/dev/null; then limit 5 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
limit 10 "$fptt" devices

step "conv GPU tests"
run_tests 60 "${conv_tests[@]}"
[ $tests_ok -eq 1 ] || echo "CONV GPU TESTS FAILED OR STOPPED (see tests.log); the benchmarks still run"

step "DVS Gesture network, batch 16: time per frame and per kernel"
limit 90 "$fptt" bench network --device "$dev" --experiment experiments/dvs-gesture.toml --batch 16 --reps 3 \
    --profile --out "$out/bench-dvs.csv"

step "DVS Gesture convolutions alone, every cell"
limit 60 "$fptt" bench conv --device "$dev" --cells 1,2,3,4,5,6 --batch 16 --out "$out/bench-conv-dvs.csv"

step "DVS Gesture GPU bytes at 20 frames: one-step FPTT against BPTT, measured"
limit 60 "$fptt" bench memory --device "$dev" --experiment experiments/dvs-gesture.toml --steps 20 \
    --out "$out/memory-dvs.csv"

step "done"
[ $tests_ok -eq 1 ]
