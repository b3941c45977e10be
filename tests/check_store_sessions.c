/* check_store_sessions.c -- store conformance cases of the sessions operations
 * (see check_store.h): entries are bytes kept whole (NULs included), one
 * per (channel, account, key); listings are per account in key order;
 * clearing an account touches no other; a write's changes are all kept or
 * all undone with its transaction or savepoint. */
#include <stdlib.h>
#include <string.h>

#include "check_store.h"

#define SS (store->sessions)

/* A sealed-looking value: bytes 0..n-1 of a pattern holding NULs. */
static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i % 7 == 0 ? 0 : (i * 31 + seed) & 0xff);
}

/* Put (channel, account, key) = bytes inside t. */
static void
put(struct tx *t, const char *channel, const char *account, const char *key, int enc,
    const unsigned char *b, size_t n, int64_t at)
{
    struct session_entry e = {channel, account, key, enc, b, n, at};

    ck_assert_int_eq(SS->put(t, &e), 0);
}

/* Put a short text value in its own committed transaction. */
static void
put_text(const char *channel, const char *account, const char *key, const char *text)
{
    struct tx t;

    st_begin(st_conn, &t);
    put(&t, channel, account, key, 0, (const unsigned char *)text, strlen(text), t.now);
    ck_assert_int_eq(st_commit(&t), 0);
}

/* The stored text of an entry, read on t; NULL when there is none. Caller frees. */
static char *
get_text(struct tx *t, const char *channel, const char *account, const char *key)
{
    struct session_entry e;
    char *s;
    int rc = SS->get(t, channel, account, key, &e);

    ck_assert_int_ge(rc, 0);
    if (rc == 0)
        return NULL;
    s = malloc(e.len + 1);
    memcpy(s, e.value, e.len);
    s[e.len] = 0;
    free((void *)e.value);
    return s;
}

static bool
has(const char *channel, const char *account, const char *key)
{
    struct tx t;
    char *s;
    bool found;

    st_read(&t);
    s = get_text(&t, channel, account, key);
    tx_read_end(&t);
    found = s != NULL;
    free(s);
    return found;
}

/* A listing collected as "key=len;" for each entry, and the bytes of the
 * entry named `want` when values were asked for. */
struct seen {
    char names[512];
    const char *want;
    unsigned char got[256];
    size_t got_len;
    int calls, stop_after;
};

static int
collect(const struct session_entry *e, void *arg)
{
    struct seen *s = arg;
    size_t n = strlen(s->names);

    snprintf(s->names + n, sizeof s->names - n, "%s=%zu%s;", e->key, e->len, e->value ? "" : "-");
    if (s->want && !strcmp(e->key, s->want) && e->value && e->len <= sizeof s->got) {
        memcpy(s->got, e->value, e->len);
        s->got_len = e->len;
    }
    return ++s->calls == s->stop_after ? 7 : 0;
}

static void
list(const char *channel, const char *account, bool values, struct seen *s)
{
    struct tx t;

    st_read(&t);
    ck_assert_int_eq(SS->list(&t, channel, account, values, collect, s), 0);
    tx_read_end(&t);
}

/* Binary ciphertext with NUL bytes comes back whole: every byte, its
 * length, format and time; an absent entry is 0, not an error. */
START_TEST(put_get_binary_round_trip)
{
    unsigned char b[200];
    struct session_entry e;
    struct tx t;

    pattern(b, sizeof b, 1);
    st_begin(st_conn, &t);
    put(&t, "whatsapp", "acc1", "creds", 1, b, sizeof b, 1234567);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc1", "creds", &e), 1);
    ck_assert_str_eq(e.key, "creds");
    ck_assert_int_eq(e.enc, 1);
    ck_assert_uint_eq(e.len, sizeof b);
    ck_assert_int_eq(memcmp(e.value, b, sizeof b), 0);
    ck_assert_int_eq(e.updated_at, 1234567);
    free((void *)e.value);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc1", "other", &e), 0);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc2", "creds", &e), 0);
    tx_read_end(&t);
}
END_TEST

/* An empty value (no bytes, value NULL) is stored as zero bytes -- not
 * as no value -- in either format, and comes back found with length 0. */
START_TEST(empty_value_round_trip)
{
    struct session_entry e;
    struct seen s = {0};
    struct tx t;

    st_begin(st_conn, &t);
    put(&t, "whatsapp", "acc1", "sealed", 1, NULL, 0, t.now);
    put(&t, "whatsapp", "acc1", "clear", 0, NULL, 0, t.now);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc1", "sealed", &e), 1);
    ck_assert_int_eq(e.enc, 1);
    ck_assert_uint_eq(e.len, 0);
    ck_assert_ptr_nonnull(e.value);
    free((void *)e.value);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc1", "clear", &e), 1);
    ck_assert_int_eq(e.enc, 0);
    ck_assert_uint_eq(e.len, 0);
    free((void *)e.value);
    tx_read_end(&t);
    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "clear=0-;sealed=0-;");
}
END_TEST

