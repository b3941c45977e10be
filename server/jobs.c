/* jobs.c -- jobs: enqueue, claim (with long-poll), heartbeat, complete,
 * fail, the operator's retry / fail-now / cancel, the stale sweep and the
 * listings (SPEC section 3).
 *
 * DESIGN
 * Every change runs as a write function on the writer thread, so a claim
 * is atomic without row locks: it picks the best candidate -- a due pending
 * job, or a processing job whose lock has expired -- and updates it in the
 * same transaction. A claim that finds nothing parks on the topic
 * "jobs:<queue>" until a later write makes a job available (tx_notify when
 * it is due now, tx_due when it becomes due later or a lock expires) or its
 * deadline passes. Each claim issues a fresh random claimToken; heartbeat,
 * complete and fail must present it (fencing), and a job taken back by the
 * sweep, another claim or an operator no longer has it. Outbound queues of
 * leased channels additionally check the lease token in the same write.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batond.h"

static const struct jobs_hooks *hooks;     /* set once at start */

void
jobs_set_hooks(const struct jobs_hooks *h)
{
    hooks = h;
}

#define JOB_COLS                                                                              \
    "id, queue, status, payload, priority, run_at, attempts, max_attempts, locked_by,"        \
    " locked_until, claim_token, started_at, completed_at, error_reason, error_message,"      \
    " result, created_at, updated_at, dedupe_key, conversation_id, message_id"

#define JOBS_QUEUE_MAX      200
#define JOBS_NAME_MAX       200             /* workerId, dedupeKey, conversation/message ids */
#define JOBS_REASON_MAX     200
#define JOBS_MESSAGE_MAX    10000
#define JOBS_TOKEN_MAX      64
#define JOBS_LOCK_MS_MAX    (7 * 86400000LL)
#define JOBS_DELAY_MS_MAX   (10 * 365 * 86400000LL)
#define JOBS_WAIT_MS_MAX    60000
#define JOBS_PRIORITY_MAX   1000000000LL
#define JOBS_ATTEMPTS_MAX   1000000
#define JOBS_BACKOFF_MS     1000            /* first retry after ~1 s */
#define JOBS_BACKOFF_CAP_MS 600000          /* never more than 10 min */
#define JOBS_SWEEP_BATCH    500
#define JOBS_DELETE_BATCH   10000

/* ---- names, ids and JSON shapes ------------------------------------------ */

static json_t *
id_json(int64_t id)
{
    char b[24];

    snprintf(b, sizeof b, "%lld", (long long)id);
    return json_string(b);
}

/* "outbound.<channel>.<accountId>": copies channel into ch and points
 * *account into queue. false for any other queue. */
static bool
outbound_parts(const char *queue, char *ch, size_t n, const char **account)
{
    const char *c, *dot;

    if (strncmp(queue, "outbound.", 9))
        return false;
    c = queue + 9;
    dot = strchr(c, '.');
    if (!dot || dot == c || !dot[1] || (size_t)(dot - c) >= n)
        return false;
    memcpy(ch, c, (size_t)(dot - c));
    ch[dot - c] = 0;
    *account = dot + 1;
    return true;
}

/* 1-200 chars of [A-Za-z0-9._:-]; "outbound.*" must name channel and account. */
static bool
queue_valid(const char *q)
{
    size_t len = strlen(q);
    char ch[JOBS_QUEUE_MAX + 1];
    const char *account;

    if (!len || len > JOBS_QUEUE_MAX)
        return false;
    for (const char *p = q; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == ':' || *p == '-'))
            return false;
    if (!strncmp(q, "outbound.", 9) && !outbound_parts(q, ch, sizeof ch, &account))
        return false;
    return true;
}

#define BAD_QUEUE "field 'queue' must be 1-200 characters of letters, digits, '.', '_', ':' or '-'" \
                  " (outbound queues: outbound.<channel>.<accountId>)"

static int
bad_queue(struct req *r)
{
    return req_fail(r, "bad_request", NULL, BAD_QUEUE);
}

static void
topic_of(const char *queue, char *buf, size_t n)
{
    snprintf(buf, n, "jobs:%s", queue);
}

/* Wake the queue's parked claimers now, or schedule it for `at`. */
static void
queue_wake(struct tx *t, const char *queue, int64_t at)
{
    char topic[JOBS_QUEUE_MAX + 8];

    topic_of(queue, topic, sizeof topic);
    if (at <= t->now)
        tx_notify(t, topic);
    else
        tx_due(t, topic, at);
}

/* Emit <prefix>.<what>: agent.job.*, <channel>.outbound.*, <queue>.job.*.
 * worker and reason may be NULL; extra (stolen, may be NULL) is merged. */
static void
job_event(struct tx *t, const char *level, const char *queue, const char *what, int64_t id,
          const char *worker, int64_t attempts, const char *reason, json_t *extra)
{
    char name[JOBS_QUEUE_MAX + 64], ch[JOBS_QUEUE_MAX + 1];
    const char *account = NULL;
    json_t *f;

    if (!strcmp(queue, "agent"))
        snprintf(name, sizeof name, "agent.job.%s", what);
    else if (outbound_parts(queue, ch, sizeof ch, &account))
        snprintf(name, sizeof name, "%s.outbound.%s", ch, what);
    else
        snprintf(name, sizeof name, "%s.job.%s", queue, what);
    f = json_pack("{s:o, s:s, s:I}", "jobId", id_json(id), "queue", queue, "attempts",
                  (json_int_t)attempts);
    if (!f) {
        json_decref(extra);
        return;
    }
    if (worker)
        json_object_set_new(f, "workerId", json_string(worker));
    if (account)
        json_object_set_new(f, "accountId", json_string(account));
    if (reason)
        json_object_set_new(f, "errorReason", json_string(reason));
    if (extra) {
        json_object_update(f, extra);
        json_decref(extra);
    }
    event_emit(t, level, name, f);
}

