/*
 * extract.c — the field extractor (extract.h; rules and figures in
 * docs/extract.md). Each field kind is a set of PCRE2 regexes that find
 * candidates plus a C checker that validates and normalizes one candidate
 * (checksums, calendars, separators) and gives it a confidence. The best
 * candidate of a field is the one with the highest confidence, the earliest
 * on a tie. All matching goes through match_all(), which owns the limits:
 * match limit, depth limit, JIT stack and a wall-clock budget.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "ml/extract.h"
#include "conveyor.h"
#include "effects/effects.h"
#include "json/yaml.h"
#include "ml/ml.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MATCH_LIMIT 200000u
#define DEPTH_LIMIT 5000u
#define BUDGET_NS 5000000000LL /* 5 s per call, a backstop only */
#define MAX_REGEX 4

/* ------------------------------------------------------------------ types */

enum kind { K_MONEY, K_DATE, K_EMAIL, K_PHONE, K_IBAN, K_CARD, K_URL, K_PATTERN };
static const char *const kind_names[] = {"money", "date",  "email", "phone",
                                         "iban",  "card",  "url",   "pattern"};

enum norm { N_TRIM, N_UPPER, N_LOWER, N_DIGITS, N_ALNUM, N_NOSPACE, N_COLLAPSE };
static const char *const norm_names[] = {"trim",    "upper",   "lower",          "digits",
                                         "alnum",   "nospace", "collapse_spaces"};
#define N_COUNT 7

enum vkind { V_LUHN, V_MOD97, V_IBAN, V_REGEX, V_MIN, V_MAX, V_ONEOF };

struct validator {
    enum vkind kind;
    long n;            /* V_MIN / V_MAX */
    pcre2_code *re;    /* V_REGEX */
    jv list;           /* V_ONEOF: array of strings */
};

struct field {
    char *name;
    enum kind kind;
    bool required;
    bool day_first, day_first_declared;
    char currency[4]; /* resolves "$" and "¥"; "" = default */
    char region[3];   /* phone: "" = none */
    pcre2_code *re[MAX_REGEX];
    int nre;
    int group;        /* pattern: group number to take (-1: by name) */
    char *group_name;
    int norms[8];
    int nnorm;
    struct validator *vals;
    int nval;
};

struct cv_extractor {
    char *name;
    struct field *fields;
    int nfields;
};

struct cand {
    bool ok;
    double conf;
    jv value;
};

/* --------------------------------------------------------------- helpers */

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A configuration error located at JSON pointer `ptr` when locs knows it. */
static jv conf_error(jv locs, const char *file, const char *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static jv conf_error(jv locs, const char *file, const char *ptr, const char *fmt, ...)
{
    char msg[1024], where[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = 0, col = 0;
    if (jv_get_kind(locs) == JV_KIND_OBJECT) {
        /* the nearest located ancestor of ptr */
        char p[512];
        snprintf(p, sizeof p, "%s", ptr);
        for (;;) {
            jv l = jv_object_get(jv_copy(locs), jv_string(p));
            if (jv_get_kind(l) == JV_KIND_ARRAY) {
                line = (int)jv_number_value(jv_array_get(jv_copy(l), 0));
                col = (int)jv_number_value(jv_array_get(jv_copy(l), 1));
                jv_free(l);
                break;
            }
            jv_free(l);
            char *slash = strrchr(p, '/');
            if (!slash)
                break;
            *slash = 0;
        }
    }
    if (line)
        snprintf(where, sizeof where, "%s:%d:%d: ", file ? file : "<definition>", line, col);
    else if (file)
        snprintf(where, sizeof where, "%s: %s: ", file, *ptr ? ptr : "/");
    else
        snprintf(where, sizeof where, "%s: ", *ptr ? ptr : "/");
    return cv__error_newf(CV_ERR_CONFIGURATION, 400, "invalid extractor definition", "%s%s",
                          where, msg);
}

static jv invalid_with(jv err)
{
    return jv_invalid_with_msg(err);
}

/* Compiles `pat`; on error fills msg with PCRE2's message and offset. */
static pcre2_code *compile(const char *pat, uint32_t extra, char *msg, size_t msgsz)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | extra, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(ec, buf, sizeof buf);
        snprintf(msg, msgsz, "bad regex at offset %zu: %s", (size_t)off, (char *)buf);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* no JIT: the interpreter, same results */
    return re;
}

/* ------------------------------------------------------------- checksums */

static bool luhn_ok(const char *d, size_t n)
{
    int sum = 0;
    bool dbl = false;
    for (size_t i = n; i-- > 0;) {
        int v = d[i] - '0';
        if (dbl && (v *= 2) > 9)
            v -= 9;
        sum += v;
        dbl = !dbl;
    }
    return n > 0 && sum % 10 == 0;
}

/* ISO 7064 mod 97-10 over an alphanumeric string already rotated. */
static int mod97(const char *s, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c >= '0' && c <= '9')
            r = (r * 10 + (c - '0')) % 97;
        else if (c >= 'A' && c <= 'Z')
            r = (r * 100 + (c - 'A' + 10)) % 97;
        else
            return -1;
    }
    return r;
}

/* IBAN lengths by country (ISO 13616 registry, common countries). */
static const struct {
    char cc[3];
    int len;
} iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AT", 20}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BR", 29}, {"CH", 21}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"EE", 20},
    {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GI", 23},
    {"GL", 18}, {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MT", 31},
    {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25},
    {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24},
    {"SM", 27}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"XK", 20},
};

static int iban_length(const char *cc)
{
    for (size_t i = 0; i < sizeof iban_len / sizeof *iban_len; i++)
        if (cc[0] == iban_len[i].cc[0] && cc[1] == iban_len[i].cc[1])
            return iban_len[i].len;
    return 0;
}

/* s: n upper-case alphanumerics. True when country length and mod 97 hold. */
static bool iban_ok(const char *s, size_t n)
{
    if (n < 15 || n > 34 || (size_t)iban_length(s) != n)
        return false;
    char buf[40];
    memcpy(buf, s + 4, n - 4);
    memcpy(buf + n - 4, s, 4);
    return mod97(buf, n) == 1;
}

/* ----------------------------------------------------------------- money */

