/* check_sessions.c -- the session store against the real batond: a Baileys
 * auth state written and read back equal across kill -9, encryption at rest
 * (checked in the database and WAL bytes), wrong or missing keys, start-up
 * refusal of malformed keys, lease fencing, all-or-nothing batches, bad
 * entry names, clearAll. */
#define _GNU_SOURCE     /* asprintf, memmem */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>
#include <sqlite3.h>

#include "harness.h"

/* a string that must never be found in the database file when encrypted */
#define MARKER "PLAINTEXT-MARKER-c0ffee-5e551on"

#define KEY_A "BATON_SESSION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY_B "BATON_SESSION_KEY=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

static const char *const with_key_a[] = {KEY_A, NULL};
static const char *const with_key_b[] = {KEY_B, NULL};
static const char *const no_key[] = {NULL};

static struct server srv;

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    ck_assert_int_ge(sodium_init(), 0);
}

static void
down(void)
{
    server_cleanup(&srv);
}

/* ---- a realistic Baileys auth state ----------------------------------------- */

static json_t *
buffer(size_t n)
{
    unsigned char raw[256];
    char b64[sodium_base64_ENCODED_LEN(256, sodium_base64_VARIANT_ORIGINAL)];

    ck_assert_uint_le(n, sizeof raw);
    randombytes_buf(raw, n);
    sodium_bin2base64(b64, sizeof b64, raw, n, sodium_base64_VARIANT_ORIGINAL);
    return json_pack("{s:s, s:s}", "type", "Buffer", "data", b64);
}

static json_t *
key_pair(void)
{
    return json_pack("{s:o, s:o}", "private", buffer(32), "public", buffer(32));
}

/* creds plus npre pre-keys, sessions, sender keys, app-state keys and
 * versions, shaped like what Baileys' useMultiFileAuthState writes. The
 * marker sits inside creds and inside a pre-key. */
static json_t *
auth_state(int npre)
{
    json_t *st = json_object(), *creds;
    char name[128];

    creds = json_pack(
        "{s:o, s:o, s:o, s:{s:o, s:o, s:i}, s:i, s:s, s:[], s:i, s:i, s:i, s:{s:b},"
        " s:{s:s, s:s, s:s}, s:{s:o, s:o, s:o, s:o}, s:[{s:{s:s, s:i}, s:o}],"
        " s:s, s:b, s:s, s:i, s:n}",
        "noiseKey", key_pair(), "pairingEphemeralKeyPair", key_pair(), "signedIdentityKey", key_pair(),
        "signedPreKey", "keyPair", key_pair(), "signature", buffer(64), "keyId", 1,
        "registrationId", 12345, "advSecretKey", "q0pnd3yzTEcT+Zr0sN2Ms8TVk7xFwR4mJ3eQ4+NRvPM=",
        "processedHistoryMessages", "nextPreKeyId", 31, "firstUnuploadedPreKeyId", 31,
        "accountSyncCounter", 1, "accountSettings", "unarchiveChats", 0,
        "me", "id", "15550001111:12@s.whatsapp.net", "lid", "123456789012345:12@lid", "name", MARKER,
        "account", "details", buffer(40), "accountSignatureKey", buffer(32), "accountSignature",
        buffer(64), "deviceSignature", buffer(64),
        "signalIdentities", "identifier", "name", "15550001111:12@s.whatsapp.net", "deviceId", 0,
        "identifierKey", buffer(33),
        "platform", "android", "registered", 1, "pairingCode", "ABCD-1234", "lastAccountSyncTimestamp",
        1700000000, "routingInfo");
    ck_assert_ptr_nonnull(creds);
    json_object_set_new(creds, "ratio", json_real(0.25));
    json_object_set_new(creds, "unicode", json_string("h\xc3\xa9llo \xe2\x9c\x93 \"quoted\" \\ / \n"));
    json_object_set_new(st, "creds", creds);

    for (int i = 1; i <= npre; i++) {
        snprintf(name, sizeof name, "pre-key-%d", i);
        json_object_set_new(st, name, key_pair());
    }
    json_object_set_new(json_object_get(st, "pre-key-1"), "note", json_string(MARKER));
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "session-1555000%04d.%d", 2000 + i, i % 2);
        json_object_set_new(st, name, json_pack("{s:{s:{s:i, s:o, s:o, s:b}}, s:s}", "_sessions",
                                                "BdW3x5", "registrationId", 100 + i, "currentRatchet",
                                                buffer(120), "indexInfo", buffer(80), "pending", 0,
                                                "version", "v1"));
    }
    json_object_set_new(st, "sender-key-120363025555555555@g.us--15550002222:3@s.whatsapp.net--0",
                        json_pack("[{s:i, s:{s:i, s:o}, s:{s:o}, s:[]}]", "senderKeyId", 77,
                                  "senderChainKey", "iteration", 3, "seed", buffer(32),
                                  "senderSigningKey", "public", buffer(33), "senderMessageKeys"));
    json_object_set_new(st, "app-state-sync-key-AAAAAJcL",
                        json_pack("{s:o, s:{s:i, s:i, s:[i,i]}, s:s}", "keyData", buffer(32),
                                  "fingerprint", "rawId", 987654, "currentIndex", 2, "deviceIndexes", 0, 1,
                                  "timestamp", "1700000000123"));
    json_object_set_new(st, "app-state-sync-version-regular_high",
                        json_pack("{s:i, s:o, s:{s:{s:o}}}", "version", 12, "hash", buffer(128),
                                  "indexValueMap", "bG9uZ2luZGV4", "valueMac", buffer(32)));
    json_object_set_new(st, "app-state-sync-version-critical_block", json_null());
    return st;
}

