/*
 * tabular.h — conveyor's tabular scorer (issue 4, DESIGN.md decision 8): rows
 * of named numeric and categorical features, a feature schema declared or
 * inferred from the data, a binary classifier trained with XGBoost (through
 * its C API), SHAP contributions mapped back to the declared features as the
 * explanation, a versioned file format, and the scorer's metrics (AUC,
 * log-loss, accuracy at 0.5).
 *
 * Like ml.h, this module knows nothing of the store or the CLI: a model is
 * bytes (cv_tab_model_save / cv_tab_model_load). docs/models.md ("The
 * tabular scorer") describes the schema, the encoding, the file format and
 * the metrics; keep it in step.
 *
 * Ownership: functions borrow their pointer arguments unless a comment says
 * otherwise, and consume their jv arguments (jq's rule); results handed out
 * through `out` parameters belong to the caller. Errors: 0 or a negative CV_*
 * code (conveyor.h), with a message in *err (a jv string) where an err
 * pointer is given.
 */
#ifndef CV_ML_TABULAR_H
#define CV_ML_TABULAR_H

#include "ml/ml.h"

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Tables: rows of named values                                              */
/* ------------------------------------------------------------------------ */

/*
 * Rows read from a JSON lines file (one object per line) or a CSV file with a
 * header row (RFC 4180), chosen as cv_dataset_read chooses. Each row is a jv
 * object: JSON lines rows as written; CSV rows map each column to its text,
 * an empty field being left out (missing). `columns` lists the fields: the
 * CSV header in order, or for JSON lines every key seen, sorted by bytes.
 */
struct cv_table {
    int n;          /* rows (>= 1 after a successful read) */
    jv *rows;       /* n objects */
    int *lines;     /* n: the line where each row starts */
    int csv;        /* 1: values are CSV texts (numbers are recognised by parsing) */
    int ncolumns;
    char **columns;
    char sha256[65]; /* hex digest of the file's bytes */
    char *path;      /* the file's name, for messages */
};

/* Reads `path`. A missing file, a malformed row or a file without rows is
 * CV_EIO / CV_EINVAL with "FILE:LINE: why" in *err. cv_table_cleanup is safe
 * after a failure. */
int cv_table_read(const char *path, struct cv_table *out, jv *err);
void cv_table_cleanup(struct cv_table *t);

/* ------------------------------------------------------------------------ */
/* The feature schema                                                        */
/* ------------------------------------------------------------------------ */

enum cv_tab_type {
    CV_TAB_NUMERIC = 0,     /* a number; one input column of the booster */
    CV_TAB_CATEGORICAL = 1, /* one of a known set of texts; one column per category (one-hot) */
};

struct cv_tab_feature {
    char *name;
    int type;    /* enum cv_tab_type */
    int ncats;   /* categorical: the categories, sorted by bytes */
    char **cats;
    int col;     /* the feature's first column in the encoded row */
};

struct cv_tab_schema {
    int n;                      /* features */
    struct cv_tab_feature *f;   /* n, in declared (or file) order */
    int ncols;                  /* encoded columns: 1 per numeric feature, ncats per categorical */
};

/* A categorical feature may have at most this many categories (an id-like
 * column would otherwise become thousands of one-hot columns). */
#define CV_TAB_MAX_CATEGORIES 1000

/*
 * Infers a schema from rows[0..nrows) of t (all rows when rows is NULL):
 * every column but `label_field` is a feature; a feature is numeric when
 * every value present is a number (JSON number, or CSV text that parses as
 * a finite number), else categorical, its categories the distinct texts seen
 * (a JSON number or boolean counts as its JSON text). A feature whose values
 * are all missing is numeric. `declared` (consumed; jv_null() for none)
 * overrides: an array of {"name", "type": "numeric"|"categorical",
 * "categories"?: [texts]} objects that lists the features to use, in order;
 * a declared categorical feature without categories takes them from the
 * rows. Errors (CV_EINVAL with *err): no feature, a declared feature that is
 * missing from the data, a bad declaration, too many categories.
 */
int cv_tab_schema_infer(const struct cv_table *t, const int *rows, int nrows, const char *label_field,
                        jv declared, struct cv_tab_schema *out, jv *err);
void cv_tab_schema_cleanup(struct cv_tab_schema *s);
/* The schema as the JSON array `declared` accepts (new jv). */
jv cv_tab_schema_json(const struct cv_tab_schema *s);

/*
 * Encodes one row (borrowed object) into x[0..s->ncols): a numeric feature
 * gives its value; a categorical one 1 in its category's column and 0 in its
 * others. A missing value (absent, null, or an empty CSV field) gives NaN in
 * all the feature's columns; so does a category the schema does not know
 * (counted in *unknown when unknown is not NULL: documented as "treated as
 * missing"). `csv` says the values are CSV texts. A value of the wrong type
 * (a text that is not a number for a numeric feature; an object or array)
 * is CV_EINVAL with "feature \"age\" is numeric; got \"abc\"" in *err.
 */
