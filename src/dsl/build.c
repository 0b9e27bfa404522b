/*
 * build.c — turns a validated workflow document into the immutable task tree
 * (model.h) and registers every runtime expression with the definition's
 * expression set, knowing for each site which scope variables it sees.
 *
 * Strict mode (the default): a string is an expression only when it is a whole
 * `${ ... }`. Fields that are always expressions (if, input.from, output.as,
 * export.as, switch when, catch/retry when and exceptWhen, for.in, for.while,
 * set when a string) are expressions with or without `${ }`.
 * Loose mode (evaluate.mode: loose): in addition, every other string that
 * starts with `.` or `$` is treated as an expression.
 *
 * The validator (validate.c) runs first; this file still checks the types it
 * reads, so that a document that slipped through gives an error, not a crash.
 */
#include "dsl/model.h"

#include "common/util.h"
#include "conveyor.h"
#include "effects/effects.h"
#include "ml/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct builder {
    struct cv_workflow *wf;
    jv *errors;
    int failed;
    jv use; /* the `use` object or null */
};

static void berr(struct builder *b, const char *pointer, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    jv d = jv_object();
    d = jv_object_set(d, jv_string("pointer"), jv_string(pointer));
    d = jv_object_set(d, jv_string("message"), jv_string(msg));
    *b->errors = jv_array_append(*b->errors, d);
    b->failed = 1;
}

/* ---- small helpers ------------------------------------------------------- */

static char *ptr_join(const char *base, const char *seg)
{
    size_t n = strlen(base), extra = 0;
    for (const char *c = seg; *c; c++)
        extra += (*c == '~' || *c == '/') ? 2 : 1;
    char *r = malloc(n + extra + 2);
    if (!r)
        return NULL;
    memcpy(r, base, n);
    char *o = r + n;
    *o++ = '/';
    for (const char *c = seg; *c; c++) {
        if (*c == '~') {
            *o++ = '~';
            *o++ = '0';
        } else if (*c == '/') {
            *o++ = '~';
            *o++ = '1';
        } else {
            *o++ = *c;
        }
    }
    *o = 0;
    return r;
}

static char *ptr_index(const char *base, int i)
{
    char num[16];
    snprintf(num, sizeof num, "%d", i);
    return ptr_join(base, num);
}

/* Borrowed lookup: returns a new reference or jv_invalid() when absent. */
static jv get(jv obj, const char *key)
{
    if (jv_get_kind(obj) != JV_KIND_OBJECT)
        return jv_invalid();
    return jv_object_get(jv_copy(obj), jv_string(key));
}

static int has(jv obj, const char *key)
{
    jv v = get(obj, key);
    int r = jv_is_valid(v);
    jv_free(v);
    return r;
}

int cv__is_runtime_expr(const char *s, char **inner)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (p[0] != '$' || p[1] != '{')
        return 0;
    const char *e = p + strlen(p);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        e--;
    if (e - p < 3 || e[-1] != '}')
        return 0;
    if (inner) {
        size_t n = (size_t)(e - 1 - (p + 2));
        *inner = malloc(n + 1);
        if (!*inner)
            return 0;
        memcpy(*inner, p + 2, n);
        (*inner)[n] = 0;
    }
    return 1;
}

/* Records a task or list under its reference, for restoring continuations. */
static void index_ref(struct builder *b, const char *ref, int is_list, const void *p)
{
    struct cv_workflow *wf = b->wf;
    if (!ref)
        return;
    if (wf->nrefs == wf->caprefs) {
        int cap = wf->caprefs ? wf->caprefs * 2 : 64;
        struct cv_ref *n = realloc(wf->refs, (size_t)cap * sizeof *n);
        if (!n) {
            b->failed = 1;
            return;
        }
        wf->refs = n;
        wf->caprefs = cap;
    }
    wf->refs[wf->nrefs].is_list = is_list;
    wf->refs[wf->nrefs].p = p;
    wf->ref_index = jv_object_set(wf->ref_index, jv_string(ref), jv_number(wf->nrefs));
    wf->nrefs++;
}

static const void *lookup_ref(const struct cv_workflow *wf, const char *ref, int is_list)
{
    jv i = jv_object_get(jv_copy(wf->ref_index), jv_string(ref));
    const void *p = NULL;
    if (jv_get_kind(i) == JV_KIND_NUMBER) {
        const struct cv_ref *r = &wf->refs[(int)jv_number_value(i)];
        if (r->is_list == is_list)
            p = r->p;
    }
    jv_free(i);
    return p;
}

const struct cv_task *cv__workflow_task(const struct cv_workflow *wf, const char *ref)
{
    return lookup_ref(wf, ref, 0);
}

const struct cv_tasklist *cv__workflow_list(const struct cv_workflow *wf, const char *ref)
{
    return lookup_ref(wf, ref, 1);
}

static int add_expr(struct builder *b, const char *text, jv scope, const char *pointer)
{
    int idx = cv__exprset_add(b->wf->exprs, text, scope, pointer, b->errors);
    if (idx < 0)
        b->failed = 1;
    return idx;
}

/* An always-an-expression field: with or without ${ }. -1 when not a string. */
static int always_expr(struct builder *b, jv v /* borrowed */, jv scope, const char *pointer)
{
    if (jv_get_kind(v) != JV_KIND_STRING)
        return -1;
    char *inner = NULL;
    const char *s = jv_string_value(v);
    int idx;
    if (cv__is_runtime_expr(s, &inner)) {
        idx = add_expr(b, inner, scope, pointer);
        free(inner);
    } else {
        idx = add_expr(b, s, scope, pointer);
    }
    return idx;
}

static int is_loose_candidate(const char *s)
{
    while (*s == ' ')
        s++;
    return *s == '.' || *s == '$';
}

static void tmpl_walk(struct builder *b, struct cv_tmpl *t, jv v /* borrowed */, jv path, jv scope,
                      const char *pointer)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_STRING: {
        char *inner = NULL;
        int idx = -1;
        const char *s = jv_string_value(v);
        if (cv__is_runtime_expr(s, &inner)) {
            idx = add_expr(b, inner, scope, pointer);
            free(inner);
        } else if (b->wf->loose && is_loose_candidate(s)) {
            idx = cv__exprset_add_loose(b->wf->exprs, s, scope, pointer);
            if (idx == CV_ENOMEM)
                b->failed = 1;
        }
        if (idx >= 0) {
            struct cv_sub *n = realloc(t->subs, (size_t)(t->nsubs + 1) * sizeof *n);
            if (!n) {
                b->failed = 1;
                break;
            }
            t->subs = n;
            t->subs[t->nsubs].path = jv_copy(path);
            t->subs[t->nsubs].expr = idx;
            t->nsubs++;
        }
        break;
    }
    case JV_KIND_ARRAY:
        jv_array_foreach(v, i, item)
        {
            char *p = ptr_index(pointer, i);
            tmpl_walk(b, t, item, jv_array_append(jv_copy(path), jv_number(i)), scope, p ? p : pointer);
            free(p);
            jv_free(item);
        }
        break;
    case JV_KIND_OBJECT:
        jv_object_foreach(v, k, item)
        {
            char *p = ptr_join(pointer, jv_string_value(k));
            tmpl_walk(b, t, item, jv_array_append(jv_copy(path), k), scope, p ? p : pointer);
            free(p);
            jv_free(item);
        }
        break;
    default:
        break;
    }
    jv_free(path);
}

