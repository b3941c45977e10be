/* store_sqlite.c -- the SQLite store: connections, migrations, the
 * writer's transaction and the table of operations (struct store_ops).
 * Each resource's SQL is in its own store_sqlite_<resource>.c.
 *
 * DESIGN
 * One write connection (the writer's) and one read-only connection per
 * reading thread, all in WAL mode, so readers never wait for the writer.
 * The clock of every write is the local clock (now_ms): one process owns
 * the database (an exclusive flock on "<db>.lock").
 * Space: files use incremental auto-vacuum, so that what retention frees
 * goes back to the file system in bounded steps (sq_shrink, from the
 * sweep); an older file is converted once at open (db_convert).
 *
 * Checkpoints run on a thread of their own (the checkpointer, on the
 * connection that migrated), not inside the writer's commits: SQLite's
 * automatic checkpoint copies the WAL into the database file and fsyncs
 * it in the commit that crosses 1000 WAL pages, and every write of that
 * batch waits for it. The writer's WAL hook wakes the checkpointer past
 * CKPT_PAGES; it checkpoints PASSIVE (beside the writer, never blocking
 * it). A WAL starts over from its beginning only at a write transaction
 * that begins with all of it checkpointed, which a writer that never
 * pauses does not give a concurrent checkpoint, and such a writer can also
 * outrun it; so past CKPT_HARD_PAGES the commit checkpoints by itself, as
 * SQLite's automatic checkpoint did -- copying only what the checkpointer
 * has not copied yet -- and the next transaction starts the WAL over.
 *
 * TEST-ONLY HOOK (environment, read at open; a warning is logged when it
 * is set; see docs/performance.md for why it stays in the binary):
 *   BATON_TEST_FAULT_FILE=path    before each batch the writer looks at
 *       path: while it exists, the write connection's max_page_count is
 *       pinned to the current size of the database ("disk full": any write
 *       needing a new page fails with SQLITE_FULL); once it is removed the
 *       limit is lifted again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_sqlite.h"

static const char *test_fault_file;
static bool fault_active;
static int64_t max_pages_default;

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
sq_fail(struct tx *t)
{
    sqlite3 *db = SQ(t);
    int rc = sqlite3_errcode(db);

    switch (rc & 0xff) {
    case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_FULL: case SQLITE_IOERR:
    case SQLITE_READONLY: case SQLITE_NOMEM: case SQLITE_CANTOPEN: case SQLITE_PROTOCOL:
        return tx_fail(t, "unavailable", NULL, "database unavailable: %s", sqlite3_errmsg(db));
    default:
        return tx_fail(t, "internal", NULL, "database error: %s", sqlite3_errmsg(db));
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

char *
col_strdup(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);

    return t ? strdup(t) : NULL;
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

static int64_t pragma_int(sqlite3 *db, const char *sql);

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
    /* a new (empty) file gets auto_vacuum before journal_mode writes its
     * header: only then does it take (db_convert does older files) */
    if (sqlite3_exec(db, "PRAGMA busy_timeout=5000", NULL, NULL, NULL) == SQLITE_OK &&
        pragma_int(db, "PRAGMA page_count") == 0)
        sqlite3_exec(db, "PRAGMA auto_vacuum=INCREMENTAL", NULL, NULL, NULL);
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

/* ---- migrations ---------------------------------------------------------
 * Which migrations ran is recorded in schema_migrations (its SQL is
 * migrations_table, from schema/<backend>/schema_migrations.sql): one row
 * per version, written in the same transaction as the migration itself.
 * Databases made before that table existed only counted migrations in
 * PRAGMA user_version; they are adopted (see migrations_prepare). */

