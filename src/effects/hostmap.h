/*
 * hostmap.h — the host override (like curl's --connect-to).
 *
 * "petstore.swagger.io=127.0.0.1:18080" sends every request for that host to
 * 127.0.0.1:18080 over plain HTTP, keeping the original URL (in outputs,
 * errors, events) and the original Host header. "*=addr:port" maps all hosts.
 * Applied to every outbound fetch: http calls, OpenAPI documents and the
 * operations built from them, OAuth2/OIDC discovery and tokens, script
 * sources, schema resources.
 */
#ifndef CV_EFFECTS_HOSTMAP_H
#define CV_EFFECTS_HOSTMAP_H

struct cv_hostmap;

struct cv_hostmap *cv__hostmap_new(void);
void cv__hostmap_free(struct cv_hostmap *m);
/* Adds "host=addr:port"; returns 0 or CV_EINVAL for a malformed spec. */
int cv__hostmap_add(struct cv_hostmap *m, const char *spec);
void cv__hostmap_set_deny_unmapped(struct cv_hostmap *m, int deny);

#endif
