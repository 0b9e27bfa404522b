/*
 * interp.c — the interpreter: runs one instance of a workflow to its end.
 *
 * The position of an instance is explicit data (engine_int.h): fibers made of
 * frames, each frame a task, task list or workflow in some phase. A step
 * either advances the top frame or hands the frame's result (normal value,
 * error, or `end`) to the frame below through the fiber's return register —
 * no C recursion, so a continuation can be stored and resumed (next issue).
 *
 * Effects (HTTP, OpenAPI, child processes) run on the runtime's I/O thread
 * or, when they would block before their exchange, on a thread of their own
 * (effect_run.c), and post their result to the instance's queue; waits and retry delays are timers; a
 * fork runs its branches as child fibers. Deadlines (task and workflow
 * `timeout`, retry attempt limits) live on frames: when one passes, every
 * frame above it is abandoned (effects cancelled, child fibers cancelled) and
 * the frame fails with a timeout error.
 *
 * Sections: data-flow helpers, frames and fibers, task phases, effects,
 * deadlines, the run loop.
 */
#include "engine/engine_int.h"

#include "common/jvx.h"
#include "common/util.h"
#include "effects/http.h"
#include "effects/process.h"
#include "json/schema.h"
#include "json/yaml.h"
#include "ml/catalog.h"
#include "ml/ml.h"
#include "store/store.h"

#include <math.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

/* Task phases */
enum {
    P_START = 0,
    P_EXT_BEFORE, /* running extensions' `before` lists */
    P_BODY,
    P_WAIT_CHILD, /* waiting for a pushed frame (do, call function, subflow) */
    P_FOR_NEXT,
    P_FOR_WAIT,
    P_TRY_WAIT,
    P_TRY_RETRY, /* timer elapsed: run the try list again */
    P_CATCH_WAIT,
    P_EFFECT_WAIT,
    P_TIMER_WAIT,
    P_FORK_WAIT,
    P_EXT_AFTER,
    P_REMOTE_LOADED, /* a remote function's text arrived */
    P_FINISH,     /* output.as, output.schema, export.as (after `after` extensions) */
    P_FINISH_NOEXT, /* the same, extensions done */
    P_LISTEN,       /* waiting for events (fiber state FB_EVENT) */
    P_LISTEN_EACH,  /* consumed events wait for the foreach tasks */
    P_LISTEN_EACH_WAIT,
    P_REVIEW_WAIT, /* `call: review`: its task is open, the listen for its completion runs above */
};

/* Workflow phases */
enum { W_START = 0, W_WAIT, W_DONE };

/* List phases */
enum { L_NEXT = 0, L_WAIT };

struct evalctx {
    struct fiber *fb;
    struct frame *fr;
    struct instance *in;
};

static void fiber_fail(struct instance *in, struct fiber *fb, jv err);

/* ---- data-flow helpers ------------------------------------------------------- */

static jv runtime_descriptor(void)
{
    jv r = jv_object();
    r = jv_object_set(r, jv_string("name"), jv_string("conveyor"));
    r = jv_object_set(r, jv_string("version"), jv_string(CV_VERSION));
    return jv_object_set(r, jv_string("metadata"), jv_object());
}

static jv task_descriptor(const struct frame *fr)
{
    if (!fr->task)
        return jv_null();
    jv t = jv_object();
    t = jv_object_set(t, jv_string("name"), jv_string(fr->task->name));
    t = jv_object_set(t, jv_string("reference"), jv_string(fr->task->ref));
    t = jv_object_set(t, jv_string("definition"), jv_copy(fr->task->def));
    t = jv_object_set(t, jv_string("input"), jv_copy(fr->raw_input));
    t = jv_object_set(t, jv_string("output"), jv_is_valid(fr->output) ? jv_copy(fr->output) : jv_null());
    return jv_object_set(t, jv_string("startedAt"), cv__time_descriptor(fr->started_wall));
}

static jv materialize(void *ud, int var)
{
    struct evalctx *c = ud;
    switch (var) {
    case CV_VAR_CONTEXT:
        return jv_copy(c->fr->wfc->context);
    case CV_VAR_INPUT:
        return jv_is_valid(c->fr->input) ? jv_copy(c->fr->input) : jv_copy(c->fr->raw_input);
    case CV_VAR_OUTPUT:
        return jv_is_valid(c->fr->output) ? jv_copy(c->fr->output) : jv_null();
    case CV_VAR_SECRETS:
        return jv_copy(c->fr->wfc->secrets);
    case CV_VAR_TASK:
        return task_descriptor(c->fr);
    case CV_VAR_WORKFLOW:
        return jv_copy(c->fr->wfc->descriptor);
    case CV_VAR_RUNTIME:
        return runtime_descriptor();
    case CV_VAR_AUTHORIZATION:
        return jv_copy(c->fr->authz);
    }
    return jv_null();
}

/* Sets up an evaluation environment for expressions of frame `fr`. */
static void env_init(struct cv_evalenv *env, struct evalctx *c, struct instance *in, struct fiber *fb,
                     struct frame *fr)
{
    c->fb = fb;
    c->fr = fr;
    c->in = in;
    for (int i = 0; i < CV_VAR_COUNT; i++)
        env->vars[i] = jv_invalid();
    env->scope = fr->scope;
    env->materialize = materialize;
    env->ud = c;
}

static void env_cleanup(struct cv_evalenv *env)
{
    for (int i = 0; i < CV_VAR_COUNT; i++)
        jv_free(env->vars[i]);
}

/* Evaluates a template for frame `fr` with `.` = dot (consumed). */
static int eval_tmpl(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_tmpl *t, jv dot,
                     jv *out)
{
    if (!cv__tmpl_dynamic(t)) {
        jv_free(dot);
        *out = jv_copy(t->konst);
        return 0;
    }
    struct cv_evalenv env;
    struct evalctx c;
    env_init(&env, &c, in, fb, fr);
    int rc = cv__tmpl_eval(fr->wfc->wf->exprs, t, dot, &env, out);
    env_cleanup(&env);
    return rc;
}

static int eval_expr(struct instance *in, struct fiber *fb, struct frame *fr, int idx, jv dot, jv scope_extra,
                     jv *out)
{
    struct cv_evalenv env;
    struct evalctx c;
    env_init(&env, &c, in, fb, fr);
    jv merged = jv_invalid();
    if (jv_get_kind(scope_extra) == JV_KIND_OBJECT) {
        merged = jv_object_merge(jv_copy(fr->scope), scope_extra);
        env.scope = merged;
    } else {
        jv_free(scope_extra);
    }
    int rc = cv__expr_eval(fr->wfc->wf->exprs, idx, dot, &env, out);
    env_cleanup(&env);
    jv_free(merged);
    return rc;
}

static jv with_instance(jv err, const char *ref)
{
    if (jv_get_kind(err) != JV_KIND_OBJECT)
        err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "an error that is not an object was raised");
    jv inst = jv_object_get(jv_copy(err), jv_string("instance"));
    int has = jv_get_kind(inst) == JV_KIND_STRING;
    jv_free(inst);
    if (!has && ref)
        err = jv_object_set(err, jv_string("instance"), jv_string(ref));
    return err;
}

/* Validates `value` (borrowed) against `schema` (borrowed); returns jv_null()
 * or a validation error descriptor. */
static jv check_schema(jv schema, jv value, const char *what)
{
    if (jv_get_kind(schema) != JV_KIND_OBJECT)
        return jv_null();
    if (jv_object_has(jv_copy(schema), jv_string("$cvResource")))
        return cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                              "%s schema: external schema resources are not supported by `conveyor run`", what);
    jv problems = cv__schema_validate(schema, value);
    if (jv_get_kind(problems) != JV_KIND_ARRAY) {
        jv_free(problems);
        return jv_null();
    }
    jv text = jv_string_fmt("%s does not match its schema:", what);
    jv_array_foreach(problems, i, p)
    {
        text = jv_string_append_str(text, i ? "; " : " ");
        text = jv_string_concat(text, p);
    }
    jv_free(problems);
    jv e = cv__error_new(CV_ERR_VALIDATION, 400, "Validation Error", jv_string_value(text));
    jv_free(text);
    return e;
}

static int64_t scaled(struct instance *in, int64_t ms)
{
    double s = in->rt->time_scale;
    if (s == 1.0 || ms <= 0)
        return ms;
    double v = (double)ms * s;
    return v < 0 ? 0 : (int64_t)ceil(v);
}

/* Resolves a duration (literal or expression) in ms. */
static int duration_of(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_duration *d,
                       int64_t *ms, jv *err)
{
    if (d->expr < 0) {
        *ms = d->ms;
        return 0;
    }
    jv v;
    if (eval_expr(in, fb, fr, d->expr, jv_copy(jv_is_valid(fr->input) ? fr->input : fr->raw_input),
                  jv_null(), &v)) {
        *err = v;
        return CV_EFAULT;
    }
    const char *why = NULL;
    int rc = cv__duration_ms(v, ms, &why);
    jv_free(v);
    if (rc) {
        *err = cv__error_newf(CV_ERR_EXPRESSION, 400, "Expression Error", "invalid duration: %s",
                              why ? why : "?");
        return CV_EFAULT;
    }
    return 0;
}

/* ---- trace -------------------------------------------------------------------- */

static int trace_start(struct instance *in, const struct cv_task *t)
{
    if (!in->tracing)
        return -1;
    jv e = jv_object();
    e = jv_object_set(e, jv_string("name"), jv_string(t->name));
    e = jv_object_set(e, jv_string("reference"), jv_string(t->ref));
    e = jv_object_set(e, jv_string("status"), jv_string("running"));
    int idx = jv_array_length(jv_copy(in->trace));
    in->trace = jv_array_append(in->trace, e);
    return idx;
}

static void trace_end(struct instance *in, int idx, const char *status, const char *key, jv value)
{
    if (idx < 0 || !in->tracing) {
        jv_free(value);
        return;
    }
    jv e = jv_array_get(jv_copy(in->trace), idx);
    e = jv_object_set(e, jv_string("status"), jv_string(status));
    if (key)
        e = jv_object_set(e, jv_string(key), value);
    else
        jv_free(value);
    in->trace = jv_array_set(in->trace, idx, e);
}

/* ---- frames and fibers ---------------------------------------------------------- */

static struct frame *top(struct fiber *fb) { return fb->nframes ? &fb->frames[fb->nframes - 1] : NULL; }

static struct wfctx *wfc_ref(struct wfctx *w)
{
    if (w)
        w->refs++;
    return w;
}

static void wfc_unref(struct wfctx *w)
{
    if (!w || --w->refs > 0)
        return;
    jv_free(w->context);
    jv_free(w->descriptor);
    jv_free(w->secrets);
    free(w);
}

static struct frame *push(struct fiber *fb, int type, struct wfctx *wfc, jv raw_input, jv scope)
{
    if (fb->nframes == fb->cap) {
        int cap = fb->cap ? fb->cap * 2 : 16;
        struct frame *n = realloc(fb->frames, (size_t)cap * sizeof *n);
        if (!n) {
            jv_free(raw_input);
            jv_free(scope);
            return NULL;
        }
        fb->frames = n;
        fb->cap = cap;
    }
    struct frame *fr = &fb->frames[fb->nframes++];
    memset(fr, 0, sizeof *fr);
    fr->type = type;
    fr->wfc = wfc_ref(wfc);
    fr->raw_input = raw_input;
    fr->input = jv_invalid();
    fr->output = jv_invalid();
    fr->scope = scope;
    fr->aux = jv_null();
    fr->authz = jv_null();
    fr->trace_idx = -1;
    fr->then_target = -1;
    return fr;
}

static void frame_release(struct frame *fr)
{
    jv_free(fr->raw_input);
    jv_free(fr->input);
    jv_free(fr->output);
    jv_free(fr->scope);
    jv_free(fr->aux);
    jv_free(fr->authz);
    wfc_unref(fr->wfc);
}

/* Pops the top frame and hands (kind, value) to the frame below. */
static void ret(struct fiber *fb, int kind, jv value, int then_kind, int then_target)
{
    struct frame *fr = top(fb);
    frame_release(fr);
    fb->nframes--;
    jv_free(fb->ret_value);
    fb->ret = kind;
    fb->ret_value = value;
    fb->ret_then_kind = then_kind;
    fb->ret_then_target = then_target;
    if (fb->nframes == 0)
        fb->state = FB_DONE;
}

static struct fiber *fiber_new(struct instance *in, struct fiber *parent, int branch)
{
    struct fiber *fb = calloc(1, sizeof *fb);
    if (!fb)
        return NULL;
    if (in->nfibers == in->cap) {
        int cap = in->cap ? in->cap * 2 : 8;
        struct fiber **n = realloc(in->fibers, (size_t)cap * sizeof *n);
        if (!n) {
            free(fb);
            return NULL;
        }
        in->fibers = n;
        in->cap = cap;
    }
    in->fibers[in->nfibers++] = fb;
    fb->parent = parent;
    fb->branch = branch;
    fb->state = FB_RUNNABLE;
    fb->ret_value = jv_null();
    return fb;
}

static void effect_abandon(struct instance *in, struct fiber *fb)
{
    if (!fb->effect)
        return;
    pthread_mutex_lock(&in->lock);
    atomic_store(&fb->effect->cancel, 1);
    fb->effect->fiber = NULL;
    pthread_mutex_unlock(&in->lock);
    fb->effect = NULL;
}

static void review_abandon(struct instance *in, struct frame *fr);

/* Cancels a fiber and all its descendants: frames dropped, effects abandoned. */
static void fiber_cancel(struct instance *in, struct fiber *fb)
{
    for (int i = 0; i < in->nfibers; i++)
        if (in->fibers[i]->parent == fb && in->fibers[i]->state != FB_DONE)
            fiber_cancel(in, in->fibers[i]);
    effect_abandon(in, fb);
    while (fb->nframes) {
        struct frame *fr = top(fb);
        review_abandon(in, fr);
        if (fr->type == F_TASK)
            trace_end(in, fr->trace_idx, "cancelled", NULL, jv_null());
        frame_release(fr);
        fb->nframes--;
    }
    fb->cancelled = 1;
    fb->state = FB_DONE;
    fb->ret = RET_NONE;
}

static void cancel_children(struct instance *in, struct fiber *fb)
{
    for (int i = 0; i < in->nfibers; i++)
        if (in->fibers[i]->parent == fb && in->fibers[i]->state != FB_DONE)
            fiber_cancel(in, in->fibers[i]);
}

/* ---- effects ---------------------------------------------------------------------- */

static void effect_free(struct effect *e)
{
    jv_free(e->args);
    jv_free(e->input);
    jv_free(e->out);
    jv_free(e->authz);
    jv_free(e->note);
    free(e);
}

/* The earliest deadline of any frame of the fiber (0 = none). */
static int64_t fiber_deadline(struct instance *in, struct fiber *fb)
{
    int64_t d = 0;
    for (struct fiber *f = fb; f; f = f->parent)
        for (int i = 0; i < f->nframes; i++)
            if (f->frames[i].deadline && (!d || f->frames[i].deadline < d))
                d = f->frames[i].deadline;
    return d;
}

