/*
 * tabular_int.h — internals shared by the tabular scorer's files (tabular.c:
 * the model object, XGBoost, the file format; tablinear.c: the L2 logistic
 * regression; tabxgb.c: checking a booster before XGBoost loads it). Nothing
 * outside src/ml includes it: tabular.h is the module's interface.
 */
#ifndef CV_ML_TABULAR_INT_H
#define CV_ML_TABULAR_INT_H

#include "ml/tabular.h"

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The linear scorer: margin = bias + sum_c w[c] * z[c], where z[c] is column
 * c of the encoded row standardised: (x - mean[c]) / scale[c] for a numeric
 * column, the one-hot 0/1 for a categorical one (mean 0, scale 1), and 0 for
 * a missing value (NaN: the training mean for a numeric feature, "no
 * category" for a categorical one). center[c] is the mean of z[c] over the
 * training rows: a feature's contribution is sum over its columns of
 * w[c] * (z[c] - center[c]) (coef * (x - mean) in log-odds, the SHAP value
 * of a linear model with independent features), and the explanation's bias
 * is bias + sum_c w[c] * center[c], so that contributions + bias = margin.
 * Every number is a double and prediction is a fixed sequence of double
 * operations, so a model loaded from its file predicts bit-for-bit the same.
 */
struct cv__tab_linear {
    int ncols;
    double *mean, *scale, *center, *w; /* ncols each (one allocation, mean first) */
    double bias;
};

/* Allocates the four arrays for ncols columns (zeroed, scale 1). Returns 0 or
 * CV_ENOMEM. */
int cv__tab_linear_init(struct cv__tab_linear *l, int ncols);
void cv__tab_linear_cleanup(struct cv__tab_linear *l);

/*
 * Fits *l (initialised here; clean it up after a failure too) on rows[0..n)
 * of x (all n rows when rows is NULL; row r is x[r * s->ncols ..]) with labels
 * y indexed the same way: standardisation from those rows, then LIBLINEAR's
 * L2R_LR (primal trust-region Newton: deterministic) with inverse
 * regularisation C and a bias feature of value 1 (LIBLINEAR 2.3 regularises
 * the bias as well; with standardised features and hundreds of rows the
 * effect is negligible). Returns 0, CV_EINVAL with *err, or CV_ENOMEM.
 */
int cv__tab_linear_fit(const struct cv_tab_schema *s, const float *x, const int *y, const int *rows, int n, double C,
                       struct cv__tab_linear *l, jv *err);

/* The margin (log-odds) of one encoded row; with contribs (s->n + 1 doubles,
 * may be NULL) the per-feature contributions and the bias last. */
double cv__tab_linear_margin(const struct cv__tab_linear *l, const struct cv_tab_schema *s, const float *x,
                             double *contribs);

/* AUC (Mann-Whitney, ties counted half) of score against truth (0/1); NaN
 * when one class is absent or on out-of-memory. */
double cv__tab_auc(const int *truth, const double *score, int n);

/*
 * Stratified fold assignment: each class's rows are shuffled (splitmix64
 * seeded with `seed`, class 0 then class 1) and dealt round-robin into k
 * folds: fold[i] in [0, k). The XGBoost early stopping and the choice
 * between the algorithms use the same folds. Returns 0 or CV_ENOMEM.
 */
int cv__tab_folds(const int *y, int n, int k, uint64_t seed, int *fold);

/*
 * Checks an XGBoost booster serialised as UBJSON (what cv_tab_model_save
 * stores) before XGBoost's own loader sees it: XGBoost trusts its model
 * files (an absurd array length makes it allocate without bound; a child
 * index out of range makes prediction read outside its arrays). Decodes the
 * UBJSON strictly (the markers XGBoost writes, lengths bounded by the bytes
 * left, nesting at most 64 deep) and checks the trees: node arrays of
 * num_nodes entries, children in range, each node reached once from the root,
 * split features below `ncols`, one tree_info entry per tree, one output
 * group. Returns 0, or CV_EINVAL with *err saying what is wrong.
 */
int cv__tab_booster_check(const unsigned char *b, size_t len, int ncols, jv *err);

#endif
