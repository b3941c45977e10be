/* check_db.c -- migrations and the write path (savepoints, commit, waiters)
 * on a fresh database in a temporary directory per test. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batond.h"
#include "store_sqlite.h"
#include "harness.h"

static char dir[64];
static char why_buf[512];

/* The waiter tests' items, put and not yet taken: a counter rather than
 * rows, so that these tests of the writer use no table of the store. Only
 * write functions touch it, and the writer runs them on its thread one
 * after another, so it needs no lock. (It is not rolled back with a
 * failed commit; no commit fails in these tests.) */
static int items;

/* The layers below the API as batond runs them: the store, the in-process
 * notifier delivering wake-ups to the writer, and the writer. */
static void
deliver(const char *topic, int64_t due)
{
    if (strcmp(topic, TOPIC_EVENTS))
        writer_wake(topic, due);
}

static int
core_start(void)
{
    char why[256];

    if (store->open(why, sizeof why) < 0 || notifier->start(deliver, why, sizeof why) < 0 ||
        writer_start(why, sizeof why) < 0) {
        fprintf(stderr, "core_start: %s\n", why);
        return -1;
    }
    return 0;
}

static void
core_stop(void)
{
    writer_stop();
    notifier->stop();
    store->close();
}

static void
setup(void)
{
    char why[256];
    char *argv[] = {"test", NULL};
    char path[128];

    items = 0;
    strcpy(dir, "/tmp/baton-db-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(config_load(&cfg, 1, argv, why, sizeof why), 0);
    snprintf(path, sizeof path, "%s/baton.db", dir);
    free(cfg.db_path);
    cfg.db_path = strdup(path);
    cfg.sweep_interval_ms = 3600000;
    log_stream = fopen("/dev/null", "w");
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static int
user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;

    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static bool
has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    bool yes;

    sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", -1, &st, NULL);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

START_TEST(migrations_apply_once)
{
    sqlite3 *db;
    char why[256], got[1024], want[1024];
    int n = 0;

    while (migrations[n].name)
        n++;
    ck_assert_int_eq(db_open(cfg.db_path, true, &db, why, sizeof why), 0);
    ck_assert_int_eq(db_migrate(db, migrations, why, sizeof why), 0);
    ck_assert_int_eq(user_version(db), n);
    ck_assert(has_table(db, "events"));
    /* every migration is recorded, by version and file name */
    db_recorded(cfg.db_path, got, sizeof got);
    db_known(-1, want, sizeof want);
    ck_assert_str_eq(got, want);
    /* again: nothing to do, nothing fails (CREATE TABLE would), no row is
     * written again */
    db_exec(cfg.db_path, "UPDATE schema_migrations SET applied_at = 1");
    ck_assert_int_eq(db_migrate(db, migrations, why, sizeof why), 0);
    ck_assert_int_eq(user_version(db), n);
    ck_assert_int_eq(db_int(cfg.db_path, "SELECT count(*) FROM schema_migrations WHERE applied_at = 1"), n);
    ck_assert_int_eq(db_int(cfg.db_path, "SELECT count(*) FROM schema_migrations"), n);
    sqlite3_close(db);
}
END_TEST

START_TEST(failed_migration_changes_nothing)
{
    static const struct migration bad[] = {
        {"001_ok.sql", "CREATE TABLE one(a);"},
        {"002_broken.sql", "CREATE TABLE two(a); INSERT INTO one VALUES(1); SELECT nope FROM nowhere;"},
        {NULL, NULL},
    };
    sqlite3 *db;
    char why[256];

    ck_assert_int_eq(db_open(cfg.db_path, true, &db, why, sizeof why), 0);
    ck_assert_int_eq(db_migrate(db, bad, why, sizeof why), -1);
    ck_assert_ptr_nonnull(strstr(why, "002_broken.sql"));
    ck_assert_int_eq(user_version(db), 1);
    ck_assert(has_table(db, "one"));
    ck_assert(!has_table(db, "two"));
    {
        char got[256];
        db_recorded(cfg.db_path, got, sizeof got);
        ck_assert_str_eq(got, "1:001_ok.sql");     /* the failed one is not recorded */
    }
    {
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT count(*) FROM one", -1, &st, NULL);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_int_eq(sqlite3_column_int(st, 0), 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}
END_TEST

/* ---- the writer ----------------------------------------------------------- */

static int64_t
count_events(const char *name)
{
    sqlite3 *db = store->reader()->db;
    sqlite3_stmt *st = db_prep(db, "SELECT count(*) FROM events WHERE event = ?");
    int64_t n;

    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

static int
emit_ok(struct tx *t, struct req *r)
{
    event_emit(t, "info", "test.ok", json_pack("{s:s}", "who", "emit_ok"));
    return req_ok(r, 200, NULL);
}

static int
emit_then_fail(struct tx *t, struct req *r)
{
    event_emit(t, "info", "test.fail", NULL);
    return req_fail(r, "conflict", NULL, "refused on purpose");
}

/* Lines of the log file at path containing needle. */
static int
lines_with(const char *path, const char *needle)
{
    char line[4096];
    int c = 0;
    FILE *f = fopen(path, "r");

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        c += strstr(line, needle) != NULL;
    fclose(f);
    return c;
}

/* A database made before schema_migrations existed (a count in
 * user_version) is upgraded in place: the counted versions are adopted once,
 * the rest applied; a second run adopts nothing. For k = all (today's
 * databases) and k = all but one (a database one migration behind). The
 * file and its row are made with SQL: that old file is the point. */
START_TEST(counted_database_adopted_once)
{
    int n = db_known_count();

    for (int k = n - 1; k <= n; k++) {
        char path[160], logp[160], got[1024], want[1024], adopted[64];
        sqlite3 *db;
        FILE *saved = log_stream;

        snprintf(path, sizeof path, "%s/counted-%d.db", dir, k);
        snprintf(logp, sizeof logp, "%s/counted-%d.log", dir, k);
        db_make_counted(path, k);
        db_exec(path, "INSERT INTO events(time, level, event, fields) VALUES(1, 'info', 'kept.row', '{}')");
        ck_assert_str_eq((db_recorded(path, got, sizeof got), got), "(no table)");

        log_stream = fopen(logp, "w");
        ck_assert_int_eq(db_open(path, true, &db, why_buf, sizeof why_buf), 0);
        ck_assert_msg(db_migrate(db, migrations, why_buf, sizeof why_buf) == 0, "%s", why_buf);
        fflush(log_stream);
        db_recorded(path, got, sizeof got);
        db_known(-1, want, sizeof want);
        ck_assert_str_eq(got, want);
        ck_assert_int_eq(user_version(db), n);
        snprintf(adopted, sizeof adopted, "\"versions\":%d", k);
        ck_assert_int_eq(lines_with(logp, "\"event\":\"db.migrations_adopted\""), 1);
        ck_assert_int_eq(lines_with(logp, adopted), 1);
        ck_assert_int_eq(db_int(path, "SELECT count(*) FROM events WHERE event = 'kept.row'"), 1);
        /* the second start: nothing adopted, nothing applied */
        ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), 0);
        fflush(log_stream);
        ck_assert_int_eq(lines_with(logp, "db.migrations_adopted"), 1);
        ck_assert_int_eq(db_int(path, "SELECT count(*) FROM schema_migrations"), n);
        sqlite3_close(db);
        fclose(log_stream);
        log_stream = saved;
    }
}
END_TEST

/* Tables of the database, to see that a refusal changed nothing. */
static long long
schema_rows(const char *path)
{
    return db_int(path, "SELECT count(*) FROM sqlite_master");
}

/* A database holding a migration this binary does not have -- a newer
 * version recorded in the table, a counted version beyond ours, or another
 * file under one of our numbers -- is refused with -2 and left as it is. */
START_TEST(newer_database_refused)
{
    int n = db_known_count();
    char path[160], sql[256];
    sqlite3 *db;
    long long tables;

    /* a row newer than this binary */
    snprintf(path, sizeof path, "%s/newer.db", dir);
    ck_assert_int_eq(db_open(path, true, &db, why_buf, sizeof why_buf), 0);
    ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), 0);
    snprintf(sql, sizeof sql, "INSERT INTO schema_migrations VALUES(%d, '%03d_future.sql', 1)", n + 1, n + 1);
    db_exec(path, sql);
    tables = schema_rows(path);
    ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), -2);
    ck_assert_msg(strstr(why_buf, "_future.sql") && strstr(why_buf, "newer"), "%s", why_buf);
    ck_assert_int_eq(schema_rows(path), tables);
    ck_assert_int_eq(db_int(path, "SELECT count(*) FROM schema_migrations"), n + 1);
    sqlite3_close(db);

    /* a count beyond ours, from before the table */
    snprintf(path, sizeof path, "%s/counted-newer.db", dir);
    db_make_counted(path, n);
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", n + 1);
    db_exec(path, sql);
    tables = schema_rows(path);
    ck_assert_int_eq(db_open(path, true, &db, why_buf, sizeof why_buf), 0);
    ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), -2);
    ck_assert_msg(strstr(why_buf, "newer"), "%s", why_buf);
    ck_assert_int_eq(schema_rows(path), tables);        /* no schema_migrations either */
    ck_assert_int_eq(user_version(db), n + 1);
    sqlite3_close(db);

    /* our version 2 under another name */
    snprintf(path, sizeof path, "%s/renamed.db", dir);
    ck_assert_int_eq(db_open(path, true, &db, why_buf, sizeof why_buf), 0);
    ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), 0);
    db_exec(path, "UPDATE schema_migrations SET name = '002_other.sql' WHERE version = 2");
    ck_assert_int_eq(db_migrate(db, migrations, why_buf, sizeof why_buf), -2);
    ck_assert_msg(strstr(why_buf, "002_other.sql") && strstr(why_buf, migrations[1].name), "%s", why_buf);
    sqlite3_close(db);
}
END_TEST

