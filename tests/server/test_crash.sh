#!/bin/sh
# tests/server/test_crash.sh — the crash test: 2,000 instances of a workflow
# of 3 HTTP calls, the server killed with SIGKILL at 3 random moments and
# restarted on the same database each time.
#
#   BUILD=build tests/server/test_crash.sh
#   (SEED=N replays the kills' draw; KEEP=1 keeps the servers' logs)
#
# tests/server/counting_service.py is the HTTP peer: it records every call
# (Idempotency-Key, path, body) and serves the counts at GET /stats. The
# workflow POSTs the instance's input to /a, a's answer to /b, b's answer
# to /c; each answer is the body with the step appended to `trail`, so an
# instance's output {"n": N, "trail": ["a","b","c"]} is its own.
#
# 2,000 starts go through the API from 8 client threads, each with an
# Idempotency-Key of its own (crash-N), so that a start cut by a kill is
# sent again safely. The service answers a call in 0.1 s, and 250 calls a
# second at most: many instances are in flight at once, and the run goes at
# the service's pace whatever the machine (a restarted server does not
# clear its backlog in one burst). The kills come at random amounts of
# progress (the number of instances whose last call the service has seen:
# one draw in each third of 10%..85% of them), so they land mid-run on a
# fast or a slow machine, sometimes while starts are still coming in. Each
# restart must come up (a failed one is a failure, tried again up to 3 times
# so that the proofs still run). Then it proves:
#  - exactly 2,000 instances exist, all completed, each acknowledged start
#    among them, each output its own;
#  - none completed twice: the history of every instance (all 2,000) holds
#    exactly one workflow.completed event, and no faulted or cancelled one;
#    and it begins with one workflow.started and the who-started-it note;
#  - the service saw exactly 6,000 distinct keys, of the form
#    INSTANCE/do/I/STEP/0/0, one per (instance, step), every call of a key
#    with the same path and body; a key seen more than once (a call issued
#    again after a crash) at most 1 + (servers killed) times, and the calls
#    issued again are at most twice the instances in flight at the kills (an
#    instance killed can issue again its call in flight and the one before
#    it, when the checkpoint holding that one's result was not durable yet).
# Prints figures (instances and calls in flight at each kill, repeated keys,
# time to complete after the last restart) and `N passed, N failed`.
# Every loop is bounded in time; every process it starts is killed by its
# PID on exit, even when a check fails.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
N=2000     # instances
KILLS=3    # SIGKILLs
DELAY=0.1  # seconds the service takes per call: instances stay in flight
PACE=250   # calls the service answers a second at most: the run's pace
T=$(mktemp -d /tmp/conveyor-crash-test.XXXXXX)
PIDS=""
cleanup() {
    # only the children still ours (a PID reaped long ago may name another's)
    for p in $PIDS; do
        [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = $$ ] && kill -9 "$p" 2>/dev/null
    done
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

# serve NAME ARGS...: starts a server in the background; sets SPID and S
# (its base URL, also written to $T/url for the starting clients); returns 1
# when it printed no port within 15 s or /health did not answer in 5 s
# (then WHY says which, with the end of its stderr).
serve() {
    name=$1
    shift
    : >"$T/$name.err"
    "$CV" serve "$@" --listen 127.0.0.1:0 >"$T/$name.out" 2>"$T/$name.err" &
    SPID=$!
    PIDS="$PIDS $SPID"
    S=""
    i=0
    while [ $i -lt 150 ]; do
        port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9][0-9]*\)$|\1|p' "$T/$name.err")
        if [ -n "$port" ]; then
            S="http://127.0.0.1:$port"
            break
        fi
        kill -0 "$SPID" 2>/dev/null || break
        # a server that cannot listen may linger while its effects end
        grep -q '^conveyor serve: ' "$T/$name.err" && break
        sleep 0.1
        i=$((i + 1))
    done
    WHY="no port printed: $(grep -v '^resumed' "$T/$name.err" | tail -3 | tr '\n' ' ')"
    [ -n "$S" ] || return 1
    echo "$S" >"$T/url.tmp" && mv "$T/url.tmp" "$T/url"
    i=0 # /health answers once the server takes requests
    while [ $i -lt 50 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$S/health")" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    WHY="it listens on $S, but GET /health did not answer 200 within 5 s"
    return 1
}

