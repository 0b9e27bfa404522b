/*
 * engine.c — the scheduler of durable instances (see engine.h).
 *
 * Threads and what each may touch:
 *   workers      their own instances and definitions (all jv values of an
 *                instance live on its worker);
 *   the I/O thread and effect threads (effect_run.c)  deep copies only
 *                (interp.c), then wake the worker;
 *   the committer   pending checkpoints, which are deep copies made by the
 *                worker that queued them, and the results map;
 *   callers      the store (under store_lock) and the results map (under
 *                res_lock), through deep copies.
 * Lock order: an instance's lock, then its worker's lock. Nobody holds a
 * worker's lock while taking an instance's.
 *
 * A worker holds in memory only the instances that have something to do or
 * wait for an effect; one that waits only on timers and events is evicted
 * to the store once its checkpoint is durable, and an entry in the worker's
 * index (waits.c) stands for it until it is loaded again (section
 * "eviction"; docs/engine.md).
 *
 * Sections: the commit queue and thread, instances on workers, eviction,
 * the public calls.
 */
#include "engine/engine.h"

#include "common/jvx.h"
#include "common/util.h"
#include "engine/engine_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_PREFIX "io.serverlessworkflow."
#define MAX_RESULTS 20000

struct worker;

struct einst {
    struct instance in;
    struct worker *w;
    const cv_workflow *wf;
    int suspended; /* not advanced until resumed */
    int queued;   /* in the worker's ready queue */
    int64_t wake; /* parked until this monotonic time; 0: woken by effects only */
    /* eviction (see "eviction" below) */
    uint64_t cp_seq;  /* the worker's commit-queue number of its latest write; 0: none */
    int from_store;   /* its position came from the store (durable as loaded) */
    int candidate;    /* in the worker's list of instances waiting for durability */
    int no_evict;     /* it missed a read of the bus: keep it */
    int64_t epoch;    /* cluster: the epoch this node took it at (its checkpoints carry it); 0: unchecked */
};

/* A request to take an instance on a worker (new, or resumed). */
struct startreq {
    char id[64];
    char key[400]; /* namespace/name:version */
    char ns[128], name[128], version[128];
    jv input; /* deep copies */
    jv state;
    int64_t epoch;
    struct startreq *next;
};

struct defentry {
    char *key;
    cv_workflow *wf;
};

enum ctl_op { CTL_CANCEL, CTL_SUSPEND, CTL_RESUME };

/* cancel / suspend / resume, for the worker that owns the instance */
struct ctlreq {
    char id[64];
    int op;
    int64_t epoch; /* cluster: the epoch taken for an instance this node did not hold */
    jv who; /* deep copy */
    struct ctlreq *next;
};

/* an evicted instance to load again (reload_due) */
struct retry {
    char id[37];
    int64_t skip;
};

struct worker {
    struct cv_engine *e;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct einst **ready;
    int nready, capready;
    struct startreq *starts;
    struct ctlreq *ctls;
    int stopping;
    /* owned by the worker thread alone */
    struct einst **owned;
    int nowned, capowned;
    struct defentry *defs;
    int ndefs;
    struct defentry *remote; /* remote functions, by URL */
    int nremote;
    struct cv_resolver resolver;
    jv outbox;            /* events emitted by the instance being advanced */
    int64_t bus_cursor;   /* the last bus event offered to this worker's listens */
    int bus_pending;      /* under lock: the bus has events past the cursor */
    int64_t next_purge;   /* worker 0: when to delete expired events */
    /* eviction: the commit-queue numbers of this worker's writes (enq_seq:
     * the worker's own counter), the highest one durable and the highest one
     * that failed (set by the committer, under lock, with durable_news) */
    uint64_t enq_seq;
    uint64_t durable, failed;
    int durable_news;
    struct einst *advancing;   /* the instance whose checkpoint is being taken */
    struct einst **cands;      /* idle instances waiting for their checkpoint to be durable */
    int ncands, capcands;
    struct cv_waits *waits;    /* the instances evicted to the store */
    struct retry *retries;     /* evicted instances the store failed to load */
    int nretries;
    int64_t next_retry;
    /* cluster: instances another node took (ids, under lock), and the lapse
     * generation this worker dropped everything for */
    char (*lost)[37];
    int nlost, caplost;
    int lapse_seen;
    int census_seen; /* the census generation this worker answered */
};

/* A start waiting for its creation to be durable (group-committed too). */
struct createreq {
    struct cv_create c;
    char ns[128], name[128], version[128], key[256];
    jv input_copy; /* the input again, for scheduling */
    int done;      /* under res_lock */
};

struct pending {
    struct cv_checkpoint cp;
    struct worker *w; /* queued by this worker (NULL: by another thread) */
    uint64_t seq;     /* its number in w's writes */
    int final;
    jv result; /* final: {id, status, output, error} */
    struct createreq *create; /* or a creation */
    struct pending *next;
};

struct cv_engine {
    cv_runtime *rt;
    cv_store *store;
    pthread_mutex_t store_lock;
    struct cv_engine_options o;
    struct worker *workers;
    int nworkers;
    int started;
    /* the commit queue */
    pthread_mutex_t cq_lock;
    pthread_cond_t cq_cond;
    struct pending *cq_head, *cq_tail;
    int cq_len;
    int cq_stopping;
    pthread_t committer;
    /* ended instances, for waiters */
    pthread_mutex_t res_lock;
    pthread_cond_t res_cond;
    jv results;
    struct cv_engine_stats stats; /* under res_lock */
    atomic_int creating; /* starts in progress */
    int64_t bus_start;   /* the bus's last seq when the engine started */
    struct cv_schedules *schedules;
    struct cv_sink *sinks;
    atomic_llong resident, evicted; /* instances held by workers / evicted to the store */
    atomic_llong reloads;           /* evicted instances loaded again */
    int64_t evict_min_wait_ms;
    /* the commit thread's: the store could not write the last attempt */
    int io_failing;
    int64_t io_failing_said;
    /* cluster mode (o.node set; section "cluster") */
    pthread_t cluster_th;
    int cluster_started;
    pthread_mutex_t cl_lock;
    pthread_cond_t cl_cond;
    int cl_stopping;
    atomic_llong lease_deadline; /* monotonic ms until which this node's leases surely hold */
    atomic_int lapse_gen;        /* bumped when they lapsed: every worker sifts what it holds */
    char (*sift)[37];            /* then: the ids this node still owns, sorted (read-only meanwhile) */
    int nsift;
    /* the census (adopt): ids the store says this node owns, sorted, and
     * which a worker holds (each worker marks its own: distinct bytes) */
    atomic_int census_gen;
    char (*census)[37];
    unsigned char *census_held;
    int ncensus;
    int64_t bus_seen;            /* the cluster thread's: the last bus seq it told the workers of */
};

/* ---- the commit queue --------------------------------------------------------------- */

static unsigned hash_id(const char *s);

/* The worker of the calling thread (NULL elsewhere). */
static __thread struct worker *this_worker;

/* Queues `p` for the committer; returns its number among the writes of the
 * calling worker (0 on other threads), durable once w->durable reaches it. */
static uint64_t enqueue(struct cv_engine *e, struct pending *p)
{
    struct worker *w = this_worker;
    uint64_t seq = 0;
    if (w && w->e == e) {
        p->w = w;
        p->seq = seq = ++w->enq_seq;
    }
    pthread_mutex_lock(&e->cq_lock);
    p->next = NULL;
    if (e->cq_tail)
        e->cq_tail->next = p;
    else
        e->cq_head = p;
    e->cq_tail = p;
    e->cq_len++;
    pthread_cond_signal(&e->cq_cond);
    pthread_mutex_unlock(&e->cq_lock);
    return seq;
}

/* The events the instance being advanced emitted, as checkpoint entries
 * {event, expiresAt} (deep copies), or invalid when none: they are published
 * on the bus in the same transaction as its checkpoint. */
static jv take_outbox(struct cv_engine *e)
{
    struct worker *w = this_worker;
    if (!w || jv_get_kind(w->outbox) != JV_KIND_ARRAY || jv_array_length(jv_copy(w->outbox)) == 0)
        return jv_invalid();
    int64_t expires = cv__wall_ms() + e->o.event_retention_ms;
    jv out = jv_array();
    jv_array_foreach(w->outbox, i, ev) out = jv_array_append(
        out, JV_OBJECT(jv_string("event"), cv__jv_deep_copy(ev), jv_string("expiresAt"), jv_number((double)expires)));
    jv_free(w->outbox);
    w->outbox = jv_array();
    return out;
}

/* The review tasks the instance opened, cancelled or escalated: with its checkpoint. */
static void take_tasks(struct instance *in, struct cv_checkpoint *cp)
{
    jv add, cancel, escalate;
    cv__instance_take_tasks(in, &add, &cancel, &escalate);
    cp->tasks_add = jv_is_valid(add) ? cv__jv_deep_copy(add) : add;
    cp->tasks_cancel = jv_is_valid(cancel) ? cv__jv_deep_copy(cancel) : cancel;
    cp->tasks_escalate = jv_is_valid(escalate) ? cv__jv_deep_copy(escalate) : escalate;
}

static struct einst *find_owned(struct worker *w, const char *id);

/* The checkpoint hook, on a worker thread: queue the position (as JSON text). */
static void on_checkpoint(void *ud, jv state)
{
    struct cv_engine *e = ud;
    struct pending *p = calloc(1, sizeof *p);
    if (!p) { /* the next checkpoint will carry the position */
        if (this_worker && this_worker->advancing)
            this_worker->advancing->no_evict = 1; /* the store's is behind: keep it */
        return;
    }
    jv id = jv_object_get(jv_copy(state), jv_string("id"));
    cv_checkpoint_init(&p->cp, jv_get_kind(id) == JV_KIND_STRING ? jv_string_value(id) : "");
    jv_free(id);
    p->cp.status = cv__state_status(state);
    if (this_worker && this_worker->advancing)
        p->cp.epoch = this_worker->advancing->epoch;
    else if (this_worker && e->o.node && p->cp.instance[0]) {
        struct einst *x = find_owned(this_worker, p->cp.instance);
        p->cp.epoch = x ? x->epoch : 0;
    }
    if (this_worker && this_worker->advancing) { /* what it noted since (predictions) goes with it */
        jv notes = cv__instance_take_notes(&this_worker->advancing->in);
        if (jv_array_length(jv_copy(notes)) > 0)
            p->cp.history = cv__jv_deep_copy(notes);
        else
            jv_free(notes);
        take_tasks(&this_worker->advancing->in, &p->cp);
    }
    /* as text, made here: the commit thread neither serialises nor frees it */
    if (cv_checkpoint_set_state(&p->cp, jv_copy(state)))
        p->cp.state = cv__jv_deep_copy(jv_copy(state)); /* the store will say what is wrong */
    p->cp.events = take_outbox(e);
    p->result = jv_invalid();
    uint64_t seq = enqueue(e, p);
    if (this_worker && this_worker->advancing)
        this_worker->advancing->cp_seq = seq;
}

static jv history_event(const char *type, jv data)
{
    jv ev = jv_object_set(jv_object(), jv_string("type"), jv_string_fmt(TYPE_PREFIX "%s.v1", type));
    return jv_object_set(ev, jv_string("data"), data);
}

/* Queues the end of an instance: its result (consumed, a value of this
 * worker) goes out as deep copies. `who` (consumed; may be invalid) is who
 * asked for it (a cancel). */
static void enqueue_final(struct cv_engine *e, const char *id, int64_t epoch, jv result, jv who, jv notes)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        jv_free(result);
        jv_free(who);
        jv_free(notes);
        return;
    }
    jv status = jv_object_get(jv_copy(result), jv_string("status"));
    const char *st = jv_string_value(status);
    int ok = !strcmp(st, "completed"), cancelled = !strcmp(st, "cancelled");
    jv_free(status);
    cv_checkpoint_init(&p->cp, id);
    p->cp.epoch = epoch;
    p->cp.status = ok ? CV_ST_COMPLETED : cancelled ? CV_ST_CANCELLED : CV_ST_FAULTED;
    p->cp.state = jv_null();
    jv output = cv__jv_deep_copy(jv_object_get(jv_copy(result), jv_string("output")));
    jv error = cv__jv_deep_copy(jv_object_get(jv_copy(result), jv_string("error")));
    if (ok) {
        p->cp.output = jv_copy(output);
        p->cp.history = JV_ARRAY(history_event("workflow.completed", JV_OBJECT(jv_string("output"), jv_copy(output))));
    } else if (cancelled) {
        jv data = jv_object();
        if (jv_is_valid(who))
            data = jv_object_set(data, jv_string("by"), cv__jv_deep_copy(jv_copy(who)));
        p->cp.history = JV_ARRAY(history_event("workflow.cancelled", data));
    } else {
        p->cp.error = jv_copy(error);
        p->cp.history = JV_ARRAY(history_event("workflow.faulted", JV_OBJECT(jv_string("error"), jv_copy(error))));
    }
    jv_free(who);
    if (jv_get_kind(notes) == JV_KIND_ARRAY && jv_array_length(jv_copy(notes)) > 0) /* before its end */
        p->cp.history = jv_array_concat(cv__jv_deep_copy(jv_copy(notes)), p->cp.history);
    jv_free(notes);
    p->cp.events = take_outbox(e);
    p->final = 1;
    p->result = JV_OBJECT(jv_string("id"), jv_string(id), jv_string("status"),
                          jv_string(ok ? "completed" : cancelled ? "cancelled" : "faulted"), jv_string("output"),
                          output, jv_string("error"), error);
    jv_free(result);
    enqueue(e, p);
}

