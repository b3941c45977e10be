/* store_sqlite_sessions.c -- the session entries in SQLite (struct
 * store_sessions; the table is schema/sqlite/005_sessions.sql).
 *
 * DESIGN
 * Every operation goes through the primary key (channel, account_id, key)
 * or its (channel, account_id) prefix, with statements cached by db_prep.
 * A clear value (enc 0) is bound as TEXT and a ciphertext (enc 1) as a
 * BLOB, as rows have always been stored; both are read back as bytes, and
 * sizes are of the bytes (CAST AS BLOB), not of characters.
 */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"

static int
sq_sessions_get(struct tx *t, const char *channel, const char *account, const char *key,
                struct session_entry *e)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT enc, value, updated_at FROM sessions"
                                      " WHERE channel = ? AND account_id = ? AND key = ?");
    const void *b;
    unsigned char *copy;
    size_t len;
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : sq_fail(t);
    }
    b = sqlite3_column_blob(st, 1);
    len = (size_t)sqlite3_column_bytes(st, 1);
    if (!(copy = malloc(len ? len : 1))) {
        sqlite3_reset(st);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    if (len)
        memcpy(copy, b, len);
    *e = (struct session_entry){channel, account, key, sqlite3_column_int(st, 0), copy, len,
                                sqlite3_column_int64(st, 2)};
    sqlite3_reset(st);
    return 1;
}

static int
sq_sessions_list(struct tx *t, const char *channel, const char *account, bool values,
                 session_visit fn, void *arg)
{
    sqlite3_stmt *st = values
        ? db_prep(SQ(t), "SELECT key, enc, value, updated_at FROM sessions"
                         " WHERE channel = ? AND account_id = ? ORDER BY key")
        : db_prep(SQ(t), "SELECT key, enc, length(CAST(value AS BLOB)), updated_at FROM sessions"
                         " WHERE channel = ? AND account_id = ? ORDER BY key");
    struct session_entry e = {.channel = channel, .account = account};
    int rc = SQLITE_DONE, stop = 0;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        e.key = (const char *)sqlite3_column_text(st, 0);
        e.enc = sqlite3_column_int(st, 1);
        if (values) {
            e.value = sqlite3_column_blob(st, 2);
            e.len = (size_t)sqlite3_column_bytes(st, 2);
        } else {
            e.value = NULL;
            e.len = (size_t)sqlite3_column_int64(st, 2);
        }
        e.updated_at = sqlite3_column_int64(st, 3);
        stop = fn(&e, arg);
    }
    if (!stop && rc != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return stop;
}

static int
sq_sessions_put(struct tx *t, const struct session_entry *e)
{
    sqlite3_stmt *st = db_prep(SQ(t), "INSERT INTO sessions(channel, account_id, key, enc, value, updated_at)"
                                      " VALUES(?, ?, ?, ?, ?, ?)"
                                      " ON CONFLICT(channel, account_id, key) DO UPDATE"
                                      " SET enc = excluded.enc, value = excluded.value,"
                                      " updated_at = excluded.updated_at");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, e->channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, e->enc);
    /* a zero-length blob, not NULL, when value is empty */
    if (e->enc)
        sqlite3_bind_blob(st, 5, e->value ? (const void *)e->value : "", (int)e->len, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, 5, e->value ? (const char *)e->value : "", (int)e->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, e->updated_at);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

static int
sq_sessions_del(struct tx *t, const char *channel, const char *account, const char *key)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM sessions WHERE channel = ? AND account_id = ? AND key = ?");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return sqlite3_changes(SQ(t)) > 0;
}

static int
sq_sessions_clear(struct tx *t, const char *channel, const char *account, int64_t *deleted)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM sessions WHERE channel = ? AND account_id = ?");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    *deleted = sqlite3_changes(SQ(t));
    return 0;
}

const struct store_sessions sqlite_sessions_ops = {
    .get = sq_sessions_get,
    .list = sq_sessions_list,
    .put = sq_sessions_put,
    .del = sq_sessions_del,
    .clear = sq_sessions_clear,
};
