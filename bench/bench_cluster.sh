#!/bin/sh
# bench/bench_cluster.sh — throughput of 1, 2 and 3 nodes on one store
# (docs/cluster.md), on PostgreSQL (a throw-away server, tests/pg/pg.sh) and
# on a shared SQLite file, side by side.
#
#   BUILD=build bench/bench_cluster.sh
#   BENCH_CLUSTER_N=3000 (instances per run), BENCH_CLUSTER_STORES="postgres sqlite",
#   BENCH_CLUSTER_NODES="1 2 3"
#
# Each run starts K nodes (`conveyor serve --node`, 2 workers each), deploys a
# workflow of a `set`, a 1 ms `wait` (a durable timer: a checkpoint to wait
# and one to go on) and a `set`, and starts N instances through the nodes in
# turn from 16 client threads. It prints the seconds from the first start to
# the last completion, instances completed a second, and checkpoints written
# a second (conveyor_checkpoints_total of every node). Figures only: it never
# fails on a timing. The machine is printed first; every node runs on it, so
# with 2 cores more nodes share the same CPUs (the figures show the cost of
# coordination, not a gain of capacity).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
N=${BENCH_CLUSTER_N:-3000}
STORES=${BENCH_CLUSTER_STORES:-"postgres sqlite"}
NODES=${BENCH_CLUSTER_NODES:-"1 2 3"}
[ -x "$CV" ] || make BUILD="$BUILD" "$BUILD/conveyor" >/dev/null || exit 2
T=$(mktemp -d /tmp/conveyor-bench-cluster.XXXXXX)
PIDS=""
PG_STARTED=""
cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    [ -n "$PG_STARTED" ] && pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB"

cat >"$T/wf.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: bench, name: nodes, version: '1.0.0'}
do:
  - a:
      set: {n: '${ .n }', step: 1}
  - pause:
      wait: {milliseconds: 1}
  - b:
      set: {n: '${ .n }', step: 2}
EOF

cat >"$T/load.py" <<'PY'
import http.client, json, sys, threading, time, urllib.parse

def conn(u):
    p = urllib.parse.urlparse(u)
    return http.client.HTTPConnection(p.hostname, p.port, timeout=30)

def metric(u, name):
    c = conn(u)
    c.request("GET", "/metrics")
    total = 0.0
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith(name):
            total += float(line.split()[-1])
    return total

urls, n = sys.argv[1].split(","), int(sys.argv[2])
cp0 = sum(metric(u, "conveyor_checkpoints_total") for u in urls)
done0 = sum(metric(u, 'conveyor_instances_total{status="completed"}') for u in urls)
errors = []
def run(k):
    cs = {}
    for i in range(k, n, 16):
        u = urls[i % len(urls)]
        c = cs.get(u) or conn(u)
        cs[u] = c
        c.request("POST", "/v1/workflows/bench/nodes/1.0.0/instances", json.dumps({"n": i}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            errors.append(r.status)
t0 = time.time()
th = [threading.Thread(target=run, args=(k,)) for k in range(16)]
for t in th:
    t.start()
for t in th:
    t.join()
deadline = t0 + 600
while time.time() < deadline:
    done = sum(metric(u, 'conveyor_instances_total{status="completed"}') for u in urls) - done0
    if done >= n:
        break
    time.sleep(0.2)
took = time.time() - t0
cps = sum(metric(u, "conveyor_checkpoints_total") for u in urls) - cp0
print("%d %.2f %.0f %.0f %d" % (done, took, done / took, cps / took, len(errors)))
PY

run() { # run STORE_URL LABEL K
    url=$1 label=$2 k=$3
    urls=""
    for i in $(seq 1 "$k"); do
        : >"$T/n$i.err"
        "$CV" serve --store "$url" --node "n$i" --workers 2 --listen 127.0.0.1:0 >/dev/null 2>"$T/n$i.err" &
        PIDS="$PIDS $!"
        j=0
        while [ $j -lt 150 ]; do
            port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9][0-9]*\)$|\1|p' "$T/n$i.err")
            [ -n "$port" ] && break
            sleep 0.1
            j=$((j + 1))
        done
        [ -n "$port" ] || { echo "$label: node n$i did not start: $(tail -2 "$T/n$i.err")"; return 1; }
        urls="${urls:+$urls,}http://127.0.0.1:$port"
    done
    first=${urls%%,*}
    curl -s -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/yaml' --data-binary @"$T/wf.yaml" \
        "$first/v1/workflows"
    set -- $(python3 "$T/load.py" "$urls" "$N")
    printf '%-9s %5d %9d %8.2f s %10s %14s %s\n' "$label" "$k" "$1" "$2" "$3" "$4" \
        "$([ "$5" = 0 ] || echo "($5 starts refused)")"
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    PIDS=""
}

printf '%-9s %5s %9s %10s %10s %14s\n' store nodes instances time "instances/s" "checkpoints/s"
for store in $STORES; do
    for k in $NODES; do
        case $store in
        postgres)
            [ -n "$PG_STARTED" ] && pg_stop
            . "$ROOT/tests/pg/pg.sh"
            pg_start >/dev/null 2>&1 || { echo "postgres: the throw-away server did not start"; continue; }
            PG_STARTED=1
            run "$CONVEYOR_TEST_PG_URL" postgres "$k"
            ;;
        sqlite)
            rm -f "$T/bench.db"*
            run "sqlite:$T/bench.db" sqlite "$k"
            ;;
        esac
    done
done
