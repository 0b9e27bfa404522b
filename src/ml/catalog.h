/*
 * catalog.h — the default catalog's model functions (DESIGN.md decisions 7
 * and 8), called from workflows with the standard syntax (`call: classify`
 * with `with: {model, text}`), so a document stays valid against the
 * specification's schema. A `use.functions` entry of the same name wins.
 *
 * Models come from the store of the process (the server's, or the --db file
 * of `conveyor run`): `NAME` is its production version (else the newest that
 * is not retired), `NAME@VERSION` that version unless it is retired. Loaded
 * models are cached per runtime (they are only read: many threads predict
 * with one).
 */
#ifndef CV_ML_CATALOG_H
#define CV_ML_CATALOG_H

#include <jv.h>

struct cv_store;
struct cv_models;

/* The history entry type of a model's prediction (cv__catalog_call's note). */
#define CV_PREDICTION_EVENT "io.conveyor.model.prediction.v1"

/* The catalog's name for `name` (a static string) when it is one of its
 * functions, else NULL. */
const char *cv__catalog_function(const char *name);

/* A cache of loaded models over `st` (borrowed: it must outlive the cache). */
struct cv_models *cv__models_new(struct cv_store *st);
void cv__models_free(struct cv_models *m);

/*
 * Runs catalog function `fn` with its evaluated `with` (borrowed). Returns 0
 * with *out = its output, or CV_EFAULT with *out = an error descriptor of
 * the specification's types: configuration (400) for missing or malformed
 * arguments or a model of the wrong kind, configuration (404) for an unknown
 * or retired model or when this process has no model store, validation (400)
 * for an empty text. `m` may be NULL (no store). On success *note (else
 * invalid) is what the instance's history keeps of the prediction:
 * {function, model: "name@version", inputDigest (SHA-256 of the arguments as
 * sorted JSON), output (label and confidence, or score and label), latencyMs}.
 *   classify: {model, text} -> {label, confidence, scores: {label: p}, model: "name@version"}
 *   extract: {fields: [...] | an extractor definition, text} -> {fields, missing, confidence}
 *          (src/ml/extract.h, docs/extract.md; no model: it needs no store)
 *   score: {model, features: {...}, top?} -> {score, label, explanation: [{feature, value,
 *          contribution}...] (the `top` largest, default 5), bias, model: "name@version"};
 *          a feature of the wrong type is a validation error (400)
 */
int cv__catalog_call(struct cv_models *m, const char *fn, jv args, jv *out, jv *note);

#endif
