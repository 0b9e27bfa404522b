/*
 * test_evict.c — idle instances evicted to the store (src/engine/engine.c,
 * src/engine/waits.c; DESIGN.md decision 5): instances waiting on a timer or
 * a listen are dropped from memory once their checkpoint is durable and come
 * back from the store when their timer fires, an event they may consume
 * arrives, or they are cancelled / suspended / resumed; an event for one
 * correlation value loads only the instance expecting it; events reach
 * evicted instances as they would resident ones (every one, in order, none
 * twice); a restart evicts the waiters it resumes. Behaviour only: every wait
 * below is "until a condition holds", bounded generously.
 */
#include "engine/engine.h"
#include "engine/engine_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char db[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/conveyor-evict-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/engine.sqlite", dir);
}

TestSuite(evict, .init = setup, .timeout = 180);

struct setup {
    cv_runtime *rt;
    cv_store *st;
    struct cv_engine *e;
};

static void open_engine(struct setup *s, int *resumed)
{
    jv err = jv_invalid();
    cr_assert_eq(cv_runtime_new(&s->rt), CV_OK);
    cr_assert_eq(cv_store_open(db, &s->st, &err), CV_OK);
    jv_free(err);
    struct cv_engine_options o = {.workers = 2, .batch_max = 256, .batch_wait_us = 1000};
    cr_assert_eq(cv__engine_new(s->rt, s->st, &o, &s->e), CV_OK);
    cv__engine_set_evict_min_wait(s->e, 0); /* evict whatever its timer */
    err = jv_invalid();
    cr_assert_eq(cv__engine_start(s->e, resumed, &err), CV_OK);
    jv_free(err);
}

static void close_engine(struct setup *s)
{
    cv__engine_stop(s->e);
    cv_store_close(s->st);
    cv_runtime_free(s->rt);
}

static void deploy(struct setup *s, const char *text)
{
    jv out;
    cr_assert_eq(cv__engine_deploy(s->e, text, strlen(text), &out), CV_OK);
    jv_free(out);
}

static void start(struct setup *s, const char *name, jv input, char *id)
{
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_start_instance(s->e, "test", name, "1.0.0", input, NULL, id, &existed, &err), CV_OK);
    jv_free(err);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long evicted(struct setup *s)
{
    long long r, e, l;
    cv__engine_residency(s->e, &r, &e, &l);
    return e;
}

static long long reloads(struct setup *s)
{
    long long r, e, l;
    cv__engine_residency(s->e, &r, &e, &l);
    return l;
}

static long long resident(struct setup *s)
{
    long long r, e, l;
    cv__engine_residency(s->e, &r, &e, &l);
    return r;
}

/* Waits (up to a minute) until `n` instances are evicted. */
static void await_evicted(struct setup *s, long long n)
{
    for (int i = 0; i < 6000 && evicted(s) != n; i++)
        sleep_ms(10);
    cr_assert_eq(evicted(s), n, "evicted: %lld, want %lld (resident %lld)", evicted(s), n, resident(s));
}

static jv event(const char *type, jv data)
{
    static int k;
    char id[32];
    snprintf(id, sizeof id, "ev-%d", ++k);
    return JV_OBJECT(jv_string("specversion"), jv_string("1.0"), jv_string("id"), jv_string(id), jv_string("source"),
                     jv_string("test"), jv_string("type"), jv_string(type), jv_string("data"), data);
}

static void publish(struct setup *s, jv events)
{
    jv seqs = jv_invalid(), err = jv_invalid();
    cr_assert_eq(cv__engine_publish(s->e, events, &seqs, &err), CV_OK);
    jv_free(seqs);
    jv_free(err);
}

/* The instance's end (or status "running" after 60 s). */
static jv await_end(struct setup *s, const char *id)
{
    jv r;
    cr_assert_eq(cv__engine_wait(s->e, id, 60000, &r), CV_OK);
    return r;
}

static const char *status_of(jv r, char *buf)
{
    jv st = jv_object_get(jv_copy(r), jv_string("status"));
    snprintf(buf, 32, "%s", jv_get_kind(st) == JV_KIND_STRING ? jv_string_value(st) : "?");
    jv_free(st);
    return buf;
}

