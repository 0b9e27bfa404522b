/*
 * http_int.h — internals shared by hostmap.c, http.c, auth.c and openapi.c.
 *
 * Every outbound request of the effects module goes through one function,
 * cv__http_exchange(): it applies the host map, the deadline and the cancel
 * flag, and caps the response size. Nothing in src/effects may call libcurl's
 * transfer functions directly. Higher up, cv__http_send() adds authentication,
 * default headers and redirect handling, and is shared by `call: http`,
 * `call: openapi` and external-resource fetches.
 */
#ifndef CV_EFFECTS_HTTP_INT_H
#define CV_EFFECTS_HTTP_INT_H

#include "effects/effects.h"
#include "effects/hostmap.h"
#include "effects/http.h"

#include <curl/curl.h>
#include <jv.h>
#include <stddef.h>

/* Largest response body accepted (bytes); beyond it the call fails. */
#define CV_HTTP_MAX_BODY (64u * 1024u * 1024u)
/* Connect timeout when the deadline leaves more time than this (ms). */
#define CV_HTTP_CONNECT_TIMEOUT_MS 10000
/* Redirects followed at most when `redirect: true`. */
#define CV_HTTP_MAX_REDIRECTS 10

/* ---- host map (hostmap.c) ------------------------------------------------ */

/*
 * Points `h` at `url` (borrowed): sets CURLOPT_URL and, when the host is
 * mapped, rewrites https to http and sets CURLOPT_CONNECT_TO so the request
 * keeps its Host header and path. `m` may be NULL (no mapping). On success
 * returns 0 and *connect_to holds a list the caller frees with
 * curl_slist_free_all() after the transfer (NULL when unmapped). On failure
 * returns CV_EFAULT and sets *err: configuration (400) for a URL that cannot
 * be parsed or is not http(s), communication (500) for an unmapped host when
 * deny-unmapped is on.
 */
int cv__hostmap_prepare(const struct cv_hostmap *m, CURL *h, const char *url,
                        struct curl_slist **connect_to, jv *err);

/* ---- shared caches (http.c) ---------------------------------------------- */

/*
 * The caches hold C strings only, never jv values: jq 1.6 reference counts are
 * not atomic, so a jv must never be shared between threads.
 * Returns a malloc'd copy of the unexpired value for `key`, or NULL.
 */
char *cv__http_cache_get(struct cv_http_ctx *c, const char *key);
/* Stores a copy of `value` until `expires_ms` (cv__now_ms clock; 0 = never). */
void cv__http_cache_put(struct cv_http_ctx *c, const char *key, const char *value,
                        int64_t expires_ms);

/* ---- one request/response (http.c) --------------------------------------- */

struct cv_http_req {
    const char *method;           /* upper case */
    const char *url;              /* borrowed; the original URL */
    struct curl_slist *headers;   /* borrowed; may be NULL */
    const char *body;             /* borrowed; sent when has_body */
    size_t body_len;
    int has_body;
    long curl_auth;               /* CURLAUTH_BASIC / CURLAUTH_DIGEST / 0 */
    const char *username;         /* with curl_auth */
    const char *password;
};

struct cv_http_resp {
    long status;
    char *reason;                 /* status-line reason phrase or a standard one */
    jv headers;                   /* {name: value} of the final response */
    char *body;                   /* NUL-terminated, `len` bytes */
    size_t len, cap;
    char *location;               /* absolute redirect target of a 3xx, or NULL */
};

/*
 * Performs one exchange without following redirects. Returns 0 when a
 * response arrived (whatever its status) and fills *rs (release with
 * cv__http_resp_cleanup, also after a failure). Returns CV_ECANCELED when
 * env->cancel was raised, CV_ENOMEM, or CV_EFAULT with *err: timeout (408)
 * when env->deadline_ms passed, communication (500) for transport failures
 * and oversized bodies, and whatever cv__hostmap_prepare reports.
 */
int cv__http_exchange(const cv_effect_env *env, const struct cv_http_req *rq,
                      struct cv_http_resp *rs, jv *err);
void cv__http_resp_cleanup(struct cv_http_resp *rs);

/* ---- authentication (auth.c) --------------------------------------------- */

struct cv_auth {
    long curl_auth;               /* CURLAUTH_BASIC / CURLAUTH_DIGEST / 0 */
    char *username, *password;    /* for curl_auth */
    char *bearer;                 /* token sent as "Authorization: Bearer" */
    jv authz;                     /* {scheme, parameter} or null */
};

