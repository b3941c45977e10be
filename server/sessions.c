/* sessions.c -- sessions (SPEC section 6): per (channel, accountId) a
 * key/value store of JSON values, the Baileys auth state, optionally
 * encrypted at rest and fenced by the account's lease.
 *
 * DESIGN
 * Each entry is one row holding the compact JSON text of its value. Values
 * are encoded (and encrypted) on the HTTP thread before the write is
 * queued, so the writer only binds bytes; reads decode on the reader
 * thread. A batch is validated whole before anything is queued, and its
 * writes run in one savepoint: all or nothing.
 *
 * Encryption at rest. With BATON_SESSION_KEY (32 bytes, 64 hex characters
 * or standard base64 with or without padding) every write stores
 * enc=1, value = nonce(24) || XChaCha20-Poly1305-IETF ciphertext of the
 * JSON text, with a fresh random nonce per write and associated data
 * "channel/accountId/key" (channel and accountId cannot contain '/'), so a
 * ciphertext copied to another row or account fails to authenticate. The
 * entry names (keys) are NOT encrypted: they stay in clear so that keys,
 * delete and clearAll work without the key; they can reveal JIDs/phone
 * numbers, not credentials. Without a key values are stored enc=0 in clear.
 *
 * Mixed states, decided here:
 *  - enc=1 row, no key configured, or a different key: the value is never
 *    served; GET answers 409 undecryptable naming the entry and getAll 409
 *    undecryptable listing every such entry in details.undecryptable.
 *    Writes, deletes and clearAll still work (overwriting is how a new
 *    pairing replaces an unreadable state).
 *  - enc=0 row (written before a key was configured) with a key configured:
 *    still served, and stored encrypted the next time that entry is written.
 *    Until then its plaintext stays in the file; so do copies of it in
 *    freed pages until SQLite reuses them (secure_delete is not enabled).
 *    Baileys rewrites creds and keys often, but an operator who turns on
 *    encryption for an existing account should clearAll and pair again.
 *  - Key rotation is not built: there is no online or offline re-encrypt.
 *    Rotating means stopping the sender, clearAll, restarting with the new
 *    key and pairing again (or exporting getAll with the old key and
 *    writing it back as a batch with the new one).
 *
 * Lease fencing. A write carrying leaseToken runs lease_fence in the same
 * transaction: a stale socket owner gets 409 lease_not_held and changes
 * nothing. BATON_SESSION_REQUIRE_LEASE=1 makes the token mandatory.
 * Events carry entry names and counts, never values.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batond.h"

#define SESSION_KEY_MAX 512             /* bytes of an entry name */
#define SESSION_VALUE_MAX (1 << 20)     /* bytes of a value's compact JSON text */
#define SESSION_CHANNEL_MAX 64
#define SESSION_ACCOUNT_MAX 256
#define EVENT_KEYS_MAX 50               /* entry names listed in one event */

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES

static unsigned char skey[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
static bool have_key;

/* ---- the key ------------------------------------------------------------ */

/* Decode a 32-byte key written as 64 hex characters or standard base64
 * (44 characters with padding, 43 without). 0 or -1. */
static int
parse_key(const char *s, unsigned char *out)
{
    size_t len = strlen(s), got = 0;
    const char *end = NULL;
    int variant;

    if (len == 2 * sizeof skey)
        return sodium_hex2bin(out, sizeof skey, s, len, NULL, &got, &end) == 0 && got == sizeof skey &&
               end == s + len ? 0 : -1;
    if (len == 44)
        variant = sodium_base64_VARIANT_ORIGINAL;
    else if (len == 43)
        variant = sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    else
        return -1;
    return sodium_base642bin(out, sizeof skey, s, len, NULL, &got, &end, variant) == 0 &&
           got == sizeof skey && end == s + len ? 0 : -1;
}

int
sessions_init(char *why, size_t n)
{
    have_key = false;
    if (!cfg.session_key)
        return 0;
    if (parse_key(cfg.session_key, skey) < 0) {
        sodium_memzero(skey, sizeof skey);
        snprintf(why, n, "BATON_SESSION_KEY must be 32 bytes written as 64 hex characters or "
                         "base64, got %zu characters that are neither", strlen(cfg.session_key));
        return -1;
    }
    sodium_mlock(skey, sizeof skey);    /* best effort: keep it out of swap */
    /* the text form is no longer needed; do not leave it in the heap */
    sodium_memzero(cfg.session_key, strlen(cfg.session_key));
    have_key = true;
    return 0;
}

void
sessions_free(void)
{
    sodium_munlock(skey, sizeof skey);  /* zeroes it too */
    sodium_memzero(skey, sizeof skey);
    have_key = false;
}

/* "channel/account/key", the associated data binding a ciphertext to its
 * row. Caller frees; NULL when out of memory. */
static char *
assoc(const char *channel, const char *account, const char *key, size_t *len)
{
    size_t n = strlen(channel) + strlen(account) + strlen(key) + 3;
    char *ad = malloc(n);

    if (ad)
        *len = (size_t)snprintf(ad, n, "%s/%s/%s", channel, account, key);
    return ad;
}

/* Encode value as stored: compact JSON text, sealed when a key is set.
 * On success *out (caller frees), *len and *enc are set and 0 returned;
 * -1 with *why a static reason. */
static int
encode(const char *channel, const char *account, const char *key, json_t *value,
       unsigned char **out, size_t *len, int *enc, const char **why)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t tlen, adlen;
    unsigned char *box;
    char *ad;
    unsigned long long clen;

    if (!text) {
        *why = "cannot be encoded";
        return -1;
    }
    tlen = strlen(text);
    if (tlen > SESSION_VALUE_MAX) {
        free(text);
        *why = "is larger than 1 MiB";
        return -1;
    }
    if (!have_key) {
        *out = (unsigned char *)text;
        *len = tlen;
        *enc = 0;
        return 0;
    }
    box = malloc(NONCE_LEN + tlen + TAG_LEN);
    ad = assoc(channel, account, key, &adlen);
    if (!box || !ad) {
        free(box), free(ad), free(text);
        *why = "cannot be encrypted (out of memory)";
        return -1;
    }
    randombytes_buf(box, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(box + NONCE_LEN, &clen, (unsigned char *)text, tlen,
                                               (unsigned char *)ad, adlen, NULL, box, skey);
    sodium_memzero(text, tlen);
    free(text);
    free(ad);
    *out = box;
    *len = NONCE_LEN + (size_t)clen;
    *enc = 1;
    return 0;
}

/* Decode the value of a row (columns enc, value at i, i+1). Returns the
 * value (caller owns) or NULL with *why saying why it cannot be served. */
static json_t *
decode(sqlite3_stmt *st, int i, const char *channel, const char *account, const char *key,
       const char **why)
{
    int enc = sqlite3_column_int(st, i);
    const unsigned char *b = sqlite3_column_blob(st, i + 1);
    size_t blen = (size_t)sqlite3_column_bytes(st, i + 1), adlen, tlen;
    unsigned long long plen;
    unsigned char *text;
    char *ad;
    json_t *v;

    if (enc == 0) {
        v = b ? json_loadb((const char *)b, blen, JSON_DECODE_ANY, NULL) : NULL;
        if (!v)
            *why = "stored value is not valid JSON";
        return v;
    }
    if (enc != 1) {
        *why = "stored in an unknown format";
        return NULL;
    }
    if (!have_key) {
        *why = "encrypted and BATON_SESSION_KEY is not set";
        return NULL;
    }
    if (!b || blen < NONCE_LEN + TAG_LEN) {
        *why = "encrypted value is truncated";
        return NULL;
    }
    tlen = blen - NONCE_LEN - TAG_LEN;
    text = malloc(tlen + 1);
    ad = assoc(channel, account, key, &adlen);
    if (!text || !ad) {
        free(text), free(ad);
        *why = "out of memory";
        return NULL;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(text, &plen, NULL, b + NONCE_LEN, blen - NONCE_LEN,
                                                   (unsigned char *)ad, adlen, b, skey) != 0) {
        free(text), free(ad);
        *why = "cannot be decrypted with the configured BATON_SESSION_KEY (another key, or tampered)";
        return NULL;
    }
    v = json_loadb((const char *)text, (size_t)plen, JSON_DECODE_ANY, NULL);
    sodium_memzero(text, tlen);
    free(text);
    free(ad);
    if (!v)
        *why = "decrypted value is not valid JSON";
    return v;
}

/* ---- validation ------------------------------------------------------------ */

/* NULL when s is an acceptable name of 1..max bytes: valid UTF-8, no control
 * characters, and none of the bytes in `banned`; else the reason. */
static const char *
bad_name(const char *s, size_t max, const char *banned)
{
    size_t len = s ? strlen(s) : 0;
    json_t *probe;

    if (!len)
        return "must not be empty";
    if (len > max)
        return "is too long";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "must not contain control characters";
        else if (strchr(banned, *p))
            return "contains a character that is not allowed";
    probe = json_string(s);     /* NULL when not valid UTF-8 */
    if (!probe)
        return "must be valid UTF-8";
    json_decref(probe);
    return NULL;
}

/* Check the {channel}/{accountId} of the path. 0 or -1 (answered 400). */
static int
scope(struct req *r, const char **channel, const char **account)
{
    const char *why;

    *channel = req_param(r, 0);
    *account = req_param(r, 1);
    if ((why = bad_name(*channel, SESSION_CHANNEL_MAX, "./")))
        return req_fail(r, "bad_request", NULL, "channel %s", why);
    if ((why = bad_name(*account, SESSION_ACCOUNT_MAX, "/")))
        return req_fail(r, "bad_request", NULL, "accountId %s", why);
    return 0;
}

static int
check_key(struct req *r, const char *key)
{
    const char *why = bad_name(key, SESSION_KEY_MAX, "");

    if (why)
        return req_fail(r, "bad_request", json_pack("{s:s}", "field", "key"), "session key %s", why);
    return 0;
}

/* ---- reads ------------------------------------------------------------------ */

static sqlite3 *
reader(struct req *r)
{
    sqlite3 *db = db_reader();

    if (!db)
        req_fail(r, "unavailable", NULL, "database cannot be read");
    return db;
}

int
sessions_get_all(struct req *r)
{
    const char *channel, *account;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *entries, *bad;
    int rc;

    if (scope(r, &channel, &account) < 0 || !(db = reader(r)))
        return -1;
    st = db_prep(db, "SELECT key, enc, value FROM sessions WHERE channel = ? AND account_id = ?"
                     " ORDER BY key");
    if (!st)
        return db_fail(r, db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    entries = json_object();
    bad = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0), *why = NULL;
        json_t *v = decode(st, 1, channel, account, key, &why);
        if (v)
            json_object_set_new(entries, key, v);
        else
            json_array_append_new(bad, json_string(key));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(entries), json_decref(bad);
        return db_fail(r, db);
    }
    if (json_array_size(bad)) {
        size_t n = json_array_size(bad);
        json_decref(entries);
        return req_fail(r, "undecryptable",
                        json_pack("{s:s, s:s, s:o}", "channel", channel, "accountId", account,
                                  "undecryptable", bad),
                        "%zu session entr%s of %s/%s cannot be read: %s", n, n == 1 ? "y" : "ies",
                        channel, account, have_key ? "wrong BATON_SESSION_KEY, or tampered with"
                                                   : "encrypted and BATON_SESSION_KEY is not set");
    }
    json_decref(bad);
    return req_ok(r, 200, json_pack("{s:o}", "entries", entries));
}

