/*
 * bench_engine.c — the durable engine's figures against DESIGN.md's budgets:
 *
 *   (a) a 3-step workflow, each step an HTTP GET to a local service, each
 *       step checkpointed (SQLite, synchronous=FULL): completed workflows per
 *       second with 32 in flight, and the latency of one at a time
 *       (p50/p95/p99). Budget: >= 5,000/s at 32; p50 <= 2 ms, p99 <= 5 ms.
 *   (b) restart with N in-flight instances (waiting on a timer): the time
 *       from a new engine's start until every one is resumed.
 *       Budget: 10,000 resumed in <= 2 s.
 *   (c) resident memory of N instances waiting on a timer.
 *       Budget: 100,000 waiting in <= 300 MiB.
 *   (d) the same for N instances waiting on an event (a correlated listen).
 *
 * The local service is a small HTTP responder on 127.0.0.1 inside this
 * program (a thread per connection, keep-alive, fixed JSON answer). Prints figures and the
 * machine; never fails on a timing. Environment: BENCH_ENGINE_RUNS (workflows
 * for (a), default 2000), BENCH_ENGINE_SERIAL (default 300), BENCH_ENGINE_WAITING
 * (instances for (b) and (c), default 10000), BENCH_ENGINE_DIR (database
 * directory, default a fresh one under /tmp), BENCH_ENGINE_BATCH_WAIT_US (the
 * group commit's wait for company, default 0 as the engine's).
 */
#include "engine/engine.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? atol(v) : dflt;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- the local service ----------------------------------------------------------------- */

static atomic_long served;

/* One connection: answers each request (GETs without a body) in turn and
 * keeps the connection open, as HTTP/1.1 services do. */
static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                                 "\r\n{\"ok\":true}";
    char buf[8192];
    size_t have = 0;
    for (;;) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (!end) {
            if (have == sizeof buf)
                break; /* a request this service does not expect */
            ssize_t n = read(fd, buf + have, sizeof buf - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            continue;
        }
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (write(fd, answer, sizeof answer - 1) < 0)
            break;
        atomic_fetch_add(&served, 1);
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            break;
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, serve_conn, (void *)(intptr_t)fd))
            close(fd);
        pthread_attr_destroy(&a);
    }
    return NULL;
}

