/*
 * client.h — the CLI as a client of `conveyor serve` (docs/api.md): deploy,
 * start, get, list, history, cancel, suspend, resume, `events send` and
 * `tasks` (the review inbox) over
 * HTTP with libcurl.
 */
#ifndef CV_CLI_CLIENT_H
#define CV_CLI_CLIENT_H

/* Returns 1 when `cmd` is one of the client commands. "resume" is one, but
 * it is also `conveyor resume --db FILE` (durable.h): main.c decides which
 * one a `resume` command line means before calling cv__client_main. */
int cv__client_is_command(const char *cmd);

/*
 * Runs the client command `cmd` with its arguments (argv without the
 * command name; borrowed). Every command takes --server URL (default
 * $CONVEYOR_SERVER, else http://127.0.0.1:8080). Returns the exit status:
 * 0 success, 1 failure (the server refused, the instance faulted, the server
 * could not be reached), 2 usage error.
 */
int cv__client_main(const char *cmd, int argc, char **argv);

/*
 * The model registry of a server (docs/api.md, "Models"), for `conveyor
 * model ... --server URL` (model.c): the same results as the cv_store_*
 * model functions, over HTTP. Each returns 0, or a code with *err = why (the
 * server's problem as "STATUS TITLE: DETAIL", or that it could not be
 * reached): CV_ENOTFOUND (404), CV_ECONFLICT (409), CV_EIO, CV_EFAULT.
 *   get: the card of NAME (version 0: what a bare NAME means) or
 *        NAME@VERSION; with bytes, also the model file of that version
 *        (malloc'd, caller frees).
 *   list: every version's card. put: a new draft version (card consumed);
 *   status: approve | promote | retire. route: the canary or shadow of NAME
 *   (version 0 clears); *out = the routing after.
 */
#include <jv.h>
#include <stddef.h>
#include <stdint.h>
int cv__client_model_get(const char *server, const char *name, int64_t version, jv *card, void **bytes, size_t *len,
                         jv *err);
int cv__client_model_list(const char *server, jv *out, jv *err);
/* GET /v1/models/NAME/feedback: *out = the feedback examples (docs/tasks.md). */
int cv__client_feedback(const char *server, const char *name, jv *out, jv *err);
int cv__client_model_put(const char *server, const char *name, const char *kind, jv card, const void *bytes,
                         size_t len, int64_t *version, jv *err);
int cv__client_model_status(const char *server, const char *name, int64_t version, const char *action, jv *err);
int cv__client_model_route(const char *server, const char *name, const char *which, int64_t version, double share,
                           jv *out, jv *err);

#endif