int
sessions_keys(struct req *r)
{
    const char *channel, *account;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *keys, *entries;
    int rc;

    if (scope(r, &channel, &account) < 0 || !(db = reader(r)))
        return -1;
    /* sizes are of the JSON text: an encrypted value less nonce and tag */
    st = db_prep(db, "SELECT key, length(CAST(value AS BLOB)) - CASE enc WHEN 1 THEN 40 ELSE 0 END,"
                     " updated_at FROM sessions WHERE channel = ? AND account_id = ? ORDER BY key");
    if (!st)
        return db_fail(r, db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    keys = json_array();
    entries = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(keys, col_text(st, 0));
        json_array_append_new(entries, json_pack("{s:o, s:I, s:o}", "key", col_text(st, 0), "size",
                                                 (json_int_t)sqlite3_column_int64(st, 1), "updatedAt",
                                                 col_int(st, 2)));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(keys);
        json_decref(entries);
        return db_fail(r, db);
    }
    return req_ok(r, 200, json_pack("{s:o, s:o}", "keys", keys, "entries", entries));
}

int
sessions_get(struct req *r)
{
    const char *channel, *account, *key = req_param(r, 2), *why = NULL;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *v;
    int rc;

    if (scope(r, &channel, &account) < 0 || check_key(r, key) < 0 || !(db = reader(r)))
        return -1;
    st = db_prep(db, "SELECT enc, value FROM sessions WHERE channel = ? AND account_id = ? AND key = ?");
    if (!st)
        return db_fail(r, db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return db_fail(r, db);
        return req_fail(r, "not_found", json_pack("{s:s}", "key", key),
                        "no session entry '%s' for %s/%s", key, channel, account);
    }
    v = decode(st, 0, channel, account, key, &why);
    sqlite3_reset(st);
    if (!v)
        return req_fail(r, "undecryptable", json_pack("{s:s, s:s, s:s}", "channel", channel,
                                                      "accountId", account, "key", key),
                        "session entry '%s' of %s/%s is %s", key, channel, account, why);
    return req_ok(r, 200, json_pack("{s:s, s:o}", "key", key, "value", v));
}

