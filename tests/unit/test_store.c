/*
 * test_store.c — the storage conformance suite (store.h) and the SQLite
 * backend's own cases.
 *
 * Suite "store" is backend-independent: it only goes through cv_store_* and
 * is driven by a URL, so the same tests run unchanged against every backend
 * (STYLE.md, "one storage conformance suite"). By default each test gets a
 * fresh SQLite file in its own mkdtemp directory; with CONVEYOR_TEST_PG_URL
 * (a PostgreSQL server, tests/pg/pg.sh) a new database per test
 * (test_store_url.h); CONVEYOR_TEST_STORE_URL names another store, which the
 * runner must hand each test empty. It covers every
 * operation: deploy idempotence and conflicts, "latest" version selection,
 * instance creation with idempotency keys, listing with filters and cursor
 * pagination, checkpoint batches (applied whole or not at all: a stale epoch
 * in a batch leaves state, history and timers unchanged), history order,
 * timers, unfinished instances, epoch fencing across two handles,
 * persistence across close/reopen, and atomicity under SIGKILL (a child
 * process committing batches is killed at random moments: every batch is
 * found whole or absent, and every batch it was told was committed is there).
 *
 * Models (suite "store" too): versions numbered per name, cards and bytes
 * read back exactly, what a bare name resolves to, the status moves and the
 * one production version per name, and a refused store that writes nothing.
 *
 * Suite "store_sqlite" covers what only a file can do: a garbage file, a
 * foreign SQLite database (left untouched), a schema newer than the code, a
 * database locked by another connection (CV_EBUSY within
 * CONVEYOR_SQLITE_BUSY_MS), a read-only file, and the URL forms.
 */
#include "conveyor.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_store_url.h"

/* ---- fixtures ----------------------------------------------------------- */

static char dir[256];
static char dbpath[300];
static char url[400];

/* Suite "store": an empty store of the backend under test
 * (test_store_url.h: SQLite by default, a new PostgreSQL database per test
 * when CONVEYOR_TEST_PG_URL names a server). */
static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cv-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/conveyor.db", dir);
    cv_test_store_url(dir, url, sizeof url);
}

/* Suite "store_sqlite": always a SQLite file. */
static void setup_sqlite(void)
{
    snprintf(dir, sizeof dir, "/tmp/cv-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/conveyor.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", dbpath);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    cv_test_store_url_done();
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(store_sqlite, .init = setup_sqlite, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

/* Copies the message of *err into buf and frees it (*err becomes invalid). */
static const char *take_err(jv *err, char *buf, size_t n)
{
    if (jv_get_kind(*err) == JV_KIND_STRING)
        snprintf(buf, n, "%s", jv_string_value(*err));
    else
        snprintf(buf, n, "(no message)");
    jv_free(*err);
    *err = jv_invalid();
    return buf;
}

static cv_store *open_url(const char *u)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    int rc = cv_store_open(u, &s, &err);
    char m[512];
    cr_assert_eq(rc, 0, "open %s: %d %s", u, rc, take_err(&err, m, sizeof m));
    cr_assert_not_null(s);
    return s;
}

static cv_store *open_store(void)
{
    return open_url(url);
}

/* Asserts rc == 0, printing the error otherwise. */
static void ok(int rc, jv *err, const char *what)
{
    char m[512];
    if (rc != 0)
        cr_assert_fail("%s: %d (%s) %s", what, rc, cv_strerror(rc), take_err(err, m, sizeof m));
}

static void deploy(cv_store *s, const char *ns, const char *name, const char *version, const char *text)
{
    jv err = jv_invalid();
    ok(cv_store_put_workflow(s, ns, name, version, text, &err), &err, "put_workflow");
}

/* Creates an instance of test/wf (deployed on demand) with input {n: n}. */
static void mkinst(cv_store *s, const char *name, int n, char id[64])
{
    jv err = jv_invalid();
    char text[128];
    snprintf(text, sizeof text, "document: {name: %s}", name);
    deploy(s, "test", name, "1.0.0", text);
    int existed = -1;
    ok(cv_store_create_instance(s, "test", name, "1.0.0", jv_object_set(jv_object(), jv_string("n"), jv_number(n)),
                                NULL, id, &existed, &err),
       &err, "create_instance");
    cr_assert_eq(existed, 0);
    cr_assert_eq(strlen(id), 36, "a UUID: %s", id);
}

/* Member `key` of `o` (borrowed), a new reference. */
static jv get(jv o, const char *key)
{
    return jv_object_get(jv_copy(o), jv_string(key));
}

/* Whether `v` (consumed) equals the JSON text. */
static int is(jv v, const char *json)
{
    jv w = jv_parse(json);
    cr_assert(jv_is_valid(w), "bad JSON in test: %s", json);
    return jv_equal(v, w);
}

/* Member `key` of `o` (borrowed) copied into buf when a string, else "". */
static const char *str(jv o, const char *key, char *buf, size_t n)
{
    jv v = get(o, key);
    snprintf(buf, n, "%s", jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : "");
    jv_free(v);
    return buf;
}

static char *dump(jv v, char *buf, size_t n)
{
    jv s = jv_dump_string(v, 0);
    snprintf(buf, n, "%s", jv_string_value(s));
    jv_free(s);
    return buf;
}

/* Asserts member `key` of `o` (borrowed) equals the JSON text. */
#define expect_member(o, key, json)                                                                      \
    do {                                                                                                 \
        char b_[1024];                                                                                   \
        jv m_ = get((o), (key));                                                                         \
        cr_assert(is(jv_copy(m_), (json)), "%s = %s, expected %s", (key), dump(jv_copy(m_), b_, sizeof b_), \
                  (json));                                                                               \
        jv_free(m_);                                                                                     \
    } while (0)

static jv instance(cv_store *s, const char *id)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_get_instance(s, id, &out, &err), &err, "get_instance");
    return out;
}

static jv history(cv_store *s, const char *id)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_history(s, id, &out, &err), &err, "history");
    return out;
}

static jv due(cv_store *s, int64_t now, int limit)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_due_timers(s, now, limit, &out, &err), &err, "due_timers");
    return out;
}

static int64_t next_timer(cv_store *s)
{
    int64_t at = -1;
    jv err = jv_invalid();
    ok(cv_store_next_timer(s, &at, &err), &err, "next_timer");
    return at;
}

static int64_t bump(cv_store *s, const char *id)
{
    int64_t e = -1;
    jv err = jv_invalid();
    ok(cv_store_bump_epoch(s, id, &e, &err), &err, "bump_epoch");
    return e;
}

/* One checkpoint of a single instance, committed alone. */
static int commit1(cv_store *s, struct cv_checkpoint *cp, char *msg, size_t n)
{
    jv err = jv_invalid();
    int rc = cv_store_checkpoint(s, cp, 1, &err);
    if (msg)
        take_err(&err, msg, n);
    else
        jv_free(err);
    return rc;
}

static jv P(const char *json)
{
    jv v = jv_parse(json);
    cr_assert(jv_is_valid(v), "bad JSON in test: %s", json);
    return v;
}

/* ---- definitions --------------------------------------------------------- */

Test(store, open_names_its_backend)
{
    cv_store *s = open_store();
    cr_assert_not_null(cv_store_backend(s));
    cr_assert_gt(strlen(cv_store_backend(s)), 0);
    cv_store_close(s);
    cv_store_close(NULL); /* accepted, like free */
}