START_TEST(write_commits_and_failure_rolls_back)
{
    struct req *r = req_new_internal();

    ck_assert_int_eq(core_start(), 0);
    ck_assert_int_eq(req_write(r, emit_ok), 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(req_write(r, emit_then_fail), -1);
    ck_assert_int_eq(r->status, 409);
    ck_assert_str_eq(r->err_code, "conflict");
    ck_assert_int_eq(count_events("test.ok"), 1);
    ck_assert_int_eq(count_events("test.fail"), 0);
    req_free(r);
    core_stop();
}
END_TEST

static void *
writer_client(void *arg)
{
    intptr_t id = (intptr_t)arg;

    for (int i = 0; i < 50; i++) {
        struct req *r = req_new_internal();
        int rc = req_write(r, (i + id) % 5 == 0 ? emit_then_fail : emit_ok);
        ck_assert_int_eq(rc, (i + id) % 5 == 0 ? -1 : 0);
        req_free(r);
    }
    return NULL;
}

/* Concurrent writers share batches; a failing request rolls back alone. */
START_TEST(concurrent_writes_fail_alone)
{
    pthread_t th[8];

    ck_assert_int_eq(core_start(), 0);
    for (intptr_t i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, writer_client, (void *)i);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(count_events("test.ok"), 8 * 40);
    ck_assert_int_eq(count_events("test.fail"), 0);
    core_stop();
}
END_TEST

/* ---- waiters: park until notified, due, or the deadline ------------------- */

static int64_t wait_ms, due_ms;

static int
take_or_park(struct tx *t, struct req *r)
{
    if (items > 0) {
        items--;
        return req_ok(r, 200, NULL);
    }
    req_ok(r, 204, NULL);
    req_park(t, r, "items", t->now + wait_ms, due_ms ? t->now + due_ms : 0);
    return 0;
}

static int
put_item(struct tx *t, struct req *r)
{
    event_emit(t, "info", "test.item", NULL);
    items++;
    tx_notify(t, "items");
    return req_ok(r, 201, NULL);
}

static void *
taker(void *arg)
{
    struct req *r = arg;
    req_write(r, take_or_park);
    return NULL;
}

START_TEST(parked_write_woken_by_notify)
{
    struct req *r = req_new_internal(), *w = req_new_internal();
    pthread_t th;
    int64_t t0 = now_ms();

    wait_ms = 30000;
    due_ms = 0;
    ck_assert_int_eq(core_start(), 0);
    pthread_create(&th, NULL, taker, r);
    usleep(200 * 1000);
    ck_assert_int_eq(r->status, 204);   /* parked with its timeout answer */
    ck_assert_int_eq(req_write(w, put_item), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(r->status, 200);   /* woken at once, took the item */
    ck_assert_int_lt(now_ms() - t0, 10000);
    ck_assert_int_eq(count_events("test.item"), 1);     /* the put committed... */
    ck_assert_int_eq(items, 0);                         /* ...and its item was taken */
    req_free(r);
    req_free(w);
    core_stop();
}
END_TEST

static int
put_item_silently(struct tx *t, struct req *r)
{
    event_emit(t, "info", "test.item", NULL);   /* no notify: only `due` can wake */
    items++;
    return req_ok(r, 201, NULL);
}

/* A wake-up delivered from another thread -- as a notifier carrying
 * publications between processes delivers them -- reaches the parked
 * write: the item is put without any in-process notify, so only the
 * delivered wake-up (or the 30 s deadline) can run the write again. */
START_TEST(parked_write_woken_from_another_thread)
{
    struct req *r = req_new_internal(), *w = req_new_internal();
    pthread_t th;
    int64_t t0 = now_ms();

    wait_ms = 30000;
    due_ms = 0;
    ck_assert_int_eq(core_start(), 0);
    pthread_create(&th, NULL, taker, r);
    usleep(200 * 1000);
    ck_assert_int_eq(r->status, 204);
    ck_assert_int_eq(req_write(w, put_item_silently), 0);
    usleep(200 * 1000);
    ck_assert_int_eq(r->status, 204);   /* nothing woke it yet */
    writer_wake("items", 0);            /* this thread is not the writer */
    pthread_join(th, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_lt(now_ms() - t0, 10000);
    req_free(r);

    /* a due time delivered the same way: the write runs again then */
    r = req_new_internal();
    t0 = now_ms();
    pthread_create(&th, NULL, taker, r);
    usleep(200 * 1000);
    ck_assert_int_eq(r->status, 204);
    ck_assert_int_eq(req_write(w, put_item_silently), 0);
    writer_wake("items", now_ms() + 300);
    usleep(100 * 1000);
    ck_assert_int_eq(r->status, 204);   /* not before its due time */
    pthread_join(th, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_lt(now_ms() - t0, 10000);
    req_free(r);
    req_free(w);
    core_stop();
}
END_TEST

START_TEST(parked_write_times_out)
{
    struct req *r = req_new_internal();
    int64_t t0 = now_ms();

    wait_ms = 300;
    due_ms = 0;
    ck_assert_int_eq(core_start(), 0);
    ck_assert_int_eq(req_write(r, take_or_park), 0);
    ck_assert_int_eq(r->status, 204);
    ck_assert_int_ge(now_ms() - t0, 290);
    req_free(r);
    core_stop();
}
END_TEST


START_TEST(parked_write_rerun_when_due)
{
    struct req *r = req_new_internal(), *w = req_new_internal();
    pthread_t th;

    wait_ms = 30000;
    due_ms = 500;
    ck_assert_int_eq(core_start(), 0);
    pthread_create(&th, NULL, taker, r);
    usleep(100 * 1000);
    ck_assert_int_eq(req_write(w, put_item_silently), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(r->status, 200);
    req_free(r);
    req_free(w);
    core_stop();
}
END_TEST

START_TEST(shutdown_answers_parked)
{
    struct req *r = req_new_internal();
    pthread_t th;

    wait_ms = 60000;
    due_ms = 0;
    ck_assert_int_eq(core_start(), 0);
    pthread_create(&th, NULL, taker, r);
    usleep(100 * 1000);
    core_stop();
    pthread_join(th, NULL);
    ck_assert_int_eq(r->status, 204);
    req_free(r);
}
END_TEST

static int
slow_ok(struct tx *t, struct req *r)
{
    (void)t;
    usleep(400 * 1000);     /* holds the writer so the next requests queue up */
    return req_ok(r, 200, NULL);
}

static void *
run_write(void *arg)
{
    struct req *r = arg;
    req_write(r, r->ctx ? (int (*)(struct tx *, struct req *))r->ctx : emit_ok);
    return NULL;
}

/* A batch holding both a request that parks and one that is answered must
 * answer the second: filing the first must not cut the batch short. */
START_TEST(batch_with_parked_answers_the_rest)
{
    struct req *slow = req_new_internal(), *parker = req_new_internal(), *plain = req_new_internal();
    struct req *w = req_new_internal();
    pthread_t t1, t2, t3;

    wait_ms = 30000;
    due_ms = 0;
    ck_assert_int_eq(core_start(), 0);
    slow->ctx = (void *)slow_ok;
    parker->ctx = (void *)take_or_park;
    plain->ctx = NULL;
    pthread_create(&t1, NULL, run_write, slow);
    usleep(100 * 1000);                 /* the slow write is running */
    pthread_create(&t2, NULL, run_write, parker);
    pthread_create(&t3, NULL, run_write, plain);
    pthread_join(t1, NULL);
    pthread_join(t3, NULL);             /* hangs here if the batch was cut short */
    ck_assert_int_eq(plain->status, 200);
    ck_assert_int_eq(req_write(w, put_item), 0);     /* and the parked one still wakes */
    pthread_join(t2, NULL);
    ck_assert_int_eq(parker->status, 200);
    slow->ctx = parker->ctx = NULL;
    req_free(slow);
    req_free(parker);
    req_free(plain);
    req_free(w);
    core_stop();
}
END_TEST

/* docs/operations.md: every state change is an event row -- the server's
 * own start and stop included, so `baton events --event 'server.*'` shows
 * restarts after the fact. */
START_TEST(server_lifecycle_events_are_rows)
{
    struct server srv = {0};
    json_t *ev, *e;
    size_t i;
    const char *want[] = {"server.started", "server.stopped", "server.stopping", "server.started"};

    server_start(&srv, NULL);
    ck_assert_int_eq(server_stop(&srv), 0);
    server_start(&srv, NULL);           /* same directory, same database */
    ev = CALL(&srv, "GET", "/v1/events?event=server.*", NULL, 200);
    ck_assert_msg(json_array_size(json_object_get(ev, "events")) == 4, "server.* rows: %zu, expected 4",
                  json_array_size(json_object_get(ev, "events")));
    json_array_foreach(json_object_get(ev, "events"), i, e) {
        ck_assert_str_eq(json_string_value(json_object_get(e, "event")), want[i]);     /* newest first */
    }
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(ev, "events"), 1), "level")),
                     "info");
    ck_assert_int_gt(json_integer_value(json_object_get(json_array_get(json_object_get(ev, "events"), 3), "port")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(ev, "events"), 2), "signal")),
                     "SIGTERM");
    json_decref(ev);
    /* the log lines are still printed, once each */
    ck_assert_int_eq(server_log_count(&srv, "\"event\":\"server.started\""), 1);
    server_cleanup(&srv);
}
END_TEST

