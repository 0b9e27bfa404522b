#!/bin/sh
# tests/pg/test_store_pg.sh — the storage conformance suites (`store`,
# `store_lease`) and PostgreSQL's own cases (`store_postgres`) against a
# throw-away PostgreSQL server started here (tests/pg/pg.sh), a new database
# per test (store_sqlite's cases run too: they use a file). BUILD=build|build-asan. Prints Criterion's summary; a server
# that cannot start is one failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
. "$ROOT/tests/pg/pg.sh"
UT_PID=""
trap 'pg_stop' EXIT
# a signal stops the tests first (their next connection would only fail), then
# the server; the tests run in the background so that the trap runs at once
trap '[ -n "$UT_PID" ] && kill "$UT_PID" 2>/dev/null; exit 1' INT TERM
if ! pg_start; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "PostgreSQL: $CONVEYOR_TEST_PG_URL ($("$(pg_bin)/postgres" --version))"
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0} \
    "$BUILD/unit-tests" --jobs=2 --filter 'store*/*' &
UT_PID=$!
wait "$UT_PID"
rc=$?
UT_PID=""
exit $rc
