/*
 * catalog.h — the default catalog's model functions (DESIGN.md decisions 7
 * and 8), called from workflows with the standard syntax (`call: classify`
 * with `with: {model, text}`), so a document stays valid against the
 * specification's schema. A `use.functions` entry of the same name wins.
 *
 * Models come from the store of the process (the server's, or the --db file
 * of `conveyor run`): `NAME@VERSION` is that version unless it is retired;
 * `NAME` is the name's canary version for the instances that fall in the
 * canary's share (a hash of the instance id and the name: one instance
 * always gets the same version), else its production version (else the
 * newest that is not retired), and the name's shadow version, if any, also
 * predicts on the same input: its prediction goes to the history, never to
 * the output (docs/models.md, "Canary and shadow").
 *
 * What a reference resolves to is cached per runtime, so that a prediction
 * does not read the store: the cache is dropped when the registry changes
 * through this process's store handle (at once) or through another process
 * (seen by reading the store's registry generation at most once a second).
 * Loaded models are kept per runtime (they are only read: many threads
 * predict with one), with their metrics (atomic counters).
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
 * {function, model: "name@version" (null for an inline extract), inputDigest
 * (SHA-256 of the arguments as sorted JSON), output (label and confidence, or
 * score and label, or missing and confidence), latencyMs};
 * with a shadow, an array of two: that, then the shadow's {function, model,
 * shadow: true, inputDigest, output, latencyMs} (or {..., error} when the
 * shadow failed: a shadow never fails the call). `instance` (may be NULL:
 * no canary) is the calling instance's id.
 *   classify: {model, text} -> {label, confidence, scores: {label: p}, model: "name@version"}
 *   extract: {fields: [...] | an extractor definition, text} -> {fields, missing, confidence}
 *          (src/ml/extract.h, docs/extract.md; inline: it needs no store), or
 *          {model: NAME[@VERSION] (kind extractor), text} -> the same plus model: "name@version";
 *          `model` and `fields` together are a configuration error (400)
 *   score: {model, features: {...}, top?} -> {score, label, explanation: [{feature, value,
 *          contribution}...] (the `top` largest, default 5), bias, model: "name@version"};
 *          a feature of the wrong type is a validation error (400)
 */
int cv__catalog_call(struct cv_models *m, const char *fn, const char *instance, jv args, jv *out, jv *note);

/* Where instance `instance` falls in [0, 1) for model `name` (the canary
 * takes the instances below its share). Stable: a hash, no state. */
double cv__model_instance_point(const char *name, const char *instance);

/* How many resolutions read the store since m was made (tests, bench). */
long long cv__models_store_reads(struct cv_models *m);

/* The model metrics as Prometheus text (malloc'd, caller frees; NULL on out
 * of memory; m may be NULL: HELP and TYPE lines only):
 * conveyor_model_predictions_total{model,version,label} (the first 32
 * labels of a model by name, the rest as label="other"), the histograms
 * conveyor_model_confidence{model,version} and
 * conveyor_model_inference_seconds{model,version}; series for the first 64
 * model versions loaded. */
char *cv__models_metrics(struct cv_models *m);
#define CV_MODEL_CONF_BUCKETS 8
#define CV_MODEL_LAT_BUCKETS 11
extern const double cv__model_confidence_buckets[CV_MODEL_CONF_BUCKETS];
extern const double cv__model_latency_buckets_s[CV_MODEL_LAT_BUCKETS];

#endif
