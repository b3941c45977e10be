/* store_pg_jobs.c -- the jobs operations of the PostgreSQL store (store.h,
 * struct store_jobs): all SQL of the jobs table on PostgreSQL.
 *
 * DESIGN
 * The semantics are those of store_sqlite_jobs.c (the same conformance
 * cases); what differs is that several batond processes (replicas) write
 * at once, each on its own connection at READ COMMITTED, where SQLite had
 * one writer. So every operation that decides and writes is one statement,
 * or takes a lock first, and this is how each stays correct with two
 * replicas:
 *
 * - claim is one statement: a CTE picks the best due pending job holding
 *   its key with FOR UPDATE SKIP LOCKED (the CTE fences the LIMIT, so the
 *   lock is taken on the row picked and a row another replica is claiming
 *   is skipped, not waited for), another picks the best expired lock the
 *   same way, and an UPDATE .. FROM takes the pending one only when no
 *   expired lock ranks before it. A row changed and committed by another
 *   replica after the statement's snapshot is re-checked by the lock
 *   (PostgreSQL re-evaluates the WHERE on the newest version), so a job is
 *   claimed exactly once across connections. An expired lock is answered
 *   (2) untouched but locked by this transaction, so that the caller's
 *   requeue_expired or fail_final in the same transaction finds it as it
 *   was; another replica skips it meanwhile. The candidate not taken
 *   (an expired lock ranking below the job claimed, or the pending job
 *   ranking below an expired lock) stays locked until the transaction
 *   ends: other replicas pass over it for that long, which costs them
 *   nothing but order.
 * - expire_locks (the stale sweep) locks the chunk it reads the same way
 *   (SKIP LOCKED): two replicas sweeping at once take disjoint chunks, and
 *   each one's UPDATEs find their jobs still expired. prune deletes a
 *   chunk chosen with SKIP LOCKED too.
 * - the transitions (heartbeat, complete, fail_retry, unclaim,
 *   requeue_expired, fail_final) are single UPDATEs conditional on the
 *   row's state and claim token: of two concurrent ones on a row the
 *   second waits for the first's row lock, re-evaluates its WHERE on the
 *   new row and matches nothing. Each answers the row with RETURNING.
 * - ordered keys (store.h): "exactly one active job of a (queue,
 *   order_key) holds it" spans rows, and at READ COMMITTED two
 *   transactions deciding from their own snapshots would break it (two
 *   inserts each seeing no active job both hold the key; a completion
 *   passing the key while an insert sees the completing job still active
 *   leaves nobody holding it). So insert, complete, fail_final and retry
 *   of a keyed job take pg_advisory_xact_lock on a hash of (queue,
 *   order_key) and only then, in a statement of their own (a new snapshot
 *   that sees every transaction that held the lock before), decide who
 *   holds the key. The lock is per key: other keys and jobs without a key
 *   never wait for it, and a job without a key pays nothing. Claim needs
 *   no lock: it only takes jobs that hold their key, and holding is
 *   changed only under the lock. complete, fail_final and retry take the
 *   row lock (their UPDATE) before the key's lock; insert takes no row
 *   lock. A batch that mixes keys may still deadlock with another
 *   replica's batch; PostgreSQL then aborts one, and the batch is run
 *   again (store->conflict: the writer runs a batch that lost one again).
 * - find_dedupe takes an advisory lock on (queue, dedupe key) before it
 *   looks (jobs_find_dedupe, one round trip): the enqueue that follows in
 *   the same transaction is then seen by another replica's look for the
 *   same key, so a key gives one job.
 */
#include <string.h>

#include "store_pg.h"

#define JOB_COLS                                                                              \
    "id, queue, status, payload, priority, run_at, attempts, max_attempts, locked_by,"        \
    " locked_until, claim_token, started_at, completed_at, error_reason, error_message,"      \
    " result, created_at, updated_at, dedupe_key, conversation_id, message_id, order_key, held,"   \
    " rate_key"

/* the lock of a (queue, order_key): $1 queue, $2 key (0x1f cannot appear in a queue name) */
#define KEY_LOCK "pg_advisory_xact_lock(hashtextextended($1::text || E'\\x1f' || $2::text, 0))"

static enum job_status
status_of(const char *s)
{
    if (!s)
        return JOB_FAILED;
    if (s[0] == 'p')
        return s[1] == 'e' ? JOB_PENDING : JOB_PROCESSING;
    return s[0] == 'c' ? JOB_COMPLETED : JOB_FAILED;
}

