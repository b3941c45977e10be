/* check_leases.c -- leases and accounts over HTTP against the real batond:
 * the protocol of SPEC section 4, expiry, fencing tokens across restarts
 * and kill -9, contention between threads, a randomised model check, the
 * events recorded, and refusals of bad input. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct server srv;

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    server_start(&srv, NULL);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static int64_t
clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* an integer member, asserted present */
static int64_t
ji(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "no integer '%s'", k);
    return (int64_t)json_integer_value(v);
}

static const char *
js(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *
err_of(json_t *j)
{
    return json_object_get(j, "error");
}

/* POST /v1/leases/whatsapp/{acc}/{op} with body; asserts the status. */
static json_t *
lop(const char *op, const char *acc, json_t *body, long expect)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/leases/whatsapp/%s/%s", acc, op);
    return CALL(&srv, "POST", path, body ? body : json_object(), expect);
}

static json_t *
acquire(const char *acc, const char *owner, int ttl, long expect)
{
    return lop("acquire", acc, json_pack("{s:s, s:i}", "ownerId", owner, "ttlMs", ttl), expect);
}

static json_t *
heartbeat(const char *acc, const char *owner, int64_t token, long expect)
{
    return lop("heartbeat", acc, json_pack("{s:s, s:I}", "ownerId", owner, "token", (json_int_t)token),
               expect);
}

static json_t *
release(const char *acc, const char *owner, int64_t token, long expect)
{
    return lop("release", acc, json_pack("{s:s, s:I}", "ownerId", owner, "token", (json_int_t)token), expect);
}

static json_t *
get_lease(const char *acc)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/leases/whatsapp/%s", acc);
    return CALL(&srv, "GET", path, NULL, 200);
}

/* token of the {lease} in a write's answer */
static int64_t
token_of(json_t *j)
{
    return ji(json_object_get(j, "lease"), "token");
}

START_TEST(acquire_renew_contend_release_force)
{
    json_t *j, *l, *e;
    int64_t exp1;

    j = get_lease("acc1");
    ck_assert(json_is_null(j));                      /* never leased: null, 200 */
    json_decref(j);

    j = acquire("acc1", "wa-1", 30000, 200);
    l = json_object_get(j, "lease");
    ck_assert_str_eq(js(l, "channel"), "whatsapp");
    ck_assert_str_eq(js(l, "accountId"), "acc1");
    ck_assert_str_eq(js(l, "ownerId"), "wa-1");
    ck_assert_int_eq(ji(l, "token"), 1);
    ck_assert_int_eq(ji(l, "transitions"), 1);
    ck_assert(json_is_true(json_object_get(l, "held")));
    ck_assert_int_eq(ji(l, "acquiredAt"), ji(l, "renewedAt"));
    ck_assert_int_eq(ji(l, "expiresAt") - ji(l, "renewedAt"), 30000);
    ck_assert_ptr_null(json_object_get(j, "renewedAfterExpiry"));
    exp1 = ji(l, "expiresAt");
    json_decref(j);

    /* the same owner again: renewed, same token, no new transition */
    j = acquire("acc1", "wa-1", 40000, 200);
    l = json_object_get(j, "lease");
    ck_assert_int_eq(ji(l, "token"), 1);
    ck_assert_int_eq(ji(l, "transitions"), 1);
    ck_assert_int_ge(ji(l, "expiresAt"), exp1 + 10000);
    ck_assert_ptr_null(json_object_get(j, "renewedAfterExpiry"));
    exp1 = ji(l, "expiresAt");
    json_decref(j);

    /* another owner: 409 lease_held naming the holder and its expiry */
    j = acquire("acc1", "wa-2", 30000, 409);
    e = err_of(j);
    ck_assert_str_eq(js(e, "code"), "lease_held");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-1");
    ck_assert_int_eq(ji(e, "expiresAt"), exp1);
    json_decref(j);

    /* heartbeat by the holder, with and without ttlMs */
    j = heartbeat("acc1", "wa-1", 1, 200);
    l = json_object_get(j, "lease");
    ck_assert_int_eq(ji(l, "token"), 1);
    ck_assert_int_eq(ji(l, "expiresAt") - ji(l, "renewedAt"), 40000);   /* last ttl kept */
    json_decref(j);
    j = lop("heartbeat", "acc1", json_pack("{s:s, s:i, s:i}", "ownerId", "wa-1", "token", 1, "ttlMs", 5000),
            200);
    l = json_object_get(j, "lease");
    ck_assert_int_eq(ji(l, "expiresAt") - ji(l, "renewedAt"), 5000);
    json_decref(j);

    /* wrong owner or wrong token: lease_lost with the current holder */
    j = heartbeat("acc1", "wa-2", 1, 409);
    e = err_of(j);
    ck_assert_str_eq(js(e, "code"), "lease_lost");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-1");
    ck_assert_int_eq(ji(e, "currentToken"), 1);
    json_decref(j);
    json_decref(heartbeat("acc1", "wa-1", 2, 409));
    json_decref(release("acc1", "wa-2", 1, 409));
    json_decref(release("acc1", "wa-1", 7, 409));

    /* release: freed, token kept on the row */
    j = release("acc1", "wa-1", 1, 200);
    l = json_object_get(j, "lease");
    ck_assert(json_is_null(json_object_get(l, "ownerId")));
    ck_assert(json_is_false(json_object_get(l, "held")));
    ck_assert_int_eq(ji(l, "token"), 1);
    json_decref(j);
    j = get_lease("acc1");
    ck_assert(json_is_null(json_object_get(j, "ownerId")));
    ck_assert(json_is_false(json_object_get(j, "held")));
    ck_assert_int_eq(ji(j, "token"), 1);
    json_decref(j);
    /* the released token is dead: heartbeat and release refused */
    j = heartbeat("acc1", "wa-1", 1, 409);
    ck_assert_str_eq(js(err_of(j), "code"), "lease_lost");
    ck_assert(json_is_null(json_object_get(err_of(j), "currentOwnerId")));
    json_decref(j);
    json_decref(release("acc1", "wa-1", 1, 409));

    /* a new holder gets the next token */
    j = acquire("acc1", "wa-2", 30000, 200);
    ck_assert_int_eq(token_of(j), 2);
    ck_assert_int_eq(ji(json_object_get(j, "lease"), "transitions"), 2);
    json_decref(j);

    /* force-release: freed whoever holds it; its holder is locked out */
    j = lop("force-release", "acc1", NULL, 200);
    ck_assert(json_is_true(json_object_get(j, "released")));
    l = json_object_get(j, "lease");
    ck_assert(json_is_null(json_object_get(l, "ownerId")));
    ck_assert_int_eq(ji(l, "token"), 2);
    json_decref(j);
    j = heartbeat("acc1", "wa-2", 2, 409);
    ck_assert_str_eq(js(err_of(j), "code"), "lease_lost");
    json_decref(j);
    json_decref(release("acc1", "wa-2", 2, 409));
    j = lop("force-release", "acc1", NULL, 200);       /* nothing to free */
    ck_assert(json_is_false(json_object_get(j, "released")));
    ck_assert_int_eq(token_of(j), 2);
    json_decref(j);
    j = lop("force-release", "never", NULL, 200);      /* never leased */
    ck_assert(json_is_false(json_object_get(j, "released")));
    ck_assert(json_is_null(json_object_get(j, "lease")));
    json_decref(j);
    j = get_lease("never");
    ck_assert(json_is_null(j));                        /* and still never leased */
    json_decref(j);

    /* the same owner that was forced out gets a new token, not its old one */
    j = acquire("acc1", "wa-2", 30000, 200);
    ck_assert_int_eq(token_of(j), 3);
    json_decref(j);

    /* accounts are independent */
    j = acquire("acc2", "wa-1", 30000, 200);
    ck_assert_int_eq(token_of(j), 1);
    json_decref(j);
    j = CALL(&srv, "POST", "/v1/leases/telegram/acc1/acquire",
             json_pack("{s:s, s:i}", "ownerId", "tg-1", "ttlMs", 30000), 200);
    ck_assert_int_eq(token_of(j), 1);
    json_decref(j);
}
END_TEST

