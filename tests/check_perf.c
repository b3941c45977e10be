/* check_perf.c -- durability and group commit against a real batond:
 * concurrent writes share commits (seen on /metrics), a lone write commits
 * at once, kill -9 under mixed concurrent load loses no acknowledged write,
 * and a full disk answers 503 without damage and recovers. The test-only
 * hooks used here (BATON_TEST_COMMIT_DELAY_MS, BATON_TEST_FAULT_FILE) are
 * described in docs/performance.md (server/writer.c, server/store_sqlite.c). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "harness.h"
#include "pg.h"

#define SESSION_KEY "BATON_SESSION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* POST body (a JSON text) to path; returns the status, 0 on transport
 * error. *out (may be NULL) receives the parsed answer. Thread-safe. */
static long
post(struct server *s, const char *method, const char *path, const char *body, json_t **out)
{
    struct resp r;
    long st;

    if (out)
        *out = NULL;
    if (http_req(s, method, path, body, body ? strlen(body) : 0, NULL, "application/json", &r) < 0)
        return 0;
    st = r.status;
    if (out)
        *out = json_incref(r.json);
    resp_free(&r);
    return st;
}

static char *
db_path(struct server *s)
{
    static char p[300];

    snprintf(p, sizeof p, "%s/baton.db", s->dir);
    return p;
}

/* ---- checkpoints ---------------------------------------------------------- */

static long long
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static void *
bulk_writer(void *arg)
{
    struct server *s = arg;
    char *body = malloc(32768), pad[2049];
    size_t n;

    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int b = 0; b < 150; b++) {
        n = (size_t)snprintf(body, 32768, "{\"jobs\":[");
        for (int i = 0; i < 10; i++)
            n += (size_t)snprintf(body + n, 32768 - n, "%s{\"queue\":\"bulk\",\"payload\":{\"pad\":\"%s\"}}",
                                  i ? "," : "", pad);
        snprintf(body + n, 32768 - n, "]}");
        ck_assert_int_eq(post(s, "POST", "/v1/jobs/batch", body, NULL), 201);
    }
    free(body);
    return NULL;
}

/* 6000 jobs of 2 KiB written by 4 clients: the checkpointer copies the WAL
 * into the database file as it goes (the file holds the data) and the
 * WAL stays a few MiB, where without checkpoints it would hold it all. */
START_TEST(checkpoints_keep_the_wal_bounded)
{
    struct server s = {0};
    pthread_t th[4];
    char wal[320];
    long long db = 0, max_wal = 0;

    server_start(&s, NULL);
    snprintf(wal, sizeof wal, "%s-wal", db_path(&s));
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, bulk_writer, &s);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 100 && (db = file_size(db_path(&s))) < 10 << 20; i++)
        usleep(100 * 1000);
    max_wal = file_size(wal);
    ck_assert_msg(db >= 10 << 20, "the database file holds %lld bytes: no checkpoint ran", db);
    ck_assert_msg(max_wal < 24 << 20, "the WAL grew to %lld bytes", max_wal);
    ck_assert_int_eq(server_sql(&s, "SELECT count(*) FROM jobs WHERE queue = 'bulk'"), 6000);
    server_cleanup(&s);
}
END_TEST

/* ---- group commit ------------------------------------------------------- */

struct burst {
    struct server *s;
    pthread_barrier_t *go;
    int i;
    long status;
};

static void *
burst_one(void *arg)
{
    struct burst *b = arg;
    char body[128], path[64];

    pthread_barrier_wait(b->go);
    if (b->i % 4 == 3) {
        /* fails inside its savepoint (no such job): must not hurt the others */
        snprintf(path, sizeof path, "/v1/jobs/%d/complete", 900000 + b->i);
        b->status = post(b->s, "POST", path, "{\"workerId\":\"w\",\"claimToken\":\"c_00\"}", NULL);
    } else {
        snprintf(body, sizeof body, "{\"queue\":\"burst\",\"payload\":{\"i\":%d}}", b->i);
        b->status = post(b->s, "POST", "/v1/jobs", body, NULL);
    }
    return NULL;
}