/* The row of a SELECT JOB_COLS as the API shows it. */
static json_t *
job_from_row(sqlite3_stmt *st)
{
    json_t *j = json_object();

    if (!j)
        return NULL;
    json_object_set_new(j, "id", id_json(sqlite3_column_int64(st, 0)));
    json_object_set_new(j, "queue", col_text(st, 1));
    json_object_set_new(j, "status", col_text(st, 2));
    json_object_set_new(j, "payload", col_json(st, 3));
    json_object_set_new(j, "priority", col_int(st, 4));
    json_object_set_new(j, "runAt", col_int(st, 5));
    json_object_set_new(j, "attempts", col_int(st, 6));
    json_object_set_new(j, "maxAttempts", col_int(st, 7));
    json_object_set_new(j, "lockedBy", col_text(st, 8));
    json_object_set_new(j, "lockedUntil", col_int(st, 9));
    json_object_set_new(j, "claimToken", col_text(st, 10));
    json_object_set_new(j, "startedAt", col_int(st, 11));
    json_object_set_new(j, "completedAt", col_int(st, 12));
    json_object_set_new(j, "errorReason", col_text(st, 13));
    json_object_set_new(j, "errorMessage", col_text(st, 14));
    json_object_set_new(j, "result", col_json(st, 15));
    json_object_set_new(j, "createdAt", col_int(st, 16));
    json_object_set_new(j, "updatedAt", col_int(st, 17));
    json_object_set_new(j, "dedupeKey", col_text(st, 18));
    json_object_set_new(j, "conversationId", col_text(st, 19));
    json_object_set_new(j, "messageId", col_text(st, 20));
    return j;
}

