/*
 * test_sched.c — the engine's scheduler over a real SQLite store
 * (src/engine/engine.c): many instances at once on two workers with group
 * commit, idempotent starts, and a process killed with SIGKILL in the middle
 * of 120 instances whose work a new engine resumes on the same file.
 */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char db[128];
static char logpath[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/conveyor-sched-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/engine.sqlite", dir);
    snprintf(logpath, sizeof logpath, "%s/log", dir);
}

TestSuite(sched, .init = setup, .timeout = 120);

/* A workflow: an effect that logs, a wait of `wait_ms`, a computed output. */
static int wait_ms = 30;

static char *doc(void)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "document: {dsl: '1.0.0', namespace: test, name: sched, version: '1.0.0'}\n"
             "do:\n"
             "  - log:\n"
             "      run:\n"
             "        shell:\n"
             "          command: 'echo \"$1\" >> %s; echo \"$1\"'\n"
             "          arguments: ['${ .n }']\n"
             "        return: code\n"
             "  - pause:\n"
             "      wait: {milliseconds: %d}\n"
             "  - answer:\n"
             "      set:\n"
             "        doubled: ${ $workflow.input.n * 2 }\n",
             logpath, wait_ms);
    return buf;
}

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

static void deploy(struct setup *s)
{
    jv out;
    const char *d = doc();
    cr_assert_eq(cv__engine_deploy(s->e, d, strlen(d), &out), CV_OK);
    jv_free(out);
}

static void expect_done(struct setup *s, const char *id, int n)
{
    jv r;
    cr_assert_eq(cv__engine_wait(s->e, id, 60000, &r), CV_OK);
    jv status = jv_object_get(jv_copy(r), jv_string("status"));
    cr_expect_str_eq(jv_string_value(status), "completed", "instance %s (n=%d)", id, n);
    jv out = jv_object_get(r, jv_string("output"));
    jv want = JV_OBJECT(jv_string("doubled"), jv_number(2 * n));
    cr_expect(jv_equal(out, want), "instance %s (n=%d) output", id, n);
    jv_free(status);
}

static int count_lines(const char *word)
{
    FILE *f = fopen(logpath, "r");
    if (!f)
        return 0;
    char line[64];
    int c = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strcmp(line, word))
            c++;
    }
    fclose(f);
    return c;
}

Test(sched, many_instances_on_two_workers_with_group_commit)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s);
    enum { N = 200 };
    static char ids[N][64];
    for (int i = 0; i < N; i++) {
        int existed;
        jv err = jv_invalid();
        cr_assert_eq(cv__engine_start_instance(s.e, "test", "sched", "latest",
                                               JV_OBJECT(jv_string("n"), jv_number(i)), NULL, ids[i], &existed, &err),
                     CV_OK);
        jv_free(err);
        cr_assert_eq(existed, 0);
    }
    for (int i = 0; i < N; i++)
        expect_done(&s, ids[i], i);
    /* the counters follow the commit thread, a moment after the store
     * (which `wait` may read first): poll them, bounded */
    struct cv_engine_stats st;
    for (int i = 0; i < 500; i++) {
        cv__engine_stats(s.e, &st);
        if (st.completed >= N)
            break;
        usleep(10 * 1000);
    }
    cr_expect_eq(st.completed, N);
    /* each instance checkpoints at its effect, its wait and its end */
    cr_expect_geq(st.checkpoints, 3 * N);
    cr_expect_lt(st.batches, st.checkpoints, "checkpoints shared transactions (%lld batches for %lld)", st.batches,
                 st.checkpoints);
    for (int i = 0; i < N; i++) {
        char w[16];
        snprintf(w, sizeof w, "%d", i);
        cr_expect_eq(count_lines(w), 1, "the effect of n=%d ran once", i);
    }
    close_engine(&s);
}

Test(sched, an_idempotency_key_starts_one_instance)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s);
    char a[64], b[64];
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_start_instance(s.e, "test", "sched", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(7)),
                                           "order-42", a, &existed, &err),
                 CV_OK);
    cr_expect_eq(existed, 0);
    cr_assert_eq(cv__engine_start_instance(s.e, "test", "sched", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(7)),
                                           "order-42", b, &existed, &err),
                 CV_OK);
    jv_free(err);
    cr_expect_eq(existed, 1);
    cr_expect_str_eq(a, b);
    expect_done(&s, a, 7);
    cr_expect_eq(count_lines("7"), 1);
    close_engine(&s);
}