/* Row `row` of r, whose columns from `base` on are JOB_COLS, into *j.
 * copy: the strings into one new block (j->mem); otherwise borrowed from
 * r. -1 when out of memory. */
static int
job_fill(const PGresult *r, int row, int base, struct job *j, bool copy)
{
    static const int cols[] = {1, 3, 8, 10, 13, 14, 15, 18, 19, 20, 21, 23};
    const char **dst[] = {&j->queue, &j->payload, &j->locked_by, &j->claim_token, &j->error_reason,
                          &j->error_message, &j->result, &j->dedupe_key, &j->conversation_id,
                          &j->message_id, &j->order_key, &j->rate_key};
    size_t len[sizeof cols / sizeof cols[0]];

    j->id = pg_int(r, row, base + 0, 0);
    j->status = status_of(pg_str(r, row, base + 2));
    j->priority = pg_int(r, row, base + 4, 0);
    j->run_at = pg_int(r, row, base + 5, 0);
    j->attempts = pg_int(r, row, base + 6, 0);
    j->max_attempts = pg_int(r, row, base + 7, 0);
    j->locked_until = pg_int(r, row, base + 9, JOB_NONE);
    j->started_at = pg_int(r, row, base + 11, JOB_NONE);
    j->completed_at = pg_int(r, row, base + 12, JOB_NONE);
    j->created_at = pg_int(r, row, base + 16, 0);
    j->updated_at = pg_int(r, row, base + 17, 0);
    j->held = pg_bool(r, row, base + 22);
    j->mem = NULL;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        *dst[i] = pg_str(r, row, base + cols[i]);
        len[i] = (size_t)PQgetlength(r, row, base + cols[i]);
    }
    return copy ? strings_own(dst, len, sizeof cols / sizeof cols[0], &j->mem) : 0;
}

/* The answer of a statement returning at most one row of JOB_COLS (from
 * column base) into out (may be NULL); r is cleared. 1 a row, 0 none, -1
 * with t->err set. */
static int
take_row(struct tx *t, PGresult *r, int base, struct job *out)
{
    int rows;

    if (out)
        memset(out, 0, sizeof *out);
    if (!r)
        return -1;
    rows = PQntuples(r);
    if (rows > 0 && out && job_fill(r, 0, base, out, true) < 0) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    PQclear(r);
    return rows > 0 ? 1 : 0;
}

