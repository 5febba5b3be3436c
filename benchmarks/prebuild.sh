#!/usr/bin/env bash
# benchmarks/prebuild.sh DIR: build `fptt` and the GPU test executables (release, stripped) into
# DIR, for `FPTT_PREBUILT=DIR benchmarks/gpu.sh OUTDIR` on a GPU machine without a Rust toolchain
# (same CPU architecture and a glibc at least as new). The test executables read their fixtures
# from this checkout's absolute path: run them from a checkout at the same path, or link it there.
set -euo pipefail
dir=${1:?usage: benchmarks/prebuild.sh DIR}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
cargo build --release --quiet
cp target/release/fptt "$dir/fptt"
cargo test --release --no-run --message-format=json \
    --test gpu_vs_reference --test gpu_fixtures --test gpu_checkpoint --test gpu_profile \
    --test gpu_matmul --test gpu_split --test gpu_reductions --test gpu_replicas \
    --test gpu_conv --test gpu_conv_neuron --test gpu_conv_engine 2>/dev/null |
    python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"].startswith("gpu_"):
        shutil.copy(m["executable"], os.path.join(sys.argv[1], m["target"]["name"]))
' "$dir"
strip "$dir"/*
ls -la "$dir"
