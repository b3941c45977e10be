/* cron.c -- five-field cron expressions (minute hour day-of-month month
 * day-of-week) and the next time one is due. Rules layer, no I/O.
 *
 * DESIGN
 * Each field is a bit set of the values it allows. A field is a comma
 * list of items; an item is `*`, a value, a range `a-b`, each optionally
 * followed by a step `/n` (`*` then means the whole range, a single value
 * `a/n` the range a..max). Months and days of the week also take their
 * three-letter English names; day-of-week 7 is Sunday like 0. When both
 * day fields are restricted a day matches if either does (the usual cron
 * rule); when one is `*` only the other counts.
 * Times are UTC (gmtime_r / timegm: no process-wide time zone is touched).
 * cron_next walks days, skipping those that do not match, then finds the
 * first matching hour and minute of a matching day: a few thousand steps
 * at most, and an expression that matches no day in eight years (Feb 30)
 * is refused when parsed.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core.h"

#define DAY_MS      86400000LL
#define SEARCH_DAYS (366 * 8 + 2)       /* a leap day comes round within 8 years */

static const char *const field_names[5] = {"minute", "hour", "day-of-month", "month", "day-of-week"};
static const int field_lo[5] = {0, 0, 1, 1, 0};
static const int field_hi[5] = {59, 23, 31, 12, 7};
static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* A value of field f at *p (a number or, for months and days, a name):
 * advances *p. -1 when there is none or it is out of range. */
static int
value(int f, const char **p)
{
    const char *s = *p;
    long v = 0;

    if (isalpha((unsigned char)*s) && (f == 3 || f == 4)) {
        const char *const *names = f == 3 ? month_names : day_names;
        int n = f == 3 ? 12 : 7;
        for (int i = 0; i < n; i++)
            if (!strncasecmp(s, names[i], 3) && !isalpha((unsigned char)s[3])) {
                *p = s + 3;
                return f == 3 ? i + 1 : i;
            }
        return -1;
    }
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (*s++ - '0');
        if (v > 1000)
            return -1;
    }
    if (v < field_lo[f] || v > field_hi[f])
        return -1;
    *p = s;
    return (int)v;
}

/* Parse field f from text[0..len) into *bits. NULL, or why not. */
static const char *
parse_field(int f, const char *text, size_t len, uint64_t *bits, bool *star)
{
    char buf[128];
    const char *p;

    if (len >= sizeof buf)
        return "is too long";
    memcpy(buf, text, len);
    buf[len] = '\0';
    *bits = 0;
    *star = !strcmp(buf, "*");
    p = buf;
    for (;;) {
        int lo, hi, step = 1;
        bool all = false;

        if (*p == '*') {
            lo = field_lo[f];
            hi = field_hi[f];
            all = true;
            p++;
        } else {
            if ((lo = value(f, &p)) < 0)
                return "has a value that is not a number (or name) in range";
            hi = lo;
            if (*p == '-') {
                p++;
                if ((hi = value(f, &p)) < 0)
                    return "has a range end that is not in range";
                if (hi < lo)
                    return "has a range that goes backwards";
            }
        }
        if (*p == '/') {
            long s = 0;
            p++;
            if (!isdigit((unsigned char)*p))
                return "has a step that is not a positive number";
            while (isdigit((unsigned char)*p) && s <= 1000)
                s = s * 10 + (*p++ - '0');
            if (s < 1 || s > field_hi[f])
                return "has a step out of range";
            step = (int)s;
            if (!all && hi == lo)
                hi = field_hi[f];
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << (f == 4 && v == 7 ? 0 : v);
        if (!*p)
            break;
        if (*p != ',' || !p[1])
            return "has an unexpected character";
        p++;
    }
    if (f == 4 && (*bits & 1))
        *bits |= 1ULL << 7;
    return NULL;
}

int
cron_parse(const char *expr, struct cron *c, char *why, size_t n)
{
    const char *p = expr;
    int f = 0;

    memset(c, 0, sizeof *c);
    while (*p) {
        const char *start;
        bool star;
        const char *bad;
        uint64_t bits;

        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (f == 5) {
            snprintf(why, n, "cron must have five fields (minute hour day-of-month month "
                     "day-of-week); seconds are not supported");
            return -1;
        }
        start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if ((bad = parse_field(f, start, (size_t)(p - start), &bits, &star))) {
            snprintf(why, n, "cron %s field: '%.*s' %s", field_names[f],
                     (int)((p - start) > 40 ? 40 : p - start), start, bad);
            return -1;
        }
        c->bits[f] = bits;
        if (f == 2)
            c->dom_star = star;
        if (f == 4)
            c->dow_star = star;
        f++;
    }
    if (f < 5) {
        snprintf(why, n, "cron must have five fields (minute hour day-of-month month day-of-week), not %d", f);
        return -1;
    }
    if (cron_next(c, 0) < 0) {
        snprintf(why, n, "cron day-of-month field: no day of any month matches it");
        return -1;
    }
    return 0;
}

static bool
day_matches(const struct cron *c, const struct tm *tm)
{
    bool dom = c->bits[2] >> tm->tm_mday & 1, dow = c->bits[4] >> tm->tm_wday & 1;

    if (!(c->bits[3] >> (tm->tm_mon + 1) & 1))
        return false;
    if (c->dom_star && c->dow_star)
        return true;
    if (c->dom_star)
        return dow;
    if (c->dow_star)
        return dom;
    return dom || dow;
}

int64_t
cron_next(const struct cron *c, int64_t after)
{
    /* the first whole minute strictly after `after` */
    int64_t from = after < 0 ? 0 : (after / 60000 + 1) * 60000;
    time_t secs = (time_t)(from / 1000);
    struct tm tm;
    int minute, hour;

    if (!gmtime_r(&secs, &tm))
        return -1;
    minute = tm.tm_min;
    hour = tm.tm_hour;
    for (int d = 0; d < SEARCH_DAYS; d++) {
        if (day_matches(c, &tm)) {
            for (int h = hour; h < 24; h++) {
                if (!(c->bits[1] >> h & 1))
                    continue;
                for (int m = h == hour ? minute : 0; m < 60; m++)
                    if (c->bits[0] >> m & 1) {
                        tm.tm_hour = h;
                        tm.tm_min = m;
                        tm.tm_sec = 0;
                        return (int64_t)timegm(&tm) * 1000;
                    }
            }
        }
        /* the next day at 00:00 */
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        secs = timegm(&tm) + 86400;
        if (!gmtime_r(&secs, &tm))
            return -1;
        hour = minute = 0;
    }
    return -1;
}
