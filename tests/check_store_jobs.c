/* check_store_jobs.c -- store conformance cases of the jobs operations
 * (see check_store.h): written against store->jobs only. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check_store.h"

#define OPS (store->jobs)

/* Insert a pending job into queue q in its own transaction; its id. */
static int64_t
put(const char *q, int64_t priority, int64_t run_offset_ms)
{
    struct tx t;
    struct job_new n = {.queue = q, .payload = "{\"n\":1}", .priority = priority, .max_attempts = 5};
    int64_t id = 0;

    st_begin(st_conn, &t);
    n.run_at = t.now + run_offset_ms;
    ck_assert_int_eq(OPS->insert(&t, &n, &id, NULL), 0);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_gt(id, 0);
    return id;
}

/* One claim of queue q in its own transaction on c: 1 (id, token), 0, 2. */
static int
claim_one(struct sconn *c, const char *q, int64_t lock_ms, int64_t *id, char *token, size_t n)
{
    struct tx t;
    struct job j;
    char *tok = new_id("c_");
    int rc;

    st_begin(c, &t);
    rc = OPS->claim(&t, q, "w1", t.now + lock_ms, tok, NULL, &j);
    if (rc > 0) {
        *id = j.id;
        job_free(&j);
    }
    if (token)
        snprintf(token, n, "%s", tok);
    free(tok);
    if (st_commit(&t) < 0)
        return -1;
    return rc;
}

/* An insert answers the row as stored; get finds it; find_dedupe finds a
 * live job by its key, in its own queue only. */
START_TEST(insert_get_round_trip)
{
    struct tx t;
    struct job_new n = {.queue = "mail", .payload = "[1,\"x\"]", .priority = 7, .max_attempts = 3,
                        .dedupe_key = "k1", .conversation_id = "conv", .message_id = "m9"};
    struct job j, g;
    int64_t id, found = 0;

    st_begin(st_conn, &t);
    n.run_at = t.now + 5;
    ck_assert_int_eq(OPS->insert(&t, &n, &id, &j), 0);
    ck_assert_int_eq(j.id, id);
    ck_assert_str_eq(j.queue, "mail");
    ck_assert_int_eq(j.status, JOB_PENDING);
    ck_assert_str_eq(j.payload, "[1,\"x\"]");
    ck_assert_int_eq(j.priority, 7);
    ck_assert_int_eq(j.run_at, t.now + 5);
    ck_assert_int_eq(j.attempts, 0);
    ck_assert_int_eq(j.max_attempts, 3);
    ck_assert_ptr_null(j.locked_by);
    ck_assert(j.locked_until == JOB_NONE && j.started_at == JOB_NONE && j.completed_at == JOB_NONE);
    ck_assert_ptr_null(j.claim_token);
    ck_assert_ptr_null(j.result);
    ck_assert_int_eq(j.created_at, t.now);
    ck_assert_str_eq(j.dedupe_key, "k1");
    ck_assert_str_eq(j.conversation_id, "conv");
    ck_assert_str_eq(j.message_id, "m9");
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, id, &g), 1);
    ck_assert_str_eq(g.payload, "[1,\"x\"]");
    ck_assert_str_eq(g.message_id, "m9");
    job_free(&g);
    ck_assert_int_eq(OPS->get(&t, id + 1000, &g), 0);
    ck_assert_int_eq(OPS->find_dedupe(&t, "mail", "k1", &found), 1);
    ck_assert_int_eq(found, id);
    ck_assert_int_eq(OPS->find_dedupe(&t, "other", "k1", &found), 0);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* Claims come in priority (high first), then runAt, then id order; a job
 * not yet due is not claimable, and next_due names when it becomes so. */
START_TEST(claim_order_and_delay)
{
    int64_t a = put("q", 0, -100), c = put("q", 5, -50), d = put("q", 5, -50), b = put("q", 5, 0);
    int64_t later = put("q", 100, 60000), id, due;
    int64_t want[] = {c, d, b, a};
    struct tx t;
    struct job j;

    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(claim_one(st_conn, "q", 60000, &id, NULL, 0), 1);
        ck_assert_msg(id == want[i], "claim %d: job %lld, expected %lld", i, (long long)id,
                      (long long)want[i]);
    }
    ck_assert_int_eq(claim_one(st_conn, "q", 60000, &id, NULL, 0), 0);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->next_due(&t, "q", &due), 0);
    ck_assert_int_eq(OPS->get(&t, later, &j), 1);
    ck_assert_int_eq(j.status, JOB_PENDING);
    ck_assert_int_eq(due, j.run_at);
    job_free(&j);
    ck_assert_int_eq(OPS->claim(&t, "other", "w1", t.now + 1000, "c_x", NULL, NULL), 0);
    st_rollback(&t);
}
END_TEST

/* A delayed job becomes claimable once its runAt has passed. */
START_TEST(delayed_job_becomes_claimable)
{
    int64_t id = put("q", 0, 300), got = 0;

    ck_assert_int_eq(claim_one(st_conn, "q", 60000, &got, NULL, 0), 0);
    sleep_ms(400);
    ck_assert_int_eq(claim_one(st_conn, "q", 60000, &got, NULL, 0), 1);
    ck_assert_int_eq(got, id);
}
END_TEST

