/*
 * store.c — the store's dispatch: opens a backend from a URL and is the only
 * file that calls through struct cv_store_ops (STYLE.md: variation behind one
 * dispatch file, like SQLite's sqlite3Os* wrappers).
 *
 * Besides forwarding, it checks the arguments every backend would have to
 * check (NULL handles and names, limits, the shapes of checkpoint events,
 * timers and filters), so that backends see only well-formed input and all
 * of them refuse the same things with the same CV_EINVAL messages. It keeps
 * the jv ownership rule of store.h on every path: a jv argument is consumed
 * even when the call fails here, before reaching a backend.
 */
#include "store/store.h"

#include "store/store_int.h"

#include "conveyor.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cv_store {
    const struct cv_store_ops *ops;
    void *impl;
    atomic_llong model_changes; /* registry writes through this handle (cv_store_model_changes) */
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

static int empty(const char *s)
{
    return !s || !*s;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * The order of versions ("latest", listings): versions compare part by part, runs of digits by
 * numeric value ("1.2.10" > "1.2.9"), everything else byte by byte; a version
 * that continues where the other ends is the greater ("1.0.0-rc" > "1.0.0").
 * This is the rule of the runtime's semver_cmp (src/engine/runtime.c), kept
 * here as a total order for SQL: values equal under it ("01" and "1") are
 * then ordered byte-wise. Digit runs of any length compare without overflow.
 */
int cv__store_semver_cmp(const char *va, size_t na_, const char *vb, size_t nb_)
{
    const unsigned char *a = (const unsigned char *)va, *b = (const unsigned char *)vb;
    long na = (long)na_, nb = (long)nb_;
    long i = 0, j = 0;
    while (i < na && j < nb) {
        if (is_digit(a[i]) && is_digit(b[j])) {
            long ei = i, ej = j;
            while (ei < na && is_digit(a[ei]))
                ei++;
            while (ej < nb && is_digit(b[ej]))
                ej++;
            while (i < ei - 1 && a[i] == '0')
                i++;
            while (j < ej - 1 && b[j] == '0')
                j++;
            if (ei - i != ej - j)
                return ei - i < ej - j ? -1 : 1;
            int c = memcmp(a + i, b + j, (size_t)(ei - i));
            if (c)
                return c < 0 ? -1 : 1;
            i = ei;
            j = ej;
            continue;
        }
        if (a[i] != b[j])
            return a[i] < b[j] ? -1 : 1;
        i++;
        j++;
    }
    if (i < na || j < nb)
        return i < na ? 1 : -1;
    long n = na < nb ? na : nb;
    int c = memcmp(a, b, (size_t)n);
    if (c)
        return c < 0 ? -1 : 1;
    return na == nb ? 0 : (na < nb ? -1 : 1);
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Opens the store named by `url`:
 *   sqlite:PATH, sqlite://PATH   a SQLite file (sqlite:///abs/path works too)
 *   PATH                         the same, when the text has no scheme://
 *   postgres://..., postgresql://...   a PostgreSQL database (libpq's URI)
 * Any other scheme:// is CV_EINVAL. On success
 * *out owns the handle (cv_store_close). Borrows url.
 */
int cv_store_open(const char *url, cv_store **out, jv *err)
{
    if (out)
        *out = NULL;
    if (empty(url) || !out) {
        set_err(err, "no store given");
        return CV_EINVAL;
    }
    const struct cv_store_ops *ops = NULL;
    const char *where = url;
    if (!strncmp(url, "sqlite://", 9)) {
        ops = &cv__store_sqlite;
        where = url + 9;
    } else if (!strncmp(url, "sqlite:", 7)) {
        ops = &cv__store_sqlite;
        where = url + 7;
    } else if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) {
        ops = &cv__store_postgres; /* libpq reads the whole URL */
    } else {
        /* A scheme is letters, digits, '+', '-', '.' before "://". */
        const char *p = url;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '+' ||
               *p == '-' || *p == '.')
            p++;
        if (p != url && !strncmp(p, "://", 3)) {
            set_err(err, "%s: unknown store (use sqlite:PATH or a file path)", url);
            return CV_EINVAL;
        }
        ops = &cv__store_sqlite;
    }
    if (!*where) {
        set_err(err, "%s: no database file given", url);
        return CV_EINVAL;
    }
    cv_store *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, "out of memory");
        return CV_ENOMEM;
    }
    s->ops = ops;
    int rc = ops->open(where, &s->impl, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cv_store_close(cv_store *s)
{
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

const char *cv_store_backend(const cv_store *s)
{
    return s ? s->ops->name : NULL;
}

/* ------------------------------------------------------------------------ */
/* Workflow definitions                                                      */
/* ------------------------------------------------------------------------ */

int cv_store_put_workflow(cv_store *s, const char *ns, const char *name, const char *version, const char *text,
                          jv *err)
{
    if (!s || empty(ns) || empty(name) || empty(version) || !text) {
        set_err(err, "deploying a workflow needs a namespace, a name, a version and a document");
        return CV_EINVAL;
    }
    if (!strcmp(version, "latest")) {
        set_err(err, "\"latest\" is not a version that can be deployed");
        return CV_EINVAL;
    }
    return s->ops->put_workflow(s->impl, ns, name, version, text, err);
}

int cv_store_get_workflow(cv_store *s, const char *ns, const char *name, const char *version, jv *out, jv *err)
{
    if (!s || empty(ns) || empty(name) || !out) {
        set_err(err, "reading a workflow needs a namespace and a name");
        return CV_EINVAL;
    }
    return s->ops->get_workflow(s->impl, ns, name, version, out, err);
}

int cv_store_list_workflows(cv_store *s, jv *out, jv *err)
{
    if (!s || !out) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->list_workflows(s->impl, out, err);
}

/* ------------------------------------------------------------------------ */
/* Instances                                                                 */
/* ------------------------------------------------------------------------ */

int cv_store_create_instance(cv_store *s, const char *ns, const char *name, const char *version, jv input,
                             const char *idempotency_key, char *id_out, int *existed, jv *err)
{
    if (!s || empty(ns) || empty(name) || !id_out || !existed) {
        jv_free(input);
        set_err(err, "creating an instance needs a namespace and a name");
        return CV_EINVAL;
    }
    if (idempotency_key && !*idempotency_key) {
        jv_free(input);
        set_err(err, "an idempotency key may not be empty");
        return CV_EINVAL;
    }
    return s->ops->create_instance(s->impl, ns, name, version, input, idempotency_key, id_out, existed, err);
}

int cv_store_create_instances(cv_store *s, struct cv_create *reqs, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        struct cv_create *c = &reqs[i];
        c->rc = 0;
        c->existed = 0;
        c->id[0] = 0;
        c->err = jv_invalid();
        if (!s || empty(c->ns) || empty(c->name) || (c->idempotency_key && !*c->idempotency_key)) {
            c->rc = CV_EINVAL;
            set_err(&c->err, "creating an instance needs a namespace, a name and no empty idempotency key");
            bad = 1;
        }
    }
    if (bad || !s) { /* refuse the batch whole: the caller gave something malformed */
        for (int i = 0; i < n; i++) {
            jv_free(reqs[i].input);
            reqs[i].input = jv_invalid();
            jv_free(reqs[i].history);
            reqs[i].history = jv_invalid();
            if (!reqs[i].rc) {
                reqs[i].rc = CV_EINVAL;
                set_err(&reqs[i].err, "another request of the batch was malformed");
            }
        }
        return CV_EINVAL;
    }
    return s->ops->create_instances(s->impl, reqs, n);
}

int cv_store_get_instance(cv_store *s, const char *id, jv *out, jv *err)
{
    if (!s || empty(id) || !out) {
        set_err(err, "reading an instance needs an id");
        return CV_EINVAL;
    }
    return s->ops->get_instance(s->impl, id, out, err);
}

/* The filter is {status?, namespace?, name?}, each a string; null or invalid
 * means no filter. Borrows `filter`. */
static int filter_check(jv filter, jv *err)
{
    jv_kind k = jv_get_kind(filter);
    if (k == JV_KIND_INVALID || k == JV_KIND_NULL)
        return 0;
    if (k != JV_KIND_OBJECT) {
        set_err(err, "an instance filter is an object {status?, namespace?, name?}");
        return CV_EINVAL;
    }
    int code = 0;
    jv_object_foreach(filter, key, value)
    {
        const char *kn = jv_string_value(key);
        if (!code && strcmp(kn, "status") && strcmp(kn, "namespace") && strcmp(kn, "name")) {
            set_err(err, "unknown instance filter \"%s\" (status, namespace, name)", kn);
            code = CV_EINVAL;
        } else if (!code && jv_get_kind(value) != JV_KIND_STRING) {
            set_err(err, "instance filter \"%s\" must be a string", kn);
            code = CV_EINVAL;
        }
        jv_free(key);
        jv_free(value);
    }
    return code;
}

int cv_store_list_instances(cv_store *s, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    int code = 0;
    if (!s || !out || !next) {
        set_err(err, "invalid argument");
        code = CV_EINVAL;
    } else if (limit < 1) {
        set_err(err, "a page holds at least one instance (limit %d)", limit);
        code = CV_EINVAL;
    } else if (after && !*after) {
        set_err(err, "an empty cursor");
        code = CV_EINVAL;
    } else {
        code = filter_check(filter, err);
    }
    if (code) {
        jv_free(filter);
        return code;
    }
    return s->ops->list_instances(s->impl, filter, limit, after, out, next, err);
}

int cv_store_unfinished_instances(cv_store *s, jv *out, jv *err)
{
    if (!s || !out) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->unfinished_instances(s->impl, out, err);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

static int known_status(const char *st)
{
    static const char *const all[] = {CV_ST_PENDING,   CV_ST_RUNNING, CV_ST_WAITING,  CV_ST_SUSPENDED,
                                      CV_ST_COMPLETED, CV_ST_FAULTED, CV_ST_CANCELLED};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(st, all[i]))
            return 1;
    return 0;
}

/* Kind of member `key` of object `o` (borrowed); JV_KIND_INVALID when absent. */
static jv_kind member_kind(jv o, const char *key)
{
    jv v = jv_object_get(jv_copy(o), jv_string(key));
    jv_kind k = jv_get_kind(v);
    jv_free(v);
    return k;
}

/* 1 unless `evs` (borrowed) is an array of {event: {type: string...},
 * expiresAt: number}. */
static int events_check(jv evs)
{
    if (jv_get_kind(evs) != JV_KIND_ARRAY)
        return 1;
    int bad = 0;
    jv_array_foreach(evs, i, e)
    {
        if (!bad) {
            jv ev = jv_get_kind(e) == JV_KIND_OBJECT ? jv_object_get(jv_copy(e), jv_string("event")) : jv_invalid();
            bad = jv_get_kind(ev) != JV_KIND_OBJECT || member_kind(ev, "type") != JV_KIND_STRING ||
                  member_kind(e, "expiresAt") != JV_KIND_NUMBER;
            jv_free(ev);
        }
        jv_free(e);
    }
    return bad;
}

/* Checks one checkpoint's shape (borrowed); the message names the instance. */
static int checkpoint_check(const struct cv_checkpoint *cp, jv *err)
{
    const char *id = cp->instance;
    if (!memchr(cp->instance, '\0', sizeof cp->instance) || !*id) {
        set_err(err, "checkpoint without an instance id");
        return CV_EINVAL;
    }
    if (cp->status && !known_status(cp->status)) {
        set_err(err, "checkpoint of %s: unknown status \"%s\"", id, cp->status);
        return CV_EINVAL;
    }
    if (cp->epoch < 0) {
        set_err(err, "checkpoint of %s: negative epoch", id);
        return CV_EINVAL;
    }
    if (jv_is_valid(cp->history)) {
        if (jv_get_kind(cp->history) != JV_KIND_ARRAY) {
            set_err(err, "checkpoint of %s: history must be an array of events", id);
            return CV_EINVAL;
        }
        int bad = -1;
        jv_array_foreach(cp->history, i, ev)
        {
            if (bad < 0) {
                jv_kind task = jv_get_kind(ev) == JV_KIND_OBJECT ? member_kind(ev, "task") : JV_KIND_NULL;
                if (jv_get_kind(ev) != JV_KIND_OBJECT || member_kind(ev, "type") != JV_KIND_STRING ||
                    (task != JV_KIND_INVALID && task != JV_KIND_NULL && task != JV_KIND_STRING))
                    bad = i;
            }
            jv_free(ev);
        }
        if (bad >= 0) {
            set_err(err, "checkpoint of %s: history event %d is not {type: string, task?: string, data?}", id, bad);
            return CV_EINVAL;
        }
    }
    if (jv_is_valid(cp->timers_add)) {
        int bad = jv_get_kind(cp->timers_add) != JV_KIND_ARRAY;
        if (!bad) {
            jv_array_foreach(cp->timers_add, i, t)
            {
                if (jv_get_kind(t) != JV_KIND_OBJECT || member_kind(t, "key") != JV_KIND_STRING ||
                    member_kind(t, "fireAt") != JV_KIND_NUMBER)
                    bad = 1;
                jv_free(t);
            }
        }
        if (bad) {
            set_err(err, "checkpoint of %s: timers to add must be an array of {key: string, fireAt: number}", id);
            return CV_EINVAL;
        }
    }
    if (jv_is_valid(cp->timers_del)) {
        int bad = jv_get_kind(cp->timers_del) != JV_KIND_ARRAY;
        if (!bad) {
            jv_array_foreach(cp->timers_del, i, k)
            {
                if (jv_get_kind(k) != JV_KIND_STRING)
                    bad = 1;
                jv_free(k);
            }
        }
        if (bad) {
            set_err(err, "checkpoint of %s: timers to delete must be an array of keys (strings)", id);
            return CV_EINVAL;
        }
    }
    if (jv_is_valid(cp->tasks_add)) {
        int bad = jv_get_kind(cp->tasks_add) != JV_KIND_ARRAY;
        if (!bad) {
            jv_array_foreach(cp->tasks_add, i, t)
            {
                if (!bad)
                    bad = jv_get_kind(t) != JV_KIND_OBJECT || member_kind(t, "id") != JV_KIND_STRING;
                jv_free(t);
            }
        }
        if (bad) {
            set_err(err, "checkpoint of %s: tasks to add must be an array of task objects with an id", id);
            return CV_EINVAL;
        }
    }
    if (jv_is_valid(cp->tasks_cancel) && jv_get_kind(cp->tasks_cancel) != JV_KIND_TRUE &&
        jv_get_kind(cp->tasks_cancel) != JV_KIND_ARRAY) {
        set_err(err, "checkpoint of %s: tasks to cancel are true (all) or an array of task ids", id);
        return CV_EINVAL;
    }
    if (jv_is_valid(cp->tasks_escalate)) {
        int bad = jv_get_kind(cp->tasks_escalate) != JV_KIND_ARRAY;
        if (!bad) {
            jv_array_foreach(cp->tasks_escalate, i, x)
            {
                if (!bad)
                    bad = jv_get_kind(x) != JV_KIND_OBJECT || member_kind(x, "id") != JV_KIND_STRING ||
                          member_kind(x, "to") != JV_KIND_OBJECT;
                jv_free(x);
            }
        }
        if (bad) {
            set_err(err, "checkpoint of %s: tasks to escalate must be an array of {id, to: {assignee?, role?}}", id);
            return CV_EINVAL;
        }
    }
    if (jv_is_valid(cp->events) && events_check(cp->events)) {
        set_err(err, "checkpoint of %s: events must be an array of {event: {type: string, ...}, expiresAt: number}",
                id);
        return CV_EINVAL;
    }
    return 0;
}

/*
 * Applies n checkpoints as one transaction (store.h). Every jv in every
 * checkpoint is consumed, whatever the outcome; the fields are left invalid,
 * so a later cv_checkpoint_cleanup is harmless. n == 0 is a no-op.
 */
int cv_store_checkpoint(cv_store *s, struct cv_checkpoint *cps, int n, jv *err)
{
    int code = 0;
    if (!s || n < 0 || (n > 0 && !cps)) {
        set_err(err, "invalid checkpoint batch");
        code = CV_EINVAL;
    }
    for (int i = 0; i < n && !code && cps; i++)
        code = checkpoint_check(&cps[i], err);
    if (code || n == 0) {
        for (int i = 0; cps && i < n; i++)
            cv_checkpoint_cleanup(&cps[i]);
        return code;
    }
    return s->ops->checkpoint(s->impl, cps, n, err);
}

int cv_store_history(cv_store *s, const char *id, jv *out, jv *err)
{
    if (!s || empty(id) || !out) {
        set_err(err, "reading history needs an instance id");
        return CV_EINVAL;
    }
    return s->ops->history(s->impl, id, out, err);
}

int cv_store_bump_epoch(cv_store *s, const char *id, int64_t *epoch, jv *err)
{
    if (!s || empty(id) || !epoch) {
        set_err(err, "bumping an epoch needs an instance id");
        return CV_EINVAL;
    }
    return s->ops->bump_epoch(s->impl, id, epoch, err);
}

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */
/* ------------------------------------------------------------------------ */

int cv_store_due_timers(cv_store *s, int64_t now, int limit, jv *out, jv *err)
{
    if (!s || !out || limit < 1) {
        set_err(err, "reading due timers needs a limit of at least 1");
        return CV_EINVAL;
    }
    return s->ops->due_timers(s->impl, now, limit, out, err);
}

int cv_store_next_timer(cv_store *s, int64_t *fire_at, jv *err)
{
    if (!s || !fire_at) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->next_timer(s->impl, fire_at, err);
}

/* ------------------------------------------------------------------------ */
/* Checkpoint records                                                        */
/* ------------------------------------------------------------------------ */

void cv_checkpoint_init(struct cv_checkpoint *cp, const char *instance)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->instance, sizeof cp->instance, "%s", instance ? instance : "");
    cp->epoch = 0;
    cp->status = NULL;
    cp->state = jv_invalid();
    cp->output = jv_invalid();
    cp->error = jv_invalid();
    cp->history = jv_invalid();
    cp->timers_add = jv_invalid();
    cp->timers_del = jv_invalid();
    cp->events = jv_invalid();
    cp->tasks_add = jv_invalid();
    cp->tasks_cancel = jv_invalid();
    cp->tasks_escalate = jv_invalid();
}

