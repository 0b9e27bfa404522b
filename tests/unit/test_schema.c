/*
 * test_schema.c — JSON Schema subset: every keyword accepts and rejects,
 * messages carry the instance's JSON pointer, $ref recursion is bounded,
 * and cv__schema_check finds unusable schemas.
 */
#include "json/schema.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static jv parse(const char *json)
{
    jv v = jv_parse(json);
    cr_assert(jv_is_valid(v), "test JSON does not parse: %s", json);
    return v;
}

/* Validates; returns the result (null or array of strings). Borrows nothing
 * of the caller: schema and instance are parsed here and freed. */
static jv run(const char *schema, const char *instance)
{
    jv s = parse(schema), i = parse(instance);
    jv r = cv__schema_validate(s, i);
    /* borrowed: both are still ours and intact */
    cr_assert(jv_is_valid(s) && jv_is_valid(i));
    jv_free(s);
    jv_free(i);
    return r;
}

static void ok(const char *schema, const char *instance)
{
    jv r = run(schema, instance);
    if (jv_get_kind(r) != JV_KIND_NULL) {
        jv d = jv_dump_string(jv_copy(r), 0);
        cr_assert_fail("%s should accept %s, got %s", schema, instance, jv_string_value(d));
    }
    jv_free(r);
}

/* Asserts rejection with a message that starts with `ptr` ": " and contains
 * `needle`. */
static void bad(const char *schema, const char *instance, const char *ptr, const char *needle)
{
    jv r = run(schema, instance);
    cr_assert_eq(jv_get_kind(r), JV_KIND_ARRAY, "%s should reject %s", schema, instance);
    cr_assert(jv_array_length(jv_copy(r)) >= 1);
    int found = 0;
    jv_array_foreach(r, i, m)
    {
        const char *s = jv_string_value(m);
        size_t pl = strlen(ptr);
        if (strncmp(s, ptr, pl) == 0 && s[pl] == ':' && strstr(s, needle))
            found = 1;
        jv_free(m);
    }
    if (!found) {
        jv d = jv_dump_string(jv_copy(r), 0);
        cr_assert_fail("no message '%s: ...%s...' in %s", ptr, needle, jv_string_value(d));
    }
    jv_free(r);
}

static void check_ok(const char *schema)
{
    jv s = parse(schema);
    jv r = cv__schema_check(s);
    if (jv_get_kind(r) != JV_KIND_NULL)
        cr_assert_fail("%s should be usable, got %s", schema, jv_string_value(r));
    jv_free(r);
    jv_free(s);
}

static void check_bad(const char *schema, const char *needle)
{
    jv s = parse(schema);
    jv r = cv__schema_check(s);
    cr_assert_eq(jv_get_kind(r), JV_KIND_STRING, "%s should be refused", schema);
    cr_assert(strstr(jv_string_value(r), needle), "'%s' lacks '%s'", jv_string_value(r), needle);
    jv_free(r);
    jv_free(s);
}

/* ---- validation, keyword by keyword ----------------------------------------------- */

Test(schema, type)
{
    ok("{\"type\":\"string\"}", "\"x\"");
    ok("{\"type\":\"integer\"}", "3");
    ok("{\"type\":\"integer\"}", "3.0");
    ok("{\"type\":\"number\"}", "3.5");
    ok("{\"type\":[\"null\",\"boolean\"]}", "false");
    ok("{\"type\":\"object\"}", "{}");
    ok("{\"type\":\"array\"}", "[]");
    ok("{\"type\":\"null\"}", "null");
    bad("{\"type\":\"integer\"}", "3.5", "(root)", "expected integer, got number");
    bad("{\"type\":\"string\"}", "12", "(root)", "expected string, got integer");
    bad("{\"type\":[\"null\",\"boolean\"]}", "\"x\"", "(root)",
        "expected one of the types [\"null\",\"boolean\"], got string");
    bad("{\"properties\":{\"a\":{\"type\":\"object\"}}}", "{\"a\":[]}", "/a",
        "expected object, got array");
}

