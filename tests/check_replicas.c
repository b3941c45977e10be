/* check_replicas.c -- several batond on one PostgreSQL database (suite
 * replicas): claims exactly once across replicas, a long-poll on one woken
 * by a write on another, one lease holder among contenders, the database's
 * clock deciding ownership whatever a replica's own clock says, kill -9 of
 * replicas and a restart of PostgreSQL under load, and the maintenance
 * moving to another replica when its maintainer dies.
 *
 * Each test gets a fresh schema of the run's throwaway PostgreSQL
 * (pg_test_url) and starts three batond on it, each in a temp dir of its
 * own for its logs. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"

#define REPLICAS 3

static double
ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void
pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* The replicas of one test: their database and their extra settings. */
struct cluster {
    struct server s[REPLICAS];
    char db[1024];
    const char *env[REPLICAS][8];
};

/* Start replica i of c (again, on its own dir, after a kill). */
static void
replica_start(struct cluster *c, int i)
{
    server_start(&c->s[i], c->env[i]);
}

/* Three replicas on a fresh schema; skews: each replica's
 * BATON_TEST_CLOCK_SKEW_MS (NULL: none); more: settings for all. */
static void
cluster_start(struct cluster *c, const char *const *skews, const char *const *more)
{
    static char dbenv[1100];
    static char skewenv[REPLICAS][64];

    memset(c, 0, sizeof *c);
    snprintf(c->db, sizeof c->db, "%s", pg_test_url());
    snprintf(dbenv, sizeof dbenv, "BATON_DB=%s", c->db);
    for (int i = 0; i < REPLICAS; i++) {
        int k = 0;

        c->env[i][k++] = dbenv;
        c->env[i][k++] = "BATON_LEASED_CHANNELS=whatsapp";
        if (skews && skews[i]) {
            snprintf(skewenv[i], sizeof skewenv[i], "BATON_TEST_CLOCK_SKEW_MS=%s", skews[i]);
            c->env[i][k++] = skewenv[i];
        }
        for (int j = 0; more && more[j] && k < 7; j++)
            c->env[i][k++] = more[j];
        c->env[i][k] = NULL;
        replica_start(c, i);
    }
}

static void
cluster_stop(struct cluster *c)
{
    for (int i = 0; i < REPLICAS; i++)
        server_cleanup(&c->s[i]);
}

/* POST body (printf format) to s: the status (0 on a transport error),
 * the parsed answer in *out when out is not NULL. */
