/* check_store_queues.c -- store conformance cases of the queue settings
 * operations (see check_store.h): an unknown queue reads as the defaults,
 * a pause is kept with its time, author and reason (also across a
 * reopening), a repeated pause or resume changes nothing, a rolled-back
 * pause leaves nothing, the listing is by name, and of concurrent pauses
 * exactly one changes the row. Store interface only. */
#include <string.h>

#include "check_store.h"

/* set_paused in its own transaction at clock `at`; its result. */
static int
set_at(const char *queue, bool paused, const char *by, const char *reason, int64_t at,
       struct queue_settings *out)
{
    struct tx t;
    int rc;

    st_begin(st_conn, &t);
    t.now = at;
    rc = store->queues->set_paused(&t, queue, paused, by, reason, out);
    ck_assert_int_ge(rc, 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return rc;
}

static int
get(const char *queue, struct queue_settings *out)
{
    struct tx t;
    int rc;

    st_read(&t);
    rc = store->queues->get(&t, queue, out);
    tx_read_end(&t);
    ck_assert_int_ge(rc, 0);
    return rc;
}

START_TEST(unknown_queue_reads_as_defaults)
{
    struct queue_settings s;

    memset(&s, 0x5a, sizeof s);
    ck_assert_int_eq(get("agent", &s), 0);
    ck_assert_str_eq(s.queue, "agent");
    ck_assert(!s.paused);
    ck_assert_int_eq(s.paused_at, 0);
    ck_assert_str_eq(s.paused_by, "");
    ck_assert_str_eq(s.reason, "");
}
END_TEST

START_TEST(pause_kept_with_time_author_reason)
{
    const int64_t T = 1700000000000;
    struct queue_settings s;

    ck_assert_int_eq(set_at("agent", true, "10.0.0.7", "providers down", T, &s), 1);
    ck_assert(s.paused);
    ck_assert_int_eq(s.paused_at, T);
    ck_assert_str_eq(s.paused_by, "10.0.0.7");
    ck_assert_str_eq(s.reason, "providers down");
    ck_assert_int_eq(s.updated_at, T);
    for (int i = 0; i < 2; i++) {
        memset(&s, 0, sizeof s);
        ck_assert_int_eq(get("agent", &s), 1);
        ck_assert_str_eq(s.queue, "agent");
        ck_assert(s.paused);
        ck_assert_int_eq(s.paused_at, T);
        ck_assert_str_eq(s.paused_by, "10.0.0.7");
        ck_assert_str_eq(s.reason, "providers down");
        st_reopen();
    }
    /* other queues are not paused */
    ck_assert_int_eq(get("agent2", &s), 0);
    ck_assert(!s.paused);
}
END_TEST

START_TEST(repeated_pause_or_resume_changes_nothing)
{
    const int64_t T = 1700000000000;
    struct queue_settings s;

    ck_assert_int_eq(set_at("q", false, NULL, NULL, T, &s), 0);     /* never paused */
    ck_assert(!s.paused);
    ck_assert_int_eq(get("q", &s), 0);                              /* and no row */

    ck_assert_int_eq(set_at("q", true, "a", NULL, T, &s), 1);
    ck_assert_str_eq(s.reason, "");
    ck_assert_int_eq(set_at("q", true, "b", "later", T + 5, &s), 0);
    ck_assert_int_eq(s.paused_at, T);                               /* the first pause's */
    ck_assert_str_eq(s.paused_by, "a");
    ck_assert_str_eq(s.reason, "");
    ck_assert_int_eq(s.updated_at, T);

    ck_assert_int_eq(set_at("q", false, "c", "ignored", T + 10, &s), 1);
    ck_assert(!s.paused);
    ck_assert_int_eq(s.paused_at, 0);
    ck_assert_str_eq(s.paused_by, "");
    ck_assert_str_eq(s.reason, "");
    ck_assert_int_eq(s.updated_at, T + 10);
    ck_assert_int_eq(get("q", &s), 1);                              /* the row stays */
    ck_assert(!s.paused);
    ck_assert_int_eq(set_at("q", false, NULL, NULL, T + 20, &s), 0);
    ck_assert_int_eq(s.updated_at, T + 10);

    ck_assert_int_eq(set_at("q", true, "d", "again", T + 30, &s), 1);
    ck_assert_int_eq(s.paused_at, T + 30);
    ck_assert_str_eq(s.reason, "again");
}
END_TEST

START_TEST(rolled_back_pause_leaves_nothing)
{
    struct queue_settings s;
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->queues->set_paused(&t, "agent", true, "x", "y", NULL), 1);
    ck_assert_int_eq(store->queues->get(&t, "agent", &s), 1);  /* seen inside its write */
    ck_assert(s.paused);
    st_rollback(&t);
    ck_assert_int_eq(get("agent", &s), 0);
    ck_assert(!s.paused);
}
END_TEST

