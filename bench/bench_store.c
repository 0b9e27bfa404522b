/*
 * bench_store.c — durable checkpoints per second on the SQLite store.
 *
 * Prints figures, never asserts them (STYLE.md). A fresh database file (WAL,
 * synchronous=FULL: every commit is fsync'ed before cv_store_checkpoint
 * returns) holds 500 instances; for each batch size (1, 10, 100, 500) the
 * program commits batches for BENCH_SECONDS, each checkpoint of one
 * instance carrying a state of about 1 KiB and one history event, the shape
 * the engine writes after an effect. Batches of n are n different instances
 * in one transaction: group commit (DESIGN.md decision 4), so one fsync
 * serves n checkpoints. Building the jv values is inside the measured loop
 * (the engine pays it too); the commit latency percentiles time the
 * cv_store_checkpoint call alone.
 *
 * Also printed: the cost of one 4 KiB write + fdatasync on the same
 * directory (the floor under a batch of 1), and the file sizes at the end.
 *
 * Environment: BENCH_SECONDS (per batch size, default 3), BENCH_STORE_DIR
 * (where the database goes, default $TMPDIR or /tmp: put it on the disk you
 * mean to measure), BENCH_BATCHES (comma list of batch sizes, default
 * 1,10,100,500).
 */
#include "conveyor.h"
#include "common/util.h"
#include "store/store.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define INSTANCES 500

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double env_double(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    double d = strtod(v, NULL);
    return d > 0 ? d : dflt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)(p * (n - 1) + 0.5);
    return v[k];
}

static void print_machine(const char *dir)
{
    struct utsname u;
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t')
                        c++;
                    size_t n = strcspn(c, "\n");
                    if (n >= sizeof model)
                        n = sizeof model - 1;
                    memcpy(model, c, n);
                    model[n] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    printf("machine: %s, %s, %ld cores online, kernel %s\n", u.machine, model, sysconf(_SC_NPROCESSORS_ONLN),
           u.release);
    struct statfs sf;
    const char *fs = "unknown";
    char hex[32];
    if (statfs(dir, &sf) == 0) {
        switch ((unsigned long)sf.f_type) {
        case 0xEF53:
            fs = "ext4";
            break;
        case 0x58465342:
            fs = "xfs";
            break;
        case 0x9123683E:
            fs = "btrfs";
            break;
        case 0x01021994:
            fs = "tmpfs (not durable: fsync is free)";
            break;
        case 0x794c7630:
            fs = "overlayfs";
            break;
        default:
            snprintf(hex, sizeof hex, "0x%lx", (unsigned long)sf.f_type);
            fs = hex;
        }
    }
    printf("database directory: %s (%s)\n", dir, fs);
    printf("conveyor %s, SQLite store: WAL, synchronous=FULL\n\n", CV_VERSION);
}

static void die(const char *what, int rc, jv err)
{
    fprintf(stderr, "bench_store: %s: %s (%s)\n", what, cv_strerror(rc),
            jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "");
    exit(1);
}

