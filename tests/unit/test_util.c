/*
 * test_util.c — unit tests for src/common/util.c: clocks, UUIDs, timestamps,
 * durations and URI templates.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "conveyor.h"

/* ---- helpers ------------------------------------------------------------ */

static int64_t dur_ok(const char *json_or_iso, int is_json)
{
    jv v = is_json ? jv_parse(json_or_iso) : jv_string(json_or_iso);
    cr_assert(jv_is_valid(v), "bad test input %s", json_or_iso);
    int64_t ms = -1;
    const char *why = NULL;
    int rc = cv__duration_ms(v, &ms, &why);
    jv_free(v);
    cr_assert_eq(rc, CV_OK, "%s rejected: %s", json_or_iso, why ? why : "?");
    return ms;
}

static void dur_bad(const char *json_or_iso, int is_json)
{
    jv v = is_json ? jv_parse(json_or_iso) : jv_string(json_or_iso);
    cr_assert(jv_is_valid(v), "bad test input %s", json_or_iso);
    int64_t ms = -1;
    const char *why = NULL;
    int rc = cv__duration_ms(v, &ms, &why);
    jv_free(v);
    cr_assert_eq(rc, CV_EINVAL, "%s accepted (%lld ms)", json_or_iso, (long long)ms);
    cr_assert(why != NULL && *why, "no reason for %s", json_or_iso);
}

static char *expand(const char *tmpl, const char *vars_json)
{
    jv vars = jv_parse(vars_json);
    char *out = NULL;
    const char *why = NULL;
    int rc = cv__uri_template_expand(tmpl, vars, &out, &why);
    jv_free(vars);
    cr_assert_eq(rc, CV_OK, "%s failed: %s", tmpl, why ? why : "?");
    return out;
}

static void expect_expand(const char *tmpl, const char *vars, const char *want)
{
    char *got = expand(tmpl, vars);
    cr_assert_str_eq(got, want, "%s with %s", tmpl, vars);
    free(got);
}

static void expect_expand_error(const char *tmpl, const char *vars_json)
{
    jv vars = jv_parse(vars_json);
    char *out = (char *)"untouched";
    const char *why = NULL;
    int rc = cv__uri_template_expand(tmpl, vars, &out, &why);
    jv_free(vars);
    cr_assert_eq(rc, CV_EINVAL, "%s with %s should fail", tmpl, vars_json);
    cr_assert_null(out);
    cr_assert(why && *why);
}

/* ---- clocks and ids ----------------------------------------------------- */

Test(util, clocks)
{
    int64_t a = cv__now_ms(), b = cv__now_ms();
    cr_assert(b >= a);
    int64_t w = cv__wall_ms();
    cr_assert(w > INT64_C(1600000000000), "wall clock is ms since the epoch");
}

/*
 * xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx, lowercase hex, V in 8..b. Checked by
 * hand: POSIX regcomp() would resolve to libonig's look-alike in the full
 * build, which links oniguruma.
 */
