/*
 * http.c — `call: http`, external-resource fetches, and the one function that
 * moves bytes over HTTP for the whole effects module (cv__http_exchange).
 *
 * `call: http` from the engine runs on the runtime's I/O thread (io.c, one
 * multi handle for every call: connections are kept alive and reused), its
 * steps continued there as each exchange ends (cv__http_call_start). The
 * blocking form (cv__http_exchange and what is built on it: OAuth2 tokens,
 * OpenAPI documents, fetches, calls whose policy may need a token) gives each
 * exchange its own easy handle, driven by a private multi handle in short
 * polls so that the cancel flag and the deadline are noticed within ~50 ms
 * even while the peer is silent (the easy interface alone may sleep a full
 * second between progress callbacks). Redirects are followed here, not
 * by libcurl, so that every hop goes through the host map (an https Location
 * must be downgraded too, and deny-unmapped must hold for every hop). The
 * shared caches (tokens, discovery, documents) also live here; they store
 * plain C strings because jq 1.6 jv reference counts are not thread-safe.
 */
#include "effects/http.h"
#include "common/util.h"
#include "conveyor.h"
#include "effects/http_int.h"
#include "effects/io.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ======================================================================
 * Shared caches
 * ====================================================================== */

#define CACHE_MAX_ENTRIES 256

struct cache_entry {
    char *key, *value;
    int64_t expires_ms; /* 0 = never */
    struct cache_entry *next;
};

