/*
 * tabular.c — the tabular scorer's model (tabular.h): training an XGBoost
 * binary classifier through its C API, scoring with SHAP explanations, the
 * choice between XGBoost, the linear model (tablinear.c) and their blend,
 * the model file format, and the scorer's metrics.
 *
 * The blend averages the two models' margins. Both are log-odds and both
 * explanations are additive in log-odds (SHAP values; coef * (x - mean)),
 * so the mean of the two explanations (and of the two biases) sums to the
 * blended margin: the explanation stays exact without a third method.
 *
 * Categorical features are one-hot encoded (tabdata.c) rather than given to
 * XGBoost's native categorical support: in XGBoost 1.7 (Debian's) native
 * categories are still marked experimental, need the caller to map texts to
 * codes anyway, and their SHAP values go through a separate code path; with
 * one-hot columns the trees, the contributions and the file are plain, and
 * summing a feature's columns gives its exact SHAP value (SHAP is additive).
 * The data sets this scorer is for have few categories per feature
 * (CV_TAB_MAX_CATEGORIES caps them).
 *
 * XGBoost is used with one thread (nthread 1: conveyor's workers are the
 * parallelism, and one thread makes training deterministic for a seed) and
 * silenced (verbosity 0, and a log callback that drops everything). Every
 * call into a model's booster holds the model's lock: XGBoost keeps its
 * prediction buffers per booster and thread, and its prediction cache is not
 * documented as safe for concurrent DMatrix predictions.
 */
#include "ml/tabular_int.h"

#include "conveyor.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

static void set_err(jv *err, const char *fmt, ...) JV_PRINTF_LIKE(2, 3);
static void set_err(jv *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    jv_free(*err);
    *err = jv_string_vfmt(fmt, ap);
    va_end(ap);
}

/* XGBoost's last error as *err; CV_EINVAL. */
static int xgb_fail(jv *err, const char *what)
{
    const char *m = XGBGetLastError();
    set_err(err, "XGBoost %s failed: %s", what, m && *m ? m : "unknown error");
    return CV_EINVAL;
}

static void quiet(const char *msg)
{
    (void)msg;
}

static pthread_once_t silence_once = PTHREAD_ONCE_INIT;
static void silence_xgboost(void)
{
    XGBRegisterLogCallback(quiet);
    XGBSetGlobalConfig("{\"verbosity\": 0}");
}

/* ------------------------------------------------------------------------ */
/* Parameters and the model object                                           */
/* ------------------------------------------------------------------------ */

struct cv_tab_model {
    struct cv_tab_params p; /* p.algo: CV_TAB_ALGO_XGBOOST, _LINEAR or _BLEND */
    struct cv_tab_schema s;
    char *labels[2];
    double cv_auc[3];     /* what `auto` compares: xgboost, linear, blend (NaN: not measured) */
    /* auto's choice (bench/SELECTION.md), when it made one: the fold
     * differences' mean and standard error of the best single model against
     * the blend, and why (in memory for the card; not in the model file) */
    double sel_diff, sel_se;
    const char *sel_why;
    struct cv__tab_linear lin; /* the linear model (linear, blend) */
    int rounds;           /* rounds trained (trees) */
    BoosterHandle b;      /* the XGBoost model (xgboost, blend) */
    unsigned char *raw;   /* the booster as XGBoost serialised it (UBJSON), kept for save */
    size_t rawlen;
    pthread_mutex_t lock; /* held around every call into b */
};

void cv_tab_params_init(struct cv_tab_params *p)
{
    memset(p, 0, sizeof *p);
    p->algo = CV_TAB_ALGO_AUTO;
    p->C = 1;
    p->max_depth = 3;
    p->eta = 0.02;
    p->rounds = 1000;
    p->early_stopping = 50;
    p->folds = 5;
    p->subsample = 0.8;
    p->colsample = 0.8;
    p->min_child_weight = 1;
    p->lambda = 1;
    p->seed = 42;
}

static const char *algo_name(int algo)
{
    switch (algo) {
    case CV_TAB_ALGO_LINEAR:
        return "linear";
    case CV_TAB_ALGO_XGBOOST:
        return "xgboost";
    case CV_TAB_ALGO_BLEND:
        return "blend";
    default:
        return "auto";
    }
}

static int has_cv(const struct cv_tab_model *m)
{
    return !isnan(m->cv_auc[0]) || !isnan(m->cv_auc[1]) || !isnan(m->cv_auc[2]);
}

static jv cv_number(double v)
{
    return isnan(v) ? jv_null() : jv_number(v);
}

static jv linear_params_json(const struct cv_tab_params *p, jv o)
{
    o = jv_object_set(o, jv_string("solver"), jv_string("liblinear L2R_LR"));
    o = jv_object_set(o, jv_string("C"), jv_number(p->C));
    return jv_object_set(o, jv_string("numeric"), jv_string("standardised; missing = the training mean"));
}

static jv xgboost_params_json(const struct cv_tab_model *m, jv o)
{
    const struct cv_tab_params *p = &m->p;
    o = jv_object_set(o, jv_string("booster"), jv_string("xgboost gbtree"));
    int major = 0, minor = 0, patch = 0;
    XGBoostVersion(&major, &minor, &patch);
    o = jv_object_set(o, jv_string("xgboost"), jv_string_fmt("%d.%d.%d", major, minor, patch));
    o = jv_object_set(o, jv_string("objective"), jv_string("binary:logistic"));
    o = jv_object_set(o, jv_string("treeMethod"), jv_string("hist"));
    o = jv_object_set(o, jv_string("maxDepth"), jv_number(p->max_depth));
    o = jv_object_set(o, jv_string("eta"), jv_number(p->eta));
    o = jv_object_set(o, jv_string("maxRounds"), jv_number(p->rounds));
    o = jv_object_set(o, jv_string("earlyStopping"), jv_number(p->early_stopping));
    o = jv_object_set(o, jv_string("subsample"), jv_number(p->subsample));
    o = jv_object_set(o, jv_string("colsample"), jv_number(p->colsample));
    o = jv_object_set(o, jv_string("minChildWeight"), jv_number(p->min_child_weight));
    o = jv_object_set(o, jv_string("lambda"), jv_number(p->lambda));
    o = jv_object_set(o, jv_string("nthread"), jv_number(1));
    return jv_object_set(o, jv_string("rounds"), jv_number(m->rounds));
}

