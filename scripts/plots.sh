#!/usr/bin/env bash
# The README's figures, regenerated from the committed results with `fptt plot` (issue #13):
# learning curves of the rule comparisons (results/compare/), the old kernels' H200 kernel profile
# and speed against the PyTorch peer (results/bench-h200*.csv, results/bench-pytorch-h200.csv),
# GPU memory against T (results/memory-lavapipe*.csv), and the reset study (results/reset-study/).
# Writes results/figures/*.svg.
#
#   scripts/plots.sh [OUTDIR]        (FPTT=path/to/fptt to use a binary already built)
#
# Reads CSV and TOML only: no GPU or Vulkan driver needed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/figures}
if [ -z "${FPTT:-}" ]; then
    cargo build --quiet --release
    FPTT=target/release/fptt
fi
mkdir -p "$out"
plot() { "$FPTT" plot "$@"; }

# Learning curves (README "Learning rules compared").
c=results/compare
plot "$c"/adding-T200/ltc-fptt-chunk20 "$c"/adding-T200/ltc-bptt results/adding-200-fptt \
    --title "Adding, T = 200, the authors' LTC network (64 neurons)" --out "$out/compare-adding-T200-ltc.svg"
for t in 200 500 1000; do
    plot "$c"/adding-T$t/lif-fptt "$c"/adding-T$t/lif-fptt-chunk* "$c"/adding-T$t/lif-bptt "$c"/adding-T$t/lif-eprop-step \
        --title "Adding, T = $t, one LIF network (64 neurons), four rules" --out "$out/compare-adding-T$t-lif.svg"
done
plot "$c"/smnist/alif-fptt "$c"/smnist/alif-bptt "$c"/smnist/alif-eprop-step-nofilter \
    "$c"/smnist/alif-fptt-8000 "$c"/smnist/alif-bptt-8000 \
    --title "S-MNIST (8000-digit subset), one ALIF network (64 neurons)" --out "$out/compare-smnist.svg"

# Speed: the old kernels (22 dispatches per step) on an H200, before the rewrite.
plot kernels results/bench-h200-kernels.csv \
    --title "Old kernels (22 dispatches), GPU time per kernel" --out "$out/h200-old-kernels-profile.svg"
plot bench results/bench-h200.csv results/bench-pytorch-h200.csv \
    --title "Old kernels (22 dispatches): one FPTT step (solid) against the PyTorch peer (dashed)" \
    --out "$out/h200-old-kernels-speed.svg"

# Memory against T per rule.
plot memory results/memory-lavapipe.csv --out "$out/memory-lavapipe-lif.svg"
plot memory results/memory-lavapipe-ltc.csv --out "$out/memory-lavapipe-ltc.svg"

# The reset study (README "What the epoch-end reset does"): test of W dotted, of W̄ dashed.
r=results/reset-study
plot "$r"/T49-base "$r"/T49-uniform-membrane "$r"/T49-eval-batch-stats "$r"/T49-no-bn \
    --title "Reset study, S-MNIST at T = 49 (64 neurons): base, uniform membranes, batch-statistics evaluation, no BN" \
    --out "$out/reset-study-T49.svg"
plot "$r"/smnist-T784 "$r"/smnist-T784-uniform-membrane \
    --title "Reset study, S-MNIST at T = 784 (64 neurons): zero and uniform initial membranes" \
    --out "$out/reset-study-T784.svg"
plot "$r"/adding-T20 --title "Reset study, adding at T = 20 (64 neurons): test of W and W̄" \
    --out "$out/reset-study-adding.svg"
