/*
 * test_tabular.c — the tabular scorer (src/ml/tabular.h): schema inference
 * and declaration, one-hot encoding with missing and unknown values, binary
 * labels and their refusals, SHAP contributions summed back to features
 * (contributions + bias = the margin), the file format (saved and loaded
 * bit-for-bit equal in scores and contributions, saved again to the same
 * bytes; corrupt, truncated, foreign and newer files refused), determinism
 * for a seed, the `score` output, and AUC / log-loss on hand-computed cases.
 *
 * Data is generated here (a fixed linear congruential sequence), written to
 * a temporary directory.
 */
#include "conveyor.h"
#include "ml/tabular.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    if (*tmpdir)
        nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(tabular, .fini = teardown, .timeout = 120);

static const char *write_file(const char *name, const char *content)
{
    static char path[256];
    if (!*tmpdir) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/cv-test-tab-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static const char *errmsg(jv e)
{
    return jv_get_kind(e) == JV_KIND_STRING ? jv_string_value(e) : "(no message)";
}

/* A synthetic credit-like data set: income (numeric, some missing), age
 * (numeric), color (red/green/blue, some missing), label yes/no depending on
 * income, age and color with noise. */
static const char *make_data(const char *name, int n)
{
    static char buf[1 << 16];
    size_t o = 0;
    uint32_t s = 12345;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "income,age,color,label\n");
    static const char *colors[] = {"red", "green", "blue"};
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        int income = (int)(s >> 16) % 100;
        s = s * 1103515245u + 12345u;
        int age = 18 + (int)(s >> 16) % 60;
        s = s * 1103515245u + 12345u;
        int c = (int)(s >> 16) % 3;
        s = s * 1103515245u + 12345u;
        int noise = (int)(s >> 16) % 30;
        double z = income - 50 + (c == 0 ? 25 : c == 1 ? -10 : 0) + (age - 48) * 0.3 + noise - 15;
        char inc[16] = "";
        if (i % 17 != 3)
            snprintf(inc, sizeof inc, "%d", income);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s,%d,%s,%s\n", inc, age, i % 23 == 5 ? "" : colors[c],
                              z > 0 ? "yes" : "no");
    }
    cr_assert_lt(o, sizeof buf - 1);
    return write_file(name, buf);
}

struct fixture {
    struct cv_table t;
    struct cv_tab_schema s;
    char *names[2];
    int *y;
    float *x;
};

static void load_fixture(struct fixture *f, int n)
{
    memset(f, 0, sizeof *f);
    jv err = jv_invalid();
    const char *path = make_data("train.csv", n);
    cr_assert_eq(cv_table_read(path, &f->t, &err), 0, "%s", errmsg(err));
    f->y = malloc(sizeof *f->y * (size_t)f->t.n);
    cr_assert_eq(cv_tab_labels(&f->t, "train.csv", NULL, 0, "label", NULL, f->names, f->y, &err), 0, "%s",
                 errmsg(err));
    cr_assert_eq(cv_tab_schema_infer(&f->t, NULL, 0, "label", jv_null(), &f->s, &err), 0, "%s", errmsg(err));
    f->x = malloc(sizeof *f->x * (size_t)f->t.n * (size_t)f->s.ncols);
    for (int i = 0; i < f->t.n; i++)
        cr_assert_eq(cv_tab_encode(&f->s, f->t.rows[i], f->t.csv, f->x + (size_t)i * f->s.ncols, NULL, &err), 0,
                     "%s", errmsg(err));
    jv_free(err);
}

static void free_fixture(struct fixture *f)
{
    cv_table_cleanup(&f->t);
    cv_tab_schema_cleanup(&f->s);
    free(f->names[0]);
    free(f->names[1]);
    free(f->y);
    free(f->x);
}

static struct cv_tab_model *train_algo(struct fixture *f, uint64_t seed, int algo)
{
    struct cv_tab_params p;
    cv_tab_params_init(&p);
    p.algo = algo;
    p.seed = seed;
    p.rounds = 60;
    p.early_stopping = 10;
    struct cv_tab_model *m = NULL;
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_train(&p, &f->s, (const char *const *)f->names, f->x, f->y, f->t.n, NULL, NULL, &m,
                                    &err),
                 0, "%s", errmsg(err));
    jv_free(err);
    return m;
}

/* XGBoost (the SHAP tests are about it) */
static struct cv_tab_model *train(struct fixture *f, uint64_t seed)
{
    return train_algo(f, seed, CV_TAB_ALGO_XGBOOST);
}

/* ---- schema --------------------------------------------------------------- */

Test(tabular, schema_is_inferred_from_the_data)
{
    struct fixture f;
    load_fixture(&f, 200);
    cr_assert_eq(f.s.n, 3);
    cr_assert_str_eq(f.s.f[0].name, "income");
    cr_assert_eq(f.s.f[0].type, CV_TAB_NUMERIC);
    cr_assert_eq(f.s.f[1].type, CV_TAB_NUMERIC);
    cr_assert_str_eq(f.s.f[2].name, "color");
    cr_assert_eq(f.s.f[2].type, CV_TAB_CATEGORICAL);
    cr_assert_eq(f.s.f[2].ncats, 3);
    cr_assert_str_eq(f.s.f[2].cats[0], "blue"); /* sorted by bytes */
    cr_assert_str_eq(f.s.f[2].cats[1], "green");
    cr_assert_str_eq(f.s.f[2].cats[2], "red");
    cr_assert_eq(f.s.ncols, 5);
    cr_assert_eq(f.s.f[2].col, 2);
    /* labels sorted by bytes, the second positive */
    cr_assert_str_eq(f.names[0], "no");
    cr_assert_str_eq(f.names[1], "yes");
    free_fixture(&f);
}

Test(tabular, json_lines_numbers_texts_booleans_and_all_missing)
{
    const char *path = write_file("t.jsonl", "{\"a\": 1, \"b\": \"x\", \"c\": true, \"d\": null, \"y\": 0}\n"
                                             "\n"
                                             "{\"a\": 2.5, \"b\": 3, \"c\": false, \"y\": 1}\n");
    struct cv_table t;
    struct cv_tab_schema s;
    jv err = jv_invalid();
    cr_assert_eq(cv_table_read(path, &t, &err), 0, "%s", errmsg(err));
    cr_assert_eq(t.n, 2);
    cr_assert_eq(t.lines[1], 3);
    cr_assert_eq(cv_tab_schema_infer(&t, NULL, 0, "y", jv_null(), &s, &err), 0, "%s", errmsg(err));
    cr_assert_eq(s.n, 4); /* columns sorted: a b c d */
    cr_assert_eq(s.f[0].type, CV_TAB_NUMERIC);
    cr_assert_eq(s.f[1].type, CV_TAB_CATEGORICAL); /* "x" and 3 (as "3") */
    cr_assert_eq(s.f[1].ncats, 2);
    cr_assert_str_eq(s.f[1].cats[0], "3");
    cr_assert_eq(s.f[2].type, CV_TAB_CATEGORICAL);
    cr_assert_str_eq(s.f[2].cats[1], "true");
    cr_assert_eq(s.f[3].type, CV_TAB_NUMERIC); /* never present */
    jv js = cv_tab_schema_json(&s);
    cr_assert_eq(jv_array_length(jv_copy(js)), 4);
    /* the JSON form declares the same schema back */
    struct cv_tab_schema s2;
    cr_assert_eq(cv_tab_schema_infer(&t, NULL, 0, "y", js, &s2, &err), 0, "%s", errmsg(err));
    cr_assert_eq(s2.ncols, s.ncols);
    cv_tab_schema_cleanup(&s2);
    cv_tab_schema_cleanup(&s);
    cv_table_cleanup(&t);
    jv_free(err);
}