# The test's client side, one file: tools.py COMMAND ARGS...
cat >"$T/tools.py" <<'PY'
import http.client, json, os, random, re, signal, sys, threading, time, urllib.parse

WF = "/v1/workflows/test/crashhttp/1.0.0/instances"
STEPS = ["a", "b", "c"]

def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)

def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")

def walk(c, query):
    """Every item of GET /v1/instances?QUERY, page by page."""
    items, after = [], None
    for _ in range(100):
        p = "/v1/instances?namespace=test&name=crashhttp&limit=1000" + query
        status, j = get(c, p + ("&after=" + after if after else ""))
        if status != 200:
            raise RuntimeError("GET %s: %d" % (p, status))
        items += j["items"]
        after = j["next"]
        if not after:
            break
    return items

def cmd_start(urlfile, n, threads, out):
    """Starts instances 1..n from `threads` threads; a request that got no
    answer (server killed) is sent again, with the same Idempotency-Key, to
    whatever server $T/url names then. 90 s at most."""
    n, threads = int(n), int(threads)
    ids, codes, lock = {}, {}, threading.Lock()
    stats = {"resent": 0, "busy": 0}
    deadline = time.time() + 90
    def run(k):
        c = None
        for i in range(1 + k, n + 1, threads):
            while time.time() < deadline:
                try:
                    if c is None:
                        c = connect(open(urlfile).read().strip())
                    c.request("POST", WF, json.dumps({"n": i}),
                              {"Content-Type": "application/json", "Idempotency-Key": "crash-%d" % i})
                    r = c.getresponse()
                    body = r.read()
                    if r.status in (503, 429):  # busy or stopping: again
                        with lock:
                            stats["busy"] += 1
                        time.sleep(0.05)
                        continue
                    with lock:
                        codes[i] = r.status
                        if r.status in (200, 201):
                            ids[i] = json.loads(body)["id"]
                    break
                except (OSError, http.client.HTTPException, ValueError):
                    if c is not None:
                        c.close()
                    c = None
                    with lock:
                        stats["resent"] += 1
                    time.sleep(0.05)
    t0 = time.time()
    th = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    with open(out, "w") as f:
        for i in sorted(ids):
            f.write("%d %s %d\n" % (i, ids[i], codes[i]))
    bad = sorted(set(codes.values()) - {200, 201})
    print("%d starts answered in %.1f s; %d requests sent again (no answer: server killed or "
          "restarting; %d answered 200: created before), %d busy answers; other answers: %s"
          % (len(ids), time.time() - t0, stats["resent"], sum(1 for v in codes.values() if v == 200),
             stats["busy"], bad or "none"))

def cmd_killat(svc, url, pid, done, timeout):
    """Once the service has seen `done` distinct keys on /c (instances at
    their last step), counts the instances (existing, not completed) and the
    calls in flight at the service, then kills `pid` with SIGKILL. Prints
    `DONE INSTANCES NOT-COMPLETED CALLS` (`-` for what it could not read;
    `timeout` when that progress did not come: the server is killed all the
    same)."""
    done, deadline = int(done), time.time() + float(timeout)
    c = connect(svc)
    seen = "timeout"
    while time.time() < deadline:
        _, j = get(c, "/inflight")
        if j["keysByPath"].get("/c", 0) >= done:
            seen = j["keysByPath"]["/c"]
            break
        time.sleep(0.02)
    try:
        items = walk(connect(url), "")
        inst, notdone = len(items), sum(1 for i in items if i["status"] != "completed")
    except (OSError, http.client.HTTPException, RuntimeError, ValueError) as x:
        inst, notdone = "-", "-"
        sys.stderr.write("could not list the instances before the kill: %r\n" % x)
    calls = get(c, "/inflight")[1]["inflight"]
    os.kill(int(pid), signal.SIGKILL)
    print(seen, inst, notdone, calls)

def cmd_waitdone(url, n, timeout):
    """Until n instances are completed (polled twice a second); prints the
    seconds it waited, or `timeout`."""
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

