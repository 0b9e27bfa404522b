/*
 * yaml.c — YAML 1.2 / JSON text to jq `jv`, with source locations.
 *
 * This file owns the translation of document text into values: nothing else in
 * conveyor should call libfyaml or resolve scalars on its own, so every
 * document gets the same YAML 1.2 core-schema typing, the same duplicate-key
 * rule and the same limits. It drives libfyaml's event parser (not its
 * document builder) because events carry a start mark for every node,
 * collections included, which the locations table needs, and because building
 * the jv tree ourselves lets us count alias expansions before they happen.
 *
 * Decisions worth knowing (see also yaml.h):
 *  - The input is checked first: a NUL byte or invalid UTF-8 is a parse error
 *    with its line and column (libfyaml would pass bad bytes through).
 *  - Exactly one document: an empty stream is "empty document"; a second
 *    document ("---" after the first) is "expected a single document".
 *  - Plain scalars resolve by the YAML 1.2 core schema. Integers and floats
 *    become jq numbers (doubles: integers beyond 2^53 lose precision, and
 *    magnitudes beyond DBL_MAX become infinity, exactly as jq's own JSON
 *    parser does; jq prints them as +-1.7976931348623157e+308).
 *    `.inf`, `-.inf` and `.nan` stay strings: jq 1.6 cannot print them as
 *    JSON (it writes 1.797e308 and null), so keeping the text loses nothing.
 *  - Tags: !!str, !!int, !!float, !!bool, !!null are honoured (a value that
 *    does not fit its tag is an error), the non-specific tag "!" makes a
 *    string, !!binary and !!timestamp keep their text, !!map/!!seq must match
 *    the node kind; any other tag is ignored and the node resolves as untagged.
 *  - Aliases share the anchored jv (reference counted), but every node an
 *    alias stands for counts against CV_YAML_MAX_NODES, its scalar text
 *    against CV_YAML_MAX_ALIAS_BYTES and its nesting against
 *    CV_YAML_MAX_DEPTH, so alias bombs are refused early.
 *  - Nothing costs more than linear time in the input plus the output: JSON
 *    pointers are built only when locations are asked for, and their total
 *    text is bounded by CV_YAML_MAX_LOC_BYTES (a long key is repeated in the
 *    pointer of every node below it).
 *  - Keys are strings: a string key is itself, another scalar key is its text
 *    as written (`1: x` has key "1", `~: x` has key "~"), a collection key is
 *    its JSON text. Two keys with the same resulting text are duplicates.
 */
#include "json/yaml.h"

#include "conveyor.h"

#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CV_YAML_MAX_DEPTH 256
#define CV_YAML_MAX_NODES 1000000
/* Scalar bytes that aliases may repeat: with big strings, a few thousand
 * nodes already make gigabytes of JSON. */
#define CV_YAML_MAX_ALIAS_BYTES ((size_t)64 << 20)
/* JSON pointer text built for the locations table: a long key above many
 * nodes is repeated in every pointer below it. */
#define CV_YAML_MAX_LOC_BYTES ((size_t)64 << 20)

/* ---- parse state ---------------------------------------------------------- */

/* A collection under construction. */
struct frame {
    jv value;     /* array or object being filled */
    int is_map;
    int has_key;  /* mapping: `key` holds a key waiting for its value */
    jv key;       /* pending key (string) when has_key */
    int key_line, key_col;
    jv ptr;       /* JSON pointer of this node; invalid inside a mapping key */
    int height;   /* 1 + the largest child height so far */
    size_t nodes_at_start;
    size_t bytes_at_start;
    char *anchor; /* malloc'd anchor name, or NULL */
    const char *tag; /* borrowed from the event, checked at start only */
    int line, col;
};

/* An anchored node: what a later alias stands for. */
struct anchor {
    char *name;
    jv value;
    jv ptr;       /* where it was defined (for the aliased nodes' locations) */
    size_t nodes; /* nodes in its subtree */
    size_t bytes; /* scalar bytes in its subtree (aliases expanded) */
    int height;
};

struct ctx {
    const char *name;
    const char *text; /* the input, for locating block scalar indicators */
    size_t len;
    int want_locs;
    jv locs;
    struct frame stack[CV_YAML_MAX_DEPTH + 1];
    int depth;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t nodes;
    size_t bytes;       /* scalar bytes so far, aliases expanded */
    size_t alias_bytes; /* of which repeated by aliases */
    size_t aliases;     /* alias nodes met */
    size_t loc_bytes;   /* pointer text built for locations */
    int have_root;
    jv root;
    int docs;
    int failed;
    int err_line, err_col;
    char msg[512];
    int last_line, last_col; /* 1-based end of the last event, a fallback mark */
};