Test(sched, a_killed_engine_resumes_every_instance_on_restart)
{
    enum { N = 120 };
    wait_ms = 400; /* long enough that the kill finds instances in the middle */
    /* The child reports each start on a pipe; the parent kills it once half
     * the instances exist (bounded: 30 s), while it is still starting the
     * rest. (A fixed 250 ms was not enough on a loaded machine: an ASan
     * build under load had created 1 or 2 instances by then, and could have
     * created none.) */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        struct setup s;
        open_engine(&s, NULL);
        deploy(&s);
        for (int i = 0; i < N; i++) {
            char id[64];
            int existed;
            jv err = jv_invalid();
            int rc = cv__engine_start_instance(s.e, "test", "sched", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(i)),
                                               NULL, id, &existed, &err);
            jv_free(err);
            if (rc == CV_OK && write(fds[1], "s", 1) != 1)
                _exit(1);
        }
        sleep(30); /* killed long before */
        _exit(0);
    }
    close(fds[1]);
    int started = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (t = t0; started < N / 2 && t.tv_sec - t0.tv_sec < 30; clock_gettime(CLOCK_MONOTONIC, &t)) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char b[N];
        ssize_t r = read(fds[0], b, sizeof b);
        if (r <= 0)
            break; /* the child died */
        started += (int)r;
    }
    kill(pid, SIGKILL);
    close(fds[0]);
    cr_log_info("the child had reported %d starts at the kill", started);
    cr_assert_geq(started, N / 2, "the child started %d of %d instances within 30 s", started, N / 2);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status));

    struct setup s;
    int resumed = 0;
    open_engine(&s, &resumed);
    /* every instance the child created: wait for each */
    jv all = jv_array(), next = jv_null(), err = jv_invalid();
    char cursor[64] = "";
    for (;;) {
        jv page;
        cr_assert_eq(cv_store_list_instances(s.st, jv_object(), 100, cursor[0] ? cursor : NULL, &page, &next, &err),
                     CV_OK);
        all = jv_array_concat(all, page);
        if (jv_get_kind(next) != JV_KIND_STRING)
            break;
        snprintf(cursor, sizeof cursor, "%s", jv_string_value(next));
        jv_free(next);
    }
    jv_free(next);
    jv_free(err);
    int n = jv_array_length(jv_copy(all));
    cr_log_info("the killed engine had created %d instances; %d resumed", n, resumed);
    cr_assert_gt(n, 0, "the child created instances before it was killed");
    cr_expect_gt(resumed, 0, "some instances were unfinished when the engine died");
    int completed = 0;
    jv_array_foreach(all, i, inst)
    {
        jv id = jv_object_get(jv_copy(inst), jv_string("id"));
        jv r;
        cr_assert_eq(cv__engine_wait(s.e, jv_string_value(id), 60000, &r), CV_OK);
        jv st = jv_object_get(jv_copy(r), jv_string("status"));
        if (!strcmp(jv_string_value(st), "completed"))
            completed++;
        jv_free(st);
        jv_free(r);
        jv_free(id);
        jv_free(inst);
    }
    jv_free(all);
    cr_expect_eq(completed, n, "every instance completed after the restart");
    close_engine(&s);
    /* at least once: every created instance's effect ran; more than once
     * only for an effect in flight at the kill */
    int missing = 0;
    for (int i = 0; i < n; i++) {
        char w[16];
        snprintf(w, sizeof w, "%d", i);
        if (count_lines(w) < 1)
            missing++;
    }
    cr_expect_eq(missing, 0, "every effect ran at least once");
}

/* Subflows given to the runtime run as each worker's own copy (deployed into
 * the store at start): many instances on two workers all get the child's
 * result. */
Test(sched, subflows_run_on_every_worker)
{
    static const char child[] = "document: {dsl: '1.0.0', namespace: test, name: child, version: '2.0.0'}\n"
                                "do:\n"
                                "  - triple:\n"
                                "      set: {tripled: '${ .n * 3 }'}\n";
    static const char parent[] = "document: {dsl: '1.0.0', namespace: test, name: parent, version: '1.0.0'}\n"
                                 "do:\n"
                                 "  - call:\n"
                                 "      run:\n"
                                 "        workflow: {namespace: test, name: child, version: latest, input: {n: '${ .n }'}}\n";
    struct setup s;
    jv err = jv_invalid();
    cr_assert_eq(cv_runtime_new(&s.rt), CV_OK);
    cv_workflow *c = NULL;
    jv diags = jv_invalid();
    cr_assert_eq(cv_workflow_load(child, strlen(child), "child", &c, &diags), CV_OK);
    jv_free(diags);
    cr_assert_eq(cv_runtime_add_workflow(s.rt, c), CV_OK);
    cr_assert_eq(cv_store_open(db, &s.st, &err), CV_OK);
    struct cv_engine_options o = {.workers = 2, .batch_max = 256, .batch_wait_us = 1000};
    cr_assert_eq(cv__engine_new(s.rt, s.st, &o, &s.e), CV_OK);
    cr_assert_eq(cv__engine_start(s.e, NULL, &err), CV_OK);
    jv out;
    cr_assert_eq(cv__engine_deploy(s.e, parent, strlen(parent), &out), CV_OK);
    jv_free(out);
    enum { N = 60 };
    static char ids[N][64];
    for (int i = 0; i < N; i++) {
        int existed;
        cr_assert_eq(cv__engine_start_instance(s.e, "test", "parent", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(i)),
                                               NULL, ids[i], &existed, &err),
                     CV_OK);
    }
    jv_free(err);
    for (int i = 0; i < N; i++) {
        jv r;
        cr_assert_eq(cv__engine_wait(s.e, ids[i], 60000, &r), CV_OK);
        jv o2 = jv_object_get(r, jv_string("output"));
        jv want = JV_OBJECT(jv_string("tripled"), jv_number(3 * i));
        cr_expect(jv_equal(o2, want), "instance %d", i);
    }
    close_engine(&s);
}

