/*
 * features.c — text to hashed feature counts (ml.h, docs/models.md):
 *   word unigrams            hash(token, SEED_WORD)
 *   word bigrams             hash_pair(hash(previous token), hash(token))
 *   character n-grams        hash(n code points of " token ", SEED_CHAR),
 *                            for n = char_ngram_min..char_ngram_max, within
 *                            each token padded with one space on each side
 * each reduced to its low dim_bits bits. Tokens come from cv_ml_tokenize
 * only. Like tokenize.c and hash.c, what this file computes is part of the
 * model format.
 *
 * The counting table lives in a struct cv_text_scratch that the caller
 * reuses, so that a warm prediction allocates nothing.
 */
#include "ml/ml_int.h"

#include "conveyor.h"

#include <stdlib.h>
#include <string.h>

struct cv_text_scratch *cv_text_scratch_new(void)
{
    struct cv_text_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 1024;
    s->mask = s->cap - 1;
    s->keys = malloc(s->cap * sizeof *s->keys);
    s->counts = malloc(s->cap * sizeof *s->counts);
    s->stamps = calloc(s->cap, sizeof *s->stamps);
    s->used = malloc(s->cap * sizeof *s->used);
    if (!s->keys || !s->counts || !s->stamps || !s->used) {
        cv_text_scratch_free(s);
        return NULL;
    }
    return s;
}

void cv_text_scratch_free(struct cv_text_scratch *s)
{
    if (!s)
        return;
    free(s->keys);
    free(s->counts);
    free(s->stamps);
    free(s->used);
    free(s->scores);
    free(s);
}

static inline uint32_t slot_of(uint32_t key, uint32_t mask)
{
    return (key * 0x9E3779B1u) >> 7 & mask; /* spread the (already hashed) keys */
}

/* Doubles the table, re-inserting the live entries in their order. */
static int grow(struct cv_text_scratch *s)
{
    uint32_t cap = s->cap * 2, mask = cap - 1;
    uint32_t *keys = malloc(cap * sizeof *keys), *counts = malloc(cap * sizeof *counts);
    uint32_t *stamps = calloc(cap, sizeof *stamps), *used = malloc(cap * sizeof *used);
    if (!keys || !counts || !stamps || !used) {
        free(keys);
        free(counts);
        free(stamps);
        free(used);
        return CV_ENOMEM;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t old = s->used[i], key = s->keys[old];
        uint32_t j = slot_of(key, mask);
        while (stamps[j] == 1)
            j = (j + 1) & mask;
        stamps[j] = 1;
        keys[j] = key;
        counts[j] = s->counts[old];
        used[i] = j;
    }
    free(s->keys);
    free(s->counts);
    free(s->stamps);
    free(s->used);
    s->keys = keys;
    s->counts = counts;
    s->stamps = stamps;
    s->used = used;
    s->cap = cap;
    s->mask = mask;
    s->gen = 1;
    return 0;
}

static inline void add(struct cv_text_scratch *s, uint64_t h)
{
    uint32_t key = (uint32_t)(h & ((1u << s->p->dim_bits) - 1));
    uint32_t j = slot_of(key, s->mask);
    while (s->stamps[j] == s->gen) {
        if (s->keys[j] == key) {
            s->counts[j]++;
            return;
        }
        j = (j + 1) & s->mask;
    }
    if ((s->n + 1) * 2 > s->cap) { /* keep the load under one half */
        if (s->oom || grow(s)) {
            s->oom = 1;
            return;
        }
        add(s, h);
        return;
    }
    s->stamps[j] = s->gen;
    s->keys[j] = key;
    s->counts[j] = 1;
    s->used[s->n++] = j;
}

static void on_token(void *ud, const char *tok, size_t len)
{
    struct cv_text_scratch *s = ud;
    const struct cv_text_params *p = s->p;
    /* " token " followed by 8 zero bytes (cv__ml_hash_short reads 8), and
     * the byte offset of each code point in it */
    unsigned char pad[CV_ML_MAX_TOKEN + 2 + 8];
    uint16_t off[CV_ML_MAX_TOKEN + 3];
    pad[0] = ' ';
    memcpy(pad + 1, tok, len);
    pad[len + 1] = ' ';
    memset(pad + len + 2, 0, 8);
    uint64_t hw = len <= 8 ? cv__ml_hash_short(pad + 1, len, CV__ML_SEED_WORD) : cv__ml_hash(tok, len, CV__ML_SEED_WORD);
    add(s, hw);
    if (p->word_ngram_max >= 2) {
        if (s->have_prev)
            add(s, cv__ml_hash_pair(s->prev_word, hw));
        s->prev_word = hw;
        s->have_prev = 1;
    }
    if (p->char_ngram_max <= 0)
        return;
    size_t plen = len + 2, ncp = 0;
    for (size_t i = 0; i < plen; i++)
        if ((pad[i] & 0xC0) != 0x80)
            off[ncp++] = (uint16_t)i;
    off[ncp] = (uint16_t)plen;
    for (int n = p->char_ngram_min; n <= p->char_ngram_max; n++) {
        for (size_t i = 0; i + (size_t)n <= ncp; i++) {
            size_t b = (size_t)(off[i + n] - off[i]);
            add(s, b <= 8 ? cv__ml_hash_short(pad + off[i], b, CV__ML_SEED_CHAR)
                          : cv__ml_hash(pad + off[i], b, CV__ML_SEED_CHAR));
        }
    }
}

int cv__ml_featurize(const struct cv_text_params *p, const char *text, size_t len, struct cv_text_scratch *s)
{
    if (++s->gen == 0) { /* wrapped: clear the stamps once every 2^32 texts */
        memset(s->stamps, 0, s->cap * sizeof *s->stamps);
        s->gen = 1;
    }
    s->n = 0;
    s->oom = 0;
    s->p = p;
    s->have_prev = 0;
    cv_ml_tokenize(text, len, on_token, s);
    s->p = NULL;
    return s->oom ? CV_ENOMEM : 0;
}