static long
post(struct server *s, const char *path, json_t **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static long
post(struct server *s, const char *path, json_t **out, const char *fmt, ...)
{
    char body[4096];
    struct resp r;
    va_list ap;
    long status;

    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (out)
        *out = NULL;
    if (http_req(s, "POST", path, body, strlen(body), NULL, NULL, &r) < 0)
        return 0;
    status = r.status;
    if (out) {
        *out = r.json;
        r.json = NULL;
    }
    resp_free(&r);
    return status;
}

static long
get(struct server *s, const char *path, json_t **out)
{
    struct resp r;
    long status;

    if (out)
        *out = NULL;
    if (http_req(s, "GET", path, NULL, 0, NULL, NULL, &r) < 0)
        return 0;
    status = r.status;
    if (out) {
        *out = r.json;
        r.json = NULL;
    }
    resp_free(&r);
    return status;
}

/* The id of the job an answer {job} holds (ids are strings in JSON). */
static json_int_t
job_id(json_t *a)
{
    const char *id = json_string_value(json_object_get(json_object_get(a, "job"), "id"));

    return id ? atoll(id) : 0;
}

static const char *
job_str(json_t *a, const char *field)
{
    return json_string_value(json_object_get(json_object_get(a, "job"), field));
}

/* The status of job id as replica s shows it ("" when it cannot say). */
static void
job_status(struct server *s, json_int_t id, char *buf, size_t n)
{
    char path[64];
    json_t *a;

    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
    buf[0] = 0;
    if (get(s, path, &a) == 200 && job_str(a, "status"))
        snprintf(buf, n, "%s", job_str(a, "status"));
    json_decref(a);
}

/* Which replica /health calls the maintainer, waiting up to ms for one;
 * -1 when none did. Fails the test when two do at the same time. */
static int
maintainer_of(struct cluster *c, int ms)
{
    for (double until = ms_now() + ms; ms_now() < until; pause_ms(50)) {
        int found = -1;

        for (int i = 0; i < REPLICAS; i++) {
            json_t *h;

            if (!c->s[i].pid)
                continue;
            if (get(&c->s[i], "/health", &h) == 200 && json_is_true(json_object_get(h, "maintainer"))) {
                ck_assert_msg(found < 0, "replicas %d and %d are both the maintainer", found, i);
                found = i;
            }
            json_decref(h);
        }
        if (found >= 0)
            return found;
    }
    return -1;
}

/* ---- claims exactly once --------------------------------------------------- */

#define JOBS 500
#define CLAIMERS 8

struct claims {
    struct cluster *c;
    _Atomic int taken[JOBS + 1];        /* by job id (ids start at 1 in a fresh schema) */
    _Atomic int done, bad;
    json_int_t first;
};

struct claimer {
    struct claims *cl;
    int n;
};

static void *
claimer_main(void *arg)
{
    struct claimer *me = arg;
    struct claims *cl = me->cl;
    struct server *s = &cl->c->s[me->n % REPLICAS];

    for (int empty = 0; empty < 3 && cl->bad == 0;) {
        json_t *a;
        long st = post(s, "/v1/jobs/claim", &a, "{\"workerId\":\"w%d\",\"queue\":\"once\",\"lockMs\":60000}",
                       me->n);
        if (st == 204) {
            empty++;
            pause_ms(20);
        } else if (st == 200) {
            json_int_t id = job_id(a) - cl->first;
            char path[64];

            empty = 0;
            if (id < 0 || id >= JOBS || cl->taken[id]++ != 0) {
                fprintf(stderr, "claimer %d: job %lld claimed again\n", me->n, (long long)job_id(a));
                cl->bad++;
            }
            snprintf(path, sizeof path, "/v1/jobs/%lld/complete", (long long)job_id(a));
            if ((st = post(s, path, NULL, "{\"workerId\":\"w%d\",\"claimToken\":\"%s\"}", me->n,
                           job_str(a, "claimToken"))) == 200)
                cl->done++;
            else {
                fprintf(stderr, "claimer %d: complete answered %ld\n", me->n, st);
                cl->bad++;
            }
        } else {
            fprintf(stderr, "claimer %d: claim answered %ld\n", me->n, st);
            cl->bad++;
        }
        json_decref(a);
    }
    return NULL;
}

START_TEST(claims_once_across_replicas)
{
    struct cluster c;
    struct claims *cl = calloc(1, sizeof *cl);
    struct claimer me[CLAIMERS];
    pthread_t th[CLAIMERS];

    cluster_start(&c, NULL, NULL);
    cl->c = &c;
    cl->first = -1;
    /* 500 jobs, enqueued in batches of 50 spread over the replicas */
    for (int b = 0; b < JOBS / 50; b++) {
        char body[4096];
        size_t len = (size_t)snprintf(body, sizeof body, "{\"jobs\":[");
        json_t *a;

        for (int k = 0; k < 50; k++)
            len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"queue\":\"once\",\"payload\":%d}",
                                    k ? "," : "", b * 50 + k);
        snprintf(body + len, sizeof body - len, "]}");
        ck_assert_int_eq(post(&c.s[b % REPLICAS], "/v1/jobs/batch", &a, "%s", body), 201);
        if (cl->first < 0)
            cl->first = job_id(json_array_get(json_object_get(a, "jobs"), 0));
        json_decref(a);
    }
    for (int i = 0; i < CLAIMERS; i++) {
        me[i] = (struct claimer){cl, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, claimer_main, &me[i]), 0);
    }
    for (int i = 0; i < CLAIMERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(cl->bad, 0);
    ck_assert_int_eq(cl->done, JOBS);
    for (int i = 0; i < JOBS; i++)
        ck_assert_msg(cl->taken[i] == 1, "job %d claimed %d times", i, cl->taken[i]);
    free(cl);
    cluster_stop(&c);
}
END_TEST

/* ---- wake-ups across processes --------------------------------------------- */

struct poll_claim {
    struct server *s;
    const char *queue;
    int wait_ms;
    long status;
    double answered;            /* ms_now() at the answer */
    json_t *job;
};

static void *
poll_claim_main(void *arg)
{
    struct poll_claim *p = arg;

    p->status = post(p->s, "/v1/jobs/claim", &p->job, "{\"workerId\":\"lp\",\"queue\":\"%s\",\"waitMs\":%d}",
                     p->queue, p->wait_ms);
    p->answered = ms_now();
    return NULL;
}

