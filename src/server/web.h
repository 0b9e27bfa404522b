/*
 * web.h — the reviewer's web inbox (web/: static HTML, CSS and JavaScript),
 * built into the binary: scripts/embed-web.sh turns the files of web/ into
 * $(BUILD)/gen/web_files.c (a Makefile rule), and server.c answers
 * GET /inbox/NAME from it, so that the inbox works whatever the directory
 * `conveyor serve` runs in. Files are flat (no sub-directories).
 */
#ifndef CV_SERVER_WEB_H
#define CV_SERVER_WEB_H

#include <stddef.h>

struct cv_web_file {
    const char *path;          /* "index.html" */
    const char *type;          /* its Content-Type */
    const unsigned char *data; /* static */
    size_t len;
};

/* The file named `path` (no leading slash), or NULL. */
const struct cv_web_file *cv__web_find(const char *path);

#endif