static int start_service(int *port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 512) || getsockname(ls, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    pthread_t th;
    return pthread_create(&th, NULL, accept_loop, (void *)(intptr_t)ls) ? -1 : 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

struct bench {
    cv_runtime *rt;
    cv_store *st;
    struct cv_engine *e;
};

static int open_bench(struct bench *b, const char *db, int workers)
{
    jv err = jv_invalid();
    if (cv_runtime_new(&b->rt) || cv_store_open(db, &b->st, &err)) {
        fprintf(stderr, "cannot open %s\n", db);
        return -1;
    }
    jv_free(err);
    struct cv_engine_options o = {.workers = workers, .batch_max = 512, .batch_wait_us = (int)env_long("BENCH_ENGINE_BATCH_WAIT_US", 0)};
    if (cv__engine_new(b->rt, b->st, &o, &b->e))
        return -1;
    return 0;
}

static int start_bench(struct bench *b, int *resumed)
{
    jv err = jv_invalid();
    int rc = cv__engine_start(b->e, resumed, &err);
    jv_free(err);
    return rc;
}

static void close_bench(struct bench *b)
{
    cv__engine_stop(b->e);
    cv_store_close(b->st);
    cv_runtime_free(b->rt);
}

static void deploy(struct bench *b, const char *text)
{
    jv out;
    if (cv__engine_deploy(b->e, text, strlen(text), &out)) {
        jv s = jv_dump_string(out, 0);
        fprintf(stderr, "deploy failed: %s\n", jv_string_value(s));
        jv_free(s);
        exit(1);
    }
    jv_free(out);
}

static int run_one(struct bench *b, const char *name)
{
    char id[64];
    int existed;
    jv err = jv_invalid();
    if (cv__engine_start_instance(b->e, "bench", name, "1.0.0", jv_object(), NULL, id, &existed, &err)) {
        jv_free(err);
        return -1;
    }
    jv_free(err);
    jv r;
    if (cv__engine_wait(b->e, id, 60000, &r))
        return -1;
    jv st = jv_object_get(r, jv_string("status"));
    int ok = !strcmp(jv_string_value(st), "completed");
    jv_free(st);
    return ok ? 0 : -1;
}

struct client {
    struct bench *b;
    atomic_long *left;
    atomic_long *failed;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    while (atomic_fetch_sub(c->left, 1) > 0)
        if (run_one(c->b, "three"))
            atomic_fetch_add(c->failed, 1);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void)
{
    struct utsname u;
    uname(&u);
    char model[256] = "unknown";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[512];
        while (fgets(line, sizeof line, ci))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c)
                    snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = 0;
                break;
            }
        fclose(ci);
    }
    printf("machine: %s, %s, %ld cores online\n", u.machine, model, sysconf(_SC_NPROCESSORS_ONLN));

    char dir[256];
    const char *given = getenv("BENCH_ENGINE_DIR");
    if (given && *given)
        snprintf(dir, sizeof dir, "%s", given);
    else {
        snprintf(dir, sizeof dir, "/tmp/conveyor-bench-engine-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
    }
    int port;
    if (start_service(&port)) {
        fprintf(stderr, "cannot start the local service\n");
        return 1;
    }
    char three[1024];
    snprintf(three, sizeof three,
             "document: {dsl: '1.0.0', namespace: bench, name: three, version: '1.0.0'}\n"
             "do:\n"
             "  - a: {call: http, with: {method: get, endpoint: 'http://127.0.0.1:%d/a'}}\n"
             "  - b: {call: http, with: {method: get, endpoint: 'http://127.0.0.1:%d/b'}}\n"
             "  - c: {call: http, with: {method: get, endpoint: 'http://127.0.0.1:%d/c'}}\n",
             port, port, port);

    /* (a) throughput at 32 in flight, then one at a time */
    long runs = env_long("BENCH_ENGINE_RUNS", 2000), serial = env_long("BENCH_ENGINE_SERIAL", 300);
    char db[512];
    snprintf(db, sizeof db, "%s/a.sqlite", dir);
    struct bench b;
    if (open_bench(&b, db, 2) || start_bench(&b, NULL))
        return 1;
    deploy(&b, three);
    for (int i = 0; i < 20; i++) /* warm up: definitions loaded on both workers */
        run_one(&b, "three");
    atomic_long left = runs, failed = 0;
    struct client cl = {&b, &left, &failed};
    pthread_t th[32];
    double t0 = now_s();
    for (int i = 0; i < 32; i++)
        pthread_create(&th[i], NULL, client_main, &cl);
    for (int i = 0; i < 32; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    struct cv_engine_stats s;
    cv__engine_stats(b.e, &s);
    printf("\n(a) 3-step workflow, each step an HTTP call to a local service, each step checkpointed\n");
    printf("    concurrency 32: %ld workflows in %.2f s = %.0f workflows/s (%ld failed; %lld checkpoints in %lld "
           "transactions, %.1f per transaction)   budget >= 5,000/s\n",
           runs, dt, (double)runs / dt, (long)failed, s.checkpoints, s.batches,
           s.batches ? (double)s.checkpoints / (double)s.batches : 0.0);
    double *lat = calloc((size_t)serial, sizeof *lat);
    int ok = 0;
    for (long i = 0; i < serial && lat; i++) {
        double a0 = now_s();
        if (!run_one(&b, "three"))
            lat[ok++] = (now_s() - a0) * 1000.0;
    }
    if (ok) {
        qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
        printf("    one at a time (%d runs): p50 %.2f ms, p95 %.2f ms, p99 %.2f ms   budget p50 <= 2 ms, p99 <= 5 ms\n",
               ok, lat[ok / 2], lat[(int)(ok * 0.95)], lat[(int)(ok * 0.99)]);
    }
    free(lat);
    close_bench(&b);

    /* (b) and (c): instances waiting on a timer */
    long waiting = env_long("BENCH_ENGINE_WAITING", 10000);
    snprintf(db, sizeof db, "%s/b.sqlite", dir);
    if (open_bench(&b, db, 2) || start_bench(&b, NULL))
        return 1;
    deploy(&b, "document: {dsl: '1.0.0', namespace: bench, name: sleeper, version: '1.0.0'}\n"
               "do:\n"
               "  - nap:\n"
               "      wait: PT1H\n");
    long rss0 = rss_kib();
    double c0 = now_s();
    for (long i = 0; i < waiting; i++) {
        char id[64];
        int existed;
        jv err = jv_invalid();
        if (cv__engine_start_instance(b.e, "bench", "sleeper", "1.0.0", jv_object(), NULL, id, &existed, &err)) {
            jv_free(err);
            fprintf(stderr, "start failed at %ld\n", i);
            break;
        }
        jv_free(err);
    }
    double created = now_s() - c0;
    /* every one checkpointed at its wait */
    for (int i = 0; i < 6000; i++) {
        cv__engine_stats(b.e, &s);
        if (s.checkpoints >= waiting)
            break;
        usleep(10000);
    }
    long rss1 = rss_kib();
    printf("\n(c) %ld instances waiting on a timer: resident %.1f MiB more (%.2f KiB each; %.0f MiB for 100,000 at "
           "that rate)   budget 100,000 in <= 300 MiB\n",
           waiting, (double)(rss1 - rss0) / 1024.0, (double)(rss1 - rss0) / (double)waiting,
           (double)(rss1 - rss0) / (double)waiting * 100000.0 / 1024.0);
    printf("    (created through the store at %.0f instances/s, one durable transaction each)\n",
           (double)waiting / created);
    close_bench(&b);

    /* (d): instances waiting on an event (a correlated listen) */
    char dbe[600];
    snprintf(dbe, sizeof dbe, "%s/d.sqlite", dir);
    struct bench be;
    if (open_bench(&be, dbe, 2) || start_bench(&be, NULL))
        return 1;
    deploy(&be, "document: {dsl: '1.0.0', namespace: bench, name: listener, version: '1.0.0'}\n"
                "do:\n"
                "  - waitForDocument:\n"
                "      listen:\n"
                "        to:\n"
                "          one:\n"
                "            with: {type: com.example.document.uploaded}\n"
                "            correlate:\n"
                "              claim: {from: '${ .data.claim }', expect: '${ .claim }'}\n");
    long rss2 = rss_kib();
    for (long i = 0; i < waiting; i++) {
        char id[64];
        int existed;
        jv err = jv_invalid();
        if (cv__engine_start_instance(be.e, "bench", "listener", "1.0.0", JV_OBJECT(jv_string("claim"), jv_number(i)),
                                      NULL, id, &existed, &err)) {
            jv_free(err);
            fprintf(stderr, "start failed at %ld\n", i);
            break;
        }
        jv_free(err);
    }
    for (int i = 0; i < 6000; i++) {
        cv__engine_stats(be.e, &s);
        if (s.checkpoints >= waiting)
            break;
        usleep(10000);
    }
    long rss3 = rss_kib();
    printf("\n(d) %ld instances waiting on an event (listen with a correlation): resident %.1f MiB more (%.2f KiB "
           "each; %.0f MiB for 100,000 at that rate)   budget 100,000 in <= 300 MiB\n",
           waiting, (double)(rss3 - rss2) / 1024.0, (double)(rss3 - rss2) / (double)waiting,
           (double)(rss3 - rss2) / (double)waiting * 100000.0 / 1024.0);
    close_bench(&be);

    if (open_bench(&b, db, 2))
        return 1;
    int resumed = 0;
    double r0 = now_s();
    start_bench(&b, &resumed);
    for (int i = 0; i < 60000; i++) {
        cv__engine_stats(b.e, &s);
        if (s.running >= resumed)
            break;
        usleep(1000);
    }
    double rt = now_s() - r0;
    printf("\n(b) restart with %d in-flight instances: all resumed (restored and parked) in %.2f s   budget 10,000 in "
           "<= 2 s\n",
           resumed, rt);
    close_bench(&b);
    printf("\n(the local service answered %ld requests)\n", (long)atomic_load(&served));
    return 0;
}
