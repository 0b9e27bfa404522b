/*
 * io.h — the I/O thread: asynchronous libcurl transfers and child processes
 * on one thread (DESIGN.md decision 5). Used by http.c for `call: http` and
 * process.c for `run: shell` / `run: script`; see io.c.
 */
#ifndef CV_EFFECTS_IO_H
#define CV_EFFECTS_IO_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdint.h>

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

/*
 * Something else the I/O thread watches (a child process): its file
 * descriptors join the thread's poll, and `step` runs when one of them is
 * ready, when its wake time comes, and once when it is handed over.
 */
struct cv_io_watch {
    /* up to `max` descriptors to wait on (waitfd.events set); returns how many */
    int (*fds)(struct cv_io_watch *w, struct curl_waitfd *fds, int max);
    /*
     * Advances: returns 0 to go on, with *wake_ms the cv__now_ms() time of
     * the next step it needs without any descriptor ready (0: none); returns
     * 1 when it has ended (it has reported its result and may be freed: the
     * thread no longer touches it). `stopping`: the I/O thread is ending; it
     * must end now.
     */
    int (*step)(struct cv_io_watch *w, int64_t now, int stopping, int64_t *wake_ms);
    /* the I/O thread's own */
    struct cv_io_watch *prev, *next;
    int64_t wake_ms;
    int ready;
};

/* Starts an I/O thread with its multi handle; NULL when it cannot. */
struct cv_io *cv__io_new(void);
/* Hands `r` to the I/O thread (from any thread, `done` included). */
void cv__io_submit(struct cv_io *io, struct cv_io_req *r);
/* Hands `w` to the I/O thread (from any thread). */
void cv__io_watch(struct cv_io *io, struct cv_io_watch *w);
/* Stops the thread: transfers still running end as cancelled, watches are
 * stepped with `stopping`. */
void cv__io_free(struct cv_io *io);

#endif
