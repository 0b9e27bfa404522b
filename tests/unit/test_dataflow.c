/*
 * test_dataflow.c — the data-flow stages of tasks and workflows through the
 * public API: input.from, output.as, export.as (replacing $context), schemas
 * at each stage, the runtime arguments ($input, $output, $context, $task,
 * $workflow, $runtime, $secrets) at each site, and strict versus loose
 * expression modes (IMPLEMENTING.md 1.4, 1.5, 4.1).
 */
#include "conveyor.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR "document: {dsl: '1.0.0', namespace: test, name: flow, version: '0.1.0'}\n"
#define WF(tasks) HDR "do:\n" tasks
#define ERR_PREFIX "https://serverlessworkflow.io/spec/1.0.0/errors/"

static cv_runtime *rt;

static void setup(void)
{
    cr_assert_eq(cv_runtime_new(&rt), CV_OK);
    cv_runtime_set_trace(rt, 1);
    cv_runtime_set_time_scale(rt, 0.001);
    cv_runtime_deny_unmapped(rt, 1);
}

static void teardown(void)
{
    cv_runtime_free(rt);
    rt = NULL;
}

TestSuite(dataflow, .init = setup, .fini = teardown, .timeout = 30);

/* ---- helpers ---------------------------------------------------------------- */

static jv J(const char *text)
{
    jv v = jv_parse(text);
    cr_assert(jv_is_valid(v), "bad JSON in test: %s", text);
    return v;
}

static char dumpbuf[8][4096];
static int dumpi;
static const char *D(jv v /* borrowed */)
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

static cv_workflow *load(const char *yaml)
{
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(yaml, strlen(yaml), "flow.yaml", &wf, &diags);
    cr_assert_eq(rc, CV_OK, "document did not load (%d): %s\n%s", rc, D(diags), yaml);
    jv_free(diags);
    return wf;
}

static int run(const char *yaml, const char *input, jv *rep)
{
    cv_workflow *wf = load(yaml);
    int rc = cv_run(rt, wf, J(input ? input : "{}"), rep);
    cv_workflow_free(wf);
    return rc;
}

/* A dotted path into v (borrowed). Missing → null. */
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
        } else if (jv_get_kind(cur) == JV_KIND_ARRAY && key[0] >= '0' && key[0] <= '9' &&
                   atoi(key) < jv_array_length(jv_copy(cur))) {
            cur = jv_array_get(cur, atoi(key));
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

#define EXPECT_OUTPUT(rc, rep, want)                                          \
    do {                                                                      \
        cr_expect_eq(rc, CV_OK, "run did not complete (%d): %s", rc, D(rep)); \
        EXPECT_AT(rep, "output", want);                                       \
    } while (0)

#define EXPECT_FAULT(rc, rep, type, status)                                     \
    do {                                                                        \
        cr_expect_eq(rc, CV_EFAULT, "run did not fault (%d): %s", rc, D(rep));  \
        EXPECT_AT(rep, "status", "\"faulted\"");                                \
        EXPECT_AT(rep, "error.type", "\"" ERR_PREFIX type "\"");               \
        EXPECT_AT(rep, "error.status", #status);                                \
    } while (0)

/* ---- input.from ------------------------------------------------------------------ */

Test(dataflow, input_from_string_with_and_without_braces)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      input:\n"
                    "        from: .user\n"
                    "      set: ${ . }\n"
                    "  - b:\n"
                    "      input:\n"
                    "        from: ${ .name }\n"
                    "      set: ${ . }\n"),
                 "{\"user\": {\"name\": \"ann\"}, \"other\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "\"ann\"");
    EXPECT_AT(rep, "trace.0.output", "{\"name\":\"ann\"}");
    jv_free(rep);
}

Test(dataflow, input_from_object_template)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      input:\n"
                    "        from:\n"
                    "          who: ${ .user.name }\n"
                    "          fixed: literal\n"
                    "          list: ['${ .n }', 2]\n"
                    "      set: ${ . }\n"),
                 "{\"user\": {\"name\": \"ann\"}, \"n\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"who\":\"ann\",\"fixed\":\"literal\",\"list\":[1,2]}");
    jv_free(rep);
}

Test(dataflow, input_from_sets_input_but_task_input_is_raw)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      input:\n"
                    "        from: .inner\n"
                    "      set:\n"
                    "        input: ${ $input }\n"
                    "        dot: ${ . }\n"
                    "        raw: ${ $task.input }\n"),
                 "{\"inner\": 5, \"x\": 0}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"input\":5,\"dot\":5,\"raw\":{\"inner\":5,\"x\":0}}");
    jv_free(rep);
}

/* ---- output.as --------------------------------------------------------------------- */

