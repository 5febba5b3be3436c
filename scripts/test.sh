#!/usr/bin/env bash
# The test command of the README: installs the software Vulkan driver if this machine lacks one
# (and has no GPU driver), then builds and runs every test, GPU tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-vulkan.sh
cargo run --quiet -- devices
cargo test "$@"
