/*
 * effect_run.c — where an effect runs once the interpreter has prepared it
 * (struct effect, engine_int.h), and how its result reaches its instance.
 *
 * `call: http`, `call: openapi` and the child processes of `run: shell` /
 * `run: script` run on the runtime's I/O thread (src/effects/io.c: one libcurl
 * multi handle, connections kept alive; the children's pipes and pidfds in
 * the same poll): no thread waits for them. What would block before its
 * exchange still runs to its end on a detached thread: the first call of an
 * OpenAPI document (it fetches the document, which is then cached), HTTP and
 * OpenAPI calls whose OAuth2/OIDC token may need an exchange of its own, and
 * the fetch of a remote definition.
 * Either way the result is posted to the instance's queue of finished
 * effects and the instance is woken (cv__effect_post).
 */
#include "engine/engine_int.h"

#include "effects/http.h"
#include "effects/process.h"
#include "ml/catalog.h"

#include <pthread.h>

void cv__effect_post(struct effect *e, int rc, jv out, jv authz)
{
    struct instance *in = e->inst;
    atomic_fetch_sub(&in->rt->effects_in_flight, 1);
    pthread_mutex_lock(&in->lock);
    e->rc = rc;
    e->out = out;
    e->authz = authz;
    e->next = in->done;
    in->done = e;
    pthread_cond_signal(&in->cond);
    /* a scheduler's instance is parked, not waiting on the condition: wake
     * it while holding the lock, so that it cannot be freed meanwhile */
    if (in->wake)
        in->wake(in->wake_ud);
    pthread_mutex_unlock(&in->lock);
}

static void *effect_thread(void *arg)
{
    struct effect *e = arg;
    jv out = jv_null(), authz = jv_null();
    int rc;
    switch (e->kind) {
    case CV_T_CALL_HTTP:
        rc = cv__http_call(&e->env, jv_copy(e->args), jv_copy(e->input), &out, &authz);
        break;
    case CV_T_CALL_OPENAPI:
        rc = cv__openapi_call(&e->env, jv_copy(e->args), &out, &authz);
        break;
    case CV_T_CALL_REMOTE:
        rc = cv__fetch_text(&e->env, jv_string_value(e->args), &out);
        break;
    case CV_T_CALL_CATALOG: {
        jv fn = jv_object_get(jv_copy(e->args), jv_string("function"));
        jv with = jv_object_get(jv_copy(e->args), jv_string("with"));
        jv note;
        rc = cv__catalog_call(e->env.models, jv_string_value(fn), e->inst->id, with, &out, &note);
        e->note = note; /* read by the instance once the result is posted */
        jv_free(fn);
        jv_free(with);
        break;
    }
    default:
        rc = cv__process_run(&e->env, jv_copy(e->args), jv_copy(e->input), &out);
        break;
    }
    cv__effect_post(e, rc, out, authz);
    return NULL;
}

static void http_done(void *ud, int rc, jv out, jv authz)
{
    cv__effect_post(ud, rc, out, authz);
}

static void process_done(void *ud, int rc, jv out)
{
    cv__effect_post(ud, rc, out, jv_null());
}

int cv__effect_launch(struct effect *e)
{
    if (e->kind == CV_T_CALL_HTTP && cv__http_call_start(&e->env, e->args, e->input, http_done, e) == CV_OK)
        return 0;
    if (e->kind == CV_T_CALL_OPENAPI && cv__openapi_call_start(&e->env, e->args, http_done, e) == CV_OK)
        return 0;
    if (e->kind == CV_T_RUN_PROCESS &&
        cv__process_start(&e->env, e->args, e->input, process_done, e) == CV_OK)
        return 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, effect_thread, e);
    pthread_attr_destroy(&attr);
    return rc ? CV_EFAULT : 0;
}
