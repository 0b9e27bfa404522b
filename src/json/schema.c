/*
 * schema.c — JSON Schema (draft 2020-12 subset) validation of workflow data.
 *
 * This file owns the meaning of `input.schema`, `output.schema` and
 * `export.schema` documents: the engine must not interpret schema keywords
 * anywhere else, so every check and every message comes from here. It walks
 * the schema and the instance together, collecting at most CV_SCHEMA_MAX_ERRORS
 * messages of the form "<instance pointer>: <message>" (the root instance is
 * written "(root)"). Regular expressions (`pattern`, `patternProperties`) are
 * compiled with oniguruma's Perl syntax in UTF-8, searched unanchored as JSON
 * Schema requires, and cached for the duration of one call.
 *
 * Beyond the keywords listed in schema.h this file also understands
 * patternProperties, propertyNames, contains, if/then/else, dependentRequired,
 * unevaluatedProperties (with annotations collected from properties,
 * patternProperties, additionalProperties, $ref, allOf and the passing
 * branches of anyOf/oneOf/if/then/else; every anyOf branch therefore runs),
 * and the older-draft forms `items: [..]` + additionalItems and boolean
 * exclusiveMinimum/exclusiveMaximum, because real schemas use them and they
 * cost a few lines. `$ref` resolves only "#..." JSON pointers into the same
 * schema; chains deeper than CV_SCHEMA_MAX_REF_DEPTH are reported, not
 * followed, and a $ref met again on the same value is reported as circular,
 * so a self-referencing schema cannot loop. Work is bounded by a step budget
 * (the only defence against anyOf/oneOf nests that double the work at each
 * level) and every regex search by oniguruma's retry limits.
 */
#include "json/schema.h"

#include <math.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CV_SCHEMA_MAX_ERRORS 20
#define CV_SCHEMA_MAX_REF_DEPTH 64
#define CV_SCHEMA_MAX_DEPTH 512
/* Work allowed for one validation, in steps (a subschema application, about
 * 4 us; a regex search, 1 per 64 bytes): a base plus so many per node of the
 * instance, so that big values validate and the cost of a small one stays
 * bounded (under a second) when anyOf branches repeat through $ref, which
 * doubles the work at each level. */
#define CV_SCHEMA_BASE_STEPS 100000L
#define CV_SCHEMA_STEPS_PER_NODE 100L
/* Oniguruma's backtracking limits for one `pattern` search (the library's
 * default per match is 10,000,000, with no limit per search; a few
 * milliseconds here) and its backtracking stack (entries). */
#define CV_SCHEMA_REGEX_RETRIES 1000000UL
#define CV_SCHEMA_REGEX_STACK 1000000U

/* ---- shared helpers --------------------------------------------------------- */

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;

static void onig_setup(void)
{
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
}

/* A compiled pattern. */
struct regex_entry {
    OnigRegex re; /* NULL when the pattern does not compile */
    char error[ONIG_MAX_ERROR_MESSAGE_LEN];
};

/* Compiled patterns of one call, found by their source text through a jv
 * object (a hash table: schemas with thousands of patterns exist). */
struct regex_cache {
    jv index; /* pattern -> position in items, or jv_invalid() before first use */
    struct regex_entry **items;
    size_t n, cap;
};

static void regex_cache_free(struct regex_cache *rc)
{
    for (size_t i = 0; i < rc->n; i++) {
        if (rc->items[i]->re)
            onig_free(rc->items[i]->re);
        free(rc->items[i]);
    }
    free(rc->items);
    jv_free(rc->index);
}

/* Finds or compiles `pattern` (borrowed). Returns NULL only on out of memory;
 * a pattern that does not compile gives an entry with re == NULL. */
static struct regex_entry *regex_get(struct regex_cache *cache, jv pattern)
{
    if (!jv_is_valid(cache->index)) {
        jv_free(cache->index);
        cache->index = jv_object();
    }
    jv at = jv_object_get(jv_copy(cache->index), jv_copy(pattern));
    if (jv_is_valid(at)) {
        size_t i = (size_t)jv_number_value(at);
        jv_free(at);
        return cache->items[i];
    }
    jv_free(at);
    if (cache->n == cache->cap) {
        size_t cap = cache->cap ? cache->cap * 2 : 8;
        struct regex_entry **items = realloc(cache->items, cap * sizeof *items);
        if (!items)
            return NULL;
        cache->items = items;
        cache->cap = cap;
    }
    pthread_once(&onig_once, onig_setup);
    struct regex_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    const OnigUChar *p = (const OnigUChar *)jv_string_value(pattern);
    int len = jv_string_length_bytes(jv_copy(pattern));
    OnigErrorInfo einfo;
    int rc = onig_new(&e->re, p, p + len, ONIG_OPTION_CAPTURE_GROUP, ONIG_ENCODING_UTF8,
                      ONIG_SYNTAX_PERL_NG, &einfo);
    if (rc != ONIG_NORMAL) {
        e->re = NULL;
        onig_error_code_to_str((OnigUChar *)e->error, rc, &einfo);
    }
    cache->index =
        jv_object_set(cache->index, jv_copy(pattern), jv_number((double)cache->n));
    cache->items[cache->n++] = e;
    return e;
}

/* ptr + "/" + escaped(seg) per RFC 6901. Consumes `ptr`; borrows `seg`. */
static jv ptr_append(jv ptr, const char *seg, size_t len)
{
    ptr = jv_string_append_buf(ptr, "/", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (seg[i] == '~' || seg[i] == '/') {
            ptr = jv_string_append_buf(ptr, seg + start, (int)(i - start));
            ptr = jv_string_append_buf(ptr, seg[i] == '~' ? "~0" : "~1", 2);
            start = i + 1;
        }
    }
    return jv_string_append_buf(ptr, seg + start, (int)(len - start));
}

static jv ptr_append_key(jv ptr, jv key /* borrowed string */)
{
    return ptr_append(ptr, jv_string_value(key), (size_t)jv_string_length_bytes(jv_copy(key)));
}

static jv ptr_append_index(jv ptr, int index)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%d", index);
    return ptr_append(ptr, buf, (size_t)n);
}

/* A value's JSON text for a message, cut to about 60 bytes. Borrows `v`. */
static jv show(jv v)
{
    jv s = jv_dump_string(jv_copy(v), 0);
    int len = jv_string_length_bytes(jv_copy(s));
    if (len <= 60)
        return s;
    const char *t = jv_string_value(s);
    int n = 57;
    while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
        n--;
    jv r = jv_string_sized(t, n);
    jv_free(s);
    return jv_string_append_str(r, "...");
}