START_TEST(concurrent_writes_share_commits)
{
    static const char *const env[] = {"BATON_TEST_COMMIT_DELAY_MS=150", "BATON_SWEEP_INTERVAL_MS=600000",
                                      NULL};
    struct server s = {0};
    enum { N = 24 };
    struct burst b[N];
    pthread_t th[N];
    pthread_barrier_t go;
    double c0, w0, c1, w1, single0, single1;
    int ok = 0, failed = 0;
    json_t *j;

    server_start(&s, env);
    c0 = server_metric(&s, "baton_commits_total");
    w0 = server_metric(&s, "baton_writes_total");
    single0 = server_metric(&s, "baton_commit_batch_size_bucket{le=\"1\"}");
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        b[i] = (struct burst){&s, &go, i, 0};
        pthread_create(&th[i], NULL, burst_one, &b[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N; i++) {
        if (i % 4 == 3) {
            ck_assert_int_eq(b[i].status, 404);
            failed++;
        } else {
            ck_assert_int_eq(b[i].status, 201);
            ok++;
        }
    }
    c1 = server_metric(&s, "baton_commits_total");
    w1 = server_metric(&s, "baton_writes_total");
    single1 = server_metric(&s, "baton_commit_batch_size_bucket{le=\"1\"}");
    /* every write ran in some commit; with 150 ms per commit the 24 that
     * arrive together cannot have had a commit each */
    ck_assert_msg(w1 - w0 >= N, "writes %g", w1 - w0);
    ck_assert_msg(c1 - c0 <= N / 3, "%g commits for %g writes", c1 - c0, w1 - w0);
    ck_assert_msg(c1 - c0 - (single1 - single0) >= 1, "no commit held more than one write");
    ck_assert_int_eq(server_metric(&s, "baton_commit_failures_total"), 0);
    /* the failing writes rolled back alone: every enqueue is there */
    j = CALL(&s, "GET", "/v1/jobs?queue=burst&limit=100", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), ok);
    json_decref(j);
    ck_assert_int_eq(failed, N / 4);
    server_cleanup(&s);
}
END_TEST

START_TEST(lone_write_commits_at_once)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=600000", NULL};
    struct server s = {0};
    double c0, c1;

    server_start(&s, env);
    c0 = server_metric(&s, "baton_commits_total");
    for (int i = 0; i < 20; i++)
        json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "lone", "payload"), 201));
    c1 = server_metric(&s, "baton_commits_total");
    /* nobody else was writing: each write had its own commit, none waited
     * for company */
    ck_assert_int_eq(c1 - c0, 20);
    ck_assert_int_eq(server_metric(&s, "baton_commit_batch_size_count"), server_metric(&s, "baton_commits_total"));
    server_cleanup(&s);
}
END_TEST

/* A claim that parks and an enqueue that wakes it in the same batch, with
 * more writes behind them: the claim gets the job (it runs again, it is
 * not answered 204), and the writes after it in the batch are answered. */
struct later {
    struct server *s;
    int delay_ms;
    const char *path, *body;
    long status;
    json_t *out;
};

static void *
later_one(void *arg)
{
    struct later *l = arg;

    usleep((useconds_t)l->delay_ms * 1000);
    l->status = post(l->s, "POST", l->path, l->body, &l->out);
    return NULL;
}

START_TEST(park_and_wake_in_one_batch)
{
    static const char *const env[] = {"BATON_TEST_COMMIT_DELAY_MS=300", "BATON_SWEEP_INTERVAL_MS=600000", NULL};
    struct server s = {0};
    struct later l[] = {
        {&s, 0, "/v1/jobs", "{\"queue\":\"other\",\"payload\":{}}", 0, NULL},   /* holds the writer */
        {&s, 60, "/v1/jobs/claim", "{\"queue\":\"pw\",\"workerId\":\"w\",\"waitMs\":20000}", 0, NULL},
        {&s, 120, "/v1/jobs", "{\"queue\":\"pw\",\"payload\":{\"x\":1}}", 0, NULL},
        {&s, 180, "/v1/dedupe", "{\"channel\":\"web\",\"channelMessageId\":\"after-park\"}", 0, NULL},
        {&s, 200, "/v1/jobs", "{\"queue\":\"other\",\"payload\":{}}", 0, NULL},
    };
    enum { N = sizeof l / sizeof l[0] };
    pthread_t th[N];

    server_start(&s, env);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, later_one, &l[i]);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(l[0].status, 201);
    ck_assert_int_eq(l[1].status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(l[1].out, "job"),
                                                                        "payload"), "x")), 1);
    ck_assert_int_eq(l[2].status, 201);
    ck_assert_int_eq(l[3].status, 200);
    ck_assert_int_eq(l[4].status, 201);
    for (int i = 0; i < N; i++)
        json_decref(l[i].out);
    /* the server is still well: nothing parked, nothing freed twice */
    ck_assert_int_eq(server_metric(&s, "baton_parked_requests"), 0);
    ck_assert_int_eq(server_stop(&s), 0);
    server_cleanup(&s);
}
END_TEST

/* Three claims parked on a queue, one enqueue at a time: the woken claims
 * run in the enqueue's batch, one gets the job, and the two that found
 * nothing stay parked -- they do not run again in a batch of their own
 * after the commit: one commit per enqueue. The last claimer is still
 * woken by a later enqueue. */
