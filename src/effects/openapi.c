/*
 * openapi.c — `call: openapi`: builds an HTTP request from an OpenAPI
 * (Swagger 2.0 or OpenAPI 3.x) document and an operationId, then runs it
 * through cv__http_call_perform like `call: http` (same output, redirect,
 * authentication and error rules).
 *
 * Documents are fetched with cv__fetch_resource (host map applies) and cached
 * per URI in cv_http_ctx as JSON text for ten minutes; each call re-parses its
 * own copy, because jv values must not be shared between threads.
 *
 * Decisions:
 * - Base URL. Swagger 2: `schemes` (https preferred when listed, else the
 *   first, else the document's scheme) + `host` (default: the document's
 *   host) + `basePath`. OpenAPI 3: the first of the operation's, the path's or
 *   the document's `servers`, server variables replaced by their defaults, a
 *   relative URL resolved against the document URI.
 * - Parameters are looked up by name in `parameters`; path-level declarations
 *   apply unless the operation redeclares the same name and `in`; local $refs
 *   are followed. A missing required parameter is a validation error (400).
 * - Arrays: Swagger 2 collectionFormat (csv default; multi = repeated keys,
 *   ssv, tsv, pipes); OpenAPI 3 query arrays follow `explode` (default true:
 *   repeated keys; false: comma-joined). Header and path arrays are joined
 *   with commas. Cookies go in one Cookie header.
 * - Bodies: a Swagger 2 `in: body` parameter is the JSON body; `in: formData`
 *   parameters form an x-www-form-urlencoded body. For an OpenAPI 3
 *   requestBody, a `body` entry in `parameters` (when no declared parameter is
 *   named `body`) is the whole body; otherwise every entry that is not a
 *   declared parameter becomes a property of a JSON object body. The media
 *   type is application/json (or any +json) when the operation offers it,
 *   else form-urlencoded when offered, else the first one listed.
 */
#include "common/util.h"
#include "conveyor.h"
#include "effects/http.h"
#include "effects/http_int.h"
#include "json/yaml.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DOC_TTL_MS (10 * 60 * 1000)
#define REF_DEPTH_MAX 16

static const char *const METHODS[] = {"get",  "put",   "post",  "delete",
                                      "options", "head", "patch", "trace"};

static jv cfg_error(const char *title, const char *detail)
{
    return cv__error_new(CV_ERR_CONFIGURATION, 400, title, detail);
}

/* ---- the document --------------------------------------------------------- */

static int parse_doc(const char *text, size_t len, const char *uri, jv *doc, jv *err)
{
    const char *p = text;
    while (p < text + len && isspace((unsigned char)*p))
        p++;
    if (p < text + len && *p == '{') {
        jv v = jv_parse_sized(text, (int)len);
        if (jv_get_kind(v) == JV_KIND_OBJECT) {
            *doc = v;
            return CV_OK;
        }
        jv_free(v);
    }
    jv diags = jv_array(), v = jv_invalid();
    int rc = cv__yaml_parse(text, len, uri, &v, NULL, &diags);
    if (rc == CV_OK && jv_get_kind(v) == JV_KIND_OBJECT) {
        jv_free(diags);
        *doc = v;
        return CV_OK;
    }
    jv msg = jv_array_get(jv_copy(diags), 0);
    jv m = jv_get_kind(msg) == JV_KIND_OBJECT ? jv_object_get(jv_copy(msg), jv_string("message"))
                                              : jv_copy(msg);
    *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid OpenAPI Document", "%s: %s", uri,
                          jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m)
                                                           : "not a JSON or YAML object");
    jv_free(m);
    jv_free(msg);
    jv_free(diags);
    jv_free(v);
    return CV_EFAULT;
}

/* Fetches (or takes from the cache) and parses the document at `endpoint`
 * (borrowed). cached_only: CV_EUNSUPPORTED when it is not in the cache. */
