/*
 * serve.c — `conveyor serve`: options, the store, the engine and the HTTP
 * server (server.h), then wait for SIGTERM/SIGINT and shut down in order:
 * stop taking requests, stop the engine (it writes its pending
 * checkpoints), close the store. Runtime options are those of `conveyor run`.
 */
#include "server/server.h"
#include "common/util.h"
#include "json/yaml.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_serve[] =
    "usage: conveyor serve --db FILE [options]\n"
    "\n"
    "Serves the HTTP API (docs/api.md; OpenAPI at /v1/openapi.json) over a durable\n"
    "engine kept in the SQLite file FILE. Unfinished instances resume at start.\n"
    "Prints `listening on http://ADDR:PORT` on stderr when ready; SIGTERM or SIGINT\n"
    "stops it (pending checkpoints are written) with exit status 0.\n"
    "\n"
    "options:\n"
    "  --db FILE              the store (required)\n"
    "  --listen ADDR:PORT     numeric address and port (default 127.0.0.1:8080; port 0:\n"
    "                         any free port, printed); IPv6 as [::1]:PORT\n"
    "  --workers N            engine worker threads (default 2)\n"
    "  --max-inflight N       requests handled at once before 503 (default 256)\n"
    "  --secrets PATH, --subflow FILE, --subflows DIR, --host-map HOST=ADDR:PORT,\n"
    "  --deny-unmapped, --time-scale X, --effect-timeout DUR\n"
    "                         as for `conveyor run`\n"
    "  -h, --help             this help\n";

/* Reads a JSON or YAML file into *out. Returns 0 or -1 (message printed). */
static int read_value_file(const char *path, jv *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "conveyor serve: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 65536, len = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *n = cap < (256u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!n)
                free(buf);
            buf = n;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "conveyor serve: %s: too large or out of memory\n", path);
        return -1;
    }
    jv diags = jv_array();
    int rc = cv__yaml_parse(buf, len, path, out, NULL, &diags);
    free(buf);
    if (rc) {
        fprintf(stderr, "conveyor serve: %s: not JSON or YAML\n", path);
        jv_free(diags);
        return -1;
    }
    jv_free(diags);
    return 0;
}

/* "ADDR:PORT" or "[V6]:PORT" into host (buffer) and port. */
static int parse_listen(const char *s, char *host, size_t hn, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= hn)
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= hn || colon == s)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static int need(int i, int argc, const char *opt)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "conveyor serve: %s needs a value\n%s", opt, usage_serve);
        return 0;
    }
    return 1;
}

