/*
 * store.h — the one interface for everything the engine persists
 * (DESIGN.md decisions 3, 4 and 6).
 *
 * A backend fills in a struct cv_store_ops (src/store/sqlite.c now,
 * src/store/postgres.c later); src/store/store.c is the only file that calls
 * through the table, and nothing above this interface may know which backend
 * runs (no SQL, no backend #ifdefs in the engine).
 *
 * Values are jq `jv` (consumed when passed in, owned by the caller when
 * returned), as everywhere in conveyor. Times are milliseconds since the
 * epoch (wall clock) unless a name says otherwise. Every function returns 0
 * or a negative CV_* code; details go to *err (a jv string) where given:
 *   CV_ENOTFOUND   no such workflow / instance
 *   CV_ECONFLICT   a deployed version exists with different content; an
 *                  instance was changed by someone else (stale epoch)
 *   CV_EBUSY       the database is locked by another process (retry later)
 *   CV_EIO         the database cannot be read or written (disk full, corrupt)
 *   CV_EUNSUPPORTED  the database comes from a newer conveyor (schema version)
 *
 * Durability contract: when checkpoint() returns 0 the data is on stable
 * storage (SQLite: WAL, synchronous=FULL). A checkpoint is one transaction:
 * all of it is visible after a crash, or none of it.
 */
#ifndef CV_STORE_H
#define CV_STORE_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

/* Instance statuses, as the API shows them. */
#define CV_ST_PENDING "pending"
#define CV_ST_RUNNING "running"
#define CV_ST_WAITING "waiting"
#define CV_ST_SUSPENDED "suspended"
#define CV_ST_COMPLETED "completed"
#define CV_ST_FAULTED "faulted"
#define CV_ST_CANCELLED "cancelled"

/*
 * One checkpoint: everything that changes together for one instance.
 * All jv fields are consumed by cv_store_checkpoint (use jv_invalid() for
 * "unchanged"/"none").
 */
struct cv_checkpoint {
    char instance[64];
    int64_t epoch;      /* the instance's epoch this writer holds; 0 = do not check */
    const char *status; /* new status (CV_ST_*), NULL = unchanged */
    jv state;           /* the continuation (cv__instance_state JSON), or invalid */
    char *state_text;   /* or the same as JSON text (cv_checkpoint_set_state),
                           written instead of `state` when set; owned */
    size_t state_len;
    jv output;          /* when completed */
    jv error;           /* when faulted */
    jv history;         /* array of events to append: {type, task?, data?} (time added by the store) */
    jv timers_add;      /* array of {key, fireAt} */
    jv timers_del;      /* array of keys */
    jv events;          /* array of {event, expiresAt}: CloudEvents the instance
                           emitted, published on the bus with this checkpoint */
    jv tasks_add;       /* array of review tasks (docs/tasks.md, "The task object")
                           the instance opens with this checkpoint; inserted in its
                           transaction, idempotent on each task's id */
    jv tasks_cancel;    /* true: cancel every open task of the instance; or an array
                           of task ids to cancel. A checkpoint that ends the instance
                           (completed, faulted, cancelled) cancels its open tasks anyway */
    jv tasks_escalate;  /* array of {id, to: {assignee?, role?}}: review tasks whose due
                           time passed, escalated in its transaction (as
                           cv_store_task_escalate; a task that ended is left alone) */
};

/* One creation of a batch (cv_store_create_instances). */
struct cv_create {
    const char *ns, *name, *version; /* version "latest"/NULL allowed */
    jv input;                        /* consumed */
    const char *idempotency_key;     /* may be NULL */
    jv history;                      /* consumed: the new instance's first history events
                                        ({type, data?}), written in the creation's
                                        transaction; invalid (or zeroed) = none */
    char id[64];                     /* out */
    int existed;                     /* out: the key was used already */
    int rc;                          /* out: 0 or a CV_* code */
    jv err;                          /* out: a message when rc != 0 (invalid before) */
};

struct cv_store;

/* Task statuses (docs/tasks.md). */
#define CV_TASK_OPEN "open"
#define CV_TASK_CLAIMED "claimed"
#define CV_TASK_COMPLETED "completed"
#define CV_TASK_CANCELLED "cancelled"
#define CV_TASK_ESCALATED "escalated"