int cv_tab_encode(const struct cv_tab_schema *s, jv row, int csv, float *x, int *unknown, jv *err);

/* ------------------------------------------------------------------------ */
/* Labels                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Reads the binary label of rows[0..nrows) (all when rows is NULL) into
 * y[i] (0 negative, 1 positive). names[0] and names[1] are the negative and
 * positive labels. When *names are NULL they are chosen from the data: the
 * two distinct labels sorted by bytes, the second positive (scikit-learn's
 * convention: "1" over "0", "true" over "false"), unless `positive` (may be
 * NULL) names one of them. When names are given (a model's), a label outside
 * them is an error. Labels are texts as cv_dataset_read reads them (a JSON
 * string, number or boolean). Errors (CV_EINVAL, "FILE:LINE: ..." using
 * `path`): a missing or empty label, one class only, more than two, a
 * `positive` that is not among them. names[] strings are malloc'ed when
 * chosen here (caller frees).
 */
int cv_tab_labels(const struct cv_table *t, const char *path, const int *rows, int nrows, const char *label_field,
                  const char *positive, char *names[2], int *y, jv *err);

/* ------------------------------------------------------------------------ */
/* The model                                                                 */
/* ------------------------------------------------------------------------ */

/* The algorithm of a scorer. */
enum cv_tab_algo {
    CV_TAB_ALGO_AUTO = 0,    /* training only: the best of the three below by cross-validated AUC on
                                the training rows (ties go to the simpler: linear, then XGBoost) */
    CV_TAB_ALGO_XGBOOST = 1, /* gradient-boosted trees, SHAP explanations */
    CV_TAB_ALGO_LINEAR = 2,  /* L2 logistic regression on standardised numeric and one-hot
                                categorical columns (LIBLINEAR), explained by coef * (x - mean) */
    CV_TAB_ALGO_BLEND = 3,   /* both of the above, trained as they are alone; the margin is the
                                mean of their margins (log-odds), the explanation the mean of
                                their contributions */
};

struct cv_tab_params {
    int algo;               /* enum cv_tab_algo (default CV_TAB_ALGO_AUTO) */
    double C;               /* linear: inverse L2 regularisation strength (default 1, as
                               scikit-learn's LogisticRegression) */
    int max_depth;          /* tree depth (default 3) */
    double eta;             /* learning rate (default 0.02) */
    int rounds;             /* boosting rounds, or their cap with early stopping (default 1000) */
    int early_stopping;     /* rounds without improvement of the cross-validated log-loss before
                               stopping (default 50; 0: no early stopping, train `rounds`) */
    int folds;              /* stratified cross-validation folds of the training rows that choose
                               the number of rounds (default 5, 2..20); the final model is then
                               trained on all training rows */
    double subsample;       /* row subsampling per tree (default 0.8) */
    double colsample;       /* column subsampling per tree (default 0.8) */
    double min_child_weight; /* default 1 */
    double lambda;          /* L2 regularisation of leaf weights (default 1) */
    uint64_t seed;          /* XGBoost's seed and the folds' (default 42) */
};

void cv_tab_params_init(struct cv_tab_params *p);

struct cv_tab_model;

/*
 * Trains a binary classifier on the encoded rows x[0..n * s->ncols) with
 * labels y[0..n) (0/1), under schema s (copied) and label names (copied),
 * with the algorithm p->algo:
 *  - XGBoost: gbtree, binary:logistic, tree_method hist, one thread,
 *    verbosity 0. With early stopping, the number of rounds is chosen by
 *    stratified k-fold cross-validation on these rows (k boosters in
 *    lockstep; the round with the lowest mean left-out log-loss), and the
 *    model is then trained on all n rows with that many rounds.
 *  - linear: LIBLINEAR L2R_LR with p->C on the standardised columns
 *    (tabular_int.h).
 *  - blend: the XGBoost model and the linear model above, each trained
 *    exactly as alone (the same rounds); predicts the mean of their
 *    margins.
 *  - auto: the three are cross-validated on the same stratified folds of
 *    these rows (p->folds, fewer when a class has fewer rows; the XGBoost
 *    folds are those of the early stopping, scored at the chosen round;
 *    the blend's left-out margins are the mean of the two models'
 *    left-out margins on each fold, so it costs no extra fit); the one
 *    with the highest mean left-out AUC is trained on all n rows, ties
 *    going to the simpler (linear, then XGBoost, then the blend). With
 *    fewer than 2 rows of a class, XGBoost. cv_tab_model_cv_auc reports
 *    the three figures (blend: the same three).
 * `progress` (may be NULL) is called with stage "early-stopping" (rounds
 * tried, of the cap; done == total once with the rounds chosen), "linear"
 * (folds fitted, of the folds) and then "rounds" (done of the rounds of the
 * final model). Needs both classes among y. Returns 0 with *out, CV_EINVAL
 * with *err, or CV_ENOMEM.
 */
