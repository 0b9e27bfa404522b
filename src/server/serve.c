/*
 * serve.c — `conveyor serve`: options, the store, the engine and the HTTP
 * server (server.h), then wait for SIGTERM/SIGINT and shut down in order:
 * stop taking requests, stop the engine (it writes its pending
 * checkpoints), close the store. Runtime options are those of `conveyor run`;
 * every option may also come from a YAML or JSON file (--config), read
 * through the same table and applied by the same function as the command
 * line, so that the two cannot drift apart.
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
#include <sys/resource.h>

static const char usage_serve[] =
    "usage: conveyor serve --db FILE [options]\n"
    "       conveyor serve --store postgres://... [--node NAME] [options]\n"
    "       conveyor serve --config FILE [options]\n"
    "\n"
    "Serves the HTTP API (docs/api.md; OpenAPI at /v1/openapi.json) over a durable\n"
    "engine kept in the SQLite file FILE, or in a PostgreSQL database that several\n"
    "nodes share (docs/cluster.md). Unfinished instances resume at start.\n"
    "Prints `listening on http://ADDR:PORT` on stderr when ready; SIGTERM or SIGINT\n"
    "stops it (pending checkpoints are written) with exit status 0.\n"
    "\n"
    "options:\n"
    "  --db FILE              the store (required, here or in --config): a SQLite file\n"
    "                         (a path or sqlite:PATH) or postgres://USER@HOST:PORT/DB\n"
    "  --store URL            the same as --db\n"
    "  --node NAME            run as one node of several sharing the store by leases\n"
    "                         (default with PostgreSQL: HOSTNAME-PID; give a stable\n"
    "                         name so that a restarted node takes its instances back\n"
    "                         at once). With SQLite, nodes must be on one machine.\n"
    "  --lease DUR            how long a node's hold on an instance lasts unrenewed\n"
    "                         (ISO 8601, default PT10S): a node that died is\n"
    "                         replaced after about this long\n"
    "  --listen ADDR:PORT     numeric address and port (default 127.0.0.1:8080; port 0:\n"
    "                         any free port, printed); IPv6 as [::1]:PORT\n"
    "  --workers N            engine worker threads (default 2)\n"
    "  --max-inflight N       requests handled at once before 503 (default 256)\n"
    "  --event-retention DUR  how long the event bus keeps an event for listens that\n"
    "                         start later (ISO 8601, default PT24H)\n"
    "  --event-sink URL       POST every event that instances emit to URL\n"
    "                         (CloudEvents structured mode, at least once, in order,\n"
    "                         retried until delivered or expired); repeatable\n"
    "  --secrets PATH, --subflow FILE, --subflows DIR, --host-map HOST=ADDR:PORT,\n"
    "  --deny-unmapped, --time-scale X, --effect-timeout DUR\n"
    "                         as for `conveyor run`\n"
    "  --config FILE          a YAML or JSON object whose keys are the long options\n"
    "                         above without the dashes, applied before the command\n"
    "                         line's options (which override a setting, add to the\n"
    "                         lists and merge over the secrets). Strings for db,\n"
    "                         store, node, lease, listen, secrets, subflows,\n"
    "                         effect-timeout and event-retention; integers for workers and\n"
    "                         max-inflight; a number for time-scale;\n"
    "                         true/false for deny-unmapped; a list of strings (or one\n"
    "                         string) for subflow, host-map and event-sink. Relative\n"
    "                         paths are taken from the current directory, as on the\n"
    "                         command line. An unknown key or a wrong type is a usage error.\n"
    "                         Example:\n"
    "                           db: /var/lib/conveyor/db\n"
    "                           listen: 127.0.0.1:8080\n"
    "                           workers: 4\n"
    "                           host-map: [api.example.com=127.0.0.1:9000]\n"
    "  -h, --help             this help\n";

/* Reads a JSON or YAML file into *out. Returns 0 or -1 (message printed:
 * the parser's first located diagnostic when the text does not parse). */
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
        char *msg = NULL;
        if (jv_get_kind(diags) == JV_KIND_ARRAY && jv_array_length(jv_copy(diags)) > 0)
            msg = cv_diag_format(jv_array_get(jv_copy(diags), 0));
        if (msg)
            fprintf(stderr, "conveyor serve: %s: not JSON or YAML: %s\n", path, msg);
        else
            fprintf(stderr, "conveyor serve: %s: not JSON or YAML\n", path);
        free(msg);
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