/*
 * One change of a stored task, decided without knowing the backend
 * (src/store/tasks.c): called by update_task inside its write transaction
 * with the current task (consumed). Returns 0 with *task = the new task and
 * optionally *events (array of {event, expiresAt} to publish on the bus) and
 * *feedback (array of labeled examples, docs/tasks.md) set; or a CV_* code
 * with *err (a string, or an object {detail, errors}) and nothing written.
 */
typedef int (*cv_task_change_fn)(jv cur, void *ctx, jv *task, jv *events, jv *feedback, jv *err);

struct cv_store_ops {
    const char *name; /* "sqlite" */
    /* Opens (creating if needed) and migrates the schema. `where` is the
     * backend's location (a file path for SQLite). */
    int (*open)(const char *where, void **impl, jv *err);
    void (*close)(void *impl);

    /* ---- workflow definitions: immutable once deployed ---- */
    /* Stores the document text under ns/name/version. Deploying the same text
     * again is a no-op (0); different text for an existing version is
     * CV_ECONFLICT. */
    int (*put_workflow)(void *impl, const char *ns, const char *name, const char *version, const char *text,
                        jv *err);
    /* version "latest" (or NULL) picks the highest semantic version.
     * *out = {namespace, name, version, text, deployedAt}. */
    int (*get_workflow)(void *impl, const char *ns, const char *name, const char *version, jv *out, jv *err);
    /* *out = array of {namespace, name, version, deployedAt}, ordered. */
    int (*list_workflows)(void *impl, jv *out, jv *err);

    /* ---- instances ---- */
    /* Creates an instance (status pending) of a deployed workflow with
     * `input`. With a non-NULL idempotency key already used, creates nothing
     * and returns the existing instance's id with *existed = 1. id_out holds
     * at least 64 bytes. */
    int (*create_instance)(void *impl, const char *ns, const char *name, const char *version, jv input,
                           const char *idempotency_key, char *id_out, int *existed, jv *err);
    /* Several creations in ONE transaction (group commit of starts). Each
     * request gets its own rc/err: an undeployed workflow or a bad input fails
     * that request alone; a database failure fails every one (returned too)
     * and nothing is created. Every input is consumed. */
    int (*create_instances)(void *impl, struct cv_create *reqs, int n);
    /* *out = {id, namespace, name, version, status, input, output, error,
     * state, epoch, owner, createdAt, updatedAt}; owner is the node holding
     * its lease, or null (see "leases" below). */
    int (*get_instance)(void *impl, const char *id, jv *out, jv *err);
    /* filter: {status?, namespace?, name?}; returns up to `limit` instances
     * (without input/output/state) created after the cursor `after` (an id,
     * or NULL for the first page), newest last; *next = cursor or null. */
    int (*list_instances)(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err);
    /* Ids of instances that are pending, running or waiting (to resume at
     * start-up), oldest first. */
    int (*unfinished_instances)(void *impl, jv *out, jv *err);

    /* ---- checkpoints (group commit: the batch is ONE transaction) ---- */
    /* Applies n checkpoints atomically. A checkpoint whose epoch is set and
     * differs from the stored one fails the batch with CV_ECONFLICT. */
    int (*checkpoint)(void *impl, struct cv_checkpoint *cps, int n, jv *err);
    /* *out = array of {seq, time, type, task?, data?}, in order. */
    int (*history)(void *impl, const char *id, jv *out, jv *err);
    /* Increments and returns the instance's epoch (a new owner fences the old). */
    int (*bump_epoch)(void *impl, const char *id, int64_t *epoch, jv *err);

    /* ---- durable timers ---- */
    /* *out = array of {instance, key, fireAt} with fireAt <= now, up to limit. */
    int (*due_timers)(void *impl, int64_t now, int limit, jv *out, jv *err);
    /* The earliest fireAt of any timer, or 0 when there is none. */
    int (*next_timer)(void *impl, int64_t *fire_at, jv *err);

