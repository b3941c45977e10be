/* store_pg_leases.c -- the leases and accounts operations of the
 * PostgreSQL store (store.h, struct store_leases; the tables are
 * schema/postgres/003_leases.sql).
 *
 * DESIGN
 * Several replicas write to one database at READ COMMITTED, each on its own
 * connection, so no operation may decide on a row it read earlier: each
 * changing operation is ONE statement that decides and writes, and gives
 * the lease after it with RETURNING (no row: its condition did not hold,
 * the op returns 0 -- "lost the race" for the rules of leases.c, which read
 * the lease again and start the transition over).
 *
 * - grant is INSERT .. ON CONFLICT DO UPDATE .. WHERE <not held at now>.
 *   A concurrent grant on another connection either conflicts with our
 *   uncommitted insert or finds the row locked by our update: it waits for
 *   our transaction to end, then judges its WHERE on the row we committed
 *   (held: no row returned). Of N concurrent grants exactly one wins, and
 *   the token is the row's token + 1, so it never goes back.
 * - renew, release and force_release are UPDATE .. WHERE <condition>
 *   RETURNING. An UPDATE that finds its row changed by a concurrent
 *   transaction waits for it and evaluates its WHERE again on the newest
 *   version, so a renewal or release with a token that another replica
 *   replaced in the meantime matches nothing.
 * - account_put tells a created account from an updated one by the
 *   inserted row's xmax (0 only for a row this statement inserted), in the
 *   same upsert, so two replicas putting the same new account see exactly
 *   one "created".
 * - fence (lease_fence: a session write or an outbound job under a lease
 *   token) reads the lease FOR SHARE: the token it checks stays the latest
 *   until the fenced write commits, as SQLite's single writer gives.
 *   Deciding on a plain read would let another replica grant the lease
 *   between the check and the commit, and the stale holder's write land
 *   after the new holder's.
 * Times are parameters (t->now, the database's clock taken at begin).
 */
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

#define LEASE_COLS "channel, account_id, owner_id, token, acquired_at, renewed_at, expires_at," \
                   " ttl_ms, transitions"
#define ACCOUNT_COLS "channel, account_id, enabled, config, created_at, updated_at"

static void
copy_col(char *dst, size_t n, const PGresult *r, int row, int col)
{
    const char *v = pg_str(r, row, col);

    snprintf(dst, n, "%s", v ? v : "");
}

static void
lease_from_row(const PGresult *r, int row, struct lease *l)
{
    copy_col(l->channel, sizeof l->channel, r, row, 0);
    copy_col(l->account, sizeof l->account, r, row, 1);
    copy_col(l->owner, sizeof l->owner, r, row, 2);
    l->token = pg_int(r, row, 3, 0);
    l->acquired_at = pg_int(r, row, 4, 0);
    l->renewed_at = pg_int(r, row, 5, 0);
    l->expires_at = pg_int(r, row, 6, 0);
    l->ttl_ms = pg_int(r, row, 7, 0);
    l->transitions = pg_int(r, row, 8, 0);
}

/* The result r of a statement giving at most one lease (NULL: it failed,
 * t->err is set): 1 with *l from its row, 0 without a row (*l untouched),
 * -1. r is cleared. */
static int
lease_result(PGresult *r, struct lease *l)
{
    int rows;

    if (!r)
        return -1;
    if ((rows = PQntuples(r)) > 0)
        lease_from_row(r, 0, l);
    PQclear(r);
    return rows > 0;
}

static int
pg_lease_get(struct tx *t, const char *channel, const char *account, struct lease *l)
{
    const char *p[] = {channel, account};

    return lease_result(pg_exec(t, "SELECT " LEASE_COLS " FROM leases WHERE channel = $1 AND account_id = $2",
                                   2, p), l);
}

/* FOR SHARE: a grant, renewal or release of the lease on another
 * connection (each an UPDATE of the row) waits until this transaction
 * ends, so a write fenced by the token it read commits before anybody
 * can take the lease; other fenced writes share the lock. */
static int
pg_lease_fence(struct tx *t, const char *channel, const char *account, struct lease *l)
{
    const char *p[] = {channel, account};

    return lease_result(pg_exec(t, "SELECT " LEASE_COLS " FROM leases WHERE channel = $1 AND account_id = $2"
                                   " FOR SHARE", 2, p), l);
}