/* Run a statement without rows to answer; 0 or -1. */
static int
run(PGresult *r)
{
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* ---- ordered keys ------------------------------------------------------------ */

/* Take the lock of (queue, key) for the rest of the transaction. */
static int
key_lock(struct tx *t, const char *queue, const char *key)
{
    const char *p[] = {queue, key};

    return run(pg_exec(t, "SELECT " KEY_LOCK, 2, p));
}

/* The job j (changed just now, as it is now) has left its key's active
 * jobs: under the key's lock, when no active job of the key holds it any
 * more, the earliest waiting one takes it. Nothing for a job without a key. */
static int
key_pass(struct tx *t, const struct job *j)
{
    const char *p[] = {j->queue, j->order_key};

    if (!j->order_key)
        return 0;
    if (key_lock(t, j->queue, j->order_key) < 0)
        return -1;
    return run(pg_exec(t,
        "UPDATE jobs SET held = false WHERE id = (SELECT id FROM jobs"
        "   WHERE queue = $1 AND order_key = $2 AND status IN ('pending', 'processing') AND held"
        "   ORDER BY id LIMIT 1)"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE queue = $1 AND order_key = $2"
        "   AND status IN ('pending', 'processing') AND NOT held)", 2, p));
}

/* A transition that takes the job out of its key's active jobs: r is its
 * UPDATE .. RETURNING JOB_COLS. The row goes to out (may be NULL); the key
 * passes on. 1 changed, 0 not, -1. */
static int
change_leave(struct tx *t, PGresult *r, struct job *out)
{
    struct job own;
    int rc = take_row(t, r, 0, &own);

    if (out)
        memset(out, 0, sizeof *out);
    if (rc <= 0)
        return rc;
    if (key_pass(t, &own) < 0) {
        job_free(&own);
        return -1;
    }
    if (out)
        *out = own;
    else
        job_free(&own);
    return 1;
}

/* ---- insert and lookups --------------------------------------------------- */

static int
pg_insert(struct tx *t, const struct job_new *n, int64_t *id, struct job *out)
{
    char prio[24], run_at[24], max[24], now[24];
    /* $10 is the order key, $11 the rate key; without an order key $10 is the rate key */
    const char *p[] = {n->queue, n->payload, pg_i64(prio, n->priority), pg_i64(run_at, n->run_at),
                       pg_i64(max, n->max_attempts), pg_i64(now, t->now), n->dedupe_key,
                       n->conversation_id, n->message_id, n->order_key, n->rate_key};
    struct job own;
    PGresult *r;
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    if (!n->order_key) {
        /* a job without a key: one statement */
        p[9] = n->rate_key;
        r = pg_exec(t, "INSERT INTO jobs(queue, status, payload, priority, run_at, max_attempts,"
                       " created_at, updated_at, dedupe_key, conversation_id, message_id, rate_key)"
                       " VALUES($1, 'pending', $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)"
                       " RETURNING " JOB_COLS, 10, p);
    } else {
        /* held when an active job of the key exists, judged under the key's lock */
        if (key_lock(t, n->queue, n->order_key) < 0)
            return -1;
        r = pg_exec(t, "INSERT INTO jobs(queue, status, payload, priority, run_at, max_attempts,"
                       " created_at, updated_at, dedupe_key, conversation_id, message_id, order_key,"
                       " rate_key, held)"
                       " VALUES($1, 'pending', $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11,"
                       " EXISTS (SELECT 1 FROM jobs WHERE queue = $1 AND order_key = $10"
                       "   AND status IN ('pending', 'processing'))) RETURNING " JOB_COLS,
                       11, p);
    }
    if ((rc = take_row(t, r, 0, &own)) < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "internal", NULL, "database error: the inserted job is not there");
    *id = own.id;
    if (out)
        *out = own;
    else
        job_free(&own);
    return 0;
}

static int
pg_get(struct tx *t, int64_t id, struct job *out)
{
    char ids[24];
    const char *p[] = {pg_i64(ids, id)};

    return take_row(t, pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE id = $1", 1, p), 0, out);
}

/* jobs_find_dedupe (002_jobs.sql) looks under a lock on (queue, key), so
 * that two replicas enqueuing with one key give one job (DESIGN). */
static int
pg_find_dedupe(struct tx *t, const char *queue, const char *key, int64_t *id)
{
    const char *p[] = {queue, key};
    PGresult *r = pg_exec(t, "SELECT jobs_find_dedupe($1, $2)", 2, p);
    int found;

    if (!r)
        return -1;
    if ((found = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)))
        *id = pg_int(r, 0, 0, 0);
    PQclear(r);
    return found;
}

/* ---- claim ------------------------------------------------------------------- */

/* One statement (DESIGN): pend and exp each lock their candidate; won is
 * the pending one claimed unless the expired one ranks before it; the
 * answer's first column says which (1 claimed, 2 expired). With a key
 * limit, pend passes over the jobs whose rate key has had `limit` claims
 * in the window ($6, $7), counted after the queue's rate lock (a statement
 * of its own, so that this one's snapshot holds every record committed
 * under it: store_pg_queues.c). */
#define CLAIM(pending_filter)                                                                  \
    "WITH pend AS MATERIALIZED ("                                                              \
    "  SELECT id AS pick, priority AS pick_priority, run_at AS pick_run_at FROM jobs"          \
    "  WHERE queue = $1 AND status = 'pending' AND NOT held AND run_at <= $2" pending_filter    \
    "  ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),"                    \
    " exp AS MATERIALIZED ("                                                                   \
    "  SELECT " JOB_COLS " FROM jobs"                                                          \
    "  WHERE queue = $1 AND status = 'processing' AND locked_until < $2"                       \
    "  ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),"                    \
    " won AS ("                                                                                \
    "  UPDATE jobs SET status = 'processing', locked_by = $3, locked_until = $4, claim_token = $5," \
    "   attempts = attempts + 1, started_at = $2, updated_at = $2"                             \
    "  FROM pend WHERE jobs.id = pend.pick AND NOT EXISTS (SELECT 1 FROM exp"                  \
    "   WHERE exp.priority > pend.pick_priority OR (exp.priority = pend.pick_priority"         \
    "    AND (exp.run_at, exp.id) < (pend.pick_run_at, pend.pick)))"                           \
    "  RETURNING jobs.id, jobs.queue, jobs.status, jobs.payload, jobs.priority, jobs.run_at,"   \
    "   jobs.attempts, jobs.max_attempts, jobs.locked_by, jobs.locked_until, jobs.claim_token," \
    "   jobs.started_at, jobs.completed_at, jobs.error_reason, jobs.error_message, jobs.result," \
    "   jobs.created_at, jobs.updated_at, jobs.dedupe_key, jobs.conversation_id, jobs.message_id," \
    "   jobs.order_key, jobs.held, jobs.rate_key)"                                             \
    " SELECT 1, * FROM won"                                                                    \
    " UNION ALL SELECT 2, * FROM exp WHERE NOT EXISTS (SELECT 1 FROM won)"

static int
pg_claim(struct tx *t, const char *queue, const char *worker, int64_t lock_until, const char *token,
         const struct rate_limit *key_rate, struct job *out)
{
    char now[24], until[24], limit[24], period[24];
    const char *p[] = {queue, pg_i64(now, t->now), worker, pg_i64(until, lock_until), token,
                       key_rate ? pg_i64(limit, key_rate->limit) : NULL,
                       key_rate ? pg_i64(period, key_rate->period_ms) : NULL};
    PGresult *r;
    int how, rc;

    if (out)
        memset(out, 0, sizeof *out);
    if (key_rate) {
        if (pg_rate_lock(t, queue) < 0)
            return -1;
        r = pg_exec(t, CLAIM(" AND (rate_key IS NULL OR (SELECT at FROM rate_claims WHERE queue = $1"
                             "   AND key = jobs.rate_key AND at > $2::bigint - $7::bigint"
                             "   ORDER BY at DESC LIMIT 1 OFFSET $6::bigint - 1) IS NULL)"), 7, p);
    } else
        r = pg_exec(t, CLAIM(""), 5, p);
    if (!r)
        return -1;
    how = PQntuples(r) > 0 ? (int)pg_int(r, 0, 0, 0) : 0;
    if ((rc = take_row(t, r, 1, out)) <= 0)
        return rc;
    return how;
}

static int
pg_next_due(struct tx *t, const char *queue, int64_t *due)
{
    char now[24];
    const char *p[] = {queue, pg_i64(now, t->now)};
    PGresult *r = pg_exec(t,
        "SELECT (SELECT run_at FROM jobs WHERE status = 'pending' AND queue = $1"
        "          AND run_at > $2 AND NOT held ORDER BY run_at LIMIT 1),"
        "       (SELECT min(locked_until) FROM jobs WHERE status = 'processing' AND queue = $1)", 2, p);
    int64_t lock;

    *due = 0;
    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        *due = pg_int(r, 0, 0, 0);
        lock = pg_int(r, 0, 1, 0);
        if (!PQgetisnull(r, 0, 1) && (!*due || lock + 1 < *due))
            *due = lock + 1;        /* expired when < now */
    }
    PQclear(r);
    return 0;
}

