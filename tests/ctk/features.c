/*
 * features.c — `ctk-runner features DIR`: runs the CTK's Gherkin scenarios.
 *
 * Every phrasing that the CTK README defines is implemented here, used or
 * not (docs/conformance.md lists them with their exact meaning). A step whose
 * text matches none of them fails its scenario: a conformance runner that
 * skips what it does not understand would report passes it never checked.
 * Steps run in order; the assertion steps after "the workflow is executed"
 * are all checked and every failing one is reported, not just the first.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctk.h"

/*
 * The phrasings, as patterns over the step text (keyword removed): literal
 * text, plus {w} a word without spaces (a task name), {q} the text between
 * single quotes (no quote inside), {n} digits, {*} any non-empty rest.
 * (Not POSIX <regex.h>: libonig, linked into conveyor, exports its own
 * regcomp/regexec with another regex_t layout, and those interpose glibc's.)
 */
enum step_kind {
    S_DEFINITION,
    S_INPUT,
    S_EXECUTE,
    S_WF_COMPLETE,
    S_WF_COMPLETE_OUTPUT,
    S_WF_FAULT,
    S_WF_FAULT_ERROR,
    S_WF_CANCEL,
    S_OUT_PROPERTIES,
    S_OUT_PROPERTY_VALUE,
    S_OUT_PROPERTY_COUNT,
    S_TASK_FIRST,
    S_TASK_LAST,
    S_TASK_BEFORE,
    S_TASK_AFTER,
    S_TASK_COMPLETE,
    S_TASK_COMPLETE_OUTPUT,
    S_TASK_FAULT,
    S_TASK_FAULT_ERROR,
    S_TASK_CANCEL,
    S_COUNT
};

static const struct {
    enum step_kind kind;
    const char *pattern;
    int doc; /* 1: needs a doc string; 0: must have none */
} phrasings[] = {
    {S_DEFINITION, "a workflow with definition:", 1},
    {S_INPUT, "the workflow input is:", 1},
    {S_EXECUTE, "the workflow is executed", 0},
    {S_WF_COMPLETE, "the workflow should complete", 0},
    {S_WF_COMPLETE_OUTPUT, "the workflow should complete with output:", 1},
    {S_WF_FAULT, "the workflow should fault", 0},
    {S_WF_FAULT_ERROR, "the workflow should fault with error:", 1},
    {S_WF_CANCEL, "the workflow should cancel", 0},
    {S_OUT_PROPERTIES, "the workflow output should have properties {*}", 0},
    {S_OUT_PROPERTY_VALUE, "the workflow output should have a '{q}' property with value:", 1},
    {S_OUT_PROPERTY_COUNT, "the workflow output should have a '{q}' property containing {n} items",
     0},
    {S_OUT_PROPERTY_COUNT, "the workflow output should have a '{q}' property containing {n} item",
     0},
    {S_TASK_FIRST, "{w} should run first", 0},
    {S_TASK_LAST, "{w} should run last", 0},
    {S_TASK_BEFORE, "{w} should run before {w}", 0},
    {S_TASK_AFTER, "{w} should run after {w}", 0},
    {S_TASK_COMPLETE, "{w} should complete", 0},
    {S_TASK_COMPLETE_OUTPUT, "{w} should complete with output:", 1},
    {S_TASK_FAULT, "{w} should fault", 0},
    {S_TASK_FAULT_ERROR, "{w} should fault with error:", 1},
    {S_TASK_CANCEL, "{w} should cancel", 0},
};
#define NPHRASINGS (sizeof phrasings / sizeof phrasings[0])

#define MAX_GROUPS 4
#define GROUP_LEN 256

static int accepts(char cls, char c)
{
    switch (cls) {
    case 'w':
        return c != ' ' && c != '\t';
    case 'q':
        return c != '\'';
    case 'n':
        return c >= '0' && c <= '9';
    default:
        return 1;
    }
}

