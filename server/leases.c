/* leases.c -- leases (one owner per channel/account, fencing tokens) and
 * the accounts registry.
 *
 * DESIGN
 * A lease row is created by the first acquire of an account and never
 * deleted. It is "held" while owner_id is set and the server clock is
 * before expires_at; expiry is never written, it is judged at each request
 * with t->now (writes) or now_ms() (reads). Every grant to a holder that
 * does not already hold the latest grant -- first acquire, acquire after
 * release, force-release or expiry by another owner -- increments token and
 * transitions, so a token is never handed out twice and a holder can prove
 * with it that nobody has taken the account since. Because every write runs
 * on the single writer thread, concurrent acquirers are ordered and exactly
 * one of them wins.
 *
 * Refusals that must leave a trace (acquire.contended, heartbeat.lost) are
 * answered with req_fail() but their write function returns 0: the
 * savepoint then holds nothing but the event row, and keeping it records the
 * refusal. Their tx functions write nothing else before refusing.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define LEASE_TTL_MIN 1000
#define LEASE_TTL_MAX 86400000
#define LEASE_OWNER_MAX 200
#define LEASE_KEY_MAX 100

bool
channel_is_leased(const char *channel)
{
    const char *p = cfg.leased_channels;
    size_t n = strlen(channel);

    while (p && *p) {
        size_t len = strcspn(p, ",");
        while (len && *p == ' ')
            p++, len--;
        if (len == n && !strncmp(p, channel, n))
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

int
lease_fence(struct tx *t, const char *channel, const char *account, int64_t token)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT owner_id, token, expires_at FROM leases"
                                      " WHERE channel = ? AND account_id = ?");
    json_t *details;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return tx_fail(t, "lease_not_held", NULL, "no lease has been granted on %s/%s", channel, account);
    }
    if (sqlite3_column_type(st, 0) != SQLITE_NULL && sqlite3_column_int64(st, 1) == token &&
        sqlite3_column_int64(st, 2) > t->now) {
        sqlite3_reset(st);
        return 0;
    }
    details = json_pack("{s:o, s:I}", "currentOwnerId", col_text(st, 0),
                        "currentToken", (json_int_t)sqlite3_column_int64(st, 1));
    sqlite3_reset(st);
    return tx_fail(t, "lease_not_held", details, "lease token %lld is not the current lease on %s/%s",
                    (long long)token, channel, account);
}

/* ---- validation shared by leases and accounts ---------------------------- */

