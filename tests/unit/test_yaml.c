/*
 * test_yaml.c — YAML 1.2 loading: core-schema typing, collections, anchors,
 * duplicate keys, error locations, JSON-pointer locations, limits, hostile
 * bytes, and every example of the specification.
 */
#include "conveyor.h"
#include "json/yaml.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The specification's examples: $CONVEYOR_SHARED (set by tests/run-all.sh to
 * the shared/ folder beside the repository) or /work/shared. */
static const char *examples_dir(void)
{
    static char buf[1024];
    const char *s = getenv("CONVEYOR_SHARED");
    snprintf(buf, sizeof buf, "%s/serverless-workflow/examples", s && *s ? s : "/work/shared");
    return buf;
}
#define EXAMPLES_DIR examples_dir()

/* Parses `text`; asserts success; returns the value (caller frees). When
 * `locs` is not NULL it receives the locations. */
static jv parse_ok(const char *text, jv *locs)
{
    jv v, d = jv_array();
    int rc = cv__yaml_parse(text, strlen(text), "t.yaml", &v, locs, &d);
    if (rc != 0) {
        char *s = cv__json_dump(jv_copy(d));
        cr_log_error("unexpected failure: %s", s);
        free(s);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(jv_array_length(d), 0);
    return v;
}

/* Parses `text` expecting failure; returns the single diagnostic object. */
static jv parse_fail_n(const char *text, size_t len)
{
    jv v, locs, d = jv_array();
    int rc = cv__yaml_parse(text, len, "bad.yaml", &v, &locs, &d);
    cr_assert_eq(rc, CV_EPARSE);
    cr_assert(!jv_is_valid(v));
    jv_free(v);
    jv_free(locs);
    cr_assert_eq(jv_get_kind(d), JV_KIND_ARRAY);
    cr_assert_eq(jv_array_length(jv_copy(d)), 1);
    jv diag = jv_array_get(d, 0);
    return diag;
}

static jv parse_fail(const char *text) { return parse_fail_n(text, strlen(text)); }

static int diag_int(jv diag, const char *key)
{
    jv n = jv_object_get(jv_copy(diag), jv_string(key));
    cr_assert_eq(jv_get_kind(n), JV_KIND_NUMBER, "diag %s is not a number", key);
    int r = (int)jv_number_value(n);
    jv_free(n);
    return r;
}

/* Asserts the diagnostic's message contains `needle` and its place. */
static void assert_diag(jv diag, const char *needle, int line, int col)
{
    jv m = jv_object_get(jv_copy(diag), jv_string("message"));
    cr_assert_eq(jv_get_kind(m), JV_KIND_STRING);
    cr_assert(strstr(jv_string_value(m), needle), "message '%s' lacks '%s'", jv_string_value(m),
              needle);
    jv_free(m);
    jv f = jv_object_get(jv_copy(diag), jv_string("file"));
    cr_assert_str_eq(jv_string_value(f), "bad.yaml");
    jv_free(f);
    jv p = jv_object_get(jv_copy(diag), jv_string("path"));
    cr_assert_str_eq(jv_string_value(p), "");
    jv_free(p);
    if (line > 0)
        cr_assert_eq(diag_int(diag, "line"), line, "line %d, expected %d",
                     diag_int(diag, "line"), line);
    if (col > 0)
        cr_assert_eq(diag_int(diag, "column"), col, "column %d, expected %d",
                     diag_int(diag, "column"), col);
    jv_free(diag);
}

/* Asserts that the JSON text of `v` (consumed) equals `json`. */
static void assert_json(jv v, const char *json)
{
    char *s = cv__json_dump(v);
    cr_assert_str_eq(s, json);
    free(s);
}

static void assert_loc(jv locs, const char *ptr, int line, int col)
{
    jv l = jv_object_get(jv_copy(locs), jv_string(ptr));
    cr_assert_eq(jv_get_kind(l), JV_KIND_ARRAY, "no location for '%s'", ptr);
    int got_line = (int)jv_number_value(jv_array_get(jv_copy(l), 0));
    int got_col = (int)jv_number_value(jv_array_get(jv_copy(l), 1));
    cr_assert(got_line == line && got_col == col, "'%s' at %d:%d, expected %d:%d", ptr, got_line,
              got_col, line, col);
    jv_free(l);
}

/* ---- core schema -------------------------------------------------------------- */

Test(yaml, core_schema_plain_scalars)
{
    jv v = parse_ok("[on, yes, no, off, y, 1.0.3, '1', 1, 1.5, true, True, TRUE, false, FALSE,"
                    " tRue, null, Null, NULL, ~, 0o17, 0x1F, -12, +3, 1e3, .5, -.5e-1, 1.,"
                    " .inf, -.Inf, .NaN, 0o9, 0x, '', \"true\", \"null\", 007]",
                    NULL);
    assert_json(v, "[\"on\",\"yes\",\"no\",\"off\",\"y\",\"1.0.3\",\"1\",1,1.5,true,true,true,"
                   "false,false,\"tRue\",null,null,null,null,15,31,-12,3,1000,0.5,-0.05,1,"
                   "\".inf\",\"-.Inf\",\".NaN\",\"0o9\",\"0x\",\"\",\"true\",\"null\",7]");
}

Test(yaml, empty_mapping_value_is_null)
{
    jv v = parse_ok("a:\nb: ~\nc: ''\n", NULL);
    assert_json(v, "{\"a\":null,\"b\":null,\"c\":\"\"}");
}

Test(yaml, block_scalars_are_strings)
{
    jv v = parse_ok("lit: |\n  true\n  12\nfold: >\n  one\n  two\nkeep: |+\n  x\n\nstrip: |-\n  "
                    "1.5\nq: \"12\"\n",
                    NULL);
    assert_json(v, "{\"lit\":\"true\\n12\\n\",\"fold\":\"one two\\n\",\"keep\":\"x\\n\\n\","
                   "\"strip\":\"1.5\",\"q\":\"12\"}");
}

Test(yaml, flow_and_block_collections)
{
    jv v = parse_ok("a: {x: 1, y: [a, b, {z: null}]}\nb:\n  - 1\n  - - nested\n  - k: v\n    "
                    "k2: [ ]\nc: {}\n",
                    NULL);
    assert_json(v, "{\"a\":{\"x\":1,\"y\":[\"a\",\"b\",{\"z\":null}]},\"b\":[1,[\"nested\"],{"
                   "\"k\":\"v\",\"k2\":[]}],\"c\":{}}");
}

Test(yaml, key_order_is_kept)
{
    jv v = parse_ok("zeta: 1\nalpha: 2\nmid: 3\n", NULL);
    assert_json(v, "{\"zeta\":1,\"alpha\":2,\"mid\":3}");
}

Test(yaml, tags)
{
    jv v = parse_ok("a: !!str 12\nb: !!int \"12\"\nc: !!float 3\nd: !!bool \"true\"\ne: !!null "
                    "''\nf: ! 12\ng: !custom 12\nh: !!binary aGk=\ni: !!str true\n",
                    NULL);
    assert_json(v, "{\"a\":\"12\",\"b\":12,\"c\":3,\"d\":true,\"e\":null,\"f\":\"12\",\"g\":12,"
                   "\"h\":\"aGk=\",\"i\":\"true\"}");
    assert_diag(parse_fail("a: 1\nb: !!int abc\n"), "not a valid !!int", 2, 10);
    assert_diag(parse_fail("a: !!bool yes\n"), "not a valid !!bool", 1, 11);
    assert_diag(parse_fail("a: !!str [1]\n"), "cannot be used on a sequence", 1, 10);
    assert_diag(parse_fail("a: !!seq {b: 1}\n"), "cannot be used on a mapping", 1, 10);
}

Test(yaml, non_string_keys_become_text)
{
    jv v = parse_ok("1: a\ntrue: b\n~: c\n1.50: d\n? [x, 2]\n: e\n", NULL);
    assert_json(v, "{\"1\":\"a\",\"true\":\"b\",\"~\":\"c\",\"1.50\":\"d\",\"[\\\"x\\\",2]\":\"e\"}");
    assert_diag(parse_fail("1: a\n\"1\": b\n"), "duplicate key '1'", 2, 1);
}

Test(yaml, json_documents)
{
    const char *json = "{\n  \"key\": \"value\",\n  \"n\": 123456789012,\n  \"big\": "
                       "12345678901234567890,\n  \"f\": -1.25e-3,\n  \"huge\": 1e400,\n  "
                       "\"arr\": [true, false, null, {\"x\": []}],\n  \"esc\": \"a\\u00e9\\n\\t\"\n}";
    jv locs;
    jv v = parse_ok(json, &locs);
    assert_json(jv_copy(v), "{\"key\":\"value\",\"n\":123456789012,\"big\":12345678901234567000,"
                            "\"f\":-0.00125,\"huge\":1.7976931348623157e+308,\"arr\":[true,false,"
                            "null,{\"x\":[]}],\"esc\":\"a\xc3\xa9\\n\\t\"}");
    /* exactly the value jq's own JSON parser gives */
    jv expect = jv_parse(json);
    cr_assert(jv_equal(v, expect));
    assert_loc(locs, "/key", 2, 10);
    assert_loc(locs, "/arr/3/x", 7, 36);
    jv_free(locs);
}

/* ---- anchors and aliases -------------------------------------------------------- */

Test(yaml, anchors_and_aliases)
{
    jv locs;
    jv v = parse_ok("base: &b {retries: 3, tags: [x, y]}\nname: &n svc\ncopy: *b\nlist: [*n, "
                    "*n]\nover: &n other\nlast: *n\n",
                    &locs);
    assert_json(v, "{\"base\":{\"retries\":3,\"tags\":[\"x\",\"y\"]},\"name\":\"svc\",\"copy\":{"
                   "\"retries\":3,\"tags\":[\"x\",\"y\"]},\"list\":[\"svc\",\"svc\"],\"over\":"
                   "\"other\",\"last\":\"other\"}");
    assert_loc(locs, "/copy", 3, 7);       /* the alias itself */
    assert_loc(locs, "/copy/retries", 1, 20); /* nodes below: where they were written */
    assert_loc(locs, "/copy/tags/1", 1, 33);
    assert_loc(locs, "/list/1", 4, 12);
    jv_free(locs);
}

Test(yaml, unknown_and_recursive_aliases_fail)
{
    assert_diag(parse_fail("a: *nope\n"), "alias '*nope'", 1, 4);
    assert_diag(parse_fail("a: &r [1, *r]\n"), "alias '*r'", 1, 11);
}

Test(yaml, alias_bomb_is_refused)
{
    char doc[2048];
    size_t off = 0;
    off += (size_t)snprintf(doc + off, sizeof doc - off, "a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        char p = (char)('a' + i - 1), n = (char)('a' + i);
        off += (size_t)snprintf(doc + off, sizeof doc - off,
                                "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", n,
                                n, p, p, p, p, p, p, p, p, p, p);
    }
    assert_diag(parse_fail(doc), "more than 1000000 nodes (too many aliases?)", 6, 0);
}

Test(yaml, node_limit_without_aliases)
{
    /* a million and one items in a flow sequence: no alias to blame */
    size_t n = 1000001;
    char *doc = malloc(2 * n + 2), *p = doc;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        *p++ = '0';
        *p++ = i + 1 < n ? ',' : ']';
    }
    *p = 0;
    jv d = parse_fail(doc);
    jv m = jv_object_get(jv_copy(d), jv_string("message"));
    cr_assert(!strstr(jv_string_value(m), "alias"), "%s", jv_string_value(m));
    jv_free(m);
    assert_diag(d, "document has more than 1000000 nodes", 1, 0);
    free(doc);
}