/* ---- helpers ----------------------------------------------------------------- */

static char *
key_path(const char *account, const char *key)
{
    char *esc = curl_easy_escape(NULL, key, 0), *p = NULL;

    ck_assert_int_ge(asprintf(&p, "/v1/sessions/whatsapp/%s/keys/%s", account, esc), 0);
    curl_free(esc);
    return p;
}

static json_t *
get_all(const char *account, long status)
{
    char path[200];

    snprintf(path, sizeof path, "/v1/sessions/whatsapp/%s", account);
    return CALL(&srv, "GET", path, NULL, status);
}

static json_t *
batch(const char *account, json_t *body, long status)
{
    char path[200];

    snprintf(path, sizeof path, "/v1/sessions/whatsapp/%s/batch", account);
    return CALL(&srv, "POST", path, body, status);
}

static json_t *
get_one(const char *account, const char *key, long status)
{
    char *p = key_path(account, key);
    json_t *j = CALL(&srv, "GET", p, NULL, status);

    free(p);
    return j;
}

static json_t *
put_one(const char *account, const char *key, json_t *body, long status)
{
    char *p = key_path(account, key);
    json_t *j = CALL(&srv, "PUT", p, body, status);

    free(p);
    return j;
}

static const char *
err_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static void
write_state(const char *account, json_t *state)
{
    json_t *j = batch(account, json_pack("{s:O}", "set", state), 200);

    ck_assert_int_eq(json_integer_value(json_object_get(j, "set")), (long long)json_object_size(state));
    json_decref(j);
}

/* getAll and every single GET give back exactly state */
static void
check_state(const char *account, json_t *state)
{
    json_t *all = get_all(account, 200), *entries = json_object_get(all, "entries"), *v;
    const char *key;

    ck_assert_msg(json_equal(entries, state), "getAll differs from what was written");
    json_object_foreach(state, key, v) {
        json_t *one = get_one(account, key, 200);
        ck_assert_str_eq(json_string_value(json_object_get(one, "key")), key);
        ck_assert_msg(json_equal(json_object_get(one, "value"), v), "GET %s differs", key);
        json_decref(one);
    }
    json_decref(all);
}

static bool
file_has(const char *dir, const char *name, const char *needle)
{
    char path[400];
    FILE *f;
    char *data;
    long n;
    bool found;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return false;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    data = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_int_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    found = memmem(data, (size_t)n, needle, strlen(needle)) != NULL;
    free(data);
    return found;
}

static long
file_size(const char *dir, const char *name)
{
    char path[400];
    FILE *f;
    long n;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return 0;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fclose(f);
    return n;
}