/* A stable key for this effect: instance/task-reference/iterations/attempt. */
static void idempotency_key(struct instance *in, struct fiber *fb, struct frame *fr, char *buf, size_t n)
{
    char iters[256] = "";
    size_t used = 0;
    int attempt = 0;
    for (int i = 0; i < fb->nframes; i++) {
        struct frame *f = &fb->frames[i];
        if (f->type == F_TASK && f->task->kind == CV_T_FOR && used + 12 < sizeof iters)
            used += (size_t)snprintf(iters + used, sizeof iters - used, "%s%d", used ? "." : "", f->idx);
        if (f->type == F_TASK && f->task->kind == CV_T_TRY)
            attempt = f->attempt;
    }
    snprintf(buf, n, "%s%s/%s/%d", in->id, fr->task->ref, iters[0] ? iters : "0", attempt);
}

/* Replaces secret-based authentication ({basic: {use: secret}}) by the secret. */
static int resolve_secret_auth(struct frame *fr, jv *v, jv *err)
{
    jv_kind k = jv_get_kind(*v);
    if (k == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(*v));
        for (int i = 0; i < n; i++) {
            jv item = jv_array_get(jv_copy(*v), i);
            if (resolve_secret_auth(fr, &item, err)) {
                jv_free(item);
                return CV_EFAULT;
            }
            *v = jv_array_set(*v, i, item);
        }
        return 0;
    }
    if (k != JV_KIND_OBJECT)
        return 0;
    jv keys = jv_keys_unsorted(jv_copy(*v));
    int rc = 0;
    jv_array_foreach(keys, i, key)
    {
        jv item = jv_object_get(jv_copy(*v), jv_copy(key));
        if (!rc && !strcmp(jv_string_value(key), "authentication") && jv_get_kind(item) == JV_KIND_OBJECT) {
            jv schemes = jv_keys_unsorted(jv_copy(item));
            jv_array_foreach(schemes, j, s)
            {
                jv sdef = jv_object_get(jv_copy(item), jv_copy(s));
                jv use = jv_get_kind(sdef) == JV_KIND_OBJECT ? jv_object_get(jv_copy(sdef), jv_string("use"))
                                                             : jv_invalid();
                if (!rc && jv_get_kind(use) == JV_KIND_STRING) {
                    jv secret = jv_object_get(jv_copy(fr->wfc->secrets), jv_copy(use));
                    if (jv_get_kind(secret) != JV_KIND_OBJECT) {
                        *err = cv__error_newf(CV_ERR_AUTHORIZATION, 403, "Authorization Error",
                                              "secret '%s' is not available to this workflow (declare it in "
                                              "use.secrets and provide it with --secrets)",
                                              jv_string_value(use));
                        rc = CV_EFAULT;
                        jv_free(secret);
                    } else {
                        item = jv_object_set(item, jv_copy(s), secret);
                    }
                }
                jv_free(use);
                jv_free(sdef);
                jv_free(s);
            }
            jv_free(schemes);
        } else if (!rc) {
            rc = resolve_secret_auth(fr, &item, err);
        }
        *v = jv_object_set(*v, key, item);
    }
    jv_free(keys);
    return rc;
}

static int start_effect(struct instance *in, struct fiber *fb, struct frame *fr, jv args, jv *err)
{
    struct effect *e = calloc(1, sizeof *e);
    if (!e) {
        jv_free(args);
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory");
        return CV_EFAULT;
    }
    e->kind = fr->task->kind;
    /* the I/O or effect thread must own values no other thread can reach (jv
     * reference counts are not atomic): hand it deep copies */
    e->args = cv__jv_deep_copy(args);
    e->input = cv__jv_deep_copy(jv_copy(fr->input));
    e->out = jv_null();
    e->authz = jv_null();
    e->note = jv_invalid();
    e->fiber = fb;
    e->inst = in;
    atomic_init(&e->cancel, 0);
    idempotency_key(in, fb, fr, e->idem, sizeof e->idem);
    e->env.hosts = in->rt->hosts;
    e->env.http = in->rt->http;
    e->env.models = in->rt->models;
    e->env.cancel = &e->cancel;
    int64_t d = fiber_deadline(in, fb);
    if (d)
        d += 100; /* our own deadline fires first: the timeout belongs to its frame */
    if (in->rt->effect_timeout_ms) {
        int64_t cap = cv__now_ms() + in->rt->effect_timeout_ms;
        if (!d || cap < d)
            d = cap;
    }
    e->env.deadline_ms = d;
    e->env.idempotency_key = e->idem;
    pthread_mutex_lock(&in->lock);
    in->in_flight++;
    pthread_mutex_unlock(&in->lock);
    atomic_fetch_add(&in->rt->effects_in_flight, 1);
    if (cv__effect_launch(e)) {
        pthread_mutex_lock(&in->lock);
        in->in_flight--;
        pthread_mutex_unlock(&in->lock);
        atomic_fetch_sub(&in->rt->effects_in_flight, 1);
        effect_free(e);
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "could not start the effect");
        return CV_EFAULT;
    }
    fb->effect = e;
    fb->state = FB_EFFECT;
    return 0;
}

/* ---- task phases ------------------------------------------------------------------- */

static const char *unsupported_reason(const struct cv_task *t)
{
    switch (t->kind) {
    case CV_T_LISTEN:
        return "listen needs an event bus: run the workflow on `conveyor serve` (events arrive with POST "
               "/v1/events or `conveyor events send`); `conveyor run` has no event source";
    case CV_T_RUN_CONTAINER:
        return "run: container needs a container engine, which this runtime does not drive";
    default:
        return "this call protocol (grpc, asyncapi, a2a, mcp, catalog functions) is not supported yet";
    }
}

/* Wall-clock microseconds: one clock read gives a task's start for its
 * position (ms) and for its duration (a hot path: one read per task end). */
static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A task frame ended (completed or faulted): its duration, for /metrics
 * (from its millisecond start when it was restored after a restart). */
static void task_timed(struct instance *in, const struct frame *fr)
{
    if (fr->type != F_TASK || !fr->task || !fr->task->kind_name)
        return;
    int64_t start = fr->started_us ? fr->started_us : fr->started_wall * 1000, us = wall_us() - start;
    cv__runtime_task_done(in->rt, fr->task->kind_name, us > 0 ? us : 0);
}

/* Fails the top task frame with `err` (instance = the task's reference). */
static void task_fail(struct instance *in, struct fiber *fb, jv err)
{
    struct frame *fr = top(fb);
    task_timed(in, fr);
    err = with_instance(err, fr->task ? fr->task->ref : NULL);
    if (fr->type == F_TASK)
        trace_end(in, fr->trace_idx, "faulted", "error", jv_copy(err));
    ret(fb, RET_ERROR, err, CV_THEN_CONTINUE, -1);
}

static void task_finish_value(struct fiber *fb, struct frame *fr, jv raw_output)
{
    jv_free(fr->output);
    fr->output = raw_output;
    fr->phase = P_FINISH;
    (void)fb;
}

static jv cloud_event(jv ev)
{
    if (jv_get_kind(ev) != JV_KIND_OBJECT) {
        jv_free(ev);
        ev = jv_object();
    }
    if (!jv_object_has(jv_copy(ev), jv_string("id"))) {
        char id[37];
        cv__uuid4(id);
        ev = jv_object_set(ev, jv_string("id"), jv_string(id));
    }
    if (!jv_object_has(jv_copy(ev), jv_string("specversion")))
        ev = jv_object_set(ev, jv_string("specversion"), jv_string("1.0"));
    if (!jv_object_has(jv_copy(ev), jv_string("time"))) {
        char ts[32];
        cv__rfc3339(cv__wall_ms(), ts);
        ev = jv_object_set(ev, jv_string("time"), jv_string(ts));
    }
    if (jv_object_has(jv_copy(ev), jv_string("data")) && !jv_object_has(jv_copy(ev), jv_string("datacontenttype")))
        ev = jv_object_set(ev, jv_string("datacontenttype"), jv_string("application/json"));
    return ev;
}

/* Does a caught error match the catch filter `with`? Equality on type,
 * status, instance, title, details (the filter's `details` is the error's
 * `detail`). The CTK's older type URIs are aliases of the specification's. */
static int error_matches(jv with /* borrowed */, jv err /* borrowed */)
{
    if (jv_get_kind(with) != JV_KIND_OBJECT)
        return 1;
    int ok = 1;
    jv_object_foreach(with, k, want)
    {
        const char *key = jv_string_value(k);
        jv have = jv_object_get(jv_copy(err), jv_string(!strcmp(key, "details") ? "detail" : key));
        if (!jv_is_valid(have)) {
            jv_free(have);
            have = jv_null();
        }
        int eq;
        if (!strcmp(key, "type") && jv_get_kind(want) == JV_KIND_STRING && jv_get_kind(have) == JV_KIND_STRING) {
            const char *w = jv_string_value(want), *h = jv_string_value(have);
            static const char old[] = "https://serverlessworkflow.io/dsl/errors/types/";
            char buf[512];
            if (!strncmp(w, old, sizeof old - 1)) {
                snprintf(buf, sizeof buf, "%s%s", CV_ERR_PREFIX, w + sizeof old - 1);
                w = buf;
            }
            eq = !strcmp(w, h);
        } else {
            eq = jv_equal(jv_copy(want), jv_copy(have));
        }
        if (!eq)
            ok = 0;
        jv_free(have);
        jv_free(k);
        jv_free(want);
    }
    return ok;
}

/* The delay before retry number n (1-based), in ms, before scaling. */
static int64_t retry_delay(const struct cv_retry *r, int64_t base, int n)
{
    double d = (double)base;
    if (r->backoff == 1)
        d = d * n;
    else if (r->backoff == 2)
        d = d * pow(2.0, n - 1);
    if (r->jitter_to_ms > r->jitter_from_ms || r->jitter_from_ms) {
        uint32_t rnd;
        char u[37];
        cv__uuid4(u); /* getrandom-backed; cheap enough at retry frequency */
        rnd = (uint32_t)strtoul(u + 28, NULL, 16);
        double span = (double)(r->jitter_to_ms - r->jitter_from_ms);
        d += (double)r->jitter_from_ms + (span > 0 ? span * ((double)rnd / 4294967295.0) : 0);
    }
    if (d > 9e15)
        d = 9e15;
    return (int64_t)d;
}

static void push_list(struct instance *in, struct fiber *fb, const struct cv_tasklist *l, jv input, jv scope)
{
    struct wfctx *w = top(fb)->wfc;
    struct frame *fr = push(fb, F_LIST, w, input, scope);
    if (!fr) {
        fiber_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
        return;
    }
    fr->list = l;
    fr->phase = L_NEXT;
}

static void push_task(struct instance *in, struct fiber *fb, const struct cv_task *t, struct wfctx *w, jv input,
                      jv scope)
{
    struct frame *fr = push(fb, F_TASK, w, input, scope);
    if (!fr) {
        fiber_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
        return;
    }
    fr->task = t;
    fr->phase = P_START;
}

static struct wfctx *wfc_new(struct instance *in, const struct cv_workflow *wf, jv raw_input, jv *err)
{
    struct wfctx *w = calloc(1, sizeof *w);
    if (!w) {
        jv_free(raw_input);
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory");
        return NULL;
    }
    w->wf = wf;
    w->refs = 0;
    w->context = jv_object();
    jv d = jv_object();
    d = jv_object_set(d, jv_string("id"), jv_string(in->id));
    d = jv_object_set(d, jv_string("definition"), jv_copy(wf->doc));
    d = jv_object_set(d, jv_string("input"), raw_input);
    d = jv_object_set(d, jv_string("startedAt"), cv__time_descriptor(cv__wall_ms()));
    w->descriptor = d;
    /* $secrets holds only the secrets the document declares in use.secrets */
    w->secrets = jv_object();
    jv_array_foreach(wf->secret_names, i, name)
    {
        jv v = jv_object_get(jv_copy(in->rt->secrets), jv_copy(name));
        if (!jv_is_valid(v)) {
            jv_free(v);
            if (!jv_is_valid(*err) || jv_get_kind(*err) == JV_KIND_NULL) {
                jv_free(*err);
                *err = cv__error_newf(CV_ERR_AUTHORIZATION, 403, "Authorization Error",
                                      "secret '%s' is declared in use.secrets but was not provided",
                                      jv_string_value(name));
            }
            jv_free(name);
            continue;
        }
        w->secrets = jv_object_set(w->secrets, name, v);
    }
    return w;
}

/* ---- listen: matching events against a consumption strategy ---------------------- */

/* What a listen hands on of an event (consumed): its data, the envelope, or
 * the data as received. */
static jv read_event(int mode, jv ev)
{
    if (mode == CV_READ_ENVELOPE)
        return ev;
    if (mode == CV_READ_RAW) {
        jv b64 = jv_object_get(jv_copy(ev), jv_string("data_base64"));
        if (jv_get_kind(b64) == JV_KIND_STRING) {
            jv_free(ev);
            return b64;
        }
        jv_free(b64);
    }
    jv data = jv_object_get(ev, jv_string("data"));
    return jv_is_valid(data) ? data : (jv_free(data), jv_null());
}

/* A literal filter value against an attribute: equal, or (a string with
 * regular-expression characters) a full match of it as a Perl-syntax regular
 * expression. (Not POSIX regcomp: libonig exports a regcomp of its own.) */
static int literal_matches(jv want /* borrowed */, jv have /* borrowed */)
{
    if (jv_equal(jv_copy(want), jv_copy(have)))
        return 1;
    if (jv_get_kind(want) != JV_KIND_STRING || jv_get_kind(have) != JV_KIND_STRING)
        return 0;
    const char *w = jv_string_value(want);
    if (!strpbrk(w, "*+?[](){}|^$\\"))
        return 0;
    return cv__regex_full_match(w, jv_string_value(have)) == 1;
}

/*
 * Does `ev` (borrowed) pass filter `f`? 1 yes, 0 no, -1 with *err (an
 * expression failed). Correlations without `expect` compare with the value
 * the first matching event gave (*corr: key -> value, updated on a match).
 */
/*
 * The attribute part of a filter: literal attributes, then `${ }`
 * predicates evaluated in `env` (an instance's frame, or none). 1, 0, or -1
 * with *err.
 */
static int attrs_match(struct cv_exprset *set, const struct cv_event_filter *f, jv ev /* borrowed */,
                       struct cv_evalenv *env, jv *err)
{
    int ok = 1;
    jv_object_foreach(f->with, k, want)
    {
        if (ok) {
            jv have = jv_object_get(jv_copy(ev), jv_copy(k));
            ok = jv_is_valid(have) && literal_matches(want, have);
            jv_free(have);
        }
        jv_free(k);
        jv_free(want);
    }
    for (int i = 0; ok && i < f->nexprs; i++) {
        jv have = jv_object_get(jv_copy(ev), jv_string(f->exprs[i].attr));
        if (!jv_is_valid(have)) {
            jv_free(have);
            have = jv_null();
        }
        jv r;
        if (cv__expr_eval(set, f->exprs[i].expr, have, env, &r)) {
            *err = r;
            return -1;
        }
        ok = cv__jv_truthy(r);
    }
    return ok;
}