Test(store, deploy_is_idempotent_and_immutable)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    char m[512];
    deploy(s, "ns", "claims", "1.0.0", "text one");
    deploy(s, "ns", "claims", "1.0.0", "text one"); /* same text: no-op */
    int rc = cv_store_put_workflow(s, "ns", "claims", "1.0.0", "text two", &err);
    cr_assert_eq(rc, CV_ECONFLICT, "different text for a deployed version: %d", rc);
    cr_assert(strstr(take_err(&err, m, sizeof m), "ns/claims:1.0.0"), "%s", m);
    ok(cv_store_get_workflow(s, "ns", "claims", "1.0.0", &out, &err), &err, "get");
    expect_member(out, "text", "\"text one\"");
    expect_member(out, "namespace", "\"ns\"");
    expect_member(out, "name", "\"claims\"");
    expect_member(out, "version", "\"1.0.0\"");
    jv at = get(out, "deployedAt");
    cr_assert_eq(jv_get_kind(at), JV_KIND_NUMBER);
    cr_assert_gt(jv_number_value(at), 1.5e12); /* milliseconds since the epoch */
    jv_free(at);
    jv_free(out);

    out = jv_invalid();
    rc = cv_store_get_workflow(s, "ns", "claims", "2.0.0", &out, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    rc = cv_store_get_workflow(s, "ns", "other", NULL, &out, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_put_workflow(s, "ns", "claims", "latest", "x", &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_put_workflow(s, "", "claims", "1", "x", &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cv_store_close(s);
}

Test(store, latest_is_the_highest_semantic_version)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    deploy(s, "ns", "wf", "1.2.9", "nine");
    deploy(s, "ns", "wf", "1.2.10", "ten");
    deploy(s, "ns", "wf", "1.2.2", "two");
    deploy(s, "ns", "other", "9.0.0", "other");
    ok(cv_store_get_workflow(s, "ns", "wf", "latest", &out, &err), &err, "get latest");
    expect_member(out, "version", "\"1.2.10\"");
    expect_member(out, "text", "\"ten\"");
    jv_free(out);
    ok(cv_store_get_workflow(s, "ns", "wf", NULL, &out, &err), &err, "get NULL");
    expect_member(out, "version", "\"1.2.10\"");
    jv_free(out);
    deploy(s, "ns", "wf", "1.10.0", "big");
    deploy(s, "ns", "wf", "1.9.99", "small");
    ok(cv_store_get_workflow(s, "ns", "wf", "latest", &out, &err), &err, "get latest");
    expect_member(out, "version", "\"1.10.0\"");
    jv_free(out);

    /* The list is ordered by namespace, name, then version in that order. */
    ok(cv_store_list_workflows(s, &out, &err), &err, "list");
    char b[1024];
    jv shape = jv_array();
    jv_array_foreach(out, i, w)
    {
        jv text = get(w, "text");
        cr_assert_eq(jv_get_kind(text), JV_KIND_INVALID, "the list carries no document text");
        jv_free(text);
        char ns[64], name[64], version[64];
        shape = jv_array_append(shape, jv_string_fmt("%s/%s:%s", str(w, "namespace", ns, sizeof ns),
                                                     str(w, "name", name, sizeof name),
                                                     str(w, "version", version, sizeof version)));
        jv_free(w);
    }
    jv_free(out);
    cr_assert(is(jv_copy(shape), "[\"ns/other:9.0.0\",\"ns/wf:1.2.2\",\"ns/wf:1.2.9\",\"ns/wf:1.2.10\","
                                 "\"ns/wf:1.9.99\",\"ns/wf:1.10.0\"]"),
              "order: %s", dump(jv_copy(shape), b, sizeof b));
    jv_free(shape);
    cv_store_close(s);
}

/* ---- instances ------------------------------------------------------------ */

Test(store, create_and_get_an_instance)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    char m[512], id[64];
    deploy(s, "ns", "wf", "1.2.9", "a");
    deploy(s, "ns", "wf", "1.2.10", "b");
    int existed = -1;
    ok(cv_store_create_instance(s, "ns", "wf", "latest", P("{\"claim\":[1,2,{\"x\":\"é\"}]}"), NULL, id, &existed,
                                &err),
       &err, "create");
    cr_assert_eq(existed, 0);
    out = instance(s, id);
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", id);
    expect_member(out, "id", quoted);
    expect_member(out, "namespace", "\"ns\"");
    expect_member(out, "name", "\"wf\"");
    expect_member(out, "version", "\"1.2.10\""); /* "latest" resolved when created */
    expect_member(out, "status", "\"pending\"");
    expect_member(out, "input", "{\"claim\":[1,2,{\"x\":\"é\"}]}");
    expect_member(out, "output", "null");
    expect_member(out, "error", "null");
    expect_member(out, "state", "null");
    expect_member(out, "epoch", "0");
    jv c = get(out, "createdAt"), u = get(out, "updatedAt");
    cr_assert_eq(jv_get_kind(c), JV_KIND_NUMBER);
    cr_assert(jv_equal(c, u), "createdAt == updatedAt at creation");
    jv_free(out);

    /* An explicit version, a missing input (stored as null). */
    char id2[64];
    ok(cv_store_create_instance(s, "ns", "wf", "1.2.9", jv_invalid(), NULL, id2, &existed, &err), &err, "create");
    cr_assert_str_neq(id, id2);
    out = instance(s, id2);
    expect_member(out, "version", "\"1.2.9\"");
    expect_member(out, "input", "null");
    jv_free(out);

    /* Not deployed: nothing created; input consumed all the same (ASan). */
    int rc = cv_store_create_instance(s, "ns", "nope", NULL, P("{\"a\":1}"), NULL, id2, &existed, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    cr_assert(strstr(take_err(&err, m, sizeof m), "ns/nope"), "%s", m);
    rc = cv_store_create_instance(s, "ns", "wf", "3.0.0", P("{\"a\":1}"), NULL, id2, &existed, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    rc = cv_store_create_instance(s, "", "wf", "3.0.0", P("{\"a\":1}"), NULL, id2, &existed, &err);
    cr_assert_eq(rc, CV_EINVAL);
    take_err(&err, m, sizeof m);

    rc = cv_store_get_instance(s, "00000000-0000-4000-8000-000000000000", &out, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    cv_store_close(s);
}

Test(store, idempotency_key_returns_the_same_instance)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    char a[64], b[64], c[64];
    deploy(s, "ns", "wf", "1.0.0", "a");
    int existed = -1;
    ok(cv_store_create_instance(s, "ns", "wf", NULL, P("{\"n\":1}"), "key-1", a, &existed, &err), &err, "create");
    cr_assert_eq(existed, 0);
    ok(cv_store_create_instance(s, "ns", "wf", NULL, P("{\"n\":2}"), "key-1", b, &existed, &err), &err, "again");
    cr_assert_eq(existed, 1);
    cr_assert_str_eq(a, b);
    out = instance(s, a);
    expect_member(out, "input", "{\"n\":1}"); /* the first start's input stays */
    jv_free(out);
    ok(cv_store_create_instance(s, "ns", "wf", NULL, P("{\"n\":3}"), "key-2", c, &existed, &err), &err, "other key");
    cr_assert_eq(existed, 0);
    cr_assert_str_neq(a, c);
    jv list = jv_invalid(), next = jv_invalid();
    ok(cv_store_list_instances(s, jv_null(), 100, NULL, &list, &next, &err), &err, "list");
    cr_assert_eq(jv_array_length(list), 2, "two instances, not three");
    jv_free(next);
    cv_store_close(s);
}

/* The ids of a page, as a JSON array text, for comparisons. */
static jv page_ids(jv list)
{
    jv ids = jv_array();
    jv_array_foreach(list, i, o)
    {
        ids = jv_array_append(ids, get(o, "id"));
        jv_free(o);
    }
    jv_free(list);
    return ids;
}

/* Sets an instance's status with a one-checkpoint batch. */
static void set_status(cv_store *s, const char *id, const char *status)
{
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.status = status;
    char m[512];
    int rc = commit1(s, &cp, m, sizeof m);
    cr_assert_eq(rc, 0, "set status: %s", m);
}

/* Several creations in one transaction: each request keeps its own result. */
Test(store, create_instances_in_one_batch)
{
    cv_store *s = open_store();
    deploy(s, "test", "batch", "1.0.0", "document: {name: batch}");
    struct cv_create c[4];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 4; i++) {
        c[i].ns = "test";
        c[i].name = "batch";
        c[i].version = "latest";
        c[i].input = JV_OBJECT(jv_string("n"), jv_number(i));
    }
    c[1].name = "nope";          /* not deployed: fails alone */
    c[2].idempotency_key = "k1"; /* the same key twice in one batch: one instance */
    c[3].idempotency_key = "k1";
    int rc = cv_store_create_instances(s, c, 4);
    cr_expect_eq(rc, 0, "a request's own failure does not fail the batch");
    cr_expect_eq(c[0].rc, 0);
    cr_expect_eq(c[1].rc, CV_ENOTFOUND);
    cr_expect(jv_get_kind(c[1].err) == JV_KIND_STRING, "the failure says why");
    cr_expect_eq(c[2].rc, 0);
    cr_expect_eq(c[3].rc, 0);
    cr_expect_eq(c[2].existed, 0);
    cr_expect_eq(c[3].existed, 1);
    cr_expect_str_eq(c[2].id, c[3].id);
    jv inst, err = jv_invalid();
    ok(cv_store_get_instance(s, c[0].id, &inst, &err), &err, "get");
    jv ver = jv_object_get(jv_copy(inst), jv_string("version"));
    cr_expect_str_eq(jv_string_value(ver), "1.0.0", "latest resolved");
    jv in = jv_object_get(inst, jv_string("input"));
    cr_expect(jv_equal(in, JV_OBJECT(jv_string("n"), jv_number(0))));
    jv_free(ver);
    for (int i = 0; i < 4; i++)
        jv_free(c[i].err);
    cv_store_close(s);
}

Test(store, list_filters_and_pages_in_creation_order)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), list = jv_invalid(), next = jv_invalid();
    char m[512];
    char ids[8][64];
    for (int i = 0; i < 8; i++)
        mkinst(s, i < 5 ? "alpha" : "beta", i, ids[i]);
    deploy(s, "other", "alpha", "1.0.0", "x");
    char oid[64];
    int existed;
    ok(cv_store_create_instance(s, "other", "alpha", NULL, jv_null(), NULL, oid, &existed, &err), &err, "create");
    set_status(s, ids[1], CV_ST_RUNNING);
    set_status(s, ids[3], CV_ST_RUNNING);
    set_status(s, ids[6], CV_ST_RUNNING);

    /* Pages of 3 over all 9, oldest first; next is the last id, then null. */
    jv all = jv_array();
    const char *after = NULL;
    char cursor[64];
    int pages = 0;
    for (;;) {
        ok(cv_store_list_instances(s, jv_object(), 3, after, &list, &next, &err), &err, "list");
        pages++;
        cr_assert_leq(jv_array_length(jv_copy(list)), 3);
        if (pages == 1) {
            jv first = jv_array_get(jv_copy(list), 0);
            jv input = get(first, "input"), state = get(first, "state"), output = get(first, "output");
            cr_assert(!jv_is_valid(input) && !jv_is_valid(state) && !jv_is_valid(output),
                      "list items carry no input, state or output");
            expect_member(first, "status", "\"pending\"");
            expect_member(first, "namespace", "\"test\"");
            expect_member(first, "name", "\"alpha\"");
            expect_member(first, "version", "\"1.0.0\"");
            jv_free(first);
        }
        jv got = page_ids(list);
        jv_array_foreach(got, i, x) all = jv_array_append(all, x);
        jv_free(got);
        if (jv_get_kind(next) == JV_KIND_NULL)
            break;
        cr_assert_eq(jv_get_kind(next), JV_KIND_STRING);
        snprintf(cursor, sizeof cursor, "%s", jv_string_value(next));
        jv_free(next);
        after = cursor;
        cr_assert_lt(pages, 10);
    }
    cr_assert_eq(pages, 3);
    cr_assert_eq(jv_array_length(jv_copy(all)), 9);
    for (int i = 0; i < 8; i++) {
        jv x = jv_array_get(jv_copy(all), i);
        cr_assert_str_eq(jv_string_value(x), ids[i], "position %d", i);
        jv_free(x);
    }
    jv_free(all);

    /* An exact page: next is null, not a cursor to an empty page. */
    ok(cv_store_list_instances(s, jv_null(), 9, NULL, &list, &next, &err), &err, "list");
    cr_assert_eq(jv_array_length(list), 9);
    cr_assert_eq(jv_get_kind(next), JV_KIND_NULL);

    /* Filters, alone and together. */
    ok(cv_store_list_instances(s, P("{\"status\":\"running\"}"), 10, NULL, &list, &next, &err), &err, "status");
    char b[1024], want[1024];
    snprintf(want, sizeof want, "[\"%s\",\"%s\",\"%s\"]", ids[1], ids[3], ids[6]);
    jv got = page_ids(list);
    cr_assert(is(jv_copy(got), want), "running: %s", dump(jv_copy(got), b, sizeof b));
    jv_free(got);
    jv_free(next);
    ok(cv_store_list_instances(s, P("{\"status\":\"running\",\"name\":\"alpha\"}"), 1, NULL, &list, &next, &err),
       &err, "status+name");
    got = page_ids(list);
    snprintf(want, sizeof want, "[\"%s\"]", ids[1]);
    cr_assert(is(got, want));
    cr_assert_str_eq(jv_string_value(next), ids[1]);
    snprintf(cursor, sizeof cursor, "%s", jv_string_value(next));
    jv_free(next);
    ok(cv_store_list_instances(s, P("{\"status\":\"running\",\"name\":\"alpha\"}"), 1, cursor, &list, &next, &err),
       &err, "status+name page 2");
    got = page_ids(list);
    snprintf(want, sizeof want, "[\"%s\"]", ids[3]);
    cr_assert(is(got, want));
    cr_assert_eq(jv_get_kind(next), JV_KIND_NULL);
    ok(cv_store_list_instances(s, P("{\"namespace\":\"other\"}"), 10, NULL, &list, &next, &err), &err, "ns");
    got = page_ids(list);
    snprintf(want, sizeof want, "[\"%s\"]", oid);
    cr_assert(is(got, want));
    ok(cv_store_list_instances(s, P("{\"namespace\":\"test\",\"name\":\"alpha\"}"), 10, NULL, &list, &next, &err),
       &err, "ns+name");
    cr_assert_eq(jv_array_length(list), 5);
    ok(cv_store_list_instances(s, P("{\"status\":\"completed\"}"), 10, NULL, &list, &next, &err), &err, "none");
    cr_assert_eq(jv_array_length(list), 0);
    cr_assert_eq(jv_get_kind(next), JV_KIND_NULL);

    /* Refusals: bad filters, limits, cursors (filter consumed: ASan). */
    cr_assert_eq(cv_store_list_instances(s, P("{\"colour\":\"red\"}"), 10, NULL, &list, &next, &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_list_instances(s, P("{\"status\":3}"), 10, NULL, &list, &next, &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_list_instances(s, P("[1]"), 10, NULL, &list, &next, &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_list_instances(s, jv_null(), 0, NULL, &list, &next, &err), CV_EINVAL);
    take_err(&err, m, sizeof m);
    cr_assert_eq(cv_store_list_instances(s, jv_null(), 5, "no-such-id", &list, &next, &err), CV_EINVAL);
    cr_assert(strstr(take_err(&err, m, sizeof m), "no-such-id"), "%s", m);
    cv_store_close(s);
}

Test(store, unfinished_instances_oldest_first)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    const char *statuses[] = {CV_ST_PENDING,   CV_ST_RUNNING, CV_ST_WAITING,  CV_ST_SUSPENDED,
                              CV_ST_COMPLETED, CV_ST_FAULTED, CV_ST_CANCELLED, CV_ST_RUNNING};
    char ids[8][64];
    for (int i = 0; i < 8; i++) {
        mkinst(s, "wf", i, ids[i]);
        if (i)
            set_status(s, ids[i], statuses[i]);
    }
    ok(cv_store_unfinished_instances(s, &out, &err), &err, "unfinished");
    char want[512], b[1024];
    snprintf(want, sizeof want, "[\"%s\",\"%s\",\"%s\",\"%s\"]", ids[0], ids[1], ids[2], ids[7]);
    cr_assert(is(jv_copy(out), want), "unfinished: %s", dump(jv_copy(out), b, sizeof b));
    jv_free(out);
    cv_store_close(s);
}

/* ---- checkpoints and history ---------------------------------------------- */

Test(store, checkpoint_applies_status_state_history_and_timers)
{
    cv_store *s = open_store();
    char id[64], m[512], b[2048];
    mkinst(s, "wf", 1, id);
    int64_t epoch = bump(s, id);
    cr_assert_eq(epoch, 1);

    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.epoch = epoch;
    cp.status = CV_ST_RUNNING;
    cp.state = P("{\"fibers\":[{\"frames\":[{\"ref\":\"/do/0\"}]}]}");
    cp.history = P("[{\"type\":\"workflow.started\"},{\"type\":\"task.started\",\"task\":\"/do/0/a\","
                   "\"data\":{\"x\":1}}]");
    cp.timers_add = P("[{\"key\":\"wait-a\",\"fireAt\":5000}]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    /* Consumed: the fields are left invalid, so a cleanup is harmless. */
    cr_assert(!jv_is_valid(cp.state) && !jv_is_valid(cp.history) && !jv_is_valid(cp.timers_add));
    cv_checkpoint_cleanup(&cp);

    jv o = instance(s, id);
    expect_member(o, "status", "\"running\"");
    expect_member(o, "state", "{\"fibers\":[{\"frames\":[{\"ref\":\"/do/0\"}]}]}");
    expect_member(o, "output", "null");
    expect_member(o, "epoch", "1");
    jv_free(o);

    /* Unchanged fields stay (status NULL, state invalid); output lands. */
    cv_checkpoint_init(&cp, id);
    cp.epoch = epoch;
    cp.output = P("{\"done\":true}");
    cp.history = P("[{\"type\":\"task.completed\",\"task\":\"/do/0/a\"}]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    o = instance(s, id);
    expect_member(o, "status", "\"running\"");
    expect_member(o, "state", "{\"fibers\":[{\"frames\":[{\"ref\":\"/do/0\"}]}]}");
    expect_member(o, "output", "{\"done\":true}");
    jv_free(o);

    /* A terminal checkpoint with an explicit null state and an error. */
    cv_checkpoint_init(&cp, id);
    cp.status = CV_ST_FAULTED;
    cp.state = jv_null();
    cp.error = P("{\"type\":\"https://serverlessworkflow.io/spec/1.0.0/errors/runtime\",\"status\":500}");
    cp.timers_del = P("[\"wait-a\"]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    o = instance(s, id);
    expect_member(o, "status", "\"faulted\"");
    expect_member(o, "state", "null");
    expect_member(o, "error", "{\"type\":\"https://serverlessworkflow.io/spec/1.0.0/errors/runtime\",\"status\":500}");
    jv_free(o);
    cr_assert_eq(next_timer(s), 0, "the timer was deleted");

    jv h = history(s, id);
    cr_assert_eq(jv_array_length(jv_copy(h)), 3, "%s", dump(jv_copy(h), b, sizeof b));
    jv e0 = jv_array_get(jv_copy(h), 0), e1 = jv_array_get(jv_copy(h), 1), e2 = jv_array_get(jv_copy(h), 2);
    expect_member(e0, "seq", "1");
    expect_member(e0, "type", "\"workflow.started\"");
    jv t0 = get(e0, "task"), d0 = get(e0, "data");
    cr_assert(!jv_is_valid(t0) && !jv_is_valid(d0), "absent task and data stay absent");
    expect_member(e1, "seq", "2");
    expect_member(e1, "task", "\"/do/0/a\"");
    expect_member(e1, "data", "{\"x\":1}");
    expect_member(e2, "seq", "3");
    expect_member(e2, "type", "\"task.completed\"");
    jv time0 = get(e0, "time"), time2 = get(e2, "time");
    cr_assert_eq(jv_get_kind(time0), JV_KIND_NUMBER);
    cr_assert_leq(jv_number_value(time0), jv_number_value(time2));
    jv_free(time0);
    jv_free(time2);
    jv_free(e0);
    jv_free(e1);
    jv_free(e2);
    jv_free(h);
    cv_store_close(s);
}

/* Everything observable about an instance, as one value: the row, its
 * history and its timers (due at any time). */
static jv snapshot(cv_store *s, const char *id)
{
    jv o = instance(s, id);
    jv h = history(s, id);
    jv t = due(s, INT64_MAX, 1000);
    jv mine = jv_array();
    jv_array_foreach(t, i, x)
    {
        char b[64];
        if (!strcmp(str(x, "instance", b, sizeof b), id))
            mine = jv_array_append(mine, x);
        else
            jv_free(x);
    }
    jv_free(t);
    jv snap = jv_object();
    snap = jv_object_set(snap, jv_string("instance"), o);
    snap = jv_object_set(snap, jv_string("history"), h);
    snap = jv_object_set(snap, jv_string("timers"), mine);
    return snap;
}

Test(store, a_stale_epoch_fails_the_whole_batch)
{
    cv_store *s = open_store();
    char a[64], b[64], c[64], m[512], d1[4096], d2[4096];
    mkinst(s, "wf", 1, a);
    mkinst(s, "wf", 2, b);
    mkinst(s, "wf", 3, c);
    int64_t ea = bump(s, a), eb = bump(s, b);
    eb = bump(s, b); /* b: epoch 2 now; a writer holding 1 is stale */
    cr_assert_eq(eb, 2);
    /* Give a some state first, so "unchanged" is not just "empty". */
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.epoch = ea;
    cp.status = CV_ST_RUNNING;
    cp.state = P("{\"v\":1}");
    cp.history = P("[{\"type\":\"one\"}]");
    cp.timers_add = P("[{\"key\":\"k\",\"fireAt\":100}]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    jv before_a = snapshot(s, a), before_b = snapshot(s, b), before_c = snapshot(s, c);

    struct cv_checkpoint batch[3];
    cv_checkpoint_init(&batch[0], a);
    batch[0].epoch = ea;
    batch[0].status = CV_ST_COMPLETED;
    batch[0].state = P("{\"v\":2}");
    batch[0].output = P("{\"out\":1}");
    batch[0].history = P("[{\"type\":\"two\"},{\"type\":\"three\"}]");
    batch[0].timers_add = P("[{\"key\":\"k2\",\"fireAt\":200}]");
    batch[0].timers_del = P("[\"k\"]");
    cv_checkpoint_init(&batch[1], c); /* epoch 0: unchecked, would succeed alone */
    batch[1].status = CV_ST_WAITING;
    batch[1].history = P("[{\"type\":\"c\"}]");
    cv_checkpoint_init(&batch[2], b);
    batch[2].epoch = 1; /* stale */
    batch[2].status = CV_ST_RUNNING;
    batch[2].state = P("{\"b\":true}");
    batch[2].history = P("[{\"type\":\"stale\"}]");
    jv err = jv_invalid();
    int rc = cv_store_checkpoint(s, batch, 3, &err);
    cr_assert_eq(rc, CV_ECONFLICT, "rc %d", rc);
    cr_assert(strstr(take_err(&err, m, sizeof m), b), "the message names the instance: %s", m);
    for (int i = 0; i < 3; i++) /* consumed on failure too */
        cr_assert(!jv_is_valid(batch[i].state) && !jv_is_valid(batch[i].history));

    jv after_a = snapshot(s, a), after_b = snapshot(s, b), after_c = snapshot(s, c);
    cr_assert(jv_equal(jv_copy(before_a), jv_copy(after_a)), "a changed:\n%s\n%s",
              dump(jv_copy(before_a), d1, sizeof d1), dump(jv_copy(after_a), d2, sizeof d2));
    cr_assert(jv_equal(jv_copy(before_b), jv_copy(after_b)), "b changed");
    cr_assert(jv_equal(jv_copy(before_c), jv_copy(after_c)), "c changed");
    jv_free(before_a);
    jv_free(before_b);
    jv_free(before_c);
    jv_free(after_a);
    jv_free(after_b);
    jv_free(after_c);

    /* An unknown instance in a batch: CV_ENOTFOUND, nothing applied. */
    cv_checkpoint_init(&batch[0], c);
    batch[0].status = CV_ST_RUNNING;
    cv_checkpoint_init(&batch[1], "00000000-0000-4000-8000-000000000000");
    batch[1].status = CV_ST_RUNNING;
    rc = cv_store_checkpoint(s, batch, 2, &err);
    cr_assert_eq(rc, CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    jv o = instance(s, c);
    expect_member(o, "status", "\"pending\"");
    jv_free(o);

    /* The same batch with b's current epoch goes through whole. */
    cv_checkpoint_init(&batch[0], a);
    batch[0].epoch = ea;
    batch[0].history = P("[{\"type\":\"two\"}]");
    cv_checkpoint_init(&batch[1], b);
    batch[1].epoch = eb;
    batch[1].history = P("[{\"type\":\"fresh\"}]");
    rc = cv_store_checkpoint(s, batch, 2, &err);
    cr_assert_eq(rc, 0, "%s", take_err(&err, m, sizeof m));
    jv h = history(s, a);
    cr_assert_eq(jv_array_length(h), 2);
    h = history(s, b);
    cr_assert_eq(jv_array_length(h), 1);
    cv_store_close(s);
}

Test(store, malformed_checkpoints_are_refused_whole)
{
    cv_store *s = open_store();
    char a[64], m[512];
    mkinst(s, "wf", 1, a);
    const char *bad_history[] = {"{\"type\":\"x\"}", "[{\"task\":\"t\"}]", "[{\"type\":1}]", "[\"x\"]",
                                 "[{\"type\":\"x\",\"task\":5}]"};
    for (size_t i = 0; i < sizeof bad_history / sizeof bad_history[0]; i++) {
        struct cv_checkpoint cp[2];
        cv_checkpoint_init(&cp[0], a);
        cp[0].status = CV_ST_RUNNING;
        cp[0].state = P("{\"big\":[1,2,3]}");
        cv_checkpoint_init(&cp[1], a);
        cp[1].history = P(bad_history[i]);
        jv err = jv_invalid();
        cr_assert_eq(cv_store_checkpoint(s, cp, 2, &err), CV_EINVAL, "history %s", bad_history[i]);
        take_err(&err, m, sizeof m);
    }
    const char *bad_add[] = {"[{\"key\":\"k\"}]", "[{\"key\":1,\"fireAt\":1}]", "{}", "[{\"key\":\"k\",\"fireAt\":\"1\"}]"};
    for (size_t i = 0; i < sizeof bad_add / sizeof bad_add[0]; i++) {
        struct cv_checkpoint cp;
        cv_checkpoint_init(&cp, a);
        cp.timers_add = P(bad_add[i]);
        cp.state = P("{\"x\":1}");
        cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL, "timers_add %s", bad_add[i]);
    }
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.timers_del = P("[1]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL);
    cv_checkpoint_init(&cp, a);
    cp.status = "sleeping";
    cp.output = P("1");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL);
    cr_assert(strstr(m, "sleeping"), "%s", m);
    cv_checkpoint_init(&cp, "");
    cp.output = P("1");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL);

    jv o = instance(s, a);
    expect_member(o, "status", "\"pending\"");
    expect_member(o, "state", "null");
    jv_free(o);
    jv h = history(s, a);
    cr_assert_eq(jv_array_length(h), 0);
    cr_assert_eq(next_timer(s), 0);
    jv err = jv_invalid();
    cr_assert_eq(cv_store_checkpoint(s, NULL, 0, &err), 0, "an empty batch is a no-op");
    cv_store_close(s);
}

Test(store, history_is_append_only_and_ordered)
{
    cv_store *s = open_store();
    char a[64], b[64], m[512];
    mkinst(s, "wf", 1, a);
    mkinst(s, "wf", 2, b);
    int total = 0;
    for (int round = 0; round < 20; round++) {
        /* Each batch: a gets round%3+1 events; b one; a appears twice in some batches. */
        struct cv_checkpoint cps[3];
        int n = 0;
        cv_checkpoint_init(&cps[n], a);
        jv ev = jv_array();
        for (int k = 0; k <= round % 3; k++)
            ev = jv_array_append(ev, jv_object_set(jv_object_set(jv_object(), jv_string("type"), jv_string("e")),
                                                   jv_string("data"), jv_number(total + k + 1)));
        total += round % 3 + 1;
        cps[n++].history = ev;
        cv_checkpoint_init(&cps[n], b);
        cps[n++].history = P("[{\"type\":\"b\"}]");
        if (round % 2) {
            cv_checkpoint_init(&cps[n], a);
            cps[n++].history = jv_array_append(
                jv_array(), jv_object_set(jv_object_set(jv_object(), jv_string("type"), jv_string("e")),
                                          jv_string("data"), jv_number(++total)));
        }
        jv err = jv_invalid();
        int rc = cv_store_checkpoint(s, cps, n, &err);
        cr_assert_eq(rc, 0, "%s", take_err(&err, m, sizeof m));
    }
    jv h = history(s, a);
    cr_assert_eq(jv_array_length(jv_copy(h)), total);
    jv_array_foreach(h, i, e)
    {
        jv seq = get(e, "seq"), data = get(e, "data");
        cr_assert_eq((int)jv_number_value(seq), i + 1, "seq of event %d", i);
        cr_assert_eq((int)jv_number_value(data), i + 1, "order of event %d", i);
        jv_free(seq);
        jv_free(data);
        jv_free(e);
    }
    jv_free(h);
    h = history(s, b);
    cr_assert_eq(jv_array_length(h), 20);
    cv_store_close(s);
}

/* ---- timers ---------------------------------------------------------------- */

static void set_timers(cv_store *s, const char *id, const char *add, const char *del)
{
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    if (add)
        cp.timers_add = P(add);
    if (del)
        cp.timers_del = P(del);
    char m[512];
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
}

Test(store, timers_add_replace_delete_due_next)
{
    cv_store *s = open_store();
    char a[64], b[64], want[1024], d[2048];
    mkinst(s, "wf", 1, a);
    mkinst(s, "wf", 2, b);
    cr_assert_eq(next_timer(s), 0, "no timers: 0");
    jv t = due(s, INT64_MAX, 10);
    cr_assert_eq(jv_array_length(t), 0);

    set_timers(s, a, "[{\"key\":\"k1\",\"fireAt\":100},{\"key\":\"k2\",\"fireAt\":200}]", NULL);
    set_timers(s, b, "[{\"key\":\"k1\",\"fireAt\":150}]", NULL);
    cr_assert_eq(next_timer(s), 100);
    t = due(s, 150, 10);
    snprintf(want, sizeof want, "[{\"instance\":\"%s\",\"key\":\"k1\",\"fireAt\":100},"
                                "{\"instance\":\"%s\",\"key\":\"k1\",\"fireAt\":150}]", a, b);
    cr_assert(is(jv_copy(t), want), "due(150): %s", dump(jv_copy(t), d, sizeof d));
    jv_free(t);
    t = due(s, 99, 10);
    cr_assert_eq(jv_array_length(t), 0, "nothing due before 100");
    t = due(s, 1000, 2);
    cr_assert_eq(jv_array_length(t), 2, "the limit holds");
    t = due(s, 1000, 10);
    cr_assert_eq(jv_array_length(t), 3);

    /* Replace a:k1 (same key, new time), delete a:k2. */
    set_timers(s, a, "[{\"key\":\"k1\",\"fireAt\":300}]", "[\"k2\"]");
    cr_assert_eq(next_timer(s), 150);
    t = due(s, 1000, 10);
    snprintf(want, sizeof want, "[{\"instance\":\"%s\",\"key\":\"k1\",\"fireAt\":150},"
                                "{\"instance\":\"%s\",\"key\":\"k1\",\"fireAt\":300}]", b, a);
    cr_assert(is(jv_copy(t), want), "after replace: %s", dump(jv_copy(t), d, sizeof d));
    jv_free(t);

    /* Delete and re-add the same key in one checkpoint: the new one stays. */
    set_timers(s, b, "[{\"key\":\"k1\",\"fireAt\":400}]", "[\"k1\"]");
    cr_assert_eq(next_timer(s), 300);
    /* Deleting a key that does not exist is not an error. */
    set_timers(s, b, NULL, "[\"nope\"]");
    set_timers(s, a, NULL, "[\"k1\"]");
    set_timers(s, b, NULL, "[\"k1\"]");
    cr_assert_eq(next_timer(s), 0);
    jv err = jv_invalid();
    jv out = jv_invalid();
    cr_assert_eq(cv_store_due_timers(s, 0, 0, &out, &err), CV_EINVAL);
    jv_free(err);
    cv_store_close(s);
}

/* ---- epochs --------------------------------------------------------------- */

Test(store, bump_epoch_fences_the_previous_owner)
{
    cv_store *s1 = open_store(), *s2 = open_store(); /* two owners, two connections */
    char a[64], m[512];
    mkinst(s1, "wf", 1, a);
    int64_t e1 = bump(s1, a);
    cr_assert_eq(e1, 1);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.epoch = e1;
    cp.state = P("{\"owner\":1}");
    cr_assert_eq(commit1(s1, &cp, m, sizeof m), 0, "%s", m);

    int64_t e2 = bump(s2, a); /* a new owner takes over */
    cr_assert_eq(e2, 2);
    cv_checkpoint_init(&cp, a);
    cp.epoch = e1;
    cp.state = P("{\"owner\":\"stale\"}");
    cp.history = P("[{\"type\":\"stale\"}]");
    cr_assert_eq(commit1(s1, &cp, m, sizeof m), CV_ECONFLICT);
    cr_assert(strstr(m, a), "%s", m);
    cv_checkpoint_init(&cp, a);
    cp.epoch = e2;
    cp.state = P("{\"owner\":2}");
    cr_assert_eq(commit1(s2, &cp, m, sizeof m), 0, "%s", m);
    jv o = instance(s1, a); /* the first handle sees the second's commit */
    expect_member(o, "state", "{\"owner\":2}");
    expect_member(o, "epoch", "2");
    jv_free(o);
    jv h = history(s1, a);
    cr_assert_eq(jv_array_length(h), 0, "the stale writer's event is not there");

    int64_t e = 0;
    jv err = jv_invalid();
    cr_assert_eq(cv_store_bump_epoch(s1, "no-such-instance", &e, &err), CV_ENOTFOUND);
    take_err(&err, m, sizeof m);
    cr_assert_eq(bump(s1, a), 3);
    cv_store_close(s1);
    cv_store_close(s2);
}

/* ---- durability ----------------------------------------------------------- */

Test(store, everything_survives_close_and_reopen)
{
    cv_store *s = open_store();
    char a[64], b[64], m[512], d1[4096], d2[4096];
    deploy(s, "ns", "wf", "2.0.0", "doc two");
    mkinst(s, "wf", 1, a);
    jv err = jv_invalid();
    int existed;
    ok(cv_store_create_instance(s, "test", "wf", NULL, P("{\"k\":true}"), "idem", b, &existed, &err), &err, "create");
    int64_t e = bump(s, a);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.epoch = e;
    cp.status = CV_ST_WAITING;
    cp.state = P("{\"fibers\":[],\"data\":\"x\"}");
    cp.history = P("[{\"type\":\"workflow.started\",\"data\":{\"by\":\"test\"}}]");
    cp.timers_add = P("[{\"key\":\"w\",\"fireAt\":1234}]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    jv before_a = snapshot(s, a), before_b = snapshot(s, b);
    jv wfs_before = jv_invalid();
    ok(cv_store_list_workflows(s, &wfs_before, &err), &err, "list");
    cv_store_close(s);

    s = open_store();
    jv after_a = snapshot(s, a), after_b = snapshot(s, b);
    cr_assert(jv_equal(jv_copy(before_a), after_a), "a:\n%s\n%s", dump(jv_copy(before_a), d1, sizeof d1),
              dump(snapshot(s, a), d2, sizeof d2));
    cr_assert(jv_equal(before_b, after_b));
    jv_free(before_a);
    jv wfs_after = jv_invalid();
    ok(cv_store_list_workflows(s, &wfs_after, &err), &err, "list");
    cr_assert(jv_equal(wfs_before, wfs_after));
    jv out = jv_invalid();
    ok(cv_store_get_workflow(s, "ns", "wf", "2.0.0", &out, &err), &err, "get");
    expect_member(out, "text", "\"doc two\"");
    jv_free(out);
    char again[64];
    ok(cv_store_create_instance(s, "test", "wf", NULL, jv_null(), "idem", again, &existed, &err), &err, "create");
    cr_assert_eq(existed, 1, "idempotency keys persist");
    cr_assert_str_eq(again, b);
    cr_assert_eq(next_timer(s), 1234);
    ok(cv_store_unfinished_instances(s, &out, &err), &err, "unfinished");
    char want[256];
    snprintf(want, sizeof want, "[\"%s\",\"%s\"]", a, b);
    cr_assert(is(out, want));
    cr_assert_eq(bump(s, a), e + 1, "epochs persist");
    cv_store_close(s);
}

/*
 * The crash test. A child process commits batches in a loop: batch k sets,
 * for each of N instances, state {batch: k, pad}, appends one history event
 * {type: "batch", data: k} and sets timer "t" to fire at k; after each commit
 * returns it reports k on a pipe. The parent SIGKILLs it at a random moment
 * (usually inside a commit: a batch is ~N KiB), reopens the store and checks
 * that all N instances agree on one K (each batch whole or absent), that
 * state, history and timer agree with K, that K is at least the last batch
 * reported committed (durable once the call returned) and at most one more.
 * Three rounds, each resuming where the last one ended.
 */
#define CRASH_INSTANCES 64

static void crash_child(const char (*ids)[64], int first, int fd)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    if (cv_store_open(url, &s, &err))
        _exit(3);
    char pad[1024];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int k = first; k < first + 100000; k++) {
        struct cv_checkpoint cps[CRASH_INSTANCES];
        for (int i = 0; i < CRASH_INSTANCES; i++) {
            cv_checkpoint_init(&cps[i], ids[i]);
            cps[i].status = CV_ST_RUNNING;
            cps[i].state = jv_object_set(jv_object_set(jv_object(), jv_string("batch"), jv_number(k)),
                                         jv_string("pad"), jv_string(pad));
            cps[i].history = jv_array_append(
                jv_array(), jv_object_set(jv_object_set(jv_object(), jv_string("type"), jv_string("batch")),
                                          jv_string("data"), jv_number(k)));
            cps[i].timers_add = jv_array_append(
                jv_array(), jv_object_set(jv_object_set(jv_object(), jv_string("key"), jv_string("t")),
                                          jv_string("fireAt"), jv_number(k)));
        }
        if (cv_store_checkpoint(s, cps, CRASH_INSTANCES, &err))
            _exit(4);
        if (write(fd, &k, sizeof k) != sizeof k)
            _exit(5);
    }
    _exit(0);
}

/* Reads batch numbers from fd until `want` arrived (want > 0) or, with want
 * == 0, until EOF; returns the last one (or `last`). Bounded by 20 s. */
static int read_reports(int fd, int want, int last)
{
    int got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 20000);
        cr_assert_gt(r, 0, "the child reported nothing for 20 s");
        int k;
        ssize_t n = read(fd, &k, sizeof k);
        if (n == 0)
            return last;
        cr_assert_eq(n, (ssize_t)sizeof k);
        last = k;
        if (want && ++got >= want)
            return last;
    }
}

Test(store, sigkill_leaves_every_batch_whole_or_absent, .timeout = 120)
{
    char ids[CRASH_INSTANCES][64];
    cv_store *s = open_store();
    for (int i = 0; i < CRASH_INSTANCES; i++)
        mkinst(s, "wf", i, ids[i]);
    cv_store_close(s);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int next = 1;
    for (int round = 0; round < 3; round++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child((const char (*)[64])ids, next, fds[1]);
        }
        close(fds[1]);
        int last = read_reports(fds[0], 2 + rand() % 20, next - 1);
        usleep((useconds_t)(rand() % 20000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ended otherwise: %d", status);
        last = read_reports(fds[0], 0, last);
        close(fds[0]);

        s = open_store();
        int K = -1;
        for (int i = 0; i < CRASH_INSTANCES; i++) {
            jv o = instance(s, ids[i]);
            jv st = get(o, "state");
            jv kb = get(st, "batch");
            int k = (int)jv_number_value(kb);
            jv_free(kb);
            jv_free(st);
            jv_free(o);
            if (K < 0)
                K = k;
            cr_assert_eq(k, K, "instance %d is at batch %d, instance 0 at %d: a batch was split", i, k, K);
            jv h = history(s, ids[i]);
            cr_assert_eq(jv_array_length(jv_copy(h)), K, "history length of instance %d", i);
            jv lastev = jv_array_get(h, K - 1);
            char kt[16];
            snprintf(kt, sizeof kt, "%d", K);
            expect_member(lastev, "data", kt);
            jv_free(lastev);
        }
        cr_assert_geq(K, last, "batch %d was reported committed but is missing (found %d)", last, K);
        cr_assert_leq(K, last + 1, "found batch %d, only %d were ever committed", K, last + 1);
        jv t = due(s, INT64_MAX, 1000);
        cr_assert_eq(jv_array_length(jv_copy(t)), CRASH_INSTANCES);
        jv_array_foreach(t, i, x)
        {
            jv at = get(x, "fireAt");
            cr_assert_eq((int)jv_number_value(at), K, "timer of instance %d", i);
            jv_free(at);
            jv_free(x);
        }
        jv_free(t);
        cv_store_close(s);
        next = K + 1;
    }
}

/* ---- SQLite only ------------------------------------------------------------ */

/* Runs SQL on the test's database file through a separate connection. */
static void sql_exec(const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
}

static int open_fails(const char *u, char *m, size_t n)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    int rc = cv_store_open(u, &s, &err);
    take_err(&err, m, n);
    cr_assert_null(s);
    return rc;
}

Test(store_sqlite, url_forms)
{
    char m[512], u[400];
    cv_store *s = open_url(dbpath); /* a plain path */
    cr_assert_str_eq(cv_store_backend(s), "sqlite");
    deploy(s, "ns", "wf", "1", "x");
    cv_store_close(s);
    snprintf(u, sizeof u, "sqlite:%s", dbpath);
    s = open_url(u);
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_get_workflow(s, "ns", "wf", "1", &out, &err), &err, "same file");
    jv_free(out);
    cv_store_close(s);
    snprintf(u, sizeof u, "sqlite://%s", dbpath); /* sqlite:///tmp/... */
    s = open_url(u);
    ok(cv_store_get_workflow(s, "ns", "wf", "1", &out, &err), &err, "same file");
    jv_free(out);
    cv_store_close(s);
    /* a PostgreSQL URL goes to that backend: nobody listens on port 1 */
    cr_assert_eq(open_fails("postgres://conveyor:secret@127.0.0.1:1/conveyor", m, sizeof m), CV_EIO);
    cr_assert(strstr(m, "127.0.0.1") && strstr(m, "cannot connect"), "the message names the server: %s", m);
    cr_assert(!strstr(m, "secret"), "and never the password: %s", m);
    cr_assert_eq(open_fails("redis://localhost", m, sizeof m), CV_EINVAL);
    cr_assert_eq(open_fails("sqlite:", m, sizeof m), CV_EINVAL);
    cr_assert_eq(open_fails("", m, sizeof m), CV_EINVAL);
    snprintf(u, sizeof u, "%s/no/such/dir/x.db", dir);
    cr_assert_eq(open_fails(u, m, sizeof m), CV_EIO);
    cr_assert(strstr(m, "no/such/dir"), "the message names the file: %s", m);
}

Test(store_sqlite, the_file_is_wal_and_marked)
{
    cv_store *s = open_store();
    cv_store_close(s);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int64(st, 0), 0x43565952);
    sqlite3_finalize(st);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT max(version) FROM conveyor_schema", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 7);
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* Reopening an up-to-date file applies nothing again. */
    s = open_store();
    cv_store_close(s);
}

