/* store_pg_dedupe.c -- the dedupe operations of the PostgreSQL store
 * (store.h, struct store_dedupe; the table is schema/postgres/004_dedupe.sql).
 *
 * DESIGN
 * Check-and-register is one upsert: INSERT .. ON CONFLICT DO UPDATE .. WHERE
 * the entry has expired at t->now, RETURNING the entry. A row back means
 * this call registered the id (inserted it, or replaced an expired entry):
 * duplicate false, in one round trip, the usual case. No row means a live
 * entry was there: the call is a duplicate and reads it back.
 *
 * With several replicas at READ COMMITTED: a second registration of the
 * same id conflicts with the first one's row -- committed, or not yet, and
 * then it waits for that transaction to end -- and judges its WHERE on the
 * committed row, which is live: no row back. So of concurrent callers
 * exactly one sees duplicate false. The read-back is a statement of its
 * own, with a snapshot taken after the conflict, so it sees the entry the
 * upsert ran into; an upsert whose WHERE fails still locks the row it
 * conflicted with, so no prune of another replica (which may judge the
 * entry expired by a later clock) can delete it before we commit.
 */
#include "store_pg.h"

static int
pg_dedupe_check_register(struct tx *t, const char *channel, const char *id, int64_t ttl_ms,
                         struct dedupe_result *res)
{
    char now[24], exp[24];
    const char *p[] = {channel, id, pg_i64(now, t->now), pg_i64(exp, t->now + ttl_ms)};
    PGresult *r = pg_exec(t,
        "INSERT INTO dedupe(channel, channel_message_id, first_seen_at, expires_at)"
        " VALUES($1, $2, $3::bigint, $4::bigint)"
        " ON CONFLICT (channel, channel_message_id) DO UPDATE"
        " SET first_seen_at = EXCLUDED.first_seen_at, expires_at = EXCLUDED.expires_at"
        " WHERE dedupe.expires_at <= EXCLUDED.first_seen_at"
        " RETURNING first_seen_at, expires_at", 4, p);
    int rows;

    if (!r)
        return -1;
    res->duplicate = PQntuples(r) == 0;
    if (!res->duplicate) {
        res->first_seen_at = pg_int(r, 0, 0, 0);
        res->expires_at = pg_int(r, 0, 1, 0);
        PQclear(r);
        return 0;
    }
    PQclear(r);

    r = pg_exec(t, "SELECT first_seen_at, expires_at FROM dedupe"
                   " WHERE channel = $1 AND channel_message_id = $2", 2, p);
    if (!r)
        return -1;
    if ((rows = PQntuples(r)) > 0) {
        res->first_seen_at = pg_int(r, 0, 0, 0);
        res->expires_at = pg_int(r, 0, 1, 0);
    }
    PQclear(r);
    if (rows == 0)
        return tx_fail(t, "internal", NULL, "database error: the dedupe entry %s/%s vanished", channel, id);
    return 0;
}

static int
pg_dedupe_prune(struct tx *t, int64_t limit, int64_t *deleted)
{
    char now[24], lim[24];
    const char *p[] = {pg_i64(now, t->now), pg_i64(lim, limit)};
    PGresult *r;

    /* SKIP LOCKED: an entry another replica is pruning (or replacing) right
     * now is left to it rather than waited for; the next sweep sees the rest */
    *deleted = 0;
    r = pg_exec(t, "DELETE FROM dedupe WHERE (channel, channel_message_id) IN"
                   " (SELECT channel, channel_message_id FROM dedupe WHERE expires_at <= $1::bigint"
                   "  ORDER BY expires_at LIMIT $2::bigint FOR UPDATE SKIP LOCKED)", 2, p);
    if (!r)
        return -1;
    *deleted = pg_changes(r);
    PQclear(r);
    return 0;
}

const struct store_dedupe pg_dedupe_ops = {
    .check_register = pg_dedupe_check_register,
    .prune = pg_dedupe_prune,
};
