#!/bin/sh
# tests/server/test_server.sh — `conveyor serve` driven over HTTP with curl,
# the CLI client forms (deploy, start, get, list, history, cancel, suspend,
# resume) and `conveyor serve --config FILE`.
#
#   BUILD=build tests/server/test_server.sh
#
# Every server listens on 127.0.0.1 on a port it picks (--listen
# 127.0.0.1:0, read from its stderr), every loop is bounded in time, and
# every server is killed by its PID on exit, even when a check fails.
# Checks: every route (health, ready, openapi, metrics, workflows, instances,
# history, suspend/resume/cancel, events), bad bodies (415, 413, 400), unknown ids (404),
# wrong methods (405 + Allow), idempotent starts, ?wait, pagination, the
# who-did-what note, the in-flight bound (503 + Retry-After), SIGTERM, and a
# crash test: 200 instances killed mid-run with SIGKILL all complete after a
# restart on the same database.
# Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

cat >"$T/hello.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: hello, version: '1.0.0'}
do:
  - greet:
      set:
        greeting: '${ "hello " + (.name // "world") }'
EOF
cat >"$T/hello-changed.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: hello, version: '1.0.0'}
do:
  - greet:
      set:
        greeting: bonjour
EOF
cat >"$T/slow.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: slow, version: '0.1.0'}
do:
  - pause:
      wait: {seconds: 3}
EOF
cat >"$T/fault.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: fault, version: '1.0.0'}
do:
  - boom:
      raise:
        error:
          type: https://example.com/errors/boom
          status: 418
          title: Boom
EOF
cat >"$T/invalid.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: invalid, version: '1.0.0'}
do:
  - step:
      frobnicate: {}
EOF

if serve main --db "$T/db"; then ok "serve prints its port and /health answers 200"; else
    fail "the server did not start: $(cat "$T/main.err")"
    echo "$passed passed, $failed failed"
    exit 1
fi
MAIN_PID=$SPID

# ---- one process runs a store's instances: a second server on it is refused
"$CV" serve --db "$T/db" --listen 127.0.0.1:0 >"$T/second.out" 2>"$T/second.err" &
SECOND=$!
PIDS="$PIDS $SECOND"
i=0
while kill -0 "$SECOND" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
wait "$SECOND" 2>/dev/null
is "a second server on the same db exits 1" 1 $?
check "saying that another conveyor process runs it" grep -q "in use by another conveyor process" "$T/second.err"
"$CV" run "$T/hello.yaml" --db "$T/db" >/dev/null 2>"$T/second.err"
is "so does run --db on it" 1 $?

# ---- health, readiness, OpenAPI, metrics
req GET /health
is "GET /health is 200" 200 "$CODE"
is "GET /health says ok" ok "$(js 'j["status"]')"
req GET /ready
is "GET /ready is 200" 200 "$CODE"
req GET /v1/openapi.json
is "GET /v1/openapi.json is 200" 200 "$CODE"
is "openapi.json is OpenAPI 3" 3 "$(js 'j["openapi"][0]')"
for p in /health /ready /metrics /v1/workflows '/v1/workflows/{namespace}/{name}/{version}' \
    '/v1/workflows/{namespace}/{name}/{version}/instances' /v1/instances '/v1/instances/{id}' \
    '/v1/instances/{id}/history' '/v1/instances/{id}/cancel' /v1/events; do
    is "openapi.json describes $p" True "$(js "'$p' in j['paths']")"
done

