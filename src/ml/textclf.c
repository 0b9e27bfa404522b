/*
 * textclf.c — the text model (ml.h): training through LIBLINEAR, prediction,
 * and the model file format (docs/models.md, "File format").
 *
 * Training featurizes every row (features.c), learns the IDF of each hashed
 * feature on the training rows (smooth: ln((1 + n) / (1 + df)) + 1, as
 * scikit-learn's TfidfVectorizer), builds LIBLINEAR rows of sublinear TF
 * (1 + ln tf) x IDF, L2-normalised, with a bias feature, and trains L2-
 * regularised logistic regression. The coefficients are then copied, as
 * floats, into a dense table next to each feature's IDF; LIBLINEAR's model is
 * freed. Prediction reads only that table (prediction never calls
 * LIBLINEAR), and the file stores exactly those floats, so a loaded model
 * predicts bit-for-bit what the trained one did.
 *
 * LIBLINEAR's own messages are silenced (set_print_string_function, a
 * process-wide setting); its train() is single-threaded.
 */
#include "ml/ml_int.h"

#include "conveyor.h"

#include <linear.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
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

/* ------------------------------------------------------------------------ */
/* Parameters and the model object                                           */
/* ------------------------------------------------------------------------ */

void cv_text_params_init(struct cv_text_params *p)
{
    memset(p, 0, sizeof *p);
    p->dim_bits = 19;
    p->word_ngram_max = 2;
    p->char_ngram_min = 3;
    p->char_ngram_max = 5;
    p->C = 10;
    p->solver = CV_TEXT_SOLVER_LR;
    p->eps = 0.01;
}

jv cv_text_params_json(const struct cv_text_params *p)
{
    jv o = jv_object();
    o = jv_object_set(o, jv_string("hashBits"), jv_number(p->dim_bits));
    jv w = jv_array_append(jv_array_append(jv_array(), jv_number(1)), jv_number(p->word_ngram_max));
    o = jv_object_set(o, jv_string("wordNgrams"), w);
    jv c = p->char_ngram_max > 0
               ? jv_array_append(jv_array_append(jv_array(), jv_number(p->char_ngram_min)), jv_number(p->char_ngram_max))
               : jv_null();
    o = jv_object_set(o, jv_string("charNgrams"), c);
    o = jv_object_set(o, jv_string("tf"), jv_string("sublinear"));
    o = jv_object_set(o, jv_string("idf"), jv_string("smooth"));
    o = jv_object_set(o, jv_string("norm"), jv_string("l2"));
    o = jv_object_set(o, jv_string("algo"), jv_string(p->solver == CV_TEXT_SOLVER_SVM ? "svm" : "lr"));
    o = jv_object_set(o, jv_string("solver"),
                      jv_string(p->solver == CV_TEXT_SOLVER_LR_DUAL ? "liblinear L2R_LR_DUAL"
                                : p->solver == CV_TEXT_SOLVER_SVM   ? "liblinear L2R_L2LOSS_SVC_DUAL"
                                                                    : "liblinear L2R_LR"));
    if (p->solver == CV_TEXT_SOLVER_SVM)
        o = jv_object_set(o, jv_string("calibration"),
                          jv_string("Platt sigmoid per weight vector on 5-fold cross-validated decision values"));
    o = jv_object_set(o, jv_string("C"), jv_number(p->C));
    o = jv_object_set(o, jv_string("eps"), jv_number(p->eps));
    return o;
}

static int params_check(const struct cv_text_params *p, jv *err)
{
    if (p->dim_bits < 16 || p->dim_bits > 24) {
        set_err(err, "hash bits must be between 16 and 24 (got %d)", p->dim_bits);
        return CV_EINVAL;
    }
    if (p->word_ngram_max < 1 || p->word_ngram_max > 2) {
        set_err(err, "word n-grams go up to 1 or 2 (got %d)", p->word_ngram_max);
        return CV_EINVAL;
    }
    if (p->char_ngram_max != 0 &&
        (p->char_ngram_min < 1 || p->char_ngram_max < p->char_ngram_min || p->char_ngram_max > 8)) {
        set_err(err, "character n-grams must be MIN..MAX with 1 <= MIN <= MAX <= 8 (got %d..%d)", p->char_ngram_min,
                p->char_ngram_max);
        return CV_EINVAL;
    }
    if (!(p->C > 0) || !isfinite(p->C)) {
        set_err(err, "C must be a positive number");
        return CV_EINVAL;
    }
    if (!(p->eps > 0) || !isfinite(p->eps)) {
        set_err(err, "eps must be a positive number");
        return CV_EINVAL;
    }
    if (p->solver != CV_TEXT_SOLVER_LR && p->solver != CV_TEXT_SOLVER_LR_DUAL && p->solver != CV_TEXT_SOLVER_SVM) {
        set_err(err, "unknown solver");
        return CV_EINVAL;
    }
    return 0;
}

