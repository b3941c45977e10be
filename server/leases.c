/* leases.c -- the rules of leases (one owner per channel/account, fencing
 * tokens) and of the accounts registry.
 *
 * DESIGN
 * A lease is created by the first grant of an account and never deleted.
 * It is "held" while it has an owner and the store's clock is before
 * expires_at; expiry is never written, it is judged at each request with
 * t->now. Every grant to a holder that does not already hold the latest
 * grant -- first acquire, acquire after release, force-release or expiry
 * by another owner -- takes the next token and counts a transition, so a
 * token is never handed out twice and a holder can prove with it that
 * nobody has taken the account since. The store's operations are
 * conditional (a grant only when the lease is not held, a renewal or a
 * release only with the latest token), so concurrent acquirers are
 * ordered and exactly one of them wins; when a condition no longer holds
 * because another writer got there first, the transition starts over.
 *
 * Refusals that must leave a trace (acquire.contended, heartbeat.lost)
 * return 1: the caller keeps the write, which holds nothing but the event
 * row, so the refusal is on record.
 */
#include <string.h>

#include "core.h"

#define LEASE_RETRIES 3             /* lost races before giving up */

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

bool
lease_held(const struct lease *l, int64_t now)
{
    return l->owner[0] && now < l->expires_at;
}

int
lease_fence(struct tx *t, const char *channel, const char *account, int64_t token)
{
    struct lease l;
    /* fence, not get: the lease stays as read until the write commits */
    int found = store->leases->fence(t, channel, account, &l);

    if (found < 0)
        return -1;
    if (!found)
        return tx_fail(t, "lease_not_held", NULL, "no lease has been granted on %s/%s", channel, account);
    if (l.owner[0] && l.token == token && l.expires_at > t->now)
        return 0;
    return tx_fail(t, "lease_not_held",
                   json_pack("{s:o, s:I}", "currentOwnerId", l.owner[0] ? json_string(l.owner) : json_null(),
                             "currentToken", (json_int_t)l.token),
                   "lease token %lld is not the current lease on %s/%s", (long long)token, channel, account);
}

/* ---- events -------------------------------------------------------------- */

/* Event fields of SPEC section 10 for a lease event; extra (stolen, may be
 * NULL) is merged in. */
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

/* A lease never granted, as events show it: no owner, token 0. */
static void
lease_blank(struct lease *l, const char *channel, const char *account)
{
    memset(l, 0, sizeof *l);
    snprintf(l->channel, sizeof l->channel, "%s", channel);
    snprintf(l->account, sizeof l->account, "%s", account);
}

/* ---- transitions ------------------------------------------------------------ */

static int
lost_races(struct tx *t, const char *channel, const char *account)
{
    return tx_fail(t, "unavailable", NULL, "the lease on %s/%s kept changing under this request; try again",
                   channel, account);
}

/* owner is refused because l (held) belongs to another: record it. */
static int
acquire_contended(struct tx *t, const struct lease *l, const char *owner)
{
    lease_event(t, l, "acquire.contended", lease_fields(l, owner, NULL));
    tx_fail(t, "lease_held", json_pack("{s:s, s:I}", "currentOwnerId", l->owner, "expiresAt",
                                       (json_int_t)l->expires_at),
            "lease on %s/%s is held by '%s' until %lld", l->channel, l->account, l->owner,
            (long long)l->expires_at);
    return 1;
}

int
lease_acquire(struct tx *t, const char *channel, const char *account, const char *owner,
              int64_t ttl_ms, struct lease *l, bool *after_expiry)
{
    *after_expiry = false;
    for (int i = 0; i < LEASE_RETRIES; i++) {
        char previous[LEASE_OWNER_MAX + 1];
        int rc, found = store->leases->get(t, channel, account, l);

        if (found < 0)
            return -1;
        if (found && lease_held(l, t->now) && strcmp(l->owner, owner))
            return acquire_contended(t, l, owner);
        if (found && l->owner[0] && !strcmp(l->owner, owner)) {
            /* The same owner still has the latest grant (held, or expired
             * with nobody taking it since): a renewal with the same token.
             * Renewals record no event; heartbeats are the usual way. */
            bool expired = !lease_held(l, t->now);

            if ((rc = store->leases->renew(t, channel, account, owner, l->token, ttl_ms, false, l)) < 0)
                return -1;
            if (rc) {
                *after_expiry = expired;
                return 0;
            }
            continue;
        }
        /* never leased, released, force-released or expired under another
         * owner: a new grant with the next token */
        snprintf(previous, sizeof previous, "%s", found ? l->owner : "");
        if ((rc = store->leases->grant(t, channel, account, owner, ttl_ms, l)) < 0)
            return -1;
        if (rc) {
            lease_event(t, l, "acquire.success",
                        lease_fields(l, owner, previous[0] ? json_pack("{s:s}", "previousOwnerId", previous)
                                                           : NULL));
            return 0;
        }
    }
    return lost_races(t, channel, account);
}

