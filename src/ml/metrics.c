/*
 * metrics.c — evaluation of a classifier's predictions (ml.h,
 * cv_ml_evaluate): accuracy, per-class precision / recall / F1, macro-F1,
 * the confusion matrix and the expected calibration error. Definitions in
 * docs/models.md ("Metrics"); they follow scikit-learn's where it has one,
 * so that figures can be compared side by side.
 */
#include "ml/ml.h"

#include <math.h>
#include <stdlib.h>

#define ECE_BINS 10

jv cv_ml_evaluate(int k, const char *const *names, const int *truth, const int *pred, const double *conf, int n)
{
    jv o = jv_object_set(jv_object(), jv_string("n"), jv_number(n));
    if (n <= 0 || k <= 0)
        return o;
    long *cm = calloc((size_t)k * (size_t)k, sizeof *cm);
    if (!cm)
        return jv_invalid_with_msg(jv_string("out of memory"));
    long correct = 0;
    long bin_n[ECE_BINS] = {0}, bin_ok[ECE_BINS] = {0};
    double bin_conf[ECE_BINS] = {0};
    for (int i = 0; i < n; i++) {
        cm[(size_t)truth[i] * (size_t)k + (size_t)pred[i]]++;
        int ok = truth[i] == pred[i];
        correct += ok;
        double c = conf ? conf[i] : 1.0;
        int b = (int)floor(c * ECE_BINS);
        b = b < 0 ? 0 : b >= ECE_BINS ? ECE_BINS - 1 : b;
        bin_n[b]++;
        bin_ok[b] += ok;
        bin_conf[b] += c;
    }
    double ece = 0;
    for (int b = 0; b < ECE_BINS; b++)
        if (bin_n[b])
            ece += (double)bin_n[b] / n * fabs((double)bin_ok[b] / bin_n[b] - bin_conf[b] / bin_n[b]);

    jv classes = jv_object(), labels = jv_array(), confusion = jv_array();
    double f1_sum = 0;
    int present = 0;
    for (int c = 0; c < k; c++) {
        long tp = cm[(size_t)c * k + c], row = 0, col = 0;
        jv r = jv_array();
        for (int j = 0; j < k; j++) {
            row += cm[(size_t)c * k + j];
            col += cm[(size_t)j * k + c];
            r = jv_array_append(r, jv_number((double)cm[(size_t)c * k + j]));
        }
        confusion = jv_array_append(confusion, r);
        labels = jv_array_append(labels, jv_string(names[c]));
        double precision = col ? (double)tp / col : 0, recall = row ? (double)tp / row : 0;
        double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        if (row || col) {
            f1_sum += f1;
            present++;
        }
        jv m = jv_object();
        m = jv_object_set(m, jv_string("precision"), jv_number(precision));
        m = jv_object_set(m, jv_string("recall"), jv_number(recall));
        m = jv_object_set(m, jv_string("f1"), jv_number(f1));
        m = jv_object_set(m, jv_string("support"), jv_number((double)row));
        classes = jv_object_set(classes, jv_string(names[c]), m);
    }
    free(cm);
    o = jv_object_set(o, jv_string("accuracy"), jv_number((double)correct / n));
    o = jv_object_set(o, jv_string("macro_f1"), jv_number(present ? f1_sum / present : 0));
    o = jv_object_set(o, jv_string("ece"), jv_number(ece));
    o = jv_object_set(o, jv_string("labels"), labels);
    o = jv_object_set(o, jv_string("classes"), classes);
    return jv_object_set(o, jv_string("confusion"), confusion);
}