/* The single integer a query answers; -1 when it answers no row. */
static int
query_int(sqlite3 *db, const char *sql, int arg, int *out)
{
    sqlite3_stmt *st;
    int rc;

    *out = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (arg >= 0)
        sqlite3_bind_int(st, 1, arg);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Record migration version (1-based) as applied now. */
static int
record_migration(sqlite3 *db, int version, const char *name)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, "INSERT INTO schema_migrations(version, name, applied_at) VALUES(?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int(st, 1, version);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms());
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Inside the caller's transaction: create schema_migrations when it is
 * missing, adopting versions 1..user_version of a database made before it
 * existed (*adopted = how many), then check that every recorded version is
 * one of the known ones, under the same name. Returns 0, -1 on an SQLite
 * error, -2 when the database is newer than (or differs from) m. */
static int
migrations_prepare(sqlite3 *db, const struct migration *m, int known, int *adopted,
                   char *why, size_t n)
{
    sqlite3_stmt *st;
    int exists, uv, rc = 0;
    char *err = NULL;

    *adopted = 0;
    if (query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                  -1, &exists) < 0 ||
        query_int(db, "PRAGMA user_version", -1, &uv) < 0) {
        snprintf(why, n, "cannot read the schema version: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (!exists) {
        if (uv > known) {
            snprintf(why, n, "the database schema is at version %d (PRAGMA user_version), newer than this "
                     "batond, which knows up to %d (%s): run a newer batond", uv, known,
                     known ? m[known - 1].name : "none");
            return -2;
        }
        if (sqlite3_exec(db, migrations_table, NULL, NULL, &err) != SQLITE_OK) {
            snprintf(why, n, "cannot create schema_migrations: %s", err ? err : sqlite3_errmsg(db));
            sqlite3_free(err);
            return -1;
        }
        for (int v = 1; v <= uv; v++)
            if (record_migration(db, v, m[v - 1].name) < 0) {
                snprintf(why, n, "cannot record migration %s: %s", m[v - 1].name, sqlite3_errmsg(db));
                return -1;
            }
        *adopted = uv;
    }
    /* the first recorded version this binary does not have, by number or name */
    if (sqlite3_prepare_v2(db, "SELECT version, name FROM schema_migrations ORDER BY version", -1, &st, NULL)
        != SQLITE_OK) {
        snprintf(why, n, "cannot read schema_migrations: %s", sqlite3_errmsg(db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int v = sqlite3_column_int(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);

        if (v < 1 || v > known) {
            snprintf(why, n, "the database has migration %d (%.100s), newer than this batond, which knows up "
                     "to %d (%s): run a newer batond", v, name ? name : "?", known,
                     known ? m[known - 1].name : "none");
            rc = -2;
            break;
        }
        if (!name || strcmp(name, m[v - 1].name)) {
            snprintf(why, n, "the database has migration %d as %.100s but this batond has %s: it was made "
                     "by another build", v, name ? name : "?", m[v - 1].name);
            rc = -2;
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc != -2) {
        snprintf(why, n, "cannot read schema_migrations: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

int
db_migrate(sqlite3 *db, const struct migration *m, char *why, size_t n)
{
    int known = 0, adopted = 0, rc;
    char *err = NULL;

    while (m[known].name)
        known++;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, n, "cannot start migrating: %s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return -1;
    }
    if ((rc = migrations_prepare(db, m, known, &adopted, why, n)) < 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, n, "cannot record the applied migrations: %s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (adopted)
        log_event("info", "db.migrations_adopted",
                  json_pack("{s:i, s:s}", "versions", adopted, "through", m[adopted - 1].name));

    /* each missing migration in its own transaction, with its row */
    for (int i = 0; i < known; i++) {
        int applied, uv;
        char set[64];

        err = NULL;
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK ||
            query_int(db, "SELECT version FROM schema_migrations WHERE version = ?", i + 1, &applied) < 0 ||
            query_int(db, "PRAGMA user_version", -1, &uv) < 0)
            goto failed;
        if (applied < 0) {
            /* user_version: the highest applied version, for tools */
            snprintf(set, sizeof set, "PRAGMA user_version=%d", uv > i + 1 ? uv : i + 1);
            if (sqlite3_exec(db, m[i].sql, NULL, NULL, &err) != SQLITE_OK ||
                record_migration(db, i + 1, m[i].name) < 0 ||
                sqlite3_exec(db, set, NULL, NULL, &err) != SQLITE_OK)
                goto failed;
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK)
            goto failed;
        continue;
    failed:
        snprintf(why, n, "migration %s failed: %s", m[i].name, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* ---- readers ----------------------------------------------------------- */

static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static _Thread_local struct sconn reader;

static void
reader_gone(void *db)
{
    db_close(db);
    reader.db = NULL;
}

static void
reader_key_init(void)
{
    pthread_key_create(&reader_key, reader_gone);
}

static struct sconn *
sq_reader(void)
{
    char why[256];

    if (reader.db) {
        reset_busy(reader.db);
        return &reader;
    }
    pthread_once(&reader_once, reader_key_init);
    if (db_open(cfg.db_path, cfg.sync_full, &reader.db, why, sizeof why) < 0)
        return NULL;
    sqlite3_exec(reader.db, "PRAGMA query_only=1", NULL, NULL, NULL);
    pthread_setspecific(reader_key, reader.db);
    return &reader;
}

static void
sq_read_done(struct sconn *c)
{
    reset_busy(c->db);
}

/* One batond per database: an exclusive flock on "<db>.lock" held while
 * the writer runs. A separate file, because closing any descriptor of the
 * database file itself would drop SQLite's own POSIX locks. Returns 0, -1
 * on error, -2 when another process holds it. */
static int lock_fd = -1;

static int
db_lock(const char *path, char *why, size_t n)
{
    char lp[4096];

    if (!strcmp(path, ":memory:"))
        return 0;
    snprintf(lp, sizeof lp, "%s.lock", path);
    lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        snprintf(why, n, "cannot open %.300s: %s", lp, strerror(errno));
        return -1;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(lock_fd);
        lock_fd = -1;
        if (e == EWOULDBLOCK) {
            snprintf(why, n, "database %.200s is in use by another batond (%.200s is locked)", path, lp);
            return -2;
        }
        snprintf(why, n, "cannot lock %.300s: %s", lp, strerror(e));
        return -1;
    }
    return 0;
}


/* ---- the writer's connection and transaction ----------------------------- */

static int64_t
pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Test-only "disk full" switch (BATON_TEST_FAULT_FILE). */
static void
fault_check(sqlite3 *db)
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
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)pragma_int(db, "PRAGMA page_count"));
    else
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)max_pages_default);
    pragma_int(db, sql);
    fault_active = want;
    log_event("warn", "db.test_fault", json_pack("{s:b}", "diskFull", want));
}

static sqlite3 *mdb;            /* the connection that migrated: the checkpointer's */

/* ---- the checkpointer (see DESIGN) ----------------------------------------- */

#define CKPT_PAGES 1000             /* SQLite's automatic threshold */
#define CKPT_HARD_PAGES 4000        /* 16 MiB: the writer's commit checkpoints */

static pthread_t ckpt_thread;
static pthread_mutex_t ckpt_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ckpt_cond = PTHREAD_COND_INITIALIZER;
static bool ckpt_due, ckpt_stop, ckpt_running;

/* Have the checkpointer run now. */
static void
ckpt_wake(void)
{
    pthread_mutex_lock(&ckpt_lock);
    if (!ckpt_due) {
        ckpt_due = true;
        pthread_cond_signal(&ckpt_cond);
    }
    pthread_mutex_unlock(&ckpt_lock);
}

/* The writer's connection after each commit: pages now in the WAL. */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)arg;
    if (pages >= CKPT_HARD_PAGES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages >= CKPT_PAGES)
        ckpt_wake();
    return SQLITE_OK;
}

static void *
ckpt_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ckpt_lock);
    for (;;) {
        while (!ckpt_due && !ckpt_stop)
            pthread_cond_wait(&ckpt_cond, &ckpt_lock);
        if (ckpt_stop)
            break;
        ckpt_due = false;
        pthread_mutex_unlock(&ckpt_lock);
        sqlite3_wal_checkpoint_v2(mdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ckpt_lock);
    }
    pthread_mutex_unlock(&ckpt_lock);
    return NULL;
}