/* Run one SQL statement on the database file beside the running server
 * (WAL: allowed while it serves). Returns the first column of the first
 * row as an integer, or -1 when there is none.
 *
 * Every other state of these tests is made through the routes. The SQL is
 * kept where it is the point of the test: reading how a value is stored at
 * rest (enc, no plaintext), and the tamper tests, which move or damage raw
 * ciphertext rows in ways no route can (a route only stores what it
 * encrypted itself). */
static long long
sql(const char *fmt, ...)
{
    char *q;
    long long v;
    va_list ap;

    va_start(ap, fmt);
    q = sqlite3_vmprintf(fmt, ap);      /* %q quotes as both databases do */
    va_end(ap);
    v = server_sql(&srv, q);
    sqlite3_free(q);
    return v;
}

/* Flip one bit of a stored value, in place, beside the running server (a
 * tamper test: raw ciphertext, which no route can write). */
static void
flip_bit(const char *account, const char *key, int offset)
{
    char path[300];
    sqlite3 *db;
    sqlite3_stmt *st;
    unsigned char *b;
    int n;

    if (srv.db[0]) {
        ck_assert_int_gt(sql("SELECT length(value) FROM sessions WHERE account_id = '%q' AND key = '%q'",
                             account, key), offset);
        sql("UPDATE sessions SET value = set_byte(value, %d, get_byte(value, %d) # 1) "
            "WHERE account_id = '%q' AND key = '%q'", offset, offset, account, key);
        return;
    }
    snprintf(path, sizeof path, "%s/baton.db", srv.dir);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT value FROM sessions WHERE account_id = ? AND key = ?",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_bytes(st, 0);
    ck_assert_int_gt(n, offset);
    b = malloc((size_t)n);
    memcpy(b, sqlite3_column_blob(st, 0), (size_t)n);
    sqlite3_finalize(st);
    b[offset] ^= 1;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "UPDATE sessions SET value = ? WHERE account_id = ? AND key = ?",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, b, n, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(b);
}

/* POST /v1/leases/whatsapp/{account}/{verb} with body: the answer. */
static json_t *
lease_call(const char *account, const char *verb, json_t *body, long expect)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/leases/whatsapp/%s/%s", account, verb);
    return CALL(&srv, "POST", path, body, expect);
}

/* wa-1 acquires the lease on whatsapp/account through the route: its token. */
static long long
lease_acquire(const char *account)
{
    json_t *j = lease_call(account, "acquire", json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 60000), 200);
    long long token = json_integer_value(json_object_get(json_object_get(j, "lease"), "token"));

    ck_assert_int_gt(token, 0);
    json_decref(j);
    return token;
}

static void
lease_release(const char *account, long long token)
{
    json_decref(lease_call(account, "release", json_pack("{s:s, s:I}", "ownerId", "wa-1", "token",
                                                         (json_int_t)token), 200));
}

/* ---- tests ------------------------------------------------------------------- */

START_TEST(auth_state_roundtrip_encrypted_survives_kill9)
{
    json_t *state = auth_state(30);

    server_start(&srv, with_key_a);
    write_state("default", state);
    check_state("default", state);
    ck_assert_int_eq(sql("SELECT count(*) FROM sessions WHERE enc = 1"), (long long)json_object_size(state));
    ck_assert_int_eq(sql("SELECT count(*) FROM sessions WHERE enc <> 1"), 0);

    server_kill(&srv);
    /* the acknowledged writes are in the WAL; neither file holds the marker */
    if (!sqlite_only("the marker is looked for in the database files")) {
        ck_assert_int_gt(file_size(srv.dir, "baton.db-wal"), 0);
        ck_assert(!file_has(srv.dir, "baton.db", MARKER));
        ck_assert(!file_has(srv.dir, "baton.db-wal", MARKER));
        ck_assert(!file_has(srv.dir, "baton.db-wal", "noiseKey"));
    }
    ck_assert_int_eq(server_log_count(&srv, MARKER), 0);

    server_start(&srv, NULL);       /* same key, same database */
    check_state("default", state);
    ck_assert_int_eq(server_stop(&srv), 0);     /* checkpointed into the main file */
    if (!sqlite_only("the marker is looked for in the database files")) {
        ck_assert(!file_has(srv.dir, "baton.db", MARKER));
        ck_assert(!file_has(srv.dir, "baton.db-wal", MARKER));
    }
    json_decref(state);
}
END_TEST