/* 1 with *out set (new reference), 0 no such job, -1 database error. */
static int
job_read(sqlite3 *db, int64_t id, json_t **out)
{
    sqlite3_stmt *st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?");
    int rc;

    *out = NULL;
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = job_from_row(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return *out ? 1 : -1;
    return rc == SQLITE_DONE ? 0 : -1;
}

json_t *
jobs_get_json(sqlite3 *db, int64_t id)
{
    json_t *j;

    job_read(db, id, &j);
    return j;
}

/* The job's JSON inside a write, answering 503/500 when it cannot be read. */
static json_t *
job_json_tx(struct tx *t, int64_t id)
{
    json_t *j = jobs_get_json(SQ(t), id);

    if (!j)
        sq_fail(t);
    return j;
}

/* What the transitions need to know about a job. */
struct job_state {
    int64_t id, attempts, max_attempts;
    char status[16];
    char queue[JOBS_QUEUE_MAX + 1];
    char token[JOBS_TOKEN_MAX + 1];     /* "" when none */
    char worker[JOBS_NAME_MAX + 1];     /* "" when none */
};

static void
copy_col(sqlite3_stmt *st, int i, char *buf, size_t n)
{
    const char *s = (const char *)sqlite3_column_text(st, i);

    snprintf(buf, n, "%s", s ? s : "");
}

/* 1 found, 0 no such job, -1 database error. */
static int
state_load(sqlite3 *db, int64_t id, struct job_state *js)
{
    sqlite3_stmt *st = db_prep(db, "SELECT status, queue, attempts, max_attempts, claim_token,"
                                   " locked_by FROM jobs WHERE id = ?");
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        js->id = id;
        copy_col(st, 0, js->status, sizeof js->status);
        copy_col(st, 1, js->queue, sizeof js->queue);
        js->attempts = sqlite3_column_int64(st, 2);
        js->max_attempts = sqlite3_column_int64(st, 3);
        copy_col(st, 4, js->token, sizeof js->token);
        copy_col(st, 5, js->worker, sizeof js->worker);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static bool
is_terminal(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed");
}

/* {id} of the route: a positive integer; anything else is a malformed
 * path parameter (400 naming it), while a well-formed id that names no job
 * is the handler's 404. */
static int
path_id(struct req *r, int64_t *id)
{
    const char *p = req_param(r, 0);

    if (parse_int64(p, id) < 0 || *id <= 0)
        return req_fail(r, "bad_request", NULL, "path parameter id must be a positive integer (a job id), not '%.64s'",
                        p ? p : "");
    return 0;
}

/* For an outbound queue of a leased channel: the lease token must be given
 * and current. 0 to go on, -1 answered. */
static int
lease_check(struct tx *t, const char *queue, bool has_token, int64_t token)
{
    char ch[JOBS_QUEUE_MAX + 1];
    const char *account;

    if (!outbound_parts(queue, ch, sizeof ch, &account) || !channel_is_leased(ch))
        return 0;
    if (!has_token)
        return tx_fail(t, "lease_not_held", NULL,
                        "queue %s requires the current leaseToken of %s/%s", queue, ch, account);
    return lease_fence(t, ch, account, token);
}

/* ---- transitions shared by several routes -------------------------------- */

/* Make js terminally failed with reason/message (message may be NULL),
 * emit the failed event (worker may be NULL; extra stolen) and run the
 * messages hook. *job_out (may be NULL) receives the job's JSON. */
static int
fail_final(struct tx *t, struct req *r, const struct job_state *js, const char *reason,
           const char *message, const char *worker, json_t *extra, json_t **job_out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'failed', locked_until = NULL,"
                                      " claim_token = NULL, error_reason = ?, error_message = ?,"
                                      " updated_at = ? WHERE id = ?");
    json_t *job;

    if (!st) {
        json_decref(extra);
        return db_fail(r, SQ(t));
    }
    sqlite3_bind_text(st, 1, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, message, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_int64(st, 4, js->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        json_decref(extra);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    if (!extra)
        extra = json_object();
    json_object_set_new(extra, "willRetry", json_false());
    job_event(t, "error", js->queue, "failed", js->id, worker, js->attempts, reason, extra);
    if (!(job = job_json_tx(t, js->id)))
        return -1;
    if (hooks && hooks->failed && hooks->failed(t, job) < 0) {
        json_decref(job);
        return -1;
    }
    if (job_out)
        *job_out = job;
    else
        json_decref(job);
    return 0;
}

/* A processing job whose lock expired, attempts left: back to pending in
 * its place in line (run_at unchanged), the lock, its owner and the claim
 * token cleared; the event keeps the last worker. */
static int
requeue_expired(struct tx *t, struct req *r, const struct job_state *js, bool wake)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', locked_by = NULL,"
                                      " locked_until = NULL, claim_token = NULL, error_reason = 'lock_expired',"
                                      " error_message = 'the lock expired before the job finished',"
                                      " updated_at = ? WHERE id = ?");

    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, js->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    job_event(t, "warn", js->queue, "requeued", js->id, js->worker[0] ? js->worker : NULL,
              js->attempts, "lock_expired", NULL);
    if (wake)
        queue_wake(t, js->queue, t->now);
    return 0;
}

/* An expired lock: requeue it, or fail it when no attempt is left. */
static int
expire_lock(struct tx *t, struct req *r, const struct job_state *js, bool wake, bool *failed)
{
    *failed = js->attempts >= js->max_attempts;
    if (*failed)
        return fail_final(t, r, js, "lock_expired",
                          "the lock expired before the job finished and no attempts are left",
                          js->worker[0] ? js->worker : NULL, NULL, NULL);
    return requeue_expired(t, r, js, wake);
}

/* ---- enqueue ---------------------------------------------------------------- */

int
jobs_insert(struct tx *t, const char *queue, json_t *payload, int64_t priority,
            int64_t delay_ms, int64_t max_attempts, const char *dedupe_key,
            const char *conversation_id, const char *message_id, json_t **job_out,
            bool *duplicate)
{
    sqlite3_stmt *st;
    int64_t id = 0, run_at = t->now + delay_ms;
    char *text;

    if (duplicate)
        *duplicate = false;
    if (job_out)
        *job_out = NULL;
    if (delay_ms < 0)
        run_at = t->now;
    if (max_attempts < 1)
        max_attempts = 1;
    if (!queue_valid(queue))
        return tx_fail(t, "bad_request", NULL, BAD_QUEUE);
    if (dedupe_key) {
        st = db_prep(SQ(t), "SELECT id FROM jobs WHERE queue = ? AND dedupe_key = ?"
                            " AND status != 'completed' ORDER BY id DESC LIMIT 1");
        if (!st)
            return sq_fail(t);
        sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, dedupe_key, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (id) {
            if (duplicate)
                *duplicate = true;
            if (job_out && !(*job_out = job_json_tx(t, id)))
                return -1;
            return 0;
        }
    }
    if (!(text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    st = db_prep(SQ(t), "INSERT INTO jobs(queue, status, payload, priority, run_at, max_attempts,"
                        " created_at, updated_at, dedupe_key, conversation_id, message_id)"
                        " VALUES(?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st) {
        free(text);
        return sq_fail(t);
    }
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, text, -1, free);
    sqlite3_bind_int64(st, 3, priority);
    sqlite3_bind_int64(st, 4, run_at);
    sqlite3_bind_int64(st, 5, max_attempts);
    sqlite3_bind_int64(st, 6, t->now);
    sqlite3_bind_int64(st, 7, t->now);
    sqlite3_bind_text(st, 8, dedupe_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, conversation_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, message_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return sq_fail(t);
    }
    sqlite3_reset(st);
    id = sqlite3_last_insert_rowid(SQ(t));
    job_event(t, "info", queue, "enqueued", id, NULL, 0, NULL,
              json_pack("{s:I, s:I}", "priority", (json_int_t)priority, "runAt", (json_int_t)run_at));
    queue_wake(t, queue, run_at);
    if (job_out && !(*job_out = job_json_tx(t, id)))
        return -1;
    return 0;
}

struct enqueue {
    const char *queue, *dedupe_key, *conversation_id, *message_id;
    json_t *payload;
    int64_t priority, delay_ms, max_attempts;
};

static int
enqueue_tx(struct tx *t, struct req *r)
{
    struct enqueue *e = r->ctx;
    json_t *job;
    bool dup;

    if (jobs_insert(t, e->queue, e->payload, e->priority, e->delay_ms, e->max_attempts,
                    e->dedupe_key, e->conversation_id, e->message_id, &job, &dup) < 0)
        return -1;
    return req_ok(r, dup ? 200 : 201, json_pack("{s:o, s:b}", "job", job, "duplicate", dup));
}

int
jobs_enqueue(struct req *r)
{
    struct enqueue *e = calloc(1, sizeof *e);
    struct field spec[] = {
        {"queue", F_STR, 0, NULL, 0, JOBS_QUEUE_MAX, NULL},
        FIELD_ANY("payload", NULL, F_REQUIRED),
        FIELD_INT("priority", NULL, 0, -JOBS_PRIORITY_MAX, JOBS_PRIORITY_MAX),
        FIELD_INT("delayMs", NULL, 0, 0, JOBS_DELAY_MS_MAX),
        FIELD_INT("maxAttempts", NULL, 0, 1, JOBS_ATTEMPTS_MAX),
        {"dedupeKey", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"conversationId", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"messageId", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        FIELD_END,
    };

    if (!e)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = e;
    r->ctx_free = free;
    e->queue = "agent";
    e->max_attempts = 5;
    spec[0].out = &e->queue;
    spec[1].out = &e->payload;
    spec[2].out = &e->priority;
    spec[3].out = &e->delay_ms;
    spec[4].out = &e->max_attempts;
    spec[5].out = &e->dedupe_key;
    spec[6].out = &e->conversation_id;
    spec[7].out = &e->message_id;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!queue_valid(e->queue))
        return bad_queue(r);
    return req_submit(r, enqueue_tx);
}

/* ---- claim ----------------------------------------------------------------- */

struct claim {
    const char *worker, *queue;     /* borrowed from r->json */
    int64_t lock_ms, wait_ms, lease_token, deadline;
    bool has_lease;
    int64_t claimed;                /* the job handed out, 0 = none yet */
    char token[JOBS_TOKEN_MAX + 1]; /* its claim token, for the lost hook */
};

struct undo {
    int64_t id;
    char token[JOBS_TOKEN_MAX + 1];
};

/* The claim's answer never reached its client: give the job back, unless
 * something (a heartbeat cannot: nobody has the token) changed it since. */
static int
undo_tx(struct tx *t, struct req *r)
{
    struct undo *u = r->ctx;
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', attempts = attempts - 1,"
                                      " locked_by = NULL, locked_until = NULL, claim_token = NULL,"
                                      " started_at = NULL, updated_at = ?1"
                                      " WHERE id = ?2 AND claim_token = ?3 AND status = 'processing'"
                                      " RETURNING queue, attempts");

    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, u->id);
    sqlite3_bind_text(st, 3, u->token, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        char queue[JOBS_QUEUE_MAX + 1];
        int64_t attempts = sqlite3_column_int64(st, 1);
        copy_col(st, 0, queue, sizeof queue);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return db_fail(r, SQ(t));
        }
        sqlite3_reset(st);
        job_event(t, "warn", queue, "requeued", u->id, NULL, attempts, "claim_undelivered", NULL);
        queue_wake(t, queue, t->now);
        return req_ok(r, 200, NULL);
    }
    sqlite3_reset(st);
    return req_ok(r, 200, NULL);
}

