#!/usr/bin/env bash
# The main job of the README: installs the software Vulkan driver if this machine has no Vulkan
# driver, builds, and trains the default quick experiment; prints where its CSV is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-vulkan.sh
# Build with cargo's progress shown (the first build takes minutes), then run quietly.
cargo build --release
cargo run --quiet --release -- train experiments/quick.toml "$@"
