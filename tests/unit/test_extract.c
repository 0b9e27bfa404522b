/*
 * test_extract.c — the field extractor (src/ml/extract.h): every built-in
 * kind on valid and invalid values, user patterns with normalizers and
 * validators, located definition errors, and hostile input (long, binary,
 * mixed scripts, catastrophic patterns) that must end with a result or a
 * clear error. Fixtures are under tests/extract/ (written for these tests).
 */
#include "conveyor.h"
#include "ml/extract.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(extract, .timeout = 60);

/* One field of kind `kind` (extra YAML lines appended to the field). */
static cv_extractor *one(const char *kind, const char *extra)
{
    char y[2048];
    snprintf(y, sizeof y, "fields:\n  - name: f\n    kind: %s\n%s", kind, extra ? extra : "");
    cv_extractor *x = NULL;
    jv err = jv_null();
    int rc = cv__extractor_load(y, strlen(y), "t.yaml", &x, &err);
    if (rc) {
        jv d = jv_dump_string(err, 0);
        cr_assert_fail("definition refused: %s", jv_string_value(d));
    }
    jv_free(err);
    return x;
}

/* The value of field f in `text` as JSON text, "null" when absent (caller frees). */
static char *get(cv_extractor *x, const char *text, double *conf)
{
    jv r = cv__extract_run(x, text, strlen(text));
    cr_assert(jv_is_valid(r), "extraction failed");
    jv v = jv_object_get(jv_object_get(jv_copy(r), jv_string("fields")), jv_string("f"));
    if (conf)
        *conf = jv_number_value(
            jv_object_get(jv_object_get(jv_copy(r), jv_string("confidence")), jv_string("f")));
    jv_free(r);
    jv s = jv_dump_string(v, JV_PRINT_SORTED);
    char *out = strdup(jv_string_value(s));
    jv_free(s);
    return out;
}

static void expect(const char *kind, const char *extra, const char *text, const char *want)
{
    cv_extractor *x = one(kind, extra);
    char *got = get(x, text, NULL);
    cr_expect_str_eq(got, want, "%s in \"%s\"", kind, text);
    free(got);
    cv__extractor_free(x);
}

/* The detail of a refused definition. */
static char *refused(const char *yaml)
{
    cv_extractor *x = NULL;
    jv err = jv_null();
    int rc = cv__extractor_load(yaml, strlen(yaml), "def.yaml", &x, &err);
    cr_assert(rc != 0, "definition accepted: %s", yaml);
    cr_assert_null(x);
    jv t = jv_object_get(jv_copy(err), jv_string("type"));
    cr_expect(strstr(jv_string_value(t), "configuration") != NULL);
    jv_free(t);
    jv st = jv_object_get(jv_copy(err), jv_string("status"));
    cr_expect_eq(jv_number_value(st), 400);
    jv_free(st);
    jv d = jv_object_get(err, jv_string("detail"));
    char *s = strdup(jv_string_value(d));
    jv_free(d);
    return s;
}

#define REFUSED(yaml, substr)                                                  \
    do {                                                                       \
        char *d_ = refused(yaml);                                              \
        cr_expect(strstr(d_, substr) != NULL, "got \"%s\", want \"%s\"", d_, substr); \
        free(d_);                                                              \
    } while (0)

/* ------------------------------------------------------------------ IBAN */

Test(extract, iban_valid_countries)
{
    expect("iban", NULL, "Pay to DE89 3704 0044 0532 0130 00 please", "\"DE89370400440532013000\"");
    expect("iban", NULL, "IBAN: GB82WEST12345698765432.", "\"GB82WEST12345698765432\"");
    expect("iban", NULL, "FR14 2004 1010 0505 0001 3M02 606", "\"FR1420041010050500013M02606\"");
    expect("iban", NULL, "compte NL91ABNA0417164300", "\"NL91ABNA0417164300\"");
    expect("iban", NULL, "CH93 0076 2011 6238 5295 7", "\"CH9300762011623852957\"");
    expect("iban", NULL, "BE68 5390 0754 7034", "\"BE68539007547034\"");
    expect("iban", NULL, "NO9386011117947", "\"NO9386011117947\"");
}

Test(extract, iban_invalid)
{
    /* checksum: one digit changed */
    expect("iban", NULL, "DE89 3704 0044 0532 0130 01", "null");
    expect("iban", NULL, "GB82WEST12345698765433", "null");
    /* length: one digit short / unknown country */
    expect("iban", NULL, "DE89 3704 0044 0532 0130 0", "null");
    expect("iban", NULL, "ZZ89370400440532013000", "null");
    expect("iban", NULL, "NL91ABNA04171643001", "null");
}