/* A claim long-polling on a parks; an enqueue on b wakes it. Returns the
 * latency from the enqueue's answer to the claim's (ms). */
static double
woken_across(struct server *a, struct server *b, const char *queue)
{
    struct poll_claim p = {a, queue, 10000, 0, 0, NULL};
    pthread_t th;
    double enqueued;

    ck_assert_int_eq(pthread_create(&th, NULL, poll_claim_main, &p), 0);
    pause_ms(500);                      /* parked on a by now */
    ck_assert_int_eq(post(b, "/v1/jobs", NULL, "{\"queue\":\"%s\",\"payload\":1}", queue), 201);
    enqueued = ms_now();
    pthread_join(th, NULL);
    ck_assert_int_eq(p.status, 200);
    json_decref(p.job);
    return p.answered - enqueued;
}

START_TEST(long_poll_woken_by_another_replica)
{
    struct cluster c;
    double worst = 0;

    cluster_start(&c, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        char queue[16];
        double ms;

        snprintf(queue, sizeof queue, "lp%d", i);
        ms = woken_across(&c.s[i], &c.s[(i + 1) % REPLICAS], queue);
        printf("replicas: a claim long-polling on replica %d woken by an enqueue on replica %d in %.1f ms\n",
               i, (i + 1) % REPLICAS, ms);
        if (ms > worst)
            worst = ms;
    }
    ck_assert_msg(worst < 1000, "a long-poll took %.0f ms to wake", worst);
    cluster_stop(&c);
}
END_TEST

/* Without LISTEN (a pooler in transaction mode) the periodic re-check
 * still wakes a long-poll well before its deadline. */
START_TEST(poll_only_still_wakes)
{
    static const char *const more[] = {"BATON_PG_POLL_ONLY=1", NULL};
    struct cluster c;
    double ms;

    cluster_start(&c, NULL, more);
    ms = woken_across(&c.s[0], &c.s[1], "po");
    printf("replicas: poll-only, a long-poll woken across replicas in %.1f ms\n", ms);
    ck_assert_msg(ms < 2000, "a poll-only long-poll took %.0f ms to wake", ms);
    ck_assert_int_eq(server_log_count(&c.s[0], "db.listener.poll_only"), 1);
    cluster_stop(&c);
}
END_TEST

/* ---- one lease holder ------------------------------------------------------ */

#define CONTENDERS 16

struct contender {
    struct server *s;
    int n;
    long status;
};

static void *
contender_main(void *arg)
{
    struct contender *me = arg;

    me->status = post(me->s, "/v1/leases/whatsapp/acct/acquire", NULL,
                      "{\"ownerId\":\"owner-%d\",\"ttlMs\":30000}", me->n);
    return NULL;
}

START_TEST(one_lease_holder_among_replicas)
{
    struct cluster c;
    struct contender me[CONTENDERS];
    pthread_t th[CONTENDERS];
    int won = -1, granted = 0;

    cluster_start(&c, NULL, NULL);
    for (int i = 0; i < CONTENDERS; i++) {
        me[i] = (struct contender){&c.s[i % REPLICAS], i, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, contender_main, &me[i]), 0);
    }
    for (int i = 0; i < CONTENDERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(me[i].status == 200 || me[i].status == 409, "contender %d: %ld", i, me[i].status);
        if (me[i].status == 200) {
            granted++;
            won = i;
        }
    }
    ck_assert_int_eq(granted, 1);
    for (int i = 0; i < REPLICAS; i++) {
        char want[32];
        json_t *l;

        snprintf(want, sizeof want, "owner-%d", won);
        ck_assert_int_eq(get(&c.s[i], "/v1/leases/whatsapp/acct", &l), 200);
        ck_assert_str_eq(json_string_value(json_object_get(l, "ownerId")), want);
        json_decref(l);
    }
    cluster_stop(&c);
}
END_TEST

/* ---- the database's clock ------------------------------------------------- */

/* Replica 0's own clock runs 30 s ahead, replica 1's 30 s behind, replica
 * 2's is right: a lease granted for 5 s is held for every one of them, a
 * job locked for 5 s is not taken back early by any, and long-polls wait
 * their waitMs on all three. */