/* The in-memory table of a model (2^bits rows of 1 + v floats) is refused
 * above this size, in training and loading alike: many classes with many
 * hash bits would otherwise ask for gigabytes (or, from a hostile file,
 * terabytes). */
#define MAX_TABLE_BYTES ((size_t)2 << 30)

static int table_size_ok(int dim_bits, int k, jv *err)
{
    size_t v = k == 2 ? 1 : (size_t)k;
    size_t bytes = ((size_t)1 << dim_bits) * (1 + v) * sizeof(float);
    if (bytes > MAX_TABLE_BYTES || k > 100000) {
        set_err(err, "%d classes with 2^%d hashed features need %zu MiB of weights (at most %zu): use fewer hash bits",
                k, dim_bits, bytes >> 20, MAX_TABLE_BYTES >> 20);
        return CV_EINVAL;
    }
    return 0;
}

static float idf_for(uint64_t ndocs, uint64_t df)
{
    return (float)(log((1.0 + (double)ndocs) / (1.0 + (double)df)) + 1.0);
}

struct cv_text_model *cv__text_model_new(const struct cv_text_params *p, int k, const char *const *labels,
                                         uint64_t ndocs)
{
    struct cv_text_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->p = *p;
    m->k = k;
    m->v = k == 2 ? 1 : k;
    m->stride = (uint32_t)(1 + m->v);
    m->ndocs = ndocs;
    m->idf_unseen = idf_for(ndocs, 0);
    m->labels = calloc((size_t)k, sizeof *m->labels);
    m->bias = calloc((size_t)m->v, sizeof *m->bias);
    size_t rows = (size_t)1 << p->dim_bits;
    m->tab = calloc(rows * m->stride, sizeof *m->tab);
    if (!m->labels || !m->bias || !m->tab) {
        cv_text_model_free(m);
        return NULL;
    }
    for (int i = 0; i < k; i++) {
        m->labels[i] = strdup(labels[i]);
        if (!m->labels[i]) {
            cv_text_model_free(m);
            return NULL;
        }
    }
    for (size_t j = 0; j < rows; j++)
        m->tab[j * m->stride] = m->idf_unseen;
    return m;
}

void cv_text_model_free(struct cv_text_model *m)
{
    if (!m)
        return;
    for (int i = 0; m->labels && i < m->k; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->bias);
    free(m->cal);
    free(m->tab);
    free(m);
}

int cv_text_model_classes(const struct cv_text_model *m)
{
    return m->k;
}

const char *cv_text_model_label(const struct cv_text_model *m, int k)
{
    return k >= 0 && k < m->k ? m->labels[k] : NULL;
}

const struct cv_text_params *cv_text_model_params(const struct cv_text_model *m)
{
    return &m->p;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

static void quiet(const char *s)
{
    (void)s;
}

struct fc { /* one (feature, count) of a training row */
    uint32_t idx, cnt;
};

/*
 * Sorts a row's features by index (LIBLINEAR wants them ascending): a byte-
 * wise LSD radix sort over the index's bits (dim_bits <= 24: at most three
 * passes), insertion sort for short rows. qsort's comparator calls were a
 * fifth of the training time on the SpamAssassin corpus. tmp holds n items.
 */
static void sort_row(struct fc *a, size_t n, int bits, struct fc *tmp)
{
    if (n < 48) {
        for (size_t i = 1; i < n; i++) {
            struct fc x = a[i];
            size_t j = i;
            for (; j > 0 && a[j - 1].idx > x.idx; j--)
                a[j] = a[j - 1];
            a[j] = x;
        }
        return;
    }
    struct fc *src = a, *dst = tmp;
    for (int shift = 0; shift < bits; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((src[i].idx >> shift) & 255) + 1]++;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i].idx >> shift) & 255]++] = src[i];
        struct fc *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