struct seen {
    char names[8][QUEUE_NAME_MAX + 1];
    bool paused[8];
    int n, stop_at;
};

static int
collect(const struct queue_settings *s, void *arg)
{
    struct seen *v = arg;

    if (v->n >= 8)
        return -1;
    snprintf(v->names[v->n], sizeof v->names[v->n], "%s", s->queue);
    v->paused[v->n] = s->paused;
    v->n++;
    return v->n == v->stop_at ? 7 : 0;
}

START_TEST(list_by_name_and_stops)
{
    const int64_t T = 1700000000000;
    struct seen v = {0};
    struct tx t;

    set_at("outbound.telegram.b", true, NULL, NULL, T, NULL);
    set_at("agent", true, NULL, NULL, T, NULL);
    set_at("zeta", true, NULL, NULL, T, NULL);
    set_at("zeta", false, NULL, NULL, T + 1, NULL);
    st_read(&t);
    ck_assert_int_eq(store->queues->list(&t, collect, &v), 0);
    tx_read_end(&t);
    ck_assert_int_eq(v.n, 3);
    ck_assert_str_eq(v.names[0], "agent");
    ck_assert_str_eq(v.names[1], "outbound.telegram.b");
    ck_assert_str_eq(v.names[2], "zeta");
    ck_assert(v.paused[0] && v.paused[1] && !v.paused[2]);

    memset(&v, 0, sizeof v);
    v.stop_at = 2;
    st_read(&t);
    ck_assert_int_eq(store->queues->list(&t, collect, &v), 7);
    tx_read_end(&t);
    ck_assert_int_eq(v.n, 2);
}
END_TEST

#define RACERS 8

static int
pause_one(struct tx *t, int i, void *arg)
{
    char by[16];

    (void)arg;
    snprintf(by, sizeof by, "racer%d", i);
    return store->queues->set_paused(t, "agent", true, by, NULL, NULL);
}

START_TEST(one_of_eight_pauses_changes_it)
{
    struct queue_settings s;
    int rcs[RACERS], changed = 0, who = -1;
    char by[16];

    st_race(RACERS, pause_one, NULL, rcs);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        if (rcs[i] == 1) {
            changed++;
            who = i;
        }
    }
    ck_assert_int_eq(changed, 1);
    ck_assert_int_eq(get("agent", &s), 1);
    snprintf(by, sizeof by, "racer%d", who);
    ck_assert_str_eq(s.paused_by, by);
}
END_TEST

void
store_cases_queues(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("queues");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, unknown_queue_reads_as_defaults);
    tcase_add_test(tc, pause_kept_with_time_author_reason);
    tcase_add_test(tc, repeated_pause_or_resume_changes_nothing);
    tcase_add_test(tc, rolled_back_pause_leaves_nothing);
    tcase_add_test(tc, list_by_name_and_stops);
    tcase_add_test(tc, one_of_eight_pauses_changes_it);
    suite_add_tcase(s, tc);
}