jv cv_tab_model_params_json(const struct cv_tab_model *m)
{
    const struct cv_tab_params *p = &m->p;
    jv o = jv_object();
    o = jv_object_set(o, jv_string("algo"), jv_string(algo_name(p->algo)));
    if (has_cv(m)) {
        /* what `auto` compared, on the training rows only */
        jv sel = jv_object();
        sel = jv_object_set(sel, jv_string("by"),
                            jv_string("mean left-out AUC of stratified cross-validation on the training rows"));
        sel = jv_object_set(sel, jv_string("xgboost"), cv_number(m->cv_auc[0]));
        sel = jv_object_set(sel, jv_string("linear"), cv_number(m->cv_auc[1]));
        sel = jv_object_set(sel, jv_string("blend"), cv_number(m->cv_auc[2]));
        o = jv_object_set(o, jv_string("cvAuc"), sel);
        if (m->sel_why) /* auto's rule (bench/SELECTION.md) */
            o = jv_object_set(o, jv_string("autoChoice"),
                              JV_OBJECT(jv_string("rule"),
                                        jv_string("the blend unless the best single model beats it by more than one "
                                                  "standard error of the per-fold AUC differences"),
                                        jv_string("bestSingleMinusBlend"), cv_number(m->sel_diff),
                                        jv_string("standardError"), cv_number(m->sel_se), jv_string("why"),
                                        jv_string(m->sel_why)));
    }
    /* folds asked for (fewer are used when a label has fewer rows); 0: no cross-validation ran */
    o = jv_object_set(o, jv_string("cvFolds"), jv_number(has_cv(m) ? p->folds : 0));
    o = jv_object_set(o, jv_string("seed"), jv_number((double)p->seed));
    o = jv_object_set(o, jv_string("categorical"), jv_string("one-hot"));
    if (p->algo == CV_TAB_ALGO_LINEAR) {
        o = jv_object_set(o, jv_string("model"), jv_string("logistic regression, L2"));
        o = linear_params_json(p, o);
        return jv_object_set(o, jv_string("explanation"), jv_string("coef * (x - training mean), log-odds"));
    }
    if (p->algo == CV_TAB_ALGO_BLEND) {
        o = jv_object_set(o, jv_string("model"),
                          jv_string("mean of the log-odds of xgboost gbtree and logistic regression, L2"));
        o = linear_params_json(p, o);
        o = xgboost_params_json(m, o);
        return jv_object_set(o, jv_string("explanation"),
                             jv_string("mean of the SHAP values and of coef * (x - training mean), log-odds"));
    }
    return xgboost_params_json(m, o);
}

static int params_check(const struct cv_tab_params *p, jv *err)
{
    if (p->algo != CV_TAB_ALGO_AUTO && p->algo != CV_TAB_ALGO_XGBOOST && p->algo != CV_TAB_ALGO_LINEAR &&
        p->algo != CV_TAB_ALGO_BLEND) {
        set_err(err, "unknown algorithm %d", p->algo);
        return CV_EINVAL;
    }
    if (!(p->C > 0) || !isfinite(p->C) || p->C > 1e12) {
        set_err(err, "C must be a positive number");
        return CV_EINVAL;
    }
    if (p->max_depth < 1 || p->max_depth > 16) {
        set_err(err, "depth must be 1 to 16 (got %d)", p->max_depth);
        return CV_EINVAL;
    }
    if (!(p->eta > 0 && p->eta <= 1)) {
        set_err(err, "eta must be in (0, 1]");
        return CV_EINVAL;
    }
    if (p->rounds < 1 || p->rounds > 100000) {
        set_err(err, "rounds must be 1 to 100000 (got %d)", p->rounds);
        return CV_EINVAL;
    }
    if (p->early_stopping < 0 || p->early_stopping > 100000 || (p->early_stopping && (p->folds < 2 || p->folds > 20))) {
        set_err(err, "early stopping needs a number of rounds >= 0 and 2 to 20 cross-validation folds");
        return CV_EINVAL;
    }
    if (!(p->subsample > 0 && p->subsample <= 1) || !(p->colsample > 0 && p->colsample <= 1)) {
        set_err(err, "subsample and colsample must be in (0, 1]");
        return CV_EINVAL;
    }
    if (!(p->min_child_weight >= 0) || !(p->lambda >= 0) || !isfinite(p->min_child_weight) || !isfinite(p->lambda)) {
        set_err(err, "min child weight and lambda must be >= 0");
        return CV_EINVAL;
    }
    return 0;
}

static int schema_copy(struct cv_tab_schema *dst, const struct cv_tab_schema *src)
{
    memset(dst, 0, sizeof *dst);
    dst->f = calloc((size_t)src->n + 1, sizeof *dst->f);
    if (!dst->f)
        return CV_ENOMEM;
    for (int i = 0; i < src->n; i++) {
        const struct cv_tab_feature *a = &src->f[i];
        struct cv_tab_feature *b = &dst->f[i];
        dst->n = i + 1;
        *b = (struct cv_tab_feature){.type = a->type, .col = a->col};
        b->name = strdup(a->name);
        b->cats = calloc((size_t)a->ncats + 1, sizeof *b->cats);
        if (!b->name || !b->cats)
            return CV_ENOMEM;
        for (int c = 0; c < a->ncats; c++) {
            b->cats[c] = strdup(a->cats[c]);
            if (!b->cats[c])
                return CV_ENOMEM;
            b->ncats = c + 1;
        }
    }
    dst->ncols = src->ncols;
    return 0;
}

static struct cv_tab_model *model_new(const struct cv_tab_params *p, const struct cv_tab_schema *s,
                                      const char *const names[2])
{
    struct cv_tab_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->p = *p;
    m->cv_auc[0] = m->cv_auc[1] = m->cv_auc[2] = NAN;
    m->labels[0] = strdup(names[0]);
    m->labels[1] = strdup(names[1]);
    if (!m->labels[0] || !m->labels[1] || schema_copy(&m->s, s)) {
        cv_tab_model_free(m);
        return NULL;
    }
    return m;
}

