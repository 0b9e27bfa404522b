/*
 * test_engine.c — the interpreter through the public API only (conveyor.h):
 * every task type, flow directives, try/catch/retry, timeouts, extensions,
 * functions, subflows and the error paths, each checked on the run report
 * {id, status, output, error, trace}.
 *
 * Documents are short YAML texts; each test gets a fresh runtime with the
 * trace on and a time scale of 0.001 (a one-second wait takes a millisecond).
 * The few tests that need real delays set their own scale and only assert
 * lower bounds (a timer never fires early); nothing here asserts an upper
 * bound on time. HTTP tests start the offline stub (tests/stub/stub_server.py)
 * on a free port and map every host to it, with unmapped hosts denied.
 */
#include "conveyor.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HDR "document: {dsl: '1.0.0', namespace: test, name: t, version: '0.1.0'}\n"
/* A workflow whose `do` list is the given YAML (items indented by 2). */
#define WF(tasks) HDR "do:\n" tasks

static cv_runtime *rt;

static void rt_setup(void)
{
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    cv_runtime_set_trace(rt, 1);
    cv_runtime_set_time_scale(rt, 0.001);
    cv_runtime_deny_unmapped(rt, 1);
}

static void rt_teardown(void)
{
    cv_runtime_free(rt);
    rt = NULL;
}

TestSuite(engine, .init = rt_setup, .fini = rt_teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------------ */

static jv J(const char *text)
{
    jv v = jv_parse(text);
    cr_assert(jv_is_valid(v), "bad JSON in test: %s", text);
    return v;
}

static char dumpbuf[8][4096];
static int dumpi;
/* A short-lived printable form of v (borrowed). */
static const char *D(jv v)
{
    char *b = dumpbuf[dumpi++ % 8];
    if (!jv_is_valid(v)) {
        snprintf(b, 4096, "<invalid>");
        return b;
    }
    jv s = jv_dump_string(jv_copy(v), JV_PRINT_SORTED);
    snprintf(b, 4096, "%s", jv_string_value(s));
    jv_free(s);
    return b;
}

/* Loads a document; fails the test with its diagnostics when it does not load. */
static cv_workflow *load(const char *yaml)
{
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(yaml, strlen(yaml), "test.yaml", &wf, &diags);
    cr_assert_eq(rc, CV_OK, "document did not load (%d): %s\n%s", rc, D(diags), yaml);
    jv_free(diags);
    return wf;
}

/* Loads and runs `yaml` with `input` (JSON text, NULL = {}); returns cv_run's code. */
static int run(const char *yaml, const char *input, jv *rep)
{
    cv_workflow *wf = load(yaml);
    int rc = cv_run(rt, wf, J(input ? input : "{}"), rep);
    cv_workflow_free(wf);
    return rc;
}

/* A dotted path into v (borrowed): "error.status", "trace.0.name". Missing → null. */
static jv P(jv v, const char *path)
{
    jv cur = jv_copy(v);
    const char *p = path;
    while (*p) {
        char key[128];
        size_t n = strcspn(p, ".");
        if (n >= sizeof key)
            n = sizeof key - 1;
        memcpy(key, p, n);
        key[n] = 0;
        p += n;
        if (*p == '.')
            p++;
        if (jv_get_kind(cur) == JV_KIND_OBJECT) {
            cur = jv_object_get(cur, jv_string(key));
            if (!jv_is_valid(cur)) {
                jv_free(cur);
                cur = jv_null();
            }
        } else if (jv_get_kind(cur) == JV_KIND_ARRAY && key[0] >= '0' && key[0] <= '9') {
            int i = atoi(key);
            if (i < jv_array_length(jv_copy(cur)))
                cur = jv_array_get(cur, i);
            else {
                jv_free(cur);
                cur = jv_null();
            }
        } else {
            jv_free(cur);
            cur = jv_null();
        }
    }
    return cur;
}

#define EXPECT_AT(rep, path, want)                                                                   \
    do {                                                                                             \
        jv got_ = P(rep, path);                                                                      \
        cr_expect(jv_equal(jv_copy(got_), J(want)), "%s: expected %s, got %s (report %s)", path, want, \
                  D(got_), D(rep));                                                                  \
        jv_free(got_);                                                                               \
    } while (0)

/* The run completed with this output. */
#define EXPECT_OUTPUT(rc, rep, want)                                                          \
    do {                                                                                      \
        cr_expect_eq(rc, CV_OK, "run did not complete (%d): %s", rc, D(rep));                 \
        EXPECT_AT(rep, "status", "\"completed\"");                                            \
        EXPECT_AT(rep, "output", want);                                                       \
    } while (0)

#define ERR_PREFIX "https://serverlessworkflow.io/spec/1.0.0/errors/"

/* The run faulted with an error of this type suffix, status and instance (NULL: not checked). */
#define EXPECT_FAULT(rc, rep, type, status, instance)                                        \
    do {                                                                                     \
        cr_expect_eq(rc, CV_EFAULT, "run did not fault (%d): %s", rc, D(rep));               \
        EXPECT_AT(rep, "status", "\"faulted\"");                                             \
        EXPECT_AT(rep, "error.type", "\"" ERR_PREFIX type "\"");                            \
        EXPECT_AT(rep, "error.status", #status);                                             \
        if ((instance) != NULL) {                                                            \
            char want_[256];                                                                 \
            snprintf(want_, sizeof want_, "\"%s\"", (const char *)(instance));               \
            EXPECT_AT(rep, "error.instance", want_);                                         \
        }                                                                                    \
    } while (0)

/* How many trace entries have this reference (and status, when not NULL). */
static int trace_count(jv rep, const char *ref, const char *status)
{
    jv tr = P(rep, "trace");
    int n = 0;
    jv_array_foreach(tr, i, e)
    {
        jv r = P(e, "reference"), s = P(e, "status");
        if (jv_get_kind(r) == JV_KIND_STRING && !strcmp(jv_string_value(r), ref) &&
            (!status || (jv_get_kind(s) == JV_KIND_STRING && !strcmp(jv_string_value(s), status))))
            n++;
        jv_free(r);
        jv_free(s);
        jv_free(e);
    }
    jv_free(tr);
    return n;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A fresh temporary directory for files the workflows write. */
static char tmpdir[64];
static const char *mktmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cv-engine-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    return tmpdir;
}

static void rmtmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

/* ---- set -------------------------------------------------------------------------- */

Test(engine, set_object_replaces_input_and_evaluates_leaves)
{
    jv rep;
    int rc = run(WF("  - s:\n"
                    "      set:\n"
                    "        a: 1\n"
                    "        b: ${ .x + 1 }\n"
                    "        c: {d: '${ .x }', lit: hello}\n"
                    "        e: ['${ .x * 10 }', lit]\n"),
                 "{\"x\": 2}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"a\":1,\"b\":3,\"c\":{\"d\":2,\"lit\":\"hello\"},\"e\":[20,\"lit\"]}");
    EXPECT_AT(rep, "trace.0.reference", "\"/do/0/s\"");
    EXPECT_AT(rep, "trace.0.status", "\"completed\"");
    jv_free(rep);
}

Test(engine, set_string_is_always_an_expression)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: ${ .x * 2 }\n"
                    "  - b:\n"
                    "      set: '[., .]'\n"),
                 "{\"x\": 2}", &rep);
    EXPECT_OUTPUT(rc, rep, "[4,4]");
    jv_free(rep);
}