static const struct {
    const char *sym, *code;
} currencies[] = {
    {"US$", "USD"}, {"CA$", "CAD"}, {"C$", "CAD"}, {"AU$", "AUD"}, {"A$", "AUD"},
    {"€", "EUR"},   {"£", "GBP"},   {"₹", "INR"},  {"₩", "KRW"},   {"₽", "RUB"},
    {"₺", "TRY"},   {"zł", "PLN"},  {"Fr.", "CHF"}, {"$", NULL},    {"¥", NULL},
};
static const char *const iso_codes[] = {"EUR", "USD", "GBP", "JPY", "CHF", "CAD", "AUD", "CNY",
                                        "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "INR", "BRL",
                                        "MXN", "ZAR", "NZD", "SGD", "HKD", "KRW", "TRY", "RUB",
                                        "AED", "SAR", "ILS", "RON", "BGN", "ISK"};

#define NUM "(?:\\d{1,3}(?:[,.'’ \\x{A0}\\x{202F}]\\d{3})+(?:[.,]\\d{1,2})?|\\d+(?:[.,]\\d{1,2})?)"
#define CUR                                                                                \
    "(?:US\\$|CA?\\$|AU?\\$|€|£|₹|₩|₽|₺|zł|Fr\\.|\\$|¥|\\b(?:EUR|USD|GBP|JPY|CHF|CAD|AUD|CNY|" \
    "SEK|NOK|DKK|PLN|CZK|HUF|INR|BRL|MXN|ZAR|NZD|SGD|HKD|KRW|TRY|RUB|AED|SAR|ILS|RON|BGN|"     \
    "ISK)\\b)"
#define SP "[ \\x{A0}\\x{202F}]?"
static const char money_re[] = "(?<n0>[-−])?(?<c1>" CUR ")" SP "(?<n1>[-−])?" SP
                               "(?<a1>(?<![\\d.,])" NUM ")(?![\\d])"
                               "|(?<n2>[-−])?(?<a2>(?<![\\d.,])" NUM ")" SP "(?<c2>" CUR ")";

/* Parses a number with grouping/decimal separators; returns false when the
 * separators are inconsistent. *ambiguous: one separator followed by exactly
 * three digits ("1,234", "1.234"), read as grouping. */
