#!/bin/sh
# tests/ml/test_registry.sh — the model registry of `conveyor serve` (docs/api.md,
# "Models"; docs/models.md, "Registry", "Canary and shadow"), driven over HTTP
# and through `conveyor model ... --server URL`, against a real server on
# 127.0.0.1 and a port it picks.
#
#   BUILD=build tests/ml/test_registry.sh
#
# Checks: the routes (list, card, file download, upload, approve, promote,
# retire, routing, canary and shadow set and cleared) and their problems;
# every `conveyor model` form with --server prints what the --db form prints;
# a canary with share 0.25 takes between 15% and 35% of 200 instances, and an
# instance keeps its version across two calls and across a server killed and
# restarted; a shadow's prediction is in the history (marked shadow) and
# never in the output; the model metrics move; a promotion through the
# server is used at once, one made by another process (--db on the same
# file) soon after; bad input (unknown model, share 1.5, a retired or draft
# version as canary, a bad file) is a 4xx with a message and changes nothing.
# Prints `N passed, N failed`.
set -u
TEST_NAME=registry
. "$(dirname "$0")/lib.sh"
SPID=""
trap 'if [ -n "$SPID" ]; then kill -9 "$SPID" 2>/dev/null; fi; rm -rf "$T"' EXIT INT TERM

# serve: starts `conveyor serve --db $DB` on a free port; sets SPID and S.
serve() {
    : >"$T/serve.err"
    "$CV" serve --db "$DB" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
    SPID=$!
    S=""
    i=0
    while [ $i -lt 150 ] && [ -z "$S" ]; do
        port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9][0-9]*\)$|\1|p' "$T/serve.err")
        [ -n "$port" ] && S="http://127.0.0.1:$port"
        kill -0 "$SPID" 2>/dev/null || break
        [ -z "$S" ] && sleep 0.1
        i=$((i + 1))
    done
    [ -n "$S" ]
}
stop() {
    kill -TERM "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$T/serve.err"; then
        fail "sanitizer report from the server"
        sed 's/^/     server: /' "$T/serve.err" | grep -A12 -E 'ERROR|runtime error' | head -40
    fi
    SPID=""
}
# req METHOD PATH [curl args...]: body in $T/body, status in $CODE
req() {
    m=$1
    p=$2
    shift 2
    CODE=$(curl -s --max-time 60 -X "$m" -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@" "$S$p")
}
# js EXPR: a Python expression over j = the JSON of $T/body
js() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/body" "$1" 2>/dev/null
}
is() { # is NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3' $(head -c 300 "$T/body" 2>/dev/null)"; fi
}
# problem STATUS WORDS: the last answer is a problem of that status whose
# detail contains WORDS
problem() {
    if [ "$CODE" = "$1" ] && [ "$(js 'j["status"]')" = "$1" ] && js 'j["detail"]' | grep -qF -- "$2"; then
        return 0
    fi
    return 1
}
check() { # check NAME COMMAND...
    n=$1
    shift
    if "$@"; then ok "$n"; else fail "$n: $(head -c 300 "$T/body" 2>/dev/null)"; fi
}
# metric NAME{LABELS}: its value in the last /metrics answer ($T/metrics), or 0
metric() {
    v=$(grep -F "$1 " "$T/metrics" | head -1 | awk '{print $NF}')
    echo "${v:-0}"
}

# -------------------------------------------------------------------------
# a model, and a server over its store
# -------------------------------------------------------------------------
cv model train --kind text --data "$FIX/tickets.jsonl" --label label --name tickets --all --db "$DB"
expect_rc "tickets@1 is trained into the store" 0
if ! serve; then
    fail "the server starts"
    cat "$T/serve.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "the server starts ($S)"

# -------------------------------------------------------------------------
# routes
# -------------------------------------------------------------------------
req GET /v1/models
is "GET /v1/models lists the version" "200 1 tickets" "$CODE $(js 'len(j["items"])') $(js 'j["items"][0]["name"]')"
req GET /v1/models/tickets
is "GET /v1/models/NAME is the card of the version NAME means" "200 1 draft text" \
    "$CODE $(js 'j["version"]') $(js 'j["status"]') $(js 'j["kind"]')"