Test(schema, properties_required_additional)
{
    const char *s = "{\"type\":\"object\",\"required\":[\"name\",\"age\"],"
                    "\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\","
                    "\"minimum\":18}},\"additionalProperties\":false}";
    ok(s, "{\"name\":\"Ann\",\"age\":30}");
    bad(s, "{\"name\":\"Ann\"}", "(root)", "missing required property 'age'");
    bad(s, "{\"name\":\"Ann\",\"age\":12}", "/age", "12 is less than the minimum 18");
    bad(s, "{\"name\":\"Ann\",\"age\":30,\"x\":1}", "(root)", "property 'x' is not allowed");
    const char *t = "{\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"number\"}}";
    ok(t, "{\"a\":\"s\",\"b\":1}");
    bad(t, "{\"a\":\"s\",\"b\":\"no\"}", "/b", "expected number");
    /* properties do not apply to non-objects */
    ok("{\"required\":[\"a\"],\"properties\":{\"a\":false},\"additionalProperties\":false}",
       "12");
}

Test(schema, nested_pointers_escape_keys)
{
    const char *s = "{\"properties\":{\"a/b\":{\"properties\":{\"c~d\":{\"items\":{\"type\":"
                    "\"string\"}}}}}}";
    ok(s, "{\"a/b\":{\"c~d\":[\"x\"]}}");
    bad(s, "{\"a/b\":{\"c~d\":[\"x\",2]}}", "/a~1b/c~0d/1", "expected string");
}

Test(schema, pattern_properties_and_property_names)
{
    const char *s = "{\"patternProperties\":{\"^x-\":{\"type\":\"string\"}},"
                    "\"additionalProperties\":false}";
    ok(s, "{\"x-a\":\"1\"}");
    bad(s, "{\"x-a\":1}", "/x-a", "expected string");
    bad(s, "{\"y\":1}", "(root)", "property 'y' is not allowed");
    const char *n = "{\"propertyNames\":{\"maxLength\":3}}";
    ok(n, "{\"abc\":1}");
    bad(n, "{\"abcd\":1}", "(root)", "property name 'abcd' is not allowed");
}

Test(schema, enum_const)
{
    ok("{\"enum\":[\"a\",1,{\"k\":[1]}]}", "{\"k\":[1]}");
    bad("{\"enum\":[\"a\",1]}", "\"b\"", "(root)", "\"b\" is not one of the allowed values [\"a\",1]");
    ok("{\"const\":{\"a\":1}}", "{\"a\":1}");
    bad("{\"const\":null}", "0", "(root)", "0 is not the required value null");
    bad("{\"properties\":{\"s\":{\"const\":\"x\"}}}", "{\"s\":\"y\"}", "/s", "required value");
}

Test(schema, numbers)
{
    ok("{\"minimum\":1,\"maximum\":3}", "1");
    ok("{\"minimum\":1,\"maximum\":3}", "3");
    bad("{\"minimum\":1}", "0.5", "(root)", "0.5 is less than the minimum 1");
    bad("{\"maximum\":3}", "4", "(root)", "4 is greater than the maximum 3");
    ok("{\"exclusiveMinimum\":1,\"exclusiveMaximum\":3}", "2");
    bad("{\"exclusiveMinimum\":1}", "1", "(root)", "not greater than the exclusive minimum 1");
    bad("{\"exclusiveMaximum\":3}", "3", "(root)", "not less than the exclusive maximum 3");
    /* draft 4 boolean form */
    bad("{\"minimum\":1,\"exclusiveMinimum\":true}", "1", "(root)", "exclusive minimum 1");
    bad("{\"maximum\":1,\"exclusiveMaximum\":true}", "1", "(root)", "exclusive maximum 1");
    ok("{\"multipleOf\":0.1}", "0.3");
    ok("{\"multipleOf\":3}", "-9");
    bad("{\"multipleOf\":3}", "10", "(root)", "10 is not a multiple of 3");
    bad("{\"multipleOf\":0.1}", "0.35", "(root)", "not a multiple of 0.1");
    /* number keywords ignore other types */
    ok("{\"minimum\":5}", "\"abc\"");
}

