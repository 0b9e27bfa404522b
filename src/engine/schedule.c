/*
 * schedule.c — the `schedule` of deployed workflows (DSL: every, cron,
 * after, on), run by one thread of the engine.
 *
 * Which definitions: the latest deployed version of each namespace/name
 * whose document has a `schedule` (deploying a new version replaces the
 * schedule of the old one). Read at start and after every deployment.
 *
 * Firing exactly once: every start goes through cv__engine_start_instance
 * with an idempotency key that names the occasion, so a start repeated after
 * a crash (or computed again at the next start of the server) names the
 * instance that exists instead of creating a second one:
 *   every   schedule:NS/NAME:VERSION:every:T   T = deployedAt + k * every
 *   cron    schedule:NS/NAME:VERSION:cron:T    T = a matching minute (UTC)
 *   after   schedule:NS/NAME:VERSION:after:ID  ID = the run it follows
 *   on      schedule:NS/NAME:VERSION:on:SEQ... the bus events that made it
 * When the server was down at fire times, the latest missed occasion of an
 * `every` or `cron` schedule fires once at start (the ones before it are
 * skipped). Instances of `every` and `cron` start even when the previous one
 * still runs; `after` waits for the previous run to end (completed, faulted
 * or cancelled) and starts the next one `after` later; the first run of an
 * `after` schedule starts `after` its deployment. `on` starts an instance
 * with the array of events that satisfied the strategy as its input, for
 * events received after the deployment: `one` and `any` per matching event,
 * `all` once every filter matched an event. The store keeps, per `on`
 * schedule, a cursor at the event that completed its last start: a restart
 * (or a reload) reads the bus after it, so a half-matched `all` is matched
 * again from its retained events, to the same idempotency keys. Correlations
 * of `on` filters are not applied.
 *
 * The thread owns its own copy of each definition (jq values are not shared
 * across threads) and talks to the engine through engine.h only.
 */
#include "engine/engine.h"

#include "common/util.h"
#include "engine/engine_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char ns[128], name[128], version[128];
    cv_workflow *wf;
    int64_t deployed_at;
    int64_t next_at;    /* every / cron / after: the next occasion (wall ms); 0 = none yet */
    char last_id[64];   /* after: the run being waited for ("" = none) */
    int after_ready;    /* after: next_at is the start time of the next run */
    int64_t bus_cursor; /* on: the last bus event looked at */
    int64_t saved_cursor; /* on: the store's cursor (the event that completed the last start) */
    jv all_matched;     /* on + all: the events matched so far, by filter (array) */
};

struct cv_schedules {
    struct cv_engine *e;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping, reload, events;
    /* owned by the thread */
    struct entry *entries;
    int n;
};

static void entries_free(struct cv_schedules *s)
{
    for (int i = 0; i < s->n; i++) {
        cv_workflow_free(s->entries[i].wf);
        jv_free(s->entries[i].all_matched);
    }
    free(s->entries);
    s->entries = NULL;
    s->n = 0;
}

/* Starts an instance for an occasion; `key` names it. */
static int fire(struct cv_schedules *s, struct entry *x, const char *key, jv input, char *id_out)
{
    char id[64] = "";
    int existed = 0;
    jv err = jv_invalid();
    jv note = JV_ARRAY(JV_OBJECT(jv_string("type"), jv_string("schedule"), jv_string("data"),
                                 JV_OBJECT(jv_string("occasion"), jv_string(key))));
    int rc = cv__engine_start_instance_ex(s->e, x->ns, x->name, x->version, input, key, note, id, &existed, &err);
    if (rc)
        fprintf(stderr, "conveyor: schedule of %s/%s:%s: could not start an instance: %s\n", x->ns, x->name,
                x->version, jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : cv_strerror(rc));
    jv_free(err);
    if (id_out)
        snprintf(id_out, 64, "%s", rc ? "" : id);
    return rc;
}