static int
check_key(struct req *r, const char *name, const char *v)
{
    if (!name_ok(v, LEASE_KEY_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL,
                        "field '%s' must be 1-100 characters of letters, digits, '.', '_', ':', '@', '+' or '-'",
                        name);
    return 0;
}

/* The {channel}/{accountId} of the route (params 0 and 1). */
static int
path_keys(struct req *r, const char **channel, const char **account)
{
    *channel = req_param(r, 0);
    *account = req_param(r, 1);
    if (check_key(r, "channel", *channel) < 0 || check_key(r, "accountId", *account) < 0)
        return -1;
    return 0;
}

/* A listing argument: the query string, or -- for callers such as the
 * Convex layer that pass arguments as a JSON object -- a string field of
 * r->json. Borrowed. */
static const char *
arg_str(struct req *r, const char *name)
{
    const char *v = req_query(r, name);

    if (!v && json_is_object(r->json))
        v = json_string_value(json_object_get(r->json, name));
    return v && *v ? v : NULL;
}

/* ---- lease rows ---------------------------------------------------------- */

struct lease {
    char channel[LEASE_KEY_MAX + 1];
    char account[LEASE_KEY_MAX + 1];
    char owner[LEASE_OWNER_MAX + 1];    /* "" when released */
    int64_t token, acquired_at, renewed_at, expires_at, ttl_ms, transitions;
};

#define LEASE_COLS "channel, account_id, owner_id, token, acquired_at, renewed_at, expires_at," \
                   " ttl_ms, transitions"

static void
lease_from_row(sqlite3_stmt *st, struct lease *l)
{
    const char *owner = (const char *)sqlite3_column_text(st, 2);

    snprintf(l->channel, sizeof l->channel, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(l->account, sizeof l->account, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(l->owner, sizeof l->owner, "%s", owner ? owner : "");
    l->token = sqlite3_column_int64(st, 3);
    l->acquired_at = sqlite3_column_int64(st, 4);
    l->renewed_at = sqlite3_column_int64(st, 5);
    l->expires_at = sqlite3_column_int64(st, 6);
    l->ttl_ms = sqlite3_column_int64(st, 7);
    l->transitions = sqlite3_column_int64(st, 8);
}

/* Load the lease of (channel, account) into *l: 1 found, 0 never leased,
 * -1 on a database error. */
static int
lease_load(sqlite3 *db, const char *channel, const char *account, struct lease *l)
{
    sqlite3_stmt *st = db_prep(db, "SELECT " LEASE_COLS " FROM leases WHERE channel = ? AND account_id = ?");
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        lease_from_row(st, l);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int
lease_store(sqlite3 *db, const struct lease *l)
{
    sqlite3_stmt *st = db_prep(db, "INSERT OR REPLACE INTO leases(" LEASE_COLS ")"
                                   " VALUES(?,?,?,?,?,?,?,?,?)");
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, l->channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, l->account, -1, SQLITE_TRANSIENT);
    if (l->owner[0])
        sqlite3_bind_text(st, 3, l->owner, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, l->token);
    sqlite3_bind_int64(st, 5, l->acquired_at);
    sqlite3_bind_int64(st, 6, l->renewed_at);
    sqlite3_bind_int64(st, 7, l->expires_at);
    sqlite3_bind_int64(st, 8, l->ttl_ms);
    sqlite3_bind_int64(st, 9, l->transitions);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static bool
lease_held(const struct lease *l, int64_t now)
{
    return l->owner[0] && now < l->expires_at;
}

/* The lease as SPEC §4 shows it; held is judged at now. New reference. */
static json_t *
lease_json(const struct lease *l, int64_t now)
{
    return json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:b}",
                     "channel", l->channel, "accountId", l->account,
                     "ownerId", l->owner[0] ? json_string(l->owner) : json_null(),
                     "token", (json_int_t)l->token, "acquiredAt", (json_int_t)l->acquired_at,
                     "renewedAt", (json_int_t)l->renewed_at, "expiresAt", (json_int_t)l->expires_at,
                     "transitions", (json_int_t)l->transitions, "held", lease_held(l, now));
}

/* Event fields of SPEC §10 for a lease event; extra (stolen, may be NULL)
 * is merged in. */
static json_t *
lease_fields(const struct lease *l, const char *owner, json_t *extra)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:o, s:I}", "channel", l->channel, "accountId", l->account,
                          "ownerId", owner,
                          "currentOwnerId", l->owner[0] ? json_string(l->owner) : json_null(),
                          "token", (json_int_t)l->token);

    if (f && extra)
        json_object_update(f, extra);
    json_decref(extra);
    return f;
}

static void
lease_event(struct tx *t, const struct lease *l, const char *what, json_t *fields)
{
    char name[LEASE_KEY_MAX + 64];

    snprintf(name, sizeof name, "%s.lease.%s", l->channel, what);
    event_emit(t, "info", name, fields);
}

/* ---- lease routes ---------------------------------------------------------- */

/* A lease request's input: strings borrowed from r->params and r->json. */
struct lease_req {
    const char *channel, *account, *owner;
    int64_t token, ttl;
    bool has_ttl;
};

static struct lease_req *
lease_req_new(struct req *r)
{
    struct lease_req *lr = calloc(1, sizeof *lr);

    if (!lr) {
        req_fail(r, "unavailable", NULL, "out of memory");
        return NULL;
    }
    r->ctx = lr;
    r->ctx_free = free;
    return lr;
}

/* The caller keeps (or got) the lease: renew it for its ttl from now,
 * store it and answer {lease[, renewedAfterExpiry]}. */
static int
renew_and_answer(struct tx *t, struct req *r, struct lease *l, bool after_expiry)
{
    json_t *out;

    l->renewed_at = t->now;
    l->expires_at = t->now + l->ttl_ms;
    if (lease_store(SQ(t), l) < 0)
        return db_fail(r, SQ(t));
    out = json_pack("{s:o}", "lease", lease_json(l, t->now));
    if (after_expiry)
        json_object_set_new(out, "renewedAfterExpiry", json_true());
    return req_ok(r, 200, out);
}

