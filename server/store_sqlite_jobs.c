/* store_sqlite_jobs.c -- the jobs operations of the SQLite store (struct
 * store_jobs): all SQL of the jobs table.
 *
 * DESIGN
 * One cached statement per operation (two for the claim: pick, then take);
 * an insert or a transition reads its row back by primary key only when the
 * caller wants it (see change_row for why not RETURNING). A row becomes a struct job with one allocation holding all its
 * strings; the listings hand rows to their callback straight from the
 * statement, without copying. The partial indexes of 002_jobs.sql and
 * 010_order_keys.sql are named with INDEXED BY where the planner, without
 * statistics, would pick another. Order keys (store.h) are the column held:
 * set on the insert of a keyed job, cleared by key_pass when the job
 * holding the key leaves; a job without a key never touches them.
 */
#include <string.h>

#include "store_sqlite.h"

#define JOB_COLS                                                                              \
    "id, queue, status, payload, priority, run_at, attempts, max_attempts, locked_by,"        \
    " locked_until, claim_token, started_at, completed_at, error_reason, error_message,"      \
    " result, created_at, updated_at, dedupe_key, conversation_id, message_id, order_key, held,"   \
    " rate_key"

static enum job_status
status_of(const char *s)
{
    if (!s)
        return JOB_FAILED;
    if (s[0] == 'p')
        return s[1] == 'e' ? JOB_PENDING : JOB_PROCESSING;
    return s[0] == 'c' ? JOB_COMPLETED : JOB_FAILED;
}

static int64_t
col_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? JOB_NONE : sqlite3_column_int64(st, i);
}

/* A row of SELECT JOB_COLS into *j. copy: the strings into one new block
 * (j->mem); otherwise borrowed from st until its next step. -1 when out of
 * memory. */
static int
job_fill(sqlite3_stmt *st, struct job *j, bool copy)
{
    static const int cols[] = {1, 3, 8, 10, 13, 14, 15, 18, 19, 20, 21, 23};
    const char **dst[] = {&j->queue, &j->payload, &j->locked_by, &j->claim_token, &j->error_reason,
                          &j->error_message, &j->result, &j->dedupe_key, &j->conversation_id,
                          &j->message_id, &j->order_key, &j->rate_key};
    size_t len[sizeof cols / sizeof cols[0]];

    j->id = sqlite3_column_int64(st, 0);
    j->status = status_of((const char *)sqlite3_column_text(st, 2));
    j->priority = sqlite3_column_int64(st, 4);
    j->run_at = sqlite3_column_int64(st, 5);
    j->attempts = sqlite3_column_int64(st, 6);
    j->max_attempts = sqlite3_column_int64(st, 7);
    j->locked_until = col_time(st, 9);
    j->started_at = col_time(st, 11);
    j->completed_at = col_time(st, 12);
    j->created_at = sqlite3_column_int64(st, 16);
    j->updated_at = sqlite3_column_int64(st, 17);
    j->held = sqlite3_column_int(st, 22) != 0;
    j->mem = NULL;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        *dst[i] = (const char *)sqlite3_column_text(st, cols[i]);
        len[i] = (size_t)sqlite3_column_bytes(st, cols[i]);
    }
    return copy ? strings_own(dst, len, sizeof cols / sizeof cols[0], &j->mem) : 0;
}

/* Run st, which answers at most one row of JOB_COLS, into out (may be
 * NULL). 1 a row, 0 none, -1 with t->err set. st is reset. */
static int
step_row(struct tx *t, sqlite3_stmt *st, struct job *out)
{
    int rc = sqlite3_step(st);

    if (out)
        memset(out, 0, sizeof *out);
    if (rc == SQLITE_ROW) {
        if (out && job_fill(st, out, true) < 0) {
            sqlite3_reset(st);
            return tx_fail(t, "unavailable", NULL, "out of memory");
        }
        /* to the end, so the statement is done */
        if ((rc = sqlite3_step(st)) == SQLITE_DONE) {
            sqlite3_reset(st);
            return 1;
        }
        if (out)
            job_free(out);
    } else if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    sq_fail(t);
    sqlite3_reset(st);
    return -1;
}

static int sq_get(struct tx *t, int64_t id, struct job *out);

/* Run st, a change of the one row id, then read the row back into out (may
 * be NULL). 1 when it changed the row, 0 when its conditions matched none,
 * -1 with t->err set. st is reset. Not RETURNING: a statement with
 * RETURNING gets a statement journal, and releasing one costs in
 * proportion to everything the transaction changed before it -- the stale
 * sweep, thousands of such changes in one transaction, became quadratic
 * (2 s -> 100 s for 10^5 locks). A read by primary key is cheap. */
