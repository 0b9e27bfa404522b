# tests/server/lib.sh — helpers shared by the server test scripts (sourced).
#
# Sets ROOT, BUILD, CV (the conveyor binary), T (a temporary directory
# removed at exit) and PIDS (killed with SIGKILL at exit); defines ok/fail/
# check/is (counting into $passed/$failed), serve / serve_raw (a server on
# 127.0.0.1 on a port it picks), req/js/hdr/problem_ok (one HTTP request and
# its answer).
# Every server listens on 127.0.0.1, every loop is bounded in time.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
T=$(mktemp -d /tmp/conveyor-server-test.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
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
check() { # check NAME COMMAND...: ok when the command succeeds
    name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}

# serve NAME ARGS...: starts a server in the background on 127.0.0.1, on a
# port it picks; sets SPID and S (its base URL); returns 1 when it printed no
# port within 15 s.
serve() {
    name=$1
    shift
    serve_raw "$name" "$@" --listen 127.0.0.1:0
}
# serve_raw NAME ARGS...: the same, where ARGS (or a --config file) say
# where to listen, which must be 127.0.0.1, port 0.
serve_raw() {
    name=$1
    shift
    : >"$T/$name.err"
    "$CV" serve "$@" >"$T/$name.out" 2>"$T/$name.err" &
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
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$S" ] || return 1
    i=0 # /health answers once the server takes requests
    while [ $i -lt 50 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$S/health")" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# req METHOD PATH [curl args...]: body in $T/body, headers in $T/hdr, status
# in $CODE.
req() {
    m=$1
    p=$2
    shift 2
    CODE=$(curl -s --max-time 30 -X "$m" -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@" "$S$p")
}
# js EXPR: evaluates a Python expression over j = the JSON of $T/body.
js() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/body" "$1" 2>/dev/null
}
is() { # is NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3' $(head -c 400 "$T/body" 2>/dev/null)"; fi
}
hdr() { # the value of header $1 in the last response
    tr -d '\r' <"$T/hdr" | sed -n "s/^$1: //Ip" | head -1
}
problem_ok() { # the last response is a problem with the given status
    [ "$(hdr Content-Type)" = "application/problem+json" ] &&
        [ "$(js 'j["status"]')" = "$1" ] && [ -n "$(js 'j["title"]')" ] &&
        [ -n "$(js 'j["detail"]')" ] && [ -n "$(js 'j["type"]')" ] && [ -n "$(js 'j["instance"]')" ]
}

cat >"$T/hello.yaml" <<'EOF'
document: {dsl: '1.0.0', namespace: test, name: hello, version: '1.0.0'}
do:
  - greet:
