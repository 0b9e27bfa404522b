/*
 * ml_int.h — internals shared by the files of src/ml (the featurizer, the
 * model and its file format). Nothing outside src/ml includes it: ml.h is the
 * module's interface.
 */
#ifndef CV_ML_INT_H
#define CV_ML_INT_H

#include "ml/ml.h"

#include <stdint.h>

/* Hash seeds of the three kinds of features: part of the model format (a
 * change needs a new CV_TEXT_MODEL_FORMAT). */
#define CV__ML_SEED_WORD 0x776f7264ULL   /* word unigrams */
#define CV__ML_SEED_BIGRAM 0x6269677261ULL /* word bigrams (combines two word hashes) */
#define CV__ML_SEED_CHAR 0x63686172ULL   /* character n-grams */

/* ---- the hash (hash.c describes its design) ---- */
#define CV__ML_P1 0x9E3779B97F4A7C15ULL
#define CV__ML_P2 0xC2B2AE3D27D4EB4FULL
#define CV__ML_P3 0x165667B19E3779F9ULL

static inline uint64_t cv__ml_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t cv__ml_avalanche(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDULL;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t cv__ml_load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint64_t cv__ml_round(uint64_t h, uint64_t k)
{
    k *= CV__ML_P2;
    k = cv__ml_rotl(k, 31);
    k *= CV__ML_P1;
    h ^= k;
    return cv__ml_rotl(h, 27) * CV__ML_P1 + CV__ML_P3;
}

/* cv_ml_hash64. Reads exactly len bytes. */
static inline uint64_t cv__ml_hash(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = (seed + CV__ML_P3) ^ ((uint64_t)len * CV__ML_P1);
    while (len >= 8) {
        h = cv__ml_round(h, cv__ml_load_le64(p));
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t k = 0;
        for (size_t i = 0; i < len; i++)
            k |= (uint64_t)p[i] << (8 * i);
        h = cv__ml_round(h, k);
    }
    return cv__ml_avalanche(h);
}

/* The same value as cv__ml_hash for 1 <= len <= 8, reading 8 bytes at p
 * (the caller guarantees they are readable): one load and a mask instead
 * of a loop over the tail. */
static inline uint64_t cv__ml_hash_short(const unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t k = cv__ml_load_le64(p);
    if (len < 8)
        k &= (1ULL << (8 * len)) - 1;
    uint64_t h = (seed + CV__ML_P3) ^ ((uint64_t)len * CV__ML_P1);
    return cv__ml_avalanche(cv__ml_round(h, k));
}

/* Combines the hashes of two consecutive words into a bigram's. */
static inline uint64_t cv__ml_hash_pair(uint64_t a, uint64_t b)
{
    return cv__ml_avalanche(cv__ml_round(cv__ml_round(CV__ML_SEED_BIGRAM + CV__ML_P3, a), b));
}

/*
 * The featurizer's working memory: an open-addressing table from feature
 * index to count, cleared in O(1) by a generation stamp, and the list of
 * slots used in insertion order. Also the per-prediction score buffer.
 */
struct cv_text_scratch {
    uint32_t cap, mask; /* table size (a power of two) */
    uint32_t n;         /* distinct features of the current text */
    uint32_t gen;       /* current generation; a slot is live when stamps[i] == gen */
    uint32_t *keys, *counts, *stamps;
    uint32_t *used; /* n slot numbers, in insertion order */
    double *scores; /* nscores doubles */
    int nscores;
    int oom;
    /* set for the duration of one featurization */
    const struct cv_text_params *p;
    uint64_t prev_word; /* hash of the previous word (bigrams) */
    int have_prev;
};

/*
 * Counts the hashed features of `text` into s (previous content dropped):
 * afterwards s->used[0..s->n) are slots with keys (feature index, 0-based,
 * < 2^p->dim_bits) and counts. Returns 0 or CV_ENOMEM.
 */
int cv__ml_featurize(const struct cv_text_params *p, const char *text, size_t len, struct cv_text_scratch *s);

struct cv_text_model {
    struct cv_text_params p;
    int k;           /* classes */
    int v;           /* weight vectors: 1 for two classes (class 1's), else k */
    char **labels;   /* k names */
    uint64_t ndocs;  /* training documents (the IDF's n) */
    float idf_unseen; /* idf of a feature no training document had: ln(1 + n) + 1 */
    float *bias;     /* v */
    double *cal;     /* an SVM's Platt sigmoids: A[0..v) then B[0..v), P = 1 / (1 + exp(A f + B))
                        for the decision value f; NULL for logistic regression */
    uint32_t stride; /* 1 + v */
    float *tab;      /* 2^dim_bits rows of stride floats: idf, then v weights (already
                        the LIBLINEAR coefficient of the normalised feature) */
};

/* An empty model with k labels (copied) and the table allocated and set to
 * "unseen" (idf_unseen, zero weights). Returns NULL on out-of-memory. */
struct cv_text_model *cv__text_model_new(const struct cv_text_params *p, int k, const char *const *labels,
                                         uint64_t ndocs);

#endif