    /* ---- the event bus: CloudEvents kept until they expire ---- */
    /* Appends `events` (array of {event, expiresAt}, consumed) in ONE
     * transaction; *seqs = their bus sequence numbers, increasing. */
    int (*put_events)(void *impl, jv events, jv *seqs, jv *err);
    /* *out = array of {seq, event, receivedAt, origin} with seq > after and
     * expiresAt > now, in seq order, at most `limit`. origin: "api" (put_events)
     * or "emit" (published with a checkpoint). */
    int (*list_events)(void *impl, int64_t after, int64_t now, int limit, jv *out, jv *err);
    /* Deletes the events expired at `now`; *purged = how many (may be NULL). */
    int (*purge_events)(void *impl, int64_t now, int *purged, jv *err);
    /* Claims the store for this process, which will run its instances (a
     * server, `run --db`, `resume --db`): CV_EBUSY (and *err naming the
     * file) while another process holds the claim. Released by close or
     * the process's death. Reading and the API's clients need no claim.
     * PostgreSQL: CV_EUNSUPPORTED (the database is shared by nodes, which
     * hold leases instead: docs/cluster.md). */
    int (*claim)(void *impl, jv *err);
    /* Named positions on the bus that survive a restart (an event sink's
     * last delivered seq): *seq = -1 when never set. set is durable. */
    int (*get_cursor)(void *impl, const char *name, int64_t *seq, jv *err);
    int (*set_cursor)(void *impl, const char *name, int64_t seq, jv *err);

    /* ---- models (DESIGN.md decision 8; docs/models.md) ---- */
    /* Stores a new version of model `name` in ONE transaction: version =
     * 1 + the highest version the name ever had, status draft. `card` (an
     * object, consumed) is kept as given; `bytes` (borrowed) is the model
     * file. *version = the new version. */
    int (*put_model)(void *impl, const char *name, const char *kind, jv card, const void *bytes, size_t len,
                     int64_t *version, jv *err);
    /* Reads a version (version > 0), or with version 0 the one a bare NAME
     * means: the production version if there is one, else the highest that
     * is not retired. *card = the stored card with name, version, kind,
     * status, createdAt, updatedAt and size (bytes) set from the row. When
     * bytes is not NULL, *bytes (malloc'ed, caller frees) and *len receive
     * the model file. CV_ENOTFOUND when there is no such model/version. */
    int (*get_model)(void *impl, const char *name, int64_t version, jv *card, void **bytes, size_t *len, jv *err);
    /* *out = array of cards (as get_model, without bytes) of every version,
     * ordered by name, then version. */
    int (*list_models)(void *impl, jv *out, jv *err);
    /* Moves a version to `status` in ONE transaction, if the move is allowed
     * (cv__store_model_move_ok: draft -> approved -> production, production
     * -> approved, anything but retired -> retired); promoting to production
     * moves the name's previous production version back to approved.
     * CV_ENOTFOUND, or CV_ECONFLICT for a move that is not allowed. */
    int (*set_model_status)(void *impl, const char *name, int64_t version, const char *status, jv *err);
    /* *out = where a bare NAME's traffic goes besides production:
     * {canary: {version, share} | null, shadow: {version} | null}.
     * CV_ENOTFOUND when no version of `name` exists. */
    int (*get_model_routing)(void *impl, const char *name, jv *out, jv *err);
    /* Sets (version > 0) or clears (version 0) the canary (`which`
     * "canary", with `share` in [0, 1]) or the shadow ("shadow") of `name`
     * in ONE transaction; *out = the routing after. A canary must be an
     * approved version, a shadow any version but the production one, and
     * neither retired: CV_ECONFLICT otherwise (nothing changed),
     * CV_ENOTFOUND for an unknown name or version. set_model_status drops a
     * version that is retired or promoted from its name's routing. */
    int (*set_model_routing)(void *impl, const char *name, const char *which, int64_t version, double share,
                             jv *out, jv *err);
    /* *gen = the registry's generation: it grows with every change of a
     * model's versions, statuses or routing, made by any process. */
    int (*model_generation)(void *impl, int64_t *gen, jv *err);

    /* ---- review tasks (DESIGN.md decision 9; docs/tasks.md) ---- */
    /* Inserts a task (object with id, consumed) unless one with that id
     * exists (*existed = 1 then, nothing changed). */
    int (*put_task)(void *impl, jv task, int *existed, jv *err);
    /* *out = the task object. CV_ENOTFOUND. */
    int (*get_task)(void *impl, const char *id, jv *out, jv *err);
    /* filter: {status?, role?, assignee?, namespace?, name?, instance?};
     * ordered by priority (highest first), then due time (none last), then
     * opening order; up to `limit` after the cursor `after` (an opaque string
     * from a previous *next, or NULL); *next = cursor or null. */
    int (*list_tasks)(void *impl, jv filter, int limit, const char *after, jv *out, jv *next, jv *err);
    /* In ONE transaction: reads task `id`, calls change(), writes the new
     * task, publishes its events (origin "api", as received events) and
     * stores its feedback examples. *out = the new task. */
    int (*update_task)(void *impl, const char *id, cv_task_change_fn change, void *ctx, jv *out, jv *err);
    /* Counters for metrics: *out = {open: {role: n}, completed: {"ns/name": n},
     * reviewed: {"ns/name": instances with a task}, instances: {"ns/name": n},
     * models: {"name@version": {reviewed, overridden}}}. */
    int (*task_stats)(void *impl, jv *out, jv *err);
    /* *out = array of feedback examples (oldest first), of one model name
     * (any version) or of all when model is NULL. */
    int (*list_feedback)(void *impl, const char *model, jv *out, jv *err);