static bool parse_amount(const char *s, size_t n, double *out, bool *ambiguous)
{
    char digits[64];
    size_t nd = 0;
    /* find separators: any non-digit run between digits */
    size_t seppos[32];
    char sepch[32][4];
    int nsep = 0;
    for (size_t i = 0; i < n;) {
        if (isdigit((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !isdigit((unsigned char)s[j]))
            j++;
        if (nsep == 32 || j - i > 3)
            return false;
        seppos[nsep] = i;
        memcpy(sepch[nsep], s + i, j - i);
        sepch[nsep][j - i] = 0;
        nsep++;
        i = j;
    }
    int dec = -1;
    *ambiguous = false;
    if (nsep > 0) {
        size_t after = 0;
        for (size_t k = seppos[nsep - 1] + strlen(sepch[nsep - 1]); k < n; k++)
            after++;
        const char *last = sepch[nsep - 1];
        if ((last[0] == '.' || last[0] == ',') && !last[1] && after <= 2)
            dec = nsep - 1;
        if (nsep == 1 && after == 3 && (last[0] == '.' || last[0] == ','))
            *ambiguous = true;
        for (int k = 0; k < nsep; k++) {
            if (k == dec)
                continue;
            if (strcmp(sepch[k], sepch[0]) != 0)
                return false;
            if (dec >= 0 && strcmp(sepch[k], sepch[dec]) == 0)
                return false;
        }
    }
    int k = 0;
    for (size_t i = 0; i < n && nd < sizeof digits - 2; i++) {
        if (isdigit((unsigned char)s[i]))
            digits[nd++] = s[i];
        else if (k < nsep && i == seppos[k]) {
            if (k == dec)
                digits[nd++] = '.';
            k++;
        }
    }
    digits[nd] = 0;
    *out = strtod(digits, NULL);
    return true;
}

static const char *currency_code(const char *s, size_t n, const char *dflt, bool *guessed)
{
    *guessed = false;
    for (size_t i = 0; i < sizeof currencies / sizeof *currencies; i++)
        if (strlen(currencies[i].sym) == n && !memcmp(s, currencies[i].sym, n)) {
            if (currencies[i].code)
                return currencies[i].code;
            if (*dflt)
                return dflt;
            *guessed = true;
            return s[0] == '$' ? "USD" : "JPY";
        }
    for (size_t i = 0; i < sizeof iso_codes / sizeof *iso_codes; i++)
        if (n == 3 && !memcmp(s, iso_codes[i], 3))
            return iso_codes[i];
    return NULL;
}

/* ------------------------------------------------------------------ dates */

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};
#define MONTH                                                                           \
    "(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
static const char *const date_res[] = {
    "(?<!\\d)(\\d{4})([-/])(\\d{1,2})\\2(\\d{1,2})(?!\\d)",
    "(?<![\\d.])(\\d{1,2})([/.\\-])(\\d{1,2})\\2(\\d{4}|\\d{2})(?![\\d])",
    "(?<!\\d)(\\d{1,2})(?:st|nd|rd|th)?\\.? (" MONTH ")\\.?,? (\\d{4})(?!\\d)",
    "\\b(" MONTH ")\\.? (\\d{1,2})(?:st|nd|rd|th)?,? (\\d{4})(?!\\d)",
};

static int month_of(const char *s)
{
    char m[4] = {0};
    for (int i = 0; i < 3 && s[i]; i++)
        m[i] = (char)tolower((unsigned char)s[i]);
    for (int i = 0; i < 12; i++)
        if (!strcmp(m, months[i]))
            return i + 1;
    return 0;
}

static bool date_valid(int y, int m, int d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1)
        return false;
    int md = mdays[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        md = 29;
    return d <= md;
}

static jv iso_date(int y, int m, int d)
{
    char b[16];
    snprintf(b, sizeof b, "%04d-%02d-%02d", y, m, d);
    return jv_string(b);
}

/* POSIX strptime's pivot: 00-68 -> 20xx, 69-99 -> 19xx. */
static int full_year(const char *s, size_t n)
{
    int y = atoi(s);
    if (n == 2)
        y += y <= 68 ? 2000 : 1900;
    return y;
}

/* ------------------------------------------------------------------ phone */

static const struct {
    char r[3];
    const char *cc;
    bool keep_zero;
} regions[] = {
    {"US", "1", false},  {"CA", "1", false},  {"GB", "44", false}, {"FR", "33", false},
    {"DE", "49", false}, {"CH", "41", false}, {"IT", "39", true},  {"ES", "34", false},
    {"NL", "31", false}, {"BE", "32", false}, {"AT", "43", false}, {"PT", "351", false},
    {"IE", "353", false}, {"SE", "46", false}, {"NO", "47", false}, {"DK", "45", false},
    {"PL", "48", false}, {"JP", "81", false}, {"CN", "86", false}, {"IN", "91", false},
    {"AU", "61", false}, {"BR", "55", false}, {"MX", "52", false}, {"RU", "7", false},
};

static int region_index(const char *r)
{
    for (size_t i = 0; i < sizeof regions / sizeof *regions; i++)
        if (!strcmp(r, regions[i].r))
            return (int)i;
    return -1;
}

static const char phone_re[] =
    "(?<![\\w+])(?:\\+|00)?(?:\\(\\d{1,4}\\)|\\d)(?:[ .\\-]?(?:\\(\\d{1,4}\\)|\\d)){6,17}(?![\\w])";

/* -------------------------------------------------------------- checkers */

typedef struct cand (*checker)(const struct field *f, const char *t, PCRE2_SIZE *ov,
                               pcre2_code *re, int which);

static size_t glen(PCRE2_SIZE *ov, int g)
{
    return ov[2 * g] == PCRE2_UNSET ? 0 : ov[2 * g + 1] - ov[2 * g];
}

static int gnum(pcre2_code *re, const char *name)
{
    return pcre2_substring_number_from_name(re, (PCRE2_SPTR)name);
}

static struct cand no(void)
{
    return (struct cand){false, 0, jv_null()};
}

static struct cand check_money(const struct field *f, const char *t, PCRE2_SIZE *ov,
                               pcre2_code *re, int which)
{
    int a = gnum(re, "a1"), c = gnum(re, "c1");
    bool neg = glen(ov, gnum(re, "n0")) || glen(ov, gnum(re, "n1"));
    if (!glen(ov, a)) {
        a = gnum(re, "a2");
        c = gnum(re, "c2");
        neg = glen(ov, gnum(re, "n2"));
    }
    double amt;
    bool amb, guessed;
    if (!parse_amount(t + ov[2 * a], glen(ov, a), &amt, &amb))
        return no();
    const char *code = currency_code(t + ov[2 * c], glen(ov, c), f->currency, &guessed);
    if (!code)
        return no();
    jv v = jv_object();
    v = jv_object_set(v, jv_string("amount"), jv_number(neg ? -amt : amt));
    v = jv_object_set(v, jv_string("currency"), jv_string(code));
    double conf = 0.9;
    if (guessed)
        conf -= 0.2;
    if (amb)
        conf -= 0.15;
    return (struct cand){true, conf, v};
}

static struct cand check_date(const struct field *f, const char *t, PCRE2_SIZE *ov,
                              pcre2_code *re, int which)
{
    int y, m, d;
    double conf;
    if (which == 0) {
        y = atoi(t + ov[2]);
        m = atoi(t + ov[6]);
        d = atoi(t + ov[8]);
        conf = 0.95;
    } else if (which == 1) {
        int a = atoi(t + ov[2]), b = atoi(t + ov[6]);
        y = full_year(t + ov[8], glen(ov, 4));
        bool dot = t[ov[4]] == '.';
        bool df = dot || f->day_first;
        d = df ? a : b;
        m = df ? b : a;
        if (a == b || a > 12 || b > 12 || dot)
            conf = 0.9;
        else
            conf = f->day_first_declared ? 0.85 : 0.6;
        if (!date_valid(y, m, d) && !dot && !f->day_first_declared && date_valid(y, d, m)) {
            int tmp = d;
            d = m;
            m = tmp;
            conf = 0.75; /* the other order is the only valid one */
        }
        if (glen(ov, 4) == 2)
            conf -= 0.1;
    } else if (which == 2) {
        d = atoi(t + ov[2]);
        m = month_of(t + ov[4]);
        y = atoi(t + ov[6]);
        conf = 0.9;
    } else {
        m = month_of(t + ov[2]);
        d = atoi(t + ov[4]);
        y = atoi(t + ov[6]);
        conf = 0.9;
    }
    if (!date_valid(y, m, d))
        return no();
    return (struct cand){true, conf, iso_date(y, m, d)};
}

static struct cand check_text(const struct field *f, const char *t, PCRE2_SIZE *ov,
                              pcre2_code *re, int which)
{
    size_t n = glen(ov, 0);
    if (f->kind == K_URL) /* trailing sentence punctuation is not part of a URL */
        while (n > 0 && strchr(".,;:!?", t[ov[0] + n - 1]))
            n--;
    char *s = xstrndup(t + ov[0], n);
    if (!s)
        return no();
    if (f->kind == K_EMAIL) {
        char *at = strchr(s, '@');
        for (char *p = at; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    jv v = jv_string(s);
    free(s);
    return (struct cand){true, 0.9, v};
}

static struct cand check_iban(const struct field *f, const char *t, PCRE2_SIZE *ov,
                              pcre2_code *re, int which)
{
    char s[40];
    size_t n = 0;
    const char *p = t + ov[0], *end = t + ov[1];
    int want = 0;
    char cc[3] = {(char)toupper((unsigned char)p[0]), (char)toupper((unsigned char)p[1]), 0};
    want = iban_length(cc);
    if (!want)
        return no();
    for (; p < end && n < (size_t)want; p++)
        if (*p != ' ')
            s[n++] = (char)toupper((unsigned char)*p);
    /* the IBAN must end at a token boundary */
    if ((size_t)want != n || (p < end && *p != ' '))
        return no();
    if (!iban_ok(s, n))
        return no();
    return (struct cand){true, 0.95, jv_string_sized(s, (int)n)};
}

static struct cand check_card(const struct field *f, const char *t, PCRE2_SIZE *ov,
                              pcre2_code *re, int which)
{
    char d[24];
    size_t n = 0;
    for (size_t i = ov[0]; i < ov[1] && n < sizeof d - 1; i++)
        if (isdigit((unsigned char)t[i]))
            d[n++] = t[i];
    if (n < 12 || n > 19 || !luhn_ok(d, n))
        return no();
    for (size_t i = 0; i + 4 < n; i++)
        d[i] = '*';
    return (struct cand){true, 0.9, jv_string_sized(d, (int)n)};
}

static struct cand check_phone(const struct field *f, const char *t, PCRE2_SIZE *ov,
                               pcre2_code *re, int which)
{
    const char *p = t + ov[0];
    size_t len = glen(ov, 0);
    bool intl = p[0] == '+' || (len > 1 && p[0] == '0' && p[1] == '0');
    char d[40];
    size_t n = 0;
    for (size_t i = 0; i < len && n < sizeof d - 1; i++) {
        if (intl && i + 2 < len && !memcmp(p + i, "(0)", 3)) { /* +44 (0)20 ... */
            i += 2;
            continue;
        }
        if (isdigit((unsigned char)p[i]))
            d[n++] = p[i];
    }
    d[n] = 0;
    char out[48];
    double conf;
    if (intl) {
        const char *digits = p[0] == '+' ? d : d + 2;
        if (strlen(digits) < 8 || strlen(digits) > 15 || digits[0] == '0')
            return no();
        snprintf(out, sizeof out, "+%s", digits);
        conf = 0.85;
    } else {
        if (n < 9 || n > 15)
            return no();
        int r = f->region[0] ? region_index(f->region) : -1;
        if (r >= 0) {
            const char *nat = d;
            if (regions[r].cc[0] == '1' && !regions[r].cc[1]) {
                if (n == 11 && d[0] == '1')
                    nat = d + 1;
                else if (n != 10)
                    return no();
            } else if (d[0] == '0' && !regions[r].keep_zero)
                nat = d + 1;
            else if (d[0] != '0' && !regions[r].keep_zero)
                return no(); /* a national number without its trunk 0: not a phone */
            snprintf(out, sizeof out, "+%s%s", regions[r].cc, nat);
            if (strlen(out) - 1 > 15)
                return no();
            conf = 0.75;
        } else {
            snprintf(out, sizeof out, "%s", d);
            conf = 0.5;
        }
    }
    return (struct cand){true, conf, jv_string(out)};
}

static void apply_norm(int norm, char *s)
{
    size_t w = 0, n = strlen(s);
    switch (norm) {
    case N_TRIM: {
        size_t a = 0, b = n;
        while (a < b && isspace((unsigned char)s[a]))
            a++;
        while (b > a && isspace((unsigned char)s[b - 1]))
            b--;
        memmove(s, s + a, b - a);
        s[b - a] = 0;
        return;
    }
    case N_UPPER:
        for (size_t i = 0; i < n; i++)
            s[i] = (char)toupper((unsigned char)s[i]);
        return;
    case N_LOWER:
        for (size_t i = 0; i < n; i++)
            s[i] = (char)tolower((unsigned char)s[i]);
        return;
    case N_DIGITS:
    case N_ALNUM:
    case N_NOSPACE:
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            bool keep = norm == N_DIGITS    ? isdigit(c)
                        : norm == N_ALNUM   ? isalnum(c)
                                            : !isspace(c);
            if (keep)
                s[w++] = (char)c;
        }
        s[w] = 0;
        return;
    case N_COLLAPSE:
        for (size_t i = 0; i < n; i++) {
            if (isspace((unsigned char)s[i])) {
                if (w > 0 && s[w - 1] != ' ')
                    s[w++] = ' ';
            } else
                s[w++] = s[i];
        }
        while (w > 0 && s[w - 1] == ' ')
            w--;
        s[w] = 0;
        return;
    }
}

static struct cand check_pattern(const struct field *f, const char *t, PCRE2_SIZE *ov,
                                 pcre2_code *re, int which)
{
    int g = f->group >= 0 ? f->group : gnum(re, f->group_name);
    if (g < 0 || ov[2 * g] == PCRE2_UNSET)
        return no();
    char *s = xstrndup(t + ov[2 * g], glen(ov, g));
    if (!s)
        return no();
    for (int i = 0; i < f->nnorm; i++)
        apply_norm(f->norms[i], s);
    size_t n = strlen(s);
    double conf = f->nval ? 0.85 : 0.7;
    bool ok = true;
    for (int i = 0; i < f->nval && ok; i++) {
        const struct validator *v = &f->vals[i];
        switch (v->kind) {
        case V_LUHN:
            for (size_t k = 0; k < n; k++)
                ok = ok && isdigit((unsigned char)s[k]);
            ok = ok && luhn_ok(s, n);
            conf = 0.95;
            break;
        case V_MOD97: {
            ok = n > 2 && mod97(s, n) == 1;
            conf = 0.95;
            break;
        }
        case V_IBAN:
            for (size_t k = 0; k < n; k++)
                s[k] = (char)toupper((unsigned char)s[k]);
            ok = iban_ok(s, n);
            conf = 0.95;
            break;
        case V_REGEX: {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(v->re, NULL);
            ok = md && pcre2_match(v->re, (PCRE2_SPTR)s, n, 0, 0, md, NULL) >= 0;
            pcre2_match_data_free(md);
            break;
        }
        case V_MIN:
            ok = (long)n >= v->n;
            break;
        case V_MAX:
            ok = (long)n <= v->n;
            break;
        case V_ONEOF: {
            ok = false;
            jv_array_foreach(v->list, k, e)
            {
                if (!ok && !strcmp(jv_string_value(e), s))
                    ok = true;
                jv_free(e);
            }
            break;
        }
        }
    }
    struct cand c = ok ? (struct cand){true, conf, jv_string(s)} : no();
    free(s);
    return c;
}

static checker checker_of(enum kind k)
{
    switch (k) {
    case K_MONEY:
        return check_money;
    case K_DATE:
        return check_date;
    case K_EMAIL:
    case K_URL:
        return check_text;
    case K_PHONE:
        return check_phone;
    case K_IBAN:
        return check_iban;
    case K_CARD:
        return check_card;
    case K_PATTERN:
        return check_pattern;
    }
    return NULL;
}

/* ---------------------------------------------------------- definitions */

static void field_cleanup(struct field *f)
{
    free(f->name);
    free(f->group_name);
    for (int i = 0; i < f->nre; i++)
        pcre2_code_free(f->re[i]);
    for (int i = 0; i < f->nval; i++) {
        pcre2_code_free(f->vals[i].re);
        jv_free(f->vals[i].list);
    }
    free(f->vals);
}

void cv__extractor_free(cv_extractor *x)
{
    if (!x)
        return;
    for (int i = 0; i < x->nfields; i++)
        field_cleanup(&x->fields[i]);
    free(x->fields);
    free(x->name);
    free(x);
}

static const char *const field_keys[] = {"name",      "kind",     "required", "pattern",
                                         "group",     "normalize", "validate", "day_first",
                                         "currency",  "region",    NULL};

static bool is_upper_code(jv s, size_t n)
{
    const char *p = jv_string_value(s);
    if (strlen(p) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 'A' || p[i] > 'Z')
            return false;
    return true;
}

/* Reads option `key` of field object `fo` (borrowed) falling back to `opts`. */
static int read_options(struct field *f, jv fo, jv opts, jv locs, const char *file,
                        const char *fptr, jv *err)
{
    jv src[2] = {fo, opts};
    char ptr[256];
    /* the field's own value wins: read options first, then the field */
    for (int s = 1; s >= 0; s--) {
        if (jv_get_kind(src[s]) != JV_KIND_OBJECT)
            continue;
        const char *base = s ? "/options" : fptr;
        jv v = jv_object_get(jv_copy(src[s]), jv_string("day_first"));
        if (jv_get_kind(v) == JV_KIND_TRUE || jv_get_kind(v) == JV_KIND_FALSE) {
            f->day_first = jv_get_kind(v) == JV_KIND_TRUE;
            f->day_first_declared = true;
        } else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
            snprintf(ptr, sizeof ptr, "%s/day_first", base);
            *err = conf_error(locs, file, ptr, "day_first must be true or false");
            jv_free(v);
            return CV_EVALIDATE;
        }
        jv_free(v);
        v = jv_object_get(jv_copy(src[s]), jv_string("currency"));
        if (jv_get_kind(v) == JV_KIND_STRING) {
            if (!is_upper_code(v, 3)) {
                snprintf(ptr, sizeof ptr, "%s/currency", base);
                *err = conf_error(locs, file, ptr,
                                  "currency must be an ISO 4217 code such as \"EUR\"");
                jv_free(v);
                return CV_EVALIDATE;
            }
            memcpy(f->currency, jv_string_value(v), 4);
        } else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
            snprintf(ptr, sizeof ptr, "%s/currency", base);
            *err = conf_error(locs, file, ptr, "currency must be a string");
            jv_free(v);
            return CV_EVALIDATE;
        }
        jv_free(v);
        v = jv_object_get(jv_copy(src[s]), jv_string("region"));
        if (jv_get_kind(v) == JV_KIND_STRING) {
            if (!is_upper_code(v, 2) || region_index(jv_string_value(v)) < 0) {
                snprintf(ptr, sizeof ptr, "%s/region", base);
                *err = conf_error(locs, file, ptr, "unknown region \"%s\" (see docs/extract.md)",
                                  jv_string_value(v));
                jv_free(v);
                return CV_EVALIDATE;
            }
            memcpy(f->region, jv_string_value(v), 3);
        } else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
            snprintf(ptr, sizeof ptr, "%s/region", base);
            *err = conf_error(locs, file, ptr, "region must be a string");
            jv_free(v);
            return CV_EVALIDATE;
        }
        jv_free(v);
    }
    return 0;
}