/* ------------------------------------------------------------------------
 * Options: one table for the command line and --config, one function that
 * applies an option whichever of the two it came from.
 * ---------------------------------------------------------------------- */

/* What an option takes: a string, an integer, a number, nothing (a switch:
 * true/false in a config file) or a string that may be given several times
 * (a list in a config file). */
enum opt_kind { OPT_STRING, OPT_INT, OPT_NUMBER, OPT_SWITCH, OPT_LIST };

struct opt {
    const char *name; /* the long option without its dashes = the config key */
    enum opt_kind kind;
};

static const struct opt opts[] = {
    {"db", OPT_STRING},         {"listen", OPT_STRING},        {"workers", OPT_INT},
    {"max-inflight", OPT_INT},  {"secrets", OPT_STRING},       {"subflow", OPT_LIST},
    {"subflows", OPT_STRING},   {"host-map", OPT_LIST},        {"deny-unmapped", OPT_SWITCH},
    {"time-scale", OPT_NUMBER}, {"effect-timeout", OPT_STRING}, {"event-retention", OPT_STRING}, {"event-sink", OPT_LIST},
    {"store", OPT_STRING},      {"node", OPT_STRING},          {"lease", OPT_STRING},
};
#define NOPTS (sizeof opts / sizeof *opts)

static const struct opt *find_opt(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcmp(opts[i].name, name))
            return &opts[i];
    return NULL;
}

/* What the options set before anything starts. */
struct setup {
    const char *db; /* borrowed from argv or the config (kept alive until the store is open) */
    char host[128];
    int port;
    struct cv_engine_options eo;
    struct cv_server_options so;
    cv_runtime *rt;
    jv secrets; /* merged from every --secrets / secrets: */
    char node[129];  /* --node (a copy: the engine borrows it) */
    char *sinks[64]; /* --event-sink URLs (copies) */
    int nsinks;
};

/*
 * Applies option `o` with its value `val` (borrowed; NULL for a switch,
 * which turns it on). `where` names the option in messages: "--workers"
 * from the command line, "FILE: workers" from a config file. A later call
 * overrides a setting, adds to a list (a later host map of the same host
 * replaces the earlier one) and merges secrets over the earlier ones.
 * Returns 0; 2 on a bad value (usage error); 1 when a subflow is invalid.
 * Messages are printed.
 */