/* Queues a status change (suspended / running) with who asked. */
static uint64_t enqueue_status(struct cv_engine *e, const char *id, int64_t epoch, const char *status,
                               const char *type, jv who)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        jv_free(who);
        return UINT64_MAX; /* never durable: the instance is not evicted */
    }
    cv_checkpoint_init(&p->cp, id);
    p->cp.epoch = epoch;
    p->cp.status = status;
    jv data = jv_object();
    if (jv_is_valid(who))
        data = jv_object_set(data, jv_string("by"), cv__jv_deep_copy(who));
    else
        jv_free(who);
    p->cp.history = JV_ARRAY(history_event(type, data));
    p->result = jv_invalid();
    return enqueue(e, p);
}

static jv copy_jv(jv v) { return jv_copy(v); }

/* Writes the creations among batch[0..n) in one transaction and tells their
 * callers (the pending entries stay; the caller frees them). */
static void run_creates(struct cv_engine *e, struct pending **batch, int n)
{
    struct cv_create *creates = NULL;
    int nc = 0;
    for (int i = 0; i < n; i++)
        if (batch[i]->create)
            nc++;
    if (nc && (creates = calloc((size_t)nc, sizeof *creates))) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (batch[i]->create) {
                creates[k] = batch[i]->create->c;
                batch[i]->create->c.input = jv_invalid();
                batch[i]->create->c.history = jv_invalid();
                k++;
            }
        /* one attempt: the store consumes the inputs, so a busy database
         * is reported to those callers (CV_EBUSY: retry the start) */
        pthread_mutex_lock(&e->store_lock);
        cv_store_create_instances(e->store, creates, nc);
        pthread_mutex_unlock(&e->store_lock);
        pthread_mutex_lock(&e->res_lock);
        k = 0;
        for (int i = 0; i < n; i++)
            if (batch[i]->create) {
                struct createreq *r = batch[i]->create;
                snprintf(r->c.id, sizeof r->c.id, "%s", creates[k].id);
                r->c.existed = creates[k].existed;
                r->c.rc = creates[k].rc;
                r->c.err = creates[k].err;
                r->done = 1;
                k++;
            }
        pthread_cond_broadcast(&e->res_cond);
        pthread_mutex_unlock(&e->res_lock);
        free(creates);
    } else if (nc) { /* out of memory: fail those starts */
        pthread_mutex_lock(&e->res_lock);
        for (int i = 0; i < n; i++)
            if (batch[i]->create) {
                batch[i]->create->c.rc = CV_ENOMEM;
                jv_free(batch[i]->create->c.input);
                batch[i]->create->c.input = jv_invalid();
                jv_free(batch[i]->create->c.history);
                batch[i]->create->c.history = jv_invalid();
                batch[i]->create->done = 1;
            }
        pthread_cond_broadcast(&e->res_cond);
        pthread_mutex_unlock(&e->res_lock);
    }
}

/* While a batch waits for the store to write again: the starts queued
 * meanwhile are tried at once (and answered, most likely with the store's
 * error), instead of waiting behind the batch. */
static void creates_meanwhile(struct cv_engine *e)
{
    struct pending *taken[64];
    int n = 0;
    pthread_mutex_lock(&e->cq_lock);
    struct pending **link = &e->cq_head, *last = NULL;
    while (*link && n < 64) {
        struct pending *p = *link;
        if (p->create) {
            *link = p->next;
            e->cq_len--;
            taken[n++] = p;
        } else {
            last = p;
            link = &p->next;
        }
    }
    /* the tail is the last entry still in the list */
    if (!e->cq_head)
        e->cq_tail = NULL;
    else if (!*link)
        e->cq_tail = last;
    pthread_mutex_unlock(&e->cq_lock);
    if (!n)
        return;
    run_creates(e, taken, n);
    for (int i = 0; i < n; i++)
        free(taken[i]); /* the caller owns the createreq */
}

/* Writes a batch; retries while the database is busy. Returns 0 or a code. */
static int commit_batch(struct cv_engine *e, struct pending **batch, int n)
{
    struct cv_checkpoint *cps = calloc((size_t)n, sizeof *cps);
    if (!cps)
        return CV_ENOMEM;
    for (int attempt = 0;; attempt++) {
        int oom = 0;
        for (int i = 0; i < n; i++) { /* the store consumes what it is given: hand it copies */
            cps[i] = batch[i]->cp;
            cps[i].state = copy_jv(batch[i]->cp.state);
            cps[i].state_text = NULL; /* a copy too: the store frees it, and a retry needs it again */
            if (batch[i]->cp.state_text && (cps[i].state_text = malloc(batch[i]->cp.state_len + 1)))
                memcpy(cps[i].state_text, batch[i]->cp.state_text, batch[i]->cp.state_len + 1);
            else if (batch[i]->cp.state_text)
                oom = 1;
            cps[i].output = copy_jv(batch[i]->cp.output);
            cps[i].error = copy_jv(batch[i]->cp.error);
            cps[i].history = copy_jv(batch[i]->cp.history);
            cps[i].timers_add = copy_jv(batch[i]->cp.timers_add);
            cps[i].timers_del = copy_jv(batch[i]->cp.timers_del);
            cps[i].events = copy_jv(batch[i]->cp.events);
            cps[i].tasks_add = copy_jv(batch[i]->cp.tasks_add);
            cps[i].tasks_cancel = copy_jv(batch[i]->cp.tasks_cancel);
            cps[i].tasks_escalate = copy_jv(batch[i]->cp.tasks_escalate);
        }
        if (oom) {
            for (int i = 0; i < n; i++)
                cv_checkpoint_cleanup(&cps[i]);
            free(cps);
            fprintf(stderr, "conveyor: checkpoint of %d instance(s) failed: out of memory\n", n);
            return CV_ENOMEM;
        }
        jv err = jv_invalid();
        pthread_mutex_lock(&e->store_lock);
        int rc = cv_store_checkpoint(e->store, cps, n, &err);
        pthread_mutex_unlock(&e->store_lock);
        if (rc == CV_EBUSY && attempt < 500) {
            jv_free(err);
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        /* The store cannot write (a full disk, an I/O error): nothing of the
         * batch was written (one transaction). Keep trying, with a growing
         * pause, until it can or the engine stops; the instances wait (their
         * ends are not reported before they are durable) and lose nothing. */
        pthread_mutex_lock(&e->cq_lock);
        int stopping = e->cq_stopping;
        pthread_mutex_unlock(&e->cq_lock);
        if (rc == CV_EIO && !stopping) {
            int64_t now = cv__now_ms();
            if (!e->io_failing || now - e->io_failing_said >= 10000) {
                fprintf(stderr,
                        "conveyor: the store cannot write (%s): %d checkpoint(s) wait; retrying until it can "
                        "(free space, or stop the server: instances resume from their last checkpoint)\n",
                        jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc), n);
                e->io_failing_said = now;
            }
            e->io_failing = 1;
            jv_free(err);
            long pause_ms = 10L << (attempt < 7 ? attempt : 7); /* 10 ms .. 1.28 s */
            struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            creates_meanwhile(e);
            continue;
        }
        if (rc && !(rc == CV_ECONFLICT && e->o.node)) /* cluster: commit_apart tells which */
            fprintf(stderr, "conveyor: checkpoint of %d instance(s) failed: %s\n", n,
                    jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc));
        else if (e->io_failing) {
            fprintf(stderr, "conveyor: the store writes again\n");
            e->io_failing = 0;
        }
        jv_free(err);
        free(cps);
        return rc;
    }
}

const double cv__commit_buckets_ms[CV_COMMIT_BUCKETS] = {0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* New events are on the bus: every worker looks at them. */
static void bus_notify(struct cv_engine *e)
{
    cv__schedules_events(e->schedules);
    cv__sinks_poke(e->sinks);
    for (int i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        pthread_mutex_lock(&w->lock);
        w->bus_pending = 1;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
}

/* The writes of workers in a batch are durable (rc 0) or failed: their
 * workers may evict the instances that wait for it. A worker's writes are
 * committed in the order it queued them (one FIFO queue). */
static void tell_durable(struct cv_engine *e, struct pending **batch, int n, int rc)
{
    for (int k = 0; k < e->nworkers; k++) {
        struct worker *w = &e->workers[k];
        uint64_t max = 0;
        for (int i = 0; i < n; i++)
            if (batch[i]->w == w && batch[i]->seq > max)
                max = batch[i]->seq;
        if (!max)
            continue;
        pthread_mutex_lock(&w->lock);
        if (rc)
            w->failed = max > w->failed ? max : w->failed;
        else
            w->durable = max > w->durable ? max : w->durable;
        w->durable_news = 1;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
}

/* A pending write (freed) refused because another node took its instance:
 * its worker drops the instance (section "cluster"). */
static void lost_instance(struct cv_engine *e, struct pending *p)
{
    pthread_mutex_lock(&e->res_lock);
    e->stats.lost++;
    pthread_mutex_unlock(&e->res_lock);
    /* the worker that holds it: the one that queued it, else by its id's hash */
    struct worker *w = p->w ? p->w : &e->workers[hash_id(p->cp.instance) % (unsigned)e->nworkers];
    pthread_mutex_lock(&w->lock);
    if (w->nlost == w->caplost) {
        int cap = w->caplost ? w->caplost * 2 : 16;
        char(*l)[37] = realloc(w->lost, (size_t)cap * sizeof *l);
        if (l) {
            w->lost = l;
            w->caplost = cap;
        }
    }
    if (w->nlost < w->caplost)
        snprintf(w->lost[w->nlost++], 37, "%.36s", p->cp.instance);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    cv_checkpoint_cleanup(&p->cp);
    jv_free(p->result);
    free(p);
}

/* Writes the checkpoints of batch[0..n) one by one (cluster, after the
 * batch was refused for a stale epoch). Those refused for theirs are lost
 * (lost_instance, freed); those that failed otherwise are told to their
 * workers as a failed batch's would be (not durable: kept in memory, their
 * ends not reported) and freed; the durable ones stay in batch. Returns
 * how many stay. */
static int commit_apart(struct cv_engine *e, struct pending **batch, int n)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        struct pending *p = batch[i];
        int rc = commit_batch(e, &p, 1);
        if (rc == CV_ECONFLICT) {
            fprintf(stderr, "conveyor: instance %s was taken by another node: its write was refused, dropped here\n",
                    p->cp.instance);
            lost_instance(e, p);
        } else if (rc) {
            tell_durable(e, &p, 1, rc);
            cv_checkpoint_cleanup(&p->cp);
            jv_free(p->result);
            free(p);
        } else {
            batch[m++] = p;
        }
    }
    return m;
}

static void *committer(void *arg)
{
    struct cv_engine *e = arg;
    int max = e->o.batch_max;
    struct pending **batch = calloc((size_t)max, sizeof *batch);
    int last_n = 0;
    if (!batch)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&e->cq_lock);
        while (!e->cq_head && !e->cq_stopping)
            pthread_cond_wait(&e->cq_cond, &e->cq_lock);
        if (!e->cq_head && e->cq_stopping) {
            pthread_mutex_unlock(&e->cq_lock);
            break;
        }
        if (e->cq_len < max && !e->cq_stopping && e->o.batch_wait_us > 0 && last_n > 1) {
            /* group commit under load (the last batch had company): give
             * other workers a moment to join this one, when asked to
             * (batch_wait_us; 0 by default: batches form during the
             * previous fsync anyway, and the wait cost a lone instance
             * whose two checkpoints once shared a batch a millisecond) */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)e->o.batch_wait_us * 1000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cq_cond, &e->cq_lock, &ts);
        }
        int n = 0;
        while (e->cq_head && n < max) {
            batch[n++] = e->cq_head;
            e->cq_head = e->cq_head->next;
            e->cq_len--;
        }
        if (!e->cq_head)
            e->cq_tail = NULL;
        pthread_mutex_unlock(&e->cq_lock);

        last_n = n;
        /* creations first, all in one transaction, then the checkpoints
         * (a creation's first checkpoint can only come after it) */
        run_creates(e, batch, n);
        /* the checkpoints of this batch (creations carry none) */
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (batch[i]->create) {
                free(batch[i]); /* the caller owns the createreq */
                continue;
            }
            batch[m++] = batch[i];
        }
        n = m;
        if (n == 0)
            continue;
        int with_events = 0;
        for (int i = 0; i < n; i++)
            with_events = with_events || jv_is_valid(batch[i]->cp.events);
        double t0 = mono_ms();
        int rc = commit_batch(e, batch, n);
        double took = mono_ms() - t0;
        if (rc == CV_ECONFLICT && e->o.node) {
            /* cluster: some instance of the batch was taken by another node
             * (a stale epoch fails the whole transaction): write them one by
             * one; those refused are that node's now, and are dropped here */
            n = commit_apart(e, batch, n);
            rc = 0;
        }
        if (!rc && with_events)
            bus_notify(e);
        tell_durable(e, batch, n, rc);
        pthread_mutex_lock(&e->res_lock);
        if (!rc) {
            e->stats.checkpoints += n;
            e->stats.batches++;
            int b = 0;
            while (b < CV_BATCH_BUCKETS && n > (1 << b))
                b++;
            e->stats.batch_size[b]++;
            int c = 0;
            while (c < CV_COMMIT_BUCKETS && took > cv__commit_buckets_ms[c])
                c++;
            e->stats.commit_ms[c]++;
            e->stats.commit_ms_sum += took;
        }
        for (int i = 0; i < n; i++) {
            struct pending *p = batch[i];
            if (p->final && !rc) { /* durable now: waiters may be told */
                jv st = jv_object_get(jv_copy(p->result), jv_string("status"));
                if (!strcmp(jv_string_value(st), "completed"))
                    e->stats.completed++;
                else if (!strcmp(jv_string_value(st), "cancelled"))
                    e->stats.cancelled++;
                else
                    e->stats.faulted++;
                jv_free(st);
                if (jv_object_length(jv_copy(e->results)) >= MAX_RESULTS) {
                    jv_free(e->results); /* waiters fall back to the store */
                    e->results = jv_object();
                }
                e->results = jv_object_set(e->results, jv_string(p->cp.instance), jv_copy(p->result));
            }
            cv_checkpoint_cleanup(&p->cp);
            jv_free(p->result);
            free(p);
        }
        pthread_cond_broadcast(&e->res_cond);
        pthread_mutex_unlock(&e->res_lock);
    }
    free(batch);
    return NULL;
}