/* ---- transitions ------------------------------------------------------------ */

static int
pg_heartbeat(struct tx *t, int64_t id, const char *token, int64_t lock_until, struct job *out)
{
    char until[24], now[24], ids[24];
    const char *p[] = {pg_i64(until, lock_until), pg_i64(now, t->now), pg_i64(ids, id), token};

    return take_row(t, pg_exec(t, "UPDATE jobs SET locked_until = $1, updated_at = $2"
                                  " WHERE id = $3 AND status = 'processing' AND claim_token = $4"
                                  " RETURNING " JOB_COLS, 4, p), 0, out);
}

static int
pg_complete(struct tx *t, int64_t id, const char *token, const char *result, struct job *out)
{
    char now[24], ids[24];
    const char *p[] = {pg_i64(now, t->now), result, pg_i64(ids, id), token};

    /* the claim token stays, so that a repeated completion is recognised */
    return change_leave(t, pg_exec(t, "UPDATE jobs SET status = 'completed', completed_at = $1,"
                                      " locked_until = NULL, result = $2, updated_at = $1"
                                      " WHERE id = $3 AND status = 'processing' AND claim_token = $4"
                                      " RETURNING " JOB_COLS, 4, p), out);
}

static int
pg_fail_retry(struct tx *t, int64_t id, const char *token, int64_t run_at, const char *reason,
              const char *message, struct job *out)
{
    char at[24], now[24], ids[24];
    const char *p[] = {pg_i64(at, run_at), reason, message, pg_i64(now, t->now), pg_i64(ids, id), token};

    return take_row(t, pg_exec(t, "UPDATE jobs SET status = 'pending', run_at = $1, locked_by = NULL,"
                                  " locked_until = NULL, claim_token = NULL, error_reason = $2,"
                                  " error_message = $3, updated_at = $4"
                                  " WHERE id = $5 AND status = 'processing' AND claim_token = $6"
                                  " RETURNING " JOB_COLS, 6, p), 0, out);
}