/* The store cursor of an `on` schedule. */
static void on_cursor_name(const struct entry *x, char *buf, size_t n)
{
    snprintf(buf, n, "schedule:%s/%s:%s", x->ns, x->name, x->version);
}

/* The latest cron occasion at or before `now` and after `since`, or 0. */
static int64_t cron_latest(const struct cv_cron *c, int64_t since, int64_t now)
{
    int64_t from = now - 86400000LL > since ? now - 86400000LL : since, t = from, last = 0;
    while ((t = cv__cron_next(c, t)) && t <= now)
        last = t;
    return last;
}

/* The newest instance of the entry's workflow, or invalid. */
static jv newest_instance(struct cv_schedules *s, struct entry *x)
{
    jv filter = JV_OBJECT(jv_string("namespace"), jv_string(x->ns), jv_string("name"), jv_string(x->name));
    jv last = jv_invalid();
    char after[64] = "";
    for (int pages = 0; pages < 10000; pages++) {
        jv page, next = jv_null(), err = jv_invalid();
        if (cv__engine_list_instances(s->e, jv_copy(filter), 1000, after[0] ? after : NULL, &page, &next, &err)) {
            jv_free(err);
            break;
        }
        jv_free(err);
        int n = jv_array_length(jv_copy(page));
        if (n > 0) {
            jv_free(last);
            last = jv_array_get(jv_copy(page), n - 1);
        }
        jv_free(page);
        if (jv_get_kind(next) != JV_KIND_STRING) {
            jv_free(next);
            break;
        }
        snprintf(after, sizeof after, "%s", jv_string_value(next));
        jv_free(next);
    }
    jv_free(filter);
    return last;
}

static int ended(const char *status)
{
    return !strcmp(status, CV_ST_COMPLETED) || !strcmp(status, CV_ST_FAULTED) || !strcmp(status, CV_ST_CANCELLED);
}