SHA=$(js 'j["modelSha256"]')
req GET /v1/models/tickets/versions/1
is "GET .../versions/1 is that card" "200 1" "$CODE $(js 'j["version"]')"
req GET /v1/models/tickets/versions/1/file
is "GET .../versions/1/file downloads the model file" "200 $SHA" "$CODE $(sha256sum <"$T/body" | cut -c1-64)"
is "... named by X-Conveyor-Model" "tickets@1" "$(tr -d '\r' <"$T/hdr" | sed -n 's/^X-Conveyor-Model: //ip')"
cp "$T/body" "$T/tickets.model"

# upload: the same file as a new version
python3 - "$T/tickets.model" >"$T/upload.json" <<'EOF'
import base64, json, sys
print(json.dumps({"kind": "text", "card": {"createdBy": "tester", "metrics": {"accuracy": 0.9}},
                  "file": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}))
EOF
req POST /v1/models/tickets/versions -H 'Content-Type: application/json' --data-binary @"$T/upload.json"
is "POST .../versions uploads a draft version 2" "201 2 draft tester $SHA" \
    "$CODE $(js 'j["version"]') $(js 'j["status"]') $(js 'j["createdBy"]') $(js 'j["modelSha256"]')"
req POST /v1/models/tickets/versions -d '{"kind": "text", "file": "not base64!"}'
check "an upload that is not base64 is 400" problem 400 "not base64"
req POST /v1/models/tickets/versions -d '{"kind": "text", "file": "aGVsbG8gd29ybGQ="}'
check "an upload that is not a model is 422" problem 422 "is not a text model"
req POST /v1/models/tickets/versions -d '{"kind": "image", "file": "aGVsbG8="}'
check "an upload of an unknown kind is 400" problem 400 "kind must be"
req POST "/v1/models/bad%20name/versions" -H 'Content-Type: application/json' --data-binary @"$T/upload.json"
check "an upload under a bad name is 400" problem 400 "model name"
req GET /v1/models
is "... and none of them stored anything" "2" "$(js 'len(j["items"])')"
req GET /v1/models/nope
check "an unknown model is 404" problem 404 "nope"
req GET /v1/models/tickets/versions/abc
check "a version that is not a number is 400" problem 400 "whole number"
req GET /v1/models/tickets/versions/9/file
check "the file of an unknown version is 404" problem 404 "tickets@9"
req DELETE /v1/models/tickets
is "DELETE on a model is 405" 405 "$CODE"

req POST /v1/models/tickets/versions/2/promote
check "promoting a draft is 409" problem 409 "cannot become production"
req POST /v1/models/tickets/versions/1/approve
is "approve answers the card" "200 approved" "$CODE $(js 'j["status"]')"
req POST /v1/models/tickets/versions/1/promote
is "promote answers the card" "200 production" "$CODE $(js 'j["status"]')"
req GET /v1/openapi.json
is "openapi.json describes the model routes" "True True True" \
    "$(js "'/v1/models/{name}/versions' in j['paths']") $(js "'put' in j['paths']['/v1/models/{name}/canary']") $(js "'ModelRouting' in j['components']['schemas']")"
req GET /v1/models/tickets/routing
is "GET .../routing: no canary, no shadow" "200 None None" "$CODE $(js 'j["canary"]') $(js 'j["shadow"]')"

# -------------------------------------------------------------------------
# --server forms print what the --db forms print
# -------------------------------------------------------------------------
cv model train --kind text --data "$FIX/tickets.jsonl" --label label --name tickets --seed 7 --server "$S"
expect_rc "model train --server trains here and uploads" 0
is "... printing the new NAME@VERSION last" "tickets@3" "$(awk 'END {print $NF}' "$T/out")"
req GET /v1/models/tickets/versions/3
is "... with its card (held-out metrics, the data's digest)" "True True" \
    "$(js '"accuracy" in j["metrics"]') $(js 'len(j["data"]["sha256"]) == 64')"
