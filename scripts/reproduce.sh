#!/usr/bin/env bash
# scripts/reproduce.sh OUTDIR [--resume] [--smoke] [--budget-scale X]
#
# The paper's claims on a GPU (issue #17), in one prepared script that ends within 9 minutes on an
# NVIDIA H200 once built (every stage has a wall-clock limit; see BUDGET below):
#
#   1. the adding problem on the authors' LTC network (experiments/adding-{200,500,1000}.toml:
#      128 neurons, Adam 3e-3, alpha = beta = 0.5, batch 128) at T = 200, 500 and 1000, with FPTT in
#      10 chunks (train.chunk = T/10) and with BPTT, plus one-step FPTT at T = 200; seeds 1, 2, 3,
#      one after the other; each run aims at the authors' 10,000 iterations;
#   2. S-MNIST on the vendored 8000/963 digits (experiments/smnist.toml, data/mnist-subset, one pixel
#      per step, T = 784, 256 neurons), seed 1, for as many of its 50 epochs as fit;
#   3. tables: `fptt summarize` of every run (adding-runs.md/.csv, smnist-runs.md/.csv), mean ± std
#      over the seeds per (T, rule) (`fptt summarize --group`: adding-summary.md/.csv), S-MNIST's test
#      accuracy per epoch with wall time (smnist-epochs.md/.csv), every run's state (status.md), and
#      learning curves (`fptt plot`: curves-adding-T*.svg, curves-smnist.svg).
#
# Nothing here converges in 9 minutes: each run trains until its share of its stage's time is
# spent, then stops with a checkpoint (`fptt train --time-limit`, exit status 75), and
#
#   scripts/reproduce.sh OUTDIR --resume
#
# continues every run that is not finished exactly where it stopped (`fptt train --resume DIR`),
# with the same budgets again; repeat it to get further. --budget-scale X multiplies every stage's
# time (2 = 18 minutes). Finished runs, and runs that failed (a BPTT run may diverge: that is kept
# as its result), are not run again; delete OUTDIR/status/NAME to retry one.
#
# --smoke: the same plumbing with tiny networks, batches and iteration counts and smaller budgets,
# for a software adapter (lavapipe on a CPU, a few minutes); its numbers mean nothing.
#
# Time: stage budgets, not iteration guesses. Within a stage, each run's share of the time left is
# proportional to its weight T/100 + 2 (a fixed part for the start of a process: device, kernels;
# and the cost of an iteration, which grows with T), over the runs still to go, so time a run
# leaves unused goes to the next ones. A run gets `--time-limit` = its share minus a margin (a tenth, at
# least 2 s) for its last sequence, an evaluation under way and the checkpoint; `timeout` sends
# SIGTERM at the share (which also stops with a checkpoint) and SIGKILL 5 s later (the run keeps
# its last checkpoint). A run whose share would be under 4 s is not started (status "no time").
#
# Writes OUTDIR/reproduce.log (everything printed, appended to on --resume), OUTDIR/adding/NAME and
# OUTDIR/smnist/NAME (run directories), OUTDIR/logs/NAME.log, OUTDIR/status/NAME and the tables.
# Exit status: 0, or 1 when a run failed for another reason than divergence.
#
# FPTT_PREBUILT=DIR uses DIR/fptt instead of cargo (benchmarks/prebuild.sh DIR builds it);
# FPTT_DEVICE picks the adapter (default: gpu; auto with --smoke). With cargo, the build comes
# before the budget.
set -euo pipefail