int cv_tab_model_train(const struct cv_tab_params *p, const struct cv_tab_schema *s, const char *const names[2],
                       const float *x, const int *y, int n, cv_ml_progress_fn progress, void *ud,
                       struct cv_tab_model **out, jv *err);
void cv_tab_model_free(struct cv_tab_model *m);

const struct cv_tab_schema *cv_tab_model_schema(const struct cv_tab_model *m);
/* The label of class k (0 negative, 1 positive). */
const char *cv_tab_model_label(const struct cv_tab_model *m, int k);
const struct cv_tab_params *cv_tab_model_params(const struct cv_tab_model *m);
/* The boosting rounds trained (0 for a linear model). */
int cv_tab_model_rounds(const struct cv_tab_model *m);
/* CV_TAB_ALGO_XGBOOST, CV_TAB_ALGO_LINEAR or CV_TAB_ALGO_BLEND (never auto). */
int cv_tab_model_algo(const struct cv_tab_model *m);
/* The cross-validated AUCs of the training rows that `auto` compared:
 * auc[0] XGBoost's, auc[1] the linear model's, auc[2] the blend's; NaN where
 * not measured (format 1 and 2 files have no blend figure). */
void cv_tab_model_cv_auc(const struct cv_tab_model *m, double auc[3]);
/* The model's parameters for its card (new jv): the algorithm, what was
 * chosen and why (the cross-validated AUCs), and that algorithm's settings. */
jv cv_tab_model_params_json(const struct cv_tab_model *m);

/*
 * Scores n encoded rows x[0..n * ncols): score[i] = P(positive), margin[i]
 * (may be NULL) the log-odds. With contribs not NULL, also the contributions
 * per declared feature: contribs[i * (F + 1) + j] for feature j (XGBoost:
 * SHAP values, one-hot columns summed back to their feature; linear: coef *
 * (x - mean) summed the same way; blend: the mean of the two), and the bias at
 * contribs[i * (F + 1) + F];
 * they sum to the margin (up to float rounding).
 * Thread-safe: calls into the booster are serialised by a lock in the model.
 * Returns 0, CV_ENOMEM or CV_EINVAL with *err (XGBoost's message).
 */
int cv_tab_model_predict(struct cv_tab_model *m, const float *x, int n, double *score, double *margin,
                         double *contribs, jv *err);

/*
 * The `score` function's output for one row of features (an object, consumed;
 * values as in JSON: numbers for numeric features, texts for categorical):
 * {score, label, explanation: [{feature, value, contribution}...]} with the
 * `top` features of largest |contribution| (all when top <= 0), sorted by
 * |contribution| descending (ties by feature order). `label` is the positive
 * label when score >= 0.5, else the negative. The caller adds "model".
 * *unknown (may be NULL) gets the number of unknown categories (treated as
 * missing). A wrong type is CV_EINVAL with *err.
 */
int cv_tab_model_score(struct cv_tab_model *m, jv features, int top, jv *out, int *unknown, jv *err);

/* The same object for a row already encoded and predicted (row borrowed:
 * the input values quoted in the explanation). */
jv cv_tab_prediction_json(const struct cv_tab_model *m, jv row, double score, const double *contribs, int top);

/*
 * The model file (docs/models.md, "Tabular file format"): *out malloc'ed
 * (caller frees). A saved and loaded model predicts bit-for-bit the same
 * scores and contributions, and saving it again gives the same bytes. Load
 * refuses a wrong magic, a newer format, a truncated or altered file, and a
 * booster that does not pass cv__tab_booster_check (tabular_int.h): a corrupt
 * file is an error, never a crash. Format 1 files (XGBoost only) and format
 * 2 files (no blend) load; saving writes format 3.
 */
int cv_tab_model_save(const struct cv_tab_model *m, unsigned char **out, size_t *len);
int cv_tab_model_load(const void *bytes, size_t len, struct cv_tab_model **out, jv *err);

#define CV_TAB_MODEL_FORMAT 3
#define CV_TAB_MODEL_MAGIC "CVTABMDL"

/* ------------------------------------------------------------------------ */
/* Metrics of a scorer                                                       */
/* ------------------------------------------------------------------------ */

/*
 * {n, positives, auc, logloss, accuracy, brier, labels: [neg, pos],
 * confusion: [[tn, fp], [fn, tp]]} of scores (P(positive)) against truth
 * (0/1). AUC is the Mann-Whitney statistic with tied scores counted half
 * (scikit-learn's roc_auc_score); null when one class is absent. Log-loss
 * clips probabilities to [1e-15, 1 - 1e-15]. Accuracy predicts positive at
 * score >= 0.5. Returns an invalid jv on out-of-memory.
 */
jv cv_tab_evaluate(const char *const names[2], const int *truth, const double *score, int n);

#endif
