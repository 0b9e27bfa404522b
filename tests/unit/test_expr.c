/*
 * test_expr.c — the expression bundle (src/expr/expr.h) directly: the fast
 * path gives exactly jq's results, evaluation errors are expression error
 * descriptors, the sandbox refuses what could leak the host or hang libjq,
 * compile errors name the right expression in a bundle, and one set is safe
 * to evaluate from many threads at once.
 *
 * To compare the fast path with jq, each text is also registered wrapped in
 * parentheses, which the fast path never takes, so the same expression runs
 * through libjq.
 */
#include "conveyor.h"
#include "expr/expr.h"

#include <criterion/criterion.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

static jv J(const char *text)
{
    jv v = jv_parse(text);
    cr_assert(jv_is_valid(v), "bad JSON in test: %s", text);
    return v;
}

static char dumpbuf[8][2048];
static int dumpi;
static const char *D(jv v /* borrowed */)
{
    char *b = dumpbuf[dumpi++ % 8];
    if (!jv_is_valid(v)) {
        snprintf(b, 2048, "<invalid>");
        return b;
    }
    jv s = jv_dump_string(jv_copy(v), JV_PRINT_SORTED);
    snprintf(b, 2048, "%s", jv_string_value(s));
    jv_free(s);
    return b;
}

/* An evaluation environment with explicit values (no materialize callback). */
struct env {
    struct cv_evalenv e;
};

static void env_init(struct env *x, const char *context, const char *scope)
{
    for (int i = 0; i < CV_VAR_COUNT; i++)
        x->e.vars[i] = jv_null();
    jv_free(x->e.vars[CV_VAR_CONTEXT]);
    x->e.vars[CV_VAR_CONTEXT] = J(context ? context : "{}");
    jv_free(x->e.vars[CV_VAR_INPUT]);
    x->e.vars[CV_VAR_INPUT] = J("{\"in\": [1, 2]}");
    jv_free(x->e.vars[CV_VAR_SECRETS]);
    x->e.vars[CV_VAR_SECRETS] = J("{\"s\": \"hidden\"}");
    x->e.scope = J(scope ? scope : "{}");
    x->e.materialize = NULL;
    x->e.ud = NULL;
}

static void env_cleanup(struct env *x)
{
    for (int i = 0; i < CV_VAR_COUNT; i++)
        jv_free(x->e.vars[i]);
    jv_free(x->e.scope);
}

/* Registers `text` (must be accepted) and returns its index. */
static int add(struct cv_exprset *s, const char *text, const char *scopevars, const char *pointer)
{
    jv errors = jv_array();
    jv sv = scopevars ? J(scopevars) : jv_null();
    int idx = cv__exprset_add(s, text, sv, pointer ? pointer : "/x", &errors);
    cr_assert_geq(idx, 0, "`%s` was refused: %s", text, D(errors));
    jv_free(sv);
    jv_free(errors);
    return idx;
}

/* Registers `text` and expects a refusal; returns the message list. */
static jv refuse(const char *text)
{
    struct cv_exprset *s = cv__exprset_new();
    jv errors = jv_array();
    int idx = cv__exprset_add(s, text, jv_null(), "/refused", &errors);
    cr_expect_lt(idx, 0, "`%s` must be refused at registration", text);
    if (idx < 0)
        cr_expect_gt(jv_array_length(jv_copy(errors)), 0, "a refusal of `%s` needs a message", text);
    cv__exprset_free(s);
    return errors;
}

static void compile_ok(struct cv_exprset *s)
{
    jv errors = jv_array();
    int rc = cv__exprset_compile(s, &errors);
    cr_assert_eq(rc, 0, "bundle did not compile: %s", D(errors));
    jv_free(errors);
}

/* Evaluates one registered expression on `dot` (JSON text). */
static int eval(struct cv_exprset *s, int idx, const char *dot, struct env *x, jv *out)
{
    return cv__expr_eval(s, idx, J(dot), &x->e, out);
}

static jv field(jv v /* borrowed */, const char *k)
{
    if (jv_get_kind(v) != JV_KIND_OBJECT)
        return jv_null();
    jv r = jv_object_get(jv_copy(v), jv_string(k));
    if (!jv_is_valid(r)) {
        jv_free(r);
        return jv_null();
    }
    return r;
}

/* Same error type and status (the details quote the expression text). */
static int same_error_kind(jv a /* borrowed */, jv b /* borrowed */)
{
    return jv_equal(field(a, "type"), field(b, "type")) && jv_equal(field(a, "status"), field(b, "status"));
}

/* ---- fast path equals jq ---------------------------------------------------------------- */

static const char *const fast_texts[] = {
    ".",          ".a",         ".a.b",       ".a.b[0]",    ".a.b[1].c", ".[0]",      ".arr[1]",
    ".arr[5]",    ".missing",   ".missing.x", ".missing[3]", ".n.x.y",    "$context",  "$context.k",
    "$context.k.deep", "$input.in[1]", "$secrets.s", "$item", "$item.name", "$item.tags[0]", "1",
    "-2.5",       "1e2",        "\"str\"",    "true",       "false",     "null",      "0",
};

static const char *const dots[] = {
    "{\"a\": {\"b\": [1, {\"c\": 2}]}, \"arr\": [10, 20], \"n\": null}",
    "[\"x\", \"y\"]",
    "null",
    "{\"a\": null, \"arr\": []}",
};

