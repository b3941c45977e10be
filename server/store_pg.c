/* store_pg.c -- the PostgreSQL store: connections, migrations, the
 * writer's transaction, the clock, the statement helpers of store_pg.h and
 * the table of operations (struct store_ops). Each resource's SQL is in its
 * own store_pg_<resource>.c.
 *
 * DESIGN
 * cfg.db_path is a libpq URL (postgres://... or postgresql://...). Several
 * batond processes (replicas) may share one database: each has its own
 * writer connection and one read connection per reading thread, all at
 * READ COMMITTED with synchronous_commit on. Nothing here locks the
 * database for one process (open never answers -2): each operation of the
 * resource files is written to be correct under concurrent transactions.
 *
 * The clock is the database's: begin sends BEGIN and reads
 * clock_timestamp() in the same round trip, and every write of the
 * transaction uses that time (c->now); a read outside a transaction asks
 * for clock_timestamp() once. Replicas with skewed clocks therefore agree
 * on who owns a lease or a claim.
 *
 * Migrations (schema/postgres/NNN_*.sql, embedded as pg_migrations) run at
 * open under a session advisory lock with a fixed key, so replicas that
 * start together apply each one exactly once: the first takes the lock and
 * migrates, the others wait, then find every version recorded. Each
 * migration runs in its own transaction together with its row in
 * schema_migrations.
 *
 * Failures: pg_fail classifies the SQLSTATE. A lost connection, a server
 * shutting down, too many connections or a full disk mark the connection
 * broken (nothing more of the batch may run; the owner reconnects); a
 * serialization failure or a deadlock marks it retry (the batch may run
 * again). Both are "unavailable"; everything else is "internal". Messages
 * come from the server and never contain the connection string.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

/* the key of pg_advisory_lock taken while migrating: "baton" in ASCII */
#define PG_MIGRATE_LOCK 0x6261746f6eLL

/* one prepared statement of a connection, named "s<index>" */
struct pg_stmt {
    const char *sql;                /* the literal: its address is the key */
    char name[16];
    struct pg_stmt *next;
};

const char *
pg_i64(char *buf, int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

/* ---- failures ------------------------------------------------------------- */

/* Copy msg into out without its trailing newlines. */
static void
one_line(char *out, size_t n, const char *msg)
{
    size_t len;

    snprintf(out, n, "%s", msg && *msg ? msg : "unknown error");
    len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = 0;
}

/* The fault of r (NULL: the connection's last error) on c: its code
 * ("unavailable" or "internal") and message; marks c broken or retry. */
static const char *
classify(struct sconn *c, const PGresult *r, char *msg, size_t n)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r ? PQresultErrorMessage(r) : NULL;
    char line[400];

    if (!text || !*text)
        text = PQerrorMessage(c->pg);
    one_line(line, sizeof line, text);
    if (PQstatus(c->pg) != CONNECTION_OK || !state ||
        !strncmp(state, "08", 2) || !strncmp(state, "53", 2) ||
        !strcmp(state, "57P01") || !strcmp(state, "57P02") || !strcmp(state, "57P03")) {
        /* no SQLSTATE: the client library failed (lost connection, out of
         * memory); either way the connection cannot be trusted any more */
        c->broken = true;
        snprintf(msg, n, "database unavailable: %s", line);
        return "unavailable";
    }
    if (!strcmp(state, "40001") || !strcmp(state, "40P01")) {
        c->retry = true;
        snprintf(msg, n, "database unavailable (to be retried): %s", line);
        return "unavailable";
    }
    snprintf(msg, n, "database error (%s): %s", state, line);
    return "internal";
}

int
pg_fail(struct tx *t, PGresult *r)
{
    char msg[480];
    const char *code = classify(t->c, r, msg, sizeof msg);

    return tx_fail(t, code, NULL, "%s", msg);
}

/* The same for a struct fault (begin, commit). Returns -1. */
static int
conn_fault(struct sconn *c, const PGresult *r, struct fault *f)
{
    f->code = classify(c, r, f->msg, sizeof f->msg);
    return -1;
}

/* ---- statements ------------------------------------------------------------- */

/* c's prepared statement for sql, preparing it on first use; NULL after
 * pg_fail. */
static struct pg_stmt *
stmt_for(struct tx *t, const char *sql, int n)
{
    struct sconn *c = t->c;
    struct pg_stmt *s;
    PGresult *r;
    int count = 0;

    for (s = c->stmts; s; s = s->next, count++)
        if (s->sql == sql)
            return s;
    if (!(s = calloc(1, sizeof *s))) {
        tx_fail(t, "unavailable", NULL, "out of memory");
        return NULL;
    }
    s->sql = sql;
    snprintf(s->name, sizeof s->name, "s%d", count);
    r = PQprepare(c->pg, s->name, sql, n, NULL);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_fail(t, r);
        PQclear(r);
        free(s);
        return NULL;
    }
    PQclear(r);
    s->next = c->stmts;
    c->stmts = s;
    return s;
}