/* ----------------------------------------------------------------- dates */

Test(extract, dates_formats)
{
    expect("date", NULL, "due 2024-03-12.", "\"2024-03-12\"");
    expect("date", NULL, "due 12/03/2024", "\"2024-03-12\"");
    expect("date", "    day_first: false\n", "due 03/12/2024", "\"2024-03-12\"");
    expect("date", NULL, "le 12.03.2024", "\"2024-03-12\"");
    expect("date", NULL, "on 12 March 2024", "\"2024-03-12\"");
    expect("date", NULL, "on March 12, 2024", "\"2024-03-12\"");
    expect("date", NULL, "on Mar 1st, 2024", "\"2024-03-01\"");
    expect("date", NULL, "on 5 sept. 2023", "\"2023-09-05\"");
    expect("date", NULL, "12/03/24", "\"2024-03-12\"");
    expect("date", NULL, "12/03/85", "\"1985-03-12\"");
    expect("date", NULL, "29/02/2024", "\"2024-02-29\"");
    /* unambiguous month-first although day-first is the default */
    expect("date", NULL, "03/25/2024", "\"2024-03-25\"");
}

Test(extract, dates_invalid)
{
    expect("date", NULL, "31/02/2024", "null");
    expect("date", NULL, "29/02/2023", "null");
    expect("date", NULL, "2024-13-01", "null");
    expect("date", NULL, "32 March 2024", "null");
    expect("date", NULL, "00/01/2024", "null");
    expect("date", "    day_first: true\n", "03/25/2024", "null");
}

Test(extract, dates_confidence)
{
    double c1, c2, c3;
    cv_extractor *x = one("date", NULL);
    free(get(x, "2024-03-12", &c1));
    free(get(x, "05/04/2024", &c2));
    cv__extractor_free(x);
    x = one("date", "    day_first: true\n");
    free(get(x, "05/04/2024", &c3));
    cv__extractor_free(x);
    cr_expect(c1 > c3 && c3 > c2, "%g %g %g", c1, c3, c2);
}

/* ----------------------------------------------------------------- money */

Test(extract, money_symbols_and_codes)
{
    expect("money", NULL, "Total: €1,234.56", "{\"amount\":1234.56,\"currency\":\"EUR\"}");
    expect("money", NULL, "Total: 1.234,56 €", "{\"amount\":1234.56,\"currency\":\"EUR\"}");
    expect("money", NULL, "Total 1 234,56 EUR", "{\"amount\":1234.56,\"currency\":\"EUR\"}");
    expect("money", NULL, "CHF 1'234.50", "{\"amount\":1234.5,\"currency\":\"CHF\"}");
    expect("money", NULL, "USD 99", "{\"amount\":99,\"currency\":\"USD\"}");
    expect("money", NULL, "99.90 GBP", "{\"amount\":99.9,\"currency\":\"GBP\"}");
    expect("money", NULL, "£12.5", "{\"amount\":12.5,\"currency\":\"GBP\"}");
    expect("money", NULL, "refund -€40.00", "{\"amount\":-40,\"currency\":\"EUR\"}");
    expect("money", NULL, "refund €-40", "{\"amount\":-40,\"currency\":\"EUR\"}");
    expect("money", NULL, "solde -12,30 EUR", "{\"amount\":-12.3,\"currency\":\"EUR\"}");
    expect("money", NULL, "$5", "{\"amount\":5,\"currency\":\"USD\"}");
    expect("money", "    currency: CAD\n", "$5", "{\"amount\":5,\"currency\":\"CAD\"}");
    expect("money", NULL, "¥1,000", "{\"amount\":1000,\"currency\":\"JPY\"}");
    expect("money", NULL, "1,234,567.89 USD", "{\"amount\":1234567.89,\"currency\":\"USD\"}");
}

Test(extract, money_rejects)
{
    expect("money", NULL, "no currency 1234.56", "null");
    expect("money", NULL, "mixed 1,234.567,89 EUR", "null");
    expect("money", NULL, "EURO 12", "null");
}

Test(extract, money_prefers_explicit_code)
{
    double c;
    cv_extractor *x = one("money", NULL);
    char *v = get(x, "approx $10, exactly 12.00 EUR", &c);
    cr_expect_str_eq(v, "{\"amount\":12,\"currency\":\"EUR\"}");
    free(v);
    cv__extractor_free(x);
}

/* ------------------------------------------------- email, phone, url, card */

