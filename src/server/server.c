/*
 * server.c — the HTTP API of `conveyor serve` (server.h): libmicrohttpd,
 * the router, request bodies, problem+json, the bounds (requests in flight,
 * waiters, body size) and the request metrics.
 *
 * Threads: libmicrohttpd runs one thread per connection (bounded by its
 * connection limit), so that a synchronous run (?wait=SECONDS) blocks only
 * its own connection. Each thread builds its own jv values and hands them to
 * the engine, which copies what it keeps (jq 1.6's reference counts are not
 * atomic: no jv here is ever shared between two threads). Nothing here
 * touches the store: every read and write goes through the engine.
 * Every route asks cv__authorize (auth.c) first; no route decides access.
 */
#include "server/server.h"
#include "engine/engine_int.h"
#include "common/util.h"
#include "server/web.h"
#include "common/base64.h"
#include "ml/catalog.h"
#include "ml/extract.h"
#include "ml/ml.h"
#include "ml/tabular.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (16u << 20)       /* request bodies larger than this: 413 */
#define CONNECTION_LIMIT 512       /* libmicrohttpd's own bound (threads) */
#define CONNECTION_TIMEOUT_S 30    /* idle connections are closed after this */
#define WAIT_MAX_S 300             /* ?wait=SECONDS at most */
#define LIST_DEFAULT 50
#define LIST_MAX 1000

/* ------------------------------------------------------------------------
 * Metrics: requests by route and status code
 * ---------------------------------------------------------------------- */

enum route {
    R_HEALTH,
    R_READY,
    R_METRICS,
    R_OPENAPI,
    R_WORKFLOWS,
    R_WORKFLOW,
    R_START,
    R_INSTANCES,
    R_INSTANCE,
    R_HISTORY,
    R_CONTROL,
    R_EVENTS,
    R_TASKS,
    R_TASK,
    R_TASK_ACTION,
    R_INBOX,
    R_MODELS,
    R_MODEL,
    R_MODEL_VERSIONS,
    R_MODEL_VERSION,
    R_MODEL_FILE,
    R_MODEL_ACTION,
    R_MODEL_ROUTING,
    R_MODEL_FEEDBACK,
    R_UNKNOWN,
    R_COUNT
};

static const char *const route_names[R_COUNT] = {
    "/health",
    "/ready",
    "/metrics",
    "/v1/openapi.json",
    "/v1/workflows",
    "/v1/workflows/{ns}/{name}/{version}",
    "/v1/workflows/{ns}/{name}/{version}/instances",
    "/v1/instances",
    "/v1/instances/{id}",
    "/v1/instances/{id}/history",
    "/v1/instances/{id}/{action}",
    "/v1/events",
    "/v1/tasks",
    "/v1/tasks/{id}",
    "/v1/tasks/{id}/{action}",
    "/inbox/",
    "/v1/models",
    "/v1/models/{name}",
    "/v1/models/{name}/versions",
    "/v1/models/{name}/versions/{version}",
    "/v1/models/{name}/file",
    "/v1/models/{name}/versions/{version}/{action}",
    "/v1/models/{name}/{routing|canary|shadow}",
    "/v1/models/{name}/feedback",
    "unknown",
};

#define CODES_MAX 16

struct code_count {
    int code;
    long long n;
};

struct cv_server {
    struct MHD_Daemon *d;
    struct cv_engine *e;
    cv_runtime *rt; /* the model metrics (cv_server_options.runtime); may be NULL */
    int max_inflight, max_waiters;
    atomic_int inflight;
    atomic_int waiters;
    atomic_int stopping;
    pthread_mutex_t mlock; /* guards counts */
    struct code_count counts[R_COUNT][CODES_MAX];
};

static void count_request(struct cv_server *s, enum route r, int code)
{
    pthread_mutex_lock(&s->mlock);
    for (int i = 0; i < CODES_MAX; i++) {
        struct code_count *c = &s->counts[r][i];
        if (c->code == code || c->code == 0) {
            c->code = code;
            c->n++;
            break;
        }
    }
    pthread_mutex_unlock(&s->mlock);
}

/* ------------------------------------------------------------------------
 * Requests and responses
 * ---------------------------------------------------------------------- */

/* Per-request state, freed by on_completed. */
struct req {
    char *body;
    size_t len, cap;
    int too_big;
    int counted; /* counted in s->inflight */
    int over;    /* arrived when s->inflight was at its bound */
};

/* One request being answered. */
struct call {
    struct cv_server *s;
    struct MHD_Connection *c;
    const char *url;
    const char *method;
    struct req *r;
    struct cv_caller caller;
    enum route route;
};

static const char *status_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Queues `body` (malloc'd, consumed) with `ctype`; extra headers as
 * name/value pairs ending with NULL. */
static enum MHD_Result send_body(struct call *k, int code, const char *ctype, char *body, size_t len, ...)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    va_list ap;
    va_start(ap, len);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        MHD_add_response_header(resp, name, value);
    }
    va_end(ap);
    enum MHD_Result ret = MHD_queue_response(k->c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    count_request(k->s, k->route, code);
    return ret;
}

/* v consumed; serialised as compact JSON with a final newline. */
static char *dump(jv v, size_t *len)
{
    jv s = jv_dump_string(v, 0);
    const char *t = jv_string_value(s);
    size_t n = strlen(t);
    char *out = malloc(n + 2);
    if (out) {
        memcpy(out, t, n);
        out[n] = '\n';
        out[n + 1] = 0;
        *len = n + 1;
    }
    jv_free(s);
    return out;
}

static enum MHD_Result send_json(struct call *k, int code, jv v)
{
    size_t len = 0;
    char *body = dump(v, &len);
    if (!body)
        return MHD_NO;
    return send_body(k, code, "application/json", body, len, NULL);
}

/*
 * An RFC 9457 problem. `type` NULL = about:blank (title = the status
 * phrase); `extra` (consumed, object or invalid) adds members; a
 * `Retry-After` of `retry` seconds when retry > 0; `allow` adds Allow.
 */
static enum MHD_Result send_problem_ex(struct call *k, int code, const char *type, const char *title,
                                       const char *detail, jv extra, int retry, const char *allow)
{
    jv p = JV_OBJECT(jv_string("type"), jv_string(type ? type : "about:blank"), jv_string("title"),
                     jv_string(title ? title : status_phrase(code)), jv_string("status"), jv_number(code),
                     jv_string("detail"), jv_string(detail ? detail : status_phrase(code)), jv_string("instance"),
                     jv_string(k->url));
    if (jv_get_kind(extra) == JV_KIND_OBJECT)
        p = jv_object_merge(p, extra);
    else
        jv_free(extra);
    size_t len = 0;
    char *body = dump(p, &len);
    if (!body)
        return MHD_NO;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry);
    if (retry > 0)
        return send_body(k, code, "application/problem+json", body, len, MHD_HTTP_HEADER_RETRY_AFTER, ra, NULL);
    if (allow)
        return send_body(k, code, "application/problem+json", body, len, MHD_HTTP_HEADER_ALLOW, allow, NULL);
    return send_body(k, code, "application/problem+json", body, len, NULL);
}

static enum MHD_Result send_problem(struct call *k, int code, const char *detail)
{
    return send_problem_ex(k, code, NULL, NULL, detail, jv_invalid(), 0, NULL);
}

/* A store or engine failure as a problem: the code picks the status. `err`
 * (consumed) is a message string, or anything else. */
static enum MHD_Result send_engine_error(struct call *k, int rc, jv err, const char *what)
{
    char detail[512];
    const char *msg = jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc);
    snprintf(detail, sizeof detail, "%s: %s", what, msg);
    jv_free(err);
    switch (rc) {
    case CV_ENOTFOUND: return send_problem(k, 404, detail);
    case CV_ECONFLICT: return send_problem(k, 409, detail);
    case CV_EINVAL: return send_problem(k, 400, detail);
    case CV_EBUSY:
    case CV_EAGAIN: return send_problem_ex(k, 503, NULL, NULL, detail, jv_invalid(), 1, NULL);
    default: return send_problem(k, 500, detail);
    }
}

/* Asks the seam; answers 403 itself when denied (returns 0 then). */
static int allowed(struct call *k, const char *action, const char *ns, enum MHD_Result *ret)
{
    if (cv__authorize(&k->caller, action, ns) == 0)
        return 1;
    char detail[256];
    snprintf(detail, sizeof detail, "%s is not allowed for %s", action, k->caller.addr);
    *ret = send_problem(k, 403, detail);
    return 0;
}

static const char *header(struct call *k, const char *name)
{
    return MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, name);
}

static const char *query(struct call *k, const char *name)
{
    return MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, name);
}

/* Parses a whole decimal integer in [lo, hi]; returns 0 or -1. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int is_status(const char *s)
{
    static const char *const all[] = {CV_ST_PENDING,   CV_ST_RUNNING, CV_ST_WAITING,  CV_ST_SUSPENDED,
                                      CV_ST_COMPLETED, CV_ST_FAULTED, CV_ST_CANCELLED};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (!strcmp(s, all[i]))
            return 1;
    return 0;
}

static int is_final(const char *s)
{
    return !strcmp(s, CV_ST_COMPLETED) || !strcmp(s, CV_ST_FAULTED) || !strcmp(s, CV_ST_CANCELLED);
}

/* The tasks an instance is at: for every fiber not done, its innermost
 * task frame, as {task: JSON pointer, state: runnable|effect|timer|children}.
 * `state` borrowed (the continuation, engine/state.c's form). */