/* r when it succeeded; else pg_fail, clear it, NULL. */
static PGresult *
checked(struct tx *t, PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    pg_fail(t, r);
    PQclear(r);
    return NULL;
}

PGresult *
pg_exec(struct tx *t, const char *sql, int n, const char *const *params)
{
    return pg_execb(t, sql, n, params, NULL, NULL);
}

PGresult *
pg_execb(struct tx *t, const char *sql, int n, const char *const *params,
         const int *lengths, const int *formats)
{
    struct pg_stmt *s;

    if (t->c->broken)
        return tx_fail(t, "unavailable", NULL, "database unavailable: the connection was lost"), NULL;
    if (!(s = stmt_for(t, sql, n)))
        return NULL;
    return checked(t, PQexecPrepared(t->c->pg, s->name, n, params, lengths, formats, 0));
}

int
pg_run(PGconn *c, const char *sql, char *why, size_t n)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        one_line(why, n, r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(c));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* ---- accessors -------------------------------------------------------------- */

int64_t
pg_int(const PGresult *r, int row, int col, int64_t dflt)
{
    if (PQgetisnull(r, row, col))
        return dflt;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *
pg_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

char *
pg_strdup(const PGresult *r, int row, int col)
{
    const char *s = pg_str(r, row, col);

    return s ? strdup(s) : NULL;
}

bool
pg_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

unsigned char *
pg_bytea(const PGresult *r, int row, int col, size_t *len)
{
    unsigned char *raw, *out;
    size_t n = 0;

    *len = 0;
    if (PQgetisnull(r, row, col))
        return NULL;
    if (!(raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n)))
        return NULL;
    if ((out = malloc(n ? n : 1))) {
        memcpy(out, raw, n);
        *len = n;
    }
    PQfreemem(raw);
    return out;
}

int64_t
pg_changes(const PGresult *r)
{
    const char *n = PQcmdTuples((PGresult *)r);

    return n && *n ? strtoll(n, NULL, 10) : 0;
}

/* ---- connections --------------------------------------------------------------- */

/* The server's warnings become log lines (stderr is not for them). */
static void
notice(void *arg, const char *msg)
{
    char line[400];

    (void)arg;
    one_line(line, sizeof line, msg);
    log_event("warn", "db.notice", json_pack("{s:s}", "message", line));
}

/* A new connection to cfg.db_path with batond's session settings; NULL
 * with why set. The URL's own parameters win over the defaults given
 * here (connect_timeout, application_name); why never holds the URL. */
