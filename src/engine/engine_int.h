/*
 * engine_int.h — internals of the interpreter shared by the files of
 * src/engine (runtime.c, interp.c, state.c).
 *
 * An instance is a set of fibers; a fiber is a stack of frames. A frame names
 * its task by reference and holds only jv values and integers, so the whole
 * position of an instance can be written out as JSON (state.c) — DESIGN.md
 * decision 3. C pointers in a frame (task, list, wfctx) are caches of what the
 * references name.
 */
#ifndef CV_ENGINE_INT_H
#define CV_ENGINE_INT_H

#include "conveyor.h"
#include "dsl/model.h"
#include "effects/effects.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* Task durations by task kind, for /metrics (cv__runtime_task_stats). */
#define CV_TASK_KINDS 12 /* call do emit for fork listen raise run set switch try wait */
#define CV_TASK_BUCKETS 11
extern const char *const cv__task_kind_names[CV_TASK_KINDS];
extern const double cv__task_buckets_s[CV_TASK_BUCKETS]; /* upper bounds; +Inf after them */

struct cv_runtime {
    struct cv_hostmap *hosts;
    struct cv_http_ctx *http;
    jv secrets;
    cv_workflow **subflows;
    int nsubflows;
    double time_scale;
    FILE *events;
    pthread_mutex_t events_lock;
    int trace;
    long long effect_timeout_ms;
    cv_checkpoint_fn checkpoint;
    void *checkpoint_ud;
    /* functions loaded at run time (call: URL / name:version@catalog), by URL */
    pthread_mutex_t remote_lock;
    char **remote_urls;
    cv_workflow **remote_fns;
    int nremote;
    /* counters for /metrics, updated by every thread */
    atomic_llong effects_in_flight;
    /* the default catalog's models, over the process's store (cv__runtime_set_model_store) */
    struct cv_models *models;
    atomic_llong task_count[CV_TASK_KINDS][CV_TASK_BUCKETS + 1];
    atomic_llong task_sum_us[CV_TASK_KINDS];
};

/* The store the default catalog reads models from (borrowed: it must
 * outlive the runtime's use of it; NULL: none). Call before running. */
struct cv_store;
int cv__runtime_set_model_store(cv_runtime *rt, struct cv_store *st);

/* Records a task of kind `kind_name` that took `us` microseconds. */
void cv__runtime_task_done(cv_runtime *rt, const char *kind_name, int64_t us);

/* One execution of one workflow definition (the root, or a subflow). */
struct wfctx {
    const struct cv_workflow *wf;
    jv context;    /* $context */
    jv descriptor; /* $workflow */
    jv secrets;    /* $secrets: the declared secrets only */
    int refs;
};

enum frame_type { F_WORKFLOW, F_LIST, F_TASK };

struct frame {
    int type;
    int phase;
    const struct cv_task *task;     /* F_TASK */
    const struct cv_tasklist *list; /* F_LIST */
    struct wfctx *wfc;
    int idx;          /* list position, loop iteration, extension position */
    int attempt;      /* try: retries done so far */
    int then_kind, then_target; /* the directive chosen by a switch */
    int exited;       /* F_LIST: ended by `then: exit` */
    jv raw_input;
    jv input;         /* transformed input ($input) */
    jv output;        /* raw, then transformed output */
    jv scope;         /* scope variables visible here (object) */
    jv aux;           /* for: the collection; try: the error; fork: results */
    jv authz;         /* $authorization after a call */
    int64_t deadline; /* monotonic ms; 0 = none */
    int64_t deadline_wall_start;
    int64_t started_wall;
    int64_t started_us; /* the same in microseconds (not kept in the position: 0 after a restore) */
    int64_t first_attempt_ms; /* try: when the first attempt started */
    int trace_idx;
};

enum fiber_state { FB_RUNNABLE, FB_EFFECT, FB_TIMER, FB_CHILDREN, FB_DONE, FB_EVENT };
enum ret_kind { RET_NONE, RET_NORMAL, RET_ERROR, RET_END };