static int read_validators(struct field *f, jv val, jv locs, const char *file,
                           const char *fptr, jv *err)
{
    char ptr[300], msg[400];
    if (jv_get_kind(val) != JV_KIND_ARRAY) {
        jv a = jv_array_append(jv_array(), val);
        val = a;
    }
    int n = jv_array_length(jv_copy(val));
    f->vals = calloc((size_t)n + 1, sizeof *f->vals);
    if (!f->vals) {
        jv_free(val);
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "out of memory", NULL);
        return CV_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        jv e = jv_array_get(jv_copy(val), i);
        snprintf(ptr, sizeof ptr, "%s/validate/%d", fptr, i);
        struct validator *v = &f->vals[f->nval];
        v->list = jv_null();
        const char *name = NULL;
        jv arg = jv_null(), keyname = jv_null();
        if (jv_get_kind(e) == JV_KIND_STRING)
            name = jv_string_value(e);
        else if (jv_get_kind(e) == JV_KIND_OBJECT && jv_object_length(jv_copy(e)) == 1) {
            jv keys = jv_keys(jv_copy(e));
            keyname = jv_array_get(keys, 0);
            arg = jv_object_get(jv_copy(e), jv_copy(keyname));
            name = jv_string_value(keyname);
        } else {
            jv_free(e);
            jv_free(val);
            *err = conf_error(locs, file, ptr,
                              "a validator is a name or a one-key mapping {name: argument}");
            return CV_EVALIDATE;
        }
        int rc = 0;
        if (!strcmp(name, "luhn") || !strcmp(name, "mod97") || !strcmp(name, "iban"))
            v->kind = name[0] == 'l' ? V_LUHN : name[0] == 'm' ? V_MOD97 : V_IBAN;
        else if (!strcmp(name, "min_length") || !strcmp(name, "max_length")) {
            v->kind = name[1] == 'i' ? V_MIN : V_MAX;
            if (jv_get_kind(arg) != JV_KIND_NUMBER || jv_number_value(arg) < 0) {
                *err = conf_error(locs, file, ptr, "%s needs a number >= 0", name);
                rc = CV_EVALIDATE;
            } else
                v->n = (long)jv_number_value(arg);
        } else if (!strcmp(name, "regex")) {
            v->kind = V_REGEX;
            if (jv_get_kind(arg) != JV_KIND_STRING) {
                *err = conf_error(locs, file, ptr, "regex needs a pattern string");
                rc = CV_EVALIDATE;
            } else if (!(v->re = compile(jv_string_value(arg), 0, msg, sizeof msg))) {
                *err = conf_error(locs, file, ptr, "validator regex: %s", msg);
                rc = CV_EVALIDATE;
            }
        } else if (!strcmp(name, "one_of")) {
            v->kind = V_ONEOF;
            bool good = jv_get_kind(arg) == JV_KIND_ARRAY;
            if (good)
                jv_array_foreach(arg, k, x)
                {
                    good = good && jv_get_kind(x) == JV_KIND_STRING;
                    jv_free(x);
                }
            if (!good) {
                *err = conf_error(locs, file, ptr, "one_of needs a list of strings");
                rc = CV_EVALIDATE;
            } else
                v->list = jv_copy(arg);
        } else {
            *err = conf_error(locs, file, ptr,
                              "unknown validator \"%s\" (luhn, mod97, iban, regex, min_length, "
                              "max_length, one_of)",
                              name);
            rc = CV_EVALIDATE;
        }
        if (!rc && (v->kind == V_LUHN || v->kind == V_MOD97 || v->kind == V_IBAN) &&
            jv_get_kind(arg) != JV_KIND_NULL && jv_get_kind(arg) != JV_KIND_TRUE) {
            *err = conf_error(locs, file, ptr, "%s takes no argument", name);
            rc = CV_EVALIDATE;
        }
        jv_free(arg);
        jv_free(keyname);
        jv_free(e);
        if (rc) {
            jv_free(val);
            return rc;
        }
        f->nval++;
    }
    jv_free(val);
    return 0;
}