/* ---- cancel, suspend, resume ------------------------------------------------------ */

static void deploy_text(struct setup *s, const char *text)
{
    jv out;
    cr_assert_eq(cv__engine_deploy(s->e, text, strlen(text), &out), CV_OK);
    jv_free(out);
}

static int status_is(struct setup *s, const char *id, const char *want)
{
    jv inst, err = jv_invalid();
    cr_assert_eq(cv__engine_get_instance(s->e, id, &inst, &err), CV_OK);
    jv_free(err);
    jv st = jv_object_get(inst, jv_string("status"));
    int r = !strcmp(jv_string_value(st), want);
    jv_free(st);
    return r;
}

/* Polls (bounded: 10 s) until the instance has the status. */
static int await_status(struct setup *s, const char *id, const char *want)
{
    for (int i = 0; i < 1000; i++) {
        if (status_is(s, id, want))
            return 1;
        usleep(10 * 1000);
    }
    return 0;
}

Test(sched, cancel_ends_a_waiting_instance_and_records_who)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy_text(&s, "document: {dsl: '1.0.0', namespace: test, name: long, version: '1.0.0'}\n"
                    "do:\n"
                    "  - started:\n"
                    "      run: {shell: {command: 'echo started'}}\n"
                    "  - nap:\n"
                    "      wait: PT30S\n");
    char id[64];
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_start_instance(s.e, "test", "long", "1.0.0", jv_object(), NULL, id, &existed, &err), CV_OK);
    cr_assert(await_status(&s, id, "waiting"), "the instance checkpointed at its wait");
    cr_assert_eq(cv__engine_control(s.e, id, "cancel", JV_OBJECT(jv_string("who"), jv_string("127.0.0.1")), &err),
                 CV_OK);
    jv r;
    cr_assert_eq(cv__engine_wait(s.e, id, 10000, &r), CV_OK);
    jv st = jv_object_get(r, jv_string("status"));
    cr_expect_str_eq(jv_string_value(st), "cancelled");
    jv_free(st);
    jv hist;
    cr_assert_eq(cv__engine_history(s.e, id, &hist, &err), CV_OK);
    int found = 0;
    jv_array_foreach(hist, i, ev)
    {
        jv type = jv_object_get(jv_copy(ev), jv_string("type"));
        if (!strcmp(jv_string_value(type), "io.serverlessworkflow.workflow.cancelled.v1")) {
            jv who = jv_getpath(jv_copy(ev), JV_ARRAY(jv_string("data"), jv_string("by"), jv_string("who")));
            found = jv_get_kind(who) == JV_KIND_STRING && !strcmp(jv_string_value(who), "127.0.0.1");
            jv_free(who);
        }
        jv_free(type);
        jv_free(ev);
    }
    jv_free(hist);
    cr_expect(found, "the history says who cancelled it");
    /* an ended instance cannot be cancelled again */
    cr_expect_eq(cv__engine_control(s.e, id, "cancel", jv_null(), &err), CV_ECONFLICT);
    jv_free(err);
    close_engine(&s);
}