Test(extract, email)
{
    expect("email", NULL, "write to Jane.Doe+bills@Example.COM today", "\"Jane.Doe+bills@example.com\"");
    expect("email", NULL, "not an email: a@b", "null");
    expect("email", NULL, "почта: info@example.org, спасибо", "\"info@example.org\"");
}

Test(extract, phone)
{
    expect("phone", NULL, "call +44 (0)20 7946 0958", "\"+442079460958\"");
    expect("phone", NULL, "tel 0033 1 23 45 67 89", "\"+33123456789\"");
    expect("phone", "    region: FR\n", "tel 01 23 45 67 89", "\"+33123456789\"");
    expect("phone", "    region: US\n", "call (555) 123-4567", "\"+15551234567\"");
    expect("phone", "    region: IT\n", "tel 06 1234 5678", "\"+390612345678\"");
    expect("phone", NULL, "tel 01 23 45 67 89", "\"0123456789\"");
    expect("phone", NULL, "short 12 34", "null");
}

Test(extract, url)
{
    expect("url", NULL, "see https://example.com/a?b=1.", "\"https://example.com/a?b=1\"");
    expect("url", NULL, "(http://x.org/path)", "\"http://x.org/path)\"");
    expect("url", NULL, "ftp://example.com", "null");
}

Test(extract, card_luhn)
{
    expect("card", NULL, "card 4111 1111 1111 1111 exp", "\"************1111\"");
    expect("card", NULL, "card 5500-0000-0000-0004", "\"************0004\"");
    expect("card", NULL, "card 4111 1111 1111 1112", "null");
    expect("card", NULL, "amex 3782 822463 10005", "\"***********0005\"");
    expect("card", NULL, "too short 4111111", "null");
}

/* -------------------------------------------------------- user patterns */

Test(extract, pattern_group_normalize_validate)
{
    expect("pattern", "    pattern: 'order #(?<n>[0-9 ]+)'\n    group: n\n    normalize: [digits]\n",
           "order #12 34 56", "\"123456\"");
    expect("pattern", "    pattern: 'code: (\\w+)'\n    group: 1\n    normalize: upper\n",
           "code: abc9", "\"ABC9\"");
    expect("pattern", "    pattern: 'N: ([0-9 ]+)'\n    group: 1\n    normalize: [digits]\n    validate: [luhn]\n",
           "N: 4111 1111 1111 1111", "\"4111111111111111\"");
    expect("pattern", "    pattern: 'N: ([0-9 ]+)'\n    group: 1\n    normalize: [digits]\n    validate: [luhn]\n",
           "N: 4111 1111 1111 1112", "null");
    expect("pattern", "    pattern: 'acct (\\S+)'\n    group: 1\n    validate: iban\n",
           "acct de89370400440532013000", "\"DE89370400440532013000\"");
    expect("pattern", "    pattern: 'lvl (\\w+)'\n    group: 1\n    normalize: [lower]\n    validate: [{one_of: [gold, silver]}]\n",
           "lvl bronze lvl GOLD", "\"gold\"");
    expect("pattern", "    pattern: 'id (\\w+)'\n    group: 1\n    validate: [{min_length: 3}, {max_length: 4}]\n",
           "id ab id abcdef id abc", "\"abc\"");
    expect("pattern", "    pattern: 'x=(\\S+)'\n    group: 1\n    validate: [{regex: '^[0-9]+$'}]\n",
           "x=a1 x=42", "\"42\"");
    expect("pattern", "    pattern: 'name:(.*)$'\n    group: 1\n    normalize: [trim, collapse_spaces]\n",
           "name:   Ada    Lovelace   ", "\"Ada Lovelace\"");
}

/* --------------------------------------------------------- whole fixture */

Test(extract, fixture_invoice)
{
    FILE *fp = fopen("tests/extract/invoice.yaml", "rb");
    cr_assert_not_null(fp, "run from the repository root");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    cv_extractor *x = NULL;
    jv err = jv_null();
    cr_assert_eq(cv__extractor_load(buf, n, "invoice.yaml", &x, &err), 0);
    jv_free(err);
    const char *text = "Facture Ref: ab-20931 du 01/02/2024, échéance 15/03/2024.\n"
                       "Montant: 1 250,00 € — IBAN FR14 2004 1010 0505 0001 3M02 606\n"
                       "Contact compta@acme.fr, tél. 01 23 45 67 89";
    /* "due": 15/03/2024 (unambiguous, 0.9) beats 01/02/2024 (declared order, 0.85) */
    jv r = cv__extract_run(x, text, strlen(text));
    cr_assert(jv_is_valid(r));
    jv s = jv_dump_string(jv_copy(r), JV_PRINT_SORTED);
    cr_expect_str_eq(jv_string_value(s),
                     "{\"confidence\":{\"contact\":0.9,\"due\":0.9,\"iban\":0.95,\"phone\":0.75,"
                     "\"po\":0,\"ref\":0.85,\"total\":0.9},\"fields\":{\"contact\":\"compta@acme.fr\","
                     "\"due\":\"2024-03-15\",\"iban\":\"FR1420041010050500013M02606\","
                     "\"phone\":\"+33123456789\",\"po\":null,\"ref\":\"AB-20931\",\"total\":"
                     "{\"amount\":1250,\"currency\":\"EUR\"}},\"missing\":[\"po\"]}");
    jv_free(s);
    /* deterministic */
    jv r2 = cv__extract_run(x, text, strlen(text));
    cr_expect(jv_equal(r, r2));
    cv__extractor_free(x);
}

