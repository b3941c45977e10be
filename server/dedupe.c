/* dedupe.c -- inbound dedupe (SPEC section 5): remember each channel
 * message id for a while so a webhook delivered twice is processed once.
 *
 * DESIGN
 * Check-and-register is one UPSERT on the writer: it inserts the key, or
 * replaces an entry whose expiry has passed, and does nothing to a live
 * entry. sqlite3_changes() then says whether this call was first. Writes
 * are serialised on the one writer connection, so of any number of
 * concurrent calls with the same key exactly one sees a change.
 */
#include <stdlib.h>

#include "batond.h"

#define DEDUPE_MAX_TTL_MS (10LL * 365 * 24 * 3600 * 1000)  /* 10 years */
#define DEDUPE_CHANNEL_MAX 128
#define DEDUPE_ID_MAX 1024
#define DEDUPE_PRUNE_BATCH 10000   /* rows per sweep: keeps one sweep short */

/* Register (channel, id) unless a live entry exists. On success returns 0
 * with *duplicate, *first_seen_at and *expires_at describing the entry that
 * is now live; -1 after db_fail. */
static int
dedupe_upsert(struct tx *t, const char *channel, const char *id, int64_t ttl_ms,
              bool *duplicate, int64_t *first_seen_at, int64_t *expires_at)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO dedupe(channel, channel_message_id, first_seen_at, expires_at)"
        " VALUES(?, ?, ?, ?)"
        " ON CONFLICT(channel, channel_message_id) DO UPDATE"
        " SET first_seen_at = excluded.first_seen_at, expires_at = excluded.expires_at"
        " WHERE dedupe.expires_at <= excluded.first_seen_at");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_int64(st, 4, t->now + ttl_ms);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if (sqlite3_changes(SQ(t)) == 1) {
        *duplicate = false;
        *first_seen_at = t->now;
        *expires_at = t->now + ttl_ms;
        return 0;
    }

    st = db_prep(SQ(t), "SELECT first_seen_at, expires_at FROM dedupe"
                        " WHERE channel = ? AND channel_message_id = ?");
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return sq_fail(t);
    }
    *duplicate = true;
    *first_seen_at = sqlite3_column_int64(st, 0);
    *expires_at = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int
dedupe_register(struct tx *t, const char *channel, const char *channel_message_id,
                int64_t ttl_ms, bool *duplicate, int64_t *first_seen_at)
{
    int64_t expires_at;

    return dedupe_upsert(t, channel, channel_message_id, ttl_ms, duplicate, first_seen_at,
                         &expires_at);
}

/* ---- POST /v1/dedupe ---------------------------------------------------- */

struct check_ctx {
    const char *channel;        /* borrowed from r->json */
    const char *id;
    int64_t ttl_ms;
};

static int
check_tx(struct tx *t, struct req *r)
{
    struct check_ctx *c = r->ctx;
    int64_t first, expires;
    bool dup;
    char name[DEDUPE_CHANNEL_MAX + 32];

    if (dedupe_upsert(t, c->channel, c->id, c->ttl_ms, &dup, &first, &expires) < 0)
        return -1;
    if (dup) {
        snprintf(name, sizeof name, "%s.inbound.dedupe_skipped", c->channel);
        event_emit(t, "info", name,
                   json_pack("{s:s, s:s, s:I}", "channel", c->channel, "channelMessageId", c->id,
                             "firstSeenAt", (json_int_t)first));
    }
    return req_ok(r, 200, json_pack("{s:b, s:I, s:I}", "duplicate", dup, "firstSeenAt",
                                    (json_int_t)first, "expiresAt", (json_int_t)expires));
}

int
dedupe_check(struct req *r)
{
    struct check_ctx *c = calloc(1, sizeof *c);
    struct field spec[] = {
        {"channel", F_STR, F_REQUIRED, NULL, 0, DEDUPE_CHANNEL_MAX, NULL},
        {"channelMessageId", F_STR, F_REQUIRED, NULL, 0, DEDUPE_ID_MAX, NULL},
        FIELD_INT("ttlMs", NULL, 0, 1, DEDUPE_MAX_TTL_MS),
        FIELD_END,
    };

    if (!c)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = c;
    r->ctx_free = free;
    c->ttl_ms = cfg.dedupe_ttl_ms;
    spec[0].out = &c->channel;
    spec[1].out = &c->id;
    spec[2].out = &c->ttl_ms;
    if (req_fields(r, spec) < 0)
        return -1;
    for (const char *p = c->channel; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '.' || *p == '/')
            return req_fail(r, "bad_request", NULL,
                            "field 'channel' must not contain control characters, '.' or '/'");
    return req_submit(r, check_tx);
}

/* ---- sweep ---------------------------------------------------------------- */

int
dedupe_prune(struct tx *t)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "DELETE FROM dedupe WHERE (channel, channel_message_id) IN"
        " (SELECT channel, channel_message_id FROM dedupe WHERE expires_at <= ?"
        "  ORDER BY expires_at LIMIT ?)");
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int(st, 2, DEDUPE_PRUNE_BATCH);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}