struct cv_http_ctx {
    pthread_mutex_t mu;
    struct cache_entry *head;
    size_t n;
    struct cv_io *io; /* started by the first asynchronous call */
    int io_failed;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct cv_http_ctx *cv__http_ctx_new(void)
{
    pthread_once(&curl_once, curl_init_once);
    struct cv_http_ctx *c = calloc(1, sizeof *c);
    if (c && pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

static void entry_free(struct cache_entry *e)
{
    free(e->key);
    free(e->value);
    free(e);
}

void cv__http_ctx_free(struct cv_http_ctx *c)
{
    if (!c)
        return;
    cv__io_free(c->io);
    for (struct cache_entry *e = c->head, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

char *cv__http_cache_get(struct cv_http_ctx *c, const char *key)
{
    if (!c)
        return NULL;
    char *v = NULL;
    int64_t now = cv__now_ms();
    pthread_mutex_lock(&c->mu);
    for (struct cache_entry *e = c->head; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            if (!e->expires_ms || e->expires_ms > now)
                v = strdup(e->value);
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return v;
}

void cv__http_cache_put(struct cv_http_ctx *c, const char *key, const char *value,
                        int64_t expires_ms)
{
    if (!c)
        return;
    struct cache_entry *ne = calloc(1, sizeof *ne);
    if (!ne)
        return;
    ne->key = strdup(key);
    ne->value = strdup(value);
    ne->expires_ms = expires_ms;
    if (!ne->key || !ne->value) {
        entry_free(ne);
        return; /* a cache may forget */
    }
    int64_t now = cv__now_ms();
    pthread_mutex_lock(&c->mu);
    /* Drop the old value for this key and anything expired. */
    for (struct cache_entry **pp = &c->head; *pp;) {
        struct cache_entry *e = *pp;
        if (strcmp(e->key, key) == 0 || (e->expires_ms && e->expires_ms <= now)) {
            *pp = e->next;
            entry_free(e);
            c->n--;
        } else {
            pp = &e->next;
        }
    }
    /* Newest first; beyond the bound, forget the oldest (the tail). */
    ne->next = c->head;
    c->head = ne;
    c->n++;
    if (c->n > CACHE_MAX_ENTRIES) {
        struct cache_entry **pp = &c->head;
        while ((*pp)->next)
            pp = &(*pp)->next;
        entry_free(*pp);
        *pp = NULL;
        c->n--;
    }
    pthread_mutex_unlock(&c->mu);
}

/* ======================================================================
 * Small helpers
 * ====================================================================== */

char *cv__base64(const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
    if (!o)
        return NULL;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *q++ = tbl[v >> 18 & 63];
        *q++ = tbl[v >> 12 & 63];
        *q++ = tbl[v >> 6 & 63];
        *q++ = tbl[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
        *q++ = tbl[v >> 18 & 63];
        *q++ = tbl[v >> 12 & 63];
        *q++ = i + 1 < n ? tbl[v >> 6 & 63] : '=';
        *q++ = '=';
    }
    *q = '\0';
    return o;
}

char *cv__scalar_text(jv v)
{
    char buf[64];
    switch (jv_get_kind(v)) {
    case JV_KIND_STRING:
        return strdup(jv_string_value(v));
    case JV_KIND_NUMBER: {
        double d = jv_number_value(v);
        if (d == (double)(long long)d && d > -1e17 && d < 1e17)
            snprintf(buf, sizeof buf, "%lld", (long long)d);
        else
            snprintf(buf, sizeof buf, "%.17g", d);
        return strdup(buf);
    }
    case JV_KIND_TRUE:
        return strdup("true");
    case JV_KIND_FALSE:
        return strdup("false");
    case JV_KIND_NULL:
        return strdup("");
    default: {
        jv s = jv_dump_string(jv_copy(v), 0);
        char *r = strdup(jv_string_value(s));
        jv_free(s);
        return r;
    }
    }
}

const char *cv__http_reason(long status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    }
    return "Unknown Status";
}

/* Valid UTF-8 (no overlongs, no surrogates)? Decides string vs base64 content. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            if (c == 0)
                return 0;
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* ======================================================================
 * One exchange
 * ====================================================================== */

struct xfer {
    struct cv_http_resp *rs;
    int too_big;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    struct cv_http_resp *rs = x->rs;
    size_t n = size * nmemb;
    if (rs->len + n > CV_HTTP_MAX_BODY) {
        x->too_big = 1;
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    if (rs->len + n + 1 > rs->cap) {
        size_t cap = rs->cap ? rs->cap : 4096;
        while (cap < rs->len + n + 1)
            cap *= 2;
        char *b = realloc(rs->body, cap);
        if (!b)
            return 0;
        rs->body = b;
        rs->cap = cap;
    }
    memcpy(rs->body + rs->len, p, n);
    rs->len += n;
    rs->body[rs->len] = '\0';
    return n;
}

/* Header lines of every response arrive here (interim 1xx, 401 digest
 * challenges); a status line starts afresh so only the last response counts. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    struct cv_http_resp *rs = x->rs;
    size_t n = size * nmemb;
    size_t len = n;
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        jv_free(rs->headers);
        rs->headers = jv_object();
        free(rs->reason);
        rs->reason = NULL;
        const char *sp = memchr(p, ' ', len);
        if (sp) {
            const char *q = sp + 1, *end = p + len;
            long code = 0;
            while (q < end && isdigit((unsigned char)*q))
                code = code * 10 + (*q++ - '0');
            rs->status = code;
            while (q < end && *q == ' ')
                q++;
            if (q < end)
                rs->reason = strndup(q, (size_t)(end - q));
        }
        return n;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p)
        return n;
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    jv name = jv_string_sized(p, (int)(colon - p));
    jv val = jv_string_sized(v, (int)(end - v));
    jv old = jv_object_get(jv_copy(rs->headers), jv_copy(name));
    if (jv_get_kind(old) == JV_KIND_STRING)
        val = jv_string_concat(jv_string_append_str(old, ", "), val);
    else
        jv_free(old);
    rs->headers = jv_object_set(rs->headers, name, val);
    return n;
}

void cv__http_resp_cleanup(struct cv_http_resp *rs)
{
    if (!rs)
        return;
    free(rs->reason);
    free(rs->body);
    free(rs->location);
    jv_free(rs->headers);
    memset(rs, 0, sizeof *rs);
    rs->headers = jv_null();
}

static int cancelled(const cv_effect_env *env)
{
    return env->cancel && atomic_load(env->cancel) != 0;
}

static jv timeout_error(const struct cv_http_req *rq)
{
    return cv__error_newf(CV_ERR_TIMEOUT, 408, "Request Timeout",
                          "%s %s did not complete before the deadline", rq->method, rq->url);
}

/* One exchange's libcurl side: the easy handle and what its callbacks fill.
 * Heap-allocated for the I/O thread (the callbacks point into it). */
struct exch {
    CURL *h;
    struct curl_slist *connect_to;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer x;
};

static void exch_release(struct exch *xs)
{
    curl_easy_cleanup(xs->h);
    curl_slist_free_all(xs->connect_to);
    xs->h = NULL;
    xs->connect_to = NULL;
}

/* Prepares xs->h for `rq` into *rs (emptied first): host map, deadline,
 * method, body, headers, credentials. 0, CV_ECANCELED, CV_ENOMEM, or
 * CV_EFAULT with *err. xs is released by the caller in every case. */
static int exch_prepare(const cv_effect_env *env, const struct cv_http_req *rq, struct exch *xs,
                        struct cv_http_resp *rs, jv *err)
{
    memset(xs, 0, sizeof *xs);
    xs->x.rs = rs;
    memset(rs, 0, sizeof *rs);
    rs->headers = jv_object();
    pthread_once(&curl_once, curl_init_once);

    if (cancelled(env))
        return CV_ECANCELED;
    int64_t remaining = 0;
    if (env->deadline_ms) {
        remaining = env->deadline_ms - cv__now_ms();
        if (remaining <= 0) {
            *err = timeout_error(rq);
            return CV_EFAULT;
        }
    }

    CURL *h = xs->h = curl_easy_init();
    if (!h)
        return CV_ENOMEM;
    int rc = cv__hostmap_prepare(env->hosts, h, rq->url, &xs->connect_to, err);
    if (rc)
        return rc;

    long connect_ms = CV_HTTP_CONNECT_TIMEOUT_MS;
    if (remaining && remaining < connect_ms)
        connect_ms = (long)remaining;
    CURLcode sc = CURLE_OK;
#define SETOPT(opt, val) \
    if (sc == CURLE_OK)  \
    sc = curl_easy_setopt(h, opt, val)
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, xs->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, &xs->x);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, &xs->x);
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    if (remaining)
        SETOPT(CURLOPT_TIMEOUT_MS, (long)remaining);
    if (rq->headers)
        SETOPT(CURLOPT_HTTPHEADER, rq->headers);
    if (rq->curl_auth) {
        SETOPT(CURLOPT_HTTPAUTH, rq->curl_auth);
        SETOPT(CURLOPT_USERNAME, rq->username ? rq->username : "");
        SETOPT(CURLOPT_PASSWORD, rq->password ? rq->password : "");
    }
    if (strcmp(rq->method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (rq->has_body) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        SETOPT(CURLOPT_POSTFIELDS, rq->body_len ? rq->body : "");
        SETOPT(CURLOPT_CUSTOMREQUEST, rq->method);
    } else if (strcmp(rq->method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT") ||
               !strcmp(rq->method, "PATCH")) {
        /* An empty body still says Content-Length: 0, as servers expect. */
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SETOPT(CURLOPT_POSTFIELDS, "");
        SETOPT(CURLOPT_CUSTOMREQUEST, rq->method);
    } else {
        SETOPT(CURLOPT_CUSTOMREQUEST, rq->method);
    }
#undef SETOPT
    if (sc != CURLE_OK) {
        *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Request Setup Failed", "%s %s: %s",
                              rq->method, rq->url, curl_easy_strerror(sc));
        return CV_EFAULT;
    }
    return CV_OK;
}

/* The outcome of a finished transfer (`res`): *rs completed, or an error. */
static int exch_finish(const cv_effect_env *env, const struct cv_http_req *rq, struct exch *xs,
                       CURLcode res, jv *err)
{
    struct cv_http_resp *rs = xs->x.rs;
    if (res == CURLE_OK) {
        long code = 0;
        char *loc = NULL;
        curl_easy_getinfo(xs->h, CURLINFO_RESPONSE_CODE, &code);
        rs->status = code;
        if (!rs->reason || !*rs->reason) {
            free(rs->reason);
            rs->reason = strdup(cv__http_reason(code));
        }
        if (curl_easy_getinfo(xs->h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
            rs->location = strdup(loc);
        if (!rs->body) {
            rs->body = strdup("");
            rs->cap = 1;
        }
        return !rs->reason || !rs->body ? CV_ENOMEM : CV_OK;
    }
    if (xs->x.too_big) {
        *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Response Too Large",
                              "%s %s: the response body exceeds %u MiB", rq->method, rq->url,
                              CV_HTTP_MAX_BODY >> 20);
    } else if (res == CURLE_OPERATION_TIMEDOUT && env->deadline_ms &&
               cv__now_ms() >= env->deadline_ms - 20) {
        *err = timeout_error(rq);
    } else {
        *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, curl_easy_strerror(res), "%s %s: %s",
                              rq->method, rq->url, xs->errbuf[0] ? xs->errbuf : curl_easy_strerror(res));
    }
    return CV_EFAULT;
}

int cv__http_exchange(const cv_effect_env *env, const struct cv_http_req *rq,
                      struct cv_http_resp *rs, jv *err)
{
    struct exch xs;
    CURLM *m = NULL;
    int added = 0;
    int rc = exch_prepare(env, rq, &xs, rs, err);
    if (rc)
        goto out;
    m = curl_multi_init();
    if (!m || curl_multi_add_handle(m, xs.h) != CURLM_OK) {
        rc = CV_ENOMEM;
        goto out;
    }
    added = 1;

    /* Drive the transfer in short polls: cancel and deadline are checked at
     * least every 50 ms however quiet the peer is. */
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Transport Failure", "%s %s: %s",
                                  rq->method, rq->url, curl_multi_strerror(mc));
            rc = CV_EFAULT;
            goto out;
        }
        if (!running)
            break;
        if (cancelled(env)) {
            rc = CV_ECANCELED;
            goto out;
        }
        int wait = 50;
        if (env->deadline_ms) {
            int64_t left = env->deadline_ms - cv__now_ms();
            if (left <= 0) {
                *err = timeout_error(rq);
                rc = CV_EFAULT;
                goto out;
            }
            if (left < wait)
                wait = (int)left;
        }
        curl_multi_poll(m, NULL, 0, wait, NULL);
    }

    CURLcode res = CURLE_OK;
    int msgs = 0;
    for (CURLMsg *msg; (msg = curl_multi_info_read(m, &msgs));)
        if (msg->msg == CURLMSG_DONE)
            res = msg->data.result;
    rc = exch_finish(env, rq, &xs, res, err);
out:
    if (added)
        curl_multi_remove_handle(m, xs.h);
    if (m)
        curl_multi_cleanup(m);
    exch_release(&xs);
    return rc;
}

/* ======================================================================
 * URLs
 * ====================================================================== */

int cv__http_url_add_pair(char **url, const char *key, const char *value)
{
    const char *sep = strchr(*url, '?') ? "&" : "?";
    char *n = NULL;
    if (asprintf(&n, "%s%s%s=%s", *url, sep, key, value) < 0)
        return CV_ENOMEM;
    free(*url);
    *url = n;
    return CV_OK;
}

static char *url_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    return r;
}

static int add_query_value(char **url, const char *ekey, jv v /* borrowed */)
{
    if (jv_get_kind(v) == JV_KIND_NULL)
        return CV_OK;
    char *t = cv__scalar_text(v);
    char *et = t ? url_escape(t) : NULL;
    int rc = et ? cv__http_url_add_pair(url, ekey, et) : CV_ENOMEM;
    free(t);
    free(et);
    return rc;
}

int cv__http_url_add_query(char **url, jv query)
{
    if (jv_get_kind(query) != JV_KIND_OBJECT)
        return CV_OK;
    int rc = CV_OK;
    jv_object_foreach(query, k, v)
    {
        if (rc == CV_OK) {
            char *ek = url_escape(jv_string_value(k));
            if (!ek) {
                rc = CV_ENOMEM;
            } else if (jv_get_kind(v) == JV_KIND_ARRAY) {
                jv_array_foreach(v, i, item)
                {
                    if (rc == CV_OK)
                        rc = add_query_value(url, ek, item);
                    jv_free(item);
                }
            } else {
                rc = add_query_value(url, ek, v);
            }
            free(ek);
        }
        jv_free(k);
        jv_free(v);
    }
    return rc;
}

/* The host part of a URL (malloc'd, lower case) or NULL. */
static char *url_host(const char *url)
{
    CURLU *u = curl_url();
    char *h = NULL, *r = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK) {
        r = strdup(h);
        for (char *p = r; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    curl_free(h);
    curl_url_cleanup(u);
    return r;
}

/* ======================================================================
 * Calls: auth, headers, body, redirects, status, output
 * ====================================================================== */

void cv__http_call_init(struct cv_http_call *c)
{
    memset(c, 0, sizeof *c);
    c->headers = jv_object();
    c->body = jv_invalid();
    c->auth = jv_null();
    c->output = CV_HTTP_OUT_CONTENT;
}

void cv__http_call_cleanup(struct cv_http_call *c)
{
    if (!c)
        return;
    free(c->method);
    free(c->url);
    jv_free(c->headers);
    jv_free(c->body);
    jv_free(c->auth);
    c->method = c->url = NULL;
    c->headers = c->body = c->auth = jv_null();
}

/* Looks a header up case-insensitively in a {name: value} object (borrowed). */
static jv header_get(jv headers, const char *name)
{
    jv found = jv_invalid();
    if (jv_get_kind(headers) != JV_KIND_OBJECT)
        return found;
    jv_object_foreach(headers, k, v)
    {
        if (!jv_is_valid(found) && strcasecmp(jv_string_value(k), name) == 0)
            found = jv_copy(v);
        jv_free(k);
        jv_free(v);
    }
    return found;
}

static int header_has(jv headers, const char *name)
{
    jv v = header_get(headers, name);
    int has = jv_is_valid(v);
    jv_free(v);
    return has;
}

static int json_type(const char *ct)
{
    if (!ct)
        return 0;
    const char *semi = strchr(ct, ';');
    size_t n = semi ? (size_t)(semi - ct) : strlen(ct);
    while (n && ct[n - 1] == ' ')
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    if (n == 9 && strncasecmp(ct, "text/json", 9) == 0)
        return 1;
    return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static int form_type(const char *ct)
{
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

/* Form-encodes an object (borrowed): arrays as repeated keys. */
static char *form_encode(jv obj)
{
    char *s = strdup("");
    if (!s || cv__http_url_add_query(&s, obj) != CV_OK) {
        free(s);
        return NULL;
    }
    /* cv__http_url_add_query writes "?k=v&k=v"; drop the leading "?". */
    char *r = strdup(s[0] == '?' ? s + 1 : s);
    free(s);
    return r;
}

/*
 * Decodes a response body for `content`: JSON when the content type says so
 * or the body parses as JSON, else a string when it is valid UTF-8, else the
 * base64 of the bytes (the specification's rule for undecodable content).
 */
static jv decode_content(const struct cv_http_resp *rs)
{
    if (rs->len == 0)
        return jv_null();
    jv ct = header_get(rs->headers, "Content-Type");
    int is_json = jv_get_kind(ct) == JV_KIND_STRING && json_type(jv_string_value(ct));
    jv_free(ct);
    const char *p = rs->body;
    size_t n = rs->len;
    while (n && isspace((unsigned char)*p))
        p++, n--;
    if (is_json || (n && (strchr("{[\"-tfn", *p) || isdigit((unsigned char)*p)))) {
        jv v = jv_parse_sized(rs->body, (int)rs->len);
        if (jv_is_valid(v))
            return v;
        jv_free(v);
    }
    if (utf8_valid((const unsigned char *)rs->body, rs->len))
        return jv_string_sized(rs->body, (int)rs->len);
    char *b = cv__base64((const unsigned char *)rs->body, rs->len);
    jv r = b ? jv_string(b) : jv_null();
    free(b);
    return r;
}

static int is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

static void upper(char *s)
{
    for (; *s; s++)
        *s = (char)toupper((unsigned char)*s);
}

/* An excerpt of a failed response's body for an error's detail. */
static jv failure_error(const char *method, const char *url, const struct cv_http_resp *rs)
{
    char excerpt[257];
    size_t n = rs->len < 256 ? rs->len : 256;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rs->body[i];
        excerpt[i] = (c < 0x20 && c != '\t') ? ' ' : (char)c;
    }
    while (n && (excerpt[n - 1] & 0xC0) == 0x80) /* do not cut a UTF-8 sequence */
        n--;
    if (n && (unsigned char)excerpt[n - 1] >= 0xC0)
        n--;
    excerpt[n] = '\0';
    if (n)
        return cv__error_new(CV_ERR_COMMUNICATION, (int)rs->status, rs->reason, excerpt);
    return cv__error_newf(CV_ERR_COMMUNICATION, (int)rs->status, rs->reason,
                          "%s %s answered %ld", method, url, rs->status);
}

/*
 * Sends a prepared call and follows redirects when asked; *rs is the final
 * response, *sent the headers sent (without credentials), *authz the
 * authorization descriptor. Statuses are not judged here.
 */
/* A request on its way: what send_begin prepared, and the current hop. */
struct send {
    struct cv_auth a;
    struct curl_slist *hl;      /* headers */
    struct curl_slist *auth_hl; /* hl plus the bearer line, for the first host only */
    char *body, *method, *url, *first_host;
    size_t body_len;
    int has_body;
    jv headers; /* sent, without credentials */
    int hops;
    struct cv_http_req rq;
};

static int send_begin(const cv_effect_env *env, struct cv_http_call *c, struct send *st, jv *err)
{
    int rc = CV_OK;
    memset(st, 0, sizeof *st);
    st->headers = jv_object();
    rc = cv__auth_resolve(env, c->auth, &st->a, err);
    if (rc)
        return rc;
    struct cv_auth a = st->a; /* read only below */
    struct curl_slist *hl = NULL;
    char *body = NULL, *method = NULL, *url = NULL;
    size_t body_len = 0;
    int has_body = 0;
    jv headers = st->headers;
    st->headers = jv_null();

    method = strdup(c->method ? c->method : "GET");
    url = strdup(c->url ? c->url : "");
    if (!method || !url) {
        rc = CV_ENOMEM;
        goto out;
    }
    upper(method);

    /* Headers as given (scalars printed), then defaults. */
    if (jv_get_kind(c->headers) == JV_KIND_OBJECT) {
        jv_object_foreach(c->headers, k, v)
        {
            if (jv_get_kind(v) != JV_KIND_NULL) {
                char *t = cv__scalar_text(v);
                if (t)
                    headers = jv_object_set(headers, jv_copy(k), jv_string(t));
                free(t);
            }
            jv_free(k);
            jv_free(v);
        }
    }
    if (!header_has(headers, "Accept"))
        headers = jv_object_set(headers, jv_string("Accept"), jv_string("application/json"));

    jv_kind bk = jv_get_kind(c->body);
    if (jv_is_valid(c->body) && bk != JV_KIND_NULL) {
        jv ct = header_get(headers, "Content-Type");
        const char *cts = jv_get_kind(ct) == JV_KIND_STRING ? jv_string_value(ct) : NULL;
        if (bk == JV_KIND_STRING) {
            body = strdup(jv_string_value(c->body));
            body_len = (size_t)jv_string_length_bytes(jv_copy(c->body));
            if (!cts)
                headers = jv_object_set(headers, jv_string("Content-Type"),
                                        jv_string("text/plain; charset=utf-8"));
        } else if (bk == JV_KIND_OBJECT && form_type(cts)) {
            body = form_encode(c->body);
            body_len = body ? strlen(body) : 0;
        } else {
            jv s = jv_dump_string(jv_copy(c->body), 0);
            body = strdup(jv_string_value(s));
            body_len = (size_t)jv_string_length_bytes(s);
            if (!cts)
                headers = jv_object_set(headers, jv_string("Content-Type"),
                                        jv_string("application/json"));
        }
        jv_free(ct);
        if (!body) {
            rc = CV_ENOMEM;
            goto out;
        }
        has_body = 1;
    }
    if (env->idempotency_key && !header_has(headers, "Idempotency-Key"))
        headers = jv_object_set(headers, jv_string("Idempotency-Key"),
                                jv_string(env->idempotency_key));

    /* The curl list: our headers (refusing line breaks: header injection). */
    jv_object_foreach(headers, k, v)
    {
        const char *ks = jv_string_value(k), *vs = jv_string_value(v);
        if (rc == CV_OK && (strpbrk(ks, "\r\n:") || strpbrk(vs, "\r\n"))) {
            *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid Header",
                                  "header '%s' contains a line break or colon", ks);
            rc = CV_EFAULT;
        }
        if (rc == CV_OK && !(a.bearer && strcasecmp(ks, "Authorization") == 0)) {
            char *line = NULL;
            /* "Name;" is curl's way to send a header with an empty value. */
            if ((*vs ? asprintf(&line, "%s: %s", ks, vs) : asprintf(&line, "%s;", ks)) < 0) {
                rc = CV_ENOMEM;
            } else {
                struct curl_slist *n = curl_slist_append(hl, line);
                if (n)
                    hl = n;
                else
                    rc = CV_ENOMEM;
                free(line);
            }
        }
        jv_free(k);
        jv_free(v);
    }
    if (rc)
        goto out;
    {
        struct curl_slist *n = curl_slist_append(hl, "Expect:"); /* no 100-continue wait */
        if (!n) {
            rc = CV_ENOMEM;
            goto out;
        }
        hl = n;
        if (!has_body && !header_has(headers, "Content-Type")) {
            /* libcurl would label an empty POST as a form; say nothing instead. */
            n = curl_slist_append(hl, "Content-Type:");
            if (!n) {
                rc = CV_ENOMEM;
                goto out;
            }
            hl = n;
        }
    }
    struct curl_slist *auth_hl = NULL; /* hl plus the bearer line, for one host only */
    if (a.bearer) {
        char *line = NULL;
        if (asprintf(&line, "Authorization: Bearer %s", a.bearer) < 0) {
            rc = CV_ENOMEM;
            goto out;
        }
        auth_hl = curl_slist_append(NULL, line);
        free(line);
        if (!auth_hl) {
            rc = CV_ENOMEM;
            goto out;
        }
        auth_hl->next = hl; /* borrowed tail; detached before freeing */
    }
    st->auth_hl = auth_hl;
    st->first_host = url_host(url);
out:
    st->hl = hl;
    st->body = body;
    st->body_len = body_len;
    st->has_body = has_body;
    st->method = method;
    st->url = url;
    st->headers = headers;
    return rc;
}

/* The request of the current hop (credentials go to the original host only,
 * as libcurl does). */
static void send_hop(struct send *st)
{
    char *host = url_host(st->url);
    int same = host && st->first_host && strcmp(host, st->first_host) == 0;
    free(host);
    st->rq = (struct cv_http_req){
        .method = st->method,
        .url = st->url,
        .headers = (same && st->auth_hl) ? st->auth_hl : st->hl,
        .body = st->body,
        .body_len = st->body_len,
        .has_body = st->has_body,
        .curl_auth = same ? st->a.curl_auth : 0,
        .username = st->a.username,
        .password = st->a.password,
    };
}

/* After a response: 1 when it is a redirect to follow (the next hop's URL
 * and method are set), 0 when it is the final response, CV_ENOMEM. */
static int send_follow(struct send *st, const struct cv_http_call *c, const struct cv_http_resp *rs)
{
    if (!c->redirect || !is_redirect(rs->status) || !rs->location || st->hops >= CV_HTTP_MAX_REDIRECTS)
        return 0;
    st->hops++;
    char *next = strdup(rs->location);
    if (!next)
        return CV_ENOMEM;
    free(st->url);
    st->url = next;
    if (rs->status == 303 || ((rs->status == 301 || rs->status == 302) && strcmp(st->method, "POST") == 0)) {
        if (strcmp(st->method, "HEAD") != 0) {
            free(st->method);
            st->method = strdup("GET");
            if (!st->method)
                return CV_ENOMEM;
        }
        st->has_body = 0;
    }
    return 1;
}

/* Releases `st`; when rc is 0, hands out the headers sent and *authz. */
static void send_end(struct send *st, int rc, jv *sent, jv *authz)
{
    if (st->auth_hl) {
        st->auth_hl->next = NULL;
        curl_slist_free_all(st->auth_hl);
    }
    if (rc == CV_OK) {
        *sent = st->headers;
        st->headers = jv_null();
        if (authz)
            *authz = jv_copy(st->a.authz);
    }
    jv_free(st->headers);
    cv__auth_cleanup(&st->a);
    curl_slist_free_all(st->hl);
    free(st->body);
    free(st->method);
    free(st->url);
    free(st->first_host);
    memset(st, 0, sizeof *st);
}

static int http_send(const cv_effect_env *env, struct cv_http_call *c, struct cv_http_resp *rs,
                     jv *sent, jv *authz, jv *err)
{
    struct send st;
    memset(rs, 0, sizeof *rs);
    rs->headers = jv_null();
    *sent = jv_null();
    int rc = send_begin(env, c, &st, err);
    while (rc == CV_OK) {
        send_hop(&st);
        cv__http_resp_cleanup(rs);
        rc = cv__http_exchange(env, &st.rq, rs, err);
        if (rc)
            break;
        int f = send_follow(&st, c, rs);
        if (f <= 0) {
            rc = f;
            break;
        }
    }
    send_end(&st, rc, sent, authz);
    return rc;
}

/* The output of a call from its final response (rc from sending it; rs,
 * sent and az consumed): the status judged, then content, response or raw. */
static int call_output(struct cv_http_call *c, int rc, struct cv_http_resp *rs, jv sent, jv az, jv *out,
                       jv *authz)
{
    if (rc) {
        if (rc != CV_EFAULT)
            *out = jv_null();
        goto done;
    }
    long hi = c->redirect ? 399 : 299;
    if (rs->status < 200 || rs->status > hi) {
        *out = failure_error(c->method, c->url, rs);
        rc = CV_EFAULT;
        goto done;
    }
    switch (c->output) {
    case CV_HTTP_OUT_RAW: {
        char *b = cv__base64((const unsigned char *)rs->body, rs->len);
        if (!b) {
            rc = CV_ENOMEM;
            *out = jv_null();
            goto done;
        }
        *out = jv_string(b);
        free(b);
        break;
    }
    case CV_HTTP_OUT_RESPONSE: {
        jv req = jv_object();
        req = jv_object_set(req, jv_string("method"), jv_string(c->method));
        req = jv_object_set(req, jv_string("uri"), jv_string(c->url));
        req = jv_object_set(req, jv_string("headers"), sent);
        sent = jv_null();
        jv r = jv_object();
        r = jv_object_set(r, jv_string("request"), req);
        r = jv_object_set(r, jv_string("statusCode"), jv_number((double)rs->status));
        r = jv_object_set(r, jv_string("headers"), jv_copy(rs->headers));
        r = jv_object_set(r, jv_string("content"), decode_content(rs));
        *out = r;
        break;
    }
    default:
        *out = decode_content(rs);
    }
    if (authz) {
        *authz = az;
        az = jv_null();
    }
done:
    jv_free(sent);
    jv_free(az);
    cv__http_resp_cleanup(rs);
    return rc;
}

int cv__http_call_perform(const cv_effect_env *env, struct cv_http_call *c, jv *out, jv *authz)
{
    struct cv_http_resp rs;
    jv sent = jv_null(), az = jv_null();
    if (authz)
        *authz = jv_null();
    int rc = http_send(env, c, &rs, &sent, &az, out);
    return call_output(c, rc, &rs, sent, az, out, authz);
}

/* ======================================================================
 * call: http
 * ====================================================================== */

/* Reads `output` (v consumed). */
static int parse_output(jv v, enum cv_http_output *o, jv *err)
{
    int rc = CV_OK;
    *o = CV_HTTP_OUT_CONTENT;
    if (!jv_is_valid(v) || jv_get_kind(v) == JV_KIND_NULL) {
        jv_free(v);
        return CV_OK;
    }
    const char *s = jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : "";
    if (strcmp(s, "content") == 0)
        *o = CV_HTTP_OUT_CONTENT;
    else if (strcmp(s, "response") == 0)
        *o = CV_HTTP_OUT_RESPONSE;
    else if (strcmp(s, "raw") == 0)
        *o = CV_HTTP_OUT_RAW;
    else {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid Output",
                              "output must be content, response or raw, not '%s'", s);
        rc = CV_EFAULT;
    }
    jv_free(v);
    return rc;
}

int cv__http_call_options(jv args, struct cv_http_call *c, jv *err)
{
    int rc = parse_output(jv_object_get(jv_copy(args), jv_string("output")), &c->output, err);
    if (rc)
        return rc;
    jv r = jv_object_get(jv_copy(args), jv_string("redirect"));
    c->redirect = jv_get_kind(r) == JV_KIND_TRUE;
    jv_free(r);
    return CV_OK;
}

/* Reads a `call: http`'s `with` (args and input borrowed) into c (initialised
 * by the caller): 0, CV_ENOMEM, or CV_EFAULT with *out = the error. */
static int call_parse(jv args, jv input, struct cv_http_call *c, jv *out)
{
    int rc = CV_OK;
    if (jv_get_kind(args) != JV_KIND_OBJECT) {
        *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid HTTP Call",
                             "call: http needs a `with` object");
        rc = CV_EFAULT;
        goto out;
    }

