#!/usr/bin/env bash
# The reset study (README "What the epoch-end reset does"): trains the setups below with both
# weight sets evaluated at every epoch's end (test rows `current` = W, `running_mean` = W̄, with
# ‖W − W̄‖ and ‖λ‖), writing one run directory each under OUTDIR, then a summary and figures.
#
#   scripts/reset-study.sh OUTDIR [--only T784|T49|adding] [--epochs-T784 N]
#
# T784: the issue's setup, S-MNIST one pixel per step (T = 784) on the vendored 8000/963 digits,
#       64 neurons, batch norm, Adamax 3e-3, α 0.1, β 0.5, no auxiliary loss, zero initial state,
#       fixed order; and the same with uniform initial membranes for one epoch. About 13 minutes an
#       epoch on 2 CPU cores (lavapipe) when a run has them to itself.
# T49:  the same recipe at 16 pixels per step (T = 49), 5 epochs, varying one thing at a time:
#       the learning rate, α, β, batch norm, the reset policy, the initial membrane, and evaluation
#       with batch statistics.
#       A few minutes each on 2 cores.
# adding: the adding task at T = 20 (experiments/adding-quick.toml), reset at every evaluation
#       and never.
# A run directory that exists is resumed (so the script can be stopped and run again).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/reset-study.sh OUTDIR [--only T784|T49|adding] [--epochs-T784 N]}
shift
only=""
epochs_t784=4
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=$2; shift 2 ;;
        --epochs-T784) epochs_t784=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
source scripts/ensure-vulkan.sh
# FPTT_BIN: a binary to use instead of building one (e.g. a copy that later builds leave alone).
fptt=${FPTT_BIN:-target/release/fptt}
if [ -z "${FPTT_BIN:-}" ]; then
    cargo build --release --quiet
fi
mkdir -p "$out"

# One run: a fresh one, or the continuation of the one in its directory.
run() {
    local dir=$1; shift
    if [ -f "$out/$dir/config.toml" ]; then
        "$fptt" train --resume "$out/$dir" --progress log
    else
        "$fptt" train "$@" --out "$out/$dir" --progress log
    fi
}

smnist=(experiments/smnist.toml --set data.dir=data/mnist-subset --set 'model.hidden=[64]'
    --set train.aux=off --set data.initial_membrane=zero --set data.shuffle=false)

if [ -z "$only" ] || [ "$only" = T784 ]; then
    run smnist-T784 "${smnist[@]}" --set train.epochs="$epochs_t784"
    # The same with the image tasks' default initial membrane, U[0,1): one epoch.
    run smnist-T784-uniform-membrane "${smnist[@]}" --set data.initial_membrane=uniform --set train.epochs=1
fi
if [ -z "$only" ] || [ "$only" = T49 ]; then
    t49=("${smnist[@]}" --set data.pixels_per_step=16 --set train.epochs=5)
    run T49-base "${t49[@]}"
    run T49-lr1e-3 "${t49[@]}" --set train.lr=0.001
    run T49-alpha0.5 "${t49[@]}" --set train.alpha=0.5
    run T49-beta0.1 "${t49[@]}" --set train.beta=0.1
    run T49-beta1 "${t49[@]}" --set train.beta=1.0
    run T49-no-bn "${t49[@]}" --set model.batch_norm=false
    run T49-eval-batch-stats "${t49[@]}" --set train.eval_batch_norm=batch
    run T49-reset-never "${t49[@]}" --set train.reset=never
    run T49-uniform-membrane "${t49[@]}" --set data.initial_membrane=uniform
fi
if [ -z "$only" ] || [ "$only" = adding ]; then
    run adding-T20 experiments/adding-quick.toml
    run adding-T20-reset-never experiments/adding-quick.toml --set train.reset=never
fi
"$fptt" summarize "$out"/*/ --out "$out/summary.csv"
for d in "$out"/*/; do
    "$fptt" plot "$d" >/dev/null
done
echo "runs, summary.csv and each run's curves.svg in $out"
