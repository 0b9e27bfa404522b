/*
 * postgres.c — the PostgreSQL backend of store.h (DESIGN.md decision 6;
 * docs/store.md, docs/cluster.md), with libpq.
 *
 * The same semantics as the SQLite backend (sqlite.c), checked by the same
 * conformance suites (tests/unit/test_store.c suite `store`, test_lease.c)
 * run against a throw-away server (tests/pg/pg.sh). What differs:
 *   - several processes (nodes) share the database: claim() claims nothing
 *     (leases fence instances), lease_acquire takes rows with
 *     FOR UPDATE SKIP LOCKED;
 *   - the bus's sequence numbers are given in commit order: every
 *     transaction that inserts events first takes the advisory lock
 *     CV_PG_LOCK_BUS, held until it commits, so a reader polling
 *     `seq > after` never sees a larger seq before a smaller one commits
 *     (a bare bigserial can commit out of order and a reader would skip);
 *   - a statement that fails aborts its transaction in PostgreSQL, so
 *     per-request problems are found before writing (a workflow not
 *     deployed, a value too deep) and conflicts are taken with ON CONFLICT;
 *   - new model versions and registry changes of one name are serialised
 *     by an advisory lock on the name;
 *   - a connection found broken before an operation is reset (3 tries,
 *     100/200/400 ms); a failure inside an operation is reported (CV_EIO),
 *     never retried here: the caller decides (the engine retries writes).
 * Statements are prepared once per connection (PQprepare, on first use).
 * One handle is used by one thread at a time (q->lock), like SQLite's.
 */
#include "store/store.h"

#include "common/util.h"
#include "conveyor.h"
#include "store/postgres_schema.h"
#include "store/store_int.h"

#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Statements                                                                */
/* ------------------------------------------------------------------------ */

enum {
    P_WF_INSERT,
    P_WF_TEXT,
    P_WF_VERSIONS,
    P_WF_LIST,
    P_INST_BY_KEY,
    P_INST_INSERT,
    P_INST_GET,
    P_INST_SEQ,
    P_INST_UNFINISHED,
    P_INST_EPOCH,
    P_INST_UPDATE,
    P_INST_BUMP,
    P_INST_LIST,
    P_HIST_INSERT,
    P_HIST_GET,
    P_TIMER_PUT,
    P_TIMER_DEL,
    P_TIMER_DUE,
    P_TIMER_NEXT,
    P_EV_INSERT,
    P_EV_LIST,
    P_EV_PURGE,
    P_CURSOR_GET,
    P_CURSOR_SET,
    P_MODEL_NEXT,
    P_MODEL_INSERT,
    P_MODEL_RESOLVE,
    P_MODEL_GET,
    P_MODEL_BYTES,
    P_MODEL_LIST,
    P_MODEL_STATUS,
    P_MODEL_DEMOTE,
    P_MODEL_SET,
    P_ROUTE_GET,
    P_ROUTE_PUT,
    P_ROUTE_DROP_VERSION,
    P_REGISTRY_GEN,
    P_TASK_INSERT,
    P_TASK_GET,
    P_TASK_UPDATE,
    P_TASK_LIST,
    P_TASK_OPEN_OF,
    P_FEEDBACK_INSERT,
    P_FEEDBACK_LIST,
    P_LEASE_ACQUIRE,
    P_LEASE_TAKE,
    P_LEASE_RENEW,
    P_LEASE_OWNED,
    P_LEASE_RELEASE,
    P_LEASE_NAME,
    P_LOCK,
    P_NOTIFY,
    P_COUNT
};

#define UNFINISHED "('pending', 'running', 'waiting')"

static const char *const stmt_sql[P_COUNT] = {
    [P_WF_INSERT] = "INSERT INTO workflows (namespace, name, version, text, deployed_at) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT DO NOTHING",
    [P_WF_TEXT] = "SELECT text FROM workflows WHERE namespace = $1 AND name = $2 AND version = $3",
    /* every version of a name: "latest" is chosen in C (cv__store_semver_cmp) */
    [P_WF_VERSIONS] = "SELECT version, text, deployed_at FROM workflows WHERE namespace = $1 AND name = $2",
    [P_WF_LIST] = "SELECT namespace, name, version, deployed_at FROM workflows",
    [P_INST_BY_KEY] = "SELECT id FROM instances WHERE idempotency_key = $1",
    [P_INST_INSERT] = "INSERT INTO instances (id, namespace, name, version, status, input, idempotency_key,"
                      " created_at, updated_at, owner, lease_until, epoch)"
                      " VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $7, $8, $9, $10)"
                      " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    [P_INST_GET] = "SELECT id, namespace, name, version, status, input, output, error, state, epoch,"
                   " created_at, updated_at, owner FROM instances WHERE id = $1",
    [P_INST_SEQ] = "SELECT created_seq FROM instances WHERE id = $1",
    [P_INST_UNFINISHED] = "SELECT id FROM instances WHERE status IN " UNFINISHED " ORDER BY created_seq",
    [P_INST_EPOCH] = "SELECT epoch FROM instances WHERE id = $1",
    [P_INST_UPDATE] = "UPDATE instances SET status = coalesce($2, status), state = coalesce($3, state),"
                      " output = coalesce($4, output), error = coalesce($5, error), updated_at = $6,"
                      " history_seq = history_seq + $7 WHERE id = $1 AND ($8::bigint = 0 OR epoch = $8::bigint)"
                      " RETURNING history_seq",
    [P_INST_BUMP] = "UPDATE instances SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch",
    [P_INST_LIST] = "SELECT id, namespace, name, version, status, error, epoch, created_at, updated_at"
                    " FROM instances WHERE created_seq > $1 AND ($2::text IS NULL OR status = $2)"
                    " AND ($3::text IS NULL OR namespace = $3) AND ($4::text IS NULL OR name = $4)"
                    " ORDER BY created_seq LIMIT $5",
    [P_HIST_INSERT] = "INSERT INTO history (instance, seq, time, type, task, data) VALUES ($1, $2, $3, $4, $5, $6)",
    [P_HIST_GET] = "SELECT seq, time, type, task, data FROM history WHERE instance = $1 ORDER BY seq",
    [P_TIMER_PUT] = "INSERT INTO timers (instance, key, fire_at) VALUES ($1, $2, $3)"
                    " ON CONFLICT (instance, key) DO UPDATE SET fire_at = excluded.fire_at",
    [P_TIMER_DEL] = "DELETE FROM timers WHERE instance = $1 AND key = $2",
    [P_TIMER_DUE] = "SELECT instance, key, fire_at FROM timers WHERE fire_at <= $1"
                    " ORDER BY fire_at, instance, key LIMIT $2",
    [P_TIMER_NEXT] = "SELECT min(fire_at) FROM timers",
    [P_EV_INSERT] = "INSERT INTO events (type, received_at, expires_at, event, origin) VALUES ($1, $2, $3, $4, $5)"
                    " RETURNING seq",
    [P_EV_LIST] = "SELECT seq, event, received_at, origin FROM events WHERE seq > $1 AND expires_at > $2"
                  " ORDER BY seq LIMIT $3",
    [P_EV_PURGE] = "DELETE FROM events WHERE expires_at <= $1",
    [P_CURSOR_GET] = "SELECT seq FROM cursors WHERE name = $1",
    [P_CURSOR_SET] = "INSERT INTO cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = $2",
    [P_MODEL_NEXT] = "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = $1",
    [P_MODEL_INSERT] = "INSERT INTO models (name, version, kind, status, card, bytes, created_at, updated_at)"
                       " VALUES ($1, $2, $3, 'draft', $4, $5, $6, $6)",
    [P_MODEL_RESOLVE] = "SELECT version FROM models WHERE name = $1 AND status <> 'retired'"
                        " ORDER BY status = 'production' DESC, version DESC LIMIT 1",
    [P_MODEL_GET] = "SELECT name, version, kind, status, card, created_at, updated_at, octet_length(bytes)"
                    " FROM models WHERE name = $1 AND version = $2",
    [P_MODEL_BYTES] = "SELECT bytes FROM models WHERE name = $1 AND version = $2",
    [P_MODEL_LIST] = "SELECT name, version, kind, status, card, created_at, updated_at, octet_length(bytes)"
                     " FROM models ORDER BY name, version",
    [P_MODEL_STATUS] = "SELECT status FROM models WHERE name = $1 AND version = $2",
    [P_MODEL_DEMOTE] = "UPDATE models SET status = 'approved', updated_at = $2 WHERE name = $1 AND status = 'production'",
    [P_MODEL_SET] = "UPDATE models SET status = $3, updated_at = $4 WHERE name = $1 AND version = $2",
    [P_ROUTE_GET] = "SELECT canary_version, canary_share, shadow_version FROM model_routing WHERE name = $1",
    [P_ROUTE_PUT] = "INSERT INTO model_routing (name, canary_version, canary_share, shadow_version, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET canary_version = $2,"
                    " canary_share = $3, shadow_version = $4, updated_at = $5",
    [P_ROUTE_DROP_VERSION] = "UPDATE model_routing SET"
                             " canary_version = CASE WHEN canary_version = $2 THEN NULL ELSE canary_version END,"
                             " canary_share = CASE WHEN canary_version = $2 THEN 0 ELSE canary_share END,"
                             " shadow_version = CASE WHEN shadow_version = $2 THEN NULL ELSE shadow_version END,"
                             " updated_at = $3 WHERE name = $1 AND (canary_version = $2 OR shadow_version = $2)",
    [P_REGISTRY_GEN] = "SELECT generation FROM model_registry WHERE id = 1",
    [P_TASK_INSERT] = "INSERT INTO tasks (id, instance, task_ref, namespace, name, version, title, status, role,"
                      " assignee, priority, due_at, claimed_by, claim_expires_at, opened_at, completed_at, doc)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                      " ON CONFLICT (id) DO NOTHING RETURNING seq",
    [P_TASK_GET] = "SELECT doc FROM tasks WHERE id = $1",
    [P_TASK_UPDATE] = "UPDATE tasks SET instance = $2, task_ref = $3, namespace = $4, name = $5, version = $6,"
                      " title = $7, status = $8, role = $9, assignee = $10, priority = $11, due_at = $12,"
                      " claimed_by = $13, claim_expires_at = $14, opened_at = $15, completed_at = $16, doc = $17"
                      " WHERE id = $1",
    [P_TASK_LIST] = "SELECT doc, priority, coalesce(due_at, 9223372036854775807), seq FROM tasks"
                    " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR role = $2)"
                    " AND ($3::text IS NULL OR assignee = $3) AND ($4::text IS NULL OR namespace = $4)"
                    " AND ($5::text IS NULL OR name = $5) AND ($6::text IS NULL OR instance = $6)"
                    " AND ($9::bigint IS NULL OR (-priority, coalesce(due_at, 9223372036854775807), seq)"
                    " > (-$7::bigint, $8::bigint, $9::bigint))"
                    " ORDER BY priority DESC, coalesce(due_at, 9223372036854775807), seq LIMIT $10",
    [P_TASK_OPEN_OF] = "SELECT id FROM tasks WHERE instance = $1 AND status IN ('open', 'claimed', 'escalated')",
    [P_FEEDBACK_INSERT] = "INSERT INTO feedback (task, instance, field, model, overridden, reviewer, at, example)"
                          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task, field) DO NOTHING",
    [P_FEEDBACK_LIST] = "SELECT example FROM feedback WHERE $1::text IS NULL OR model = $1 OR model LIKE $1 || '@%'"
                        " ORDER BY seq",
    /* $1 node, $2 now, $3 lease ms, $4 limit, $5 reclaim: rows another
     * node is taking at this moment are skipped, not waited for */
    [P_LEASE_ACQUIRE] = "UPDATE instances SET owner = $1, lease_until = $2::bigint + $3::bigint, epoch = epoch + 1"
                        " WHERE created_seq IN (SELECT created_seq FROM instances"
                        " WHERE status IN " UNFINISHED " AND (lease_until < $2::bigint OR ($5::boolean AND owner = $1))"
                        " ORDER BY created_seq LIMIT $4::bigint FOR UPDATE SKIP LOCKED)"
                        " RETURNING id, epoch, created_seq",
    [P_LEASE_TAKE] = "UPDATE instances SET owner = $2, lease_until = $3::bigint + $4::bigint, epoch = epoch + 1 WHERE id = $1"
                     " RETURNING epoch",
    [P_LEASE_RENEW] = "UPDATE instances SET lease_until = $2::bigint + $3::bigint WHERE owner = $1 AND status IN " UNFINISHED,
    [P_LEASE_OWNED] = "SELECT id FROM instances WHERE owner = $1"
                      " AND status NOT IN ('completed', 'faulted', 'cancelled') ORDER BY created_seq",
    [P_LEASE_RELEASE] = "UPDATE instances SET lease_until = 0 WHERE owner = $1 AND status IN " UNFINISHED,
    [P_LEASE_NAME] = "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3::bigint + $4::bigint)"
                     " ON CONFLICT (name) DO UPDATE SET owner = $2, until = $3::bigint + $4::bigint"
                     " WHERE leases.until < $3::bigint OR leases.owner = $2 RETURNING owner",
    [P_LOCK] = "SELECT pg_advisory_xact_lock($1::bigint)",
    /* delivered when the transaction commits (nodes waiting in watch) */
    [P_NOTIFY] = "SELECT pg_notify('conveyor', $1)",
};