    jv method = jv_object_get(jv_copy(args), jv_string("method"));
    if (jv_get_kind(method) != JV_KIND_STRING || jv_string_length_bytes(jv_copy(method)) == 0) {
        jv_free(method);
        *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid HTTP Call",
                             "call: http needs a method");
        rc = CV_EFAULT;
        goto out;
    }
    c->method = strdup(jv_string_value(method));
    jv_free(method);

    jv ep = jv_object_get(jv_copy(args), jv_string("endpoint"));
    jv uri = jv_invalid();
    if (jv_get_kind(ep) == JV_KIND_STRING) {
        uri = ep;
    } else if (jv_get_kind(ep) == JV_KIND_OBJECT) {
        uri = jv_object_get(jv_copy(ep), jv_string("uri"));
        jv au = jv_object_get(ep, jv_string("authentication"));
        if (jv_is_valid(au)) {
            jv_free(c->auth);
            c->auth = au;
        } else {
            jv_free(au);
        }
    } else {
        jv_free(ep);
    }
    if (jv_get_kind(uri) != JV_KIND_STRING) {
        jv_free(uri);
        *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid HTTP Call",
                             "call: http needs an endpoint (a URI or {uri, authentication})");
        rc = CV_EFAULT;
        goto out;
    }
    const char *why = NULL;
    rc = cv__uri_template_expand(jv_string_value(uri), input, &c->url, &why);
    if (rc == CV_ENOMEM) {
        jv_free(uri);
        *out = jv_null();
        goto out;
    }
    if (rc) {
        *out = cv__error_newf(CV_ERR_EXPRESSION, 400, "Invalid URI Template", "%s: %s",
                              jv_string_value(uri), why ? why : "cannot expand");
        jv_free(uri);
        rc = CV_EFAULT;
        goto out;
    }
    jv_free(uri);
    if (!c->method || !c->url) {
        rc = CV_ENOMEM;
        *out = jv_null();
        goto out;
    }

    jv q = jv_object_get(jv_copy(args), jv_string("query"));
    if (jv_get_kind(q) == JV_KIND_OBJECT)
        rc = cv__http_url_add_query(&c->url, q);
    else if (jv_is_valid(q) && jv_get_kind(q) != JV_KIND_NULL) {
        *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid HTTP Call",
                             "query must be an object");
        rc = CV_EFAULT;
    }
    jv_free(q);
    if (rc) {
        if (rc != CV_EFAULT)
            *out = jv_null();
        goto out;
    }

    jv h = jv_object_get(jv_copy(args), jv_string("headers"));
    if (jv_get_kind(h) == JV_KIND_OBJECT) {
        jv_free(c->headers);
        c->headers = h;
    } else if (jv_is_valid(h) && jv_get_kind(h) != JV_KIND_NULL) {
        jv_free(h);
        *out = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid HTTP Call",
                             "headers must be an object");
        rc = CV_EFAULT;
        goto out;
    } else {
        jv_free(h);
    }
    jv_free(c->body);
    c->body = jv_object_get(jv_copy(args), jv_string("body"));
    rc = cv__http_call_options(args, c, out);
