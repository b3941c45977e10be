/* sessions.c -- the rules of sessions (SPEC section 6): per (channel,
 * accountId) a key/value store of JSON values, the Baileys auth state,
 * optionally encrypted at rest and fenced by the account's lease.
 *
 * DESIGN
 * Each entry is stored (store->sessions) as the compact JSON text of its
 * value or its ciphertext: the store never sees a readable value when a key
 * is set. Values are encoded (and encrypted) by the API layer on the HTTP
 * thread before the write is queued (session_encode), so the writer only
 * hands bytes to the store; reads decode on the reader thread. A batch is
 * validated whole before anything is queued, and its writes run in one
 * savepoint: all or nothing.
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

#include "core.h"

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

int
session_encode(const char *channel, const char *account, const char *key, json_t *value,
               struct session_op *op, const char **why)
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
        *op = (struct session_op){key, (unsigned char *)text, tlen, 0};
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
    *op = (struct session_op){key, box, NONCE_LEN + (size_t)clen, 1};
    return 0;
}

/* Decode the value of a stored entry. Returns the value (caller owns) or
 * NULL with *why saying why it cannot be served. */
static json_t *
decode(const struct session_entry *e, const char **why)
{
    const unsigned char *b = e->value;
    size_t blen = e->len, adlen, tlen;
    unsigned long long plen;
    unsigned char *text;
    char *ad;
    json_t *v;

    if (e->enc == 0) {
        v = b ? json_loadb((const char *)b, blen, JSON_DECODE_ANY, NULL) : NULL;
        if (!v)
            *why = "stored value is not valid JSON";
        return v;
    }
    if (e->enc != 1) {
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
    ad = assoc(e->channel, e->account, e->key, &adlen);
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

/* ---- names -------------------------------------------------------------------- */

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

/* channel and accountId cannot hold '/': the associated data
 * "channel/accountId/key" is then unambiguous */
const char *
session_bad_channel(const char *s)
{
    return bad_name(s, SESSION_CHANNEL_MAX, "./");
}

const char *
session_bad_account(const char *s)
{
    return bad_name(s, SESSION_ACCOUNT_MAX, "/");
}

const char *
session_bad_key(const char *s)
{
    return bad_name(s, SESSION_KEY_MAX, "");
}

/* ---- reads ---------------------------------------------------------------------- */

int
session_get(struct tx *t, const char *channel, const char *account, const char *key, json_t **value)
{
    struct session_entry e;
    const char *why = NULL;
    int rc = store->sessions->get(t, channel, account, key, &e);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return tx_fail(t, "not_found", json_pack("{s:s}", "key", key),
                       "no session entry '%s' for %s/%s", key, channel, account);
    *value = decode(&e, &why);
    free((void *)e.value);
    if (!*value)
        return tx_fail(t, "undecryptable", json_pack("{s:s, s:s, s:s}", "channel", channel,
                                                     "accountId", account, "key", key),
                       "session entry '%s' of %s/%s is %s", key, channel, account, why);
    return 0;
}

struct all {
    json_t *entries;                /* {key: value} */
    json_t *bad;                    /* [key] that cannot be served */
};

static int
all_visit(const struct session_entry *e, void *arg)
{
    struct all *a = arg;
    const char *why = NULL;
    json_t *v = decode(e, &why);

    if (v)
        json_object_set_new(a->entries, e->key, v);
    else
        json_array_append_new(a->bad, json_string(e->key));
    return 0;
}

int
session_get_all(struct tx *t, const char *channel, const char *account, json_t **entries)
{
    struct all a = {json_object(), json_array()};
    size_t n;

    if (store->sessions->list(t, channel, account, true, all_visit, &a) != 0) {
        json_decref(a.entries), json_decref(a.bad);
        return -1;
    }
    if ((n = json_array_size(a.bad))) {
        json_decref(a.entries);
        return tx_fail(t, "undecryptable",
                       json_pack("{s:s, s:s, s:o}", "channel", channel, "accountId", account,
                                 "undecryptable", a.bad),
                       "%zu session entr%s of %s/%s cannot be read: %s", n, n == 1 ? "y" : "ies",
                       channel, account, have_key ? "wrong BATON_SESSION_KEY, or tampered with"
                                                  : "encrypted and BATON_SESSION_KEY is not set");
    }
    json_decref(a.bad);
    *entries = a.entries;
    return 0;
}

int64_t
session_size(const struct session_entry *e)
{
    return (int64_t)e->len - (e->enc == 1 ? NONCE_LEN + TAG_LEN : 0);
}

/* ---- writes ----------------------------------------------------------------------- */

/* The lease fence, in the write's transaction. */
static int
fence(struct tx *t, const struct session_write *w)
{
    return w->has_token ? lease_fence(t, w->channel, w->account, w->token) : 0;
}

/* Apply w's changes; counts what was written and what was deleted. */
static int
apply(struct tx *t, const struct session_write *w, int64_t *nset, int64_t *ndel)
{
    *nset = *ndel = 0;
    for (size_t i = 0; i < w->nops; i++) {
        const struct session_op *o = &w->ops[i];
        int rc;

        if (o->data) {
            struct session_entry e = {w->channel, w->account, o->key, o->enc, o->data, o->len, t->now};
            if (store->sessions->put(t, &e) < 0)
                return -1;
            (*nset)++;
        } else {
            if ((rc = store->sessions->del(t, w->channel, w->account, o->key)) < 0)
                return -1;
            *ndel += rc;
        }
    }
    return 0;
}

static void
emit(struct tx *t, const struct session_write *w, const char *what, json_t *fields)
{
    char name[SESSION_CHANNEL_MAX + 32];

    json_t *all = json_pack("{s:s, s:s}", "channel", w->channel, "accountId", w->account);

    snprintf(name, sizeof name, "%s.session.%s", w->channel, what);
    json_object_update(all, fields);
    json_decref(fields);
    event_emit(t, "info", name, all);
}

int
session_put(struct tx *t, const struct session_write *w)
{
    int64_t nset, ndel;

    if (fence(t, w) < 0 || apply(t, w, &nset, &ndel) < 0)
        return -1;
    emit(t, w, "updated", json_pack("{s:s}", "key", w->ops[0].key));
    return 0;
}

int
session_remove(struct tx *t, const struct session_write *w, bool *deleted)
{
    int64_t nset, ndel;

    if (fence(t, w) < 0 || apply(t, w, &nset, &ndel) < 0)
        return -1;
    if (ndel)
        emit(t, w, "deleted", json_pack("{s:s}", "key", w->ops[0].key));
    *deleted = ndel > 0;
    return 0;
}

int
session_batch(struct tx *t, const struct session_write *w, int64_t *nset, int64_t *ndel)
{
    json_t *names;

    if (fence(t, w) < 0 || apply(t, w, nset, ndel) < 0)
        return -1;
    if (w->nops) {
        names = json_array();
        for (size_t i = 0; i < w->nops && i < EVENT_KEYS_MAX; i++)
            json_array_append_new(names, json_string(w->ops[i].key));
        emit(t, w, "updated", json_pack("{s:I, s:I, s:o, s:b}", "set", (json_int_t)*nset,
                                        "deleted", (json_int_t)*ndel, "keys", names,
                                        "keysTruncated", w->nops > EVENT_KEYS_MAX));
    }
    return 0;
}

int
session_clear(struct tx *t, const struct session_write *w, int64_t *deleted)
{
    if (fence(t, w) < 0 || store->sessions->clear(t, w->channel, w->account, deleted) < 0)
        return -1;
    emit(t, w, "cleared", json_pack("{s:I}", "deleted", (json_int_t)*deleted));
    return 0;
}