Test(schema, strings)
{
    ok("{\"minLength\":2,\"maxLength\":3}", "\"\xc3\xa9\xc3\xa9\xc3\xa9\""); /* 3 code points */
    bad("{\"maxLength\":2}", "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", "(root)",
        "longer than 2 characters (it has 3)");
    bad("{\"minLength\":2}", "\"a\"", "(root)", "shorter than 2 characters (it has 1)");
    ok("{\"pattern\":\"^[a-z]+-\\\\d{2}$\"}", "\"abc-12\"");
    ok("{\"pattern\":\"b\"}", "\"abc\""); /* unanchored */
    bad("{\"pattern\":\"^[a-z]+$\"}", "\"ab1\"", "(root)",
        "\"ab1\" does not match the pattern '^[a-z]+$'");
    ok("{\"pattern\":\"^\\\\p{L}+$\"}", "\"\xc3\xa9t\xc3\xa9\"");
    bad("{\"properties\":{\"id\":{\"pattern\":\"^[0-9]+$\"}}}", "{\"id\":\"x\"}", "/id",
        "does not match");
    bad("{\"pattern\":\"([a-z\"}", "\"a\"", "(root)", "not a valid regular expression");
}

Test(schema, arrays)
{
    ok("{\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":2}", "[1,2]");
    bad("{\"items\":{\"type\":\"integer\"}}", "[1,\"x\"]", "/1", "expected integer");
    bad("{\"minItems\":1}", "[]", "(root)", "fewer than the minimum 1");
    bad("{\"maxItems\":1}", "[1,2]", "(root)", "more than the maximum 1");
    ok("{\"uniqueItems\":true}", "[1,\"1\",{\"a\":1},{\"a\":2}]");
    bad("{\"uniqueItems\":true}", "[{\"a\":1},2,{\"a\":1}]", "(root)", "items 0 and 2 are equal");
    const char *p = "{\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"number\"}],\"items\":false}";
    ok(p, "[\"a\",1]");
    ok(p, "[\"a\"]");
    bad(p, "[1,1]", "/0", "expected string");
    bad(p, "[\"a\",1,true]", "/2", "no value is allowed here");
    /* older draft: items as an array, additionalItems */
    const char *o = "{\"items\":[{\"type\":\"string\"}],\"additionalItems\":{\"type\":\"null\"}}";
    ok(o, "[\"a\",null]");
    bad(o, "[\"a\",1]", "/1", "expected null");
    ok("{\"contains\":{\"const\":2}}", "[1,2]");
    bad("{\"contains\":{\"const\":2}}", "[1,3]", "(root)", "contains no item");
}

Test(schema, object_sizes_and_dependencies)
{
    ok("{\"minProperties\":1,\"maxProperties\":2}", "{\"a\":1}");
    bad("{\"minProperties\":1}", "{}", "(root)", "0 properties, fewer than the minimum 1");
    bad("{\"maxProperties\":1}", "{\"a\":1,\"b\":2}", "(root)", "more than the maximum 1");
    const char *d = "{\"dependentRequired\":{\"card\":[\"cvv\"]}}";
    ok(d, "{\"card\":1,\"cvv\":2}");
    ok(d, "{\"x\":1}");
    bad(d, "{\"card\":1}", "(root)", "property 'cvv' is required when 'card' is present");
}

Test(schema, combinators)
{
    const char *all = "{\"allOf\":[{\"type\":\"number\"},{\"minimum\":2}]}";
    ok(all, "3");
    bad(all, "1", "(root)", "less than the minimum 2");
    const char *any = "{\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":"
                      "\"null\"}]}}}";
    ok(any, "{\"v\":null}");
    bad(any, "{\"v\":1}", "/v", "matches none of the 2 anyOf schemas (closest: /v: expected string");
    const char *one = "{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":10}]}";
    ok(one, "3");
    ok(one, "10.5");
    bad(one, "12", "(root)", "matches oneOf schemas 0 and 1, but must match exactly one");
    bad(one, "5.5", "(root)", "matches none of the 2 oneOf schemas");
    ok("{\"not\":{\"type\":\"string\"}}", "1");
    bad("{\"items\":{\"not\":{\"type\":\"string\"}}}", "[1,\"s\"]", "/1",
        "must not match the 'not' schema");
    const char *cond = "{\"if\":{\"properties\":{\"kind\":{\"const\":\"a\"}}},"
                       "\"then\":{\"required\":[\"a\"]},\"else\":{\"required\":[\"b\"]}}";
    ok(cond, "{\"kind\":\"a\",\"a\":1}");
    ok(cond, "{\"kind\":\"z\",\"b\":1}");
    bad(cond, "{\"kind\":\"a\"}", "(root)", "missing required property 'a'");
    bad(cond, "{\"kind\":\"z\"}", "(root)", "missing required property 'b'");
}