Test(tabular, a_declared_schema_selects_and_types_features)
{
    struct fixture f;
    load_fixture(&f, 50);
    jv err = jv_invalid();
    struct cv_tab_schema s;
    jv decl = jv_parse("[{\"name\": \"age\", \"type\": \"categorical\"},"
                       " {\"name\": \"color\", \"type\": \"categorical\", \"categories\": [\"red\", \"blue\"]}]");
    cr_assert_eq(cv_tab_schema_infer(&f.t, NULL, 0, "label", decl, &s, &err), 0, "%s", errmsg(err));
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.f[0].name, "age");
    cr_assert_eq(s.f[0].type, CV_TAB_CATEGORICAL);
    cr_assert_eq(s.f[1].ncats, 2);
    cv_tab_schema_cleanup(&s);

    cr_assert_eq(cv_tab_schema_infer(&f.t, NULL, 0, "label", jv_parse("[{\"name\": \"nope\", \"type\": \"numeric\"}]"),
                                     &s, &err),
                 CV_EINVAL);
    cr_assert(strstr(errmsg(err), "\"nope\" is not in the data"), "%s", errmsg(err));
    cr_assert_eq(cv_tab_schema_infer(&f.t, NULL, 0, "label", jv_parse("[{\"name\": \"label\", \"type\": \"numeric\"}]"),
                                     &s, &err),
                 CV_EINVAL);
    cr_assert(strstr(errmsg(err), "is the label"), "%s", errmsg(err));
    cr_assert_eq(cv_tab_schema_infer(&f.t, NULL, 0, "label", jv_parse("[{\"name\": \"age\", \"type\": \"date\"}]"),
                                     &s, &err),
                 CV_EINVAL);
    jv_free(err);
    free_fixture(&f);
}

/* ---- encoding -------------------------------------------------------------- */

/* cv_tab_encode borrows its row: parse, encode, free. */
static int encode(const struct cv_tab_schema *s, const char *json, int csv, float *x, int *unknown, jv *err)
{
    jv row = jv_parse(json);
    int rc = cv_tab_encode(s, row, csv, x, unknown, err);
    jv_free(row);
    return rc;
}

Test(tabular, one_hot_missing_unknown_and_wrong_types)
{
    struct fixture f;
    load_fixture(&f, 50);
    float x[5];
    int unknown = 0;
    jv err = jv_invalid();
    cr_assert_eq(encode(&f.s, ("{\"income\": 12, \"age\": 30, \"color\": \"green\"}"), 0, x, &unknown,
                               &err),
                 0);
    cr_assert_float_eq(x[0], 12, 0);
    cr_assert_float_eq(x[1], 30, 0);
    cr_assert(x[2] == 0 && x[3] == 1 && x[4] == 0);
    cr_assert_eq(encode(&f.s, ("{\"age\": null, \"color\": \"purple\"}"), 0, x, &unknown, &err), 0);
    cr_assert(isnan(x[0]) && isnan(x[1]) && isnan(x[2]) && isnan(x[3]) && isnan(x[4]));
    cr_assert_eq(unknown, 1);
    cr_assert_eq(encode(&f.s, ("{\"income\": \"lots\"}"), 0, x, NULL, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "feature \"income\" is numeric; got \"lots\""), "%s", errmsg(err));
    cr_assert_eq(encode(&f.s, ("{\"color\": [1]}"), 0, x, NULL, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "is an array"), "%s", errmsg(err));
    /* a JSON text holding a number is not a number (only CSV texts are parsed) */
    cr_assert_eq(encode(&f.s, ("{\"age\": \"30\"}"), 0, x, NULL, &err), CV_EINVAL);
    cr_assert_eq(encode(&f.s, ("{\"age\": \" 30 \"}"), 1, x, NULL, &err), 0);
    cr_assert_float_eq(x[1], 30, 0);
    cr_assert_eq(encode(&f.s, ("[1]"), 0, x, NULL, &err), CV_EINVAL);
    jv_free(err);
    free_fixture(&f);
}

/* ---- labels ---------------------------------------------------------------- */

Test(tabular, labels_must_be_binary)
{
    jv err = jv_invalid();
    struct cv_table t;
    int y[8];
    char *names[2] = {NULL, NULL};
    cr_assert_eq(cv_table_read(write_file("three.csv", "a,y\n1,p\n2,q\n\n3,r\n"), &t, &err), 0);
    cr_assert_eq(cv_tab_labels(&t, "three.csv", NULL, 0, "y", NULL, names, y, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "three.csv:5: a third label \"r\""), "%s", errmsg(err));
    cv_table_cleanup(&t);

    cr_assert_eq(cv_table_read(write_file("one.csv", "a,y\n1,p\n2,p\n"), &t, &err), 0);
    cr_assert_eq(cv_tab_labels(&t, "one.csv", NULL, 0, "y", NULL, names, y, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "every row has the label \"p\""), "%s", errmsg(err));
    cv_table_cleanup(&t);

    cr_assert_eq(cv_table_read(write_file("nolabel.csv", "a,y\n1,p\n2,\n"), &t, &err), 0);
    cr_assert_eq(cv_tab_labels(&t, "nolabel.csv", NULL, 0, "y", NULL, names, y, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "nolabel.csv:3: no field \"y\""), "%s", errmsg(err));
    cv_table_cleanup(&t);

    cr_assert_eq(cv_table_read(write_file("two.jsonl", "{\"y\": 1}\n{\"y\": 0}\n{\"y\": 1}\n"), &t, &err), 0);
    cr_assert_eq(cv_tab_labels(&t, "two.jsonl", NULL, 0, "y", NULL, names, y, &err), 0, "%s", errmsg(err));
    cr_assert_str_eq(names[0], "0");
    cr_assert_str_eq(names[1], "1");
    cr_assert(y[0] == 1 && y[1] == 0 && y[2] == 1);
    free(names[0]);
    free(names[1]);
    names[0] = names[1] = NULL;
    cr_assert_eq(cv_tab_labels(&t, "two.jsonl", NULL, 0, "y", "0", names, y, &err), 0);
    cr_assert_str_eq(names[1], "0");
    cr_assert(y[0] == 0 && y[1] == 1 && y[2] == 0);
    free(names[0]);
    free(names[1]);
    names[0] = names[1] = NULL;
    cr_assert_eq(cv_tab_labels(&t, "two.jsonl", NULL, 0, "y", "7", names, y, &err), CV_EINVAL);
    cv_table_cleanup(&t);

    cr_assert_eq(cv_table_read(write_file("empty.csv", "a,y\n"), &t, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "no rows"), "%s", errmsg(err));
    cr_assert_eq(cv_table_read(write_file("bad.jsonl", "{\"y\": 1}\n[2]\n"), &t, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "bad.jsonl:2: not a JSON object"), "%s", errmsg(err));
    cr_assert_eq(cv_table_read(write_file("quote.csv", "a,y\n\"1,p\n"), &t, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "quote.csv:2: a quoted field is not closed"), "%s", errmsg(err));
    jv_free(err);
}