void cv__engine_residency(struct cv_engine *e, long long *resident, long long *evicted, long long *reloads)
{
    *resident = atomic_load(&e->resident);
    *evicted = atomic_load(&e->evicted);
    *reloads = atomic_load(&e->reloads);
}

void cv__engine_set_evict_min_wait(struct cv_engine *e, int64_t ms) { e->evict_min_wait_ms = ms; }

/* ---- instances on workers ------------------------------------------------------------ */

/* Effect threads (holding the instance's lock) put the instance back in line. */
static void on_wake(void *ud)
{
    struct einst *x = ud;
    struct worker *w = x->w;
    pthread_mutex_lock(&w->lock);
    if (!x->queued) {
        if (w->nready == w->capready) {
            int cap = w->capready ? w->capready * 2 : 64;
            struct einst **r = realloc(w->ready, (size_t)cap * sizeof *r);
            if (!r) {
                pthread_mutex_unlock(&w->lock);
                return; /* it will be found by its timer scan at the latest */
            }
            w->ready = r;
            w->capready = cap;
        }
        w->ready[w->nready++] = x;
        x->queued = 1;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
}

/* This worker's copy of a definition, loaded from the store once. */
static const cv_workflow *worker_def(struct worker *w, const struct startreq *r, jv *err)
{
    for (int i = 0; i < w->ndefs; i++)
        if (!strcmp(w->defs[i].key, r->key))
            return w->defs[i].wf;
    jv def, derr = jv_invalid();
    pthread_mutex_lock(&w->e->store_lock);
    int rc = cv_store_get_workflow(w->e->store, r->ns, r->name, r->version, &def, &derr);
    pthread_mutex_unlock(&w->e->store_lock);
    if (rc) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error", "workflow %s: %s", r->key,
                              jv_get_kind(derr) == JV_KIND_STRING ? jv_string_value(derr) : cv_strerror(rc));
        jv_free(derr);
        return NULL;
    }
    jv_free(derr);
    jv text = jv_object_get(def, jv_string("text"));
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    rc = cv_workflow_load(jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)), r->key, &wf, &diags);
    jv_free(text);
    jv_free(diags);
    struct defentry *d = rc ? NULL : realloc(w->defs, (size_t)(w->ndefs + 1) * sizeof *d);
    if (!d) {
        cv_workflow_free(wf);
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Configuration Error",
                              "workflow %s no longer loads", r->key);
        return NULL;
    }
    w->defs = d;
    w->defs[w->ndefs].key = strdup(r->key);
    w->defs[w->ndefs].wf = wf;
    w->ndefs++;
    return wf;
}

/* Subflows for this worker's instances: its own copies, from the store. */
static const cv_workflow *resolve_find(void *ud, const char *ns, const char *name, const char *version)
{
    struct worker *w = ud;
    struct startreq r;
    memset(&r, 0, sizeof r);
    snprintf(r.ns, sizeof r.ns, "%s", ns);
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.version, sizeof r.version, "%s", version ? version : "latest");
    snprintf(r.key, sizeof r.key, "%s/%s:%s", r.ns, r.name, r.version);
    jv err = jv_null();
    const cv_workflow *wf = worker_def(w, &r, &err);
    jv_free(err);
    return wf;
}

static const cv_workflow *resolve_remote_get(void *ud, const char *url)
{
    struct worker *w = ud;
    for (int i = 0; i < w->nremote; i++)
        if (!strcmp(w->remote[i].key, url))
            return w->remote[i].wf;
    return NULL;
}

static const cv_workflow *resolve_remote_put(void *ud, const char *url, cv_workflow *wf)
{
    struct worker *w = ud;
    const cv_workflow *have = resolve_remote_get(ud, url);
    if (have) {
        cv_workflow_free(wf);
        return have;
    }
    struct defentry *d = realloc(w->remote, (size_t)(w->nremote + 1) * sizeof *d);
    char *key = d ? strdup(url) : NULL;
    if (!key) {
        if (d)
            w->remote = d;
        cv_workflow_free(wf);
        return NULL;
    }
    w->remote = d;
    w->remote[w->nremote].key = key;
    w->remote[w->nremote].wf = wf;
    w->nremote++;
    return wf;
}

static void own(struct worker *w, struct einst *x)
{
    if (w->nowned == w->capowned) {
        int cap = w->capowned ? w->capowned * 2 : 64;
        struct einst **o = realloc(w->owned, (size_t)cap * sizeof *o);
        if (!o)
            return;
        w->owned = o;
        w->capowned = cap;
    }
    w->owned[w->nowned++] = x;
    atomic_fetch_add(&w->e->resident, 1);
    pthread_mutex_lock(&w->e->res_lock);
    w->e->stats.running++;
    pthread_mutex_unlock(&w->e->res_lock);
}

static void drop_candidate(struct worker *w, struct einst *x)
{
    if (!x->candidate)
        return;
    x->candidate = 0;
    for (int i = 0; i < w->ncands; i++)
        if (w->cands[i] == x) {
            w->cands[i] = w->cands[--w->ncands];
            break;
        }
}

/* Takes x out of the worker's lists and frees it; `running` says whether it
 * stops counting as a running instance (it ended, or it is dropped to the
 * store suspended) or goes on (evicted: the index stands for it). */
static void release(struct worker *w, struct einst *x, int running)
{
    cv__instance_cleanup(&x->in); /* after this no effect thread can wake it */
    drop_candidate(w, x);
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->nready; i++)
        if (w->ready[i] == x)
            w->ready[i--] = w->ready[--w->nready];
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nowned; i++)
        if (w->owned[i] == x) {
            w->owned[i] = w->owned[--w->nowned];
            atomic_fetch_sub(&w->e->resident, 1);
            if (running) {
                pthread_mutex_lock(&w->e->res_lock);
                w->e->stats.running--;
                pthread_mutex_unlock(&w->e->res_lock);
            }
            break;
        }
    free(x);
}

static void disown_and_free(struct worker *w, struct einst *x) { release(w, x, 1); }

/* Every event the bus holds after `after` (pages of 1,000; at most `max`),
 * as {seq, event} values of this worker. Returns 0 or a store code. */
static int bus_read(struct worker *w, int64_t after, int max, jv *out)
{
    *out = jv_array();
    int64_t now = cv__wall_ms();
    for (int total = 0; total < max;) {
        jv page, err = jv_invalid();
        pthread_mutex_lock(&w->e->store_lock);
        int rc = cv_store_list_events(w->e->store, after, now, 1000, &page, &err);
        pthread_mutex_unlock(&w->e->store_lock);
        if (rc) {
            fprintf(stderr, "conveyor: reading the event bus: %s\n",
                    jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc));
            jv_free(err);
            return rc;
        }
        jv_free(err);
        int n = jv_array_length(jv_copy(page));
        if (n == 0) {
            jv_free(page);
            break;
        }
        jv last = jv_array_get(jv_copy(page), n - 1);
        jv seq = jv_object_get(last, jv_string("seq"));
        after = (int64_t)jv_number_value(seq);
        jv_free(seq);
        *out = jv_array_concat(*out, page);
        total += n;
        if (n < 1000)
            break;
    }
    return 0;
}

static void mark_candidate(struct worker *w, struct einst *x);

static void run_ready(struct worker *w, struct einst *x)
{
    if (x->suspended)
        return; /* effect results wait in its queue until it is resumed */
    for (int round = 0;; round++) {
        cv__instance_collect(&x->in);
        int64_t wake = 0;
        w->advancing = x; /* its checkpoint, if any, is numbered in x->cp_seq */
        int ended = cv__instance_advance(&x->in, &wake);
        w->advancing = NULL;
        if (ended) {
            enqueue_final(w->e, x->in.id, x->epoch, cv__instance_result(&x->in), jv_invalid(),
                          cv__instance_take_notes(&x->in));
            disown_and_free(w, x);
            return;
        }
        x->wake = wake;
        if (!x->in.listen_began)
            break;
        if (round == 8) { /* listen after listen: let others have their turn */
            on_wake(x);
            return;
        }
        /* a listen began (or it was loaded listening): it is offered every
         * event the bus kept after what its listens looked at already */
        x->in.listen_began = 0;
        int64_t from = cv__instance_listen_cursor(&x->in);
        jv evs;
        if (from < 0)
            continue;
        if (bus_read(w, from, 100000, &evs) == 0)
            cv__instance_offer(&x->in, evs);
        else
            x->no_evict = 1; /* it did not see what the bus holds: keep it in memory */
    }
    mark_candidate(w, x);
}

/* ---- eviction (DESIGN.md decision 5) ---------------------------------------------------
 *
 * An instance that waits only on timers and events, with nothing in flight
 * and its latest position durable in the store, is dropped from memory: an
 * entry in its worker's index (waits.c: id, wake time, what its listens wait
 * for) stands for it, and it is loaded again from its last checkpoint when
 * its timer comes, an event it may consume arrives, or it is cancelled or
 * suspended. A suspended instance is dropped altogether (as after a
 * restart: resuming it loads it).
 *
 * Events: every event after w->bus_cursor is offered to the resident
 * listeners and matched against the index (offer_new), so an evicted
 * instance has looked at every event up to w->bus_cursor, or could not have
 * consumed it; loaded again, its listens skip those (cv__instance_listen_skip)
 * and read the bus after them. Instances run after their turn (run_ready)
 * become candidates; evict_candidates, at the end of each round of the
 * worker, evicts those idle whose checkpoint the committer has made durable
 * (tell_durable), and keeps the others until it is.
 */

static void mark_candidate(struct worker *w, struct einst *x)
{
    if (x->candidate || x->no_evict)
        return;
    if (w->ncands == w->capcands) {
        int cap = w->capcands ? w->capcands * 2 : 64;
        struct einst **c = realloc(w->cands, (size_t)cap * sizeof *c);
        if (!c)
            return; /* it stays in memory */
        w->cands = c;
        w->capcands = cap;
    }
    w->cands[w->ncands++] = x;
    x->candidate = 1;
}

/* Is x's latest write (checkpoint or status) durable? */
static int durable(struct worker *w, struct einst *x)
{
    if (!x->cp_seq)
        return x->from_store; /* as loaded, or never checkpointed (then no) */
    pthread_mutex_lock(&w->lock);
    int ok = x->cp_seq <= w->durable && x->cp_seq > w->failed;
    pthread_mutex_unlock(&w->lock);
    return ok;
}

enum { EVICT_NO, EVICT_LATER, EVICT_NOW };

static int evictable(struct worker *w, struct einst *x)
{
    pthread_mutex_lock(&w->lock);
    int queued = x->queued;
    pthread_mutex_unlock(&w->lock);
    if (queued || x->no_evict)
        return EVICT_NO;
    if (x->suspended) {
        /* nothing in flight and nothing unsaved; what it was offered is
         * read again from the bus when it is resumed */
        pthread_mutex_lock(&x->in.lock);
        int busy = x->in.in_flight > 0 || x->in.done != NULL;
        pthread_mutex_unlock(&x->in.lock);
        if (busy || x->in.dirty)
            return EVICT_NO;
    } else {
        if (!cv__instance_quiescent(&x->in))
            return EVICT_NO;
        if (!x->wake && !cv__instance_listening(&x->in))
            return EVICT_NO; /* waits on nothing an index knows */
        if (x->wake && x->wake - cv__now_ms() < w->e->evict_min_wait_ms)
            return EVICT_NO; /* its timer is near: cheaper to keep */
    }
    return durable(w, x) ? EVICT_NOW : EVICT_LATER;
}

/* Drops x from memory (its entry in the index stands for it). 0, or
 * CV_ENOMEM (it stays). */
static int evict(struct worker *w, struct einst *x)
{
    if (x->suspended) {
        release(w, x, 1);
        return 0;
    }
    int rc = cv__waits_add(w->waits, x->in.id, x->wake, cv__instance_listening(&x->in) ? &x->in : NULL);
    if (rc)
        return rc;
    /* out of the resident count before it is in the evicted one: a reader
     * never sees it in both (test_evict waits on one and checks the other) */
    release(w, x, 0);
    atomic_fetch_add(&w->e->evicted, 1);
    return 0;
}

static void evict_candidates(struct worker *w)
{
    for (int i = 0; i < w->ncands;) {
        struct einst *x = w->cands[i];
        int v = evictable(w, x);
        if (v == EVICT_LATER) {
            i++;
            continue;
        }
        w->cands[i] = w->cands[--w->ncands];
        x->candidate = 0;
        if (v == EVICT_NOW && evict(w, x))
            x->no_evict = 1; /* out of memory for its entry: keep it */
    }
}

