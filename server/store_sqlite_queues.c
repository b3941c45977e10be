/* store_sqlite_queues.c -- the SQLite operations of queue settings
 * (struct store_queues): the row of queue_settings by its primary key.
 *
 * DESIGN
 * get is the read every claim makes: one lookup by primary key in a small
 * table (WITHOUT ROWID), nothing else. set_paused reads the row first and
 * writes only when the state changes, so a repeated pause keeps the first
 * one's time, address and reason; the write is one UPSERT by key.
 *
 * Rate limits: the limits are columns of the same row (read by the same
 * lookup); the claims of limited buckets are rows of rate_claims, found
 * by rate_claims_by_bucket (queue, key, at): "has the bucket had `limit`
 * claims since now - period" is one probe at OFFSET limit - 1 from the
 * newest, so a check costs at most `limit` index steps and no count of
 * the whole window. Each record deletes its bucket's expired records (a
 * range of the same index), which bounds a busy bucket to about `limit`
 * rows; rate_prune (the sweep) takes the idle buckets' leftovers.
 */
#include <string.h>

#include "store_sqlite.h"

#define COLS                                                                     \
    "queue, paused, paused_at, paused_by, reason, updated_at, limits_set, rate_limit," \
    " rate_period_ms, key_rate_limit, key_rate_period_ms"

static void
copy_col(char *dst, size_t n, sqlite3_stmt *st, int i)
{
    const char *v = (const char *)sqlite3_column_text(st, i);

    snprintf(dst, n, "%s", v ? v : "");
}

static void
row_of(sqlite3_stmt *st, struct queue_settings *s)
{
    memset(s, 0, sizeof *s);
    copy_col(s->queue, sizeof s->queue, st, 0);
    s->paused = sqlite3_column_int64(st, 1) != 0;
    s->paused_at = sqlite3_column_int64(st, 2);     /* NULL reads 0 */
    copy_col(s->paused_by, sizeof s->paused_by, st, 3);
    copy_col(s->reason, sizeof s->reason, st, 4);
    s->updated_at = sqlite3_column_int64(st, 5);
    s->limits_set = sqlite3_column_int64(st, 6) != 0;
    s->rate.limit = sqlite3_column_int64(st, 7);
    s->rate.period_ms = sqlite3_column_int64(st, 8);
    s->key_rate.limit = sqlite3_column_int64(st, 9);
    s->key_rate.period_ms = sqlite3_column_int64(st, 10);
}

static int
sq_queue_get(struct tx *t, const char *queue, struct queue_settings *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " COLS " FROM queue_settings WHERE queue = ?1");
    int rc;

    memset(out, 0, sizeof *out);
    snprintf(out->queue, sizeof out->queue, "%s", queue);
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_of(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sq_fail(t);
}

static int
sq_queue_set_paused(struct tx *t, const char *queue, bool paused, const char *by, const char *reason,
                    struct queue_settings *out)
{
    struct queue_settings cur;
    sqlite3_stmt *st;
    int rc;

    if (sq_queue_get(t, queue, &cur) < 0)
        return -1;
    if (cur.paused == paused) {
        if (out)
            *out = cur;
        return 0;
    }
    st = db_prep(SQ(t),
        "INSERT INTO queue_settings(queue, paused, paused_at, paused_by, reason, updated_at)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT(queue) DO UPDATE SET paused = excluded.paused,"
        " paused_at = excluded.paused_at, paused_by = excluded.paused_by,"
        " reason = excluded.reason, updated_at = excluded.updated_at");
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, paused);
    if (paused) {
        sqlite3_bind_int64(st, 3, t->now);
        if (by)
            sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC);
        if (reason)
            sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 6, t->now);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if (out && sq_queue_get(t, queue, out) < 0)
        return -1;
    return 1;
}

static int
sq_queue_list(struct tx *t, int (*each)(const struct queue_settings *s, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " COLS " FROM queue_settings ORDER BY queue");
    struct queue_settings s;
    int rc, stop = 0;

    if (!st)
        return sq_fail(t);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        row_of(st, &s);
        if ((stop = each(&s, arg)))
            break;
    }
    if (!stop && rc != SQLITE_DONE)
        stop = sq_fail(t);
    sqlite3_reset(st);
    return stop;
}