START_TEST(expiry_lets_another_owner_take_over)
{
    json_t *j, *l, *e;
    int64_t exp;

    j = acquire("acc1", "wa-1", 1000, 200);
    exp = ji(json_object_get(j, "lease"), "expiresAt");
    json_decref(j);
    while (clock_ms() <= exp + 50)
        sleep_ms(100);
    j = get_lease("acc1");
    ck_assert(json_is_false(json_object_get(j, "held")));
    ck_assert_str_eq(js(j, "ownerId"), "wa-1");          /* expired, not released */
    json_decref(j);

    j = acquire("acc1", "wa-2", 30000, 200);
    l = json_object_get(j, "lease");
    ck_assert_int_eq(ji(l, "token"), 2);
    ck_assert_int_eq(ji(l, "transitions"), 2);
    ck_assert_int_ge(ji(l, "acquiredAt"), exp);          /* no overlap in server time */
    ck_assert_ptr_null(json_object_get(j, "renewedAfterExpiry"));
    json_decref(j);

    /* the old holder learns it lost the lease, and cannot take it back */
    j = heartbeat("acc1", "wa-1", 1, 409);
    e = err_of(j);
    ck_assert_str_eq(js(e, "code"), "lease_lost");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-2");
    ck_assert_int_eq(ji(e, "currentToken"), 2);
    json_decref(j);
    json_decref(release("acc1", "wa-1", 1, 409));
    j = acquire("acc1", "wa-1", 30000, 409);
    ck_assert_str_eq(js(err_of(j), "currentOwnerId"), "wa-2");
    json_decref(j);
}
END_TEST