Test(expr, fast_path_results_equal_jq_results)
{
    struct cv_exprset *s = cv__exprset_new();
    size_t n = sizeof fast_texts / sizeof *fast_texts;
    int fast_idx[64], jq_idx[64];
    for (size_t i = 0; i < n; i++) {
        char wrapped[128];
        snprintf(wrapped, sizeof wrapped, "(%s)", fast_texts[i]);
        fast_idx[i] = add(s, fast_texts[i], "[\"item\"]", NULL);
        jq_idx[i] = add(s, wrapped, "[\"item\"]", NULL);
    }
    cr_expect_eq(cv__exprset_fast_count(s), (int)n, "every plain text should take the fast path");
    compile_ok(s);
    struct env x;
    env_init(&x, "{\"k\": {\"deep\": true}}", "{\"item\": {\"name\": \"it\", \"tags\": [\"t0\"]}}");
    for (size_t d = 0; d < sizeof dots / sizeof *dots; d++) {
        for (size_t i = 0; i < n; i++) {
            jv a, b;
            int ra = eval(s, fast_idx[i], dots[d], &x, &a);
            int rb = eval(s, jq_idx[i], dots[d], &x, &b);
            cr_expect_eq(ra, rb, "`%s` on %s: fast rc %d, jq rc %d (%s vs %s)", fast_texts[i], dots[d], ra, rb,
                         D(a), D(b));
            if (ra == 0 && rb == 0)
                cr_expect(jv_equal(jv_copy(a), jv_copy(b)), "`%s` on %s: fast %s, jq %s", fast_texts[i],
                          dots[d], D(a), D(b));
            else if (ra && rb)
                cr_expect(same_error_kind(a, b), "`%s` on %s: %s vs %s", fast_texts[i], dots[d], D(a), D(b));
            jv_free(a);
            jv_free(b);
        }
    }
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* One binary operator between fast operands is also evaluated without jq
 * (src/expr/expr.c eval_binop); every case must equal jq's own result, or
 * defer to jq where jq raises an error. The parenthesised twin never takes
 * the fast path. */
static const char *const binop_texts[] = {
    ".a + 1",        ".a - 1",        ".a * 3",         ".a / 4",          ".a / 0",
    ".s + \"x\"",  ".s + 1",        ".arr + [3]",     ".arr + .arr",     ".o + {\"z\": 1}",
    ".o + .o2",      ".n + 1",        "1 + .n",         ".missing + .a",   ".s - 1",
    ".arr - [1]",    ".s * 2",        ".s / \",\"",   ".t + 1",          ".o * .o2",
    ".a == 2",       ".a != 2",       ".s == \"abc\"", ".arr == [1, 2]", ".o == .o",
    ".a < 3",        ".a <= 2",       ".a > 2",         ".a >= 3",         ".s < .a",
    ".arr > .o",     "null < false",  ".t and .a",      ".n and .t",       ".n or .f",
    ".f or .a",      "$context.k == true", "$item.name + \"!\"", "$item.tags + [\"t1\"]",
    ".a.b + 1",      ".s.x == 1",     ".colors + [\"red\"]", "1e-5 + .a",  ".a - -1",
};

static const char *const binop_dots[] = {
    ("{\"a\": 2, \"s\": \"abc\", \"arr\": [1, 2], \"o\": {\"x\": 1}, \"o2\": {\"x\": 2, \"y\": 3}, "
     "\"n\": null, \"t\": true, \"f\": false}"),
    "{\"a\": 2.5, \"s\": \"\", \"arr\": [], \"o\": {}, \"o2\": {}, \"colors\": [\"blue\"]}",
    "null",
    "[1]",
};

Test(expr, fast_binary_operators_equal_jq)
{
    struct cv_exprset *s = cv__exprset_new();
    size_t n = sizeof binop_texts / sizeof *binop_texts;
    int fast_idx[64], jq_idx[64];
    for (size_t i = 0; i < n; i++) {
        char wrapped[128];
        snprintf(wrapped, sizeof wrapped, "(%s)", binop_texts[i]);
        fast_idx[i] = add(s, binop_texts[i], "[\"item\"]", NULL);
        jq_idx[i] = add(s, wrapped, "[\"item\"]", NULL);
    }
    cr_expect_eq(cv__exprset_fast_count(s), (int)n, "every plain text should take the fast path");
    compile_ok(s);
    struct env x;
    env_init(&x, "{\"k\": true}", "{\"item\": {\"name\": \"it\", \"tags\": [\"t0\"]}}");
    for (size_t d = 0; d < sizeof binop_dots / sizeof *binop_dots; d++) {
        for (size_t i = 0; i < n; i++) {
            jv a, b;
            int ra = eval(s, fast_idx[i], binop_dots[d], &x, &a);
            int rb = eval(s, jq_idx[i], binop_dots[d], &x, &b);
            cr_expect_eq(ra, rb, "`%s` on %s: fast rc %d, jq rc %d (%s vs %s)", binop_texts[i], binop_dots[d], ra,
                         rb, D(a), D(b));
            if (ra == 0 && rb == 0)
                cr_expect(jv_equal(jv_copy(a), jv_copy(b)), "`%s` on %s: fast %s, jq %s", binop_texts[i],
                          binop_dots[d], D(a), D(b));
            else if (ra && rb)
                cr_expect(same_error_kind(a, b), "`%s` on %s: %s vs %s", binop_texts[i], binop_dots[d], D(a),
                          D(b));
            jv_free(a);
            jv_free(b);
        }
    }
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* What must NOT take the fast path: anything with more than one operator,
 * pipes, alternatives, calls. */
Test(expr, compound_expressions_go_to_jq)
{
    static const char *const texts[] = {
        ".a + 1 + 2", ".a | length", ". // 1",   ".a+1",    "(.a)",  ".a == 1 and .b == 2",
        "not",        ".a?",         "[.a, .b]", "{a: 1}",  ".a as $x | $x", "\"x\\(.a)\"",
    };
    struct cv_exprset *s = cv__exprset_new();
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        add(s, texts[i], "[]", NULL);
    cr_expect_eq(cv__exprset_fast_count(s), 0, "none of these is a single fast operation");
    compile_ok(s);
    cv__exprset_free(s);
}

/* A scope variable named like a runtime argument (for.each: input, catch.as:
 * context) shadows it in jq, because the bundle binds scope variables last.
 * The fast path must give the same value. */
Test(expr, fast_path_scope_variable_shadowing_a_runtime_argument)
{
    struct cv_exprset *s = cv__exprset_new();
    int fast = add(s, "$input", "[\"input\"]", NULL);
    int slow = add(s, "($input)", "[\"input\"]", NULL);
    int fast2 = add(s, "$context.k", "[\"context\"]", NULL);
    int slow2 = add(s, "($context.k)", "[\"context\"]", NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, "{\"k\": \"runtime\"}", "{\"input\": \"loop item\", \"context\": {\"k\": \"scope\"}}");
    jv a, b;
    cr_assert_eq(eval(s, slow, "{}", &x, &b), 0);
    cr_assert_eq(eval(s, fast, "{}", &x, &a), 0);
    cr_expect(jv_equal(jv_copy(a), jv_copy(b)), "`$input`: fast path %s, jq %s", D(a), D(b));
    jv_free(a);
    jv_free(b);
    cr_assert_eq(eval(s, slow2, "{}", &x, &b), 0);
    cr_assert_eq(eval(s, fast2, "{}", &x, &a), 0);
    cr_expect(jv_equal(jv_copy(a), jv_copy(b)), "`$context.k`: fast path %s, jq %s", D(a), D(b));
    jv_free(a);
    jv_free(b);
    env_cleanup(&x);
    cv__exprset_free(s);
}

Test(expr, general_expressions_and_scope_variables)
{
    struct cv_exprset *s = cv__exprset_new();
    int i1 = add(s, ".a + 1", NULL, NULL);
    int i2 = add(s, "[.[] | . * 2]", NULL, NULL);
    int i3 = add(s, "{ids: [$input.in[], $color]}", "[\"color\"]", NULL);
    int i4 = add(s, "\"hello \\(.name)\"", NULL, NULL);
    int i5 = add(s, "empty", NULL, NULL);
    int i6 = add(s, "1, 2, 3", NULL, NULL);
    int i7 = add(s, ". as $x | $x # a trailing comment", NULL, NULL);
    int i8 = add(s, "def inc: . + 1; inc | inc", NULL, NULL);
    int i9 = add(s, "{input: 1, env: 2} | .input + .env", NULL, NULL);
    int i10 = add(s, ".input", NULL, NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, "{\"color\": \"red\"}");
    jv out;
    cr_expect_eq(eval(s, i1, "{\"a\": 41}", &x, &out), 0);
    cr_expect(jv_equal(out, J("42")));
    cr_expect_eq(eval(s, i2, "[1, 2]", &x, &out), 0);
    cr_expect(jv_equal(out, J("[2,4]")));
    cr_expect_eq(eval(s, i3, "null", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), J("{\"ids\":[1,2,\"red\"]}")), "%s", D(out));
    jv_free(out);
    cr_expect_eq(eval(s, i4, "{\"name\": \"ann\"}", &x, &out), 0);
    cr_expect(jv_equal(out, J("\"hello ann\"")));
    /* no result is null; several results: the first */
    cr_expect_eq(eval(s, i5, "1", &x, &out), 0);
    cr_expect(jv_equal(out, jv_null()));
    cr_expect_eq(eval(s, i6, "1", &x, &out), 0);
    cr_expect(jv_equal(out, J("1")));
    cr_expect_eq(eval(s, i7, "7", &x, &out), 0);
    cr_expect(jv_equal(out, J("7")));
    cr_expect_eq(eval(s, i8, "1", &x, &out), 0);
    cr_expect(jv_equal(out, J("3")));
    cr_expect_eq(eval(s, i9, "null", &x, &out), 0);
    cr_expect(jv_equal(out, J("3")));
    cr_expect_eq(eval(s, i10, "{\"input\": 5}", &x, &out), 0);
    cr_expect(jv_equal(out, J("5")));
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* ---- errors ------------------------------------------------------------------------------ */

Test(expr, runtime_errors_are_expression_error_descriptors)
{
    struct cv_exprset *s = cv__exprset_new();
    int i1 = add(s, "error(\"custom failure\")", NULL, NULL);
    int i2 = add(s, ".a.b", NULL, NULL);
    int i3 = add(s, "{} - 1", NULL, NULL);
    int i4 = add(s, "error({code: 7})", NULL, NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, NULL);
    jv out;
    cr_expect_eq(eval(s, i1, "null", &x, &out), CV_EFAULT);
    cr_expect(jv_equal(field(out, "type"), jv_string("https://serverlessworkflow.io/spec/1.0.0/errors/expression")),
              "%s", D(out));
    cr_expect(jv_equal(field(out, "status"), jv_number(400)), "%s", D(out));
    jv d = field(out, "detail");
    cr_expect(jv_get_kind(d) == JV_KIND_STRING && strstr(jv_string_value(d), "custom failure"), "%s", D(out));
    jv_free(d);
    jv_free(out);
    cr_expect_eq(eval(s, i2, "{\"a\": \"text\"}", &x, &out), CV_EFAULT);
    d = field(out, "detail");
    cr_expect(jv_get_kind(d) == JV_KIND_STRING && strstr(jv_string_value(d), "Cannot index string"), "%s", D(out));
    jv_free(d);
    jv_free(out);
    cr_expect_eq(eval(s, i3, "null", &x, &out), CV_EFAULT);
    jv_free(out);
    cr_expect_eq(eval(s, i4, "null", &x, &out), CV_EFAULT);
    cr_expect(jv_equal(field(out, "status"), jv_number(400)), "%s", D(out));
    jv_free(out);
    env_cleanup(&x);
    cv__exprset_free(s);
}

Test(expr, truthiness)
{
    cr_expect(!cv__jv_truthy(jv_null()));
    cr_expect(!cv__jv_truthy(jv_false()));
    cr_expect(cv__jv_truthy(jv_true()));
    cr_expect(cv__jv_truthy(jv_number(0)));
    cr_expect(cv__jv_truthy(jv_string("")));
    cr_expect(cv__jv_truthy(jv_array()));
}

/* ---- compile errors in a bundle --------------------------------------------------------------- */

/* Registers texts[i] at pointer "/e<i>", compiles, and returns the pointers reported. */
static jv bundle_errors(const char *const *texts, int n)
{
    struct cv_exprset *s = cv__exprset_new();
    for (int i = 0; i < n; i++) {
        char ptr[16];
        snprintf(ptr, sizeof ptr, "/e%d", i);
        add(s, texts[i], NULL, ptr);
    }
    jv errors = jv_array();
    int rc = cv__exprset_compile(s, &errors);
    cr_expect_eq(rc, CV_EVALIDATE, "the bundle must not compile");
    jv ptrs = jv_array();
    jv_array_foreach(errors, i, e)
    {
        ptrs = jv_array_append(ptrs, field(e, "pointer"));
        jv m = field(e, "message");
        cr_expect(jv_get_kind(m) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(m)) > 0);
        jv_free(m);
        jv_free(e);
    }
    jv_free(errors);
    cv__exprset_free(s);
    return ptrs;
}

Test(expr, compile_error_names_the_failing_expression)
{
    const char *const middle[] = {".a", "(.b | length)", ".c |", "[.d]", "(.e + 1)"};
    jv p = bundle_errors(middle, 5);
    cr_expect(jv_equal(jv_copy(p), J("[\"/e2\"]")), "syntax error in the middle: %s", D(p));
    jv_free(p);

    const char *const first[] = {"{a:", "(.b)", "(.c)"};
    p = bundle_errors(first, 3);
    cr_expect(jv_equal(jv_copy(p), J("[\"/e0\"]")), "syntax error first: %s", D(p));
    jv_free(p);

    const char *const last[] = {"(.a)", "(.b)", "(.c)", "(.d)", "(.e)", "(.f)", "(.g) | ]"};
    p = bundle_errors(last, 7);
    cr_expect(jv_equal(jv_copy(p), J("[\"/e6\"]")), "syntax error last: %s", D(p));
    jv_free(p);

    const char *const undef[] = {"(.a)", "nosuchfunction(1)", "(.c)", "$nosuchvar"};
    p = bundle_errors(undef, 4);
    jv_array_foreach(p, i, ptr)
    {
        cr_expect(!strcmp(jv_string_value(ptr), "/e1") || !strcmp(jv_string_value(ptr), "/e3"),
                  "only /e1 and /e3 are wrong, got %s", jv_string_value(ptr));
        jv_free(ptr);
    }
    cr_expect_geq(jv_array_length(jv_copy(p)), 1);
    jv_free(p);

    const char *const multiline[] = {"(.a\n|\n.b)", "(.c\n|\n)", "(.d)"};
    p = bundle_errors(multiline, 3);
    cr_expect(jv_equal(jv_copy(p), J("[\"/e1\"]")), "multi-line expressions: %s", D(p));
    jv_free(p);
}

/* ---- the sandbox ---------------------------------------------------------------------------- */

Test(expr, sandbox_env_is_empty)
{
    setenv("CV_EXPR_TEST_SECRET", "leak", 1);
    struct cv_exprset *s = cv__exprset_new();
    int i1 = add(s, "$ENV", NULL, NULL);
    int i2 = add(s, "env", NULL, NULL);
    int i3 = add(s, "$ENV.CV_EXPR_TEST_SECRET", NULL, NULL);
    int i4 = add(s, "env.PATH", NULL, NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, NULL);
    jv out;
    cr_expect_eq(eval(s, i1, "null", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), jv_object()), "$ENV: %s", D(out));
    jv_free(out);
    cr_expect_eq(eval(s, i2, "null", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), jv_object()), "env: %s", D(out));
    jv_free(out);
    cr_expect_eq(eval(s, i3, "null", &x, &out), 0);
    cr_expect(jv_equal(out, jv_null()));
    cr_expect_eq(eval(s, i4, "null", &x, &out), 0);
    cr_expect(jv_equal(out, jv_null()));
    env_cleanup(&x);
    cv__exprset_free(s);
}

