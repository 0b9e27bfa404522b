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

# -------------------------------------------------------------------------
# stored extractors: `conveyor model upload --kind extractor`, then
# `call: extract` with `with: {model: NAME[@VERSION], text}`
# -------------------------------------------------------------------------
INV="$ROOT/tests/extract/invoice.yaml"
cv model upload --kind extractor --file "$INV" --name invoices --db "$DB"
expect_rc "an extractor definition is uploaded" 0
last=$(tr -s ' \n' '\n\n' <"$T/out" | sed '/^$/d' | tail -1)
if [ "$last" = "invoices@1" ]; then ok "upload prints NAME@VERSION as the last word"; else fail "upload's last word: $last"; fi
cv model get invoices --db "$DB"
py "its card: kind extractor, the definition's digest and its field names" \
    "out['kind'] == 'extractor' and out['status'] == 'draft' and out['modelSha256'] == '$(sha256sum "$INV" | cut -c1-64)' and out['fields'] == ['total', 'due', 'iban', 'contact', 'phone', 'ref', 'po'] and out['required'] == ['total', 'due', 'po']"
cat >"$T/bad-def.yaml" <<'DOC'
name: broken
fields:
  - name: total
    kind: money
  - name: colour
    kind: colour
DOC
cv model upload --kind extractor --file "$T/bad-def.yaml" --name invoices --db "$DB"
expect_rc "a definition that does not compile is refused" 1
if grep -qF "bad-def.yaml:6:11: field \"colour\": unknown kind colour" "$T/err"; then
    ok "... with extract.c's located message (file:line:column)"
else
    fail "... with extract.c's located message"
fi
printf 'fields:\n  - name: x\n    kind: pattern\n    pattern: "(unclosed"\n' >"$T/bad-re.yaml"
cv model upload --kind extractor --file "$T/bad-re.yaml" --name broken --db "$DB"
if [ "$rc" = 1 ] && grep -qE 'bad-re.yaml:4:[0-9]+: .*parenthes' "$T/err"; then
    ok "a bad pattern is refused at its line, with PCRE2's message"
else
    fail "a bad pattern is refused at its line ($rc)"
fi
cv model list --json --db "$DB"
py "... and nothing was stored for either" \
    "[m['name'] + '@' + str(m['version']) for m in out if m['kind'] == 'extractor'] == ['invoices@1']"
cv model upload --kind text --file "$INV" --name invoices --db "$DB"
expect_rc "upload takes only --kind extractor (a usage error)" 2

cat >"$T/inv.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: inv, version: '1.0.0'}
do:
  - extract:
      call: extract
      with:
        model: ${ .model }
        text: ${ .text }
DOC
INVTEXT='Invoice Ref: ab-12345, total EUR 1.250,00 due 15/03/2024, PO 778, IBAN DE89 3704 0044 0532 0130 00'
cv validate "$T/inv.yaml"
expect_rc "a document calling extract with a model validates" 0
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"invoices\", \"text\": \"$INVTEXT\"}"
expect_rc "extract with a stored extractor runs in a workflow" 0
py "its fields are extracted and the output names the model" \
    "out['fields']['total'] == {'amount': 1250, 'currency': 'EUR'} and out['fields']['due'] == '2024-03-15' and out['fields']['ref'] == 'AB-12345' and out['fields']['po'] == '778' and out['fields']['iban'] == 'DE89370400440532013000' and out['missing'] == [] and out['model'] == 'invoices@1'"
xid=$(sed -n 's/^conveyor: instance \([0-9a-f-]*\) in .*/\1/p' "$T/err" | head -1)

