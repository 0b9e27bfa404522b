/*
 * bench_interp.c — interpreter throughput and definition load cost.
 *
 * Prints figures, never asserts them (STYLE.md: a benchmark prints, a test
 * asserts). Two measurements, both on the calling thread with
 * clock_gettime(CLOCK_MONOTONIC):
 *
 *   (a) pure tasks interpreted per second: generated workflows of about 1,000
 *       task executions (only `set`, `switch` and `for`, no effects) run again
 *       and again through cv_run for a bounded time. Four shapes: "fast"
 *       (every value a literal or a simple path, so no jq at all), "ops" (one
 *       operator such as `.a + 1`, also evaluated without jq), "jq" (every
 *       task evaluates one expression that needs jq) and "mixed" (paths, literals, jq,
 *       a switch and a for over a 3-element array). The number of task
 *       executions per run is known from the generated shape and cross-checked
 *       once against the run's trace (cv_runtime_set_trace).
 *   (b) the cost of loading a 100-task document: cv_workflow_load of a
 *       document with ~100 jq expressions, of the same document with literals
 *       in place of the expressions (parse + validate + build only), YAML
 *       parse alone (cv__yaml_parse), and the expression bundle compile alone
 *       (cv__exprset_*), each as median and p90 over repeated loads.
 *   (c) the cost of one jq evaluation as the number of expressions in the
 *       definition's bundle grows (1, 16, 256, 1,000), next to libjq alone
 *       running `.a + 1` compiled by itself (the floor).
 *
 * Environment: BENCH_SECONDS (time per throughput shape, default 3),
 * BENCH_LOADS (loads per load-cost case, default 20), BENCH_TASKS (task
 * executions per generated workflow, default 1000), BENCH_ONLY (a list of
 * parts to run among fast, jq, mixed, eval, load; default all).
 *
 * Uses the internal headers expr/expr.h and json/yaml.h for the split timings;
 * everything else goes through the public conveyor.h.
 */
#include "conveyor.h"
#include "dsl/validate.h"
#include "expr/expr.h"
#include "json/yaml.h"

#include <jq.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the process (all threads): unlike wall time, barely affected by other
 * processes competing for the cores. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    long n = strtol(v, NULL, 10);
    return n > 0 ? n : dflt;
}

static double env_double(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    double d = strtod(v, NULL);
    return d > 0 ? d : dflt;
}

/* A growable text buffer; appends with a printf format. Aborts on OOM (a
 * benchmark, not the library). */
struct buf {
    char *p;
    size_t len, cap;
};

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            fputs("bench: formatting failed\n", stderr);
            exit(2);
        }
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            fputs("bench: out of memory\n", stderr);
            exit(2);
        }
        b->p = np;
        b->cap = cap;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *sorted, int n, double p)
{
    int k = (int)(p * n + 0.999999) - 1;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return sorted[k];
}

/* ---- the machine ------------------------------------------------------------- */

static void print_machine(void)
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
    printf("machine: %s, %s, %ld cores online, kernel %s\n", u.machine, model,
           sysconf(_SC_NPROCESSORS_ONLN), u.release);
    printf("conveyor %s\n\n", CV_VERSION);
}

/* ---- (a) throughput: generated workflows --------------------------------------
 * The data flowing through every task is {a, items: [1,2,3]}; each `set`
 * rebuilds that shape so the document can be any length. Two expressions per
 * task at most: libjq 1.6 limits one compiled function to 64 KiB of bytecode
 * and conveyor compiles all expressions of a definition into one bundle, so a
 * definition with more than about 2,500 short expressions fails to load
 * (reported in docs/benchmarks.md).
 */

enum shape { SHAPE_FAST, SHAPE_OPS, SHAPE_JQ, SHAPE_MIXED };

static void gen_header(struct buf *b, const char *name)
{
    buf_printf(b,
               "document:\n  dsl: '1.0.0'\n  namespace: bench\n  name: %s\n  version: '0.1.0'\n"
               "do:\n",
               name);
}

/* A `set` task at `indent` spaces. kind 0: paths and a literal (fast path);
 * kind 1: one expression that needs jq (`.a + (.items | length) - 2`, the
 * same value as `.a + 1`) and a path; kind 2: inside a `for`, one operator
 * over the loop variable (`.a + $item`); kind 3: one operator (`.a + 1`),
 * which conveyor evaluates without jq. */
