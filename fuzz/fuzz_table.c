/*
 * fuzz_table.c — libFuzzer target for the tabular scorer's data reader and
 * encoder (src/ml/tabdata.c: cv_table_read, cv_tab_schema_infer,
 * cv_tab_labels, cv_tab_encode).
 *
 * The input is the file (fuzz_ml.h: a memory file), CSV or JSON lines. After
 * a successful read, a schema is inferred with "label" as the label, the
 * labels are read (binary, or refused), and every row is encoded: each step
 * either succeeds or fails with a message. The schema must describe its
 * columns (one per numeric feature, one per category, offsets in order) and
 * encode every row it was inferred from, with no unknown category.
 */
#include "fuzz_ml.h"
#include "ml/tabular.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd;
    char path[32];
    if (fuzz_memfile(data, size, &fd, path))
        return 0;
    struct cv_table t;
    struct cv_tab_schema s;
    memset(&s, 0, sizeof s);
    jv err = jv_invalid();
    char *names[2] = {NULL, NULL};
    int *y = NULL;
    float *x = NULL;
    if (cv_table_read(path, &t, &err)) {
        if (jv_get_kind(err) != JV_KIND_STRING)
            abort();
        goto out;
    }
    if (t.n < 1)
        abort();
    y = malloc(((size_t)t.n + 1) * sizeof *y);
    if (!y)
        abort();
    if (cv_tab_labels(&t, path, NULL, 0, "label", NULL, names, y, &err)) {
        if (jv_get_kind(err) != JV_KIND_STRING)
            abort();
    } else {
        for (int i = 0; i < t.n; i++)
            if (y[i] != 0 && y[i] != 1)
                abort();
    }
    if (cv_tab_schema_infer(&t, NULL, 0, "label", jv_null(), &s, &err)) {
        if (jv_get_kind(err) != JV_KIND_STRING)
            abort();
        goto out;
    }
    int col = 0;
    for (int j = 0; j < s.n; j++) {
        if (s.f[j].col != col)
            abort();
        col += s.f[j].type == CV_TAB_NUMERIC ? 1 : s.f[j].ncats;
    }
    if (col != s.ncols)
        abort();
    jv_free(cv_tab_schema_json(&s));
    x = malloc(((size_t)s.ncols + 1) * sizeof *x);
    if (!x)
        abort();
    for (int i = 0; i < t.n; i++) {
        int unknown = 0;
        /* the schema was inferred from these very rows: each encodes, and
         * no category is unknown */
        if (cv_tab_encode(&s, t.rows[i], t.csv, x, &unknown, &err) || unknown)
            abort();
    }
out:
    jv_free(err);
    free(x);
    free(y);
    free(names[0]);
    free(names[1]);
    cv_tab_schema_cleanup(&s);
    cv_table_cleanup(&t);
    close(fd);
    return 0;
}