# a second version (one field), promoted: a bare name then means it
printf 'fields:\n  - name: total\n    kind: money\n    required: true\n' >"$T/total.yaml"
cv model upload --kind extractor --file "$T/total.yaml" --name invoices --db "$DB"
last=$(tr -s ' \n' '\n\n' <"$T/out" | sed '/^$/d' | tail -1)
cv model approve invoices@2 --db "$DB"
cv model promote invoices@2 --db "$DB"
expect_rc "invoices@2 is approved and promoted like any model" 0
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"invoices\", \"text\": \"$INVTEXT\"}"
py "a bare name is the production version ($last)" \
    "'$last' == 'invoices@2' and out['model'] == 'invoices@2' and list(out['fields']) == ['total']"
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"invoices@1\", \"text\": \"no money here\"}"
py "NAME@VERSION is that version (a draft), and missing required fields are listed" \
    "out['model'] == 'invoices@1' and out['missing'] == ['total', 'due', 'po']"

# errors, located at the task
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"tickets@1\", \"text\": \"$INVTEXT\"}"
py "extract with a text classifier is a configuration error (400): not an extractor" \
    "err['type'].endswith('/configuration') and err['status'] == 400 and 'not an extractor' in err['detail'] and err['instance'] == '/do/0/extract'"
sed 's/model: no-such-model/model: invoices/' "$T/triage-1.3.0.yaml" | sed "s/version: '1.3.0'/version: '1.4.0'/" >"$T/triage-1.4.0.yaml"
cv run "$T/triage-1.4.0.yaml" --db "$DB" --input '{"text": "hello"}'
py "classify with an extractor is a configuration error (400): not a text classifier" \
    "err['type'].endswith('/configuration') and err['status'] == 400 and 'not a text classifier' in err['detail']"
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"no-such-extractor\", \"text\": \"x\"}"
py "an unknown extractor is a configuration error (404) naming it" \
    "err['type'].endswith('/configuration') and err['status'] == 404 and 'no-such-extractor' in err['detail']"
cv model retire invoices@1 --db "$DB"
cv run "$T/inv.yaml" --db "$DB" --input "{\"model\": \"invoices@1\", \"text\": \"$INVTEXT\"}"
py "a retired extractor is a configuration error (404) that says so" \
    "err['type'].endswith('/configuration') and err['status'] == 404 and 'retired' in err['detail']"
cat >"$T/both.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: test, name: both, version: '1.0.0'}
do:
  - extract:
      call: extract
      with:
        model: invoices
        fields: [{name: total, kind: money}]
        text: EUR 12
DOC
cv run "$T/both.yaml" --db "$DB"
py "model and fields together are a configuration error (400)" \
    "err['type'].endswith('/configuration') and err['status'] == 400 and 'not both' in err['detail']"

# the prediction note is in the instance's history, like classify's
"$CV" serve --db "$DB" --listen 127.0.0.1:0 >"$T/srv2.out" 2>"$T/srv2.err" &
SPID=$!
url=""
i=0
while [ -z "$url" ] && [ $i -lt 100 ]; do
    url=$(sed -n 's|^listening on \(http://127.0.0.1:[0-9]*\)$|\1|p' "$T/srv2.err")
    sleep 0.1
    i=$((i + 1))
done
cv history "$xid" --server "$url"
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
r=$(python3 -c "
import json, re
rows = [l.split(' ', 4) for l in open('$T/out', encoding='utf-8').read().splitlines() if l.strip()]
preds = [(r[3], json.loads(r[4])) for r in rows if len(r) == 5 and r[2] == 'io.conveyor.model.prediction.v1']
ok = len(preds) == 1 and preds[0][0] == '/do/0/extract' and preds[0][1]['function'] == 'extract'
ok = ok and preds[0][1]['model'] == 'invoices@1' and preds[0][1]['output']['missing'] == [] and preds[0][1]['output']['confidence']['total'] == 0.9 and 'fields' not in preds[0][1]['output']
ok = ok and re.fullmatch('[0-9a-f]{64}', preds[0][1]['inputDigest']) is not None and preds[0][1]['latencyMs'] >= 0
print(ok)" 2>&1)
if [ "$r" = True ]; then
    ok "the history holds the extraction (task, extractor@version, input digest, missing and confidences but no values, latency)"
else
    fail "the history holds the extraction ($r)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
