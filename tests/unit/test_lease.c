/*
 * test_lease.c — the storage conformance suite for leases (store.h,
 * "leases"; docs/cluster.md): what lets several nodes run one store's
 * instances. Suite "store_lease" goes through cv_store_* only and is driven
 * by a URL like suite "store" (test_store.c): a fresh SQLite file per test by
 * default, a fresh PostgreSQL database per test when CONVEYOR_TEST_PG_URL
 * names a server (tests/run-all.sh starts one).
 *
 * It covers: who owns a new instance and at which epoch, taking the
 * instances whose lease ended (and only those, oldest first, up to a limit),
 * the epoch bump that fences the previous owner's checkpoints, renewing,
 * taking one's own back at start-up (reclaim), releasing on a clean stop,
 * ended instances never taken, named leases, and two handles taking leases
 * at the same time never taking the same instance.
 */
#include "conveyor.h"
#include "common/util.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_store_url.h"

static char dir[256];
static char url[400];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cv-test-lease-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cv_test_store_url(dir, url, sizeof url);
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

TestSuite(store_lease, .init = setup, .fini = teardown, .timeout = 60);

static void ok(int rc, jv *err, const char *what)
{
    if (rc != 0) {
        char m[512];
        snprintf(m, sizeof m, "%s", jv_get_kind(*err) == JV_KIND_STRING ? jv_string_value(*err) : "(no message)");
        cr_assert_fail("%s: %d (%s) %s", what, rc, cv_strerror(rc), m);
    }
    jv_free(*err);
    *err = jv_invalid();
}

static cv_store *open_store(void)
{
    cv_store *s = NULL;
    jv err = jv_invalid();
    ok(cv_store_open(url, &s, &err), &err, "open");
    return s;
}

static void mkinst(cv_store *s, char id[64])
{
    jv err = jv_invalid();
    ok(cv_store_put_workflow(s, "test", "wf", "1.0.0", "document: {name: wf}", &err), &err, "put_workflow");
    int existed = -1;
    ok(cv_store_create_instance(s, "test", "wf", "1.0.0", jv_null(), NULL, id, &existed, &err), &err,
       "create_instance");
}

static jv getinst(cv_store *s, const char *id, const char *key)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_get_instance(s, id, &out, &err), &err, "get_instance");
    return jv_object_get(out, jv_string(key));
}

static int64_t epoch_of(cv_store *s, const char *id)
{
    jv e = getinst(s, id, "epoch");
    int64_t v = (int64_t)jv_number_value(e);
    jv_free(e);
    return v;
}

/* The owner of `id`, or "" when none, into buf. */
static const char *owner_of(cv_store *s, const char *id, char *buf, size_t n)
{
    jv o = getinst(s, id, "owner");
    snprintf(buf, n, "%s", jv_get_kind(o) == JV_KIND_STRING ? jv_string_value(o) : "");
    jv_free(o);
    return buf;
}

static jv acquire(cv_store *s, const char *node, int64_t now, int64_t lease, int limit, int reclaim)
{
    jv out = jv_invalid(), err = jv_invalid();
    ok(cv_store_lease_acquire(s, node, now, lease, limit, reclaim, &out, &err), &err, "lease_acquire");
    cr_assert_eq(jv_get_kind(out), JV_KIND_ARRAY);
    return out;
}

/* Whether the acquired list (borrowed) holds `id` with `epoch`. */
static int holds(jv list, const char *id, int64_t epoch)
{
    int found = 0;
    jv_array_foreach(list, i, x)
    {
        (void)i;
        jv xid = jv_object_get(jv_copy(x), jv_string("id"));
        jv xe = jv_object_get(x, jv_string("epoch"));
        if (!strcmp(jv_string_value(xid), id) && (int64_t)jv_number_value(xe) == epoch)
            found = 1;
        jv_free(xid);
        jv_free(xe);
    }
    return found;
}

static int commit_at(cv_store *s, const char *id, int64_t epoch, const char *status)
{
    struct cv_checkpoint cp;
    cv_checkpoint_init(&cp, id);
    cp.epoch = epoch;
    cp.status = status;
    cp.state = JV_OBJECT(jv_string("by"), jv_number((double)epoch));
    jv err = jv_invalid();
    int rc = cv_store_checkpoint(s, &cp, 1, &err);
    jv_free(err);
    return rc;
}