/* ---- space back: auto-vacuum, retention, conversion ---------------------- */

static long
file_size(const struct server *s)
{
    char p[320];
    struct stat st;

    snprintf(p, sizeof p, "%s/baton.db", s->dir);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* A database that pruned its jobs gives the space back: 3000 jobs with 3
 * KiB payloads enqueued, claimed and completed, pruned by retention (and
 * their events by theirs), and the file shrinks back below twice the size
 * of an empty database -- while writes keep being answered. */
START_TEST(retention_gives_the_space_back)
{
    static const char *const keep[] = {"BATON_SWEEP_INTERVAL_MS=100", NULL};
    static const char *const env[] = {"BATON_RETENTION_MS=1000", "BATON_EVENT_RETENTION_MS=1000",
                                      "BATON_SWEEP_INTERVAL_MS=100", NULL};
    enum { JOBS = 3000, PER = 100 };
    struct server srv = {0};
    char pad[3073];
    long empty, peak, size = -1;
    double worst = 0;
    int writes = 0;

    if (sqlite_only("the file of a SQLite database"))
        return;
    server_start(&srv, keep);
    ck_assert_int_eq(server_stop(&srv), 0);
    empty = file_size(&srv);
    ck_assert_int_gt(empty, 0);
    server_start(&srv, keep);          /* the default retentions: nothing goes yet */
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int i = 0; i < JOBS / PER; i++) {
        json_t *jobs = json_array();
        for (int k = 0; k < PER; k++)
            json_array_append_new(jobs, json_pack("{s:s, s:{s:s, s:i}}", "queue", "big", "payload", "pad", pad,
                                                  "n", i * PER + k));
        json_decref(CALL(&srv, "POST", "/v1/jobs/batch", json_pack("{s:o}", "jobs", jobs), 201));
    }
    for (int i = 0; i < JOBS; i++) {
        json_t *out = CALL(&srv, "POST", "/v1/jobs/claim", json_pack("{s:s, s:s}", "workerId", "w", "queue", "big"),
                           200);
        json_t *j = json_object_get(out, "job");
        char path[96];
        ck_assert_ptr_nonnull(j);
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", json_string_value(json_object_get(j, "id")));
        json_decref(CALL(&srv, "POST", path,
                         json_pack("{s:s, s:O}", "workerId", "w", "claimToken", json_object_get(j, "claimToken")),
                         200));
        json_decref(out);
    }
    ck_assert_int_eq(server_stop(&srv), 0);
    peak = file_size(&srv);
    ck_assert_msg(peak > 20 * empty, "the jobs took %ld bytes, the empty database %ld", peak, empty);
    server_start(&srv, env);           /* now they are past retention */
    for (int waited = 0; waited < 60000; waited += 100) {
        double t0 = now_ms();
        /* a write with nothing to change: one round trip through the writer */
        json_decref(CALL(&srv, "POST", "/v1/jobs/requeue-stale", json_object(), 200));
        worst = now_ms() - t0 > worst ? now_ms() - t0 : worst;
        writes++;
        size = file_size(&srv);
        if (server_sql(&srv, "SELECT count(*) FROM jobs") == 0 && size < 2 * empty)
            break;
        sleep_ms(100);
    }
    ck_assert_int_eq(server_sql(&srv, "SELECT count(*) FROM jobs"), 0);
    ck_assert_msg(size < 2 * empty, "file %ld bytes after pruning (peak %ld), empty %ld", size, peak, empty);
    ck_assert_int_gt(writes, 0);
    ck_assert_msg(worst < 5000, "a write waited %.0f ms", worst);
    server_cleanup(&srv);
}
END_TEST

