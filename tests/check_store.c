/* check_store.c -- the store conformance suite (see check_store.h): the
 * fixture, the backend's own cases (transactions, savepoints, reopening,
 * migrations applied once), and every resource's cases. Written against
 * store.h only: it runs twice, as suite "store" on SQLite (a temp dir per
 * test) and as suite "store_pg" on PostgreSQL (a fresh schema of the run's
 * throwaway server per test, tests/pg.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_store.h"
#include "harness.h"
#include "pg.h"

struct sconn *st_conn;
static char dir[64];

/* Open the store on db (a path or a URL) with the default config. */
static void
open_on(const char *db)
{
    char why[256];
    char *argv[] = {"test", NULL};

    ck_assert_int_eq(config_load(&cfg, 1, argv, why, sizeof why), 0);
    free(cfg.db_path);
    cfg.db_path = strdup(db);
    log_stream = fopen("/dev/null", "w");
    ck_assert_int_eq(store_select(why, sizeof why), 0);
    ck_assert_msg(store->open(why, sizeof why) == 0, "%s", why);
    st_conn = st_connect();
}

static void
setup(void)
{
    char path[128];

    strcpy(dir, "/tmp/baton-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/baton.db", dir);
    open_on(path);
    ck_assert_str_eq(store->name, "sqlite");
}

static void
teardown(void)
{
    char cmd[128];

    store->disconnect(st_conn);
    st_conn = NULL;
    store->close();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* PostgreSQL: a fresh schema of the run's server; left to die with it. */
static void
setup_pg(void)
{
    open_on(pg_test_url());
    ck_assert_str_eq(store->name, "postgres");
}

static void
teardown_pg(void)
{
    store->disconnect(st_conn);
    st_conn = NULL;
    store->close();
}

struct sconn *
st_connect(void)
{
    struct sconn *c = NULL;
    char why[256];

    ck_assert_msg(store->connect(&c, why, sizeof why) == 0, "%s", why);
    return c;
}

void
st_begin(struct sconn *c, struct tx *t)
{
    struct fault f = {0};

    memset(t, 0, sizeof *t);
    t->c = c;
    ck_assert_msg(store->begin(c, &f) == 0, "begin: %s", f.msg);
    t->now = store->now(c);
    t->events = json_array();
    t->notify = json_array();
    t->due = json_object();
}

static void
st_free(struct tx *t)
{
    json_decref(t->events);
    json_decref(t->notify);
    json_decref(t->due);
    tx_clear_fault(t);
}

int
st_commit(struct tx *t)
{
    struct fault f = {0};
    int rc = store->commit(t->c, &f);

    if (rc < 0)
        store->rollback(t->c);
    json_decref(f.details);
    st_free(t);
    return rc;
}

void
st_rollback(struct tx *t)
{
    store->rollback(t->c);
    st_free(t);
}

void
st_read(struct tx *t)
{
    ck_assert_int_eq(tx_read(t), 0);
}

void
st_reopen(void)
{
    char why[256];

    store->disconnect(st_conn);
    store->close();
    ck_assert_msg(store->open(why, sizeof why) == 0, "%s", why);
    st_conn = st_connect();
}

struct racer {
    pthread_barrier_t *start;
    int i, rc;
    int (*op)(struct tx *t, int i, void *arg);
    void *arg;
};

static void *
racer_main(void *p)
{
    struct racer *r = p;
    struct sconn *c = NULL;
    struct fault f = {0};
    struct tx t;
    char why[256];

    r->rc = -2;
    if (store->connect(&c, why, sizeof why) < 0) {
        pthread_barrier_wait(r->start);
        return NULL;
    }
    pthread_barrier_wait(r->start);
    if (store->begin(c, &f) == 0) {
        memset(&t, 0, sizeof t);
        t.c = c;
        t.now = store->now(c);
        r->rc = r->op(&t, r->i, r->arg);
        if (r->rc < 0)
            store->rollback(c);
        else if (store->commit(c, &f) < 0) {
            store->rollback(c);
            r->rc = -2;
        }
        tx_clear_fault(&t);
    }
    json_decref(f.details);
    store->disconnect(c);
    return NULL;
}

void
st_race(int n, int (*op)(struct tx *t, int i, void *arg), void *arg, int *rcs)
{
    pthread_t th[64];
    struct racer r[64];
    pthread_barrier_t start;

    ck_assert(n > 0 && n <= 64);
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        r[i] = (struct racer){&start, i, -2, op, arg};
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        rcs[i] = r[i].rc;
    }
    pthread_barrier_destroy(&start);
}

struct st_async {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    int (*op)(struct tx *t, void *arg);
    void *arg;
};