Test(store_lease, a_new_instance_is_unowned_or_owned_by_the_node_that_created_it)
{
    cv_store *s = open_store();
    char a[64], b[64], o[160];
    mkinst(s, a);
    cr_assert_str_eq(owner_of(s, a, o, sizeof o), "");
    cr_assert_eq(epoch_of(s, a), 0);
    cr_assert_eq(cv_store_set_node(s, "n1", 10000), 0);
    mkinst(s, b);
    cr_assert_str_eq(owner_of(s, b, o, sizeof o), "n1");
    cr_assert_eq(epoch_of(s, b), 1, "a created instance starts at epoch 1 under its node");
    /* its lease runs: another node cannot take it now, the free one it can */
    int64_t now = cv__wall_ms();
    jv got = acquire(s, "n2", now, 10000, 100, 0);
    cr_assert_eq(jv_array_length(jv_copy(got)), 1, "only the unowned instance is free");
    cr_assert(holds(got, a, 1));
    jv_free(got);
    cr_assert_str_eq(owner_of(s, a, o, sizeof o), "n2");
    cr_assert_str_eq(owner_of(s, b, o, sizeof o), "n1");
    cv_store_close(s);
}

Test(store_lease, an_ended_lease_is_taken_with_a_new_epoch_that_fences_the_old_owner)
{
    cv_store *s = open_store();
    char a[64];
    cr_assert_eq(cv_store_set_node(s, "n1", 1000), 0);
    mkinst(s, a);
    int64_t now = cv__wall_ms();
    cr_assert_eq(commit_at(s, a, 1, CV_ST_RUNNING), 0, "the owner writes at its epoch");
    jv got = acquire(s, "n2", now + 500, 1000, 100, 0);
    cr_assert_eq(jv_array_length(got), 0, "the lease has not ended");
    got = acquire(s, "n2", now + 5000, 1000, 100, 0);
    cr_assert(holds(got, a, 2), "taken at epoch 2");
    jv_free(got);
    cr_assert_eq(commit_at(s, a, 1, CV_ST_COMPLETED), CV_ECONFLICT, "the old owner's write is refused");
    jv st = getinst(s, a, "status");
    cr_assert_str_eq(jv_string_value(st), CV_ST_RUNNING, "and changed nothing");
    jv_free(st);
    cr_assert_eq(commit_at(s, a, 2, CV_ST_COMPLETED), 0, "the new owner writes");
    cv_store_close(s);
}

Test(store_lease, renewing_keeps_the_instances_and_ended_ones_are_never_taken)
{
    cv_store *s = open_store();
    char a[64], b[64], c[64];
    cr_assert_eq(cv_store_set_node(s, "n1", 1000), 0);
    mkinst(s, a);
    mkinst(s, b);
    mkinst(s, c);
    cr_assert_eq(commit_at(s, c, 1, CV_ST_COMPLETED), 0);
    int64_t now = cv__wall_ms(), held = -1;
    jv err = jv_invalid();
    ok(cv_store_lease_renew(s, "n1", now + 800, 1000, &held, &err), &err, "renew");
    cr_assert_eq(held, 2, "two unfinished instances renewed (the completed one is not counted)");
    jv got = acquire(s, "n2", now + 1500, 1000, 100, 0);
    cr_assert_eq(jv_array_length(got), 0, "renewed until now + 1800");
    got = acquire(s, "n2", now + 1900, 1000, 100, 0);
    cr_assert_eq(jv_array_length(jv_copy(got)), 2);
    cr_assert(holds(got, a, 2) && holds(got, b, 2));
    jv_free(got);
    held = -1;
    ok(cv_store_lease_renew(s, "n1", now + 2000, 1000, &held, &err), &err, "renew");
    cr_assert_eq(held, 0, "n1 holds nothing any more");
    cv_store_close(s);
}

