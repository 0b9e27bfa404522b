/*
 * examples.c — `ctk-runner examples CASES`: runs the specification's example
 * workflows against expectations kept as data (tests/examples/cases.yaml).
 *
 * The cases file is a YAML list; each case is
 *   name:       label of the case (default: the file name)
 *   file:       the example, relative to --examples-dir
 *   input:      workflow input (default {})
 *   secrets:    object given to cv_runtime_set_secrets
 *   time_scale: multiplier of waits and retry delays (default 0.001)
 *   requires:   commands that must be on PATH, else the case is skipped
 *   reset_stub: true: POST /__reset to the stub first (its fail-then-succeed
 *               counters, for the retry examples)
 *   expect:
 *     status:        completed | faulted | cancelled   (required)
 *     output:        the exact output (deep equality)
 *     output_has:    dotted paths that must exist in the output
 *     output_values: {dotted path: exact value}
 *     error:         the error's listed keys must be equal (subset)
 * Unknown keys fail the case, so a typo never turns into a check skipped.
 * Every case gets a fresh runtime configured as for the CTK (all hosts to the
 * stub, unmapped hosts denied, trace on), plus the --subflows directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctk.h"

struct case_job {
    jv c; /* the case object, borrowed */
    const char *name;
    const char *examples_dir;
    const struct ctk_opts *o;
};

static int on_path(const char *cmd)
{
    const char *path = getenv("PATH");
    if (!path)
        return 0;
    for (const char *p = path; *p;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char full[1024];
        snprintf(full, sizeof full, "%.*s/%s", (int)n, p, cmd);
        if (access(full, X_OK) == 0)
            return 1;
        if (!c)
            break;
        p = c + 1;
    }
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

/* POST http://STUB/__reset; returns 1 on a 200 answer. */
static int reset_stub(const char *stub, struct ctk_buf *why)
{
    if (!stub) {
        ctk_buf_printf(why, "reset_stub needs --stub");
        return 0;
    }
    char url[300];
    snprintf(url, sizeof url, "http://%s/__reset", stub);
    CURL *c = curl_easy_init();
    if (!c) {
        ctk_buf_printf(why, "curl_easy_init failed");
        return 0;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || code != 200) {
        ctk_buf_printf(why, "POST %s failed: %s (HTTP %ld)", url, curl_easy_strerror(rc), code);
        return 0;
    }
    return 1;
}

static int check_keys(jv obj, const char *const *allowed, const char *where, struct ctk_buf *why)
{
    int ok = 1;
    jv_object_foreach(obj, k, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], jv_string_value(k)) == 0)
                known = 1;
        if (!known) {
            ctk_buf_printf(why, "%sunknown key '%s' in %s", ok ? "" : "; ", jv_string_value(k),
                           where);
            ok = 0;
        }
        jv_free(k);
        jv_free(v);
    }
    return ok;
}

static jv get(jv obj, const char *key)
{
    if (jv_get_kind(obj) != JV_KIND_OBJECT || !jv_object_has(jv_copy(obj), jv_string(key)))
        return jv_invalid();
    return jv_object_get(jv_copy(obj), jv_string(key));
}

