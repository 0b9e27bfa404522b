#!/bin/sh
# tests/server/test_tasks.sh — review tasks over the API and the CLI
# (docs/tasks.md): raising standalone tasks (POST /v1/tasks), the queue
# order and its filters and pages, claim conflicts and take-overs, release,
# completion validated against the form (422 with field-level messages,
# unknown fields), completing twice or someone else's claimed task (409),
# nothing changed on a 4xx, reassign, the completion event on the bus that a
# workflow's listen receives (the contract `call: review` builds on), the
# feedback examples and the metrics, the inbox's static files, and the CLI
# forms scripts depend on; and a SIGKILL of the server in the middle.
#
#   BUILD=build tests/server/test_tasks.sh
#
# Prints `N passed, N failed`.
set -u
. "$(dirname "$0")/lib.sh"

post_json() { # post_json PATH JSON [curl args...]
    p=$1
    d=$2
    shift 2
    req POST "$p" -H 'Content-Type: application/json' -d "$d" "$@"
}
task_field() { # task_field ID EXPR: a Python expression over the task j
    req GET "/v1/tasks/$1"
    js "$2"
}

cat >"$T/waiter.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: waiter, version: '1.0.0'}
do:
  - waitForReview:
      listen:
        to:
          one:
            with:
              type: io.conveyor.task.completed.v1
              subject: t-wait
  - done:
      set:
        decision: ${ .[0].decision }
        label: ${ .[0].fields.label }
        reviewer: ${ .[0].reviewer }
EOF

DB="$T/tasks.db"
if ! serve one --db "$DB"; then
    fail "the server starts"
    cat "$T/one.err"
    echo "$passed passed, $failed failed"
    exit 1
fi

FORM='{"decisions":["approve","reject"],"fields":[
 {"name":"label","type":"enum","options":["invoice","receipt","other"],"required":true,
  "value":"receipt","model":"doctype@3","predicted":"receipt","confidence":0.62},
 {"name":"amount","type":"money","value":{"amount":12.5,"currency":"EUR"}},
 {"name":"date","type":"date"},
 {"name":"count","type":"number"},
 {"name":"urgent","type":"boolean"},
 {"name":"note","type":"longtext"},
 {"name":"ref","type":"text","required":true}]}'

# ---- raising tasks
post_json /v1/tasks "{\"id\":\"t-1\",\"title\":\"Check receipt 1\",\"role\":\"clerks\",\"priority\":1,
  \"due\":\"2030-01-02T10:00:00Z\",\"data\":{\"text\":\"Coffee 3.50\"},\"form\":$FORM}"
is "POST /v1/tasks: 201" 201 "$CODE"
is "a new task is open" open "$(js 'j["status"]')"
is "a standalone task has no instance" None "$(js 'j["instance"]')"
is "the form's decisions are kept" "['approve', 'reject']" "$(js 'j["form"]["decisions"]')"
post_json /v1/tasks '{"id":"t-1","title":"again"}'
is "raising the same id again: 200, the first task" "200 Check receipt 1" "$CODE $(js 'j["title"]')"
post_json /v1/tasks '{"title":"Urgent one","priority":5,"role":"clerks","form":{"fields":[]}}'
is "a task without id gets one" 201 "$CODE"
T2=$(js 'j["id"]')
post_json /v1/tasks '{"id":"t-3","title":"Due soon","role":"clerks","due":"2029-01-01T00:00:00Z","priority":1}'
is "third task" 201 "$CODE"
post_json /v1/tasks '{"id":"t-4","title":"Other role","role":"auditors"}'
post_json /v1/tasks '{"title":"bad","form":{"fields":[{"name":"x","type":"colour"}]}}'
is "a form with an unknown field type: 422" 422 "$CODE"
check "... as problem+json" problem_ok 422
post_json /v1/tasks '{"title":"bad","instance":"i-1"}'
is "an instance given to POST /v1/tasks: 422" 422 "$CODE"
post_json /v1/tasks '{"form":{"fields":[]}}'
is "a task without a title: 422" 422 "$CODE"
post_json /v1/tasks '{"title":"x","due":"tomorrow"}'
is "a due time that is not RFC 3339: 422" 422 "$CODE"
post_json /v1/tasks '[1]'
is "a body that is not an object: 400" 400 "$CODE"

