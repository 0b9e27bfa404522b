#!/usr/bin/env python3
"""tests/server/counting_service.py: a local HTTP peer that counts calls.

    python3 tests/server/counting_service.py PORT_FILE [DELAY_SECONDS [PER_SECOND]]

Listens on 127.0.0.1 on a free port and writes that port to PORT_FILE (by a
rename, so a reader never sees half a number). Standard library only.

POST /STEP with a JSON body {"n": N, "trail": [...]}: records the request
(its Idempotency-Key header, path and body), sleeps DELAY_SECONDS (default
0.02, so that a server killed at a random moment has calls in flight), and
answers 200 {"n": N, "trail": trail + [STEP]}. The answer depends only on
the request, so a call issued again after a crash gets the same answer.
With PER_SECOND (default 0: no limit), calls are answered no faster than
that many a second in all (each waits for its turn, then DELAY_SECONDS):
the service sets the pace of a run, on a fast or a slow machine, and a
restarted caller does not clear its backlog in one burst.

GET /stats answers what was seen:
    {"requests": R, "inflight": I, "maxInflight": M, "keysByPath": {PATH: K},
     "keys": {KEY: {"count": C, "paths": [...], "bodies": [...]}}}
(paths and bodies: the distinct ones, in order of arrival; a request with no
Idempotency-Key is recorded under the key ""; keysByPath counts the
distinct keys called on each path). GET /inflight answers {"inflight": I,
"requests": R, "keysByPath": {...}}: the calls being served at that moment,
the calls received so far, the progress (cheap: the test polls it).
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
keys = {}
state = {"requests": 0, "inflight": 0, "maxInflight": 0, "keysByPath": {}}
delay = 0.02
pace = {"interval": 0.0, "next": 0.0}  # the next free turn (monotonic clock)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: thousands of calls
        pass

    def answer(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            if self.path == "/stats":
                obj = dict(state, keys=keys)
                data = json.loads(json.dumps(obj))  # a snapshot, taken under the lock
            elif self.path == "/inflight":
                data = {k: state[k] for k in ("inflight", "requests", "keysByPath")}
            else:
                data = None
        if data is None:
            self.answer(404, {"error": "no such path"})
        else:
            self.answer(200, data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        key = self.headers.get("Idempotency-Key") or ""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        text = json.dumps(body, sort_keys=True)
        with lock:
            state["requests"] += 1
            state["inflight"] += 1
            state["maxInflight"] = max(state["maxInflight"], state["inflight"])
            k = keys.setdefault(key, {"count": 0, "paths": [], "bodies": []})
            k["count"] += 1
            if self.path not in k["paths"]:
                k["paths"].append(self.path)
                by = state["keysByPath"]
                by[self.path] = by.get(self.path, 0) + 1
            if text not in k["bodies"]:
                k["bodies"].append(text)
        try:
            wait = 0.0
            if pace["interval"]:
                with lock:
                    now = time.monotonic()
                    turn = max(now, pace["next"])
                    pace["next"] = turn + pace["interval"]
                    wait = turn - now
            time.sleep(wait + delay)
            step = self.path.strip("/")
            if isinstance(body, dict):
                trail = body.get("trail")
                out = {"n": body.get("n"), "trail": (trail if isinstance(trail, list) else []) + [step]}
                self.answer(200, out)
            else:
                self.answer(400, {"error": "the body is not a JSON object"})
        finally:
            with lock:
                state["inflight"] -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # thousands of effects connect at once

    def handle_error(self, request, client_address):
        # a caller killed mid-call (the point of the test) breaks the pipe
        # of our answer: nothing to report
        pass


def main():
    global delay
    if len(sys.argv) < 2:
        sys.stderr.write("usage: counting_service.py PORT_FILE [DELAY_SECONDS [PER_SECOND]]\n")
        return 2
    if len(sys.argv) > 2:
        delay = float(sys.argv[2])
    if len(sys.argv) > 3 and float(sys.argv[3]) > 0:
        pace["interval"] = 1.0 / float(sys.argv[3])
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, sys.argv[1])
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
