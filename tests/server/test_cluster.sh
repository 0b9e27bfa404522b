#!/bin/sh
# tests/server/test_cluster.sh — several nodes on one store (docs/cluster.md):
# three `conveyor serve --node` processes share one database; N instances of
# a workflow of 3 HTTP calls are started through all three; one node is
# killed with SIGKILL, the database drops every connection (PostgreSQL), and
# another node is paused with SIGSTOP past its lease and then resumed
# (SIGCONT).
#
#   BUILD=build tests/server/test_cluster.sh
#   (N=5000 instances by default; STORE=URL runs on that store instead of a
#   throw-away PostgreSQL server (tests/pg/pg.sh) — e.g. STORE=sqlite:/tmp/x.db,
#   nodes on one machine; KEEP=1 keeps the nodes' logs)
#
# tests/server/counting_service.py is the HTTP peer: it records every call
# (Idempotency-Key, path, body). It proves:
#  - exactly N instances exist, all completed, each acknowledged start among
#    them, each output its own;
#  - each completed exactly once: the history of every instance holds one
#    workflow.completed and no faulted or cancelled event;
#  - the instances of the killed node and of the paused one were taken by
#    the others (their owners at the end are the two live nodes... or the
#    paused one, which takes back what nobody took);
#  - the paused node's leases lapsed and it dropped what it held; every
#    write it tried for an instance another node had taken was refused
#    (its log; the count is printed);
#  - no effect ran under two idempotency keys: every (instance, step) was
#    called with exactly one key, of the form INSTANCE/do/I/STEP/0/0;
#  - a schedule (every PT1S, deployed through n1) starts one instance per
#    occasion across the nodes (distinct occasions = instances), and goes on
#    when n1 is killed;
#  - an instance leased to a node but held by none of its workers (a start
#    whose commit went through while the node was told it failed) is taken
#    again by that node's census and completed;
#  - an event posted to one node completes an instance listening on
#    another; a review task an instance on one node opened is listed and
#    completed through another, and the instance goes on with the decision.
# Prints figures and `N passed, N failed`. Every loop is bounded in time;
# every process it starts is killed by its PID on exit.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
N=${N:-5000}
LEASE=2      # seconds: a node's leases (--lease PT2S)
DELAY=0.05   # seconds the service takes per call
PACE=600     # calls a second at most: the run's pace
T=$(mktemp -d /tmp/conveyor-cluster-test.XXXXXX)
PIDS=""
PG_STARTED=""
cleanup() {
    for p in $PIDS; do
        kill -CONT "$p" 2>/dev/null
        kill -9 "$p" 2>/dev/null
    done
    [ -n "$PG_STARTED" ] && pg_stop
    if [ -n "${KEEP:-}" ]; then echo "     (kept $T)"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
}
is() { # is NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
note() { echo "     ($*)"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# ---- the store
if [ -n "${STORE:-}" ]; then
    URL=$STORE
else
    . "$ROOT/tests/pg/pg.sh"
    if pg_start; then
        PG_STARTED=1
        URL=$CONVEYOR_TEST_PG_URL
        ok "a throw-away PostgreSQL server runs ($URL)"
    else
        fail "a throw-away PostgreSQL server could not start"
        finish
    fi
fi

# node NAME: starts node NAME on the store; sets its URL in $T/NAME.url and
# its PID in $T/NAME.pid; 1 when it does not answer /health within 15 s.
node() {
    name=$1
    : >"$T/$name.err"
    "$CV" serve --store "$URL" --node "$name" --lease "PT${LEASE}S" --workers 2 --listen 127.0.0.1:0 \
        >"$T/$name.out" 2>"$T/$name.err" &
    pid=$!
    PIDS="$PIDS $pid"
    echo "$pid" >"$T/$name.pid"
    i=0
    while [ $i -lt 150 ]; do
        port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9][0-9]*\)$|\1|p' "$T/$name.err")
        if [ -n "$port" ] &&
            [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health")" = 200 ]; then
            echo "http://127.0.0.1:$port" >"$T/$name.url"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "     node $name: $(tail -3 "$T/$name.err" | tr '\n' ' ')"
    return 1
}