static int
acquire_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    int found = lease_load(SQ(t), lr->channel, lr->account, &l);
    bool after_expiry = false;

    if (found < 0)
        return db_fail(r, SQ(t));
    if (found && lease_held(&l, t->now) && strcmp(l.owner, lr->owner)) {
        json_t *details = json_pack("{s:s, s:I}", "currentOwnerId", l.owner,
                                    "expiresAt", (json_int_t)l.expires_at);
        /* The refusal keeps its savepoint (return 0), which holds only
         * this event row: the contention is on record. */
        lease_event(t, &l, "acquire.contended", lease_fields(&l, lr->owner, NULL));
        req_fail(r, "lease_held", details, "lease on %s/%s is held by '%s' until %lld", lr->channel,
                 lr->account, l.owner, (long long)l.expires_at);
        return 0;
    }
    if (found && l.owner[0] && !strcmp(l.owner, lr->owner)) {
        /* The same owner still has the latest grant (held, or expired with
         * nobody taking it since): a renewal with the same token. Renewals
         * record no event; heartbeats are the usual way to renew. */
        after_expiry = !lease_held(&l, t->now);
    } else {
        /* never leased, released, force-released or expired under another
         * owner: a new grant with the next token */
        json_t *extra = NULL;

        if (!found) {
            memset(&l, 0, sizeof l);
            snprintf(l.channel, sizeof l.channel, "%s", lr->channel);
            snprintf(l.account, sizeof l.account, "%s", lr->account);
        } else if (l.owner[0])
            extra = json_pack("{s:s}", "previousOwnerId", l.owner);
        snprintf(l.owner, sizeof l.owner, "%s", lr->owner);
        l.token++;
        l.transitions++;
        l.acquired_at = t->now;
        lease_event(t, &l, "acquire.success", lease_fields(&l, lr->owner, extra));
    }
    l.ttl_ms = lr->ttl;
    return renew_and_answer(t, r, &l, after_expiry);
}

/* POST /v1/leases/{channel}/{accountId}/acquire {ownerId, ttlMs} */
int
leases_acquire(struct req *r)
{
    struct lease_req *lr = lease_req_new(r);
    struct field spec[] = {
        {"ownerId", F_STR, F_REQUIRED, NULL, 0, LEASE_OWNER_MAX, NULL},
        FIELD_INT("ttlMs", NULL, F_REQUIRED, LEASE_TTL_MIN, LEASE_TTL_MAX),
        FIELD_END,
    };

    if (!lr)
        return -1;
    spec[0].out = &lr->owner;
    spec[1].out = &lr->ttl;
    if (path_keys(r, &lr->channel, &lr->account) < 0 || req_fields(r, spec) < 0)
        return -1;
    return req_submit(r, acquire_tx);
}

/* The refusal of a heartbeat or release by a caller that does not hold the
 * latest grant. found: whether the lease row exists. */
static int
lease_lost(struct req *r, const struct lease *l, bool found, const char *what)
{
    struct lease_req *lr = r->ctx;
    json_t *details = json_pack("{s:o, s:o}",
                                "currentOwnerId", found && l->owner[0] ? json_string(l->owner) : json_null(),
                                "currentToken", found ? json_integer(l->token) : json_null());

    return req_fail(r, "lease_lost", details, "%s refused: '%s' with token %lld does not hold the lease on %s/%s",
                    what, lr->owner, (long long)lr->token, lr->channel, lr->account);
}

static int
heartbeat_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    int found = lease_load(SQ(t), lr->channel, lr->account, &l);
    bool after_expiry;

    if (found < 0)
        return db_fail(r, SQ(t));
    if (!found || !l.owner[0] || strcmp(l.owner, lr->owner) || l.token != lr->token) {
        if (!found) {
            memset(&l, 0, sizeof l);
            snprintf(l.channel, sizeof l.channel, "%s", lr->channel);
            snprintf(l.account, sizeof l.account, "%s", lr->account);
        }
        /* Kept like acquire.contended: only the event row is written. The
         * event's token is the caller's stale one; currentToken the latest. */
        lease_event(t, &l, "heartbeat.lost",
                    lease_fields(&l, lr->owner,
                                 json_pack("{s:I, s:o}", "token", (json_int_t)lr->token, "currentToken",
                                           found ? json_integer(l.token) : json_null())));
        lease_lost(r, &l, found, "heartbeat");
        return 0;
    }
    /* the caller holds the latest grant; if it expired, nobody took it */
    after_expiry = !lease_held(&l, t->now);
    if (lr->has_ttl)
        l.ttl_ms = lr->ttl;
    return renew_and_answer(t, r, &l, after_expiry);
}