Test(schema, anyof_reports_the_closest_branch)
{
    /* the second branch fails once, the first three times: its message wins */
    const char *s = "{\"anyOf\":[{\"type\":\"string\",\"required\":[\"x\",\"y\"]},"
                    "{\"required\":[\"a\"]}]}";
    bad(s, "{\"b\":1}", "(root)", "(closest: (root): missing required property 'a')");
    bad("{\"oneOf\":[{\"type\":\"string\",\"maxLength\":0,\"minLength\":5},{\"type\":\"string\"}]}",
        "1", "(root)", "(closest: (root): expected string");
}

Test(schema, unevaluated_properties)
{
    /* adjacent properties / patternProperties / additionalProperties */
    const char *adj = "{\"properties\":{\"a\":{}},\"patternProperties\":{\"^p\":{}},"
                      "\"unevaluatedProperties\":false}";
    ok(adj, "{\"a\":1,\"p1\":2}");
    bad(adj, "{\"a\":1,\"b\":2}", "(root)", "property 'b' is not allowed");
    ok("{\"additionalProperties\":true,\"unevaluatedProperties\":false}", "{\"z\":1}");
    /* through allOf and $ref */
    const char *all = "{\"allOf\":[{\"properties\":{\"a\":{}}}],\"unevaluatedProperties\":false}";
    ok(all, "{\"a\":1}");
    bad(all, "{\"a\":1,\"b\":1}", "(root)", "property 'b' is not allowed");
    const char *ref = "{\"$defs\":{\"base\":{\"properties\":{\"a\":{}}}},"
                      "\"$ref\":\"#/$defs/base\",\"properties\":{\"b\":{}},"
                      "\"unevaluatedProperties\":false}";
    ok(ref, "{\"a\":1,\"b\":2}");
    bad(ref, "{\"a\":1,\"c\":2}", "(root)", "property 'c' is not allowed");
    /* only passing anyOf branches count, and every passing branch counts */
    const char *any = "{\"anyOf\":[{\"properties\":{\"a\":{\"type\":\"string\"}},"
                      "\"required\":[\"a\"]},{\"properties\":{\"b\":{}},\"required\":[\"b\"]}],"
                      "\"unevaluatedProperties\":false}";
    ok(any, "{\"a\":\"x\",\"b\":1}");
    bad(any, "{\"a\":1,\"b\":1}", "(root)", "property 'a' is not allowed");
    /* if/then: a failing `if` contributes nothing */
    const char *cond = "{\"if\":{\"properties\":{\"k\":{\"const\":1}}},"
                       "\"then\":{\"properties\":{\"x\":{}}},\"unevaluatedProperties\":false}";
    ok(cond, "{\"k\":1,\"x\":1}");
    bad(cond, "{\"k\":2}", "(root)", "property 'k' is not allowed");
    /* a schema instead of false */
    const char *typed = "{\"properties\":{\"a\":{}},\"unevaluatedProperties\":{\"type\":\"integer\"}}";
    ok(typed, "{\"a\":\"s\",\"b\":1}");
    bad(typed, "{\"b\":\"s\"}", "/b", "expected integer, got string");
    /* a subschema cannot see its parent's properties */
    bad("{\"properties\":{\"a\":{}},\"allOf\":[{\"unevaluatedProperties\":false}]}", "{\"a\":1}",
        "(root)", "property 'a' is not allowed");
    /* non-objects are not concerned */
    ok("{\"unevaluatedProperties\":false}", "[1]");
    check_bad("{\"unevaluatedProperties\":1}", "a schema must be an object or a boolean");
}

Test(schema, boolean_schemas)
{
    ok("true", "{\"anything\":[1]}");
    bad("false", "1", "(root)", "no value is allowed here");
    ok("{\"properties\":{\"a\":true}}", "{\"a\":1}");
    bad("{\"properties\":{\"a\":false}}", "{\"a\":1}", "/a", "no value is allowed");
}