cat >"$T/tools.py" <<'PY'
import http.client, json, os, re, signal, sys, threading, time, urllib.parse

WF = "/v1/workflows/test/clusterhttp/1.0.0/instances"
STEPS = ["a", "b", "c"]

def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)

def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")

def walk(c, query):
    items, after = [], None
    for _ in range(1000):
        p = "/v1/instances?namespace=test&name=clusterhttp&limit=1000" + query
        status, j = get(c, p + ("&after=" + after if after else ""))
        if status != 200:
            raise RuntimeError("GET %s: %d" % (p, status))
        items += j["items"]
        after = j["next"]
        if not after:
            break
    return items

def cmd_start(urlfiles, n, threads, out):
    """Starts instances 1..n from `threads` threads, instance i through node
    i % nodes; a request that got no answer (node killed or paused) goes
    to the next node, with the same Idempotency-Key. 240 s at most."""
    urls = [open(f).read().strip() for f in urlfiles.split(",")]
    n, threads = int(n), int(threads)
    ids, codes, lock = {}, {}, threading.Lock()
    stats = {"moved": 0}
    deadline = time.time() + 240
    def run(k):
        conns = {}
        for i in range(1 + k, n + 1, threads):
            node = i % len(urls)
            while time.time() < deadline:
                try:
                    c = conns.get(node) or connect(urls[node])
                    conns[node] = c
                    c.timeout = 3
                    c.request("POST", WF, json.dumps({"n": i}),
                              {"Content-Type": "application/json", "Idempotency-Key": "cluster-%d" % i})
                    r = c.getresponse()
                    body = r.read()
                    if r.status in (503, 429):
                        time.sleep(0.05)
                        continue
                    with lock:
                        codes[i] = r.status
                        if r.status in (200, 201):
                            ids[i] = json.loads(body)["id"]
                    break
                except (OSError, http.client.HTTPException, ValueError):
                    if node in conns:
                        conns[node].close()
                        del conns[node]
                    node = (node + 1) % len(urls)
                    with lock:
                        stats["moved"] += 1
    t0 = time.time()
    th = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    with open(out, "w") as f:
        for i in sorted(ids):
            f.write("%d %s %d\n" % (i, ids[i], codes[i]))
    print("%d starts answered in %.1f s; %d requests moved to another node; answers other than 200/201: %s"
          % (len(ids), time.time() - t0, stats["moved"], sorted(set(codes.values()) - {200, 201}) or "none"))

def cmd_progress(svc, done, timeout):
    """Waits until the service saw `done` distinct keys on /c."""
    done, deadline = int(done), time.time() + float(timeout)
    c = connect(svc)
    while time.time() < deadline:
        _, j = get(c, "/inflight")
        if j["keysByPath"].get("/c", 0) >= done:
            print(j["keysByPath"]["/c"])
            return 0
        time.sleep(0.05)
    print("timeout")
    return 1

def cmd_waitdone(url, n, timeout):
    n, t0 = int(n), time.time()
    while time.time() < t0 + float(timeout):
        try:
            if len(walk(connect(url), "&status=completed")) >= n:
                print("%.1f" % (time.time() - t0))
                return 0
        except (OSError, http.client.HTTPException, RuntimeError):
            pass
        time.sleep(0.5)
    print("timeout")
    return 1