struct pg {
    PGconn *c;
    char *conninfo; /* the URL as given, for PQconnectdb */
    char *label;    /* host:port/db for messages (never the password) */
    pthread_mutex_t lock;
    unsigned char prepared[P_COUNT]; /* on this connection */
    char *node;                      /* set_node */
    int64_t lease_ms;
    PGconn *listen;                  /* watch's own connection (LISTEN conveyor) */
    pthread_mutex_t listen_lock;
};

static void set_err(jv *err, const char *fmt, ...) JV_PRINTF_LIKE(2, 3);
static void set_err(jv *err, const char *fmt, ...)
{
    if (!err)
        return;
    jv_free(*err);
    va_list ap;
    va_start(ap, fmt);
    *err = jv_string_vfmt(fmt, ap);
    va_end(ap);
}

/* libpq's message without its trailing newline, into buf. */
static const char *pg_msg(const char *m, char *buf, size_t n)
{
    snprintf(buf, n, "%s", m && *m ? m : "unknown error");
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
        buf[--l] = 0;
    return buf;
}

/* The passwords `url` spells out (user:PASSWORD@..., ...?password=PASSWORD),
 * up to two, as pointers into url and lengths; returns how many. */
static int url_secrets(const char *url, const char *sec[2], size_t len[2])
{
    int k = 0;
    const char *sch = strstr(url, "://");
    const char *at = sch ? strchr(sch + 3, '@') : NULL;
    const char *colon = sch ? strchr(sch + 3, ':') : NULL;
    if (at && colon && colon < at && at > colon + 1) {
        sec[k] = colon + 1;
        len[k++] = (size_t)(at - colon - 1);
    }
    for (const char *p = strchr(url, '?'); p && k < 2; p = strchr(p + 1, '&')) {
        if (!strncmp(p + 1, "password=", 9) && p[10] && p[10] != '&') {
            sec[k] = p + 10;
            len[k++] = strcspn(p + 10, "&");
        }
    }
    return k;
}

/* pg_msg, with every password of `url` in the message replaced by "***":
 * libpq quotes a URL it cannot parse whole (and a bad token of one alone),
 * and a message must never show a password. */
static const char *pg_msg_safe(const char *m, const char *url, char *buf, size_t n)
{
    char raw[1024];
    const char *sec[2];
    size_t len[2], o = 0;
    int k = url_secrets(url, sec, len);
    pg_msg(m, raw, sizeof raw);
    for (const char *p = raw; *p && o + 4 < n;) {
        int hit = -1;
        for (int i = 0; i < k && hit < 0; i++)
            if (!strncmp(p, sec[i], len[i]))
                hit = i;
        if (hit >= 0) {
            memcpy(buf + o, "***", 3);
            o += 3;
            p += len[hit];
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = 0;
    return buf;
}

/* The CV_* code of a failed result (by SQLSTATE), or of a broken connection. */
static int map_state(const char *state)
{
    if (!state)
        return CV_EIO;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03") || !strcmp(state, "57014"))
        return CV_EBUSY; /* serialization, deadlock, lock not available, statement timeout */
    if (!strcmp(state, "23505"))
        return CV_ECONFLICT;
    if (!strncmp(state, "53", 2) && strcmp(state, "53100"))
        return CV_ENOMEM; /* insufficient resources, but a full disk is an I/O error */
    return CV_EIO;
}

/* Records a failed result (consumed, may be NULL): "WHAT: message". */
static int pg_fail(struct pg *q, PGresult *r, const char *what, jv *err)
{
    char m[512];
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int code = map_state(state);
    if (r && PQresultErrorMessage(r)[0])
        set_err(err, "%s: %s (%s)", what, pg_msg(PQresultErrorMessage(r), m, sizeof m), q->label);
    else
        set_err(err, "%s: %s (%s)", what, pg_msg(PQerrorMessage(q->c), m, sizeof m), q->label);
    if (state && !strcmp(state, "25006"))
        set_err(err, "%s: the database is read-only (%s): conveyor writes to it", what, q->label);
    PQclear(r);
    return code;
}

/* Parameters of one statement: text values (NULL = SQL NULL), numbers
 * printed, JSON dumped, bytes in binary. */
#define MAX_ARGS 20
struct args {
    const char *v[MAX_ARGS];
    int len[MAX_ARGS], fmt[MAX_ARGS];
    char num[MAX_ARGS][32];
    char *owned[MAX_ARGS];
    int n;
};

static void a_init(struct args *a) { memset(a, 0, sizeof *a); }
/* Frees what the args own; they can be filled again from the start. */
static void a_free(struct args *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->owned[i]);
        a->owned[i] = NULL;
    }
    a->n = 0;
}
/* A text parameter (NULL: SQL NULL), borrowed. */
static void a_text(struct args *a, const char *s)
{
    a->owned[a->n] = NULL;
    a->len[a->n] = 0;
    a->fmt[a->n] = 0;
    a->v[a->n++] = s;
}
static void a_i64(struct args *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", (long long)x);
    a_text(a, a->num[a->n]);
}
static void a_f64(struct args *a, double x)
{
    snprintf(a->num[a->n], sizeof a->num[a->n], "%.17g", x);
    a_text(a, a->num[a->n]);
}
static void a_bool(struct args *a, int b) { a_text(a, b ? "true" : "false"); }
static void a_bytes(struct args *a, const void *b, size_t n)
{
    a_text(a, b ? b : "");
    a->len[a->n - 1] = (int)n;
    a->fmt[a->n - 1] = 1;
}
/* `v` (consumed) as JSON text; invalid: SQL NULL. 0, CV_EINVAL (too deep), CV_ENOMEM. */
static int a_json(struct args *a, jv v, const char *what, jv *err)
{
    if (!jv_is_valid(v)) {
        jv_free(v);
        a_text(a, NULL);
        return 0;
    }
    char *text;
    size_t len;
    int code = cv__store_json_dump(v, &text, &len);
    jv_free(v);
    if (code == CV_EINVAL) {
        set_err(err, "%s nests arrays and objects deeper than %d levels", what, CV_STORE_JSON_MAX_DEPTH);
        a_text(a, NULL);
        return code;
    }
    if (code) {
        set_err(err, "%s: out of memory", what);
        a_text(a, NULL);
        return code;
    }
    a_text(a, text);
    a->owned[a->n - 1] = text; /* freed by a_free */
    return 0;
}

/* The connection works, or is made to work again (3 tries). */
static int ensure(struct pg *q, jv *err)
{
    if (PQstatus(q->c) == CONNECTION_OK && PQtransactionStatus(q->c) != PQTRANS_UNKNOWN)
        return 0;
    for (int i = 0; i < 3; i++) {
        if (i) {
            struct timespec ts = {0, (100L << (i - 1)) * 1000000L};
            nanosleep(&ts, NULL);
        }
        PQreset(q->c);
        if (PQstatus(q->c) == CONNECTION_OK) {
            memset(q->prepared, 0, sizeof q->prepared);
            return 0;
        }
    }
    char m[512];
    set_err(err, "the database %s cannot be reached: %s", q->label,
            pg_msg_safe(PQerrorMessage(q->c), q->conninfo, m, sizeof m));
    return CV_EIO;
}

/* Runs statement `id` (prepared on first use) with `a`; the result when it
 * succeeded (PGRES_TUPLES_OK / COMMAND_OK), else NULL with *code set.
 * `binary`: results in binary format (bytea). */
/* Whether a failure just now is a lost connection that may be tried again
 * on a new one: the statement ran outside a transaction (alone: a read, or
 * a write that is idempotent), and the connection could be made again. */
static int retry_after_loss(struct pg *q, int was_idle, jv *err)
{
    if (!was_idle || PQstatus(q->c) != CONNECTION_BAD)
        return 0;
    jv e = jv_invalid();
    int ok = ensure(q, &e) == 0;
    jv_free(e);
    return ok;
}

static PGresult *run_fmt(struct pg *q, int id, struct args *a, int binary, int *code, const char *what, jv *err)
{
    int was_idle = PQtransactionStatus(q->c) == PQTRANS_IDLE;
again:;
    char name[16];
    snprintf(name, sizeof name, "cv%d", id);
    if (!q->prepared[id]) {
        PGresult *p = PQprepare(q->c, name, stmt_sql[id], 0, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            if (retry_after_loss(q, was_idle, err)) {
                PQclear(p);
                was_idle = 0; /* once */
                goto again;
            }
            *code = pg_fail(q, p, what, err);
            return NULL;
        }
        PQclear(p);
        q->prepared[id] = 1;
    }
    PGresult *r = PQexecPrepared(q->c, name, a ? a->n : 0, a ? a->v : NULL, a ? a->len : NULL, a ? a->fmt : NULL,
                                 binary);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        if (retry_after_loss(q, was_idle, err)) {
            PQclear(r);
            was_idle = 0;
            goto again;
        }
        *code = pg_fail(q, r, what, err);
        return NULL;
    }
    *code = 0;
    return r;
}