/* Shortest of %.15g / %.17g that reads back as `d` (0.1 prints as "0.1"). */
struct numbuf {
    char s[32];
};

static struct numbuf fmt_num(double d)
{
    struct numbuf b;
    snprintf(b.s, sizeof b.s, "%.15g", d);
    if (strtod(b.s, NULL) != d)
        snprintf(b.s, sizeof b.s, "%.17g", d);
    return b;
}

static const char *kind_name(jv v)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_NULL:
        return "null";
    case JV_KIND_TRUE:
    case JV_KIND_FALSE:
        return "boolean";
    case JV_KIND_NUMBER: {
        double d = jv_number_value(v);
        return (isfinite(d) && d == floor(d)) ? "integer" : "number";
    }
    case JV_KIND_STRING:
        return "string";
    case JV_KIND_ARRAY:
        return "array";
    case JV_KIND_OBJECT:
        return "object";
    default:
        return "invalid";
    }
}

static int type_matches(const char *type, jv v)
{
    jv_kind k = jv_get_kind(v);
    if (!strcmp(type, "null"))
        return k == JV_KIND_NULL;
    if (!strcmp(type, "boolean"))
        return k == JV_KIND_TRUE || k == JV_KIND_FALSE;
    if (!strcmp(type, "object"))
        return k == JV_KIND_OBJECT;
    if (!strcmp(type, "array"))
        return k == JV_KIND_ARRAY;
    if (!strcmp(type, "string"))
        return k == JV_KIND_STRING;
    if (!strcmp(type, "number"))
        return k == JV_KIND_NUMBER;
    if (!strcmp(type, "integer")) {
        if (k != JV_KIND_NUMBER)
            return 0;
        double d = jv_number_value(v);
        return isfinite(d) && d == floor(d);
    }
    return 0;
}

static int is_type_name(const char *t)
{
    static const char *const names[] = {"null",   "boolean", "object", "array",
                                        "number", "string",  "integer", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(t, names[i]))
            return 1;
    return 0;
}