static int load_doc(const cv_effect_env *env, jv endpoint, const char *uri, int cached_only, jv *doc, jv *err)
{
    char *key = NULL;
    if (asprintf(&key, "doc\n%s", uri) < 0)
        return CV_ENOMEM;
    char *cached = cv__http_cache_get(env->http, key);
    if (cached) {
        jv v = jv_parse(cached);
        free(cached);
        if (jv_get_kind(v) == JV_KIND_OBJECT) {
            free(key);
            *doc = v;
            return CV_OK;
        }
        jv_free(v);
    }
    if (cached_only) { /* fetching it would block: the caller runs the call as a blocking one */
        free(key);
        return CV_EUNSUPPORTED;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = cv__fetch_resource(env, endpoint, &text, &len, err);
    if (rc == CV_OK)
        rc = parse_doc(text, len, uri, doc, err);
    free(text);
    if (rc == CV_OK && env->http) {
        jv s = jv_dump_string(jv_copy(*doc), 0);
        cv__http_cache_put(env->http, key, jv_string_value(s), cv__now_ms() + DOC_TTL_MS);
        jv_free(s);
    }
    free(key);
    return rc;
}

/* Follows local "$ref": "#/a/b" chains; returns the target (v consumed). */
static jv deref(jv doc, jv v)
{
    for (int depth = 0; depth < REF_DEPTH_MAX && jv_get_kind(v) == JV_KIND_OBJECT; depth++) {
        jv ref = jv_object_get(jv_copy(v), jv_string("$ref"));
        if (jv_get_kind(ref) != JV_KIND_STRING || strncmp(jv_string_value(ref), "#/", 2) != 0) {
            jv_free(ref);
            return v;
        }
        jv cur = jv_copy(doc);
        const char *p = jv_string_value(ref) + 1;
        while (*p == '/' && jv_is_valid(cur)) {
            p++;
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            jv tok = jv_string("");
            for (size_t i = 0; i < n; i++) {
                if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
                    tok = jv_string_append_str(tok, p[i + 1] == '0' ? "~" : "/");
                    i++;
                } else {
                    tok = jv_string_append_buf(tok, p + i, 1);
                }
            }
            if (jv_get_kind(cur) == JV_KIND_OBJECT) {
                cur = jv_object_get(cur, tok);
            } else if (jv_get_kind(cur) == JV_KIND_ARRAY) {
                int idx = atoi(jv_string_value(tok));
                jv_free(tok);
                cur = jv_array_get(cur, idx);
            } else {
                jv_free(tok);
                jv_free(cur);
                cur = jv_invalid();
            }
            p += n;
        }
        jv_free(ref);
        jv_free(v);
        if (!jv_is_valid(cur)) {
            jv_free(cur);
            return jv_null();
        }
        v = cur;
    }
    return v;
}

/* ---- the operation ------------------------------------------------------- */

struct op {
    jv path_item; /* the path's object */
    jv op;        /* the operation object */
    char *path;   /* "/pet/{petId}" */
    const char *method;
};

static int find_op(jv doc, const char *op_id, struct op *o)
{
    jv paths = jv_object_get(jv_copy(doc), jv_string("paths"));
    int found = 0;
    if (jv_get_kind(paths) == JV_KIND_OBJECT) {
        jv_object_foreach(paths, k, item)
        {
            item = deref(doc, item);
            for (size_t i = 0; !found && jv_get_kind(item) == JV_KIND_OBJECT &&
                               i < sizeof METHODS / sizeof *METHODS;
                 i++) {
                jv op = jv_object_get(jv_copy(item), jv_string(METHODS[i]));
                jv id = jv_get_kind(op) == JV_KIND_OBJECT
                            ? jv_object_get(jv_copy(op), jv_string("operationId"))
                            : jv_invalid();
                if (jv_get_kind(id) == JV_KIND_STRING && strcmp(jv_string_value(id), op_id) == 0) {
                    found = 1;
                    o->path_item = jv_copy(item);
                    o->op = jv_copy(op);
                    o->path = strdup(jv_string_value(k));
                    o->method = METHODS[i];
                }
                jv_free(id);
                jv_free(op);
            }
            jv_free(k);
            jv_free(item);
        }
    }
    jv_free(paths);
    return found;
}

/* ---- the base URL -------------------------------------------------------- */

