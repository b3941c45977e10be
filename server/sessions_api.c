/* sessions_api.c -- the routes of sessions (SPEC section 6): the path
 * names and JSON bodies into a struct session_write or a read of the rules
 * (sessions.c), and their answers.
 *
 * A write is encoded (and encrypted) here, on the HTTP thread, before it
 * is queued: the writer only hands bytes to the store. A batch is checked
 * whole before anything is queued and runs as one write, in one savepoint:
 * all or nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

/* Check the {channel}/{accountId} of the path. 0 or -1 (answered 400). */
static int
scope(struct req *r, const char **channel, const char **account)
{
    const char *why;

    *channel = req_param(r, 0);
    *account = req_param(r, 1);
    if ((why = session_bad_channel(*channel)))
        return req_fail(r, "bad_request", NULL, "channel %s", why);
    if ((why = session_bad_account(*account)))
        return req_fail(r, "bad_request", NULL, "accountId %s", why);
    return 0;
}

static int
check_key(struct req *r, const char *key)
{
    const char *why = session_bad_key(key);

    if (why)
        return req_fail(r, "bad_request", json_pack("{s:s}", "field", "key"), "session key %s", why);
    return 0;
}

/* ---- reads ------------------------------------------------------------------ */

int
sessions_get_all(struct req *r)
{
    const char *channel, *account;
    struct tx t;
    json_t *entries;
    int rc;

    if (scope(r, &channel, &account) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = session_get_all(&t, channel, account, &entries);
    if (rc < 0)
        req_fail_tx(r, &t);
    tx_read_end(&t);
    return rc < 0 ? -1 : req_ok(r, 200, json_pack("{s:o}", "entries", entries));
}

struct key_list {
    json_t *keys, *entries;
};

static int
key_visit(const struct session_entry *e, void *arg)
{
    struct key_list *l = arg;

    json_array_append_new(l->keys, json_string(e->key));
    json_array_append_new(l->entries, json_pack("{s:s, s:I, s:I}", "key", e->key, "size",
                                                (json_int_t)session_size(e), "updatedAt",
                                                (json_int_t)e->updated_at));
    return 0;
}

int
sessions_keys(struct req *r)
{
    const char *channel, *account;
    struct key_list l;
    struct tx t;
    int rc;

    if (scope(r, &channel, &account) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    l = (struct key_list){json_array(), json_array()};
    rc = store->sessions->list(&t, channel, account, false, key_visit, &l);
    if (rc != 0) {
        json_decref(l.keys), json_decref(l.entries);
        req_fail_tx(r, &t);
    }
    tx_read_end(&t);
    return rc != 0 ? -1 : req_ok(r, 200, json_pack("{s:o, s:o}", "keys", l.keys, "entries", l.entries));
}

int
sessions_get(struct req *r)
{
    const char *channel, *account, *key = req_param(r, 2);
    struct tx t;
    json_t *v;
    int rc;

    if (scope(r, &channel, &account) < 0 || check_key(r, key) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = session_get(&t, channel, account, key, &v);
    if (rc < 0)
        req_fail_tx(r, &t);
    tx_read_end(&t);
    return rc < 0 ? -1 : req_ok(r, 200, json_pack("{s:s, s:o}", "key", key, "value", v));
}

/* ---- writes ------------------------------------------------------------------ */

static void
write_free(void *p)
{
    struct session_write *w = p;

    if (!w)
        return;
    for (size_t i = 0; i < w->nops; i++)
        free(w->ops[i].data);
    free(w->ops);
    free(w);
}

/* Common start of every write: path scope, the optional (or required)
 * leaseToken, the route's own fields (value, set, delete: each parsed when
 * its out pointer is given, borrowed from r->json) and room for nops
 * operations plus one per set/delete item. Returns the write (owned by r
 * as r->ctx) or NULL (answered). */
static struct session_write *
write_begin(struct req *r, size_t nops_max, json_t **value, json_t **set, json_t **del)
{
    struct session_write *w = calloc(1, sizeof *w);
    struct field spec[5];
    int i = 0;

    if (!w) {
        req_fail(r, "unavailable", NULL, "out of memory");
        return NULL;
    }
    r->ctx = w;
    r->ctx_free = write_free;
    if (scope(r, &w->channel, &w->account) < 0)
        return NULL;
    spec[i++] = (struct field){"leaseToken", F_INT, 0, &w->token, 0, INT64_MAX, &w->has_token};
    if (value)
        spec[i++] = (struct field)FIELD_ANY("value", value, F_REQUIRED);
    if (set)
        spec[i++] = (struct field)FIELD_OBJECT("set", set, 0);
    if (del)
        spec[i++] = (struct field)FIELD_ARRAY("delete", del, 0);
    spec[i] = (struct field)FIELD_END;
    if (req_fields(r, spec) < 0)
        return NULL;
    if (cfg.session_require_lease && !w->has_token) {
        req_fail(r, "bad_request", json_pack("{s:s}", "field", "leaseToken"),
                 "field 'leaseToken' is required: BATON_SESSION_REQUIRE_LEASE is on");
        return NULL;
    }
    if (set)
        nops_max += json_object_size(*set);
    if (del)
        nops_max += json_array_size(*del);
    if (nops_max && !(w->ops = calloc(nops_max, sizeof *w->ops))) {
        req_fail(r, "unavailable", NULL, "out of memory");
        return NULL;
    }
    return w;
}

/* Add a set of key to value to w. 0 or -1 (answered 400). */
static int
add_set(struct req *r, struct session_write *w, const char *key, json_t *value)
{
    const char *why;

    if (check_key(r, key) < 0)
        return -1;
    if (session_encode(w->channel, w->account, key, value, &w->ops[w->nops], &why) < 0)
        return req_fail(r, "bad_request", json_pack("{s:s, s:s}", "field", "value", "key", key),
                        "value of session entry '%s' %s", key, why);
    w->nops++;
    return 0;
}

static int
add_delete(struct req *r, struct session_write *w, const char *key)
{
    if (check_key(r, key) < 0)
        return -1;
    w->ops[w->nops++].key = key;
    return 0;
}

/* PUT /v1/sessions/{channel}/{accountId}/keys/{key} {value, leaseToken?} */

static int
put_tx(struct tx *t, struct req *r)
{
    struct session_write *w = r->ctx;

    if (session_put(t, w) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:s, s:I}", "key", w->ops[0].key, "updatedAt", (json_int_t)t->now));
}

int
sessions_put(struct req *r)
{
    json_t *value = NULL;
    struct session_write *w = write_begin(r, 1, &value, NULL, NULL);

    if (!w || add_set(r, w, req_param(r, 2), value) < 0)
        return -1;
    return req_submit(r, put_tx);
}

/* DELETE /v1/sessions/{channel}/{accountId}/keys/{key} {leaseToken?} */

static int
delete_tx(struct tx *t, struct req *r)
{
    bool deleted;

    if (session_remove(t, r->ctx, &deleted) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:b}", "deleted", deleted));
}

int
sessions_delete(struct req *r)
{
    struct session_write *w = write_begin(r, 1, NULL, NULL, NULL);

    if (!w || add_delete(r, w, req_param(r, 2)) < 0)
        return -1;
    return req_submit(r, delete_tx);
}

/* POST /v1/sessions/{channel}/{accountId}/batch {set?, delete?, leaseToken?} */

static int
batch_tx(struct tx *t, struct req *r)
{
    int64_t nset, ndel;

    if (session_batch(t, r->ctx, &nset, &ndel) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:I, s:I}", "set", (json_int_t)nset, "deleted", (json_int_t)ndel));
}

int
sessions_batch(struct req *r)
{
    json_t *set = NULL, *del = NULL, *v;
    struct session_write *w = write_begin(r, 0, NULL, &set, &del);
    const char *key;
    size_t i;

    if (!w)
        return -1;
    json_array_foreach(del, i, v) {
        key = json_string_value(v);
        if (!key)
            return req_fail(r, "bad_request", json_pack("{s:s}", "field", "delete"),
                            "field 'delete' must be an array of strings (item %zu is not)", i);
        if (json_object_get(set, key))
            return req_fail(r, "bad_request", json_pack("{s:s, s:s}", "field", "delete", "key", key),
                            "session entry '%s' is both in 'set' and in 'delete'", key);
        if (add_delete(r, w, key) < 0)
            return -1;
    }
    json_object_foreach(set, key, v)
        if (add_set(r, w, key, v) < 0)
            return -1;
    return req_submit(r, batch_tx);
}

/* DELETE /v1/sessions/{channel}/{accountId} {leaseToken?} -- clearAll */

static int
clear_tx(struct tx *t, struct req *r)
{
    int64_t n;

    if (session_clear(t, r->ctx, &n) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:I}", "deleted", (json_int_t)n));
}

int
sessions_clear(struct req *r)
{
    struct session_write *w = write_begin(r, 0, NULL, NULL, NULL);

    return w ? req_submit(r, clear_tx) : -1;
}