/* ---- the model ------------------------------------------------------------- */

Test(tabular, shap_contributions_and_bias_sum_to_the_margin)
{
    struct fixture f;
    load_fixture(&f, 400);
    struct cv_tab_model *m = train(&f, 42);
    int n = f.t.n, F = f.s.n;
    double *score = malloc(sizeof *score * (size_t)n), *margin = malloc(sizeof *margin * (size_t)n);
    double *c = malloc(sizeof *c * (size_t)n * (size_t)(F + 1));
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_predict(m, f.x, n, score, margin, c, &err), 0, "%s", errmsg(err));
    int correct = 0, color_used = 0;
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int j = 0; j <= F; j++)
            sum += c[(size_t)i * (F + 1) + j];
        cr_assert_float_eq(sum, margin[i], 1e-4, "row %d: contributions %g, margin %g", i, sum, margin[i]);
        cr_assert_float_eq(score[i], 1 / (1 + exp(-margin[i])), 1e-6);
        correct += (score[i] >= 0.5) == f.y[i];
        color_used |= c[(size_t)i * (F + 1) + 2] != 0;
    }
    cr_assert_gt(correct, n * 8 / 10, "training accuracy %d/%d", correct, n);
    cr_assert(color_used, "the categorical feature gets contributions");
    free(score);
    free(margin);
    free(c);
    jv_free(err);
    cv_tab_model_free(m);
    free_fixture(&f);
}

Test(tabular, saved_and_loaded_predicts_bit_for_bit_the_same)
{
    struct fixture f;
    load_fixture(&f, 300);
    struct cv_tab_model *m = train(&f, 7), *m2 = NULL;
    unsigned char *b = NULL, *b2 = NULL;
    size_t len = 0, len2 = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    cr_assert(len > 8 && !memcmp(b, CV_TAB_MODEL_MAGIC, 8));
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_rounds(m2), cv_tab_model_rounds(m));
    cr_assert_str_eq(cv_tab_model_label(m2, 1), "yes");
    cr_assert_eq(cv_tab_model_schema(m2)->ncols, f.s.ncols);
    int n = f.t.n, F = f.s.n;
    double *s1 = calloc((size_t)n, sizeof *s1), *s2 = calloc((size_t)n, sizeof *s2);
    double *c1 = calloc((size_t)n * (size_t)(F + 1), sizeof *c1), *c2 = calloc((size_t)n * (size_t)(F + 1), sizeof *c2);
    cr_assert_eq(cv_tab_model_predict(m, f.x, n, s1, NULL, c1, &err), 0);
    cr_assert_eq(cv_tab_model_predict(m2, f.x, n, s2, NULL, c2, &err), 0);
    cr_assert(!memcmp(s1, s2, sizeof *s1 * (size_t)n), "scores differ after loading");
    cr_assert(!memcmp(c1, c2, sizeof *c1 * (size_t)n * (size_t)(F + 1)), "contributions differ after loading");
    cr_assert_eq(cv_tab_model_save(m2, &b2, &len2), 0);
    cr_assert(len2 == len && !memcmp(b, b2, len), "saving a loaded model gives other bytes");
    cv_tab_model_free(m2);
    m2 = NULL;

    /* refusals */
    b[len / 2] ^= 1;
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "checksum"), "%s", errmsg(err));
    b[len / 2] ^= 1;
    cr_assert_eq(cv_tab_model_load(b, len - 9, &m2, &err), CV_EINVAL);
    cr_assert_eq(cv_tab_model_load(b, 10, &m2, &err), CV_EINVAL);
    cr_assert_eq(cv_tab_model_load("CVTXTMDL\1\0\0\0", 12, &m2, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "wrong magic"), "%s", errmsg(err));
    b[8] = CV_TAB_MODEL_FORMAT + 1;
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EUNSUPPORTED);
    cr_assert(strstr(errmsg(err), "newer"), "%s", errmsg(err));
    cr_assert_null(m2);
    free(b);
    free(b2);
    free(s1);
    free(s2);
    free(c1);
    free(c2);
    jv_free(err);
    cv_tab_model_free(m);
    free_fixture(&f);
}

/* Files with a valid checksum but an altered header (the checksum
 * recomputed after flipping one bit) are refused or loaded, never crash:
 * the header parser faces what a hostile file could hold. (The booster's
 * own bytes: altered_boosters_are_refused_before_xgboost_sees_them.) */
Test(tabular, altered_files_with_valid_checksums_are_handled)
{
    struct fixture f;
    load_fixture(&f, 120);
    struct cv_tab_model *m = train(&f, 3);
    unsigned char *b = NULL;
    size_t len = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    /* the header ends where the u64 booster length B is followed by B bytes and the checksum */
    size_t header = 0;
    for (size_t pos = 8; pos + 16 <= len && !header; pos++) {
        uint64_t blen = 0;
        for (int i = 0; i < 8; i++)
            blen |= (uint64_t)b[pos + (size_t)i] << (8 * i);
        if (blen == len - 16 - pos && b[pos + 8] == '{')
            header = pos + 8;
    }
    cr_assert_gt(header, 60);
    int refused = 0, tried = 0;
    for (size_t pos = 8; pos < header; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[pos] ^= (unsigned char)(1u << bit);
            uint64_t sum = cv_ml_hash64(b, len - 8, 0x74616263686b73ULL);
            for (int i = 0; i < 8; i++)
                b[len - 8 + (size_t)i] = (unsigned char)(sum >> (8 * i));
            struct cv_tab_model *m2 = NULL;
            jv err = jv_invalid();
            int rc = cv_tab_model_load(b, len, &m2, &err);
            tried++;
            if (rc) {
                refused++;
                cr_assert(jv_get_kind(err) == JV_KIND_STRING, "a refusal without a message at byte %zu", pos);
                cr_assert_null(m2);
            } else {
                /* a load that passed must still predict (or fail cleanly) */
                double sc = 0;
                jv e2 = jv_invalid();
                const struct cv_tab_schema *s2 = cv_tab_model_schema(m2);
                float *x = calloc((size_t)s2->ncols + 1, sizeof *x);
                (void)cv_tab_model_predict(m2, x, 1, &sc, NULL, NULL, &e2);
                free(x);
                jv_free(e2);
            }
            jv_free(err);
            cv_tab_model_free(m2);
            b[pos] ^= (unsigned char)(1u << bit);
        }
    }
    cr_assert_gt(refused, tried / 4, "only %d of %d altered files refused", refused, tried);
    free(b);
    cv_tab_model_free(m);
    free_fixture(&f);
}