Test(store_lease, taken_oldest_first_up_to_the_limit)
{
    cv_store *s = open_store();
    char ids[5][64];
    for (int i = 0; i < 5; i++)
        mkinst(s, ids[i]);
    int64_t now = cv__wall_ms();
    jv got = acquire(s, "n1", now, 1000, 3, 0);
    cr_assert_eq(jv_array_length(jv_copy(got)), 3);
    for (int i = 0; i < 3; i++) {
        jv x = jv_array_get(jv_copy(got), i);
        jv id = jv_object_get(x, jv_string("id"));
        cr_assert_str_eq(jv_string_value(id), ids[i], "oldest first");
        jv_free(id);
    }
    jv_free(got);
    got = acquire(s, "n2", now, 1000, 10, 0);
    cr_assert_eq(jv_array_length(jv_copy(got)), 2, "the rest");
    cr_assert(holds(got, ids[3], 1) && holds(got, ids[4], 1));
    jv_free(got);
    cv_store_close(s);
}

Test(store_lease, a_node_starting_again_reclaims_its_own_and_a_clean_stop_releases)
{
    cv_store *s = open_store();
    char a[64], b[64], o[160];
    cr_assert_eq(cv_store_set_node(s, "n1", 60000), 0);
    mkinst(s, a);
    cr_assert_eq(cv_store_set_node(s, "n2", 60000), 0);
    mkinst(s, b);
    int64_t now = cv__wall_ms();
    jv got = acquire(s, "n1", now, 60000, 100, 0);
    cr_assert_eq(jv_array_length(got), 0, "both leases run");
    got = acquire(s, "n1", now, 60000, 100, 1);
    cr_assert_eq(jv_array_length(jv_copy(got)), 1, "reclaim takes n1's own, not n2's");
    cr_assert(holds(got, a, 2));
    jv_free(got);
    jv err = jv_invalid();
    ok(cv_store_lease_release(s, "n2", &err), &err, "release");
    got = acquire(s, "n3", now, 60000, 100, 0);
    cr_assert_eq(jv_array_length(jv_copy(got)), 1, "a released instance is free at once");
    cr_assert(holds(got, b, 2));
    jv_free(got);
    cr_assert_str_eq(owner_of(s, b, o, sizeof o), "n3");
    cv_store_close(s);
}

Test(store_lease, an_instance_is_taken_whatever_its_lease)
{
    cv_store *s = open_store();
    char a[64], o[160];
    cr_assert_eq(cv_store_set_node(s, "n1", 60000), 0);
    mkinst(s, a);
    int64_t e = -1;
    jv err = jv_invalid();
    ok(cv_store_lease_take(s, a, "n2", cv__wall_ms(), 60000, &e, &err), &err, "lease_take");
    cr_assert_eq(e, 2);
    cr_assert_str_eq(owner_of(s, a, o, sizeof o), "n2");
    cr_assert_eq(commit_at(s, a, 1, CV_ST_RUNNING), CV_ECONFLICT, "n1 is fenced");
    int64_t held = -1;
    ok(cv_store_lease_renew(s, "n1", cv__wall_ms(), 60000, &held, &err), &err, "renew");
    cr_assert_eq(held, 0, "and renews nothing");
    jv owned = jv_invalid();
    ok(cv_store_lease_owned(s, "n2", &owned, &err), &err, "lease_owned");
    cr_assert(jv_equal(owned, JV_ARRAY(jv_string(a))), "n2 owns it");
    ok(cv_store_lease_owned(s, "n1", &owned, &err), &err, "lease_owned");
    cr_assert_eq(jv_array_length(owned), 0, "n1 owns nothing");
    cr_assert_eq(cv_store_lease_take(s, "no-such-instance", "n2", 0, 1000, &e, &err), CV_ENOTFOUND);
    jv_free(err);
    cv_store_close(s);
}