START_TEST(skewed_clocks_do_not_decide)
{
    static const char *const skews[] = {"30000", "-30000", NULL};
    struct cluster c;
    json_t *a;
    json_int_t id;
    const char *token;
    char path[64], status[32], held_token[80];

    cluster_start(&c, skews, NULL);
    ck_assert_int_eq(server_log_count(&c.s[0], "clockSkewMs"), 1);

    /* a lease for 5 s on the right clock: nobody else gets it anywhere */
    ck_assert_int_eq(post(&c.s[2], "/v1/leases/whatsapp/skew/acquire", NULL,
                          "{\"ownerId\":\"right\",\"ttlMs\":5000}"), 200);
    for (int i = 0; i < REPLICAS; i++) {
        json_t *l;

        ck_assert_int_eq(post(&c.s[i], "/v1/leases/whatsapp/skew/acquire", NULL,
                              "{\"ownerId\":\"other-%d\",\"ttlMs\":5000}", i), 409);
        ck_assert_int_eq(get(&c.s[i], "/v1/leases?channel=whatsapp", &l), 200);
        ck_assert_int_eq(json_array_size(json_object_get(l, "leases")), 1);
        json_decref(l);
    }

    /* a job locked for 5 s: not claimable, not requeued, on any replica */
    ck_assert_int_eq(post(&c.s[2], "/v1/jobs", NULL, "{\"queue\":\"skew\",\"payload\":1}"), 201);
    ck_assert_int_eq(post(&c.s[2], "/v1/jobs/claim", &a, "{\"workerId\":\"w\",\"queue\":\"skew\",\"lockMs\":5000}"),
                     200);
    id = job_id(a);
    token = job_str(a, "claimToken");
    snprintf(held_token, sizeof held_token, "%s", token ? token : "");
    json_decref(a);
    for (int i = 0; i < REPLICAS; i++) {
        ck_assert_int_eq(post(&c.s[i], "/v1/jobs/claim", NULL, "{\"workerId\":\"x\",\"queue\":\"skew\"}"), 204);
        ck_assert_int_eq(post(&c.s[i], "/v1/jobs/requeue-stale", &a, "{}"), 200);
        ck_assert_int_eq(json_array_size(json_object_get(a, "requeued")), 0);
        json_decref(a);
    }
    pause_ms(800);                      /* several sweeps, whoever maintains */
    job_status(&c.s[1], id, status, sizeof status);
    ck_assert_str_eq(status, "processing");
    snprintf(path, sizeof path, "/v1/jobs/%lld/heartbeat", (long long)id);
    ck_assert_int_eq(post(&c.s[0], path, NULL, "{\"workerId\":\"w\",\"claimToken\":\"%s\"}", held_token), 200);

    /* long-polls end at their waitMs by the database's clock */
    for (int i = 0; i < REPLICAS; i++) {
        double t0 = ms_now(), took;

        ck_assert_int_eq(post(&c.s[i], "/v1/jobs/claim", NULL,
                              "{\"workerId\":\"x\",\"queue\":\"empty\",\"waitMs\":1500}"), 204);
        took = ms_now() - t0;
        ck_assert_msg(took >= 1300 && took < 6000, "replica %d: a 1500 ms long-poll took %.0f ms", i, took);
    }
    cluster_stop(&c);
}
END_TEST

/* ---- kill -9 under load ------------------------------------------------------ */

#define LOADERS 4
#define MAX_JOBS 20000

struct load {
    struct cluster *c;
    _Atomic bool stop;
    pthread_mutex_t lock;
    json_int_t acked[MAX_JOBS];         /* enqueues answered 201 */
    int nacked;
    _Atomic int completed[MAX_JOBS];    /* by index in acked: acknowledged completions */
    _Atomic int server_errors;          /* 500s, empty bodies */
    _Atomic int unavailable;            /* 503s */
};

static int
acked_index(struct load *l, json_int_t id)
{
    int k = -1;

    pthread_mutex_lock(&l->lock);
    for (int i = l->nacked - 1; i >= 0; i--)
        if (l->acked[i] == id) {
            k = i;
            break;
        }
    pthread_mutex_unlock(&l->lock);
    return k;
}

struct loader {
    struct load *l;
    int n;
};

/* Enqueue, claim (lock 1 s), complete, over a replica that changes at each
 * round; a request that gets no answer is simply not acknowledged. */