def cmd_schedule(url, out):
    """The instances of test/clustertick: how many, their distinct occasions,
    and who started them (the owner of each, at the end)."""
    c = connect(url)
    items, after = [], None
    for _ in range(100):
        p = "/v1/instances?namespace=test&name=clustertick&limit=1000"
        status, j = get(c, p + ("&after=" + after if after else ""))
        items += j["items"]
        after = j["next"]
        if not after:
            break
    occasions, owners = set(), {}
    for i in items:
        _, h = get(c, "/v1/instances/%s/history" % i["id"])
        for e in h["items"]:
            if e["type"] == "schedule":
                occasions.add(e["data"]["occasion"])
        _, j = get(c, "/v1/instances/" + i["id"])
        o = j.get("owner") or "-"
        owners[o] = owners.get(o, 0) + 1
    with open(out, "w") as f:
        f.write("%d %d %d %s\n" % (len(items), len(occasions), len(owners),
                ",".join("%s:%d" % kv for kv in sorted(owners.items()))))

def cmd_verify(url, svc, idsfile, n, live, out):
    n = int(n)
    live = live.split(",")
    res = []
    def is_(name, expected, actual):
        res.append("%s|%s|%s" % (name, expected, actual))
    def figure(s):
        res.append("#" + s)
    acked = {}
    for line in open(idsfile):
        i, iid, code = line.split()
        acked[int(i)] = iid
    nof = {iid: i for i, iid in acked.items()}
    is_("every one of the %d starts was answered with an id" % n, n, len(acked))
    is_("the %d ids are distinct" % n, n, len(nof))
    items = walk(connect(url), "")
    listed = {i["id"]: i for i in items}
    is_("exactly %d instances exist" % n, n, len(items))
    by = {}
    for i in items:
        by[i["status"]] = by.get(i["status"], 0) + 1
    is_("every instance is completed", "completed:%d" % n, " ".join("%s:%d" % kv for kv in sorted(by.items())))
    is_("every acknowledged start is among them (none lost)", 0, sum(1 for iid in nof if iid not in listed))
    wrong, twice, owners, lock = [], [], {}, threading.Lock()
    ids = sorted(nof)
    def check(part):
        c = connect(url)
        for iid in part:
            k = nof[iid]
            status, j = get(c, "/v1/instances/" + iid)
            if status != 200 or j.get("output") != {"n": k, "trail": STEPS}:
                with lock:
                    wrong.append((iid, status, j.get("output")))
            with lock:
                o = j.get("owner") if status == 200 else None
                owners[o] = owners.get(o, 0) + 1
            status, h = get(c, "/v1/instances/%s/history" % iid)
            types = [e["type"] for e in h["items"]] if status == 200 else []
            if types.count("io.serverlessworkflow.workflow.completed.v1") != 1 or \
                    any(t.endswith(".faulted.v1") or t.endswith(".cancelled.v1") for t in types):
                with lock:
                    twice.append((iid, types))
    th = [threading.Thread(target=check, args=(ids[k::4],)) for k in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    is_("every output is its own: {n: N, trail: [a, b, c]}", 0, len(wrong))
    for w in wrong[:5]:
        figure("wrong: %s" % (w,))
    is_("every history holds exactly one workflow.completed, no faulted or cancelled (each completed once)",
        0, len(twice))
    for w in twice[:3]:
        figure("history: %s" % (w,))
    figure("last owners: %s" % ", ".join("%s: %d" % (k, v) for k, v in sorted(owners.items(), key=str)))
    _, st = get(connect(svc), "/stats")
    keys = st["keys"]
    is_("every call carried an Idempotency-Key", 0, keys.get("", {}).get("count", 0))
    keys.pop("", None)
    per_call = {}
    form = re.compile(r"^([0-9a-f-]{36})/do/([0-9])/([a-z])/0/0$")
    malformed = []
    for key, k in keys.items():
        m = form.match(key)
        if not m or m.group(1) not in nof or STEPS[int(m.group(2))] != m.group(3):
            malformed.append(key)
            continue
        per_call.setdefault((m.group(1), m.group(3)), set()).add(key)
    is_("every key has the form INSTANCE/do/I/STEP/0/0 of an instance started", 0, len(malformed))
    is_("every (instance, step) was called", n * len(STEPS), len(per_call))
    is_("no effect ran under two idempotency keys (one key per instance and step)", 0,
        sum(1 for v in per_call.values() if len(v) != 1))
    counts = [k["count"] for k in keys.values()]
    figure("%d calls for %d keys: %d keys called more than once (a call issued again by the node that took "
           "the instance over)" % (st["requests"], len(keys), sum(1 for x in counts if x > 1)))
    with open(out, "w") as f:
        f.write("\n".join(res) + "\n")

sys.exit(globals()["cmd_" + sys.argv[1]](*sys.argv[2:]) or 0)
PY
tool() { python3 "$T/tools.py" "$@"; }

# ---- the counting service
python3 "$ROOT/tests/server/counting_service.py" "$T/svc.port" "$DELAY" "$PACE" 2>"$T/svc.log" &
PIDS="$PIDS $!"
i=0
while [ ! -s "$T/svc.port" ] && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -s "$T/svc.port" ] || {
    fail "the counting service did not start: $(cat "$T/svc.log")"
    finish
}
SVC="http://127.0.0.1:$(cat "$T/svc.port")"