/* Unicode code points in a UTF-8 string (jv strings are valid UTF-8). */
static int codepoints(jv s)
{
    const char *p = jv_string_value(s);
    int len = jv_string_length_bytes(jv_copy(s)), n = 0;
    for (int i = 0; i < len; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Borrowed-style lookup: a new reference to schema[key], or jv_invalid(). */
static jv get(jv obj, const char *key)
{
    if (jv_get_kind(obj) != JV_KIND_OBJECT)
        return jv_invalid();
    return jv_object_get(jv_copy(obj), jv_string(key));
}

/* Resolves a "#..." reference inside `root`. Returns a new reference or
 * jv_invalid() when the reference is not local or does not resolve. */
static jv resolve_ref(jv root, jv ref)
{
    const char *r = jv_string_value(ref);
    int len = jv_string_length_bytes(jv_copy(ref));
    if (len < 1 || r[0] != '#')
        return jv_invalid();
    jv cur = jv_copy(root);
    int i = 1;
    if (i < len && r[i] != '/') {
        jv_free(cur);
        return jv_invalid(); /* "#anchor" names are not supported */
    }
    while (i < len) {
        i++; /* skip '/' */
        jv seg = jv_string("");
        while (i < len && r[i] != '/') {
            char ch = r[i];
            if (ch == '~' && i + 1 < len && (r[i + 1] == '0' || r[i + 1] == '1')) {
                ch = r[i + 1] == '0' ? '~' : '/';
                i += 2;
            } else if (ch == '%' && i + 2 < len && strchr("0123456789abcdefABCDEF", r[i + 1]) &&
                       strchr("0123456789abcdefABCDEF", r[i + 2]) && r[i + 1] && r[i + 2]) {
                char hex[3] = {r[i + 1], r[i + 2], 0};
                ch = (char)strtol(hex, NULL, 16);
                i += 3;
            } else {
                i++;
            }
            seg = jv_string_append_buf(seg, &ch, 1);
        }
        jv next;
        if (jv_get_kind(cur) == JV_KIND_OBJECT) {
            next = jv_object_has(jv_copy(cur), jv_copy(seg)) ? jv_object_get(jv_copy(cur), jv_copy(seg))
                                                              : jv_invalid();
        } else if (jv_get_kind(cur) == JV_KIND_ARRAY) {
            const char *s = jv_string_value(seg);
            char *end;
            long idx = strtol(s, &end, 10);
            next = (*s && !*end && idx >= 0 && idx < jv_array_length(jv_copy(cur)))
                       ? jv_array_get(jv_copy(cur), (int)idx)
                       : jv_invalid();
        } else {
            next = jv_invalid();
        }
        jv_free(seg);
        jv_free(cur);
        cur = next;
        if (!jv_is_valid(cur))
            return cur;
    }
    return cur;
}

/* ---- validation ------------------------------------------------------------- */

/* A $ref being applied on the current path (all borrowed). */
struct ref_frame {
    jv ref, ptr, inst;
    const struct ref_frame *up;
};

struct vctx {
    jv root;                    /* the whole schema (borrowed) */
    struct regex_cache regexes;
    OnigMatchParam *mp;         /* search limits, made on first use */
    long steps, max_steps;      /* work done, and allowed */
    int exhausted;              /* the budget ran out: the result is an error */
    const struct ref_frame *active_refs;
};

/* 1 when `s` (borrowed) matches somewhere, 0 when not, -1 when the search
 * failed: a backtracking limit (a catastrophic pattern such as (a+)+$ on a
 * long string) or out of memory. Each search is charged to the step budget
 * by the length of the text. */
static int regex_search(struct vctx *c, OnigRegex re, jv s)
{
    int len = jv_string_length_bytes(jv_copy(s));
    c->steps += 1 + len / 64;
    if (!c->mp) {
        c->mp = onig_new_match_param();
        if (!c->mp)
            return -1;
        onig_initialize_match_param(c->mp);
        onig_set_retry_limit_in_match_of_match_param(c->mp, CV_SCHEMA_REGEX_RETRIES);
        onig_set_retry_limit_in_search_of_match_param(c->mp, CV_SCHEMA_REGEX_RETRIES);
        onig_set_match_stack_limit_size_of_match_param(c->mp, CV_SCHEMA_REGEX_STACK);
    }
    const OnigUChar *p = (const OnigUChar *)jv_string_value(s);
    const OnigUChar *end = p + len;
    int r = onig_search_with_param(re, p, end, p, end, NULL, ONIG_OPTION_NONE, c->mp);
    if (r >= 0)
        return 1;
    return r == ONIG_MISMATCH ? 0 : -1;
}

/* Error list being filled: an array of strings, and whether it is full. */
struct errs {
    jv list;
    int count; /* errors found, even beyond what the list keeps */
};

static void add_error(struct errs *e, jv ptr /* borrowed */, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct errs *e, jv ptr, const char *fmt, ...)
{
    e->count++;
    if (jv_array_length(jv_copy(e->list)) >= CV_SCHEMA_MAX_ERRORS)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jv s = jv_string_length_bytes(jv_copy(ptr)) == 0 ? jv_string("(root)") : jv_copy(ptr);
    s = jv_string_append_str(s, ": ");
    s = jv_string_append_str(s, msg);
    e->list = jv_array_append(e->list, s);
}

static void validate(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                     struct errs *e, jv *ev);

/* Validates into a scratch list; returns the number of errors and, when
 * `first` is not NULL, the first message (new reference) or jv_invalid().
 * When it passes and `ev` is not NULL, the property names it evaluated are
 * added to *ev (a failed subschema contributes no annotations). */
static int try_validate(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                        jv *first, jv *ev)
{
    struct errs tmp = {jv_array(), 0};
    jv local = ev ? jv_object() : jv_invalid();
    validate(c, schema, inst, ptr, depth, refs, &tmp, ev ? &local : NULL);
    if (tmp.count == 0 && ev)
        *ev = jv_object_merge(*ev, local);
    else
        jv_free(local);
    if (first)
        *first = tmp.count ? jv_array_get(jv_copy(tmp.list), 0) : jv_invalid();
    jv_free(tmp.list);
    return tmp.count;
}

static int num(jv schema, const char *key, double *out)
{
    jv v = get(schema, key);
    int ok = jv_get_kind(v) == JV_KIND_NUMBER;
    if (ok)
        *out = jv_number_value(v);
    jv_free(v);
    return ok;
}

static int is_true(jv schema, const char *key)
{
    jv v = get(schema, key);
    int t = jv_get_kind(v) == JV_KIND_TRUE;
    jv_free(v);
    return t;
}

static void check_type(jv schema, jv inst, jv ptr, struct errs *e)
{
    jv t = get(schema, "type");
    if (jv_get_kind(t) == JV_KIND_STRING) {
        if (!type_matches(jv_string_value(t), inst))
            add_error(e, ptr, "expected %s, got %s", jv_string_value(t), kind_name(inst));
    } else if (jv_get_kind(t) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(t)), ok = 0;
        for (int i = 0; i < n && !ok; i++) {
            jv ti = jv_array_get(jv_copy(t), i);
            ok = jv_get_kind(ti) == JV_KIND_STRING && type_matches(jv_string_value(ti), inst);
            jv_free(ti);
        }
        if (!ok) {
            jv s = jv_dump_string(jv_copy(t), 0);
            add_error(e, ptr, "expected one of the types %s, got %s", jv_string_value(s),
                      kind_name(inst));
            jv_free(s);
        }
    }
    jv_free(t);
}

static void check_enum_const(jv schema, jv inst, jv ptr, struct errs *e)
{
    jv en = get(schema, "enum");
    if (jv_get_kind(en) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(en)), ok = 0;
        for (int i = 0; i < n && !ok; i++)
            ok = jv_equal(jv_array_get(jv_copy(en), i), jv_copy(inst));
        if (!ok) {
            jv a = show(inst), b = show(en);
            add_error(e, ptr, "%s is not one of the allowed values %s", jv_string_value(a),
                      jv_string_value(b));
            jv_free(a);
            jv_free(b);
        }
    }
    jv_free(en);
    if (jv_get_kind(schema) == JV_KIND_OBJECT &&
        jv_object_has(jv_copy(schema), jv_string("const"))) {
        jv k = get(schema, "const");
        if (!jv_equal(jv_copy(k), jv_copy(inst))) {
            jv a = show(inst), b = show(k);
            add_error(e, ptr, "%s is not the required value %s", jv_string_value(a),
                      jv_string_value(b));
            jv_free(a);
            jv_free(b);
        }
        jv_free(k);
    }
}

static void check_number(jv schema, jv inst, jv ptr, struct errs *e)
{
    if (jv_get_kind(inst) != JV_KIND_NUMBER)
        return;
    double x = jv_number_value(inst), lim;
    jv xs = show(inst);
    const char *xt = jv_string_value(xs);
    jv emin = get(schema, "exclusiveMinimum"), emax = get(schema, "exclusiveMaximum");
    if (num(schema, "minimum", &lim)) {
        if (jv_get_kind(emin) == JV_KIND_TRUE) { /* draft 4 form */
            if (!(x > lim))
                add_error(e, ptr, "%s is not greater than the exclusive minimum %s", xt, fmt_num(lim).s);
        } else if (x < lim) {
            add_error(e, ptr, "%s is less than the minimum %s", xt, fmt_num(lim).s);
        }
    }
    if (num(schema, "maximum", &lim)) {
        if (jv_get_kind(emax) == JV_KIND_TRUE) {
            if (!(x < lim))
                add_error(e, ptr, "%s is not less than the exclusive maximum %s", xt, fmt_num(lim).s);
        } else if (x > lim) {
            add_error(e, ptr, "%s is greater than the maximum %s", xt, fmt_num(lim).s);
        }
    }
    if (jv_get_kind(emin) == JV_KIND_NUMBER && !(x > jv_number_value(emin)))
        add_error(e, ptr, "%s is not greater than the exclusive minimum %s", xt,
                  fmt_num(jv_number_value(emin)).s);
    if (jv_get_kind(emax) == JV_KIND_NUMBER && !(x < jv_number_value(emax)))
        add_error(e, ptr, "%s is not less than the exclusive maximum %s", xt,
                  fmt_num(jv_number_value(emax)).s);
    if (num(schema, "multipleOf", &lim) && lim > 0) {
        double q = x / lim;
        double r = fabs(q - nearbyint(q));
        if (!isfinite(q) || r > 1e-9 * fmax(1.0, fabs(q)))
            add_error(e, ptr, "%s is not a multiple of %s", xt, fmt_num(lim).s);
    }
    jv_free(emin);
    jv_free(emax);
    jv_free(xs);
}

