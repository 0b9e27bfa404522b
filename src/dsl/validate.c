/*
 * validate.c — structural validation of a Serverless Workflow 1.0 document.
 *
 * Owns the question "does this document have the shape workflow.schema.yaml
 * (DSL 1.0.3) requires?", answered on the jv from cv__yaml_parse before the
 * task tree is built. The schema is mirrored by hand, one checker per schema
 * definition, so that each problem yields one precise diagnostic instead of a
 * cascade of oneOf failures. Beyond the schema it checks what the schema cannot
 * say: `then` targets exist in their own list, use.* references exist,
 * variable names are jq identifiers, inline durations are not negative.
 * Expressions are never compiled here (src/expr does that); a `${...}` string
 * is accepted wherever the schema accepts a runtime expression.
 *
 * Every checker takes its jv BORROWED and must survive any input kind: the
 * jq accessors assert on the wrong kind, so each one is guarded.
 *
 * Deliberate deviations from the schema, all stricter where a document could
 * not run anyway: negative inline durations are refused; the top-level
 * `evaluate` (absent from the schema) is checked as {language: jq, mode:
 * strict|loose}; a function in use.functions may only use `then` keywords.
 * Runtime expressions may span lines (the schema's `.` would not match "\n").
 */
#include "dsl/model.h"
#include "dsl/validate.h"
#include "ml/catalog.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Task lists nested deeper than this are refused rather than recursed into. */
#define MAX_DEPTH 64

/* ------------------------------------------------------------------------ */
/* Context, pointer stack and reporting                                      */
/* ------------------------------------------------------------------------ */

struct vctx {
    jv doc;           /* borrowed: the whole document */
    jv locs;          /* borrowed: pointer -> [line, column] */
    const char *file; /* borrowed */
    jv diags;         /* owned: array of diagnostics */
    int count;        /* problems reported */
    jv use;           /* owned: doc.use when it is an object, else null */
    jv scopes;        /* owned: stack of name arrays (null = not in a list) */
    int depth;        /* task-list nesting */
    const char *key;  /* borrowed: the key check_map_of is visiting */
    char *ptr;        /* JSON pointer of the value being checked */
    size_t len, cap;
};

typedef void (*check_fn)(struct vctx *c, jv v);

struct prop {
    const char *name;
    check_fn check;
};

static void ptr_append(struct vctx *c, const char *s, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 128;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *p = realloc(c->ptr, cap);
        if (!p)
            return; /* the pointer is then only less precise */
        c->ptr = p;
        c->cap = cap;
    }
    memcpy(c->ptr + c->len, s, n);
    c->len += n;
    c->ptr[c->len] = '\0';
}

/* Pushes "/key" (RFC 6901-escaped); returns the length to restore. */
static size_t push_key(struct vctx *c, const char *key)
{
    size_t old = c->len;
    ptr_append(c, "/", 1);
    for (const char *k = key; *k; k++) {
        if (*k == '~')
            ptr_append(c, "~0", 2);
        else if (*k == '/')
            ptr_append(c, "~1", 2);
        else
            ptr_append(c, k, 1);
    }
    return old;
}

static size_t push_index(struct vctx *c, int i)
{
    char buf[24];
    size_t old = c->len;
    int n = snprintf(buf, sizeof buf, "/%d", i);
    ptr_append(c, buf, (size_t)n);
    return old;
}

static void pop(struct vctx *c, size_t old)
{
    if (old <= c->len && c->ptr) {
        c->len = old;
        c->ptr[old] = '\0';
    }
}

static void report(struct vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct vctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    const char *ptr = c->ptr ? c->ptr : "";
    int line = 0, column = 0;
    cv__locate(c->locs, ptr, &line, &column);
    char *path = cv__pointer_to_path(c->doc, ptr);

    jv d = jv_object();
    d = jv_object_set(d, jv_string("file"), jv_string(c->file ? c->file : "<input>"));
    d = jv_object_set(d, jv_string("line"), jv_number(line));
    d = jv_object_set(d, jv_string("column"), jv_number(column));
    d = jv_object_set(d, jv_string("path"), jv_string(path ? path : ""));
    d = jv_object_set(d, jv_string("message"), jv_string(msg));
    free(path);
    c->diags = jv_array_append(c->diags, d);
    c->count++;
}

/* ------------------------------------------------------------------------ */
/* Small predicates                                                          */
/* ------------------------------------------------------------------------ */

static const char *kind_desc(jv v)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_NULL:
        return "null";
    case JV_KIND_TRUE:
    case JV_KIND_FALSE:
        return "a boolean";
    case JV_KIND_NUMBER:
        return "a number";
    case JV_KIND_STRING:
        return "a string";
    case JV_KIND_ARRAY:
        return "an array";
    case JV_KIND_OBJECT:
        return "an object";
    default:
        return "nothing";
    }
}

static int is_kind(jv v, jv_kind k) { return jv_get_kind(v) == k; }
static int is_object(jv v) { return is_kind(v, JV_KIND_OBJECT); }
static int is_string(jv v) { return is_kind(v, JV_KIND_STRING); }
static int is_array(jv v) { return is_kind(v, JV_KIND_ARRAY); }

static const char *str(jv v) { return is_string(v) ? jv_string_value(v) : ""; }

/* obj[key] as a new reference, or jv_invalid() when absent or obj is no object. */
static jv field(jv obj, const char *key)
{
    if (!is_object(obj))
        return jv_invalid();
    return jv_object_get(jv_copy(obj), jv_string(key));
}

static int has(jv obj, const char *key)
{
    if (!is_object(obj))
        return 0;
    return jv_object_has(jv_copy(obj), jv_string(key));
}

static int obj_len(jv obj) { return is_object(obj) ? jv_object_length(jv_copy(obj)) : 0; }

static int is_integer(jv v)
{
    if (!is_kind(v, JV_KIND_NUMBER))
        return 0;
    double d = jv_number_value(v);
    return isfinite(d) && d == floor(d);
}

/* ^\s*\$\{.+\}\s*$, with "." also matching newlines. */
static int is_runtime_expr(const char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    while (n && isspace((unsigned char)*s))
        s++, n--;
    return n >= 4 && s[0] == '$' && s[1] == '{' && s[n - 1] == '}';
}

static int is_jq_ident(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

/* ^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$ */
static int is_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-') || (signed char)s[i] < 0)
            return 0;
    return 1;
}

static int is_digits(const char *s, size_t n)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Semver 2.0.0, as the schema's pattern for document.dsl and document.version. */
static int is_semver(const char *s)
{
    for (int part = 0; part < 3; part++) {
        const char *b = s;
        while (isdigit((unsigned char)*s))
            s++;
        if (s == b || (s - b > 1 && *b == '0'))
            return 0;
        if (part < 2 && *s++ != '.')
            return 0;
    }
    if (*s == '-') {
        do {
            const char *b = ++s;
            int alpha = 0;
            while (isalnum((unsigned char)*s) || *s == '-') {
                if (!isdigit((unsigned char)*s))
                    alpha = 1;
                s++;
            }
            if (s == b || (!alpha && s - b > 1 && *b == '0'))
                return 0;
        } while (*s == '.');
    }
    if (*s == '+') {
        do {
            const char *b = ++s;
            while (isalnum((unsigned char)*s) || *s == '-')
                s++;
            if (s == b)
                return 0;
        } while (*s == '.');
    }
    return *s == '\0';
}

/* The schema's ISO 8601 duration pattern: P[nY][nM][nW][nD][T[nH][nM][nS]], n = d+(.d+)? */
static int is_iso8601_duration(const char *s)
{
    if (*s++ != 'P' || !*s)
        return 0;
    const char *units = "YMWD";
    int pos = 0;
    for (int timepart = 0; timepart < 2; timepart++) {
        while (*s && *s != 'T') {
            if (!isdigit((unsigned char)*s))
                return 0;
            while (isdigit((unsigned char)*s))
                s++;
            if (*s == '.') {
                s++;
                if (!isdigit((unsigned char)*s))
                    return 0;
                while (isdigit((unsigned char)*s))
                    s++;
            }
            const char *u = *s ? strchr(units + pos, *s) : NULL;
            if (!u)
                return 0;
            pos = (int)(u - units) + 1;
            s++;
        }
        if (!*s)
            return 1;
        if (timepart) /* a second 'T' */
            return 0;
        s++; /* 'T' must be followed by a digit */
        if (!isdigit((unsigned char)*s))
            return 0;
        units = "HMS";
        pos = 0;
    }
    return 0;
}

/* RFC 6570 template syntax: balanced, non-empty, non-nested braces. */
static int uri_template_braces_ok(const char *s)
{
    int open = 0, empty = 0;
    for (; *s; s++) {
        if (*s == '{') {
            if (open)
                return 0;
            open = 1;
            empty = 1;
        } else if (*s == '}') {
            if (!open || empty)
                return 0;
            open = 0;
        } else if (open) {
            if (isspace((unsigned char)*s))
                return 0;
            empty = 0;
        }
    }
    return !open;
}