static int
sq_queue_set_limits(struct tx *t, const char *queue, bool set, const struct rate_limit *rate,
                    const struct rate_limit *key_rate, struct queue_settings *out)
{
    static const struct rate_limit none;
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO queue_settings(queue, updated_at, limits_set, rate_limit, rate_period_ms,"
        " key_rate_limit, key_rate_period_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT(queue) DO UPDATE SET updated_at = excluded.updated_at,"
        " limits_set = excluded.limits_set, rate_limit = excluded.rate_limit,"
        " rate_period_ms = excluded.rate_period_ms, key_rate_limit = excluded.key_rate_limit,"
        " key_rate_period_ms = excluded.key_rate_period_ms");
    int rc;

    if (!st)
        return sq_fail(t);
    if (!set || !rate)
        rate = &none;
    if (!set || !key_rate)
        key_rate = &none;
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, t->now);
    sqlite3_bind_int(st, 3, set);
    sqlite3_bind_int64(st, 4, rate->limit);
    sqlite3_bind_int64(st, 5, rate->period_ms);
    sqlite3_bind_int64(st, 6, key_rate->limit);
    sqlite3_bind_int64(st, 7, key_rate->period_ms);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    return out && sq_queue_get(t, queue, out) < 0 ? -1 : 0;
}

/* Run st (bound, answering nothing) to its end. 0 or -1. */
static int
run_done(struct tx *t, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
sq_rate_record(struct tx *t, const char *queue, const char *key, int64_t period_ms)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM rate_claims WHERE queue = ?1 AND key = ?2 AND at <= ?3");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->now - period_ms);
    if (run_done(t, st) < 0)
        return -1;
    if (!(st = db_prep(SQ(t), "INSERT INTO rate_claims(queue, key, at) VALUES(?1, ?2, ?3)")))
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->now);
    return run_done(t, st);
}

static int
sq_rate_free_at(struct tx *t, const char *queue, const char *key, const struct rate_limit *l,
                int64_t *at)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT at FROM rate_claims WHERE queue = ?1 AND key = ?2"
                                      " AND at > ?3 ORDER BY at DESC LIMIT 1 OFFSET ?4 - 1");
    int rc;

    *at = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->now - l->period_ms);
    sqlite3_bind_int64(st, 4, l->limit);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        *at = sqlite3_column_int64(st, 0) + l->period_ms;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
sq_rate_keys_free_at(struct tx *t, const char *queue, const struct rate_limit *l, int64_t *at)
{
    /* for each key with a due job: its limit-th newest claim in the window */
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT min(free) FROM (SELECT (SELECT r.at FROM rate_claims AS r WHERE r.queue = ?1"
        "   AND r.key = k.rate_key AND r.at > ?2 - ?4 ORDER BY r.at DESC LIMIT 1 OFFSET ?3 - 1) + ?4"
        "   AS free FROM (SELECT DISTINCT rate_key FROM jobs INDEXED BY jobs_rate_keys"
        "     WHERE queue = ?1 AND rate_key IS NOT NULL AND status = 'pending' AND held = 0"
        "     AND run_at <= ?2) AS k)");
    int rc;

    *at = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, t->now);
    sqlite3_bind_int64(st, 3, l->limit);
    sqlite3_bind_int64(st, 4, l->period_ms);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
sq_rate_prune(struct tx *t, int64_t before, size_t max, size_t *n, bool *more)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM rate_claims WHERE rowid IN (SELECT rowid FROM"
                                      " rate_claims WHERE at < ?1 ORDER BY at LIMIT ?2)");

    *n = 0;
    *more = false;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    if (run_done(t, st) < 0)
        return -1;
    *n = (size_t)sqlite3_changes(SQ(t));
    *more = *n == max;
    return 0;
}

const struct store_queues sqlite_queues_ops = {
    .get = sq_queue_get,
    .set_paused = sq_queue_set_paused,
    .list = sq_queue_list,
    .set_limits = sq_queue_set_limits,
    .rate_record = sq_rate_record,
    .rate_free_at = sq_rate_free_at,
    .rate_keys_free_at = sq_rate_keys_free_at,
    .rate_prune = sq_rate_prune,
};
