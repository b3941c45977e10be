/* db.c -- SQLite connections, migrations and the write path.
 *
 * DESIGN
 * One writer thread owns the only writing connection. Handlers queue
 * requests (db_submit) and suspend their connection; the writer takes every
 * request waiting (group commit), opens one transaction, runs each request
 * in its own SAVEPOINT so a failing one rolls back alone, commits once --
 * one fsync for the whole batch -- and only then prints the batch's events,
 * files and wakes long-poll waiters, and resumes the connections. A lone
 * request is committed at once: batching only happens when requests are
 * already queued behind one in progress. Readers use one read-only
 * connection per thread and never wait for the writer (WAL).
 *
 * Each commit is counted for /metrics (metrics_commit: commits, writes,
 * batch sizes, commit time). When SQLite rolls the whole transaction back
 * by itself (SQLITE_FULL, SQLITE_IOERR, ... may do that), every request of
 * the batch is answered 503 unavailable -- none of them is on disk -- and
 * the rest of the batch is not run, so nothing is committed piecemeal.
 *
 * TEST-ONLY HOOKS (environment, read once at start; a warning is logged
 * when one is set; never set them in production):
 *   BATON_TEST_COMMIT_DELAY_MS=n  sleep n ms inside every transaction just
 *       before COMMIT, so that concurrent writes pile up and share commits
 *       (makes group commit observable in tests).
 *   BATON_TEST_FAULT_FILE=path    before each batch the writer looks at
 *       path: while it exists, the writer connection's max_page_count is
 *       pinned to the current size of the database ("disk full": any write
 *       needing a new page fails with SQLITE_FULL); once it is removed the
 *       limit is lifted again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batond.h"

#define MAX_BATCH 256

enum { S_NEW, S_QUEUED, S_DONE };

static sqlite3 *wdb;
static pthread_t writer;
static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static struct req *wq_head, *wq_tail;
static bool running, stopping;
static _Atomic bool draining;       /* shutting down: park nothing, answer waiters */

/* test-only hooks, see the header comment */
static int64_t test_commit_delay_ms;
static const char *test_fault_file;
static bool fault_active;
static int64_t max_pages_default;

struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

/* ---- statement cache: per thread, keyed by (connection, SQL literal) --- */

#define CACHE_SLOTS 1024

struct cached {
    sqlite3 *db;
    const char *sql;
    sqlite3_stmt *st;
};

static _Thread_local struct cached cache[CACHE_SLOTS];

sqlite3_stmt *
db_prep(sqlite3 *db, const char *sql)
{
    size_t h = (((uintptr_t)db >> 4) ^ ((uintptr_t)sql >> 3)) % CACHE_SLOTS;

    for (size_t i = 0; i < CACHE_SLOTS; i++, h = (h + 1) % CACHE_SLOTS) {
        struct cached *c = &cache[h];
        if (c->db == db && c->sql == sql) {
            sqlite3_reset(c->st);
            sqlite3_clear_bindings(c->st);
            return c->st;
        }
        if (!c->db) {
            if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->st, NULL) != SQLITE_OK) {
                c->st = NULL;
                return NULL;
            }
            c->db = db;
            c->sql = sql;
            return c->st;
        }
    }
    return NULL;
}

/* Finalize db's statements and forget the calling thread's cache of them. */
static void
db_close(sqlite3 *db)
{
    sqlite3_stmt *st;

    if (!db)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].db == db)
            cache[i].db = (sqlite3 *)1;     /* tombstone keeps probe chains */
    while ((st = sqlite3_next_stmt(db, NULL)))
        sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Reset every statement of db still holding a read snapshot. */
static void
reset_busy(sqlite3 *db)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (sqlite3_stmt_busy(st))
            sqlite3_reset(st);
}

int
db_fail(struct req *r, sqlite3 *db)
{
    int rc = sqlite3_errcode(db);

    switch (rc & 0xff) {
    case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_FULL: case SQLITE_IOERR:
    case SQLITE_READONLY: case SQLITE_NOMEM: case SQLITE_CANTOPEN: case SQLITE_PROTOCOL:
        return req_fail(r, "unavailable", NULL, "database unavailable: %s", sqlite3_errmsg(db));
    default:
        return req_fail(r, "internal", NULL, "database error: %s", sqlite3_errmsg(db));
    }
}