/* The schema's uriTemplate: ^[A-Za-z][A-Za-z0-9+\-.]*://.* plus template syntax. */
static int is_uri_template(const char *s)
{
    if (!isalpha((unsigned char)*s))
        return 0;
    const char *p = s + 1;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0)
        return 0;
    return uri_template_braces_ok(p + 3);
}

static int is_json_pointer(const char *s)
{
    if (*s && *s != '/')
        return 0;
    for (; *s; s++)
        if (*s == '~' && s[1] != '0' && s[1] != '1')
            return 0;
    return 1;
}

static int in_list(const char *s, const char *const *vals)
{
    for (; *vals; vals++)
        if (strcmp(s, *vals) == 0)
            return 1;
    return 0;
}

static void join_list(char *buf, size_t size, const char *const *vals)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; vals[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", vals[i]);
}

/* Appends the strings of `arr` (borrowed) as "a, b, c", at most ~10 of them. */
static void join_names(char *buf, size_t size, jv arr)
{
    size_t used = 0;
    buf[0] = '\0';
    if (!is_array(arr))
        return;
    int n = jv_array_length(jv_copy(arr));
    for (int i = 0; i < n && used < size; i++) {
        if (i == 10) {
            snprintf(buf + used, size - used, ", ... (%d more)", n - i);
            break;
        }
        jv s = jv_array_get(jv_copy(arr), i);
        used += (size_t)snprintf(buf + used, size - used, "%s%.60s", i ? ", " : "", str(s));
        jv_free(s);
    }
}

static int names_contain(jv arr, const char *name)
{
    if (!is_array(arr))
        return 0;
    int n = jv_array_length(jv_copy(arr)), found = 0;
    for (int i = 0; i < n && !found; i++) {
        jv s = jv_array_get(jv_copy(arr), i);
        found = is_string(s) && strcmp(jv_string_value(s), name) == 0;
        jv_free(s);
    }
    return found;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ------------------------------------------------------------------------ */
/* Generic checkers                                                          */
/* ------------------------------------------------------------------------ */

static int want(struct vctx *c, jv v, jv_kind k, const char *expected)
{
    if (jv_get_kind(v) == k || (k == JV_KIND_TRUE && jv_get_kind(v) == JV_KIND_FALSE))
        return 1;
    report(c, "expected %s, got %s", expected, kind_desc(v));
    return 0;
}

static void check_any(struct vctx *c, jv v) { (void)c, (void)v; }
static void check_string(struct vctx *c, jv v) { want(c, v, JV_KIND_STRING, "a string"); }
static void check_bool(struct vctx *c, jv v) { want(c, v, JV_KIND_TRUE, "a boolean"); }
static void check_object(struct vctx *c, jv v) { want(c, v, JV_KIND_OBJECT, "an object"); }

static void check_integer(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_NUMBER, "an integer") && !is_integer(v))
        report(c, "expected an integer, got %g", jv_number_value(v));
}

static void check_string_array(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_ARRAY, "an array of strings"))
        return;
    int n = jv_array_length(jv_copy(v));
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(v), i);
        size_t old = push_index(c, i);
        check_string(c, item);
        pop(c, old);
        jv_free(item);
    }
}

static void check_string_map(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_OBJECT, "an object of strings"))
        return;
    jv keys = jv_keys_unsorted(jv_copy(v));
    int n = jv_array_length(jv_copy(keys));
    for (int i = 0; i < n; i++) {
        jv k = jv_array_get(jv_copy(keys), i);
        jv item = jv_object_get(jv_copy(v), jv_copy(k));
        size_t old = push_key(c, jv_string_value(k));
        check_string(c, item);
        pop(c, old);
        jv_free(item);
        jv_free(k);
    }
    jv_free(keys);
}

/* A string map or a runtime expression (http headers and query). */
static void check_string_map_or_expr(struct vctx *c, jv v)
{
    if (is_string(v)) {
        if (!is_runtime_expr(jv_string_value(v)))
            report(c, "expected an object of strings or a ${...} expression, got the string '%.80s'",
                   jv_string_value(v));
        return;
    }
    if (!is_object(v)) {
        report(c, "expected an object of strings or a ${...} expression, got %s", kind_desc(v));
        return;
    }
    check_string_map(c, v);
}

static void check_string_or_object(struct vctx *c, jv v)
{
    if (!is_string(v) && !is_object(v))
        report(c, "expected a string (expression) or an object, got %s", kind_desc(v));
}

static void check_enum(struct vctx *c, jv v, const char *const *vals)
{
    char all[256];
    if (!is_string(v)) {
        join_list(all, sizeof all, vals);
        report(c, "expected one of %s, got %s", all, kind_desc(v));
    } else if (!in_list(jv_string_value(v), vals)) {
        join_list(all, sizeof all, vals);
        report(c, "bad value '%.80s': expected one of %s", jv_string_value(v), all);
    }
}

#define ENUM_CHECK(fn, ...)                                          \
    static void fn(struct vctx *c, jv v)                             \
    {                                                                \
        static const char *const vals[] = {__VA_ARGS__, NULL};       \
        check_enum(c, v, vals);                                      \
    }

ENUM_CHECK(check_http_output, "raw", "content", "response")
ENUM_CHECK(check_listen_read, "data", "envelope", "raw")
ENUM_CHECK(check_run_return, "stdout", "stderr", "code", "all", "none")
ENUM_CHECK(check_pull_policy, "ifNotPresent", "always", "never")
ENUM_CHECK(check_cleanup, "always", "never", "eventually")
ENUM_CHECK(check_eval_mode, "strict", "loose")
ENUM_CHECK(check_extend, "call", "composite", "emit", "for", "listen", "raise", "run", "set", "switch",
           "try", "wait", "all")
ENUM_CHECK(check_grant, "authorization_code", "client_credentials", "password", "refresh_token",
           "urn:ietf:params:oauth:grant-type:token-exchange")
ENUM_CHECK(check_client_auth, "client_secret_basic", "client_secret_post", "client_secret_jwt",
           "private_key_jwt", "none")
ENUM_CHECK(check_token_encoding, "application/x-www-form-urlencoded", "application/json")
ENUM_CHECK(check_asyncapi_protocol, "amqp", "amqp1", "anypointmq", "googlepubsub", "http", "ibmmq",
           "jms", "kafka", "mercure", "mqtt", "mqtt5", "nats", "pulsar", "redis", "sns", "solace",
           "sqs", "stomp", "ws")
ENUM_CHECK(check_a2a_method, "message/send", "message/stream", "tasks/get", "tasks/list",
           "tasks/cancel", "tasks/resubscribe", "tasks/pushNotificationConfig/set",
           "tasks/pushNotificationConfig/get", "tasks/pushNotificationConfig/list",
           "tasks/pushNotificationConfig/delete", "agent/getAuthenticatedExtendedCard")
ENUM_CHECK(check_mcp_method, "tools/list", "tools/call", "prompts/list", "prompts/get",
           "resources/list", "resources/read", "resources/templates/list")

static void check_runtime_expr(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a ${...} expression") && !is_runtime_expr(jv_string_value(v)))
        report(c, "'%.80s' is not a runtime expression: expected ${...}", jv_string_value(v));
}

static void check_jq_ident(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a variable name") && !is_jq_ident(jv_string_value(v)))
        report(c,
               "'%.80s' is not a valid variable name: use letters, digits and _, not starting "
               "with a digit, without a leading $",
               jv_string_value(v));
}

/* uriTemplate or runtimeExpression (event source, dataschema, endpoint uri). */
static void check_uri_or_expr(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "a URI or a ${...} expression"))
        return;
    const char *s = jv_string_value(v);
    if (!is_runtime_expr(s) && !is_uri_template(s))
        report(c, "bad URI '%.80s': expected an absolute URI or URI template (scheme://...) or a ${...} expression", s);
}

static void check_uri_template(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a URI") && !is_uri_template(jv_string_value(v)))
        report(c, "bad URI '%.80s': expected an absolute URI or URI template (scheme://...)",
               jv_string_value(v));
}

static void check_relative_template(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a URI template") && !uri_template_braces_ok(jv_string_value(v)))
        report(c, "bad URI template '%.80s': unbalanced or empty braces", jv_string_value(v));
}

/*
 * Checks `v` as an object against the property tables p1 and p2 (either may
 * be NULL): dispatches known properties, reports unknown ones (unless
 * allow_extra) and missing required ones. `what` names the object in
 * messages. Returns 1 when v is an object.
 */
