#!/bin/sh
# tests/fuzz-smoke.sh — a bounded fuzzing run of every libFuzzer target.
#
# Builds fuzz/*.c with `make fuzz` (clang, -fsanitize=fuzzer,address,undefined
# into build-fuzz/), then runs each target for FUZZ_SECONDS (default 30)
# seconds, starting from a scratch copy of its seed corpus fuzz/corpus/<name>/
# (fuzz_load -> load, fuzz_expr -> expr, fuzz_yaml -> yaml), so the committed
# seeds never change. A crash, a sanitizer report, a leak, a hang longer than
# FUZZ_TIMEOUT (default 10) seconds or more than FUZZ_RSS_MB (default 2048)
# MiB makes the script exit 1; the reproducer is left in build-fuzz/artifacts/
# and its path printed. Before fuzzing, each target replays the saved
# reproducers in fuzz/crashes/ (*.jq for fuzz_expr, *.yaml and *.json for
# fuzz_load and fuzz_yaml, TARGET-* for the others) and fails at once if one
# still crashes. Leaks inside third-party libraries listed in
# fuzz/lsan.supp are suppressed. If clang or its libFuzzer runtime is missing, it says
# so and exits 0 with the targets counted as skipped.
#
# Ends with the summary line tests/run-all.sh reads:
#   fuzz-smoke: N passed, N failed[, N skipped]
# Environment: FUZZ_SECONDS, FUZZ_TIMEOUT, FUZZ_RSS_MB, FUZZ_TARGETS (names,
# default every fuzz/*.c), FUZZ_JOBS (parallel targets, default 1).
set -u
cd "$(dirname "$0")/.." || exit 2
SECONDS_EACH=${FUZZ_SECONDS:-30}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS=${FUZZ_RSS_MB:-2048}
OUT=build-fuzz
TARGETS=${FUZZ_TARGETS:-$(for f in fuzz/*.c; do basename "$f" .c; done)}
ntargets=$(echo $TARGETS | wc -w)

skip() {
    echo "fuzz-smoke: SKIPPED: $1"
    echo "fuzz-smoke: 0 passed, 0 failed, $ntargets skipped"
    exit 0
}

# Is libFuzzer usable? Compile and link a trivial target.
command -v clang >/dev/null 2>&1 || skip "clang is not installed (apt-get install clang)"
probe=$(mktemp -d /tmp/fuzz-probe.XXXXXX)
trap 'rm -rf "$probe"' EXIT
cat >"$probe/p.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
    sed 's/^/    /' "$probe/log" | head -5
    skip "clang's libFuzzer runtime is not available (libclang-rt-dev / libclang-common-dev)"
fi

echo "fuzz-smoke: building targets (make fuzz)"
if ! make fuzz >"$probe/build.log" 2>&1; then
    tail -20 "$probe/build.log"
    echo "fuzz-smoke: build of the fuzz targets failed"
    echo "fuzz-smoke: 0 passed, $ntargets failed"
    exit 1
fi

mkdir -p "$OUT/artifacts" "$OUT/corpus"
# Known leaks inside third-party libraries (each explained in the file). The
# slow unwinder is needed to see through libjq and libfyaml (no frame
# pointers): it costs speed, but leak reports then name the real culprit.
LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS ASAN_OPTIONS
passed=0
failed=0
for t in $TARGETS; do
    seeds=fuzz/corpus/${t#fuzz_}
    work=$OUT/corpus/$t
    rm -rf "$work"
    mkdir -p "$work"
    [ -d "$seeds" ] && cp "$seeds"/* "$work"/ 2>/dev/null
    log=$OUT/$t.log
    # First replay the saved reproducers (fuzz/crashes/): each one is a bug
    # that was found once and must stay fixed (or stay suppressed, for the
    # third-party leaks listed in fuzz/lsan.supp).
    case $t in
    fuzz_expr) repro=$(ls fuzz/crashes/*.jq 2>/dev/null) ;;
    fuzz_load | fuzz_yaml) repro=$(ls fuzz/crashes/*.yaml fuzz/crashes/*.json 2>/dev/null) ;;
    *) repro=$(ls fuzz/crashes/"$t"-* 2>/dev/null) ;; # e.g. fuzz/crashes/fuzz_tabmodel-*.bin
    esac
    if [ -n "$repro" ]; then
        if "$OUT/$t" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" $repro >"$log.replay" 2>&1; then
            echo "fuzz-smoke: $t replayed $(echo $repro | wc -w) saved reproducers: ok"
        else
            failed=$((failed + 1))
            echo "fuzz-smoke: $t FAILED on a saved reproducer (fuzz/crashes/):"
            grep -E '^Running:|Assertion|==[0-9]+==ERROR|SUMMARY' "$log.replay" | tail -4 | sed 's/^/    /'
            echo "    full log: $log.replay"
            continue
        fi
    fi
    echo "fuzz-smoke: $t for ${SECONDS_EACH}s (seeds: $seeds, log: $log)"
    # -max_total_time bounds the run; -timeout bounds one input (a hang).
    "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" \
        -max_len=4096 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
        "$work" >"$log" 2>&1
    rc=$?
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
    if [ "$rc" -eq 0 ]; then
        echo "    ok: ${execs:-?} executions, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) inputs"
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "    FAILED (exit $rc) after ${execs:-?} executions:"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|ALARM|artifact_prefix|Test unit written|.*fast path and jq disagree|.*-timeout)' "$log" | head -8 | sed 's/^/    /'
        echo "    full log: $log; reproduce with: $OUT/$t <artifact>"
    fi
done
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