/* A claimed job whose lock expired is offered to a claim as expired (2,
 * untouched), and after requeue_expired claimable again with its attempts
 * counted; a stale token can then change nothing, and the sweep finds
 * nothing to take back. */
START_TEST(expired_lock_reclaim_and_stale_token)
{
    int64_t id = put("q", 0, 0), got;
    char old[80], cur[80];
    struct tx t;
    struct job j;
    struct job_expiry *v;
    size_t n;
    bool more;

    ck_assert_int_eq(claim_one(st_conn, "q", -1000, &got, old, sizeof old), 1);  /* lock already over */
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->claim(&t, "q", "w2", t.now + 60000, "c_new", NULL, &j), 2);
    ck_assert_int_eq(j.id, id);
    ck_assert_int_eq(j.status, JOB_PROCESSING);
    ck_assert_str_eq(j.claim_token, old);
    job_free(&j);
    ck_assert_int_eq(OPS->requeue_expired(&t, id, &j), 1);
    ck_assert_int_eq(j.status, JOB_PENDING);
    ck_assert_int_eq(j.attempts, 1);
    ck_assert_ptr_null(j.claim_token);
    ck_assert_ptr_null(j.locked_by);
    ck_assert_str_eq(j.error_reason, "lock_expired");
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_int_eq(claim_one(st_conn, "q", 60000, &got, cur, sizeof cur), 1);
    ck_assert_int_eq(got, id);
    ck_assert_str_ne(cur, old);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->get(&t, id, &j), 1);
    ck_assert_int_eq(j.attempts, 2);
    job_free(&j);
    /* nothing expired now; the old claim's token changes nothing */
    ck_assert_int_eq(OPS->expire_locks(&t, 4, "m", &v, &n, &more), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(v);
    ck_assert(!more);
    ck_assert_int_eq(OPS->requeue_expired(&t, id, NULL), 0);
    ck_assert_int_eq(OPS->complete(&t, id, old, "1", NULL), 0);
    ck_assert_int_eq(OPS->heartbeat(&t, id, old, t.now + 1, NULL), 0);
    ck_assert_int_eq(OPS->fail_retry(&t, id, old, t.now, "x", NULL, NULL), 0);
    ck_assert_int_eq(OPS->fail_final(&t, id, old, "x", NULL, NULL), 0);
    ck_assert_int_eq(OPS->unclaim(&t, id, old, NULL), 0);
    ck_assert_int_eq(OPS->get(&t, id, &j), 1);
    ck_assert_int_eq(j.status, JOB_PROCESSING);
    ck_assert_str_eq(j.claim_token, cur);
    job_free(&j);
    /* the current one completes it, and keeps its token */
    ck_assert_int_eq(OPS->complete(&t, id, cur, "{\"ok\":true}", &j), 1);
    ck_assert_int_eq(j.status, JOB_COMPLETED);
    ck_assert_str_eq(j.result, "{\"ok\":true}");
    ck_assert_str_eq(j.claim_token, cur);
    ck_assert(j.completed_at == t.now && j.locked_until == JOB_NONE);
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);
}
END_TEST

/* The expired-lock sweep and the retention prune work in chunks: asked
 * for N, at most N, with `more` while others remain; together every
 * one. */
START_TEST(sweep_and_prune_in_chunks)
{
    enum { JOBS_N = 25, PRUNE_N = 20 };
    int64_t ids[JOBS_N], got;
    struct job_expiry *v;
    int seen[JOBS_N] = {0};
    char tokens[PRUNE_N][80];
    struct tx t;
    size_t n, total = 0;
    bool more = true;
    int64_t keep = put("other", 0, 0);

    for (int i = 0; i < JOBS_N; i++) {
        /* each new job ranks above the expired ones, so it is the one claimed */
        ids[i] = put("q", i, 0);
        ck_assert_int_eq(claim_one(st_conn, "q", -1000, &got, NULL, 0), 1);
    }
    for (int round = 0; more; round++) {
        ck_assert_int_lt(round, 3);
        st_begin(st_conn, &t);
        ck_assert_int_eq(OPS->expire_locks(&t, 10, "m", &v, &n, &more), 0);
        ck_assert_int_le(n, 10);
        ck_assert_int_eq(n, round < 2 ? 10 : 5);
        ck_assert(more == (round < 2));
        for (size_t i = 0; i < n; i++) {
            ck_assert(!v[i].failed);
            seen[v[i].id - ids[0]]++;
        }
        free(v);
        total += n;
        ck_assert_int_eq(st_commit(&t), 0);
    }
    ck_assert_int_eq(total, JOBS_N);
    for (int i = 0; i < JOBS_N; i++)
        ck_assert_int_eq(seen[i], 1);

    /* complete PRUNE_N of them; the others stay */
    for (int i = 0; i < PRUNE_N; i++) {
        ck_assert_int_eq(claim_one(st_conn, "q", 60000, &got, tokens[i], sizeof tokens[i]), 1);
        st_begin(st_conn, &t);
        ck_assert_int_eq(OPS->complete(&t, got, tokens[i], NULL, NULL), 1);
        ck_assert_int_eq(st_commit(&t), 0);
    }
    total = 0;
    more = true;
    for (int round = 0; more; round++) {
        ck_assert_int_lt(round, 2);
        st_begin(st_conn, &t);
        ck_assert_int_eq(OPS->prune(&t, t.now + 1000, 10, &n, &more), 0);
        ck_assert_int_eq(n, 10);
        ck_assert(more == (round == 0));
        total += n;
        ck_assert_int_eq(st_commit(&t), 0);
    }
    ck_assert_int_eq(total, PRUNE_N);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->prune(&t, t.now + 1000, 10, &n, &more), 0);
    ck_assert_int_eq(n, 0);
    ck_assert(!more);
    n = 0;
    for (int i = 0; i < JOBS_N; i++)
        n += (size_t)OPS->get(&t, ids[i], NULL);
    ck_assert_int_eq(n, JOBS_N - PRUNE_N);
    ck_assert_int_eq(OPS->get(&t, keep, NULL), 1);
    st_rollback(&t);
}
END_TEST

