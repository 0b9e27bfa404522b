#!/bin/sh
# tests/server/test_schedule.sh — `schedule` on `conveyor serve`: every,
# after, on (event-driven starts), cron, and what a restart and a new version
# do to them. Every loop is bounded in time.
#
#   BUILD=build tests/server/test_schedule.sh
#
# Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

# count_of NAME [STATUS]: how many instances of test/NAME (first 1000)
count_of() {
    q="name=$1&limit=1000"
    [ $# -gt 1 ] && q="$q&status=$2"
    req GET "/v1/instances?$q"
    js 'len(j["items"])'
}
# at_least NAME N [SECONDS]: polls until NAME has N instances
at_least() {
    i=0
    lim=$((${3:-15} * 10))
    while [ $i -lt $lim ]; do
        [ "$(count_of "$1")" -ge "$2" ] 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
post() {
    req POST /v1/events -H 'Content-Type: application/cloudevents+json' \
        -d "{\"specversion\":\"1.0\",\"id\":\"$1\",\"source\":\"https://test.conveyor\",\"type\":\"$2\",\"data\":$3}"
}
# occasions NAME: "DISTINCT NOTES INSTANCES": the distinct schedule occasions
# recorded in the histories of NAME's instances, how many notes, and how many
# instances were listed (one listing: the schedule goes on meanwhile)
occasions() {
    req GET "/v1/instances?name=$1&limit=1000"
    ids=$(js '" ".join(i["id"] for i in j["items"])')
    listed=$(js 'len(j["items"])')
    all=""
    for id in $ids; do
        req GET "/v1/instances/$id/history"
        all="$all $(js '" ".join(e["data"]["occasion"] for e in j["items"] if e["type"] == "schedule")')"
    done
    echo "$all" | tr ' ' '\n' | sed '/^$/d' >"$T/occasions"
    echo "$(sort "$T/occasions" | uniq | wc -l) $(wc -l <"$T/occasions") $listed"
}

cat >"$T/cron.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: cron, version: '1.0.0'}
schedule:
  cron: '* * * * *'
do:
  - tick:
      set: {ticked: true}
EOF
cat >"$T/every.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: every, version: '1.0.0'}
schedule:
  every: PT1S
do:
  - hi:
      set: '${ {hi: true, input: .} }'
EOF
cat >"$T/every-v2.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: every, version: '2.0.0'}
do:
  - hi:
      set: {hi: 2}
EOF
cat >"$T/after.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: after, version: '1.0.0'}
schedule:
  after: PT1S
do:
  - nap:
      wait: PT1S
EOF
cat >"$T/on.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: on, version: '1.0.0'}
schedule:
  on:
    one:
      with:
        type: com.example.heartbeat.low
        data: ${ .bpm < 50 }
do:
  - alert:
      set: '${ {patient: $workflow.input[0].data.patient, events: ($workflow.input | length)} }'
EOF
cat >"$T/onall.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: onall, version: '1.0.0'}
schedule:
  on:
    all:
      - with: {type: com.example.part-a}
      - with: {type: com.example.part-b}
do:
  - both:
      set: '${ {types: [$workflow.input[].type]} }'
EOF

DB="$T/sched.db"
if ! serve one --db "$DB"; then
    fail "the server starts"
    cat "$T/one.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "the server starts"
# an event before the on-workflow is deployed does not start it
post early-1 com.example.heartbeat.low '{"bpm":40,"patient":"early"}'
for w in cron every after on onall; do
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/$w.yaml"
    is "deploy $w" 201 "$CODE"
done
CRON_DEPLOYED=$(date +%s)

# ---- every
check "every PT1S starts instances" at_least every 3 10
req GET "/v1/instances?name=every&limit=1000"
FIRST=$(js 'j["items"][0]["id"]')
req GET "/v1/instances/$FIRST"
is "a scheduled instance completes with {} as its input" '{"hi": true, "input": {}}' "$(js 'json.dumps(j["output"], sort_keys=True)')"

# ---- on
post hb-1 com.example.heartbeat.low '{"bpm":42,"patient":"p-1"}'
post hb-2 com.example.heartbeat.low '{"bpm":70,"patient":"p-2"}'
post hb-3 com.example.other '{"bpm":30,"patient":"p-3"}'
post hb-4 com.example.heartbeat.low '{"bpm":45,"patient":"p-4"}'
check "on: one start per matching event" at_least on 2 10
sleep 1
is "on: exactly the two matching events (not the early, filtered or other-type ones)" 2 "$(count_of on)"
req GET "/v1/instances?name=on&limit=10"
ids=$(js '" ".join(i["id"] for i in j["items"])')
outs=""
for id in $ids; do
    req GET "/v1/instances/$id"
    outs="$outs $(js 'j["output"]["patient"] if j["output"] else j["status"]')"
done
is "on: the input is the array of the triggering event" " p-1 p-4" "$outs"

# ---- on with all
post pa-1 com.example.part-a '{}'
sleep 0.5
is "on all: one part is not enough" 0 "$(count_of onall)"
post pb-1 com.example.part-b '{}'
check "on all: both parts start one instance" at_least onall 1 10
req GET "/v1/instances?name=onall&limit=10"
req GET "/v1/instances/$(js 'j["items"][0]["id"]')"
i=0
while [ "$(js 'j["status"]')" != completed ] && [ $i -lt 50 ]; do
    sleep 0.1
    req GET "/v1/instances/$(js 'j["id"]')"
    i=$((i + 1))
done
is "on all: with both events as input" '["com.example.part-a", "com.example.part-b"]' "$(js 'json.dumps(j["output"]["types"])')"

# ---- after: runs never overlap, each starts >= 1 s after the previous ended
check "after: a second run starts" at_least after 2 15
req GET "/v1/instances?name=after&limit=1000"
ids=$(js '" ".join(i["id"] for i in j["items"])')
prev_end=""
gap_ok=1
for id in $ids; do
    req GET "/v1/instances/$id"
    st=$(js 'j["status"]')
    c=$(js 'j["createdAt"]')
    if [ -n "$prev_end" ] && [ "$c" -lt $((prev_end + 1000)) ]; then gap_ok=0; fi
    if [ "$st" = completed ]; then prev_end=$(js 'j["updatedAt"]'); else prev_end=""; fi
done
is "after: each run starts at least PT1S after the previous one ended" 1 "$gap_ok"
is "after: at most one run at a time" True "$(count_of after running | python3 -c 'import sys; print(int(sys.stdin.read()) <= 1)')"

# ---- restart: no occasion fires twice
post pa-2 com.example.part-a '{}' # half of an `all`, left waiting across the kill
sleep 0.5
is "on all: a second part-a alone starts nothing" 1 "$(count_of onall)"
on_before=$(count_of on)
before=$(count_of every)
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
sleep 1.5
if serve two --db "$DB"; then ok "the server restarts"; else fail "the server restarts"; fi
post pb-2 com.example.part-b '{}'
check "on all: the part-a received before the kill pairs with a part-b after it" at_least onall 2 10
sleep 0.5
is "on all: and only once (the first pair does not start again)" 2 "$(count_of onall)"
is "on: no event starts an instance again after the restart" "$on_before" "$(count_of on)"
check "every goes on after the restart" at_least every $((before + 2)) 10
o=$(occasions every)
is "every: each occasion started one instance (distinct occasions = notes)" "$(echo "$o" | cut -d' ' -f1)" "$(echo "$o" | cut -d' ' -f2)"
is "every: one note per instance" "$(echo "$o" | cut -d' ' -f3)" "$(echo "$o" | cut -d' ' -f2)"
check "after goes on after the restart" at_least after 3 15
o=$(occasions after)
is "after: each occasion started one instance" "$(echo "$o" | cut -d' ' -f1)" "$(echo "$o" | cut -d' ' -f2)"

# ---- a new version without a schedule replaces the old one's
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/every-v2.yaml"
is "deploy every 2.0.0 (no schedule)" 201 "$CODE"
sleep 0.5
n1=$(count_of every)
sleep 2.5
is "the schedule of every 1.0.0 stopped" "$n1" "$(count_of every)"

# ---- cron: a minute boundary since the deployment (at most ~60 s)
wait_s=$((62 - ($(date +%s) - CRON_DEPLOYED)))
[ $wait_s -lt 5 ] && wait_s=5
check "cron '* * * * *' starts an instance at the next whole minute" at_least cron 1 "$wait_s"
req GET "/v1/instances?name=cron&limit=10"
req GET "/v1/instances/$(js 'j["items"][0]["id"]')/history"
is "its history names the minute it fired for" True \
    "$(js '[e for e in j["items"] if e["type"] == "schedule"][0]["data"]["occasion"].split(":")[-1].endswith("0000")')"

kill -TERM "$SPID"
is "no sanitizer report in the servers' stderr" 0 "$(cat "$T"/*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ')"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