static void
claim_lost(struct req *r)
{
    struct claim *c = r->ctx;
    struct req *w;
    struct undo *u;

    if (!c || !c->claimed)
        return;
    if (!(w = req_new_internal()))
        return;
    if (!(u = calloc(1, sizeof *u))) {
        req_free(w);
        return;
    }
    u->id = c->claimed;
    memcpy(u->token, c->token, sizeof u->token);
    w->ctx = u;
    w->ctx_free = free;
    if (req_submit(w, undo_tx) < 0)
        req_free(w);    /* shutting down: the lock expires and the sweep requeues it */
}

/* The earliest time something on queue becomes claimable: a delayed
 * pending job's run_at or a lock's expiry. 0 when nothing is scheduled. */
static int64_t
next_due(struct tx *t, const char *queue)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT (SELECT min(run_at) FROM jobs WHERE status = 'pending' AND queue = ?1 AND run_at > ?2),"
        "       (SELECT min(locked_until) FROM jobs WHERE status = 'processing' AND queue = ?1)");
    int64_t due = 0;

    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, t->now);
    if (sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            due = sqlite3_column_int64(st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            int64_t lock = sqlite3_column_int64(st, 1) + 1;  /* expired when < now */
            if (!due || lock < due)
                due = lock;
        }
    }
    sqlite3_reset(st);
    return due;
}

/* The best claimable job of queue: 1 with *js filled, 0 none, -1 error.
 * INDEXED BY: without statistics the planner prefers jobs_due and sorts
 * every due job; jobs_claim yields them already in claim order. */
static int
claim_pick(struct tx *t, const char *queue, struct job_state *js)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT id FROM ("
        "  SELECT * FROM (SELECT id, priority, run_at FROM jobs INDEXED BY jobs_claim"
        "    WHERE status = 'pending' AND queue = ?1 AND run_at <= ?2"
        "    ORDER BY priority DESC, run_at, id LIMIT 1)"
        "  UNION ALL"
        "  SELECT * FROM (SELECT id, priority, run_at FROM jobs"
        "    WHERE status = 'processing' AND queue = ?1 AND locked_until < ?2"
        "    ORDER BY priority DESC, run_at, id LIMIT 1))"
        " ORDER BY priority DESC, run_at, id LIMIT 1");
    int64_t id = 0;
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, t->now);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -1;
    return state_load(SQ(t), id, js);
}

