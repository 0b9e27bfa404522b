/*
 * expr.h — runtime expressions: registration, one compile per definition,
 * evaluation.
 *
 * Every `${...}` (and every always-an-expression field) of a workflow is
 * registered here while the task tree is built. All of them are then compiled
 * into ONE jq program (DESIGN.md decision 2): a dispatch on the expression's
 * index with the runtime arguments bound from an input array. A jq_state is not
 * thread-safe, so compiled states are pooled and checked out per evaluation;
 * more are compiled lazily when threads contend. Simple forms (`.`, `.a.b[0]`,
 * `$var.path`, literals) never reach jq at all.
 *
 * Nothing else in conveyor may call libjq's compiler: this file owns the
 * sandbox (no $ENV/env, input/inputs, modules, halt, or constructs that libjq
 * cannot interrupt).
 */
#ifndef CV_EXPR_H
#define CV_EXPR_H

#include <jv.h>

/* The runtime-expression arguments, in the order the bundle binds them. */
enum cv_var {
    CV_VAR_CONTEXT,
    CV_VAR_INPUT,
    CV_VAR_OUTPUT,
    CV_VAR_SECRETS,
    CV_VAR_TASK,
    CV_VAR_WORKFLOW,
    CV_VAR_RUNTIME,
    CV_VAR_AUTHORIZATION,
    CV_VAR_COUNT
};

/*
 * What an evaluation sees. `vars[i]` are borrowed; a slot holding jv_invalid()
 * is built on demand through `materialize(ud, i)` (returns a new reference, or
 * jv_null()), so that costly descriptors such as $task are only built for the
 * expressions that use them. `scope` (borrowed, an object or jv_null()) holds
 * the scope variables ($item, $index, $error, ...).
 */
struct cv_evalenv {
    jv vars[CV_VAR_COUNT];
    jv scope;
    jv (*materialize)(void *ud, int var);
    void *ud;
};

struct cv_exprset;

struct cv_exprset *cv__exprset_new(void);
void cv__exprset_free(struct cv_exprset *s);

/*
 * Registers the jq text of one expression (without `${ }`), used at
 * `pointer` (JSON pointer, for messages), seeing the scope variables named in
 * `scopevars` (borrowed jv array of strings, or jv_null()). Returns the
 * expression's index (>= 0), or a negative CV_* code with a message appended
 * to *errors ({pointer, message}) when the text is refused before compiling
 * (sandbox rules, constructs that could hang the evaluator).
 */
int cv__exprset_add(struct cv_exprset *s, const char *text, jv scopevars, const char *pointer,
                    jv *errors);

/*
 * Loose mode (evaluate.mode: loose): registers `text` only if it is jq that
 * compiles on its own (checked at once, about 25 ms); returns its index,
 * CV_EINVAL when the string must stay a literal, or CV_ENOMEM. A loose expression whose evaluation
 * fails yields the text itself instead of an error.
 */
int cv__exprset_add_loose(struct cv_exprset *s, const char *text, jv scopevars, const char *pointer);

/*
 * Compiles every registered expression into the bundle. Returns 0, or
 * CV_EVALIDATE with one {pointer, message} per failing expression appended
 * to *errors. Must be called once, before any evaluation.
 */
int cv__exprset_compile(struct cv_exprset *s, jv *errors);

/* Number of registered expressions, and how many take the fast path. */
int cv__exprset_count(const struct cv_exprset *s);
int cv__exprset_fast_count(const struct cv_exprset *s);
/* The source text of an expression (borrowed). */
const char *cv__expr_text(const struct cv_exprset *s, int idx);

/*
 * Evaluates expression `idx` with `.` = dot (consumed). Returns 0 and the
 * first result in *out (null when it produced none), or CV_EFAULT with *out
 * an expression error descriptor (type expression, status 400, detail = jq's
 * message; the caller sets `instance`).
 *
 * Several threads may evaluate one compiled set at once. *out shares no
 * value with the set or its jq states (libjq 1.6 reference counts are not
 * atomic), so the caller may keep it, free it or hand it to another thread;
 * it may share the caller's own values (dot, env), which must not be in use
 * on another thread during the call.
 */
int cv__expr_eval(struct cv_exprset *s, int idx, jv dot, struct cv_evalenv *env, jv *out);

/* jq truthiness: everything but false and null. Consumes v. */
int cv__jv_truthy(jv v);

#endif