void cv_tab_model_free(struct cv_tab_model *m)
{
    if (!m)
        return;
    if (m->b)
        XGBoosterFree(m->b);
    cv_tab_schema_cleanup(&m->s);
    cv__tab_linear_cleanup(&m->lin);
    free(m->labels[0]);
    free(m->labels[1]);
    free(m->raw);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

const struct cv_tab_schema *cv_tab_model_schema(const struct cv_tab_model *m)
{
    return &m->s;
}

const char *cv_tab_model_label(const struct cv_tab_model *m, int k)
{
    return k == 0 || k == 1 ? m->labels[k] : NULL;
}

const struct cv_tab_params *cv_tab_model_params(const struct cv_tab_model *m)
{
    return &m->p;
}

int cv_tab_model_rounds(const struct cv_tab_model *m)
{
    return m->rounds;
}

int cv_tab_model_algo(const struct cv_tab_model *m)
{
    return m->p.algo;
}

void cv_tab_model_cv_auc(const struct cv_tab_model *m, double auc[3])
{
    auc[0] = m->cv_auc[0];
    auc[1] = m->cv_auc[1];
    auc[2] = m->cv_auc[2];
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

/* A DMatrix of rows[0..n) of x (all n when rows is NULL) with labels. */
static int make_dmatrix(const float *x, const int *y, const int *rows, int n, int ncols, DMatrixHandle *out, jv *err)
{
    *out = NULL;
    float *buf = NULL, *lab = malloc(((size_t)n + 1) * sizeof *lab);
    const float *data = x;
    if (!lab)
        return CV_ENOMEM;
    if (rows) {
        buf = malloc(((size_t)n * (size_t)ncols + 1) * sizeof *buf);
        if (!buf) {
            free(lab);
            return CV_ENOMEM;
        }
        for (int i = 0; i < n; i++)
            memcpy(buf + (size_t)i * ncols, x + (size_t)rows[i] * ncols, (size_t)ncols * sizeof *buf);
        data = buf;
    }
    for (int i = 0; i < n && y; i++)
        lab[i] = (float)y[rows ? rows[i] : i];
    int code = 0;
    if (XGDMatrixCreateFromMat(data, (bst_ulong)n, (bst_ulong)ncols, NAN, out))
        code = xgb_fail(err, "creating a matrix");
    else if (y && XGDMatrixSetFloatInfo(*out, "label", lab, (bst_ulong)n))
        code = xgb_fail(err, "setting labels");
    free(buf);
    free(lab);
    if (code && *out) {
        XGDMatrixFree(*out);
        *out = NULL;
    }
    return code;
}

static int set_params(BoosterHandle b, const struct cv_tab_params *p, jv *err)
{
    char v[9][64];
    snprintf(v[0], sizeof v[0], "%d", p->max_depth);
    snprintf(v[1], sizeof v[1], "%.17g", p->eta);
    snprintf(v[2], sizeof v[2], "%.17g", p->subsample);
    snprintf(v[3], sizeof v[3], "%.17g", p->colsample);
    snprintf(v[4], sizeof v[4], "%.17g", p->min_child_weight);
    snprintf(v[5], sizeof v[5], "%.17g", p->lambda);
    /* XGBoost's seed is an int parameter */
    snprintf(v[6], sizeof v[6], "%d", (int)(p->seed & 0x7fffffff));
    const char *kv[][2] = {
        {"verbosity", "0"},        {"nthread", "1"},          {"objective", "binary:logistic"},
        {"booster", "gbtree"},     {"tree_method", "hist"},   {"eval_metric", "logloss"},
        {"max_depth", v[0]},       {"eta", v[1]},             {"subsample", v[2]},
        {"colsample_bytree", v[3]}, {"min_child_weight", v[4]}, {"lambda", v[5]},
        {"seed", v[6]},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (XGBoosterSetParam(b, kv[i][0], kv[i][1]))
            return xgb_fail(err, "setting a parameter");
    return 0;
}

/* Trains `rounds` rounds on dtrain into *out. */
static int boost(const struct cv_tab_params *p, DMatrixHandle dtrain, int rounds, cv_ml_progress_fn progress,
                 void *ud, BoosterHandle *out, jv *err)
{
    BoosterHandle b = NULL;
    if (XGBoosterCreate(&dtrain, 1, &b))
        return xgb_fail(err, "creating a booster");
    int code = set_params(b, p, err);
    for (int i = 0; i < rounds && !code; i++) {
        if (XGBoosterUpdateOneIter(b, i, dtrain))
            code = xgb_fail(err, "training");
        else if (progress && (i % 10 == 0 || i == rounds - 1))
            progress(ud, "rounds", (size_t)i + 1, (size_t)rounds);
    }
    if (code) {
        XGBoosterFree(b);
        return code;
    }
    *out = b;
    return 0;
}

/*
 * Cross-validates XGBoost on the folds fold[0..n) (k of them, from
 * cv__tab_folds; what xgboost.cv does): k boosters, one per fold left out,
 * are trained in lockstep, and after each round the mean of their
 * log-losses on their left-out folds is taken. With early stopping, *rounds
 * is the round count with the lowest mean, boosting stopping after
 * p->early_stopping rounds without a new lowest or at p->rounds; without,
 * *rounds = p->rounds. *auc is the mean over the folds of the left-out AUC
 * of the boosters cut at *rounds (what `auto` compares). oof (n doubles, may
 * be NULL) gets each row's left-out margin (log-odds) at *rounds, which the
 * blend's cross-validation uses.
 */
static int cross_validate_xgb(const struct cv_tab_params *p, const struct cv_tab_schema *s, const float *x,
                              const int *y, int n, int k, const int *fold, cv_ml_progress_fn progress, void *ud,
                              int *rounds, double *auc, double *oof, jv *err)
{
    *rounds = p->rounds;
    *auc = NAN;
    int *rows = malloc(((size_t)n + 1) * sizeof *rows), *truth = malloc(((size_t)n + 1) * sizeof *truth);
    double *pred = malloc(((size_t)n + 1) * sizeof *pred);
    DMatrixHandle *dtr = calloc((size_t)k, sizeof *dtr), *dval = calloc((size_t)k, sizeof *dval);
    BoosterHandle *b = calloc((size_t)k, sizeof *b);
    int code = 0;
    if (!rows || !truth || !pred || !dtr || !dval || !b) {
        code = CV_ENOMEM;
        goto out;
    }
    for (int f = 0; f < k && !code; f++) {
        int ntr = 0, nval = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] != f)
                rows[ntr++] = i;
        code = make_dmatrix(x, y, rows, ntr, s->ncols, &dtr[f], err);
        for (int i = 0; i < n; i++)
            if (fold[i] == f)
                rows[nval++] = i;
        if (!code)
            code = make_dmatrix(x, y, rows, nval, s->ncols, &dval[f], err);
        DMatrixHandle cache[2] = {dtr[f], dval[f]};
        if (!code && XGBoosterCreate(cache, 2, &b[f]))
            code = xgb_fail(err, "creating a booster");
        if (!code)
            code = set_params(b[f], p, err);
    }
    double best_loss = INFINITY;
    int best = p->rounds;
    for (int i = 0; i < p->rounds && !code; i++) {
        double sum = 0;
        for (int f = 0; f < k && !code; f++) {
            const char *names[1] = {"val"}, *res = NULL;
            if (XGBoosterUpdateOneIter(b[f], i, dtr[f]))
                code = xgb_fail(err, "training");
            else if (p->early_stopping && XGBoosterEvalOneIter(b[f], i, &dval[f], names, 1, &res))
                code = xgb_fail(err, "evaluating");
            const char *at = res ? strstr(res, "val-logloss:") : NULL;
            sum += at ? strtod(at + 12, NULL) : NAN;
        }
        if (progress && (i % 10 == 0))
            progress(ud, "early-stopping", (size_t)i + 1, (size_t)p->rounds);
        if (!p->early_stopping)
            continue;
        if (sum / k < best_loss) {
            best_loss = sum / k;
            best = i + 1;
        } else if (i + 1 - best >= p->early_stopping) {
            break;
        }
    }
    /* the left-out AUC of each fold's booster cut at the chosen round (from
     * the probabilities, as before the blend existed), and the margins */
    char config[160], mconfig[160];
    snprintf(config, sizeof config,
             "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": %d, "
             "\"strict_shape\": false}",
             best);
    snprintf(mconfig, sizeof mconfig,
             "{\"type\": 1, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": %d, "
             "\"strict_shape\": false}",
             best);
    double auc_sum = 0;
    for (int f = 0; f < k && !code; f++) {
        int nval = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] == f)
                truth[nval++] = y[i];
        const bst_ulong *shape = NULL;
        bst_ulong dim = 0;
        const float *res = NULL;
        if (XGBoosterPredictFromDMatrix(b[f], dval[f], config, &shape, &dim, &res)) {
            code = xgb_fail(err, "predicting");
            break;
        }
        for (int i = 0; i < nval; i++)
            pred[i] = (double)res[i];
        auc_sum += cv__tab_auc(truth, pred, nval);
        if (!oof)
            continue;
        if (XGBoosterPredictFromDMatrix(b[f], dval[f], mconfig, &shape, &dim, &res)) {
            code = xgb_fail(err, "predicting");
            break;
        }
        for (int i = 0, j = 0; i < n; i++)
            if (fold[i] == f)
                oof[i] = (double)res[j++];
    }
    if (!code) {
        *rounds = best;
        *auc = auc_sum / k;
        if (progress)
            progress(ud, "early-stopping", (size_t)best, (size_t)best); /* the choice */
    }