static int read_field(struct field *f, jv fo, int idx, jv opts, jv locs, const char *file,
                      jv *err)
{
    char fptr[64], ptr[128], msg[400];
    snprintf(fptr, sizeof fptr, "/fields/%d", idx);
    f->group = 0;
    if (jv_get_kind(fo) != JV_KIND_OBJECT) {
        *err = conf_error(locs, file, fptr, "a field is a mapping with name and kind");
        return CV_EVALIDATE;
    }
    int rc = 0;
    jv_object_foreach(fo, k, v)
    {
        bool known = false;
        for (int i = 0; field_keys[i]; i++)
            known = known || !strcmp(field_keys[i], jv_string_value(k));
        if (!known && !rc) {
            snprintf(ptr, sizeof ptr, "%s/%s", fptr, jv_string_value(k));
            *err = conf_error(locs, file, ptr, "unknown key \"%s\" in a field",
                              jv_string_value(k));
            rc = CV_EVALIDATE;
        }
        jv_free(k);
        jv_free(v);
    }
    if (rc)
        return rc;
    jv name = jv_object_get(jv_copy(fo), jv_string("name"));
    if (jv_get_kind(name) != JV_KIND_STRING || !*jv_string_value(name)) {
        jv_free(name);
        *err = conf_error(locs, file, fptr, "a field needs a non-empty string \"name\"");
        return CV_EVALIDATE;
    }
    f->name = strdup(jv_string_value(name));
    jv_free(name);
    jv kind = jv_object_get(jv_copy(fo), jv_string("kind"));
    snprintf(ptr, sizeof ptr, "%s/kind", fptr);
    int ki = -1;
    if (jv_get_kind(kind) == JV_KIND_STRING)
        for (int i = 0; i <= K_PATTERN; i++)
            if (!strcmp(kind_names[i], jv_string_value(kind)))
                ki = i;
    if (ki < 0) {
        *err = conf_error(locs, file, jv_is_valid(kind) && jv_get_kind(kind) != JV_KIND_NULL
                                          ? ptr
                                          : fptr,
                          "field \"%s\": unknown kind %s (money, date, email, phone, iban, card, "
                          "url, pattern)",
                          f->name,
                          jv_get_kind(kind) == JV_KIND_STRING ? jv_string_value(kind)
                                                              : "(none)");
        jv_free(kind);
        return CV_EVALIDATE;
    }
    jv_free(kind);
    f->kind = (enum kind)ki;
    f->day_first = true;
    jv req = jv_object_get(jv_copy(fo), jv_string("required"));
    f->required = jv_get_kind(req) == JV_KIND_TRUE;
    if (jv_get_kind(req) != JV_KIND_TRUE && jv_get_kind(req) != JV_KIND_FALSE &&
        jv_get_kind(req) != JV_KIND_NULL && jv_is_valid(req)) {
        snprintf(ptr, sizeof ptr, "%s/required", fptr);
        *err = conf_error(locs, file, ptr, "required must be true or false");
        jv_free(req);
        return CV_EVALIDATE;
    }
    jv_free(req);
    if ((rc = read_options(f, fo, opts, locs, file, fptr, err)))
        return rc;

    jv pat = jv_object_get(jv_copy(fo), jv_string("pattern"));
    bool has_pat = jv_is_valid(pat) && jv_get_kind(pat) != JV_KIND_NULL;
    static const char *const only_pattern[] = {"pattern", "group", "normalize", "validate"};
    if (f->kind != K_PATTERN) {
        jv_free(pat);
        for (int i = 0; i < 4; i++)
            if (jv_object_has(jv_copy(fo), jv_string(only_pattern[i]))) {
                snprintf(ptr, sizeof ptr, "%s/%s", fptr, only_pattern[i]);
                *err = conf_error(locs, file, ptr,
                                  "\"%s\" is only for kind pattern (field \"%s\" is %s)",
                                  only_pattern[i], f->name, kind_names[f->kind]);
                return CV_EVALIDATE;
            }
        const char *res[MAX_REGEX] = {0};
        int n = 1;
        switch (f->kind) {
        case K_MONEY:
            res[0] = money_re;
            break;
        case K_DATE:
            for (n = 0; n < 4; n++)
                res[n] = date_res[n];
            break;
        case K_EMAIL:
            res[0] = "(?<![\\w.%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
                     "[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
                     "\\.[A-Za-z]{2,24}(?![\\w])";
            break;
        case K_PHONE:
            res[0] = phone_re;
            break;
        case K_IBAN:
            res[0] = "(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])";
            break;
        case K_CARD:
            res[0] = "(?<![\\d-])\\d(?:[ -]?\\d){11,18}(?![\\d])";
            break;
        case K_URL:
            res[0] = "\\bhttps?://[^\\s<>\"'`{}|\\\\^]{1,2048}";
            break;
        default:
            break;
        }
        for (int i = 0; i < n; i++) {
            f->re[i] = compile(res[i], 0, msg, sizeof msg);
            if (!f->re[i]) {
                *err = cv__error_newf(CV_ERR_RUNTIME, 500, "built-in regex", "%s", msg);
                return CV_EVALIDATE;
            }
            f->nre++;
        }
        return 0;
    }
    snprintf(ptr, sizeof ptr, "%s/pattern", fptr);
    if (!has_pat || jv_get_kind(pat) != JV_KIND_STRING) {
        jv_free(pat);
        *err = conf_error(locs, file, has_pat ? ptr : fptr,
                          "field \"%s\": kind pattern needs a \"pattern\" string", f->name);
        return CV_EVALIDATE;
    }
    f->re[0] = compile(jv_string_value(pat), 0, msg, sizeof msg);
    jv_free(pat);
    if (!f->re[0]) {
        *err = conf_error(locs, file, ptr, "field \"%s\": %s", f->name, msg);
        return CV_EVALIDATE;
    }
    f->nre = 1;
    uint32_t ncap = 0;
    pcre2_pattern_info(f->re[0], PCRE2_INFO_CAPTURECOUNT, &ncap);
    jv g = jv_object_get(jv_copy(fo), jv_string("group"));
    snprintf(ptr, sizeof ptr, "%s/group", fptr);
    if (jv_get_kind(g) == JV_KIND_NUMBER) {
        double d = jv_number_value(g);
        if (d < 0 || d != (int)d || d > ncap) {
            *err = conf_error(locs, file, ptr, "group %g: the pattern has %u capture groups", d,
                              ncap);
            jv_free(g);
            return CV_EVALIDATE;
        }
        f->group = (int)d;
    } else if (jv_get_kind(g) == JV_KIND_STRING) {
        if (gnum(f->re[0], jv_string_value(g)) < 0) {
            *err = conf_error(locs, file, ptr, "the pattern has no group named \"%s\"",
                              jv_string_value(g));
            jv_free(g);
            return CV_EVALIDATE;
        }
        f->group = -1;
        f->group_name = strdup(jv_string_value(g));
    } else if (jv_is_valid(g) && jv_get_kind(g) != JV_KIND_NULL) {
        *err = conf_error(locs, file, ptr, "group is a number or a group name");
        jv_free(g);
        return CV_EVALIDATE;
    }
    jv_free(g);
    jv norm = jv_object_get(jv_copy(fo), jv_string("normalize"));
    if (jv_get_kind(norm) == JV_KIND_STRING)
        norm = jv_array_append(jv_array(), norm);
    if (jv_get_kind(norm) == JV_KIND_ARRAY) {
        jv_array_foreach(norm, i, e)
        {
            snprintf(ptr, sizeof ptr, "%s/normalize/%d", fptr, i);
            int ni = -1;
            if (jv_get_kind(e) == JV_KIND_STRING)
                for (int k = 0; k < N_COUNT; k++)
                    if (!strcmp(norm_names[k], jv_string_value(e)))
                        ni = k;
            if (ni < 0 || f->nnorm == 8) {
                if (!rc)
                    *err = conf_error(
                        locs, file, ptr,
                        ni < 0 ? "unknown normalizer %s (trim, upper, lower, digits, alnum, "
                                 "nospace, collapse_spaces)"
                               : "at most 8 normalizers %s",
                        jv_get_kind(e) == JV_KIND_STRING ? jv_string_value(e) : "(not a string)");
                rc = CV_EVALIDATE;
            } else
                f->norms[f->nnorm++] = ni;
            jv_free(e);
        }
    } else if (jv_is_valid(norm) && jv_get_kind(norm) != JV_KIND_NULL) {
        snprintf(ptr, sizeof ptr, "%s/normalize", fptr);
        *err = conf_error(locs, file, ptr, "normalize is a name or a list of names");
        rc = CV_EVALIDATE;
    }
    jv_free(norm);
    if (rc)
        return rc;
    jv val = jv_object_get(jv_copy(fo), jv_string("validate"));
    if (jv_is_valid(val) && jv_get_kind(val) != JV_KIND_NULL)
        return read_validators(f, val, locs, file, fptr, err);
    jv_free(val);
    return 0;
}