/* A template of a value whose `${ }` strings are expressions (strict mode). */
static void tmpl_init(struct builder *b, struct cv_tmpl *t, jv v /* borrowed */, jv scope, const char *pointer)
{
    t->konst = jv_copy(v);
    t->whole = -1;
    t->nsubs = 0;
    t->subs = NULL;
    tmpl_walk(b, t, v, jv_array(), scope, pointer);
    if (t->nsubs == 1 && jv_array_length(jv_copy(t->subs[0].path)) == 0) {
        t->whole = t->subs[0].expr;
        jv_free(t->subs[0].path);
        free(t->subs);
        t->subs = NULL;
        t->nsubs = 0;
    }
}

/* input.from / output.as / export.as: a string is always an expression; an
 * object is a template. */
static void tmpl_init_always(struct builder *b, struct cv_tmpl *t, jv v, jv scope, const char *pointer)
{
    if (jv_get_kind(v) == JV_KIND_STRING) {
        t->konst = jv_null();
        t->nsubs = 0;
        t->subs = NULL;
        t->whole = always_expr(b, v, scope, pointer);
        return;
    }
    tmpl_init(b, t, v, scope, pointer);
}

static void tmpl_release(struct cv_tmpl *t)
{
    jv_free(t->konst);
    for (int i = 0; i < t->nsubs; i++)
        jv_free(t->subs[i].path);
    free(t->subs);
    t->subs = NULL;
    t->nsubs = 0;
}

/* jv_setpath, with the common one-level case done directly (a hot path:
 * `set: {amount: ${ .amount }}`). Consumes v and value; borrows path. */
static jv set_at(jv v, jv path, jv value)
{
    if (jv_array_length(jv_copy(path)) == 1) {
        jv k = jv_array_get(jv_copy(path), 0);
        if (jv_get_kind(k) == JV_KIND_STRING && jv_get_kind(v) == JV_KIND_OBJECT)
            return jv_object_set(v, k, value);
        if (jv_get_kind(k) == JV_KIND_NUMBER && jv_get_kind(v) == JV_KIND_ARRAY)
            return jv_array_set(v, (int)jv_number_value(k), value);
        jv_free(k);
    }
    return jv_setpath(v, jv_copy(path), value);
}

int cv__tmpl_eval(struct cv_exprset *s, const struct cv_tmpl *t, jv dot, struct cv_evalenv *env, jv *out)
{
    if (t->whole >= 0)
        return cv__expr_eval(s, t->whole, dot, env, out);
    if (t->nsubs == 0) {
        jv_free(dot);
        *out = jv_copy(t->konst);
        return 0;
    }
    jv v = jv_copy(t->konst);
    for (int i = 0; i < t->nsubs; i++) {
        jv r;
        int rc = cv__expr_eval(s, t->subs[i].expr, jv_copy(dot), env, &r);
        if (rc) {
            jv_free(v);
            jv_free(dot);
            *out = r;
            return rc;
        }
        v = set_at(v, t->subs[i].path, r);
    }
    jv_free(dot);
    *out = v;
    return 0;
}

/* A duration value: literal, or an expression. */
static void duration_init(struct builder *b, struct cv_duration *d, jv v /* borrowed */, jv scope,
                          const char *pointer)
{
    d->set = 0;
    d->expr = -1;
    d->ms = 0;
    if (!jv_is_valid(v) || jv_get_kind(v) == JV_KIND_NULL)
        return;
    d->set = 1;
    if (jv_get_kind(v) == JV_KIND_STRING) {
        char *inner = NULL;
        if (cv__is_runtime_expr(jv_string_value(v), &inner)) {
            d->expr = add_expr(b, inner, scope, pointer);
            free(inner);
            return;
        }
    }
    const char *why = NULL;
    if (cv__duration_ms(v, &d->ms, &why))
        berr(b, pointer, "invalid duration: %s", why);
}

/* A `timeout` property: an object {after} or the name of a use.timeouts entry. */
static void timeout_init(struct builder *b, struct cv_duration *d, jv v /* borrowed */, jv scope,
                         const char *pointer)
{
    d->set = 0;
    d->expr = -1;
    if (!jv_is_valid(v))
        return;
    jv t = jv_copy(v);
    if (jv_get_kind(t) == JV_KIND_STRING) {
        jv timeouts = get(b->use, "timeouts");
        jv named = get(timeouts, jv_string_value(t));
        jv_free(timeouts);
        if (!jv_is_valid(named)) {
            berr(b, pointer, "timeout '%s' is not defined in use.timeouts", jv_string_value(t));
            jv_free(named);
            jv_free(t);
            return;
        }
        jv_free(t);
        t = named;
    }
    jv after = get(t, "after");
    char *p = ptr_join(pointer, "after");
    duration_init(b, d, after, scope, p ? p : pointer);
    free(p);
    jv_free(after);
    jv_free(t);
}

static void then_init(struct builder *b, jv v /* borrowed */, const struct cv_tasklist *list_names,
                      jv names, int *kind, int *target, const char *pointer)
{
    *kind = CV_THEN_CONTINUE;
    *target = -1;
    if (jv_get_kind(v) != JV_KIND_STRING)
        return;
    const char *s = jv_string_value(v);
    if (!strcmp(s, "continue"))
        *kind = CV_THEN_CONTINUE;
    else if (!strcmp(s, "exit"))
        *kind = CV_THEN_EXIT;
    else if (!strcmp(s, "end"))
        *kind = CV_THEN_END;
    else {
        *kind = CV_THEN_GOTO;
        jv_array_foreach(names, i, n)
        {
            if (!strcmp(jv_string_value(n), s))
                *target = i;
            jv_free(n);
        }
        if (*target < 0)
            berr(b, pointer, "then: '%s' is not a task of this list", s);
    }
    (void)list_names;
}

static void dataflow_init(struct builder *b, struct cv_dataflow *f, jv v /* borrowed */, const char *key,
                          jv scope, const char *pointer)
{
    f->has_expr = 0;
    f->schema = jv_null();
    memset(&f->expr, 0, sizeof f->expr);
    f->expr.konst = jv_null();
    f->expr.whole = -1;
    if (jv_get_kind(v) != JV_KIND_OBJECT)
        return;
    jv e = get(v, key);
    if (jv_is_valid(e)) {
        char *p = ptr_join(pointer, key);
        tmpl_init_always(b, &f->expr, e, scope, p ? p : pointer);
        free(p);
        f->has_expr = 1;
    }
    jv_free(e);
    jv schema = get(v, "schema");
    if (jv_is_valid(schema)) {
        jv doc = get(schema, "document");
        if (jv_is_valid(doc)) {
            f->schema = doc;
        } else {
            jv_free(doc);
            /* an external schema resource is fetched at run time: keep the reference */
            f->schema = jv_object_set(jv_object(), jv_string("$cvResource"), get(schema, "resource"));
        }
    }
    jv_free(schema);
}

static void dataflow_release(struct cv_dataflow *f)
{
    if (f->has_expr)
        tmpl_release(&f->expr);
    else
        jv_free(f->expr.konst);
    jv_free(f->schema);
}

static jv scope_with(jv scope, const char *name)
{
    return jv_array_append(jv_copy(scope), jv_string(name));
}

/* ---- tasks ------------------------------------------------------------------- */