/* ---- do ----------------------------------------------------------------------------- */

Test(engine, do_chains_outputs_and_nests)
{
    jv rep;
    int rc = run(WF("  - outer:\n"
                    "      do:\n"
                    "        - one:\n"
                    "            set: {n: '${ .n + 1 }'}\n"
                    "        - inner:\n"
                    "            do:\n"
                    "              - two:\n"
                    "                  set: {n: '${ .n * 10 }'}\n"
                    "  - three:\n"
                    "      set: {n: '${ .n + 5 }'}\n"),
                 "{\"n\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"n\":25}");
    cr_expect_eq(trace_count(rep, "/do/0/outer/do/1/inner/do/0/two", "completed"), 1, "%s", D(rep));
    cr_expect_eq(trace_count(rep, "/do/0/outer/do/0/one", "completed"), 1, "%s", D(rep));
    jv_free(rep);
}

/* ---- switch ----------------------------------------------------------------------------- */

static const char switch_doc[] = WF("  - sw:\n"
                                    "      switch:\n"
                                    "        - red:\n"
                                    "            when: '.color == \"red\"'\n"
                                    "            then: setRed\n"
                                    "        - blue:\n"
                                    "            when: ${ .color == \"blue\" }\n"
                                    "            then: setBlue\n"
                                    "        - other:\n"
                                    "            then: setOther\n"
                                    "  - setRed:\n"
                                    "      set: {c: red}\n"
                                    "      then: end\n"
                                    "  - setBlue:\n"
                                    "      set: {c: blue}\n"
                                    "      then: end\n"
                                    "  - setOther:\n"
                                    "      set: {c: other}\n");

Test(engine, switch_takes_the_first_matching_case)
{
    jv rep;
    int rc = run(switch_doc, "{\"color\": \"red\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"c\":\"red\"}");
    cr_expect_eq(trace_count(rep, "/do/2/setBlue", NULL), 0);
    cr_expect_eq(trace_count(rep, "/do/3/setOther", NULL), 0);
    jv_free(rep);
    rc = run(switch_doc, "{\"color\": \"blue\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"c\":\"blue\"}");
    jv_free(rep);
}

Test(engine, switch_explicit_default_and_output_is_input)
{
    jv rep;
    int rc = run(switch_doc, "{\"color\": \"green\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"c\":\"other\"}");
    /* the switch's own output is its input */
    EXPECT_AT(rep, "trace.0.output", "{\"color\":\"green\"}");
    jv_free(rep);
}

Test(engine, switch_without_match_uses_the_task_then)
{
    jv rep;
    const char *doc = WF("  - sw:\n"
                         "      switch:\n"
                         "        - red:\n"
                         "            when: '.color == \"red\"'\n"
                         "            then: setRed\n"
                         "      then: end\n"
                         "  - setRed:\n"
                         "      set: {c: red}\n");
    int rc = run(doc, "{\"color\": \"yellow\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"color\":\"yellow\"}");
    cr_expect_eq(trace_count(rep, "/do/1/setRed", NULL), 0, "%s", D(rep));
    jv_free(rep);
    /* without a task `then`, no match continues with the next task */
    const char *doc2 = WF("  - sw:\n"
                          "      switch:\n"
                          "        - red:\n"
                          "            when: '.color == \"red\"'\n"
                          "            then: exit\n"
                          "  - next:\n"
                          "      set: {c: next}\n");
    rc = run(doc2, "{\"color\": \"yellow\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"c\":\"next\"}");
    jv_free(rep);
    rc = run(doc2, "{\"color\": \"red\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"color\":\"red\"}");
    jv_free(rep);
}

Test(engine, switch_goto_backwards_loops)
{
    jv rep;
    int rc = run(WF("  - init:\n"
                    "      set: {n: 0}\n"
                    "  - inc:\n"
                    "      set: {n: '${ .n + 1 }'}\n"
                    "  - check:\n"
                    "      switch:\n"
                    "        - again:\n"
                    "            when: .n < 3\n"
                    "            then: inc\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"n\":3}");
    cr_expect_eq(trace_count(rep, "/do/1/inc", "completed"), 3, "%s", D(rep));
    jv_free(rep);
}

/* ---- for -------------------------------------------------------------------------------- */

Test(engine, for_each_at_names_and_accumulation)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for:\n"
                    "        each: color\n"
                    "        at: i\n"
                    "        in: .colors\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set:\n"
                    "              colors: ${ .colors }\n"
                    "              seen: ${ .seen + [$color + ($i | tostring)] }\n"),
                 "{\"colors\": [\"red\", \"green\", \"blue\"]}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"colors\":[\"red\",\"green\",\"blue\"],\"seen\":[\"red0\",\"green1\",\"blue2\"]}");
    cr_expect_eq(trace_count(rep, "/do/0/loop/do/0/add", "completed"), 3, "%s", D(rep));
    jv_free(rep);
}

Test(engine, for_default_names_item_and_index)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for:\n"
                    "        in: ${ [10, 20] }\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set: ${ . + [$item + $index] }\n"),
                 "[]", &rep);
    EXPECT_OUTPUT(rc, rep, "[10,21]");
    jv_free(rep);
}

Test(engine, for_while_stops_before_an_iteration)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for:\n"
                    "        each: x\n"
                    "        in: '[1,2,3,4,5,6]'\n"
                    "      while: .total < 6\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set: {total: '${ .total + $x }'}\n"),
                 "{\"total\": 0}", &rep);
    /* 1, 3, 6: the fourth check sees 6 and stops */
    EXPECT_OUTPUT(rc, rep, "{\"total\":6}");
    cr_expect_eq(trace_count(rep, "/do/0/loop/do/0/add", NULL), 3, "%s", D(rep));
    jv_free(rep);
}

Test(engine, for_empty_and_null_iterate_nothing)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for:\n"
                    "        in: .items\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set: {touched: true}\n"),
                 "{\"items\": []}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"items\":[]}");
    jv_free(rep);
    rc = run(WF("  - loop:\n"
                "      for:\n"
                "        in: .missing\n"
                "      do:\n"
                "        - add:\n"
                "            set: {touched: true}\n"),
             "{\"a\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"a\":1}");
    cr_expect_eq(trace_count(rep, "/do/0/loop/do/0/add", NULL), 0);
    jv_free(rep);
}

Test(engine, for_in_not_an_array_is_an_expression_error)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for:\n"
                    "        in: .n\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set: {ran: true}\n"),
                 "{\"n\": 5}", &rep);
    EXPECT_FAULT(rc, rep, "expression", 400, "/do/0/loop");
    jv_free(rep);
}

/* ---- fork ------------------------------------------------------------------------------- */

