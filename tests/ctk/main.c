/*
 * main.c — command line of build/ctk-runner, the conformance runner.
 *
 *   ctk-runner features DIR [--stub HOST:PORT] [options]
 *   ctk-runner examples CASES --examples-dir DIR [--stub HOST:PORT]
 *                            [--subflows DIR] [options]
 *   ctk-runner selftest   (the runner's own checks; needs no stub)
 *   options: --only TEXT        run only cases whose name (or file) contains TEXT
 *            --timeout SECONDS  limit per case (default 60)
 *            --time-scale X     override the mode's time scale
 *            --no-fork          run cases in-process (for a debugger)
 *            --verbose          print each run report to stderr
 *
 * It prints one PASS/FAIL/SKIP line per case, then "N passed, N failed" (and
 * ", N skipped" when some were), and exits 1 when any case failed, 2 on a
 * usage error. The runtime configuration every case gets is made here, in
 * ctk_runtime_new: all hosts mapped to the stub, unmapped hosts denied, the
 * trace on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctk.h"

void ctk_report(struct ctk_tally *t, int result, const char *file, const char *name,
                const char *why)
{
    if (result > 0) {
        printf("PASS %s: %s\n", file, name);
        t->passed++;
    } else if (result < 0) {
        printf("SKIP %s: %s — %s\n", file, name, why && *why ? why : "skipped");
        t->skipped++;
    } else {
        printf("FAIL %s: %s — %s\n", file, name, why && *why ? why : "failed");
        t->failed++;
    }
    fflush(stdout);
}

int ctk_runtime_new(const struct ctk_opts *o, double time_scale, cv_runtime **out,
                    struct ctk_buf *why)
{
    cv_runtime *rt = NULL;
    int rc = cv_runtime_new(&rt);
    if (rc != CV_OK) {
        ctk_buf_printf(why, "cv_runtime_new: %s", cv_strerror(rc));
        return rc;
    }
    if (o->stub) {
        char spec[300];
        snprintf(spec, sizeof spec, "*=%s", o->stub);
        rc = cv_runtime_map_host(rt, spec);
        if (rc != CV_OK) {
            ctk_buf_printf(why, "cv_runtime_map_host(\"%s\"): %s", spec, cv_strerror(rc));
            cv_runtime_free(rt);
            return rc;
        }
    }
    cv_runtime_deny_unmapped(rt, 1);
    cv_runtime_set_trace(rt, 1);
    cv_runtime_set_time_scale(rt, time_scale);
    *out = rt;
    return CV_OK;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: ctk-runner features DIR [--stub HOST:PORT] [options]\n"
            "       ctk-runner examples CASES --examples-dir DIR [--stub HOST:PORT] "
            "[--subflows DIR] [options]\n"
            "       ctk-runner selftest\n"
            "options: --only TEXT  --timeout SECONDS  --time-scale X  --no-fork  --verbose\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "selftest") == 0) {
        struct ctk_opts so = {.time_scale = -1, .timeout_s = 60, .isolate = 1};
        struct ctk_tally st = {0, 0, 0};
        ctk_selftest_main(&so, &st);
        printf("%d passed, %d failed\n", st.passed, st.failed);
        return st.failed ? 1 : 0;
    }
    if (argc < 3)
        return usage();
    const char *mode = argv[1], *target = argv[2], *examples_dir = NULL;
    struct ctk_opts o = {.stub = NULL, .subflows = NULL, .only = NULL, .time_scale = -1,
                         .timeout_s = 60, .isolate = 1, .verbose = 0};
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--stub") == 0 && next) {
            o.stub = next;
            i++;
        } else if (strcmp(a, "--subflows") == 0 && next) {
            o.subflows = next;
            i++;
        } else if (strcmp(a, "--examples-dir") == 0 && next) {
            examples_dir = next;
            i++;
        } else if (strcmp(a, "--only") == 0 && next) {
            o.only = next;
            i++;
        } else if (strcmp(a, "--timeout") == 0 && next) {
            o.timeout_s = atoi(next);
            if (o.timeout_s <= 0)
                return usage();
            i++;
        } else if (strcmp(a, "--time-scale") == 0 && next) {
            o.time_scale = strtod(next, NULL);
            if (o.time_scale <= 0)
                return usage();
            i++;
        } else if (strcmp(a, "--no-fork") == 0) {
            o.isolate = 0;
        } else if (strcmp(a, "--verbose") == 0) {
            o.verbose = 1;
        } else {
            fprintf(stderr, "ctk-runner: unknown argument %s\n", a);
            return usage();
        }
    }

    struct ctk_tally t = {0, 0, 0};
    if (strcmp(mode, "features") == 0) {
        ctk_features_main(target, &o, &t);
    } else if (strcmp(mode, "examples") == 0) {
        if (!examples_dir)
            return usage();
        ctk_examples_main(target, examples_dir, &o, &t);
    } else {
        return usage();
    }
    if (t.skipped)
        printf("%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
    else
        printf("%d passed, %d failed\n", t.passed, t.failed);
    return t.failed ? 1 : 0;
}
