/*
 * test_state.c — the interpreter's position as data (DESIGN.md decision 3)
 * and the effect timeout that keeps external work bounded.
 *
 * The checkpoint hook is called whenever an instance is about to block (an
 * effect in flight, a timer, fork branches) with its position; these tests
 * read it back and check that it names the running tasks by reference, with
 * loop counters, retry attempts and data — and that cv_run_ex continues from
 * it in a fresh runtime without repeating what was done before.
 */
#include "conveyor.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR "document: {dsl: '1.0.0', namespace: test, name: st, version: '0.1.0'}\n"

static cv_workflow *load(const char *text)
{
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(text, strlen(text), "state-test", &wf, &diags);
    if (rc) {
        jv s = jv_dump_string(diags, 0);
        cr_assert_fail("load failed: %s", jv_string_value(s));
    }
    jv_free(diags);
    return wf;
}

struct seen {
    jv states; /* array of states, one per effect start */
};

static void on_checkpoint(void *ud, jv state)
{
    struct seen *s = ud;
    s->states = jv_array_append(s->states, jv_copy(state));
}

/* The refs of the frames of fiber `fi` of state `st` (borrowed), joined by ' '. */
static void frame_refs(jv st, int fi, char *buf, size_t n)
{
    buf[0] = 0;
    jv fibers = jv_object_get(jv_copy(st), jv_string("fibers"));
    jv fb = jv_array_get(fibers, fi);
    jv frames = jv_object_get(fb, jv_string("frames"));
    size_t used = 0;
    jv_array_foreach(frames, i, f)
    {
        jv ref = jv_object_get(f, jv_string("ref"));
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", i ? " " : "",
                                 jv_string_value(ref));
        jv_free(ref);
    }
    jv_free(frames);
}

static jv top_frame(jv st, int fi)
{
    jv fibers = jv_object_get(jv_copy(st), jv_string("fibers"));
    jv fb = jv_array_get(fibers, fi);
    jv frames = jv_object_get(fb, jv_string("frames"));
    int n = jv_array_length(jv_copy(frames));
    return jv_array_get(frames, n - 1);
}

Test(state, position_names_tasks_loops_and_data)
{
    cv_workflow *wf = load(HDR "do:\n"
                               "  - loop:\n"
                               "      for: {each: word, in: .words}\n"
                               "      do:\n"
                               "        - say:\n"
                               "            run:\n"
                               "              shell:\n"
                               "                command: 'echo \"$1\"'\n"
                               "                arguments: ['${ $word }']\n");
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    struct seen s = {jv_array()};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &s);
    jv report;
    int rc = cv_run(rt, wf, jv_parse("{\"words\":[\"a\",\"b\"]}"), &report);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(jv_array_length(jv_copy(s.states)), 2, "one checkpoint per effect");

    char refs[1024];
    jv st1 = jv_array_get(jv_copy(s.states), 1);
    frame_refs(st1, 0, refs, sizeof refs);
    cr_expect_str_eq(refs, "/ /do /do/0/loop /do/0/loop/do /do/0/loop/do/0/say");
    /* the loop frame records the iteration and the loop variables */
    jv fibers = jv_object_get(jv_copy(st1), jv_string("fibers"));
    jv frames = jv_object_get(jv_array_get(fibers, 0), jv_string("frames"));
    jv loop = jv_array_get(jv_copy(frames), 2);
    cr_expect_eq(jv_number_value(jv_object_get(jv_copy(loop), jv_string("idx"))), 1);
    jv body = jv_array_get(frames, 3);
    jv scope = jv_object_get(body, jv_string("scope"));
    jv word = jv_object_get(scope, jv_string("word"));
    cr_expect_str_eq(jv_string_value(word), "b");
    jv_free(word);
    jv_free(loop);
    /* the effect's task frame holds its input: iteration 1 starts from
     * iteration 0's output, the stdout of `echo a` */
    jv top = top_frame(st1, 0);
    jv input = jv_object_get(top, jv_string("input"));
    cr_expect(jv_equal(input, jv_string("a\n")), "the task's input is in its frame");
    /* the whole state is plain JSON: it survives a round trip through text */
    jv text = jv_dump_string(jv_copy(st1), 0);
    jv back = jv_parse(jv_string_value(text));
    cr_expect(jv_equal(back, st1));
    jv_free(text);
    jv_free(s.states);
    jv_free(report);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
}

