/*
 * model.c — `conveyor model ...`: train, evaluate, predict with, list and
 * read the models a store keeps (issue 4, DESIGN.md decision 8,
 * docs/models.md).
 *
 *   conveyor model train --kind text --data FILE --label FIELD [--text FIELD]
 *                        --name NAME [--holdout 0.2 --seed N | --all] --db FILE
 *   conveyor model eval NAME[@VERSION] --data FILE --label FIELD [--text FIELD] [--json] --db FILE
 *   conveyor model predict NAME[@VERSION] --data FILE [--text FIELD] --db FILE
 *   conveyor model list [--json] --db FILE
 *   conveyor model get NAME[@VERSION] --db FILE
 *   conveyor model approve|promote|retire NAME@VERSION --db FILE
 *   conveyor model canary NAME@VERSION --share X | NAME --clear --db FILE
 *   conveyor model shadow NAME@VERSION | NAME --clear --db FILE
 *   conveyor model upload --kind extractor --file DEF.yaml --name NAME --db FILE
 *
 * Every form takes --server URL instead of --db FILE: the registry of
 * `conveyor serve` (client.c's requests). train then trains here and
 * uploads; eval and predict download the model and run here; the others
 * ask the server. The output is the same either way.
 *
 * Scripts depend on these forms: `train` and `upload` print NAME@VERSION as
 * the last word of their output, `eval --json` one object with accuracy and macro_f1,
 * `predict` one JSON line per row. Progress goes to stderr, and only when it
 * is a terminal. Exit status: 0 done, 1 bad data / unknown model / store
 * failure (nothing is written then), 2 usage error.
 *
 * Only the store interface (store.h) and the ml module are used: no SQL here.
 */
#include "cli/model.h"

#include "cli/client.h"

#include "conveyor.h"
#include "ml/extract.h"
#include "ml/ml.h"
#include "ml/tabular.h"
#include "store/store.h"

#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_model[] =
    "usage: conveyor model <command> [options] --db FILE | --server URL\n"
    "\n"
    "Trains, evaluates and runs the text classifiers and tabular scorers a store keeps\n"
    "(docs/models.md).\n"
    "\n"
    "commands:\n"
    "  train --kind text --data FILE --label FIELD [--text FIELD] --name NAME\n"
    "        [--holdout 0.2 --seed N | --all] [--algo lr|svm] [--C X] [--hash-bits B]\n"
    "        [--solver lr|lr-dual] [--include-feedback]\n"
    "                     train a new version of NAME on FILE (JSON lines or CSV with a\n"
    "                     header); report metrics on a seeded stratified held-out part\n"
    "                     (default 0.2, seed 42) or train on --all rows; prints\n"
    "                     NAME@VERSION as the last word\n"
    "                     (--algo svm: a linear SVM with Platt-calibrated probabilities;\n"
    "                     --include-feedback: also the examples reviewers confirmed or\n"
    "                     corrected for NAME's predictions, docs/tasks.md)\n"
    "  train --kind tabular --data FILE --label FIELD --name NAME\n"
    "        [--holdout 0.2 --seed N | --all] [--positive LABEL] [--schema FILE]\n"
    "        [--algo auto|xgboost|linear|blend] [--C 1] [--folds 5]\n"
    "        [--depth 3] [--eta 0.02] [--rounds 1000] [--early-stopping 50]\n"
    "        [--subsample 0.8] [--colsample 0.8] [--min-child-weight 1] [--lambda 1]\n"
    "                     train a binary scorer: XGBoost, an L2 logistic regression or\n"
    "                     their blend (mean log-odds) (auto: the blend unless XGBoost or\n"
    "                     the linear model beats it by more than one standard error of\n"
    "                     the cross-validated AUCs' fold differences on the training rows);\n"
    "                     every column but the label is a feature (numeric or categorical,\n"
    "                     inferred) unless --schema FILE declares them\n"
    "                     ([{\"name\", \"type\", \"categories\"?}...])\n"
    "  eval NAME[@VERSION] --data FILE --label FIELD [--text FIELD] [--json]\n"
    "                     accuracy, macro-F1, per-class precision/recall, confusion\n"
    "                     matrix and expected calibration error on labeled data (scorers:\n"
    "                     AUC, log-loss, accuracy at 0.5)\n"
    "  predict NAME[@VERSION] --data FILE [--text FIELD]\n"
    "                     one JSON line {label, confidence, scores, model} per row\n"
    "                     (scorers: {score, label, model, explanation, bias}; --top N\n"
    "                     features in the explanation, default 5, 0 for all)\n"
    "  list [--json]      every version of every model\n"
    "  get NAME[@VERSION] a version's model card as JSON\n"
    "  approve NAME@VERSION   draft -> approved (or production -> approved)\n"
    "  promote NAME@VERSION   approved -> production; the previous production version\n"
    "                         goes back to approved\n"
    "  retire NAME@VERSION    -> retired, for good\n"
    "  canary NAME@VERSION --share X\n"
    "                         instances that name NAME get this approved version with\n"
    "                         probability X (0 to 1; by instance id: always the same one)\n"
    "  canary NAME --clear    no canary\n"
    "  shadow NAME@VERSION    this version also predicts on every input of NAME; its\n"
    "                         predictions go to the instances' history, never their output\n"
    "  shadow NAME --clear    no shadow\n"
    "  upload --kind extractor --file FILE --name NAME\n"
    "                         store an extractor definition (YAML or JSON, docs/extract.md)\n"
    "                         as a new draft version of NAME, for `call: extract` with\n"
    "                         `model: NAME`; a definition that does not compile is refused\n"
    "                         with its file:line:column; prints NAME@VERSION as the last word\n"
    "\n"
    "NAME without @VERSION means the production version, else the newest version\n"
    "that is not retired. --text defaults to \"text\". --db FILE is a local store\n"
    "(SQLite file); --server URL the registry of `conveyor serve` (train uploads, eval\n"
    "and predict download the model and run here). Exit status: 0 done, 1 bad data or\n"
    "unknown model, 2 usage error.\n";

struct opts {
    const char *db, *data, *label, *text, *name, *kind, *ref;
    double holdout;
    unsigned long long seed;
    const char *positive, *schema, *algo;
    const char *file; /* upload --file: an extractor definition */
    int all, json, holdout_set, seed_set, top, tab_set, c_set;
    struct cv_text_params params;
    struct cv_tab_params tab;
    const char *server; /* --server URL: the registry of a server instead of --db */
    double share;       /* canary --share */
    int share_set, clear;
    int include_feedback; /* train: add the reviewers' labeled examples */
};

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "conveyor model%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\n(see conveyor model --help)\n");
    return 2;
}

