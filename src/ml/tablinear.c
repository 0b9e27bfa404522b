/*
 * tablinear.c — the tabular scorer's second algorithm (tabular_int.h): an L2
 * logistic regression on standardised numeric and one-hot categorical
 * columns, trained with LIBLINEAR, explained by coef * (x - mean) per
 * feature; plus the AUC and the stratified folds that the choice between
 * XGBoost and this model (`--algo auto`, tabular.c) is made with.
 *
 * Why a linear model next to XGBoost: on small tabular data sets (German
 * credit: 700 training rows, 20 features) a regularised logistic regression
 * is often as good as or better than boosted trees, and scikit-learn users
 * compare against both. Which one a model uses is decided on the training
 * rows only (cross-validated AUC), never on the held-out part.
 *
 * LIBLINEAR's output is silenced (a process-wide setting, as textclf.c does);
 * its coefficients are copied out as doubles and LIBLINEAR's model freed:
 * prediction never calls LIBLINEAR.
 */
#include "ml/tabular_int.h"

#include "conveyor.h"

#include <linear.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

static void quiet(const char *msg)
{
    (void)msg;
}

int cv__tab_linear_init(struct cv__tab_linear *l, int ncols)
{
    memset(l, 0, sizeof *l);
    double *a = calloc(4 * (size_t)ncols + 1, sizeof *a);
    if (!a)
        return CV_ENOMEM;
    l->ncols = ncols;
    l->mean = a;
    l->scale = a + ncols;
    l->center = a + 2 * (size_t)ncols;
    l->w = a + 3 * (size_t)ncols;
    for (int c = 0; c < ncols; c++)
        l->scale[c] = 1;
    return 0;
}

void cv__tab_linear_cleanup(struct cv__tab_linear *l)
{
    if (!l)
        return;
    free(l->mean);
    memset(l, 0, sizeof *l);
}

/* z of column c for value v (the standardisation described in tabular_int.h) */
static inline double zval(const struct cv__tab_linear *l, int c, float v)
{
    return isnan(v) ? 0.0 : ((double)v - l->mean[c]) / l->scale[c];
}

int cv__tab_linear_fit(const struct cv_tab_schema *s, const float *x, const int *y, const int *rows, int n, double C,
                       struct cv__tab_linear *l, jv *err)
{
    int code = cv__tab_linear_init(l, s->ncols);
    if (code)
        return code;
    const int nc = s->ncols;
    double *yy = malloc(((size_t)n + 1) * sizeof *yy);
    struct feature_node **xx = malloc(((size_t)n + 1) * sizeof *xx);
    struct feature_node *nodes = malloc(((size_t)n * ((size_t)nc + 2) + 1) * sizeof *nodes);
    struct model *lm = NULL;
    if (!yy || !xx || !nodes) {
        code = CV_ENOMEM;
        goto out;
    }
    /* standardisation of the numeric columns: mean and population standard
     * deviation of the values present (scikit-learn's StandardScaler) */
    for (int j = 0; j < s->n; j++) {
        if (s->f[j].type != CV_TAB_NUMERIC)
            continue;
        int c = s->f[j].col;
        double sum = 0, sq = 0;
        long cnt = 0;
        for (int i = 0; i < n; i++) {
            float v = x[(size_t)(rows ? rows[i] : i) * nc + c];
            if (!isnan(v)) {
                sum += v;
                cnt++;
            }
        }
        double mean = cnt ? sum / (double)cnt : 0;
        for (int i = 0; i < n; i++) {
            float v = x[(size_t)(rows ? rows[i] : i) * nc + c];
            if (!isnan(v))
                sq += ((double)v - mean) * ((double)v - mean);
        }
        double sd = cnt ? sqrt(sq / (double)cnt) : 0;
        l->mean[c] = mean;
        l->scale[c] = sd > 1e-12 && isfinite(sd) ? sd : 1;
    }
    struct feature_node *np = nodes;
    for (int i = 0; i < n; i++) {
        int r = rows ? rows[i] : i;
        const float *row = x + (size_t)r * nc;
        xx[i] = np;
        yy[i] = y[r];
        for (int c = 0; c < nc; c++) {
            double z = zval(l, c, row[c]);
            l->center[c] += z;
            if (z != 0) {
                np->index = c + 1;
                np->value = z;
                np++;
            }
        }
        np->index = nc + 1; /* the bias feature */
        np->value = 1;
        np++;
        np->index = -1;
        np->value = 0;
        np++;
    }
    for (int c = 0; c < nc; c++)
        l->center[c] /= n > 0 ? n : 1;
    struct problem prob = {.l = n, .n = nc + 1, .y = yy, .x = xx, .bias = 1.0};
    struct parameter param = {.solver_type = L2R_LR, .eps = 1e-4, .C = C};
    const char *why = check_parameter(&prob, &param);
    if (why) {
        set_err(err, "LIBLINEAR refused the parameters: %s", why);
        code = CV_EINVAL;
        goto out;
    }
    set_print_string_function(quiet);
    lm = train(&prob, &param);
    if (!lm) {
        code = CV_ENOMEM;
        goto out;
    }
    /* LIBLINEAR's first class is the label of the first row; we want the
     * coefficients of P(y = 1) */
    int li = lm->nr_class == 2 && lm->label[0] == 1 ? 0 : lm->nr_class == 2 ? 1 : -1;
    if (li < 0) {
        set_err(err, "training needs rows of both labels");
        code = CV_EINVAL;
        goto out;
    }
    double sign = li == 0 ? 1 : -1; /* a binary LIBLINEAR model keeps one vector, for label[0] */
    for (int c = 0; c < nc; c++)
        l->w[c] = sign * get_decfun_coef(lm, c + 1, 0);
    l->bias = sign * get_decfun_bias(lm, 0);
out:
    if (lm)
        free_and_destroy_model(&lm);
    free(yy);
    free(xx);
    free(nodes);
    if (code == CV_ENOMEM)
        set_err(err, "out of memory");
    return code;
}