# ---- the queue
req GET "/v1/tasks?status=open&role=clerks"
is "the queue: priority first, then due time" "['$T2', 't-3', 't-1']" "$(js '[t["id"] for t in j["items"]]')"
req GET "/v1/tasks?limit=2"
is "a page of 2 has a cursor" "2 True" "$(js 'str(len(j["items"])) + " " + str(j["next"] is not None)')"
NEXT=$(js 'j["next"]')
req GET "/v1/tasks?limit=2&after=$NEXT"
is "the next page holds the rest" "['t-1', 't-4']" "$(js '[t["id"] for t in j["items"]]')"
is "... and no cursor" None "$(js 'j["next"]')"
req GET "/v1/tasks?status=bogus"
is "an unknown status filter: 400" 400 "$CODE"
req GET "/v1/tasks/nope"
is "GET an unknown task: 404" 404 "$CODE"
check "... as problem+json" problem_ok 404

# ---- claims
post_json /v1/tasks/t-1/claim '{"user":"alice"}'
is "alice claims t-1" "200 claimed alice" "$CODE $(js 'j["status"]') $(js 'j["claimedBy"]')"
post_json /v1/tasks/t-1/claim '{}' -H 'X-Conveyor-User: bob'
is "bob's claim of alice's task: 409" 409 "$CODE"
check "... as problem+json naming alice" sh -c "grep -q alice '$T/body'"
post_json /v1/tasks/t-1/claim '{}'
is "a claim without a user: 400" 400 "$CODE"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"ref":"R1"}}' -H 'X-Conveyor-User: bob'
is "bob completing alice's claimed task: 409" 409 "$CODE"
post_json /v1/tasks/t-1/release '{}' -H 'X-Conveyor-User: bob'
is "bob releasing alice's claim: 409" 409 "$CODE"
is "... the task is still alice's" "claimed alice" "$(task_field t-1 'j["status"] + " " + j["claimedBy"]')"
post_json /v1/tasks/t-1/release '{"user":"alice"}'
is "alice releases" "200 open" "$CODE $(js 'j["status"]')"
post_json /v1/tasks/t-1/claim '{"user":"alice"}'

# ---- completion against the form
before=$(task_field t-1 'json.dumps(j, sort_keys=True)')
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"label":"banana","amount":{"amount":"x","currency":"EUR"},"date":"2026-02-30","count":"3","urgent":"yes","ref":"R1"}}' -H 'X-Conveyor-User: alice'
is "invalid field values: 422" 422 "$CODE"
check "... problem+json" problem_ok 422
is "... one message per bad field" "['amount', 'count', 'date', 'label', 'urgent']" "$(js 'sorted(e["field"] for e in j["errors"])')"
is "... messages say why" True "$(js 'all(len(e["message"]) > 3 for e in j["errors"])')"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"ref":"R1","colour":"red"}}' -H 'X-Conveyor-User: alice'
is "an unknown field: 422" "422 ['colour']" "$CODE $(js '[e["field"] for e in j["errors"]]')"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{}}' -H 'X-Conveyor-User: alice'
is "a required field missing: 422" "422 ['ref']" "$CODE $(js '[e["field"] for e in j["errors"]]')"
post_json /v1/tasks/t-1/complete '{"decision":"maybe","fields":{"ref":"R1"}}' -H 'X-Conveyor-User: alice'
is "a decision not in the form: 422" "422 ['decision']" "$CODE $(js '[e["field"] for e in j["errors"]]')"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"ref":"R1"},"extra":1}' -H 'X-Conveyor-User: alice'
is "an unknown member of the completion: 422" 422 "$CODE"
is "nothing changed by the refused completions" "$before" "$(task_field t-1 'json.dumps(j, sort_keys=True)')"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"label":"invoice","ref":"R1","date":"2026-02-28","amount":{"amount":3.5,"currency":"EUR"}},"comment":"it is an invoice"}' -H 'X-Conveyor-User: alice'
is "alice completes t-1" "200 completed" "$CODE $(js 'j["status"]')"
is "... the completion" "approve invoice alice it is an invoice" "$(js 'j["completion"]["decision"] + " " + j["completion"]["fields"]["label"] + " " + j["completion"]["reviewer"] + " " + j["completion"]["comment"]')"
is "... prefilled values stand" "None" "$(js 'j["completion"]["fields"]["count"]')"
is "... the history says who did what" "['opened', 'claimed', 'released', 'claimed', 'completed']" "$(js '[h["action"] for h in j["history"]]')"
post_json /v1/tasks/t-1/complete '{"decision":"approve","fields":{"ref":"R1"}}' -H 'X-Conveyor-User: alice'
is "completing twice: 409" 409 "$CODE"
check "... problem+json" problem_ok 409
post_json /v1/tasks/t-1/claim '{"user":"bob"}'
is "claiming a completed task: 409" 409 "$CODE"