Test(state, fork_branches_are_fibers_with_their_parent)
{
    cv_workflow *wf = load(HDR "do:\n"
                               "  - both:\n"
                               "      fork:\n"
                               "        branches:\n"
                               "          - one:\n"
                               "              run: {shell: {command: 'true'}, return: code}\n"
                               "          - two:\n"
                               "              run: {shell: {command: 'true'}, return: code}\n");
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    struct seen s = {jv_array()};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &s);
    jv report;
    cr_assert_eq(cv_run(rt, wf, jv_object(), &report), CV_OK);
    jv out = jv_object_get(jv_copy(report), jv_string("output"));
    jv expect = jv_parse("[0,0]");
    cr_expect(jv_equal(out, expect));
    /* the first time the instance blocks, both branches wait on their effects */
    jv st = jv_array_get(jv_copy(s.states), 0);
    jv fibers = jv_object_get(jv_copy(st), jv_string("fibers"));
    cr_assert_eq(jv_array_length(jv_copy(fibers)), 3, "the instance and two branch fibers");
    char refs[1024];
    frame_refs(st, 2, refs, sizeof refs);
    cr_expect_str_eq(refs, "/do/0/both/fork/branches/1/two");
    jv b = jv_array_get(fibers, 2);
    cr_expect_eq(jv_number_value(jv_object_get(jv_copy(b), jv_string("branch"))), 1);
    cr_expect_eq(jv_number_value(jv_object_get(b, jv_string("parent"))), 0);
    jv_free(st);
    jv_free(s.states);
    jv_free(report);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
}

Test(state, retry_attempts_are_counted_in_the_try_frame)
{
    cv_workflow *wf = load(HDR "do:\n"
                               "  - attempt:\n"
                               "      try:\n"
                               "        - fail:\n"
                               "            run: {shell: {command: 'exit 3'}}\n"
                               "      catch:\n"
                               "        retry: {delay: {milliseconds: 1}, limit: {attempt: {count: 2}}}\n");
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    struct seen s = {jv_array()};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &s);
    jv report;
    cr_assert_eq(cv_run(rt, wf, jv_object(), &report), CV_OK);
    /* blocked on: attempt 0's effect, the retry timer, attempt 1's effect,
     * the timer, attempt 2's effect */
    cr_assert_eq(jv_array_length(jv_copy(s.states)), 5, "three attempts and two retry timers");
    static const int attempts[] = {0, 1, 1, 2, 2};
    static const char *const fiber_state[] = {"effect", "timer", "effect", "timer", "effect"};
    for (int i = 0; i < 5; i++) {
        jv st = jv_array_get(jv_copy(s.states), i);
        jv fibers = jv_object_get(st, jv_string("fibers"));
        jv fb = jv_array_get(fibers, 0);
        jv fst = jv_object_get(jv_copy(fb), jv_string("state"));
        cr_expect_str_eq(jv_string_value(fst), fiber_state[i], "checkpoint %d", i);
        jv frames = jv_object_get(fb, jv_string("frames"));
        jv tryf = jv_array_get(frames, 2);
        jv ref = jv_object_get(jv_copy(tryf), jv_string("ref"));
        cr_expect_str_eq(jv_string_value(ref), "/do/0/attempt");
        cr_expect_eq(jv_number_value(jv_object_get(tryf, jv_string("attempt"))), attempts[i], "checkpoint %d", i);
        jv_free(ref);
        jv_free(fst);
    }
    jv_free(s.states);
    jv_free(report);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
}

