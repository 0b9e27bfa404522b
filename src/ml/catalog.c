/*
 * catalog.c — the default catalog's model functions (catalog.h).
 */
#include "ml/catalog.h"

#include "common/util.h"
#include "conveyor.h"
#include "effects/effects.h"
#include "ml/extract.h"
#include "ml/ml.h"
#include "ml/tabular.h"
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct loaded {
    char *name;
    int64_t version;
    struct cv_text_model *text; /* one of the two */
    struct cv_tab_model *tab;
};

struct cv_models {
    struct cv_store *st;
    pthread_mutex_t mu;
    struct loaded *v;
    int n, cap;
};

static const char *const functions[] = {"classify", "extract", "score"};

const char *cv__catalog_function(const char *name)
{
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
        if (!strcmp(name, functions[i]))
            return functions[i];
    return NULL;
}

struct cv_models *cv__models_new(struct cv_store *st)
{
    struct cv_models *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL)) {
        free(m);
        return NULL;
    }
    m->st = st;
    return m;
}

void cv__models_free(struct cv_models *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++) {
        free(m->v[i].name);
        cv_text_model_free(m->v[i].text);
        cv_tab_model_free(m->v[i].tab);
    }
    free(m->v);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int fail(jv *out, const char *type, int status, const char *title, const char *fmt, const char *arg)
{
    *out = cv__error_newf(type, status, title, fmt, arg ? arg : "");
    return CV_EFAULT;
}

/* The model `ref` (NAME or NAME@VERSION) of kind `want_kind` ("text" or
 * "tabular"): *text or *tab is set, `full` = "name@version" resolved. */