struct effect;

struct fiber {
    struct frame *frames;
    int nframes, cap;
    int state;
    int64_t wake_at;
    struct effect *effect;
    struct fiber *parent;
    int branch;  /* index among the parent's fork branches */
    int cancelled;
    /* the return register: a frame that finished hands its result to the one below */
    int ret;
    jv ret_value;
    int ret_then_kind, ret_then_target;
    int ret_exited;
};

struct effect {
    int kind; /* task kind */
    jv args, input;
    atomic_int cancel;
    struct fiber *fiber; /* NULL once abandoned */
    int rc;
    jv out, authz;
    jv note; /* for the instance's history (a prediction), or invalid */
    char idem[512];
    cv_effect_env env;
    struct instance *inst;
    struct effect *next;
};

struct instance {
    cv_runtime *rt;
    char id[37];
    struct fiber **fibers;
    int nfibers, cap;
    struct fiber *root;
    jv trace;
    int tracing;
    /* completed effects, posted by the I/O thread or effect threads (effect_run.c) */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct effect *done;
    int in_flight;
    int64_t started_wall;
    int dirty; /* progressed since the last checkpoint */
    int cancelled;
    /* the event bus (listen): events offered by the scheduler, each
     * {seq, event}, looked at by the next advance and then dropped; the seqs
     * of events this instance consumed (kept in its position); set when a
     * listen began (the scheduler then offers the events it kept) */
    jv inbox;
    jv consumed;
    int listen_began;
    /* history entries ({type, task, data}) the instance produced since its
     * last checkpoint (a model's prediction): the scheduler writes them with
     * the next one (cv__instance_take_notes) */
    jv notes;
    /* review tasks (`call: review`) opened, cancelled and escalated since the
     * last checkpoint: the scheduler writes them with the next one
     * (cv__instance_take_tasks; tasks_add, tasks_cancel, tasks_escalate) */
    jv tasks_open, tasks_cancel, tasks_escalate;
    int reviews; /* review tasks opened so far (in its position): part of each task's id */
    /* called by whoever posts an effect's result (holding `lock`) */
    void (*wake)(void *ud);
    void *wake_ud;
};

/*
 * The life of an instance, for the schedulers (cv_run_ex and engine.c).
 * init: `in` is caller storage; runs `wf` afresh with `input`, or from the
 * position `resume` (both consumed). Returns 0; CV_EFAULT with *err when the
 * instance faults at once (a declared secret is missing); CV_EINVAL with *err
 * for a position that does not fit; CV_ENOMEM. Clean up with
 * cv__instance_cleanup in every case.
 * advance: runs until every fiber blocks; 1 when the instance has ended,
 * else 0 with *wake = the earliest timer or deadline (0: effects only).
 * collect: delivers finished effects; returns how many.
 * result: {status: running|completed|faulted|cancelled, output, error}.
 */
int cv__instance_init(struct instance *in, cv_runtime *rt, const cv_workflow *wf, const char *id, jv input,
                      jv resume, jv *err);
int cv__instance_advance(struct instance *in, int64_t *wake);
int cv__instance_collect(struct instance *in);
jv cv__instance_result(const struct instance *in);
/* Events for the instance's listens (array of {seq, event}, consumed), in
 * seq order: the next advance offers each to every listen still waiting. */
void cv__instance_offer(struct instance *in, jv events);
/* Does event `ev` (borrowed) pass filter `f` of workflow `wf` (its literal
 * attributes and `${ }` predicates; correlations are not looked at)? 1, 0,
 * or -1 with *err (an expression failed). For `schedule.on`. */
int cv__event_matches(const cv_workflow *wf, const struct cv_event_filter *f, jv ev, jv *err);
/* The history entries the instance produced since this was last called
 * (an array, possibly empty; values of the instance's thread). */
jv cv__instance_take_notes(struct instance *in);
/* The review tasks it opened, cancelled, escalated since this was last
 * called (arrays for the checkpoint's tasks_add, tasks_cancel,
 * tasks_escalate; invalid when none; values of the instance's thread). */
