/*
 * fuzz_textmodel.c — libFuzzer target for the text model file loader
 * (cv_text_model_load, src/ml/textclf.c; docs/models.md "File format").
 *
 * The input is a model file without its checksum (fuzz_ml.h appends the
 * right one), so every header field, label, calibration and feature row is
 * reached. A load must either fail with a message and no model, or give a
 * model that predicts (probabilities that sum to 1) and saves to bytes that
 * load again to a model predicting bit-for-bit the same.
 *
 * The loader accepts tables up to 2 GiB by design (MAX_TABLE_BYTES: 2^24
 * hashed features with many classes); inputs declaring more than 256 MiB are
 * skipped here, or every such input would hit the fuzzer's RSS limit.
 */
#include "fuzz_ml.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_FILE_SEED 0x63686b73756dULL

static const char *const texts[] = {"", "refund my card payment", "Ünïcödé ΣΊΣΥΦΟΣ 12345 x", "a a a a b"};

static void predict_all(const struct cv_text_model *m, struct cv_text_scratch *s, double *out)
{
    int k = cv_text_model_classes(m);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        double *p = out + t * (size_t)k, sum = 0;
        int best = cv_text_model_predict(m, texts[t], strlen(texts[t]), s, p);
        if (best < 0 || best >= k)
            abort();
        for (int c = 0; c < k; c++)
            sum += p[c];
        if (!(fabs(sum - 1) < 1e-6) && !isnan(sum)) /* NaN: weights of a hostile file; no crash is the point */
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the declared table: 2^bits rows of (1 + V) floats (header: magic, u32, 4 x u8, u32 K, u32 V) */
    if (size >= 24) {
        unsigned bits = data[12];
        uint32_t v = (uint32_t)data[20] | (uint32_t)data[21] << 8 | (uint32_t)data[22] << 16 | (uint32_t)data[23] << 24;
        if (bits <= 24 && ((uint64_t)1 << bits) * (1 + (uint64_t)v) * 4 > ((uint64_t)256 << 20))
            return 0;
    }
    unsigned char *b = fuzz_with_checksum(data, size, TEXT_FILE_SEED);
    struct cv_text_model *m = NULL, *m2 = NULL;
    jv err = jv_invalid();
    int rc = cv_text_model_load(b, size + 8, &m, &err);
    if (rc) {
        if (m || jv_get_kind(err) != JV_KIND_STRING)
            abort(); /* a refusal has a message and no model */
        goto out;
    }
    struct cv_text_scratch *s = cv_text_scratch_new();
    int k = cv_text_model_classes(m);
    size_t n = sizeof texts / sizeof texts[0];
    double *p1 = calloc(n * (size_t)k, sizeof *p1), *p2 = calloc(n * (size_t)k, sizeof *p2);
    if (!s || !p1 || !p2)
        abort();
    predict_all(m, s, p1);
    jv pj = cv_text_prediction_json(m, p1);
    jv_free(pj);
    unsigned char *again = NULL;
    size_t len = 0;
    if (cv_text_model_save(m, &again, &len))
        abort();
    if (cv_text_model_load(again, len, &m2, &err))
        abort(); /* what conveyor saved must load */
    predict_all(m2, s, p2);
    if (memcmp(p1, p2, n * (size_t)k * sizeof *p1))
        abort(); /* saved and loaded: bit-for-bit the same */
    free(again);
    free(p1);
    free(p2);
    cv_text_scratch_free(s);
out:
    jv_free(err);
    cv_text_model_free(m);
    cv_text_model_free(m2);
    free(b);
    return 0;
}