static void *
async_main(void *p)
{
    struct st_async *a = p;
    struct sconn *c = NULL;
    struct fault f = {0};
    struct tx t;
    char why[256];
    int rc = -2;

    if (store->connect(&c, why, sizeof why) == 0) {
        if (store->begin(c, &f) == 0) {
            memset(&t, 0, sizeof t);
            t.c = c;
            t.now = store->now(c);
            rc = a->op(&t, a->arg);
            if (rc < 0)
                store->rollback(c);
            else if (store->commit(c, &f) < 0) {
                store->rollback(c);
                rc = -2;
            }
            tx_clear_fault(&t);
        }
        json_decref(f.details);
        store->disconnect(c);
    }
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    a->done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

struct st_async *
st_async_start(int (*op)(struct tx *t, void *arg), void *arg)
{
    struct st_async *a = calloc(1, sizeof *a);

    ck_assert_ptr_nonnull(a);
    a->op = op;
    a->arg = arg;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    ck_assert_int_eq(pthread_create(&a->th, NULL, async_main, a), 0);
    return a;
}

bool
st_async_done(struct st_async *a, int ms)
{
    struct timespec until;
    bool done;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&a->mu);
    while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &until) == 0)
        ;
    done = a->done;
    pthread_mutex_unlock(&a->mu);
    return done;
}

int
st_async_join(struct st_async *a)
{
    int rc;

    pthread_join(a->th, NULL);
    rc = a->rc;
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    return rc;
}

/* ---- the backend itself ---------------------------------------------------- */

/* A savepoint rolled back undoes only its own writes; the transaction's
 * clock is the store's. */
START_TEST(clock_is_the_stores)
{
    struct tx t;
    int64_t before = now_ms();

    st_begin(st_conn, &t);
    ck_assert_int_ge(t.now, before - 1000);
    ck_assert_int_le(t.now, now_ms() + 1000);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* Opening an existing database applies nothing again and loses nothing:
 * a row written before three restarts is there, alone, after them, and
 * a write after them gets the next id. */
static int
count_row(const struct event_row *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

START_TEST(migrations_applied_once)
{
    struct event_row e = {.time = 1, .level = "info", .name = "test.kept", .fields = "{}"};
    struct event_query q = {.until = INT64_MAX, .limit = 100};
    struct tx t;
    int64_t id = 0, id2 = 0, last = 0;
    int rows = 0;

    if (!store->events->insert || !store->events->last_id || !store->events->list)
        ck_abort_msg("events operations not implemented on %s", store->name);

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert(&t, &e, &id), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    for (int i = 0; i < 3; i++)
        st_reopen();
    st_read(&t);
    ck_assert_int_eq(store->events->last_id(&t, &last), 0);
    ck_assert_int_eq(store->events->list(&t, &q, count_row, &rows), 0);
    tx_read_end(&t);
    ck_assert_int_eq(last, id);
    ck_assert_int_eq(rows, 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->events->insert(&t, &e, &id2), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_gt(id2, id);
}
END_TEST

/* A backend still being written may leave operations NULL: its cases
 * would crash on them. Instead the resource gets one case that fails,
 * saying so. */
static const char *missing[16];
static int nmissing;

START_TEST(not_implemented)
{
    ck_abort_msg("%s: operations not implemented on postgres", missing[_i]);
}
END_TEST

/* Whether every operation of a table (all function pointers) is set. */
static bool
complete(const void *ops, size_t size)
{
    const char *p = ops;

    for (size_t i = 0; i + sizeof(void (*)(void)) <= size; i += sizeof(void (*)(void))) {
        void (*fn)(void);

        memcpy(&fn, p + i, sizeof fn);
        if (!fn)
            return false;
    }
    return true;
}

/* Add a resource's cases, or (for an incomplete table) the failing one. */
static void
add_resource(Suite *s, const char *name, const void *ops, size_t size,
             void (*cases)(Suite *, void (*)(void), void (*)(void)),
             void (*set)(void), void (*tear)(void))
{
    TCase *tc;

    if (complete(ops, size) || nmissing == 16) {
        cases(s, set, tear);
        return;
    }
    missing[nmissing] = name;
    tc = tcase_create(name);
    tcase_add_loop_test(tc, not_implemented, nmissing, nmissing + 1);
    nmissing++;
    suite_add_tcase(s, tc);
}

#define RESOURCE(s, b, res, set, tear) \
    add_resource((s), #res, (b)->res, sizeof *(b)->res, store_cases_##res, (set), (tear))

static Suite *
store_suite(const char *name, const struct store_ops *b, void (*set)(void), void (*tear)(void))
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create("backend");

    tcase_add_checked_fixture(tc, set, tear);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, clock_is_the_stores);
    tcase_add_test(tc, migrations_applied_once);
    suite_add_tcase(s, tc);
    RESOURCE(s, b, jobs, set, tear);
    RESOURCE(s, b, leases, set, tear);
    RESOURCE(s, b, dedupe, set, tear);
    RESOURCE(s, b, sessions, set, tear);
    RESOURCE(s, b, messages, set, tear);
    RESOURCE(s, b, events, set, tear);
    RESOURCE(s, b, queues, set, tear);
    RESOURCE(s, b, schedules, set, tear);
    return s;
}

Suite *
suite_store(void)
{
    return store_suite("store", &store_sqlite, setup, teardown);
}

/* The same cases on PostgreSQL. */
Suite *
suite_store_pg(void)
{
    Suite *s = store_suite("store_pg", &store_pg, setup_pg, teardown_pg);

    store_cases_pg(s, setup_pg, teardown_pg);
    return s;
}