/* ---- 8 concurrent claimers ------------------------------------------------- */

#define CLAIM_JOBS 400
#define CLAIMERS 8

static int64_t first_id;
static int claimed[CLAIM_JOBS];
static int claim_errors, claims_total;
static pthread_mutex_t claim_lock = PTHREAD_MUTEX_INITIALIZER;

static void *
claimer(void *arg)
{
    struct sconn *c = arg;
    int64_t id;
    int rc;

    for (;;) {
        rc = claim_one(c, "q", 60000, &id, NULL, 0);
        pthread_mutex_lock(&claim_lock);
        if (rc < 0 || rc == 2 || (rc == 1 && (id < first_id || id >= first_id + CLAIM_JOBS)))
            claim_errors++;
        else if (rc == 1)
            claimed[id - first_id]++;
        /* a store that hands jobs out twice would never empty the queue */
        if (rc == 1 && ++claims_total > 2 * CLAIM_JOBS)
            rc = 0;
        pthread_mutex_unlock(&claim_lock);
        if (rc != 1)
            break;
    }
    return NULL;
}

/* 8 threads, each on its own connection, claim until the queue is empty:
 * every job is claimed exactly once. */
START_TEST(claims_exactly_once_concurrently)
{
    struct sconn *conns[CLAIMERS];
    pthread_t th[CLAIMERS];
    struct tx t;
    struct job_new n = {.queue = "q", .payload = "{}", .max_attempts = 5};
    int64_t id;

    st_begin(st_conn, &t);
    n.run_at = t.now;
    for (int i = 0; i < CLAIM_JOBS; i++) {
        ck_assert_int_eq(OPS->insert(&t, &n, &id, NULL), 0);
        if (!i)
            first_id = id;
        ck_assert_int_eq(id, first_id + i);
    }
    ck_assert_int_eq(st_commit(&t), 0);
    memset(claimed, 0, sizeof claimed);
    claim_errors = claims_total = 0;
    for (int i = 0; i < CLAIMERS; i++) {
        conns[i] = st_connect();
        ck_assert_int_eq(pthread_create(&th[i], NULL, claimer, conns[i]), 0);
    }
    for (int i = 0; i < CLAIMERS; i++) {
        pthread_join(th[i], NULL);
        store->disconnect(conns[i]);
    }
    ck_assert_int_eq(claim_errors, 0);
    for (int i = 0; i < CLAIM_JOBS; i++)
        ck_assert_msg(claimed[i] == 1, "job %lld claimed %d times", (long long)(first_id + i), claimed[i]);
}
END_TEST

/* Pending jobs of queue q, through the queues figures (read). */
static int
count_row(const struct job_queue_stats *qs, void *arg)
{
    int64_t *n = arg;

    if (!strcmp(qs->queue, "bulk"))
        *n += qs->counts[JOB_PENDING];
    return 0;
}

static int64_t
bulk_pending(void)
{
    struct tx t;
    int64_t n = 0;

    st_read(&t);
    ck_assert_int_eq(OPS->queues(&t, count_row, &n), 0);
    tx_read_end(&t);
    return n;
}

/* n inserts of a bulk enqueue in one transaction, inside one savepoint
 * (as the writer runs a batch): each looks for its dedupe key first and
 * reads its row back, as POST /v1/jobs/batch does. Ids are consecutive. */
static void
bulk_insert(struct tx *t, int n)
{
    struct job_new jn = {.queue = "bulk", .payload = "{\"n\":1}", .max_attempts = 5};
    char key[32];
    int64_t id, first = 0, dup;
    struct job j;

    jn.run_at = t->now;
    jn.dedupe_key = key;
    ck_assert_int_eq(store->savepoint(st_conn), 0);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(OPS->find_dedupe(t, "bulk", key, &dup), 0);
        ck_assert_int_eq(OPS->insert(t, &jn, &id, &j), 0);
        ck_assert_str_eq(j.dedupe_key, key);
        job_free(&j);
        if (!i)
            first = id;
        ck_assert_int_eq(id, first + i);
    }
    ck_assert_int_eq(store->release(st_conn), 0);
}

