/* check_store_leases.c -- store conformance cases of the leases and
 * accounts operations (see check_store.h): fencing tokens that never go
 * back, one winner among concurrent acquirers (of a new, an expired and a
 * released lease), expiry judged with the
 * transaction's clock, stale tokens that change nothing, a fenced write
 * that no takeover on another connection overtakes, the listing of
 * held leases and the accounts registry (one creator among concurrent
 * puts). Store interface only. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check_store.h"

#define TTL 60000

/* The lease of (ch, acc) read in its own transaction; asserts it exists. */
static struct lease
lease_now(const char *ch, const char *acc)
{
    struct tx t;
    struct lease l;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->get(&t, ch, acc, &l), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    return l;
}

/* One grant in its own transaction at clock `at` (0: the store's).
 * Returns the op's result; *l the lease after when granted. */
static int
grant_at(const char *ch, const char *acc, const char *owner, int64_t ttl, int64_t at, struct lease *l)
{
    struct tx t;
    int rc;

    st_begin(st_conn, &t);
    if (at)
        t.now = at;
    rc = store->leases->grant(&t, ch, acc, owner, ttl, l);
    ck_assert_int_ge(rc, 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return rc;
}

/* The token strictly increases with every grant, across release,
 * force-release and restarts, and only grants count as transitions. */
START_TEST(token_never_goes_back)
{
    struct tx t;
    struct lease l;
    int64_t last;

    ck_assert_int_eq(grant_at("whatsapp", "p1", "a", TTL, 0, &l), 1);
    ck_assert_str_eq(l.owner, "a");
    ck_assert_int_eq(l.token, 1);
    ck_assert_int_eq(l.transitions, 1);
    last = l.token;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p1", "a", last, &l), 1);
    ck_assert_str_eq(l.owner, "");
    ck_assert_int_eq(l.token, last);            /* a release keeps the token */
    ck_assert_int_eq(l.expires_at, t.now);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_int_eq(grant_at("whatsapp", "p1", "b", TTL, 0, &l), 1);
    ck_assert_int_gt(l.token, last);
    last = l.token;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->force_release(&t, "whatsapp", "p1", &l), 1);
    ck_assert_str_eq(l.owner, "");
    ck_assert_int_eq(l.token, last);
    /* nothing left to force */
    ck_assert_int_eq(store->leases->force_release(&t, "whatsapp", "p1", &l), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    st_reopen();
    ck_assert_int_eq(lease_now("whatsapp", "p1").token, last);
    ck_assert_int_eq(grant_at("whatsapp", "p1", "a", TTL, 0, &l), 1);
    ck_assert_int_gt(l.token, last);
    last = l.token;

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p1", "a", last, &l), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    st_reopen();
    ck_assert_int_eq(grant_at("whatsapp", "p1", "c", TTL, 0, &l), 1);
    ck_assert_int_gt(l.token, last);
    ck_assert_int_eq(l.transitions, 4);

    /* another account has its own lease */
    ck_assert_int_eq(grant_at("whatsapp", "p2", "a", TTL, 0, &l), 1);
    ck_assert_int_eq(l.token, 1);
}
END_TEST

/* ---- 16 acquirers on their own connections ----------------------------------- */

#define RACERS 16

static int
grant_one(struct tx *t, int i, void *arg)
{
    struct lease *l = arg;
    char owner[16];

    snprintf(owner, sizeof owner, "w%d", i);
    return store->leases->grant(t, "whatsapp", "contended", owner, TTL, &l[i]);
}

/* Race RACERS grants of whatsapp/contended; asserts exactly one won and
 * that the lease is its grant; returns the winner's lease. */
static struct lease
race_grants(void)
{
    struct lease got[RACERS], l;
    int rcs[RACERS], winners = 0, winner = -1;
    char owner[16];

    memset(got, 0, sizeof got);
    st_race(RACERS, grant_one, got, rcs);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        if (rcs[i] == 1) {
            winners++;
            winner = i;
        }
    }
    ck_assert_int_eq(winners, 1);
    snprintf(owner, sizeof owner, "w%d", winner);
    l = lease_now("whatsapp", "contended");
    ck_assert_str_eq(l.owner, owner);
    ck_assert_int_eq(l.token, got[winner].token);
    ck_assert_int_eq(l.acquired_at, got[winner].acquired_at);
    return l;
}

/* A lease never granted: one of 16 gets the first token. */
START_TEST(one_winner_among_sixteen)
{
    struct lease l = race_grants();

    ck_assert_int_eq(l.token, 1);
    ck_assert_int_eq(l.transitions, 1);
}
END_TEST

/* A lease held by another owner but expired, then one released: each
 * time one of 16 takes it, with the next token. */
