/*
 * sink.c — event sinks: the CloudEvents that instances `emit` are delivered
 * to HTTP webhooks (`conveyor serve --event-sink URL`), one thread per sink.
 *
 * Delivery is at-least-once and in bus order: each sink reads the bus after
 * its cursor (kept in the store under "sink:URL", so a restart goes on where
 * it stopped), POSTs each emitted event in structured mode
 * (application/cloudevents+json) and retries a failed delivery (no answer,
 * or a status other than 2xx) with a growing delay (1 s, doubling, at most
 * 30 s) until it succeeds, the event leaves the bus (its retention ended), or
 * the engine stops. The cursor is written after each page of deliveries, so
 * a crash may deliver a page again: receivers deduplicate by the event's
 * `id`. Events received through the API (origin "api") are not echoed. A
 * sink that is new starts at the newest event of the bus.
 */
#include "engine/engine.h"

#include "common/util.h"
#include "engine/engine_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cv_sink {
    struct cv_engine *e;
    char *url;
    char *cursor;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping, poked;
    struct cv_sink *next;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* POSTs one event; 0 when the sink answered 2xx. */
static int deliver(CURL *c, const char *url, jv event /* borrowed */, char *why, size_t whyn)
{
    jv text = jv_dump_string(jv_copy(event), 0);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/cloudevents+json");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, jv_string_value(text));
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)jv_string_length_bytes(jv_copy(text)));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    jv_free(text);
    if (rc != CURLE_OK) {
        snprintf(why, whyn, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (status < 200 || status > 299) {
        snprintf(why, whyn, "HTTP status %ld", status);
        return -1;
    }
    return 0;
}

/* Sleeps up to ms unless the engine stops; returns 1 when stopping. */
static int pause_ms(struct cv_sink *k, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->lock);
    if (!k->stopping && !k->poked)
        pthread_cond_timedwait(&k->cond, &k->lock, &ts);
    int stop = k->stopping;
    k->poked = 0;
    pthread_mutex_unlock(&k->lock);
    return stop;
}

static int stopping(struct cv_sink *k)
{
    pthread_mutex_lock(&k->lock);
    int s = k->stopping;
    pthread_mutex_unlock(&k->lock);
    return s;
}

/* The newest seq on the bus (0 when empty). */
static int64_t bus_end(struct cv_engine *e)
{
    int64_t after = 0;
    for (;;) {
        jv page, err = jv_invalid();
        int rc = cv__engine_list_events(e, after, 10000, &page, &err);
        jv_free(err);
        if (rc)
            return after;
        int n = jv_array_length(jv_copy(page));
        if (n > 0) {
            jv last = jv_array_get(jv_copy(page), n - 1);
            jv seq = jv_object_get(last, jv_string("seq"));
            after = (int64_t)jv_number_value(seq);
            jv_free(seq);
        }
        jv_free(page);
        if (n < 10000)
            return after;
    }
}

