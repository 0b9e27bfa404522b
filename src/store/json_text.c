/*
 * json_text.c — the store's JSON serialiser (store_int.h): jv to compact
 * text for every value the backends write. Reading back is jv_parse_sized's
 * job; this file only has to produce text it accepts and reads back equal.
 */
#include "store/store_int.h"

#include "conveyor.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    char *p;
    size_t n, cap;
    int rc; /* first failure: CV_ENOMEM or CV_EINVAL */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->rc)
        return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->rc = CV_ENOMEM;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = '\0';
}

static void put_number(struct out *o, double d)
{
    char b[40];
    int n;
    if (isnan(d))
        n = snprintf(b, sizeof b, "null");
    else if (isinf(d))
        n = snprintf(b, sizeof b, "%s1.7976931348623157e+308", d < 0 ? "-" : "");
    else if (d == floor(d) && fabs(d) < 1e17)
        n = snprintf(b, sizeof b, "%s%lld", d == 0 && signbit(d) ? "-" : "", (long long)d);
    else {
        n = snprintf(b, sizeof b, "%.15g", d);
        if (strtod(b, NULL) != d)
            n = snprintf(b, sizeof b, "%.17g", d);
    }
    put(o, b, (size_t)n);
}

/* Escapes as jq does: the two JSON specials, C0 controls and DEL; UTF-8
 * (always valid in a jv string) is copied as it is. */
static void put_string(struct out *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* 1 for the bytes that need an escape: C0 controls, '"', '\\', DEL. */
    static const unsigned char special[256] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        ['"'] = 1, ['\\'] = 1, [0x7f] = 1,
    };
    put(o, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!special[c])
            continue;
        put(o, s + run, i - run);
        run = i + 1;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t en = 2;
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            en = 6;
        }
        put(o, e, en);
    }
    put(o, s + run, len - run);
    put(o, "\"", 1);
}

static void put_value(struct out *o, jv v, int depth)
{
    if (o->rc)
        return;
    switch (jv_get_kind(v)) {
    case JV_KIND_INVALID:
    case JV_KIND_NULL:
        put(o, "null", 4);
        break;
    case JV_KIND_FALSE:
        put(o, "false", 5);
        break;
    case JV_KIND_TRUE:
        put(o, "true", 4);
        break;
    case JV_KIND_NUMBER:
        put_number(o, jv_number_value(v));
        break;
    case JV_KIND_STRING:
        put_string(o, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
        break;
    case JV_KIND_ARRAY:
        if (depth >= CV_STORE_JSON_MAX_DEPTH) {
            o->rc = CV_EINVAL;
            return;
        }
        put(o, "[", 1);
        jv_array_foreach(v, i, x)
        {
            if (i)
                put(o, ",", 1);
            put_value(o, x, depth + 1);
            jv_free(x);
        }
        put(o, "]", 1);
        break;
    case JV_KIND_OBJECT: {
        if (depth >= CV_STORE_JSON_MAX_DEPTH) {
            o->rc = CV_EINVAL;
            return;
        }
        put(o, "{", 1);
        int first = 1;
        jv_object_foreach(v, k, x)
        {
            if (!first)
                put(o, ",", 1);
            first = 0;
            put_string(o, jv_string_value(k), (size_t)jv_string_length_bytes(jv_copy(k)));
            put(o, ":", 1);
            put_value(o, x, depth + 1);
            jv_free(k);
            jv_free(x);
        }
        put(o, "}", 1);
        break;
    }
    }
}

int cv__store_json_dump(jv v, char **out, size_t *len)
{
    struct out o = {0};
    put_value(&o, v, 0);
    if (!o.rc && !o.p)
        put(&o, "", 0);
    if (o.rc) {
        free(o.p);
        *out = NULL;
        *len = 0;
        return o.rc;
    }
    *out = o.p;
    *len = o.n;
    return 0;
}