static struct cv_tasklist *build_list(struct builder *b, jv items /* borrowed */, const char *ref, jv scope);
static struct cv_task *build_task(struct builder *b, const char *name, jv def, const char *ref, jv scope,
                                  jv sibling_names, int index);

static void retry_init(struct builder *b, struct cv_retry *r, jv v /* borrowed */, jv scope, const char *pointer)
{
    memset(r, 0, sizeof *r);
    r->when = r->except_when = -1;
    r->limit_count = -1;
    r->delay.expr = -1;
    if (!jv_is_valid(v))
        return;
    jv pol = jv_copy(v);
    if (jv_get_kind(pol) == JV_KIND_STRING) {
        jv retries = get(b->use, "retries");
        jv named = get(retries, jv_string_value(pol));
        jv_free(retries);
        if (!jv_is_valid(named)) {
            berr(b, pointer, "retry policy '%s' is not defined in use.retries", jv_string_value(pol));
            jv_free(named);
            jv_free(pol);
            return;
        }
        jv_free(pol);
        pol = named;
    }
    r->set = 1;
    jv w = get(pol, "when");
    char *p = ptr_join(pointer, "when");
    r->when = always_expr(b, w, scope, p);
    free(p);
    jv_free(w);
    w = get(pol, "exceptWhen");
    p = ptr_join(pointer, "exceptWhen");
    r->except_when = always_expr(b, w, scope, p);
    free(p);
    jv_free(w);
    jv d = get(pol, "delay");
    p = ptr_join(pointer, "delay");
    duration_init(b, &r->delay, d, scope, p);
    free(p);
    jv_free(d);
    jv bo = get(pol, "backoff");
    r->backoff = has(bo, "exponential") ? 2 : has(bo, "linear") ? 1 : 0;
    jv_free(bo);
    jv limit = get(pol, "limit");
    jv attempt = get(limit, "attempt");
    jv count = get(attempt, "count");
    if (jv_get_kind(count) == JV_KIND_NUMBER)
        r->limit_count = (int)jv_number_value(count);
    jv_free(count);
    struct cv_duration tmp;
    jv ad = get(attempt, "duration");
    duration_init(b, &tmp, ad, scope, pointer);
    r->limit_attempt_ms = tmp.set && tmp.expr < 0 ? tmp.ms : 0;
    jv_free(ad);
    jv ld = get(limit, "duration");
    duration_init(b, &tmp, ld, scope, pointer);
    r->limit_total_ms = tmp.set && tmp.expr < 0 ? tmp.ms : 0;
    jv_free(ld);
    jv_free(attempt);
    jv_free(limit);
    jv jit = get(pol, "jitter");
    if (jv_is_valid(jit)) {
        jv from = get(jit, "from"), to = get(jit, "to");
        duration_init(b, &tmp, from, scope, pointer);
        r->jitter_from_ms = tmp.expr < 0 ? tmp.ms : 0;
        duration_init(b, &tmp, to, scope, pointer);
        r->jitter_to_ms = tmp.expr < 0 ? tmp.ms : 0;
        jv_free(from);
        jv_free(to);
    }
    jv_free(jit);
    jv_free(pol);
}

/* Replaces `authentication: {use: name}` by the named definition, at any depth
 * of a call's arguments, so that its expressions become part of the template. */
static jv inline_auth(struct builder *b, jv v /* consumed */, const char *pointer)
{
    jv_kind k = jv_get_kind(v);
    if (k == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n; i++)
            v = jv_array_set(v, i, inline_auth(b, jv_array_get(jv_copy(v), i), pointer));
        return v;
    }
    if (k != JV_KIND_OBJECT)
        return v;
    jv keys = jv_keys_unsorted(jv_copy(v));
    jv_array_foreach(keys, i, key)
    {
        jv item = jv_object_get(jv_copy(v), jv_copy(key));
        if (!strcmp(jv_string_value(key), "authentication") && jv_get_kind(item) == JV_KIND_OBJECT &&
            has(item, "use")) {
            jv use = get(item, "use");
            jv auths = get(b->use, "authentications");
            jv def = jv_get_kind(use) == JV_KIND_STRING ? get(auths, jv_string_value(use)) : jv_invalid();
            if (!jv_is_valid(def)) {
                berr(b, pointer, "authentication '%s' is not defined in use.authentications",
                     jv_get_kind(use) == JV_KIND_STRING ? jv_string_value(use) : "?");
                jv_free(def);
            } else {
                jv_free(item);
                item = def;
            }
            jv_free(use);
            jv_free(auths);
        } else {
            item = inline_auth(b, item, pointer);
        }
        v = jv_object_set(v, key, item);
    }
    jv_free(keys);
    return v;
}

static const struct cv_task *find_function(struct builder *b, const char *name)
{
    for (int i = 0; i < b->wf->nfunctions; i++)
        if (!strcmp(b->wf->functions[i]->name, name))
            return b->wf->functions[i];
    return NULL;
}

/*
 * Where a remotely defined function lives: a URL as written, or for
 * `name:version@catalog` the catalog's `{endpoint}/functions/{name}/{version}/
 * function.yaml`, with GitHub `tree` URLs rewritten to raw content. Returns a
 * malloc'd URL, or NULL after reporting the problem.
 */
static char *remote_locator(struct builder *b, const char *c, const char *ref)
{
    if (strstr(c, "://"))
        return strdup(c);
    const char *at = strrchr(c, '@');
    const char *colon = memchr(c, ':', (size_t)(at - c));
    if (!colon || colon == c || colon + 1 == at || !at[1]) {
        berr(b, ref, "'%s' is not a function reference of the form name:version@catalog", c);
        return NULL;
    }
    jv catalogs = get(b->use, "catalogs");
    jv cat = get(catalogs, at + 1);
    jv_free(catalogs);
    jv ep = get(cat, "endpoint");
    jv_free(cat);
    if (jv_get_kind(ep) == JV_KIND_OBJECT) {
        jv uri = get(ep, "uri");
        jv_free(ep);
        ep = uri;
    }
    if (jv_get_kind(ep) != JV_KIND_STRING) {
        jv_free(ep);
        berr(b, ref, "catalog '%s' is not defined in use.catalogs (this runtime has no default catalog)", at + 1);
        return NULL;
    }
    const char *base = jv_string_value(ep);
    char root[2048];
    static const char gh[] = "https://github.com/";
    const char *tree = strstr(base, "/tree/");
    if (!strncmp(base, gh, sizeof gh - 1) && tree) {
        /* https://github.com/o/r/tree/REF/path → https://raw.githubusercontent.com/o/r/refs/heads/REF/path */
        snprintf(root, sizeof root, "https://raw.githubusercontent.com/%.*s/refs/heads/%s",
                 (int)(tree - base - (sizeof gh - 1)), base + sizeof gh - 1, tree + 6);
    } else {
        snprintf(root, sizeof root, "%s", base);
    }
    size_t rl = strlen(root);
    while (rl && root[rl - 1] == '/')
        root[--rl] = 0;
    char *url = NULL;
    if (asprintf(&url, "%s/functions/%.*s/%.*s/function.yaml", root, (int)(colon - c), c,
                 (int)(at - colon - 1), colon + 1) < 0)
        url = NULL;
    jv_free(ep);
    return url;
}