Test(expr, sandbox_refuses_host_access_and_unbounded_constructs)
{
    static const char *const refused[] = {
        "input",
        "[inputs]",
        "input_filename",
        "import \"lib\" as lib; .",
        "include \"lib\"; .",
        "halt",
        "halt_error",
        "[limit(3; repeat(1))]",
        "repeat(.)",
        "[while(. < 3; . + 1)]",
        "until(. > 3; . + 1)",
        "def f: f; f",
        "def fact(n): if n <= 1 then 1 else n * fact(n - 1) end; fact(5)",
        "def f: def g: f; g; f",
        "gsub(\"\"; \"x\")",
        "gsub(\"x*\"; \"y\")",
        "gsub(\"(a|)\"; \"y\")",
        "sub(\"\"; \"x\"; \"g\")",
        "gsub(.re; \"x\")",
        "recurse(.a)",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        jv errs = refuse(refused[i]);
        jv_free(errs);
    }
}

Test(expr, sandbox_accepts_safe_look_alikes)
{
    struct cv_exprset *s = cv__exprset_new();
    int g = add(s, "gsub(\"a\"; \"b\")", NULL, NULL);
    int sub1 = add(s, "sub(\"\"; \"x\")", NULL, NULL);
    int key = add(s, "{input: 1, repeat: 2, while: 3} | .input + .repeat + .while", NULL, NULL);
    int field_ = add(s, ".input.until", NULL, NULL);
    int str = add(s, "\"input repeat while until import\"", NULL, NULL);
    int var = add(s, "$input.in | length", NULL, NULL);
    int defs = add(s, "def f: .; def g: f; g", NULL, NULL);
    int rec = add(s, "[.. | numbers]", NULL, NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, NULL);
    jv out;
    cr_expect_eq(eval(s, g, "\"banana\"", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), J("\"bbnbnb\"")), "%s", D(out));
    jv_free(out);
    cr_expect_eq(eval(s, sub1, "\"ab\"", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), J("\"xab\"")), "%s", D(out));
    jv_free(out);
    cr_expect_eq(eval(s, key, "null", &x, &out), 0);
    cr_expect(jv_equal(out, J("6")));
    cr_expect_eq(eval(s, field_, "{\"input\": {\"until\": 9}}", &x, &out), 0);
    cr_expect(jv_equal(out, J("9")));
    cr_expect_eq(eval(s, str, "null", &x, &out), 0);
    cr_expect(jv_equal(out, J("\"input repeat while until import\"")));
    cr_expect_eq(eval(s, var, "null", &x, &out), 0);
    cr_expect(jv_equal(out, J("2")));
    cr_expect_eq(eval(s, defs, "4", &x, &out), 0);
    cr_expect(jv_equal(out, J("4")));
    cr_expect_eq(eval(s, rec, "{\"a\": [1, {\"b\": 2}]}", &x, &out), 0);
    cr_expect(jv_equal(out, J("[1,2]")));
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* A function that defines a helper inside its body is not recursive: the
 * guard must not mistake the call after the outer definition for recursion. */
