/*
 * engine.h — many durable instances at once, over a store (DESIGN.md
 * decisions 3 to 5). The server (next) sits on this; `conveyor run --db` is
 * the one-instance case without it.
 *
 * Worker threads own instances: an instance stays on one worker for its life
 * in this process, because jq 1.6's jv reference counts are not atomic and
 * each worker loads its own copy of every definition it runs. A blocked
 * instance is parked (no thread); the effect result posted by the runtime's
 * I/O thread (HTTP and OpenAPI calls, child processes) or by an effect's own
 * thread (what would block before its exchange: effect_run.c), or a due
 * timer, puts it back in its worker's queue. Checkpoints from all workers
 * go to one commit thread that writes them in batches (group commit, one
 * transaction and one fsync per batch); an instance's end is reported to
 * waiters only once its last checkpoint is durable. On start, every
 * unfinished instance of the store resumes from its last checkpoint; with a
 * node name (cluster mode, docs/cluster.md) only those this node takes by
 * lease, and more as other nodes' leases end.
 * Subflows (`run: workflow`) and remote functions (`call: URL`) are also
 * per-worker copies: the runtime's subflows are deployed into the store at
 * start, and each worker installs a resolver (cv__runtime_set_thread_resolver)
 * that loads them, like root definitions, into its own cache.
 */
#ifndef CV_ENGINE_H
#define CV_ENGINE_H

#include "conveyor.h"
#include "store/store.h"

struct cv_engine;

struct cv_engine_options {
    int workers;        /* worker threads (default 2) */
    int batch_max;      /* checkpoints per transaction at most (default 512) */
    int batch_wait_us;  /* how long a batch waits for company (default 0) */
    int64_t event_retention_ms; /* how long the bus keeps an event for listens
                                   that start later (default 24 h) */
    char *const *event_sinks;   /* HTTP URLs that receive the events instances
                                   emit (borrowed for the engine's life) */
    int nevent_sinks;
    /* Cluster mode (docs/cluster.md): this node's name (borrowed; NULL: the
     * only process running the store's instances, as with SQLite). Several
     * nodes share the store's instances by leases of lease_ms (default
     * 10 s): a node takes the unfinished instances whose lease ended, renews
     * its own, and its checkpoints carry the epoch it took them at, so a
     * node that lost an instance cannot overwrite its new owner's progress. */
    const char *node;
    int64_t lease_ms;
};

/*
 * Creates an engine over `rt` (borrowed; its checkpoint hook is taken over)
 * and `store` (borrowed; the engine serialises its use of it). Nothing runs
 * until cv__engine_start.
 */
int cv__engine_new(cv_runtime *rt, cv_store *store, const struct cv_engine_options *o, struct cv_engine **out);
/* Starts the threads and resumes every unfinished instance of the store
 * (cluster mode: those whose lease ended, and this node's own). *resumed
 * (may be NULL) = how many. */
int cv__engine_start(struct cv_engine *e, int *resumed, jv *err);
/* Stops taking work, lets running instances reach their next checkpoint,
 * writes every pending checkpoint, joins the threads and frees the engine.
 * Instances not finished stay unfinished in the store. */
void cv__engine_stop(struct cv_engine *e);

/* Deploys a document (validated first). *out = {namespace, name, version} on
 * success, or the diagnostics array (CV_EPARSE/CV_EVALIDATE), or a message
 * (CV_ECONFLICT: that version exists with other content). */
int cv__engine_deploy(struct cv_engine *e, const char *text, size_t len, jv *out);

/* Creates an instance (durably) and schedules it. An idempotency key already
 * used returns that instance (*existed = 1). id_out: at least 64 bytes. */
int cv__engine_start_instance(struct cv_engine *e, const char *ns, const char *name, const char *version,
                              jv input, const char *idempotency_key, char *id_out, int *existed, jv *err);

/* The same, with history events (array, consumed; e.g. who started it)
 * written with the start: a new instance's history begins with
 * workflow.started and these, before anything the instance does. */
int cv__engine_start_instance_ex(struct cv_engine *e, const char *ns, const char *name, const char *version,
                                 jv input, const char *idempotency_key, jv events, char *id_out, int *existed,
                                 jv *err);

/*
 * Publishes CloudEvents on the engine's bus (`events`: array of event
 * objects, consumed; each already checked by the caller): stored durably in
 * one transaction and kept for the retention time, then offered to every
 * waiting listen. *seqs = their bus sequence numbers. Returns 0 or a store
 * code with *err.
 */
int cv__engine_publish(struct cv_engine *e, jv events, jv *seqs, jv *err);

