/*
 * test_cron.c — five-field cron expressions (src/common/cron.c): parsing,
 * bad input, and the next occasion from fixed instants (UTC).
 */
#include "common/cron.h"

#include <criterion/criterion.h>
#include <time.h>

/* epoch ms of a UTC date */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t next(const char *expr, int64_t after)
{
    struct cv_cron c;
    const char *why = NULL;
    cr_assert_eq(cv__cron_parse(expr, &c, &why), 0, "%s: %s", expr, why ? why : "");
    return cv__cron_next(&c, after);
}

Test(cron, every_minute_is_the_next_whole_minute)
{
    cr_assert_eq(next("* * * * *", utc(2026, 12, 4, 10, 0) + 1500), utc(2026, 12, 4, 10, 1));
    cr_assert_eq(next("* * * * *", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 4, 10, 1), "strictly after");
}

Test(cron, midnight_daily_and_steps)
{
    cr_assert_eq(next("0 0 * * *", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 5, 0, 0));
    cr_assert_eq(next("*/15 * * * *", utc(2026, 12, 4, 10, 7)), utc(2026, 12, 4, 10, 15));
    cr_assert_eq(next("5/20 * * * *", utc(2026, 12, 4, 10, 26)), utc(2026, 12, 4, 10, 45));
    cr_assert_eq(next("0 9-17/4 * * *", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 4, 13, 0));
}

Test(cron, lists_names_and_the_end_of_the_year)
{
    cr_assert_eq(next("30 6 1 JAN,jul *", utc(2026, 12, 4, 10, 0)), utc(2027, 1, 1, 6, 30));
    /* 2026-12-04 is a Friday: the next Monday is the 7th */
    cr_assert_eq(next("0 8 * * MON", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 7, 8, 0));
    cr_assert_eq(next("0 8 * * 7", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 6, 8, 0), "7 is Sunday");
}

Test(cron, both_day_fields_restricted_match_either)
{
    /* the 15th, or any Monday: from Friday the 4th, Monday the 7th comes first */
    cr_assert_eq(next("0 0 15 * 1", utc(2026, 12, 4, 10, 0)), utc(2026, 12, 7, 0, 0));
}

Test(cron, an_impossible_date_has_no_next)
{
    cr_assert_eq(next("0 0 30 2 *", utc(2026, 12, 4, 10, 0)), 0);
}

Test(cron, bad_expressions_are_refused_with_a_reason)
{
    static const char *const bad[] = {"",          "* * * *",     "* * * * * *", "60 * * * *", "* 24 * * *",
                                      "* * 0 * *", "* * * 13 *",  "* * * * 8",   "a * * * *",  "*/0 * * * *",
                                      "5-1 * * * *", "1, * * * *", "1-x * * * *"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cv_cron c;
        const char *why = NULL;
        cr_expect_eq(cv__cron_parse(bad[i], &c, &why), -1, "'%s' was accepted", bad[i]);
        cr_expect(why && *why, "'%s' has a reason", bad[i]);
    }
}