Test(expr, sandbox_accepts_nested_non_recursive_defs)
{
    struct cv_exprset *s = cv__exprset_new();
    jv errors = jv_array();
    int idx = cv__exprset_add(s, "def f: def g: 1; g + 1; f", jv_null(), "/nested", &errors);
    cr_expect_geq(idx, 0, "`def f: def g: 1; g + 1; f` is not recursive but was refused: %s", D(errors));
    jv_free(errors);
    if (idx >= 0) {
        compile_ok(s);
        struct env x;
        env_init(&x, NULL, NULL);
        jv out;
        cr_expect_eq(eval(s, idx, "null", &x, &out), 0);
        cr_expect(jv_equal(out, J("2")));
        env_cleanup(&x);
    }
    cv__exprset_free(s);
}

/* jv reference counts are not atomic in jq 1.6, so a value handed to one
 * evaluation must not stay referenced by the pooled jq_state after the
 * evaluation returns: the next thread to check that state out would release
 * it (in jq_start) while the first thread still uses it. Deterministic check
 * of that invariant on one thread: after cv__expr_eval returns, the caller's
 * runtime-argument and scope values are referenced by the caller only. */
Test(expr, evaluation_keeps_no_reference_to_the_callers_values)
{
    struct cv_exprset *s = cv__exprset_new();
    int idx = add(s, "[$context.k, $item, .d] | length", "[\"item\"]", NULL);
    compile_ok(s);
    struct cv_evalenv e;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        e.vars[i] = jv_null();
    jv_free(e.vars[CV_VAR_CONTEXT]);
    e.vars[CV_VAR_CONTEXT] = jv_object_set(jv_object(), jv_string("k"), jv_string("context value"));
    e.scope = jv_object_set(jv_object(), jv_string("item"), jv_string("scope value"));
    e.materialize = NULL;
    e.ud = NULL;
    jv dot = jv_object_set(jv_object(), jv_string("d"), jv_string("dot value"));
    jv keep = jv_copy(dot);
    jv out;
    cr_assert_eq(cv__expr_eval(s, idx, dot, &e, &out), 0);
    cr_expect(jv_equal(out, jv_number(3)));
    cr_expect_eq(jv_get_refcnt(e.vars[CV_VAR_CONTEXT]), 1,
                 "$context is still referenced %d times after the evaluation returned",
                 jv_get_refcnt(e.vars[CV_VAR_CONTEXT]));
    cr_expect_eq(jv_get_refcnt(e.scope), 1, "the scope object is still referenced %d times",
                 jv_get_refcnt(e.scope));
    cr_expect_eq(jv_get_refcnt(keep), 1, "`.` is still referenced %d times", jv_get_refcnt(keep));
    jv_free(keep);
    for (int i = 0; i < CV_VAR_COUNT; i++)
        jv_free(e.vars[i]);
    jv_free(e.scope);
    cv__exprset_free(s);
}