static void check_string(struct vctx *c, jv schema, jv inst, jv ptr, struct errs *e)
{
    if (jv_get_kind(inst) != JV_KIND_STRING)
        return;
    double lim;
    int n = -1;
    if (num(schema, "minLength", &lim) && (n = codepoints(inst)) < lim)
        add_error(e, ptr, "string is shorter than %s characters (it has %d)", fmt_num(lim).s, n);
    if (num(schema, "maxLength", &lim) && (n = codepoints(inst)) > lim)
        add_error(e, ptr, "string is longer than %s characters (it has %d)", fmt_num(lim).s, n);
    jv pat = get(schema, "pattern");
    if (jv_get_kind(pat) == JV_KIND_STRING) {
        struct regex_entry *re = regex_get(&c->regexes, pat);
        if (!re || !re->re) {
            add_error(e, ptr, "pattern '%s' is not a valid regular expression%s%s",
                      jv_string_value(pat), re ? ": " : "", re ? re->error : "");
        } else {
            int m = regex_search(c, re->re, inst);
            if (m == 0) {
                jv a = show(inst);
                add_error(e, ptr, "%s does not match the pattern '%s'", jv_string_value(a),
                          jv_string_value(pat));
                jv_free(a);
            } else if (m < 0) {
                add_error(e, ptr, "pattern '%s' could not be evaluated (too complex)",
                          jv_string_value(pat));
            }
        }
    }
    jv_free(pat);
}

static void check_array(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                        struct errs *e)
{
    if (jv_get_kind(inst) != JV_KIND_ARRAY)
        return;
    int n = jv_array_length(jv_copy(inst));
    double lim;
    if (num(schema, "minItems", &lim) && n < lim)
        add_error(e, ptr, "array has %d items, fewer than the minimum %s", n, fmt_num(lim).s);
    if (num(schema, "maxItems", &lim) && n > lim)
        add_error(e, ptr, "array has %d items, more than the maximum %s", n, fmt_num(lim).s);
    if (is_true(schema, "uniqueItems") && n > 1) {
        /* the item indices sorted by item (jv_sort is stable), so equal
         * items are neighbours in ascending order: n log n, not n^2. Reports
         * the same pair as comparing every pair would: the lowest index
         * that has a duplicate, and its first duplicate. */
        jv idx = jv_array();
        for (int i = 0; i < n; i++)
            idx = jv_array_append(idx, jv_number(i));
        jv sorted = jv_sort(idx, jv_copy(inst));
        c->steps += n;
        int bi = -1, bj = -1;
        for (int k = 0; k + 1 < n; k++) {
            int i = (int)jv_number_value(jv_array_get(jv_copy(sorted), k));
            int j = (int)jv_number_value(jv_array_get(jv_copy(sorted), k + 1));
            if ((bi < 0 || i < bi) &&
                jv_equal(jv_array_get(jv_copy(inst), i), jv_array_get(jv_copy(inst), j))) {
                bi = i;
                bj = j;
            }
        }
        jv_free(sorted);
        if (bi >= 0)
            add_error(e, ptr, "items %d and %d are equal, but items must be unique", bi, bj);
    }

    /* prefixItems (2020-12) or items: [...] (older drafts) for the first
     * items; items (2020-12) or additionalItems for the rest. */
    jv prefix = get(schema, "prefixItems");
    jv items = get(schema, "items");
    jv rest;
    if (jv_get_kind(items) == JV_KIND_ARRAY) {
        jv_free(prefix);
        prefix = items;
        rest = get(schema, "additionalItems");
    } else {
        rest = items;
    }
    int np = jv_get_kind(prefix) == JV_KIND_ARRAY ? jv_array_length(jv_copy(prefix)) : 0;
    for (int i = 0; i < n; i++) {
        jv sub = i < np ? jv_array_get(jv_copy(prefix), i) : jv_copy(rest);
        if (jv_is_valid(sub)) {
            jv item = jv_array_get(jv_copy(inst), i);
            jv p = ptr_append_index(jv_copy(ptr), i);
            validate(c, sub, item, p, depth + 1, refs, e, NULL);
            jv_free(p);
            jv_free(item);
        }
        jv_free(sub);
    }
    jv_free(prefix);
    jv_free(rest);

    jv contains = get(schema, "contains");
    if (jv_is_valid(contains)) {
        int found = 0;
        for (int i = 0; i < n && !found; i++) {
            jv item = jv_array_get(jv_copy(inst), i);
            jv p = ptr_append_index(jv_copy(ptr), i);
            found = try_validate(c, contains, item, p, depth + 1, refs, NULL, NULL) == 0;
            jv_free(p);
            jv_free(item);
        }
        if (!found)
            add_error(e, ptr, "array contains no item that matches the 'contains' schema");
    }
    jv_free(contains);
}

static int property_is_listed(struct vctx *c, jv props, jv patprops, jv key)
{
    if (jv_get_kind(props) == JV_KIND_OBJECT && jv_object_has(jv_copy(props), jv_copy(key)))
        return 1;
    if (jv_get_kind(patprops) != JV_KIND_OBJECT)
        return 0;
    int listed = 0;
    jv_object_foreach(patprops, pat, sub)
    {
        struct regex_entry *re = listed ? NULL : regex_get(&c->regexes, pat);
        if (re && re->re && regex_search(c, re->re, key) == 1)
            listed = 1;
        jv_free(pat);
        jv_free(sub);
    }
    return listed;
}