Test(store_sqlite, a_newer_schema_is_refused)
{
    cv_store *s = open_store();
    cv_store_close(s);
    sql_exec("INSERT INTO conveyor_schema (version, applied_at) VALUES (99, 0)");
    char m[512];
    cr_assert_eq(open_fails(url, m, sizeof m), CV_EUNSUPPORTED);
    cr_assert(strstr(m, "database schema version 99 is newer than this conveyor (7)"), "%s", m);
}

Test(store_sqlite, a_garbage_file_is_an_io_error)
{
    FILE *f = fopen(dbpath, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not a database, just text. ", f);
    fclose(f);
    char m[512];
    cr_assert_eq(open_fails(url, m, sizeof m), CV_EIO);
    cr_assert(strstr(m, "not a database"), "SQLite's message: %s", m);
    cr_assert(strstr(m, dbpath), "the path: %s", m);
}

Test(store_sqlite, an_empty_file_becomes_a_database)
{
    FILE *f = fopen(dbpath, "w");
    cr_assert_not_null(f);
    fclose(f);
    cv_store *s = open_store();
    deploy(s, "ns", "wf", "1", "x");
    cv_store_close(s);
}

Test(store_sqlite, a_foreign_database_is_refused_and_left_alone)
{
    sql_exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada')");
    struct stat before, after;
    cr_assert_eq(stat(dbpath, &before), 0);
    char m[512];
    cr_assert_eq(open_fails(url, m, sizeof m), CV_EUNSUPPORTED);
    cr_assert(strstr(m, "not a conveyor database"), "%s", m);
    cr_assert_eq(stat(dbpath, &after), 0);
    cr_assert_eq(before.st_size, after.st_size);
    cr_assert_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    cr_assert_neq(access(wal, F_OK), 0, "not switched to WAL");

    /* Another application's id marks it foreign even when empty otherwise. */
    teardown();
    setup_sqlite();
    sql_exec("PRAGMA application_id = 1234");
    cr_assert_eq(open_fails(url, m, sizeof m), CV_EUNSUPPORTED);
    cr_assert(strstr(m, "another application"), "%s", m);
}

Test(store_sqlite, a_locked_database_is_busy)
{
    setenv("CONVEYOR_SQLITE_BUSY_MS", "200", 1);
    cv_store *s = open_store();
    char a[64], m[512];
    mkinst(s, "wf", 1, a);

    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE; INSERT INTO conveyor_schema VALUES (100, 0)", NULL, NULL, NULL),
                 SQLITE_OK);
    jv err = jv_invalid();
    int rc = cv_store_put_workflow(s, "ns", "wf", "2", "y", &err);
    cr_assert_eq(rc, CV_EBUSY, "rc %d", rc);
    cr_assert(strstr(take_err(&err, m, sizeof m), "locked"), "%s", m);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.state = P("{\"x\":1}");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EBUSY);
    int64_t e;
    cr_assert_eq(cv_store_bump_epoch(s, a, &e, &err), CV_EBUSY);
    take_err(&err, m, sizeof m);
    char id2[64];
    int existed;
    cr_assert_eq(cv_store_create_instance(s, "test", "wf", NULL, P("{}"), NULL, id2, &existed, &err), CV_EBUSY);
    take_err(&err, m, sizeof m);
    /* Readers are not blocked (WAL): they see the last committed state. */
    jv o = instance(s, a);
    expect_member(o, "state", "null");
    jv_free(o);

    /* Opening a second handle while locked: the file is already migrated,
     * so open only reads and succeeds. */
    cv_store *s2 = open_store();
    cv_store_close(s2);

    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cv_checkpoint_init(&cp, a);
    cp.state = P("{\"x\":1}");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "after the lock is gone: %s", m);
    cv_store_close(s);
}

