#!/bin/sh
# tests/server/test_diskfull.sh — a server whose disk fills up under it: the
# database lives on a small tmpfs that the test fills with a file while 20
# instances wait on a timer. Ends that cannot be written wait (nothing
# is reported before it is durable), the server says why on stderr, reads and
# /health go on, a start meanwhile is answered (not left hanging); once the
# file is removed every instance completes, once, and a restart finds them
# completed.
#
#   BUILD=build tests/server/test_diskfull.sh
#
# Needs to mount a tmpfs (root); where it cannot, it says so and runs nothing
# (0 passed, 0 failed, 1 skipped). Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

MNT="$T/small"
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=8m tmpfs "$MNT" 2>"$T/mount.err"; then
    echo "SKIPPED: cannot mount a small tmpfs here ($(cat "$T/mount.err")): the full-disk test needs root"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
unmount() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    sleep 0.2
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    cleanup
}
trap unmount EXIT INT TERM
DB="$MNT/db.sqlite"

cat >"$T/nap.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: nap, version: '1.0.0'}
do:
  - nap:
      wait: PT3S
  - done:
      set:
        n: ${ .n }
        done: true
DOC

completed() { # how many nap instances are completed
    req GET "/v1/instances?name=nap&status=completed&limit=1000"
    js 'len(j["items"])'
}

if serve one --db "$DB"; then ok "the server starts on the small disk"; else fail "the server starts on the small disk"; fi
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/nap.yaml"
is "deploy" 201 "$CODE"
ids=""
i=0
while [ $i -lt 20 ]; do
    req POST /v1/workflows/test/nap/1.0.0/instances -H 'Content-Type: application/json' -d "{\"input\": {\"n\": $i}}"
    [ "$CODE" = 201 ] || [ "$CODE" = 202 ] || fail "start $i: $CODE"
    ids="$ids $(js 'j["id"]')"
    i=$((i + 1))
done
is "20 instances started" 20 "$(echo $ids | wc -w)"

# fill the disk (bounded: 8 MiB of tmpfs)
dd if=/dev/zero of="$MNT/filler" bs=64k >/dev/null 2>&1
is "the disk is full" 0 "$(df -k "$MNT" | awk 'NR==2 {print $4}')"

sleep 4.5 # the timers have fired: the ends cannot be written
n=$(completed)
is "not every end could be written while the disk is full (some instances wait)" True "$(python3 -c "print($n < 20)")"
check "the server says on stderr that the store cannot write" grep -q "the store cannot write" "$T/one.err"
req GET /health
is "/health still answers" 200 "$CODE"
req GET "/v1/instances/$(echo $ids | cut -d' ' -f1)"
is "an instance can still be read" 200 "$CODE"
t0=$(date +%s)
req POST /v1/workflows/test/nap/1.0.0/instances -H 'Content-Type: application/json' -d '{"input": {"n": 99}}'
t1=$(date +%s)
is "a start meanwhile is answered within seconds (not left waiting behind the stuck batch)" True "$(python3 -c "print($t1 - $t0 < 10)")"
case "$CODE" in
    5??) ok "... with a server error ($CODE)" ;;
    201 | 202) ok "... or accepted ($CODE: the creation found room)" ;;
    *) fail "a start meanwhile: unexpected $CODE" ;;
esac

rm -f "$MNT/filler"
i=0
while [ "$(completed)" -lt 20 ] && [ $i -lt 150 ]; do
    sleep 0.2
    i=$((i + 1))
done
n=$(completed)
[ "$n" -ge 20 ] && ok "once there is room, all 20 complete ($n)" || fail "once there is room, all 20 complete: $n"
check "the server says the store writes again" grep -q "the store writes again" "$T/one.err"
bad=0
[ "$(echo $ids | wc -w)" = 20 ] || bad=99
for id in $ids; do
    req GET "/v1/instances/$id"
    [ "$(js 'j["status"]')" = completed ] && [ "$(js 'j["output"]["done"]')" = True ] || bad=$((bad + 1))
    req GET "/v1/instances/$id/history"
    [ "$(js 'sum(1 for e in j["items"] if e["type"].endswith("workflow.completed.v1"))')" = 1 ] || bad=$((bad + 1))
done
is "each of the 20 completed with its output, once in its history" 0 "$bad"

kill -TERM "$SPID"
wait "$SPID"
is "SIGTERM: the server exits 0" 0 "$?"
if serve two --db "$DB"; then ok "the server restarts on the same file"; else fail "the server restarts on the same file"; fi
is "after the restart the 20 are still completed" True "$(python3 -c "print($(completed) >= 20)")"
kill -TERM "$SPID"
wait "$SPID" 2>/dev/null
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$T/one.err" "$T/two.err"; then
    fail "no sanitizer report in the servers' stderr"
else
    ok "no sanitizer report in the servers' stderr"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