Test(extract, call_inline)
{
    jv args = jv_parse("{\"fields\":[{\"name\":\"f\",\"kind\":\"email\",\"required\":true}],"
                       "\"text\":\"nothing here\"}");
    jv r = cv__extract_call(args);
    cr_assert(jv_is_valid(r));
    jv m = jv_object_get(r, jv_string("missing"));
    cr_expect_eq(jv_array_length(jv_copy(m)), 1);
    jv_free(m);
    jv bad = cv__extract_call(jv_parse("{\"fields\":[{\"name\":\"f\",\"kind\":\"nope\"}],\"text\":\"\"}"));
    cr_expect(!jv_is_valid(bad));
    jv msg = jv_invalid_get_msg(bad);
    jv d = jv_object_get(msg, jv_string("detail"));
    cr_expect(strstr(jv_string_value(d), "/fields/0/kind") != NULL, "%s", jv_string_value(d));
    jv_free(d);
    jv bad2 = cv__extract_call(jv_parse("{\"fields\":[{\"name\":\"f\",\"kind\":\"url\"}]}"));
    cr_expect(!jv_is_valid(bad2));
    jv_free(jv_invalid_get_msg(bad2));
}

/* ------------------------------------------------- definition errors */

Test(extract, definition_errors_located)
{
    REFUSED("fields:\n  - name: a\n    kind: colour\n", "def.yaml:3:11: field \"a\": unknown kind colour");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: '(ab'\n",
            "def.yaml:4:14: field \"a\": bad regex at offset 3: missing closing parenthesis");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: 'a'\n    normalize: [up]\n",
            "def.yaml:5:17: unknown normalizer up");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: 'a'\n    validate: [sha1]\n",
            "def.yaml:5:16: unknown validator \"sha1\"");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: '(a)'\n    group: 2\n",
            "def.yaml:5:12: group 2: the pattern has 1 capture groups");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: '(a)'\n    group: x\n",
            "the pattern has no group named \"x\"");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n", "kind pattern needs a \"pattern\"");
    REFUSED("fields:\n  - name: a\n    kind: date\n    pattern: x\n", "def.yaml:4:14: \"pattern\" is only for kind pattern");
    REFUSED("fields:\n  - name: a\n    kind: date\n  - name: a\n    kind: url\n", "duplicate field name");
    REFUSED("fields:\n  - name: a\n    kind: date\n    colour: red\n", "def.yaml:4:13: unknown key \"colour\"");
    REFUSED("fields: []\n", "non-empty list");
    REFUSED("fieldz: []\n", "unknown key \"fieldz\"");
    REFUSED("fields:\n  - name: a\n    kind: money\n    currency: euro\n", "ISO 4217");
    REFUSED("options: {region: XX}\nfields:\n  - name: a\n    kind: phone\n", "def.yaml:1:19: unknown region \"XX\"");
    REFUSED("fields:\n  - name: a\n    kind: pattern\n    pattern: a\n    validate: [{min_length: x}]\n",
            "min_length needs a number");
    REFUSED("fields:\n  - name: a\n   kind: [\n", "def.yaml:");
}

/* ---------------------------------------------------------- adversarial */