out:
    return rc;
}

int cv__http_call(const cv_effect_env *env, jv args, jv input, jv *out, jv *authz)
{
    struct cv_http_call c;
    cv__http_call_init(&c);
    if (authz)
        *authz = jv_null();
    int rc = call_parse(args, input, &c, out);
    if (!rc)
        rc = cv__http_call_perform(env, &c, out, authz);
    cv__http_call_cleanup(&c);
    jv_free(args);
    jv_free(input);
    return rc;
}

/* ======================================================================
 * call: http on the I/O thread
 * ====================================================================== */

/* One `call: http` in flight on the I/O thread: the same steps as
 * cv__http_call (parse, send_begin, a hop per exchange, call_output), each
 * exchange handed to the I/O thread and continued there when it ends. */
struct http_op {
    struct cv_io_req io; /* first: the I/O thread hands it back */
    struct cv_io *loop;
    const cv_effect_env *env;
    struct cv_http_call c;
    struct send st;
    int begun; /* st holds something to release */
    struct exch xs;
    struct cv_http_resp rs;
    int rc; /* a result known before any exchange (io.h == NULL) */
    jv out;
    cv_http_done_fn done;
    void *ud;
};

struct cv_io *cv__http_ctx_io(struct cv_http_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    if (!c->io && !c->io_failed) {
        c->io = cv__io_new();
        c->io_failed = c->io == NULL;
    }
    struct cv_io *io = c->io;
    pthread_mutex_unlock(&c->mu);
    return io;
}

