/*
 * bench_tabular.c — inference speed of a stored tabular model, in process, on
 * one thread (bench/bench_tabular.sh builds and runs it).
 *
 *   bench_tabular DB NAME@VERSION DATA SECONDS
 *
 * Loads the model from the store DB, reads and encodes the rows of DATA (CSV
 * or JSON lines), then for about SECONDS each measures: scores of all rows in
 * one call (a batch, as scikit-learn's predict_proba is timed); scores with
 * SHAP contributions of all rows in one call; and the `score` function's path
 * for one row at a time (cv_tab_model_score: encode, predict with
 * contributions, build the JSON output). Prints one JSON object of rates.
 */
#include "conveyor.h"
#include "ml/tabular.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_tabular DB NAME@VERSION DATA SECONDS\n");
        return 2;
    }
    double secs = atof(argv[4]);
    char name[256];
    snprintf(name, sizeof name, "%s", argv[2]);
    long long version = 0;
    char *at = strrchr(name, '@');
    if (at) {
        *at = 0;
        version = atoll(at + 1);
    }
    cv_store *s = NULL;
    jv err = jv_invalid(), card = jv_invalid();
    void *bytes = NULL;
    size_t len = 0;
    struct cv_tab_model *m = NULL;
    struct cv_table t;
    if (cv_store_open(argv[1], &s, &err) || cv_store_get_model(s, name, version, &card, &bytes, &len, &err) ||
        cv_tab_model_load(bytes, len, &m, &err) || cv_table_read(argv[3], &t, &err)) {
        fprintf(stderr, "bench_tabular: %s\n", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "failed");
        return 1;
    }
    free(bytes);
    jv_free(card);
    cv_store_close(s);
    const struct cv_tab_schema *sc = cv_tab_model_schema(m);
    float *x = malloc(sizeof *x * (size_t)t.n * (size_t)sc->ncols);
    double *score = malloc(sizeof *score * (size_t)t.n);
    double *contribs = malloc(sizeof *contribs * (size_t)t.n * ((size_t)sc->n + 1));
    jv *rows = malloc(sizeof *rows * (size_t)t.n);
    for (int i = 0; i < t.n; i++) {
        if (cv_tab_encode(sc, t.rows[i], t.csv, x + (size_t)i * sc->ncols, NULL, &err)) {
            fprintf(stderr, "bench_tabular: row %d: %s\n", i, jv_string_value(err));
            return 1;
        }
        /* the `score` function gets JSON values: numbers for numeric features */
        jv r = jv_object();
        for (int j = 0; j < sc->n; j++) {
            jv v = jv_object_get(jv_copy(t.rows[i]), jv_string(sc->f[j].name));
            if (sc->f[j].type == CV_TAB_NUMERIC && jv_get_kind(v) == JV_KIND_STRING) {
                double d = atof(jv_string_value(v));
                jv_free(v);
                v = jv_number(d);
            }
            if (jv_is_valid(v))
                r = jv_object_set(r, jv_string(sc->f[j].name), v);
            else
                jv_free(v);
        }
        rows[i] = r;
    }
    double rates[3];
    for (int mode = 0; mode < 3; mode++) {
        long n = 0;
        double t0 = now(), t1;
        do {
            if (mode < 2) {
                if (cv_tab_model_predict(m, x, t.n, score, NULL, mode ? contribs : NULL, &err))
                    return 1;
                n += t.n;
            } else {
                for (int i = 0; i < t.n; i++) {
                    jv out;
                    if (cv_tab_model_score(m, jv_copy(rows[i]), 5, &out, NULL, &err))
                        return 1;
                    jv_free(out);
                }
                n += t.n;
            }
            t1 = now();
        } while (t1 - t0 < secs);
        rates[mode] = (double)n / (t1 - t0);
    }
    printf("{\"rows\": %d, \"batch_per_second\": %.0f, \"batch_with_shap_per_second\": %.0f, "
           "\"score_one_row_per_second\": %.0f}\n",
           t.n, rates[0], rates[1], rates[2]);
    for (int i = 0; i < t.n; i++)
        jv_free(rows[i]);
    free(rows);
    free(x);
    free(score);
    free(contribs);
    cv_table_cleanup(&t);
    cv_tab_model_free(m);
    jv_free(err);
    return 0;
}