/* Appends `n` copies of `ch` at *p. */
static void put_n(char **p, char ch, size_t n)
{
    memset(*p, ch, n);
    *p += n;
}

Test(yaml, depth_limit)
{
    char *doc = malloc(1024), *p = doc;
    put_n(&p, '[', 300);
    put_n(&p, ']', 300);
    *p = 0;
    assert_diag(parse_fail(doc), "nested more than 256 levels", 1, 257);

    p = doc; /* 256 levels are fine */
    put_n(&p, '[', 256);
    put_n(&p, ']', 256);
    *p = 0;
    jv v = parse_ok(doc, NULL);
    cr_assert_eq(jv_get_kind(v), JV_KIND_ARRAY);
    jv_free(v);

    p = doc; /* aliases cannot be used to go deeper */
    memcpy(p, "a: &a ", 6);
    p += 6;
    put_n(&p, '[', 200);
    put_n(&p, ']', 200);
    memcpy(p, "\nb: ", 4);
    p += 4;
    put_n(&p, '[', 100);
    memcpy(p, "*a", 2);
    p += 2;
    put_n(&p, ']', 100);
    *p = 0;
    assert_diag(parse_fail(doc), "nested more than 256 levels", 2, 104);
    free(doc);
}

/* libfyaml 0.7.12 misreads runs of escaped quotes and leaks a buffer on five
 * or more (yaml.c decodes single-quoted scalars itself); the first document
 * is the fuzzer's input that showed the leak, on a parse that fails. Run
 * under build-asan for the leak half. */
