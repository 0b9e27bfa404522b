#!/bin/sh
# bench/bench_tabular_validate.sh — `--algo auto`'s rule (bench/SELECTION.md)
# on data sets other than credit-g, before it is run there: Weka's diabetes,
# breast-cancer, ionosphere and vote (Debian's `weka` examples) and
# scikit-learn's bundled breast cancer (Wisconsin) data.
#
#   BUILD=build bench/bench_tabular_validate.sh
#
# For each data set and each seed of BENCH_TABULAR_SEEDS (default the
# benchmark's "42 1 2 3 4 5 6 7"): ONE stratified 70/30 split
# (bench/bench_tabular_data.py); conveyor trains --algo xgboost, linear,
# blend and auto (--all on train.csv; the cross-validated AUCs come from
# the training rows only) and is evaluated on test.csv; scikit-learn's
# gradient boosting and logistic regression on the same files
# (bench/bench_tabular_sklearn.py). Prints, per split, the choice of the
# previous rule (the highest mean cross-validated AUC, ties to the simpler
# model, computed from the same cross-validated AUCs) and of the current one
# (auto's card), their test AUCs and the better scikit-learn model's; then
# the mean test AUC of each rule per data set and over all splits.
# Figures only: it never fails on a score.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SEEDS=${BENCH_TABULAR_SEEDS:-42 1 2 3 4 5 6 7}
EX=/usr/share/doc/weka/examples
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
[ -x "$BUILD/conveyor" ] || make BUILD="$BUILD" "$BUILD/conveyor"
WORK="$BUILD/bench/tabular-validate"
mkdir -p "$WORK"

# scikit-learn's breast cancer data as ARFF (bundled with the package: no network)
"$PY" - "$WORK/wdbc.arff" <<'PYEOF'
import sys
from sklearn.datasets import load_breast_cancer
d = load_breast_cancer()
with open(sys.argv[1], "w") as f:
    f.write("@relation wdbc\n")
    for i, _ in enumerate(d.feature_names):
        f.write(f"@attribute f{i} numeric\n")
    f.write("@attribute class {malignant, benign}\n@data\n")
    for row, t in zip(d.data, d.target):
        f.write(",".join(repr(float(v)) for v in row) + "," + d.target_names[t] + "\n")
PYEOF

# name file label positive
SETS="diabetes $EX/diabetes.arff class tested_positive
breast-cancer $EX/breast-cancer.arff Class recurrence-events
ionosphere $EX/ionosphere.arff class b
vote $EX/vote.arff Class republican
wdbc $WORK/wdbc.arff class malignant"

echo "$SETS" | while read -r NAME FILE LABEL POS; do
    [ -r "$FILE" ] || { echo "$NAME: no $FILE: skipped"; continue; }
    for SEED in $SEEDS; do
        D="$WORK/$NAME/seed$SEED"
        mkdir -p "$D"
        "$PY" bench/bench_tabular_data.py "$FILE" "$D" "$SEED" 0.3 >"$D/data.out"
        DB="$D/models.db"
        rm -f "$DB" "$DB-wal" "$DB-shm"
        for ALGO in auto xgboost linear blend; do
            "$BUILD/conveyor" model train --kind tabular --algo "$ALGO" --data "$D/train.csv" --label "$LABEL" \
                --positive "$POS" --name "m-$ALGO" --all --db "$DB" >"$D/train-$ALGO.out" 2>"$D/train-$ALGO.err"
            REF=$(tail -n 1 "$D/train-$ALGO.out" | awk '{print $NF}')
            "$BUILD/conveyor" model eval "$REF" --data "$D/test.csv" --label "$LABEL" --json --db "$DB" \
                >"$D/eval-$ALGO.json"
            "$BUILD/conveyor" model get "$REF" --db "$DB" >"$D/card-$ALGO.json"
        done
        OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$PY" bench/bench_tabular_sklearn.py "$D/train.csv" \
            "$D/test.csv" "$LABEL" "$POS" 0.01 >"$D/sklearn.json"
    done
done

"$PY" - "$WORK" $SEEDS <<'PYEOF'
import json, os, sys
work, seeds = sys.argv[1], sys.argv[2:]
def load(*p):
    return json.load(open(os.path.join(work, *p)))
def old_rule(cv):
    x, l, b = cv["xgboost"], cv["linear"], cv["blend"]
    s = "linear" if l >= x else "xgboost"
    return "blend" if b > (l if s == "linear" else x) else s
tot_old = tot_new = tot_sk = 0.0
count = 0
print(f"{'data set':14}{'seed':>5}{'cv xgb':>8}{'cv lin':>8}{'cv bld':>8}{'old':>9}{'new':>9}"
      f"{'old AUC':>9}{'new AUC':>9}{'sk best':>9}")
for name in ("diabetes", "breast-cancer", "ionosphere", "vote", "wdbc"):
    if not os.path.isdir(os.path.join(work, name)):
        continue
    so = sn = sk = 0.0
    for s in seeds:
        d = f"seed{s}"
        card = load(name, d, "card-auto.json")["parameters"]
        cv = card["cvAuc"]
        old = old_rule(cv)
        new = card["algo"]
        auc = {a: load(name, d, f"eval-{a}.json")["auc"] for a in ("xgboost", "linear", "blend")}
        k = load(name, d, "sklearn.json")
        best = max(k["gradient_boosting"]["auc"], k["logistic_regression"]["auc"])
        so += auc[old]; sn += auc[new]; sk += best
        print(f"{name:14}{s:>5}{cv['xgboost']:8.4f}{cv['linear']:8.4f}{cv['blend']:8.4f}{old:>9}{new:>9}"
              f"{auc[old]:9.4f}{auc[new]:9.4f}{best:9.4f}")
    n = len(seeds)
    print(f"{name:14} mean test AUC: previous rule {so / n:.4f}, this rule {sn / n:.4f}, better scikit-learn {sk / n:.4f}")
    tot_old += so; tot_new += sn; tot_sk += sk; count += n
print(f"all {count} splits, mean test AUC: previous rule {tot_old / count:.4f}, this rule {tot_new / count:.4f}, "
      f"better scikit-learn {tot_sk / count:.4f}")
PYEOF