static int is_uuid4(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdef", s[i]) || !s[i]) {
            return 0;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

Test(util, uuid4_format_and_uniqueness)
{
    cr_assert(!is_uuid4("7f325f07-1b93-3c19-82f1-fa08463d2839"), "version 3 accepted");
    cr_assert(!is_uuid4("7f325f07-1b93-4c19-c2f1-fa08463d2839"), "wrong variant accepted");
    cr_assert(!is_uuid4("7F325F07-1B93-4C19-82F1-FA08463D2839"), "uppercase accepted");
    enum { N = 1000 };
    static char ids[N][37];
    for (int i = 0; i < N; i++) {
        cv__uuid4(ids[i]);
        cr_assert(is_uuid4(ids[i]), "bad uuid %s", ids[i]);
    }
    qsort(ids, N, sizeof ids[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(ids[i - 1], ids[i]);
}

Test(util, rfc3339)
{
    char buf[32];
    cv__rfc3339(0, buf);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00Z");
    cv__rfc3339(INT64_C(1641024000123), buf);
    cr_assert_str_eq(buf, "2022-01-01T08:00:00Z");
    cv__rfc3339(INT64_C(1795262399999), buf); /* milliseconds are dropped, not rounded */
    cr_assert_str_eq(buf, "2026-11-21T11:59:59Z");
    cv__rfc3339(-1, buf); /* just before the epoch */
    cr_assert_str_eq(buf, "1969-12-31T23:59:59Z");
}

Test(util, time_descriptor)
{
    jv d = cv__time_descriptor(INT64_C(1641024000123));
    jv want = jv_parse("{\"iso8601\":\"2022-01-01T08:00:00Z\","
                       "\"epoch\":{\"seconds\":1641024000,\"milliseconds\":1641024000123}}");
    cr_assert(jv_equal(jv_copy(d), jv_copy(want)));
    jv_free(d);
    jv_free(want);
}

/* ---- durations ---------------------------------------------------------- */

Test(util, duration_inline)
{
    cr_assert_eq(dur_ok("{\"seconds\": 30}", 1), 30000);
    cr_assert_eq(dur_ok("{\"milliseconds\": 5}", 1), 5);
    cr_assert_eq(dur_ok("{\"days\":1,\"hours\":2,\"minutes\":3,\"seconds\":4,\"milliseconds\":5}", 1),
                 86400000 + 2 * 3600000 + 3 * 60000 + 4000 + 5);
    cr_assert_eq(dur_ok("{\"minutes\": 0}", 1), 0);
    cr_assert_eq(dur_ok("{\"seconds\": 2.0}", 1), 2000); /* integral JSON number */
}

Test(util, duration_inline_invalid)
{
    dur_bad("{}", 1);
    dur_bad("{\"weeks\": 1}", 1);
    dur_bad("{\"seconds\": 1, \"extra\": 2}", 1);
    dur_bad("{\"seconds\": -1}", 1);
    dur_bad("{\"seconds\": 1.5}", 1);
    dur_bad("{\"seconds\": \"5\"}", 1);
    dur_bad("{\"days\": 1e300}", 1);
    dur_bad("{\"days\": 200000000000000}", 1); /* overflows int64 milliseconds */
    dur_bad("42", 1);
    dur_bad("null", 1);
    dur_bad("[1]", 1);
}

Test(util, duration_iso)
{
    cr_assert_eq(dur_ok("PT0.5S", 0), 500);
    cr_assert_eq(dur_ok("PT1S", 0), 1000);
    cr_assert_eq(dur_ok("PT30S", 0), 30000);
    cr_assert_eq(dur_ok("P1W", 0), 7 * 86400000LL);
    cr_assert_eq(dur_ok("P1DT12H", 0), 36 * 3600000LL);
    cr_assert_eq(dur_ok("P1DT2H3M4.5S", 0), 86400000LL + 2 * 3600000 + 3 * 60000 + 4500);
    cr_assert_eq(dur_ok("PT5M", 0), 300000);
    cr_assert_eq(dur_ok("P1M", 0), 30 * 86400000LL); /* months are 30 days */
    cr_assert_eq(dur_ok("P1Y", 0), 365 * 86400000LL); /* years are 365 days */
    cr_assert_eq(dur_ok("P1Y2M3W4DT5H6M7S", 0),
                 (365 + 60 + 21 + 4) * 86400000LL + 5 * 3600000LL + 6 * 60000 + 7000);
    cr_assert_eq(dur_ok("PT1.5H", 0), 90 * 60000LL); /* fractions wherever the schema allows */
    cr_assert_eq(dur_ok("P0.5D", 0), 12 * 3600000LL);
    cr_assert_eq(dur_ok("PT0.0004S", 0), 0);
    cr_assert_eq(dur_ok("PT0.0005S", 0), 1); /* rounded to the nearest millisecond */
    cr_assert_eq(dur_ok("PT0S", 0), 0);
    cr_assert_eq(dur_ok("PT0.123456789012345678901S", 0), 123);
}

Test(util, duration_iso_invalid)
{
    const char *bad[] = {"",      "P",      "PT",      "P1DT",   "T1S",     "1S",     "PT1",
                         "P1S",   "PT1D",   "P1H",     "PT1.S",  "PT.5S",   "P1M1Y",  "PT1S1M",
                         "P1D1D", "PT1H1H", "pt1s",    "P1DT1S ", " PT1S",  "PT1.2.3S", "P-1D",
                         "PT+1S", "PT1,5S", "P1DX",    "PT99999999999999999999S",
                         "P99999999999999Y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        dur_bad(bad[i], 0);
}

/* ---- URI templates ------------------------------------------------------ */

Test(util, uri_template_basic)
{
    expect_expand("https://petstore.swagger.io/v2/pet/{petId}", "{\"petId\": 1}",
                  "https://petstore.swagger.io/v2/pet/1");
    expect_expand("http://x/{a}/{b}", "{\"a\": \"one\", \"b\": \"two\"}", "http://x/one/two");
    expect_expand("http://x/no-vars?q=1", "{}", "http://x/no-vars?q=1");
    expect_expand("", "{}", "");
    expect_expand("{a}{b}", "{\"a\": \"x\", \"b\": \"y\"}", "xy");
}

Test(util, uri_template_missing_and_null)
{
    expect_expand("http://x/{missing}/end", "{}", "http://x//end");
    expect_expand("http://x/{n}", "{\"n\": null}", "http://x/");
    expect_expand("http://x/{n}", "null", "http://x/"); /* no variables at all */
}

Test(util, uri_template_numbers_and_booleans)
{
    expect_expand("/{n}", "{\"n\": 1.0}", "/1");
    expect_expand("/{n}", "{\"n\": -42}", "/-42");
    expect_expand("/{n}", "{\"n\": 1e15}", "/1000000000000000");
    expect_expand("/{n}", "{\"n\": 1.5}", "/1.5");
    expect_expand("/{n}", "{\"n\": 0.1}", "/0.1");
    expect_expand("/{t}/{f}", "{\"t\": true, \"f\": false}", "/true/false");
}

Test(util, uri_template_encoding)
{
    expect_expand("/{s}", "{\"s\": \"a b/c?d&e=f\"}", "/a%20b%2Fc%3Fd%26e%3Df");
    expect_expand("/{s}", "{\"s\": \"AZaz09-._~\"}", "/AZaz09-._~");
    expect_expand("/{s}", "{\"s\": \"caf\\u00e9\"}", "/caf%C3%A9");
    expect_expand("/{s}", "{\"s\": \"100%\"}", "/100%25");
}

Test(util, uri_template_dotted_name_is_one_key)
{
    expect_expand("/pets/{pet.id}", "{\"pet.id\": 7, \"pet\": {\"id\": 8}}", "/pets/7");
    expect_expand("/pets/{pet.id}", "{\"pet\": {\"id\": 8}}", "/pets/");
    expect_expand("/{a%20b}", "{\"a b\": \"x\"}", "/x");
}

Test(util, uri_template_object_or_array_is_error)
{
    expect_expand_error("/{o}", "{\"o\": {\"a\": 1}}");
    expect_expand_error("/{o}", "{\"o\": [1, 2]}");
}

Test(util, uri_template_check)
{
    const char *why = NULL;
    cr_assert_eq(cv__uri_template_check("http://x/{a}/{b_c}/{pet.id}", &why), CV_OK);
    cr_assert_eq(cv__uri_template_check("no braces", &why), CV_OK);
    const char *bad[] = {"http://x/{a",  "http://x/a}", "{}",     "{a{b}}", "{+a}", "{?q}",
                         "{#f}",         "{a,b}",       "{a*}",   "{a:3}",  "{.a}", "{a.}",
                         "{a..b}",       "{a b}",       "{a%2}",  "{a-b}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        cr_assert_eq(cv__uri_template_check(bad[i], &why), CV_EINVAL, "%s accepted", bad[i]);
        cr_assert(why && *why);
        expect_expand_error(bad[i], "{}");
    }
}