/*
 * What a `call: review` waits on once its task is open: a listen for one
 * completion event whose subject is the task id, which the interpreter gives
 * as the listen's input ({task: ID}). Being a plain listen, the wait is
 * durable, survives restarts and lets the instance be evicted (its
 * correlation keys the eviction index by task id).
 */
static struct cv_task *build_review_wait(struct builder *b, const char *ref)
{
    jv def = JV_OBJECT(
        jv_string("listen"),
        JV_OBJECT(jv_string("to"),
                  JV_OBJECT(jv_string("one"),
                            JV_OBJECT(jv_string("with"), JV_OBJECT(jv_string("type"), jv_string(CV_REVIEW_COMPLETED_TYPE)),
                                      jv_string("correlate"),
                                      JV_OBJECT(jv_string("task"), JV_OBJECT(jv_string("from"), jv_string("${ .subject }"),
                                                                             jv_string("expect"),
                                                                             jv_string("${ .task }"))))),
                  jv_string("read"), jv_string("data")));
    char *wref = ptr_join(ref, "review");
    jv none = jv_array();
    struct cv_task *w = wref ? build_task(b, "review", def, wref, none, none, 0) : NULL;
    if (!w)
        b->failed = 1;
    free(wref);
    jv_free(none);
    jv_free(def);
    return w;
}

static void build_call(struct builder *b, struct cv_task *t, jv def, const char *ref, jv scope)
{
    jv call = get(def, "call");
    const char *c = jv_get_kind(call) == JV_KIND_STRING ? jv_string_value(call) : "";
    jv with = get(def, "with");
    if (!jv_is_valid(with)) {
        jv_free(with);
        with = jv_object();
    }
    char *p = ptr_join(ref, "with");
    if (!strcmp(c, "http")) {
        t->kind = CV_T_CALL_HTTP;
    } else if (!strcmp(c, "openapi")) {
        t->kind = CV_T_CALL_OPENAPI;
    } else if (!strcmp(c, "grpc") || !strcmp(c, "asyncapi") || !strcmp(c, "a2a") || !strcmp(c, "mcp")) {
        t->kind = CV_T_CALL_UNSUPPORTED;
    } else if (strstr(c, "://") || strchr(c, '@')) {
        t->kind = CV_T_CALL_REMOTE;
        t->u.effect.locator = remote_locator(b, c, ref);
    } else if (!find_function(b, c) && !strcmp(c, CV_REVIEW_FUNCTION)) {
        t->kind = CV_T_CALL_CATALOG;
        t->u.effect.catalog = CV_REVIEW_FUNCTION;
        t->u.effect.wait = build_review_wait(b, ref);
    } else if (!find_function(b, c) && cv__catalog_function(c)) {
        t->kind = CV_T_CALL_CATALOG; /* the default catalog's, unless use.functions has its own */
        t->u.effect.catalog = cv__catalog_function(c);
    } else {
        t->kind = CV_T_CALL_FUNCTION;
        t->u.effect.function = find_function(b, c);
        if (!t->u.effect.function)
            berr(b, ref, "function '%s' is not defined in use.functions (nor in the default catalog)", c);
    }
    with = inline_auth(b, with, p ? p : ref);
    if (t->kind == CV_T_CALL_UNSUPPORTED) {
        /* not run by this runtime: keep the arguments as written (an asyncapi
         * subscription's foreach.do holds per-message tasks, not arguments) */
        t->u.effect.args.konst = jv_copy(with);
        t->u.effect.args.whole = -1;
    } else {
        tmpl_init(b, &t->u.effect.args, with, scope, p ? p : ref);
    }
    free(p);
    jv_free(with);
    jv_free(call);
}

static void build_run(struct builder *b, struct cv_task *t, jv def, const char *ref, jv scope)
{
    jv run = get(def, "run");
    char *p = ptr_join(ref, "run");
    if (has(run, "workflow"))
        t->kind = CV_T_RUN_WORKFLOW;
    else if (has(run, "container"))
        t->kind = CV_T_RUN_CONTAINER;
    else
        t->kind = CV_T_RUN_PROCESS;
    if (!jv_is_valid(run)) {
        jv_free(run);
        run = jv_object();
    }
    jv script = get(run, "script");
    if (jv_is_valid(script)) {
        /* a script's `code` is program text, never an expression */
        jv code = get(script, "code");
        run = jv_setpath(run, JV_ARRAY(jv_string("script"), jv_string("code")), jv_string("__cv_code__"));
        tmpl_init(b, &t->u.effect.args, run, scope, p ? p : ref);
        if (jv_is_valid(code))
            t->u.effect.args.konst =
                jv_setpath(t->u.effect.args.konst, JV_ARRAY(jv_string("script"), jv_string("code")), code);
        else {
            jv_free(code);
            t->u.effect.args.konst =
                jv_delpaths(t->u.effect.args.konst, JV_ARRAY(JV_ARRAY(jv_string("script"), jv_string("code"))));
        }
    } else {
        tmpl_init(b, &t->u.effect.args, run, scope, p ? p : ref);
    }
    jv_free(script);
    free(p);
    jv_free(run);
}

/* Builds one event filter: literal attributes, `${ }` predicates, and
 * correlations (`from` always an expression, `expect` a template). */
static void build_filter(struct builder *b, struct cv_event_filter *f, jv def /* borrowed */, jv scope,
                         const char *pointer)
{
    f->with = jv_object();
    jv with = get(def, "with");
    char *wp = ptr_join(pointer, "with");
    if (jv_get_kind(with) == JV_KIND_OBJECT) {
        jv_object_foreach(with, k, v)
        {
            char *inner = NULL;
            if (jv_get_kind(v) == JV_KIND_STRING && cv__is_runtime_expr(jv_string_value(v), &inner)) {
                char *ap = ptr_join(wp ? wp : pointer, jv_string_value(k));
                int idx = add_expr(b, inner, scope, ap ? ap : pointer);
                free(ap);
                free(inner);
                struct cv_attr_expr *n = realloc(f->exprs, (size_t)(f->nexprs + 1) * sizeof *n);
                if (!n) {
                    b->failed = 1;
                } else {
                    f->exprs = n;
                    f->exprs[f->nexprs].attr = strdup(jv_string_value(k));
                    f->exprs[f->nexprs].expr = idx;
                    f->nexprs++;
                }
                jv_free(k);
                jv_free(v);
            } else {
                f->with = jv_object_set(f->with, k, v);
            }
        }
    }
    free(wp);
    jv_free(with);
    jv corr = get(def, "correlate");
    if (jv_get_kind(corr) == JV_KIND_OBJECT) {
        int n = jv_object_length(jv_copy(corr));
        f->corr = calloc((size_t)(n ? n : 1), sizeof *f->corr);
        if (!f->corr)
            b->failed = 1;
        jv_object_foreach(corr, k, c)
        {
            if (f->corr) {
                struct cv_correlation *cr = &f->corr[f->ncorr++];
                cr->key = strdup(jv_string_value(k));
                char *cp = ptr_join(pointer, "correlate");
                char *kp = cp ? ptr_join(cp, jv_string_value(k)) : NULL;
                char *fp = kp ? ptr_join(kp, "from") : NULL, *ep = kp ? ptr_join(kp, "expect") : NULL;
                jv from = get(c, "from"), expect = get(c, "expect");
                cr->from = always_expr(b, from, scope, fp ? fp : pointer);
                cr->has_expect = jv_is_valid(expect) && jv_get_kind(expect) != JV_KIND_NULL;
                tmpl_init(b, &cr->expect, cr->has_expect ? expect : jv_null(), scope, ep ? ep : pointer);
                jv_free(from);
                jv_free(expect);
                free(cp);
                free(kp);
                free(fp);
                free(ep);
            }
            jv_free(k);
            jv_free(c);
        }
    }
    jv_free(corr);
}

