/*
 * client.c — `conveyor deploy|start|get|list|history|cancel|suspend|resume`
 * and `conveyor events send`: the CLI as a client of the HTTP API
 * (client.h, docs/api.md). It only speaks HTTP: nothing here opens a store
 * or runs a workflow (`resume --db` is durable.c's; main.c decides which of
 * the two a `resume` means). Problems (RFC 9457) are printed as
 * "conveyor CMD: TITLE: DETAIL" with their `errors` one per line.
 */
#include "cli/client.h"
#include "common/base64.h"
#include "common/util.h"
#include "conveyor.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 60L
#define FILE_MAX (16u << 20)

static const char usage_client[] =
    "usage:\n"
    "  conveyor deploy FILE [--server URL]\n"
    "      deploy a workflow document; prints namespace/name:version\n"
    "  conveyor start NAMESPACE/NAME[:VERSION] [--input JSON] [--idempotency-key K]\n"
    "                 [--wait [SECONDS]] [--server URL]\n"
    "      start an instance (VERSION default: latest); prints `started ID`, or with\n"
    "      --wait (default 60 s, at most 300) the output as JSON (exit 1 when it\n"
    "      faulted, the error on stderr, or when it did not end in time)\n"
    "  conveyor get ID [--server URL]\n"
    "      print the instance as JSON (id, status, input, output, error, ...)\n"
    "  conveyor list [--status S] [--namespace NS] [--name NAME] [--limit N] [--json]\n"
    "                [--server URL]\n"
    "      list instances (one line each, or a JSON array with --json)\n"
    "  conveyor history ID [--json] [--server URL]\n"
    "      print an instance's history (one event a line, or JSON with --json)\n"
    "  conveyor cancel ID [--wait [SECONDS]] [--server URL]\n"
    "  conveyor suspend ID [--wait [SECONDS]] [--server URL]\n"
    "  conveyor resume ID [--wait [SECONDS]] [--server URL]\n"
    "      ask the server to cancel, suspend or resume an instance; prints\n"
    "      `cancel requested: ID`. The server refuses an unknown id (404) and a\n"
    "      status that does not allow it (409): exit 1, the reason on stderr.\n"
    "      --wait (default 60 s, at most 300) also waits until the instance is\n"
    "      cancelled / suspended / no longer suspended, and prints `ID STATUS`\n"
    "      (exit 1 when it ended otherwise or not in time). `resume` goes to the\n"
    "      server when it has an ID or --server and no --db; `resume --db FILE`\n"
    "      continues local runs (see `conveyor resume --help`).\n"
    "  conveyor events send --type TYPE --source SOURCE [--data JSON] [--server URL]\n"
    "  conveyor events send --file PATH [--server URL]\n"
    "  conveyor tasks list|get|claim|release|complete|reassign|create ... (conveyor tasks --help)\n"
    "      publish CloudEvents to the server's bus; prints `ID SEQ` per event (see\n"
    "      `conveyor events --help`)\n"
    "\n"
    "--server defaults to $CONVEYOR_SERVER, else http://127.0.0.1:8080.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

struct buf {
    char *p;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    size_t add = size * n;
    char *g = realloc(b->p, b->len + add + 1);
    if (!g)
        return 0;
    b->p = g;
    memcpy(b->p + b->len, ptr, add);
    b->len += add;
    b->p[b->len] = 0;
    return add;
}

struct client {
    const char *cmd;
    const char *server;
};

/*
 * One request. `path` is appended to the server URL; `body` (borrowed,
 * may be NULL) is sent with `ctype`; `extra` is one more header or NULL.
 * *status = the HTTP status; *raw = the body as received (raw->p malloc'd,
 * NUL-terminated, caller frees; NULL when empty). Returns 0, or 1 after
 * printing why the server could not be reached.
 */
static int request_raw(struct client *c, const char *method, const char *path, const char *body, size_t len,
                       const char *ctype, const char *extra, long timeout_s, long *status, struct buf *raw)
{
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "conveyor %s: cannot initialise libcurl\n", c->cmd);
        return 1;
    }
    size_t sl = strlen(c->server);
    while (sl && c->server[sl - 1] == '/')
        sl--;
    size_t ul = sl + strlen(path) + 1;
    char *url = malloc(ul);
    if (!url) {
        curl_easy_cleanup(h);
        return 1;
    }
    snprintf(url, ul, "%.*s%s", (int)sl, c->server, path);
    struct curl_slist *hdrs = NULL;
    char ct[128];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, ct);
    }
    if (extra)
        hdrs = curl_slist_append(hdrs, extra);
    hdrs = curl_slist_append(hdrs, "Accept: application/json, application/problem+json");
    struct buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cr = curl_easy_perform(h);
    int rc = 0;
    if (cr != CURLE_OK) {
        if (cr == CURLE_COULDNT_CONNECT)
            fprintf(stderr, "conveyor %s: cannot connect to %.*s: connection refused (is `conveyor serve` running?)\n",
                    c->cmd, (int)sl, c->server);
        else
            fprintf(stderr, "conveyor %s: %s %s: %s\n", c->cmd, method, url, curl_easy_strerror(cr));
        rc = 1;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        *raw = b;
        b.p = NULL;
    }
    free(b.p);
    free(url);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

/* The same, with *resp = the body parsed as JSON (or a string when it is
 * not JSON). */
static int request(struct client *c, const char *method, const char *path, const char *body, size_t len,
                   const char *ctype, const char *extra, long timeout_s, long *status, jv *resp)
{
    struct buf b = {0};
    if (request_raw(c, method, path, body, len, ctype, extra, timeout_s, status, &b))
        return 1;
    jv v = b.p ? jv_parse_sized(b.p, (int)b.len) : jv_null();
    if (!jv_is_valid(v)) {
        jv_free(v);
        v = jv_string(b.p ? b.p : "");
    }
    *resp = v;
    free(b.p);
    return 0;
}

/* A problem (or any failed response; resp consumed) as the text printed
 * after "conveyor CMD: ": "STATUS TITLE: DETAIL", its `errors` one per
 * line below. */
