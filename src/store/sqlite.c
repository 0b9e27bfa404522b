/*
 * sqlite.c — the SQLite backend of the store (store.h): one database file in
 * WAL mode with synchronous=FULL, the embedded default (DESIGN.md decision 4).
 *
 * It owns the connection, its prepared statements (prepared once, reset and
 * reused), the schema migrations (sqlite_schema.h) and the mapping from
 * SQLite result codes to CV_* codes. Only src/store/store.c calls the table
 * at the end of this file; nothing else may open the database or write SQL
 * against it. Argument shapes (checkpoint events, timers, filters) are
 * checked by store.c before they arrive here, so that every backend accepts
 * and refuses the same input.
 *
 * A handle may be used from several threads: every operation holds the
 * handle's mutex for its duration (SQLite itself is opened without its own
 * mutexes). Several handles, in one process or many, may share one file:
 * SQLite's locks serialise writers, and a writer that cannot get the lock
 * within the busy timeout (5 s, CONVEYOR_SQLITE_BUSY_MS) fails with CV_EBUSY.
 * Every write starts with BEGIN IMMEDIATE, so a transaction never discovers
 * half-way that it cannot write.
 */
#include "store/store.h"

#include "common/util.h"
#include "conveyor.h"
#include "store/sqlite_schema.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define DEFAULT_BUSY_MS 5000

/* ------------------------------------------------------------------------ */
/* Statements                                                                */
/* ------------------------------------------------------------------------ */

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_WF_INSERT,
    S_WF_TEXT,
    S_WF_GET,
    S_WF_LATEST,
    S_WF_LIST,
    S_INST_BY_KEY,
    S_INST_INSERT,
    S_INST_GET,
    S_INST_SEQ,
    S_INST_UNFINISHED,
    S_INST_EPOCH,
    S_INST_UPDATE,
    S_INST_BUMP,
    S_HIST_INSERT,
    S_HIST_GET,
    S_TIMER_PUT,
    S_TIMER_DEL,
    S_TIMER_DUE,
    S_TIMER_NEXT,
    S_EV_INSERT,
    S_EV_LIST,
    S_EV_PURGE,
    S_CURSOR_GET,
    S_CURSOR_SET,
    S_MODEL_NEXT,
    S_MODEL_INSERT,
    S_MODEL_RESOLVE,
    S_MODEL_GET,
    S_MODEL_LIST,
    S_MODEL_STATUS,
    S_MODEL_DEMOTE,
    S_MODEL_SET,
    S_ROUTE_GET,
    S_ROUTE_PUT,
    S_ROUTE_DROP_VERSION,
    S_REGISTRY_GEN,
    S_TASK_INSERT,
    S_TASK_GET,
    S_TASK_UPDATE,
    S_TASK_LIST,
    S_TASK_OPEN_OF,
    S_FEEDBACK_INSERT,
    S_FEEDBACK_LIST,
    S_LEASE_ACQUIRE,
    S_LEASE_TAKE,
    S_LEASE_RENEW,
    S_LEASE_OWNED,
    S_LEASE_RELEASE,
    S_LEASE_NAME,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_WF_INSERT] = "INSERT INTO workflows (namespace, name, version, text, deployed_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                    " ON CONFLICT DO NOTHING",
    [S_WF_TEXT] = "SELECT text FROM workflows WHERE namespace = ?1 AND name = ?2 AND version = ?3",
    [S_WF_GET] = "SELECT version, text, deployed_at FROM workflows"
                 " WHERE namespace = ?1 AND name = ?2 AND version = ?3",
    [S_WF_LATEST] = "SELECT version, text, deployed_at FROM workflows WHERE namespace = ?1 AND name = ?2"
                    " ORDER BY version COLLATE cv_semver DESC LIMIT 1",
    [S_WF_LIST] = "SELECT namespace, name, version, deployed_at FROM workflows"
                  " ORDER BY namespace, name, version COLLATE cv_semver",
    [S_INST_BY_KEY] = "SELECT id FROM instances WHERE idempotency_key = ?1",
    [S_INST_INSERT] = "INSERT INTO instances (id, namespace, name, version, status, input, idempotency_key,"
                      " created_at, updated_at, owner, lease_until, epoch)"
                      " VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
    [S_INST_GET] = "SELECT id, namespace, name, version, status, input, output, error, state, epoch,"
                   " created_at, updated_at, owner FROM instances WHERE id = ?1",
    [S_INST_SEQ] = "SELECT created_seq FROM instances WHERE id = ?1",
    [S_INST_UNFINISHED] = "SELECT id FROM instances WHERE status IN ('pending', 'running', 'waiting')"
                          " ORDER BY created_seq",
    [S_INST_EPOCH] = "SELECT epoch FROM instances WHERE id = ?1",
    /* The epoch check and the history numbering ride on the update: one
     * statement per checkpoint; on no row, S_INST_EPOCH tells why. */
    [S_INST_UPDATE] = "UPDATE instances SET status = coalesce(?2, status), state = coalesce(?3, state),"
                      " output = coalesce(?4, output), error = coalesce(?5, error), updated_at = ?6,"
                      " history_seq = history_seq + ?7 WHERE id = ?1 AND (?8 = 0 OR epoch = ?8)"
                      " RETURNING history_seq",
    [S_INST_BUMP] = "UPDATE instances SET epoch = epoch + 1 WHERE id = ?1 RETURNING epoch",
    [S_HIST_INSERT] = "INSERT INTO history (instance, seq, time, type, task, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_HIST_GET] = "SELECT seq, time, type, task, data FROM history WHERE instance = ?1 ORDER BY seq",
    [S_TIMER_PUT] = "INSERT OR REPLACE INTO timers (instance, key, fire_at) VALUES (?1, ?2, ?3)",
    [S_TIMER_DEL] = "DELETE FROM timers WHERE instance = ?1 AND key = ?2",
    [S_TIMER_DUE] = "SELECT instance, key, fire_at FROM timers WHERE fire_at <= ?1"
                    " ORDER BY fire_at, instance, key LIMIT ?2",
    [S_TIMER_NEXT] = "SELECT min(fire_at) FROM timers",
    [S_EV_INSERT] = "INSERT INTO events (type, received_at, expires_at, event, origin) VALUES (?1, ?2, ?3, ?4, ?5)"
                    " RETURNING seq",
    [S_EV_LIST] = "SELECT seq, event, received_at, origin FROM events WHERE seq > ?1 AND expires_at > ?2 ORDER BY seq LIMIT ?3",
    [S_EV_PURGE] = "DELETE FROM events WHERE expires_at <= ?1",
    [S_CURSOR_GET] = "SELECT seq FROM cursors WHERE name = ?1",
    [S_CURSOR_SET] = "INSERT INTO cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = ?2",
    [S_MODEL_NEXT] = "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = ?1",
    [S_MODEL_INSERT] = "INSERT INTO models (name, version, kind, status, card, bytes, created_at, updated_at)"
                       " VALUES (?1, ?2, ?3, 'draft', ?4, ?5, ?6, ?6)",
    /* what a bare NAME means: production, else the newest not retired */
    [S_MODEL_RESOLVE] = "SELECT version FROM models WHERE name = ?1 AND status <> 'retired'"
                        " ORDER BY status = 'production' DESC, version DESC LIMIT 1",
    /* length(bytes) reads the size from the record header, not the blob */
    [S_MODEL_GET] = "SELECT name, version, kind, status, card, created_at, updated_at, length(bytes), bytes"
                    " FROM models WHERE name = ?1 AND version = ?2",
    [S_MODEL_LIST] = "SELECT name, version, kind, status, card, created_at, updated_at, length(bytes)"
                     " FROM models ORDER BY name, version",
    [S_MODEL_STATUS] = "SELECT status FROM models WHERE name = ?1 AND version = ?2",
    [S_MODEL_DEMOTE] = "UPDATE models SET status = 'approved', updated_at = ?2 WHERE name = ?1 AND status = 'production'",
    [S_MODEL_SET] = "UPDATE models SET status = ?3, updated_at = ?4 WHERE name = ?1 AND version = ?2",
    [S_ROUTE_GET] = "SELECT canary_version, canary_share, shadow_version FROM model_routing WHERE name = ?1",
    [S_ROUTE_PUT] = "INSERT INTO model_routing (name, canary_version, canary_share, shadow_version, updated_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET canary_version = ?2,"
                    " canary_share = ?3, shadow_version = ?4, updated_at = ?5",
    /* a version that is retired or promoted stops being the canary or the
     * shadow (every right-hand side reads the row as it was) */
    [S_ROUTE_DROP_VERSION] = "UPDATE model_routing SET"
                             " canary_version = CASE WHEN canary_version = ?2 THEN NULL ELSE canary_version END,"
                             " canary_share = CASE WHEN canary_version = ?2 THEN 0 ELSE canary_share END,"
                             " shadow_version = CASE WHEN shadow_version = ?2 THEN NULL ELSE shadow_version END,"
                             " updated_at = ?3 WHERE name = ?1 AND (canary_version = ?2 OR shadow_version = ?2)",
    [S_REGISTRY_GEN] = "SELECT generation FROM model_registry WHERE id = 1",
    /* tasks: the columns ?1..?17 are bound by bind_task from the doc */
    [S_TASK_INSERT] = "INSERT INTO tasks (id, instance, task_ref, namespace, name, version, title, status, role,"
                      " assignee, priority, due_at, claimed_by, claim_expires_at, opened_at, completed_at, doc)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                      " ON CONFLICT (id) DO NOTHING",
    [S_TASK_GET] = "SELECT doc FROM tasks WHERE id = ?1",
    [S_TASK_UPDATE] = "UPDATE tasks SET instance = ?2, task_ref = ?3, namespace = ?4, name = ?5, version = ?6,"
                      " title = ?7, status = ?8, role = ?9, assignee = ?10, priority = ?11, due_at = ?12,"
                      " claimed_by = ?13, claim_expires_at = ?14, opened_at = ?15, completed_at = ?16, doc = ?17"
                      " WHERE id = ?1",
    /* the queue order; ?7..?9 the cursor (priority, due or max, seq) of the last row seen */
    [S_TASK_LIST] = "SELECT doc, priority, coalesce(due_at, 9223372036854775807), seq FROM tasks"
                    " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR role = ?2)"
                    " AND (?3 IS NULL OR assignee = ?3) AND (?4 IS NULL OR namespace = ?4)"
                    " AND (?5 IS NULL OR name = ?5) AND (?6 IS NULL OR instance = ?6)"
                    " AND (?9 IS NULL OR (-priority, coalesce(due_at, 9223372036854775807), seq) > (-?7, ?8, ?9))"
                    " ORDER BY priority DESC, coalesce(due_at, 9223372036854775807), seq LIMIT ?10",
    [S_TASK_OPEN_OF] = "SELECT id FROM tasks WHERE instance = ?1 AND status IN ('open', 'claimed', 'escalated')",
    [S_FEEDBACK_INSERT] = "INSERT INTO feedback (task, instance, field, model, overridden, reviewer, at, example)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (task, field) DO NOTHING",
    [S_FEEDBACK_LIST] = "SELECT example FROM feedback WHERE ?1 IS NULL OR model = ?1 OR model LIKE ?1 || '@%'"
                        " ORDER BY seq",
    /* ?1 node, ?2 now, ?3 lease ms, ?4 limit, ?5 reclaim (the write lock
     * of BEGIN IMMEDIATE is what "skips rows another transaction holds"
     * here: one writer at a time) */
    [S_LEASE_ACQUIRE] = "UPDATE instances SET owner = ?1, lease_until = ?2 + ?3, epoch = epoch + 1"
                        " WHERE created_seq IN (SELECT created_seq FROM instances"
                        " WHERE status IN ('pending', 'running', 'waiting')"
                        " AND (lease_until < ?2 OR (?5 AND owner = ?1)) ORDER BY created_seq LIMIT ?4)"
                        " RETURNING id, epoch, created_seq",
    [S_LEASE_TAKE] = "UPDATE instances SET owner = ?2, lease_until = ?3 + ?4, epoch = epoch + 1 WHERE id = ?1"
                     " RETURNING epoch",
    [S_LEASE_RENEW] = "UPDATE instances SET lease_until = ?2 + ?3"
                      " WHERE owner = ?1 AND status IN ('pending', 'running', 'waiting')",
    [S_LEASE_OWNED] = "SELECT id FROM instances WHERE owner = ?1"
                      " AND status NOT IN ('completed', 'faulted', 'cancelled') ORDER BY created_seq",
    [S_LEASE_RELEASE] = "UPDATE instances SET lease_until = 0"
                        " WHERE owner = ?1 AND status IN ('pending', 'running', 'waiting')",
    [S_LEASE_NAME] = "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3 + ?4)"
                     " ON CONFLICT (name) DO UPDATE SET owner = ?2, until = ?3 + ?4"
                     " WHERE leases.until < ?3 OR leases.owner = ?2 RETURNING owner",
};