/* The refusal of a heartbeat or release by owner with token, which is not
 * the latest grant; found: whether the lease l exists. */
static int
lease_lost(struct tx *t, const char *channel, const char *account, const char *owner, int64_t token,
           const struct lease *l, bool found, const char *what)
{
    json_t *details = json_pack("{s:o, s:o}",
                                "currentOwnerId", found && l->owner[0] ? json_string(l->owner) : json_null(),
                                "currentToken", found ? json_integer(l->token) : json_null());

    return tx_fail(t, "lease_lost", details, "%s refused: '%s' with token %lld does not hold the lease on %s/%s",
                   what, owner, (long long)token, channel, account);
}

static bool
holds_latest(const struct lease *l, const char *owner, int64_t token)
{
    return l->owner[0] && !strcmp(l->owner, owner) && l->token == token;
}

int
lease_heartbeat(struct tx *t, const char *channel, const char *account, const char *owner,
                int64_t token, int64_t ttl_ms, struct lease *l, bool *after_expiry)
{
    int rc;

    /* the usual case in one statement: the holder renews in time */
    *after_expiry = false;
    if ((rc = store->leases->renew(t, channel, account, owner, token, ttl_ms, true, l)) != 0)
        return rc < 0 ? -1 : 0;
    for (int i = 0; i < LEASE_RETRIES; i++) {
        int found = store->leases->get(t, channel, account, l);
        bool expired;

        if (found < 0)
            return -1;
        if (!found || !holds_latest(l, owner, token)) {
            if (!found)
                lease_blank(l, channel, account);
            /* Kept like acquire.contended: only the event row is written.
             * The event's token is the caller's stale one; currentToken
             * the latest. */
            lease_event(t, l, "heartbeat.lost",
                        lease_fields(l, owner, json_pack("{s:I, s:o}", "token", (json_int_t)token, "currentToken",
                                                         found ? json_integer(l->token) : json_null())));
            lease_lost(t, channel, account, owner, token, l, found, "heartbeat");
            return 1;
        }
        /* the caller holds the latest grant; if it expired, nobody took it */
        expired = !lease_held(l, t->now);
        if ((rc = store->leases->renew(t, channel, account, owner, token, ttl_ms, false, l)) < 0)
            return -1;
        if (rc) {
            *after_expiry = expired;
            return 0;
        }
    }
    return lost_races(t, channel, account);
}

int
lease_release(struct tx *t, const char *channel, const char *account, const char *owner,
              int64_t token, struct lease *l)
{
    int found, rc = store->leases->release(t, channel, account, owner, token, l);

    if (rc < 0)
        return -1;
    if (rc) {
        lease_event(t, l, "released", lease_fields(l, owner, NULL));
        return 0;
    }
    /* not the latest grant of owner: say who holds it now */
    if ((found = store->leases->get(t, channel, account, l)) < 0)
        return -1;
    return lease_lost(t, channel, account, owner, token, l, found, "release");
}

int
lease_force_release(struct tx *t, const char *channel, const char *account, struct lease *l,
                    bool *found, bool *released)
{
    *found = *released = false;
    for (int i = 0; i < LEASE_RETRIES; i++) {
        char was[LEASE_OWNER_MAX + 1];
        int rc, got = store->leases->get(t, channel, account, l);

        if (got < 0)
            return -1;
        *found = got;
        if (!got || !l->owner[0])
            return 0;
        memcpy(was, l->owner, sizeof was);
        if ((rc = store->leases->force_release(t, channel, account, l)) < 0)
            return -1;
        if (rc) {
            *released = true;
            lease_event(t, l, "force_released", lease_fields(l, was, NULL));
            return 0;
        }
    }
    return lost_races(t, channel, account);
}

/* ---- accounts ---------------------------------------------------------------- */

int
account_set(struct tx *t, const char *channel, const char *account, bool enabled, json_t *config,
            struct account *a)
{
    bool created;

    if (store->leases->account_put(t, channel, account, enabled, config, a, &created) < 0)
        return -1;
    /* config stays out of the event: it may hold channel credentials */
    event_emit(t, "info", "account.updated",
               json_pack("{s:s, s:s, s:b, s:b}", "channel", channel, "accountId", account,
                         "enabled", enabled, "created", created));
    return 0;
}

int
account_remove(struct tx *t, const char *channel, const char *account)
{
    int rc = store->leases->account_delete(t, channel, account);

    if (rc < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no account %s/%s", channel, account);
    event_emit(t, "info", "account.deleted", json_pack("{s:s, s:s}", "channel", channel, "accountId", account));
    return 0;
}