same() { # same NAME ARGS...: `conveyor model ARGS --server` prints what `--db` prints
    n=$1
    shift
    cv model "$@" --server "$S"
    r1=$rc
    cp "$T/out" "$T/out.server"
    cv model "$@" --db "$DB"
    if [ "$r1" = 0 ] && [ "$rc" = 0 ] && [ -s "$T/out" ] && cmp -s "$T/out" "$T/out.server"; then
        ok "$n"
    else
        fail "$n (exit $r1 / $rc)"
        diff "$T/out.server" "$T/out" | head -10
    fi
}
same "model list --server" list
same "model list --json --server" list --json
same "model get NAME --server" get tickets
same "model get NAME@VERSION --server" get tickets@3
same "model eval --server (downloads, evaluates here)" eval tickets --data "$FIX/tickets.jsonl" --label label
same "model eval --json --server" eval tickets@3 --data "$FIX/tickets.csv" --label label --json
same "model predict --server" predict tickets@3 --data "$FIX/tickets.jsonl"
cv model approve tickets@3 --server "$S"
is "model approve --server" "0 tickets@3 approved" "$rc $(cat "$T/out")"
cv model canary tickets@3 --share 0.25 --server "$S"
is "model canary NAME@V --share X --server" "0 tickets: canary tickets@3 (share 0.25), shadow none" "$rc $(cat "$T/out")"
cv model shadow tickets@2 --server "$S"
is "model shadow NAME@V --server" "0 tickets: canary tickets@3 (share 0.25), shadow tickets@2" "$rc $(cat "$T/out")"
cv model shadow tickets --clear --server "$S"
is "model shadow NAME --clear --server" "0 tickets: canary tickets@3 (share 0.25), shadow none" "$rc $(cat "$T/out")"
cv model canary tickets --clear --db "$DB"
is "model canary NAME --clear --db (the same store)" "0 tickets: canary none, shadow none" "$rc $(cat "$T/out")"
cv model canary tickets@3 --share 1.5 --server "$S"
expect_rc "model canary --share 1.5 is a usage error" 2
cv model canary tickets@9 --share 0.5 --server "$S"
if [ "$rc" = 1 ] && grep -q "no model tickets@9" "$T/err"; then ok "model canary of an unknown version --server: exit 1, says which"; else fail "canary of an unknown version: exit $rc"; fi
cv model list --server "http://127.0.0.1:1"
if [ "$rc" = 1 ] && grep -q "cannot connect" "$T/err"; then ok "no server: exit 1, says so"; else fail "no server: exit $rc"; fi
cv model list --db "$DB" --server "$S"
expect_rc "--db and --server together are a usage error" 2

# -------------------------------------------------------------------------
# bad routing input changes nothing
# -------------------------------------------------------------------------
req PUT /v1/models/tickets/canary -d '{"version": 3, "share": 0.25}'
is "PUT .../canary sets it" "200 3 0.25" "$CODE $(js 'j["canary"]["version"]') $(js 'j["canary"]["share"]')"
req GET /v1/models/tickets/routing
cp "$T/body" "$T/routing.before"
req PUT /v1/models/tickets/canary -d '{"version": 3, "share": 1.5}'
check "share 1.5 is 400 and says why" problem 400 "share must be a number from 0 to 1"
req PUT /v1/models/tickets/canary -d '{"version": 3}'
check "a canary without a share is 400" problem 400 "share is required"
req PUT /v1/models/nope/canary -d '{"version": 1, "share": 0.5}'
check "the canary of an unknown model is 404" problem 404 "no model named \"nope\""
req PUT /v1/models/tickets/canary -d '{"version": 2, "share": 0.5}'
check "a draft as canary is 409" problem 409 "approve it"
req PUT /v1/models/tickets/canary -d '{"version": 1, "share": 0.5}'
check "the production version as canary is 409" problem 409 "production version"
req POST /v1/models/tickets/versions/2/approve
req POST /v1/models/tickets/versions/2/retire
req PUT /v1/models/tickets/canary -d '{"version": 2, "share": 0.5}'
check "a retired version as canary is 409" problem 409 "retired"
req PUT /v1/models/tickets/shadow -d '{"version": 2}'
check "a retired version as shadow is 409" problem 409 "retired"
req PUT /v1/models/tickets/shadow -d '{"version": 3, "share": 0.5}'
check "a shadow with a share is 400" problem 400 "no share"
req GET /v1/models/tickets/routing
if cmp -s "$T/body" "$T/routing.before"; then ok "... and the routing is as before"; else fail "the routing changed: $(cat "$T/body")"; fi