static double
wait_parked(struct server *s, double n)
{
    double v = -1;

    for (int i = 0; i < 500 && (v = server_metric(s, "baton_parked_requests")) != n; i++)
        usleep(10000);
    return v;
}

START_TEST(woken_claims_without_a_job_stay_parked)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=600000", NULL};
    struct server s = {0};
    struct later l[3];
    pthread_t th[3];
    int got[3] = {0}, answered = 0;
    double c0, c1;

    server_start(&s, env);
    for (int i = 0; i < 3; i++) {
        l[i] = (struct later){&s, 0, "/v1/jobs/claim", "{\"queue\":\"sh\",\"workerId\":\"w\",\"waitMs\":30000}",
                              0, NULL};
        pthread_create(&th[i], NULL, later_one, &l[i]);
    }
    ck_assert_int_eq(wait_parked(&s, 3), 3);
    for (int round = 0; round < 2; round++) {
        int before = answered;

        c0 = server_metric(&s, "baton_commits_total");
        json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:{s:i}}", "queue", "sh", "payload", "r", round),
                         201));
        /* exactly one claimer gets the job, the others stay parked */
        ck_assert_int_eq(wait_parked(&s, 2 - round), 2 - round);
        usleep(300000);     /* room for any further batch to show up */
        c1 = server_metric(&s, "baton_commits_total");
        ck_assert_msg(c1 - c0 == 1, "round %d: %g commits for one enqueue and the claim it woke", round, c1 - c0);
        ck_assert_int_eq(server_metric(&s, "baton_parked_requests"), 2 - round);
        for (int i = 0; i < 3; i++)
            if (!got[i] && l[i].status) {
                ck_assert_int_eq(l[i].status, 200);
                ck_assert_int_eq(json_integer_value(json_object_get(
                                     json_object_get(json_object_get(l[i].out, "job"), "payload"), "r")), round);
                got[i] = 1;
                answered++;
            }
        ck_assert_int_eq(answered, before + 1);
    }
    /* the last claimer: a plain wake-up still reaches it */
    json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:{s:i}}", "queue", "sh", "payload", "r", 2), 201));
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(l[i].status, 200);
        json_decref(l[i].out);
    }
    ck_assert_int_eq(server_metric(&s, "baton_parked_requests"), 0);
    ck_assert_int_eq(server_stop(&s), 0);
    server_cleanup(&s);
}
END_TEST

/* Long-poll claims woken by an enqueue run in the enqueue's own batch and
 * are answered after its commit: 4 parked claims, one enqueue of 4 jobs
 * (a batch), 5 writes and 1 commit; the woken claims take one job each. */
START_TEST(woken_claims_share_the_enqueues_commit)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=600000", NULL};
    struct server s = {0};
    struct later l[] = {
        {&s, 0, "/v1/jobs/claim", "{\"queue\":\"mw\",\"workerId\":\"w1\",\"waitMs\":20000}", 0, NULL},
        {&s, 0, "/v1/jobs/claim", "{\"queue\":\"mw\",\"workerId\":\"w2\",\"waitMs\":20000}", 0, NULL},
        {&s, 0, "/v1/jobs/claim", "{\"queue\":\"mw\",\"workerId\":\"w3\",\"waitMs\":20000}", 0, NULL},
        {&s, 0, "/v1/jobs/claim", "{\"queue\":\"mw\",\"workerId\":\"w4\",\"waitMs\":20000}", 0, NULL},
    };
    const char *jobs = "{\"jobs\":[{\"queue\":\"mw\",\"payload\":{\"i\":1}},{\"queue\":\"mw\",\"payload\":{\"i\":2}},"
                       "{\"queue\":\"mw\",\"payload\":{\"i\":3}},{\"queue\":\"mw\",\"payload\":{\"i\":4}}]}";
    pthread_t th[4];
    double commits, writes;
    int seen = 0;

    server_start(&s, env);
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, later_one, &l[i]);
    for (int i = 0; i < 100 && server_metric(&s, "baton_parked_requests") < 4; i++)
        usleep(50 * 1000);
    ck_assert_int_eq(server_metric(&s, "baton_parked_requests"), 4);
    commits = server_metric(&s, "baton_commits_total");
    writes = server_metric(&s, "baton_writes_total");
    ck_assert_int_eq(post(&s, "POST", "/v1/jobs/batch", jobs, NULL), 201);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(l[i].status, 200);
        seen |= 1 << json_integer_value(json_object_get(json_object_get(json_object_get(l[i].out, "job"),
                                                                        "payload"), "i"));
        json_decref(l[i].out);
    }
    ck_assert_int_eq(seen, 0x1e);       /* jobs 1..4, each once */
    ck_assert_int_eq(server_metric(&s, "baton_commits_total") - commits, 1);
    ck_assert_int_eq(server_metric(&s, "baton_writes_total") - writes, 5);
    server_cleanup(&s);
}
END_TEST