/* ------------------------------------------------------------------------ */
/* Calibration of the linear SVM: Platt scaling                              */
/* ------------------------------------------------------------------------ */

/*
 * Fits P(target | f) = 1 / (1 + exp(A f + B)) to decision values f[i *
 * stride] and 0/1 targets t[i] by maximum likelihood, as Platt (1999)
 * proposed, with the regularised targets of his paper ((N+ + 1) / (N+ + 2)
 * for positives, 1 / (N- + 2) for negatives) and the numerically careful
 * Newton iteration with a backtracking line search of Lin, Lin and Weng, "A
 * note on Platt's probabilistic outputs for support vector machines" (2007).
 */
static void platt_fit(const double *f, size_t stride, const int *t, int n, double *A, double *B)
{
    double npos = 0, nneg = 0;
    for (int i = 0; i < n; i++)
        t[i] ? npos++ : nneg++;
    const double hi = (npos + 1) / (npos + 2), lo = 1 / (nneg + 2);
    const double sigma = 1e-12, min_step = 1e-10;
    double a = 0, b = log((nneg + 1) / (npos + 1));
    /* the negative log-likelihood at (a, b), computed without overflow */
    double fval = 0;
    for (int i = 0; i < n; i++) {
        double z = f[(size_t)i * stride] * a + b, tt = t[i] ? hi : lo;
        fval += z >= 0 ? tt * z + log1p(exp(-z)) : (tt - 1) * z + log1p(exp(z));
    }
    for (int it = 0; it < 100; it++) {
        double h11 = sigma, h22 = sigma, h21 = 0, g1 = 0, g2 = 0;
        for (int i = 0; i < n; i++) {
            double fi = f[(size_t)i * stride], z = fi * a + b, tt = t[i] ? hi : lo, p, q;
            if (z >= 0) {
                p = exp(-z) / (1 + exp(-z));
                q = 1 / (1 + exp(-z));
            } else {
                p = 1 / (1 + exp(z));
                q = exp(z) / (1 + exp(z));
            }
            double d2 = p * q, d1 = tt - p;
            h11 += fi * fi * d2;
            h22 += d2;
            h21 += fi * d2;
            g1 += fi * d1;
            g2 += d1;
        }
        if (fabs(g1) < 1e-5 && fabs(g2) < 1e-5)
            break;
        double det = h11 * h22 - h21 * h21;
        double da = -(h22 * g1 - h21 * g2) / det, db = -(-h21 * g1 + h11 * g2) / det;
        double gd = g1 * da + g2 * db, step = 1;
        while (step >= min_step) {
            double na = a + step * da, nb = b + step * db, nf = 0;
            for (int i = 0; i < n; i++) {
                double z = f[(size_t)i * stride] * na + nb, tt = t[i] ? hi : lo;
                nf += z >= 0 ? tt * z + log1p(exp(-z)) : (tt - 1) * z + log1p(exp(z));
            }
            if (nf < fval + 0.0001 * step * gd) {
                a = na;
                b = nb;
                fval = nf;
                break;
            }
            step /= 2;
        }
        if (step < min_step)
            break; /* no progress along the Newton direction */
    }
    *A = a;
    *B = b;
}

#define CAL_FOLDS 5

/*
 * The SVM's calibration (m->cal, allocated here): decision values of every
 * training row from an SVM trained without its fold (CAL_FOLDS folds dealt
 * round-robin within each class, in row order: deterministic), then one
 * Platt sigmoid per weight vector (binary: class 1 against class 0; more
 * classes: each class against the rest). The IDF of the features is the
 * whole training part's: the folds share it (scikit-learn's
 * CalibratedClassifierCV on a fitted vectoriser does the same).
 */
