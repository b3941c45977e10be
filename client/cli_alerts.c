/* cli_alerts.c -- baton alerts check: failures, reconnect bursts, stale and failed jobs. */
#define _GNU_SOURCE             /* strtok_r */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_PAGES 100
#define MAX_LISTED 20

/* Every event matching filter since `since` (server paging is newest first
 * with a limit, so page back with until= and drop ids already seen). */
static int
events_since(const char *filter, int64_t since, json_t *acc)
{
    json_t *seen = json_object();
    int64_t until = INT64_MAX;
    int rc = 0;

    for (int page = 0; page < MAX_PAGES; page++) {
        char *path = cli_path_of("/v1/events?event=%s&limit=1000", filter);
        json_t *j, *rows, *e;
        size_t i, fresh = 0;

        cli_query_add_int(&path, "since", since);
        if (until != INT64_MAX)
            cli_query_add_int(&path, "until", until);
        if (cli_call("GET", path, NULL, &j) < 0) {
            rc = -1;
            break;
        }
        rows = cli_rows_of(j, "events");
        json_array_foreach(rows, i, e) {
            const char *id = json_string_value(json_object_get(e, "id"));
            if (!id || json_object_get(seen, id))
                continue;
            json_object_set_new(seen, id, json_true());
            json_array_append(acc, e);
            fresh++;
            if (json_integer_value(json_object_get(e, "time")) < until)
                until = json_integer_value(json_object_get(e, "time"));
        }
        i = json_array_size(rows);
        json_decref(j);
        if (i < 1000 || !fresh)
            break;
    }
    json_decref(seen);
    return rc;
}

static int
cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* A short "k=v" summary of an event's identifying fields. */
static void
event_summary(json_t *e, char *buf, size_t n)
{
    static const char *const keys[] = {"accountId", "ownerId", "workerId", "jobId", "error",
                                       "message", "errorMessage", NULL};
    size_t used = 0;

    buf[0] = 0;
    for (const char *const *k = keys; *k && used < n; k++) {
        json_t *v = json_object_get(e, *k);
        char *c;
        if (!v)
            continue;
        c = cli_cell(*k, v);
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%.80s", used ? " " : "", *k, c ? c : "?");
        free(c);
    }
}

