/*
 * server.h — `conveyor serve`: the versioned JSON REST API over an engine
 * (src/engine/engine.h), served with libmicrohttpd.
 *
 * Every request goes through one authorization seam, cv__authorize(), given
 * the caller, the action and the namespace; no route decides access by
 * itself, so that tokens and roles can arrive later without touching the
 * routes. Errors are RFC 9457 problem+json. The routes and their bodies are
 * described in docs/api.md and, for machines, by cv__server_openapi (served
 * at /v1/openapi.json), which must be kept in step with server.c's router.
 */
#ifndef CV_SERVER_H
#define CV_SERVER_H

#include "engine/engine.h"

/* Who calls. `addr` is the peer's numeric address; `principal` the
 * authenticated identity once tokens exist (NULL now). */
struct cv_caller {
    char addr[64];
    int loopback; /* the peer is 127.0.0.0/8 or ::1 */
    const char *principal;
};

/*
 * The authorization seam. `action` is "<resource>.<verb>" (e.g.
 * "instance.start", "workflow.read", "health.read"); `ns` the namespace the
 * action touches, or NULL when it touches none or several. Returns 0 when
 * allowed, CV_EUNSUPPORTED (-> 403) when not. The policy of this version:
 * health and readiness for everyone, everything else for loopback callers
 * only.
 */
int cv__authorize(const struct cv_caller *caller, const char *action, const char *ns);

struct cv_server_options {
    const char *host;   /* numeric IPv4 or IPv6 address to listen on (default 127.0.0.1) */
    int port;           /* 0 = any free port */
    int max_inflight;   /* requests being handled at once before 503 (default 256) */
    int max_waiters;    /* ?wait requests at once before 429 (default 128) */
    cv_runtime *runtime; /* the engine's runtime, for the model metrics; may be NULL */
};

struct cv_server;

/* Starts listening (threads of libmicrohttpd) over `e` (borrowed; it must
 * outlive the server). *port_out = the port bound. Returns 0, or CV_EIO with
 * a message in *err. */
int cv__server_start(struct cv_engine *e, const struct cv_server_options *o, struct cv_server **out, int *port_out,
                     jv *err);
/* Stops taking requests, ends ?wait requests early (they answer 202), waits
 * for the requests in flight (5 s at most) and frees the server. Accepts
 * NULL. */
void cv__server_stop(struct cv_server *s);

/* The OpenAPI 3 description of the routes (a JSON document, static). */
extern const char cv__server_openapi[];

/* `conveyor serve [options]`: argv without the command name. Returns the
 * exit status (0 after SIGTERM/SIGINT, 1 when it could not start, 2 on a
 * usage error). */
int cv__serve_main(int argc, char **argv);

#endif