Test(yaml, single_quoted_escaped_quote_runs)
{
    assert_diag(parse_fail("dgreee: seed\n'''''''''''''''''''''''''''''''''''''''''''''''''''''''"
                           "''''''''''''''': '0.1.0'\n0 version: set;\n\n0-W  o1\n"),
                "invalid value after mapping", 5, 1);
    assert_json(parse_ok("a: 'x''y'\nb: 'x''''y'\nc: ''''''\nd: ''''''''''''\n"
                         "e: 'ab''''''''''''cd'\n'k''''': 1\n",
                         NULL),
                "{\"a\":\"x'y\",\"b\":\"x''y\",\"c\":\"''\",\"d\":\"'''''\","
                "\"e\":\"ab''''''cd\",\"k''\":1}");
    /* folding of multi-line single-quoted scalars (YAML 1.2 example 7.9),
     * CRLF line breaks, and the blank edges kept inside the quotes */
    assert_json(parse_ok("' 1st non-empty\n\n 2nd non-empty \n 3rd non-empty '", NULL),
                "\" 1st non-empty\\n2nd non-empty 3rd non-empty \"");
    assert_json(parse_ok("a: 'one\r\n  two\r\n\r\n  three'\r\n", NULL),
                "{\"a\":\"one two\\nthree\"}");
    assert_json(parse_ok("['\n  x  \n  ', ' a ''''\n  b']", NULL), "[\" x \",\" a '' b\"]");
    /* tags still apply to the decoded text */
    assert_json(parse_ok("[!!int '12', !!str 'true', !!bool 'false']", NULL),
                "[12,\"true\",false]");
    jv locs;
    jv v = parse_ok("a:\n  - 'x''''y'\n", &locs);
    assert_loc(locs, "/a/0", 2, 5);
    jv_free(locs);
    jv_free(v);
}