Test(engine, fork_outputs_in_declaration_order)
{
    jv rep;
    cv_runtime_set_time_scale(rt, 1.0);
    int rc = run(WF("  - f:\n"
                    "      fork:\n"
                    "        branches:\n"
                    "          - slow:\n"
                    "              do:\n"
                    "                - w:\n"
                    "                    wait: {milliseconds: 60}\n"
                    "                - s:\n"
                    "                    set: '\"slow\"'\n"
                    "          - fast:\n"
                    "              set: '\"fast\"'\n"
                    "          - mid:\n"
                    "              do:\n"
                    "                - w:\n"
                    "                    wait: {milliseconds: 20}\n"
                    "                - s:\n"
                    "                    set: ${ .x }\n"),
                 "{\"x\": \"mid\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "[\"slow\",\"fast\",\"mid\"]");
    cr_expect_eq(trace_count(rep, "/do/0/f/fork/branches/0/slow/do/1/s", "completed"), 1, "%s", D(rep));
    jv_free(rep);
}

Test(engine, fork_compete_gives_one_result)
{
    jv rep;
    int rc = run(WF("  - f:\n"
                    "      fork:\n"
                    "        compete: true\n"
                    "        branches:\n"
                    "          - slow:\n"
                    "              do:\n"
                    "                - w:\n"
                    "                    wait: PT30S\n"
                    "                - s:\n"
                    "                    set: {winner: slow}\n"
                    "          - fast:\n"
                    "              set: {winner: fast}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"winner\":\"fast\"}");
    cr_expect_eq(trace_count(rep, "/do/0/f/fork/branches/0/slow/do/1/s", NULL), 0, "%s", D(rep));
    jv_free(rep);
}

Test(engine, fork_failing_branch_faults_the_fork)
{
    jv rep;
    int rc = run(WF("  - f:\n"
                    "      fork:\n"
                    "        branches:\n"
                    "          - ok:\n"
                    "              set: {a: 1}\n"
                    "          - bad:\n"
                    "              raise:\n"
                    "                error: {type: '" ERR_PREFIX "runtime', status: 500, title: bad}\n"
                    "  - after:\n"
                    "      set: {reached: true}\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 500, "/do/0/f/fork/branches/1/bad");
    cr_expect_eq(trace_count(rep, "/do/1/after", NULL), 0);
    jv_free(rep);
}

Test(engine, fork_nested)
{
    jv rep;
    int rc = run(WF("  - f:\n"
                    "      fork:\n"
                    "        branches:\n"
                    "          - inner:\n"
                    "              fork:\n"
                    "                branches:\n"
                    "                  - a:\n"
                    "                      set: ${ .n + 1 }\n"
                    "                  - b:\n"
                    "                      set: ${ .n + 2 }\n"
                    "          - c:\n"
                    "              set: ${ .n + 3 }\n"),
                 "{\"n\": 0}", &rep);
    EXPECT_OUTPUT(rc, rep, "[[1,2],3]");
    jv_free(rep);
}

/* ---- try / catch / retry ------------------------------------------------------------------ */

static const char *raise404 = "              raise:\n"
                              "                error:\n"
                              "                  type: " ERR_PREFIX "communication\n"
                              "                  status: 404\n"
                              "                  title: Not Found\n"
                              "                  detail: no such pet\n";

Test(engine, catch_with_type_and_status_runs_catch_do_with_error_variable)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            type: " ERR_PREFIX "communication\n"
                "            status: 404\n"
                "        as: oops\n"
                "        do:\n"
                "          - handle:\n"
                "              set:\n"
                "                input: ${ . }\n"
                "                status: ${ $oops.status }\n"
                "                instance: ${ $oops.instance }\n"),
             raise404);
    jv rep;
    int rc = run(doc, "{\"k\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"input\":{\"k\":1},\"status\":404,\"instance\":\"/do/0/t/try/0/r\"}");
    cr_expect_eq(trace_count(rep, "/do/0/t/catch/do/0/handle", "completed"), 1, "%s", D(rep));
    jv_free(rep);
}

Test(engine, catch_filter_on_details_and_title)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            details: no such pet\n"
                "            title: Not Found\n"
                "        do:\n"
                "          - handle:\n"
                "              set: {caught: true}\n"),
             raise404);
    jv rep;
    int rc = run(doc, NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"caught\":true}");
    jv_free(rep);
}

Test(engine, catch_filter_mismatch_propagates_with_the_original_instance)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            status: 503\n"
                "        do:\n"
                "          - handle:\n"
                "              set: {caught: true}\n"),
             raise404);
    jv rep;
    int rc = run(doc, NULL, &rep);
    EXPECT_FAULT(rc, rep, "communication", 404, "/do/0/t/try/0/r");
    EXPECT_AT(rep, "error.detail", "\"no such pet\"");
    cr_expect_eq(trace_count(rep, "/do/0/t/catch/do/0/handle", NULL), 0);
    jv_free(rep);
}

Test(engine, catch_filter_type_alias_of_the_old_uri)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            type: https://serverlessworkflow.io/dsl/errors/types/communication\n"
                "        do:\n"
                "          - handle:\n"
                "              set: {caught: alias}\n"),
             raise404);
    jv rep;
    int rc = run(doc, NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"caught\":\"alias\"}");
    jv_free(rep);
    /* a different type under the old prefix does not match */
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            type: https://serverlessworkflow.io/dsl/errors/types/timeout\n"),
             raise404);
    rc = run(doc, NULL, &rep);
    EXPECT_FAULT(rc, rep, "communication", 404, "/do/0/t/try/0/r");
    jv_free(rep);
}

Test(engine, catch_when_and_except_when)
{
    char doc[2048];
    const char *fmt = WF("  - t:\n"
                         "      try:\n"
                         "        - r:\n"
                         "%s"
                         "      catch:\n"
                         "        %s\n"
                         "        do:\n"
                         "          - handle:\n"
                         "              set: {caught: true}\n");
    jv rep;
    int rc;
    snprintf(doc, sizeof doc, fmt, raise404, "when: .status == 404 and $error.detail == \"no such pet\"");
    rc = run(doc, NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"caught\":true}");
    jv_free(rep);
    snprintf(doc, sizeof doc, fmt, raise404, "when: ${ .status == 500 }");
    rc = run(doc, NULL, &rep);
    EXPECT_FAULT(rc, rep, "communication", 404, "/do/0/t/try/0/r");
    jv_free(rep);
    snprintf(doc, sizeof doc, fmt, raise404, "exceptWhen: .status == 404");
    rc = run(doc, NULL, &rep);
    EXPECT_FAULT(rc, rep, "communication", 404, "/do/0/t/try/0/r");
    jv_free(rep);
    snprintf(doc, sizeof doc, fmt, raise404, "exceptWhen: .status == 401");
    rc = run(doc, NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"caught\":true}");
    jv_free(rep);
}

Test(engine, catch_without_do_yields_the_try_input)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      input:\n"
                "        from: .inner\n"
                "      try:\n"
                "        - r:\n"
                "%s"
                "      catch:\n"
                "        errors:\n"
                "          with: {status: 404}\n"),
             raise404);
    jv rep;
    int rc = run(doc, "{\"inner\": {\"v\": 7}, \"other\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"v\":7}");
    jv_free(rep);
}

/* A try whose body appends a line to a file and fails; the retry policy and
 * the catch are the caller's. Returns the number of attempts (lines). */
