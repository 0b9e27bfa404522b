/*
 * base64.h — standard base64 (RFC 4648, with padding) for bodies that carry
 * bytes inside JSON: model files uploaded to and downloaded from the model
 * registry (docs/api.md, "Models").
 */
#ifndef CV_COMMON_BASE64_H
#define CV_COMMON_BASE64_H

#include <stddef.h>

/* The base64 of p[0..n) as a NUL-terminated string (malloc'd, caller
 * frees), or NULL when out of memory. */
char *cv__base64_encode(const void *p, size_t n);

/*
 * Decodes s[0..len) (the standard alphabet; padding optional; ASCII
 * whitespace ignored, so wrapped text is read). Returns 0 with *out
 * (malloc'd, caller frees; never NULL on success) and *n, CV_EINVAL when s
 * is not base64 (*bad = the offset of the first byte that does not fit), or
 * CV_ENOMEM.
 */
int cv__base64_decode(const char *s, size_t len, unsigned char **out, size_t *n, size_t *bad);

#endif