void cv__instance_take_tasks(struct instance *in, jv *open, jv *cancel, jv *escalate);
/* 1 when some fiber of the instance waits in a listen (its events matter). */
int cv__instance_listening(const struct instance *in);
/*
 * For a scheduler that evicts idle instances to the store (engine.c,
 * DESIGN.md decision 5).
 * quiescent: 1 when nothing of the instance is in flight or pending (no
 * effect, no posted result, no event in its inbox, no listen that has not
 * read the bus yet, no progress since its last checkpoint): every fiber waits
 * on a timer, an event or its branches. Its position at the last checkpoint
 * is then all there is to it.
 * listen_cursor: the lowest bus seq its waiting listens have looked at (the
 * bus needs to be read only after it), or -1 when none waits.
 * listen_skip: marks the events up to `seq` as looked at by its waiting
 * listens (the caller knows none of them could match).
 * wait_keys: what its waiting listens may consume, one add() per filter:
 * type NULL = events of any type (no literal type, a regex, `any: []`);
 * f NULL = every event of that type; else only the events of that type whose
 * cv__event_corr_values(wf, f, event) equals `values` (canonical JSON text,
 * borrowed). Conservative: an event outside every key cannot change the
 * instance (it would be looked at and left).
 * corr_values: filter f's `correlate.*.from` on event `ev` (borrowed), as the
 * canonical JSON text wait_keys gives (malloc'd; the caller frees), or NULL
 * when an expression fails (then every instance keyed on f must look).
 */
int cv__instance_quiescent(struct instance *in);
int64_t cv__instance_listen_cursor(const struct instance *in);
void cv__instance_listen_skip(struct instance *in, int64_t seq);
typedef void (*cv__wait_key_fn)(void *ud, const char *type, const cv_workflow *wf, const struct cv_event_filter *f,
                                const char *values);
void cv__instance_wait_keys(struct instance *in, cv__wait_key_fn add, void *ud);
char *cv__event_corr_values(const cv_workflow *wf, const struct cv_event_filter *f, jv ev);

/*
 * waits.c: one worker's index of the instances it evicted to the store
 * (owned by that worker thread alone). An entry is an instance id, its wake
 * time (monotonic ms, 0 = none; in a heap) and, for a listening instance,
 * the keys of cv__instance_wait_keys (in a hash table), so that a due timer
 * or an event finds exactly the instances to load again.
 * add: 0, or CV_ENOMEM (nothing added). `in` (borrowed) is NULL for an
 * instance that listens to nothing. remove: 1 when `id` was evicted (it is no
 * longer), else 0. due: takes up to `max` ids whose wake time has come into
 * ids; returns how many. next_wake: the earliest wake time, 0 when none.
 * match: takes up to `max` ids of instances event `ev` (borrowed, a
 * CloudEvent) may concern into ids (out of the index); returns how many. Call
 * it again with the same event until it returns less than `max`. Out of
 * memory, it takes every id (correctness first). take_all: up to `max` ids,
 * whatever they wait for.
 */
struct cv_waits;
struct cv_waits *cv__waits_new(void);
void cv__waits_free(struct cv_waits *ws);
int cv__waits_add(struct cv_waits *ws, const char *id, int64_t wake, struct instance *in);
int cv__waits_remove(struct cv_waits *ws, const char *id);
int cv__waits_due(struct cv_waits *ws, int64_t now, char (*ids)[37], int max);
int64_t cv__waits_next_wake(const struct cv_waits *ws);
int cv__waits_match(struct cv_waits *ws, jv ev, char (*ids)[37], int max);
int cv__waits_take_all(struct cv_waits *ws, char (*ids)[37], int max);
long long cv__waits_count(const struct cv_waits *ws);
/* 1 when `id` is evicted into the index (it stays there). */
int cv__waits_has(const struct cv_waits *ws, const char *id);

/* engine.c, for tests and /metrics: instances held in memory by the workers,
 * instances evicted to the store (waiting on a timer or an event; `running`
 * in cv_engine_stats counts both), and how many times an evicted instance
 * was loaded again (its timer, an event its index entry matched, a control). */