/* Found by fuzzing: libfyaml 0.7.12's fy_token_get_text leaks (and returns
 * partly uninitialized text) on a double-quoted scalar whose blank lines end
 * in CRLF; yaml.c reads scalars through the token iterator instead. How many
 * newlines the blank lines make follows libfyaml (one too many here). Run
 * under build-asan for the leak half. */
Test(yaml, double_quoted_blank_crlf_lines)
{
    jv v = parse_ok("\"x\t\t\r\n\n\n\t\r\n\n\n\n \t\"", NULL);
    cr_assert_eq(jv_get_kind(v), JV_KIND_STRING);
    const char *s = jv_string_value(v);
    cr_assert_eq(s[0], 'x');
    cr_assert(strlen(s) > 3 && strspn(s + 1, "\n") == strlen(s) - 1, "'%s'", s);
    jv_free(v);
    assert_json(parse_ok("[\"a\\tb\\u00e9\\x41\", \"one\r\n  two\", \"l1\\\n  l2\"]", NULL),
                "[\"a\\tbéA\",\"one two\",\"l1l2\"]");
}

/* Inputs whose cost grew with the square of their size (found by reading the
 * code while fuzzing; the timeouts turn a regression into a failure, not a
 * hung suite). A long key is repeated in the pointer of every node below it:
 * without locations no pointer is built, with them their total is bounded. */