def cmd_verify(url, svc, idsfile, n, kills, inflight_sum, out):
    """Writes `NAME|EXPECTED|ACTUAL` lines for the shell's `is`, and `#`
    lines of figures."""
    n, kills, inflight_sum = int(n), int(kills), int(inflight_sum)
    res = []
    def is_(name, expected, actual):
        res.append("%s|%s|%s" % (name, expected, actual))
    def figure(s):
        res.append("#" + s)
    acked, codes = {}, {}
    for line in open(idsfile):
        i, iid, code = line.split()
        acked[int(i)] = iid
        codes[int(i)] = int(code)
    nof = {iid: i for i, iid in acked.items()}
    is_("every one of the %d starts was answered with an id" % n, n, len(acked))
    is_("the %d ids are distinct" % n, n, len(nof))

    c = connect(url)
    items = walk(c, "")
    listed = {i["id"]: i for i in items}
    is_("exactly %d instances exist" % n, n, len(items))
    by = {}
    for i in items:
        by[i["status"]] = by.get(i["status"], 0) + 1
    is_("every instance is completed", "completed:%d" % n,
        " ".join("%s:%d" % kv for kv in sorted(by.items())))
    is_("every acknowledged start is among them (none lost)", 0, sum(1 for iid in nof if iid not in listed))

    # each instance and its history, all of them, from 4 connections
    wrong_out, twice, unnoted, hist_err, lock = [], [], [], [], threading.Lock()
    ids = sorted(nof)
    def check(part):
        c = connect(url)
        for iid in part:
            k = nof[iid]
            status, j = get(c, "/v1/instances/" + iid)
            if status != 200 or j.get("input") != {"n": k} or j.get("output") != {"n": k, "trail": STEPS}:
                with lock:
                    wrong_out.append((iid, status, j.get("input"), j.get("output")))
            status, h = get(c, "/v1/instances/%s/history" % iid)
            types = [e["type"] for e in h["items"]] if status == 200 else None
            if types is None:
                with lock:
                    hist_err.append(iid)
                continue
            if types.count("io.serverlessworkflow.workflow.completed.v1") != 1 or \
                    any(t.endswith(".faulted.v1") or t.endswith(".cancelled.v1") for t in types):
                with lock:
                    twice.append((iid, types))
            if types[:2] != ["io.serverlessworkflow.workflow.started.v1", "api"] or \
                    types.count("io.serverlessworkflow.workflow.started.v1") != 1:
                with lock:
                    unnoted.append((iid, codes[nof[iid]], types))
    t0 = time.time()
    th = [threading.Thread(target=check, args=(ids[k::4],)) for k in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    figure("read %d instances and their histories in %.1f s" % (len(ids), time.time() - t0))
    is_("every output is its own: {n: N, trail: [a, b, c]} for input {n: N}", 0, len(wrong_out))
    for w in wrong_out[:5]:
        figure("wrong: %s" % (w,))
    is_("every history can be read", 0, len(hist_err))
    is_("every history holds exactly one workflow.completed, no faulted or cancelled (none completed twice)",
        0, len(twice))
    for w in twice[:5]:
        figure("history: %s" % (w,))
    is_("every history begins with one workflow.started and the who-started-it note (none lost in a crash)",
        0, len(unnoted))
    if unnoted:
        figure("%d of those %d were acknowledged 201 (the others: 200, created by a request the kill cut)"
               % (sum(1 for u in unnoted if u[1] == 201), len(unnoted)))
    for w in unnoted[:5]:
        figure("history (instance, start answer, types): %s" % (w,))

    # the counting service's record
    _, st = get(connect(svc), "/stats")
    keys = st["keys"]
    # the calls as the service saw them, (N the body names, path) -> keys,
    # whatever the keys look like (a call without one counts under "")
    per_call = {}
    for key, k in keys.items():
        for b in k["bodies"]:
            try:
                n_of_body = json.loads(b)["n"]
            except (ValueError, KeyError, TypeError):
                n_of_body = None
            for p in k["paths"]:
                per_call.setdefault((n_of_body, p), set()).add(key)
    is_("every (instance, step) was called", n * len(STEPS),
        sum(1 for (i, p) in per_call if i in acked and p in ["/" + x for x in STEPS]))
    is_("every (instance, step) was called with exactly one key (none changed across a crash)", 0,
        sum(1 for v in per_call.values() if len(v) != 1))
    is_("every call carried an Idempotency-Key", 0, keys.get("", {}).get("count", 0))
    keys.pop("", None)
    is_("the service saw exactly %d x %d distinct keys" % (n, len(STEPS)), n * len(STEPS), len(keys))
    form = re.compile(r"^([0-9a-f-]{36})/do/([0-9])/([a-z])/0/0$")
    malformed, mixed = [], []
    for key, k in keys.items():
        m = form.match(key)
        if not m or m.group(1) not in nof or int(m.group(2)) >= len(STEPS) or \
                STEPS[int(m.group(2))] != m.group(3):
            malformed.append(key)
            continue
        iid, step = m.group(1), int(m.group(2))
        want = json.dumps({"n": nof[iid], "trail": STEPS[:step]}, sort_keys=True)
        if k["paths"] != ["/" + STEPS[step]] or k["bodies"] != [want]:
            mixed.append((key, k["paths"], k["bodies"]))
    is_("every key has the form INSTANCE/do/I/STEP/0/0 of an instance started", 0, len(malformed))
    for w in malformed[:5]:
        figure("malformed key: %s" % w)
    is_("every call of a key has its step's path and its instance's body (the same on a call issued again)",
        0, len(mixed))
    for w in mixed[:5]:
        figure("mixed: %s" % (w,))
    counts = [k["count"] for k in keys.values()]
    extra = sum(x - 1 for x in counts)
    again = sum(1 for x in counts if x > 1)
    figure("%d calls for %d keys: %d keys called more than once, %d calls issued again after a kill "
           "(%d instances in flight at the kills in all); most calls of one key: %d; "
           "most calls at once at the service: %d" % (st["requests"], len(keys), again, extra, inflight_sum,
           max(counts or [0]), st["maxInflight"]))
    is_("no key called more than 1 + %d times (once, and once after each server killed)" % kills, True,
        max(counts or [0]) <= 1 + kills)
    is_("calls issued again <= 2 x the instances in flight at the kills", True, extra <= 2 * inflight_sum)
    with open(out, "w") as f:
        f.write("\n".join(res) + "\n")

def cmd_thresholds(seed, n, kills):
    """One random amount of progress (instances at their last call) in each
    of `kills` equal parts of 10%..85% of the instances."""
    rnd, n, kills = random.Random(int(seed)), int(n), int(kills)
    lo, hi = 0.10, 0.85
    w = (hi - lo) / kills
    print(" ".join(str(int(n * rnd.uniform(lo + w * k, lo + w * (k + 1)))) for k in range(kills)))

sys.exit(globals()["cmd_" + sys.argv[1]](*sys.argv[2:]) or 0)
PY
tool() { python3 "$T/tools.py" "$@"; }
# wtool OUT COMMAND ARGS...: the tool in the background, its output in OUT,
# waited for (a `wait` gives way to INT/TERM, and the tool is killed with
# the rest); returns its status.
wtool() {
    out=$1
    shift
    python3 "$T/tools.py" "$@" >"$out" 2>"$out.err" &
    TPID=$!
    PIDS="$PIDS $TPID"
    wait "$TPID"
}

# ---- the counting service
python3 "$ROOT/tests/server/counting_service.py" "$T/svc.port" "$DELAY" "$PACE" 2>"$T/svc.log" &
SVC_PID=$!
PIDS="$PIDS $SVC_PID"
i=0
while [ ! -s "$T/svc.port" ] && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -s "$T/svc.port" ]; then ok "the counting service reports its port"; else
    fail "the counting service did not start: $(cat "$T/svc.log")"
    finish