static char *uri_part(const char *uri, CURLUPart part)
{
    CURLU *u = curl_url();
    char *s = NULL, *r = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, uri, 0) == CURLUE_OK &&
        curl_url_get(u, part, &s, 0) == CURLUE_OK)
        r = strdup(s);
    curl_free(s);
    curl_url_cleanup(u);
    return r;
}

static int is_http(const char *uri)
{
    return strncasecmp(uri, "http://", 7) == 0 || strncasecmp(uri, "https://", 8) == 0;
}

static int swagger2_base(jv doc, const char *doc_uri, char **base, jv *err)
{
    char *scheme = NULL, *host = NULL, *bp = NULL;
    jv schemes = jv_object_get(jv_copy(doc), jv_string("schemes"));
    if (jv_get_kind(schemes) == JV_KIND_ARRAY) {
        jv_array_foreach(schemes, i, s)
        {
            if (jv_get_kind(s) == JV_KIND_STRING) {
                if (strcasecmp(jv_string_value(s), "https") == 0) {
                    free(scheme);
                    scheme = strdup("https");
                } else if (!scheme && strncasecmp(jv_string_value(s), "http", 4) == 0) {
                    scheme = strdup(jv_string_value(s));
                }
            }
            jv_free(s);
        }
    }
    jv_free(schemes);
    jv h = jv_object_get(jv_copy(doc), jv_string("host"));
    if (jv_get_kind(h) == JV_KIND_STRING)
        host = strdup(jv_string_value(h));
    jv_free(h);
    jv b = jv_object_get(jv_copy(doc), jv_string("basePath"));
    bp = strdup(jv_get_kind(b) == JV_KIND_STRING ? jv_string_value(b) : "");
    jv_free(b);

    if ((!scheme || !host) && !is_http(doc_uri)) {
        *err = cfg_error("Invalid OpenAPI Document",
                         "the Swagger document has no host or scheme and was not fetched over HTTP");
        free(scheme);
        free(host);
        free(bp);
        return CV_EFAULT;
    }
    if (!scheme)
        scheme = uri_part(doc_uri, CURLUPART_SCHEME);
    if (!host) {
        char *hn = uri_part(doc_uri, CURLUPART_HOST), *port = uri_part(doc_uri, CURLUPART_PORT);
        if (hn && port && asprintf(&host, "%s:%s", hn, port) < 0)
            host = NULL;
        else if (hn && !port)
            host = strdup(hn);
        free(hn);
        free(port);
    }
    int rc = CV_OK;
    size_t bl = bp ? strlen(bp) : 0;
    while (bl && bp[bl - 1] == '/')
        bl--;
    if (!scheme || !host || !bp ||
        asprintf(base, "%s://%s%s%.*s", scheme, host, (bl && bp[0] != '/') ? "/" : "", (int)bl,
                 bp) < 0)
        rc = CV_ENOMEM;
    free(scheme);
    free(host);
    free(bp);
    return rc;
}

/* The first server of the first list that has one (operation, path, document). */
static jv first_server(jv doc, const struct op *o)
{
    jv lists[3] = {jv_object_get(jv_copy(o->op), jv_string("servers")),
                   jv_object_get(jv_copy(o->path_item), jv_string("servers")),
                   jv_object_get(jv_copy(doc), jv_string("servers"))};
    jv s = jv_null();
    for (int i = 0; i < 3; i++) {
        if (jv_get_kind(s) == JV_KIND_NULL && jv_get_kind(lists[i]) == JV_KIND_ARRAY &&
            jv_array_length(jv_copy(lists[i])) > 0) {
            jv_free(s);
            s = jv_array_get(jv_copy(lists[i]), 0);
        }
        jv_free(lists[i]);
    }
    return s;
}

