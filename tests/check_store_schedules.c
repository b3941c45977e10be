/* check_store_schedules.c -- store conformance cases of the schedules
 * operations (see check_store.h): insert refuses a taken name, get and list
 * read back what was written, due picks the earliest due unpaused schedule,
 * advance fires a due time once, earliest ignores paused schedules, del
 * removes, and a schedule survives a reopening. Store interface only. */
#include <string.h>

#include "check_store.h"

#define T0 1700000000000LL

static int
put(const char *name, int64_t next_run, bool paused, int64_t at)
{
    struct schedule s = {.name = name, .queue = "agent", .payload = "{\"k\":1}", .every_ms = 1000,
                         .timezone = "UTC", .paused = paused, .next_run = next_run};
    struct tx t;
    int rc;

    st_begin(st_conn, &t);
    t.now = at;
    rc = store->schedules->insert(&t, &s);
    ck_assert_int_eq(st_commit(&t), 0);
    return rc;
}

START_TEST(insert_get_and_taken_name)
{
    struct schedule s;
    struct tx t;

    ck_assert_int_eq(put("tick", T0 + 1000, false, T0), 1);
    ck_assert_int_eq(put("tick", T0 + 5000, true, T0 + 1), 0);     /* taken: unchanged */
    st_read(&t);
    ck_assert_int_eq(store->schedules->get(&t, "tick", &s), 1);
    ck_assert_str_eq(s.name, "tick");
    ck_assert_str_eq(s.queue, "agent");
    ck_assert_str_eq(s.payload, "{\"k\":1}");
    ck_assert_ptr_null(s.cron);
    ck_assert_int_eq(s.every_ms, 1000);
    ck_assert(!s.paused);
    ck_assert_int_eq(s.next_run, T0 + 1000);
    ck_assert(s.last_run == JOB_NONE);
    ck_assert_int_eq(s.runs, 0);
    ck_assert_int_eq(s.created_at, T0);
    schedule_free(&s);
    ck_assert_int_eq(store->schedules->get(&t, "nope", &s), 0);
    tx_read_end(&t);
}
END_TEST

/* due: the earliest due unpaused one; nothing before its time */
START_TEST(due_is_earliest_unpaused)
{
    struct schedule s;
    struct tx t;

    put("b", T0 + 2000, false, T0);
    put("a", T0 + 3000, false, T0);
    put("p", T0 + 1000, true, T0);          /* paused: never due */
    st_begin(st_conn, &t);
    t.now = T0 + 1999;
    ck_assert_int_eq(store->schedules->due(&t, &s), 0);
    t.now = T0 + 5000;
    ck_assert_int_eq(store->schedules->due(&t, &s), 1);
    ck_assert_str_eq(s.name, "b");
    schedule_free(&s);
    st_rollback(&t);
}
END_TEST

/* advance fires a due time once: the second with the same `from` is 0 */
START_TEST(advance_once_per_due_time)
{
    struct schedule s;
    struct tx t;
    int64_t at;

    put("tick", T0 + 1000, false, T0);
    st_begin(st_conn, &t);
    t.now = T0 + 1000;
    ck_assert_int_eq(store->schedules->advance(&t, "tick", T0 + 1000, T0 + 2000, 42), 1);
    ck_assert_int_eq(store->schedules->advance(&t, "tick", T0 + 1000, T0 + 3000, 43), 0);
    ck_assert_int_eq(store->schedules->advance(&t, "gone", T0 + 1000, T0 + 3000, 43), 0);
    ck_assert_int_eq(store->schedules->due(&t, &s), 0);     /* next one is later */
    ck_assert_int_eq(store->schedules->earliest(&t, &at), 0);
    ck_assert_int_eq(at, T0 + 2000);
    ck_assert_int_eq(st_commit(&t), 0);
    st_read(&t);
    ck_assert_int_eq(store->schedules->get(&t, "tick", &s), 1);
    ck_assert_int_eq(s.next_run, T0 + 2000);
    ck_assert_int_eq(s.last_run, T0 + 1000);
    ck_assert_int_eq(s.last_job_id, 42);
    ck_assert_int_eq(s.runs, 1);
    schedule_free(&s);
    tx_read_end(&t);
}
END_TEST