static int
pg_unclaim(struct tx *t, int64_t id, const char *token, struct job *out)
{
    char now[24], ids[24];
    const char *p[] = {pg_i64(now, t->now), pg_i64(ids, id), token};

    return take_row(t, pg_exec(t, "UPDATE jobs SET status = 'pending', attempts = attempts - 1,"
                                  " locked_by = NULL, locked_until = NULL, claim_token = NULL,"
                                  " started_at = NULL, updated_at = $1"
                                  " WHERE id = $2 AND claim_token = $3 AND status = 'processing'"
                                  " RETURNING " JOB_COLS, 3, p), 0, out);
}

static int
pg_fail_job(struct tx *t, int64_t id, const char *token, const char *reason, const char *message,
            struct job *out)
{
    char now[24], ids[24];
    const char *p[] = {reason, message, pg_i64(now, t->now), pg_i64(ids, id), token};

    return change_leave(t, pg_exec(t, "UPDATE jobs SET status = 'failed', locked_until = NULL,"
                                      " claim_token = NULL, error_reason = $1, error_message = $2,"
                                      " updated_at = $3 WHERE id = $4"
                                      " AND ($5::text IS NULL OR (status = 'processing' AND claim_token = $5))"
                                      " RETURNING " JOB_COLS, 5, p), out);
}

static int
pg_requeue_expired(struct tx *t, int64_t id, struct job *out)
{
    char now[24], ids[24];
    const char *p[] = {pg_i64(now, t->now), pg_i64(ids, id)};

    return take_row(t, pg_exec(t, "UPDATE jobs SET status = 'pending', locked_by = NULL,"
                                  " locked_until = NULL, claim_token = NULL, error_reason = 'lock_expired',"
                                  " error_message = 'the lock expired before the job finished',"
                                  " updated_at = $1 WHERE id = $2 AND status = 'processing'"
                                  " AND locked_until < $1 RETURNING " JOB_COLS, 2, p), 0, out);
}

/* The job is made pending first (its row locked); a keyed one then, under
 * its key's lock, holds the key unless another active job of it does. */
static int
pg_retry(struct tx *t, int64_t id, struct job *out)
{
    char now[24], ids[24];
    const char *p[] = {pg_i64(now, t->now), pg_i64(ids, id)};
    struct job own;
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    rc = take_row(t, pg_exec(t, "UPDATE jobs SET status = 'pending', run_at = $1, locked_by = NULL,"
                                " locked_until = NULL, claim_token = NULL,"
                                " max_attempts = greatest(max_attempts, attempts + 1), updated_at = $1"
                                " WHERE id = $2 RETURNING " JOB_COLS, 2, p), 0, &own);
    if (rc <= 0 || !own.order_key) {
        if (rc > 0 && out)
            *out = own;
        else if (rc > 0)
            job_free(&own);
        return rc;
    }
    rc = key_lock(t, own.queue, own.order_key);
    job_free(&own);
    if (rc < 0)
        return -1;
    rc = take_row(t, pg_exec(t, "UPDATE jobs SET held = EXISTS (SELECT 1 FROM jobs AS o"
                                "   WHERE o.queue = jobs.queue AND o.order_key = jobs.order_key"
                                "   AND o.status IN ('pending', 'processing') AND NOT o.held"
                                "   AND o.id != jobs.id)"
                                " WHERE id = $1 RETURNING " JOB_COLS, 1, p + 1),
                  0, out);
    return rc == 0 ? tx_fail(t, "internal", NULL, "database error: job %lld vanished", (long long)id) : rc;
}

/* ---- the sweep and retention ------------------------------------------------ */

/* Run r, an UPDATE over the ids of a chunk, which must change `want`
 * rows (they are locked by this transaction). 0 or -1. */
