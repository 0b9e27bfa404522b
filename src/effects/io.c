/*
 * io.c — the I/O thread (DESIGN.md decision 5): one thread drives every
 * asynchronous HTTP transfer of a runtime through one libcurl multi handle,
 * so that a call in flight holds no thread and connections to a peer are
 * kept alive and reused across calls and instances, and watches the child
 * processes of `run` (their pipes and pidfds join the same poll).
 *
 * Requests come from any thread through a locked queue (curl_multi_wakeup
 * interrupts the poll); completions are reported on the I/O thread. The
 * cancel flag of each transfer is looked at every CANCEL_SCAN_MS, which keeps
 * the effects' promise (effects.h) of stopping within ~100 ms; deadlines are
 * libcurl's own timeouts, set by whoever prepared the handle. A watch says
 * itself when it next needs a look (its own deadline and cancel checks).
 */
#include "effects/io.h"

#include "common/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CANCEL_SCAN_MS 50
#define MAX_CACHED_CONNECTIONS 1024

struct cv_io {
    CURLM *m;
    pthread_t th;
    pthread_mutex_t mu;
    struct cv_io_req *queue; /* submitted, not yet taken by the thread (LIFO) */
    struct cv_io_watch *wqueue;
    int stopping;
    /* the thread's own: transfers added to the multi handle, watches */
    struct cv_io_req *active;
    long nactive;
    struct cv_io_watch *watches;
    struct curl_waitfd *wfds; /* the watches' descriptors of one poll */
    struct cv_io_watch **wown;
    int nwfds, capwfds;
};

/* Steps `w`; unlinks it when it ended. */
static void watch_step(struct cv_io *io, struct cv_io_watch *w, int64_t now, int stopping)
{
    int64_t wake = 0;
    struct cv_io_watch *prev = w->prev, *next = w->next;
    w->ready = 0;
    if (w->step(w, now, stopping, &wake)) { /* w may be freed already */
        if (prev)
            prev->next = next;
        else
            io->watches = next;
        if (next)
            next->prev = prev;
        return;
    }
    w->wake_ms = wake;
}

/* Steps the watches that are ready or due (all of them when stopping). */
static void watches_step(struct cv_io *io, int64_t now, int stopping)
{
    for (struct cv_io_watch *w = io->watches, *next; w; w = next) {
        next = w->next;
        if (stopping || w->ready || (w->wake_ms && w->wake_ms <= now))
            watch_step(io, w, now, stopping);
    }
}

/* The watches' descriptors for the next poll; returns the earliest wake. */
static int64_t watches_fds(struct cv_io *io)
{
    int64_t earliest = 0;
    io->nwfds = 0;
    for (struct cv_io_watch *w = io->watches; w; w = w->next) {
        if (w->wake_ms && (!earliest || w->wake_ms < earliest))
            earliest = w->wake_ms;
        if (io->capwfds - io->nwfds < 8) {
            int cap = io->capwfds ? io->capwfds * 2 : 32;
            struct curl_waitfd *f = realloc(io->wfds, (size_t)cap * sizeof *f);
            if (!f)
                continue; /* its wake time still brings it a step */
            io->wfds = f;
            struct cv_io_watch **o = realloc(io->wown, (size_t)cap * sizeof *o);
            if (!o)
                continue;
            io->wown = o;
            io->capwfds = cap;
        }
        int n = w->fds(w, io->wfds + io->nwfds, 8);
        for (int i = 0; i < n; i++) {
            io->wfds[io->nwfds + i].revents = 0;
            io->wown[io->nwfds + i] = w;
        }
        io->nwfds += n;
    }
    return earliest;
}

static void finish(struct cv_io *io, struct cv_io_req *r, CURLcode res, int cancelled)
{
    if (r->h && r->added) {
        curl_multi_remove_handle(io->m, r->h);
        r->added = 0;
        if (r->prev)
            r->prev->next = r->next;
        else
            io->active = r->next;
        if (r->next)
            r->next->prev = r->prev;
        io->nactive--;
    }
    r->prev = r->next = NULL;
    r->done(r, res, cancelled);
}