# ---- the completion event, and a workflow that waits for it
req GET "/v1/events?after=0" >/dev/null 2>&1
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/waiter.yaml"
is "deploy waiter" 201 "$CODE"
post_json /v1/workflows/test/waiter/1.0.0/instances '{}'
WID=$(js 'j["id"]')
post_json /v1/tasks '{"id":"t-wait","title":"Wait","form":{"fields":[{"name":"label","type":"text","model":"doctype@3","predicted":"receipt"}]}}'
"$CV" tasks claim t-wait --as carol --server "$S" >/dev/null
is "tasks claim --as: exit 0" 0 $?
"$CV" tasks complete t-wait --as carol --data '{"decision":"reject","fields":{"label":"other"}}' --server "$S" >"$T/cli.out" 2>"$T/cli.err"
is "tasks complete --as --data: exit 0" 0 $?
i=0
st=""
while [ $i -lt 100 ]; do
    req GET "/v1/instances/$WID"
    st=$(js 'j["status"]')
    [ "$st" = completed ] && break
    sleep 0.1
    i=$((i + 1))
done
is "the waiting workflow got the completion event" "completed reject other carol" "$st $(js 'j["output"]["decision"] + " " + j["output"]["label"] + " " + j["output"]["reviewer"]')"

# ---- CLI
"$CV" tasks complete t-3 --as dave --data '{"decision":"approve","fields":{"nope":1}}' --server "$S" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
is "tasks complete with an unknown field: exit 1" 1 "$rc"
check "... prints the field and its message" grep -q "^  nope: is not a field of this form" "$T/cli.err"
"$CV" tasks claim t-3 --as dave --server "$S" >/dev/null 2>&1
"$CV" tasks claim t-3 --as erin --server "$S" >/dev/null 2>"$T/cli.err"
is "tasks claim of a claimed task: exit 1" 1 $?
check "... says who holds it" grep -q dave "$T/cli.err"
"$CV" tasks list --status claimed --json --server "$S" >"$T/body"
is "tasks list --status claimed --json" "['t-3']" "$(js '[t["id"] for t in j]')"
is "... each with id, instance, title, status, form, data" True "$(js 'all(all(k in t for k in ("id","instance","title","status","form","data")) for t in j)')"
"$CV" tasks list --status open --server "$S" >"$T/list.txt"
check "tasks list (text) shows the open queue" grep -q "Urgent one" "$T/list.txt"
"$CV" tasks list --status completed --json --server "$S" >"$T/body"
is "tasks list --status completed" "['t-1', 't-wait']" "$(js 'sorted(t["id"] for t in j)')"
"$CV" tasks claim --server "$S" >/dev/null 2>&1
is "tasks claim without ID: exit 2" 2 $?
"$CV" tasks complete t-3 --as dave --data 'nope' --server "$S" >/dev/null 2>&1
is "tasks complete with --data not JSON: exit 2" 2 $?
"$CV" tasks --help | grep -q "tasks complete ID --as USER --data JSON"
is "tasks --help shows the forms" 0 $?
"$CV" tasks reassign t-3 --role auditors --as lead --server "$S" >"$T/body"
is "tasks reassign: open again, new role, no claim" "open auditors None" "$(js 'j["status"] + " " + j["role"] + " " + str(j["claimedBy"])')"