static int
change_set(struct tx *t, PGresult *r, size_t want)
{
    int64_t got;

    if (!r)
        return -1;
    got = pg_changes(r);
    PQclear(r);
    if (got != (int64_t)want)
        return tx_fail(t, "internal", NULL, "database error: %zu of %zu expired locks changed while taken back",
                       want - (size_t)got, want);
    return 0;
}

/* The chunk is read and locked with SKIP LOCKED (DESIGN), then one UPDATE
 * for the requeued and one for the failed, each over the ids as one array
 * parameter. */
static int
pg_expire_locks(struct tx *t, size_t max, const char *message, struct job_expiry **out, size_t *n,
                bool *more)
{
    char now[24], lim[24];
    const char *p[] = {pg_i64(now, t->now), pg_i64(lim, (int64_t)max + 1), NULL}; /* one more: others? */
    PGresult *r = pg_exec(t, "SELECT id, queue, locked_by, order_key, attempts, attempts >= max_attempts"
                             " FROM jobs WHERE status = 'processing' AND locked_until < $1"
                             " ORDER BY locked_until, id LIMIT $2 FOR UPDATE SKIP LOCKED", 2, p);
    struct expiry_list l = {0};
    struct text req = {0}, fail = {0};
    size_t nreq = 0, nfail = 0;
    int rows, rc = -1;

    *out = NULL;
    *n = 0;
    *more = false;
    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        bool failed = pg_bool(r, i, 5);
        struct text *ids = failed ? &fail : &req;
        size_t *count = failed ? &nfail : &nreq;

        if (l.n == max) {
            *more = true;
            break;
        }
        expiry_add(&l, pg_int(r, i, 0, 0), pg_str(r, i, 1), pg_str(r, i, 2), pg_str(r, i, 3),
                   pg_int(r, i, 4, 0), failed);
        text_add(ids, *count ? "," : "{", 1);
        text_int(ids, pg_int(r, i, 0, 0));
        (*count)++;
    }
    PQclear(r);
    text_add(&req, "}", 1);
    text_add(&fail, "}", 1);
    if (expiry_finish(&l, out, n) < 0 || req.oom || fail.oom) {
        tx_fail(t, "unavailable", NULL, "out of memory");
        goto done;
    }
    p[1] = req.s;
    if (nreq && change_set(t, pg_exec(t, "UPDATE jobs SET status = 'pending', locked_by = NULL,"
                                         " locked_until = NULL, claim_token = NULL,"
                                         " error_reason = 'lock_expired',"
                                         " error_message = 'the lock expired before the job finished',"
                                         " updated_at = $1 WHERE id = ANY($2::bigint[])"
                                         " AND status = 'processing' AND locked_until < $1", 2, p),
                           nreq) < 0)
        goto done;
    p[1] = fail.s;
    p[2] = message;
    if (nfail && change_set(t, pg_exec(t, "UPDATE jobs SET status = 'failed', locked_until = NULL,"
                                          " claim_token = NULL, error_reason = 'lock_expired',"
                                          " error_message = $3, updated_at = $1"
                                          " WHERE id = ANY($2::bigint[])"
                                          " AND status = 'processing' AND locked_until < $1", 3, p),
                            nfail) < 0)
        goto done;
    /* the keys of the failed ones pass on, each under its lock (rows first,
     * then the key's lock, as every transition) */
    for (size_t i = 0; i < *n; i++) {
        struct job j = {.queue = (*out)[i].queue, .order_key = (*out)[i].order_key};
        if ((*out)[i].failed && j.order_key && key_pass(t, &j) < 0)
            goto done;
    }
    rc = 0;
done:
    text_free(&req);
    text_free(&fail);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
        *more = false;
    }
    return rc;
}

static int
pg_prune(struct tx *t, int64_t before, size_t max, size_t *n, bool *more)
{
    char b[24], lim[24];
    const char *p[] = {pg_i64(b, before), pg_i64(lim, (int64_t)max)};
    PGresult *r = pg_exec(t, "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
                             " WHERE status = 'completed' AND completed_at < $1"
                             " LIMIT $2 FOR UPDATE SKIP LOCKED)", 2, p);

    *n = 0;
    *more = false;
    if (!r)
        return -1;
    *n = (size_t)pg_changes(r);
    PQclear(r);
    if (*n < max)
        return 0;
    /* a full chunk: only then is it worth asking whether others remain */
    if (!(r = pg_exec(t, "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'completed'"
                         " AND completed_at < $1)", 1, p)))
        return -1;
    *more = PQntuples(r) > 0 && pg_bool(r, 0, 0);
    PQclear(r);
    return 0;
}