void cv_checkpoint_cleanup(struct cv_checkpoint *cp)
{
    if (!cp)
        return;
    jv *fields[] = {&cp->state,  &cp->output,    &cp->error,        &cp->history,       &cp->timers_add,
                   &cp->timers_del, &cp->events, &cp->tasks_add, &cp->tasks_cancel, &cp->tasks_escalate};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        jv_free(*fields[i]);
        *fields[i] = jv_invalid();
    }
    free(cp->state_text);
    cp->state_text = NULL;
    cp->state_len = 0;
}

int cv_checkpoint_set_state(struct cv_checkpoint *cp, jv state)
{
    char *text = NULL;
    size_t len = 0;
    int code = cv__store_json_dump(state, &text, &len);
    jv_free(state);
    if (code)
        return code;
    jv_free(cp->state);
    cp->state = jv_invalid();
    free(cp->state_text);
    cp->state_text = text;
    cp->state_len = len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The event bus                                                             */
/* ------------------------------------------------------------------------ */

int cv_store_put_events(cv_store *s, jv events, jv *seqs, jv *err)
{
    if (!s || !seqs || events_check(events)) {
        jv_free(events);
        set_err(err, "events must be an array of {event: {type: string, ...}, expiresAt: number}");
        return CV_EINVAL;
    }
    return s->ops->put_events(s->impl, events, seqs, err);
}

int cv_store_list_events(cv_store *s, int64_t after, int64_t now, int limit, jv *out, jv *err)
{
    if (!s || !out || limit < 1) {
        set_err(err, "reading events needs a limit of at least 1");
        return CV_EINVAL;
    }
    return s->ops->list_events(s->impl, after, now, limit, out, err);
}

int cv_store_purge_events(cv_store *s, int64_t now, int *purged, jv *err)
{
    if (!s) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->purge_events(s->impl, now, purged, err);
}

int cv_store_get_cursor(cv_store *s, const char *name, int64_t *seq, jv *err)
{
    if (!s || empty(name) || !seq) {
        set_err(err, "a cursor needs a name");
        return CV_EINVAL;
    }
    return s->ops->get_cursor(s->impl, name, seq, err);
}

int cv_store_set_cursor(cv_store *s, const char *name, int64_t seq, jv *err)
{
    if (!s || empty(name) || seq < 0) {
        set_err(err, "a cursor needs a name and a position >= 0");
        return CV_EINVAL;
    }
    return s->ops->set_cursor(s->impl, name, seq, err);
}

int cv_store_claim(cv_store *s, jv *err)
{
    if (!s) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->claim(s->impl, err);
}

/* ------------------------------------------------------------------------ */
/* Leases                                                                    */
/* ------------------------------------------------------------------------ */

/* 1..128 printable ASCII characters (a host name, a pod name, host:port). */
static int node_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)n[i] <= ' ' || (unsigned char)n[i] > '~')
            return 0;
    return 1;
}

