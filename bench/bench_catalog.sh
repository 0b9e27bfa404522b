#!/bin/sh
# bench/bench_catalog.sh — predictions per second through workflows served by
# `conveyor serve`: each instance runs `call: classify` on 16 texts (a `for`
# loop; each call is an effect, checkpointed), 8 clients start instances with
# ?wait, the model is the production version of a bare name (so every call
# resolves NAME: the resolution cache of src/ml/catalog.c is on this path).
# Prints figures, never fails on a timing.
#
#   BUILD=build bench/bench_catalog.sh          # or CONVEYOR=/path/to/conveyor
#   BENCH_CATALOG_INSTANCES=400 (default)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CV=${CONVEYOR:-$ROOT/${BUILD:-build}/conveyor}
N=${BENCH_CATALOG_INSTANCES:-400}
W=$(mktemp -d /tmp/conveyor-bench-catalog.XXXXXX)
SPID=""
trap 'if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi; rm -rf "$W"' EXIT INT TERM
"$CV" model train --kind text --data "$ROOT/tests/ml/tickets.jsonl" --label label --name tickets --all \
    --db "$W/db" >/dev/null || exit 1
"$CV" model approve tickets@1 --db "$W/db" >/dev/null && "$CV" model promote tickets@1 --db "$W/db" >/dev/null || exit 1
"$CV" serve --db "$W/db" --listen 127.0.0.1:0 >"$W/serve.out" 2>"$W/serve.err" &
SPID=$!
S=""
i=0
while [ $i -lt 100 ] && [ -z "$S" ]; do
    p=$(sed -n 's|^listening on http://127.0.0.1:\([0-9][0-9]*\)$|\1|p' "$W/serve.err")
    [ -n "$p" ] && S="http://127.0.0.1:$p"
    sleep 0.1
    i=$((i + 1))
done
[ -n "$S" ] || { echo "the server did not start" >&2; exit 1; }
cat >"$W/wf.yaml" <<'DOC'
document: {dsl: '1.0.0', namespace: bench, name: classify16, version: '1.0.0'}
do:
  - each:
      for: {each: t, in: '${ .texts }'}
      do:
        - c:
            call: classify
            with: {model: tickets, text: '${ $t }'}
DOC
curl -s -o /dev/null -X POST -H 'Content-Type: application/yaml' --data-binary @"$W/wf.yaml" "$S/v1/workflows"
python3 - "$S" "$N" "$ROOT/tests/ml/tickets.jsonl" <<'PY'
import json, sys, threading, time, urllib.request
s, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
texts = [json.loads(l)["text"] for l in open(path, encoding="utf-8")][:16]
body = json.dumps({"texts": texts}).encode()
url = s + "/v1/workflows/bench/classify16/1.0.0/instances?wait=120"
done, bad, lock = [0], [0], threading.Lock()
def client(k):
    while True:
        with lock:
            if done[0] >= n:
                return
            done[0] += 1
        r = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        o = json.load(urllib.request.urlopen(r, timeout=180))
        if o.get("status") != "completed":
            with lock:
                bad[0] += 1
t0 = time.time()
ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
dt = time.time() - t0
print(f"{n} instances x 16 classify calls, 8 clients: {dt:.2f} s, {n * 16 / dt:.0f} predictions/s, "
      f"{n / dt:.1f} instances/s ({bad[0]} not completed)")
PY