static struct einst *reload(struct worker *w, const char *id, int64_t skip, int run);

/* An evicted instance the store could not load (busy, failing): out of the
 * index already, it is loaded again a second later (reload_due). */
static void retry_later(struct worker *w, const char *id, int64_t skip)
{
    struct retry *r = realloc(w->retries, (size_t)(w->nretries + 1) * sizeof *r);
    if (!r) {
        fprintf(stderr, "conveyor: instance %s could not be loaded and is left until a restart\n", id);
        return;
    }
    w->retries = r;
    snprintf(r[w->nretries].id, sizeof r[w->nretries].id, "%s", id);
    r[w->nretries].skip = skip;
    w->nretries++;
    atomic_fetch_add(&w->e->evicted, 1); /* still evicted */
    pthread_mutex_lock(&w->e->res_lock);
    w->e->stats.running++;
    pthread_mutex_unlock(&w->e->res_lock);
}

/* A retry of `id` is dropped (it was cancelled meanwhile). */
static void forget_retry(struct worker *w, const char *id)
{
    for (int i = 0; i < w->nretries; i++)
        if (!strcmp(w->retries[i].id, id)) {
            w->retries[i] = w->retries[--w->nretries];
            atomic_fetch_sub(&w->e->evicted, 1);
            pthread_mutex_lock(&w->e->res_lock);
            w->e->stats.running--;
            pthread_mutex_unlock(&w->e->res_lock);
            return;
        }
}

/* New events on the bus: offered to every listening instance of this
 * worker, which then runs. */
static struct einst *find_owned(struct worker *w, const char *id);

/* Offers `entry` ({seq, event}, borrowed) to x alone and runs it; while it
 * still listens, its keys go into `pass` (replacing what they were), so the
 * rest of the page reaches it as the index would have. */
static void offer_one(struct worker *w, struct cv_waits *pass, struct einst *x, jv entry)
{
    char id[sizeof x->in.id];
    memcpy(id, x->in.id, sizeof id);
    cv__instance_offer(&x->in, JV_ARRAY(jv_copy(entry)));
    run_ready(w, x);
    cv__waits_remove(pass, id);
    x = find_owned(w, id);
    if (x && cv__instance_listening(&x->in) && cv__waits_add(pass, id, 0, &x->in))
        x->no_evict = 1; /* out of memory: it would miss the rest of the page */
}

/* New events on the bus (a page of them; more make another round): offered
 * to every resident listening instance of this worker, which then runs, and
 * matched against the index of evicted ones. */
static void offer_new(struct worker *w)
{
    jv evs;
    if (bus_read(w, w->bus_cursor, 1000, &evs))
        return;
    int n = jv_array_length(jv_copy(evs));
    if (n == 0) {
        jv_free(evs);
        return;
    }
    if (n >= 1000) { /* the rest in the next round */
        pthread_mutex_lock(&w->lock);
        w->bus_pending = 1;
        pthread_mutex_unlock(&w->lock);
    }
    jv last = jv_array_get(jv_copy(evs), n - 1);
    jv seq = jv_object_get(last, jv_string("seq"));
    w->bus_cursor = (int64_t)jv_number_value(seq);
    jv_free(seq);
    for (int i = 0; i < w->nowned; i++) {
        struct einst *x = w->owned[i];
        if (!cv__instance_listening(&x->in))
            continue;
        cv__instance_offer(&x->in, jv_copy(evs));
        on_wake(x);
    }
    /*
     * An evicted instance an event may concern is loaded again, its listens
     * past every event before it (each matched none of its keys), and offered
     * that event alone; while it stays in memory, listening, a page-long
     * index of its keys (`pass`) finds the later events of the page it must
     * see. Without that it would read the bus itself, and a page of events
     * for as many instances would cost pages x instances.
     */
    struct cv_waits *pass = cv__waits_new();
    int loaded = 0;
    jv_array_foreach(evs, i, entry)
    {
        jv ev = jv_object_get(jv_copy(entry), jv_string("event"));
        jv sq = jv_object_get(jv_copy(entry), jv_string("seq"));
        int64_t at = (int64_t)jv_number_value(sq);
        jv_free(sq);
        for (;;) {
            char ids[64][37];
            int k = pass ? cv__waits_match(pass, ev, ids, 64) : 0;
            for (int j = 0; j < k; j++) {
                struct einst *x = find_owned(w, ids[j]);
                if (x)
                    offer_one(w, pass, x, entry);
            }
            if (k < 64)
                break;
        }
        for (;;) {
            char ids[64][37];
            int k = cv__waits_match(w->waits, ev, ids, 64);
            for (int j = 0; j < k; j++) {
                struct einst *x = reload(w, ids[j], at - 1, 0);
                if (!x)
                    continue;
                x->in.listen_began = 0; /* offered below: it needs no read of the bus */
                if (pass)
                    offer_one(w, pass, x, entry);
                else { /* out of memory for the page index: it reads the bus itself */
                    x->in.listen_began = 1;
                    run_ready(w, x);
                }
                if (++loaded % 64 == 0)
                    evict_candidates(w);
            }
            if (k < 64)
                break;
        }
        jv_free(ev);
        jv_free(entry);
    }
    cv__waits_free(pass);
    jv_free(evs);
}

static struct einst *find_owned(struct worker *w, const char *id)
{
    for (int i = 0; i < w->nowned; i++)
        if (!strcmp(w->owned[i]->in.id, id))
            return w->owned[i];
    return NULL;
}

static void worker_emit(void *ud, jv event)
{
    struct worker *w = ud;
    w->outbox = jv_array_append(w->outbox, jv_copy(event));
}

/* Takes the instance of `r` (its jv fields consumed) on this worker: owned
 * and, with `run`, run at once. Returns it (NULL when it could not be taken,
 * or ended in its first run). */
static struct einst *take_start(struct worker *w, struct startreq *r, int run)
{
    jv err = jv_null();
    const cv_workflow *wf = worker_def(w, r, &err);
    if (!wf) {
        enqueue_final(w->e, r->id, r->epoch,
                      JV_OBJECT(jv_string("status"), jv_string("faulted"), jv_string("output"), jv_null(),
                                jv_string("error"), err),
                      jv_invalid(), jv_invalid());
        jv_free(r->input);
        jv_free(r->state);
        return NULL;
    }
    struct einst *x = calloc(1, sizeof *x);
    if (!x) {
        jv_free(err);
        jv_free(r->input);
        jv_free(r->state);
        return NULL; /* stays unfinished in the store: the next start resumes it */
    }
    x->w = w;
    x->wf = wf;
    x->epoch = r->epoch;
    x->from_store = jv_get_kind(r->state) == JV_KIND_OBJECT;
    jv_free(err);
    int rc = cv__instance_init(&x->in, w->e->rt, wf, r->id, r->input, r->state, &err);
    if (rc) {
        enqueue_final(w->e, r->id, r->epoch,
                      JV_OBJECT(jv_string("status"), jv_string("faulted"), jv_string("output"), jv_null(),
                                jv_string("error"), err),
                      jv_invalid(), jv_invalid());
        cv__instance_cleanup(&x->in);
        free(x);
        return NULL;
    }
    jv_free(err);
    x->in.wake = on_wake;
    x->in.wake_ud = x;
    own(w, x);
    if (!run)
        return x;
    char id[sizeof x->in.id];
    memcpy(id, x->in.id, sizeof id);
    run_ready(w, x);
    return find_owned(w, id);
}


/* An instance the store has but this worker does not hold (suspended, or
 * evicted): load it from its last checkpoint, without running it. `live`:
 * only when the store has it unfinished with a position (an evicted
 * instance always is; anything else is left alone). */
static struct einst *load_from_store(struct worker *w, const char *id, int live, int *failed)
{
    jv inst, err = jv_invalid();
    pthread_mutex_lock(&w->e->store_lock);
    int rc = cv_store_get_instance(w->e->store, id, &inst, &err);
    pthread_mutex_unlock(&w->e->store_lock);
    jv_free(err);
    if (failed)
        *failed = rc && rc != CV_ENOTFOUND; /* the store could not say: try again */
    if (rc)
        return NULL;
    int64_t epoch = 0;
    if (w->e->o.node) { /* cluster: only while this node holds its lease, at the epoch it took */
        jv owner = jv_object_get(jv_copy(inst), jv_string("owner"));
        jv ep = jv_object_get(jv_copy(inst), jv_string("epoch"));
        int mine = jv_get_kind(owner) == JV_KIND_STRING && !strcmp(jv_string_value(owner), w->e->o.node);
        epoch = jv_get_kind(ep) == JV_KIND_NUMBER ? (int64_t)jv_number_value(ep) : 0;
        jv_free(owner);
        jv_free(ep);
        if (!mine) {
            fprintf(stderr, "conveyor: instance %s is held by another node now: dropped here\n", id);
            pthread_mutex_lock(&w->e->res_lock);
            w->e->stats.lost++;
            pthread_mutex_unlock(&w->e->res_lock);
            jv_free(inst);
            return NULL;
        }
    }
    if (live) {
        jv st = jv_object_get(jv_copy(inst), jv_string("status"));
        jv pos = jv_object_get(jv_copy(inst), jv_string("state"));
        const char *ss = jv_get_kind(st) == JV_KIND_STRING ? jv_string_value(st) : "";
        int ok = jv_get_kind(pos) == JV_KIND_OBJECT &&
                 (!strcmp(ss, CV_ST_RUNNING) || !strcmp(ss, CV_ST_WAITING) || !strcmp(ss, CV_ST_PENDING) ||
                  !strcmp(ss, CV_ST_SUSPENDED));
        jv_free(st);
        jv_free(pos);
        if (!ok) {
            fprintf(stderr, "conveyor: evicted instance %s is no longer unfinished in the store: dropped\n", id);
            jv_free(inst);
            return NULL;
        }
    }
    struct startreq *r = calloc(1, sizeof *r);
    if (!r) {
        jv_free(inst);
        return NULL;
    }
    jv ns = jv_object_get(jv_copy(inst), jv_string("namespace"));
    jv name = jv_object_get(jv_copy(inst), jv_string("name"));
    jv ver = jv_object_get(jv_copy(inst), jv_string("version"));
    snprintf(r->id, sizeof r->id, "%s", id);
    r->epoch = epoch;
    snprintf(r->ns, sizeof r->ns, "%s", jv_string_value(ns));
    snprintf(r->name, sizeof r->name, "%s", jv_string_value(name));
    snprintf(r->version, sizeof r->version, "%s", jv_string_value(ver));
    snprintf(r->key, sizeof r->key, "%s/%s:%s", r->ns, r->name, r->version);
    jv state = jv_object_get(jv_copy(inst), jv_string("state"));
    r->state = jv_get_kind(state) == JV_KIND_OBJECT ? state : (jv_free(state), jv_invalid());
    r->input = jv_object_get(inst, jv_string("input"));
    if (!jv_is_valid(r->input)) {
        jv_free(r->input);
        r->input = jv_null();
    }
    jv_free(ns);
    jv_free(name);
    jv_free(ver);
    struct einst *x = take_start(w, r, 0);
    free(r);
    return x;
}

/* Loads an evicted instance again (its entry already taken out of the
 * index): its listens skip the events up to `skip` (looked at, or matched
 * by none of its keys) and read the bus after them. With `run` it runs at
 * once (and NULL is returned); else it is returned, owned, not run. */
static struct einst *reload(struct worker *w, const char *id, int64_t skip, int run)
{
    atomic_fetch_sub(&w->e->evicted, 1);
    atomic_fetch_add(&w->e->reloads, 1);
    pthread_mutex_lock(&w->e->res_lock);
    w->e->stats.running--; /* own() counts it again */
    pthread_mutex_unlock(&w->e->res_lock);
    int failed = 0;
    struct einst *x = load_from_store(w, id, 1, &failed);
    if (!x) {
        if (failed)
            retry_later(w, id, skip);
        return NULL;
    }
    cv__instance_listen_skip(&x->in, skip);
    if (cv__instance_listening(&x->in))
        x->in.listen_began = 1;
    if (!run)
        return x;
    run_ready(w, x);
    return NULL;
}

/* Timers of evicted instances that came: load them (a bounded number per
 * round); then the loads the store failed, again (their listens skip only
 * what they skipped then, and read the bus after it). */
static void reload_due(struct worker *w)
{
    char ids[256][37];
    int n = cv__waits_due(w->waits, cv__now_ms(), ids, 256);
    for (int i = 0; i < n; i++) {
        reload(w, ids[i], w->bus_cursor, 1);
        if (i % 64 == 63)
            evict_candidates(w);
    }
    if (!w->nretries || cv__now_ms() < w->next_retry)
        return;
    struct retry *r = w->retries;
    int nr = w->nretries;
    w->retries = NULL;
    w->nretries = 0;
    for (int i = 0; i < nr; i++)
        reload(w, r[i].id, r[i].skip, 1); /* counted as evicted until then; may come back here */
    free(r);
    w->next_retry = cv__now_ms() + 1000;
}

/* x when this worker holds it, loaded again when it is evicted, else NULL. */
static struct einst *held(struct worker *w, const char *id)
{
    struct einst *x = find_owned(w, id);
    if (!x && cv__waits_remove(w->waits, id))
        x = reload(w, id, w->bus_cursor, 0);
    return x;
}