/* list_instances: one statement per combination of filters, so that each can
 * use its index (bit 0 status, bit 1 namespace, bit 2 name). */
#define LIST_VARIANTS 8

struct sq {
    sqlite3 *db;
    char *path;
    int claim_fd; /* PATH.lock, flock()ed by claim(); -1 */
    pthread_mutex_t lock;
    sqlite3_stmt *stmts[S_COUNT];
    sqlite3_stmt *lists[LIST_VARIANTS];
    char *node;       /* set_node: creations are owned by it (NULL: by none) */
    int64_t lease_ms;
};

static void set_err(jv *err, const char *fmt, ...) JV_PRINTF_LIKE(2, 3);
static void set_err(jv *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    *err = jv_string_vfmt(fmt, ap);
    va_end(ap);
}

/* The CV_* code for a SQLite result code (primary or extended). */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return CV_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CV_EBUSY;
    case SQLITE_NOMEM:
        return CV_ENOMEM;
    case SQLITE_CONSTRAINT:
        return CV_ECONFLICT;
    default: /* FULL, IOERR, CORRUPT, NOTADB, READONLY, CANTOPEN, ... */
        return CV_EIO;
    }
}

/*
 * Records a SQLite failure: *err = "WHAT: sqlite's message", returns the
 * mapped code. Reads the message first: a rollback afterwards would replace it.
 */
static int sq_fail(struct sq *q, int rc, const char *what, jv *err)
{
    int code = map_rc(rc);
    if (code == CV_OK)
        code = CV_EIO;
    if (code == CV_EBUSY)
        set_err(err, "%s: the database is locked by another connection (%s)", what, sqlite3_errmsg(q->db));
    else
        set_err(err, "%s: %s", what, sqlite3_errmsg(q->db));
    return code;
}

/* The cached statement `id`, prepared on first use; NULL with *rc set on failure. */
static sqlite3_stmt *stmt_get(struct sq *q, int id, int *rc)
{
    if (!q->stmts[id]) {
        *rc = sqlite3_prepare_v3(q->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &q->stmts[id], NULL);
        if (*rc != SQLITE_OK)
            return NULL;
    }
    *rc = SQLITE_OK;
    return q->stmts[id];
}

/* Makes a statement ready for its next use (bindings cleared, no open read). */
static void stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int exec_id(struct sq *q, int id)
{
    int rc;
    sqlite3_stmt *st = stmt_get(q, id, &rc);
    if (!st)
        return rc;
    rc = sqlite3_step(st);
    stmt_done(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Binds a text (NULL binds SQL NULL). The text is copied. */
static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

/*
 * Binds `v` (consumed) as JSON text (cv__store_json_dump); an invalid jv
 * binds SQL NULL. Returns 0, or CV_EINVAL (nested too deep to be read back,
 * or too big for SQLite) / CV_ENOMEM with *err naming `what`.
 */
static int bind_json(sqlite3_stmt *st, int i, jv v, const char *what, jv *err)
{
    if (!jv_is_valid(v)) {
        jv_free(v);
        sqlite3_bind_null(st, i);
        return 0;
    }
    char *text;
    size_t len;
    int code = cv__store_json_dump(v, &text, &len);
    jv_free(v);
    if (code == CV_EINVAL) {
        set_err(err, "%s nests arrays and objects deeper than %d levels", what, CV_STORE_JSON_MAX_DEPTH);
        return code;
    }
    if (code) {
        set_err(err, "%s: out of memory", what);
        return code;
    }
    int rc = sqlite3_bind_text64(st, i, text, len, free, SQLITE_UTF8); /* frees text even on failure */
    if (rc != SQLITE_OK) {
        set_err(err, "%s: %s", what, sqlite3_errstr(rc));
        return rc == SQLITE_NOMEM ? CV_ENOMEM : CV_EINVAL;
    }
    return 0;
}

/* Column i as a jv string, or null when SQL NULL. */
static jv col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return jv_null();
    return jv_string_sized((const char *)t, sqlite3_column_bytes(st, i));
}

/*
 * Column i parsed as JSON (text this backend wrote), or null when SQL NULL.
 * Returns 0, or CV_EIO when the text is not JSON (the database was edited or
 * damaged behind conveyor's back).
 */
static int col_json(sqlite3_stmt *st, int i, jv *out, jv *err)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    if (!t) {
        *out = jv_null();
        return 0;
    }
    jv v = jv_parse_sized(t, sqlite3_column_bytes(st, i));
    if (!jv_is_valid(v)) {
        jv m = jv_invalid_get_msg(v);
        set_err(err, "stored column %s is not valid JSON (%s)", sqlite3_column_name(st, i),
                jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) : "?");
        jv_free(m);
        return CV_EIO;
    }
    *out = v;
    return 0;
}

/* Ends a write transaction: commit when code is 0, else roll back. */
static int tx_end(struct sq *q, int code, jv *err)
{
    if (code == 0) {
        int rc = exec_id(q, S_COMMIT);
        if (rc == SQLITE_OK)
            return 0;
        code = sq_fail(q, rc, "commit", err);
    }
    if (!sqlite3_get_autocommit(q->db))
        exec_id(q, S_ROLLBACK);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Version order                                                             */
/* ------------------------------------------------------------------------ */

/* Collation cv_semver: cv__store_semver_cmp (store.c), the one order of
 * versions for every backend. */
static int semver_collate(void *ud, int na, const void *va, int nb, const void *vb)
{
    return cv__store_semver_cmp(va, (size_t)na, vb, (size_t)nb);
}

/* ------------------------------------------------------------------------ */
/* Open, migrate, close                                                      */
/* ------------------------------------------------------------------------ */

static void sq_close(void *impl)
{
    struct sq *q = impl;
    if (!q)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(q->stmts[i]);
    for (int i = 0; i < LIST_VARIANTS; i++)
        sqlite3_finalize(q->lists[i]);
    sqlite3_close_v2(q->db);
    pthread_mutex_destroy(&q->lock);
    if (q->claim_fd >= 0)
        close(q->claim_fd); /* releases the claim */
    free(q->path);
    free(q->node);
    free(q);
}

/* Runs one single-value query (an integer); *v = 0 when it returns no row. */
static int query_int(struct sq *q, const char *sql, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    *v = 0;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * The schema version of the open database: 0 for an empty database (no
 * schema at all), else the highest version recorded in conveyor_schema.
 * A database with other tables and no conveyor_schema, or marked by another
 * application, is CV_EUNSUPPORTED.
 */
static int read_version(struct sq *q, int64_t *version, jv *err)
{
    int64_t n_objects, has_table, app_id;
    int rc = query_int(q, "SELECT count(*) FROM sqlite_schema", &n_objects);
    if (rc == SQLITE_OK)
        rc = query_int(q, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'conveyor_schema'",
                       &has_table);
    if (rc == SQLITE_OK)
        rc = query_int(q, "PRAGMA application_id", &app_id);
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, q->path, err);
    if (app_id != 0 && app_id != CV_SQLITE_APPLICATION_ID) {
        set_err(err, "%s: not a conveyor database (it belongs to another application, id 0x%08llx)", q->path,
                (unsigned long long)(uint32_t)app_id);
        return CV_EUNSUPPORTED;
    }
    if (!has_table) {
        if (n_objects != 0) {
            set_err(err, "%s: not a conveyor database (it has tables of its own and no conveyor_schema)", q->path);
            return CV_EUNSUPPORTED;
        }
        *version = 0;
        return 0;
    }
    rc = query_int(q, "SELECT coalesce(max(version), 0) FROM conveyor_schema", version);
    if (rc != SQLITE_OK) {
        if (map_rc(rc) == CV_EIO && (rc & 0xff) == SQLITE_ERROR) {
            set_err(err, "%s: not a conveyor database (conveyor_schema: %s)", q->path, sqlite3_errmsg(q->db));
            return CV_EUNSUPPORTED;
        }
        return sq_fail(q, rc, q->path, err);
    }
    if (*version > CV_SQLITE_SCHEMA_VERSION) {
        set_err(err, "%s: database schema version %lld is newer than this conveyor (%d)", q->path,
                (long long)*version, CV_SQLITE_SCHEMA_VERSION);
        return CV_EUNSUPPORTED;
    }
    return 0;
}

/* Applies every migration above the database's version, all in one
 * transaction (another process may be doing the same: the version is read
 * again under the write lock). */
static int migrate(struct sq *q, jv *err)
{
    int rc = sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, q->path, err);
    int64_t version = 0;
    int code = read_version(q, &version, err);
    if (code == 0 && version < CV_SQLITE_SCHEMA_VERSION) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE IF NOT EXISTS conveyor_schema (version INTEGER PRIMARY KEY,"
                 " applied_at INTEGER NOT NULL); PRAGMA application_id = %d;",
                 CV_SQLITE_APPLICATION_ID);
        rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        size_t n = sizeof cv_sqlite_migrations / sizeof cv_sqlite_migrations[0];
        for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
            const struct cv_sqlite_migration *m = &cv_sqlite_migrations[i];
            if (m->version <= version)
                continue;
            rc = sqlite3_exec(q->db, m->sql, NULL, NULL, NULL);
            if (rc == SQLITE_OK) {
                snprintf(sql, sizeof sql, "INSERT INTO conveyor_schema (version, applied_at) VALUES (%d, %lld)",
                         m->version, (long long)cv__wall_ms());
                rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
            }
        }
        if (rc != SQLITE_OK)
            code = sq_fail(q, rc, "applying the schema migrations", err);
    }
    if (code == 0) {
        rc = sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            code = sq_fail(q, rc, "committing the schema migrations", err);
    }
    if (code != 0 && !sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return code;
}