Test(state, effect_timeout_bounds_a_hanging_command)
{
    cv_workflow *wf = load(HDR "do:\n"
                               "  - hang:\n"
                               "      run: {shell: {command: 'sleep 30'}}\n");
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    cv_runtime_set_effect_timeout(rt, 200);
    jv report;
    cr_assert_eq(cv_run(rt, wf, jv_object(), &report), CV_EFAULT);
    jv err = jv_object_get(report, jv_string("error"));
    jv type = jv_object_get(jv_copy(err), jv_string("type"));
    jv inst = jv_object_get(err, jv_string("instance"));
    cr_expect_str_eq(jv_string_value(type), "https://serverlessworkflow.io/spec/1.0.0/errors/timeout");
    cr_expect_str_eq(jv_string_value(inst), "/do/0/hang");
    jv_free(type);
    jv_free(inst);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
}

/* ---- resuming ------------------------------------------------------------------ */

static char tmpdir[64];

static void mk_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/conveyor-state-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

/* Runs `doc` to its end collecting checkpoints, then resumes checkpoint
 * `which` in a fresh runtime; returns the resumed report. */
static jv run_then_resume(const char *doc, jv input, int which, int *ncheckpoints, jv *first_report)
{
    cv_workflow *wf = load(doc);
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    cv_runtime_set_time_scale(rt, 0.05);
    struct seen s = {jv_array()};
    cv_runtime_on_checkpoint(rt, on_checkpoint, &s);
    cr_assert_eq(cv_run(rt, wf, input, first_report), CV_OK);
    *ncheckpoints = jv_array_length(jv_copy(s.states));
    cr_assert_lt(which, *ncheckpoints);
    jv state = jv_array_get(jv_copy(s.states), which);
    /* the position goes through text, as it would through a database */
    jv text = jv_dump_string(state, 0);
    jv back = jv_parse(jv_string_value(text));
    jv_free(text);
    cv_runtime_free(rt);

    cv_runtime *rt2;
    cr_assert_eq(cv_runtime_new(&rt2), CV_OK);
    cv_runtime_set_time_scale(rt2, 0.05);
    jv id = jv_object_get(jv_copy(back), jv_string("id"));
    cv_run_options o = {.id = jv_string_value(id), .resume = back};
    jv report;
    cv_run_ex(rt2, wf, jv_null(), &o, &report);
    jv rid = jv_object_get(jv_copy(report), jv_string("id"));
    cr_expect(jv_equal(rid, id), "the resumed instance keeps its id");
    cv_runtime_free(rt2);
    cv_workflow_free(wf);
    jv_free(s.states);
    return report;
}

Test(state, resume_continues_after_completed_effects_without_repeating_them)
{
    mk_tmp();
    char doc[2048];
    snprintf(doc, sizeof doc,
             HDR "do:\n"
                 "  - first:\n"
                 "      run: {shell: {command: 'echo first >> %s/log; echo 1'}}\n"
                 "  - pause:\n"
                 "      wait: PT1S\n"
                 "  - second:\n"
                 "      run: {shell: {command: 'echo second >> %s/log; echo 2'}}\n"
                 "      output: {as: '${ {first: ($input | tonumber), second: tonumber} }'}\n",
             tmpdir, tmpdir);
    int n;
    jv first;
    /* checkpoints: first's effect, the wait, second's effect: resume at the wait */
    jv report = run_then_resume(doc, jv_object(), 1, &n, &first);
    cr_expect_eq(n, 3);
    jv status = jv_object_get(jv_copy(report), jv_string("status"));
    cr_expect_str_eq(jv_string_value(status), "completed");
    jv out = jv_object_get(jv_copy(report), jv_string("output"));
    jv expect = jv_parse("{\"first\": 1, \"second\": 2}");
    cr_expect(jv_equal(jv_copy(out), expect), "the resumed run ends with the same output");
    jv out1 = jv_object_get(first, jv_string("output"));
    cr_expect(jv_equal(out1, out));
    /* the first run ran both effects; the resumed one only the second */
    char path[128];
    snprintf(path, sizeof path, "%s/log", tmpdir);
    cr_expect_str_eq(slurp(path), "first\nsecond\nsecond\n");
    jv_free(status);
    jv_free(report);
}