/* Builds a consumption strategy (`one`, `any`, `all`, `until`). */
static void build_strategy(struct builder *b, struct cv_strategy *s, jv def /* borrowed */, jv scope,
                           const char *pointer)
{
    memset(s, 0, sizeof *s);
    s->until_expr = -1;
    jv filters;
    const char *key;
    if (has(def, "all")) {
        s->mode = CV_LISTEN_ALL;
        key = "all";
        filters = get(def, "all");
    } else if (has(def, "any")) {
        s->mode = CV_LISTEN_ANY;
        key = "any";
        filters = get(def, "any");
    } else {
        s->mode = CV_LISTEN_ONE;
        key = "one";
        filters = get(def, "one");
        filters = jv_get_kind(filters) == JV_KIND_OBJECT ? JV_ARRAY(filters) : (jv_free(filters), jv_array());
    }
    if (jv_get_kind(filters) != JV_KIND_ARRAY) {
        jv_free(filters);
        filters = jv_array();
    }
    int n = jv_array_length(jv_copy(filters));
    s->filters = calloc((size_t)(n ? n : 1), sizeof *s->filters);
    if (!s->filters)
        b->failed = 1;
    char *lp = ptr_join(pointer, key);
    jv_array_foreach(filters, i, f)
    {
        if (s->filters) {
            char *fp = s->mode == CV_LISTEN_ONE ? NULL : ptr_index(lp ? lp : pointer, i);
            build_filter(b, &s->filters[s->n++], f, scope, fp ? fp : lp ? lp : pointer);
            free(fp);
        }
        jv_free(f);
    }
    free(lp);
    jv_free(filters);
    jv until = get(def, "until");
    char *up = ptr_join(pointer, "until");
    if (jv_get_kind(until) == JV_KIND_STRING) {
        s->until_expr = always_expr(b, until, scope, up ? up : pointer);
    } else if (jv_get_kind(until) == JV_KIND_OBJECT) {
        s->until = calloc(1, sizeof *s->until);
        if (s->until)
            build_strategy(b, s->until, until, scope, up ? up : pointer);
        else
            b->failed = 1;
    }
    free(up);
    jv_free(until);
}

static void strategy_release(struct cv_strategy *s)
{
    for (int i = 0; i < s->n; i++) {
        struct cv_event_filter *f = &s->filters[i];
        jv_free(f->with);
        for (int k = 0; k < f->nexprs; k++)
            free(f->exprs[k].attr);
        free(f->exprs);
        for (int k = 0; k < f->ncorr; k++) {
            free(f->corr[k].key);
            tmpl_release(&f->corr[k].expect);
        }
        free(f->corr);
    }
    free(s->filters);
    if (s->until) {
        strategy_release(s->until);
        free(s->until);
    }
    memset(s, 0, sizeof *s);
}

/*
 * `listen`: the consumption strategy (its `${ }` filters, `correlate.*.from`
 * and `until` compiled here), the read mode, and the `foreach` tasks with
 * their item/at variables. Run by the engine's event bus (engine.c); the
 * interpreter matches events against it (interp.c).
 */
static void build_listen(struct builder *b, struct cv_task *t, jv def, const char *ref, jv scope)
{
    jv to = jv_getpath(jv_copy(def), JV_ARRAY(jv_string("listen"), jv_string("to")));
    if (jv_get_kind(to) != JV_KIND_OBJECT) {
        jv_free(to);
        to = jv_object();
    }
    char *tp = NULL;
    if (asprintf(&tp, "%s/listen/to", ref) < 0)
        tp = NULL;
    build_strategy(b, &t->u.listen.to, to, scope, tp ? tp : ref);
    free(tp);
    jv_free(to);
    jv read = jv_getpath(jv_copy(def), JV_ARRAY(jv_string("listen"), jv_string("read")));
    t->u.listen.read = CV_READ_DATA;
    if (jv_get_kind(read) == JV_KIND_STRING && !strcmp(jv_string_value(read), "envelope"))
        t->u.listen.read = CV_READ_ENVELOPE;
    else if (jv_get_kind(read) == JV_KIND_STRING && !strcmp(jv_string_value(read), "raw"))
        t->u.listen.read = CV_READ_RAW;
    jv_free(read);
    jv fe = get(def, "foreach");
    memset(&t->u.listen.foreach_output, 0, sizeof t->u.listen.foreach_output);
    memset(&t->u.listen.foreach_export, 0, sizeof t->u.listen.foreach_export);
    t->u.listen.foreach_output.expr.konst = jv_null();
    t->u.listen.foreach_output.expr.whole = -1;
    t->u.listen.foreach_output.schema = jv_null();
    t->u.listen.foreach_export.expr.konst = jv_null();
    t->u.listen.foreach_export.expr.whole = -1;
    t->u.listen.foreach_export.schema = jv_null();
    jv item = get(fe, "item"), at = get(fe, "at");
    t->u.listen.item = strdup(jv_get_kind(item) == JV_KIND_STRING ? jv_string_value(item) : "item");
    t->u.listen.at = strdup(jv_get_kind(at) == JV_KIND_STRING ? jv_string_value(at) : "index");
    if (!t->u.listen.item || !t->u.listen.at)
        b->failed = 1;
    if (jv_get_kind(fe) == JV_KIND_OBJECT) {
        jv s1 = scope_with(scope, t->u.listen.item ? t->u.listen.item : "item");
        jv inner = scope_with(s1, t->u.listen.at ? t->u.listen.at : "index");
        jv_free(s1);
        char *fp = ptr_join(ref, "foreach");
        jv list = get(fe, "do");
        if (jv_is_valid(list)) {
            char *dp = fp ? ptr_join(fp, "do") : NULL;
            t->u.listen.foreach_do = build_list(b, list, dp ? dp : ref, inner);
            free(dp);
        }
        jv_free(list);
        jv out = get(fe, "output"), exp = get(fe, "export");
        char *op = fp ? ptr_join(fp, "output") : NULL, *ep = fp ? ptr_join(fp, "export") : NULL;
        dataflow_init(b, &t->u.listen.foreach_output, out, "as", inner, op ? op : ref);
        dataflow_init(b, &t->u.listen.foreach_export, exp, "as", inner, ep ? ep : ref);
        free(op);
        free(ep);
        jv_free(out);
        jv_free(exp);
        free(fp);
        jv_free(inner);
    }
    jv_free(item);
    jv_free(at);
    jv_free(fe);
}