static int busy_ms(void)
{
    const char *v = getenv("CONVEYOR_SQLITE_BUSY_MS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end == '\0' && n >= 0 && n <= 3600000)
            return (int)n;
    }
    return DEFAULT_BUSY_MS;
}

/*
 * Opens (creating) the database file `where`. Order matters: the file is
 * inspected (not a database, foreign, newer schema) before anything is
 * written, so that a foreign file is never switched to WAL or altered.
 */
static int sq_open(const char *where, void **impl, jv *err)
{
    *impl = NULL;
    struct sq *q = calloc(1, sizeof *q);
    if (!q)
        return CV_ENOMEM;
    q->path = strdup(where);
    q->claim_fd = -1;
    if (!q->path) {
        free(q);
        return CV_ENOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    int code = 0;
    int rc = sqlite3_open_v2(where, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (q->db)
            code = sq_fail(q, rc, where, err);
        else {
            set_err(err, "%s: %s", where, sqlite3_errstr(rc));
            code = map_rc(rc) ? map_rc(rc) : CV_EIO;
        }
        goto out;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_timeout(q->db, busy_ms());
    if (sqlite3_db_readonly(q->db, "main") == 1) {
        set_err(err, "%s: the database file is read-only (conveyor writes to it: check its permissions)", where);
        code = CV_EIO;
        goto out;
    }
    rc = sqlite3_create_collation_v2(q->db, "cv_semver", SQLITE_UTF8, NULL, semver_collate, NULL);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, where, err);
        goto out;
    }
    int64_t version = 0;
    code = read_version(q, &version, err);
    if (code)
        goto out;

    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || strcmp(mode, "wal")) {
            set_err(err, "%s: cannot use write-ahead logging (journal mode stays %s)", where, mode ? mode : "?");
            code = CV_EIO;
        }
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (code)
        goto out;
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, where, err);
        goto out;
    }
    /* synchronous=FULL: the WAL is fsync'ed at every commit, so a commit
     * that returned survives power loss. A 32 MiB page cache keeps the hot
     * instance rows and history tails in memory (the 2 MiB default re-read
     * them from the OS for every batch); the WAL is folded back into the
     * database every 10,000 pages (~40 MiB) instead of 1,000, so a page
     * rewritten by many checkpoints is copied once per fold, and trimmed to
     * 64 MiB after a fold. Both measured with bench/bench_store.c. */
    rc = sqlite3_exec(q->db,
                      "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;"
                      " PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864;",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, where, err);
        goto out;
    }
    if (version < CV_SQLITE_SCHEMA_VERSION)
        code = migrate(q, err);
out:
    if (code) {
        sq_close(q);
        return code;
    }
    *impl = q;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Workflow definitions                                                      */
/* ------------------------------------------------------------------------ */

