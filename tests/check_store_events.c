/* check_store_events.c -- store conformance cases of the events operations
 * (see check_store.h): inserting and listing events (by id, name, name
 * range, time, fields, with a limit), the newest id, pruning in bounded
 * chunks, and the gauges' health check. Store interface only. */
#include <stdlib.h>
#include <string.h>

#include "check_store.h"

#define MAXROWS 64

/* What a listing visited, copied out of the visit. */
struct seen {
    int n;
    int stop_after;                 /* > 0: stop the listing after this many */
    int64_t id[MAXROWS], time[MAXROWS];
    char name[MAXROWS][64], level[MAXROWS][8], fields[MAXROWS][128];
};

static int
collect(const struct event_row *e, void *arg)
{
    struct seen *s = arg;

    ck_assert_int_lt(s->n, MAXROWS);
    s->id[s->n] = e->id;
    s->time[s->n] = e->time;
    snprintf(s->name[s->n], sizeof s->name[0], "%s", e->name);
    snprintf(s->level[s->n], sizeof s->level[0], "%s", e->level);
    snprintf(s->fields[s->n], sizeof s->fields[0], "%s", e->fields);
    s->n++;
    return s->stop_after > 0 && s->n >= s->stop_after;
}

/* Insert one event at `time` in its own committed write; its id. */
static int64_t
put(int64_t time, const char *level, const char *name, const char *fields)
{
    struct event_row e = {.time = time, .level = level, .name = name, .fields = fields};
    struct tx t;
    int64_t id = -1;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert(&t, &e, &id), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_gt(id, 0);
    return id;
}

/* List q on a read (limit 0 is 100 here, until 0 no bound); the rows
 * visited. */
static void
list(struct event_query q, struct seen *s)
{
    struct tx t;
    int stop = s->stop_after;

    if (!q.limit)
        q.limit = 100;
    if (!q.until)
        q.until = INT64_MAX;
    memset(s, 0, sizeof *s);
    s->stop_after = stop;
    st_read(&t);
    ck_assert_int_eq(store->events->list(&t, &q, collect, s), 0);
    tx_read_end(&t);
}

/* insert_set: n rows of one time, level and name in one statement keep
 * their order (increasing ids after the ones before) and their fields
 * byte for byte (escapes and UTF-8 untouched); none for n = 0. */
START_TEST(insert_set_keeps_order_and_bytes)
{
    static const char *const f[3] = {
        "{\"jobId\":\"7\",\"workerId\":\"a\\\"b\\\\c\\u0001\\n\xc3\xa9\"}",
        "{}",
        "{\"attempts\":3,\"willRetry\":false}",
    };
    struct seen s = {0};
    struct tx t;
    int64_t first = put(1000, "info", "before", "{}");

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert_set(&t, 2000, "warn", "agent.job.requeued", f, 0), 0);
    ck_assert_int_eq(store->events->insert_set(&t, 2000, "warn", "agent.job.requeued", f, 3), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    list((struct event_query){.after = first}, &s);
    ck_assert_int_eq(s.n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_gt(s.id[i], i ? s.id[i - 1] : first);
        ck_assert_int_eq(s.time[i], 2000);
        ck_assert_str_eq(s.level[i], "warn");
        ck_assert_str_eq(s.name[i], "agent.job.requeued");
        ck_assert_str_eq(s.fields[i], f[i]);
    }
}
END_TEST

/* Rows come back as inserted, in id order after an id, and newest first
 * when asked; ids increase. */
