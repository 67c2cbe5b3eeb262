#!/usr/bin/env bash
# Builds the fuzz targets (cargo fuzz, libFuzzer, stable toolchain with RUSTC_BOOTSTRAP=1) and
# runs each for SECONDS, starting from its committed seeds (fuzz/seeds/<target>) and the
# corpus earlier runs grew (under FUZZ_TARGET_DIR, so the repository only holds the seeds).
#
#   fuzz/run.sh SECONDS [TARGET...]     (every target when none is named)
#
# FUZZ_BIN_DIR runs the binaries there instead of building (e.g. a copy, for long runs
# while the targets are rebuilt). Prints one line per target: executions, coverage (libFuzzer's cov and ft), duration.
# A crash stops the run: its input is saved under FUZZ_TARGET_DIR/artifacts/<target>/, and
# the script exits non-zero. Reproduce it with the target's binary and that file.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/billsync-target}/fuzz}
all_targets=(stripe_signature stripe_event chargebee_event config mapping admin_params crm_classify)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# No AddressSanitizer: billsync's crates forbid unsafe code, and the sanitizer would halve
# the executions on a small machine; panics, failed assertions and overflow checks (debug
# assertions are on) are what the targets look for.
build_flags=(--sanitizer none --codegen-units 16 --target-dir "$target_dir")
bin_dir=${FUZZ_BIN_DIR:-}
if [ -z "$bin_dir" ]; then
    (cd "$fuzz_dir/.." && RUSTC_BOOTSTRAP=1 cargo +stable fuzz build "${build_flags[@]}" >&2)
    bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
fi

status=0
for target in "${targets[@]}"; do
    corpus=$target_dir/corpus/$target
    artifacts=$target_dir/artifacts/$target
    log=$target_dir/logs/$target.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    started=$SECONDS
    # New inputs go to the first directory; the seeds are read only.
    if "$bin_dir/$target" "$corpus" "$fuzz_dir/seeds/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log and $artifacts/)"
        status=1
    fi
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    printf '%-17s %s: %s executions, %s, %d s\n' "$target" "$result" "${executions:-?}" \
        "${coverage:-no coverage line}" $((SECONDS - started))
    if [ "$result" != ok ]; then
        tail -n 40 "$log" >&2
        break
    fi
done
exit $status