static int sq_put_workflow(void *impl, const char *ns, const char *name, const char *version, const char *text,
                           jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_WF_INSERT, &rc);
    if (st) {
        bind_text(st, 1, ns);
        bind_text(st, 2, name);
        bind_text(st, 3, version);
        bind_text(st, 4, text);
        sqlite3_bind_int64(st, 5, cv__wall_ms());
        rc = sqlite3_step(st);
        stmt_done(st);
    }
    if (rc != SQLITE_DONE) {
        code = sq_fail(q, rc, "deploying a workflow", err);
        goto out;
    }
    if (sqlite3_changes(q->db) == 1)
        goto out;
    /* The version exists: the same text is a no-op, other text a conflict.
     * (Rows are never updated, so no transaction is needed between the two.) */
    st = stmt_get(q, S_WF_TEXT, &rc);
    if (st) {
        bind_text(st, 1, ns);
        bind_text(st, 2, name);
        bind_text(st, 3, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *old = (const char *)sqlite3_column_text(st, 0);
            if (!old || strcmp(old, text)) {
                set_err(err, "workflow %s/%s:%s is already deployed with a different document", ns, name, version);
                code = CV_ECONFLICT;
            }
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "deploying a workflow", err);
out:
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_get_workflow(void *impl, const char *ns, const char *name, const char *version, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    int latest = !version || !strcmp(version, "latest");
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, latest ? S_WF_LATEST : S_WF_GET, &rc);
    if (st) {
        bind_text(st, 1, ns);
        bind_text(st, 2, name);
        if (!latest)
            bind_text(st, 3, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            jv w = jv_object();
            w = jv_object_set(w, jv_string("namespace"), jv_string(ns));
            w = jv_object_set(w, jv_string("name"), jv_string(name));
            w = jv_object_set(w, jv_string("version"), col_text(st, 0));
            w = jv_object_set(w, jv_string("text"), col_text(st, 1));
            w = jv_object_set(w, jv_string("deployedAt"), jv_number((double)sqlite3_column_int64(st, 2)));
            *out = w;
            rc = SQLITE_DONE;
        } else if (rc == SQLITE_DONE) {
            set_err(err, "workflow %s/%s:%s is not deployed", ns, name, latest ? "latest" : version);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading a workflow", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_list_workflows(void *impl, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_WF_LIST, &rc);
    if (st) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            jv w = jv_object();
            w = jv_object_set(w, jv_string("namespace"), col_text(st, 0));
            w = jv_object_set(w, jv_string("name"), col_text(st, 1));
            w = jv_object_set(w, jv_string("version"), col_text(st, 2));
            w = jv_object_set(w, jv_string("deployedAt"), jv_number((double)sqlite3_column_int64(st, 3)));
            list = jv_array_append(list, w);
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing workflows", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

/* ------------------------------------------------------------------------ */
/* Instances                                                                 */
/* ------------------------------------------------------------------------ */

/* Creates one instance inside the caller's open transaction (q->lock held).
 * Returns 0, a per-request code (CV_ENOTFOUND, CV_EINVAL) or a database
 * failure (anything else: the transaction must be rolled back). */
static int apply_one(struct sq *q, struct cv_checkpoint *cp, int64_t now, jv *err);
static int task_insert(struct sq *q, jv task, int *existed, jv *err);
static int tasks_cancel(struct sq *q, const char *instance, jv which, int64_t now, jv *err);
static int task_read(struct sq *q, const char *id, jv *out, jv *err);
static int task_write(struct sq *q, jv task, jv *err);

/* A checkpoint's escalation ({id, to}, borrowed) inside its transaction: a
 * task gone or ended meanwhile is left alone. */
static int task_escalate_in(struct sq *q, jv x, int64_t now, jv *err)
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

/* Creates one instance inside the caller's transaction; `history` (consumed;
 * invalid = none) becomes its first history events. */
static int create_in_tx(struct sq *q, const char *ns, const char *name, const char *version, jv input,
                        const char *idempotency_key, jv history, char *id_out, int *existed, jv *err)
{
    int rc, code = 0;
    jv resolved = jv_invalid();
    *existed = 0;
    sqlite3_stmt *st;
    if (idempotency_key) {
        st = stmt_get(q, S_INST_BY_KEY, &rc);
        if (st) {
            bind_text(st, 1, idempotency_key);
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                snprintf(id_out, 64, "%s", (const char *)sqlite3_column_text(st, 0));
                *existed = 1;
                rc = SQLITE_DONE;
            }
            stmt_done(st);
        }
        if (rc != SQLITE_DONE) {
            code = sq_fail(q, rc, "creating an instance", err);
            goto out;
        }
        if (*existed)
            goto out;
    }
    /* The workflow must be deployed; "latest" is resolved now, in the
     * transaction, so the instance records a real version. */
    int latest = !version || !strcmp(version, "latest");
    st = stmt_get(q, latest ? S_WF_LATEST : S_WF_GET, &rc);
    if (st) {
        bind_text(st, 1, ns);
        bind_text(st, 2, name);
        if (!latest)
            bind_text(st, 3, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            resolved = col_text(st, 0);
            rc = SQLITE_DONE;
        } else if (rc == SQLITE_DONE) {
            set_err(err, "workflow %s/%s:%s is not deployed", ns, name, latest ? "latest" : version);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "creating an instance", err);
    if (code)
        goto out;
    char id[37];
    cv__uuid4(id);
    st = stmt_get(q, S_INST_INSERT, &rc);
    if (st) {
        bind_text(st, 1, id);
        bind_text(st, 2, ns);
        bind_text(st, 3, name);
        bind_text(st, 4, jv_string_value(resolved));
        if (!jv_is_valid(input)) { /* "no input" is stored as null, not as SQL NULL */
            jv_free(input);
            input = jv_null();
        }
        code = bind_json(st, 5, input, "the input", err);
        input = jv_invalid();
        bind_text(st, 6, idempotency_key);
        int64_t now = cv__wall_ms();
        sqlite3_bind_int64(st, 7, now);
        bind_text(st, 8, q->node); /* NULL binds NULL: unowned, free, epoch 0 */
        sqlite3_bind_int64(st, 9, q->node ? now + q->lease_ms : 0);
        sqlite3_bind_int64(st, 10, q->node ? 1 : 0);
        rc = code ? SQLITE_DONE : sqlite3_step(st);
        stmt_done(st);
    }
    if (code)
        goto out;
    if (rc != SQLITE_DONE) {
        code = sq_fail(q, rc, "creating an instance", err);
        goto out;
    }
    snprintf(id_out, 64, "%s", id);
    if (jv_get_kind(history) == JV_KIND_ARRAY && jv_array_length(jv_copy(history)) > 0) {
        struct cv_checkpoint cp;
        cv_checkpoint_init(&cp, id);
        cp.history = history;
        history = jv_invalid();
        code = apply_one(q, &cp, cv__wall_ms(), err);
        cv_checkpoint_cleanup(&cp);
    }
out:
    jv_free(history);
    jv_free(input);
    jv_free(resolved);
    return code;
}

static int sq_create_instance(void *impl, const char *ns, const char *name, const char *version, jv input,
                              const char *idempotency_key, char *id_out, int *existed, jv *err)
{
    struct sq *q = impl;
    int code;
    *existed = 0;
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        jv_free(input);
        code = sq_fail(q, rc, "creating an instance", err);
    } else {
        code = create_in_tx(q, ns, name, version, input, idempotency_key, jv_invalid(), id_out, existed, err);
    }
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* Several creations in one transaction (group commit). A request's own
 * problem (an undeployed workflow, a bad input) fails that request alone; a
 * database failure fails them all and nothing is created. */
static int sq_create_instances(void *impl, struct cv_create *reqs, int n)
{
    struct sq *q = impl;
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN), fatal = 0;
    jv ferr = jv_invalid();
    if (rc != SQLITE_OK)
        fatal = sq_fail(q, rc, "creating instances", &ferr);
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
        if (code == CV_ENOTFOUND || code == CV_EINVAL) {
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

static int sq_get_instance(void *impl, const char *id, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_INST_GET, &rc);
    if (st) {
        bind_text(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            static const char *const names[] = {"id", "namespace", "name", "version", "status"};
            static const char *const json_names[] = {"input", "output", "error", "state"};
            jv o = jv_object();
            for (int i = 0; i < 5; i++)
                o = jv_object_set(o, jv_string(names[i]), col_text(st, i));
            for (int i = 0; i < 4 && !code; i++) {
                jv v;
                code = col_json(st, 5 + i, &v, err);
                if (!code)
                    o = jv_object_set(o, jv_string(json_names[i]), v);
            }
            o = jv_object_set(o, jv_string("epoch"), jv_number((double)sqlite3_column_int64(st, 9)));
            o = jv_object_set(o, jv_string("owner"),
                              sqlite3_column_type(st, 12) == SQLITE_NULL ? jv_null() : col_text(st, 12));
            o = jv_object_set(o, jv_string("createdAt"), jv_number((double)sqlite3_column_int64(st, 10)));
            o = jv_object_set(o, jv_string("updatedAt"), jv_number((double)sqlite3_column_int64(st, 11)));
            if (code)
                jv_free(o);
            else
                *out = o;
            rc = SQLITE_DONE;
        } else if (rc == SQLITE_DONE) {
            set_err(err, "no instance %s", id);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading an instance", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The list statement for a combination of filters (prepared on first use). */
static sqlite3_stmt *list_stmt(struct sq *q, int mask, int *rc)
{
    if (q->lists[mask]) {
        *rc = SQLITE_OK;
        return q->lists[mask];
    }
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT id, namespace, name, version, status, error, epoch, created_at, updated_at, created_seq"
             " FROM instances WHERE created_seq > ?1%s%s%s ORDER BY created_seq LIMIT ?5",
             mask & 1 ? " AND status = ?2" : "", mask & 2 ? " AND namespace = ?3" : "",
             mask & 4 ? " AND name = ?4" : "");
    *rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->lists[mask], NULL);
    return *rc == SQLITE_OK ? q->lists[mask] : NULL;
}

/* The string member `key` of `filter` (borrowed), or NULL. */
static const char *filter_str(jv filter, const char *key, jv *hold)
{
    *hold = jv_object_get(jv_copy(filter), jv_string(key));
    return jv_get_kind(*hold) == JV_KIND_STRING ? jv_string_value(*hold) : NULL;
}

static int sq_list_instances(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    struct sq *q = impl;
    int rc = SQLITE_DONE, code = 0;
    jv list = jv_array(), cursor = jv_null();
    jv h_status = jv_invalid(), h_ns = jv_invalid(), h_name = jv_invalid();
    const char *status = NULL, *ns = NULL, *name = NULL;
    if (jv_get_kind(filter) == JV_KIND_OBJECT) {
        status = filter_str(filter, "status", &h_status);
        ns = filter_str(filter, "namespace", &h_ns);
        name = filter_str(filter, "name", &h_name);
    }
    pthread_mutex_lock(&q->lock);
    int64_t from = 0;
    sqlite3_stmt *st;
    if (after) {
        st = stmt_get(q, S_INST_SEQ, &rc);
        if (st) {
            bind_text(st, 1, after);
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                from = sqlite3_column_int64(st, 0);
                rc = SQLITE_DONE;
            } else if (rc == SQLITE_DONE) {
                set_err(err, "unknown cursor %s (no such instance)", after);
                code = CV_EINVAL;
            }
            stmt_done(st);
        }
    }
    if (!code && rc == SQLITE_DONE) {
        st = list_stmt(q, (status ? 1 : 0) | (ns ? 2 : 0) | (name ? 4 : 0), &rc);
        if (st) {
            sqlite3_bind_int64(st, 1, from);
            bind_text(st, 2, status);
            bind_text(st, 3, ns);
            bind_text(st, 4, name);
            sqlite3_bind_int(st, 5, limit + 1); /* one more tells whether a next page exists */
            int n = 0;
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == limit) {
                    jv last = jv_array_get(jv_copy(list), n - 1);
                    cursor = jv_object_get(last, jv_string("id"));
                    rc = SQLITE_DONE;
                    break;
                }
                jv o = jv_object();
                static const char *const names[] = {"id", "namespace", "name", "version", "status"};
                for (int i = 0; i < 5; i++)
                    o = jv_object_set(o, jv_string(names[i]), col_text(st, i));
                jv e;
                code = col_json(st, 5, &e, err);
                if (code) {
                    jv_free(o);
                    rc = SQLITE_DONE;
                    break;
                }
                o = jv_object_set(o, jv_string("error"), e);
                o = jv_object_set(o, jv_string("epoch"), jv_number((double)sqlite3_column_int64(st, 6)));
                o = jv_object_set(o, jv_string("createdAt"), jv_number((double)sqlite3_column_int64(st, 7)));
                o = jv_object_set(o, jv_string("updatedAt"), jv_number((double)sqlite3_column_int64(st, 8)));
                list = jv_array_append(list, o);
                n++;
            }
            stmt_done(st);
        }
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing instances", err);
    pthread_mutex_unlock(&q->lock);
    jv_free(h_status);
    jv_free(h_ns);
    jv_free(h_name);
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

static int sq_unfinished_instances(void *impl, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_INST_UNFINISHED, &rc);
    if (st) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            list = jv_array_append(list, col_text(st, 0));
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing unfinished instances", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints, history, epochs                                              */
/* ------------------------------------------------------------------------ */

/* The string member `key` of object `o` (borrowed) as a new jv, or null. */
static jv member(jv o, const char *key)
{
    return jv_object_get(jv_copy(o), jv_string(key));
}

/* Inserts `events` (array of {event, expiresAt}, consumed) inside the
 * caller's transaction; *seqs = their sequence numbers. */
static int insert_events(struct sq *q, jv events, int64_t now, const char *origin, jv *seqs, jv *err)
{
    int rc, code = 0;
    jv out = jv_array();
    sqlite3_stmt *st = stmt_get(q, S_EV_INSERT, &rc);
    if (!st) {
        jv_free(events);
        jv_free(out);
        return sq_fail(q, rc, "storing events", err);
    }
    jv_array_foreach(events, i, e)
    {
        if (code) {
            jv_free(e);
            continue;
        }
        jv ev = member(e, "event"), at = member(e, "expiresAt");
        jv type = member(ev, "type");
        bind_text(st, 1, jv_string_value(type));
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, (int64_t)jv_number_value(at));
        code = bind_json(st, 4, ev, "an event", err);
        bind_text(st, 5, origin);
        rc = code ? SQLITE_DONE : sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            out = jv_array_append(out, jv_number((double)sqlite3_column_int64(st, 0)));
            rc = sqlite3_step(st);
        }
        stmt_done(st);
        if (!code && rc != SQLITE_DONE)
            code = sq_fail(q, rc, "storing events", err);
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

/* Applies one checkpoint inside the batch's transaction. Borrows cp. */
static int apply_one(struct sq *q, struct cv_checkpoint *cp, int64_t now, jv *err)
{
    int rc;
    int nhist = jv_get_kind(cp->history) == JV_KIND_ARRAY ? jv_array_length(jv_copy(cp->history)) : 0;
    sqlite3_stmt *st = stmt_get(q, S_INST_UPDATE, &rc);
    if (!st)
        return sq_fail(q, rc, "checkpoint", err);
    bind_text(st, 1, cp->instance);
    bind_text(st, 2, cp->status);
    char what[128];
    snprintf(what, sizeof what, "checkpoint of %s: the state", cp->instance);
    int code = 0;
    if (cp->state_text) { /* serialised by the caller (cv_checkpoint_set_state); cp outlives the step */
        int b = sqlite3_bind_text64(st, 3, cp->state_text, cp->state_len, SQLITE_STATIC, SQLITE_UTF8);
        if (b != SQLITE_OK) {
            set_err(err, "%s: %s", what, sqlite3_errstr(b));
            code = b == SQLITE_NOMEM ? CV_ENOMEM : CV_EINVAL;
        }
    } else {
        code = bind_json(st, 3, jv_copy(cp->state), what, err);
    }
    snprintf(what, sizeof what, "checkpoint of %s: the output", cp->instance);
    if (!code)
        code = bind_json(st, 4, jv_copy(cp->output), what, err);
    snprintf(what, sizeof what, "checkpoint of %s: the error", cp->instance);
    if (!code)
        code = bind_json(st, 5, jv_copy(cp->error), what, err);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int(st, 7, nhist);
    sqlite3_bind_int64(st, 8, cp->epoch);
    int64_t seq = 0; /* the last history seq after this checkpoint */
    int found = 0;
    rc = code ? SQLITE_DONE : sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        found = 1;
        seq = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st); /* RETURNING: run the statement to its end */
    }
    stmt_done(st);
    if (code)
        return code;
    if (rc != SQLITE_DONE)
        return sq_fail(q, rc, "checkpoint", err);
    if (!found) { /* no such instance, or another epoch owns it */
        st = stmt_get(q, S_INST_EPOCH, &rc);
        if (!st)
            return sq_fail(q, rc, "checkpoint", err);
        bind_text(st, 1, cp->instance);
        rc = sqlite3_step(st);
        int64_t epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        stmt_done(st);
        if (rc == SQLITE_DONE) {
            set_err(err, "checkpoint: no instance %s", cp->instance);
            return CV_ENOTFOUND;
        }
        if (rc != SQLITE_ROW)
            return sq_fail(q, rc, "checkpoint", err);
        set_err(err, "checkpoint: instance %s is owned by epoch %lld, this writer holds epoch %lld", cp->instance,
                (long long)epoch, (long long)cp->epoch);
        return CV_ECONFLICT;
    }

    if (nhist > 0) {
        seq -= nhist;
        st = stmt_get(q, S_HIST_INSERT, &rc);
        if (!st)
            return sq_fail(q, rc, "checkpoint", err);
        for (int i = 0; i < nhist; i++) {
            jv ev = jv_array_get(jv_copy(cp->history), i);
            jv type = member(ev, "type"), task = member(ev, "task"), data = member(ev, "data");
            bind_text(st, 1, cp->instance);
            sqlite3_bind_int64(st, 2, ++seq);
            sqlite3_bind_int64(st, 3, now);
            bind_text(st, 4, jv_get_kind(type) == JV_KIND_STRING ? jv_string_value(type) : "");
            bind_text(st, 5, jv_get_kind(task) == JV_KIND_STRING ? jv_string_value(task) : NULL);
            if (jv_get_kind(data) == JV_KIND_NULL) { /* absent and null: no data column */
                jv_free(data);
                data = jv_invalid();
            }
            snprintf(what, sizeof what, "checkpoint of %s: history data", cp->instance);
            code = bind_json(st, 6, data, what, err);
            rc = code ? SQLITE_DONE : sqlite3_step(st);
            stmt_done(st);
            jv_free(type);
            jv_free(task);
            jv_free(ev);
            if (code)
                return code;
            if (rc != SQLITE_DONE)
                return sq_fail(q, rc, "checkpoint", err);
        }
    }

    /* Deletions before additions: a checkpoint that consumes a timer and sets
     * one under the same key keeps the new one. */
    if (jv_get_kind(cp->timers_del) == JV_KIND_ARRAY) {
        st = stmt_get(q, S_TIMER_DEL, &rc);
        if (!st)
            return sq_fail(q, rc, "checkpoint", err);
        jv_array_foreach(cp->timers_del, i, key)
        {
            bind_text(st, 1, cp->instance);
            bind_text(st, 2, jv_get_kind(key) == JV_KIND_STRING ? jv_string_value(key) : "");
            rc = sqlite3_step(st);
            stmt_done(st);
            jv_free(key);
            if (rc != SQLITE_DONE)
                return sq_fail(q, rc, "checkpoint", err);
        }
    }
    if (jv_get_kind(cp->timers_add) == JV_KIND_ARRAY) {
        st = stmt_get(q, S_TIMER_PUT, &rc);
        if (!st)
            return sq_fail(q, rc, "checkpoint", err);
        jv_array_foreach(cp->timers_add, i, t)
        {
            jv key = member(t, "key"), at = member(t, "fireAt");
            bind_text(st, 1, cp->instance);
            bind_text(st, 2, jv_get_kind(key) == JV_KIND_STRING ? jv_string_value(key) : "");
            sqlite3_bind_int64(st, 3, jv_get_kind(at) == JV_KIND_NUMBER ? (int64_t)jv_number_value(at) : 0);
            rc = sqlite3_step(st);
            stmt_done(st);
            jv_free(key);
            jv_free(at);
            jv_free(t);
            if (rc != SQLITE_DONE)
                return sq_fail(q, rc, "checkpoint", err);
        }
    }
    if (jv_get_kind(cp->events) == JV_KIND_ARRAY) {
        jv seqs = jv_invalid();
        code = insert_events(q, jv_copy(cp->events), now, "emit", &seqs, err);
        jv_free(seqs);
        if (code)
            return code;
    }
    /* review tasks: opened with the checkpoint (a redone checkpoint finds
     * them there), cancelled on request or when the instance ends */
    if (jv_get_kind(cp->tasks_add) == JV_KIND_ARRAY) {
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
        if (code)
            return code;
    }
    if (jv_get_kind(cp->tasks_escalate) == JV_KIND_ARRAY) {
        jv_array_foreach(cp->tasks_escalate, i, x)
        {
            if (!code)
                code = task_escalate_in(q, x, now, err);
            jv_free(x);
        }
        if (code)
            return code;
    }
    int ends = cp->status && (!strcmp(cp->status, CV_ST_COMPLETED) || !strcmp(cp->status, CV_ST_FAULTED) ||
                              !strcmp(cp->status, CV_ST_CANCELLED));
    if (ends || jv_get_kind(cp->tasks_cancel) == JV_KIND_TRUE || jv_get_kind(cp->tasks_cancel) == JV_KIND_ARRAY)
        code = tasks_cancel(q, cp->instance, ends ? jv_true() : cp->tasks_cancel, now, err);
    return code;
}

static int sq_checkpoint(void *impl, struct cv_checkpoint *cps, int n, jv *err)
{
    struct sq *q = impl;
    int code = 0;
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK)
        code = sq_fail(q, rc, "checkpoint", err);
    int64_t now = cv__wall_ms();
    for (int i = 0; i < n && !code; i++)
        code = apply_one(q, &cps[i], now, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < n; i++)
        cv_checkpoint_cleanup(&cps[i]);
    return code;
}

