"""bench/bench_tabular_sklearn.py — scikit-learn's side of
bench/bench_tabular.sh: GradientBoostingClassifier and LogisticRegression
(one-hot encoding of the nominal columns, scaling of the numeric ones, in a
Pipeline) trained on train.csv and scored on test.csv, the same files conveyor
uses.

    python3 bench/bench_tabular_sklearn.py train.csv test.csv LABEL POSITIVE SECONDS

Prints one JSON object: for each model its AUC, log-loss, accuracy at 0.5,
training seconds, and predictions per second (predict_proba on all test rows
at once, repeated for about SECONDS; and one row at a time).
"""
import csv
import json
import sys
import time

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def load(path, label):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c != label]
    numeric = []
    for c in cols:
        try:
            [float(r[c]) for r in rows if r[c] != ""]
            numeric.append(c)
        except ValueError:
            pass
    return rows, cols, numeric


def matrix(rows, cols):
    return np.array([[r[c] for c in cols] for r in rows], dtype=object)


def main():
    train_p, test_p, label, positive, secs = sys.argv[1:6]
    secs = float(secs)
    train, cols, numeric = load(train_p, label)
    test, _, _ = load(test_p, label)
    nominal = [c for c in cols if c not in numeric]
    Xtr, Xte = matrix(train, cols), matrix(test, cols)
    num_idx = [cols.index(c) for c in numeric]
    nom_idx = [cols.index(c) for c in nominal]
    for X in (Xtr, Xte):
        X[:, num_idx] = X[:, num_idx].astype(float)
    ytr = np.array([1 if r[label] == positive else 0 for r in train])
    yte = np.array([1 if r[label] == positive else 0 for r in test])

    def pre():
        return ColumnTransformer([
            ("num", StandardScaler(), num_idx),
            ("cat", OneHotEncoder(handle_unknown="ignore"), nom_idx),
        ])

    models = {
        "gradient_boosting": Pipeline([("pre", pre()), ("clf", GradientBoostingClassifier(random_state=42))]),
        "logistic_regression": Pipeline([("pre", pre()), ("clf", LogisticRegression(max_iter=1000))]),
    }
    out = {"sklearn": __import__("sklearn").__version__}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(Xtr, ytr)
        train_s = time.perf_counter() - t0
        p = model.predict_proba(Xte)[:, 1]
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < secs:
            model.predict_proba(Xte)
            n += len(Xte)
        batch_rate = n / (time.perf_counter() - t0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < secs / 2:
            model.predict_proba(Xte[n % len(Xte): n % len(Xte) + 1])
            n += 1
        single_rate = n / (time.perf_counter() - t0)
        out[name] = {
            "auc": roc_auc_score(yte, p),
            "logloss": log_loss(yte, p),
            "accuracy": accuracy_score(yte, p >= 0.5),
            "train_seconds": train_s,
            "predictions_per_second_batch": batch_rate,
            "predictions_per_second_single": single_rate,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
