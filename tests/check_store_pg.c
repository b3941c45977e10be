/* check_store_pg.c -- cases of the store_pg suite that only make sense on
 * PostgreSQL: replicas migrating one database at the same time, a
 * database newer than the binary, a failed statement inside the writer's
 * savepoint, and how failures are classified (a lost connection, a
 * deadlock, a plain error). They use the backend's own helpers
 * (server/store_pg.h) on scratch tables of the test's schema. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check_store.h"
#include "pg.h"
#include "store_pg.h"

/* Run sql (no parameters) in a write transaction of its own on c. */
static void
exec_tx(struct sconn *c, const char *sql)
{
    struct tx t;
    PGresult *r;

    st_begin(c, &t);
    r = pg_exec(&t, sql, 0, NULL);
    ck_assert_msg(r != NULL, "%s: %s", sql, t.err.msg);
    PQclear(r);
    ck_assert_int_eq(st_commit(&t), 0);
}

/* The single integer sql answers on a connection of its own to url. */
static int64_t
direct_int(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    int64_t v;

    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQresultErrorMessage(r));
    v = pg_int(r, 0, 0, -1);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Replicas starting together on one new database: each open succeeds and
 * every migration is applied (and recorded) exactly once. Without the
 * migration lock two of them create the same tables and one fails. */
static void *
open_main(void *arg)
{
    char why[256];

    *(int *)arg = store->open(why, sizeof why);
    return NULL;
}

START_TEST(concurrent_opens_migrate_once)
{
    int64_t known = 0;
    pthread_t th[6];
    int rc[6];

    while (pg_migrations[known].name)
        known++;
    free(cfg.db_path);
    cfg.db_path = strdup(pg_test_url());    /* a schema nobody opened yet */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, open_main, &rc[i]), 0);
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(rc[i], 0);
    }
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM schema_migrations"), known);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(DISTINCT version) FROM schema_migrations"), known);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT max(version) FROM schema_migrations"), known);
}
END_TEST

/* A database that records a migration this batond does not have is
 * refused (-3) and left as it is. */
START_TEST(newer_database_refused)
{
    char why[256];

    exec_tx(st_conn, "INSERT INTO schema_migrations(version, name, applied_at) "
                     "VALUES(999, '999_future.sql', 0)");
    store->disconnect(st_conn);
    st_conn = NULL;
    store->close();
    ck_assert_int_eq(store->open(why, sizeof why), -3);
    ck_assert_ptr_nonnull(strstr(why, "999"));
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM schema_migrations WHERE version = 999"), 1);
    st_conn = st_connect();
}
END_TEST

/* The writer runs each write in a savepoint: a statement that fails there
 * leaves the transaction usable once rolled back to it (aborted says no),
 * and the commit keeps the other writes. */
START_TEST(failed_statement_in_savepoint_keeps_the_batch)
{
    struct tx t;
    PGresult *r;

    exec_tx(st_conn, "CREATE TABLE scratch (v INTEGER PRIMARY KEY)");
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->savepoint(st_conn), 0);
    r = pg_exec(&t, "INSERT INTO scratch VALUES (1)", 0, NULL);
    ck_assert_ptr_nonnull(r);
    PQclear(r);
    ck_assert_int_eq(store->release(st_conn), 0);
    ck_assert(!store->aborted(st_conn));

    ck_assert_int_eq(store->savepoint(st_conn), 0);
    r = pg_exec(&t, "INSERT INTO scratch VALUES (2)", 0, NULL);
    PQclear(r);
    ck_assert_ptr_null(pg_exec(&t, "INSERT INTO scratch VALUES (1)", 0, NULL));     /* duplicate */
    ck_assert_str_eq(t.err.code, "internal");
    ck_assert(!store->aborted(st_conn));
    ck_assert_int_eq(store->rollback_to(st_conn), 0);
    ck_assert_int_eq(store->release(st_conn), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM scratch"), 1);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT min(v) FROM scratch"), 1);
}
END_TEST

