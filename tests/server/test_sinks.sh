#!/bin/sh
# tests/server/test_sinks.sh — event sinks (`conveyor serve --event-sink URL`):
# the events instances emit are POSTed to the URL in order, structured mode;
# events received through the API are not echoed; a sink that is down gets
# them once it is up, also across a SIGKILL of the server (its position is in
# the store).
#
#   BUILD=build tests/server/test_sinks.sh
#
# Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

# a receiver on a given port: appends each body as a line to $T/got
cat >"$T/recv.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode()
        if self.path == "/probe":  # the test's own readiness probe, not an event
            self.send_response(204)
            self.end_headers()
            return
        with open(out, "a") as f:
            f.write(self.headers.get("Content-Type", "") + "\t" + body + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
: >"$T/got"
RPID=""
receiver_up() {
    python3 "$T/recv.py" "$PORT" "$T/got" &
    RPID=$!
    PIDS="$PIDS $RPID"
    i=0
    while [ $i -lt 50 ]; do
        curl -s -o /dev/null --max-time 1 -X POST -d '{}' "http://127.0.0.1:$PORT/probe" && break
        sleep 0.1
        i=$((i + 1))
    done
}
# got_n N: polls (bounded: 20 s) until the receiver has N events
got_n() {
    i=0
    while [ $i -lt 200 ]; do
        [ "$(wc -l <"$T/got")" -ge "$1" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
start() {
    req POST "/v1/workflows/test/ping/1.0.0/instances" -H 'Content-Type: application/json' -d "$1"
}
cat >"$T/ping.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: ping, version: '1.0.0'}
do:
  - tell:
      emit:
        event:
          with:
            source: https://test.conveyor/ping
            type: com.example.ping
            data: '${ {n: .n} }'
EOF

receiver_up
DB="$T/sinks.db"
if ! serve one --db "$DB" --event-sink "http://127.0.0.1:$PORT/events"; then
    fail "the server starts with --event-sink"
    cat "$T/one.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "the server starts with --event-sink"
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/ping.yaml"
req POST /v1/events -H 'Content-Type: application/cloudevents+json' \
    -d '{"specversion":"1.0","id":"from-outside","source":"s","type":"com.example.outside"}'
# one after the other (two workers may run instances started together in
# either order): the emit order is then 1, 2, 3, which the sink must keep
for n in 1 2 3; do
    start "{\"n\":$n}"
    got_n "$n"
done
check "the three emitted events reach the sink" got_n 3
sleep 0.5
is "and nothing else (the event received through the API is not echoed)" 3 "$(wc -l <"$T/got")"
is "structured mode" "application/cloudevents+json" "$(head -1 "$T/got" | cut -f1)"
is "in order, as emitted" "1 2 3" "$(cut -f2 "$T/got" | python3 -c 'import sys,json; print(" ".join(str(json.loads(l)["data"]["n"]) for l in sys.stdin))')"
is "each a whole CloudEvent" "com.example.ping 1.0 True" \
    "$(head -1 "$T/got" | cut -f2 | python3 -c 'import sys,json; e=json.loads(sys.stdin.read()); print(e["type"], e["specversion"], bool(e["id"]))')"

# ---- the sink is down: events wait, also across a SIGKILL of the server
kill -9 "$RPID"
wait "$RPID" 2>/dev/null
: >"$T/got" # before the receiver is up again: a delivery can come at once
for n in 4 5; do start "{\"n\":$n}"; done
sleep 1.5
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
if serve two --db "$DB" --event-sink "http://127.0.0.1:$PORT/events"; then ok "the server restarts"; else fail "the server restarts"; fi
sleep 0.5
receiver_up
check "events emitted while the sink was down arrive once it is up, after a restart" got_n 2
sleep 1.5
is "those two, in order, none of the earlier ones again" "4 5" \
    "$(cut -f2 "$T/got" | python3 -c 'import sys,json; print(" ".join(str(json.loads(l)["data"]["n"]) for l in sys.stdin))')"
check "the server said it retried" grep -q "not delivered" "$T/one.err" "$T/two.err"

req GET /health
kill -TERM "$SPID"
i=0
while kill -0 "$SPID" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "SIGTERM stops the server while its sink thread runs" sh -c "! kill -0 $SPID 2>/dev/null"
"$CV" serve --db "$T/x.db" --event-sink ftp://nope >/dev/null 2>"$T/bad.err"
is "a sink that is not an http(s) URL is a usage error" 2 "$?"
is "no sanitizer report in the servers' stderr" 0 "$(cat "$T"/*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ')"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