/* Object keywords; property names they evaluate are added to *ev. */
static void check_object(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                         struct errs *e, jv *ev)
{
    if (jv_get_kind(inst) != JV_KIND_OBJECT)
        return;
    int n = jv_object_length(jv_copy(inst));
    double lim;
    if (num(schema, "minProperties", &lim) && n < lim)
        add_error(e, ptr, "object has %d properties, fewer than the minimum %s", n, fmt_num(lim).s);
    if (num(schema, "maxProperties", &lim) && n > lim)
        add_error(e, ptr, "object has %d properties, more than the maximum %s", n, fmt_num(lim).s);

    jv req = get(schema, "required");
    if (jv_get_kind(req) == JV_KIND_ARRAY) {
        int nr = jv_array_length(jv_copy(req));
        for (int i = 0; i < nr; i++) {
            jv k = jv_array_get(jv_copy(req), i);
            if (jv_get_kind(k) == JV_KIND_STRING && !jv_object_has(jv_copy(inst), jv_copy(k)))
                add_error(e, ptr, "missing required property '%s'", jv_string_value(k));
            jv_free(k);
        }
    }
    jv_free(req);

    jv dreq = get(schema, "dependentRequired");
    if (jv_get_kind(dreq) == JV_KIND_OBJECT) {
        jv_object_foreach(dreq, k, list)
        {
            if (jv_object_has(jv_copy(inst), jv_copy(k)) && jv_get_kind(list) == JV_KIND_ARRAY) {
                int nl = jv_array_length(jv_copy(list));
                for (int i = 0; i < nl; i++) {
                    jv d = jv_array_get(jv_copy(list), i);
                    if (jv_get_kind(d) == JV_KIND_STRING &&
                        !jv_object_has(jv_copy(inst), jv_copy(d)))
                        add_error(e, ptr, "property '%s' is required when '%s' is present",
                                  jv_string_value(d), jv_string_value(k));
                    jv_free(d);
                }
            }
            jv_free(k);
            jv_free(list);
        }
    }
    jv_free(dreq);

    jv props = get(schema, "properties");
    jv patprops = get(schema, "patternProperties");
    jv addl = get(schema, "additionalProperties");
    jv names = get(schema, "propertyNames");
    jv_object_foreach(inst, key, val)
    {
        jv p = ptr_append_key(jv_copy(ptr), key);
        if (jv_get_kind(props) == JV_KIND_OBJECT && jv_object_has(jv_copy(props), jv_copy(key))) {
            jv sub = jv_object_get(jv_copy(props), jv_copy(key));
            validate(c, sub, val, p, depth + 1, refs, e, NULL);
            jv_free(sub);
            if (ev)
                *ev = jv_object_set(*ev, jv_copy(key), jv_true());
        }
        if (jv_get_kind(patprops) == JV_KIND_OBJECT) {
            jv_object_foreach(patprops, pat, sub)
            {
                struct regex_entry *re = regex_get(&c->regexes, pat);
                if (re && re->re && regex_search(c, re->re, key) == 1) {
                    validate(c, sub, val, p, depth + 1, refs, e, NULL);
                    if (ev)
                        *ev = jv_object_set(*ev, jv_copy(key), jv_true());
                }
                jv_free(pat);
                jv_free(sub);
            }
        }
        if (jv_is_valid(addl) && !property_is_listed(c, props, patprops, key)) {
            if (jv_get_kind(addl) == JV_KIND_FALSE)
                add_error(e, ptr, "property '%s' is not allowed", jv_string_value(key));
            else
                validate(c, addl, val, p, depth + 1, refs, e, NULL);
            if (ev)
                *ev = jv_object_set(*ev, jv_copy(key), jv_true());
        }
        if (jv_is_valid(names)) {
            jv first;
            if (try_validate(c, names, key, p, depth + 1, refs, &first, NULL)) {
                add_error(e, ptr, "property name '%s' is not allowed (%s)", jv_string_value(key),
                          jv_is_valid(first) ? jv_string_value(first) : "");
            }
            jv_free(first);
        }
        jv_free(p);
        jv_free(key);
        jv_free(val);
    }
    jv_free(props);
    jv_free(patprops);
    jv_free(addl);
    jv_free(names);
}

/* For "matches none of" messages: keeps the first message of the failing
 * branch with the fewest errors, the one the author most likely meant.
 * Consumes `msg`. */
static void keep_closest(jv *kept, int *kept_count, jv msg, int count)
{
    if (count > 0 && jv_is_valid(msg) && (*kept_count < 0 || count < *kept_count)) {
        jv_free(*kept);
        *kept = msg;
        *kept_count = count;
    } else {
        jv_free(msg);
    }
}

/* Applicators on the same instance; passing subschemas add their evaluated
 * property names to *ev (for unevaluatedProperties). */
static void check_combinators(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                              struct errs *e, jv *ev)
{
    jv all = get(schema, "allOf");
    if (jv_get_kind(all) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(all));
        for (int i = 0; i < n; i++) {
            jv sub = jv_array_get(jv_copy(all), i);
            validate(c, sub, inst, ptr, depth + 1, refs, e, ev);
            jv_free(sub);
        }
    }
    jv_free(all);

    jv any = get(schema, "anyOf");
    if (jv_get_kind(any) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(any)), ok = 0, best = -1;
        jv first = jv_invalid();
        /* when annotations are collected every branch runs: each passing
         * one contributes; otherwise the first passing one settles it */
        for (int i = 0; i < n && !(ok && !ev); i++) {
            jv sub = jv_array_get(jv_copy(any), i);
            jv f;
            int cnt = try_validate(c, sub, inst, ptr, depth + 1, refs, &f, ev);
            if (cnt == 0)
                ok = 1;
            keep_closest(&first, &best, f, cnt);
            jv_free(sub);
        }
        if (!ok)
            add_error(e, ptr, "value matches none of the %d anyOf schemas (closest: %s)", n,
                      jv_is_valid(first) ? jv_string_value(first) : "no schemas");
        jv_free(first);
    }
    jv_free(any);

    jv one = get(schema, "oneOf");
    if (jv_get_kind(one) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(one)), matched = 0, a = -1, b = -1;
        jv first = jv_invalid();
        int best = -1;
        for (int i = 0; i < n; i++) {
            jv sub = jv_array_get(jv_copy(one), i);
            jv f;
            int cnt = try_validate(c, sub, inst, ptr, depth + 1, refs, &f, ev);
            if (cnt == 0) {
                if (matched++ == 0)
                    a = i;
                else if (b < 0)
                    b = i;
            }
            keep_closest(&first, &best, f, cnt);
            jv_free(sub);
        }
        if (matched == 0)
            add_error(e, ptr, "value matches none of the %d oneOf schemas (closest: %s)", n,
                      jv_is_valid(first) ? jv_string_value(first) : "no schemas");
        else if (matched > 1)
            add_error(e, ptr, "value matches oneOf schemas %d and %d, but must match exactly one",
                      a, b);
        jv_free(first);
    }
    jv_free(one);

    jv not = get(schema, "not");
    if (jv_is_valid(not) && try_validate(c, not, inst, ptr, depth + 1, refs, NULL, NULL) == 0)
        add_error(e, ptr, "value must not match the 'not' schema");
    jv_free(not);

    jv cond = get(schema, "if");
    if (jv_is_valid(cond)) {
        int holds = try_validate(c, cond, inst, ptr, depth + 1, refs, NULL, ev) == 0;
        jv branch = get(schema, holds ? "then" : "else");
        if (jv_is_valid(branch))
            validate(c, branch, inst, ptr, depth + 1, refs, e, ev);
        jv_free(branch);
    }
    jv_free(cond);
}