static void gen_set(struct buf *b, int indent, const char *name, int kind)
{
    const char *sp = "                ";
    int i = indent;
    buf_printf(b, "%.*s- %s:\n%.*s    set:\n", i, sp, name, i, sp);
    if (kind == 0)
        buf_printf(b, "%.*s      a: ${ .a }\n", i, sp);
    else if (kind == 1)
        buf_printf(b, "%.*s      a: ${ .a + (.items | length) - 2 }\n", i, sp);
    else if (kind == 2)
        buf_printf(b, "%.*s      a: ${ .a + $item }\n", i, sp);
    else
        buf_printf(b, "%.*s      a: ${ .a + 1 }\n", i, sp);
    buf_printf(b, "%.*s      items: ${ .items }\n", i, sp);
    if (kind == 0)
        buf_printf(b, "%.*s      tag: literal\n", i, sp);
}

/* Generates a workflow of about `target` task executions; returns the text and
 * sets *executed to the exact number of task executions per run (every task
 * counts once, a `for` counts once plus once per inner task per item). */
static char *gen_workflow(enum shape shape, int target, int *executed)
{
    struct buf b = {0};
    static const char *const names[] = {"fast", "ops", "jq", "mixed"};
    gen_header(&b, names[shape]);
    int n = 0, t = 0;
    while (n < target) {
        char name[32];
        snprintf(name, sizeof name, "t%d", t);
        if (shape == SHAPE_FAST) {
            gen_set(&b, 2, name, 0);
            n++;
        } else if (shape == SHAPE_OPS) {
            gen_set(&b, 2, name, 3);
            n++;
        } else if (shape == SHAPE_JQ) {
            gen_set(&b, 2, name, 1);
            n++;
        } else {
            /* a block of 8 entries = 11 executions: 4 fast sets, 2 jq sets,
             * 1 switch (jq condition), 1 for over 3 items of a jq set */
            switch (t % 8) {
            case 0: case 1: case 4: case 7:
                gen_set(&b, 2, name, 0);
                n++;
                break;
            case 2: case 6:
                gen_set(&b, 2, name, 1);
                n++;
                break;
            case 3:
                buf_printf(&b,
                           "  - %s:\n      switch:\n        - positive:\n            when: ${ .a > 0 }\n"
                           "            then: continue\n        - default:\n            then: continue\n",
                           name);
                n++;
                break;
            case 5:
                buf_printf(&b, "  - %s:\n      for:\n        each: item\n        in: ${ .items }\n      do:\n", name);
                gen_set(&b, 8, "inner", 2);
                n += 1 + 3;
                break;
            }
        }
        t++;
    }
    *executed = n;
    return b.p;
}

static jv bench_input(void)
{
    return jv_parse("{\"a\": 1, \"items\": [1, 2, 3]}");
}

/* Runs once with tracing on and returns the number of trace entries. */
static int count_trace(const cv_workflow *wf)
{
    cv_runtime *rt = NULL;
    if (cv_runtime_new(&rt))
        return -1;
    cv_runtime_set_trace(rt, 1);
    jv report;
    int rc = cv_run(rt, wf, bench_input(), &report);
    int n = -1;
    if (rc == CV_OK) {
        jv tr = jv_object_get(jv_copy(report), jv_string("trace"));
        if (jv_get_kind(tr) == JV_KIND_ARRAY)
            n = jv_array_length(jv_copy(tr));
        jv_free(tr);
    }
    jv_free(report);
    cv_runtime_free(rt);
    return n;
}