static int oas3_base(jv doc, const struct op *o, const char *doc_uri, char **base, jv *err)
{
    jv server = first_server(doc, o);
    jv url = jv_get_kind(server) == JV_KIND_OBJECT
                 ? jv_object_get(jv_copy(server), jv_string("url"))
                 : jv_invalid();
    jv vars = jv_get_kind(server) == JV_KIND_OBJECT
                  ? jv_object_get(jv_copy(server), jv_string("variables"))
                  : jv_invalid();
    jv_free(server);
    jv acc = jv_string("");
    const char *u = jv_get_kind(url) == JV_KIND_STRING ? jv_string_value(url) : "/";
    while (*u) {
        const char *e = *u == '{' ? strchr(u, '}') : NULL;
        if (!e) {
            acc = jv_string_append_buf(acc, u, 1);
            u++;
            continue;
        }
        jv name = jv_string_sized(u + 1, (int)(e - u - 1));
        jv var = jv_get_kind(vars) == JV_KIND_OBJECT ? jv_object_get(jv_copy(vars), name)
                                                     : (jv_free(name), jv_invalid());
        jv def = jv_get_kind(var) == JV_KIND_OBJECT
                     ? jv_object_get(jv_copy(var), jv_string("default"))
                     : jv_invalid();
        char *t = jv_is_valid(def) ? cv__scalar_text(def) : NULL;
        if (t)
            acc = jv_string_append_str(acc, t);
        free(t);
        jv_free(def);
        jv_free(var);
        u = e + 1;
    }
    jv_free(url);
    jv_free(vars);

    int rc = CV_OK;
    const char *s = jv_string_value(acc);
    if (is_http(s)) {
        *base = strdup(s);
    } else if (!is_http(doc_uri)) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid OpenAPI Document",
                              "server URL '%s' is relative and the document was not fetched "
                              "over HTTP",
                              s);
        rc = CV_EFAULT;
    } else {
        /* Resolve against the document URI, as RFC 3986 says (libcurl does it). */
        CURLU *cu = curl_url();
        char *r = NULL;
        if (cu && curl_url_set(cu, CURLUPART_URL, doc_uri, 0) == CURLUE_OK &&
            curl_url_set(cu, CURLUPART_URL, *s ? s : "/", 0) == CURLUE_OK &&
            curl_url_get(cu, CURLUPART_URL, &r, 0) == CURLUE_OK)
            *base = strdup(r);
        else
            *base = NULL;
        curl_free(r);
        curl_url_cleanup(cu);
        /* A resolved "/" base carries the query of nothing; drop "?..." if any. */
        if (*base) {
            char *q = strchr(*base, '?');
            if (q)
                *q = '\0';
        }
    }
    jv_free(acc);
    if (rc == CV_OK && !*base)
        rc = CV_ENOMEM;
    if (rc == CV_OK) {
        size_t n = strlen(*base);
        while (n && (*base)[n - 1] == '/')
            (*base)[--n] = '\0';
    }
    return rc;
}

/* ---- parameters ---------------------------------------------------------- */

/* Declared parameters: the path's, overridden by the operation's (same name and in). */
static jv declared_params(jv doc, const struct op *o)
{
    jv out = jv_array();
    jv lists[2] = {jv_object_get(jv_copy(o->op), jv_string("parameters")),
                   jv_object_get(jv_copy(o->path_item), jv_string("parameters"))};
    for (int l = 0; l < 2; l++) {
        if (jv_get_kind(lists[l]) != JV_KIND_ARRAY)
            continue;
        jv_array_foreach(lists[l], i, p)
        {
            p = deref(doc, p);
            if (jv_get_kind(p) == JV_KIND_OBJECT) {
                jv name = jv_object_get(jv_copy(p), jv_string("name"));
                jv in = jv_object_get(jv_copy(p), jv_string("in"));
                int dup = 0;
                jv_array_foreach(out, j, q)
                {
                    jv qn = jv_object_get(jv_copy(q), jv_string("name"));
                    jv qi = jv_object_get(jv_copy(q), jv_string("in"));
                    if (jv_equal(jv_copy(qn), jv_copy(name)) && jv_equal(jv_copy(qi), jv_copy(in)))
                        dup = 1;
                    jv_free(qn);
                    jv_free(qi);
                    jv_free(q);
                }
                jv_free(name);
                jv_free(in);
                if (!dup)
                    out = jv_array_append(out, jv_copy(p));
            }
            jv_free(p);
        }
    }
    jv_free(lists[0]);
    jv_free(lists[1]);
    return out;
}

