/*
 * cron.c — five-field cron expressions (see cron.h).
 */
#include "common/cron.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const months[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const days[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

/* A number or (for months and days) a three-letter name at *p; advances *p. */
static int value(const char **p, int field, int *out)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        int v = 0, n = 0;
        while (*s >= '0' && *s <= '9' && n < 4) {
            v = v * 10 + (*s++ - '0');
            n++;
        }
        *p = s;
        *out = v;
        return 0;
    }
    const char *const *names = field == 3 ? months : field == 4 ? days : NULL;
    int count = field == 3 ? 12 : 7, base = field == 3 ? 1 : 0;
    for (int i = 0; names && i < count; i++)
        if (!strncasecmp(s, names[i], 3)) {
            *p = s + 3;
            *out = i + base;
            return 0;
        }
    return -1;
}

/* One field into a bit set over [lo, hi]. */
static int field_parse(const char *s, const char *end, int field, int lo, int hi, uint64_t *bits, int *any,
                       const char **why)
{
    *bits = 0;
    *any = end - s == 1 && *s == '*';
    while (s < end) {
        const char *item_end = memchr(s, ',', (size_t)(end - s));
        if (!item_end)
            item_end = end;
        int a = lo, b = hi, step = 1;
        const char *p = s;
        if (*p == '*') {
            p++;
        } else {
            if (value(&p, field, &a)) {
                *why = "a field holds something other than numbers, names, '*', '-', '/' and ','";
                return -1;
            }
            b = a;
            if (p < item_end && *p == '-') {
                p++;
                if (value(&p, field, &b)) {
                    *why = "a range needs a number after '-'";
                    return -1;
                }
            }
        }
        if (p < item_end && *p == '/') {
            p++;
            if (value(&p, 0, &step) || step < 1) {
                *why = "a step needs a positive number after '/'";
                return -1;
            }
            if (s[0] != '*' && b == a)
                b = hi; /* `a/n`: from a to the end */
        }
        if (p != item_end) {
            *why = "a field holds something other than numbers, names, '*', '-', '/' and ','";
            return -1;
        }
        if (field == 4 && b == 7 && a <= 7)
            b = 7; /* 7 is Sunday too: folded below */
        int max = field == 4 ? 7 : hi;
        if (a < lo || b > max || a > b) {
            *why = "a value is out of its field's range (minute 0-59, hour 0-23, day 1-31, month 1-12, "
                   "day of week 0-7)";
            return -1;
        }
        for (int v = a; v <= b; v += step)
            *bits |= 1ULL << (field == 4 && v == 7 ? 0 : v);
        s = item_end < end ? item_end + 1 : end;
        if (item_end < end && s == end) {
            *why = "a list ends with ','";
            return -1;
        }
    }
    return 0;
}

int cv__cron_parse(const char *text, struct cv_cron *c, const char **why)
{
    static const int lo[] = {0, 0, 1, 1, 0}, hi[] = {59, 23, 31, 12, 6};
    memset(c, 0, sizeof *c);
    const char *p = text;
    uint64_t bits[5];
    int any[5];
    int n = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (n == 5) {
            *why = "a cron expression has five fields (minute hour day-of-month month day-of-week)";
            return -1;
        }
        if (field_parse(start, p, n, lo[n], hi[n], &bits[n], &any[n], why))
            return -1;
        n++;
    }
    if (n != 5) {
        *why = "a cron expression has five fields (minute hour day-of-month month day-of-week)";
        return -1;
    }
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint16_t)bits[3];
    c->dow = (uint8_t)bits[4];
    c->dom_any = any[2];
    c->dow_any = any[4];
    return 0;
}

static int day_matches(const struct cv_cron *c, const struct tm *t)
{
    int dom = (c->dom >> t->tm_mday) & 1, dow = (c->dow >> t->tm_wday) & 1;
    if (c->dom_any && c->dow_any)
        return 1;
    if (c->dom_any)
        return dow;
    if (c->dow_any)
        return dom;
    return dom || dow;
}

int64_t cv__cron_next(const struct cv_cron *c, int64_t after_ms)
{
    time_t t = (time_t)(after_ms / 1000);
    t = t - t % 60 + 60; /* the next whole minute */
    time_t limit = t + (time_t)5 * 366 * 24 * 3600;
    while (t < limit) {
        struct tm tm;
        gmtime_r(&t, &tm);
        if (!((c->month >> (tm.tm_mon + 1)) & 1)) { /* skip to the next month */
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
            continue;
        }
        if (!day_matches(c, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
            continue;
        }
        if (!((c->hour >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
            continue;
        }
        if (!((c->minute >> tm.tm_min) & 1)) {
            t += 60;
            continue;
        }
        return (int64_t)t * 1000;
    }
    return 0;
}
