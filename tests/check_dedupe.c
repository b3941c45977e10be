/* check_dedupe.c -- POST /v1/dedupe against the real batond: exactly one
 * first under concurrency, per-channel keys, expiry, pruning by the sweep,
 * refusal of missing ids, the dedupe_skipped event. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "harness.h"

static struct server srv;

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    server_start(&srv, NULL);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Register and return the answer (asserting 200). */
static json_t *
reg(const char *channel, const char *id, long long ttl_ms)
{
    json_t *body = json_pack("{s:s, s:s}", "channel", channel, "channelMessageId", id);

    if (ttl_ms)
        json_object_set_new(body, "ttlMs", json_integer(ttl_ms));
    return CALL(&srv, "POST", "/v1/dedupe", body, 200);
}

static bool
is_dup(json_t *j)
{
    json_t *d = json_object_get(j, "duplicate");
    ck_assert_msg(json_is_boolean(d), "no duplicate flag");
    return json_is_true(d);
}

/* Rows in the dedupe table, read from the database directly. */
static int
rows(const char *where)
{
    char sql[300];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM dedupe WHERE %s", where);
    return (int)server_sql(&srv, sql);
}

#define NTHREADS 32

struct racer {
    pthread_barrier_t *go;
    long status;
    int duplicate;          /* 0, 1, or -1 when the answer had no flag */
    long long first_seen;
};

static void *
race(void *arg)
{
    struct racer *me = arg;
    static const char body[] = "{\"channel\":\"whatsapp\",\"channelMessageId\":\"wamid.RACE1\"}";
    struct resp r;

    pthread_barrier_wait(me->go);
    me->duplicate = -1;
    if (http_req(&srv, "POST", "/v1/dedupe", body, sizeof body - 1, NULL, NULL, &r) == 0) {
        json_t *d = json_object_get(r.json, "duplicate");
        me->status = r.status;
        if (json_is_boolean(d))
            me->duplicate = json_is_true(d);
        me->first_seen = json_integer_value(json_object_get(r.json, "firstSeenAt"));
        resp_free(&r);
    }
    return NULL;
}