static jv failure_text(long status, jv resp)
{
    jv t;
    if (jv_get_kind(resp) == JV_KIND_OBJECT) {
        jv title = jv_object_get(jv_copy(resp), jv_string("title"));
        jv detail = jv_object_get(jv_copy(resp), jv_string("detail"));
        t = jv_string_fmt("%ld %s: %s", status, jv_get_kind(title) == JV_KIND_STRING ? jv_string_value(title) : "error",
                          jv_get_kind(detail) == JV_KIND_STRING ? jv_string_value(detail) : "");
        jv_free(title);
        jv_free(detail);
        jv errors = jv_object_get(jv_copy(resp), jv_string("errors"));
        if (jv_get_kind(errors) == JV_KIND_ARRAY) {
            jv_array_foreach(errors, i, e)
            {
                /* a review task's form errors name their field: `  amount: must be a number` */
                jv f = jv_get_kind(e) == JV_KIND_OBJECT ? jv_object_get(jv_copy(e), jv_string("field")) : jv_invalid();
                jv m = jv_get_kind(e) == JV_KIND_OBJECT ? jv_object_get(e, jv_string("message")) : e;
                if (jv_get_kind(m) == JV_KIND_STRING && jv_get_kind(f) == JV_KIND_STRING && *jv_string_value(f))
                    t = jv_string_concat(t, jv_string_fmt("\n  %s: %s", jv_string_value(f), jv_string_value(m)));
                else if (jv_get_kind(m) == JV_KIND_STRING)
                    t = jv_string_concat(t, jv_string_fmt("\n  %s", jv_string_value(m)));
                jv_free(f);
                jv_free(m);
            }
        }
        jv_free(errors);
    } else if (jv_get_kind(resp) == JV_KIND_STRING) {
        t = jv_string_fmt("HTTP %ld: %.300s", status, jv_string_value(resp));
    } else {
        t = jv_string_fmt("HTTP %ld", status);
    }
    jv_free(resp);
    return t;
}

/* Prints a problem (or any failed response) on stderr; returns 1. resp consumed. */
static int report_failure(struct client *c, long status, jv resp)
{
    jv t = failure_text(status, resp);
    fprintf(stderr, "conveyor %s: %s\n", c->cmd, jv_string_value(t));
    jv_free(t);
    return 1;
}

static void print_json(jv v, FILE *f)
{
    jv_dumpf(v, f, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
    fputc('\n', f);
}

/* curl_easy_escape into a malloc'd copy (caller frees) or NULL. */
static char *escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = e ? strdup(e) : NULL;
    curl_free(e);
    return copy;
}

static const char *str_field(jv obj, const char *key, char *buf, size_t n)
{
    jv v = jv_object_get(jv_copy(obj), jv_string(key));
    if (jv_get_kind(v) == JV_KIND_STRING)
        snprintf(buf, n, "%s", jv_string_value(v));
    else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
        jv s = jv_dump_string(v, 0);
        snprintf(buf, n, "%s", jv_string_value(s));
        jv_free(s);
        v = jv_invalid();
    } else
        snprintf(buf, n, "-");
    jv_free(v);
    return buf;
}

/* ------------------------------------------------------------------------ */

/*
 * Reads the file at `path` (borrowed; "-" is stdin when stdin_ok) into *b:
 * b->p is malloc'd and NUL-terminated (NULL when the file is empty), the
 * caller frees it. Returns 0, or 1 after printing why not (cannot open or
 * read it, larger than FILE_MAX, out of memory); *b is then empty.
 */
static int read_path(struct client *c, const char *path, int stdin_ok, struct buf *b)
{
    *b = (struct buf){0};
    int is_stdin = stdin_ok && !strcmp(path, "-");
    const char *name = is_stdin ? "stdin" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "conveyor %s: %s: %s\n", c->cmd, path, strerror(errno));
        return 1;
    }
    char chunk[65536];
    size_t r;
    const char *why = NULL;
    while (!why && (r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + r > FILE_MAX)
            why = "larger than 16 MiB";
        else if (on_data(chunk, 1, r, b) != r)
            why = "out of memory";
    }
    if (!why && ferror(f))
        why = strerror(errno);
    if (!is_stdin)
        fclose(f);
    if (why) {
        fprintf(stderr, "conveyor %s: %s: %s\n", c->cmd, name, why);
        free(b->p);
        *b = (struct buf){0};
        return 1;
    }
    return 0;
}

static int cmd_deploy(struct client *c, const char *file)
{
    struct buf b;
    if (read_path(c, file, 0, &b))
        return 1;
    size_t fl = strlen(file);
    const char *ctype = fl > 5 && !strcmp(file + fl - 5, ".json") ? "application/json" : "application/yaml";
    long status = 0;
    jv resp = jv_invalid();
    int rc = request(c, "POST", "/v1/workflows", b.p ? b.p : "", b.len, ctype, NULL, REQUEST_TIMEOUT_S, &status,
                     &resp);
    free(b.p);
    if (rc)
        return 1;
    if (status != 201 && status != 200)
        return report_failure(c, status, resp);
    char ns[256], name[256], version[128];
    printf("%s/%s:%s\n", str_field(resp, "namespace", ns, sizeof ns), str_field(resp, "name", name, sizeof name),
           str_field(resp, "version", version, sizeof version));
    jv_free(resp);
    return 0;
}

static int cmd_start(struct client *c, const char *ref, const char *input, const char *key, long wait_s)
{
    /* NAMESPACE/NAME[:VERSION] */
    const char *slash = strchr(ref, '/');
    if (!slash || slash == ref || !slash[1]) {
        fprintf(stderr, "conveyor start: expected NAMESPACE/NAME[:VERSION], not %s\n", ref);
        return 2;
    }
    const char *colon = strchr(slash + 1, ':');
    char *ns = strndup(ref, (size_t)(slash - ref));
    char *name = colon ? strndup(slash + 1, (size_t)(colon - slash - 1)) : strdup(slash + 1);
    char *version = strdup(colon && colon[1] ? colon + 1 : "latest");
    char *ens = ns ? escape(ns) : NULL, *ename = name ? escape(name) : NULL, *ever = version ? escape(version) : NULL;
    int rc = 1;
    jv resp = jv_invalid();
    if (!ens || !ename || !ever || !*name)
        goto out;
    char path[1024];
    if (wait_s >= 0)
        snprintf(path, sizeof path, "/v1/workflows/%s/%s/%s/instances?wait=%ld", ens, ename, ever, wait_s);
    else
        snprintf(path, sizeof path, "/v1/workflows/%s/%s/%s/instances", ens, ename, ever);
    char keyhdr[300];
    if (key)
        snprintf(keyhdr, sizeof keyhdr, "Idempotency-Key: %s", key);
    const char *body = input ? input : "{}";
    long status = 0;
    if (request(c, "POST", path, body, strlen(body), "application/json", key ? keyhdr : NULL,
                (wait_s > 0 ? wait_s : 0) + REQUEST_TIMEOUT_S, &status, &resp))
        goto out;
    if (status != 200 && status != 201 && status != 202) {
        rc = report_failure(c, status, resp);
        resp = jv_invalid();
        goto out;
    }
    char id[128], st[64];
    str_field(resp, "id", id, sizeof id);
    str_field(resp, "status", st, sizeof st);
    if (wait_s < 0) {
        printf("started %s\n", id);
        rc = 0;
    } else if (!strcmp(st, "completed")) {
        print_json(jv_object_get(jv_copy(resp), jv_string("output")), stdout);
        rc = 0;
    } else if (!strcmp(st, "faulted") || !strcmp(st, "cancelled")) {
        jv e = jv_object_get(jv_copy(resp), jv_string("error"));
        fprintf(stderr, "conveyor start: instance %s %s: ", id, st);
        jv_dumpf(e, stderr, 0);
        fputc('\n', stderr);
        rc = 1;
    } else {
        fprintf(stderr, "conveyor start: instance %s did not end within %ld s (status %s)\n", id, wait_s, st);
        printf("started %s\n", id);
        rc = 1;
    }
out:
    jv_free(resp);
    free(ns);
    free(name);
    free(version);
    free(ens);
    free(ename);
    free(ever);
    return rc;
}

