/*
 * test_state.c — the interpreter's position as data (DESIGN.md decision 3)
 * and the effect timeout that keeps external work bounded.
 *
 * The checkpoint hook is called before every effect with the instance's
 * position; these tests read it back and check that it names the running
 * tasks by reference, with loop counters, retry attempts and data — enough to
 * rebuild the frames from the immutable task tree.
 */
#include "conveyor.h"

#include <criterion/criterion.h>
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
    /* when the second branch starts its effect, the first is already waiting on its own */
    jv st = jv_array_get(jv_copy(s.states), 1);
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
    cr_assert_eq(jv_array_length(jv_copy(s.states)), 3, "the first attempt and two retries");
    for (int i = 0; i < 3; i++) {
        jv st = jv_array_get(jv_copy(s.states), i);
        jv fibers = jv_object_get(st, jv_string("fibers"));
        jv frames = jv_object_get(jv_array_get(fibers, 0), jv_string("frames"));
        jv tryf = jv_array_get(frames, 2);
        jv ref = jv_object_get(jv_copy(tryf), jv_string("ref"));
        cr_expect_str_eq(jv_string_value(ref), "/do/0/attempt");
        cr_expect_eq(jv_number_value(jv_object_get(tryf, jv_string("attempt"))), i);
        jv_free(ref);
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