Test(store_lease, a_named_lease_has_one_holder_at_a_time)
{
    cv_store *s = open_store();
    int64_t now = cv__wall_ms();
    int held = -1;
    jv err = jv_invalid();
    ok(cv_store_lease_name(s, "sinks", "n1", now, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 1);
    ok(cv_store_lease_name(s, "sinks", "n2", now + 500, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 0, "n1 holds it");
    ok(cv_store_lease_name(s, "purge", "n2", now + 500, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 1, "another name is another lease");
    ok(cv_store_lease_name(s, "sinks", "n1", now + 900, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 1, "the holder renews (until now + 1900)");
    ok(cv_store_lease_name(s, "sinks", "n2", now + 1500, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 0);
    ok(cv_store_lease_name(s, "sinks", "n2", now + 2000, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 1, "taken once it ended");
    ok(cv_store_lease_name(s, "sinks", "n1", now + 2100, 1000, &held, &err), &err, "lease_name");
    cr_assert_eq(held, 0, "the old holder lost it");
    cv_store_close(s);
}

Test(store_lease, bad_arguments_are_refused)
{
    cv_store *s = open_store();
    jv out = jv_invalid(), err = jv_invalid();
    cr_assert_eq(cv_store_lease_acquire(s, "", 0, 1000, 10, 0, &out, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_lease_acquire(s, "has space", 0, 1000, 10, 0, &out, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_lease_acquire(s, "n1", 0, 0, 10, 0, &out, &err), CV_EINVAL);
    jv_free(err);
    err = jv_invalid();
    cr_assert_eq(cv_store_lease_acquire(s, "n1", 0, 1000, 0, 0, &out, &err), CV_EINVAL);
    jv_free(err);
    cr_assert_eq(cv_store_set_node(s, "", 1000), CV_EINVAL);
    cr_assert_eq(cv_store_set_node(s, NULL, 0), 0, "no node: creations unowned");
    cv_store_close(s);
}

/* Two handles (two connections) take leases at the same time, ten at a
 * time, until nothing is left: every instance is taken exactly once. */
struct taker {
    const char *node;
    jv got; /* array of ids */
    int rc;
};

static void *take_all(void *arg)
{
    struct taker *t = arg;
    cv_store *s = NULL;
    jv err = jv_invalid();
    t->got = jv_array();
    t->rc = cv_store_open(url, &s, &err);
    jv_free(err);
    int empty_rounds = 0;
    while (!t->rc && empty_rounds < 3) {
        jv out = jv_invalid();
        err = jv_invalid();
        t->rc = cv_store_lease_acquire(s, t->node, cv__wall_ms(), 600000, 10, 0, &out, &err);
        jv_free(err);
        if (t->rc == CV_EBUSY) { /* SQLite: the other writer held the file too long; again */
            t->rc = 0;
            continue;
        }
        if (t->rc)
            break;
        empty_rounds = jv_array_length(jv_copy(out)) ? 0 : empty_rounds + 1;
        jv_array_foreach(out, i, x)
        {
            (void)i;
            t->got = jv_array_append(t->got, jv_object_get(x, jv_string("id")));
        }
        jv_free(out);
    }
    cv_store_close(s);
    return NULL;
}

Test(store_lease, two_nodes_taking_at_once_never_take_the_same_instance)
{
    cv_store *s = open_store();
    enum { N = 200 };
    static char ids[N][64];
    for (int i = 0; i < N; i++)
        mkinst(s, ids[i]);
    struct taker t[2] = {{.node = "n1"}, {.node = "n2"}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, take_all, &t[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(t[0].rc, 0, "n1: %s", cv_strerror(t[0].rc));
    cr_assert_eq(t[1].rc, 0, "n2: %s", cv_strerror(t[1].rc));
    int n0 = jv_array_length(jv_copy(t[0].got)), n1 = jv_array_length(jv_copy(t[1].got));
    cr_assert_eq(n0 + n1, N, "every instance taken once: %d + %d", n0, n1);
    jv all = jv_array_concat(t[0].got, t[1].got);
    jv uniq = jv_sort(jv_copy(all), jv_copy(all));
    int distinct = 0;
    jv prev = jv_null();
    jv_array_foreach(uniq, i, x)
    {
        (void)i;
        if (!jv_equal(jv_copy(prev), jv_copy(x)))
            distinct++;
        jv_free(prev);
        prev = x;
    }
    jv_free(prev);
    jv_free(uniq);
    jv_free(all);
    cr_assert_eq(distinct, N, "no instance taken twice");
    char o[160];
    for (int i = 0; i < N; i++) {
        owner_of(s, ids[i], o, sizeof o);
        cr_assert(!strcmp(o, "n1") || !strcmp(o, "n2"));
        cr_assert_eq(epoch_of(s, ids[i]), 1);
    }
    cv_store_close(s);
}