static int check_props(struct vctx *c, jv v, const struct prop *p1, const struct prop *p2,
                       const char *const *required, int allow_extra, const char *what)
{
    if (!is_object(v)) {
        report(c, "%s: expected an object, got %s", what, kind_desc(v));
        return 0;
    }
    jv keys = jv_keys_unsorted(jv_copy(v));
    int n = jv_array_length(jv_copy(keys));
    for (int i = 0; i < n; i++) {
        jv k = jv_array_get(jv_copy(keys), i);
        const char *name = jv_string_value(k);
        const struct prop *hit = NULL;
        for (const struct prop *p = p1; p && p->name && !hit; p++)
            if (strcmp(p->name, name) == 0)
                hit = p;
        for (const struct prop *p = p2; p && p->name && !hit; p++)
            if (strcmp(p->name, name) == 0)
                hit = p;
        size_t old = push_key(c, name);
        if (hit) {
            jv item = jv_object_get(jv_copy(v), jv_copy(k));
            hit->check(c, item);
            jv_free(item);
        } else if (!allow_extra) {
            const char *best = NULL;
            size_t bestd = 99, limit = strlen(name) <= 4 ? 1 : 2;
            for (int t = 0; t < 2; t++)
                for (const struct prop *p = t ? p2 : p1; p && p->name; p++) {
                    size_t d = edit_distance(name, p->name);
                    if (d <= limit && d < bestd)
                        best = p->name, bestd = d;
                }
            if (best)
                report(c, "unknown property '%.80s' in %s (did you mean '%s'?)", name, what, best);
            else
                report(c, "unknown property '%.80s' in %s", name, what);
        }
        pop(c, old);
        jv_free(k);
    }
    jv_free(keys);
    for (; required && *required; required++)
        if (!has(v, *required))
            report(c, "missing required property '%s' in %s", *required, what);
    return 1;
}

/* Reports unless exactly one of `keys` is present in v; returns how many are. */
static int exactly_one(struct vctx *c, jv v, const char *const *keys, const char *what)
{
    int n = 0;
    const char *found[8];
    for (int i = 0; keys[i]; i++)
        if (has(v, keys[i]) && n < 8)
            found[n++] = keys[i];
    if (n == 0) {
        char all[128];
        join_list(all, sizeof all, keys);
        report(c, "%s needs one of %s", what, all);
    } else if (n > 1) {
        report(c, "%s has both %s and %s; use only one", what, found[0], found[1]);
    }
    return n;
}

/* Applies fn to every value of an object (use.errors and the like). */
static void check_map_of(struct vctx *c, jv v, check_fn fn, const char *what)
{
    if (!is_object(v)) {
        report(c, "%s: expected an object of named definitions, got %s", what, kind_desc(v));
        return;
    }
    jv keys = jv_keys_unsorted(jv_copy(v));
    int n = jv_array_length(jv_copy(keys));
    for (int i = 0; i < n; i++) {
        jv k = jv_array_get(jv_copy(keys), i);
        jv item = jv_object_get(jv_copy(v), jv_copy(k));
        size_t old = push_key(c, jv_string_value(k));
        c->key = jv_string_value(k);
        fn(c, item);
        c->key = NULL;
        pop(c, old);
        jv_free(item);
        jv_free(k);
    }
    jv_free(keys);
}

/*
 * A reference by name into use.<section>. Reports when the name is not
 * defined there; `what` names the referring field.
 */
static void check_use_ref(struct vctx *c, const char *section, const char *name, const char *what)
{
    jv sect = field(c->use, section);
    if (is_object(sect) && has(sect, name)) {
        jv_free(sect);
        return;
    }
    if (is_object(sect) && obj_len(sect) > 0) {
        char known[512];
        jv keys = jv_keys_unsorted(jv_copy(sect));
        join_names(known, sizeof known, keys);
        jv_free(keys);
        report(c, "%s: '%.80s' is not defined in use.%s (known: %s)", what, name, section, known);
    } else {
        report(c, "%s: '%.80s' is not defined in use.%s (the workflow defines none)", what, name,
               section);
    }
    jv_free(sect);
}

/* ------------------------------------------------------------------------ */
/* Durations, endpoints, resources, authentication                           */
/* ------------------------------------------------------------------------ */

static void check_duration_part(struct vctx *c, jv v)
{
    if (!is_integer(v))
        report(c, "expected a non-negative integer, got %s", kind_desc(v));
    else if (jv_number_value(v) < 0)
        report(c, "negative duration: %g", jv_number_value(v));
}

static const struct prop duration_props[] = {
    {"days", check_duration_part},    {"hours", check_duration_part},
    {"minutes", check_duration_part}, {"seconds", check_duration_part},
    {"milliseconds", check_duration_part}, {NULL, NULL}};

static void check_duration(struct vctx *c, jv v)
{
    if (is_string(v)) {
        const char *s = jv_string_value(v);
        if (!is_runtime_expr(s) && !is_iso8601_duration(s))
            report(c,
                   "bad ISO 8601 duration '%.80s': expected e.g. PT30S, PT0.5S, P1DT2H, or a "
                   "${...} expression",
                   s);
        return;
    }
    if (!is_object(v)) {
        report(c, "expected a duration (an object such as {seconds: 30} or an ISO 8601 string), got %s",
               kind_desc(v));
        return;
    }
    if (obj_len(v) == 0) {
        report(c, "empty duration: give at least one of days, hours, minutes, seconds, milliseconds");
        return;
    }
    check_props(c, v, duration_props, NULL, NULL, 0, "duration");
}

static void check_auth_ref(struct vctx *c, jv v);

static const struct prop endpoint_props[] = {
    {"uri", check_uri_or_expr}, {"authentication", check_auth_ref}, {NULL, NULL}};
static const char *const endpoint_req[] = {"uri", NULL};

static void check_endpoint(struct vctx *c, jv v)
{
    if (is_string(v)) {
        const char *s = jv_string_value(v);
        if (!is_runtime_expr(s) && !is_uri_template(s))
            report(c,
                   "bad endpoint '%.80s': expected an absolute URI or URI template "
                   "(scheme://host/{name}), a ${...} expression, or {uri, authentication}",
                   s);
        return;
    }
    if (!is_object(v)) {
        report(c, "bad endpoint: expected a URI string or an object {uri, authentication}, got %s",
               kind_desc(v));
        return;
    }
    check_props(c, v, endpoint_props, NULL, endpoint_req, 0, "endpoint");
}

static const struct prop resource_props[] = {
    {"name", check_string}, {"endpoint", check_endpoint}, {NULL, NULL}};
static const char *const resource_req[] = {"endpoint", NULL};

static void check_ext_resource(struct vctx *c, jv v)
{
    check_props(c, v, resource_props, NULL, resource_req, 0, "external resource");
}

static void check_secret_use(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a secret name") && jv_string_length_bytes(jv_copy(v)) == 0)
        report(c, "empty secret name");
}

static const struct prop secret_props[] = {{"use", check_secret_use}, {NULL, NULL}};
static const struct prop userpass_props[] = {
    {"username", check_string}, {"password", check_string}, {NULL, NULL}};
static const char *const userpass_req[] = {"username", "password", NULL};
static const struct prop bearer_props[] = {{"token", check_string}, {NULL, NULL}};
static const char *const bearer_req[] = {"token", NULL};

/* A scheme's configuration: inline properties, or {use: secret}. */
static void check_scheme(struct vctx *c, jv v, const char *scheme, const struct prop *inline_props,
                         const struct prop *more, const char *const *req)
{
    char what[64];
    snprintf(what, sizeof what, "%s authentication", scheme);
    if (has(v, "use"))
        check_props(c, v, secret_props, NULL, NULL, 0, what);
    else
        check_props(c, v, inline_props, more, req, 0, what);
}

static void check_basic(struct vctx *c, jv v) { check_scheme(c, v, "basic", userpass_props, NULL, userpass_req); }
static void check_digest(struct vctx *c, jv v) { check_scheme(c, v, "digest", userpass_props, NULL, userpass_req); }
static void check_bearer(struct vctx *c, jv v) { check_scheme(c, v, "bearer", bearer_props, NULL, bearer_req); }

static const struct prop client_props[] = {
    {"id", check_string},         {"secret", check_string},
    {"assertion", check_string},  {"authentication", check_client_auth},
    {NULL, NULL}};

static void check_oauth2_client(struct vctx *c, jv v)
{
    check_props(c, v, client_props, NULL, NULL, 0, "oauth2 client");
}

static const struct prop token_request_props[] = {{"encoding", check_token_encoding}, {NULL, NULL}};

static void check_token_request(struct vctx *c, jv v)
{
    check_props(c, v, token_request_props, NULL, NULL, 1, "oauth2 request");
}

static const struct prop oauth2_token_props[] = {
    {"token", check_string}, {"type", check_string}, {NULL, NULL}};
static const char *const oauth2_token_req[] = {"token", "type", NULL};

static void check_oauth2_token(struct vctx *c, jv v)
{
    check_props(c, v, oauth2_token_props, NULL, oauth2_token_req, 0, "oauth2 token");
}