static char *str_prop(jv obj, const char *key)
{
    jv v = jv_get_kind(obj) == JV_KIND_OBJECT ? jv_object_get(jv_copy(obj), jv_string(key))
                                              : jv_invalid();
    char *s = jv_get_kind(v) == JV_KIND_STRING ? strdup(jv_string_value(v)) : NULL;
    jv_free(v);
    return s;
}

static int bool_prop(jv obj, const char *key, int dflt)
{
    jv v = jv_object_get(jv_copy(obj), jv_string(key));
    int r = jv_get_kind(v) == JV_KIND_TRUE ? 1 : jv_get_kind(v) == JV_KIND_FALSE ? 0 : dflt;
    jv_free(v);
    return r;
}

/* Joins the items of an array (borrowed) with `sep`, each item as text. */
static char *join_items(jv arr, const char *sep)
{
    jv acc = jv_string("");
    jv_array_foreach(arr, i, item)
    {
        char *t = cv__scalar_text(item);
        if (i > 0)
            acc = jv_string_append_str(acc, sep);
        acc = jv_string_append_str(acc, t ? t : "");
        free(t);
        jv_free(item);
    }
    char *r = strdup(jv_string_value(acc));
    jv_free(acc);
    return r;
}

static char *value_text(jv v, const char *sep)
{
    return jv_get_kind(v) == JV_KIND_ARRAY ? join_items(v, sep) : cv__scalar_text(v);
}

static char *escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    return r;
}

/* Replaces every "{name}" in *path (malloc'd) with `value` (already escaped). */
static int path_subst(char **path, const char *name, const char *value)
{
    char *pat = NULL;
    if (asprintf(&pat, "{%s}", name) < 0)
        return CV_ENOMEM;
    char *hit;
    while ((hit = strstr(*path, pat))) {
        char *n = NULL;
        if (asprintf(&n, "%.*s%s%s", (int)(hit - *path), *path, value, hit + strlen(pat)) < 0) {
            free(pat);
            return CV_ENOMEM;
        }
        free(*path);
        *path = n;
    }
    free(pat);
    return CV_OK;
}

static int add_query(char **url, const char *name, jv v, int repeat, const char *sep)
{
    char *ek = escape(name);
    int rc = ek ? CV_OK : CV_ENOMEM;
    if (rc == CV_OK && jv_get_kind(v) == JV_KIND_ARRAY && repeat) {
        jv_array_foreach(v, i, item)
        {
            char *t = rc == CV_OK ? cv__scalar_text(item) : NULL;
            char *et = t ? escape(t) : NULL;
            if (rc == CV_OK)
                rc = et ? cv__http_url_add_pair(url, ek, et) : CV_ENOMEM;
            free(t);
            free(et);
            jv_free(item);
        }
    } else if (rc == CV_OK) {
        char *t = value_text(v, sep);
        char *et = t ? escape(t) : NULL;
        rc = et ? cv__http_url_add_pair(url, ek, et) : CV_ENOMEM;
        free(t);
        free(et);
    }
    free(ek);
    return rc;
}

static const char *collection_sep(const char *fmt)
{
    if (!fmt || strcmp(fmt, "csv") == 0)
        return ",";
    if (strcmp(fmt, "ssv") == 0)
        return " ";
    if (strcmp(fmt, "tsv") == 0)
        return "\t";
    if (strcmp(fmt, "pipes") == 0)
        return "|";
    return ",";
}

