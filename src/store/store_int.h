/*
 * store_int.h — internals shared by the store's backends (sqlite.c, later postgres.c),
 * never included above the store interface.
 */
#ifndef CV_STORE_INT_H
#define CV_STORE_INT_H

#include <jv.h>
#include <stddef.h>

/*
 * The deepest nesting of arrays and objects a stored value may have: libjq
 * 1.6's parser refuses deeper text ("Exceeds depth limit for parsing"), so a
 * deeper value could be written but never read back.
 */
#define CV_STORE_JSON_MAX_DEPTH 256

/*
 * Serialises `v` (borrowed) as compact JSON text that jv_parse reads back
 * equal (jv_equal): the store's format for every stored value. It does what
 * jv_dump_string(v, 0) does at a fraction of the cost (libjq 1.6 appends a
 * string one character at a time; this copies runs of plain bytes), because
 * it runs for every checkpoint. Numbers are written as integers when integral
 * and below 1e17, else with the fewest of 15 or 17 significant digits that
 * read back exactly; NaN is null and infinities are +-DBL_MAX, as in jq.
 * An invalid jv is written as null.
 *
 * Returns 0 with *out (NUL-terminated, caller frees with free()) and *len,
 * CV_EINVAL when the value nests deeper than CV_STORE_JSON_MAX_DEPTH, or
 * CV_ENOMEM.
 */
int cv__store_json_dump(jv v, char **out, size_t *len);

/*
 * 1 when a model version may move from status `from` to `to` (store.h,
 * set_model_status): draft -> approved, approved -> production,
 * production -> approved, and any status but retired -> retired. One rule
 * for every backend (store.c).
 */
int cv__store_model_move_ok(const char *from, const char *to);

/* Why version status `status` may not be a name's canary (canary = 1) or
 * shadow, or NULL when it may (set_model_routing; one rule for every
 * backend). */
const char *cv__store_routing_refusal(const char *status, int canary);
/* The routing after setting the canary (canary = 1; version 0 clears it,
 * share its share) or the shadow of a name whose routing is `cur`
 * (borrowed, as get_model_routing gives it): canary version, share, and
 * shadow version (0: none). */
#include <stdint.h>
void cv__store_routing_merge(jv cur, int canary, int64_t version, double share, int64_t *cv, double *cs, int64_t *sv);

/*
 * Review tasks (tasks.c), for the backends: an RFC 3339 date-time as wall
 * ms (0, or -1 when it is not one), and a task's due time in wall ms (0 when
 * it has none).
 */
#include <stdint.h>
int cv__task_parse_time(const char *s, int64_t *ms);
/* The escalation rule of cv_store_task_escalate on a task (consumed), for a
 * backend applying a checkpoint's tasks_escalate in its transaction. */
int cv__task_escalate_rule(jv task, jv to, int64_t now, jv *out, jv *err);
int64_t cv__task_due_ms(jv task);
/* `task` (consumed) cancelled at `now`, with its history event. */
jv cv__task_cancelled(jv task, int64_t now);

/* The order of workflow versions, for every backend: parts compare one by
 * one, runs of digits by numeric value ("1.2.10" > "1.2.9"), the rest byte
 * by byte, a longer version the greater ("1.0.0-rc" > "1.0.0"); equal
 * under that ("01", "1"): byte-wise. -1, 0 or 1. */
int cv__store_semver_cmp(const char *a, size_t na, const char *b, size_t nb);

#endif