/* A write transaction's clock is the database's, one value for the whole
 * transaction even as the database's clock moves on. */
START_TEST(transaction_clock_is_fixed)
{
    struct tx t;
    PGresult *r;
    int64_t db_now;

    st_begin(st_conn, &t);
    r = pg_exec(&t, "SELECT pg_sleep(0.05)", 0, NULL);
    PQclear(r);
    ck_assert_int_eq(store->now(st_conn), t.now);
    st_rollback(&t);
    db_now = direct_int(cfg.db_path, "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint");
    ck_assert_int_ge(db_now, t.now + 50);
    ck_assert_int_lt(db_now, t.now + 30000);
}
END_TEST

/* A connection the server ends is "unavailable" and broken: nothing more
 * of the batch runs on it. */
START_TEST(lost_connection_is_unavailable)
{
    struct sconn *other = st_connect();
    struct tx t, k;
    PGresult *r;
    char pid[24], sql[96];

    st_begin(st_conn, &t);
    snprintf(pid, sizeof pid, "%d", PQbackendPID(PG(&t)));
    st_begin(other, &k);
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
    PQclear(PQexec(PG(&k), sql));
    st_rollback(&k);
    store->disconnect(other);

    r = pg_exec(&t, "SELECT 1", 0, NULL);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(t.err.code, "unavailable");
    ck_assert(st_conn->broken);
    ck_assert(store->aborted(st_conn));
    st_rollback(&t);
}
END_TEST

/* A deadlock between two writers: the one the server picks gets
 * "unavailable" with retry set (its batch may run again); the other
 * commits. */
struct lock_order {
    pthread_barrier_t *both_locked;
    const char *first, *second;
    int rc;
    bool retry;
};

static void *
locker(void *arg)
{
    struct lock_order *o = arg;
    struct sconn *c = st_connect();
    struct tx t;
    PGresult *r;

    st_begin(c, &t);
    r = pg_exec(&t, o->first, 0, NULL);
    PQclear(r);
    pthread_barrier_wait(o->both_locked);
    r = pg_exec(&t, o->second, 0, NULL);
    o->rc = r ? 0 : -1;
    o->retry = c->retry;
    PQclear(r);
    if (o->rc == 0)
        ck_assert_int_eq(st_commit(&t), 0);
    else {
        ck_assert_str_eq(t.err.code, "unavailable");
        ck_assert(store->aborted(c));
        st_rollback(&t);
    }
    store->disconnect(c);
    return NULL;
}

START_TEST(deadlock_is_retried)
{
    pthread_barrier_t b;
    pthread_t th[2];
    struct lock_order o[2] = {
        {&b, "UPDATE scratch SET v = v WHERE k = 1", "UPDATE scratch SET v = v WHERE k = 2", -2, false},
        {&b, "UPDATE scratch SET v = v WHERE k = 2", "UPDATE scratch SET v = v WHERE k = 1", -2, false},
    };

    exec_tx(st_conn, "CREATE TABLE scratch (k INTEGER PRIMARY KEY, v INTEGER)");
    exec_tx(st_conn, "INSERT INTO scratch VALUES (1, 0), (2, 0)");
    pthread_barrier_init(&b, NULL, 2);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, locker, &o[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&b);
    ck_assert_int_eq(o[0].rc + o[1].rc, -1);       /* exactly one lost */
    ck_assert(o[0].rc == 0 ? o[1].retry : o[0].retry);
}
END_TEST

void
store_cases_pg(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("postgres");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, concurrent_opens_migrate_once);
    tcase_add_test(tc, newer_database_refused);
    tcase_add_test(tc, failed_statement_in_savepoint_keeps_the_batch);
    tcase_add_test(tc, transaction_clock_is_fixed);
    tcase_add_test(tc, lost_connection_is_unavailable);
    tcase_add_test(tc, deadlock_is_retried);
    suite_add_tcase(s, tc);
}