/* ---- listings ----------------------------------------------------------------- */

/* Hand every row of r (JOB_COLS) to each; r is cleared. */
static int
each_row(PGresult *r, int (*each)(const struct job *j, void *arg), void *arg)
{
    struct job j;
    int stop = 0, rows;

    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !stop; i++) {
        job_fill(r, i, 0, &j, false);
        stop = each(&j, arg);
    }
    PQclear(r);
    return stop;
}

static int
pg_list(struct tx *t, const struct job_filter *f, int (*each)(const struct job *j, void *arg), void *arg)
{
    char before[24], lim[24];
    const char *status = f->status >= 0 ? job_status_name((enum job_status)f->status) : NULL;
    const char *p[4];
    int n = 0;
    PGresult *r;

    if (f->queue)
        p[n++] = f->queue;
    if (status)
        p[n++] = status;
    p[n++] = pg_i64(before, f->before_id);
    p[n++] = pg_i64(lim, f->limit);
    /* one statement per filter so that each uses its own index */
    if (f->queue && status)
        r = pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE queue = $1 AND status = $2"
                       " AND id < $3 ORDER BY id DESC LIMIT $4", n, p);
    else if (f->queue || status)
        r = f->queue ? pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE queue = $1"
                                  " AND id < $2 ORDER BY id DESC LIMIT $3", n, p)
                     : pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE status = $1"
                                  " AND id < $2 ORDER BY id DESC LIMIT $3", n, p);
    else
        r = pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE id < $1 ORDER BY id DESC LIMIT $2", n, p);
    return each_row(r, each, arg);
}

static int
pg_pending(struct tx *t, const char *queue, int64_t limit, int (*each)(const struct job *j, void *arg),
           void *arg)
{
    char lim[24];
    const char *p[] = {queue, pg_i64(lim, limit)};

    if (queue)
        return each_row(pg_exec(t, "SELECT " JOB_COLS " FROM jobs WHERE queue = $1"
                                   " AND status IN ('pending', 'processing') ORDER BY id LIMIT $2", 2, p),
                        each, arg);
    return each_row(pg_exec(t, "SELECT " JOB_COLS " FROM jobs"
                               " WHERE status IN ('pending', 'processing') ORDER BY id LIMIT $1", 1, p + 1),
                    each, arg);
}

/* One statement: the counts, the oldest due pending job and the stale
 * count of every queue. */
static int
pg_queues(struct tx *t, int (*each)(const struct job_queue_stats *q, void *arg), void *arg)
{
    char now[24];
    const char *p[] = {pg_i64(now, t->now)};
    PGresult *r = pg_exec(t,
        "SELECT queue, count(*) FILTER (WHERE status = 'pending'),"
        " count(*) FILTER (WHERE status = 'processing'), count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'failed'),"
        " min(run_at) FILTER (WHERE status = 'pending' AND run_at <= $1),"
        " count(*) FILTER (WHERE status = 'processing' AND locked_until < $1)"
        " FROM jobs GROUP BY queue ORDER BY queue", 1, p);
    struct job_queue_stats q;
    int stop = 0, rows;

    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !stop; i++) {
        memset(&q, 0, sizeof q);
        q.queue = pg_str(r, i, 0);
        for (int s = 0; s < 4; s++)
            q.counts[s] = pg_int(r, i, 1 + s, 0);
        q.oldest_due = pg_int(r, i, 5, JOB_NONE);
        q.stale = pg_int(r, i, 6, 0);
        stop = each(&q, arg);
    }
    PQclear(r);
    return stop;
}

const struct store_jobs pg_jobs_ops = {
    .insert = pg_insert,
    .get = pg_get,
    .find_dedupe = pg_find_dedupe,
    .claim = pg_claim,
    .next_due = pg_next_due,
    .heartbeat = pg_heartbeat,
    .complete = pg_complete,
    .fail_retry = pg_fail_retry,
    .unclaim = pg_unclaim,
    .fail_final = pg_fail_job,
    .requeue_expired = pg_requeue_expired,
    .retry = pg_retry,
    .expire_locks = pg_expire_locks,
    .prune = pg_prune,
    .list = pg_list,
    .pending = pg_pending,
    .queues = pg_queues,
};