out:
    for (int f = 0; b && f < k; f++)
        if (b[f])
            XGBoosterFree(b[f]);
    for (int f = 0; dtr && f < k; f++)
        if (dtr[f])
            XGDMatrixFree(dtr[f]);
    for (int f = 0; dval && f < k; f++)
        if (dval[f])
            XGDMatrixFree(dval[f]);
    free(b);
    free(dtr);
    free(dval);
    free(rows);
    free(truth);
    free(pred);
    return code;
}

/* The mean left-out AUC of the linear model over the folds (as above);
 * oof (may be NULL) gets each row's left-out margin. */
static int cross_validate_linear(const struct cv_tab_params *p, const struct cv_tab_schema *s, const float *x,
                                 const int *y, int n, int k, const int *fold, cv_ml_progress_fn progress, void *ud,
                                 double *auc, double *oof, jv *err)
{
    *auc = NAN;
    int *rows = malloc(((size_t)n + 1) * sizeof *rows), *truth = malloc(((size_t)n + 1) * sizeof *truth);
    double *pred = malloc(((size_t)n + 1) * sizeof *pred);
    int code = rows && truth && pred ? 0 : CV_ENOMEM;
    double sum = 0;
    for (int f = 0; f < k && !code; f++) {
        int ntr = 0, nval = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] != f)
                rows[ntr++] = i;
        struct cv__tab_linear l;
        code = cv__tab_linear_fit(s, x, y, rows, ntr, p->C, &l, err);
        for (int i = 0; i < n && !code; i++)
            if (fold[i] == f) {
                truth[nval] = y[i];
                pred[nval++] = cv__tab_linear_margin(&l, s, x + (size_t)i * s->ncols, NULL);
                if (oof)
                    oof[i] = pred[nval - 1];
            }
        cv__tab_linear_cleanup(&l);
        if (!code)
            sum += cv__tab_auc(truth, pred, nval);
        if (progress)
            progress(ud, "linear", (size_t)f + 1, (size_t)k);
    }
    if (!code)
        *auc = sum / k;
    free(rows);
    free(truth);
    free(pred);
    return code;
}

/* The blended margin of an XGBoost margin and a linear one: training's
 * cross-validation and prediction use this one expression. */
static double blend_margin(double xgb, double lin)
{
    return 0.5 * (xgb + lin);
}

/* The blend's mean left-out AUC over the folds, from the two models'
 * left-out margins: each fold's models are the ones trained without it, so
 * their blend is the blend trained without it (no extra fit). NaN on
 * out-of-memory. */
static double cross_validate_blend(const int *y, int n, int k, const int *fold, const double *oof_xgb,
                                   const double *oof_lin)
{
    int *truth = malloc(((size_t)n + 1) * sizeof *truth);
    double *pred = malloc(((size_t)n + 1) * sizeof *pred), sum = 0;
    if (!truth || !pred) {
        free(truth);
        free(pred);
        return NAN;
    }
    for (int f = 0; f < k; f++) {
        int nval = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] == f) {
                truth[nval] = y[i];
                pred[nval++] = blend_margin(oof_xgb[i], oof_lin[i]);
            }
        sum += cv__tab_auc(truth, pred, nval);
    }
    free(truth);
    free(pred);
    return sum / k;
}

/*
 * auto's rule (bench/SELECTION.md, written before it ran): the best single
 * model S (XGBoost or linear by mean left-out AUC, a tie to linear) against
 * the blend on the same folds: d_f = AUC_f(S) - AUC_f(blend); the blend
 * unless mean(d) > sd(d) / sqrt(k), then S. The folds' AUCs come from the
 * left-out margins (oof: XGBoost's n, the linear model's n), as the blend's
 * cross-validation does.
 */
static int auto_choice(struct cv_tab_model *m, const int *y, int n, int k, const int *fold, const double *oof,
                       int *algo)
{
    const double *a = m->cv_auc;
    int single = a[1] >= a[0] || isnan(a[0]) ? CV_TAB_ALGO_LINEAR : CV_TAB_ALGO_XGBOOST;
    const double *s_oof = single == CV_TAB_ALGO_LINEAR ? oof + n : oof;
    int *truth = malloc(((size_t)n + 1) * sizeof *truth);
    double *ps = malloc(((size_t)n + 1) * sizeof *ps), *pb = malloc(((size_t)n + 1) * sizeof *pb);
    /* k is not capped here: the library checks the folds only with early stopping */
    double *d = malloc(((size_t)k + 1) * sizeof *d), sum = 0;
    if (!truth || !ps || !pb || !d) {
        free(truth);
        free(ps);
        free(pb);
        free(d);
        return CV_ENOMEM;
    }
    for (int f = 0; f < k; f++) {
        int nval = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] == f) {
                truth[nval] = y[i];
                ps[nval] = s_oof[i];
                pb[nval++] = blend_margin(oof[i], oof[n + i]);
            }
        d[f] = cv__tab_auc(truth, ps, nval) - cv__tab_auc(truth, pb, nval);
        sum += d[f];
    }
    free(truth);
    free(ps);
    free(pb);
    double mean = sum / k, ss = 0;
    for (int f = 0; f < k; f++)
        ss += (d[f] - mean) * (d[f] - mean);
    double se = k > 1 ? sqrt(ss / (k - 1)) / sqrt((double)k) : 0;
    free(d);
    m->sel_diff = mean;
    m->sel_se = se;
    if (mean > se) {
        *algo = single;
        m->sel_why = single == CV_TAB_ALGO_LINEAR ? "linear beats the blend by more than one standard error"
                                                  : "xgboost beats the blend by more than one standard error";
    } else {
        *algo = CV_TAB_ALGO_BLEND;
        m->sel_why = "no single model beats the blend by more than one standard error";
    }
    return 0;
}

/* Trains the XGBoost model of m on all n rows with `rounds` rounds. */
static int train_xgboost(struct cv_tab_model *m, const float *x, const int *y, int n, int rounds,
                         cv_ml_progress_fn progress, void *ud, jv *err)
{
    DMatrixHandle dall = NULL;
    BoosterHandle b = NULL;
    int code = make_dmatrix(x, y, NULL, n, m->s.ncols, &dall, err);
    if (!code)
        code = boost(&m->p, dall, rounds, progress, ud, &b, err);
    bst_ulong len = 0;
    const char *raw = NULL;
    if (!code && XGBoosterSaveModelToBuffer(b, "{\"format\": \"ubj\"}", &len, &raw))
        code = xgb_fail(err, "saving the model");
    if (!code && !(m->raw = malloc((size_t)len + 1)))
        code = CV_ENOMEM;
    if (!code) {
        memcpy(m->raw, raw, (size_t)len);
        m->rawlen = (size_t)len;
        /* Predict with the booster loaded from those bytes, exactly as a
         * model loaded from a file does: the trained booster's in-memory
         * state (its caches, its training configuration) cannot then make a
         * difference. */
        XGBoosterFree(b);
        b = NULL;
        if (XGBoosterCreate(NULL, 0, &m->b) || XGBoosterLoadModelFromBuffer(m->b, m->raw, (bst_ulong)m->rawlen) ||
            XGBoosterSetParam(m->b, "nthread", "1") || XGBoosterSetParam(m->b, "verbosity", "0"))
            code = xgb_fail(err, "loading the trained model");
    }
    if (!code)
        m->rounds = rounds;
    if (b)
        XGBoosterFree(b);
    if (dall)
        XGDMatrixFree(dall);
    return code;
}