static struct cv_task *build_task(struct builder *b, const char *name, jv def /* borrowed */, const char *ref,
                                  jv scope, jv sibling_names, int index)
{
    struct cv_task *t = calloc(1, sizeof *t);
    if (!t) {
        b->failed = 1;
        return NULL;
    }
    t->name = strdup(name);
    t->ref = strdup(ref);
    index_ref(b, t->ref, 0, t);
    t->def = jv_copy(def);
    t->index = index;
    t->if_expr = -1;
    t->then_target = -1;
    char *p;

    jv v = get(def, "if");
    p = ptr_join(ref, "if");
    t->if_expr = always_expr(b, v, scope, p);
    free(p);
    jv_free(v);

    v = get(def, "input");
    p = ptr_join(ref, "input");
    dataflow_init(b, &t->input, v, "from", scope, p);
    free(p);
    jv_free(v);
    v = get(def, "output");
    p = ptr_join(ref, "output");
    dataflow_init(b, &t->output, v, "as", scope, p);
    free(p);
    jv_free(v);
    v = get(def, "export");
    p = ptr_join(ref, "export");
    dataflow_init(b, &t->exp, v, "as", scope, p);
    free(p);
    jv_free(v);
    v = get(def, "timeout");
    p = ptr_join(ref, "timeout");
    timeout_init(b, &t->timeout, v, scope, p);
    free(p);
    jv_free(v);
    v = get(def, "then");
    p = ptr_join(ref, "then");
    then_init(b, v, NULL, sibling_names, &t->then_kind, &t->then_target, p);
    free(p);
    jv_free(v);

    if (has(def, "call")) {
        t->kind_name = "call";
        build_call(b, t, def, ref, scope);
    } else if (has(def, "fork")) {
        t->kind_name = "fork";
        t->kind = CV_T_FORK;
        jv fork = get(def, "fork");
        jv br = get(fork, "branches");
        char *lp = ptr_join(ref, "fork");
        char *bp = lp ? ptr_join(lp, "branches") : NULL;
        t->u.fork.branches = build_list(b, br, bp ? bp : ref, scope);
        jv compete = get(fork, "compete");
        t->u.fork.compete = jv_get_kind(compete) == JV_KIND_TRUE;
        jv_free(compete);
        free(lp);
        free(bp);
        jv_free(br);
        jv_free(fork);
    } else if (has(def, "do") && !has(def, "for")) {
        t->kind_name = "do";
        t->kind = CV_T_DO;
        jv list = get(def, "do");
        p = ptr_join(ref, "do");
        t->u.do_.list = build_list(b, list, p, scope);
        free(p);
        jv_free(list);
    } else if (has(def, "emit")) {
        t->kind_name = "emit";
        t->kind = CV_T_EMIT;
        jv ev = jv_getpath(jv_copy(def), JV_ARRAY(jv_string("emit"), jv_string("event"), jv_string("with")));
        if (!jv_is_valid(ev) || jv_get_kind(ev) == JV_KIND_NULL) {
            jv_free(ev);
            ev = jv_object();
        }
        p = ptr_join(ref, "emit");
        tmpl_init(b, &t->u.emit.event, ev, scope, p);
        free(p);
        jv_free(ev);
    } else if (has(def, "for")) {
        t->kind_name = "for";
        t->kind = CV_T_FOR;
        jv f = get(def, "for");
        jv each = get(f, "each"), at = get(f, "at"), in = get(f, "in");
        t->u.for_.each = strdup(jv_get_kind(each) == JV_KIND_STRING ? jv_string_value(each) : "item");
        t->u.for_.at = strdup(jv_get_kind(at) == JV_KIND_STRING ? jv_string_value(at) : "index");
        p = ptr_join(ref, "for");
        char *ip = p ? ptr_join(p, "in") : NULL;
        t->u.for_.in_expr = always_expr(b, in, scope, ip ? ip : ref);
        if (t->u.for_.in_expr < 0)
            berr(b, ref, "for.in must be an expression", NULL);
        free(ip);
        free(p);
        jv with_each = scope_with(scope, t->u.for_.each);
        jv inner = scope_with(with_each, t->u.for_.at);
        jv_free(with_each);
        jv wh = get(def, "while");
        p = ptr_join(ref, "while");
        t->u.for_.while_expr = always_expr(b, wh, inner, p);
        free(p);
        jv_free(wh);
        jv body = get(def, "do");
        p = ptr_join(ref, "do");
        t->u.for_.body = build_list(b, body, p, inner);
        free(p);
        jv_free(body);
        jv_free(inner);
        jv_free(each);
        jv_free(at);
        jv_free(in);
        jv_free(f);
    } else if (has(def, "listen")) {
        t->kind_name = "listen";
        t->kind = CV_T_LISTEN;
        build_listen(b, t, def, ref, scope);
    } else if (has(def, "raise")) {
        t->kind_name = "raise";
        t->kind = CV_T_RAISE;
        jv err = jv_getpath(jv_copy(def), JV_ARRAY(jv_string("raise"), jv_string("error")));
        if (jv_get_kind(err) == JV_KIND_STRING) {
            jv errors = get(b->use, "errors");
            jv named = get(errors, jv_string_value(err));
            jv_free(errors);
            if (!jv_is_valid(named)) {
                berr(b, ref, "error '%s' is not defined in use.errors", jv_string_value(err));
                jv_free(named);
                named = jv_object();
            }
            jv_free(err);
            err = named;
        }
        p = ptr_join(ref, "raise");
        tmpl_init(b, &t->u.raise.error, err, scope, p);
        free(p);
        jv_free(err);
    } else if (has(def, "run")) {
        t->kind_name = "run";
        build_run(b, t, def, ref, scope);
    } else if (has(def, "set")) {
        t->kind_name = "set";
        t->kind = CV_T_SET;
        jv s = get(def, "set");
        p = ptr_join(ref, "set");
        if (jv_get_kind(s) == JV_KIND_STRING)
            tmpl_init_always(b, &t->u.set.value, s, scope, p);
        else
            tmpl_init(b, &t->u.set.value, s, scope, p);
        free(p);
        jv_free(s);
    } else if (has(def, "switch")) {
        t->kind_name = "switch";
        t->kind = CV_T_SWITCH;
        jv cases = get(def, "switch");
        int n = jv_get_kind(cases) == JV_KIND_ARRAY ? jv_array_length(jv_copy(cases)) : 0;
        t->u.sw.cases = calloc((size_t)(n ? n : 1), sizeof *t->u.sw.cases);
        t->u.sw.n = n;
        char *sp = ptr_join(ref, "switch");
        for (int i = 0; i < n && t->u.sw.cases; i++) {
            jv item = jv_array_get(jv_copy(cases), i);
            struct cv_switch_case *c = &t->u.sw.cases[i];
            c->when = -1;
            if (jv_get_kind(item) == JV_KIND_OBJECT && jv_object_length(jv_copy(item)) == 1) {
                int it = jv_object_iter(item);
                jv k = jv_object_iter_key(item, it);
                jv cdef = jv_object_iter_value(item, it);
                c->name = strdup(jv_string_value(k));
                char *ip = sp ? ptr_index(sp, i) : NULL;
                char *cp = ip ? ptr_join(ip, c->name) : NULL;
                char *wp = cp ? ptr_join(cp, "when") : NULL;
                char *tp = cp ? ptr_join(cp, "then") : NULL;
                jv when = get(cdef, "when");
                c->when = always_expr(b, when, scope, wp ? wp : ref);
                jv then = get(cdef, "then");
                then_init(b, then, NULL, sibling_names, &c->then_kind, &c->then_target, tp ? tp : ref);
                jv_free(when);
                jv_free(then);
                free(ip);
                free(cp);
                free(wp);
                free(tp);
                jv_free(k);
                jv_free(cdef);
            } else {
                c->name = strdup("?");
            }
            jv_free(item);
        }
        free(sp);
        jv_free(cases);
    } else if (has(def, "try")) {
        t->kind_name = "try";
        t->kind = CV_T_TRY;
        jv body = get(def, "try");
        p = ptr_join(ref, "try");
        t->u.try_.body = build_list(b, body, p, scope);
        free(p);
        jv_free(body);
        jv c = get(def, "catch");
        jv errs = get(c, "errors");
        jv with = get(errs, "with");
        t->u.try_.with = jv_is_valid(with) ? with : (jv_free(with), jv_null());
        jv_free(errs);
        jv as = get(c, "as");
        t->u.try_.as = strdup(jv_get_kind(as) == JV_KIND_STRING ? jv_string_value(as) : "error");
        jv_free(as);
        jv cscope = scope_with(scope, t->u.try_.as);
        char *cpt = ptr_join(ref, "catch");
        jv w = get(c, "when");
        p = cpt ? ptr_join(cpt, "when") : NULL;
        t->u.try_.when = always_expr(b, w, cscope, p ? p : ref);
        free(p);
        jv_free(w);
        w = get(c, "exceptWhen");
        p = cpt ? ptr_join(cpt, "exceptWhen") : NULL;
        t->u.try_.except_when = always_expr(b, w, cscope, p ? p : ref);
        free(p);
        jv_free(w);
        jv retry = get(c, "retry");
        p = cpt ? ptr_join(cpt, "retry") : NULL;
        retry_init(b, &t->u.try_.retry, retry, cscope, p ? p : ref);
        free(p);
        jv_free(retry);
        jv cdo = get(c, "do");
        if (jv_is_valid(cdo)) {
            p = cpt ? ptr_join(cpt, "do") : NULL;
            t->u.try_.catch_do = build_list(b, cdo, p ? p : ref, cscope);
            free(p);
        }
        jv_free(cdo);
        free(cpt);
        jv_free(cscope);
        jv_free(c);
    } else if (has(def, "wait")) {
        t->kind_name = "wait";
        t->kind = CV_T_WAIT;
        jv w = get(def, "wait");
        p = ptr_join(ref, "wait");
        duration_init(b, &t->u.wait.duration, w, scope, p);
        free(p);
        jv_free(w);
    } else {
        berr(b, ref, "task '%s' has no known task type", name);
        t->kind = CV_T_SET;
        t->kind_name = "set";
        t->u.set.value.konst = jv_null();
        t->u.set.value.whole = -1;
    }
    /* extensions that may apply to this task */
    for (int i = 0; i < b->wf->nextensions; i++) {
        const struct cv_extension *e = &b->wf->extensions[i];
        const char *k = t->kind_name;
        int composite = !strcmp(k, "do") || !strcmp(k, "fork") || !strcmp(k, "for") || !strcmp(k, "try");
        if (!strcmp(e->extend, "all") || !strcmp(e->extend, k) ||
            (composite && !strcmp(e->extend, "composite"))) {
            const struct cv_extension **n = realloc(t->exts, (size_t)(t->nexts + 1) * sizeof *n);
            if (n) {
                t->exts = n;
                t->exts[t->nexts++] = e;
            }
        }
    }
    return t;
}