/* ---- kill -9 under mixed load ------------------------------------------- */

#define MAXREC 20000

struct crash {
    struct server *s;
    pthread_mutex_t m;
    /* acknowledged writes */
    int64_t job_id[MAXREC];     /* enqueued (201) */
    int njobs;
    int64_t done_id[MAXREC];    /* completed (200) */
    int ndone;
    char dedupe[MAXREC][24];    /* registered first (duplicate:false) */
    int ndedupe;
    int64_t msg_id[MAXREC];     /* inbound accepted (201) */
    int nmsg;
    int64_t lease_token;        /* highest token acknowledged */
    int64_t session_acked;      /* highest session value acknowledged */
    int64_t session_sent;       /* highest session value ever sent */
    int seq;                    /* unique numbers for payloads and ids */
    int errors;                 /* unexpected statuses */
    char why[256];
};

static int
next_seq(struct crash *c)
{
    int n;

    pthread_mutex_lock(&c->m);
    n = ++c->seq;
    pthread_mutex_unlock(&c->m);
    return n;
}

static void
bad(struct crash *c, const char *what, long st)
{
    pthread_mutex_lock(&c->m);
    c->errors++;
    snprintf(c->why, sizeof c->why, "%s answered %ld", what, st);
    pthread_mutex_unlock(&c->m);
}

static int64_t
id_of(json_t *j, const char *k)
{
    const char *v = json_string_value(json_object_get(j, k));

    return v ? atoll(v) : -1;
}

/* enqueue, claim, heartbeat, complete */
static void *
load_jobs(void *arg)
{
    struct crash *c = arg;
    char body[256], path[96];

    for (;;) {
        json_t *j = NULL, *job;
        int n = next_seq(c);
        long st;

        snprintf(body, sizeof body, "{\"queue\":\"crash\",\"payload\":{\"n\":%d}}", n);
        st = post(c->s, "POST", "/v1/jobs", body, &j);
        if (st == 0)
            return NULL;
        if (st != 201) {
            bad(c, "enqueue", st);
            json_decref(j);
            return NULL;
        }
        pthread_mutex_lock(&c->m);
        if (c->njobs < MAXREC)
            c->job_id[c->njobs++] = id_of(json_object_get(j, "job"), "id");
        pthread_mutex_unlock(&c->m);
        json_decref(j);

        st = post(c->s, "POST", "/v1/jobs/claim", "{\"queue\":\"crash\",\"workerId\":\"cw\",\"lockMs\":600000}", &j);
        if (st == 0)
            return NULL;
        if (st == 204)
            continue;
        if (st != 200) {
            bad(c, "claim", st);
            json_decref(j);
            return NULL;
        }
        job = json_object_get(j, "job");
        snprintf(path, sizeof path, "/v1/jobs/%s/heartbeat", json_string_value(json_object_get(job, "id")));
        snprintf(body, sizeof body, "{\"workerId\":\"cw\",\"claimToken\":\"%s\",\"lockMs\":600000}",
                 json_string_value(json_object_get(job, "claimToken")));
        st = post(c->s, "POST", path, body, NULL);
        if (st == 0) {
            json_decref(j);
            return NULL;
        }
        if (st != 200)
            bad(c, "job heartbeat", st);
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", json_string_value(json_object_get(job, "id")));
        snprintf(body, sizeof body, "{\"workerId\":\"cw\",\"claimToken\":\"%s\",\"result\":{\"ok\":1}}",
                 json_string_value(json_object_get(job, "claimToken")));
        st = post(c->s, "POST", path, body, NULL);
        if (st == 200) {
            pthread_mutex_lock(&c->m);
            if (c->ndone < MAXREC)
                c->done_id[c->ndone++] = id_of(job, "id");
            pthread_mutex_unlock(&c->m);
        } else if (st != 0)
            bad(c, "complete", st);
        json_decref(j);
        if (st == 0)
            return NULL;
    }
}