/*
 * Validates `inst` at instance pointer `ptr` against `schema`; all borrowed.
 * `depth` counts schema nesting (guards deep instances), `refs` counts $ref
 * hops on the current path (guards self-referencing schemas).
 */
static void validate(struct vctx *c, jv schema, jv inst, jv ptr, int depth, int refs,
                     struct errs *e, jv *ev)
{
    if (c->exhausted || jv_array_length(jv_copy(e->list)) >= CV_SCHEMA_MAX_ERRORS)
        return;
    if (++c->steps > c->max_steps) {
        c->exhausted = 1;
        return;
    }
    jv_kind sk = jv_get_kind(schema);
    if (sk == JV_KIND_TRUE)
        return;
    if (sk == JV_KIND_FALSE) {
        add_error(e, ptr, "no value is allowed here (the schema is false)");
        return;
    }
    if (sk != JV_KIND_OBJECT)
        return; /* not a schema; cv__schema_check reports it */
    if (depth > CV_SCHEMA_MAX_DEPTH) {
        add_error(e, ptr, "schema or value is nested more than %d levels deep",
                  CV_SCHEMA_MAX_DEPTH);
        return;
    }

    /* property names of `inst` evaluated by this schema object, collected
     * only when it or a caller has unevaluatedProperties */
    jv unev = get(schema, "unevaluatedProperties");
    int collect = ev || jv_is_valid(unev);
    jv local = collect ? jv_object() : jv_invalid();
    jv *lp = collect ? &local : NULL;
    jv ref = get(schema, "$ref");
    if (jv_get_kind(ref) == JV_KIND_STRING) {
        if (refs >= CV_SCHEMA_MAX_REF_DEPTH) {
            add_error(e, ptr, "$ref '%s' nested more than %d times (is the schema recursive?)",
                      jv_string_value(ref), CV_SCHEMA_MAX_REF_DEPTH);
        } else {
            /* the same $ref again on the same value: it can only loop (each
             * anyOf around it would double the work until the depth limit) */
            int circular = 0;
            for (const struct ref_frame *f = c->active_refs; f && !circular; f = f->up)
                circular = jv_equal(jv_copy(f->ref), jv_copy(ref)) &&
                           jv_equal(jv_copy(f->ptr), jv_copy(ptr)) &&
                           jv_identical(jv_copy(f->inst), jv_copy(inst));
            jv target = circular ? jv_invalid() : resolve_ref(c->root, ref);
            if (circular) {
                add_error(e, ptr, "$ref '%s' leads back to itself without going into the value "
                                  "(the schema is circular)",
                          jv_string_value(ref));
            } else if (!jv_is_valid(target)) {
                add_error(e, ptr, "cannot resolve $ref '%s' (only '#/...' pointers into the same "
                                  "schema are supported)",
                          jv_string_value(ref));
            } else {
                struct ref_frame frame = {ref, ptr, inst, c->active_refs};
                c->active_refs = &frame;
                validate(c, target, inst, ptr, depth + 1, refs + 1, e, lp);
                c->active_refs = frame.up;
            }
            jv_free(target);
        }
    }
    jv_free(ref);

    check_type(schema, inst, ptr, e);
    check_enum_const(schema, inst, ptr, e);
    check_number(schema, inst, ptr, e);
    check_string(c, schema, inst, ptr, e);
    check_array(c, schema, inst, ptr, depth, refs, e);
    check_object(c, schema, inst, ptr, depth, refs, e, lp);
    check_combinators(c, schema, inst, ptr, depth, refs, e, lp);

    /* unevaluatedProperties comes last: it sees what every other keyword of
     * this object (and its passing subschemas) evaluated */
    if (jv_is_valid(unev) && jv_get_kind(inst) == JV_KIND_OBJECT) {
        jv_object_foreach(inst, key, val)
        {
            if (!jv_object_has(jv_copy(local), jv_copy(key))) {
                if (jv_get_kind(unev) == JV_KIND_FALSE) {
                    add_error(e, ptr, "property '%s' is not allowed", jv_string_value(key));
                } else {
                    jv p = ptr_append_key(jv_copy(ptr), key);
                    validate(c, unev, val, p, depth + 1, refs, e, NULL);
                    jv_free(p);
                }
                local = jv_object_set(local, jv_copy(key), jv_true());
            }
            jv_free(key);
            jv_free(val);
        }
    }
    jv_free(unev);
    if (ev) {
        c->steps += jv_object_length(jv_copy(local));
        *ev = jv_object_merge(*ev, local);
    } else {
        jv_free(local);
    }
}

/* Nodes of `v` (borrowed) down to CV_SCHEMA_MAX_DEPTH levels, for the budget. */
static long count_nodes(jv v, int depth)
{
    long n = 1;
    if (depth > CV_SCHEMA_MAX_DEPTH)
        return n;
    if (jv_get_kind(v) == JV_KIND_ARRAY) {
        jv_array_foreach(v, i, item)
        {
            n += count_nodes(item, depth + 1);
            jv_free(item);
        }
    } else if (jv_get_kind(v) == JV_KIND_OBJECT) {
        jv_object_foreach(v, k, item)
        {
            n += count_nodes(item, depth + 1);
            jv_free(k);
            jv_free(item);
        }
    }
    return n;
}

jv cv__schema_validate(jv schema, jv instance)
{
    struct vctx c = {.root = schema, .regexes = {.index = jv_invalid()}};
    c.max_steps = CV_SCHEMA_BASE_STEPS + CV_SCHEMA_STEPS_PER_NODE * count_nodes(instance, 0);
    struct errs e = {jv_array(), 0};
    jv ptr = jv_string("");
    validate(&c, schema, instance, ptr, 0, 0, &e, NULL);
    jv_free(ptr);
    regex_cache_free(&c.regexes);
    if (c.mp)
        onig_free_match_param(c.mp);
    if (c.exhausted) {
        /* the messages so far are unreliable (cut-short branches passed) */
        jv_free(e.list);
        return JV_ARRAY(jv_string_fmt(
            "(root): validation abandoned after %ld steps: the schema is too costly for this "
            "value (anyOf/oneOf branches repeated through $ref?)",
            c.max_steps));
    }
    if (e.count == 0) {
        jv_free(e.list);
        return jv_null();
    }
    return e.list;
}