START_TEST(without_key_values_are_plaintext)
{
    json_t *state = auth_state(5);

    /* the same scan finds the marker when nothing is encrypted: it can fail */
    server_start(&srv, no_key);
    write_state("default", state);
    server_kill(&srv);
    if (!sqlite_only("the marker is looked for in the database files"))
        ck_assert(file_has(srv.dir, "baton.db", MARKER) || file_has(srv.dir, "baton.db-wal", MARKER));
    ck_assert_int_eq(server_log_count(&srv, MARKER), 0);     /* but never in the log */
    server_start(&srv, NULL);
    check_state("default", state);
    ck_assert_int_eq(sql("SELECT count(*) FROM sessions WHERE enc = 0"), (long long)json_object_size(state));
    json_decref(state);
}
END_TEST

START_TEST(wrong_or_missing_key_is_undecryptable_not_garbage)
{
    json_t *state = auth_state(5), *j, *bad, *keys;
    struct resp r;

    server_start(&srv, with_key_a);
    write_state("default", state);
    ck_assert_int_eq(server_stop(&srv), 0);

    server_start(&srv, with_key_b);
    j = get_one("default", "creds", 409);
    ck_assert_str_eq(err_code(j), "undecryptable");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "key")), "creds");
    json_decref(j);
    j = get_all("default", 409);
    ck_assert_str_eq(err_code(j), "undecryptable");
    bad = json_object_get(json_object_get(j, "error"), "undecryptable");
    ck_assert_int_eq(json_array_size(bad), json_object_size(state));
    json_decref(j);
    ck_assert_int_eq(http_req(&srv, "GET", "/v1/sessions/whatsapp/default", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_ptr_null(strstr(r.body, MARKER));
    ck_assert_ptr_null(strstr(r.body, "Buffer"));
    resp_free(&r);
    /* names are still listed, and new writes with the new key work */
    keys = CALL(&srv, "GET", "/v1/sessions/whatsapp/default/keys", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(keys, "keys")), json_object_size(state));
    json_decref(keys);
    j = put_one("default", "fresh", json_pack("{s:{s:i}}", "value", "n", 1), 200);
    json_decref(j);
    j = get_one("default", "fresh", 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "value"), "n")), 1);
    json_decref(j);
    ck_assert_int_eq(server_stop(&srv), 0);

    /* no key at all: still refused, saying why */
    server_start(&srv, no_key);
    j = get_one("default", "pre-key-1", 409);
    ck_assert_str_eq(err_code(j), "undecryptable");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                                 "BATON_SESSION_KEY"));
    json_decref(j);
    j = get_all("default", 409);
    json_decref(j);
    ck_assert_int_eq(server_stop(&srv), 0);

    /* the right key again: nothing was damaged */
    server_start(&srv, with_key_a);
    j = get_one("default", "fresh", 409);       /* written with key B */
    json_decref(j);
    j = get_one("default", "creds", 200);
    ck_assert(json_equal(json_object_get(j, "value"), json_object_get(state, "creds")));
    json_decref(j);
    json_decref(state);
}
END_TEST