Test(yaml, long_key_above_many_nodes, .timeout = 60)
{
    size_t klen = 200000, n = 20000;
    char *doc = malloc(klen + 2 * n + 8), *p = doc;
    put_n(&p, 'k', klen);
    memcpy(p, ": [", 3);
    p += 3;
    for (size_t i = 0; i < n; i++) {
        *p++ = 'x';
        *p++ = i + 1 < n ? ',' : ']';
    }
    size_t len = (size_t)(p - doc);
    jv v, d = jv_array();
    cr_assert_eq(cv__yaml_parse(doc, len, "big.yaml", &v, NULL, &d), 0);
    jv list = jv_object_get(v, jv_string_sized(doc, (int)klen));
    cr_assert_eq(jv_array_length(list), (int)n);
    jv_free(d);
    /* with locations: 4 GB of pointers, refused at 64 MiB */
    assert_diag(parse_fail_n(doc, len), "too large to locate", 1, 0);
    free(doc);
}

/* Aliases to big strings: few nodes, gigabytes of text. */
Test(yaml, alias_text_bomb_is_refused, .timeout = 60)
{
    char *doc = malloc(20000), *p = doc;
    memcpy(p, "a: &a \"", 7);
    p += 7;
    put_n(&p, 's', 8000);
    memcpy(p, "\"\nb: &b [", 9);
    p += 9;
    for (int i = 0; i < 1000; i++) {
        memcpy(p, i ? ", *a" : "*a", i ? 4 : 2);
        p += i ? 4 : 2;
    }
    memcpy(p, "]\nc: [*b, *b]\n", 14); /* 8 MB each: fine */
    p += 14;
    size_t ok_len = (size_t)(p - doc);
    jv v, d = jv_array();
    cr_assert_eq(cv__yaml_parse(doc, ok_len, "t.yaml", &v, NULL, &d), 0);
    jv c = jv_object_get(v, jv_string("c"));
    cr_assert_eq(jv_array_length(c), 2);
    jv_free(d);
    p -= 2; /* 12 of them: 96 MB */
    memcpy(p, ", *b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n", 42);
    p += 42;
    assert_diag(parse_fail_n(doc, (size_t)(p - doc)), "more than 64 MiB of text through aliases",
                3, 33);
    free(doc);
}

/* Block scalars were located by counting lines from the start of the text. */
Test(yaml, many_block_scalars_are_located, .timeout = 60)
{
    size_t n = 100000;
    char *doc = malloc(7 * n + 1), *p = doc;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, "- |\n x\n", 7);
        p += 7;
    }
    *p = 0;
    jv locs;
    jv v = parse_ok(doc, &locs);
    cr_assert_eq(jv_array_length(v), (int)n);
    assert_loc(locs, "/0", 1, 3);
    assert_loc(locs, "/99999", 199999, 3);
    jv_free(locs);
    free(doc);
    v = parse_ok("a: 1\nb: |\n\n\n  text\nc:   >-  # note\n  x\n\xc3\xa9: |\n  y\n", &locs);
    assert_loc(locs, "/b", 2, 4);
    assert_loc(locs, "/c", 6, 6);
    assert_loc(locs, "/\xc3\xa9", 8, 4);
    jv_free(locs);
    jv_free(v);
}