/* A database made before auto-vacuum (auto_vacuum NONE, the migrations
 * applied by SQL as an old batond did) is converted once at start and
 * keeps its data; db.converted tells the sizes. One above
 * BATON_DB_CONVERT_MAX_BYTES is left as it is, said in db.convert_skipped,
 * and served all the same. */
START_TEST(old_database_converted_at_start)
{
    static const char *const small[] = {"BATON_DB_CONVERT_MAX_BYTES=1", NULL};
    struct server srv = {0};
    char path[320];
    json_t *j;

    if (sqlite_only("the file of a SQLite database"))
        return;
    for (int pass = 0; pass < 2; pass++) {
        memset(&srv, 0, sizeof srv);
        snprintf(srv.dir, sizeof srv.dir, "/tmp/baton-conv-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(srv.dir));
        snprintf(path, sizeof path, "%s/baton.db", srv.dir);
        db_make_counted(path, db_known_count());
        db_exec(path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)"
                      " INSERT INTO jobs(queue, status, payload, run_at, max_attempts, created_at, updated_at)"
                      " SELECT 'old', 'pending', json_object('i', i, 'pad', hex(zeroblob(1000))), 0, 5, 1, 1"
                      " FROM n");
        db_exec(path, "DELETE FROM jobs WHERE json_extract(payload, '$.i') > 100");
        ck_assert_int_eq(db_int(path, "PRAGMA auto_vacuum"), 0);
        ck_assert_int_gt(db_int(path, "PRAGMA freelist_count"), 50);

        server_start(&srv, pass ? small : NULL);
        ck_assert_int_eq(server_sql(&srv, "SELECT count(*) FROM jobs WHERE queue = 'old'"), 100);
        j = CALL(&srv, "POST", "/v1/jobs/claim", json_pack("{s:s, s:s}", "workerId", "w", "queue", "old"), 200);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(j, "job"), "payload"),
                                                            "i")), 1);
        json_decref(j);
        ck_assert_int_eq(server_stop(&srv), 0);
        if (!pass) {
            ck_assert_int_eq(server_log_count(&srv, "\"event\":\"db.converted\""), 1);
            ck_assert_int_eq(server_log_count(&srv, "\"sizeAfter\":"), 1);
            ck_assert_int_eq(db_int(path, "PRAGMA auto_vacuum"), 2);
            ck_assert_int_eq(db_int(path, "PRAGMA freelist_count"), 0);
            /* once: the next start has nothing to convert */
            server_start(&srv, NULL);
            ck_assert_int_eq(server_log_count(&srv, "db.convert"), 0);
            ck_assert_int_eq(server_sql(&srv, "SELECT count(*) FROM jobs WHERE queue = 'old'"), 100);
        } else {
            ck_assert_int_eq(server_log_count(&srv, "\"event\":\"db.convert_skipped\""), 1);
            ck_assert_int_eq(server_log_count(&srv, "db.converted"), 0);
            ck_assert_int_eq(db_int(path, "PRAGMA auto_vacuum"), 0);
        }
        server_cleanup(&srv);
    }
}
END_TEST

Suite *
suite_db(void)
{
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("db");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, migrations_apply_once);
    tcase_add_test(tc, failed_migration_changes_nothing);
    tcase_add_test(tc, counted_database_adopted_once);
    tcase_add_test(tc, newer_database_refused);
    tcase_add_test(tc, write_commits_and_failure_rolls_back);
    tcase_add_test(tc, concurrent_writes_fail_alone);
    tcase_add_test(tc, parked_write_woken_by_notify);
    tcase_add_test(tc, parked_write_woken_from_another_thread);
    tcase_add_test(tc, parked_write_times_out);
    tcase_add_test(tc, parked_write_rerun_when_due);
    tcase_add_test(tc, shutdown_answers_parked);
    tcase_add_test(tc, batch_with_parked_answers_the_rest);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, server_lifecycle_events_are_rows);
    suite_add_tcase(s, tc);

    tc = tcase_create("space");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, retention_gives_the_space_back);
    tcase_add_test(tc, old_database_converted_at_start);
    suite_add_tcase(s, tc);
    return s;
}
