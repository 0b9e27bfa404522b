/*
 * test_pgstore.c — what only the PostgreSQL backend can show (suite
 * "store_postgres"): a server that does not answer, a schema newer than the
 * code, a read-only database, a connection dropped between operations, and
 * nodes opening a fresh database at the same moment, no password of a URL in
 * a message. They need a server:
 * CONVEYOR_TEST_PG_URL (tests/run-all.sh starts one with tests/pg/pg.sh);
 * without it they are skipped (and counted as skipped, not passed). The
 * conformance suites `store` and `store_lease` run on PostgreSQL too.
 */
#include "common/util.h"
#include "conveyor.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_store_url.h"

static char url[400];

static void setup(void)
{
    if (!getenv("CONVEYOR_TEST_PG_URL") || !*getenv("CONVEYOR_TEST_PG_URL"))
        cr_skip_test("CONVEYOR_TEST_PG_URL is not set: no PostgreSQL server to test against");
    cv_test_store_url("/tmp", url, sizeof url);
}

static void teardown(void) { cv_test_store_url_done(); }

TestSuite(store_postgres, .init = setup, .fini = teardown, .timeout = 60);

static const char *msg(jv *err, char *buf, size_t n)
{
    snprintf(buf, n, "%s", jv_get_kind(*err) == JV_KIND_STRING ? jv_string_value(*err) : "(no message)");
    jv_free(*err);
    *err = jv_invalid();
    return buf;
}

/* Runs SQL on the test's own database. */
static void db_exec(const char *sql)
{
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

Test(store_postgres, a_server_that_does_not_answer_is_a_clear_io_error_in_bounded_time)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    char m[512];
    int64_t t0 = cv__now_ms();
    /* 192.0.2.1 (TEST-NET-1) never answers: the connect timeout ends it */
    int rc = cv_store_open("postgres://conveyor@192.0.2.1:5432/conveyor?connect_timeout=2", &s, &err);
    int64_t took = cv__now_ms() - t0;
    cr_assert_eq(rc, CV_EIO);
    cr_assert_null(s);
    msg(&err, m, sizeof m);
    cr_assert(strstr(m, "192.0.2.1") && strstr(m, "cannot connect"), "%s", m);
    cr_assert_lt(took, 15000, "bounded by the connect timeout, took %lld ms", (long long)took);
}

Test(store_postgres, no_message_shows_a_password_of_the_url)
{
    /* libpq quotes a URL it cannot parse in its message; the server at
     * port 1 refuses; a password sits in the user part and in the query */
    static const char *const urls[] = {
        "postgres://conveyor:s3cretA@[::1/conveyor?password=s3cretB",
        "postgresql://conveyor:s3cretA@127.0.0.1:1/conveyor?sslmode=disable&password=s3cretB",
        "postgres://conveyor:s3cretA@127.0.0.1:1/conveyor?bogus=1&password=s3cretB",
    };
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        cv_store *s = NULL;
        jv err = jv_invalid();
        char m[512];
        cr_assert_eq(cv_store_open(urls[i], &s, &err), CV_EIO, "%s", urls[i]);
        cr_assert_null(s);
        msg(&err, m, sizeof m);
        cr_assert(!strstr(m, "s3cret"), "%s: %s", urls[i], m);
        cr_assert(strstr(m, "cannot connect"), "%s", m);
    }
}

Test(store_postgres, a_newer_schema_is_refused)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    char m[512];
    cr_assert_eq(cv_store_open(url, &s, &err), 0, "%s", msg(&err, m, sizeof m));
    cr_assert_str_eq(cv_store_backend(s), "postgres");
    cv_store_close(s);
    db_exec("INSERT INTO conveyor_schema (version, applied_at) VALUES (99, 0)");
    cr_assert_eq(cv_store_open(url, &s, &err), CV_EUNSUPPORTED);
    msg(&err, m, sizeof m);
    cr_assert(strstr(m, "database schema version 99 is newer than this conveyor"), "%s", m);
}

Test(store_postgres, a_read_only_database_is_refused_clearly)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    char m[512], sql[200];
    cr_assert_eq(cv_store_open(url, &s, &err), 0, "%s", msg(&err, m, sizeof m));
    cv_store_close(s);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s SET default_transaction_read_only = on", cv_test_pg_db);
    db_exec(sql);
    cr_assert_eq(cv_store_open(url, &s, &err), CV_EIO);
    msg(&err, m, sizeof m);
    cr_assert(strstr(m, "read-only"), "%s", m);
    cr_assert_null(s);
}