/* acquire, heartbeat, release of one lease: new grants raise the token */
static void *
load_lease(void *arg)
{
    struct crash *c = arg;
    char body[128];

    for (;;) {
        json_t *j = NULL;
        int64_t token;
        long st = post(c->s, "POST", "/v1/leases/whatsapp/crash/acquire",
                       "{\"ownerId\":\"crash-owner\",\"ttlMs\":600000}", &j);
        if (st == 0)
            return NULL;
        if (st != 200) {
            bad(c, "lease acquire", st);
            json_decref(j);
            return NULL;
        }
        token = json_integer_value(json_object_get(json_object_get(j, "lease"), "token"));
        json_decref(j);
        pthread_mutex_lock(&c->m);
        if (token < c->lease_token) {
            c->errors++;
            snprintf(c->why, sizeof c->why, "lease token went back from %lld to %lld",
                     (long long)c->lease_token, (long long)token);
        } else
            c->lease_token = token;
        pthread_mutex_unlock(&c->m);
        snprintf(body, sizeof body, "{\"ownerId\":\"crash-owner\",\"token\":%lld}", (long long)token);
        st = post(c->s, "POST", "/v1/leases/whatsapp/crash/heartbeat", body, NULL);
        if (st == 0)
            return NULL;
        if (st != 200)
            bad(c, "lease heartbeat", st);
        st = post(c->s, "POST", "/v1/leases/whatsapp/crash/release", body, NULL);
        if (st == 0)
            return NULL;
        if (st != 200)
            bad(c, "lease release", st);
    }
}

/* dedupe registrations and session batches, alternately */
static void *
load_dedupe_session(void *arg)
{
    struct crash *c = arg;
    char body[160];

    for (;;) {
        json_t *j = NULL;
        int n = next_seq(c);
        long st;

        snprintf(body, sizeof body, "{\"channel\":\"whatsapp\",\"channelMessageId\":\"d-%d\"}", n);
        st = post(c->s, "POST", "/v1/dedupe", body, &j);
        if (st == 0)
            return NULL;
        if (st != 200 || json_is_true(json_object_get(j, "duplicate")))
            bad(c, "dedupe", st);
        else {
            pthread_mutex_lock(&c->m);
            if (c->ndedupe < MAXREC)
                snprintf(c->dedupe[c->ndedupe++], sizeof c->dedupe[0], "d-%d", n);
            pthread_mutex_unlock(&c->m);
        }
        json_decref(j);

        pthread_mutex_lock(&c->m);
        c->session_sent = n;
        pthread_mutex_unlock(&c->m);
        snprintf(body, sizeof body, "{\"set\":{\"counter\":%d,\"other\":\"x%d\"}}", n, n);
        st = post(c->s, "POST", "/v1/sessions/whatsapp/crash/batch", body, NULL);
        if (st == 0)
            return NULL;
        if (st != 200)
            bad(c, "session batch", st);
        else {
            pthread_mutex_lock(&c->m);
            c->session_acked = n;
            pthread_mutex_unlock(&c->m);
        }
    }
}

static void *
load_inbound(void *arg)
{
    struct crash *c = arg;
    char body[256];

    for (;;) {
        json_t *j = NULL;
        int n = next_seq(c);
        long st;

        snprintf(body, sizeof body,
                 "{\"channel\":\"web\",\"accountId\":\"default\",\"channelMessageId\":\"in-%d\","
                 "\"conversationId\":\"crash-conv\",\"from\":\"u\",\"text\":\"hello %d\"}", n, n);
        st = post(c->s, "POST", "/v1/inbound", body, &j);
        if (st == 0)
            return NULL;
        if (st != 201)
            bad(c, "inbound", st);
        else {
            pthread_mutex_lock(&c->m);
            if (c->nmsg < MAXREC)
                c->msg_id[c->nmsg++] = id_of(j, "messageId");
            pthread_mutex_unlock(&c->m);
        }
        json_decref(j);
    }
}

static int64_t
q1(sqlite3 *db, const char *sql, const char *text, int64_t num)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else if (num >= 0)
        sqlite3_bind_int64(st, 1, num);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The database as batond will find it on restart: intact, every
 * acknowledged write present, no job twice. */
static void verify_pg(struct server *s, struct crash *c);

