#!/usr/bin/env python3
"""stub_server.py: the offline stand-in for every host the CTK, the examples and
the unit tests call (IMPLEMENTING.md section 2.2). Standard library only.

    python3 tests/stub/stub_server.py --port 0 --port-file FILE [--log FILE]

Binds 127.0.0.1, writes the chosen port to FILE (atomically) once listening,
routes by the Host header (port removed) and the path, always answers
Content-Type: application/json, logs every request as one JSON line
{host, method, path, query, headers, body} to --log, and exits cleanly on
SIGTERM or SIGINT. Runtimes reach it through their host map
("*=127.0.0.1:PORT"), which keeps the original Host header.

Routes, by host:
  petstore.swagger.io   GET /v2/pet/findByStatus?status=...  (repeated or comma-separated)
                        GET /v2/pet/{id}  (1, 2, 3; 503 answers 503 twice, then 200;
                                           unknown or non-numeric ids: 404)
                        PUT /v2/pet/{id}, POST /v2/pet  (echo the JSON body)
                        GET /v2/swagger.json  (Swagger 2.0: findPetsByStatus, getPetById,
                                               addPet, updatePet)
  httpbin.org           GET /basic-auth/{user}/{passwd}
  swapi.dev             GET /api/people/?search=..., /api/people/{id}, /api/planets/{id}/;
                        GET /api/people (no slash) answers 301 to https://swapi.dev/api/people/
  keycloak (any host)   POST .../token  (OAuth2 token; client_secret "wrong" gets 401)
                        GET .../.well-known/openid-configuration
  fake-hospital.com     PUT /api/v3/alert/{nurses,doctor}
  superbet-casinos.com  POST /api/bet/on/football
  example.com           POST /api/v1/backup/start
  hospital.example.com  POST /api/v1/notify
  virtual-wf-powered-race.com  POST /api/v4/cars/{id}/start
  fake-chat-api.com     POST /room/{id}
  fake.com              GET /sample
  raw.githubusercontent.com  GET .../functions/log/1.0.0/function.yaml (a `set` task, as JSON)
Test helpers, on any host:
  /__echo[/...]         the request as JSON {method, path, query, headers, body, json, host}
  /__slow?ms=N          sleeps N ms (at most 30 s), then 200
  /__status/{code}      answers that status (reason from ?reason= or the standard phrase);
                        3xx answers carry Location: /__echo
  /__redirect           302 (or ?code=) to ?to=URL, default /__echo
  /__digest/{u}/{p}     HTTP digest authentication (MD5, qop=auth)
  /__bearer/{token}     200 only with Authorization: Bearer {token}
  /__big?bytes=N        N bytes of spaces (at most 80 MiB)
  /__openapi.json       an OpenAPI 3 document for /__echo/v1 (getItem, createItem)
  POST /__reset         resets the fail-then-succeed counters
"""
import argparse
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PETS = {
    1: {"id": 1, "name": "doggie", "status": "available",
        "category": {"id": 1, "name": "dog"}, "photoUrls": [], "tags": []},
    2: {"id": 2, "name": "kitty", "status": "available",
        "category": {"id": 2, "name": "cat"}, "photoUrls": [], "tags": []},
    3: {"id": 3, "name": "nemo", "status": "pending",
        "category": {"id": 3, "name": "fish"}, "photoUrls": [], "tags": []},
}
PET_NOT_FOUND = {"code": 404, "type": "unknown", "message": "Pet not found"}
# id -> number of failures (503) before success
FLAKY = {503: 2}

PEOPLE = {
    1: {"name": "Luke Skywalker", "height": "172", "homeworld": "https://swapi.dev/api/planets/1/",
        "url": "https://swapi.dev/api/people/1/"},
    2: {"name": "C-3PO", "height": "167", "homeworld": "https://swapi.dev/api/planets/1/",
        "url": "https://swapi.dev/api/people/2/"},
    4: {"name": "Darth Vader", "height": "202", "homeworld": "https://swapi.dev/api/planets/1/",
        "url": "https://swapi.dev/api/people/4/"},
}
PLANETS = {1: {"name": "Tatooine", "climate": "arid", "terrain": "desert",
               "url": "https://swapi.dev/api/planets/1/"}}

SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "Swagger Petstore (stub)", "version": "1.0.0"},
    "host": "petstore.swagger.io",
    "basePath": "/v2",
    "schemes": ["https", "http"],
    "produces": ["application/json"],
    "paths": {
        "/pet/findByStatus": {"get": {
            "operationId": "findPetsByStatus",
            "parameters": [{"name": "status", "in": "query", "required": True, "type": "array",
                            "items": {"type": "string"}, "collectionFormat": "multi"}],
            "responses": {"200": {"description": "ok"}}}},
        "/pet/{petId}": {
            "get": {"operationId": "getPetById",
                    "parameters": [{"name": "petId", "in": "path", "required": True,
                                    "type": "integer", "format": "int64"}],
                    "responses": {"200": {"description": "ok"}}},
            "put": {"operationId": "updatePet",
                    "parameters": [{"name": "petId", "in": "path", "required": True,
                                    "type": "integer", "format": "int64"},
                                   {"name": "pet", "in": "body", "required": True,
                                    "schema": {"type": "object"}}],
                    "responses": {"200": {"description": "ok"}}}},
        "/pet": {"post": {
            "operationId": "addPet",
            "consumes": ["application/json"],
            "parameters": [{"name": "body", "in": "body", "required": True,
                            "schema": {"type": "object"}}],
            "responses": {"200": {"description": "ok"}}}},
    },
}

OPENAPI3 = {
    "openapi": "3.0.3",
    "info": {"title": "Echo (stub)", "version": "1.0.0"},
    "servers": [{"url": "/__echo/{version}", "variables": {"version": {"default": "v1"}}}],
    "components": {"parameters": {"ItemId": {"name": "itemId", "in": "path", "required": True,
                                             "schema": {"type": "string"}}}},
    "paths": {
        "/items/{itemId}": {
            "parameters": [{"$ref": "#/components/parameters/ItemId"}],
            "get": {"operationId": "getItem",
                    "parameters": [
                        {"name": "tag", "in": "query", "schema": {"type": "array"}},
                        {"name": "limit", "in": "query", "required": True,
                         "schema": {"type": "integer"}},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "ok"}}}},
        "/items": {
            "post": {"operationId": "createItem",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": {"type": "object"}}}},
                     "responses": {"200": {"description": "ok"}}}},
    },
}

LOG_FUNCTION = {
    "input": {"schema": {"format": "json", "document": {
        "type": "object", "properties": {"message": {"type": "string"},
                                         "level": {"type": "string"}}}}},
    "set": {"logged": True, "message": "${ .message }", "level": "${ .level }"},
}


class State:
    lock = threading.Lock()
    fail_counts = {}
    log = None
    digest_nonces = set()