Test(state, resume_reissues_the_effect_in_flight_and_keeps_finished_branches)
{
    mk_tmp();
    char doc[2048];
    snprintf(doc, sizeof doc,
             HDR "do:\n"
                 "  - both:\n"
                 "      fork:\n"
                 "        branches:\n"
                 "          - quick:\n"
                 "              run: {shell: {command: 'echo quick >> %s/log; echo q'}}\n"
                 "          - slow:\n"
                 "              run: {shell: {command: 'sleep 0.3; echo slow >> %s/log; echo s'}}\n",
             tmpdir, tmpdir);
    int n;
    jv first;
    /* checkpoint 0: both in flight; checkpoint 1: quick done, slow in flight */
    jv report = run_then_resume(doc, jv_object(), 1, &n, &first);
    cr_expect_eq(n, 2);
    jv out = jv_object_get(jv_copy(report), jv_string("output"));
    jv expect = jv_parse("[\"q\\n\", \"s\\n\"]");
    cr_expect(jv_equal(out, expect), "the finished branch's result is kept, the other reissued");
    char path[128];
    snprintf(path, sizeof path, "%s/log", tmpdir);
    cr_expect_str_eq(slurp(path), "quick\nslow\nslow\n");
    jv_free(first);
    jv_free(report);
}

Test(state, resume_inside_a_loop_keeps_the_iteration_and_its_data)
{
    mk_tmp();
    char doc[2048];
    snprintf(doc, sizeof doc,
             HDR "do:\n"
                 "  - loop:\n"
                 "      for: {each: n, in: '[1, 2, 3]'}\n"
                 "      do:\n"
                 "        - add:\n"
                 "            run: {shell: {command: 'echo \"$1\" >> %s/log; echo \"$1\"', arguments: ['${ $n }']}}\n"
                 "            output: {as: '${ ($input // 0) + tonumber }'}\n",
             tmpdir);
    int n;
    jv first;
    jv report = run_then_resume(doc, jv_null(), 1, &n, &first);
    cr_expect_eq(n, 3);
    jv out = jv_object_get(jv_copy(report), jv_string("output"));
    cr_expect(jv_equal(out, jv_number(6)), "1 + 2 + 3 after resuming in iteration 2");
    char path[128];
    snprintf(path, sizeof path, "%s/log", tmpdir);
    cr_expect_str_eq(slurp(path), "1\n2\n3\n2\n3\n");
    jv_free(first);
    jv_free(report);
}

Test(state, resume_refuses_a_position_that_does_not_fit)
{
    cv_workflow *wf = load(HDR "do:\n  - a:\n      set: {x: 1}\n");
    cv_runtime *rt;
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    jv bad = jv_parse("{\"id\": \"x\", \"fibers\": [{\"index\": 0, \"parent\": -1, \"state\": \"runnable\","
                      " \"frames\": [{\"type\": \"workflow\", \"ref\": \"/\", \"phase\": 1},"
                      " {\"type\": \"task\", \"ref\": \"/do/7/nope\", \"phase\": 0}]}]}");
    cv_run_options o = {.id = "x", .resume = bad};
    jv report;
    cr_expect_eq(cv_run_ex(rt, wf, jv_null(), &o, &report), CV_EINVAL);
    jv err = jv_object_get(report, jv_string("error"));
    jv detail = jv_object_get(err, jv_string("detail"));
    cr_expect(strstr(jv_string_value(detail), "/do/7/nope") != NULL, "the message names the reference: %s",
              jv_string_value(detail));
    jv_free(detail);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
}
