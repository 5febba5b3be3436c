#!/usr/bin/env bash
# The test command of the README: installs the software Vulkan driver if this machine lacks one
# (and has no GPU driver), then builds and runs every test, GPU tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-vulkan.sh
# Build with cargo's progress shown (the first build takes minutes), then list the adapters.
cargo build
cargo run --quiet -- devices
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test "$@" 2>&1 | tee "$log"
# The kernels again with the GPU tile shape (K-slices staged in workgroup memory, barriers between
# them), so the path a GPU takes is checked against the reference on this adapter too.
if [ $# -eq 0 ]; then
    FPTT_MATMUL_TILING=16x16x4x16 cargo test --test gpu_vs_reference --test gpu_split 2>&1 | tee -a "$log"
fi
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