START_TEST(ciphertext_is_bound_to_its_row)
{
    json_t *j;

    server_start(&srv, with_key_a);
    j = batch("default", json_pack("{s:{s:s, s:s}}", "set", "pre-key-1", "one", "pre-key-2", "two"), 200);
    json_decref(j);
    j = batch("other", json_pack("{s:{s:s}}", "set", "pre-key-1", "other-one"), 200);
    json_decref(j);
    /* move a ciphertext to another entry, and to another account (SQL: an
     * attacker with the file, which no route can imitate) */
    sql("UPDATE sessions SET value = (SELECT value FROM sessions WHERE account_id = 'default' AND"
        " key = 'pre-key-1') WHERE account_id = 'default' AND key = 'pre-key-2'");
    sql("UPDATE sessions SET value = (SELECT value FROM sessions WHERE account_id = 'default' AND"
        " key = 'pre-key-1') WHERE account_id = 'other' AND key = 'pre-key-1'");
    j = get_one("default", "pre-key-2", 409);
    ck_assert_str_eq(err_code(j), "undecryptable");
    json_decref(j);
    j = get_one("other", "pre-key-1", 409);
    json_decref(j);
    j = get_one("default", "pre-key-1", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "one");
    json_decref(j);
    /* a flipped bit in the ciphertext is caught too */
    flip_bit("default", "pre-key-1", 30);
    j = get_one("default", "pre-key-1", 409);
    json_decref(j);
}
END_TEST

START_TEST(plaintext_rows_readable_then_reencrypted)
{
    json_t *j, *v = json_pack("{s:s, s:i}", "me", MARKER, "registrationId", 7);

    server_start(&srv, no_key);
    j = put_one("default", "creds", json_pack("{s:O}", "value", v), 200);
    json_decref(j);
    ck_assert_int_eq(server_stop(&srv), 0);

    server_start(&srv, with_key_a);
    j = get_one("default", "creds", 200);
    ck_assert(json_equal(json_object_get(j, "value"), v));
    json_decref(j);
    ck_assert_int_eq(sql("SELECT enc FROM sessions WHERE key = 'creds'"), 0);
    j = put_one("default", "creds", json_pack("{s:O}", "value", v), 200);
    json_decref(j);
    ck_assert_int_eq(sql("SELECT enc FROM sessions WHERE key = 'creds'"), 1);
    j = get_one("default", "creds", 200);
    ck_assert(json_equal(json_object_get(j, "value"), v));
    json_decref(j);
    json_decref(v);
}
END_TEST

START_TEST(malformed_key_stops_startup)
{
    static const char *const bad[] = {
        "BATON_SESSION_KEY=abc",
        "BATON_SESSION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1",   /* 63 */
        "BATON_SESSION_KEY=zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",  /* not hex */
        "BATON_SESSION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",   /* 31 bytes */
        "BATON_SESSION_KEY=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8*",   /* not base64 */
        "BATON_SESSION_KEY=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    };
    static const char *const good[] = {
        KEY_A,
        "BATON_SESSION_KEY=000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        KEY_B,
        "BATON_SESSION_KEY=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8",    /* no padding */
    };
    char err[512];

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *env[] = {bad[i], NULL};
        struct server s = {0};
        int rc = server_try_start(&s, env, err, sizeof err);
        ck_assert_msg(rc == 78, "bad key %zu: exit %d", i, rc);
        ck_assert_msg(strstr(err, "BATON_SESSION_KEY"), "reason does not name the setting: %s", err);
        ck_assert_msg(!strstr(err, bad[i] + 18), "reason repeats the key");
        server_cleanup(&s);
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        const char *env[] = {good[i], NULL};
        struct server s = {0};
        int rc = server_try_start(&s, env, err, sizeof err);
        ck_assert_msg(rc == -1, "good key %zu refused (exit %d): %s", i, rc, err);
        server_cleanup(&s);
    }
}
END_TEST