cat >"$T/clusterhttp.yaml" <<EOF
document: {dsl: '1.0.0', namespace: test, name: clusterhttp, version: '1.0.0'}
do:
  - a:
      call: http
      with: {method: post, endpoint: '$SVC/a', body: '\${ {n: .n, trail: []} }'}
  - b:
      call: http
      with: {method: post, endpoint: '$SVC/b', body: '\${ . }'}
  - c:
      call: http
      with: {method: post, endpoint: '$SVC/c', body: '\${ . }'}
EOF

# ---- a node whose database does not answer says so and stops
"$CV" serve --store "postgres://conveyor:s3cret@127.0.0.1:1/conveyor" --node n0 --listen 127.0.0.1:0 \
    >/dev/null 2>"$T/n0.err" &
n0=$!
PIDS="$PIDS $n0"
i=0
while kill -0 "$n0" 2>/dev/null && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
done
wait "$n0"
is "a node whose database does not answer exits 1" 1 "$?"
if grep -q "cannot connect" "$T/n0.err" && ! grep -q s3cret "$T/n0.err"; then
    ok "and says it cannot connect, without the password"
else
    fail "and says it cannot connect, without the password: $(cat "$T/n0.err")"
fi

# ---- three nodes
for n in n1 n2 n3; do
    if node $n; then ok "node $n serves"; else
        fail "node $n did not start"
        finish
    fi
done
U1=$(cat "$T/n1.url")
code=$(curl -s -o "$T/deploy.out" -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/yaml' \
    --data-binary @"$T/clusterhttp.yaml" "$U1/v1/workflows")
is "the workflow is deployed through n1" 201 "$code"
cat >"$T/clustertick.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: clustertick, version: '1.0.0'}
schedule:
  every: PT1S
do:
  - tick:
      set: {ticked: true}
EOF
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/yaml' \
    --data-binary @"$T/clustertick.yaml" "$U1/v1/workflows")
is "a schedule (every PT1S) is deployed through n1" 201 "$code"

# ---- an instance leased to n1 that none of n1's workers holds (as when a
# start's commit went through but the node was told it failed): n1's census
# takes it again and runs it
if [ -n "$PG_STARTED" ]; then
    cat >"$T/clusterorphan.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: clusterorphan, version: '1.0.0'}
do:
  - done:
      set: {adopted: true}
EOF
    curl -s -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/yaml' \
        --data-binary @"$T/clusterorphan.yaml" "$U1/v1/workflows"
    oid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    "$(pg_bin)/psql" "$URL" -qAtc "INSERT INTO instances (id, namespace, name, version, status, input, created_at,
        updated_at, owner, lease_until, epoch) VALUES ('$oid', 'test', 'clusterorphan', '1.0.0', 'pending', '{}',
        0, 0, 'n1', 9000000000000000, 1)" >/dev/null
    st=""
    i=0
    while [ $i -lt 200 ]; do # 20 s at most: two censuses, about a lease apart
        st=$(curl -s --max-time 5 "$U1/v1/instances/$oid" |
            python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j.get("owner"))' 2>/dev/null)
        case "$st" in completed*) break ;; esac
        sleep 0.1
        i=$((i + 1))
    done
    is "an instance leased to n1 but held by none of its workers is taken again and completed" "completed n1" "$st"
    if grep -q "instance $oid was leased to it but held by none of its workers: taken again (epoch 2)" "$T/n1.err"; then
        ok "n1 says it took it again, at a new epoch"
    else
        fail "n1 says it took it again, at a new epoch: $(grep "$oid" "$T/n1.err")"
    fi