static int
change_row(struct tx *t, sqlite3_stmt *st, int64_t id, struct job *out)
{
    int rc = sqlite3_step(st);

    if (out)
        memset(out, 0, sizeof *out);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if (sqlite3_changes(SQ(t)) == 0)
        return 0;
    if (!out)
        return 1;
    if ((rc = sq_get(t, id, out)) < 0)
        return -1;
    return rc ? 1 : tx_fail(t, "internal", NULL, "database error: job %lld vanished", (long long)id);
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
    /* every string outlives the statement's step */
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* ---- insert and lookups --------------------------------------------------- */

static int
sq_insert(struct tx *t, const struct job_new *n, int64_t *id, struct job *out)
{
    sqlite3_stmt *st;
    int rc;

    /* a job without a key: the statement of before, nothing more to pay */
    if (!n->order_key)
        st = db_prep(SQ(t), "INSERT INTO jobs(queue, status, payload, priority, run_at,"
                            " max_attempts, created_at, updated_at, dedupe_key, conversation_id,"
                            " message_id, rate_key) VALUES(?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8,"
                            " ?9, ?11)");
    else
        /* held when an active job of the key exists (all of them are earlier) */
        st = db_prep(SQ(t), "INSERT INTO jobs(queue, status, payload, priority, run_at,"
                            " max_attempts, created_at, updated_at, dedupe_key, conversation_id,"
                            " message_id, order_key, rate_key, held) VALUES(?1, 'pending', ?2, ?3, ?4, ?5,"
                            " ?6, ?6, ?7, ?8, ?9, ?10, ?11, EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_keys"
                            " WHERE queue = ?1 AND order_key = ?10 AND order_key IS NOT NULL"
                            " AND status IN ('pending', 'processing')))");
    if (out)
        memset(out, 0, sizeof *out);
    if (!st)
        return sq_fail(t);
    if (n->order_key)
        bind_text(st, 10, n->order_key);
    bind_text(st, 1, n->queue);
    bind_text(st, 2, n->payload);
    sqlite3_bind_int64(st, 3, n->priority);
    sqlite3_bind_int64(st, 4, n->run_at);
    sqlite3_bind_int64(st, 5, n->max_attempts);
    sqlite3_bind_int64(st, 6, t->now);
    bind_text(st, 7, n->dedupe_key);
    bind_text(st, 8, n->conversation_id);
    bind_text(st, 9, n->message_id);
    bind_text(st, 11, n->rate_key);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    *id = sqlite3_last_insert_rowid(SQ(t));
    if (!out)
        return 0;
    if ((rc = sq_get(t, *id, out)) < 0)
        return -1;
    return rc ? 0 : tx_fail(t, "internal", NULL, "database error: the inserted job is not there");
}

static int
sq_get(struct tx *t, int64_t id, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE id = ?");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, id);
    return step_row(t, st, out);
}

static int
sq_find_dedupe(struct tx *t, const char *queue, const char *key, int64_t *id)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT id FROM jobs WHERE queue = ? AND dedupe_key = ?"
                                      " AND status != 'completed' ORDER BY id DESC LIMIT 1");
    int rc;

    if (!st)
        return sq_fail(t);
    bind_text(st, 1, queue);
    bind_text(st, 2, key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- claim ------------------------------------------------------------------- */

/* The pick: the best due pending job and the best expired lock, the better
 * of the two. INDEXED BY: without statistics the planner prefers jobs_due
 * and sorts every due job; jobs_claim yields them already in claim order.
 * With a key limit (a second statement, so that a queue without one pays
 * nothing) a pending job whose rate key has had `limit` claims in the
 * window is passed over: one probe of rate_claims_by_bucket per job looked
 * at, and the jobs of a limited key are looked at again by every claim
 * until the key frees (docs/jobs.md says to pair rate keys with order
 * keys, which leaves one job per key in jobs_claim). */
#define CLAIM_PICK(pending_filter)                                                             \
    "SELECT id, expired FROM ("                                                                \
    "  SELECT * FROM (SELECT id, priority, run_at, 0 AS expired FROM jobs INDEXED BY jobs_claim" \
    "    WHERE status = 'pending' AND held = 0 AND queue = ?1 AND run_at <= ?2" pending_filter  \
    "    ORDER BY priority DESC, run_at, id LIMIT 1)"                                          \
    "  UNION ALL"                                                                              \
    "  SELECT * FROM (SELECT id, priority, run_at, 1 AS expired FROM jobs"                     \
    "    WHERE status = 'processing' AND queue = ?1 AND locked_until < ?2"                     \
    "    ORDER BY priority DESC, run_at, id LIMIT 1))"                                         \
    " ORDER BY priority DESC, run_at, id LIMIT 1"

static int
sq_claim(struct tx *t, const char *queue, const char *worker, int64_t lock_until, const char *token,
         const struct rate_limit *key_rate, struct job *out)
{
    sqlite3_stmt *st = key_rate
        ? db_prep(SQ(t), CLAIM_PICK(
              " AND (rate_key IS NULL OR (SELECT at FROM rate_claims WHERE queue = ?1"
              "   AND key = jobs.rate_key AND at > ?2 - ?4 ORDER BY at DESC LIMIT 1 OFFSET ?3 - 1)"
              "   IS NULL)"))
        : db_prep(SQ(t), CLAIM_PICK(""));
    int64_t id;
    bool expired;
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    if (!st)
        return sq_fail(t);
    bind_text(st, 1, queue);
    sqlite3_bind_int64(st, 2, t->now);
    if (key_rate) {
        sqlite3_bind_int64(st, 3, key_rate->limit);
        sqlite3_bind_int64(st, 4, key_rate->period_ms);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE)
            sq_fail(t);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    id = sqlite3_column_int64(st, 0);
    expired = sqlite3_column_int(st, 1);
    sqlite3_reset(st);
    if (expired)
        return (rc = sq_get(t, id, out)) == 1 ? 2 : rc;
    st = db_prep(SQ(t), "UPDATE jobs SET status = 'processing', locked_by = ?1, locked_until = ?2,"
                        " claim_token = ?3, attempts = attempts + 1, started_at = ?4, updated_at = ?4"
                        " WHERE id = ?5");
    if (!st)
        return sq_fail(t);
    bind_text(st, 1, worker);
    sqlite3_bind_int64(st, 2, lock_until);
    bind_text(st, 3, token);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, id);
    return change_row(t, st, id, out);
}

