#!/bin/sh
# tests/ml/test_tabular_cli.sh — `conveyor model ... --kind tabular` end to
# end on the generated loans fixture (tests/ml/make_tabular.py, committed
# output: loans.csv and loans.jsonl hold the same 300 rows).
#
#   BUILD=build tests/ml/test_tabular_cli.sh
#
# Trains (CSV with a hold-out split, JSON lines with --all, a declared
# schema), checks that the last word is NAME@VERSION, that the same seed
# gives the same model bytes, evaluates (text and --json with auc), predicts
# (one JSON line per row: score, label, model, an explanation sorted by
# |contribution|), reads the card (kind, data digest, features, metrics,
# parameters), moves versions, and checks that bad input — a feature of the
# wrong type, an unknown category (treated as missing: a warning), an empty
# data set, one class only, a label that is not binary, a row without the
# label, a label the model does not know — exits non-zero (or warns) with a
# message naming file:line where there is one, and writes nothing to the
# store. Prints `N passed, N failed`.
set -u
TEST_NAME=tabular
. "$(dirname "$0")/lib.sh"
py() {
    r=$(python3 -c "
import json, sys, hashlib, math
out = open('$T/out', encoding='utf-8').read()
err = open('$T/err', encoding='utf-8').read()
lines = [l for l in out.split('\n') if l]
print(bool($2))" 2>&1)
    if [ "$r" = True ]; then ok "$1"; else fail "$1 ($r)"; fi
}
err_has() {
    if grep -qF -- "$2" "$T/err"; then ok "$1"; else fail "$1: stderr lacks '$2'"; fi
}
versions() {
    timeout 30 "$CV" model list --json --db "$DB" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

# ---- training ---------------------------------------------------------------
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name loans --holdout 0.25 --seed 7 --db "$DB"
expect_rc "train on CSV with a hold-out" 0
py "the last word is loans@1" "out.split()[-1] == 'loans@1'"
py "held-out AUC, log-loss and accuracy are printed" "'AUC' in out and 'log-loss' in out and 'accuracy' in out"
py "the schema is reported (2 numeric, 2 categorical)" "'4 (2 numeric, 2 categorical' in out"
py "the positive label is the second by bytes" "'\"no\" / \"yes\" (positive)' in out"
py "no progress on stderr when it is not a terminal" "err == ''"

cv model train --kind tabular --data "$FIX/loans.csv" --label default --name loans --holdout 0.25 --seed 7 --db "$DB"
expect_rc "train again with the same seed" 0
timeout 30 "$CV" model get loans@1 --db "$DB" >"$T/card1.json"
timeout 30 "$CV" model get loans@2 --db "$DB" >"$T/card2.json"
if python3 -c "
import json
a, b = json.load(open('$T/card1.json')), json.load(open('$T/card2.json'))
assert a['modelSha256'] == b['modelSha256'] and a['metrics'] == b['metrics']"; then
    ok "the same data and seed give the same model bytes and metrics"
else
    fail "two trainings with one seed differ"
fi

cv model train --kind tabular --data "$FIX/loans.jsonl" --label default --name loans --all --db "$DB"
expect_rc "train on JSON lines with --all" 0
py "--all gives loans@3" "out.split()[-1] == 'loans@3'"

cv model get loans@1 --db "$DB"
expect_rc "get the card" 0
SHA=$(sha256sum "$FIX/loans.csv" | cut -d' ' -f1)
py "card: kind, format, labels, positive" "(lambda c: c['kind'] == 'tabular' and c['format'] == {'name': 'CVTABMDL', 'version': 3} and c['labels'] == ['no', 'yes'] and c['positive'] == 'yes')(json.loads(out))"
py "card: the training data digest" "json.loads(out)['data']['sha256'] == '$SHA'"
py "card: the feature schema" "[(f['name'], f['type']) for f in json.loads(out)['features']] == [('income', 'numeric'), ('age', 'numeric'), ('region', 'categorical'), ('purpose', 'categorical')] and json.loads(out)['features'][2]['categories'] == ['east', 'north', 'south', 'west']"
py "card: held-out metrics with auc, the algorithm auto chose and why" "(lambda c, p, a: 0.5 < c['metrics']['auc'] <= 1 and c['metrics']['n'] == 75 and p['cvFolds'] == 5 and c['status'] == 'draft' and p['algo'] in ('xgboost', 'linear', 'blend') and p['algo'] == (('linear' if a['linear'] >= a['xgboost'] else 'xgboost') if p['autoChoice']['bestSingleMinusBlend'] > p['autoChoice']['standardError'] else 'blend'))(json.loads(out), json.loads(out)['parameters'], json.loads(out)['parameters']['cvAuc'])"
py "card: auto lists the three cross-validated AUCs" "(lambda a: all(0.5 < a[k] <= 1 for k in ('xgboost', 'linear', 'blend')))(json.loads(out)['parameters']['cvAuc'])"

# ---- the algorithms -----------------------------------------------------------
cv model train --kind tabular --algo xgboost --data "$FIX/loans.csv" --label default --name algo --db "$DB"
expect_rc "--algo xgboost" 0
py "--algo xgboost says rounds" "'XGBoost' in out and 'rounds of depth-3 trees' in out and 'algorithm:' not in out"
cv model get algo@1 --db "$DB"
py "card: xgboost parameters with rounds" "(lambda p: p['algo'] == 'xgboost' and p['rounds'] >= 1 and p['nthread'] == 1 and p['cvFolds'] == 5)(json.loads(out)['parameters'])"
cv model train --kind tabular --algo linear --C 0.5 --data "$FIX/loans.csv" --label default --name algo --db "$DB"
expect_rc "--algo linear --C 0.5" 0
py "--algo linear says logistic regression" "'L2 logistic regression' in out and 'C=0.5' in out and 'AUC' in out"
cv model get algo@2 --db "$DB"
py "card: linear parameters" "(lambda p: p['algo'] == 'linear' and p['C'] == 0.5 and p['solver'] == 'liblinear L2R_LR' and 'rounds' not in p and p['cvFolds'] == 0)(json.loads(out)['parameters'])"
cv model predict algo@2 --data "$FIX/loans.jsonl" --top 0 --db "$DB"
expect_rc "predict with the linear model" 0
py "linear: every feature explained, contributions and bias give the score" "len(lines) == 300 and all((lambda p: len(p['explanation']) == 4 and abs(1 / (1 + math.exp(-(sum(x['contribution'] for x in p['explanation']) + p['bias']))) - p['score']) < 1e-9)(json.loads(l)) for l in lines)"
cv model eval algo@2 --data "$FIX/loans.csv" --label default --json --db "$DB"
py "linear: eval --json has auc" "0.5 < json.loads(lines[0])['auc'] <= 1"
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name algo --db "$DB"
py "auto reports the three cross-validated AUCs" "'algorithm: ' in out and 'cross-validated AUC on the training rows: XGBoost 0.' in out and ', linear 0.' in out and ', blend 0.' in out"
cv model train --kind tabular --algo blend --data "$FIX/loans.csv" --label default --name algo --db "$DB"
expect_rc "--algo blend" 0
py "--algo blend says what it blends" "'algorithm: blend' in out and 'blend: the mean log-odds of XGBoost' in out and 'L2 logistic regression, C=1' in out and 'AUC' in out"
BV=$(awk 'END {print $NF}' "$T/out")
cv model get "$BV" --db "$DB"
py "card: blend parameters (both models', the three cross-validated AUCs)" "(lambda p: p['algo'] == 'blend' and p['C'] == 1 and p['rounds'] >= 1 and p['solver'] == 'liblinear L2R_LR' and p['cvFolds'] == 5 and all(0.5 < p['cvAuc'][k] <= 1 for k in ('xgboost', 'linear', 'blend')))(json.loads(out)['parameters'])"
cv model predict "$BV" --data "$FIX/loans.jsonl" --top 0 --db "$DB"
expect_rc "predict with the blend" 0
py "blend: every feature explained, contributions and bias give the score" "len(lines) == 300 and all((lambda p: len(p['explanation']) == 4 and abs(1 / (1 + math.exp(-(sum(x['contribution'] for x in p['explanation']) + p['bias']))) - p['score']) < 1e-4)(json.loads(l)) for l in lines)"
cv model train --kind tabular --algo forest --data "$FIX/loans.csv" --label default --name bad --db "$DB"
expect_rc "an unknown --algo is a usage error" 2
err_has "the tabular algorithms are named" "--algo for --kind tabular is auto, xgboost, linear or blend (got forest)"

echo '[{"name": "income", "type": "numeric"}, {"name": "region", "type": "categorical", "categories": ["north", "south", "east", "west"]}]' >"$T/schema.json"
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name declared --schema "$T/schema.json" --db "$DB"
expect_rc "train with a declared schema" 0
cv model get declared --db "$DB"
py "the declared features are the model's" "[f['name'] for f in json.loads(out)['features']] == ['income', 'region']"

printf 'x,c,y\n1,a,p\n2,b,p\n3,a,q\n4,b,q\n5,a,q\n' >"$T/tiny.csv"
cv model train --kind tabular --data "$T/tiny.csv" --label y --name tiny --all --db "$DB"
expect_rc "a tiny data set trains (fewer folds than asked: as many as the smaller class has rows)" 0

# ---- evaluation and prediction ---------------------------------------------
cv model eval loans@1 --data "$FIX/loans.csv" --label default --json --db "$DB"
expect_rc "eval --json" 0
py "eval --json: one object with auc, logloss, accuracy, the model" "len(lines) == 1 and (lambda r: 0.5 < r['auc'] <= 1 and r['logloss'] > 0 and 0 < r['accuracy'] <= 1 and r['n'] == 300 and r['model'] == 'loans@1')(json.loads(lines[0]))"
cv model eval loans --data "$FIX/loans.jsonl" --label default --db "$DB"
expect_rc "eval for people, on JSON lines, the bare name" 0
py "eval names the newest version and prints AUC" "'loans@3' in out and 'AUC' in out"

cv model predict loans@1 --data "$FIX/loans.jsonl" --db "$DB"
expect_rc "predict" 0
py "predict: one line per row" "len(lines) == 300"
py "predict: score, label, model, explanation" "all((lambda p: 0 <= p['score'] <= 1 and p['label'] == ('yes' if p['score'] >= 0.5 else 'no') and p['model'] == 'loans@1' and 1 <= len(p['explanation']) <= 5)(json.loads(l)) for l in lines)"
py "predict: the explanation is sorted by |contribution| and names features" "all((lambda e: [abs(x['contribution']) for x in e] == sorted([abs(x['contribution']) for x in e], reverse=True) and {x['feature'] for x in e} <= {'income', 'age', 'region', 'purpose'})(json.loads(l)['explanation']) for l in lines)"
py "predict: contributions and bias give the score" "all((lambda p: abs(1 / (1 + math.exp(-(sum(x['contribution'] for x in p['explanation']) + p['bias']))) - p['score']) < 1e-4)(json.loads(l)) for l in lines)"
cp "$T/out" "$T/pred_jsonl"
cv model predict loans@1 --data "$FIX/loans.csv" --top 2 --db "$DB"
py "predict --top 2 on CSV" "all(len(json.loads(l)['explanation']) == 2 for l in lines)"
if python3 -c "
import json
a = [json.loads(l)['score'] for l in open('$T/pred_jsonl')]
b = [json.loads(l)['score'] for l in open('$T/out')]
assert a == b"; then
    ok "the CSV and JSON lines forms of the same rows score the same"
else
    fail "CSV and JSON lines scores differ"
fi

# ---- registry ------------------------------------------------------------------
cv model approve loans@1 --db "$DB"
expect_rc "approve a tabular version" 0
cv model promote loans@1 --db "$DB"
expect_rc "promote it" 0
cv model predict loans --data "$FIX/loans.csv" --db "$DB"
py "the bare name now means the production version" "json.loads(lines[0])['model'] == 'loans@1'"

# ---- bad input --------------------------------------------------------------
N=$(versions)
printf 'income,age,region,purpose\n50,40,north,car\nlots,40,north,car\n' >"$T/wrong.csv"
cv model predict loans@1 --data "$T/wrong.csv" --db "$DB"
expect_rc "a feature of the wrong type" 1
err_has "the wrong type is located" "wrong.csv:3: feature \"income\" is numeric; got \"lots\""
printf '{"income": 50, "age": "old", "region": "north", "purpose": "car"}\n' >"$T/wrong.jsonl"
cv model predict loans@1 --data "$T/wrong.jsonl" --db "$DB"
expect_rc "a JSON text for a numeric feature" 1
err_has "the JSON line is located" "wrong.jsonl:1: feature \"age\" is numeric"
printf '{"income": 50, "age": 40, "region": "atlantis", "purpose": "car"}\n' >"$T/unknown.jsonl"
cv model predict loans@1 --data "$T/unknown.jsonl" --db "$DB"
expect_rc "an unknown category is scored" 0
err_has "an unknown category is reported as missing" "1 unknown categories (treated as missing)"
py "the unknown category is quoted in the explanation" "any(x['feature'] == 'region' and x['value'] == 'atlantis' for x in json.loads(lines[0])['explanation'])"
printf 'income,age,region,purpose,default\n50,40,north,car,maybe\n' >"$T/badlabel.csv"
cv model eval loans@1 --data "$T/badlabel.csv" --label default --db "$DB"
expect_rc "eval with a label the model does not know" 1
err_has "the unknown label is located" "badlabel.csv:2: label \"maybe\" is not one of the model's"
printf 'income,age,region,purpose,default\n' >"$T/empty.csv"
cv model train --kind tabular --data "$T/empty.csv" --label default --name bad --db "$DB"
expect_rc "an empty data set" 1
err_has "an empty data set is said so" "empty.csv: no rows"
printf 'income,age,default\n1,2,yes\n3,4,yes\n' >"$T/one.csv"
cv model train --kind tabular --data "$T/one.csv" --label default --name bad --db "$DB"
expect_rc "one class only" 1
err_has "one class only is explained" "every row has the label \"yes\": a scorer needs two labels"
printf 'income,default\n1,a\n2,b\n3,c\n' >"$T/three.csv"
cv model train --kind tabular --data "$T/three.csv" --label default --name bad --db "$DB"
expect_rc "a label that is not binary" 1
err_has "a third label is located" "three.csv:4: a third label \"c\""
printf '{"income": 1, "default": "yes"}\n{"income": 2}\n' >"$T/nolabel.jsonl"
cv model train --kind tabular --data "$T/nolabel.jsonl" --label default --name bad --db "$DB"
expect_rc "a row without the label" 1
err_has "the row without the label is located" "nolabel.jsonl:2: no field \"default\""
printf '{"income": 1, "x": [1], "default": "yes"}\n{"income": 2, "x": 1, "default": "no"}\n' >"$T/array.jsonl"
cv model train --kind tabular --data "$T/array.jsonl" --label default --name bad --all --db "$DB"
expect_rc "a feature that is an array" 1
err_has "the array is located" "array.jsonl:1: feature \"x\" is an array"
echo '[{"name": "nope", "type": "numeric"}]' >"$T/badschema.json"
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name bad --schema "$T/badschema.json" --db "$DB"
expect_rc "a declared feature that is not in the data" 1
err_has "the missing feature is named" "declared feature \"nope\" is not in the data"
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name bad --positive maybe --db "$DB"
expect_rc "a --positive that is not a label" 1
err_has "the bad --positive is named" "--positive \"maybe\" is not a label"
python3 -c "
print('id,x,y')
for i in range(3000): print(f'id{i},{i % 7},{\"a\" if i % 3 else \"b\"}')" >"$T/ids.csv"
cv model train --kind tabular --data "$T/ids.csv" --label y --name bad --db "$DB"
expect_rc "an id-like text column" 1
err_has "the id-like column is named" "feature \"id\" has more than 1000 categories"
if [ "$(versions)" = "$N" ]; then ok "no failed training wrote a model"; else fail "failed trainings wrote models"; fi
cv model train --kind tabular --data "$FIX/loans.csv" --label default --name bad --depth 0 --db "$DB"
expect_rc "--depth 0 is a usage error" 2
cv model train --kind tree --data "$FIX/loans.csv" --label default --name bad --db "$DB"
expect_rc "an unknown --kind is a usage error" 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