usage() { echo "usage: scripts/reproduce.sh OUTDIR [--resume] [--smoke] [--budget-scale X]" >&2; exit 2; }
out="" resume=0 smoke=0 scale=1
while [ $# -gt 0 ]; do
    case $1 in
        --resume) resume=1 ;;
        --smoke) smoke=1 ;;
        --budget-scale)
            [ $# -ge 2 ] || usage
            scale=$2
            shift
            ;;
        --budget-scale=*) scale=${1#*=} ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *)
            [ -z "$out" ] || { echo "one OUTDIR only (got $out and $1)" >&2; usage; }
            out=$1
            ;;
    esac
    shift
done
[ -n "$out" ] || usage
if ! [[ $scale =~ ^[0-9]*\.?[0-9]+$ ]] || awk -v s="$scale" 'BEGIN { exit !(s <= 0) }'; then
    echo "--budget-scale: expected a number > 0, found \"$scale\"" >&2
    exit 2
fi
if [ $resume -eq 1 ] && [ ! -d "$out/status" ]; then
    echo "$out holds no reproduction to resume (no $out/status); start one without --resume" >&2
    exit 2
fi
if [ $resume -eq 0 ] && [ -d "$out/status" ]; then
    echo "$out already holds a reproduction: continue it with --resume, or choose another OUTDIR" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
mkdir -p "$out/status" "$out/logs" "$out/adding" "$out/smnist"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/reproduce.log") 2>&1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Some GPU containers ship NVIDIA's Vulkan driver outside the loader's search path (as gpu.sh).
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ] && ! compgen -G '/usr/share/vulkan/icd.d/nvidia*.json' >/dev/null \
    && ! compgen -G '/etc/vulkan/icd.d/nvidia*.json' >/dev/null; then
    export VK_DRIVER_FILES=$nv_icd
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
    # shellcheck source=scripts/ensure-vulkan.sh
    source scripts/ensure-vulkan.sh
fi

if [ -n "${FPTT_PREBUILT:-}" ]; then
    fptt="$FPTT_PREBUILT/fptt"
else
    cargo build --release --quiet
    fptt=$PWD/target/release/fptt
fi

# BUDGET (seconds, times --budget-scale; nothing of this was measured on a GPU yet):
#   adapters                10
#   adding, 21 runs         300   (weights T/100 + 2: 150 in all, so 8 s per T = 200 run, 14 s per
#                                  T = 500 run, 24 s per T = 1000 run when each uses its share)
#   S-MNIST, 1 run          180
#   tables and figures      a few (they read CSV)
# 10 + 300 + 180 = 490, plus at most 5 s of SIGKILL grace at each stage's end: 500 s < 540 s.
adding_budget=300 smnist_budget=180 iters=10000
dev=${FPTT_DEVICE:-gpu}
adding_extra=() smnist_extra=()
if [ $smoke -eq 1 ]; then
    # Tiny networks and batches, 8 iterations (evaluations after 4 and 8) of the adding task, two
    # epochs of 48 digits tested on the first 128 test digits (the first 32 of the subset's test
    # file are nearly all ones): every stage, stop and summary, in a few minutes on lavapipe.
    adding_budget=240 smnist_budget=60 iters=8
    dev=${FPTT_DEVICE:-auto}
    adding_extra=(--set 'model.hidden=[16]' --set train.batch=8 --set train.eval_every=4 --set train.eval_batches=1
        --set output.report_every=2)
    smnist_extra=(--set 'model.hidden=[16]' --set train.batch=16 --set train.epochs=2 --set data.max_train_samples=48
        --set data.max_test_samples=128 --set output.report_every=1)
fi
scaled() { awk -v b="$1" -v s="$scale" 'BEGIN { printf "%d", b * s }'; }
adding_budget=$(scaled $adding_budget)
smnist_budget=$(scaled $smnist_budget)

start=$SECONDS
step() { printf '\n== %s (%s, %d s in)\n' "$1" "$(date -u +%H:%M:%S)" $((SECONDS - start)); }
step "reproduce.sh $out: $([ $resume -eq 1 ] && echo resume || echo start)$([ $smoke -eq 1 ] && echo ', smoke')," \
    "budgets: adding ${adding_budget} s, S-MNIST ${smnist_budget} s, device $dev"
timeout -k 1 10 "$fptt" devices || echo "fptt devices failed or took over 10 s"