fi
SVC="http://127.0.0.1:$(cat "$T/svc.port")"

cat >"$T/crashhttp.yaml" <<EOF
document: {dsl: '1.0.0', namespace: test, name: crashhttp, version: '1.0.0'}
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

if serve crash0 --db "$T/crash.db"; then ok "the server starts"; else
    fail "the server did not start: $WHY"
    finish
fi
code=$(curl -s --max-time 30 -o "$T/body" -w '%{http_code}' -X POST -H 'Content-Type: application/yaml' \
    --data-binary @"$T/crashhttp.yaml" "$S/v1/workflows")
is "deploy the workflow of 3 HTTP calls" 201 "$code"

# ---- 2,000 starts, 3 kills at random amounts of progress
THRESHOLDS=$(tool thresholds "$SEED" $N $KILLS)
echo "     (seed $SEED: kills once $THRESHOLDS instances reached their last call)"
T0=$(date +%s)
python3 "$T/tools.py" start "$T/url" $N 8 "$T/ids" >"$T/starts.log" 2>&1 &
STARTER=$!
PIDS="$PIDS $STARTER"
k=0
INFLIGHT_SUM=0 # instances not completed at each SIGKILL, summed
KILLED=0       # servers killed: the kills, and restarts that did not come up
for th in $THRESHOLDS; do
    k=$((k + 1))
    wtool "$T/killat" killat "$SVC" "$S" "$SPID" "$th" 60
    # shellcheck disable=SC2046 # the tool's words, split on purpose
    set -- $(cat "$T/killat") - - - -
    kill -9 "$SPID" 2>/dev/null # (killed already, unless the tool failed)
    wait "$SPID" 2>/dev/null
    # instances not completed just before the kill: at least as many as at it
    note "kill $k at $(($(date +%s) - T0)) s, $1 instances at their last call:" \
        "$2 instances, $3 not completed; $4 calls in flight at the service"
    KILLED=$((KILLED + 1))
    case "$3" in
    0 | -) fail "kill $k caught instances mid-run $(head -c 300 "$T/killat.err")" ;;
    *)
        INFLIGHT_SUM=$((INFLIGHT_SUM + $3))
        ok "kill $k caught instances mid-run"
        ;;
    esac
    # restart; a failed restart is a failure, and is tried again (3 times in
    # all) so that the proofs below still run when a later attempt comes up
    a=0
    while [ $a -lt 3 ]; do
        a=$((a + 1))
        if serve "crash$k.$a" --db "$T/crash.db"; then
            ok "restart $k on the same db"
            break
        fi
        fail "restart $k on the same db (attempt $a): $WHY"
        # a server that did not come up may have resumed the instances and
        # issued their calls again: it counts as one more kill
        kill -9 "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
        KILLED=$((KILLED + 1))
        case "$3" in [0-9]*) INFLIGHT_SUM=$((INFLIGHT_SUM + $3)) ;; esac
        [ $a -lt 3 ] || finish
    done