/* Picks the request media type of an OpenAPI 3 requestBody (borrowed). */
static char *pick_media_type(jv rb)
{
    jv content = jv_object_get(jv_copy(rb), jv_string("content"));
    char *pick = NULL, *form = NULL, *first = NULL;
    if (jv_get_kind(content) == JV_KIND_OBJECT) {
        jv_object_foreach(content, k, v)
        {
            const char *t = jv_string_value(k);
            size_t n = strlen(t);
            if (!pick && (strcasecmp(t, "application/json") == 0 ||
                          (n > 5 && strcasecmp(t + n - 5, "+json") == 0)))
                pick = strdup(t);
            if (!form && strcasecmp(t, "application/x-www-form-urlencoded") == 0)
                form = strdup(t);
            if (!first)
                first = strdup(t);
            jv_free(k);
            jv_free(v);
        }
    }
    jv_free(content);
    char *r = pick ? pick : form ? form : first;
    if (r != pick)
        free(pick);
    if (r != form)
        free(form);
    if (r != first)
        free(first);
    return r ? r : strdup("application/json");
}

/* ---- call: openapi ------------------------------------------------------- */

/*
 * Turns a `call: openapi`'s `with` (args borrowed) into the HTTP call `c`
 * (initialised by the caller, cleaned up by it): document, operation, base,
 * parameters, body, authentication, options. 0, CV_ENOMEM, CV_EFAULT with
 * *out, or (cached_only) CV_EUNSUPPORTED when the document would have to be
 * fetched first.
 */