/* Median cost of a 4 KiB append + fdatasync in `dir`: the floor of one commit. */
static double fsync_floor_ms(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/fsync-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    double t[200];
    int n = 0;
    for (; n < 200; n++) {
        double t0 = now_s();
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
            break;
        t[n] = (now_s() - t0) * 1e3;
    }
    close(fd);
    unlink(path);
    return pct(t, n, 0.5);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

int main(void)
{
    cv__malloc_tune(); /* as every conveyor process (cv_runtime_new) */
    double seconds = env_double("BENCH_SECONDS", 3);
    const char *base = getenv("BENCH_STORE_DIR");
    if (!base || !*base)
        base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cv-bench-store-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror(dir);
        return 1;
    }
    char db[600], wal[620];
    snprintf(db, sizeof db, "%s/bench.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", db);
    print_machine(dir);
    printf("fsync floor: one 4 KiB write + fdatasync takes %.3f ms (median of 200)\n\n", fsync_floor_ms(dir));

    cv_store *s = NULL;
    jv err = jv_invalid();
    int rc = cv_store_open(db, &s, &err);
    if (rc)
        die("open", rc, err);
    rc = cv_store_put_workflow(s, "bench", "wf", "1.0.0", "document: {name: wf}", &err);
    if (rc)
        die("deploy", rc, err);
    static char ids[INSTANCES][64];
    for (int i = 0; i < INSTANCES; i++) {
        int existed;
        rc = cv_store_create_instance(s, "bench", "wf", "1.0.0", jv_object(), NULL, ids[i], &existed, &err);
        if (rc)
            die("create", rc, err);
    }
    char pad[1001];
    memset(pad, 'p', 1000);
    pad[1000] = 0;

    int sizes[16], nsizes = 0;
    const char *list = getenv("BENCH_BATCHES");
    if (!list || !*list)
        list = "1,10,100,500";
    for (const char *p = list; *p && nsizes < 16;) {
        long v = strtol(p, (char **)&p, 10);
        if (v > 0 && v <= INSTANCES)
            sizes[nsizes++] = (int)v;
        while (*p == ',' || *p == ' ')
            p++;
        if (*p && (*p < '0' || *p > '9'))
            break;
    }

    printf("%-6s %14s %12s %12s %12s %12s %14s\n", "batch", "checkpoints/s", "commits/s", "p50 commit", "p99 commit",
           "cpu/ckpt", "state size");
    struct cv_checkpoint *cps = calloc(INSTANCES, sizeof *cps);
    double *lat = malloc(sizeof(double) * 2000000);
    if (!cps || !lat)
        return 1;
    long step = 0;
    for (int si = 0; si < nsizes; si++) {
        int b = sizes[si];
        long commits = 0;
        int nlat = 0;
        size_t state_bytes = 0;
        double t0 = now_s(), c0 = cpu_s(), t = t0;
        while (t - t0 < seconds) {
            for (int i = 0; i < b; i++) {
                step++;
                cv_checkpoint_init(&cps[i], ids[i]);
                cps[i].status = CV_ST_RUNNING;
                jv frame = jv_object();
                frame = jv_object_set(frame, jv_string("ref"), jv_string("/do/3/charge"));
                frame = jv_object_set(frame, jv_string("data"),
                                      jv_object_set(jv_object_set(jv_object(), jv_string("step"), jv_number(step)),
                                                    jv_string("note"), jv_string(pad)));
                jv state = jv_object_set(jv_object(), jv_string("fibers"),
                                         jv_array_append(jv_array(), jv_object_set(jv_object(), jv_string("frames"),
                                                                                    jv_array_append(jv_array(), frame))));
                if (commits == 0 && i == 0) {
                    jv d = jv_dump_string(jv_copy(state), 0);
                    state_bytes = (size_t)jv_string_length_bytes(d);
                }
                cps[i].state = state;
                cps[i].history = jv_array_append(
                    jv_array(),
                    jv_object_set(jv_object_set(jv_object_set(jv_object(), jv_string("type"),
                                                              jv_string("task.completed")),
                                                jv_string("task"), jv_string("/do/3/charge")),
                                  jv_string("data"), jv_object_set(jv_object(), jv_string("step"), jv_number(step))));
            }
            double c = now_s();
            rc = cv_store_checkpoint(s, cps, b, &err);
            t = now_s();
            if (rc)
                die("checkpoint", rc, err);
            if (nlat < 2000000)
                lat[nlat++] = (t - c) * 1e3;
            commits++;
        }
        double wall = t - t0, cpu = cpu_s() - c0;
        double n = (double)commits * b;
        printf("%-6d %14.0f %12.0f %9.3f ms %9.3f ms %9.1f us %12zu B\n", b, n / wall, commits / wall,
               pct(lat, nlat, 0.5), pct(lat, nlat, 0.99), cpu / n * 1e6, state_bytes);
        fflush(stdout);
    }
    cv_store_close(s);
    long wal_size = file_size(wal);
    if (wal_size < 0)
        printf("\nfiles after the run: database %ld bytes (the WAL was folded in and removed on close)\n",
               file_size(db));
    else
        printf("\nfiles after the run: database %ld bytes, WAL %ld bytes\n", file_size(db), wal_size);
    free(cps);
    free(lat);
    unlink(db);
    unlink(wal);
    char shm[640];
    snprintf(shm, sizeof shm, "%s-shm", db);
    unlink(shm);
    rmdir(dir);
    return 0;
}