/* OAuth2 and OIDC policies may have to fetch a token first: those calls run
 * as blocking ones (on a thread of their own). */
static int auth_needs_exchange(jv auth /* borrowed */)
{
    if (jv_get_kind(auth) != JV_KIND_OBJECT)
        return 0;
    int r = jv_object_has(jv_copy(auth), jv_string("oauth2")) || jv_object_has(jv_copy(auth), jv_string("oidc"));
    return r;
}

static void op_complete(struct http_op *op, int rc, jv out, jv authz)
{
    if (op->begun)
        send_end(&op->st, CV_EFAULT, NULL, NULL);
    exch_release(&op->xs);
    cv__http_resp_cleanup(&op->rs);
    cv__http_call_cleanup(&op->c);
    cv_http_done_fn done = op->done;
    void *ud = op->ud;
    free(op);
    done(ud, rc, out, authz);
}

/* A result known now, reported from the I/O thread like any other. */
static void op_defer(struct http_op *op, int rc, jv out)
{
    op->rc = rc;
    op->out = rc == CV_EFAULT ? out : (jv_free(out), jv_null());
    op->io.h = NULL;
    cv__io_submit(op->loop, &op->io);
}

/* Prepares the current hop and hands it to the I/O thread. */
static void op_hop(struct http_op *op)
{
    jv err = jv_null();
    send_hop(&op->st);
    cv__http_resp_cleanup(&op->rs);
    exch_release(&op->xs);
    int rc = exch_prepare(op->env, &op->st.rq, &op->xs, &op->rs, &err);
    if (rc) {
        op_defer(op, rc, err);
        return;
    }
    op->io.h = op->xs.h;
    op->io.cancel = op->env->cancel;
    cv__io_submit(op->loop, &op->io);
}