int cv_tab_model_train(const struct cv_tab_params *p, const struct cv_tab_schema *s, const char *const names[2],
                       const float *x, const int *y, int n, cv_ml_progress_fn progress, void *ud,
                       struct cv_tab_model **out, jv *err)
{
    *out = NULL;
    pthread_once(&silence_once, silence_xgboost);
    int code = params_check(p, err);
    if (code)
        return code;
    int count[2] = {0, 0};
    for (int i = 0; i < n; i++)
        count[y[i] == 1]++;
    if (n < 2 || count[1] == 0 || count[0] == 0) {
        set_err(err, n < 1 ? "no rows to train on" : "training needs rows of both labels");
        return CV_EINVAL;
    }
    struct cv_tab_model *m = model_new(p, s, names);
    int *fold = NULL, rounds = p->rounds, algo = p->algo;
    double *oof = NULL; /* left-out margins: XGBoost's n, then the linear model's n */
    if (!m) {
        code = CV_ENOMEM;
        goto out;
    }
    /* folds: as many as asked, at most the rows of the smaller class */
    int k = p->folds;
    if (count[0] < k)
        k = count[0];
    if (count[1] < k)
        k = count[1];
    int all3 = algo == CV_TAB_ALGO_AUTO || algo == CV_TAB_ALGO_BLEND;
    int need_folds = all3 || (algo == CV_TAB_ALGO_XGBOOST && p->early_stopping);
    if (need_folds && k >= 2) {
        if (!(fold = malloc(((size_t)n + 1) * sizeof *fold)) || cv__tab_folds(y, n, k, p->seed, fold) ||
            (all3 && !(oof = malloc((2 * (size_t)n + 1) * sizeof *oof)))) {
            code = CV_ENOMEM;
            goto out;
        }
        if (algo != CV_TAB_ALGO_LINEAR &&
            (code = cross_validate_xgb(p, s, x, y, n, k, fold, progress, ud, &rounds, &m->cv_auc[0], oof, err)))
            goto out;
        if (all3 &&
            (code = cross_validate_linear(p, s, x, y, n, k, fold, progress, ud, &m->cv_auc[1], oof + n, err)))
            goto out;
        if (all3 && isnan(m->cv_auc[2] = cross_validate_blend(y, n, k, fold, oof, oof + n))) {
            code = CV_ENOMEM;
            goto out;
        }
        if (algo == CV_TAB_ALGO_AUTO && (code = auto_choice(m, y, n, k, fold, oof, &algo)))
            goto out;
        if (algo != CV_TAB_ALGO_LINEAR && !p->early_stopping)
            rounds = p->rounds;
    }
    if (algo == CV_TAB_ALGO_AUTO)
        algo = CV_TAB_ALGO_XGBOOST; /* too few rows of a class to compare */
    m->p.algo = algo;
    if (algo != CV_TAB_ALGO_XGBOOST && (code = cv__tab_linear_fit(&m->s, x, y, NULL, n, p->C, &m->lin, err)))
        goto out;
    if (algo != CV_TAB_ALGO_LINEAR && (code = train_xgboost(m, x, y, n, rounds, progress, ud, err)))
        goto out;
    *out = m;
    m = NULL;
out:
    free(fold);
    free(oof);
    cv_tab_model_free(m);
    if (code == CV_ENOMEM)
        set_err(err, "out of memory");
    return code;
}

/* ------------------------------------------------------------------------ */
/* Prediction                                                                */
/* ------------------------------------------------------------------------ */

static const char *const PREDICT_VALUE = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
                                         "\"iteration_end\": 0, \"strict_shape\": false}";
static const char *const PREDICT_MARGIN = "{\"type\": 1, \"training\": false, \"iteration_begin\": 0, "
                                          "\"iteration_end\": 0, \"strict_shape\": false}";
static const char *const PREDICT_CONTRIB = "{\"type\": 2, \"training\": false, \"iteration_begin\": 0, "
                                           "\"iteration_end\": 0, \"strict_shape\": false}";

/* One prediction call; copies `want` floats out of XGBoost's buffer as
 * doubles into dst. Lock held by the caller. */
static int predict_into(struct cv_tab_model *m, DMatrixHandle dm, const char *config, size_t want, double *dst,
                        jv *err)
{
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *res = NULL;
    if (XGBoosterPredictFromDMatrix(m->b, dm, config, &shape, &dim, &res))
        return xgb_fail(err, "predicting");
    size_t got = 1;
    for (bst_ulong i = 0; i < dim; i++)
        got *= (size_t)shape[i];
    if (got != want) {
        set_err(err, "XGBoost returned %zu values where %zu were expected", got, want);
        return CV_EINVAL;
    }
    for (size_t i = 0; i < want; i++)
        dst[i] = (double)res[i];
    return 0;
}

/* The XGBoost part of cv_tab_model_predict: score, margin and contribs may
 * each be NULL. */
static int predict_xgb(struct cv_tab_model *m, const float *x, int n, double *score, double *margin,
                       double *contribs, jv *err)
{
    const struct cv_tab_schema *s = &m->s;
    size_t width = (size_t)s->ncols + 1;
    double *raw = contribs ? malloc((size_t)n * width * sizeof *raw) : NULL;
    if (contribs && !raw)
        return CV_ENOMEM;
    DMatrixHandle dm = NULL;
    int code = 0;
    pthread_mutex_lock(&m->lock);
    if (XGDMatrixCreateFromMat(x, (bst_ulong)n, (bst_ulong)s->ncols, NAN, &dm))
        code = xgb_fail(err, "creating a matrix");
    if (!code && score)
        code = predict_into(m, dm, PREDICT_VALUE, (size_t)n, score, err);
    if (!code && margin)
        code = predict_into(m, dm, PREDICT_MARGIN, (size_t)n, margin, err);
    if (!code && contribs)
        code = predict_into(m, dm, PREDICT_CONTRIB, (size_t)n * width, raw, err);
    if (dm)
        XGDMatrixFree(dm);
    pthread_mutex_unlock(&m->lock);
    if (!code && contribs) {
        /* one-hot columns back to their feature; the bias last */
        size_t fw = (size_t)s->n + 1;
        for (int i = 0; i < n; i++) {
            const double *r = raw + (size_t)i * width;
            double *c = contribs + (size_t)i * fw;
            for (int j = 0; j < s->n; j++) {
                const struct cv_tab_feature *f = &s->f[j];
                int w = f->type == CV_TAB_NUMERIC ? 1 : f->ncats;
                double sum = 0;
                for (int k = 0; k < w; k++)
                    sum += r[f->col + k];
                c[j] = sum;
            }
            c[s->n] = r[s->ncols];
        }
    }
    free(raw);
    return code;
}