Test(store_postgres, a_dropped_connection_is_made_again_for_the_next_operation)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    char m[512], id[64];
    cr_assert_eq(cv_store_open(url, &s, &err), 0, "%s", msg(&err, m, sizeof m));
    cr_assert_eq(cv_store_put_workflow(s, "t", "wf", "1.0.0", "document: {}", &err), 0, "%s", msg(&err, m, sizeof m));
    /* every other connection to the test's database is ended, as a restart
     * of the server or a network cut would */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' AND pid <> pg_backend_pid()",
             cv_test_pg_db);
    db_exec(sql);
    int existed = 0;
    int rc = cv_store_create_instance(s, "t", "wf", "1.0.0", jv_null(), NULL, id, &existed, &err);
    cr_assert_eq(rc, 0, "the next operation reconnects: %s", msg(&err, m, sizeof m));
    jv out = jv_invalid();
    cr_assert_eq(cv_store_get_instance(s, id, &out, &err), 0, "%s", msg(&err, m, sizeof m));
    jv_free(out);
    cv_store_close(s);
}

static void *open_one(void *arg)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    intptr_t rc = cv_store_open(url, &s, &err);
    jv_free(err);
    cv_store_close(s);
    return (void *)rc;
}

Test(store_postgres, nodes_opening_a_fresh_database_at_once_all_succeed)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, open_one, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        cr_assert_eq((intptr_t)rc, 0, "open %d: %s", i, cv_strerror((int)(intptr_t)rc));
    }
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, "SELECT count(*) FROM conveyor_schema");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "1", "the migration applied once");
    PQclear(r);
    PQfinish(c);
}

struct watcher {
    cv_store *s;
    int rc, what;
};

static void *watch_once(void *arg)
{
    struct watcher *w = arg;
    jv err = jv_invalid();
    w->rc = cv_store_watch(w->s, 10000, &w->what, &err);
    jv_free(err);
    return NULL;
}

Test(store_postgres, a_node_waiting_in_watch_hears_of_events_and_released_leases)
{
    cv_store *a = NULL, *b = NULL;
    jv err = jv_invalid();
    char m[512];
    cr_assert_eq(cv_store_open(url, &a, &err), 0, "%s", msg(&err, m, sizeof m));
    cr_assert_eq(cv_store_open(url, &b, &err), 0, "%s", msg(&err, m, sizeof m));
    cr_assert(cv_store_can_watch(a));
    struct watcher w = {.s = a};
    int what = -1;
    cr_assert_eq(cv_store_watch(a, 10, &what, &err), 0, "the first call starts listening: %s", msg(&err, m, sizeof m));
    cr_assert_eq(what, 0, "nothing announced yet");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, watch_once, &w), 0);
    jv seqs = jv_invalid();
    jv ev = JV_ARRAY(JV_OBJECT(jv_string("event"),
                               JV_OBJECT(jv_string("specversion"), jv_string("1.0"), jv_string("id"), jv_string("e1"),
                                         jv_string("source"), jv_string("test"), jv_string("type"), jv_string("t")),
                               jv_string("expiresAt"), jv_number(4e12)));
    cr_assert_eq(cv_store_put_events(b, ev, &seqs, &err), 0, "%s", msg(&err, m, sizeof m));
    jv_free(seqs);
    pthread_join(th, NULL);
    cr_assert_eq(w.rc, 0);
    cr_assert_eq(w.what & CV_WATCH_BUS, CV_WATCH_BUS, "woken by the announcement, not the 10 s timeout (%d)", w.what);
    /* a node's clean stop announces its released leases */
    cr_assert_eq(pthread_create(&th, NULL, watch_once, &w), 0);
    cr_assert_eq(cv_store_lease_release(b, "n2", &err), 0, "%s", msg(&err, m, sizeof m));
    pthread_join(th, NULL);
    cr_assert_eq(w.what & CV_WATCH_LEASE, CV_WATCH_LEASE, "(%d)", w.what);
    cv_store_close(a);
    cv_store_close(b);
}

Test(store_postgres, no_process_claims_a_shared_database)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    char m[512];
    cr_assert_eq(cv_store_open(url, &s, &err), 0, "%s", msg(&err, m, sizeof m));
    cr_assert_eq(cv_store_claim(s, &err), CV_EUNSUPPORTED, "run --db and resume --db would run instances unfenced");
    msg(&err, m, sizeof m);
    cr_assert(strstr(m, "shared by several nodes") && strstr(m, "--node"), "%s", m);
    cv_store_close(s);
}
