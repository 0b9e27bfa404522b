/*
 * state.c — the position of a running instance as JSON (DESIGN.md decision 3).
 *
 * Every fiber becomes {branch, parent, state, wakeAt, frames: [...]}, and
 * every frame {type, ref, phase, idx, attempt, rawInput, input, output,
 * scope, aux, deadline}. A task is named by its JSON-pointer reference, a list
 * by the pointer of the list: nothing in this form depends on memory layout,
 * so the durable engine (next issue) can store it at each checkpoint and
 * rebuild the frames from the immutable task tree on resume.
 */
#include "engine/engine_int.h"

static jv orv(jv v) { return jv_is_valid(v) ? jv_copy(v) : jv_null(); }

static const char *const frame_types[] = {"workflow", "list", "task"};
static const char *const fiber_states[] = {"runnable", "effect", "timer", "children", "done"};

static jv frame_json(const struct frame *fr)
{
    jv f = jv_object();
    f = jv_object_set(f, jv_string("type"), jv_string(frame_types[fr->type]));
    const char *ref = fr->type == F_TASK ? fr->task->ref : fr->type == F_LIST ? fr->list->ref : "/";
    f = jv_object_set(f, jv_string("ref"), jv_string(ref));
    if (fr->type == F_WORKFLOW) {
        f = jv_object_set(f, jv_string("workflow"),
                          jv_string_fmt("%s/%s:%s", fr->wfc->wf->ns, fr->wfc->wf->name, fr->wfc->wf->version));
        f = jv_object_set(f, jv_string("context"), jv_copy(fr->wfc->context));
    }
    f = jv_object_set(f, jv_string("phase"), jv_number(fr->phase));
    f = jv_object_set(f, jv_string("idx"), jv_number(fr->idx));
    f = jv_object_set(f, jv_string("attempt"), jv_number(fr->attempt));
    f = jv_object_set(f, jv_string("rawInput"), orv(fr->raw_input));
    f = jv_object_set(f, jv_string("input"), orv(fr->input));
    f = jv_object_set(f, jv_string("output"), orv(fr->output));
    f = jv_object_set(f, jv_string("scope"), orv(fr->scope));
    /* fork results hold invalid slots for branches still running */
    jv aux = orv(fr->aux);
    if (jv_get_kind(aux) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(aux));
        for (int i = 0; i < n; i++) {
            jv x = jv_array_get(jv_copy(aux), i);
            if (!jv_is_valid(x))
                aux = jv_array_set(aux, i, jv_null());
            jv_free(x);
        }
    }
    f = jv_object_set(f, jv_string("aux"), aux);
    if (fr->deadline)
        f = jv_object_set(f, jv_string("deadline"), jv_number((double)fr->deadline));
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
            f = jv_object_set(f, jv_string("wakeAt"), jv_number((double)fb->wake_at));
        jv frames = jv_array();
        for (int k = 0; k < fb->nframes; k++)
            frames = jv_array_append(frames, frame_json(&fb->frames[k]));
        f = jv_object_set(f, jv_string("frames"), frames);
        fibers = jv_array_append(fibers, f);
    }
    jv s = jv_object();
    s = jv_object_set(s, jv_string("id"), jv_string(in->id));
    return jv_object_set(s, jv_string("fibers"), fibers);
}