Test(extract, long_text_refused)
{
    size_t n = 3u << 20;
    char *t = malloc(n);
    memset(t, 'a', n);
    cv_extractor *x = one("email", NULL);
    jv r = cv__extract_run(x, t, n);
    cr_assert(!jv_is_valid(r));
    jv e = jv_invalid_get_msg(r);
    jv st = jv_object_get(jv_copy(e), jv_string("status"));
    cr_expect_eq(jv_number_value(st), 400);
    jv_free(st);
    jv ty = jv_object_get(e, jv_string("type"));
    cr_expect(strstr(jv_string_value(ty), "validation") != NULL);
    jv_free(ty);
    /* just under the cap: scanned, the value at the end found */
    n = CV_EXTRACT_MAX_TEXT;
    memset(t, ' ', n);
    memcpy(t + n - 20, "me@example.com", 14);
    r = cv__extract_run(x, t, n);
    cr_assert(jv_is_valid(r));
    jv v = jv_object_get(jv_object_get(r, jv_string("fields")), jv_string("f"));
    cr_expect_str_eq(jv_string_value(v), "me@example.com");
    jv_free(v);
    cv__extractor_free(x);
    free(t);
}

Test(extract, random_binary_every_kind)
{
    const char *kinds[] = {"money", "date", "email", "phone", "iban", "card", "url"};
    size_t n = 256 * 1024;
    unsigned char *t = malloc(n);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        t[i] = (unsigned char)(s >> 16);
    }
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        cv_extractor *x = one(kinds[k], NULL);
        jv r = cv__extract_run(x, (const char *)t, n);
        cr_expect(jv_is_valid(r), "%s on binary", kinds[k]);
        jv_free(r);
        cv__extractor_free(x);
    }
    free(t);
}

Test(extract, mixed_scripts)
{
    expect("money", NULL, "المبلغ 1.234,56 € شكرا", "{\"amount\":1234.56,\"currency\":\"EUR\"}");
    expect("date", NULL, "срок оплаты 15.03.2024 г.", "\"2024-03-15\"");
    /* CJK text has no spaces: a value glued to it is still found */
    expect("iban", NULL, "口座DE89370400440532013000です", "\"DE89370400440532013000\"");
    expect("iban", NULL, "口座 DE89 3704 0044 0532 0130 00 です", "\"DE89370400440532013000\"");
    expect("email", NULL, "联系 sales@example.cn 谢谢", "\"sales@example.cn\"");
    /* invalid UTF-8 around a value */
    expect("email", NULL, "\xff\xfe a@example.com \xc3\x28", "\"a@example.com\"");
}

Test(extract, catastrophic_pattern_ends)
{
    cv_extractor *x = one("pattern", "    pattern: '^(a+)+$'\n");
    size_t n = 64 * 1024;
    char *t = malloc(n + 1);
    memset(t, 'a', n);
    t[n - 1] = 'b';
    t[n] = 0;
    jv r = cv__extract_run(x, t, n);
    cr_assert(!jv_is_valid(r), "a catastrophic pattern must end with an error");
    jv e = jv_invalid_get_msg(r);
    jv d = jv_object_get(jv_copy(e), jv_string("detail"));
    cr_expect(strstr(jv_string_value(d), "limit") != NULL, "%s", jv_string_value(d));
    jv_free(d);
    jv ty = jv_object_get(e, jv_string("type"));
    cr_expect(strstr(jv_string_value(ty), "runtime") != NULL);
    jv_free(ty);
    free(t);
    cv__extractor_free(x);
}

/* A definition as `conveyor model upload --kind extractor` stores it: the
 * card describes its fields and digests the text as given; a definition that
 * does not compile gives no card and the located error. */
Test(extract, describe_for_the_registry)
{
    const char *y = "name: inv\nfields:\n  - name: total\n    kind: money\n    required: true\n"
                    "  - name: due\n    kind: date\n";
    jv card = jv_null(), err = jv_invalid();
    cr_assert_eq(cv__extractor_describe(y, strlen(y), "d.yaml", &card, &err), 0);
    jv s = jv_dump_string(card, JV_PRINT_SORTED);
    cr_expect_str_eq(jv_string_value(s),
                     "{\"definitionName\":\"inv\",\"fields\":[\"total\",\"due\"],\"kind\":\"extractor\","
                     "\"modelSha256\":\"9efa098784ab01cdff2e00c1b5129899bcd8b5486e4e251c872876d3d1d0bc8d\","
                     "\"required\":[\"total\"]}");
    jv_free(s);
    jv_free(err);

    const char *bad = "fields:\n  - name: a\n    kind: money\n  - name: b\n    kind: colour\n";
    card = jv_null();
    err = jv_invalid();
    cr_assert_neq(cv__extractor_describe(bad, strlen(bad), "bad.yaml", &card, &err), 0);
    cr_expect(!jv_is_valid(card));
    jv d = jv_object_get(err, jv_string("detail"));
    cr_expect(strncmp(jv_string_value(d), "bad.yaml:5:11: field \"b\": unknown kind colour", 45) == 0, "%s",
              jv_string_value(d));
    jv_free(d);
}