/* Reads the schedules of the latest deployed versions. */
static void load(struct cv_schedules *s)
{
    entries_free(s);
    jv list, err = jv_invalid();
    if (cv__engine_list_workflows(s->e, &list, &err)) {
        fprintf(stderr, "conveyor: schedules: %s\n",
                jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "cannot list workflows");
        jv_free(err);
        return;
    }
    jv_free(err);
    int n = jv_array_length(jv_copy(list));
    s->entries = calloc((size_t)(n ? n : 1), sizeof *s->entries);
    int64_t now = cv__wall_ms();
    for (int i = 0; s->entries && i < n; i++) {
        jv w = jv_array_get(jv_copy(list), i);
        jv ns = jv_object_get(jv_copy(w), jv_string("namespace")), name = jv_object_get(jv_copy(w), jv_string("name"));
        /* the list is ordered by namespace, name, version: keep the last of each */
        jv nx = i + 1 < n ? jv_array_get(jv_copy(list), i + 1) : jv_null();
        int later = 0;
        if (jv_get_kind(nx) == JV_KIND_OBJECT) {
            jv nns = jv_object_get(jv_copy(nx), jv_string("namespace")), nname = jv_object_get(nx, jv_string("name"));
            later = jv_equal(jv_copy(ns), nns) && jv_equal(jv_copy(name), nname);
        } else {
            jv_free(nx);
        }
        jv ver = jv_object_get(jv_copy(w), jv_string("version"));
        jv def;
        err = jv_invalid();
        cv_workflow *wf = NULL;
        if (!later &&
            !cv__engine_get_workflow(s->e, jv_string_value(ns), jv_string_value(name), jv_string_value(ver), &def,
                                     &err)) {
            jv text = jv_object_get(jv_copy(def), jv_string("text"));
            jv at = jv_object_get(def, jv_string("deployedAt"));
            jv diags = jv_invalid();
            if (!cv_workflow_load(jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)), "schedule",
                                  &wf, &diags) &&
                wf->schedule.set) {
                struct entry *x = &s->entries[s->n++];
                snprintf(x->ns, sizeof x->ns, "%s", jv_string_value(ns));
                snprintf(x->name, sizeof x->name, "%s", jv_string_value(name));
                snprintf(x->version, sizeof x->version, "%s", jv_string_value(ver));
                x->wf = wf;
                wf = NULL;
                x->deployed_at = jv_get_kind(at) == JV_KIND_NUMBER ? (int64_t)jv_number_value(at) : now;
                x->all_matched = jv_null();
                const struct cv_schedule *sc = &x->wf->schedule;
                x->saved_cursor = -1;
                if (sc->has_on) { /* read the bus after the event that completed the last start */
                    char cname[600];
                    int64_t seq = -1;
                    jv cerr = jv_invalid();
                    on_cursor_name(x, cname, sizeof cname);
                    if (!cv__engine_get_cursor(s->e, cname, &seq, &cerr) && seq >= 0)
                        x->bus_cursor = x->saved_cursor = seq;
                    jv_free(cerr);
                }
                if (sc->every_ms) {
                    int64_t k = (now - x->deployed_at) / sc->every_ms;
                    if (k >= 1) { /* the latest occasion, if it was missed */
                        char key[600];
                        int64_t t = x->deployed_at + k * sc->every_ms;
                        snprintf(key, sizeof key, "schedule:%s/%s:%s:every:%lld", x->ns, x->name, x->version,
                                 (long long)t);
                        fire(s, x, key, jv_object(), NULL);
                    }
                    x->next_at = x->deployed_at + (k + 1) * sc->every_ms;
                } else if (sc->has_cron) {
                    int64_t last = cron_latest(&sc->cron, x->deployed_at, now);
                    if (last) {
                        char key[600];
                        snprintf(key, sizeof key, "schedule:%s/%s:%s:cron:%lld", x->ns, x->name, x->version,
                                 (long long)last);
                        fire(s, x, key, jv_object(), NULL);
                    }
                    x->next_at = cv__cron_next(&sc->cron, now);
                } else if (sc->after_ms) {
                    jv last = newest_instance(s, x);
                    if (jv_get_kind(last) == JV_KIND_OBJECT) {
                        jv id = jv_object_get(jv_copy(last), jv_string("id"));
                        snprintf(x->last_id, sizeof x->last_id, "%s", jv_string_value(id));
                        jv_free(id);
                    } else {
                        x->next_at = x->deployed_at + sc->after_ms;
                        x->after_ready = 1;
                    }
                    jv_free(last);
                }
            }
            jv_free(diags);
            jv_free(text);
        } else {
            jv_free(err);
        }
        cv_workflow_free(wf);
        jv_free(ver);
        jv_free(ns);
        jv_free(name);
        jv_free(w);
    }
    jv_free(list);
}

/* `after`: is the run it waits for over? Then the next one is due `after`
 * its end. */
static void after_check(struct cv_schedules *s, struct entry *x)
{
    jv inst, err = jv_invalid();
    if (cv__engine_get_instance(s->e, x->last_id, &inst, &err)) {
        jv_free(err);
        x->last_id[0] = 0; /* gone: start afresh */
        x->next_at = cv__wall_ms() + x->wf->schedule.after_ms;
        x->after_ready = 1;
        return;
    }
    jv_free(err);
    jv st = jv_object_get(jv_copy(inst), jv_string("status"));
    if (jv_get_kind(st) == JV_KIND_STRING && ended(jv_string_value(st))) {
        jv at = jv_object_get(jv_copy(inst), jv_string("updatedAt"));
        x->next_at = (jv_get_kind(at) == JV_KIND_NUMBER ? (int64_t)jv_number_value(at) : cv__wall_ms()) +
                     x->wf->schedule.after_ms;
        x->after_ready = 1;
        jv_free(at);
    }
    jv_free(st);
    jv_free(inst);
}

