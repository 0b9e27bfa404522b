#!/bin/sh
# tests/server/test_events.sh — the event bus of `conveyor serve`: CloudEvents
# in over HTTP (structured, batched, binary), `listen` (one / any / all,
# filters with `${ }` predicates, correlation, until as an expression or a
# strategy, read modes, foreach), events kept for listens that start later,
# `emit` from one instance to another, and listens, consumed events and
# timers that survive a SIGKILL of the server.
#
#   BUILD=build tests/server/test_events.sh
#
# Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

# status_of ID: the instance's status (one request)
status_of() {
    req GET "/v1/instances/$1"
    js 'j["status"]'
}
# becomes ID STATUS: polls (bounded: 15 s) until the instance has STATUS
becomes() {
    i=0
    while [ $i -lt 150 ]; do
        [ "$(status_of "$1")" = "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# start NAME INPUT: starts test/NAME:1.0.0; prints the id
start() {
    req POST "/v1/workflows/test/$1/1.0.0/instances" -H 'Content-Type: application/json' -d "$2"
    js 'j["id"]'
}
# post ID TYPE DATA: one structured event
post() {
    req POST /v1/events -H 'Content-Type: application/cloudevents+json' \
        -d "{\"specversion\":\"1.0\",\"id\":\"$1\",\"source\":\"https://test.conveyor\",\"type\":\"$2\",\"data\":$3}"
}
output_of() {
    req GET "/v1/instances/$1"
    js 'json.dumps(j["output"], sort_keys=True)'
}

# ---- the workflows
cat >"$T/claim.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: claim, version: '1.0.0'}
do:
  - waitForDocument:
      listen:
        to:
          one:
            with:
              type: com.example.document.uploaded
            correlate:
              claim:
                from: ${ .data.claimId }
                expect: ${ .claimId }
  - done:
      set:
        document: ${ .[0].name }
EOF
cat >"$T/vitals.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: vitals, version: '1.0.0'}
do:
  - watch:
      listen:
        to:
          any:
            - with:
                type: com.fake-hospital.vitals.measurements.temperature
                data: ${ .temperature > 38 }
            - with:
                type: com.fake-hospital.vitals.measurements.bpm
                data: ${ .bpm < 60 or .bpm > 100 }
          until:
            one:
              with:
                type: com.fake-hospital.patient.checked-out
EOF
cat >"$T/both.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: both, version: '1.0.0'}
do:
  - both:
      listen:
        to:
          all:
            - with: {type: com.example.part-a}
            - with: {type: com.example.part-b}
        read: envelope
  - ids:
      set: '${ [.[].id] }'
EOF
cat >"$T/count.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: count, version: '1.0.0'}
do:
  - three:
      listen:
        to:
          any:
            - with: {type: 'com\.example\.tick\..*'}
          until: (. | length) >= 3
EOF
cat >"$T/relay.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: relay, version: '1.0.0'}
do:
  - relay:
      listen:
        to:
          any:
            - with: {type: com.example.relay.in}
          until: (. | length) >= 2
      foreach:
        item: ev
        at: i
        do:
          - echo:
              emit:
                event:
                  with:
                    source: https://test.conveyor/relay
                    type: com.example.relay.out
                    data: '${ {n: $ev.n, at: $i} }'
EOF
cat >"$T/echoes.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: echoes, version: '1.0.0'}
do:
  - hear:
      listen:
        to:
          all:
            - with: {type: com.example.relay.out, data: '${ .at == 0 }'}
            - with: {type: com.example.relay.out, data: '${ .at == 1 }'}
  - sum:
      set: '${ map(.n) | add }'
EOF
cat >"$T/impatient.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: impatient, version: '1.0.0'}
do:
  - waitBriefly:
      listen:
        to:
          one:
            with: {type: com.example.never}
      timeout:
        after: PT1S
EOF
cat >"$T/nap.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: nap, version: '1.0.0'}
do:
  - nap:
      wait: PT8S
  - woke:
      set: {woke: true}
EOF

DB="$T/events.db"
if ! serve one --db "$DB"; then
    fail "the server starts"
    cat "$T/one.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
for w in claim vitals both count relay echoes impatient nap; do
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/$w.yaml"
    is "deploy $w" 201 "$CODE"
done

# ---- POST /v1/events: the three content modes, and bad input
post e-1 com.example.unrelated '{"x":1}'
is "a structured event is accepted (202)" 202 "$CODE"
is "its answer gives its id and bus sequence number" "e-1 True" "$(js 'j["events"][0]["id"] + " " + str(j["events"][0]["seq"] > 0)')"
req POST /v1/events -H 'Content-Type: application/cloudevents-batch+json' \
    -d '[{"specversion":"1.0","id":"b-1","source":"s","type":"com.example.unrelated"},{"specversion":"1.0","id":"b-2","source":"s","type":"com.example.unrelated"}]'
is "a batch is accepted" "202 2" "$CODE $(js 'j["accepted"]')"
is "a batch's sequence numbers increase" True "$(js 'j["events"][0]["seq"] < j["events"][1]["seq"]')"
req POST /v1/events -H 'ce-specversion: 1.0' -H 'ce-id: bin-1' -H 'ce-source: s' -H 'ce-type: com.example.unrelated' \
    -H 'Content-Type: application/json' -d '{"x":2}'
is "a binary-mode event (ce-* headers) is accepted" "202 bin-1" "$CODE $(js 'j["events"][0]["id"]')"
req POST /v1/events -H 'Content-Type: application/cloudevents+json' -d '{"specversion":"1.0","id":"x","source":"s"}'
is "an event without type is 400" 400 "$CODE"
check "400 is problem+json" problem_ok 400
is "the problem names the attribute" True "$(js '"type" in j["detail"]')"
req POST /v1/events -H 'Content-Type: application/cloudevents+json' -d '{"specversion":"0.3","id":"x","source":"s","type":"t"}'
is "specversion other than 1.0 is 400" 400 "$CODE"
req POST /v1/events -H 'Content-Type: application/cloudevents-batch+json' \
    -d '[{"specversion":"1.0","id":"ok","source":"s","type":"t"},{"specversion":"1.0","source":"s","type":"t"}]'
is "a batch with one bad event is 400 and names it" "400 True" "$CODE $(js '"events[1]" in j["detail"]')"
req POST /v1/events -H 'Content-Type: application/cloudevents+json' -d '{"specversion":'
is "malformed JSON is 400" 400 "$CODE"
req POST /v1/events -H 'Content-Type: text/plain' -d 'hello'
is "text/plain without ce-* headers is 415" 415 "$CODE"
req POST /v1/events -H 'Content-Type: application/cloudevents-batch+json' -d '[]'
is "an empty batch is 400" 400 "$CODE"
req GET /v1/events
is "GET /v1/events is 405" 405 "$CODE"

# ---- correlation: the event for another claim does not wake this one
A=$(start claim '{"claimId":"A-1"}')
check "a listening instance is waiting" becomes "$A" waiting
is "its current task waits for an event" event "$(js 'j["currentTasks"][0]["state"]')"
post d-1 com.example.document.uploaded '{"claimId":"Z-9","name":"other.pdf"}'
sleep 0.5
is "an event for another claim leaves it waiting" waiting "$(status_of "$A")"
post d-2 com.example.document.uploaded '{"claimId":"A-1","name":"a.pdf"}'
check "the correlated event completes it" becomes "$A" completed
is "its output comes from that event" '{"document": "a.pdf"}' "$(output_of "$A")"

# ---- an event that arrives before its listener is kept
post d-3 com.example.document.uploaded '{"claimId":"B-2","name":"early.pdf"}'
B=$(start claim '{"claimId":"B-2"}')
check "an instance started after its event completes with it" becomes "$B" completed
is "with the early event's data" '{"document": "early.pdf"}' "$(output_of "$B")"

# ---- any with `${ }` filters and an `until` strategy
V=$(start vitals '{}')
check "vitals listens" becomes "$V" waiting
post v-1 com.fake-hospital.vitals.measurements.temperature '{"temperature":39.5}'
post v-2 com.fake-hospital.vitals.measurements.temperature '{"temperature":37}'
post v-3 com.fake-hospital.vitals.measurements.bpm '{"bpm":130}'
post v-4 com.fake-hospital.patient.checked-out '{"room":12}'
check "the until strategy ends the listen" becomes "$V" completed
is "the output holds the matching events' data, not the filtered or the until event" \
    '[{"temperature": 39.5}, {"bpm": 130}]' "$(output_of "$V")"

# ---- until as an expression; a type given as a regular expression
C=$(start count '{}')
check "count listens" becomes "$C" waiting
post t-1 com.example.tick.1 '1'
post t-2 com.example.tock.2 '2'
post t-3 com.example.tick.3 '3'
sleep 0.3
is "two ticks are not enough (until: length >= 3)" waiting "$(status_of "$C")"
post t-4 com.example.tick.4 '4'
check "the third tick ends it" becomes "$C" completed
is "a regex type matched the ticks only" '[1, 3, 4]' "$(output_of "$C")"

# ---- foreach emits; another instance hears the emitted events
E=$(start echoes '{}')
R=$(start relay '{}')
check "relay listens" becomes "$R" waiting
req POST /v1/events -H 'Content-Type: application/cloudevents-batch+json' \
    -d '[{"specversion":"1.0","id":"r-1","source":"s","type":"com.example.relay.in","data":{"n":20}},{"specversion":"1.0","id":"r-2","source":"s","type":"com.example.relay.in","data":{"n":22}}]'
check "relay completes after two events" becomes "$R" completed
check "the events its foreach emitted complete the other instance" becomes "$E" completed
is "which summed what they carried" 42 "$(output_of "$E")"

# ---- a listen with a timeout
I=$(start impatient '{}')
check "a listen past its timeout faults" becomes "$I" faulted
is "with the timeout error" True "$(js '"timeout" in j["error"]["type"]')"

# ---- restart: listens, half-consumed `all`, and timers survive SIGKILL
P=$(start both '{}')
check "both listens" becomes "$P" waiting
post p-b com.example.part-b '{"part":"b"}'
sleep 0.5
N=$(start nap '{}')
check "the nap waits before the crash" becomes "$N" waiting
A2=$(start claim '{"claimId":"C-3"}')
check "a claim waits before the crash" becomes "$A2" waiting
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
if ! serve two --db "$DB"; then
    fail "the server restarts on the same database"
    cat "$T/two.err"
else
    ok "the server restarts on the same database"
fi
is "the half-matched listen still waits" waiting "$(status_of "$P")"
post p-a com.example.part-a '{"part":"a"}'
check "its second event completes it" becomes "$P" completed
is "with each event once, in the order consumed (read: envelope)" '["p-b", "p-a"]' "$(output_of "$P")"
post d-4 com.example.document.uploaded '{"claimId":"C-3","name":"after-crash.pdf"}'
check "a claim that waited across the crash completes" becomes "$A2" completed
check "the nap's timer fires after the restart" becomes "$N" completed
is "the nap went on to its next task" '{"woke": true}' "$(output_of "$N")"
req GET "/v1/instances/$N/history"
is "the nap completed once" 1 "$(js 'sum(1 for e in j["items"] if e["type"].endswith("workflow.completed.v1"))')"
req GET "/v1/instances/$P/history"
is "the both instance completed once" 1 "$(js 'sum(1 for e in j["items"] if e["type"].endswith("workflow.completed.v1"))')"

# ---- the CLI: conveyor events send
cat >"$T/stamped.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: stamped, version: '1.0.0'}
do:
  - hear:
      listen:
        to:
          one:
            with: {type: com.example.cli.stamped}
        read: envelope
  - keep:
      set: '${ .[0] }'
EOF
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/stamped.yaml"
is "deploy stamped" 201 "$CODE"
check "events --help exits 0" sh -c "'$CV' events --help | grep -q 'events send --file'"
check "events send --help exits 0" sh -c "'$CV' events send --help | grep -q 'ID SEQ'"
"$CV" events send --source s --server "$S" >/dev/null 2>"$T/cli.err"
is "events send without --type is a usage error" 2 "$?"
K=$(start claim '{"claimId":"CLI-1"}')
check "a claim for the CLI's event waits" becomes "$K" waiting
"$CV" events send --type com.example.document.uploaded --source https://test.conveyor/cli --id cli-1 \
    --data '{"claimId":"CLI-1","name":"cli.pdf"}' --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "events send exits 0" 0 "$?"
check "it prints the event's id and a sequence number" grep -qE '^cli-1 [1-9][0-9]*$' "$T/cli.out"
check "the event it sent completes the claim" becomes "$K" completed
is "with the event's data" '{"document": "cli.pdf"}' "$(output_of "$K")"
K=$(start stamped '{}')
check "a listen for the envelope waits" becomes "$K" waiting
"$CV" events send --type com.example.cli.stamped --source https://test.conveyor/cli --subject sub-1 \
    --data '{"k":[1,"two"]}' --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "events send without --id exits 0" 0 "$?"
check "it prints a new UUID v4 as the id" \
    grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12} [1-9][0-9]*$' "$T/cli.out"
check "the envelope arrives" becomes "$K" completed
req GET "/v1/instances/$K"
is "it has the printed id, specversion 1.0, the subject, JSON data" \
    "$(cut -d' ' -f1 "$T/cli.out") 1.0 sub-1 application/json {'k': [1, 'two']}" \
    "$(js '" ".join([j["output"][k] for k in ("id", "specversion", "subject", "datacontenttype")] + [str(j["output"]["data"])])')"
is "and a time in RFC 3339" True \
    "$(js '__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", j["output"]["time"]) is not None')"