# ---- feedback and metrics
req GET /metrics
check "metrics: reviews per model" grep -q 'conveyor_model_reviews_total{model="doctype@3"} 2' "$T/body"
check "metrics: overrides per model" grep -q 'conveyor_model_overrides_total{model="doctype@3"} 2' "$T/body"
check "metrics: override ratio" grep -q 'conveyor_model_override_ratio{model="doctype@3"} 1' "$T/body"
check "metrics: open tasks by role" grep -q 'conveyor_review_tasks_open{role="auditors"} 2' "$T/body"
check "metrics: completed tasks" grep -q 'conveyor_review_tasks_completed_total{workflow=""} 2' "$T/body"
n=$(sqlite3 "$DB" "SELECT count(*) FROM feedback WHERE overridden = 1 AND model = 'doctype@3'" 2>/dev/null || echo skip)
if [ "$n" = skip ]; then ok "feedback rows (sqlite3 not installed: skipped)"; else is "two labeled examples stored" 2 "$n"; fi

# ---- the inbox's files
req GET /inbox/
is "GET /inbox/: 200 HTML" "200 text/html; charset=utf-8" "$CODE $(hdr Content-Type)"
check "... with a Content-Security-Policy" sh -c "tr -d '\r' <'$T/hdr' | grep -qi '^content-security-policy: default-src .self.'"
req GET /inbox
is "GET /inbox redirects to /inbox/" "308 /inbox/" "$CODE $(hdr Location)"
req GET /inbox/nothing.js
is "an unknown inbox file: 404" 404 "$CODE"
req GET /v1/openapi.json
check "the OpenAPI description lists /v1/tasks" sh -c "grep -q '/v1/tasks/{id}/complete' '$T/body'"

# ---- a SIGKILL in the middle: tasks, claims and the waiting instance survive
sed 's/t-wait/t-restart/; s/name: waiter,/name: waiter2,/' "$T/waiter.yaml" >"$T/waiter2.yaml"
req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/waiter2.yaml"
is "deploy waiter2" 201 "$CODE"
post_json /v1/workflows/test/waiter2/1.0.0/instances '{}'
W2=$(js 'j["id"]')
post_json /v1/tasks '{"id":"t-restart","title":"Across a restart","form":{"fields":[{"name":"label","type":"text"}]}}'
post_json /v1/tasks/t-restart/claim '{"user":"frank"}'
sleep 0.3
kill -9 "$SPID"
if ! serve two --db "$DB"; then
    fail "the server restarts"
    cat "$T/two.err"
else
    is "after the restart the claim holds" "claimed frank" "$(task_field t-restart 'j["status"] + " " + j["claimedBy"]')"
    is "... completed tasks stay completed" completed "$(task_field t-1 'j["status"]')"
    post_json /v1/tasks/t-restart/complete '{"decision":"approve","fields":{"label":"fine"}}' -H 'X-Conveyor-User: frank'
    is "complete after the restart" 200 "$CODE"
    i=0
    st=""
    while [ $i -lt 100 ]; do
        req GET "/v1/instances/$W2"
        st=$(js 'j["status"]')
        [ "$st" = completed ] && break
        sleep 0.1
        i=$((i + 1))
    done
    is "the instance waiting since before the restart gets the decision" "completed approve fine frank" \
        "$st $(js 'j["output"]["decision"] + " " + j["output"]["label"] + " " + j["output"]["reviewer"]')"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
