/* check_store_dedupe.c -- store conformance cases of the dedupe operations
 * (see check_store.h): first wins under concurrency (over no entry and over
 * an expired one), a duplicate reports the first sighting, an expired entry
 * is replaced, and the prune removes only expired entries, a bounded number
 * at a time. Store interface only. */
#include <string.h>

#include "check_store.h"

/* One check-and-register in its own transaction at clock `at`. */
static struct dedupe_result
reg_at(const char *id, int64_t ttl, int64_t at)
{
    struct tx t;
    struct dedupe_result res;

    st_begin(st_conn, &t);
    t.now = at;
    ck_assert_int_eq(store->dedupe->check_register(&t, "telegram", id, ttl, &res), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return res;
}

/* ---- 16 registrations on their own connections ---------------------------- */

#define RACERS 16

static int
register_one(struct tx *t, int i, void *arg)
{
    struct dedupe_result *res = arg;

    return store->dedupe->check_register(t, "whatsapp", "wamid.1", 60000, &res[i]);
}

/* Race RACERS registrations of whatsapp/wamid.1: exactly one is first,
 * and every duplicate reports the first one's entry, which it returns. */
static struct dedupe_result
race_registrations(void)
{
    struct dedupe_result res[RACERS];
    int rcs[RACERS], firsts = 0, first = -1;

    memset(res, 0, sizeof res);
    st_race(RACERS, register_one, res, rcs);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(rcs[i] == 0, "racer %d: %d", i, rcs[i]);
        if (!res[i].duplicate) {
            firsts++;
            first = i;
        }
    }
    ck_assert_int_eq(firsts, 1);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_int_eq(res[i].first_seen_at, res[first].first_seen_at);
        ck_assert_int_eq(res[i].expires_at, res[first].expires_at);
    }
    return res[first];
}

START_TEST(first_wins_among_sixteen)
{
    race_registrations();
}
END_TEST

/* An expired entry is replaced by exactly one of 16 concurrent callers. */
START_TEST(first_wins_over_expired_entry)
{
    struct tx t;
    struct dedupe_result old, res;

    st_begin(st_conn, &t);
    t.now = now_ms() - 60000;
    ck_assert_int_eq(store->dedupe->check_register(&t, "whatsapp", "wamid.1", 1000, &old), 0);
    ck_assert(!old.duplicate);
    ck_assert_int_eq(st_commit(&t), 0);
    res = race_registrations();
    ck_assert_int_gt(res.first_seen_at, old.expires_at);
}
END_TEST

/* A duplicate reports the first registration, which it leaves alone; the
 * same id on another channel is another entry. */
START_TEST(duplicate_reports_first_seen)
{
    const int64_t T = 1700000000000;
    struct dedupe_result res = reg_at("42:7", 5000, T);
    struct tx t;

    ck_assert(!res.duplicate);
    ck_assert_int_eq(res.first_seen_at, T);
    ck_assert_int_eq(res.expires_at, T + 5000);

    res = reg_at("42:7", 9000, T + 4999);
    ck_assert(res.duplicate);
    ck_assert_int_eq(res.first_seen_at, T);
    ck_assert_int_eq(res.expires_at, T + 5000);

    st_begin(st_conn, &t);
    t.now = T + 10;
    ck_assert_int_eq(store->dedupe->check_register(&t, "whatsapp", "42:7", 5000, &res), 0);
    ck_assert(!res.duplicate);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* From its expiry on an entry counts as absent: the next registration is
 * first again, with its own times. */
START_TEST(expired_entry_replaced)
{
    const int64_t T = 1700000000000;
    struct dedupe_result res = reg_at("m", 100, T);

    ck_assert(!res.duplicate);
    res = reg_at("m", 300, T + 100);
    ck_assert(!res.duplicate);
    ck_assert_int_eq(res.first_seen_at, T + 100);
    ck_assert_int_eq(res.expires_at, T + 400);
    res = reg_at("m", 300, T + 399);
    ck_assert(res.duplicate);
    ck_assert_int_eq(res.first_seen_at, T + 100);
}
END_TEST

static int64_t
prune_at(int64_t at, int64_t limit)
{
    struct tx t;
    int64_t deleted = -1;

    st_begin(st_conn, &t);
    t.now = at;
    ck_assert_int_eq(store->dedupe->prune(&t, limit, &deleted), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return deleted;
}

/* The prune deletes entries expired at the clock (expiry <= now) and no
 * more than its limit per call; live entries stay. */
START_TEST(prune_expired_in_chunks)
{
    const int64_t T = 1700000000000;
    char id[16];

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "old%d", i);
        reg_at(id, 10 + i, T);                  /* expire at T+10 .. T+14 */
    }
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "live%d", i);
        reg_at(id, 1000, T);                    /* expire at T+1000 */
    }
    ck_assert_int_eq(prune_at(T + 9, 100), 0);
    ck_assert_int_eq(prune_at(T + 10, 100), 1);  /* exactly at its expiry */
    ck_assert_int_eq(prune_at(T + 999, 2), 2);
    ck_assert_int_eq(prune_at(T + 999, 2), 2);
    ck_assert_int_eq(prune_at(T + 999, 2), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "live%d", i);
        ck_assert(reg_at(id, 1000, T + 999).duplicate);
    }
    ck_assert_int_eq(prune_at(T + 1000, 2), 2);
    ck_assert_int_eq(prune_at(T + 1000, 2), 1);
}
END_TEST

void
store_cases_dedupe(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("dedupe");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, first_wins_among_sixteen);
    tcase_add_test(tc, first_wins_over_expired_entry);
    tcase_add_test(tc, duplicate_reports_first_seen);
    tcase_add_test(tc, expired_entry_replaced);
    tcase_add_test(tc, prune_expired_in_chunks);
    suite_add_tcase(s, tc);
}