START_TEST(insert_then_list_in_id_order)
{
    int64_t id[4];
    struct seen s = {0};

    id[0] = put(1000, "info", "agent.job.enqueued", "{\"jobId\":\"1\"}");
    id[1] = put(1001, "warn", "agent.job.failed", "{\"jobId\":\"1\",\"attempt\":2}");
    id[2] = put(1002, "error", "whatsapp.lease.lost", "{}");
    id[3] = put(1003, "debug", "server.started", "{\"port\":3210}");
    for (int i = 1; i < 4; i++)
        ck_assert_int_gt(id[i], id[i - 1]);

    list((struct event_query){.after = 0}, &s);
    ck_assert_int_eq(s.n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(s.id[i], id[i]);
    ck_assert_str_eq(s.name[1], "agent.job.failed");
    ck_assert_str_eq(s.level[1], "warn");
    ck_assert_int_eq(s.time[1], 1001);
    ck_assert_str_eq(s.fields[1], "{\"jobId\":\"1\",\"attempt\":2}");

    list((struct event_query){.after = id[1]}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.id[0], id[2]);
    ck_assert_int_eq(s.id[1], id[3]);

    list((struct event_query){.before = id[2]}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.id[1], id[1]);

    list((struct event_query){.newest_first = true}, &s);
    ck_assert_int_eq(s.n, 4);
    ck_assert_int_eq(s.id[0], id[3]);
    ck_assert_int_eq(s.id[3], id[0]);
}
END_TEST

/* An event inserted in a write that is rolled back is not listed, and
 * the newest id is that of the newest committed event (0 with none). */
START_TEST(last_id_and_rollback)
{
    struct event_row e = {.time = 5, .level = "info", .name = "gone.event", .fields = "{}"};
    struct seen s = {0};
    struct tx t;
    int64_t id, last = -1;

    st_read(&t);
    ck_assert_int_eq(store->events->last_id(&t, &last), 0);
    tx_read_end(&t);
    ck_assert_int_eq(last, 0);

    id = put(1, "info", "kept.event", "{}");
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert(&t, &e, NULL), 0);
    st_rollback(&t);

    list((struct event_query){.after = 0}, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.name[0], "kept.event");
    st_read(&t);
    ck_assert_int_eq(store->events->last_id(&t, &last), 0);
    tx_read_end(&t);
    ck_assert_int_eq(last, id);
    id = put(2, "info", "kept.event", "{}");
    st_read(&t);
    ck_assert_int_eq(store->events->last_id(&t, &last), 0);
    tx_read_end(&t);
    ck_assert_int_eq(last, id);
}
END_TEST

/* By exact name only that name; by the range of a prefix ("a.b." up to
 * "a.b/") every name under it and nothing beside it. */
START_TEST(list_by_name_and_prefix_range)
{
    struct seen s = {0};

    put(1, "info", "whatsapp.lease.acquired", "{}");
    put(2, "info", "whatsapp.lease", "{}");
    put(3, "info", "whatsapp.leases.other", "{}");
    put(4, "info", "whatsapp.session.saved", "{}");
    put(5, "info", "whatsapp.lease.lost", "{}");
    put(6, "info", "whatsapp.lease.acquired", "{}");

    list((struct event_query){.exact = "whatsapp.lease.acquired"}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 1);
    ck_assert_int_eq(s.time[1], 6);

    list((struct event_query){.exact = "whatsapp.lease"}, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.time[0], 2);

    list((struct event_query){.lo = "whatsapp.lease.", .hi = "whatsapp.lease/"}, &s);
    ck_assert_int_eq(s.n, 3);
    ck_assert_str_eq(s.name[0], "whatsapp.lease.acquired");
    ck_assert_str_eq(s.name[1], "whatsapp.lease.lost");
    ck_assert_int_eq(s.time[2], 6);

    list((struct event_query){.lo = "whatsapp.lease.", .hi = "whatsapp.lease/", .newest_first = true,
                                  .limit = 2}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 6);
    ck_assert_int_eq(s.time[1], 5);
}
END_TEST

/* At most limit rows: the first ones in id order, the newest ones newest
 * first; a visitor that stops ends the listing. */