static int
claim_tx(struct tx *t, struct req *r)
{
    struct claim *c = r->ctx;
    struct job_state js;
    sqlite3_stmt *st;
    json_t *job;
    char *token;
    char topic[JOBS_QUEUE_MAX + 8];
    int rc;

    if (lease_check(t, c->queue, c->has_lease, c->lease_token) < 0)
        return -1;
    /* a client that hung up after sending its claim gets nothing: an answer
     * written to its closed socket could look delivered, and the job would
     * then wait for its lock to expire */
    if (!req_alive(r))
        return req_ok(r, 204, NULL);
    while ((rc = claim_pick(t, c->queue, &js)) == 1 && !strcmp(js.status, "processing")) {
        /* a dead worker's job: take it back now rather than wait for the sweep */
        bool failed;
        if (expire_lock(t, r, &js, false, &failed) < 0)
            return -1;
        if (!failed)
            break;
        /* exhausted: failed instead of handed out again; look further */
    }
    if (rc < 0)
        return db_fail(r, SQ(t));
    topic_of(c->queue, topic, sizeof topic);
    if (rc == 0) {
        req_ok(r, 204, NULL);
        if (c->wait_ms > 0 && t->now < c->deadline)
            req_park(t, r, topic, c->deadline, next_due(t, c->queue));
        return 0;
    }
    if (!(token = new_id("c_")))
        return req_fail(r, "unavailable", NULL, "out of memory");
    st = db_prep(SQ(t), "UPDATE jobs SET status = 'processing', locked_by = ?, locked_until = ?,"
                        " claim_token = ?, attempts = attempts + 1, started_at = ?, updated_at = ?"
                        " WHERE id = ?");
    if (!st) {
        free(token);
        return db_fail(r, SQ(t));
    }
    sqlite3_bind_text(st, 1, c->worker, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, t->now + c->lock_ms);
    sqlite3_bind_text(st, 3, token, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, t->now);
    sqlite3_bind_int64(st, 6, js.id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    snprintf(c->token, sizeof c->token, "%s", token);
    free(token);
    if (rc != SQLITE_DONE)
        return db_fail(r, SQ(t));
    if (!(job = job_json_tx(t, js.id)))
        return -1;
    job_event(t, "info", js.queue, "claimed", js.id, c->worker, js.attempts + 1, NULL,
              json_pack("{s:I}", "lockedUntil", (json_int_t)(t->now + c->lock_ms)));
    tx_due(t, topic, t->now + c->lock_ms + 1);
    c->claimed = js.id;
    r->lost = claim_lost;
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

int
jobs_claim(struct req *r)
{
    struct claim *c = calloc(1, sizeof *c);
    struct field spec[] = {
        {"workerId", F_STR, F_REQUIRED, NULL, 0, JOBS_NAME_MAX, NULL},
        {"queue", F_STR, 0, NULL, 0, JOBS_QUEUE_MAX, NULL},
        FIELD_INT("lockMs", NULL, 0, 1, JOBS_LOCK_MS_MAX),
        FIELD_INT("waitMs", NULL, 0, 0, JOBS_WAIT_MS_MAX),
        {"leaseToken", F_INT, 0, NULL, 0, INT64_MAX, NULL},
        FIELD_END,
    };

    if (!c)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = c;
    r->ctx_free = free;
    c->queue = "agent";
    c->lock_ms = cfg.job_lock_ms;
    spec[0].out = &c->worker;
    spec[1].out = &c->queue;
    spec[2].out = &c->lock_ms;
    spec[3].out = &c->wait_ms;
    spec[4].out = &c->lease_token;
    spec[4].present = &c->has_lease;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!queue_valid(c->queue))
        return bad_queue(r);
    c->deadline = r->started + c->wait_ms;      /* fixed at arrival, not per re-run */
    return req_submit(r, claim_tx);
}

/* ---- the worker's calls: heartbeat, complete, fail ---------------------- */

struct work {
    int64_t id;
    const char *worker, *token, *reason, *message;  /* borrowed from r->json */
    int64_t lock_ms, lease_token, retry_after_ms;
    bool has_lease, retryable;
    json_t *result, *reply;                         /* borrowed, may be NULL */
    bool has_result;
};

/* The job must still be processing under this worker's claim, and for a
 * leased outbound queue the lease token must be current. */
static int
fence(struct tx *t, struct req *r, const struct work *w, struct job_state *js)
{
    int rc = state_load(SQ(t), w->id, js);

    if (rc < 0)
        return db_fail(r, SQ(t));
    if (!rc)
        return req_fail(r, "not_found", NULL, "no job %lld", (long long)w->id);
    if (strcmp(js->status, "processing") || strcmp(js->token, w->token) ||
        strcmp(js->worker, w->worker))
        return req_fail(r, "claim_lost", json_pack("{s:s}", "status", js->status),
                        "job %lld is no longer claimed by '%s' with this claimToken",
                        (long long)w->id, w->worker);
    return lease_check(t, js->queue, w->has_lease, w->lease_token);
}

static int
heartbeat_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    struct job_state js;
    sqlite3_stmt *st;
    int64_t until = t->now + w->lock_ms;
    json_t *job;
    char topic[JOBS_QUEUE_MAX + 8];

    if (fence(t, r, w, &js) < 0)
        return -1;
    st = db_prep(SQ(t), "UPDATE jobs SET locked_until = ?, updated_at = ? WHERE id = ?");
    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_int64(st, 1, until);
    sqlite3_bind_int64(st, 2, t->now);
    sqlite3_bind_int64(st, 3, w->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    topic_of(js.queue, topic, sizeof topic);
    tx_due(t, topic, until + 1);
    if (!(job = job_json_tx(t, w->id)))
        return -1;
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

static int
complete_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    struct job_state js;
    sqlite3_stmt *st;
    json_t *job;
    char *text = NULL;
    int rc = state_load(SQ(t), w->id, &js);

    /* a repeated completion of the same claim (a retried request) is answered again */
    if (rc == 1 && !strcmp(js.status, "completed") && !strcmp(js.token, w->token) &&
        !strcmp(js.worker, w->worker)) {
        if (!(job = job_json_tx(t, w->id)))
            return -1;
        return req_ok(r, 200, json_pack("{s:o}", "job", job));
    }
    if (fence(t, r, w, &js) < 0)
        return -1;
    if (w->has_result && !(text = json_dumps(w->result, JSON_COMPACT | JSON_ENCODE_ANY)))
        return req_fail(r, "unavailable", NULL, "out of memory");
    /* the claim token stays, so that a repeated completion is recognised */
    st = db_prep(SQ(t), "UPDATE jobs SET status = 'completed', completed_at = ?1, locked_until = NULL,"
                        " result = ?2, updated_at = ?1 WHERE id = ?3");
    if (!st) {
        free(text);
        return db_fail(r, SQ(t));
    }
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_text(st, 2, text, -1, text ? free : SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, w->id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(r, SQ(t));
    job_event(t, "info", js.queue, "completed", w->id, w->worker, js.attempts, NULL, NULL);
    if (!(job = job_json_tx(t, w->id)))
        return -1;
    if (hooks && hooks->completed && hooks->completed(t, job, w->has_result ? w->result : NULL, w->reply) < 0) {
        json_decref(job);
        return -1;
    }
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

/* min(1 s * 2^(attempts-1), 10 min), times a random factor in [0.5, 1.0]
 * so that workers failing together do not retry together. */
static int64_t
backoff_ms(int64_t attempts)
{
    int64_t b = JOBS_BACKOFF_CAP_MS;

    if (attempts < 1)
        attempts = 1;
    if (attempts <= 20)
        b = JOBS_BACKOFF_MS << (attempts - 1);
    if (b > JOBS_BACKOFF_CAP_MS)
        b = JOBS_BACKOFF_CAP_MS;
    return b / 2 + (int64_t)((double)(b / 2) * randombytes_uniform(1001) / 1000.0);
}

static int
fail_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    struct job_state js;
    sqlite3_stmt *st;
    json_t *job = NULL;
    int64_t delay, at;

    if (fence(t, r, w, &js) < 0)
        return -1;
    if (!w->retryable || js.attempts >= js.max_attempts) {
        if (fail_final(t, r, &js, w->reason, w->message, w->worker,
                       json_pack("{s:b}", "retryable", w->retryable), &job) < 0)
            return -1;
        return req_ok(r, 200, json_pack("{s:o}", "job", job));
    }
    delay = backoff_ms(js.attempts);
    if (w->retry_after_ms > delay)
        delay = w->retry_after_ms;
    at = t->now + delay;
    st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', run_at = ?1, locked_by = NULL,"
                        " locked_until = NULL, claim_token = NULL, error_reason = ?2, error_message = ?3, updated_at = ?4"
                        " WHERE id = ?5");
    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_int64(st, 1, at);
    sqlite3_bind_text(st, 2, w->reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, w->message, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, w->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    job_event(t, "warn", js.queue, "failed", w->id, w->worker, js.attempts, w->reason,
              json_pack("{s:b, s:I}", "willRetry", 1, "runAt", (json_int_t)at));
    queue_wake(t, js.queue, at);
    if (!(job = job_json_tx(t, w->id)))
        return -1;
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

/* Parse a worker call: {workerId, claimToken, leaseToken?} plus extra. */
static int
work_parse(struct req *r, struct field *extra, void (*bind)(struct work *, struct field *),
           int (*fn)(struct tx *, struct req *))
{
    struct work *w = calloc(1, sizeof *w);
    struct field base[] = {
        {"workerId", F_STR, F_REQUIRED, NULL, 0, JOBS_NAME_MAX, NULL},
        {"claimToken", F_STR, F_REQUIRED, NULL, 0, JOBS_TOKEN_MAX, NULL},
        {"leaseToken", F_INT, 0, NULL, 0, INT64_MAX, NULL},
        FIELD_END,
    };

    if (!w)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = w;
    r->ctx_free = free;
    w->lock_ms = cfg.job_lock_ms;
    w->retryable = true;
    if (path_id(r, &w->id) < 0)
        return -1;
    base[0].out = &w->worker;
    base[1].out = &w->token;
    base[2].out = &w->lease_token;
    base[2].present = &w->has_lease;
    if (req_fields(r, base) < 0)
        return -1;
    if (extra) {
        bind(w, extra);
        if (req_fields(r, extra) < 0)
            return -1;
    }
    return req_submit(r, fn);
}

static void
bind_heartbeat(struct work *w, struct field *f)
{
    f[0].out = &w->lock_ms;
}

int
jobs_heartbeat(struct req *r)
{
    struct field f[] = {
        FIELD_INT("lockMs", NULL, 0, 1, JOBS_LOCK_MS_MAX),
        FIELD_END,
    };

    return work_parse(r, f, bind_heartbeat, heartbeat_tx);
}

static void
bind_complete(struct work *w, struct field *f)
{
    f[0].out = &w->result;
    f[0].present = &w->has_result;
    f[1].out = &w->reply;
}

int
jobs_complete(struct req *r)
{
    struct field f[] = {
        FIELD_ANY("result", NULL, 0),
        FIELD_OBJECT("reply", NULL, 0),
        FIELD_END,
    };

    return work_parse(r, f, bind_complete, complete_tx);
}

/* ---- streaming progress -------------------------------------------------- */

#define JOBS_PROGRESS_MAX   65536           /* bytes of partial reply text */
#define JOBS_PROGRESS_RATE  10.0            /* reports per second per job ... */
#define JOBS_PROGRESS_BURST 20.0            /* ... with this burst */

static struct ratelimit progress_limit;
static pthread_once_t progress_once = PTHREAD_ONCE_INIT;

static void
progress_limit_init(void)
{
    ratelimit_init(&progress_limit, "job_progress", JOBS_PROGRESS_RATE, JOBS_PROGRESS_BURST);
}

static int
progress_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    struct job_state js;

    if (fence(t, r, w, &js) < 0)
        return -1;
    if (hooks && hooks->progress && hooks->progress(t, w->id, w->token, w->message) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:b, s:I}", "accepted", 1, "length",
                                    (json_int_t)strlen(w->message)));
}

