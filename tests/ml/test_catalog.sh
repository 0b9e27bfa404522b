#!/bin/sh
# tests/ml/test_catalog.sh — the default catalog's `call: classify`, `extract` and `score` in
# workflows run by `conveyor run --db`, with a model trained in the test
# (`conveyor model train`) into the same store.
#
#   BUILD=build tests/ml/test_catalog.sh
#
# Checks: documents calling `classify` and `score` validate (they are not in
# use.functions);
# the output is {label, confidence, scores, model: NAME@VERSION} and a switch
# routes on the confidence; `NAME` means the production version once one is
# promoted, `NAME@VERSION` that version; an empty text is a validation error
# (400) and an unknown or retired model a configuration error (404), located
# at the task, which `try`/`catch` can turn into a fallback. Prints
# `N passed, N failed`.
set -u
TEST_NAME=catalog
. "$(dirname "$0")/lib.sh"
# py NAME EXPR — EXPR over `out` (stdout parsed as JSON, or None) and `err`
# (the last JSON line of stderr, or None) prints True.
py() {
    r=$(python3 -c "
import json
def last_json(path):
    for line in reversed(open(path, encoding='utf-8').read().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            pass
    return None
try:
    out = json.load(open('$T/out', encoding='utf-8'))
except ValueError:
    out = None
err = last_json('$T/err')
print(bool($2))" 2>&1)
    if [ "$r" = True ]; then ok "$1"; else fail "$1 ($r)"; fi
}

cv model train --kind text --data "$FIX/tickets.jsonl" --label label --name tickets --all --db "$DB"
expect_rc "a text model is trained into the store" 0

# version V of the triage document calling `classify` on MODEL
triage() {
    cat >"$T/triage-$1.yaml" <<DOC
document: {dsl: '1.0.0', namespace: test, name: triage, version: '$1'}
do:
  - classify:
      call: classify
      with:
        model: $2
        text: \${ .text }
  - route:
      switch:
        - sure:
            when: \${ .confidence >= 0.5 }
            then: auto
        - unsure:
            then: person
  - person:
      set:
        routed: person
        label: \${ .label }
        model: \${ .model }
      then: end
  - auto:
      set:
        routed: auto
        label: \${ .label }
        model: \${ .model }
        confidence: \${ .confidence }
DOC
}

triage 1.0.0 tickets
cv validate "$T/triage-1.0.0.yaml"
expect_rc "a document calling classify (default catalog) validates" 0

cv run "$T/triage-1.0.0.yaml" --db "$DB" --input '{"text": "I was charged twice on my invoice, please refund the payment"}'
expect_rc "classify runs in a workflow" 0
py "it labels a billing text billing, names the model, and the switch routes on the confidence" \
    "out['label'] == 'billing' and out['model'] == 'tickets@1' and out['routed'] == ('auto' if out.get('confidence', 0) >= 0.5 else 'person')"
cv run "$T/triage-1.0.0.yaml" --db "$DB" --input '{"text": "the app crashes at start with an error message"}'
py "a technical text is labelled technical" "out['label'] == 'technical'"

# a second version; a bare name then means the production one
cv model train --kind text --data "$FIX/tickets.csv" --label label --name tickets --all --db "$DB"
expect_rc "a second version is trained" 0
cv model approve tickets@1 --db "$DB"
cv model promote tickets@1 --db "$DB"
expect_rc "version 1 is promoted to production" 0
triage 1.1.0 tickets
cv run "$T/triage-1.1.0.yaml" --db "$DB" --input '{"text": "refund my invoice"}'
py "a bare name is the production version (1, not the newer draft 2)" "out['model'] == 'tickets@1'"
triage 1.2.0 tickets@2
cv run "$T/triage-1.2.0.yaml" --db "$DB" --input '{"text": "refund my invoice"}'
py "NAME@VERSION is that version" "out['model'] == 'tickets@2'"

# errors: located at the task, of the specification's types
cv run "$T/triage-1.0.0.yaml" --db "$DB" --input '{"text": "   "}'
expect_rc "an empty text faults the instance" 1
py "an empty text is a validation error (400) at /do/0/classify" \
    "err['type'].endswith('/validation') and err['status'] == 400 and err['instance'] == '/do/0/classify'"
triage 1.3.0 no-such-model
cv run "$T/triage-1.3.0.yaml" --db "$DB" --input '{"text": "hello"}'
expect_rc "an unknown model faults the instance" 1
py "an unknown model is a configuration error (404) naming it" \
    "err['type'].endswith('/configuration') and err['status'] == 404 and 'no-such-model' in err['detail']"
cv model retire tickets@2 --db "$DB"
cv run "$T/triage-1.2.0.yaml" --db "$DB" --input '{"text": "refund my invoice"}'
py "a retired version is a configuration error (404) that says so" \
    "err['type'].endswith('/configuration') and err['status'] == 404 and 'retired' in err['detail']"

# a workflow can catch it and fall back to a rule
cat >"$T/fallback.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: fallback, version: '1.0.0'}
do:
  - guarded:
      try:
        - classify:
            call: classify
            with: {model: no-such-model, text: '${ .text }'}
      catch:
        errors:
          with: {type: https://serverlessworkflow.io/spec/1.0.0/errors/configuration}
        as: problem
        do:
          - rule:
              set: {label: '${ if (.text | test("refund")) then "billing" else "other" end }', by: rule}
DOC
cv run "$T/fallback.yaml" --db "$DB" --input '{"text": "please refund"}'
expect_rc "try/catch turns a missing model into a fallback" 0
py "the rule decided" "out == {'label': 'billing', 'by': 'rule'}"

# score: a tabular model, its explanation, in a flow with classify
cv model train --kind tabular --data "$FIX/loans.jsonl" --label default --name loans --all --db "$DB"
expect_rc "a tabular model is trained into the store" 0
cat >"$T/claim2.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: claim2, version: '1.0.0'}
do:
  - classify:
      call: classify
      with:
        model: tickets@1
        text: ${ .message }
      output:
        as: '${ {topic: .label, confidence: .confidence} }'
      export:
        as: '${ . }'
  - gate:
      switch:
        - sure:
            when: ${ .confidence >= 0.5 }
            then: risk
        - unsure:
            then: person
  - person:
      set:
        routed: person
      then: end
  - risk:
      call: score
      with:
        model: loans
        features:
          income: 35.5
          age: 23
          region: north
          purpose: car
        top: 2
      output:
        as: '${ {topic: $context.topic, risk: .score, label: .label, why: [.explanation[].feature], model: .model} }'
DOC
cv validate "$T/claim2.yaml"
expect_rc "a document calling classify and score validates" 0
cv run "$T/claim2.yaml" --db "$DB" --input '{"message": "I was charged twice on my invoice, please refund the payment"}'
expect_rc "classify, a switch on its confidence, then score, run through conveyor run" 0
py "score gives a probability, a label, the top-2 explanation and the model" \
    "0 <= out['risk'] <= 1 and out['label'] in ('yes', 'no') and len(out['why']) == 2 and out['model'] == 'loans@1' and out['topic'] == 'billing'"
# the predictions are in the instance's history, with the model, an input digest and the latency
id=$(sed -n 's/^conveyor: instance \([0-9a-f-]*\) in .*/\1/p' "$T/err" | head -1)
"$CV" serve --db "$DB" --listen 127.0.0.1:0 >"$T/srv.out" 2>"$T/srv.err" &
SPID=$!
url=""
i=0
while [ -z "$url" ] && [ $i -lt 100 ]; do
    url=$(sed -n 's|^listening on \(http://127.0.0.1:[0-9]*\)$|\1|p' "$T/srv.err")
    sleep 0.1
    i=$((i + 1))
done
# the same workflow through the server (its engine keeps the notes with its checkpoints)
cv start test/claim2:1.0.0 --input '{"message": "please refund the double payment on my invoice"}' --wait --server "$url"
py "through the server too, classify then score" "out['model'] == 'loans@1' and out['topic'] == 'billing'"
cv list --name claim2 --json --server "$url"
sid=$(python3 -c "import json; print([i['id'] for i in json.load(open('$T/out')) if i['id'] != '$id'][0])" 2>/dev/null)
cv history "$sid" --server "$url"
cp "$T/out" "$T/server-history"
cv history "$id" --server "$url"
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
# `conveyor history` prints SEQ TIME TYPE TASK DATA per line
r=$(python3 -c "
import json, re
rows = [l.split(' ', 4) for l in open('$T/out', encoding='utf-8').read().splitlines() if l.strip()]
preds = [(r[3], json.loads(r[4])) for r in rows if len(r) == 5 and r[2] == 'io.conveyor.model.prediction.v1']
ok = [(t, d['function'], d['model']) for t, d in preds] == [('/do/0/classify', 'classify', 'tickets@1'), ('/do/3/risk', 'score', 'loans@1')]
ok = ok and rows[-1][2].endswith('workflow.completed.v1')
ok = ok and all(re.fullmatch('[0-9a-f]{64}', d['inputDigest']) and d['latencyMs'] >= 0 and 'label' in d['output'] for t, d in preds)
print(ok)" 2>&1)
if [ "$r" = True ]; then
    ok "the history holds both predictions (task, model@version, input digest, output, latency) before the end"
else
    fail "the history holds both predictions before the end ($r)"
fi
cp "$T/server-history" "$T/out"
n=$(grep -c ' io.conveyor.model.prediction.v1 ' "$T/out")
if [ "$n" = 2 ] && grep -q ' io.conveyor.model.prediction.v1 /do/3/risk ' "$T/out"; then
    ok "the server's instance has both predictions in its history"
else
    fail "the server's instance has both predictions in its history ($n)"
fi

# the issue's chain: classify -> switch on confidence -> extract -> score
cat >"$T/chain.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: chain, version: '1.0.0'}
do:
  - classify:
      call: classify
      with:
        model: tickets@1
        text: ${ .message }
      export:
        as: '${ {topic: .label, confidence: .confidence} }'
  - gate:
      switch:
        - sure:
            when: ${ .confidence >= 0.5 }
            then: extract
        - unsure:
            then: person
  - person:
      set:
        routed: person
      then: end
  - extract:
      call: extract
      with:
        text: ${ $workflow.input.message }
        fields:
          - name: amount
            kind: money
            required: true
          - name: iban
            kind: iban
      export:
        as: '${ $context + {amount: .fields.amount, iban: .fields.iban, missing: .missing} }'
  - risk:
      call: score
      with:
        model: loans
        features:
          income: ${ $context.amount.amount / 10 }
          age: 41
          region: north
          purpose: car
      output:
        as: '${ {topic: $context.topic, amount: $context.amount, iban: $context.iban, risk: .score, model: .model} }'
DOC
cv run "$T/chain.yaml" --db "$DB" --input '{"message": "Please refund the double payment of EUR 1.234,50 on my invoice to DE89 3704 0044 0532 0130 00"}'
expect_rc "classify -> switch on confidence -> extract -> score, through conveyor run" 0
py "the chain's output: the topic, the amount and IBAN extracted, the risk and its model" \
    "out['topic'] == 'billing' and out['amount'] == {'amount': 1234.5, 'currency': 'EUR'} and out['iban'] == 'DE89370400440532013000' and 0 <= out['risk'] <= 1 and out['model'] == 'loans@1'"
cat >"$T/noamount.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: noamount, version: '1.0.0'}
do:
  - extract:
      call: extract
      with:
        text: ${ .message }
        fields:
          - name: amount
            kind: money
            required: true
DOC
cv run "$T/noamount.yaml" --db "$DB" --input '{"message": "no money here"}'
py "a required field not found is listed in missing (not an error)" "out['missing'] == ['amount'] and out['fields']['amount'] is None"
cat >"$T/badextract.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: badextract, version: '1.0.0'}
do:
  - extract:
      call: extract
      with:
        text: hello
        fields:
          - name: x
            kind: pattern
            pattern: '(unclosed'
DOC
cv run "$T/badextract.yaml" --db "$DB"
py "a bad pattern is a configuration error at the task, with PCRE2's message" \
    "err['type'].endswith('/configuration') and err['instance'] == '/do/0/extract' and 'parenthes' in err['detail']"

cat >"$T/badscore.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: badscore, version: '1.0.0'}
do:
  - risk:
      call: score
      with:
        model: loans
        features:
          income: lots
DOC
cv run "$T/badscore.yaml" --db "$DB"
py "a feature of the wrong type is a validation error (400) at the task" \
    "err['type'].endswith('/validation') and err['status'] == 400 and err['instance'] == '/do/0/risk'"
sed 's/model: loans/model: tickets/; s/name: badscore/name: wrongkind/' "$T/badscore.yaml" >"$T/wrongkind.yaml"
cv run "$T/wrongkind.yaml" --db "$DB"
py "score with a text model is a configuration error that says which kind it needs" \
    "err['type'].endswith('/configuration') and 'tabular' in err['detail']"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