START_TEST(list_limit_and_stop)
{
    struct seen s = {0};
    int64_t id[5];

    for (int i = 0; i < 5; i++)
        id[i] = put(i, "info", "agent.job.claimed", "{}");
    list((struct event_query){.limit = 2}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.id[0], id[0]);
    ck_assert_int_eq(s.id[1], id[1]);
    list((struct event_query){.after = id[1], .limit = 2}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.id[0], id[2]);
    list((struct event_query){.limit = 3, .newest_first = true}, &s);
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(s.id[0], id[4]);
    ck_assert_int_eq(s.id[2], id[2]);

    s.stop_after = 1;
    list((struct event_query){.after = 0}, &s);
    ck_assert_int_eq(s.n, 1);
}
END_TEST

/* A time range is inclusive at both ends; field filters compare the
 * field as text (a number by its digits, true as "1") and all must match. */
START_TEST(list_by_time_and_fields)
{
    struct seen s = {0};
    struct event_field f[3];

    put(100, "info", "agent.job.claimed", "{\"jobId\":\"7\",\"attempt\":1,\"final\":true}");
    put(200, "info", "agent.job.claimed", "{\"jobId\":\"8\",\"attempt\":2,\"final\":false}");
    put(300, "info", "agent.job.failed", "{\"jobId\":\"7\",\"attempt\":2,\"final\":true}");
    put(400, "info", "agent.job.claimed", "{\"jobId\":\"9\"}");

    list((struct event_query){.since = 200, .until = 300, .limit = 100, .newest_first = true}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 300);
    ck_assert_int_eq(s.time[1], 200);
    list((struct event_query){.since = 250, .newest_first = true}, &s);     /* no upper bound */
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 400);
    ck_assert_int_eq(s.time[1], 300);
    list((struct event_query){.since = 100, .until = 200}, &s);             /* oldest first */
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 100);

    f[0] = (struct event_field){"jobId", "7"};
    list((struct event_query){.fields = f, .nfields = 1, .newest_first = true}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.time[0], 300);
    ck_assert_int_eq(s.time[1], 100);

    f[1] = (struct event_field){"attempt", "2"};
    list((struct event_query){.fields = f, .nfields = 2, .newest_first = true}, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.time[0], 300);

    f[0] = (struct event_field){"final", "1"};
    f[1] = (struct event_field){"attempt", "1"};
    list((struct event_query){.fields = f, .nfields = 2}, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.time[0], 100);

    f[0] = (struct event_field){"jobId", "9"};
    list((struct event_query){.exact = "agent.job.claimed", .since = 150, .until = INT64_MAX, .fields = f,
                               .nfields = 1, .limit = 100}, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.time[0], 400);
}
END_TEST

/* Prune deletes only events older than the bound, at most max per call,
 * oldest first, and `more` says whether old ones remain. */
START_TEST(prune_old_in_bounded_chunks)
{
    struct seen s = {0};
    struct tx t;
    int64_t deleted;
    bool more;
    int64_t want[][2] = {{2, true}, {2, true}, {1, false}, {0, false}};

    for (int i = 0; i < 5; i++)
        put(1000 + i, "info", "old.event", "{}");
    put(5000, "info", "new.event", "{}");
    put(5001, "info", "new.event", "{}");
    for (int round = 0; round < 4; round++) {
        st_begin(st_conn, &t);
        ck_assert_int_eq(store->events->prune(&t, 5000, 2, &deleted, &more), 0);
        ck_assert_int_eq(st_commit(&t), 0);
        ck_assert_msg(deleted == want[round][0] && more == (bool)want[round][1],
                      "round %d: deleted %lld more %d", round, (long long)deleted, more);
        list((struct event_query){.exact = "old.event"}, &s);
        ck_assert_int_eq(s.n, round < 2 ? 3 - 2 * round : 0);
        if (s.n)            /* the oldest went first */
            ck_assert_int_eq(s.time[0], 1000 + 2 * (round + 1));
    }
    list((struct event_query){.after = 0}, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.name[0], "new.event");

    /* exactly max old ones: all go, and none remain */
    put(10, "info", "old.event", "{}");
    put(11, "info", "old.event", "{}");
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->prune(&t, 5000, 2, &deleted, &more), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(deleted, 2);
    ck_assert(!more);
}
END_TEST