START_TEST(renewal_after_expiry_keeps_token)
{
    json_t *j, *l;
    int64_t exp;

    j = acquire("acc1", "wa-1", 1000, 200);
    exp = ji(json_object_get(j, "lease"), "expiresAt");
    json_decref(j);
    while (clock_ms() <= exp + 50)
        sleep_ms(100);
    /* heartbeat after expiry, nobody took it: renewed, flagged */
    j = heartbeat("acc1", "wa-1", 1, 200);
    l = json_object_get(j, "lease");
    ck_assert(json_is_true(json_object_get(j, "renewedAfterExpiry")));
    ck_assert_int_eq(ji(l, "token"), 1);
    ck_assert(json_is_true(json_object_get(l, "held")));
    ck_assert_int_gt(ji(l, "expiresAt"), exp);
    exp = ji(l, "expiresAt");
    json_decref(j);
    while (clock_ms() <= exp + 50)
        sleep_ms(100);
    /* acquire after expiry by the same owner: the same, not a new grant */
    j = acquire("acc1", "wa-1", 20000, 200);
    l = json_object_get(j, "lease");
    ck_assert(json_is_true(json_object_get(j, "renewedAfterExpiry")));
    ck_assert_int_eq(ji(l, "token"), 1);
    ck_assert_int_eq(ji(l, "transitions"), 1);
    json_decref(j);
    /* while held, no flag */
    j = heartbeat("acc1", "wa-1", 1, 200);
    ck_assert_ptr_null(json_object_get(j, "renewedAfterExpiry"));
    json_decref(j);
}
END_TEST

/* accountIds of GET path's {leases:[...]}, comma-joined, into buf */
static void
listed(const char *path, char *buf, size_t n)
{
    json_t *j = CALL(&srv, "GET", path, NULL, 200), *l;
    size_t i;

    buf[0] = 0;
    ck_assert(json_is_array(json_object_get(j, "leases")));
    json_array_foreach(json_object_get(j, "leases"), i, l) {
        ck_assert(json_is_true(json_object_get(l, "held")));
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s/%s", i ? "," : "", js(l, "channel"),
                 js(l, "accountId"));
    }
    json_decref(j);
}

START_TEST(list_by_owner_only_held)
{
    char got[512];
    json_t *j;
    int64_t exp;

    json_decref(acquire("a1", "wa-1", 60000, 200));
    json_decref(acquire("a2", "wa-1", 60000, 200));
    json_decref(CALL(&srv, "POST", "/v1/leases/telegram/t1/acquire",
                     json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 60000), 200));
    j = acquire("a3", "wa-1", 60000, 200);
    json_decref(release("a3", "wa-1", token_of(j), 200));
    json_decref(j);
    json_decref(acquire("a4", "wa-1", 60000, 200));
    json_decref(lop("force-release", "a4", NULL, 200));
    j = acquire("short", "wa-1", 1000, 200);
    exp = ji(json_object_get(j, "lease"), "expiresAt");
    json_decref(j);
    json_decref(acquire("b1", "wa-2", 60000, 200));

    listed("/v1/leases?ownerId=wa-1", got, sizeof got);
    ck_assert_msg(!strcmp(got, "telegram/t1,whatsapp/a1,whatsapp/a2,whatsapp/short"), "got %s", got);
    listed("/v1/leases?ownerId=wa-1&channel=whatsapp", got, sizeof got);
    ck_assert_msg(!strcmp(got, "whatsapp/a1,whatsapp/a2,whatsapp/short"), "got %s", got);
    listed("/v1/leases?channel=telegram", got, sizeof got);
    ck_assert_msg(!strcmp(got, "telegram/t1"), "got %s", got);
    listed("/v1/leases?ownerId=nobody", got, sizeof got);
    ck_assert_str_eq(got, "");
    while (clock_ms() <= exp + 50)
        sleep_ms(100);
    listed("/v1/leases?ownerId=wa-1", got, sizeof got);
    ck_assert_msg(!strcmp(got, "telegram/t1,whatsapp/a1,whatsapp/a2"), "got %s", got);
    listed("/v1/leases", got, sizeof got);
    ck_assert_msg(!strcmp(got, "telegram/t1,whatsapp/a1,whatsapp/a2,whatsapp/b1"), "got %s", got);
}
END_TEST

START_TEST(tokens_survive_restart_and_kill9)
{
    json_t *j;

    for (int i = 1; i <= 3; i++) {
        j = acquire("acc1", i % 2 ? "wa-1" : "wa-2", 60000, 200);
        ck_assert_int_eq(token_of(j), i);
        if (i == 2)
            json_decref(lop("force-release", "acc1", NULL, 200));
        else
            json_decref(release("acc1", i % 2 ? "wa-1" : "wa-2", i, 200));
        json_decref(j);
    }
    ck_assert_int_eq(server_stop(&srv), 0);
    server_start(&srv, NULL);
    j = get_lease("acc1");
    ck_assert_int_eq(ji(j, "token"), 3);
    ck_assert_int_eq(ji(j, "transitions"), 3);
    json_decref(j);
    j = acquire("acc1", "wa-1", 60000, 200);
    ck_assert_int_eq(token_of(j), 4);
    json_decref(j);

    /* kill -9 right after the acknowledged grant: the grant survives */
    server_kill(&srv);
    server_start(&srv, NULL);
    j = get_lease("acc1");
    ck_assert_int_eq(ji(j, "token"), 4);
    ck_assert_str_eq(js(j, "ownerId"), "wa-1");
    ck_assert(json_is_true(json_object_get(j, "held")));
    json_decref(j);
    json_decref(acquire("acc1", "wa-2", 60000, 409));    /* still held across the crash */
    json_decref(heartbeat("acc1", "wa-1", 4, 200));
    json_decref(lop("force-release", "acc1", NULL, 200));
    server_kill(&srv);
    server_start(&srv, NULL);
    j = acquire("acc1", "wa-2", 60000, 200);
    ck_assert_int_eq(token_of(j), 5);                    /* never reuses 4 */
    json_decref(j);
}
END_TEST