static void op_io_done(struct cv_io_req *r, CURLcode res, int cancelled)
{
    struct http_op *op = (struct http_op *)r;
    if (!r->h) {
        op_complete(op, op->rc, op->out, jv_null());
        return;
    }
    if (cancelled) {
        op_complete(op, CV_ECANCELED, jv_null(), jv_null());
        return;
    }
    jv err = jv_null();
    int rc = exch_finish(op->env, &op->st.rq, &op->xs, res, &err);
    exch_release(&op->xs);
    op->io.h = NULL;
    if (rc) {
        op_complete(op, rc, rc == CV_EFAULT ? err : (jv_free(err), jv_null()), jv_null());
        return;
    }
    jv_free(err);
    int f = send_follow(&op->st, &op->c, &op->rs);
    if (f == 1) {
        op_hop(op);
        return;
    }
    jv sent = jv_null(), az = jv_null(), out = jv_null(), authz = jv_null();
    if (f < 0) {
        op_complete(op, CV_ENOMEM, jv_null(), jv_null());
        return;
    }
    send_end(&op->st, CV_OK, &sent, &az);
    op->begun = 0;
    rc = call_output(&op->c, CV_OK, &op->rs, sent, az, &out, &authz);
    op_complete(op, rc, out, authz);
}

static struct http_op *op_new(struct cv_io *loop, const cv_effect_env *env, cv_http_done_fn done, void *ud)
{
    struct http_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->loop = loop;
    op->env = env;
    op->done = done;
    op->ud = ud;
    op->io.done = op_io_done;
    op->out = jv_null();
    op->rs.headers = jv_null();
    cv__http_call_init(&op->c);
    return op;
}