Test(store_sqlite, a_fresh_file_locked_by_another_process_is_busy)
{
    setenv("CONVEYOR_SQLITE_BUSY_MS", "100", 1);
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE; CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    char m[512];
    cr_assert_eq(open_fails(url, m, sizeof m), CV_EBUSY, "%s", m);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    cv_store *s = open_store();
    cv_store_close(s);
}

Test(store_sqlite, a_read_only_file_is_refused_clearly)
{
    cv_store *s = open_store();
    cv_store_close(s);
    cr_assert_eq(chmod(dbpath, 0444), 0);
    cr_assert_eq(chmod(dir, 0755), 0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* root writes to any file: drop to an unprivileged user first. */
        if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
            _exit(2);
        char m[512] = "";
        cv_store *c = NULL;
        jv err = jv_invalid();
        int rc = cv_store_open(url, &c, &err);
        take_err(&err, m, sizeof m);
        cv_store_close(c);
        if (write(fds[1], m, strlen(m) + 1) < 0)
            _exit(3);
        _exit(rc == CV_EIO ? 0 : 1);
    }
    close(fds[1]);
    char m[512] = "";
    ssize_t n = read(fds[0], m, sizeof m - 1);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2)
        cr_skip_test("cannot drop root privileges here");
    cr_assert_gt(n, 0);
    cr_assert_eq(WEXITSTATUS(status), 0, "not CV_EIO: %s", m);
    cr_assert(strstr(m, "read-only"), "%s", m);
}