static int cmd_get(struct client *c, const char *id, int history, int json)
{
    char *eid = escape(id);
    if (!eid)
        return 1;
    char path[512];
    snprintf(path, sizeof path, history ? "/v1/instances/%s/history" : "/v1/instances/%s", eid);
    free(eid);
    long status = 0;
    jv resp = jv_invalid();
    if (request(c, "GET", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &status, &resp))
        return 1;
    if (status != 200)
        return report_failure(c, status, resp);
    if (!history || json) {
        print_json(history ? jv_object_get(resp, jv_string("items")) : resp, stdout);
        return 0;
    }
    jv items = jv_object_get(resp, jv_string("items"));
    if (jv_get_kind(items) == JV_KIND_ARRAY) {
        jv_array_foreach(items, i, ev)
        {
            char seq[32], time[64], type[64], task[256];
            str_field(ev, "seq", seq, sizeof seq);
            str_field(ev, "time", time, sizeof time);
            str_field(ev, "type", type, sizeof type);
            str_field(ev, "task", task, sizeof task);
            jv data = jv_object_get(ev, jv_string("data"));
            printf("%s %s %s %s", seq, time, type, task);
            if (jv_is_valid(data) && jv_get_kind(data) != JV_KIND_NULL) {
                fputc(' ', stdout);
                jv_dumpf(data, stdout, 0);
            } else {
                jv_free(data);
            }
            fputc('\n', stdout);
        }
    }
    jv_free(items);
    return 0;
}

static int cmd_list(struct client *c, const char *status_f, const char *ns, const char *name, long limit, int json)
{
    jv all = jv_array();
    char *after = NULL;
    int rc = 0;
    long got = 0;
    while (got < limit) {
        long page = limit - got > 1000 ? 1000 : limit - got;
        char path[1024];
        size_t n = (size_t)snprintf(path, sizeof path, "/v1/instances?limit=%ld", page);
        const char *keys[] = {"status", "namespace", "name", "after"};
        const char *vals[] = {status_f, ns, name, after};
        for (int i = 0; i < 4 && n < sizeof path; i++) {
            if (!vals[i])
                continue;
            char *e = escape(vals[i]);
            if (e)
                n += (size_t)snprintf(path + n, sizeof path - n, "&%s=%s", keys[i], e);
            free(e);
        }
        long status = 0;
        jv resp = jv_invalid();
        if (request(c, "GET", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &status, &resp)) {
            rc = 1;
            break;
        }
        if (status != 200) {
            rc = report_failure(c, status, resp);
            break;
        }
        jv items = jv_object_get(jv_copy(resp), jv_string("items"));
        jv next = jv_object_get(resp, jv_string("next"));
        if (jv_get_kind(items) == JV_KIND_ARRAY) {
            got += jv_array_length(jv_copy(items));
            all = jv_array_concat(all, items);
        } else {
            jv_free(items);
        }
        free(after);
        after = jv_get_kind(next) == JV_KIND_STRING ? strdup(jv_string_value(next)) : NULL;
        jv_free(next);
        if (!after)
            break;
    }
    free(after);
    if (!rc) {
        if (json) {
            print_json(jv_copy(all), stdout);
        } else {
            jv_array_foreach(all, i, it)
            {
                char id[128], st[32], n1[256], n2[256], v[128], at[64];
                printf("%s  %-9s  %s/%s:%s  %s\n", str_field(it, "id", id, sizeof id),
                       str_field(it, "status", st, sizeof st), str_field(it, "namespace", n1, sizeof n1),
                       str_field(it, "name", n2, sizeof n2), str_field(it, "version", v, sizeof v),
                       str_field(it, "createdAt", at, sizeof at));
                jv_free(it);
            }
        }
    }
    jv_free(all);
    return rc;
}

/* ------------------------------------------------------------------------
 * cancel, suspend, resume
 * ---------------------------------------------------------------------- */

static int is_control(const char *cmd)
{
    return !strcmp(cmd, "cancel") || !strcmp(cmd, "suspend") || !strcmp(cmd, "resume");
}

/*
 * Whether the instance, now in status `st`, shows that `action` took
 * effect: 1 yes, 0 not yet, -1 never (it ended some other way, e.g. it
 * completed before a cancel reached it). A resume has taken effect as soon
 * as the instance is no longer suspended, whatever it does next.
 */
static int control_outcome(const char *action, const char *st)
{
    int ended = !strcmp(st, "completed") || !strcmp(st, "faulted") || !strcmp(st, "cancelled");
    if (!strcmp(action, "cancel"))
        return !strcmp(st, "cancelled") ? 1 : ended ? -1 : 0;
    if (!strcmp(action, "suspend"))
        return !strcmp(st, "suspended") ? 1 : ended ? -1 : 0;
    return strcmp(st, "suspended") ? 1 : 0;
}

/*
 * --wait: polls GET /v1/instances/{id} (every 50 ms, backing off to 500 ms)
 * until control_outcome() decides or wait_s seconds have passed. Prints
 * `ID STATUS` on success; returns 0, or 1 with the reason on stderr.
 */