Test(tabular, training_is_deterministic_for_a_seed)
{
    struct fixture f;
    load_fixture(&f, 300);
    struct cv_tab_model *a = train(&f, 11), *b = train(&f, 11), *c = train(&f, 12);
    unsigned char *ba, *bb, *bc;
    size_t la, lb, lc;
    cr_assert_eq(cv_tab_model_save(a, &ba, &la), 0);
    cr_assert_eq(cv_tab_model_save(b, &bb, &lb), 0);
    cr_assert_eq(cv_tab_model_save(c, &bc, &lc), 0);
    cr_assert(la == lb && !memcmp(ba, bb, la), "the same seed gave two models");
    cr_assert(la != lc || memcmp(ba, bc, la), "another seed gave the same model (subsampling ignores the seed?)");
    free(ba);
    free(bb);
    free(bc);
    cv_tab_model_free(a);
    cv_tab_model_free(b);
    cv_tab_model_free(c);
    free_fixture(&f);
}

Test(tabular, training_refuses_one_class_and_bad_parameters)
{
    struct fixture f;
    load_fixture(&f, 50);
    struct cv_tab_params p;
    cv_tab_params_init(&p);
    struct cv_tab_model *m = NULL;
    jv err = jv_invalid();
    int *ones = malloc(sizeof *ones * (size_t)f.t.n);
    for (int i = 0; i < f.t.n; i++)
        ones[i] = 1;
    cr_assert_eq(cv_tab_model_train(&p, &f.s, (const char *const *)f.names, f.x, ones, f.t.n, NULL, NULL, &m, &err),
                 CV_EINVAL);
    cr_assert(strstr(errmsg(err), "both labels"), "%s", errmsg(err));
    p.max_depth = 0;
    cr_assert_eq(cv_tab_model_train(&p, &f.s, (const char *const *)f.names, f.x, f.y, f.t.n, NULL, NULL, &m, &err),
                 CV_EINVAL);
    cr_assert_null(m);
    free(ones);
    jv_free(err);
    free_fixture(&f);
}

Test(tabular, score_explains_with_the_top_features)
{
    struct fixture f;
    load_fixture(&f, 300);
    struct cv_tab_model *m = train(&f, 42);
    jv out, err = jv_invalid();
    int unknown = 0;
    cr_assert_eq(cv_tab_model_score(m, jv_parse("{\"income\": 90, \"age\": 60, \"color\": \"red\"}"), 2, &out,
                                    &unknown, &err),
                 0, "%s", errmsg(err));
    jv score = jv_object_get(jv_copy(out), jv_string("score"));
    jv label = jv_object_get(jv_copy(out), jv_string("label"));
    jv ex = jv_object_get(jv_copy(out), jv_string("explanation"));
    cr_assert_gt(jv_number_value(score), 0.5);
    cr_assert_str_eq(jv_string_value(label), "yes");
    cr_assert_eq(jv_array_length(jv_copy(ex)), 2);
    jv e0 = jv_array_get(jv_copy(ex), 0), e1 = jv_array_get(jv_copy(ex), 1);
    double c0 = jv_number_value(jv_object_get(jv_copy(e0), jv_string("contribution")));
    double c1 = jv_number_value(jv_object_get(jv_copy(e1), jv_string("contribution")));
    cr_assert_geq(fabs(c0), fabs(c1));
    jv fname = jv_object_get(jv_copy(e0), jv_string("feature"));
    cr_assert_str_eq(jv_string_value(fname), "income");
    jv_free(fname);
    jv_free(e0);
    jv_free(e1);
    jv_free(score);
    jv_free(label);
    jv_free(ex);
    jv_free(out);
    cr_assert_eq(unknown, 0);

    cr_assert_eq(cv_tab_model_score(m, jv_parse("{\"income\": 90, \"color\": \"mauve\"}"), 0, &out, &unknown, &err),
                 0);
    cr_assert_eq(unknown, 1);
    jv all = jv_object_get(jv_copy(out), jv_string("explanation"));
    cr_assert_eq(jv_array_length(all), 3);
    jv_free(out);
    cr_assert_eq(cv_tab_model_score(m, jv_parse("{\"income\": {}}"), 0, &out, NULL, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "\"income\" is an object"), "%s", errmsg(err));
    cr_assert(!jv_is_valid(out));
    jv_free(err);
    cv_tab_model_free(m);
    free_fixture(&f);
}

/* Threads sharing one model (as the engine's workers will) get the scores
 * one thread gets: the model's lock serialises the booster. */
struct scorer {
    struct cv_tab_model *m;
    double got[64];
    int bad;
};

static void *score_many(void *arg)
{
    struct scorer *sc = arg;
    for (int rep = 0; rep < 5; rep++)
        for (int i = 0; i < 64; i++) {
            jv f = jv_object_set(jv_object(), jv_string("income"), jv_number(i * 1.5));
            f = jv_object_set(f, jv_string("age"), jv_number(20 + i % 50));
            f = jv_object_set(f, jv_string("color"), jv_string(i % 3 ? "red" : "blue"));
            jv out, err = jv_invalid();
            if (cv_tab_model_score(sc->m, f, 3, &out, NULL, &err)) {
                sc->bad++;
            } else {
                jv v = jv_object_get(out, jv_string("score"));
                sc->got[i] = jv_number_value(v);
                jv_free(v);
            }
            jv_free(err);
        }
    return NULL;
}

