/* store_sqlite_leases.c -- the SQLite operations of leases and accounts
 * (struct store_leases).
 *
 * DESIGN
 * Each changing operation is one conditional statement; when its condition
 * held (one row changed) the lease is read back by primary key. Not
 * RETURNING: that gives every statement a statement journal, whose release
 * costs in proportion to what the transaction changed before (see
 * store_sqlite_jobs.c), measured as a slower heartbeat. The writer's transaction
 * is BEGIN IMMEDIATE, so concurrent connections are ordered anyway; the
 * conditions make each operation safe on its own. For the same reason the
 * fence is a plain read: no other connection writes before we commit.
 */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"

#define LEASE_COLS "channel, account_id, owner_id, token, acquired_at, renewed_at, expires_at," \
                   " ttl_ms, transitions"
#define ACCOUNT_COLS "channel, account_id, enabled, config, created_at, updated_at"

static void
copy_col(char *dst, size_t n, sqlite3_stmt *st, int i)
{
    const char *v = (const char *)sqlite3_column_text(st, i);

    snprintf(dst, n, "%s", v ? v : "");
}

static void
lease_from_row(sqlite3_stmt *st, struct lease *l)
{
    copy_col(l->channel, sizeof l->channel, st, 0);
    copy_col(l->account, sizeof l->account, st, 1);
    copy_col(l->owner, sizeof l->owner, st, 2);
    l->token = sqlite3_column_int64(st, 3);
    l->acquired_at = sqlite3_column_int64(st, 4);
    l->renewed_at = sqlite3_column_int64(st, 5);
    l->expires_at = sqlite3_column_int64(st, 6);
    l->ttl_ms = sqlite3_column_int64(st, 7);
    l->transitions = sqlite3_column_int64(st, 8);
}

/* Step st (bound) once: 1 with *l from its row, 0 without a row, -1 with
 * t->err. st is reset. */
static int
lease_step(struct tx *t, sqlite3_stmt *st, struct lease *l)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        lease_from_row(st, l);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static void
bind_key(sqlite3_stmt *st, const char *channel, const char *account)
{
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
}

static int
sq_lease_get(struct tx *t, const char *channel, const char *account, struct lease *l)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " LEASE_COLS " FROM leases WHERE channel = ?1 AND account_id = ?2");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    return lease_step(t, st, l);
}

/* Step st, a conditional change of the lease (channel, account): 1 with
 * *l read back when it changed the row, 0 when the condition failed, -1
 * with t->err. st is reset. */
static int
lease_change(struct tx *t, sqlite3_stmt *st, const char *channel, const char *account, struct lease *l)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if (sqlite3_changes(SQ(t)) == 0)
        return 0;
    if ((rc = sq_lease_get(t, channel, account, l)) == 0)
        return tx_fail(t, "internal", NULL, "database error: the lease %s/%s vanished", channel, account);
    return rc;
}

static int
sq_lease_grant(struct tx *t, const char *channel, const char *account, const char *owner,
               int64_t ttl_ms, struct lease *l)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO leases(" LEASE_COLS ") VALUES(?1, ?2, ?3, 1, ?4, ?4, ?4 + ?5, ?5, 1)"
        " ON CONFLICT(channel, account_id) DO UPDATE SET owner_id = excluded.owner_id,"
        " token = leases.token + 1, acquired_at = excluded.acquired_at,"
        " renewed_at = excluded.renewed_at, expires_at = excluded.expires_at,"
        " ttl_ms = excluded.ttl_ms, transitions = leases.transitions + 1"
        " WHERE leases.owner_id IS NULL OR leases.expires_at <= excluded.acquired_at");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, ttl_ms);
    return lease_change(t, st, channel, account, l);
}

static int
sq_lease_renew(struct tx *t, const char *channel, const char *account, const char *owner,
               int64_t token, int64_t ttl_ms, bool while_held, struct lease *l)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE leases SET renewed_at = ?5,"
        " expires_at = ?5 + CASE WHEN ?6 > 0 THEN ?6 ELSE ttl_ms END,"
        " ttl_ms = CASE WHEN ?6 > 0 THEN ?6 ELSE ttl_ms END"
        " WHERE channel = ?1 AND account_id = ?2 AND owner_id = ?3 AND token = ?4"
        " AND (?7 = 0 OR expires_at > ?5)");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, token);
    sqlite3_bind_int64(st, 5, t->now);
    sqlite3_bind_int64(st, 6, ttl_ms);
    sqlite3_bind_int(st, 7, while_held);
    return lease_change(t, st, channel, account, l);
}

static int
sq_lease_release(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t token, struct lease *l)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE leases SET owner_id = NULL, expires_at = ?5"
        " WHERE channel = ?1 AND account_id = ?2 AND owner_id = ?3 AND token = ?4");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, token);
    sqlite3_bind_int64(st, 5, t->now);
    return lease_change(t, st, channel, account, l);
}

static int
sq_lease_force_release(struct tx *t, const char *channel, const char *account, struct lease *l)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE leases SET owner_id = NULL, expires_at = ?3"
        " WHERE channel = ?1 AND account_id = ?2 AND owner_id IS NOT NULL");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    sqlite3_bind_int64(st, 3, t->now);
    return lease_change(t, st, channel, account, l);
}