/* ---- writes ------------------------------------------------------------------ */

/* One entry to write or delete. */
struct op {
    const char *key;            /* borrowed from r->json or r->params */
    unsigned char *data;        /* the stored bytes (owned); NULL: delete */
    size_t len;
    int enc;
};

struct write_ctx {
    const char *channel, *account;  /* borrowed from r->params */
    int64_t token;
    bool has_token;
    struct op *ops;
    size_t nops;
};

static void
write_ctx_free(void *p)
{
    struct write_ctx *c = p;

    if (!c)
        return;
    for (size_t i = 0; i < c->nops; i++)
        free(c->ops[i].data);
    free(c->ops);
    free(c);
}

/* Common start of every write: path scope, the optional (or required)
 * leaseToken, the route's own fields (value, set, delete: each parsed when
 * its out pointer is given, borrowed from r->json) and room for nops
 * operations plus one per set/delete item. Returns the ctx (owned by r) or
 * NULL (answered). */
static struct write_ctx *
write_begin(struct req *r, size_t nops_max, json_t **value, json_t **set, json_t **del)
{
    struct write_ctx *c = calloc(1, sizeof *c);
    struct field spec[5];
    int i = 0;

    if (!c) {
        req_fail(r, "unavailable", NULL, "out of memory");
        return NULL;
    }
    r->ctx = c;
    r->ctx_free = write_ctx_free;
    if (scope(r, &c->channel, &c->account) < 0)
        return NULL;
    spec[i++] = (struct field){"leaseToken", F_INT, 0, &c->token, 0, INT64_MAX, &c->has_token};
    if (value)
        spec[i++] = (struct field)FIELD_ANY("value", value, F_REQUIRED);
    if (set)
        spec[i++] = (struct field)FIELD_OBJECT("set", set, 0);
    if (del)
        spec[i++] = (struct field)FIELD_ARRAY("delete", del, 0);
    spec[i] = (struct field)FIELD_END;
    if (req_fields(r, spec) < 0)
        return NULL;
    if (cfg.session_require_lease && !c->has_token) {
        req_fail(r, "bad_request", json_pack("{s:s}", "field", "leaseToken"),
                 "field 'leaseToken' is required: BATON_SESSION_REQUIRE_LEASE is on");
        return NULL;
    }
    if (set)
        nops_max += json_object_size(*set);
    if (del)
        nops_max += json_array_size(*del);
    if (nops_max && !(c->ops = calloc(nops_max, sizeof *c->ops))) {
        req_fail(r, "unavailable", NULL, "out of memory");
        return NULL;
    }
    return c;
}

