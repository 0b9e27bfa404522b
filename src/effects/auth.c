/*
 * auth.c — authentication policies for outbound HTTP: basic, bearer, digest,
 * oauth2 and oidc (DSL "authentication").
 *
 * Turns an evaluated policy into what http.c needs (libcurl basic/digest
 * credentials or a bearer token) plus the $authorization descriptor
 * {scheme, parameter}. OAuth2/OIDC tokens are requested here, through
 * cv__http_exchange (so the host map, deadline and cancel flag apply), and
 * cached in the shared cv_http_ctx until shortly before `expires_in`; OIDC
 * discovery documents are cached for an hour. `use` references and
 * secret-based policies must already be resolved by the engine.
 *
 * Decisions: $authorization.parameter is base64(user:password) for basic (the
 * credential in the Authorization header), the user name for digest (the
 * header is per-challenge and includes no reusable credential), the token for
 * bearer, oauth2 and oidc. Grants supported: client_credentials, password,
 * refresh_token (with `subject.token` as the refresh token) and token
 * exchange; authorization_code needs a user agent and is refused.
 */
#include "common/util.h"
#include "conveyor.h"
#include "effects/http.h"
#include "effects/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_DEFAULT_PATH "/oauth2/token"
#define WELL_KNOWN "/.well-known/openid-configuration"
#define DISCOVERY_TTL_MS (3600 * 1000)

void cv__auth_cleanup(struct cv_auth *a)
{
    if (!a)
        return;
    free(a->username);
    free(a->password);
    free(a->bearer);
    jv_free(a->authz);
    memset(a, 0, sizeof *a);
    a->authz = jv_null();
}

static jv authz_new(const char *scheme, const char *parameter)
{
    jv d = jv_object();
    d = jv_object_set(d, jv_string("scheme"), jv_string(scheme));
    return jv_object_set(d, jv_string("parameter"), jv_string(parameter ? parameter : ""));
}

/* A property of `obj` (borrowed) as text (malloc'd), or NULL when absent/null. */
static char *prop_text(jv obj, const char *key)
{
    if (jv_get_kind(obj) != JV_KIND_OBJECT)
        return NULL;
    jv v = jv_object_get(jv_copy(obj), jv_string(key));
    char *s = NULL;
    jv_kind k = jv_get_kind(v);
    if (k == JV_KIND_STRING || k == JV_KIND_NUMBER || k == JV_KIND_TRUE || k == JV_KIND_FALSE)
        s = cv__scalar_text(v);
    jv_free(v);
    return s;
}

static jv config_error(const char *fmt, const char *arg)
{
    return cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid Authentication", fmt, arg);
}

static int user_password(jv p, const char *scheme, struct cv_auth *a, jv *err)
{
    a->username = prop_text(p, "username");
    a->password = prop_text(p, "password");
    if (!a->username || !a->password) {
        if (jv_get_kind(p) == JV_KIND_OBJECT && jv_object_has(jv_copy(p), jv_string("use")))
            *err = config_error("the %s policy's secret was not resolved", scheme);
        else
            *err = config_error("%s authentication needs a username and a password", scheme);
        return CV_EFAULT;
    }
    return CV_OK;
}

/* ---- OAuth2 / OIDC ------------------------------------------------------- */

static jv auth_error(const char *fmt, const char *a1, const char *a2)
{
    return cv__error_newf(CV_ERR_AUTHENTICATION, 401, "Unauthorized", fmt, a1, a2);
}

/* Joins an authority and a (relative or absolute) path. */
static char *join_url(const char *authority, const char *path)
{
    char *r = NULL;
    if (strstr(path, "://"))
        return strdup(path);
    size_t n = strlen(authority);
    while (n && authority[n - 1] == '/')
        n--;
    if (asprintf(&r, "%.*s%s%s", (int)n, authority, path[0] == '/' ? "" : "/", path) < 0)
        return NULL;
    return r;
}

/*
 * A GET or POST whose answer must be 2xx JSON; auth-related failures become
 * authentication errors, while cancel and deadline keep their own meaning.
 */