/* Waits up to timeout_ms for the instance to end; *out = {id, status,
 * output, error} (status running when it has not ended). The end is durable
 * when reported. Returns 0, or CV_ENOTFOUND. */
int cv__engine_wait(struct cv_engine *e, const char *id, int timeout_ms, jv *out);

/* Read paths for the API, through the engine's serialised use of the store
 * (same results and codes as the cv_store_* functions of the same name). */
int cv__engine_get_instance(struct cv_engine *e, const char *id, jv *out, jv *err);
int cv__engine_list_instances(struct cv_engine *e, jv filter, int limit, const char *after, jv *out, jv *next,
                              jv *err);
int cv__engine_history(struct cv_engine *e, const char *id, jv *out, jv *err);
int cv__engine_get_workflow(struct cv_engine *e, const char *ns, const char *name, const char *version, jv *out,
                            jv *err);
int cv__engine_list_workflows(struct cv_engine *e, jv *out, jv *err);
int cv__engine_list_events(struct cv_engine *e, int64_t after, int limit, jv *out, jv *err);
int cv__engine_get_cursor(struct cv_engine *e, const char *name, int64_t *seq, jv *err);
/* Whether this node does the cluster-wide job `job` now (a named lease,
 * taken or renewed by the call); always 1 without a node name. */
int cv__engine_leads(struct cv_engine *e, const char *job);
int cv__engine_set_cursor(struct cv_engine *e, const char *name, int64_t seq, jv *err);
/* Appends events (array, consumed) to an instance's history, e.g. who did
 * what through the API: {type, data: {who, action, ...}}. */
int cv__engine_note(struct cv_engine *e, const char *id, jv events, jv *err);

/*
 * Cancels, suspends or resumes an instance (`action` "cancel" | "suspend" |
 * "resume"). `who` (consumed; e.g. {"who": peer, "at": time}) goes into the
 * history event. Asynchronous but ordered after the instance's own work: the
 * change is a checkpoint like any other. A cancelled instance's effects are
 * abandoned (processes killed, transfers aborted) and it ends `cancelled`;
 * a suspended one is not advanced (effect results wait) until resumed, and
 * stays suspended across restarts. Returns 0; CV_ENOTFOUND; CV_ECONFLICT
 * (*err says why) when its status does not allow it (an ended instance, a
 * suspend of a suspended one, a resume of one that is not suspended).
 */
int cv__engine_control(struct cv_engine *e, const char *id, const char *action, jv who, jv *err);

/* ---- review tasks (docs/tasks.md): the API's path to the task store -------------------------- */
/*
 * Runs fn(store, ctx) inside the engine's serialised use of the store and
 * returns its code. When fn returns 0 and `published` is set (fn put events
 * on the bus, e.g. a task's completion event), the bus's new events are
 * offered to every waiting listen, as after cv__engine_publish.
 */
int cv__engine_with_store(struct cv_engine *e, int (*fn)(cv_store *st, void *ctx), void *ctx, int published);
/* How long the bus keeps a published event (ms): the engine's retention. */
int64_t cv__engine_event_retention_ms(struct cv_engine *e);

/* Counters for tests and metrics. */
#define CV_BATCH_BUCKETS 10   /* batch sizes <= 1, 2, 4, ... 512, then +Inf */
#define CV_COMMIT_BUCKETS 10  /* commit latencies <= 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000 ms, then +Inf */
extern const double cv__commit_buckets_ms[CV_COMMIT_BUCKETS];
struct cv_engine_stats {
    long long checkpoints, batches, completed, faulted, cancelled, resumed;
    long long running;      /* instances held by workers now (running or parked) */
    long long commit_queue; /* checkpoints and starts waiting for the commit thread */
    long long ready;        /* instances waiting for their worker */
    long long effects_in_flight; /* HTTP calls, child processes, fetches running */
    long long taken, lost;  /* cluster: instances taken from the store's leases, and
                               dropped because another node took them */
    long long lapses;       /* cluster: times this node's leases lapsed unrenewed */
    long long batch_size[CV_BATCH_BUCKETS + 1];
    long long commit_ms[CV_COMMIT_BUCKETS + 1];
    double commit_ms_sum;
};
/* Task durations (copies of the runtime's counters): count[kind][bucket]
 * for the kinds and bucket bounds of engine_int.h, and sums in seconds. */
struct cv_task_stats {
    long long count[12][12];
    double sum_s[12];
};
void cv__engine_task_stats(struct cv_engine *e, struct cv_task_stats *out);
void cv__engine_stats(struct cv_engine *e, struct cv_engine_stats *out);

#endif