static int lease_args(cv_store *s, const char *node, int64_t lease_ms, int has_op, jv *err)
{
    if (!s || !node_ok(node) || lease_ms < 1) {
        set_err(err, "a lease needs a node name (1-128 printable ASCII characters, no spaces) and a duration >= 1 ms");
        return CV_EINVAL;
    }
    if (!has_op) {
        set_err(err, "the %s store does not support leases (several nodes)", s->ops->name);
        return CV_EUNSUPPORTED;
    }
    return 0;
}

int cv_store_set_node(cv_store *s, const char *node, int64_t lease_ms)
{
    if (!s || (node && (!node_ok(node) || lease_ms < 1)))
        return CV_EINVAL;
    if (!s->ops->set_node)
        return CV_EUNSUPPORTED;
    return s->ops->set_node(s->impl, node, lease_ms);
}

int cv_store_lease_acquire(cv_store *s, const char *node, int64_t now, int64_t lease_ms, int limit, int reclaim,
                           jv *out, jv *err)
{
    int rc = lease_args(s, node, lease_ms, s && s->ops->lease_acquire, err);
    if (rc)
        return rc;
    if (!out || limit < 1) {
        set_err(err, "taking leases needs a limit of at least 1");
        return CV_EINVAL;
    }
    return s->ops->lease_acquire(s->impl, node, now, lease_ms, limit, reclaim, out, err);
}