/* Sends op->c (prepared): authentication without an exchange, headers, body,
 * then the first hop; failures are reported through the I/O thread. */
static void op_send(struct http_op *op)
{
    jv out = jv_null();
    int rc = send_begin(op->env, &op->c, &op->st, &out);
    op->begun = 1;
    if (rc)
        op_defer(op, rc, out);
    else
        op_hop(op);
}

int cv__http_call_report(const cv_effect_env *env, int rc, jv out, cv_http_done_fn done, void *ud)
{
    struct cv_io *loop = env->http ? cv__http_ctx_io(env->http) : NULL;
    struct http_op *op = loop ? op_new(loop, env, done, ud) : NULL;
    if (!op) {
        jv_free(out);
        return loop ? CV_ENOMEM : CV_EUNSUPPORTED;
    }
    op_defer(op, rc, out);
    return CV_OK;
}

int cv__http_call_start_prepared(const cv_effect_env *env, struct cv_http_call *c, cv_http_done_fn done,
                                 void *ud)
{
    struct cv_io *loop = env->http ? cv__http_ctx_io(env->http) : NULL;
    if (!loop || auth_needs_exchange(c->auth))
        return CV_EUNSUPPORTED;
    struct http_op *op = op_new(loop, env, done, ud);
    if (!op)
        return CV_ENOMEM;
    cv__http_call_cleanup(&op->c);
    op->c = *c; /* taken over */
    cv__http_call_init(c);
    op_send(op);
    return CV_OK;
}

