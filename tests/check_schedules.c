/* check_schedules.c -- schedules: the cron parser and its next due time
 * (unit cases), and against the real batond: an everyMs=1000 schedule
 * enqueues about a job a second and never two for one due time, pause,
 * resume and delete, a restart after missed due times gives one catch-up
 * job, bad input is a 400 naming the field with nothing written. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "core.h"

static struct server srv;
/* a sweep interval far longer than the tests: a schedule that fires on
 * time does so by its own due time, not by the periodic sweep */
static const char *const slow_sweep[] = {"BATON_SWEEP_INTERVAL_MS=600000", NULL};

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    server_start(&srv, slow_sweep);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the parser -------------------------------------------------------------- */

START_TEST(cron_parser_table)
{
    static const char *const good[] = {
        "* * * * *", "*/5 * * * *", "0 0 * * *", "1-10/2 3,4 1 jan-mar mon-fri", "59 23 31 12 7",
        "0 12 * * SUN", "  5   4 * * *  ", "0 0 29 2 *", "0-59/15 */6 1,15 * 1-5",
    };
    static const struct {
        const char *expr, *field;
    } bad[] = {
        {"0 * * * * *", "five fields"},         /* seconds */
        {"* * * *", "five fields"},
        {"", "five fields"},
        {"60 * * * *", "minute"},
        {"*/0 * * * *", "minute"},
        {"a * * * *", "minute"},
        {"5-1 * * * *", "minute"},
        {"* 24 * * *", "hour"},
        {"* * 0 * *", "day-of-month"},
        {"* * 32 * *", "day-of-month"},
        {"0 0 30 2 *", "day-of-month"},         /* never */
        {"* * * 13 *", "month"},
        {"* * * foo *", "month"},
        {"* * * * 8", "day-of-week"},
        {"* * * * mon,", "day-of-week"},
        {"1,,2 * * * *", "minute"},
    };
    struct cron c;
    char why[300];

    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ck_assert_msg(cron_parse(good[i], &c, why, sizeof why) == 0, "'%s': %s", good[i], why);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = 0;
        ck_assert_msg(cron_parse(bad[i].expr, &c, why, sizeof why) < 0, "'%s' accepted", bad[i].expr);
        ck_assert_msg(strstr(why, bad[i].field), "'%s': '%s' does not name %s", bad[i].expr, why,
                      bad[i].field);
    }
}
END_TEST

/* ms of a UTC date */
static int64_t
utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};

    return (int64_t)timegm(&tm) * 1000;
}

START_TEST(cron_next_cases)
{
    static const struct {
        const char *expr;
        int from[5], want[5];
    } cases[] = {
        {"* * * * *", {2026, 3, 1, 10, 0}, {2026, 3, 1, 10, 1}},            /* strictly after */
        {"*/5 * * * *", {2026, 3, 1, 10, 3}, {2026, 3, 1, 10, 5}},
        {"*/5 * * * *", {2026, 3, 1, 23, 57}, {2026, 3, 2, 0, 0}},          /* over midnight */
        {"0 0 1 1 *", {2026, 3, 1, 10, 0}, {2027, 1, 1, 0, 0}},             /* over a year */
        {"30 9 * * mon-fri", {2026, 11, 27, 10, 0}, {2026, 11, 30, 9, 30}}, /* Fri 10:00 -> Mon */
        {"0 0 29 2 *", {2026, 3, 1, 0, 0}, {2028, 2, 29, 0, 0}},            /* leap day */
        {"0 12 13 * fri", {2026, 1, 1, 0, 0}, {2026, 1, 2, 12, 0}},         /* dom OR dow: Fri 2nd */
        {"0 12 13 * *", {2026, 1, 1, 0, 0}, {2026, 1, 13, 12, 0}},          /* dom only */
        {"0 12 * * 7", {2026, 1, 1, 0, 0}, {2026, 1, 4, 12, 0}},            /* 7 is Sunday */
        {"1-10/4 * * * *", {2026, 1, 1, 0, 6}, {2026, 1, 1, 0, 9}},
        {"0 0 31 * *", {2026, 4, 1, 0, 0}, {2026, 5, 31, 0, 0}},            /* April has 30 */
    };
    struct cron c;
    char why[300];

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *f = cases[i].from, *w = cases[i].want;
        int64_t got, want = utc(w[0], w[1], w[2], w[3], w[4]);
        ck_assert_msg(cron_parse(cases[i].expr, &c, why, sizeof why) == 0, "%s", why);
        got = cron_next(&c, utc(f[0], f[1], f[2], f[3], f[4]));
        ck_assert_msg(got == want, "'%s': %" PRId64 " != %" PRId64, cases[i].expr, got, want);
        /* from inside the minute (not on its boundary) too */
        got = cron_next(&c, utc(f[0], f[1], f[2], f[3], f[4]) + 30000);
        ck_assert_msg(got == want, "'%s' +30s: %" PRId64 " != %" PRId64, cases[i].expr, got, want);
    }
}
END_TEST