static int attempts_with(const char *catch_yaml, jv *rep, int *rc)
{
    const char *dir = mktmp();
    char doc[4096];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - attempt:\n"
                "            run:\n"
                "              shell:\n"
                "                command: 'echo x >> %s/count; echo failing >&2; exit 3'\n"
                "      catch:\n"
                "%s"),
             dir, catch_yaml);
    *rc = run(doc, NULL, rep);
    char path[128];
    snprintf(path, sizeof path, "%s/count", dir);
    int n = count_lines(path);
    rmtmp();
    return n;
}

Test(engine, retry_limit_count_counts_retries_then_catch_do_runs)
{
    jv rep;
    int rc;
    int n = attempts_with("        errors:\n"
                          "          with: {type: " ERR_PREFIX "runtime}\n"
                          "        retry:\n"
                          "          delay: {seconds: 1}\n"
                          "          backoff: {constant: {}}\n"
                          "          limit:\n"
                          "            attempt: {count: 2}\n"
                          "        do:\n"
                          "          - handle:\n"
                          "              set: {gaveUp: '${ $error.status }'}\n",
                          &rep, &rc);
    cr_expect_eq(n, 3, "limit.attempt.count 2 means 2 retries after the first attempt, got %d attempts", n);
    cr_expect_eq(trace_count(rep, "/do/0/t/try/0/attempt", "faulted"), 3, "%s", D(rep));
    EXPECT_OUTPUT(rc, rep, "{\"gaveUp\":500}");
    jv_free(rep);
}

Test(engine, retry_exhausted_without_catch_do_yields_the_try_input)
{
    jv rep;
    int rc;
    int n = attempts_with("        retry:\n"
                          "          delay: PT0.1S\n"
                          "          limit:\n"
                          "            attempt: {count: 1}\n",
                          &rep, &rc);
    cr_expect_eq(n, 2);
    EXPECT_OUTPUT(rc, rep, "{}");
    jv_free(rep);
}

Test(engine, retry_when_false_does_not_retry)
{
    jv rep;
    int rc;
    int n = attempts_with("        retry:\n"
                          "          when: .status == 503\n"
                          "          delay: PT0.1S\n"
                          "          limit:\n"
                          "            attempt: {count: 5}\n"
                          "        do:\n"
                          "          - handle:\n"
                          "              set: {handled: true}\n",
                          &rep, &rc);
    cr_expect_eq(n, 1, "a retry `when` that is false must not retry, got %d attempts", n);
    EXPECT_OUTPUT(rc, rep, "{\"handled\":true}");
    jv_free(rep);
}

Test(engine, retry_reusable_policy_and_success_on_a_later_attempt)
{
    const char *dir = mktmp();
    char doc[4096];
    /* fails twice, then succeeds */
    snprintf(doc, sizeof doc,
             HDR "use:\n"
                 "  retries:\n"
                 "    thrice:\n"
                 "      delay: PT1S\n"
                 "      limit: {attempt: {count: 3}}\n"
                 "do:\n"
                 "  - t:\n"
                 "      try:\n"
                 "        - attempt:\n"
                 "            run:\n"
                 "              shell:\n"
                 "                command: 'echo x >> %s/c; test $(wc -l < %s/c) -ge 3 && echo done'\n"
                 "      catch:\n"
                 "        retry: thrice\n",
             dir, dir);
    jv rep;
    int rc = run(doc, NULL, &rep);
    char path[128];
    snprintf(path, sizeof path, "%s/c", dir);
    cr_expect_eq(count_lines(path), 3);
    rmtmp();
    EXPECT_OUTPUT(rc, rep, "\"done\\n\"");
    jv_free(rep);
}

/* retry.limit.attempt.duration bounds every attempt, the first one included:
 * the engine applies it as a deadline on each run of the try list, but only
 * sets that deadline on retries, so a first attempt that hangs is never cut. */
Test(engine, retry_limit_attempt_duration_bounds_the_first_attempt)
{
    jv rep;
    int rc = run(WF("  - t:\n"
                    "      try:\n"
                    "        - w:\n"
                    "            wait: PT60S\n"
                    "      catch:\n"
                    "        retry:\n"
                    "          delay: PT0S\n"
                    "          limit:\n"
                    "            attempt: {count: 1, duration: PT1S}\n"
                    "        do:\n"
                    "          - h:\n"
                    "              set: {caught: '${ $error.status }'}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"caught\":408}");
    cr_expect_eq(trace_count(rep, "/do/0/t/try/0/w", "completed"), 0,
                 "no attempt may outlive limit.attempt.duration: %s", D(rep));
    jv_free(rep);
}

/* Delay lower bounds (a timer never fires early) for each backoff, with
 * d = 10 s scaled by 0.01 to 100 ms and 3 retries:
 *   constant d, d, d = 300; linear d, 2d, 3d = 600; exponential d, 2d, 4d = 700. */
static int64_t retry_elapsed(const char *backoff)
{
    cv_runtime_set_time_scale(rt, 0.01);
    char doc[2048];
    snprintf(doc, sizeof doc,
             WF("  - t:\n"
                "      try:\n"
                "        - r:\n"
                "            raise:\n"
                "              error: {type: " ERR_PREFIX "runtime, status: 500}\n"
                "      catch:\n"
                "        retry:\n"
                "          delay: {seconds: 10}\n"
                "          backoff: {%s: {}}\n"
                "          limit: {attempt: {count: 3}}\n"),
             backoff);
    jv rep;
    int64_t t0 = mono_ms();
    int rc = run(doc, NULL, &rep);
    int64_t el = mono_ms() - t0;
    EXPECT_OUTPUT(rc, rep, "{}");
    cr_expect_eq(trace_count(rep, "/do/0/t/try/0/r", "faulted"), 4, "%s", D(rep));
    jv_free(rep);
    return el;
}

Test(engine, retry_backoff_constant_delay_with_time_scale)
{
    int64_t el = retry_elapsed("constant");
    cr_expect_geq(el, 300, "constant backoff: 3 retries of 100 ms took %lld ms", (long long)el);
}

Test(engine, retry_backoff_linear)
{
    int64_t el = retry_elapsed("linear");
    cr_expect_geq(el, 600, "linear backoff d·n: expected at least 600 ms, took %lld ms", (long long)el);
}

Test(engine, retry_backoff_exponential)
{
    int64_t el = retry_elapsed("exponential");
    cr_expect_geq(el, 700, "exponential backoff d·2^(n-1): expected at least 700 ms, took %lld ms",
                  (long long)el);
}

/* ---- raise ------------------------------------------------------------------------------ */

Test(engine, raise_inline_with_expressions)
{
    jv rep;
    int rc = run(WF("  - r:\n"
                    "      raise:\n"
                    "        error:\n"
                    "          type: " ERR_PREFIX "validation\n"
                    "          status: 422\n"
                    "          title: ${ \"Bad \" + .what }\n"
                    "          detail: ${ \"value \\(.n) is too big\" }\n"),
                 "{\"what\": \"order\", \"n\": 12}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 422, "/do/0/r");
    EXPECT_AT(rep, "error.title", "\"Bad order\"");
    EXPECT_AT(rep, "error.detail", "\"value 12 is too big\"");
    EXPECT_AT(rep, "output", "null");
    EXPECT_AT(rep, "trace.0.status", "\"faulted\"");
    jv_free(rep);
}

Test(engine, raise_reusable_error)
{
    jv rep;
    int rc = run(HDR "use:\n"
                     "  errors:\n"
                     "    notImplemented:\n"
                     "      type: " ERR_PREFIX "not-implemented\n"
                     "      status: 500\n"
                     "      title: Not Implemented\n"
                     "do:\n"
                     "  - step:\n"
                     "      do:\n"
                     "        - r:\n"
                     "            raise:\n"
                     "              error: notImplemented\n",
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "not-implemented", 500, "/do/0/step/do/0/r");
    EXPECT_AT(rep, "error.title", "\"Not Implemented\"");
    jv_free(rep);
}

Test(engine, raise_of_a_non_object_is_refused_at_load)
{
    const char *doc = WF("  - r:\n"
                         "      raise:\n"
                         "        error: ${ \"just a string\" }\n");
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(doc, strlen(doc), "t.yaml", &wf, &diags);
    cr_expect_eq(rc, CV_EVALIDATE, "got %d", rc);
    cr_expect_null(wf);
    cr_expect_eq(jv_get_kind(diags), JV_KIND_ARRAY);
    jv_free(diags);
    cv_workflow_free(wf);
}

/* ---- wait ---------------------------------------------------------------------------------- */

Test(engine, wait_iso8601_and_inline_keep_the_input)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      wait: PT2S\n"
                    "  - b:\n"
                    "      wait: {seconds: 1, milliseconds: 500}\n"
                    "  - c:\n"
                    "      wait: ${ \"PT0.5S\" }\n"),
                 "{\"keep\": [1]}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"keep\":[1]}");
    jv_free(rep);
}

