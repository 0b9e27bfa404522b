/*
 * check.c — text buffers and the value comparisons of the conformance runner.
 *
 * Every assertion of both modes goes through these few functions, so the
 * rules stated in docs/conformance.md live here: deep equality ignores key
 * order and compares numbers by value; "fault with error" compares only the
 * keys listed; property paths are dotted. All jv arguments are borrowed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctk.h"
#include "json/yaml.h"

/* ---- text buffer --------------------------------------------------------- */

static int buf_reserve(struct ctk_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

void ctk_buf_append(struct ctk_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ctk_buf_printf(struct ctk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *ctk_buf_str(const struct ctk_buf *b)
{
    return b->p ? b->p : "";
}

void ctk_buf_cleanup(struct ctk_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *ctk_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct ctk_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ctk_buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        ctk_buf_cleanup(&b);
        return NULL;
    }
    if (!b.p)
        ctk_buf_append(&b, "", 0);
    if (len)
        *len = b.len;
    return b.p;
}

/* ---- values -------------------------------------------------------------- */

jv ctk_parse_yaml(const char *text, size_t len, const char *name)
{
    jv out = jv_invalid();
    jv diags = jv_array();
    int rc = cv__yaml_parse(text, len, name, &out, NULL, &diags);
    if (rc == 0 && jv_is_valid(out)) {
        jv_free(diags);
        return out;
    }
    jv_free(out);
    struct ctk_buf m = {0};
    ctk_buf_printf(&m, "cannot parse %s: ", name);
    ctk_buf_json(&m, diags, 300);
    jv_free(diags);
    jv err = jv_invalid_with_msg(jv_string(ctk_buf_str(&m)));
    ctk_buf_cleanup(&m);
    return err;
}

static int is_index(const char *s, size_t n, int *out)
{
    if (n == 0 || n > 9)
        return 0;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

jv ctk_path_get(jv v, const char *path, struct ctk_buf *why)
{
    jv cur = jv_copy(v);
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        jv next = jv_invalid();
        int idx;
        if (jv_get_kind(cur) == JV_KIND_OBJECT) {
            jv key = jv_string_sized(p, (int)n);
            if (jv_object_has(jv_copy(cur), jv_copy(key)))
                next = jv_object_get(jv_copy(cur), key);
            else
                jv_free(key);
        } else if (jv_get_kind(cur) == JV_KIND_ARRAY && is_index(p, n, &idx)) {
            if (idx < jv_array_length(jv_copy(cur)))
                next = jv_array_get(jv_copy(cur), idx);
        }
        if (!jv_is_valid(next)) {
            if (why) {
                ctk_buf_printf(why, "no '%.*s' in ", (int)n, p);
                ctk_buf_json(why, cur, 160);
            }
            jv_free(cur);
            return jv_invalid();
        }
        jv_free(cur);
        cur = next;
        if (!dot)
            return cur;
        p = dot + 1;
    }
}

int ctk_equal(jv a, jv b)
{
    /* jq's jv_equal compares objects without regard to key order and numbers
     * by their double value; it consumes, so hand it copies. */
    return jv_equal(jv_copy(a), jv_copy(b));
}

int ctk_subset(jv expected, jv actual, struct ctk_buf *why)
{
    if (jv_get_kind(expected) != JV_KIND_OBJECT) {
        if (ctk_equal(expected, actual))
            return 1;
        ctk_buf_printf(why, "expected ");
        ctk_buf_json(why, expected, 300);
        ctk_buf_printf(why, ", got ");
        ctk_buf_json(why, actual, 300);
        return 0;
    }
    if (jv_get_kind(actual) != JV_KIND_OBJECT) {
        ctk_buf_printf(why, "expected an object with ");
        ctk_buf_json(why, expected, 300);
        ctk_buf_printf(why, ", got ");
        ctk_buf_json(why, actual, 300);
        return 0;
    }
    int ok = 1;
    jv_object_foreach(expected, key, want)
    {
        jv got = jv_object_has(jv_copy(actual), jv_copy(key))
                     ? jv_object_get(jv_copy(actual), jv_copy(key))
                     : jv_invalid();
        if (!jv_is_valid(got) || !ctk_equal(want, got)) {
            ctk_buf_printf(why, "%s'%s': expected ", ok ? "" : "; ", jv_string_value(key));
            ctk_buf_json(why, want, 200);
            ctk_buf_printf(why, ", got ");
            if (jv_is_valid(got))
                ctk_buf_json(why, got, 200);
            else
                ctk_buf_printf(why, "(absent)");
            ok = 0;
        }
        jv_free(got);
        jv_free(key);
        jv_free(want);
    }
    return ok;
}

void ctk_buf_json(struct ctk_buf *b, jv v, size_t max)
{
    if (!jv_is_valid(v)) {
        ctk_buf_printf(b, "(none)");
        return;
    }
    jv s = jv_dump_string(jv_copy(v), 0);
    const char *t = jv_string_value(s);
    size_t n = (size_t)jv_string_length_bytes(jv_copy(s));
    if (n > max) {
        /* cut on a UTF-8 character boundary */
        size_t cut = max;
        while (cut > 0 && ((unsigned char)t[cut] & 0xC0) == 0x80)
            cut--;
        ctk_buf_append(b, t, cut);
        ctk_buf_printf(b, "…");
    } else {
        ctk_buf_append(b, t, n);
    }
    jv_free(s);
}