static int calibrate(const struct problem *prob, const struct parameter *param, struct cv_text_model *m,
                     cv_ml_progress_fn progress, void *ud)
{
    const int n = prob->l, v = m->v;
    int *fold = malloc(((size_t)n + 1) * sizeof *fold), *cnt = calloc((size_t)m->k, sizeof *cnt);
    int *tgt = malloc(((size_t)n + 1) * sizeof *tgt);
    double *dec = malloc(((size_t)n * (size_t)v + 1) * sizeof *dec), *dv = malloc(((size_t)m->k + 1) * sizeof *dv);
    struct feature_node **sx = malloc(((size_t)n + 1) * sizeof *sx);
    double *sy = malloc(((size_t)n + 1) * sizeof *sy);
    m->cal = malloc(2 * (size_t)v * sizeof *m->cal);
    int code = 0;
    if (!fold || !cnt || !tgt || !dec || !dv || !sx || !sy || !m->cal) {
        code = CV_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++)
        fold[i] = cnt[(int)prob->y[i]]++ % CAL_FOLDS;
    for (size_t i = 0; i < (size_t)n * (size_t)v; i++)
        dec[i] = -1; /* a row whose fold model never saw its class */
    for (int f = 0; f < CAL_FOLDS; f++) {
        int nt = 0, nv = 0;
        for (int i = 0; i < n; i++) {
            if (fold[i] != f) {
                sx[nt] = prob->x[i];
                sy[nt++] = prob->y[i];
            } else {
                nv++;
            }
        }
        if (!nt || !nv)
            continue;
        struct problem sub = *prob;
        sub.l = nt;
        sub.x = sx;
        sub.y = sy;
        struct model *fm = train(&sub, param);
        if (!fm) {
            code = CV_ENOMEM;
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (fold[i] != f)
                continue;
            predict_values(fm, prob->x[i], dv);
            for (int c = 0; c < v; c++) {
                int cls = v == 1 ? 1 : c, t = -1;
                for (int j = 0; j < fm->nr_class; j++)
                    if (fm->label[j] == cls)
                        t = j;
                double val = -1;
                if (fm->nr_class == 1)
                    val = t == 0 ? 1 : -1;
                else if (fm->nr_class == 2 && t >= 0)
                    val = t == 0 ? dv[0] : -dv[0]; /* one vector, for label[0] */
                else if (t >= 0)
                    val = dv[t];
                dec[(size_t)i * v + c] = val;
            }
        }
        free_and_destroy_model(&fm);
        if (progress)
            progress(ud, "calibration", (size_t)f + 1, CAL_FOLDS);
    }
    for (int c = 0; c < v; c++) {
        int cls = v == 1 ? 1 : c;
        for (int i = 0; i < n; i++)
            tgt[i] = (int)prob->y[i] == cls;
        platt_fit(dec + c, (size_t)v, tgt, n, &m->cal[c], &m->cal[v + c]);
    }
out:
    free(fold);
    free(cnt);
    free(tgt);
    free(dec);
    free(dv);
    free(sx);
    free(sy);
    return code;
}