Test(tabular, threads_share_a_model)
{
    struct fixture f;
    load_fixture(&f, 200);
    struct cv_tab_model *m = train(&f, 5);
    struct scorer one = {.m = m}, many[4];
    score_many(&one);
    pthread_t t[4];
    for (int k = 0; k < 4; k++) {
        many[k] = (struct scorer){.m = m};
        cr_assert_eq(pthread_create(&t[k], NULL, score_many, &many[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(t[k], NULL);
        cr_assert_eq(many[k].bad, 0);
        cr_assert(!memcmp(many[k].got, one.got, sizeof one.got), "thread %d scored differently", k);
    }
    cv_tab_model_free(m);
    free_fixture(&f);
}

/* ---- metrics ---------------------------------------------------------------- */

static double getnum(jv o, const char *k)
{
    jv v = jv_object_get(jv_copy(o), jv_string(k));
    double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : NAN;
    jv_free(v);
    return d;
}

Test(tabular, auc_logloss_and_accuracy_on_hand_computed_cases)
{
    const char *names[2] = {"no", "yes"};
    /* positives at 0.9 and 0.4, negatives at 0.4 and 0.1: of the 4 pairs, 3
     * ordered right and one tie (counted half): AUC 3.5 / 4 */
    int truth[4] = {1, 1, 0, 0};
    double score[4] = {0.9, 0.4, 0.4, 0.1};
    jv r = cv_tab_evaluate(names, truth, score, 4);
    cr_assert_float_eq(getnum(r, "auc"), 0.875, 1e-12);
    double ll = -(log(0.9) + log(0.4) + log(0.6) + log(0.9)) / 4;
    cr_assert_float_eq(getnum(r, "logloss"), ll, 1e-12);
    cr_assert_float_eq(getnum(r, "accuracy"), 0.75, 1e-12); /* 0.4 for a positive is a miss */
    cr_assert_float_eq(getnum(r, "positives"), 2, 0);
    jv_free(r);
    int one[2] = {1, 1};
    r = cv_tab_evaluate(names, one, score, 2);
    jv auc = jv_object_get(jv_copy(r), jv_string("auc"));
    cr_assert_eq(jv_get_kind(auc), JV_KIND_NULL);
    jv_free(auc);
    jv_free(r);
    /* a perfect and a reversed ranking */
    int t2[4] = {0, 0, 1, 1};
    double up[4] = {0.1, 0.2, 0.3, 0.4}, down[4] = {0.4, 0.3, 0.2, 0.1};
    r = cv_tab_evaluate(names, t2, up, 4);
    cr_assert_float_eq(getnum(r, "auc"), 1.0, 1e-12);
    jv_free(r);
    r = cv_tab_evaluate(names, t2, down, 4);
    cr_assert_float_eq(getnum(r, "auc"), 0.0, 1e-12);
    jv_free(r);
}

/* Recomputes a tabular file's checksum after an edit. */
static void fix_checksum(unsigned char *b, size_t len)
{
    uint64_t sum = cv_ml_hash64(b, len - 8, 0x74616263686b73ULL);
    for (int i = 0; i < 8; i++)
        b[len - 8 + (size_t)i] = (unsigned char)(sum >> (8 * i));
}

/* Where the booster's bytes start in a format 2 or 3 XGBoost (or blend) file. */
static size_t booster_start(const unsigned char *b, size_t len)
{
    for (size_t pos = 8; pos + 16 <= len; pos++) {
        uint64_t blen = 0;
        for (int i = 0; i < 8; i++)
            blen |= (uint64_t)b[pos + (size_t)i] << (8 * i);
        if (blen == len - 16 - pos && b[pos + 8] == '{')
            return pos + 8;
    }
    return 0;
}

/* The booster bytes pass through cv__tab_booster_check before XGBoost's
 * loader sees them: bits flipped all over the booster (with the checksum
 * recomputed, as a hostile file would have it) give a refusal with a
 * message, or a model that still predicts, never a crash or a runaway
 * allocation (ASan and the suite's timeout would say). One alteration
 * known to crash XGBoost 1.7 without the check: a child index out of range. */
Test(tabular, altered_boosters_are_refused_before_xgboost_sees_them)
{
    struct fixture f;
    load_fixture(&f, 120);
    struct cv_tab_model *m = train(&f, 3);
    unsigned char *b = NULL;
    size_t len = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    size_t start = booster_start(b, len);
    cr_assert_gt(start, 60);
    int refused = 0, tried = 0;
    for (size_t pos = start; pos < len - 8; pos += 13) {
        int bit = (int)(pos % 8);
        b[pos] ^= (unsigned char)(1u << bit);
        fix_checksum(b, len);
        struct cv_tab_model *m2 = NULL;
        jv err = jv_invalid();
        int rc = cv_tab_model_load(b, len, &m2, &err);
        tried++;
        if (rc) {
            refused++;
            cr_assert(jv_get_kind(err) == JV_KIND_STRING, "a refusal without a message at byte %zu", pos);
            cr_assert_null(m2);
        } else {
            double sc = 0, c[8];
            jv e2 = jv_invalid();
            float *x = calloc((size_t)f.s.ncols + 1, sizeof *x);
            (void)cv_tab_model_predict(m2, x, 1, &sc, NULL, f.s.n + 1 <= 8 ? c : NULL, &e2);
            free(x);
            jv_free(e2);
        }
        jv_free(err);
        cv_tab_model_free(m2);
        b[pos] ^= (unsigned char)(1u << bit);
    }
    cr_assert_gt(refused, 0, "no altered booster refused (of %d)", tried);

    /* a left child pointing far outside the tree: "left_children" is a typed
     * int32 array ('[' '$' 'l' '#' count, then big-endian values) */
    fix_checksum(b, len);
    const char key[] = "left_children[$l#";
    unsigned char *k = memmem(b + start, len - start, key, sizeof key - 1);
    cr_assert_not_null(k);
    unsigned char *first = k + sizeof key - 1 + 9; /* after the count ('L' and 8 bytes) */
    first[0] = 0x00;
    first[1] = 0x0f;
    first[2] = 0xff;
    first[3] = 0xff;
    fix_checksum(b, len);
    struct cv_tab_model *m2 = NULL;
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "tree 0: a child index is out of range"), "%s", errmsg(err));
    first[0] = first[1] = first[2] = 0;
    first[3] = 1; /* as it was: the root's left child is node 1 */
    fix_checksum(b, len);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), 0, "%s", errmsg(err));
    cv_tab_model_free(m2);
    m2 = NULL;
    /* the learner's feature count lowered below the split features (XGBoost
     * sizes its SHAP output with it): "num_feature" after "learner_model_param" */
    const char lmp[] = "learner_model_param";
    unsigned char *lp = memmem(b + start, len - start, lmp, sizeof lmp - 1);
    cr_assert_not_null(lp);
    unsigned char *nf = memmem(lp, (size_t)(b + len - lp), "num_featureSL", 13);
    cr_assert_not_null(nf);
    unsigned char *digit = nf + 13 + 8; /* 'L' and the 8-byte length of a 1-character text */
    cr_assert_eq(*digit, (unsigned char)('0' + f.s.ncols), "num_feature is %c", *digit);
    *digit = '1';
    fix_checksum(b, len);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "booster is malformed: tree 0: "), "%s", errmsg(err));
    jv_free(err);
    free(b);
    cv_tab_model_free(m);
    free_fixture(&f);
}

/* A format 1 file (XGBoost only, no algorithm block) still loads, and
 * predicts what the same model in format 3 does. */
Test(tabular, format_1_files_load)
{
    struct fixture f;
    load_fixture(&f, 150);
    struct cv_tab_model *m = train(&f, 5), *m1 = NULL;
    unsigned char *b = NULL;
    size_t len = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    size_t start = booster_start(b, len);
    cr_assert_gt(start, 60);
    /* format 3 puts 4 + 4 * 8 bytes (algorithm, C, three AUCs) before the u64 booster length */
    size_t block = start - 8 - 36;
    unsigned char *v1 = malloc(len);
    memcpy(v1, b, block);
    memcpy(v1 + block, b + block + 36, len - block - 36);
    size_t len1 = len - 36;
    v1[8] = 1;
    fix_checksum(v1, len1);
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_load(v1, len1, &m1, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_algo(m1), CV_TAB_ALGO_XGBOOST);
    int n = f.t.n;
    double *s1 = calloc((size_t)n, sizeof *s1), *s2 = calloc((size_t)n, sizeof *s2);
    cr_assert_eq(cv_tab_model_predict(m, f.x, n, s1, NULL, NULL, &err), 0);
    cr_assert_eq(cv_tab_model_predict(m1, f.x, n, s2, NULL, NULL, &err), 0);
    cr_assert(!memcmp(s1, s2, sizeof *s1 * (size_t)n), "the format 1 file predicts otherwise");
    free(s1);
    free(s2);
    free(v1);
    free(b);
    jv_free(err);
    cv_tab_model_free(m);
    cv_tab_model_free(m1);
    free_fixture(&f);
}