static const char *stored_status(struct setup *s, const char *id, char *buf)
{
    jv inst, err = jv_invalid();
    cr_assert_eq(cv__engine_get_instance(s->e, id, &inst, &err), CV_OK);
    jv_free(err);
    status_of(inst, buf);
    jv_free(inst);
    return buf;
}

static void await_stored_status(struct setup *s, const char *id, const char *want)
{
    char b[32];
    for (int i = 0; i < 6000 && strcmp(stored_status(s, id, b), want); i++)
        sleep_ms(10);
    cr_assert_str_eq(stored_status(s, id, b), want);
}

static const char *const listener =
    "document: {dsl: '1.0.0', namespace: test, name: claim, version: '1.0.0'}\n"
    "do:\n"
    "  - waitForDocument:\n"
    "      listen:\n"
    "        to:\n"
    "          one:\n"
    "            with: {type: com.example.document.uploaded}\n"
    "            correlate:\n"
    "              claim: {from: '${ .data.claim }', expect: '${ .claim }'}\n"
    "  - answer:\n"
    "      set:\n"
    "        claim: ${ $workflow.input.claim }\n"
    "        doc: ${ .[0].doc }\n";

static const char *const sleeper = "document: {dsl: '1.0.0', namespace: test, name: sleeper, version: '1.0.0'}\n"
                                   "do:\n"
                                   "  - nap:\n"
                                   "      wait: PT1H\n";

Test(evict, timers_evict_their_instances_which_complete_once_when_it_fires)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s, "document: {dsl: '1.0.0', namespace: test, name: nap, version: '1.0.0'}\n"
               "do:\n"
               "  - nap:\n"
               "      wait: {seconds: 4}\n"
               "  - answer:\n"
               "      set:\n"
               "        doubled: ${ $workflow.input.n * 2 }\n");
    enum { N = 60 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        start(&s, "nap", JV_OBJECT(jv_string("n"), jv_number(i)), ids[i]);
    await_evicted(&s, N);
    cr_assert_eq(resident(&s), 0);
    struct cv_engine_stats st;
    cv__engine_stats(s.e, &st);
    cr_assert_eq(st.running, N, "evicted instances still count as running");
    for (int i = 0; i < N; i++) {
        jv r = await_end(&s, ids[i]);
        char b[32];
        cr_assert_str_eq(status_of(r, b), "completed", "%s", ids[i]);
        jv d = jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("doubled")));
        cr_assert_eq((int)jv_number_value(d), 2 * i);
        jv_free(d);
        jv_free(r);
    }
    for (int i = 0; i < 6000; i++) { /* the store may answer before the stats count */
        cv__engine_stats(s.e, &st);
        if (st.completed >= N)
            break;
        sleep_ms(10);
    }
    sleep_ms(100);
    cv__engine_stats(s.e, &st);
    cr_assert_eq(st.completed, N, "each completed once: %lld", (long long)st.completed);
    cr_assert_eq(evicted(&s), 0);
    cr_assert_geq(reloads(&s), N);
    close_engine(&s);
}

