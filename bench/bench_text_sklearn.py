#!/usr/bin/env python3
"""bench/bench_text_sklearn.py — the scikit-learn side of bench/bench_text.sh.

    bench_text_sklearn.py TRAIN.jsonl TEST.jsonl SHORT.jsonl [SECONDS]

TfidfVectorizer() + LogisticRegression(max_iter=1000), scikit-learn's
defaults otherwise (word unigrams of two or more characters, lower-cased,
smooth IDF, L2 norm; lbfgs, C=1). Trains on TRAIN, evaluates on TEST, then
measures predictions per second on SHORT (vectorize + predict_proba on the
whole list, repeated for SECONDS) in this one process. Run it with
OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1 for a per-core figure. Prints
one JSON object: accuracy, macro_f1, train_seconds, predictions_per_second.
"""
import json
import sys
import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score


def load(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append(d["text"])
            labels.append(d["label"])
    return texts, labels


def main():
    xtr, ytr = load(sys.argv[1])
    xte, yte = load(sys.argv[2])
    short, _ = load(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    t0 = time.perf_counter()
    vec = TfidfVectorizer()
    clf = LogisticRegression(max_iter=1000).fit(vec.fit_transform(xtr), ytr)
    train_s = time.perf_counter() - t0
    pred = clf.predict(vec.transform(xte))
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        clf.predict_proba(vec.transform(short))
        n += len(short)
    pps = n / (time.perf_counter() - t0)
    print(json.dumps({"accuracy": accuracy_score(yte, pred), "macro_f1": f1_score(yte, pred, average="macro"),
                      "train_seconds": train_s, "predictions_per_second": pps}))


if __name__ == "__main__":
    main()