static int model_get(struct cv_models *m, const char *ref, const char *want_kind, struct cv_text_model **textm,
                     struct cv_tab_model **tabm, char full[300], jv *out)
{
    char name[256];
    int64_t want = 0;
    const char *at = strchr(ref, '@');
    snprintf(name, sizeof name, "%.*s", at ? (int)(at - ref) : (int)strlen(ref), ref);
    if (at) {
        char *end;
        long long v = strtoll(at + 1, &end, 10);
        if (*end || v < 1)
            return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Model Reference",
                        "'%s' is not NAME or NAME@VERSION (a positive version)", ref);
        want = v;
    }
    if (!name[0])
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Model Reference", "a model needs a name%s", "");
    /* which version: the store says (a bare name is its production version) */
    jv card = jv_invalid(), err = jv_invalid();
    void *bytes = NULL;
    size_t len = 0;
    int rc = cv_store_get_model(m->st, name, want, &card, NULL, NULL, &err);
    if (rc == CV_ENOTFOUND) {
        jv_free(err);
        return fail(out, CV_ERR_CONFIGURATION, 404, "Model Not Found", "no model '%s' in the store", ref);
    }
    if (rc) { /* the store itself failed (busy, I/O): not the workflow's fault */
        jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string(cv_strerror(rc)));
        char msg[512];
        snprintf(msg, sizeof msg, "model '%s': the store could not be read: %s", ref, jv_string_value(d));
        jv_free(d);
        return fail(out, CV_ERR_RUNTIME, 503, "Model Store Unavailable", "%s", msg);
    }
    jv_free(err);
    jv ver = jv_object_get(jv_copy(card), jv_string("version"));
    jv status = jv_object_get(jv_copy(card), jv_string("status"));
    jv kind = jv_object_get(card, jv_string("kind"));
    int64_t v = jv_get_kind(ver) == JV_KIND_NUMBER ? (int64_t)jv_number_value(ver) : 0;
    int retired = jv_get_kind(status) == JV_KIND_STRING && !strcmp(jv_string_value(status), "retired");
    int right = jv_get_kind(kind) == JV_KIND_STRING && !strcmp(jv_string_value(kind), want_kind);
    jv_free(ver);
    jv_free(status);
    jv_free(kind);
    if (retired)
        return fail(out, CV_ERR_CONFIGURATION, 404, "Model Retired",
                    "model '%s' is retired: name another version, or promote one", ref);
    if (!right)
        return fail(out, CV_ERR_CONFIGURATION, 400, "Wrong Model Kind",
                    !strcmp(want_kind, "text") ? "model '%s' is not a text classifier (classify needs one)"
                                               : "model '%s' is not a tabular scorer (score needs one)",
                    ref);
    snprintf(full, 300, "%s@%lld", name, (long long)v);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n; i++)
        if (m->v[i].version == v && !strcmp(m->v[i].name, name)) {
            *textm = m->v[i].text;
            *tabm = m->v[i].tab;
            pthread_mutex_unlock(&m->mu);
            return 0;
        }
    pthread_mutex_unlock(&m->mu);
    /* not loaded yet: read and load it (outside the lock), then keep it */
    err = jv_invalid();
    card = jv_invalid();
    rc = cv_store_get_model(m->st, name, v, &card, &bytes, &len, &err);
    jv_free(card);
    struct cv_text_model *tm = NULL;
    struct cv_tab_model *bm = NULL;
    if (!rc)
        rc = !strcmp(want_kind, "text") ? cv_text_model_load(bytes, len, &tm, &err)
                                         : cv_tab_model_load(bytes, len, &bm, &err);
    free(bytes);
    if (rc) {
        jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string("cannot be read"));
        char msg[512];
        snprintf(msg, sizeof msg, "model '%s@%lld': %s", name, (long long)v, jv_string_value(d));
        jv_free(d);
        return fail(out, CV_ERR_RUNTIME, 500, "Model Not Loaded", "%s", msg);
    }
    jv_free(err);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n; i++)
        if (m->v[i].version == v && !strcmp(m->v[i].name, name)) { /* another thread was first */
            cv_text_model_free(tm);
            cv_tab_model_free(bm);
            *textm = m->v[i].text;
            *tabm = m->v[i].tab;
            pthread_mutex_unlock(&m->mu);
            return 0;
        }
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        struct loaded *nv = realloc(m->v, (size_t)cap * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&m->mu);
            cv_text_model_free(tm);
            cv_tab_model_free(bm);
            return CV_ENOMEM;
        }
        m->v = nv;
        m->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        pthread_mutex_unlock(&m->mu);
        cv_text_model_free(tm);
        cv_tab_model_free(bm);
        return CV_ENOMEM;
    }
    m->v[m->n++] = (struct loaded){copy, v, tm, bm};
    *textm = tm;
    *tabm = bm;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int classify(struct cv_models *m, jv args, jv *out)
{
    jv model = jv_object_get(jv_copy(args), jv_string("model"));
    jv text = jv_object_get(jv_copy(args), jv_string("text"));
    int rc;
    if (jv_get_kind(model) != JV_KIND_STRING) {
        rc = fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "classify needs `model`: a model name%s",
                  "");
        goto out;
    }
    if (jv_get_kind(text) != JV_KIND_STRING) {
        rc = fail(out, CV_ERR_VALIDATION, 400, "Invalid Arguments", "classify needs `text`: a string%s", "");
        goto out;
    }
    const char *t = jv_string_value(text);
    size_t len = (size_t)jv_string_length_bytes(jv_copy(text));
    size_t k = 0;
    while (k < len && (t[k] == ' ' || t[k] == '\t' || t[k] == '\n' || t[k] == '\r'))
        k++;
    if (k == len) {
        rc = fail(out, CV_ERR_VALIDATION, 400, "Empty Text", "classify was given an empty text%s", "");
        goto out;
    }
    struct cv_text_model *tm = NULL;
    struct cv_tab_model *unused = NULL;
    char full[300];
    rc = model_get(m, jv_string_value(model), "text", &tm, &unused, full, out);
    if (rc)
        goto out;
    int nc = cv_text_model_classes(tm);
    double *probs = calloc((size_t)nc, sizeof *probs);
    struct cv_text_scratch *s = cv_text_scratch_new();
    if (!probs || !s || cv_text_model_predict(tm, t, len, s, probs) < 0) {
        free(probs);
        cv_text_scratch_free(s);
        rc = CV_ENOMEM;
        goto out;
    }
    jv r = cv_text_prediction_json(tm, probs);
    free(probs);
    cv_text_scratch_free(s);
    *out = jv_object_set(r, jv_string("model"), jv_string(full));
    rc = 0;
out:
    jv_free(model);
    jv_free(text);
    return rc;
}