Test(dataflow, output_as_string_and_object)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: {x: 1, y: 2}\n"
                    "      output:\n"
                    "        as: .x\n"
                    "  - b:\n"
                    "      set: {v: '${ . }'}\n"
                    "      output:\n"
                    "        as:\n"
                    "          wrapped: ${ .v }\n"
                    "          input: ${ $input }\n"
                    "          const: true\n"),
                 NULL, &rep);
    /* the next task's raw input is the previous transformed output */
    EXPECT_OUTPUT(rc, rep, "{\"wrapped\":1,\"input\":1,\"const\":true}");
    EXPECT_AT(rep, "trace.0.output", "1");
    jv_free(rep);
}

/* ---- export.as and $context ---------------------------------------------------------- */

Test(dataflow, initial_context_is_an_empty_object)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: ${ $context }\n"),
                 "{\"x\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{}");
    jv_free(rep);
}

Test(dataflow, export_as_replaces_the_context)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: {v: 1}\n"
                    "      export:\n"
                    "        as: '{first: .v}'\n"
                    "  - b:\n"
                    "      set: {v: 2, seen: '${ $context }'}\n"
                    "      export:\n"
                    "        as:\n"
                    "          second: ${ .v }\n"
                    "  - c:\n"
                    "      set: ${ $context }\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"second\":2}");
    EXPECT_AT(rep, "trace.1.output.seen", "{\"first\":1}");
    jv_free(rep);
}

Test(dataflow, export_as_sees_transformed_output_input_and_previous_context)
{
    jv rep;
    int rc = run(WF("  - seed:\n"
                    "      set: {n: 1}\n"
                    "      export:\n"
                    "        as: '{prev: true}'\n"
                    "  - a:\n"
                    "      input:\n"
                    "        from: '{m: .n}'\n"
                    "      set: {raw: 10}\n"
                    "      output:\n"
                    "        as: '{out: .raw}'\n"
                    "      export:\n"
                    "        as: '{dot: ., output: $output, input: $input, before: $context}'\n"
                    "  - c:\n"
                    "      set: ${ $context }\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep,
                  "{\"dot\":{\"out\":10},\"output\":{\"out\":10},\"input\":{\"m\":1},\"before\":{\"prev\":true}}");
    jv_free(rep);
}

Test(dataflow, export_inside_nested_lists_is_global)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for: {in: '[1,2,3]'}\n"
                    "      do:\n"
                    "        - add:\n"
                    "            set: {n: '${ $item }'}\n"
                    "            export:\n"
                    "              as: '{sum: (($context.sum // 0) + .n)}'\n"
                    "  - read:\n"
                    "      set: ${ $context.sum }\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "6");
    jv_free(rep);
}

/* ---- runtime arguments ---------------------------------------------------------------- */

Test(dataflow, task_descriptor)
{
    jv rep;
    int rc = run(WF("  - outer:\n"
                    "      do:\n"
                    "        - probe:\n"
                    "            set:\n"
                    "              name: ${ $task.name }\n"
                    "              reference: ${ $task.reference }\n"
                    "              definition: ${ $task.definition.set.name }\n"
                    "              input: ${ $task.input }\n"
                    "              startedAt: ${ $task.startedAt | keys }\n"
                    "              epoch: ${ $task.startedAt.epoch.seconds > 1600000000 }\n"),
                 "{\"i\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep,
                  "{\"name\":\"probe\",\"reference\":\"/do/0/outer/do/0/probe\",\"definition\":\"${ $task.name }\","
                  "\"input\":{\"i\":1},\"startedAt\":[\"epoch\",\"iso8601\"],\"epoch\":true}");
    jv_free(rep);
}

Test(dataflow, workflow_and_runtime_descriptors)
{
    jv rep;
    int rc = run(HDR "input:\n"
                     "  from: .payload\n"
                     "do:\n"
                     "  - probe:\n"
                     "      set:\n"
                     "        input: ${ $workflow.input }\n"
                     "        id: ${ $workflow.id }\n"
                     "        name: ${ $workflow.definition.document.name }\n"
                     "        started: ${ $workflow.startedAt.iso8601 | type }\n"
                     "        runtime: ${ $runtime.name }\n"
                     "        version: ${ $runtime.version }\n"
                     "        dot: ${ . }\n",
                 "{\"payload\": {\"p\": 1}}", &rep);
    cr_expect_eq(rc, CV_OK, "%s", D(rep));
    EXPECT_AT(rep, "output.input", "{\"payload\":{\"p\":1}}");
    EXPECT_AT(rep, "output.dot", "{\"p\":1}");
    EXPECT_AT(rep, "output.name", "\"flow\"");
    EXPECT_AT(rep, "output.started", "\"string\"");
    EXPECT_AT(rep, "output.runtime", "\"conveyor\"");
    EXPECT_AT(rep, "output.version", "\"" CV_VERSION "\"");
    jv id = P(rep, "id"), wid = P(rep, "output.id");
    cr_expect(jv_equal(id, wid), "$workflow.id must be the instance id: %s", D(rep));
    jv_free(rep);
}

