/* store_sqlite_queues.c -- the SQLite operations of queue settings
 * (struct store_queues): the row of queue_settings by its primary key.
 *
 * DESIGN
 * get is the read every claim makes: one lookup by primary key in a small
 * table (WITHOUT ROWID), nothing else. set_paused reads the row first and
 * writes only when the state changes, so a repeated pause keeps the first
 * one's time, address and reason; the write is one UPSERT by key.
 */
#include <string.h>

#include "store_sqlite.h"

#define COLS "queue, paused, paused_at, paused_by, reason, updated_at"

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

const struct store_queues sqlite_queues_ops = {
    .get = sq_queue_get,
    .set_paused = sq_queue_set_paused,
    .list = sq_queue_list,
};