static const struct prop oauth2_endpoint_props[] = {
    {"token", check_relative_template},
    {"revocation", check_relative_template},
    {"introspection", check_relative_template},
    {NULL, NULL}};

static void check_oauth2_endpoints(struct vctx *c, jv v)
{
    check_props(c, v, oauth2_endpoint_props, NULL, NULL, 1, "oauth2 endpoints");
}

static const struct prop oauth2_props[] = {
    {"authority", check_uri_template},
    {"grant", check_grant},
    {"client", check_oauth2_client},
    {"request", check_token_request},
    {"issuers", check_string_array},
    {"scopes", check_string_array},
    {"audiences", check_string_array},
    {"username", check_string},
    {"password", check_string},
    {"subject", check_oauth2_token},
    {"actor", check_oauth2_token},
    {NULL, NULL}};
static const struct prop oauth2_only_props[] = {{"endpoints", check_oauth2_endpoints}, {NULL, NULL}};

static void check_oauth2(struct vctx *c, jv v) { check_scheme(c, v, "oauth2", oauth2_props, oauth2_only_props, NULL); }
static void check_oidc(struct vctx *c, jv v) { check_scheme(c, v, "oidc", oauth2_props, NULL, NULL); }

static const struct prop auth_props[] = {
    {"basic", check_basic},   {"bearer", check_bearer}, {"digest", check_digest},
    {"oauth2", check_oauth2}, {"oidc", check_oidc},     {NULL, NULL}};
static const char *const auth_schemes[] = {"basic", "bearer", "digest", "oauth2", "oidc", NULL};

/* authenticationPolicy: exactly one scheme. `strict` refuses other keys. */
static void check_auth_policy_x(struct vctx *c, jv v, int strict)
{
    if (!is_object(v)) {
        report(c, "authentication: expected an object, got %s", kind_desc(v));
        return;
    }
    exactly_one(c, v, auth_schemes, "authentication policy");
    check_props(c, v, auth_props, NULL, NULL, !strict, "authentication policy");
}

/* The definitions in use.authentications (the schema allows extra keys there). */
static void check_auth_policy(struct vctx *c, jv v) { check_auth_policy_x(c, v, 0); }

static void check_auth_use(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "the name of an authentication policy"))
        return;
    if (jv_string_length_bytes(jv_copy(v)) == 0)
        report(c, "empty authentication policy name");
    else
        check_use_ref(c, "authentications", jv_string_value(v), "authentication");
}

static const struct prop auth_use_props[] = {{"use", check_auth_use}, {NULL, NULL}};

/* referenceableAuthenticationPolicy: {use: name} or an inline policy. */
static void check_auth_ref(struct vctx *c, jv v)
{
    if (has(v, "use"))
        check_props(c, v, auth_use_props, NULL, NULL, 0, "authentication reference");
    else
        check_auth_policy_x(c, v, 1);
}

/* ------------------------------------------------------------------------ */
/* Data flow, errors, retries, timeouts                                       */
/* ------------------------------------------------------------------------ */

static const struct prop schema_props[] = {
    {"format", check_string}, {"document", check_any}, {"resource", check_ext_resource}, {NULL, NULL}};
static const char *const schema_choice[] = {"document", "resource", NULL};

static void check_schema(struct vctx *c, jv v)
{
    if (check_props(c, v, schema_props, NULL, NULL, 0, "schema"))
        exactly_one(c, v, schema_choice, "schema");
}

static const struct prop input_props[] = {
    {"schema", check_schema}, {"from", check_string_or_object}, {NULL, NULL}};
static const struct prop output_props[] = {
    {"schema", check_schema}, {"as", check_string_or_object}, {NULL, NULL}};

static void check_input(struct vctx *c, jv v) { check_props(c, v, input_props, NULL, NULL, 0, "input"); }
static void check_output(struct vctx *c, jv v) { check_props(c, v, output_props, NULL, NULL, 0, "output"); }
static void check_export(struct vctx *c, jv v) { check_props(c, v, output_props, NULL, NULL, 0, "export"); }

static void check_error_type(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "a URI"))
        return;
    const char *s = jv_string_value(v);
    if (!is_runtime_expr(s) && !is_uri_template(s))
        report(c,
               "bad error type '%.80s': expected an absolute URI (such as "
               "https://serverlessworkflow.io/spec/1.0.0/errors/runtime) or a ${...} expression",
               s);
}

static void check_error_instance(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "a JSON pointer"))
        return;
    const char *s = jv_string_value(v);
    if (!is_runtime_expr(s) && !is_json_pointer(s))
        report(c, "bad error instance '%.80s': expected a JSON pointer (/do/0/task) or a ${...} expression", s);
}

static const struct prop error_props[] = {
    {"type", check_error_type},  {"status", check_integer}, {"instance", check_error_instance},
    {"title", check_string},     {"detail", check_string},  {NULL, NULL}};
static const char *const error_req[] = {"type", "status", NULL};

static void check_error_def(struct vctx *c, jv v)
{
    check_props(c, v, error_props, NULL, error_req, 0, "error");
}

static void check_backoff(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"constant", check_object}, {"exponential", check_object}, {"linear", check_object}, {NULL, NULL}};
    static const char *const kinds[] = {"constant", "exponential", "linear", NULL};
    if (check_props(c, v, props, NULL, NULL, 0, "backoff"))
        exactly_one(c, v, kinds, "backoff");
}

static void check_attempt(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"count", check_integer}, {"duration", check_duration}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "retry attempt limit");
}

static void check_limit(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"attempt", check_attempt}, {"duration", check_duration}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "retry limit");
}

static void check_jitter(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"from", check_duration}, {"to", check_duration}, {NULL, NULL}};
    static const char *const req[] = {"from", "to", NULL};
    check_props(c, v, props, NULL, req, 0, "jitter");
}

static const struct prop retry_props[] = {
    {"when", check_string},       {"exceptWhen", check_string}, {"delay", check_duration},
    {"backoff", check_backoff},   {"limit", check_limit},       {"jitter", check_jitter},
    {NULL, NULL}};

static void check_retry_policy(struct vctx *c, jv v)
{
    check_props(c, v, retry_props, NULL, NULL, 0, "retry policy");
}

static const struct prop timeout_props[] = {{"after", check_duration}, {NULL, NULL}};
static const char *const timeout_req[] = {"after", NULL};

static void check_timeout_def(struct vctx *c, jv v)
{
    check_props(c, v, timeout_props, NULL, timeout_req, 0, "timeout");
}

/* A timeout object, or the name of a use.timeouts entry. */
static void check_timeout(struct vctx *c, jv v)
{
    if (is_string(v))
        check_use_ref(c, "timeouts", jv_string_value(v), "timeout");
    else if (is_object(v))
        check_timeout_def(c, v);
    else
        report(c, "timeout: expected an object {after: duration} or the name of a use.timeouts entry, got %s",
               kind_desc(v));
}

/* ------------------------------------------------------------------------ */
/* Events                                                                     */
/* ------------------------------------------------------------------------ */

static const struct prop event_props[] = {
    {"id", check_string},
    {"source", check_uri_or_expr},
    {"type", check_string},
    {"time", check_string},
    {"subject", check_string},
    {"datacontenttype", check_string},
    {"dataschema", check_uri_or_expr},
    {"data", check_any},
    {NULL, NULL}};

static void check_filter_with(struct vctx *c, jv v)
{
    if (check_props(c, v, event_props, NULL, NULL, 1, "event filter with") && obj_len(v) == 0)
        report(c, "empty event filter: give at least one attribute to match");
}

static void check_correlation(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"from", check_string}, {"expect", check_string}, {NULL, NULL}};
    static const char *const req[] = {"from", NULL};
    check_props(c, v, props, NULL, req, 1, "correlation");
}

static void check_correlate(struct vctx *c, jv v) { check_map_of(c, v, check_correlation, "correlate"); }

static const struct prop filter_props[] = {
    {"with", check_filter_with}, {"correlate", check_correlate}, {NULL, NULL}};
static const char *const filter_req[] = {"with", NULL};

static void check_event_filter(struct vctx *c, jv v)
{
    check_props(c, v, filter_props, NULL, filter_req, 0, "event filter");
}

static void check_filter_list(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_ARRAY, "an array of event filters"))
        return;
    int n = jv_array_length(jv_copy(v));
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(v), i);
        size_t old = push_index(c, i);
        check_event_filter(c, item);
        pop(c, old);
        jv_free(item);
    }
}

static void check_strategy_x(struct vctx *c, jv v, int nested);

static void check_until(struct vctx *c, jv v)
{
    if (is_string(v))
        return;
    if (!is_object(v)) {
        report(c, "until: expected a condition (string) or an event consumption strategy, got %s",
               kind_desc(v));
        return;
    }
    check_strategy_x(c, v, 1);
}