/* earliest ignores paused ones; set_paused and del change one row */
START_TEST(pause_delete_and_earliest)
{
    struct tx t;
    int64_t at;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->schedules->earliest(&t, &at), 0);
    ck_assert_int_eq(at, 0);
    st_rollback(&t);
    put("a", T0 + 1000, false, T0);
    put("b", T0 + 4000, false, T0);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->schedules->set_paused(&t, "a", true, T0 + 1000), 1);
    ck_assert_int_eq(store->schedules->set_paused(&t, "zz", true, T0), 0);
    ck_assert_int_eq(store->schedules->earliest(&t, &at), 0);
    ck_assert_int_eq(at, T0 + 4000);
    ck_assert_int_eq(store->schedules->set_paused(&t, "a", false, T0 + 3000), 1);
    ck_assert_int_eq(store->schedules->earliest(&t, &at), 0);
    ck_assert_int_eq(at, T0 + 3000);
    ck_assert_int_eq(store->schedules->del(&t, "a"), 1);
    ck_assert_int_eq(store->schedules->del(&t, "a"), 0);
    ck_assert_int_eq(store->schedules->earliest(&t, &at), 0);
    ck_assert_int_eq(at, T0 + 4000);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

static int
collect(const struct schedule *s, void *arg)
{
    strcat(arg, s->name);
    strcat(arg, s->paused ? "(p) " : " ");
    return 0;
}

/* list by name, and the rows survive a reopening */
START_TEST(list_by_name_survives_reopen)
{
    char names[100] = "";
    struct tx t;

    put("c", T0 + 1000, false, T0);
    put("a", T0 + 1000, true, T0);
    put("b", T0 + 1000, false, T0);
    st_reopen();
    st_read(&t);
    ck_assert_int_eq(store->schedules->list(&t, collect, names), 0);
    tx_read_end(&t);
    ck_assert_str_eq(names, "a(p) b c ");
}
END_TEST

/* a maintenance write as schedules.c runs it: the due schedule fired,
 * its advance finding it still at the due time (-3 when not) */
static int
race_fire(struct tx *t, int i, void *arg)
{
    struct schedule s;
    int rc = store->schedules->due(t, &s);

    (void)arg;
    if (rc <= 0)
        return rc;
    rc = store->schedules->advance(t, s.name, s.next_run, t->now + 60000, 100 + i);
    schedule_free(&s);
    return rc == 1 ? 1 : rc < 0 ? -1 : -3;
}

/* 8 writers on their own connections look for due schedules at once: the
 * due time fires once, and no writer finds the schedule it took as due
 * already fired under it. */
START_TEST(racing_writers_fire_a_due_time_once)
{
    struct schedule s;
    struct tx t;
    int rcs[8], fired = 0;
    int64_t now = now_ms();

    put("tick", now - 1000, false, now - 2000);
    st_race(8, race_fire, NULL, rcs);
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        fired += rcs[i];
    }
    ck_assert_int_eq(fired, 1);
    st_read(&t);
    ck_assert_int_eq(store->schedules->get(&t, "tick", &s), 1);
    ck_assert_int_eq(s.runs, 1);
    ck_assert_int_eq(s.last_run, now - 1000);
    schedule_free(&s);
    tx_read_end(&t);
}
END_TEST

void
store_cases_schedules(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("schedules");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, insert_get_and_taken_name);
    tcase_add_test(tc, due_is_earliest_unpaused);
    tcase_add_test(tc, advance_once_per_due_time);
    tcase_add_test(tc, pause_delete_and_earliest);
    tcase_add_test(tc, list_by_name_survives_reopen);
    tcase_add_test(tc, racing_writers_fire_a_due_time_once);
    suite_add_tcase(s, tc);
}
