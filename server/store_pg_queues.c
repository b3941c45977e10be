/* store_pg_queues.c -- the queues operations of the PostgreSQL store
 * (store.h, struct store_queues): the row of queue_settings by its key.
 *
 * DESIGN
 * get is the read every claim makes: one lookup by primary key. set_paused
 * is one statement that decides and writes, so that of two replicas
 * pausing (or resuming) a queue at once exactly one changes it and the
 * other answers 0 with the first one's settings: a pause is an INSERT .. ON
 * CONFLICT DO UPDATE whose update applies only while the row is not
 * paused (the second pause waits for the first's row lock, then finds it
 * paused); a resume is an UPDATE of a paused row (a queue without a row is
 * not paused, and gets none). A repeated pause thus keeps the first one's
 * time, address and reason, as on SQLite.
 */
#include <string.h>

#include "store_pg.h"

#define COLS "queue, paused, paused_at, paused_by, reason, updated_at"

static void
copy_col(char *dst, size_t n, const PGresult *r, int row, int col)
{
    const char *v = pg_str(r, row, col);

    snprintf(dst, n, "%s", v ? v : "");
}

static void
row_of(const PGresult *r, int row, struct queue_settings *s)
{
    memset(s, 0, sizeof *s);
    copy_col(s->queue, sizeof s->queue, r, row, 0);
    s->paused = pg_bool(r, row, 1);
    s->paused_at = pg_int(r, row, 2, 0);
    copy_col(s->paused_by, sizeof s->paused_by, r, row, 3);
    copy_col(s->reason, sizeof s->reason, r, row, 4);
    s->updated_at = pg_int(r, row, 5, 0);
}

static int
pg_queue_get(struct tx *t, const char *queue, struct queue_settings *out)
{
    const char *p[] = {queue};
    PGresult *r;
    int rows;

    memset(out, 0, sizeof *out);
    snprintf(out->queue, sizeof out->queue, "%s", queue);
    if (!(r = pg_exec(t, "SELECT " COLS " FROM queue_settings WHERE queue = $1", 1, p)))
        return -1;
    if ((rows = PQntuples(r)) > 0)
        row_of(r, 0, out);
    PQclear(r);
    return rows > 0 ? 1 : 0;
}

static int
pg_queue_set_paused(struct tx *t, const char *queue, bool paused, const char *by, const char *reason,
                    struct queue_settings *out)
{
    char now[24];
    const char *p[] = {queue, pg_i64(now, t->now), by, reason};
    struct queue_settings cur;
    PGresult *r;
    int rows;

    if (paused)
        r = pg_exec(t, "INSERT INTO queue_settings(queue, paused, paused_at, paused_by, reason, updated_at)"
                       " VALUES($1, true, $2, $3, $4, $2)"
                       " ON CONFLICT(queue) DO UPDATE SET paused = true, paused_at = excluded.paused_at,"
                       " paused_by = excluded.paused_by, reason = excluded.reason,"
                       " updated_at = excluded.updated_at WHERE NOT queue_settings.paused"
                       " RETURNING " COLS, 4, p);
    else
        r = pg_exec(t, "UPDATE queue_settings SET paused = false, paused_at = NULL, paused_by = NULL,"
                       " reason = NULL, updated_at = $2 WHERE queue = $1 AND paused RETURNING " COLS, 2, p);
    if (!r)
        return -1;
    if ((rows = PQntuples(r)) > 0 && out)
        row_of(r, 0, out);
    PQclear(r);
    if (rows > 0)
        return 1;
    /* nothing to change: the settings as they are */
    if (pg_queue_get(t, queue, &cur) < 0)
        return -1;
    if (out)
        *out = cur;
    return 0;
}

static int
pg_queue_list(struct tx *t, int (*each)(const struct queue_settings *s, void *arg), void *arg)
{
    PGresult *r = pg_exec(t, "SELECT " COLS " FROM queue_settings ORDER BY queue", 0, NULL);
    struct queue_settings s;
    int stop = 0, rows;

    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !stop; i++) {
        row_of(r, i, &s);
        stop = each(&s, arg);
    }
    PQclear(r);
    return stop;
}

const struct store_queues pg_queues_ops = {
    .get = pg_queue_get,
    .set_paused = pg_queue_set_paused,
    .list = pg_queue_list,
};