static void
bind_progress(struct work *w, struct field *f)
{
    f[0].out = &w->message;
}

/* POST /v1/jobs/{id}/progress {workerId, claimToken, text}: the reply text
 * so far, fenced like heartbeat; at most JOBS_PROGRESS_RATE a second per
 * job (429 above). */
int
jobs_progress(struct req *r)
{
    struct field f[] = {
        {"text", F_STR, F_REQUIRED | F_EMPTY_OK, NULL, 0, JOBS_PROGRESS_MAX, NULL},
        FIELD_END,
    };
    const char *id = req_param(r, 0);
    int64_t wait;

    pthread_once(&progress_once, progress_limit_init);
    if ((wait = ratelimit_take(&progress_limit, id ? id : "", now_ms())) > 0)
        return req_limited(r, wait, "progress reports for this job");
    return work_parse(r, f, bind_progress, progress_tx);
}

static void
bind_fail(struct work *w, struct field *f)
{
    f[0].out = &w->reason;
    f[1].out = &w->message;
    f[2].out = &w->retryable;
    f[3].out = &w->retry_after_ms;
}

int
jobs_fail(struct req *r)
{
    struct field f[] = {
        {"errorReason", F_STR, F_REQUIRED, NULL, 0, JOBS_REASON_MAX, NULL},
        {"errorMessage", F_STR, F_EMPTY_OK, NULL, 0, JOBS_MESSAGE_MAX, NULL},
        FIELD_BOOL("retryable", NULL, 0),
        FIELD_INT("retryAfterMs", NULL, 0, 0, JOBS_DELAY_MS_MAX),
        FIELD_END,
    };

    return work_parse(r, f, bind_fail, fail_tx);
}

/* ---- the operator's calls: retry, fail-now, cancel ----------------------- */

struct oper {
    int64_t id;
    const char *reason, *message;   /* borrowed from r->json or static */
};

static int
oper_load(struct tx *t, struct req *r, struct job_state *js)
{
    struct oper *o = r->ctx;
    int rc = state_load(SQ(t), o->id, js);

    if (rc < 0)
        return db_fail(r, SQ(t));
    if (!rc)
        return req_fail(r, "not_found", NULL, "no job %lld", (long long)o->id);
    return 0;
}