static void *
loader_main(void *arg)
{
    struct loader *me = arg;
    struct load *l = me->l;

    for (int round = 0; !l->stop; round++) {
        struct server *s = &l->c->s[(me->n + round) % REPLICAS];
        json_t *a;
        long st;

        if (!s->pid) {
            pause_ms(10);
            continue;
        }
        /* attempts enough for every expiry a job may meet: it must end completed */
        st = post(s, "/v1/jobs", &a, "{\"queue\":\"mixed\",\"payload\":%d,\"maxAttempts\":1000}", round);
        if (st == 201) {
            pthread_mutex_lock(&l->lock);
            if (l->nacked < MAX_JOBS)
                l->acked[l->nacked++] = job_id(a);
            pthread_mutex_unlock(&l->lock);
        } else if (st == 503) {
            l->unavailable++;
            pause_ms(20);
        } else if (st != 0)
            l->server_errors++;
        json_decref(a);
        st = post(s, "/v1/jobs/claim", &a, "{\"workerId\":\"l%d\",\"queue\":\"mixed\",\"lockMs\":1000}", me->n);
        if (st == 200 && round % 5) {  /* one claim in five is left to expire */
            char path[64];
            long cst;
            int k;

            snprintf(path, sizeof path, "/v1/jobs/%lld/complete", (long long)job_id(a));
            cst = post(s, path, NULL, "{\"workerId\":\"l%d\",\"claimToken\":\"%s\"}", me->n,
                       job_str(a, "claimToken"));
            if (cst == 200 && (k = acked_index(l, job_id(a))) >= 0)
                l->completed[k]++;
            else if (cst >= 500 && cst != 503)
                l->server_errors++;
        } else if (st >= 500 && st != 503)
            l->server_errors++;
        json_decref(a);
    }
    return NULL;
}

/* Claim and complete on every replica until queue is empty and nothing is
 * locked any more (waiting out the 1 s locks). */
static void
drain(struct load *l, int within_ms)
{
    double until = ms_now() + within_ms;
    int empty = 0;

    while (empty < 8 && ms_now() < until) {
        struct server *s = &l->c->s[empty % REPLICAS];
        json_t *a;
        long st = post(s, "/v1/jobs/claim", &a, "{\"workerId\":\"drain\",\"queue\":\"mixed\",\"lockMs\":60000,"
                                                "\"waitMs\":300}");
        if (st == 200) {
            char path[64];
            int k;

            empty = 0;
            snprintf(path, sizeof path, "/v1/jobs/%lld/complete", (long long)job_id(a));
            ck_assert_int_eq(post(s, path, NULL, "{\"workerId\":\"drain\",\"claimToken\":\"%s\"}",
                                  job_str(a, "claimToken")), 200);
            if ((k = acked_index(l, job_id(a))) >= 0)
                l->completed[k]++;
        } else {
            ck_assert_int_eq(st, 204);
            empty++;
        }
        json_decref(a);
    }
}

/* Every acknowledged job is there, completed, and no completion of it was
 * acknowledged twice (one that committed as its replica died went
 * unacknowledged: 0 is fine). */
static void
check_every_ack(struct load *l)
{
    char status[32];

    for (int i = 0; i < l->nacked; i++) {
        job_status(&l->c->s[i % REPLICAS], l->acked[i], status, sizeof status);
        ck_assert_msg(!strcmp(status, "completed"), "acknowledged job %lld is '%s'", (long long)l->acked[i],
                      status);
        ck_assert_msg(l->completed[i] <= 1, "job %lld completed %d times", (long long)l->acked[i],
                      l->completed[i]);
    }
}

START_TEST(kill9_replicas_under_load)
{
    struct cluster c;
    struct load *l = calloc(1, sizeof *l);
    struct loader me[LOADERS];
    pthread_t th[LOADERS];

    cluster_start(&c, NULL, NULL);
    l->c = &c;
    pthread_mutex_init(&l->lock, NULL);
    for (int i = 0; i < LOADERS; i++) {
        me[i] = (struct loader){l, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, loader_main, &me[i]), 0);
    }
    for (int round = 0; round < 10; round++) {
        int victim = round % REPLICAS;

        pause_ms(400);
        server_kill(&c.s[victim]);
        pause_ms(100);
        replica_start(&c, victim);
    }
    pause_ms(300);
    l->stop = true;
    for (int i = 0; i < LOADERS; i++)
        pthread_join(th[i], NULL);
    printf("replicas: kill -9 x10 under load: %d jobs acknowledged, %d answers 503\n", l->nacked,
           (int)l->unavailable);
    ck_assert_int_eq(l->server_errors, 0);
    ck_assert_int_gt(l->nacked, 50);
    /* the claims left to expire (1 s locks) are claimable again */
    drain(l, 20000);
    check_every_ack(l);
    pthread_mutex_destroy(&l->lock);
    free(l);
    cluster_stop(&c);
}
END_TEST