static int apply_opt(struct setup *s, const struct opt *o, const char *val, const char *where)
{
    const char *n = o->name;
    if (!strcmp(n, "db") || !strcmp(n, "store")) {
        s->db = val;
    } else if (!strcmp(n, "node")) {
        size_t len = strlen(val), i;
        for (i = 0; i < len && (unsigned char)val[i] > ' ' && (unsigned char)val[i] <= '~'; i++)
            ;
        if (len < 1 || len > 128 || i < len) {
            fprintf(stderr, "conveyor serve: %s needs a name of 1 to 128 printable characters without spaces, not '%s'\n",
                    where, val);
            return 2;
        }
        snprintf(s->node, sizeof s->node, "%s", val);
        s->eo.node = s->node;
    } else if (!strcmp(n, "lease")) {
        int64_t ms;
        const char *why = NULL;
        jv d = jv_string(val);
        int bad = cv__duration_ms(d, &ms, &why);
        jv_free(d);
        if (bad || ms < 100) {
            fprintf(stderr, "conveyor serve: %s: %s (an ISO 8601 duration such as PT10S)\n", where,
                    why ? why : "a lease lasts at least 100 ms");
            return 2;
        }
        s->eo.lease_ms = ms;
    } else if (!strcmp(n, "listen")) {
        if (parse_listen(val, s->host, sizeof s->host, &s->port)) {
            fprintf(stderr, "conveyor serve: %s needs ADDR:PORT (e.g. 127.0.0.1:8080), not '%s'\n", where, val);
            return 2;
        }
    } else if (!strcmp(n, "workers") || !strcmp(n, "max-inflight")) {
        char *end;
        long v = strtol(val, &end, 10);
        if (!*val || *end || v < 1 || v > 10000) {
            fprintf(stderr, "conveyor serve: %s needs a positive number (at most 10000), not '%s'\n", where, val);
            return 2;
        }
        if (!strcmp(n, "workers"))
            s->eo.workers = (int)v;
        else
            s->so.max_inflight = (int)v;
    } else if (!strcmp(n, "secrets")) {
        jv v;
        if (read_value_file(val, &v))
            return 2;
        if (jv_get_kind(v) != JV_KIND_OBJECT) {
            fprintf(stderr, "conveyor serve: %s: %s must hold an object of secrets\n", where, val);
            jv_free(v);
            return 2;
        }
        s->secrets = jv_object_merge(s->secrets, v);
    } else if (!strcmp(n, "subflow")) {
        cv_workflow *sub;
        jv diags = jv_invalid();
        if (cv_workflow_load_file(val, &sub, &diags)) {
            fprintf(stderr, "conveyor serve: %s: %s: not a valid workflow (see `conveyor validate`)\n", where, val);
            jv_free(diags);
            return 1;
        }
        jv_free(diags);
        cv_runtime_add_workflow(s->rt, sub);
    } else if (!strcmp(n, "subflows")) {
        jv diags = jv_invalid();
        if (cv_runtime_add_workflow_dir(s->rt, val, &diags)) {
            fprintf(stderr, "conveyor serve: %s: %s: invalid workflows (see `conveyor validate`)\n", where, val);
            jv_free(diags);
            return 1;
        }
        jv_free(diags);
    } else if (!strcmp(n, "host-map")) {
        if (cv_runtime_map_host(s->rt, val)) {
            fprintf(stderr, "conveyor serve: %s: invalid host map '%s' (expected HOST=ADDR:PORT)\n", where, val);
            return 2;
        }
    } else if (!strcmp(n, "deny-unmapped")) {
        cv_runtime_deny_unmapped(s->rt, 1);
    } else if (!strcmp(n, "time-scale")) {
        char *end;
        double x = strtod(val, &end);
        if (!*val || *end || !(x > 0)) {
            fprintf(stderr, "conveyor serve: %s needs a positive number, not '%s'\n", where, val);
            return 2;
        }
        cv_runtime_set_time_scale(s->rt, x);
    } else if (!strcmp(n, "effect-timeout")) {
        int64_t ms;
        const char *why = NULL;
        jv d = jv_string(val);
        int bad = cv__duration_ms(d, &ms, &why);
        jv_free(d);
        if (bad) {
            fprintf(stderr, "conveyor serve: %s: %s (an ISO 8601 duration such as PT30S)\n", where,
                    why ? why : "invalid duration");
            return 2;
        }
        cv_runtime_set_effect_timeout(s->rt, ms);
    } else if (!strcmp(n, "event-retention")) {
        int64_t ms;
        const char *why = NULL;
        jv d = jv_string(val);
        int bad = cv__duration_ms(d, &ms, &why);
        jv_free(d);
        if (bad || ms < 1) {
            fprintf(stderr, "conveyor serve: %s: %s (an ISO 8601 duration such as PT24H)\n", where,
                    why ? why : "the retention must be at least 1 ms");
            return 2;
        }
        s->eo.event_retention_ms = ms;
    } else if (!strcmp(n, "event-sink")) {
        if (strncmp(val, "http://", 7) && strncmp(val, "https://", 8)) {
            fprintf(stderr, "conveyor serve: %s needs an http:// or https:// URL, not '%s'\n", where, val);
            return 2;
        }
        if (s->nsinks == (int)(sizeof s->sinks / sizeof s->sinks[0])) {
            fprintf(stderr, "conveyor serve: %s: at most %d event sinks\n", where,
                    (int)(sizeof s->sinks / sizeof s->sinks[0]));
            return 2;
        }
        s->sinks[s->nsinks] = strdup(val);
        if (!s->sinks[s->nsinks])
            return 2;
        s->nsinks++;
        s->eo.event_sinks = s->sinks;
        s->eo.nevent_sinks = s->nsinks;
    }
    return 0;
}

static const char *kind_wanted(enum opt_kind k)
{
    switch (k) {
    case OPT_INT: return "an integer";
    case OPT_NUMBER: return "a number";
    case OPT_SWITCH: return "true or false";
    case OPT_LIST: return "a list of strings";
    default: return "a string";
    }
}

/* d is a whole number small enough to convert to long without overflow. */
static int is_integer(double d)
{
    return d > -1e15 && d < 1e15 && d == (double)(long)d;
}