/* `on`: looks at the bus events after the entry's cursor. */
static void on_events(struct cv_schedules *s, struct entry *x)
{
    const struct cv_strategy *st = &x->wf->schedule.on;
    int64_t fired_upto = -1; /* the event that completed the last start (of this call) */
    int failed = 0;
    for (int pages = 0; pages < 100; pages++) {
        jv page, err = jv_invalid();
        if (cv__engine_list_events(s->e, x->bus_cursor, 1000, &page, &err)) {
            jv_free(err);
            return;
        }
        jv_free(err);
        int n = jv_array_length(jv_copy(page));
        jv_array_foreach(page, i, entry)
        {
            jv seqv = jv_object_get(jv_copy(entry), jv_string("seq"));
            jv recv = jv_object_get(jv_copy(entry), jv_string("receivedAt"));
            int64_t seq = (int64_t)jv_number_value(seqv);
            x->bus_cursor = seq;
            jv ev = jv_object_get(entry, jv_string("event"));
            if (jv_get_kind(recv) == JV_KIND_NUMBER && (int64_t)jv_number_value(recv) >= x->deployed_at) {
                int which = -1;
                for (int f = 0; f < st->n && which < 0; f++) {
                    if (st->mode == CV_LISTEN_ALL && jv_get_kind(x->all_matched) == JV_KIND_ARRAY) {
                        jv m = jv_array_get(jv_copy(x->all_matched), f);
                        int taken = jv_get_kind(m) == JV_KIND_OBJECT;
                        jv_free(m);
                        if (taken)
                            continue;
                    }
                    jv ferr = jv_invalid();
                    int r = cv__event_matches(x->wf, &st->filters[f], ev, &ferr);
                    jv_free(ferr);
                    if (r > 0)
                        which = f;
                }
                if (st->mode == CV_LISTEN_ANY && st->n == 0)
                    which = 0;
                char key[600];
                if (which >= 0 && st->mode != CV_LISTEN_ALL) {
                    snprintf(key, sizeof key, "schedule:%s/%s:%s:on:%lld", x->ns, x->name, x->version,
                             (long long)seq);
                    if (fire(s, x, key, JV_ARRAY(jv_copy(ev)), NULL))
                        failed = 1;
                    else if (!failed)
                        fired_upto = seq;
                } else if (which >= 0) {
                    if (jv_get_kind(x->all_matched) != JV_KIND_ARRAY) {
                        jv_free(x->all_matched);
                        x->all_matched = jv_array();
                        for (int f = 0; f < st->n; f++)
                            x->all_matched = jv_array_append(x->all_matched, jv_null());
                    }
                    x->all_matched = jv_array_set(
                        x->all_matched, which,
                        JV_OBJECT(jv_string("seq"), jv_number((double)seq), jv_string("event"), jv_copy(ev)));
                    int complete = 1;
                    jv_array_foreach(x->all_matched, f, m)
                    {
                        complete = complete && jv_get_kind(m) == JV_KIND_OBJECT;
                        jv_free(m);
                    }
                    if (complete) {
                        size_t used = (size_t)snprintf(key, sizeof key, "schedule:%s/%s:%s:on", x->ns, x->name,
                                                       x->version);
                        jv input = jv_array();
                        jv_array_foreach(x->all_matched, f, m)
                        {
                            jv q = jv_object_get(jv_copy(m), jv_string("seq"));
                            if (used < sizeof key)
                                used += (size_t)snprintf(key + used, sizeof key - used, ":%lld",
                                                         (long long)jv_number_value(q));
                            jv_free(q);
                            input = jv_array_append(input, jv_object_get(m, jv_string("event")));
                        }
                        jv_free(x->all_matched);
                        x->all_matched = jv_null();
                        if (fire(s, x, key, input, NULL))
                            failed = 1;
                        else if (!failed)
                            fired_upto = seq;
                    }
                }
            }
            jv_free(ev);
            jv_free(recv);
            jv_free(seqv);
        }
        jv_free(page);
        if (n < 1000)
            break;
    }
    /* Events up to the one that completed the last start are done with: a
     * restart reads the bus after it. Whatever was half-matched then (an
     * `all` missing a filter) came after it, and is matched again the same
     * way, to the same idempotency keys. A start that failed holds the cursor
     * back, so that a restart tries it again. */
    if (fired_upto > x->saved_cursor) {
        char name[600];
        jv err = jv_invalid();
        on_cursor_name(x, name, sizeof name);
        if (!cv__engine_set_cursor(s->e, name, fired_upto, &err))
            x->saved_cursor = fired_upto;
        jv_free(err);
    }
}