static struct cv_tasklist *build_list(struct builder *b, jv items /* borrowed */, const char *ref, jv scope)
{
    struct cv_tasklist *l = calloc(1, sizeof *l);
    if (!l) {
        b->failed = 1;
        return NULL;
    }
    l->ref = strdup(ref ? ref : "");
    index_ref(b, l->ref, 1, l);
    if (jv_get_kind(items) != JV_KIND_ARRAY) {
        berr(b, ref, "expected a list of tasks", NULL);
        return l;
    }
    int n = jv_array_length(jv_copy(items));
    l->items = calloc((size_t)(n ? n : 1), sizeof *l->items);
    jv names = jv_array();
    for (int i = 0; i < n; i++) {
        jv item = jv_array_get(jv_copy(items), i);
        if (jv_get_kind(item) == JV_KIND_OBJECT && jv_object_length(jv_copy(item)) >= 1) {
            int it = jv_object_iter(item);
            names = jv_array_append(names, jv_object_iter_key(item, it));
        } else {
            names = jv_array_append(names, jv_string(""));
        }
        jv_free(item);
    }
    for (int i = 0; i < n && l->items; i++) {
        jv item = jv_array_get(jv_copy(items), i);
        if (jv_get_kind(item) != JV_KIND_OBJECT || jv_object_length(jv_copy(item)) != 1) {
            char *ip = ptr_index(ref, i);
            berr(b, ip ? ip : ref, "a task list item must hold exactly one named task", NULL);
            free(ip);
            jv_free(item);
            continue;
        }
        int it = jv_object_iter(item);
        jv k = jv_object_iter_key(item, it);
        jv def = jv_object_iter_value(item, it);
        char *ip = ptr_index(ref, i);
        char *tp = ip ? ptr_join(ip, jv_string_value(k)) : NULL;
        if (tp && jv_get_kind(def) == JV_KIND_OBJECT) {
            l->items[l->n] = build_task(b, jv_string_value(k), def, tp, scope, names, i);
            if (l->items[l->n])
                l->n++;
        } else {
            berr(b, tp ? tp : ref, "task '%s' must be an object", jv_string_value(k));
        }
        free(ip);
        free(tp);
        jv_free(k);
        jv_free(def);
        jv_free(item);
    }
    jv_free(names);
    return l;
}

/* ---- the workflow --------------------------------------------------------------- */

static void free_task(struct cv_task *t);

static void free_list(struct cv_tasklist *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++)
        free_task(l->items[i]);
    free(l->items);
    free(l->ref);
    free(l);
}

static void free_task(struct cv_task *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->ref);
    jv_free(t->def);
    dataflow_release(&t->input);
    dataflow_release(&t->output);
    dataflow_release(&t->exp);
    free(t->exts);
    switch (t->kind) {
    case CV_T_DO:
        free_list(t->u.do_.list);
        break;
    case CV_T_SET:
        tmpl_release(&t->u.set.value);
        break;
    case CV_T_SWITCH:
        for (int i = 0; i < t->u.sw.n; i++)
            free(t->u.sw.cases[i].name);
        free(t->u.sw.cases);
        break;
    case CV_T_FOR:
        free(t->u.for_.each);
        free(t->u.for_.at);
        free_list(t->u.for_.body);
        break;
    case CV_T_FORK:
        free_list(t->u.fork.branches);
        break;
    case CV_T_TRY:
        free_list(t->u.try_.body);
        free_list(t->u.try_.catch_do);
        jv_free(t->u.try_.with);
        free(t->u.try_.as);
        break;
    case CV_T_RAISE:
        tmpl_release(&t->u.raise.error);
        break;
    case CV_T_EMIT:
        tmpl_release(&t->u.emit.event);
        break;
    case CV_T_LISTEN:
        strategy_release(&t->u.listen.to);
        free(t->u.listen.item);
        free(t->u.listen.at);
        free_list(t->u.listen.foreach_do);
        dataflow_release(&t->u.listen.foreach_output);
        dataflow_release(&t->u.listen.foreach_export);
        break;
    case CV_T_CALL_HTTP:
    case CV_T_CALL_OPENAPI:
    case CV_T_CALL_FUNCTION:
    case CV_T_CALL_REMOTE:
        free(t->u.effect.locator);
        tmpl_release(&t->u.effect.args);
        break;
    case CV_T_CALL_CATALOG:
        free_task(t->u.effect.wait);
        tmpl_release(&t->u.effect.args);
        break;
    case CV_T_CALL_UNSUPPORTED:
    case CV_T_RUN_PROCESS:
    case CV_T_RUN_WORKFLOW:
    case CV_T_RUN_CONTAINER:
        tmpl_release(&t->u.effect.args);
        break;
    default:
        break;
    }
    free(t);
}

