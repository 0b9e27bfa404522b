/*
 * selftest.c — `ctk-runner selftest`: checks the runner itself.
 *
 * A conformance runner that passes what it did not check is worse than none,
 * so this mode proves the parts the verdicts rest on: the Gherkin reader
 * (comments, "And given", doc strings and their dedent, unterminated doc
 * strings), the step phrasings (every one, and unknown ones), the value rules
 * (numbers by value, key order, subsets, dotted paths), and, through the
 * engine, that scenarios with wrong expectations or unknown steps FAIL with a
 * reason naming the expected and actual values. Same output as the other
 * modes: one PASS/FAIL line per check and "N passed, N failed".
 */
#include <stdio.h>
#include <string.h>

#include "ctk.h"

static void expect(struct ctk_tally *t, int cond, const char *name, const char *why)
{
    ctk_report(t, cond ? 1 : 0, "selftest", name, cond ? "" : why);
}

static jv yaml(const char *s)
{
    return ctk_parse_yaml(s, strlen(s), "selftest");
}

static const char *const FEATURE =
    "# a comment before the feature\n"
    "Feature: Self test\n"
    "  free description text\n"
    "\n"
    "  Scenario: One\n"
    "    scenario description line\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"yaml\n"
    "    document:\n"
    "      name: x\n"
    "    \"\"\"\n"
    "    # a comment between steps\n"
    "    And given the workflow input is:\n"
    "      \"\"\"json\r\n"
    "      {\"a\": [1, 2]}\r\n"
    "      \"\"\"\r\n"
    "    When the workflow is executed\n"
    "    Then the workflow should complete\n"
    "\n"
    "  Scenario: Two\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"\n"
    "    x: 1\n"
    "    \"\"\"\n"
    "    Then it should dance\n";

static void parser_checks(struct ctk_tally *t)
{
    struct ctk_feature f;
    struct ctk_buf err = {0};
    int rc = ctk_feature_parse(FEATURE, strlen(FEATURE), &f, &err);
    expect(t, rc == 0, "parse a feature", ctk_buf_str(&err));
    if (rc == 0) {
        expect(t, strcmp(f.name, "Self test") == 0 && f.nscenarios == 2, "feature name, 2 scenarios",
               "wrong feature name or count");
        const struct ctk_scenario *a = &f.scenarios[0];
        expect(t, strcmp(a->name, "One") == 0 && a->nsteps == 4 && !a->error,
               "scenario One has 4 steps", "wrong steps");
        if (a->nsteps == 4) {
            expect(t, strcmp(a->steps[0].doc, "document:\n  name: x\n") == 0,
                   "doc string dedented by its delimiter", a->steps[0].doc);
            expect(t, strcmp(a->steps[0].doc_lang, "yaml") == 0, "doc string type yaml",
                   a->steps[0].doc_lang);
            expect(t, strcmp(a->steps[1].text, "the workflow input is:") == 0 &&
                          strcmp(a->steps[1].keyword, "And") == 0,
                   "\"And given\" normalised", a->steps[1].text);
            expect(t, strcmp(a->steps[1].doc, "{\"a\": [1, 2]}\n") == 0,
                   "indented CRLF doc string", a->steps[1].doc);
            expect(t, a->steps[2].doc == NULL && a->steps[2].line == 17, "step line numbers",
                   "wrong line or doc");
        }
        const struct ctk_scenario *b = &f.scenarios[1];
        expect(t, b->nsteps == 2 && b->steps[0].doc_lang && !*b->steps[0].doc_lang,
               "bare \"\"\" doc string", "wrong doc string");
        ctk_feature_cleanup(&f);
    }
    ctk_buf_cleanup(&err);

    const char *bad = "Feature: x\n  Scenario: y\n    Given a workflow with definition:\n"
                      "    \"\"\"yaml\n    a: 1\n";
    rc = ctk_feature_parse(bad, strlen(bad), &f, &err);
    expect(t, rc != 0 && strstr(ctk_buf_str(&err), "never closed"),
           "unterminated doc string refused", ctk_buf_str(&err));
    ctk_buf_cleanup(&err);

    const char *outline = "Feature: x\n  Scenario: y\n    Given a workflow with definition:\n"
                          "    | a | b |\n";
    rc = ctk_feature_parse(outline, strlen(outline), &f, &err);
    expect(t, rc == 0 && f.nscenarios == 1 && f.scenarios[0].error,
           "data table marks the scenario as failing", "a table was accepted");
    if (rc == 0)
        ctk_feature_cleanup(&f);
    ctk_buf_cleanup(&err);
}