static void
verify_file(struct server *s, struct crash *c)
{
    sqlite3 *db;
    sqlite3_stmt *st;

    if (s->db[0]) {
        verify_pg(s, c);
        return;
    }

    ck_assert_int_eq(sqlite3_open(db_path(s), &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    for (int i = 0; i < c->njobs; i++)
        ck_assert_msg(q1(db, "SELECT count(*) FROM jobs WHERE id = ?", NULL, c->job_id[i]) == 1,
                      "acknowledged job %lld lost", (long long)c->job_id[i]);
    for (int i = 0; i < c->ndone; i++)
        ck_assert_msg(q1(db, "SELECT count(*) FROM jobs WHERE id = ? AND status = 'completed'", NULL,
                         c->done_id[i]) == 1, "acknowledged completion of %lld lost", (long long)c->done_id[i]);
    ck_assert_msg(q1(db, "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = 'crash'"
                         " GROUP BY json_extract(payload, '$.n') HAVING count(*) > 1)", NULL, -1) == 0,
                  "a job was duplicated");
    for (int i = 0; i < c->ndedupe; i++)
        ck_assert_msg(q1(db, "SELECT count(*) FROM dedupe WHERE channel = 'whatsapp' AND channel_message_id = ?",
                         c->dedupe[i], -1) == 1, "dedupe entry %s lost", c->dedupe[i]);
    for (int i = 0; i < c->nmsg; i++)
        ck_assert_msg(q1(db, "SELECT count(*) FROM messages WHERE id = ? AND job_id IS NOT NULL", NULL,
                         c->msg_id[i]) == 1, "inbound message %lld lost", (long long)c->msg_id[i]);
    ck_assert_msg(q1(db, "SELECT count(*) FROM (SELECT 1 FROM messages WHERE direction = 'in'"
                         " GROUP BY channel, channel_message_id HAVING count(*) > 1)", NULL, -1) == 0,
                  "an inbound message was stored twice");
    if (c->lease_token > 0)
        ck_assert_msg(q1(db, "SELECT token FROM leases WHERE channel = 'whatsapp' AND account_id = 'crash'",
                         NULL, -1) >= c->lease_token, "lease token went backwards");
    sqlite3_close(db);
}

/* "ARRAY[...]::bigint[]" of ids (n may be 0), malloc'ed. */
static char *
id_array(const int64_t *ids, int n)
{
    size_t cap = 32 + (size_t)n * 21, len;
    char *a = malloc(cap);

    ck_assert_ptr_nonnull(a);
    len = (size_t)snprintf(a, cap, "ARRAY[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(a + len, cap - len, "%s%lld", i ? "," : "", (long long)ids[i]);
    snprintf(a + len, cap - len, "]::bigint[]");
    return a;
}

/* How many of ids are missing from the rows `from_where` selects by id
 * (on PostgreSQL: one query, not one per id). */
static long long
pg_missing(struct server *s, const char *from_where, const int64_t *ids, int n)
{
    char *a = id_array(ids, n), *q;
    long long v;

    q = sqlite3_mprintf("SELECT (SELECT count(DISTINCT x) FROM unnest(%s) x) - "
                        "(SELECT count(*) %s AND id = ANY(%s))", a, from_where, a);
    v = server_sql(s, q);
    sqlite3_free(q);
    free(a);
    return v;
}

/* verify_file on PostgreSQL: the same checks through SQL on the server's
 * schema (the database's own crash safety stands for integrity_check). */
static void
verify_pg(struct server *s, struct crash *c)
{
    char *q, *list = NULL;

    ck_assert_msg(pg_missing(s, "FROM jobs WHERE true", c->job_id, c->njobs) == 0, "an acknowledged job was lost");
    ck_assert_msg(pg_missing(s, "FROM jobs WHERE status = 'completed'", c->done_id, c->ndone) == 0,
                  "an acknowledged completion was lost");
    ck_assert_msg(server_sql(s, "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = 'crash'"
                                " GROUP BY payload::json->>'n' HAVING count(*) > 1) d") == 0,
                  "a job was duplicated");
    for (int i = 0; i < c->ndedupe; i++) {
        char *more = sqlite3_mprintf("%s%s%Q", list ? list : "", list ? "," : "", c->dedupe[i]);
        sqlite3_free(list);
        list = more;
    }
    if (list) {
        q = sqlite3_mprintf("SELECT %d - count(DISTINCT channel_message_id) FROM dedupe WHERE channel = 'whatsapp'"
                            " AND channel_message_id IN (%s)", c->ndedupe, list);
        ck_assert_msg(server_sql(s, q) == 0, "a dedupe entry was lost");
        sqlite3_free(q);
        sqlite3_free(list);
    }
    ck_assert_msg(pg_missing(s, "FROM messages WHERE job_id IS NOT NULL", c->msg_id, c->nmsg) == 0,
                  "an inbound message was lost");
    ck_assert_msg(server_sql(s, "SELECT count(*) FROM (SELECT 1 FROM messages WHERE direction = 'in'"
                                " GROUP BY channel, channel_message_id HAVING count(*) > 1) d") == 0,
                  "an inbound message was stored twice");
    if (c->lease_token > 0)
        ck_assert_msg(server_sql(s, "SELECT token FROM leases WHERE channel = 'whatsapp' AND account_id = 'crash'")
                      >= c->lease_token, "lease token went backwards");
}

/* The same through the restarted server, for what the clients see. */
static void
verify_http(struct server *s, struct crash *c)
{
    char path[128];
    json_t *j;
    int64_t v;

    if (c->njobs) {
        snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)c->job_id[c->njobs - 1]);
        json_decref(CALL(s, "GET", path, NULL, 200));
    }
    if (c->ndone) {
        snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)c->done_id[c->ndone - 1]);
        j = CALL(s, "GET", path, NULL, 200);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "job") ? json_object_get(j, "job") : j,
                                                           "status")), "completed");
        json_decref(j);
    }
    if (c->ndedupe) {
        j = CALL(s, "POST", "/v1/dedupe", json_pack("{s:s, s:s}", "channel", "whatsapp", "channelMessageId",
                                                    c->dedupe[c->ndedupe - 1]), 200);
        ck_assert(json_is_true(json_object_get(j, "duplicate")));
        json_decref(j);
    }
    if (c->nmsg) {
        snprintf(path, sizeof path, "/v1/messages/%lld", (long long)c->msg_id[c->nmsg - 1]);
        json_decref(CALL(s, "GET", path, NULL, 200));
    }
    if (c->session_acked) {
        j = CALL(s, "GET", "/v1/sessions/whatsapp/crash/keys/counter", NULL, 200);
        v = json_integer_value(json_object_get(j, "value"));
        /* the last acknowledged batch, or the one in flight at the kill */
        ck_assert_msg(v >= c->session_acked && v <= c->session_sent, "session counter %lld, acked %lld",
                      (long long)v, (long long)c->session_acked);
        json_decref(j);
        j = CALL(s, "GET", "/v1/sessions/whatsapp/crash/keys/other", NULL, 200);
        /* both keys of a batch or neither */
        ck_assert_int_eq(atoll(json_string_value(json_object_get(j, "value")) + 1), v);
        json_decref(j);
    }
    if (c->lease_token) {
        j = CALL(s, "GET", "/v1/leases/whatsapp/crash", NULL, 200);
        ck_assert_int_ge(json_integer_value(json_object_get(j, "token")), c->lease_token);
        json_decref(j);
    }
}