/* Parses the options of one subcommand. Returns 0, or 2 after a message. */
static int parse(const char *cmd, int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->text = "text";
    o->holdout = 0.2;
    o->seed = 42;
    o->top = 5;
    cv_text_params_init(&o->params);
    cv_tab_params_init(&o->tab);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        if (!strcmp(a, "--db"))
            str = &o->db;
        else if (!strcmp(a, "--server"))
            str = &o->server;
        else if (!strcmp(a, "--data"))
            str = &o->data;
        else if (!strcmp(a, "--label"))
            str = &o->label;
        else if (!strcmp(a, "--text"))
            str = &o->text;
        else if (!strcmp(a, "--name"))
            str = &o->name;
        else if (!strcmp(a, "--kind"))
            str = &o->kind;
        else if (!strcmp(a, "--positive"))
            str = &o->positive;
        else if (!strcmp(a, "--schema"))
            str = &o->schema;
        else if (!strcmp(a, "--algo"))
            str = &o->algo;
        else if (!strcmp(a, "--file"))
            str = &o->file;
        if (str) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", a);
            *str = argv[++i];
            continue;
        }
        if (!strcmp(a, "--all")) {
            o->all = 1;
        } else if (!strcmp(a, "--include-feedback")) {
            o->include_feedback = 1;
        } else if (!strcmp(a, "--clear")) {
            o->clear = 1;
        } else if (!strcmp(a, "--share")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            char *end = NULL;
            o->share = strtod(v, &end);
            o->share_set = 1;
            if (!*v || *end || !(o->share >= 0 && o->share <= 1))
                return usage_error(cmd, "--share needs a number from 0 to 1 (got %s)", v);
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--depth") || !strcmp(a, "--eta") || !strcmp(a, "--rounds") ||
                   !strcmp(a, "--early-stopping") || !strcmp(a, "--top") || !strcmp(a, "--folds") ||
                   !strcmp(a, "--subsample") ||
                   !strcmp(a, "--colsample") || !strcmp(a, "--min-child-weight") || !strcmp(a, "--lambda")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            char *end = NULL;
            if (!strcmp(a, "--eta") || !strcmp(a, "--subsample") || !strcmp(a, "--colsample")) {
                double d = strtod(v, &end);
                if (*end || !(d > 0 && d <= 1))
                    return usage_error(cmd, "--eta, --subsample and --colsample need a number in (0, 1] (got %s)",
                                       v);
                *(!strcmp(a, "--eta") ? &o->tab.eta : !strcmp(a, "--subsample") ? &o->tab.subsample
                                                                                 : &o->tab.colsample) = d;
            } else if (!strcmp(a, "--min-child-weight") || !strcmp(a, "--lambda")) {
                double d = strtod(v, &end);
                if (*end || !(d >= 0) || d > 1e6)
                    return usage_error(cmd, "--min-child-weight and --lambda need a number >= 0 (got %s)", v);
                *(!strcmp(a, "--lambda") ? &o->tab.lambda : &o->tab.min_child_weight) = d;
            } else {
                long n = strtol(v, &end, 10);
                int lo = !strcmp(a, "--depth") || !strcmp(a, "--rounds") ? 1 : 0;
                if (*end || !*v || n < lo || n > 100000 || (!strcmp(a, "--depth") && n > 16))
                    return usage_error(cmd,
                                       "bad whole number %s (--depth 1-16, --rounds 1-100000, "
                                       "--early-stopping and --top 0-100000)",
                                       v);
                if (!strcmp(a, "--depth"))
                    o->tab.max_depth = (int)n;
                else if (!strcmp(a, "--rounds"))
                    o->tab.rounds = (int)n;
                else if (!strcmp(a, "--early-stopping"))
                    o->tab.early_stopping = (int)n;
                else if (!strcmp(a, "--folds")) {
                    if (n < 2 || n > 20)
                        return usage_error(cmd, "--folds needs 2 to 20 (got %s)", v);
                    o->tab.folds = (int)n;
                }
                else
                    o->top = (int)n;
            }
            if (strcmp(a, "--top"))
                o->tab_set = 1;
        } else if (!strcmp(a, "--holdout") || !strcmp(a, "--seed") || !strcmp(a, "--C") ||
                   !strcmp(a, "--hash-bits") || !strcmp(a, "--solver")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            char *end = NULL;
            errno = 0;
            if (!strcmp(a, "--holdout")) {
                o->holdout = strtod(v, &end);
                o->holdout_set = 1;
                if (*end || !(o->holdout > 0 && o->holdout < 1))
                    return usage_error(cmd, "--holdout needs a fraction between 0 and 1 (got %s)", v);
            } else if (!strcmp(a, "--seed")) {
                o->seed = strtoull(v, &end, 10);
                o->seed_set = 1;
                if (*end || !*v || *v == '-' || errno)
                    return usage_error(cmd, "--seed needs a non-negative integer (got %s)", v);
            } else if (!strcmp(a, "--C")) {
                o->params.C = strtod(v, &end);
                if (*end || !(o->params.C > 0) || o->params.C > 1e12)
                    return usage_error(cmd, "--C needs a positive number (got %s)", v);
                o->tab.C = o->params.C;
                o->c_set = 1;
            } else if (!strcmp(a, "--hash-bits")) {
                long b = strtol(v, &end, 10);
                if (*end || b < 16 || b > 24)
                    return usage_error(cmd, "--hash-bits needs an integer from 16 to 24 (got %s)", v);
                o->params.dim_bits = (int)b;
            } else {
                if (!strcmp(v, "lr"))
                    o->params.solver = CV_TEXT_SOLVER_LR;
                else if (!strcmp(v, "lr-dual"))
                    o->params.solver = CV_TEXT_SOLVER_LR_DUAL;
                else
                    return usage_error(cmd, "--solver is lr or lr-dual (got %s)", v);
            }
        } else if (a[0] == '-' && a[1]) {
            return usage_error(cmd, "unknown option %s", a);
        } else if (!o->ref) {
            o->ref = a;
        } else {
            return usage_error(cmd, "unexpected argument %s", a);
        }
    }
    if (!o->db && !o->server)
        return usage_error(cmd, "--db FILE or --server URL is required (the store that keeps the models, or the "
                                "server whose store does)%s",
                           NULL);
    if (o->db && o->server)
        return usage_error(cmd, "--db FILE and --server URL exclude each other: name one registry%s", NULL);
    return 0;
}