/* Cluster: takes the lease of an instance this node does not hold (another
 * node may run it: its next checkpoint is refused, and it drops it); 0 or a
 * store code. */
static int take_lease(struct worker *w, const char *id, int64_t *epoch)
{
    jv err = jv_invalid();
    pthread_mutex_lock(&w->e->store_lock);
    int rc = cv_store_lease_take(w->e->store, id, w->e->o.node, cv__wall_ms(), w->e->o.lease_ms, epoch, &err);
    pthread_mutex_unlock(&w->e->store_lock);
    if (rc)
        fprintf(stderr, "conveyor: cannot take instance %s from another node: %s\n", id,
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc));
    jv_free(err);
    return rc;
}

static void take_control(struct worker *w, struct ctlreq *c)
{
    struct einst *x = held(w, c->id);
    if (!x && w->e->o.node) {
        if (take_lease(w, c->id, &c->epoch)) {
            jv_free(c->who);
            return;
        }
        if (c->op == CTL_SUSPEND) /* running on another node: here now, suspended below */
            x = load_from_store(w, c->id, 1, NULL);
    }
    switch (c->op) {
    case CTL_CANCEL:
        if (x) {
            cv__instance_cancel(&x->in);
            enqueue_final(w->e, x->in.id, x->epoch, cv__instance_result(&x->in), c->who,
                          cv__instance_take_notes(&x->in));
            disown_and_free(w, x);
        } else { /* not running here (suspended before a restart): its end, straight */
            forget_retry(w, c->id);
            enqueue_final(w->e, c->id, c->epoch,
                          JV_OBJECT(jv_string("status"), jv_string("cancelled"), jv_string("output"), jv_null(),
                                    jv_string("error"), jv_null()),
                          c->who, jv_invalid());
        }
        c->who = jv_invalid();
        break;
    case CTL_SUSPEND:
        if (x && !x->suspended) {
            x->suspended = 1;
            x->cp_seq = enqueue_status(w->e, c->id, x->epoch, CV_ST_SUSPENDED, "workflow.suspended", c->who);
            c->who = jv_invalid();
            mark_candidate(w, x); /* dropped once that is durable */
        }
        break;
    case CTL_RESUME: {
        /* the status it resumes to is that of its position: running, or
         * waiting when it goes straight back to a timer */
        const char *status = CV_ST_RUNNING;
        if (x && x->suspended) {
            jv state = cv__instance_state(&x->in);
            status = cv__state_status(state);
            jv_free(state);
        }
        uint64_t seq = enqueue_status(w->e, c->id, x ? x->epoch : c->epoch, status, "workflow.resumed", c->who);
        c->who = jv_invalid();
        if (!x) {
            x = load_from_store(w, c->id, 0, NULL);
            if (x) {
                run_ready(w, x);
                x = find_owned(w, c->id);
            }
            if (x) {
                jv state = cv__instance_state(&x->in);
                x->cp_seq = enqueue_status(w->e, c->id, x->epoch, cv__state_status(state), "workflow.status-changed",
                                           jv_invalid());
                jv_free(state);
            }
        } else if (x->suspended) {
            x->suspended = 0;
            x->cp_seq = seq; /* evicted only once its status is durable */
            run_ready(w, x);
        }
        break;
    }
    }
    jv_free(c->who);
}

/* ---- cluster (docs/cluster.md) ------------------------------------------------------------
 *
 * With a node name (o.node), several processes share the store's instances
 * by leases: the cluster thread takes the unfinished instances whose lease
 * ended (at start: its own too), renews this node's leases, and tells the
 * workers of events other nodes put on the bus. Every checkpoint carries the
 * epoch its instance was taken at; a write refused for it means another
 * node took the instance (this one was paused or cut off past its lease):
 * the instance is dropped here (commit_apart, drop_lost). When the leases
 * could not be renewed within nine tenths of a lease (a pause, a lost
 * database), nothing runs (lapsed) until they are renewed and every worker
 * dropped what the store says another node took meanwhile (lapse_sift,
 * sift); the rest goes on at the epochs it had. */

static int lapsed(struct cv_engine *e)
{
    return e->o.node && cv__now_ms() > atomic_load(&e->lease_deadline);
}

/* Drops instance `id` (another node holds it now), in memory or evicted. */
static void drop_lost(struct worker *w, const char *id)
{
    struct einst *x = find_owned(w, id);
    if (x) {
        release(w, x, 1);
        return;
    }
    if (cv__waits_remove(w->waits, id)) {
        atomic_fetch_sub(&w->e->evicted, 1);
        pthread_mutex_lock(&w->e->res_lock);
        w->e->stats.running--;
        pthread_mutex_unlock(&w->e->res_lock);
    }
    forget_retry(w, id);
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

/* After the leases lapsed: drops every instance the worker holds (in memory,
 * or waiting to be started) that the store says this node no longer owns
 * (e->sift). Evicted ones are checked when they are loaded again. */
static void sift(struct worker *w)
{
    struct cv_engine *e = w->e;
    long long dropped = 0;
    for (int i = w->nowned - 1; i >= 0; i--) {
        if (i >= w->nowned)
            continue;
        struct einst *x = w->owned[i];
        if (!bsearch(x->in.id, e->sift, (size_t)e->nsift, sizeof *e->sift, cmp_id)) {
            release(w, x, 1);
            dropped++;
        }
    }
    pthread_mutex_lock(&w->lock);
    struct startreq **link = &w->starts;
    while (*link) {
        struct startreq *r = *link;
        if (!bsearch(r->id, e->sift, (size_t)e->nsift, sizeof *e->sift, cmp_id)) {
            *link = r->next;
            jv_free(r->input);
            jv_free(r->state);
            free(r);
            dropped++;
        } else {
            link = &r->next;
        }
    }
    pthread_mutex_unlock(&w->lock);
    if (dropped) {
        pthread_mutex_lock(&e->res_lock);
        e->stats.lost += dropped;
        pthread_mutex_unlock(&e->res_lock);
        fprintf(stderr, "conveyor: node %s dropped %lld instance(s) another node took while its leases lapsed\n",
                e->o.node, dropped);
    }
}

/* Marks in e->census_held the ids of e->census this worker holds: in
 * memory, evicted, waiting to be loaded again or to be started. */
static void census(struct worker *w)
{
    struct cv_engine *e = w->e;
    for (int i = 0; i < e->ncensus; i++) {
        const char *id = e->census[i];
        int held = find_owned(w, id) != NULL || cv__waits_has(w->waits, id);
        for (int k = 0; k < w->nretries && !held; k++)
            held = !strcmp(w->retries[k].id, id);
        if (!held) {
            pthread_mutex_lock(&w->lock);
            for (struct startreq *r = w->starts; r && !held; r = r->next)
                held = !strcmp(r->id, id);
            pthread_mutex_unlock(&w->lock);
        }
        if (held)
            e->census_held[i] = 1;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->resolver.find = resolve_find;
    w->resolver.remote_get = resolve_remote_get;
    w->resolver.remote_put = resolve_remote_put;
    w->resolver.emit = worker_emit;
    w->resolver.ud = w;
    this_worker = w;
    w->outbox = jv_array();
    w->bus_cursor = w->e->bus_start;
    cv__runtime_set_thread_resolver(&w->resolver);
    struct einst **batch = NULL;
    int capbatch = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        for (;;) {
            if (w->stopping || atomic_load(&w->e->lapse_gen) != w->lapse_seen ||
                atomic_load(&w->e->census_gen) != w->census_seen)
                break;
            if (lapsed(w->e)) { /* cluster: the leases may be another node's now: run nothing */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&w->cond, &w->lock, &ts);
                continue;
            }
            if (w->nlost || w->nready || w->starts || w->ctls || w->bus_pending || (w->durable_news && w->ncands))
                break;
            /* due timers go back in line; otherwise sleep until the next one */
            int64_t now = cv__now_ms(), next = 0;
            for (int i = 0; i < w->nowned; i++) {
                struct einst *x = w->owned[i];
                if (!x->wake || x->queued || x->suspended)
                    continue;
                if (x->wake <= now) {
                    if (w->nready == w->capready) {
                        int cap = w->capready ? w->capready * 2 : 64;
                        struct einst **r = realloc(w->ready, (size_t)cap * sizeof *r);
                        if (!r)
                            break;
                        w->ready = r;
                        w->capready = cap;
                    }
                    w->ready[w->nready++] = x;
                    x->queued = 1;
                } else if (!next || x->wake < next) {
                    next = x->wake;
                }
            }
            if (w->nready)
                break;
            int64_t ev_wake = cv__waits_next_wake(w->waits); /* evicted instances' timers */
            if (ev_wake && ev_wake <= now)
                break;
            if (ev_wake && (!next || ev_wake < next))
                next = ev_wake;
            int64_t wait_ms = next ? next - now : 1000;
            if (wait_ms > 1000)
                wait_ms = 1000;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        }
        if (w->stopping) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        int cgen = atomic_load(&w->e->census_gen);
        if (cgen != w->census_seen) {
            pthread_mutex_unlock(&w->lock);
            census(w);
            pthread_mutex_lock(&w->e->cl_lock);
            w->census_seen = cgen;
            pthread_cond_broadcast(&w->e->cl_cond);
            pthread_mutex_unlock(&w->e->cl_lock);
            continue;
        }
        int gen = atomic_load(&w->e->lapse_gen);
        if (gen != w->lapse_seen) {
            pthread_mutex_unlock(&w->lock);
            sift(w);
            pthread_mutex_lock(&w->e->cl_lock);
            w->lapse_seen = gen;
            pthread_cond_broadcast(&w->e->cl_cond);
            pthread_mutex_unlock(&w->e->cl_lock);
            continue;
        }
        char(*lost)[37] = w->lost;
        int nlost = w->nlost;
        w->lost = NULL;
        w->nlost = w->caplost = 0;
        struct startreq *starts = w->starts;
        w->starts = NULL;
        struct ctlreq *ctls = w->ctls;
        w->ctls = NULL;
        int bus = w->bus_pending;
        w->bus_pending = 0;
        w->durable_news = 0; /* evict_candidates below looks */
        int n = w->nready;
        if (n > capbatch) {
            struct einst **b = realloc(batch, (size_t)n * sizeof *b);
            if (b) {
                batch = b;
                capbatch = n;
            } else {
                n = capbatch;
            }
        }
        for (int i = 0; i < n; i++) {
            batch[i] = w->ready[i];
            batch[i]->queued = 0;
        }
        if (n && w->nready > n)
            memmove(w->ready, w->ready + n, (size_t)(w->nready - n) * sizeof *w->ready);
        w->nready -= n;
        pthread_mutex_unlock(&w->lock);

        for (int i = 0; i < nlost; i++)
            drop_lost(w, lost[i]);
        free(lost);
        for (int k = 1; starts; k++) {
            struct startreq *next = starts->next;
            take_start(w, starts, 1);
            free(starts);
            starts = next;
            if (k % 64 == 0) /* a restart loads many: evict as it goes */
                evict_candidates(w);
        }
        /* controls after starts, in the order they came (the list is LIFO) */
        struct ctlreq *rev = NULL;
        while (ctls) {
            struct ctlreq *next = ctls->next;
            ctls->next = rev;
            rev = ctls;
            ctls = next;
        }
        while (rev) {
            struct ctlreq *next = rev->next;
            take_control(w, rev);
            free(rev);
            rev = next;
        }
        if (bus)
            offer_new(w); /* the instances it wakes run in the next round */
        if (w == &w->e->workers[0] && cv__now_ms() >= w->next_purge) {
            jv perr = jv_invalid();
            pthread_mutex_lock(&w->e->store_lock);
            cv_store_purge_events(w->e->store, cv__wall_ms(), NULL, &perr);
            pthread_mutex_unlock(&w->e->store_lock);
            jv_free(perr);
            w->next_purge = cv__now_ms() + 60000;
        }
        for (int i = 0; i < n; i++) {
            /* an instance that ended earlier in this round was removed from
             * the ready queue, but may still be in this copy of it */
            int alive = 0;
            for (int k = 0; k < w->nowned && !alive; k++)
                alive = w->owned[k] == batch[i];
            if (alive)
                run_ready(w, batch[i]);
        }
        reload_due(w);
        evict_candidates(w);
    }
    /* stopping: instances stay unfinished in the store; their last
     * checkpoints are queued already */
    while (w->nowned)
        disown_and_free(w, w->owned[w->nowned - 1]);
    atomic_fetch_sub(&w->e->evicted, cv__waits_count(w->waits));
    cv__waits_free(w->waits);
    w->waits = NULL;
    free(w->cands);
    w->cands = NULL;
    w->ncands = w->capcands = 0;
    atomic_fetch_sub(&w->e->evicted, w->nretries);
    free(w->retries);
    w->retries = NULL;
    w->nretries = 0;
    while (w->starts) {
        struct startreq *r = w->starts;
        w->starts = r->next;
        jv_free(r->input);
        jv_free(r->state);
        free(r);
    }
    while (w->ctls) {
        struct ctlreq *c = w->ctls;
        w->ctls = c->next;
        jv_free(c->who);
        free(c);
    }
    free(batch);
    jv_free(w->outbox);
    w->outbox = jv_invalid();
    this_worker = NULL;
    cv__runtime_set_thread_resolver(NULL);
    return NULL;
}