K2=$(start claim '{"claimId":"CLI-2"}')
K3=$(start claim '{"claimId":"CLI-3"}')
check "two claims wait for a batch" becomes "$K3" waiting
printf '%s\n' \
    '{"id":"f-1","source":"https://test.conveyor/cli","type":"com.example.document.uploaded","data":{"claimId":"CLI-2","name":"two.pdf"}}' \
    '{"source":"https://test.conveyor/cli","type":"com.example.document.uploaded","data":{"claimId":"CLI-3","name":"three.pdf"}}' \
    >"$T/batch.jsonl"
"$CV" events send --file "$T/batch.jsonl" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "events send --file with two JSON lines exits 0" 0 "$?"
is "it prints two lines, the given id first" "2 f-1" "$(wc -l <"$T/cli.out" | tr -d ' ') $(head -1 "$T/cli.out" | cut -d' ' -f1)"
check "the second event got a UUID and a later sequence number" sh -c \
    "sed -n 2p '$T/cli.out' | grep -qE '^[0-9a-f-]{36} ' && [ \$(sed -n 2p '$T/cli.out' | cut -d' ' -f2) -gt \$(sed -n 1p '$T/cli.out' | cut -d' ' -f2) ]"
check "the batch completes the first claim" becomes "$K2" completed
check "and the second" becomes "$K3" completed
is "each with its own event" '{"document": "three.pdf"}' "$(output_of "$K3")"
"$CV" events send --type com.example.document.uploaded --source s --data '{"claimId":' --server "$S" \
    >"$T/cli.out" 2>"$T/cli.err"