Test(dataflow, task_descriptor_outside_a_task_is_null)
{
    /* the workflow's output.as is not a task site: $task is null there */
    jv rep;
    int rc = run(HDR "output:\n"
                     "  as: '{t: $task, c: $context}'\n"
                     "do:\n"
                     "  - a:\n"
                     "      set: {x: 1}\n"
                     "      export: {as: '{k: 1}'}\n",
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"t\":null,\"c\":{\"k\":1}}");
    jv_free(rep);
}

Test(dataflow, scope_variables_reach_nested_sites)
{
    jv rep;
    int rc = run(WF("  - loop:\n"
                    "      for: {each: it, at: ix, in: '[\"a\"]'}\n"
                    "      do:\n"
                    "        - inner:\n"
                    "            input:\n"
                    "              from: '{from: $it}'\n"
                    "            set: {v: '${ .from + ($ix | tostring) }'}\n"
                    "            output:\n"
                    "              as: '. + {as: $it}'\n"
                    "  - t:\n"
                    "      try:\n"
                    "        - r:\n"
                    "            raise:\n"
                    "              error: {type: '" ERR_PREFIX "runtime', status: 500}\n"
                    "      catch:\n"
                    "        as: failure\n"
                    "        do:\n"
                    "          - deep:\n"
                    "              do:\n"
                    "                - s:\n"
                    "                    set: {prev: '${ . }', status: '${ $failure.status }'}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"prev\":{\"v\":\"a0\",\"as\":\"a\"},\"status\":500}");
    jv_free(rep);
}

Test(dataflow, subflow_has_its_own_context)
{
    cr_assert_eq(cv_runtime_add_workflow(rt, load("document: {dsl: '1.0.0', namespace: lib, name: child, version: "
                                                  "'1.0.0'}\n"
                                                  "do:\n"
                                                  "  - s:\n"
                                                  "      set: {childSaw: '${ $context }'}\n"
                                                  "      export: {as: '{child: true}'}\n")),
                 CV_OK);
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set: {p: 1}\n"
                    "      export: {as: '{parent: true}'}\n"
                    "  - c:\n"
                    "      run:\n"
                    "        workflow: {namespace: lib, name: child, version: '1.0.0'}\n"
                    "  - d:\n"
                    "      set: {child: '${ .childSaw }', parent: '${ $context }'}\n"),
                 NULL, &rep);
    EXPECT_OUTPUT(rc, rep, "{\"child\":{},\"parent\":{\"parent\":true}}");
    jv_free(rep);
}

/* ---- schemas ---------------------------------------------------------------------------- */