static unsigned hash_id(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int schedule(struct cv_engine *e, const char *id, int64_t epoch, const char *ns, const char *name,
                    const char *version, jv input, jv state)
{
    struct startreq *r = calloc(1, sizeof *r);
    if (!r) {
        jv_free(input);
        jv_free(state);
        return CV_ENOMEM;
    }
    snprintf(r->id, sizeof r->id, "%s", id);
    r->epoch = epoch;
    snprintf(r->ns, sizeof r->ns, "%s", ns);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->version, sizeof r->version, "%s", version);
    snprintf(r->key, sizeof r->key, "%s/%s:%s", ns, name, version);
    r->input = cv__jv_deep_copy(input);
    r->state = cv__jv_deep_copy(state);
    struct worker *w = &e->workers[hash_id(id) % (unsigned)e->nworkers];
    pthread_mutex_lock(&w->lock);
    r->next = w->starts;
    w->starts = r;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* ---- public calls ---------------------------------------------------------------------- */

int cv__engine_new(cv_runtime *rt, cv_store *store, const struct cv_engine_options *o, struct cv_engine **out)
{
    *out = NULL;
    struct cv_engine *e = calloc(1, sizeof *e);
    if (!e)
        return CV_ENOMEM;
    e->rt = rt;
    e->store = store;
    if (cv__runtime_set_model_store(rt, store)) { /* the default catalog reads models from it */
        free(e);
        return CV_ENOMEM;
    }
    e->o.workers = o && o->workers > 0 ? o->workers : 2;
    e->o.batch_max = o && o->batch_max > 0 ? o->batch_max : 512;
    e->o.batch_wait_us = o && o->batch_wait_us >= 0 && o->batch_max > 0 ? o->batch_wait_us : 0;
    e->o.event_retention_ms = o && o->event_retention_ms > 0 ? o->event_retention_ms : 24LL * 3600 * 1000;
    e->o.event_sinks = o ? o->event_sinks : NULL;
    e->o.nevent_sinks = o && o->event_sinks ? o->nevent_sinks : 0;
    e->o.node = o && o->node && *o->node ? o->node : NULL;
    e->o.lease_ms = o && o->lease_ms > 0 ? o->lease_ms : 10000;
    if (e->o.node && cv_store_set_node(store, e->o.node, e->o.lease_ms)) {
        cv__runtime_set_model_store(rt, NULL);
        free(e);
        return CV_EUNSUPPORTED; /* the store has no leases, or the name is not one */
    }
    pthread_mutex_init(&e->cl_lock, NULL);
    pthread_cond_init(&e->cl_cond, NULL);
    pthread_mutex_init(&e->store_lock, NULL);
    pthread_mutex_init(&e->cq_lock, NULL);
    pthread_cond_init(&e->cq_cond, NULL);
    pthread_mutex_init(&e->res_lock, NULL);
    pthread_cond_init(&e->res_cond, NULL);
    e->results = jv_object();
    e->nworkers = e->o.workers;
    e->workers = calloc((size_t)e->nworkers, sizeof *e->workers);
    if (!e->workers) {
        jv_free(e->results);
        free(e);
        return CV_ENOMEM;
    }
    e->evict_min_wait_ms = 1000;
    for (int i = 0; i < e->nworkers; i++) {
        e->workers[i].e = e;
        pthread_mutex_init(&e->workers[i].lock, NULL);
        pthread_cond_init(&e->workers[i].cond, NULL);
        if (!(e->workers[i].waits = cv__waits_new())) {
            for (int k = 0; k <= i; k++) {
                cv__waits_free(e->workers[k].waits);
                pthread_mutex_destroy(&e->workers[k].lock);
                pthread_cond_destroy(&e->workers[k].cond);
            }
            free(e->workers);
            jv_free(e->results);
            free(e);
            return CV_ENOMEM;
        }
    }
    cv_runtime_on_checkpoint(rt, on_checkpoint, e);
    *out = e;
    return 0;
}

/* Schedules stored instance `id` from its last checkpoint, at `epoch`. */
static int resume_one(struct cv_engine *e, const char *id, int64_t epoch)
{
    jv inst, gerr = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int g = cv_store_get_instance(e->store, id, &inst, &gerr);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(gerr);
    if (g)
        return g;
    jv ns = jv_object_get(jv_copy(inst), jv_string("namespace"));
    jv name = jv_object_get(jv_copy(inst), jv_string("name"));
    jv ver = jv_object_get(jv_copy(inst), jv_string("version"));
    jv state = jv_object_get(jv_copy(inst), jv_string("state"));
    jv input = jv_object_get(jv_copy(inst), jv_string("input"));
    if (jv_get_kind(state) != JV_KIND_OBJECT) {
        jv_free(state);
        state = jv_invalid(); /* never checkpointed: start from its input */
    }
    int rc = schedule(e, id, epoch, jv_string_value(ns), jv_string_value(name), jv_string_value(ver),
                      jv_is_valid(input) ? input : (jv_free(input), jv_null()), state);
    jv_free(ns);
    jv_free(name);
    jv_free(ver);
    jv_free(inst);
    return rc;
}

/* Cluster: takes the instances whose lease ended (with `reclaim`, this
 * node's own too) and schedules them; *n = how many. */
static int take_leases(struct cv_engine *e, int reclaim, int *n, jv *err)
{
    enum { PAGE = 256 };
    for (;;) {
        jv got;
        pthread_mutex_lock(&e->store_lock);
        int rc = cv_store_lease_acquire(e->store, e->o.node, cv__wall_ms(), e->o.lease_ms, PAGE, reclaim, &got, err);
        pthread_mutex_unlock(&e->store_lock);
        if (rc)
            return rc;
        int k = jv_array_length(jv_copy(got));
        jv_array_foreach(got, i, x)
        {
            (void)i;
            jv id = jv_object_get(jv_copy(x), jv_string("id"));
            jv ep = jv_object_get(x, jv_string("epoch"));
            if (!resume_one(e, jv_string_value(id), (int64_t)jv_number_value(ep)))
                (*n)++;
            jv_free(id);
            jv_free(ep);
        }
        jv_free(got);
        if (k) {
            pthread_mutex_lock(&e->res_lock);
            e->stats.taken += k;
            pthread_mutex_unlock(&e->res_lock);
        }
        if (k < PAGE)
            return 0;
    }
}

/* Waits until every worker sifted what it held for lapse `gen`; 1 when
 * they all did, 0 when the engine stops first. */
static int wait_dropped(struct cv_engine *e, int gen)
{
    int all = 0;
    pthread_mutex_lock(&e->cl_lock);
    for (;;) {
        all = 1;
        for (int i = 0; i < e->nworkers; i++)
            all = all && e->workers[i].lapse_seen == gen;
        if (all || e->cl_stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cl_cond, &e->cl_lock, &ts);
    }
    pthread_mutex_unlock(&e->cl_lock);
    return all;
}

/* Another node deployed something (the count of deployed versions, or the
 * latest deployment time, moved): this node's schedules read the
 * definitions again, so that every node runs every schedule (each occasion
 * starts one instance: its idempotency key names it). */
static void deployments_seen(struct cv_engine *e, int64_t *count, int64_t *latest)
{
    jv wfs, err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_list_workflows(e->store, &wfs, &err);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(err);
    if (rc)
        return;
    int64_t n = jv_array_length(jv_copy(wfs)), at = 0;
    jv_array_foreach(wfs, i, w)
    {
        (void)i;
        jv d = jv_object_get(w, jv_string("deployedAt"));
        if (jv_get_kind(d) == JV_KIND_NUMBER && (int64_t)jv_number_value(d) > at)
            at = (int64_t)jv_number_value(d);
        jv_free(d);
    }
    jv_free(wfs);
    if (*count >= 0 && (n != *count || at != *latest))
        cv__schedules_reload(e->schedules);
    *count = n;
    *latest = at;
}

/* Waits until every worker answered census `gen`; 1, or 0 when stopping. */
static int wait_census(struct cv_engine *e, int gen)
{
    int all = 0;
    pthread_mutex_lock(&e->cl_lock);
    for (;;) {
        all = 1;
        for (int i = 0; i < e->nworkers; i++)
            all = all && e->workers[i].census_seen == gen;
        if (all || e->cl_stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cl_cond, &e->cl_lock, &ts);
    }
    pthread_mutex_unlock(&e->cl_lock);
    return all;
}

/*
 * The census: instances the store says this node owns (leased to it, not
 * ended) that none of its workers holds — a start whose creation was
 * written although the node was told it failed (the connection dropped at
 * the commit), for one — would be renewed forever and never run. Those
 * seen unheld at two censuses in a row (a start between its creation and
 * its scheduling is held within milliseconds) and still pending, running or
 * waiting are taken again (lease_take: a new epoch fences any copy) and
 * resumed. *prev (sorted ids, owned) carries the last census's unheld ones.
 */
static void census_round(struct cv_engine *e, char (**prev)[37], int *nprev)
{
    jv ids, err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_lease_owned(e->store, e->o.node, &ids, &err);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(err);
    if (rc)
        return;
    int n = jv_array_length(jv_copy(ids));
    char(*set)[37] = calloc((size_t)(n ? n : 1), sizeof *set);
    unsigned char *held = calloc((size_t)(n ? n : 1), 1);
    if (!set || !held) {
        free(set);
        free(held);
        jv_free(ids);
        return;
    }
    jv_array_foreach(ids, i, id)
    {
        snprintf(set[i], sizeof set[i], "%.36s", jv_string_value(id));
        jv_free(id);
    }
    jv_free(ids);
    qsort(set, (size_t)n, sizeof *set, cmp_id);
    e->census = set;
    e->census_held = held;
    e->ncensus = n;
    int gen = atomic_fetch_add(&e->census_gen, 1) + 1;
    for (int i = 0; i < e->nworkers; i++) {
        pthread_mutex_lock(&e->workers[i].lock);
        pthread_cond_signal(&e->workers[i].cond);
        pthread_mutex_unlock(&e->workers[i].lock);
    }
    if (!wait_census(e, gen))
        return; /* stopping: a worker may still read the set; engine_stop frees it */
    e->census = NULL;
    e->census_held = NULL;
    e->ncensus = 0;
    char(*unheld)[37] = calloc((size_t)(n ? n : 1), sizeof *unheld);
    int nun = 0;
    for (int i = 0; unheld && i < n; i++)
        if (!held[i])
            memcpy(unheld[nun++], set[i], sizeof *set);
    for (int i = 0; i < nun; i++) {
        if (!*prev || !bsearch(unheld[i], *prev, (size_t)*nprev, sizeof **prev, cmp_id))
            continue; /* seen unheld once: maybe a start on its way; next census */
        jv inst, gerr = jv_invalid();
        pthread_mutex_lock(&e->store_lock);
        int g = cv_store_get_instance(e->store, unheld[i], &inst, &gerr);
        pthread_mutex_unlock(&e->store_lock);
        jv_free(gerr);
        if (g)
            continue;
        jv st = jv_object_get(inst, jv_string("status"));
        const char *ss = jv_get_kind(st) == JV_KIND_STRING ? jv_string_value(st) : "";
        int live = !strcmp(ss, CV_ST_PENDING) || !strcmp(ss, CV_ST_RUNNING) || !strcmp(ss, CV_ST_WAITING);
        jv_free(st);
        if (!live) /* suspended ones are held by none on purpose (resume loads them) */
            continue;
        int64_t epoch = 0;
        jv terr = jv_invalid();
        pthread_mutex_lock(&e->store_lock);
        int t = cv_store_lease_take(e->store, unheld[i], e->o.node, cv__wall_ms(), e->o.lease_ms, &epoch, &terr);
        pthread_mutex_unlock(&e->store_lock);
        jv_free(terr);
        if (t || resume_one(e, unheld[i], epoch))
            continue;
        fprintf(stderr, "conveyor: node %s: instance %s was leased to it but held by none of its workers: "
                        "taken again (epoch %lld) and resumed\n",
                e->o.node, unheld[i], (long long)epoch);
        pthread_mutex_lock(&e->res_lock);
        e->stats.taken++;
        pthread_mutex_unlock(&e->res_lock);
    }
    free(*prev);
    *prev = unheld;
    *nprev = nun;
    free(set);
    free(held);
}

/* The leases lapsed and were renewed: every worker drops what the store says
 * this node no longer owns (sift). 0, or -1 when the store could not say. */
static int lapse_sift(struct cv_engine *e)
{
    jv ids, err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_lease_owned(e->store, e->o.node, &ids, &err);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(err);
    if (rc)
        return -1;
    int n = jv_array_length(jv_copy(ids));
    char(*set)[37] = calloc((size_t)(n ? n : 1), sizeof *set);
    if (!set) {
        jv_free(ids);
        return -1;
    }
    jv_array_foreach(ids, i, id)
    {
        snprintf(set[i], sizeof set[i], "%.36s", jv_string_value(id));
        jv_free(id);
    }
    jv_free(ids);
    qsort(set, (size_t)n, sizeof *set, cmp_id);
    fprintf(stderr, "conveyor: node %s: its leases lapsed (not renewed within %lld ms): keeping the %d instance(s) "
                    "it still owns, dropping the others\n",
            e->o.node, (long long)e->o.lease_ms, n);
    pthread_mutex_lock(&e->res_lock);
    e->stats.lapses++;
    pthread_mutex_unlock(&e->res_lock);
    e->sift = set;
    e->nsift = n;
    int gen = atomic_fetch_add(&e->lapse_gen, 1) + 1;
    for (int i = 0; i < e->nworkers; i++) {
        pthread_mutex_lock(&e->workers[i].lock);
        pthread_cond_signal(&e->workers[i].cond);
        pthread_mutex_unlock(&e->workers[i].lock);
    }
    if (wait_dropped(e, gen)) { /* else a worker may still read it: freed once they stopped */
        e->sift = NULL;
        e->nsift = 0;
        free(set);
    }
    return 0;
}

/* The cluster thread: renews, takes, and watches the bus for other nodes'
 * events. A renewal every quarter of a lease; a new lease's instances are
 * looked for at the same pace; the bus when another node announces events
 * (PostgreSQL: LISTEN/NOTIFY), and every second anyway (every 100 ms
 * without announcements). */
static void *cluster_main(void *arg)
{
    struct cv_engine *e = arg;
    /* with announcements (PostgreSQL's LISTEN/NOTIFY) the bus is polled
     * every second as a fallback, else every 100 ms */
    int watch = cv_store_can_watch(e->store);
    int64_t lease = e->o.lease_ms, tick = lease / 4, poll = watch ? 1000 : 100;
    if (tick < 20)
        tick = 20;
    int64_t next_bus = 0;
    int bus_due = 1;
    int64_t next_renew = cv__now_ms() + tick;
    int64_t wf_count = -1, wf_latest = -1;
    long ticks = 0;
    char(*unheld)[37] = NULL; /* the last census's unheld instances */
    int nunheld = 0;
    e->bus_seen = e->bus_start;
    for (;;) {
        pthread_mutex_lock(&e->cl_lock);
        int stopping = e->cl_stopping;
        pthread_mutex_unlock(&e->cl_lock);
        if (stopping)
            break;
        int64_t now = cv__now_ms();
        if (now >= next_renew) {
            int was_lapsed = lapsed(e);
            jv err = jv_invalid();
            int64_t held = 0;
            pthread_mutex_lock(&e->store_lock);
            int rc = cv_store_lease_renew(e->store, e->o.node, cv__wall_ms(), lease, &held, &err);
            pthread_mutex_unlock(&e->store_lock);
            if (rc)
                fprintf(stderr, "conveyor: node %s cannot renew its leases: %s\n", e->o.node,
                        jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc));
            jv_free(err);
            /* renewed (what is still this node's holds until now + lease);
             * but when that came after the leases lapsed, another node may
             * have taken some meanwhile: keep only what the store says is
             * still this node's, before anything runs again */
            if (!rc && (was_lapsed || lapsed(e)) && lapse_sift(e))
                rc = -1; /* could not tell: stays lapsed, tried again next round */
            if (!rc)
                atomic_store(&e->lease_deadline, now + lease - lease / 10);
            next_renew = now + tick;
            if (!lapsed(e)) {
                int n = 0;
                err = jv_invalid();
                take_leases(e, 0, &n, &err);
                jv_free(err);
            }
            deployments_seen(e, &wf_count, &wf_latest);
            if (++ticks % 4 == 0 && !lapsed(e)) /* about once a lease */
                census_round(e, &unheld, &nunheld);
        }
        /* events other nodes put on the bus: when a node announced some
         * (LISTEN/NOTIFY), else every poll interval */
        if (bus_due || cv__now_ms() >= next_bus) {
            jv page, err = jv_invalid();
            pthread_mutex_lock(&e->store_lock);
            int rc = cv_store_list_events(e->store, e->bus_seen, cv__wall_ms(), 1000, &page, &err);
            pthread_mutex_unlock(&e->store_lock);
            jv_free(err);
            if (!rc) {
                int k = jv_array_length(jv_copy(page));
                if (k > 0) {
                    jv seq = jv_object_get(jv_array_get(jv_copy(page), k - 1), jv_string("seq"));
                    e->bus_seen = (int64_t)jv_number_value(seq);
                    jv_free(seq);
                    bus_notify(e);
                }
                bus_due = k == 1000; /* a full page: read on */
                jv_free(page);
            } else {
                bus_due = 0; /* the store could not say: again at the next poll, not at once */
            }
            next_bus = cv__now_ms() + poll;
        }
        int64_t wait = next_renew - cv__now_ms();
        if (wait > next_bus - cv__now_ms())
            wait = next_bus - cv__now_ms();
        if (wait > 250)
            wait = 250; /* stopping is seen within a quarter of a second */
        if (wait <= 0 || bus_due)
            continue;
        if (watch) { /* another node's announcement ends the wait */
            int what = 0;
            jv err = jv_invalid();
            if (cv_store_watch(e->store, (int)wait, &what, &err) == 0) {
                if (what & CV_WATCH_BUS)
                    bus_due = 1;
                if ((what & CV_WATCH_LEASE) && !lapsed(e)) { /* a node stopped: its instances are free */
                    int n = 0;
                    jv terr = jv_invalid();
                    take_leases(e, 0, &n, &terr);
                    jv_free(terr);
                }
            }
            jv_free(err);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&e->cl_lock);
        if (!e->cl_stopping)
            pthread_cond_timedwait(&e->cl_cond, &e->cl_lock, &ts);
        pthread_mutex_unlock(&e->cl_lock);
    }
    free(unheld);
    return NULL;
}