static PGresult *run(struct pg *q, int id, struct args *a, int *code, const char *what, jv *err)
{
    return run_fmt(q, id, a, 0, code, what, err);
}

/* Runs a statement that returns nothing of interest. */
static int run0(struct pg *q, int id, struct args *a, const char *what, jv *err)
{
    int code;
    PGresult *r = run(q, id, a, &code, what, err);
    PQclear(r);
    return code;
}

static int exec_sql(struct pg *q, const char *sql, const char *what, jv *err)
{
    int was_idle = PQtransactionStatus(q->c) == PQTRANS_IDLE;
    PGresult *r = PQexec(q->c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && retry_after_loss(q, was_idle, err)) {
        PQclear(r); /* BEGIN, or a statement alone, on the new connection */
        r = PQexec(q->c, sql);
        s = PQresultStatus(r);
    }
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        return pg_fail(q, r, what, err);
    PQclear(r);
    return 0;
}

/* Begins a transaction (after making sure the connection works). */
static int tx_begin(struct pg *q, const char *what, jv *err)
{
    int code = ensure(q, err);
    return code ? code : exec_sql(q, "BEGIN", what, err);
}

/* Ends it: COMMIT when code is 0 (its failure returned), else ROLLBACK. */
static int tx_end(struct pg *q, int code, jv *err)
{
    if (code) {
        if (PQtransactionStatus(q->c) != PQTRANS_IDLE && PQtransactionStatus(q->c) != PQTRANS_UNKNOWN) {
            PGresult *r = PQexec(q->c, "ROLLBACK");
            PQclear(r);
        }
        return code;
    }
    return exec_sql(q, "COMMIT", "commit", err);
}

/* Takes advisory lock `key` until the transaction ends. */
static int xlock(struct pg *q, int64_t key, jv *err)
{
    struct args a;
    a_init(&a);
    a_i64(&a, key);
    return run0(q, P_LOCK, &a, "taking a lock", err);
}

static int64_t val_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static jv val_text(PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return jv_null();
    return jv_string_sized(PQgetvalue(r, row, col), PQgetlength(r, row, col));
}

/* A column this backend wrote as JSON; null when SQL NULL; CV_EIO when it is not JSON. */
static int val_json(PGresult *r, int row, int col, jv *out, jv *err)
{
    if (PQgetisnull(r, row, col)) {
        *out = jv_null();
        return 0;
    }
    jv v = jv_parse_sized(PQgetvalue(r, row, col), PQgetlength(r, row, col));
    if (!jv_is_valid(v)) {
        jv m = jv_invalid_get_msg(v);
        set_err(err, "stored column %s is not valid JSON (%s)", PQfname(r, col),
                jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) : "?");
        jv_free(m);
        return CV_EIO;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Open, migrate, close                                                      */
/* ------------------------------------------------------------------------ */

static void pg_close(void *impl)
{
    struct pg *q = impl;
    if (!q)
        return;
    PQfinish(q->c);
    PQfinish(q->listen);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->listen_lock);
    free(q->conninfo);
    free(q->label);
    free(q->node);
    free(q);
}

/* Applies the migrations above the database's version in one transaction,
 * under an advisory lock: a node opening at the same time waits, then finds
 * nothing to do. A newer schema is CV_EUNSUPPORTED. */
static int migrate(struct pg *q, jv *err)
{
    int code = exec_sql(q, "BEGIN", "opening the database", err);
    char sql[256];
    if (!code) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d)", CV_PG_LOCK_MIGRATE);
        code = exec_sql(q, sql, "opening the database", err);
    }
    if (!code)
        code = exec_sql(q,
                        "CREATE TABLE IF NOT EXISTS conveyor_schema (version integer PRIMARY KEY,"
                        " applied_at bigint NOT NULL)",
                        "opening the database", err);
    int64_t version = 0;
    if (!code) {
        PGresult *r = PQexec(q->c, "SELECT coalesce(max(version), 0) FROM conveyor_schema");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            code = pg_fail(q, r, "reading the schema version", err);
        else {
            version = val_i64(r, 0, 0);
            PQclear(r);
        }
    }
    if (!code && version > CV_PG_SCHEMA_VERSION) {
        set_err(err, "%s: database schema version %lld is newer than this conveyor (%d)", q->label,
                (long long)version, CV_PG_SCHEMA_VERSION);
        code = CV_EUNSUPPORTED;
    }
    size_t n = sizeof cv_pg_migrations / sizeof cv_pg_migrations[0];
    for (size_t i = 0; !code && i < n; i++) {
        const struct cv_pg_migration *m = &cv_pg_migrations[i];
        if (m->version <= version)
            continue;
        code = exec_sql(q, m->sql, "applying the schema migrations", err);
        if (!code) {
            snprintf(sql, sizeof sql, "INSERT INTO conveyor_schema (version, applied_at) VALUES (%d, %lld)",
                     m->version, (long long)cv__wall_ms());
            code = exec_sql(q, sql, "applying the schema migrations", err);
        }
    }
    return tx_end(q, code, err);
}

/* "host:port/db" of the connection, for messages. */
static char *label_of(PGconn *c, const char *url)
{
    char *l = NULL;
    if (c && PQhost(c) && *PQhost(c) && PQdb(c)) {
        if (asprintf(&l, "postgres %s:%s/%s", PQhost(c), PQport(c) ? PQport(c) : "", PQdb(c)) < 0)
            l = NULL;
    }
    if (!l) { /* the URL without what comes between :// and @ (user, password),
               * nor its query (it may say password=) */
        const char *at = strchr(url, '@'), *sch = strstr(url, "://");
        const char *from = at && sch && at > sch ? at + 1 : sch ? sch + 3 : url;
        if (asprintf(&l, "%.*s%.*s", (int)(sch ? sch + 3 - url : 0), url, (int)strcspn(from, "?"), from) < 0)
            l = NULL;
    }
    return l;
}

/* The server's notices and a closed connection's last words: on stderr,
 * said to come from the database (libpq prints them bare otherwise). */
static void notice(void *arg, const char *message)
{
    char m[512];
    fprintf(stderr, "conveyor: %s says: %s\n", (const char *)arg, pg_msg(message, m, sizeof m));
}

static int pg_open(const char *where, void **impl, jv *err)
{
    *impl = NULL;
    struct pg *q = calloc(1, sizeof *q);
    if (!q)
        return CV_ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->listen_lock, NULL);
    /* a connect timeout unless the URL sets one: a database that does not
     * answer is an error in seconds, not a hang */
    const char *sep = strchr(where, '?') ? "&" : "?";
    if (strstr(where, "connect_timeout=")) {
        q->conninfo = strdup(where);
    } else if (asprintf(&q->conninfo, "%s%sconnect_timeout=5", where, sep) < 0) {
        q->conninfo = NULL;
    }
    if (!q->conninfo) {
        pg_close(q);
        return CV_ENOMEM;
    }
    q->c = PQconnectdb(q->conninfo);
    q->label = label_of(q->c, where);
    if (!q->label) {
        pg_close(q);
        return CV_ENOMEM;
    }
    if (PQstatus(q->c) != CONNECTION_OK) {
        char m[512];
        set_err(err, "%s: cannot connect: %s", q->label, pg_msg_safe(PQerrorMessage(q->c), q->conninfo, m, sizeof m));
        pg_close(q);
        return CV_EIO;
    }
    PQsetNoticeProcessor(q->c, notice, q->label);
    PGresult *r = PQexec(q->c, "SET client_min_messages = warning");
    PQclear(r);
    r = PQexec(q->c, "SHOW transaction_read_only");
    int ro = PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "on");
    PQclear(r);
    if (ro) {
        set_err(err, "%s: the database is read-only (a standby, or default_transaction_read_only): conveyor "
                     "writes to it",
                q->label);
        pg_close(q);
        return CV_EIO;
    }
    int code = migrate(q, err);
    if (code) {
        pg_close(q);
        return code;
    }
    *impl = q;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Workflow definitions                                                      */
/* ------------------------------------------------------------------------ */

static int pg_put_workflow(void *impl, const char *ns, const char *name, const char *version, const char *text,
                           jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, ns);
    a_text(&a, name);
    a_text(&a, version);
    a_text(&a, text);
    a_i64(&a, cv__wall_ms());
    PGresult *r = code ? NULL : run(q, P_WF_INSERT, &a, &code, "deploying a workflow", err);
    if (r && !strcmp(PQcmdTuples(r), "0")) { /* the version exists: the same text is a no-op */
        PQclear(r);
        a.n = 3;
        r = run(q, P_WF_TEXT, &a, &code, "deploying a workflow", err);
        if (r && (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), text))) {
            set_err(err, "workflow %s/%s:%s is already deployed with a different document", ns, name, version);
            code = CV_ECONFLICT;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The row of `r` with the highest version (cv__store_semver_cmp), or -1. */
static int latest_row(PGresult *r)
{
    int best = -1;
    for (int i = 0; i < PQntuples(r); i++)
        if (best < 0 || cv__store_semver_cmp(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0),
                                             PQgetvalue(r, best, 0), (size_t)PQgetlength(r, best, 0)) > 0)
            best = i;
    return best;
}

/* Reads workflow ns/name:version ("latest"/NULL: the highest) inside the
 * caller's lock: *out = {namespace, name, version, text, deployedAt}. */
static int wf_read(struct pg *q, const char *ns, const char *name, const char *version, jv *out, jv *err)
{
    int code, latest = !version || !strcmp(version, "latest");
    struct args a;
    a_init(&a);
    a_text(&a, ns);
    a_text(&a, name);
    PGresult *r = run(q, P_WF_VERSIONS, &a, &code, "reading a workflow", err);
    if (!r)
        return code;
    int row = -1;
    if (latest)
        row = latest_row(r);
    else
        for (int i = 0; i < PQntuples(r) && row < 0; i++)
            if (!strcmp(PQgetvalue(r, i, 0), version))
                row = i;
    if (row < 0) {
        PQclear(r);
        set_err(err, "workflow %s/%s:%s is not deployed", ns, name, latest ? "latest" : version);
        return CV_ENOTFOUND;
    }
    *out = JV_OBJECT(jv_string("namespace"), jv_string(ns), jv_string("name"), jv_string(name),
                     jv_string("version"), val_text(r, row, 0), jv_string("text"), val_text(r, row, 1),
                     jv_string("deployedAt"), jv_number((double)val_i64(r, row, 2)));
    PQclear(r);
    return 0;
}

