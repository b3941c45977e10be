/* store_pg_sessions.c -- the session entries in PostgreSQL (store.h, struct
 * store_sessions; the table is schema/postgres/005_sessions.sql).
 *
 * DESIGN
 * A value is BYTEA whatever its format: the bytes exactly as the rules give
 * them (the ciphertext when enc is 1), sent as a binary parameter through
 * pg_execb, so they never pass through text and may hold NULs; they come
 * back hex-encoded and are decoded with pg_bytea. Sizes in a listing
 * without values are octet_length, bytes as stored.
 *
 * Every operation is one statement through the primary key (channel,
 * account_id, key) or its (channel, account_id) prefix. With several
 * replicas: put is an upsert (INSERT .. ON CONFLICT DO UPDATE), so two
 * writers of the same new entry never fail on the key -- the later one
 * waits for the earlier and replaces its value, as a put does; del and
 * clear delete what is there when they run and count only their own
 * deletions. Ordering two writers of one account is the lease fence's
 * business (sessions.c), not this file's.
 */
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

static int
pg_sessions_get(struct tx *t, const char *channel, const char *account, const char *key,
                struct session_entry *e)
{
    const char *p[] = {channel, account, key};
    PGresult *r = pg_exec(t, "SELECT enc, value, updated_at FROM sessions"
                             " WHERE channel = $1 AND account_id = $2 AND key = $3", 3, p);
    unsigned char *value;
    size_t len = 0;

    if (!r)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    if (!(value = pg_bytea(r, 0, 1, &len))) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    *e = (struct session_entry){channel, account, key, (int)pg_int(r, 0, 0, 0), value, len, pg_int(r, 0, 2, 0)};
    PQclear(r);
    return 1;
}

static int
pg_sessions_list(struct tx *t, const char *channel, const char *account, bool values,
                 session_visit fn, void *arg)
{
    const char *p[] = {channel, account};
    PGresult *r = values
        ? pg_exec(t, "SELECT key, enc, value, updated_at FROM sessions"
                     " WHERE channel = $1 AND account_id = $2 ORDER BY key", 2, p)
        : pg_exec(t, "SELECT key, enc, octet_length(value), updated_at FROM sessions"
                     " WHERE channel = $1 AND account_id = $2 ORDER BY key", 2, p);
    struct session_entry e = {.channel = channel, .account = account};
    int rows, stop = 0;

    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; !stop && i < rows; i++) {
        unsigned char *value = NULL;

        e.key = pg_str(r, i, 0);
        e.enc = (int)pg_int(r, i, 1, 0);
        if (values) {
            if (!(value = pg_bytea(r, i, 2, &e.len))) {
                PQclear(r);
                return tx_fail(t, "unavailable", NULL, "out of memory");
            }
            e.value = value;
        } else {
            e.value = NULL;
            e.len = (size_t)pg_int(r, i, 2, 0);
        }
        e.updated_at = pg_int(r, i, 3, 0);
        stop = fn(&e, arg);
        free(value);
    }
    PQclear(r);
    return stop;
}

static int
pg_sessions_put(struct tx *t, const struct session_entry *e)
{
    char enc[24], at[24];
    /* a zero-length value, not NULL, when it is empty */
    const char *p[] = {e->channel, e->account, e->key, pg_i64(enc, e->enc),
                       e->value ? (const char *)e->value : "", pg_i64(at, e->updated_at)};
    const int lengths[] = {0, 0, 0, 0, (int)e->len, 0};
    const int formats[] = {0, 0, 0, 0, 1, 0};
    PGresult *r = pg_execb(t, "INSERT INTO sessions(channel, account_id, key, enc, value, updated_at)"
                              " VALUES($1, $2, $3, $4::smallint, $5::bytea, $6::bigint)"
                              " ON CONFLICT (channel, account_id, key) DO UPDATE"
                              " SET enc = EXCLUDED.enc, value = EXCLUDED.value,"
                              " updated_at = EXCLUDED.updated_at", 6, p, lengths, formats);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static int
pg_sessions_del(struct tx *t, const char *channel, const char *account, const char *key)
{
    const char *p[] = {channel, account, key};
    PGresult *r = pg_exec(t, "DELETE FROM sessions WHERE channel = $1 AND account_id = $2 AND key = $3", 3, p);
    int64_t n;

    if (!r)
        return -1;
    n = pg_changes(r);
    PQclear(r);
    return n > 0;
}

static int
pg_sessions_clear(struct tx *t, const char *channel, const char *account, int64_t *deleted)
{
    const char *p[] = {channel, account};
    PGresult *r = pg_exec(t, "DELETE FROM sessions WHERE channel = $1 AND account_id = $2", 2, p);

    if (!r)
        return -1;
    *deleted = pg_changes(r);
    PQclear(r);
    return 0;
}

const struct store_sessions pg_sessions_ops = {
    .get = pg_sessions_get,
    .list = pg_sessions_list,
    .put = pg_sessions_put,
    .del = pg_sessions_del,
    .clear = pg_sessions_clear,
};
