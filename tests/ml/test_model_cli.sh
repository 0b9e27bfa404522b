#!/bin/sh
# tests/ml/test_model_cli.sh — `conveyor model ...` end to end on the
# generated ticket corpus (tests/ml/make_corpus.py, committed output).
#
#   BUILD=build tests/ml/test_model_cli.sh
#
# Trains (JSON lines and CSV, hold-out and --all), checks that the last word
# is NAME@VERSION with versions increasing, evaluates (text and --json),
# predicts (one JSON line per row, probabilities summing to 1, the model
# named), reads the card (data digest = sha256 of the file, metrics, status
# draft), lists, moves versions through approve/promote/retire (what a bare
# name then means), and checks that bad input — a missing file, a row without
# the label or text field, malformed JSON, a bad CSV quote, an empty file,
# one label only, an unknown model or version, usage errors — exits non-zero
# with a message naming file:line where there is one, and writes nothing to
# the store. Prints `N passed, N failed`.
set -u
TEST_NAME=model
. "$(dirname "$0")/lib.sh"
# py NAME PYTHON — runs a check with `out` (stdout text), `err` and `lines`
# bound; it passes when the program prints True.
py() {
    r=$(python3 -c "
import json, sys, hashlib
out = open('$T/out', encoding='utf-8').read()
err = open('$T/err', encoding='utf-8').read()
lines = [l for l in out.split('\n') if l]
print(bool($2))" 2>&1)
    if [ "$r" = True ]; then ok "$1"; else fail "$1 ($r)"; fi
}
# err_has NAME TEXT — stderr contains TEXT.
err_has() {
    if grep -qF -- "$2" "$T/err"; then ok "$1"; else fail "$1: stderr lacks '$2'"; fi
}
# versions — how many model versions the store holds.
versions() {
    timeout 30 "$CV" model list --json --db "$DB" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

# ---- training --------------------------------------------------------------
cv model train --kind text --data "$FIX/tickets.jsonl" --label label --name tickets --holdout 0.2 --seed 7 --db "$DB"
expect_rc "train on JSON lines" 0
py "the last word of train's output is tickets@1" "out.split()[-1] == 'tickets@1'"
py "train prints held-out accuracy and macro-F1" "'accuracy' in out and 'macro-F1' in out and 'confusion matrix' in out"
py "train reports the split it made" "'240 training rows, 60 held out' in out"
py "no progress on stderr when it is not a terminal" "err == ''"
cv model train --kind text --data "$FIX/tickets.csv" --label label --text text --name tickets --all --db "$DB"
expect_rc "train on CSV with --all" 0
py "versions increase per name: tickets@2" "out.split()[-1] == 'tickets@2'"
cv model train --data "$FIX/tickets.jsonl" --label label --name other --seed 7 --db "$DB"
expect_rc "train with the default kind and hold-out" 0
py "another name starts at version 1" "out.split()[-1] == 'other@1'"

# On a terminal (script(1) from util-linux gives one), training shows progress.
if command -v script >/dev/null 2>&1; then
    timeout 120 script -qec "'$CV' model train --data '$FIX/tickets.jsonl' --label label --name tty --db '$T/tty.db'" \
        /dev/null >"$T/out" 2>"$T/err"
    rc=$?
    expect_rc "train on a terminal" 0
    py "progress on a terminal: rows featurized and the training step" \
        "'features 240/240 rows' in out and 'training (LIBLINEAR)' in out and out.split()[-1] == 'tty@1'"
fi

# ---- the card ----------------------------------------------------------------
cv model get tickets@1 --db "$DB"
expect_rc "get a version's card" 0
SHA=$(sha256sum "$FIX/tickets.jsonl" | cut -d' ' -f1)
py "the card names its data by sha256" "json.loads(out)['data']['sha256'] == '$SHA'"
py "the card holds kind, status draft, version and the split" \
    "(lambda c: (c['kind'], c['status'], c['version'], c['split']['seed'], c['split']['heldOutRows']) == ('text', 'draft', 1, 7, 60))(json.loads(out))"
py "the card holds held-out metrics and parameters" \
    "(lambda c: 0.9 <= c['metrics']['accuracy'] <= 1 and 'macro_f1' in c['metrics'] and 'ece' in c['metrics'] and c['parameters']['C'] > 0)(json.loads(out))"
py "the card says who and when" "(lambda c: c['createdBy'] != '' and c['createdAt'] > 1.7e12)(json.loads(out))"
cv model get tickets --db "$DB"
py "a bare name is the newest version not retired" "json.loads(out)['version'] == 2"
py "a model trained on --all has no held-out metrics" "json.loads(out)['metrics'] is None"
cv model list --db "$DB"
expect_rc "list" 0
py "list shows every version" "'tickets@1' in out and 'tickets@2' in out and 'other@1' in out and 'draft' in out"

# ---- evaluation ---------------------------------------------------------------
cv model eval tickets@1 --data "$FIX/tickets.jsonl" --label label --json --db "$DB"
expect_rc "eval --json" 0
py "eval --json is one object with accuracy, macro_f1, ece, per-class figures and the confusion matrix" \
    "(lambda v: len(lines) == 1 and 0.9 <= v['accuracy'] <= 1 and 0.9 <= v['macro_f1'] <= 1 and 0 <= v['ece'] <= 1 and set(v['classes']) == {'billing', 'shipping', 'technical'} and sum(map(sum, v['confusion'])) == 300 and v['model'] == 'tickets@1')(json.loads(out))"
py "per-class precision and recall are fractions, support adds up" \
    "(lambda v: all(0 <= c['precision'] <= 1 and 0 <= c['recall'] <= 1 for c in v['classes'].values()) and sum(c['support'] for c in v['classes'].values()) == 300)(json.loads(out))"
cv model eval tickets --data "$FIX/tickets.csv" --label label --db "$DB"
expect_rc "eval for people, on CSV" 0
py "eval prints accuracy, macro-F1, ECE, precision/recall and the matrix" \
    "all(w in out for w in ('accuracy', 'macro-F1', 'ECE', 'precision', 'recall', 'confusion matrix', 'tickets@2'))"

# ---- prediction ---------------------------------------------------------------
cv model predict tickets@1 --data "$FIX/tickets.jsonl" --db "$DB"
expect_rc "predict" 0
py "predict prints one JSON line per row" "len(lines) == 300"
py "each line has label, confidence, scores summing to 1, and the model" \
    "all((lambda p: set(p) == {'label', 'confidence', 'scores', 'model'} and p['model'] == 'tickets@1' and abs(sum(p['scores'].values()) - 1) < 1e-9 and p['scores'][p['label']] == p['confidence'] == max(p['scores'].values()))(json.loads(l)) for l in lines)"
cp "$T/out" "$T/pred1"
cv model predict tickets@1 --data "$FIX/tickets.csv" --db "$DB"
if cmp -s "$T/out" "$T/pred1"; then ok "the same rows as CSV predict byte for byte the same"; else fail "CSV and JSON lines predictions differ"; fi
printf '{"text": "the parcel never arrived and tracking is stuck"}\n{"text": ""}\n' >"$T/new.jsonl"
cv model predict tickets@1 --data "$T/new.jsonl" --db "$DB"
py "an unseen shipping text is classified as shipping; an empty text still gets scores" \
    "json.loads(lines[0])['label'] == 'shipping' and len(json.loads(lines[1])['scores']) == 3"

# ---- status moves ------------------------------------------------------------------
cv model promote tickets@1 --db "$DB"
expect_rc "a draft cannot be promoted without an approval" 1
err_has "the refusal says why" "tickets@1 is draft: it cannot become production"
cv model approve tickets@1 --db "$DB"
expect_rc "approve" 0
py "approve says what it did" "out.strip() == 'tickets@1 approved'"
cv model promote tickets@1 --db "$DB"
expect_rc "promote an approved version" 0
cv model get tickets --db "$DB"
py "a bare name now means the production version (1, not the newer 2)" \
    "(lambda c: (c['version'], c['status']) == (1, 'production'))(json.loads(out))"
cv model predict tickets --data "$T/new.jsonl" --db "$DB"
py "predictions name the production version" "json.loads(lines[0])['model'] == 'tickets@1'"
cv model approve tickets@2 --db "$DB"
cv model promote tickets@2 --db "$DB"
expect_rc "promote another version" 0
cv model get tickets@1 --db "$DB"
py "the previous production version went back to approved" "json.loads(out)['status'] == 'approved'"
cv model retire tickets@2 --db "$DB"
expect_rc "retire" 0
cv model approve tickets@2 --db "$DB"
expect_rc "a retired version stays retired" 1
cv model get tickets --db "$DB"
py "a bare name skips the retired version" "json.loads(out)['version'] == 1"
cv model approve tickets --db "$DB"
expect_rc "a move needs an explicit version" 2

# ---- bad input: clear messages, non-zero exit, nothing written ------------------
N=$(versions)
cv model train --kind text --data "$T/nope.jsonl" --label label --name bad --db "$DB"
expect_rc "a missing data file" 1
err_has "the message names the missing file" "nope.jsonl: No such file or directory"
printf '{"text": "a", "label": "x"}\n{"text": "b"}\n' >"$T/nolabel.jsonl"
cv model train --data "$T/nolabel.jsonl" --label label --name bad --db "$DB"
expect_rc "a row without the label" 1
err_has "the message names file:line and the field" "nolabel.jsonl:2: no field \"label\""
printf '{"text": "a", "label": "x"}\n\n{"body": "b", "label": "y"}\n' >"$T/notext.jsonl"
cv model train --data "$T/notext.jsonl" --label label --name bad --db "$DB"
expect_rc "a row without the text" 1
err_has "the line counts blank lines" "notext.jsonl:3: no field \"text\""
printf '{"text": "a", "label": "x"}\n{"text": "b", "label": \n' >"$T/broken.jsonl"
cv model train --data "$T/broken.jsonl" --label label --name bad --db "$DB"
expect_rc "malformed JSON" 1
err_has "malformed JSON is located" "broken.jsonl:2: not valid JSON"
printf 'label,text\nx,"an open quote\ny,b\n' >"$T/quote.csv"
cv model train --data "$T/quote.csv" --label label --name bad --db "$DB"
expect_rc "an unclosed CSV quote" 1
err_has "the unclosed quote is located where it opens" "quote.csv:2: a quoted field is not closed"
printf 'label,text\nx,a,extra\n' >"$T/fields.csv"
cv model train --data "$T/fields.csv" --label label --name bad --db "$DB"
expect_rc "a CSV row with too many fields" 1
err_has "the field count is located" "fields.csv:2: 3 fields where the header has 2"
printf 'category,text\nx,a\n' >"$T/nocol.csv"
cv model train --data "$T/nocol.csv" --label label --name bad --db "$DB"
expect_rc "a CSV without the label column" 1
err_has "the missing column is named" "no column \"label\""
: >"$T/empty.jsonl"
cv model train --data "$T/empty.jsonl" --label label --name bad --db "$DB"
expect_rc "an empty data set" 1
err_has "an empty data set is said so" "empty.jsonl: no rows"
printf '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n' >"$T/one.jsonl"
cv model train --data "$T/one.jsonl" --label label --name bad --db "$DB"
expect_rc "one class only" 1
err_has "one class only is explained" "a classifier needs at least two labels"
cv model train --kind tabular --data "$FIX/tickets.jsonl" --label label --name bad --db "$DB"
expect_rc "--kind tabular on three labels" 1
err_has "a scorer's label must be binary (tests/ml/test_tabular_cli.sh has the rest)" "the tabular scorer is a binary classifier"
if [ "$(versions)" = "$N" ]; then ok "no failed training wrote a model"; else fail "failed trainings wrote models"; fi
cv model eval nosuch --data "$FIX/tickets.jsonl" --label label --db "$DB"
expect_rc "an unknown model" 1
err_has "the unknown model is named" "no model named \"nosuch\""
cv model predict tickets@9 --data "$FIX/tickets.jsonl" --db "$DB"
expect_rc "an unknown version" 1
err_has "the unknown version is named" "tickets@9"
cv model eval tickets --data "$T/nolabel.jsonl" --label label --db "$DB"
expect_rc "eval on rows without labels" 1
cv model train --data "$FIX/tickets.jsonl" --label label --name tickets --all --seed 3 --db "$DB"
expect_rc "--all with --seed is a usage error" 2
cv model train --data "$FIX/tickets.jsonl" --label label --name "bad name" --db "$DB"
expect_rc "a bad model name is a usage error" 2
cv model train --data "$FIX/tickets.jsonl" --label label --name x
expect_rc "no --db is a usage error" 2
cv model train --data "$FIX/tickets.jsonl" --label label --name x --holdout 1.5 --db "$DB"
expect_rc "a hold-out outside (0, 1) is a usage error" 2
cv model eval tickets@0 --data "$FIX/tickets.jsonl" --label label --db "$DB"
expect_rc "version 0 is a usage error" 2
cv model frobnicate --db "$DB"
expect_rc "an unknown model command" 2
# ---- the linear SVM (--algo svm) ----------------------------------------------
cv model train --kind text --algo svm --data "$FIX/tickets.jsonl" --label label --name svm --holdout 0.2 --seed 7 --db "$DB"
expect_rc "train --algo svm" 0
py "svm: the solver and calibration are named, C defaults to 1" "'L2R_L2LOSS_SVC_DUAL + Platt calibration' in out and 'C=1,' in out and out.split()[-1] == 'svm@1'"
py "svm: held-out accuracy, macro-F1 and ECE are printed" "'accuracy' in out and 'macro-F1' in out and 'ECE' in out"
cv model eval svm@1 --data "$FIX/tickets.jsonl" --label label --json --db "$DB"
expect_rc "eval the svm" 0
py "svm: eval --json has accuracy, macro_f1 and ece, and the svm learned" "(lambda r: r['accuracy'] > 0.8 and 0 < r['macro_f1'] <= 1 and 0 <= r['ece'] < 0.5)(json.loads(lines[0]))"
cv model predict svm@1 --data "$FIX/tickets.jsonl" --db "$DB"
py "svm: probabilities sum to 1, the confidence is the top one, not all saturated" "all((lambda p: abs(sum(p['scores'].values()) - 1) < 1e-9 and p['confidence'] == max(p['scores'].values()) and p['scores'][p['label']] == p['confidence'])(json.loads(l)) for l in lines) and min(json.loads(l)['confidence'] for l in lines) < 0.99"
cv model get svm@1 --db "$DB"
py "svm: the card says svm, its solver and calibration, format 2" "(lambda c: c['parameters']['algo'] == 'svm' and c['parameters']['solver'] == 'liblinear L2R_L2LOSS_SVC_DUAL' and 'Platt' in c['parameters']['calibration'] and c['format']['version'] == 2)(json.loads(out))"
cv model train --kind text --algo svm --data "$FIX/tickets.jsonl" --label label --name svm --holdout 0.2 --seed 7 --db "$DB"
timeout 30 "$CV" model get svm@1 --db "$DB" >"$T/s1.json"
timeout 30 "$CV" model get svm@2 --db "$DB" >"$T/s2.json"
if python3 -c "
import json
a, b = json.load(open('$T/s1.json')), json.load(open('$T/s2.json'))
assert a['modelSha256'] == b['modelSha256']"; then ok "svm: training is deterministic"; else fail "svm: two trainings differ"; fi
cv model train --kind text --algo svm --solver lr-dual --data "$FIX/tickets.jsonl" --label label --name bad --db "$DB"
expect_rc "--algo svm with --solver is a usage error" 2
cv model train --kind text --algo tree --data "$FIX/tickets.jsonl" --label label --name bad --db "$DB"
expect_rc "an unknown text --algo is a usage error" 2
err_has "the text algorithms are named" "--algo for --kind text is lr or svm (got tree)"

cv model --help
expect_rc "model --help" 0
py "model --help lists the commands" "all(w in out for w in ('train', 'eval', 'predict', 'list', 'get', 'approve', 'promote', 'retire', '--holdout', '--all'))"
cv --help
py "conveyor --help mentions model" "'model train' in out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