/* A value (borrowed) of option `o` in `file` is not what the option takes:
 * message with the value as JSON, returns 2. */
static int wrong_type(const char *file, const struct opt *o, jv v)
{
    jv text = jv_dump_string(jv_copy(v), 0);
    fprintf(stderr, "conveyor serve: %s: %s must be %s, not %.80s\n", file, o->name, kind_wanted(o->kind),
            jv_is_valid(text) ? jv_string_value(text) : jv_kind_name(jv_get_kind(v)));
    jv_free(text);
    return 2;
}

/*
 * --config FILE: reads the object into *config (the caller frees it after
 * the store is open: `db` points into it) and applies its keys in the
 * order of opts[] (so the result does not depend on the file's key order).
 * Returns 0, 2 (unreadable, not an object, unknown keys, wrong types, bad
 * values; every unknown key is named) or 1 (an invalid subflow).
 */
static int apply_config(struct setup *s, const char *file, jv *config)
{
    if (read_value_file(file, config))
        return 2;
    if (jv_get_kind(*config) != JV_KIND_OBJECT) {
        fprintf(stderr, "conveyor serve: %s: a config file holds an object of options (db: FILE, ...), not %s\n",
                file, jv_kind_name(jv_get_kind(*config)));
        return 2;
    }
    int unknown = 0;
    /* borrowed: the macro evaluates its object several times (no jv_copy) */
    jv_object_foreach(*config, key, v)
    {
        if (!find_opt(jv_string_value(key))) {
            fprintf(stderr, "conveyor serve: %s: unknown key '%s'\n", file, jv_string_value(key));
            unknown++;
        }
        jv_free(key);
        jv_free(v);
    }
    if (unknown) {
        fprintf(stderr, "conveyor serve: %s: the keys are the long options of `conveyor serve`:", file);
        for (size_t i = 0; i < NOPTS; i++)
            fprintf(stderr, "%s %s", i ? "," : "", opts[i].name);
        fputc('\n', stderr);
        return 2;
    }
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        jv v = jv_object_get(jv_copy(*config), jv_string(o->name));
        if (!jv_is_valid(v)) {
            jv_free(v);
            continue;
        }
        char where[512], num[64];
        snprintf(where, sizeof where, "%s: %s", file, o->name);
        jv_kind k = jv_get_kind(v);
        int rc = 0;
        switch (o->kind) {
        case OPT_STRING:
            rc = k == JV_KIND_STRING ? apply_opt(s, o, jv_string_value(v), where) : wrong_type(file, o, v);
            break;
        case OPT_INT:
        case OPT_NUMBER:
            if (k != JV_KIND_NUMBER || (o->kind == OPT_INT && !is_integer(jv_number_value(v)))) {
                rc = wrong_type(file, o, v);
                break;
            }
            if (o->kind == OPT_INT)
                snprintf(num, sizeof num, "%ld", (long)jv_number_value(v));
            else
                snprintf(num, sizeof num, "%.17g", jv_number_value(v));
            rc = apply_opt(s, o, num, where);
            break;
        case OPT_SWITCH:
            if (k == JV_KIND_TRUE)
                rc = apply_opt(s, o, NULL, where);
            else if (k != JV_KIND_FALSE)
                rc = wrong_type(file, o, v);
            break;
        case OPT_LIST:
            if (k == JV_KIND_STRING) {
                rc = apply_opt(s, o, jv_string_value(v), where);
            } else if (k == JV_KIND_ARRAY) {
                jv_array_foreach(v, j, e)
                {
                    if (!rc)
                        rc = jv_get_kind(e) == JV_KIND_STRING ? apply_opt(s, o, jv_string_value(e), where)
                                                              : wrong_type(file, o, e);
                    jv_free(e);
                }
            } else {
                rc = wrong_type(file, o, v);
            }
            break;
        }
        jv_free(v);
        if (rc)
            return rc;
    }
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

/* The table entry of a command-line argument "--name", or NULL. */
static const struct opt *cli_opt(const char *a)
{
    return a[0] == '-' && a[1] == '-' ? find_opt(a + 2) : NULL;
}