    /* ---- leases: several nodes running one store's instances (DESIGN.md
     * decision 6; docs/cluster.md). An unfinished instance (pending, running,
     * waiting) has an owner (a node's name, or none) and a lease end; the
     * node that holds it renews the lease, and a node that takes it from
     * another bumps its epoch, so that the old owner's checkpoints (which
     * carry the epoch it took) are refused (CV_ECONFLICT). Times are the
     * caller's wall ms: the nodes' clocks must agree to well within a lease.
     * A backend without them leaves these NULL (CV_EUNSUPPORTED). ---- */
    /* Instances this handle creates from now on are owned by `node` (NULL:
     * by none), leased until creation + lease_ms, at epoch 1 (unowned ones
     * start at epoch 0, as before). */
    int (*set_node)(void *impl, const char *node, int64_t lease_ms);
    /* In ONE transaction, takes up to `limit` unfinished instances whose
     * lease ended before `now` (and, with `reclaim`, those `node` owns
     * whatever their lease: a node starting again takes its own back at
     * once), skipping rows another transaction holds: owner = node, lease
     * end = now + lease_ms, epoch + 1. *out = array of {id, epoch}. */
    int (*lease_acquire)(void *impl, const char *node, int64_t now, int64_t lease_ms, int limit, int reclaim,
                         jv *out, jv *err);
    /* Takes instance `id` whatever its lease (a node asked to cancel,
     * suspend or resume an instance another node holds): owner = node,
     * lease end = now + lease_ms, epoch + 1 (*epoch). CV_ENOTFOUND. */
    int (*lease_take)(void *impl, const char *id, const char *node, int64_t now, int64_t lease_ms, int64_t *epoch,
                      jv *err);
    /* Extends to now + lease_ms the lease of every unfinished instance
     * `node` owns; *held = how many (may be NULL). */
    int (*lease_renew)(void *impl, const char *node, int64_t now, int64_t lease_ms, int64_t *held, jv *err);
    /* *out = array of the ids of the instances `node` owns that have not
     * ended (after its leases lapsed: what it may keep). */
    int (*lease_owned)(void *impl, const char *node, jv *out, jv *err);
    /* Ends the leases of `node` (a clean stop): others may take its
     * unfinished instances at once. */
    int (*lease_release)(void *impl, const char *node, jv *err);
    /* A named lease (one node does a cluster-wide job: event sinks, the
     * purge of expired events): in ONE transaction, when nobody holds
     * `name`, its lease ended before `now`, or `node` holds it, `node` holds
     * it until now + lease_ms and *held = 1; else *held = 0. */
    int (*lease_name)(void *impl, const char *name, const char *node, int64_t now, int64_t lease_ms, int *held,
                      jv *err);
    /* Waits up to timeout_ms for another process's announcement (PostgreSQL
     * LISTEN/NOTIFY): *what = CV_WATCH_BUS (events were put on the bus),
     * CV_WATCH_LEASE (a node released its leases), both, or 0 (timeout).
     * Uses a connection of its own: call it from one thread, without the
     * handle's other calls waiting on it. NULL when the backend has no
     * notifications (the engine polls). */
    int (*watch)(void *impl, int timeout_ms, int *what, jv *err);
};

#define CV_WATCH_BUS 1
#define CV_WATCH_LEASE 2

/* The public face: a store handle (backend + its state). */
typedef struct cv_store cv_store;

/* Opens a store: "sqlite:PATH" or a plain path (SQLite), or
 * "postgres://USER[:PASSWORD]@HOST:PORT/DB[?PARAMS]" / "postgresql://..."
 * (PostgreSQL, several nodes; libpq reads the URI as given). */
int cv_store_open(const char *url, cv_store **out, jv *err);
void cv_store_close(cv_store *s);
const char *cv_store_backend(const cv_store *s);

