/*
 * runtime.c — cv_runtime: configuration shared by runs (host overrides,
 * secrets, known subflows, event output, time scale). Read-only while runs
 * are in progress, except the event stream, which is written under a lock.
 */
#include "engine/engine_int.h"

#include "common/util.h"

#include "effects/hostmap.h"
#include "effects/http.h"
#include "json/yaml.h"
#include "ml/catalog.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

const char *const cv__task_kind_names[CV_TASK_KINDS] = {"call", "do",    "emit", "for",    "fork", "listen",
                                                        "raise", "run",  "set",  "switch", "try",  "wait"};
const double cv__task_buckets_s[CV_TASK_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 3600};

/* The index of a task kind in cv__task_kind_names, or -1 (a hot path: no
 * string compares beyond the one that confirms). */
static int kind_index(const char *n)
{
    int k;
    switch (n[0]) {
    case 'c': k = 0; break;
    case 'd': k = 1; break;
    case 'e': k = 2; break;
    case 'f': k = n[1] == 'o' && n[2] == 'r' && n[3] == 'k' ? 4 : 3; break;
    case 'l': k = 5; break;
    case 'r': k = n[1] == 'a' ? 6 : 7; break;
    case 's': k = n[1] == 'e' ? 8 : 9; break;
    case 't': k = 10; break;
    case 'w': k = 11; break;
    default: return -1;
    }
    return strcmp(cv__task_kind_names[k], n) ? -1 : k;
}

void cv__runtime_task_done(cv_runtime *rt, const char *kind_name, int64_t us)
{
    int k = kind_index(kind_name);
    if (k < 0)
        return;
    int b = 0;
    while (b < CV_TASK_BUCKETS && (double)us > cv__task_buckets_s[b] * 1e6)
        b++;
    atomic_fetch_add_explicit(&rt->task_count[k][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->task_sum_us[k], us, memory_order_relaxed);
}

int cv_runtime_new(cv_runtime **out)
{
    *out = NULL;
    cv__malloc_tune();
    cv_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return CV_ENOMEM;
    rt->hosts = cv__hostmap_new();
    rt->http = cv__http_ctx_new();
    if (!rt->hosts || !rt->http) {
        cv_runtime_free(rt);
        return CV_ENOMEM;
    }
    rt->secrets = jv_object();
    rt->time_scale = 1.0;
    rt->effect_timeout_ms = 300000;
    pthread_mutex_init(&rt->events_lock, NULL);
    pthread_mutex_init(&rt->remote_lock, NULL);
    *out = rt;
    return CV_OK;
}

void cv_runtime_free(cv_runtime *rt)
{
    if (!rt)
        return;
    cv__hostmap_free(rt->hosts);
    cv__http_ctx_free(rt->http);
    cv__models_free(rt->models);
    jv_free(rt->secrets);
    for (int i = 0; i < rt->nsubflows; i++)
        cv_workflow_free(rt->subflows[i]);
    free(rt->subflows);
    for (int i = 0; i < rt->nremote; i++) {
        free(rt->remote_urls[i]);
        cv_workflow_free(rt->remote_fns[i]);
    }
    free(rt->remote_urls);
    free(rt->remote_fns);
    pthread_mutex_destroy(&rt->events_lock);
    pthread_mutex_destroy(&rt->remote_lock);
    free(rt);
}

int cv_runtime_map_host(cv_runtime *rt, const char *spec) { return cv__hostmap_add(rt->hosts, spec); }

void cv_runtime_deny_unmapped(cv_runtime *rt, int deny) { cv__hostmap_set_deny_unmapped(rt->hosts, deny); }

int cv_runtime_set_secrets(cv_runtime *rt, jv secrets)
{
    if (jv_get_kind(secrets) != JV_KIND_OBJECT) {
        jv_free(secrets);
        return CV_EINVAL;
    }
    jv_free(rt->secrets);
    rt->secrets = secrets;
    return CV_OK;
}

int cv_runtime_add_workflow(cv_runtime *rt, cv_workflow *wf)
{
    cv_workflow **n = realloc(rt->subflows, (size_t)(rt->nsubflows + 1) * sizeof *n);
    if (!n)
        return CV_ENOMEM;
    rt->subflows = n;
    rt->subflows[rt->nsubflows++] = wf;
    return CV_OK;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && !strcmp(s + n - m, suf);
}

int cv_runtime_add_workflow_dir(cv_runtime *rt, const char *dir, jv *diags)
{
    DIR *d = opendir(dir);
    jv all = jv_array();
    if (!d) {
        if (diags) {
            jv e = jv_object_set(jv_object(), jv_string("file"), jv_string(dir));
            e = jv_object_set(e, jv_string("message"), jv_string("cannot open the directory"));
            *diags = JV_ARRAY(e);
        }
        jv_free(all);
        return CV_EIO;
    }
    int rc = CV_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!has_suffix(de->d_name, ".yaml") && !has_suffix(de->d_name, ".yml") && !has_suffix(de->d_name, ".json"))
            continue;
        size_t n = strlen(dir) + strlen(de->d_name) + 2;
        char *path = malloc(n);
        if (!path) {
            rc = CV_ENOMEM;
            break;
        }
        snprintf(path, n, "%s/%s", dir, de->d_name);
        cv_workflow *wf;
        jv ds = jv_invalid();
        int r = cv_workflow_load_file(path, &wf, &ds);
        if (r) {
            rc = r;
            if (jv_get_kind(ds) == JV_KIND_ARRAY)
                all = jv_array_concat(all, ds);
            else
                jv_free(ds);
        } else {
            jv_free(ds);
            if (cv_runtime_add_workflow(rt, wf)) {
                cv_workflow_free(wf);
                rc = CV_ENOMEM;
            }
        }
        free(path);
    }
    closedir(d);
    if (diags)
        *diags = all;
    else
        jv_free(all);
    return rc;
}