struct cv_engine;
void cv__engine_residency(struct cv_engine *e, long long *resident, long long *evicted, long long *reloads);
/* Evict an idle instance only when its next timer is at least `ms` away (default
 * 1,000: a timer that comes sooner is cheaper to keep than to reload); 0 for
 * tests. Call before cv__engine_start. */
void cv__engine_set_evict_min_wait(struct cv_engine *e, int64_t ms);

/* Cancels every fiber (effects abandoned, timers dropped); result: cancelled. */
void cv__instance_cancel(struct instance *in);
void cv__instance_cleanup(struct instance *in);

/* effect_run.c: runs a prepared effect (its fields set, counted in flight)
 * and posts its result to its instance. launch: 0, or CV_EFAULT when it
 * could not be started (nothing posted). post: delivers (rc, out, authz:
 * consumed) to the instance's queue of finished effects and wakes it. */
int cv__effect_launch(struct effect *e);
void cv__effect_post(struct effect *e, int rc, jv out, jv authz);

/* runtime.c */
const cv_workflow *cv__runtime_find_workflow(cv_runtime *rt, const char *ns, const char *name,
                                             const char *version);
void cv__runtime_emit(cv_runtime *rt, jv event /* borrowed */);
/*
 * A thread's own source of definitions. A scheduler whose workers each keep
 * their own copies (jv reference counts are not atomic) installs one on each
 * worker thread; the runtime's lookups below ask it first. find: a subflow by
 * namespace/name/version ("latest" allowed), NULL when unknown. remote_get /
 * remote_put: the thread's cache of remote functions, as below.
 */
struct cv_resolver {
    const cv_workflow *(*find)(void *ud, const char *ns, const char *name, const char *version);
    const cv_workflow *(*remote_get)(void *ud, const char *url);
    const cv_workflow *(*remote_put)(void *ud, const char *url, cv_workflow *wf);
    /* the event bus of a scheduler, or NULL (then `listen` is not available):
     * an event an instance emitted (borrowed) */
    void (*emit)(void *ud, jv event);
    void *ud;
};
/* 1 when the calling thread has an event bus (a scheduler's worker). */
int cv__runtime_has_bus(void);
/* Installs (or, with NULL, removes) the calling thread's resolver. */
void cv__runtime_set_thread_resolver(const struct cv_resolver *r);

/* The cached definition of a remote function, or NULL. */
const cv_workflow *cv__runtime_remote_get(cv_runtime *rt, const char *url);
/* Caches `wf` (ownership passes to the runtime) and returns the cached one
 * (which may be an earlier copy, in which case `wf` is freed). */
const cv_workflow *cv__runtime_remote_put(cv_runtime *rt, const char *url, cv_workflow *wf);

/* schedule.c: the `schedule` of deployed workflows, on a thread of its own
 * (started by cv__engine_start, stopped first by cv__engine_stop). reload:
 * the deployed documents changed; events: the bus has new events. */
struct cv_engine;
struct cv_schedules;
int cv__schedules_start(struct cv_engine *e, struct cv_schedules **out);
void cv__schedules_reload(struct cv_schedules *s);
void cv__schedules_events(struct cv_schedules *s);
void cv__schedules_stop(struct cv_schedules *s);

/* sink.c: event sinks, one thread per URL (started by cv__engine_start,
 * poked when events are committed, stopped by cv__engine_stop). */
struct cv_sink;
int cv__sinks_start(struct cv_engine *e, char *const *urls, int n, struct cv_sink **out);
void cv__sinks_poke(struct cv_sink *k);
void cv__sinks_stop(struct cv_sink *k);

/* state.c: the serializable position of an instance (DESIGN.md decision 3). */
jv cv__instance_state(const struct instance *in);
/* "running" or "waiting" (every fiber on a timer or its branches) for a
 * position (borrowed): the status a checkpoint records. Static string. */
const char *cv__state_status(jv state);

#endif