/* ---- values ------------------------------------------------------------------ */

/* A value nested `depth` arrays deep around `inner` (consumed). */
static jv nest(int depth, jv inner)
{
    for (int i = 0; i < depth; i++)
        inner = jv_array_append(jv_array(), inner);
    return inner;
}

Test(store, values_round_trip_exactly)
{
    cv_store *s = open_store();
    char a[64], m[512], d1[4096], d2[4096];
    mkinst(s, "wf", 1, a);
    const char *json =
        "{\"ints\":[0,-0,1,-1,42,9007199254740993,123456789012345678,1e17,-1e300],"
        "\"reals\":[0.1,1.5,-2.25,3.141592653589793,1e-7,6.02214076e23,2.2250738585072014e-308],"
        "\"strings\":[\"\",\"plain\",\"quote \\\" backslash \\\\ slash /\",\"\\n\\t\\r\\b\\f\\u0001\\u001f\\u007f\","
        "\"é ü 中文 🎉\",\"\\u2028\\u2029\"],"
        "\"nested\":{\"a\":{\"b\":[{},[],null,true,false]}},\"\\\"key\\n\":1}";
    jv want = P(json);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.state = jv_copy(want);
    cp.output = jv_copy(want);
    cp.error = jv_copy(want);
    cp.history = jv_array_append(jv_array(), jv_object_set(jv_object_set(jv_object(), jv_string("type"),
                                                                         jv_string("t\"\n")),
                                                           jv_string("data"), jv_copy(want)));
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    jv o = instance(s, a);
    const char *fields[] = {"state", "output", "error"};
    for (int i = 0; i < 3; i++) {
        jv got = get(o, fields[i]);
        cr_assert(jv_equal(jv_copy(got), jv_copy(want)), "%s:\n%s\n%s", fields[i], dump(jv_copy(got), d1, sizeof d1),
                  dump(jv_copy(want), d2, sizeof d2));
        jv_free(got);
    }
    jv_free(o);
    jv h = history(s, a);
    jv e = jv_array_get(h, 0);
    jv data = get(e, "data");
    cr_assert(jv_equal(data, jv_copy(want)), "history data");
    expect_member(e, "type", "\"t\\\"\\n\"");
    jv_free(e);
    /* NaN is stored as null, as jq prints it. */
    cv_checkpoint_init(&cp, a);
    cp.state = jv_array_append(jv_array(), jv_number(NAN));
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    o = instance(s, a);
    expect_member(o, "state", "[null]");
    jv_free(o);
    jv_free(want);
    cv_store_close(s);
}

