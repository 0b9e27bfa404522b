/*
 * io.h — the I/O thread: asynchronous libcurl transfers on one thread
 * (DESIGN.md decision 5). Used by http.c for `call: http`; see io.c.
 */
#ifndef CV_EFFECTS_IO_H
#define CV_EFFECTS_IO_H

#include <curl/curl.h>
#include <stdatomic.h>

struct cv_io;

/* One transfer (or, with h == NULL, a completion to report on the I/O
 * thread). The caller owns it and keeps it alive until `done` is called. */
struct cv_io_req {
    CURL *h;                   /* prepared easy handle; CURLOPT_PRIVATE is ours */
    const atomic_int *cancel;  /* may be NULL; non-zero stops the transfer */
    /*
     * Called exactly once, on the I/O thread, with the handle already removed
     * from the multi handle: res is the transfer's result (CURLE_OK with h ==
     * NULL); cancelled is 1 when the cancel flag (or the I/O thread's end)
     * stopped it. `done` may submit again (a redirect's next hop) and may free
     * the request.
     */
    void (*done)(struct cv_io_req *r, CURLcode res, int cancelled);
    /* the I/O thread's own */
    struct cv_io_req *prev, *next;
    int added;
};

/* Starts an I/O thread with its multi handle; NULL when it cannot. */
struct cv_io *cv__io_new(void);
/* Hands `r` to the I/O thread (from any thread, `done` included). */
void cv__io_submit(struct cv_io *io, struct cv_io_req *r);
/* Stops the thread: transfers still running end as cancelled. */
void cv__io_free(struct cv_io *io);

#endif
