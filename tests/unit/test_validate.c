/*
 * test_validate.c — structural validation of workflow documents: every
 * example of the specification is accepted with no diagnostic, the
 * specification's invalid fixtures are rejected, every document of
 * tests/invalid/ yields the diagnostic its header announces (message
 * substring, dotted path, a real line), exact wording of the key messages,
 * the pointer/path/location helpers, and survival on wrong types everywhere.
 */
#include "conveyor.h"
#include "dsl/validate.h"
#include "json/yaml.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static const char *shared_dir(void)
{
    const char *s = getenv("CONVEYOR_SHARED");
    return s && *s ? s : "/work/shared";
}

/* tests/invalid relative to the repository root, wherever the test runs from. */
static void invalid_dir(char *buf, size_t size)
{
    snprintf(buf, size, "tests/invalid");
    DIR *d = opendir(buf);
    if (d) {
        closedir(d);
        return;
    }
    /* __FILE__ is tests/unit/test_validate.c, relative or absolute. */
    const char *f = __FILE__;
    const char *cut = strstr(f, "tests/unit/");
    snprintf(buf, size, "%.*stests/invalid", cut ? (int)(cut - f) : 0, f);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = '\0';
    *len = got;
    return buf;
}

/* Parses and validates a YAML text. Returns the number of problems, or -1 on a
 * parse error; *diags receives all diagnostics (caller frees). */
static int check_text(const char *text, size_t len, const char *name, jv *diags)
{
    jv doc, locs;
    *diags = jv_array();
    if (cv__yaml_parse(text, len, name, &doc, &locs, diags) != 0)
        return -1;
    int n = cv__dsl_validate(doc, locs, name, diags);
    jv_free(doc);
    jv_free(locs);
    return n;
}

static int check_file(const char *path, jv *diags)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    cr_assert_not_null(text, "cannot read %s", path);
    int n = check_text(text, len, path, diags);
    free(text);
    return n;
}

static void log_diags(const char *what, jv diags)
{
    char *s = cv__json_dump(jv_copy(diags));
    cr_log_error("%s: %s", what, s);
    free(s);
}

static const char *dstr(jv d, const char *key, char *buf, size_t size)
{
    jv v = jv_object_get(jv_copy(d), jv_string(key));
    snprintf(buf, size, "%s", jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : "");
    jv_free(v);
    return buf;
}

static int dint(jv d, const char *key)
{
    jv v = jv_object_get(jv_copy(d), jv_string(key));
    int n = jv_get_kind(v) == JV_KIND_NUMBER ? (int)jv_number_value(v) : -1;
    jv_free(v);
    return n;
}

/* Does `diags` hold a diagnostic whose message contains `msg` at `path`? */
static int has_diag(jv diags, const char *msg, const char *path, int need_line)
{
    int found = 0;
    jv_array_foreach(diags, i, d) {
        char m[1200], p[512];
        dstr(d, "message", m, sizeof m);
        dstr(d, "path", p, sizeof p);
        if (strstr(m, msg) && (!path || strcmp(p, path) == 0) && (!need_line || dint(d, "line") > 0))
            found = 1;
        jv_free(d);
    }
    return found;
}

/* Validates a JSON text (no locations): returns the diagnostics. */
static jv check_json(const char *json, int *count)
{
    jv doc = jv_parse(json);
    cr_assert(jv_is_valid(doc), "bad test JSON: %s", json);
    jv diags = jv_array();
    *count = cv__dsl_validate(doc, jv_null(), "t.json", &diags);
    jv_free(doc);
    cr_assert_eq(*count, jv_array_length(jv_copy(diags)));
    return diags;
}

static void expect_yaml(const char *yaml, const char *msg, const char *path)
{
    jv diags;
    int n = check_text(yaml, strlen(yaml), "t.yaml", &diags);
    if (n < 1 || !has_diag(diags, msg, path, 1))
        log_diags(msg, diags);
    cr_assert_geq(n, 1);
    cr_assert(has_diag(diags, msg, path, 1), "no diagnostic '%s' at '%s'", msg, path);
    jv_free(diags);
}