START_TEST(one_winner_after_expiry_and_release)
{
    struct tx t;
    struct lease old, l;

    ck_assert_int_eq(grant_at("whatsapp", "contended", "old", 1000, now_ms() - 60000, &old), 1);
    l = race_grants();
    ck_assert_int_eq(l.token, old.token + 1);
    ck_assert_int_eq(l.transitions, 2);

    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "contended", l.owner, l.token, &l), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    l = race_grants();
    ck_assert_int_eq(l.token, old.token + 2);
    ck_assert_int_eq(l.transitions, 3);
}
END_TEST

/* Held until expires_at (exclusive) by the store's clock; from then on
 * another owner gets it with a higher token, and the old holder's token
 * renews and releases nothing. */
START_TEST(expired_lease_taken_by_another)
{
    struct tx t;
    struct lease a, l;

    ck_assert_int_eq(grant_at("telegram", "bot", "a", 1000, 0, &a), 1);
    ck_assert_int_eq(a.expires_at, a.acquired_at + 1000);
    ck_assert_int_eq(a.ttl_ms, 1000);
    /* still held a millisecond before expiry */
    ck_assert_int_eq(grant_at("telegram", "bot", "b", TTL, a.expires_at - 1, &l), 0);
    ck_assert_str_eq(lease_now("telegram", "bot").owner, "a");

    st_begin(st_conn, &t);
    t.now = a.expires_at;
    ck_assert_int_eq(store->leases->grant(&t, "telegram", "bot", "b", TTL, &l), 1);
    ck_assert_str_eq(l.owner, "b");
    ck_assert_int_gt(l.token, a.token);
    ck_assert_int_eq(l.acquired_at, t.now);
    ck_assert_int_eq(l.expires_at, t.now + TTL);
    ck_assert_int_eq(l.transitions, 2);
    ck_assert_int_eq(st_commit(&t), 0);

    st_begin(st_conn, &t);
    t.now = a.expires_at + 1;
    ck_assert_int_eq(store->leases->renew(&t, "telegram", "bot", "a", a.token, TTL, false, &l), 0);
    ck_assert_int_eq(store->leases->release(&t, "telegram", "bot", "a", a.token, &l), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_str_eq(lease_now("telegram", "bot").owner, "b");
}
END_TEST

static void
assert_same(const struct lease *x, const struct lease *y)
{
    ck_assert_str_eq(x->owner, y->owner);
    ck_assert_int_eq(x->token, y->token);
    ck_assert_int_eq(x->acquired_at, y->acquired_at);
    ck_assert_int_eq(x->renewed_at, y->renewed_at);
    ck_assert_int_eq(x->expires_at, y->expires_at);
    ck_assert_int_eq(x->ttl_ms, y->ttl_ms);
    ck_assert_int_eq(x->transitions, y->transitions);
}

/* Heartbeat (renew) and release with a stale token, or by another owner
 * with the current token, change nothing; the holder renews with its
 * token, keeping or replacing its ttl, even after expiry. */
START_TEST(stale_token_changes_nothing)
{
    struct tx t;
    struct lease cur, l, before;

    ck_assert_int_eq(grant_at("whatsapp", "p", "a", TTL, 0, &l), 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p", "a", l.token, &l), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(grant_at("whatsapp", "p", "b", TTL, 0, &cur), 1);
    before = lease_now("whatsapp", "p");

    st_begin(st_conn, &t);
    t.now += 5000;
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "a", cur.token - 1, TTL, false, &l), 0);
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token - 1, TTL, false, &l), 0);
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "a", cur.token, TTL, false, &l), 0);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p", "a", cur.token - 1, &l), 0);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p", "b", cur.token - 1, &l), 0);
    ck_assert_int_eq(store->leases->release(&t, "whatsapp", "p", "a", cur.token, &l), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    assert_same(&before, &cur);
    l = lease_now("whatsapp", "p");
    assert_same(&l, &cur);

    /* the holder renews while it holds the lease, or -- unless while_held
     * -- after it expired as long as nobody took it; ttl 0 keeps the
     * stored one */
    st_begin(st_conn, &t);
    t.now = cur.expires_at - 1;
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token, 0, true, &l), 1);
    ck_assert_int_eq(l.expires_at, t.now + TTL);
    cur = l;
    ck_assert_int_eq(st_commit(&t), 0);

    st_begin(st_conn, &t);
    t.now = cur.expires_at;
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token, 0, true, &l), 0);
    l = cur;
    t.now = cur.expires_at + 10;
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token, 0, true, &l), 0);
    assert_same(&l, &cur);
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token, 0, false, &l), 1);
    ck_assert_int_eq(l.token, cur.token);
    ck_assert_int_eq(l.transitions, cur.transitions);
    ck_assert_int_eq(l.renewed_at, t.now);
    ck_assert_int_eq(l.expires_at, t.now + TTL);
    ck_assert_int_eq(store->leases->renew(&t, "whatsapp", "p", "b", cur.token, 2000, false, &l), 1);
    ck_assert_int_eq(l.ttl_ms, 2000);
    ck_assert_int_eq(l.expires_at, t.now + 2000);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* ---- a fenced write against a takeover on another connection ------------------ */