static int fetch_json(const cv_effect_env *env, const char *what, const struct cv_http_req *rq,
                      jv *out, jv *err)
{
    struct cv_http_resp rs;
    jv e = jv_null();
    int rc = cv__http_exchange(env, rq, &rs, &e);
    if (rc == CV_EFAULT) {
        jv type = jv_object_get(jv_copy(e), jv_string("type"));
        int is_timeout = jv_get_kind(type) == JV_KIND_STRING &&
                         strcmp(jv_string_value(type), CV_ERR_TIMEOUT) == 0;
        jv_free(type);
        if (is_timeout) {
            *err = e;
        } else {
            jv d = jv_object_get(e, jv_string("detail"));
            *err = auth_error("%s failed: %s", what,
                              jv_get_kind(d) == JV_KIND_STRING ? jv_string_value(d) : "error");
            jv_free(d);
        }
        goto out;
    }
    jv_free(e);
    if (rc)
        goto out;
    if (rs.status < 200 || rs.status > 299) {
        char detail[300];
        snprintf(detail, sizeof detail, "%s answered %ld %s: %.200s", rq->url, rs.status,
                 rs.reason ? rs.reason : "", rs.body ? rs.body : "");
        *err = auth_error("%s failed: %s", what, detail);
        rc = CV_EFAULT;
        goto out;
    }
    jv v = jv_parse_sized(rs.body, (int)rs.len);
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        *err = auth_error("%s failed: %s did not answer a JSON object", what, rq->url);
        rc = CV_EFAULT;
        goto out;
    }
    *out = v;
out:
    cv__http_resp_cleanup(&rs);
    return rc;
}

/* The token endpoint of an oidc authority, from its discovery document (cached). */
static int oidc_token_endpoint(const cv_effect_env *env, const char *authority, char **out,
                               jv *err)
{
    char *url = NULL;
    size_t n = strlen(authority), wl = strlen(WELL_KNOWN);
    if (n >= wl && strcmp(authority + n - wl, WELL_KNOWN) == 0)
        url = strdup(authority);
    else
        url = join_url(authority, WELL_KNOWN);
    if (!url)
        return CV_ENOMEM;

    char *key = NULL;
    if (asprintf(&key, "oidc\n%s", url) < 0) {
        free(url);
        return CV_ENOMEM;
    }
    int rc = CV_OK;
    *out = cv__http_cache_get(env->http, key);
    if (*out)
        goto done;

    struct curl_slist *hl = curl_slist_append(NULL, "Accept: application/json");
    struct cv_http_req rq = {.method = "GET", .url = url, .headers = hl};
    jv doc = jv_null();
    rc = hl ? fetch_json(env, "OpenID Connect discovery", &rq, &doc, err) : CV_ENOMEM;
    curl_slist_free_all(hl);
    if (rc)
        goto done;
    char *te = prop_text(doc, "token_endpoint");
    jv_free(doc);
    if (!te) {
        *err = auth_error("OpenID Connect discovery failed: %s has no token_endpoint%s", url, "");
        rc = CV_EFAULT;
        goto done;
    }
    cv__http_cache_put(env->http, key, te, cv__now_ms() + DISCOVERY_TTL_MS);
    *out = te;
done:
    free(key);
    free(url);
    return rc;
}

/* Builds a form or JSON token request body from `fields` (an object of strings). */
static char *encode_fields(jv fields, int json)
{
    if (json) {
        jv s = jv_dump_string(jv_copy(fields), 0);
        char *r = strdup(jv_string_value(s));
        jv_free(s);
        return r;
    }
    char *s = strdup("");
    if (!s || cv__http_url_add_query(&s, fields) != CV_OK) {
        free(s);
        return NULL;
    }
    char *r = strdup(s[0] == '?' ? s + 1 : s); /* "?k=v&k=v" without the "?" */
    free(s);
    return r;
}