/* POST /v1/leases/{channel}/{accountId}/heartbeat {ownerId, token, ttlMs?} */
int
leases_heartbeat(struct req *r)
{
    struct lease_req *lr = lease_req_new(r);
    struct field spec[] = {
        {"ownerId", F_STR, F_REQUIRED, NULL, 0, LEASE_OWNER_MAX, NULL},
        FIELD_INT("token", NULL, F_REQUIRED, 1, INT64_MAX),
        {"ttlMs", F_INT, 0, NULL, LEASE_TTL_MIN, LEASE_TTL_MAX, NULL},
        FIELD_END,
    };

    if (!lr)
        return -1;
    spec[0].out = &lr->owner;
    spec[1].out = &lr->token;
    spec[2].out = &lr->ttl;
    spec[2].present = &lr->has_ttl;
    if (path_keys(r, &lr->channel, &lr->account) < 0 || req_fields(r, spec) < 0)
        return -1;
    return req_submit(r, heartbeat_tx);
}

static int
release_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    int found = lease_load(SQ(t), lr->channel, lr->account, &l);

    if (found < 0)
        return db_fail(r, SQ(t));
    /* An expired grant nobody took since may still be released by its holder. */
    if (!found || !l.owner[0] || strcmp(l.owner, lr->owner) || l.token != lr->token)
        return lease_lost(r, &l, found, "release");
    l.owner[0] = 0;
    l.expires_at = t->now;
    if (lease_store(SQ(t), &l) < 0)
        return db_fail(r, SQ(t));
    lease_event(t, &l, "released", lease_fields(&l, lr->owner, NULL));
    return req_ok(r, 200, json_pack("{s:o}", "lease", lease_json(&l, t->now)));
}

/* POST /v1/leases/{channel}/{accountId}/release {ownerId, token} */
int
leases_release(struct req *r)
{
    struct lease_req *lr = lease_req_new(r);
    struct field spec[] = {
        {"ownerId", F_STR, F_REQUIRED, NULL, 0, LEASE_OWNER_MAX, NULL},
        FIELD_INT("token", NULL, F_REQUIRED, 1, INT64_MAX),
        FIELD_END,
    };

    if (!lr)
        return -1;
    spec[0].out = &lr->owner;
    spec[1].out = &lr->token;
    if (path_keys(r, &lr->channel, &lr->account) < 0 || req_fields(r, spec) < 0)
        return -1;
    return req_submit(r, release_tx);
}

/* Always 200 {lease, released}: released says whether there was a holder
 * (even an expired one) to free. An account never leased answers
 * {lease:null, released:false} rather than 404, so an operator's
 * force-release is safe to repeat and to run blind. */
static int
force_release_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    int found = lease_load(SQ(t), lr->channel, lr->account, &l);
    char was[LEASE_OWNER_MAX + 1];

    if (found < 0)
        return db_fail(r, SQ(t));
    if (!found)
        return req_ok(r, 200, json_pack("{s:n, s:b}", "lease", "released", false));
    if (!l.owner[0])
        return req_ok(r, 200, json_pack("{s:o, s:b}", "lease", lease_json(&l, t->now), "released", false));
    memcpy(was, l.owner, sizeof was);
    l.owner[0] = 0;
    l.expires_at = t->now;
    if (lease_store(SQ(t), &l) < 0)
        return db_fail(r, SQ(t));
    lease_event(t, &l, "force_released", lease_fields(&l, was, NULL));
    return req_ok(r, 200, json_pack("{s:o, s:b}", "lease", lease_json(&l, t->now), "released", true));
}

/* POST /v1/leases/{channel}/{accountId}/force-release {} */
int
leases_force_release(struct req *r)
{
    struct lease_req *lr = lease_req_new(r);

    if (!lr)
        return -1;
    if (path_keys(r, &lr->channel, &lr->account) < 0)
        return -1;
    return req_submit(r, force_release_tx);
}

/* GET /v1/leases/{channel}/{accountId}: the lease, or null when there has
 * never been one. */
int
leases_get(struct req *r)
{
    const char *channel, *account;
    sqlite3 *db;
    struct lease l;
    int found;

    if (path_keys(r, &channel, &account) < 0)
        return -1;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    found = lease_load(db, channel, account, &l);
    if (found < 0)
        return db_fail(r, db);
    return req_ok(r, 200, found ? lease_json(&l, now_ms()) : json_null());
}

/* GET /v1/leases?ownerId=&channel=: leases held now (owner set, not
 * expired), by channel then account. */