static void check_nested_until(struct vctx *c, jv v)
{
    report(c, "nested until: the strategy inside until cannot have its own until");
}

static const struct prop strategy_props[] = {
    {"all", check_filter_list}, {"any", check_filter_list}, {"one", check_event_filter},
    {"until", check_until},     {NULL, NULL}};
static const struct prop nested_strategy_props[] = {
    {"all", check_filter_list}, {"any", check_filter_list}, {"one", check_event_filter},
    {"until", check_nested_until}, {NULL, NULL}};
static const char *const strategy_kinds[] = {"all", "any", "one", NULL};

/* eventConsumptionStrategy: one of all/any/one; until only with any, once. */
static void check_strategy_x(struct vctx *c, jv v, int nested)
{
    if (!is_object(v)) {
        report(c, "expected an event consumption strategy {all | any | one}, got %s", kind_desc(v));
        return;
    }
    exactly_one(c, v, strategy_kinds, "event consumption strategy");
    if (has(v, "until") && !has(v, "any")) {
        size_t old = push_key(c, "until");
        report(c, "until is only allowed with any");
        pop(c, old);
        jv rest = jv_object_delete(jv_copy(v), jv_string("until"));
        check_props(c, rest, strategy_props, NULL, NULL, 0, "event consumption strategy");
        jv_free(rest);
        return;
    }
    check_props(c, v, nested ? nested_strategy_props : strategy_props, NULL, NULL, 0,
                "event consumption strategy");
}

static void check_strategy(struct vctx *c, jv v) { check_strategy_x(c, v, 0); }

/* ------------------------------------------------------------------------ */
/* Task lists and flow                                                        */
/* ------------------------------------------------------------------------ */

static void check_task(struct vctx *c, jv task, const char *name);

static jv list_names(jv list)
{
    jv names = jv_array();
    int n = jv_array_length(jv_copy(list));
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(list), i);
        if (is_object(item)) {
            jv keys = jv_keys_unsorted(jv_copy(item));
            int m = jv_array_length(jv_copy(keys));
            for (int j = 0; j < m; j++)
                names = jv_array_append(names, jv_array_get(jv_copy(keys), j));
            jv_free(keys);
        }
        jv_free(item);
    }
    return names;
}

static void check_task_list(struct vctx *c, jv v)
{
    if (!is_array(v)) {
        report(c, "expected a task list (an array of {name: task}), got %s", kind_desc(v));
        return;
    }
    if (c->depth >= MAX_DEPTH) {
        report(c, "task lists nested more than %d deep", MAX_DEPTH);
        return;
    }
    c->depth++;
    c->scopes = jv_array_append(c->scopes, list_names(v));
    int n = jv_array_length(jv_copy(v));
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(v), i);
        size_t old = push_index(c, i);
        if (!is_object(item)) {
            report(c, "a task list item must be a map {name: task}, got %s", kind_desc(item));
        } else if (obj_len(item) == 0) {
            report(c, "empty task list item: expected {name: task}");
        } else {
            jv keys = jv_keys_unsorted(jv_copy(item));
            int m = jv_array_length(jv_copy(keys));
            if (m > 1) {
                jv k0 = jv_array_get(jv_copy(keys), 0), k1 = jv_array_get(jv_copy(keys), 1);
                report(c,
                       "list item holds %d tasks ('%.60s', '%.60s'); each item must hold exactly "
                       "one task (check the indentation and the leading '-')",
                       m, jv_string_value(k0), jv_string_value(k1));
                jv_free(k0);
                jv_free(k1);
            }
            for (int j = 0; j < m; j++) {
                jv k = jv_array_get(jv_copy(keys), j);
                jv task = jv_object_get(jv_copy(item), jv_copy(k));
                size_t old2 = push_key(c, jv_string_value(k));
                check_task(c, task, jv_string_value(k));
                pop(c, old2);
                jv_free(task);
                jv_free(k);
            }
            jv_free(keys);
        }
        pop(c, old);
        jv_free(item);
    }
    int depth = jv_array_length(jv_copy(c->scopes));
    c->scopes = jv_array_slice(c->scopes, 0, depth - 1);
    c->depth--;
}

/* A flow directive: continue | exit | end | a task of the enclosing list. */
static void check_then(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "a flow directive (continue, exit, end or a task name)"))
        return;
    const char *t = jv_string_value(v);
    if (!strcmp(t, "continue") || !strcmp(t, "exit") || !strcmp(t, "end"))
        return;
    int depth = jv_array_length(jv_copy(c->scopes));
    jv scope = depth > 0 ? jv_array_get(jv_copy(c->scopes), depth - 1) : jv_null();
    if (!is_array(scope)) {
        report(c, "then: '%.80s' is not continue, exit or end, and a function definition has no sibling tasks", t);
        jv_free(scope);
        return;
    }
    if (names_contain(scope, t)) {
        jv_free(scope);
        return;
    }
    int outer = 0;
    for (int i = depth - 2; i >= 0 && !outer; i--) {
        jv s = jv_array_get(jv_copy(c->scopes), i);
        outer = names_contain(s, t);
        jv_free(s);
    }
    char known[512];
    join_names(known, sizeof known, scope);
    if (outer)
        report(c,
               "then: '%.80s' is not a task in this list (known: %s); it belongs to an enclosing "
               "list, and then can only jump within its own list",
               t, known);
    else
        report(c, "then: '%.80s' is not a task in this list (known: %s)", t, known);
    jv_free(scope);
}

static const struct prop common_props[] = {
    {"if", check_string},     {"input", check_input},     {"output", check_output},
    {"export", check_export}, {"timeout", check_timeout}, {"then", check_then},
    {"metadata", check_object}, {NULL, NULL}};

/* ------------------------------------------------------------------------ */
/* Call tasks                                                                 */
/* ------------------------------------------------------------------------ */

static const struct prop http_with_props[] = {
    {"method", check_string},   {"endpoint", check_endpoint},          {"headers", check_string_map_or_expr},
    {"body", check_any},        {"query", check_string_map_or_expr},   {"output", check_http_output},
    {"redirect", check_bool},   {NULL, NULL}};
static const char *const http_with_req[] = {"method", "endpoint", NULL};

static void check_http_with(struct vctx *c, jv v)
{
    check_props(c, v, http_with_props, NULL, http_with_req, 0, "call http arguments (with)");
}

static const struct prop openapi_with_props[] = {
    {"document", check_ext_resource}, {"operationId", check_string}, {"parameters", check_object},
    {"authentication", check_auth_ref}, {"output", check_http_output}, {"redirect", check_bool},
    {NULL, NULL}};
static const char *const openapi_with_req[] = {"document", "operationId", NULL};

static void check_openapi_with(struct vctx *c, jv v)
{
    check_props(c, v, openapi_with_props, NULL, openapi_with_req, 0, "call openapi arguments (with)");
}

static void check_grpc_host(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_STRING, "a host name"))
        return;
    const char *s = jv_string_value(v);
    size_t n = strlen(s);
    int ok = n >= 1 && n <= 63 && isalnum((unsigned char)s[0]) && isalnum((unsigned char)s[n - 1]);
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.';
    if (!ok)
        report(c, "bad host '%.80s': expected a host name (letters, digits, '-' and '.')", s);
}

static void check_port(struct vctx *c, jv v)
{
    if (!is_integer(v))
        report(c, "expected an integer port, got %s", kind_desc(v));
    else if (jv_number_value(v) < 0 || jv_number_value(v) > 65535)
        report(c, "port %g out of range 0-65535", jv_number_value(v));
}

static void check_grpc_service(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"name", check_string}, {"host", check_grpc_host}, {"port", check_port},
        {"authentication", check_auth_ref}, {NULL, NULL}};
    static const char *const req[] = {"name", "host", NULL};
    check_props(c, v, props, NULL, req, 0, "grpc service");
}

static const struct prop grpc_with_props[] = {
    {"proto", check_ext_resource}, {"service", check_grpc_service}, {"method", check_string},
    {"arguments", check_object},   {NULL, NULL}};
static const char *const grpc_with_req[] = {"proto", "service", "method", NULL};

static void check_grpc_with(struct vctx *c, jv v)
{
    check_props(c, v, grpc_with_props, NULL, grpc_with_req, 0, "call grpc arguments (with)");
}

static void check_asyncapi_server(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"name", check_string}, {"variables", check_object}, {NULL, NULL}};
    static const char *const req[] = {"name", NULL};
    check_props(c, v, props, NULL, req, 0, "asyncapi server");
}

static void check_asyncapi_message(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"payload", check_object}, {"headers", check_object}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "asyncapi message");
}