/* ---- schema checking -------------------------------------------------------- */

struct cctx {
    jv root;
    struct regex_cache regexes;
    jv msg; /* first problem (string) or jv_invalid() */
};

static void problem(struct cctx *c, jv ptr /* borrowed */, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct cctx *c, jv ptr, const char *fmt, ...)
{
    if (jv_is_valid(c->msg))
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    jv s = jv_string_length_bytes(jv_copy(ptr)) == 0 ? jv_string("(root)") : jv_copy(ptr);
    s = jv_string_append_str(s, ": ");
    c->msg = jv_string_append_str(s, buf);
}

static void check_schema(struct cctx *c, jv s, jv ptr, int depth);

static int kind_is(jv s, const char *key, jv_kind k, jv *out)
{
    *out = get(s, key);
    return jv_is_valid(*out) && jv_get_kind(*out) == k;
}

/* Checks s[key] (when present) is a schema. */
static void check_sub(struct cctx *c, jv s, const char *key, jv ptr, int depth)
{
    jv v = get(s, key);
    if (jv_is_valid(v)) {
        jv p = ptr_append(jv_copy(ptr), key, strlen(key));
        check_schema(c, v, p, depth + 1);
        jv_free(p);
    }
    jv_free(v);
}

/* Checks s[key] (when present) is an array of schemas (non-empty if asked). */
static void check_sub_array(struct cctx *c, jv s, const char *key, jv ptr, int depth,
                            int nonempty)
{
    jv v = get(s, key);
    if (!jv_is_valid(v)) {
        jv_free(v);
        return;
    }
    jv p = ptr_append(jv_copy(ptr), key, strlen(key));
    if (jv_get_kind(v) != JV_KIND_ARRAY || (nonempty && jv_array_length(jv_copy(v)) == 0)) {
        problem(c, p, "must be %s array of schemas", nonempty ? "a non-empty" : "an");
    } else {
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n; i++) {
            jv sub = jv_array_get(jv_copy(v), i);
            jv pi = ptr_append_index(jv_copy(p), i);
            check_schema(c, sub, pi, depth + 1);
            jv_free(pi);
            jv_free(sub);
        }
    }
    jv_free(p);
    jv_free(v);
}

/* Checks s[key] (when present) is an object whose values are schemas. */
static void check_sub_map(struct cctx *c, jv s, const char *key, jv ptr, int depth, int regex_keys)
{
    jv v = get(s, key);
    if (!jv_is_valid(v)) {
        jv_free(v);
        return;
    }
    jv p = ptr_append(jv_copy(ptr), key, strlen(key));
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        problem(c, p, "must be an object of schemas");
    } else {
        jv_object_foreach(v, k, sub)
        {
            jv pk = ptr_append_key(jv_copy(p), k);
            if (regex_keys) {
                struct regex_entry *re = regex_get(&c->regexes, k);
                if (re && !re->re)
                    problem(c, pk, "'%s' is not a valid regular expression: %s",
                            jv_string_value(k), re->error);
            }
            check_schema(c, sub, pk, depth + 1);
            jv_free(pk);
            jv_free(k);
            jv_free(sub);
        }
    }
    jv_free(p);
    jv_free(v);
}

