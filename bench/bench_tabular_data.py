"""bench/bench_tabular_data.py — an ARFF data set whose last attribute is the
class (the German credit data set, Weka's credit-g.arff, for
bench/bench_tabular.sh; others for bench/bench_tabular_validate.sh) as CSV,
and ONE seeded stratified split.

    python3 bench/bench_tabular_data.py credit-g.arff OUTDIR SEED TEST_SHARE

Reads the ARFF file (a small reader written here: @attribute lines with
`numeric` or `{nominal, 'quoted value', ...}`, then @data rows of
comma-separated values where a value may be single- or double-quoted and `?`
is missing), writes OUTDIR/all.csv, OUTDIR/train.csv and OUTDIR/test.csv with
a header (missing values as empty fields), and OUTDIR/short.csv (the test rows
without the label, for prediction speed). The split is stratified by class
and seeded: within each class the rows are shuffled with Python's
random.Random(SEED) and the first round(n_c * TEST_SHARE) are held out. Both
sides of the benchmark read these same files.
"""
import csv
import random
import sys


def split_values(line):
    """Comma-separated ARFF values; quotes (' or ") group and are removed."""
    out, cur, quote, i = [], [], None, 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and i + 1 < len(line):
                cur.append(line[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur).strip())
    return out


def read_arff(path):
    attrs, rows, in_data = [], [], False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            low = line.lower()
            if not in_data and low.startswith("@attribute"):
                rest = line[len("@attribute"):].strip()
                if rest[0] in "'\"":
                    q = rest[0]
                    end = rest.index(q, 1)
                    name, kind = rest[1:end], rest[end + 1:].strip()
                else:
                    name, kind = rest.split(None, 1)
                if kind.startswith("{"):
                    values = split_values(kind.strip()[1:-1])
                    attrs.append((name, "nominal", values))
                else:
                    attrs.append((name, kind.lower(), None))
            elif low.startswith("@data"):
                in_data = True
            elif in_data:
                vals = split_values(line)
                if len(vals) != len(attrs):
                    raise SystemExit(f"{path}: a row with {len(vals)} values for {len(attrs)} attributes")
                for (name, kind, values), v in zip(attrs, vals):
                    if v != "?" and kind == "nominal" and v not in values:
                        raise SystemExit(f"{path}: {v!r} is not a value of {name}")
                rows.append(["" if v == "?" else v for v in vals])
    return attrs, rows


def write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    src, out, seed, share = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    attrs, rows = read_arff(src)
    header = [a[0] for a in attrs]
    label = len(header) - 1
    rng = random.Random(seed)
    test_idx = set()
    for cls in sorted({r[label] for r in rows}):
        members = [i for i, r in enumerate(rows) if r[label] == cls]
        rng.shuffle(members)
        test_idx.update(members[: round(len(members) * share)])
    train = [r for i, r in enumerate(rows) if i not in test_idx]
    test = [r for i, r in enumerate(rows) if i in test_idx]
    write(f"{out}/all.csv", header, rows)
    write(f"{out}/train.csv", header, train)
    write(f"{out}/test.csv", header, test)
    write(f"{out}/short.csv", header[:label], [r[:label] for r in test])
    name = src.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    print(f"{name}: {len(rows)} rows, {len(header) - 1} features "
          f"({sum(1 for a in attrs[:-1] if a[1] == 'nominal')} nominal); "
          f"split seed {seed}: {len(train)} train / {len(test)} test")


if __name__ == "__main__":
    main()
