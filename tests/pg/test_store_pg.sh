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
trap 'pg_stop' EXIT
trap 'exit 1' INT TERM
if ! pg_start; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "PostgreSQL: $CONVEYOR_TEST_PG_URL ($("$(pg_bin)/postgres" --version))"
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0} \
    "$BUILD/unit-tests" --jobs=2 --filter 'store*/*'