/* strdup is POSIX, not C17; this file needs only this much of it. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r)
        memcpy(r, s, n);
    return r;
}

static void fail(struct ctx *c, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct ctx *c, int line, int col, const char *fmt, ...)
{
    if (c->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->failed = 1;
    c->err_line = line;
    c->err_col = col;
}

/* Shortens a user-supplied text for a message: at most 40 bytes, and never
 * cutting a UTF-8 sequence. Returns the byte count to print. */
static int clip(const char *s, size_t len)
{
    if (len <= 40)
        return (int)len;
    size_t n = 40;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

/* ---- input checks ----------------------------------------------------------- */

/*
 * Finds the first NUL byte or invalid UTF-8 sequence (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). Returns its offset,
 * or `len` when the text is clean; *what says which problem it is.
 */
static size_t first_bad_byte(const unsigned char *s, size_t len, const char **what)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b == 0) {
            *what = "NUL byte is not allowed in a document";
            return i;
        }
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (b >= 0xC2 && b <= 0xDF) {
            n = 2;
            cp = b & 0x1F;
        } else if (b >= 0xE0 && b <= 0xEF) {
            n = 3;
            cp = b & 0x0F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 4;
            cp = b & 0x07;
        } else {
            *what = "invalid UTF-8 byte sequence";
            return i;
        }
        if (i + n > len) {
            *what = "invalid UTF-8 byte sequence";
            return i;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                *what = "invalid UTF-8 byte sequence";
                return i;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
            *what = "invalid UTF-8 byte sequence";
            return i;
        }
        i += n;
    }
    return len;
}

/* 1-based line and column (in code points) of byte offset `off`. */
static void offset_to_line_col(const char *s, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* ---- JSON pointers and locations -------------------------------------------- */

/* ptr + "/" + escaped(seg). Consumes `ptr`; borrows `seg`. */
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

/* ptr + "/" + index. Consumes `ptr`. */
static jv ptr_append_index(jv ptr, int index)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%d", index);
    return ptr_append(ptr, buf, (size_t)n);
}

/* Counts `n` more bytes of pointer text against CV_YAML_MAX_LOC_BYTES;
 * returns -1 (and fails the parse) past it. */
static int count_loc_bytes(struct ctx *c, size_t n, int line, int col)
{
    c->loc_bytes += n;
    if (c->loc_bytes <= CV_YAML_MAX_LOC_BYTES)
        return 0;
    fail(c, line, col,
         "document is too large to locate: the JSON pointers of its nodes add up to more than "
         "%zu MiB (very long keys above many nodes?)",
         CV_YAML_MAX_LOC_BYTES >> 20);
    return -1;
}

/* The pointer of the node that starts now: a new reference, or jv_invalid()
 * when the node is (inside) a mapping key and so has no pointer, or when no
 * locations were asked for (pointers are built only for them: building one
 * per node costs the length of every key above it). */
static jv next_ptr(struct ctx *c)
{
    if (!c->want_locs)
        return jv_invalid();
    if (c->depth == 0)
        return jv_string("");
    struct frame *f = &c->stack[c->depth - 1];
    if (!jv_is_valid(f->ptr))
        return jv_invalid();
    if (f->is_map) {
        if (!f->has_key)
            return jv_invalid();
        return ptr_append(jv_copy(f->ptr), jv_string_value(f->key),
                          (size_t)jv_string_length_bytes(jv_copy(f->key)));
    }
    return ptr_append_index(jv_copy(f->ptr), jv_array_length(jv_copy(f->value)));
}

static void set_loc(struct ctx *c, jv ptr /* borrowed */, int line, int col)
{
    if (!c->want_locs || !jv_is_valid(ptr))
        return;
    if (count_loc_bytes(c, (size_t)jv_string_length_bytes(jv_copy(ptr)), line, col))
        return;
    c->locs = jv_object_set(c->locs, jv_copy(ptr),
                            JV_ARRAY(jv_number(line), jv_number(col)));
}

/*
 * Records locations for every node of an aliased value: the alias itself is
 * where the alias is written; each node below it takes the location of the
 * node it copies (from `src`, the anchor's pointer) when that is known, else
 * the alias's. Borrows everything.
 */
