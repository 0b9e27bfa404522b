/*
 * conveyor.h — the one public header for embedding conveyor.
 *
 * conveyor loads CNCF Serverless Workflow DSL 1.0 documents, validates them,
 * compiles their jq expressions once, and runs them. Handles are opaque;
 * values cross this boundary as jq `jv` (DESIGN.md decision 1): every function
 * that takes a `jv` consumes it, and every `jv` returned belongs to the caller.
 */
#ifndef CONVEYOR_H
#define CONVEYOR_H

#include <jv.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CV_VERSION "0.1.0"

/* One error list for the whole library (libuv's UV_ERRNO_MAP pattern). */
#define CV_ERRNO_MAP(X)                                                  \
    X(OK, 0, "success")                                                  \
    X(ENOMEM, -1, "out of memory")                                       \
    X(EINVAL, -2, "invalid argument")                                    \
    X(EIO, -3, "input/output error")                                     \
    X(EPARSE, -4, "document could not be parsed")                        \
    X(EVALIDATE, -5, "document is not a valid workflow")                 \
    X(ENOTFOUND, -6, "not found")                                        \
    X(EAGAIN, -7, "resource temporarily unavailable, try again")         \
    X(EBUSY, -8, "busy")                                                 \
    X(ECONFLICT, -9, "conflict")                                         \
    X(ETIMEDOUT, -10, "timed out")                                       \
    X(ECANCELED, -11, "cancelled")                                       \
    X(EFAULT, -12, "workflow faulted")                                   \
    X(EUNSUPPORTED, -13, "not supported here")

typedef enum {
#define CV_ERR_ENUM(name, code, text) CV_##name = code,
    CV_ERRNO_MAP(CV_ERR_ENUM)
#undef CV_ERR_ENUM
} cv_status;

/* A static, human-readable text for a cv_status code. Never NULL. */
const char *cv_strerror(int code);

/* ---- workflow definitions ------------------------------------------------ */

typedef struct cv_workflow cv_workflow;

/*
 * Loads, validates and compiles a workflow document (YAML 1.2 or JSON).
 * `name` is used in messages (usually the file path). On success returns CV_OK
 * and *out owns the definition (free with cv_workflow_free). On failure
 * returns CV_EPARSE or CV_EVALIDATE and, when `diags` is not NULL, sets *diags
 * to a jv array of {file, line, column, path, message} (line/column 1-based,
 * 0 when unknown; path like "do[2].route.switch[0]").
 */
int cv_workflow_load(const char *text, size_t len, const char *name, cv_workflow **out,
                     jv *diags);
int cv_workflow_load_file(const char *path, cv_workflow **out, jv *diags);
void cv_workflow_free(cv_workflow *wf);

/* Borrowed views of a loaded definition; valid while the workflow lives. */
const char *cv_workflow_namespace(const cv_workflow *wf);
const char *cv_workflow_name(const cv_workflow *wf);
const char *cv_workflow_version(const cv_workflow *wf);
/* The parsed document as JSON (a new reference). */
jv cv_workflow_document(const cv_workflow *wf);

/* Formats one diagnostic as "file:line:column: path: message" (caller frees). */
char *cv_diag_format(jv diag);

/* ---- the runtime: configuration shared by runs --------------------------- */

typedef struct cv_runtime cv_runtime;

int cv_runtime_new(cv_runtime **out);
void cv_runtime_free(cv_runtime *rt);

/*
 * Host override, like curl's --connect-to: "host=addr:port". Requests to a
 * mapped host go to addr:port over plain HTTP, keeping the original URL and
 * Host header. "*=addr:port" maps every host. Repeatable.
 */
int cv_runtime_map_host(cv_runtime *rt, const char *spec);
/* When set, a request to an unmapped host fails at once (tests never leak). */
void cv_runtime_deny_unmapped(cv_runtime *rt, int deny);
/* Secrets visible as $secrets (object); consumes `secrets`. */
int cv_runtime_set_secrets(cv_runtime *rt, jv secrets);
/*
 * Makes a definition available to `run: workflow` by namespace/name/version.
 * The runtime takes ownership of `wf`.
 */
int cv_runtime_add_workflow(cv_runtime *rt, cv_workflow *wf);
/* Loads every *.yaml / *.yml / *.json file of a directory as subflows. */
int cv_runtime_add_workflow_dir(cv_runtime *rt, const char *dir, jv *diags);
/* Multiplies every wait, retry delay and timeout (tests use 0.001). */
void cv_runtime_set_time_scale(cv_runtime *rt, double scale);
/* Emitted CloudEvents are written to this stream, one JSON line each (NULL: none). */
void cv_runtime_set_event_stream(cv_runtime *rt, void *file /* FILE* */);
/* Record a trace of task executions in run reports (off by default). */
void cv_runtime_set_trace(cv_runtime *rt, int on);
/*
 * The longest an effect (HTTP call, child process, fetch) may run when no task
 * or workflow timeout bounds it sooner: default 300000 ms; 0 = unbounded (not
 * recommended). Not affected by the time scale. Expiry raises a timeout error.
 */
void cv_runtime_set_effect_timeout(cv_runtime *rt, long long ms);
/*
 * Called on the running thread whenever an instance is about to block (an
 * effect in flight, a timer, fork branches) after having progressed, with the
 * instance's position as JSON (borrowed: copy what you keep) — fibers of
 * frames naming tasks by reference, with their data, loop and retry counters,
 * wall-clock timers: what a durable store keeps at each checkpoint (DESIGN.md
 * decision 3), and what cv_run_ex can continue from.
 */
typedef void (*cv_checkpoint_fn)(void *ud, jv state);
void cv_runtime_on_checkpoint(cv_runtime *rt, cv_checkpoint_fn fn, void *ud);

/* ---- running ------------------------------------------------------------- */

/*
 * Threads: jq 1.6's `jv` reference counts are not atomic, so a cv_workflow and
 * a cv_runtime may be used by one cv_run at a time. Concurrent runs need
 * their own loaded copies (load the document once per thread).
 *
 * Runs one instance of `wf` to its end (completed, faulted or cancelled) on the
 * calling thread; effects run concurrently on helper threads. Consumes `input`.
 * *report is set to an object:
 *   { "id", "status": "completed"|"faulted"|"cancelled", "output", "error",
 *     "trace": [ {"name","reference","status","output"?,"error"?} ],
 *     "notes": [ {type, task, data} ]  (only when there are any: the default
 *               catalog's predictions, for the instance's history) }
 * Returns CV_OK when the instance completed, CV_EFAULT when it faulted (the
 * error descriptor is report.error), or another code when it could not run.
 */
int cv_run(cv_runtime *rt, const cv_workflow *wf, jv input, jv *report);

typedef struct cv_run_options {
    /* The instance id (at most 63 bytes); NULL: a new UUID. */
    const char *id;
    /*
     * A position from a checkpoint to continue from (consumed; jv_invalid()
     * or jv_null() to start afresh, in which case `input` is used). Effects
     * that were in flight at that checkpoint are issued again with the same
     * idempotency key; timers keep their wall-clock time.
     */
    jv resume;
} cv_run_options;

/* cv_run with options (opts may be NULL). A position that does not fit the
 * definition (another version, say) fails with CV_EINVAL and report.error. */
int cv_run_ex(cv_runtime *rt, const cv_workflow *wf, jv input, cv_run_options *opts, jv *report);

#ifdef __cplusplus
}
#endif
#endif