is "a --data that is not JSON is a usage error" 2 "$?"
check "which says so" grep -q -- '--data is not valid JSON' "$T/cli.err"
K4=$(start claim '{"claimId":"CLI-4"}')
check "a claim waits for a batch that will be refused" becomes "$K4" waiting
printf '%s\n' '{"source":"s","type":"com.example.document.uploaded","data":{"claimId":"CLI-4","name":"no.pdf"}}' \
    '{"source":"s","data":{}}' >"$T/bad.jsonl"
"$CV" events send --file "$T/bad.jsonl" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "a file event without type exits 1" 1 "$?"
check "with the server's message" grep -q 'events\[1\] lacks type' "$T/cli.err"
check "and nothing on stdout" test ! -s "$T/cli.out"
sleep 0.5
is "the refused batch's valid event was not accepted either" waiting "$(status_of "$K4")"
"$CV" events send --type t --source s --server http://127.0.0.1:1 >"$T/cli.out" 2>"$T/cli.err"
is "a refused connection exits 1" 1 "$?"
check "with a clear message" grep -q 'cannot connect to http://127.0.0.1:1: connection refused' "$T/cli.err"

# ---- SIGTERM
kill -TERM "$SPID"
i=0
while kill -0 "$SPID" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "SIGTERM stops the server" sh -c "! kill -0 $SPID 2>/dev/null"
# ---- retention: an event older than --event-retention is no longer offered
if serve short --db "$T/short.db" --event-retention PT1S; then
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/claim.yaml"
    post old-1 com.example.document.uploaded '{"claimId":"D-4","name":"stale.pdf"}'
    sleep 2
    D=$(start claim '{"claimId":"D-4"}')
    check "a listen started after the retention does not see the expired event" becomes "$D" waiting
    sleep 0.5
    is "and keeps waiting" waiting "$(status_of "$D")"
    post new-1 com.example.document.uploaded '{"claimId":"D-4","name":"fresh.pdf"}'
    check "a fresh event completes it" becomes "$D" completed
    is "with the fresh event" '{"document": "fresh.pdf"}' "$(output_of "$D")"
    kill -TERM "$SPID"
else
    fail "a server with --event-retention PT1S starts"
fi

is "no sanitizer report in the servers' stderr" 0 "$(cat "$T"/*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ')"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