/* The linear model: contributions coef * (x - mean) per feature plus the bias
 * give the margin; it learns the fixture (whose label is linear in its
 * features); saved and loaded it predicts bit-for-bit the same and saves to
 * the same bytes; an altered value is refused. */
Test(tabular, linear_model_explains_saves_and_loads)
{
    struct fixture f;
    load_fixture(&f, 400);
    struct cv_tab_model *m = train_algo(&f, 42, CV_TAB_ALGO_LINEAR), *m2 = NULL;
    cr_assert_eq(cv_tab_model_algo(m), CV_TAB_ALGO_LINEAR);
    cr_assert_eq(cv_tab_model_rounds(m), 0);
    int n = f.t.n, F = f.s.n;
    double *score = malloc(sizeof *score * (size_t)n), *margin = malloc(sizeof *margin * (size_t)n);
    double *c = malloc(sizeof *c * (size_t)n * (size_t)(F + 1));
    double *s2 = malloc(sizeof *s2 * (size_t)n), *c2 = malloc(sizeof *c2 * (size_t)n * (size_t)(F + 1));
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_predict(m, f.x, n, score, margin, c, &err), 0, "%s", errmsg(err));
    int correct = 0;
    double mean_income_contrib = 0;
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int j = 0; j <= F; j++)
            sum += c[(size_t)i * (F + 1) + j];
        cr_assert_float_eq(sum, margin[i], 1e-9, "row %d: contributions %g, margin %g", i, sum, margin[i]);
        cr_assert_float_eq(score[i], 1 / (1 + exp(-margin[i])), 1e-12);
        correct += (score[i] >= 0.5) == f.y[i];
        mean_income_contrib += c[(size_t)i * (F + 1) + 0];
    }
    cr_assert_gt(correct, n * 8 / 10, "training accuracy %d/%d", correct, n);
    /* coef * (x - mean): the contributions of a numeric feature average to 0 */
    cr_assert_float_eq(mean_income_contrib / n, 0, 1e-9);
    /* higher income, higher score (the fixture's label grows with income) */
    float lo[8], hi[8];
    memcpy(lo, f.x, sizeof *lo * (size_t)f.s.ncols);
    memcpy(hi, f.x, sizeof *hi * (size_t)f.s.ncols);
    lo[0] = 10;
    hi[0] = 90;
    double slo, shi;
    cr_assert_eq(cv_tab_model_predict(m, lo, 1, &slo, NULL, NULL, &err), 0);
    cr_assert_eq(cv_tab_model_predict(m, hi, 1, &shi, NULL, NULL, &err), 0);
    cr_assert_gt(shi, slo);

    unsigned char *b = NULL, *b2 = NULL;
    size_t len = 0, len2 = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_algo(m2), CV_TAB_ALGO_LINEAR);
    cr_assert_eq(cv_tab_model_predict(m2, f.x, n, s2, NULL, c2, &err), 0);
    cr_assert(!memcmp(score, s2, sizeof *s2 * (size_t)n), "scores differ after loading");
    cr_assert(!memcmp(c, c2, sizeof *c2 * (size_t)n * (size_t)(F + 1)), "contributions differ after loading");
    cr_assert_eq(cv_tab_model_save(m2, &b2, &len2), 0);
    cr_assert(len2 == len && !memcmp(b, b2, len), "saving a loaded model gives other bytes");
    cv_tab_model_free(m2);
    m2 = NULL;
    /* a scale of 0 (bytes of the first column's scale zeroed): refused */
    size_t ncols = (size_t)f.s.ncols, scale0 = len - 8 - 8 - ncols * 32 + 8;
    memset(b + scale0, 0, 8);
    fix_checksum(b, len);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EINVAL);
    cr_assert(strstr(errmsg(err), "not a finite number"), "%s", errmsg(err));
    /* a truncated linear block */
    fix_checksum(b, len - 8);
    cr_assert_eq(cv_tab_model_load(b, len - 8, &m2, &err), CV_EINVAL);
    cr_assert_null(m2);
    jv out = jv_invalid();
    /* the score output explains with the same contributions */
    jv row = jv_parse("{\"income\": 80, \"age\": 30, \"color\": \"red\"}");
    cr_assert_eq(cv_tab_model_score(m, row, 0, &out, NULL, &err), 0, "%s", errmsg(err));
    jv ex = jv_object_get(jv_copy(out), jv_string("explanation"));
    cr_assert_eq(jv_array_length(jv_copy(ex)), F);
    jv first = jv_array_get(ex, 0);
    jv feat = jv_object_get(first, jv_string("feature"));
    cr_assert_str_eq(jv_string_value(feat), "income", "income dominates: %s", jv_string_value(feat));
    jv_free(feat);
    jv_free(out);
    free(b);
    free(b2);
    free(score);
    free(margin);
    free(c);
    free(s2);
    free(c2);
    jv_free(err);
    cv_tab_model_free(m);
    free_fixture(&f);
}

/* auto cross-validates the three on the training rows and chooses by the
 * rule of bench/SELECTION.md (the AUCs and the fold statistics reported,
 * the choice consistent with them), and is deterministic; too few rows of a
 * class to cross-validate: XGBoost. */