int cv_store_put_workflow(cv_store *s, const char *ns, const char *name, const char *version, const char *text,
                          jv *err);
int cv_store_get_workflow(cv_store *s, const char *ns, const char *name, const char *version, jv *out, jv *err);
int cv_store_list_workflows(cv_store *s, jv *out, jv *err);
int cv_store_create_instance(cv_store *s, const char *ns, const char *name, const char *version, jv input,
                             const char *idempotency_key, char *id_out, int *existed, jv *err);
int cv_store_create_instances(cv_store *s, struct cv_create *reqs, int n);
int cv_store_get_instance(cv_store *s, const char *id, jv *out, jv *err);
int cv_store_list_instances(cv_store *s, jv filter, int limit, const char *after, jv *out, jv *next, jv *err);
int cv_store_unfinished_instances(cv_store *s, jv *out, jv *err);
int cv_store_checkpoint(cv_store *s, struct cv_checkpoint *cps, int n, jv *err);
int cv_store_history(cv_store *s, const char *id, jv *out, jv *err);
int cv_store_bump_epoch(cv_store *s, const char *id, int64_t *epoch, jv *err);
int cv_store_due_timers(cv_store *s, int64_t now, int limit, jv *out, jv *err);
int cv_store_next_timer(cv_store *s, int64_t *fire_at, jv *err);
int cv_store_put_events(cv_store *s, jv events, jv *seqs, jv *err);
int cv_store_list_events(cv_store *s, int64_t after, int64_t now, int limit, jv *out, jv *err);
int cv_store_purge_events(cv_store *s, int64_t now, int *purged, jv *err);
int cv_store_claim(cv_store *s, jv *err);
int cv_store_get_cursor(cv_store *s, const char *name, int64_t *seq, jv *err);
int cv_store_set_cursor(cv_store *s, const char *name, int64_t seq, jv *err);

/* Model statuses (docs/models.md, "Registry"). */
#define CV_MODEL_DRAFT "draft"
#define CV_MODEL_APPROVED "approved"
#define CV_MODEL_PRODUCTION "production"
#define CV_MODEL_RETIRED "retired"

/* Models: see the ops above. A name is 1..128 of [A-Za-z0-9._-] starting
 * with a letter or digit (so that NAME@VERSION is unambiguous); a kind is
 * 1..32 of [a-z0-9_]; a card is an object. */
int cv_store_put_model(cv_store *s, const char *name, const char *kind, jv card, const void *bytes, size_t len,
                       int64_t *version, jv *err);
int cv_store_get_model(cv_store *s, const char *name, int64_t version, jv *card, void **bytes, size_t *len, jv *err);
int cv_store_list_models(cv_store *s, jv *out, jv *err);
int cv_store_set_model_status(cv_store *s, const char *name, int64_t version, const char *status, jv *err);
int cv_store_get_model_routing(cv_store *s, const char *name, jv *out, jv *err);
int cv_store_set_model_routing(cv_store *s, const char *name, const char *which, int64_t version, double share,
                               jv *out, jv *err);
int cv_store_model_generation(cv_store *s, int64_t *gen, jv *err);
/* How many registry changes (new versions, status moves, routing) were made
 * through this handle: an atomic read, no store access. Together with
 * cv_store_model_generation it lets a cache of resolved models notice this
 * process's changes at once and other processes' on its next read. */
long long cv_store_model_changes(const cv_store *s);

/* Review tasks: see the ops above and docs/tasks.md. */
int cv_store_put_task(cv_store *s, jv task, int *existed, jv *err);
int cv_store_get_task(cv_store *s, const char *id, jv *out, jv *err);
int cv_store_list_tasks(cv_store *s, jv filter, int limit, const char *after, jv *out, jv *next, jv *err);
int cv_store_update_task(cv_store *s, const char *id, cv_task_change_fn change, void *ctx, jv *out, jv *err);
int cv_store_task_stats(cv_store *s, jv *out, jv *err);
int cv_store_list_feedback(cv_store *s, const char *model, jv *out, jv *err);

/* Leases: see the ops above and docs/cluster.md. A node's name is 1..128
 * printable ASCII characters; lease_ms >= 1; limit >= 1. */
int cv_store_set_node(cv_store *s, const char *node, int64_t lease_ms);
int cv_store_lease_acquire(cv_store *s, const char *node, int64_t now, int64_t lease_ms, int limit, int reclaim,
                           jv *out, jv *err);