int
leases_list(struct req *r)
{
    const char *owner = arg_str(r, "ownerId"), *channel = arg_str(r, "channel");
    int64_t now = now_ms();
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *out;
    int rc;

    if (owner && strlen(owner) > LEASE_OWNER_MAX)
        return req_fail(r, "bad_request", NULL, "field 'ownerId' is longer than %d bytes", LEASE_OWNER_MAX);
    if (channel && check_key(r, "channel", channel) < 0)
        return -1;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    /* one statement per shape, so each can use its index */
    if (owner)
        st = db_prep(db, "SELECT " LEASE_COLS " FROM leases WHERE owner_id = ?1"
                         " AND (?2 IS NULL OR channel = ?2) AND expires_at > ?3"
                         " ORDER BY channel, account_id");
    else if (channel)
        st = db_prep(db, "SELECT " LEASE_COLS " FROM leases WHERE channel = ?2"
                         " AND owner_id IS NOT NULL AND expires_at > ?3 ORDER BY account_id");
    else
        /* without the hint SQLite prefers a full scan in key order */
        st = db_prep(db, "SELECT " LEASE_COLS " FROM leases INDEXED BY leases_held"
                         " WHERE owner_id IS NOT NULL AND expires_at > ?3 ORDER BY channel, account_id");
    if (!st)
        return db_fail(r, db);
    if (owner)
        sqlite3_bind_text(st, 1, owner, -1, SQLITE_TRANSIENT);
    if (channel)
        sqlite3_bind_text(st, 2, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, now);
    out = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct lease l;
        lease_from_row(st, &l);
        json_array_append_new(out, lease_json(&l, now));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(out);
        return db_fail(r, db);
    }
    return req_ok(r, 200, json_pack("{s:o}", "leases", out));
}

/* ---- accounts ---------------------------------------------------------------- */

#define ACCOUNT_COLS "channel, account_id, enabled, config, created_at, updated_at"

static json_t *
account_json(sqlite3_stmt *st)
{
    json_t *config = col_json(st, 3);

    if (!json_is_object(config)) {
        json_decref(config);
        config = json_object();
    }
    return json_pack("{s:o, s:o, s:b, s:o, s:I, s:I}", "channel", col_text(st, 0),
                     "accountId", col_text(st, 1), "enabled", sqlite3_column_int(st, 2) != 0,
                     "config", config, "createdAt", (json_int_t)sqlite3_column_int64(st, 4),
                     "updatedAt", (json_int_t)sqlite3_column_int64(st, 5));
}

/* The account as JSON (new reference) into *out, or NULL when absent.
 * Returns -1 on a database error. */
