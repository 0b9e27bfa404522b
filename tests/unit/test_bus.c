/*
 * test_bus.c — the store's event bus (store.h: put_events, list_events,
 * purge_events, and events published with a checkpoint), suite "store_bus":
 * order, expiry, durability across a reopen, atomicity with the checkpoint,
 * bad arguments, named cursors and where events came from. On a real SQLite
 * file, or a new PostgreSQL database per test when CONVEYOR_TEST_PG_URL names
 * a server (test_store_url.h; tests/pg/test_store_pg.sh).
 */
#include "conveyor.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_store_url.h"

static char dir[256];
static char url[400];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cv-test-bus-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cv_test_store_url(dir, url, sizeof url);
    if (!strncmp(url, "sqlite:", 7)) /* the file's name the teardown removes */
        snprintf(url, sizeof url, "sqlite:%s/bus.db", dir);
}

static void teardown(void)
{
    cv_test_store_url_done();
    char p[400];
    static const char *const files[] = {"bus.db", "bus.db-wal", "bus.db-shm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

TestSuite(store_bus, .init = setup, .fini = teardown, .timeout = 60);

static cv_store *open_store(void)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    int rc = cv_store_open(url, &s, &err);
    cr_assert_eq(rc, CV_OK, "open: %s", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "?");
    jv_free(err);
    return s;
}

/* {event: {specversion, id, source, type}, expiresAt} */
static jv entry(const char *id, const char *type, double expires)
{
    jv ev = JV_OBJECT(jv_string("specversion"), jv_string("1.0"), jv_string("id"), jv_string(id),
                      jv_string("source"), jv_string("test"), jv_string("type"), jv_string(type));
    return JV_OBJECT(jv_string("event"), ev, jv_string("expiresAt"), jv_number(expires));
}

static const char *event_id(jv list, int i, char *buf, size_t n)
{
    jv id = jv_getpath(jv_copy(list), JV_ARRAY(jv_number(i), jv_string("event"), jv_string("id")));
    snprintf(buf, n, "%s", jv_get_kind(id) == JV_KIND_STRING ? jv_string_value(id) : "?");
    jv_free(id);
    return buf;
}

Test(store_bus, events_come_back_in_order_after_a_reopen)
{
    cv_store *s = open_store();
    jv seqs = jv_invalid(), err = jv_invalid();
    cr_assert_eq(cv_store_put_events(s, JV_ARRAY(entry("a", "t.one", 4e12), entry("b", "t.two", 4e12)), &seqs, &err),
                 CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(seqs)), 2);
    double s0 = jv_number_value(jv_array_get(jv_copy(seqs), 0)), s1 = jv_number_value(jv_array_get(jv_copy(seqs), 1));
    cr_assert(s0 > 0 && s1 > s0, "sequence numbers increase: %g %g", s0, s1);
    jv_free(seqs);
    cv_store_close(s);

    s = open_store();
    jv list;
    cr_assert_eq(cv_store_list_events(s, 0, 1000, 100, &list, &err), CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(list)), 2);
    char b[64];
    cr_assert_str_eq(event_id(list, 0, b, sizeof b), "a");
    cr_assert_str_eq(event_id(list, 1, b, sizeof b), "b");
    jv_free(list);
    /* after = the first's seq: only the second */
    cr_assert_eq(cv_store_list_events(s, (int64_t)s0, 1000, 100, &list, &err), CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(list)), 1);
    cr_assert_str_eq(event_id(list, 0, b, sizeof b), "b");
    jv_free(list);
    /* limit */
    cr_assert_eq(cv_store_list_events(s, 0, 1000, 1, &list, &err), CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(list)), 1);
    jv_free(list);
    cv_store_close(s);
}

Test(store_bus, expired_events_are_not_listed_and_are_purged)
{
    cv_store *s = open_store();
    jv seqs = jv_invalid(), err = jv_invalid();
    cr_assert_eq(cv_store_put_events(s, JV_ARRAY(entry("old", "t", 1000), entry("new", "t", 5000)), &seqs, &err),
                 CV_OK);
    jv_free(seqs);
    jv list;
    cr_assert_eq(cv_store_list_events(s, 0, 2000, 100, &list, &err), CV_OK);
    char b[64];
    cr_assert_eq(jv_array_length(jv_copy(list)), 1);
    cr_assert_str_eq(event_id(list, 0, b, sizeof b), "new");
    jv_free(list);
    int purged = -1;
    cr_assert_eq(cv_store_purge_events(s, 2000, &purged, &err), CV_OK);
    cr_assert_eq(purged, 1);
    cr_assert_eq(cv_store_list_events(s, 0, 0, 100, &list, &err), CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(list)), 1, "the unexpired one stays");
    jv_free(list);
    cv_store_close(s);
}