static int score(struct cv_models *m, jv args, jv *out)
{
    jv model = jv_object_get(jv_copy(args), jv_string("model"));
    jv features = jv_object_get(jv_copy(args), jv_string("features"));
    jv top = jv_object_get(jv_copy(args), jv_string("top"));
    int rc;
    if (jv_get_kind(model) != JV_KIND_STRING) {
        rc = fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "score needs `model`: a model name%s", "");
        goto out;
    }
    if (jv_get_kind(features) != JV_KIND_OBJECT) {
        rc = fail(out, CV_ERR_VALIDATION, 400, "Invalid Arguments", "score needs `features`: an object%s", "");
        goto out;
    }
    struct cv_text_model *unused = NULL;
    struct cv_tab_model *bm = NULL;
    char full[300];
    rc = model_get(m, jv_string_value(model), "tabular", &unused, &bm, full, out);
    if (rc)
        goto out;
    jv r = jv_invalid(), err = jv_invalid();
    int ntop = jv_get_kind(top) == JV_KIND_NUMBER ? (int)jv_number_value(top) : 5;
    rc = cv_tab_model_score(bm, jv_copy(features), ntop, &r, NULL, &err);
    if (rc == CV_ENOMEM) {
        jv_free(err);
        goto out;
    }
    if (rc) {
        jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string("the features do not fit"));
        *out = cv__error_newf(CV_ERR_VALIDATION, 400, "Invalid Features", "%s", jv_string_value(d));
        jv_free(d);
        rc = CV_EFAULT;
        goto out;
    }
    jv_free(err);
    *out = jv_object_set(r, jv_string("model"), jv_string(full));
    rc = 0;
out:
    jv_free(model);
    jv_free(features);
    jv_free(top);
    return rc;
}

/* What the history keeps of a prediction (out borrowed). */
static int catalog_run(struct cv_models *m, const char *fn, jv args, jv *out);

static jv note_of(const char *fn, jv args, jv out, double ms)
{
    jv text = jv_dump_string(jv_copy(args), JV_PRINT_SORTED);
    char hex[65];
    cv_ml_sha256_hex(jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)), hex);
    jv_free(text);
    jv o = jv_object();
    const char *keep[] = {"label", "confidence", "score", "missing"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        jv v = jv_object_get(jv_copy(out), jv_string(keep[i]));
        if (jv_is_valid(v))
            o = jv_object_set(o, jv_string(keep[i]), v);
        else
            jv_free(v);
    }
    jv model = jv_object_get(jv_copy(out), jv_string("model"));
    if (!jv_is_valid(model)) { /* extract: patterns, no model */
        jv_free(model);
        model = jv_null();
    }
    return JV_OBJECT(jv_string("function"), jv_string(fn), jv_string("model"), model, jv_string("inputDigest"),
                     jv_string(hex),
                     jv_string("output"), o, jv_string("latencyMs"), jv_number(ms));
}

int cv__catalog_call(struct cv_models *m, const char *fn, jv args, jv *out, jv *note)
{
    *out = jv_null();
    if (note)
        *note = jv_invalid();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = catalog_run(m, fn, args, out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc && note)
        *note = note_of(fn, args, *out,
                        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return rc;
}

/* extract: {fields: [...] | an extractor definition, text} (docs/extract.md) */
static int extract(jv args, jv *out)
{
    if (jv_object_has(jv_copy(args), jv_string("model")) && !jv_object_has(jv_copy(args), jv_string("fields")))
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments",
                    "extract takes its fields inline (`fields` or a definition); stored extractors by name are not "
                    "supported yet%s",
                    "");
    jv r = cv__extract_call(jv_copy(args));
    if (jv_is_valid(r)) {
        *out = r;
        return 0;
    }
    jv e = jv_invalid_get_msg(r);
    if (jv_get_kind(e) == JV_KIND_OBJECT) {
        *out = e;
        return CV_EFAULT;
    }
    jv_free(e);
    return CV_ENOMEM;
}

static int catalog_run(struct cv_models *m, const char *fn, jv args, jv *out)
{
    if (jv_get_kind(args) != JV_KIND_OBJECT)
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "%s needs a `with` object", fn);
    if (!strcmp(fn, "extract")) /* patterns, no model: needs no store */
        return extract(args, out);
    if (!m)
        return fail(out, CV_ERR_CONFIGURATION, 404, "No Model Store",
                    "%s needs models, and this process has no store to read them from", fn);
    if (!strcmp(fn, "classify"))
        return classify(m, args, out);
    if (!strcmp(fn, "score"))
        return score(m, args, out);
    return fail(out, CV_ERR_CONFIGURATION, 400, "Unknown Function", "'%s' is not in the default catalog", fn);
}
