/*
 * ctk.h — the pieces of build/ctk-runner shared between its files.
 *
 * The runner drives conveyor only through include/conveyor.h (plus the YAML
 * reader of src/json/yaml.h for the documents it reads itself). It has two
 * modes: `features` runs the Serverless Workflow CTK's Gherkin files
 * (features.c, parsed by gherkin.c), and `examples` runs the specification's
 * example workflows from a data file of cases (examples.c). Both print one
 * "PASS file: name" / "FAIL file: name — reason" line per case and close with
 * the plain "N passed, N failed" line. Every case runs in a child process
 * (isolate.c) with a time limit, so an engine crash or hang fails that one
 * case instead of the whole run. check.c holds the value comparisons both
 * modes use.
 */
#ifndef CV_TESTS_CTK_H
#define CV_TESTS_CTK_H

#include <jv.h>
#include <stddef.h>

#include "conveyor.h"

/* ---- a growable text buffer (messages) ---------------------------------- */

struct ctk_buf {
    char *p; /* NUL-terminated when not NULL; owned */
    size_t len, cap;
};

/* Appends formatted text; on allocation failure the text is dropped. */
void ctk_buf_printf(struct ctk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctk_buf_append(struct ctk_buf *b, const char *s, size_t n);
/* The text so far ("" when empty); borrowed, valid until the next append. */
const char *ctk_buf_str(const struct ctk_buf *b);
void ctk_buf_cleanup(struct ctk_buf *b);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees); NULL on error. */
char *ctk_read_file(const char *path, size_t *len);

/* ---- Gherkin features (gherkin.c) --------------------------------------- */

struct ctk_step {
    int line;         /* 1-based line of the step in the file */
    char keyword[8];  /* Given, When, Then, And, But, * */
    char *text;       /* normalised: keyword and an "And given"-style second keyword removed */
    char *doc;        /* doc string content, dedented, or NULL */
    char *doc_lang;   /* "yaml", "json", "" ; NULL when no doc string */
};

struct ctk_scenario {
    char *name;
    int line;
    struct ctk_step *steps;
    size_t nsteps;
    char *error; /* a structural problem found while parsing (fails the scenario), or NULL */
};

struct ctk_feature {
    char *name;
    struct ctk_scenario *scenarios;
    size_t nscenarios;
};

/*
 * Parses a .feature file's text. Returns 0, or -1 with a message in *err when
 * the file as a whole cannot be read as Gherkin (unterminated doc string, no
 * Feature line, unsupported construct outside a scenario). Problems inside one
 * scenario are recorded on that scenario instead. Free with ctk_feature_cleanup.
 */
int ctk_feature_parse(const char *text, size_t len, struct ctk_feature *out, struct ctk_buf *err);
void ctk_feature_cleanup(struct ctk_feature *f);

struct ctk_opts;

/* ---- steps (features.c) ------------------------------------------------- */

#define CTK_MAX_GROUPS 4
#define CTK_GROUP_LEN 256
/* Matches a step text against the CTK phrasings: returns the phrasing's kind
 * (>= 0; the order of the table in features.c) with the captured task names,
 * paths or counts in g, or -1 for an unknown step. */
int ctk_match_step(const char *text, char g[CTK_MAX_GROUPS][CTK_GROUP_LEN]);
/* Runs one parsed scenario in the calling process: 1 pass, 0 fail (reason in *why). */
int ctk_scenario_run(const char *file, const struct ctk_scenario *sc, const struct ctk_opts *o,
                     struct ctk_buf *why);

/* ---- value checks (check.c); every jv argument here is borrowed ---------- */

/* Parses a YAML (or JSON) text with the project's YAML 1.2 reader. Returns the
 * value, or jv_invalid_with_msg describing the problem. */
jv ctk_parse_yaml(const char *text, size_t len, const char *name);

/*
 * Looks up a dotted property path ("request.method"; a segment that is a
 * number indexes an array). Returns a new reference to the value, or
 * jv_invalid() when a segment is missing; then *why (when not NULL) names the
 * first missing segment.
 */
jv ctk_path_get(jv v, const char *path, struct ctk_buf *why);

/* Deep equality: key order ignored, numbers by value. */
int ctk_equal(jv a, jv b);

/* Every key of `expected` (an object) is in `actual` with a deep-equal value.
 * On a mismatch returns 0 and describes each differing key in *why. */
int ctk_subset(jv expected, jv actual, struct ctk_buf *why);

/* Appends JSON text of v to b, cut to about `max` characters with "…". */
void ctk_buf_json(struct ctk_buf *b, jv v, size_t max);

/* ---- isolation (isolate.c) ---------------------------------------------- */

/*
 * A case body: runs in a child process; returns 1 for pass, 0 for fail (with
 * the reason in *why), -1 for skip (reason in *why).
 */
typedef int (*ctk_case_fn)(void *arg, struct ctk_buf *why);

/*
 * Runs fn(arg) in a forked child (or in-process when `isolate` is 0), waiting
 * at most `timeout_s` seconds. A crash, a hang, or a non-zero exit of the
 * child after it reported (a sanitizer report) turns into a failure with a
 * reason. Returns 1 pass, 0 fail, -1 skip.
 */
int ctk_run_case(ctk_case_fn fn, void *arg, int isolate, int timeout_s, struct ctk_buf *why);

/* ---- the two modes ------------------------------------------------------- */

struct ctk_opts {
    const char *stub;      /* HOST:PORT of the stub server, or NULL */
    const char *subflows;  /* directory of subflow definitions, or NULL */
    const char *only;      /* run only cases whose name contains this, or NULL */
    double time_scale;     /* < 0: the mode's default */
    int timeout_s;         /* per case */
    int isolate;           /* fork per case */
    int verbose;           /* print reports of failing cases to stderr */
};

/* Counters of one run. */
struct ctk_tally {
    int passed, failed, skipped;
};

/* Prints the PASS/FAIL/SKIP line of one case and counts it. */
void ctk_report(struct ctk_tally *t, int result, const char *file, const char *name,
                const char *why);

int ctk_features_main(const char *dir, const struct ctk_opts *o, struct ctk_tally *t);
/* `ctk-runner selftest`: the runner's own checks (selftest.c). */
int ctk_selftest_main(const struct ctk_opts *o, struct ctk_tally *t);
int ctk_examples_main(const char *cases, const char *examples_dir, const struct ctk_opts *o,
                      struct ctk_tally *t);

/* Shared by both modes: a runtime configured for tests (host map to the stub,
 * unmapped hosts denied, trace on). Returns CV_OK or an error code. */
int ctk_runtime_new(const struct ctk_opts *o, double time_scale, cv_runtime **out,
                    struct ctk_buf *why);

#endif
