/*
 * catalog.c — the default catalog's model functions (catalog.h): which
 * version of a model a call uses (production, canary, shadow; the resolution
 * cache), the loaded models (text classifiers, tabular scorers, stored
 * extractors), the predictions and their metrics.
 *
 * Nothing here writes the store; the registry's changes arrive through it
 * (cv_store_model_changes for this process, cv_store_model_generation for
 * the others) and only invalidate the cache.
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
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a resolution is trusted before the store's registry generation
 * is read again (changes made by another process, e.g. `conveyor model
 * promote --db` on the server's file, are seen within this). Changes made
 * through this process's store handle are seen at once. */
#define RESOLVE_TTL_MS 1000
/* Metrics: at most this many labels per model version are counted by name
 * (the rest under label="other"), and this many versions get series. */
#define METRIC_LABELS_MAX 32
#define METRIC_VERSIONS_MAX 64

const double cv__model_confidence_buckets[CV_MODEL_CONF_BUCKETS] = {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1};
const double cv__model_latency_buckets_s[CV_MODEL_LAT_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                                   0.0025,  0.005,  0.01,    0.025,  0.1, 1};

/* One version of a model, loaded: never freed before the cache (a pointer
 * to it stays valid while predictions use it), and its counters. */
struct loaded {
    char *name;
    int64_t version;
    struct cv_text_model *text; /* one of the three */
    struct cv_tab_model *tab;
    cv_extractor *ext;
    int nlabels;               /* labels counted by name: min(classes, METRIC_LABELS_MAX) */
    atomic_llong *by_label;    /* [nlabels + 1]: the last is "other" */
    atomic_llong conf[CV_MODEL_CONF_BUCKETS + 1];
    atomic_llong conf_sum_ppm; /* sum of confidences, in millionths */
    atomic_llong lat[CV_MODEL_LAT_BUCKETS + 1];
    atomic_llong lat_sum_ns;
};

/* What a reference (NAME or NAME@VERSION, as written) resolves to, cached. */
struct route {
    char *ref;
    char name[160];
    int64_t version; /* production (or newest not retired) for a bare NAME */
    char kind[33];
    int retired;
    int64_t canary; /* bare NAME only; 0 = none */
    double share;
    int64_t shadow; /* bare NAME only; 0 = none */
};

struct cv_models {
    struct cv_store *st;
    pthread_mutex_t mu; /* guards everything below but the counters */
    struct loaded **v;
    int n, cap;
    struct route *r;
    int nr, capr;
    long long changes_seen; /* cv_store_model_changes when last compared */
    int64_t gen_seen;       /* the store's registry generation when last read (-1: never) */
    int64_t next_check_ms;  /* when to read it again (monotonic) */
    long long epoch;        /* bumped by every flush: a resolution read before one is not kept */
    atomic_llong store_reads; /* resolutions that read the store (cv__models_store_reads) */
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
    m->gen_seen = -1;
    m->changes_seen = cv_store_model_changes(st);
    return m;
}

static void loaded_free(struct loaded *l)
{
    if (!l)
        return;
    free(l->name);
    cv_text_model_free(l->text);
    cv_tab_model_free(l->tab);
    cv__extractor_free(l->ext);
    free(l->by_label);
    free(l);
}

static void flush_locked(struct cv_models *m)
{
    for (int i = 0; i < m->nr; i++)
        free(m->r[i].ref);
    m->nr = 0;
    m->epoch++;
}