# -------------------------------------------------------------------------
# canary: a stable share of the instances
# -------------------------------------------------------------------------
cat >"$T/triage.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: triage, version: '1.0.0'}
do:
  - first:
      call: classify
      with:
        model: tickets
        text: ${ .text }
      export:
        as: '${ {first: .model} }'
  - second:
      call: classify
      with:
        model: tickets
        text: 'please refund the double charge on my invoice'
      output:
        as: '${ {first: $context.first, second: .model, label: .label} }'
DOC
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/triage.yaml"
is "the two-classify workflow deploys" 201 "$CODE"
python3 - "$S" 200 >"$T/canary.txt" <<'EOF'
import json, sys, urllib.request
s, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    r = urllib.request.Request(s + "/v1/workflows/test/triage/1.0.0/instances?wait=30",
                               data=json.dumps({"text": "where is my parcel, tracking says nothing"}).encode(),
                               headers={"Content-Type": "application/json"}, method="POST")
    o = json.load(urllib.request.urlopen(r, timeout=60))
    out = o.get("output") or {}
    print(o["id"], o["status"], out.get("first"), out.get("second"))
EOF
n_done=$(awk '$2 == "completed"' "$T/canary.txt" | wc -l)
n_canary=$(awk '$3 == "tickets@3"' "$T/canary.txt" | wc -l)
n_prod=$(awk '$3 == "tickets@1"' "$T/canary.txt" | wc -l)
is "200 instances complete" 200 "$n_done"
if [ "$n_canary" -ge 30 ] && [ "$n_canary" -le 70 ] && [ $((n_canary + n_prod)) -eq 200 ]; then
    ok "share 0.25: $n_canary of 200 instances on the canary, the rest on production"
else
    fail "share 0.25: $n_canary on the canary, $n_prod on production, of 200"
fi
is "every instance gets the same version in its two calls" 0 "$(awk '$3 != $4' "$T/canary.txt" | wc -l)"

# the same instance keeps its version across a kill -9 and a restart
cat >"$T/slow.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: slow, version: '1.0.0'}
do:
  - first:
      call: classify
      with:
        model: tickets
        text: ${ .text }
      export:
        as: '${ {first: .model} }'
  - pause:
      wait: {seconds: 2}
  - second:
      call: classify
      with:
        model: tickets
        text: 'my app crashes at start'
      output:
        as: '${ {first: $context.first, second: .model} }'
DOC
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/slow.yaml"
: >"$T/slow.ids"
i=0
while [ $i -lt 24 ]; do
    req POST /v1/workflows/test/slow/1.0.0/instances -H "Content-Type: application/json" -d '{"text": "refund please"}'
    js 'j["id"]' >>"$T/slow.ids"
    i=$((i + 1))
done
sleep 0.7
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
SPID=""
if serve; then ok "the server restarts over the same store"; else fail "the server restarts"; fi
all_done=0
i=0
while [ $i -lt 100 ]; do
    left=0
    while read -r id; do
        req GET "/v1/instances/$id"
        [ "$(js 'j["status"]')" = completed ] || left=$((left + 1))
    done <"$T/slow.ids"
    [ $left -eq 0 ] && all_done=1 && break
    sleep 0.2
    i=$((i + 1))
done
is "the 24 instances killed in their wait complete after the restart" 1 "$all_done"
differ=0
while read -r id; do
    req GET "/v1/instances/$id"
    [ "$(js 'j["output"]["first"]')" = "$(js 'j["output"]["second"]')" ] || differ=$((differ + 1))
done <"$T/slow.ids"
is "... each with the same version before and after the restart" 0 "$differ"

# -------------------------------------------------------------------------
# shadow: in the history, never in the output; metrics
# -------------------------------------------------------------------------
curl -s --max-time 10 "$S/metrics" >"$T/metrics"
before4=$(metric 'conveyor_model_predictions_total{model="tickets",version="4",label="billing"}')
cv model train --kind text --data "$FIX/tickets.jsonl" --label label --name tickets --seed 11 --server "$S"
expect_rc "tickets@4 uploaded" 0
req PUT /v1/models/tickets/canary -d '{"version": 3, "share": 0}'
is "share 0: nobody on the canary" "200 0" "$CODE $(js 'j["canary"]["share"]')"
req PUT /v1/models/tickets/shadow -d '{"version": 4}'
is "PUT .../shadow sets a draft as shadow" "200 4" "$CODE $(js 'j["shadow"]["version"]')"
req POST "/v1/workflows/test/triage/1.0.0/instances?wait=30" -H "Content-Type: application/json" -d '{"text": "I was charged twice, refund the payment"}'
ID=$(js 'j["id"]')
is "with a shadow, the output is production's" "completed tickets@1 tickets@1" \
    "$(js 'j["status"]') $(js 'j["output"]["first"]') $(js 'j["output"]["second"]')"