START_TEST(kill9_under_load_loses_nothing)
{
    static const char *const env[] = {SESSION_KEY, NULL};
    struct server s = {0};
    struct crash *c = calloc(1, sizeof *c);
    void *(*loads[])(void *) = {load_jobs, load_jobs, load_lease, load_dedupe_session, load_inbound};
    enum { NL = sizeof loads / sizeof loads[0], ROUNDS = 20 };
    unsigned seed = (unsigned)getpid();

    pthread_mutex_init(&c->m, NULL);
    c->s = &s;
    server_start(&s, env);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t th[NL];
        int before = c->njobs + c->ndone + c->ndedupe + c->nmsg;

        for (int i = 0; i < NL; i++)
            pthread_create(&th[i], NULL, loads[i], c);
        usleep(100000 + (useconds_t)(rand_r(&seed) % 300000));
        server_kill(&s);
        for (int i = 0; i < NL; i++)
            pthread_join(th[i], NULL);
        ck_assert_msg(c->errors == 0, "round %d: %s", round, c->why);
        ck_assert_msg(c->njobs + c->ndone + c->ndedupe + c->nmsg > before, "round %d: no write got through",
                      round);
        verify_file(&s, c);
        server_start(&s, NULL);
        verify_http(&s, c);
    }
    /* acknowledged writes accumulate over the rounds: all still there */
    ck_assert_int_gt(c->njobs, ROUNDS);
    ck_assert_int_gt(c->ndone, 0);
    server_kill(&s);
    verify_file(&s, c);
    server_cleanup(&s);
    pthread_mutex_destroy(&c->m);
    free(c);
}
END_TEST

/* ---- disk full ---------------------------------------------------------- */

static char *
big_payload(int n)
{
    size_t len = 300000;
    char *b = malloc(len + 100);
    int k = snprintf(b, 100, "{\"queue\":\"full\",\"payload\":{\"n\":%d,\"pad\":\"", n);

    memset(b + k, 'a' + n % 26, len);
    strcpy(b + k + len, "\"}}");
    return b;
}