/* Huge numbers saturate as in jq (no undefined conversion on the way). */
Test(yaml, huge_numbers_saturate)
{
    char doc[2048], *p = doc;
    memcpy(p, "[", 1);
    p += 1;
    put_n(&p, '9', 400);
    memcpy(p, ", 0x", 4);
    p += 4;
    put_n(&p, 'F', 300);
    memcpy(p, ", 0o", 4);
    p += 4;
    put_n(&p, '7', 400);
    memcpy(p, ", -1e400, 1e-400, !!float .5e99999999999999999999]", 50);
    p += 50;
    *p = 0;
    assert_json(parse_ok(doc, NULL),
                "[1.7976931348623157e+308,1.7976931348623157e+308,1.7976931348623157e+308,"
                "-1.7976931348623157e+308,0,1.7976931348623157e+308]");
}

/* ---- errors ------------------------------------------------------------------------ */

Test(yaml, duplicate_keys_located_at_second_key)
{
    assert_diag(parse_fail("do:\n  - a: 1\nname: x\ndo: []\n"), "duplicate key 'do'", 4, 1);
    assert_diag(parse_fail("a:\n  b: 1\n  c: 2\n  b: 3\n"), "duplicate key 'b'", 4, 3);
    assert_diag(parse_fail("{x: 1, y: 2, x: 3}"), "duplicate key 'x'", 1, 14);
}

Test(yaml, malformed_yaml_line_numbers)
{
    assert_diag(parse_fail("a: 1\nb: c: d\n"), "mapping", 2, 5);
    assert_diag(parse_fail("ok: 1\nlist: [1, 2\nnext: 3\n"), "flow sequence", 0, 0);
    assert_diag(parse_fail("a:\n  b: 1\n c: 2\n"), "indentation", 3, 2);
    assert_diag(parse_fail("x: 1\ny: \"unterminated\n"), "double-quoted scalar without closing",
                2, 0);
    assert_diag(parse_fail("- a\nb: 1\n"), "block sequence", 2, 1);
    assert_diag(parse_fail("a: 1\n  b: 2\n"), "check the indentation", 1, 4);
    assert_diag(parse_fail("a: [1, 2]]\n"), "extra closing bracket", 1, 10);
    assert_diag(parse_fail("a: {b: 1\n"), "flow mapping", 2, 1);
    assert_diag(parse_fail("@foo: 1\n"), "cannot start with '@'", 1, 1);
    assert_diag(parse_fail("%YAML 1.2\n%YAML 1.2\n---\na: 1\n"), "duplicate version directive",
                2, 0);
}

Test(yaml, empty_and_multiple_documents)
{
    assert_diag(parse_fail(""), "empty document", 1, 1);
    assert_diag(parse_fail("# only a comment\n\n"), "empty document", 0, 0);
    assert_diag(parse_fail("a: 1\n---\nb: 2\n"), "expected a single document", 2, 1);
    jv v = parse_ok("---\na: 1\n...\n", NULL);
    assert_json(v, "{\"a\":1}");
}

Test(yaml, bare_scalar_documents)
{
    assert_json(parse_ok("42", NULL), "42");
    assert_json(parse_ok("hello world", NULL), "\"hello world\"");
    assert_json(parse_ok("--- |\n  text\n", NULL), "\"text\\n\"");
    jv locs;
    jv v = parse_ok("  true\n", &locs);
    assert_json(v, "true");
    assert_loc(locs, "", 1, 3);
    jv_free(locs);
}

