/*
 * ml.h — conveyor's built-in text classifier (issue 4, DESIGN.md decision 8):
 * data sets, the stratified split, the text model (hashed word and character
 * n-grams, sublinear TF-IDF, L2 normalisation, LIBLINEAR logistic
 * regression), its file format, and evaluation metrics.
 *
 * This module knows nothing of the store or the CLI: a model is bytes
 * (cv_text_model_save / cv_text_model_load) that the store keeps and the CLI
 * moves. docs/models.md describes the features, the file format and the
 * metrics; keep it in step.
 *
 * Ownership: functions borrow their pointer arguments unless a comment says
 * otherwise; results handed out through `out` parameters belong to the
 * caller, freed with the matching _free / _cleanup function or free().
 * Errors: 0 or a negative CV_* code (conveyor.h), with a message in *err (a
 * jv string) where an err pointer is given.
 */
#ifndef CV_ML_H
#define CV_ML_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Data sets                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Rows read from a JSON lines file (one object per line, blank lines
 * skipped) or a CSV file with a header row (RFC 4180 quoting). The format is
 * taken from the name (.csv, else .jsonl/.ndjson/.json) and, for other
 * names, from the first non-blank byte ('{' means JSON lines).
 */
struct cv_dataset {
    int n;              /* rows */
    char **texts;       /* n NUL-terminated UTF-8 texts (may be empty) */
    int *labels;        /* n class ids into label_names; NULL when read without a label field */
    int *lines;         /* n: the line of the file where each row starts (for messages) */
    int n_labels;       /* distinct labels */
    char **label_names; /* sorted by byte order, so ids do not depend on row order */
    char sha256[65];    /* hex digest of the file's bytes */
};

/*
 * Reads `path`. `text_field` names the text column/member; `label_field`
 * the label (NULL: rows need no label, as for prediction). A label may be a
 * JSON string, number or boolean (its JSON text is the label). A missing
 * file, a malformed row, a row without the text or label field, or a file
 * without rows is CV_EINVAL / CV_EIO with "FILE:LINE: why" in *err; on error
 * *out is left empty (cv_dataset_cleanup is still safe).
 */
int cv_dataset_read(const char *path, const char *text_field, const char *label_field, struct cv_dataset *out,
                    jv *err);
void cv_dataset_cleanup(struct cv_dataset *d);
/* Adds k labeled rows (texts[i] with labels[i], borrowed; line 0) to a
 * dataset read with labels: label ids are renumbered so that names stay
 * sorted. 0, or CV_ENOMEM with d unchanged. */
int cv_dataset_append(struct cv_dataset *d, int k, char *const *texts, char *const *labels);

/*
 * Seeded stratified hold-out split: within each class the rows are shuffled
 * (a splitmix64 generator seeded with `seed`, classes in id order) and
 * round(n_c * holdout) of them are held out, at least one and at most n_c - 1
 * for a class of two rows or more (a class of one row stays in training).
 * The same data, holdout and seed always give the same split. Index lists
 * are ascending; *train and *test are malloc'ed (caller frees). Needs labels.
 * Returns 0, CV_EINVAL (holdout outside (0, 1), no labels) or CV_ENOMEM.
 */
int cv_dataset_split(const struct cv_dataset *d, double holdout, uint64_t seed, int **train, int *ntrain, int **test,
                     int *ntest);

/* SHA-256 of `len` bytes as 64 hex digits and a NUL into hex[65]. */
void cv_ml_sha256_hex(const void *data, size_t len, char hex[65]);

/* ------------------------------------------------------------------------ */
/* Tokens and hashing (exposed for tests and for docs/models.md)             */
/* ------------------------------------------------------------------------ */

/*
 * Splits UTF-8 `text` into tokens: maximal runs of letters and digits
 * (Unicode letters of the common scripts, see tokenize.c), case-folded
 * (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic). Invalid UTF-8 bytes
 * separate tokens like punctuation. Calls `fn(ud, token, len)` for each
 * folded token (UTF-8, not NUL-terminated, valid only during the call);
 * tokens longer than CV_ML_MAX_TOKEN bytes are cut there. Returns the number
 * of tokens.
 */
#define CV_ML_MAX_TOKEN 256
typedef void (*cv_ml_token_fn)(void *ud, const char *tok, size_t len);
size_t cv_ml_tokenize(const char *text, size_t len, cv_ml_token_fn fn, void *ud);

/* Decodes one UTF-8 code point at p (n bytes left, n >= 1): returns it and
 * sets *used (1..4), or returns -1 with *used = 1 for an invalid sequence
 * (overlong, surrogate, above U+10FFFF, truncated). */
int32_t cv_ml_utf8_decode(const unsigned char *p, size_t n, int *used);
/* 1 when the code point is part of a token (a letter or digit). */
int cv_ml_is_token_char(int32_t cp);
/* The lower-case form of cp for the scripts listed above, else cp. */
int32_t cv_ml_fold(int32_t cp);

/* The 64-bit hash of the hashing trick (hash.c): stable across platforms and
 * versions of conveyor within one model format version. */