static int check_expect(jv expect, jv report, struct ctk_buf *why)
{
    int ok = 1;
    jv want_status = get(expect, "status");
    jv status = get(report, "status");
    if (!ctk_equal(want_status, status)) {
        ctk_buf_printf(why, "status: expected %s, got ",
                       jv_get_kind(want_status) == JV_KIND_STRING ? jv_string_value(want_status)
                                                                  : "?");
        ctk_buf_json(why, status, 40);
        jv e = get(report, "error");
        if (jv_is_valid(e) && jv_get_kind(e) != JV_KIND_NULL) {
            ctk_buf_printf(why, " with error ");
            ctk_buf_json(why, e, 400);
        } else {
            jv out = get(report, "output");
            ctk_buf_printf(why, " with output ");
            ctk_buf_json(why, out, 400);
            jv_free(out);
        }
        jv_free(e);
        ok = 0;
    }
    jv_free(want_status);
    jv_free(status);
    if (!ok)
        return 0; /* the other checks would only repeat it */

    jv out = get(report, "output");
    jv want = get(expect, "output");
    if (jv_is_valid(want) && !ctk_equal(want, out)) {
        ctk_buf_printf(why, "output: expected ");
        ctk_buf_json(why, want, 400);
        ctk_buf_printf(why, ", got ");
        ctk_buf_json(why, out, 400);
        ok = 0;
    }
    jv_free(want);

    jv has = get(expect, "output_has");
    if (jv_get_kind(has) == JV_KIND_ARRAY) {
        int missing = 0;
        jv_array_foreach(has, i, p)
        {
            if (jv_get_kind(p) != JV_KIND_STRING) {
                ctk_buf_printf(why, "%soutput_has[%d] is not a string", ok ? "" : "; ", i);
                ok = 0;
            } else {
                jv v = ctk_path_get(out, jv_string_value(p), NULL);
                if (!jv_is_valid(v)) {
                    ctk_buf_printf(why, "%s'%s'",
                                   missing ? ", " : ok ? "missing output properties "
                                                       : "; missing output properties ",
                                   jv_string_value(p));
                    missing++;
                    ok = 0;
                }
                jv_free(v);
            }
            jv_free(p);
        }
        if (missing) {
            ctk_buf_printf(why, " in ");
            ctk_buf_json(why, out, 400);
        }
    } else if (jv_is_valid(has)) {
        ctk_buf_printf(why, "%sexpect.output_has must be a list", ok ? "" : "; ");
        ok = 0;
    }
    jv_free(has);

    jv values = get(expect, "output_values");
    if (jv_get_kind(values) == JV_KIND_OBJECT) {
        jv_object_foreach(values, p, wantv)
        {
            struct ctk_buf d = {0};
            jv v = ctk_path_get(out, jv_string_value(p), &d);
            if (!jv_is_valid(v)) {
                ctk_buf_printf(why, "%smissing output property '%s' (%s)", ok ? "" : "; ",
                               jv_string_value(p), ctk_buf_str(&d));
                ok = 0;
            } else if (!ctk_equal(wantv, v)) {
                ctk_buf_printf(why, "%soutput '%s': expected ", ok ? "" : "; ",
                               jv_string_value(p));
                ctk_buf_json(why, wantv, 300);
                ctk_buf_printf(why, ", got ");
                ctk_buf_json(why, v, 300);
                ok = 0;
            }
            jv_free(v);
            ctk_buf_cleanup(&d);
            jv_free(p);
            jv_free(wantv);
        }
    } else if (jv_is_valid(values)) {
        ctk_buf_printf(why, "%sexpect.output_values must be a mapping", ok ? "" : "; ");
        ok = 0;
    }
    jv_free(values);
    jv_free(out);

    jv werr = get(expect, "error");
    if (jv_is_valid(werr)) {
        jv err = get(report, "error");
        struct ctk_buf d = {0};
        if (!ctk_subset(werr, err, &d)) {
            ctk_buf_printf(why, "%serror %s (whole error: ", ok ? "" : "; ", ctk_buf_str(&d));
            ctk_buf_json(why, err, 400);
            ctk_buf_printf(why, ")");
            ok = 0;
        }
        ctk_buf_cleanup(&d);
        jv_free(err);
    }
    jv_free(werr);
    return ok;
}

static int run_case(void *arg, struct ctk_buf *why)
{
    const struct case_job *job = arg;
    jv c = job->c;
    static const char *const case_keys[] = {"name",       "file",     "input",      "secrets", "expect",
                                            "time_scale", "requires", "reset_stub", NULL};
    static const char *const expect_keys[] = {"status",        "output", "output_has",
                                              "output_values", "error",  NULL};
    if (!check_keys(c, case_keys, "the case", why))
        return 0;
    jv expect = get(c, "expect");
    jv file = get(c, "file");
    int ok = 0;
    cv_workflow *wf = NULL;
    cv_runtime *rt = NULL;
    jv report = jv_invalid();
    struct ctk_buf path = {0};

    if (jv_get_kind(expect) != JV_KIND_OBJECT || jv_get_kind(file) != JV_KIND_STRING) {
        ctk_buf_printf(why, "a case needs 'file' (string) and 'expect' (mapping)");
        goto out;
    }
    if (!check_keys(expect, expect_keys, "expect", why))
        goto out;
    jv st = get(expect, "status");
    int status_ok = jv_get_kind(st) == JV_KIND_STRING &&
                    (strcmp(jv_string_value(st), "completed") == 0 ||
                     strcmp(jv_string_value(st), "faulted") == 0 ||
                     strcmp(jv_string_value(st), "cancelled") == 0);
    jv_free(st);
    if (!status_ok) {
        ctk_buf_printf(why, "expect.status must be completed, faulted or cancelled");
        goto out;
    }
    jv req = get(c, "requires");
    if (jv_get_kind(req) == JV_KIND_ARRAY) {
        int missing = 0;
        jv_array_foreach(req, i, cmd)
        {
            if (!missing && jv_get_kind(cmd) == JV_KIND_STRING && !on_path(jv_string_value(cmd))) {
                ctk_buf_printf(why, "'%s' is not installed", jv_string_value(cmd));
                missing = 1;
            }
            jv_free(cmd);
        }
        if (missing) {
            jv_free(req);
            ok = -1;
            goto out;
        }
    }
    jv_free(req);

    ctk_buf_printf(&path, "%s/%s", job->examples_dir, jv_string_value(file));
    jv diags = jv_invalid();
    int rc = cv_workflow_load_file(ctk_buf_str(&path), &wf, &diags);
    if (rc != CV_OK || !wf) {
        ctk_buf_printf(why, "%s did not load (%d %s)", jv_string_value(file), rc, cv_strerror(rc));
        if (jv_get_kind(diags) == JV_KIND_ARRAY) {
            jv_array_foreach(diags, k, one)
            {
                char *m = cv_diag_format(one);
                ctk_buf_printf(why, "%s%s", k ? "; " : ": ", m ? m : "?");
                free(m);
            }
        }
        jv_free(diags);
        goto out;
    }
    jv_free(diags);

    jv reset = get(c, "reset_stub");
    int want_reset = jv_get_kind(reset) == JV_KIND_TRUE;
    jv_free(reset);
    if (want_reset && !reset_stub(job->o->stub, why))
        goto out;

    jv ts = get(c, "time_scale");
    double scale = jv_get_kind(ts) == JV_KIND_NUMBER ? jv_number_value(ts) : 0.001;
    jv_free(ts);
    if (job->o->time_scale > 0)
        scale = job->o->time_scale;
    if (ctk_runtime_new(job->o, scale, &rt, why) != CV_OK)
        goto out;
    jv secrets = get(c, "secrets");
    if (jv_is_valid(secrets)) {
        rc = cv_runtime_set_secrets(rt, secrets);
        if (rc != CV_OK) {
            ctk_buf_printf(why, "cv_runtime_set_secrets: %s", cv_strerror(rc));
            goto out;
        }
    } else {
        jv_free(secrets);
    }
    if (job->o->subflows) {
        jv sd = jv_invalid(); /* an out-parameter: set on failure */
        rc = cv_runtime_add_workflow_dir(rt, job->o->subflows, &sd);
        if (rc != CV_OK) {
            ctk_buf_printf(why, "subflows in %s did not load (%s): ", job->o->subflows,
                           cv_strerror(rc));
            ctk_buf_json(why, sd, 400);
            jv_free(sd);
            goto out;
        }
        jv_free(sd);
    }
    jv input = get(c, "input");
    if (!jv_is_valid(input)) {
        jv_free(input);
        input = jv_object();
    }
    rc = cv_run(rt, wf, input, &report);
    if (jv_get_kind(report) != JV_KIND_OBJECT) {
        ctk_buf_printf(why, "cv_run returned %d (%s) and no report", rc, cv_strerror(rc));
        goto out;
    }
    if (job->o->verbose) {
        struct ctk_buf b = {0};
        ctk_buf_json(&b, report, 4000);
        fprintf(stderr, "[%s] report: %s\n", job->name, ctk_buf_str(&b));
        ctk_buf_cleanup(&b);
    }
    ok = check_expect(expect, report, why);
out:
    cv_runtime_free(rt);
    if (wf)
        cv_workflow_free(wf);
    jv_free(report);
    jv_free(expect);
    jv_free(file);
    ctk_buf_cleanup(&path);
    return ok;
}