Test(store, a_state_given_as_text_reads_back_as_the_value)
{
    cv_store *s = open_store();
    char a[64], m[512], d1[4096], d2[4096];
    mkinst(s, "wf", 1, a);
    jv want = P("{\"fibers\":[{\"frames\":[{\"ref\":\"/do/0/a\",\"idx\":3}]}],\"s\":\"\\u00e9 \\\"q\\\"\\n\",\"n\":-2.5}");
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cr_assert_eq(cv_checkpoint_set_state(&cp, jv_copy(want)), 0);
    cr_assert_not_null(cp.state_text);
    cr_assert(!jv_is_valid(cp.state), "the value is dropped once it is text");
    cp.status = "waiting";
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    jv o = instance(s, a);
    jv got = get(o, "state");
    cr_assert(jv_equal(jv_copy(got), jv_copy(want)), "%s\n%s", dump(jv_copy(got), d1, sizeof d1),
              dump(jv_copy(want), d2, sizeof d2));
    expect_member(o, "status", "\"waiting\"");
    jv_free(got);
    jv_free(o);
    /* a value the store would refuse is refused here, and nothing is set */
    jv deep = jv_array();
    for (int i = 0; i < 300; i++) /* deeper than the store accepts (256) */
        deep = jv_array_append(jv_array(), deep);
    cv_checkpoint_init(&cp, a);
    cr_assert_eq(cv_checkpoint_set_state(&cp, deep), CV_EINVAL);
    cr_assert_null(cp.state_text);
    cv_checkpoint_cleanup(&cp);
    jv_free(want);
    cv_store_close(s);
}

Test(store, values_too_deep_to_read_back_are_refused)
{
    cv_store *s = open_store();
    char a[64], m[512];
    mkinst(s, "wf", 1, a);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, a);
    cp.state = nest(256, jv_number(1)); /* the deepest libjq 1.6 parses */
    cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    jv o = instance(s, a);
    jv st = get(o, "state");
    cr_assert(jv_equal(st, nest(256, jv_number(1))));
    jv_free(o);

    cv_checkpoint_init(&cp, a);
    cp.status = CV_ST_RUNNING;
    cp.state = nest(300, jv_number(2));
    cp.history = P("[{\"type\":\"x\"}]");
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL);
    cr_assert(strstr(m, "deeper than 256"), "%s", m);
    cv_checkpoint_init(&cp, a);
    cp.history = jv_array_append(jv_array(), jv_object_set(jv_object_set(jv_object(), jv_string("type"),
                                                                         jv_string("x")),
                                                           jv_string("data"), nest(300, jv_null())));
    cr_assert_eq(commit1(s, &cp, m, sizeof m), CV_EINVAL);
    o = instance(s, a);
    expect_member(o, "status", "\"pending\"");
    jv_free(o);
    jv h = history(s, a);
    cr_assert_eq(jv_array_length(h), 0, "nothing of the refused checkpoints");

    char b[64];
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv_store_create_instance(s, "test", "wf", NULL, nest(400, jv_null()), NULL, b, &existed, &err),
                 CV_EINVAL);
    take_err(&err, m, sizeof m);
    jv list = jv_invalid(), next = jv_invalid();
    ok(cv_store_list_instances(s, jv_null(), 10, NULL, &list, &next, &err), &err, "list");
    cr_assert_eq(jv_array_length(list), 1, "no instance created");
    cv_store_close(s);
}

/* ---- models ------------------------------------------------------------- */

