#!/usr/bin/env bash
# benchmarks/gpu.sh OUTDIR: everything a GPU machine should report, in one go (about 3 minutes
# on an NVIDIA H200 once built):
#
#   1. build (release) and run the GPU correctness tests on that GPU: every kernel against the f64
#      CPU reference, the golden fixtures, checkpoints, profiling;
#   2. `fptt bench` over the grid (hidden 64…4096, batch 1…1024, one layer; and two layers), with
#      the adapter's copy and matrix-product ceilings and per-kernel times;
#   3. where python3 has torch: the PyTorch peer on the same GPU: the weight check after the same
#      FPTT steps, its time per step, and a side-by-side table.
#
# Writes to OUTDIR: gpu.log (everything printed), tests.log, bench-gpu.csv, bench-gpu-kernels.csv,
# bench-gpu-2layers.csv, bench-pytorch-gpu.csv, side-by-side.csv. A failed test does not stop the
# benchmarks (their figures are still worth having), but the script then exits with 1.
#
# FPTT_PREBUILT=DIR uses DIR/fptt and the test executables DIR/gpu_* instead of cargo (for a GPU
# machine without a Rust toolchain; build them elsewhere with benchmarks/prebuild.sh DIR).
set -euo pipefail
out=${1:?usage: benchmarks/gpu.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/gpu.log") 2>&1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Some GPU containers ship NVIDIA's Vulkan driver outside the loader's search path.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ] && ! compgen -G '/usr/share/vulkan/icd.d/nvidia*.json' >/dev/null \
    && ! compgen -G '/etc/vulkan/icd.d/nvidia*.json' >/dev/null; then
    export VK_DRIVER_FILES=$nv_icd
fi

if [ -n "${FPTT_PREBUILT:-}" ]; then
    fptt="$FPTT_PREBUILT/fptt"
    tests=("$FPTT_PREBUILT"/gpu_*)
else
    cargo build --release --quiet
    fptt=target/release/fptt
    tests=()
fi
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "adapters"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
"$fptt" devices

step "GPU correctness tests"
tests_ok=1
if [ ${#tests[@]} -gt 0 ]; then
    for t in "${tests[@]}"; do
        timeout 180 "$t" >>"$out/tests.log" 2>&1 || tests_ok=0
    done
else
    cargo test --release --test gpu_vs_reference --test gpu_fixtures --test gpu_checkpoint --test gpu_profile \
        >"$out/tests.log" 2>&1 || tests_ok=0
fi
grep -E '^test result:|FAILED|panicked' "$out/tests.log" || true
[ $tests_ok -eq 1 ] || echo "GPU TESTS FAILED (see tests.log); the benchmarks still run"

# Each stage has a time limit so that a slow one cannot starve the rest; the CSVs are written
# row by row, so a stage stopped at its limit keeps what it measured.
limit() { local secs=$1; shift; timeout "$secs" "$@" || echo "STOPPED OR FAILED (limit ${secs} s): $*"; }
has_torch=0
python3 -c 'import torch, safetensors, numpy; assert torch.cuda.is_available()' 2>/dev/null && has_torch=1
if [ $has_torch -eq 1 ]; then
    peer=$(mktemp -d)
    step "PyTorch peer: same weights after the same FPTT steps"
    limit 60 "$fptt" bench peer-check --device "${FPTT_DEVICE:-gpu}" --hidden 256 --batch 512 --steps 5 --out "$peer"
    limit 60 python3 benchmarks/pytorch_reference.py check "$peer" --device cuda || echo "PEER CHECK FAILED"
else
    echo "python3 has no CUDA-enabled torch: the PyTorch peer is skipped (see benchmarks/README.md)"
fi

step "benchmark grid, one layer"
limit 200 "$fptt" bench --device "${FPTT_DEVICE:-gpu}" --hidden 64,256,1024,2048,4096 --batch 1,64,512,1024 \
    --layers 1 --steps 16 --reps 3 --copy-mib 1024 --matmul 4096 --profile --out "$out/bench-gpu.csv"

if [ $has_torch -eq 1 ]; then
    step "PyTorch peer: time per step"
    limit 90 python3 benchmarks/pytorch_reference.py bench --device cuda --hidden 256,1024,2048,4096 \
        --batch 1,64,512,1024 --steps 16 --reps 3 --out "$out/bench-pytorch-gpu.csv"
    python3 benchmarks/side_by_side.py "$out/bench-gpu.csv" "$out/bench-pytorch-gpu.csv" "$out/side-by-side.csv"
fi

step "benchmark grid, two layers"
limit 45 "$fptt" bench --device "${FPTT_DEVICE:-gpu}" --hidden 256,1024,2048 --batch 64,512 --layers 2 --steps 16 \
    --reps 3 --copy-mib 1024 --matmul 4096 --out "$out/bench-gpu-2layers.csv"

step "done: $out"
[ $tests_ok -eq 1 ]