int ctk_examples_main(const char *cases, const char *examples_dir, const struct ctk_opts *o,
                      struct ctk_tally *t)
{
    const char *base = strrchr(cases, '/') ? strrchr(cases, '/') + 1 : cases;
    struct stat sb;
    if (stat(examples_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("examples not found at %s (../shared absent): skipped\n", examples_dir);
        t->skipped++;
        return 0;
    }
    size_t len = 0;
    char *text = ctk_read_file(cases, &len);
    if (!text) {
        ctk_report(t, 0, base, "(file)", "cannot read the cases file");
        return 0;
    }
    jv all = ctk_parse_yaml(text, len, cases);
    free(text);
    if (jv_get_kind(all) != JV_KIND_ARRAY) {
        struct ctk_buf m = {0};
        if (!jv_is_valid(all)) {
            jv msg = jv_invalid_get_msg(jv_copy(all));
            ctk_buf_printf(&m, "%s",
                           jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
            jv_free(msg);
        } else {
            ctk_buf_printf(&m, "the cases file must be a YAML list");
        }
        ctk_report(t, 0, base, "(file)", ctk_buf_str(&m));
        ctk_buf_cleanup(&m);
        jv_free(all);
        return 0;
    }
    jv_array_foreach(all, i, c)
    {
        char name[256];
        jv n = get(c, "name");
        jv f = get(c, "file");
        if (jv_get_kind(n) == JV_KIND_STRING)
            snprintf(name, sizeof name, "%s", jv_string_value(n));
        else if (jv_get_kind(f) == JV_KIND_STRING)
            snprintf(name, sizeof name, "%s", jv_string_value(f));
        else
            snprintf(name, sizeof name, "case #%d", i + 1);
        jv_free(n);
        jv_free(f);
        if (o->only && !strstr(name, o->only)) {
            jv_free(c);
            continue;
        }
        struct ctk_buf why = {0};
        int r;
        if (jv_get_kind(c) != JV_KIND_OBJECT) {
            ctk_buf_printf(&why, "a case must be a mapping");
            r = 0;
        } else {
            struct case_job job = {.c = c, .name = name, .examples_dir = examples_dir, .o = o};
            r = ctk_run_case(run_case, &job, o->isolate, o->timeout_s, &why);
        }
        ctk_report(t, r, base, name, ctk_buf_str(&why));
        ctk_buf_cleanup(&why);
        jv_free(c);
    }
    jv_free(all);
    return 0;
}