static int
pg_lease_grant(struct tx *t, const char *channel, const char *account, const char *owner,
               int64_t ttl_ms, struct lease *l)
{
    char now[24], ttl[24];
    const char *p[] = {channel, account, owner, pg_i64(now, t->now), pg_i64(ttl, ttl_ms)};

    /* see DESIGN: one statement decides and writes */
    return lease_result(pg_exec(t,
        "INSERT INTO leases(" LEASE_COLS ")"
        " VALUES($1, $2, $3, 1, $4::bigint, $4::bigint, $4::bigint + $5::bigint, $5::bigint, 1)"
        " ON CONFLICT (channel, account_id) DO UPDATE SET owner_id = EXCLUDED.owner_id,"
        " token = leases.token + 1, acquired_at = EXCLUDED.acquired_at,"
        " renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at,"
        " ttl_ms = EXCLUDED.ttl_ms, transitions = leases.transitions + 1"
        " WHERE leases.owner_id IS NULL OR leases.expires_at <= EXCLUDED.acquired_at"
        " RETURNING " LEASE_COLS, 5, p), l);
}

static int
pg_lease_renew(struct tx *t, const char *channel, const char *account, const char *owner,
               int64_t token, int64_t ttl_ms, bool while_held, struct lease *l)
{
    char tok[24], now[24], ttl[24];
    const char *p[] = {channel, account, owner, pg_i64(tok, token), pg_i64(now, t->now), pg_i64(ttl, ttl_ms),
                       while_held ? "t" : "f"};

    return lease_result(pg_exec(t,
        "UPDATE leases SET renewed_at = $5::bigint,"
        " expires_at = $5::bigint + CASE WHEN $6::bigint > 0 THEN $6::bigint ELSE ttl_ms END,"
        " ttl_ms = CASE WHEN $6::bigint > 0 THEN $6::bigint ELSE ttl_ms END"
        " WHERE channel = $1 AND account_id = $2 AND owner_id = $3 AND token = $4::bigint"
        " AND (NOT $7::boolean OR expires_at > $5::bigint)"
        " RETURNING " LEASE_COLS, 7, p), l);
}

static int
pg_lease_release(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t token, struct lease *l)
{
    char tok[24], now[24];
    const char *p[] = {channel, account, owner, pg_i64(tok, token), pg_i64(now, t->now)};

    return lease_result(pg_exec(t,
        "UPDATE leases SET owner_id = NULL, expires_at = $5::bigint"
        " WHERE channel = $1 AND account_id = $2 AND owner_id = $3 AND token = $4::bigint"
        " RETURNING " LEASE_COLS, 5, p), l);
}

static int
pg_lease_force_release(struct tx *t, const char *channel, const char *account, struct lease *l)
{
    char now[24];
    const char *p[] = {channel, account, pg_i64(now, t->now)};

    return lease_result(pg_exec(t,
        "UPDATE leases SET owner_id = NULL, expires_at = $3::bigint"
        " WHERE channel = $1 AND account_id = $2 AND owner_id IS NOT NULL"
        " RETURNING " LEASE_COLS, 3, p), l);
}

static int
pg_lease_list_held(struct tx *t, const char *owner, const char *channel, lease_each_fn each, void *arg)
{
    char now[24];
    PGresult *r;
    int rows;

    pg_i64(now, t->now);
    /* one statement per shape, so each can use its index */
    if (owner && channel) {
        const char *p[] = {now, owner, channel};

        r = pg_exec(t, "SELECT " LEASE_COLS " FROM leases WHERE owner_id = $2 AND channel = $3"
                       " AND expires_at > $1::bigint ORDER BY account_id", 3, p);
    } else if (owner) {
        const char *p[] = {now, owner};

        r = pg_exec(t, "SELECT " LEASE_COLS " FROM leases WHERE owner_id = $2"
                       " AND expires_at > $1::bigint ORDER BY channel, account_id", 2, p);
    } else if (channel) {
        const char *p[] = {now, channel};

        r = pg_exec(t, "SELECT " LEASE_COLS " FROM leases WHERE channel = $2"
                       " AND owner_id IS NOT NULL AND expires_at > $1::bigint ORDER BY account_id", 2, p);
    } else {
        const char *p[] = {now};

        r = pg_exec(t, "SELECT " LEASE_COLS " FROM leases"
                       " WHERE owner_id IS NOT NULL AND expires_at > $1::bigint ORDER BY channel, account_id", 1, p);
    }
    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        struct lease l;

        lease_from_row(r, i, &l);
        if (each(t, &l, arg) < 0) {
            PQclear(r);
            return -1;
        }
    }
    PQclear(r);
    return 0;
}