/* ---- 16 concurrent acquirers ------------------------------------------- */

#define RACERS 16

struct racer {
    pthread_barrier_t *go;
    int n;
    long status;
    json_t *json;
    int rc;
};

static void *
race(void *arg)
{
    struct racer *rc = arg;
    char body[128];
    struct resp r;

    snprintf(body, sizeof body, "{\"ownerId\":\"racer-%d\",\"ttlMs\":60000}", rc->n);
    pthread_barrier_wait(rc->go);
    rc->rc = http_req(&srv, "POST", "/v1/leases/whatsapp/hot/acquire", body, strlen(body), NULL, NULL, &r);
    rc->status = r.status;
    rc->json = r.json;
    r.json = NULL;
    resp_free(&r);
    return NULL;
}

START_TEST(one_of_sixteen_concurrent_acquirers_wins)
{
    pthread_barrier_t go;
    pthread_t th[RACERS];
    struct racer rc[RACERS];
    const char *winner = NULL;
    int won = 0, held = 0;
    json_t *j;

    pthread_barrier_init(&go, NULL, RACERS);
    for (int i = 0; i < RACERS; i++) {
        rc[i] = (struct racer){&go, i, 0, NULL, -1};
        ck_assert_int_eq(pthread_create(&th[i], NULL, race, &rc[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_int_eq(rc[i].rc, 0);
        if (rc[i].status == 200) {
            won++;
            winner = js(json_object_get(rc[i].json, "lease"), "ownerId");
            ck_assert_int_eq(token_of(rc[i].json), 1);
        }
    }
    ck_assert_int_eq(won, 1);
    for (int i = 0; i < RACERS; i++) {
        if (rc[i].status == 409) {
            ck_assert_str_eq(js(err_of(rc[i].json), "code"), "lease_held");
            ck_assert_str_eq(js(err_of(rc[i].json), "currentOwnerId"), winner);
            held++;
        }
    }
    ck_assert_int_eq(held, RACERS - 1);
    j = get_lease("hot");
    ck_assert_str_eq(js(j, "ownerId"), winner);
    ck_assert_int_eq(ji(j, "token"), 1);
    json_decref(j);
    j = CALL(&srv, "GET", "/v1/events?event=whatsapp.lease.acquire.contended&limit=1000", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), RACERS - 1);
    json_decref(j);
    for (int i = 0; i < RACERS; i++)
        json_decref(rc[i].json);
}
END_TEST

/* ---- the model check ----------------------------------------------------- */

#define OWNERS 4
#define STEPS 320
#define MAXTOK 400

static uint32_t seed;

static uint32_t
rnd(uint32_t n)
{
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % n;
}

/* The server's lease as the model believes it, from the answers seen. */
static struct {
    int owner;                  /* -1 when free */
    int64_t token, exp;         /* latest token; its server-reported expiresAt */
    int64_t max_token;          /* highest token ever answered */
    int64_t exp_of[MAXTOK];     /* per token: latest server-reported expiresAt */
    bool dead[MAXTOK];          /* released, forced or superseded */
} m;

/* A 200 granting or renewing token tok to owner o at server time `at`:
 * no other token may still be valid then. */
static void
check_grant(int o, json_t *l, int step)
{
    int64_t tok = ji(l, "token"), at = ji(l, "renewedAt");

    ck_assert_msg(tok >= m.max_token, "step %d: token went back from %lld to %lld", step,
                  (long long)m.max_token, (long long)tok);
    ck_assert_msg(tok <= m.max_token + 1, "step %d: token skipped", step);
    ck_assert_msg(tok < MAXTOK && !m.dead[tok], "step %d: dead token %lld granted again", step, (long long)tok);
    for (int64_t u = 1; u <= m.max_token; u++)
        ck_assert_msg(u == tok || m.exp_of[u] <= at,
                      "step %d: token %lld valid until %lld overlaps token %lld renewed at %lld", step,
                      (long long)u, (long long)m.exp_of[u], (long long)tok, (long long)at);
    if (tok > m.max_token && m.max_token > 0)
        m.dead[m.max_token] = true;      /* superseded */
    m.max_token = tok;
    m.owner = o;
    m.token = tok;
    m.exp = m.exp_of[tok] = ji(l, "expiresAt");
}

START_TEST(random_protocol_never_overlaps)
{
    static const char *const names[OWNERS] = {"own-a", "own-b", "own-c", "own-d"};
    int64_t believed[OWNERS] = {0};
    int grants = 0, refusals = 0, sleeps = 0;

    seed = 20240611u;
    memset(&m, 0, sizeof m);
    m.owner = -1;
    for (int step = 0; step < STEPS; step++) {
        int op = (int)rnd(100), o = (int)rnd(OWNERS);
        int64_t before = clock_ms(), after;
        struct resp r;
        char body[160];
        const char *path;

        if (op < 3) {
            /* sleep past the current expiry (ttl <= 2 s keeps it short) */
            if (m.owner >= 0)
                while (clock_ms() <= m.exp + 20)
                    sleep_ms(50);
            sleeps++;
            continue;
        }
        if (op < 6) {
            /* sleep into the last moments of the grant, where an early
             * expiry would let a second owner in */
            int64_t until = m.exp - 100 - rnd(300);
            if (m.owner >= 0 && until > clock_ms())
                sleep_ms(until - clock_ms());
            sleeps++;
            continue;
        }
        if (op < 40) {
            snprintf(body, sizeof body, "{\"ownerId\":\"%s\",\"ttlMs\":%u}", names[o], 1000 + rnd(1001));
            path = "/v1/leases/whatsapp/prop/acquire";
        } else if (op < 75) {
            /* the owner's believed token, sometimes a stale or foreign one */
            int64_t tok = rnd(5) ? believed[o] : (m.token > 1 ? (int64_t)rnd((uint32_t)m.token) + 1 : 1);
            snprintf(body, sizeof body, "{\"ownerId\":\"%s\",\"token\":%lld}", names[o],
                     (long long)(tok ? tok : 1));
            path = "/v1/leases/whatsapp/prop/heartbeat";
        } else if (op < 92) {
            snprintf(body, sizeof body, "{\"ownerId\":\"%s\",\"token\":%lld}", names[o],
                     (long long)(believed[o] ? believed[o] : 1));
            path = "/v1/leases/whatsapp/prop/release";
        } else {
            snprintf(body, sizeof body, "{}");
            path = "/v1/leases/whatsapp/prop/force-release";
        }
        ck_assert_int_eq(http_req(&srv, "POST", path, body, strlen(body), NULL, NULL, &r), 0);
        after = clock_ms();
        {
            /* server time of the write lies in [before, after] */
            bool sure_held = m.owner >= 0 && after < m.exp;
            bool sure_expired = m.owner >= 0 && before >= m.exp;
            json_t *l = json_object_get(r.json, "lease"), *e = err_of(r.json);
            int64_t tok_sent = 0;
            const char *tp = strstr(body, "\"token\":");

            if (tp)
                tok_sent = atoll(tp + 8);
            ck_assert_msg(r.status == 200 || r.status == 409, "step %d: %s -> %ld %s", step, path, r.status,
                          r.body);
            if (strstr(path, "/acquire")) {
                if (m.owner == o || m.owner < 0 || sure_expired)
                    ck_assert_msg(r.status == 200, "step %d: acquire refused: %s", step, r.body);
                else if (sure_held)
                    ck_assert_msg(r.status == 409, "step %d: acquire of a held lease granted", step);
                if (r.status == 200) {
                    int64_t tok = ji(l, "token");
                    if (m.owner == o)
                        ck_assert_int_eq(tok, m.token);          /* renewal */
                    else
                        ck_assert_int_eq(tok, m.max_token + 1);  /* new grant */
                    if (m.owner == o && sure_expired)
                        ck_assert(json_is_true(json_object_get(r.json, "renewedAfterExpiry")));
                    check_grant(o, l, step);
                    believed[o] = tok;
                    grants++;
                } else {
                    ck_assert_str_eq(js(e, "code"), "lease_held");
                    ck_assert_str_eq(js(e, "currentOwnerId"), names[m.owner]);
                    ck_assert_int_eq(ji(e, "expiresAt"), m.exp);
                    refusals++;
                }
            } else if (!strstr(path, "/force-release")) {    /* heartbeat or release */
                bool holder = m.owner == o && tok_sent == m.token;
                ck_assert_msg(r.status == (holder ? 200 : 409), "step %d: %s %s -> %ld %s", step, path, body,
                              r.status, r.body);
                if (r.status == 409) {
                    ck_assert_str_eq(js(e, "code"), "lease_lost");
                    refusals++;
                } else if (strstr(path, "/heartbeat")) {
                    ck_assert_int_eq(ji(l, "token"), tok_sent);
                    if (sure_expired)
                        ck_assert(json_is_true(json_object_get(r.json, "renewedAfterExpiry")));
                    check_grant(o, l, step);
                    grants++;
                } else {
                    ck_assert(json_is_null(json_object_get(l, "ownerId")));
                    m.dead[m.token] = true;
                    m.exp_of[m.token] = m.exp = ji(l, "expiresAt");
                    m.owner = -1;
                }
            } else {
                ck_assert_int_eq(r.status, 200);
                ck_assert(json_is_boolean(json_object_get(r.json, "released")));
                ck_assert_int_eq(json_is_true(json_object_get(r.json, "released")), m.owner >= 0);
                if (m.max_token) {
                    ck_assert_int_eq(ji(l, "token"), m.max_token);
                    ck_assert(json_is_null(json_object_get(l, "ownerId")));
                    m.dead[m.token] = true;
                    m.exp_of[m.token] = m.exp = ji(l, "expiresAt");
                }
                m.owner = -1;
            }
        }
        resp_free(&r);
    }
    /* the sequence exercised every branch */
    ck_assert_int_gt(grants, 50);
    ck_assert_int_gt(refusals, 50);
    ck_assert_int_gt(sleeps, 3);
    ck_assert_int_gt(m.max_token, 10);
}
END_TEST

/* ---- events ---------------------------------------------------------------- */

/* the newest event named name, with its count in *n */
static json_t *
last_event(const char *name, int *n)
{
    char path[200];
    json_t *j, *e;

    snprintf(path, sizeof path, "/v1/events?event=%s&limit=1000", name);
    j = CALL(&srv, "GET", path, NULL, 200);
    *n = (int)json_array_size(json_object_get(j, "events"));
    e = json_incref(json_array_get(json_object_get(j, "events"), 0));
    json_decref(j);
    return e;
}

START_TEST(lease_events_recorded)
{
    json_t *e, *j;
    int n;

    json_decref(acquire("ev", "wa-1", 60000, 200));
    json_decref(acquire("ev", "wa-1", 60000, 200));      /* renewal: no event */
    json_decref(acquire("ev", "wa-2", 60000, 409));
    json_decref(heartbeat("ev", "wa-2", 1, 409));
    json_decref(release("ev", "wa-1", 1, 200));
    json_decref(acquire("ev", "wa-2", 60000, 200));
    json_decref(lop("force-release", "ev", NULL, 200));

    e = last_event("whatsapp.lease.acquire.success", &n);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(js(e, "accountId"), "ev");
    ck_assert_str_eq(js(e, "ownerId"), "wa-2");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-2");
    ck_assert_int_eq(ji(e, "token"), 2);
    json_decref(e);
    e = last_event("whatsapp.lease.acquire.contended", &n);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(js(e, "ownerId"), "wa-2");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-1");
    ck_assert_int_eq(ji(e, "token"), 1);
    json_decref(e);
    e = last_event("whatsapp.lease.heartbeat.lost", &n);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(js(e, "ownerId"), "wa-2");
    ck_assert_str_eq(js(e, "currentOwnerId"), "wa-1");
    ck_assert_int_eq(ji(e, "currentToken"), 1);
    json_decref(e);
    e = last_event("whatsapp.lease.released", &n);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(js(e, "ownerId"), "wa-1");
    ck_assert_int_eq(ji(e, "token"), 1);
    json_decref(e);
    e = last_event("whatsapp.lease.force_released", &n);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(js(e, "ownerId"), "wa-2");
    ck_assert(json_is_null(json_object_get(e, "currentOwnerId")));
    ck_assert_int_eq(ji(e, "token"), 2);
    json_decref(e);

    j = CALL(&srv, "GET", "/v1/events?event=whatsapp.lease.*&limit=1000", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 6);
    json_decref(j);
    ck_assert_int_ge(server_log_count(&srv, "\"event\":\"whatsapp.lease.acquire.contended\""), 1);
}
END_TEST

/* ---- bad input ---------------------------------------------------------------- */

/* path + raw body must be refused 400 with a message naming field */
static void
refused(const char *method, const char *path, const char *body, const char *field)
{
    struct resp r;
    const char *msg;

    ck_assert_int_eq(http_req(&srv, method, path, body, body ? strlen(body) : 0, NULL, NULL, &r), 0);
    ck_assert_msg(r.status == 400, "%s %s %s: %ld %s", method, path, body ? body : "", r.status, r.body);
    msg = js(err_of(r.json), "message");
    ck_assert_str_eq(js(err_of(r.json), "code"), "bad_request");
    ck_assert_msg(msg && strstr(msg, field), "%s %s %s: message does not name '%s': %s", method, path,
                  body ? body : "", field, r.body);
    resp_free(&r);
}

static char *
state_dump(void)
{
    json_t *a = get_lease("acc1"), *b = CALL(&srv, "GET", "/v1/events?limit=1000", NULL, 200);
    json_t *c = CALL(&srv, "GET", "/v1/leases", NULL, 200);
    json_t *all = json_pack("{s:o, s:o, s:o}", "lease", a, "events", b, "leases", c);
    char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);

    json_decref(all);
    return s;
}

START_TEST(lease_bad_input_refused_without_change)
{
    char owner201[202], acc101[102], path[300], body[400];
    char *before, *after;
    json_t *j;

    memset(owner201, 'o', 201);
    owner201[201] = 0;
    memset(acc101, 'a', 101);
    acc101[101] = 0;
    json_decref(acquire("acc1", "wa-1", 60000, 200));
    before = state_dump();

    static const char *const acq = "/v1/leases/whatsapp/acc1/acquire";
    refused("POST", acq, "{\"ttlMs\":5000}", "ownerId");
    refused("POST", acq, "{\"ownerId\":\"\",\"ttlMs\":5000}", "ownerId");
    refused("POST", acq, "{\"ownerId\":5,\"ttlMs\":5000}", "ownerId");
    snprintf(body, sizeof body, "{\"ownerId\":\"%s\",\"ttlMs\":5000}", owner201);
    refused("POST", acq, body, "ownerId");
    refused("POST", acq, "{\"ownerId\":\"wa-2\"}", "ttlMs");
    refused("POST", acq, "{\"ownerId\":\"wa-2\",\"ttlMs\":999}", "ttlMs");
    refused("POST", acq, "{\"ownerId\":\"wa-2\",\"ttlMs\":86400001}", "ttlMs");
    refused("POST", acq, "{\"ownerId\":\"wa-2\",\"ttlMs\":\"5000\"}", "ttlMs");
    refused("POST", acq, "{\"ownerId\":\"wa-2\",\"ttlMs\":1500.5}", "ttlMs");
    refused("POST", acq, NULL, "ownerId");
    refused("POST", "/v1/leases/what%20sapp/acc1/acquire", "{\"ownerId\":\"wa-2\",\"ttlMs\":5000}", "channel");
    refused("POST", "/v1/leases/whatsapp/acc%231/acquire", "{\"ownerId\":\"wa-2\",\"ttlMs\":5000}", "accountId");
    snprintf(path, sizeof path, "/v1/leases/whatsapp/%s/acquire", acc101);
    refused("POST", path, "{\"ownerId\":\"wa-2\",\"ttlMs\":5000}", "accountId");

    static const char *const hb = "/v1/leases/whatsapp/acc1/heartbeat";
    refused("POST", hb, "{\"ownerId\":\"wa-1\"}", "token");
    refused("POST", hb, "{\"ownerId\":\"wa-1\",\"token\":\"1\"}", "token");
    refused("POST", hb, "{\"ownerId\":\"wa-1\",\"token\":0}", "token");
    refused("POST", hb, "{\"token\":1}", "ownerId");
    refused("POST", hb, "{\"ownerId\":\"wa-1\",\"token\":1,\"ttlMs\":10}", "ttlMs");
    refused("POST", hb, "{\"ownerId\":\"wa-1\",\"token\":1,\"ttlMs\":true}", "ttlMs");

    static const char *const rel = "/v1/leases/whatsapp/acc1/release";
    refused("POST", rel, "{\"ownerId\":\"wa-1\"}", "token");
    refused("POST", rel, "{\"token\":1}", "ownerId");
    refused("POST", rel, "{\"ownerId\":[],\"token\":1}", "ownerId");
    refused("POST", "/v1/leases/bad!chan/acc1/release", "{\"ownerId\":\"wa-1\",\"token\":1}", "channel");
    refused("POST", "/v1/leases/whatsapp/acc%3F1/force-release", "{}", "accountId");
    refused("GET", "/v1/leases/whatsapp/acc%201", NULL, "accountId");
    refused("GET", "/v1/leases?channel=a%20b", NULL, "channel");
    snprintf(path, sizeof path, "/v1/leases?ownerId=%s", owner201);
    refused("GET", path, NULL, "ownerId");

    after = state_dump();
    ck_assert_str_eq(before, after);
    free(before);
    free(after);

    /* the bounds themselves are accepted */
    owner201[200] = 0;
    j = lop("acquire", "acc1", json_pack("{s:s, s:i}", "ownerId", owner201, "ttlMs", 1000), 409);
    json_decref(j);
    j = acquire("edge", owner201, 86400000, 200);
    ck_assert_str_eq(js(json_object_get(j, "lease"), "ownerId"), owner201);
    json_decref(j);
    acc101[100] = 0;
    j = acquire(acc101, "wa-1", 1000, 200);
    json_decref(j);
    j = CALL(&srv, "POST", "/v1/leases/wa.b_c:d@e+f-g/x/acquire",
             json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 1000), 200);
    ck_assert_str_eq(js(json_object_get(j, "lease"), "channel"), "wa.b_c:d@e+f-g");
    json_decref(j);
}
END_TEST