static void bench_shape(enum shape shape, const char *label, int target, double seconds)
{
    int per_run = 0;
    char *text = gen_workflow(shape, target, &per_run);
    cv_workflow *wf = NULL;
    jv diags = jv_invalid();
    int rc = cv_workflow_load(text, strlen(text), label, &wf, &diags);
    if (rc != CV_OK) {
        printf("%-6s: load failed: %s\n", label, cv_strerror(rc));
        if (jv_is_valid(diags)) {
            jv_array_foreach(diags, i, d)
            {
                char *m = cv_diag_format(d);
                printf("  %s\n", m ? m : "?");
                free(m);
            }
        }
        jv_free(diags);
        free(text);
        return;
    }
    jv_free(diags);

    int traced = count_trace(wf);
    cv_runtime *rt = NULL;
    if (cv_runtime_new(&rt)) {
        puts("cv_runtime_new failed");
        exit(2);
    }
    /* warm-up run (first-touch allocations), and a correctness check */
    jv report;
    rc = cv_run(rt, wf, bench_input(), &report);
    jv_free(report);
    if (rc != CV_OK) {
        printf("%-6s: run failed: %s\n", label, cv_strerror(rc));
        cv_runtime_free(rt);
        cv_workflow_free(wf);
        free(text);
        return;
    }

    long runs = 0;
    double best = 1e9;
    double c0 = cpu_s();
    double t0 = now_s(), t1 = t0;
    while (t1 - t0 < seconds && runs < 1000000) {
        double a = now_s(), ca = cpu_s();
        rc = cv_run(rt, wf, bench_input(), &report);
        jv_free(report);
        t1 = now_s();
        double cz = cpu_s();
        (void)a;
        if (rc != CV_OK) {
            printf("%-6s: run %ld failed: %s\n", label, runs, cv_strerror(rc));
            break;
        }
        if (cz - ca < best)
            best = cz - ca; /* the least disturbed run, in CPU time */
        runs++;
    }
    double cpu = cpu_s() - c0;
    double el = t1 - t0;
    double tasks = (double)runs * per_run;
    printf("%-6s: %4d tasks/run (trace: %d), %5ld runs in %.2f s wall, %.2f s cpu\n"
           "        %9.0f tasks/s wall  %9.0f tasks/s cpu  %9.0f tasks/s best run  (%.2f us/task cpu)\n",
           label, per_run, traced, runs, el, cpu, el > 0 ? tasks / el : 0, cpu > 0 ? tasks / cpu : 0,
           best > 0 ? per_run / best : 0, tasks > 0 ? cpu * 1e6 / tasks : 0);
    if (traced != per_run)
        printf("        note: trace has %d entries, the generated shape says %d\n", traced, per_run);
    fflush(stdout);
    cv_runtime_free(rt);
    cv_workflow_free(wf);
    free(text);
}

/* ---- (c) one jq evaluation vs. the size of the bundle ----------------------------
 * Every expression of a definition is compiled into one jq program that
 * binds all runtime arguments and then dispatches on the expression's index
 * with a binary tree of `if`s, so the cost of evaluating `.a + 1` grows with
 * the number of expressions in the definition. Measured directly on
 * cv__exprset: N expressions registered, one of them evaluated repeatedly.
 */
static void bench_eval_vs_bundle(double seconds)
{
    static const int sizes[] = {1, 16, 256, 1000};
    printf("one jq evaluation of `(.a + 1)` vs. expressions in the bundle (cv__expr_eval):\n");
    jv scope = jv_array();
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        struct cv_exprset *s = cv__exprset_new();
        jv errors = jv_array();
        for (int i = 0; i < n; i++) {
            char text[64];
            /* parenthesised: a single operator alone would take conveyor's
             * fast path and never reach jq */
            snprintf(text, sizeof text, "(.a + %d)", i + 1);
            cv__exprset_add(s, text, scope, "/bench", &errors);
        }
        if (cv__exprset_compile(s, &errors) != 0) {
            printf("  %5d expressions: compile failed\n", n);
            jv_free(errors);
            cv__exprset_free(s);
            continue;
        }
        jv_free(errors);
        struct cv_evalenv env;
        for (int i = 0; i < CV_VAR_COUNT; i++)
            env.vars[i] = jv_null();
        env.scope = jv_null();
        env.materialize = NULL;
        env.ud = NULL;
        jv dot = bench_input();
        long evals = 0;
        double c0 = cpu_s(), t0 = now_s();
        int idx = n / 2;
        while (now_s() - t0 < seconds / 4) {
            for (int r = 0; r < 1000; r++) {
                jv out;
                if (cv__expr_eval(s, idx, jv_copy(dot), &env, &out) != 0)
                    evals = -1000000000L;
                jv_free(out);
            }
            evals += 1000;
        }
        double cpu = cpu_s() - c0;
        if (evals < 0)
            printf("  %5d expressions: evaluation failed\n", n);
        else
            printf("  %5d expressions: %.2f us/eval cpu (%.0f evals/s)\n", n, cpu * 1e6 / evals, evals / cpu);
        jv_free(dot);
        cv__exprset_free(s);
    }
    jv_free(scope);

    /* the floor: libjq running the bare program, no bundle, no argument array */
    jq_state *jq = jq_init();
    if (jq && jq_compile(jq, ".a + 1")) {
        jv dot = bench_input();
        long evals = 0;
        double c0 = cpu_s(), t0 = now_s();
        while (now_s() - t0 < seconds / 4) {
            for (int r = 0; r < 1000; r++) {
                jq_start(jq, jv_copy(dot), 0);
                jv_free(jq_next(jq));
            }
            evals += 1000;
        }
        double cpu = cpu_s() - c0;
        printf("  libjq alone, jq_start+jq_next of `.a + 1`: %.2f us/eval cpu (%.0f evals/s)\n", cpu * 1e6 / evals,
               evals / cpu);
        jv_free(dot);
    }
    jq_teardown(&jq);
    printf("\n");
}