static int
retry_tx(struct tx *t, struct req *r)
{
    struct oper *o = r->ctx;
    struct job_state js;
    sqlite3_stmt *st;
    json_t *job;

    if (oper_load(t, r, &js) < 0)
        return -1;
    if (strcmp(js.status, "failed") && strcmp(js.status, "processing"))
        return req_fail(r, "conflict", json_pack("{s:s}", "status", js.status),
                        "job %lld is %s; only failed or processing jobs can be retried",
                        (long long)o->id, js.status);
    st = db_prep(SQ(t), "UPDATE jobs SET status = 'pending', run_at = ?1, locked_by = NULL,"
                        " locked_until = NULL, claim_token = NULL, max_attempts = max(max_attempts, attempts + 1),"
                        " updated_at = ?1 WHERE id = ?2");
    if (!st)
        return db_fail(r, SQ(t));
    sqlite3_bind_int64(st, 1, t->now);
    sqlite3_bind_int64(st, 2, o->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(r, SQ(t));
    }
    sqlite3_reset(st);
    job_event(t, "info", js.queue, "retried", o->id, js.worker[0] ? js.worker : NULL, js.attempts,
              NULL, json_pack("{s:s}", "previousStatus", js.status));
    queue_wake(t, js.queue, t->now);
    if (!(job = job_json_tx(t, o->id)))
        return -1;
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

static int
fail_now_tx(struct tx *t, struct req *r)
{
    struct oper *o = r->ctx;
    struct job_state js;
    json_t *job = NULL;

    if (oper_load(t, r, &js) < 0)
        return -1;
    if (is_terminal(js.status))
        return req_fail(r, "conflict", json_pack("{s:s}", "status", js.status),
                        "job %lld is already %s", (long long)o->id, js.status);
    if (fail_final(t, r, &js, o->reason, o->message, js.worker[0] ? js.worker : NULL,
                   json_pack("{s:b, s:s}", "operator", 1, "previousStatus", js.status), &job) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

enum oper_kind { OPER_RETRY, OPER_FAIL_NOW, OPER_CANCEL };

static int
oper_parse(struct req *r, enum oper_kind kind)
{
    struct oper *o = calloc(1, sizeof *o);
    struct field spec[] = {
        {"errorReason", F_STR, F_REQUIRED, NULL, 0, JOBS_REASON_MAX, NULL},
        {"errorMessage", F_STR, F_EMPTY_OK, NULL, 0, JOBS_MESSAGE_MAX, NULL},
        FIELD_END,
    };

    if (!o)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = o;
    r->ctx_free = free;
    if (path_id(r, &o->id) < 0)
        return -1;
    switch (kind) {
    case OPER_RETRY:
        return req_submit(r, retry_tx);
    case OPER_FAIL_NOW:
        spec[0].out = &o->reason;
        spec[1].out = &o->message;
        if (req_fields(r, spec) < 0)
            return -1;
        break;
    case OPER_CANCEL:
        o->reason = "cancelled";
        o->message = "cancelled by an operator";
        break;
    }
    return req_submit(r, fail_now_tx);
}

int
jobs_retry(struct req *r)
{
    return oper_parse(r, OPER_RETRY);
}

int
jobs_fail_now(struct req *r)
{
    return oper_parse(r, OPER_FAIL_NOW);
}

int
jobs_cancel(struct req *r)
{
    return oper_parse(r, OPER_CANCEL);
}

/* ---- the stale sweep and retention --------------------------------------- */

/* Requeue or fail every processing job whose lock has expired. */
static int
sweep_locks(struct tx *t, struct req *r, json_t *requeued, json_t *failed, bool *more)
{
    sqlite3_stmt *st;
    int64_t ids[JOBS_SWEEP_BATCH];
    int n;

    do {
        n = 0;
        st = db_prep(SQ(t), "SELECT id FROM jobs INDEXED BY jobs_expired"
                            " WHERE status = 'processing' AND locked_until < ?"
                            " ORDER BY locked_until LIMIT ?");
        if (!st)
            return db_fail(r, SQ(t));
        sqlite3_bind_int64(st, 1, t->now);
        sqlite3_bind_int(st, 2, JOBS_SWEEP_BATCH);
        while (n < JOBS_SWEEP_BATCH && sqlite3_step(st) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        for (int i = 0; i < n; i++) {
            struct job_state js;
            bool was_failed;
            int rc = state_load(SQ(t), ids[i], &js);
            if (rc < 0)
                return db_fail(r, SQ(t));
            if (!rc)
                continue;
            if (expire_lock(t, r, &js, true, &was_failed) < 0)
                return -1;
            if (was_failed ? failed : requeued)
                json_array_append_new(was_failed ? failed : requeued, id_json(ids[i]));
        }
        if (more) {
            /* one chunk per write: other writes run before the next one */
            *more = n == JOBS_SWEEP_BATCH;
            break;
        }
    } while (n == JOBS_SWEEP_BATCH);
    return 0;
}

/* Delete completed jobs past BATON_RETENTION_MS, a bounded batch per sweep. */
static int
sweep_retention(struct tx *t)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
                                      " INDEXED BY jobs_completed"
                                      " WHERE status = 'completed' AND completed_at < ? LIMIT ?)");
    int n;

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->now - cfg.retention_ms);
    sqlite3_bind_int(st, 2, JOBS_DELETE_BATCH);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    n = sqlite3_changes(SQ(t));
    if (n > 0)
        event_emit(t, "info", "jobs.retention.deleted",
                   json_pack("{s:i, s:I}", "count", n, "retentionMs", (json_int_t)cfg.retention_ms));
    return 0;
}

int
jobs_sweep(struct tx *t, json_t *requeued, json_t *failed, bool *more)
{
    /* the messages hook may answer a request: give it one nobody reads */
    struct req *scratch = req_new_internal();
    int rc;

    if (!scratch)
        return -1;
    rc = sweep_locks(t, scratch, requeued, failed, more);
    req_free(scratch);
    if (rc < 0)
        return -1;
    return sweep_retention(t);
}

static int
requeue_stale_tx(struct tx *t, struct req *r)
{
    json_t *requeued = json_array(), *failed = json_array();

    if (sweep_locks(t, r, requeued, failed, NULL) < 0) {
        json_decref(requeued);
        json_decref(failed);
        return -1;
    }
    return req_ok(r, 200, json_pack("{s:o, s:o}", "requeued", requeued, "failed", failed));
}

int
jobs_requeue_stale(struct req *r)
{
    return req_submit(r, requeue_stale_tx);
}

/* ---- reads ------------------------------------------------------------------ */

static bool
status_valid(const char *s)
{
    return !strcmp(s, "pending") || !strcmp(s, "processing") || !strcmp(s, "completed") ||
           !strcmp(s, "failed");
}

int
jobs_get(struct req *r)
{
    sqlite3 *db = db_reader();
    int64_t id;
    json_t *job;

    if (path_id(r, &id) < 0)
        return -1;
    if (!db)
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    switch (job_read(db, id, &job)) {
    case 0:
        return req_fail(r, "not_found", NULL, "no job %lld", (long long)id);
    case -1:
        return db_fail(r, db);
    }
    return req_ok(r, 200, json_pack("{s:o}", "job", job));
}

/* GET /v1/jobs?queue=&status=&limit=&cursor=: newest first; nextCursor is
 * the id to pass as cursor for the next page, null on the last one. */
int
jobs_list(struct req *r)
{
    const char *queue = req_query(r, "queue"), *status = req_query(r, "status");
    const char *cur = req_query(r, "cursor");
    int64_t limit, cursor = INT64_MAX, last = 0;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *jobs;
    int n = 0;

    if (req_query_int(r, "limit", 50, 1, 1000, &limit) < 0)
        return -1;
    if (queue && !*queue)
        queue = NULL;
    if (status && !*status)
        status = NULL;
    if (status && !status_valid(status))
        return req_fail(r, "bad_request", NULL,
                        "query parameter 'status' must be pending, processing, completed or failed");
    if (cur && *cur && (parse_int64(cur, &cursor) < 0 || cursor <= 0))
        return req_fail(r, "bad_request", NULL, "query parameter 'cursor' must be a nextCursor value");
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    /* one statement per filter so that each uses its own index */
    if (queue && status)
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1 AND status = ?2"
                         " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else if (queue)
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1"
                         " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else if (status)
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE status = ?2"
                         " AND id < ?3 ORDER BY id DESC LIMIT ?4");
    else
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id < ?3 ORDER BY id DESC LIMIT ?4");
    if (!st)
        return db_fail(r, db);
    if (queue)
        sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    if (status)
        sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, cursor);
    sqlite3_bind_int64(st, 4, limit);
    jobs = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        last = sqlite3_column_int64(st, 0);
        json_array_append_new(jobs, job_from_row(st));
        n++;
    }
    sqlite3_reset(st);
    return req_ok(r, 200, json_pack("{s:o, s:o}", "jobs", jobs, "nextCursor",
                                    n == limit ? id_json(last) : json_null()));
}