static void expect_valid_yaml(const char *yaml)
{
    jv diags;
    int n = check_text(yaml, strlen(yaml), "t.yaml", &diags);
    if (n != 0)
        log_diags("unexpected", diags);
    cr_assert_eq(n, 0);
    jv_free(diags);
}

#define HEAD                     \
    "document:\n"                \
    "  dsl: '1.0.3'\n"           \
    "  namespace: test\n"        \
    "  name: t\n"                \
    "  version: '0.1.0'\n"

/* ------------------------------------------------------------------------ */
/* The specification's own documents                                         */
/* ------------------------------------------------------------------------ */

Test(validate, all_examples_accepted)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/serverless-workflow/examples", shared_dir());
    DIR *d = opendir(dir);
    if (!d)
        cr_skip_test("%s is absent: the specification's examples are not available", dir);
    int files = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        jv diags;
        int k = check_file(path, &diags);
        if (k != 0) {
            log_diags(e->d_name, diags);
            bad++;
        }
        jv_free(diags);
        files++;
    }
    closedir(d);
    cr_assert_eq(bad, 0, "%d of %d examples rejected", bad, files);
    cr_assert_geq(files, 66, "only %d examples found", files);
}

Test(validate, spec_invalid_fixtures_rejected)
{
    static const char *const names[] = {"extra-property-in-call.yaml",
                                        "listen-any-until-any-until.yaml",
                                        "two-tasks-in-one-item.yaml"};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/serverless-workflow/invalid-fixtures", shared_dir());
    DIR *d = opendir(dir);
    if (!d)
        cr_skip_test("%s is absent: the invalid fixtures are not available", dir);
    closedir(d);
    for (int i = 0; i < 3; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        jv diags;
        int k = check_file(path, &diags);
        /* listen-any-until-any-until.yaml also repeats the key `do`, which
         * the YAML 1.2 loader refuses (-1); either way it is rejected. */
        cr_assert(k != 0, "%s accepted", names[i]);
        cr_assert_gt(jv_array_length(jv_copy(diags)), 0);
        if (i == 0)
            cr_assert(has_diag(diags, "unknown property 'foo' in task 'getPet' (call http)",
                               "do[0].getPet.foo", 1));
        if (i == 2)
            cr_assert(has_diag(diags, "list item holds 2 tasks ('getPet', 'setMessage')", "do[0]", 1));
        jv_free(diags);
    }
}

/* The fixture without its duplicated `do:` key: the nested until itself is refused. */
Test(validate, nested_until_fixture_content)
{
    expect_yaml(HEAD "do:\n"
                     "  - callDoctor:\n"
                     "      listen:\n"
                     "        to:\n"
                     "          any: []\n"
                     "          until:\n"
                     "            any: []\n"
                     "            until: ${ ($context.events | length) == 3 }\n",
                "nested until", "do[0].callDoctor.listen.to.until.until");
}

/* ------------------------------------------------------------------------ */
/* tests/invalid: one mistake per document, announced in its header          */
/* ------------------------------------------------------------------------ */

static int header_value(const char *text, const char *tag, char *out, size_t size)
{
    const char *p = strstr(text, tag);
    if (!p)
        return 0;
    p += strlen(tag);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\n");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\r'))
        n--;
    snprintf(out, size, "%.*s", (int)n, p);
    return 1;
}