static int
sq_next_due(struct tx *t, const char *queue, int64_t *due)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT (SELECT run_at FROM jobs INDEXED BY jobs_due WHERE status = 'pending' AND queue = ?1"
        "          AND run_at > ?2 AND held = 0 ORDER BY run_at LIMIT 1),"
        "       (SELECT min(locked_until) FROM jobs WHERE status = 'processing' AND queue = ?1)");
    int rc;

    *due = 0;
    if (!st)
        return sq_fail(t);
    bind_text(st, 1, queue);
    sqlite3_bind_int64(st, 2, t->now);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            *due = sqlite3_column_int64(st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            int64_t lock = sqlite3_column_int64(st, 1) + 1;  /* expired when < now */
            if (!*due || lock < *due)
                *due = lock;
        }
    } else
        sq_fail(t);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* ---- transitions ------------------------------------------------------------ */

/* The job id (changed just now: *j when it was read back, else NULL) has
 * left its key's active jobs: when no active job of its key holds the key
 * any more, the earliest waiting one takes it. Two probes of jobs_keys;
 * nothing at all for a job without a key. */
static int
key_pass(struct tx *t, int64_t id, const struct job *j)
{
    struct job own;
    sqlite3_stmt *st;
    int rc;

    if (!j) {
        if ((rc = sq_get(t, id, &own)) <= 0)
            return rc;
        rc = own.order_key ? key_pass(t, id, &own) : 0;
        job_free(&own);
        return rc;
    }
    if (!j->order_key)
        return 0;
    st = db_prep(SQ(t), "UPDATE jobs SET held = 0 WHERE id = (SELECT id FROM jobs INDEXED BY jobs_keys"
                        "   WHERE queue = ?1 AND order_key = ?2 AND order_key IS NOT NULL"
                        "   AND status IN ('pending', 'processing') AND held = 1 ORDER BY id LIMIT 1)"
                        " AND NOT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_keys"
                        "   WHERE queue = ?1 AND order_key = ?2 AND order_key IS NOT NULL"
                        "   AND status IN ('pending', 'processing') AND held = 0)");
    if (!st)
        return sq_fail(t);
    bind_text(st, 1, j->queue);
    bind_text(st, 2, j->order_key);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

/* change_row for a change that takes job id out of its key's active jobs. */
static int
change_leave(struct tx *t, sqlite3_stmt *st, int64_t id, struct job *out)
{
    int rc = change_row(t, st, id, out);

    if (rc == 1 && key_pass(t, id, out) < 0) {
        if (out)
            job_free(out);
        return -1;
    }
    return rc;
}

static int
sq_heartbeat(struct tx *t, int64_t id, const char *token, int64_t lock_until, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET locked_until = ?1, updated_at = ?2"
                                      " WHERE id = ?3 AND status = 'processing' AND claim_token = ?4");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, lock_until);
    sqlite3_bind_int64(st, 2, t->now);
    sqlite3_bind_int64(st, 3, id);
    bind_text(st, 4, token);
    return change_row(t, st, id, out);
}