int cv__serve_main(int argc, char **argv)
{
    struct setup s = {.host = "127.0.0.1", .port = 8080, .secrets = jv_object()};
    const char *config_file = NULL;
    jv config = jv_invalid();
    int rc = 2;
    cv_store *store = NULL;
    struct cv_engine *e = NULL;
    struct cv_server *srv = NULL;

    /* First pass: --help and --config, whose options go first wherever
     * --config stands on the command line. */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = cli_opt(a);
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_serve, stdout);
            jv_free(s.secrets);
            return 0;
        } else if (!strcmp(a, "--config")) {
            if (!need(i, argc, a) || config_file) {
                if (config_file)
                    fprintf(stderr, "conveyor serve: --config may be given once\n");
                jv_free(s.secrets);
                return 2;
            }
            config_file = argv[++i];
        } else if (o && o->kind != OPT_SWITCH) {
            i++;
        }
    }
    if (cv_runtime_new(&s.rt)) {
        fprintf(stderr, "conveyor serve: out of memory\n");
        jv_free(s.secrets);
        return 1;
    }
    if (config_file && (rc = apply_config(&s, config_file, &config)) != 0)
        goto out;
    rc = 2;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = cli_opt(a);
        if (!strcmp(a, "--config")) {
            i++; /* applied above */
        } else if (o && o->kind == OPT_SWITCH) {
            apply_opt(&s, o, NULL, a);
        } else if (o) {
            if (!need(i, argc, a))
                goto out;
            int r = apply_opt(&s, o, argv[++i], a);
            if (r) {
                rc = r;
                goto out;
            }
        } else {
            fprintf(stderr, "conveyor serve: unknown argument %s\n%s", a, usage_serve);
            goto out;
        }
    }
    if (!s.db) {
        fprintf(stderr, "conveyor serve: --db FILE (or db: in --config) is required\n%s", usage_serve);
        goto out;
    }
    cv_runtime_set_secrets(s.rt, s.secrets);
    s.secrets = jv_invalid();

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
    int r = cv_store_open(s.db, &store, &err);
    if (!r && !s.eo.node && !strcmp(cv_store_backend(store), "postgres")) {
        /* a database that several nodes share: this one by a name of its own */
        char host[64] = "node";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(s.node, sizeof s.node, "%s-%ld", host, (long)getpid());
        s.eo.node = s.node;
    }
    if (!r && !s.eo.node) /* one process runs a store's instances: a second server would resume them too */
        r = cv_store_claim(store, &err);
    if (r) {
        char shown[512];
        fprintf(stderr, "conveyor serve: %s: %s\n", cv__url_without_password(s.db, shown, sizeof shown),
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(r));
        jv_free(err);
        goto out;
    }
    jv_free(err);
    /* a descriptor per HTTP effect, child process and connection in flight:
     * take what the hard limit allows (a soft limit of 1024 is common) */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    int er = cv__engine_new(s.rt, store, &s.eo, &e);
    if (er) {
        fprintf(stderr, "conveyor serve: cannot create the engine%s\n",
                er == CV_EUNSUPPORTED ? ": this store does not support several nodes (--node)" : "");
        goto out;
    }
    if (s.eo.node)
        fprintf(stderr, "conveyor serve: node %s (leases of %lld ms)\n", s.eo.node,
                (long long)(s.eo.lease_ms > 0 ? s.eo.lease_ms : 10000));
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
    s.so.host = s.host;
    s.so.port = s.port;
    s.so.runtime = s.rt; /* the model metrics of its default catalog */
    int bound = 0;
    err = jv_invalid();
    r = cv__server_start(e, &s.so, &srv, &bound, &err);
    if (r) {
        fprintf(stderr, "conveyor serve: %s\n", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(r));
        jv_free(err);
        goto out;
    }
    jv_free(err);
    if (resumed)
        fprintf(stderr, "resumed %d unfinished instance(s)\n", resumed);
    if (strchr(s.host, ':'))
        fprintf(stderr, "listening on http://[%s]:%d\n", s.host, bound);
    else
        fprintf(stderr, "listening on http://%s:%d\n", s.host, bound);
    fflush(stderr);

    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "conveyor serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    cv__server_stop(srv);
    cv__engine_stop(e);
    cv_store_close(store);
    jv_free(s.secrets);
    for (int i = 0; i < s.nsinks; i++)
        free(s.sinks[i]);
    jv_free(config);
    cv_runtime_free(s.rt);
    return rc;
}