req GET "/v1/instances/$ID/history"
is "the history has the two predictions and their two shadows" "2 2" \
    "$(js 'len([e for e in j["items"] if e["type"] == "io.conveyor.model.prediction.v1" and not e["data"].get("shadow")])') $(js 'len([e for e in j["items"] if e["type"] == "io.conveyor.model.prediction.v1" and e["data"].get("shadow") is True])')"
is "a shadow note names its version, input digest and output" "tickets@4 True True" \
    "$(js '[e for e in j["items"] if e["data"] and e["data"].get("shadow")][0]["data"]["model"]') $(js 'len([e for e in j["items"] if e["data"] and e["data"].get("shadow")][0]["data"]["inputDigest"]) == 64') $(js '"label" in [e for e in j["items"] if e["data"] and e["data"].get("shadow")][0]["data"]["output"]')"
curl -s --max-time 10 "$S/metrics" >"$T/metrics"
p1=$(grep -E '^conveyor_model_predictions_total\{model="tickets",version="1",' "$T/metrics" | awk '{s += $NF} END {print s + 0}')
p4=$(grep -E '^conveyor_model_predictions_total\{model="tickets",version="4",' "$T/metrics" | awk '{s += $NF} END {print s + 0}')
is "predictions_total counts the shadow's 2 predictions under version 4" "2" "$((p4 - before4))"
if [ "$p1" -ge 2 ]; then ok "predictions_total counts production's ($p1 since the restart)"; else fail "predictions_total v1: $p1"; fi
is "confidence histogram count = predictions (v4)" "$p4" \
    "$(metric 'conveyor_model_confidence_count{model="tickets",version="4"}')"
is "inference latency histogram count = predictions (v4)" "$p4" \
    "$(metric 'conveyor_model_inference_seconds_count{model="tickets",version="4"}')"
grep -q '^conveyor_model_inference_seconds_bucket{model="tickets",version="1",le="+Inf"}' "$T/metrics" &&
    grep -q '^# TYPE conveyor_model_confidence histogram' "$T/metrics" &&
    ok "the histograms are served with their TYPE and +Inf buckets" || fail "histogram lines missing"
req DELETE /v1/models/tickets/shadow
is "DELETE .../shadow clears it" "200 None" "$CODE $(js 'j["shadow"]')"

# -------------------------------------------------------------------------
# the cache follows the registry: this process at once, another soon
# -------------------------------------------------------------------------
cv model promote tickets@3 --server "$S"
is "promote tickets@3 through the server" "0 tickets@3 production" "$rc $(cat "$T/out")"
req GET /v1/models/tickets/routing
is "... which ends its canary" "None" "$(js 'j["canary"]')"
req POST "/v1/workflows/test/triage/1.0.0/instances?wait=30" -H "Content-Type: application/json" -d '{"text": "parcel lost"}'
is "the next instance uses it at once" "tickets@3" "$(js 'j["output"]["first"]')"
cv model approve tickets@4 --db "$DB"
cv model promote tickets@4 --db "$DB"
is "another process promotes tickets@4 on the same file" "0 tickets@4 production" "$rc $(cat "$T/out")"
seen=""
i=0
while [ $i -lt 50 ]; do
    req POST "/v1/workflows/test/triage/1.0.0/instances?wait=30" -H "Content-Type: application/json" -d '{"text": "parcel lost"}'
    seen=$(js 'j["output"]["first"]')
    [ "$seen" = "tickets@4" ] && break
    sleep 0.2
    i=$((i + 1))
done
is "... and the server's instances use it soon after" "tickets@4" "$seen"