static void phrasing_checks(struct ctk_tally *t)
{
    static const struct {
        const char *text;
        int known;
        const char *g0, *g1;
    } cases[] = {
        {"a workflow with definition:", 1, "", ""},
        {"the workflow input is:", 1, "", ""},
        {"the workflow is executed", 1, "", ""},
        {"the workflow should complete", 1, "", ""},
        {"the workflow should complete with output:", 1, "", ""},
        {"the workflow should fault", 1, "", ""},
        {"the workflow should fault with error:", 1, "", ""},
        {"the workflow should cancel", 1, "", ""},
        {"the workflow output should have properties 'a', 'b.c'", 1, "'a', 'b.c'", ""},
        {"the workflow output should have a 'error.instance' property with value:", 1,
         "error.instance", ""},
        {"the workflow output should have a 'colors' property containing 1 items", 1, "colors",
         "1"},
        {"setRed should run first", 1, "setRed", ""},
        {"setRed should run last", 1, "setRed", ""},
        {"setGreen should run after setRed", 1, "setGreen", "setRed"},
        {"setRed should run before setGreen", 1, "setRed", "setGreen"},
        {"getPet should complete", 1, "getPet", ""},
        {"getPet should complete with output:", 1, "getPet", ""},
        {"getPet should fault", 1, "getPet", ""},
        {"getPet should fault with error:", 1, "getPet", ""},
        {"getPet should cancel", 1, "getPet", ""},
        {"the workflow should frobnicate", 0, "", ""},
        {"the workflow output should have a 'colors' property containing many items", 0, "", ""},
        {"set Red should run first", 0, "", ""},
        {"the workflow should complete ", 0, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char g[CTK_MAX_GROUPS][CTK_GROUP_LEN];
        int k = ctk_match_step(cases[i].text, g);
        int ok = cases[i].known ? k >= 0 && strcmp(g[0], cases[i].g0) == 0 &&
                                      strcmp(g[1], cases[i].g1) == 0
                                : k < 0;
        char name[300];
        snprintf(name, sizeof name, "%s \"%s\"", cases[i].known ? "phrasing" : "unknown step",
                 cases[i].text);
        expect(t, ok, name, cases[i].known ? "not matched or wrong captures" : "was matched");
    }
}

static void value_checks(struct ctk_tally *t)
{
    jv a = yaml("{x: 1, y: [1.0, {b: 2, a: 1}]}");
    jv b = yaml("{\"y\": [1, {\"a\": 1.0, \"b\": 2}], \"x\": 1.0}");
    jv c = yaml("{x: 1, y: [1, {a: 1, b: 3}]}");
    expect(t, ctk_equal(a, b), "equality ignores key order, numbers by value", "not equal");
    expect(t, !ctk_equal(a, c), "equality sees a nested difference", "equal");
    jv s = yaml("'1'");
    jv n = yaml("1");
    expect(t, !ctk_equal(s, n), "the string '1' is not the number 1", "equal");

    struct ctk_buf why = {0};
    jv sub = yaml("{y: [1, {a: 1, b: 2}]}");
    expect(t, ctk_subset(sub, a, &why), "subset: listed keys only", ctk_buf_str(&why));
    jv bad = yaml("{x: 2, z: 1}");
    ctk_buf_cleanup(&why);
    int r = ctk_subset(bad, a, &why);
    expect(t, !r && strstr(ctk_buf_str(&why), "'x': expected 2, got 1") &&
                  strstr(ctk_buf_str(&why), "'z': expected 1, got (absent)"),
           "subset: mismatch and absence described", ctk_buf_str(&why));
    ctk_buf_cleanup(&why);

    jv v = ctk_path_get(a, "y.1.b", NULL);
    expect(t, jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) == 2,
           "dotted path with an array index", "wrong value");
    jv_free(v);
    v = ctk_path_get(a, "y.2", &why);
    expect(t, !jv_is_valid(v) && why.len, "missing path segment", "found");
    jv_free(v);
    ctk_buf_cleanup(&why);
    jv nul = yaml("{k: null}");
    v = ctk_path_get(nul, "k", NULL);
    expect(t, jv_get_kind(v) == JV_KIND_NULL, "a null property exists", "absent");
    jv_free(v);
    jv_free(nul);
    jv_free(a);
    jv_free(b);
    jv_free(c);
    jv_free(s);
    jv_free(n);
    jv_free(sub);
    jv_free(bad);
}