int cv_text_model_train(const struct cv_text_params *p, const struct cv_dataset *d, const int *rows, int nrows,
                        cv_ml_progress_fn progress, void *ud, struct cv_text_model **out, jv *err)
{
    *out = NULL;
    int code = params_check(p, err);
    if (code)
        return code;
    if (!rows)
        nrows = d->n;
    if (!d->labels || d->n_labels < 2 || nrows < 1) {
        set_err(err, nrows < 1 ? "no rows to train on" : "training needs at least two distinct labels");
        return CV_EINVAL;
    }
    int k = d->n_labels;
    if ((code = table_size_ok(p->dim_bits, k, err)))
        return code;
    int *per_class = calloc((size_t)k, sizeof *per_class);
    size_t *start = malloc(((size_t)nrows + 1) * sizeof *start);
    uint32_t *df = calloc((size_t)1 << p->dim_bits, sizeof *df);
    struct fc *all = NULL, *tmp = NULL;
    size_t nall = 0, capall = 0, captmp = 0;
    struct feature_node **x = NULL, *nodes = NULL;
    double *y = NULL;
    struct model *lm = NULL;
    struct cv_text_model *m = NULL;
    struct cv_text_scratch *s = cv_text_scratch_new();
    if (!per_class || !start || !df || !s) {
        code = CV_ENOMEM;
        goto out;
    }
    for (int i = 0; i < nrows; i++)
        per_class[d->labels[rows ? rows[i] : i]]++;
    for (int c = 0; c < k; c++) {
        if (!per_class[c]) {
            set_err(err, "label \"%s\" has no training row", d->label_names[c]);
            code = CV_EINVAL;
            goto out;
        }
    }

    /* 1. hashed counts of every row, sorted by feature (LIBLINEAR wants
     * ascending indices), and the document frequencies */
    for (int i = 0; i < nrows; i++) {
        const char *t = d->texts[rows ? rows[i] : i];
        code = cv__ml_featurize(p, t, strlen(t), s);
        if (code)
            goto out;
        if (nall + s->n > capall) {
            size_t nc = capall ? capall * 2 : 1 << 16;
            while (nc < nall + s->n)
                nc *= 2;
            struct fc *na = realloc(all, nc * sizeof *na);
            if (!na) {
                code = CV_ENOMEM;
                goto out;
            }
            all = na;
            capall = nc;
        }
        start[i] = nall;
        for (uint32_t u = 0; u < s->n; u++) {
            uint32_t slot = s->used[u];
            all[nall].idx = s->keys[slot];
            all[nall].cnt = s->counts[slot];
            df[s->keys[slot]]++;
            nall++;
        }
        if (s->n > captmp) {
            struct fc *nt = realloc(tmp, s->n * sizeof *nt);
            if (!nt) {
                code = CV_ENOMEM;
                goto out;
            }
            tmp = nt;
            captmp = s->n;
        }
        sort_row(all + start[i], s->n, p->dim_bits, tmp);
        if (progress && (i % 256 == 0 || i == nrows - 1))
            progress(ud, "features", (size_t)i + 1, (size_t)nrows);
    }
    start[nrows] = nall;

    m = cv__text_model_new(p, k, (const char *const *)d->label_names, (uint64_t)nrows);
    if (!m) {
        code = CV_ENOMEM;
        goto out;
    }
    size_t dim = (size_t)1 << p->dim_bits;
    for (size_t j = 0; j < dim; j++)
        if (df[j])
            m->tab[j * m->stride] = idf_for((uint64_t)nrows, df[j]);

    /* 2. LIBLINEAR rows: normalised sublinear TF-IDF, then the bias node and
     * the terminator */
    x = malloc((size_t)nrows * sizeof *x);
    y = malloc((size_t)nrows * sizeof *y);
    nodes = malloc((nall + 2 * (size_t)nrows) * sizeof *nodes);
    if (!x || !y || !nodes) {
        code = CV_ENOMEM;
        goto out;
    }
    struct feature_node *np = nodes;
    for (int i = 0; i < nrows; i++) {
        x[i] = np;
        y[i] = d->labels[rows ? rows[i] : i];
        double norm2 = 0;
        for (size_t a = start[i]; a < start[i + 1]; a++) {
            double tf = all[a].cnt == 1 ? 1.0 : 1.0 + log((double)all[a].cnt);
            double v = tf * (double)m->tab[(size_t)all[a].idx * m->stride];
            np[a - start[i]].index = (int)all[a].idx + 1;
            np[a - start[i]].value = v;
            norm2 += v * v;
        }
        size_t nf = start[i + 1] - start[i];
        double inv = norm2 > 0 ? 1.0 / sqrt(norm2) : 0;
        for (size_t a = 0; a < nf; a++)
            np[a].value *= inv;
        np[nf].index = (int)dim + 1; /* the bias feature */
        np[nf].value = 1.0;
        np[nf + 1].index = -1;
        np[nf + 1].value = 0;
        np += nf + 2;
    }
    free(all);
    all = NULL;

    struct problem prob = {.l = nrows, .n = (int)dim + 1, .y = y, .x = x, .bias = 1.0};
    struct parameter param = {
        .solver_type = p->solver == CV_TEXT_SOLVER_LR_DUAL ? L2R_LR_DUAL
                       : p->solver == CV_TEXT_SOLVER_SVM   ? L2R_L2LOSS_SVC_DUAL
                                                           : L2R_LR,
        .eps = p->eps,
        .C = p->C,
    };
    const char *why = check_parameter(&prob, &param);
    if (why) {
        set_err(err, "LIBLINEAR refused the parameters: %s", why);
        code = CV_EINVAL;
        goto out;
    }
    set_print_string_function(quiet);
    if (p->solver == CV_TEXT_SOLVER_SVM && (code = calibrate(&prob, &param, m, progress, ud)))
        goto out;
    if (progress)
        progress(ud, "training", 0, 0);
    lm = train(&prob, &param);
    if (!lm) {
        code = CV_ENOMEM;
        goto out;
    }
    if (progress)
        progress(ud, "training", 1, 1);

    /* 3. copy the coefficients: vector c scores class (v == 1 ? 1 : c) */
    for (int c = 0; c < m->v; c++) {
        int cls = m->v == 1 ? 1 : c, li = -1;
        for (int t = 0; t < lm->nr_class; t++)
            if (lm->label[t] == cls)
                li = t;
        if (li < 0) { /* cannot happen: every class has rows */
            set_err(err, "LIBLINEAR lost class %d", cls);
            code = CV_EINVAL;
            goto out;
        }
        for (size_t j = 0; j < dim; j++)
            m->tab[j * m->stride + 1 + (size_t)c] = (float)get_decfun_coef(lm, (int)j + 1, li);
        /* the bias feature's coefficient times its value (1); LIBLINEAR's
         * get_decfun_coef gives 0 for that index */
        m->bias[c] = (float)get_decfun_bias(lm, li);
    }
    *out = m;
    m = NULL;
out:
    if (lm)
        free_and_destroy_model(&lm);
    cv_text_model_free(m);
    cv_text_scratch_free(s);
    free(per_class);
    free(start);
    free(df);
    free(all);
    free(tmp);
    free(x);
    free(y);
    free(nodes);
    if (code == CV_ENOMEM)
        set_err(err, "out of memory");
    return code;
}

