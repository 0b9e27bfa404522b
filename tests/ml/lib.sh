# tests/ml/lib.sh — helpers shared by the tests/ml scripts (sourced after
# `set -u`, with TEST_NAME set to a short name for the temporary directory).
#
# Sets ROOT (and cd's there), BUILD, CV (the conveyor binary), T (a temporary
# directory removed at exit), DB ($T/models.db) and FIX (tests/ml); defines
# ok/fail (counting into $passed/$failed), cv (runs conveyor: stdout in
# $T/out, stderr in $T/err, exit in $rc; a sanitizer report is a failure of
# its own) and expect_rc NAME CODE.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
if [ ! -x "$CV" ]; then
    echo "missing $CV: run make first" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
T=$(mktemp -d "/tmp/conveyor-${TEST_NAME:-ml}-test.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
DB="$T/models.db"
FIX="$ROOT/tests/ml"

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -s "$T/out" ] && sed 's/^/     stdout: /' "$T/out" | head -20
    [ -s "$T/err" ] && sed 's/^/     stderr: /' "$T/err" | head -20
    return 0
}
# cv ARGS... — runs conveyor (stdout in $T/out, stderr in $T/err, $rc); a
# sanitizer report on stderr (the asan build) is a failure of its own.
cv() {
    timeout 120 "$CV" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$T/err"; then
        fail "sanitizer report from: conveyor $*"
    fi
}
expect_rc() {
    if [ "$rc" -eq "$2" ]; then ok "$1 (exit $rc)"; else fail "$1: exit $rc, expected $2"; fi
}