done
RESTARTED=$(date +%s.%N)
wait "$STARTER"
sed 's/^/     (/; s/$/)/' "$T/starts.log"
is "every start was answered" $N "$(grep -c . "$T/ids" 2>/dev/null)"
wtool "$T/done" waitdone "$S" $N 120
done_in=$(cat "$T/done")
case "$done_in" in [0-9]*) done_ok=yes ;; *) done_ok=$done_in ;; esac
is "every instance completes after the last restart (120 s at most)" yes "$done_ok"
after=$(awk -v a="$RESTARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
note "all $N completed $after s after the last restart, $(($(date +%s) - T0)) s after the first start"

# ---- the proofs
if wtool "$T/verify.log" verify "$S" "$SVC" "$T/ids" $N $KILLED $INFLIGHT_SUM "$T/verify"; then
    while IFS='|' read -r name expected actual; do
        case "$name" in
        "#"*) note "${name#\#}" ;;
        *) is "$name" "$expected" "$actual" ;;
        esac
    done <"$T/verify"
else
    fail "the checks could not run: $(tail -5 "$T/verify.log.err")"
fi

# ---- a clean stop, and the sanitizer builds' reports (SIGKILLed servers
# cannot report; the last one stops with SIGTERM)
kill -TERM "$SPID"
i=0
while kill -0 "$SPID" 2>/dev/null && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 "$SPID" 2>/dev/null; then
    fail "SIGTERM: the last server did not exit within 15 s"
    kill -9 "$SPID"
    wait "$SPID" 2>/dev/null
else
    wait "$SPID" 2>/dev/null
    is "SIGTERM: the last server exits 0" 0 $?
fi
san=$(cat "$T"/crash*.err | grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error: ')
if [ "$san" -eq 0 ]; then ok "no sanitizer report in the servers' stderr"; else
    fail "sanitizer reports in the servers' stderr:"
    cat "$T"/crash*.err |
        grep -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error: ' | head -80
fi
finish