static int open_store(const char *db, cv_store **s)
{
    jv err = jv_invalid();
    int rc = cv_store_open(db, s, &err);
    if (rc) {
        fprintf(stderr, "conveyor model: %s\n", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : db);
        jv_free(err);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The registry: a local store (--db) or a server's (--server)               */
/* ------------------------------------------------------------------------ */

/* Opens --db (nothing to open for --server). Returns 0, or 1 after a message. */
static int open_registry(const struct opts *o, cv_store **s)
{
    return o->server ? 0 : open_store(o->db, s);
}

/* cv_store_get_model, from the store or the server (which downloads the
 * file when bytes is not NULL). */
static int reg_get(const struct opts *o, cv_store *s, const char *name, int64_t version, jv *card, void **bytes,
                   size_t *len, jv *err)
{
    if (o->server)
        return cv__client_model_get(o->server, name, version, card, bytes, len, err);
    return cv_store_get_model(s, name, version, card, bytes, len, err);
}

/* cv_store_put_model, to the store or uploaded to the server (card consumed). */
static int reg_put(const struct opts *o, cv_store *s, const char *name, const char *kind, jv card, const void *bytes,
                   size_t len, int64_t *version, jv *err)
{
    if (o->server)
        return cv__client_model_put(o->server, name, kind, card, bytes, len, version, err);
    return cv_store_put_model(s, name, kind, card, bytes, len, version, err);
}

/* Prints *err (consumed) after a prefix. */
static void print_err(const char *prefix, jv err)
{
    fprintf(stderr, "conveyor model %s: %s\n", prefix,
            jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "failed");
    jv_free(err);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void progress(void *ud, const char *stage, size_t done, size_t total)
{
    (void)ud;
    if (!strcmp(stage, "features"))
        fprintf(stderr, "\rfeatures %zu/%zu rows%s", done, total, done == total ? "\n" : "");
    else if (!strcmp(stage, "calibration"))
        fprintf(stderr, "\rcalibration (Platt, cross-validated): fold %zu/%zu%s", done, total, done == total ? "\n" : "");
    else if (done == 0)
        fprintf(stderr, "training (LIBLINEAR)...\n");
}

/* ------------------------------------------------------------------------ */
/* Loading a model and printing metrics                                      */
/* ------------------------------------------------------------------------ */

/* Splits NAME[@VERSION]. Returns 0, or 2 after a message. */
static int parse_ref(const char *cmd, const char *ref, char *name, size_t n, int64_t *version)
{
    if (!ref)
        return usage_error(cmd, "which model? (NAME or NAME@VERSION)%s", NULL);
    const char *at = strrchr(ref, '@');
    size_t len = at ? (size_t)(at - ref) : strlen(ref);
    if (!len || len >= n)
        return usage_error(cmd, "bad model reference %s (NAME or NAME@VERSION)", ref);
    memcpy(name, ref, len);
    name[len] = 0;
    *version = 0;
    if (at) {
        char *end;
        long long v = strtoll(at + 1, &end, 10);
        if (*end || !at[1] || v < 1)
            return usage_error(cmd, "bad model version in %s (a positive integer)", ref);
        *version = v;
    }
    return 0;
}

/* Loads a model from the store: a text model into *m, or a tabular one into
 * *tm (the other left NULL). Returns 0 with the model and *card, or 1 after a
 * message. */
static int load_model(const struct opts *o, cv_store *s, const char *cmd, const char *name, int64_t version,
                      struct cv_text_model **m, struct cv_tab_model **tm, jv *card)
{
    jv err = jv_invalid();
    void *bytes = NULL;
    size_t len = 0;
    *m = NULL;
    *tm = NULL;
    int rc = reg_get(o, s, name, version, card, &bytes, &len, &err);
    if (rc) {
        print_err(cmd, err);
        return 1;
    }
    jv kind = jv_object_get(jv_copy(*card), jv_string("kind"));
    const char *k = jv_get_kind(kind) == JV_KIND_STRING ? jv_string_value(kind) : "";
    int text = !strcmp(k, "text"), tabular = !strcmp(k, "tabular");
    if (!text && !tabular) {
        free(bytes);
        fprintf(stderr, "conveyor model %s: %s is neither a text nor a tabular model (kind %s)\n", cmd, name,
                *k ? k : "?");
        jv_free(kind);
        return 1;
    }
    jv_free(kind);
    rc = text ? cv_text_model_load(bytes, len, m, &err) : cv_tab_model_load(bytes, len, tm, &err);
    free(bytes);
    if (rc) {
        print_err(cmd, err);
        return 1;
    }
    return 0;
}

static double num(jv o, const char *k)
{
    jv v = jv_object_get(jv_copy(o), jv_string(k));
    double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : 0;
    jv_free(v);
    return d;
}

/* Prints metrics (cv_ml_evaluate's object, borrowed) for people. */
static void print_metrics(jv r)
{
    printf("  rows       %d\n", (int)num(r, "n"));
    printf("  accuracy   %.4f\n", num(r, "accuracy"));
    printf("  macro-F1   %.4f\n", num(r, "macro_f1"));
    printf("  ECE        %.4f (10 bins)\n", num(r, "ece"));
    jv labels = jv_object_get(jv_copy(r), jv_string("labels"));
    jv classes = jv_object_get(jv_copy(r), jv_string("classes"));
    jv cm = jv_object_get(jv_copy(r), jv_string("confusion"));
    int w = 10;
    jv_array_foreach(labels, i, l)
    {
        int n = jv_string_length_bytes(l);
        if (n + 2 > w)
            w = n + 2 > 40 ? 40 : n + 2;
    }
    printf("  %-*s %9s %9s %9s %9s\n", w, "label", "precision", "recall", "f1", "support");
    jv_array_foreach(labels, i, l)
    {
        jv c = jv_object_get(jv_copy(classes), jv_copy(l));
        printf("  %-*.*s %9.4f %9.4f %9.4f %9d\n", w, w - 1, jv_string_value(l), num(c, "precision"),
               num(c, "recall"), num(c, "f1"), (int)num(c, "support"));
        jv_free(c);
        jv_free(l);
    }
    printf("  confusion matrix (rows: true label, columns: predicted)\n  %-*s", w, "");
    jv_array_foreach(labels, i, l)
    {
        printf(" %9.9s", jv_string_value(l));
        jv_free(l);
    }
    printf("\n");
    jv_array_foreach(cm, i, row)
    {
        jv l = jv_array_get(jv_copy(labels), i);
        printf("  %-*.*s", w, w - 1, jv_string_value(l));
        jv_free(l);
        jv_array_foreach(row, j, c)
        {
            printf(" %9d", (int)jv_number_value(c));
            jv_free(c);
        }
        printf("\n");
        jv_free(row);
    }
    jv_free(labels);
    jv_free(classes);
    jv_free(cm);
}

/*
 * Predicts rows[0..n) of d (all when rows is NULL) with m and evaluates
 * against d's labels. d's label ids are mapped into the model's classes;
 * labels the model does not know become extra classes (never predicted).
 * Returns the metrics object, or an invalid jv on out-of-memory.
 */
static jv evaluate(const struct cv_text_model *m, const struct cv_dataset *d, const int *rows, int n)
{
    int k = cv_text_model_classes(m);
    int total = k;
    const char **names = malloc(((size_t)k + (size_t)d->n_labels) * sizeof *names);
    int *map = malloc(((size_t)d->n_labels + 1) * sizeof *map);
    int *truth = malloc(((size_t)n + 1) * sizeof *truth), *pred = malloc(((size_t)n + 1) * sizeof *pred);
    double *conf = malloc(((size_t)n + 1) * sizeof *conf), *probs = malloc((size_t)k * sizeof *probs);
    struct cv_text_scratch *s = cv_text_scratch_new();
    jv r = jv_invalid();
    if (!names || !map || !truth || !pred || !conf || !probs || !s)
        goto out;
    for (int c = 0; c < k; c++)
        names[c] = cv_text_model_label(m, c);
    for (int l = 0; l < d->n_labels; l++) {
        map[l] = -1;
        for (int c = 0; c < k; c++)
            if (!strcmp(names[c], d->label_names[l]))
                map[l] = c;
        if (map[l] < 0) {
            names[total] = d->label_names[l];
            map[l] = total++;
        }
    }
    for (int i = 0; i < n; i++) {
        int row = rows ? rows[i] : i;
        const char *t = d->texts[row];
        int best = cv_text_model_predict(m, t, strlen(t), s, probs);
        if (best < 0)
            goto out;
        truth[i] = map[d->labels[row]];
        pred[i] = best;
        conf[i] = probs[best];
    }
    r = cv_ml_evaluate(total, names, truth, pred, conf, n);
out:
    cv_text_scratch_free(s);
    free(names);
    free(map);
    free(truth);
    free(pred);
    free(conf);
    free(probs);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Subcommands                                                               */
/* ------------------------------------------------------------------------ */

static int name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

static const char *who(void)
{
    const char *u = getenv("USER");
    if (u && *u)
        return u;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "unknown";
}

/* ------------------------------------------------------------------------ */
/* Tabular scorers                                                           */
/* ------------------------------------------------------------------------ */

static void tab_progress(void *ud, const char *stage, size_t done, size_t total)
{
    (void)ud;
    if (!strcmp(stage, "linear")) {
        fprintf(stderr, "\rcross-validating the linear model: fold %zu/%zu%s", done, total, done == total ? "\n" : "");
    } else if (!strcmp(stage, "early-stopping")) {
        if (done == total)
            fprintf(stderr, "\rchoosing the rounds by cross-validation: %zu rounds            \n", done);
        else
            fprintf(stderr, "\rchoosing the rounds by cross-validation: round %zu (at most %zu)", done, total);
    } else {
        fprintf(stderr, "\rboosting round %zu/%zu", done, total);
        if (done == total)
            fprintf(stderr, "\n");
    }
}

/* Prints a scorer's metrics (cv_tab_evaluate's object, borrowed). */
static void print_tab_metrics(jv r)
{
    jv auc = jv_object_get(jv_copy(r), jv_string("auc"));
    jv labels = jv_object_get(jv_copy(r), jv_string("labels"));
    jv neg = jv_array_get(jv_copy(labels), 0), pos = jv_array_get(jv_copy(labels), 1);
    printf("  rows       %d (%d \"%s\", the positive label)\n", (int)num(r, "n"), (int)num(r, "positives"),
           jv_string_value(pos));
    if (jv_get_kind(auc) == JV_KIND_NUMBER)
        printf("  AUC        %.4f\n", jv_number_value(auc));
    else
        printf("  AUC        - (one label only)\n");
    printf("  log-loss   %.4f\n", num(r, "logloss"));
    printf("  accuracy   %.4f (positive at score >= 0.5)\n", num(r, "accuracy"));
    printf("  Brier      %.4f\n", num(r, "brier"));
    jv cm = jv_object_get(jv_copy(r), jv_string("confusion"));
    int c[2][2];
    for (int i = 0; i < 2; i++) {
        jv row = jv_array_get(jv_copy(cm), i);
        for (int j = 0; j < 2; j++) {
            jv v = jv_array_get(jv_copy(row), j);
            c[i][j] = jv_get_kind(v) == JV_KIND_NUMBER ? (int)jv_number_value(v) : 0;
            jv_free(v);
        }
        jv_free(row);
    }
    printf("  confusion (rows: true, columns: predicted)\n  %-12s %9.9s %9.9s\n", "", jv_string_value(neg),
           jv_string_value(pos));
    printf("  %-12.12s %9d %9d\n  %-12.12s %9d %9d\n", jv_string_value(neg), c[0][0], c[0][1], jv_string_value(pos),
           c[1][0], c[1][1]);
    if (num(r, "unknownCategories") > 0)
        printf("  %d unknown categories (treated as missing)\n", (int)num(r, "unknownCategories"));
    jv_free(cm);
    jv_free(auc);
    jv_free(neg);
    jv_free(pos);
    jv_free(labels);
}

/* Encodes every row of t with schema sc into *x (malloc'ed, t->n * ncols).
 * Returns 0, or 1 after a message naming file:line. */
static int encode_all(const char *cmd, const struct cv_table *t, const char *path, const struct cv_tab_schema *sc,
                      float **x, int *unknown)
{
    *x = malloc(((size_t)t->n * (size_t)sc->ncols + 1) * sizeof **x);
    if (!*x) {
        fprintf(stderr, "conveyor model %s: out of memory\n", cmd);
        return 1;
    }
    for (int i = 0; i < t->n; i++) {
        jv err = jv_invalid();
        if (cv_tab_encode(sc, t->rows[i], t->csv, *x + (size_t)i * sc->ncols, unknown, &err)) {
            fprintf(stderr, "conveyor model %s: %s:%d: %s\n", cmd, path, t->lines[i],
                    jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "bad row");
            jv_free(err);
            free(*x);
            *x = NULL;
            return 1;
        }
    }
    return 0;
}

/* Reads a --schema file: a JSON array. Returns 0 with *out, or 1 after a
 * message. */
static int read_schema(const char *path, jv *out)
{
    jv v = jv_load_file(path, 0);
    if (!jv_is_valid(v)) {
        jv msg = jv_invalid_get_msg(v);
        fprintf(stderr, "conveyor model train: --schema %s: %s\n", path,
                jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "cannot be read");
        jv_free(msg);
        return 1;
    }
    /* jv_load_file in raw=0 mode gives an array of the file's JSON texts */
    jv first = jv_array_length(jv_copy(v)) == 1 ? jv_array_get(jv_copy(v), 0) : jv_invalid();
    jv_free(v);
    if (jv_get_kind(first) != JV_KIND_ARRAY) {
        jv_free(first);
        fprintf(stderr, "conveyor model train: --schema %s: one JSON array of {\"name\", \"type\"} objects\n", path);
        return 1;
    }
    *out = first;
    return 0;
}

static int train_tabular(struct opts *o)
{
    cv_store *s = NULL;
    struct cv_table t;
    struct cv_tab_schema sc = {0};
    struct cv_tab_model *m = NULL;
    char *names[2] = {NULL, NULL};
    int *y = NULL, *tr = NULL, *te = NULL, *ytr = NULL, *yte = NULL, ntr = 0, nte = 0, rc = 1;
    float *x = NULL, *xtr = NULL, *xte = NULL;
    double *score = NULL;
    unsigned char *bytes = NULL;
    size_t len = 0;
    jv err = jv_invalid(), metrics = jv_null(), declared = jv_null();
    memset(&t, 0, sizeof t);
    if (o->schema && read_schema(o->schema, &declared))
        goto out;
    if (open_registry(o, &s))
        goto out;
    if (cv_table_read(o->data, &t, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    y = malloc(((size_t)t.n + 1) * sizeof *y);
    if (!y)
        goto oom;
    if (cv_tab_labels(&t, o->data, NULL, 0, o->label, o->positive, names, y, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    struct cv_dataset d = {.n = t.n, .labels = y, .n_labels = 2};
    if (!o->all) {
        if (cv_dataset_split(&d, o->holdout, o->seed, &tr, &ntr, &te, &nte))
            goto oom;
        if (nte == 0) {
            fprintf(stderr,
                    "conveyor model train: %s: %d rows leave nothing to hold out at %g: use more data, a larger "
                    "--holdout, or --all\n",
                    o->data, t.n, o->holdout);
            goto out;
        }
    }
    /* the schema (inferred categories included) comes from the training rows only */
    if (cv_tab_schema_infer(&t, o->all ? NULL : tr, o->all ? t.n : ntr, o->label, declared, &sc, &err)) {
        declared = jv_invalid();
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    declared = jv_invalid();
    int unknown = 0;
    if (encode_all("train", &t, o->data, &sc, &x, &unknown))
        goto out;
    int nnum = 0;
    for (int i = 0; i < sc.n; i++)
        nnum += sc.f[i].type == CV_TAB_NUMERIC;
    printf("data: %s: %d rows, labels \"%s\" / \"%s\" (positive), sha256 %s\n", o->data, t.n, names[0], names[1],
           t.sha256);
    printf("features: %d (%d numeric, %d categorical; %d columns one-hot encoded)\n", sc.n, nnum, sc.n - nnum,
           sc.ncols);
    if (o->all)
        printf("training on all %d rows (no held-out metrics)\n", t.n);
    else
        printf("split: stratified hold-out %g, seed %llu: %d training rows, %d held out\n", o->holdout, o->seed, ntr,
               nte);
    fflush(stdout);
    int n = o->all ? t.n : ntr;
    xtr = o->all ? x : malloc(((size_t)n * (size_t)sc.ncols + 1) * sizeof *xtr);
    ytr = o->all ? y : malloc(((size_t)n + 1) * sizeof *ytr);
    if (!xtr || !ytr)
        goto oom;
    if (!o->all)
        for (int i = 0; i < ntr; i++) {
            memcpy(xtr + (size_t)i * sc.ncols, x + (size_t)tr[i] * sc.ncols, (size_t)sc.ncols * sizeof *xtr);
            ytr[i] = y[tr[i]];
        }
    o->tab.seed = o->seed; /* the split's seed seeds XGBoost too */
    double t0 = now_s();
    if (cv_tab_model_train(&o->tab, &sc, (const char *const *)names, xtr, ytr, n, isatty(2) ? tab_progress : NULL,
                           NULL, &m, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    double secs = now_s() - t0;
    double cv_auc[3];
    cv_tab_model_cv_auc(m, cv_auc);
    int algo = cv_tab_model_algo(m);
    if ((o->tab.algo == CV_TAB_ALGO_AUTO || o->tab.algo == CV_TAB_ALGO_BLEND) && !isnan(cv_auc[1]))
        printf("algorithm: %s (cross-validated AUC on the training rows: XGBoost %.4f, linear %.4f, blend %.4f)\n",
               algo == CV_TAB_ALGO_LINEAR ? "linear" : algo == CV_TAB_ALGO_BLEND ? "blend" : "xgboost", cv_auc[0],
               cv_auc[1], cv_auc[2]);
    else if (o->tab.algo == CV_TAB_ALGO_AUTO)
        printf("algorithm: xgboost (too few rows of a label to cross-validate a choice)\n");
    if (o->tab.algo == CV_TAB_ALGO_AUTO) { /* why (bench/SELECTION.md) */
        jv ch = jv_object_get(cv_tab_model_params_json(m), jv_string("autoChoice"));
        if (jv_get_kind(ch) == JV_KIND_OBJECT) {
            jv why = jv_object_get(jv_copy(ch), jv_string("why")), d = jv_object_get(jv_copy(ch), jv_string("bestSingleMinusBlend")),
               se = jv_object_get(jv_copy(ch), jv_string("standardError"));
            printf("auto: %s (best single model - blend: %+.4f per fold, standard error %.4f)\n",
                   jv_string_value(why), jv_number_value(d), jv_number_value(se));
            jv_free(why);
            jv_free(d);
            jv_free(se);
        }
        jv_free(ch);
    }
    if (algo == CV_TAB_ALGO_BLEND)
        printf("trained in %.2f s (blend: the mean log-odds of XGBoost, %d rounds of depth-%d trees, and an L2 "
               "logistic regression, C=%g)\n",
               secs, cv_tab_model_rounds(m), o->tab.max_depth, o->tab.C);
    else if (algo == CV_TAB_ALGO_LINEAR)
        printf("trained in %.2f s (L2 logistic regression, LIBLINEAR, C=%g, standardised numeric and one-hot "
               "categorical columns)\n",
               secs, o->tab.C);
    else
        printf("trained in %.2f s (XGBoost, %d rounds of depth-%d trees, eta %g%s)\n", secs, cv_tab_model_rounds(m),
               o->tab.max_depth, o->tab.eta,
               o->tab.early_stopping ? ", rounds chosen by cross-validation on the training rows" : "");
    if (!o->all) {
        xte = malloc(((size_t)nte * (size_t)sc.ncols + 1) * sizeof *xte);
        yte = malloc(((size_t)nte + 1) * sizeof *yte);
        score = malloc(((size_t)nte + 1) * sizeof *score);
        if (!xte || !yte || !score)
            goto oom;
        for (int i = 0; i < nte; i++) {
            memcpy(xte + (size_t)i * sc.ncols, x + (size_t)te[i] * sc.ncols, (size_t)sc.ncols * sizeof *xte);
            yte[i] = y[te[i]];
        }
        if (cv_tab_model_predict(m, xte, nte, score, NULL, NULL, &err)) {
            print_err("train", err);
            err = jv_invalid();
            goto out;
        }
        jv_free(metrics);
        metrics = cv_tab_evaluate((const char *const *)names, yte, score, nte);
        if (!jv_is_valid(metrics))
            goto oom;
        printf("held-out metrics:\n");
        print_tab_metrics(metrics);
    }
    if (cv_tab_model_save(m, &bytes, &len))
        goto oom;
    char model_sha[65];
    cv_ml_sha256_hex(bytes, len, model_sha);
    int per[2] = {0, 0};
    for (int i = 0; i < t.n; i++)
        per[y[i]]++;
    jv counts = jv_object_set(jv_object_set(jv_object(), jv_string(names[0]), jv_number(per[0])),
                              jv_string(names[1]), jv_number(per[1]));
    jv data = jv_object();
    data = jv_object_set(data, jv_string("file"), jv_string(o->data));
    data = jv_object_set(data, jv_string("sha256"), jv_string(t.sha256));
    data = jv_object_set(data, jv_string("rows"), jv_number(t.n));
    data = jv_object_set(data, jv_string("labelField"), jv_string(o->label));
    data = jv_object_set(data, jv_string("labelCounts"), counts);
    jv split = jv_object();
    if (o->all) {
        split = jv_object_set(split, jv_string("all"), jv_true());
    } else {
        split = jv_object_set(split, jv_string("holdout"), jv_number(o->holdout));
        split = jv_object_set(split, jv_string("seed"), jv_number((double)o->seed));
        split = jv_object_set(split, jv_string("stratified"), jv_true());
    }
    split = jv_object_set(split, jv_string("trainRows"), jv_number(n));
    split = jv_object_set(split, jv_string("heldOutRows"), jv_number(o->all ? 0 : nte));
    jv card = jv_object();
    card = jv_object_set(card, jv_string("kind"), jv_string("tabular"));
    card = jv_object_set(card, jv_string("format"),
                         jv_object_set(jv_object_set(jv_object(), jv_string("name"), jv_string(CV_TAB_MODEL_MAGIC)),
                                       jv_string("version"), jv_number(CV_TAB_MODEL_FORMAT)));
    card = jv_object_set(card, jv_string("labels"),
                         jv_array_append(jv_array_append(jv_array(), jv_string(names[0])), jv_string(names[1])));
    card = jv_object_set(card, jv_string("positive"), jv_string(names[1]));
    card = jv_object_set(card, jv_string("features"), cv_tab_schema_json(&sc));
    card = jv_object_set(card, jv_string("data"), data);
    card = jv_object_set(card, jv_string("split"), split);
    card = jv_object_set(card, jv_string("parameters"), cv_tab_model_params_json(m));
    card = jv_object_set(card, jv_string("metrics"), jv_copy(metrics));
    card = jv_object_set(card, jv_string("trainingSeconds"), jv_number(secs));
    card = jv_object_set(card, jv_string("modelSha256"), jv_string(model_sha));
    card = jv_object_set(card, jv_string("createdBy"), jv_string(who()));
    card = jv_object_set(card, jv_string("conveyor"), jv_string(CV_VERSION));
    int64_t version = 0;
    if (reg_put(o, s, o->name, "tabular", card, bytes, len, &version, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    printf("stored as draft (%zu bytes)\n%s@%lld\n", len, o->name, (long long)version);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "conveyor model train: out of memory\n");
out:
    fflush(stdout);
    jv_free(err);
    jv_free(metrics);
    jv_free(declared);
    free(bytes);
    free(score);
    if (xtr != x)
        free(xtr);
    if (ytr != y)
        free(ytr);
    free(xte);
    free(yte);
    free(x);
    free(y);
    free(tr);
    free(te);
    free(names[0]);
    free(names[1]);
    cv_tab_model_free(m);
    cv_tab_schema_cleanup(&sc);
    cv_table_cleanup(&t);
    cv_store_close(s);
    return rc;
}

/* eval and predict with a tabular model (borrowed). Returns 0 or 1. */
static int apply_tabular(const char *cmd, const struct opts *o, struct cv_tab_model *m, const char *ref)
{
    int eval = !strcmp(cmd, "eval"), rc = 1, unknown = 0;
    const struct cv_tab_schema *sc = cv_tab_model_schema(m);
    struct cv_table t;
    char *names[2] = {(char *)cv_tab_model_label(m, 0), (char *)cv_tab_model_label(m, 1)};
    int *y = NULL;
    float *x = NULL;
    double *score = NULL, *contribs = NULL;
    jv err = jv_invalid();
    if (cv_table_read(o->data, &t, &err)) {
        print_err(cmd, err);
        return 1;
    }
    y = malloc(((size_t)t.n + 1) * sizeof *y);
    score = malloc(((size_t)t.n + 1) * sizeof *score);
    if (!eval)
        contribs = malloc(((size_t)t.n * ((size_t)sc->n + 1) + 1) * sizeof *contribs);
    if (!y || !score || (!eval && !contribs)) {
        fprintf(stderr, "conveyor model %s: out of memory\n", cmd);
        goto out;
    }
    if (eval && cv_tab_labels(&t, o->data, NULL, 0, o->label, NULL, names, y, &err)) {
        print_err(cmd, err);
        err = jv_invalid();
        goto out;
    }
    if (encode_all(cmd, &t, o->data, sc, &x, &unknown))
        goto out;
    if (cv_tab_model_predict(m, x, t.n, score, NULL, contribs, &err)) {
        print_err(cmd, err);
        err = jv_invalid();
        goto out;
    }
    if (eval) {
        jv r = cv_tab_evaluate((const char *const *)names, y, score, t.n);
        if (!jv_is_valid(r)) {
            jv_free(r);
            fprintf(stderr, "conveyor model eval: out of memory\n");
            goto out;
        }
        r = jv_object_set(r, jv_string("unknownCategories"), jv_number(unknown));
        if (o->json) {
            r = jv_object_set(r, jv_string("model"), jv_string(ref));
            jv_dumpf(r, stdout, 0);
            printf("\n");
        } else {
            printf("model %s on %s:\n", ref, o->data);
            print_tab_metrics(r);
            jv_free(r);
        }
    } else {
        for (int i = 0; i < t.n; i++) {
            jv p = cv_tab_prediction_json(m, t.rows[i], score[i], contribs + (size_t)i * ((size_t)sc->n + 1), o->top);
            if (!jv_is_valid(p)) {
                jv_free(p);
                fprintf(stderr, "conveyor model predict: out of memory\n");
                goto out;
            }
            p = jv_object_set(p, jv_string("model"), jv_string(ref));
            jv_dumpf(p, stdout, 0);
            putchar('\n');
        }
        if (unknown)
            fprintf(stderr, "conveyor model predict: %d unknown categories (treated as missing)\n", unknown);
    }
    rc = 0;
out:
    fflush(stdout);
    jv_free(err);
    free(y);
    free(x);
    free(score);
    free(contribs);
    cv_table_cleanup(&t);
    return rc;
}

/*
 * --include-feedback: the examples reviewers confirmed or corrected for
 * predictions of model o->name (any version; docs/tasks.md) join the
 * training rows: the model's input as the text (a string, or the --text
 * member of an object) and the reviewer's final value as the label. Examples
 * without a usable text or label are skipped (and counted). 0, or 1 after a
 * message.
 */
static int add_feedback(const struct opts *o, cv_store *s, struct cv_dataset *d, int *rows, int *overridden)
{
    jv items = jv_invalid(), err = jv_invalid();
    int rc = o->server ? cv__client_feedback(o->server, o->name, &items, &err)
                       : cv_store_list_feedback(s, o->name, &items, &err);
    if (rc) {
        print_err("train: reading the feedback examples", err);
        return 1;
    }
    jv_free(err);
    int n = jv_array_length(jv_copy(items)), k = 0, skipped = 0;
    char **texts = calloc((size_t)(n ? n : 1), sizeof *texts), **labels = calloc((size_t)(n ? n : 1), sizeof *labels);
    rc = !texts || !labels;
    jv_array_foreach(items, i, ex)
    {
        jv in = jv_object_get(jv_copy(ex), jv_string("input")), c = jv_object_get(jv_copy(ex), jv_string("corrected"));
        if (jv_get_kind(in) == JV_KIND_OBJECT)
            in = jv_object_get(in, jv_string(o->text));
        jv_kind ck = jv_get_kind(c);
        jv label = ck == JV_KIND_STRING ? jv_copy(c)
                   : ck == JV_KIND_NUMBER || ck == JV_KIND_TRUE || ck == JV_KIND_FALSE ? jv_dump_string(jv_copy(c), 0)
                                                                                       : jv_invalid();
        if (!rc && jv_get_kind(in) == JV_KIND_STRING && jv_get_kind(label) == JV_KIND_STRING) {
            texts[k] = strdup(jv_string_value(in));
            labels[k] = strdup(jv_string_value(label));
            rc = !texts[k] || !labels[k];
            k++;
            jv ov = jv_object_get(jv_copy(ex), jv_string("overridden"));
            *overridden += jv_get_kind(ov) == JV_KIND_TRUE;
            jv_free(ov);
        } else {
            skipped++;
        }
        jv_free(in);
        jv_free(c);
        jv_free(label);
        jv_free(ex);
    }
    jv_free(items);
    if (!rc && k)
        rc = cv_dataset_append(d, k, texts, labels) != 0;
    for (int i = 0; i < k; i++) {
        free(texts[i]);
        free(labels[i]);
    }
    free(texts);
    free(labels);
    if (rc) {
        fprintf(stderr, "conveyor model train: out of memory\n");
        return 1;
    }
    *rows = k;
    printf("feedback: %d reviewed example(s) of %s added, %d of them corrected by a reviewer\n", k, o->name,
           *overridden);
    if (skipped)
        printf("feedback: %d example(s) skipped (no text in \"%s\", or no label)\n", skipped, o->text);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    struct opts o;
    int rc = parse("train", argc, argv, &o);
    if (rc)
        return rc;
    if (o.ref)
        return usage_error("train", "unexpected argument %s (the model is named with --name)", o.ref);
    if (!o.kind)
        o.kind = "text";
    if (strcmp(o.kind, "text") && strcmp(o.kind, "tabular"))
        return usage_error("train", "--kind is text or tabular; got %s", o.kind);
    if (!o.data || !o.label || !o.name)
        return usage_error("train", "--data FILE, --label FIELD and --name NAME are required%s", NULL);
    if (!name_ok(o.name))
        return usage_error("train",
                           "bad --name %s (1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit)",
                           o.name);
    if (o.all && (o.holdout_set || o.seed_set))
        return usage_error("train", "--all trains on every row: it takes no --holdout or --seed%s", NULL);
    if (!strcmp(o.kind, "tabular")) {
        if (!o.algo || !strcmp(o.algo, "auto"))
            o.tab.algo = CV_TAB_ALGO_AUTO;
        else if (!strcmp(o.algo, "xgboost"))
            o.tab.algo = CV_TAB_ALGO_XGBOOST;
        else if (!strcmp(o.algo, "linear"))
            o.tab.algo = CV_TAB_ALGO_LINEAR;
        else if (!strcmp(o.algo, "blend"))
            o.tab.algo = CV_TAB_ALGO_BLEND;
        else
            return usage_error("train", "--algo for --kind tabular is auto, xgboost, linear or blend (got %s)",
                               o.algo);
        if (o.include_feedback)
            return usage_error("train", "--include-feedback is for --kind text (not yet for tabular models)%s", NULL);
        return train_tabular(&o);
    }
    if (o.algo && !strcmp(o.algo, "svm")) {
        if (o.params.solver != CV_TEXT_SOLVER_LR)
            return usage_error("train", "--solver chooses the logistic regression's solver: not with --algo svm%s",
                               NULL);
        o.params.solver = CV_TEXT_SOLVER_SVM;
        if (!o.c_set)
            o.params.C = 1; /* scikit-learn's LinearSVC default */
    } else if (o.algo && strcmp(o.algo, "lr")) {
        return usage_error("train", "--algo for --kind text is lr or svm (got %s)", o.algo);
    }

    cv_store *s = NULL;
    struct cv_dataset d;
    struct cv_text_model *m = NULL;
    int *tr = NULL, *te = NULL, ntr = 0, nte = 0;
    unsigned char *bytes = NULL;
    size_t len = 0;
    jv err = jv_invalid(), metrics = jv_null();
    memset(&d, 0, sizeof d);
    rc = 1;
    if (open_registry(&o, &s))
        goto out;
    if (cv_dataset_read(o.data, o.text, o.label, &d, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    if (d.n_labels < 2) {
        fprintf(stderr,
                "conveyor model train: %s: every row has the label \"%s\": a classifier needs at least two labels\n",
                o.data, d.label_names[0]);
        goto out;
    }
    if (!o.all) {
        if (cv_dataset_split(&d, o.holdout, o.seed, &tr, &ntr, &te, &nte)) {
            fprintf(stderr, "conveyor model train: out of memory\n");
            goto out;
        }
        if (nte == 0) {
            fprintf(stderr,
                    "conveyor model train: %s: %d rows leave nothing to hold out at %g: use more data, a larger "
                    "--holdout, or --all\n",
                    o.data, d.n, o.holdout);
            goto out;
        }
    }
    /* the reviewers' examples are all trained on: the held-out rows stay the
     * file's, comparable with versions trained without them */
    int fb_rows = 0, fb_over = 0;
    if (o.include_feedback) {
        printf("data: %s: %d rows, %d labels, sha256 %s\n", o.data, d.n, d.n_labels, d.sha256);
        int before = d.n;
        if (add_feedback(&o, s, &d, &fb_rows, &fb_over))
            goto out;
        if (!o.all && fb_rows) {
            int *more = realloc(tr, (size_t)(ntr + fb_rows) * sizeof *tr);
            if (!more) {
                fprintf(stderr, "conveyor model train: out of memory\n");
                goto out;
            }
            tr = more;
            for (int i = before; i < d.n; i++)
                tr[ntr++] = i;
        }
    }
    printf("%s: %d rows, %d labels%s%s\n", o.include_feedback ? "with the feedback" : "data", d.n, d.n_labels,
           o.include_feedback ? "" : ", sha256 ", o.include_feedback ? "" : d.sha256);
    if (o.all)
        printf("training on all %d rows (no held-out metrics)\n", d.n);
    else
        printf("split: stratified hold-out %g, seed %llu: %d training rows, %d held out\n", o.holdout, o.seed, ntr,
               nte);
    fflush(stdout);
    int tty = isatty(2);
    double t0 = now_s();
    if (cv_text_model_train(&o.params, &d, o.all ? NULL : tr, o.all ? d.n : ntr, tty ? progress : NULL, NULL, &m,
                            &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    double secs = now_s() - t0;
    printf("trained in %.2f s (LIBLINEAR %s, C=%g, 2^%d hashed features, word 1-%d + char %d-%d n-grams)\n", secs,
           o.params.solver == CV_TEXT_SOLVER_LR_DUAL ? "L2R_LR_DUAL"
           : o.params.solver == CV_TEXT_SOLVER_SVM  ? "L2R_L2LOSS_SVC_DUAL + Platt calibration"
                                                    : "L2R_LR",
           o.params.C, o.params.dim_bits,
           o.params.word_ngram_max, o.params.char_ngram_min, o.params.char_ngram_max);
    if (!o.all) {
        jv_free(metrics);
        metrics = evaluate(m, &d, te, nte);
        if (!jv_is_valid(metrics)) {
            fprintf(stderr, "conveyor model train: out of memory\n");
            goto out;
        }
        printf("held-out metrics:\n");
        print_metrics(metrics);
    }
    if (cv_text_model_save(m, &bytes, &len)) {
        fprintf(stderr, "conveyor model train: out of memory\n");
        goto out;
    }
    char model_sha[65];
    cv_ml_sha256_hex(bytes, len, model_sha);

    jv counts = jv_object();
    int *per = calloc((size_t)d.n_labels, sizeof *per);
    for (int i = 0; per && i < d.n; i++)
        per[d.labels[i]]++;
    jv labels = jv_array();
    for (int c = 0; c < d.n_labels; c++) {
        counts = jv_object_set(counts, jv_string(d.label_names[c]), jv_number(per ? per[c] : 0));
        labels = jv_array_append(labels, jv_string(d.label_names[c]));
    }
    free(per);
    jv data = jv_object();
    data = jv_object_set(data, jv_string("file"), jv_string(o.data));
    data = jv_object_set(data, jv_string("sha256"), jv_string(d.sha256));
    data = jv_object_set(data, jv_string("rows"), jv_number(d.n - fb_rows)); /* the file's */
    data = jv_object_set(data, jv_string("textField"), jv_string(o.text));
    data = jv_object_set(data, jv_string("labelField"), jv_string(o.label));
    data = jv_object_set(data, jv_string("labelCounts"), counts);
    if (o.include_feedback)
        data = jv_object_set(data, jv_string("feedback"), JV_OBJECT(jv_string("examples"), jv_number(fb_rows),
                                                                     jv_string("overridden"), jv_number(fb_over)));
    jv split = jv_object();
    if (o.all) {
        split = jv_object_set(split, jv_string("all"), jv_true());
    } else {
        split = jv_object_set(split, jv_string("holdout"), jv_number(o.holdout));
        split = jv_object_set(split, jv_string("seed"), jv_number((double)o.seed));
        split = jv_object_set(split, jv_string("stratified"), jv_true());
    }
    split = jv_object_set(split, jv_string("trainRows"), jv_number(o.all ? d.n : ntr));
    split = jv_object_set(split, jv_string("heldOutRows"), jv_number(o.all ? 0 : nte));
    jv card = jv_object();
    card = jv_object_set(card, jv_string("kind"), jv_string("text"));
    card = jv_object_set(card, jv_string("format"),
                         jv_object_set(jv_object_set(jv_object(), jv_string("name"), jv_string(CV_TEXT_MODEL_MAGIC)),
                                       jv_string("version"), jv_number(CV_TEXT_MODEL_FORMAT)));
    card = jv_object_set(card, jv_string("labels"), labels);
    card = jv_object_set(card, jv_string("data"), data);
    card = jv_object_set(card, jv_string("split"), split);
    card = jv_object_set(card, jv_string("parameters"), cv_text_params_json(&o.params));
    card = jv_object_set(card, jv_string("metrics"), jv_copy(metrics));
    card = jv_object_set(card, jv_string("trainingSeconds"), jv_number(secs));
    card = jv_object_set(card, jv_string("modelSha256"), jv_string(model_sha));
    card = jv_object_set(card, jv_string("createdBy"), jv_string(who()));
    card = jv_object_set(card, jv_string("conveyor"), jv_string(CV_VERSION));
    int64_t version = 0;
    if (reg_put(&o, s, o.name, "text", card, bytes, len, &version, &err)) {
        print_err("train", err);
        err = jv_invalid();
        goto out;
    }
    printf("stored as draft (%zu bytes)\n%s@%lld\n", len, o.name, (long long)version);
    rc = 0;
out:
    fflush(stdout);
    jv_free(err);
    jv_free(metrics);
    free(bytes);
    free(tr);
    free(te);
    cv_text_model_free(m);
    cv_dataset_cleanup(&d);
    cv_store_close(s);
    return rc;
}

/* eval and predict: a model and a data file. */
static int cmd_apply(const char *cmd, int argc, char **argv)
{
    int eval = !strcmp(cmd, "eval");
    struct opts o;
    int rc = parse(cmd, argc, argv, &o);
    if (rc)
        return rc;
    char name[256];
    int64_t version;
    if ((rc = parse_ref(cmd, o.ref, name, sizeof name, &version)))
        return rc;
    if (!o.data || (eval && !o.label))
        return usage_error(cmd, eval ? "--data FILE and --label FIELD are required%s" : "--data FILE is required%s",
                           NULL);
    cv_store *s = NULL;
    struct cv_text_model *m = NULL;
    struct cv_tab_model *tm = NULL;
    struct cv_dataset d;
    struct cv_text_scratch *sc = NULL;
    double *probs = NULL;
    jv card = jv_invalid(), err = jv_invalid();
    memset(&d, 0, sizeof d);
    rc = 1;
    if (open_registry(&o, &s) || load_model(&o, s, cmd, name, version, &m, &tm, &card))
        goto out;
    jv v = jv_object_get(jv_copy(card), jv_string("version"));
    char ref[300];
    snprintf(ref, sizeof ref, "%s@%lld", name, (long long)jv_number_value(v));
    jv_free(v);
    if (tm) {
        rc = apply_tabular(cmd, &o, tm, ref);
        goto out;
    }
    if (cv_dataset_read(o.data, o.text, eval ? o.label : NULL, &d, &err)) {
        print_err(cmd, err);
        err = jv_invalid();
        goto out;
    }
    if (eval) {
        jv r = evaluate(m, &d, NULL, d.n);
        if (!jv_is_valid(r)) {
            jv_free(r);
            fprintf(stderr, "conveyor model eval: out of memory\n");
            goto out;
        }
        if (o.json) {
            r = jv_object_set(r, jv_string("model"), jv_string(ref));
            jv_dumpf(r, stdout, 0);
            printf("\n");
        } else {
            printf("model %s on %s:\n", ref, o.data);
            print_metrics(r);
            jv_free(r);
        }
        rc = 0;
        goto out;
    }
    sc = cv_text_scratch_new();
    probs = malloc((size_t)cv_text_model_classes(m) * sizeof *probs);
    if (!sc || !probs) {
        fprintf(stderr, "conveyor model predict: out of memory\n");
        goto out;
    }
    for (int i = 0; i < d.n; i++) {
        if (cv_text_model_predict(m, d.texts[i], strlen(d.texts[i]), sc, probs) < 0) {
            fprintf(stderr, "conveyor model predict: out of memory\n");
            goto out;
        }
        jv p = cv_text_prediction_json(m, probs);
        p = jv_object_set(p, jv_string("model"), jv_string(ref));
        jv_dumpf(p, stdout, 0);
        putchar('\n');
    }
    rc = 0;
out:
    fflush(stdout);
    free(probs);
    cv_text_scratch_free(sc);
    jv_free(card);
    jv_free(err);
    cv_text_model_free(m);
    cv_tab_model_free(tm);
    cv_dataset_cleanup(&d);
    cv_store_close(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Stored extractors                                                         */
/* ------------------------------------------------------------------------ */

/* An extractor definition larger than this is refused (a definition is a
 * few fields; this only stops a wrong file from being read whole). */
#define MAX_DEFINITION_BYTES (1 << 20)

/* Reads `path` whole into *buf (malloc'd, caller frees; NUL-terminated) and
 * *len. Returns 0, or 1 after a message. */
static int read_definition(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "conveyor model upload: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *b = malloc(MAX_DEFINITION_BYTES + 1);
    size_t n = b ? fread(b, 1, MAX_DEFINITION_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!b || bad || n > MAX_DEFINITION_BYTES) {
        fprintf(stderr, "conveyor model upload: %s: %s\n", path,
                !b ? "out of memory" : bad ? "cannot be read" : "larger than 1 MiB: not an extractor definition");
        free(b);
        return 1;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

/* upload --kind extractor --file FILE --name NAME: the definition is
 * compiled first (extract.c: a located error and nothing stored when it does
 * not), then stored as written, as a new draft version, with a card naming
 * its fields and digest. */
static int cmd_upload(int argc, char **argv)
{
    struct opts o;
    int rc = parse("upload", argc, argv, &o);
    if (rc)
        return rc;
    if (o.ref)
        return usage_error("upload", "unexpected argument %s (the model is named with --name)", o.ref);
    if (!o.kind || strcmp(o.kind, "extractor"))
        return usage_error("upload",
                           "--kind extractor is required (text classifiers and tabular scorers are made by "
                           "train); got %s",
                           o.kind ? o.kind : "none");
    if (!o.file || !o.name)
        return usage_error("upload", "--file FILE and --name NAME are required%s", NULL);
    if (!name_ok(o.name))
        return usage_error("upload",
                           "bad --name %s (1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit)",
                           o.name);
    char *def = NULL;
    size_t len = 0;
    if (read_definition(o.file, &def, &len))
        return 1;
    jv card = jv_invalid(), err = jv_invalid();
    cv_store *s = NULL;
    rc = 1;
    if (cv__extractor_describe(def, len, o.file, &card, &err)) {
        jv d = jv_get_kind(err) == JV_KIND_OBJECT ? jv_object_get(jv_copy(err), jv_string("detail")) : jv_invalid();
        fprintf(stderr, "conveyor model upload: %s\n",
                jv_get_kind(d) == JV_KIND_STRING ? jv_string_value(d) : "the definition does not compile");
        jv_free(d);
        goto out;
    }
    card = jv_object_set(card, jv_string("file"), jv_string(o.file));
    card = jv_object_set(card, jv_string("createdBy"), jv_string(who()));
    card = jv_object_set(card, jv_string("conveyor"), jv_string(CV_VERSION));
    if (open_registry(&o, &s))
        goto out;
    int64_t version = 0;
    jv fields = jv_object_get(jv_copy(card), jv_string("fields"));
    int nfields = jv_array_length(fields);
    rc = reg_put(&o, s, o.name, "extractor", card, def, len, &version, &err);
    card = jv_invalid();
    if (rc) {
        print_err("upload", err);
        err = jv_invalid();
        rc = 1;
        goto out;
    }
    printf("stored as draft (%zu bytes, %d fields)\n%s@%lld\n", len, nfields, o.name, (long long)version);
    rc = 0;
out:
    fflush(stdout);
    jv_free(card);
    jv_free(err);
    free(def);
    cv_store_close(s);
    return rc;
}

static int cmd_list(int argc, char **argv)
{
    struct opts o;
    int rc = parse("list", argc, argv, &o);
    if (rc)
        return rc;
    if (o.ref)
        return usage_error("list", "unexpected argument %s", o.ref);
    cv_store *s = NULL;
    if (open_registry(&o, &s))
        return 1;
    jv list = jv_invalid(), err = jv_invalid();
    if (o.server ? cv__client_model_list(o.server, &list, &err) : cv_store_list_models(s, &list, &err)) {
        print_err("list", err);
        cv_store_close(s);
        return 1;
    }
    if (o.json) {
        jv_dumpf(list, stdout, 0);
        printf("\n");
    } else {
        printf("%-32s %-9s %-10s %-8s %-20s\n", "MODEL", "KIND", "STATUS", "ACCURACY", "CREATED");
        jv_array_foreach(list, i, c)
        {
            jv n = jv_object_get(jv_copy(c), jv_string("name")), k = jv_object_get(jv_copy(c), jv_string("kind"));
            jv st = jv_object_get(jv_copy(c), jv_string("status"));
            jv met = jv_object_get(jv_copy(c), jv_string("metrics"));
            char ref[300], acc[16] = "-", when[32] = "";
            snprintf(ref, sizeof ref, "%s@%lld", jv_string_value(n), (long long)num(c, "version"));
            if (jv_get_kind(met) == JV_KIND_OBJECT)
                snprintf(acc, sizeof acc, "%.4f", num(met, "accuracy"));
            time_t t = (time_t)(num(c, "createdAt") / 1000);
            struct tm tm;
            if (gmtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%-32s %-9s %-10s %-8s %-20s\n", ref, jv_string_value(k), jv_string_value(st), acc, when);
            jv_free(n);
            jv_free(k);
            jv_free(st);
            jv_free(met);
            jv_free(c);
        }
        jv_free(list);
    }
    cv_store_close(s);
    return 0;
}

static int cmd_get(int argc, char **argv)
{
    struct opts o;
    int rc = parse("get", argc, argv, &o);
    if (rc)
        return rc;
    char name[256];
    int64_t version;
    if ((rc = parse_ref("get", o.ref, name, sizeof name, &version)))
        return rc;
    cv_store *s = NULL;
    if (open_registry(&o, &s))
        return 1;
    jv card = jv_invalid(), err = jv_invalid();
    if (reg_get(&o, s, name, version, &card, NULL, NULL, &err)) {
        print_err("get", err);
        cv_store_close(s);
        return 1;
    }
    jv_dumpf(card, stdout, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
    printf("\n");
    cv_store_close(s);
    return 0;
}

/* approve, promote, retire: one status move of one explicit version. */
static int cmd_move(const char *cmd, int argc, char **argv)
{
    struct opts o;
    int rc = parse(cmd, argc, argv, &o);
    if (rc)
        return rc;
    char name[256];
    int64_t version;
    if ((rc = parse_ref(cmd, o.ref, name, sizeof name, &version)))
        return rc;
    if (!version)
        return usage_error(cmd, "name the version: %s@VERSION", o.ref);
    const char *to = !strcmp(cmd, "approve")   ? CV_MODEL_APPROVED
                     : !strcmp(cmd, "promote") ? CV_MODEL_PRODUCTION
                                               : CV_MODEL_RETIRED;
    cv_store *s = NULL;
    if (open_registry(&o, &s))
        return 1;
    jv err = jv_invalid();
    if (o.server ? cv__client_model_status(o.server, name, version, cmd, &err)
                 : cv_store_set_model_status(s, name, version, to, &err)) {
        print_err(cmd, err);
        cv_store_close(s);
        return 1;
    }
    printf("%s@%lld %s\n", name, (long long)version, to);
    cv_store_close(s);
    return 0;
}

/* Prints a name's routing ({canary, shadow}, borrowed) on one line:
 * "NAME: canary NAME@V (share X), shadow NAME@V" ("none" for either). */
static void print_routing(const char *name, jv r)
{
    jv c = jv_object_get(jv_copy(r), jv_string("canary")), sh = jv_object_get(jv_copy(r), jv_string("shadow"));
    printf("%s: canary ", name);
    if (jv_get_kind(c) == JV_KIND_OBJECT)
        printf("%s@%lld (share %g)", name, (long long)num(c, "version"), num(c, "share"));
    else
        printf("none");
    printf(", shadow ");
    if (jv_get_kind(sh) == JV_KIND_OBJECT)
        printf("%s@%lld\n", name, (long long)num(sh, "version"));
    else
        printf("none\n");
    jv_free(c);
    jv_free(sh);
}

/* canary NAME@VERSION --share X | NAME --clear; shadow NAME@VERSION | NAME --clear */
static int cmd_route(const char *cmd, int argc, char **argv)
{
    struct opts o;
    int rc = parse(cmd, argc, argv, &o);
    if (rc)
        return rc;
    char name[256];
    int64_t version;
    if ((rc = parse_ref(cmd, o.ref, name, sizeof name, &version)))
        return rc;
    int canary = !strcmp(cmd, "canary");
    if (o.clear && version)
        return usage_error(cmd, "--clear takes NAME, not a version (%s)", o.ref);
    if (!o.clear && !version)
        return usage_error(cmd, canary ? "name the version: %s@VERSION --share X (or NAME --clear)"
                                       : "name the version: %s@VERSION (or NAME --clear)",
                           o.ref);
    if (canary && !o.clear && !o.share_set)
        return usage_error(cmd, "--share X is required: the part of the instances (0 to 1) on %s", o.ref);
    if ((!canary || o.clear) && o.share_set)
        return usage_error(cmd, canary ? "--clear takes no --share%s" : "a shadow takes no --share: it sees every "
                                                                        "input%s",
                           NULL);
    cv_store *s = NULL;
    if (open_registry(&o, &s))
        return 1;
    jv out = jv_invalid(), err = jv_invalid();
    rc = o.server ? cv__client_model_route(o.server, name, cmd, o.clear ? 0 : version, o.share, &out, &err)
                  : cv_store_set_model_routing(s, name, cmd, o.clear ? 0 : version, o.share, &out, &err);
    if (rc) {
        print_err(cmd, err);
        cv_store_close(s);
        return 1;
    }
    jv_free(err);
    print_routing(name, out);
    jv_free(out);
    cv_store_close(s);
    return 0;
}

int cv__cli_model_main(int argc, char **argv)
{
    if (argc < 1) {
        fputs(usage_model, stderr);
        return 2;
    }
    const char *cmd = argv[0];
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_model, stdout);
            return 0;
        }
    if (!strcmp(cmd, "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval") || !strcmp(cmd, "predict"))
        return cmd_apply(cmd, argc - 1, argv + 1);
    if (!strcmp(cmd, "upload"))
        return cmd_upload(argc - 1, argv + 1);
    if (!strcmp(cmd, "list"))
        return cmd_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "get"))
        return cmd_get(argc - 1, argv + 1);
    if (!strcmp(cmd, "approve") || !strcmp(cmd, "promote") || !strcmp(cmd, "retire"))
        return cmd_move(cmd, argc - 1, argv + 1);
    if (!strcmp(cmd, "canary") || !strcmp(cmd, "shadow"))
        return cmd_route(cmd, argc - 1, argv + 1);
    fprintf(stderr, "conveyor model: unknown command '%s'\n%s", cmd, usage_model);
    return 2;
}