double cv__tab_linear_margin(const struct cv__tab_linear *l, const struct cv_tab_schema *s, const float *x,
                             double *contribs)
{
    double margin = l->bias;
    for (int c = 0; c < l->ncols; c++)
        margin += l->w[c] * zval(l, c, x[c]);
    if (contribs) {
        double base = l->bias;
        for (int j = 0; j < s->n; j++) {
            const struct cv_tab_feature *f = &s->f[j];
            int width = f->type == CV_TAB_NUMERIC ? 1 : f->ncats;
            double sum = 0;
            for (int k = 0; k < width; k++) {
                int c = f->col + k;
                sum += l->w[c] * (zval(l, c, x[c]) - l->center[c]);
                base += l->w[c] * l->center[c];
            }
            contribs[j] = sum;
        }
        contribs[s->n] = base;
    }
    return margin;
}

/* ------------------------------------------------------------------------ */
/* AUC and folds                                                             */
/* ------------------------------------------------------------------------ */

struct ranked {
    double score;
    int truth;
};

static int by_score(const void *a, const void *b)
{
    double x = ((const struct ranked *)a)->score, y = ((const struct ranked *)b)->score;
    return (x > y) - (x < y);
}

double cv__tab_auc(const int *truth, const double *score, int n)
{
    long pos = 0;
    for (int i = 0; i < n; i++)
        pos += truth[i] != 0;
    if (n <= 0 || pos == 0 || pos == n)
        return NAN;
    struct ranked *r = malloc((size_t)n * sizeof *r);
    if (!r)
        return NAN;
    for (int i = 0; i < n; i++)
        r[i] = (struct ranked){.score = score[i], .truth = truth[i] != 0};
    qsort(r, (size_t)n, sizeof *r, by_score);
    double rank_sum = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && r[j].score == r[i].score)
            j++;
        double mean_rank = (i + 1 + j) / 2.0; /* ranks i+1..j */
        for (int k = i; k < j; k++)
            if (r[k].truth)
                rank_sum += mean_rank;
        i = j;
    }
    free(r);
    double np = (double)pos, nn = (double)(n - pos);
    return (rank_sum - np * (np + 1) / 2) / (np * nn);
}

/* splitmix64 (as dataset.c's split): the fold assignment depends on its exact output. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int cv__tab_folds(const int *y, int n, int k, uint64_t seed, int *fold)
{
    int *order = malloc(((size_t)n + 1) * sizeof *order);
    uint64_t state = seed;
    if (!order)
        return CV_ENOMEM;
    for (int c = 0; c < 2; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (y[i] == c)
                order[m++] = i;
        for (int i = m - 1; i > 0; i--) {
            int j = (int)(next_u64(&state) % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int i = 0; i < m; i++)
            fold[order[i]] = i % k;
    }
    free(order);
    return 0;
}