/* ---- PostgreSQL restarted under load ------------------------------------------ */

START_TEST(postgres_restart_under_load)
{
    struct cluster c;
    struct load *l = calloc(1, sizeof *l);
    struct loader me[LOADERS];
    pthread_t th[LOADERS];
    double until;
    int back;

    cluster_start(&c, NULL, NULL);
    l->c = &c;
    pthread_mutex_init(&l->lock, NULL);
    for (int i = 0; i < LOADERS; i++) {
        me[i] = (struct loader){l, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, loader_main, &me[i]), 0);
    }
    pause_ms(500);
    ck_assert_int_eq(pg_test_ctl("stop -m fast"), 0);
    pause_ms(1000);
    ck_assert_int_eq(pg_test_ctl("start"), 0);
    /* every replica serves writes again, without a restart */
    until = ms_now() + 15000;
    for (back = 0; back < REPLICAS && ms_now() < until;) {
        long st = post(&c.s[back], "/v1/jobs", NULL, "{\"queue\":\"after\",\"payload\":1}");

        if (st == 201)
            back++;
        else if (ms_now() + 100 >= until)
            fprintf(stderr, "replica %d still answers %ld after 15 s\n", back, st);
        else
            pause_ms(100);
    }
    pause_ms(300);
    l->stop = true;
    for (int i = 0; i < LOADERS; i++)
        pthread_join(th[i], NULL);
    printf("replicas: PostgreSQL restarted under load: %d jobs acknowledged, %d answers 503\n", l->nacked,
           (int)l->unavailable);
    ck_assert_int_eq(back, REPLICAS);
    ck_assert_int_gt(l->unavailable, 0);
    ck_assert_int_eq(l->server_errors, 0);
    for (int i = 0; i < REPLICAS; i++)
        ck_assert_int_gt(c.s[i].pid, 0);
    /* the listening connections are back: wake-ups cross replicas again */
    for (int i = 0; i < REPLICAS; i++) {
        for (until = ms_now() + 5000;
             !server_log_count(&c.s[i], "db.listener.connected") && ms_now() < until;)
            pause_ms(50);
        ck_assert_int_eq(server_log_count(&c.s[i], "db.listener.connected"), 1);
    }
    ck_assert_double_lt(woken_across(&c.s[0], &c.s[1], "after"), 1000);
    drain(l, 20000);
    check_every_ack(l);
    pthread_mutex_destroy(&l->lock);
    free(l);
    cluster_stop(&c);
}
END_TEST

/* ---- the maintainer ----------------------------------------------------------- */

START_TEST(maintenance_moves_when_the_maintainer_dies)
{
    struct cluster c;
    json_t *a;
    json_int_t id;
    char status[32];
    int m, next, other;
    double t0;

    cluster_start(&c, NULL, NULL);
    m = maintainer_of(&c, 5000);
    ck_assert_int_ge(m, 0);
    for (double until = ms_now() + 2000;
         !server_log_count(&c.s[m], "db.maintainer.elected") && ms_now() < until;)
        pause_ms(50);
    ck_assert_int_eq(server_log_count(&c.s[m], "db.maintainer.elected"), 1);
    other = (m + 1) % REPLICAS;
    /* a job locked for 1 s through another replica, its worker gone */
    ck_assert_int_eq(post(&c.s[other], "/v1/jobs", NULL, "{\"queue\":\"sweep\",\"payload\":1}"), 201);
    ck_assert_int_eq(post(&c.s[other], "/v1/jobs/claim", &a, "{\"workerId\":\"w\",\"queue\":\"sweep\",\"lockMs\":1000}"),
                     200);
    id = job_id(a);
    json_decref(a);
    server_kill(&c.s[m]);
    t0 = ms_now();
    next = maintainer_of(&c, 8000);
    ck_assert_msg(next >= 0 && next != m, "no replica took over the maintenance");
    printf("replicas: maintainer killed, replica %d took over in %.0f ms\n", next, ms_now() - t0);
    /* its sweep takes the expired lock back: nobody claims meanwhile */
    for (status[0] = 0; strcmp(status, "pending") && ms_now() - t0 < 8000; pause_ms(100))
        job_status(&c.s[next], id, status, sizeof status);
    ck_assert_str_eq(status, "pending");
    for (double until = ms_now() + 2000;
         !server_log_count(&c.s[next], "db.maintainer.elected") && ms_now() < until;)
        pause_ms(50);
    ck_assert_int_eq(server_log_count(&c.s[next], "db.maintainer.elected"), 1);
    ck_assert_int_ge(server_log_count(&c.s[next], "sweep.job.requeued"), 1);
    cluster_stop(&c);
}
END_TEST