int cv__extractor_new(jv def, jv locs, const char *file, cv_extractor **out, jv *err)
{
    *out = NULL;
    int rc = 0;
    cv_extractor *x = calloc(1, sizeof *x);
    if (!x) {
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "out of memory", NULL);
        rc = CV_ENOMEM;
        goto out;
    }
    if (jv_get_kind(def) == JV_KIND_ARRAY) /* a bare list of fields */
        def = jv_object_set(jv_object(), jv_string("fields"), def);
    if (jv_get_kind(def) != JV_KIND_OBJECT) {
        *err = conf_error(locs, file, "", "an extractor is a mapping with \"fields\"");
        rc = CV_EVALIDATE;
        goto out;
    }
    jv_object_foreach(def, k, v)
    {
        const char *ks = jv_string_value(k);
        if (!rc && strcmp(ks, "name") && strcmp(ks, "fields") && strcmp(ks, "options") &&
            strcmp(ks, "description")) {
            char ptr[256];
            snprintf(ptr, sizeof ptr, "/%s", ks);
            *err = conf_error(locs, file, ptr, "unknown key \"%s\" (name, description, "
                                               "options, fields)", ks);
            rc = CV_EVALIDATE;
        }
        jv_free(k);
        jv_free(v);
    }
    if (rc)
        goto out;
    jv name = jv_object_get(jv_copy(def), jv_string("name"));
    x->name = strdup(jv_get_kind(name) == JV_KIND_STRING ? jv_string_value(name) : "");
    jv_free(name);
    jv opts = jv_object_get(jv_copy(def), jv_string("options"));
    if (jv_is_valid(opts) && jv_get_kind(opts) != JV_KIND_NULL &&
        jv_get_kind(opts) != JV_KIND_OBJECT) {
        jv_free(opts);
        *err = conf_error(locs, file, "/options", "options is a mapping");
        rc = CV_EVALIDATE;
        goto out;
    }
    jv fields = jv_object_get(jv_copy(def), jv_string("fields"));
    if (jv_get_kind(fields) != JV_KIND_ARRAY || jv_array_length(jv_copy(fields)) == 0) {
        *err = conf_error(locs, file, jv_get_kind(fields) == JV_KIND_INVALID ? "" : "/fields",
                          "\"fields\" must be a non-empty list");
        jv_free(fields);
        jv_free(opts);
        rc = CV_EVALIDATE;
        goto out;
    }
    int n = jv_array_length(jv_copy(fields));
    x->fields = calloc((size_t)n, sizeof *x->fields);
    if (!x->fields) {
        rc = CV_ENOMEM;
        *err = cv__error_new(CV_ERR_RUNTIME, 500, "out of memory", NULL);
    }
    for (int i = 0; i < n && !rc; i++) {
        jv fo = jv_array_get(jv_copy(fields), i);
        x->nfields++;
        rc = read_field(&x->fields[i], fo, i, opts, locs, file, err);
        for (int j = 0; j < i && !rc; j++)
            if (!strcmp(x->fields[j].name, x->fields[i].name)) {
                char ptr[64];
                snprintf(ptr, sizeof ptr, "/fields/%d/name", i);
                *err = conf_error(locs, file, ptr, "duplicate field name \"%s\"",
                                  x->fields[i].name);
                rc = CV_EVALIDATE;
            }
        jv_free(fo);
    }
    jv_free(fields);
    jv_free(opts);