/* A bulk enqueue is all or nothing with its transaction: 1000 inserts
 * rolled back leave no job; 10^4 committed leave every one, and take time
 * in proportion to n (no per-statement journal: see change_row). */
START_TEST(bulk_insert_one_transaction)
{
    struct tx t;
    double t0, ms;

    st_begin(st_conn, &t);
    bulk_insert(&t, 1000);
    st_rollback(&t);
    ck_assert_int_eq(bulk_pending(), 0);

    st_begin(st_conn, &t);
    t0 = mono_ms();
    bulk_insert(&t, 10000);
    ms = mono_ms() - t0;
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(bulk_pending(), 10000);
    /* well under a second on a quiet machine; generous for a loaded one */
    ck_assert_msg(ms < 5000, "10^4 inserts in one transaction took %.0f ms", ms);
}
END_TEST

/* ---- ordered keys ------------------------------------------------------------- */

/* Insert a job of queue q with order key (NULL: none) in t; its id. */
static int64_t
put_key(struct tx *t, const char *q, const char *key, int64_t priority, int64_t run_offset_ms)
{
    struct job_new n = {.queue = q, .payload = "1", .priority = priority, .max_attempts = 5,
                        .order_key = key};
    int64_t id = 0;

    n.run_at = t->now + run_offset_ms;
    ck_assert_int_eq(OPS->insert(t, &n, &id, NULL), 0);
    return id;
}

/* Claim one job of q in its own transaction: the id (0 when none); its
 * token into tok. */
static int64_t
take(const char *q, int64_t lock_ms, char *tok, size_t n)
{
    int64_t id = 0;
    int rc = claim_one(st_conn, q, lock_ms, &id, tok, n);

    ck_assert_msg(rc == 0 || rc == 1, "claim answered %d", rc);
    return rc == 1 ? id : 0;
}

static void
done(int64_t id, const char *tok)
{
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->complete(&t, id, tok, NULL, NULL), 1);
    ck_assert_int_eq(st_commit(&t), 0);
}

/* The jobs of one key are claimed one at a time, in id order whatever
 * their priority; other keys and jobs without a key are claimed meanwhile
 * (no head-of-line blocking); a completion or a final failure passes the
 * key to the next job. insert and get show the key and whether the job
 * waits behind it. */
START_TEST(order_key_one_at_a_time_in_id_order)
{
    struct tx t;
    struct job j;
    int64_t a1, a2, a3, b1, u, id;
    char tok[80], tok2[80], tok3[80];

    st_begin(st_conn, &t);
    a1 = put_key(&t, "q", "a", 0, -100);
    a2 = put_key(&t, "q", "a", 0, -100);
    a3 = put_key(&t, "q", "a", 9, -100);         /* a higher priority does not jump its key */
    b1 = put_key(&t, "q", "b", 0, -100);
    u = put_key(&t, "q", NULL, 0, -100);
    ck_assert_int_eq(OPS->get(&t, a1, &j), 1);
    ck_assert_str_eq(j.order_key, "a");
    ck_assert(!j.held);
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, a3, &j), 1);
    ck_assert(j.held);
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, u, &j), 1);
    ck_assert_ptr_null(j.order_key);
    ck_assert(!j.held);
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a1);
    ck_assert_int_eq(take("q", 60000, tok2, sizeof tok2), b1);
    ck_assert_int_eq(take("q", 60000, tok3, sizeof tok3), u);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);      /* a2, a3 wait behind a1 */
    done(b1, tok2);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);      /* b's completion frees nothing of a */
    done(a1, tok);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a2);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->fail_final(&t, a2, tok, "boom", NULL, NULL), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    id = take("q", 60000, tok, sizeof tok);
    ck_assert_int_eq(id, a3);
    done(a3, tok);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);
}
END_TEST

/* A job of a key that failed and waits for its retry (pending, run_at
 * later) keeps the jobs behind it waiting; next_due names its retry, not
 * the due time of a job behind it; once due it is claimed first. */
START_TEST(order_key_retrying_job_holds_its_key)
{
    struct tx t;
    int64_t a1, a2, a3, due, id;
    char tok[80];

    st_begin(st_conn, &t);
    a1 = put_key(&t, "q", "k", 0, -100);
    a2 = put_key(&t, "q", "k", 0, -100);
    a3 = put_key(&t, "q", "k", 0, 200);           /* due before a1's retry, but behind it */
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->fail_retry(&t, a1, tok, t.now + 600, "flaky", NULL, NULL), 1);
    ck_assert_int_eq(OPS->next_due(&t, "q", &due), 0);
    ck_assert_int_eq(due, t.now + 600);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);      /* a2 is due but waits for a1 */
    sleep_ms(700);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a1);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);
    done(a1, tok);
    id = take("q", 60000, tok, sizeof tok);
    ck_assert_int_eq(id, a2);
    done(a2, tok);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a3);
}
END_TEST