int cv__http_call_start(const cv_effect_env *env, jv args, jv input, cv_http_done_fn done, void *ud)
{
    struct cv_io *loop = env->http ? cv__http_ctx_io(env->http) : NULL;
    if (!loop)
        return CV_EUNSUPPORTED;
    struct http_op *op = op_new(loop, env, done, ud);
    if (!op)
        return CV_ENOMEM;
    jv out = jv_null();
    int rc = call_parse(args, input, &op->c, &out);
    if (!rc && auth_needs_exchange(op->c.auth)) {
        cv__http_call_cleanup(&op->c);
        free(op);
        return CV_EUNSUPPORTED;
    }
    if (rc)
        op_defer(op, rc, out);
    else
        op_send(op);
    return CV_OK;
}

/* ======================================================================
 * External resources
 * ====================================================================== */

static int read_file(const char *path, const char *uri, char **text, size_t *len, jv *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        int st = (e == ENOENT || e == ENOTDIR) ? 404 : (e == EACCES ? 403 : 500);
        *err = cv__error_newf(CV_ERR_COMMUNICATION, st, cv__http_reason(st), "cannot read %s: %s",
                              uri, strerror(e));
        return CV_EFAULT;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    int rc = CV_OK;
    while (b) {
        if (n + 4096 + 1 > cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (n > CV_HTTP_MAX_BODY) {
            *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Resource Too Large",
                                  "%s exceeds %u MiB", uri, CV_HTTP_MAX_BODY >> 20);
            rc = CV_EFAULT;
            break;
        }
        if (got == 0) {
            if (ferror(f)) {
                *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Internal Server Error",
                                      "cannot read %s", uri);
                rc = CV_EFAULT;
            }
            break;
        }
    }
    fclose(f);
    if (!b)
        return CV_ENOMEM;
    if (rc) {
        free(b);
        return rc;
    }
    b[n] = '\0';
    *text = b;
    *len = n;
    return CV_OK;
}

int cv__fetch_resource(const cv_effect_env *env, jv endpoint, char **text, size_t *len, jv *err)
{
    *text = NULL;
    *len = 0;
    jv uri = jv_invalid(), auth = jv_null();
    if (jv_get_kind(endpoint) == JV_KIND_STRING) {
        uri = jv_copy(endpoint);
    } else if (jv_get_kind(endpoint) == JV_KIND_OBJECT) {
        uri = jv_object_get(jv_copy(endpoint), jv_string("uri"));
        jv au = jv_object_get(jv_copy(endpoint), jv_string("authentication"));
        if (jv_is_valid(au)) {
            jv_free(auth);
            auth = au;
        } else {
            jv_free(au);
        }
    }
    if (jv_get_kind(uri) != JV_KIND_STRING) {
        jv_free(uri);
        jv_free(auth);
        *err = cv__error_new(CV_ERR_CONFIGURATION, 400, "Invalid Endpoint",
                             "an external resource needs a URI");
        return CV_EFAULT;
    }
    const char *u = jv_string_value(uri);
    int rc;
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        struct cv_http_call c;
        struct cv_http_resp rs;
        jv sent = jv_null();
        cv__http_call_init(&c);
        c.method = strdup("GET");
        c.url = strdup(u);
        c.headers = jv_object_set(c.headers, jv_string("Accept"),
                                  jv_string("application/json, application/yaml;q=0.9, */*;q=0.8"));
        jv_free(c.auth);
        c.auth = auth;
        auth = jv_null();
        c.redirect = 1;
        if (!c.method || !c.url) {
            cv__http_call_cleanup(&c);
            jv_free(uri);
            return CV_ENOMEM;
        }
        rc = http_send(env, &c, &rs, &sent, NULL, err);
        if (rc == CV_OK && (rs.status < 200 || rs.status > 299)) {
            *err = failure_error(c.method, c.url, &rs);
            rc = CV_EFAULT;
        }
        if (rc == CV_OK) {
            *text = rs.body;
            *len = rs.len;
            rs.body = NULL;
        }
        jv_free(sent);
        cv__http_resp_cleanup(&rs);
        cv__http_call_cleanup(&c);
    } else if (strncasecmp(u, "file://", 7) == 0) {
        const char *p = u + 7;
        if (strncasecmp(p, "localhost/", 10) == 0)
            p += 9;
        char *path = curl_easy_unescape(NULL, p, 0, NULL);
        rc = path ? read_file(path, u, text, len, err) : CV_ENOMEM;
        curl_free(path);
    } else if (strstr(u, "://")) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Unsupported URL Scheme",
                              "cannot fetch '%s' (http, https and file only)", u);
        rc = CV_EFAULT;
    } else {
        rc = read_file(u, u, text, len, err);
    }
    jv_free(uri);
    jv_free(auth);
    return rc;
}

int cv__fetch_text(const cv_effect_env *env, const char *uri, jv *out)
{
    char *text = NULL;
    size_t len = 0;
    jv err = jv_null();
    jv ep = jv_string(uri ? uri : "");
    int rc = cv__fetch_resource(env, ep, &text, &len, &err);
    jv_free(ep);
    if (rc == CV_OK) {
        *out = jv_string_sized(text, (int)len);
        jv_free(err);
    } else if (rc == CV_EFAULT) {
        *out = err;
    } else {
        jv_free(err);
        *out = jv_null();
    }
    free(text);
    return rc;
}