static void set_alias_locs(struct ctx *c, jv v, jv dst, jv src, int root, int line, int col)
{
    /* the source pointers are rebuilt for every alias: they count too */
    if (c->failed || (jv_is_valid(src) &&
                      count_loc_bytes(c, (size_t)jv_string_length_bytes(jv_copy(src)), line, col)))
        return;
    jv loc = jv_invalid();
    if (!root && jv_is_valid(src) && jv_object_has(jv_copy(c->locs), jv_copy(src)))
        loc = jv_object_get(jv_copy(c->locs), jv_copy(src));
    if (jv_is_valid(loc)) {
        if (count_loc_bytes(c, (size_t)jv_string_length_bytes(jv_copy(dst)), line, col)) {
            jv_free(loc);
            return;
        }
        c->locs = jv_object_set(c->locs, jv_copy(dst), loc);
    } else {
        set_loc(c, dst, line, col);
    }
    if (c->failed)
        return;

    if (jv_get_kind(v) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n; i++) {
            jv item = jv_array_get(jv_copy(v), i);
            jv d = ptr_append_index(jv_copy(dst), i);
            jv s = jv_is_valid(src) ? ptr_append_index(jv_copy(src), i) : jv_invalid();
            set_alias_locs(c, item, d, s, 0, line, col);
            jv_free(item);
            jv_free(d);
            jv_free(s);
        }
    } else if (jv_get_kind(v) == JV_KIND_OBJECT) {
        jv_object_foreach(v, k, item)
        {
            const char *ks = jv_string_value(k);
            size_t kl = (size_t)jv_string_length_bytes(jv_copy(k));
            jv d = ptr_append(jv_copy(dst), ks, kl);
            jv s = jv_is_valid(src) ? ptr_append(jv_copy(src), ks, kl) : jv_invalid();
            set_alias_locs(c, item, d, s, 0, line, col);
            jv_free(item);
            jv_free(k);
            jv_free(d);
            jv_free(s);
        }
    }
}

/* ---- scalar resolution (YAML 1.2 core schema) --------------------------------- */

static int is_digits(const char *s, size_t len, int (*ok)(int))
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!ok((unsigned char)s[i]))
            return 0;
    return 1;
}

static int dec_digit(int ch) { return ch >= '0' && ch <= '9'; }
static int oct_digit(int ch) { return ch >= '0' && ch <= '7'; }
static int hex_digit(int ch)
{
    return dec_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static int match_any(const char *s, size_t len, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == len && memcmp(*words, s, len) == 0)
            return 1;
    return 0;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_core_float(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t int_digits = 0, frac_digits = 0;
    while (i < len && dec_digit((unsigned char)s[i]))
        i++, int_digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && dec_digit((unsigned char)s[i]))
            i++, frac_digits++;
        if (int_digits == 0 && frac_digits == 0)
            return 0;
    } else if (int_digits == 0) {
        return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp_digits = 0;
        while (i < len && dec_digit((unsigned char)s[i]))
            i++, exp_digits++;
        if (exp_digits == 0)
            return 0;
    }
    return i == len;
}

/* strtod over a sized text (which holds only number characters). */
static double to_double(const char *s, size_t len)
{
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf)
        return NAN;
    memcpy(buf, s, len);
    buf[len] = '\0';
    double d = strtod(buf, NULL);
    if (buf != small)
        free(buf);
    return d;
}

/* Value of 0o.../0x... digits (after the prefix), in base 8 or 16. */
static double radix_value(const char *s, size_t len, int base)
{
    double v = 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)s[i];
        int d = dec_digit(ch) ? ch - '0' : (ch | 0x20) - 'a' + 10;
        v = v * base + d;
    }
    return v;
}