static int filter_matches(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_event_filter *f,
                          jv ev, jv *corr, jv *err)
{
    struct cv_evalenv env;
    struct evalctx ec;
    env_init(&env, &ec, in, fb, fr);
    int ok = attrs_match(fr->wfc->wf->exprs, f, ev, &env, err);
    env_cleanup(&env);
    if (ok < 0)
        return -1;
    jv found = jv_object();
    for (int i = 0; ok && i < f->ncorr; i++) {
        const struct cv_correlation *c = &f->corr[i];
        jv got, want;
        if (eval_expr(in, fb, fr, c->from, jv_copy(ev), jv_null(), &got)) {
            jv_free(found);
            *err = got;
            return -1;
        }
        if (c->has_expect) {
            if (eval_tmpl(in, fb, fr, &c->expect, jv_copy(fr->input), &want)) {
                jv_free(got);
                jv_free(found);
                *err = want;
                return -1;
            }
        } else {
            want = jv_object_get(jv_copy(*corr), jv_string(c->key));
        }
        if (jv_is_valid(want))
            ok = jv_equal(jv_copy(got), want);
        else
            jv_free(want);
        found = jv_object_set(found, jv_string(c->key), got);
    }
    if (ok)
        *corr = jv_object_merge(*corr, found);
    else
        jv_free(found);
    return ok;
}

/*
 * Offers `ev` to strategy `s` whose progress is `st` (an object: matched
 * filters, correlation values, how many consumed). Returns 1 when `ev` is
 * consumed, 0 when not, -1 with *err. *complete is set when the strategy is
 * satisfied (for `any` with an `until` expression, the caller decides).
 */
static int strategy_offer(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_strategy *s,
                          jv *st, jv ev, int *complete, jv *err)
{
    jv corr = jv_object_get(jv_copy(*st), jv_string("corr"));
    if (!jv_is_valid(corr)) {
        jv_free(corr);
        corr = jv_object();
    }
    jv matched = jv_object_get(jv_copy(*st), jv_string("matched"));
    if (jv_get_kind(matched) != JV_KIND_ARRAY) {
        jv_free(matched);
        matched = jv_array();
        for (int i = 0; i < s->n; i++)
            matched = jv_array_append(matched, jv_false());
    }
    int took = 0, rc = 0;
    if (s->mode == CV_LISTEN_ANY && s->n == 0) {
        took = 1; /* `any: []`: every event */
    } else {
        for (int i = 0; i < s->n && !took && rc >= 0; i++) {
            jv m = jv_array_get(jv_copy(matched), i);
            int done = jv_get_kind(m) == JV_KIND_TRUE;
            jv_free(m);
            if (done && s->mode == CV_LISTEN_ALL)
                continue;
            rc = filter_matches(in, fb, fr, &s->filters[i], ev, &corr, err);
            if (rc > 0) {
                took = 1;
                matched = jv_array_set(matched, i, jv_true());
            }
        }
    }
    if (rc < 0) {
        jv_free(corr);
        jv_free(matched);
        return -1;
    }
    if (took) {
        *st = jv_object_set(*st, jv_string("corr"), corr);
        if (s->mode == CV_LISTEN_ALL) {
            int all = 1;
            jv_array_foreach(matched, i, m)
            {
                all = all && jv_get_kind(m) == JV_KIND_TRUE;
                jv_free(m);
            }
            *complete = all;
        } else {
            *complete = 1;
        }
        *st = jv_object_set(*st, jv_string("matched"), matched);
    } else {
        jv_free(corr);
        jv_free(matched);
    }
    return took;
}

static jv no_var(void *ud, int var)
{
    (void)ud;
    (void)var;
    return jv_null();
}

int cv__event_matches(const cv_workflow *wf, const struct cv_event_filter *f, jv ev, jv *err)
{
    struct cv_evalenv env;
    for (int v = 0; v < CV_VAR_COUNT; v++)
        env.vars[v] = jv_invalid();
    env.scope = jv_object();
    env.materialize = no_var;
    env.ud = NULL;
    int ok = attrs_match(wf->exprs, f, ev, &env, err);
    for (int v = 0; v < CV_VAR_COUNT; v++)
        jv_free(env.vars[v]);
    jv_free(env.scope);
    return ok;
}

static int consumed_before(struct instance *in, double seq)
{
    int seen = 0;
    jv_array_foreach(in->consumed, i, x)
    {
        seen = seen || jv_number_value(x) == seq;
        jv_free(x);
    }
    return seen;
}

/*
 * Offers one event ({seq, event}, borrowed) to the listen of task frame
 * `fr`. Consumed events go to the frame's list (and to the foreach queue);
 * when the strategy is satisfied, the frame is marked done and the fiber
 * runs again.
 */
static void listen_offer(struct instance *in, struct fiber *fb, struct frame *fr, jv entry)
{
    const struct cv_task *t = fr->task;
    jv seqv = jv_object_get(jv_copy(entry), jv_string("seq"));
    double seq = jv_get_kind(seqv) == JV_KIND_NUMBER ? jv_number_value(seqv) : 0;
    jv_free(seqv);
    jv cur = jv_object_get(jv_copy(fr->aux), jv_string("cursor"));
    double cursor = jv_get_kind(cur) == JV_KIND_NUMBER ? jv_number_value(cur) : 0;
    jv_free(cur);
    jv done = jv_object_get(jv_copy(fr->aux), jv_string("done"));
    int finished = jv_get_kind(done) == JV_KIND_TRUE;
    jv_free(done);
    if (finished || seq <= cursor || consumed_before(in, seq))
        return;
    fr->aux = jv_object_set(fr->aux, jv_string("cursor"), jv_number(seq));
    jv ev = jv_object_get(jv_copy(entry), jv_string("event"));
    const struct cv_strategy *s = &t->u.listen.to;
    int complete = 0, for_until = 0;
    jv err = jv_invalid();
    int took = 0;
    /* an `until` strategy first: what it consumes stays out of the output */
    if (s->until) {
        jv ust = jv_object_get(jv_copy(fr->aux), jv_string("until"));
        if (!jv_is_valid(ust)) {
            jv_free(ust);
            ust = jv_object();
        }
        took = strategy_offer(in, fb, fr, s->until, &ust, ev, &complete, &err);
        fr->aux = jv_object_set(fr->aux, jv_string("until"), ust);
        for_until = took > 0;
    }
    if (took == 0) {
        jv mst = jv_object_get(jv_copy(fr->aux), jv_string("main"));
        if (!jv_is_valid(mst)) {
            jv_free(mst);
            mst = jv_object();
        }
        int main_complete = 0;
        took = strategy_offer(in, fb, fr, s, &mst, ev, &main_complete, &err);
        fr->aux = jv_object_set(fr->aux, jv_string("main"), mst);
        if (took > 0 && s->mode == CV_LISTEN_ANY && (s->until || s->until_expr >= 0))
            main_complete = 0; /* `any` with `until`: the until decides */
        complete = main_complete;
    }
    if (took < 0) {
        jv_free(ev);
        fr->phase = P_LISTEN;
        fb->state = FB_RUNNABLE;
        task_fail(in, fb, err);
        return;
    }
    jv_free(err);
    if (took == 0) {
        jv_free(ev);
        return;
    }
    in->consumed = jv_array_append(in->consumed, jv_number(seq));
    in->dirty = 1;
    if (!for_until) {
        jv evs = jv_object_get(jv_copy(fr->aux), jv_string("events"));
        evs = jv_array_append(evs, jv_copy(ev));
        if (s->mode == CV_LISTEN_ANY && s->until_expr >= 0 && !s->until) {
            jv items = jv_array();
            jv_array_foreach(evs, i, e) items = jv_array_append(items, read_event(t->u.listen.read, e));
            jv r;
            if (eval_expr(in, fb, fr, s->until_expr, items, jv_null(), &r)) {
                jv_free(evs);
                jv_free(ev);
                fr->phase = P_LISTEN;
                fb->state = FB_RUNNABLE;
                task_fail(in, fb, r);
                return;
            }
            complete = cv__jv_truthy(r);
        }
        fr->aux = jv_object_set(fr->aux, jv_string("events"), evs);
        if (t->u.listen.foreach_do) {
            jv pending = jv_object_get(jv_copy(fr->aux), jv_string("pending"));
            fr->aux = jv_object_set(fr->aux, jv_string("pending"), jv_array_append(pending, jv_copy(ev)));
        }
    }
    jv_free(ev);
    if (complete)
        fr->aux = jv_object_set(fr->aux, jv_string("done"), jv_true());
    /* the fiber runs again when there is something to do: foreach tasks, or the end */
    if (fr == top(fb) && (complete || t->u.listen.foreach_do)) {
        fr->phase = P_LISTEN_EACH;
        fb->state = FB_RUNNABLE;
    }
}

/* The next thing a listen does once woken: run the foreach tasks of the
 * next pending event, finish (strategy satisfied), or wait again. */
static void listen_next(struct instance *in, struct fiber *fb, struct frame *fr)
{
    const struct cv_task *t = fr->task;
    jv pending = jv_object_get(jv_copy(fr->aux), jv_string("pending"));
    if (t->u.listen.foreach_do && jv_get_kind(pending) == JV_KIND_ARRAY && jv_array_length(jv_copy(pending)) > 0) {
        jv ev = jv_array_get(jv_copy(pending), 0);
        jv nv = jv_object_get(jv_copy(fr->aux), jv_string("n"));
        int n = jv_get_kind(nv) == JV_KIND_NUMBER ? (int)jv_number_value(nv) : 0;
        jv_free(nv);
        fr->aux = jv_object_set(fr->aux, jv_string("pending"), jv_array_slice(pending, 1, INT_MAX));
        fr->aux = jv_object_set(fr->aux, jv_string("n"), jv_number(n + 1));
        jv item = read_event(t->u.listen.read, ev);
        jv scope = jv_object_set(jv_copy(fr->scope), jv_string(t->u.listen.item), jv_copy(item));
        scope = jv_object_set(scope, jv_string(t->u.listen.at), jv_number(n));
        fr->phase = P_LISTEN_EACH_WAIT;
        push_list(in, fb, t->u.listen.foreach_do, item, scope);
        return;
    }
    jv_free(pending);
    jv done = jv_object_get(jv_copy(fr->aux), jv_string("done"));
    int finished = jv_get_kind(done) == JV_KIND_TRUE;
    jv_free(done);
    if (!finished) {
        fr->phase = P_LISTEN;
        fb->state = FB_EVENT;
        return;
    }
    jv evs = jv_object_get(jv_copy(fr->aux), jv_string("events"));
    jv out = jv_array();
    jv_array_foreach(evs, i, e) out = jv_array_append(out, read_event(t->u.listen.read, e));
    jv_free(evs);
    task_finish_value(fb, fr, out);
}

/* A foreach iteration ended: its output is dropped (the listen's output is
 * the events it consumed); the next pending event, or wait again. */
static void listen_each_done(struct instance *in, struct fiber *fb, struct frame *fr, jv val)
{
    jv_free(val);
    fr->phase = P_LISTEN_EACH;
    listen_next(in, fb, fr);
}

/* Offers the inbox to every listen still waiting (innermost first). */
static void offer_inbox(struct instance *in)
{
    if (jv_get_kind(in->inbox) != JV_KIND_ARRAY || jv_array_length(jv_copy(in->inbox)) == 0)
        return;
    jv inbox = in->inbox;
    in->inbox = jv_array();
    jv_array_foreach(inbox, i, entry)
    {
        for (int f = 0; f < in->nfibers; f++) {
            struct fiber *fb = in->fibers[f];
            if (fb->state == FB_DONE)
                continue;
            for (int k = fb->nframes - 1; k >= 0; k--) {
                struct frame *fr = &fb->frames[k];
                if (fr->type == F_TASK && fr->task->kind == CV_T_LISTEN &&
                    (fr->phase == P_LISTEN || fr->phase == P_LISTEN_EACH || fr->phase == P_LISTEN_EACH_WAIT))
                    listen_offer(in, fb, fr, entry);
                if (fb->state == FB_DONE)
                    break;
            }
        }
        jv_free(entry);
    }
    jv_free(inbox);
}

/* ---- review tasks (`call: review`, docs/tasks.md) ------------------------------------
 *
 * The task is opened by the instance's next checkpoint (tasks_add: the store
 * inserts it in the same transaction, idempotently on its id), and the frame
 * then waits on the listen build.c made for it (REF/review): one completion
 * event whose subject is the task id. A `due` time is that listen's
 * deadline; when it passes, `escalate` says what happens: `reassign` (the
 * checkpoint escalates the task in the store; the wait goes on) or `raise`
 * (the checkpoint cancels the task; a timeout error the workflow can catch).
 * A review abandoned before its task completes (its branch cancelled, an
 * enclosing timeout) cancels the task with the next checkpoint.
 */

#define REVIEW_NOTE(what) "io.conveyor.review." what ".v1"

static jv aux_get(const struct frame *fr, const char *k)
{
    return jv_get_kind(fr->aux) == JV_KIND_OBJECT ? jv_object_get(jv_copy(fr->aux), jv_string(k)) : jv_invalid();
}

static void review_note(struct instance *in, const struct frame *fr, const char *type, jv data)
{
    in->notes = jv_array_append(in->notes, JV_OBJECT(jv_string("type"), jv_string(type), jv_string("task"),
                                                     jv_string(fr->task->ref), jv_string("data"), data));
}

static void review_abandon(struct instance *in, struct frame *fr)
{
    if (fr->type != F_TASK || !fr->task || fr->task->kind != CV_T_CALL_CATALOG || !fr->task->u.effect.wait ||
        fr->phase != P_REVIEW_WAIT)
        return;
    jv id = aux_get(fr, "task");
    if (jv_get_kind(id) == JV_KIND_STRING) {
        review_note(in, fr, REVIEW_NOTE("cancelled"), JV_OBJECT(jv_string("id"), jv_copy(id)));
        in->tasks_cancel = jv_array_append(in->tasks_cancel, id);
        in->dirty = 1;
    } else {
        jv_free(id);
    }
    fr->phase = P_FINISH; /* once */
}

/* A task id from the effect's idempotency key (instance, reference,
 * iterations, attempt) and the number of reviews the instance opened before
 * (kept in its position), shaped as a UUID: the same when a checkpoint is
 * redone after a crash, a new one each time a review runs (a loop by `then`,
 * the same subflow called twice). */
static void review_task_id(struct instance *in, struct fiber *fb, struct frame *fr, char id[37])
{
    char key[560], hex[65];
    idempotency_key(in, fb, fr, key, 512);
    size_t used = strlen(key);
    snprintf(key + used, sizeof key - used, "#%d", in->reviews);
    cv_ml_sha256_hex(key, strlen(key), hex);
    static const char variant[] = "89ab";
    int v = hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0';
    snprintf(id, 37, "%.8s-%.4s-5%.3s-%c%.3s-%.12s", hex, hex + 8, hex + 13, variant[v & 3], hex + 17, hex + 20);
}

static jv review_config_error(const char *fmt, const char *arg)
{
    return cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error", fmt, arg);
}

/* The form's fields with `prediction: ${ .classification }` (a classify or
 * score output) spelled out: model, predicted, confidence, and the value
 * prefilled with the prediction unless the field gives one. */
