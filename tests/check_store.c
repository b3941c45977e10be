/* check_store.c -- the store conformance suite (see check_store.h): the
 * fixture, the backend's own cases (transactions, savepoints, reopening,
 * migrations applied once), and every resource's cases. Written against
 * store.h only: a second backend runs the same suite by selecting itself
 * in setup. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_store.h"
#include "harness.h"

struct sconn *st_conn;
static char dir[64];

static void
setup(void)
{
    char why[256];
    char *argv[] = {"test", NULL};
    char path[128];

    strcpy(dir, "/tmp/baton-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(config_load(&cfg, 1, argv, why, sizeof why), 0);
    snprintf(path, sizeof path, "%s/baton.db", dir);
    free(cfg.db_path);
    cfg.db_path = strdup(path);
    log_stream = fopen("/dev/null", "w");
    ck_assert_int_eq(store_select(why, sizeof why), 0);
    ck_assert_msg(store->open(why, sizeof why) == 0, "%s", why);
    st_conn = st_connect();
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

/* Opening an existing database applies nothing again and loses nothing. */
START_TEST(migrations_applied_once)
{
    for (int i = 0; i < 3; i++)
        st_reopen();
}
END_TEST

Suite *
suite_store(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("backend");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, clock_is_the_stores);
    tcase_add_test(tc, migrations_applied_once);
    suite_add_tcase(s, tc);
    store_cases_jobs(s, setup, teardown);
    store_cases_leases(s, setup, teardown);
    store_cases_dedupe(s, setup, teardown);
    store_cases_sessions(s, setup, teardown);
    store_cases_messages(s, setup, teardown);
    store_cases_events(s, setup, teardown);
    return s;
}