/* ---- against batond ------------------------------------------------------------ */

static void
create_every(const char *name, const char *queue, long long every_ms)
{
    json_t *r = CALL(&srv, "POST", "/v1/schedules",
                     json_pack("{s:s, s:s, s:{s:s}, s:I}", "name", name, "queue", queue, "payload",
                               "kind", "tick", "everyMs", (json_int_t)every_ms), 201);
    json_decref(r);
}

/* The due times (from the dedupe keys schedule:<name>:<ms>) of the jobs of
 * queue, oldest first, into due (at most max); their count. Asserts the
 * keys are all of that form and that no two jobs share one. */
static int
due_times(const char *queue, const char *name, int64_t *due, int max)
{
    char path[200], prefix[120];
    json_t *r, *jobs, *j;
    size_t i;
    int n = 0;

    snprintf(path, sizeof path, "/v1/jobs?queue=%s&limit=1000", queue);
    snprintf(prefix, sizeof prefix, "schedule:%s:", name);
    r = CALL(&srv, "GET", path, NULL, 200);
    jobs = json_object_get(r, "jobs");
    ck_assert(json_is_array(jobs));
    for (i = json_array_size(jobs); i-- > 0;) {        /* newest first -> oldest first */
        const char *key = json_string_value(json_object_get(j = json_array_get(jobs, i), "dedupeKey"));
        ck_assert_msg(key && !strncmp(key, prefix, strlen(prefix)), "job without a schedule key: %s",
                      key ? key : "(none)");
        ck_assert(n < max);
        due[n] = strtoll(key + strlen(prefix), NULL, 10);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "payload"), "kind")), "tick");
        for (int k = 0; k < n; k++)
            ck_assert_msg(due[k] != due[n], "two jobs for due time %" PRId64, due[n]);
        n++;
    }
    json_decref(r);
    return n;
}

/* everyMs=1000 with a 10-minute sweep interval: about one job a second,
 * one per due time, due times a second apart; events and /metrics count
 * them. */
START_TEST(every_second_one_job_per_due_time)
{
    int64_t due[64];
    json_t *r;
    int n;
    char line[100];

    create_every("tick", "ticks", 1000);
    sleep_ms(4500);
    n = due_times("ticks", "tick", due, 64);
    ck_assert_msg(n >= 3 && n <= 5, "%d jobs in 4.5 s", n);
    for (int i = 1; i < n; i++)
        ck_assert_int_eq(due[i] - due[i - 1], 1000);
    r = CALL(&srv, "GET", "/v1/schedules/tick", NULL, 200);
    ck_assert_int_ge(json_integer_value(json_object_get(json_object_get(r, "schedule"), "runs")), n);
    json_decref(r);
    ck_assert_int_ge(server_log_count(&srv, "schedules.tick.fired"), n);
    {
        struct resp m;
        ck_assert_int_eq(http_req(&srv, "GET", "/metrics", NULL, 0, NULL, NULL, &m), 0);
        snprintf(line, sizeof line, "baton_schedule_runs_total{schedule=\"tick\"} ");
        ck_assert_msg(m.body && strstr(m.body, line), "no %s", line);
        ck_assert_int_ge(atoi(strstr(m.body, line) + strlen(line)), n);
        resp_free(&m);
    }
}
END_TEST

START_TEST(pause_resume_delete)
{
    int64_t due[64];
    json_t *r;
    int n1, n2, n3;

    create_every("p", "pq", 1000);
    sleep_ms(1500);
    r = CALL(&srv, "POST", "/v1/schedules/p/pause", NULL, 200);
    ck_assert(json_is_true(json_object_get(json_object_get(r, "schedule"), "paused")));
    json_decref(r);
    n1 = due_times("pq", "p", due, 64);
    ck_assert_int_ge(n1, 1);
    sleep_ms(2500);
    ck_assert_int_eq(due_times("pq", "p", due, 64), n1);      /* nothing while paused */
    r = CALL(&srv, "POST", "/v1/schedules/p/resume", NULL, 200);
    ck_assert(json_is_false(json_object_get(json_object_get(r, "schedule"), "paused")));
    /* the due times missed while paused are not made up */
    ck_assert_int_gt(json_integer_value(json_object_get(json_object_get(r, "schedule"), "nextRunAt")),
                     wall_ms() - 50);
    json_decref(r);
    sleep_ms(2500);
    n2 = due_times("pq", "p", due, 64);
    ck_assert_msg(n2 >= n1 + 1 && n2 <= n1 + 3, "%d then %d", n1, n2);
    r = CALL(&srv, "DELETE", "/v1/schedules/p", NULL, 200);
    json_decref(r);
    r = CALL(&srv, "GET", "/v1/schedules/p", NULL, 404);
    json_decref(r);
    r = CALL(&srv, "DELETE", "/v1/schedules/p", NULL, 404);
    json_decref(r);
    r = CALL(&srv, "POST", "/v1/schedules/p/pause", NULL, 404);
    json_decref(r);
    n3 = due_times("pq", "p", due, 64);
    sleep_ms(2000);
    ck_assert_int_eq(due_times("pq", "p", due, 64), n3);      /* nothing once deleted */
}
END_TEST