/* GET /v1/jobs/pending?queue=: every pending and processing job, oldest
 * first, with stale:true where the lock has expired. */
int
jobs_pending(struct req *r)
{
    const char *queue = req_query(r, "queue");
    int64_t limit, now = now_ms();
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *jobs;
    int n = 0;

    if (req_query_int(r, "limit", 10000, 1, 100000, &limit) < 0)
        return -1;
    if (queue && !*queue)
        queue = NULL;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    if (queue)
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1"
                         " AND status IN ('pending', 'processing') ORDER BY id LIMIT ?2");
    else
        st = db_prep(db, "SELECT " JOB_COLS " FROM jobs"
                         " WHERE status IN ('pending', 'processing') ORDER BY id LIMIT ?2");
    if (!st)
        return db_fail(r, db);
    if (queue)
        sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit + 1);
    jobs = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *j;
        bool stale;
        if (n++ == limit)
            break;      /* one row more than asked: there are more */
        j = job_from_row(st);
        stale = !strcmp((const char *)sqlite3_column_text(st, 2), "processing") &&
                sqlite3_column_int64(st, 9) < now;
        json_object_set_new(j, "stale", json_boolean(stale));
        json_array_append_new(jobs, j);
    }
    sqlite3_reset(st);
    return req_ok(r, 200, json_pack("{s:o, s:b}", "jobs", jobs, "truncated", n > limit));
}

/* Oldest due pending job's wait and the stale count of one queue. */
static int
queue_extra(sqlite3 *db, const char *queue, int64_t now, json_t *q)
{
    sqlite3_stmt *st = db_prep(db,
        "SELECT (SELECT min(run_at) FROM jobs WHERE status = 'pending' AND queue = ?1 AND run_at <= ?2),"
        "       (SELECT count(*) FROM jobs WHERE status = 'processing' AND queue = ?1"
        "          AND locked_until < ?2)");

    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, now);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return -1;
    }
    json_object_set_new(q, "oldestPendingAgeMs", sqlite3_column_type(st, 0) == SQLITE_NULL
                        ? json_null() : json_integer(now - sqlite3_column_int64(st, 0)));
    json_object_set_new(q, "stale", json_integer(sqlite3_column_int64(st, 1)));
    sqlite3_reset(st);
    return 0;
}

/* GET /v1/queues: per queue, counts by status, how long the oldest due
 * pending job has waited (null when none is due) and the stale count. */
int
jobs_queues(struct req *r)
{
    static const char *const statuses[] = {"pending", "processing", "completed", "failed", NULL};
    sqlite3 *db = db_reader();
    sqlite3_stmt *st;
    json_t *queues, *cur = NULL;
    int64_t now = now_ms();
    size_t i;

    if (!db)
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    st = db_prep(db, "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue");
    if (!st)
        return db_fail(r, db);
    queues = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *q = (const char *)sqlite3_column_text(st, 0);
        if (!cur || strcmp(json_string_value(json_object_get(cur, "queue")), q)) {
            json_t *counts = json_object();
            for (int k = 0; statuses[k]; k++)
                json_object_set_new(counts, statuses[k], json_integer(0));
            cur = json_pack("{s:s, s:o}", "queue", q, "counts", counts);
            json_array_append_new(queues, cur);
        }
        json_object_set_new(json_object_get(cur, "counts"), (const char *)sqlite3_column_text(st, 1),
                            json_integer(sqlite3_column_int64(st, 2)));
    }
    sqlite3_reset(st);
    json_array_foreach(queues, i, cur) {
        if (queue_extra(db, json_string_value(json_object_get(cur, "queue")), now, cur) < 0) {
            json_decref(queues);
            return db_fail(r, db);
        }
    }
    return req_ok(r, 200, json_pack("{s:o}", "queues", queues));
}
