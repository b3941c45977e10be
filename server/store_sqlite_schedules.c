/* store_sqlite_schedules.c -- the SQLite operations of schedules (struct
 * store_schedules). advance is a single-row conditional UPDATE by primary
 * key (no RETURNING: it runs many times in one maintenance write).
 */
#include <string.h>

#include "store_sqlite.h"

#define SCHED_COLS "name, queue, payload, cron, timezone, every_ms, paused, next_run, last_run," \
                   " last_job_id, runs, created_at, updated_at"

/* A row of SCHED_COLS into *s; copy: the strings into s->mem. -1 out of memory. */
static int
sched_fill(sqlite3_stmt *st, struct schedule *s, bool copy)
{
    const char **dst[] = {&s->name, &s->queue, &s->payload, &s->cron, &s->timezone};
    size_t len[5];

    s->every_ms = sqlite3_column_type(st, 5) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 5);
    s->paused = sqlite3_column_int64(st, 6) != 0;
    s->next_run = sqlite3_column_int64(st, 7);
    s->last_run = sqlite3_column_type(st, 8) == SQLITE_NULL ? JOB_NONE : sqlite3_column_int64(st, 8);
    s->last_job_id = sqlite3_column_int64(st, 9);
    s->runs = sqlite3_column_int64(st, 10);
    s->created_at = sqlite3_column_int64(st, 11);
    s->updated_at = sqlite3_column_int64(st, 12);
    s->mem = NULL;
    for (int i = 0; i < 5; i++) {
        *dst[i] = (const char *)sqlite3_column_text(st, i);
        len[i] = (size_t)sqlite3_column_bytes(st, i);
    }
    return copy ? strings_own(dst, len, 5, &s->mem) : 0;
}

/* Run st (at most one row) into *out. 1, 0, -1. st is reset. */
static int
step_one(struct tx *t, sqlite3_stmt *st, struct schedule *out)
{
    int rc = sqlite3_step(st);

    memset(out, 0, sizeof *out);
    if (rc == SQLITE_ROW) {
        if (sched_fill(st, out, true) < 0) {
            sqlite3_reset(st);
            return tx_fail(t, "unavailable", NULL, "out of memory");
        }
        sqlite3_reset(st);
        return 1;
    }
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    sq_fail(t);
    sqlite3_reset(st);
    return -1;
}

/* Run a change statement: the number of rows changed, or -1. */
static int
run_change(struct tx *t, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    return sqlite3_changes(SQ(t)) > 0 ? 1 : 0;
}

static int
sq_sched_insert(struct tx *t, const struct schedule *s)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO schedules(name, queue, payload, cron, every_ms, timezone, paused, next_run,"
        " created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)"
        " ON CONFLICT(name) DO NOTHING");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->payload, -1, SQLITE_STATIC);
    if (s->cron)
        sqlite3_bind_text(st, 4, s->cron, -1, SQLITE_STATIC);
    if (s->every_ms)
        sqlite3_bind_int64(st, 5, s->every_ms);
    sqlite3_bind_text(st, 6, s->timezone ? s->timezone : "UTC", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, s->paused);
    sqlite3_bind_int64(st, 8, s->next_run);
    sqlite3_bind_int64(st, 9, t->now);
    return run_change(t, st);
}

static int
sq_sched_get(struct tx *t, const char *name, struct schedule *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " SCHED_COLS " FROM schedules WHERE name = ?1");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return step_one(t, st, out);
}

static int
sq_sched_list(struct tx *t, int (*each)(const struct schedule *s, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " SCHED_COLS " FROM schedules ORDER BY name");
    int rc;

    if (!st)
        return sq_fail(t);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct schedule s;
        int r;
        sched_fill(st, &s, false);
        if ((r = each(&s, arg))) {
            sqlite3_reset(st);
            return r;
        }
    }
    if (rc != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

static int
sq_sched_del(struct tx *t, const char *name)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM schedules WHERE name = ?1");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return run_change(t, st);
}

static int
sq_sched_set_paused(struct tx *t, const char *name, bool paused, int64_t next_run)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE schedules SET paused = ?2, next_run = ?3, updated_at = ?4 WHERE name = ?1");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, paused);
    sqlite3_bind_int64(st, 3, next_run);
    sqlite3_bind_int64(st, 4, t->now);
    return run_change(t, st);
}

static int
sq_sched_due(struct tx *t, struct schedule *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " SCHED_COLS " FROM schedules"
                                      " WHERE paused = 0 AND next_run <= ?1 ORDER BY next_run LIMIT 1");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    return step_one(t, st, out);
}

static int
sq_sched_advance(struct tx *t, const char *name, int64_t from, int64_t to, int64_t job_id)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE schedules SET next_run = ?3, last_run = ?2, last_job_id = ?4, runs = runs + 1,"
        " updated_at = ?5 WHERE name = ?1 AND next_run = ?2");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    sqlite3_bind_int64(st, 4, job_id);
    sqlite3_bind_int64(st, 5, t->now);
    return run_change(t, st);
}

static int
sq_sched_earliest(struct tx *t, int64_t *at)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT min(next_run) FROM schedules WHERE paused = 0");
    int rc;

    *at = 0;
    if (!st)
        return sq_fail(t);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return sq_fail(t);
    return 0;
}

const struct store_schedules sqlite_schedules_ops = {
    .insert = sq_sched_insert,
    .get = sq_sched_get,
    .list = sq_sched_list,
    .del = sq_sched_del,
    .set_paused = sq_sched_set_paused,
    .due = sq_sched_due,
    .advance = sq_sched_advance,
    .earliest = sq_sched_earliest,
};