# ---- workflows
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/hello.yaml"
is "deploy YAML is 201" 201 "$CODE"
is "deploy answers namespace/name/version" test/hello/1.0.0 "$(js 'j["namespace"]+"/"+j["name"]+"/"+j["version"]')"
req POST /v1/workflows -H 'Content-Type: text/yaml' --data-binary @"$T/hello.yaml"
is "deploying the same text again is 201" 201 "$CODE"
req POST /v1/workflows -H 'Content-Type: application/x-yaml' --data-binary @"$T/hello-changed.yaml"
is "other text for a deployed version is 409" 409 "$CODE"
check "409 is problem+json" problem_ok 409
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/invalid.yaml"
is "an invalid document is 400" 400 "$CODE"
check "400 carries the validator's diagnostics in errors" test "$(js 'len(j["errors"]) > 0')" = True
check "invalid document: problem+json" problem_ok 400
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary 'do: [: {'
is "an unparseable document is 400" 400 "$CODE"
req POST /v1/workflows -H 'Content-Type: image/png' --data-binary @"$T/hello.yaml"
is "a document as image/png is 415" 415 "$CODE"
check "415 is problem+json" problem_ok 415
req POST /v1/workflows -H 'Content-Type: application/yaml'
is "an empty document is 400" 400 "$CODE"
python3 -c 'import json; print(json.dumps({"document": {"dsl": "1.0.0", "namespace": "test", "name": "jsondoc", "version": "2.0.0"}, "do": [{"s": {"set": {"a": 1}}}]}))' >"$T/doc.json"
req POST /v1/workflows -H 'Content-Type: application/json' --data-binary @"$T/doc.json"
is "deploy JSON as application/json is 201" 201 "$CODE"
head -c $((17 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/big"
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/big"
is "a 17 MiB body is 413" 413 "$CODE"
check "413 is problem+json" problem_ok 413
for f in slow fault; do
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/$f.yaml"
    is "deploy $f is 201" 201 "$CODE"
done
req GET /v1/workflows
is "GET /v1/workflows is 200" 200 "$CODE"
is "the list holds the 4 deployed workflows" 4 "$(js 'len(j["items"])')"
req GET /v1/workflows/test/hello/1.0.0
is "GET a workflow is 200" 200 "$CODE"
is "the workflow has its text" True "$(js '"hello " in j["text"] and "deployedAt" in j')"
req GET /v1/workflows/test/hello/latest
is "GET a workflow's latest version is 200" 1.0.0 "$(js 'j["version"]')"
req GET /v1/workflows/test/nope/1.0.0
is "GET an unknown workflow is 404" 404 "$CODE"
check "404 is problem+json" problem_ok 404

# ---- instances
req POST /v1/workflows/test/hello/1.0.0/instances -H 'Content-Type: application/json' -d '{"name":"api"}'
is "start is 201" 201 "$CODE"
ID1=$(js 'j["id"]')
check "start answers an id and a status" test -n "$ID1" -a -n "$(js 'j["status"]')"
req POST /v1/workflows/test/hello/1.0.0/instances
is "start with an empty body is 201 (input {})" 201 "$CODE"
ID_EMPTY=$(js 'j["id"]')
req POST /v1/workflows/test/hello/1.0.0/instances -H 'Content-Type: application/json' -d '{"name": '
is "start with malformed JSON is 400" 400 "$CODE"
check "malformed JSON: problem+json" problem_ok 400
req POST /v1/workflows/test/hello/1.0.0/instances -H 'Content-Type: application/xml' -d '<a/>'
is "start with an XML body is 415" 415 "$CODE"
req POST /v1/workflows/test/nope/1.0.0/instances -d '{}' -H 'Content-Type: application/json'
is "start of an unknown workflow is 404" 404 "$CODE"
req POST /v1/workflows/test/hello/1.0.0/instances -H 'Idempotency-Key: k-1' -H 'Content-Type: application/json' -d '{"name":"k"}'
is "start with an Idempotency-Key is 201" 201 "$CODE"
IDK=$(js 'j["id"]')
req POST /v1/workflows/test/hello/1.0.0/instances -H 'Idempotency-Key: k-1' -H 'Content-Type: application/json' -d '{"name":"k"}'
is "the same Idempotency-Key again is 200" 200 "$CODE"
is "the same Idempotency-Key returns the same instance" "$IDK" "$(js 'j["id"]')"
req POST '/v1/workflows/test/hello/latest/instances?wait=10' -H 'Content-Type: application/json' -d '{"name":"sync"}'
is "?wait=10 is 200 when the instance ends" 200 "$CODE"
is "?wait returns the output" "hello sync" "$(js 'j["output"]["greeting"]')"
is "?wait returns the status" completed "$(js 'j["status"]')"
req POST '/v1/workflows/test/slow/0.1.0/instances?wait=1'
is "?wait=1 on a 3 s workflow is 202" 202 "$CODE"
SLOW=$(js 'j["id"]')
check "the 202 carries the id" test -n "$SLOW"
req POST '/v1/workflows/test/hello/1.0.0/instances?wait=301'
is "?wait=301 is 400" 400 "$CODE"
req POST '/v1/workflows/test/hello/1.0.0/instances?wait=abc'
is "?wait=abc is 400" 400 "$CODE"
req POST '/v1/workflows/test/fault/1.0.0/instances?wait=10'
is "?wait on a faulting workflow is 200" 200 "$CODE"
is "the faulted instance carries its error" faulted/418 "$(js 'j["status"]+"/"+str(j["error"]["status"])')"

req GET "/v1/instances/$ID1"
is "GET an instance is 200" 200 "$CODE"
is "the instance has id, status, input, output, error" True \
    "$(js 'all(k in j for k in ("id","status","input","output","error"))')"
is "the instance is completed with its output" "completed/hello api" "$(js 'j["status"]+"/"+j["output"]["greeting"]')"
req GET "/v1/instances/$ID_EMPTY"
is "an empty body started with input {}" "{}" "$(js 'json.dumps(j["input"])')"
req GET /v1/instances/no-such-instance
is "GET an unknown instance is 404" 404 "$CODE"
check "unknown instance: problem+json" problem_ok 404

# pagination: walk every page of 2
req GET /v1/instances
TOTAL=$(js 'len(j["items"])')
is "GET /v1/instances lists the 6 instances started" 6 "$TOTAL"
seen=0
after=""
pages=0
while [ $pages -lt 20 ]; do
    pages=$((pages + 1))
    if [ -n "$after" ]; then req GET "/v1/instances?limit=2&after=$after"; else req GET "/v1/instances?limit=2"; fi
    [ "$CODE" = 200 ] || break
    seen=$((seen + $(js 'len(j["items"])')))
    after=$(js 'j["next"] or ""')
    [ -n "$after" ] || break
done
is "pages of 2 walk all instances once" "$TOTAL" "$seen"
is "pages of 2 take 3 pages" 3 "$pages"
req GET '/v1/instances?status=completed&namespace=test&name=hello'
is "the status/namespace/name filter keeps only matching instances" True \
    "$(js 'len(j["items"]) >= 4 and all(i["status"]=="completed" and i["name"]=="hello" for i in j["items"])')"
req GET '/v1/instances?status=faulted'
is "status=faulted finds the faulted instance" 1 "$(js 'len(j["items"])')"
for q in 'limit=0' 'limit=1001' 'limit=abc' 'status=bogus'; do
    req GET "/v1/instances?$q"
    is "GET /v1/instances?$q is 400" 400 "$CODE"
done

req GET "/v1/instances/$ID1/history"
is "GET history is 200" 200 "$CODE"
is "history records who started the instance" "127.0.0.1/instance.start" \
    "$(js '[e["data"]["who"]+"/"+e["data"]["action"] for e in j["items"] if e["type"]=="api"][0]')"
is "the who-note has a time" True "$(js '[e for e in j["items"] if e["type"]=="api"][0]["data"]["at"] > "2000"')"
req GET /v1/instances/no-such-instance/history
is "history of an unknown instance is 404" 404 "$CODE"

# history order: workflow.started, then who started it, before anything else
req GET "/v1/instances/$ID1/history"
is "history begins with workflow.started then the who-note" "io.serverlessworkflow.workflow.started.v1 api" \
    "$(js '" ".join(e["type"] for e in j["items"][:2])')"

# ---- waiting, suspend, resume, cancel
cat >"$T/sleeper.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: sleeper, version: '1.0.0'}
do:
  - nap:
      wait: PT30S
EOF
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/sleeper.yaml"
req POST /v1/workflows/test/sleeper/1.0.0/instances -H 'Content-Type: application/json' -d '{}'
SL=$(js 'j["id"]')
# status_becomes STATUS: polls the instance (bounded: 10 s)
status_becomes() {
    i=0
    while [ $i -lt 100 ]; do
        req GET "/v1/instances/$SL"
        [ "$(js 'j["status"]')" = "$1" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
check "an instance on a timer is waiting" status_becomes waiting
is "a waiting instance shows its current task" "/do/0/nap" "$(js '",".join(t["task"] for t in j["currentTasks"])')"
req POST "/v1/instances/$SL/suspend"
is "suspend is 202" 202 "$CODE"
check "then it is suspended" status_becomes suspended
req POST "/v1/instances/$SL/suspend"
is "suspending a suspended instance is 409" 409 "$CODE"
check "409 is problem+json" problem_ok 409
req POST "/v1/instances/$SL/resume"
is "resume is 202" 202 "$CODE"
check "then it waits again" status_becomes waiting
req POST "/v1/instances/$SL/cancel"
is "cancel is 202" 202 "$CODE"
check "then it is cancelled" status_becomes cancelled
req POST "/v1/instances/$SL/cancel"
is "cancelling a cancelled instance is 409" 409 "$CODE"
req POST "/v1/instances/no-such-instance/cancel"
is "cancelling an unknown instance is 404" 404 "$CODE"
req GET "/v1/instances/$SL/history"
is "the history tells who suspended, resumed and cancelled" \
    "suspended resumed cancelled" \
    "$(js '" ".join(e["type"].split(".")[3] for e in j["items"] if e["type"].split(".")[3:4] in (["suspended"], ["resumed"], ["cancelled"]))')"
is "cancelled by the caller" 127.0.0.1 \
    "$(js '[e["data"]["by"]["who"] for e in j["items"] if e["type"].endswith("cancelled.v1")][0]')"

# ---- unknown routes, wrong methods
req POST /v1/events -H 'Content-Type: application/json' -d '{}'
is "POST /v1/events of an event without attributes is 400 (tests/server/test_events.sh tests the bus)" 400 "$CODE"
check "that 400 is problem+json" problem_ok 400
req GET /v1/nothing
is "an unknown route is 404" 404 "$CODE"
req GET /
is "GET / is 404" 404 "$CODE"
req DELETE "/v1/instances/$ID1"
is "DELETE an instance is 405" 405 "$CODE"
is "405 says Allow: GET" GET "$(hdr Allow)"
req GET /v1/workflows/test/hello/1.0.0/instances
is "GET .../instances is 405" 405 "$CODE"
is "405 says Allow: POST" POST "$(hdr Allow)"
req PUT /v1/workflows
is "PUT /v1/workflows is 405 with Allow: GET, POST" "405 GET, POST" "$CODE $(hdr Allow)"

req GET /metrics
is "GET /metrics is 200" 200 "$CODE"
check "metrics count ended instances by status" grep -q '^conveyor_instances_total{status="completed"} [1-9]' "$T/body"
check "metrics count checkpoints and batches" grep -q '^conveyor_checkpoint_batches_total [1-9]' "$T/body"
check "metrics count HTTP requests by route and code" \
    grep -q '^conveyor_http_requests_total{route="/v1/instances/{id}",code="404"} [1-9]' "$T/body"
check "metrics count cancelled instances" grep -q '^conveyor_instances_total{status="cancelled"} [1-9]' "$T/body"
check "metrics have task duration histograms by task type" \
    grep -q '^conveyor_task_duration_seconds_count{type="set"} [1-9]' "$T/body"
is "a set task took under a second" 0 "$(grep -c '^conveyor_task_duration_seconds_bucket{type="set",le="1"} 0$' "$T/body")"
check "metrics have the batch size histogram" grep -q '^conveyor_checkpoint_batch_size_bucket{le="+Inf"} [1-9]' "$T/body"
check "metrics have the commit latency histogram" grep -q '^conveyor_checkpoint_commit_seconds_count [1-9]' "$T/body"
check "metrics have the queue depths" grep -q '^conveyor_queue_depth{queue="commit"} [0-9]' "$T/body"
check "metrics have the effects in flight" grep -q '^conveyor_effects_in_flight [0-9]' "$T/body"
check "metrics have resident and evicted instances" grep -q '^conveyor_instances_in_memory{where="evicted"} [0-9]' "$T/body"
is "the metrics are valid exposition lines" 0 "$(grep -v '^#' "$T/body" | grep -cvE '^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? [-+0-9.eInf]+$')"

# ---- the CLI client, in the forms the issue gives
out=$("$CV" deploy "$T/hello.yaml" --server "$S" 2>"$T/cli.err")
is "conveyor deploy FILE --server URL prints namespace/name:version" test/hello:1.0.0 "$out"
out=$("$CV" start test/hello --input '{"name":"cli"}' --server "$S" 2>"$T/cli.err")
CID=$(echo "$out" | awk '{w=$NF} END {print w}')
req GET "/v1/instances/$CID"
is "conveyor start prints the instance id as its last word" 200 "$CODE"
out=$("$CV" start test/hello:1.0.0 --input '{"name":"wait"}' --wait --server "$S" 2>"$T/cli.err")
is "conveyor start --wait prints the output" "hello wait" \
    "$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["greeting"])' 2>/dev/null)"
i=0
while [ $i -lt 50 ]; do
    "$CV" get "$CID" --server "$S" >"$T/body" 2>"$T/cli.err"
    [ "$(js 'j["status"]')" = completed ] && break
    sleep 0.1
    i=$((i + 1))
done
is "conveyor get ID prints the instance as JSON" "$CID/completed/hello cli/None" \
    "$(js 'j["id"]+"/"+j["status"]+"/"+j["output"]["greeting"]+"/"+str(j["error"])')"
"$CV" start test/fault --wait 10 --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor start --wait exits 1 when the instance faults, the error on stderr" \
    test $rc = 1 -a -n "$(grep -l 'example.com/errors/boom' "$T/cli.err")"
"$CV" start test/hello --idempotency-key cli-k --server "$S" >"$T/a" 2>&1
"$CV" start test/hello --idempotency-key cli-k --server "$S" >"$T/b" 2>&1
check "conveyor start --idempotency-key twice names the same instance" cmp -s "$T/a" "$T/b"
"$CV" list --server "$S" >"$T/cli.out" 2>"$T/cli.err"
check "conveyor list prints a line per instance" grep -q "$CID  completed  test/hello:1.0.0" "$T/cli.out"
"$CV" list --status faulted --json --server "$S" >"$T/body" 2>"$T/cli.err"
is "conveyor list --status faulted --json" faulted "$(js '",".join(sorted(set(i["status"] for i in j)))')"
"$CV" history "$CID" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
check "conveyor history prints the who-note" grep -q '"who":"127.0.0.1"' "$T/cli.out"
"$CV" get no-such-instance --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor get of an unknown id exits 1 with the problem's title" test $rc = 1 -a -n "$(grep -l 'Not Found' "$T/cli.err")"
"$CV" deploy "$T/invalid.yaml" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor deploy of an invalid document exits 1 with the diagnostics" \
    test $rc = 1 -a -n "$(grep -l 'frobnicate' "$T/cli.err")"
"$CV" start nonsense --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "conveyor start with a bad reference is a usage error (2)" 2 $?
"$CV" get x --server http://127.0.0.1:1 >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "a refused connection exits 1 with a clear message" test $rc = 1 -a -n "$(grep -l 'connection refused' "$T/cli.err")"

# cancel, suspend, resume from the CLI, on an instance waiting on a timer
# (PT30S: every step below ends long before it)
out=$("$CV" start test/sleeper --server "$S" 2>"$T/cli.err")
SL=$(echo "$out" | awk '{w=$NF} END {print w}')
check "conveyor start test/sleeper: the instance waits" status_becomes waiting
out=$("$CV" suspend "$SL" --server "$S" 2>"$T/cli.err")
is "conveyor suspend ID exits 0 and prints 'suspend requested: ID'" "0 suspend requested: $SL" "$? $out"
check "then it is suspended" status_becomes suspended
"$CV" suspend "$SL" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor suspend of a suspended instance exits 1 with the 409 on stderr" \
    test $rc = 1 -a -n "$(grep -l "^conveyor suspend: 409 Conflict: .*$SL is suspended" "$T/cli.err")"
out=$("$CV" resume "$SL" --server "$S" 2>"$T/cli.err")
is "conveyor resume ID --server URL asks the server" "0 resume requested: $SL" "$? $out"
check "then it waits again" status_becomes waiting
"$CV" resume "$SL" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor resume of an instance not suspended exits 1 with the 409 on stderr" \
    test $rc = 1 -a -n "$(grep -l "^conveyor resume: 409 Conflict: .*$SL is waiting" "$T/cli.err")"
out=$("$CV" suspend "$SL" --wait 10 --server "$S" 2>"$T/cli.err")
is "conveyor suspend --wait returns once the instance is suspended" "0 $SL suspended" "$? $(echo "$out" | tail -1)"
req GET "/v1/instances/$SL"
is "suspend --wait: the server says suspended at once" suspended "$(js 'j["status"]')"
out=$(CONVEYOR_SERVER="$S" "$CV" resume "$SL" --wait 10 2>"$T/cli.err")
is "conveyor resume ID without --db uses \$CONVEYOR_SERVER; --wait until not suspended" "0 $SL" \
    "$? $(echo "$out" | tail -1 | cut -d' ' -f1)"
req GET "/v1/instances/$SL"
check "resume --wait: the server says it is no longer suspended" test "$(js 'j["status"]')" != suspended
out=$("$CV" cancel "$SL" --wait 10 --server "$S" 2>"$T/cli.err")
is "conveyor cancel --wait prints 'cancel requested' then the cancelled status" \
    "0 cancel requested: $SL/$SL cancelled" "$? $(echo "$out" | paste -sd/)"
"$CV" cancel "$SL" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor cancel of a cancelled instance exits 1 with the 409 on stderr" \
    test $rc = 1 -a -n "$(grep -l '^conveyor cancel: 409 Conflict: ' "$T/cli.err")"
"$CV" cancel no-such-instance --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor cancel of an unknown id exits 1 with the 404 on stderr" \
    test $rc = 1 -a -n "$(grep -l '^conveyor cancel: 404 Not Found: .*no-such-instance' "$T/cli.err")"
"$CV" suspend no-such-instance --wait 5 --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "conveyor suspend --wait of an unknown id exits 1" 1 $?
"$CV" suspend --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "conveyor suspend without an ID is a usage error (2)" 2 $?
"$CV" cancel a b --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "conveyor cancel with two IDs is a usage error (2)" 2 $?
"$CV" cancel "$SL" --wait 301 --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "conveyor cancel --wait 301 is a usage error (2)" 2 $?
"$CV" resume --db "$T/local.db" "$SL" --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "conveyor resume with both --db and --server is a usage error (2)" \
    test $rc = 2 -a -n "$(grep -l 'cannot be combined' "$T/cli.err")"
"$CV" resume --help >"$T/cli.out" 2>"$T/cli.err"
check "conveyor resume --help documents both forms" \
    test -n "$(grep -l '^usage: conveyor resume --db FILE' "$T/cli.out")" -a \
    -n "$(grep -l '^       conveyor resume ID .*--server URL' "$T/cli.out")"

# ---- conveyor serve --config FILE (keys = the long options)
MAIN_S=$S
cat >"$T/serve.yaml" <<EOF
# every kind of key of conveyor serve, as a config file holds them
db: $T/cfg.db
listen: 127.0.0.1:0
workers: 1
max-inflight: 16
time-scale: 1
effect-timeout: PT30S
deny-unmapped: true
host-map: [example.com=127.0.0.1:9]
subflow: [$T/fault.yaml]
EOF
if serve_raw cfg --config "$T/serve.yaml"; then
    ok "serve --config FILE listens where the file says (127.0.0.1:0)"
    check "serve --config FILE keeps its store in the file's db" test -f "$T/cfg.db"
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/hello.yaml"
    is "serve --config: deploy is 201" 201 "$CODE"
    kill -TERM "$SPID"
    wait "$SPID" 2>/dev/null
    is "serve --config: SIGTERM, exit 0" 0 $?
else
    fail "serve --config did not start: $(cat "$T/cfg.err")"
fi
if serve_raw cfg2 --config "$T/serve.yaml" --db "$T/cfg2.db" --workers 2; then
    check "--db on the command line overrides the file's db" test -f "$T/cfg2.db"
    req GET /v1/workflows
    is "serve --config FILE --db OTHER serves OTHER (only the file's subflow in it)" test/fault \
        "$(js '",".join(w["namespace"]+"/"+w["name"] for w in j["items"])')"
    kill -TERM "$SPID"
    wait "$SPID" 2>/dev/null
else
    fail "serve --config with --db did not start: $(cat "$T/cfg2.err")"
fi
printf 'db: %s\nlisten: 127.0.0.1:0\nlisten-address: 127.0.0.1:0\n' "$T/cfg3.db" >"$T/unknown.yaml"
"$CV" serve --config "$T/unknown.yaml" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "serve --config with an unknown key exits 2 naming the file and the key" \
    test $rc = 2 -a -n "$(grep -lF "$T/unknown.yaml: unknown key 'listen-address'" "$T/cli.err")"
check "serve --config with an unknown key opens no store" test ! -e "$T/cfg3.db"
printf '{"db": "%s", "listen": "127.0.0.1:0", "workers": "two"}\n' "$T/cfg3.db" >"$T/badtype.json"
"$CV" serve --config "$T/badtype.json" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
check "serve --config (JSON) with a wrong type exits 2 naming the file and the key" \
    test $rc = 2 -a -n "$(grep -lF "$T/badtype.json: workers must be an integer" "$T/cli.err")"
S=$MAIN_S

# the slow instance answered 202 goes on and completes
i=0
while [ $i -lt 100 ]; do
    req GET "/v1/instances/$SLOW"
    [ "$(js 'j["status"]')" = completed ] && break
    sleep 0.1
    i=$((i + 1))
done
is "the instance answered 202 completes later" completed "$(js 'j["status"]')"

# ---- SIGTERM stops the server cleanly; a request waiting for an
# instance is answered 202 first
req GET '/v1/instances?name=slow&limit=1000'
slow_before=$(js 'len(j["items"])')
curl -s --max-time 20 -o "$T/waited" -w '%{http_code}' -X POST "$S/v1/workflows/test/slow/0.1.0/instances?wait=30" \
    >"$T/waited.code" &
WPID=$!
PIDS="$PIDS $WPID"
i=0 # SIGTERM once the request has started its instance (it is in flight)
while [ $i -lt 100 ]; do
    req GET '/v1/instances?name=slow&limit=1000'
    [ "$(js 'len(j["items"])')" -gt "$slow_before" ] 2>/dev/null && break
    sleep 0.1
    i=$((i + 1))
done
kill -TERM "$MAIN_PID"
wait "$WPID" 2>/dev/null
is "SIGTERM: a ?wait request in flight is answered 202" 202 "$(cat "$T/waited.code")"
i=0
while kill -0 "$MAIN_PID" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
wait "$MAIN_PID" 2>/dev/null
is "SIGTERM: the server exits 0" 0 $?

# ---- the in-flight bound: 503 with Retry-After
if serve bound --db "$T/db2" --max-inflight 1; then
    BOUND_PID=$SPID
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/slow.yaml"
    curl -s --max-time 20 -o /dev/null -X POST "$S/v1/workflows/test/slow/0.1.0/instances?wait=3" &
    CPID=$!
    PIDS="$PIDS $CPID"
    code=""
    i=0
    while [ $i -lt 20 ]; do # until the waiting request holds the one slot
        sleep 0.1
        req GET /v1/instances
        [ "$CODE" = 503 ] && break
        i=$((i + 1))
    done
    is "beyond --max-inflight requests are 503" 503 "$CODE"
    is "the 503 says Retry-After: 1" 1 "$(hdr Retry-After)"
    wait "$CPID" 2>/dev/null
    kill -TERM "$BOUND_PID"
    wait "$BOUND_PID" 2>/dev/null
else
    fail "the second server did not start: $(cat "$T/bound.err")"
fi

# ---- crash test: 200 instances, SIGKILL mid-run, restart on the same db
cat >"$T/crash.yaml" <<EOF
document: {dsl: '1.0.0', namespace: test, name: crash, version: '1.0.0'}
do:
  - step:
      run:
        shell:
          command: 'echo "\$1" >> $T/crash.log; echo "\$1"'
          arguments: ['\${ .n | tostring }']
  - rest:
      wait: {milliseconds: 1500}
  - done:
      set: {n: '\${ \$workflow.input.n }', ok: true}
EOF
if serve crash1 --db "$T/crash.db" --workers 4; then
    C1=$SPID
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/crash.yaml"
    is "deploy the crash workflow" 201 "$CODE"
    # one client process for the 200 starts, so that they all run at once
    python3 - "$S" >"$T/ids" 2>"$T/starts.err" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
for n in range(1, 201):
    c.request("POST", "/v1/workflows/test/crash/1.0.0/instances", json.dumps({"n": n}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    print(json.loads(r.read())["id"])
PY
    is "200 instances started through the API" 200 "$(grep -c . "$T/ids")"
    req GET '/v1/instances?status=completed&limit=1000'
    before=$(js 'len(j["items"])')
    kill -9 "$C1"
    wait "$C1" 2>/dev/null
    echo "     ($before of 200 had completed at the SIGKILL)"
    check "the SIGKILL caught instances mid-run" test "${before:-200}" -lt 200
    if serve crash2 --db "$T/crash.db" --workers 4; then
        ok "the server restarts on the same db"
        # GET each instance until it is completed, 60 s at most in all
        pending=$(python3 - "$S" "$T/ids" 2>&1 <<'PY'
import http.client, json, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
ids = [l.strip() for l in open(sys.argv[2]) if l.strip()]
deadline = time.time() + 60
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
left = list(ids)
while left and time.time() < deadline:
    still = []
    for i in left:
        c.request("GET", "/v1/instances/" + i)
        r = c.getresponse()
        body = json.loads(r.read())
        if body.get("status") != "completed":
            still.append(i)
    left = still
    if left:
        time.sleep(0.2)
print(len(left))
PY
)
        is "every instance completes after the restart (within 60 s)" 0 "$pending"
        req GET '/v1/instances?namespace=test&name=crash&limit=1000'
        is "the crash workflow has exactly 200 instances" 200 "$(js 'len(j["items"])')"
        req GET "/v1/instances/$(tail -1 "$T/ids")"
        is "the last instance's output is its own" '{"n": 200, "ok": true}' "$(js 'json.dumps(j["output"], sort_keys=True)')"
        missing=0
        n=0
        while [ $n -lt 200 ]; do
            n=$((n + 1))
            grep -qx "$n" "$T/crash.log" || missing=$((missing + 1))
        done
        is "every instance's shell step ran" 0 "$missing"
        kill -TERM "$SPID"
        wait "$SPID" 2>/dev/null
    else
        fail "the server did not restart: $(cat "$T/crash2.err")"
    fi
else
    fail "the crash server did not start: $(cat "$T/crash1.err")"
fi

# sanitizer builds: the servers' own reports (SIGKILLed ones cannot report)
san=$(cat "$T"/*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ')
if [ "$san" -eq 0 ]; then ok "no sanitizer report in the servers' stderr"; else
    fail "sanitizer reports in the servers' stderr:"
    cat "$T"/*.err | grep -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' | head -80
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