static int control_wait(struct client *c, const char *id, const char *path, long wait_s)
{
    struct timespec t0, now, pause = {0, 50 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long status = 0;
        jv resp = jv_invalid();
        if (request(c, "GET", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &status, &resp))
            return 1;
        if (status != 200)
            return report_failure(c, status, resp);
        char st[64];
        str_field(resp, "status", st, sizeof st);
        jv_free(resp);
        int r = control_outcome(c->cmd, st);
        if (r > 0) {
            printf("%s %s\n", id, st);
            return 0;
        }
        if (r < 0) {
            fprintf(stderr, "conveyor %s: instance %s ended %s instead\n", c->cmd, id, st);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = (double)wait_s - ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9);
        if (left <= 0) {
            fprintf(stderr, "conveyor %s: instance %s is still %s after %ld s\n", c->cmd, id, st, wait_s);
            return 1;
        }
        struct timespec p = pause;
        if ((double)p.tv_nsec / 1e9 > left)
            p.tv_nsec = (long)(left * 1e9);
        nanosleep(&p, NULL);
        if (pause.tv_nsec < 500 * 1000000L)
            pause.tv_nsec *= 2;
        if (pause.tv_nsec > 500 * 1000000L)
            pause.tv_nsec = 500 * 1000000L;
    }
}

/* POST /v1/instances/{id}/{cancel|suspend|resume} (the command's name);
 * then, with wait_s >= 0, control_wait(). Returns the exit status. */
static int cmd_control(struct client *c, const char *id, long wait_s)
{
    char *eid = escape(id);
    if (!eid)
        return 1;
    char path[512], ipath[512];
    size_t n = (size_t)snprintf(path, sizeof path, "/v1/instances/%s/%s", eid, c->cmd);
    snprintf(ipath, sizeof ipath, "/v1/instances/%s", eid);
    free(eid);
    if (n >= sizeof path) {
        fprintf(stderr, "conveyor %s: the instance id is too long\n", c->cmd);
        return 1;
    }
    long status = 0;
    jv resp = jv_invalid();
    if (request(c, "POST", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &status, &resp))
        return 1;
    if (status != 202 && status != 200)
        return report_failure(c, status, resp);
    jv_free(resp);
    printf("%s requested: %s\n", c->cmd, id);
    fflush(stdout);
    return wait_s >= 0 ? control_wait(c, id, ipath, wait_s) : 0;
}

/* ------------------------------------------------------------------------
 * events send
 * ---------------------------------------------------------------------- */

static const char usage_events[] =
    "usage:\n"
    "  conveyor events send --type TYPE --source SOURCE [--id ID] [--subject S]\n"
    "                       [--data JSON | --data-file PATH] [--server URL]\n"
    "      publish one CloudEvent 1.0 (structured mode, application/cloudevents+json)\n"
    "      with specversion \"1.0\", id ID (default: a new UUID v4), time now (RFC 3339,\n"
    "      UTC) and, with --data or --data-file (a JSON value; PATH - is stdin), that\n"
    "      data and datacontenttype application/json\n"
    "  conveyor events send --file PATH [--server URL]\n"
    "      publish the events in PATH (- is stdin): one event object, a JSON array of\n"
    "      events, or JSON lines (one event a line), as one batch\n"
    "      (application/cloudevents-batch+json) that the server accepts whole or not\n"
    "      at all. An event without specversion, id or time gets \"1.0\", a new UUID v4\n"
    "      and now; type and source are required (the server refuses an event without\n"
    "      them and its message is shown). Other attributes are sent as they are.\n"
    "\n"
    "Prints one line `ID SEQ` per accepted event, in the order sent (SEQ: the\n"
    "event's position on the server's bus). Exit status: 0 accepted; 1 refused (the\n"
    "server's problem on stderr), the server could not be reached, or PATH could\n"
    "not be read; 2 usage error, including --data, --data-file or --file content\n"
    "that is not JSON.\n"
    "--server defaults to $CONVEYOR_SERVER, else http://127.0.0.1:8080.\n";

static int events_usage_error(struct client *c, const char *msg, const char *arg)
{
    fprintf(stderr, "conveyor %s: %s%s\n%s", c->cmd, msg, arg ? arg : "", usage_events);
    return 2;
}

/*
 * Parses text[0..len) (borrowed) as one JSON value into *out (owned by the
 * caller). Returns 0, or 2 after printing that `what` is not valid JSON.
 */
static int parse_json(struct client *c, const char *what, const char *text, size_t len, jv *out)
{
    jv v = jv_parse_sized(text, (int)len);
    if (jv_is_valid(v)) {
        *out = v;
        return 0;
    }
    jv msg = jv_invalid_get_msg(v);
    /* jq's message quotes the whole text: a long --data-file is cut short */
    int hint = !strcmp(what, "--data") && len && text[0] != '"' && text[0] != '{' && text[0] != '[';
    fprintf(stderr, "conveyor %s: %s is not valid JSON: %.300s%s\n", c->cmd, what,
            jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?",
            hint ? " (a string is quoted: '\"text\"')" : "");
    jv_free(msg);
    return 2;
}

/*
 * The events of a --file (b borrowed, `name` for messages): every JSON
 * value in it is an event, or an array of events, so one object, one array
 * and JSON lines all read the same way. Returns 0 with *out a non-empty
 * array (the caller's), or 2 after a message (not JSON, or no event).
 */
static int file_events(struct client *c, const char *name, const struct buf *b, jv *out)
{
    jv all = jv_array();
    jv_parser *p = jv_parser_new(0);
    jv_parser_set_buf(p, b->p ? b->p : "", (int)b->len, 0);
    jv v;
    while (jv_is_valid(v = jv_parser_next(p)))
        all = jv_get_kind(v) == JV_KIND_ARRAY ? jv_array_concat(all, v) : jv_array_append(all, v);
    jv_parser_free(p);
    jv msg = jv_invalid_get_msg(v);
    if (jv_get_kind(msg) == JV_KIND_STRING) {
        fprintf(stderr, "conveyor %s: %s is not JSON: %s\n", c->cmd, name, jv_string_value(msg));
        jv_free(msg);
        jv_free(all);
        return 2;
    }
    jv_free(msg);
    if (jv_array_length(jv_copy(all)) == 0) {
        fprintf(stderr, "conveyor %s: %s holds no event\n", c->cmd, name);
        jv_free(all);
        return 2;
    }
    *out = all;
    return 0;
}

/* Sets ev.key to val when ev has no key or a null one; ev and val consumed. */
static jv set_missing(jv ev, const char *key, jv val)
{
    jv cur = jv_object_get(jv_copy(ev), jv_string(key));
    int missing = !jv_is_valid(cur) || jv_get_kind(cur) == JV_KIND_NULL;
    jv_free(cur);
    if (missing)
        return jv_object_set(ev, jv_string(key), val);
    jv_free(val);
    return ev;
}

/*
 * What an event of a --file may leave out: specversion "1.0", a new UUID
 * v4 as id, `now` as time. events consumed, returned filled. Elements that
 * are not objects are left for the server to refuse by position.
 */
