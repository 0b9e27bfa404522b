/*
 * model.h — the immutable task tree of a loaded workflow definition.
 *
 * Built once by src/dsl/build.c from a validated document; afterwards only
 * read (by any number of threads). Every expression-bearing value is a
 * template (struct cv_tmpl) whose expressions live in the definition's
 * expression set. Tasks are addressed by their JSON-pointer reference
 * ("/do/0/tryGetPet/try/0/getPet"), which is also how a serialized
 * continuation names them (DESIGN.md decision 3).
 */
#ifndef CV_DSL_MODEL_H
#define CV_DSL_MODEL_H

#include "common/cron.h"
#include "expr/expr.h"

#include <jv.h>
#include <stdint.h>

/*
 * A value with expressions inside: `konst` with the value at each `path`
 * replaced by the result of expression `expr`. When `whole` >= 0 the value
 * is that expression alone. A template without expressions is just `konst`.
 */
struct cv_tmpl {
    jv konst;
    int whole;
    int nsubs;
    struct cv_sub {
        jv path; /* array of keys / indexes */
        int expr;
    } *subs;
};

enum cv_task_kind {
    CV_T_CALL_HTTP,
    CV_T_CALL_OPENAPI,
    CV_T_CALL_FUNCTION, /* a use.functions entry */
    CV_T_CALL_REMOTE,   /* a function loaded at run time: a URL or name:version@catalog */
    CV_T_CALL_UNSUPPORTED, /* grpc, asyncapi, a2a, mcp */
    CV_T_CALL_CATALOG,  /* a function of the runtime's default catalog (classify...) */
    CV_T_DO,
    CV_T_FORK,
    CV_T_EMIT,
    CV_T_FOR,
    CV_T_LISTEN,
    CV_T_RAISE,
    CV_T_RUN_PROCESS, /* shell and script */
    CV_T_RUN_WORKFLOW,
    CV_T_RUN_CONTAINER,
    CV_T_SET,
    CV_T_SWITCH,
    CV_T_TRY,
    CV_T_WAIT,
};

/* Flow directives (`then`). */
enum cv_then { CV_THEN_CONTINUE, CV_THEN_EXIT, CV_THEN_END, CV_THEN_GOTO };

struct cv_task;

struct cv_tasklist {
    int n;
    struct cv_task **items;
    char *ref; /* pointer of the list itself, e.g. "/do" */
};

/* input / output / export of a task or the workflow. */
struct cv_dataflow {
    int has_expr;        /* from / as given */
    struct cv_tmpl expr; /* always an expression when a string */
    jv schema;           /* JSON Schema or jv_null() */
};

struct cv_duration {
    int set;
    int64_t ms;        /* literal duration */
    int expr;          /* or an expression giving ISO 8601 / inline (>= 0) */
};

struct cv_retry {
    int set;
    int when, except_when; /* expressions or -1 */
    struct cv_duration delay;
    int backoff; /* 0 constant, 1 linear, 2 exponential */
    int limit_count; /* -1 unlimited */
    int64_t limit_attempt_ms; /* 0 none */
    int64_t limit_total_ms;   /* 0 none */
    int64_t jitter_from_ms, jitter_to_ms;
};

struct cv_switch_case {
    char *name;
    int when; /* -1: the default case */
    int then_kind, then_target;
};

struct cv_extension {
    char *name;
    char *extend; /* task kind name or "all" */
    int when;     /* -1 */
    struct cv_tasklist *before, *after;
};

/* One event filter of a listen or `schedule.on` strategy. */
/* `call: review` (docs/tasks.md): the engine opens a review task and waits
 * for its completion event, like a listen. */
#define CV_REVIEW_FUNCTION "review"
#define CV_REVIEW_COMPLETED_TYPE "io.conveyor.task.completed.v1"

struct cv_event_filter {
    jv with; /* attributes matched literally (equal, or a full-match regex for strings) */
    int nexprs;
    struct cv_attr_expr {
        char *attr;
        int expr; /* a `${ }` predicate with `.` = the attribute's value */
    } *exprs;
    int ncorr;
    struct cv_correlation {
        char *key;
        int from;              /* always an expression; `.` = the event */
        int has_expect;
        struct cv_tmpl expect; /* literal or `${ }` on the task input */
    } *corr;
};

enum cv_listen_mode { CV_LISTEN_ONE, CV_LISTEN_ANY, CV_LISTEN_ALL };
enum cv_read_mode { CV_READ_DATA, CV_READ_ENVELOPE, CV_READ_RAW };

/* An event consumption strategy: one / any / all, and until (any only). */
struct cv_strategy {
    int mode;
    int n;
    struct cv_event_filter *filters;
    int until_expr;            /* -1; `.` = the events consumed so far */
    struct cv_strategy *until; /* a nested strategy, or NULL */
};