static int pg_get_workflow(void *impl, const char *ns, const char *name, const char *version, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    if (!code)
        code = wf_read(q, ns, name, version, out, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int cmp_wf(const void *x, const void *y)
{
    jv a = *(const jv *)x, b = *(const jv *)y;
    static const char *const keys[] = {"namespace", "name", "version"};
    for (int k = 0; k < 3; k++) {
        jv va = jv_object_get(jv_copy(a), jv_string(keys[k])), vb = jv_object_get(jv_copy(b), jv_string(keys[k]));
        const char *sa = jv_string_value(va), *sb = jv_string_value(vb);
        int c = k < 2 ? strcmp(sa, sb) : cv__store_semver_cmp(sa, strlen(sa), sb, strlen(sb));
        jv_free(va);
        jv_free(vb);
        if (c)
            return c < 0 ? -1 : 1;
    }
    return 0;
}

static int pg_list_workflows(void *impl, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_WF_LIST, NULL, &code, "listing workflows", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    int n = PQntuples(r);
    jv *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows) {
        PQclear(r);
        return CV_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        rows[i] = JV_OBJECT(jv_string("namespace"), val_text(r, i, 0), jv_string("name"), val_text(r, i, 1),
                            jv_string("version"), val_text(r, i, 2), jv_string("deployedAt"),
                            jv_number((double)val_i64(r, i, 3)));
    PQclear(r);
    qsort(rows, (size_t)n, sizeof *rows, cmp_wf);
    jv list = jv_array();
    for (int i = 0; i < n; i++)
        list = jv_array_append(list, rows[i]);
    free(rows);
    *out = list;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Instances                                                                 */
/* ------------------------------------------------------------------------ */

static int apply_one(struct pg *q, struct cv_checkpoint *cp, int64_t now, jv *err);

/* Creates one instance inside the caller's transaction. Returns 0, a
 * per-request code found before anything was written (CV_ENOTFOUND,
 * CV_EINVAL), or a database failure (the transaction is lost). */
static int create_in_tx(struct pg *q, const char *ns, const char *name, const char *version, jv input,
                        const char *idempotency_key, jv history, char *id_out, int *existed, jv *err)
{
    int code = 0;
    struct args a;
    a_init(&a);
    *existed = 0;
    jv wf = jv_invalid();
    PGresult *r = NULL;
    if (idempotency_key) {
        a_text(&a, idempotency_key);
        r = run(q, P_INST_BY_KEY, &a, &code, "creating an instance", err);
        a_free(&a);
        if (!r)
            goto out;
        if (PQntuples(r) == 1) {
            snprintf(id_out, 64, "%s", PQgetvalue(r, 0, 0));
            *existed = 1;
            goto out;
        }
        PQclear(r);
        r = NULL;
    }
    code = wf_read(q, ns, name, version, &wf, err); /* "latest" resolved now, in the transaction */
    if (code)
        goto out;
    if (!jv_is_valid(input)) { /* "no input" is stored as null */
        jv_free(input);
        input = jv_null();
    }
    char id[37];
    cv__uuid4(id);
    jv ver = jv_object_get(jv_copy(wf), jv_string("version"));
    int64_t now = cv__wall_ms();
    a_text(&a, id);
    a_text(&a, ns);
    a_text(&a, name);
    a_text(&a, jv_string_value(ver));
    code = a_json(&a, input, "the input", err);
    input = jv_invalid();
    a_text(&a, idempotency_key);
    a_i64(&a, now);
    a_text(&a, q->node);
    a_i64(&a, q->node ? now + q->lease_ms : 0);
    a_i64(&a, q->node ? 1 : 0);
    if (!code)
        r = run(q, P_INST_INSERT, &a, &code, "creating an instance", err);
    jv_free(ver);
    a_free(&a);
    if (code)
        goto out;
    if (PQntuples(r) == 0) { /* the key was taken meanwhile by another transaction */
        PQclear(r);
        a_text(&a, idempotency_key);
        r = run(q, P_INST_BY_KEY, &a, &code, "creating an instance", err);
        if (r && PQntuples(r) == 1) {
            snprintf(id_out, 64, "%s", PQgetvalue(r, 0, 0));
            *existed = 1;
        }
        goto out;
    }
    snprintf(id_out, 64, "%s", id);
    if (jv_get_kind(history) == JV_KIND_ARRAY && jv_array_length(jv_copy(history)) > 0) {
        struct cv_checkpoint cp;
        cv_checkpoint_init(&cp, id);
        cp.history = history;
        history = jv_invalid();
        code = apply_one(q, &cp, now, err);
        cv_checkpoint_cleanup(&cp);
    }
out:
    PQclear(r);
    jv_free(wf);
    jv_free(history);
    jv_free(input);
    return code;
}

static int pg_create_instance(void *impl, const char *ns, const char *name, const char *version, jv input,
                              const char *idempotency_key, char *id_out, int *existed, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "creating an instance", err);
    if (code)
        jv_free(input);
    else
        code = create_in_tx(q, ns, name, version, input, idempotency_key, jv_invalid(), id_out, existed, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_create_instances(void *impl, struct cv_create *reqs, int n)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    jv ferr = jv_invalid();
    int fatal = tx_begin(q, "creating instances", &ferr);
    for (int i = 0; i < n; i++) {
        struct cv_create *c = &reqs[i];
        if (fatal) {
            jv_free(c->input);
            c->input = jv_invalid();
            jv_free(c->history);
            c->history = jv_invalid();
            continue;
        }
        jv e = jv_invalid();
        int code = create_in_tx(q, c->ns, c->name, c->version, c->input, c->idempotency_key, c->history, c->id,
                                &c->existed, &e);
        c->input = jv_invalid();
        c->history = jv_invalid();
        if (code == CV_ENOTFOUND || code == CV_EINVAL) { /* found before writing: the transaction goes on */
            c->rc = code;
            c->err = e;
        } else if (code) {
            fatal = code;
            jv_free(ferr);
            ferr = e;
        } else {
            jv_free(e);
        }
    }
    fatal = tx_end(q, fatal, &ferr);
    pthread_mutex_unlock(&q->lock);
    if (fatal)
        for (int i = 0; i < n; i++) {
            reqs[i].rc = fatal;
            jv_free(reqs[i].err);
            reqs[i].err = jv_copy(ferr);
        }
    jv_free(ferr);
    return fatal;
}

static int pg_get_instance(void *impl, const char *id, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, id);
    PGresult *r = code ? NULL : run(q, P_INST_GET, &a, &code, "reading an instance", err);
    if (r && PQntuples(r) == 0) {
        set_err(err, "no instance %s", id);
        code = CV_ENOTFOUND;
    } else if (r) {
        static const char *const names[] = {"id", "namespace", "name", "version", "status"};
        static const char *const json_names[] = {"input", "output", "error", "state"};
        jv o = jv_object();
        for (int i = 0; i < 5; i++)
            o = jv_object_set(o, jv_string(names[i]), val_text(r, 0, i));
        for (int i = 0; i < 4 && !code; i++) {
            jv v;
            code = val_json(r, 0, 5 + i, &v, err);
            if (!code)
                o = jv_object_set(o, jv_string(json_names[i]), v);
        }
        o = jv_object_set(o, jv_string("epoch"), jv_number((double)val_i64(r, 0, 9)));
        o = jv_object_set(o, jv_string("owner"), val_text(r, 0, 12));
        o = jv_object_set(o, jv_string("createdAt"), jv_number((double)val_i64(r, 0, 10)));
        o = jv_object_set(o, jv_string("updatedAt"), jv_number((double)val_i64(r, 0, 11)));
        if (code)
            jv_free(o);
        else
            *out = o;
    }
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static const char *filter_str(jv filter, const char *key, jv *hold)
{
    *hold = jv_get_kind(filter) == JV_KIND_OBJECT ? jv_object_get(jv_copy(filter), jv_string(key)) : jv_invalid();
    return jv_get_kind(*hold) == JV_KIND_STRING ? jv_string_value(*hold) : NULL;
}

static int pg_list_instances(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    struct pg *q = impl;
    jv list = jv_array(), cursor = jv_null();
    jv hs, hn, hm;
    const char *status = filter_str(filter, "status", &hs), *ns = filter_str(filter, "namespace", &hn),
               *name = filter_str(filter, "name", &hm);
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    int64_t from = 0;
    struct args a;
    a_init(&a);
    PGresult *r = NULL;
    if (!code && after) {
        a_text(&a, after);
        r = run(q, P_INST_SEQ, &a, &code, "listing instances", err);
        if (r && PQntuples(r) == 0) {
            set_err(err, "unknown cursor %s (no such instance)", after);
            code = CV_EINVAL;
        } else if (r) {
            from = val_i64(r, 0, 0);
        }
        PQclear(r);
        r = NULL;
        a.n = 0;
    }
    if (!code) {
        a_i64(&a, from);
        a_text(&a, status);
        a_text(&a, ns);
        a_text(&a, name);
        a_i64(&a, limit + 1);
        r = run(q, P_INST_LIST, &a, &code, "listing instances", err);
    }
    for (int i = 0; r && !code && i < PQntuples(r); i++) {
        if (i == limit) {
            jv last = jv_array_get(jv_copy(list), i - 1);
            cursor = jv_object_get(last, jv_string("id"));
            break;
        }
        jv o = jv_object();
        static const char *const names[] = {"id", "namespace", "name", "version", "status"};
        for (int k = 0; k < 5; k++)
            o = jv_object_set(o, jv_string(names[k]), val_text(r, i, k));
        jv e;
        code = val_json(r, i, 5, &e, err);
        if (code) {
            jv_free(o);
            break;
        }
        o = jv_object_set(o, jv_string("error"), e);
        o = jv_object_set(o, jv_string("epoch"), jv_number((double)val_i64(r, i, 6)));
        o = jv_object_set(o, jv_string("createdAt"), jv_number((double)val_i64(r, i, 7)));
        o = jv_object_set(o, jv_string("updatedAt"), jv_number((double)val_i64(r, i, 8)));
        list = jv_array_append(list, o);
    }
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    jv_free(hs);
    jv_free(hn);
    jv_free(hm);
    jv_free(filter);
    if (code) {
        jv_free(list);
        jv_free(cursor);
        return code;
    }
    *out = list;
    *next = cursor;
    return 0;
}

/* Runs statement `id` with one text parameter (or none) and collects
 * column 0 of every row as strings. */
static int list_ids(struct pg *q, int id, const char *param, const char *what, jv *out, jv *err)
{
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    if (param)
        a_text(&a, param);
    PGresult *r = code ? NULL : run(q, id, param ? &a : NULL, &code, what, err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r); i++)
        list = jv_array_append(list, val_text(r, i, 0));
    PQclear(r);
    *out = list;
    return 0;
}

static int pg_unfinished_instances(void *impl, jv *out, jv *err)
{
    return list_ids(impl, P_INST_UNFINISHED, NULL, "listing unfinished instances", out, err);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints, history, epochs                                              */
/* ------------------------------------------------------------------------ */

static jv member(jv o, const char *key) { return jv_object_get(jv_copy(o), jv_string(key)); }

/* Inserts events (array of {event, expiresAt}, consumed) in the caller's
 * transaction, after taking the bus lock (numbers in commit order). */
static int insert_events(struct pg *q, jv events, int64_t now, const char *origin, jv *seqs, jv *err)
{
    int code = xlock(q, CV_PG_LOCK_BUS, err);
    if (!code && jv_array_length(jv_copy(events)) > 0) {
        struct args n;
        a_init(&n);
        a_text(&n, "bus");
        code = run0(q, P_NOTIFY, &n, "storing events", err);
    }
    jv out = jv_array();
    jv_array_foreach(events, i, e)
    {
        if (code) {
            jv_free(e);
            continue;
        }
        jv ev = member(e, "event"), at = member(e, "expiresAt");
        jv type = member(ev, "type");
        struct args a;
        a_init(&a);
        a_text(&a, jv_get_kind(type) == JV_KIND_STRING ? jv_string_value(type) : "");
        a_i64(&a, now);
        a_i64(&a, (int64_t)jv_number_value(at));
        code = a_json(&a, ev, "an event", err);
        a_text(&a, origin);
        PGresult *r = code ? NULL : run(q, P_EV_INSERT, &a, &code, "storing events", err);
        if (r)
            out = jv_array_append(out, jv_number((double)val_i64(r, 0, 0)));
        PQclear(r);
        a_free(&a);
        jv_free(type);
        jv_free(at);
        jv_free(e);
    }
    jv_free(events);
    if (code)
        jv_free(out);
    else
        *seqs = out;
    return code;
}

static int task_insert(struct pg *q, jv task, int *existed, jv *err);
static int task_read(struct pg *q, const char *id, jv *out, jv *err);
static int task_write(struct pg *q, jv task, jv *err);
static int tasks_cancel(struct pg *q, const char *instance, jv which, int64_t now, jv *err);

static int task_escalate_in(struct pg *q, jv x, int64_t now, jv *err)
{
    jv id = jv_object_get(jv_copy(x), jv_string("id"));
    jv cur = jv_invalid(), next = jv_invalid(), e = jv_invalid();
    int code = task_read(q, jv_string_value(id), &cur, &e);
    jv_free(id);
    if (code == CV_ENOTFOUND) {
        jv_free(e);
        return 0;
    }
    if (code) {
        *err = e;
        return code;
    }
    code = cv__task_escalate_rule(cur, jv_object_get(jv_copy(x), jv_string("to")), now, &next, &e);
    if (code == CV_ECONFLICT) {
        jv_free(e);
        return 0;
    }
    if (code) {
        *err = e;
        return code;
    }
    jv_free(e);
    return task_write(q, next, err);
}

/* Applies one checkpoint inside the batch's transaction. Borrows cp. */
static int apply_one(struct pg *q, struct cv_checkpoint *cp, int64_t now, jv *err)
{
    int nhist = jv_get_kind(cp->history) == JV_KIND_ARRAY ? jv_array_length(jv_copy(cp->history)) : 0;
    char what[128];
    struct args a;
    a_init(&a);
    a_text(&a, cp->instance);
    a_text(&a, cp->status);
    int code = 0;
    snprintf(what, sizeof what, "checkpoint of %s: the state", cp->instance);
    if (cp->state_text)
        a_text(&a, cp->state_text); /* serialised by the caller, NUL-terminated */
    else
        code = a_json(&a, jv_copy(cp->state), what, err);
    snprintf(what, sizeof what, "checkpoint of %s: the output", cp->instance);
    if (!code)
        code = a_json(&a, jv_copy(cp->output), what, err);
    else
        a_text(&a, NULL);
    snprintf(what, sizeof what, "checkpoint of %s: the error", cp->instance);
    if (!code)
        code = a_json(&a, jv_copy(cp->error), what, err);
    else
        a_text(&a, NULL);
    a_i64(&a, now);
    a_i64(&a, nhist);
    a_i64(&a, cp->epoch);
    PGresult *r = code ? NULL : run(q, P_INST_UPDATE, &a, &code, "checkpoint", err);
    a_free(&a);
    if (code)
        return code;
    int64_t seq = PQntuples(r) == 1 ? val_i64(r, 0, 0) : -1;
    PQclear(r);
    if (seq < 0) { /* no such instance, or another epoch owns it */
        a_text(&a, cp->instance);
        r = run(q, P_INST_EPOCH, &a, &code, "checkpoint", err);
        if (!r)
            return code;
        int found = PQntuples(r) == 1;
        int64_t epoch = found ? val_i64(r, 0, 0) : 0;
        PQclear(r);
        if (!found) {
            set_err(err, "checkpoint: no instance %s", cp->instance);
            return CV_ENOTFOUND;
        }
        set_err(err, "checkpoint: instance %s is owned by epoch %lld, this writer holds epoch %lld", cp->instance,
                (long long)epoch, (long long)cp->epoch);
        return CV_ECONFLICT;
    }
    seq -= nhist;
    for (int i = 0; i < nhist && !code; i++) {
        jv ev = jv_array_get(jv_copy(cp->history), i);
        jv type = member(ev, "type"), task = member(ev, "task"), data = member(ev, "data");
        a_init(&a);
        a_text(&a, cp->instance);
        a_i64(&a, ++seq);
        a_i64(&a, now);
        a_text(&a, jv_get_kind(type) == JV_KIND_STRING ? jv_string_value(type) : "");
        a_text(&a, jv_get_kind(task) == JV_KIND_STRING ? jv_string_value(task) : NULL);
        if (jv_get_kind(data) == JV_KIND_NULL) {
            jv_free(data);
            data = jv_invalid();
        }
        snprintf(what, sizeof what, "checkpoint of %s: history data", cp->instance);
        code = a_json(&a, data, what, err);
        if (!code)
            code = run0(q, P_HIST_INSERT, &a, "checkpoint", err);
        a_free(&a);
        jv_free(type);
        jv_free(task);
        jv_free(ev);
    }
    if (code)
        return code;
    if (jv_get_kind(cp->timers_del) == JV_KIND_ARRAY)
        jv_array_foreach(cp->timers_del, i, key)
        {
            if (!code) {
                a_init(&a);
                a_text(&a, cp->instance);
                a_text(&a, jv_get_kind(key) == JV_KIND_STRING ? jv_string_value(key) : "");
                code = run0(q, P_TIMER_DEL, &a, "checkpoint", err);
            }
            jv_free(key);
        }
    if (!code && jv_get_kind(cp->timers_add) == JV_KIND_ARRAY)
        jv_array_foreach(cp->timers_add, i, t)
        {
            if (!code) {
                jv key = member(t, "key"), at = member(t, "fireAt");
                a_init(&a);
                a_text(&a, cp->instance);
                a_text(&a, jv_get_kind(key) == JV_KIND_STRING ? jv_string_value(key) : "");
                a_i64(&a, jv_get_kind(at) == JV_KIND_NUMBER ? (int64_t)jv_number_value(at) : 0);
                code = run0(q, P_TIMER_PUT, &a, "checkpoint", err);
                jv_free(key);
                jv_free(at);
            }
            jv_free(t);
        }
    if (!code && jv_get_kind(cp->events) == JV_KIND_ARRAY) {
        jv seqs = jv_invalid();
        code = insert_events(q, jv_copy(cp->events), now, "emit", &seqs, err);
        jv_free(seqs);
    }
    if (!code && jv_get_kind(cp->tasks_add) == JV_KIND_ARRAY)
        jv_array_foreach(cp->tasks_add, i, t)
        {
            if (!code) {
                jv inst = jv_object_get(jv_copy(t), jv_string("instance"));
                if (jv_get_kind(inst) != JV_KIND_STRING)
                    t = jv_object_set(t, jv_string("instance"), jv_string(cp->instance));
                jv_free(inst);
                code = task_insert(q, jv_copy(t), NULL, err);
            }
            jv_free(t);
        }
    if (!code && jv_get_kind(cp->tasks_escalate) == JV_KIND_ARRAY)
        jv_array_foreach(cp->tasks_escalate, i, x)
        {
            if (!code)
                code = task_escalate_in(q, x, now, err);
            jv_free(x);
        }
    if (code)
        return code;
    int ends = cp->status && (!strcmp(cp->status, CV_ST_COMPLETED) || !strcmp(cp->status, CV_ST_FAULTED) ||
                              !strcmp(cp->status, CV_ST_CANCELLED));
    if (ends || jv_get_kind(cp->tasks_cancel) == JV_KIND_TRUE || jv_get_kind(cp->tasks_cancel) == JV_KIND_ARRAY)
        code = tasks_cancel(q, cp->instance, ends ? jv_true() : cp->tasks_cancel, now, err);
    return code;
}

static int pg_checkpoint(void *impl, struct cv_checkpoint *cps, int n, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "checkpoint", err);
    int64_t now = cv__wall_ms();
    for (int i = 0; i < n && !code; i++)
        code = apply_one(q, &cps[i], now, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < n; i++)
        cv_checkpoint_cleanup(&cps[i]);
    return code;
}

static int pg_history(void *impl, const char *id, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, id);
    PGresult *r = code ? NULL : run(q, P_INST_SEQ, &a, &code, "reading history", err);
    if (r && PQntuples(r) == 0) {
        set_err(err, "no instance %s", id);
        code = CV_ENOTFOUND;
    }
    PQclear(r);
    r = code ? NULL : run(q, P_HIST_GET, &a, &code, "reading history", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r) && !code; i++) {
        jv e = JV_OBJECT(jv_string("seq"), jv_number((double)val_i64(r, i, 0)), jv_string("time"),
                         jv_number((double)val_i64(r, i, 1)), jv_string("type"), val_text(r, i, 2));
        if (!PQgetisnull(r, i, 3))
            e = jv_object_set(e, jv_string("task"), val_text(r, i, 3));
        if (!PQgetisnull(r, i, 4)) {
            jv d;
            code = val_json(r, i, 4, &d, err);
            if (!code)
                e = jv_object_set(e, jv_string("data"), d);
        }
        list = jv_array_append(list, e);
    }
    PQclear(r);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

/* Runs a one-row RETURNING update of an id in a transaction: *v = column 0. */
static int returning_i64(struct pg *q, int id, struct args *a, int64_t *v, const char *key, const char *what,
                         jv *err)
{
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, what, err);
    PGresult *r = code ? NULL : run(q, id, a, &code, what, err);
    if (r && PQntuples(r) == 0) {
        set_err(err, "no instance %s", key);
        code = CV_ENOTFOUND;
    } else if (r) {
        *v = val_i64(r, 0, 0);
    }
    PQclear(r);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_bump_epoch(void *impl, const char *id, int64_t *epoch, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, id);
    return returning_i64(impl, P_INST_BUMP, &a, epoch, id, "bumping an epoch", err);
}

