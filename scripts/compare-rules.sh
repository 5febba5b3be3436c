#!/usr/bin/env bash
# The rule comparisons of the README (issue #4), with the budgets used there: the adding problem at
# T = 200, 500 and 1000 on one LIF network (64 neurons, fused map, threshold 0.5) with one-step
# FPTT, FPTT in 10 chunks, BPTT and online e-prop; the authors' LTC network at T = 200 with FPTT
# in 10 chunks, BPTT and one-step FPTT; S-MNIST on the vendored 8000-digit subset with one ALIF network (64 neurons, no batch
# norm) and FPTT, BPTT and e-prop. Then `fptt summarize` tables of every run.
#
#   scripts/compare-rules.sh [OUTDIR] [adding|smnist|all]
#
# On this project's 2-core machine with lavapipe the whole set takes several hours; on a GPU,
# raise the iteration budgets (ITERS_* below) towards convergence. Runs that exist are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-vulkan.sh
out=${1:-results/compare}
what=${2:-all}
cargo build --quiet --release
fptt=target/release/fptt

# Iterations per rule at each length (equal for every rule, except e-prop, whose per-synapse
# traces make a step far slower on a software adapter; see the README).
ITERS_200=${ITERS_200:-1000}
ITERS_500=${ITERS_500:-400}
ITERS_1000=${ITERS_1000:-200}
EPROP_200=${EPROP_200:-300}
EPROP_500=${EPROP_500:-60}
EPROP_1000=${EPROP_1000:-30}

run() { # DIR ARGS...: train unless DIR already holds a run
    local dir=$1
    shift
    if [ -f "$dir/metrics.csv" ]; then
        echo "skip $dir (exists)"
        return
    fi
    "$fptt" train "$@" --progress log --out "$dir"
}

net=(--set 'model.hidden=[64]' --set train.batch=64)
lif=(--set model.neuron=lif)
plain=(--set train.reset=never)
if [ "$what" = adding ] || [ "$what" = all ]; then
    for t in 200 500 1000; do
        iters_var=ITERS_$t eprop_var=EPROP_$t
        iters=${!iters_var} eprop=${!eprop_var}
        every=100 eprop_every=$((eprop / 3))
        exp=experiments/adding-$t.toml
        dir=$out/adding-T$t
        run "$dir/lif-fptt" "$exp" "${net[@]}" "${lif[@]}" --set train.max_iterations=$iters --set train.eval_every=$every
        run "$dir/lif-fptt-chunk$((t / 10))" "$exp" "${net[@]}" "${lif[@]}" --set train.chunk=$((t / 10)) \
            --set train.max_iterations=$iters --set train.eval_every=$every
        # BPTT keeps every step: at T = 1000 a batch of 64 passes lavapipe's 128 MiB buffer limit,
        # so it trains on batches of 32 for twice the iterations (the same sequences).
        bptt_batch=64 bptt_iters=$iters
        if [ "$t" = 1000 ]; then bptt_batch=32 bptt_iters=$((2 * iters)); fi
        run "$dir/lif-bptt" "$exp" "${net[@]}" "${lif[@]}" "${plain[@]}" --set train.rule=bptt \
            --set train.batch=$bptt_batch --set train.max_iterations=$bptt_iters --set train.eval_every=$((every * bptt_iters / iters))
        run "$dir/lif-eprop-step" "$exp" "${net[@]}" "${lif[@]}" "${plain[@]}" --set train.rule=eprop \
            --set train.eprop_update=step --set train.max_iterations=$eprop --set train.eval_every=$eprop_every
    done
    # The authors' LTC network at T = 200: FPTT in 10 chunks, BPTT, one-step FPTT.
    ltc=(experiments/adding-200.toml "${net[@]}" --set train.eval_every=100)
    run "$out/adding-T200/ltc-fptt-chunk20" "${ltc[@]}" --set train.chunk=20 --set train.max_iterations=3000
    run "$out/adding-T200/ltc-bptt" "${ltc[@]}" "${plain[@]}" --set train.rule=bptt --set train.max_iterations=1500
    run "$out/adding-T200/ltc-fptt" "${ltc[@]}" --set train.max_iterations=1500
    "$fptt" summarize "$out"/adding-T*/* --out "$out/adding-summary.csv"
fi
if [ "$what" = smnist ] || [ "$what" = all ]; then
    smnist=(experiments/smnist.toml --set data.dir=data/mnist-subset --set model.neuron=alif --set model.batch_norm=false
        --set 'model.hidden=[64]' --set train.batch=32 --set data.max_train_samples=1000 --set train.epochs=1
        --set train.lr_schedule=none)
    run "$out/smnist/alif-fptt" "${smnist[@]}"
    run "$out/smnist/alif-bptt" "${smnist[@]}" "${plain[@]}" --set train.rule=bptt
    run "$out/smnist/alif-eprop-step-nofilter" "${smnist[@]}" "${plain[@]}" --set train.rule=eprop \
        --set train.eprop_update=step --set train.eprop_readout_filter=false
    # FPTT and BPTT (fast enough here) also on the whole subset, one epoch.
    whole=(experiments/smnist.toml --set data.dir=data/mnist-subset --set model.neuron=alif --set model.batch_norm=false
        --set 'model.hidden=[64]' --set train.batch=32 --set train.epochs=1 --set train.lr_schedule=none)
    run "$out/smnist/alif-fptt-8000" "${whole[@]}"
    run "$out/smnist/alif-bptt-8000" "${whole[@]}" "${plain[@]}" --set train.rule=bptt
    "$fptt" summarize "$out"/smnist/* --out "$out/smnist-summary.csv"
fi
