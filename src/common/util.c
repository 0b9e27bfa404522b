/*
 * util.c — small shared utilities: the two clocks, version-4 UUIDs, RFC 3339
 * timestamps and the specification's dateTime descriptor, duration parsing
 * (inline objects and ISO 8601 strings) and RFC 6570 level-1 URI templates.
 * Everything that reads a clock or parses a duration or an endpoint template
 * goes through here, so that the whole engine agrees on units (milliseconds)
 * and on the rules written in util.h. Nothing here allocates except
 * cv__uri_template_expand's result, and nothing uses sprintf.
 */
#include "common/util.h"
#include "conveyor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Clocks                                                                    */
/* ------------------------------------------------------------------------ */

int64_t cv__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cv__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* UUIDs                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Fills buf with n random bytes from getrandom(2). Should the kernel refuse
 * (very old kernel, seccomp), falls back to /dev/urandom, and as a last resort
 * to a splitmix64 stream seeded from the clocks, the pid and a counter: ids
 * must still be unique then, though no longer unpredictable.
 */
static void random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    if (got == n)
        return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (got < n) {
            ssize_t r = read(fd, buf + got, n - got);
            if (r > 0)
                got += (size_t)r;
            else if (!(r < 0 && errno == EINTR))
                break;
        }
        close(fd);
    }
    if (got == n)
        return;
    static atomic_uint_fast64_t counter;
    uint64_t s = (uint64_t)cv__wall_ms() ^ ((uint64_t)cv__now_ms() << 21) ^
                 ((uint64_t)getpid() << 40) ^ atomic_fetch_add(&counter, 0x9e3779b97f4a7c15ull);
    for (; got < n; got++) {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        buf[got] = (unsigned char)(z ^ (z >> 31));
    }
}

const char *cv__url_without_password(const char *url, char *buf, size_t n)
{
    const char *sch = strstr(url, "://"), *at = strchr(url, '@');
    const char *colon = sch ? strchr(sch + 3, ':') : NULL;
    if (!sch || !at || !colon || colon > at)
        return url;
    snprintf(buf, n, "%.*s:***%s", (int)(colon - url), url, at);
    return buf;
}

void cv__uuid4(char buf[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *p = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
}

/* ------------------------------------------------------------------------ */
/* Timestamps                                                                */
/* ------------------------------------------------------------------------ */

/* Floor division, so that times before 1970 round towards the past. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

void cv__rfc3339(int64_t wall_ms, char buf[32])
{
    time_t secs = (time_t)floor_div(wall_ms, 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, 32, "1970-01-01T00:00:00Z");
}

jv cv__time_descriptor(int64_t wall_ms)
{
    char iso[32];
    cv__rfc3339(wall_ms, iso);
    jv epoch = jv_object();
    epoch = jv_object_set(epoch, jv_string("seconds"), jv_number((double)floor_div(wall_ms, 1000)));
    epoch = jv_object_set(epoch, jv_string("milliseconds"), jv_number((double)wall_ms));
    jv d = jv_object();
    d = jv_object_set(d, jv_string("iso8601"), jv_string(iso));
    d = jv_object_set(d, jv_string("epoch"), epoch);
    return d;
}

/* ------------------------------------------------------------------------ */
/* Durations                                                                 */
/* ------------------------------------------------------------------------ */

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)

static int add_scaled(int64_t *total, int64_t n, int64_t unit)
{
    int64_t part;
    if (__builtin_mul_overflow(n, unit, &part) || __builtin_add_overflow(*total, part, total))
        return -1;
    return 0;
}

static int duration_inline(jv v, int64_t *ms, const char **why)
{
    static const struct {
        const char *key;
        int64_t unit;
    } units[] = {{"days", MS_DAY},
                 {"hours", MS_HOUR},
                 {"minutes", MS_MINUTE},
                 {"seconds", MS_SECOND},
                 {"milliseconds", 1}};
    int64_t total = 0;
    int seen = 0;
    for (int it = jv_object_iter(v); jv_object_iter_valid(v, it); it = jv_object_iter_next(v, it)) {
        jv key = jv_object_iter_key(v, it);
        jv val = jv_object_iter_value(v, it);
        const char *k = jv_string_value(key);
        int64_t unit = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strcmp(k, units[i].key) == 0)
                unit = units[i].unit;
        const char *err = NULL;
        if (!unit) {
            err = "unknown duration property (expected days, hours, minutes, seconds, milliseconds)";
        } else if (jv_get_kind(val) != JV_KIND_NUMBER) {
            err = "duration properties must be integers";
        } else {
            double d = jv_number_value(val);
            if (d != floor(d) || !isfinite(d))
                err = "duration properties must be integers";
            else if (d < 0)
                err = "duration properties must not be negative";
            else if (d >= 9.2e18 || add_scaled(&total, (int64_t)d, unit))
                err = "duration is too large";
        }
        jv_free(key);
        jv_free(val);
        if (err) {
            *why = err;
            return CV_EINVAL;
        }
        seen++;
    }
    if (!seen) {
        *why = "an inline duration needs at least one of days, hours, minutes, seconds, milliseconds";
        return CV_EINVAL;
    }
    *ms = total;
    return CV_OK;
}

