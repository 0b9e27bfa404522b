/*
 * state.c — the position of a running instance as JSON (DESIGN.md decision 3).
 *
 * Every fiber becomes {index, parent, branch, state, wakeAt?, frames: [...]},
 * and every frame {type, ref, phase, idx, attempt, then?, rawInput, input?,
 * output?, scope, aux, authz, deadlineAt?, startedAt, ...}. A task is named by
 * its JSON-pointer reference and a list by the pointer of the list: nothing
 * in this form depends on memory layout, so a store can keep it at each
 * checkpoint and interp.c (cv__instance_restore) can rebuild the frames from
 * the immutable task tree after a restart. Times are wall-clock milliseconds
 * (monotonic clocks do not survive a restart). A value that is not set yet
 * (a task's input before input.from ran) is absent, not null.
 */
#include "engine/engine_int.h"

#include "common/util.h"

#include <string.h>

static const char *const frame_types[] = {"workflow", "list", "task"};
static const char *const fiber_states[] = {"runnable", "effect", "timer", "children", "done", "event"};

/* Monotonic ms → wall ms, by the offset between the two clocks now. */
static double to_wall(int64_t mono) { return (double)(mono - cv__now_ms() + cv__wall_ms()); }

static jv set_if_valid(jv obj, const char *key, jv v /* borrowed */)
{
    if (jv_is_valid(v))
        obj = jv_object_set(obj, jv_string(key), jv_copy(v));
    return obj;
}

static jv frame_json(const struct frame *fr)
{
    jv f = jv_object();
    f = jv_object_set(f, jv_string("type"), jv_string(frame_types[fr->type]));
    const char *ref = fr->type == F_TASK ? fr->task->ref : fr->type == F_LIST ? fr->list->ref : "/";
    f = jv_object_set(f, jv_string("ref"), jv_string(ref));
    if (fr->type == F_WORKFLOW) {
        const struct cv_workflow *wf = fr->wfc->wf;
        f = jv_object_set(f, jv_string("workflow"), jv_string_fmt("%s/%s:%s", wf->ns, wf->name, wf->version));
        f = jv_object_set(f, jv_string("context"), jv_copy(fr->wfc->context));
        jv started = jv_getpath(jv_copy(fr->wfc->descriptor),
                                JV_ARRAY(jv_string("startedAt"), jv_string("epoch"), jv_string("milliseconds")));
        f = jv_object_set(f, jv_string("workflowStartedAt"), started);
    }
    f = jv_object_set(f, jv_string("phase"), jv_number(fr->phase));
    f = jv_object_set(f, jv_string("idx"), jv_number(fr->idx));
    f = jv_object_set(f, jv_string("attempt"), jv_number(fr->attempt));
    if (fr->type == F_TASK)
        f = jv_object_set(f, jv_string("then"), JV_ARRAY(jv_number(fr->then_kind), jv_number(fr->then_target)));
    f = set_if_valid(f, "rawInput", fr->raw_input);
    f = set_if_valid(f, "input", fr->input);
    f = set_if_valid(f, "output", fr->output);
    f = set_if_valid(f, "scope", fr->scope);
    f = set_if_valid(f, "authz", fr->authz);
    /* fork results hold invalid slots for branches still running */
    jv aux = jv_is_valid(fr->aux) ? jv_copy(fr->aux) : jv_null();
    if (fr->type == F_TASK && fr->task->kind == CV_T_FORK && jv_get_kind(aux) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(aux));
        jv done = jv_array();
        for (int i = 0; i < n; i++) {
            jv x = jv_array_get(jv_copy(aux), i);
            done = jv_array_append(done, jv_is_valid(x) ? jv_true() : jv_false());
            if (!jv_is_valid(x))
                aux = jv_array_set(aux, i, jv_null());
            jv_free(x);
        }
        f = jv_object_set(f, jv_string("forkDone"), done);
    }
    f = jv_object_set(f, jv_string("aux"), aux);
    if (fr->deadline)
        f = jv_object_set(f, jv_string("deadlineAt"), jv_number(to_wall(fr->deadline)));
    if (fr->first_attempt_ms)
        f = jv_object_set(f, jv_string("firstAttemptAt"), jv_number(to_wall(fr->first_attempt_ms)));
    f = jv_object_set(f, jv_string("startedAt"), jv_number((double)fr->started_wall));
    return f;
}

jv cv__instance_state(const struct instance *in)
{
    jv fibers = jv_array();
    for (int i = 0; i < in->nfibers; i++) {
        const struct fiber *fb = in->fibers[i];
        if (fb->state == FB_DONE)
            continue;
        jv f = jv_object();
        int parent = -1;
        for (int k = 0; k < in->nfibers; k++)
            if (in->fibers[k] == fb->parent)
                parent = k;
        f = jv_object_set(f, jv_string("index"), jv_number(i));
        f = jv_object_set(f, jv_string("parent"), jv_number(parent));
        f = jv_object_set(f, jv_string("branch"), jv_number(fb->branch));
        f = jv_object_set(f, jv_string("state"), jv_string(fiber_states[fb->state]));
        if (fb->state == FB_TIMER)
            f = jv_object_set(f, jv_string("wakeAt"), jv_number(to_wall(fb->wake_at)));
        jv frames = jv_array();
        for (int k = 0; k < fb->nframes; k++)
            frames = jv_array_append(frames, frame_json(&fb->frames[k]));
        f = jv_object_set(f, jv_string("frames"), frames);
        fibers = jv_array_append(fibers, f);
    }
    jv s = jv_object();
    s = jv_object_set(s, jv_string("version"), jv_number(1));
    s = jv_object_set(s, jv_string("id"), jv_string(in->id));
    if (jv_get_kind(in->consumed) == JV_KIND_ARRAY && jv_array_length(jv_copy(in->consumed)) > 0)
        s = jv_object_set(s, jv_string("consumedEvents"), jv_copy(in->consumed));
    if (in->reviews > 0)
        s = jv_object_set(s, jv_string("reviewsOpened"), jv_number(in->reviews));
    return jv_object_set(s, jv_string("fibers"), fibers);
}

const char *cv__state_status(jv state)
{
    /* running while an effect is in flight or a fiber can run; waiting when
     * every fiber waits on a timer, an event or its branches */
    jv fibers = jv_object_get(jv_copy(state), jv_string("fibers"));
    const char *status = "waiting";
    if (jv_get_kind(fibers) == JV_KIND_ARRAY) {
        jv_array_foreach(fibers, i, f)
        {
            jv st = jv_object_get(f, jv_string("state"));
            if (jv_get_kind(st) == JV_KIND_STRING && strcmp(jv_string_value(st), "timer") &&
                strcmp(jv_string_value(st), "children") && strcmp(jv_string_value(st), "event"))
                status = "running";
            jv_free(st);
        }
    }
    jv_free(fibers);
    return status;
}