/* Integer forms of the core schema, or jv_invalid(). */
static jv core_int(const char *s, size_t len)
{
    if (len > 2 && s[0] == '0' && s[1] == 'o' && is_digits(s + 2, len - 2, oct_digit))
        return jv_number(radix_value(s + 2, len - 2, 8));
    if (len > 2 && s[0] == '0' && s[1] == 'x' && is_digits(s + 2, len - 2, hex_digit))
        return jv_number(radix_value(s + 2, len - 2, 16));
    size_t i = (len > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (is_digits(s + i, len - i, dec_digit))
        return jv_number(to_double(s, len));
    return jv_invalid();
}

/* Resolves an untagged plain scalar by the YAML 1.2 core schema. */
static jv core_resolve(const char *s, size_t len)
{
    if (match_any(s, len, null_words))
        return jv_null();
    if (match_any(s, len, true_words))
        return jv_true();
    if (match_any(s, len, false_words))
        return jv_false();
    jv n = core_int(s, len);
    if (jv_is_valid(n))
        return n;
    jv_free(n);
    if (is_core_float(s, len))
        return jv_number(to_double(s, len));
    /* .inf/.nan are floats in the core schema; kept as strings, see the top. */
    return jv_string_sized(s, (int)len);
}

#define CORE_TAG "tag:yaml.org,2002:"

/* The short name of a core tag ("str" for tag:yaml.org,2002:str), else NULL. */
static const char *core_tag(const char *tag)
{
    if (tag && strncmp(tag, CORE_TAG, strlen(CORE_TAG)) == 0)
        return tag + strlen(CORE_TAG);
    return NULL;
}

/* Resolves a scalar event to a value; on a tag mismatch reports and returns
 * jv_invalid(). `tag` is the resolved tag text or NULL. */
static jv scalar_value(struct ctx *c, const char *s, size_t len, enum fy_scalar_style style,
                       const char *tag, int line, int col)
{
    const char *t = core_tag(tag);
    if (tag && strcmp(tag, "!") == 0)
        return jv_string_sized(s, (int)len);
    if (!t)
        return style == FYSS_PLAIN ? core_resolve(s, len) : jv_string_sized(s, (int)len);
    if (!strcmp(t, "str") || !strcmp(t, "binary") || !strcmp(t, "timestamp"))
        return jv_string_sized(s, (int)len);
    if (!strcmp(t, "null")) {
        if (match_any(s, len, null_words))
            return jv_null();
    } else if (!strcmp(t, "bool")) {
        if (match_any(s, len, true_words))
            return jv_true();
        if (match_any(s, len, false_words))
            return jv_false();
    } else if (!strcmp(t, "int")) {
        jv n = core_int(s, len);
        if (jv_is_valid(n))
            return n;
        jv_free(n);
    } else if (!strcmp(t, "float")) {
        jv n = core_int(s, len);
        if (jv_is_valid(n))
            return n;
        jv_free(n);
        if (is_core_float(s, len))
            return jv_number(to_double(s, len));
    } else if (!strcmp(t, "map") || !strcmp(t, "seq")) {
        fail(c, line, col, "tag !!%s cannot be used on a scalar", t);
        return jv_invalid();
    } else {
        return style == FYSS_PLAIN ? core_resolve(s, len) : jv_string_sized(s, (int)len);
    }
    fail(c, line, col, "'%.*s' is not a valid !!%s value", clip(s, len), s, t);
    return jv_invalid();
}

/*
 * The text of a single-quoted scalar, decoded here from `raw`, the source
 * between its quotes, instead of by libfyaml: libfyaml 0.7.12 (Debian 12)
 * turns a run of escaped quotes into too many quotes ('x''''y' reads as x'''
 * instead of x''y) and, when that overruns the length it computed, leaks its
 * chunk buffer (upstream issue #233, fixed in 2026 by commits 0af6061 and
 * c0a716e). The rules are YAML 1.2 section 7.3.2 and 6.5: '' is one quote;
 * a line break folds to a space, or to n-1 newlines when n breaks are
 * separated only by blank lines; white space around a break is dropped, but
 * not after the opening or before the closing quote. libfyaml has scanned
 * `raw`, so the quotes in it come in pairs.
 */
static jv single_quoted(const char *raw, size_t n)
{
    jv out = jv_string("");
    size_t i = 0;
    int first = 1, blank_lines = 0;
    for (;;) {
        size_t eol = i;
        while (eol < n && raw[eol] != '\n' && raw[eol] != '\r')
            eol++;
        int last = eol == n;
        size_t a = i, b = eol;
        if (!first)
            while (a < b && (raw[a] == ' ' || raw[a] == '\t'))
                a++;
        if (!last)
            while (b > a && (raw[b - 1] == ' ' || raw[b - 1] == '\t'))
                b--;
        if (!first && !last && a == b) {
            blank_lines++;
        } else {
            if (!first) {
                if (blank_lines == 0)
                    out = jv_string_append_buf(out, " ", 1);
                for (; blank_lines > 0; blank_lines--)
                    out = jv_string_append_buf(out, "\n", 1);
            }
            size_t start = a;
            for (size_t k = a; k + 1 < b; k++) {
                if (raw[k] == '\'' && raw[k + 1] == '\'') {
                    out = jv_string_append_buf(out, raw + start, (int)(k + 1 - start));
                    start = k + 2;
                    k++;
                }
            }
            out = jv_string_append_buf(out, raw + start, (int)(b - start));
        }
        if (last)
            return out;
        i = eol + (raw[eol] == '\r' && eol + 1 < n && raw[eol + 1] == '\n' ? 2 : 1);
        first = 0;
    }
}

/*
 * The text of scalar token `t` through libfyaml's token iterator, as a jv
 * string (jv_invalid() on error). Not fy_token_get_text: in libfyaml 0.7.12
 * that sizes its buffer with one computation and fills it with another, and
 * where they disagree (a blank line ended by CRLF inside a quoted scalar, a
 * run of escaped single quotes) it leaks the iterator's buffer and returns
 * text that is partly uninitialized memory. The iterator always cleans up.
 */
static jv token_text(struct fy_token *t)
{
    struct fy_token_iter *it = fy_token_iter_create(t);
    if (!it)
        return jv_invalid();
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = 0, oom = 0;
    const struct fy_iter_chunk *ic = NULL;
    while (!oom && (ic = fy_token_iter_chunk_next(it, ic, &err))) {
        if (len + ic->len > cap) {
            size_t ncap = cap ? cap : 64;
            while (ncap < len + ic->len)
                ncap *= 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                oom = 1;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        memcpy(buf + len, ic->str, ic->len);
        len += ic->len;
    }
    fy_token_iter_destroy(it);
    jv r = err || oom || len > INT32_MAX ? jv_invalid() : jv_string_sized(buf ? buf : "", (int)len);
    free(buf);
    return r;
}

/* The source text between the quotes of single-quoted scalar token `t`, or
 * NULL when its marks do not frame a quoted span of the input. */
static const char *single_quoted_raw(struct ctx *c, struct fy_token *t, size_t *len)
{
    const struct fy_mark *a = fy_token_start_mark(t), *b = fy_token_end_mark(t);
    if (!a || !b || !c->text || a->input_pos < 1 || a->input_pos > b->input_pos ||
        b->input_pos >= c->len || c->text[a->input_pos - 1] != '\'' ||
        c->text[b->input_pos] != '\'')
        return NULL;
    *len = b->input_pos - a->input_pos;
    return c->text + a->input_pos;
}

/* ---- tree building -------------------------------------------------------- */

/* Turns a completed key node into its string. Consumes `v`; borrows `raw`
 * (the scalar text as written, or NULL for collections and aliases). */
static jv key_text(jv v, const char *raw, size_t raw_len)
{
    if (jv_get_kind(v) == JV_KIND_STRING)
        return v;
    if (raw) {
        jv_free(v);
        return jv_string_sized(raw, (int)raw_len);
    }
    return jv_dump_string(v, 0);
}

/*
 * Places a completed node into its parent (or as the root). Consumes `v`.
 * `height` is the node's nesting height (1 for a scalar); `raw` as key_text.
 */
static void attach(struct ctx *c, jv v, int height, const char *raw, size_t raw_len, int line,
                   int col)
{
    if (c->depth == 0) {
        jv_free(c->root);
        c->root = v;
        c->have_root = 1;
        return;
    }
    struct frame *f = &c->stack[c->depth - 1];
    if (height + 1 > f->height)
        f->height = height + 1;
    if (!f->is_map) {
        f->value = jv_array_append(f->value, v);
        return;
    }
    if (!f->has_key) {
        jv k = key_text(v, raw, raw_len);
        if (jv_object_has(jv_copy(f->value), jv_copy(k))) {
            const char *ks = jv_string_value(k);
            fail(c, line, col, "duplicate key '%.*s'", clip(ks, strlen(ks)), ks);
            jv_free(k);
            return;
        }
        f->key = k;
        f->has_key = 1;
        f->key_line = line;
        f->key_col = col;
        return;
    }
    f->value = jv_object_set(f->value, f->key, v);
    f->key = jv_invalid();
    f->has_key = 0;
}

static void add_anchor(struct ctx *c, const char *name, jv value /* borrowed */,
                       jv ptr /* borrowed */, size_t nodes, size_t bytes, int height)
{
    if (c->n_anchors == c->cap_anchors) {
        size_t cap = c->cap_anchors ? c->cap_anchors * 2 : 8;
        struct anchor *a = realloc(c->anchors, cap * sizeof *a);
        if (!a) {
            fail(c, c->last_line, c->last_col, "out of memory");
            return;
        }
        c->anchors = a;
        c->cap_anchors = cap;
    }
    char *dup = dup_str(name);
    if (!dup) {
        fail(c, c->last_line, c->last_col, "out of memory");
        return;
    }
    struct anchor *a = &c->anchors[c->n_anchors++];
    a->name = dup;
    a->value = jv_copy(value);
    a->ptr = jv_copy(ptr);
    a->nodes = nodes;
    a->bytes = bytes;
    a->height = height;
}

/* The latest definition of an anchor (YAML lets a later one override). */
static struct anchor *find_anchor(struct ctx *c, const char *name)
{
    for (size_t i = c->n_anchors; i > 0; i--)
        if (strcmp(c->anchors[i - 1].name, name) == 0)
            return &c->anchors[i - 1];
    return NULL;
}

static int count_node(struct ctx *c, size_t n, int line, int col)
{
    c->nodes += n;
    if (c->nodes > CV_YAML_MAX_NODES) {
        if (c->alias_bytes || c->aliases)
            fail(c, line, col, "document expands to more than %d nodes (too many aliases?)",
                 CV_YAML_MAX_NODES);
        else
            fail(c, line, col, "document has more than %d nodes", CV_YAML_MAX_NODES);
        return -1;
    }
    return 0;
}

static void mark_of(struct ctx *c, struct fy_event *e, int *line, int *col)
{
    const struct fy_mark *m = fy_event_start_mark(e);
    if (m && m->line >= 0) {
        *line = m->line + 1;
        *col = m->column + 1;
    } else {
        *line = c->last_line;
        *col = c->last_col;
    }
}

/*
 * libfyaml marks a block scalar at the start of its first content line; the
 * node really starts at its indicator ('|' or '>'), on the last non-blank line
 * before the content. Finds that indicator from the content's byte offset
 * `pos` and moves *line and *col (the content's) to it; leaves them unchanged
 * when it cannot be found.
 */
static void block_indicator_mark(struct ctx *c, size_t pos, int *line, int *col)
{
    if (!c->text || pos > c->len)
        return;
    const char *t = c->text;
    size_t end = pos;
    while (end > 0 && (t[end - 1] == ' ' || t[end - 1] == '\t' || t[end - 1] == '\r' ||
                       t[end - 1] == '\n'))
        end--;
    size_t start = end;
    while (start > 0 && t[start - 1] != '\n')
        start--;
    /* the last '|' or '>' on that line that stands alone as a token, before
     * any comment: followed only by [-+0-9] then blank, '#' or end of line */
    size_t found = (size_t)-1;
    for (size_t i = start; i < end; i++) {
        if (t[i] == '#' && (i == start || t[i - 1] == ' ' || t[i - 1] == '\t'))
            break;
        if ((t[i] == '|' || t[i] == '>') && (i == start || t[i - 1] == ' ' || t[i - 1] == '\t')) {
            size_t j = i + 1;
            while (j < end && (t[j] == '-' || t[j] == '+' || (t[j] >= '0' && t[j] <= '9')))
                j++;
            if (j == end || t[j] == ' ' || t[j] == '\t')
                found = i;
        }
    }
    if (found == (size_t)-1)
        return;
    /* counted back from the content's mark, not forward from the start of
     * the text: that would cost the whole text for every block scalar */
    for (size_t i = found; i < pos; i++)
        if (t[i] == '\n')
            (*line)--;
    int n = 1;
    for (size_t i = start; i < found; i++)
        if (((unsigned char)t[i] & 0xC0) != 0x80)
            n++;
    *col = n;
}

static void on_scalar(struct ctx *c, struct fy_event *e)
{
    int line, col;
    mark_of(c, e, &line, &col);
    enum fy_scalar_style style = fy_token_scalar_style(e->scalar.value);
    /* libfyaml marks quoted scalars after the opening quote */
    if ((style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED) && col > 1)
        col--;
    if (style == FYSS_LITERAL || style == FYSS_FOLDED) {
        const struct fy_mark *m = fy_event_start_mark(e);
        if (m && m->line >= 0)
            block_indicator_mark(c, m->input_pos, &line, &col);
    }
    if (count_node(c, 1, line, col))
        return;
    jv decoded = jv_invalid(); /* the scalar's text */
    if (style == FYSS_SINGLE_QUOTED) {
        size_t raw_len;
        const char *raw = single_quoted_raw(c, e->scalar.value, &raw_len);
        if (raw)
            decoded = single_quoted(raw, raw_len);
    }
    if (!jv_is_valid(decoded)) {
        jv_free(decoded);
        decoded = token_text(e->scalar.value);
    }
    if (!jv_is_valid(decoded)) {
        jv_free(decoded);
        fail(c, line, col, "cannot read this scalar (out of memory?)");
        return;
    }
    const char *s = jv_string_value(decoded);
    size_t len = (size_t)jv_string_length_bytes(jv_copy(decoded));
    const char *tag = e->scalar.tag ? fy_token_get_text0(e->scalar.tag) : NULL;
    c->bytes += len;
    jv v = scalar_value(c, s, len, style, tag, line, col);
    if (!jv_is_valid(v)) {
        jv_free(v);
        jv_free(decoded);
        return;
    }
    jv ptr = next_ptr(c);
    set_loc(c, ptr, line, col);
    if (e->scalar.anchor) {
        const char *name = fy_token_get_text0(e->scalar.anchor);
        if (name)
            add_anchor(c, name, v, ptr, 1, len, 1);
    }
    jv_free(ptr);
    attach(c, v, 1, s, len, line, col);
    jv_free(decoded); /* `s` points into it until here */
}

static void on_alias(struct ctx *c, struct fy_event *e)
{
    int line, col;
    mark_of(c, e, &line, &col);
    if (col > 1)
        col--; /* libfyaml marks the name, after the '*' */
    const char *name = fy_token_get_text0(e->alias.anchor);
    struct anchor *a = name ? find_anchor(c, name) : NULL;
    if (!a) {
        fail(c, line, col,
             "alias '*%.*s' does not refer to an anchor defined before it (or refers to a "
             "node that contains it)",
             name ? clip(name, strlen(name)) : 0, name ? name : "");
        return;
    }
    c->aliases++;
    if (count_node(c, a->nodes, line, col))
        return;
    c->bytes += a->bytes;
    c->alias_bytes += a->bytes;
    if (c->alias_bytes > CV_YAML_MAX_ALIAS_BYTES) {
        fail(c, line, col,
             "document expands to more than %zu MiB of text through aliases (too many aliases?)",
             CV_YAML_MAX_ALIAS_BYTES >> 20);
        return;
    }
    if (c->depth + a->height > CV_YAML_MAX_DEPTH) {
        fail(c, line, col, "document is nested more than %d levels deep", CV_YAML_MAX_DEPTH);
        return;
    }
    jv ptr = next_ptr(c);
    if (c->want_locs && jv_is_valid(ptr))
        set_alias_locs(c, a->value, ptr, a->ptr, 1, line, col);
    jv_free(ptr);
    attach(c, jv_copy(a->value), a->height, NULL, 0, line, col);
}

static void on_collection_start(struct ctx *c, struct fy_event *e, int is_map)
{
    int line, col;
    mark_of(c, e, &line, &col);
    if (count_node(c, 1, line, col))
        return;
    if (c->depth >= CV_YAML_MAX_DEPTH) {
        fail(c, line, col, "document is nested more than %d levels deep", CV_YAML_MAX_DEPTH);
        return;
    }
    struct fy_token *tag_tok = is_map ? e->mapping_start.tag : e->sequence_start.tag;
    struct fy_token *anchor_tok = is_map ? e->mapping_start.anchor : e->sequence_start.anchor;
    const char *t = core_tag(tag_tok ? fy_token_get_text0(tag_tok) : NULL);
    if (t && strcmp(t, is_map ? "map" : "seq") != 0 &&
        (!strcmp(t, "map") || !strcmp(t, "seq") || !strcmp(t, "str") || !strcmp(t, "int") ||
         !strcmp(t, "float") || !strcmp(t, "bool") || !strcmp(t, "null"))) {
        fail(c, line, col, "tag !!%s cannot be used on a %s", t, is_map ? "mapping" : "sequence");
        return;
    }
    char *anchor = NULL;
    if (anchor_tok) {
        const char *name = fy_token_get_text0(anchor_tok);
        if (name && !(anchor = dup_str(name))) {
            fail(c, line, col, "out of memory");
            return;
        }
    }
    jv ptr = next_ptr(c);
    set_loc(c, ptr, line, col);
    struct frame *f = &c->stack[c->depth++];
    f->value = is_map ? jv_object() : jv_array();
    f->is_map = is_map;
    f->has_key = 0;
    f->key = jv_invalid();
    f->ptr = ptr;
    f->height = 1;
    f->nodes_at_start = c->nodes - 1;
    f->bytes_at_start = c->bytes;
    f->anchor = anchor;
    f->line = line;
    f->col = col;
}

static void frame_cleanup(struct frame *f)
{
    jv_free(f->value);
    jv_free(f->key);
    jv_free(f->ptr);
    free(f->anchor);
}

static void on_collection_end(struct ctx *c)
{
    if (c->depth == 0)
        return;
    struct frame *f = &c->stack[--c->depth];
    jv v = f->value;
    f->value = jv_invalid();
    if (f->anchor)
        add_anchor(c, f->anchor, v, f->ptr, c->nodes - f->nodes_at_start,
                   c->bytes - f->bytes_at_start, f->height);
    int height = f->height, line = f->line, col = f->col;
    frame_cleanup(f);
    attach(c, v, height, NULL, 0, line, col);
}

/* ---- driver --------------------------------------------------------------------- */

/* libfyaml's text output goes nowhere: errors are collected and reported as
 * diagnostics, never printed by a library. */
static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

static void process(struct ctx *c, struct fy_event *e)
{
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++c->docs > 1) {
            int line, col;
            mark_of(c, e, &line, &col);
            fail(c, line, col,
                 "expected a single document, but a second one starts here ('---')");
        }
        break;
    case FYET_SCALAR:
        on_scalar(c, e);
        break;
    case FYET_ALIAS:
        on_alias(c, e);
        break;
    case FYET_SEQUENCE_START:
        on_collection_start(c, e, 0);
        break;
    case FYET_MAPPING_START:
        on_collection_start(c, e, 1);
        break;
    case FYET_SEQUENCE_END:
    case FYET_MAPPING_END:
        on_collection_end(c);
        break;
    default:
        break;
    }
    const struct fy_mark *m = fy_event_end_mark(e);
    if (m && m->line >= 0) {
        c->last_line = m->line + 1;
        c->last_col = m->column + 1;
    }
}