/* Down for ~4 due times: one catch-up job at start, for the first missed
 * due time, not one per missed due time. */
START_TEST(restart_missed_slots_one_catchup)
{
    int64_t due[64], stopped, restarted;
    int n, missed = 0;

    create_every("r", "rq", 1000);
    sleep_ms(1300);
    ck_assert_int_eq(server_stop(&srv), 0);
    stopped = wall_ms();
    sleep_ms(4200);
    restarted = wall_ms();
    server_start(&srv, slow_sweep);
    sleep_ms(600);
    n = due_times("rq", "r", due, 64);
    for (int i = 0; i < n; i++)
        if (due[i] > stopped && due[i] < restarted)
            missed++;
    ck_assert_msg(missed == 1, "%d jobs for the due times missed while down", missed);
}
END_TEST

/* Bad input: 400 naming the field, nothing written. */
START_TEST(bad_input_400_nothing_written)
{
    static const struct {
        const char *body, *needle;
    } bad[] = {
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"cron\":\"0 */5 * * * *\"}", "five fields"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"cron\":\"61 * * * *\"}", "cron minute field"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"cron\":\"* * * * 9\"}", "cron day-of-week field"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"everyMs\":999}", "everyMs"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{}}", "everyMs"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"everyMs\":1000,\"cron\":\"* * * * *\"}", "cron"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"payload\":{},\"everyMs\":1000,\"timezone\":\"Mars/Olympus\"}",
         "timezone"},
        {"{\"name\":\"a.b\",\"queue\":\"q\",\"payload\":{},\"everyMs\":1000}", "name"},
        {"{\"name\":\"a\",\"queue\":\"q q\",\"payload\":{},\"everyMs\":1000}", "queue"},
        {"{\"name\":\"a\",\"queue\":\"q\",\"everyMs\":1000}", "payload"},
        {"{\"queue\":\"q\",\"payload\":{},\"everyMs\":1000}", "name"},
    };
    json_t *r;

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct resp resp;
        const char *msg;
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/schedules", bad[i].body, strlen(bad[i].body), NULL,
                                  "application/json", &resp), 0);
        ck_assert_msg(resp.status == 400, "%s: %ld", bad[i].body, resp.status);
        msg = json_string_value(json_object_get(json_object_get(resp.json, "error"), "message"));
        ck_assert_msg(msg && strstr(msg, bad[i].needle), "%s: '%s' lacks '%s'", bad[i].body,
                      msg ? msg : resp.body, bad[i].needle);
        resp_free(&resp);
    }
    r = CALL(&srv, "GET", "/v1/schedules", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r, "schedules")), 0);
    json_decref(r);
    ck_assert_int_eq(server_log_count(&srv, "schedules.a"), 0);

    /* a cron schedule is due at the next whole minute; its name is unique */
    r = CALL(&srv, "POST", "/v1/schedules",
             json_pack("{s:s, s:s, s:n, s:s, s:s}", "name", "c", "queue", "q", "payload", "cron",
                       "* * * * *", "timezone", "UTC"), 201);
    {
        json_int_t next = json_integer_value(json_object_get(json_object_get(r, "schedule"), "nextRunAt"));
        ck_assert_int_eq(next % 60000, 0);
        ck_assert_int_gt(next, wall_ms() - 1000);
        ck_assert_int_le(next, wall_ms() + 61000);
    }
    json_decref(r);
    r = CALL(&srv, "POST", "/v1/schedules",
             json_pack("{s:s, s:s, s:n, s:I}", "name", "c", "queue", "q", "payload", "everyMs",
                       (json_int_t)5000), 409);
    json_decref(r);
    r = CALL(&srv, "GET", "/v1/schedules", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r, "schedules")), 1);
    ck_assert_ptr_nonnull(json_object_get(json_array_get(json_object_get(r, "schedules"), 0), "cron"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(r, "schedules"), 0),
                                                        "everyMs")), 0);
    json_decref(r);
}
END_TEST

Suite *
suite_schedules(void)
{
    Suite *s = suite_create("schedules");
    TCase *unit = tcase_create("cron");
    TCase *tc = tcase_create("schedules");

    tcase_add_test(unit, cron_parser_table);
    tcase_add_test(unit, cron_next_cases);
    suite_add_tcase(s, unit);
    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_second_one_job_per_due_time);
    tcase_add_test(tc, pause_resume_delete);
    tcase_add_test(tc, restart_missed_slots_one_catchup);
    tcase_add_test(tc, bad_input_400_nothing_written);
    suite_add_tcase(s, tc);
    return s;
}