/* Space-joins a string or an array of strings (borrowed) into *out (or NULL). */
static char *join_list(jv v)
{
    if (jv_get_kind(v) == JV_KIND_STRING)
        return strdup(jv_string_value(v));
    if (jv_get_kind(v) != JV_KIND_ARRAY || jv_array_length(jv_copy(v)) == 0)
        return NULL;
    jv acc = jv_string("");
    jv_array_foreach(v, i, item)
    {
        if (jv_get_kind(item) == JV_KIND_STRING) {
            if (jv_string_length_bytes(jv_copy(acc)) > 0)
                acc = jv_string_append_str(acc, " ");
            acc = jv_string_append_str(acc, jv_string_value(item));
        }
        jv_free(item);
    }
    char *r = strdup(jv_string_value(acc));
    jv_free(acc);
    return r;
}

static jv set_text(jv fields, const char *key, jv src, const char *prop)
{
    char *t = prop_text(src, prop);
    if (t)
        fields = jv_object_set(fields, jv_string(key), jv_string(t));
    free(t);
    return fields;
}

/*
 * Obtains an access token for an oauth2/oidc policy `p` (borrowed): from the
 * cache, else by a token request. *token is malloc'd.
 */
static int oauth2_token(const cv_effect_env *env, jv p, int oidc, char **token, jv *err)
{
    int rc = CV_OK;
    char *authority = prop_text(p, "authority"), *endpoint = NULL, *key = NULL;
    char *grant = prop_text(p, "grant"), *body = NULL, *basic = NULL;
    char *client_auth = NULL, *encoding = NULL;
    jv client = jv_null(), fields = jv_object(), resp = jv_null();
    struct curl_slist *hl = NULL;
    *token = NULL;

    if (jv_get_kind(p) == JV_KIND_OBJECT && jv_object_has(jv_copy(p), jv_string("use")) &&
        !authority) {
        *err = config_error("the %s policy's secret was not resolved", oidc ? "oidc" : "oauth2");
        rc = CV_EFAULT;
        goto out;
    }
    if (!authority) {
        *err = config_error("%s authentication needs an authority", oidc ? "oidc" : "oauth2");
        rc = CV_EFAULT;
        goto out;
    }
    if (!grant)
        grant = strdup("client_credentials");
    if (!grant) {
        rc = CV_ENOMEM;
        goto out;
    }
    if (strcmp(grant, "authorization_code") == 0) {
        *err = config_error("the %s grant needs a user agent and is not supported", grant);
        rc = CV_EFAULT;
        goto out;
    }

    /* Token endpoint: explicit endpoints.token, else discovery (oidc) or the default. */
    jv eps = jv_object_get(jv_copy(p), jv_string("endpoints"));
    char *tok_path = prop_text(eps, "token");
    jv_free(eps);
    if (tok_path) {
        endpoint = join_url(authority, tok_path);
        free(tok_path);
    } else if (oidc) {
        rc = oidc_token_endpoint(env, authority, &endpoint, err);
        if (rc)
            goto out;
    } else {
        endpoint = join_url(authority, TOKEN_DEFAULT_PATH);
    }
    if (!endpoint) {
        rc = CV_ENOMEM;
        goto out;
    }

    /* Cache key: the endpoint and the whole policy, canonically printed. */
    jv canon = jv_dump_string(jv_copy(p), JV_PRINT_SORTED);
    int kn = asprintf(&key, "token\n%s\n%s", endpoint, jv_string_value(canon));
    jv_free(canon);
    if (kn < 0) {
        key = NULL;
        rc = CV_ENOMEM;
        goto out;
    }
    *token = cv__http_cache_get(env->http, key);
    if (*token)
        goto out;

    /* Request fields. */
    client = jv_object_get(jv_copy(p), jv_string("client"));
    client_auth = prop_text(client, "authentication");
    const char *ca = client_auth ? client_auth : "client_secret_post";
    fields = jv_object_set(fields, jv_string("grant_type"),
                           jv_string(strcmp(grant, "token_exchange") == 0
                                         ? "urn:ietf:params:oauth:grant-type:token-exchange"
                                         : grant));
    if (strcmp(ca, "client_secret_basic") == 0) {
        char *id = prop_text(client, "id"), *secret = prop_text(client, "secret");
        char *eid = curl_easy_escape(NULL, id ? id : "", 0);
        char *esec = curl_easy_escape(NULL, secret ? secret : "", 0);
        char *pair = NULL;
        if (eid && esec && asprintf(&pair, "%s:%s", eid, esec) >= 0) {
            basic = cv__base64((const unsigned char *)pair, strlen(pair));
            free(pair);
        }
        curl_free(eid);
        curl_free(esec);
        free(id);
        free(secret);
        if (!basic) {
            rc = CV_ENOMEM;
            goto out;
        }
    } else if (strcmp(ca, "client_secret_post") == 0) {
        fields = set_text(fields, "client_id", client, "id");
        fields = set_text(fields, "client_secret", client, "secret");
    } else if (strcmp(ca, "private_key_jwt") == 0 || strcmp(ca, "client_secret_jwt") == 0) {
        char *as = prop_text(client, "assertion");
        if (!as) {
            *err = config_error("client authentication %s needs client.assertion", ca);
            rc = CV_EFAULT;
            goto out;
        }
        fields = set_text(fields, "client_id", client, "id");
        fields = jv_object_set(
            fields, jv_string("client_assertion_type"),
            jv_string("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        fields = jv_object_set(fields, jv_string("client_assertion"), jv_string(as));
        free(as);
    } else if (strcmp(ca, "none") == 0) {
        fields = set_text(fields, "client_id", client, "id");
    } else {
        *err = config_error("unknown client authentication '%s'", ca);
        rc = CV_EFAULT;
        goto out;
    }
    if (strcmp(grant, "password") == 0) {
        fields = set_text(fields, "username", p, "username");
        fields = set_text(fields, "password", p, "password");
    }
    jv subject = jv_object_get(jv_copy(p), jv_string("subject"));
    jv actor = jv_object_get(jv_copy(p), jv_string("actor"));
    if (strcmp(grant, "refresh_token") == 0) {
        fields = set_text(fields, "refresh_token", subject, "token");
    } else {
        fields = set_text(fields, "subject_token", subject, "token");
        fields = set_text(fields, "subject_token_type", subject, "type");
        fields = set_text(fields, "actor_token", actor, "token");
        fields = set_text(fields, "actor_token_type", actor, "type");
    }
    jv_free(subject);
    jv_free(actor);
    jv scopes = jv_object_get(jv_copy(p), jv_string("scopes"));
    jv auds = jv_object_get(jv_copy(p), jv_string("audiences"));
    char *sc = join_list(scopes), *au = join_list(auds);
    if (sc)
        fields = jv_object_set(fields, jv_string("scope"), jv_string(sc));
    if (au)
        fields = jv_object_set(fields, jv_string("audience"), jv_string(au));
    free(sc);
    free(au);
    jv_free(scopes);
    jv_free(auds);

    jv req = jv_object_get(jv_copy(p), jv_string("request"));
    encoding = prop_text(req, "encoding");
    jv_free(req);
    int json = encoding && strcasecmp(encoding, "application/json") == 0;
    body = encode_fields(fields, json);
    if (!body) {
        rc = CV_ENOMEM;
        goto out;
    }
    hl = curl_slist_append(hl, json ? "Content-Type: application/json"
                                    : "Content-Type: application/x-www-form-urlencoded");
    hl = hl ? curl_slist_append(hl, "Accept: application/json") : NULL;
    hl = hl ? curl_slist_append(hl, "Expect:") : NULL;
    if (hl && basic) {
        char *line = NULL;
        if (asprintf(&line, "Authorization: Basic %s", basic) >= 0) {
            struct curl_slist *n = curl_slist_append(hl, line);
            if (!n)
                curl_slist_free_all(hl);
            hl = n;
            free(line);
        } else {
            curl_slist_free_all(hl);
            hl = NULL;
        }
    }
    if (!hl) {
        rc = CV_ENOMEM;
        goto out;
    }
    struct cv_http_req rq = {.method = "POST",
                             .url = endpoint,
                             .headers = hl,
                             .body = body,
                             .body_len = strlen(body),
                             .has_body = 1};
    rc = fetch_json(env, "token request", &rq, &resp, err);
    if (rc)
        goto out;
    *token = prop_text(resp, "access_token");
    if (!*token) {
        *err = auth_error("token request failed: %s answered no access_token%s", endpoint, "");
        rc = CV_EFAULT;
        goto out;
    }
    jv exp = jv_object_get(jv_copy(resp), jv_string("expires_in"));
    if (jv_get_kind(exp) == JV_KIND_NUMBER && jv_number_value(exp) > 0) {
        /* Renew a little early: 10% of the lifetime, at most 30 s. */
        double life = jv_number_value(exp) * 1000.0;
        double margin = life / 10 < 30000 ? life / 10 : 30000;
        cv__http_cache_put(env->http, key, *token, cv__now_ms() + (int64_t)(life - margin));
    }
    jv_free(exp);
out:
    curl_slist_free_all(hl);
    jv_free(client);
    jv_free(fields);
    jv_free(resp);
    free(authority);
    free(endpoint);
    free(key);
    free(grant);
    free(body);
    free(basic);
    free(client_auth);
    free(encoding);
    return rc;
}

/* ---- entry point ---------------------------------------------------------- */

int cv__auth_resolve(const cv_effect_env *env, jv auth, struct cv_auth *a, jv *err)
{
    memset(a, 0, sizeof *a);
    a->authz = jv_null();
    if (!jv_is_valid(auth) || jv_get_kind(auth) == JV_KIND_NULL)
        return CV_OK;
    if (jv_get_kind(auth) != JV_KIND_OBJECT) {
        *err = config_error("authentication must be an object%s", "");
        return CV_EFAULT;
    }
    jv p;
    if (jv_is_valid(p = jv_object_get(jv_copy(auth), jv_string("basic")))) {
        int rc = user_password(p, "basic", a, err);
        jv_free(p);
        if (rc)
            return rc;
        char *pair = NULL;
        if (asprintf(&pair, "%s:%s", a->username, a->password) < 0)
            return CV_ENOMEM;
        char *b = cv__base64((const unsigned char *)pair, strlen(pair));
        free(pair);
        if (!b)
            return CV_ENOMEM;
        a->curl_auth = CURLAUTH_BASIC;
        jv_free(a->authz);
        a->authz = authz_new("Basic", b);
        free(b);
        return CV_OK;
    }
    jv_free(p);
    if (jv_is_valid(p = jv_object_get(jv_copy(auth), jv_string("digest")))) {
        int rc = user_password(p, "digest", a, err);
        jv_free(p);
        if (rc)
            return rc;
        a->curl_auth = CURLAUTH_DIGEST;
        jv_free(a->authz);
        a->authz = authz_new("Digest", a->username);
        return CV_OK;
    }
    jv_free(p);
    if (jv_is_valid(p = jv_object_get(jv_copy(auth), jv_string("bearer")))) {
        a->bearer = prop_text(p, "token");
        jv_free(p);
        if (!a->bearer) {
            *err = config_error("bearer authentication needs a token%s", "");
            return CV_EFAULT;
        }
        jv_free(a->authz);
        a->authz = authz_new("Bearer", a->bearer);
        return CV_OK;
    }
    jv_free(p);
    int oidc = 0;
    p = jv_object_get(jv_copy(auth), jv_string("oauth2"));
    if (!jv_is_valid(p)) {
        jv_free(p);
        p = jv_object_get(jv_copy(auth), jv_string("oidc"));
        oidc = 1;
    }
    if (jv_is_valid(p)) {
        int rc = oauth2_token(env, p, oidc, &a->bearer, err);
        jv_free(p);
        if (rc)
            return rc;
        jv_free(a->authz);
        a->authz = authz_new("Bearer", a->bearer);
        return CV_OK;
    }
    jv_free(p);
    jv use = jv_object_get(jv_copy(auth), jv_string("use"));
    if (jv_get_kind(use) == JV_KIND_STRING) {
        *err = config_error("authentication '%s' was not resolved", jv_string_value(use));
        jv_free(use);
        return CV_EFAULT;
    }
    jv_free(use);
    if (jv_object_has(jv_copy(auth), jv_string("certificate"))) {
        *err = config_error("%s authentication is not supported", "certificate");
        return CV_EFAULT;
    }
    *err = config_error("unknown authentication scheme%s", "");
    return CV_EFAULT;
}