/* Through the engine: wrong expectations must fail, with the values. */
static const char *const WRONG =
    "Feature: wrong on purpose\n"
    "  Scenario: wrong output\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"yaml\n"
    "    document: {dsl: '1.0.3', namespace: default, name: selftest, version: '1.0.0'}\n"
    "    do:\n"
    "      - first:\n"
    "          set: {colors: '${ .colors + [\"red\"] }'}\n"
    "      - second:\n"
    "          set: {colors: '${ .colors + [\"green\"] }'}\n"
    "    \"\"\"\n"
    "    When the workflow is executed\n"
    "    Then the workflow should complete with output:\n"
    "    \"\"\"yaml\n"
    "    colors: [green, red]\n"
    "    \"\"\"\n"
    "  Scenario: wrong order\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"yaml\n"
    "    document: {dsl: '1.0.3', namespace: default, name: selftest, version: '1.0.0'}\n"
    "    do:\n"
    "      - first:\n"
    "          set: {a: 1}\n"
    "      - second:\n"
    "          set: {a: 2}\n"
    "    \"\"\"\n"
    "    When the workflow is executed\n"
    "    Then the workflow should complete\n"
    "    And second should run first\n"
    "  Scenario: unknown step\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"yaml\n"
    "    document: {dsl: '1.0.3', namespace: default, name: selftest, version: '1.0.0'}\n"
    "    do:\n"
    "      - first:\n"
    "          set: {a: 1}\n"
    "    \"\"\"\n"
    "    When the workflow is executed\n"
    "    Then the workflow should complete\n"
    "    And the workflow should be fast\n"
    "  Scenario: right\n"
    "    Given a workflow with definition:\n"
    "    \"\"\"yaml\n"
    "    document: {dsl: '1.0.3', namespace: default, name: selftest, version: '1.0.0'}\n"
    "    do:\n"
    "      - first:\n"
    "          set: {colors: '${ .colors + [\"red\"] }'}\n"
    "      - second:\n"
    "          set: {colors: '${ .colors + [\"green\"] }'}\n"
    "    \"\"\"\n"
    "    When the workflow is executed\n"
    "    Then the workflow should complete with output:\n"
    "    \"\"\"yaml\n"
    "    colors: [red, green]\n"
    "    \"\"\"\n"
    "    And first should run first\n"
    "    And second should run last\n"
    "    And second should run after first\n";

struct engine_job {
    const struct ctk_scenario *sc;
    const struct ctk_opts *o;
};

static int engine_case(void *arg, struct ctk_buf *why)
{
    const struct engine_job *job = arg;
    return ctk_scenario_run("selftest", job->sc, job->o, why);
}

static void engine_checks(const struct ctk_opts *o, struct ctk_tally *t)
{
    struct ctk_feature f;
    struct ctk_buf err = {0};
    if (ctk_feature_parse(WRONG, strlen(WRONG), &f, &err) != 0) {
        expect(t, 0, "parse the engine scenarios", ctk_buf_str(&err));
        ctk_buf_cleanup(&err);
        return;
    }
    static const char *const must_say[] = {
        "expected {\"colors\":[\"green\",\"red\"]}, got {\"colors\":[\"red\",\"green\"]}",
        "expected second to run first",
        "unknown step",
        NULL,
    };
    for (size_t i = 0; i < f.nscenarios && i < 4; i++) {
        struct ctk_buf why = {0};
        struct engine_job job = {.sc = &f.scenarios[i], .o = o};
        int r = ctk_run_case(engine_case, &job, o->isolate, o->timeout_s, &why);
        char name[200];
        snprintf(name, sizeof name, "engine scenario \"%s\" %s", f.scenarios[i].name,
                 must_say[i] ? "fails" : "passes");
        int ok = must_say[i] ? r == 0 && strstr(ctk_buf_str(&why), must_say[i]) != NULL : r == 1;
        expect(t, ok, name, why.len ? ctk_buf_str(&why) : "it passed");
        ctk_buf_cleanup(&why);
    }
    ctk_feature_cleanup(&f);
    ctk_buf_cleanup(&err);
}

int ctk_selftest_main(const struct ctk_opts *o, struct ctk_tally *t)
{
    parser_checks(t);
    phrasing_checks(t);
    value_checks(t);
    engine_checks(o, t);
    return 0;
}