static int
sq_lease_list_held(struct tx *t, const char *owner, const char *channel, lease_each_fn each, void *arg)
{
    sqlite3_stmt *st;
    int rc;

    /* one statement per shape, so each can use its index */
    if (owner)
        st = db_prep(SQ(t), "SELECT " LEASE_COLS " FROM leases WHERE owner_id = ?1"
                            " AND (?2 IS NULL OR channel = ?2) AND expires_at > ?3"
                            " ORDER BY channel, account_id");
    else if (channel)
        st = db_prep(SQ(t), "SELECT " LEASE_COLS " FROM leases WHERE channel = ?2"
                            " AND owner_id IS NOT NULL AND expires_at > ?3 ORDER BY account_id");
    else
        /* without the hint SQLite prefers a full scan in key order */
        st = db_prep(SQ(t), "SELECT " LEASE_COLS " FROM leases INDEXED BY leases_held"
                            " WHERE owner_id IS NOT NULL AND expires_at > ?3 ORDER BY channel, account_id");
    if (!st)
        return sq_fail(t);
    if (owner)
        sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    if (channel)
        sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct lease l;

        lease_from_row(st, &l);
        if (each(t, &l, arg) < 0) {
            sqlite3_reset(st);
            return -1;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

/* ---- accounts ---------------------------------------------------------------- */

static void
account_from_row(sqlite3_stmt *st, struct account *a)
{
    copy_col(a->channel, sizeof a->channel, st, 0);
    copy_col(a->account, sizeof a->account, st, 1);
    a->enabled = sqlite3_column_int(st, 2) != 0;
    a->config = col_json(st, 3);
    if (!json_is_object(a->config)) {
        json_decref(a->config);
        a->config = json_object();
    }
    a->created_at = sqlite3_column_int64(st, 4);
    a->updated_at = sqlite3_column_int64(st, 5);
}

static int
account_step(struct tx *t, sqlite3_stmt *st, struct account *a)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        account_from_row(st, a);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
sq_account_get(struct tx *t, const char *channel, const char *account, struct account *a)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = ?1 AND account_id = ?2");

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    return account_step(t, st, a);
}

static int
sq_account_put(struct tx *t, const char *channel, const char *account, bool enabled,
               json_t *config, struct account *a, bool *created)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT 1 FROM accounts WHERE channel = ?1 AND account_id = ?2");
    char *text = NULL;
    int rc;

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(t);
    *created = rc == SQLITE_DONE;
    if (config && !(text = json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    st = db_prep(SQ(t), "INSERT INTO accounts(" ACCOUNT_COLS ") VALUES(?1, ?2, ?3, coalesce(?4, '{}'), ?5, ?5)"
                        " ON CONFLICT(channel, account_id) DO UPDATE SET enabled = excluded.enabled,"
                        " config = coalesce(?4, config), updated_at = excluded.updated_at"
                        " RETURNING " ACCOUNT_COLS);
    if (!st) {
        free(text);
        return sq_fail(t);
    }
    bind_key(st, channel, account);
    sqlite3_bind_int(st, 3, enabled);
    if (text)
        sqlite3_bind_text(st, 4, text, -1, free);
    sqlite3_bind_int64(st, 5, t->now);
    rc = account_step(t, st, a);
    sqlite3_clear_bindings(st);         /* frees text now */
    if (rc == 0)
        return tx_fail(t, "internal", NULL, "database error: the account %s/%s was not written", channel,
                       account);
    return rc < 0 ? -1 : 0;
}

static int
sq_account_list(struct tx *t, const char *channel, int enabled, account_each_fn each, void *arg)
{
    sqlite3_stmt *st;
    int rc;

    if (enabled >= 0)
        st = db_prep(SQ(t), "SELECT " ACCOUNT_COLS " FROM accounts WHERE enabled = ?1"
                            " AND (?2 IS NULL OR channel = ?2) ORDER BY channel, account_id");
    else if (channel)
        st = db_prep(SQ(t), "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = ?2 ORDER BY account_id");
    else
        st = db_prep(SQ(t), "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY channel, account_id");
    if (!st)
        return sq_fail(t);
    if (enabled >= 0)
        sqlite3_bind_int(st, 1, enabled);
    if (channel)
        sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct account a;
        int stop;

        account_from_row(st, &a);
        stop = each(t, &a, arg);
        account_clear(&a);
        if (stop < 0) {
            sqlite3_reset(st);
            return -1;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
sq_account_delete(struct tx *t, const char *channel, const char *account)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM accounts WHERE channel = ?1 AND account_id = ?2");
    int rc;

    if (!st)
        return sq_fail(t);
    bind_key(st, channel, account);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    return sqlite3_changes(SQ(t)) ? 1 : 0;
}

const struct store_leases sqlite_leases_ops = {
    .get = sq_lease_get,
    .fence = sq_lease_get,
    .grant = sq_lease_grant,
    .renew = sq_lease_renew,
    .release = sq_lease_release,
    .force_release = sq_lease_force_release,
    .list_held = sq_lease_list_held,
    .account_get = sq_account_get,
    .account_put = sq_account_put,
    .account_list = sq_account_list,
    .account_delete = sq_account_delete,
};
