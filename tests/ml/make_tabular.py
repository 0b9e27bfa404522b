"""tests/ml/make_tabular.py — writes the tabular scorer's test fixture,
tests/ml/loans.csv and tests/ml/loans.jsonl (the same 300 rows), used by
tests/ml/test_tabular_cli.sh. Generated, do not edit: run
`python3 tests/ml/make_tabular.py` to regenerate (the output is fixed by the
seed).

Columns: income (numeric, a few missing), age (numeric), region (north,
south, east, west; a few missing), purpose (car, home, other), and the label
`default` (yes/no), drawn from a logistic model of them with noise.
"""
import csv
import json
import math
import os
import random

rng = random.Random(20261204)
rows = []
for i in range(300):
    income = round(rng.uniform(10, 120), 1)
    age = rng.randint(18, 75)
    region = rng.choice(["north", "south", "east", "west"])
    purpose = rng.choice(["car", "home", "other"])
    z = -0.04 * (income - 60) + 0.02 * (45 - age) + {"north": 0.8, "south": -0.6, "east": 0.0, "west": 0.2}[region] \
        + {"car": 0.3, "home": -0.5, "other": 0.4}[purpose]
    label = "yes" if rng.random() < 1 / (1 + math.exp(-2 * z)) else "no"
    rows.append({
        "income": None if i % 29 == 7 else income,
        "age": age,
        "region": None if i % 31 == 11 else region,
        "purpose": purpose,
        "default": label,
    })

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "loans.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["income", "age", "region", "purpose", "default"])
    for r in rows:
        w.writerow(["" if r[k] is None else r[k] for k in ["income", "age", "region", "purpose", "default"]])
with open(os.path.join(here, "loans.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