static void
ckpt_start(void)
{
    ckpt_due = ckpt_stop = false;
    ckpt_running = pthread_create(&ckpt_thread, NULL, ckpt_main, NULL) == 0;
}

static void
ckpt_end(void)
{
    if (!ckpt_running)
        return;
    pthread_mutex_lock(&ckpt_lock);
    ckpt_stop = true;
    pthread_cond_signal(&ckpt_cond);
    pthread_mutex_unlock(&ckpt_lock);
    pthread_join(ckpt_thread, NULL);
    ckpt_running = false;
}

static int
sq_connect(struct sconn **out, char *why, size_t n)
{
    struct sconn *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    if (db_open(cfg.db_path, cfg.sync_full, &c->db, why, n) < 0) {
        free(c);
        return -1;
    }
    /* perf: a 16 MiB page cache for the writer only (default 2 MiB): big
     * transactions such as the stale sweep of 10^5 locks touch many index
     * pages; measured 5.2 s -> 3.2 s for that sweep. Readers keep the
     * default so idle memory stays small. */
    sqlite3_exec(c->db, "PRAGMA cache_size=-16384", NULL, NULL, NULL);
    /* checkpoints are the checkpointer's (DESIGN); this also turns the
     * automatic one off */
    if (ckpt_running)
        sqlite3_wal_hook(c->db, wal_hook, NULL);
    if (!max_pages_default)
        max_pages_default = pragma_int(c->db, "PRAGMA max_page_count");
    *out = c;
    return 0;
}