Test(validate, invalid_corpus)
{
    char dir[1024];
    invalid_dir(dir, sizeof dir);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int files = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[2048], expect[512], want_path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = read_file(path, &len);
        cr_assert_not_null(text);
        cr_assert(header_value(text, "# expect:", expect, sizeof expect), "%s: no '# expect:'", e->d_name);
        cr_assert(header_value(text, "# path:", want_path, sizeof want_path), "%s: no '# path:'", e->d_name);
        jv diags;
        int k = check_text(text, len, e->d_name, &diags);
        free(text);
        if (k < 0) {
            log_diags(e->d_name, diags);
            cr_log_error("%s: not even valid YAML", e->d_name);
            bad++;
        } else if (k == 0 || !has_diag(diags, expect, want_path, 1)) {
            log_diags(e->d_name, diags);
            cr_log_error("%s: expected '%s' at '%s'", e->d_name, expect, want_path);
            bad++;
        }
        jv_free(diags);
        files++;
    }
    closedir(d);
    cr_assert_eq(bad, 0, "%d of %d invalid documents not diagnosed as announced", bad, files);
    cr_assert_geq(files, 30, "only %d documents in %s", files, dir);
}

/* ------------------------------------------------------------------------ */
/* Exact messages and rules                                                  */
/* ------------------------------------------------------------------------ */

Test(validate, message_wording)
{
    int n;
    jv d = check_json("{\"document\":{\"dsl\":\"1.0.3\",\"namespace\":\"t\",\"name\":\"t\",\"version\":\"1.0.0\"},"
                      "\"do\":[{\"a\":{\"set\":{\"x\":1},\"then\":\"nowhere\"}},{\"b\":{\"set\":{\"x\":1}}},"
                      "{\"c\":{\"call\":\"http\",\"set\":{}}},"
                      "{\"getPet\":{\"call\":\"http\",\"with\":{\"method\":\"get\",\"endpoint\":\"https://x/{id}\"},\"foo\":1}}]}",
                      &n);
    cr_assert_eq(n, 3);
    cr_assert(has_diag(d, "then: 'nowhere' is not a task in this list (known: a, b, c, getPet)", "do[0].a.then", 0));
    cr_assert(has_diag(d, "task 'c' has two task types: call and set", "do[2].c", 0));
    cr_assert(has_diag(d, "unknown property 'foo' in task 'getPet' (call http)", "do[3].getPet.foo", 0));
    /* Without locations, line and column are 0. */
    jv first = jv_array_get(jv_copy(d), 0);
    cr_assert_eq(dint(first, "line"), 0);
    char f[64];
    cr_assert_str_eq(dstr(first, "file", f, sizeof f), "t.json");
    jv_free(first);
    jv_free(d);
}

Test(validate, flow_targets)
{
    /* Backward jumps and jumps to self are fine; switch cases see the switch's list. */
    expect_valid_yaml(HEAD "do:\n"
                           "  - a:\n      set: {x: 1}\n"
                           "  - route:\n      switch:\n        - again:\n            when: .x\n            then: a\n"
                           "        - other:\n            then: exit\n"
                           "      then: route\n"
                           "  - b:\n      do:\n        - c:\n            set: {y: 1}\n            then: end\n");
    expect_yaml(HEAD "do:\n  - a:\n      try:\n        - inner:\n            set: {x: 1}\n            then: a\n"
                     "      catch:\n        do:\n          - fix:\n              set: {y: 1}\n",
                "belongs to an enclosing list", "do[0].a.try[0].inner.then");
    expect_yaml(HEAD "do:\n  - a:\n      set: {x: 1}\n      then: 3\n",
                "expected a flow directive", "do[0].a.then");
}