START_TEST(disk_full_answers_503_and_recovers)
{
    struct server s = {0};
    char flag[300], env_fault[340];
    const char *env[] = {env_fault, NULL};
    json_t *j;
    struct resp r;
    char *big;
    FILE *f;
    sqlite3 *db;
    sqlite3_stmt *st;

    snprintf(s.dir, sizeof s.dir, "/tmp/baton-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s.dir));
    snprintf(flag, sizeof flag, "%s/disk-full", s.dir);
    snprintf(env_fault, sizeof env_fault, "BATON_TEST_FAULT_FILE=%s", flag);
    server_start(&s, env);
    big = big_payload(1);
    ck_assert_int_eq(post(&s, "POST", "/v1/jobs", big, NULL), 201);
    free(big);

    f = fopen(flag, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    for (int i = 2; i < 5; i++) {
        big = big_payload(i);
        ck_assert_int_eq(http_req(&s, "POST", "/v1/jobs", big, strlen(big), NULL, "application/json", &r), 0);
        free(big);
        ck_assert_int_eq(r.status, 503);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
                         "unavailable");
        resp_free(&r);
    }
    /* reads still work and show only what was committed */
    j = CALL(&s, "GET", "/v1/jobs?queue=full", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 1);
    json_decref(j);
    ck_assert_int_ge(server_metric(&s, "baton_commits_total"), 1);

    unlink(flag);
    big = big_payload(5);
    ck_assert_int_eq(post(&s, "POST", "/v1/jobs", big, NULL), 201);
    free(big);
    j = CALL(&s, "GET", "/v1/jobs?queue=full", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 2);
    json_decref(j);

    /* and it all survives a crash intact */
    server_kill(&s);
    ck_assert_int_eq(sqlite3_open(db_path(&s), &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    ck_assert_int_eq(q1(db, "SELECT count(*) FROM jobs WHERE queue = 'full'", NULL, -1), 2);
    sqlite3_close(db);
    server_start(&s, NULL);
    json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "full", "payload"), 201));
    server_cleanup(&s);
}
END_TEST

/* A whole batch hit by the full disk: some requests of one commit fail,
 * the others are answered consistently with what is on disk. */
struct fill {
    struct server *s;
    int n;
    long status;
};

static void *
fill_one(void *arg)
{
    struct fill *f = arg;
    char *big = big_payload(f->n);

    if (f->n % 2)   /* small writes may still fit in free pages */
        f->status = post(f->s, "POST", "/v1/jobs", "{\"queue\":\"full\",\"payload\":{}}", NULL);
    else
        f->status = post(f->s, "POST", "/v1/jobs", big, NULL);
    free(big);
    return NULL;
}

START_TEST(disk_full_in_a_batch_stays_consistent)
{
    struct server s = {0};
    char flag[300], env_fault[340];
    const char *env[] = {env_fault, "BATON_TEST_COMMIT_DELAY_MS=100", NULL};
    enum { N = 8 };
    struct fill fl[N];
    pthread_t th[N];
    int ok = 0;
    json_t *j;
    FILE *f;

    snprintf(s.dir, sizeof s.dir, "/tmp/baton-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s.dir));
    snprintf(flag, sizeof flag, "%s/disk-full", s.dir);
    snprintf(env_fault, sizeof env_fault, "BATON_TEST_FAULT_FILE=%s", flag);
    server_start(&s, env);
    f = fopen(flag, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    for (int i = 0; i < N; i++) {
        fl[i] = (struct fill){&s, 100 + i, 0};
        pthread_create(&th[i], NULL, fill_one, &fl[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(fl[i].status == 201 || fl[i].status == 503, "status %ld", fl[i].status);
        if (fl[i].n % 2 == 0)
            ck_assert_int_eq(fl[i].status, 503);  /* 300 kB cannot fit */
        ok += fl[i].status == 201;
    }
    j = CALL(&s, "GET", "/v1/jobs?queue=full", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), ok);
    json_decref(j);
    unlink(flag);
    json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "full", "payload"), 201));
    j = CALL(&s, "GET", "/v1/jobs?queue=full", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), ok + 1);
    json_decref(j);
    server_restart(&s);
    j = CALL(&s, "GET", "/v1/jobs?queue=full", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), ok + 1);
    json_decref(j);
    server_cleanup(&s);
}
END_TEST

Suite *
suite_perf(void)
{
    Suite *s = suite_create("perf");
    TCase *tc = tcase_create("perf");

    tcase_set_timeout(tc, 120);
    /* on PostgreSQL only the durability under kill -9: the others count
     * SQLite's commits or fill its file (BATON_TEST_FAULT_FILE) */
    if (!pg_test_backend()) {
        tcase_add_test(tc, concurrent_writes_share_commits);
        tcase_add_test(tc, lone_write_commits_at_once);
        tcase_add_test(tc, park_and_wake_in_one_batch);
        tcase_add_test(tc, woken_claims_share_the_enqueues_commit);
        tcase_add_test(tc, woken_claims_without_a_job_stay_parked);
        tcase_add_test(tc, checkpoints_keep_the_wal_bounded);
        tcase_add_test(tc, disk_full_answers_503_and_recovers);
        tcase_add_test(tc, disk_full_in_a_batch_stays_consistent);
    }
    tcase_add_test(tc, kill9_under_load_loses_nothing);
    suite_add_tcase(s, tc);
    return s;
}