/* Add a set of key to value to c. 0 or -1 (answered 400). */
static int
add_set(struct req *r, struct write_ctx *c, const char *key, json_t *value)
{
    struct op *o = &c->ops[c->nops];
    const char *why;

    if (check_key(r, key) < 0)
        return -1;
    if (encode(c->channel, c->account, key, value, &o->data, &o->len, &o->enc, &why) < 0)
        return req_fail(r, "bad_request", json_pack("{s:s, s:s}", "field", "value", "key", key),
                        "value of session entry '%s' %s", key, why);
    o->key = key;
    c->nops++;
    return 0;
}

static int
add_delete(struct req *r, struct write_ctx *c, const char *key)
{
    if (check_key(r, key) < 0)
        return -1;
    c->ops[c->nops++].key = key;
    return 0;
}

/* The lease fence, in the write's transaction. */
static int
fence(struct tx *t, struct write_ctx *c)
{
    return c->has_token ? lease_fence(t, c->channel, c->account, c->token) : 0;
}

/* Apply c's operations; counts what was written and what was deleted. */
static int
apply(struct tx *t, struct req *r, struct write_ctx *c, int64_t *nset, int64_t *ndel)
{
    *nset = *ndel = 0;
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        sqlite3_stmt *st;

        if (o->data) {
            st = db_prep(SQ(t), "INSERT INTO sessions(channel, account_id, key, enc, value, updated_at)"
                                " VALUES(?, ?, ?, ?, ?, ?)"
                                " ON CONFLICT(channel, account_id, key) DO UPDATE"
                                " SET enc = excluded.enc, value = excluded.value,"
                                " updated_at = excluded.updated_at");
            if (!st)
                return db_fail(r, SQ(t));
            sqlite3_bind_int(st, 4, o->enc);
            if (o->enc)
                sqlite3_bind_blob(st, 5, o->data, (int)o->len, SQLITE_STATIC);
            else
                sqlite3_bind_text(st, 5, (const char *)o->data, (int)o->len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, t->now);
        } else {
            st = db_prep(SQ(t), "DELETE FROM sessions WHERE channel = ? AND account_id = ? AND key = ?");
            if (!st)
                return db_fail(r, SQ(t));
        }
        sqlite3_bind_text(st, 1, c->channel, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->account, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, o->key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return db_fail(r, SQ(t));
        }
        sqlite3_reset(st);
        if (o->data)
            (*nset)++;
        else
            *ndel += sqlite3_changes(SQ(t));
    }
    return 0;
}

static void
emit(struct tx *t, struct write_ctx *c, const char *what, json_t *fields)
{
    char name[SESSION_CHANNEL_MAX + 32];

    json_t *all = json_pack("{s:s, s:s}", "channel", c->channel, "accountId", c->account);

    snprintf(name, sizeof name, "%s.session.%s", c->channel, what);
    json_object_update(all, fields);
    json_decref(fields);
    event_emit(t, "info", name, all);
}

/* PUT /v1/sessions/{channel}/{accountId}/keys/{key} {value, leaseToken?} */

static int
put_tx(struct tx *t, struct req *r)
{
    struct write_ctx *c = r->ctx;
    int64_t nset, ndel;

    if (fence(t, c) < 0 || apply(t, r, c, &nset, &ndel) < 0)
        return -1;
    emit(t, c, "updated", json_pack("{s:s}", "key", c->ops[0].key));
    return req_ok(r, 200, json_pack("{s:s, s:I}", "key", c->ops[0].key, "updatedAt", (json_int_t)t->now));
}