/* A second put of the same names replaces the entry (bytes, format, time)
 * and does not add one. */
START_TEST(put_overwrites)
{
    unsigned char b[64];
    struct session_entry e;
    struct seen s = {0};
    struct tx t;

    put_text("whatsapp", "acc1", "creds", "{\"a\":1,\"long\":\"enough to be longer\"}");
    pattern(b, sizeof b, 2);
    st_begin(st_conn, &t);
    put(&t, "whatsapp", "acc1", "creds", 1, b, sizeof b, t.now + 5);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(SS->get(&t, "whatsapp", "acc1", "creds", &e), 1);
    ck_assert_int_eq(e.enc, 1);
    ck_assert_uint_eq(e.len, sizeof b);
    ck_assert_int_eq(memcmp(e.value, b, sizeof b), 0);
    free((void *)e.value);
    tx_read_end(&t);
    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "creds=64-;");
}
END_TEST

/* A listing holds the account's entries only, in key order, with their
 * bytes when asked and only their stored sizes (bytes, not characters)
 * when not; a visitor's
 * non-zero result stops it and is returned. */
START_TEST(list_account_in_key_order)
{
    unsigned char b[100];
    struct seen s = {0};
    struct tx t;

    pattern(b, sizeof b, 3);
    put_text("whatsapp", "acc1", "pre-key-2", "\"d\xc3\xb6s\"");     /* 6 bytes, 5 characters */
    put_text("whatsapp", "acc1", "creds", "{}");
    st_begin(st_conn, &t);
    put(&t, "whatsapp", "acc1", "pre-key-10", 1, b, sizeof b, t.now);
    ck_assert_int_eq(st_commit(&t), 0);
    put_text("whatsapp", "acc2", "creds", "{\"other\":true}");
    put_text("telegram", "acc1", "creds", "{\"other\":1}");

    s.want = "pre-key-10";
    list("whatsapp", "acc1", true, &s);
    ck_assert_str_eq(s.names, "creds=2;pre-key-10=100;pre-key-2=6;");
    ck_assert_uint_eq(s.got_len, sizeof b);
    ck_assert_int_eq(memcmp(s.got, b, sizeof b), 0);

    memset(&s, 0, sizeof s);
    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "creds=2-;pre-key-10=100-;pre-key-2=6-;");

    memset(&s, 0, sizeof s);
    list("whatsapp", "nobody", true, &s);
    ck_assert_str_eq(s.names, "");

    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    st_read(&t);
    ck_assert_int_eq(SS->list(&t, "whatsapp", "acc1", true, collect, &s), 7);
    tx_read_end(&t);
    ck_assert_int_eq(s.calls, 2);
}
END_TEST