/* ------------------------------------------------------------------------ */
/* Prediction                                                                */
/* ------------------------------------------------------------------------ */

int cv_text_model_predict(const struct cv_text_model *m, const char *text, size_t len, struct cv_text_scratch *s,
                          double *probs)
{
    if (s->nscores < m->v) {
        double *n = realloc(s->scores, (size_t)m->v * sizeof *n);
        if (!n)
            return CV_ENOMEM;
        s->scores = n;
        s->nscores = m->v;
    }
    int code = cv__ml_featurize(&m->p, text, len, s);
    if (code)
        return code;
    double *sc = s->scores, norm2 = 0;
    const uint32_t stride = m->stride;
    const int v = m->v;
    memset(sc, 0, (size_t)v * sizeof *sc);
    const uint32_t ahead = 8; /* rows are scattered over the table: ask for them early */
    for (uint32_t u = 0; u < s->n && u < ahead; u++)
        __builtin_prefetch(m->tab + (size_t)s->keys[s->used[u]] * stride);
    for (uint32_t u = 0; u < s->n; u++) {
        if (u + ahead < s->n)
            __builtin_prefetch(m->tab + (size_t)s->keys[s->used[u + ahead]] * stride);
        uint32_t slot = s->used[u], c = s->counts[slot];
        const float *row = m->tab + (size_t)s->keys[slot] * stride;
        double x = (c == 1 ? 1.0 : 1.0 + log((double)c)) * (double)row[0];
        norm2 += x * x;
        if (v == 1) {
            sc[0] += x * (double)row[1];
        } else {
            for (int k = 0; k < v; k++)
                sc[k] += x * (double)row[1 + k];
        }
    }
    double inv = norm2 > 0 ? 1.0 / sqrt(norm2) : 0;
    /* the logistic function of the decision value f, or an SVM's Platt sigmoid */
    const double *cal = m->cal;
    if (v == 1) {
        double f = sc[0] * inv + (double)m->bias[0];
        double p1 = 1.0 / (1.0 + exp(cal ? cal[0] * f + cal[1] : -f));
        probs[0] = 1.0 - p1;
        probs[1] = p1;
    } else {
        double sum = 0;
        for (int k = 0; k < v; k++) {
            double f = sc[k] * inv + (double)m->bias[k];
            probs[k] = 1.0 / (1.0 + exp(cal ? cal[k] * f + cal[v + k] : -f));
            sum += probs[k];
        }
        for (int k = 0; k < v; k++)
            probs[k] /= sum;
    }
    int best = 0;
    for (int k = 1; k < m->k; k++)
        if (probs[k] > probs[best])
            best = k;
    return best;
}