Test(evict, an_event_loads_only_the_instance_whose_correlation_it_matches)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s, listener);
    enum { N = 100 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        start(&s, "claim", JV_OBJECT(jv_string("claim"), jv_number(i)), ids[i]);
    await_evicted(&s, N);
    long long before = reloads(&s);
    /* another type, and the right type without a claim anyone expects: nobody */
    publish(&s, JV_ARRAY(event("com.example.other", JV_OBJECT(jv_string("claim"), jv_number(7))),
                         event("com.example.document.uploaded", JV_OBJECT(jv_string("claim"), jv_number(1000)))));
    publish(&s, JV_ARRAY(event("com.example.document.uploaded",
                               JV_OBJECT(jv_string("claim"), jv_number(7), jv_string("doc"), jv_string("d7")))));
    jv r = await_end(&s, ids[7]);
    char b[32];
    cr_assert_str_eq(status_of(r, b), "completed");
    jv doc = jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("doc")));
    cr_assert_str_eq(jv_string_value(doc), "d7");
    jv_free(doc);
    jv_free(r);
    await_evicted(&s, N - 1);
    cr_assert_eq(reloads(&s) - before, 1, "one event, one instance loaded: %lld", reloads(&s) - before);
    cr_assert_str_eq(stored_status(&s, ids[8], b), "waiting");

    /* the rest at once, in one batch: each completes once with its own document */
    jv all = jv_array();
    for (int i = 0; i < N; i++)
        if (i != 7) {
            char d[16];
            snprintf(d, sizeof d, "d%d", i);
            all = jv_array_append(all, event("com.example.document.uploaded",
                                             JV_OBJECT(jv_string("claim"), jv_number(i), jv_string("doc"), jv_string(d))));
        }
    publish(&s, all);
    for (int i = 0; i < N; i++) {
        r = await_end(&s, ids[i]);
        cr_assert_str_eq(status_of(r, b), "completed", "%s", ids[i]);
        doc = jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("doc")));
        char d[16];
        snprintf(d, sizeof d, "d%d", i);
        cr_assert_str_eq(jv_string_value(doc), d);
        jv_free(doc);
        jv_free(r);
    }
    struct cv_engine_stats st;
    for (int i = 0; i < 6000; i++) {
        cv__engine_stats(s.e, &st);
        if (st.completed >= N)
            break;
        sleep_ms(10);
    }
    sleep_ms(100);
    cv__engine_stats(s.e, &st);
    cr_assert_eq(st.completed, N, "each completed once: %lld", (long long)st.completed);
    cr_assert_eq(reloads(&s) - before, N, "each loaded once: %lld", reloads(&s) - before);
    close_engine(&s);
}

Test(evict, evicted_listeners_see_every_event_in_order_once)
{
    struct setup s;
    open_engine(&s, NULL);
    /* uncorrelated (every event of the type reaches both), and a regex type
     * (no literal type: any event loads it) */
    deploy(&s, "document: {dsl: '1.0.0', namespace: test, name: three, version: '1.0.0'}\n"
               "do:\n"
               "  - gather:\n"
               "      listen:\n"
               "        to:\n"
               "          any:\n"
               "            - with: {type: com.example.tick}\n"
               "          until: '${ length >= 3 }'\n"
               "  - answer:\n"
               "      set:\n"
               "        got: ${ map(.n) }\n");
    deploy(&s, "document: {dsl: '1.0.0', namespace: test, name: rx, version: '1.0.0'}\n"
               "do:\n"
               "  - one:\n"
               "      listen:\n"
               "        to:\n"
               "          one:\n"
               "            with: {type: 'com\\.example\\.to.*'}\n");
    char a[64], b2[64], rx[64], b[32];
    publish(&s, JV_ARRAY(event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(1)))));
    start(&s, "three", jv_object(), a); /* a listen reads what the bus kept: 1 */
    await_evicted(&s, 1);
    start(&s, "three", jv_object(), b2);
    await_evicted(&s, 2);
    start(&s, "rx", jv_object(), rx);
    await_evicted(&s, 3);
    /* 2: all three load (rx has no literal type); a and b take it, rx does
     * not; all go back to the store */
    long long before = reloads(&s);
    publish(&s, JV_ARRAY(event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(2)))));
    for (int i = 0; i < 6000 && (reloads(&s) < before + 3 || evicted(&s) != 3); i++)
        sleep_ms(10);
    cr_assert_eq(reloads(&s), before + 3);
    cr_assert_eq(evicted(&s), 3);
    /* 3: a and b have three */
    publish(&s, JV_ARRAY(event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(3)))));
    const char *who[2] = {a, b2};
    for (int k = 0; k < 2; k++) {
        jv r = await_end(&s, who[k]);
        cr_assert_str_eq(status_of(r, b), "completed");
        jv got = jv_dump_string(jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("got"))), 0);
        cr_assert_str_eq(jv_string_value(got), "[1,2,3]", "each event once, in order");
        jv_free(got);
        jv_free(r);
    }
    await_evicted(&s, 1);
    publish(&s, JV_ARRAY(event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(4))),
                         event("com.example.tock", JV_OBJECT(jv_string("n"), jv_number(5)))));
    jv r = await_end(&s, rx);
    cr_assert_str_eq(status_of(r, b), "completed");
    jv got = jv_dump_string(jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"))), 0);
    cr_assert_str_eq(jv_string_value(got), "[{\"n\":5}]");
    jv_free(got);
    jv_free(r);
    close_engine(&s);
}