struct cv_task {
    int kind;
    char *name;
    char *ref;
    const char *kind_name; /* "call", "set", ... (for extensions and messages) */
    jv def; /* the task's definition object, as written */
    int index;
    int if_expr; /* -1 */
    struct cv_dataflow input, output, exp;
    struct cv_duration timeout;
    int then_kind, then_target;
    int nexts;                       /* extensions that apply to this kind */
    const struct cv_extension **exts;
    union {
        struct { struct cv_tasklist *list; } do_;
        struct { struct cv_tmpl value; } set;
        struct { int n; struct cv_switch_case *cases; } sw;
        struct {
            char *each, *at;
            int in_expr, while_expr;
            struct cv_tasklist *body;
        } for_;
        struct { struct cv_tasklist *branches; int compete; } fork;
        struct {
            struct cv_tasklist *body;
            jv with;          /* error filter: {type, status, instance, title, details} literals, or null */
            int when, except_when;
            char *as;
            struct cv_retry retry;
            struct cv_tasklist *catch_do; /* may be NULL */
        } try_;
        struct { struct cv_tmpl error; } raise;
        struct { struct cv_duration duration; } wait;
        struct { struct cv_tmpl event; } emit;
        struct {
            struct cv_strategy to;
            int read; /* CV_READ_* */
            char *item, *at; /* foreach variable names ("item", "index" by default) */
            struct cv_tasklist *foreach_do; /* may be NULL */
            struct cv_dataflow foreach_output, foreach_export;
        } listen;
        struct {
            struct cv_tmpl args;              /* evaluated `with` / `run` object */
            const struct cv_task *function;   /* CV_T_CALL_FUNCTION */
            char *locator;                    /* CV_T_CALL_REMOTE: the function's URL */
            const char *catalog;              /* CV_T_CALL_CATALOG: its name (static) */
            struct cv_task *wait;             /* `call: review`: the listen for the task's
                                                 completion (built here; ref REF/review) */
        } effect;
    } u;
};

struct cv_workflow {
    jv doc;
    jv locs;
    char *file;
    char *ns, *name, *version;
    struct cv_exprset *exprs;
    struct cv_tasklist *root;
    struct cv_dataflow input, output;
    struct cv_duration timeout;
    int nfunctions;
    struct cv_task **functions;
    int nextensions;
    struct cv_extension *extensions;
    jv secret_names; /* use.secrets */
    int loose;       /* evaluate.mode: loose */
    /* schedule: run by the engine's schedule thread (src/engine/schedule.c) */
    struct cv_schedule {
        int set;
        int64_t every_ms, after_ms; /* 0 = none */
        int has_cron;
        struct cv_cron cron;
        int has_on;
        struct cv_strategy on;
    } schedule;
    /* every task and task list by reference (restoring a continuation) */
    jv ref_index;    /* object: ref -> index into refs */
    int nrefs, caprefs;
    struct cv_ref { int is_list; const void *p; } *refs;
};

/* The task or task list named by `ref` in `wf`, or NULL. */
const struct cv_task *cv__workflow_task(const struct cv_workflow *wf, const char *ref);
const struct cv_tasklist *cv__workflow_list(const struct cv_workflow *wf, const char *ref);

/*
 * Builds the tree of `wf` from wf->doc (already validated). Expressions are
 * registered in wf->exprs and compiled. Problems (refused or non-compiling
 * expressions, inconsistencies) are appended to *errors as {pointer, message}.
 * Returns 0, CV_EVALIDATE or CV_ENOMEM.
 */
int cv__workflow_build(struct cv_workflow *wf, jv *errors);

/* cv_workflow_load for a document already parsed: validates, builds and
 * compiles. Consumes `doc` and `locs` (a pointer → [line, column] object, or
 * jv_null() when unknown). Same results as cv_workflow_load. */
int cv__workflow_from_jv(jv doc, jv locs, const char *name, struct cv_workflow **out, jv *diags);
void cv__workflow_release(struct cv_workflow *wf);

/*
 * Evaluates a template. `dot` consumed. Returns 0 (*out = value) or CV_EFAULT
 * (*out = error descriptor).
 */
int cv__tmpl_eval(struct cv_exprset *s, const struct cv_tmpl *t, jv dot, struct cv_evalenv *env, jv *out);
/* Does the template need evaluation (has expressions)? */
static inline int cv__tmpl_dynamic(const struct cv_tmpl *t) { return t->whole >= 0 || t->nsubs > 0; }

/* Is this string a `${ ... }` runtime expression? If so, and `inner` is not
 * NULL, sets *inner to a malloc'd copy of the text between the braces. */
int cv__is_runtime_expr(const char *s, char **inner);

#endif