/* ---- accounts ---------------------------------------------------------------- */

static void
account_from_row(const PGresult *r, int row, struct account *a)
{
    const char *config = pg_str(r, row, 3);

    copy_col(a->channel, sizeof a->channel, r, row, 0);
    copy_col(a->account, sizeof a->account, r, row, 1);
    a->enabled = pg_bool(r, row, 2);
    a->config = config ? json_loads(config, 0, NULL) : NULL;
    if (!json_is_object(a->config)) {
        json_decref(a->config);
        a->config = json_object();
    }
    a->created_at = pg_int(r, row, 4, 0);
    a->updated_at = pg_int(r, row, 5, 0);
}

static int
pg_account_get(struct tx *t, const char *channel, const char *account, struct account *a)
{
    const char *p[] = {channel, account};
    PGresult *r = pg_exec(t, "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = $1 AND account_id = $2", 2, p);
    int rows;

    if (!r)
        return -1;
    if ((rows = PQntuples(r)) > 0)
        account_from_row(r, 0, a);
    PQclear(r);
    return rows > 0;
}

static int
pg_account_put(struct tx *t, const char *channel, const char *account, bool enabled,
               json_t *config, struct account *a, bool *created)
{
    char now[24];
    char *text = NULL;
    PGresult *r;

    if (config && !(text = json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    {
        const char *p[] = {channel, account, enabled ? "t" : "f", text, pg_i64(now, t->now)};

        /* see DESIGN: xmax is 0 only in a row this statement inserted */
        r = pg_exec(t, "INSERT INTO accounts(" ACCOUNT_COLS ")"
                       " VALUES($1, $2, $3::boolean, coalesce($4::text, '{}'), $5::bigint, $5::bigint)"
                       " ON CONFLICT (channel, account_id) DO UPDATE SET enabled = EXCLUDED.enabled,"
                       " config = coalesce($4::text, accounts.config), updated_at = EXCLUDED.updated_at"
                       " RETURNING " ACCOUNT_COLS ", xmax = 0", 5, p);
    }
    free(text);
    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return tx_fail(t, "internal", NULL, "database error: the account %s/%s was not written", channel,
                       account);
    }
    account_from_row(r, 0, a);
    *created = pg_bool(r, 0, 6);
    PQclear(r);
    return 0;
}

static int
pg_account_list(struct tx *t, const char *channel, int enabled, account_each_fn each, void *arg)
{
    const char *en = enabled > 0 ? "t" : "f";
    PGresult *r;
    int rows;

    if (enabled >= 0 && channel) {
        const char *p[] = {en, channel};

        r = pg_exec(t, "SELECT " ACCOUNT_COLS " FROM accounts WHERE enabled = $1::boolean"
                       " AND channel = $2 ORDER BY account_id", 2, p);
    } else if (enabled >= 0) {
        const char *p[] = {en};

        r = pg_exec(t, "SELECT " ACCOUNT_COLS " FROM accounts WHERE enabled = $1::boolean"
                       " ORDER BY channel, account_id", 1, p);
    } else if (channel) {
        const char *p[] = {channel};

        r = pg_exec(t, "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = $1 ORDER BY account_id", 1, p);
    } else {
        r = pg_exec(t, "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY channel, account_id", 0, NULL);
    }
    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        struct account a;
        int stop;

        account_from_row(r, i, &a);
        stop = each(t, &a, arg);
        account_clear(&a);
        if (stop < 0) {
            PQclear(r);
            return -1;
        }
    }
    PQclear(r);
    return 0;
}

static int
pg_account_delete(struct tx *t, const char *channel, const char *account)
{
    const char *p[] = {channel, account};
    PGresult *r = pg_exec(t, "DELETE FROM accounts WHERE channel = $1 AND account_id = $2", 2, p);
    int64_t n;

    if (!r)
        return -1;
    n = pg_changes(r);
    PQclear(r);
    return n > 0;
}

const struct store_leases pg_leases_ops = {
    .get = pg_lease_get,
    .fence = pg_lease_fence,
    .grant = pg_lease_grant,
    .renew = pg_lease_renew,
    .release = pg_lease_release,
    .force_release = pg_lease_force_release,
    .list_held = pg_lease_list_held,
    .account_get = pg_account_get,
    .account_put = pg_account_put,
    .account_list = pg_account_list,
    .account_delete = pg_account_delete,
};