Test(evict, cancel_suspend_and_resume_reach_evicted_instances)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s, sleeper);
    deploy(&s, listener);
    char t1[64], t2[64], l1[64];
    start(&s, "sleeper", jv_object(), t1);
    start(&s, "sleeper", jv_object(), t2);
    start(&s, "claim", JV_OBJECT(jv_string("claim"), jv_string("x")), l1);
    await_evicted(&s, 3);
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_control(s.e, t1, "cancel", jv_string("tester"), &err), CV_OK);
    jv r = await_end(&s, t1);
    char b[32];
    cr_assert_str_eq(status_of(r, b), "cancelled");
    jv_free(r);
    /* suspended: dropped from memory altogether, and loaded when resumed */
    cr_assert_eq(cv__engine_control(s.e, l1, "suspend", jv_null(), &err), CV_OK);
    await_stored_status(&s, l1, "suspended");
    for (int i = 0; i < 6000 && resident(&s) != 0; i++)
        sleep_ms(10);
    cr_assert_eq(resident(&s), 0);
    /* its event comes while it is suspended: it takes it once resumed */
    publish(&s, JV_ARRAY(event("com.example.document.uploaded",
                               JV_OBJECT(jv_string("claim"), jv_string("x"), jv_string("doc"), jv_string("dx")))));
    sleep_ms(200);
    cr_assert_str_eq(stored_status(&s, l1, b), "suspended");
    cr_assert_eq(cv__engine_control(s.e, l1, "resume", jv_null(), &err), CV_OK);
    r = await_end(&s, l1);
    cr_assert_str_eq(status_of(r, b), "completed");
    jv doc = jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("doc")));
    cr_assert_str_eq(jv_string_value(doc), "dx");
    jv_free(doc);
    jv_free(r);
    /* suspend and resume a sleeper: back to the store, waiting */
    cr_assert_eq(cv__engine_control(s.e, t2, "suspend", jv_null(), &err), CV_OK);
    await_stored_status(&s, t2, "suspended");
    cr_assert_eq(cv__engine_control(s.e, t2, "resume", jv_null(), &err), CV_OK);
    await_stored_status(&s, t2, "waiting");
    await_evicted(&s, 1);
    jv_free(err);
    close_engine(&s);
}

Test(evict, a_restart_evicts_the_waiters_it_resumes)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s, sleeper);
    deploy(&s, listener);
    enum { N = 40 };
    char ids[N][64];
    for (int i = 0; i < N; i++) {
        if (i % 2)
            start(&s, "sleeper", jv_object(), ids[i]);
        else
            start(&s, "claim", JV_OBJECT(jv_string("claim"), jv_number(i)), ids[i]);
    }
    await_evicted(&s, N);
    close_engine(&s);

    int resumed = 0;
    open_engine(&s, &resumed);
    cr_assert_eq(resumed, N);
    await_evicted(&s, N);
    cr_assert_eq(resident(&s), 0);
    long long before = reloads(&s);
    publish(&s, JV_ARRAY(event("com.example.document.uploaded",
                               JV_OBJECT(jv_string("claim"), jv_number(4), jv_string("doc"), jv_string("d4")))));
    jv r = await_end(&s, ids[4]);
    char b[32];
    cr_assert_str_eq(status_of(r, b), "completed");
    jv_free(r);
    await_evicted(&s, N - 1);
    cr_assert_eq(reloads(&s) - before, 1);
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_control(s.e, ids[1], "cancel", jv_null(), &err), CV_OK);
    jv_free(err);
    r = await_end(&s, ids[1]);
    cr_assert_str_eq(status_of(r, b), "cancelled");
    jv_free(r);
    close_engine(&s);
}