/* Takes the first collected libfyaml error as the failure. */
static void fail_from_diag(struct ctx *c, struct fy_diag *diag)
{
    void *it = NULL;
    struct fy_diag_error *de;
    while (diag && (de = fy_diag_errors_iterate(diag, &it))) {
        if (de->type < FYET_ERROR || !de->msg)
            continue;
        /* libfyaml's wording is terse where indentation is the usual cause */
        const char *hint = "";
        if (strstr(de->msg, "multiline plain key") || strstr(de->msg, "indentation"))
            hint = " (check the indentation of the lines that follow)";
        fail(c, de->line > 0 ? de->line : c->last_line, de->column > 0 ? de->column : c->last_col,
             "%s%s", de->msg, hint);
        return;
    }
    fail(c, c->last_line, c->last_col, "invalid YAML");
}

static void run_parser(struct ctx *c, const char *text, size_t len)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        fail(c, 0, 0, "out of memory");
        return;
    }
    fy_diag_set_collect_errors(diag, true);

    struct fy_parse_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE |
                FYPCF_DISABLE_MMAP_OPT;
    cfg.diag = diag;
    struct fy_parser *p = fy_parser_create(&cfg);
    if (!p || fy_parser_set_string(p, text, len) != 0) {
        fail(c, 0, 0, "out of memory");
        fy_parser_destroy(p);
        fy_diag_destroy(diag);
        return;
    }
    struct fy_event *e;
    while (!c->failed && (e = fy_parser_parse(p))) {
        process(c, e);
        fy_parser_event_free(p, e);
    }
    if (!c->failed && fy_parser_get_stream_error(p))
        fail_from_diag(c, diag);
    fy_parser_destroy(p);
    fy_diag_destroy(diag);
}

