/*
 * util.h — small shared utilities: clocks, UUIDs, time descriptors,
 * durations, URI templates.
 */
#ifndef CV_COMMON_UTIL_H
#define CV_COMMON_UTIL_H

#include <jv.h>
#include <stdint.h>

/*
 * Sets glibc's heap to keep up to 8 MiB of freed memory (and to grow by 2 MiB
 * beyond a request) instead of returning it to the kernel at once: the
 * default (128 KiB, adjusted on the fly) made every checkpoint batch shrink
 * and regrow the heaps, which cost half the CPU of a checkpoint
 * (bench_store: 56 -> 30 us per checkpoint). Called once per process by
 * cv_runtime_new; idempotent.
 */
void cv__malloc_tune(void);

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
int64_t cv__now_ms(void);
/* Wall-clock milliseconds since the epoch. */
int64_t cv__wall_ms(void);
/* RFC 4122 version-4 UUID, lowercase, into buf (at least 37 bytes). */
void cv__uuid4(char buf[37]);
/* `url` for messages: a password in it (scheme://user:PASSWORD@host) as
 * ***, written into buf (n bytes) when there is one; else url itself. */
const char *cv__url_without_password(const char *url, char *buf, size_t n);
/* RFC 3339 UTC timestamp of a wall time in ms, whole seconds: "2026-11-21T12:00:00Z". */
void cv__rfc3339(int64_t wall_ms, char buf[32]);
/* The specification's dateTime descriptor {iso8601, epoch: {seconds, milliseconds}}. */
jv cv__time_descriptor(int64_t wall_ms);

/*
 * Parses a duration: an inline object {days, hours, minutes, seconds,
 * milliseconds} (borrowed) or an ISO 8601 string "P1DT2H3M4.5S" (weeks
 * allowed; years = 365 days, months = 30 days). Returns 0 and *ms, or
 * CV_EINVAL with a static message in *why.
 */
int cv__duration_ms(jv v, int64_t *ms, const char **why);

/*
 * Expands an RFC 6570 simple-expansion URI template ("{name}") against the
 * top-level properties of `vars` (borrowed). A missing or null value expands
 * to ""; strings are percent-encoded (unreserved kept); numbers print as
 * integers when integral; booleans as true/false; objects and arrays are an
 * error. Returns 0 and *out (caller frees) or CV_EINVAL with *why (static).
 */
int cv__uri_template_expand(const char *tmpl, jv vars, char **out, const char **why);
/* Checks template syntax only (balanced braces, valid names). 0 or CV_EINVAL. */
int cv__uri_template_check(const char *tmpl, const char **why);

#endif