int cv__serve_main(int argc, char **argv)
{
    const char *db = NULL;
    char host[128] = "127.0.0.1";
    int port = 8080, rc = 2;
    struct cv_engine_options eo = {0};
    struct cv_server_options so = {0};
    cv_runtime *rt = NULL;
    cv_store *store = NULL;
    struct cv_engine *e = NULL;
    struct cv_server *srv = NULL;
    jv secrets = jv_object();

    if (cv_runtime_new(&rt)) {
        fprintf(stderr, "conveyor serve: out of memory\n");
        jv_free(secrets);
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_serve, stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--db")) {
            if (!need(i, argc, a))
                goto out;
            db = argv[++i];
        } else if (!strcmp(a, "--listen")) {
            if (!need(i, argc, a))
                goto out;
            if (parse_listen(argv[++i], host, sizeof host, &port)) {
                fprintf(stderr, "conveyor serve: --listen needs ADDR:PORT (e.g. 127.0.0.1:8080)\n");
                goto out;
            }
        } else if (!strcmp(a, "--workers") || !strcmp(a, "--max-inflight")) {
            if (!need(i, argc, a))
                goto out;
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 10000) {
                fprintf(stderr, "conveyor serve: %s needs a positive number\n", a);
                goto out;
            }
            if (!strcmp(a, "--workers"))
                eo.workers = (int)n;
            else
                so.max_inflight = (int)n;
        } else if (!strcmp(a, "--secrets")) {
            if (!need(i, argc, a))
                goto out;
            jv s;
            if (read_value_file(argv[++i], &s))
                goto out;
            if (jv_get_kind(s) != JV_KIND_OBJECT) {
                fprintf(stderr, "conveyor serve: %s must hold an object of secrets\n", argv[i]);
                jv_free(s);
                goto out;
            }
            secrets = jv_object_merge(secrets, s);
        } else if (!strcmp(a, "--subflow")) {
            if (!need(i, argc, a))
                goto out;
            cv_workflow *sub;
            jv diags = jv_invalid();
            if (cv_workflow_load_file(argv[++i], &sub, &diags)) {
                fprintf(stderr, "conveyor serve: %s: not a valid workflow (see `conveyor validate`)\n", argv[i]);
                jv_free(diags);
                rc = 1;
                goto out;
            }
            jv_free(diags);
            cv_runtime_add_workflow(rt, sub);
        } else if (!strcmp(a, "--subflows")) {
            if (!need(i, argc, a))
                goto out;
            jv diags = jv_invalid();
            if (cv_runtime_add_workflow_dir(rt, argv[++i], &diags)) {
                fprintf(stderr, "conveyor serve: %s: invalid workflows (see `conveyor validate`)\n", argv[i]);
                jv_free(diags);
                rc = 1;
                goto out;
            }
            jv_free(diags);
        } else if (!strcmp(a, "--host-map")) {
            if (!need(i, argc, a))
                goto out;
            if (cv_runtime_map_host(rt, argv[++i])) {
                fprintf(stderr, "conveyor serve: invalid host map '%s' (expected HOST=ADDR:PORT)\n", argv[i]);
                goto out;
            }
        } else if (!strcmp(a, "--deny-unmapped")) {
            cv_runtime_deny_unmapped(rt, 1);
        } else if (!strcmp(a, "--time-scale")) {
            if (!need(i, argc, a))
                goto out;
            char *end;
            double x = strtod(argv[++i], &end);
            if (*end || x <= 0) {
                fprintf(stderr, "conveyor serve: --time-scale needs a positive number\n");
                goto out;
            }
            cv_runtime_set_time_scale(rt, x);
        } else if (!strcmp(a, "--effect-timeout")) {
            if (!need(i, argc, a))
                goto out;
            int64_t ms;
            const char *why = NULL;
            jv d = jv_string(argv[++i]);
            int bad = cv__duration_ms(d, &ms, &why);
            jv_free(d);
            if (bad) {
                fprintf(stderr, "conveyor serve: --effect-timeout: %s (an ISO 8601 duration such as PT30S)\n",
                        why ? why : "invalid duration");
                goto out;
            }
            cv_runtime_set_effect_timeout(rt, ms);
        } else {
            fprintf(stderr, "conveyor serve: unknown argument %s\n%s", a, usage_serve);
            goto out;
        }
    }
    if (!db) {
        fprintf(stderr, "conveyor serve: --db FILE is required\n%s", usage_serve);
        goto out;
    }
    cv_runtime_set_secrets(rt, secrets);
    secrets = jv_invalid();

    /* Signals are taken by sigwait below: block them before any thread
     * starts, so that every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    jv err = jv_invalid();
    int r = cv_store_open(db, &store, &err);
    if (r) {
        fprintf(stderr, "conveyor serve: %s: %s\n", db,
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(r));
        jv_free(err);
        goto out;
    }
    jv_free(err);
    if (cv__engine_new(rt, store, &eo, &e)) {
        fprintf(stderr, "conveyor serve: cannot create the engine\n");
        goto out;
    }
    int resumed = 0;
    err = jv_invalid();
    r = cv__engine_start(e, &resumed, &err);
    if (r) {
        fprintf(stderr, "conveyor serve: cannot start the engine: %s\n",
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(r));
        jv_free(err);
        cv__engine_stop(e);
        e = NULL;
        goto out;
    }
    jv_free(err);
    so.host = host;
    so.port = port;
    int bound = 0;
    err = jv_invalid();
    r = cv__server_start(e, &so, &srv, &bound, &err);
    if (r) {
        fprintf(stderr, "conveyor serve: %s\n", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(r));
        jv_free(err);
        goto out;
    }
    jv_free(err);
    if (resumed)
        fprintf(stderr, "resumed %d unfinished instance(s)\n", resumed);
    if (strchr(host, ':'))
        fprintf(stderr, "listening on http://[%s]:%d\n", host, bound);
    else
        fprintf(stderr, "listening on http://%s:%d\n", host, bound);
    fflush(stderr);

    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "conveyor serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    cv__server_stop(srv);
    cv__engine_stop(e);
    cv_store_close(store);
    jv_free(secrets);
    cv_runtime_free(rt);
    return rc;
}