/* del removes exactly one entry and says whether it existed. */
START_TEST(del_one)
{
    struct tx t;

    put_text("whatsapp", "acc1", "creds", "1");
    put_text("whatsapp", "acc1", "keep", "2");
    put_text("whatsapp", "acc2", "creds", "3");
    st_begin(st_conn, &t);
    ck_assert_int_eq(SS->del(&t, "whatsapp", "acc1", "creds"), 1);
    ck_assert_int_eq(SS->del(&t, "whatsapp", "acc1", "creds"), 0);
    ck_assert_int_eq(SS->del(&t, "whatsapp", "acc1", "never"), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert(!has("whatsapp", "acc1", "creds"));
    ck_assert(has("whatsapp", "acc1", "keep"));
    ck_assert(has("whatsapp", "acc2", "creds"));
}
END_TEST

/* clear empties one account, counts what it deleted, and leaves other
 * accounts and other channels alone. */
START_TEST(clear_leaves_other_accounts)
{
    struct seen s = {0};
    struct tx t;
    int64_t n = -1;

    put_text("whatsapp", "acc1", "a", "1");
    put_text("whatsapp", "acc1", "b", "2");
    put_text("whatsapp", "acc1", "c", "3");
    put_text("whatsapp", "acc2", "a", "4");
    put_text("whatsapp", "acc2", "b", "5");
    put_text("telegram", "acc1", "a", "6");
    st_begin(st_conn, &t);
    ck_assert_int_eq(SS->clear(&t, "whatsapp", "acc1", &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(SS->clear(&t, "whatsapp", "acc1", &n), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(st_commit(&t), 0);

    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "");
    memset(&s, 0, sizeof s);
    list("whatsapp", "acc2", false, &s);
    ck_assert_str_eq(s.names, "a=1-;b=1-;");
    ck_assert(has("telegram", "acc1", "a"));
}
END_TEST

/* The changes of a batch (puts and deletes) in one transaction. */
static void
batch(struct tx *t)
{
    unsigned char b[48];

    pattern(b, sizeof b, 4);
    put(t, "whatsapp", "acc1", "new-1", 1, b, sizeof b, t->now);
    put(t, "whatsapp", "acc1", "new-2", 0, (const unsigned char *)"[1,2]", 5, t->now);
    put(t, "whatsapp", "acc1", "old-1", 0, (const unsigned char *)"\"changed\"", 9, t->now);
    ck_assert_int_eq(SS->del(t, "whatsapp", "acc1", "old-2"), 1);
}

static void
batch_before(void)
{
    put_text("whatsapp", "acc1", "old-1", "\"was\"");
    put_text("whatsapp", "acc1", "old-2", "\"gone?\"");
}

/* Rolled back, a batch leaves nothing of itself; within the transaction
 * its changes were visible. */
START_TEST(batch_rolled_back_leaves_nothing)
{
    struct seen s = {0};
    struct tx t;
    char *v;

    batch_before();
    st_begin(st_conn, &t);
    batch(&t);
    ck_assert_ptr_nonnull(v = get_text(&t, "whatsapp", "acc1", "new-2"));
    free(v);
    st_rollback(&t);

    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "old-1=5-;old-2=7-;");
    st_read(&t);
    v = get_text(&t, "whatsapp", "acc1", "old-1");
    tx_read_end(&t);
    ck_assert_str_eq(v, "\"was\"");
    free(v);
}
END_TEST

/* The writer's way: a write's savepoint rolled back undoes the whole
 * batch while an earlier write of the same transaction is kept. */
START_TEST(batch_savepoint_rolled_back_leaves_nothing)
{
    struct seen s = {0};
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->savepoint(st_conn), 0);
    put(&t, "whatsapp", "acc1", "old-1", 0, (const unsigned char *)"\"was\"", 5, t.now);
    put(&t, "whatsapp", "acc1", "old-2", 0, (const unsigned char *)"\"gone?\"", 7, t.now);
    ck_assert_int_eq(store->release(st_conn), 0);
    ck_assert_int_eq(store->savepoint(st_conn), 0);
    batch(&t);
    ck_assert_int_eq(store->rollback_to(st_conn), 0);
    ck_assert_int_eq(store->release(st_conn), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    list("whatsapp", "acc1", false, &s);
    ck_assert_str_eq(s.names, "old-1=5-;old-2=7-;");
}
END_TEST

/* Committed, a batch keeps every one of its changes. */
START_TEST(batch_committed_keeps_all)
{
    struct seen s = {.want = "new-1"};
    unsigned char b[48];
    struct tx t;
    char *v;

    batch_before();
    st_begin(st_conn, &t);
    batch(&t);
    ck_assert_int_eq(st_commit(&t), 0);

    list("whatsapp", "acc1", true, &s);
    ck_assert_str_eq(s.names, "new-1=48;new-2=5;old-1=9;");
    pattern(b, sizeof b, 4);
    ck_assert_uint_eq(s.got_len, sizeof b);
    ck_assert_int_eq(memcmp(s.got, b, sizeof b), 0);
    st_read(&t);
    v = get_text(&t, "whatsapp", "acc1", "old-1");
    tx_read_end(&t);
    ck_assert_str_eq(v, "\"changed\"");
    free(v);
}
END_TEST

/* Entries survive a restart of the store. */
START_TEST(entries_survive_reopen)
{
    unsigned char b[32];
    struct seen s = {.want = "creds"};

    pattern(b, sizeof b, 5);
    {
        struct tx t;
        st_begin(st_conn, &t);
        put(&t, "whatsapp", "acc1", "creds", 1, b, sizeof b, t.now);
        ck_assert_int_eq(st_commit(&t), 0);
    }
    st_reopen();
    list("whatsapp", "acc1", true, &s);
    ck_assert_str_eq(s.names, "creds=32;");
    ck_assert_int_eq(memcmp(s.got, b, sizeof b), 0);
}
END_TEST

void
store_cases_sessions(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("sessions");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, put_get_binary_round_trip);
    tcase_add_test(tc, put_overwrites);
    tcase_add_test(tc, empty_value_round_trip);
    tcase_add_test(tc, list_account_in_key_order);
    tcase_add_test(tc, del_one);
    tcase_add_test(tc, clear_leaves_other_accounts);
    tcase_add_test(tc, batch_rolled_back_leaves_nothing);
    tcase_add_test(tc, batch_savepoint_rolled_back_leaves_nothing);
    tcase_add_test(tc, batch_committed_keeps_all);
    tcase_add_test(tc, entries_survive_reopen);
    suite_add_tcase(s, tc);
}