/* The health check answers on a read; an empty database remembers no
 * message ids but takes room. */
START_TEST(stats_on_empty_store)
{
    struct tx t;
    int64_t n = -1, db = -1, wal = -1;

    st_read(&t);
    ck_assert_int_eq(store->stats->ping(&t), 0);
    ck_assert_int_eq(store->stats->dedupe_entries(&t, &n), 0);
    ck_assert_int_eq(store->stats->sizes(&t, &db, &wal), 0);
    tx_read_end(&t);
    ck_assert_int_eq(n, 0);
    ck_assert_int_gt(db, 0);
    ck_assert_int_ge(wal, 0);
}
END_TEST

/* What the gauges reported, copied out of their callbacks. */
struct gauges {
    int64_t q1_pending, q1_processing, q2_pending, other, q1_stale, stale_other;
    int leases;
    struct lease_gauge wa, tg;
    char wa_owner[16], tg_owner[16];
};

static void
count_fn(const struct queue_count *q, void *arg)
{
    struct gauges *g = arg;

    if (!strcmp(q->queue, "q1") && !strcmp(q->status, "pending"))
        g->q1_pending += q->count;
    else if (!strcmp(q->queue, "q1") && !strcmp(q->status, "processing"))
        g->q1_processing += q->count;
    else if (!strcmp(q->queue, "q2") && !strcmp(q->status, "pending"))
        g->q2_pending += q->count;
    else
        g->other += q->count;
}

static void
stale_fn(const struct queue_count *q, void *arg)
{
    struct gauges *g = arg;

    ck_assert_str_eq(q->status, "processing");
    if (!strcmp(q->queue, "q1"))
        g->q1_stale += q->count;
    else
        g->stale_other += q->count;
}

static void
lease_fn(const struct lease_gauge *l, void *arg)
{
    struct gauges *g = arg;

    g->leases++;
    if (!strcmp(l->channel, "whatsapp") && !strcmp(l->account, "acc1")) {
        g->wa = *l;
        snprintf(g->wa_owner, sizeof g->wa_owner, "%s", l->owner);
    } else if (!strcmp(l->channel, "telegram") && !strcmp(l->account, "bot")) {
        g->tg = *l;
        snprintf(g->tg_owner, sizeof g->tg_owner, "%s", l->owner);
    }
}

/* The gauges of /metrics: jobs by queue and status, the processing ones
 * whose lock has expired, every lease (held or not, with its token) and
 * the message ids remembered, as the other resources wrote them. */