int
sessions_put(struct req *r)
{
    json_t *value = NULL;
    struct write_ctx *c = write_begin(r, 1, &value, NULL, NULL);

    if (!c || add_set(r, c, req_param(r, 2), value) < 0)
        return -1;
    return req_submit(r, put_tx);
}

/* DELETE /v1/sessions/{channel}/{accountId}/keys/{key} {leaseToken?} */

static int
delete_tx(struct tx *t, struct req *r)
{
    struct write_ctx *c = r->ctx;
    int64_t nset, ndel;

    if (fence(t, c) < 0 || apply(t, r, c, &nset, &ndel) < 0)
        return -1;
    if (ndel)
        emit(t, c, "deleted", json_pack("{s:s}", "key", c->ops[0].key));
    return req_ok(r, 200, json_pack("{s:b}", "deleted", ndel > 0));
}

int
sessions_delete(struct req *r)
{
    struct write_ctx *c = write_begin(r, 1, NULL, NULL, NULL);

    if (!c || add_delete(r, c, req_param(r, 2)) < 0)
        return -1;
    return req_submit(r, delete_tx);
}

/* POST /v1/sessions/{channel}/{accountId}/batch {set?, delete?, leaseToken?} */

static int
batch_tx(struct tx *t, struct req *r)
{
    struct write_ctx *c = r->ctx;
    int64_t nset, ndel;
    json_t *names;

    if (fence(t, c) < 0 || apply(t, r, c, &nset, &ndel) < 0)
        return -1;
    if (c->nops) {
        names = json_array();
        for (size_t i = 0; i < c->nops && i < EVENT_KEYS_MAX; i++)
            json_array_append_new(names, json_string(c->ops[i].key));
        emit(t, c, "updated", json_pack("{s:I, s:I, s:o, s:b}", "set", (json_int_t)nset,
                                        "deleted", (json_int_t)ndel, "keys", names,
                                        "keysTruncated", c->nops > EVENT_KEYS_MAX));
    }
    return req_ok(r, 200, json_pack("{s:I, s:I}", "set", (json_int_t)nset, "deleted", (json_int_t)ndel));
}

int
sessions_batch(struct req *r)
{
    json_t *set = NULL, *del = NULL, *v;
    struct write_ctx *c = write_begin(r, 0, NULL, &set, &del);
    const char *key;
    size_t i;

    if (!c)
        return -1;
    json_array_foreach(del, i, v) {
        key = json_string_value(v);
        if (!key)
            return req_fail(r, "bad_request", json_pack("{s:s}", "field", "delete"),
                            "field 'delete' must be an array of strings (item %zu is not)", i);
        if (json_object_get(set, key))
            return req_fail(r, "bad_request", json_pack("{s:s, s:s}", "field", "delete", "key", key),
                            "session entry '%s' is both in 'set' and in 'delete'", key);
        if (add_delete(r, c, key) < 0)
            return -1;
    }
    json_object_foreach(set, key, v)
        if (add_set(r, c, key, v) < 0)
            return -1;
    return req_submit(r, batch_tx);
}

/* DELETE /v1/sessions/{channel}/{accountId} {leaseToken?} -- clearAll */

static int
clear_tx(struct tx *t, struct req *r)
{
    struct write_ctx *c = r->ctx;
    sqlite3_stmt *st;
    int64_t n;

    if (fence(t, c) < 0)
        return -1;
    st = db_prep(SQ(t), "DELETE FROM sessions WHERE channel = ? AND account_id = ?");
    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_text(st, 1, c->channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->account, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    n = sqlite3_changes(SQ(t));
    emit(t, c, "cleared", json_pack("{s:I}", "deleted", (json_int_t)n));
    return req_ok(r, 200, json_pack("{s:I}", "deleted", (json_int_t)n));
}

int
sessions_clear(struct req *r)
{
    struct write_ctx *c = write_begin(r, 0, NULL, NULL, NULL);

    return c ? req_submit(r, clear_tx) : -1;
}