int cv_store_lease_take(cv_store *s, const char *id, const char *node, int64_t now, int64_t lease_ms, int64_t *epoch,
                        jv *err);
int cv_store_lease_renew(cv_store *s, const char *node, int64_t now, int64_t lease_ms, int64_t *held, jv *err);
int cv_store_lease_owned(cv_store *s, const char *node, jv *out, jv *err);
int cv_store_lease_release(cv_store *s, const char *node, jv *err);
int cv_store_lease_name(cv_store *s, const char *name, const char *node, int64_t now, int64_t lease_ms, int *held,
                        jv *err);
/* 1 when the store announces changes (watch), else 0. */
int cv_store_can_watch(const cv_store *s);
int cv_store_watch(cv_store *s, int timeout_ms, int *what, jv *err);

/*
 * The task rules, the same for every backend (src/store/tasks.c). `now` is
 * wall milliseconds; `user` the acting person (borrowed, non-empty).
 *
 * cv_task_new checks and completes a task definition (consumed): fills id
 * (a new UUID when absent), status open, openedAt, history; CV_EINVAL with
 * *err when a field has the wrong shape (the form included).
 *
 * claim: open/escalated -> claimed by user until now + claim_ms; the same
 * user renews; another user's claim that expired is taken over.
 * release: the claimer (or anyone once the claim expired) -> open.
 * complete: body {decision, fields, comment} (consumed), validated against
 * the form (CV_EINVAL with *err = {detail, errors: [{field, message}]});
 * refused with CV_ECONFLICT when completed or cancelled, or claimed by
 * someone else whose claim has not expired. Publishes the completion event
 * (retention_ms on the bus) and the feedback examples.
 * reassign: body {assignee?, role?} (consumed): drops any claim, -> open.
 * Every one returns 0 with *out = the new task, CV_ENOTFOUND, CV_ECONFLICT
 * (*err says why) or a store code.
 */
int cv_task_new(jv def, int64_t now, jv *out, jv *err);
/* An RFC 3339 date-time as wall ms into *ms: 0, or -1 when it is not one. */
int cv__task_parse_time(const char *s, int64_t *ms);
int cv_store_task_claim(cv_store *s, const char *id, const char *user, int64_t now, int64_t claim_ms, jv *out,
                        jv *err);
int cv_store_task_release(cv_store *s, const char *id, const char *user, int64_t now, jv *out, jv *err);
int cv_store_task_complete(cv_store *s, const char *id, const char *user, jv body, int64_t now,
                           int64_t retention_ms, jv *out, jv *err);
int cv_store_task_reassign(cv_store *s, const char *id, const char *user, jv body, int64_t now, jv *out, jv *err);
/* The due time passed (for the engine's escalation timer): `to` (consumed;
 * {assignee?, role?}, or {} to keep them) reassigns, status escalated (in the
 * queue and claimable like open), claim dropped; CV_ECONFLICT when the task
 * was completed or cancelled meanwhile. */
int cv_store_task_escalate(cv_store *s, const char *id, jv to, int64_t now, jv *out, jv *err);
/* Validates a completion body (borrowed) against a form (borrowed): *errors
 * = array of {field, message} (empty when valid); *fields = the final field
 * values (prefilled values kept where the body gives none). */
void cv_task_validate(jv form, jv body, jv *errors, jv *fields);

/* The completion event's type (docs/tasks.md). */
#define CV_TASK_COMPLETED_TYPE "io.conveyor.task.completed.v1"

/* Initialises a checkpoint for `instance` with every jv field invalid. */
void cv_checkpoint_init(struct cv_checkpoint *cp, const char *instance);
/* Frees what a checkpoint still holds (after a failed or skipped commit). */
void cv_checkpoint_cleanup(struct cv_checkpoint *cp);
/*
 * Serialises `state` (consumed) into cp->state_text, the form the store
 * writes, and drops cp->state: a scheduler calls it on the thread that took
 * the position, so that the commit thread neither serialises nor frees the
 * value (and no jv crosses threads). 0, CV_ENOMEM, or CV_EINVAL (nested
 * deeper than the store accepts).
 */
int cv_checkpoint_set_state(struct cv_checkpoint *cp, jv state);

/* The backends' tables (src/store/sqlite.c, src/store/postgres.c). */
extern const struct cv_store_ops cv__store_sqlite;
extern const struct cv_store_ops cv__store_postgres;

#endif