static jv current_tasks(jv state)
{
    jv out = jv_array();
    if (jv_get_kind(state) != JV_KIND_OBJECT)
        return out;
    jv fibers = jv_object_get(jv_copy(state), jv_string("fibers"));
    if (jv_get_kind(fibers) == JV_KIND_ARRAY) {
        jv_array_foreach(fibers, i, fb)
        {
            jv st = jv_object_get(jv_copy(fb), jv_string("state"));
            jv frames = jv_object_get(jv_copy(fb), jv_string("frames"));
            jv_free(fb);
            if (jv_get_kind(st) == JV_KIND_STRING && strcmp(jv_string_value(st), "done") &&
                jv_get_kind(frames) == JV_KIND_ARRAY) {
                jv ref = jv_invalid();
                jv_array_foreach(frames, j, fr)
                {
                    jv type = jv_object_get(jv_copy(fr), jv_string("type"));
                    if (jv_get_kind(type) == JV_KIND_STRING && !strcmp(jv_string_value(type), "task")) {
                        jv_free(ref);
                        ref = jv_object_get(jv_copy(fr), jv_string("ref"));
                    }
                    jv_free(type);
                    jv_free(fr);
                }
                if (jv_get_kind(ref) == JV_KIND_STRING)
                    out = jv_array_append(out, JV_OBJECT(jv_string("task"), ref, jv_string("state"), jv_copy(st)));
                else
                    jv_free(ref);
            }
            jv_free(st);
            jv_free(frames);
        }
    }
    jv_free(fibers);
    return out;
}

/* The instance as the API shows it: without the continuation and epoch,
 * with the tasks it is at (currentTasks). */
static jv public_instance(jv inst)
{
    jv state = jv_object_get(jv_copy(inst), jv_string("state"));
    inst = jv_object_set(inst, jv_string("currentTasks"), current_tasks(state));
    jv_free(state);
    inst = jv_object_delete(inst, jv_string("state"));
    inst = jv_object_delete(inst, jv_string("epoch"));
    return inst;
}

static void now_iso(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

/* The history event of an API call: who did what, when. */
static jv api_event(struct call *k, const char *action, jv data)
{
    char at[64];
    now_iso(at, sizeof at);
    if (jv_get_kind(data) != JV_KIND_OBJECT) {
        jv_free(data);
        data = jv_object();
    }
    data = jv_object_set(data, jv_string("who"), jv_string(k->caller.addr));
    data = jv_object_set(data, jv_string("action"), jv_string(action));
    data = jv_object_set(data, jv_string("at"), jv_string(at));
    return JV_OBJECT(jv_string("type"), jv_string("api"), jv_string("data"), data);
}

/* ------------------------------------------------------------------------
 * Routes
 * ---------------------------------------------------------------------- */

/* POST /v1/instances/{id}/cancel|suspend|resume: queued to the engine,
 * ordered with the instance's own work; 202 with the id. */
static enum MHD_Result control_instance(struct call *k, const char *id, const char *what, const char *action)
{
    jv err = jv_invalid();
    jv by = jv_object_get(api_event(k, action, jv_object()), jv_string("data"));
    int rc = cv__engine_control(k->s->e, id, what, by, &err);
    if (rc)
        return send_engine_error(k, rc, err, what);
    jv_free(err);
    return send_json(k, 202, JV_OBJECT(jv_string("id"), jv_string(id), jv_string("action"), jv_string(what),
                                       jv_string("status"), jv_string("accepted")));
}

/* ---- POST /v1/events: CloudEvents 1.0 over HTTP (structured, batched, binary) ---- */

/* NULL when `ev` (borrowed) is a CloudEvent we accept, else why not. */
static const char *event_problem(jv ev)
{
    if (jv_get_kind(ev) != JV_KIND_OBJECT)
        return "is not a JSON object";
    static const char *const required[] = {"specversion", "id", "source", "type"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        jv v = jv_object_get(jv_copy(ev), jv_string(required[i]));
        int ok = jv_get_kind(v) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(v)) > 0;
        int sv = ok && i == 0 && strcmp(jv_string_value(v), "1.0");
        jv_free(v);
        if (!ok) {
            static const char *const msgs[] = {"lacks specversion (a string: \"1.0\")", "lacks id (a non-empty string)",
                                               "lacks source (a non-empty string)", "lacks type (a non-empty string)"};
            return msgs[i];
        }
        if (sv)
            return "has a specversion other than \"1.0\"";
    }
    return NULL;
}

struct ce_headers {
    jv ev;
};

static enum MHD_Result collect_ce(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct ce_headers *h = cls;
    (void)kind;
    if (key && value && strlen(key) > 3 && !strncasecmp(key, "ce-", 3)) {
        char name[128];
        size_t n = 0;
        for (const char *p = key + 3; *p && n + 1 < sizeof name; p++)
            name[n++] = (char)tolower((unsigned char)*p);
        name[n] = 0;
        h->ev = jv_object_set(h->ev, jv_string(name), jv_string(value));
    }
    return MHD_YES;
}

static int media_is(const char *ct, const char *type)
{
    size_t n = strcspn(ct, "; ");
    return n == strlen(type) && !strncasecmp(ct, type, n);
}