static void *sink_main(void *arg)
{
    struct cv_sink *k = arg;
    CURL *c = curl_easy_init();
    int64_t cursor = -1;
    jv err = jv_invalid();
    if (!c || cv__engine_get_cursor(k->e, k->cursor, &cursor, &err)) {
        fprintf(stderr, "conveyor: event sink %s: cannot start: %s\n", k->url,
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "out of memory");
        jv_free(err);
        if (c)
            curl_easy_cleanup(c);
        return NULL;
    }
    jv_free(err);
    if (cursor < 0) { /* a new sink: from now on */
        cursor = bus_end(k->e);
        err = jv_invalid();
        cv__engine_set_cursor(k->e, k->cursor, cursor, &err);
        jv_free(err);
    }
    int leading = 1;
    while (!stopping(k)) {
        /* several nodes (docs/cluster.md): one delivers, the others wait
         * to take over, from the cursor the last one wrote */
        if (!cv__engine_leads(k->e, k->cursor)) {
            leading = 0;
            if (pause_ms(k, 1000))
                break;
            continue;
        }
        if (!leading) {
            int64_t at = -1;
            err = jv_invalid();
            if (!cv__engine_get_cursor(k->e, k->cursor, &at, &err) && at >= 0)
                cursor = at;
            jv_free(err);
            leading = 1;
        }
        jv page;
        err = jv_invalid();
        if (cv__engine_list_events(k->e, cursor, 100, &page, &err)) {
            jv_free(err);
            if (pause_ms(k, 1000))
                break;
            continue;
        }
        jv_free(err);
        int n = jv_array_length(jv_copy(page)), moved = 0;
        for (int i = 0; i < n && !stopping(k); i++) {
            jv entry = jv_array_get(jv_copy(page), i);
            jv origin = jv_object_get(jv_copy(entry), jv_string("origin"));
            jv seqv = jv_object_get(jv_copy(entry), jv_string("seq"));
            int64_t seq = (int64_t)jv_number_value(seqv);
            jv_free(seqv);
            if (jv_get_kind(origin) == JV_KIND_STRING && !strcmp(jv_string_value(origin), "emit")) {
                jv ev = jv_object_get(jv_copy(entry), jv_string("event"));
                long delay = 1000;
                char why[256];
                while (deliver(c, k->url, ev, why, sizeof why)) {
                    fprintf(stderr, "conveyor: event sink %s: event %lld not delivered (%s): retrying in %ld s\n",
                            k->url, (long long)seq, why, delay / 1000);
                    if (pause_ms(k, delay))
                        break;
                    delay = delay * 2 > 30000 ? 30000 : delay * 2;
                    /* gone from the bus meanwhile (retention): give up on it */
                    jv again, gerr = jv_invalid();
                    int gone = 0;
                    if (!cv__engine_list_events(k->e, seq - 1, 1, &again, &gerr)) {
                        jv first = jv_array_get(jv_copy(again), 0);
                        jv fs = jv_is_valid(first) ? jv_object_get(first, jv_string("seq")) : (jv_free(first), jv_null());
                        gone = jv_get_kind(fs) != JV_KIND_NUMBER || (int64_t)jv_number_value(fs) != seq;
                        jv_free(fs);
                        jv_free(again);
                    }
                    jv_free(gerr);
                    if (gone) {
                        fprintf(stderr, "conveyor: event sink %s: event %lld expired before it could be delivered\n",
                                k->url, (long long)seq);
                        break;
                    }
                }
                jv_free(ev);
            }
            jv_free(origin);
            jv_free(entry);
            if (stopping(k))
                break;
            cursor = seq;
            moved = 1;
        }
        jv_free(page);
        if (moved) {
            err = jv_invalid();
            cv__engine_set_cursor(k->e, k->cursor, cursor, &err);
            jv_free(err);
        }
        if (n < 100 && pause_ms(k, 1000))
            break;
    }
    curl_easy_cleanup(c);
    return NULL;
}

int cv__sinks_start(struct cv_engine *e, char *const *urls, int n, struct cv_sink **out)
{
    *out = NULL;
    for (int i = 0; i < n; i++) {
        struct cv_sink *k = calloc(1, sizeof *k);
        if (!k)
            return CV_ENOMEM;
        k->e = e;
        k->url = strdup(urls[i]);
        if (!k->url || asprintf(&k->cursor, "sink:%s", urls[i]) < 0) {
            free(k->url);
            free(k);
            return CV_ENOMEM;
        }
        pthread_mutex_init(&k->lock, NULL);
        pthread_cond_init(&k->cond, NULL);
        if (pthread_create(&k->th, NULL, sink_main, k)) {
            free(k->url);
            free(k->cursor);
            free(k);
            return CV_ENOMEM;
        }
        k->next = *out;
        *out = k;
    }
    return 0;
}

void cv__sinks_poke(struct cv_sink *k)
{
    for (; k; k = k->next) {
        pthread_mutex_lock(&k->lock);
        k->poked = 1;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
    }
}

void cv__sinks_stop(struct cv_sink *k)
{
    while (k) {
        struct cv_sink *next = k->next;
        pthread_mutex_lock(&k->lock);
        k->stopping = 1;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
        pthread_join(k->th, NULL);
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->cond);
        free(k->url);
        free(k->cursor);
        free(k);
        k = next;
    }
}