START_TEST(stale_lease_token_changes_nothing)
{
    json_t *state = json_pack("{s:{s:i}, s:s}", "creds", "registrationId", 1, "pre-key-1", "kp"), *j;
    long long old, cur;

    server_start(&srv, with_key_a);
    write_state("default", state);
    /* wa-1 holds the lease with cur; old is the token of its previous grant */
    old = lease_acquire("default");
    lease_release("default", old);
    cur = lease_acquire("default");
    ck_assert_int_gt(cur, old);

    /* the current token writes */
    j = put_one("default", "pre-key-2", json_pack("{s:s, s:I}", "value", "kp2", "leaseToken", (json_int_t)cur), 200);
    json_decref(j);
    json_object_set_new(state, "pre-key-2", json_string("kp2"));

    /* an older token does not: put, delete, batch, clearAll */
    j = put_one("default", "creds", json_pack("{s:{s:i}, s:I}", "value", "registrationId", 666,
                                              "leaseToken", (json_int_t)old), 409);
    ck_assert_str_eq(err_code(j), "lease_not_held");
    json_decref(j);
    {
        char *p = key_path("default", "pre-key-1");
        j = CALL(&srv, "DELETE", p, json_pack("{s:I}", "leaseToken", (json_int_t)old), 409);
        json_decref(j);
        free(p);
    }
    j = batch("default", json_pack("{s:{s:i}, s:[s], s:I}", "set", "creds", 666, "delete", "pre-key-1",
                                   "leaseToken", (json_int_t)old), 409);
    ck_assert_str_eq(err_code(j), "lease_not_held");
    json_decref(j);
    j = CALL(&srv, "DELETE", "/v1/sessions/whatsapp/default", json_pack("{s:I}", "leaseToken", (json_int_t)old),
             409);
    json_decref(j);
    /* nor a token for an account that has no lease */
    j = put_one("nolease", "creds", json_pack("{s:i, s:I}", "value", 1, "leaseToken", (json_int_t)cur), 409);
    json_decref(j);
    check_state("default", state);

    /* the current token once the lease has expired: refused as well (a
     * heartbeat shortens it to the shortest ttl; nobody takes it after) */
    json_decref(lease_call("default", "heartbeat", json_pack("{s:s, s:I, s:i}", "ownerId", "wa-1", "token",
                                                             (json_int_t)cur, "ttlMs", 1000), 200));
    for (int waited = 0;; waited += 50) {
        bool held;
        j = CALL(&srv, "GET", "/v1/leases/whatsapp/default", NULL, 200);
        held = json_is_true(json_object_get(j, "held"));
        ck_assert_int_eq(json_integer_value(json_object_get(j, "token")), cur);
        json_decref(j);
        if (!held)
            break;
        ck_assert_msg(waited < 15000, "the lease did not expire");
        usleep(50 * 1000);
    }
    j = put_one("default", "creds", json_pack("{s:i, s:I}", "value", 666, "leaseToken", (json_int_t)cur), 409);
    json_decref(j);
    check_state("default", state);
    ck_assert_int_eq(server_log_count(&srv, "whatsapp.session.cleared"), 0);
    json_decref(state);
}
END_TEST

START_TEST(required_lease_token)
{
    static const char *const env[] = {"BATON_SESSION_REQUIRE_LEASE=1", NULL};
    struct resp r;
    json_t *j;
    long long token;

    server_start(&srv, env);
    token = lease_acquire("default");
    ck_assert_int_eq(http_req(&srv, "PUT", "/v1/sessions/whatsapp/default/keys/creds", "{\"value\":1}", 11,
                              NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_ptr_nonnull(strstr(r.body, "leaseToken"));
    resp_free(&r);
    j = batch("default", json_pack("{s:{s:i}}", "set", "creds", 1), 400);
    json_decref(j);
    j = CALL(&srv, "DELETE", "/v1/sessions/whatsapp/default", NULL, 400);
    json_decref(j);
    j = get_all("default", 200);
    ck_assert_int_eq(json_object_size(json_object_get(j, "entries")), 0);
    json_decref(j);
    j = put_one("default", "creds", json_pack("{s:i, s:I}", "value", 1, "leaseToken", (json_int_t)token), 200);
    json_decref(j);
    j = get_one("default", "creds", 200);      /* reads need no token */
    json_decref(j);
}
END_TEST

START_TEST(batch_is_all_or_nothing)
{
    json_t *state = auth_state(3), *set, *j;

    server_start(&srv, with_key_a);
    write_state("default", state);

    /* nine good entries and one bad name: nothing is written */
    set = json_object();
    for (int i = 0; i < 9; i++) {
        char k[32];
        snprintf(k, sizeof k, "pre-key-%d", 100 + i);
        json_object_set_new(set, k, json_string("new"));
    }
    json_object_set_new(set, "creds", json_string("overwritten"));
    json_object_set_new(set, "bad\001name", json_string("x"));
    j = batch("default", json_pack("{s:o, s:[s]}", "set", set, "delete", "pre-key-1"), 400);
    ck_assert_str_eq(err_code(j), "bad_request");
    json_decref(j);
    j = batch("default", json_pack("{s:{s:s}, s:[s,i]}", "set", "creds", "x", "delete", "pre-key-1", 5), 400);
    json_decref(j);
    j = batch("default", json_pack("{s:{s:s}, s:[s]}", "set", "creds", "x", "delete", ""), 400);
    json_decref(j);
    j = batch("default", json_pack("{s:{s:s}, s:[s]}", "set", "creds", "x", "delete", "creds"), 400);
    json_decref(j);
    j = batch("default", json_pack("{s:[s]}", "set", "creds"), 400);
    json_decref(j);
    j = batch("default", json_pack("{s:s}", "delete", "creds"), 400);
    json_decref(j);
    check_state("default", state);

    /* a good batch sets and deletes together and says what it did */
    j = batch("default", json_pack("{s:{s:i}, s:[s, s]}", "set", "pre-key-9", 9, "delete", "pre-key-1",
                                   "no-such-key"), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "set")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "deleted")), 1);
    json_decref(j);
    json_object_del(state, "pre-key-1");
    json_object_set_new(state, "pre-key-9", json_integer(9));
    check_state("default", state);
    json_decref(state);
}
END_TEST