/* ------------------------------------------------------------------------ */
/* Timers, the bus, cursors                                                  */
/* ------------------------------------------------------------------------ */

static int pg_due_timers(void *impl, int64_t now, int limit, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_i64(&a, now);
    a_i64(&a, limit);
    PGresult *r = code ? NULL : run(q, P_TIMER_DUE, &a, &code, "reading due timers", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r); i++)
        list = jv_array_append(list, JV_OBJECT(jv_string("instance"), val_text(r, i, 0), jv_string("key"),
                                               val_text(r, i, 1), jv_string("fireAt"),
                                               jv_number((double)val_i64(r, i, 2))));
    PQclear(r);
    *out = list;
    return 0;
}

static int pg_next_timer(void *impl, int64_t *fire_at, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_TIMER_NEXT, NULL, &code, "reading timers", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    *fire_at = val_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_put_events(void *impl, jv events, jv *seqs, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "storing events", err);
    if (code)
        jv_free(events);
    else
        code = insert_events(q, events, cv__wall_ms(), "api", seqs, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_list_events(void *impl, int64_t after, int64_t now, int limit, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_i64(&a, after);
    a_i64(&a, now);
    a_i64(&a, limit);
    PGresult *r = code ? NULL : run(q, P_EV_LIST, &a, &code, "reading events", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r) && !code; i++) {
        jv ev;
        code = val_json(r, i, 1, &ev, err);
        if (!code)
            list = jv_array_append(list, JV_OBJECT(jv_string("seq"), jv_number((double)val_i64(r, i, 0)),
                                                   jv_string("event"), ev, jv_string("receivedAt"),
                                                   jv_number((double)val_i64(r, i, 2)), jv_string("origin"),
                                                   val_text(r, i, 3)));
    }
    PQclear(r);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int pg_purge_events(void *impl, int64_t now, int *purged, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_i64(&a, now);
    PGresult *r = code ? NULL : run(q, P_EV_PURGE, &a, &code, "purging events", err);
    if (r && purged)
        *purged = atoi(PQcmdTuples(r));
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* Several nodes share the database: no process may run its instances
 * alone (without leases, its writes would not be fenced). `conveyor serve`
 * runs them as a node (leases, docs/cluster.md) and never claims. */
static int pg_claim(void *impl, jv *err)
{
    struct pg *q = impl;
    set_err(err, "%s is shared by several nodes: `conveyor serve --store URL --node NAME` runs its instances "
                 "(`run --db` and `resume --db` keep runs in a SQLite file)",
            q->label);
    return CV_EUNSUPPORTED;
}

static int pg_get_cursor(void *impl, const char *name, int64_t *seq, jv *err)
{
    struct pg *q = impl;
    *seq = -1;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, name);
    PGresult *r = code ? NULL : run(q, P_CURSOR_GET, &a, &code, "reading a cursor", err);
    if (r && PQntuples(r) == 1)
        *seq = val_i64(r, 0, 0);
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_set_cursor(void *impl, const char *name, int64_t seq, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, name);
    a_i64(&a, seq);
    if (!code)
        code = run0(q, P_CURSOR_SET, &a, "writing a cursor", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

/* The advisory lock of a model name's registry changes (in a transaction). */
static int name_lock(struct pg *q, const char *name, jv *err)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return xlock(q, (int64_t)(h & 0x3fffffffffffffffULL) | 0x4000000000000000LL, err);
}

static int pg_put_model(void *impl, const char *name, const char *kind, jv card, const void *bytes, size_t len,
                        int64_t *version, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "storing a model", err);
    if (!code)
        code = name_lock(q, name, err);
    int64_t v = 0;
    struct args a;
    a_init(&a);
    a_text(&a, name);
    PGresult *r = code ? NULL : run(q, P_MODEL_NEXT, &a, &code, "storing a model", err);
    if (r)
        v = val_i64(r, 0, 0);
    PQclear(r);
    if (!code) {
        a_i64(&a, v);
        a_text(&a, kind);
        code = a_json(&a, card, "the model card", err);
        card = jv_invalid();
        a_bytes(&a, bytes, len);
        a_i64(&a, cv__wall_ms());
        if (!code)
            code = run0(q, P_MODEL_INSERT, &a, "storing a model", err);
    }
    jv_free(card);
    a_free(&a);
    code = tx_end(q, code, err);
    if (!code)
        *version = v;
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The card of row i of a P_MODEL_GET / P_MODEL_LIST result. */
static int model_card(PGresult *r, int i, jv *out, jv *err)
{
    jv card;
    int code = val_json(r, i, 4, &card, err);
    if (code)
        return code;
    if (jv_get_kind(card) != JV_KIND_OBJECT) {
        jv_free(card);
        card = jv_object();
    }
    card = jv_object_set(card, jv_string("name"), val_text(r, i, 0));
    card = jv_object_set(card, jv_string("version"), jv_number((double)val_i64(r, i, 1)));
    card = jv_object_set(card, jv_string("kind"), val_text(r, i, 2));
    card = jv_object_set(card, jv_string("status"), val_text(r, i, 3));
    card = jv_object_set(card, jv_string("createdAt"), jv_number((double)val_i64(r, i, 5)));
    card = jv_object_set(card, jv_string("updatedAt"), jv_number((double)val_i64(r, i, 6)));
    card = jv_object_set(card, jv_string("size"), jv_number((double)val_i64(r, i, 7)));
    *out = card;
    return 0;
}

static int pg_get_model(void *impl, const char *name, int64_t version, jv *card, void **bytes, size_t *len, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    /* one snapshot, so that the resolved version is the one read */
    int code = ensure(q, err);
    if (!code)
        code = exec_sql(q, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "reading a model", err);
    struct args a;
    a_init(&a);
    a_text(&a, name);
    PGresult *r = NULL;
    if (!code && version == 0) {
        r = run(q, P_MODEL_RESOLVE, &a, &code, "reading a model", err);
        if (r && PQntuples(r) == 0) {
            set_err(err, "no model named \"%s\" (or only retired versions)", name);
            code = CV_ENOTFOUND;
        } else if (r) {
            version = val_i64(r, 0, 0);
        }
        PQclear(r);
        r = NULL;
    }
    a_i64(&a, version);
    if (!code)
        r = run(q, P_MODEL_GET, &a, &code, "reading a model", err);
    if (r && PQntuples(r) == 0) {
        set_err(err, "no model %s@%lld", name, (long long)version);
        code = CV_ENOTFOUND;
    } else if (r) {
        code = model_card(r, 0, card, err);
    }
    PQclear(r);
    r = NULL;
    if (!code && bytes) {
        r = run_fmt(q, P_MODEL_BYTES, &a, 1, &code, "reading a model", err);
        if (r && PQntuples(r) == 1) {
            size_t n = (size_t)PQgetlength(r, 0, 0);
            *bytes = malloc(n ? n : 1);
            if (!*bytes) {
                set_err(err, "out of memory");
                code = CV_ENOMEM;
            } else {
                memcpy(*bytes, PQgetvalue(r, 0, 0), n);
                *len = n;
            }
        }
        if (code) {
            jv_free(*card);
            *card = jv_invalid();
        }
        PQclear(r);
    }
    tx_end(q, 1, NULL); /* a read: rolled back */
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_list_models(void *impl, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_MODEL_LIST, NULL, &code, "listing models", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r) && !code; i++) {
        jv card;
        code = model_card(r, i, &card, err);
        if (!code)
            list = jv_array_append(list, card);
    }
    PQclear(r);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

/* *status (n bytes) of name@version inside the caller's transaction: 0,
 * CV_ENOTFOUND, or a failure. */
static int model_status(struct pg *q, const char *name, int64_t version, char *status, size_t n, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, name);
    a_i64(&a, version);
    int code;
    PGresult *r = run(q, P_MODEL_STATUS, &a, &code, "reading a model", err);
    if (r && PQntuples(r) == 0) {
        set_err(err, "no model %s@%lld", name, (long long)version);
        code = CV_ENOTFOUND;
    } else if (r) {
        snprintf(status, n, "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return code;
}

static int pg_set_model_status(void *impl, const char *name, int64_t version, const char *status, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "changing a model's status", err);
    if (!code)
        code = name_lock(q, name, err);
    char from[16] = "";
    if (!code)
        code = model_status(q, name, version, from, sizeof from, err);
    if (!code && strcmp(from, status)) {
        if (!cv__store_model_move_ok(from, status)) {
            set_err(err, "model %s@%lld is %s: it cannot become %s", name, (long long)version, from, status);
            code = CV_ECONFLICT;
        }
        int64_t now = cv__wall_ms();
        struct args a;
        a_init(&a);
        a_text(&a, name);
        if (!code && !strcmp(status, "production")) {
            a_i64(&a, now);
            code = run0(q, P_MODEL_DEMOTE, &a, "changing a model's status", err);
            a.n = 1;
        }
        a_i64(&a, version);
        a_text(&a, status);
        a_i64(&a, now);
        if (!code)
            code = run0(q, P_MODEL_SET, &a, "changing a model's status", err);
        if (!code && (!strcmp(status, "retired") || !strcmp(status, "production"))) {
            a.n = 2;
            a_i64(&a, now);
            code = run0(q, P_ROUTE_DROP_VERSION, &a, "changing a model's status", err);
        }
    }
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int routing_read(struct pg *q, const char *name, jv *out, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, name);
    int code;
    PGresult *r = run(q, P_ROUTE_GET, &a, &code, "reading a model's canary and shadow", err);
    if (!r)
        return code;
    jv canary = jv_null(), shadow = jv_null();
    if (PQntuples(r) == 1) {
        if (!PQgetisnull(r, 0, 0))
            canary = JV_OBJECT(jv_string("version"), jv_number((double)val_i64(r, 0, 0)), jv_string("share"),
                               jv_number(strtod(PQgetvalue(r, 0, 1), NULL)));
        if (!PQgetisnull(r, 0, 2))
            shadow = JV_OBJECT(jv_string("version"), jv_number((double)val_i64(r, 0, 2)));
    }
    PQclear(r);
    *out = JV_OBJECT(jv_string("canary"), canary, jv_string("shadow"), shadow);
    return 0;
}

/* 1 when some version of `name` exists, 0 when none, or a negative code. */
static int model_named(struct pg *q, const char *name, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, name);
    int code;
    PGresult *r = run(q, P_MODEL_NEXT, &a, &code, "reading a model", err);
    if (!r)
        return code;
    int found = val_i64(r, 0, 0) > 1;
    PQclear(r);
    return found;
}

static int pg_get_model_routing(void *impl, const char *name, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    if (!code)
        code = exec_sql(q, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "reading a model", err);
    if (!code) {
        code = model_named(q, name, err);
        if (code == 0) {
            set_err(err, "no model named \"%s\"", name);
            code = CV_ENOTFOUND;
        } else if (code == 1) {
            code = routing_read(q, name, out, err);
        }
    }
    tx_end(q, 1, NULL);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_set_model_routing(void *impl, const char *name, const char *which, int64_t version, double share,
                                jv *out, jv *err)
{
    struct pg *q = impl;
    int canary = !strcmp(which, "canary");
    jv cur = jv_invalid();
    *out = jv_invalid();
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "setting a model's canary or shadow", err);
    if (!code)
        code = name_lock(q, name, err);
    if (!code) {
        code = model_named(q, name, err);
        if (code == 0) {
            set_err(err, "no model named \"%s\"", name);
            code = CV_ENOTFOUND;
        } else if (code == 1) {
            code = 0;
        }
    }
    if (!code && version > 0) {
        char status[16] = "";
        code = model_status(q, name, version, status, sizeof status, err);
        const char *why = code ? NULL : cv__store_routing_refusal(status, canary);
        if (why) {
            set_err(err, "%s@%lld %s", name, (long long)version, why);
            code = CV_ECONFLICT;
        }
    }
    if (!code)
        code = routing_read(q, name, &cur, err);
    if (!code) {
        int64_t cv = 0, sv = 0;
        double cs = 0;
        cv__store_routing_merge(cur, canary, version, share, &cv, &cs, &sv);
        struct args a;
        a_init(&a);
        a_text(&a, name);
        if (cv > 0)
            a_i64(&a, cv);
        else
            a_text(&a, NULL);
        a_f64(&a, cs);
        if (sv > 0)
            a_i64(&a, sv);
        else
            a_text(&a, NULL);
        a_i64(&a, cv__wall_ms());
        code = run0(q, P_ROUTE_PUT, &a, "setting a model's canary or shadow", err);
    }
    if (!code)
        code = routing_read(q, name, out, err);
    jv_free(cur);
    code = tx_end(q, code, err);
    if (code && jv_is_valid(*out)) {
        jv_free(*out);
        *out = jv_invalid();
    }
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_model_generation(void *impl, int64_t *gen, jv *err)
{
    struct pg *q = impl;
    *gen = 0;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_REGISTRY_GEN, NULL, &code, "reading the model registry's generation", err);
    if (r && PQntuples(r) == 1)
        *gen = val_i64(r, 0, 0);
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Review tasks                                                              */
/* ------------------------------------------------------------------------ */

static jv tmember(jv o, const char *key)
{
    return jv_get_kind(o) == JV_KIND_OBJECT ? jv_object_get(jv_copy(o), jv_string(key)) : jv_invalid();
}

/* A string member of `o` (borrowed) as a parameter (NULL when not a
 * string); the value is copied into the args. */
static void a_member(struct args *a, jv o, const char *key)
{
    jv v = tmember(o, key);
    if (jv_get_kind(v) == JV_KIND_STRING) {
        char *copy = strdup(jv_string_value(v));
        a_text(a, copy); /* NULL when out of memory: SQL NULL */
        a->owned[a->n - 1] = copy;
    } else {
        a_text(a, NULL);
    }
    jv_free(v);
}

static void a_time(struct args *a, jv o, const char *key)
{
    jv v = tmember(o, key);
    int64_t ms;
    if (jv_get_kind(v) == JV_KIND_STRING && !cv__task_parse_time(jv_string_value(v), &ms))
        a_i64(a, ms);
    else
        a_text(a, NULL);
    jv_free(v);
}

/* The parameters $1..$17 of P_TASK_INSERT / P_TASK_UPDATE from `task` (consumed). */
static int task_args(struct args *a, jv task, jv *err)
{
    a_member(a, task, "id");
    a_member(a, task, "instance");
    a_member(a, task, "task");
    jv wf = tmember(task, "workflow");
    a_member(a, wf, "namespace");
    a_member(a, wf, "name");
    a_member(a, wf, "version");
    jv_free(wf);
    a_member(a, task, "title");
    a_member(a, task, "status");
    a_member(a, task, "role");
    a_member(a, task, "assignee");
    jv p = tmember(task, "priority");
    a_i64(a, jv_get_kind(p) == JV_KIND_NUMBER ? (int64_t)jv_number_value(p) : 0);
    jv_free(p);
    a_time(a, task, "due");
    a_member(a, task, "claimedBy");
    a_time(a, task, "claimExpiresAt");
    jv opened = tmember(task, "openedAt");
    if (jv_get_kind(opened) == JV_KIND_STRING)
        a_time(a, task, "openedAt");
    else /* opened_at is NOT NULL */
        a_i64(a, cv__wall_ms());
    jv_free(opened);
    a_time(a, task, "completedAt");
    return a_json(a, task, "a task", err);
}

static int task_insert(struct pg *q, jv task, int *existed, jv *err)
{
    jv title = tmember(task, "title");
    int ok = jv_get_kind(title) == JV_KIND_STRING;
    jv_free(title);
    if (!ok) {
        jv_free(task);
        set_err(err, "a task needs a title");
        return CV_EINVAL;
    }
    struct args a;
    a_init(&a);
    int code = task_args(&a, task, err);
    PGresult *r = code ? NULL : run(q, P_TASK_INSERT, &a, &code, "storing a task", err);
    if (r && existed)
        *existed = PQntuples(r) == 0;
    PQclear(r);
    a_free(&a);
    return code;
}

static int task_read(struct pg *q, const char *id, jv *out, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, id);
    int code;
    PGresult *r = run(q, P_TASK_GET, &a, &code, "reading a task", err);
    if (!r)
        return code;
    if (PQntuples(r) == 0) {
        set_err(err, "no task %s", id);
        code = CV_ENOTFOUND;
    } else {
        code = val_json(r, 0, 0, out, err);
    }
    PQclear(r);
    return code;
}

static int task_write(struct pg *q, jv task, jv *err)
{
    struct args a;
    a_init(&a);
    int code = task_args(&a, task, err);
    if (!code)
        code = run0(q, P_TASK_UPDATE, &a, "storing a task", err);
    a_free(&a);
    return code;
}

static int tasks_cancel(struct pg *q, const char *instance, jv which, int64_t now, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, instance);
    int code;
    PGresult *r = run(q, P_TASK_OPEN_OF, &a, &code, "cancelling tasks", err);
    if (!r)
        return code;
    jv ids = jv_array();
    for (int i = 0; i < PQntuples(r); i++)
        ids = jv_array_append(ids, val_text(r, i, 0));
    PQclear(r);
    jv_array_foreach(ids, i, id)
    {
        int pick = jv_get_kind(which) != JV_KIND_ARRAY;
        if (!pick)
            jv_array_foreach(which, j, w)
            {
                pick |= jv_equal(w, jv_copy(id));
            }
        if (pick && !code) {
            jv task;
            code = task_read(q, jv_string_value(id), &task, err);
            if (!code)
                code = task_write(q, cv__task_cancelled(task, now), err);
        }
        jv_free(id);
    }
    jv_free(ids);
    return code;
}

static int pg_put_task(void *impl, jv task, int *existed, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "storing a task", err);
    if (code)
        jv_free(task);
    else
        code = task_insert(q, task, existed, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_get_task(void *impl, const char *id, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    if (!code)
        code = task_read(q, id, out, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_list_tasks(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    struct pg *q = impl;
    long long cp = 0, cd = 0, cs = 0;
    if (after) {
        char tail;
        if (sscanf(after, "%lld.%lld.%lld%c", &cp, &cd, &cs, &tail) != 3) {
            jv_free(filter);
            set_err(err, "after: not a cursor this server gave (%s)", after);
            return CV_EINVAL;
        }
    }
    struct args a;
    a_init(&a);
    a_member(&a, filter, "status");
    a_member(&a, filter, "role");
    a_member(&a, filter, "assignee");
    a_member(&a, filter, "namespace");
    a_member(&a, filter, "name");
    a_member(&a, filter, "instance");
    if (after) {
        a_i64(&a, cp);
        a_i64(&a, cd);
        a_i64(&a, cs);
    } else {
        a_text(&a, NULL);
        a_text(&a, NULL);
        a_text(&a, NULL);
    }
    a_i64(&a, limit + 1);
    jv_free(filter);
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_TASK_LIST, &a, &code, "listing tasks", err);
    pthread_mutex_unlock(&q->lock);
    a_free(&a);
    if (!r)
        return code;
    jv list = jv_array(), last = jv_null();
    int n = PQntuples(r);
    for (int i = 0; i < n && i < limit && !code; i++) {
        jv t;
        code = val_json(r, i, 0, &t, err);
        if (code)
            break;
        list = jv_array_append(list, t);
        jv_free(last);
        last = jv_string_fmt("%lld.%lld.%lld", (long long)val_i64(r, i, 1), (long long)val_i64(r, i, 2),
                             (long long)val_i64(r, i, 3));
    }
    if (n <= limit) { /* no more rows */
        jv_free(last);
        last = jv_null();
    }
    PQclear(r);
    if (code) {
        jv_free(list);
        jv_free(last);
        return code;
    }
    *out = list;
    *next = last;
    return 0;
}

static int feedback_insert(struct pg *q, jv examples, jv *err)
{
    int code = 0;
    jv_array_foreach(examples, i, ex)
    {
        if (!code) {
            struct args a;
            a_init(&a);
            a_member(&a, ex, "task");
            a_member(&a, ex, "instance");
            a_member(&a, ex, "field");
            a_member(&a, ex, "model");
            jv o = tmember(ex, "overridden");
            a_i64(&a, jv_get_kind(o) == JV_KIND_TRUE);
            jv_free(o);
            a_member(&a, ex, "reviewer");
            a_time(&a, ex, "at");
            code = a_json(&a, jv_copy(ex), "a feedback example", err);
            if (!code)
                code = run0(q, P_FEEDBACK_INSERT, &a, "storing feedback", err);
            a_free(&a);
        }
        jv_free(ex);
    }
    jv_free(examples);
    return code;
}

static int pg_update_task(void *impl, const char *id, cv_task_change_fn change, void *ctx, jv *out, jv *err)
{
    struct pg *q = impl;
    jv result = jv_invalid();
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "updating a task", err);
    jv cur = jv_invalid();
    if (!code) { /* the row locked for the change */
        code = exec_sql(q, "SET LOCAL lock_timeout = '10s'", "updating a task", err);
        struct args a;
        a_init(&a);
        a_text(&a, id);
        char sql[] = "SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE";
        PGresult *r = code ? NULL : PQexecParams(q->c, sql, 1, NULL, a.v, NULL, NULL, 0);
        if (!code && PQresultStatus(r) != PGRES_TUPLES_OK)
            code = pg_fail(q, r, "updating a task", err);
        else
            PQclear(r);
    }
    if (!code)
        code = task_read(q, id, &cur, err);
    if (!code) {
        jv events = jv_invalid(), fb = jv_invalid();
        code = change(cur, ctx, &result, &events, &fb, err);
        if (!code)
            code = task_write(q, jv_copy(result), err);
        if (!code && jv_get_kind(events) == JV_KIND_ARRAY) {
            jv seqs = jv_invalid();
            code = insert_events(q, jv_copy(events), cv__wall_ms(), "api", &seqs, err);
            jv_free(seqs);
        }
        if (!code && jv_get_kind(fb) == JV_KIND_ARRAY)
            code = feedback_insert(q, jv_copy(fb), err);
        jv_free(events);
        jv_free(fb);
    }
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    if (code) {
        jv_free(result);
        return code;
    }
    *out = result;
    return 0;
}

static int pg_task_stats(void *impl, jv *out, jv *err)
{
    static const char *const names[] = {"open", "completed", "reviewed", "instances", "models"};
    static const char *const sqls[] = {
        "SELECT coalesce(role, ''), count(*) FROM tasks WHERE status IN ('open', 'claimed', 'escalated')"
        " GROUP BY 1",
        "SELECT coalesce(namespace || '/' || name, ''), count(*) FROM tasks WHERE status = 'completed' GROUP BY 1",
        "SELECT namespace || '/' || name, count(DISTINCT instance) FROM tasks WHERE instance IS NOT NULL"
        " AND namespace IS NOT NULL GROUP BY 1",
        "SELECT namespace || '/' || name, count(*) FROM instances WHERE (namespace, name) IN"
        " (SELECT namespace, name FROM tasks WHERE instance IS NOT NULL) GROUP BY 1",
        "SELECT model, count(*), sum(overridden) FROM feedback GROUP BY 1",
    };
    struct pg *q = impl;
    jv o = jv_object();
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    for (size_t i = 0; i < sizeof sqls / sizeof *sqls && !code; i++) {
        PGresult *r = PQexec(q->c, sqls[i]);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            code = pg_fail(q, r, "task statistics", err);
            break;
        }
        jv v = jv_object();
        for (int k = 0; k < PQntuples(r); k++) {
            const char *key = PQgetisnull(r, k, 0) ? "" : PQgetvalue(r, k, 0);
            if (PQnfields(r) > 2)
                v = jv_object_set(v, jv_string(key),
                                  JV_OBJECT(jv_string("reviewed"), jv_number((double)val_i64(r, k, 1)),
                                            jv_string("overridden"), jv_number((double)val_i64(r, k, 2))));
            else
                v = jv_object_set(v, jv_string(key), jv_number((double)val_i64(r, k, 1)));
        }
        PQclear(r);
        o = jv_object_set(o, jv_string(names[i]), v);
    }
    pthread_mutex_unlock(&q->lock);
    if (code) {
        jv_free(o);
        return code;
    }
    *out = o;
    return 0;
}

static int pg_list_feedback(void *impl, const char *model, jv *out, jv *err)
{
    struct pg *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    struct args a;
    a_init(&a);
    a_text(&a, model);
    PGresult *r = code ? NULL : run(q, P_FEEDBACK_LIST, &a, &code, "reading feedback", err);
    pthread_mutex_unlock(&q->lock);
    if (!r)
        return code;
    jv list = jv_array();
    for (int i = 0; i < PQntuples(r) && !code; i++) {
        jv ex;
        code = val_json(r, i, 0, &ex, err);
        if (!code)
            list = jv_array_append(list, ex);
    }
    PQclear(r);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

/* ------------------------------------------------------------------------ */
/* Leases (store.h; docs/cluster.md)                                         */
/* ------------------------------------------------------------------------ */

static int pg_set_node(void *impl, const char *node, int64_t lease_ms)
{
    struct pg *q = impl;
    char *n = NULL;
    if (node && !(n = strdup(node)))
        return CV_ENOMEM;
    pthread_mutex_lock(&q->lock);
    free(q->node);
    q->node = n;
    q->lease_ms = lease_ms;
    pthread_mutex_unlock(&q->lock);
    return 0;
}

static int cmp_seq(const void *x, const void *y)
{
    const int64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

static int pg_lease_acquire(void *impl, const char *node, int64_t now, int64_t lease_ms, int limit, int reclaim,
                            jv *out, jv *err)
{
    struct pg *q = impl;
    struct args a;
    a_init(&a);
    a_text(&a, node);
    a_i64(&a, now);
    a_i64(&a, lease_ms);
    a_i64(&a, limit);
    a_bool(&a, reclaim);
    pthread_mutex_lock(&q->lock);
    int code = tx_begin(q, "taking leases", err);
    PGresult *r = code ? NULL : run(q, P_LEASE_ACQUIRE, &a, &code, "taking leases", err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    if (code) {
        PQclear(r);
        return code;
    }
    /* oldest first (RETURNING gives no order): by creation */
    int n = PQntuples(r);
    int64_t (*rows)[2] = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows) {
        PQclear(r);
        return CV_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        rows[i][0] = val_i64(r, i, 2);
        rows[i][1] = i;
    }
    qsort(rows, (size_t)n, sizeof *rows, cmp_seq);
    jv list = jv_array();
    for (int k = 0; k < n; k++) {
        int i = (int)rows[k][1];
        list = jv_array_append(list, JV_OBJECT(jv_string("id"), val_text(r, i, 0), jv_string("epoch"),
                                               jv_number((double)val_i64(r, i, 1))));
    }
    free(rows);
    PQclear(r);
    *out = list;
    return 0;
}

static int pg_lease_take(void *impl, const char *id, const char *node, int64_t now, int64_t lease_ms, int64_t *epoch,
                         jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, id);
    a_text(&a, node);
    a_i64(&a, now);
    a_i64(&a, lease_ms);
    return returning_i64(impl, P_LEASE_TAKE, &a, epoch, id, "taking an instance", err);
}

/* A one-statement update of `node`'s leases; *n = rows (may be NULL). */
static int lease_update(struct pg *q, int id, struct args *a, int64_t *n, const char *what, jv *err)
{
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, id, a, &code, what, err);
    if (r && n)
        *n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int pg_lease_renew(void *impl, const char *node, int64_t now, int64_t lease_ms, int64_t *held, jv *err)
{
    struct args a;
    a_init(&a);
    a_text(&a, node);
    a_i64(&a, now);
    a_i64(&a, lease_ms);
    return lease_update(impl, P_LEASE_RENEW, &a, held, "renewing leases", err);
}

static int pg_lease_release(void *impl, const char *node, jv *err)
{
    struct pg *q = impl;
    struct args a;
    a_init(&a);
    a_text(&a, node);
    int code = lease_update(q, P_LEASE_RELEASE, &a, NULL, "ending leases", err);
    if (!code) { /* the others take them at once */
        a_init(&a);
        a_text(&a, "lease");
        pthread_mutex_lock(&q->lock);
        code = run0(q, P_NOTIFY, &a, "ending leases", err);
        pthread_mutex_unlock(&q->lock);
    }
    return code;
}

/* LISTEN on a connection of its own; poll() its socket. A broken listening
 * connection is made again at the next call (what was announced meanwhile
 * is found by the caller's polling). */
static int pg_watch(void *impl, int timeout_ms, int *what, jv *err)
{
    struct pg *q = impl;
    *what = 0;
    pthread_mutex_lock(&q->listen_lock);
    int code = 0;
    if (q->listen && PQstatus(q->listen) != CONNECTION_OK) {
        PQfinish(q->listen);
        q->listen = NULL;
    }
    if (!q->listen) {
        q->listen = PQconnectdb(q->conninfo);
        PQsetNoticeProcessor(q->listen, notice, q->label);
        PGresult *r = PQstatus(q->listen) == CONNECTION_OK ? PQexec(q->listen, "LISTEN conveyor") : NULL;
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            char m[512];
            set_err(err, "%s: cannot listen for other nodes' changes: %s", q->label,
                    pg_msg(PQerrorMessage(q->listen), m, sizeof m));
            PQclear(r);
            PQfinish(q->listen);
            q->listen = NULL;
            pthread_mutex_unlock(&q->listen_lock);
            struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL); /* the caller polls meanwhile */
            return CV_EIO;
        }
        PQclear(r);
    }
    PGnotify *n;
    int any = 0;
    for (int round = 0; round < 2 && !any; round++) {
        if (round == 1) {
            struct pollfd pfd = {.fd = PQsocket(q->listen), .events = POLLIN};
            if (poll(&pfd, 1, timeout_ms) <= 0)
                break;
        }
        if (!PQconsumeInput(q->listen)) {
            code = CV_EIO;
            break;
        }
        while ((n = PQnotifies(q->listen))) {
            any = 1;
            if (!strcmp(n->extra, "bus"))
                *what |= CV_WATCH_BUS;
            else if (!strcmp(n->extra, "lease"))
                *what |= CV_WATCH_LEASE;
            PQfreemem(n);
        }
    }
    pthread_mutex_unlock(&q->listen_lock);
    if (code)
        set_err(err, "%s: the listening connection was lost", q->label);
    return code;
}