static int openapi_prepare(const cv_effect_env *env, jv args, int cached_only, struct cv_http_call *c,
                           jv *out)
{
    int rc = CV_OK;
    struct op o = {jv_null(), jv_null(), NULL, NULL};
    jv doc = jv_null(), endpoint = jv_null(), params = jv_null(), decl = jv_null();
    jv form = jv_object(), cookies = jv_array();
    char *uri = NULL, *base = NULL, *path = NULL, *op_id = NULL;
    int swagger2 = 0;
    *out = jv_null();

    if (jv_get_kind(args) != JV_KIND_OBJECT) {
        *out = cfg_error("Invalid OpenAPI Call", "call: openapi needs a `with` object");
        rc = CV_EFAULT;
        goto out;
    }
    /* document: {name?, endpoint} (endpoint: URI or {uri, authentication}) */
    jv d = jv_object_get(jv_copy(args), jv_string("document"));
    if (jv_get_kind(d) == JV_KIND_OBJECT) {
        endpoint = jv_object_get(d, jv_string("endpoint"));
    } else {
        jv_free(endpoint);
        endpoint = d;
    }
    uri = jv_get_kind(endpoint) == JV_KIND_STRING ? strdup(jv_string_value(endpoint))
                                                  : str_prop(endpoint, "uri");
    op_id = str_prop(args, "operationId");
    if (!uri || !op_id) {
        *out = cfg_error("Invalid OpenAPI Call",
                         !uri ? "call: openapi needs document.endpoint"
                              : "call: openapi needs an operationId");
        rc = CV_EFAULT;
        goto out;
    }
    jv_free(*out);
    rc = load_doc(env, endpoint, uri, cached_only, &doc, out);
    if (rc) {
        if (rc != CV_EFAULT)
            *out = jv_null();
        goto out;
    }
    *out = jv_null();

    if (!find_op(doc, op_id, &o)) {
        *out = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Operation Not Found",
                              "operation '%s' is not defined in %s", op_id, uri);
        rc = CV_EFAULT;
        goto out;
    }
    jv sw = jv_object_get(jv_copy(doc), jv_string("swagger"));
    swagger2 = jv_get_kind(sw) == JV_KIND_STRING;
    jv_free(sw);
    jv_free(*out);
    rc = swagger2 ? swagger2_base(doc, uri, &base, out) : oas3_base(doc, &o, uri, &base, out);
    if (rc) {
        if (rc != CV_EFAULT)
            *out = jv_null();
        goto out;
    }
    *out = jv_null();

    params = jv_object_get(jv_copy(args), jv_string("parameters"));
    if (jv_get_kind(params) != JV_KIND_OBJECT) {
        jv_free(params);
        params = jv_object();
    }
    decl = declared_params(doc, &o);
    path = strdup(o.path);
    if (!path) {
        rc = CV_ENOMEM;
        goto out;
    }
    jv query_pairs = jv_array(); /* [[name, value, repeat, sep]] applied after the path */
    int declared_body_name = 0;
    jv_array_foreach(decl, i, p)
    {
        char *name = str_prop(p, "name"), *in = str_prop(p, "in");
        if (rc == CV_OK && name && in) {
            if (strcmp(name, "body") == 0)
                declared_body_name = 1;
            jv v = jv_object_get(jv_copy(params), jv_string(name));
            int required = strcmp(in, "path") == 0 || bool_prop(p, "required", 0);
            if (!jv_is_valid(v) || jv_get_kind(v) == JV_KIND_NULL) {
                if (required) {
                    *out = cv__error_newf(CV_ERR_VALIDATION, 400, "Missing Parameter",
                                          "operation '%s' requires parameter '%s' (in %s)", op_id,
                                          name, in);
                    rc = CV_EFAULT;
                }
            } else if (strcmp(in, "path") == 0) {
                char *t = value_text(v, ",");
                char *et = t ? escape(t) : NULL;
                rc = et ? path_subst(&path, name, et) : CV_ENOMEM;
                free(t);
                free(et);
            } else if (strcmp(in, "query") == 0) {
                char *fmt = str_prop(p, "collectionFormat");
                int repeat = swagger2 ? (fmt && strcmp(fmt, "multi") == 0)
                                      : bool_prop(p, "explode", 1);
                const char *sep = swagger2 ? collection_sep(fmt) : ",";
                jv item = jv_array();
                item = jv_array_append(item, jv_string(name));
                item = jv_array_append(item, jv_copy(v));
                item = jv_array_append(item, jv_bool(repeat));
                item = jv_array_append(item, jv_string(sep));
                query_pairs = jv_array_append(query_pairs, item);
                free(fmt);
            } else if (strcmp(in, "header") == 0) {
                char *t = value_text(v, ",");
                if (t)
                    c->headers = jv_object_set(c->headers, jv_string(name), jv_string(t));
                else
                    rc = CV_ENOMEM;
                free(t);
            } else if (strcmp(in, "cookie") == 0) {
                char *t = value_text(v, ",");
                char *et = t ? escape(t) : NULL;
                if (et)
                    cookies = jv_array_append(cookies, jv_string_fmt("%s=%s", name, et));
                else
                    rc = CV_ENOMEM;
                free(t);
                free(et);
            } else if (strcmp(in, "body") == 0) {
                jv_free(c->body);
                c->body = jv_copy(v);
            } else if (strcmp(in, "formData") == 0) {
                form = jv_object_set(form, jv_string(name), jv_copy(v));
            }
            jv_free(v);
        }
        free(name);
        free(in);
        jv_free(p);
    }
    if (rc) {
        jv_free(query_pairs);
        if (rc != CV_EFAULT)
            *out = jv_null();
        goto out;
    }

    if (asprintf(&c->url, "%s%s%s", base, path[0] == '/' ? "" : "/", path) < 0) {
        c->url = NULL;
        jv_free(query_pairs);
        rc = CV_ENOMEM;
        goto out;
    }
    jv_array_foreach(query_pairs, i, qp)
    {
        if (rc == CV_OK) {
            jv name = jv_array_get(jv_copy(qp), 0), v = jv_array_get(jv_copy(qp), 1);
            jv rep = jv_array_get(jv_copy(qp), 2), sep = jv_array_get(jv_copy(qp), 3);
            rc = add_query(&c->url, jv_string_value(name), v, jv_get_kind(rep) == JV_KIND_TRUE,
                           jv_string_value(sep));
            jv_free(name);
            jv_free(v);
            jv_free(rep);
            jv_free(sep);
        }
        jv_free(qp);
    }
    jv_free(query_pairs);
    if (rc)
        goto out;
    if (jv_array_length(jv_copy(cookies)) > 0) {
        char *ck = join_items(cookies, "; ");
        if (!ck) {
            rc = CV_ENOMEM;
            goto out;
        }
        c->headers = jv_object_set(c->headers, jv_string("Cookie"), jv_string(ck));
        free(ck);
    }

    /* Bodies. */
    if (jv_object_length(jv_copy(form)) > 0 && !jv_is_valid(c->body)) {
        jv_free(c->body);
        c->body = jv_copy(form);
        c->headers = jv_object_set(c->headers, jv_string("Content-Type"),
                                  jv_string("application/x-www-form-urlencoded"));
    }
    jv rb = deref(doc, jv_object_get(jv_copy(o.op), jv_string("requestBody")));
    if (!swagger2 && jv_get_kind(rb) == JV_KIND_OBJECT) {
        jv body = jv_invalid();
        jv given = jv_object_get(jv_copy(params), jv_string("body"));
        if (!declared_body_name && jv_is_valid(given)) {
            body = given;
        } else {
            jv_free(given);
            jv rest = jv_object();
            jv_object_foreach(params, k, v)
            {
                int is_decl = 0;
                jv_array_foreach(decl, i, p)
                {
                    jv n = jv_object_get(jv_copy(p), jv_string("name"));
                    if (jv_equal(n, jv_copy(k)))
                        is_decl = 1;
                    jv_free(p);
                }
                if (!is_decl)
                    rest = jv_object_set(rest, jv_copy(k), jv_copy(v));
                jv_free(k);
                jv_free(v);
            }
            if (jv_object_length(jv_copy(rest)) > 0)
                body = rest;
            else
                jv_free(rest);
        }
        if (!jv_is_valid(body) && bool_prop(rb, "required", 0)) {
            jv_free(body);
            jv_free(rb);
            *out = cv__error_newf(CV_ERR_VALIDATION, 400, "Missing Parameter",
                                  "operation '%s' requires a request body", op_id);
            rc = CV_EFAULT;
            goto out;
        }
        if (jv_is_valid(body)) {
            char *mt = pick_media_type(rb);
            if (!mt) {
                jv_free(body);
                jv_free(rb);
                rc = CV_ENOMEM;
                goto out;
            }
            jv_free(c->body);
            c->body = body;
            c->headers = jv_object_set(c->headers, jv_string("Content-Type"), jv_string(mt));
            free(mt);
        } else {
            jv_free(body);
        }
    }
    jv_free(rb);

    c->method = strdup(o.method);
    if (!c->method) {
        rc = CV_ENOMEM;
        goto out;
    }
    jv au = jv_object_get(jv_copy(args), jv_string("authentication"));
    if (jv_is_valid(au)) {
        jv_free(c->auth);
        c->auth = au;
    } else {
        jv_free(au);
    }
    rc = cv__http_call_options(args, c, out);