void cv_runtime_set_time_scale(cv_runtime *rt, double scale) { rt->time_scale = scale > 0 ? scale : 1.0; }
void cv_runtime_set_event_stream(cv_runtime *rt, void *file) { rt->events = file; }
void cv_runtime_set_trace(cv_runtime *rt, int on) { rt->trace = on; }
void cv_runtime_set_effect_timeout(cv_runtime *rt, long long ms) { rt->effect_timeout_ms = ms > 0 ? ms : 0; }

void cv_runtime_on_checkpoint(cv_runtime *rt, cv_checkpoint_fn fn, void *ud)
{
    rt->checkpoint = fn;
    rt->checkpoint_ud = ud;
}

/* Semantic-version order of "1.2.10" vs "1.2.9" (numeric parts compared). */
static int semver_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);
        if (x != y)
            return x < y ? -1 : 1;
        if (*a == '.')
            a++;
        if (*b == '.')
            b++;
        if (!(*a >= '0' && *a <= '9') || !(*b >= '0' && *b <= '9'))
            return strcmp(a, b);
    }
    return 0;
}

static __thread const struct cv_resolver *thread_resolver;

void cv__runtime_set_thread_resolver(const struct cv_resolver *r) { thread_resolver = r; }

const cv_workflow *cv__runtime_find_workflow(cv_runtime *rt, const char *ns, const char *name, const char *version)
{
    if (thread_resolver && thread_resolver->find) {
        const cv_workflow *w = thread_resolver->find(thread_resolver->ud, ns, name, version);
        if (w)
            return w;
    }
    const cv_workflow *best = NULL;
    int latest = !version || !strcmp(version, "latest");
    for (int i = 0; i < rt->nsubflows; i++) {
        const cv_workflow *w = rt->subflows[i];
        if (strcmp(w->ns, ns) || strcmp(w->name, name))
            continue;
        if (!latest && !strcmp(w->version, version))
            return w;
        if (latest && (!best || semver_cmp(w->version, best->version) > 0))
            best = w;
    }
    return best;
}

int cv__runtime_has_bus(void) { return thread_resolver && thread_resolver->emit; }

void cv__runtime_emit(cv_runtime *rt, jv event)
{
    if (thread_resolver && thread_resolver->emit)
        thread_resolver->emit(thread_resolver->ud, event);
    if (!rt->events)
        return;
    jv s = jv_dump_string(jv_copy(event), 0);
    pthread_mutex_lock(&rt->events_lock);
    fputs(jv_string_value(s), rt->events);
    fputc('\n', rt->events);
    fflush(rt->events);
    pthread_mutex_unlock(&rt->events_lock);
    jv_free(s);
}

const cv_workflow *cv__runtime_remote_get(cv_runtime *rt, const char *url)
{
    if (thread_resolver && thread_resolver->remote_get)
        return thread_resolver->remote_get(thread_resolver->ud, url);
    const cv_workflow *r = NULL;
    pthread_mutex_lock(&rt->remote_lock);
    for (int i = 0; i < rt->nremote && !r; i++)
        if (!strcmp(rt->remote_urls[i], url))
            r = rt->remote_fns[i];
    pthread_mutex_unlock(&rt->remote_lock);
    return r;
}

const cv_workflow *cv__runtime_remote_put(cv_runtime *rt, const char *url, cv_workflow *wf)
{
    if (thread_resolver && thread_resolver->remote_put)
        return thread_resolver->remote_put(thread_resolver->ud, url, wf);
    const cv_workflow *have = cv__runtime_remote_get(rt, url);
    if (have) {
        cv_workflow_free(wf);
        return have;
    }
    pthread_mutex_lock(&rt->remote_lock);
    char **u = realloc(rt->remote_urls, (size_t)(rt->nremote + 1) * sizeof *u);
    if (u)
        rt->remote_urls = u;
    cv_workflow **f = u ? realloc(rt->remote_fns, (size_t)(rt->nremote + 1) * sizeof *f) : NULL;
    if (f)
        rt->remote_fns = f;
    char *copy = f ? strdup(url) : NULL;
    if (!copy) {
        pthread_mutex_unlock(&rt->remote_lock);
        cv_workflow_free(wf);
        return NULL;
    }
    rt->remote_urls[rt->nremote] = copy;
    rt->remote_fns[rt->nremote] = wf;
    rt->nremote++;
    pthread_mutex_unlock(&rt->remote_lock);
    return wf;
}

int cv__runtime_set_model_store(cv_runtime *rt, struct cv_store *st)
{
    struct cv_models *m = st ? cv__models_new(st) : NULL;
    if (st && !m)
        return CV_ENOMEM;
    cv__models_free(rt->models);
    rt->models = m;
    return CV_OK;
}