START_TEST(concurrent_registrations_exactly_one_first)
{
    pthread_t th[NTHREADS];
    struct racer rc[NTHREADS];
    pthread_barrier_t go;
    int firsts = 0, dups = 0;

    pthread_barrier_init(&go, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        memset(&rc[i], 0, sizeof rc[i]);
        rc[i].go = &go;
        ck_assert_int_eq(pthread_create(&th[i], NULL, race, &rc[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_int_eq(rc[i].status, 200);
        ck_assert_int_ge(rc[i].duplicate, 0);
        if (rc[i].duplicate)
            dups++;
        else
            firsts++;
        /* everyone is told about the same first sighting */
        ck_assert_int_eq(rc[i].first_seen, rc[0].first_seen);
    }
    ck_assert_int_eq(firsts, 1);
    ck_assert_int_eq(dups, NTHREADS - 1);
    ck_assert_int_eq(rows("channel_message_id = 'wamid.RACE1'"), 1);
    ck_assert_int_eq(server_log_count(&srv, "whatsapp.inbound.dedupe_skipped"), NTHREADS - 1);
}
END_TEST

START_TEST(channels_are_independent)
{
    json_t *a = reg("telegram", "42:7", 0), *b = reg("whatsapp", "42:7", 0), *c = reg("telegram", "42:7", 0),
           *d = reg("telegram", "42:8", 0);

    ck_assert(!is_dup(a));
    ck_assert(!is_dup(b));
    ck_assert(is_dup(c));
    ck_assert(!is_dup(d));
    /* the duplicate reports the original sighting and its expiry */
    ck_assert_int_eq(json_integer_value(json_object_get(c, "firstSeenAt")),
                     json_integer_value(json_object_get(a, "firstSeenAt")));
    ck_assert_int_eq(json_integer_value(json_object_get(c, "expiresAt")),
                     json_integer_value(json_object_get(a, "expiresAt")));
    /* default TTL is BATON_DEDUPE_TTL_MS: 7 days */
    ck_assert_int_eq(json_integer_value(json_object_get(a, "expiresAt")) -
                     json_integer_value(json_object_get(a, "firstSeenAt")), 7LL * 24 * 3600 * 1000);
    json_decref(a), json_decref(b), json_decref(c), json_decref(d);
}
END_TEST

START_TEST(expired_entry_is_first_again_and_pruned)
{
    json_t *a = reg("telegram", "1:100", 2000), *b = reg("telegram", "1:100", 2000), *c;
    json_t *keep = reg("telegram", "1:keep", 0);
    long long first = json_integer_value(json_object_get(a, "firstSeenAt"));
    int waited = 0;

    ck_assert(!is_dup(a));
    ck_assert(is_dup(b));
    ck_assert_int_eq(json_integer_value(json_object_get(a, "expiresAt")) - first, 2000);
    sleep_ms(2300);
    c = reg("telegram", "1:100", 60000);
    ck_assert_msg(!is_dup(c), "an expired entry must count as absent");
    ck_assert_int_gt(json_integer_value(json_object_get(c, "firstSeenAt")), first);
    json_decref(a), json_decref(b), json_decref(c), json_decref(keep);

    /* the sweep (every 200 ms in tests) deletes expired rows, and only them */
    a = reg("telegram", "1:short", 1);
    json_decref(a);
    while (rows("channel_message_id = '1:short'") != 0 && waited < 10000) {
        sleep_ms(50);
        waited += 50;
    }
    ck_assert_int_eq(rows("channel_message_id = '1:short'"), 0);
    ck_assert_int_eq(rows("channel_message_id IN ('1:keep', '1:100')"), 2);
}
END_TEST

START_TEST(missing_or_empty_ids_are_refused)
{
    static const char *const bad[] = {
        "{\"channel\":\"telegram\"}",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"\"}",
        "{\"channel\":\"telegram\",\"channelMessageId\":null}",
        "{\"channel\":\"telegram\",\"channelMessageId\":17}",
        "{\"channelMessageId\":\"1:2\"}",
        "{\"channel\":\"\",\"channelMessageId\":\"1:2\"}",
        "{\"channel\":\"tele.gram\",\"channelMessageId\":\"1:2\"}",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"1:2\",\"ttlMs\":0}",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"1:2\",\"ttlMs\":-5}",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"1:2\",\"ttlMs\":\"60000\"}",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"1:2\",\"ttlMs\":999999999999999}",
        "",
    };

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/dedupe", bad[i], strlen(bad[i]), NULL, NULL, &r), 0);
        ck_assert_msg(r.status == 400, "body %zu: status %ld: %s", i, r.status, r.body);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
                         "bad_request");
        resp_free(&r);
    }
    {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/dedupe", bad[1], strlen(bad[1]), NULL, NULL, &r), 0);
        ck_assert_ptr_nonnull(strstr(r.body, "channelMessageId"));  /* names the field */
        resp_free(&r);
    }
    ck_assert_int_eq(rows("true"), 0);
    /* the valid form of the same request goes through, once */
    json_t *j = reg("telegram", "1:2", 0);
    ck_assert(!is_dup(j));
    json_decref(j);
    ck_assert_int_eq(rows("true"), 1);
}
END_TEST

START_TEST(duplicate_emits_dedupe_skipped)
{
    json_t *j, *ev, *e;

    j = reg("telegram", "99:1", 0);
    json_decref(j);
    ev = CALL(&srv, "GET", "/v1/events?event=telegram.inbound.dedupe_skipped", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 0);
    json_decref(ev);

    j = reg("telegram", "99:1", 0);
    ck_assert(is_dup(j));
    json_decref(j);
    ev = CALL(&srv, "GET", "/v1/events?event=telegram.inbound.dedupe_skipped", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    e = json_array_get(json_object_get(ev, "events"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "channel")), "telegram");
    ck_assert_str_eq(json_string_value(json_object_get(e, "channelMessageId")), "99:1");
    json_decref(ev);
    ck_assert_int_eq(server_log_count(&srv, "\"event\":\"telegram.inbound.dedupe_skipped\""), 1);
}
END_TEST

START_TEST(survives_kill9)
{
    json_t *j = reg("whatsapp", "wamid.KEEP", 0);

    json_decref(j);
    server_kill(&srv);
    server_start(&srv, NULL);
    j = reg("whatsapp", "wamid.KEEP", 0);
    ck_assert_msg(is_dup(j), "an acknowledged registration was lost by kill -9");
    json_decref(j);
}
END_TEST

Suite *
suite_dedupe(void)
{
    Suite *s = suite_create("dedupe");
    TCase *tc = tcase_create("dedupe");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, concurrent_registrations_exactly_one_first);
    tcase_add_test(tc, channels_are_independent);
    tcase_add_test(tc, expired_entry_is_first_again_and_pruned);
    tcase_add_test(tc, missing_or_empty_ids_are_refused);
    tcase_add_test(tc, duplicate_emits_dedupe_skipped);
    tcase_add_test(tc, survives_kill9);
    suite_add_tcase(s, tc);
    return s;
}