/* The blend: XGBoost's margins and contributions (under the lock), then the
 * linear model's row by row, averaged with blend_margin. */
static int predict_blend(struct cv_tab_model *m, const float *x, int n, double *score, double *margin,
                         double *contribs, jv *err)
{
    const struct cv_tab_schema *s = &m->s;
    size_t fw = (size_t)s->n + 1;
    double *mx = malloc(((size_t)n + 1) * sizeof *mx);
    double *cx = contribs ? malloc((size_t)n * fw * sizeof *cx) : NULL;
    double *cl = contribs ? malloc(fw * sizeof *cl) : NULL;
    int code = mx && (!contribs || (cx && cl)) ? 0 : CV_ENOMEM;
    if (!code)
        code = predict_xgb(m, x, n, NULL, mx, cx, err);
    for (int i = 0; i < n && !code; i++) {
        double ml = cv__tab_linear_margin(&m->lin, s, x + (size_t)i * s->ncols, cl);
        double mg = blend_margin(mx[i], ml);
        score[i] = 1.0 / (1.0 + exp(-mg));
        if (margin)
            margin[i] = mg;
        for (size_t j = 0; contribs && j < fw; j++)
            contribs[(size_t)i * fw + j] = blend_margin(cx[(size_t)i * fw + j], cl[j]);
    }
    free(mx);
    free(cx);
    free(cl);
    return code;
}

int cv_tab_model_predict(struct cv_tab_model *m, const float *x, int n, double *score, double *margin,
                         double *contribs, jv *err)
{
    if (n <= 0)
        return 0;
    const struct cv_tab_schema *s = &m->s;
    if (m->p.algo == CV_TAB_ALGO_BLEND)
        return predict_blend(m, x, n, score, margin, contribs, err);
    if (m->p.algo != CV_TAB_ALGO_LINEAR)
        return predict_xgb(m, x, n, score, margin, contribs, err);
    /* linear: read-only, no lock */
    for (int i = 0; i < n; i++) {
        double mg = cv__tab_linear_margin(&m->lin, s, x + (size_t)i * s->ncols,
                                          contribs ? contribs + (size_t)i * ((size_t)s->n + 1) : NULL);
        score[i] = 1.0 / (1.0 + exp(-mg));
        if (margin)
            margin[i] = mg;
    }
    return 0;
}

struct contrib {
    int feature;
    double value;
};

static int by_magnitude(const void *a, const void *b)
{
    const struct contrib *x = a, *y = b;
    double ax = fabs(x->value), ay = fabs(y->value);
    if (ax != ay)
        return ax < ay ? 1 : -1;
    return (x->feature > y->feature) - (x->feature < y->feature);
}

jv cv_tab_prediction_json(const struct cv_tab_model *m, jv row, double score, const double *contribs, int top)
{
    const struct cv_tab_schema *s = &m->s;
    jv o = jv_object();
    o = jv_object_set(o, jv_string("score"), jv_number(score));
    o = jv_object_set(o, jv_string("label"), jv_string(m->labels[score >= 0.5 ? 1 : 0]));
    struct contrib *c = malloc(((size_t)s->n + 1) * sizeof *c);
    if (!c) {
        jv_free(o);
        return jv_invalid_with_msg(jv_string("out of memory"));
    }
    for (int j = 0; j < s->n; j++)
        c[j] = (struct contrib){.feature = j, .value = contribs[j]};
    qsort(c, (size_t)s->n, sizeof *c, by_magnitude);
    int k = top > 0 && top < s->n ? top : s->n;
    jv ex = jv_array();
    for (int i = 0; i < k; i++) {
        const char *name = s->f[c[i].feature].name;
        jv v = jv_object_get(jv_copy(row), jv_string(name));
        if (s->f[c[i].feature].type == CV_TAB_NUMERIC && jv_get_kind(v) == JV_KIND_STRING) {
            /* a CSV text that encoding read as a number: quote the number */
            char *end = NULL;
            double d = strtod(jv_string_value(v), &end);
            if (end != jv_string_value(v) && isfinite(d)) {
                jv_free(v);
                v = jv_number(d);
            }
        }
        jv e = jv_object_set(jv_object(), jv_string("feature"), jv_string(name));
        e = jv_object_set(e, jv_string("value"), jv_is_valid(v) ? v : jv_null());
        e = jv_object_set(e, jv_string("contribution"), jv_number(c[i].value));
        ex = jv_array_append(ex, e);
    }
    free(c);
    o = jv_object_set(o, jv_string("explanation"), ex);
    return jv_object_set(o, jv_string("bias"), jv_number(contribs[s->n]));
}

int cv_tab_model_score(struct cv_tab_model *m, jv features, int top, jv *out, int *unknown, jv *err)
{
    *out = jv_invalid();
    const struct cv_tab_schema *s = &m->s;
    float *x = malloc(((size_t)s->ncols + 1) * sizeof *x);
    double *contribs = malloc(((size_t)s->n + 1) * sizeof *contribs);
    double score = 0;
    int code = x && contribs ? 0 : CV_ENOMEM;
    if (!code)
        code = cv_tab_encode(s, features, 0, x, unknown, err);
    if (!code)
        code = cv_tab_model_predict(m, x, 1, &score, NULL, contribs, err);
    if (!code) {
        *out = cv_tab_prediction_json(m, features, score, contribs, top);
        if (!jv_is_valid(*out))
            code = CV_ENOMEM;
    }
    if (code == CV_ENOMEM)
        set_err(err, "out of memory");
    jv_free(features);
    free(x);
    free(contribs);
    return code;
}

/* ------------------------------------------------------------------------ */
/* The file format (docs/models.md, "Tabular file format"): little-endian    */
/* ------------------------------------------------------------------------ */

struct wbuf {
    unsigned char *b;
    size_t len, cap;
    int oom;
};

static void put(struct wbuf *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t nc = w->cap ? w->cap : 4096;
        while (nc < w->len + n)
            nc *= 2;
        unsigned char *nb = realloc(w->b, nc);
        if (!nb) {
            w->oom = 1;
            return;
        }
        w->b = nb;
        w->cap = nc;
    }
    memcpy(w->b + w->len, p, n);
    w->len += n;
}