static int
sq_complete(struct tx *t, int64_t id, const char *token, const char *result, struct job *out)
{
    /* the claim token stays, so that a repeated completion is recognised */
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'completed', completed_at = ?1,"
                                      " locked_until = NULL, result = ?2, updated_at = ?1"
                                      " WHERE id = ?3 AND status = 'processing' AND claim_token = ?4");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    bind_text(st, 2, result);
    sqlite3_bind_int64(st, 3, id);
    bind_text(st, 4, token);
    return change_leave(t, st, id, out);
}

static int
sq_fail_retry(struct tx *t, int64_t id, const char *token, int64_t run_at, const char *reason,
              const char *message, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', run_at = ?1, locked_by = NULL,"
                                      " locked_until = NULL, claim_token = NULL, error_reason = ?2,"
                                      " error_message = ?3, updated_at = ?4"
                                      " WHERE id = ?5 AND status = 'processing' AND claim_token = ?6");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, run_at);
    bind_text(st, 2, reason);
    bind_text(st, 3, message);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, id);
    bind_text(st, 6, token);
    return change_row(t, st, id, out);
}

static int
sq_unclaim(struct tx *t, int64_t id, const char *token, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', attempts = attempts - 1,"
                                      " locked_by = NULL, locked_until = NULL, claim_token = NULL,"
                                      " started_at = NULL, updated_at = ?1"
                                      " WHERE id = ?2 AND claim_token = ?3 AND status = 'processing'");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, id);
    bind_text(st, 3, token);
    return change_row(t, st, id, out);
}

static int
sq_fail_job(struct tx *t, int64_t id, const char *token, const char *reason, const char *message,
            struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'failed', locked_until = NULL,"
                                      " claim_token = NULL, error_reason = ?1, error_message = ?2,"
                                      " updated_at = ?3 WHERE id = ?4"
                                      " AND (?5 IS NULL OR (status = 'processing' AND claim_token = ?5))");

    if (!st)
        return sq_fail(t);
    bind_text(st, 1, reason);
    bind_text(st, 2, message);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_int64(st, 4, id);
    bind_text(st, 5, token);
    return change_leave(t, st, id, out);
}

static int
sq_requeue_expired(struct tx *t, int64_t id, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', locked_by = NULL,"
                                      " locked_until = NULL, claim_token = NULL, error_reason = 'lock_expired',"
                                      " error_message = 'the lock expired before the job finished',"
                                      " updated_at = ?1 WHERE id = ?2 AND +status = 'processing'"
                                      " AND +locked_until < ?1");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, id);
    return change_row(t, st, id, out);
}

static int
sq_retry(struct tx *t, int64_t id, struct job *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', run_at = ?1, locked_by = NULL,"
                                      " locked_until = NULL, claim_token = NULL,"
                                      " max_attempts = max(max_attempts, attempts + 1),"
                                      " held = CASE WHEN order_key IS NULL THEN 0 ELSE EXISTS ("
                                      "   SELECT 1 FROM jobs AS o INDEXED BY jobs_keys"
                                      "   WHERE o.queue = jobs.queue AND o.order_key = jobs.order_key"
                                      "   AND o.order_key IS NOT NULL AND o.status IN ('pending', 'processing')"
                                      "   AND o.held = 0 AND o.id != jobs.id) END,"
                                      " updated_at = ?1 WHERE id = ?2");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, id);
    return change_row(t, st, id, out);
}

/* ---- the sweep and retention ------------------------------------------------ */

/* Run st (an UPDATE of ?1 now, ?2 a JSON array of ids, ?3 the message
 * when not NULL) over ids, which must change exactly `want` rows. 0 or -1. */