/* An expired lock of a key's job: requeued, the job is claimed again
 * before the jobs behind it; failed for good, the key passes on. */
START_TEST(order_key_expired_lock_frees_the_key)
{
    struct tx t;
    struct job j;
    int64_t a1, a2;
    char tok[80];

    st_begin(st_conn, &t);
    a1 = put_key(&t, "q", "k", 0, -100);
    a2 = put_key(&t, "q", "k", 0, -100);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", -1000, tok, sizeof tok), a1);   /* its lock is already over */
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->claim(&t, "q", "w2", t.now + 60000, "c_x", NULL, &j), 2);
    ck_assert_int_eq(j.id, a1);
    job_free(&j);
    ck_assert_int_eq(OPS->requeue_expired(&t, a1, NULL), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", -1000, tok, sizeof tok), a1);   /* again, and again it dies */
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->claim(&t, "q", "w2", t.now + 60000, "c_x", NULL, &j), 2);
    ck_assert_int_eq(j.id, a1);
    job_free(&j);
    ck_assert_int_eq(OPS->fail_final(&t, a1, NULL, "lock_expired", NULL, NULL), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a2);
}
END_TEST

/* Claim the one due job of queue q as worker with its lock ending at
 * now + lock_ms (its own transaction); its id. */
static int64_t
claim_as(const char *q, const char *worker, int64_t lock_ms)
{
    struct tx t;
    struct job j;
    int64_t id;

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->claim(&t, q, worker, t.now + lock_ms, "c_tok", NULL, &j), 1);
    id = j.id;
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);
    return id;
}

/* The set-based sweep: expired locks in expiry order, each as it was
 * (worker, queue, key, attempts); the ones with attempts left requeued
 * (lock, worker and token cleared, run_at and attempts kept), the others
 * failed with the message given (their worker kept) and their key passed
 * to the job behind; a requeued keyed job keeps its key; a lock not yet
 * expired is left alone; a second sweep finds nothing. */
START_TEST(expire_locks_requeue_and_fail_in_expiry_order)
{
    struct job_new jn = {.payload = "1", .max_attempts = 5};
    int64_t a, b, c, d, e, f, g, run_at;
    struct job_expiry *v;
    struct tx t;
    struct job j;
    size_t n;
    bool more;

    st_begin(st_conn, &t);
    run_at = jn.run_at = t.now - 100;
    jn.queue = "qa";
    ck_assert_int_eq(OPS->insert(&t, &jn, &a, NULL), 0);
    jn.queue = "qc";
    ck_assert_int_eq(OPS->insert(&t, &jn, &c, NULL), 0);
    jn.queue = "ql";
    jn.order_key = "l";
    ck_assert_int_eq(OPS->insert(&t, &jn, &f, NULL), 0);
    ck_assert_int_eq(OPS->insert(&t, &jn, &g, NULL), 0);
    jn.max_attempts = 1;
    jn.queue = "qk";
    jn.order_key = "k";
    ck_assert_int_eq(OPS->insert(&t, &jn, &d, NULL), 0);
    ck_assert_int_eq(OPS->insert(&t, &jn, &e, NULL), 0);
    jn.queue = "qb";
    jn.order_key = NULL;
    ck_assert_int_eq(OPS->insert(&t, &jn, &b, NULL), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    ck_assert_int_eq(claim_as("qk", "wd", -1000), d);
    ck_assert_int_eq(claim_as("qa", "w\"a\n", -3000), a);
    ck_assert_int_eq(claim_as("qc", "wc", 60000), c);
    ck_assert_int_eq(claim_as("ql", "", -500), f);
    ck_assert_int_eq(claim_as("qb", "wb", -2000), b);

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->expire_locks(&t, 10, "gone for good", &v, &n, &more), 0);
    ck_assert_int_eq(n, 4);
    ck_assert(!more);
    ck_assert_int_eq(v[0].id, a);
    ck_assert_int_eq(v[1].id, b);
    ck_assert_int_eq(v[2].id, d);
    ck_assert_int_eq(v[3].id, f);
    ck_assert(!v[0].failed && v[1].failed && v[2].failed && !v[3].failed);
    ck_assert_str_eq(v[0].worker, "w\"a\n");
    ck_assert_str_eq(v[1].worker, "wb");
    ck_assert_ptr_null(v[3].worker);            /* an empty worker id is none */
    ck_assert_str_eq(v[0].queue, "qa");
    ck_assert_str_eq(v[2].queue, "qk");
    ck_assert_ptr_null(v[0].order_key);
    ck_assert_str_eq(v[2].order_key, "k");
    ck_assert_str_eq(v[3].order_key, "l");
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(v[i].attempts, 1);
    free(v);

    ck_assert_int_eq(OPS->get(&t, a, &j), 1);
    ck_assert_int_eq(j.status, JOB_PENDING);
    ck_assert_ptr_null(j.locked_by);
    ck_assert_ptr_null(j.claim_token);
    ck_assert(j.locked_until == JOB_NONE);
    ck_assert_int_eq(j.attempts, 1);
    ck_assert_int_eq(j.run_at, run_at);
    ck_assert_str_eq(j.error_reason, "lock_expired");
    ck_assert_str_eq(j.error_message, "the lock expired before the job finished");
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, b, &j), 1);
    ck_assert_int_eq(j.status, JOB_FAILED);
    ck_assert_str_eq(j.locked_by, "wb");
    ck_assert_ptr_null(j.claim_token);
    ck_assert(j.locked_until == JOB_NONE);
    ck_assert_str_eq(j.error_reason, "lock_expired");
    ck_assert_str_eq(j.error_message, "gone for good");
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, c, &j), 1);
    ck_assert_int_eq(j.status, JOB_PROCESSING);
    ck_assert_str_eq(j.claim_token, "c_tok");
    job_free(&j);
    ck_assert_int_eq(OPS->get(&t, d, &j), 1);
    ck_assert_int_eq(j.status, JOB_FAILED);
    job_free(&j);
    ck_assert_int_eq(OPS->expire_locks(&t, 10, "gone for good", &v, &n, &more), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(st_commit(&t), 0);

    /* d's key passed to e; f kept its key, so g still waits */
    ck_assert_int_eq(take("qk", 60000, NULL, 0), e);
    ck_assert_int_eq(take("ql", 60000, NULL, 0), f);
    ck_assert_int_eq(take("ql", 60000, NULL, 0), 0);
    ck_assert_int_eq(take("qa", 60000, NULL, 0), a);
    ck_assert_int_eq(take("qb", 60000, NULL, 0), 0);
}
END_TEST

