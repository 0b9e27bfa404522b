/*
 * fuzz_tabmodel.c — libFuzzer target for the tabular model file loader
 * (cv_tab_model_load, src/ml/tabular.c and the booster check of
 * src/ml/tabxgb.c; docs/models.md "Tabular file format").
 *
 * The input is a model file without its checksum (fuzz_ml.h appends the
 * right one), so the header, the schema, the linear block and the XGBoost
 * booster's UBJSON are all reached: XGBoost's own loader must never see a
 * booster that could crash it. A load must either fail with a message and no
 * model, or give a model that scores rows (one of zeros, one of missing
 * values, one of large values) with contributions, and saves to bytes that
 * load again and score bit-for-bit the same.
 */
#include "fuzz_ml.h"
#include "ml/tabular.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TAB_FILE_SEED 0x74616263686b73ULL

/* scores and contributions of three rows; 0 or abort */
static void score_rows(struct cv_tab_model *m, double *score, double *contribs)
{
    const struct cv_tab_schema *s = cv_tab_model_schema(m);
    size_t w = (size_t)s->ncols;
    float *x = calloc(3 * w + 1, sizeof *x);
    if (!x)
        abort();
    for (size_t c = 0; c < w; c++) {
        x[w + c] = NAN;
        x[2 * w + c] = 1e30f;
    }
    jv err = jv_invalid();
    if (cv_tab_model_predict(m, x, 3, score, NULL, contribs, &err) && jv_get_kind(err) != JV_KIND_STRING)
        abort(); /* a failure has a message */
    jv_free(err);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *b = fuzz_with_checksum(data, size, TAB_FILE_SEED);
    struct cv_tab_model *m = NULL, *m2 = NULL;
    jv err = jv_invalid();
    int rc = cv_tab_model_load(b, size + 8, &m, &err);
    if (rc) {
        if (m || jv_get_kind(err) != JV_KIND_STRING)
            abort();
        goto out;
    }
    size_t f = (size_t)cv_tab_model_schema(m)->n + 1;
    double s1[3] = {0}, s2[3] = {0};
    double *c1 = calloc(3 * f, sizeof *c1), *c2 = calloc(3 * f, sizeof *c2);
    if (!c1 || !c2)
        abort();
    score_rows(m, s1, c1);
    /* the `score` path: a JSON row with every feature missing */
    jv out = jv_invalid();
    if (cv_tab_model_score(m, jv_object(), 3, &out, NULL, &err) == 0)
        jv_free(out);
    unsigned char *again = NULL;
    size_t len = 0;
    if (cv_tab_model_save(m, &again, &len))
        abort();
    if (cv_tab_model_load(again, len, &m2, &err))
        abort(); /* what conveyor saved must load */
    score_rows(m2, s2, c2);
    if (memcmp(s1, s2, sizeof s1) || memcmp(c1, c2, 3 * f * sizeof *c1))
        abort(); /* saved and loaded: bit-for-bit the same */
    free(again);
    free(c1);
    free(c2);
out:
    jv_free(err);
    cv_tab_model_free(m);
    cv_tab_model_free(m2);
    free(b);
    return 0;
}