/* How many strings, arrays and objects in v (borrowed) someone besides v
 * also holds. `held`: the references to v counted by the caller (1 for a
 * value held once; 2 for an element read from its container with
 * jv_array_get or jv_object_iter_*, which return a copy). */
static int shared_nodes(jv v, int held)
{
    jv_kind k = jv_get_kind(v);
    if (k != JV_KIND_STRING && k != JV_KIND_ARRAY && k != JV_KIND_OBJECT)
        return 0;
    int n = jv_get_refcnt(v) > held;
    if (k == JV_KIND_ARRAY) {
        jv_array_foreach(v, i, x)
        {
            n += shared_nodes(x, 2);
            jv_free(x);
        }
    } else if (k == JV_KIND_OBJECT) {
        jv_object_foreach(v, key, x)
        {
            n += shared_nodes(key, 2) + shared_nodes(x, 2);
            jv_free(key);
            jv_free(x);
        }
    }
    return n;
}

/* libjq 1.6 returns a program's constants by reference, and a fast literal
 * used to be handed out as a copy of the set's own value: either way the
 * caller freed, on its thread, a value that other threads were copying. */
Test(expr, evaluation_results_share_nothing_with_the_set)
{
    static const char *const texts[][2] = {
        {"{tag: \"t\", v: .a}", "{\"tag\": \"t\", \"v\": 1}"},  /* constant keys and values */
        {"if .a then \"yes\" else \"no\" end", "\"yes\""},     /* a constant string */
        {"([\"x\", {\"k\": \"v\"}])", "[\"x\", {\"k\": \"v\"}]"},    /* a constant array (jq) */
        {"[\"x\", {\"k\": \"v\"}]", "[\"x\", {\"k\": \"v\"}]"},      /* the same, fast literal */
        {"\"literal\"", "\"literal\""},                          /* fast literal string */
        {"{\"a\": [\"x\"]}", "{\"a\": [\"x\"]}"},                /* fast literal object */
        {"[.a, \"hidden\"] | .[:1]", "[1]"}, /* a slice, whose array also holds "hidden" */
    };
    size_t n = sizeof texts / sizeof *texts;
    struct cv_exprset *s = cv__exprset_new();
    int idx[8];
    for (size_t i = 0; i < n; i++)
        idx[i] = add(s, texts[i][0], NULL, NULL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, NULL);
    for (int round = 0; round < 2; round++) /* the second round runs states that have run */
        for (size_t i = 0; i < n; i++) {
            jv out;
            cr_assert_eq(eval(s, idx[i], "{\"a\": 1}", &x, &out), 0, "`%s` failed: %s", texts[i][0], D(out));
            jv want = J(texts[i][1]);
            cr_expect(jv_equal(jv_copy(out), want), "`%s` gave %s", texts[i][0], D(out));
            int shared = shared_nodes(out, 1);
            cr_expect_eq(shared, 0,
                         "the result of `%s` (%s) shares %d value(s) with the set or its jq state, "
                         "which other threads copy and free",
                         texts[i][0], D(out), shared);
            jv_free(out);
        }
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* Loose registration takes jv_null() for "no scope variables", as
 * cv__exprset_add does (it used to abort in jv_array_length). */
Test(expr, loose_registration_without_scope_variables)
{
    struct cv_exprset *s = cv__exprset_new();
    int idx = cv__exprset_add_loose(s, ".a | tostring", jv_null(), "/loose");
    cr_assert_geq(idx, 0, "a loose expression was refused: %d", idx);
    cr_expect_eq(cv__exprset_add_loose(s, "not jq (", jv_null(), "/literal"), CV_EINVAL);
    compile_ok(s);
    struct env x;
    env_init(&x, NULL, NULL);
    jv out;
    cr_expect_eq(eval(s, idx, "{\"a\": 5}", &x, &out), 0);
    cr_expect(jv_equal(jv_copy(out), jv_string("5")), "got %s", D(out));
    jv_free(out);
    env_cleanup(&x);
    cv__exprset_free(s);
}

/* ---- threads ------------------------------------------------------------------------------------
 * A crash in these tests is usually heap damage done earlier by two threads
 * changing one jv's reference count (libjq 1.6's are not atomic; see
 * "Threads" in expr.c), noticed later by malloc, often while the set is
 * freed. So a crash prints what every worker was doing and a backtrace
 * before the process dies; build-asan/unit-tests, or ThreadSanitizer with an
 * instrumented libjq, point at the first bad access.
 */

#define NEXPR 12
#define NTHREADS 8
#define ROUNDS 300

struct worker {
    struct cv_exprset *s;
    int idx[NEXPR];
    int id;
    int failures;
    char first_bad[240]; /* the first wrong result, for the failure message */
    /* progress, read by crash_report: -1 before the first round, the round
     * count when done */
    volatile int round, k;
};

static struct {
    const char *volatile phase; /* what the test's main thread is doing */
    struct worker *volatile workers;
    volatile int nworkers;
    struct sigaction old[5];
} crash_info;
static const int crash_signals[5] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
static _Thread_local int crash_self = -1; /* the worker this thread runs, -1: the test's thread */

static void say(const char *text) { (void)!write(STDERR_FILENO, text, strlen(text)); }

/* Signal handler: reports, then dies of the same signal with the previous
 * handler back in place, so that Criterion reports the crash as before. Only
 * write(2) and snprintf into stack buffers: the heap may be what is broken. */
static void crash_report(int sig)
{
    char who[32], line[240];
    if (crash_self < 0)
        snprintf(who, sizeof who, "the test's thread");
    else
        snprintf(who, sizeof who, "worker %d", crash_self);
    snprintf(line, sizeof line,
             "\n== crash report: signal %d in %s; the test's thread was %s; workers at round/expression "
             "(-1/-1: not started):\n  ",
             sig, who, crash_info.phase ? crash_info.phase : "?");
    say(line);
    for (int t = 0; crash_info.workers && t < crash_info.nworkers; t++) {
        snprintf(line, sizeof line, "%d:%d/%d ", t, crash_info.workers[t].round, crash_info.workers[t].k);
        say(line);
    }
    say("\n== backtrace of the crashing thread (`addr2line -fe build/unit-tests 0x...` names the "
        "+0x... offsets):\n");
    void *frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
    for (int i = 0; i < 5; i++)
        if (crash_signals[i] == sig)
            sigaction(sig, &crash_info.old[i], NULL);
    raise(sig);
}

static void crash_report_install(struct worker *w, int n)
{
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc now: the first call allocates */
    for (int t = 0; t < n; t++)
        w[t].round = w[t].k = -1;
    crash_info.workers = w;
    crash_info.nworkers = n;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = crash_report;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 5; i++)
        sigaction(crash_signals[i], &sa, &crash_info.old[i]);
}