static jv fill_defaults(jv events, const char *now)
{
    jv out = jv_array();
    jv_array_foreach(events, i, ev)
    {
        if (jv_get_kind(ev) == JV_KIND_OBJECT) {
            char id[37];
            cv__uuid4(id);
            ev = set_missing(ev, "specversion", jv_string("1.0"));
            ev = set_missing(ev, "id", jv_string(id));
            ev = set_missing(ev, "time", jv_string(now));
        }
        out = jv_array_append(out, ev);
    }
    jv_free(events);
    return out;
}

/*
 * POSTs `events` (an array, consumed) to /v1/events: its one event in
 * structured mode, or the whole array as a batch. Prints `ID SEQ` per
 * accepted event. Returns the exit status (0, or 1 after a message).
 */
static int post_events(struct client *c, jv events, int batch)
{
    jv body = jv_dump_string(batch ? events : jv_array_get(events, 0), 0);
    long status = 0;
    jv resp = jv_invalid();
    int rc = request(c, "POST", "/v1/events", jv_string_value(body), (size_t)jv_string_length_bytes(jv_copy(body)),
                     batch ? "application/cloudevents-batch+json" : "application/cloudevents+json", NULL,
                     REQUEST_TIMEOUT_S, &status, &resp);
    jv_free(body);
    if (rc)
        return 1;
    if (status != 202 && status != 200)
        return report_failure(c, status, resp);
    jv items = jv_get_kind(resp) == JV_KIND_OBJECT ? jv_object_get(resp, jv_string("events")) : resp;
    if (jv_get_kind(items) != JV_KIND_ARRAY) {
        fprintf(stderr, "conveyor %s: HTTP %ld without the accepted events' ids\n", c->cmd, status);
        jv_free(items);
        return 1;
    }
    jv_array_foreach(items, i, it)
    {
        char id[512] = "-", seq[32] = "-";
        if (jv_get_kind(it) == JV_KIND_OBJECT) {
            str_field(it, "id", id, sizeof id);
            str_field(it, "seq", seq, sizeof seq);
        }
        printf("%s %s\n", id, seq);
        jv_free(it);
    }
    jv_free(items);
    return 0;
}

/*
 * `conveyor events SUBCOMMAND ...` (argv borrowed, without "events").
 * Only `send` for now. Returns the exit status.
 */
static int events_main(struct client *c, int argc, char **argv)
{
    if (argc < 1)
        return events_usage_error(c, "a subcommand is required: send", NULL);
    if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help") || !strcmp(argv[0], "help")) {
        fputs(usage_events, stdout);
        return 0;
    }
    if (strcmp(argv[0], "send"))
        return events_usage_error(c, "unknown subcommand ", argv[0]);
    c->cmd = "events send";
    const char *type = NULL, *source = NULL, *id = NULL, *subject = NULL, *data = NULL, *data_file = NULL,
               *file = NULL;
    static const char *const opts[] = {"--type", "--source", "--id", "--subject", "--data", "--data-file", "--file"};
    const char **dest[] = {&type, &source, &id, &subject, &data, &data_file, &file};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        size_t k = 0;
        while (k < sizeof opts / sizeof *opts && strcmp(a, opts[k]))
            k++;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_events, stdout);
            return 0;
        } else if (!strcmp(a, "--server")) {
            if (!has)
                return events_usage_error(c, "--server needs a URL", NULL);
            c->server = argv[++i];
        } else if (k < sizeof opts / sizeof *opts) {
            if (!has)
                return events_usage_error(c, "a value is needed after ", a);
            *dest[k] = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return events_usage_error(c, "unknown option ", a);
        } else {
            return events_usage_error(c, "unexpected argument ", a);
        }
    }
    if (file && (type || source || id || subject || data || data_file))
        return events_usage_error(c, "--file takes the events from PATH: it does not combine with --type, "
                                  "--source, --id, --subject, --data or --data-file",
                                  NULL);
    if (data && data_file)
        return events_usage_error(c, "--data and --data-file cannot be combined", NULL);
    if (!file && (!type || !*type || !source || !*source))
        return events_usage_error(c, "--type and --source (non-empty) are required, or --file PATH", NULL);
    if (id && !*id)
        return events_usage_error(c, "--id cannot be empty", NULL);

    char now[32];
    cv__rfc3339(cv__wall_ms(), now);
    jv events = jv_invalid();
    struct buf b = {0};
    int rc = 0;
    if (file) {
        rc = read_path(c, file, 1, &b);
        if (!rc)
            rc = file_events(c, strcmp(file, "-") ? file : "stdin", &b, &events);
        if (!rc)
            events = fill_defaults(events, now);
    } else {
        jv value = jv_invalid();
        if (data)
            rc = parse_json(c, "--data", data, strlen(data), &value);
        else if (data_file && !(rc = read_path(c, data_file, 1, &b)))
            rc = parse_json(c, !strcmp(data_file, "-") ? "stdin" : data_file, b.p ? b.p : "", b.len, &value);
        if (!rc) {
            char uuid[37];
            if (!id) {
                cv__uuid4(uuid);
                id = uuid;
            }
            jv ev = jv_object();
            ev = jv_object_set(ev, jv_string("specversion"), jv_string("1.0"));
            ev = jv_object_set(ev, jv_string("id"), jv_string(id));
            ev = jv_object_set(ev, jv_string("source"), jv_string(source));
            ev = jv_object_set(ev, jv_string("type"), jv_string(type));
            if (subject)
                ev = jv_object_set(ev, jv_string("subject"), jv_string(subject));
            ev = jv_object_set(ev, jv_string("time"), jv_string(now));
            if (jv_is_valid(value)) {
                ev = jv_object_set(ev, jv_string("datacontenttype"), jv_string("application/json"));
                ev = jv_object_set(ev, jv_string("data"), value);
                value = jv_invalid();
            }
            events = JV_ARRAY(ev);
        }
        jv_free(value);
    }
    free(b.p);
    if (rc)
        return rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = post_events(c, events, file != NULL);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}

/* ------------------------------------------------------------------------
 * tasks: the reviewer's inbox (docs/tasks.md)
 * ---------------------------------------------------------------------- */