static void put_u32(struct wbuf *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(w, b, 4);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_f64(struct wbuf *w, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    put_u64(w, u);
}

static void put_str(struct wbuf *w, const char *s)
{
    size_t n = strlen(s);
    put_u32(w, (uint32_t)n);
    put(w, s, n);
}

/* Seed of the file checksum (cv_ml_hash64 of every byte before it). */
#define FILE_SEED 0x74616263686b73ULL

int cv_tab_model_save(const struct cv_tab_model *m, unsigned char **out, size_t *len)
{
    struct wbuf w = {0};
    const struct cv_tab_params *p = &m->p;
    put(&w, CV_TAB_MODEL_MAGIC, 8);
    put_u32(&w, CV_TAB_MODEL_FORMAT);
    put_u32(&w, (uint32_t)p->max_depth);
    put_f64(&w, p->eta);
    put_u32(&w, (uint32_t)p->rounds);
    put_u32(&w, (uint32_t)p->early_stopping);
    put_u32(&w, (uint32_t)p->folds);
    put_f64(&w, p->subsample);
    put_f64(&w, p->colsample);
    put_f64(&w, p->min_child_weight);
    put_f64(&w, p->lambda);
    put_u64(&w, p->seed);
    put_u32(&w, (uint32_t)m->rounds);
    put_str(&w, m->labels[0]);
    put_str(&w, m->labels[1]);
    put_u32(&w, (uint32_t)m->s.n);
    put_u32(&w, (uint32_t)m->s.ncols);
    for (int i = 0; i < m->s.n; i++) {
        const struct cv_tab_feature *f = &m->s.f[i];
        unsigned char t = (unsigned char)f->type;
        put(&w, &t, 1);
        put_str(&w, f->name);
        put_u32(&w, (uint32_t)f->ncats);
        for (int c = 0; c < f->ncats; c++)
            put_str(&w, f->cats[c]);
    }
    /* format 2: the algorithm, C, the cross-validated AUCs (format 3: the
     * blend's too), then its model: the linear block, the booster, or
     * (format 3's blend) the linear block then the booster */
    put_u32(&w, (uint32_t)p->algo);
    put_f64(&w, p->C);
    put_f64(&w, m->cv_auc[0]);
    put_f64(&w, m->cv_auc[1]);
    put_f64(&w, m->cv_auc[2]);
    if (p->algo != CV_TAB_ALGO_XGBOOST) {
        const struct cv__tab_linear *l = &m->lin;
        put_u32(&w, (uint32_t)l->ncols);
        for (int c = 0; c < l->ncols; c++) {
            put_f64(&w, l->mean[c]);
            put_f64(&w, l->scale[c]);
            put_f64(&w, l->center[c]);
            put_f64(&w, l->w[c]);
        }
        put_f64(&w, l->bias);
    }
    if (p->algo != CV_TAB_ALGO_LINEAR) {
        put_u64(&w, (uint64_t)m->rawlen);
        put(&w, m->raw, m->rawlen);
    }
    if (!w.oom)
        put_u64(&w, cv_ml_hash64(w.b, w.len, FILE_SEED));
    if (w.oom) {
        free(w.b);
        return CV_ENOMEM;
    }
    *out = w.b;
    *len = w.len;
    return 0;
}

struct rbuf {
    const unsigned char *b;
    size_t len, pos;
    int bad;
};

static const unsigned char *take(struct rbuf *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->b + r->pos;
    r->pos += n;
    return p;
}

static uint32_t get_u32(struct rbuf *r)
{
    const unsigned char *p = take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}

static uint64_t get_u64(struct rbuf *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static double get_f64(struct rbuf *r)
{
    uint64_t u = get_u64(r);
    double f;
    memcpy(&f, &u, 8);
    return f;
}

/* A length-prefixed text without NUL bytes; NULL (r->bad set) otherwise. */
static char *get_str(struct rbuf *r)
{
    uint32_t n = get_u32(r);
    const unsigned char *s = take(r, n);
    if (!s)
        return NULL;
    if (memchr(s, 0, n)) {
        r->bad = 1;
        return NULL;
    }
    char *t = strndup((const char *)s, n);
    if (!t)
        r->bad = 2;
    return t;
}

int cv_tab_model_load(const void *bytes, size_t len, struct cv_tab_model **out, jv *err)
{
    *out = NULL;
    pthread_once(&silence_once, silence_xgboost);
    struct rbuf r = {.b = bytes, .len = len};
    const unsigned char *magic = take(&r, 8);
    if (!magic || memcmp(magic, CV_TAB_MODEL_MAGIC, 8)) {
        set_err(err, "not a conveyor tabular model (wrong magic)");
        return CV_EINVAL;
    }
    uint32_t format = get_u32(&r);
    if (!r.bad && format > CV_TAB_MODEL_FORMAT) {
        set_err(err, "tabular model format %u is newer than this conveyor's (%d)", format, CV_TAB_MODEL_FORMAT);
        return CV_EUNSUPPORTED;
    }
    if (r.bad || format < 1 || len < 8 + 4 + 8) {
        set_err(err, "tabular model file truncated or of an unknown format version");
        return CV_EINVAL;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum |= (uint64_t)((const unsigned char *)bytes)[len - 8 + (size_t)i] << (8 * i);
    if (sum != cv_ml_hash64(bytes, len - 8, FILE_SEED)) {
        set_err(err, "tabular model file corrupt (checksum mismatch)");
        return CV_EINVAL;
    }
    r.len = len - 8;
    struct cv_tab_params p;
    cv_tab_params_init(&p);
    p.max_depth = (int)get_u32(&r);
    p.eta = get_f64(&r);
    p.rounds = (int)get_u32(&r);
    p.early_stopping = (int)get_u32(&r);
    p.folds = (int)get_u32(&r);
    p.subsample = get_f64(&r);
    p.colsample = get_f64(&r);
    p.min_child_weight = get_f64(&r);
    p.lambda = get_f64(&r);
    p.seed = get_u64(&r);
    uint32_t rounds = get_u32(&r);
    char *names[2] = {get_str(&r), get_str(&r)};
    uint32_t nf = get_u32(&r), ncols = get_u32(&r);
    struct cv_tab_schema s = {0};
    struct cv_tab_model *m = NULL;
    int code = 0;
    jv perr = jv_invalid();
    if (r.bad || params_check(&p, &perr) || nf == 0 || nf > 1000000 || ncols > 100000000 ||
        nf > r.len - r.pos) {
        code = r.bad == 2 ? CV_ENOMEM : CV_EINVAL;
        goto out;
    }
    s.f = calloc(nf, sizeof *s.f);
    if (!s.f) {
        code = CV_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < nf && !r.bad; i++) {
        struct cv_tab_feature *f = &s.f[i];
        s.n = (int)i + 1;
        const unsigned char *t = take(&r, 1);
        f->type = t ? *t : -1;
        f->name = get_str(&r);
        uint32_t nc = get_u32(&r);
        if (r.bad || (f->type != CV_TAB_NUMERIC && f->type != CV_TAB_CATEGORICAL) ||
            (f->type == CV_TAB_NUMERIC) != (nc == 0) || nc > CV_TAB_MAX_CATEGORIES) {
            r.bad = r.bad ? r.bad : 1;
            break;
        }
        f->cats = calloc((size_t)nc + 1, sizeof *f->cats);
        if (!f->cats) {
            r.bad = 2;
            break;
        }
        for (uint32_t c = 0; c < nc && !r.bad; c++) {
            f->cats[c] = get_str(&r);
            f->ncats = (int)c + 1;
            if (c > 0 && f->cats[c] && strcmp(f->cats[c - 1], f->cats[c]) >= 0)
                r.bad = 1; /* categories are sorted and distinct: encoding searches them */
        }
    }
    if (!r.bad) {
        int col = 0;
        for (int i = 0; i < s.n; i++) {
            s.f[i].col = col;
            col += s.f[i].type == CV_TAB_NUMERIC ? 1 : s.f[i].ncats;
        }
        s.ncols = col;
        if ((uint32_t)col != ncols)
            r.bad = 1;
    }
    /* format 2: the algorithm (format 1 files are XGBoost models); format 3:
     * the blend and its cross-validated AUC */
    p.algo = CV_TAB_ALGO_XGBOOST;
    double cv_auc[3] = {NAN, NAN, NAN};
    if (format >= 2) {
        p.algo = (int)get_u32(&r);
        p.C = get_f64(&r);
        cv_auc[0] = get_f64(&r);
        cv_auc[1] = get_f64(&r);
        if (format >= 3)
            cv_auc[2] = get_f64(&r);
        int known = p.algo == CV_TAB_ALGO_XGBOOST || p.algo == CV_TAB_ALGO_LINEAR ||
                    (format >= 3 && p.algo == CV_TAB_ALGO_BLEND);
        if (!r.bad && (!known || params_check(&p, &perr)))
            r.bad = 1;
    }
    if (r.bad) {
        code = r.bad == 2 ? CV_ENOMEM : CV_EINVAL;
        goto out;
    }
    m = model_new(&p, &s, (const char *const *)names);
    if (!m) {
        code = CV_ENOMEM;
        goto out;
    }
    m->cv_auc[0] = cv_auc[0];
    m->cv_auc[1] = cv_auc[1];
    m->cv_auc[2] = cv_auc[2];
    if (p.algo != CV_TAB_ALGO_XGBOOST) {
        /* the linear block: the rest of the file for a linear model, the
         * booster follows it in a blend */
        uint32_t nc = get_u32(&r);
        size_t need = (size_t)nc * 32 + 8, left = r.len - r.pos;
        if (r.bad || nc != (uint32_t)s.ncols ||
            (p.algo == CV_TAB_ALGO_LINEAR ? left != need : left < need + 8)) {
            set_err(err, "tabular model file: the linear model does not match the schema's %d columns", s.ncols);
            code = CV_EINVAL;
            goto out;
        }
        if (cv__tab_linear_init(&m->lin, (int)nc)) {
            code = CV_ENOMEM;
            goto out;
        }
        int finite = 1;
        for (uint32_t c = 0; c < nc; c++) {
            struct cv__tab_linear *l = &m->lin;
            l->mean[c] = get_f64(&r);
            l->scale[c] = get_f64(&r);
            l->center[c] = get_f64(&r);
            l->w[c] = get_f64(&r);
            finite &= isfinite(l->mean[c]) && isfinite(l->scale[c]) && l->scale[c] > 0 && isfinite(l->center[c]) &&
                      isfinite(l->w[c]);
        }
        m->lin.bias = get_f64(&r);
        if (r.bad || !finite || !isfinite(m->lin.bias)) {
            set_err(err, "tabular model file: the linear model has a value that is not a finite number (or a scale <= 0)");
            code = CV_EINVAL;
            goto out;
        }
        if (p.algo == CV_TAB_ALGO_LINEAR) {
            m->rounds = 0;
            *out = m;
            m = NULL;
            goto out;
        }
    }
    uint64_t blen = get_u64(&r);
    const unsigned char *braw = r.bad || blen != r.len - r.pos ? NULL : take(&r, (size_t)blen);
    if (r.bad || !braw) {
        code = r.bad == 2 ? CV_ENOMEM : CV_EINVAL;
        goto out;
    }
    if ((code = cv__tab_booster_check(braw, (size_t)blen, s.ncols, err)))
        goto out;
    if (!(m->raw = malloc((size_t)blen + 1))) {
        code = CV_ENOMEM;
        goto out;
    }
    memcpy(m->raw, braw, (size_t)blen);
    m->rawlen = (size_t)blen;
    m->rounds = (int)rounds;
    if (XGBoosterCreate(NULL, 0, &m->b) || XGBoosterLoadModelFromBuffer(m->b, m->raw, (bst_ulong)m->rawlen) ||
        XGBoosterSetParam(m->b, "nthread", "1") || XGBoosterSetParam(m->b, "verbosity", "0")) {
        code = xgb_fail(err, "loading the booster");
        goto out;
    }
    bst_ulong nfeat = 0;
    if (XGBoosterGetNumFeature(m->b, &nfeat) || nfeat > (bst_ulong)s.ncols) {
        set_err(err, "tabular model file: the booster expects %llu columns, the schema gives %d",
                (unsigned long long)nfeat, s.ncols);
        code = CV_EINVAL;
        goto out;
    }
    *out = m;
    m = NULL;
out:
    jv_free(perr);
    if (code && code != CV_ENOMEM && !(err && jv_get_kind(*err) == JV_KIND_STRING))
        set_err(err, "tabular model file is malformed");
    if (code == CV_ENOMEM)
        set_err(err, "out of memory");
    cv_tab_model_free(m);
    cv_tab_schema_cleanup(&s);
    free(names[0]);
    free(names[1]);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

jv cv_tab_evaluate(const char *const names[2], const int *truth, const double *score, int n)
{
    jv o = jv_object_set(jv_object(), jv_string("n"), jv_number(n));
    if (n <= 0)
        return o;
    long pos = 0, tp = 0, tn = 0, fp = 0, fn = 0;
    double loss = 0, brier = 0;
    const double lo = 1e-15, hi = 1 - 1e-15;
    for (int i = 0; i < n; i++) {
        pos += truth[i];
        double q = score[i] < lo ? lo : score[i] > hi ? hi : score[i];
        loss -= truth[i] ? log(q) : log(1 - q);
        brier += (score[i] - truth[i]) * (score[i] - truth[i]);
        int pred = score[i] >= 0.5;
        tp += pred && truth[i];
        tn += !pred && !truth[i];
        fp += pred && !truth[i];
        fn += !pred && truth[i];
    }
    /* Mann-Whitney: the rank sum of the positives, ties at their mean rank */
    double a = pos > 0 && pos < n ? cv__tab_auc(truth, score, n) : NAN;
    if (pos > 0 && pos < n && isnan(a)) {
        jv_free(o);
        return jv_invalid_with_msg(jv_string("out of memory"));
    }
    jv auc = isnan(a) ? jv_null() : jv_number(a);
    o = jv_object_set(o, jv_string("positives"), jv_number((double)pos));
    o = jv_object_set(o, jv_string("auc"), auc);
    o = jv_object_set(o, jv_string("logloss"), jv_number(loss / n));
    o = jv_object_set(o, jv_string("accuracy"), jv_number((double)(tp + tn) / n));
    o = jv_object_set(o, jv_string("brier"), jv_number(brier / n));
    jv labels = jv_array_append(jv_array_append(jv_array(), jv_string(names[0])), jv_string(names[1]));
    o = jv_object_set(o, jv_string("labels"), labels);
    jv cm = jv_array();
    cm = jv_array_append(cm, jv_array_append(jv_array_append(jv_array(), jv_number((double)tn)), jv_number((double)fp)));
    cm = jv_array_append(cm, jv_array_append(jv_array_append(jv_array(), jv_number((double)fn)), jv_number((double)tp)));
    return jv_object_set(o, jv_string("confusion"), cm);
}