void cv__workflow_release(struct cv_workflow *wf)
{
    if (wf->schedule.has_on)
        strategy_release(&wf->schedule.on);
    free_list(wf->root);
    for (int i = 0; i < wf->nfunctions; i++)
        free_task(wf->functions[i]);
    free(wf->functions);
    for (int i = 0; i < wf->nextensions; i++) {
        free(wf->extensions[i].name);
        free(wf->extensions[i].extend);
        free_list(wf->extensions[i].before);
        free_list(wf->extensions[i].after);
    }
    free(wf->extensions);
    dataflow_release(&wf->input);
    dataflow_release(&wf->output);
    jv_free(wf->secret_names);
    jv_free(wf->ref_index);
    free(wf->refs);
    cv__exprset_free(wf->exprs);
}

/* `schedule`: every / after (durations), cron (five fields, UTC), on (a
 * consumption strategy, its expressions compiled with the workflow's). */
static void build_schedule(struct builder *b, struct cv_schedule *sc, jv def /* borrowed */, jv scope)
{
    static const char *const durs[] = {"every", "after"};
    sc->set = 1;
    for (int i = 0; i < 2; i++) {
        jv d = get(def, durs[i]);
        if (jv_is_valid(d)) {
            int64_t ms = 0;
            const char *why = NULL;
            char ptr[32];
            snprintf(ptr, sizeof ptr, "/schedule/%s", durs[i]);
            if (cv__duration_ms(d, &ms, &why) || ms < 1)
                berr(b, ptr, "%s", why ? why : "the duration must be at least 1 ms");
            else if (i == 0)
                sc->every_ms = ms;
            else
                sc->after_ms = ms;
        }
        jv_free(d);
    }
    jv cron = get(def, "cron");
    if (jv_get_kind(cron) == JV_KIND_STRING) {
        const char *why = NULL;
        if (cv__cron_parse(jv_string_value(cron), &sc->cron, &why))
            berr(b, "/schedule/cron", "%s", why);
        else
            sc->has_cron = 1;
    }
    jv_free(cron);
    jv on = get(def, "on");
    if (jv_get_kind(on) == JV_KIND_OBJECT) {
        build_strategy(b, &sc->on, on, scope, "/schedule/on");
        sc->has_on = 1;
    }
    jv_free(on);
}

int cv__workflow_build(struct cv_workflow *wf, jv *errors)
{
    struct builder b = {.wf = wf, .errors = errors};
    wf->ref_index = jv_object();
    wf->exprs = cv__exprset_new();
    if (!wf->exprs)
        return CV_ENOMEM;
    b.use = get(wf->doc, "use");
    jv ev = get(wf->doc, "evaluate");
    jv mode = get(ev, "mode");
    wf->loose = jv_get_kind(mode) == JV_KIND_STRING && !strcmp(jv_string_value(mode), "loose");
    jv_free(mode);
    jv_free(ev);
    jv scope = jv_array();

    wf->secret_names = get(b.use, "secrets");
    if (!jv_is_valid(wf->secret_names)) {
        jv_free(wf->secret_names);
        wf->secret_names = jv_array();
    }

    /* extensions first: tasks record which ones may apply to them */
    jv exts = get(b.use, "extensions");
    if (jv_get_kind(exts) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(exts));
        wf->extensions = calloc((size_t)(n ? n : 1), sizeof *wf->extensions);
        for (int i = 0; i < n && wf->extensions; i++) {
            jv item = jv_array_get(jv_copy(exts), i);
            if (jv_get_kind(item) != JV_KIND_OBJECT || jv_object_length(jv_copy(item)) != 1) {
                jv_free(item);
                continue;
            }
            int it = jv_object_iter(item);
            jv k = jv_object_iter_key(item, it), def = jv_object_iter_value(item, it);
            struct cv_extension *e = &wf->extensions[wf->nextensions];
            char ref[256];
            snprintf(ref, sizeof ref, "/use/extensions/%d/%s", i, jv_string_value(k));
            e->name = strdup(jv_string_value(k));
            jv extend = get(def, "extend");
            e->extend = strdup(jv_get_kind(extend) == JV_KIND_STRING ? jv_string_value(extend) : "all");
            jv_free(extend);
            jv when = get(def, "when");
            char *wp = ptr_join(ref, "when");
            e->when = always_expr(&b, when, scope, wp ? wp : ref);
            free(wp);
            jv_free(when);
            jv before = get(def, "before"), after = get(def, "after");
            char *bp = ptr_join(ref, "before"), *ap = ptr_join(ref, "after");
            if (jv_is_valid(before))
                e->before = build_list(&b, before, bp ? bp : ref, scope);
            if (jv_is_valid(after))
                e->after = build_list(&b, after, ap ? ap : ref, scope);
            free(bp);
            free(ap);
            jv_free(before);
            jv_free(after);
            wf->nextensions++;
            jv_free(k);
            jv_free(def);
            jv_free(item);
        }
    }
    jv_free(exts);

    /* functions: built before the tasks that call them */
    jv fns = get(b.use, "functions");
    if (jv_get_kind(fns) == JV_KIND_OBJECT) {
        int n = jv_object_length(jv_copy(fns));
        wf->functions = calloc((size_t)(n ? n : 1), sizeof *wf->functions);
        jv_object_foreach(fns, k, def)
        {
            char *ref = ptr_join("/use/functions", jv_string_value(k));
            if (jv_get_kind(def) == JV_KIND_OBJECT && ref && wf->functions) {
                jv no_siblings = jv_array(); /* a function body has no flow targets */
                struct cv_task *t = build_task(&b, jv_string_value(k), def, ref, scope, no_siblings, 0);
                jv_free(no_siblings);
                if (t)
                    wf->functions[wf->nfunctions++] = t;
            }
            free(ref);
            jv_free(k);
            jv_free(def);
        }
    }
    jv_free(fns);

    jv in = get(wf->doc, "input");
    dataflow_init(&b, &wf->input, in, "from", scope, "/input");
    jv_free(in);
    jv out = get(wf->doc, "output");
    dataflow_init(&b, &wf->output, out, "as", scope, "/output");
    jv_free(out);
    jv to = get(wf->doc, "timeout");
    timeout_init(&b, &wf->timeout, to, scope, "/timeout");
    jv_free(to);
    jv sched = get(wf->doc, "schedule");
    if (jv_get_kind(sched) == JV_KIND_OBJECT)
        build_schedule(&b, &wf->schedule, sched, scope);
    jv_free(sched);

    jv doit = get(wf->doc, "do");
    wf->root = build_list(&b, doit, "/do", scope);
    jv_free(doit);
    jv_free(scope);
    jv_free(b.use);

    if (b.failed)
        return CV_EVALIDATE;
    return cv__exprset_compile(wf->exprs, errors);
}