/*
 * Parses one "n[.f]" number at *p and adds n.f * unit (rounded to the nearest
 * millisecond) to *total. The fraction keeps at most 18 digits of precision.
 */
static int iso_component(const char **p, int64_t unit, int64_t *total, const char **why)
{
    const char *s = *p;
    int64_t whole = 0;
    while (*s >= '0' && *s <= '9') {
        if (__builtin_mul_overflow(whole, 10, &whole) ||
            __builtin_add_overflow(whole, *s - '0', &whole)) {
            *why = "duration is too large";
            return CV_EINVAL;
        }
        s++;
    }
    if (add_scaled(total, whole, unit)) {
        *why = "duration is too large";
        return CV_EINVAL;
    }
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9')) {
            *why = "invalid ISO 8601 duration: a decimal point must be followed by digits";
            return CV_EINVAL;
        }
        __int128 num = 0, den = 1;
        int digits = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (digits < 18) {
                num = num * 10 + (*s - '0');
                den *= 10;
                digits++;
            }
        }
        __int128 part = (num * unit * 2 + den) / (den * 2); /* round half up */
        if (__builtin_add_overflow(*total, (int64_t)part, total)) {
            *why = "duration is too large";
            return CV_EINVAL;
        }
    }
    *p = s;
    return CV_OK;
}

/*
 * ISO 8601 durations exactly as the schema's DurationLiteral pattern:
 *   ^P(?!$)(nY)?(nM)?(nW)?(nD)?(T(?=\d)(nH)?(nM)?(nS)?)?$   with n = \d+(\.\d+)?
 */
static int duration_iso(const char *s, int64_t *ms, const char **why)
{
    static const struct {
        char designator;
        int64_t unit;
    } date_units[] = {{'Y', 365 * MS_DAY}, {'M', 30 * MS_DAY}, {'W', 7 * MS_DAY}, {'D', MS_DAY}},
      time_units[] = {{'H', MS_HOUR}, {'M', MS_MINUTE}, {'S', MS_SECOND}};
    const char *bad = "invalid ISO 8601 duration (expected e.g. P1DT2H3M4.5S)";
    if (*s != 'P' || s[1] == '\0') {
        *why = bad;
        return CV_EINVAL;
    }
    const char *p = s + 1;
    int64_t total = 0;
    size_t next = 0; /* the next designator allowed, so that order is enforced */
    while (*p >= '0' && *p <= '9') {
        /* find which designator ends this number */
        const char *q = p;
        while ((*q >= '0' && *q <= '9') || *q == '.')
            q++;
        size_t i = next;
        while (i < 4 && date_units[i].designator != *q)
            i++;
        if (i == 4) {
            *why = bad;
            return CV_EINVAL;
        }
        if (iso_component(&p, date_units[i].unit, &total, why))
            return CV_EINVAL;
        if (p != q) {
            *why = bad;
            return CV_EINVAL;
        }
        p++;
        next = i + 1;
    }
    if (*p == 'T') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            *why = bad;
            return CV_EINVAL;
        }
        next = 0;
        while (*p >= '0' && *p <= '9') {
            const char *q = p;
            while ((*q >= '0' && *q <= '9') || *q == '.')
                q++;
            size_t i = next;
            while (i < 3 && time_units[i].designator != *q)
                i++;
            if (i == 3) {
                *why = bad;
                return CV_EINVAL;
            }
            if (iso_component(&p, time_units[i].unit, &total, why))
                return CV_EINVAL;
            if (p != q) {
                *why = bad;
                return CV_EINVAL;
            }
            p++;
            next = i + 1;
        }
    }
    if (*p != '\0') {
        *why = bad;
        return CV_EINVAL;
    }
    *ms = total;
    return CV_OK;
}

int cv__duration_ms(jv v, int64_t *ms, const char **why)
{
    switch (jv_get_kind(v)) {
    case JV_KIND_OBJECT:
        return duration_inline(v, ms, why);
    case JV_KIND_STRING:
        return duration_iso(jv_string_value(v), ms, why);
    default:
        *why = "a duration must be an object {days, hours, minutes, seconds, milliseconds} or an "
               "ISO 8601 string";
        return CV_EINVAL;
    }
}

