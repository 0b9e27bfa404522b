/*
 * test_store_url.h — an empty store for each test of a storage conformance
 * suite (test_lease.c), whatever the backend:
 *   - CONVEYOR_TEST_STORE_URL set: that URL (the runner hands each test an
 *     empty store);
 *   - CONVEYOR_TEST_PG_URL set (a PostgreSQL server's maintenance database,
 *     tests/pg/pg.sh): a new database per test, dropped afterwards;
 *   - else a SQLite file in the test's directory.
 * Static functions: included by one test file each (Criterion runs every
 * test in its own process, so the globals are per test).
 */
#ifndef CV_TEST_STORE_URL_H
#define CV_TEST_STORE_URL_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char cv_test_pg_db[64];

/* Runs one statement on the server of CONVEYOR_TEST_PG_URL; 0 on success. */
static int cv_test_pg_exec(const char *sql, char *msg, size_t n)
{
    PGconn *c = PQconnectdb(getenv("CONVEYOR_TEST_PG_URL"));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc && msg)
            snprintf(msg, n, "%s", PQresultErrorMessage(r));
        PQclear(r);
    } else if (msg) {
        snprintf(msg, n, "%s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

/* The test's store URL into url (dir: the test's temporary directory). */
static void cv_test_store_url(const char *dir, char *url, size_t n)
{
    const char *u = getenv("CONVEYOR_TEST_STORE_URL");
    const char *pg = getenv("CONVEYOR_TEST_PG_URL");
    cv_test_pg_db[0] = 0;
    if (u && *u) {
        snprintf(url, n, "%s", u);
    } else if (pg && *pg) {
        static int count;
        snprintf(cv_test_pg_db, sizeof cv_test_pg_db, "cvt_%ld_%d", (long)getpid(), count++);
        char sql[128], msg[512];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", cv_test_pg_db);
        cr_assert_eq(cv_test_pg_exec(sql, msg, sizeof msg), 0, "%s: %s", sql, msg);
        /* the maintenance URL with the new database's name instead of its own */
        /* the database is the last path segment before any ?query (which may hold '/') */
        const char *query = strchr(pg, '?');
        size_t head = query ? (size_t)(query - pg) : strlen(pg);
        const char *slash = NULL;
        for (size_t i = 0; i < head; i++)
            if (pg[i] == '/')
                slash = pg + i;
        cr_assert(slash && slash > strstr(pg, "://") + 2, "CONVEYOR_TEST_PG_URL needs a /database: %s", pg);
        snprintf(url, n, "%.*s/%s%s", (int)(slash - pg), pg, cv_test_pg_db, query ? query : "");
    } else {
        snprintf(url, n, "sqlite:%s/conveyor.db", dir);
    }
}

/* Drops the test's database, if it made one (best effort). */
static void cv_test_store_url_done(void)
{
    if (!cv_test_pg_db[0])
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", cv_test_pg_db);
    cv_test_pg_exec(sql, NULL, 0);
    cv_test_pg_db[0] = 0;
}

#endif