static enum MHD_Result post_events(struct call *k)
{
    const char *ct = header(k, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *ce_type = header(k, "ce-type");
    jv events;
    char detail[512];
    if (ct && (media_is(ct, "application/cloudevents+json") || media_is(ct, "application/cloudevents-batch+json") ||
               (media_is(ct, "application/json") && !ce_type))) {
        /* structured mode: one event, or a batch (an array) */
        jv v = jv_parse_sized(k->r->body, (int)k->r->len);
        if (!jv_is_valid(v)) {
            jv msg = jv_invalid_get_msg(v);
            snprintf(detail, sizeof detail, "the body is not valid JSON: %s",
                     jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
            jv_free(msg);
            return send_problem(k, 400, detail);
        }
        int batch = media_is(ct, "application/cloudevents-batch+json");
        if (batch && jv_get_kind(v) != JV_KIND_ARRAY) {
            jv_free(v);
            return send_problem(k, 400, "a batch (application/cloudevents-batch+json) is a JSON array of events");
        }
        events = jv_get_kind(v) == JV_KIND_ARRAY ? v : JV_ARRAY(v);
    } else if (ce_type) {
        /* binary mode: attributes in ce-* headers, the body is the data */
        struct ce_headers h = {jv_object()};
        MHD_get_connection_values(k->c, MHD_HEADER_KIND, collect_ce, &h);
        jv ev = h.ev;
        if (ct)
            ev = jv_object_set(ev, jv_string("datacontenttype"), jv_string(ct));
        if (k->r->len) {
            if (!ct || media_is(ct, "application/json") || (strstr(ct, "+json") && strcspn(ct, ";") > 5)) {
                jv data = jv_parse_sized(k->r->body, (int)k->r->len);
                if (!jv_is_valid(data)) {
                    jv_free(data);
                    jv_free(ev);
                    return send_problem(k, 400, "the body is declared JSON but does not parse");
                }
                ev = jv_object_set(ev, jv_string("data"), data);
            } else {
                jv data = jv_string_sized(k->r->body, (int)k->r->len); /* replaces invalid UTF-8 */
                ev = jv_object_set(ev, jv_string("data"), data);
            }
        }
        events = JV_ARRAY(ev);
    } else {
        return send_problem(k, 415,
                            "events are sent as application/cloudevents+json (one event), "
                            "application/cloudevents-batch+json (an array), or in binary mode with ce-* headers");
    }
    int n = jv_array_length(jv_copy(events));
    if (n == 0) {
        jv_free(events);
        return send_problem(k, 400, "the batch holds no event");
    }
    jv_array_foreach(events, i, ev)
    {
        const char *why = event_problem(ev);
        jv_free(ev);
        if (why) {
            if (n == 1)
                snprintf(detail, sizeof detail, "the event %s", why);
            else
                snprintf(detail, sizeof detail, "events[%d] %s", i, why);
            jv_free(events);
            return send_problem(k, 400, detail);
        }
    }
    jv ids = jv_array();
    jv_array_foreach(events, i, ev)
    {
        ids = jv_array_append(ids, jv_object_get(ev, jv_string("id")));
    }
    jv seqs = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_publish(k->s->e, events, &seqs, &err);
    if (rc) {
        jv_free(ids);
        return send_engine_error(k, rc, err, "publish");
    }
    jv_free(err);
    jv items = jv_array();
    jv_array_foreach(ids, i, id)
    {
        items = jv_array_append(items, JV_OBJECT(jv_string("id"), id, jv_string("seq"), jv_array_get(jv_copy(seqs), i)));
    }
    jv_free(ids);
    jv_free(seqs);
    return send_json(k, 202, JV_OBJECT(jv_string("accepted"), jv_number(n), jv_string("events"), items));
}

static char *task_metrics(struct call *k);

static enum MHD_Result get_metrics(struct call *k)
{
    struct cv_engine_stats st;
    cv__engine_stats(k->s->e, &st);
    size_t cap = 8192, len = 0;
    char *out = malloc(cap);
    if (!out)
        return MHD_NO;
#define EMIT(...)                                                                                                  \
    do {                                                                                                           \
        int n_ = snprintf(out + len, cap - len, __VA_ARGS__);                                                      \
        if (n_ > 0 && (size_t)n_ >= cap - len) {                                                                   \
            char *g_ = realloc(out, cap * 2 + (size_t)n_);                                                         \
            if (!g_) {                                                                                             \
                free(out);                                                                                         \
                return MHD_NO;                                                                                     \
            }                                                                                                      \
            out = g_;                                                                                              \
            cap = cap * 2 + (size_t)n_;                                                                            \
            n_ = snprintf(out + len, cap - len, __VA_ARGS__);                                                      \
        }                                                                                                          \
        if (n_ > 0)                                                                                                \
            len += (size_t)n_;                                                                                     \
    } while (0)
    EMIT("# HELP conveyor_instances_total Instances that ended in this process, by status.\n"
         "# TYPE conveyor_instances_total counter\n"
         "conveyor_instances_total{status=\"completed\"} %lld\n"
         "conveyor_instances_total{status=\"faulted\"} %lld\n"
         "conveyor_instances_total{status=\"cancelled\"} %lld\n",
         st.completed, st.faulted, st.cancelled);
    EMIT("# HELP conveyor_instances_running Instances the engine holds now.\n"
         "# TYPE conveyor_instances_running gauge\n"
         "conveyor_instances_running %lld\n",
         st.running);
    EMIT("# HELP conveyor_instances_resumed_total Unfinished instances resumed at start.\n"
         "# TYPE conveyor_instances_resumed_total counter\n"
         "conveyor_instances_resumed_total %lld\n",
         st.resumed);
    EMIT("# HELP conveyor_checkpoints_total Checkpoints written.\n"
         "# TYPE conveyor_checkpoints_total counter\n"
         "conveyor_checkpoints_total %lld\n",
         st.checkpoints);
    EMIT("# HELP conveyor_checkpoint_batches_total Checkpoint transactions (group commits).\n"
         "# TYPE conveyor_checkpoint_batches_total counter\n"
         "conveyor_checkpoint_batches_total %lld\n",
         st.batches);
    EMIT("# HELP conveyor_queue_depth Work waiting: checkpoints and starts for the commit thread, instances for "
         "their worker.\n"
         "# TYPE conveyor_queue_depth gauge\n"
         "conveyor_queue_depth{queue=\"commit\"} %lld\n"
         "conveyor_queue_depth{queue=\"ready\"} %lld\n",
         st.commit_queue, st.ready);
    EMIT("# HELP conveyor_cluster_instances_total Several nodes (docs/cluster.md): instances this node took from "
         "the store's leases, and dropped because another node took them.\n"
         "# TYPE conveyor_cluster_instances_total counter\n"
         "conveyor_cluster_instances_total{event=\"taken\"} %lld\n"
         "conveyor_cluster_instances_total{event=\"lost\"} %lld\n",
         st.taken, st.lost);
    EMIT("# HELP conveyor_cluster_lease_lapses_total Times this node's leases lapsed unrenewed (a pause, a lost "
         "database).\n"
         "# TYPE conveyor_cluster_lease_lapses_total counter\n"
         "conveyor_cluster_lease_lapses_total %lld\n",
         st.lapses);
    EMIT("# HELP conveyor_effects_in_flight HTTP calls, child processes and fetches running.\n"
         "# TYPE conveyor_effects_in_flight gauge\n"
         "conveyor_effects_in_flight %lld\n",
         st.effects_in_flight);
    {
        long long resident = 0, evicted = 0, reloads = 0;
        cv__engine_residency(k->s->e, &resident, &evicted, &reloads);
        EMIT("# HELP conveyor_instances_in_memory Unfinished instances held by the workers (resident) or kept "
             "only in the store while they wait on a timer or an event (evicted).\n"
             "# TYPE conveyor_instances_in_memory gauge\n"
             "conveyor_instances_in_memory{where=\"resident\"} %lld\n"
             "conveyor_instances_in_memory{where=\"evicted\"} %lld\n",
             resident, evicted);
        EMIT("# HELP conveyor_instance_reloads_total Evicted instances loaded again (timer, event, control).\n"
             "# TYPE conveyor_instance_reloads_total counter\n"
             "conveyor_instance_reloads_total %lld\n",
             reloads);
    }
    EMIT("# HELP conveyor_checkpoint_batch_size Checkpoints per group-commit transaction.\n"
         "# TYPE conveyor_checkpoint_batch_size histogram\n");
    {
        long long cum = 0;
        for (int b = 0; b < CV_BATCH_BUCKETS; b++) {
            cum += st.batch_size[b];
            EMIT("conveyor_checkpoint_batch_size_bucket{le=\"%d\"} %lld\n", 1 << b, cum);
        }
        cum += st.batch_size[CV_BATCH_BUCKETS];
        EMIT("conveyor_checkpoint_batch_size_bucket{le=\"+Inf\"} %lld\n"
             "conveyor_checkpoint_batch_size_sum %lld\n"
             "conveyor_checkpoint_batch_size_count %lld\n",
             cum, st.checkpoints, st.batches);
    }
    EMIT("# HELP conveyor_checkpoint_commit_seconds Time to write one group commit durably.\n"
         "# TYPE conveyor_checkpoint_commit_seconds histogram\n");
    {
        long long cum = 0;
        for (int b = 0; b < CV_COMMIT_BUCKETS; b++) {
            cum += st.commit_ms[b];
            EMIT("conveyor_checkpoint_commit_seconds_bucket{le=\"%g\"} %lld\n", cv__commit_buckets_ms[b] / 1000.0,
                 cum);
        }
        cum += st.commit_ms[CV_COMMIT_BUCKETS];
        EMIT("conveyor_checkpoint_commit_seconds_bucket{le=\"+Inf\"} %lld\n"
             "conveyor_checkpoint_commit_seconds_sum %.6f\n"
             "conveyor_checkpoint_commit_seconds_count %lld\n",
             cum, st.commit_ms_sum / 1000.0, cum);
    }
    {
        struct cv_task_stats ts;
        cv__engine_task_stats(k->s->e, &ts);
        EMIT("# HELP conveyor_task_duration_seconds Tasks that ended (completed or faulted), by task type.\n"
             "# TYPE conveyor_task_duration_seconds histogram\n");
        for (int t = 0; t < CV_TASK_KINDS; t++) {
            long long cum = 0;
            for (int b = 0; b < CV_TASK_BUCKETS; b++) {
                cum += ts.count[t][b];
                EMIT("conveyor_task_duration_seconds_bucket{type=\"%s\",le=\"%g\"} %lld\n", cv__task_kind_names[t],
                     cv__task_buckets_s[b], cum);
            }
            cum += ts.count[t][CV_TASK_BUCKETS];
            EMIT("conveyor_task_duration_seconds_bucket{type=\"%s\",le=\"+Inf\"} %lld\n"
                 "conveyor_task_duration_seconds_sum{type=\"%s\"} %.6f\n"
                 "conveyor_task_duration_seconds_count{type=\"%s\"} %lld\n",
                 cv__task_kind_names[t], cum, cv__task_kind_names[t], ts.sum_s[t], cv__task_kind_names[t], cum);
        }
    }
    {
        char *tm = task_metrics(k);
        if (tm) {
            EMIT("%s", tm);
            free(tm);
        }
    }
    {
        char *mm = cv__models_metrics(k->s->rt ? k->s->rt->models : NULL);
        if (mm) {
            EMIT("%s", mm);
            free(mm);
        }
    }
    EMIT("# HELP conveyor_http_requests_in_flight Requests being handled.\n"
         "# TYPE conveyor_http_requests_in_flight gauge\n"
         "conveyor_http_requests_in_flight %d\n",
         atomic_load(&k->s->inflight));
    EMIT("# HELP conveyor_http_requests_total HTTP requests answered, by route and status code.\n"
         "# TYPE conveyor_http_requests_total counter\n");
    /* this request is counted once its response is queued: count it first */
    count_request(k->s, k->route, 200);
    pthread_mutex_lock(&k->s->mlock);
    for (int r = 0; r < R_COUNT; r++)
        for (int i = 0; i < CODES_MAX && k->s->counts[r][i].code; i++)
            EMIT("conveyor_http_requests_total{route=\"%s\",code=\"%d\"} %lld\n", route_names[r],
                 k->s->counts[r][i].code, k->s->counts[r][i].n);
    pthread_mutex_unlock(&k->s->mlock);
#undef EMIT
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, out, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(out);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    enum MHD_Result ret = MHD_queue_response(k->c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result get_openapi(struct call *k)
{
    size_t n = strlen(cv__server_openapi);
    char *b = malloc(n + 1);
    if (!b)
        return MHD_NO;
    memcpy(b, cv__server_openapi, n + 1);
    return send_body(k, 200, "application/json", b, n, NULL);
}

/* Content types a workflow document may come as (parameters ignored). */
static int document_type(const char *ct)
{
    if (!ct)
        return 1; /* none given: try to read it */
    static const char *const ok[] = {"application/yaml", "application/x-yaml", "text/yaml", "application/json",
                                     "text/plain"};
    size_t n = strcspn(ct, "; ");
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (strlen(ok[i]) == n && !strncasecmp(ct, ok[i], n))
            return 1;
    return 0;
}

static enum MHD_Result post_workflow(struct call *k)
{
    enum MHD_Result ret;
    if (!allowed(k, "workflow.deploy", NULL, &ret))
        return ret;
    const char *ct = header(k, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!document_type(ct)) {
        char detail[256];
        snprintf(detail, sizeof detail,
                 "a workflow document is sent as application/yaml, application/x-yaml, text/yaml, "
                 "application/json or text/plain, not %.100s",
                 ct);
        return send_problem(k, 415, detail);
    }
    if (!k->r->len)
        return send_problem(k, 400, "the body must hold a workflow document (YAML or JSON)");
    jv out = jv_invalid();
    int rc = cv__engine_deploy(k->s->e, k->r->body, k->r->len, &out);
    if (rc == CV_EPARSE || rc == CV_EVALIDATE) {
        jv errors = jv_array();
        if (jv_get_kind(out) == JV_KIND_ARRAY) {
            jv_array_foreach(out, i, d)
            {
                char *s = cv_diag_format(jv_copy(d));
                jv item = jv_get_kind(d) == JV_KIND_OBJECT ? d : JV_OBJECT(jv_string("detail"), d);
                if (s)
                    item = jv_object_set(item, jv_string("message"), jv_string(s));
                free(s);
                errors = jv_array_append(errors, item);
            }
        }
        jv_free(out);
        return send_problem_ex(k, 400, "urn:conveyor:problem:invalid-workflow", "Invalid workflow document",
                               rc == CV_EPARSE ? "the document could not be parsed"
                                               : "the document is not a valid workflow",
                               JV_OBJECT(jv_string("errors"), errors), 0, NULL);
    }
    if (rc)
        return send_engine_error(k, rc, out, "deploy");
    return send_json(k, 201, out);
}

static enum MHD_Result list_workflows(struct call *k)
{
    enum MHD_Result ret;
    if (!allowed(k, "workflow.read", NULL, &ret))
        return ret;
    jv out = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_list_workflows(k->s->e, &out, &err);
    if (rc)
        return send_engine_error(k, rc, err, "list workflows");
    jv_free(err);
    return send_json(k, 200, JV_OBJECT(jv_string("items"), out));
}

static enum MHD_Result get_workflow(struct call *k, const char *ns, const char *name, const char *version)
{
    enum MHD_Result ret;
    if (!allowed(k, "workflow.read", ns, &ret))
        return ret;
    jv out = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_get_workflow(k->s->e, ns, name, version, &out, &err);
    if (rc)
        return send_engine_error(k, rc, err, "workflow");
    jv_free(err);
    return send_json(k, 200, out);
}

/* Waits for an instance in slices, so that a stopping server ends it. */
static jv wait_for(struct cv_server *s, const char *id, long seconds)
{
    int64_t deadline = cv__now_ms() + seconds * 1000;
    jv out = jv_invalid();
    for (;;) {
        int64_t left = deadline - cv__now_ms();
        int slice = left > 250 ? 250 : (left > 0 ? (int)left : 0);
        jv_free(out);
        out = jv_invalid();
        if (cv__engine_wait(s->e, id, slice, &out))
            return jv_invalid();
        jv st = jv_object_get(jv_copy(out), jv_string("status"));
        int done = jv_get_kind(st) == JV_KIND_STRING && is_final(jv_string_value(st));
        jv_free(st);
        if (done || cv__now_ms() >= deadline || atomic_load(&s->stopping))
            return out;
    }
}

static enum MHD_Result start_instance(struct call *k, const char *ns, const char *name, const char *version)
{
    enum MHD_Result ret;
    if (!allowed(k, "instance.start", ns, &ret))
        return ret;
    long wait_s = -1;
    const char *w = query(k, "wait");
    if (w && parse_int(w, 0, WAIT_MAX_S, &wait_s))
        return send_problem(k, 400, "wait must be a whole number of seconds from 0 to 300");
    const char *ct = header(k, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && k->r->len) {
        size_t n = strcspn(ct, "; ");
        if (!(n == 16 && !strncasecmp(ct, "application/json", n)) && !(n == 10 && !strncasecmp(ct, "text/plain", n)))
            return send_problem(k, 415, "the input is sent as application/json");
    }
    jv input;
    size_t i = 0;
    while (i < k->r->len && strchr(" \t\r\n", k->r->body[i]))
        i++;
    if (i == k->r->len) {
        input = jv_object();
    } else {
        input = jv_parse_sized(k->r->body, (int)k->r->len);
        if (!jv_is_valid(input)) {
            jv msg = jv_invalid_get_msg(input);
            char detail[512];
            snprintf(detail, sizeof detail, "the input is not valid JSON: %s",
                     jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
            jv_free(msg);
            return send_problem(k, 400, detail);
        }
    }
    const char *key = header(k, "Idempotency-Key");
    if (key && (!*key || strlen(key) > 200)) {
        jv_free(input);
        return send_problem(k, 400, "Idempotency-Key must hold 1 to 200 characters");
    }
    int waiting = 0;
    if (wait_s > 0) {
        if (atomic_fetch_add(&k->s->waiters, 1) >= k->s->max_waiters) {
            atomic_fetch_sub(&k->s->waiters, 1);
            jv_free(input);
            return send_problem_ex(k, 429, NULL, NULL, "too many synchronous runs at once; retry later",
                                   jv_invalid(), 1, NULL);
        }
        waiting = 1;
    }
    char id[64] = "";
    int existed = 0;
    jv err = jv_invalid();
    /* who started it goes into the history with the start, before anything
     * the instance does */
    jv who = JV_ARRAY(api_event(k, "instance.start",
                                key ? JV_OBJECT(jv_string("idempotencyKey"), jv_string(key)) : jv_object()));
    int rc = cv__engine_start_instance_ex(k->s->e, ns, name, version, input, key, who, id, &existed, &err);
    if (rc) {
        if (waiting)
            atomic_fetch_sub(&k->s->waiters, 1);
        return send_engine_error(k, rc, err, "start");
    }
    jv_free(err);
    if (waiting) {
        jv res = wait_for(k->s, id, wait_s);
        atomic_fetch_sub(&k->s->waiters, 1);
        if (!jv_is_valid(res))
            return send_problem(k, 500, "the instance could not be waited for");
        jv st = jv_object_get(jv_copy(res), jv_string("status"));
        int done = jv_get_kind(st) == JV_KIND_STRING && is_final(jv_string_value(st));
        jv_free(st);
        if (done)
            return send_json(k, 200, res);
        jv_free(res);
    }
    /* the current status (pending for a new one) */
    jv inst = jv_invalid();
    err = jv_invalid();
    const char *status = CV_ST_PENDING;
    jv stv = jv_invalid();
    if (cv__engine_get_instance(k->s->e, id, &inst, &err) == 0) {
        stv = jv_object_get(inst, jv_string("status"));
        if (jv_get_kind(stv) == JV_KIND_STRING)
            status = jv_string_value(stv);
    } else {
        jv_free(inst);
    }
    jv_free(err);
    jv body = JV_OBJECT(jv_string("id"), jv_string(id), jv_string("status"), jv_string(status));
    if (existed)
        body = jv_object_set(body, jv_string("existed"), jv_true());
    jv_free(stv);
    return send_json(k, waiting ? 202 : existed ? 200 : 201, body);
}

static enum MHD_Result get_instance(struct call *k, const char *id)
{
    enum MHD_Result ret;
    if (!allowed(k, "instance.read", NULL, &ret))
        return ret;
    jv out = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_get_instance(k->s->e, id, &out, &err);
    if (rc)
        return send_engine_error(k, rc, err, "instance");
    jv_free(err);
    return send_json(k, 200, public_instance(out));
}

static enum MHD_Result list_instances(struct call *k)
{
    enum MHD_Result ret;
    const char *ns = query(k, "namespace"), *name = query(k, "name"), *status = query(k, "status");
    const char *after = query(k, "after"), *lim = query(k, "limit");
    if (!allowed(k, "instance.read", ns, &ret))
        return ret;
    long limit = LIST_DEFAULT;
    if (lim && parse_int(lim, 1, LIST_MAX, &limit))
        return send_problem(k, 400, "limit must be a whole number from 1 to 1000");
    if (status && !is_status(status))
        return send_problem(k, 400,
                            "status must be one of pending, running, waiting, suspended, completed, faulted, "
                            "cancelled");
    if (after && !*after)
        after = NULL;
    jv filter = jv_object();
    if (status)
        filter = jv_object_set(filter, jv_string("status"), jv_string(status));
    if (ns && *ns)
        filter = jv_object_set(filter, jv_string("namespace"), jv_string(ns));
    if (name && *name)
        filter = jv_object_set(filter, jv_string("name"), jv_string(name));
    jv out = jv_invalid(), next = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_list_instances(k->s->e, filter, (int)limit, after, &out, &next, &err);
    if (rc) {
        jv_free(next);
        return send_engine_error(k, rc, err, "list instances");
    }
    jv_free(err);
    if (!jv_is_valid(next)) {
        jv_free(next);
        next = jv_null();
    }
    return send_json(k, 200, JV_OBJECT(jv_string("items"), out, jv_string("next"), next));
}

static enum MHD_Result get_history(struct call *k, const char *id)
{
    enum MHD_Result ret;
    if (!allowed(k, "instance.read", NULL, &ret))
        return ret;
    jv out = jv_invalid(), err = jv_invalid();
    int rc = cv__engine_history(k->s->e, id, &out, &err);
    if (rc)
        return send_engine_error(k, rc, err, "history");
    jv_free(err);
    return send_json(k, 200, JV_OBJECT(jv_string("id"), jv_string(id), jv_string("items"), out));
}

/* ------------------------------------------------------------------------
 * Review tasks (docs/tasks.md): the inbox API. The rules (who may claim,
 * complete...) are the store's (src/store/tasks.c); these routes find the
 * acting user, ask the seam, and map the store's answers to HTTP.
 * ---------------------------------------------------------------------- */

#define CLAIM_MS (30LL * 60 * 1000) /* a claim lasts 30 minutes, renewed by claiming again */

/* Who acts: the authenticated caller once tokens exist; until then the
 * X-Conveyor-User header, else the body's "user" (borrowed). NULL when
 * nobody is named. The result lives as long as k and body. */
static const char *task_user(struct call *k, jv body, char *buf, size_t n)
{
    if (k->caller.principal && *k->caller.principal)
        return k->caller.principal;
    const char *h = header(k, "X-Conveyor-User");
    if (h && *h) {
        snprintf(buf, n, "%s", h);
        return buf;
    }
    if (jv_get_kind(body) == JV_KIND_OBJECT) {
        jv u = jv_object_get(jv_copy(body), jv_string("user"));
        int ok = jv_get_kind(u) == JV_KIND_STRING && *jv_string_value(u);
        if (ok)
            snprintf(buf, n, "%s", jv_string_value(u));
        jv_free(u);
        if (ok)
            return buf;
    }
    return NULL;
}

/* A store answer for a task as a problem: field errors (err an object
 * {detail, errors}) are 422 with the `errors` array. err consumed. */
static enum MHD_Result send_task_error(struct call *k, int rc, jv err, const char *what)
{
    if (jv_get_kind(err) == JV_KIND_OBJECT) {
        jv detail = jv_object_get(jv_copy(err), jv_string("detail"));
        jv errors = jv_object_get(err, jv_string("errors"));
        char d[512];
        snprintf(d, sizeof d, "%s", jv_get_kind(detail) == JV_KIND_STRING ? jv_string_value(detail) : what);
        jv_free(detail);
        return send_problem_ex(k, 422, NULL, NULL, d, JV_OBJECT(jv_string("errors"), errors), 0, NULL);
    }
    if (rc == CV_EINVAL) {
        char d[512];
        snprintf(d, sizeof d, "%s: %s", what, jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "invalid");
        jv_free(err);
        return send_problem(k, 422, d);
    }
    return send_engine_error(k, rc, err, what);
}

/* The body as a JSON object (an empty body is {}); answers 400 itself. */
static int body_object(struct call *k, jv *out, enum MHD_Result *ret)
{
    if (!k->r->len) {
        *out = jv_object();
        return 1;
    }
    jv v = jv_parse_sized(k->r->body, (int)k->r->len);
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        *ret = send_problem(k, 400, "the body must be a JSON object");
        return 0;
    }
    *out = v;
    return 1;
}

/* One store operation on tasks, run under the engine's store lock. */
struct task_op {
    int what; /* TOP_* */
    const char *id, *user;
    jv arg;      /* consumed by the op (body, filter, task) */
    int limit;
    const char *after;
    int64_t now, retention_ms;
    jv out, next, err;
    int existed;
};

enum { TOP_GET, TOP_LIST, TOP_PUT, TOP_CLAIM, TOP_RELEASE, TOP_COMPLETE, TOP_REASSIGN, TOP_STATS };

static int task_op_run(cv_store *st, void *ctx)
{
    struct task_op *o = ctx;
    switch (o->what) {
    case TOP_GET: return cv_store_get_task(st, o->id, &o->out, &o->err);
    case TOP_LIST: return cv_store_list_tasks(st, o->arg, o->limit, o->after, &o->out, &o->next, &o->err);
    case TOP_PUT: {
        jv t = jv_copy(o->arg);
        int rc = cv_store_put_task(st, o->arg, &o->existed, &o->err);
        if (!rc && o->existed) {
            jv id = jv_object_get(t, jv_string("id"));
            rc = cv_store_get_task(st, jv_string_value(id), &o->out, &o->err);
            jv_free(id);
        } else if (!rc) {
            o->out = t;
        } else {
            jv_free(t);
        }
        return rc;
    }
    case TOP_CLAIM: return cv_store_task_claim(st, o->id, o->user, o->now, CLAIM_MS, &o->out, &o->err);
    case TOP_RELEASE: return cv_store_task_release(st, o->id, o->user, o->now, &o->out, &o->err);
    case TOP_COMPLETE:
        return cv_store_task_complete(st, o->id, o->user, o->arg, o->now, o->retention_ms, &o->out, &o->err);
    case TOP_REASSIGN: return cv_store_task_reassign(st, o->id, o->user, o->arg, o->now, &o->out, &o->err);
    case TOP_STATS: return cv_store_task_stats(st, &o->out, &o->err);
    }
    return CV_EINVAL;
}

static int task_op(struct call *k, struct task_op *o)
{
    o->out = jv_invalid();
    o->next = jv_invalid();
    o->err = jv_invalid();
    o->now = cv__wall_ms();
    o->retention_ms = cv__engine_event_retention_ms(k->s->e);
    return cv__engine_with_store(k->s->e, task_op_run, o, o->what == TOP_COMPLETE);
}

/* The namespace of a task's workflow into buf ("" for standalone tasks). */
static const char *task_ns(jv task, char *buf, size_t n)
{
    jv wf = jv_object_get(jv_copy(task), jv_string("workflow"));
    jv ns = jv_get_kind(wf) == JV_KIND_OBJECT ? jv_object_get(wf, jv_string("namespace")) : (jv_free(wf), jv_null());
    snprintf(buf, n, "%s", jv_get_kind(ns) == JV_KIND_STRING ? jv_string_value(ns) : "");
    jv_free(ns);
    return buf;
}

static enum MHD_Result list_tasks(struct call *k)
{
    enum MHD_Result ret;
    static const char *const keys[] = {"status", "role", "assignee", "namespace", "name", "instance"};
    if (!allowed(k, "task.read", query(k, "namespace"), &ret))
        return ret;
    long limit = LIST_DEFAULT;
    const char *lim = query(k, "limit"), *status = query(k, "status");
    if (lim && parse_int(lim, 1, LIST_MAX, &limit))
        return send_problem(k, 400, "limit must be a whole number from 1 to 1000");
    if (status && *status && strcmp(status, CV_TASK_OPEN) && strcmp(status, CV_TASK_CLAIMED) &&
        strcmp(status, CV_TASK_COMPLETED) && strcmp(status, CV_TASK_CANCELLED) && strcmp(status, CV_TASK_ESCALATED))
        return send_problem(k, 400, "status must be one of open, claimed, completed, cancelled, escalated");
    jv filter = jv_object();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = query(k, keys[i]);
        if (v && *v)
            filter = jv_object_set(filter, jv_string(keys[i]), jv_string(v));
    }
    struct task_op o = {.what = TOP_LIST, .arg = filter, .limit = (int)limit, .after = query(k, "after")};
    int rc = task_op(k, &o);
    if (rc)
        return send_task_error(k, rc, o.err, "list tasks");
    jv_free(o.err);
    return send_json(k, 200, JV_OBJECT(jv_string("items"), o.out, jv_string("next"), o.next));
}

static enum MHD_Result post_task(struct call *k)
{
    enum MHD_Result ret;
    jv body;
    if (!body_object(k, &body, &ret))
        return ret;
    char ns[256];
    if (!allowed(k, "task.create", *task_ns(body, ns, sizeof ns) ? ns : NULL, &ret)) {
        jv_free(body);
        return ret;
    }
    jv inst = jv_object_get(jv_copy(body), jv_string("instance"));
    int has_inst = jv_get_kind(inst) != JV_KIND_INVALID && jv_get_kind(inst) != JV_KIND_NULL;
    jv_free(inst);
    if (has_inst) {
        jv_free(body);
        return send_problem(k, 422,
                            "a task raised through the API belongs to no instance (tasks of instances are "
                            "opened by their workflow's `call: review`)");
    }
    jv task, err = jv_invalid();
    int rc = cv_task_new(body, cv__wall_ms(), &task, &err);
    if (rc)
        return send_task_error(k, rc, err, "task");
    struct task_op o = {.what = TOP_PUT, .arg = task};
    rc = task_op(k, &o);
    if (rc)
        return send_task_error(k, rc, o.err, "task");
    jv_free(o.err);
    return send_json(k, o.existed ? 200 : 201, o.out);
}

static enum MHD_Result get_task(struct call *k, const char *id)
{
    enum MHD_Result ret;
    struct task_op o = {.what = TOP_GET, .id = id};
    int rc = task_op(k, &o);
    if (rc)
        return send_task_error(k, rc, o.err, "task");
    jv_free(o.err);
    char ns[256];
    if (!allowed(k, "task.read", *task_ns(o.out, ns, sizeof ns) ? ns : NULL, &ret)) {
        jv_free(o.out);
        return ret;
    }
    return send_json(k, 200, o.out);
}

/* POST /v1/tasks/{id}/claim|release|complete|reassign */
static enum MHD_Result task_action(struct call *k, const char *id, const char *action)
{
    enum MHD_Result ret;
    int what = !strcmp(action, "claim")      ? TOP_CLAIM
               : !strcmp(action, "release")  ? TOP_RELEASE
               : !strcmp(action, "complete") ? TOP_COMPLETE
                                             : TOP_REASSIGN;
    jv body;
    if (!body_object(k, &body, &ret))
        return ret;
    struct task_op g = {.what = TOP_GET, .id = id};
    int rc = task_op(k, &g);
    if (rc) {
        jv_free(body);
        return send_task_error(k, rc, g.err, "task");
    }
    jv_free(g.err);
    char ns[256], act[32], ubuf[256];
    snprintf(act, sizeof act, "task.%s", action);
    task_ns(g.out, ns, sizeof ns);
    jv_free(g.out);
    if (!allowed(k, act, *ns ? ns : NULL, &ret)) {
        jv_free(body);
        return ret;
    }
    const char *user = task_user(k, body, ubuf, sizeof ubuf);
    if (!user && what != TOP_REASSIGN) {
        jv_free(body);
        return send_problem(k, 400, "who acts? name the user in the X-Conveyor-User header or the body's \"user\"");
    }
    if (jv_get_kind(body) == JV_KIND_OBJECT)
        body = jv_object_delete(body, jv_string("user"));
    if (what == TOP_CLAIM || what == TOP_RELEASE) {
        jv_free(body);
        body = jv_null();
    }
    struct task_op o = {.what = what, .id = id, .user = user, .arg = body};
    rc = task_op(k, &o);
    if (rc)
        return send_task_error(k, rc, o.err, action);
    jv_free(o.err);
    return send_json(k, 200, o.out);
}

/* Writes a Prometheus label value (escaped) into buf. */
static const char *label(const char *v, char *buf, size_t n)
{
    size_t j = 0;
    for (; *v && j + 3 < n; v++) {
        if (*v == '"' || *v == '\\') {
            buf[j++] = '\\';
            buf[j++] = *v;
        } else if (*v == '\n') {
            buf[j++] = '\\';
            buf[j++] = 'n';
        } else {
            buf[j++] = *v;
        }
    }
    buf[j] = 0;
    return buf;
}

/* The task metrics as Prometheus text (malloc'd), or NULL. */
static char *task_metrics(struct call *k)
{
    struct task_op o = {.what = TOP_STATS};
    if (task_op(k, &o)) {
        jv_free(o.err);
        return NULL;
    }
    jv_free(o.err);
    jv st = o.out;
    jv text = jv_string("");
    char l[512];
    text = jv_string_append_str(text, "# HELP conveyor_review_tasks_open Review tasks open (open, claimed or "
                                      "escalated), by role.\n# TYPE conveyor_review_tasks_open gauge\n");
    jv open = jv_object_get(jv_copy(st), jv_string("open"));
    jv_object_foreach(open, key, n)
    {
        text = jv_string_concat(text, jv_string_fmt("conveyor_review_tasks_open{role=\"%s\"} %g\n",
                                                    label(jv_string_value(key), l, sizeof l), jv_number_value(n)));
        jv_free(key);
        jv_free(n);
    }
    jv_free(open);
    text = jv_string_append_str(text, "# HELP conveyor_review_tasks_completed_total Review tasks completed, by "
                                      "workflow (\"\" for tasks raised through the API).\n"
                                      "# TYPE conveyor_review_tasks_completed_total counter\n");
    jv done = jv_object_get(jv_copy(st), jv_string("completed"));
    jv_object_foreach(done, key, n)
    {
        text = jv_string_concat(text, jv_string_fmt("conveyor_review_tasks_completed_total{workflow=\"%s\"} %g\n",
                                                    label(jv_string_value(key), l, sizeof l), jv_number_value(n)));
        jv_free(key);
        jv_free(n);
    }
    jv_free(done);
    text = jv_string_append_str(text, "# HELP conveyor_review_ratio Instances that opened a review task, over the "
                                      "instances of the workflow.\n# TYPE conveyor_review_ratio gauge\n");
    jv rev = jv_object_get(jv_copy(st), jv_string("reviewed")), all = jv_object_get(jv_copy(st), jv_string("instances"));
    jv_object_foreach(rev, key, n)
    {
        jv total = jv_object_get(jv_copy(all), jv_copy(key));
        double t = jv_get_kind(total) == JV_KIND_NUMBER ? jv_number_value(total) : 0;
        if (t > 0)
            text = jv_string_concat(text, jv_string_fmt("conveyor_review_ratio{workflow=\"%s\"} %g\n",
                                                        label(jv_string_value(key), l, sizeof l),
                                                        jv_number_value(n) / t));
        jv_free(total);
        jv_free(key);
        jv_free(n);
    }
    jv_free(rev);
    jv_free(all);
    text = jv_string_append_str(
        text, "# HELP conveyor_model_reviews_total Model predictions a reviewer confirmed or changed, by model.\n"
              "# TYPE conveyor_model_reviews_total counter\n"
              "# HELP conveyor_model_overrides_total Model predictions a reviewer changed, by model.\n"
              "# TYPE conveyor_model_overrides_total counter\n"
              "# HELP conveyor_model_override_ratio Overrides over reviews, by model.\n"
              "# TYPE conveyor_model_override_ratio gauge\n");
    jv models = jv_object_get(st, jv_string("models"));
    jv_object_foreach(models, key, m)
    {
        jv r = jv_object_get(jv_copy(m), jv_string("reviewed")), ov = jv_object_get(m, jv_string("overridden"));
        double rn = jv_number_value(r), on = jv_number_value(ov);
        label(jv_string_value(key), l, sizeof l);
        text = jv_string_concat(text, jv_string_fmt("conveyor_model_reviews_total{model=\"%s\"} %g\n"
                                                    "conveyor_model_overrides_total{model=\"%s\"} %g\n"
                                                    "conveyor_model_override_ratio{model=\"%s\"} %g\n",
                                                    l, rn, l, on, l, rn > 0 ? on / rn : 0));
        jv_free(r);
        jv_free(ov);
        jv_free(key);
    }
    jv_free(models);
    char *out = strdup(jv_string_value(text));
    jv_free(text);
    return out;
}

/* GET /inbox/...: the reviewer's web inbox, built into the binary (web.h). */
static enum MHD_Result get_inbox(struct call *k, const char *rest)
{
    enum MHD_Result ret;
    if (!allowed(k, "inbox.read", NULL, &ret))
        return ret;
    const struct cv_web_file *f = cv__web_find(rest && *rest ? rest : "index.html");
    if (!f)
        return send_problem(k, 404, "no such file in the inbox");
    char *b = malloc(f->len + 1);
    if (!b)
        return MHD_NO;
    memcpy(b, f->data, f->len);
    return send_body(k, 200, f->type, b, f->len, "Content-Security-Policy",
                     "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                     "connect-src 'self'; frame-ancestors 'none'",
                     "X-Content-Type-Options", "nosniff", "Cache-Control", "no-cache", NULL);
}

/* Splits the path into at most `max` segments; returns how many, or -1
 * when there are more (or an empty one inside). */
static int split_path(char *path, char **seg, int max)
{
    int n = 0;
    char *p = path;
    if (*p == '/')
        p++;
    if (!*p)
        return 0;
    while (p) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = 0;
        if (n == max)
            return -1;
        seg[n++] = p;
        p = slash ? slash + 1 : NULL;
        if (p && !*p)
            break; /* one trailing slash is tolerated */
    }
    for (int i = 0; i < n; i++)
        if (!*seg[i])
            return -1;
    return n;
}

#define IS(m) (!strcmp(k->method, m))

static enum MHD_Result method_not_allowed(struct call *k, const char *allow)
{
    char detail[128];
    snprintf(detail, sizeof detail, "%s is not allowed here (Allow: %s)", k->method, allow);
    return send_problem_ex(k, 405, NULL, NULL, detail, jv_invalid(), 0, allow);
}

/* ------------------------------------------------------------------------
 * Models: the registry (docs/api.md, "Models"; docs/models.md)
 * ---------------------------------------------------------------------- */

/* One store operation on the model registry, run under the engine's store
 * lock. A change made here reaches the default catalog's cache at once
 * (cv_store_model_changes). */
struct model_op {
    int what; /* MOP_* */
    const char *name, *kind, *status, *which;
    int64_t version;
    double share;
    jv card; /* MOP_PUT: consumed */
    const void *bytes;
    size_t len;
    jv out, err;
    void *file; /* MOP_FILE: malloc'd */
    size_t file_len;
};

enum { MOP_LIST, MOP_GET, MOP_FILE, MOP_PUT, MOP_STATUS, MOP_ROUTING, MOP_ROUTE };

static int model_op_run(cv_store *st, void *ctx)
{
    struct model_op *o = ctx;
    int rc;
    switch (o->what) {
    case MOP_LIST: return cv_store_list_models(st, &o->out, &o->err);
    case MOP_GET: return cv_store_get_model(st, o->name, o->version, &o->out, NULL, NULL, &o->err);
    case MOP_FILE: return cv_store_get_model(st, o->name, o->version, &o->out, &o->file, &o->file_len, &o->err);
    case MOP_PUT:
        rc = cv_store_put_model(st, o->name, o->kind, o->card, o->bytes, o->len, &o->version, &o->err);
        o->card = jv_invalid();
        return rc ? rc : cv_store_get_model(st, o->name, o->version, &o->out, NULL, NULL, &o->err);
    case MOP_STATUS:
        rc = cv_store_set_model_status(st, o->name, o->version, o->status, &o->err);
        return rc ? rc : cv_store_get_model(st, o->name, o->version, &o->out, NULL, NULL, &o->err);
    case MOP_ROUTING: return cv_store_get_model_routing(st, o->name, &o->out, &o->err);
    case MOP_ROUTE:
        return cv_store_set_model_routing(st, o->name, o->which, o->version, o->share, &o->out, &o->err);
    }
    return CV_EINVAL;
}

static int model_op(struct call *k, struct model_op *o)
{
    o->out = jv_invalid();
    o->err = jv_invalid();
    int rc = cv__engine_with_store(k->s->e, model_op_run, o, 0);
    jv_free(o->card);
    o->card = jv_invalid();
    return rc;
}

/* A registry answer as a problem; err consumed. */
static enum MHD_Result send_model_error(struct call *k, int rc, jv err, const char *what)
{
    return send_engine_error(k, rc, err, what);
}

/* The routing of model `name` (consumed) as the API shows it. */
static jv public_routing(const char *name, jv routing)
{
    return jv_object_set(routing, jv_string("name"), jv_string(name));
}

/* A version segment: a whole number >= 1; answers 400 itself (returns 0). */
static int version_of(struct call *k, const char *seg, int64_t *v, enum MHD_Result *ret)
{
    long x;
    if (parse_int(seg, 1, 2147483647L, &x)) {
        char d[256];
        snprintf(d, sizeof d, "the version must be a whole number from 1 (got '%.100s')", seg);
        *ret = send_problem(k, 400, d);
        return 0;
    }
    *v = x;
    return 1;
}

/* POST /v1/models/{name}/versions: {kind, file (base64), card?} -> 201 the
 * new version's card (draft). The file must load as a model of its kind,
 * so that nothing the catalog cannot use enters the registry. */
static enum MHD_Result post_model(struct call *k, const char *name)
{
    enum MHD_Result ret;
    if (!allowed(k, "model.create", NULL, &ret))
        return ret;
    jv body;
    if (!body_object(k, &body, &ret))
        return ret;
    jv kind = jv_object_get(jv_copy(body), jv_string("kind"));
    jv file = jv_object_get(jv_copy(body), jv_string("file"));
    jv card = jv_object_get(body, jv_string("card"));
    unsigned char *bytes = NULL;
    size_t len = 0, bad = 0;
    char d[512];
    const char *k_ = jv_get_kind(kind) == JV_KIND_STRING ? jv_string_value(kind) : "";
    int text = !strcmp(k_, "text"), tab = !strcmp(k_, "tabular"), ext = !strcmp(k_, "extractor");
    if (!text && !tab && !ext) {
        ret = send_problem(k, 400, "kind must be \"text\", \"tabular\" or \"extractor\"");
        goto out;
    }
    if (jv_get_kind(file) != JV_KIND_STRING || !jv_string_length_bytes(jv_copy(file))) {
        ret = send_problem(k, 400, "file is required: the model file, base64-encoded");
        goto out;
    }
    if (jv_get_kind(card) == JV_KIND_INVALID || jv_get_kind(card) == JV_KIND_NULL) {
        jv_free(card);
        card = jv_object();
    } else if (jv_get_kind(card) != JV_KIND_OBJECT) {
        ret = send_problem(k, 400, "card must be an object (the model card's fields)");
        goto out;
    }
    int rc = cv__base64_decode(jv_string_value(file), (size_t)jv_string_length_bytes(jv_copy(file)), &bytes, &len,
                               &bad);
    if (rc == CV_ENOMEM) {
        ret = MHD_NO;
        goto out;
    }
    if (rc) {
        snprintf(d, sizeof d, "file is not base64 (at character %zu)", bad);
        ret = send_problem(k, 400, d);
        goto out;
    }
    jv lerr = jv_invalid();
    if (ext) { /* compiled as `call: extract` will; the card's fields are the server's word */
        jv desc = jv_invalid();
        jv src = jv_object_get(jv_copy(card), jv_string("file"));
        rc = cv__extractor_describe((const char *)bytes, len,
                                    jv_get_kind(src) == JV_KIND_STRING ? jv_string_value(src) : "definition", &desc,
                                    &lerr);
        jv_free(src);
        if (rc == CV_ENOMEM) {
            jv_free(lerr);
            ret = MHD_NO;
            goto out;
        }
        if (rc) {
            jv dd = jv_get_kind(lerr) == JV_KIND_OBJECT ? jv_object_get(lerr, jv_string("detail")) : lerr;
            snprintf(d, sizeof d, "file is not an extractor definition: %s",
                     jv_get_kind(dd) == JV_KIND_STRING ? jv_string_value(dd) : cv_strerror(rc));
            jv_free(dd);
            ret = send_problem(k, 422, d);
            goto out;
        }
        card = jv_object_merge(card, desc);
    }
    struct cv_text_model *tm = NULL;
    struct cv_tab_model *bm = NULL;
    rc = ext ? 0 : text ? cv_text_model_load(bytes, len, &tm, &lerr) : cv_tab_model_load(bytes, len, &bm, &lerr);
    cv_text_model_free(tm);
    cv_tab_model_free(bm);
    if (rc) {
        snprintf(d, sizeof d, "file is not a %s model: %s", text ? "text" : "tabular",
                 jv_get_kind(lerr) == JV_KIND_STRING ? jv_string_value(lerr) : cv_strerror(rc));
        jv_free(lerr);
        ret = send_problem(k, 422, d);
        goto out;
    }
    jv_free(lerr);
    char sha[65], ubuf[256];
    cv_ml_sha256_hex(bytes, len, sha);
    card = jv_object_set(card, jv_string("modelSha256"), jv_string(sha)); /* the server's word, not the client's */
    jv cb = jv_object_get(jv_copy(card), jv_string("createdBy"));
    if (jv_get_kind(cb) != JV_KIND_STRING) {
        const char *who = task_user(k, jv_null(), ubuf, sizeof ubuf);
        card = jv_object_set(card, jv_string("createdBy"), jv_string(who ? who : k->caller.addr));
    }
    jv_free(cb);
    struct model_op o = {.what = MOP_PUT, .name = name, .kind = k_, .card = card, .bytes = bytes, .len = len};
    card = jv_invalid();
    rc = model_op(k, &o);
    if (rc) {
        ret = send_model_error(k, rc, o.err, "upload a model");
        goto out;
    }
    jv_free(o.err);
    ret = send_json(k, 201, o.out);
out:
    free(bytes);
    jv_free(kind);
    jv_free(file);
    jv_free(card);
    return ret;
}

/* GET /v1/models[/{name}[/versions/{v}]][/file]: the list, a card, a file.
 * version 0 = what a bare NAME means. */
static enum MHD_Result get_model(struct call *k, const char *name, int64_t version, int file)
{
    enum MHD_Result ret;
    if (!allowed(k, "model.read", NULL, &ret))
        return ret;
    if (!name) {
        struct model_op o = {.what = MOP_LIST, .card = jv_invalid()};
        int rc = model_op(k, &o);
        if (rc)
            return send_model_error(k, rc, o.err, "list models");
        jv_free(o.err);
        return send_json(k, 200, JV_OBJECT(jv_string("items"), o.out));
    }
    struct model_op o = {.what = file ? MOP_FILE : MOP_GET, .name = name, .version = version, .card = jv_invalid()};
    int rc = model_op(k, &o);
    if (rc) {
        free(o.file);
        return send_model_error(k, rc, o.err, "model");
    }
    jv_free(o.err);
    if (!file)
        return send_json(k, 200, o.out);
    jv v = jv_object_get(o.out, jv_string("version"));
    char ref[300], disp[400];
    snprintf(ref, sizeof ref, "%s@%lld", name, (long long)jv_number_value(v));
    snprintf(disp, sizeof disp, "attachment; filename=\"%s@%lld.model\"", name, (long long)jv_number_value(v));
    jv_free(v);
    return send_body(k, 200, "application/octet-stream", o.file, o.file_len, "X-Conveyor-Model", ref,
                     "Content-Disposition", disp, NULL);
}

/* POST /v1/models/{name}/versions/{v}/approve|promote|retire */
static enum MHD_Result model_action(struct call *k, const char *name, int64_t version, const char *action)
{
    enum MHD_Result ret;
    char act[32];
    snprintf(act, sizeof act, "model.%s", action);
    if (!allowed(k, act, NULL, &ret))
        return ret;
    const char *to = !strcmp(action, "approve")   ? CV_MODEL_APPROVED
                     : !strcmp(action, "promote") ? CV_MODEL_PRODUCTION
                                                  : CV_MODEL_RETIRED;
    struct model_op o = {.what = MOP_STATUS, .name = name, .version = version, .status = to, .card = jv_invalid()};
    int rc = model_op(k, &o);
    if (rc)
        return send_model_error(k, rc, o.err, action);
    jv_free(o.err);
    return send_json(k, 200, o.out);
}

/* GET /v1/models/{name}/routing; PUT|DELETE /v1/models/{name}/canary|shadow */
static enum MHD_Result model_routing(struct call *k, const char *name, const char *which)
{
    enum MHD_Result ret;
    if (!which) {
        if (!allowed(k, "model.read", NULL, &ret))
            return ret;
        struct model_op o = {.what = MOP_ROUTING, .name = name, .card = jv_invalid()};
        int rc = model_op(k, &o);
        if (rc)
            return send_model_error(k, rc, o.err, "model routing");
        jv_free(o.err);
        return send_json(k, 200, public_routing(name, o.out));
    }
    if (!allowed(k, "model.route", NULL, &ret))
        return ret;
    int canary = !strcmp(which, "canary");
    struct model_op o = {.what = MOP_ROUTE, .name = name, .which = which, .card = jv_invalid()};
    if (!strcmp(k->method, "PUT")) {
        jv body;
        if (!body_object(k, &body, &ret))
            return ret;
        jv v = jv_object_get(jv_copy(body), jv_string("version"));
        jv sh = jv_object_get(body, jv_string("share"));
        double vn = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : -1;
        double s = jv_get_kind(sh) == JV_KIND_NUMBER ? jv_number_value(sh) : -1;
        int has_share = jv_get_kind(sh) != JV_KIND_INVALID && jv_get_kind(sh) != JV_KIND_NULL;
        jv_free(v);
        jv_free(sh);
        char d[256];
        if (!(vn >= 1 && vn <= 2147483647.0 && vn == (double)(int64_t)vn))
            return send_problem(k, 400, "version is required: a whole number from 1");
        if (canary && !(s >= 0 && s <= 1)) {
            if (has_share && s != -1)
                snprintf(d, sizeof d, "share must be a number from 0 to 1 (the part of the instances on the "
                                      "canary), got %g", s);
            else
                snprintf(d, sizeof d, "share is required: a number from 0 to 1 (the part of the instances on the "
                                      "canary)");
            return send_problem(k, 400, d);
        }
        if (!canary && has_share)
            return send_problem(k, 400, "a shadow takes no share: it predicts on every input beside the answer");
        o.version = (int64_t)vn;
        o.share = canary ? s : 0;
    }
    int rc = model_op(k, &o);
    if (rc)
        return send_model_error(k, rc, o.err, canary ? "canary" : "shadow");
    jv_free(o.err);
    return send_json(k, 200, public_routing(name, o.out));
}

/* /v1/models...: seg[0] = "v1", seg[1] = "models", n segments. */
/* GET /v1/models/{name}/feedback: the labeled examples reviewers confirmed or
 * corrected for predictions of that model (any version; docs/tasks.md). */
struct feedback_op {
    const char *name;
    jv out, err;
};

static int feedback_run(cv_store *st, void *ctx)
{
    struct feedback_op *o = ctx;
    return cv_store_list_feedback(st, o->name, &o->out, &o->err);
}

static enum MHD_Result get_feedback(struct call *k, const char *name)
{
    enum MHD_Result ret;
    if (!allowed(k, "model.read", NULL, &ret))
        return ret;
    struct feedback_op o = {.name = name, .out = jv_invalid(), .err = jv_invalid()};
    int rc = cv__engine_with_store(k->s->e, feedback_run, &o, 0);
    if (rc)
        return send_model_error(k, rc, o.err, "feedback");
    jv_free(o.err);
    return send_json(k, 200, JV_OBJECT(jv_string("items"), o.out));
}

static enum MHD_Result models_route(struct call *k, char **seg, int n)
{
    enum MHD_Result ret;
    int get = !strcmp(k->method, "GET") || !strcmp(k->method, "HEAD"), post = !strcmp(k->method, "POST");
    int64_t v = 0;
    if (n == 2) {
        k->route = R_MODELS;
        return get ? get_model(k, NULL, 0, 0) : method_not_allowed(k, "GET");
    }
    const char *name = seg[2];
    if (n == 3) {
        k->route = R_MODEL;
        return get ? get_model(k, name, 0, 0) : method_not_allowed(k, "GET");
    }
    if (n == 4 && !strcmp(seg[3], "file")) {
        k->route = R_MODEL_FILE;
        return get ? get_model(k, name, 0, 1) : method_not_allowed(k, "GET");
    }
    if (n == 4 && !strcmp(seg[3], "versions")) {
        k->route = R_MODEL_VERSIONS;
        return post ? post_model(k, name) : method_not_allowed(k, "POST");
    }
    if (n == 4 && !strcmp(seg[3], "feedback")) {
        k->route = R_MODEL_FEEDBACK;
        return get ? get_feedback(k, name) : method_not_allowed(k, "GET");
    }
    if (n == 4 && !strcmp(seg[3], "routing")) {
        k->route = R_MODEL_ROUTING;
        return get ? model_routing(k, name, NULL) : method_not_allowed(k, "GET");
    }
    if (n == 4 && (!strcmp(seg[3], "canary") || !strcmp(seg[3], "shadow"))) {
        k->route = R_MODEL_ROUTING;
        if (strcmp(k->method, "PUT") && strcmp(k->method, "DELETE"))
            return method_not_allowed(k, "PUT, DELETE");
        return model_routing(k, name, seg[3]);
    }
    if (n >= 5 && n <= 6 && !strcmp(seg[3], "versions")) {
        k->route = n == 5 ? R_MODEL_VERSION : R_MODEL_ACTION;
        if (n == 6 && !strcmp(seg[5], "file"))
            k->route = R_MODEL_FILE;
        else if (n == 6 && strcmp(seg[5], "approve") && strcmp(seg[5], "promote") && strcmp(seg[5], "retire")) {
            k->route = R_UNKNOWN;
            return send_problem(k, 404, "no such route (a version's actions: approve, promote, retire; its file: file)");
        }
        int action = n == 6 && k->route == R_MODEL_ACTION;
        if (action ? !post : !get)
            return method_not_allowed(k, action ? "POST" : "GET");
        if (!version_of(k, seg[4], &v, &ret))
            return ret;
        if (action)
            return model_action(k, name, v, seg[5]);
        return get_model(k, name, v, n == 6);
    }
    k->route = R_UNKNOWN;
    return send_problem(k, 404, "no such route");
}

static enum MHD_Result route(struct call *k)
{
    enum MHD_Result ret;
    char path[1024];
    if (strlen(k->url) >= sizeof path) {
        k->route = R_UNKNOWN;
        return send_problem(k, 404, "no such route");
    }
    snprintf(path, sizeof path, "%s", k->url);
    char *seg[8];
    int n = split_path(path, seg, 8);
    int get = IS("GET") || IS("HEAD"), post = IS("POST");

    if (n == 1 && !strcmp(seg[0], "health")) {
        k->route = R_HEALTH;
        if (!get)
            return method_not_allowed(k, "GET");
        if (!allowed(k, "health.read", NULL, &ret))
            return ret;
        return send_json(k, 200, JV_OBJECT(jv_string("status"), jv_string("ok")));
    }
    if (n == 1 && !strcmp(seg[0], "ready")) {
        k->route = R_READY;
        if (!get)
            return method_not_allowed(k, "GET");
        if (!allowed(k, "ready.read", NULL, &ret))
            return ret;
        if (atomic_load(&k->s->stopping))
            return send_problem_ex(k, 503, NULL, NULL, "the server is stopping", jv_invalid(), 1, NULL);
        return send_json(k, 200, JV_OBJECT(jv_string("status"), jv_string("ready")));
    }
    if (n == 1 && !strcmp(seg[0], "metrics")) {
        k->route = R_METRICS;
        if (!get)
            return method_not_allowed(k, "GET");
        if (!allowed(k, "metrics.read", NULL, &ret))
            return ret;
        return get_metrics(k);
    }
    if (n >= 2 && !strcmp(seg[0], "v1")) {
        if (n == 2 && !strcmp(seg[1], "openapi.json")) {
            k->route = R_OPENAPI;
            if (!get)
                return method_not_allowed(k, "GET");
            if (!allowed(k, "openapi.read", NULL, &ret))
                return ret;
            return get_openapi(k);
        }
        if (!strcmp(seg[1], "workflows")) {
            if (n == 2) {
                k->route = R_WORKFLOWS;
                if (post)
                    return post_workflow(k);
                if (get)
                    return list_workflows(k);
                return method_not_allowed(k, "GET, POST");
            }
            if (n == 5) {
                k->route = R_WORKFLOW;
                if (!get)
                    return method_not_allowed(k, "GET");
                return get_workflow(k, seg[2], seg[3], seg[4]);
            }
            if (n == 6 && !strcmp(seg[5], "instances")) {
                k->route = R_START;
                if (!post)
                    return method_not_allowed(k, "POST");
                return start_instance(k, seg[2], seg[3], seg[4]);
            }
        }
        if (!strcmp(seg[1], "instances")) {
            if (n == 2) {
                k->route = R_INSTANCES;
                if (!get)
                    return method_not_allowed(k, "GET");
                return list_instances(k);
            }
            if (n == 3) {
                k->route = R_INSTANCE;
                if (!get)
                    return method_not_allowed(k, "GET");
                return get_instance(k, seg[2]);
            }
            if (n == 4 && !strcmp(seg[3], "history")) {
                k->route = R_HISTORY;
                if (!get)
                    return method_not_allowed(k, "GET");
                return get_history(k, seg[2]);
            }
            if (n == 4 && (!strcmp(seg[3], "cancel") || !strcmp(seg[3], "suspend") || !strcmp(seg[3], "resume"))) {
                k->route = R_CONTROL;
                if (!post)
                    return method_not_allowed(k, "POST");
                char action[32];
                snprintf(action, sizeof action, "instance.%s", seg[3]);
                if (!allowed(k, action, NULL, &ret))
                    return ret;
                return control_instance(k, seg[2], seg[3], action);
            }
        }
        if (!strcmp(seg[1], "tasks")) {
            if (n == 2) {
                k->route = R_TASKS;
                if (post)
                    return post_task(k);
                if (get)
                    return list_tasks(k);
                return method_not_allowed(k, "GET, POST");
            }
            if (n == 3) {
                k->route = R_TASK;
                if (!get)
                    return method_not_allowed(k, "GET");
                return get_task(k, seg[2]);
            }
            if (n == 4 && (!strcmp(seg[3], "claim") || !strcmp(seg[3], "release") || !strcmp(seg[3], "complete") ||
                           !strcmp(seg[3], "reassign"))) {
                k->route = R_TASK_ACTION;
                if (!post)
                    return method_not_allowed(k, "POST");
                return task_action(k, seg[2], seg[3]);
            }
        }
        if (!strcmp(seg[1], "models"))
            return models_route(k, seg, n);
        if (n == 2 && !strcmp(seg[1], "events")) {
            k->route = R_EVENTS;
            if (!post)
                return method_not_allowed(k, "POST");
            if (!allowed(k, "event.post", NULL, &ret))
                return ret;
            return post_events(k);
        }
    }
    if (!strcmp(k->url, "/inbox") || !strncmp(k->url, "/inbox/", 7)) {
        k->route = R_INBOX;
        if (!get)
            return method_not_allowed(k, "GET");
        if (!strcmp(k->url, "/inbox")) {
            count_request(k->s, k->route, 308);
            struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!resp)
                return MHD_NO;
            MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, "/inbox/");
            ret = MHD_queue_response(k->c, 308, resp);
            MHD_destroy_response(resp);
            return ret;
        }
        return get_inbox(k, k->url + 7);
    }
    k->route = R_UNKNOWN;
    return send_problem(k, 404, "no such route");
}
#undef IS

