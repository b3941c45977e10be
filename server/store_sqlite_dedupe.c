/* store_sqlite_dedupe.c -- the SQLite operations of inbound dedupe
 * (struct store_dedupe).
 *
 * DESIGN
 * Check-and-register is one UPSERT: it inserts the key, or replaces an
 * entry whose expiry has passed, and does nothing to a live entry.
 * sqlite3_changes() then says whether this call was first; only a
 * duplicate reads the live entry back. Writes on every connection run in
 * BEGIN IMMEDIATE transactions, so of concurrent calls with the same key
 * exactly one sees a change.
 */
#include "store_sqlite.h"

static int
sq_dedupe_check_register(struct tx *t, const char *channel, const char *id, int64_t ttl_ms,
                         struct dedupe_result *res)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO dedupe(channel, channel_message_id, first_seen_at, expires_at)"
        " VALUES(?1, ?2, ?3, ?4)"
        " ON CONFLICT(channel, channel_message_id) DO UPDATE"
        " SET first_seen_at = excluded.first_seen_at, expires_at = excluded.expires_at"
        " WHERE dedupe.expires_at <= excluded.first_seen_at");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_int64(st, 4, t->now + ttl_ms);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if (sqlite3_changes(SQ(t)) == 1) {
        res->duplicate = false;
        res->first_seen_at = t->now;
        res->expires_at = t->now + ttl_ms;
        return 0;
    }

    st = db_prep(SQ(t), "SELECT first_seen_at, expires_at FROM dedupe"
                        " WHERE channel = ?1 AND channel_message_id = ?2");
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        res->duplicate = true;
        res->first_seen_at = sqlite3_column_int64(st, 0);
        res->expires_at = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return tx_fail(t, "internal", NULL, "database error: the dedupe entry %s/%s vanished", channel, id);
    return sq_fail(t);
}

static int
sq_dedupe_prune(struct tx *t, int64_t limit, int64_t *deleted)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "DELETE FROM dedupe WHERE (channel, channel_message_id) IN"
        " (SELECT channel, channel_message_id FROM dedupe WHERE expires_at <= ?1"
        "  ORDER BY expires_at LIMIT ?2)");
    int rc;

    *deleted = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, limit);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    *deleted = sqlite3_changes(SQ(t));
    return 0;
}

const struct store_dedupe sqlite_dedupe_ops = {
    .check_register = sq_dedupe_check_register,
    .prune = sq_dedupe_prune,
};