int cv__yaml_parse(const char *text, size_t len, const char *name, jv *out, jv *locs,
                   jv *diags)
{
    struct ctx *c = calloc(1, sizeof *c);
    if (!c)
        return CV_ENOMEM;
    c->name = name ? name : "<input>";
    c->text = text;
    c->len = text ? len : 0;
    c->want_locs = locs != NULL;
    c->locs = locs ? jv_object() : jv_invalid();
    c->root = jv_invalid();
    c->last_line = 1;
    c->last_col = 1;
    if (!text)
        len = 0;
    if (len > (size_t)INT32_MAX / 2) {
        fail(c, 1, 1, "document is too large");
        len = 0;
    }

    const char *what = NULL;
    size_t bad = len ? first_bad_byte((const unsigned char *)text, len, &what) : len;
    if (bad < len) {
        int line, col;
        offset_to_line_col(text, bad, &line, &col);
        fail(c, line, col, "%s", what);
    } else if (!c->failed) {
        run_parser(c, text ? text : "", len);
    }
    if (!c->failed && !c->have_root)
        fail(c, c->last_line, c->last_col, "empty document");

    for (int i = 0; i < c->depth; i++)
        frame_cleanup(&c->stack[i]);
    for (size_t i = 0; i < c->n_anchors; i++) {
        free(c->anchors[i].name);
        jv_free(c->anchors[i].value);
        jv_free(c->anchors[i].ptr);
    }
    free(c->anchors);

    int rc = CV_OK;
    if (c->failed) {
        rc = CV_EPARSE;
        jv d = jv_object();
        d = jv_object_set(d, jv_string("file"), jv_string(c->name));
        d = jv_object_set(d, jv_string("line"), jv_number(c->err_line));
        d = jv_object_set(d, jv_string("column"), jv_number(c->err_col));
        d = jv_object_set(d, jv_string("path"), jv_string(""));
        d = jv_object_set(d, jv_string("message"), jv_string(c->msg));
        if (diags) {
            if (jv_get_kind(*diags) != JV_KIND_ARRAY) {
                jv_free(*diags);
                *diags = jv_array();
            }
            *diags = jv_array_append(*diags, d);
        } else {
            jv_free(d);
        }
        jv_free(c->root);
        jv_free(c->locs);
        *out = jv_invalid();
        if (locs)
            *locs = jv_invalid();
    } else {
        *out = c->root;
        if (locs)
            *locs = c->locs;
    }
    free(c);
    return rc;
}

char *cv__json_dump(jv v)
{
    jv s = jv_dump_string(v, 0);
    char *r = dup_str(jv_string_value(s));
    jv_free(s);
    return r;
}