static void crash_report_remove(void)
{
    for (int i = 0; i < 5; i++)
        sigaction(crash_signals[i], &crash_info.old[i], NULL);
    crash_info.workers = NULL;
    crash_info.nworkers = 0;
}

/* Notes the first failure of a worker (D() is not for threads). */
static void note_failure(struct worker *w, int round, const char *what, int rc, jv out /* borrowed */)
{
    if (w->failures++)
        return;
    jv d = jv_dump_string(jv_copy(out), 0);
    snprintf(w->first_bad, sizeof w->first_bad, "round %d, %s: rc %d, %s", round, what, rc, jv_string_value(d));
    jv_free(d);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    crash_self = w->id;
    struct cv_evalenv e;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        e.vars[i] = jv_null();
    jv_free(e.vars[CV_VAR_CONTEXT]);
    e.vars[CV_VAR_CONTEXT] = jv_object_set(jv_object(), jv_string("k"), jv_number(w->id));
    e.scope = jv_object_set(jv_object(), jv_string("item"), jv_number(1000));
    e.materialize = NULL;
    e.ud = NULL;
    for (int r = 0; r < ROUNDS; r++) {
        w->round = r;
        for (int k = 0; k < NEXPR; k++) {
            w->k = k;
            jv out;
            int dot = w->id * 100000 + r;
            int rc = cv__expr_eval(w->s, w->idx[k], jv_number(dot), &e, &out);
            /* expression k computes . * (k+1) + $context.k + $item */
            double want = (double)dot * (k + 1) + w->id + 1000;
            if (rc || jv_get_kind(out) != JV_KIND_NUMBER || jv_number_value(out) != want) {
                char what[64];
                snprintf(what, sizeof what, "expression %d (want %.0f)", k, want);
                note_failure(w, r, what, rc, out);
            }
            jv_free(out);
        }
    }
    w->round = ROUNDS;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        jv_free(e.vars[i]);
    jv_free(e.scope);
    return NULL;
}