int cv_store_lease_take(cv_store *s, const char *id, const char *node, int64_t now, int64_t lease_ms, int64_t *epoch,
                        jv *err)
{
    int rc = lease_args(s, node, lease_ms, s && s->ops->lease_take, err);
    if (rc)
        return rc;
    if (empty(id) || !epoch) {
        set_err(err, "taking an instance needs its id");
        return CV_EINVAL;
    }
    return s->ops->lease_take(s->impl, id, node, now, lease_ms, epoch, err);
}

int cv_store_lease_renew(cv_store *s, const char *node, int64_t now, int64_t lease_ms, int64_t *held, jv *err)
{
    int rc = lease_args(s, node, lease_ms, s && s->ops->lease_renew, err);
    if (rc)
        return rc;
    return s->ops->lease_renew(s->impl, node, now, lease_ms, held, err);
}

int cv_store_lease_owned(cv_store *s, const char *node, jv *out, jv *err)
{
    int rc = lease_args(s, node, 1, s && s->ops->lease_owned, err);
    if (rc)
        return rc;
    if (!out) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->lease_owned(s->impl, node, out, err);
}

int cv_store_lease_release(cv_store *s, const char *node, jv *err)
{
    int rc = lease_args(s, node, 1, s && s->ops->lease_release, err);
    if (rc)
        return rc;
    return s->ops->lease_release(s->impl, node, err);
}

