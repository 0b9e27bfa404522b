"""bench/bench_tabular_nested.py — a more careful choice between conveyor's two
tabular algorithms, on the TRAINING part of bench/bench_tabular.sh's splits only
(test.csv is never read): 3 x repeated stratified 5-fold cross-validation of
train.csv, where each fold trains `conveyor model train --kind tabular --all`
with --algo xgboost (its rounds chosen by its own inner cross-validation: the
comparison is nested, so XGBoost's figure is not optimistic) and --algo linear,
and is scored on the left-out fold with `conveyor model eval`.

    BUILD=build python3 bench/bench_tabular_nested.py SEED...

Run bench/bench_tabular.sh first (it writes build/bench/tabular/seedN/train.csv).
Prints, per seed, the mean left-out AUC of each algorithm and the one it would
choose. It asks whether `--algo auto`'s single, non-nested 5-fold comparison
chose differently from what the training rows support (docs/models.md).
"""
import csv
import json
import os
import random
import subprocess
import sys

BUILD = os.environ.get("BUILD", "build")
CV = os.path.join(BUILD, "conveyor")
REPEATS, FOLDS = 3, 5


def conveyor(*args):
    return subprocess.run([CV, *args], capture_output=True, text=True, check=True).stdout


def main():
    for seed in sys.argv[1:]:
        base = os.path.join(BUILD, "bench", "tabular", f"seed{seed}")
        rows = list(csv.DictReader(open(os.path.join(base, "train.csv"), newline="", encoding="utf-8")))
        header = list(rows[0].keys())
        work = os.path.join(base, "nested")
        os.makedirs(work, exist_ok=True)
        aucs = {"xgboost": [], "linear": []}
        for rep in range(REPEATS):
            rnd = random.Random(1000 + rep)
            fold = [0] * len(rows)
            for cls in ("good", "bad"):
                idx = [i for i, r in enumerate(rows) if r["class"] == cls]
                rnd.shuffle(idx)
                for j, i in enumerate(idx):
                    fold[i] = j % FOLDS
            for f in range(FOLDS):
                for name, keep in (("tr", lambda i: fold[i] != f), ("te", lambda i: fold[i] == f)):
                    with open(os.path.join(work, f"{name}.csv"), "w", newline="", encoding="utf-8") as out:
                        w = csv.DictWriter(out, header)
                        w.writeheader()
                        w.writerows(r for i, r in enumerate(rows) if keep(i))
                db = os.path.join(work, "models.db")
                for ext in ("", "-wal", "-shm"):
                    if os.path.exists(db + ext):
                        os.remove(db + ext)
                for algo in aucs:
                    ref = conveyor("model", "train", "--kind", "tabular", "--algo", algo, "--data",
                                   os.path.join(work, "tr.csv"), "--label", "class", "--positive", "bad",
                                   "--name", algo, "--all", "--db", db).split()[-1]
                    ev = json.loads(conveyor("model", "eval", ref, "--data", os.path.join(work, "te.csv"),
                                             "--label", "class", "--json", "--db", db))
                    aucs[algo].append(ev["auc"])
        mx = sum(aucs["xgboost"]) / len(aucs["xgboost"])
        ml = sum(aucs["linear"]) / len(aucs["linear"])
        print(f"seed {seed}: {REPEATS}x{FOLDS}-fold nested CV of train.csv: xgboost {mx:.4f}, linear {ml:.4f}"
              f" -> {'linear' if ml >= mx else 'xgboost'}", flush=True)


if __name__ == "__main__":
    main()