Test(yaml, hostile_bytes)
{
    assert_diag(parse_fail_n("a: 1\nb: x\0y\n", 11), "NUL byte", 2, 5);
    assert_diag(parse_fail("a: caf\xc3\xa9\nb: \xff\n"), "invalid UTF-8", 2, 4);
    assert_diag(parse_fail("a: \xc0\xaf\n"), "invalid UTF-8", 1, 4);         /* overlong */
    assert_diag(parse_fail("a: \xed\xa0\x80\n"), "invalid UTF-8", 1, 4);     /* surrogate */
    assert_diag(parse_fail("a: \xe2\x82"), "invalid UTF-8", 1, 4);           /* truncated */
    /* not NUL-terminated: only `len` bytes are read */
    char buf[8] = {'a', ':', ' ', '1', 'X', 'Y', ':', ':'};
    jv v, d = jv_array();
    cr_assert_eq(cv__yaml_parse(buf, 4, "n", &v, NULL, &d), 0);
    assert_json(v, "{\"a\":1}");
    jv_free(d);
    /* a NULL diags pointer and NULL text are tolerated */
    cr_assert_eq(cv__yaml_parse(NULL, 0, NULL, &v, NULL, NULL), CV_EPARSE);
    jv_free(v);
}

Test(yaml, random_bytes_never_crash)
{
    static const char alpha[] = "ab:- \n\t[]{},&*!'\"|>?#~.01e%\\@`\xc3\xa9";
    char buf[160];
    unsigned seed = 12345;
    for (int it = 0; it < 20000; it++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alpha[(seed >> 16) % (sizeof alpha - 1)];
        }
        jv v, locs, d = jv_array();
        int rc = cv__yaml_parse(buf, n, "f", &v, &locs, &d);
        if (rc == 0) {
            cr_assert_eq(jv_array_length(jv_copy(d)), 0);
            cr_assert(jv_is_valid(v));
            jv_free(locs);
        } else {
            cr_assert_eq(rc, CV_EPARSE);
            cr_assert_eq(jv_array_length(jv_copy(d)), 1);
        }
        jv_free(v);
        jv_free(d);
    }
}

/* ---- locations ------------------------------------------------------------------------ */

Test(yaml, locs_pointers_and_escaping)
{
    jv locs;
    jv v = parse_ok("document:\n  name: x\ndo:\n  - first:\n      set: {a: 1}\n"
                    "paths:\n  /pets/{id}: get\n  a~b: tilde\n  ~/x: both\n",
                    &locs);
    jv_free(v);
    assert_loc(locs, "", 1, 1);
    assert_loc(locs, "/document", 2, 3);
    assert_loc(locs, "/document/name", 2, 9);
    assert_loc(locs, "/do", 4, 3);
    assert_loc(locs, "/do/0", 4, 5);
    assert_loc(locs, "/do/0/first", 5, 7);
    assert_loc(locs, "/do/0/first/set", 5, 12);
    assert_loc(locs, "/do/0/first/set/a", 5, 16);
    assert_loc(locs, "/paths/~1pets~1{id}", 7, 15);
    assert_loc(locs, "/paths/a~0b", 8, 8);
    assert_loc(locs, "/paths/~0~1x", 9, 8);
    cr_assert_eq(jv_object_length(locs), 12);
}

/* ---- the specification's examples ---------------------------------------------------- */

/* Resolves an RFC 6901 pointer in `v` (borrowed). Returns a new reference or
 * jv_invalid(). */
static jv pointer_get(jv v, const char *ptr)
{
    jv cur = jv_copy(v);
    const char *p = ptr;
    while (*p) {
        cr_assert_eq(*p, '/');
        p++;
        jv seg = jv_string("");
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                cr_assert(*p == '0' || *p == '1', "bad escape in %s", ptr);
                ch = *p++ == '0' ? '~' : '/';
            }
            seg = jv_string_append_buf(seg, &ch, 1);
        }
        jv next = jv_invalid();
        if (jv_get_kind(cur) == JV_KIND_OBJECT) {
            if (jv_object_has(jv_copy(cur), jv_copy(seg)))
                next = jv_object_get(jv_copy(cur), jv_copy(seg));
        } else if (jv_get_kind(cur) == JV_KIND_ARRAY) {
            int i = atoi(jv_string_value(seg));
            if (i >= 0 && i < jv_array_length(jv_copy(cur)))
                next = jv_array_get(jv_copy(cur), i);
        }
        jv_free(seg);
        jv_free(cur);
        cur = next;
        if (!jv_is_valid(cur))
            break;
    }
    return cur;
}