static int64_t put_model(cv_store *s, const char *name, const char *bytes)
{
    jv err = jv_invalid();
    int64_t v = -1;
    jv card = jv_object_set(jv_object(), jv_string("metrics"),
                            jv_object_set(jv_object(), jv_string("accuracy"), jv_number(0.75)));
    int rc = cv_store_put_model(s, name, "text", card, bytes, strlen(bytes), &v, &err);
    char m[512];
    cr_assert_eq(rc, 0, "%s", take_err(&err, m, sizeof m));
    return v;
}

static const char *status_of(cv_store *s, const char *name, int64_t version)
{
    static char st[32];
    jv card = jv_invalid(), err = jv_invalid();
    cr_assert_eq(cv_store_get_model(s, name, version, &card, NULL, NULL, &err), 0);
    jv v = jv_object_get(card, jv_string("status"));
    snprintf(st, sizeof st, "%s", jv_string_value(v));
    jv_free(v);
    return st;
}

Test(store, models_are_versioned_per_name_and_read_back_exactly)
{
    cv_store *s = open_store();
    cr_assert_eq(put_model(s, "router", "first\001bytes"), 1);
    cr_assert_eq(put_model(s, "router", "second"), 2);
    cr_assert_eq(put_model(s, "other.model-1", "x"), 1);
    cr_assert_eq(put_model(s, "router", "third"), 3);

    jv card = jv_invalid(), err = jv_invalid();
    void *bytes = NULL;
    size_t len = 0;
    cr_assert_eq(cv_store_get_model(s, "router", 1, &card, &bytes, &len, &err), 0);
    cr_assert_eq(len, strlen("first\001bytes"));
    cr_assert(!memcmp(bytes, "first\001bytes", len));
    free(bytes);
    jv want = jv_parse("{\"name\":\"router\",\"version\":1,\"kind\":\"text\",\"status\":\"draft\",\"size\":11,"
                       "\"metrics\":{\"accuracy\":0.75}}");
    jv_object_foreach(want, k, v)
    {
        jv got = jv_object_get(jv_copy(card), jv_copy(k));
        cr_assert(jv_equal(got, v), "card field %s", jv_string_value(k));
        jv_free(k);
    }
    jv_free(want);
    jv created = jv_object_get(card, jv_string("createdAt"));
    cr_assert(jv_number_value(created) > 1.7e12);
    jv_free(created);

    /* a bare name: the newest that is not retired */
    card = jv_invalid();
    cr_assert_eq(cv_store_get_model(s, "router", 0, &card, &bytes, &len, &err), 0);
    cr_assert_eq(len, 5);
    cr_assert(!memcmp(bytes, "third", 5));
    free(bytes);
    jv_free(card);

    /* the list: every version, by name then version, without bytes */
    jv list = jv_invalid();
    cr_assert_eq(cv_store_list_models(s, &list, &err), 0);
    cr_assert_eq(jv_array_length(jv_copy(list)), 4);
    const char *order[][2] = {{"other.model-1", "1"}, {"router", "1"}, {"router", "2"}, {"router", "3"}};
    for (int i = 0; i < 4; i++) {
        jv c = jv_array_get(jv_copy(list), i);
        jv n = jv_object_get(jv_copy(c), jv_string("name")), v = jv_object_get(c, jv_string("version"));
        cr_assert_str_eq(jv_string_value(n), order[i][0]);
        cr_assert_eq((int)jv_number_value(v), atoi(order[i][1]));
        jv_free(n);
        jv_free(v);
    }
    jv_free(list);

    /* versions survive a reopen and are never reused */
    cv_store_close(s);
    s = open_store();
    cr_assert_eq(put_model(s, "router", "fourth"), 4);
    cv_store_close(s);
}

Test(store, unknown_models_are_not_found)
{
    cv_store *s = open_store();
    jv card = jv_invalid(), err = jv_invalid();
    char m[512];
    cr_assert_eq(cv_store_get_model(s, "nothing", 0, &card, NULL, NULL, &err), CV_ENOTFOUND);
    cr_assert(strstr(take_err(&err, m, sizeof m), "nothing"), "%s", m);
    put_model(s, "router", "a");
    cr_assert_eq(cv_store_get_model(s, "router", 2, &card, NULL, NULL, &err), CV_ENOTFOUND);
    cr_assert(strstr(take_err(&err, m, sizeof m), "router@2"), "%s", m);
    cr_assert_eq(cv_store_set_model_status(s, "router", 9, "approved", &err), CV_ENOTFOUND);
    jv_free(err);
    cv_store_close(s);
}

Test(store, model_status_moves_and_one_production_version)
{
    cv_store *s = open_store();
    put_model(s, "router", "a");
    put_model(s, "router", "b");
    put_model(s, "router", "c");
    jv err = jv_invalid();
    char m[512];
    /* a draft cannot go straight to production: it needs an approval */
    cr_assert_eq(cv_store_set_model_status(s, "router", 1, "production", &err), CV_ECONFLICT);
    cr_assert(strstr(take_err(&err, m, sizeof m), "draft"), "%s", m);
    cr_assert_eq(cv_store_set_model_status(s, "router", 1, "approved", &err), 0);
    cr_assert_eq(cv_store_set_model_status(s, "router", 1, "production", &err), 0);
    cr_assert_str_eq(status_of(s, "router", 1), "production");
    /* a bare name means the production version, even when newer ones exist */
    jv card = jv_invalid();
    cr_assert_eq(cv_store_get_model(s, "router", 0, &card, NULL, NULL, &err), 0);
    jv v = jv_object_get(card, jv_string("version"));
    cr_assert_eq(jv_number_value(v), 1);
    jv_free(v);
    /* promoting another moves the previous production version back to approved */
    cr_assert_eq(cv_store_set_model_status(s, "router", 2, "approved", &err), 0);
    cr_assert_eq(cv_store_set_model_status(s, "router", 2, "production", &err), 0);
    cr_assert_str_eq(status_of(s, "router", 2), "production");
    cr_assert_str_eq(status_of(s, "router", 1), "approved");
    /* retired is final, and a bare name skips it */
    cr_assert_eq(cv_store_set_model_status(s, "router", 3, "retired", &err), 0);
    cr_assert_eq(cv_store_set_model_status(s, "router", 3, "approved", &err), CV_ECONFLICT);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_set_model_status(s, "router", 2, "retired", &err), 0);
    cr_assert_eq(cv_store_set_model_status(s, "router", 1, "retired", &err), 0);
    cr_assert_eq(cv_store_get_model(s, "router", 0, &card, NULL, NULL, &err), CV_ENOTFOUND);
    jv_free(err);
    err = jv_invalid();
    /* setting the status a version has is a no-op; unknown statuses are refused */
    cr_assert_eq(cv_store_set_model_status(s, "router", 3, "retired", &err), 0);
    cr_assert_eq(cv_store_set_model_status(s, "router", 3, "archived", &err), CV_EINVAL);
    jv_free(err);
    cv_store_close(s);
}

