/*
 * bench_text.c — inference speed of a stored text model, in process, on one
 * thread (bench/bench_text.sh builds and runs it).
 *
 *   bench_text DB NAME[@VERSION] DATA.jsonl [SECONDS]
 *
 * Loads the model from the store DB, reads the texts of DATA (JSON lines,
 * field "text"), predicts each once to warm up, then predicts them in a loop
 * for SECONDS (default 3) and prints the texts per second and the mean
 * microseconds per text. A benchmark: it prints figures and asserts none.
 */
#include "ml/ml.h"
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
    if (argc < 4) {
        fprintf(stderr, "usage: bench_text DB NAME[@VERSION] DATA.jsonl [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 4 ? atof(argv[4]) : 3.0;
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
    struct cv_text_model *m = NULL;
    struct cv_dataset d;
    if (cv_store_open(argv[1], &s, &err) || cv_store_get_model(s, name, version, &card, &bytes, &len, &err) ||
        cv_text_model_load(bytes, len, &m, &err) || cv_dataset_read(argv[3], "text", NULL, &d, &err)) {
        fprintf(stderr, "bench_text: %s\n", jv_get_kind(err) == JV_KIND_STRING ? jv_string_value(err) : "failed");
        return 1;
    }
    free(bytes);
    jv_free(card);
    cv_store_close(s);
    size_t *lens = malloc((size_t)d.n * sizeof *lens), chars = 0;
    double *probs = malloc((size_t)cv_text_model_classes(m) * sizeof *probs);
    struct cv_text_scratch *sc = cv_text_scratch_new();
    for (int i = 0; i < d.n; i++) {
        lens[i] = strlen(d.texts[i]);
        chars += lens[i];
        cv_text_model_predict(m, d.texts[i], lens[i], sc, probs);
    }
    long n = 0;
    int sink = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < d.n; i++)
            sink += cv_text_model_predict(m, d.texts[i], lens[i], sc, probs);
        n += d.n;
        t = now() - t0;
    } while (t < seconds);
    printf("{\"texts\": %d, \"mean_bytes\": %.1f, \"predictions_per_second\": %.0f, \"us_per_text\": %.3f, "
           "\"checksum\": %d}\n",
           d.n, (double)chars / d.n, n / t, t / n * 1e6, sink);
    cv_text_scratch_free(sc);
    free(probs);
    free(lens);
    cv_text_model_free(m);
    cv_dataset_cleanup(&d);
    return 0;
}
