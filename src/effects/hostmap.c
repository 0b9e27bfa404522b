/*
 * hostmap.c — the host override, like curl's --connect-to.
 *
 * A map from host names to "addr:port" (plus an optional "*" catch-all and a
 * deny-unmapped switch). cv__hostmap_prepare() is the only place that sets a
 * curl handle's URL: every outbound request in src/effects passes through it,
 * so tests and offline runs can never leak to the real network. For a mapped
 * host the request goes to addr:port over plain HTTP (https is downgraded so
 * stubs need no certificate) while the Host header and the path stay those of
 * the original URL; outputs and errors keep the original URL, which callers
 * hold on to — this file never rewrites what they report.
 */
#include "effects/hostmap.h"
#include "conveyor.h"
#include "effects/http_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hostmap_entry {
    char *host; /* lower case; "*" for the catch-all */
    char *addr; /* as written: "127.0.0.1", "[::1]", "stub.local" */
    int port;
};

struct cv_hostmap {
    struct hostmap_entry *v;
    size_t n, cap;
    int deny_unmapped;
};

struct cv_hostmap *cv__hostmap_new(void)
{
    return calloc(1, sizeof(struct cv_hostmap));
}

void cv__hostmap_free(struct cv_hostmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].host);
        free(m->v[i].addr);
    }
    free(m->v);
    free(m);
}

void cv__hostmap_set_deny_unmapped(struct cv_hostmap *m, int deny)
{
    if (m)
        m->deny_unmapped = deny != 0;
}

static int host_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1 && s[0] == '*')
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

/*
 * "host=addr:port". The address may be a bracketed IPv6 literal; a bare
 * address containing ':' is refused because the port would be ambiguous.
 */
int cv__hostmap_add(struct cv_hostmap *m, const char *spec)
{
    if (!m || !spec)
        return CV_EINVAL;
    const char *eq = strchr(spec, '=');
    if (!eq || !host_name_ok(spec, (size_t)(eq - spec)))
        return CV_EINVAL;
    const char *a = eq + 1;
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return CV_EINVAL;
    size_t alen = (size_t)(colon - a);
    if (a[0] == '[') {
        if (a[alen - 1] != ']' || alen < 3)
            return CV_EINVAL;
    } else if (memchr(a, ':', alen)) {
        return CV_EINVAL;
    }
    for (size_t i = 0; i < alen; i++)
        if (isspace((unsigned char)a[i]) || a[i] == '/')
            return CV_EINVAL;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
        return CV_EINVAL;

    char *host = strndup(spec, (size_t)(eq - spec));
    char *addr = strndup(a, alen);
    if (!host || !addr) {
        free(host);
        free(addr);
        return CV_ENOMEM;
    }
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);

    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].host, host) == 0) { /* a later spec replaces an earlier one */
            free(m->v[i].addr);
            free(host);
            m->v[i].addr = addr;
            m->v[i].port = (int)port;
            return CV_OK;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct hostmap_entry *v = realloc(m->v, cap * sizeof *v);
        if (!v) {
            free(host);
            free(addr);
            return CV_ENOMEM;
        }
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = (struct hostmap_entry){host, addr, (int)port};
    return CV_OK;
}

/* The entry for `host` (exact, case-insensitive), else the catch-all, else NULL. */
static const struct hostmap_entry *hostmap_find(const struct cv_hostmap *m, const char *host)
{
    const struct hostmap_entry *wild = NULL;
    size_t hl = strlen(host);
    /* curl reports IPv6 literals with brackets; specs cannot name them, so strip. */
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].host, "*") == 0)
            wild = &m->v[i];
        else if (strlen(m->v[i].host) == hl && strncasecmp(m->v[i].host, host, hl) == 0)
            return &m->v[i];
    }
    return wild;
}

int cv__hostmap_prepare(const struct cv_hostmap *m, CURL *h, const char *url,
                        struct curl_slist **connect_to, jv *err)
{
    int rc = CV_OK;
    char *scheme = NULL, *host = NULL, *rewritten = NULL;
    CURLU *u = curl_url();
    *connect_to = NULL;
    if (!u)
        return CV_ENOMEM;

    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid URL", "cannot parse URL '%s'",
                              url);
        rc = CV_EFAULT;
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Unsupported URL Scheme",
                              "scheme '%s' is not supported in '%s' (only http and https)",
                              scheme, url);
        rc = CV_EFAULT;
        goto out;
    }

    const struct hostmap_entry *e = m ? hostmap_find(m, host) : NULL;
    if (!e) {
        if (m && m->deny_unmapped) {
            *err = cv__error_newf(CV_ERR_COMMUNICATION, 500, "Host Not Mapped",
                                  "host %s is not mapped (deny-unmapped is on)", host);
            rc = CV_EFAULT;
            goto out;
        }
        if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK)
            rc = CV_ENOMEM;
        goto out;
    }

    /* Downgrade to http; an implicit port then becomes 80, which is only a key
     * for CONNECT_TO (empty port in the entry: any port matches). */
    if (curl_url_set(u, CURLUPART_SCHEME, "http", 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &rewritten, 0) != CURLUE_OK) {
        rc = CV_ENOMEM;
        goto out;
    }
    char entry[600];
    int n = snprintf(entry, sizeof entry, "%s::%s:%d", host, e->addr, e->port);
    if (n < 0 || (size_t)n >= sizeof entry) {
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "Invalid URL", "host name too long in '%s'",
                              url);
        rc = CV_EFAULT;
        goto out;
    }
    *connect_to = curl_slist_append(NULL, entry);
    /* No proxy for a mapped host: http_proxy in the environment must not
     * capture requests meant for a local stub. */
    if (!*connect_to || curl_easy_setopt(h, CURLOPT_URL, rewritten) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, *connect_to) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK) {
        curl_slist_free_all(*connect_to);
        *connect_to = NULL;
        rc = CV_ENOMEM;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(rewritten);
    curl_url_cleanup(u);
    return rc;
}