int cv__engine_start(struct cv_engine *e, int *resumed, jv *err)
{
    if (resumed)
        *resumed = 0;
    /* the bus's newest event now: workers offer only what comes after it to
     * their instances (a listen that begins reads what was kept) */
    {
        int64_t after = 0;
        for (;;) {
            jv page, perr = jv_invalid();
            int prc = cv_store_list_events(e->store, after, cv__wall_ms(), 10000, &page, &perr);
            jv_free(perr);
            int n = prc ? 0 : jv_array_length(jv_copy(page));
            if (n > 0) {
                jv last = jv_array_get(jv_copy(page), n - 1);
                jv seq = jv_object_get(last, jv_string("seq"));
                after = (int64_t)jv_number_value(seq);
                jv_free(seq);
            }
            if (!prc)
                jv_free(page);
            if (n < 10000)
                break;
        }
        e->bus_start = after;
    }
    if (pthread_create(&e->committer, NULL, committer, e)) {
        *err = jv_string("cannot start the commit thread");
        return CV_ENOMEM;
    }
    for (int i = 0; i < e->nworkers; i++)
        if (pthread_create(&e->workers[i].th, NULL, worker_main, &e->workers[i])) {
            *err = jv_string("cannot start a worker thread");
            for (int k = 0; k < i; k++) {
                pthread_mutex_lock(&e->workers[k].lock);
                e->workers[k].stopping = 1;
                pthread_cond_signal(&e->workers[k].cond);
                pthread_mutex_unlock(&e->workers[k].lock);
                pthread_join(e->workers[k].th, NULL);
            }
            e->nworkers = i;
            return CV_ENOMEM;
        }
    e->started = 1;
    /* subflows given to the runtime go into the store, so that every worker
     * loads its own copy of them (cv__runtime_find_workflow asks the worker) */
    for (int i = 0; i < e->rt->nsubflows; i++) {
        const cv_workflow *sub = e->rt->subflows[i];
        jv text = jv_dump_string(jv_copy(sub->doc), 0);
        jv perr = jv_invalid();
        pthread_mutex_lock(&e->store_lock);
        int prc = cv_store_put_workflow(e->store, sub->ns, sub->name, sub->version, jv_string_value(text), &perr);
        pthread_mutex_unlock(&e->store_lock);
        if (prc && prc != CV_ECONFLICT)
            fprintf(stderr, "conveyor: subflow %s/%s:%s: %s\n", sub->ns, sub->name, sub->version,
                    jv_get_kind(perr) == JV_KIND_STRING ? jv_string_value(perr) : cv_strerror(prc));
        jv_free(perr);
        jv_free(text);
    }
    /* every unfinished instance continues from its last checkpoint (cluster:
     * those whose lease ended, and this node's own, taken at new epochs) */
    int n = 0;
    if (e->o.node) {
        int rc = take_leases(e, 1, &n, err);
        if (rc)
            return rc;
        atomic_store(&e->lease_deadline, cv__now_ms() + e->o.lease_ms - e->o.lease_ms / 10);
    } else {
        jv ids;
        pthread_mutex_lock(&e->store_lock);
        int rc = cv_store_unfinished_instances(e->store, &ids, err);
        pthread_mutex_unlock(&e->store_lock);
        if (rc)
            return rc;
        jv_array_foreach(ids, i, id)
        {
            (void)i;
            if (!resume_one(e, jv_string_value(id), 0))
                n++;
            jv_free(id);
        }
        jv_free(ids);
    }
    if (cv__schedules_start(e, &e->schedules))
        fprintf(stderr, "conveyor: cannot start the schedule thread: schedules do not run\n");
    if (cv__sinks_start(e, e->o.event_sinks, e->o.nevent_sinks, &e->sinks))
        fprintf(stderr, "conveyor: cannot start the event sinks\n");
    if (e->o.node) { /* after the schedules: it pokes them */
        if (pthread_create(&e->cluster_th, NULL, cluster_main, e)) {
            *err = jv_string("cannot start the cluster thread");
            return CV_ENOMEM;
        }
        e->cluster_started = 1;
    }
    pthread_mutex_lock(&e->res_lock);
    e->stats.resumed += n;
    pthread_mutex_unlock(&e->res_lock);
    if (resumed)
        *resumed = n;
    return 0;
}