static void check_schema(struct cctx *c, jv s, jv ptr, int depth)
{
    if (jv_is_valid(c->msg))
        return;
    jv_kind k = jv_get_kind(s);
    if (k == JV_KIND_TRUE || k == JV_KIND_FALSE)
        return;
    if (k != JV_KIND_OBJECT) {
        problem(c, ptr, "a schema must be an object or a boolean, not %s", kind_name(s));
        return;
    }
    if (depth > CV_SCHEMA_MAX_DEPTH) {
        problem(c, ptr, "schema is nested more than %d levels deep", CV_SCHEMA_MAX_DEPTH);
        return;
    }
    jv v;

#define KEY_PTR(key) ptr_append(jv_copy(ptr), key, strlen(key))

    v = get(s, "type");
    if (jv_is_valid(v)) {
        jv p = KEY_PTR("type");
        if (jv_get_kind(v) == JV_KIND_STRING) {
            if (!is_type_name(jv_string_value(v)))
                problem(c, p, "unknown type '%s'", jv_string_value(v));
        } else if (jv_get_kind(v) == JV_KIND_ARRAY && jv_array_length(jv_copy(v)) > 0) {
            int n = jv_array_length(jv_copy(v));
            for (int i = 0; i < n; i++) {
                jv t = jv_array_get(jv_copy(v), i);
                if (jv_get_kind(t) != JV_KIND_STRING || !is_type_name(jv_string_value(t)))
                    problem(c, p, "item %d is not a type name", i);
                jv_free(t);
            }
        } else {
            problem(c, p, "must be a type name or a non-empty array of type names");
        }
        jv_free(p);
    }
    jv_free(v);

    static const char *const numbers[] = {"minimum", "maximum", NULL};
    for (int i = 0; numbers[i]; i++) {
        v = get(s, numbers[i]);
        if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NUMBER) {
            jv p = KEY_PTR(numbers[i]);
            problem(c, p, "must be a number");
            jv_free(p);
        }
        jv_free(v);
    }
    static const char *const exclusive[] = {"exclusiveMinimum", "exclusiveMaximum", NULL};
    for (int i = 0; exclusive[i]; i++) {
        v = get(s, exclusive[i]);
        jv_kind vk = jv_get_kind(v);
        if (jv_is_valid(v) && vk != JV_KIND_NUMBER && vk != JV_KIND_TRUE && vk != JV_KIND_FALSE) {
            jv p = KEY_PTR(exclusive[i]);
            problem(c, p, "must be a number");
            jv_free(p);
        }
        jv_free(v);
    }
    if (kind_is(s, "multipleOf", JV_KIND_NUMBER, &v) ? !(jv_number_value(v) > 0)
                                                     : jv_is_valid(v)) {
        jv p = KEY_PTR("multipleOf");
        problem(c, p, "must be a number greater than 0");
        jv_free(p);
    }
    jv_free(v);
    static const char *const counts[] = {"minLength", "maxLength",     "minItems", "maxItems",
                                         "minProperties", "maxProperties", NULL};
    for (int i = 0; counts[i]; i++) {
        v = get(s, counts[i]);
        if (jv_is_valid(v)) {
            double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : -1;
            if (!(d >= 0 && d == floor(d) && isfinite(d))) {
                jv p = KEY_PTR(counts[i]);
                problem(c, p, "must be a non-negative integer");
                jv_free(p);
            }
        }
        jv_free(v);
    }
    static const char *const bools[] = {"uniqueItems", NULL};
    for (int i = 0; bools[i]; i++) {
        v = get(s, bools[i]);
        if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_TRUE && jv_get_kind(v) != JV_KIND_FALSE) {
            jv p = KEY_PTR(bools[i]);
            problem(c, p, "must be true or false");
            jv_free(p);
        }
        jv_free(v);
    }

    v = get(s, "pattern");
    if (jv_is_valid(v)) {
        jv p = KEY_PTR("pattern");
        if (jv_get_kind(v) != JV_KIND_STRING) {
            problem(c, p, "must be a string");
        } else {
            struct regex_entry *re = regex_get(&c->regexes, v);
            if (re && !re->re)
                problem(c, p, "'%s' is not a valid regular expression: %s", jv_string_value(v),
                        re->error);
        }
        jv_free(p);
    }
    jv_free(v);

    v = get(s, "enum");
    if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_ARRAY) {
        jv p = KEY_PTR("enum");
        problem(c, p, "must be an array");
        jv_free(p);
    }
    jv_free(v);

    v = get(s, "required");
    if (jv_is_valid(v)) {
        jv p = KEY_PTR("required");
        int ok = jv_get_kind(v) == JV_KIND_ARRAY;
        int n = ok ? jv_array_length(jv_copy(v)) : 0;
        for (int i = 0; i < n && ok; i++) {
            jv t = jv_array_get(jv_copy(v), i);
            ok = jv_get_kind(t) == JV_KIND_STRING;
            jv_free(t);
        }
        if (!ok)
            problem(c, p, "must be an array of property names (strings)");
        jv_free(p);
    }
    jv_free(v);

    v = get(s, "dependentRequired");
    if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_OBJECT) {
        jv p = KEY_PTR("dependentRequired");
        problem(c, p, "must be an object of arrays of property names");
        jv_free(p);
    }
    jv_free(v);

    v = get(s, "$ref");
    if (jv_is_valid(v)) {
        jv p = KEY_PTR("$ref");
        if (jv_get_kind(v) != JV_KIND_STRING) {
            problem(c, p, "must be a string");
        } else {
            jv target = resolve_ref(c->root, v);
            if (!jv_is_valid(target))
                problem(c, p,
                        "cannot resolve '%s' (only '#/...' pointers into the same schema are "
                        "supported)",
                        jv_string_value(v));
            jv_free(target);
        }
        jv_free(p);
    }
    jv_free(v);

    v = get(s, "items");
    if (jv_get_kind(v) == JV_KIND_ARRAY)
        check_sub_array(c, s, "items", ptr, depth, 0);
    else
        check_sub(c, s, "items", ptr, depth);
    jv_free(v);
    check_sub(c, s, "additionalItems", ptr, depth);
    check_sub(c, s, "additionalProperties", ptr, depth);
    check_sub(c, s, "unevaluatedProperties", ptr, depth);
    check_sub(c, s, "propertyNames", ptr, depth);
    check_sub(c, s, "contains", ptr, depth);
    check_sub(c, s, "not", ptr, depth);
    check_sub(c, s, "if", ptr, depth);
    check_sub(c, s, "then", ptr, depth);
    check_sub(c, s, "else", ptr, depth);
    check_sub_array(c, s, "prefixItems", ptr, depth, 0);
    check_sub_array(c, s, "allOf", ptr, depth, 1);
    check_sub_array(c, s, "anyOf", ptr, depth, 1);
    check_sub_array(c, s, "oneOf", ptr, depth, 1);
    check_sub_map(c, s, "properties", ptr, depth, 0);
    check_sub_map(c, s, "patternProperties", ptr, depth, 1);
    check_sub_map(c, s, "$defs", ptr, depth, 0);
    check_sub_map(c, s, "definitions", ptr, depth, 0);
#undef KEY_PTR
}

jv cv__schema_check(jv schema)
{
    struct cctx c = {schema, {.index = jv_invalid()}, jv_invalid()};
    jv ptr = jv_string("");
    check_schema(&c, schema, ptr, 0);
    jv_free(ptr);
    regex_cache_free(&c.regexes);
    if (jv_is_valid(c.msg))
        return c.msg;
    jv_free(c.msg);
    return jv_null();
}

/* ---- one full match, for callers outside schemas (event filters) --------------- */

int cv__regex_full_match(const char *pattern, const char *subject)
{
    pthread_once(&onig_once, onig_setup);
    char *anchored = NULL;
    if (asprintf(&anchored, "\\A(?:%s)\\z", pattern) < 0)
        return -1;
    OnigRegex re;
    OnigErrorInfo einfo;
    const OnigUChar *p = (const OnigUChar *)anchored;
    int rc = onig_new(&re, p, p + strlen(anchored), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_PERL, &einfo);
    free(anchored);
    if (rc != ONIG_NORMAL)
        return -1;
    OnigMatchParam *mp = onig_new_match_param();
    if (!mp) {
        onig_free(re);
        return -1;
    }
    onig_initialize_match_param(mp);
    onig_set_retry_limit_in_match_of_match_param(mp, CV_SCHEMA_REGEX_RETRIES);
    onig_set_retry_limit_in_search_of_match_param(mp, CV_SCHEMA_REGEX_RETRIES);
    onig_set_match_stack_limit_size_of_match_param(mp, CV_SCHEMA_REGEX_STACK);
    const OnigUChar *sp = (const OnigUChar *)subject, *end = sp + strlen(subject);
    int r = onig_search_with_param(re, sp, end, sp, end, NULL, ONIG_OPTION_NONE, mp);
    onig_free_match_param(mp);
    onig_free(re);
    return r >= 0 ? 1 : r == ONIG_MISMATCH ? 0 : -1;
}