Test(engine, wait_really_waits_with_scale_one)
{
    cv_runtime_set_time_scale(rt, 1.0);
    jv rep;
    int64_t t0 = mono_ms();
    int rc = run(WF("  - a:\n"
                    "      wait: {milliseconds: 80}\n"),
                 NULL, &rep);
    int64_t el = mono_ms() - t0;
    EXPECT_OUTPUT(rc, rep, "{}");
    cr_expect_geq(el, 80, "an 80 ms wait returned after %lld ms", (long long)el);
    jv_free(rep);
}

/* ---- emit ---------------------------------------------------------------------------------- */

Test(engine, emit_output_is_the_cloud_event)
{
    FILE *events = tmpfile();
    cr_assert_not_null(events);
    cv_runtime_set_event_stream(rt, events);
    jv rep;
    int rc = run(WF("  - e:\n"
                    "      emit:\n"
                    "        event:\n"
                    "          with:\n"
                    "            source: https://test.example/orders\n"
                    "            type: com.example.order.placed.v1\n"
                    "            data:\n"
                    "              order: ${ .id }\n"
                    "  - bare:\n"
                    "      emit:\n"
                    "        event:\n"
                    "          with:\n"
                    "            source: https://test.example/x\n"
                    "            type: com.example.empty\n"),
                 "{\"id\": 42}", &rep);
    cr_expect_eq(rc, CV_OK, "%s", D(rep));
    jv ev = P(rep, "trace.0.output");
    EXPECT_AT(ev, "source", "\"https://test.example/orders\"");
    EXPECT_AT(ev, "type", "\"com.example.order.placed.v1\"");
    EXPECT_AT(ev, "data", "{\"order\":42}");
    EXPECT_AT(ev, "specversion", "\"1.0\"");
    EXPECT_AT(ev, "datacontenttype", "\"application/json\"");
    jv id = P(ev, "id"), tm = P(ev, "time");
    cr_expect(jv_get_kind(id) == JV_KIND_STRING && strlen(jv_string_value(id)) == 36, "id: %s", D(id));
    cr_expect(jv_get_kind(tm) == JV_KIND_STRING && strlen(jv_string_value(tm)) >= 20 &&
                  jv_string_value(tm)[4] == '-' && jv_string_value(tm)[10] == 'T',
              "time: %s", D(tm));
    /* no data: no datacontenttype */
    jv bare = P(rep, "output");
    cr_expect(!jv_object_has(jv_copy(bare), jv_string("datacontenttype")), "%s", D(bare));
    cr_expect(jv_object_has(jv_copy(bare), jv_string("id")), "%s", D(bare));
    /* the event stream received both, the first identical to the output */
    rewind(events);
    char line[4096];
    cr_assert_not_null(fgets(line, sizeof line, events));
    jv first = jv_parse(line);
    cr_expect(jv_equal(jv_copy(first), jv_copy(ev)), "stream %s vs output %s", D(first), D(ev));
    cr_expect_not_null(fgets(line, sizeof line, events));
    jv_free(first);
    jv_free(id);
    jv_free(tm);
    jv_free(ev);
    jv_free(bare);
    jv_free(rep);
    cv_runtime_set_event_stream(rt, NULL);
    fclose(events);
}

/* ---- run: shell / script / workflow ---------------------------------------------------------- */