static void
sq_disconnect(struct sconn *c)
{
    if (!c)
        return;
    db_close(c->db);
    free(c);
}

static int64_t
sq_now(struct sconn *c)
{
    (void)c;
    return now_ms();
}

static void
conn_fault(sqlite3 *db, struct fault *f, const char *what)
{
    int rc = sqlite3_errcode(db) & 0xff;

    f->code = rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL || rc == SQLITE_IOERR ||
              rc == SQLITE_READONLY || rc == SQLITE_NOMEM || rc == SQLITE_CANTOPEN ||
              rc == SQLITE_PROTOCOL ? "unavailable" : "internal";
    snprintf(f->msg, sizeof f->msg, "database %s: %s",
             !strcmp(f->code, "unavailable") ? "unavailable" : what, sqlite3_errmsg(db));
}

static int
sq_begin(struct sconn *c, struct fault *f)
{
    fault_check(c->db);
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        conn_fault(c->db, f, "error");
        return -1;
    }
    return 0;
}

static int
sq_savepoint(struct sconn *c)
{
    return sqlite3_exec(c->db, "SAVEPOINT req", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int
sq_release(struct sconn *c)
{
    return sqlite3_exec(c->db, "RELEASE req", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int
sq_rollback_to(struct sconn *c)
{
    return sqlite3_exec(c->db, "ROLLBACK TO req", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* SQLite rolls the whole transaction back by itself on SQLITE_FULL, I/O
 * errors and the like: the connection is then in autocommit mode again. */
static bool
sq_aborted(struct sconn *c)
{
    reset_busy(c->db);
    return sqlite3_get_autocommit(c->db) != 0;
}

static int
sq_commit(struct sconn *c, struct fault *f)
{
    if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        conn_fault(c->db, f, "error");
        return -1;
    }
    if (c->checkpoint) {
        c->checkpoint = false;
        ckpt_wake();
    }
    return 0;
}

static void
sq_rollback(struct sconn *c)
{
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    c->checkpoint = false;
}

/* ---- giving space back ------------------------------------------------------ */

/* A file made before auto-vacuum and not converted (db_convert) cannot
 * give pages back: nothing to do there. */
static int
sq_shrink(struct tx *t, int64_t keep, int64_t max, int64_t *freed, bool *more)
{
    int64_t free_pages = pragma_int(SQ(t), "PRAGMA freelist_count"), left;
    char sql[64];

    *freed = 0;
    *more = false;
    if (free_pages < 0)
        return sq_fail(t);
    if (free_pages <= keep || pragma_int(SQ(t), "PRAGMA auto_vacuum") != 2)
        return 0;
    snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%lld)",
             (long long)(free_pages - keep < max ? free_pages - keep : max));
    if (sqlite3_exec(SQ(t), sql, NULL, NULL, NULL) != SQLITE_OK ||
        (left = pragma_int(SQ(t), "PRAGMA freelist_count")) < 0)
        return sq_fail(t);
    *freed = free_pages - left;
    *more = left > keep && *freed > 0;     /* no progress: no busy loop */
    /* the file itself shrinks when a checkpoint has copied the whole WAL
     * back; with no more writes the last one would wait for the next
     * 1000 pages written: once done, the commit wakes the checkpointer */
    if (!*more)
        t->c->checkpoint = true;
    return 0;
}

/* ---- open and close ------------------------------------------------------ */

/* The file's size as SQLite counts it (pages x page size), bytes. */
static int64_t
db_bytes(sqlite3 *db)
{
    return pragma_int(db, "PRAGMA page_count") * pragma_int(db, "PRAGMA page_size");
}

/* A database made before auto_vacuum (auto_vacuum NONE: its file never
 * shrinks) is rewritten once with auto_vacuum INCREMENTAL by VACUUM, at
 * start, before anything else uses it; db.converted says so with the
 * sizes before and after. VACUUM copies the whole database (its temporary
 * copy on disk here, not in memory: temp_store=FILE for the call) and
 * writes it through the WAL, so it takes time and space in proportion to
 * the file: one larger than BATON_DB_CONVERT_MAX_BYTES is left as it is,
 * with db.convert_skipped naming the command that converts it offline
 * (docs/operations.md). A failed conversion is logged and changes
 * nothing: batond serves the file as it was. */
static void
db_convert(sqlite3 *db)
{
    int64_t before, after, max = cfg.db_convert_max_bytes;
    char *err = NULL;
    double t0;

    if (pragma_int(db, "PRAGMA auto_vacuum") != 0)
        return;
    before = db_bytes(db);
    if (before > max) {
        log_event("warn", "db.convert_skipped",
                  json_pack("{s:s, s:I, s:I, s:s}", "reason", "larger than BATON_DB_CONVERT_MAX_BYTES",
                            "sizeBytes", (json_int_t)before, "maxBytes", (json_int_t)max, "command",
                            "sqlite3 <db> 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;' (batond stopped)"));
        return;
    }
    log_event("info", "db.converting", json_pack("{s:s, s:I}", "autoVacuum", "incremental", "sizeBefore",
                                                 (json_int_t)before));
    t0 = mono_ms();
    if (sqlite3_exec(db, "PRAGMA temp_store=FILE; PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL, NULL, &err)
        != SQLITE_OK) {
        log_event("error", "db.convert_failed", json_pack("{s:s}", "error", err ? err : sqlite3_errmsg(db)));
        sqlite3_free(err);
        sqlite3_exec(db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
        return;
    }
    sqlite3_exec(db, "PRAGMA temp_store=MEMORY; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    after = db_bytes(db);
    log_event("info", "db.converted",
              json_pack("{s:s, s:I, s:I, s:I}", "autoVacuum", "incremental", "sizeBefore", (json_int_t)before,
                        "sizeAfter", (json_int_t)after, "ms", (json_int_t)(mono_ms() - t0)));
}

static int
sq_open(char *why, size_t n)
{
    int rc = 0, mrc = 0;
    const char *f = getenv("BATON_TEST_FAULT_FILE");

    if (db_open(cfg.db_path, cfg.sync_full, &mdb, why, n) < 0 ||
        (rc = db_lock(cfg.db_path, why, n)) < 0 ||
        (mrc = db_migrate(mdb, migrations, why, n)) < 0) {
        if (rc != -2)
            log_event("error", mrc == -2 ? "db.schema_newer" : "db.open_failed",
                      json_pack("{s:s}", "reason", why));
        db_close(mdb);
        mdb = NULL;
        if (lock_fd >= 0)
            close(lock_fd);
        lock_fd = -1;
        return rc == -2 ? -2 : mrc == -2 ? -3 : -1;
    }
    db_convert(mdb);
    test_fault_file = f && *f ? f : NULL;
    fault_active = false;
    max_pages_default = 0;
    if (test_fault_file)
        log_event("warn", "db.test_hooks_enabled", json_pack("{s:b}", "faultFile", true));
    ckpt_start();
    return 0;
}

static void
sq_close(void)
{
    if (!mdb)
        return;
    ckpt_end();
    sqlite3_exec(mdb, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    db_close(mdb);
    mdb = NULL;
    if (lock_fd >= 0)
        close(lock_fd);
    lock_fd = -1;
}

const struct store_ops store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .reader = sq_reader,
    .read_done = sq_read_done,
    .now = sq_now,
    .begin = sq_begin,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .aborted = sq_aborted,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .shrink = sq_shrink,
    .jobs = &sqlite_jobs_ops,
    .leases = &sqlite_leases_ops,
    .dedupe = &sqlite_dedupe_ops,
    .sessions = &sqlite_sessions_ops,
    .messages = &sqlite_messages_ops,
    .events = &sqlite_events_ops,
    .queues = &sqlite_queues_ops,
    .stats = &sqlite_stats_ops,
    .schedules = &sqlite_schedules_ops,
};
