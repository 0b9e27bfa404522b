/*
 * cron.h — five-field cron expressions (`schedule.cron`), evaluated in UTC.
 *
 *   minute hour day-of-month month day-of-week
 *
 * Each field: `*`, a number, a range `a-b`, either of these followed by a
 * step `/n` (`a/n` runs from a to the field's end), or a comma list of
 * those; months 1-12 or JAN-DEC, days of the week 0-7 (0 and 7 are Sunday)
 * or SUN-SAT. As in Vixie cron, when both day fields are
 * restricted a day matches if either does. Pure functions, no allocation.
 */
#ifndef CV_CRON_H
#define CV_CRON_H

#include <stdint.h>

struct cv_cron {
    uint64_t minute; /* bit m: minute m (0-59) */
    uint32_t hour;   /* 0-23 */
    uint32_t dom;    /* 1-31 */
    uint16_t month;  /* 1-12 */
    uint8_t dow;     /* 0-6, Sunday = 0 */
    int dom_any, dow_any;
};

/* Parses `text`. Returns 0, or -1 with *why (a static message). */
int cv__cron_parse(const char *text, struct cv_cron *c, const char **why);
/* The first minute strictly after `after_ms` (epoch ms, UTC) that matches, in
 * epoch ms; 0 when none within five years (e.g. 30 February). */
int64_t cv__cron_next(const struct cv_cron *c, int64_t after_ms);

#endif