failed=0
# The runs of a stage: NAME WEIGHT ARGS... per line is awkward in bash, so a stage is a list of
# names and spec_args NAME fills `args` for it.
spec_args() {
    local name=$1 t rule seed
    case $name in
        adding/T*)
            IFS=- read -r t rule seed <<<"${name#adding/T}"
            seed=${seed#s}
            args=("experiments/adding-$t.toml" --set seed="$seed" --set "train.max_iterations=$iters" "${adding_extra[@]}")
            case $rule in
                chunk10) args+=(--set train.chunk=$((t / 10))) ;;
                bptt) args+=(--set 'train.rule="bptt"') ;;
                onestep) ;;
                *) echo "unknown rule in $name" >&2; return 1 ;;
            esac
            ;;
        smnist/fptt-s*)
            seed=${name#smnist/fptt-s}
            args=(experiments/smnist.toml --set data.dir=data/mnist-subset --set seed="$seed" "${smnist_extra[@]}")
            ;;
        *) echo "unknown run $name" >&2; return 1 ;;
    esac
}
weight() { # a process's start (2) and the cost of an iteration (T/100)
    case $1 in
        adding/T*) local t=${1#adding/T}; echo $((${t%%-*} / 100 + 2)) ;;
        *) echo 1 ;;
    esac
}
status_of() { cat "$out/status/${1//\//_}" 2>/dev/null || echo "not started"; }

# run_stage BUDGET NAME...: every name not finished or failed, one after the other, each with its
# share of the time left.
run_stage() {
    local budget=$1
    shift
    local deadline=$((SECONDS + budget)) pending=() total=0 name st
    for name in "$@"; do
        st=$(status_of "$name")
        case $st in
            done* | failed* | diverged*) echo "skip $name ($st)" ;;
            *) pending+=("$name"); total=$((total + $(weight "$name"))) ;;
        esac
    done
    for name in "${pending[@]}"; do
        local w left share limit dir log rc cmd
        w=$(weight "$name")
        left=$((deadline - SECONDS))
        share=$((left * w / total))
        total=$((total - w))
        dir=$out/$name
        log=$out/logs/${name//\//_}.log
        if [ $share -lt 4 ]; then
            echo "$name: no time left in this stage (${left} s for the rest); resume to run it"
            [ -f "$dir/config.toml" ] || echo "no time" >"$out/status/${name//\//_}"
            continue
        fi
        limit=$((share - (share / 10 > 2 ? share / 10 : 2)))
        if [ -f "$dir/config.toml" ]; then
            cmd=(train --resume "$dir")
        else
            spec_args "$name"
            cmd=(train "${args[@]}" --out "$dir")
        fi
        printf '%s  %s: %d s (time limit %d s)\n' "$(date -u +%H:%M:%S)" "$name" "$share" "$limit"
        echo "+ fptt ${cmd[*]} --device $dev --time-limit $limit" >>"$log"
        rc=0
        timeout -k 5 "$share" "$fptt" "${cmd[@]}" --device "$dev" --time-limit "$limit" --progress log >>"$log" 2>&1 || rc=$?
        case $rc in
            0) st="done" ;;
            75) st="stopped at its time limit" ;;
            124 | 130 | 137) st="stopped by timeout (exit $rc)" ;;
            *)
                if grep -q "training diverged" "$log"; then st="diverged (exit $rc)"; else st="failed (exit $rc)"; failed=1; fi
                ;;
        esac
        echo "$st" >"$out/status/${name//\//_}"
        printf '%s  %s: %s; %s\n' "$(date -u +%H:%M:%S)" "$name" "$st" "$(grep -E '^(done|time limit|stopped|error)' "$log" | tail -n 1)"
    done
}

adding_runs=()
for seed in 1 2 3; do
    for t in 200 500 1000; do
        adding_runs+=("adding/T$t-chunk10-s$seed" "adding/T$t-bptt-s$seed")
        [ $t -ne 200 ] || adding_runs+=("adding/T$t-onestep-s$seed")
    done
done
step "adding problem: FPTT in 10 chunks and BPTT at T = 200, 500, 1000, one-step FPTT at T = 200, seeds 1-3"
run_stage "$adding_budget" "${adding_runs[@]}"
step "S-MNIST, 8000/963 digits, one pixel per step"
run_stage "$smnist_budget" smnist/fptt-s1

