/*
 * fuzz_dataset.c — libFuzzer target for the text classifier's data reader
 * (cv_dataset_read, src/ml/dataset.c: CSV with RFC 4180 quoting, or JSON
 * lines, chosen from the first byte) and the stratified split.
 *
 * The input is the file (fuzz_ml.h: a memory file). It is read with the
 * fields the seeds use ("text", "label") and once without a label (as for
 * prediction). A read must either fail with a located message and leave an
 * empty data set, or give rows whose labels are in range and whose texts are
 * strings; the split of a labelled read must cover every row once.
 */
#include "fuzz_ml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *path, const char *label)
{
    struct cv_dataset d;
    jv err = jv_invalid();
    if (cv_dataset_read(path, "text", label, &d, &err)) {
        if (jv_get_kind(err) != JV_KIND_STRING || d.n != 0)
            abort();
    } else {
        if (d.n < 1 || strlen(d.sha256) != 64)
            abort();
        for (int i = 0; i < d.n; i++) {
            if (!d.texts[i] || d.lines[i] < 1)
                abort();
            (void)strlen(d.texts[i]);
            if (label && (d.labels[i] < 0 || d.labels[i] >= d.n_labels))
                abort();
        }
        for (int c = 1; label && c < d.n_labels; c++)
            if (strcmp(d.label_names[c - 1], d.label_names[c]) >= 0)
                abort(); /* sorted and distinct */
        int *tr = NULL, *te = NULL, ntr = 0, nte = 0;
        if (label && cv_dataset_split(&d, 0.2, 7, &tr, &ntr, &te, &nte) == 0) {
            if (ntr + nte != d.n)
                abort();
            char *seen = calloc((size_t)d.n, 1);
            for (int i = 0; i < ntr; i++)
                seen[tr[i]]++;
            for (int i = 0; i < nte; i++)
                seen[te[i]]++;
            for (int i = 0; i < d.n; i++)
                if (seen[i] != 1)
                    abort();
            free(seen);
        }
        free(tr);
        free(te);
    }
    jv_free(err);
    cv_dataset_cleanup(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd;
    char path[32];
    if (fuzz_memfile(data, size, &fd, path))
        return 0;
    check(path, "label");
    check(path, NULL);
    close(fd);
    return 0;
}