Test(validate, references)
{
    expect_valid_yaml(HEAD "use:\n"
                           "  authentications:\n    petAuth:\n      bearer:\n        token: abc\n"
                           "  errors:\n    nope:\n      type: https://e.org/nope\n      status: 400\n"
                           "  retries:\n    again:\n      delay: PT1S\n      limit:\n        attempt:\n          count: 2\n"
                           "  timeouts:\n    short:\n      after: PT0.5S\n"
                           "  functions:\n    fn:\n      set: {x: 1}\n"
                           "do:\n"
                           "  - a:\n      call: fn\n      timeout: short\n"
                           "  - b:\n      call: log:1.0.0@default\n"
                           "  - c:\n      call: http\n      with:\n        method: get\n"
                           "        endpoint:\n          uri: https://x.org\n          authentication:\n            use: petAuth\n"
                           "  - d:\n      try:\n        - e:\n            raise:\n              error: nope\n"
                           "      catch:\n        retry: again\n");
    expect_yaml(HEAD "use:\n  functions:\n    fn:\n      set: {x: 1}\n      then: somewhere\ndo:\n  - a:\n      call: fn\n",
                "a function definition has no sibling tasks", "use.functions.fn.then");
}

Test(validate, durations)
{
    const char *good[] = {"PT30S", "PT0.5S", "P1DT2H", "P1Y2M3W4DT5H6M7.25S", "P3W", "${ .delay }",
                          "{seconds: 3}", "{days: 1, milliseconds: 0}"};
    const char *bad[] = {"P", "PT", "P1H", "1D", "PT1S2M", "P1DT", "PT.5S", "PT5.S", "{}", "{seconds: 1.5}",
                         "{seconds: -1}", "{seconds: '3'}", "true", "'P1D '"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char y[512];
        snprintf(y, sizeof y, HEAD "do:\n  - w:\n      wait: %s\n", good[i]);
        expect_valid_yaml(y);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char y[512];
        snprintf(y, sizeof y, HEAD "do:\n  - w:\n      wait: %s\n", bad[i]);
        jv diags;
        int n = check_text(y, strlen(y), "t.yaml", &diags);
        cr_assert_geq(n, 1, "duration %s accepted", bad[i]);
        jv_free(diags);
    }
}

Test(validate, document_fields)
{
    const char *good[] = {"1.0.0", "0.1.0-alpha.1+build.5", "10.20.30"};
    const char *bad[] = {"1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0+"};
    for (size_t i = 0; i < 3; i++) {
        char y[512];
        snprintf(y, sizeof y,
                 "document:\n  dsl: '1.0.3'\n  namespace: a-b\n  name: x1\n  version: '%s'\ndo: []\n", good[i]);
        expect_valid_yaml(y);
    }
    for (size_t i = 0; i < 6; i++) {
        char y[512];
        snprintf(y, sizeof y,
                 "document:\n  dsl: '1.0.3'\n  namespace: ab\n  name: x1\n  version: '%s'\ndo: []\n", bad[i]);
        expect_yaml(y, "bad version", "document.version");
    }
    const char *badnames[] = {"-a", "a-", "a_b", "a.b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < 5; i++) {
        char y[512];
        snprintf(y, sizeof y,
                 "document:\n  dsl: '1.0.3'\n  namespace: ab\n  name: '%s'\n  version: '1.0.0'\ndo: []\n", badnames[i]);
        expect_yaml(y, "bad name", "document.name");
    }
    /* The root allows extra properties (the schema does), evaluate is checked. */
    expect_valid_yaml(HEAD "x-vendor: 1\nevaluate:\n  language: jq\n  mode: loose\ndo: []\n");
    expect_yaml(HEAD "evaluate:\n  language: js\ndo: []\n", "unsupported expression language 'js'", "evaluate.language");
}

