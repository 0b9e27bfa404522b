/*
 * hash.c — the 64-bit hash of the hashing trick (ml.h). Feature indices in
 * a saved model are derived from it, so its output for any input is part of
 * the model file format: change it only with a new CV_TEXT_MODEL_FORMAT.
 *
 * Design: input read as little-endian 64-bit words (the same result on any
 * platform), each word multiplied, rotated and folded into the state, the
 * length and seed mixed in at the start, and a final avalanche (the 64-bit
 * finaliser shape of MurmurHash3: xor-shift, multiply, xor-shift, multiply,
 * xor-shift) so that every input bit affects the low bits used as the index.
 */
#include "ml/ml_int.h"

/* The hash itself is inline in ml_int.h (cv__ml_hash), for the featurizer's
 * inner loop; this is its exported name. */

uint64_t cv_ml_hash64(const void *data, size_t len, uint64_t seed)
{
    return cv__ml_hash(data, len, seed);
}