Test(evict, one_batch_of_events_reaches_an_evicted_listener_in_order)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s, "document: {dsl: '1.0.0', namespace: test, name: three, version: '1.0.0'}\n"
               "do:\n"
               "  - gather:\n"
               "      listen:\n"
               "        to:\n"
               "          any:\n"
               "            - with: {type: com.example.tick}\n"
               "          until: '${ length >= 3 }'\n"
               "  - answer:\n"
               "      set:\n"
               "        got: ${ map(.n) }\n");
    deploy(&s, "document: {dsl: '1.0.0', namespace: test, name: both, version: '1.0.0'}\n"
               "do:\n"
               "  - pair:\n"
               "      listen:\n"
               "        to:\n"
               "          all:\n"
               "            - with: {type: com.example.left}\n"
               "              correlate:\n"
               "                k: {from: '${ .data.k }', expect: '${ .k }'}\n"
               "            - with: {type: com.example.right}\n"
               "              correlate:\n"
               "                k: {from: '${ .data.k }', expect: '${ .k }'}\n"
               "  - answer:\n"
               "      set:\n"
               "        got: ${ map(.n) }\n");
    char a[64], p1[64], p2[64], b[32];
    start(&s, "three", jv_object(), a);
    start(&s, "both", JV_OBJECT(jv_string("k"), jv_number(1)), p1);
    start(&s, "both", JV_OBJECT(jv_string("k"), jv_number(2)), p2);
    await_evicted(&s, 3);
    long long before = reloads(&s);
    jv page = jv_array();
    page = jv_array_append(page, event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(1))));
    page = jv_array_append(page, event("com.example.right", JV_OBJECT(jv_string("k"), jv_number(2), jv_string("n"), jv_number(20))));
    page = jv_array_append(page, event("com.example.other", JV_OBJECT(jv_string("n"), jv_number(0))));
    page = jv_array_append(page, event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(2))));
    page = jv_array_append(page, event("com.example.left", JV_OBJECT(jv_string("k"), jv_number(1), jv_string("n"), jv_number(10))));
    page = jv_array_append(page, event("com.example.right", JV_OBJECT(jv_string("k"), jv_number(2), jv_string("n"), jv_number(21))));
    page = jv_array_append(page, event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(3))));
    page = jv_array_append(page, event("com.example.left", JV_OBJECT(jv_string("k"), jv_number(2), jv_string("n"), jv_number(22))));
    page = jv_array_append(page, event("com.example.tick", JV_OBJECT(jv_string("n"), jv_number(4))));
    publish(&s, page);
    jv r = await_end(&s, a);
    cr_assert_str_eq(status_of(r, b), "completed");
    jv got = jv_dump_string(jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("got"))), 0);
    cr_assert_str_eq(jv_string_value(got), "[1,2,3]");
    jv_free(got);
    jv_free(r);
    r = await_end(&s, p2);
    cr_assert_str_eq(status_of(r, b), "completed");
    got = jv_dump_string(jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("got"))), 0);
    cr_assert_str_eq(jv_string_value(got), "[20,22]", "the first right, then its left");
    jv_free(got);
    jv_free(r);
    /* p1 has its left, not its right: loaded once, back in the store */
    await_evicted(&s, 1);
    cr_assert_str_eq(stored_status(&s, p1, b), "waiting");
    cr_assert_leq(reloads(&s) - before, 3, "a, p1 and p2 loaded once each: %lld", reloads(&s) - before);
    publish(&s, JV_ARRAY(event("com.example.right", JV_OBJECT(jv_string("k"), jv_number(1), jv_string("n"), jv_number(11)))));
    r = await_end(&s, p1);
    cr_assert_str_eq(status_of(r, b), "completed");
    got = jv_dump_string(jv_getpath(jv_copy(r), JV_ARRAY(jv_string("output"), jv_string("got"))), 0);
    cr_assert_str_eq(jv_string_value(got), "[10,11]");
    jv_free(got);
    jv_free(r);
    close_engine(&s);
}