/* An operator's fail of a job waiting behind its key passes nothing on
 * (the holder still runs); the operator's retry of it puts it back in
 * line behind the current holder, not beside it. */
START_TEST(order_key_operator_fail_and_retry_keep_one_at_a_time)
{
    struct tx t;
    struct job j;
    int64_t a1, a2, a3;
    char tok[80];

    st_begin(st_conn, &t);
    a1 = put_key(&t, "q", "k", 0, -100);
    a2 = put_key(&t, "q", "k", 0, -100);
    a3 = put_key(&t, "q", "k", 0, -100);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a1);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->fail_final(&t, a2, NULL, "cancelled", NULL, NULL), 1);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);      /* a1 still holds the key */
    done(a1, tok);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a3);
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->retry(&t, a2, &j), 1);
    ck_assert_int_eq(j.status, JOB_PENDING);
    ck_assert(j.held);
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, NULL, 0), 0);      /* a3 runs: a2 waits */
    done(a3, tok);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a2);
    /* the retry of the job that holds the key keeps it claimable */
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->retry(&t, a2, &j), 1);
    ck_assert(!j.held);
    job_free(&j);
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(take("q", 60000, tok, sizeof tok), a2);
}
END_TEST

/* Racing claimers never hold two jobs of one key at once. */
#define RACE_KEYS 6
#define RACE_PER_KEY 4

static int
race_claim(struct tx *t, int i, void *arg)
{
    int64_t *got = arg;
    struct job j;
    char tok[32];
    int rc;

    snprintf(tok, sizeof tok, "c_race%d", i);
    rc = OPS->claim(t, "q", "w", t->now + 60000, tok, NULL, &j);
    got[i] = rc == 1 ? j.id : 0;
    if (rc > 0)
        job_free(&j);
    return rc;
}

START_TEST(order_key_racing_claims_one_per_key)
{
    int64_t ids[RACE_KEYS][RACE_PER_KEY], got[16];
    int rcs[16], n = 0;
    struct tx t;

    st_begin(st_conn, &t);
    for (int r = 0; r < RACE_PER_KEY; r++)
        for (int k = 0; k < RACE_KEYS; k++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", k);
            ids[k][r] = put_key(&t, "q", key, 0, -100);
        }
    ck_assert_int_eq(st_commit(&t), 0);
    st_race(16, race_claim, got, rcs);
    for (int i = 0; i < 16; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        if (rcs[i] != 1)
            continue;
        n++;
        /* only the first job of each key is claimable */
        bool first = false;
        for (int k = 0; k < RACE_KEYS; k++)
            first |= got[i] == ids[k][0];
        ck_assert_msg(first, "racer %d claimed job %lld, not the first of its key", i, (long long)got[i]);
        for (int o = 0; o < i; o++)
            ck_assert(rcs[o] != 1 || got[o] != got[i]);
    }
    ck_assert_int_eq(n, RACE_KEYS);
}
END_TEST

static int
count_jobs(const struct job *j, void *arg)
{
    (void)j;
    ++*(int *)arg;
    return 0;
}

/* The active jobs of key `key` in queue q (read): how many, how many hold
 * the key, the lowest id and the holder's. */
struct key_state {
    const char *key;
    int active, holders;
    int64_t lowest, holder;
    int64_t ids[16];                /* the first 16 */
};

static int
key_row(const struct job *j, void *arg)
{
    struct key_state *k = arg;

    if (!j->order_key || strcmp(j->order_key, k->key))
        return 0;
    if (k->active < 16)
        k->ids[k->active] = j->id;
    if (!k->active++ || j->id < k->lowest)
        k->lowest = j->id;
    if (!j->held) {
        k->holders++;
        k->holder = j->id;
    }
    return 0;
}

