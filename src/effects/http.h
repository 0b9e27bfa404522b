/*
 * http.h — `call: http` and every other outbound HTTP fetch (libcurl).
 */
#ifndef CV_EFFECTS_HTTP_H
#define CV_EFFECTS_HTTP_H

#include "effects/effects.h"

/* Shared, thread-safe caches (OAuth2 tokens, OIDC discovery, OpenAPI
 * documents), and the runtime's I/O thread (effects/io.h). */
struct cv_http_ctx *cv__http_ctx_new(void);
void cv__http_ctx_free(struct cv_http_ctx *c);
/* The I/O thread of `c`, started on first use; NULL when it cannot start. */
struct cv_io *cv__http_ctx_io(struct cv_http_ctx *c);

/*
 * Performs `call: http`. `args` (consumed) is the task's evaluated `with`:
 * {method, endpoint (string | {uri, authentication}), headers, query, body,
 *  output: content|response|raw, redirect}, with any `authentication: {use}`
 * already replaced by the referenced definition and secret-based definitions
 * already resolved. `input` (consumed) is the task's transformed input, used to
 * expand URI templates ({name} = top-level property of input).
 * On success returns 0, sets *out to the output and *authz (if not NULL) to
 * the $authorization descriptor {scheme, parameter} or null.
 * On failure returns CV_EFAULT and sets *out to an error descriptor:
 * communication (status = HTTP status, title = reason phrase) for non-success
 * answers and transport failures, timeout (408) when the deadline passed,
 * expression (400) for bad URI-template values, authentication (401) when a
 * token could not be obtained. Returns CV_ECANCELED when cancelled.
 */
int cv__http_call(const cv_effect_env *env, jv args, jv input, jv *out, jv *authz);

/* How an asynchronous call reports its end: the same (rc, out, authz) as
 * cv__http_call, out and authz owned by the callee. */
typedef void (*cv_http_done_fn)(void *ud, int rc, jv out, jv authz);

/*
 * Starts `call: http` (args and input borrowed) on the I/O thread of
 * env->http (started on first use; DESIGN.md decision 5) and returns 0:
 * `done` is then called exactly once, on the I/O thread, with what
 * cv__http_call would have returned. `env` (and what it points to) must stay
 * valid until then. Returns CV_EUNSUPPORTED, having started nothing, when
 * the call must run as a blocking one instead (no env->http or no I/O thread;
 * an OAuth2/OIDC policy, whose token may need an exchange of its own), or
 * CV_ENOMEM.
 */
int cv__http_call_start(const cv_effect_env *env, jv args, jv input, cv_http_done_fn done, void *ud);

/*
 * Performs `call: openapi`: `args` (consumed) is the evaluated `with`
 * {document: {endpoint|name...}, operationId, parameters, authentication,
 *  output, redirect}. Same results and errors as cv__http_call.
 */
int cv__openapi_call(const cv_effect_env *env, jv args, jv *out, jv *authz);
/* The same on the I/O thread (args borrowed), as cv__http_call_start; also
 * CV_EUNSUPPORTED when the document is not cached yet (fetching it would
 * block: the first call of a document runs as a blocking one). */
int cv__openapi_call_start(const cv_effect_env *env, jv args, cv_http_done_fn done, void *ud);

/*
 * GETs `uri` (an external resource) and returns its body as a jv string in
 * *out (0), or an error descriptor (CV_EFAULT). `file://` URIs and plain paths
 * are read from disk.
 */
int cv__fetch_text(const cv_effect_env *env, const char *uri, jv *out);

#endif