START_TEST(value_size_limit)
{
    static const char *const env[] = {"BATON_MAX_BODY=4194304", KEY_A, NULL};
    size_t big = (1u << 20) + 10;
    char *s = malloc(big + 1);
    json_t *j, *before;

    server_start(&srv, env);
    j = put_one("default", "small", json_pack("{s:i}", "value", 1), 200);
    json_decref(j);
    before = get_all("default", 200);
    memset(s, 'a', big);
    s[big] = 0;
    j = put_one("default", "big", json_pack("{s:s}", "value", s), 400);
    json_decref(j);
    j = batch("default", json_pack("{s:{s:i, s:s}}", "set", "ok", 1, "big", s), 400);
    json_decref(j);
    j = get_all("default", 200);
    ck_assert(json_equal(j, before));
    json_decref(j);
    /* just under the limit (the quotes count) is fine and comes back equal */
    s[(1u << 20) - 2] = 0;
    j = put_one("default", "big", json_pack("{s:s}", "value", s), 200);
    json_decref(j);
    j = get_one("default", "big", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "value")), s);
    json_decref(j);
    json_decref(before);
    free(s);
}
END_TEST

START_TEST(entry_names_and_bad_input)
{
    char name[600];
    json_t *j;
    struct resp r;
    static const char *const bad_paths[] = {
        "/v1/sessions/whatsapp/default/keys/a%01b",
        "/v1/sessions/whatsapp/default/keys/a%0Ab",
        "/v1/sessions/whatsapp/default/keys/a%7Fb",
        "/v1/sessions/whatsapp/default/keys/%FF%FE",
        "/v1/sessions/what.sapp/default/keys/creds",
        "/v1/sessions/whatsapp/de%01fault/keys/creds",
    };

    server_start(&srv, with_key_a);
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        ck_assert_int_eq(http_req(&srv, "PUT", bad_paths[i], "{\"value\":1}", 11, NULL, NULL, &r), 0);
        ck_assert_msg(r.status == 400, "%s: %ld %s", bad_paths[i], r.status, r.body);
        resp_free(&r);
        ck_assert_int_eq(http_req(&srv, "GET", bad_paths[i], NULL, 0, NULL, NULL, &r), 0);
        ck_assert_msg(r.status == 400, "GET %s: %ld %s", bad_paths[i], r.status, r.body);
        resp_free(&r);
    }
    /* 512 bytes is the longest name */
    memset(name, 'k', 513);
    name[513] = 0;
    j = put_one("default", name, json_pack("{s:i}", "value", 1), 400);
    json_decref(j);
    name[512] = 0;
    j = put_one("default", name, json_pack("{s:i}", "value", 1), 200);
    json_decref(j);
    j = get_one("default", name, 200);
    json_decref(j);
    /* Baileys names with @ : . -- and non-ASCII are fine */
    j = put_one("default", "sender-key-1203@g.us--1555:3@s.whatsapp.net--0",
                json_pack("{s:[i]}", "value", 1), 200);
    json_decref(j);
    j = put_one("default", "cl\xc3\xa9", json_pack("{s:b}", "value", 1), 200);
    json_decref(j);
    /* value is required; null is a value */
    ck_assert_int_eq(http_req(&srv, "PUT", "/v1/sessions/whatsapp/default/keys/creds", "{}", 2, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_ptr_nonnull(strstr(r.body, "value"));
    resp_free(&r);
    j = put_one("default", "creds", json_pack("{s:i, s:s}", "value", 1, "leaseToken", "7"), 400);
    json_decref(j);
    j = get_one("default", "creds", 404);
    ck_assert_str_eq(err_code(j), "not_found");
    json_decref(j);
    j = put_one("default", "nothing", json_pack("{s:n}", "value"), 200);
    json_decref(j);
    j = get_one("default", "nothing", 200);
    ck_assert(json_is_null(json_object_get(j, "value")));
    json_decref(j);
    /* deleting what is not there */
    j = CALL(&srv, "DELETE", "/v1/sessions/whatsapp/default/keys/never", NULL, 200);
    ck_assert(json_is_false(json_object_get(j, "deleted")));
    json_decref(j);
    j = CALL(&srv, "DELETE", "/v1/sessions/whatsapp/default/keys/nothing", NULL, 200);
    ck_assert(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    j = get_one("default", "nothing", 404);
    json_decref(j);
    j = CALL(&srv, "GET", "/v1/sessions/whatsapp/default/keys", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "keys")), 3);
    json_decref(j);
}
END_TEST