/* ------------------------------------------------------------------------
 * libmicrohttpd callbacks
 * ---------------------------------------------------------------------- */

static void fill_caller(struct MHD_Connection *c, struct cv_caller *who)
{
    memset(who, 0, sizeof *who);
    snprintf(who->addr, sizeof who->addr, "unknown");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, who->addr, sizeof who->addr);
        who->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, who->addr, sizeof who->addr);
        who->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            who->loopback = in6->sin6_addr.s6_addr[12] == 127;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct cv_server *s = cls;
    struct req *r = *con_cls;
    struct call k = {.s = s, .c = c, .url = url, .method = method, .r = r, .route = R_UNKNOWN};
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        k.r = r;
        r->counted = 1;
        if (atomic_fetch_add(&s->inflight, 1) >= s->max_inflight)
            r->over = 1;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > BODY_MAX)
            r->too_big = 1;
        /* answered before the body is read (libmicrohttpd then closes the
         * connection instead of reading it) */
        if (r->over)
            return send_problem_ex(&k, 503, NULL, NULL, "too many requests in flight; retry later",
                                   jv_invalid(), 1, NULL);
        if (atomic_load(&s->stopping))
            return send_problem_ex(&k, 503, NULL, NULL, "the server is stopping", jv_invalid(), 1, NULL);
        if (r->too_big)
            return send_problem(&k, 413, "the request body is larger than 16 MiB");
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big)
            return MHD_YES;
        if (r->len + n > BODY_MAX) {
            r->too_big = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    if (r->too_big)
        return send_problem(&k, 413, "the request body is larger than 16 MiB");
    if (!r->body) {
        r->body = calloc(1, 1);
        if (!r->body)
            return MHD_NO;
    }
    fill_caller(c, &k.caller);
    return route(&k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct cv_server *s = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    if (r->counted)
        atomic_fetch_sub(&s->inflight, 1);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ---------------------------------------------------------------------- */

int cv__server_start(struct cv_engine *e, const struct cv_server_options *o, struct cv_server **out, int *port_out,
                     jv *err)
{
    *out = NULL;
    struct cv_server *s = calloc(1, sizeof *s);
    if (!s)
        return CV_ENOMEM;
    s->e = e;
    s->rt = o ? o->runtime : NULL;
    s->max_inflight = o && o->max_inflight > 0 ? o->max_inflight : 256;
    s->max_waiters = o && o->max_waiters > 0 ? o->max_waiters : 128;
    pthread_mutex_init(&s->mlock, NULL);
    const char *host = o && o->host ? o->host : "127.0.0.1";
    int port = o ? o->port : 8080;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    /* poll(), not select(): the process holds a descriptor per HTTP effect in
     * flight, and select() cannot watch descriptors numbered 1024 or more
     * (with a few hundred calls in flight the server stopped accepting, and
     * could not start again while resumed calls held the low numbers) */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        *err = jv_string_fmt("%s is not a numeric IPv4 or IPv6 address", host);
        pthread_mutex_destroy(&s->mlock);
        free(s);
        return CV_EINVAL;
    }
    s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                            MHD_OPTION_END);
    if (!s->d) {
        *err = jv_string_fmt("cannot listen on %s:%d", host, port);
        pthread_mutex_destroy(&s->mlock);
        free(s);
        return CV_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_LISTEN_FD);
    *port_out = port;
    if (di) {
        struct sockaddr_storage b;
        socklen_t bl = sizeof b;
        if (getsockname(di->listen_fd, (struct sockaddr *)&b, &bl) == 0)
            *port_out = b.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)(void *)&b)->sin6_port)
                                                : ntohs(((struct sockaddr_in *)(void *)&b)->sin_port);
    }
    *out = s;
    return 0;
}

void cv__server_stop(struct cv_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    /* stop accepting at once; MHD_stop_daemon then waits for the
     * connections' threads (waiters see `stopping` within 250 ms) */
    MHD_socket fd = MHD_quiesce_daemon(s->d); /* ours to close */
    /* let the requests in flight finish (a ?wait answers 202 within 250 ms
     * of `stopping`), 5 s at most: MHD_stop_daemon closes their sockets */
    for (int i = 0; i < 500 && atomic_load(&s->inflight) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    pthread_mutex_destroy(&s->mlock);
    free(s);
}