static jv review_form(jv form)
{
    jv fields = jv_get_kind(form) == JV_KIND_OBJECT ? jv_object_get(jv_copy(form), jv_string("fields")) : jv_invalid();
    if (jv_get_kind(fields) != JV_KIND_ARRAY) {
        jv_free(fields);
        return form;
    }
    jv out = jv_array();
    jv_array_foreach(fields, i, f)
    {
        jv p = jv_get_kind(f) == JV_KIND_OBJECT ? jv_object_get(jv_copy(f), jv_string("prediction")) : jv_invalid();
        if (jv_get_kind(p) == JV_KIND_OBJECT) {
            f = jv_object_delete(f, jv_string("prediction"));
            jv label = jv_object_get(jv_copy(p), jv_string("label"));
            if (!jv_is_valid(label)) {
                jv_free(label);
                label = jv_object_get(jv_copy(p), jv_string("score"));
            }
            static const char *const keys[] = {"model", "confidence"};
            for (int k = 0; k < 2; k++) {
                jv x = jv_object_get(jv_copy(p), jv_string(keys[k]));
                if (jv_is_valid(x) && !jv_object_has(jv_copy(f), jv_string(keys[k])))
                    f = jv_object_set(f, jv_string(keys[k]), x);
                else
                    jv_free(x);
            }
            if (jv_is_valid(label)) {
                if (!jv_object_has(jv_copy(f), jv_string("value")))
                    f = jv_object_set(f, jv_string("value"), jv_copy(label));
                if (!jv_object_has(jv_copy(f), jv_string("predicted")))
                    f = jv_object_set(f, jv_string("predicted"), jv_copy(label));
            }
            jv_free(label);
        }
        jv_free(p);
        out = jv_array_append(out, f);
    }
    jv_free(fields);
    return jv_object_set(form, jv_string("fields"), out);
}

/* Checks `escalate` (borrowed): null, {reassign: {assignee?, role?}} or {raise: true}. */
static const char *review_escalate_problem(jv esc)
{
    if (jv_get_kind(esc) == JV_KIND_INVALID || jv_get_kind(esc) == JV_KIND_NULL)
        return NULL;
    if (jv_get_kind(esc) != JV_KIND_OBJECT)
        return "review: escalate must be an object ({reassign: {assignee?, role?}} or {raise: true})";
    int n = 0, bad = 0;
    jv_object_foreach(esc, k, x)
    {
        const char *key = jv_string_value(k);
        if (!strcmp(key, "reassign"))
            bad |= jv_get_kind(x) != JV_KIND_OBJECT, n++;
        else if (!strcmp(key, "raise"))
            bad |= jv_get_kind(x) != JV_KIND_TRUE, n++;
        else
            bad = 1;
        jv_free(k);
        jv_free(x);
    }
    if (bad || n != 1)
        return "review: escalate must be exactly one of {reassign: {assignee?, role?}} or {raise: true}";
    return NULL;
}

/* Pushes the listen for the task's completion, with the due time as its
 * deadline unless the task was escalated already. */
static void review_wait(struct instance *in, struct fiber *fb, struct frame *fr)
{
    const struct cv_task *t = fr->task;
    jv id = aux_get(fr, "task"), due = aux_get(fr, "dueMs"), esc = aux_get(fr, "escalate"),
       done = aux_get(fr, "escalated");
    int armed = jv_get_kind(esc) == JV_KIND_OBJECT && jv_get_kind(done) != JV_KIND_TRUE; /* `due` alone: shown only */
    fr->phase = P_REVIEW_WAIT;
    int below = fb->nframes; /* push may move the frames: `fr` is not looked at after it */
    push_task(in, fb, t->u.effect.wait, fr->wfc, JV_OBJECT(jv_string("task"), id), jv_object());
    if (jv_get_kind(due) == JV_KIND_NUMBER && armed && fb->nframes > below) {
        int64_t left = (int64_t)jv_number_value(due) - cv__wall_ms();
        top(fb)->deadline = cv__now_ms() + (left > 0 ? left : 0);
    }
    jv_free(due);
    jv_free(esc);
    jv_free(done);
}

static void review_open(struct instance *in, struct fiber *fb, struct frame *fr, jv args)
{
    const struct cv_task *t = fr->task;
    if (!cv__runtime_has_bus()) {
        jv_free(args);
        task_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 501, "Not Implemented",
                                        "call: review needs the durable engine (conveyor serve): a person "
                                        "completes the task through its inbox"));
        return;
    }
    if (jv_get_kind(args) != JV_KIND_OBJECT) {
        jv_free(args);
        task_fail(in, fb, review_config_error("review: `with` must be an object%s", ""));
        return;
    }
    static const char *const allowed[] = {"title", "description", "data",     "form",
                                          "assignee", "role",     "priority", "due", "escalate"};
    jv bad = jv_invalid();
    jv_object_foreach(args, k, x)
    {
        int ok = 0;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
            ok = ok || !strcmp(jv_string_value(k), allowed[i]);
        if (!ok && !jv_is_valid(bad))
            bad = jv_copy(k);
        jv_free(k);
        jv_free(x);
    }
    if (jv_is_valid(bad)) {
        jv e = review_config_error("review: unknown argument '%s' (title, description, data, form, assignee, "
                                   "role, priority, due, escalate)",
                                   jv_string_value(bad));
        jv_free(bad);
        jv_free(args);
        task_fail(in, fb, e);
        return;
    }
    jv_free(bad);
    int64_t now = cv__wall_ms();
    /* due: a time (RFC 3339), or a duration from now (ISO 8601 or the DSL's object) */
    jv due = jv_object_get(jv_copy(args), jv_string("due"));
    if ((jv_get_kind(due) == JV_KIND_STRING && jv_string_value(due)[0] == 'P') || jv_get_kind(due) == JV_KIND_OBJECT) {
        int64_t ms;
        const char *why;
        if (cv__duration_ms(due, &ms, &why)) {
            jv e = review_config_error("review: due: %s", why);
            jv_free(due);
            jv_free(args);
            task_fail(in, fb, e);
            return;
        }
        char ts[32];
        cv__rfc3339(now + scaled(in, ms), ts);
        args = jv_object_set(args, jv_string("due"), jv_string(ts));
    }
    jv_free(due);
    jv esc = jv_object_get(jv_copy(args), jv_string("escalate"));
    const char *problem = review_escalate_problem(esc);
    int has_due = jv_object_has(jv_copy(args), jv_string("due"));
    if (!problem && jv_get_kind(esc) == JV_KIND_OBJECT && !has_due)
        problem = "review: escalate needs a due time";
    if (problem) {
        jv_free(esc);
        jv_free(args);
        task_fail(in, fb, review_config_error("%s", problem));
        return;
    }
    if (jv_object_has(jv_copy(args), jv_string("form")))
        args = jv_object_set(args, jv_string("form"), review_form(jv_object_get(jv_copy(args), jv_string("form"))));
    char id[37];
    review_task_id(in, fb, fr, id);
    const cv_workflow *wf = fr->wfc->wf;
    args = jv_object_set(args, jv_string("id"), jv_string(id));
    args = jv_object_set(args, jv_string("instance"), jv_string(in->id));
    args = jv_object_set(args, jv_string("task"), jv_string(t->ref));
    args = jv_object_set(args, jv_string("workflow"),
                         JV_OBJECT(jv_string("namespace"), jv_string(wf->ns ? wf->ns : ""), jv_string("name"),
                                   jv_string(wf->name ? wf->name : ""), jv_string("version"),
                                   jv_string(wf->version ? wf->version : "")));
    jv task, err = jv_invalid();
    if (cv_task_new(args, now, &task, &err)) {
        jv e = cv__error_newf(CV_ERR_VALIDATION, 400, "Validation Error", "review: %s",
                              jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "the task is not valid");
        jv_free(err);
        jv_free(esc);
        task_fail(in, fb, e);
        return;
    }
    jv_free(err);
    jv due_ms = jv_null();
    jv dts = jv_object_get(jv_copy(task), jv_string("due"));
    int64_t dm;
    if (jv_get_kind(dts) == JV_KIND_STRING && !cv__task_parse_time(jv_string_value(dts), &dm))
        due_ms = jv_number((double)dm);
    jv_free(dts);
    review_note(in, fr, REVIEW_NOTE("opened"),
                JV_OBJECT(jv_string("id"), jv_string(id), jv_string("title"),
                          jv_object_get(jv_copy(task), jv_string("title")), jv_string("assignee"),
                          jv_object_get(jv_copy(task), jv_string("assignee")), jv_string("role"),
                          jv_object_get(jv_copy(task), jv_string("role")), jv_string("due"),
                          jv_object_get(jv_copy(task), jv_string("due"))));
    in->tasks_open = jv_array_append(in->tasks_open, task);
    in->reviews++;
    in->dirty = 1;
    jv_free(fr->aux);
    fr->aux = JV_OBJECT(jv_string("task"), jv_string(id), jv_string("dueMs"), due_ms, jv_string("escalate"),
                        jv_is_valid(esc) ? esc : jv_null(), jv_string("escalated"), jv_false());
    review_wait(in, fb, fr);
}

/* The listen above the review returned: the completion's data, or an error
 * (its deadline, the due time, passed). */
static void review_returned(struct instance *in, struct fiber *fb, struct frame *fr, int kind, jv val)
{
    const struct cv_task *t = fr->task;
    jv id = aux_get(fr, "task");
    const char *tid = jv_get_kind(id) == JV_KIND_STRING ? jv_string_value(id) : "";
    if (kind != RET_ERROR) {
        jv data = jv_get_kind(val) == JV_KIND_ARRAY && jv_array_length(jv_copy(val)) > 0 ? jv_array_get(val, 0)
                                                                                        : (jv_free(val), jv_null());
        jv done = jv_get_kind(data) == JV_KIND_OBJECT ? jv_copy(data) : jv_object();
        done = jv_object_delete(done, jv_string("task"));
        done = jv_object_delete(done, jv_string("instance"));
        review_note(in, fr, REVIEW_NOTE("completed"), jv_object_set(done, jv_string("id"), jv_copy(id)));
        jv_free(id);
        fr->phase = P_FINISH;
        task_finish_value(fb, fr, data);
        return;
    }
    jv type = jv_object_get(jv_copy(val), jv_string("type")), inst = jv_object_get(jv_copy(val), jv_string("instance"));
    int due_passed = jv_get_kind(type) == JV_KIND_STRING && jv_get_kind(inst) == JV_KIND_STRING &&
                     strstr(jv_string_value(type), "/timeout") && !strcmp(jv_string_value(inst), t->u.effect.wait->ref);
    jv_free(type);
    jv_free(inst);
    if (!due_passed) {
        review_abandon(in, fr);
        jv_free(id);
        task_fail(in, fb, val);
        return;
    }
    jv_free(val);
    jv esc = aux_get(fr, "escalate");
    jv reassign = jv_get_kind(esc) == JV_KIND_OBJECT ? jv_object_get(jv_copy(esc), jv_string("reassign")) : jv_invalid();
    jv_free(esc);
    if (jv_get_kind(reassign) == JV_KIND_OBJECT) {
        review_note(in, fr, REVIEW_NOTE("escalated"), JV_OBJECT(jv_string("id"), jv_copy(id), jv_string("to"),
                                                                jv_copy(reassign)));
        in->tasks_escalate = jv_array_append(in->tasks_escalate,
                                             JV_OBJECT(jv_string("id"), id, jv_string("to"), reassign));
        in->dirty = 1;
        fr->aux = jv_object_set(fr->aux, jv_string("escalated"), jv_true());
        review_wait(in, fb, fr);
        return;
    }
    jv_free(reassign);
    jv e = cv__error_newf(CV_ERR_TIMEOUT, 408, "Timeout", "review task %s was not completed by its due time", tid);
    jv_free(id);
    review_abandon(in, fr); /* escalate: {raise: true}: the task is cancelled */
    task_fail(in, fb, e);
}