Test(tabular, auto_chooses_by_cross_validated_auc)
{
    struct fixture f;
    load_fixture(&f, 300);
    struct cv_tab_model *a = train_algo(&f, 9, CV_TAB_ALGO_AUTO), *b = train_algo(&f, 9, CV_TAB_ALGO_AUTO);
    double auc[3];
    cv_tab_model_cv_auc(a, auc);
    cr_assert(auc[0] > 0.5 && auc[0] <= 1 && auc[1] > 0.5 && auc[1] <= 1 && auc[2] > 0.5 && auc[2] <= 1,
              "cv AUCs %g %g %g", auc[0], auc[1], auc[2]);
    /* bench/SELECTION.md: the blend unless the best single model (a tie:
     * linear) beats it by more than one standard error of the per-fold
     * differences, which the card reports */
    jv ch = jv_object_get(cv_tab_model_params_json(a), jv_string("autoChoice"));
    cr_assert_eq(jv_get_kind(ch), JV_KIND_OBJECT, "the card says how auto chose");
    jv dj = jv_object_get(jv_copy(ch), jv_string("bestSingleMinusBlend")),
       sj = jv_object_get(jv_copy(ch), jv_string("standardError"));
    cr_assert(jv_get_kind(dj) == JV_KIND_NUMBER && jv_get_kind(sj) == JV_KIND_NUMBER && jv_number_value(sj) >= 0);
    int want = jv_number_value(dj) > jv_number_value(sj)
                   ? (auc[1] >= auc[0] ? CV_TAB_ALGO_LINEAR : CV_TAB_ALGO_XGBOOST)
                   : CV_TAB_ALGO_BLEND;
    /* the mean fold difference is the difference of the mean AUCs (the
     * blend's and the single model's, on the same folds) */
    double single = auc[1] >= auc[0] ? auc[1] : auc[0];
    cr_assert(fabs(jv_number_value(dj) - (single - auc[2])) < 1e-9, "%g vs %g", jv_number_value(dj),
              single - auc[2]);
    jv_free(dj);
    jv_free(sj);
    jv_free(ch);
    cr_assert_eq(cv_tab_model_algo(a), want);
    unsigned char *ba, *bb;
    size_t la, lb;
    cr_assert_eq(cv_tab_model_save(a, &ba, &la), 0);
    cr_assert_eq(cv_tab_model_save(b, &bb, &lb), 0);
    cr_assert(la == lb && !memcmp(ba, bb, la), "auto is not deterministic");
    jv pj = cv_tab_model_params_json(a);
    jv cvj = jv_object_get(jv_copy(pj), jv_string("cvAuc"));
    cr_assert_eq(jv_get_kind(cvj), JV_KIND_OBJECT);
    jv_free(cvj);
    /* the AUCs and the choice survive the file */
    struct cv_tab_model *c = NULL;
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_load(ba, la, &c, &err), 0, "%s", errmsg(err));
    double auc2[3];
    cv_tab_model_cv_auc(c, auc2);
    cr_assert(auc2[0] == auc[0] && auc2[1] == auc[1] && auc2[2] == auc[2] &&
              cv_tab_model_algo(c) == cv_tab_model_algo(a));
    jv_free(pj);
    pj = cv_tab_model_params_json(a);
    cvj = jv_object_get(jv_copy(pj), jv_string("cvAuc"));
    jv bj = jv_object_get(cvj, jv_string("blend"));
    cr_assert(jv_get_kind(bj) == JV_KIND_NUMBER && jv_number_value(bj) == auc[2], "the card lists the blend's AUC");
    jv_free(bj);
    jv_free(pj);
    free(ba);
    free(bb);
    cv_tab_model_free(a);
    cv_tab_model_free(b);
    cv_tab_model_free(c);

    /* more than 20 folds (the CLI's limit; the library checks the folds only
     * with early stopping): auto still chooses, on every fold */
    struct cv_tab_params p25;
    cv_tab_params_init(&p25);
    p25.seed = 9;
    p25.rounds = 20;
    p25.early_stopping = 0;
    p25.folds = 25;
    c = NULL;
    cr_assert_eq(cv_tab_model_train(&p25, &f.s, (const char *const *)f.names, f.x, f.y, f.t.n, NULL, NULL, &c, &err),
                 0, "%s", errmsg(err));
    jv p25j = cv_tab_model_params_json(c);
    jv c25 = jv_object_get(jv_copy(p25j), jv_string("autoChoice"));
    cr_assert_eq(jv_get_kind(c25), JV_KIND_OBJECT, "25 folds: the card says how auto chose");
    jv_free(c25);
    jv_free(p25j);
    cv_tab_model_free(c);
    free_fixture(&f);

    /* one row of a class: nothing to cross-validate with */
    struct cv_table t;
    memset(&t, 0, sizeof t);
    cr_assert_eq(cv_table_read(write_file("few.csv", "x,y\n1,a\n2,a\n3,b\n4,a\n"), &t, &err), 0, "%s", errmsg(err));
    struct cv_tab_schema s;
    char *names[2] = {NULL, NULL};
    int y[4];
    cr_assert_eq(cv_tab_labels(&t, "few.csv", NULL, 0, "y", NULL, names, y, &err), 0);
    cr_assert_eq(cv_tab_schema_infer(&t, NULL, 0, "y", jv_null(), &s, &err), 0);
    float x[4] = {1, 2, 3, 4};
    struct cv_tab_params p;
    cv_tab_params_init(&p);
    p.rounds = 5;
    cr_assert_eq(cv_tab_model_train(&p, &s, (const char *const *)names, x, y, 4, NULL, NULL, &c, &err), 0, "%s",
                 errmsg(err));
    cr_assert_eq(cv_tab_model_algo(c), CV_TAB_ALGO_XGBOOST);
    cv_tab_model_free(c);
    cv_tab_schema_cleanup(&s);
    free(names[0]);
    free(names[1]);
    cv_table_cleanup(&t);
    jv_free(err);
}

/* The blend is the mean of the XGBoost and linear models trained alone (the
 * same seed: the same folds, rounds and coefficients), margin for margin;
 * its contributions plus bias give its margin; saved and loaded it predicts
 * bit-for-bit the same (scores, margins, contributions) and saves to the same
 * bytes; its cross-validated AUC comes with the other two. */
