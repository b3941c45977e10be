/* check_store_queues.c -- store conformance cases of the queue settings
 * operations (see check_store.h): an unknown queue reads as the defaults,
 * a pause is kept with its time, author and reason (also across a
 * reopening), a repeated pause or resume changes nothing, a rolled-back
 * pause leaves nothing, the listing is by name, and of concurrent pauses
 * exactly one changes the row. Rate limits: set and kept across a
 * reopening without touching the pause, the sliding window of a bucket
 * judged by t->now, the claim passing over the jobs of a limited key, the
 * earliest time a key frees, pruning. Store interface only. */
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


START_TEST(limits_kept_across_reopen_pause_untouched)
{
    struct rate_limit rate = {10, 1000}, key = {2, 500};
    struct queue_settings q;
    struct tx t;

    set_at("lim", true, "ops", "why", 1000, NULL);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->queues->set_limits(&t, "lim", true, &rate, &key, &q), 0);
    ck_assert(q.limits_set && q.paused);
    ck_assert_int_eq(st_commit(&t), 0);
    st_reopen();
    ck_assert_int_eq(get("lim", &q), 1);
    ck_assert(q.limits_set && q.paused);
    ck_assert_str_eq(q.reason, "why");
    ck_assert_int_eq(q.rate.limit, 10);
    ck_assert_int_eq(q.rate.period_ms, 1000);
    ck_assert_int_eq(q.key_rate.limit, 2);
    ck_assert_int_eq(q.key_rate.period_ms, 500);
    /* only a key limit; then back to the defaults */
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->queues->set_limits(&t, "lim", true, NULL, &key, &q), 0);
    ck_assert_int_eq(q.rate.limit, 0);
    ck_assert_int_eq(q.key_rate.limit, 2);
    ck_assert_int_eq(store->queues->set_limits(&t, "lim", false, &rate, &key, &q), 0);
    ck_assert(!q.limits_set && q.paused);
    ck_assert_int_eq(q.rate.limit, 0);
    ck_assert_int_eq(q.key_rate.limit, 0);
    ck_assert_int_eq(st_commit(&t), 0);
    /* a queue whose only row is its limits is not paused */
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->queues->set_limits(&t, "fresh", true, &rate, NULL, &q), 0);
    ck_assert(!q.paused);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

static void
record_at(const char *queue, const char *key, int64_t period, int64_t at)
{
    struct tx t;

    st_begin(st_conn, &t);
    t.now = at;
    ck_assert_int_eq(store->queues->rate_record(&t, queue, key, period), 0);
    ck_assert_int_eq(st_commit(&t), 0);
}

static int64_t
free_at(const char *queue, const char *key, int64_t limit, int64_t period, int64_t at)
{
    struct rate_limit l = {limit, period};
    struct tx t;
    int64_t v = -1;

    st_read(&t);
    t.now = at;
    ck_assert_int_eq(store->queues->rate_free_at(&t, queue, key, &l, &v), 0);
    tx_read_end(&t);
    return v;
}

START_TEST(rate_bucket_is_a_sliding_window)
{
    struct tx t;
    size_t n;
    bool more;

    ck_assert_int_eq(free_at("q", "", 2, 1000, 5000), 0);
    record_at("q", "", 1000, 5000);
    ck_assert_int_eq(free_at("q", "", 2, 1000, 5100), 0);
    record_at("q", "", 1000, 5400);
    /* two claims in (now - 1000, now]: full until the older leaves */
    ck_assert_int_eq(free_at("q", "", 2, 1000, 5500), 6000);
    ck_assert_int_eq(free_at("q", "", 2, 1000, 5999), 6000);
    ck_assert_int_eq(free_at("q", "", 2, 1000, 6000), 0);
    ck_assert_int_eq(free_at("q", "", 1, 1000, 6000), 6400);
    /* buckets are per queue and per key */
    ck_assert_int_eq(free_at("q", "k", 1, 1000, 5500), 0);
    ck_assert_int_eq(free_at("other", "", 1, 1000, 5500), 0);
    record_at("q", "k", 1000, 5450);
    ck_assert_int_eq(free_at("q", "k", 1, 1000, 5500), 6450);
    /* a record drops its bucket's expired ones; prune takes the rest */
    record_at("q", "", 1000, 7000);
    ck_assert_int_eq(free_at("q", "", 2, 1000, 7000), 0);
    st_begin(st_conn, &t);
    t.now = 9000;
    ck_assert_int_eq(store->queues->rate_prune(&t, 7000, 10, &n, &more), 0);
    ck_assert_int_eq(n, 1);             /* k's 5450; q's 7000 stays */
    ck_assert(!more);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(free_at("q", "k", 1, 1000, 5500), 0);
    ck_assert_int_eq(free_at("q", "", 1, 1000, 7500), 8000);
}
END_TEST

static int64_t
add_job(struct tx *t, const char *queue, const char *rate_key, int64_t run_at)
{
    struct job_new n = {.queue = queue, .payload = "{}", .run_at = run_at, .max_attempts = 3,
                        .rate_key = rate_key};
    int64_t id;

    ck_assert_int_eq(store->jobs->insert(t, &n, &id, NULL), 0);
    return id;
}

START_TEST(claim_passes_over_limited_keys)
{
    struct rate_limit l = {1, 1000};
    struct tx t;
    struct job j;
    int64_t a1, b1, none, at;

    st_begin(st_conn, &t);
    t.now = 10000;
    a1 = add_job(&t, "c", "a", 10000);
    add_job(&t, "c", "a", 10000);
    b1 = add_job(&t, "c", "b", 10000);
    none = add_job(&t, "c", NULL, 10000);
    add_job(&t, "c", "later", 20000);          /* not due: never a reason to wake */
    ck_assert_int_eq(store->jobs->claim(&t, "c", "w", 70000, "c_1", &l, &j), 1);
    ck_assert_int_eq(j.id, a1);
    ck_assert_str_eq(j.rate_key, "a");
    job_free(&j);
    ck_assert_int_eq(store->queues->rate_record(&t, "c", "a", 1000), 0);
    /* a is full: b, then the job without a key, then nothing */
    ck_assert_int_eq(store->jobs->claim(&t, "c", "w", 70000, "c_2", &l, &j), 1);
    ck_assert_int_eq(j.id, b1);
    job_free(&j);
    ck_assert_int_eq(store->queues->rate_record(&t, "c", "b", 1000), 0);
    ck_assert_int_eq(store->jobs->claim(&t, "c", "w", 70000, "c_3", &l, &j), 1);
    ck_assert_int_eq(j.id, none);
    job_free(&j);
    ck_assert_int_eq(store->jobs->claim(&t, "c", "w", 70000, "c_4", &l, &j), 0);
    /* without the limit the second job of a is there */
    ck_assert_int_eq(store->queues->rate_keys_free_at(&t, "c", &l, &at), 0);
    ck_assert_int_eq(at, 11000);                /* a frees; b has nothing due */
    t.now = 11000;
    ck_assert_int_eq(store->jobs->claim(&t, "c", "w", 70000, "c_5", &l, &j), 1);
    ck_assert_str_eq(j.rate_key, "a");
    job_free(&j);
    ck_assert_int_eq(store->queues->rate_keys_free_at(&t, "c", &l, &at), 0);
    ck_assert_int_eq(at, 0);
    ck_assert_int_eq(st_commit(&t), 0);
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
    tcase_add_test(tc, limits_kept_across_reopen_pause_untouched);
    tcase_add_test(tc, rate_bucket_is_a_sliding_window);
    tcase_add_test(tc, claim_passes_over_limited_keys);
    suite_add_tcase(s, tc);
}