/* ---- accounts -------------------------------------------------------------- */

static void
account_ids(const char *query, char *buf, size_t n)
{
    char path[200];
    json_t *j, *a;
    size_t i;

    snprintf(path, sizeof path, "/v1/accounts%s", query);
    j = CALL(&srv, "GET", path, NULL, 200);
    buf[0] = 0;
    json_array_foreach(json_object_get(j, "accounts"), i, a)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s/%s", i ? "," : "", js(a, "channel"),
                 js(a, "accountId"));
    json_decref(j);
}

START_TEST(accounts_registry)
{
    char got[512];
    json_t *j, *a;
    int64_t created;
    int n;

    j = CALL(&srv, "PUT", "/v1/accounts/whatsapp/default",
             json_pack("{s:b, s:{s:s, s:i}}", "enabled", 1, "config", "phone", "+15550001", "n", 2), 200);
    a = json_object_get(j, "account");
    ck_assert_str_eq(js(a, "channel"), "whatsapp");
    ck_assert_str_eq(js(a, "accountId"), "default");
    ck_assert(json_is_true(json_object_get(a, "enabled")));
    ck_assert_str_eq(js(json_object_get(a, "config"), "phone"), "+15550001");
    created = ji(a, "createdAt");
    ck_assert_int_eq(ji(a, "updatedAt"), created);
    json_decref(j);
    json_decref(CALL(&srv, "PUT", "/v1/accounts/whatsapp/second", json_pack("{s:b}", "enabled", 0), 200));
    json_decref(CALL(&srv, "PUT", "/v1/accounts/telegram/bot1", json_pack("{s:b}", "enabled", 1), 200));

    sleep_ms(5);
    /* disable without config: config kept, createdAt kept */
    j = CALL(&srv, "PUT", "/v1/accounts/whatsapp/default", json_pack("{s:b}", "enabled", 0), 200);
    a = json_object_get(j, "account");
    ck_assert(json_is_false(json_object_get(a, "enabled")));
    ck_assert_str_eq(js(json_object_get(a, "config"), "phone"), "+15550001");
    ck_assert_int_eq(ji(a, "createdAt"), created);
    ck_assert_int_gt(ji(a, "updatedAt"), created);
    json_decref(j);
    /* with config: replaced */
    j = CALL(&srv, "PUT", "/v1/accounts/whatsapp/default",
             json_pack("{s:b, s:{}}", "enabled", 1, "config"), 200);
    ck_assert_int_eq(json_object_size(json_object_get(json_object_get(j, "account"), "config")), 0);
    json_decref(j);

    j = CALL(&srv, "GET", "/v1/accounts/whatsapp/default", NULL, 200);
    ck_assert_str_eq(js(j, "accountId"), "default");
    ck_assert(json_is_true(json_object_get(j, "enabled")));
    json_decref(j);
    json_decref(CALL(&srv, "GET", "/v1/accounts/whatsapp/nope", NULL, 404));

    account_ids("", got, sizeof got);
    ck_assert_str_eq(got, "telegram/bot1,whatsapp/default,whatsapp/second");
    account_ids("?enabled=true", got, sizeof got);
    ck_assert_str_eq(got, "telegram/bot1,whatsapp/default");
    account_ids("?enabled=true&channel=whatsapp", got, sizeof got);
    ck_assert_str_eq(got, "whatsapp/default");
    account_ids("?enabled=false", got, sizeof got);
    ck_assert_str_eq(got, "whatsapp/second");
    account_ids("?channel=whatsapp", got, sizeof got);
    ck_assert_str_eq(got, "whatsapp/default,whatsapp/second");
    account_ids("?channel=signal", got, sizeof got);
    ck_assert_str_eq(got, "");

    j = CALL(&srv, "DELETE", "/v1/accounts/whatsapp/second", NULL, 200);
    ck_assert(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    json_decref(CALL(&srv, "DELETE", "/v1/accounts/whatsapp/second", NULL, 404));
    json_decref(CALL(&srv, "GET", "/v1/accounts/whatsapp/second", NULL, 404));
    account_ids("", got, sizeof got);
    ck_assert_str_eq(got, "telegram/bot1,whatsapp/default");

    {
        json_t *e = last_event("account.updated", &n);
        ck_assert_int_eq(n, 5);
        ck_assert_str_eq(js(e, "accountId"), "default");
        ck_assert_ptr_null(json_object_get(e, "config"));    /* config may hold credentials */
        json_decref(e);
        e = last_event("account.deleted", &n);
        ck_assert_int_eq(n, 1);
        ck_assert_str_eq(js(e, "accountId"), "second");
        json_decref(e);
    }
}
END_TEST

START_TEST(accounts_bad_input_refused_without_change)
{
    char acc101[102], path[200];
    json_t *j;
    char *before, *after;

    memset(acc101, 'a', 101);
    acc101[101] = 0;
    json_decref(CALL(&srv, "PUT", "/v1/accounts/whatsapp/default",
                     json_pack("{s:b, s:{s:i}}", "enabled", 1, "config", "k", 1), 200));
    j = CALL(&srv, "GET", "/v1/accounts", NULL, 200);
    before = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);

    refused("PUT", "/v1/accounts/whatsapp/default", "{}", "enabled");
    refused("PUT", "/v1/accounts/whatsapp/default", NULL, "enabled");
    refused("PUT", "/v1/accounts/whatsapp/default", "{\"enabled\":\"yes\"}", "enabled");
    refused("PUT", "/v1/accounts/whatsapp/default", "{\"enabled\":1}", "enabled");
    refused("PUT", "/v1/accounts/whatsapp/default", "{\"enabled\":false,\"config\":[1]}", "config");
    refused("PUT", "/v1/accounts/whatsapp/default", "{\"enabled\":false,\"config\":\"x\"}", "config");
    refused("PUT", "/v1/accounts/what%20sapp/default", "{\"enabled\":false}", "channel");
    snprintf(path, sizeof path, "/v1/accounts/whatsapp/%s", acc101);
    refused("PUT", path, "{\"enabled\":false}", "accountId");
    refused("DELETE", "/v1/accounts/whatsapp/de%25fault", NULL, "accountId");
    refused("GET", "/v1/accounts/whatsapp/de%20fault", NULL, "accountId");
    refused("GET", "/v1/accounts?enabled=maybe", NULL, "enabled");
    refused("GET", "/v1/accounts?channel=%3Cx%3E", NULL, "channel");

    j = CALL(&srv, "GET", "/v1/accounts", NULL, 200);
    after = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    j = CALL(&srv, "GET", "/v1/events?event=account.updated", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
}
END_TEST

Suite *
suite_leases(void)
{
    Suite *s = suite_create("leases");
    TCase *tc = tcase_create("leases");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, acquire_renew_contend_release_force);
    tcase_add_test(tc, expiry_lets_another_owner_take_over);
    tcase_add_test(tc, renewal_after_expiry_keeps_token);
    tcase_add_test(tc, list_by_owner_only_held);
    tcase_add_test(tc, tokens_survive_restart_and_kill9);
    tcase_add_test(tc, one_of_sixteen_concurrent_acquirers_wins);
    tcase_add_test(tc, random_protocol_never_overlaps);
    tcase_add_test(tc, lease_events_recorded);
    tcase_add_test(tc, lease_bad_input_refused_without_change);
    tcase_add_test(tc, accounts_registry);
    tcase_add_test(tc, accounts_bad_input_refused_without_change);
    suite_add_tcase(s, tc);
    return s;
}