Test(validate, endpoints_and_auth)
{
    expect_valid_yaml(HEAD "do:\n  - a:\n      call: http\n      with:\n        method: get\n"
                           "        endpoint: ${ \"https://x.org/\" + .id }\n"
                           "  - b:\n      call: http\n      with:\n        method: get\n"
                           "        endpoint:\n          uri: https://x.org/{id}\n"
                           "          authentication:\n            oauth2:\n              authority: https://auth.org\n"
                           "              grant: client_credentials\n              client:\n                id: me\n"
                           "              endpoints:\n                token: /token\n");
    expect_yaml(HEAD "do:\n  - a:\n      call: http\n      with:\n        method: get\n"
                     "        endpoint:\n          uri: https://x.org\n          authentication:\n"
                     "            oidc:\n              endpoints:\n                token: /t\n",
                "unknown property 'endpoints' in oidc authentication", NULL);
    expect_yaml(HEAD "do:\n  - a:\n      call: http\n      with:\n        method: get\n"
                     "        endpoint:\n          uri: https://x.org\n          authentication:\n"
                     "            bearer:\n              use: s\n              token: t\n",
                "unknown property 'token' in bearer authentication", NULL);
    expect_yaml(HEAD "do:\n  - a:\n      call: http\n      with:\n        method: get\n        endpoint: 42\n",
                "bad endpoint: expected a URI string", "do[0].a.with.endpoint");
}

/* ------------------------------------------------------------------------ */
/* Helpers: pointers, paths, locations                                       */
/* ------------------------------------------------------------------------ */