jv cv_text_prediction_json(const struct cv_text_model *m, const double *probs)
{
    int best = 0;
    for (int k = 1; k < m->k; k++)
        if (probs[k] > probs[best])
            best = k;
    jv scores = jv_object();
    for (int k = 0; k < m->k; k++)
        scores = jv_object_set(scores, jv_string(m->labels[k]), jv_number(probs[k]));
    jv o = jv_object();
    o = jv_object_set(o, jv_string("label"), jv_string(m->labels[best]));
    o = jv_object_set(o, jv_string("confidence"), jv_number(probs[best]));
    return jv_object_set(o, jv_string("scores"), scores);
}

/* ------------------------------------------------------------------------ */
/* The file format (docs/models.md): little-endian throughout                */
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

static void put_f32(struct wbuf *w, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(w, u);
}

static void put_f64(struct wbuf *w, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    put_u64(w, u);
}

/* Seed of the file checksum (cv_ml_hash64 of every byte before it). */
#define FILE_SEED 0x63686b73756dULL

int cv_text_model_save(const struct cv_text_model *m, unsigned char **out, size_t *len)
{
    struct wbuf w = {0};
    size_t dim = (size_t)1 << m->p.dim_bits;
    put(&w, CV_TEXT_MODEL_MAGIC, 8);
    put_u32(&w, CV_TEXT_MODEL_FORMAT);
    unsigned char shape[4] = {(unsigned char)m->p.dim_bits, (unsigned char)m->p.word_ngram_max,
                              (unsigned char)m->p.char_ngram_min, (unsigned char)m->p.char_ngram_max};
    put(&w, shape, 4);
    put_u32(&w, (uint32_t)m->k);
    put_u32(&w, (uint32_t)m->v);
    put_u64(&w, m->ndocs);
    put_f64(&w, m->p.C);
    put_u32(&w, (uint32_t)m->p.solver);
    put_f64(&w, m->p.eps);
    for (int i = 0; i < m->k; i++) {
        size_t n = strlen(m->labels[i]);
        put_u32(&w, (uint32_t)n);
        put(&w, m->labels[i], n);
    }
    put_f32(&w, m->idf_unseen);
    for (int c = 0; c < m->v; c++)
        put_f32(&w, m->bias[c]);
    /* format 2: an SVM's Platt sigmoids, A then B per vector */
    for (int c = 0; m->cal && c < 2 * m->v; c++)
        put_f64(&w, m->cal[c]);
    /* only the rows that differ from an unseen feature's */
    uint32_t nrows = 0;
    for (size_t j = 0; j < dim; j++) {
        const float *row = m->tab + j * m->stride;
        int seen = memcmp(&row[0], &m->idf_unseen, sizeof(float)) != 0;
        for (int c = 0; !seen && c < m->v; c++)
            seen = row[1 + c] != 0;
        nrows += (uint32_t)seen;
    }
    put_u32(&w, nrows);
    for (size_t j = 0; j < dim; j++) {
        const float *row = m->tab + j * m->stride;
        int seen = memcmp(&row[0], &m->idf_unseen, sizeof(float)) != 0;
        for (int c = 0; !seen && c < m->v; c++)
            seen = row[1 + c] != 0;
        if (!seen)
            continue;
        put_u32(&w, (uint32_t)j);
        for (uint32_t c = 0; c < m->stride; c++)
            put_f32(&w, row[c]);
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
    int short_read;
};

static const unsigned char *take(struct rbuf *r, size_t n)
{
    if (r->short_read || r->len - r->pos < n) {
        r->short_read = 1;
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

static float get_f32(struct rbuf *r)
{
    uint32_t u = get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double get_f64(struct rbuf *r)
{
    uint64_t u = get_u64(r);
    double f;
    memcpy(&f, &u, 8);
    return f;
}

int cv_text_model_load(const void *bytes, size_t len, struct cv_text_model **out, jv *err)
{
    *out = NULL;
    struct rbuf r = {.b = bytes, .len = len};
    const unsigned char *magic = take(&r, 8);
    if (!magic || memcmp(magic, CV_TEXT_MODEL_MAGIC, 8)) {
        set_err(err, "not a conveyor text model (wrong magic)");
        return CV_EINVAL;
    }
    uint32_t format = get_u32(&r);
    if (!r.short_read && format > CV_TEXT_MODEL_FORMAT) {
        set_err(err, "text model format %u is newer than this conveyor's (%d)", format, CV_TEXT_MODEL_FORMAT);
        return CV_EUNSUPPORTED;
    }
    if (r.short_read || format < 1 || len < 8 + 4 + 8) {
        set_err(err, "text model file truncated or of an unknown format version");
        return CV_EINVAL;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum |= (uint64_t)((const unsigned char *)bytes)[len - 8 + (size_t)i] << (8 * i);
    if (sum != cv_ml_hash64(bytes, len - 8, FILE_SEED)) {
        set_err(err, "text model file corrupt (checksum mismatch)");
        return CV_EINVAL;
    }
    r.len = len - 8;
    struct cv_text_params p;
    cv_text_params_init(&p);
    const unsigned char *shape = take(&r, 4);
    uint32_t k = get_u32(&r), v = get_u32(&r);
    uint64_t ndocs = get_u64(&r);
    p.C = get_f64(&r);
    p.solver = (int)get_u32(&r);
    p.eps = get_f64(&r);
    if (r.short_read) {
        set_err(err, "text model file truncated");
        return CV_EINVAL;
    }
    p.dim_bits = shape[0];
    p.word_ngram_max = shape[1];
    p.char_ngram_min = shape[2];
    p.char_ngram_max = shape[3];
    jv perr = jv_invalid();
    if (params_check(&p, &perr) || (format < 2 && p.solver == CV_TEXT_SOLVER_SVM) || k < 2 || v != (k == 2 ? 1 : k) || table_size_ok(p.dim_bits, (int)k, &perr)) {
        jv_free(perr);
        set_err(err, "text model file has invalid parameters");
        return CV_EINVAL;
    }
    char **labels = calloc(k, sizeof *labels);
    struct cv_text_model *m = NULL;
    int code = 0;
    if (!labels)
        return CV_ENOMEM;
    for (uint32_t i = 0; i < k && !code; i++) {
        uint32_t n = get_u32(&r);
        const unsigned char *s = take(&r, n);
        if (!s) {
            code = CV_EINVAL;
            break;
        }
        labels[i] = strndup((const char *)s, n);
        if (!labels[i] || strlen(labels[i]) != n)
            code = labels[i] ? CV_EINVAL : CV_ENOMEM;
    }
    if (!code) {
        m = cv__text_model_new(&p, (int)k, (const char *const *)labels, ndocs);
        if (!m)
            code = CV_ENOMEM;
    }
    if (!code) {
        m->idf_unseen = get_f32(&r);
        size_t dim = (size_t)1 << p.dim_bits;
        for (size_t j = 0; j < dim; j++)
            m->tab[j * m->stride] = m->idf_unseen;
        for (uint32_t c = 0; c < v; c++)
            m->bias[c] = get_f32(&r);
        if (p.solver == CV_TEXT_SOLVER_SVM) {
            m->cal = malloc(2 * (size_t)v * sizeof *m->cal);
            if (!m->cal)
                code = CV_ENOMEM;
            for (uint32_t c = 0; !code && c < 2 * v; c++) {
                m->cal[c] = get_f64(&r);
                if (!isfinite(m->cal[c]))
                    code = CV_EINVAL;
            }
        }
        uint32_t nrows = get_u32(&r);
        int64_t last = -1;
        for (uint32_t i = 0; i < nrows && !r.short_read && !code; i++) {
            uint32_t j = get_u32(&r);
            if ((int64_t)j <= last || j >= dim) {
                code = CV_EINVAL;
                break;
            }
            last = j;
            for (uint32_t c = 0; c < m->stride; c++)
                m->tab[(size_t)j * m->stride + c] = get_f32(&r);
        }
        if (!code && (r.short_read || r.pos != r.len))
            code = CV_EINVAL;
    }
    for (uint32_t i = 0; i < k; i++)
        free(labels[i]);
    free(labels);
    if (code) {
        cv_text_model_free(m);
        set_err(err, code == CV_ENOMEM ? "out of memory" : "text model file is malformed");
        return code;
    }
    *out = m;
    return 0;
}