int cv_store_lease_name(cv_store *s, const char *name, const char *node, int64_t now, int64_t lease_ms, int *held,
                        jv *err)
{
    int rc = lease_args(s, node, lease_ms, s && s->ops->lease_name, err);
    if (rc)
        return rc;
    if (empty(name) || !held) {
        set_err(err, "a named lease needs a name");
        return CV_EINVAL;
    }
    return s->ops->lease_name(s->impl, name, node, now, lease_ms, held, err);
}

int cv_store_can_watch(const cv_store *s) { return s && s->ops->watch; }

int cv_store_watch(cv_store *s, int timeout_ms, int *what, jv *err)
{
    if (!s || !what || timeout_ms < 0) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    *what = 0;
    if (!s->ops->watch) {
        set_err(err, "the %s store announces no changes", s->ops->name);
        return CV_EUNSUPPORTED;
    }
    return s->ops->watch(s->impl, timeout_ms, what, err);
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

static int model_name_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

static int model_kind_ok(const char *k)
{
    size_t len = k ? strlen(k) : 0;
    if (len < 1 || len > 32)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
            return 0;
    return 1;
}

static int model_status_ok(const char *st)
{
    return st && (!strcmp(st, CV_MODEL_DRAFT) || !strcmp(st, CV_MODEL_APPROVED) || !strcmp(st, CV_MODEL_PRODUCTION) ||
                  !strcmp(st, CV_MODEL_RETIRED));
}

const char *cv__store_routing_refusal(const char *status, int canary)
{
    if (!strcmp(status, "retired"))
        return canary ? "is retired: a retired version cannot be a canary"
                      : "is retired: a retired version cannot be a shadow";
    if (!strcmp(status, "production"))
        return canary ? "is the production version already: a canary is another, approved version"
                      : "is the production version: a shadow is another version";
    if (canary && strcmp(status, "approved"))
        return "is a draft: approve it before it takes a share of the traffic";
    return NULL;
}

void cv__store_routing_merge(jv cur, int canary, int64_t version, double share, int64_t *cv, double *cs, int64_t *sv)
{
    jv c = jv_object_get(jv_copy(cur), jv_string("canary")), sh = jv_object_get(jv_copy(cur), jv_string("shadow"));
    *cv = 0;
    *sv = 0;
    *cs = 0;
    if (jv_get_kind(c) == JV_KIND_OBJECT) {
        jv v = jv_object_get(jv_copy(c), jv_string("version")), s2 = jv_object_get(jv_copy(c), jv_string("share"));
        *cv = (int64_t)jv_number_value(v);
        *cs = jv_number_value(s2);
        jv_free(v);
        jv_free(s2);
    }
    if (jv_get_kind(sh) == JV_KIND_OBJECT) {
        jv v = jv_object_get(jv_copy(sh), jv_string("version"));
        *sv = (int64_t)jv_number_value(v);
        jv_free(v);
    }
    jv_free(c);
    jv_free(sh);
    if (canary) {
        *cv = version;
        *cs = version > 0 ? share : 0;
    } else {
        *sv = version;
    }
}

int cv__store_model_move_ok(const char *from, const char *to)
{
    if (!strcmp(to, CV_MODEL_RETIRED))
        return strcmp(from, CV_MODEL_RETIRED) != 0;
    if (!strcmp(to, CV_MODEL_APPROVED))
        return !strcmp(from, CV_MODEL_DRAFT) || !strcmp(from, CV_MODEL_PRODUCTION);
    if (!strcmp(to, CV_MODEL_PRODUCTION))
        return !strcmp(from, CV_MODEL_APPROVED);
    return 0; /* nothing goes back to draft */
}

int cv_store_put_model(cv_store *s, const char *name, const char *kind, jv card, const void *bytes, size_t len,
                       int64_t *version, jv *err)
{
    const char *why = NULL;
    if (!s || !version || (!bytes && len))
        why = "invalid argument";
    else if (!model_name_ok(name))
        why = "a model name is 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit";
    else if (!model_kind_ok(kind))
        why = "a model kind is 1 to 32 lower-case letters, digits or '_'";
    else if (jv_get_kind(card) != JV_KIND_OBJECT)
        why = "a model card is a JSON object";
    else if (!len)
        why = "a model needs its bytes";
    if (why) {
        jv_free(card);
        set_err(err, "%s", why);
        return CV_EINVAL;
    }
    int rc = s->ops->put_model(s->impl, name, kind, card, bytes, len, version, err);
    if (!rc)
        atomic_fetch_add(&s->model_changes, 1);
    return rc;
}

int cv_store_get_model(cv_store *s, const char *name, int64_t version, jv *card, void **bytes, size_t *len, jv *err)
{
    if (!s || !card || (bytes && !len) || empty(name) || version < 0) {
        set_err(err, "reading a model needs a name and a version >= 0");
        return CV_EINVAL;
    }
    if (bytes)
        *bytes = NULL;
    return s->ops->get_model(s->impl, name, version, card, bytes, len, err);
}

int cv_store_list_models(cv_store *s, jv *out, jv *err)
{
    if (!s || !out) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->list_models(s->impl, out, err);
}

int cv_store_set_model_status(cv_store *s, const char *name, int64_t version, const char *status, jv *err)
{
    if (!s || empty(name) || version < 1) {
        set_err(err, "changing a model's status needs a name and a version >= 1");
        return CV_EINVAL;
    }
    if (!model_status_ok(status)) {
        set_err(err, "unknown model status \"%s\" (draft, approved, production, retired)", status ? status : "");
        return CV_EINVAL;
    }
    int rc = s->ops->set_model_status(s->impl, name, version, status, err);
    if (!rc)
        atomic_fetch_add(&s->model_changes, 1);
    return rc;
}

int cv_store_get_model_routing(cv_store *s, const char *name, jv *out, jv *err)
{
    if (!s || !out || empty(name)) {
        set_err(err, "reading a model's routing needs a name");
        return CV_EINVAL;
    }
    return s->ops->get_model_routing(s->impl, name, out, err);
}

int cv_store_set_model_routing(cv_store *s, const char *name, const char *which, int64_t version, double share,
                               jv *out, jv *err)
{
    if (!s || !out || empty(name) || !which || (strcmp(which, "canary") && strcmp(which, "shadow"))) {
        set_err(err, "setting a model's routing needs a name and \"canary\" or \"shadow\"");
        return CV_EINVAL;
    }
    if (version < 0) {
        set_err(err, "a model version is a positive integer (0 clears)");
        return CV_EINVAL;
    }
    if (!strcmp(which, "canary") && version > 0 && !(share >= 0 && share <= 1)) {
        set_err(err, "a canary's share is a number from 0 to 1 (got %g)", share);
        return CV_EINVAL;
    }
    int rc = s->ops->set_model_routing(s->impl, name, which, version, share, out, err);
    if (!rc)
        atomic_fetch_add(&s->model_changes, 1);
    return rc;
}

int cv_store_model_generation(cv_store *s, int64_t *gen, jv *err)
{
    if (!s || !gen) {
        set_err(err, "invalid argument");
        return CV_EINVAL;
    }
    return s->ops->model_generation(s->impl, gen, err);
}

long long cv_store_model_changes(const cv_store *s)
{
    return s ? atomic_load(&((cv_store *)s)->model_changes) : 0;
}

/* ------------------------------------------------------------------------ */
/* Review tasks                                                              */
/* ------------------------------------------------------------------------ */

int cv_store_put_task(cv_store *s, jv task, int *existed, jv *err)
{
    int ex = 0;
    if (!s || jv_get_kind(task) != JV_KIND_OBJECT) {
        jv_free(task);
        set_err(err, "a task is an object");
        return CV_EINVAL;
    }
    jv id = jv_object_get(jv_copy(task), jv_string("id"));
    int ok = jv_get_kind(id) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(id)) > 0 &&
             jv_string_length_bytes(jv_copy(id)) < 64;
    jv_free(id);
    if (!ok) {
        jv_free(task);
        set_err(err, "a task needs an id (1 to 63 bytes)");
        return CV_EINVAL;
    }
    int rc = s->ops->put_task(s->impl, task, &ex, err);
    if (existed)
        *existed = ex;
    return rc;
}