fi

# ---- N starts through all three; n3 killed at 20% of the instances done,
# n2 paused at 40% for 2 leases and resumed
tool start "$T/n1.url,$T/n2.url,$T/n3.url" "$N" 12 "$T/ids" >"$T/start.out" 2>"$T/start.err" &
STARTER=$!
PIDS="$PIDS $STARTER"
t0=$(date +%s)
at=$(tool progress "$SVC" $((N / 5)) 240)
kill -9 "$(cat "$T/n3.pid")"
note "n3 killed with SIGKILL when $at instances had made their last call"
if [ -n "$PG_STARTED" ]; then # the database drops every connection (a restart, a network cut)
    at=$(tool progress "$SVC" $((N * 3 / 10)) 240)
    dropped_conns=$("$(pg_bin)/psql" "$URL" -Atc \
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    note "PostgreSQL dropped all $dropped_conns connections of the nodes when $at instances had made their last call"
fi
at=$(tool progress "$SVC" $((N * 2 / 5)) 240)
kill -STOP "$(cat "$T/n2.pid")"
note "n2 paused with SIGSTOP when $at instances had made their last call"
sleep $((LEASE * 2 + 1))
kill -CONT "$(cat "$T/n2.pid")"
note "n2 resumed after $((LEASE * 2 + 1)) s"
wait "$STARTER"
note "$(cat "$T/start.out") $(tail -2 "$T/start.err" | tr '\n' ' ')"
took=$(tool waitdone "$U1" "$N" 240)
if [ "$took" = timeout ]; then fail "all $N instances completed within 240 s of the last start"; else
    ok "all $N instances completed (${took} s after the last start; $(($(date +%s) - t0)) s in all)"
fi

# ---- the proofs
tool verify "$U1" "$SVC" "$T/ids" "$N" n1,n2 "$T/verify" 2>"$T/verify.err" || note "verify: $(tail -3 "$T/verify.err")"
if [ -s "$T/verify" ]; then
    while IFS='|' read -r name exp act; do
        case "$name" in
        \#*) note "${name#\#}" ;;
        *) is "$name" "$exp" "$act" ;;
        esac
    done <"$T/verify"
else
    fail "the verification ran"
fi
# ---- an event posted to n2 completes an instance listening on n1
cat >"$T/clusterlisten.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: clusterlisten, version: '1.0.0'}
do:
  - hear:
      listen:
        to:
          one:
            with: {type: com.example.cluster.ping}
EOF
U2=$(cat "$T/n2.url")
curl -s -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/yaml' --data-binary @"$T/clusterlisten.yaml" \
    "$U1/v1/workflows"
lid=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' -d '{}' \
    "$U1/v1/workflows/test/clusterlisten/1.0.0/instances" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 0.5
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/cloudevents+json' \
    -d '{"specversion":"1.0","id":"ping-1","source":"https://test.conveyor","type":"com.example.cluster.ping","data":{}}' \
    "$U2/v1/events")
is "an event is posted to n2" 202 "$code"
t_post=$(date +%s%N)
st=""
i=0
while [ $i -lt 100 ]; do
    st=$(curl -s --max-time 5 "$U1/v1/instances/$lid" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j.get("owner"))' 2>/dev/null)
    case "$st" in completed*) break ;; esac
    sleep 0.1
    i=$((i + 1))