static struct key_state
key_state(const char *key)
{
    struct key_state k = {.key = key};
    struct tx t;

    st_read(&t);
    ck_assert_int_eq(OPS->pending(&t, "q", 10000, key_row, &k), 0);
    tx_read_end(&t);
    return k;
}

static int
race_insert_key(struct tx *t, int i, void *arg)
{
    int64_t *got = arg;

    got[i] = put_key(t, "q", "k", 0, -100);
    return 0;
}

/* 8 writers on their own connections enqueue jobs of one key at once:
 * exactly one of them holds the key, the earliest, and the key's jobs are
 * then claimed one at a time in id order. */
START_TEST(order_key_racing_inserts_leave_one_holder)
{
    int64_t got[8], prev = 0, id;
    int rcs[8];
    struct key_state k;
    char tok[80];

    st_race(8, race_insert_key, got, rcs);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(rcs[i] == 0, "racer %d: %d", i, rcs[i]);
    k = key_state("k");
    ck_assert_int_eq(k.active, 8);
    ck_assert_int_eq(k.holders, 1);
    ck_assert_int_eq(k.holder, k.lowest);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_gt(id = take("q", 60000, tok, sizeof tok), prev);
        ck_assert_int_eq(take("q", 60000, NULL, 0), 0);
        done(id, tok);
        prev = id;
    }
}
END_TEST

struct pass_race {
    int64_t holder;
    char token[80];
    char key[16];
};

/* racer 0 completes the holder of the key, the others enqueue behind it */
static int
race_pass_key(struct tx *t, int i, void *arg)
{
    struct pass_race *p = arg;

    if (i == 0)
        return OPS->complete(t, p->holder, p->token, NULL, NULL) == 1 ? 0 : -1;
    put_key(t, "q", p->key, 0, -100);
    return 0;
}

/* A completion that passes a key on, racing enqueues of the same key on
 * other connections: afterwards exactly one active job holds the key (the
 * earliest), never none -- a key nobody holds would never be claimed
 * again -- and never two. Several rounds, a key each. */
START_TEST(order_key_completion_racing_inserts_leaves_one_holder)
{
    for (int round = 0; round < 12; round++) {
        struct pass_race p;
        struct key_state k;
        struct tx t;
        int rcs[8];

        snprintf(p.key, sizeof p.key, "r%d", round);
        st_begin(st_conn, &t);
        p.holder = put_key(&t, "q", p.key, 0, -100);
        ck_assert_int_eq(st_commit(&t), 0);
        ck_assert_int_eq(take("q", 60000, p.token, sizeof p.token), p.holder);
        st_race(8, race_pass_key, &p, rcs);
        for (int i = 0; i < 8; i++)
            ck_assert_msg(rcs[i] == 0, "round %d racer %d: %d", round, i, rcs[i]);
        k = key_state(p.key);
        ck_assert_int_eq(k.active, 7);
        ck_assert_msg(k.holders == 1, "round %d: %d jobs hold the key", round, k.holders);
        ck_assert_int_eq(k.holder, k.lowest);
        /* the holder is claimable, and is what the next claim takes */
        char tok[80];
        int64_t id = take("q", 60000, tok, sizeof tok);
        ck_assert_int_eq(id, k.holder);
        done(id, tok);
        /* leave the key's other jobs out of the next rounds' claims */
        st_begin(st_conn, &t);
        for (int i = 0; i < k.active; i++)
            if (k.ids[i] != id)
                ck_assert_int_eq(OPS->fail_final(&t, k.ids[i], NULL, "cancelled", NULL, NULL), 1);
        ck_assert_int_eq(st_commit(&t), 0);
        ck_assert_int_eq(key_state(p.key).active, 0);
    }
}
END_TEST

/* a claimer as the writer runs it: an expired lock (2) is taken back in
 * the same transaction, which must find it still expired (-3 otherwise),
 * then the claim runs again */
static int
race_claim_expired(struct tx *t, int i, void *arg)
{
    int64_t *got = arg;
    struct job j;
    char tok[32];
    int rc;

    snprintf(tok, sizeof tok, "c_exp%d", i);
    got[i] = 0;
    while ((rc = OPS->claim(t, "q", "w", t->now + 60000, tok, NULL, &j)) == 2) {
        int back = OPS->requeue_expired(t, j.id, NULL);
        job_free(&j);
        if (back != 1)
            return back < 0 ? -1 : -3;
    }
    if (rc == 1) {
        got[i] = j.id;
        job_free(&j);
    }
    return rc;
}

/* 8 claimers on their own connections find the same expired lock: the
 * job is taken back once and claimed by exactly one of them; no one finds
 * it changed under it while taking it back. */