int cv_store_get_task(cv_store *s, const char *id, jv *out, jv *err)
{
    if (!s || empty(id)) {
        set_err(err, "no task id given");
        return CV_EINVAL;
    }
    return s->ops->get_task(s->impl, id, out, err);
}

int cv_store_list_tasks(cv_store *s, jv filter, int limit, const char *after, jv *out, jv *next, jv *err)
{
    if (!s || limit < 1 || (jv_is_valid(filter) && jv_get_kind(filter) != JV_KIND_OBJECT)) {
        jv_free(filter);
        set_err(err, "list tasks: bad arguments");
        return CV_EINVAL;
    }
    if (!jv_is_valid(filter)) {
        jv_free(filter);
        filter = jv_object();
    }
    return s->ops->list_tasks(s->impl, filter, limit, after && *after ? after : NULL, out, next, err);
}

int cv_store_update_task(cv_store *s, const char *id, cv_task_change_fn change, void *ctx, jv *out, jv *err)
{
    if (!s || empty(id) || !change) {
        set_err(err, "update task: bad arguments");
        return CV_EINVAL;
    }
    return s->ops->update_task(s->impl, id, change, ctx, out, err);
}

int cv_store_task_stats(cv_store *s, jv *out, jv *err)
{
    if (!s) {
        set_err(err, "no store");
        return CV_EINVAL;
    }
    return s->ops->task_stats(s->impl, out, err);
}

int cv_store_list_feedback(cv_store *s, const char *model, jv *out, jv *err)
{
    if (!s) {
        set_err(err, "no store");
        return CV_EINVAL;
    }
    return s->ops->list_feedback(s->impl, empty(model) ? NULL : model, out, err);
}