static void tick(struct cv_schedules *s, int events)
{
    int64_t now = cv__wall_ms();
    for (int i = 0; i < s->n; i++) {
        struct entry *x = &s->entries[i];
        const struct cv_schedule *sc = &x->wf->schedule;
        char key[600];
        if (sc->every_ms && x->next_at && now >= x->next_at) {
            snprintf(key, sizeof key, "schedule:%s/%s:%s:every:%lld", x->ns, x->name, x->version,
                     (long long)x->next_at);
            fire(s, x, key, jv_object(), NULL);
            /* one start per tick: occasions missed meanwhile are skipped */
            while (x->next_at <= now)
                x->next_at += sc->every_ms;
        } else if (!sc->every_ms && sc->has_cron && x->next_at && now >= x->next_at) {
            snprintf(key, sizeof key, "schedule:%s/%s:%s:cron:%lld", x->ns, x->name, x->version,
                     (long long)x->next_at);
            fire(s, x, key, jv_object(), NULL);
            x->next_at = cv__cron_next(&sc->cron, now);
        } else if (!sc->every_ms && !sc->has_cron && sc->after_ms) {
            if (!x->after_ready && x->last_id[0])
                after_check(s, x);
            if (x->after_ready && now >= x->next_at) {
                snprintf(key, sizeof key, "schedule:%s/%s:%s:after:%s", x->ns, x->name, x->version,
                         x->last_id[0] ? x->last_id : "first");
                char id[64];
                fire(s, x, key, jv_object(), id);
                if (id[0]) {
                    snprintf(x->last_id, sizeof x->last_id, "%s", id);
                    x->after_ready = 0;
                }
            }
        }
        if (sc->has_on && events)
            on_events(s, x);
    }
}

static void *schedule_main(void *arg)
{
    struct cv_schedules *s = arg;
    int first = 1;
    for (;;) {
        /* until the next occasion, and at least 4 times a second (`after`
         * looks at the run it waits for) */
        int64_t wait_ms = 250, now = cv__wall_ms();
        for (int i = 0; i < s->n; i++)
            if (s->entries[i].next_at && s->entries[i].next_at - now < wait_ms)
                wait_ms = s->entries[i].next_at - now;
        pthread_mutex_lock(&s->lock);
        if (!first && !s->stopping && !s->reload && !s->events && wait_ms > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)wait_ms * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        int stopping = s->stopping, reload = s->reload || first, events = s->events || first;
        s->reload = s->events = 0;
        pthread_mutex_unlock(&s->lock);
        if (stopping)
            break;
        if (reload)
            load(s);
        first = 0;
        tick(s, events);
    }
    entries_free(s);
    return NULL;
}

int cv__schedules_start(struct cv_engine *e, struct cv_schedules **out)
{
    struct cv_schedules *s = calloc(1, sizeof *s);
    if (!s)
        return CV_ENOMEM;
    s->e = e;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->th, NULL, schedule_main, s)) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return CV_ENOMEM;
    }
    *out = s;
    return 0;
}

static void poke(struct cv_schedules *s, int *flag)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    *flag = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void cv__schedules_reload(struct cv_schedules *s) { poke(s, s ? &s->reload : NULL); }
void cv__schedules_events(struct cv_schedules *s) { poke(s, s ? &s->events : NULL); }

void cv__schedules_stop(struct cv_schedules *s)
{
    if (!s)
        return;
    poke(s, &s->stopping);
    pthread_join(s->th, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
