#!/bin/sh
# tests/server/test_review.sh — `call: review` in workflows (docs/tasks.md,
# issue 5): a workflow classifies a text with a model trained here, routes a
# low-confidence item to a person, the reviewer (through the CLI and the API)
# corrects the label, and the workflow finishes with the corrected value;
# the feedback example, the override metrics and the instance's history;
# the server killed with SIGKILL while the task is open. Then escalation at
# the due time (reassign, and raise caught by the workflow), cancelling an
# instance cancels its task, a review abandoned by `fork.compete` is
# cancelled, and bad arguments fault with the specification's error types.
#
#   BUILD=build tests/server/test_review.sh
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
deploy() { # deploy NAME FILE
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$2"
    is "deploy $1" 201 "$CODE"
}
wait_status() { # wait_status ID STATUS: polls the instance for up to 15 s
    i=0
    while [ $i -lt 150 ]; do
        req GET "/v1/instances/$1"
        [ "$(js 'j["status"]')" = "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
open_task_of() { # open_task_of INSTANCE: the id of its task, whatever its status (waits up to 10 s for it)
    i=0
    while [ $i -lt 100 ]; do
        req GET "/v1/tasks?instance=$1"
        id=$(js '[t["id"] for t in j["items"] if t["instance"] == "'"$1"'"][0]')
        if [ -n "$id" ]; then
            echo "$id"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
task_get() { # task_get ID EXPR
    req GET "/v1/tasks/$1"
    js "$2"
}
metric() { # metric LINE-PREFIX: the value of the first /metrics line starting so
    curl -s --max-time 10 "$S/metrics" | grep -F "$1" | head -1 | awk '{print $NF}'
}

DB="$T/review.db"
if ! "$CV" model train --kind text --data tests/ml/tickets.jsonl --label label --name tickets --all \
    --db "$DB" >"$T/train.out" 2>"$T/train.err"; then
    fail "a text model is trained into the store"
    cat "$T/train.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "a text model is trained into the store"

cat >"$T/triage.yaml" <<'YAML'
document: {dsl: '1.0.0', namespace: test, name: triage, version: '1.0.0'}
do:
  - classify:
      call: classify
      with: {model: tickets, text: '${ .text }'}
      output:
        as: '${ {text: $input.text, threshold: $input.threshold, classification: .} }'
  - route:
      switch:
        - confident: {when: '${ .classification.confidence >= .threshold }', then: automatic}
        - unsure: {then: askPerson}
  - askPerson:
      call: review
      with:
        title: '${ "Check the label of: " + .text }'
        data: {text: '${ .text }'}
        role: support
        priority: 2
        form:
          fields:
            - name: label
              type: enum
              options: [billing, technical, shipping]
              required: true
              prediction: '${ .classification }'
              input: '${ .text }'
      output:
        as: '${ {label: .fields.label, decision: .decision, reviewer: .reviewer, by: "person"} }'
      then: end
  - automatic:
      set: {label: '${ .classification.label }', by: model}
YAML

if ! serve one --db "$DB"; then
    fail "the server starts"
    cat "$T/one.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
deploy triage "$T/triage.yaml"

# ---- confident: no person
TEXT="the refund has not arrived on my card, please stop the payment"
post_json "/v1/workflows/test/triage/1.0.0/instances?wait=30" "{\"text\":\"$TEXT\",\"threshold\":0}"
is "a confident item completes without a person" "completed model billing" \
    "$(js 'j["status"] + " " + j["output"]["by"] + " " + j["output"]["label"]')"

# ---- unsure: a review task, a restart, a correction
post_json /v1/workflows/test/triage/1.0.0/instances "{\"text\":\"$TEXT\",\"threshold\":2}"
A=$(js 'j["id"]')
TID=$(open_task_of "$A")
if [ -n "$TID" ]; then ok "an unsure item opens a review task"; else fail "an unsure item opens a review task"; fi
req GET "/v1/instances/$A"
is "... its instance waits" waiting "$(js 'j["status"]')"
task_get "$TID" 'j["title"]' >/dev/null
is "... the task names its instance, task and workflow" "$A /do/2/askPerson test/triage" \
    "$(js 'j["instance"] + " " + j["task"] + " " + j["workflow"]["namespace"] + "/" + j["workflow"]["name"]')"
is "... the form is prefilled with the model's prediction" "billing billing tickets@1 True" \
    "$(js '(lambda f: f["value"] + " " + f["predicted"] + " " + f["model"] + " " + str(0 < f["confidence"] <= 1))(j["form"]["fields"][0])')"
is "... title, role, priority, data" "Check the label of: $TEXT|support|2|$TEXT" \
    "$(js 'j["title"] + "|" + j["role"] + "|" + str(j["priority"]) + "|" + j["data"]["text"]')"
"$CV" tasks list --status open --json --server "$S" >"$T/list.json" 2>"$T/list.err"
is "tasks list --json shows it" 1 \
    "$(python3 -c 'import json,sys; print(sum(1 for t in json.load(open(sys.argv[1])) if t["id"] == sys.argv[2]))' "$T/list.json" "$TID")"

# the server dies with the task open; the instance and the task survive
sleep 0.3
kill -9 "$SPID"
if ! serve two --db "$DB"; then
    fail "the server restarts"
    cat "$T/two.err"
    echo "$passed passed, $failed failed"
    exit 1
fi
req GET "/v1/instances/$A"
is "after a SIGKILL the instance still waits" waiting "$(js 'j["status"]')"
is "... and the same task is open (not opened twice)" "open 1" \
    "$(task_get "$TID" 'j["status"]') $(req GET "/v1/tasks?status=open"; js 'sum(1 for t in j["items"] if t["instance"] == "'"$A"'")')"

i=0 # waiting for a person holds no memory of its own: the instance is evicted to the store
while [ $i -lt 50 ] && [ "$(metric 'conveyor_instances_in_memory{where="evicted"}')" != 1 ]; do
    sleep 0.1
    i=$((i + 1))
done
is "... and, waiting for a person, it is evicted from memory" 1 "$(metric 'conveyor_instances_in_memory{where="evicted"}')"

"$CV" tasks claim "$TID" --as ann --server "$S" >"$T/out" 2>"$T/err"
is "the reviewer claims it (CLI)" 0 "$?"
"$CV" tasks complete "$TID" --as bob --data '{"decision":"approve","fields":{"label":"shipping"}}' \
    --server "$S" >"$T/out" 2>"$T/err"
rc=$?
if [ "$rc" -ne 0 ]; then ok "someone else cannot complete ann's claimed task (exit $rc)"; else fail "bob completed ann's task"; fi
"$CV" tasks complete "$TID" --as ann --data '{"decision":"approve","fields":{"label":"sales"}}' \
    --server "$S" >"$T/out" 2>"$T/err"
rc=$?
if [ "$rc" -ne 0 ] && grep -q label "$T/err" "$T/out"; then ok "a label not in the form is refused, with the field named"; else fail "an invalid label: exit $rc"; fi
"$CV" tasks complete "$TID" --as ann --data '{"decision":"approve","fields":{"label":"shipping"},"comment":"a parcel"}' \
    --server "$S" >"$T/out" 2>"$T/err"
is "ann corrects the label (CLI)" 0 "$?"
if wait_status "$A" completed; then ok "the instance completes"; else fail "the instance completes: $(js 'j["status"]')"; fi
is "... with the corrected value and who decided" "shipping approve ann person" \
    "$(js '(lambda o: o["label"] + " " + o["decision"] + " " + o["reviewer"] + " " + o["by"])(j["output"])')"
post_json "/v1/tasks/$TID/complete" '{"decision":"approve","fields":{"label":"billing"}}' -H 'X-Conveyor-User: ann'
is "completing it twice is a conflict" 409 "$CODE"

req GET "/v1/instances/$A/history"
is "the history keeps the prediction, the opening and the decision" "1 1 1 ann shipping" \
    "$(js '(lambda T: (lambda c: " ".join([str(len(T("io.conveyor.model.prediction.v1"))), str(len(T("io.conveyor.review.opened.v1"))), str(len(c)), c[0]["data"]["reviewer"], c[0]["data"]["fields"]["label"]]))(T("io.conveyor.review.completed.v1")))(lambda t: [e for e in j["items"] if e["type"] == t])')"
is "the override counter moved" 1 "$(metric 'conveyor_model_overrides_total{model="tickets@1"}')"
is "the override ratio moved" 1 "$(metric 'conveyor_model_override_ratio{model="tickets@1"}')"
is "the review ratio of the workflow: one instance of two" 0.5 "$(metric 'conveyor_review_ratio{workflow="test/triage"}')"
req GET /v1/models/tickets/feedback
is "the feedback example: input, prediction, correction, reviewer" "1 billing shipping True ann $TEXT" \
    "$(js '(lambda e: " ".join([str(len(j["items"])), e["predicted"], e["corrected"], str(e["overridden"]), e["reviewer"], e["input"]]))(j["items"][0])')"
"$CV" model train --kind text --data tests/ml/tickets.jsonl --label label --name tickets --all --include-feedback \
    --server "$S" >"$T/train2.out" 2>"$T/train2.err"
rc=$?
is "model train --include-feedback --server adds the reviewer's correction" \
    "0 feedback: 1 reviewed example(s) of tickets added, 1 of them corrected by a reviewer" \
    "$rc $(grep '^feedback:' "$T/train2.out")"
is "... prints the new version as its last word" tickets@2 "$(tail -1 "$T/train2.out" | awk '{print $NF}')"
"$CV" model train --kind text --data tests/ml/tickets.jsonl --label label --name tickets --include-feedback \
    --server "$S" >"$T/train3.out" 2>"$T/train3.err"
is "... with a hold-out, the reviewed example is trained on, the held-out rows stay the file's" \
    "split: stratified hold-out 0.2, seed 42: 241 training rows, 60 held out" "$(grep '^split:' "$T/train3.out")"
req GET /v1/models/tickets/versions/2
is "... whose card counts the examples" "300 1 1" \
    "$(js '(lambda d: " ".join([str(d["rows"]), str(d["feedback"]["examples"]), str(d["feedback"]["overridden"])]))(j["data"])')"

# ---- escalation at the due time: reassigned, still waiting
cat >"$T/escalate.yaml" <<'YAML'
document: {dsl: '1.0.0', namespace: test, name: escalate, version: '1.0.0'}
do:
  - check:
      call: review
      with:
        title: Urgent check
        role: support
        due: PT1S
        escalate: {reassign: {role: supervisors}}
        form: {fields: [{name: ok, type: boolean}]}
YAML
deploy escalate "$T/escalate.yaml"
post_json /v1/workflows/test/escalate/1.0.0/instances '{}'
E=$(js 'j["id"]')
ET=$(open_task_of "$E")
if [ -n "$ET" ]; then ok "a task with a due time opens"; else fail "a task with a due time opens"; fi
i=0
while [ $i -lt 100 ] && [ "$(task_get "$ET" 'j["status"]')" != escalated ]; do
    sleep 0.1
    i=$((i + 1))
done
is "at the due time it is escalated to the supervisors" "escalated supervisors opened,escalated" \
    "$(task_get "$ET" 'j["status"] + " " + j["role"] + " " + ",".join(h["action"] for h in j["history"])')"
req GET "/v1/instances/$E"
is "... and the instance still waits" waiting "$(js 'j["status"]')"
post_json "/v1/tasks/$ET/complete" '{"decision":"reject","fields":{"ok":false}}' -H 'X-Conveyor-User: sue'
is "a supervisor completes the escalated task" 200 "$CODE"
if wait_status "$E" completed; then ok "... and the instance completes"; else fail "the escalated instance completes"; fi
is "... with the decision" "reject sue False" "$(js '(lambda o: o["decision"] + " " + o["reviewer"] + " " + str(o["fields"]["ok"]))(j["output"])')"

# ---- escalation by a timeout error, caught by the workflow
cat >"$T/raise.yaml" <<'YAML'
document: {dsl: '1.0.0', namespace: test, name: raise, version: '1.0.0'}
do:
  - guarded:
      try:
        - check:
            call: review
            with:
              title: Answer within a second
              due: {seconds: 1}
              escalate: {raise: true}
      catch:
        errors: {with: {type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout}}
        as: e
        do:
          - fallback:
              set: {decision: automatic, status: '${ $e.status }'}
YAML
deploy raise "$T/raise.yaml"
post_json /v1/workflows/test/raise/1.0.0/instances '{}'
R=$(js 'j["id"]')
RT=$(open_task_of "$R")
if wait_status "$R" completed; then ok "a review past its due time raises a timeout the workflow catches"; else fail "raise: $(js 'j')"; fi
is "... the fallback ran" "automatic 408" "$(js '(lambda o: o["decision"] + " " + str(o["status"]))(j["output"])')"
is "... and the task was cancelled" cancelled "$(task_get "$RT" 'j["status"]')"
post_json "/v1/tasks/$RT/complete" '{"decision":"approve"}' -H 'X-Conveyor-User: ann'
is "... completing it now is a conflict" 409 "$CODE"

# ---- cancelling the instance cancels its task
post_json /v1/workflows/test/triage/1.0.0/instances "{\"text\":\"cannot log in\",\"threshold\":2}"
C=$(js 'j["id"]')
CT=$(open_task_of "$C")
post_json "/v1/instances/$C/cancel" '{}'
is "cancel an instance waiting for a person" 202 "$CODE"
wait_status "$C" cancelled
i=0
while [ $i -lt 50 ] && [ "$(task_get "$CT" 'j["status"]')" != cancelled ]; do
    sleep 0.1
    i=$((i + 1))
done
is "... its task is cancelled" cancelled "$(task_get "$CT" 'j["status"]')"
post_json "/v1/tasks/$CT/complete" '{"decision":"approve","fields":{"label":"technical"}}' -H 'X-Conveyor-User: ann'
is "... completing a task of a cancelled instance is a conflict" 409 "$CODE"

# ---- a review abandoned by fork.compete is cancelled; the instance goes on
cat >"$T/race.yaml" <<'YAML'
document: {dsl: '1.0.0', namespace: test, name: race, version: '1.0.0'}
do:
  - race:
      fork:
        compete: true
        branches:
          - person:
              call: review
              with: {title: Faster than a timer?}
          - timer:
              do:
                - pause: {wait: {milliseconds: 800}}
                - said: {set: {by: timer}}
  - after:
      set: {winner: '${ .by }'}
YAML
deploy race "$T/race.yaml"
post_json /v1/workflows/test/race/1.0.0/instances '{}'
F=$(js 'j["id"]')
FT=$(open_task_of "$F")
if wait_status "$F" completed; then ok "fork.compete: the timer wins"; else fail "race: $(js 'j')"; fi
is "... the output is the timer's" timer "$(js 'j["output"]["winner"]')"
i=0
while [ $i -lt 50 ] && [ "$(task_get "$FT" 'j["status"]')" != cancelled ]; do
    sleep 0.1
    i=$((i + 1))
done
is "... the abandoned review's task is cancelled" cancelled "$(task_get "$FT" 'j["status"]')"

# ---- asked again (a loop by `then`): each pass opens a task of its own
cat >"$T/again.yaml" <<'YAML'
document: {dsl: '1.0.0', namespace: test, name: again, version: '1.0.0'}
do:
  - ask:
      call: review
      with: {title: Approve?}
  - check:
      switch:
        - rejected: {when: '${ .decision == "reject" }', then: ask}
        - approved: {then: exit}
YAML
deploy again "$T/again.yaml"
post_json /v1/workflows/test/again/1.0.0/instances '{}'
G=$(js 'j["id"]')
G1=$(open_task_of "$G")
post_json "/v1/tasks/$G1/complete" '{"decision":"reject"}' -H 'X-Conveyor-User: ann'
is "the first pass is rejected" 200 "$CODE"
i=0
G2=""
while [ $i -lt 100 ]; do
    req GET "/v1/tasks?instance=$G&status=open"
    G2=$(js '[t["id"] for t in j["items"]][0]')
    [ -n "$G2" ] && break
    sleep 0.1
    i=$((i + 1))
done
if [ -n "$G2" ] && [ "$G2" != "$G1" ]; then ok "... asking again opens a new task"; else fail "asked again: '$G1' then '$G2'"; fi
post_json "/v1/tasks/$G2/complete" '{"decision":"approve"}' -H 'X-Conveyor-User: ann'
if wait_status "$G" completed; then ok "... approved the second time, the instance completes"; else fail "again: $(js 'j')"; fi
is "... with the second decision" approve "$(js 'j["output"]["decision"]')"

# ---- bad arguments: the specification's error types, at the task
n=0
bad_case() { # bad_case NAME WITH (YAML flow) TYPE-SUFFIX DETAIL-WORD
    n=$((n + 1))
    printf '%s\n' "document: {dsl: '1.0.0', namespace: test, name: bad$n, version: '1.0.0'}" "do:" \
        "  - check:" "      call: review" "      with: $2" >"$T/bad$n.yaml"
    req POST /v1/workflows -H 'Content-Type: application/yaml' --data-binary @"$T/bad$n.yaml"
    post_json "/v1/workflows/test/bad$n/1.0.0/instances?wait=30" '{}'
    is "$1" "faulted $3 /do/0/check True" \
        "$(js '(lambda e: j["status"] + " " + e["type"].rsplit("/", 1)[1] + " " + e["instance"] + " " + str("'"$4"'" in e["detail"]))(j["error"])')"
}
bad_case "an unknown argument is a configuration error" '{title: x, colour: red}' configuration colour
bad_case "escalate without due is a configuration error" '{title: x, escalate: {raise: true}}' configuration due
bad_case "an escalate of the wrong shape" '{title: x, due: PT1H, escalate: {later: 1}}' configuration escalate
bad_case "a bad duration" '{title: x, due: PXYZ}' configuration due
bad_case "no title is a validation error" '{form: {fields: []}}' validation title
bad_case "an enum without options is a validation error" '{title: x, form: {fields: [{name: a, type: enum}]}}' validation options
n_after=$(curl -s --max-time 10 "$S/v1/tasks?status=open" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
is "... and no task was opened for them" 0 "$n_after"

kill -TERM "$SPID" 2>/dev/null # a clean stop: LeakSanitizer reports at exit (the asan build)
wait "$SPID" 2>/dev/null
is "no sanitizer report in the servers' stderr" 0 "$(cat "$T"/*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ')"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