/* ---- (b) load cost -------------------------------------------------------------
 * A 100-task document where each task is a `set` of one value; with_exprs
 * makes that value a distinct jq expression (and every 10th task a switch
 * with a jq condition), otherwise a literal of similar length.
 */

static char *gen_load_doc(int ntasks, int with_exprs, int *nexprs)
{
    struct buf b = {0};
    gen_header(&b, with_exprs ? "load-exprs" : "load-literals");
    int ne = 0;
    for (int i = 0; i < ntasks; i++) {
        if (i % 10 == 9) {
            if (with_exprs)
                buf_printf(&b,
                           "  - t%d:\n      switch:\n        - big:\n            when: ${ .v%d > %d }\n"
                           "            then: continue\n        - default:\n            then: continue\n",
                           i, i - 1, i);
            else
                buf_printf(&b,
                           "  - t%d:\n      switch:\n        - big:\n            then: continue\n"
                           "        - default:\n            then: continue\n",
                           i);
        } else if (with_exprs) {
            buf_printf(&b, "  - t%d:\n      set:\n        v%d: ${ (.v%d // 0) + %d | tostring | length }\n", i, i,
                       i > 0 ? i - 1 : 0, i);
        } else {
            buf_printf(&b, "  - t%d:\n      set:\n        v%d: 'literal value number %d'\n", i, i, i);
        }
        if (with_exprs)
            ne++;
    }
    *nexprs = ne;
    return b.p;
}

/* Prints median/p90 of the CPU times and of the wall times (ms) of n loads.
 * CPU time is the steadier figure on a shared machine. */
static void report_times(const char *label, double *ms, int n)
{
    double *cpu = ms + n;
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    qsort(cpu, (size_t)n, sizeof *cpu, cmp_double);
    printf("  %-44s cpu median %7.2f p90 %7.2f | wall median %7.2f p90 %7.2f ms\n", label, pct(cpu, n, 0.5),
           pct(cpu, n, 0.9), pct(ms, n, 0.5), pct(ms, n, 0.9));
}

static void time_load(const char *label, const char *text, int loads)
{
    double *ms = calloc(2 * (size_t)loads, sizeof *ms);
    for (int i = 0; i < loads; i++) {
        cv_workflow *wf = NULL;
        jv diags = jv_invalid();
        double a = now_s(), ca = cpu_s();
        int rc = cv_workflow_load(text, strlen(text), label, &wf, &diags);
        double z = now_s(), cz = cpu_s();
        jv_free(diags);
        if (rc != CV_OK) {
            printf("  %s: load failed: %s\n", label, cv_strerror(rc));
            free(ms);
            return;
        }
        cv_workflow_free(wf);
        ms[i] = (z - a) * 1e3;
        ms[loads + i] = (cz - ca) * 1e3;
    }
    report_times(label, ms, loads);
    free(ms);
}

static void time_parse(const char *label, const char *text, int loads)
{
    double *ms = calloc(2 * (size_t)loads, sizeof *ms);
    for (int i = 0; i < loads; i++) {
        jv out, locs, diags = jv_array();
        double a = now_s(), ca = cpu_s();
        int rc = cv__yaml_parse(text, strlen(text), label, &out, &locs, &diags);
        double z = now_s(), cz = cpu_s();
        if (rc == 0) {
            jv_free(out);
            jv_free(locs);
        } else {
            jv_free(out);
        }
        jv_free(diags);
        ms[i] = (z - a) * 1e3;
        ms[loads + i] = (cz - ca) * 1e3;
    }
    report_times(label, ms, loads);
    free(ms);
}

/* Parse and validate only (cv__yaml_parse + cv__dsl_validate): what a load
 * costs before the task tree is built and the expressions compiled. */
static void time_validate(const char *label, const char *text, int loads)
{
    double *ms = calloc(2 * (size_t)loads, sizeof *ms);
    for (int i = 0; i < loads; i++) {
        jv out, locs, diags = jv_array();
        double a = now_s(), ca = cpu_s();
        int rc = cv__yaml_parse(text, strlen(text), label, &out, &locs, &diags);
        if (rc == 0) {
            if (cv__dsl_validate(out, locs, label, &diags) > 0)
                printf("  %s: document is invalid\n", label);
            jv_free(out);
            jv_free(locs);
        }
        double z = now_s(), cz = cpu_s();
        jv_free(diags);
        ms[i] = (z - a) * 1e3;
        ms[loads + i] = (cz - ca) * 1e3;
    }
    report_times(label, ms, loads);
    free(ms);
}