static const char usage_tasks[] =
    "usage:\n"
    "  conveyor tasks list [--status open|claimed|completed|cancelled|escalated] [--role R]\n"
    "                      [--assignee U] [--limit N] [--json] [--server URL]\n"
    "      the queue, most urgent first (priority, then due time); --json prints\n"
    "      a JSON array of task objects (id, instance, title, status, form, data...)\n"
    "  conveyor tasks get ID [--server URL]          the task as JSON\n"
    "  conveyor tasks claim ID --as USER [--server URL]\n"
    "      take the task (one reviewer at a time; the claim lasts 30 minutes)\n"
    "  conveyor tasks release ID --as USER [--server URL]\n"
    "  conveyor tasks complete ID --as USER --data JSON [--server URL]\n"
    "      JSON is {\"decision\": ..., \"fields\": {...}, \"comment\": ...}, checked\n"
    "      against the task's form; each refused field is printed on stderr\n"
    "  conveyor tasks reassign ID [--assignee U] [--role R] [--as USER] [--server URL]\n"
    "  conveyor tasks create --data JSON [--server URL]\n"
    "      raise a task that belongs to no instance (POST /v1/tasks); prints its id\n"
    "--as names the person acting (sent as X-Conveyor-User) until the server\n"
    "authenticates its callers.\n"
    "--server defaults to $CONVEYOR_SERVER, else http://127.0.0.1:8080.\n"
    "Exit status: 0 success, 1 failure (the server refused: 409 conflict, 422\n"
    "form errors...), 2 usage error.\n";

static int tasks_usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "conveyor tasks: %s%s\n%s", msg, arg ? arg : "", usage_tasks);
    return 2;
}

static int tasks_list(struct client *c, const char *status, const char *role, const char *assignee, long limit,
                      int json)
{
    jv all = jv_array();
    char *after = NULL;
    int rc = 0;
    long got = 0;
    while (got < limit) {
        long page = limit - got > 1000 ? 1000 : limit - got;
        char path[2048];
        size_t n = (size_t)snprintf(path, sizeof path, "/v1/tasks?limit=%ld", page);
        const char *keys[] = {"status", "role", "assignee", "after"};
        const char *vals[] = {status, role, assignee, after};
        for (int i = 0; i < 4 && n < sizeof path; i++) {
            if (!vals[i])
                continue;
            char *e = escape(vals[i]);
            if (e)
                n += (size_t)snprintf(path + n, sizeof path - n, "&%s=%s", keys[i], e);
            free(e);
        }
        long st = 0;
        jv resp = jv_invalid();
        if (request(c, "GET", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &st, &resp)) {
            rc = 1;
            break;
        }
        if (st != 200) {
            rc = report_failure(c, st, resp);
            break;
        }
        jv items = jv_object_get(jv_copy(resp), jv_string("items"));
        jv next = jv_object_get(resp, jv_string("next"));
        if (jv_get_kind(items) == JV_KIND_ARRAY) {
            got += jv_array_length(jv_copy(items));
            all = jv_array_concat(all, items);
        } else {
            jv_free(items);
        }
        free(after);
        after = jv_get_kind(next) == JV_KIND_STRING ? strdup(jv_string_value(next)) : NULL;
        jv_free(next);
        if (!after)
            break;
    }
    free(after);
    if (!rc) {
        if (json) {
            print_json(jv_copy(all), stdout);
        } else {
            jv_array_foreach(all, i, t)
            {
                char id[128], st[32], title[256], who[128], due[64];
                jv claimed = jv_object_get(jv_copy(t), jv_string("claimedBy"));
                str_field(t, jv_get_kind(claimed) == JV_KIND_STRING ? "claimedBy" : "role", who, sizeof who);
                jv_free(claimed);
                printf("%s  %-9s  %-12s  due %-24s  %s\n", str_field(t, "id", id, sizeof id),
                       str_field(t, "status", st, sizeof st), who, str_field(t, "due", due, sizeof due),
                       str_field(t, "title", title, sizeof title));
                jv_free(t);
            }
        }
    }
    jv_free(all);
    return rc;
}

/* POST PATH with `body` (consumed) as user `as` (may be NULL); prints the
 * answer (the task) on success. */
static int tasks_post(struct client *c, const char *path, jv body, const char *as, int print_id)
{
    jv text = jv_dump_string(body, 0);
    char hdr[512];
    if (as)
        snprintf(hdr, sizeof hdr, "X-Conveyor-User: %s", as);
    long st = 0;
    jv resp = jv_invalid();
    int rc = request(c, "POST", path, jv_string_value(text), strlen(jv_string_value(text)), "application/json",
                     as ? hdr : NULL, REQUEST_TIMEOUT_S, &st, &resp);
    jv_free(text);
    if (rc)
        return 1;
    if (st != 200 && st != 201)
        return report_failure(c, st, resp);
    if (print_id) {
        char id[128];
        printf("%s\n", str_field(resp, "id", id, sizeof id));
        jv_free(resp);
    } else {
        print_json(resp, stdout);
    }
    return 0;
}

