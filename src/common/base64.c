/*
 * base64.c — standard base64 encoding and decoding (base64.h).
 */
#include "common/base64.h"

#include "conveyor.h"

#include <stdlib.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cv__base64_encode(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t olen = (n + 2) / 3 * 4;
    char *o = malloc(olen + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)b[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        o[j++] = alphabet[(v >> 18) & 63];
        o[j++] = alphabet[(v >> 12) & 63];
        o[j++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    o[j] = 0;
    return o;
}

static int value_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int cv__base64_decode(const char *s, size_t len, unsigned char **out, size_t *n, size_t *bad)
{
    unsigned char *o = malloc(len / 4 * 3 + 3);
    if (!o)
        return CV_ENOMEM;
    size_t j = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = value_of(c);
        if (v < 0 || pad) { /* a foreign byte, or data after the padding */
            free(o);
            *bad = i;
            return CV_EINVAL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[j++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* 6 bits left over cannot be a whole byte; more than 2 '=' is not padding */
    if (bits >= 6 || pad > 2) {
        free(o);
        *bad = len;
        return CV_EINVAL;
    }
    *out = o;
    *n = j;
    return 0;
}