out:
    jv_free(def);
    jv_free(locs);
    if (rc)
        cv__extractor_free(x);
    else
        *out = x;
    return rc;
}

int cv__extractor_load(const char *text, size_t len, const char *file, cv_extractor **out,
                       jv *err)
{
    jv v, locs = jv_null(), diags = jv_array();
    *out = NULL;
    if (cv__yaml_parse(text, len, file ? file : "<definition>", &v, &locs, &diags)) {
        jv d = jv_array_get(diags, 0);
        jv m = jv_object_get(jv_copy(d), jv_string("message"));
        jv l = jv_object_get(jv_copy(d), jv_string("line"));
        jv c = jv_object_get(jv_copy(d), jv_string("column"));
        *err = cv__error_newf(CV_ERR_CONFIGURATION, 400, "invalid extractor definition",
                              "%s:%d:%d: %s", file ? file : "<definition>",
                              jv_get_kind(l) == JV_KIND_NUMBER ? (int)jv_number_value(l) : 0,
                              jv_get_kind(c) == JV_KIND_NUMBER ? (int)jv_number_value(c) : 0,
                              jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) : "?");
        jv_free(m);
        jv_free(l);
        jv_free(c);
        jv_free(d);
        jv_free(locs);
        return CV_EPARSE;
    }
    jv_free(diags);
    return cv__extractor_new(v, locs, file, out, err);
}

