/* check_store_pg.c -- cases of the store_pg suite that only make sense on
 * PostgreSQL: replicas migrating one database at the same time, a
 * database newer than the binary, a failed statement inside the writer's
 * savepoint, and how failures are classified (a lost connection, a
 * deadlock, a plain error); then the writer on it: batches that lose a
 * conflict run again, a lost connection is replaced, batond starts while
 * the database is down and carries on once it is back. They use the
 * backend's own helpers (server/store_pg.h) on scratch tables of the
 * test's schema. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_store.h"
#include "harness.h"
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
    /* and no connection is handed out on it */
    ck_assert_int_eq(store->connect(&st_conn, why, sizeof why), -1);
    ck_assert_ptr_null(st_conn);
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

/* ---- the writer on PostgreSQL ------------------------------------------------ */

/* Run sql on a connection of its own to url; fails the test on error. */
static void
direct_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);

    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s",
                  sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static void
wsetup(void)
{
    char why[256];
    char *argv[] = {"test", NULL};

    ck_assert_int_eq(config_load(&cfg, 1, argv, why, sizeof why), 0);
    free(cfg.db_path);
    cfg.db_path = strdup(pg_test_url());
    cfg.sweep_interval_ms = 3600000;
    log_stream = fopen("/dev/null", "w");
    ck_assert_int_eq(store_select(why, sizeof why), 0);
}

/* The server is running again whatever the test did to it. */
static void
wteardown(void)
{
    if (pg_test_owned() && pg_test_ctl("status") != 0)
        ck_assert_int_eq(pg_test_ctl("start"), 0);
}

static void
core_start(void)
{
    char why[256];

    ck_assert_msg(store->open(why, sizeof why) == 0, "%s", why);
    ck_assert_msg(writer_start(why, sizeof why) == 0, "%s", why);
}

static void
core_stop(void)
{
    writer_stop();
    store->close();
}

static int runs;                    /* of the write functions below (writer thread) */
static int conflicts;               /* conflict_then_insert loses this many first */

/* Loses a serialization conflict on its first `conflicts` runs, then
 * inserts a row into scratch. */
static int
conflict_then_insert(struct tx *t, struct wreq *w)
{
    PGresult *r;

    (void)w;
    if (++runs <= conflicts)
        r = pg_exec(t, "DO $$BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = 'serialization_failure'; END$$",
                    0, NULL);
    else
        r = pg_exec(t, "INSERT INTO scratch VALUES (1)", 0, NULL);
    PQclear(r);
    return r ? 0 : -1;
}

static int
insert_row(struct tx *t, struct wreq *w)
{
    PGresult *r = pg_exec(t, "INSERT INTO scratch VALUES (2)", 0, NULL);

    (void)w;
    runs++;
    PQclear(r);
    return r ? 0 : -1;
}

/* The server ends the writer's connection in the middle of the write. */
static int
kill_own_connection(struct tx *t, struct wreq *w)
{
    PGresult *r = pg_exec(t, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL);

    (void)w;
    PQclear(r);
    return r ? 0 : -1;
}

static int
select_one(struct tx *t, struct wreq *w)
{
    PGresult *r = pg_exec(t, "SELECT 1", 0, NULL);

    (void)w;
    PQclear(r);
    return r ? 0 : -1;
}

/* Run fn as one write until it succeeds or timeout_ms pass; its last
 * result. */
static int
write_until_ok(int (*fn)(struct tx *, struct wreq *), int timeout_ms)
{
    for (int waited = 0;; waited += 50) {
        struct wreq w = {.fn = fn};
        int rc = writer_run(&w);

        json_decref(w.err.details);
        if (rc == 0 || waited >= timeout_ms)
            return rc;
        usleep(50 * 1000);
    }
}

/* A batch that loses a conflict with another writer kept nothing: the
 * writer runs it again, and the write succeeds once, unseen by its
 * client. */
START_TEST(writer_retries_lost_conflicts)
{
    struct wreq w = {.fn = conflict_then_insert};

    core_start();
    direct_exec(cfg.db_path, "CREATE TABLE scratch (v INTEGER)");
    runs = 0;
    conflicts = 2;
    ck_assert_int_eq(writer_run(&w), 0);
    ck_assert(!w.failed);
    ck_assert_int_eq(runs, 3);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM scratch"), 1);
    core_stop();
}
END_TEST

/* ... but not forever: after 5 runs the write is answered unavailable
 * (503) and nothing of it is kept. */
START_TEST(writer_gives_up_after_five_conflicts)
{
    struct wreq w = {.fn = conflict_then_insert};

    core_start();
    direct_exec(cfg.db_path, "CREATE TABLE scratch (v INTEGER)");
    runs = 0;
    conflicts = 1000;
    ck_assert_int_eq(writer_run(&w), -1);
    ck_assert(w.failed);
    ck_assert_str_eq(w.err.code, "unavailable");
    ck_assert_int_eq(runs, 5);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM scratch"), 0);
    json_decref(w.err.details);
    core_stop();
}
END_TEST

/* A connection lost mid-batch fails that batch (unavailable, nothing
 * kept) and is replaced: later writes succeed. */
START_TEST(writer_replaces_a_lost_connection)
{
    struct wreq w = {.fn = kill_own_connection};

    core_start();
    direct_exec(cfg.db_path, "CREATE TABLE scratch (v INTEGER)");
    ck_assert_int_eq(writer_run(&w), -1);
    ck_assert(w.failed);
    ck_assert_str_eq(w.err.code, "unavailable");
    json_decref(w.err.details);
    runs = 0;
    ck_assert_int_eq(write_until_ok(insert_row, 10000), 0);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM scratch"), 1);
    core_stop();
}
END_TEST