Test(store_bus, a_checkpoint_publishes_its_events_or_nothing)
{
    cv_store *s = open_store();
    jv err = jv_invalid();
    cr_assert_eq(cv_store_put_workflow(s, "test", "w", "1.0.0", "document: {}", &err), CV_OK);
    char id[64];
    int existed;
    cr_assert_eq(cv_store_create_instance(s, "test", "w", "1.0.0", jv_object(), NULL, id, &existed, &err), CV_OK);
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.status = CV_ST_RUNNING;
    cp.state = jv_object();
    cp.events = JV_ARRAY(entry("emitted", "t.emit", 4e12));
    cr_assert_eq(cv_store_checkpoint(s, &cp, 1, &err), CV_OK);
    jv list;
    cr_assert_eq(cv_store_list_events(s, 0, 1000, 100, &list, &err), CV_OK);
    char b[64];
    cr_assert_eq(jv_array_length(jv_copy(list)), 1);
    cr_assert_str_eq(event_id(list, 0, b, sizeof b), "emitted");
    jv_free(list);

    /* a batch that fails (an unknown instance) publishes nothing */
    struct cv_checkpoint two[2];
    cv_checkpoint_init(&two[0], id);
    two[0].events = JV_ARRAY(entry("lost", "t.emit", 4e12));
    cv_checkpoint_init(&two[1], "no-such-instance");
    two[1].state = jv_object();
    cr_assert_neq(cv_store_checkpoint(s, two, 2, &err), CV_OK);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_list_events(s, 0, 1000, 100, &list, &err), CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(list)), 1, "the failed batch's event is not there");
    jv_free(list);
    cv_store_close(s);
}

Test(store_bus, malformed_events_are_refused)
{
    cv_store *s = open_store();
    jv seqs = jv_invalid(), err = jv_invalid();
    /* no type */
    jv bad = JV_ARRAY(JV_OBJECT(jv_string("event"), JV_OBJECT(jv_string("id"), jv_string("x")), jv_string("expiresAt"),
                                jv_number(1)));
    cr_assert_eq(cv_store_put_events(s, bad, &seqs, &err), CV_EINVAL);
    cr_assert(jv_get_kind(err) == JV_KIND_STRING && strstr(jv_string_value(err), "events"));
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_put_events(s, jv_string("nope"), &seqs, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    jv list;
    cr_assert_eq(cv_store_list_events(s, 0, 0, 0, &list, &err), CV_EINVAL, "a limit below 1");
    jv_free(err);
    cv_store_close(s);
}

Test(store_bus, cursors_survive_a_reopen_and_events_say_where_they_came_from)
{
    cv_store *s = open_store();
    jv err = jv_invalid();
    int64_t seq = 7;
    cr_assert_eq(cv_store_get_cursor(s, "sink:http://x", &seq, &err), CV_OK);
    cr_assert_eq(seq, -1, "a cursor never set reads -1");
    cr_assert_eq(cv_store_set_cursor(s, "sink:http://x", 0, &err), CV_OK);
    cr_assert_eq(cv_store_set_cursor(s, "sink:http://x", 42, &err), CV_OK);
    cr_assert_eq(cv_store_set_cursor(s, "sink:http://x", -1, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    jv seqs = jv_invalid();
    cr_assert_eq(cv_store_put_events(s, JV_ARRAY(entry("api-1", "t", 4e12)), &seqs, &err), CV_OK);
    jv_free(seqs);
    cv_store_close(s);

    s = open_store();
    cr_assert_eq(cv_store_get_cursor(s, "sink:http://x", &seq, &err), CV_OK);
    cr_assert_eq(seq, 42);
    jv list;
    cr_assert_eq(cv_store_list_events(s, 0, 1000, 10, &list, &err), CV_OK);
    jv origin = jv_getpath(jv_copy(list), JV_ARRAY(jv_number(0), jv_string("origin")));
    cr_assert_str_eq(jv_string_value(origin), "api");
    jv_free(origin);
    jv_free(list);
    cv_store_close(s);
}