Test(engine, run_shell_stdin_arguments_environment_and_return_modes)
{
    jv rep;
    int rc = run(WF("  - msg:\n"
                    "      set: {message: Hello}\n"
                    "  - sh:\n"
                    "      run:\n"
                    "        shell:\n"
                    "          command: 'read line; echo \"$line|$1|$2|$FOO\"; echo warn >&2'\n"
                    "          stdin: ${ .message }\n"
                    "          arguments: [a1, '${ .message }']\n"
                    "          environment: {FOO: '${ .message + \"!\" }'}\n"
                    "        return: all\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"code\":0,\"stdout\":\"Hello|a1|Hello|Hello!\\n\",\"stderr\":\"warn\\n\"}");
    jv_free(rep);

    rc = run(WF("  - a:\n"
                "      run:\n"
                "        shell:\n"
                "          command: 'echo out; echo err >&2'\n"
                "  - b:\n"
                "      run:\n"
                "        shell:\n"
                "          command: 'echo out; echo err >&2'\n"
                "        return: stderr\n"
                "  - c:\n"
                "      run:\n"
                "        shell:\n"
                "          command: 'exit 7'\n"
                "        return: code\n"
                "  - d:\n"
                "      run:\n"
                "        shell:\n"
                "          command: 'echo ignored'\n"
                "        return: none\n"),
             NULL, &rep);
    cr_expect_eq(rc, CV_OK, "%s", D(rep));
    EXPECT_AT(rep, "trace.0.output", "\"out\\n\"");
    EXPECT_AT(rep, "trace.1.output", "\"err\\n\"");
    EXPECT_AT(rep, "trace.2.output", "7");
    EXPECT_AT(rep, "output", "null");
    jv_free(rep);
}

Test(engine, run_shell_nonzero_exit_with_stdout_is_a_runtime_error)
{
    jv rep;
    int rc = run(WF("  - sh:\n"
                    "      run:\n"
                    "        shell:\n"
                    "          command: 'echo partial; echo broken >&2; exit 4'\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 500, "/do/0/sh");
    jv d = P(rep, "error.detail");
    cr_expect(jv_get_kind(d) == JV_KIND_STRING && strstr(jv_string_value(d), "broken"), "%s", D(d));
    jv_free(d);
    jv_free(rep);
    rc = run(WF("  - sh:\n"
                "      run:\n"
                "        shell:\n"
                "          command: 'exit 4'\n"
                "        return: stderr\n"),
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 500, "/do/0/sh");
    jv_free(rep);
}

Test(engine, run_script_javascript)
{
    if (system("command -v node >/dev/null 2>&1") != 0)
        cr_skip_test("node is not installed");
    jv rep;
    int rc = run(WF("  - js:\n"
                    "      run:\n"
                    "        script:\n"
                    "          language: javascript\n"
                    "          stdin: Hello\n"
                    "          arguments: [arg1]\n"
                    "          environment: {foo: bar}\n"
                    "          code: |\n"
                    "            import { readFileSync } from 'node:fs';\n"
                    "            const stdin = readFileSync(process.stdin.fd, 'utf8');\n"
                    "            console.log(JSON.stringify([stdin, process.argv[2], process.env.foo]));\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "\"[\\\"Hello\\\",\\\"arg1\\\",\\\"bar\\\"]\\n\"");
    jv_free(rep);
}

Test(engine, run_script_python)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        cr_skip_test("python3 is not installed");
    jv rep;
    int rc = run(WF("  - py:\n"
                    "      run:\n"
                    "        script:\n"
                    "          language: python\n"
                    "          arguments: [x, y]\n"
                    "          code: |\n"
                    "            import sys\n"
                    "            print('-'.join(sys.argv[1:]))\n"
                    "        return: all\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"code\":0,\"stdout\":\"x-y\\n\",\"stderr\":\"\"}");
    jv_free(rep);
}

static void add_subflow(const char *yaml)
{
    cr_assert_eq(cv_runtime_add_workflow(rt, load(yaml)), CV_OK);
}

Test(engine, run_workflow_subflow_with_input_and_latest_version)
{
    add_subflow("document: {dsl: '1.0.0', namespace: lib, name: greet, version: '0.9.0'}\n"
                "do:\n"
                "  - s:\n"
                "      set: {greeting: '${ \"old \" + .who }'}\n");
    add_subflow("document: {dsl: '1.0.0', namespace: lib, name: greet, version: '0.10.0'}\n"
                "do:\n"
                "  - s:\n"
                "      set: {greeting: '${ \"hello \" + .who }', parentInput: '${ $workflow.input }'}\n");
    jv rep;
    int rc = run(WF("  - call:\n"
                    "      run:\n"
                    "        workflow:\n"
                    "          namespace: lib\n"
                    "          name: greet\n"
                    "          version: latest\n"
                    "          input:\n"
                    "            who: ${ .user }\n"),
                 "{\"user\": \"ann\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"greeting\":\"hello ann\",\"parentInput\":{\"who\":\"ann\"}}");
    jv_free(rep);
    rc = run(WF("  - call:\n"
                "      run:\n"
                "        workflow:\n"
                "          namespace: lib\n"
                "          name: greet\n"
                "          version: '0.9.0'\n"),
             "{\"who\": \"bob\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"greeting\":\"old bob\"}");
    jv_free(rep);
}

Test(engine, run_workflow_child_fault_propagates)
{
    add_subflow("document: {dsl: '1.0.0', namespace: lib, name: fails, version: '1.0.0'}\n"
                "do:\n"
                "  - boom:\n"
                "      raise:\n"
                "        error: {type: '" ERR_PREFIX "runtime', status: 500, title: child failed}\n");
    jv rep;
    int rc = run(WF("  - call:\n"
                    "      run:\n"
                    "        workflow: {namespace: lib, name: fails, version: '1.0.0'}\n"
                    "  - after:\n"
                    "      set: {reached: true}\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 500, NULL);
    EXPECT_AT(rep, "error.title", "\"child failed\"");
    cr_expect_eq(trace_count(rep, "/do/1/after", NULL), 0);
    jv_free(rep);
    /* an unknown subflow is a configuration error */
    rc = run(WF("  - call:\n"
                "      run:\n"
                "        workflow: {namespace: lib, name: nope, version: '1.0.0'}\n"),
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "configuration", 400, "/do/0/call");
    jv_free(rep);
}

/* ---- use.functions and use.extensions -------------------------------------------------------- */

Test(engine, use_functions_with_becomes_the_input)
{
    jv rep;
    int rc = run(HDR "use:\n"
                     "  functions:\n"
                     "    addOne:\n"
                     "      set: {result: '${ .value + 1 }'}\n"
                     "do:\n"
                     "  - c:\n"
                     "      call: addOne\n"
                     "      with:\n"
                     "        value: ${ .n }\n",
                 "{\"n\": 41}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"result\":42}");
    jv_free(rep);
}

Test(engine, use_functions_error_instance_is_the_calling_task)
{
    jv rep;
    int rc = run(HDR "use:\n"
                     "  functions:\n"
                     "    fail:\n"
                     "      raise:\n"
                     "        error: {type: '" ERR_PREFIX "runtime', status: 500, title: in function}\n"
                     "    badExpr:\n"
                     "      set: ${ .a.b }\n"
                     "do:\n"
                     "  - wrap:\n"
                     "      do:\n"
                     "        - c:\n"
                     "            call: fail\n",
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 500, "/do/0/wrap/do/0/c");
    jv_free(rep);
    rc = run(HDR "use:\n"
                 "  functions:\n"
                 "    badExpr:\n"
                 "      set: ${ .a.b }\n"
                 "do:\n"
                 "  - c:\n"
                 "      call: badExpr\n"
                 "      with: {a: text}\n",
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "expression", 400, "/do/0/c");
    jv_free(rep);
}

Test(engine, extension_mock_before_with_then_exit_skips_the_task)
{
    /* unmapped hosts are denied: if the call ran, it would fail */
    jv rep;
    int rc = run(HDR "use:\n"
                     "  extensions:\n"
                     "    - mockService:\n"
                     "        extend: call\n"
                     "        when: ($task.definition.with.endpoint.uri // \"\") | startswith(\"https://mocked\")\n"
                     "        before:\n"
                     "          - mockResponse:\n"
                     "              set:\n"
                     "                statusCode: 200\n"
                     "                content: {foo: {bar: baz}}\n"
                     "              then: exit\n"
                     "do:\n"
                     "  - callHttp:\n"
                     "      call: http\n"
                     "      with:\n"
                     "        method: get\n"
                     "        endpoint:\n"
                     "          uri: https://mocked.service.com/sample\n"
                     "  - next:\n"
                     "      set: ${ .content.foo }\n",
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"bar\":\"baz\"}");
    EXPECT_AT(rep, "trace.0.reference", "\"/do/0/callHttp\"");
    jv_free(rep);
}

Test(engine, extension_before_without_exit_and_after_run_for_effects)
{
    jv rep;
    int rc = run(HDR "use:\n"
                     "  extensions:\n"
                     "    - audit:\n"
                     "        extend: set\n"
                     "        before:\n"
                     "          - mark:\n"
                     "              set: {ignored: before}\n"
                     "        after:\n"
                     "          - log:\n"
                     "              set: {ignored: after}\n"
                     "              export:\n"
                     "                as: '${ {seen: (($context.seen // 0) + 1), last: .} }'\n"
                     "do:\n"
                     "  - s:\n"
                     "      set: {value: '${ .n * 2 }'}\n"
                     "  - t:\n"
                     "      set: {value: '${ .value }', ctx: '${ $context }'}\n",
                 "{\"n\": 4}", &rep);
    /* the body ran on the task's own input; the after list's output did not replace the task's;
     * its export did happen. The `after` of s saw s's output; t's after ran after t. */
    EXPECT_OUTPUT(rc, rep, "{\"value\":8,\"ctx\":{\"seen\":1,\"last\":{\"ignored\":\"after\"}}}");
    jv_free(rep);
}

/* ---- timeouts ------------------------------------------------------------------------------------ */

Test(engine, task_timeout_on_a_wait)
{
    jv rep;
    int rc = run(WF("  - outer:\n"
                    "      do:\n"
                    "        - w:\n"
                    "            wait: PT60S\n"
                    "            timeout:\n"
                    "              after: PT1S\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "timeout", 408, "/do/0/outer/do/0/w");
    jv_free(rep);
}

Test(engine, task_timeout_named_in_use_timeouts_is_caught_by_try)
{
    jv rep;
    int rc = run(HDR "use:\n"
                     "  timeouts:\n"
                     "    short:\n"
                     "      after: {seconds: 1}\n"
                     "do:\n"
                     "  - t:\n"
                     "      try:\n"
                     "        - w:\n"
                     "            wait: PT60S\n"
                     "            timeout: short\n"
                     "      catch:\n"
                     "        errors:\n"
                     "          with: {type: " ERR_PREFIX "timeout, status: 408}\n"
                     "        do:\n"
                     "          - late:\n"
                     "              set: {timedOut: '${ $error.instance }'}\n",
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"timedOut\":\"/do/0/t/try/0/w\"}");
    jv_free(rep);
}

Test(engine, workflow_timeout_faults_the_instance)
{
    jv rep;
    int rc = run(HDR "timeout:\n"
                     "  after: {seconds: 2}\n"
                     "do:\n"
                     "  - a:\n"
                     "      set: {started: true}\n"
                     "  - w:\n"
                     "      wait: {minutes: 10}\n"
                     "  - never:\n"
                     "      set: {reached: true}\n",
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "timeout", 408, NULL);
    cr_expect_eq(trace_count(rep, "/do/2/never", NULL), 0);
    jv_free(rep);
}

Test(engine, task_timeout_on_a_shell_command)
{
    jv rep;
    cv_runtime_set_time_scale(rt, 1.0);
    int rc = run(WF("  - sh:\n"
                    "      run:\n"
                    "        shell:\n"
                    "          command: 'sleep 20'\n"
                    "      timeout:\n"
                    "        after: {milliseconds: 200}\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "timeout", 408, "/do/0/sh");
    jv_free(rep);
}

/* ---- flow directives ------------------------------------------------------------------------------- */

Test(engine, then_end_from_a_nested_list_ends_the_workflow)
{
    jv rep;
    int rc = run(WF("  - outer:\n"
                    "      do:\n"
                    "        - inner:\n"
                    "            do:\n"
                    "              - a:\n"
                    "                  set: {at: a}\n"
                    "                  then: end\n"
                    "              - b:\n"
                    "                  set: {at: b}\n"
                    "        - c:\n"
                    "            set: {at: c}\n"
                    "  - d:\n"
                    "      set: {at: d}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"at\":\"a\"}");
    cr_expect_eq(trace_count(rep, "/do/0/outer/do/1/c", NULL), 0, "%s", D(rep));
    cr_expect_eq(trace_count(rep, "/do/1/d", NULL), 0, "%s", D(rep));
    jv_free(rep);
}

Test(engine, then_exit_finishes_only_the_current_list)
{
    jv rep;
    int rc = run(WF("  - outer:\n"
                    "      do:\n"
                    "        - a:\n"
                    "            set: {at: a}\n"
                    "            then: exit\n"
                    "        - b:\n"
                    "            set: {at: b}\n"
                    "  - c:\n"
                    "      set: {at: '${ .at + \"c\" }'}\n"
                    "      then: exit\n"
                    "  - d:\n"
                    "      set: {at: d}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"at\":\"ac\"}");
    cr_expect_eq(trace_count(rep, "/do/0/outer/do/1/b", NULL), 0);
    cr_expect_eq(trace_count(rep, "/do/2/d", NULL), 0);
    jv_free(rep);
}

Test(engine, then_goto_forward_skips_tasks)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: {v: [a]}\n"
                    "      then: c\n"
                    "  - b:\n"
                    "      set: {v: '${ .v + [\"b\"] }'}\n"
                    "  - c:\n"
                    "      set: {v: '${ .v + [\"c\"] }'}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"v\":[\"a\",\"c\"]}");
    jv_free(rep);
}

Test(engine, then_end_inside_try_and_for)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for: {in: '[1,2,3]'}\n"
                    "      do:\n"
                    "        - t:\n"
                    "            try:\n"
                    "              - s:\n"
                    "                  set: '${ {last: $item} }'\n"
                    "                  then: end\n"
                    "            catch: {}\n"
                    "  - after:\n"
                    "      set: {reached: true}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"last\":1}");
    jv_free(rep);
}

/* ---- if ----------------------------------------------------------------------------------------------- */

Test(engine, if_false_skips_and_keeps_the_raw_input)
{
    jv rep;
    int rc = run(WF("  - maybe:\n"
                    "      if: .go\n"
                    "      input:\n"
                    "        from: .inner\n"
                    "      set: {ran: true}\n"
                    "  - sure:\n"
                    "      if: ${ .go == false }\n"
                    "      set: '${ . + {second: true} }'\n"),
                 "{\"go\": false, \"inner\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"go\":false,\"inner\":1,\"second\":true}");
    EXPECT_AT(rep, "trace.0.status", "\"skipped\"");
    EXPECT_AT(rep, "trace.1.status", "\"completed\"");
    jv_free(rep);
}

/* ---- unsupported tasks, secrets, error paths ------------------------------------------------------------ */

Test(engine, unsupported_tasks_raise_runtime_501)
{
    jv rep;
    int rc = run(WF("  - l:\n"
                    "      listen:\n"
                    "        to:\n"
                    "          one:\n"
                    "            with: {type: com.example.x}\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 501, "/do/0/l");
    jv_free(rep);
    rc = run(WF("  - c:\n"
                "      run:\n"
                "        container:\n"
                "          image: hello-world\n"),
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 501, "/do/0/c");
    jv_free(rep);
    rc = run(WF("  - g:\n"
                "      call: grpc\n"
                "      with:\n"
                "        proto: {endpoint: 'http://example.com/x.proto'}\n"
                "        service: {name: S, host: example.com}\n"
                "        method: M\n"),
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "runtime", 501, "/do/0/g");
    jv_free(rep);
}

Test(engine, secrets_only_declared_names_are_visible)
{
    cr_assert_eq(cv_runtime_set_secrets(rt, J("{\"db\": {\"password\": \"p\"}, \"other\": 1}")), CV_OK);
    jv rep;
    int rc = run(HDR "use:\n"
                     "  secrets: [db]\n"
                     "do:\n"
                     "  - s:\n"
                     "      set: ${ $secrets }\n",
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"db\":{\"password\":\"p\"}}");
    jv_free(rep);
    rc = run(WF("  - s:\n"
                "      set: ${ $secrets }\n"),
             NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{}");
    jv_free(rep);
}

Test(engine, secrets_declared_but_missing_fault_with_403)
{
    cr_assert_eq(cv_runtime_set_secrets(rt, J("{\"db\": 1}")), CV_OK);
    jv rep;
    int rc = run(HDR "use:\n"
                     "  secrets: [db, apiKey]\n"
                     "do:\n"
                     "  - s:\n"
                     "      set: {ran: true}\n",
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "authorization", 403, NULL);
    cr_expect_eq(trace_count(rep, "/do/0/s", NULL), 0);
    jv_free(rep);
}

Test(engine, expression_failing_at_run_time_is_an_expression_error)
{
    jv rep;
    int rc = run(WF("  - ok:\n"
                    "      set: {a: text}\n"
                    "  - bad:\n"
                    "      set: ${ .a.b }\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "expression", 400, "/do/1/bad");
    jv d = P(rep, "error.detail");
    cr_expect(jv_get_kind(d) == JV_KIND_STRING && strstr(jv_string_value(d), "Cannot index"), "%s", D(d));
    jv_free(d);
    EXPECT_AT(rep, "trace.1.status", "\"faulted\"");
    jv_free(rep);
    /* in a switch `when`, an `if`, an error() call */
    rc = run(WF("  - sw:\n"
                "      switch:\n"
                "        - x:\n"
                "            when: .a + 1\n"
                "            then: end\n"),
             "{\"a\": \"s\"}", &rep);
    EXPECT_FAULT(rc, rep, "expression", 400, "/do/0/sw");
    jv_free(rep);
    rc = run(WF("  - s:\n"
                "      if: error(\"nope\")\n"
                "      set: {ran: true}\n"),
             NULL, &rep);
    EXPECT_FAULT(rc, rep, "expression", 400, "/do/0/s");
    jv_free(rep);
}

Test(engine, report_shape)
{
    jv rep;
    int rc = run(WF("  - s:\n"
                    "      set: {a: 1}\n"),
                 NULL, &rep);
    cr_expect_eq(rc, CV_OK);
    jv id = P(rep, "id");
    cr_expect(jv_get_kind(id) == JV_KIND_STRING && strlen(jv_string_value(id)) == 36, "%s", D(rep));
    jv_free(id);
    EXPECT_AT(rep, "error", "null");
    EXPECT_AT(rep, "trace", "[{\"name\":\"s\",\"reference\":\"/do/0/s\",\"status\":\"completed\",\"output\":{\"a\":1}}]");
    jv_free(rep);
    /* the trace is empty when tracing is off */
    cv_runtime_set_trace(rt, 0);
    rc = run(WF("  - s:\n"
                "      set: {a: 1}\n"),
             NULL, &rep);
    EXPECT_AT(rep, "trace", "[]");
    jv_free(rep);
}

/* ---- call http against the stub ---------------------------------------------------------------------------- */

static pid_t stub_pid;
static char stub_dir[64];

static void stub_setup(void)
{
    rt_setup();
    char port_path[128];
    snprintf(stub_dir, sizeof stub_dir, "/tmp/cv-engine-stub-XXXXXX");
    cr_assert_not_null(mkdtemp(stub_dir));
    snprintf(port_path, sizeof port_path, "%s/port", stub_dir);
    stub_pid = fork();
    cr_assert(stub_pid >= 0);
    if (stub_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execlp("python3", "python3", "tests/stub/stub_server.py", "--port", "0", "--port-file", port_path,
               (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int i = 0; i < 500 && port <= 0; i++) { /* at most 10 s */
        FILE *f = fopen(port_path, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port <= 0)
            usleep(20000);
    }
    cr_assert(port > 0, "the stub did not start within 10 s");
    char spec[64];
    snprintf(spec, sizeof spec, "*=127.0.0.1:%d", port);
    cr_assert_eq(cv_runtime_map_host(rt, spec), CV_OK);
}

static void stub_teardown(void)
{
    if (stub_pid > 0) {
        kill(stub_pid, SIGTERM);
        waitpid(stub_pid, NULL, 0);
        stub_pid = 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", stub_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", stub_dir);
    rt_teardown();
}

TestSuite(engine_http, .init = stub_setup, .fini = stub_teardown, .timeout = 60);

Test(engine_http, call_http_get_content)
{
    jv rep;
    int rc = run(WF("  - get:\n"
                    "      call: http\n"
                    "      with:\n"
                    "        method: get\n"
                    "        endpoint: https://petstore.swagger.io/v2/pet/{id}\n"
                    "      output:\n"
                    "        as: .name\n"),
                 "{\"id\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "\"doggie\"");
    jv_free(rep);
}

Test(engine_http, call_http_error_is_communication_and_catchable)
{
    jv rep;
    int rc = run(WF("  - get:\n"
                    "      call: http\n"
                    "      with:\n"
                    "        method: get\n"
                    "        endpoint: https://petstore.swagger.io/v2/pet/999\n"),
                 NULL, &rep);
    EXPECT_FAULT(rc, rep, "communication", 404, "/do/0/get");
    jv title = P(rep, "error.title");
    cr_expect(jv_get_kind(title) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(title)) > 0, "%s",
              D(rep));
    jv_free(title);
    jv_free(rep);
    rc = run(WF("  - t:\n"
                "      try:\n"
                "        - get:\n"
                "            call: http\n"
                "            with:\n"
                "              method: get\n"
                "              endpoint: https://petstore.swagger.io/v2/pet/999\n"
                "      catch:\n"
                "        errors:\n"
                "          with:\n"
                "            type: https://serverlessworkflow.io/dsl/errors/types/communication\n"
                "            status: 404\n"
                "        do:\n"
                "          - fallback:\n"
                "              set: {found: false}\n"),
             NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"found\":false}");
    jv_free(rep);
}

Test(engine_http, call_http_retry_until_the_service_recovers)
{
    /* /v2/pet/503 answers 503 twice, then 200 */
    jv rep;
    int rc = run(WF("  - t:\n"
                    "      try:\n"
                    "        - get:\n"
                    "            call: http\n"
                    "            with:\n"
                    "              method: get\n"
                    "              endpoint: https://petstore.swagger.io/v2/pet/503\n"
                    "      catch:\n"
                    "        errors:\n"
                    "          with: {status: 503}\n"
                    "        retry:\n"
                    "          delay: PT1S\n"
                    "          limit: {attempt: {count: 5}}\n"),
                 NULL, &rep);
    cr_expect_eq(rc, CV_OK, "%s", D(rep));
    cr_expect_eq(trace_count(rep, "/do/0/t/try/0/get", "faulted"), 2, "%s", D(rep));
    cr_expect_eq(trace_count(rep, "/do/0/t/try/0/get", "completed"), 1, "%s", D(rep));
    jv_free(rep);
}
