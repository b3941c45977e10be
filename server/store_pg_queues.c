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
 *
 * Rate limits: the limits are columns of the same row. A bucket's claims
 * are rows of rate_claims counted over the window, as on SQLite. Several
 * replicas claiming from one limited queue must each see the others'
 * records before deciding, or two could both find a bucket one short of
 * full and both claim: the claims of a limited queue (the queue check,
 * and a claim with a key limit) first take a transaction advisory lock of
 * the queue, in a statement of their own, so that the statements that
 * count run on a snapshot taken after the lock -- one holding every record
 * committed by the transactions that held it before. The lock is held to
 * the commit of the writer's batch: a limited queue's claims go one batch
 * at a time across replicas; queues without limits never take it.
 */
#include <string.h>

#include "store_pg.h"

#define COLS                                                                     \
    "queue, paused, paused_at, paused_by, reason, updated_at, limits_set, rate_limit," \
    " rate_period_ms, key_rate_limit, key_rate_period_ms"

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
    s->limits_set = pg_bool(r, row, 6);
    s->rate.limit = pg_int(r, row, 7, 0);
    s->rate.period_ms = pg_int(r, row, 8, 0);
    s->key_rate.limit = pg_int(r, row, 9, 0);
    s->key_rate.period_ms = pg_int(r, row, 10, 0);
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

static int
pg_queue_set_limits(struct tx *t, const char *queue, bool set, const struct rate_limit *rate,
                    const struct rate_limit *key_rate, struct queue_settings *out)
{
    static const struct rate_limit none;
    char now[24], rl[24], rp[24], kl[24], kp[24];
    const char *p[7];
    PGresult *r;
    int rows;

    if (!set || !rate)
        rate = &none;
    if (!set || !key_rate)
        key_rate = &none;
    p[0] = queue;
    p[1] = pg_i64(now, t->now);
    p[2] = set ? "true" : "false";
    p[3] = pg_i64(rl, rate->limit);
    p[4] = pg_i64(rp, rate->period_ms);
    p[5] = pg_i64(kl, key_rate->limit);
    p[6] = pg_i64(kp, key_rate->period_ms);
    r = pg_exec(t, "INSERT INTO queue_settings(queue, updated_at, limits_set, rate_limit, rate_period_ms,"
                   " key_rate_limit, key_rate_period_ms) VALUES($1, $2, $3, $4, $5, $6, $7)"
                   " ON CONFLICT(queue) DO UPDATE SET updated_at = excluded.updated_at,"
                   " limits_set = excluded.limits_set, rate_limit = excluded.rate_limit,"
                   " rate_period_ms = excluded.rate_period_ms, key_rate_limit = excluded.key_rate_limit,"
                   " key_rate_period_ms = excluded.key_rate_period_ms RETURNING " COLS, 7, p);
    if (!r)
        return -1;
    if ((rows = PQntuples(r)) > 0 && out)
        row_of(r, 0, out);
    PQclear(r);
    return rows > 0 ? 0 : tx_fail(t, "internal", NULL, "database error: the queue's settings are not there");
}

/* the lock of a rate-limited queue ('rate' and 0x1f cannot start a queue name) */
int
pg_rate_lock(struct tx *t, const char *queue)
{
    const char *p[] = {queue};
    PGresult *r = pg_exec(t, "SELECT pg_advisory_xact_lock(hashtextextended('rate' || E'\\x1f' || $1::text, 0))",
                          1, p);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static int
pg_rate_record(struct tx *t, const char *queue, const char *key, int64_t period_ms)
{
    char now[24], cut[24];
    const char *p[] = {queue, key, pg_i64(now, t->now), pg_i64(cut, t->now - period_ms)};
    PGresult *r = pg_exec(t, "WITH gone AS (DELETE FROM rate_claims WHERE queue = $1 AND key = $2"
                             " AND at <= $4)"
                             " INSERT INTO rate_claims(queue, key, at) VALUES($1, $2, $3)", 4, p);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static int
pg_rate_free_at(struct tx *t, const char *queue, const char *key, const struct rate_limit *l,
                int64_t *at)
{
    char cut[24], limit[24];
    const char *p[] = {queue, key, pg_i64(cut, t->now - l->period_ms), pg_i64(limit, l->limit)};
    PGresult *r;

    *at = 0;
    if (pg_rate_lock(t, queue) < 0)
        return -1;
    if (!(r = pg_exec(t, "SELECT at FROM rate_claims WHERE queue = $1 AND key = $2 AND at > $3"
                         " ORDER BY at DESC LIMIT 1 OFFSET $4::bigint - 1", 4, p)))
        return -1;
    if (PQntuples(r) > 0)
        *at = pg_int(r, 0, 0, 0) + l->period_ms;
    PQclear(r);
    return 0;
}

static int
pg_rate_keys_free_at(struct tx *t, const char *queue, const struct rate_limit *l, int64_t *at)
{
    char now[24], limit[24], period[24];
    const char *p[] = {queue, pg_i64(now, t->now), pg_i64(limit, l->limit), pg_i64(period, l->period_ms)};
    /* for each key with a due job: its limit-th newest claim in the window */
    PGresult *r = pg_exec(t,
        "SELECT min((SELECT r.at FROM rate_claims AS r WHERE r.queue = $1 AND r.key = k.rate_key"
        "   AND r.at > $2::bigint - $4::bigint ORDER BY r.at DESC LIMIT 1 OFFSET $3::bigint - 1)"
        "   + $4::bigint)"
        " FROM (SELECT DISTINCT rate_key FROM jobs WHERE queue = $1 AND rate_key IS NOT NULL"
        "   AND status = 'pending' AND NOT held AND run_at <= $2) AS k", 4, p);

    *at = 0;
    if (!r)
        return -1;
    if (PQntuples(r) > 0)
        *at = pg_int(r, 0, 0, 0);
    PQclear(r);
    return 0;
}

static int
pg_rate_prune(struct tx *t, int64_t before, size_t max, size_t *n, bool *more)
{
    char cut[24], lim[24];
    const char *p[] = {pg_i64(cut, before), pg_i64(lim, (int64_t)max)};
    PGresult *r = pg_exec(t, "DELETE FROM rate_claims WHERE ctid IN (SELECT ctid FROM rate_claims"
                             " WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)", 2, p);

    *n = 0;
    *more = false;
    if (!r)
        return -1;
    *n = (size_t)pg_changes(r);
    *more = *n == max;
    PQclear(r);
    return 0;
}

const struct store_queues pg_queues_ops = {
    .get = pg_queue_get,
    .set_paused = pg_queue_set_paused,
    .list = pg_queue_list,
    .set_limits = pg_queue_set_limits,
    .rate_record = pg_rate_record,
    .rate_free_at = pg_rate_free_at,
    .rate_keys_free_at = pg_rate_keys_free_at,
    .rate_prune = pg_rate_prune,
};