static int
account_load(sqlite3 *db, const char *channel, const char *account, json_t **out)
{
    sqlite3_stmt *st = db_prep(db, "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = ? AND account_id = ?");
    int rc;

    *out = NULL;
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = account_json(st);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

struct account_req {
    const char *channel, *account;
    bool enabled;
    json_t *config;         /* borrowed from r->json; NULL: keep (or {} when new) */
};

static int
account_put_tx(struct tx *t, struct req *r)
{
    struct account_req *ar = r->ctx;
    sqlite3_stmt *st;
    char *config = ar->config ? json_dumps(ar->config, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_t *account;
    bool created;
    int rc;

    if (ar->config && !config)
        return req_fail(r, "unavailable", NULL, "out of memory");
    if (account_load(SQ(t), ar->channel, ar->account, &account) < 0) {
        free(config);
        return db_fail(r, SQ(t));
    }
    created = !account;
    json_decref(account);
    st = db_prep(SQ(t), "INSERT INTO accounts(" ACCOUNT_COLS ") VALUES(?1, ?2, ?3, coalesce(?4, '{}'), ?5, ?5)"
                        " ON CONFLICT(channel, account_id) DO UPDATE SET enabled = excluded.enabled,"
                        " config = coalesce(?4, config), updated_at = excluded.updated_at");
    if (!st) {
        free(config);
        return db_fail(r, SQ(t));
    }
    sqlite3_bind_text(st, 1, ar->channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, ar->account, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, ar->enabled);
    if (config)
        sqlite3_bind_text(st, 4, config, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, t->now);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(config);
    if (rc != SQLITE_DONE || account_load(SQ(t), ar->channel, ar->account, &account) < 0 || !account)
        return db_fail(r, SQ(t));
    /* config stays out of the event: it may hold channel credentials */
    event_emit(t, "info", "account.updated",
               json_pack("{s:s, s:s, s:b, s:b}", "channel", ar->channel, "accountId", ar->account,
                         "enabled", ar->enabled,
                         "created", created));
    return req_ok(r, 200, json_pack("{s:o}", "account", account));
}

/* PUT /v1/accounts/{channel}/{accountId} {enabled, config?}: upsert. A PUT
 * without config keeps the stored one (a new account gets {}), so enabling
 * or disabling an account does not need its config. */
int
accounts_put(struct req *r)
{
    struct account_req *ar = calloc(1, sizeof *ar);
    struct field spec[] = {
        FIELD_BOOL("enabled", NULL, F_REQUIRED),
        FIELD_OBJECT("config", NULL, 0),
        FIELD_END,
    };

    if (!ar)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = ar;
    r->ctx_free = free;
    spec[0].out = &ar->enabled;
    spec[1].out = &ar->config;
    if (path_keys(r, &ar->channel, &ar->account) < 0 || req_fields(r, spec) < 0)
        return -1;
    return req_submit(r, account_put_tx);
}

/* GET /v1/accounts/{channel}/{accountId}: the account, or 404. */
int
accounts_get(struct req *r)
{
    const char *channel, *account;
    sqlite3 *db;
    json_t *a;

    if (path_keys(r, &channel, &account) < 0)
        return -1;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    if (account_load(db, channel, account, &a) < 0)
        return db_fail(r, db);
    if (!a)
        return req_fail(r, "not_found", NULL, "no account %s/%s", channel, account);
    return req_ok(r, 200, a);
}

/* GET /v1/accounts?channel=&enabled=true|false: {accounts:[...]} by
 * channel then account id (listEnabledAccounts). */
int
accounts_list(struct req *r)
{
    const char *channel = arg_str(r, "channel"), *en = req_query(r, "enabled");
    int enabled = -1;       /* -1: both */
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *out;
    int rc;

    if (en && *en) {
        if (!strcmp(en, "true") || !strcmp(en, "1"))
            enabled = 1;
        else if (!strcmp(en, "false") || !strcmp(en, "0"))
            enabled = 0;
        else
            return req_fail(r, "bad_request", NULL, "query parameter 'enabled' must be true or false");
    } else if (json_is_object(r->json) && json_is_boolean(json_object_get(r->json, "enabled")))
        enabled = json_is_true(json_object_get(r->json, "enabled"));
    if (channel && check_key(r, "channel", channel) < 0)
        return -1;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    if (enabled >= 0)
        st = db_prep(db, "SELECT " ACCOUNT_COLS " FROM accounts WHERE enabled = ?1"
                         " AND (?2 IS NULL OR channel = ?2) ORDER BY channel, account_id");
    else if (channel)
        st = db_prep(db, "SELECT " ACCOUNT_COLS " FROM accounts WHERE channel = ?2 ORDER BY account_id");
    else
        st = db_prep(db, "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY channel, account_id");
    if (!st)
        return db_fail(r, db);
    if (enabled >= 0)
        sqlite3_bind_int(st, 1, enabled);
    if (channel)
        sqlite3_bind_text(st, 2, channel, -1, SQLITE_TRANSIENT);
    out = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(out, account_json(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(out);
        return db_fail(r, db);
    }
    return req_ok(r, 200, json_pack("{s:o}", "accounts", out));
}

static int
account_delete_tx(struct tx *t, struct req *r)
{
    struct account_req *ar = r->ctx;
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM accounts WHERE channel = ? AND account_id = ?");
    int rc;

    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_text(st, 1, ar->channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, ar->account, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(r, SQ(t));
    if (!sqlite3_changes(SQ(t)))
        return req_fail(r, "not_found", NULL, "no account %s/%s", ar->channel, ar->account);
    event_emit(t, "info", "account.deleted",
               json_pack("{s:s, s:s}", "channel", ar->channel, "accountId", ar->account));
    return req_ok(r, 200, json_pack("{s:b}", "deleted", true));
}

/* DELETE /v1/accounts/{channel}/{accountId}: {deleted:true} or 404. The
 * account's lease, if any, is kept (its token must never be reused). */
int
accounts_delete(struct req *r)
{
    struct account_req *ar = calloc(1, sizeof *ar);

    if (!ar)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = ar;
    r->ctx_free = free;
    if (path_keys(r, &ar->channel, &ar->account) < 0)
        return -1;
    return req_submit(r, account_delete_tx);
}