/* Registers the same ~100 expressions as the document and compiles the bundle. */
static void time_compile(int nexprs, int loads)
{
    double *ms = calloc(2 * (size_t)loads, sizeof *ms);
    jv scope = jv_array();
    for (int i = 0; i < loads; i++) {
        struct cv_exprset *s = cv__exprset_new();
        jv errors = jv_array();
        double a = now_s(), ca = cpu_s();
        for (int k = 0; k < nexprs; k++) {
            char text[128], ptr[64];
            if (k % 10 == 9)
                snprintf(text, sizeof text, " .v%d > %d ", k - 1, k);
            else
                snprintf(text, sizeof text, " (.v%d // 0) + %d | tostring | length ", k > 0 ? k - 1 : 0, k);
            snprintf(ptr, sizeof ptr, "/do/%d", k);
            cv__exprset_add(s, text, scope, ptr, &errors);
        }
        int rc = cv__exprset_compile(s, &errors);
        double z = now_s(), cz = cpu_s();
        if (rc != 0)
            printf("  compile failed: %d\n", rc);
        jv_free(errors);
        cv__exprset_free(s);
        ms[i] = (z - a) * 1e3;
        ms[loads + i] = (cz - ca) * 1e3;
    }
    jv_free(scope);
    char label[80];
    snprintf(label, sizeof label, "expression bundle alone (%d exprs)", nexprs);
    report_times(label, ms, loads);
    free(ms);
}

/* The fixed cost of libjq 1.6 itself: jq_init + jq_compile of "." (it binds
 * and compiles all of jq's builtins on every compile). */
static void time_jq_floor(int loads)
{
    double *ms = calloc(2 * (size_t)loads, sizeof *ms);
    for (int i = 0; i < loads; i++) {
        double a = now_s(), ca = cpu_s();
        jq_state *jq = jq_init();
        int ok = jq && jq_compile(jq, ".");
        double z = now_s(), cz = cpu_s();
        if (!ok)
            puts("  jq_compile(\".\") failed");
        jq_teardown(&jq);
        ms[i] = (z - a) * 1e3;
        ms[loads + i] = (cz - ca) * 1e3;
    }
    report_times("libjq floor: jq_init + jq_compile(\".\")", ms, loads);
    free(ms);
}

static void bench_load(int loads)
{
    int ne = 0, ne0 = 0;
    char *with = gen_load_doc(100, 1, &ne);
    char *without = gen_load_doc(100, 0, &ne0);
    printf("load cost, 100-task document (%zu bytes with %d expressions; %zu bytes with literals), %d loads:\n",
           strlen(with), ne, strlen(without), loads);
    time_parse("YAML parse only (cv__yaml_parse)", with, loads);
    time_validate("YAML parse + validate (cv__dsl_validate)", with, loads);
    time_load("load, literals only (parse+validate+build)", without, loads);
    time_load("load, with expressions (full)", with, loads);
    time_compile(ne, loads);
    time_jq_floor(loads);
    free(with);
    free(without);
}

static int want(const char *what)
{
    const char *only = getenv("BENCH_ONLY");
    return !only || !*only || strstr(only, what) != NULL;
}

int main(void)
{
    double seconds = env_double("BENCH_SECONDS", 3.0);
    int loads = (int)env_long("BENCH_LOADS", 20);
    int target = (int)env_long("BENCH_TASKS", 1000);
    setvbuf(stdout, NULL, _IOLBF, 0);
    print_machine();
    printf("pure tasks interpreted, one thread, %.1f s per shape (budget: >= 200,000 tasks/s per core):\n",
           seconds);
    if (want("fast"))
        bench_shape(SHAPE_FAST, "fast", target, seconds);
    if (want("ops"))
        bench_shape(SHAPE_OPS, "ops", target, seconds);
    if (want("jq"))
        bench_shape(SHAPE_JQ, "jq", target, seconds);
    if (want("mixed"))
        bench_shape(SHAPE_MIXED, "mixed", target, seconds);
    printf("\n");
    if (want("eval"))
        bench_eval_vs_bundle(seconds);
    if (want("load"))
        bench_load(loads);
    return 0;
}