/* -------------------------------------------------------------- running */

jv cv__extract_run(const cv_extractor *x, const char *text, size_t len)
{
    if (len > CV_EXTRACT_MAX_TEXT)
        return invalid_with(cv__error_newf(CV_ERR_VALIDATION, 400, "text too long",
                                           "the text has %zu bytes; extract reads at most %u",
                                           len, CV_EXTRACT_MAX_TEXT));
    if (!text)
        text = "";
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    /* no JIT stack of our own: PCRE2's 32 KiB default on the machine stack is
     * enough for the built-in patterns, and a user pattern that needs more
     * ends with PCRE2_ERROR_JIT_STACKLIMIT (a clear error) instead of
     * costing an mmap per call */
    jv fields = jv_object(), missing = jv_array(), conf = jv_object();
    jv err = jv_invalid();
    if (!mc) {
        err = cv__error_new(CV_ERR_RUNTIME, 500, "out of memory", NULL);
        goto out;
    }
    pcre2_set_match_limit(mc, MATCH_LIMIT);
    pcre2_set_depth_limit(mc, DEPTH_LIMIT);
    long long deadline = now_ns() + BUDGET_NS;
    for (int i = 0; i < x->nfields && !jv_is_valid(err); i++) {
        const struct field *f = &x->fields[i];
        checker check = checker_of(f->kind);
        struct cand best = no();
        PCRE2_SIZE best_at = 0;
        for (int r = 0; r < f->nre && !jv_is_valid(err); r++) {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(f->re[r], NULL);
            if (!md) {
                err = cv__error_new(CV_ERR_RUNTIME, 500, "out of memory", NULL);
                break;
            }
            PCRE2_SIZE at = 0;
            while (at <= len) {
                int m = pcre2_match(f->re[r], (PCRE2_SPTR)text, len, at, 0, md, mc);
                if (m == PCRE2_ERROR_NOMATCH)
                    break;
                if (m < 0) {
                    PCRE2_UCHAR buf[200];
                    pcre2_get_error_message(m, buf, sizeof buf);
                    err = cv__error_newf(CV_ERR_RUNTIME, 500, "extraction pattern too costly",
                                         "field \"%s\": %s (at byte %zu)", f->name, (char *)buf,
                                         (size_t)at);
                    break;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                struct cand c = check(f, text, ov, f->re[r], r);
                if (c.ok && (!best.ok || c.conf > best.conf ||
                             (c.conf == best.conf && ov[0] < best_at))) {
                    jv_free(best.value);
                    best = c;
                    best_at = ov[0];
                } else
                    jv_free(c.value);
                at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
                while (at < len && ((unsigned char)text[at] & 0xC0) == 0x80)
                    at++;
                if (now_ns() > deadline) {
                    err = cv__error_newf(CV_ERR_RUNTIME, 500, "extraction pattern too costly",
                                         "field \"%s\": the time budget of %lld s ran out",
                                         f->name, BUDGET_NS / 1000000000LL);
                    break;
                }
            }
            pcre2_match_data_free(md);
        }
        if (best.ok) {
            char c[16];
            snprintf(c, sizeof c, "%.2f", best.conf); /* two decimals: stable JSON */
            fields = jv_object_set(fields, jv_string(f->name), best.value);
            conf = jv_object_set(conf, jv_string(f->name), jv_number(strtod(c, NULL)));
        } else {
            fields = jv_object_set(fields, jv_string(f->name), jv_null());
            conf = jv_object_set(conf, jv_string(f->name), jv_number(0));
            if (f->required)
                missing = jv_array_append(missing, jv_string(f->name));
        }
    }
out:
    pcre2_match_context_free(mc);
    if (jv_is_valid(err)) {
        jv_free(fields);
        jv_free(missing);
        jv_free(conf);
        return invalid_with(err);
    }
    jv res = jv_object();
    res = jv_object_set(res, jv_string("fields"), fields);
    res = jv_object_set(res, jv_string("missing"), missing);
    res = jv_object_set(res, jv_string("confidence"), conf);
    return res;
}

jv cv__extract_call(jv args)
{
    jv text = jv_object_get(jv_copy(args), jv_string("text"));
    jv def = jv_object_get(jv_copy(args), jv_string("fields"));
    jv_free(args);
    if (jv_get_kind(text) != JV_KIND_STRING) {
        jv_free(text);
        jv_free(def);
        return invalid_with(
            cv__error_new(CV_ERR_VALIDATION, 400, "extract needs a \"text\" string", NULL));
    }
    cv_extractor *x;
    jv err;
    if (cv__extractor_new(def, jv_null(), "with", &x, &err)) {
        jv_free(text);
        return invalid_with(err);
    }
    jv r = cv__extract_run(x, jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)));
    jv_free(text);
    cv__extractor_free(x);
    return r;
}

/* ------------------------------------------------------ stored definitions */

jv cv__extractor_fields(const cv_extractor *x, int required_only)
{
    jv names = jv_array();
    for (int i = 0; i < x->nfields; i++)
        if (!required_only || x->fields[i].required)
            names = jv_array_append(names, jv_string(x->fields[i].name));
    return names;
}

int cv__extractor_describe(const char *text, size_t len, const char *file, jv *card, jv *err)
{
    cv_extractor *x = NULL;
    *card = jv_invalid();
    int rc = cv__extractor_load(text, len, file, &x, err);
    if (rc)
        return rc;
    char sha[65];
    cv_ml_sha256_hex(text, len, sha);
    jv c = jv_object();
    c = jv_object_set(c, jv_string("kind"), jv_string("extractor"));
    if (x->name && *x->name)
        c = jv_object_set(c, jv_string("definitionName"), jv_string(x->name));
    c = jv_object_set(c, jv_string("fields"), cv__extractor_fields(x, 0));
    c = jv_object_set(c, jv_string("required"), cv__extractor_fields(x, 1));
    c = jv_object_set(c, jv_string("modelSha256"), jv_string(sha));
    cv__extractor_free(x);
    *card = c;
    return 0;
}