void cv__engine_stop(struct cv_engine *e)
{
    if (!e)
        return;
    cv__schedules_stop(e->schedules);
    e->schedules = NULL;
    cv__sinks_stop(e->sinks);
    e->sinks = NULL;
    if (e->cluster_started) { /* takes nothing more; the leases are released below */
        pthread_mutex_lock(&e->cl_lock);
        e->cl_stopping = 1;
        pthread_cond_broadcast(&e->cl_cond);
        pthread_mutex_unlock(&e->cl_lock);
        pthread_join(e->cluster_th, NULL);
        e->cluster_started = 0;
    }
    if (e->started) {
        for (int i = 0; i < e->nworkers; i++) {
            pthread_mutex_lock(&e->workers[i].lock);
            e->workers[i].stopping = 1;
            pthread_cond_signal(&e->workers[i].cond);
            pthread_mutex_unlock(&e->workers[i].lock);
        }
        for (int i = 0; i < e->nworkers; i++)
            pthread_join(e->workers[i].th, NULL);
        pthread_mutex_lock(&e->cq_lock);
        e->cq_stopping = 1;
        pthread_cond_signal(&e->cq_cond);
        pthread_mutex_unlock(&e->cq_lock);
        pthread_join(e->committer, NULL);
    }
    if (e->o.node && e->started) { /* every checkpoint is written: other nodes may take the rest at once */
        jv err = jv_invalid();
        if (cv_store_lease_release(e->store, e->o.node, &err))
            fprintf(stderr, "conveyor: node %s could not release its leases (others take them when they end): %s\n",
                    e->o.node, jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "?");
        jv_free(err);
        cv_store_set_node(e->store, NULL, 0);
    }
    cv_runtime_on_checkpoint(e->rt, NULL, NULL);
    cv__runtime_set_model_store(e->rt, NULL); /* the store may be closed next */
    for (int i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        for (int k = 0; k < w->ndefs; k++) {
            free(w->defs[k].key);
            cv_workflow_free(w->defs[k].wf);
        }
        free(w->defs);
        for (int k = 0; k < w->nremote; k++) {
            free(w->remote[k].key);
            cv_workflow_free(w->remote[k].wf);
        }
        free(w->remote);
        free(w->ready);
        free(w->owned);
        cv__waits_free(w->waits); /* a worker that never ran */
        free(w->cands);
        free(w->lost);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    free(e->workers);
    free(e->sift);
    free(e->census);
    free(e->census_held);
    jv_free(e->results);
    pthread_mutex_destroy(&e->store_lock);
    pthread_mutex_destroy(&e->cq_lock);
    pthread_cond_destroy(&e->cq_cond);
    pthread_mutex_destroy(&e->res_lock);
    pthread_cond_destroy(&e->res_cond);
    pthread_mutex_destroy(&e->cl_lock);
    pthread_cond_destroy(&e->cl_cond);
    free(e);
}

int cv__engine_deploy(struct cv_engine *e, const char *text, size_t len, jv *out)
{
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(text, len, "deploy", &wf, &diags);
    if (rc) {
        *out = diags;
        return rc;
    }
    jv_free(diags);
    char *copy = strndup(text, len);
    jv err = jv_invalid();
    if (!copy) {
        cv_workflow_free(wf);
        return CV_ENOMEM;
    }
    pthread_mutex_lock(&e->store_lock);
    rc = cv_store_put_workflow(e->store, cv_workflow_namespace(wf), cv_workflow_name(wf), cv_workflow_version(wf),
                               copy, &err);
    pthread_mutex_unlock(&e->store_lock);
    free(copy);
    if (rc) {
        *out = err;
    } else {
        jv_free(err);
        *out = JV_OBJECT(jv_string("namespace"), jv_string(cv_workflow_namespace(wf)), jv_string("name"),
                         jv_string(cv_workflow_name(wf)), jv_string("version"), jv_string(cv_workflow_version(wf)));
    }
    cv_workflow_free(wf);
    if (!rc)
        cv__schedules_reload(e->schedules);
    return rc;
}

int cv__engine_publish(struct cv_engine *e, jv events, jv *seqs, jv *err)
{
    double expires = (double)(cv__wall_ms() + e->o.event_retention_ms);
    jv entries = jv_array();
    if (jv_get_kind(events) == JV_KIND_ARRAY) {
        jv_array_foreach(events, i, ev) entries = jv_array_append(
            entries, JV_OBJECT(jv_string("event"), ev, jv_string("expiresAt"), jv_number(expires)));
    }
    jv_free(events);
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_put_events(e->store, entries, seqs, err);
    pthread_mutex_unlock(&e->store_lock);
    if (!rc && e->started)
        bus_notify(e);
    return rc;
}

static int start_grouped(struct cv_engine *e, const char *ns, const char *name, const char *version, jv input,
                         const char *idempotency_key, jv events, char *id_out, int *existed, jv *err);
static jv start_history(jv events);

/* A start alone: one transaction of its own, at once (no queue to wait in). */
static int start_alone(struct cv_engine *e, const char *ns, const char *name, const char *version, jv input,
                       const char *idempotency_key, jv events, char *id_out, int *existed, jv *err)
{
    struct cv_create c;
    memset(&c, 0, sizeof c);
    c.ns = ns;
    c.name = name;
    c.version = version;
    c.idempotency_key = idempotency_key;
    c.input = cv__jv_deep_copy(jv_copy(input));
    c.history = start_history(events);
    c.err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_create_instances(e->store, &c, 1);
    if (!rc)
        rc = c.rc;
    jv inst = jv_invalid(), gerr = jv_invalid();
    if (!rc && !c.existed)
        rc = cv_store_get_instance(e->store, c.id, &inst, &gerr);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(gerr);
    snprintf(id_out, 64, "%s", c.id);
    *existed = c.existed;
    if (rc)
        *err = jv_is_valid(c.err) ? c.err : jv_string(cv_strerror(rc));
    else
        jv_free(c.err);
    if (rc || *existed) {
        jv_free(inst);
        jv_free(input);
        return rc;
    }
    jv ver = jv_object_get(inst, jv_string("version"));
    rc = schedule(e, id_out, e->o.node ? 1 : 0, ns, name, jv_string_value(ver), input, jv_invalid());
    jv_free(ver);
    return rc;
}

/* The history a new instance starts with: workflow.started, then the
 * caller's events (consumed). Written in the creation's transaction, so a
 * start answered is a start recorded, with who asked for it. */
static jv start_history(jv events)
{
    jv all = JV_ARRAY(history_event("workflow.started", jv_object()));
    if (jv_get_kind(events) == JV_KIND_ARRAY)
        return jv_array_concat(all, cv__jv_deep_copy(events));
    jv_free(events);
    return all;
}

int cv__engine_start_instance_ex(struct cv_engine *e, const char *ns, const char *name, const char *version,
                                 jv input, const char *idempotency_key, jv events, char *id_out, int *existed,
                                 jv *err)
{
    *existed = 0;
    /* alone: straight to the store; with company: the creations share the
     * next group commit (one transaction, one fsync for all of them) */
    int rc;
    if (atomic_fetch_add(&e->creating, 1) == 0)
        rc = start_alone(e, ns, name, version, input, idempotency_key, events, id_out, existed, err);
    else
        rc = start_grouped(e, ns, name, version, input, idempotency_key, events, id_out, existed, err);
    atomic_fetch_sub(&e->creating, 1);
    return rc;
}

int cv__engine_start_instance(struct cv_engine *e, const char *ns, const char *name, const char *version,
                              jv input, const char *idempotency_key, char *id_out, int *existed, jv *err)
{
    return cv__engine_start_instance_ex(e, ns, name, version, input, idempotency_key, jv_array(), id_out, existed,
                                        err);
}

static int start_grouped(struct cv_engine *e, const char *ns, const char *name, const char *version, jv input,
                         const char *idempotency_key, jv events, char *id_out, int *existed, jv *err)
{
    struct createreq *r = calloc(1, sizeof *r);
    struct pending *p = r ? calloc(1, sizeof *p) : NULL;
    if (!p) {
        free(r);
        jv_free(input);
        jv_free(events);
        return CV_ENOMEM;
    }
    snprintf(r->ns, sizeof r->ns, "%s", ns);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->version, sizeof r->version, "%s", version ? version : "latest");
    if (idempotency_key)
        snprintf(r->key, sizeof r->key, "%s", idempotency_key);
    r->c.ns = r->ns;
    r->c.name = r->name;
    r->c.version = r->version;
    r->c.idempotency_key = idempotency_key ? r->key : NULL;
    r->c.input = cv__jv_deep_copy(jv_copy(input)); /* for the commit thread */
    r->c.history = start_history(events);        /* a deep copy too */
    r->c.err = jv_invalid();
    r->input_copy = input;
    p->create = r;
    p->result = jv_invalid();
    cv_checkpoint_init(&p->cp, "");
    enqueue(e, p);
    /* durable before we answer: the creation rides the next group commit */
    pthread_mutex_lock(&e->res_lock);
    while (!r->done)
        pthread_cond_wait(&e->res_cond, &e->res_lock);
    pthread_mutex_unlock(&e->res_lock);
    int rc = r->c.rc;
    if (rc) {
        *err = jv_is_valid(r->c.err) ? r->c.err : jv_string(cv_strerror(rc));
        jv_free(r->input_copy);
        free(r);
        return rc;
    }
    jv_free(r->c.err);
    snprintf(id_out, 64, "%s", r->c.id);
    *existed = r->c.existed;
    if (!*existed) {
        /* the version the store resolved ("latest") */
        jv inst, gerr = jv_invalid();
        pthread_mutex_lock(&e->store_lock);
        int g = cv_store_get_instance(e->store, r->c.id, &inst, &gerr);
        pthread_mutex_unlock(&e->store_lock);
        jv_free(gerr);
        if (g) {
            jv_free(r->input_copy);
            free(r);
            *err = jv_string("the new instance could not be read back");
            return g;
        }
        jv ver = jv_object_get(inst, jv_string("version"));
        rc = schedule(e, r->c.id, e->o.node ? 1 : 0, ns, name, jv_string_value(ver), r->input_copy, jv_invalid());
        jv_free(ver);
    } else {
        jv_free(r->input_copy);
    }
    free(r);
    return rc;
}

/* The instance as the store has it: {id, status, output, error}. */
static int stored_result(struct cv_engine *e, const char *id, jv *out, int *ended)
{
    jv inst, err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_get_instance(e->store, id, &inst, &err);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(err);
    if (rc)
        return rc;
    jv status = jv_object_get(jv_copy(inst), jv_string("status"));
    const char *st = jv_string_value(status);
    *ended = !strcmp(st, CV_ST_COMPLETED) || !strcmp(st, CV_ST_FAULTED) || !strcmp(st, CV_ST_CANCELLED);
    *out = JV_OBJECT(jv_string("id"), jv_string(id), jv_string("status"), status, jv_string("output"),
                     jv_object_get(jv_copy(inst), jv_string("output")), jv_string("error"),
                     jv_object_get(jv_copy(inst), jv_string("error")));
    jv_free(inst);
    return 0;
}

int cv__engine_wait(struct cv_engine *e, const char *id, int timeout_ms, jv *out)
{
    int64_t deadline = cv__now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        pthread_mutex_lock(&e->res_lock);
        jv r = jv_object_get(jv_copy(e->results), jv_string(id));
        if (jv_is_valid(r)) {
            *out = cv__jv_deep_copy(r);
            pthread_mutex_unlock(&e->res_lock);
            return 0;
        }
        jv_free(r);
        pthread_mutex_unlock(&e->res_lock);
        /* ended before this process, or by a batch the map has let go of */
        int ended = 0;
        int rc = stored_result(e, id, out, &ended);
        if (rc)
            return rc;
        if (ended || cv__now_ms() >= deadline)
            return 0; /* status running when it has not ended */
        jv_free(*out);
        int64_t left = deadline - cv__now_ms();
        if (left > 200)
            left = 200;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&e->res_lock);
        jv again = jv_object_get(jv_copy(e->results), jv_string(id));
        if (!jv_is_valid(again))
            pthread_cond_timedwait(&e->res_cond, &e->res_lock, &ts);
        jv_free(again);
        pthread_mutex_unlock(&e->res_lock);
    }
}

void cv__engine_stats(struct cv_engine *e, struct cv_engine_stats *out)
{
    pthread_mutex_lock(&e->res_lock);
    *out = e->stats;
    pthread_mutex_unlock(&e->res_lock);
    pthread_mutex_lock(&e->cq_lock);
    out->commit_queue = e->cq_len;
    pthread_mutex_unlock(&e->cq_lock);
    out->ready = 0;
    for (int i = 0; i < e->nworkers; i++) {
        pthread_mutex_lock(&e->workers[i].lock);
        out->ready += e->workers[i].nready;
        pthread_mutex_unlock(&e->workers[i].lock);
    }
    out->effects_in_flight = atomic_load(&e->rt->effects_in_flight);
}

_Static_assert(CV_TASK_KINDS == 12 && CV_TASK_BUCKETS + 1 == 12, "struct cv_task_stats follows engine_int.h");

void cv__engine_task_stats(struct cv_engine *e, struct cv_task_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int k = 0; k < CV_TASK_KINDS; k++) {
        for (int b = 0; b <= CV_TASK_BUCKETS; b++)
            out->count[k][b] = atomic_load(&e->rt->task_count[k][b]);
        out->sum_s[k] = (double)atomic_load(&e->rt->task_sum_us[k]) / 1e6;
    }
}

/* ---- review tasks: the API's path to the task store (docs/tasks.md) --------------------------- */

int cv__engine_with_store(struct cv_engine *e, int (*fn)(cv_store *st, void *ctx), void *ctx, int published)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = fn(e->store, ctx);
    pthread_mutex_unlock(&e->store_lock);
    if (!rc && published && e->started)
        bus_notify(e);
    return rc;
}

int64_t cv__engine_event_retention_ms(struct cv_engine *e)
{
    return e->o.event_retention_ms;
}

/* ---- read paths for the API ---------------------------------------------------------------- */

int cv__engine_get_instance(struct cv_engine *e, const char *id, jv *out, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_get_instance(e->store, id, out, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_list_instances(struct cv_engine *e, jv filter, int limit, const char *after, jv *out, jv *next,
                              jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_list_instances(e->store, filter, limit, after, out, next, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_history(struct cv_engine *e, const char *id, jv *out, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_history(e->store, id, out, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_get_workflow(struct cv_engine *e, const char *ns, const char *name, const char *version, jv *out,
                            jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_get_workflow(e->store, ns, name, version, out, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_list_workflows(struct cv_engine *e, jv *out, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_list_workflows(e->store, out, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_list_events(struct cv_engine *e, int64_t after, int limit, jv *out, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_list_events(e->store, after, cv__wall_ms(), limit, out, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_get_cursor(struct cv_engine *e, const char *name, int64_t *seq, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_get_cursor(e->store, name, seq, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_leads(struct cv_engine *e, const char *job)
{
    if (!e->o.node)
        return 1;
    int held = 0;
    jv err = jv_invalid();
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_lease_name(e->store, job, e->o.node, cv__wall_ms(), e->o.lease_ms, &held, &err);
    pthread_mutex_unlock(&e->store_lock);
    jv_free(err);
    return !rc && held;
}

int cv__engine_set_cursor(struct cv_engine *e, const char *name, int64_t seq, jv *err)
{
    pthread_mutex_lock(&e->store_lock);
    int rc = cv_store_set_cursor(e->store, name, seq, err);
    pthread_mutex_unlock(&e->store_lock);
    return rc;
}

int cv__engine_note(struct cv_engine *e, const char *id, jv events, jv *err)
{
    /* through the commit queue, so that it is ordered with the instance's
     * own checkpoints */
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        jv_free(events);
        return CV_ENOMEM;
    }
    cv_checkpoint_init(&p->cp, id);
    p->cp.history = cv__jv_deep_copy(events);
    p->result = jv_invalid();
    enqueue(e, p);
    (void)err;
    return 0;
}

/* ---- control ------------------------------------------------------------------------------------ */

int cv__engine_control(struct cv_engine *e, const char *id, const char *action, jv who, jv *err)
{
    int op = !strcmp(action, "cancel") ? CTL_CANCEL : !strcmp(action, "suspend") ? CTL_SUSPEND
             : !strcmp(action, "resume") ? CTL_RESUME : -1;
    if (op < 0) {
        jv_free(who);
        *err = jv_string_fmt("unknown action '%s'", action);
        return CV_EINVAL;
    }
    jv inst;
    int rc = cv__engine_get_instance(e, id, &inst, err);
    if (rc) {
        jv_free(who);
        return rc;
    }
    jv status = jv_object_get(inst, jv_string("status"));
    const char *st = jv_string_value(status);
    int live = !strcmp(st, CV_ST_PENDING) || !strcmp(st, CV_ST_RUNNING) || !strcmp(st, CV_ST_WAITING);
    int allowed = op == CTL_CANCEL ? live || !strcmp(st, CV_ST_SUSPENDED)
                  : op == CTL_SUSPEND ? live
                                      : !strcmp(st, CV_ST_SUSPENDED);
    if (!allowed) {
        *err = jv_string_fmt("instance %s is %s: cannot %s it", id, st, action);
        jv_free(status);
        jv_free(who);
        return CV_ECONFLICT;
    }
    jv_free(status);
    struct ctlreq *c = calloc(1, sizeof *c);
    if (!c) {
        jv_free(who);
        return CV_ENOMEM;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    c->op = op;
    c->who = cv__jv_deep_copy(who);
    struct worker *w = &e->workers[hash_id(id) % (unsigned)e->nworkers];
    pthread_mutex_lock(&w->lock);
    c->next = w->ctls;
    w->ctls = c;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}