static void check_consume(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"for", check_duration}, {"amount", check_integer}, {"while", check_runtime_expr},
        {"until", check_runtime_expr}, {NULL, NULL}};
    static const char *const kinds[] = {"amount", "while", "until", NULL};
    if (check_props(c, v, props, NULL, NULL, 0, "consumption policy"))
        exactly_one(c, v, kinds, "consumption policy");
}

static void check_sub_iterator(struct vctx *c, jv v);

static void check_subscription(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"filter", check_runtime_expr}, {"consume", check_consume}, {"foreach", check_sub_iterator},
        {NULL, NULL}};
    static const char *const req[] = {"consume", NULL};
    check_props(c, v, props, NULL, req, 0, "asyncapi subscription");
}

static const struct prop asyncapi_with_props[] = {
    {"document", check_ext_resource}, {"channel", check_string},
    {"operation", check_string},      {"server", check_asyncapi_server},
    {"protocol", check_asyncapi_protocol}, {"message", check_asyncapi_message},
    {"subscription", check_subscription},  {"authentication", check_auth_ref},
    {NULL, NULL}};
static const char *const asyncapi_with_req[] = {"document", NULL};

static void check_asyncapi_with(struct vctx *c, jv v)
{
    static const char *const target[] = {"operation", "channel", NULL};
    static const char *const action[] = {"message", "subscription", NULL};
    const char *what = "call asyncapi arguments (with)";
    if (!check_props(c, v, asyncapi_with_props, NULL, asyncapi_with_req, 0, what))
        return;
    exactly_one(c, v, target, what);
    exactly_one(c, v, action, what);
}

static void check_a2a_parameters(struct vctx *c, jv v)
{
    if (is_string(v))
        return;
    if (!is_object(v))
        report(c, "expected an object or a string, got %s", kind_desc(v));
    else if (obj_len(v) == 0)
        report(c, "empty parameters object");
}

static const struct prop a2a_with_props[] = {
    {"agentCard", check_ext_resource}, {"server", check_endpoint}, {"method", check_a2a_method},
    {"parameters", check_a2a_parameters}, {NULL, NULL}};
static const char *const a2a_with_req[] = {"method", NULL};

static void check_a2a_with(struct vctx *c, jv v)
{
    check_props(c, v, a2a_with_props, NULL, a2a_with_req, 0, "call a2a arguments (with)");
}

static void check_mcp_http(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"endpoint", check_endpoint}, {"headers", check_string_map}, {NULL, NULL}};
    static const char *const req[] = {"endpoint", NULL};
    check_props(c, v, props, NULL, req, 1, "mcp http transport");
}

static void check_mcp_stdio(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"command", check_string}, {"arguments", check_string_array}, {"environment", check_string_map},
        {NULL, NULL}};
    static const char *const req[] = {"command", NULL};
    check_props(c, v, props, NULL, req, 1, "mcp stdio transport");
}

static void check_mcp_transport(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"http", check_mcp_http}, {"stdio", check_mcp_stdio}, {"options", check_string_map}, {NULL, NULL}};
    static const char *const kinds[] = {"http", "stdio", NULL};
    if (check_props(c, v, props, NULL, NULL, 1, "mcp transport"))
        exactly_one(c, v, kinds, "mcp transport");
}

static void check_mcp_client(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"name", check_string}, {"description", check_string}, {NULL, NULL}};
    static const char *const req[] = {"name", "version", NULL};
    check_props(c, v, props, NULL, req, 1, "mcp client");
}

static void check_string_or_obj_params(struct vctx *c, jv v)
{
    if (!is_string(v) && !is_object(v))
        report(c, "expected an object or a string, got %s", kind_desc(v));
}

/* The schema leaves extra properties open in mcp's `with`: so do we. */
static const struct prop mcp_with_props[] = {
    {"protocolVersion", check_string}, {"method", check_mcp_method},
    {"parameters", check_string_or_obj_params}, {"timeout", check_duration},
    {"transport", check_mcp_transport}, {"client", check_mcp_client}, {NULL, NULL}};
static const char *const mcp_with_req[] = {"method", "transport", NULL};

static void check_mcp_with(struct vctx *c, jv v)
{
    check_props(c, v, mcp_with_props, NULL, mcp_with_req, 1, "call mcp arguments (with)");
}

/* ------------------------------------------------------------------------ */
/* Other task kinds                                                           */
/* ------------------------------------------------------------------------ */

static void check_fork_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"branches", check_task_list}, {"compete", check_bool}, {NULL, NULL}};
    static const char *const req[] = {"branches", NULL};
    check_props(c, v, props, NULL, req, 0, "fork");
}

static void check_emit_with(struct vctx *c, jv v)
{
    static const char *const req[] = {"source", "type", NULL};
    check_props(c, v, event_props, NULL, req, 1, "emitted event (with)");
}

static void check_emit_event(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"with", check_emit_with}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 1, "emit event");
}

static void check_emit_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"event", check_emit_event}, {NULL, NULL}};
    static const char *const req[] = {"event", NULL};
    check_props(c, v, props, NULL, req, 0, "emit");
}

static void check_for_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"each", check_jq_ident}, {"in", check_string}, {"at", check_jq_ident}, {NULL, NULL}};
    static const char *const req[] = {"in", NULL};
    check_props(c, v, props, NULL, req, 0, "for");
}

static void check_listen_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"to", check_strategy}, {"read", check_listen_read}, {NULL, NULL}};
    static const char *const req[] = {"to", NULL};
    check_props(c, v, props, NULL, req, 0, "listen");
}

static void check_sub_iterator(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"item", check_jq_ident}, {"at", check_jq_ident}, {"do", check_task_list},
        {"output", check_output}, {"export", check_export}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "foreach");
}

static void check_raise_error(struct vctx *c, jv v)
{
    if (is_string(v))
        check_use_ref(c, "errors", jv_string_value(v), "raise.error");
    else if (is_object(v))
        check_error_def(c, v);
    else
        report(c, "raise.error: expected an error object {type, status} or the name of a use.errors entry, got %s",
               kind_desc(v));
}

static void check_raise_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"error", check_raise_error}, {NULL, NULL}};
    static const char *const req[] = {"error", NULL};
    check_props(c, v, props, NULL, req, 0, "raise");
}

static void check_lifetime(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"cleanup", check_cleanup}, {"after", check_duration}, {NULL, NULL}};
    static const char *const req[] = {"cleanup", NULL};
    if (!check_props(c, v, props, NULL, req, 0, "container lifetime"))
        return;
    jv cl = field(v, "cleanup");
    int eventually = is_string(cl) && strcmp(jv_string_value(cl), "eventually") == 0;
    jv_free(cl);
    if (eventually && !has(v, "after"))
        report(c, "container lifetime: cleanup 'eventually' needs after");
    else if (!eventually && has(v, "after")) {
        size_t old = push_key(c, "after");
        report(c, "container lifetime: after is only allowed with cleanup 'eventually'");
        pop(c, old);
    }
}

static void check_container(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"image", check_string},      {"name", check_string},        {"command", check_string},
        {"ports", check_object},      {"volumes", check_object},     {"environment", check_object},
        {"stdin", check_string},      {"arguments", check_string_array}, {"lifetime", check_lifetime},
        {"pullPolicy", check_pull_policy}, {NULL, NULL}};
    static const char *const req[] = {"image", NULL};
    check_props(c, v, props, NULL, req, 0, "run container");
}

static void check_script(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"language", check_string}, {"stdin", check_string}, {"arguments", check_string_array},
        {"environment", check_object}, {"code", check_string}, {"source", check_ext_resource},
        {NULL, NULL}};
    static const char *const req[] = {"language", NULL};
    static const char *const body[] = {"code", "source", NULL};
    if (check_props(c, v, props, NULL, req, 0, "run script"))
        exactly_one(c, v, body, "run script");
}

static void check_shell(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"command", check_string}, {"stdin", check_string}, {"arguments", check_string_array},
        {"environment", check_object}, {NULL, NULL}};
    static const char *const req[] = {"command", NULL};
    check_props(c, v, props, NULL, req, 0, "run shell");
}

static void check_subflow(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"namespace", check_string}, {"name", check_string}, {"version", check_string},
        {"input", check_object}, {NULL, NULL}};
    static const char *const req[] = {"namespace", "name", "version", NULL};
    check_props(c, v, props, NULL, req, 0, "run workflow");
}

static void check_run_cfg(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"await", check_bool},        {"return", check_run_return}, {"container", check_container},
        {"script", check_script},     {"shell", check_shell},       {"workflow", check_subflow},
        {NULL, NULL}};
    static const char *const kinds[] = {"container", "script", "shell", "workflow", NULL};
    if (check_props(c, v, props, NULL, NULL, 0, "run"))
        exactly_one(c, v, kinds, "run");
}

static void check_set_cfg(struct vctx *c, jv v)
{
    if (is_string(v))
        return;
    if (!is_object(v))
        report(c, "set: expected an object or an expression string, got %s", kind_desc(v));
    else if (obj_len(v) == 0)
        report(c, "set: empty object; give at least one property or an expression");
}