START_TEST(clear_all_and_events_without_values)
{
    json_t *state = auth_state(4), *j, *ev;

    server_start(&srv, with_key_a);
    write_state("default", state);
    write_state("second", state);
    j = CALL(&srv, "DELETE", "/v1/sessions/whatsapp/default", NULL, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "deleted")), (long long)json_object_size(state));
    json_decref(j);
    j = get_all("default", 200);
    ck_assert_int_eq(json_object_size(json_object_get(j, "entries")), 0);
    json_decref(j);
    check_state("second", state);       /* another account is untouched */

    ev = CALL(&srv, "GET", "/v1/events?event=whatsapp.session.*", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 3);
    j = json_array_get(json_object_get(ev, "events"), 0);   /* newest first */
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "whatsapp.session.cleared");
    ck_assert_str_eq(json_string_value(json_object_get(j, "accountId")), "default");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "deleted")), (long long)json_object_size(state));
    j = json_array_get(json_object_get(ev, "events"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "whatsapp.session.updated");
    ck_assert(json_is_array(json_object_get(j, "keys")));
    json_decref(ev);
    ck_assert_int_eq(server_log_count(&srv, MARKER), 0);
    ck_assert_int_eq(server_log_count(&srv, "Buffer"), 0);
    ck_assert_int_eq(sql("SELECT count(*) FROM events WHERE fields LIKE '%%Buffer%%'"), 0);
    json_decref(state);
}
END_TEST

Suite *
suite_sessions(void)
{
    Suite *s = suite_create("sessions");
    TCase *tc = tcase_create("sessions");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, auth_state_roundtrip_encrypted_survives_kill9);
    tcase_add_test(tc, without_key_values_are_plaintext);
    tcase_add_test(tc, wrong_or_missing_key_is_undecryptable_not_garbage);
    tcase_add_test(tc, ciphertext_is_bound_to_its_row);
    tcase_add_test(tc, plaintext_rows_readable_then_reencrypted);
    tcase_add_test(tc, malformed_key_stops_startup);
    tcase_add_test(tc, stale_lease_token_changes_nothing);
    tcase_add_test(tc, required_lease_token);
    tcase_add_test(tc, batch_is_all_or_nothing);
    tcase_add_test(tc, value_size_limit);
    tcase_add_test(tc, entry_names_and_bad_input);
    tcase_add_test(tc, clear_all_and_events_without_values);
    suite_add_tcase(s, tc);
    return s;
}