step "tables"
runs_in() { local d; for d in "$@"; do [ -f "$d/metrics.csv" ] && [ -f "$d/config.toml" ] && echo "$d"; done; }
# Runs with at least one metrics row (what `fptt plot` needs).
with_rows() { local d; for d in "$@"; do [ "$(wc -l <"$d/metrics.csv")" -gt 1 ] && echo "$d"; done; }
mapfile -t adding_dirs < <(runs_in "${adding_runs[@]/#/$out/}")
mapfile -t smnist_dirs < <(runs_in "$out/smnist/fptt-s1")
if [ ${#adding_dirs[@]} -gt 0 ]; then
    "$fptt" summarize "${adding_dirs[@]}" --out "$out/adding-runs.csv" | grep -v '^csv:' >"$out/adding-runs.md" || true
    # --group: mean ± std over the seeds, one configuration (T, rule) at a time, in this order.
    : >"$out/adding-summary.md"
    first=1
    for t in 200 500 1000; do
        for rule in chunk10 bptt onestep; do
            mapfile -t group < <(runs_in "$out/adding/T$t-$rule-s"{1,2,3})
            [ ${#group[@]} -gt 0 ] || continue
            "$fptt" summarize --group "${group[@]}" --out "$out/parts-group.csv" | grep -v '^csv:' >"$out/parts-group.md" || continue
            if [ $first -eq 1 ]; then
                cat "$out/parts-group.md" >>"$out/adding-summary.md"
                cp "$out/parts-group.csv" "$out/adding-summary.csv"
                first=0
            else
                tail -n +3 "$out/parts-group.md" >>"$out/adding-summary.md"
                tail -n +2 "$out/parts-group.csv" >>"$out/adding-summary.csv"
            fi
        done
    done
    rm -f "$out/parts-group.md" "$out/parts-group.csv"
    for t in 200 500 1000; do
        mapfile -t curves < <(runs_in "$out/adding/T$t-"*)
        [ ${#curves[@]} -eq 0 ] || mapfile -t curves < <(with_rows "${curves[@]}")
        [ ${#curves[@]} -eq 0 ] || "$fptt" plot "${curves[@]}" --title "Adding, T = $t, LTC 128 (reproduce.sh)" \
            --out "$out/curves-adding-T$t.svg" >/dev/null || echo "plot of T = $t failed"
    done
fi
if [ ${#smnist_dirs[@]} -gt 0 ]; then
    "$fptt" summarize "${smnist_dirs[@]}" --out "$out/smnist-runs.csv" | grep -v '^csv:' >"$out/smnist-runs.md" || true
    # Test accuracy per epoch with the wall time, from metrics.csv's test rows of W̄ (the weights the
    # reset installs; files without a `weights` column have one test row per evaluation). Columns
    # are found by name; the ones read hold no quoted commas.
    for d in "${smnist_dirs[@]}"; do
        awk -F, -v run="${d#"$out"/}" '
            NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            $col["split"] == "test" && (!("weights" in col) || $col["weights"] == "running_mean") {
                printf "%s,%s,%s,%s,%s\n", run, $col["epoch"], $col["iteration"], $col["accuracy"], $col["elapsed_s"]
            }' "$d/metrics.csv"
    done | { echo "run,epoch,iteration,test_accuracy,elapsed_s"; cat; } >"$out/smnist-epochs.csv"
    awk -F, 'NR == 1 { print "| run | epoch | iteration | test accuracy | wall time |"; print "|---|---|---|---|---|"; next }
        { printf "| %s | %s | %s | %.2f %% | %.0f s |\n", $1, $2, $3, 100 * $4, $5 }' "$out/smnist-epochs.csv" \
        >"$out/smnist-epochs.md"
    [ -z "$(with_rows "${smnist_dirs[@]}")" ] || "$fptt" plot "${smnist_dirs[@]}" --title "S-MNIST, 8000/963 digits (reproduce.sh)" --out "$out/curves-smnist.svg" \
        >/dev/null || echo "plot of S-MNIST failed"
fi
{
    echo "| run | status | iterations (last metrics row) |"
    echo "|---|---|---|"
    for name in "${adding_runs[@]}" smnist/fptt-s1; do
        its=$(awk -F, 'NR > 1 { i = $3 } END { print i + 0 }' "$out/$name/metrics.csv" 2>/dev/null || echo 0)
        echo "| $name | $(status_of "$name") | $its |"
    done
} >"$out/status.md"
for f in status adding-summary smnist-epochs; do
    [ -f "$out/$f.md" ] && { echo; echo "$out/$f.md:"; cat "$out/$f.md"; }
done
step "done: $out ($((SECONDS - start)) s after the build; budgets $((adding_budget + smnist_budget + 10)) s)"
exit $failed