/* One step of a task frame. */
static void step_task(struct instance *in, struct fiber *fb)
{
    struct frame *fr = top(fb);
    const struct cv_task *t = fr->task;
    jv v, err;

    /* a frame below handed us a result */
    if (fb->ret != RET_NONE) {
        int kind = fb->ret;
        jv val = fb->ret_value;
        int exited = fb->ret_then_kind == CV_THEN_EXIT;
        fb->ret = RET_NONE;
        fb->ret_value = jv_null();
        if (kind == RET_END) {
            trace_end(in, fr->trace_idx, "completed", "output", jv_copy(val));
            ret(fb, RET_END, val, CV_THEN_END, -1);
            return;
        }
        switch (fr->phase) {
        case P_EXT_BEFORE:
            if (kind == RET_ERROR) {
                task_fail(in, fb, val);
                return;
            }
            if (exited) { /* `then: exit` in before: skip the task, the injected output stands */
                task_finish_value(fb, fr, val);
                return;
            }
            jv_free(val);
            fr->idx++;
            return;
        case P_EXT_AFTER:
            if (kind == RET_ERROR) {
                task_fail(in, fb, val);
                return;
            }
            jv_free(val); /* an `after` list runs for its effects; the task output stands */
            fr->idx++;
            return;
        case P_WAIT_CHILD:
            if (kind == RET_ERROR) {
                if (t->kind == CV_T_CALL_FUNCTION || t->kind == CV_T_CALL_REMOTE) {
                    /* errors inside a function body are reported at the calling task */
                    jv inst = jv_object_get(jv_copy(val), jv_string("instance"));
                    if (jv_get_kind(inst) == JV_KIND_STRING &&
                        (t->kind == CV_T_CALL_REMOTE || !strncmp(jv_string_value(inst), "/use/functions/", 15)))
                        val = jv_object_set(val, jv_string("instance"), jv_string(t->ref));
                    jv_free(inst);
                }
                task_fail(in, fb, val);
                return;
            }
            task_finish_value(fb, fr, val);
            return;
        case P_FOR_WAIT:
            if (kind == RET_ERROR) {
                task_fail(in, fb, val);
                return;
            }
            jv_free(fr->output);
            fr->output = val; /* the next iteration's input */
            fr->idx++;
            fr->phase = P_FOR_NEXT;
            return;
        case P_TRY_WAIT: {
            if (kind != RET_ERROR) {
                task_finish_value(fb, fr, val);
                return;
            }
            /* is it caught? */
            jv err_v = val;
            jv scope_extra = jv_object_set(jv_object(), jv_string(t->u.try_.as), jv_copy(err_v));
            int caught = error_matches(t->u.try_.with, err_v);
            if (caught && t->u.try_.when >= 0) {
                if (eval_expr(in, fb, fr, t->u.try_.when, jv_copy(err_v), jv_copy(scope_extra), &v)) {
                    jv_free(err_v);
                    jv_free(scope_extra);
                    task_fail(in, fb, v);
                    return;
                }
                caught = cv__jv_truthy(v);
            }
            if (caught && t->u.try_.except_when >= 0) {
                if (eval_expr(in, fb, fr, t->u.try_.except_when, jv_copy(err_v), jv_copy(scope_extra), &v)) {
                    jv_free(err_v);
                    jv_free(scope_extra);
                    task_fail(in, fb, v);
                    return;
                }
                caught = !cv__jv_truthy(v);
            }
            if (!caught) {
                jv_free(scope_extra);
                /* propagate with its original instance */
                trace_end(in, fr->trace_idx, "faulted", "error", jv_copy(err_v));
                ret(fb, RET_ERROR, err_v, CV_THEN_CONTINUE, -1);
                return;
            }
            const struct cv_retry *r = &t->u.try_.retry;
            int retry = r->set;
            if (retry && r->when >= 0) {
                if (eval_expr(in, fb, fr, r->when, jv_copy(err_v), jv_copy(scope_extra), &v)) {
                    jv_free(err_v);
                    jv_free(scope_extra);
                    task_fail(in, fb, v);
                    return;
                }
                retry = cv__jv_truthy(v);
            }
            if (retry && r->except_when >= 0) {
                if (eval_expr(in, fb, fr, r->except_when, jv_copy(err_v), jv_copy(scope_extra), &v)) {
                    jv_free(err_v);
                    jv_free(scope_extra);
                    task_fail(in, fb, v);
                    return;
                }
                retry = !cv__jv_truthy(v);
            }
            if (retry && r->limit_count >= 0 && fr->attempt >= r->limit_count)
                retry = 0;
            int64_t delay = 0;
            if (retry) {
                int64_t base = 0;
                if (r->delay.set && duration_of(in, fb, fr, &r->delay, &base, &v)) {
                    jv_free(err_v);
                    jv_free(scope_extra);
                    task_fail(in, fb, v);
                    return;
                }
                delay = scaled(in, retry_delay(r, base, fr->attempt + 1));
                if (r->limit_total_ms &&
                    cv__now_ms() + delay - fr->first_attempt_ms > scaled(in, r->limit_total_ms))
                    retry = 0;
            }
            if (retry) {
                jv_free(scope_extra);
                jv_free(fr->aux);
                fr->aux = err_v;
                fr->attempt++;
                fr->phase = P_TRY_RETRY;
                fb->state = FB_TIMER;
                fb->wake_at = cv__now_ms() + delay;
                return;
            }
            if (t->u.try_.catch_do) {
                jv_free(fr->aux);
                fr->aux = err_v;
                fr->phase = P_CATCH_WAIT;
                push_list(in, fb, t->u.try_.catch_do, jv_copy(fr->input),
                          jv_object_merge(jv_copy(fr->scope), scope_extra));
                return;
            }
            jv_free(err_v);
            jv_free(scope_extra);
            task_finish_value(fb, fr, jv_copy(fr->input));
            return;
        }
        case P_CATCH_WAIT:
            if (kind == RET_ERROR) {
                task_fail(in, fb, val);
                return;
            }
            task_finish_value(fb, fr, val);
            return;
        case P_LISTEN_EACH_WAIT:
            if (kind == RET_ERROR) {
                task_fail(in, fb, val);
                return;
            }
            listen_each_done(in, fb, fr, val);
            return;
        case P_REVIEW_WAIT:
            review_returned(in, fb, fr, kind, val);
            return;
        default:
            jv_free(val);
            task_fail(in, fb,
                      cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "internal: unexpected result for task"));
            return;
        }
    }

    switch (fr->phase) {
    case P_START:
        fr->started_us = wall_us();
        fr->started_wall = fr->started_us / 1000;
        fr->trace_idx = trace_start(in, t);
        if (t->if_expr >= 0) {
            if (eval_expr(in, fb, fr, t->if_expr, jv_copy(fr->raw_input), jv_null(), &v)) {
                task_fail(in, fb, v);
                return;
            }
            if (!cv__jv_truthy(v)) {
                trace_end(in, fr->trace_idx, "skipped", NULL, jv_null());
                ret(fb, RET_NORMAL, jv_copy(fr->raw_input), CV_THEN_CONTINUE, -1);
                return;
            }
        }
        err = check_schema(t->input.schema, fr->raw_input, "the task input");
        if (jv_is_valid(err) && jv_get_kind(err) != JV_KIND_NULL) {
            task_fail(in, fb, err);
            return;
        }
        jv_free(err);
        if (t->input.has_expr) {
            if (eval_tmpl(in, fb, fr, &t->input.expr, jv_copy(fr->raw_input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            jv_free(fr->input);
            fr->input = v;
        } else {
            jv_free(fr->input);
            fr->input = jv_copy(fr->raw_input);
        }
        if (t->timeout.set) {
            int64_t ms;
            if (duration_of(in, fb, fr, &t->timeout, &ms, &v)) {
                task_fail(in, fb, v);
                return;
            }
            fr->deadline = cv__now_ms() + scaled(in, ms);
        }
        fr->then_kind = t->then_kind;
        fr->then_target = t->then_target;
        fr->idx = 0;
        fr->phase = t->nexts ? P_EXT_BEFORE : P_BODY;
        return;

    case P_EXT_BEFORE:
        while (fr->idx < t->nexts) {
            const struct cv_extension *e = t->exts[fr->idx];
            int applies = 1;
            if (e->when >= 0) {
                if (eval_expr(in, fb, fr, e->when, jv_copy(fr->input), jv_null(), &v)) {
                    /* a failing `when` means the extension does not apply (its
                     * expressions see a task descriptor that may lack fields) */
                    jv_free(v);
                    applies = 0;
                } else {
                    applies = cv__jv_truthy(v);
                }
            }
            if (applies && e->before) {
                push_list(in, fb, e->before, jv_copy(fr->input), jv_copy(fr->scope));
                return;
            }
            fr->idx++;
        }
        fr->phase = P_BODY;
        return;

    case P_BODY:
        switch (t->kind) {
        case CV_T_SET:
            if (eval_tmpl(in, fb, fr, &t->u.set.value, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            task_finish_value(fb, fr, v);
            return;
        case CV_T_SWITCH: {
            int chosen = -1;
            for (int i = 0; i < t->u.sw.n && chosen < 0; i++) {
                const struct cv_switch_case *c = &t->u.sw.cases[i];
                if (c->when < 0)
                    continue;
                if (eval_expr(in, fb, fr, c->when, jv_copy(fr->input), jv_null(), &v)) {
                    task_fail(in, fb, v);
                    return;
                }
                if (cv__jv_truthy(v))
                    chosen = i;
            }
            if (chosen < 0) /* the default case, if any */
                for (int i = 0; i < t->u.sw.n && chosen < 0; i++)
                    if (t->u.sw.cases[i].when < 0)
                        chosen = i;
            if (chosen >= 0) {
                fr->then_kind = t->u.sw.cases[chosen].then_kind;
                fr->then_target = t->u.sw.cases[chosen].then_target;
            }
            task_finish_value(fb, fr, jv_copy(fr->input));
            return;
        }
        case CV_T_DO:
            fr->phase = P_WAIT_CHILD;
            push_list(in, fb, t->u.do_.list, jv_copy(fr->input), jv_copy(fr->scope));
            return;
        case CV_T_FOR:
            if (eval_expr(in, fb, fr, t->u.for_.in_expr, jv_copy(fr->input), jv_null(), &v)) {
                task_fail(in, fb, v);
                return;
            }
            if (jv_get_kind(v) == JV_KIND_NULL) {
                jv_free(v);
                v = jv_array();
            } else if (jv_get_kind(v) == JV_KIND_OBJECT) {
                /* iterate an object's values, as jq's .[] does */
                jv arr = jv_array();
                jv_object_foreach(v, k, item)
                {
                    jv_free(k);
                    arr = jv_array_append(arr, item);
                }
                jv_free(v);
                v = arr;
            } else if (jv_get_kind(v) != JV_KIND_ARRAY) {
                const char *kn = jv_kind_name(jv_get_kind(v));
                jv_free(v);
                task_fail(in, fb,
                          cv__error_newf(CV_ERR_EXPRESSION, 400, "Expression Error",
                                         "for.in must give an array, got %s", kn));
                return;
            }
            jv_free(fr->aux);
            fr->aux = v;
            jv_free(fr->output);
            fr->output = jv_copy(fr->input);
            fr->idx = 0;
            fr->phase = P_FOR_NEXT;
            return;
        case CV_T_FORK: {
            const struct cv_tasklist *br = t->u.fork.branches;
            if (!br || br->n == 0) {
                task_finish_value(fb, fr, t->u.fork.compete ? jv_null() : jv_array());
                return;
            }
            jv results = jv_array();
            for (int i = 0; i < br->n; i++)
                results = jv_array_append(results, jv_invalid());
            jv_free(fr->aux);
            fr->aux = results;
            fr->idx = br->n; /* branches still running */
            for (int i = 0; i < br->n; i++) {
                struct fiber *child = fiber_new(in, fb, i);
                if (!child) {
                    cancel_children(in, fb);
                    task_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
                    return;
                }
                push_task(in, child, br->items[i], fr->wfc, jv_copy(fr->input), jv_copy(fr->scope));
            }
            fr->phase = P_FORK_WAIT;
            fb->state = FB_CHILDREN;
            return;
        }
        case CV_T_TRY:
            fr->first_attempt_ms = cv__now_ms();
            fr->phase = P_TRY_WAIT;
            push_list(in, fb, t->u.try_.body, jv_copy(fr->input), jv_copy(fr->scope));
            if (t->u.try_.retry.limit_attempt_ms && top(fb)->type == F_LIST)
                top(fb)->deadline = cv__now_ms() + scaled(in, t->u.try_.retry.limit_attempt_ms);
            return;
        case CV_T_RAISE: {
            if (eval_tmpl(in, fb, fr, &t->u.raise.error, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            if (jv_get_kind(v) != JV_KIND_OBJECT) {
                jv_free(v);
                v = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "raise: the error is not an object");
            }
            task_fail(in, fb, v);
            return;
        }
        case CV_T_WAIT: {
            int64_t ms;
            if (duration_of(in, fb, fr, &t->u.wait.duration, &ms, &v)) {
                task_fail(in, fb, v);
                return;
            }
            fr->phase = P_TIMER_WAIT;
            fb->state = FB_TIMER;
            fb->wake_at = cv__now_ms() + scaled(in, ms);
            return;
        }
        case CV_T_EMIT: {
            if (eval_tmpl(in, fb, fr, &t->u.emit.event, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            jv ev = cloud_event(v);
            cv__runtime_emit(in->rt, ev);
            task_finish_value(fb, fr, ev);
            return;
        }
        case CV_T_CALL_HTTP:
        case CV_T_CALL_OPENAPI:
        case CV_T_RUN_PROCESS: {
            if (eval_tmpl(in, fb, fr, &t->u.effect.args, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            if (t->kind != CV_T_RUN_PROCESS && resolve_secret_auth(fr, &v, &err)) {
                jv_free(v);
                task_fail(in, fb, err);
                return;
            }
            fr->phase = P_EFFECT_WAIT;
            if (start_effect(in, fb, fr, v, &err)) {
                task_fail(in, fb, err);
                return;
            }
            return;
        }
        case CV_T_CALL_CATALOG: {
            if (eval_tmpl(in, fb, fr, &t->u.effect.args, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            if (t->u.effect.wait) {
                review_open(in, fb, fr, v);
                return;
            }
            fr->phase = P_EFFECT_WAIT;
            if (start_effect(in, fb, fr,
                             JV_OBJECT(jv_string("function"), jv_string(t->u.effect.catalog), jv_string("with"), v),
                             &err))
                task_fail(in, fb, err);
            return;
        }
        case CV_T_CALL_FUNCTION: {
            if (eval_tmpl(in, fb, fr, &t->u.effect.args, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            const struct cv_task *fn = t->u.effect.function;
            if (!fn) {
                jv_free(v);
                task_fail(in, fb, cv__error_new(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                                                "the called function is not defined"));
                return;
            }
            fr->phase = P_WAIT_CHILD;
            push_task(in, fb, fn, fr->wfc, v, jv_object());
            return;
        }
        case CV_T_CALL_REMOTE: {
            if (eval_tmpl(in, fb, fr, &t->u.effect.args, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            jv_free(fr->aux);
            fr->aux = v; /* the function's input */
            if (!t->u.effect.locator) {
                task_fail(in, fb, cv__error_new(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                                                "the function's location is unknown"));
                return;
            }
            if (cv__runtime_remote_get(in->rt, t->u.effect.locator)) {
                fr->phase = P_REMOTE_LOADED;
                return;
            }
            fr->phase = P_EFFECT_WAIT;
            if (start_effect(in, fb, fr, jv_string(t->u.effect.locator), &err))
                task_fail(in, fb, err);
            return;
        }
        case CV_T_LISTEN:
            if (!cv__runtime_has_bus()) {
                task_fail(in, fb,
                          cv__error_newf(CV_ERR_RUNTIME, 501, "Not Implemented", "%s", unsupported_reason(t)));
                return;
            }
            jv_free(fr->aux);
            fr->aux = JV_OBJECT(jv_string("cursor"), jv_number(0), jv_string("events"), jv_array(),
                                jv_string("pending"), jv_array(), jv_string("n"), jv_number(0));
            fr->phase = P_LISTEN;
            fb->state = FB_EVENT;
            in->listen_began = 1;
            return;
        case CV_T_RUN_WORKFLOW: {
            if (eval_tmpl(in, fb, fr, &t->u.effect.args, jv_copy(fr->input), &v)) {
                task_fail(in, fb, v);
                return;
            }
            jv w = jv_object_get(v, jv_string("workflow"));
            jv ns = jv_object_get(jv_copy(w), jv_string("namespace"));
            jv name = jv_object_get(jv_copy(w), jv_string("name"));
            jv ver = jv_object_get(jv_copy(w), jv_string("version"));
            jv input = jv_object_get(jv_copy(w), jv_string("input"));
            jv_free(w);
            const char *nss = jv_get_kind(ns) == JV_KIND_STRING ? jv_string_value(ns) : "default";
            const char *nms = jv_get_kind(name) == JV_KIND_STRING ? jv_string_value(name) : "";
            const char *vs = jv_get_kind(ver) == JV_KIND_STRING ? jv_string_value(ver) : "latest";
            const cv_workflow *sub = cv__runtime_find_workflow(in->rt, nss, nms, vs);
            if (!sub) {
                err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                                     "workflow %s/%s:%s is not known to this runtime (give it with --subflow "
                                     "FILE or --subflows DIR)",
                                     nss, nms, vs);
                jv_free(ns);
                jv_free(name);
                jv_free(ver);
                jv_free(input);
                task_fail(in, fb, err);
                return;
            }
            jv_free(ns);
            jv_free(name);
            jv_free(ver);
            if (!jv_is_valid(input)) {
                jv_free(input);
                input = jv_copy(fr->input);
            }
            err = jv_null();
            struct wfctx *wc = wfc_new(in, sub, jv_copy(input), &err);
            if (!wc || jv_get_kind(err) != JV_KIND_NULL) {
                jv_free(input);
                if (wc) {
                    wc->refs = 1;
                    wfc_unref(wc);
                }
                task_fail(in, fb, err);
                return;
            }
            jv_free(err);
            fr->phase = P_WAIT_CHILD;
            struct frame *wfr = push(fb, F_WORKFLOW, wc, input, jv_object());
            if (!wfr) {
                fiber_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
                return;
            }
            wfr->phase = W_START;
            return;
        }
        default:
            task_fail(in, fb,
                      cv__error_newf(CV_ERR_RUNTIME, 501, "Not Implemented", "%s", unsupported_reason(t)));
            return;
        }

    case P_FOR_NEXT: {
        int n = jv_array_length(jv_copy(fr->aux));
        if (fr->idx >= n) {
            task_finish_value(fb, fr, jv_copy(fr->output));
            return;
        }
        jv item = jv_array_get(jv_copy(fr->aux), fr->idx);
        jv scope = jv_object_set(jv_copy(fr->scope), jv_string(t->u.for_.each), item);
        scope = jv_object_set(scope, jv_string(t->u.for_.at), jv_number(fr->idx));
        if (t->u.for_.while_expr >= 0) {
            jv saved = fr->scope;
            fr->scope = scope;
            int rc = eval_expr(in, fb, fr, t->u.for_.while_expr, jv_copy(fr->output), jv_null(), &v);
            fr->scope = saved;
            if (rc) {
                jv_free(scope);
                task_fail(in, fb, v);
                return;
            }
            if (!cv__jv_truthy(v)) {
                jv_free(scope);
                task_finish_value(fb, fr, jv_copy(fr->output));
                return;
            }
        }
        fr->phase = P_FOR_WAIT;
        push_list(in, fb, t->u.for_.body, jv_copy(fr->output), scope);
        return;
    }

    case P_TRY_RETRY:
        fr->phase = P_TRY_WAIT;
        push_list(in, fb, t->u.try_.body, jv_copy(fr->input), jv_copy(fr->scope));
        if (t->u.try_.retry.limit_attempt_ms && top(fb)->type == F_LIST)
            top(fb)->deadline = cv__now_ms() + scaled(in, t->u.try_.retry.limit_attempt_ms);
        return;

    case P_REMOTE_LOADED: {
        const cv_workflow *fn = cv__runtime_remote_get(in->rt, t->u.effect.locator);
        if (!fn) {
            jv def, diags = jv_array();
            const char *text = jv_get_kind(fr->output) == JV_KIND_STRING ? jv_string_value(fr->output) : "";
            if (cv__yaml_parse(text, strlen(text), t->u.effect.locator, &def, NULL, &diags)) {
                jv d = jv_array_get(diags, 0);
                char *m = cv_diag_format(d);
                task_fail(in, fb, cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                                                 "function %s: %s", t->u.effect.locator, m ? m : "unreadable"));
                free(m);
                return;
            }
            jv_free(diags);
            /* a function document is one task definition: run it as a one-task workflow */
            jv doc = jv_object();
            doc = jv_object_set(doc, jv_string("document"),
                                JV_OBJECT(jv_string("dsl"), jv_string("1.0.0"), jv_string("namespace"),
                                          jv_string("functions"), jv_string("name"), jv_string("function"),
                                          jv_string("version"), jv_string("0.0.0")));
            doc = jv_object_set(doc, jv_string("do"), JV_ARRAY(JV_OBJECT(jv_string(t->name), def)));
            cv_workflow *loaded = NULL;
            jv ds = jv_invalid();
            if (cv__workflow_from_jv(doc, jv_null(), t->u.effect.locator, &loaded, &ds)) {
                jv d = jv_get_kind(ds) == JV_KIND_ARRAY ? jv_array_get(jv_copy(ds), 0) : jv_null();
                jv_free(ds);
                char *m = jv_get_kind(d) == JV_KIND_OBJECT ? cv_diag_format(d) : (jv_free(d), NULL);
                task_fail(in, fb, cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                                                 "function %s is not a valid task: %s", t->u.effect.locator,
                                                 m ? m : "invalid"));
                free(m);
                return;
            }
            jv_free(ds);
            fn = cv__runtime_remote_put(in->rt, t->u.effect.locator, loaded);
            if (!fn) {
                task_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
                return;
            }
        }
        jv_free(fr->output);
        fr->output = jv_invalid();
        err = jv_null();
        jv fin = jv_copy(fr->aux);
        struct wfctx *wc = wfc_new(in, fn, jv_copy(fin), &err);
        if (!wc || jv_get_kind(err) != JV_KIND_NULL) {
            jv_free(fin);
            if (wc) {
                wc->refs = 1;
                wfc_unref(wc);
            }
            task_fail(in, fb, err);
            return;
        }
        jv_free(err);
        fr->phase = P_WAIT_CHILD;
        struct frame *wfr = push(fb, F_WORKFLOW, wc, fin, jv_object());
        if (!wfr)
            fiber_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory"));
        return;
    }

    case P_LISTEN: /* woken with the strategy satisfied */
    case P_LISTEN_EACH:
        listen_next(in, fb, fr);
        return;

    case P_TIMER_WAIT: /* the wait elapsed */
        task_finish_value(fb, fr, jv_copy(fr->input));
        return;

    case P_EXT_AFTER:
        while (fr->idx < t->nexts) {
            const struct cv_extension *e = t->exts[fr->idx];
            int applies = 1;
            if (e->when >= 0) {
                if (eval_expr(in, fb, fr, e->when, jv_copy(fr->input), jv_null(), &v)) {
                    jv_free(v);
                    applies = 0;
                } else {
                    applies = cv__jv_truthy(v);
                }
            }
            if (applies && e->after) {
                push_list(in, fb, e->after, jv_copy(fr->output), jv_copy(fr->scope));
                return;
            }
            fr->idx++;
        }
        fr->phase = P_FINISH_NOEXT;
        /* FALLTHROUGH */
    case P_FINISH_NOEXT:
    case P_FINISH: {
        if (fr->phase == P_FINISH && t->nexts) {
            fr->idx = 0;
            fr->phase = P_EXT_AFTER;
            return;
        }
        /* output.as on the raw output; $output then holds the transformed output */
        jv out = jv_copy(fr->output);
        if (t->output.has_expr) {
            if (eval_tmpl(in, fb, fr, &t->output.expr, out, &v)) {
                task_fail(in, fb, v);
                return;
            }
            out = v;
        }
        err = check_schema(t->output.schema, out, "the task output");
        if (jv_get_kind(err) != JV_KIND_NULL) {
            jv_free(out);
            task_fail(in, fb, err);
            return;
        }
        jv_free(err);
        jv_free(fr->output);
        fr->output = jv_copy(out);
        if (t->exp.has_expr) {
            if (eval_tmpl(in, fb, fr, &t->exp.expr, jv_copy(out), &v)) {
                jv_free(out);
                task_fail(in, fb, v);
                return;
            }
            err = check_schema(t->exp.schema, v, "the exported context");
            if (jv_get_kind(err) != JV_KIND_NULL) {
                jv_free(v);
                jv_free(out);
                task_fail(in, fb, err);
                return;
            }
            jv_free(err);
            jv_free(fr->wfc->context);
            fr->wfc->context = v;
        }
        trace_end(in, fr->trace_idx, "completed", "output", jv_copy(out));
        task_timed(in, fr);
        int tk = fr->then_kind, tt = fr->then_target;
        ret(fb, RET_NORMAL, out, tk, tt);
        return;
    }
    default:
        task_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "internal: bad task phase"));
        return;
    }
}

static void step_list(struct instance *in, struct fiber *fb)
{
    struct frame *fr = top(fb);
    const struct cv_tasklist *l = fr->list;
    if (fb->ret != RET_NONE) {
        int kind = fb->ret;
        jv val = fb->ret_value;
        fb->ret = RET_NONE;
        fb->ret_value = jv_null();
        if (kind != RET_NORMAL) {
            ret(fb, kind, val, kind == RET_END ? CV_THEN_END : CV_THEN_CONTINUE, -1);
            return;
        }
        jv_free(fr->raw_input);
        fr->raw_input = val; /* the current data */
        switch (fb->ret_then_kind) {
        case CV_THEN_EXIT:
            ret(fb, RET_NORMAL, jv_copy(fr->raw_input), CV_THEN_EXIT, -1);
            return;
        case CV_THEN_END:
            ret(fb, RET_END, jv_copy(fr->raw_input), CV_THEN_END, -1);
            return;
        case CV_THEN_GOTO:
            fr->idx = fb->ret_then_target;
            break;
        default:
            fr->idx++;
        }
        fr->phase = L_NEXT;
    }
    if (fr->idx < 0 || fr->idx >= l->n) {
        ret(fb, RET_NORMAL, jv_copy(fr->raw_input), CV_THEN_CONTINUE, -1);
        return;
    }
    fr->phase = L_WAIT;
    const struct cv_task *t = l->items[fr->idx];
    push_task(in, fb, t, fr->wfc, jv_copy(fr->raw_input), jv_copy(fr->scope));
}

static void step_workflow(struct instance *in, struct fiber *fb)
{
    struct frame *fr = top(fb);
    const struct cv_workflow *wf = fr->wfc->wf;
    jv v;
    if (fb->ret != RET_NONE) {
        int kind = fb->ret;
        jv val = fb->ret_value;
        fb->ret = RET_NONE;
        fb->ret_value = jv_null();
        if (kind == RET_ERROR) {
            ret(fb, RET_ERROR, val, CV_THEN_CONTINUE, -1);
            return;
        }
        jv out = val;
        if (wf->output.has_expr) {
            if (eval_tmpl(in, fb, fr, &wf->output.expr, out, &v)) {
                ret(fb, RET_ERROR, with_instance(v, "/output"), CV_THEN_CONTINUE, -1);
                return;
            }
            out = v;
        }
        jv err = check_schema(wf->output.schema, out, "the workflow output");
        if (jv_get_kind(err) != JV_KIND_NULL) {
            jv_free(out);
            ret(fb, RET_ERROR, with_instance(err, "/output"), CV_THEN_CONTINUE, -1);
            return;
        }
        jv_free(err);
        ret(fb, RET_NORMAL, out, CV_THEN_CONTINUE, -1);
        return;
    }
    /* W_START */
    jv err = check_schema(wf->input.schema, fr->raw_input, "the workflow input");
    if (jv_get_kind(err) != JV_KIND_NULL) {
        ret(fb, RET_ERROR, with_instance(err, "/input"), CV_THEN_CONTINUE, -1);
        return;
    }
    jv_free(err);
    jv input = jv_copy(fr->raw_input);
    if (wf->input.has_expr) {
        if (eval_tmpl(in, fb, fr, &wf->input.expr, input, &v)) {
            ret(fb, RET_ERROR, with_instance(v, "/input"), CV_THEN_CONTINUE, -1);
            return;
        }
        input = v;
    }
    jv_free(fr->input);
    fr->input = jv_copy(input);
    if (wf->timeout.set) {
        int64_t ms;
        if (duration_of(in, fb, fr, &wf->timeout, &ms, &v)) {
            jv_free(input);
            ret(fb, RET_ERROR, with_instance(v, "/timeout"), CV_THEN_CONTINUE, -1);
            return;
        }
        fr->deadline = cv__now_ms() + scaled(in, ms);
    }
    fr->phase = W_WAIT;
    push_list(in, fb, wf->root, input, jv_object());
}

/* Fails the fiber at its top frame (used for internal failures). */
static void fiber_fail(struct instance *in, struct fiber *fb, jv err)
{
    if (!fb->nframes) {
        jv_free(fb->ret_value);
        fb->ret = RET_ERROR;
        fb->ret_value = err;
        fb->state = FB_DONE;
        return;
    }
    struct frame *fr = top(fb);
    err = with_instance(err, fr->task ? fr->task->ref : NULL);
    ret(fb, RET_ERROR, err, CV_THEN_CONTINUE, -1);
}

/* ---- fork bookkeeping ---------------------------------------------------------------- */

/* A branch fiber finished: record its result in the parent's fork frame. */
static void branch_done(struct instance *in, struct fiber *child)
{
    struct fiber *p = child->parent;
    struct frame *fr = top(p);
    if (!fr || fr->type != F_TASK || fr->phase != P_FORK_WAIT || child->cancelled)
        return;
    int kind = child->ret;
    jv val = child->ret_value;
    child->ret = RET_NONE;
    child->ret_value = jv_null();
    fr->idx--;
    if (kind == RET_ERROR || kind == RET_END) {
        cancel_children(in, p);
        p->state = FB_RUNNABLE;
        jv_free(p->ret_value);
        p->ret = kind;
        p->ret_value = val;
        fr->phase = P_WAIT_CHILD; /* deliver through the generic path */
        return;
    }
    if (fr->task->u.fork.compete) {
        cancel_children(in, p);
        p->state = FB_RUNNABLE;
        task_finish_value(p, fr, val);
        return;
    }
    fr->aux = jv_array_set(fr->aux, child->branch, val);
    if (fr->idx == 0) {
        p->state = FB_RUNNABLE;
        task_finish_value(p, fr, jv_copy(fr->aux));
    }
}

/* ---- deadlines ------------------------------------------------------------------------ */

/* If a frame of `fb` is past its deadline, abandons everything above the
 * outermost such frame and fails it with a timeout error. Returns 1 if so. */
static int enforce_deadline(struct instance *in, struct fiber *fb, int64_t now)
{
    for (int i = 0; i < fb->nframes; i++) {
        struct frame *fr = &fb->frames[i];
        if (!fr->deadline || fr->deadline > now)
            continue;
        cancel_children(in, fb);
        effect_abandon(in, fb);
        while (fb->nframes > i + 1) {
            struct frame *t = top(fb);
            review_abandon(in, t);
            if (t->type == F_TASK)
                trace_end(in, t->trace_idx, "cancelled", NULL, jv_null());
            frame_release(t);
            fb->nframes--;
        }
        review_abandon(in, fr); /* a review's own `timeout` */
        jv_free(fb->ret_value);
        fb->ret = RET_NONE;
        fb->ret_value = jv_null();
        fb->state = FB_RUNNABLE;
        const char *ref;
        const char *what;
        if (fr->type == F_TASK) {
            ref = fr->task->ref;
            what = "task";
        } else if (fr->type == F_WORKFLOW) {
            ref = "/";
            what = "workflow";
        } else { /* a try attempt limited by retry.limit.attempt.duration */
            ref = fr->list->ref;
            what = "attempt";
        }
        jv err = cv__error_newf(CV_ERR_TIMEOUT, 408, "Timeout", "the %s timed out", what);
        err = jv_object_set(err, jv_string("instance"), jv_string(ref));
        if (fr->type == F_TASK)
            trace_end(in, fr->trace_idx, "faulted", "error", jv_copy(err));
        ret(fb, RET_ERROR, err, CV_THEN_CONTINUE, -1);
        return 1;
    }
    return 0;
}

/* ---- the run loop ------------------------------------------------------------------------ */

static void step(struct instance *in, struct fiber *fb)
{
    struct frame *fr = top(fb);
    switch (fr->type) {
    case F_TASK:
        step_task(in, fb);
        break;
    case F_LIST:
        step_list(in, fb);
        break;
    case F_WORKFLOW:
        step_workflow(in, fb);
        break;
    }
}

static void deliver_effect(struct instance *in, struct effect *e)
{
    struct fiber *fb = e->fiber;
    if (!fb || fb->state != FB_EFFECT || fb->effect != e)
        return;
    fb->effect = NULL;
    fb->state = FB_RUNNABLE;
    struct frame *fr = top(fb);
    if (e->rc == 0 && fr->task->kind == CV_T_CALL_REMOTE) {
        jv_free(fr->output);
        fr->output = e->out; /* the function's text, loaded by the next step */
        e->out = jv_null();
        fr->phase = P_REMOTE_LOADED;
    } else if (e->rc == 0) {
        if (jv_is_valid(e->note)) { /* a model's prediction (and its shadow's): into the instance's history */
            jv notes = jv_get_kind(e->note) == JV_KIND_ARRAY ? e->note : JV_ARRAY_1(e->note);
            jv_array_foreach(notes, i, d)
            {
                in->notes = jv_array_append(in->notes, JV_OBJECT(jv_string("type"), jv_string(CV_PREDICTION_EVENT),
                                                                 jv_string("task"), jv_string(fr->task->ref),
                                                                 jv_string("data"), d));
            }
            jv_free(notes);
            e->note = jv_invalid();
        }
        jv_free(fr->authz);
        fr->authz = e->authz;
        e->authz = jv_null();
        task_finish_value(fb, fr, e->out);
        e->out = jv_null();
    } else if (e->rc == CV_ECANCELED) {
        task_fail(in, fb, cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "the effect was cancelled"));
    } else {
        jv err = e->out;
        e->out = jv_null();
        if (jv_get_kind(err) != JV_KIND_OBJECT) {
            jv_free(err);
            err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "the effect failed");
        }
        task_fail(in, fb, err);
    }
}

/* Delivers the effects that finished (non-blocking). Returns how many. */
static int instance_collect(struct instance *in)
{
    pthread_mutex_lock(&in->lock);
    struct effect *done = in->done;
    in->done = NULL;
    pthread_mutex_unlock(&in->lock);
    int n = 0;
    while (done) {
        struct effect *next = done->next;
        pthread_mutex_lock(&in->lock);
        in->in_flight--;
        pthread_mutex_unlock(&in->lock);
        deliver_effect(in, done);
        effect_free(done);
        done = next;
        n++;
    }
    return n;
}

/*
 * Runs every runnable fiber (enforcing deadlines, waking due timers) until
 * all of them block. Returns 1 when the instance has ended. Otherwise sets
 * *wake to the earliest timer or deadline (0 when it waits on effects only)
 * and, if it progressed since the last checkpoint, hands its position to the
 * checkpoint hook. Never blocks: a scheduler can park a blocked instance
 * without holding a thread for it (DESIGN.md decision 5).
 */
static int instance_advance(struct instance *in, int64_t *wake)
{
    for (;;) {
        int progressed = 0;
        offer_inbox(in);
        int64_t now = cv__now_ms();
        for (int i = 0; i < in->nfibers; i++) {
            struct fiber *fb = in->fibers[i];
            if (fb->state == FB_DONE)
                continue;
            if (enforce_deadline(in, fb, now))
                progressed = 1;
            if (fb->state == FB_TIMER && fb->wake_at <= now)
                fb->state = FB_RUNNABLE;
            int budget = 4096; /* let other fibers and deadlines have their turn */
            while (fb->state == FB_RUNNABLE && budget-- > 0) {
                step(in, fb);
                progressed = 1;
            }
            if (fb->state == FB_DONE && fb->parent && !fb->cancelled)
                branch_done(in, fb);
        }
        if (in->root->state == FB_DONE)
            return 1;
        if (progressed) {
            in->dirty = 1;
            continue;
        }
        break;
    }
    /* about to block: the position is worth keeping */
    if (in->dirty && in->rt->checkpoint) {
        in->dirty = 0;
        jv state = cv__instance_state(in);
        in->rt->checkpoint(in->rt->checkpoint_ud, state);
        jv_free(state);
    }
    int64_t w = 0;
    for (int i = 0; i < in->nfibers; i++) {
        struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        if (fb->state == FB_TIMER && (!w || fb->wake_at < w))
            w = fb->wake_at;
        for (int k = 0; k < fb->nframes; k++)
            if (fb->frames[k].deadline && (!w || fb->frames[k].deadline < w))
                w = fb->frames[k].deadline;
    }
    *wake = w;
    return 0;
}

/* The run loop of one instance on the calling thread (cv_run). */
static int run_instance(struct instance *in)
{
    for (;;) {
        instance_collect(in);
        int64_t wake;
        if (instance_advance(in, &wake))
            return 0;
        pthread_mutex_lock(&in->lock);
        if (!in->done) {
            int64_t wait_ms = wake ? wake - cv__now_ms() : 1000;
            if (wait_ms > 1000)
                wait_ms = 1000;
            if (wait_ms > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wait_ms / 1000;
                ts.tv_nsec += (wait_ms % 1000) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&in->cond, &in->lock, &ts);
            }
        }
        pthread_mutex_unlock(&in->lock);
    }
}

/* Cancels what still runs and waits for every effect to post its end (no
 * thread may hold `in` after this). */
static void instance_drain(struct instance *in)
{
    for (int i = 0; i < in->nfibers; i++)
        if (in->fibers[i]->state != FB_DONE)
            fiber_cancel(in, in->fibers[i]);
    pthread_mutex_lock(&in->lock);
    while (in->in_flight > 0) {
        while (in->done) {
            struct effect *e = in->done;
            in->done = e->next;
            in->in_flight--;
            effect_free(e);
        }
        if (in->in_flight > 0)
            pthread_cond_wait(&in->cond, &in->lock);
    }
    while (in->done) {
        struct effect *e = in->done;
        in->done = e->next;
        effect_free(e);
    }
    pthread_mutex_unlock(&in->lock);
}

/* ---- restoring a position (the inverse of state.c) --------------------------------- */

static int64_t to_mono(jv wall /* consumed */)
{
    double w = jv_get_kind(wall) == JV_KIND_NUMBER ? jv_number_value(wall) : 0;
    jv_free(wall);
    return w ? (int64_t)w - cv__wall_ms() + cv__now_ms() : 0;
}

static jv fld(jv o /* borrowed */, const char *k)
{
    return jv_get_kind(o) == JV_KIND_OBJECT ? jv_object_get(jv_copy(o), jv_string(k)) : jv_invalid();
}

static int num(jv o /* borrowed */, const char *k, int dflt)
{
    jv v = fld(o, k);
    int r = jv_get_kind(v) == JV_KIND_NUMBER ? (int)jv_number_value(v) : dflt;
    jv_free(v);
    return r;
}

static jv restore_fail(const char *fmt, const char *arg)
{
    char buf[512];
    snprintf(buf, sizeof buf, fmt, arg ? arg : "");
    return cv__error_new(CV_ERR_RUNTIME, 500, "Cannot Resume", buf);
}

/* The definition a workflow frame runs: the root, a subflow, or a remote function. */
static const cv_workflow *restore_workflow(struct instance *in, const cv_workflow *root, struct fiber *fb, jv fj,
                                           int first, jv *err)
{
    if (first)
        return root;
    jv name = fld(fj, "workflow");
    const char *q = jv_get_kind(name) == JV_KIND_STRING ? jv_string_value(name) : "";
    char ns[256] = "", nm[256] = "", ver[128] = "";
    const char *slash = strchr(q, '/'), *colon = strrchr(q, ':');
    if (slash && colon && colon > slash) {
        snprintf(ns, sizeof ns, "%.*s", (int)(slash - q), q);
        snprintf(nm, sizeof nm, "%.*s", (int)(colon - slash - 1), slash + 1);
        snprintf(ver, sizeof ver, "%s", colon + 1);
    }
    const cv_workflow *wf = NULL;
    struct frame *below = top(fb);
    if (below && below->type == F_TASK && below->task->kind == CV_T_CALL_REMOTE) {
        wf = cv__runtime_remote_get(in->rt, below->task->u.effect.locator);
        if (!wf)
            *err = restore_fail("the remote function %s is not loaded in this runtime", below->task->u.effect.locator);
    } else {
        wf = cv__runtime_find_workflow(in->rt, ns, nm, ver);
        if (!wf)
            *err = restore_fail("subflow %s is not known to this runtime", q);
    }
    jv_free(name);
    return wf;
}

/*
 * Rebuilds the fibers and frames of `state` (borrowed) in `in`. Tasks and
 * lists are found by reference in the definitions; an effect that was in
 * flight is started again (its task goes back to its body phase). Returns 0,
 * or CV_EINVAL with *err an error descriptor.
 */
static int restore(struct instance *in, const cv_workflow *root, jv state, jv *err)
{
    in->reviews = num(state, "reviewsOpened", 0);
    jv consumed = fld(state, "consumedEvents");
    if (jv_get_kind(consumed) == JV_KIND_ARRAY) {
        jv_free(in->consumed);
        in->consumed = consumed;
    } else {
        jv_free(consumed);
    }
    jv fibers = fld(state, "fibers");
    if (jv_get_kind(fibers) != JV_KIND_ARRAY || jv_array_length(jv_copy(fibers)) == 0) {
        jv_free(fibers);
        *err = restore_fail("the position has no fibers%s", NULL);
        return CV_EINVAL;
    }
    int n = jv_array_length(jv_copy(fibers));
    int *serial = calloc((size_t)n, sizeof *serial);
    int rc = serial ? 0 : CV_ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        jv f = jv_array_get(jv_copy(fibers), i);
        int pidx = num(f, "parent", -1);
        struct fiber *parent = NULL;
        for (int k = 0; k < i; k++)
            if (serial[k] == pidx)
                parent = in->fibers[k];
        if (pidx >= 0 && !parent) {
            *err = restore_fail("a fiber's parent is missing%s", NULL);
            rc = CV_EINVAL;
            jv_free(f);
            break;
        }
        struct fiber *fb = fiber_new(in, parent, num(f, "branch", 0));
        if (!fb) {
            rc = CV_ENOMEM;
            jv_free(f);
            break;
        }
        serial[i] = num(f, "index", i);
        if (!parent && !in->root)
            in->root = fb;
        struct wfctx *cur = parent && parent->nframes ? top(parent)->wfc : NULL;
        jv frames = fld(f, "frames");
        int nf = jv_get_kind(frames) == JV_KIND_ARRAY ? jv_array_length(jv_copy(frames)) : 0;
        if (nf == 0) {
            *err = restore_fail("a fiber has no frames%s", NULL);
            rc = CV_EINVAL;
        }
        for (int k = 0; k < nf && !rc; k++) {
            jv fj = jv_array_get(jv_copy(frames), k);
            jv type = fld(fj, "type"), ref = fld(fj, "ref");
            const char *ty = jv_get_kind(type) == JV_KIND_STRING ? jv_string_value(type) : "";
            const char *rf = jv_get_kind(ref) == JV_KIND_STRING ? jv_string_value(ref) : "";
            jv raw = fld(fj, "rawInput");
            if (!jv_is_valid(raw)) {
                jv_free(raw);
                raw = jv_null();
            }
            jv scope = fld(fj, "scope");
            if (!jv_is_valid(scope)) {
                jv_free(scope);
                scope = jv_object();
            }
            struct frame *fr = NULL;
            if (!strcmp(ty, "workflow")) {
                const cv_workflow *wf = restore_workflow(in, root, fb, fj, i == 0 && k == 0, err);
                struct wfctx *w = NULL;
                if (wf) {
                    jv e = jv_null();
                    w = wfc_new(in, wf, jv_copy(raw), &e);
                    if (!w || jv_get_kind(e) != JV_KIND_NULL) {
                        if (w) {
                            w->refs = 1;
                            wfc_unref(w);
                        }
                        *err = e;
                        w = NULL;
                    } else {
                        jv_free(e);
                        jv ctx = fld(fj, "context");
                        if (jv_is_valid(ctx)) {
                            jv_free(w->context);
                            w->context = ctx;
                        } else {
                            jv_free(ctx);
                        }
                        jv st = fld(fj, "workflowStartedAt");
                        if (jv_get_kind(st) == JV_KIND_NUMBER)
                            w->descriptor = jv_object_set(w->descriptor, jv_string("startedAt"),
                                                          cv__time_descriptor((int64_t)jv_number_value(st)));
                        jv_free(st);
                    }
                }
                if (w) {
                    cur = w;
                    fr = push(fb, F_WORKFLOW, w, raw, scope);
                } else {
                    jv_free(raw);
                    jv_free(scope);
                }
            } else if (!cur) {
                *err = restore_fail("a %s frame has no workflow below it", ty);
                jv_free(raw);
                jv_free(scope);
            } else if (!strcmp(ty, "list")) {
                const struct cv_tasklist *l = cv__workflow_list(cur->wf, rf);
                if (l && (fr = push(fb, F_LIST, cur, raw, scope)))
                    fr->list = l;
                else if (!l) {
                    *err = restore_fail("task list %s is not in this definition", rf);
                    jv_free(raw);
                    jv_free(scope);
                }
            } else if (!strcmp(ty, "task")) {
                const struct cv_task *t = cv__workflow_task(cur->wf, rf);
                if (t && (fr = push(fb, F_TASK, cur, raw, scope)))
                    fr->task = t;
                else if (!t) {
                    *err = restore_fail("task %s is not in this definition", rf);
                    jv_free(raw);
                    jv_free(scope);
                }
            } else {
                *err = restore_fail("unknown frame type '%s'", ty);
                jv_free(raw);
                jv_free(scope);
            }
            if (!fr) {
                rc = jv_is_valid(*err) && jv_get_kind(*err) == JV_KIND_OBJECT ? CV_EINVAL : CV_ENOMEM;
            } else {
                fr->phase = num(fj, "phase", 0);
                fr->idx = num(fj, "idx", 0);
                fr->attempt = num(fj, "attempt", 0);
                jv then = fld(fj, "then");
                if (jv_get_kind(then) == JV_KIND_ARRAY) {
                    jv a = jv_array_get(jv_copy(then), 0), b = jv_array_get(jv_copy(then), 1);
                    fr->then_kind = jv_get_kind(a) == JV_KIND_NUMBER ? (int)jv_number_value(a) : 0;
                    fr->then_target = jv_get_kind(b) == JV_KIND_NUMBER ? (int)jv_number_value(b) : -1;
                    jv_free(a);
                    jv_free(b);
                }
                jv_free(then);
                jv_free(fr->input);
                fr->input = fld(fj, "input");
                jv_free(fr->output);
                fr->output = fld(fj, "output");
                jv a = fld(fj, "authz");
                if (jv_is_valid(a)) {
                    jv_free(fr->authz);
                    fr->authz = a;
                } else {
                    jv_free(a);
                }
                jv aux = fld(fj, "aux");
                jv done = fld(fj, "forkDone");
                if (jv_get_kind(done) == JV_KIND_ARRAY && jv_get_kind(aux) == JV_KIND_ARRAY) {
                    int m = jv_array_length(jv_copy(done));
                    for (int d = 0; d < m; d++) {
                        jv x = jv_array_get(jv_copy(done), d);
                        if (jv_get_kind(x) != JV_KIND_TRUE)
                            aux = jv_array_set(aux, d, jv_invalid());
                        jv_free(x);
                    }
                }
                jv_free(done);
                jv_free(fr->aux);
                fr->aux = jv_is_valid(aux) ? aux : (jv_free(aux), jv_null());
                fr->deadline = to_mono(fld(fj, "deadlineAt"));
                fr->first_attempt_ms = to_mono(fld(fj, "firstAttemptAt"));
                jv st = fld(fj, "startedAt");
                fr->started_wall = jv_get_kind(st) == JV_KIND_NUMBER ? (int64_t)jv_number_value(st) : cv__wall_ms();
                jv_free(st);
                /* an effect in flight at the checkpoint is issued again */
                if (fr->type == F_TASK && fr->phase == P_EFFECT_WAIT)
                    fr->phase = P_BODY;
            }
            jv_free(type);
            jv_free(ref);
            jv_free(fj);
        }
        jv_free(frames);
        if (!rc) {
            jv st = fld(f, "state");
            const char *ss = jv_get_kind(st) == JV_KIND_STRING ? jv_string_value(st) : "runnable";
            if (!strcmp(ss, "timer")) {
                fb->state = FB_TIMER;
                fb->wake_at = to_mono(fld(f, "wakeAt"));
            } else if (!strcmp(ss, "children")) {
                fb->state = FB_CHILDREN;
            } else if (!strcmp(ss, "event")) {
                fb->state = FB_EVENT;
                in->listen_began = 1; /* offer it the events kept meanwhile */
            } else {
                fb->state = FB_RUNNABLE;
            }
            jv_free(st);
        }
        jv_free(f);
    }
    free(serial);
    jv_free(fibers);
    if (!rc && !in->root) {
        *err = restore_fail("the position has no root fiber%s", NULL);
        rc = CV_EINVAL;
    }
    return rc;
}

int cv_run(cv_runtime *rt, const cv_workflow *wf, jv input, jv *report)
{
    return cv_run_ex(rt, wf, input, NULL, report);
}

int cv__instance_init(struct instance *in, cv_runtime *rt, const cv_workflow *wf, const char *id, jv input,
                      jv resume, jv *err)
{
    memset(in, 0, sizeof *in);
    in->rt = rt;
    if (id)
        snprintf(in->id, sizeof in->id, "%s", id);
    else
        cv__uuid4(in->id);
    in->tracing = rt->trace;
    in->trace = jv_array();
    in->started_wall = cv__wall_ms();
    in->inbox = jv_array();
    in->consumed = jv_array();
    in->notes = jv_array();
    in->tasks_open = jv_array();
    in->tasks_cancel = jv_array();
    in->tasks_escalate = jv_array();
    in->reviews = 0;
    pthread_mutex_init(&in->lock, NULL);
    pthread_cond_init(&in->cond, NULL);
    *err = jv_null();
    if (jv_get_kind(resume) == JV_KIND_OBJECT) {
        jv_free(input);
        int r = restore(in, wf, resume, err);
        jv_free(resume);
        if (r && jv_get_kind(*err) != JV_KIND_OBJECT) {
            jv_free(*err);
            *err = restore_fail("out of memory%s", NULL);
        }
        return r == CV_ENOMEM ? CV_ENOMEM : r ? CV_EINVAL : 0;
    }
    jv_free(resume);
    struct wfctx *w = wfc_new(in, wf, jv_copy(input), err);
    if (!w || jv_get_kind(*err) != JV_KIND_NULL) {
        if (w) {
            w->refs = 1;
            wfc_unref(w);
        }
        jv_free(input);
        *err = with_instance(*err, "/");
        return CV_EFAULT;
    }
    in->root = fiber_new(in, NULL, 0);
    struct frame *fr = in->root ? push(in->root, F_WORKFLOW, w, input, jv_object()) : NULL;
    if (!fr) {
        if (!in->root)
            jv_free(input);
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "Runtime Error", "out of memory");
        return CV_ENOMEM;
    }
    return 0;
}

int cv__instance_advance(struct instance *in, int64_t *wake) { return instance_advance(in, wake); }

void cv__instance_offer(struct instance *in, jv events)
{
    if (jv_get_kind(events) != JV_KIND_ARRAY) {
        jv_free(events);
        return;
    }
    in->inbox = jv_array_concat(in->inbox, events);
}

int cv__instance_listening(const struct instance *in)
{
    for (int i = 0; i < in->nfibers; i++) {
        const struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        for (int k = 0; k < fb->nframes; k++) {
            const struct frame *fr = &fb->frames[k];
            if (fr->type == F_TASK && fr->task->kind == CV_T_LISTEN &&
                (fr->phase == P_LISTEN || fr->phase == P_LISTEN_EACH || fr->phase == P_LISTEN_EACH_WAIT))
                return 1;
        }
    }
    return 0;
}
int cv__instance_collect(struct instance *in) { return instance_collect(in); }

/* ---- what an idle instance waits for (engine.c evicts it to the store) ------------ */

static int listen_waiting(const struct frame *fr)
{
    if (fr->type != F_TASK || fr->task->kind != CV_T_LISTEN ||
        !(fr->phase == P_LISTEN || fr->phase == P_LISTEN_EACH || fr->phase == P_LISTEN_EACH_WAIT))
        return 0;
    jv done = jv_get_kind(fr->aux) == JV_KIND_OBJECT ? jv_object_get(jv_copy(fr->aux), jv_string("done"))
                                                      : jv_invalid();
    int finished = jv_get_kind(done) == JV_KIND_TRUE;
    jv_free(done);
    return !finished;
}

static double aux_cursor(const struct frame *fr)
{
    if (jv_get_kind(fr->aux) != JV_KIND_OBJECT)
        return 0;
    jv cur = jv_object_get(jv_copy(fr->aux), jv_string("cursor"));
    double c = jv_get_kind(cur) == JV_KIND_NUMBER ? jv_number_value(cur) : 0;
    jv_free(cur);
    return c;
}

int64_t cv__instance_listen_cursor(const struct instance *in)
{
    double min = -1;
    for (int i = 0; i < in->nfibers; i++) {
        const struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        for (int k = 0; k < fb->nframes; k++)
            if (listen_waiting(&fb->frames[k])) {
                double c = aux_cursor(&fb->frames[k]);
                if (min < 0 || c < min)
                    min = c;
            }
    }
    return (int64_t)min;
}

void cv__instance_listen_skip(struct instance *in, int64_t seq)
{
    for (int i = 0; i < in->nfibers; i++) {
        struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        for (int k = 0; k < fb->nframes; k++) {
            struct frame *fr = &fb->frames[k];
            if (listen_waiting(fr) && aux_cursor(fr) < (double)seq)
                fr->aux = jv_object_set(fr->aux, jv_string("cursor"), jv_number((double)seq));
        }
    }
}

int cv__instance_quiescent(struct instance *in)
{
    if (!in->root || in->root->state == FB_DONE || in->dirty || in->listen_began || in->cancelled)
        return 0;
    if (jv_get_kind(in->inbox) == JV_KIND_ARRAY && jv_array_length(jv_copy(in->inbox)) > 0)
        return 0;
    for (int i = 0; i < in->nfibers; i++) {
        int st = in->fibers[i]->state;
        if (st != FB_DONE && st != FB_TIMER && st != FB_EVENT && st != FB_CHILDREN)
            return 0;
    }
    pthread_mutex_lock(&in->lock);
    int busy = in->in_flight > 0 || in->done != NULL;
    pthread_mutex_unlock(&in->lock);
    return !busy;
}

/* A correlation value in the form both sides of the index compare: JSON with
 * sorted keys (jv_equal ignores key order), -0 as 0 (jv_equal(-0, 0)). */
static jv corr_canonical(jv v)
{
    if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) == 0) {
        jv_free(v);
        return jv_number(0);
    }
    return v;
}

static char *dump_values(jv vals /* consumed */)
{
    jv text = jv_dump_string(vals, JV_PRINT_SORTED);
    char *s = jv_is_valid(text) ? strdup(jv_string_value(text)) : NULL;
    jv_free(text);
    return s;
}

/* May filter `f` be keyed precisely by its correlation values? Only when
 * nothing else about an event of its type can change the outcome: no `${ }`
 * attribute predicate (which could fail on any event of the type), and every
 * `from` a function of the event alone (no `$` variable). */
static int corr_indexable(const cv_workflow *wf, const struct cv_event_filter *f)
{
    if (f->nexprs > 0 || f->ncorr == 0)
        return 0;
    for (int i = 0; i < f->ncorr; i++) {
        const char *text = cv__expr_text(wf->exprs, f->corr[i].from);
        if (!text || strchr(text, '$'))
            return 0;
    }
    return 1;
}

/* The values filter `f` of listen frame `fr` expects (its `expect`s on the
 * task input, or what the first matching event fixed), as canonical JSON text
 * (malloc'd), or NULL when some value is open or cannot be computed. */
static char *corr_expected(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_event_filter *f,
                           jv st /* borrowed */)
{
    if (!corr_indexable(fr->wfc->wf, f))
        return NULL;
    jv corr = jv_get_kind(st) == JV_KIND_OBJECT ? jv_object_get(jv_copy(st), jv_string("corr")) : jv_invalid();
    jv vals = jv_array();
    for (int i = 0; i < f->ncorr; i++) {
        const struct cv_correlation *c = &f->corr[i];
        jv want;
        if (c->has_expect) {
            if (eval_tmpl(in, fb, fr, &c->expect, jv_copy(fr->input), &want)) {
                jv_free(want);
                want = jv_invalid();
            }
        } else {
            want = jv_get_kind(corr) == JV_KIND_OBJECT ? jv_object_get(jv_copy(corr), jv_string(c->key))
                                                       : jv_invalid();
        }
        if (!jv_is_valid(want)) {
            jv_free(want);
            jv_free(corr);
            jv_free(vals);
            return NULL;
        }
        vals = jv_array_append(vals, corr_canonical(want));
    }
    jv_free(corr);
    return dump_values(vals);
}

static const char regex_chars[] = "*+?[](){}|^$\\"; /* as literal_matches */

static void strategy_keys(struct instance *in, struct fiber *fb, struct frame *fr, const struct cv_strategy *s,
                          const char *which, cv__wait_key_fn add, void *ud)
{
    jv st = jv_get_kind(fr->aux) == JV_KIND_OBJECT ? jv_object_get(jv_copy(fr->aux), jv_string(which)) : jv_invalid();
    jv matched = jv_get_kind(st) == JV_KIND_OBJECT ? jv_object_get(jv_copy(st), jv_string("matched")) : jv_invalid();
    if (s->mode == CV_LISTEN_ANY && s->n == 0)
        add(ud, NULL, NULL, NULL, NULL); /* `any: []`: every event */
    for (int i = 0; i < s->n; i++) {
        if (s->mode == CV_LISTEN_ALL && jv_get_kind(matched) == JV_KIND_ARRAY) {
            jv m = jv_array_get(jv_copy(matched), i);
            int done = jv_get_kind(m) == JV_KIND_TRUE;
            jv_free(m);
            if (done)
                continue; /* an `all` filter matched already is not offered again */
        }
        const struct cv_event_filter *f = &s->filters[i];
        jv type = jv_get_kind(f->with) == JV_KIND_OBJECT ? jv_object_get(jv_copy(f->with), jv_string("type"))
                                                         : jv_invalid();
        if (jv_get_kind(type) != JV_KIND_STRING || strpbrk(jv_string_value(type), regex_chars)) {
            add(ud, NULL, NULL, NULL, NULL); /* no literal type: any event may match */
        } else {
            char *vals = corr_expected(in, fb, fr, f, st);
            add(ud, jv_string_value(type), fr->wfc->wf, vals ? f : NULL, vals);
            free(vals);
        }
        jv_free(type);
    }
    jv_free(matched);
    jv_free(st);
    if (s->until)
        strategy_keys(in, fb, fr, s->until, "until", add, ud);
}

void cv__instance_wait_keys(struct instance *in, cv__wait_key_fn add, void *ud)
{
    for (int i = 0; i < in->nfibers; i++) {
        struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        for (int k = 0; k < fb->nframes; k++) {
            struct frame *fr = &fb->frames[k];
            if (listen_waiting(fr))
                strategy_keys(in, fb, fr, &fr->task->u.listen.to, "main", add, ud);
        }
    }
}

char *cv__event_corr_values(const cv_workflow *wf, const struct cv_event_filter *f, jv ev)
{
    struct cv_evalenv env;
    for (int v = 0; v < CV_VAR_COUNT; v++)
        env.vars[v] = jv_invalid();
    env.scope = jv_object();
    env.materialize = no_var;
    env.ud = NULL;
    jv vals = jv_array();
    int ok = 1;
    for (int i = 0; ok && i < f->ncorr; i++) {
        jv got;
        if (cv__expr_eval(wf->exprs, f->corr[i].from, jv_copy(ev), &env, &got)) {
            jv_free(got);
            ok = 0;
        } else {
            vals = jv_array_append(vals, corr_canonical(got));
        }
    }
    for (int v = 0; v < CV_VAR_COUNT; v++)
        jv_free(env.vars[v]);
    jv_free(env.scope);
    if (!ok) {
        jv_free(vals);
        return NULL;
    }
    return dump_values(vals);
}

void cv__instance_cancel(struct instance *in)
{
    if (!in->root || in->root->state == FB_DONE)
        return;
    fiber_cancel(in, in->root); /* every fiber, effect and timer of the instance */
    in->cancelled = 1;
}

jv cv__instance_result(const struct instance *in)
{
    jv r = jv_object();
    if (in->cancelled) {
        r = jv_object_set(r, jv_string("status"), jv_string("cancelled"));
        r = jv_object_set(r, jv_string("output"), jv_null());
        return jv_object_set(r, jv_string("error"), jv_null());
    }
    if (!in->root || in->root->state != FB_DONE)
        return jv_object_set(r, jv_string("status"), jv_string("running"));
    int faulted = in->root->ret == RET_ERROR;
    r = jv_object_set(r, jv_string("status"), jv_string(faulted ? "faulted" : "completed"));
    r = jv_object_set(r, jv_string("output"), faulted ? jv_null() : jv_copy(in->root->ret_value));
    return jv_object_set(r, jv_string("error"), faulted ? jv_copy(in->root->ret_value) : jv_null());
}

void cv__instance_cleanup(struct instance *in)
{
    instance_drain(in);
    for (int i = 0; i < in->nfibers; i++) {
        struct fiber *fb = in->fibers[i];
        while (fb->nframes) {
            frame_release(top(fb));
            fb->nframes--;
        }
        jv_free(fb->ret_value);
        free(fb->frames);
        free(fb);
    }
    free(in->fibers);
    in->fibers = NULL;
    in->nfibers = 0;
    jv_free(in->trace);
    in->trace = jv_null();
    jv_free(in->inbox);
    in->inbox = jv_null();
    jv_free(in->consumed);
    in->consumed = jv_null();
    jv_free(in->notes);
    in->notes = jv_null();
    jv_free(in->tasks_open);
    jv_free(in->tasks_cancel);
    jv_free(in->tasks_escalate);
    in->tasks_open = in->tasks_cancel = in->tasks_escalate = jv_null();
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->cond);
}

int cv_run_ex(cv_runtime *rt, const cv_workflow *wf, jv input, cv_run_options *opts, jv *report)
{
    *report = jv_null();
    jv resume = opts ? opts->resume : jv_invalid();
    if (opts)
        opts->resume = jv_invalid();
    if (!rt || !wf) {
        jv_free(input);
        jv_free(resume);
        return CV_EINVAL;
    }
    struct instance in;
    jv err;
    int rc = cv__instance_init(&in, rt, wf, opts ? opts->id : NULL, input, resume, &err);
    jv res;
    if (rc) {
        /* faulted at its start (CV_EFAULT), or could not run at all */
        res = JV_OBJECT(jv_string("status"), jv_string("faulted"), jv_string("output"), jv_null(),
                        jv_string("error"), err);
    } else {
        jv_free(err);
        run_instance(&in);
        res = cv__instance_result(&in);
        jv st = jv_object_get(jv_copy(res), jv_string("status"));
        rc = strcmp(jv_string_value(st), "completed") ? CV_EFAULT : CV_OK;
        jv_free(st);
    }
    instance_drain(&in);
    jv r = jv_object();
    r = jv_object_set(r, jv_string("id"), jv_string(in.id));
    r = jv_object_merge(r, res);
    r = jv_object_set(r, jv_string("trace"), jv_copy(in.trace));
    jv notes = cv__instance_take_notes(&in);
    if (jv_array_length(jv_copy(notes)) > 0) /* what its history keeps beside its end (predictions) */
        r = jv_object_set(r, jv_string("notes"), notes);
    else
        jv_free(notes);
    *report = r;
    cv__instance_cleanup(&in);
    return rc;
}

static jv take_array(jv *a)
{
    jv n = *a;
    *a = jv_array();
    if (jv_get_kind(n) != JV_KIND_ARRAY || jv_array_length(jv_copy(n)) == 0) {
        jv_free(n);
        return jv_invalid();
    }
    return n;
}

void cv__instance_take_tasks(struct instance *in, jv *open, jv *cancel, jv *escalate)
{
    *open = take_array(&in->tasks_open);
    *cancel = take_array(&in->tasks_cancel);
    *escalate = take_array(&in->tasks_escalate);
}

jv cv__instance_take_notes(struct instance *in)
{
    jv n = jv_get_kind(in->notes) == JV_KIND_ARRAY ? in->notes : (jv_free(in->notes), jv_array());
    in->notes = jv_array();
    return n;
}