out:
    if (rc && rc != CV_EFAULT) {
        jv_free(*out);
        *out = jv_null();
    }
    jv_free(o.path_item);
    jv_free(o.op);
    free(o.path);
    jv_free(doc);
    jv_free(endpoint);
    jv_free(params);
    jv_free(decl);
    jv_free(form);
    jv_free(cookies);
    free(uri);
    free(base);
    free(path);
    free(op_id);
    return rc;
}

int cv__openapi_call(const cv_effect_env *env, jv args, jv *out, jv *authz)
{
    struct cv_http_call c;
    cv__http_call_init(&c);
    if (authz)
        *authz = jv_null();
    int rc = openapi_prepare(env, args, 0, &c, out);
    if (!rc)
        rc = cv__http_call_perform(env, &c, out, authz);
    cv__http_call_cleanup(&c);
    jv_free(args);
    return rc;
}

int cv__openapi_call_start(const cv_effect_env *env, jv args, cv_http_done_fn done, void *ud)
{
    if (!env->http || !cv__http_ctx_io(env->http))
        return CV_EUNSUPPORTED;
    struct cv_http_call c;
    cv__http_call_init(&c);
    jv out = jv_null();
    int rc = openapi_prepare(env, args, 1, &c, &out);
    if (rc == CV_EUNSUPPORTED || rc == CV_ENOMEM) {
        cv__http_call_cleanup(&c);
        jv_free(out);
        return rc;
    }
    if (rc) {
        cv__http_call_cleanup(&c);
        return cv__http_call_report(env, rc, out, done, ud);
    }
    rc = cv__http_call_start_prepared(env, &c, done, ud);
    cv__http_call_cleanup(&c);
    return rc;
}
