/* leases_api.c -- the routes of leases and accounts (SPEC section 4): the
 * checks of their input, their JSON and their answers. The transitions are
 * in leases.c; the Convex layer calls these handlers with its own
 * struct req.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define LEASE_TTL_MIN 1000
#define LEASE_TTL_MAX 86400000

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

/* The lease as SPEC section 4 shows it; held is judged at now. New
 * reference. */
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

/* {lease[, renewedAfterExpiry]} */
static json_t *
lease_answer(const struct lease *l, int64_t now, bool after_expiry)
{
    json_t *out = json_pack("{s:o}", "lease", lease_json(l, now));

    if (out && after_expiry)
        json_object_set_new(out, "renewedAfterExpiry", json_true());
    return out;
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

/* A transition's result: rc 1 is a refusal kept on record (answered from
 * t->err, the write kept), -1 a failure the glue answers. */
static int
lease_result(struct tx *t, struct req *r, int rc, const struct lease *l, bool after_expiry)
{
    if (rc < 0)
        return -1;
    if (rc > 0) {
        req_fail_tx(r, t);
        return 0;
    }
    return req_ok(r, 200, lease_answer(l, t->now, after_expiry));
}

static int
acquire_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    bool after_expiry;
    int rc = lease_acquire(t, lr->channel, lr->account, lr->owner, lr->ttl, &l, &after_expiry);

    return lease_result(t, r, rc, &l, after_expiry);
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

static int
heartbeat_tx(struct tx *t, struct req *r)
{
    struct lease_req *lr = r->ctx;
    struct lease l;
    bool after_expiry;
    int rc = lease_heartbeat(t, lr->channel, lr->account, lr->owner, lr->token, lr->has_ttl ? lr->ttl : 0,
                             &l, &after_expiry);

    return lease_result(t, r, rc, &l, after_expiry);
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

    if (lease_release(t, lr->channel, lr->account, lr->owner, lr->token, &l) < 0)
        return -1;
    return req_ok(r, 200, lease_answer(&l, t->now, false));
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
    bool found, released;

    if (lease_force_release(t, lr->channel, lr->account, &l, &found, &released) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:o, s:b}", "lease", found ? lease_json(&l, t->now) : json_null(),
                                    "released", released));
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
    struct tx t;
    struct lease l;
    int found;

    if (path_keys(r, &channel, &account) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    if ((found = store->leases->get(&t, channel, account, &l)) < 0)
        req_fail_tx(r, &t);
    else
        req_ok(r, 200, found ? lease_json(&l, t.now) : json_null());
    tx_read_end(&t);
    return found < 0 ? -1 : 0;
}

static int
list_lease(struct tx *t, const struct lease *l, void *arg)
{
    return json_array_append_new(arg, lease_json(l, t->now)) < 0
               ? tx_fail(t, "unavailable", NULL, "out of memory") : 0;
}

/* GET /v1/leases?ownerId=&channel=: leases held now (owner set, not
 * expired), by channel then account. */
int
leases_list(struct req *r)
{
    const char *owner = arg_str(r, "ownerId"), *channel = arg_str(r, "channel");
    struct tx t;
    json_t *out;
    int rc;

    if (owner && strlen(owner) > LEASE_OWNER_MAX)
        return req_fail(r, "bad_request", NULL, "field 'ownerId' is longer than %d bytes", LEASE_OWNER_MAX);
    if (channel && check_key(r, "channel", channel) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    out = json_array();
    if (!out)
        rc = tx_fail(&t, "unavailable", NULL, "out of memory");
    else
        rc = store->leases->list_held(&t, owner, channel, list_lease, out);
    if (rc < 0) {
        json_decref(out);
        req_fail_tx(r, &t);
    } else
        req_ok(r, 200, json_pack("{s:o}", "leases", out));
    tx_read_end(&t);
    return rc;
}

/* ---- accounts ---------------------------------------------------------------- */

/* The account as SPEC section 4 shows it. New reference. */
static json_t *
account_json(const struct account *a)
{
    return json_pack("{s:s, s:s, s:b, s:O, s:I, s:I}", "channel", a->channel, "accountId", a->account,
                     "enabled", a->enabled, "config", a->config, "createdAt", (json_int_t)a->created_at,
                     "updatedAt", (json_int_t)a->updated_at);
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
    struct account a;

    if (account_set(t, ar->channel, ar->account, ar->enabled, ar->config, &a) < 0)
        return -1;
    req_ok(r, 200, json_pack("{s:o}", "account", account_json(&a)));
    account_clear(&a);
    return 0;
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
    struct tx t;
    struct account a;
    int found;

    if (path_keys(r, &channel, &account) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    if ((found = store->leases->account_get(&t, channel, account, &a)) < 0)
        req_fail_tx(r, &t);
    else if (!found)
        req_fail(r, "not_found", NULL, "no account %s/%s", channel, account);
    else {
        req_ok(r, 200, account_json(&a));
        account_clear(&a);
    }
    tx_read_end(&t);
    return found > 0 ? 0 : -1;
}

static int
list_account(struct tx *t, const struct account *a, void *arg)
{
    return json_array_append_new(arg, account_json(a)) < 0
               ? tx_fail(t, "unavailable", NULL, "out of memory") : 0;
}

/* GET /v1/accounts?channel=&enabled=true|false: {accounts:[...]} by
 * channel then account id (listEnabledAccounts). */
int
accounts_list(struct req *r)
{
    const char *channel = arg_str(r, "channel"), *en = req_query(r, "enabled");
    int enabled = -1;       /* -1: both */
    struct tx t;
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
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    out = json_array();
    if (!out)
        rc = tx_fail(&t, "unavailable", NULL, "out of memory");
    else
        rc = store->leases->account_list(&t, channel, enabled, list_account, out);
    if (rc < 0) {
        json_decref(out);
        req_fail_tx(r, &t);
    } else
        req_ok(r, 200, json_pack("{s:o}", "accounts", out));
    tx_read_end(&t);
    return rc;
}

static int
account_delete_tx(struct tx *t, struct req *r)
{
    struct account_req *ar = r->ctx;

    if (account_remove(t, ar->channel, ar->account) < 0)
        return -1;
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