/* The database is down when the store opens: open and the writer start
 * anyway, writes are unavailable, and once the database is back they
 * succeed and the migrations have been applied. The same after a crash of
 * the database under a running writer. */
START_TEST(writer_starts_while_database_down)
{
    struct wreq w = {.fn = select_one};
    int64_t known = 0;

    if (!pg_test_owned()) {
        fprintf(stderr, "skipped: BATON_TEST_PG_URL names a server this test may not stop\n");
        return;
    }
    while (pg_migrations[known].name)
        known++;
    ck_assert_int_eq(pg_test_ctl("stop -m immediate"), 0);
    core_start();
    ck_assert_int_eq(writer_run(&w), -1);
    ck_assert_str_eq(w.err.code, "unavailable");
    json_decref(w.err.details);
    ck_assert_int_eq(pg_test_ctl("start"), 0);
    ck_assert_int_eq(write_until_ok(select_one, 10000), 0);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM schema_migrations"), known);

    /* the database crashes and comes back under the running writer */
    direct_exec(cfg.db_path, "CREATE TABLE scratch (v INTEGER)");
    ck_assert_int_eq(pg_test_ctl("stop -m immediate"), 0);
    w = (struct wreq){.fn = insert_row};
    ck_assert_int_eq(writer_run(&w), -1);
    ck_assert_str_eq(w.err.code, "unavailable");
    json_decref(w.err.details);
    ck_assert_int_eq(pg_test_ctl("start"), 0);
    ck_assert_int_eq(write_until_ok(insert_row, 10000), 0);
    ck_assert_int_eq(direct_int(cfg.db_path, "SELECT count(*) FROM scratch"), 1);
    core_stop();
}
END_TEST

/* batond itself starts while its PostgreSQL is down, says so in its log
 * without the URL's password, answers /health and writes 503 ("db":
 * "down"), recovers by itself once PostgreSQL is back, and stops cleanly. */
START_TEST(batond_starts_while_database_down)
{
    struct server s = {0};
    char log[8192] = {0};
    const char *base = pg_test_base_url();
    FILE *f;
    size_t n;

    if (!pg_test_owned()) {
        fprintf(stderr, "skipped: BATON_TEST_PG_URL names a server this test may not stop\n");
        return;
    }
    /* the same server, a password the URL carries (trust ignores it) */
    ck_assert_ptr_nonnull(strstr(base, "baton@"));
    snprintf(s.db, sizeof s.db, "postgresql://baton:Pw-never-logged@%s", strstr(base, "baton@") + 6);
    ck_assert_int_eq(pg_test_ctl("stop -m immediate"), 0);
    server_start(&s, NULL);
    ck_assert_int_ge(server_log_count(&s, "db.unavailable"), 1);
    {
        json_t *h = CALL(&s, "GET", "/health", NULL, 503);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(h, "error"), "db")), "down");
        json_decref(h);
        json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:i}", "payload", 1), 503));
        ck_assert_int_eq(pg_test_ctl("start"), 0);
        /* the writer reconnects with backoff (at most 2 s between tries):
         * writes get 503 until it has, then succeed without a restart */
        for (int i = 0; i < 200; i++) {
            struct resp r = {0};
            int rc = http_req(&s, "POST", "/v1/jobs", "{\"payload\":1}", 13, NULL, NULL, &r);
            long st = r.status;
            resp_free(&r);
            if (rc == 0 && st == 201)
                break;
            ck_assert_msg(rc != 0 || st == 503, "an enqueue while reconnecting answered %ld", st);
            usleep(100000);
        }
        json_decref(CALL(&s, "GET", "/health", NULL, 200));
        json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:i}", "payload", 2), 201));
    }
    ck_assert_int_eq(server_stop(&s), 0);
    ck_assert_ptr_nonnull(f = fopen(s.log, "r"));
    n = fread(log, 1, sizeof log - 1, f);
    fclose(f);
    log[n] = 0;
    ck_assert_ptr_null(strstr(log, "Pw-never-logged"));
    ck_assert_ptr_nonnull(strstr(log, "127.0.0.1"));
    server_cleanup(&s);
}
END_TEST

/* What logs show of BATON_DB hides a password in every URL form. */
START_TEST(described_url_hides_password)
{
    static const char *const cases[][2] = {
        {"postgresql://baton:S3cret@127.0.0.1:5432/db?options=-cx&password=Zz9",
         "postgresql://baton:***@127.0.0.1:5432/db?options=-cx&password=***"},
        {"postgres://u@h/db?password=Pp1&sslmode=require", "postgres://u@h/db?password=***&sslmode=require"},
        {"postgres://h:5432/db", "postgres://h:5432/db"},
        {"postgresql://a:b@h", "postgresql://a:***@h"},
        {"./data/baton.db", "./data/baton.db"},
    };
    char out[256], *saved = cfg.db_path;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg.db_path = (char *)cases[i][0];
        store_describe(out, sizeof out);
        ck_assert_str_eq(out, cases[i][1]);
    }
    cfg.db_path = saved;
}
END_TEST

void
store_cases_pg(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *wc = tcase_create("writer_pg");

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

    tcase_add_checked_fixture(wc, wsetup, wteardown);
    tcase_set_timeout(wc, 90);
    tcase_add_test(wc, writer_retries_lost_conflicts);
    tcase_add_test(wc, writer_gives_up_after_five_conflicts);
    tcase_add_test(wc, writer_replaces_a_lost_connection);
    tcase_add_test(wc, writer_starts_while_database_down);
    tcase_add_test(wc, batond_starts_while_database_down);
    tcase_add_test(wc, described_url_hides_password);
    suite_add_tcase(s, wc);
}