static int
change_set(struct tx *t, sqlite3_stmt *st, const char *ids, const char *message, size_t want)
{
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    bind_text(st, 2, ids);
    if (message)
        bind_text(st, 3, message);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    if ((size_t)sqlite3_changes(SQ(t)) != want)
        return tx_fail(t, "internal", NULL, "database error: %zu of %zu expired locks changed while taken back",
                       want - (size_t)sqlite3_changes(SQ(t)), want);
    return 0;
}

/* One read of the chunk (jobs_expired walks it in (locked_until, id)
 * order), then one UPDATE for the requeued and one for the failed, each
 * over the ids as a JSON array (json_each: one statement whatever their
 * number; no RETURNING, see change_row). */
static int
sq_expire_locks(struct tx *t, size_t max, const char *message, struct job_expiry **out, size_t *n,
                bool *more)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT id, queue, locked_by, order_key, attempts,"
                                      " attempts >= max_attempts FROM jobs INDEXED BY jobs_expired"
                                      " WHERE status = 'processing' AND locked_until < ?"
                                      " ORDER BY locked_until, id LIMIT ?");
    struct expiry_list l = {0};
    struct text req = {0}, fail = {0};
    size_t nreq = 0, nfail = 0;
    int rc;

    *out = NULL;
    *n = 0;
    *more = false;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, (int64_t)max + 1);     /* one more: are there others? */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bool failed = sqlite3_column_int(st, 5) != 0;
        struct text *ids = failed ? &fail : &req;
        size_t *count = failed ? &nfail : &nreq;

        if (l.n == max) {
            *more = true;
            rc = SQLITE_DONE;
            break;
        }
        expiry_add(&l, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                   (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
                   sqlite3_column_int64(st, 4), failed);
        text_add(ids, *count ? "," : "[", 1);
        text_int(ids, sqlite3_column_int64(st, 0));
        (*count)++;
    }
    if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    text_add(&req, "]", 1);
    text_add(&fail, "]", 1);
    /* *out is the list's when it is complete, freed below otherwise */
    if (expiry_finish(&l, out, n) < 0 || req.oom || fail.oom) {
        if (rc == SQLITE_DONE)
            tx_fail(t, "unavailable", NULL, "out of memory");
        rc = SQLITE_NOMEM;
    }
    if (rc != SQLITE_DONE) {
        rc = -1;
        goto done;
    }
    rc = -1;
    if (nreq && change_set(t, db_prep(SQ(t), "UPDATE jobs SET status = 'pending', locked_by = NULL,"
                                             " locked_until = NULL, claim_token = NULL,"
                                             " error_reason = 'lock_expired',"
                                             " error_message = 'the lock expired before the job finished',"
                                             " updated_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))"
                                             " AND +status = 'processing' AND +locked_until < ?1"),
                           req.s, NULL, nreq) < 0)
        goto done;
    if (nfail && change_set(t, db_prep(SQ(t), "UPDATE jobs SET status = 'failed', locked_until = NULL,"
                                              " claim_token = NULL, error_reason = 'lock_expired',"
                                              " error_message = ?3, updated_at = ?1"
                                              " WHERE id IN (SELECT value FROM json_each(?2))"
                                              " AND +status = 'processing' AND +locked_until < ?1"),
                            fail.s, message, nfail) < 0)
        goto done;
    /* the keys of the failed ones pass on (rare: a key's job out of attempts) */
    for (size_t i = 0; i < *n; i++) {
        struct job j = {.queue = (*out)[i].queue, .order_key = (*out)[i].order_key};
        if ((*out)[i].failed && j.order_key && key_pass(t, (*out)[i].id, &j) < 0)
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
sq_prune(struct tx *t, int64_t before, size_t max, size_t *n, bool *more)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
                                      " INDEXED BY jobs_completed"
                                      " WHERE status = 'completed' AND completed_at < ? LIMIT ?)");
    int rc;

    *n = 0;
    *more = false;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    *n = (size_t)sqlite3_changes(SQ(t));
    if (*n < max)
        return 0;
    /* a full chunk: only then is it worth asking whether others remain */
    st = db_prep(SQ(t), "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_completed"
                        " WHERE status = 'completed' AND completed_at < ?)");
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, before);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        *more = sqlite3_column_int(st, 0) != 0;
    else
        sq_fail(t);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* ---- listings ----------------------------------------------------------------- */