Test(dataflow, task_input_schema_validates_the_raw_input)
{
    const char *doc = WF("  - a:\n"
                         "      input:\n"
                         "        schema:\n"
                         "          format: json\n"
                         "          document:\n"
                         "            type: object\n"
                         "            required: [n]\n"
                         "            properties:\n"
                         "              n: {type: integer, minimum: 1}\n"
                         "        from: '{n: (.n + 100)}'\n"
                         "      set: ${ .n }\n");
    jv rep;
    int rc = run(doc, "{\"n\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "101");
    jv_free(rep);
    rc = run(doc, "{\"n\": 0}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    EXPECT_AT(rep, "error.instance", "\"/do/0/a\"");
    jv_free(rep);
    rc = run(doc, "{\"m\": 3}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    jv_free(rep);
}

Test(dataflow, task_output_schema_validates_the_transformed_output)
{
    const char *doc = WF("  - a:\n"
                         "      set: {m: '${ .n }'}\n"
                         "      output:\n"
                         "        as: .m\n"
                         "        schema:\n"
                         "          document: {type: string}\n");
    jv rep;
    int rc = run(doc, "{\"n\": \"ok\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "\"ok\"");
    jv_free(rep);
    rc = run(doc, "{\"n\": 3}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    EXPECT_AT(rep, "error.instance", "\"/do/0/a\"");
    jv_free(rep);
}

Test(dataflow, task_export_schema_validates_the_new_context)
{
    const char *doc = WF("  - a:\n"
                         "      set: {m: '${ .n }'}\n"
                         "      export:\n"
                         "        as: '{m: .m}'\n"
                         "        schema:\n"
                         "          document:\n"
                         "            type: object\n"
                         "            properties:\n"
                         "              m: {type: integer}\n");
    jv rep;
    int rc = run(doc, "{\"n\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"m\":1}");
    jv_free(rep);
    rc = run(doc, "{\"n\": \"x\"}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    jv_free(rep);
}

Test(dataflow, workflow_input_schema_from_and_output_as)
{
    const char *doc = HDR "input:\n"
                          "  schema:\n"
                          "    document:\n"
                          "      type: object\n"
                          "      required: [order]\n"
                          "  from: .order\n"
                          "output:\n"
                          "  as: '{total: (.qty * .price), raw: $workflow.input.order.qty}'\n"
                          "  schema:\n"
                          "    document:\n"
                          "      type: object\n"
                          "      properties:\n"
                          "        total: {type: number, minimum: 0}\n"
                          "do:\n"
                          "  - a:\n"
                          "      set: ${ . }\n";
    jv rep;
    int rc = run(doc, "{\"order\": {\"qty\": 2, \"price\": 3}}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"total\":6,\"raw\":2}");
    jv_free(rep);
    rc = run(doc, "{\"nope\": 1}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    EXPECT_AT(rep, "trace", "[]");
    jv_free(rep);
    rc = run(doc, "{\"order\": {\"qty\": -2, \"price\": 3}}", &rep);
    EXPECT_FAULT(rc, rep, "validation", 400);
    jv_free(rep);
}

Test(dataflow, workflow_input_from_expression_error)
{
    jv rep;
    int rc = run(HDR "input:\n"
                     "  from: .a.b\n"
                     "do:\n"
                     "  - a:\n"
                     "      set: ${ . }\n",
                 "{\"a\": \"text\"}", &rep);
    EXPECT_FAULT(rc, rep, "expression", 400);
    jv_free(rep);
}

/* ---- strict and loose modes ------------------------------------------------------------------ */

Test(dataflow, strict_mode_keeps_unwrapped_strings_literal)
{
    jv rep;
    int rc = run(WF("  - a:\n"
                    "      set:\n"
                    "        path: .x\n"
                    "        var: $input\n"
                    "        embedded: Hello ${ .x }!\n"
                    "        error: $error\n"
                    "        wrapped: ${ .x }\n"),
                 "{\"x\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep,
                  "{\"path\":\".x\",\"var\":\"$input\",\"embedded\":\"Hello ${ .x }!\",\"error\":\"$error\","
                  "\"wrapped\":1}");
    jv_free(rep);
}

Test(dataflow, loose_mode_evaluates_unwrapped_expressions)
{
    jv rep;
    int rc = run(HDR "evaluate:\n"
                     "  language: jq\n"
                     "  mode: loose\n"
                     "do:\n"
                     "  - a:\n"
                     "      set:\n"
                     "        path: .x\n"
                     "        var: $input.x\n"
                     "        wrapped: ${ .x + 1 }\n"
                     "        plain: hello world\n",
                 "{\"x\": 1}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"path\":1,\"var\":1,\"wrapped\":2,\"plain\":\"hello world\"}");
    jv_free(rep);
}

/* dsl-reference `evaluate.mode`: "loose: evaluates any value provided. If the
 * evaluation fails, it results in a string with the expression as its content." */
Test(dataflow, loose_mode_failed_evaluation_keeps_the_literal)
{
    jv rep;
    int rc = run(HDR "evaluate:\n"
                     "  mode: loose\n"
                     "do:\n"
                     "  - a:\n"
                     "      set:\n"
                     "        ok: .x\n"
                     "        fails: .x.y\n",
                 "{\"x\": \"text\"}", &rep);
    EXPECT_OUTPUT(rc, rep, "{\"ok\":\"text\",\"fails\":\".x.y\"}");
    jv_free(rep);
}

Test(dataflow, loose_mode_string_that_does_not_compile_stays_literal)
{
    const char *doc = HDR "evaluate:\n"
                          "  mode: loose\n"
                          "do:\n"
                          "  - a:\n"
                          "      set:\n"
                          "        price: $5 each\n"
                          "        dots: ... and more\n";
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(doc, strlen(doc), "loose.yaml", &wf, &diags);
    cr_expect_eq(rc, CV_OK, "a loose-mode string that is not valid jq must stay a literal, not fail the load: %s",
                 D(diags));
    jv_free(diags);
    if (rc == CV_OK) {
        jv rep;
        rc = cv_run(rt, wf, jv_object(), &rep);
        EXPECT_OUTPUT(rc, rep, "{\"price\":\"$5 each\",\"dots\":\"... and more\"}");
        jv_free(rep);
    }
    cv_workflow_free(wf);
}