Test(sched, suspend_holds_an_instance_until_resume)
{
    struct setup s;
    open_engine(&s, NULL);
    char text[1024];
    snprintf(text, sizeof text,
             "document: {dsl: '1.0.0', namespace: test, name: paused, version: '1.0.0'}\n"
             "do:\n"
             "  - a:\n"
             "      run: {shell: {command: 'echo a >> %s'}, return: code}\n"
             "  - nap:\n"
             "      wait: {milliseconds: 1000}\n"
             "  - b:\n"
             "      run: {shell: {command: 'echo b >> %s'}, return: code}\n",
             logpath, logpath);
    deploy_text(&s, text);
    char id[64];
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_start_instance(s.e, "test", "paused", "1.0.0", jv_object(), NULL, id, &existed, &err),
                 CV_OK);
    for (int i = 0; i < 500 && count_lines("a") == 0; i++)
        usleep(10 * 1000);
    cr_assert_eq(count_lines("a"), 1, "step a ran");
    cr_assert_eq(cv__engine_control(s.e, id, "suspend", jv_null(), &err), CV_OK);
    cr_assert(await_status(&s, id, "suspended"));
    usleep(1500 * 1000); /* well past the 1 s wait */
    cr_expect_eq(count_lines("b"), 0, "a suspended instance does not advance");
    cr_expect_eq(cv__engine_control(s.e, id, "suspend", jv_null(), &err), CV_ECONFLICT);
    cr_assert_eq(cv__engine_control(s.e, id, "resume", jv_null(), &err), CV_OK);
    jv r;
    cr_assert_eq(cv__engine_wait(s.e, id, 10000, &r), CV_OK);
    jv st = jv_object_get(r, jv_string("status"));
    cr_expect_str_eq(jv_string_value(st), "completed");
    jv_free(st);
    cr_expect_eq(count_lines("b"), 1, "after resume it finished");
    cr_expect_eq(count_lines("a"), 1, "and did not repeat what it had done");
    jv_free(err);
    close_engine(&s);
}

Test(sched, a_suspended_instance_stays_suspended_across_a_restart)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy_text(&s, "document: {dsl: '1.0.0', namespace: test, name: later, version: '1.0.0'}\n"
                    "do:\n"
                    "  - nap:\n"
                    "      wait: {milliseconds: 1000}\n"
                    "  - done:\n"
                    "      set: {finished: true}\n");
    char id[64];
    int existed;
    jv err = jv_invalid();
    cr_assert_eq(cv__engine_start_instance(s.e, "test", "later", "1.0.0", jv_object(), NULL, id, &existed, &err),
                 CV_OK);
    cr_assert(await_status(&s, id, "waiting"));
    cr_assert_eq(cv__engine_control(s.e, id, "suspend", jv_null(), &err), CV_OK);
    cr_assert(await_status(&s, id, "suspended"));
    close_engine(&s);

    int resumed = -1;
    open_engine(&s, &resumed);
    cr_expect_eq(resumed, 0, "a suspended instance is not resumed at start");
    usleep(1200 * 1000); /* past the wait it was suspended in */
    cr_expect(status_is(&s, id, "suspended"));
    cr_assert_eq(cv__engine_control(s.e, id, "resume", jv_null(), &err), CV_OK);
    jv r;
    cr_assert_eq(cv__engine_wait(s.e, id, 10000, &r), CV_OK);
    jv out = jv_object_get(r, jv_string("output"));
    jv want = JV_OBJECT(jv_string("finished"), jv_true());
    cr_expect(jv_equal(out, want), "it finished from its checkpoint after the restart");
    jv_free(err);
    close_engine(&s);
}

/* ---- concurrent starts (their creations share group commits) ------------------------ */

struct starter {
    struct setup *s;
    int base;
    char ids[25][64];
    char keyed[64]; /* the instance a shared idempotency key gave */
    int failed;
};

static void *starter_main(void *arg)
{
    struct starter *t = arg;
    for (int i = 0; i < 25; i++) {
        int existed;
        jv err = jv_invalid();
        if (cv__engine_start_instance(t->s->e, "test", "sched", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(t->base + i)),
                                      NULL, t->ids[i], &existed, &err))
            t->failed++;
        jv_free(err);
    }
    int existed;
    jv err = jv_invalid();
    if (cv__engine_start_instance(t->s->e, "test", "sched", "1.0.0", JV_OBJECT(jv_string("n"), jv_number(1000)),
                                  "shared-key", t->keyed, &existed, &err))
        t->failed++;
    jv_free(err);
    return NULL;
}

Test(sched, concurrent_starts_share_commits_and_keys)
{
    struct setup s;
    open_engine(&s, NULL);
    deploy(&s);
    enum { T = 8 };
    static struct starter t[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].s = &s;
        t[i].base = i * 25;
        pthread_create(&th[i], NULL, starter_main, &t[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++) {
        cr_expect_eq(t[i].failed, 0);
        cr_expect_str_eq(t[i].keyed, t[0].keyed, "one instance for the shared key");
        for (int k = 0; k < 25; k++)
            expect_done(&s, t[i].ids[k], t[i].base + k);
    }
    expect_done(&s, t[0].keyed, 1000);
    cr_expect_eq(count_lines("1000"), 1, "the keyed instance ran once");
    for (int n = 0; n < T * 25; n++) {
        char w[16];
        snprintf(w, sizeof w, "%d", n);
        cr_expect_eq(count_lines(w), 1, "n=%d ran once", n);
    }
    close_engine(&s);
}
