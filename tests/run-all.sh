#!/bin/sh
# tests/run-all.sh — the whole test suite against one build directory.
#
#   BUILDS="build" tests/run-all.sh              (make test)
#   BUILDS="build-asan" tests/run-all.sh         (make test-asan: ASan + UBSan)
#   BUILDS="build build-asan" tests/run-all.sh   (make check: both, one summary)
#
# Starts the stub HTTP server (tests/stub/stub_server.py, 127.0.0.1, a free
# port) that stands in for the public hosts the conformance kit and the
# specification's examples call, then runs: the Criterion unit tests, the
# conformance kit (ctk-features), the specification's runnable examples, the
# model CLI tests (tests/ml, both builds), the store suites on PostgreSQL, three
# nodes on one database (tests/server/test_cluster.sh), the CLI tests, and (unless FUZZ_SECONDS=0) a bounded fuzzing smoke run.
# The second build's suites run beside the first's (PARALLEL=0: one after the other).
# Every suite's counts are added up into the closing `N passed, N failed`.
set -u
BUILDS=${BUILDS:-${BUILD:-build}}
BUILD=${BUILDS%% *} # the first build runs the CLI and fuzz suites
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
SHARED=${CONVEYOR_SHARED:-$ROOT/../shared}
SW="$SHARED/serverless-workflow"
export CONVEYOR_SHARED="$SHARED" # the unit tests read the examples from there
TMP=$(mktemp -d /tmp/conveyor-tests.XXXXXX)
STUB_PID=""
cleanup() {
    [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

passed=0
failed=0
skipped=0
suites_failed=""

# add_counts NAME OUTPUT_FILE EXIT_CODE — reads the suite's own summary line.
add_counts() {
    name=$1 file=$2 rc=$3
    line=$(grep -E 'Synthesis: Tested: ' "$file" | tail -1)
    if [ -n "$line" ]; then # Criterion: "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"
        p=$(echo "$line" | sed -E 's/.*Passing: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failing: ([0-9]+).*/\1/')
        c=$(echo "$line" | sed -E 's/.*Crashing: ([0-9]+).*/\1/')
        f=$((f + c))
    else
        line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$file" | tail -1)
        if [ -z "$line" ]; then
            echo "!! $name printed no summary (exit $rc): counted as one failure"
            failed=$((failed + 1))
            suites_failed="$suites_failed $name"
            return
        fi
        p=$(echo "$line" | sed -E 's/^([A-Za-z-]+: )?([0-9]+) passed.*/\2/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
        skipped=$((skipped + ${s:-0}))
    fi
    # A sanitizer report inside a test's process is a failure even where the
    # test runner counted the test as passed (LeakSanitizer runs at exit).
    san=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$file")
    if [ "$san" -gt 0 ]; then
        echo "!! $name: $san sanitizer report(s) in the output, each counted as a failure"
        p=$((p > san ? p - san : 0))
        f=$((f + san))
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then # a crash after the summary, say
        failed=$((failed + 1))
    fi
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        suites_failed="$suites_failed $name"
    fi
    echo "== $name: $p passed, $f failed (exit $rc)"
}

run_suite() {
    name=$1
    shift
    echo "== $name: $*"
    out="$TMP/$(echo "$name" | tr -c "A-Za-z0-9\n" _).out"
    "$@" >"$out" 2>&1
    rc=$?
    cat "$out"
    add_counts "$name" "$out" "$rc"
}

for b in $BUILDS; do
    for bin in "$b/conveyor" "$b/unit-tests" "$b/ctk-runner"; do
        if [ ! -x "$bin" ]; then
            echo "missing $bin: run make first" >&2
            exit 2
        fi
    done
done
# sanitizer reports must fail the run, not scroll by
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The stub server for public hosts (petstore.swagger.io, httpbin.org, ...).
python3 tests/stub/stub_server.py --port 0 --port-file "$TMP/stub.port" --log "$TMP/stub.log" \
    >"$TMP/stub.out" 2>&1 &
STUB_PID=$!
i=0
while [ ! -s "$TMP/stub.port" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -s "$TMP/stub.port" ]; then
    echo "the stub server did not start:" >&2
    cat "$TMP/stub.out" >&2
    exit 1
fi
STUB="127.0.0.1:$(cat "$TMP/stub.port")"
export CONVEYOR_TEST_STUB="$STUB"

# The suites of one build directory ($1).
build_suites() {
    B=$1
    # Criterion: its own isolation (one process per test), its own summary.
    # (Criterion's own runner leaks at exit: tests/lsan.supp; the fuzz smoke
    # run uses fuzz/lsan.supp, so this is not exported)
    run_suite "unit[$B]" env LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}" \
        "$B/unit-tests" --jobs=2
    # the storage conformance suites again, on a throw-away PostgreSQL server
    # (tests/pg/pg.sh, a new database per test), and PostgreSQL's own cases
    run_suite "store-postgres[$B]" env BUILD="$B" tests/pg/test_store_pg.sh

    run_suite "ctk-selftest[$B]" "$B/ctk-runner" selftest

    # `conveyor model ...` on the generated ticket corpus (tests/ml)
    run_suite "model-cli[$B]" env BUILD="$B" tests/ml/test_model_cli.sh
    # `conveyor model ... --kind tabular` on the generated loans fixture (tests/ml)
    run_suite "tabular-cli[$B]" env BUILD="$B" tests/ml/test_tabular_cli.sh
    # `call: classify` in workflows run with `conveyor run --db`, the model trained in the test
    run_suite "catalog[$B]" env BUILD="$B" tests/ml/test_catalog.sh
    # the model registry over HTTP and `conveyor model ... --server`: canary, shadow, metrics
    run_suite "registry[$B]" env BUILD="$B" tests/ml/test_registry.sh
    # review tasks over the API and the CLI (docs/tasks.md), then the reviewer's
    # web inbox in headless Chromium (skipped, and said so, without Chromium)
    run_suite "tasks[$B]" env BUILD="$B" tests/server/test_tasks.sh
    # `call: review` in workflows: classify -> review -> corrected output, escalation, cancelling
    run_suite "review[$B]" env BUILD="$B" tests/server/test_review.sh
    run_suite "inbox-browser[$B]" env BUILD="$B" tests/web/test_inbox.sh

    if [ -d "$SW/ctk-features" ]; then
        run_suite "ctk[$B]" "$B/ctk-runner" features "$SW/ctk-features" --stub "$STUB"
        run_suite "examples[$B]" "$B/ctk-runner" examples tests/examples/cases.yaml \
            --examples-dir "$SW/examples" --stub "$STUB" --subflows tests/examples/subflows
        # Every example must validate; the schema's invalid fixtures must not.
        out="$TMP/validate.out"
        {
            vp=0
            vf=0
            for f in "$SW"/examples/*.yaml; do
                if "$B/conveyor" validate "$f" >/dev/null 2>"$TMP/v.err"; then vp=$((vp + 1)); else
                    vf=$((vf + 1))
                    echo "FAIL valid example rejected: $f"
                    cat "$TMP/v.err"
                fi
            done
            for f in "$SW"/invalid-fixtures/*.yaml; do
                "$B/conveyor" validate "$f" >/dev/null 2>"$TMP/v.err"
                if [ $? -eq 1 ] && grep -q ':[0-9]*:[0-9]*: ' "$TMP/v.err"; then vp=$((vp + 1)); else
                    vf=$((vf + 1))
                    echo "FAIL invalid fixture accepted or unlocated: $f"
                fi
            done
            echo "$vp passed, $vf failed"
        } >"$out" 2>&1
        cat "$out"
        add_counts "validate[$B]" "$out" 0
    else
        echo "== conformance kit not found at $SW (../shared absent): ctk, examples and validate skipped"
        skipped=$((skipped + 3))
    fi
}

# The builds after the first run at the same time as the first build's suites
# and the build-independent ones (most suites wait on servers, timers and
# child processes more than they compute): each in a subshell with its own
# log and counts, added up at the end. PARALLEL=0 runs them one after another.
for B in $BUILDS; do
    [ "$B" = "$BUILD" ] && continue
    safe=$(echo "$B" | tr -c "A-Za-z0-9\n" _)
    if [ "${PARALLEL:-1}" = 0 ]; then
        build_suites "$B"
        continue
    fi
    (
        trap - EXIT INT TERM # the parent stops the stub and removes $TMP
        passed=0 failed=0 skipped=0 suites_failed=""
        TMP="$TMP/$safe"
        mkdir -p "$TMP"
        build_suites "$B"
        echo "$passed $failed $skipped $suites_failed" >"$TMP/counts"
    ) >"$TMP/$safe.log" 2>&1 &
    eval "bg_$safe=\$!"
done
build_suites "$BUILD"

# three nodes on one PostgreSQL database, one killed, one paused (docs/cluster.md)
run_suite cluster env BUILD="$BUILD" tests/server/test_cluster.sh

if [ -x tests/unit/test_cli.sh ]; then
    run_suite cli env BUILD="$BUILD" tests/unit/test_cli.sh
fi

if [ -x tests/unit/test_durable.sh ]; then
    run_suite durable env BUILD="$BUILD" tests/unit/test_durable.sh
fi

if [ -x tests/server/test_server.sh ]; then
    run_suite server env BUILD="$BUILD" tests/server/test_server.sh
fi

if [ -x tests/server/test_events.sh ]; then
    run_suite events env BUILD="$BUILD" tests/server/test_events.sh
fi

if [ -x tests/server/test_sinks.sh ]; then
    run_suite sinks env BUILD="$BUILD" tests/server/test_sinks.sh
fi

if [ -x tests/server/test_schedule.sh ]; then
    run_suite schedule env BUILD="$BUILD" tests/server/test_schedule.sh
fi

if [ -x tests/server/test_crash.sh ]; then
    run_suite crash env BUILD="$BUILD" tests/server/test_crash.sh
fi

if [ -x tests/server/test_diskfull.sh ]; then
    run_suite diskfull env BUILD="$BUILD" tests/server/test_diskfull.sh
fi

if [ "${FUZZ_SECONDS:-8}" != 0 ] && [ -x tests/fuzz-smoke.sh ] && [ "$BUILD" = build ]; then
    run_suite fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-8}" tests/fuzz-smoke.sh
fi

for B in $BUILDS; do
    [ "$B" = "$BUILD" ] && continue
    [ "${PARALLEL:-1}" = 0 ] && continue
    safe=$(echo "$B" | tr -c "A-Za-z0-9\n" _)
    eval "wait \$bg_$safe"
    cat "$TMP/$safe.log"
    if [ -s "$TMP/$safe/counts" ]; then
        read -r bp bf bs bsf <"$TMP/$safe/counts"
        passed=$((passed + bp))
        failed=$((failed + bf))
        skipped=$((skipped + bs))
        [ -n "$bsf" ] && suites_failed="$suites_failed $bsf"
    else
        echo "!! the suites of $B reported no counts: counted as one failure"
        failed=$((failed + 1))
        suites_failed="$suites_failed $B"
    fi
done

echo
if [ -n "$suites_failed" ]; then
    echo "failing suites:$suites_failed"
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
