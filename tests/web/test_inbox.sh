#!/bin/sh
# tests/web/test_inbox.sh — the reviewer's web inbox (web/, served at
# /inbox/ by `conveyor serve`) in headless Chromium: starts a real server on
# 127.0.0.1 with a fresh --db, installs playwright-core (pinned in
# package.json) into tests/web/node_modules, and runs inbox.test.js against
# Debian's /usr/bin/chromium (never a downloaded browser). Screenshots go
# to $BUILD/test-web/.
#
#   BUILD=build tests/web/test_inbox.sh
#
# Prints `N passed, N failed`; `0 passed, 0 failed, 1 skipped` (with the
# reason) only where Chromium or node cannot be had.
set -u
. "$(dirname "$0")/../server/lib.sh"
WEB="$ROOT/tests/web"
OUT="$ROOT/$BUILD/test-web"
case "$BUILD" in /*) OUT="$BUILD/test-web" ;; esac

skip() {
    echo "SKIP the browser test: $1"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
[ -x /usr/bin/chromium ] || skip "/usr/bin/chromium is not installed (scripts/install-deps.sh installs Debian's chromium)"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"

if [ ! -d "$WEB/node_modules/playwright-core" ]; then
    (cd "$WEB" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm ci --no-audit --no-fund >"$T/npm.log" 2>&1)
    if [ ! -d "$WEB/node_modules/playwright-core" ]; then
        cat "$T/npm.log"
        echo "FAIL npm ci could not install playwright-core"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi

if ! serve inbox --db "$T/inbox.db"; then
    cat "$T/inbox.err"
    echo "FAIL the server starts"
    echo "0 passed, 1 failed"
    exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
SERVER="$S" OUT="$OUT" timeout 180 node "$WEB/inbox.test.js"
rc=$?
echo "(screenshots in $OUT)"
exit $rc