static void check_switch_case(struct vctx *c, jv v, const char *name)
{
    static const struct prop props[] = {{"when", check_string}, {"then", check_then}, {NULL, NULL}};
    static const char *const req[] = {"then", NULL};
    char what[128];
    snprintf(what, sizeof what, "switch case '%.60s'", name);
    check_props(c, v, props, NULL, req, 0, what);
}

static void check_switch_cfg(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_ARRAY, "a list of switch cases"))
        return;
    int n = jv_array_length(jv_copy(v));
    if (n == 0)
        report(c, "switch needs at least one case");
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(v), i);
        size_t old = push_index(c, i);
        if (!is_object(item)) {
            report(c, "a switch case must be a map {name: {when, then}}, got %s", kind_desc(item));
        } else if (obj_len(item) != 1) {
            jv keys = jv_keys_unsorted(jv_copy(item));
            if (obj_len(item) == 0) {
                report(c, "empty switch case: expected {name: {when, then}}");
            } else {
                jv k0 = jv_array_get(jv_copy(keys), 0), k1 = jv_array_get(jv_copy(keys), 1);
                report(c, "switch case holds %d entries ('%.60s', '%.60s'); each case must hold exactly one {name: {when, then}}",
                       obj_len(item), jv_string_value(k0), jv_string_value(k1));
                jv_free(k0);
                jv_free(k1);
            }
            jv_free(keys);
        } else {
            jv keys = jv_keys_unsorted(jv_copy(item));
            jv k = jv_array_get(keys, 0);
            jv cs = jv_object_get(jv_copy(item), jv_copy(k));
            size_t old2 = push_key(c, jv_string_value(k));
            check_switch_case(c, cs, jv_string_value(k));
            pop(c, old2);
            jv_free(cs);
            jv_free(k);
        }
        pop(c, old);
        jv_free(item);
    }
}

static void check_error_filter(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"type", check_string},  {"status", check_integer}, {"instance", check_string},
        {"title", check_string}, {"details", check_string}, {NULL, NULL}};
    if (check_props(c, v, props, NULL, NULL, 1, "error filter") && obj_len(v) == 0)
        report(c, "empty error filter: give at least one of type, status, instance, title, details");
}

static void check_catch_errors(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"with", check_error_filter}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 1, "catch errors");
}

static void check_retry(struct vctx *c, jv v)
{
    if (is_string(v))
        check_use_ref(c, "retries", jv_string_value(v), "retry");
    else if (is_object(v))
        check_retry_policy(c, v);
    else
        report(c, "retry: expected a retry policy object or the name of a use.retries entry, got %s",
               kind_desc(v));
}

static void check_catch(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"errors", check_catch_errors}, {"as", check_jq_ident}, {"when", check_string},
        {"exceptWhen", check_string},   {"retry", check_retry}, {"do", check_task_list},
        {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "catch");
}

/* ------------------------------------------------------------------------ */
/* Task dispatch                                                              */
/* ------------------------------------------------------------------------ */

#define PROPS(...) ((const struct prop[]){__VA_ARGS__, {NULL, NULL}})
#define REQ(...) ((const char *const[]){__VA_ARGS__, NULL})

struct task_kind {
    const char *key;
    const struct prop *props;
    const char *const *required;
};

static const struct task_kind task_kinds[] = {
    {"call", NULL, NULL}, /* dispatched on its value, see call_kinds */
    {"do", PROPS({"do", check_task_list}), REQ("do")},
    {"emit", PROPS({"emit", check_emit_cfg}), REQ("emit")},
    {"for", PROPS({"for", check_for_cfg}, {"while", check_string}, {"do", check_task_list}), REQ("for", "do")},
    {"fork", PROPS({"fork", check_fork_cfg}), REQ("fork")},
    {"listen", PROPS({"listen", check_listen_cfg}, {"foreach", check_sub_iterator}), REQ("listen")},
    {"raise", PROPS({"raise", check_raise_cfg}), REQ("raise")},
    {"run", PROPS({"run", check_run_cfg}), REQ("run")},
    {"set", PROPS({"set", check_set_cfg}), REQ("set")},
    {"switch", PROPS({"switch", check_switch_cfg}), REQ("switch")},
    {"try", PROPS({"try", check_task_list}, {"catch", check_catch}), REQ("try", "catch")},
    {"wait", PROPS({"wait", check_duration}), REQ("wait")},
    {NULL, NULL, NULL}};

static const struct task_kind call_kinds[] = {
    {"http", PROPS({"call", check_string}, {"with", check_http_with}), REQ("call", "with")},
    {"openapi", PROPS({"call", check_string}, {"with", check_openapi_with}), REQ("call", "with")},
    {"grpc", PROPS({"call", check_string}, {"with", check_grpc_with}), REQ("call", "with")},
    {"asyncapi", PROPS({"call", check_string}, {"with", check_asyncapi_with}), REQ("call", "with")},
    {"a2a", PROPS({"call", check_string}, {"with", check_a2a_with}), REQ("call", "with")},
    {"mcp", PROPS({"call", check_string}, {"with", check_mcp_with}), REQ("call", "with")},
    {NULL, PROPS({"call", check_string}, {"with", check_object}), REQ("call")}};

/* `call: name` must name a use.functions entry, unless name:version@catalog or a URL. */
static void check_function_ref(struct vctx *c, const char *name)
{
    if (strchr(name, '@') || strstr(name, "://"))
        return;
    if (!*name) {
        report(c, "call: empty function name");
        return;
    }
    jv fns = field(c->use, "functions");
    int defined = is_object(fns) && has(fns, name);
    jv_free(fns);
    if (!defined && (cv__catalog_function(name) || !strcmp(name, CV_REVIEW_FUNCTION)))
        return; /* the runtime's default catalog (classify..., review) */
    check_use_ref(c, "functions", name, "call");
}

static void check_task(struct vctx *c, jv task, const char *name)
{
    if (!is_object(task)) {
        report(c, "task '%.80s' must be a map, got %s", name, kind_desc(task));
        return;
    }
    const struct task_kind *kind = NULL, *second = NULL;
    for (const struct task_kind *k = task_kinds; k->key; k++) {
        if (!has(task, k->key))
            continue;
        if (!strcmp(k->key, "do") && has(task, "for"))
            continue; /* for's own do */
        if (!kind)
            kind = k;
        else if (!second)
            second = k;
    }
    if (second) {
        report(c, "task '%.80s' has two task types: %s and %s", name, kind->key, second->key);
        return;
    }
    if (!kind) {
        jv keys = jv_keys_unsorted(jv_copy(task));
        jv k0 = jv_array_length(jv_copy(keys)) > 0 ? jv_array_get(jv_copy(keys), 0) : jv_string("");
        if (obj_len(task) == 0)
            report(c, "task '%.80s' is empty: it needs one of call, do, emit, for, fork, listen, raise, run, set, switch, try, wait", name);
        else
            report(c,
                   "task '%.80s' has no known task type (found '%.60s'; expected one of call, do, "
                   "emit, for, fork, listen, raise, run, set, switch, try, wait)",
                   name, jv_string_value(k0));
        jv_free(k0);
        jv_free(keys);
        return;
    }

    char what[192];
    const struct prop *props = kind->props;
    const char *const *required = kind->required;
    if (!strcmp(kind->key, "call")) {
        jv call = field(task, "call");
        if (!is_string(call)) {
            size_t old = push_key(c, "call");
            report(c, "call: expected a string (http, openapi, grpc, asyncapi, a2a, mcp or a function name), got %s",
                   kind_desc(call));
            pop(c, old);
            jv_free(call);
            return;
        }
        const struct task_kind *ck = call_kinds;
        while (ck->key && strcmp(ck->key, jv_string_value(call)) != 0)
            ck++;
        props = ck->props;
        required = ck->required;
        snprintf(what, sizeof what, "task '%.80s' (call %s)", name, ck->key ? ck->key : "function");
        if (!ck->key) {
            size_t old = push_key(c, "call");
            check_function_ref(c, jv_string_value(call));
            pop(c, old);
        }
        jv_free(call);
    } else {
        snprintf(what, sizeof what, "task '%.80s' (%s)", name, kind->key);
    }
    check_props(c, task, props, common_props, required, 0, what);
}

/* ------------------------------------------------------------------------ */
/* Document, use, schedule                                                    */
/* ------------------------------------------------------------------------ */

static void check_semver(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a semantic version string such as '1.0.0'") &&
        !is_semver(jv_string_value(v)))
        report(c, "bad version '%.80s': expected a semantic version such as 1.0.0", jv_string_value(v));
}

static void check_dns_name(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a string") && !is_dns_label(jv_string_value(v)))
        report(c,
               "bad name '%.80s': use 1 to 63 letters, digits or '-', starting and ending with a "
               "letter or digit",
               jv_string_value(v));
}

