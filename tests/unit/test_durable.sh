#!/bin/sh
# tests/unit/test_durable.sh — `conveyor run --db` and `conveyor resume`
# against SIGKILL at random moments.
#
#   BUILD=build tests/unit/test_durable.sh
#
# A 12-iteration loop whose every iteration runs a shell step (it appends its
# number and the idempotency-free marker to a log) and a short wait. The run is
# killed with SIGKILL at random moments, resumed, killed again, ... until it
# completes. Then: the output is exactly the one an uninterrupted run gives
# (state transitions happened once), every step ran at least once, and a step
# ran twice only when a kill caught it in flight (at most once per kill).
# The kills start once `run --db` has created its instance in the store (it
# says so on stderr): a run killed before that leaves nothing to resume. The
# process that records the end may be killed before it prints the output; the
# next resume then finds nothing unfinished, so the output is also read from
# the store (python3's sqlite3, the columns docs/store.md shows).
# Bounded: at most 40 kill/resume rounds, every command under `timeout`.
# Prints `N passed, N failed`.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
T=$(mktemp -d /tmp/conveyor-durable-test.XXXXXX)
WATCHDOGS=""
trap 'for w in $WATCHDOGS; do kill "$w" 2>/dev/null; done; rm -rf "$T"' EXIT INT TERM
passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
}

cat >"$T/wf.yaml" <<EOF
document: {dsl: '1.0.0', namespace: test, name: durable-loop, version: '1.0.0'}
do:
  - loop:
      for: {each: n, in: '[1,2,3,4,5,6,7,8,9,10,11,12]'}
      do:
        - step:
            run:
              shell:
                command: 'echo "\$1" >> $T/log; sleep 0.05; echo "\$1"'
                arguments: ['\${ \$n }']
            output: {as: '\${ (\$input // 0) + tonumber }'}
        - rest:
            wait: {milliseconds: 60}
EOF

# The uninterrupted result, for comparison.
timeout 60 "$CV" run "$T/wf.yaml" --input null >"$T/expected" 2>"$T/err"
if [ "$(tr -d ' \n' <"$T/expected")" = "78" ]; then ok "an uninterrupted run sums 1..12 = 78"; else
    fail "uninterrupted run: $(cat "$T/expected" "$T/err")"
fi
rm -f "$T/log"

# Run, kill at a random moment, resume, kill, ... (bounded). conveyor runs
# directly in the background (not under `timeout`, whose pid a SIGKILL would
# hit instead of conveyor's); a watchdog bounds each process.
start_bg() {
    "$CV" "$@" >"$T/out" 2>"$T/err" &
    pid=$!
    (sleep 60 && kill -9 "$pid" 2>/dev/null) >/dev/null 2>&1 &
    WATCHDOGS="$WATCHDOGS $!"
}
kills=0
round=0
done_=0
start_bg run "$T/wf.yaml" --input null --db "$T/db"
# Wait (bounded: 30 s) until the instance is in the store before the first
# kill: the store's first transactions (each one fsync'd) can take longer than
# the shortest random pause on a loaded machine, and a run killed before it
# created its instance leaves nothing that a resume could continue (a resume
# then "completes" at once, having found nothing).
i=0
while [ $i -lt 300 ] && ! grep -q '^conveyor: instance .* in ' "$T/err" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
ID=$(sed -n 's/^conveyor: instance \([^ ]*\) in .*/\1/p' "$T/err" | head -1)
[ -n "$ID" ] || fail "run --db did not say within 30 s that it created its instance: $(cat "$T/err")"
while [ $round -lt 40 ]; do
    round=$((round + 1))
    # a random pause of 50..350 ms
    ms=$(( ($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 300) + 50 ))
    sleep "$(printf '0.%03d' "$ms")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
        wait "$pid" 2>/dev/null
    else
        wait "$pid" 2>/dev/null
        rc=$?
        if [ $rc -eq 0 ]; then
            done_=1
            break
        fi
    fi
    start_bg resume --db "$T/db"
done
if [ $done_ -eq 0 ]; then # let the last resume finish undisturbed
    wait "$pid" 2>/dev/null
    rc=$?
    if [ $rc -ne 0 ]; then
        timeout 60 "$CV" resume --db "$T/db" >"$T/out" 2>"$T/err"
        rc=$?
    fi
    [ $rc -eq 0 ] && done_=1
fi
echo "     ($kills kills in $round rounds)"
if [ $done_ -eq 1 ]; then ok "the run completed after $kills SIGKILLs"; else fail "the run did not complete: $(cat "$T/err")"; fi
# The instance as the store holds it: "STATUS OUTPUT" (the output as compact JSON).
stored=$(python3 -c '
import json, sqlite3, sys
row = sqlite3.connect(sys.argv[1]).execute(
    "SELECT status, output FROM instances WHERE id = ?", (sys.argv[2],)).fetchone()
print("%s %s" % (row[0], json.dumps(json.loads(row[1]) if row[1] else None)) if row else "no such instance")
' "$T/db" "$ID" 2>&1)
if [ "$stored" = "completed 78" ]; then ok "the store holds the instance completed with the uninterrupted run's output"; else
    fail "the store holds: $stored"
fi
if [ $done_ -eq 1 ] && grep -q "no unfinished instance" "$T/err"; then
    # The last process found nothing unfinished: the one killed before it had
    # recorded the end but not printed it. The store's output (checked above)
    # is what it would have printed.
    echo "     (the process that recorded the end was killed before it printed the output)"
    printed=${stored#completed }
else
    printed=$(tr -d ' \n' <"$T/out")
fi
if [ "$printed" = "78" ]; then ok "the interrupted run's output equals the uninterrupted one"; else
    fail "output after kills: $(cat "$T/out" "$T/err")"
fi
# every step ran at least once, and at most once more per kill
missing=0
extra=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    c=$(grep -cx "$i" "$T/log" 2>/dev/null)
    c=${c:-0}
    [ "$c" -ge 1 ] || missing=$((missing + 1))
    [ "$c" -gt 1 ] && extra=$((extra + c - 1))
done
if [ $missing -eq 0 ]; then ok "every step ran at least once"; else fail "$missing steps never ran"; fi
if [ $extra -le $kills ]; then ok "steps repeated only when a kill caught them in flight ($extra repeats, $kills kills)"; else
    fail "$extra repeated steps for $kills kills"
fi
timeout 30 "$CV" resume --db "$T/db" >"$T/out2" 2>"$T/err2"
if grep -q "no unfinished instance" "$T/err2"; then ok "nothing is left to resume"; else fail "resume after the end: $(cat "$T/err2")"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
