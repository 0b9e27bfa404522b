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

#endif
