/*
 * tokenize.c — UTF-8 decoding, the token-character test and case folding of
 * the text model (ml.h). Everything that turns text into tokens goes through
 * cv_ml_tokenize: the features of a model depend on it, so a change here that
 * alters any token of any text needs a new model format version (ml.h,
 * docs/models.md) — old models would otherwise silently score other features.
 *
 * No ICU and no locale: the tables below cover the letters of the scripts in
 * common use by code point block, which is what a bag-of-n-grams classifier
 * needs (a token is a run of letters, digits and combining marks). Case
 * folding is simple (one code point to one code point) for ASCII, Latin-1,
 * Latin Extended-A/B (the regular pairs), Latin Extended Additional, Greek,
 * Cyrillic and Armenian; fullwidth ASCII letters and digits fold to ASCII.
 */
#include "ml/ml.h"

#include <string.h>

int32_t cv_ml_utf8_decode(const unsigned char *p, size_t n, int *used)
{
    unsigned c = p[0];
    *used = 1;
    if (c < 0x80)
        return (int32_t)c;
    int len;
    int32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return -1; /* a continuation byte, an overlong lead (C0, C1) or F5..FF */
    }
    if ((size_t)len > n)
        return -1;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return -1;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *used = len;
    return cp;
}

/* Writes cp as UTF-8 into out (room for 4 bytes); returns the length. */
static int utf8_encode(int32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Code point ranges that are NOT token characters inside blocks that
 * otherwise are (punctuation of the scripts). Sorted. */
static const int32_t punct_ranges[][2] = {
    {0x037E, 0x037E}, {0x0384, 0x0385}, {0x0387, 0x0387}, {0x0482, 0x0482}, {0x055A, 0x055F}, {0x0589, 0x058A},
    {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6}, {0x05F3, 0x05F4}, {0x0600, 0x060F},
    {0x061B, 0x061F}, {0x066A, 0x066D}, {0x06D4, 0x06D4}, {0x0964, 0x0965}, {0x0E3F, 0x0E3F}, {0x10FB, 0x10FB},
    {0x1360, 0x1368}, {0x166D, 0x166E}, {0x1680, 0x1680}, {0x16EB, 0x16ED}, {0x1800, 0x180A}, {0x1FBD, 0x1FBD},
    {0x1FBF, 0x1FC1}, {0x1FCD, 0x1FCF}, {0x1FDD, 0x1FDF}, {0x1FED, 0x1FEF}, {0x1FFD, 0x1FFE},
};

int cv_ml_is_token_char(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (cp < 0xC0) /* Latin-1 punctuation and symbols, but for the letters ª µ º */
        return cp == 0xAA || cp == 0xB5 || cp == 0xBA;
    if (cp < 0x2000) {
        if (cp == 0xD7 || cp == 0xF7) /* × ÷ */
            return 0;
        for (size_t i = 0; i < sizeof punct_ranges / sizeof punct_ranges[0]; i++) {
            if (cp < punct_ranges[i][0])
                break;
            if (cp <= punct_ranges[i][1])
                return 0;
        }
        return 1; /* Latin, IPA, combining marks, Greek, Cyrillic, ..., Greek Extended */
    }
    if (cp < 0x2C00) /* general punctuation, symbols, arrows, maths, boxes, dingbats */
        return 0;
    if (cp < 0x2E00) /* Glagolitic, Latin Extended-C, Coptic, Georgian, Tifinagh, Ethiopic, Cyrillic Ext-A */
        return 1;
    if (cp < 0x2E80) /* supplemental punctuation */
        return 0;
    if (cp < 0x3000) /* CJK radicals */
        return 1;
    if (cp < 0x3040) /* CJK symbols and punctuation, but for 々 〆 〇 */
        return cp >= 0x3005 && cp <= 0x3007;
    if (cp == 0x30FB) /* katakana middle dot */
        return 0;
    if (cp < 0xD800) /* kana, CJK, Yi, Hangul, ... */
        return 1;
    if (cp < 0xF900) /* surrogates, private use */
        return 0;
    if (cp < 0xFE10) /* CJK compatibility, presentation forms, variation selectors */
        return cp != 0xFD3E && cp != 0xFD3F;
    if (cp < 0xFE70) /* vertical, small and compatibility forms */
        return cp >= 0xFE20 && cp <= 0xFE2F;
    if (cp < 0xFF00)
        return cp != 0xFEFF; /* Arabic presentation forms B; not the byte order mark */
    if (cp < 0xFFF0)          /* fullwidth letters and digits, halfwidth kana and Hangul */
        return (cp >= 0xFF10 && cp <= 0xFF19) || (cp >= 0xFF21 && cp <= 0xFF3A) || (cp >= 0xFF41 && cp <= 0xFF5A) ||
               (cp >= 0xFF66 && cp <= 0xFFDC);
    if (cp < 0x10000)
        return 0;
    if (cp < 0x1F000) /* historic scripts, musical and mathematical alphanumerics */
        return 1;
    if (cp < 0x20000) /* emoji and pictographs */
        return 0;
    return cp < 0x40000; /* CJK extensions */
}

/* 1 when cp lies in [lo, hi] and has the parity of lo (the upper case of a
 * regular upper/lower pair). */
static int pair_upper(int32_t cp, int32_t lo, int32_t hi)
{
    return cp >= lo && cp <= hi && ((cp - lo) & 1) == 0;
}

int32_t cv_ml_fold(int32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if (cp < 0x100)
        return cp >= 0xC0 && cp <= 0xDE && cp != 0xD7 ? cp + 32 : cp;
    if (cp < 0x180) { /* Latin Extended-A */
        if (cp == 0x130)
            return 'i';
        if (cp == 0x178)
            return 0xFF;
        if (cp == 0x17F)
            return 's';
        if (pair_upper(cp, 0x100, 0x137) || pair_upper(cp, 0x139, 0x148) || pair_upper(cp, 0x14A, 0x177) ||
            pair_upper(cp, 0x179, 0x17E))
            return cp + 1;
        return cp;
    }
    if (cp < 0x250) { /* Latin Extended-B: the digraph triples, then the regular pairs */
        if (cp == 0x1C4 || cp == 0x1C5 || cp == 0x1C7 || cp == 0x1C8 || cp == 0x1CA || cp == 0x1CB)
            return cp == 0x1C4 || cp == 0x1C7 || cp == 0x1CA ? cp + 2 : cp + 1;
        if (cp == 0x1F1 || cp == 0x1F2)
            return 0x1F3;
        if (pair_upper(cp, 0x1CD, 0x1DC) || pair_upper(cp, 0x1DE, 0x1EF) || pair_upper(cp, 0x1F8, 0x21F) ||
            pair_upper(cp, 0x222, 0x233) || pair_upper(cp, 0x246, 0x24F))
            return cp + 1;
        return cp;
    }
    if (cp >= 0x370 && cp < 0x400) { /* Greek */
        if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
            return cp + 32;
        if (cp == 0x386)
            return 0x3AC;
        if (cp >= 0x388 && cp <= 0x38A)
            return cp + 37;
        if (cp == 0x38C)
            return 0x3CC;
        if (cp == 0x38E || cp == 0x38F)
            return cp + 63;
        if (cp == 0x3C2) /* final sigma */
            return 0x3C3;
        return cp;
    }
    if (cp >= 0x400 && cp < 0x530) { /* Cyrillic and its supplement */
        if (cp < 0x410)
            return cp + 80;
        if (cp < 0x430)
            return cp + 32;
        if (cp == 0x4C0)
            return 0x4CF;
        if (pair_upper(cp, 0x460, 0x481) || pair_upper(cp, 0x48A, 0x4BF) || pair_upper(cp, 0x4D0, 0x52F))
            return cp + 1;
        if (cp >= 0x4C1 && cp <= 0x4CE && (cp & 1))
            return cp + 1;
        return cp;
    }
    if (cp >= 0x531 && cp <= 0x556) /* Armenian */
        return cp + 48;
    if (cp >= 0x1E00 && cp < 0x1F00) { /* Latin Extended Additional */
        if (cp == 0x1E9E)
            return 0xDF;
        if (pair_upper(cp, 0x1E00, 0x1E95) || pair_upper(cp, 0x1EA0, 0x1EFF))
            return cp + 1;
        return cp;
    }
    if (cp >= 0xFF10 && cp <= 0xFF19)
        return '0' + (cp - 0xFF10);
    if (cp >= 0xFF21 && cp <= 0xFF3A)
        return 'a' + (cp - 0xFF21);
    if (cp >= 0xFF41 && cp <= 0xFF5A)
        return 'a' + (cp - 0xFF41);
    return cp;
}

size_t cv_ml_tokenize(const char *text, size_t len, cv_ml_token_fn fn, void *ud)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    char tok[CV_ML_MAX_TOKEN + 4];
    size_t tl = 0, count = 0;
    int in = 0, cut = 0;
    while (p < end) {
        int32_t cp;
        int used;
        unsigned c = *p;
        if (c < 0x80) { /* the common case, without the decoder */
            cp = (int32_t)c;
            used = 1;
        } else {
            cp = cv_ml_utf8_decode(p, (size_t)(end - p), &used);
        }
        p += used;
        if (cp >= 0 && cv_ml_is_token_char(cp)) {
            in = 1;
            cp = cv_ml_fold(cp);
            if (cp < 0x80) {
                if (!cut && tl < CV_ML_MAX_TOKEN)
                    tok[tl++] = (char)cp;
            } else {
                char b[4];
                int n = utf8_encode(cp, b);
                if (!cut && tl + (size_t)n <= CV_ML_MAX_TOKEN) {
                    memcpy(tok + tl, b, (size_t)n);
                    tl += (size_t)n;
                } else {
                    cut = 1; /* the token stays a whole number of code points */
                }
            }
        } else if (in) {
            fn(ud, tok, tl);
            count++;
            in = cut = 0;
            tl = 0;
        }
    }
    if (in) {
        fn(ud, tok, tl);
        count++;
    }
    return count;
}