/* Backtracking match of text against pattern; captures go to g[ng...]. */
static int match_from(const char *pat, const char *text, char g[MAX_GROUPS][GROUP_LEN], int ng)
{
    while (*pat && !(pat[0] == '{' && pat[2] == '}')) {
        if (*pat != *text)
            return 0;
        pat++;
        text++;
    }
    if (!*pat)
        return *text == '\0';
    char cls = pat[1];
    const char *rest = pat + 3;
    /* Shortest capture first, so a literal after it anchors as early as it can. */
    for (size_t n = 1; text[n - 1] && accepts(cls, text[n - 1]); n++) {
        if (ng < MAX_GROUPS && n < GROUP_LEN && match_from(rest, text + n, g, ng + 1)) {
            memcpy(g[ng], text, n);
            g[ng][n] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Matches a step text; returns the index of its phrasing or -1. */
static int match_step(const char *text, char g[MAX_GROUPS][GROUP_LEN])
{
    _Static_assert(MAX_GROUPS == CTK_MAX_GROUPS && GROUP_LEN == CTK_GROUP_LEN, "ctk.h sizes");
    for (size_t i = 0; i < NPHRASINGS; i++) {
        for (int k = 0; k < MAX_GROUPS; k++)
            g[k][0] = '\0';
        if (match_from(phrasings[i].pattern, text, g, 0))
            return (int)i;
    }
    return -1;
}

int ctk_match_step(const char *text, char g[CTK_MAX_GROUPS][CTK_GROUP_LEN])
{
    int i = match_step(text, g);
    return i < 0 ? -1 : (int)phrasings[i].kind;
}

/* Splits "'a', 'b.c'" into paths; returns the count or -1 if malformed. */
static int split_quoted(const char *s, char out[][GROUP_LEN], int max)
{
    int n = 0;
    for (;;) {
        while (*s == ' ')
            s++;
        if (*s != '\'')
            return -1;
        const char *q = strchr(s + 1, '\'');
        if (!q || n == max || q - s - 1 >= GROUP_LEN)
            return -1;
        memcpy(out[n], s + 1, (size_t)(q - s - 1));
        out[n][q - s - 1] = '\0';
        n++;
        s = q + 1;
        while (*s == ' ')
            s++;
        if (*s == '\0')
            return n;
        if (*s != ',')
            return -1;
        s++;
    }
}

static int run_scenario(void *arg, struct ctk_buf *why);

/* ---- one scenario, run inside the case process --------------------------- */

struct scenario_job {
    const char *file; /* base name, for messages */
    const struct ctk_scenario *sc;
    const struct ctk_opts *o;
};

struct run_state {
    cv_workflow *wf;
    jv input;
    jv report; /* invalid until executed */
};

static const char *report_status(jv report)
{
    jv s = jv_object_get(jv_copy(report), jv_string("status"));
    static char buf[32];
    if (jv_get_kind(s) == JV_KIND_STRING)
        snprintf(buf, sizeof buf, "%s", jv_string_value(s));
    else
        snprintf(buf, sizeof buf, "(no status)");
    jv_free(s);
    return buf;
}

static void describe_outcome(struct ctk_buf *b, jv report)
{
    const char *st = report_status(report);
    ctk_buf_printf(b, "got status %s", st);
    if (strcmp(st, "faulted") == 0) {
        ctk_buf_printf(b, " with error ");
        jv e = jv_object_get(jv_copy(report), jv_string("error"));
        ctk_buf_json(b, e, 300);
        jv_free(e);
    } else if (strcmp(st, "completed") == 0) {
        ctk_buf_printf(b, " with output ");
        jv out = jv_object_get(jv_copy(report), jv_string("output"));
        ctk_buf_json(b, out, 300);
        jv_free(out);
    }
}

/* The names of the trace entries, in start order, as a JSON array. */
static jv trace_names(jv report)
{
    jv names = jv_array();
    jv trace = jv_object_get(jv_copy(report), jv_string("trace"));
    if (jv_get_kind(trace) == JV_KIND_ARRAY) {
        jv_array_foreach(trace, i, e)
        {
            jv n = jv_get_kind(e) == JV_KIND_OBJECT ? jv_object_get(e, jv_string("name"))
                                                    : (jv_free(e), jv_null());
            names = jv_array_append(names, n);
        }
    }
    jv_free(trace);
    return names;
}

static int index_of(jv names, const char *name, int last)
{
    int found = -1;
    jv_array_foreach(names, i, n)
    {
        if (jv_get_kind(n) == JV_KIND_STRING && strcmp(jv_string_value(n), name) == 0) {
            if (found < 0 || last)
                found = i;
        }
        jv_free(n);
    }
    return found;
}

/* The trace entry of the last run of a task, or jv_invalid(). */
static jv last_entry(jv report, const char *name)
{
    jv trace = jv_object_get(jv_copy(report), jv_string("trace"));
    jv found = jv_invalid();
    if (jv_get_kind(trace) == JV_KIND_ARRAY) {
        jv_array_foreach(trace, i, e)
        {
            jv n = jv_get_kind(e) == JV_KIND_OBJECT ? jv_object_get(jv_copy(e), jv_string("name"))
                                                    : jv_null();
            if (jv_get_kind(n) == JV_KIND_STRING && strcmp(jv_string_value(n), name) == 0) {
                jv_free(found);
                found = jv_copy(e);
            }
            jv_free(n);
            jv_free(e);
        }
    }
    jv_free(trace);
    return found;
}

/* Checks the workflow completed (the property steps require it). */
static int require_completed(jv report, struct ctk_buf *why)
{
    if (strcmp(report_status(report), "completed") == 0)
        return 1;
    ctk_buf_printf(why, "the workflow did not complete (");
    describe_outcome(why, report);
    ctk_buf_printf(why, ")");
    return 0;
}

static int check_status(jv report, const char *want, struct ctk_buf *why)
{
    if (strcmp(report_status(report), want) == 0)
        return 1;
    ctk_buf_printf(why, "expected status %s, ", want);
    describe_outcome(why, report);
    return 0;
}

/* Parses the doc string of a step; on failure describes it in why. */
static jv step_doc(const struct ctk_step *st, const char *file, struct ctk_buf *why)
{
    const char *lang = st->doc_lang ? st->doc_lang : "";
    if (*lang && strcmp(lang, "yaml") != 0 && strcmp(lang, "json") != 0 &&
        strcmp(lang, "yml") != 0) {
        ctk_buf_printf(why, "doc string of unknown type \"%s\"", lang);
        return jv_invalid();
    }
    char name[300];
    snprintf(name, sizeof name, "%s (doc string of line %d)", file, st->line);
    jv v = ctk_parse_yaml(st->doc, strlen(st->doc), name);
    if (!jv_is_valid(v)) {
        jv m = jv_invalid_get_msg(v);
        ctk_buf_printf(why, "%s", jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m)
                                                                   : "unparsable doc string");
        jv_free(m);
        return jv_invalid();
    }
    return v;
}

/* Runs the definition with the input; fills st->report. */
static int execute(const struct scenario_job *job, struct run_state *st, struct ctk_buf *why)
{
    if (!st->wf) {
        ctk_buf_printf(why, "no workflow definition was given before execution");
        return 0;
    }
    cv_runtime *rt = NULL;
    double scale = job->o->time_scale >= 0 ? job->o->time_scale : 0.01;
    if (ctk_runtime_new(job->o, scale, &rt, why) != CV_OK)
        return 0;
    jv report = jv_invalid();
    int rc = cv_run(rt, st->wf, jv_copy(st->input), &report);
    cv_runtime_free(rt);
    if (jv_get_kind(report) != JV_KIND_OBJECT) {
        ctk_buf_printf(why, "cv_run returned %d (%s) and no report", rc, cv_strerror(rc));
        jv_free(report);
        return 0;
    }
    if (job->o->verbose) {
        struct ctk_buf b = {0};
        ctk_buf_json(&b, report, 4000);
        fprintf(stderr, "[%s: %s] report: %s\n", job->file, job->sc->name, ctk_buf_str(&b));
        ctk_buf_cleanup(&b);
    }
    st->report = report;
    return 1;
}

/* Checks one assertion step against the report. Returns 1 if it holds. */
static int check_step(const struct scenario_job *job, struct run_state *st, int kind,
                      int needs_doc, char g[MAX_GROUPS][GROUP_LEN], const struct ctk_step *step,
                      struct ctk_buf *why)
{
    jv report = st->report;
    int ok = 0;
    jv doc = jv_invalid();
    if (needs_doc) {
        doc = step_doc(step, job->file, why);
        if (!jv_is_valid(doc))
            return 0;
    }
    switch ((enum step_kind)kind) {
    case S_WF_COMPLETE:
        ok = check_status(report, "completed", why);
        break;
    case S_WF_FAULT:
        ok = check_status(report, "faulted", why);
        break;
    case S_WF_CANCEL:
        ok = check_status(report, "cancelled", why);
        break;
    case S_WF_COMPLETE_OUTPUT: {
        if (!check_status(report, "completed", why))
            break;
        jv out = jv_object_get(jv_copy(report), jv_string("output"));
        ok = ctk_equal(doc, out);
        if (!ok) {
            ctk_buf_printf(why, "output: expected ");
            ctk_buf_json(why, doc, 400);
            ctk_buf_printf(why, ", got ");
            ctk_buf_json(why, out, 400);
        }
        jv_free(out);
        break;
    }
    case S_WF_FAULT_ERROR: {
        if (!check_status(report, "faulted", why))
            break;
        jv err = jv_object_get(jv_copy(report), jv_string("error"));
        struct ctk_buf d = {0};
        ok = ctk_subset(doc, err, &d);
        if (!ok)
            ctk_buf_printf(why, "error %s (whole error: ", ctk_buf_str(&d));
        if (!ok) {
            ctk_buf_json(why, err, 400);
            ctk_buf_printf(why, ")");
        }
        ctk_buf_cleanup(&d);
        jv_free(err);
        break;
    }
    case S_OUT_PROPERTIES: {
        if (!require_completed(report, why))
            break;
        jv out = jv_object_get(jv_copy(report), jv_string("output"));
        char paths[32][GROUP_LEN];
        int np = split_quoted(g[0], paths, 32);
        if (np < 0) {
            ctk_buf_printf(why, "cannot read the property list (want 'a', 'b.c', ...)");
            jv_free(out);
            break;
        }
        ok = 1;
        for (int k = 0; k < np; k++) {
            jv v = ctk_path_get(out, paths[k], NULL);
            if (!jv_is_valid(v)) {
                ctk_buf_printf(why, "%s'%s'", ok ? "missing properties " : ", ", paths[k]);
                ok = 0;
            }
            jv_free(v);
        }
        if (!ok) {
            ctk_buf_printf(why, " in output ");
            ctk_buf_json(why, out, 400);
        }
        jv_free(out);
        break;
    }
    case S_OUT_PROPERTY_VALUE:
    case S_OUT_PROPERTY_COUNT: {
        if (!require_completed(report, why))
            break;
        jv out = jv_object_get(jv_copy(report), jv_string("output"));
        struct ctk_buf d = {0};
        jv v = ctk_path_get(out, g[0], &d);
        if (!jv_is_valid(v)) {
            ctk_buf_printf(why, "missing property '%s' (%s)", g[0], ctk_buf_str(&d));
        } else if (kind == S_OUT_PROPERTY_VALUE) {
            ok = ctk_equal(doc, v);
            if (!ok) {
                ctk_buf_printf(why, "property '%s': expected ", g[0]);
                ctk_buf_json(why, doc, 300);
                ctk_buf_printf(why, ", got ");
                ctk_buf_json(why, v, 300);
            }
        } else {
            int want = atoi(g[1]);
            if (jv_get_kind(v) != JV_KIND_ARRAY) {
                ctk_buf_printf(why, "property '%s': expected an array of %d items, got ", g[0],
                               want);
                ctk_buf_json(why, v, 300);
            } else {
                int have = jv_array_length(jv_copy(v));
                ok = have == want;
                if (!ok) {
                    ctk_buf_printf(why, "property '%s': expected %d items, got %d: ", g[0], want,
                                   have);
                    ctk_buf_json(why, v, 300);
                }
            }
        }
        jv_free(v);
        jv_free(out);
        ctk_buf_cleanup(&d);
        break;
    }
    case S_TASK_FIRST:
    case S_TASK_LAST:
    case S_TASK_BEFORE:
    case S_TASK_AFTER: {
        jv names = trace_names(report);
        int n = jv_array_length(jv_copy(names));
        if (n == 0) {
            ctk_buf_printf(why, "the trace is empty");
        } else if (kind == S_TASK_FIRST || kind == S_TASK_LAST) {
            jv at = jv_array_get(jv_copy(names), kind == S_TASK_FIRST ? 0 : n - 1);
            ok = jv_get_kind(at) == JV_KIND_STRING && strcmp(jv_string_value(at), g[0]) == 0;
            if (!ok) {
                ctk_buf_printf(why, "expected %s to run %s, trace (start order) is ", g[0],
                               kind == S_TASK_FIRST ? "first" : "last");
                ctk_buf_json(why, names, 300);
            }
            jv_free(at);
        } else {
            /* "A before B" / "A after B": compare first starts of each. */
            int a = index_of(names, g[0], 0), b = index_of(names, g[1], 0);
            if (a < 0 || b < 0) {
                ctk_buf_printf(why, "%s did not run; trace (start order) is ", a < 0 ? g[0] : g[1]);
                ctk_buf_json(why, names, 300);
            } else {
                ok = kind == S_TASK_BEFORE ? a < b : a > b;
                if (!ok) {
                    ctk_buf_printf(why, "expected %s to run %s %s, trace (start order) is ", g[0],
                                   kind == S_TASK_BEFORE ? "before" : "after", g[1]);
                    ctk_buf_json(why, names, 300);
                }
            }
        }
        jv_free(names);
        break;
    }
    case S_TASK_COMPLETE:
    case S_TASK_COMPLETE_OUTPUT:
    case S_TASK_FAULT:
    case S_TASK_FAULT_ERROR:
    case S_TASK_CANCEL: {
        const char *want = kind == S_TASK_FAULT || kind == S_TASK_FAULT_ERROR ? "faulted"
                           : kind == S_TASK_CANCEL                            ? "cancelled"
                                                                              : "completed";
        jv e = last_entry(report, g[0]);
        if (!jv_is_valid(e)) {
            jv names = trace_names(report);
            ctk_buf_printf(why, "task %s is not in the trace ", g[0]);
            ctk_buf_json(why, names, 300);
            jv_free(names);
            jv_free(e);
            break;
        }
        jv s = jv_object_get(jv_copy(e), jv_string("status"));
        ok = jv_get_kind(s) == JV_KIND_STRING && strcmp(jv_string_value(s), want) == 0;
        if (!ok) {
            ctk_buf_printf(why, "task %s: expected status %s, got ", g[0], want);
            ctk_buf_json(why, e, 300);
        } else if (kind == S_TASK_COMPLETE_OUTPUT) {
            jv out = jv_object_has(jv_copy(e), jv_string("output"))
                         ? jv_object_get(jv_copy(e), jv_string("output"))
                         : jv_invalid();
            ok = jv_is_valid(out) && ctk_equal(doc, out);
            if (!ok) {
                ctk_buf_printf(why, "task %s output: expected ", g[0]);
                ctk_buf_json(why, doc, 300);
                ctk_buf_printf(why, ", got ");
                ctk_buf_json(why, out, 300);
            }
            jv_free(out);
        } else if (kind == S_TASK_FAULT_ERROR) {
            jv err = jv_object_has(jv_copy(e), jv_string("error"))
                         ? jv_object_get(jv_copy(e), jv_string("error"))
                         : jv_null();
            struct ctk_buf d = {0};
            ok = ctk_subset(doc, err, &d);
            if (!ok)
                ctk_buf_printf(why, "task %s error %s", g[0], ctk_buf_str(&d));
            ctk_buf_cleanup(&d);
            jv_free(err);
        }
        jv_free(s);
        jv_free(e);
        break;
    }
    default:
        ctk_buf_printf(why, "internal: step kind %d is not an assertion", kind);
        break;
    }
    jv_free(doc);
    return ok;
}

int ctk_scenario_run(const char *file, const struct ctk_scenario *sc, const struct ctk_opts *o,
                     struct ctk_buf *why)
{
    struct scenario_job job = {.file = file, .sc = sc, .o = o};
    return run_scenario(&job, why);
}

static int run_scenario(void *arg, struct ctk_buf *why)
{
    const struct scenario_job *job = arg;
    const struct ctk_scenario *sc = job->sc;
    if (sc->error) {
        ctk_buf_printf(why, "%s", sc->error);
        return 0;
    }
    if (sc->nsteps == 0) {
        ctk_buf_printf(why, "the scenario has no steps");
        return 0;
    }
    /* No input step: the input is {} (see docs/conformance.md). */
    struct run_state st = {.wf = NULL, .input = jv_object(), .report = jv_invalid()};
    int failures = 0, executed = 0, checked = 0;

    for (size_t i = 0; i < sc->nsteps; i++) {
        const struct ctk_step *step = &sc->steps[i];
        char g[MAX_GROUPS][GROUP_LEN];
        int idx = match_step(step->text, g);
        int kind = idx < 0 ? -1 : (int)phrasings[idx].kind;
        int needs_doc = idx < 0 ? 0 : phrasings[idx].doc;
        struct ctk_buf d = {0};
        int ok = 0, fatal = 0;
        if (kind < 0) {
            ctk_buf_printf(&d, "unknown step");
            fatal = 1;
        } else if (needs_doc && !step->doc) {
            ctk_buf_printf(&d, "this step needs a doc string");
            fatal = 1;
        } else if (!needs_doc && step->doc) {
            ctk_buf_printf(&d, "this step takes no doc string");
            fatal = 1;
        } else if (kind == S_DEFINITION) {
            if (st.wf) {
                ctk_buf_printf(&d, "a second definition");
                fatal = 1;
            } else {
                jv diags = jv_invalid();
                char name[300];
                snprintf(name, sizeof name, "%s (doc string of line %d)", job->file, step->line);
                int rc = cv_workflow_load(step->doc, strlen(step->doc), name, &st.wf, &diags);
                ok = rc == CV_OK && st.wf;
                if (!ok) {
                    ctk_buf_printf(&d, "the definition did not load (%d %s)", rc,
                                   cv_strerror(rc));
                    if (jv_get_kind(diags) == JV_KIND_ARRAY) {
                        jv_array_foreach(diags, k, one)
                        {
                            char *m = cv_diag_format(one);
                            ctk_buf_printf(&d, "%s%s", k ? "; " : ": ", m ? m : "?");
                            free(m);
                        }
                    }
                    fatal = 1;
                }
                jv_free(diags);
            }
        } else if (kind == S_INPUT) {
            jv v = step_doc(step, job->file, &d);
            ok = jv_is_valid(v);
            if (ok) {
                jv_free(st.input);
                st.input = v;
            } else {
                jv_free(v);
                fatal = 1;
            }
        } else if (kind == S_EXECUTE) {
            ok = executed == 0 && execute(job, &st, &d);
            if (executed)
                ctk_buf_printf(&d, "executed twice");
            executed = 1;
            fatal = !ok;
        } else if (!jv_is_valid(st.report)) {
            ctk_buf_printf(&d, "an assertion before \"the workflow is executed\"");
            fatal = 1;
        } else {
            checked++;
            ok = check_step(job, &st, kind, needs_doc, g, step, &d);
        }
        if (!ok) {
            ctk_buf_printf(why, "%sline %d \"%s %s\": %s", failures ? "; " : "", step->line,
                           step->keyword, step->text, ctk_buf_str(&d));
            failures++;
        }
        ctk_buf_cleanup(&d);
        if (fatal)
            break;
    }
    if (!failures && !executed) {
        ctk_buf_printf(why, "the scenario never executes the workflow");
        failures++;
    } else if (!failures && !checked) {
        ctk_buf_printf(why, "the scenario asserts nothing");
        failures++;
    }
    if (st.wf)
        cv_workflow_free(st.wf);
    jv_free(st.input);
    jv_free(st.report);
    return failures == 0;
}

/* ---- the mode ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ctk_features_main(const char *dir, const struct ctk_opts *o, struct ctk_tally *t)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("conformance kit not found at %s (../shared absent): skipped\n", dir);
        t->skipped++;
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d) {
        printf("FAIL %s: cannot open the directory\n", dir);
        t->failed++;
        return 0;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t k = strlen(e->d_name);
        if (k > 8 && strcmp(e->d_name + k - 8, ".feature") == 0) {
            char **nn = realloc(names, (n + 1) * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    if (n == 0) {
        printf("FAIL %s: no .feature files\n", dir);
        t->failed++;
    }
    for (size_t i = 0; i < n; i++) {
        struct ctk_buf path = {0}, err = {0};
        ctk_buf_printf(&path, "%s/%s", dir, names[i]);
        size_t len = 0;
        char *text = ctk_read_file(ctk_buf_str(&path), &len);
        struct ctk_feature f;
        if (!text) {
            ctk_report(t, 0, names[i], "(file)", "cannot read the file");
        } else if (ctk_feature_parse(text, len, &f, &err) != 0) {
            ctk_report(t, 0, names[i], "(file)", ctk_buf_str(&err));
        } else {
            if (f.nscenarios == 0)
                ctk_report(t, 0, names[i], f.name, "the feature has no scenarios");
            for (size_t k = 0; k < f.nscenarios; k++) {
                if (o->only && !strstr(f.scenarios[k].name, o->only) &&
                    !strstr(names[i], o->only))
                    continue;
                struct scenario_job job = {.file = names[i], .sc = &f.scenarios[k], .o = o};
                struct ctk_buf why = {0};
                int r = ctk_run_case(run_scenario, &job, o->isolate, o->timeout_s, &why);
                ctk_report(t, r, names[i], f.scenarios[k].name, ctk_buf_str(&why));
                ctk_buf_cleanup(&why);
            }
            ctk_feature_cleanup(&f);
        }
        free(text);
        ctk_buf_cleanup(&path);
        ctk_buf_cleanup(&err);
        free(names[i]);
    }
    free(names);
    return 0;
}