Test(expr, concurrent_evaluation_of_one_set, .timeout = 120)
{
    struct worker w[NTHREADS];
    memset(w, 0, sizeof w);
    crash_info.phase = "compiling";
    crash_report_install(w, NTHREADS);
    struct cv_exprset *s = cv__exprset_new();
    /* one array for all the expressions' scope variables, and a reference of
     * our own: evaluations must not touch values the set owns */
    jv sv = J("[\"item\"]");
    int idx[NEXPR];
    for (int k = 0; k < NEXPR; k++) {
        char text[96];
        snprintf(text, sizeof text, ". * %d + $context.k + $item", k + 1);
        jv errors = jv_array();
        idx[k] = cv__exprset_add(s, text, sv, "/x", &errors);
        cr_assert_geq(idx[k], 0, "`%s` was refused: %s", text, D(errors));
        jv_free(errors);
    }
    compile_ok(s);
    int refs = jv_get_refcnt(sv);
    crash_info.phase = "starting the workers";
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        w[t].s = s;
        memcpy(w[t].idx, idx, sizeof idx);
        w[t].id = t;
        cr_assert_eq(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    crash_info.phase = "waiting for the workers";
    int failures = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        failures += w[t].failures;
    }
    for (int t = 0; t < NTHREADS; t++)
        cr_expect_eq(w[t].failures, 0, "worker %d: %d wrong results; the first at %s", t, w[t].failures,
                     w[t].first_bad);
    cr_expect_eq(failures, 0, "%d wrong results out of %d", failures, NTHREADS * ROUNDS * NEXPR);
    /* a lost update of a shared count is the race itself, crash or not */
    cr_expect_eq(jv_get_refcnt(sv), refs,
                 "the evaluations changed the reference count of the set's scope-variable array "
                 "(%d -> %d): threads touched a value the set owns",
                 refs, jv_get_refcnt(sv));
    crash_info.phase = "freeing the set (heap damage done earlier is often found here)";
    cv__exprset_free(s);
    jv_free(sv);
    crash_report_remove();
}