static int pg_lease_owned(void *impl, const char *node, jv *out, jv *err)
{
    return list_ids(impl, P_LEASE_OWNED, node, "listing a node's instances", out, err);
}

static int pg_lease_name(void *impl, const char *name, const char *node, int64_t now, int64_t lease_ms, int *held,
                         jv *err)
{
    struct pg *q = impl;
    struct args a;
    a_init(&a);
    a_text(&a, name);
    a_text(&a, node);
    a_i64(&a, now);
    a_i64(&a, lease_ms);
    *held = 0;
    pthread_mutex_lock(&q->lock);
    int code = ensure(q, err);
    PGresult *r = code ? NULL : run(q, P_LEASE_NAME, &a, &code, "taking a named lease", err);
    if (r)
        *held = PQntuples(r) == 1;
    PQclear(r);
    pthread_mutex_unlock(&q->lock);
    return code;
}

const struct cv_store_ops cv__store_postgres = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .put_workflow = pg_put_workflow,
    .get_workflow = pg_get_workflow,
    .list_workflows = pg_list_workflows,
    .create_instance = pg_create_instance,
    .create_instances = pg_create_instances,
    .get_instance = pg_get_instance,
    .list_instances = pg_list_instances,
    .unfinished_instances = pg_unfinished_instances,
    .checkpoint = pg_checkpoint,
    .history = pg_history,
    .bump_epoch = pg_bump_epoch,
    .due_timers = pg_due_timers,
    .next_timer = pg_next_timer,
    .put_events = pg_put_events,
    .list_events = pg_list_events,
    .purge_events = pg_purge_events,
    .claim = pg_claim,
    .get_cursor = pg_get_cursor,
    .set_cursor = pg_set_cursor,
    .put_model = pg_put_model,
    .get_model = pg_get_model,
    .list_models = pg_list_models,
    .set_model_status = pg_set_model_status,
    .get_model_routing = pg_get_model_routing,
    .set_model_routing = pg_set_model_routing,
    .model_generation = pg_model_generation,
    .put_task = pg_put_task,
    .get_task = pg_get_task,
    .list_tasks = pg_list_tasks,
    .update_task = pg_update_task,
    .task_stats = pg_task_stats,
    .list_feedback = pg_list_feedback,
    .set_node = pg_set_node,
    .lease_acquire = pg_lease_acquire,
    .lease_take = pg_lease_take,
    .lease_renew = pg_lease_renew,
    .lease_owned = pg_lease_owned,
    .lease_release = pg_lease_release,
    .lease_name = pg_lease_name,
    .watch = pg_watch,
};