static int tasks_main(struct client *c, int argc, char **argv)
{
    if (argc < 1)
        return tasks_usage_error("a subcommand is required: list, get, claim, release, complete, reassign, create",
                                 NULL);
    const char *sub = argv[0];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(usage_tasks, stdout);
        return 0;
    }
    static const char *const subs[] = {"list", "get", "claim", "release", "complete", "reassign", "create"};
    int known = 0;
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        known |= !strcmp(sub, subs[i]);
    if (!known)
        return tasks_usage_error("unknown subcommand ", sub);
    const char *id = NULL, *as = NULL, *data = NULL, *status = NULL, *role = NULL, *assignee = NULL;
    long limit = 1000;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_tasks, stdout);
            return 0;
        } else if (!strcmp(a, "--server") || !strcmp(a, "--as") || !strcmp(a, "--data") || !strcmp(a, "--status") ||
                   !strcmp(a, "--role") || !strcmp(a, "--assignee") || !strcmp(a, "--limit")) {
            if (!has)
                return tasks_usage_error("a value is needed after ", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--server"))
                c->server = v;
            else if (!strcmp(a, "--as"))
                as = v;
            else if (!strcmp(a, "--data"))
                data = v;
            else if (!strcmp(a, "--status"))
                status = v;
            else if (!strcmp(a, "--role"))
                role = v;
            else if (!strcmp(a, "--assignee"))
                assignee = v;
            else {
                char *end;
                limit = strtol(v, &end, 10);
                if (*end || limit < 1 || limit > 100000)
                    return tasks_usage_error("--limit takes 1 to 100000, not ", v);
            }
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return tasks_usage_error("unknown option ", a);
        } else if (!id && strcmp(sub, "list") && strcmp(sub, "create")) {
            id = a;
        } else {
            return tasks_usage_error("unexpected argument ", a);
        }
    }
    if (!id && strcmp(sub, "list") && strcmp(sub, "create"))
        return tasks_usage_error("ID is required", NULL);
    if (!as && (!strcmp(sub, "claim") || !strcmp(sub, "release") || !strcmp(sub, "complete")))
        return tasks_usage_error("--as USER is required: who acts", NULL);
    if (status && strcmp(sub, "list"))
        return tasks_usage_error("--status is an option of list", NULL);
    jv body = jv_object();
    if (!strcmp(sub, "complete") || !strcmp(sub, "create")) {
        if (!data) {
            jv_free(body);
            return tasks_usage_error("--data JSON is required", NULL);
        }
        jv_free(body);
        body = jv_parse(data);
        if (jv_get_kind(body) != JV_KIND_OBJECT) {
            jv_free(body);
            return tasks_usage_error("--data must be a JSON object, not ", data);
        }
    } else if (data) {
        jv_free(body);
        return tasks_usage_error("--data is an option of complete and create", NULL);
    }
    if (!strcmp(sub, "reassign")) {
        if (!role && !assignee) {
            jv_free(body);
            return tasks_usage_error("reassign needs --assignee U and/or --role R", NULL);
        }
        if (assignee)
            body = jv_object_set(body, jv_string("assignee"), jv_string(assignee));
        if (role)
            body = jv_object_set(body, jv_string("role"), jv_string(role));
    }
    char path[1024];
    char *eid = id ? escape(id) : NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(sub, "list")) {
        jv_free(body);
        rc = tasks_list(c, status, role, assignee, limit, json);
    } else if (!strcmp(sub, "get")) {
        jv_free(body);
        snprintf(path, sizeof path, "/v1/tasks/%s", eid ? eid : "");
        long st = 0;
        jv resp = jv_invalid();
        rc = request(c, "GET", path, NULL, 0, NULL, NULL, REQUEST_TIMEOUT_S, &st, &resp);
        if (!rc)
            rc = st == 200 ? (print_json(resp, stdout), 0) : report_failure(c, st, resp);
    } else if (!strcmp(sub, "create")) {
        rc = tasks_post(c, "/v1/tasks", body, as, 1);
    } else {
        snprintf(path, sizeof path, "/v1/tasks/%s/%s", eid ? eid : "", sub);
        rc = tasks_post(c, path, body, as, 0);
    }
    free(eid);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}

/* ------------------------------------------------------------------------
 * The model registry (`conveyor model ... --server URL`, model.c)
 * ---------------------------------------------------------------------- */

/* One JSON request for the registry: 0 with *out when the status is `want`
 * (or 200/201 when want is 0), else CV_EFAULT with *err = the reason (the
 * server's problem, or that it could not be reached). body borrowed. */
static int registry_call(const char *server, const char *method, const char *path, jv body, jv *out, jv *err)
{
    struct client c = {.cmd = "model", .server = server};
    jv text = jv_is_valid(body) ? jv_dump_string(jv_copy(body), 0) : jv_invalid();
    long st = 0;
    jv resp = jv_invalid();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = request(&c, method, path, jv_is_valid(text) ? jv_string_value(text) : NULL,
                     jv_is_valid(text) ? (size_t)jv_string_length_bytes(jv_copy(text)) : 0,
                     jv_is_valid(text) ? "application/json" : NULL, NULL, REQUEST_TIMEOUT_S, &st, &resp);
    curl_global_cleanup();
    jv_free(text);
    if (rc) { /* request() said why on stderr */
        *err = jv_string_fmt("the server %s could not be reached", server);
        return CV_EIO;
    }
    if (st != 200 && st != 201) {
        *err = failure_text(st, resp);
        return st == 404 ? CV_ENOTFOUND : st == 409 ? CV_ECONFLICT : CV_EFAULT;
    }
    *out = resp;
    return 0;
}

/* "/v1/models/NAME[/versions/V]" + tail into buf (NAME escaped). */
static const char *model_path(char *buf, size_t n, const char *name, int64_t version, const char *tail)
{
    char *e = escape(name);
    if (version > 0)
        snprintf(buf, n, "/v1/models/%s/versions/%lld%s", e ? e : "", (long long)version, tail);
    else
        snprintf(buf, n, "/v1/models/%s%s", e ? e : "", tail);
    free(e);
    return buf;
}

int cv__client_model_get(const char *server, const char *name, int64_t version, jv *card, void **bytes, size_t *len,
                         jv *err)
{
    char path[1024];
    jv c = jv_invalid();
    int rc = registry_call(server, "GET", model_path(path, sizeof path, name, version, ""), jv_invalid(), &c, err);
    if (rc || !bytes) {
        if (!rc)
            *card = c;
        return rc;
    }
    /* the file of exactly the version the card names (a bare NAME may move meanwhile) */
    jv v = jv_object_get(jv_copy(c), jv_string("version"));
    int64_t got = jv_get_kind(v) == JV_KIND_NUMBER ? (int64_t)jv_number_value(v) : 0;
    jv_free(v);
    struct client cl = {.cmd = "model", .server = server};
    struct buf b = {0};
    long st = 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = request_raw(&cl, "GET", model_path(path, sizeof path, name, got, "/file"), NULL, 0, NULL, NULL,
                     REQUEST_TIMEOUT_S, &st, &b);
    curl_global_cleanup();
    if (rc) {
        jv_free(c);
        *err = jv_string_fmt("the server %s could not be reached", server);
        return CV_EIO;
    }
    if (st != 200) {
        jv resp = b.p ? jv_parse_sized(b.p, (int)b.len) : jv_null();
        free(b.p);
        jv_free(c);
        *err = failure_text(st, jv_is_valid(resp) ? resp : (jv_free(resp), jv_null()));
        return st == 404 ? CV_ENOTFOUND : CV_EFAULT;
    }
    *card = c;
    *bytes = b.p ? (void *)b.p : malloc(1);
    *len = b.len;
    if (!*bytes) {
        jv_free(*card);
        *card = jv_invalid();
        *err = jv_string("out of memory");
        return CV_ENOMEM;
    }
    return 0;
}

int cv__client_feedback(const char *server, const char *name, jv *out, jv *err)
{
    char path[300];
    snprintf(path, sizeof path, "/v1/models/%s/feedback", name);
    jv r = jv_invalid();
    int rc = registry_call(server, "GET", path, jv_invalid(), &r, err);
    if (rc)
        return rc;
    *out = jv_object_get(r, jv_string("items"));
    if (jv_get_kind(*out) != JV_KIND_ARRAY) {
        jv_free(*out);
        *out = jv_invalid();
        *err = jv_string("the server's feedback list has no items");
        return CV_EFAULT;
    }
    return 0;
}