/* Results kept while other threads run the same states, fast paths on the
 * set's operands, and libjq compiling on several threads at once (loose
 * registration, and states compiled on contention). */
#define KEPT_THREADS 4
#define KEPT_ROUNDS 200

static const char *const kept_texts[][2] = {
    {"{tag: \"t\", v: .a}", "{\"tag\": \"t\", \"v\": {\"b\": 1}}"}, /* jq: constants in the result */
    {"if .a then \"yes\" else \"no\" end", "\"yes\""},            /* jq: a constant result */
    {"\"literal\"", "\"literal\""},                                /* fast literal */
    {".a.b", "1"},                                                 /* fast path */
    {"$item.name", "\"n\""},                                      /* fast path, scope variable */
    {"$context.k + \"-\"", "\"ctx-\""},                           /* fast operator */
};
#define NKEPT (int)(sizeof kept_texts / sizeof *kept_texts)

static void *work_kept(void *arg)
{
    struct worker *w = arg;
    crash_self = w->id;
    struct cv_evalenv e;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        e.vars[i] = jv_null();
    jv_free(e.vars[CV_VAR_CONTEXT]);
    e.vars[CV_VAR_CONTEXT] = jv_object_set(jv_object(), jv_string("k"), jv_string("ctx"));
    e.scope = jv_object_set(jv_object(), jv_string("item"),
                            jv_object_set(jv_object(), jv_string("name"), jv_string("n")));
    e.materialize = NULL;
    e.ud = NULL;
    jv want[NKEPT], kept[NKEPT];
    for (int k = 0; k < NKEPT; k++) {
        want[k] = jv_parse(kept_texts[k][1]);
        kept[k] = jv_null();
    }
    for (int r = 0; r < KEPT_ROUNDS; r++) {
        w->round = r;
        for (int k = 0; k < NKEPT; k++) {
            w->k = k;
            jv b = jv_object_set(jv_object(), jv_string("b"), jv_number(1));
            jv dot = jv_object_set(jv_object(), jv_string("a"), b);
            jv out;
            int rc = cv__expr_eval(w->s, w->idx[k], dot, &e, &out);
            if (rc || !jv_equal(jv_copy(out), jv_copy(want[k])))
                note_failure(w, r, kept_texts[k][0], rc, out);
            jv_free(kept[k]); /* the previous result: freed while other threads run its state */
            kept[k] = out;
        }
        if (r % 50 == 0) {
            w->k = NKEPT; /* compiling */
            struct cv_exprset *p = cv__exprset_new();
            int rc = cv__exprset_add_loose(p, ".x | tostring | ascii_downcase", jv_null(), "/p");
            if (rc < 0)
                note_failure(w, r, "loose registration", rc, jv_null());
            cv__exprset_free(p);
        }
    }
    w->round = KEPT_ROUNDS;
    for (int k = 0; k < NKEPT; k++) {
        jv_free(kept[k]);
        jv_free(want[k]);
    }
    for (int i = 0; i < CV_VAR_COUNT; i++)
        jv_free(e.vars[i]);
    jv_free(e.scope);
    return NULL;
}

Test(expr, concurrent_evaluation_with_results_kept, .timeout = 120)
{
    struct worker w[KEPT_THREADS];
    memset(w, 0, sizeof w);
    crash_info.phase = "compiling";
    crash_report_install(w, KEPT_THREADS);
    struct cv_exprset *s = cv__exprset_new();
    jv sv = J("[\"item\"]");
    int idx[NKEPT];
    for (int k = 0; k < NKEPT; k++) {
        jv errors = jv_array();
        idx[k] = cv__exprset_add(s, kept_texts[k][0], sv, "/x", &errors);
        cr_assert_geq(idx[k], 0, "`%s` was refused: %s", kept_texts[k][0], D(errors));
        jv_free(errors);
    }
    jv_free(sv);
    compile_ok(s);
    cr_expect_eq(cv__exprset_fast_count(s), 4, "the fast-path cases no longer take the fast path");
    crash_info.phase = "starting the workers";
    pthread_t th[KEPT_THREADS];
    for (int t = 0; t < KEPT_THREADS; t++) {
        w[t].s = s;
        memcpy(w[t].idx, idx, sizeof idx);
        w[t].id = t;
        cr_assert_eq(pthread_create(&th[t], NULL, work_kept, &w[t]), 0);
    }
    crash_info.phase = "waiting for the workers";
    for (int t = 0; t < KEPT_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < KEPT_THREADS; t++)
        cr_expect_eq(w[t].failures, 0, "worker %d: %d failures; the first at %s", t, w[t].failures, w[t].first_bad);
    crash_info.phase = "freeing the set (heap damage done earlier is often found here)";
    cv__exprset_free(s);
    crash_report_remove();
}