uint64_t cv_ml_hash64(const void *data, size_t len, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* The text model                                                            */
/* ------------------------------------------------------------------------ */

enum cv_text_solver {
    CV_TEXT_SOLVER_LR = 0,      /* LIBLINEAR L2R_LR: primal trust-region Newton, deterministic */
    CV_TEXT_SOLVER_LR_DUAL = 1, /* LIBLINEAR L2R_LR_DUAL: dual coordinate descent */
    CV_TEXT_SOLVER_SVM = 2,     /* LIBLINEAR L2R_L2LOSS_SVC_DUAL (linear SVM, squared hinge loss),
                                   probabilities by Platt scaling: a sigmoid per weight vector
                                   fitted on 5-fold cross-validated decision values of the
                                   training rows (docs/models.md, "Linear SVM") */
};

struct cv_text_params {
    int dim_bits;       /* 2^dim_bits hashed features, 16..24 (default 19) */
    int word_ngram_max; /* word n-grams 1..word_ngram_max, 1 or 2 (default 2) */
    int char_ngram_min; /* character n-grams within padded words, min..max; */
    int char_ngram_max; /* 0 and 0: none (default 3..5) */
    double C;           /* inverse regularisation strength (default 10) */
    int solver;         /* enum cv_text_solver (default CV_TEXT_SOLVER_LR) */
    double eps;         /* LIBLINEAR's stopping tolerance (default 0.01) */
};

/* Fills in the defaults above. */
void cv_text_params_init(struct cv_text_params *p);
/* The parameters as a JSON object for a model card (new jv). */
jv cv_text_params_json(const struct cv_text_params *p);

struct cv_text_model;

/* Training progress: stage "features" or "training"; done of total (total 0:
 * unknown). Called from the training thread. */
typedef void (*cv_ml_progress_fn)(void *ud, const char *stage, size_t done, size_t total);

/*
 * Trains on the rows `rows[0..nrows)` of `d` (all rows when rows is NULL).
 * Needs at least two distinct labels among those rows and a non-empty data
 * set. The model's classes are all of d's label names (a class with no
 * training row is refused: CV_EINVAL naming it). Returns 0 with *out (free
 * with cv_text_model_free), CV_EINVAL with *err, or CV_ENOMEM.
 */
int cv_text_model_train(const struct cv_text_params *p, const struct cv_dataset *d, const int *rows, int nrows,
                        cv_ml_progress_fn progress, void *ud, struct cv_text_model **out, jv *err);
void cv_text_model_free(struct cv_text_model *m);

int cv_text_model_classes(const struct cv_text_model *m);
const char *cv_text_model_label(const struct cv_text_model *m, int k);
/* The parameters the model was built with (the file keeps them all). */
const struct cv_text_params *cv_text_model_params(const struct cv_text_model *m);

/*
 * Per-thread working memory of prediction (a small hash table and token
 * buffers), reused across calls so that predicting allocates nothing once
 * warm. One scratch must not be used by two threads at once.
 */
struct cv_text_scratch;
struct cv_text_scratch *cv_text_scratch_new(void);
void cv_text_scratch_free(struct cv_text_scratch *s);

/*
 * Class probabilities of `text` (len bytes of UTF-8) into probs[0..K), which
 * sum to 1 (binary: the logistic function of the decision value; more
 * classes: one-vs-rest logistic values normalised, as LIBLINEAR does; for
 * an SVM the logistic function is Platt's sigmoid 1 / (1 + exp(A f + B))
 * of the decision value f, with A and B fitted per vector in training).
 * Returns the most probable class (the lowest id on a tie), or CV_ENOMEM.
 * The model is only read: many threads may predict with one model.
 */
int cv_text_model_predict(const struct cv_text_model *m, const char *text, size_t len, struct cv_text_scratch *s,
                          double *probs);

/* {label, confidence, scores: {label: p}} for the probabilities of one
 * prediction (borrowed). */
jv cv_text_prediction_json(const struct cv_text_model *m, const double *probs);

/*
 * The model file (docs/models.md, "File format"): *out is malloc'ed (caller
 * frees), *len its size. A model saved and loaded predicts bit-for-bit the
 * same probabilities. Load refuses a wrong magic, a newer format version, a
 * truncated or altered file (checksum) with CV_EINVAL / CV_EUNSUPPORTED and
 * a message. Format 1 files (logistic regression only) load.
 */
int cv_text_model_save(const struct cv_text_model *m, unsigned char **out, size_t *len);
int cv_text_model_load(const void *bytes, size_t len, struct cv_text_model **out, jv *err);

/* The current file format version, and the magic (8 bytes) it starts with. */
#define CV_TEXT_MODEL_FORMAT 2
#define CV_TEXT_MODEL_MAGIC "CVTXTMDL"

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Metrics of n predictions over k classes named names[0..k): truth[i] and
 * pred[i] are class ids, conf[i] the probability given to pred[i]. Returns
 * {n, accuracy, macro_f1, ece, labels: [...], classes: {label: {precision,
 * recall, f1, support}}, confusion: [[...]] (rows true, columns predicted)}.
 * Macro-F1 averages the classes that occur in truth or pred (as scikit-learn
 * does); precision or recall with a zero denominator is 0. ECE uses 10
 * equal-width confidence bins ([0, 0.1), ..., [0.9, 1.0]): the
 * support-weighted mean of |accuracy - mean confidence| per bin. n == 0 gives
 * {n: 0}.
 */
jv cv_ml_evaluate(int k, const char *const *names, const int *truth, const int *pred, const double *conf, int n);

#endif