static void
finding(json_t *findings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append one finding, a line printf makes of fmt, to the array findings. */
static void
finding(json_t *findings, const char *fmt, ...)
{
    va_list ap;
    char buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(findings, json_string(buf));
}

/* Event findings for one channel's events (newest first). */
static void
check_channel_events(json_t *events, const char *lookback, int64_t burst_ms, int64_t threshold,
                     json_t *findings)
{
    static const char *const bad[] = {".lease.heartbeat.lost", ".outbound.loop.error",
                                      ".send.failed", NULL};
    json_t *by_name = json_object(), *v;
    const char *name;
    size_t i;
    json_t *e;

    /* group the events worth an alert by name: {name: [events newest first]} */
    json_array_foreach(events, i, e) {
        const char *ev = json_string_value(json_object_get(e, "event"));
        bool keep = false;
        if (!ev)
            continue;
        for (const char *const *s = bad; *s; s++)
            keep |= cli_ends_with(ev, *s);
        keep |= cli_ends_with(ev, ".reconnect");
        if (!keep)
            continue;
        if (!json_object_get(by_name, ev))
            json_object_set_new(by_name, ev, json_array());
        json_array_append(json_object_get(by_name, ev), e);
    }
    json_object_foreach(by_name, name, v) {
        json_t *latest = json_array_get(v, 0);
        char ts[40], sum[400];
        size_t count = json_array_size(v);

        cli_fmt_time(json_integer_value(json_object_get(latest, "time")), ts, sizeof ts);
        event_summary(latest, sum, sizeof sum);
        if (!cli_ends_with(name, ".reconnect")) {
            finding(findings, "%s: %zu within %s (latest %s%s%s)", name, count, lookback, ts,
                    sum[0] ? " " : "", sum);
            continue;
        }
        {
            int64_t *t = calloc(count, sizeof *t);
            size_t lo = 0, best = 0, best_lo = 0, best_hi = 0;
            if (!t)
                continue;
            for (size_t x = 0; x < count; x++)
                t[x] = json_integer_value(json_object_get(json_array_get(v, x), "time"));
            qsort(t, count, sizeof *t, cmp_int64);
            for (size_t hi = 0; hi < count; hi++) {
                while (t[hi] - t[lo] > burst_ms)
                    lo++;
                if (hi - lo + 1 > best) {
                    best = hi - lo + 1;
                    best_lo = lo;
                    best_hi = hi;
                }
            }
            if ((int64_t)best >= threshold) {
                char a[40], b[40], w[32];
                cli_fmt_time(t[best_lo], a, sizeof a);
                cli_fmt_time(t[best_hi], b, sizeof b);
                cli_fmt_duration(burst_ms, w, sizeof w);
                finding(findings, "%s: burst of %zu reconnects within %s (%s to %s)", name, best,
                        w, a, b);
            }
            free(t);
        }
    }
    json_decref(by_name);
}

/* Job findings: stale processing jobs, and jobs failed since `since`
 * (MAX_LISTED of each, then a count). Returns 0, or -1 when a call failed
 * (error printed). */
static int
check_jobs(int64_t since, const char *lookback, json_t *findings)
{
    json_t *j, *rows, *job;
    size_t i, stale = 0, failed = 0;
    char *cursor = NULL;

    if (cli_call("GET", strdup("/v1/jobs/pending"), NULL, &j) < 0)
        return -1;
    rows = cli_rows_of(j, "jobs");
    json_array_foreach(rows, i, job) {
        char *until;
        if (!json_is_true(json_object_get(job, "stale")))
            continue;
        if (++stale > MAX_LISTED)
            continue;
        until = cli_cell("lockedUntil", json_object_get(job, "lockedUntil"));
        finding(findings, "stale job %s on %s: processing by %s, lock expired %s",
                json_string_value(json_object_get(job, "id")) ?: "?",
                json_string_value(json_object_get(job, "queue")) ?: "?",
                json_string_value(json_object_get(job, "lockedBy")) ?: "?", until ? until : "?");
        free(until);
    }
    if (stale > MAX_LISTED)
        finding(findings, "... %zu stale jobs in all", stale);
    json_decref(j);

    for (int page = 0; page < MAX_PAGES; page++) {
        char *path = strdup("/v1/jobs?status=failed&limit=100");
        const char *next;
        cli_query_add(&path, "cursor", cursor);
        if (cli_call("GET", path, NULL, &j) < 0) {
            free(cursor);
            return -1;
        }
        json_array_foreach(cli_rows_of(j, "jobs"), i, job) {
            json_t *u = json_object_get(job, "updatedAt");
            char ts[40];
            if (json_integer_value(u) < since)
                continue;
            if (++failed > MAX_LISTED)
                continue;
            cli_fmt_time(json_integer_value(u), ts, sizeof ts);
            finding(findings, "failed job %s on %s at %s: %s%s%s",
                    json_string_value(json_object_get(job, "id")) ?: "?",
                    json_string_value(json_object_get(job, "queue")) ?: "?", ts,
                    json_string_value(json_object_get(job, "errorReason")) ?: "?",
                    json_string_value(json_object_get(job, "errorMessage")) ? ": " : "",
                    json_string_value(json_object_get(job, "errorMessage")) ?: "");
        }
        free(cursor);
        next = json_string_value(json_object_get(j, "nextCursor"));
        cursor = next ? strdup(next) : NULL;
        json_decref(j);
        if (!cursor)
            break;
    }
    free(cursor);
    if (failed > MAX_LISTED)
        finding(findings, "... %zu jobs failed within %s in all", failed, lookback);
    return 0;
}

int
cli_alerts_check(int argc, char **argv)
{
    const char *lookback = "24h", *window = "10m", *thr = "10", *channels = "whatsapp,telegram";
    struct cli_opt o[] = {{"lookback", true, &lookback, NULL},
                          {"burst-window", true, &window, NULL},
                          {"threshold", true, &thr, NULL},
                          {"channels", true, &channels, NULL}, {0}};
    char *pos[1], *list, *save = NULL;
    int n = cli_args(argc, argv, o, pos, 0, 0);
    int64_t look_ms, burst_ms, threshold, since;
    json_t *findings;
    bool broken = false;

    CLI_ARGS_OR_EXIT(n);
    if (cli_parse_duration(lookback, &look_ms) < 0 || look_ms <= 0)
        return cli_usage_error("--lookback must be a duration like 24h");
    if (cli_parse_duration(window, &burst_ms) < 0 || burst_ms <= 0)
        return cli_usage_error("--burst-window must be a duration like 10m");
    if (cli_parse_int(thr, &threshold) < 0 || threshold < 1)
        return cli_usage_error("--threshold must be a positive integer");
    since = cli_now_ms() - look_ms;
    findings = json_array();
    list = strdup(channels);
    for (char *ch = strtok_r(list, ",", &save); ch && !broken; ch = strtok_r(NULL, ",", &save)) {
        char filter[160];
        json_t *events = json_array();
        snprintf(filter, sizeof filter, "%s.*", ch);
        if (events_since(filter, since, events) < 0)
            broken = true;
        else
            check_channel_events(events, lookback, burst_ms, threshold, findings);
        json_decref(events);
    }
    free(list);
    if (!broken && check_jobs(since, lookback, findings) < 0)
        broken = true;
    if (broken) {
        json_decref(findings);
        return cli_fail("cannot check alerts");
    }
    if (cli_json_out) {
        json_t *o2 = json_pack("{s:b, s:O}", "healthy", !json_array_size(findings), "findings",
                               findings);
        cli_print_json(o2);
        json_decref(o2);
    } else if (!json_array_size(findings))
        puts("healthy");
    else {
        size_t i;
        json_t *f;
        json_array_foreach(findings, i, f)
            puts(json_string_value(f));
    }
    n = json_array_size(findings) ? CLI_EXIT_USAGE : CLI_EXIT_OK;    /* 2 = alert */
    json_decref(findings);
    return n;
}