static PGconn *
pg_connect_raw(char *why, size_t n)
{
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const vals[] = {"10", "batond", cfg.db_path, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);

    if (!pg) {
        snprintf(why, n, "cannot connect to the database: out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        char line[400];

        one_line(line, sizeof line, PQerrorMessage(pg));
        snprintf(why, n, "cannot connect to the database: %s", line);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, notice, NULL);
    if (pg_run(pg, "SET synchronous_commit = on; SET client_min_messages = warning; "
                   "SET default_transaction_isolation = 'read committed'", why, n) < 0) {
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static int
pg_connect(struct sconn **out, char *why, size_t n)
{
    struct sconn *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    if (!(c->pg = pg_connect_raw(why, n))) {
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

static void
pg_disconnect(struct sconn *c)
{
    if (!c)
        return;
    while (c->stmts) {
        struct pg_stmt *next = c->stmts->next;
        free(c->stmts);
        c->stmts = next;
    }
    PQfinish(c->pg);
    free(c);
}

/* ---- readers: one connection per thread, closed when the thread ends -------- */

static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void
reader_gone(void *c)
{
    pg_disconnect(c);
}

static void
reader_key_init(void)
{
    pthread_key_create(&reader_key, reader_gone);
}

/* The thread's read connection; a broken one is replaced. */
static struct sconn *
pg_reader(void)
{
    struct sconn *c;
    char why[256];

    pthread_once(&reader_once, reader_key_init);
    c = pthread_getspecific(reader_key);
    if (c && (c->broken || PQstatus(c->pg) != CONNECTION_OK)) {
        pg_disconnect(c);
        pthread_setspecific(reader_key, NULL);
        c = NULL;
    }
    if (!c) {
        if (pg_connect(&c, why, sizeof why) < 0)
            return NULL;
        pthread_setspecific(reader_key, c);
    }
    return c;
}

/* Reads run in autocommit (each statement its own snapshot): a read
 * holds nothing once its results are cleared. */
static void
pg_read_done(struct sconn *c)
{
    (void)c;
}

/* ---- the clock ------------------------------------------------------------------ */

#define PG_CLOCK "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

/* Inside a transaction the transaction's time; else the database's clock
 * now (the local clock when the database cannot be reached: the read that
 * follows fails anyway). */
static int64_t
pg_now(struct sconn *c)
{
    PGresult *r;
    int64_t now = -1;

    if (c->in_tx)
        return c->now;
    if (!c->broken) {
        r = PQexec(c->pg, PG_CLOCK);
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            now = pg_int(r, 0, 0, -1);
        else if (PQstatus(c->pg) != CONNECTION_OK)
            c->broken = true;
        PQclear(r);
    }
    return now >= 0 ? now : now_ms();
}

/* ---- the writer's transaction ------------------------------------------------ */

static int
pg_begin(struct sconn *c, struct fault *f)
{
    PGresult *r;

    c->retry = false;
    c->savepoints = 0;
    if (c->broken) {
        f->code = "unavailable";
        snprintf(f->msg, sizeof f->msg, "database unavailable: the connection was lost");
        return -1;
    }
    /* one round trip: the result of the last statement is the clock */
    r = PQexec(c->pg, "BEGIN ISOLATION LEVEL READ COMMITTED; " PG_CLOCK);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        conn_fault(c, r, f);
        PQclear(r);
        if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        return -1;
    }
    c->now = pg_int(r, 0, 0, 0);
    c->in_tx = true;
    PQclear(r);
    return 0;
}

/* Run one transaction-control statement; 0 or -1 (c marked as pg_fail
 * would). */
static int
control(struct sconn *c, const char *sql)
{
    PGresult *r;
    char msg[480];
    int rc = 0;

    if (c->broken)
        return -1;
    r = PQexec(c->pg, sql);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        classify(c, r, msg, sizeof msg);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static int
pg_savepoint(struct sconn *c)
{
    if (control(c, "SAVEPOINT req") < 0)
        return -1;
    c->savepoints++;
    return 0;
}

static int
pg_release(struct sconn *c)
{
    if (control(c, "RELEASE SAVEPOINT req") < 0)
        return -1;
    c->savepoints--;
    return 0;
}

/* Undo the writes since the latest savepoint; the savepoint stays (as in
 * SQL), and a statement error inside it is forgotten with them. */
static int
pg_rollback_to(struct sconn *c)
{
    return control(c, "ROLLBACK TO SAVEPOINT req");
}

/* Whether nothing more of the batch can run: the connection is lost, the
 * batch must be retried as a whole (a serialization failure or deadlock),
 * or the transaction is aborted where no savepoint can rescue it. A
 * failed statement inside a savepoint is not that: rollback_to undoes it. */
static bool
pg_aborted(struct sconn *c)
{
    PGTransactionStatusType st;

    if (c->broken || c->retry || PQstatus(c->pg) != CONNECTION_OK)
        return true;
    st = PQtransactionStatus(c->pg);
    return st == PQTRANS_IDLE || st == PQTRANS_UNKNOWN || (st == PQTRANS_INERROR && c->savepoints <= 0);
}

static int
pg_commit(struct sconn *c, struct fault *f)
{
    PGresult *r;
    int rc = 0;

    if (c->broken) {
        f->code = "unavailable";
        snprintf(f->msg, sizeof f->msg, "database unavailable: the connection was lost");
        return -1;
    }
    r = PQexec(c->pg, "COMMIT");
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = conn_fault(c, r, f);
    else if (strcmp(PQcmdStatus(r), "COMMIT")) {
        /* COMMIT of an aborted transaction answers ROLLBACK */
        f->code = "unavailable";
        snprintf(f->msg, sizeof f->msg, "database unavailable: the transaction was rolled back");
        rc = -1;
    }
    PQclear(r);
    if (rc == 0) {
        c->in_tx = false;
        c->savepoints = 0;
    }
    return rc;
}

static void
pg_rollback(struct sconn *c)
{
    if (!c->broken && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    c->in_tx = false;
    c->savepoints = 0;
}

/* ---- migrations --------------------------------------------------------------- */

/* On pg, holding the migration lock: create schema_migrations when it is
 * missing and check that every recorded version is one of m's, under the
 * same name. 0, -1 on error, -2 when the database is newer than (or
 * differs from) this binary. */
static int
migrations_check(PGconn *pg, const struct migration *m, int known, char *why, size_t n)
{
    PGresult *r;
    int rc = 0;

    if (pg_run(pg, pg_migrations_table, why, n) < 0)
        return -1;
    r = PQexec(pg, "SELECT version, name FROM schema_migrations ORDER BY version");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        one_line(why, n, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        int v = (int)pg_int(r, i, 0, 0);
        const char *name = pg_str(r, i, 1);

        if (v < 1 || v > known) {
            snprintf(why, n, "the database has migration %d (%.100s), newer than this batond, which knows up "
                     "to %d (%s): run a newer batond", v, name ? name : "?", known,
                     known ? m[known - 1].name : "none");
            rc = -2;
        } else if (!name || strcmp(name, m[v - 1].name)) {
            snprintf(why, n, "the database has migration %d as %.100s but this batond has %s: it was made "
                     "by another build", v, name ? name : "?", m[v - 1].name);
            rc = -2;
        }
    }
    PQclear(r);
    return rc;
}

/* Apply migration i (version i + 1) unless recorded, in one transaction
 * with its row. 0 or -1 with why. */
static int
migration_apply(PGconn *pg, const struct migration *m, int i, char *why, size_t n)
{
    char version[24], at[24], err[400];
    const char *p[3] = {pg_i64(version, i + 1), m[i].name, NULL};
    PGresult *r;
    bool applied;

    if (pg_run(pg, "BEGIN", why, n) < 0)
        return -1;
    r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, p, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        one_line(err, sizeof err, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        PQclear(r);
        goto failed;
    }
    applied = PQntuples(r) > 0;
    PQclear(r);
    if (!applied) {
        if (pg_run(pg, m[i].sql, err, sizeof err) < 0)
            goto failed;
        p[2] = pg_i64(at, now_ms());
        r = PQexecParams(pg, "INSERT INTO schema_migrations(version, name, applied_at) VALUES($1, $2, $3)",
                         3, NULL, p, NULL, NULL, 0);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            one_line(err, sizeof err, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
            PQclear(r);
            goto failed;
        }
        PQclear(r);
    }
    if (pg_run(pg, "COMMIT", err, sizeof err) < 0)
        goto failed;
    return 0;
failed:
    snprintf(why, n, "migration %s failed: %s", m[i].name, err);
    PQclear(PQexec(pg, "ROLLBACK"));
    return -1;
}

/* Apply the missing migrations of pg_migrations under the migration
 * lock. 0, -1 on error, -2 when the database is newer than this binary. */
static int
pg_migrate(PGconn *pg, char *why, size_t n)
{
    const struct migration *m = pg_migrations;
    char sql[96];
    int known = 0, rc;

    while (m[known].name)
        known++;
    /* a session lock: held across the migrations' own transactions, let
     * go on unlock or when the connection ends (a crash included) */
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", PG_MIGRATE_LOCK);
    if (pg_run(pg, sql, why, n) < 0)
        return -1;
    rc = migrations_check(pg, m, known, why, n);
    for (int i = 0; i < known && rc == 0; i++)
        rc = migration_apply(pg, m, i, why, n);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", PG_MIGRATE_LOCK);
    PQclear(PQexec(pg, sql));
    return rc;
}

/* ---- open and close ----------------------------------------------------------- */

static int
pg_open(char *why, size_t n)
{
    PGconn *pg = pg_connect_raw(why, n);
    int rc;

    if (!pg) {
        log_event("error", "db.open_failed", json_pack("{s:s}", "reason", why));
        return -1;
    }
    rc = pg_migrate(pg, why, n);
    PQfinish(pg);
    if (rc < 0) {
        log_event("error", rc == -2 ? "db.schema_newer" : "db.open_failed", json_pack("{s:s}", "reason", why));
        return rc == -2 ? -3 : -1;
    }
    return 0;
}

/* Nothing is held between open and close: each connection is closed by
 * its owner (disconnect, or the reading thread's end). */
static void
pg_close(void)
{
}

const struct store_ops store_pg = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .reader = pg_reader,
    .read_done = pg_read_done,
    .now = pg_now,
    .begin = pg_begin,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_to = pg_rollback_to,
    .aborted = pg_aborted,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .jobs = &pg_jobs_ops,
    .leases = &pg_leases_ops,
    .dedupe = &pg_dedupe_ops,
    .sessions = &pg_sessions_ops,
    .messages = &pg_messages_ops,
    .events = &pg_events_ops,
    .queues = &pg_queues_ops,
    .stats = &pg_stats_ops,
    .schedules = &pg_schedules_ops,
    .replicas = &pg_replicas_ops,
};
