#!/bin/sh
# tests/unit/test_cli.sh — the `conveyor` command line, end to end.
#
#   BUILD=build tests/unit/test_cli.sh
#
# Checks exit codes (validate 0/1/2; run 0 completed, 1 faulted or invalid,
# 2 usage), where output goes (the workflow output as JSON on stdout, the error
# descriptor as JSON on stderr), --input, --input-file, --secrets,
# --secret-env, --events, --events-file, --report, --subflow, --time-scale,
# --host-map/--deny-unmapped (against the offline stub, started here on a free
# port of 127.0.0.1), and --help for every command. JSON is checked with
# python3 (which the stub needs anyway). Prints `N passed, N failed` and exits
# non-zero when anything failed. Every command runs under `timeout`.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
CV="$ROOT/$BUILD/conveyor"
case "$BUILD" in /*) CV="$BUILD/conveyor" ;; esac
if [ ! -x "$CV" ]; then
    echo "missing $CV: run make first" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
T=$(mktemp -d /tmp/conveyor-cli-test.XXXXXX)
STUB_PID=""
cleanup() {
    [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null
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
    [ -s "$T/out" ] && sed 's/^/     stdout: /' "$T/out" | head -20
    [ -s "$T/err" ] && sed 's/^/     stderr: /' "$T/err" | head -20
    return 0
}

# cv ARGS... — runs conveyor with stdout/stderr in $T/out, $T/err; sets $rc.
cv() {
    timeout 60 "$CV" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# expect_rc NAME WANT — checks $rc.
expect_rc() {
    if [ "$rc" -eq "$2" ]; then ok "$1 (exit $rc)"; else fail "$1: exit $rc, expected $2"; fi
}

# json_eq NAME FILE PYEXPR WANTJSON — evaluates PYEXPR on the JSON in FILE
# (bound to `v`; the last line when `last` is given as FILE suffix) and
# compares with WANTJSON.
json_eq() {
    name=$1 file=$2 expr=$3 want=$4
    if python3 - "$file" "$expr" "$want" <<'PY' >"$T/py" 2>&1; then ok "$name"; else fail "$name: $(cat "$T/py")"; fi
import json, sys
path, expr, want = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
text = open(path).read()
try:
    v = json.loads(text)
except Exception as e:
    print("not one JSON value: %r (%s)" % (text[:200], e)); sys.exit(1)
got = eval(expr, {"v": v})
if got != want:
    print("got %s, want %s" % (json.dumps(got), json.dumps(want))); sys.exit(1)
PY
}

# has NAME FILE PATTERN — grep -q.
has() {
    if grep -q -- "$3" "$2"; then ok "$1"; else fail "$1: '$3' not in $(basename "$2")"; fi
}

empty() {
    if [ ! -s "$2" ]; then ok "$1"; else fail "$1: $(basename "$2") is not empty"; fi
}

HDR="document: {dsl: '1.0.0', namespace: test, name: cli, version: '0.1.0'}"

cat >"$T/ok.yaml" <<EOF
$HDR
do:
  - greet:
      set:
        greeting: \${ "hello " + (.name // "world") }
EOF
cat >"$T/fault.yaml" <<EOF
$HDR
do:
  - boom:
      raise:
        error:
          type: https://serverlessworkflow.io/spec/1.0.0/errors/validation
          status: 422
          title: Rejected
          detail: \${ "bad " + (.name // "input") }
EOF
cat >"$T/invalid.yaml" <<EOF
$HDR
do:
  - bad:
      set: {a: 1}
      then: nowhere
EOF
printf 'document: {dsl: 1.0.0\ndo: [\n' >"$T/unparsable.yaml"
cat >"$T/json.json" <<EOF
{"document": {"dsl": "1.0.0", "namespace": "test", "name": "json", "version": "0.1.0"},
 "do": [{"s": {"set": {"fromJson": true}}}]}
EOF

# ---- conveyor, help, version ----------------------------------------------------

cv
expect_rc "no command is a usage error" 2
has "no command prints the usage on stderr" "$T/err" "usage: conveyor"
cv --help
expect_rc "--help" 0
has "--help lists the commands" "$T/out" "validate FILE"
cv help
expect_rc "help" 0
cv version
expect_rc "version" 0
has "version prints the version" "$T/out" "conveyor [0-9]"
cv frobnicate
expect_rc "unknown command" 2
cv validate --help
expect_rc "validate --help" 0
has "validate --help text" "$T/out" "usage: conveyor validate"
cv validate -h
expect_rc "validate -h" 0
cv run --help
expect_rc "run --help" 0
for opt in --input --input-file --secrets --events --report --subflow --time-scale --host-map; do
    has "run --help documents $opt" "$T/out" "$opt"
done
cv run -h
expect_rc "run -h" 0

# ---- validate ----------------------------------------------------------------------

cv validate "$T/ok.yaml"
expect_rc "validate a valid document" 0
has "validate prints FILE: ok" "$T/out" "ok.yaml: ok"
cv validate "$T/json.json"
expect_rc "validate a JSON document" 0
cv validate "$T/invalid.yaml"
expect_rc "validate an invalid document" 1
has "validate locates the problem as file:line:column" "$T/err" "invalid.yaml:[0-9][0-9]*:[0-9][0-9]*: "
has "validate names the path" "$T/err" "nowhere"
cv validate "$T/unparsable.yaml"
expect_rc "validate an unparsable document" 1
cv validate "$T/does-not-exist.yaml"
expect_rc "validate a missing file" 1
cv validate "$T/ok.yaml" "$T/invalid.yaml" "$T/json.json"
expect_rc "validate several files, one invalid" 1
has "validate reports the valid ones too" "$T/out" "json.json: ok"
cv validate
expect_rc "validate without files" 2
cv validate --bogus "$T/ok.yaml"
expect_rc "validate with an unknown option" 2

# ---- run: exit codes and streams ----------------------------------------------------

cv run "$T/ok.yaml"
expect_rc "run a completing workflow" 0
json_eq "run prints the output as JSON on stdout" "$T/out" "v" '{"greeting": "hello world"}'
empty "run prints nothing on stderr when it completes" "$T/err"
cv run "$T/json.json"
expect_rc "run a JSON document" 0
json_eq "run a JSON document: output" "$T/out" "v" '{"fromJson": true}'

cv run "$T/fault.yaml"
expect_rc "run a faulting workflow" 1
empty "a fault prints nothing on stdout" "$T/out"
json_eq "a fault prints the error descriptor on stderr (type)" "$T/err" "v['type']" \
    '"https://serverlessworkflow.io/spec/1.0.0/errors/validation"'
json_eq "error descriptor: status, title, detail, instance" "$T/err" \
    "[v['status'], v['title'], v['detail'], v['instance']]" '[422, "Rejected", "bad input", "/do/0/boom"]'

cv run "$T/invalid.yaml"
expect_rc "run an invalid document" 1
has "run an invalid document: located message" "$T/err" "invalid.yaml:[0-9]"
cv run "$T/does-not-exist.yaml"
expect_rc "run a missing file" 1
cv run
expect_rc "run without a file" 2
cv run "$T/ok.yaml" "$T/json.json"
expect_rc "run with two files" 2
cv run "$T/ok.yaml" --no-such-option
expect_rc "run with an unknown option" 2
cv run "$T/ok.yaml" --input
expect_rc "run --input without a value" 2
cv run "$T/ok.yaml" --time-scale -1
expect_rc "run --time-scale with a bad value" 2

# ---- input -------------------------------------------------------------------------

cv run "$T/ok.yaml" --input '{"name": "ann"}'
expect_rc "run --input" 0
json_eq "--input reaches the workflow" "$T/out" "v['greeting']" '"hello ann"'
cv run "$T/ok.yaml" --input '{"name": '
expect_rc "run --input with invalid JSON" 2
echo '{"name": "from json file"}' >"$T/in.json"
cv run "$T/ok.yaml" --input-file "$T/in.json"
expect_rc "run --input-file JSON" 0
json_eq "--input-file JSON reaches the workflow" "$T/out" "v['greeting']" '"hello from json file"'
printf 'name: from yaml\n' >"$T/in.yaml"
cv run "$T/ok.yaml" --input-file "$T/in.yaml"
expect_rc "run --input-file YAML" 0
json_eq "--input-file YAML reaches the workflow" "$T/out" "v['greeting']" '"hello from yaml"'
cv run "$T/ok.yaml" --input-file "$T/missing.json"
expect_rc "run --input-file with a missing file" 2
cv run "$T/fault.yaml" --input '{"name": "order"}'
expect_rc "run --input into a fault" 1
json_eq "--input reaches the error detail" "$T/err" "v['detail']" '"bad order"'

# ---- secrets -----------------------------------------------------------------------

cat >"$T/secrets.yaml" <<EOF
$HDR
use:
  secrets: [db]
do:
  - s:
      set: \${ \$secrets }
EOF
cat >"$T/s.yaml" <<EOF
db:
  user: admin
  password: p4ss
unrelated: nope
EOF
cv run "$T/secrets.yaml" --secrets "$T/s.yaml"
expect_rc "run --secrets" 0
json_eq "--secrets: only the declared secret is visible" "$T/out" "v" '{"db": {"user": "admin", "password": "p4ss"}}'
cv run "$T/secrets.yaml"
expect_rc "run without a declared secret" 1
json_eq "a missing declared secret is an authorization error 403" "$T/err" "[v['type'], v['status']]" \
    '["https://serverlessworkflow.io/spec/1.0.0/errors/authorization", 403]'
echo '[1, 2]' >"$T/notobj.json"
cv run "$T/secrets.yaml" --secrets "$T/notobj.json"
expect_rc "run --secrets with a non-object" 2
CV_TEST_DB='{"user": "env"}' cv run "$T/secrets.yaml" --secret-env CV_TEST_DB
expect_rc "run --secret-env under another name leaves the declared secret missing" 1
cv run "$T/secrets.yaml" --secret-env CV_TEST_SURELY_UNSET
expect_rc "run --secret-env with an unset variable" 2
db='{"user": "from env"}'
export db
cv run "$T/secrets.yaml" --secret-env db
expect_rc "run --secret-env" 0
json_eq "--secret-env parses JSON values" "$T/out" "v" '{"db": {"user": "from env"}}'
unset db

# ---- events ------------------------------------------------------------------------

cat >"$T/emit.yaml" <<EOF
$HDR
do:
  - first:
      emit:
        event:
          with:
            source: https://cli.test/source
            type: com.test.first
            data:
              n: \${ .n }
  - second:
      emit:
        event:
          with:
            source: https://cli.test/source
            type: com.test.second
EOF
cv run "$T/emit.yaml" --input '{"n": 5}' --events
expect_rc "run --events" 0
python3 - "$T/err" "$T/out" >"$T/py" 2>&1 <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
evs = [json.loads(l) for l in lines]
assert len(evs) == 2, "expected 2 event lines, got %d" % len(evs)
assert [e["type"] for e in evs] == ["com.test.first", "com.test.second"], evs
assert evs[0]["data"] == {"n": 5}, evs[0]
for e in evs:
    for k in ("id", "specversion", "time", "source"):
        assert k in e, (k, e)
out = json.load(open(sys.argv[2]))
assert out == evs[1], ("the output is the last emitted event", out, evs[1])
PY
if [ $? -eq 0 ]; then ok "--events prints one CloudEvent JSON line per emit on stderr"; else fail "--events lines: $(cat "$T/py")"; fi
cv run "$T/emit.yaml" --input '{"n": 1}' --events-file "$T/events.jsonl"
cv run "$T/emit.yaml" --input '{"n": 2}' --events-file "$T/events.jsonl"
expect_rc "run --events-file" 0
n=$(wc -l <"$T/events.jsonl")
if [ "$n" -eq 4 ]; then ok "--events-file appends (4 lines after 2 runs)"; else fail "--events-file: $n lines"; fi
cv run "$T/emit.yaml"
empty "no event lines without --events" "$T/err"

# ---- report --------------------------------------------------------------------------

cv run "$T/ok.yaml" --report
expect_rc "run --report (completed)" 0
json_eq "--report shape" "$T/out" "[sorted(v.keys()), v['status'], v['output'], v['error']]" \
    '[["error", "id", "output", "status", "trace"], "completed", {"greeting": "hello world"}, null]'
json_eq "--report trace" "$T/out" "[[t['name'], t['reference'], t['status']] for t in v['trace']]" \
    '[["greet", "/do/0/greet", "completed"]]'
cv run "$T/fault.yaml" --report
expect_rc "run --report keeps the fault exit status" 1
json_eq "--report of a fault" "$T/out" "[v['status'], v['output'], v['error']['status'], v['trace'][0]['status']]" \
    '["faulted", null, 422, "faulted"]'

# ---- subflows and time scale -----------------------------------------------------------

cat >"$T/child.yaml" <<EOF
document: {dsl: '1.0.0', namespace: lib, name: child, version: '1.0.0'}
do:
  - double:
      set: \${ .x * 2 }
EOF
cat >"$T/parent.yaml" <<EOF
$HDR
do:
  - sub:
      run:
        workflow:
          namespace: lib
          name: child
          version: latest
          input:
            x: \${ .x }
EOF
cv run "$T/parent.yaml" --input '{"x": 21}' --subflow "$T/child.yaml"
expect_rc "run --subflow" 0
json_eq "--subflow output" "$T/out" "v" '42'
mkdir -p "$T/subs"
cp "$T/child.yaml" "$T/subs/"
cv run "$T/parent.yaml" --input '{"x": 2}' --subflows "$T/subs"
expect_rc "run --subflows DIR" 0
json_eq "--subflows output" "$T/out" "v" '4'
cv run "$T/parent.yaml" --input '{"x": 2}'
expect_rc "run without the subflow" 1
json_eq "an unknown subflow is a configuration error" "$T/err" "v['type']" \
    '"https://serverlessworkflow.io/spec/1.0.0/errors/configuration"'

cat >"$T/wait.yaml" <<EOF
$HDR
do:
  - w:
      wait: PT10M
  - s:
      set: {waited: true}
EOF
cv run "$T/wait.yaml" --time-scale 0.0001
expect_rc "run --time-scale shortens a 10-minute wait" 0
json_eq "--time-scale output" "$T/out" "v" '{"waited": true}'

# ---- host map against the stub --------------------------------------------------------

python3 tests/stub/stub_server.py --port 0 --port-file "$T/stub.port" >"$T/stub.out" 2>&1 &
STUB_PID=$!
i=0
while [ ! -s "$T/stub.port" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -s "$T/stub.port" ]; then
    PORT=$(cat "$T/stub.port")
    cat >"$T/http.yaml" <<EOF
$HDR
do:
  - get:
      call: http
      with:
        method: get
        endpoint: https://petstore.swagger.io/v2/pet/{id}
      output:
        as: .name
EOF
    cv run "$T/http.yaml" --input '{"id": 2}' --host-map "*=127.0.0.1:$PORT" --deny-unmapped
    expect_rc "run --host-map to the stub" 0
    json_eq "--host-map: the stub answered" "$T/out" "v" '"kitty"'
    CONVEYOR_HOST_MAP="petstore.swagger.io=127.0.0.1:$PORT" cv run "$T/http.yaml" --input '{"id": 1}' \
        --deny-unmapped
    expect_rc "CONVEYOR_HOST_MAP" 0
    json_eq "CONVEYOR_HOST_MAP: the stub answered" "$T/out" "v" '"doggie"'
    cv run "$T/http.yaml" --input '{"id": 404}' --host-map "*=127.0.0.1:$PORT"
    expect_rc "an HTTP 404 faults the run" 1
    json_eq "an HTTP 404 is a communication error" "$T/err" "[v['type'], v['status'], v['instance']]" \
        '["https://serverlessworkflow.io/spec/1.0.0/errors/communication", 404, "/do/0/get"]'
    cv run "$T/http.yaml" --input '{"id": 1}' --host-map "other.example=127.0.0.1:$PORT" --deny-unmapped
    expect_rc "--deny-unmapped refuses an unmapped host" 1
    cv run "$T/http.yaml" --host-map "not-a-map"
    expect_rc "--host-map with a bad value" 2
else
    fail "the stub server did not start: $(cat "$T/stub.out")"
fi

# The README's main job: the bundled claims-triage example.
cv run examples/claims-triage.yaml --input-file examples/claims.json --events
expect_rc "the bundled example runs" 0
json_eq "the bundled example routes two claims each way" "$T/out" "[v['approved'], v['toReview']]" '[2, 2]'
json_eq "the bundled example sends C-1003 (no policy) to review" "$T/out" \
    "[d['route'] for d in v['decisions'] if d['id'] == 'C-1003']" '["review"]'
json_eq "the bundled example emits its CloudEvent on stderr" "$T/err" "[v['type'], v['data']]" \
    '["com.example.claims.triaged.v1", {"approved": 2, "toReview": 2}]'
cv run examples/claims-triage.yaml --input '{"claims": [{"id": "C-9", "amount": -5}]}'
expect_rc "the bundled example refuses a negative amount" 1
json_eq "a negative amount is a validation error" "$T/err" "[v['type'], v['status']]" \
    '["https://serverlessworkflow.io/spec/1.0.0/errors/validation", 400]'
cv run /tmp/conveyor-no-such-file.yaml
expect_rc "a missing file" 1
cv run examples/claims-triage.yaml --effect-timeout banana
expect_rc "--effect-timeout with a bad duration" 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