/* Counts nodes of a value (every one needs a location). Borrows `v`. */
static int count_nodes(jv v)
{
    int n = 1;
    if (jv_get_kind(v) == JV_KIND_ARRAY) {
        jv_array_foreach(v, i, item) { n += count_nodes(item); jv_free(item); }
    } else if (jv_get_kind(v) == JV_KIND_OBJECT) {
        jv_object_foreach(v, k, item) { n += count_nodes(item); jv_free(k); jv_free(item); }
    }
    return n;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

Test(yaml, specification_examples_load_and_locs_resolve)
{
    DIR *dir = opendir(EXAMPLES_DIR);
    if (!dir) {
        cr_log_warn("%s is absent: examples not checked", EXAMPLES_DIR);
        return;
    }
    int files = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 5, ".yaml") != 0)
            continue;
        char path[2048];
        int pn = snprintf(path, sizeof path, "%s/%s", EXAMPLES_DIR, de->d_name);
        cr_assert(pn > 0 && (size_t)pn < sizeof path, "path too long");
        size_t len;
        char *text = read_all(path, &len);
        cr_assert(text, "cannot read %s", path);
        jv v, locs, d = jv_array();
        int rc = cv__yaml_parse(text, len, path, &v, &locs, &d);
        free(text);
        if (rc != 0) {
            char *s = cv__json_dump(jv_copy(d));
            cr_log_error("%s", s);
            free(s);
        }
        cr_assert_eq(rc, 0, "%s failed to load", path);
        jv_free(d);
        cr_assert_eq(jv_get_kind(v), JV_KIND_OBJECT, "%s", path);
        jv doc = jv_object_get(jv_copy(v), jv_string("document"));
        cr_assert_eq(jv_get_kind(doc), JV_KIND_OBJECT, "%s has no document", path);
        jv dsl = jv_object_get(doc, jv_string("dsl"));
        cr_assert_eq(jv_get_kind(dsl), JV_KIND_STRING, "%s: dsl is not a string", path);
        jv_free(dsl);

        /* property: every pointer resolves, and every node has one */
        int nlocs = 0;
        jv_object_foreach(locs, ptr, loc)
        {
            jv target = pointer_get(v, jv_string_value(ptr));
            cr_assert(jv_is_valid(target), "%s: pointer '%s' does not resolve", path,
                      jv_string_value(ptr));
            jv_free(target);
            cr_assert_eq(jv_array_length(jv_copy(loc)), 2);
            cr_assert(jv_number_value(jv_array_get(jv_copy(loc), 0)) >= 1);
            cr_assert(jv_number_value(jv_array_get(jv_copy(loc), 1)) >= 1);
            nlocs++;
            jv_free(ptr);
            jv_free(loc);
        }
        cr_assert_eq(nlocs, count_nodes(v), "%s: %d locations for %d nodes", path, nlocs,
                     count_nodes(v));
        jv_free(locs);
        jv_free(v);
        files++;
    }
    closedir(dir);
    cr_assert_eq(files, 66, "expected 66 examples, loaded %d", files);
}

Test(yaml, schedule_on_key_is_a_string)
{
    jv v = parse_ok("schedule:\n  on:\n    one: {}\nyes: no\n", NULL);
    assert_json(v, "{\"schedule\":{\"on\":{\"one\":{}}},\"yes\":\"no\"}");
}

Test(yaml, json_dump)
{
    char *s = cv__json_dump(JV_OBJECT(jv_string("a"), JV_ARRAY(jv_number(1), jv_null())));
    cr_assert_str_eq(s, "{\"a\":[1,null]}");
    free(s);
}
