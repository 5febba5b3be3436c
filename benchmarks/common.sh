# Sourced by benchmarks/gpu.sh and benchmarks/gpu-conv.sh (after `cd` to the repository root and
# `out` set to an absolute directory): the Vulkan driver's environment, and the stage helpers.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Some GPU containers ship NVIDIA's Vulkan driver outside the loader's search path.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ] && ! compgen -G '/usr/share/vulkan/icd.d/nvidia*.json' >/dev/null \
    && ! compgen -G '/etc/vulkan/icd.d/nvidia*.json' >/dev/null; then
    export VK_DRIVER_FILES=$nv_icd
fi

step() { printf '\n== %s (%s, %d s in)\n' "$1" "$(date -u +%H:%M:%S)" $((SECONDS - start)); }
# Each stage has a time limit so that a slow one cannot starve the rest; the CSVs are written
# row by row, so a stage stopped at its limit keeps what it measured. A stopped command gets 1 s
# after TERM before KILL.
limit() { local secs=$1; shift; timeout -k 1 "$secs" "$@" || echo "STOPPED OR FAILED (limit ${secs} s): $*"; }

# run_tests SECONDS CARGO_ARGS...: the prebuilt test executables in `tests` (FPTT_PREBUILT) one
# after another, or `cargo test --release CARGO_ARGS`, all within SECONDS, into $out/tests.log;
# sets tests_ok to 0 if any failed or was stopped.
run_tests() {
    local secs=$1; shift
    tests_ok=1
    if [ ${#tests[@]} -gt 0 ]; then
        local deadline=$((SECONDS + secs)) left t
        for t in "${tests[@]}"; do
            left=$((deadline - SECONDS))
            if [ $left -le 0 ]; then echo "no time left for $t ($secs s for all tests)" >>"$out/tests.log"; tests_ok=0; continue; fi
            timeout -k 1 "$left" "$t" >>"$out/tests.log" 2>&1 || tests_ok=0
        done
    else
        timeout -k 1 "$secs" cargo test --release "$@" >"$out/tests.log" 2>&1 || tests_ok=0
    fi
    grep -E '^test result:|FAILED|panicked|no time left' "$out/tests.log" || true
}