/* ---- rate limits count every replica's claims -------------------------------- */

struct rl_claimer {
    struct server *s;
    double until;
    _Atomic int *bad;
};

static void *
rl_claimer_main(void *arg)
{
    struct rl_claimer *me = arg;

    while (ms_now() < me->until) {
        long st = post(me->s, "/v1/jobs/claim", NULL, "{\"workerId\":\"w\",\"queue\":\"rl\",\"waitMs\":500}");
        if (st != 200 && st != 204)
            (*me->bad)++;
    }
    return NULL;
}

/* A queue limited to 10 claims per 600 ms, claimed greedily through all
 * three replicas at once: no window of 600 ms (by the database's clock:
 * startedAt) holds 11 claims, and the first three hold 30 (within 10 %). */
START_TEST(rate_limit_counts_every_replica)
{
    struct cluster c;
    struct rl_claimer me[2 * REPLICAS];
    pthread_t th[2 * REPLICAS];
    _Atomic int bad = 0;
    const char *limits = "{\"rate\":{\"limit\":10,\"periodMs\":600}}";
    struct resp r;
    json_t *a, *job;
    int64_t v[128];
    int n = 0;
    size_t i;

    cluster_start(&c, NULL, NULL);
    ck_assert_int_eq(http_req(&c.s[0], "PUT", "/v1/queues/rl/limits", limits, strlen(limits), NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    {
        char body[4096];
        size_t len = (size_t)snprintf(body, sizeof body, "{\"jobs\":[");
        for (int k = 0; k < 80; k++)
            len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"queue\":\"rl\",\"payload\":%d}",
                                    k ? "," : "", k);
        snprintf(body + len, sizeof body - len, "]}");
        ck_assert_int_eq(post(&c.s[1], "/v1/jobs/batch", NULL, "%s", body), 201);
    }
    for (int k = 0; k < 2 * REPLICAS; k++) {
        me[k] = (struct rl_claimer){&c.s[k % REPLICAS], ms_now() + 2200, &bad};
        ck_assert_int_eq(pthread_create(&th[k], NULL, rl_claimer_main, &me[k]), 0);
    }
    for (int k = 0; k < 2 * REPLICAS; k++)
        pthread_join(th[k], NULL);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(get(&c.s[2], "/v1/jobs?queue=rl&status=processing&limit=1000", &a), 200);
    json_array_foreach(json_object_get(a, "jobs"), i, job) {
        ck_assert_int_lt(n, 128);
        v[n++] = json_integer_value(json_object_get(job, "startedAt"));
    }
    json_decref(a);
    ck_assert_int_ge(n, 30);
    assert_paced(v, n, 10, 600, 3);
    cluster_stop(&c);
}
END_TEST

/* One case per test, so that CK_RUN_CASE runs one. */
static void
add_case(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

Suite *
suite_replicas(void)
{
    Suite *s = suite_create("replicas");

    add_case(s, "claims_once", claims_once_across_replicas);
    add_case(s, "wake_across", long_poll_woken_by_another_replica);
    add_case(s, "poll_only", poll_only_still_wakes);
    add_case(s, "one_holder", one_lease_holder_among_replicas);
    add_case(s, "skewed_clocks", skewed_clocks_do_not_decide);
    add_case(s, "kill9", kill9_replicas_under_load);
    add_case(s, "maintainer", maintenance_moves_when_the_maintainer_dies);
    add_case(s, "pg_restart", postgres_restart_under_load);
    add_case(s, "rate_limit", rate_limit_counts_every_replica);
    return s;
}