/* ------------------------------------------------------------------------ */
/* URI templates (RFC 6570 level 1)                                          */
/* ------------------------------------------------------------------------ */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void sb_add_encoded(struct sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            sb_add(b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

/*
 * Parses the expression between '{' and '}' (s, n bytes) as an RFC 6570
 * varname: varchar *( ["."] varchar ), varchar = ALPHA / DIGIT / "_" /
 * pct-encoded. Writes the decoded name into name (cap bytes). Operators,
 * modifiers and lists (levels 2-4) are refused.
 */
static int parse_varname(const char *s, size_t n, char *name, size_t cap, const char **why)
{
    if (n == 0) {
        *why = "empty expression {} in URI template";
        return CV_EINVAL;
    }
    if (strchr("+#./;?&=,!@|", s[0])) {
        *why = "only simple {name} expansion is supported in URI templates (RFC 6570 level 1)";
        return CV_EINVAL;
    }
    size_t o = 0;
    int prev_dot = 1; /* a name may not start with '.' */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int out;
        if (c == '.') {
            if (prev_dot) {
                *why = "invalid variable name in URI template";
                return CV_EINVAL;
            }
            prev_dot = 1;
            out = '.';
        } else if (c == '%') {
            int h1 = i + 2 < n ? hexval(s[i + 1]) : -1, h2 = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0 || (h1 == 0 && h2 == 0)) {
                *why = "invalid percent-encoding in URI template variable name";
                return CV_EINVAL;
            }
            out = h1 * 16 + h2;
            i += 2;
            prev_dot = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '_') {
            out = c;
            prev_dot = 0;
        } else if (c == ',' || c == '*' || c == ':') {
            *why = "only simple {name} expansion is supported in URI templates (RFC 6570 level 1)";
            return CV_EINVAL;
        } else {
            *why = "invalid character in URI template variable name";
            return CV_EINVAL;
        }
        if (o + 1 >= cap) {
            *why = "URI template variable name is too long";
            return CV_EINVAL;
        }
        name[o++] = (char)out;
    }
    if (prev_dot) {
        *why = "invalid variable name in URI template";
        return CV_EINVAL;
    }
    name[o] = '\0';
    return CV_OK;
}

/* Appends the expansion of one value (borrowed) to b. */
static int expand_value(struct sbuf *b, jv val, const char **why)
{
    char num[64];
    switch (jv_get_kind(val)) {
    case JV_KIND_INVALID:
    case JV_KIND_NULL:
        return CV_OK;
    case JV_KIND_TRUE:
        sb_add(b, "true", 4);
        return CV_OK;
    case JV_KIND_FALSE:
        sb_add(b, "false", 5);
        return CV_OK;
    case JV_KIND_STRING:
        sb_add_encoded(b, jv_string_value(val), (size_t)jv_string_length_bytes(jv_copy(val)));
        return CV_OK;
    case JV_KIND_NUMBER: {
        double d = jv_number_value(val);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) {
            snprintf(num, sizeof num, "%" PRId64, (int64_t)d);
            sb_add(b, num, strlen(num));
        } else {
            /* jq's own number formatting, so `{x}` and `${ .x }` agree */
            jv s = jv_dump_string(jv_copy(val), 0);
            sb_add_encoded(b, jv_string_value(s), strlen(jv_string_value(s)));
            jv_free(s);
        }
        return CV_OK;
    }
    default:
        *why = "URI template variables must be strings, numbers, booleans or null, not objects or "
               "arrays";
        return CV_EINVAL;
    }
}

/* One pass over the template; with b == NULL it only checks the syntax. */
static int template_walk(const char *tmpl, jv vars, struct sbuf *b, const char **why)
{
    const char *p = tmpl;
    char name[256];
    while (*p) {
        const char *open = strpbrk(p, "{}");
        if (!open) {
            if (b)
                sb_add(b, p, strlen(p));
            break;
        }
        if (*open == '}') {
            *why = "unbalanced '}' in URI template";
            return CV_EINVAL;
        }
        if (b)
            sb_add(b, p, (size_t)(open - p));
        const char *close = strpbrk(open + 1, "{}");
        if (!close || *close == '{') {
            *why = "unbalanced '{' in URI template";
            return CV_EINVAL;
        }
        if (parse_varname(open + 1, (size_t)(close - open - 1), name, sizeof name, why))
            return CV_EINVAL;
        if (b && jv_get_kind(vars) == JV_KIND_OBJECT) {
            jv val = jv_object_get(jv_copy(vars), jv_string(name));
            int rc = expand_value(b, val, why);
            jv_free(val);
            if (rc)
                return rc;
        }
        p = close + 1;
    }
    return CV_OK;
}

int cv__uri_template_check(const char *tmpl, const char **why)
{
    return template_walk(tmpl, jv_null(), NULL, why);
}

int cv__uri_template_expand(const char *tmpl, jv vars, char **out, const char **why)
{
    struct sbuf b = {0};
    int rc = template_walk(tmpl, vars, &b, why);
    if (rc == CV_OK) {
        sb_add(&b, "", 0);
        if (b.oom) {
            *why = "out of memory";
            rc = CV_ENOMEM;
        }
    }
    if (rc) {
        free(b.p);
        *out = NULL;
        return rc;
    }
    *out = b.p;
    return CV_OK;
}

static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;

static void malloc_tune_once(void)
{
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_TOP_PAD, 2 << 20);
}

void cv__malloc_tune(void)
{
    pthread_once(&malloc_once, malloc_tune_once);
}
