/*
 * effects.h — what every effect (HTTP call, child process, ...) is given.
 *
 * Effects are blocking functions run by the engine on helper threads (one per
 * effect in flight), except `call: http`, which runs on the I/O thread
 * (cv__http_call_start, io.c); all must honour `cancel` and `deadline_ms` so
 * that task timeouts, fork competition and shutdown can abandon them promptly
 * (within ~100 ms). An effect never evaluates expressions: the engine hands it fully
 * evaluated arguments. It reports failure as a specification error descriptor
 * {type, status, title, detail} (see cv__error_new); the engine fills
 * `instance` with the task reference.
 */
#ifndef CV_EFFECTS_H
#define CV_EFFECTS_H

#include <jv.h>
#include <stdatomic.h>
#include <stdint.h>

struct cv_hostmap;  /* src/effects/hostmap.h */
struct cv_http_ctx; /* src/effects/http.h: token and document caches */
struct cv_models;   /* src/ml/catalog.h: loaded models */

typedef struct cv_effect_env {
    const struct cv_hostmap *hosts; /* host overrides; may be NULL */
    struct cv_http_ctx *http;       /* shared caches; may be NULL */
    const atomic_int *cancel;       /* becomes non-zero when the effect must stop */
    int64_t deadline_ms;            /* absolute, cv__now_ms() clock; 0 = none */
    const char *idempotency_key;    /* sent as Idempotency-Key; may be NULL */
    struct cv_models *models;       /* the default catalog's models (ml/catalog.h); may be NULL */
} cv_effect_env;

/* Standard error types (the specification's URIs). */
#define CV_ERR_PREFIX "https://serverlessworkflow.io/spec/1.0.0/errors/"
#define CV_ERR_CONFIGURATION CV_ERR_PREFIX "configuration"
#define CV_ERR_VALIDATION CV_ERR_PREFIX "validation"
#define CV_ERR_EXPRESSION CV_ERR_PREFIX "expression"
#define CV_ERR_AUTHENTICATION CV_ERR_PREFIX "authentication"
#define CV_ERR_AUTHORIZATION CV_ERR_PREFIX "authorization"
#define CV_ERR_TIMEOUT CV_ERR_PREFIX "timeout"
#define CV_ERR_COMMUNICATION CV_ERR_PREFIX "communication"
#define CV_ERR_RUNTIME CV_ERR_PREFIX "runtime"

/* Builds {type, status, title, detail?} (detail omitted when NULL). */
jv cv__error_new(const char *type, int status, const char *title, const char *detail);
/* Same, with a printf-formatted detail. */
jv cv__error_newf(const char *type, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