int cv__client_model_list(const char *server, jv *out, jv *err)
{
    jv r = jv_invalid();
    int rc = registry_call(server, "GET", "/v1/models", jv_invalid(), &r, err);
    if (rc)
        return rc;
    *out = jv_object_get(r, jv_string("items"));
    if (jv_get_kind(*out) != JV_KIND_ARRAY) {
        jv_free(*out);
        *out = jv_invalid();
        *err = jv_string("the server's model list has no items");
        return CV_EFAULT;
    }
    return 0;
}

int cv__client_model_put(const char *server, const char *name, const char *kind, jv card, const void *bytes,
                         size_t len, int64_t *version, jv *err)
{
    char *b64 = cv__base64_encode(bytes, len);
    if (!b64) {
        jv_free(card);
        *err = jv_string("out of memory");
        return CV_ENOMEM;
    }
    jv body = JV_OBJECT(jv_string("kind"), jv_string(kind), jv_string("card"), card, jv_string("file"),
                        jv_string(b64));
    free(b64);
    char path[1024];
    jv r = jv_invalid();
    int rc = registry_call(server, "POST", model_path(path, sizeof path, name, 0, "/versions"), body, &r, err);
    jv_free(body);
    if (rc)
        return rc;
    jv v = jv_object_get(r, jv_string("version"));
    *version = jv_get_kind(v) == JV_KIND_NUMBER ? (int64_t)jv_number_value(v) : 0;
    jv_free(v);
    return 0;
}

int cv__client_model_status(const char *server, const char *name, int64_t version, const char *action, jv *err)
{
    char path[1024], tail[32];
    snprintf(tail, sizeof tail, "/%s", action);
    jv r = jv_invalid(), body = jv_object();
    int rc = registry_call(server, "POST", model_path(path, sizeof path, name, version, tail), body, &r, err);
    jv_free(body);
    jv_free(r);
    return rc;
}

int cv__client_model_route(const char *server, const char *name, const char *which, int64_t version, double share,
                           jv *out, jv *err)
{
    char path[1024], tail[32];
    snprintf(tail, sizeof tail, "/%s", which);
    model_path(path, sizeof path, name, 0, tail);
    if (!version)
        return registry_call(server, "DELETE", path, jv_invalid(), out, err);
    jv body = JV_OBJECT(jv_string("version"), jv_number((double)version));
    if (!strcmp(which, "canary"))
        body = jv_object_set(body, jv_string("share"), jv_number(share));
    int rc = registry_call(server, "PUT", path, body, out, err);
    jv_free(body);
    return rc;
}

/* ------------------------------------------------------------------------ */

int cv__client_is_command(const char *cmd)
{
    return !strcmp(cmd, "deploy") || !strcmp(cmd, "start") || !strcmp(cmd, "get") || !strcmp(cmd, "list") ||
           !strcmp(cmd, "history") || !strcmp(cmd, "events") || !strcmp(cmd, "tasks") || is_control(cmd);
}

static int usage_error(const char *cmd, const char *msg, const char *arg)
{
    fprintf(stderr, "conveyor %s: %s%s\n%s", cmd, msg, arg ? arg : "", usage_client);
    return 2;
}

int cv__client_main(const char *cmd, int argc, char **argv)
{
    struct client c = {.cmd = cmd, .server = getenv("CONVEYOR_SERVER")};
    if (!c.server || !*c.server)
        c.server = "http://127.0.0.1:8080";
    if (!strcmp(cmd, "events"))
        return events_main(&c, argc, argv);
    if (!strcmp(cmd, "tasks"))
        return tasks_main(&c, argc, argv);
    const char *pos = NULL, *input = NULL, *key = NULL, *status = NULL, *ns = NULL, *name = NULL;
    long wait_s = -1, limit = 1000;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_client, stdout);
            return 0;
        } else if (!strcmp(a, "--server")) {
            if (!has)
                return usage_error(cmd, "--server needs a URL", NULL);
            c.server = argv[++i];
        } else if (!strcmp(cmd, "start") && !strcmp(a, "--input")) {
            if (!has)
                return usage_error(cmd, "--input needs a JSON value", NULL);
            input = argv[++i];
            jv v = jv_parse(input);
            int ok = jv_is_valid(v);
            jv_free(v);
            if (!ok)
                return usage_error(cmd, "--input is not valid JSON: ", input);
        } else if (!strcmp(cmd, "start") && !strcmp(a, "--idempotency-key")) {
            if (!has)
                return usage_error(cmd, "--idempotency-key needs a value", NULL);
            key = argv[++i];
        } else if ((!strcmp(cmd, "start") || is_control(cmd)) && !strcmp(a, "--wait")) {
            wait_s = 60;
            if (has && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
                char *end;
                long w = strtol(argv[i + 1], &end, 10);
                if (*end || w > 300)
                    return usage_error(cmd, "--wait takes 0 to 300 seconds, not ", argv[i + 1]);
                wait_s = w;
                i++;
            }
        } else if (!strcmp(cmd, "list") && (!strcmp(a, "--status") || !strcmp(a, "--namespace") ||
                                            !strcmp(a, "--name") || !strcmp(a, "--limit"))) {
            if (!has)
                return usage_error(cmd, "a value is needed after ", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--status"))
                status = v;
            else if (!strcmp(a, "--namespace"))
                ns = v;
            else if (!strcmp(a, "--name"))
                name = v;
            else {
                char *end;
                limit = strtol(v, &end, 10);
                if (*end || limit < 1 || limit > 100000)
                    return usage_error(cmd, "--limit takes 1 to 100000, not ", v);
            }
        } else if ((!strcmp(cmd, "list") || !strcmp(cmd, "history")) && !strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error(cmd, "unknown option ", a);
        } else if (!pos && strcmp(cmd, "list")) {
            pos = a;
        } else {
            return usage_error(cmd, "unexpected argument ", a);
        }
    }
    if (!pos && strcmp(cmd, "list"))
        return usage_error(cmd, !strcmp(cmd, "deploy") ? "FILE is required"
                                : !strcmp(cmd, "start") ? "NAMESPACE/NAME[:VERSION] is required"
                                                        : "ID is required",
                           NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(cmd, "deploy"))
        rc = cmd_deploy(&c, pos);
    else if (!strcmp(cmd, "start"))
        rc = cmd_start(&c, pos, input, key, wait_s);
    else if (!strcmp(cmd, "get"))
        rc = cmd_get(&c, pos, 0, 0);
    else if (!strcmp(cmd, "history"))
        rc = cmd_get(&c, pos, 1, json);
    else if (is_control(cmd))
        rc = cmd_control(&c, pos, wait_s);
    else
        rc = cmd_list(&c, status, ns, name, limit, json);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}