done
is "the instance listening on n1 completed on it (the event came through n2)" "completed n1" "$st"
note "posted to n2, completed on n1 within $((($(date +%s%N) - t_post) / 1000000)) ms (polled every 100 ms)"

# ---- a review task opened by an instance on n1, completed through n2
cat >"$T/clusterreview.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: clusterreview, version: '1.0.0'}
do:
  - ask:
      call: review
      with:
        title: Approve the payment?
        role: ops
EOF
curl -s -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/yaml' --data-binary @"$T/clusterreview.yaml" \
    "$U1/v1/workflows"
rid=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' -d '{}' \
    "$U1/v1/workflows/test/clusterreview/1.0.0/instances" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
tid=""
i=0
while [ -z "$tid" ] && [ $i -lt 100 ]; do
    tid=$(curl -s --max-time 5 "$U2/v1/tasks?instance=$rid" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["items"][0]["id"] if j.get("items") else "")' 2>/dev/null)
    [ -n "$tid" ] || sleep 0.1
    i=$((i + 1))
done
if [ -n "$tid" ]; then ok "n2 lists the task the instance on n1 opened"; else fail "n2 lists the task the instance on n1 opened"; fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
    -H 'X-Conveyor-User: ann' -d '{"decision":"approve"}' "$U2/v1/tasks/$tid/complete")
is "the task is completed through n2" 200 "$code"
st=""
i=0
while [ $i -lt 100 ]; do
    st=$(curl -s --max-time 5 "$U1/v1/instances/$rid" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j.get("owner"), (j.get("output") or {}).get("decision"))' 2>/dev/null)
    case "$st" in completed*) break ;; esac
    sleep 0.1
    i=$((i + 1))
done
is "the instance on n1 goes on with the decision made through n2" "completed n1 approve" "$st"

# ---- the schedule: one instance per occasion across the nodes; n1, which
# received its deployment, is killed: the schedule goes on on n2
tool schedule "$U1" "$T/sched"
set -- $(cat "$T/sched")
before=${1:-0}
if [ "$before" -ge 2 ]; then ok "the schedule started instances ($1; started by $4)"; else
    fail "the schedule started instances: ${1:-none}"
fi
kill -9 "$(cat "$T/n1.pid")"
note "n1 killed with SIGKILL"
i=0
while [ $i -lt 100 ]; do # 10 s at most for 3 more occasions
    tool schedule "$U2" "$T/sched"
    set -- $(cat "$T/sched")
    [ "${1:-0}" -ge $((before + 3)) ] && break
    sleep 0.1
    i=$((i + 1))
done
if [ "${1:-0}" -ge $((before + 3)) ]; then ok "the schedule goes on without n1 ($1 instances; started by $4)"; else
    fail "the schedule goes on without n1: ${1:-none} instances, $before before"
fi
is "each occasion of the schedule started one instance across the nodes (distinct occasions = instances)" "${1:-x}" "${2:-y}"

if grep -q "its leases lapsed" "$T/n2.err"; then ok "n2's leases lapsed while it was paused, and it said so"; else
    fail "n2's leases lapsed while it was paused: $(tail -5 "$T/n2.err" | tr '\n' ' ')"
fi
lapses=$(curl -s --max-time 5 "$(cat "$T/n2.url")/metrics" | sed -n 's/^conveyor_cluster_lease_lapses_total //p')
if [ "${lapses:-0}" -ge 1 ]; then ok "n2's metrics count the lapse ($lapses)"; else fail "n2's metrics count the lapse: '${lapses:-}'"; fi
refused=$(grep -c "was taken by another node: its write was refused" "$T/n2.err")
dropped=$(sed -n 's/.*dropped \([0-9]*\) instance(s) another node took.*/\1/p' "$T/n2.err" | awk '{s+=$1} END {print s+0}')
note "n2 after its pause: $refused late write(s) refused by the store, $dropped instance(s) dropped from memory"
kill -TERM "$(cat "$T/n2.pid")" 2>/dev/null
finish