# -------------------------------------------------------------------------
# stored extractors through the server: upload, `call: extract` with
# `model`, a shadow, a bad definition refused with its line
# -------------------------------------------------------------------------
INV="$ROOT/tests/extract/invoice.yaml"
cv model upload --kind extractor --file "$INV" --name invoices --server "$S"
is "model upload --kind extractor --server prints NAME@VERSION last" "0 invoices@1" "$rc $(awk 'END {print $NF}' "$T/out")"
req GET /v1/models/invoices/versions/1
is "its card: kind extractor, the server's digest of the definition, the field names" \
    "200 extractor $(sha256sum <"$INV" | cut -c1-64) total,due,iban,contact,phone,ref,po" \
    "$CODE $(js 'j["kind"]') $(js 'j["modelSha256"]') $(js '",".join(j["fields"])')"
req GET /v1/models/invoices/versions/1/file
is "its file is the definition as written" "200 $(sha256sum <"$INV" | cut -c1-64)" "$CODE $(sha256sum <"$T/body" | cut -c1-64)"
same "model get NAME (an extractor) --server" get invoices@1
printf 'fields:\n  - name: total\n    kind: money\n    required: true\n' >"$T/total.yaml"
cv model upload --kind extractor --file "$T/total.yaml" --name invoices --server "$S"
is "a second version" "0 invoices@2" "$rc $(awk 'END {print $NF}' "$T/out")"
python3 - >"$T/badext.json" <<'EOF2'
import base64, json
d = b"fields:\n  - name: total\n    kind: money\n  - name: x\n    kind: colour\n"
print(json.dumps({"kind": "extractor", "card": {"file": "bad.yaml"}, "file": base64.b64encode(d).decode()}))
EOF2
req POST /v1/models/invoices/versions -H 'Content-Type: application/json' --data-binary @"$T/badext.json"
check "POST of a definition that does not compile is 422 with its line" problem 422 'bad.yaml:5:11: field "x": unknown kind colour'
printf 'fields: [\n' >"$T/syntax.yaml"
cv model upload --kind extractor --file "$T/syntax.yaml" --name invoices --server "$S"
if [ "$rc" = 1 ] && grep -qE 'syntax.yaml:[0-9]+:[0-9]+: ' "$T/err"; then ok "upload --server of a YAML syntax error: exit 1, located"; else fail "upload of a syntax error: exit $rc"; fi
req GET /v1/models
is "... and neither stored a version" "2" "$(js 'len([m for m in j["items"] if m["name"] == "invoices"])')"
req POST /v1/models/invoices/versions/2/approve
req POST /v1/models/invoices/versions/2/promote
is "invoices@2 promoted through the routes" "200 production" "$CODE $(js 'j["status"]')"
req PUT /v1/models/invoices/shadow -d '{"version": 1}'
is "invoices@1 (a draft) shadows it" "200 1" "$CODE $(js 'j["shadow"]["version"]')"
cat >"$T/inv.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: inv, version: '1.0.0'}
do:
  - extract:
      call: extract
      with: {model: invoices, text: '${ .text }'}
DOC
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/inv.yaml"
req POST "/v1/workflows/test/inv/1.0.0/instances?wait=30" -H "Content-Type: application/json" \
    -d '{"text": "Ref: ab-12345, total EUR 1.250,00 due 15/03/2024, PO 778"}'
ID=$(js 'j["id"]')
is "extract with model: the production extractor's fields and name" "completed invoices@2 1250 total" \
    "$(js 'j["status"]') $(js 'j["output"]["model"]') $(js 'j["output"]["fields"]["total"]["amount"]') $(js '",".join(j["output"]["fields"])')"
req GET "/v1/instances/$ID/history"
is "the history has the extraction and its shadow's (invoices@1, all 7 fields judged)" "invoices@2 invoices@1 []" \
    "$(js '[e["data"]["model"] for e in j["items"] if e["type"] == "io.conveyor.model.prediction.v1" and not e["data"].get("shadow")][0]') $(js '[e["data"] for e in j["items"] if e["type"] == "io.conveyor.model.prediction.v1" and e["data"].get("shadow")][0]["model"]') $(js '[e["data"] for e in j["items"] if e["type"] == "io.conveyor.model.prediction.v1" and e["data"].get("shadow")][0]["output"]["missing"]')"
curl -s --max-time 10 "$S/metrics" >"$T/metrics"
is "metrics count the extraction as complete, the shadow's too" "1 1" \
    "$(metric 'conveyor_model_predictions_total{model="invoices",version="2",label="complete"}') $(metric 'conveyor_model_predictions_total{model="invoices",version="1",label="complete"}')"

stop
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