Test(schema, refs)
{
    const char *s = "{\"$defs\":{\"pos\":{\"type\":\"integer\",\"minimum\":1}},"
                    "\"definitions\":{\"name\":{\"type\":\"string\"}},"
                    "\"properties\":{\"n\":{\"$ref\":\"#/$defs/pos\"},"
                    "\"m\":{\"$ref\":\"#/definitions/name\"}}}";
    ok(s, "{\"n\":3,\"m\":\"x\"}");
    bad(s, "{\"n\":0}", "/n", "0 is less than the minimum 1");
    bad(s, "{\"m\":1}", "/m", "expected string");
    /* a recursive tree */
    const char *tree = "{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}}}";
    ok(tree, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":3}]}]}");
    bad(tree, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":\"x\"}]}]}", "/kids/0/kids/0/v",
        "expected integer");
    /* escaped pointer segments */
    ok("{\"$defs\":{\"a/b\":{\"const\":1}},\"$ref\":\"#/$defs/a~1b\"}", "1");
    bad("{\"$defs\":{\"a b\":{\"const\":1}},\"$ref\":\"#/$defs/a%20b\"}", "2", "(root)",
        "required value 1");
    /* $ref next to other keywords: both apply (2020-12) */
    bad("{\"$defs\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/s\",\"maxLength\":1}",
        "\"ab\"", "(root)", "longer than 1");
    bad("{\"$ref\":\"#/nowhere\"}", "1", "(root)", "cannot resolve $ref '#/nowhere'");
    bad("{\"$ref\":\"http://example.com/s.json\"}", "1", "(root)", "cannot resolve $ref");
}