static int sq_history(void *impl, const char *id, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    /* One read transaction, so the existence check and the rows agree. */
    rc = sqlite3_exec(q->db, "BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, S_INST_SEQ, &rc) : NULL;
    if (st) {
        bind_text(st, 1, id);
        rc = sqlite3_step(st);
        stmt_done(st);
        if (rc == SQLITE_DONE) {
            set_err(err, "no instance %s", id);
            code = CV_ENOTFOUND;
        } else if (rc == SQLITE_ROW) {
            st = stmt_get(q, S_HIST_GET, &rc);
            if (st) {
                bind_text(st, 1, id);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                    jv e = jv_object();
                    e = jv_object_set(e, jv_string("seq"), jv_number((double)sqlite3_column_int64(st, 0)));
                    e = jv_object_set(e, jv_string("time"), jv_number((double)sqlite3_column_int64(st, 1)));
                    e = jv_object_set(e, jv_string("type"), col_text(st, 2));
                    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
                        e = jv_object_set(e, jv_string("task"), col_text(st, 3));
                    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
                        jv d;
                        code = col_json(st, 4, &d, err);
                        if (code) {
                            jv_free(e);
                            rc = SQLITE_DONE;
                            break;
                        }
                        e = jv_object_set(e, jv_string("data"), d);
                    }
                    list = jv_array_append(list, e);
                }
                stmt_done(st);
            }
        }
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading history", err);
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int sq_bump_epoch(void *impl, const char *id, int64_t *epoch, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, S_INST_BUMP, &rc) : NULL;
    if (st) {
        bind_text(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *epoch = sqlite3_column_int64(st, 0);
            rc = sqlite3_step(st); /* RETURNING: run the statement to its end */
        } else if (rc == SQLITE_DONE) {
            set_err(err, "no instance %s", id);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "bumping an epoch", err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */
/* ------------------------------------------------------------------------ */

static int sq_due_timers(void *impl, int64_t now, int limit, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_TIMER_DUE, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int(st, 2, limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            jv t = jv_object();
            t = jv_object_set(t, jv_string("instance"), col_text(st, 0));
            t = jv_object_set(t, jv_string("key"), col_text(st, 1));
            t = jv_object_set(t, jv_string("fireAt"), jv_number((double)sqlite3_column_int64(st, 2)));
            list = jv_array_append(list, t);
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading due timers", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int sq_next_timer(void *impl, int64_t *fire_at, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_TIMER_NEXT, &rc);
    if (st) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *fire_at = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading timers", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_put_events(void *impl, jv events, jv *seqs, jv *err)
{
    struct sq *q = impl;
    int code = 0;
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, "storing events", err);
        jv_free(events);
    } else {
        code = insert_events(q, events, cv__wall_ms(), "api", seqs, err);
    }
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_list_events(void *impl, int64_t after, int64_t now, int limit, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_EV_LIST, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int(st, 3, limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            jv ev;
            code = col_json(st, 1, &ev, err);
            if (code)
                break;
            list = jv_array_append(list, JV_OBJECT(jv_string("seq"), jv_number((double)sqlite3_column_int64(st, 0)),
                                                   jv_string("event"), ev, jv_string("receivedAt"),
                                                   jv_number((double)sqlite3_column_int64(st, 2)),
                                                   jv_string("origin"), col_text(st, 3)));
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading events", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int sq_purge_events(void *impl, int64_t now, int *purged, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_EV_PURGE, &rc);
    if (st) {
        sqlite3_bind_int64(st, 1, now);
        rc = sqlite3_step(st);
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "purging events", err);
    else if (purged)
        *purged = sqlite3_changes(q->db);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The claim of a process that runs instances: flock(LOCK_EX | LOCK_NB) on
 * PATH.lock, held until close (or the process's death, so a SIGKILLed
 * server does not keep it). A lock of its own, not SQLite's: readers and
 * clients still open the database. */
static int sq_claim(void *impl, jv *err)
{
    struct sq *q = impl;
    if (q->claim_fd >= 0)
        return 0;
    char *lp = NULL;
    if (asprintf(&lp, "%s.lock", q->path) < 0) {
        set_err(err, "out of memory");
        return CV_ENOMEM;
    }
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, "%s: %s", lp, strerror(errno));
        free(lp);
        return CV_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            set_err(err, "%s is in use by another conveyor process that runs its instances (it holds %s)", q->path,
                    lp);
            free(lp);
            return CV_EBUSY;
        }
        set_err(err, "%s: %s", lp, strerror(e));
        free(lp);
        return CV_EIO;
    }
    free(lp);
    q->claim_fd = fd;
    return 0;
}

static int sq_get_cursor(void *impl, const char *name, int64_t *seq, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    *seq = -1;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_CURSOR_GET, &rc);
    if (st) {
        bind_text(st, 1, name);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *seq = sqlite3_column_int64(st, 0);
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading a cursor", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_set_cursor(void *impl, const char *name, int64_t seq, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_CURSOR_SET, &rc);
    if (st) {
        bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, seq);
        rc = sqlite3_step(st);
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "writing a cursor", err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

static int sq_put_model(void *impl, const char *name, const char *kind, jv card, const void *bytes, size_t len,
                        int64_t *version, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        jv_free(card);
        code = sq_fail(q, rc, "storing a model", err);
        goto out;
    }
    int64_t v = 0;
    sqlite3_stmt *st = stmt_get(q, S_MODEL_NEXT, &rc);
    if (st) {
        bind_text(st, 1, name);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE) {
        jv_free(card);
        code = sq_fail(q, rc, "storing a model", err);
        goto out;
    }
    st = stmt_get(q, S_MODEL_INSERT, &rc);
    if (!st) {
        jv_free(card);
        code = sq_fail(q, rc, "storing a model", err);
        goto out;
    }
    bind_text(st, 1, name);
    sqlite3_bind_int64(st, 2, v);
    bind_text(st, 3, kind);
    code = bind_json(st, 4, card, "the model card", err);
    if (!code) {
        rc = sqlite3_bind_blob64(st, 5, bytes, len, SQLITE_STATIC);
        if (rc != SQLITE_OK) {
            set_err(err, "the model's bytes: %s", sqlite3_errstr(rc));
            code = rc == SQLITE_NOMEM ? CV_ENOMEM : CV_EINVAL;
        }
    }
    if (!code) {
        sqlite3_bind_int64(st, 6, cv__wall_ms());
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            code = sq_fail(q, rc, "storing a model", err);
    }
    stmt_done(st);
    if (!code)
        *version = v;
out:
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The card of the current row of a S_MODEL_GET / S_MODEL_LIST statement:
 * the stored card with the row's columns set over it. */
static int model_card(sqlite3_stmt *st, jv *out, jv *err)
{
    jv card;
    int code = col_json(st, 4, &card, err);
    if (code)
        return code;
    if (jv_get_kind(card) != JV_KIND_OBJECT) {
        jv_free(card);
        card = jv_object();
    }
    card = jv_object_set(card, jv_string("name"), col_text(st, 0));
    card = jv_object_set(card, jv_string("version"), jv_number((double)sqlite3_column_int64(st, 1)));
    card = jv_object_set(card, jv_string("kind"), col_text(st, 2));
    card = jv_object_set(card, jv_string("status"), col_text(st, 3));
    card = jv_object_set(card, jv_string("createdAt"), jv_number((double)sqlite3_column_int64(st, 5)));
    card = jv_object_set(card, jv_string("updatedAt"), jv_number((double)sqlite3_column_int64(st, 6)));
    card = jv_object_set(card, jv_string("size"), jv_number((double)sqlite3_column_int64(st, 7)));
    *out = card;
    return 0;
}

static int sq_get_model(void *impl, const char *name, int64_t version, jv *card, void **bytes, size_t *len, jv *err)
{
    struct sq *q = impl;
    int rc = SQLITE_OK, code = 0;
    pthread_mutex_lock(&q->lock);
    /* one read transaction, so that the resolved version is the one read */
    rc = sqlite3_exec(q->db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, "reading a model", err);
        goto out;
    }
    sqlite3_stmt *st;
    if (version == 0) {
        st = stmt_get(q, S_MODEL_RESOLVE, &rc);
        if (st) {
            bind_text(st, 1, name);
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                version = sqlite3_column_int64(st, 0);
                rc = SQLITE_DONE;
            } else if (rc == SQLITE_DONE) {
                set_err(err, "no model named \"%s\" (or only retired versions)", name);
                code = CV_ENOTFOUND;
            }
            stmt_done(st);
        }
        if (!code && rc != SQLITE_DONE)
            code = sq_fail(q, rc, "reading a model", err);
        if (code)
            goto out;
    }
    st = stmt_get(q, S_MODEL_GET, &rc);
    if (st) {
        bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            code = model_card(st, card, err);
            if (!code && bytes) {
                size_t n = (size_t)sqlite3_column_bytes(st, 8);
                const void *b = sqlite3_column_blob(st, 8);
                *bytes = malloc(n ? n : 1);
                if (!*bytes) {
                    jv_free(*card);
                    *card = jv_invalid();
                    set_err(err, "out of memory");
                    code = CV_ENOMEM;
                } else {
                    if (n)
                        memcpy(*bytes, b, n);
                    *len = n;
                }
            }
            rc = SQLITE_DONE;
        } else if (rc == SQLITE_DONE) {
            set_err(err, "no model %s@%lld", name, (long long)version);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading a model", err);
out:
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_list_models(void *impl, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_MODEL_LIST, &rc);
    if (st) {
        while (!code && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            jv card;
            code = model_card(st, &card, err);
            if (!code)
                list = jv_array_append(list, card);
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing models", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int sq_set_model_status(void *impl, const char *name, int64_t version, const char *status, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, "changing a model's status", err);
        goto out;
    }
    char from[16] = "";
    sqlite3_stmt *st = stmt_get(q, S_MODEL_STATUS, &rc);
    if (st) {
        bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            snprintf(from, sizeof from, "%s", t ? t : "");
            rc = SQLITE_DONE;
        } else if (rc == SQLITE_DONE) {
            set_err(err, "no model %s@%lld", name, (long long)version);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "changing a model's status", err);
    if (code)
        goto out;
    if (!strcmp(from, status))
        goto out; /* already there */
    if (!cv__store_model_move_ok(from, status)) {
        set_err(err, "model %s@%lld is %s: it cannot become %s", name, (long long)version, from, status);
        code = CV_ECONFLICT;
        goto out;
    }
    int64_t now = cv__wall_ms();
    if (!strcmp(status, "production")) {
        st = stmt_get(q, S_MODEL_DEMOTE, &rc);
        if (st) {
            bind_text(st, 1, name);
            sqlite3_bind_int64(st, 2, now);
            rc = sqlite3_step(st);
            stmt_done(st);
        }
        if (rc != SQLITE_DONE) {
            code = sq_fail(q, rc, "changing a model's status", err);
            goto out;
        }
    }
    st = stmt_get(q, S_MODEL_SET, &rc);
    if (st) {
        bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, version);
        bind_text(st, 3, status);
        sqlite3_bind_int64(st, 4, now);
        rc = sqlite3_step(st);
        stmt_done(st);
    }
    if (rc == SQLITE_DONE && (!strcmp(status, "retired") || !strcmp(status, "production"))) {
        st = stmt_get(q, S_ROUTE_DROP_VERSION, &rc);
        if (st) {
            bind_text(st, 1, name);
            sqlite3_bind_int64(st, 2, version);
            sqlite3_bind_int64(st, 3, now);
            rc = sqlite3_step(st);
            stmt_done(st);
        }
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "changing a model's status", err);
out:
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* *out = {canary: {version, share} | null, shadow: {version} | null} of
 * `name`, read inside the caller's lock (no row: both null). */
static int routing_read(struct sq *q, const char *name, jv *out, jv *err)
{
    int rc;
    jv canary = jv_null(), shadow = jv_null();
    sqlite3_stmt *st = stmt_get(q, S_ROUTE_GET, &rc);
    if (st) {
        bind_text(st, 1, name);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            if (sqlite3_column_type(st, 0) != SQLITE_NULL)
                canary = JV_OBJECT(jv_string("version"), jv_number((double)sqlite3_column_int64(st, 0)),
                                   jv_string("share"), jv_number(sqlite3_column_double(st, 1)));
            if (sqlite3_column_type(st, 2) != SQLITE_NULL)
                shadow = JV_OBJECT(jv_string("version"), jv_number((double)sqlite3_column_int64(st, 2)));
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE) {
        jv_free(canary);
        jv_free(shadow);
        return sq_fail(q, rc, "reading a model's canary and shadow", err);
    }
    *out = JV_OBJECT(jv_string("canary"), canary, jv_string("shadow"), shadow);
    return 0;
}

/* 1 when some version of `name` exists, 0 when none, or a negative code. */
static int model_named(struct sq *q, const char *name, jv *err)
{
    int rc, found = 0;
    sqlite3_stmt *st = stmt_get(q, S_MODEL_NEXT, &rc);
    if (st) {
        bind_text(st, 1, name);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            found = sqlite3_column_int64(st, 0) > 1;
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        return sq_fail(q, rc, "reading a model", err);
    return found;
}

static int sq_get_model_routing(void *impl, const char *name, jv *out, jv *err)
{
    struct sq *q = impl;
    pthread_mutex_lock(&q->lock);
    int rc = sqlite3_exec(q->db, "BEGIN", NULL, NULL, NULL); /* one read: the name and its row agree */
    int code = rc == SQLITE_OK ? 0 : sq_fail(q, rc, "reading a model", err);
    if (!code) {
        code = model_named(q, name, err);
        if (code == 0) {
            set_err(err, "no model named \"%s\"", name);
            code = CV_ENOTFOUND;
        } else if (code == 1) {
            code = routing_read(q, name, out, err);
        }
    }
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_set_model_routing(void *impl, const char *name, const char *which, int64_t version, double share,
                                jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0, canary = !strcmp(which, "canary");
    jv cur = jv_invalid();
    *out = jv_invalid();
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        code = sq_fail(q, rc, "setting a model's canary or shadow", err);
        goto out;
    }
    code = model_named(q, name, err);
    if (code == 0) {
        set_err(err, "no model named \"%s\"", name);
        code = CV_ENOTFOUND;
    }
    if (code < 0)
        goto out;
    code = 0;
    if (version > 0) { /* the version must exist, and be one that may take traffic */
        char status[16] = "";
        sqlite3_stmt *st = stmt_get(q, S_MODEL_STATUS, &rc);
        if (st) {
            bind_text(st, 1, name);
            sqlite3_bind_int64(st, 2, version);
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(st, 0);
                snprintf(status, sizeof status, "%s", t ? t : "");
                rc = SQLITE_DONE;
            } else if (rc == SQLITE_DONE) {
                set_err(err, "no model %s@%lld", name, (long long)version);
                code = CV_ENOTFOUND;
            }
            stmt_done(st);
        }
        if (!code && rc != SQLITE_DONE)
            code = sq_fail(q, rc, "reading a model", err);
        if (code)
            goto out;
        const char *why = cv__store_routing_refusal(status, canary);
        if (why) {
            set_err(err, "%s@%lld %s", name, (long long)version, why);
            code = CV_ECONFLICT;
            goto out;
        }
    }
    code = routing_read(q, name, &cur, err);
    if (code)
        goto out;
    int64_t cv = 0, sv = 0;
    double cs = 0;
    cv__store_routing_merge(cur, canary, version, share, &cv, &cs, &sv);
    sqlite3_stmt *st = stmt_get(q, S_ROUTE_PUT, &rc);
    if (st) {
        bind_text(st, 1, name);
        if (cv > 0)
            sqlite3_bind_int64(st, 2, cv);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_double(st, 3, cs);
        if (sv > 0)
            sqlite3_bind_int64(st, 4, sv);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, cv__wall_ms());
        rc = sqlite3_step(st);
        stmt_done(st);
    }
    if (rc != SQLITE_DONE) {
        code = sq_fail(q, rc, "setting a model's canary or shadow", err);
        goto out;
    }
    code = routing_read(q, name, out, err);
out:
    jv_free(cur);
    code = tx_end(q, code, err);
    if (code && jv_is_valid(*out)) {
        jv_free(*out);
        *out = jv_invalid();
    }
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_model_generation(void *impl, int64_t *gen, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    *gen = 0;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_REGISTRY_GEN, &rc);
    if (st) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *gen = sqlite3_column_int64(st, 0);
            rc = SQLITE_DONE;
        }
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading the model registry's generation", err);
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

/* Binds a string member of `o` (borrowed) at i, or NULL when not a string. */
static void bind_member(sqlite3_stmt *st, int i, jv o, const char *key)
{
    jv v = tmember(o, key);
    bind_text(st, i, jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : NULL);
    jv_free(v);
}

static void bind_time(sqlite3_stmt *st, int i, jv o, const char *key)
{
    jv v = tmember(o, key);
    int64_t ms;
    if (jv_get_kind(v) == JV_KIND_STRING && !cv__task_parse_time(jv_string_value(v), &ms))
        sqlite3_bind_int64(st, i, ms);
    else
        sqlite3_bind_null(st, i);
    jv_free(v);
}

/* Binds the columns ?1..?17 of S_TASK_INSERT / S_TASK_UPDATE from `task`
 * (consumed: ?17 is its JSON). */
static int bind_task(sqlite3_stmt *st, jv task, jv *err)
{
    bind_member(st, 1, task, "id");
    bind_member(st, 2, task, "instance");
    bind_member(st, 3, task, "task");
    jv wf = tmember(task, "workflow");
    bind_member(st, 4, wf, "namespace");
    bind_member(st, 5, wf, "name");
    bind_member(st, 6, wf, "version");
    jv_free(wf);
    bind_member(st, 7, task, "title");
    bind_member(st, 8, task, "status");
    bind_member(st, 9, task, "role");
    bind_member(st, 10, task, "assignee");
    jv p = tmember(task, "priority");
    sqlite3_bind_int64(st, 11, jv_get_kind(p) == JV_KIND_NUMBER ? (int64_t)jv_number_value(p) : 0);
    jv_free(p);
    bind_time(st, 12, task, "due");
    bind_member(st, 13, task, "claimedBy");
    bind_time(st, 14, task, "claimExpiresAt");
    bind_time(st, 15, task, "openedAt");
    bind_time(st, 16, task, "completedAt");
    jv opened = tmember(task, "openedAt");
    if (jv_get_kind(opened) != JV_KIND_STRING) /* opened_at is NOT NULL */
        sqlite3_bind_int64(st, 15, cv__wall_ms());
    jv_free(opened);
    return bind_json(st, 17, task, "a task", err);
}

/* Inserts a task inside the caller's transaction; *existed when its id is taken. */
static int task_insert(struct sq *q, jv task, int *existed, jv *err)
{
    int rc;
    sqlite3_stmt *st = stmt_get(q, S_TASK_INSERT, &rc);
    if (!st) {
        jv_free(task);
        return sq_fail(q, rc, "storing a task", err);
    }
    jv title = tmember(task, "title");
    int ok = jv_get_kind(title) == JV_KIND_STRING;
    jv_free(title);
    if (!ok) {
        jv_free(task);
        set_err(err, "a task needs a title");
        return CV_EINVAL;
    }
    int code = bind_task(st, task, err);
    rc = code ? SQLITE_DONE : sqlite3_step(st);
    stmt_done(st);
    if (code)
        return code;
    if (rc != SQLITE_DONE)
        return sq_fail(q, rc, "storing a task", err);
    if (existed)
        *existed = sqlite3_changes(q->db) == 0;
    return 0;
}

/* Reads task `id` (inside a transaction or not): CV_ENOTFOUND. */
static int task_read(struct sq *q, const char *id, jv *out, jv *err)
{
    int rc, code = 0;
    sqlite3_stmt *st = stmt_get(q, S_TASK_GET, &rc);
    if (!st)
        return sq_fail(q, rc, "reading a task", err);
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        code = col_json(st, 0, out, err);
    stmt_done(st);
    if (rc == SQLITE_DONE) {
        set_err(err, "no task %s", id);
        return CV_ENOTFOUND;
    }
    if (rc != SQLITE_ROW)
        return sq_fail(q, rc, "reading a task", err);
    return code;
}

static int task_write(struct sq *q, jv task, jv *err)
{
    int rc;
    sqlite3_stmt *st = stmt_get(q, S_TASK_UPDATE, &rc);
    if (!st) {
        jv_free(task);
        return sq_fail(q, rc, "storing a task", err);
    }
    int code = bind_task(st, task, err);
    rc = code ? SQLITE_DONE : sqlite3_step(st);
    stmt_done(st);
    if (code)
        return code;
    return rc == SQLITE_DONE ? 0 : sq_fail(q, rc, "storing a task", err);
}

/* Cancels the open tasks of `instance` inside the caller's transaction:
 * all of them when `which` is true or invalid, else those whose id is in
 * the array `which` (borrowed). */
static int tasks_cancel(struct sq *q, const char *instance, jv which, int64_t now, jv *err)
{
    int rc, code = 0;
    sqlite3_stmt *st = stmt_get(q, S_TASK_OPEN_OF, &rc);
    if (!st)
        return sq_fail(q, rc, "cancelling tasks", err);
    jv ids = jv_array();
    bind_text(st, 1, instance);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ids = jv_array_append(ids, col_text(st, 0));
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        jv_free(ids);
        return sq_fail(q, rc, "cancelling tasks", err);
    }
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

static int sq_put_task(void *impl, jv task, int *existed, jv *err)
{
    struct sq *q = impl;
    int code = 0;
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        jv_free(task);
        code = sq_fail(q, rc, "storing a task", err);
    } else {
        code = task_insert(q, task, existed, err);
    }
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_get_task(void *impl, const char *id, jv *out, jv *err)
{
    struct sq *q = impl;
    pthread_mutex_lock(&q->lock);
    int code = task_read(q, id, out, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* The cursor of a list page: "PRIORITY.DUE.SEQ" (decimal). */
static int sq_list_tasks(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    struct sq *q = impl;
    long long cp = 0, cd = 0, cs = 0;
    if (after) {
        char tail;
        if (sscanf(after, "%lld.%lld.%lld%c", &cp, &cd, &cs, &tail) != 3) {
            jv_free(filter);
            set_err(err, "after: not a cursor this server gave (%s)", after);
            return CV_EINVAL;
        }
    }
    int rc, code = 0;
    jv list = jv_array();
    jv last = jv_null();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_TASK_LIST, &rc);
    if (st) {
        bind_member(st, 1, filter, "status");
        bind_member(st, 2, filter, "role");
        bind_member(st, 3, filter, "assignee");
        bind_member(st, 4, filter, "namespace");
        bind_member(st, 5, filter, "name");
        bind_member(st, 6, filter, "instance");
        if (after) {
            sqlite3_bind_int64(st, 7, cp);
            sqlite3_bind_int64(st, 8, cd);
            sqlite3_bind_int64(st, 9, cs);
        }
        sqlite3_bind_int(st, 10, limit + 1);
        int n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n++ == limit) { /* one more exists: the cursor is the last returned */
                break;
            }
            jv t;
            code = col_json(st, 0, &t, err);
            if (code)
                break;
            list = jv_array_append(list, t);
            jv_free(last);
            last = jv_string_fmt("%lld.%lld.%lld", (long long)sqlite3_column_int64(st, 1),
                                 (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3));
        }
        if (rc == SQLITE_ROW && n > limit)
            rc = SQLITE_DONE;
        else if (jv_get_kind(last) == JV_KIND_STRING) { /* no more rows */
            jv_free(last);
            last = jv_null();
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing tasks", err);
    pthread_mutex_unlock(&q->lock);
    jv_free(filter);
    if (code) {
        jv_free(list);
        jv_free(last);
        return code;
    }
    *out = list;
    *next = last;
    return 0;
}

static int feedback_insert(struct sq *q, jv examples, jv *err)
{
    int rc, code = 0;
    sqlite3_stmt *st = stmt_get(q, S_FEEDBACK_INSERT, &rc);
    if (!st) {
        jv_free(examples);
        return sq_fail(q, rc, "storing feedback", err);
    }
    jv_array_foreach(examples, i, ex)
    {
        if (!code) {
            bind_member(st, 1, ex, "task");
            bind_member(st, 2, ex, "instance");
            bind_member(st, 3, ex, "field");
            bind_member(st, 4, ex, "model");
            jv o = tmember(ex, "overridden");
            sqlite3_bind_int(st, 5, jv_get_kind(o) == JV_KIND_TRUE);
            jv_free(o);
            bind_member(st, 6, ex, "reviewer");
            bind_time(st, 7, ex, "at");
            code = bind_json(st, 8, jv_copy(ex), "a feedback example", err);
            rc = code ? SQLITE_DONE : sqlite3_step(st);
            stmt_done(st);
            if (!code && rc != SQLITE_DONE)
                code = sq_fail(q, rc, "storing feedback", err);
        }
        jv_free(ex);
    }
    jv_free(examples);
    return code;
}

static int sq_update_task(void *impl, const char *id, cv_task_change_fn change, void *ctx, jv *out, jv *err)
{
    struct sq *q = impl;
    int code = 0;
    jv result = jv_invalid();
    pthread_mutex_lock(&q->lock);
    int rc = exec_id(q, S_BEGIN);
    if (rc != SQLITE_OK)
        code = sq_fail(q, rc, "updating a task", err);
    jv cur = jv_invalid();
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

/* Runs `sql` (no parameters) and folds rows (key TEXT, n INTEGER) into an object. */
static int count_by(struct sq *q, const char *sql, jv *out, jv *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, "task statistics", err);
    jv o = jv_object();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        if (sqlite3_column_count(st) > 2)
            o = jv_object_set(o, jv_string(k ? k : ""),
                              JV_OBJECT(jv_string("reviewed"), jv_number((double)sqlite3_column_int64(st, 1)),
                                        jv_string("overridden"), jv_number((double)sqlite3_column_int64(st, 2))));
        else
            o = jv_object_set(o, jv_string(k ? k : ""), jv_number((double)sqlite3_column_int64(st, 1)));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        jv_free(o);
        return sq_fail(q, rc, "task statistics", err);
    }
    *out = o;
    return 0;
}

static int sq_task_stats(void *impl, jv *out, jv *err)
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
    struct sq *q = impl;
    int code = 0;
    jv o = jv_object();
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < sizeof sqls / sizeof *sqls && !code; i++) {
        jv v;
        code = count_by(q, sqls[i], &v, err);
        if (!code)
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

static int sq_list_feedback(void *impl, const char *model, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_FEEDBACK_LIST, &rc);
    if (st) {
        bind_text(st, 1, model);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            jv ex;
            code = col_json(st, 0, &ex, err);
            if (code)
                break;
            list = jv_array_append(list, ex);
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "reading feedback", err);
    pthread_mutex_unlock(&q->lock);
    if (code) {
        jv_free(list);
        return code;
    }
    *out = list;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Leases (store.h; docs/cluster.md)                                         */
/* ------------------------------------------------------------------------ */

static int sq_set_node(void *impl, const char *node, int64_t lease_ms)
{
    struct sq *q = impl;
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

static int sq_lease_acquire(void *impl, const char *node, int64_t now, int64_t lease_ms, int limit, int reclaim,
                            jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, S_LEASE_ACQUIRE, &rc) : NULL;
    if (st) {
        bind_text(st, 1, node);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, lease_ms);
        sqlite3_bind_int(st, 4, limit);
        sqlite3_bind_int(st, 5, reclaim ? 1 : 0);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            list = jv_array_append(list, JV_OBJECT(jv_string("id"), col_text(st, 0), jv_string("epoch"),
                                                   jv_number((double)sqlite3_column_int64(st, 1)),
                                                   jv_string("seq"), jv_number((double)sqlite3_column_int64(st, 2))));
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "taking leases", err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    if (code) {
        jv_free(list);
        return code;
    }
    /* oldest first (RETURNING gives no order): by creation */
    jv keys = jv_array();
    jv_array_foreach(list, i, x)
    {
        (void)i;
        keys = jv_array_append(keys, jv_object_get(x, jv_string("seq")));
    }
    list = jv_sort(list, keys);
    jv sorted = jv_array();
    jv_array_foreach(list, i, x)
    {
        (void)i;
        sorted = jv_array_append(sorted, jv_object_delete(x, jv_string("seq")));
    }
    jv_free(list);
    *out = sorted;
    return 0;
}

static int sq_lease_take(void *impl, const char *id, const char *node, int64_t now, int64_t lease_ms, int64_t *epoch,
                         jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, S_LEASE_TAKE, &rc) : NULL;
    if (st) {
        bind_text(st, 1, id);
        bind_text(st, 2, node);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int64(st, 4, lease_ms);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *epoch = sqlite3_column_int64(st, 0);
            rc = sqlite3_step(st);
        } else if (rc == SQLITE_DONE) {
            set_err(err, "no instance %s", id);
            code = CV_ENOTFOUND;
        }
        stmt_done(st);
    }
    if (!code && rc != SQLITE_DONE)
        code = sq_fail(q, rc, "taking an instance", err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

/* Runs a one-statement update of the leases of `node` (S_LEASE_RENEW with
 * now and lease_ms, or S_LEASE_RELEASE) in a transaction; *n = rows. */
static int lease_update(struct sq *q, int id, const char *node, int64_t now, int64_t lease_ms, int64_t *n,
                        const char *what, jv *err)
{
    int rc, code = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, id, &rc) : NULL;
    if (st) {
        bind_text(st, 1, node);
        if (id == S_LEASE_RENEW) {
            sqlite3_bind_int64(st, 2, now);
            sqlite3_bind_int64(st, 3, lease_ms);
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE && n)
            *n = sqlite3_changes64(q->db);
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, what, err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    return code;
}

static int sq_lease_renew(void *impl, const char *node, int64_t now, int64_t lease_ms, int64_t *held, jv *err)
{
    return lease_update(impl, S_LEASE_RENEW, node, now, lease_ms, held, "renewing leases", err);
}

static int sq_lease_owned(void *impl, const char *node, jv *out, jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    jv list = jv_array();
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *st = stmt_get(q, S_LEASE_OWNED, &rc);
    if (st) {
        bind_text(st, 1, node);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            list = jv_array_append(list, col_text(st, 0));
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "listing a node's instances", err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        jv_free(list);
    else
        *out = list;
    return code;
}

static int sq_lease_release(void *impl, const char *node, jv *err)
{
    return lease_update(impl, S_LEASE_RELEASE, node, 0, 0, NULL, "ending leases", err);
}

static int sq_lease_name(void *impl, const char *name, const char *node, int64_t now, int64_t lease_ms, int *held,
                         jv *err)
{
    struct sq *q = impl;
    int rc, code = 0;
    *held = 0;
    pthread_mutex_lock(&q->lock);
    rc = exec_id(q, S_BEGIN);
    sqlite3_stmt *st = rc == SQLITE_OK ? stmt_get(q, S_LEASE_NAME, &rc) : NULL;
    if (st) {
        bind_text(st, 1, name);
        bind_text(st, 2, node);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int64(st, 4, lease_ms);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) /* a row: the upsert took or kept it */
            *held = 1;
        stmt_done(st);
    }
    if (rc != SQLITE_DONE)
        code = sq_fail(q, rc, "taking a named lease", err);
    code = tx_end(q, code, err);
    pthread_mutex_unlock(&q->lock);
    if (code)
        *held = 0;
    return code;
}

const struct cv_store_ops cv__store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .put_workflow = sq_put_workflow,
    .get_workflow = sq_get_workflow,
    .list_workflows = sq_list_workflows,
    .create_instance = sq_create_instance,
    .create_instances = sq_create_instances,
    .get_instance = sq_get_instance,
    .list_instances = sq_list_instances,
    .unfinished_instances = sq_unfinished_instances,
    .checkpoint = sq_checkpoint,
    .history = sq_history,
    .bump_epoch = sq_bump_epoch,
    .due_timers = sq_due_timers,
    .next_timer = sq_next_timer,
    .put_events = sq_put_events,
    .list_events = sq_list_events,
    .purge_events = sq_purge_events,
    .claim = sq_claim,
    .get_cursor = sq_get_cursor,
    .set_cursor = sq_set_cursor,
    .put_model = sq_put_model,
    .get_model = sq_get_model,
    .list_models = sq_list_models,
    .set_model_status = sq_set_model_status,
    .get_model_routing = sq_get_model_routing,
    .set_model_routing = sq_set_model_routing,
    .model_generation = sq_model_generation,
    .put_task = sq_put_task,
    .get_task = sq_get_task,
    .list_tasks = sq_list_tasks,
    .update_task = sq_update_task,
    .task_stats = sq_task_stats,
    .list_feedback = sq_list_feedback,
    .set_node = sq_set_node,
    .lease_acquire = sq_lease_acquire,
    .lease_take = sq_lease_take,
    .lease_renew = sq_lease_renew,
    .lease_owned = sq_lease_owned,
    .lease_release = sq_lease_release,
    .lease_name = sq_lease_name,
};