void cv__models_free(struct cv_models *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        loaded_free(m->v[i]);
    free(m->v);
    flush_locked(m);
    free(m->r);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

long long cv__models_store_reads(struct cv_models *m)
{
    return m ? atomic_load(&m->store_reads) : 0;
}

static int fail(jv *out, const char *type, int status, const char *title, const char *fmt, const char *arg)
{
    *out = cv__error_newf(type, status, title, fmt, arg ? arg : "");
    return CV_EFAULT;
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* A store failure (busy, I/O) as the workflow sees it: not its fault (503).
 * err consumed. */
static int store_failed(jv *out, const char *ref, int rc, jv err)
{
    jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string(cv_strerror(rc)));
    char msg[512];
    snprintf(msg, sizeof msg, "model '%s': the store could not be read: %s", ref, jv_string_value(d));
    jv_free(d);
    return fail(out, CV_ERR_RUNTIME, 503, "Model Store Unavailable", "%s", msg);
}

/* ------------------------------------------------------------------------ */
/* Resolution: which version a reference means, cached                       */
/* ------------------------------------------------------------------------ */

/*
 * Drops the cached resolutions when the registry changed: at once for a
 * change made through this process's store handle (an atomic read), and,
 * once per RESOLVE_TTL_MS, by reading the store's registry generation
 * (changes made by other processes).
 */
static void check_fresh(struct cv_models *m)
{
    long long ch = cv_store_model_changes(m->st);
    int64_t now = mono_ns() / 1000000;
    pthread_mutex_lock(&m->mu);
    if (ch != m->changes_seen) {
        flush_locked(m);
        m->changes_seen = ch;
    }
    int due = now >= m->next_check_ms;
    if (due) /* one caller reads; the others trust the cache meanwhile */
        m->next_check_ms = now + RESOLVE_TTL_MS;
    pthread_mutex_unlock(&m->mu);
    if (!due)
        return;
    int64_t g = 0;
    jv err = jv_invalid();
    int rc = cv_store_model_generation(m->st, &g, &err);
    jv_free(err);
    pthread_mutex_lock(&m->mu);
    if (rc) {
        m->next_check_ms = 0; /* read it again on the next call */
    } else if (g != m->gen_seen) {
        flush_locked(m);
        m->gen_seen = g;
    }
    pthread_mutex_unlock(&m->mu);
}

/*
 * *r = what `ref` (NAME, or NAME@VERSION when want > 0) resolves to: from
 * the cache, else from the store (kept unless the cache was flushed
 * meanwhile). r->ref is left NULL. Returns 0, or CV_EFAULT with *out = the
 * error descriptor (unknown model: 404; the store failed: 503).
 */
static int resolve(struct cv_models *m, const char *ref, const char *name, int64_t want, struct route *r, jv *out)
{
    check_fresh(m);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nr; i++)
        if (!strcmp(m->r[i].ref, ref)) {
            *r = m->r[i];
            r->ref = NULL;
            pthread_mutex_unlock(&m->mu);
            return 0;
        }
    long long epoch = m->epoch;
    pthread_mutex_unlock(&m->mu);

    atomic_fetch_add(&m->store_reads, 1);
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    jv card = jv_invalid(), err = jv_invalid();
    int rc = cv_store_get_model(m->st, name, want, &card, NULL, NULL, &err);
    if (rc == CV_ENOTFOUND) {
        jv_free(err);
        return fail(out, CV_ERR_CONFIGURATION, 404, "Model Not Found", "no model '%s' in the store", ref);
    }
    if (rc)
        return store_failed(out, ref, rc, err);
    jv_free(err);
    jv ver = jv_object_get(jv_copy(card), jv_string("version"));
    jv status = jv_object_get(jv_copy(card), jv_string("status"));
    jv kind = jv_object_get(card, jv_string("kind"));
    r->version = jv_get_kind(ver) == JV_KIND_NUMBER ? (int64_t)jv_number_value(ver) : 0;
    r->retired = jv_get_kind(status) == JV_KIND_STRING && !strcmp(jv_string_value(status), CV_MODEL_RETIRED);
    snprintf(r->kind, sizeof r->kind, "%s", jv_get_kind(kind) == JV_KIND_STRING ? jv_string_value(kind) : "");
    jv_free(ver);
    jv_free(status);
    jv_free(kind);
    if (!want) { /* a bare NAME: its canary and shadow too */
        jv routing = jv_invalid();
        err = jv_invalid();
        rc = cv_store_get_model_routing(m->st, name, &routing, &err);
        if (rc == CV_ENOTFOUND) { /* retired or gone meanwhile: no routing */
            jv_free(err);
        } else if (rc) {
            return store_failed(out, ref, rc, err);
        } else {
            jv_free(err);
            jv c = jv_object_get(jv_copy(routing), jv_string("canary"));
            jv s = jv_object_get(routing, jv_string("shadow"));
            if (jv_get_kind(c) == JV_KIND_OBJECT) {
                jv v = jv_object_get(jv_copy(c), jv_string("version")), sh = jv_object_get(jv_copy(c), jv_string("share"));
                r->canary = (int64_t)jv_number_value(v);
                r->share = jv_number_value(sh);
                jv_free(v);
                jv_free(sh);
            }
            if (jv_get_kind(s) == JV_KIND_OBJECT) {
                jv v = jv_object_get(jv_copy(s), jv_string("version"));
                r->shadow = (int64_t)jv_number_value(v);
                jv_free(v);
            }
            jv_free(c);
            jv_free(s);
        }
    }
    pthread_mutex_lock(&m->mu);
    if (m->epoch == epoch) { /* nothing changed since the read began: keep it */
        if (m->nr == m->capr) {
            int cap = m->capr ? m->capr * 2 : 8;
            struct route *nr = realloc(m->r, (size_t)cap * sizeof *nr);
            if (nr) {
                m->r = nr;
                m->capr = cap;
            }
        }
        char *copy = m->nr < m->capr ? strdup(ref) : NULL;
        if (copy) { /* out of memory: not cached, still answered */
            m->r[m->nr] = *r;
            m->r[m->nr++].ref = copy;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* Where instance `instance` falls in [0, 1) for model `name`: a hash of
 * both (FNV-1a, then the splitmix64 finalizer), so that one instance always
 * gets the same answer, and different models split the instances
 * independently. */
double cv__model_instance_point(const char *name, const char *instance)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL; /* a byte no name has: "ab"+"c" differs from "a"+"bc" */
    for (const unsigned char *p = (const unsigned char *)instance; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (double)(h >> 11) * 0x1p-53;
}

/* ------------------------------------------------------------------------ */
/* Loaded models                                                             */
/* ------------------------------------------------------------------------ */

static struct loaded *find_loaded_locked(struct cv_models *m, const char *name, int64_t v)
{
    for (int i = 0; i < m->n; i++)
        if (m->v[i]->version == v && !strcmp(m->v[i]->name, name))
            return m->v[i];
    return NULL;
}

/*
 * *l = version v of model `name`, loaded (read from the store once, then
 * kept). Returns 0, CV_ENOMEM, or CV_EFAULT with *out = an error descriptor
 * (not in the store, a kind that predicts nothing, a file that does not
 * load).
 */
static int load(struct cv_models *m, const char *name, int64_t v, struct loaded **l, jv *out)
{
    char ref[200];
    snprintf(ref, sizeof ref, "%s@%lld", name, (long long)v);
    pthread_mutex_lock(&m->mu);
    *l = find_loaded_locked(m, name, v);
    pthread_mutex_unlock(&m->mu);
    if (*l)
        return 0;
    /* not loaded yet: read and load it (outside the lock), then keep it */
    jv card = jv_invalid(), err = jv_invalid();
    void *bytes = NULL;
    size_t len = 0;
    int rc = cv_store_get_model(m->st, name, v, &card, &bytes, &len, &err);
    if (rc == CV_ENOTFOUND) {
        jv_free(err);
        return fail(out, CV_ERR_CONFIGURATION, 404, "Model Not Found", "no model '%s' in the store", ref);
    }
    if (rc)
        return store_failed(out, ref, rc, err);
    jv kind = jv_object_get(card, jv_string("kind"));
    const char *k = jv_get_kind(kind) == JV_KIND_STRING ? jv_string_value(kind) : "";
    if (strcmp(k, "text") && strcmp(k, "tabular") && strcmp(k, "extractor")) {
        char msg[300];
        snprintf(msg, sizeof msg, "model '%s' is of kind '%s': it does not predict", ref, k);
        jv_free(kind);
        jv_free(err);
        free(bytes);
        return fail(out, CV_ERR_CONFIGURATION, 400, "Wrong Model Kind", "%s", msg);
    }
    struct loaded *n = calloc(1, sizeof *n);
    if (!n) {
        jv_free(kind);
        free(bytes);
        jv_free(err);
        return CV_ENOMEM;
    }
    if (!strcmp(k, "extractor")) {
        /* checked when it was stored; compiled again here (its regexes) */
        rc = cv__extractor_load(bytes, len, ref, &n->ext, &err);
        if (rc && jv_get_kind(err) == JV_KIND_OBJECT) { /* keep only the located message */
            jv d = jv_object_get(err, jv_string("detail"));
            err = d;
        }
    } else {
        rc = !strcmp(k, "text") ? cv_text_model_load(bytes, len, &n->text, &err)
                                : cv_tab_model_load(bytes, len, &n->tab, &err);
    }
    free(bytes);
    jv_free(kind);
    if (rc) {
        loaded_free(n);
        jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string("cannot be read"));
        char msg[512];
        snprintf(msg, sizeof msg, "model '%s': %s", ref, jv_string_value(d));
        jv_free(d);
        return fail(out, CV_ERR_RUNTIME, 500, "Model Not Loaded", "%s", msg);
    }
    jv_free(err);
    /* an extractor's "labels" are complete / incomplete (a required field missing) */
    int classes = n->text ? cv_text_model_classes(n->text) : 2;
    n->nlabels = classes < METRIC_LABELS_MAX ? classes : METRIC_LABELS_MAX;
    n->by_label = calloc((size_t)n->nlabels + 1, sizeof *n->by_label);
    n->name = strdup(name);
    n->version = v;
    if (!n->by_label || !n->name) {
        loaded_free(n);
        return CV_ENOMEM;
    }
    pthread_mutex_lock(&m->mu);
    struct loaded *first = find_loaded_locked(m, name, v);
    if (first) { /* another thread was first */
        pthread_mutex_unlock(&m->mu);
        loaded_free(n);
        *l = first;
        return 0;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        struct loaded **nv = realloc(m->v, (size_t)cap * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&m->mu);
            loaded_free(n);
            return CV_ENOMEM;
        }
        m->v = nv;
        m->cap = cap;
    }
    m->v[m->n++] = n;
    pthread_mutex_unlock(&m->mu);
    *l = n;
    return 0;
}

/* Counts one prediction of l: its label (class k), confidence and
 * inference time. Atomics only: no lock. */
static void observe(struct loaded *l, int k, double conf, int64_t ns)
{
    atomic_fetch_add_explicit(&l->by_label[k >= 0 && k < l->nlabels ? k : l->nlabels], 1, memory_order_relaxed);
    int b = 0;
    while (b < CV_MODEL_CONF_BUCKETS && conf > cv__model_confidence_buckets[b])
        b++;
    atomic_fetch_add_explicit(&l->conf[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->conf_sum_ppm, (long long)(conf * 1e6 + 0.5), memory_order_relaxed);
    double s = (double)ns / 1e9;
    b = 0;
    while (b < CV_MODEL_LAT_BUCKETS && s > cv__model_latency_buckets_s[b])
        b++;
    atomic_fetch_add_explicit(&l->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->lat_sum_ns, ns, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Picking the version of one call                                           */
/* ------------------------------------------------------------------------ */

struct pick {
    struct loaded *use;    /* the version that answers */
    struct loaded *shadow; /* predicts beside it (bare NAME with a shadow), or NULL */
    jv shadow_err;         /* why the shadow could not be loaded, or invalid */
    int64_t shadow_version;
    int canary;            /* `use` is the canary */
    char name[160];
};

static int kind_ok(const struct loaded *l, const char *want_kind)
{
    return !strcmp(want_kind, "text")        ? l->text != NULL
           : !strcmp(want_kind, "extractor") ? l->ext != NULL
                                             : l->tab != NULL;
}

static int wrong_kind(jv *out, const char *want_kind, const char *ref)
{
    return fail(out, CV_ERR_CONFIGURATION, 400, "Wrong Model Kind",
                !strcmp(want_kind, "text")        ? "model '%s' is not a text classifier (classify needs one)"
                : !strcmp(want_kind, "extractor") ? "model '%s' is not an extractor (extract needs one)"
                                                  : "model '%s' is not a tabular scorer (score needs one)",
                ref);
}

/*
 * The model `ref` (NAME or NAME@VERSION) of kind `want_kind` ("text",
 * "tabular" or "extractor") for the instance `instance` (may be NULL): NAME@VERSION is
 * that version unless it is retired; NAME the canary when the instance falls
 * in its share, else the production version (else the newest that is not
 * retired), with the name's shadow beside it. Returns 0 with *p, or
 * CV_EFAULT / CV_ENOMEM with *out.
 */
static int pick_model(struct cv_models *m, const char *ref, const char *want_kind, const char *instance,
                      struct pick *p, jv *out)
{
    memset(p, 0, sizeof *p);
    p->shadow_err = jv_invalid();
    int64_t want = 0;
    const char *at = strchr(ref, '@');
    snprintf(p->name, sizeof p->name, "%.*s", at ? (int)(at - ref) : (int)strlen(ref), ref);
    if (at) {
        char *end;
        long long v = strtoll(at + 1, &end, 10);
        if (*end || v < 1)
            return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Model Reference",
                        "'%s' is not NAME or NAME@VERSION (a positive version)", ref);
        want = v;
    }
    if (!p->name[0])
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Model Reference", "a model needs a name%s", "");
    struct route r;
    int rc = resolve(m, ref, p->name, want, &r, out);
    if (rc)
        return rc;
    if (r.retired)
        return fail(out, CV_ERR_CONFIGURATION, 404, "Model Retired",
                    "model '%s' is retired: name another version, or promote one", ref);
    int64_t v = r.version;
    if (r.canary && r.canary != v && instance && *instance &&
        cv__model_instance_point(p->name, instance) < r.share) {
        v = r.canary;
        p->canary = 1;
    } else if (strcmp(r.kind, want_kind)) {
        return wrong_kind(out, want_kind, ref);
    }
    rc = load(m, p->name, v, &p->use, out);
    if (rc)
        return rc;
    if (!kind_ok(p->use, want_kind)) {
        char full[200];
        snprintf(full, sizeof full, "%s@%lld", p->name, (long long)v);
        return wrong_kind(out, want_kind, full);
    }
    if (r.shadow && r.shadow != v) {
        p->shadow_version = r.shadow;
        jv e = jv_invalid();
        if (load(m, p->name, r.shadow, &p->shadow, &e)) {
            p->shadow = NULL;
            p->shadow_err = jv_is_valid(e) ? e : cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory");
        } else if (!kind_ok(p->shadow, want_kind)) {
            p->shadow = NULL;
            char full[200];
            snprintf(full, sizeof full, "%s@%lld", p->name, (long long)r.shadow);
            wrong_kind(&p->shadow_err, want_kind, full);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The functions                                                             */
/* ------------------------------------------------------------------------ */

/* One call's context: the instance, and what a shadow predicted. */
struct call {
    const char *instance;
    jv shadow; /* the shadow's note (without inputDigest), or invalid */
};

static jv kept_output(jv out);

/* The shadow's note: {function, model, shadow: true, output, latencyMs}
 * or {..., error}; pred (consumed) is its output, or invalid with err. */
static jv shadow_note(const char *fn, const struct pick *p, jv pred, jv err, int64_t ns)
{
    char full[200];
    snprintf(full, sizeof full, "%s@%lld", p->name, (long long)p->shadow_version);
    jv n = JV_OBJECT(jv_string("function"), jv_string(fn), jv_string("model"), jv_string(full), jv_string("shadow"),
                     jv_true());
    if (jv_is_valid(pred)) {
        n = jv_object_set(n, jv_string("output"), kept_output(pred));
        n = jv_object_set(n, jv_string("latencyMs"), jv_number((double)ns / 1e6));
        jv_free(err);
    } else {
        jv_free(pred);
        n = jv_object_set(n, jv_string("error"), err);
    }
    return n;
}

/* Predicts text with l: {label, confidence, scores, model} (or invalid on
 * out of memory); counts it. */
static jv predict_text(struct loaded *l, const char *t, size_t len, struct cv_text_scratch *s, int64_t *ns)
{
    int nc = cv_text_model_classes(l->text);
    double *probs = calloc((size_t)nc, sizeof *probs);
    if (!probs)
        return jv_invalid();
    int64_t t0 = mono_ns();
    int best = cv_text_model_predict(l->text, t, len, s, probs);
    *ns = mono_ns() - t0;
    if (best < 0) {
        free(probs);
        return jv_invalid();
    }
    observe(l, best, probs[best], *ns);
    jv r = cv_text_prediction_json(l->text, probs);
    free(probs);
    return jv_object_set(r, jv_string("model"), jv_string_fmt("%s@%lld", l->name, (long long)l->version));
}

static int classify(struct cv_models *m, jv args, struct call *c, jv *out)
{
    jv model = jv_object_get(jv_copy(args), jv_string("model"));
    jv text = jv_object_get(jv_copy(args), jv_string("text"));
    struct cv_text_scratch *s = NULL;
    struct pick p = {.shadow_err = jv_invalid()};
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
    rc = pick_model(m, jv_string_value(model), "text", c->instance, &p, out);
    if (rc)
        goto out;
    s = cv_text_scratch_new();
    int64_t ns = 0;
    jv r = s ? predict_text(p.use, t, len, s, &ns) : jv_invalid();
    if (!jv_is_valid(r)) {
        rc = CV_ENOMEM;
        goto out;
    }
    *out = r;
    if (p.shadow) { /* the same text, another version: recorded, never returned */
        jv sr = predict_text(p.shadow, t, len, s, &ns);
        c->shadow = shadow_note("classify", &p, sr,
                                jv_is_valid(sr) ? jv_invalid()
                                                : cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"),
                                ns);
    } else if (jv_is_valid(p.shadow_err)) {
        c->shadow = shadow_note("classify", &p, jv_invalid(), p.shadow_err, 0);
        p.shadow_err = jv_invalid();
    }
    rc = 0;
out:
    cv_text_scratch_free(s);
    jv_free(p.shadow_err);
    jv_free(model);
    jv_free(text);
    return rc;
}

/* Scores features with l (borrowed): 0 with *r (model set) and the count,
 * else a code with *err (a message string). */
static int predict_tab(struct loaded *l, jv features, int ntop, jv *r, jv *err, int64_t *ns)
{
    int64_t t0 = mono_ns();
    int rc = cv_tab_model_score(l->tab, jv_copy(features), ntop, r, NULL, err);
    *ns = mono_ns() - t0;
    if (rc)
        return rc;
    jv score = jv_object_get(jv_copy(*r), jv_string("score"));
    double sc = jv_get_kind(score) == JV_KIND_NUMBER ? jv_number_value(score) : 0;
    jv_free(score);
    int k = sc >= 0.5; /* cv_tab_model_score's rule for `label` */
    observe(l, k, k ? sc : 1 - sc, *ns);
    *r = jv_object_set(*r, jv_string("model"), jv_string_fmt("%s@%lld", l->name, (long long)l->version));
    return 0;
}

static int score(struct cv_models *m, jv args, struct call *c, jv *out)
{
    jv model = jv_object_get(jv_copy(args), jv_string("model"));
    jv features = jv_object_get(jv_copy(args), jv_string("features"));
    jv top = jv_object_get(jv_copy(args), jv_string("top"));
    struct pick p = {.shadow_err = jv_invalid()};
    int rc;
    if (jv_get_kind(model) != JV_KIND_STRING) {
        rc = fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "score needs `model`: a model name%s", "");
        goto out;
    }
    if (jv_get_kind(features) != JV_KIND_OBJECT) {
        rc = fail(out, CV_ERR_VALIDATION, 400, "Invalid Arguments", "score needs `features`: an object%s", "");
        goto out;
    }
    rc = pick_model(m, jv_string_value(model), "tabular", c->instance, &p, out);
    if (rc)
        goto out;
    jv r = jv_invalid(), err = jv_invalid();
    int ntop = jv_get_kind(top) == JV_KIND_NUMBER ? (int)jv_number_value(top) : 5;
    int64_t ns = 0;
    rc = predict_tab(p.use, features, ntop, &r, &err, &ns);
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
    *out = r;
    if (p.shadow) {
        jv sr = jv_invalid();
        err = jv_invalid();
        int src = predict_tab(p.shadow, features, ntop, &sr, &err, &ns);
        jv e = jv_invalid();
        if (src) {
            jv d = jv_get_kind(err) == JV_KIND_STRING ? err : (jv_free(err), jv_string(cv_strerror(src)));
            e = cv__error_newf(src == CV_ENOMEM ? CV_ERR_RUNTIME : CV_ERR_VALIDATION, src == CV_ENOMEM ? 500 : 400,
                               src == CV_ENOMEM ? "Runtime Error" : "Invalid Features", "%s", jv_string_value(d));
            jv_free(d);
            jv_free(sr);
            sr = jv_invalid();
        } else {
            jv_free(err);
        }
        c->shadow = shadow_note("score", &p, sr, e, ns);
    } else if (jv_is_valid(p.shadow_err)) {
        c->shadow = shadow_note("score", &p, jv_invalid(), p.shadow_err, 0);
        p.shadow_err = jv_invalid();
    }
    rc = 0;
out:
    jv_free(p.shadow_err);
    jv_free(model);
    jv_free(features);
    jv_free(top);
    return rc;
}

/* Runs l's extractor on t: the result with `model` set (or invalid carrying
 * the error object); counts it (label complete / incomplete, confidence the
 * mean of the fields'). */
static jv run_extractor(struct loaded *l, const char *t, size_t len, int64_t *ns)
{
    int64_t t0 = mono_ns();
    jv r = cv__extract_run(l->ext, t, len);
    *ns = mono_ns() - t0;
    if (!jv_is_valid(r))
        return r;
    jv missing = jv_object_get(jv_copy(r), jv_string("missing"));
    jv conf = jv_object_get(jv_copy(r), jv_string("confidence"));
    double sum = 0;
    int n = 0;
    jv_object_foreach(conf, k, v)
    {
        sum += jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : 0;
        n++;
        jv_free(k);
        jv_free(v);
    }
    observe(l, jv_array_length(missing) > 0, n ? sum / n : 0, *ns);
    jv_free(conf);
    return jv_object_set(r, jv_string("model"), jv_string_fmt("%s@%lld", l->name, (long long)l->version));
}

/* The error object an invalid result carries (consumed) as *out: CV_EFAULT,
 * or CV_ENOMEM when it carries none. */
static int extract_failed(jv r, jv *out)
{
    jv e = jv_invalid_get_msg(r);
    if (jv_get_kind(e) == JV_KIND_OBJECT) {
        *out = e;
        return CV_EFAULT;
    }
    jv_free(e);
    return CV_ENOMEM;
}

/* extract: {model: NAME[@VERSION], text} with a stored extractor, or
 * {fields: [...] | an extractor definition, text} inline (docs/extract.md).
 * m may be NULL (no store): then only the inline form works. */
static int extract(struct cv_models *m, jv args, struct call *c, jv *out)
{
    int has_model = jv_object_has(jv_copy(args), jv_string("model"));
    if (has_model && jv_object_has(jv_copy(args), jv_string("fields")))
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments",
                    "extract takes `model` (a stored extractor) or `fields` (inline), not both%s", "");
    if (!has_model) { /* inline: patterns, no model, no store */
        jv r = cv__extract_call(jv_copy(args));
        if (jv_is_valid(r)) {
            *out = r;
            return 0;
        }
        return extract_failed(r, out);
    }
    if (!m)
        return fail(out, CV_ERR_CONFIGURATION, 404, "No Model Store",
                    "%s needs models, and this process has no store to read them from", "extract with `model`");
    jv model = jv_object_get(jv_copy(args), jv_string("model"));
    jv text = jv_object_get(jv_copy(args), jv_string("text"));
    struct pick p = {.shadow_err = jv_invalid()};
    int rc;
    if (jv_get_kind(model) != JV_KIND_STRING) {
        rc = fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "extract's `model` is a model name%s", "");
        goto out;
    }
    if (jv_get_kind(text) != JV_KIND_STRING) { /* the inline form's error */
        rc = fail(out, CV_ERR_VALIDATION, 400, "Invalid Arguments", "extract needs `text`: a string%s", "");
        goto out;
    }
    rc = pick_model(m, jv_string_value(model), "extractor", c->instance, &p, out);
    if (rc)
        goto out;
    const char *t = jv_string_value(text);
    size_t len = (size_t)jv_string_length_bytes(jv_copy(text));
    int64_t ns = 0;
    jv r = run_extractor(p.use, t, len, &ns);
    if (!jv_is_valid(r)) {
        rc = extract_failed(r, out);
        goto out;
    }
    *out = r;
    if (p.shadow) { /* the same text, another version: recorded, never returned */
        jv sr = run_extractor(p.shadow, t, len, &ns);
        jv e = jv_invalid();
        if (!jv_is_valid(sr)) {
            e = jv_invalid_get_msg(sr);
            if (jv_get_kind(e) != JV_KIND_OBJECT) {
                jv_free(e);
                e = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory");
            }
            sr = jv_invalid();
        }
        c->shadow = shadow_note("extract", &p, sr, e, ns);
    } else if (jv_is_valid(p.shadow_err)) {
        c->shadow = shadow_note("extract", &p, jv_invalid(), p.shadow_err, 0);
        p.shadow_err = jv_invalid();
    }
    rc = 0;
out:
    jv_free(p.shadow_err);
    jv_free(model);
    jv_free(text);
    return rc;
}

static int catalog_run(struct cv_models *m, const char *fn, jv args, struct call *c, jv *out)
{
    if (jv_get_kind(args) != JV_KIND_OBJECT)
        return fail(out, CV_ERR_CONFIGURATION, 400, "Invalid Arguments", "%s needs a `with` object", fn);
    if (!strcmp(fn, "extract")) /* inline fields need no store; `model` does */
        return extract(m, args, c, out);
    if (!m)
        return fail(out, CV_ERR_CONFIGURATION, 404, "No Model Store",
                    "%s needs models, and this process has no store to read them from", fn);
    if (!strcmp(fn, "classify"))
        return classify(m, args, c, out);
    if (!strcmp(fn, "score"))
        return score(m, args, c, out);
    return fail(out, CV_ERR_CONFIGURATION, 400, "Unknown Function", "'%s' is not in the default catalog", fn);
}

/* The part of an output the history keeps (out borrowed). */
static jv kept_output(jv out)
{
    jv o = jv_object();
    const char *keep[] = {"label", "confidence", "score", "missing"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        jv v = jv_object_get(jv_copy(out), jv_string(keep[i]));
        if (jv_is_valid(v))
            o = jv_object_set(o, jv_string(keep[i]), v);
        else
            jv_free(v);
    }
    jv_free(out);
    return o;
}

/* What the history keeps of a prediction (args and out borrowed). */
static jv note_of(const char *fn, const char *hex, jv out, double ms)
{
    jv model = jv_object_get(jv_copy(out), jv_string("model"));
    if (!jv_is_valid(model)) { /* extract with inline fields: no model */
        jv_free(model);
        model = jv_null();
    }
    return JV_OBJECT(jv_string("function"), jv_string(fn), jv_string("model"), model, jv_string("inputDigest"),
                     jv_string(hex), jv_string("output"), kept_output(jv_copy(out)), jv_string("latencyMs"),
                     jv_number(ms));
}

int cv__catalog_call(struct cv_models *m, const char *fn, const char *instance, jv args, jv *out, jv *note)
{
    *out = jv_null();
    if (note)
        *note = jv_invalid();
    struct call c = {.instance = instance, .shadow = jv_invalid()};
    int64_t t0 = mono_ns();
    int rc = catalog_run(m, fn, args, &c, out);
    int64_t t1 = mono_ns();
    if (!rc && note) {
        jv text = jv_dump_string(jv_copy(args), JV_PRINT_SORTED);
        char hex[65];
        cv_ml_sha256_hex(jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)), hex);
        jv_free(text);
        *note = note_of(fn, hex, *out, (double)(t1 - t0) / 1e6);
        if (jv_is_valid(c.shadow)) /* two history entries: the answer, then its shadow */
            *note = JV_ARRAY_2(*note, jv_object_set(c.shadow, jv_string("inputDigest"), jv_string(hex)));
        c.shadow = jv_invalid();
    }
    jv_free(c.shadow);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

/* Appends label value v, escaped for the Prometheus text format. */
static jv escaped(jv text, const char *v)
{
    char buf[256];
    size_t j = 0;
    for (; *v && j + 3 < sizeof buf; v++) {
        if (*v == '"' || *v == '\\') {
            buf[j++] = '\\';
            buf[j++] = *v;
        } else if (*v == '\n') {
            buf[j++] = '\\';
            buf[j++] = 'n';
        } else {
            buf[j++] = *v;
        }
    }
    buf[j] = 0;
    return jv_string_append_str(text, buf);
}

char *cv__models_metrics(struct cv_models *m)
{
    jv t = jv_string("# HELP conveyor_model_predictions_total Predictions made in this process, by model, version "
                     "and predicted label (shadow predictions included, under their own version).\n"
                     "# TYPE conveyor_model_predictions_total counter\n");
    jv conf = jv_string("# HELP conveyor_model_confidence Confidence of the predicted label (scorers: the "
                        "probability of the label given).\n"
                        "# TYPE conveyor_model_confidence histogram\n");
    jv lat = jv_string("# HELP conveyor_model_inference_seconds Time to predict one input, model loaded.\n"
                       "# TYPE conveyor_model_inference_seconds histogram\n");
    if (m) {
        pthread_mutex_lock(&m->mu);
        for (int i = 0; i < m->n && i < METRIC_VERSIONS_MAX; i++) {
            struct loaded *l = m->v[i];
            char series[256];
            snprintf(series, sizeof series, "model=\"%s\",version=\"%lld\"", l->name, (long long)l->version);
            for (int k = 0; k <= l->nlabels; k++) {
                long long n = atomic_load(&l->by_label[k]);
                if (k == l->nlabels && n == 0)
                    continue;
                const char *name = k == l->nlabels ? "other"
                                   : l->text       ? cv_text_model_label(l->text, k)
                                   : l->ext        ? (k ? "incomplete" : "complete")
                                                   : cv_tab_model_label(l->tab, k);
                t = jv_string_append_str(t, "conveyor_model_predictions_total{");
                t = jv_string_append_str(t, series);
                t = jv_string_append_str(t, ",label=\"");
                t = escaped(t, name ? name : "");
                t = jv_string_concat(t, jv_string_fmt("\"} %lld\n", n));
            }
            long long cum = 0;
            for (int b = 0; b <= CV_MODEL_CONF_BUCKETS; b++) {
                cum += atomic_load(&l->conf[b]);
                if (b < CV_MODEL_CONF_BUCKETS)
                    conf = jv_string_concat(conf, jv_string_fmt("conveyor_model_confidence_bucket{%s,le=\"%g\"} %lld\n",
                                                                series, cv__model_confidence_buckets[b], cum));
                else
                    conf = jv_string_concat(conf, jv_string_fmt("conveyor_model_confidence_bucket{%s,le=\"+Inf\"} %lld\n"
                                                                "conveyor_model_confidence_sum{%s} %.6f\n"
                                                                "conveyor_model_confidence_count{%s} %lld\n",
                                                                series, cum, series,
                                                                (double)atomic_load(&l->conf_sum_ppm) / 1e6, series,
                                                                cum));
            }
            cum = 0;
            for (int b = 0; b <= CV_MODEL_LAT_BUCKETS; b++) {
                cum += atomic_load(&l->lat[b]);
                if (b < CV_MODEL_LAT_BUCKETS)
                    lat = jv_string_concat(lat, jv_string_fmt("conveyor_model_inference_seconds_bucket{%s,le=\"%g\"} %lld\n",
                                                              series, cv__model_latency_buckets_s[b], cum));
                else
                    lat = jv_string_concat(lat, jv_string_fmt("conveyor_model_inference_seconds_bucket{%s,le=\"+Inf\"} %lld\n"
                                                              "conveyor_model_inference_seconds_sum{%s} %.9f\n"
                                                              "conveyor_model_inference_seconds_count{%s} %lld\n",
                                                              series, cum, series,
                                                              (double)atomic_load(&l->lat_sum_ns) / 1e9, series, cum));
            }
        }
        pthread_mutex_unlock(&m->mu);
    }
    t = jv_string_concat(jv_string_concat(t, conf), lat);
    char *s = strdup(jv_string_value(t));
    jv_free(t);
    return s;
}