struct takeover {
    atomic_bool done;
    int released, granted;
    struct lease l;
};

/* On a connection of its own: force-release whatsapp/fenced and grant it to "b". */
static void *
take_over(void *arg)
{
    struct takeover *o = arg;
    struct sconn *c = st_connect();
    struct tx t;

    st_begin(c, &t);
    o->released = store->leases->force_release(&t, "whatsapp", "fenced", &o->l);
    o->granted = store->leases->grant(&t, "whatsapp", "fenced", "b", TTL, &o->l);
    if (st_commit(&t) < 0)
        o->granted = -2;
    store->disconnect(c);
    atomic_store(&o->done, true);
    return NULL;
}

/* While a write that read the lease with fence is open, another
 * connection cannot force-release and re-grant it: the takeover waits for
 * the fenced write to commit, then gets the next token. */
START_TEST(fence_holds_off_a_takeover)
{
    struct takeover o = {.released = -9, .granted = -9};
    struct lease a, l;
    struct tx t;
    pthread_t th;

    ck_assert_int_eq(grant_at("whatsapp", "fenced", "a", TTL, 0, &a), 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->fence(&t, "whatsapp", "fenced", &l), 1);
    ck_assert_str_eq(l.owner, "a");
    ck_assert_int_eq(l.token, a.token);
    ck_assert_int_eq(pthread_create(&th, NULL, take_over, &o), 0);
    usleep(500 * 1000);
    /* the fenced write is still open: the token it checked is the latest */
    ck_assert_msg(!atomic_load(&o.done), "the lease was taken over under a fenced write");
    ck_assert_int_eq(st_commit(&t), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(o.released, 1);
    ck_assert_int_eq(o.granted, 1);
    ck_assert_str_eq(o.l.owner, "b");
    ck_assert_int_eq(o.l.token, a.token + 1);
    /* a never granted lease fences nothing */
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->fence(&t, "whatsapp", "never", &l), 0);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* ---- listings and accounts --------------------------------------------------- */

static int
collect_lease(struct tx *t, const struct lease *l, void *arg)
{
    char *buf = arg;

    (void)t;
    snprintf(buf + strlen(buf), 256 - strlen(buf), "%s/%s=%s ", l->channel, l->account, l->owner);
    return 0;
}

static const char *
held(int64_t skew, const char *owner, const char *channel, char *buf)
{
    struct tx t;

    buf[0] = 0;
    st_begin(st_conn, &t);
    t.now += skew;
    ck_assert_int_eq(store->leases->list_held(&t, owner, channel, collect_lease, buf), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return buf;
}

/* Only leases held at the transaction's clock, by channel then account. */
START_TEST(list_held_at_now)
{
    struct tx t;
    struct lease l;
    char buf[256];

    ck_assert_int_eq(grant_at("whatsapp", "2", "a", TTL, 0, &l), 1);
    ck_assert_int_eq(grant_at("whatsapp", "1", "b", 30000, 0, &l), 1);
    ck_assert_int_eq(grant_at("telegram", "9", "a", TTL, 0, &l), 1);
    ck_assert_int_eq(grant_at("telegram", "8", "a", TTL, 0, &l), 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->release(&t, "telegram", "8", "a", l.token, &l), 1);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_str_eq(held(0, NULL, NULL, buf), "telegram/9=a whatsapp/1=b whatsapp/2=a ");
    ck_assert_str_eq(held(0, "a", NULL, buf), "telegram/9=a whatsapp/2=a ");
    ck_assert_str_eq(held(0, NULL, "whatsapp", buf), "whatsapp/1=b whatsapp/2=a ");
    ck_assert_str_eq(held(0, "a", "whatsapp", buf), "whatsapp/2=a ");
    ck_assert_str_eq(held(45000, NULL, NULL, buf), "telegram/9=a whatsapp/2=a ");
    ck_assert_str_eq(held(45000, "b", NULL, buf), "");
    ck_assert_str_eq(held(45000, NULL, "whatsapp", buf), "whatsapp/2=a ");
}
END_TEST

static int
collect_account(struct tx *t, const struct account *a, void *arg)
{
    char *buf = arg;

    (void)t;
    snprintf(buf + strlen(buf), 256 - strlen(buf), "%s/%s=%d ", a->channel, a->account, a->enabled);
    return 0;
}

static const char *
accounts(const char *channel, int enabled, char *buf)
{
    struct tx t;

    buf[0] = 0;
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->account_list(&t, channel, enabled, collect_account, buf), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return buf;
}

/* put creates then updates (a put without config keeps it), get, list by
 * channel and enabled, delete; deleting an account keeps its lease. */
START_TEST(accounts_registry)
{
    struct tx t;
    struct account a;
    struct lease l;
    bool created;
    json_t *cfg1 = json_pack("{s:s}", "phone", "+1");
    char buf[256];
    int64_t t0;

    st_begin(st_conn, &t);
    t0 = t.now;
    ck_assert_int_eq(store->leases->account_put(&t, "whatsapp", "p1", true, cfg1, &a, &created), 0);
    ck_assert(created);
    ck_assert(a.enabled);
    ck_assert(json_equal(a.config, cfg1));
    ck_assert_int_eq(a.created_at, t0);
    account_clear(&a);
    ck_assert_int_eq(store->leases->account_put(&t, "whatsapp", "p0", false, NULL, &a, &created), 0);
    ck_assert(json_is_object(a.config) && json_object_size(a.config) == 0);
    account_clear(&a);
    ck_assert_int_eq(store->leases->account_put(&t, "telegram", "bot", true, NULL, &a, &created), 0);
    account_clear(&a);
    ck_assert_int_eq(st_commit(&t), 0);

    st_begin(st_conn, &t);
    t.now = t0 + 100;
    ck_assert_int_eq(store->leases->account_put(&t, "whatsapp", "p1", false, NULL, &a, &created), 0);
    ck_assert(!created);
    ck_assert(!a.enabled);
    ck_assert(json_equal(a.config, cfg1));
    ck_assert_int_eq(a.created_at, t0);
    ck_assert_int_eq(a.updated_at, t0 + 100);
    account_clear(&a);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_str_eq(accounts(NULL, -1, buf), "telegram/bot=1 whatsapp/p0=0 whatsapp/p1=0 ");
    ck_assert_str_eq(accounts(NULL, 1, buf), "telegram/bot=1 ");
    ck_assert_str_eq(accounts("whatsapp", 0, buf), "whatsapp/p0=0 whatsapp/p1=0 ");
    ck_assert_str_eq(accounts("whatsapp", -1, buf), "whatsapp/p0=0 whatsapp/p1=0 ");

    ck_assert_int_eq(grant_at("whatsapp", "p1", "a", TTL, 0, &l), 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->account_delete(&t, "whatsapp", "p1"), 1);
    ck_assert_int_eq(store->leases->account_delete(&t, "whatsapp", "p1"), 0);
    ck_assert_int_eq(store->leases->account_get(&t, "whatsapp", "p1", &a), 0);
    ck_assert_int_eq(store->leases->account_get(&t, "whatsapp", "p0", &a), 1);
    ck_assert_str_eq(a.account, "p0");
    account_clear(&a);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(lease_now("whatsapp", "p1").token, l.token);
    json_decref(cfg1);
}
END_TEST

static int
put_one(struct tx *t, int i, void *arg)
{
    bool *created = arg;
    struct account a;
    json_t *config = json_pack("{s:i}", "racer", i);
    int rc = store->leases->account_put(t, "whatsapp", "new", i % 2 == 0, config, &a, &created[i]);

    json_decref(config);
    if (rc == 0)
        account_clear(&a);
    return rc;
}

/* 16 puts of one new account on their own connections: every one is
 * written, exactly one of them created it. */
START_TEST(one_creator_among_sixteen)
{
    bool created[16] = {0};
    int rcs[16], creators = 0;
    struct account a;
    struct tx t;

    st_race(16, put_one, created, rcs);
    for (int i = 0; i < 16; i++) {
        ck_assert_msg(rcs[i] == 0, "racer %d: %d", i, rcs[i]);
        creators += created[i];
    }
    ck_assert_int_eq(creators, 1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(store->leases->account_get(&t, "whatsapp", "new", &a), 1);
    ck_assert(json_is_integer(json_object_get(a.config, "racer")));
    account_clear(&a);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

void
store_cases_leases(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("leases");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, token_never_goes_back);
    tcase_add_test(tc, one_winner_among_sixteen);
    tcase_add_test(tc, one_winner_after_expiry_and_release);
    tcase_add_test(tc, expired_lease_taken_by_another);
    tcase_add_test(tc, stale_token_changes_nothing);
    tcase_add_test(tc, fence_holds_off_a_takeover);
    tcase_add_test(tc, list_held_at_now);
    tcase_add_test(tc, accounts_registry);
    tcase_add_test(tc, one_creator_among_sixteen);
    suite_add_tcase(s, tc);
}