/* Hand every row of st to each; st is reset. */
static int
each_row(struct tx *t, sqlite3_stmt *st, int (*each)(const struct job *j, void *arg), void *arg)
{
    struct job j;
    int rc, stop = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        job_fill(st, &j, false);
        if ((stop = each(&j, arg)))
            break;
    }
    if (!stop && rc != SQLITE_DONE)
        stop = sq_fail(t);
    sqlite3_reset(st);
    return stop;
}

static int
sq_list(struct tx *t, const struct job_filter *f, int (*each)(const struct job *j, void *arg), void *arg)
{
    sqlite3_stmt *st;

    /* one statement per filter so that each uses its own index */
    if (f->queue && f->status >= 0)
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1 AND status = ?2"
                            " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else if (f->queue)
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1"
                            " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else if (f->status >= 0)
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE status = ?2"
                            " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE id < ?3 ORDER BY id DESC LIMIT ?4");
    if (!st)
        return sq_fail(t);
    if (f->queue)
        bind_text(st, 1, f->queue);
    if (f->status >= 0)
        bind_text(st, 2, job_status_name((enum job_status)f->status));
    sqlite3_bind_int64(st, 3, f->before_id);
    sqlite3_bind_int64(st, 4, f->limit);
    return each_row(t, st, each, arg);
}

static int
sq_pending(struct tx *t, const char *queue, int64_t limit, int (*each)(const struct job *j, void *arg),
           void *arg)
{
    sqlite3_stmt *st;

    if (queue)
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1"
                            " AND status IN ('pending', 'processing') ORDER BY id LIMIT ?2");
    else
        st = db_prep(SQ(t), "SELECT " JOB_COLS " FROM jobs"
                            " WHERE status IN ('pending', 'processing') ORDER BY id LIMIT ?2");
    if (!st)
        return sq_fail(t);
    if (queue)
        bind_text(st, 1, queue);
    sqlite3_bind_int64(st, 2, limit);
    return each_row(t, st, each, arg);
}

/* The oldest due pending job and the stale count of q->queue. */
static int
queue_extra(struct tx *t, struct job_queue_stats *q)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT (SELECT min(run_at) FROM jobs WHERE status = 'pending' AND queue = ?1 AND run_at <= ?2),"
        "       (SELECT count(*) FROM jobs WHERE status = 'processing' AND queue = ?1"
        "          AND locked_until < ?2)");

    if (!st)
        return sq_fail(t);
    bind_text(st, 1, q->queue);
    sqlite3_bind_int64(st, 2, t->now);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sq_fail(t);
        sqlite3_reset(st);
        return -1;
    }
    q->oldest_due = col_time(st, 0);
    q->stale = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

static int
sq_queues(struct tx *t, int (*each)(const struct job_queue_stats *q, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT queue, status, count(*) FROM jobs"
                                      " GROUP BY queue, status ORDER BY queue");
    struct job_queue_stats q = {0};
    char *cur = NULL;
    int rc, stop = 0;

    if (!st)
        return sq_fail(t);
    for (;;) {
        const char *name = NULL;

        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            name = (const char *)sqlite3_column_text(st, 0);
        if (cur && (!name || strcmp(cur, name))) {
            /* the previous queue is complete */
            q.queue = cur;
            if ((stop = queue_extra(t, &q)) || (stop = each(&q, arg)))
                break;
            free(cur);
            cur = NULL;
        }
        if (rc != SQLITE_ROW)
            break;
        if (!cur) {
            memset(&q, 0, sizeof q);
            if (!(cur = strdup(name ? name : ""))) {
                stop = tx_fail(t, "unavailable", NULL, "out of memory");
                break;
            }
        }
        q.counts[status_of((const char *)sqlite3_column_text(st, 1))] = sqlite3_column_int64(st, 2);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = sq_fail(t);
    sqlite3_reset(st);
    free(cur);
    return stop;
}

const struct store_jobs sqlite_jobs_ops = {
    .insert = sq_insert,
    .get = sq_get,
    .find_dedupe = sq_find_dedupe,
    .claim = sq_claim,
    .next_due = sq_next_due,
    .heartbeat = sq_heartbeat,
    .complete = sq_complete,
    .fail_retry = sq_fail_retry,
    .unclaim = sq_unclaim,
    .fail_final = sq_fail_job,
    .requeue_expired = sq_requeue_expired,
    .retry = sq_retry,
    .expire_locks = sq_expire_locks,
    .prune = sq_prune,
    .list = sq_list,
    .pending = sq_pending,
    .queues = sq_queues,
};
