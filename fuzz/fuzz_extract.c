/*
 * fuzz_extract.c — libFuzzer target for extractor definitions and the
 * extractor itself (src/ml/extract.c; docs/extract.md).
 *
 * The input is a YAML extractor definition, then a NUL byte, then a text
 * (no NUL: the whole input is the definition, and the text is a fixed
 * sample). cv__extractor_load must either refuse with one configuration
 * error object ({type, status, title, detail}) or compile; a compiled
 * extractor runs on the text and on the sample, and each run gives an
 * object {fields, missing, confidence} or an invalid jv carrying an error
 * object. User patterns are PCRE2 with JIT under conveyor's match limits: a
 * pattern that backtracks catastrophically must end in the runtime error,
 * within the fuzzer's timeout.
 */
#include "ml/extract.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char sample[] = "Invoice INV-2024-001 Ref: ab-123456, PO 4411, total EUR 1.234,56 (€1,234.56),"
                             " due 31/12/2024 or 2024-12-31; IBAN DE89 3704 0044 0532 0130 00; card "
                             "4111 1111 1111 1111; mail billing@example.com, +33 1 23 45 67 89, "
                             "https://example.com/pay?x=1 — Ünïcödé ΣΊΣΥΦΟΣ 東京";

static int is_error_object(jv e)
{
    int ok = jv_get_kind(e) == JV_KIND_OBJECT;
    if (ok) {
        jv t = jv_object_get(jv_copy(e), jv_string("type")), s = jv_object_get(jv_copy(e), jv_string("status"));
        ok = jv_get_kind(t) == JV_KIND_STRING && jv_get_kind(s) == JV_KIND_NUMBER;
        jv_free(t);
        jv_free(s);
    }
    return ok;
}

static void run(const cv_extractor *x, const char *text, size_t len)
{
    jv r = cv__extract_run(x, text, len);
    if (jv_is_valid(r)) {
        jv f = jv_object_get(jv_copy(r), jv_string("fields")), m = jv_object_get(jv_copy(r), jv_string("missing"));
        jv c = jv_object_get(jv_copy(r), jv_string("confidence"));
        if (jv_get_kind(f) != JV_KIND_OBJECT || jv_get_kind(m) != JV_KIND_ARRAY || jv_get_kind(c) != JV_KIND_OBJECT)
            abort();
        jv_free(f);
        jv_free(m);
        jv_free(c);
        jv_free(r);
    } else {
        jv msg = jv_invalid_get_msg(r);
        if (!is_error_object(msg))
            abort(); /* a failed run carries an error object */
        jv_free(msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *def = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t dlen = nul ? (size_t)(nul - data) : size;
    cv_extractor *x = NULL;
    jv err = jv_invalid();
    int rc = cv__extractor_load(def, dlen, "fuzz.yaml", &x, &err);
    if (rc) {
        if (x || !is_error_object(err))
            abort(); /* a refusal is one error object, and no extractor */
    } else {
        if (!x)
            abort();
        if (nul)
            run(x, (const char *)nul + 1, size - dlen - 1);
        run(x, sample, sizeof sample - 1);
    }
    jv_free(err);
    cv__extractor_free(x);
    return 0;
}