static const struct prop document_props[] = {
    {"dsl", check_semver},     {"namespace", check_dns_name}, {"name", check_dns_name},
    {"version", check_semver}, {"title", check_string},       {"summary", check_string},
    {"tags", check_object},    {"metadata", check_object},    {NULL, NULL}};
static const char *const document_req[] = {"dsl", "namespace", "name", "version", NULL};

static void check_document(struct vctx *c, jv v)
{
    check_props(c, v, document_props, NULL, document_req, 0, "document");
}

static void check_function(struct vctx *c, jv v)
{
    /* A function is a task outside any list, named by its key in use.functions. */
    char name[128];
    snprintf(name, sizeof name, "%s", c->key ? c->key : "");
    c->scopes = jv_array_append(c->scopes, jv_null());
    check_task(c, v, name);
    int depth = jv_array_length(jv_copy(c->scopes));
    c->scopes = jv_array_slice(c->scopes, 0, depth - 1);
}

static void check_extension(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"extend", check_extend}, {"when", check_string}, {"before", check_task_list},
        {"after", check_task_list}, {NULL, NULL}};
    static const char *const req[] = {"extend", NULL};
    check_props(c, v, props, NULL, req, 0, "extension");
}

static void check_extensions(struct vctx *c, jv v)
{
    if (!want(c, v, JV_KIND_ARRAY, "a list of {name: extension}"))
        return;
    int n = jv_array_length(jv_copy(v));
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(v), i);
        size_t old = push_index(c, i);
        if (!is_object(item) || obj_len(item) != 1)
            report(c, "an extension list item must be a map with exactly one {name: extension}, got %s",
                   is_object(item) ? "a map with several entries" : kind_desc(item));
        else
            check_map_of(c, item, check_extension, "extension");
        pop(c, old);
        jv_free(item);
    }
}

static void check_catalog(struct vctx *c, jv v)
{
    static const struct prop props[] = {{"endpoint", check_endpoint}, {NULL, NULL}};
    static const char *const req[] = {"endpoint", NULL};
    check_props(c, v, props, NULL, req, 0, "catalog");
}

static void check_use_auths(struct vctx *c, jv v) { check_map_of(c, v, check_auth_policy, "use.authentications"); }
static void check_use_errors(struct vctx *c, jv v) { check_map_of(c, v, check_error_def, "use.errors"); }
static void check_use_functions(struct vctx *c, jv v) { check_map_of(c, v, check_function, "use.functions"); }
static void check_use_retries(struct vctx *c, jv v) { check_map_of(c, v, check_retry_policy, "use.retries"); }
static void check_use_timeouts(struct vctx *c, jv v) { check_map_of(c, v, check_timeout_def, "use.timeouts"); }
static void check_use_catalogs(struct vctx *c, jv v) { check_map_of(c, v, check_catalog, "use.catalogs"); }

static const struct prop use_props[] = {
    {"authentications", check_use_auths}, {"errors", check_use_errors},
    {"extensions", check_extensions},     {"functions", check_use_functions},
    {"retries", check_use_retries},       {"secrets", check_string_array},
    {"timeouts", check_use_timeouts},     {"catalogs", check_use_catalogs},
    {NULL, NULL}};

static void check_use(struct vctx *c, jv v) { check_props(c, v, use_props, NULL, NULL, 0, "use"); }

static const struct prop schedule_props[] = {
    {"every", check_duration}, {"cron", check_string}, {"after", check_duration},
    {"on", check_strategy},    {NULL, NULL}};

static void check_schedule(struct vctx *c, jv v)
{
    check_props(c, v, schedule_props, NULL, NULL, 0, "schedule");
}

static void check_eval_language(struct vctx *c, jv v)
{
    if (want(c, v, JV_KIND_STRING, "a string") && strcmp(jv_string_value(v), "jq") != 0)
        report(c, "unsupported expression language '%.80s' (conveyor evaluates jq)", jv_string_value(v));
}

static void check_evaluate(struct vctx *c, jv v)
{
    static const struct prop props[] = {
        {"language", check_eval_language}, {"mode", check_eval_mode}, {NULL, NULL}};
    check_props(c, v, props, NULL, NULL, 0, "evaluate");
}

/* The root allows extra properties: the schema has no unevaluatedProperties there. */
static const struct prop root_props[] = {
    {"document", check_document}, {"input", check_input},       {"use", check_use},
    {"do", check_task_list},      {"timeout", check_timeout},   {"output", check_output},
    {"schedule", check_schedule}, {"evaluate", check_evaluate}, {NULL, NULL}};
static const char *const root_req[] = {"document", "do", NULL};

int cv__dsl_validate(jv doc, jv locs, const char *file, jv *diags)
{
    struct vctx c;
    memset(&c, 0, sizeof c);
    c.doc = doc;
    c.locs = locs;
    c.file = file;
    c.diags = is_array(*diags) ? *diags : (jv_free(*diags), jv_array());
    c.use = field(doc, "use");
    if (!is_object(c.use)) {
        jv_free(c.use);
        c.use = jv_null();
    }
    c.scopes = jv_array();
    ptr_append(&c, "", 0);

    if (!is_object(doc))
        report(&c, "a workflow document must be a map, got %s", kind_desc(doc));
    else
        check_props(&c, doc, root_props, NULL, root_req, 1, "the workflow");

    *diags = c.diags;
    jv_free(c.use);
    jv_free(c.scopes);
    free(c.ptr);
    return c.count;
}

/* ------------------------------------------------------------------------ */
/* Pointers and locations                                                     */
/* ------------------------------------------------------------------------ */

/* Decodes the RFC 6901 segment [s, s+n) into a NUL-terminated malloc'd string. */
static char *decode_segment(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
            out[j++] = s[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

struct sbuf {
    char *s;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static char *json_quote(const char *s);

static int plain_key(const char *k)
{
    if (!*k)
        return 0;
    for (; *k; k++)
        if (*k == '.' || *k == '[' || *k == ']' || *k == '"' || *k == '\'')
            return 0;
    return 1;
}

char *cv__pointer_to_path(jv doc, const char *pointer)
{
    struct sbuf b = {0};
    sb_add(&b, "", 0);
    jv cur = jv_copy(doc);
    const char *p = pointer ? pointer : "";
    while (*p == '/') {
        const char *seg = p + 1;
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        char *key = decode_segment(seg, n);
        if (!key)
            break;
        jv next;
        if ((is_array(cur) || !is_object(cur)) && is_digits(key, strlen(key)) && strlen(key) < 10) {
            sb_add(&b, "[", 1);
            sb_add(&b, key, strlen(key));
            sb_add(&b, "]", 1);
            next = is_array(cur) ? jv_array_get(jv_copy(cur), atoi(key)) : jv_invalid();
        } else {
            if (plain_key(key)) {
                if (b.len)
                    sb_add(&b, ".", 1);
                sb_add(&b, key, strlen(key));
            } else {
                char *q = json_quote(key);
                sb_add(&b, "[", 1);
                if (q)
                    sb_add(&b, q, strlen(q));
                sb_add(&b, "]", 1);
                free(q);
            }
            next = is_object(cur) ? jv_object_get(jv_copy(cur), jv_string(key)) : jv_invalid();
        }
        free(key);
        jv_free(cur);
        cur = next;
        p = seg + n;
    }
    jv_free(cur);
    return b.s;
}

static char *json_quote(const char *s)
{
    jv d = jv_dump_string(jv_string(s), 0);
    char *out = strdup(jv_string_value(d));
    jv_free(d);
    return out;
}

void cv__locate(jv locs, const char *pointer, int *line, int *column)
{
    *line = 0;
    *column = 0;
    if (!is_object(locs))
        return;
    size_t n = pointer ? strlen(pointer) : 0;
    char *buf = malloc(n + 1);
    if (!buf)
        return;
    memcpy(buf, pointer ? pointer : "", n);
    buf[n] = '\0';
    for (;;) {
        jv at = jv_object_get(jv_copy(locs), jv_string(buf));
        if (is_array(at) && jv_array_length(jv_copy(at)) >= 2) {
            jv l = jv_array_get(jv_copy(at), 0), col = jv_array_get(jv_copy(at), 1);
            if (is_kind(l, JV_KIND_NUMBER) && is_kind(col, JV_KIND_NUMBER)) {
                *line = (int)jv_number_value(l);
                *column = (int)jv_number_value(col);
            }
            jv_free(l);
            jv_free(col);
            if (*line > 0) {
                jv_free(at);
                break;
            }
        }
        jv_free(at);
        char *slash = strrchr(buf, '/');
        if (!slash) {
            if (!*buf)
                break;
            buf[0] = '\0'; /* a pointer without a leading '/': try the root */
            continue;
        }
        *slash = '\0';
    }
    free(buf);
}