Test(store, malformed_models_are_refused_and_nothing_is_written)
{
    cv_store *s = open_store();
    jv err = jv_invalid();
    int64_t v = 0;
    cr_assert_eq(cv_store_put_model(s, "", "text", jv_object(), "x", 1, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_model(s, "has@at", "text", jv_object(), "x", 1, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_model(s, "-dash", "text", jv_object(), "x", 1, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_model(s, "ok", "Text!", jv_object(), "x", 1, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_model(s, "ok", "text", jv_array(), "x", 1, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_model(s, "ok", "text", jv_object(), "x", 0, &v, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    jv list = jv_invalid();
    cr_assert_eq(cv_store_list_models(s, &list, &err), 0);
    cr_assert_eq(jv_array_length(list), 0);
    cv_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Review tasks (docs/tasks.md)                                              */
/* ------------------------------------------------------------------------ */

/* A task definition (JSON text) made a task opened at `now`. */
static jv new_task(const char *json, int64_t now)
{
    jv t = jv_invalid(), err = jv_invalid();
    ok(cv_task_new(P(json), now, &t, &err), &err, "cv_task_new");
    return t;
}

static jv read_task(cv_store *s, const char *id)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_get_task(s, id, &out, &err), &err, "get_task");
    return out;
}

#define T0 1764871200000LL /* 2025-12-04T18:00:00Z */

Test(store, tasks_of_a_checkpoint_are_opened_once_and_cancelled_with_the_instance)
{
    cv_store *s = open_store();
    char id[64];
    mkinst(s, "review", 1, id);
    for (int round = 0; round < 2; round++) { /* a redone checkpoint: no duplicate */
        struct cv_checkpoint cp;
        cv_checkpoint_init(&cp, id);
        cp.status = CV_ST_WAITING;
        cp.tasks_add = JV_ARRAY(new_task("{\"id\":\"rv-1\",\"title\":\"Check\",\"task\":\"/do/1/check\","
                                         "\"workflow\":{\"namespace\":\"test\",\"name\":\"review\",\"version\":\"1.0.0\"}}",
                                         T0));
        char m[256];
        cr_assert_eq(commit1(s, &cp, m, sizeof m), 0, "%s", m);
    }
    jv list = jv_invalid(), next = jv_invalid(), err = jv_invalid();
    ok(cv_store_list_tasks(s, P("{\"instance\":\"x\"}"), 10, NULL, &list, &next, &err), &err, "list");
    cr_assert_eq(jv_array_length(list), 0);
    jv_free(next);
    char f[128];
    snprintf(f, sizeof f, "{\"instance\":\"%s\"}", id);
    ok(cv_store_list_tasks(s, P(f), 10, NULL, &list, &next, &err), &err, "list");
    cr_assert_eq(jv_array_length(jv_copy(list)), 1);
    jv_free(list);
    jv_free(next);
    jv t = read_task(s, "rv-1");
    char b[64];
    cr_assert_str_eq(str(t, "instance", b, sizeof b), id);
    expect_member(t, "status", "\"open\"");
    jv_free(t);
    /* the instance is cancelled: its open tasks are too, in the same transaction */
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.status = CV_ST_CANCELLED;
    cr_assert_eq(commit1(s, &cp, NULL, 0), 0);
    t = read_task(s, "rv-1");
    expect_member(t, "status", "\"cancelled\"");
    jv_free(t);
    jv out = jv_invalid();
    int rc = cv_store_task_complete(s, "rv-1", "ann", P("{\"decision\":\"approve\"}"), T0, 60000, &out, &err);
    cr_assert_eq(rc, CV_ECONFLICT);
    jv_free(err);
    cv_store_close(s);
}

Test(store, claims_are_exclusive_until_they_expire)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    int ex = -1;
    ok(cv_store_put_task(s, new_task("{\"id\":\"c-1\",\"title\":\"Claim me\"}", T0), &ex, &err), &err, "put");
    cr_assert_eq(ex, 0);
    ok(cv_store_task_claim(s, "c-1", "ann", T0, 60000, &out, &err), &err, "claim");
    expect_member(out, "claimedBy", "\"ann\"");
    jv_free(out);
    cr_assert_eq(cv_store_task_claim(s, "c-1", "bob", T0 + 1000, 60000, &out, &err), CV_ECONFLICT);
    char m[256];
    cr_assert(strstr(take_err(&err, m, sizeof m), "claimed by ann"), "%s", m);
    cr_assert_eq(cv_store_task_complete(s, "c-1", "bob", P("{\"decision\":\"approve\"}"), T0 + 2000, 1, &out, &err),
                 CV_ECONFLICT);
    jv_free(err);
    /* after the claim's 60 s, bob takes it over */
    ok(cv_store_task_claim(s, "c-1", "bob", T0 + 61000, 60000, &out, &err), &err, "take over");
    expect_member(out, "claimedBy", "\"bob\"");
    jv h = get(out, "history");
    jv last = jv_array_get(h, jv_array_length(jv_copy(h)) - 1);
    expect_member(last, "action", "\"claim taken over\"");
    expect_member(last, "from", "\"ann\"");
    jv_free(last);
    jv_free(out);
    cr_assert_eq(cv_store_task_release(s, "c-1", "ann", T0 + 62000, &out, &err), CV_ECONFLICT);
    jv_free(err);
    ok(cv_store_task_release(s, "c-1", "bob", T0 + 62000, &out, &err), &err, "release");
    expect_member(out, "status", "\"open\"");
    jv_free(out);
    cv_store_close(s);
}

Test(store, a_completion_is_validated_then_published_with_its_feedback)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    ok(cv_store_put_task(
           s,
           new_task("{\"id\":\"f-1\",\"title\":\"Label\",\"data\":{\"text\":\"hello\"},\"form\":{\"fields\":["
                    "{\"name\":\"label\",\"type\":\"enum\",\"options\":[\"a\",\"b\"],\"required\":true,"
                    "\"value\":\"a\",\"model\":\"m@2\",\"predicted\":\"a\",\"confidence\":0.6},"
                    "{\"name\":\"sum\",\"type\":\"money\"},{\"name\":\"when\",\"type\":\"date\"},"
                    "{\"name\":\"ok\",\"type\":\"boolean\"},{\"name\":\"n\",\"type\":\"number\"}]}}",
                    T0),
           NULL, &err),
       &err, "put");
    /* refused: bad values, an unknown field; nothing changes */
    int rc = cv_store_task_complete(
        s, "f-1", "ann",
        P("{\"decision\":\"approve\",\"fields\":{\"label\":\"c\",\"sum\":{\"amount\":1,\"currency\":\"eur\"},"
          "\"when\":\"2025-13-01\",\"ok\":1,\"n\":\"2\",\"zzz\":1}}"),
        T0, 60000, &out, &err);
    cr_assert_eq(rc, CV_EINVAL);
    jv errors = get(err, "errors");
    cr_assert_eq(jv_array_length(errors), 6);
    jv_free(err);
    jv t = read_task(s, "f-1");
    expect_member(t, "status", "\"open\"");
    jv_free(t);
    jv evs = jv_invalid();
    ok(cv_store_list_events(s, 0, T0, 100, &evs, &err), &err, "list_events");
    cr_assert_eq(jv_array_length(evs), 0);
    /* accepted: the event is on the bus, the override is a labeled example */
    ok(cv_store_task_complete(s, "f-1", "ann",
                              P("{\"decision\":\"approve\",\"fields\":{\"label\":\"b\",\"sum\":{\"amount\":1.5,"
                                "\"currency\":\"EUR\"},\"when\":\"2024-02-29\",\"ok\":false},\"comment\":\"b!\"}"),
                              T0 + 5000, 60000, &out, &err),
       &err, "complete");
    expect_member(out, "completion",
                  "{\"decision\":\"approve\",\"fields\":{\"label\":\"b\",\"sum\":{\"amount\":1.5,\"currency\":\"EUR\"},"
                  "\"when\":\"2024-02-29\",\"ok\":false,\"n\":null},\"reviewer\":\"ann\",\"comment\":\"b!\"}");
    jv_free(out);
    ok(cv_store_list_events(s, 0, T0, 100, &evs, &err), &err, "list_events");
    cr_assert_eq(jv_array_length(jv_copy(evs)), 1);
    jv e0 = jv_array_get(evs, 0);
    jv e = get(e0, "event");
    jv_free(e0);
    expect_member(e, "type", "\"io.conveyor.task.completed.v1\"");
    expect_member(e, "subject", "\"f-1\"");
    expect_member(e, "source", "\"conveyor\"");
    jv d = get(e, "data");
    expect_member(d, "decision", "\"approve\"");
    expect_member(d, "instance", "null");
    expect_member(d, "reviewer", "\"ann\"");
    expect_member(d, "openedAt", "\"2025-12-04T18:00:00Z\"");
    expect_member(d, "completedAt", "\"2025-12-04T18:00:05Z\"");
    jv_free(d);
    jv_free(e);
    jv fb = jv_invalid();
    ok(cv_store_list_feedback(s, "m", &fb, &err), &err, "feedback");
    cr_assert_eq(jv_array_length(jv_copy(fb)), 1);
    jv ex = jv_array_get(fb, 0);
    expect_member(ex, "model", "\"m@2\"");
    expect_member(ex, "predicted", "\"a\"");
    expect_member(ex, "corrected", "\"b\"");
    expect_member(ex, "overridden", "true");
    expect_member(ex, "input", "{\"text\":\"hello\"}");
    jv_free(ex);
    jv st = jv_invalid();
    ok(cv_store_task_stats(s, &st, &err), &err, "stats");
    expect_member(st, "models", "{\"m@2\":{\"reviewed\":1,\"overridden\":1}}");
    jv_free(st);
    /* twice: 409 */
    cr_assert_eq(cv_store_task_complete(s, "f-1", "ann", P("{\"decision\":\"approve\"}"), T0, 1, &out, &err),
                 CV_ECONFLICT);
    jv_free(err);
    cv_store_close(s);
}

Test(store, the_queue_is_ordered_by_priority_then_due_and_paged)
{
    cv_store *s = open_store();
    jv err = jv_invalid();
    const char *defs[] = {
        "{\"id\":\"q1\",\"title\":\"a\",\"priority\":1,\"due\":\"2026-01-02T00:00:00Z\"}",
        "{\"id\":\"q2\",\"title\":\"b\",\"priority\":1}",
        "{\"id\":\"q3\",\"title\":\"c\",\"priority\":1,\"due\":\"2026-01-01T00:00:00+02:00\"}",
        "{\"id\":\"q4\",\"title\":\"d\",\"priority\":9}",
        "{\"id\":\"q5\",\"title\":\"e\"}",
    };
    for (int i = 0; i < 5; i++)
        ok(cv_store_put_task(s, new_task(defs[i], T0 + i), NULL, &err), &err, "put");
    jv all = jv_array();
    char *after = NULL;
    for (int pages = 0; pages < 10; pages++) {
        jv list = jv_invalid(), next = jv_invalid();
        ok(cv_store_list_tasks(s, jv_object(), 2, after, &list, &next, &err), &err, "list");
        free(after);
        after = jv_get_kind(next) == JV_KIND_STRING ? strdup(jv_string_value(next)) : NULL;
        jv_free(next);
        jv_array_foreach(list, i, t) all = jv_array_append(all, get(t, "id")), jv_free(t);
        jv_free(list);
        if (!after)
            break;
    }
    cr_assert(is(all, "[\"q4\",\"q3\",\"q1\",\"q2\",\"q5\"]"));
    jv bad = jv_invalid(), next = jv_invalid();
    cr_assert_eq(cv_store_list_tasks(s, jv_object(), 2, "garbage", &bad, &next, &err), CV_EINVAL);
    jv_free(err);
    cv_store_close(s);
}

Test(store, a_task_definition_is_checked)
{
    const char *bad[] = {
        "{}",
        "{\"title\":1}",
        "{\"title\":\"x\",\"due\":\"soon\"}",
        "{\"title\":\"x\",\"form\":{\"fields\":[{\"name\":\"a\",\"type\":\"colour\"}]}}",
        "{\"title\":\"x\",\"form\":{\"fields\":[{\"name\":\"a\",\"type\":\"enum\"}]}}",
        "{\"title\":\"x\",\"form\":{\"fields\":[{\"name\":\"a\",\"type\":\"text\"},{\"name\":\"a\",\"type\":\"text\"}]}}",
        "{\"title\":\"x\",\"form\":{\"decisions\":[]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        jv t = jv_invalid(), err = jv_invalid();
        cr_assert_eq(cv_task_new(P(bad[i]), T0, &t, &err), CV_EINVAL, "%s", bad[i]);
        cr_assert_eq(jv_get_kind(err), JV_KIND_STRING);
        jv_free(err);
    }
}

Test(store, an_escalated_task_is_reassigned_and_claimable)
{
    cv_store *s = open_store();
    jv err = jv_invalid(), out = jv_invalid();
    ok(cv_store_put_task(s, new_task("{\"id\":\"e-1\",\"title\":\"Late\",\"role\":\"clerks\",\"due\":\"2025-12-04T19:00:00Z\"}", T0),
                         NULL, &err),
       &err, "put");
    ok(cv_store_task_claim(s, "e-1", "ann", T0, 60000, &out, &err), &err, "claim");
    jv_free(out);
    ok(cv_store_task_escalate(s, "e-1", P("{\"role\":\"supervisors\"}"), T0 + 3600000, &out, &err), &err, "escalate");
    expect_member(out, "status", "\"escalated\"");
    expect_member(out, "role", "\"supervisors\"");
    expect_member(out, "claimedBy", "null");
    jv_free(out);
    ok(cv_store_task_claim(s, "e-1", "sue", T0 + 3600001, 60000, &out, &err), &err, "claim escalated");
    jv_free(out);
    ok(cv_store_task_complete(s, "e-1", "sue", P("{\"decision\":\"reject\"}"), T0 + 3600002, 1000, &out, &err), &err,
       "complete");
    jv_free(out);
    cr_assert_eq(cv_store_task_escalate(s, "e-1", jv_object(), T0 + 3600003, &out, &err), CV_ECONFLICT);
    jv_free(err);
    cv_store_close(s);
}