START_TEST(expired_lock_racing_claimers_take_it_back_once)
{
    int64_t id = put("q", 0, 0), got[8];
    int rcs[8], winners = 0;
    struct tx t;
    struct job j;

    ck_assert_int_eq(take("q", -1000, NULL, 0), id);       /* its lock is already over */
    st_race(8, race_claim_expired, got, rcs);
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        if (rcs[i] == 1) {
            ck_assert_int_eq(got[i], id);
            winners++;
        }
    }
    ck_assert_int_eq(winners, 1);
    st_read(&t);
    ck_assert_int_eq(OPS->get(&t, id, &j), 1);
    ck_assert_int_eq(j.status, JOB_PROCESSING);
    ck_assert_int_eq(j.attempts, 2);
    job_free(&j);
    tx_read_end(&t);
}
END_TEST

#define SWEPT 20

/* a stale sweep as the writer runs it: every lock it read is taken back */
static int
race_sweep(struct tx *t, int i, void *arg)
{
    int (*seen)[SWEPT] = arg;
    struct job_expiry *v;
    size_t n;
    bool more;

    /* -1 also when a lock it read was no longer expired when changed */
    if (OPS->expire_locks(t, SWEPT, "m", &v, &n, &more) < 0)
        return -1;
    for (size_t k = 0; k < n; k++)
        seen[i][k] = (int)v[k].id;
    free(v);
    return (int)n;
}

/* 4 sweeps on their own connections at once: each expired lock is taken
 * back by exactly one of them, and none finds a lock it listed already
 * taken back by another. */
START_TEST(racing_sweeps_take_each_lock_back_once)
{
    int64_t first = 0;
    int seen[4][SWEPT], rcs[4], count[SWEPT] = {0}, total = 0;

    for (int i = 0; i < SWEPT; i++) {
        int64_t id = put("q", i, 0);
        if (!i)
            first = id;
        ck_assert_int_eq(take("q", -1000, NULL, 0), id);
    }
    memset(seen, 0, sizeof seen);
    st_race(4, race_sweep, seen, rcs);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(rcs[i] >= 0, "sweep %d: %d", i, rcs[i]);
        for (int k = 0; k < rcs[i]; k++)
            count[seen[i][k] - first]++;
        total += rcs[i];
    }
    ck_assert_int_eq(total, SWEPT);
    for (int i = 0; i < SWEPT; i++)
        ck_assert_int_eq(count[i], 1);
}
END_TEST

/* an enqueue with a dedupe key, as jobs.c runs it: look, then insert */
static int
race_dedupe(struct tx *t, int i, void *arg)
{
    struct job_new n = {.queue = "q", .payload = "1", .max_attempts = 5, .dedupe_key = "once"};
    int64_t *got = arg, id;
    int rc = OPS->find_dedupe(t, "q", "once", &id);

    (void)i;
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    n.run_at = t->now;
    if (OPS->insert(t, &n, &id, NULL) < 0)
        return -1;
    *got = id;
    return 1;
}

/* 8 writers on their own connections enqueue with one dedupe key at once:
 * one job is created, and the others find it. */
START_TEST(racing_enqueues_of_one_dedupe_key_give_one_job)
{
    int64_t got = 0, found = 0;
    int rcs[8], created = 0;
    struct job_filter f = {.queue = "q", .status = -1, .before_id = INT64_MAX, .limit = 100};
    struct tx t;

    st_race(8, race_dedupe, &got, rcs);
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(rcs[i] == 0 || rcs[i] == 1, "racer %d: %d", i, rcs[i]);
        created += rcs[i];
    }
    ck_assert_int_eq(created, 1);
    st_read(&t);
    ck_assert_int_eq(OPS->find_dedupe(&t, "q", "once", &found), 1);
    ck_assert_int_eq(found, got);
    created = 0;
    ck_assert_int_eq(OPS->list(&t, &f, count_jobs, &created), 0);
    ck_assert_int_eq(created, 1);
    tx_read_end(&t);
}
END_TEST

void
store_cases_jobs(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("jobs");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, insert_get_round_trip);
    tcase_add_test(tc, claim_order_and_delay);
    tcase_add_test(tc, delayed_job_becomes_claimable);
    tcase_add_test(tc, expired_lock_reclaim_and_stale_token);
    tcase_add_test(tc, sweep_and_prune_in_chunks);
    tcase_add_test(tc, claims_exactly_once_concurrently);
    tcase_add_test(tc, bulk_insert_one_transaction);
    tcase_add_test(tc, order_key_one_at_a_time_in_id_order);
    tcase_add_test(tc, order_key_retrying_job_holds_its_key);
    tcase_add_test(tc, order_key_expired_lock_frees_the_key);
    tcase_add_test(tc, expire_locks_requeue_and_fail_in_expiry_order);
    tcase_add_test(tc, order_key_operator_fail_and_retry_keep_one_at_a_time);
    tcase_add_test(tc, order_key_racing_claims_one_per_key);
    tcase_add_test(tc, order_key_racing_inserts_leave_one_holder);
    tcase_add_test(tc, order_key_completion_racing_inserts_leaves_one_holder);
    tcase_add_test(tc, expired_lock_racing_claimers_take_it_back_once);
    tcase_add_test(tc, racing_sweeps_take_each_lock_back_once);
    tcase_add_test(tc, racing_enqueues_of_one_dedupe_key_give_one_job);
    suite_add_tcase(s, tc);
}