START_TEST(gauges_count_jobs_leases_and_dedupe)
{
    struct job_new n = {.queue = "q1", .payload = "{}", .max_attempts = 3};
    struct dedupe_result d;
    struct lease l;
    struct gauges g = {0};
    struct tx t;
    int64_t id, entries = -1;

    st_begin(st_conn, &t);
    n.run_at = t.now;
    ck_assert_int_eq(store->jobs->insert(&t, &n, &id, NULL), 0);
    ck_assert_int_eq(store->jobs->insert(&t, &n, &id, NULL), 0);
    n.queue = "q2";
    ck_assert_int_eq(store->jobs->insert(&t, &n, &id, NULL), 0);
    /* claimed with a lock that has already expired: stale */
    ck_assert_int_eq(store->jobs->claim(&t, "q1", "w1", t.now - 1, "c_stale", NULL, NULL), 1);
    ck_assert_int_eq(store->leases->grant(&t, "whatsapp", "acc1", "w1", 60000, &l), 1);
    ck_assert_int_eq(store->leases->grant(&t, "telegram", "bot", "w2", 60000, &l), 1);
    ck_assert_int_eq(store->leases->release(&t, "telegram", "bot", "w2", l.token, &l), 1);
    ck_assert_int_eq(store->dedupe->check_register(&t, "telegram", "1:1", 60000, &d), 0);
    ck_assert_int_eq(store->dedupe->check_register(&t, "telegram", "1:2", 60000, &d), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(store->stats->queue_counts(&t, count_fn, &g), 0);
    ck_assert_int_eq(store->stats->stale_counts(&t, stale_fn, &g), 0);
    ck_assert_int_eq(store->stats->lease_gauges(&t, lease_fn, &g), 0);
    ck_assert_int_eq(store->stats->dedupe_entries(&t, &entries), 0);
    tx_read_end(&t);
    ck_assert_int_eq(g.q1_pending, 1);
    ck_assert_int_eq(g.q1_processing, 1);
    ck_assert_int_eq(g.q2_pending, 1);
    ck_assert_int_eq(g.other, 0);
    ck_assert_int_eq(g.q1_stale, 1);
    ck_assert_int_eq(g.stale_other, 0);
    ck_assert_int_eq(g.leases, 2);
    ck_assert_str_eq(g.wa_owner, "w1");
    ck_assert(g.wa.held);
    ck_assert_int_eq(g.wa.token, 1);
    ck_assert_int_eq(g.wa.transitions, 1);
    ck_assert_str_eq(g.tg_owner, "");
    ck_assert(!g.tg.held);
    ck_assert_int_eq(g.tg.token, 1);
    ck_assert_int_eq(entries, 2);
}
END_TEST

/* Insert the event of arg (a struct event_row; its id gets the new id). */
static int
insert_op(struct tx *t, void *arg)
{
    struct event_row *e = arg;

    return store->events->insert(t, e, &e->id);
}

/* Whether id is among the rows of s. */
static bool
seen_id(const struct seen *s, int64_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->id[i] == id)
            return true;
    return false;
}

/* A reader following the events with an after-cursor never loses one for
 * good: while a write holding an event is open, another connection writes
 * and commits an event; a listing taken then and one after the first
 * write commits, from the highest id the first listing saw, see both
 * events between them. (With several writers, a lower id committed after
 * a higher one was listed would be skipped.) */
START_TEST(cursor_never_skips_a_late_commit)
{
    struct event_row early = {.time = 1, .level = "info", .name = "late.low", .fields = "{}"};
    struct event_row late = {.time = 2, .level = "info", .name = "late.high", .fields = "{}"};
    struct seen s1 = {0}, s2 = {0};
    struct st_async *a;
    struct tx t;
    int64_t cursor = 0;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert(&t, &early, &early.id), 0);
    a = st_async_start(insert_op, &late);
    st_async_done(a, 500);              /* committed, or waiting for this write */
    list((struct event_query){.after = 0}, &s1);
    for (int i = 0; i < s1.n; i++)
        if (s1.id[i] > cursor)
            cursor = s1.id[i];
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(st_async_join(a), 0);
    list((struct event_query){.after = cursor}, &s2);
    ck_assert_msg(seen_id(&s1, early.id) || seen_id(&s2, early.id),
                  "event %lld skipped: listed up to %lld before it was committed",
                  (long long)early.id, (long long)cursor);
    ck_assert(seen_id(&s1, late.id) || seen_id(&s2, late.id));
    ck_assert_int_eq(s1.n + s2.n, 2);
}
END_TEST

void
store_cases_events(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("events");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, insert_then_list_in_id_order);
    tcase_add_test(tc, insert_set_keeps_order_and_bytes);
    tcase_add_test(tc, last_id_and_rollback);
    tcase_add_test(tc, list_by_name_and_prefix_range);
    tcase_add_test(tc, list_limit_and_stop);
    tcase_add_test(tc, list_by_time_and_fields);
    tcase_add_test(tc, prune_old_in_bounded_chunks);
    tcase_add_test(tc, stats_on_empty_store);
    tcase_add_test(tc, gauges_count_jobs_leases_and_dedupe);
    tcase_add_test(tc, cursor_never_skips_a_late_commit);
    suite_add_tcase(s, tc);
}