Test(validate, pointer_to_path)
{
    jv doc = jv_parse("{\"do\":[{\"a/b\":{\"x.y\":{\"0\":1}}},{\"t~\":2}],\"use\":{\"functions\":{}}}");
    struct {
        const char *ptr, *path;
    } cases[] = {
        {"", ""},
        {"/do", "do"},
        {"/do/0", "do[0]"},
        {"/do/0/a~1b", "do[0].a/b"},
        {"/do/0/a~1b/x.y", "do[0].a/b[\"x.y\"]"},
        {"/do/0/a~1b/x.y/0", "do[0].a/b[\"x.y\"].0"},
        {"/do/1/t~0", "do[1].t~"},
        {"/do/7/missing", "do[7].missing"},
        {"/use/functions/f/then", "use.functions.f.then"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *p = cv__pointer_to_path(doc, cases[i].ptr);
        cr_assert_str_eq(p, cases[i].path, "pointer '%s'", cases[i].ptr);
        free(p);
    }
    char *p = cv__pointer_to_path(jv_null(), "/a/0");
    cr_assert_str_eq(p, "a[0]");
    free(p);
    jv_free(doc);
}

Test(validate, locate_falls_back_to_ancestors)
{
    jv locs = jv_parse("{\"\":[1,1],\"/do\":[6,1],\"/do/0\":[7,5],\"/do/0/a\":[8,7]}");
    int line, col;
    cv__locate(locs, "/do/0/a", &line, &col);
    cr_assert(line == 8 && col == 7);
    cv__locate(locs, "/do/0/a/with/missing", &line, &col);
    cr_assert(line == 8 && col == 7);
    cv__locate(locs, "/do/3", &line, &col);
    cr_assert(line == 6 && col == 1);
    cv__locate(locs, "/nothing", &line, &col);
    cr_assert(line == 1 && col == 1);
    cv__locate(jv_null(), "/do", &line, &col);
    cr_assert(line == 0 && col == 0);
    jv_free(locs);
}

/* ------------------------------------------------------------------------ */
/* Robustness                                                                */
/* ------------------------------------------------------------------------ */

Test(validate, wrong_types_everywhere)
{
    const char *docs[] = {
        "null", "1", "\"x\"", "[]", "{}", "{\"document\":[],\"do\":{}}",
        "{\"document\":{\"dsl\":{},\"namespace\":[],\"name\":null,\"version\":true},\"do\":[1,null,[],\"s\",{}]}",
        "{\"document\":null,\"do\":[{\"a\":null},{\"b\":[]},{\"c\":{\"call\":5}},{\"d\":{\"call\":\"http\",\"with\":[]}}]}",
        "{\"use\":5,\"do\":[{\"a\":{\"raise\":{\"error\":7}}}]}",
        "{\"use\":{\"functions\":[],\"errors\":\"x\",\"extensions\":{},\"secrets\":{}},\"do\":[]}",
        "{\"do\":[{\"a\":{\"listen\":{\"to\":{\"any\":5,\"until\":{\"one\":[],\"until\":{}}}},\"foreach\":3}}]}",
        "{\"do\":[{\"a\":{\"switch\":[1,{},{\"x\":1},{\"y\":{\"then\":[]}}]}}],\"schedule\":[],\"timeout\":5}",
        "{\"do\":[{\"a\":{\"try\":{},\"catch\":{\"errors\":[],\"retry\":[],\"do\":5}}}],\"input\":[],\"output\":\"x\"}",
        "{\"do\":[{\"a\":{\"run\":{\"container\":{\"lifetime\":[]},\"script\":5}}}]}",
        "{\"do\":[{\"a\":{\"call\":\"mcp\",\"with\":{\"transport\":[],\"client\":5}}},{\"b\":{\"call\":\"asyncapi\",\"with\":{\"subscription\":{\"consume\":[]}}}}]}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        int n;
        jv d = check_json(docs[i], &n);
        cr_assert_gt(n, 0, "document %zu accepted", i);
        jv_array_foreach(d, j, diag) {
            cr_assert_eq(jv_get_kind(diag), JV_KIND_OBJECT);
            char m[1200];
            cr_assert(strlen(dstr(diag, "message", m, sizeof m)) > 0);
            jv_free(diag);
        }
        jv_free(d);
    }
    /* An invalid jv and a non-array diags are handled too. */
    jv diags = jv_null();
    cr_assert_eq(cv__dsl_validate(jv_invalid(), jv_null(), NULL, &diags), 1);
    cr_assert_eq(jv_get_kind(diags), JV_KIND_ARRAY);
    jv_free(diags);
}

/* Replaces every node of an example, one at a time, by values of every kind. */
static int mutations;

static void mutate_each(jv root, jv path, jv node)
{
    static const char *const weird[] = {"null", "true", "-1", "1.5", "\"\"", "\"x\"", "\"${ . }\"", "[]",
                                        "{}", "[{}]", "{\"x\":{}}", "[[1]]"};
    for (size_t i = 0; i < sizeof weird / sizeof *weird; i++) {
        jv doc = jv_setpath(jv_copy(root), jv_copy(path), jv_parse(weird[i]));
        if (jv_is_valid(doc)) {
            jv diags = jv_array();
            int n = cv__dsl_validate(doc, jv_null(), "m", &diags);
            cr_assert_eq(n, jv_array_length(diags));
            mutations++;
        }
        jv_free(doc);
    }
    if (jv_get_kind(node) == JV_KIND_OBJECT) {
        jv_object_foreach(node, k, v) {
            mutate_each(root, jv_array_append(jv_copy(path), k), v);
        }
    } else if (jv_get_kind(node) == JV_KIND_ARRAY) {
        jv_array_foreach(node, i, v) {
            mutate_each(root, jv_array_append(jv_copy(path), jv_number(i)), v);
        }
    }
    jv_free(path);
    jv_free(node);
}

Test(validate, survives_every_single_mutation)
{
    const char *names[] = {"try-catch-retry-reusable.yaml", "listen-to-any-until-consumed.yaml",
                           "authentication-oauth2.yaml", "call-asyncapi-subscribe-consume-until.yaml",
                           "run-container-cleanup-eventually.yaml", "switch-then-string.yaml"};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/serverless-workflow/examples", shared_dir());
    DIR *dd = opendir(dir);
    if (!dd)
        cr_skip_test("%s is absent", dir);
    closedir(dd);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        char *text = read_file(path, &len);
        cr_assert_not_null(text);
        jv doc, locs, diags = jv_array();
        cr_assert_eq(cv__yaml_parse(text, len, path, &doc, &locs, &diags), 0);
        free(text);
        mutate_each(doc, jv_array(), jv_copy(doc));
        jv_free(doc);
        jv_free(locs);
        jv_free(diags);
    }
    cr_assert_gt(mutations, 1000);
}