Test(schema, self_reference_is_bounded)
{
    bad("{\"$ref\":\"#\"}", "1", "(root)", "$ref '#' leads back to itself");
    bad("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
        "\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}}}",
        "{\"x\":1}", "/x", "leads back to itself");
    bad("{\"anyOf\":[{\"$ref\":\"#\"}]}", "1", "(root)", "anyOf");
    /* not circular, only long: still cut at 64 hops */
    char s[8192];
    size_t off = (size_t)snprintf(s, sizeof s, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
    for (int k = 0; k < 70; k++)
        off += (size_t)snprintf(s + off, sizeof s - off, "\"d%d\":{\"$ref\":\"#/$defs/d%d\"},", k,
                                k + 1);
    snprintf(s + off, sizeof s - off, "\"d70\":true}}");
    bad(s, "1", "(root)", "nested more than 64 times");
}

/* Each anyOf doubles the work of what it repeats: with the same $ref twice
 * that was 2^64 applications before the circularity check; without a cycle
 * (a chain of definitions, or a recursive schema over a deep value) the step
 * budget stops it. Found by reading the code while fuzzing; the timeouts
 * make a regression fail instead of hanging the suite. */
Test(schema, exponential_schemas_are_cut_short, .timeout = 60)
{
    bad("{\"anyOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#\"}]}", "1", "(root)", "leads back to itself");
    char s[8192];
    size_t off = (size_t)snprintf(s, sizeof s, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
    for (int k = 0; k < 40; k++)
        off += (size_t)snprintf(s + off, sizeof s - off,
                                "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},"
                                "{\"$ref\":\"#/$defs/d%d\"}]},",
                                k, k + 1, k + 1);
    snprintf(s + off, sizeof s - off, "\"d40\":false}}");
    jv r = run(s, "1");
    cr_assert_eq(jv_get_kind(r), JV_KIND_ARRAY);
    cr_assert_eq(jv_array_length(jv_copy(r)), 1);
    jv m = jv_array_get(r, 0);
    cr_assert(strstr(jv_string_value(m), "(root): validation abandoned after 100100 steps"), "%s",
              jv_string_value(m));
    jv_free(m);
    /* the same through a recursive schema and a value 40 arrays deep */
    char inst[128];
    memset(inst, '[', 40);
    inst[40] = '1';
    memset(inst + 41, ']', 40);
    inst[81] = 0;
    bad("{\"type\":\"array\",\"anyOf\":[{\"items\":{\"$ref\":\"#\"}},{\"items\":{\"$ref\":\"#\"}}]}",
        inst, "(root)", "validation abandoned");
    /* cheap when a branch passes: no annotations wanted, the first one settles it */
    inst[40] = '[';
    inst[41] = ']';
    memset(inst + 42, ']', 40);
    inst[82] = 0;
    ok("{\"type\":\"array\",\"anyOf\":[{\"items\":{\"$ref\":\"#\"}},{\"items\":{\"$ref\":\"#\"}}]}",
       inst);
}

/* Oniguruma's backtracking is bounded per search, and searches count
 * against the step budget. */
Test(schema, catastrophic_patterns_are_bounded, .timeout = 60)
{
    char inst[4200];
    inst[0] = '"';
    memset(inst + 1, 'a', 4096);
    memcpy(inst + 4097, "!\"", 3);
    bad("{\"pattern\":\"(a+)+$\"}", inst, "(root)",
        "pattern '(a+)+$' could not be evaluated (too complex)");
    bad("{\"pattern\":\"^(a|aa)+$\"}", inst, "(root)", "could not be evaluated (too complex)");
    ok("{\"pattern\":\"^a+!$\"}", inst);
    /* many such strings: each search is cut, the total stays bounded */
    jv s = parse("{\"items\":{\"pattern\":\"(a+)+$\"}}");
    jv str = parse(inst), arr = jv_array();
    for (int i = 0; i < 200; i++)
        arr = jv_array_append(arr, jv_copy(str));
    jv r = cv__schema_validate(s, arr);
    cr_assert_eq(jv_get_kind(r), JV_KIND_ARRAY);
    cr_assert_eq(jv_array_length(r), 20);
    jv_free(str);
    jv_free(arr);
    jv_free(s);
}

Test(schema, unique_items_large_and_first_pair, .timeout = 60)
{
    bad("{\"uniqueItems\":true}", "[3,1,2,1,3,1]", "(root)", "items 0 and 4 are equal");
    bad("{\"uniqueItems\":true}", "[{\"a\":[1]},1,{\"a\":[1.0]}]", "(root)", "items 0 and 2");
    ok("{\"uniqueItems\":true}", "[1,\"1\",[1],{\"1\":1},true,null]");
    jv s = parse("{\"uniqueItems\":true}"), arr = jv_array();
    for (int i = 0; i < 200000; i++)
        arr = jv_array_append(arr, jv_number(i));
    jv r = cv__schema_validate(s, arr);
    cr_assert_eq(jv_get_kind(r), JV_KIND_NULL);
    arr = jv_array_append(arr, jv_number(7));
    r = cv__schema_validate(s, arr);
    jv m = jv_array_get(r, 0);
    cr_assert_str_eq(jv_string_value(m), "(root): items 7 and 200000 are equal, but items must be "
                                         "unique");
    jv_free(m);
    jv_free(arr);
    jv_free(s);
}

/* Thousands of patternProperties: patterns are found through a hash table. */
Test(schema, many_patterns, .timeout = 60)
{
    jv pp = jv_object();
    for (int i = 0; i < 20000; i++)
        pp = jv_object_set(pp, jv_string_fmt("^p%d$", i), jv_false());
    jv s = jv_object_set(jv_object(), jv_string("patternProperties"), pp);
    jv inst = jv_object_set(jv_object(), jv_string("p19999"), jv_number(1));
    inst = jv_object_set(inst, jv_string("q"), jv_number(1));
    jv r = cv__schema_validate(s, inst);
    cr_assert_eq(jv_get_kind(r), JV_KIND_ARRAY);
    jv m = jv_array_get(r, 0);
    cr_assert_str_eq(jv_string_value(m), "/p19999: no value is allowed here (the schema is false)");
    jv_free(m);
    cr_assert_eq(jv_get_kind(cv__schema_check(s)), JV_KIND_NULL);
    jv_free(inst);
    jv_free(s);
}

Test(schema, at_most_twenty_messages)
{
    jv s = parse("{\"items\":{\"type\":\"string\"}}");
    jv inst = jv_array();
    for (int i = 0; i < 50; i++)
        inst = jv_array_append(inst, jv_number(i));
    jv r = cv__schema_validate(s, inst);
    cr_assert_eq(jv_get_kind(r), JV_KIND_ARRAY);
    cr_assert_eq(jv_array_length(jv_copy(r)), 20);
    jv first = jv_array_get(jv_copy(r), 0);
    cr_assert_str_eq(jv_string_value(first), "/0: expected string, got integer");
    jv_free(first);
    jv_free(r);
    jv_free(s);
    jv_free(inst);
}

Test(schema, unknown_keywords_ignored)
{
    ok("{\"format\":\"email\",\"x-custom\":1,\"title\":\"t\"}", "\"not an email\"");
    ok("{\"type\":\"object\"}", "{\"format\":1}");
}

Test(schema, workflow_example_schema)
{
    /* the shape used by the specification's examples */
    const char *s = "{\"type\":\"object\",\"required\":[\"petId\"],\"properties\":{\"petId\":{"
                    "\"type\":\"integer\",\"minimum\":1}}}";
    ok(s, "{\"petId\":7}");
    bad(s, "{}", "(root)", "missing required property 'petId'");
    bad(s, "{\"petId\":\"7\"}", "/petId", "expected integer, got string");
}

/* ---- schema checking ------------------------------------------------------------- */

Test(schema_check, usable_schemas)
{
    check_ok("true");
    check_ok("{}");
    check_ok("{\"type\":[\"string\",\"null\"],\"minLength\":0,\"pattern\":\"^a\","
             "\"enum\":[\"a\"],\"const\":\"a\",\"$defs\":{\"x\":{\"type\":\"integer\"}},"
             "\"properties\":{\"p\":{\"$ref\":\"#/$defs/x\"}},\"required\":[\"p\"],"
             "\"additionalProperties\":false,\"items\":{},\"prefixItems\":[true],"
             "\"allOf\":[{}],\"anyOf\":[{}],\"oneOf\":[{}],\"not\":false,\"multipleOf\":2,"
             "\"minimum\":0,\"exclusiveMaximum\":5,\"uniqueItems\":true,"
             "\"patternProperties\":{\"^x\":{}},\"unknownKeyword\":[1,2]}");
}

Test(schema_check, unusable_schemas)
{
    check_bad("12", "(root): a schema must be an object or a boolean");
    check_bad("{\"type\":\"text\"}", "/type: unknown type 'text'");
    check_bad("{\"type\":[\"string\",1]}", "/type: item 1 is not a type name");
    check_bad("{\"type\":[]}", "/type");
    check_bad("{\"minimum\":\"3\"}", "/minimum: must be a number");
    check_bad("{\"exclusiveMinimum\":\"3\"}", "/exclusiveMinimum: must be a number");
    check_bad("{\"multipleOf\":0}", "/multipleOf: must be a number greater than 0");
    check_bad("{\"minLength\":-1}", "/minLength: must be a non-negative integer");
    check_bad("{\"maxItems\":1.5}", "/maxItems: must be a non-negative integer");
    check_bad("{\"maxProperties\":\"2\"}", "/maxProperties");
    check_bad("{\"uniqueItems\":1}", "/uniqueItems: must be true or false");
    check_bad("{\"pattern\":\"(\"}", "/pattern: '(' is not a valid regular expression");
    check_bad("{\"pattern\":5}", "/pattern: must be a string");
    check_bad("{\"enum\":\"a\"}", "/enum: must be an array");
    check_bad("{\"required\":[\"a\",1]}", "/required: must be an array of property names");
    check_bad("{\"properties\":[]}", "/properties: must be an object of schemas");
    check_bad("{\"properties\":{\"a/b\":{\"type\":\"x\"}}}", "/properties/a~1b/type: unknown type");
    check_bad("{\"additionalProperties\":1}", "/additionalProperties: a schema must be");
    check_bad("{\"items\":\"x\"}", "/items: a schema must be");
    check_bad("{\"allOf\":[]}", "/allOf: must be a non-empty array of schemas");
    check_bad("{\"anyOf\":{}}", "/anyOf");
    check_bad("{\"oneOf\":[{\"minimum\":\"a\"}]}", "/oneOf/0/minimum: must be a number");
    check_bad("{\"not\":3}", "/not");
    check_bad("{\"$ref\":\"#/$defs/missing\"}", "/$ref: cannot resolve '#/$defs/missing'");
    check_bad("{\"$ref\":3}", "/$ref: must be a string");
    check_bad("{\"$defs\":{\"a\":{\"type\":1}}}", "/$defs/a/type");
    check_bad("{\"patternProperties\":{\"(\":{}}}", "/patternProperties/(: '(' is not a valid");
}