/* Takes what was submitted: transfers are added, deferred completions run. */
static int take_queue(struct cv_io *io)
{
    pthread_mutex_lock(&io->mu);
    struct cv_io_req *q = io->queue;
    io->queue = NULL;
    struct cv_io_watch *wq = io->wqueue;
    io->wqueue = NULL;
    int stopping = io->stopping;
    pthread_mutex_unlock(&io->mu);
    /* new watches: linked, then stepped once at once */
    while (wq) {
        struct cv_io_watch *w = wq;
        wq = w->next;
        w->prev = NULL;
        w->next = io->watches;
        if (io->watches)
            io->watches->prev = w;
        io->watches = w;
        w->wake_ms = 0;
        w->ready = 1;
    }
    /* the queue is LIFO: reverse it so that requests start in order */
    struct cv_io_req *in_order = NULL;
    while (q) {
        struct cv_io_req *n = q->next;
        q->next = in_order;
        in_order = q;
        q = n;
    }
    while (in_order) {
        struct cv_io_req *r = in_order;
        in_order = r->next;
        r->next = r->prev = NULL;
        if (!r->h) {
            finish(io, r, CURLE_OK, 0);
            continue;
        }
        if (stopping || (r->cancel && atomic_load(r->cancel))) {
            finish(io, r, CURLE_ABORTED_BY_CALLBACK, 1);
            continue;
        }
        curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
        if (curl_multi_add_handle(io->m, r->h) != CURLM_OK) {
            finish(io, r, CURLE_OUT_OF_MEMORY, 0);
            continue;
        }
        r->added = 1;
        r->next = io->active;
        if (io->active)
            io->active->prev = r;
        io->active = r;
        io->nactive++;
    }
    return stopping;
}

static void scan_cancelled(struct cv_io *io, int all)
{
    for (struct cv_io_req *r = io->active, *next; r; r = next) {
        next = r->next;
        if (all || (r->cancel && atomic_load(r->cancel)))
            finish(io, r, CURLE_ABORTED_BY_CALLBACK, 1);
    }
}

static void *io_main(void *arg)
{
    struct cv_io *io = arg;
    int64_t next_scan = cv__now_ms() + CANCEL_SCAN_MS;
    for (;;) {
        int stopping = take_queue(io);
        if (stopping) {
            scan_cancelled(io, 1);
            watches_step(io, cv__now_ms(), 1);
            pthread_mutex_lock(&io->mu);
            int empty = io->queue == NULL && io->wqueue == NULL;
            pthread_mutex_unlock(&io->mu);
            if (empty && !io->watches)
                break;
            continue;
        }
        int running = 0;
        curl_multi_perform(io->m, &running);
        int msgs = 0;
        for (CURLMsg *msg; (msg = curl_multi_info_read(io->m, &msgs));) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct cv_io_req *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            if (r)
                finish(io, r, msg->data.result, 0);
        }
        int64_t now = cv__now_ms();
        if (now >= next_scan) {
            scan_cancelled(io, 0);
            next_scan = now + CANCEL_SCAN_MS;
        }
        watches_step(io, now, 0);
        long wait = CANCEL_SCAN_MS;
        long t = -1;
        if (curl_multi_timeout(io->m, &t) == CURLM_OK && t >= 0 && t < wait)
            wait = t;
        if (!io->nactive)
            wait = 1000; /* no transfer to watch: sleep until woken */
        int64_t wake = watches_fds(io);
        if (wake && wake - now < wait)
            wait = wake > now ? (long)(wake - now) : 0;
        /* a completion above may have submitted more (a redirect's next hop) */
        pthread_mutex_lock(&io->mu);
        int more = io->queue != NULL || io->wqueue != NULL || io->stopping;
        pthread_mutex_unlock(&io->mu);
        if (!more) {
            curl_multi_poll(io->m, io->wfds, (unsigned)io->nwfds, (int)wait, NULL);
            for (int i = 0; i < io->nwfds; i++)
                if (io->wfds[i].revents)
                    io->wown[i]->ready = 1;
        }
    }
    return NULL;
}

struct cv_io *cv__io_new(void)
{
    struct cv_io *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->m = curl_multi_init();
    if (!io->m || pthread_mutex_init(&io->mu, NULL)) {
        if (io->m)
            curl_multi_cleanup(io->m);
        free(io);
        return NULL;
    }
    curl_multi_setopt(io->m, CURLMOPT_MAXCONNECTS, (long)MAX_CACHED_CONNECTIONS);
    if (pthread_create(&io->th, NULL, io_main, io)) {
        pthread_mutex_destroy(&io->mu);
        curl_multi_cleanup(io->m);
        free(io);
        return NULL;
    }
    return io;
}

void cv__io_submit(struct cv_io *io, struct cv_io_req *r)
{
    r->added = 0;
    r->prev = NULL;
    pthread_mutex_lock(&io->mu);
    r->next = io->queue;
    io->queue = r;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->m);
}

void cv__io_watch(struct cv_io *io, struct cv_io_watch *w)
{
    pthread_mutex_lock(&io->mu);
    w->next = io->wqueue;
    io->wqueue = w;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->m);
}

void cv__io_free(struct cv_io *io)
{
    if (!io)
        return;
    pthread_mutex_lock(&io->mu);
    io->stopping = 1;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->m);
    pthread_join(io->th, NULL);
    free(io->wfds);
    free(io->wown);
    curl_multi_cleanup(io->m);
    pthread_mutex_destroy(&io->mu);
    free(io);
}