/*
 * Resolves an authentication policy (`auth` borrowed: null, or an object with
 * one of basic, bearer, digest, oauth2, oidc) into *a, fetching OAuth2/OIDC
 * tokens (cached in env->http) when needed. `a` is always initialised; release
 * it with cv__auth_cleanup. Returns 0, CV_ECANCELED, or CV_EFAULT with *err:
 * configuration (400) for a malformed or unresolved policy, authentication
 * (401) when no token could be obtained, timeout (408).
 */
int cv__auth_resolve(const cv_effect_env *env, jv auth, struct cv_auth *a, jv *err);
void cv__auth_cleanup(struct cv_auth *a);

/* ---- requests with auth, defaults and redirects (http.c) ----------------- */

enum cv_http_output { CV_HTTP_OUT_CONTENT, CV_HTTP_OUT_RESPONSE, CV_HTTP_OUT_RAW };

struct cv_http_call {
    char *method;                 /* as written by the user (any case); owned */
    char *url;                    /* full URL including the query; owned */
    jv headers;                   /* object {name: string}; owned */
    jv body;                      /* jv_invalid() or null: no body; owned */
    jv auth;                      /* authentication policy or null; owned */
    enum cv_http_output output;
    int redirect;                 /* 1: follow redirects, 2xx and 3xx succeed */
};

/* Initialises every field to "nothing". */
void cv__http_call_init(struct cv_http_call *c);
/* Releases the owned fields (safe on an initialised, unused call). */
void cv__http_call_cleanup(struct cv_http_call *c);

/*
 * Reads `output` (content|response|raw) and `redirect` from a `with` object
 * (borrowed) into `c`. Returns 0, or CV_EFAULT with a configuration error.
 */
int cv__http_call_options(jv args, struct cv_http_call *c, jv *err);

/*
 * Runs a prepared call to its end: resolves authentication, encodes the body,
 * adds default headers (Accept, Content-Type, Idempotency-Key), follows
 * redirects when asked, checks the status and builds the output. Same results
 * as cv__http_call (http.h). `c` stays owned by the caller.
 */
int cv__http_call_perform(const cv_effect_env *env, struct cv_http_call *c, jv *out, jv *authz);

/*
 * cv__http_call_start (http.h) for a call already prepared: on 0 the call's
 * fields are taken over (c is left empty) and `done` is called once on the
 * I/O thread. CV_EUNSUPPORTED (nothing taken) when there is no I/O thread or
 * the policy may need a token exchange; CV_ENOMEM.
 */
int cv__http_call_start_prepared(const cv_effect_env *env, struct cv_http_call *c, cv_http_done_fn done,
                                 void *ud);
/* Reports (rc, out: consumed) through `done` on the I/O thread, as an
 * asynchronous call's end: 0, CV_EUNSUPPORTED (no I/O thread) or CV_ENOMEM
 * (out freed then, done not called). */
int cv__http_call_report(const cv_effect_env *env, int rc, jv out, cv_http_done_fn done, void *ud);

/*
 * Appends `query` (borrowed object) to *url (malloc'd, replaced): strings
 * as-is, numbers and booleans printed, arrays as repeated keys, objects as
 * JSON, nulls skipped; keys and values percent-encoded. Returns 0 or CV_ENOMEM.
 */
int cv__http_url_add_query(char **url, jv query);
/* Appends one already-encoded "k=v" pair to *url with '?' or '&'. */
int cv__http_url_add_pair(char **url, const char *key, const char *value);

/*
 * GETs an external resource: `endpoint` (borrowed) is a URI string or
 * {uri, authentication}; file:// URIs and plain paths are read from disk.
 * On success returns 0 with *text (malloc'd, NUL-terminated) and *len.
 * Failures as cv__http_call (communication status = HTTP status; 404 for a
 * missing file).
 */
int cv__fetch_resource(const cv_effect_env *env, jv endpoint, char **text, size_t *len,
                       jv *err);

/* ---- small helpers (http.c) ---------------------------------------------- */

/* Standard base64 (with padding) of n bytes; malloc'd, NULL on OOM. */
char *cv__base64(const unsigned char *p, size_t n);
/* A string for a scalar (borrowed): strings as-is, numbers as %.17g or integers, booleans. */
char *cv__scalar_text(jv v);
/* The standard reason phrase of an HTTP status ("Not Found"), or "Unknown Status". */
const char *cv__http_reason(long status);

#endif