def reason_of(code):
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "conveyor-stub/1"

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    # ---- plumbing ---------------------------------------------------------
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, code, obj, headers=None, reason=None):
        body = json.dumps(obj).encode()
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        raw = self.read_body()
        parts = urlsplit(self.path)
        self.req_path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.body_text = raw.decode("utf-8", "replace")
        try:
            self.body_json = json.loads(self.body_text) if self.body_text else None
        except ValueError:
            self.body_json = None
        self.host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        if self.host.startswith("["):
            self.host = self.headers.get("Host", "").split("]")[0] + "]"
        entry = {"host": self.host, "method": self.command, "path": self.req_path,
                 "query": self.query, "headers": dict(self.headers.items()),
                 "body": self.body_text}
        if State.log:
            with State.lock:
                State.log.write(json.dumps(entry) + "\n")
                State.log.flush()
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    def q1(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    # ---- routing ----------------------------------------------------------
    def route(self):
        p, m, h = self.req_path, self.command, self.host
        if p == "/__reset" and m == "POST":
            with State.lock:
                State.fail_counts.clear()
            return self.send_json(200, {"reset": True})
        if p == "/__echo" or p.startswith("/__echo/"):
            return self.send_json(200, {"method": m, "path": p, "query": self.query,
                                        "headers": dict(self.headers.items()),
                                        "body": self.body_text, "json": self.body_json,
                                        "host": h})
        if p == "/__slow":
            ms = min(int(self.q1("ms", "1000")), 30000)
            time.sleep(ms / 1000.0)
            return self.send_json(200, {"slept": ms})
        mt = re.fullmatch(r"/__status/(\d{3})", p)
        if mt:
            code = int(mt.group(1))
            hdrs = {"Location": "/__echo"} if 300 <= code < 400 else None
            return self.send_json(code, {"status": code}, hdrs,
                                  self.q1("reason", reason_of(code)))
        if p == "/__redirect":
            code = int(self.q1("code", "302"))
            return self.send_json(code, {"redirect": True},
                                  {"Location": self.q1("to", "/__echo")})
        mt = re.fullmatch(r"/__digest/([^/]+)/([^/]+)", p)
        if mt:
            return self.digest(mt.group(1), mt.group(2))
        mt = re.fullmatch(r"/__bearer/([^/]+)", p)
        if mt:
            if self.headers.get("Authorization") == "Bearer " + mt.group(1):
                return self.send_json(200, {"authenticated": True})
            return self.send_json(401, {"authenticated": False},
                                  {"WWW-Authenticate": 'Bearer realm="stub"'})
        if p == "/__big":
            n = min(int(self.q1("bytes", "1024")), 80 * 1024 * 1024)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b" " * 65536
            left = n
            while left > 0:
                k = min(left, len(chunk))
                self.wfile.write(chunk[:k])
                left -= k
            return None
        if p == "/__openapi.json":
            return self.send_json(200, OPENAPI3)
        if p.endswith("/.well-known/openid-configuration") and m == "GET":
            issuer = "http://%s%s" % (h, p[: -len("/.well-known/openid-configuration")])
            return self.send_json(200, {
                "issuer": issuer,
                "token_endpoint": issuer + "/protocol/openid-connect/token",
                "grant_types_supported": ["client_credentials", "password"]})
        if p.endswith("/token") and m == "POST":
            return self.token()

        if h == "petstore.swagger.io":
            return self.petstore()
        if h == "httpbin.org":
            mt = re.fullmatch(r"/basic-auth/([^/]+)/([^/]+)", p)
            if mt and m == "GET":
                return self.basic_auth(mt.group(1), mt.group(2))
        if h == "swapi.dev":
            return self.swapi()
        mt = re.fullmatch(r"/api/v3/alert/(nurses|doctor)", p)
        if h == "fake-hospital.com" and mt and m == "PUT":
            return self.send_json(200, {"alerted": mt.group(1), "request": self.body_json})
        if h == "superbet-casinos.com" and p == "/api/bet/on/football" and m == "POST":
            return self.send_json(200, {"accepted": True, "bet": self.body_json})
        if h == "example.com" and p == "/api/v1/backup/start" and m == "POST":
            return self.send_json(200, {"backup": "started"})
        if h == "hospital.example.com" and p == "/api/v1/notify" and m == "POST":
            return self.send_json(200, {"notified": True, "request": self.body_json})
        mt = re.fullmatch(r"/api/v4/cars/([^/]+)/start", p)
        if h == "virtual-wf-powered-race.com" and mt and m == "POST":
            return self.send_json(200, {"car": mt.group(1), "started": True})
        mt = re.fullmatch(r"/room/([^/]+)", p)
        if h == "fake-chat-api.com" and mt and m == "POST":
            return self.send_json(200, {"room": mt.group(1), "posted": self.body_json})
        if h == "fake.com" and p == "/sample" and m == "GET":
            return self.send_json(200, {"sample": True})
        if h == "raw.githubusercontent.com" and p.endswith("/functions/log/1.0.0/function.yaml"):
            return self.send_json(200, LOG_FUNCTION)
        return self.send_json(404, {"code": 404, "type": "unknown", "message": "Not found"})

    # ---- hosts ------------------------------------------------------------
    def petstore(self):
        p, m = self.req_path, self.command
        if p == "/v2/swagger.json" and m == "GET":
            return self.send_json(200, SWAGGER)
        if p == "/v2/pet/findByStatus" and m == "GET":
            wanted = set()
            for v in self.query.get("status", []):
                wanted.update(s.strip() for s in v.split(",") if s.strip())
            return self.send_json(200, [pet for _, pet in sorted(PETS.items())
                                        if pet["status"] in wanted])
        if p == "/v2/pet" and m in ("POST", "PUT"):
            return self.send_json(200, self.body_json if self.body_json is not None else {})
        mt = re.fullmatch(r"/v2/pet/([^/]+)", p)
        if mt and m == "PUT":
            return self.send_json(200, self.body_json if self.body_json is not None else {})
        if mt and m == "GET":
            ident = mt.group(1)
            if not ident.isdigit():
                return self.send_json(404, PET_NOT_FOUND)
            pid = int(ident)
            if pid in FLAKY:
                with State.lock:
                    n = State.fail_counts.get(pid, 0)
                    State.fail_counts[pid] = n + 1
                if n < FLAKY[pid]:
                    return self.send_json(503, {"code": 503, "type": "unavailable",
                                                "message": "try again"})
                return self.send_json(200, {"id": pid, "name": "phoenix", "status": "available",
                                            "photoUrls": [], "tags": []})
            if pid in PETS:
                return self.send_json(200, PETS[pid])
        return self.send_json(404, PET_NOT_FOUND)

    def basic_auth(self, user, passwd):
        import base64
        want = "Basic " + base64.b64encode(("%s:%s" % (user, passwd)).encode()).decode()
        if self.headers.get("Authorization") == want:
            return self.send_json(200, {"authenticated": True, "user": user})
        return self.send_json(401, {"authenticated": False},
                              {"WWW-Authenticate": 'Basic realm="Fake Realm"'})

    def swapi(self):
        p = self.req_path
        if p == "/api/people":
            loc = "https://swapi.dev/api/people/"
            qs = urlsplit(self.path).query
            return self.send_json(301, {"moved": True},
                                  {"Location": loc + ("?" + qs if qs else "")})
        if p == "/api/people/":
            s = (self.q1("search", "") or "").lower()
            res = [v for _, v in sorted(PEOPLE.items()) if s in v["name"].lower()]
            return self.send_json(200, {"count": len(res), "next": None, "previous": None,
                                        "results": res})
        mt = re.fullmatch(r"/api/people/(\d+)/?", p)
        if mt and int(mt.group(1)) in PEOPLE:
            return self.send_json(200, PEOPLE[int(mt.group(1))])
        mt = re.fullmatch(r"/api/planets/(\d+)/?", p)
        if mt and int(mt.group(1)) in PLANETS:
            return self.send_json(200, PLANETS[int(mt.group(1))])
        return self.send_json(404, {"detail": "Not found"})

    def token(self):
        import base64
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            fields = self.body_json if isinstance(self.body_json, dict) else {}
        else:
            fields = {k: v[0] for k, v in parse_qs(self.body_text,
                                                   keep_blank_values=True).items()}
        secret = fields.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                secret = base64.b64decode(auth[6:]).decode().split(":", 1)[1]
            except (ValueError, IndexError):
                secret = "wrong"
        if secret == "wrong" or "grant_type" not in fields:
            return self.send_json(401, {"error": "invalid_client"})
        return self.send_json(200, {"access_token": "t", "token_type": "Bearer",
                                    "expires_in": 300})

    def digest(self, user, passwd):
        realm = "stub"
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Digest "):
            params = dict(re.findall(r'(\w+)="?([^",]*)"?', auth[7:]))

            def md5(s):
                return hashlib.md5(s.encode()).hexdigest()
            ha1 = md5("%s:%s:%s" % (user, realm, passwd))
            ha2 = md5("%s:%s" % (self.command, params.get("uri", "")))
            if params.get("qop"):
                want = md5("%s:%s:%s:%s:%s:%s" % (ha1, params.get("nonce"), params.get("nc"),
                                                  params.get("cnonce"), params.get("qop"), ha2))
            else:
                want = md5("%s:%s:%s" % (ha1, params.get("nonce"), ha2))
            with State.lock:
                known = params.get("nonce") in State.digest_nonces
            if known and params.get("username") == user and params.get("response") == want:
                return self.send_json(200, {"authenticated": True, "user": user})
        nonce = secrets.token_hex(16)
        with State.lock:
            State.digest_nonces.add(nonce)
        challenge = 'Digest realm="%s", qop="auth", nonce="%s", opaque="%s", algorithm=MD5' % (
            realm, nonce, secrets.token_hex(8))
        return self.send_json(401, {"authenticated": False}, {"WWW-Authenticate": challenge})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description="offline HTTP stub for conveyor tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    args = ap.parse_args()

    if args.log:
        State.log = open(args.log, "a", encoding="utf-8")
    srv = Server(("127.0.0.1", args.port), Handler)
    port = srv.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    else:
        print(port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        if State.log:
            State.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