Test(tabular, blend_averages_explains_saves_and_loads)
{
    struct fixture f;
    load_fixture(&f, 300);
    struct cv_tab_model *m = train_algo(&f, 11, CV_TAB_ALGO_BLEND), *m2 = NULL;
    struct cv_tab_model *mx = train_algo(&f, 11, CV_TAB_ALGO_XGBOOST), *ml = train_algo(&f, 11, CV_TAB_ALGO_LINEAR);
    cr_assert_eq(cv_tab_model_algo(m), CV_TAB_ALGO_BLEND);
    cr_assert_eq(cv_tab_model_rounds(m), cv_tab_model_rounds(mx));
    double auc[3];
    cv_tab_model_cv_auc(m, auc);
    cr_assert(auc[0] > 0.5 && auc[1] > 0.5 && auc[2] > 0.5 && auc[2] <= 1, "cv AUCs %g %g %g", auc[0], auc[1], auc[2]);
    int n = f.t.n, F = f.s.n;
    size_t nc = (size_t)n * (size_t)(F + 1);
    double *score = malloc(sizeof *score * (size_t)n), *margin = malloc(sizeof *margin * (size_t)n);
    double *c = malloc(sizeof *c * nc), *s2 = malloc(sizeof *s2 * (size_t)n), *m2g = malloc(sizeof *m2g * (size_t)n);
    double *c2 = malloc(sizeof *c2 * nc), *sx = malloc(sizeof *sx * (size_t)n), *mgx = malloc(sizeof *mgx * (size_t)n);
    double *sl = malloc(sizeof *sl * (size_t)n), *mgl = malloc(sizeof *mgl * (size_t)n);
    jv err = jv_invalid();
    cr_assert_eq(cv_tab_model_predict(m, f.x, n, score, margin, c, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_predict(mx, f.x, n, sx, mgx, NULL, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_predict(ml, f.x, n, sl, mgl, NULL, &err), 0, "%s", errmsg(err));
    for (int i = 0; i < n; i++) {
        cr_assert(margin[i] == 0.5 * (mgx[i] + mgl[i]), "row %d: margin %.17g, xgboost %.17g, linear %.17g", i,
                  margin[i], mgx[i], mgl[i]);
        cr_assert_float_eq(score[i], 1 / (1 + exp(-margin[i])), 1e-12);
        double sum = 0;
        for (int j = 0; j <= F; j++)
            sum += c[(size_t)i * (F + 1) + j];
        /* XGBoost's SHAP values are floats: their sum matches its margin to float precision */
        cr_assert_float_eq(sum, margin[i], 1e-4, "row %d: contributions %g, margin %g", i, sum, margin[i]);
    }

    unsigned char *b = NULL, *b2 = NULL;
    size_t len = 0, len2 = 0;
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    cr_assert_eq(b[8], 3);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), 0, "%s", errmsg(err));
    cr_assert_eq(cv_tab_model_algo(m2), CV_TAB_ALGO_BLEND);
    cr_assert_eq(cv_tab_model_rounds(m2), cv_tab_model_rounds(m));
    double auc2[3];
    cv_tab_model_cv_auc(m2, auc2);
    cr_assert(auc2[0] == auc[0] && auc2[1] == auc[1] && auc2[2] == auc[2]);
    cr_assert_eq(cv_tab_model_predict(m2, f.x, n, s2, m2g, c2, &err), 0, "%s", errmsg(err));
    cr_assert(!memcmp(score, s2, sizeof *s2 * (size_t)n), "scores differ after loading");
    cr_assert(!memcmp(margin, m2g, sizeof *m2g * (size_t)n), "margins differ after loading");
    cr_assert(!memcmp(c, c2, sizeof *c2 * nc), "contributions differ after loading");
    cr_assert_eq(cv_tab_model_save(m2, &b2, &len2), 0);
    cr_assert(len2 == len && !memcmp(b, b2, len), "saving a loaded blend gives other bytes");
    cv_tab_model_free(m2);
    m2 = NULL;

    /* the card names both parts */
    jv pj = cv_tab_model_params_json(m);
    jv a = jv_object_get(jv_copy(pj), jv_string("algo")), C = jv_object_get(jv_copy(pj), jv_string("C"));
    jv r = jv_object_get(pj, jv_string("rounds"));
    cr_assert(!strcmp(jv_string_value(a), "blend") && jv_number_value(C) == 1 &&
              jv_number_value(r) == cv_tab_model_rounds(m));
    jv_free(a);
    jv_free(C);
    jv_free(r);

    /* refusals: a truncated blend, and a blend in a file claiming format 2 */
    size_t start = booster_start(b, len);
    cr_assert_gt(start, 60);
    fix_checksum(b, start);
    cr_assert_eq(cv_tab_model_load(b, start, &m2, &err), CV_EINVAL);
    cr_assert_null(m2);
    free(b); /* its booster length now holds the truncated file's checksum */
    cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
    b[8] = 2;
    fix_checksum(b, len);
    cr_assert_eq(cv_tab_model_load(b, len, &m2, &err), CV_EINVAL);
    cr_assert_null(m2);

    /* the score output explains with the blended contributions */
    jv out = jv_invalid();
    jv row = jv_parse("{\"income\": 80, \"age\": 30, \"color\": \"red\"}");
    cr_assert_eq(cv_tab_model_score(m, row, 0, &out, NULL, &err), 0, "%s", errmsg(err));
    jv ex = jv_object_get(jv_copy(out), jv_string("explanation"));
    cr_assert_eq(jv_array_length(ex), F);
    jv_free(out);

    free(b);
    free(score);
    free(margin);
    free(c);
    free(s2);
    free(m2g);
    free(c2);
    free(sx);
    free(mgx);
    free(sl);
    free(mgl);
    jv_free(err);
    cv_tab_model_free(m);
    cv_tab_model_free(mx);
    cv_tab_model_free(ml);
    free_fixture(&f);
}

/* A format 2 file (no blend AUC in its algorithm block) still loads, for
 * each algorithm format 2 knows, without a blend figure, and predicts what
 * the same model in format 3 does; a blend cannot be format 2. */
Test(tabular, format_2_files_load)
{
    struct fixture f;
    load_fixture(&f, 150);
    const int algos[] = {CV_TAB_ALGO_XGBOOST, CV_TAB_ALGO_LINEAR, CV_TAB_ALGO_BLEND};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        int algo = algos[a];
        struct cv_tab_model *m = train_algo(&f, 5, algo), *m2 = NULL;
        unsigned char *b = NULL;
        size_t len = 0;
        cr_assert_eq(cv_tab_model_save(m, &b, &len), 0);
        /* the blend's AUC, the last 8 bytes of the algorithm block: before the
         * linear block (u32 columns, 32 bytes a column, the f64 bias) or the
         * booster's u64 length */
        size_t linear = (size_t)f.s.ncols * 32 + 8 + 4, at;
        if (algo == CV_TAB_ALGO_XGBOOST)
            at = booster_start(b, len) - 8 - 8;
        else if (algo == CV_TAB_ALGO_LINEAR)
            at = len - 8 - linear - 8;
        else
            at = booster_start(b, len) - 8 - linear - 8;
        unsigned char *v2 = malloc(len);
        memcpy(v2, b, at);
        memcpy(v2 + at, b + at + 8, len - at - 8);
        size_t len2 = len - 8;
        v2[8] = 2;
        fix_checksum(v2, len2);
        jv err = jv_invalid();
        int rc = cv_tab_model_load(v2, len2, &m2, &err);
        if (algo == CV_TAB_ALGO_BLEND) {
            cr_assert_eq(rc, CV_EINVAL, "format 2 has no blend");
            cr_assert_null(m2);
            /* the same bytes as format 3 (the AUC put back) load */
            memcpy(v2, b, len);
            cr_assert_eq(cv_tab_model_load(v2, len, &m2, &err), 0, "%s", errmsg(err));
        } else {
            cr_assert_eq(rc, 0, "%s", errmsg(err));
            cr_assert_eq(cv_tab_model_algo(m2), algo);
            double auc[3], auc2[3];
            cv_tab_model_cv_auc(m, auc);
            cv_tab_model_cv_auc(m2, auc2);
            for (int k = 0; k < 2; k++)
                cr_assert(auc2[k] == auc[k] || (isnan(auc[k]) && isnan(auc2[k])), "AUC %d: %g, was %g", k, auc2[k],
                          auc[k]);
            cr_assert(isnan(auc2[2]));
        }
        int n = f.t.n;
        double *s1 = calloc((size_t)n, sizeof *s1), *s2 = calloc((size_t)n, sizeof *s2);
        cr_assert_eq(cv_tab_model_predict(m, f.x, n, s1, NULL, NULL, &err), 0);
        cr_assert_eq(cv_tab_model_predict(m2, f.x, n, s2, NULL, NULL, &err), 0);
        cr_assert(!memcmp(s1, s2, sizeof *s1 * (size_t)n), "the format 2 file predicts otherwise");
        free(s1);
        free(s2);
        free(v2);
        free(b);
        jv_free(err);
        cv_tab_model_free(m);
        cv_tab_model_free(m2);
    }
    free_fixture(&f);
}