json_t *
col_json(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    json_t *v;

    if (!t)
        return json_null();
    v = json_loads(t, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    return v ? v : json_null();
}

json_t *
col_text(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);

    return t ? json_stringn(t, (size_t)sqlite3_column_bytes(s, i)) : json_null();
}

json_t *
col_int(sqlite3_stmt *s, int i)
{
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return json_null();
    return json_integer(sqlite3_column_int64(s, i));
}

/* ---- opening and migrating ------------------------------------------- */

static int
mkdirs_for(const char *path)
{
    char *dir = strdup(path), *p;

    if (!dir)
        return -1;
    p = strrchr(dir, '/');
    if (p && p != dir) {
        *p = 0;
        for (p = dir + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(dir, 0750);
                *p = '/';
            }
        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
            free(dir);
            return -1;
        }
    }
    free(dir);
    return 0;
}

int
db_open(const char *path, bool sync_full, sqlite3 **out, char *why, size_t n)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    char pragmas[256];

    *out = NULL;
    if (strcmp(path, ":memory:") && mkdirs_for(path) < 0) {
        snprintf(why, n, "cannot create the directory of %s: %s", path, strerror(errno));
        return -1;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(why, n, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=5000;"
             "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
             sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(db, pragmas, NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, n, "cannot configure %s: %s", path, err ? err : "?");
        sqlite3_free(err);
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int
db_migrate(sqlite3 *db, const struct migration *m, char *why, size_t n)
{
    sqlite3_stmt *st;
    int version = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);

    for (int i = version; m[i].name; i++) {
        char *err = NULL, set[64];

        snprintf(set, sizeof set, "PRAGMA user_version=%d", i + 1);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, m[i].sql, NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, set, NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
            snprintf(why, n, "migration %s failed: %s", m[i].name, err ? err : sqlite3_errmsg(db));
            sqlite3_free(err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

/* ---- readers ----------------------------------------------------------- */

static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static _Thread_local sqlite3 *reader;

static void
reader_gone(void *db)
{
    db_close(db);
    reader = NULL;
}

static void
reader_key_init(void)
{
    pthread_key_create(&reader_key, reader_gone);
}

sqlite3 *
db_reader(void)
{
    char why[256];

    if (reader) {
        reset_busy(reader);
        return reader;
    }
    pthread_once(&reader_once, reader_key_init);
    if (db_open(cfg.db_path, cfg.sync_full, &reader, why, sizeof why) < 0)
        return NULL;
    sqlite3_exec(reader, "PRAGMA query_only=1", NULL, NULL, NULL);
    pthread_setspecific(reader_key, reader);
    return reader;
}

/* ---- the writer -------------------------------------------------------- */

static struct req sweeper;

static void
complete(struct req *r)
{
    r->state = S_DONE;
    if (r->sync) {
        struct sync_wait *w = r->sync;
        pthread_mutex_lock(&w->lock);
        w->done = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
    } else if (r->conn)
        http_resume(r);
    else if (r != &sweeper)
        req_free(r);        /* fire-and-forget internal write */
}

static void
complete_list(struct req *list)
{
    while (list) {
        struct req *next = list->next;
        list->next = NULL;
        complete(list);
        list = next;
    }
}

static void
enqueue_locked(struct req *r)
{
    r->next = NULL;
    r->state = S_QUEUED;
    if (wq_tail)
        wq_tail->next = r;
    else
        wq_head = r;
    wq_tail = r;
}

/* Woken waiters run their write again -- unless their client has gone, in
 * which case they must not take anything: they are answered (to nobody). */
static void
requeue_woken(struct req *list)
{
    while (list) {
        struct req *next = list->next;
        list->next = NULL;
        if (draining || !req_alive(list))
            complete(list);
        else {
            pthread_mutex_lock(&wq_lock);
            enqueue_locked(list);
            pthread_mutex_unlock(&wq_lock);
        }
        list = next;
    }
}

static void
tx_init(struct tx *t)
{
    t->db = wdb;
    t->now = now_ms();
    t->events = json_array();
    t->notify = json_array();
    t->due = json_object();
}

static void
tx_clear(struct tx *t)
{
    json_decref(t->events);
    json_decref(t->notify);
    json_decref(t->due);
}

static int
exec(const char *sql)
{
    return sqlite3_exec(wdb, sql, NULL, NULL, NULL);
}

static double
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t
pragma_int(const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    if (sqlite3_prepare_v2(wdb, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Test-only "disk full" switch (BATON_TEST_FAULT_FILE). */
static void
fault_check(void)
{
    struct stat st;
    bool want;
    char sql[64];

    if (!test_fault_file)
        return;
    want = stat(test_fault_file, &st) == 0;
    if (want == fault_active)
        return;
    if (want)
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)pragma_int("PRAGMA page_count"));
    else
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)max_pages_default);
    pragma_int(sql);
    fault_active = want;
    log_event("warn", "db.test_fault", json_pack("{s:b}", "diskFull", want));
}

static void
run_batch(struct req *batch)
{
    json_t *events = json_array(), *notify = json_array(), *due = json_object();
    struct req *r, *retry = NULL, *park = NULL, *done = NULL;
    bool committed, aborted = false;
    size_t writes = 0;
    double t0 = mono_ms();

    for (r = batch; r; r = r->next)
        writes++;
    fault_check();
    if (exec("BEGIN IMMEDIATE") != SQLITE_OK) {
        for (r = batch; r; r = r->next)
            db_fail(r, wdb);
        committed = false;
        goto answer;
    }
    for (r = batch; r; r = r->next) {
        struct tx t;
        int rc;

        tx_init(&t);
        r->parked = false;
        exec("SAVEPOINT req");
        rc = r->fn(&t, r);
        reset_busy(wdb);
        if (sqlite3_get_autocommit(wdb)) {
            /* SQLite rolled the whole transaction back (full, I/O error):
             * what the batch did so far is gone. Answer all of it 503 and
             * run nothing more outside a transaction. */
            tx_clear(&t);
            aborted = true;
            break;
        }
        if (rc == 0) {
            exec("RELEASE req");
            json_array_extend(events, t.events);
            json_array_extend(notify, t.notify);
            json_object_update(due, t.due);
        } else {
            exec("ROLLBACK TO req");
            exec("RELEASE req");
            r->parked = false;
        }
        tx_clear(&t);
    }
    if (aborted) {
        for (r = batch; r; r = r->next) {
            req_fail(r, "unavailable", NULL, "database unavailable: the transaction was rolled back");
            r->parked = false;
        }
        committed = false;
        goto answer;
    }
    if (test_commit_delay_ms > 0)
        usleep((useconds_t)(test_commit_delay_ms * 1000));
    committed = exec("COMMIT") == SQLITE_OK;
    if (!committed) {
        for (r = batch; r; r = r->next) {
            db_fail(r, wdb);
            r->parked = false;
        }
        exec("ROLLBACK");
    }

answer:
    metrics_commit(writes, committed, mono_ms() - t0);
    /* Split the batch first: filing a request as parked (and waking it)
     * relinks r->next into the waiters' lists, so the batch must not be
     * walked through r->next after that. */
    for (r = batch; r;) {
        struct req *next = r->next;
        r->next = NULL;
        if (committed && r->parked && !draining) {
            r->next = park;
            park = r;
        } else {
            r->parked = false;
            r->next = done;
            done = r;
        }
        r = next;
    }
    if (committed) {
        const char *topic;
        json_t *v;
        size_t i;

        events_flush(events);
        if (json_array_size(events)) {
            metrics_events(events);
            stream_wake();
        }
        /* file the parked before waking, so a wake in this batch finds them
         * (they then run again instead of being answered) */
        while (park) {
            r = park;
            park = r->next;
            r->next = NULL;
            wait_add(r);
        }
        json_object_foreach(due, topic, v)
            wait_note_due(topic, json_integer_value(v));
        json_array_foreach(notify, i, v)
            wait_wake(json_string_value(v), &retry);
    }
    complete_list(done);
    requeue_woken(retry);
    json_decref(events);
    json_decref(notify);
    json_decref(due);
}

static void *
writer_main(void *arg)
{
    int64_t next_sweep = now_ms() + cfg.sweep_interval_ms;

    (void)arg;
    for (;;) {
        struct req *batch = NULL, **tail = &batch, *resume = NULL, *retry = NULL;
        int64_t now;
        int count = 0;
        bool sweeping = false;

        pthread_mutex_lock(&wq_lock);
        while (!wq_head && !stopping) {
            int64_t next = wait_next(), t = now_ms();
            struct timespec ts;

            if (!next || next > next_sweep)
                next = next_sweep;
            if (next <= t)
                break;
            ts.tv_sec = next / 1000;
            ts.tv_nsec = (next % 1000) * 1000000;
            if (pthread_cond_timedwait(&wq_cond, &wq_lock, &ts) == ETIMEDOUT)
                break;
        }
        if (stopping && !wq_head) {
            pthread_mutex_unlock(&wq_lock);
            break;
        }
        while (wq_head && count < MAX_BATCH) {
            struct req *r = wq_head;
            wq_head = r->next;
            if (!wq_head)
                wq_tail = NULL;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
            count++;
        }
        pthread_mutex_unlock(&wq_lock);

        now = now_ms();
        if (draining)
            wait_drain(&resume);
        else
            wait_expire(now, &resume, &retry);
        complete_list(resume);
        requeue_woken(retry);
        if (now >= next_sweep && !draining) {
            sweeper.fn = sweep_run;
            sweeping = true;
            *tail = &sweeper;
            tail = &sweeper.next;
            next_sweep = now + cfg.sweep_interval_ms;
        }
        if (batch) {
            run_batch(batch);
            if (sweeping && sweep_again())
                next_sweep = now;   /* a backlog: next chunk right away */
        }
    }
    return NULL;
}

int
db_submit(struct req *r, int (*fn)(struct tx *, struct req *))
{
    r->fn = fn;
    pthread_mutex_lock(&wq_lock);
    if (!running || stopping) {
        pthread_mutex_unlock(&wq_lock);
        return req_fail(r, "unavailable", NULL, "server is shutting down");
    }
    if (r->conn)
        http_suspend(r);
    enqueue_locked(r);
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    return 0;
}

int
db_write(struct req *r, int (*fn)(struct tx *, struct req *))
{
    struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

    r->sync = &w;
    r->fn = fn;
    pthread_mutex_lock(&wq_lock);
    if (!running || stopping) {
        pthread_mutex_unlock(&wq_lock);
        r->sync = NULL;
        return req_fail(r, "unavailable", NULL, "server is shutting down");
    }
    enqueue_locked(r);
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);

    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    r->sync = NULL;
    return r->err_code ? -1 : 0;
}

int
db_start(void)
{
    char why[512];

    if (db_open(cfg.db_path, cfg.sync_full, &wdb, why, sizeof why) < 0 ||
        db_migrate(wdb, migrations, why, sizeof why) < 0) {
        log_event("error", "db.open_failed", json_pack("{s:s}", "reason", why));
        fprintf(stderr, "batond: %s\n", why);
        db_close(wdb);
        wdb = NULL;
        return -1;
    }
    /* perf: a 16 MiB page cache for the writer only (default 2 MiB): big
     * transactions such as the stale sweep of 10^5 locks touch many index
     * pages; measured 5.2 s -> 3.2 s for that sweep. Readers keep the
     * default so idle memory stays small. */
    sqlite3_exec(wdb, "PRAGMA cache_size=-16384", NULL, NULL, NULL);
    {
        const char *d = getenv("BATON_TEST_COMMIT_DELAY_MS"), *f = getenv("BATON_TEST_FAULT_FILE");
        test_commit_delay_ms = d && *d ? atoll(d) : 0;
        test_fault_file = f && *f ? f : NULL;
        fault_active = false;
        max_pages_default = pragma_int("PRAGMA max_page_count");
        if (test_commit_delay_ms > 0 || test_fault_file)
            log_event("warn", "db.test_hooks_enabled",
                      json_pack("{s:I, s:b}", "commitDelayMs", (json_int_t)test_commit_delay_ms,
                                "faultFile", test_fault_file != NULL));
    }
    running = true;
    stopping = false;
    draining = false;
    if (pthread_create(&writer, NULL, writer_main, NULL)) {
        running = false;
        db_close(wdb);
        return -1;
    }
    return 0;
}

void
db_release_waiters(void)
{
    pthread_mutex_lock(&wq_lock);
    draining = true;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
}

void
db_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&wq_lock);
    draining = stopping = true;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    pthread_join(writer, NULL);
    running = false;
    {
        struct req *rest = NULL;
        wait_drain(&rest);
        complete_list(rest);
    }
    sqlite3_exec(wdb, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    db_close(wdb);
    wdb = NULL;
}
