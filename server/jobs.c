/* jobs.c -- the rules of jobs: claim (with long-poll), fencing of claim
 * tokens, heartbeat, complete, fail and backoff, the operator's retry /
 * fail-now, the stale sweep and retention, and the events of jobs
 * (SPEC section 3). The routes are in jobs_api.c, the SQL behind
 * store->jobs.
 *
 * DESIGN
 * Every change runs as a write on the writer thread, so a claim is atomic
 * without row locks: the store picks the best candidate -- a due pending
 * job, or a processing job whose lock has expired -- and takes it in the
 * same transaction. A claim that finds nothing parks on the topic
 * "jobs:<queue>" until a later write makes a job available (tx_notify when
 * it is due now, tx_due when it becomes due later or a lock expires) or its
 * deadline passes. Each claim issues a fresh random claimToken; heartbeat,
 * complete and fail must present it (fencing: the store changes a job only
 * while it holds that token), and a job taken back by the sweep, another
 * claim or an operator no longer has it. Outbound queues of leased
 * channels additionally check the lease token in the same write.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"

#define JOBS_BACKOFF_MS     1000            /* first retry after ~1 s */
#define JOBS_BACKOFF_CAP_MS 600000          /* never more than 10 min */
#define JOBS_SWEEP_BATCH    5000            /* expired locks per write: docs/performance.md */
#define LOCK_EXPIRED_FINAL  "the lock expired before the job finished and no attempts are left"
#define JOBS_DELETE_BATCH   10000

#define JOBS (store->jobs)
#define QUEUES (store->queues)

static const struct jobs_hooks *hooks;     /* set once at start */

void
jobs_set_hooks(const struct jobs_hooks *h)
{
    hooks = h;
}

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

bool
jobs_queue_valid(const char *q)
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

/* The name of a job event, <prefix>.<what>: agent.job.*,
 * <channel>.outbound.*, <queue>.job.*, into name; *account (NULL unless an
 * outbound queue) points into queue. */
static void
job_event_name(const char *queue, const char *what, char *name, size_t n, const char **account)
{
    char ch[JOBS_QUEUE_MAX + 1];

    *account = NULL;
    if (!strcmp(queue, "agent"))
        snprintf(name, n, "agent.job.%s", what);
    else if (outbound_parts(queue, ch, sizeof ch, account))
        snprintf(name, n, "%s.outbound.%s", ch, what);
    else
        snprintf(name, n, "%s.job.%s", queue, what);
}

/* Emit <prefix>.<what> (job_event_name). worker and reason may be NULL;
 * extra (stolen, may be NULL) is merged. */
static void
job_event(struct tx *t, const char *level, const char *queue, const char *what, int64_t id,
          const char *worker, int64_t attempts, const char *reason, json_t *extra)
{
    char name[JOBS_QUEUE_MAX + 64];
    const char *account;
    json_t *f;

    job_event_name(queue, what, name, sizeof name, &account);
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

static json_t *
str_json(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *
time_json(int64_t ms)
{
    return ms == JOB_NONE ? json_null() : json_integer(ms);
}

/* JSON text as a value; null when absent or not JSON. */
static json_t *
text_json(const char *s)
{
    json_t *v;

    if (!s)
        return json_null();
    v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    return v ? v : json_null();
}

json_t *
job_json(const struct job *j)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    json_object_set_new(o, "id", id_json(j->id));
    json_object_set_new(o, "queue", str_json(j->queue));
    json_object_set_new(o, "status", json_string(job_status_name(j->status)));
    json_object_set_new(o, "payload", text_json(j->payload));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "runAt", json_integer(j->run_at));
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    json_object_set_new(o, "maxAttempts", json_integer(j->max_attempts));
    json_object_set_new(o, "lockedBy", str_json(j->locked_by));
    json_object_set_new(o, "lockedUntil", time_json(j->locked_until));
    json_object_set_new(o, "claimToken", str_json(j->claim_token));
    json_object_set_new(o, "startedAt", time_json(j->started_at));
    json_object_set_new(o, "completedAt", time_json(j->completed_at));
    json_object_set_new(o, "errorReason", str_json(j->error_reason));
    json_object_set_new(o, "errorMessage", str_json(j->error_message));
    json_object_set_new(o, "result", text_json(j->result));
    json_object_set_new(o, "createdAt", json_integer(j->created_at));
    json_object_set_new(o, "updatedAt", json_integer(j->updated_at));
    json_object_set_new(o, "dedupeKey", str_json(j->dedupe_key));
    json_object_set_new(o, "conversationId", str_json(j->conversation_id));
    json_object_set_new(o, "messageId", str_json(j->message_id));
    json_object_set_new(o, "orderKey", str_json(j->order_key));
    json_object_set_new(o, "rateKey", str_json(j->rate_key));
    return o;
}

/* *out = the JSON of j (when out is not NULL); -1 when out of memory. */
static int
json_out(struct tx *t, const struct job *j, json_t **out)
{
    if (out && !(*out = job_json(j)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    return 0;
}

/* The job id into *j: 0, or -1 with "not_found" (or the store's fault). */
static int
job_load(struct tx *t, int64_t id, struct job *j)
{
    int rc = JOBS->get(t, id, j);

    if (rc < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no job %lld", (long long)id);
    return 0;
}

/* For an outbound queue of a leased channel: the lease token must be given
 * and current. 0 to go on, -1 with t->err. */
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

static int
claim_lost(struct tx *t, int64_t id, const char *worker, enum job_status status)
{
    return tx_fail(t, "claim_lost", json_pack("{s:s}", "status", job_status_name(status)),
                   "job %lld is no longer claimed by '%s' with this claimToken", (long long)id, worker);
}

/* The job j (loaded) must still be processing under this worker's claim,
 * and for a leased outbound queue the lease token must be current. j is
 * freed when -1 is returned. */
static int
fence_check(struct tx *t, const struct job_work *w, struct job *j)
{
    if (j->status != JOB_PROCESSING || !j->claim_token || strcmp(j->claim_token, w->token) ||
        strcmp(j->locked_by ? j->locked_by : "", w->worker)) {
        claim_lost(t, w->id, w->worker, j->status);
        job_free(j);
        return -1;
    }
    if (lease_check(t, j->queue, w->has_lease, w->lease_token) < 0) {
        job_free(j);
        return -1;
    }
    return 0;
}

/* fence_check of the job w names, loaded into *j (job_free it when 0 is
 * returned). */
static int
fence(struct tx *t, const struct job_work *w, struct job *j)
{
    if (job_load(t, w->id, j) < 0)
        return -1;
    return fence_check(t, w, j);
}

/* ---- transitions shared by several calls ---------------------------------- */

/* Make j terminally failed with reason/message (message may be NULL; token
 * NULL: whatever holds it), emit the failed event (worker may be NULL;
 * extra stolen) and run the failed hook. *job_out (may be NULL) receives
 * the job's JSON. */
static int
fail_final(struct tx *t, const struct job *j, const char *token, const char *reason,
           const char *message, const char *worker, json_t *extra, json_t **job_out)
{
    struct job done;
    json_t *job;
    int rc = JOBS->fail_final(t, j->id, token, reason, message, &done);

    if (rc <= 0) {
        json_decref(extra);
        return rc < 0 ? -1 : claim_lost(t, j->id, worker ? worker : "", j->status);
    }
    if (!extra)
        extra = json_object();
    json_object_set_new(extra, "willRetry", json_false());
    job_event(t, "error", j->queue, "failed", j->id, worker, j->attempts, reason, extra);
    if (done.order_key)
        queue_wake(t, j->queue, t->now);    /* the key may have passed to the next job */
    job = job_json(&done);
    job_free(&done);
    if (!job)
        return tx_fail(t, "unavailable", NULL, "out of memory");
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

/* An expired lock of j (as loaded, still processing): requeue it in its
 * place in line (the event keeps the last worker), or fail it with
 * lock_expired when no attempt is left (*failed). */
static int
expire_lock(struct tx *t, const struct job *j, bool wake, bool *failed)
{
    const char *worker = j->locked_by && *j->locked_by ? j->locked_by : NULL;
    int rc;

    *failed = j->attempts >= j->max_attempts;
    if (*failed)
        return fail_final(t, j, NULL, "lock_expired", LOCK_EXPIRED_FINAL, worker, NULL, NULL);
    if ((rc = JOBS->requeue_expired(t, j->id, NULL)) < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "internal", NULL, "job %lld changed while its lock was taken back",
                       (long long)j->id);
    job_event(t, "warn", j->queue, "requeued", j->id, worker, j->attempts, "lock_expired", NULL);
    if (wake)
        queue_wake(t, j->queue, t->now);
    return 0;
}

/* ---- enqueue ---------------------------------------------------------------- */

int
jobs_insert(struct tx *t, const char *queue, json_t *payload, int64_t priority,
            int64_t delay_ms, int64_t max_attempts, const char *dedupe_key,
            const char *conversation_id, const char *message_id, json_t **job_out,
            bool *duplicate)
{
    struct job_opts o = {.priority = priority, .delay_ms = delay_ms, .max_attempts = max_attempts,
                         .dedupe_key = dedupe_key, .conversation_id = conversation_id,
                         .message_id = message_id};

    return jobs_insert_opts(t, queue, payload, &o, job_out, duplicate);
}

int
jobs_insert_opts(struct tx *t, const char *queue, json_t *payload, const struct job_opts *o,
             json_t **job_out, bool *duplicate)
{
    const char *order_key = o->order_key, *dedupe_key = o->dedupe_key;
    int64_t priority = o->priority, delay_ms = o->delay_ms, max_attempts = o->max_attempts;
    struct job_new n = {.queue = queue, .priority = priority, .run_at = t->now + delay_ms,
                        .max_attempts = max_attempts, .dedupe_key = dedupe_key,
                        .conversation_id = o->conversation_id, .message_id = o->message_id,
                        .order_key = order_key, .rate_key = o->rate_key};
    struct job j;
    int64_t id = 0;
    char *text;
    bool want;
    json_t *extra;
    int rc;

    if (duplicate)
        *duplicate = false;
    if (job_out)
        *job_out = NULL;
    if (delay_ms < 0)
        n.run_at = t->now;
    if (max_attempts < 1)
        n.max_attempts = 1;
    if (!jobs_queue_valid(queue))
        return tx_fail(t, "bad_request", NULL, JOBS_BAD_QUEUE);
    if (order_key && !*order_key)
        return tx_fail(t, "bad_request", NULL, "field 'orderKey' must not be empty");
    if (o->rate_key && !*o->rate_key)
        return tx_fail(t, "bad_request", NULL, "field 'rateKey' must not be empty");
    if (dedupe_key) {
        if ((rc = JOBS->find_dedupe(t, queue, dedupe_key, &id)) < 0)
            return -1;
        if (rc) {
            if (duplicate)
                *duplicate = true;
            if (!job_out)
                return 0;
            if (job_load(t, id, &j) < 0)
                return -1;
            rc = json_out(t, &j, job_out);
            job_free(&j);
            return rc;
        }
    }
    if (!(text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    n.payload = text;
    want = job_out || order_key;
    rc = JOBS->insert(t, &n, &id, want ? &j : NULL);
    free(text);
    if (rc < 0)
        return -1;
    extra = json_pack("{s:I, s:I}", "priority", (json_int_t)priority, "runAt", (json_int_t)n.run_at);
    if (order_key && extra) {
        /* heldByKey: its claim is deferred behind an earlier job of the key
         * (counted in /metrics as baton_claims_deferred_total) */
        json_object_set_new(extra, "orderKey", json_string(order_key));
        json_object_set_new(extra, "heldByKey", json_boolean(j.held));
    }
    if (o->rate_key && extra)
        json_object_set_new(extra, "rateKey", json_string(o->rate_key));
    job_event(t, "info", queue, "enqueued", id, NULL, 0, NULL, extra);
    /* a job waiting behind its key is not claimable: the wake comes when
     * the key passes to it */
    if (!want || !j.held)
        queue_wake(t, queue, n.run_at);
    if (!job_out) {
        if (want)
            job_free(&j);
        return 0;
    }
    rc = json_out(t, &j, job_out);
    job_free(&j);
    return rc;
}

/* ---- claim ------------------------------------------------------------------- */

static uint64_t deferred_by_rate;   /* claims refused by a rate limit, since start */

uint64_t
jobs_claims_deferred_by_rate(void)
{
    return __atomic_load_n(&deferred_by_rate, __ATOMIC_RELAXED);
}

/* Nothing for claim c now: park w on topic until c's deadline (when it
 * waits), woken early at due (0: only by a notification). 0. */
static int
park(struct tx *t, struct wreq *w, const struct job_claim *c, const char *topic, int64_t due)
{
    if (w && c->deadline && t->now < c->deadline)
        tx_park(t, w, topic, c->deadline, due);
    return 0;
}

int
job_claim(struct tx *t, struct wreq *w, struct job_claim *c, json_t **job_out)
{
    char topic[JOBS_QUEUE_MAX + 8];
    char *token;
    struct job j;
    struct queue_settings s;
    const struct rate_limit *key_rate;
    int64_t until = t->now + c->lock_ms, due, key_due = 0;
    int rc;

    *job_out = NULL;
    if (lease_check(t, c->queue, c->has_lease, c->lease_token) < 0)
        return -1;
    /* a client that hung up after sending its claim gets nothing: an answer
     * written to its closed socket could look delivered, and the job would
     * then wait for its lock to expire */
    if (w && w->alive && !w->alive(w))
        return 0;
    if (queue_settings_load(t, c->queue, &s) < 0)
        return -1;
    topic_of(c->queue, topic, sizeof topic);
    /* a paused queue hands out nothing: a waiting claim stays parked until
     * the resume wakes the queue, or its deadline (queues.c); a queue that
     * reached its rate limit hands out nothing until its window frees */
    if (s.paused)
        return park(t, w, c, topic, 0);
    if (s.rate.limit) {
        if (QUEUES->rate_free_at(t, c->queue, "", &s.rate, &due) < 0)
            return -1;
        if (due) {
            __atomic_fetch_add(&deferred_by_rate, 1, __ATOMIC_RELAXED);
            return park(t, w, c, topic, due);
        }
    }
    key_rate = s.key_rate.limit ? &s.key_rate : NULL;
    if (!(token = new_id("c_")))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    while ((rc = JOBS->claim(t, c->queue, c->worker, until, token, key_rate, &j)) == 2) {
        /* a dead worker's job: take it back now rather than wait for the
         * sweep (requeued, it is the next one claimed; failed when no
         * attempt is left, and the next one is looked for) */
        bool failed;
        rc = expire_lock(t, &j, false, &failed);
        job_free(&j);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        free(token);
        return -1;
    }
    if (rc == 0) {
        free(token);
        if (JOBS->next_due(t, c->queue, &due) < 0 ||
            (key_rate && QUEUES->rate_keys_free_at(t, c->queue, key_rate, &key_due) < 0)) {
            tx_clear_fault(t);          /* the deadline still ends the wait */
            due = key_due = 0;
        }
        if (key_due) {
            /* due jobs are there, but every one's key has reached its limit */
            __atomic_fetch_add(&deferred_by_rate, 1, __ATOMIC_RELAXED);
            if (!due || key_due < due)
                due = key_due;
        }
        return park(t, w, c, topic, due);
    }
    /* the claim counts against the limits it was judged by */
    if ((s.rate.limit && QUEUES->rate_record(t, c->queue, "", s.rate.period_ms) < 0) ||
        (key_rate && j.rate_key && QUEUES->rate_record(t, c->queue, j.rate_key, key_rate->period_ms) < 0)) {
        job_free(&j);
        free(token);
        return -1;
    }
    snprintf(c->token, sizeof c->token, "%s", token);
    free(token);
    c->claimed = j.id;
    job_event(t, "info", j.queue, "claimed", j.id, c->worker, j.attempts, NULL,
              json_pack("{s:I}", "lockedUntil", (json_int_t)until));
    tx_due(t, topic, until + 1);
    rc = json_out(t, &j, job_out);
    job_free(&j);
    return rc < 0 ? -1 : 1;
}

int
job_unclaim(struct tx *t, int64_t id, const char *token)
{
    struct job j;
    int rc = JOBS->unclaim(t, id, token, &j);

    if (rc <= 0)
        return rc;
    job_event(t, "warn", j.queue, "requeued", id, NULL, j.attempts, "claim_undelivered", NULL);
    queue_wake(t, j.queue, t->now);
    job_free(&j);
    return 0;
}

/* ---- the worker's calls: heartbeat, complete, fail, progress ------------- */

int
job_heartbeat(struct tx *t, const struct job_work *w, int64_t lock_ms, json_t **job_out)
{
    struct job j, done;
    char topic[JOBS_QUEUE_MAX + 8];
    int64_t until = t->now + lock_ms;
    int rc;

    if (fence(t, w, &j) < 0)
        return -1;
    rc = JOBS->heartbeat(t, w->id, w->token, until, &done);
    if (rc <= 0) {
        if (!rc)
            claim_lost(t, w->id, w->worker, j.status);
        job_free(&j);
        return -1;
    }
    topic_of(j.queue, topic, sizeof topic);
    tx_due(t, topic, until + 1);
    job_free(&j);
    rc = json_out(t, &done, job_out);
    job_free(&done);
    return rc;
}

int
job_complete(struct tx *t, const struct job_work *w, json_t *result, json_t *reply, json_t **job_out)
{
    struct job j, done;
    json_t *job;
    char *text = NULL;
    int rc = JOBS->get(t, w->id, &j);

    if (rc < 0)
        return -1;
    /* a repeated completion of the same claim (a retried request) is answered again */
    if (rc == 1 && j.status == JOB_COMPLETED && j.claim_token && !strcmp(j.claim_token, w->token) &&
        !strcmp(j.locked_by ? j.locked_by : "", w->worker)) {
        rc = json_out(t, &j, job_out);
        job_free(&j);
        return rc;
    }
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no job %lld", (long long)w->id);
    if (fence_check(t, w, &j) < 0)
        return -1;
    if (result && !(text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY))) {
        job_free(&j);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    rc = JOBS->complete(t, w->id, w->token, text, &done);
    free(text);
    if (rc <= 0) {
        if (!rc)
            claim_lost(t, w->id, w->worker, j.status);
        job_free(&j);
        return -1;
    }
    job_event(t, "info", j.queue, "completed", w->id, w->worker, j.attempts, NULL, NULL);
    if (done.order_key)
        queue_wake(t, j.queue, t->now);     /* the key has passed to the next job */
    job_free(&j);
    job = job_json(&done);
    job_free(&done);
    if (!job)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    if (hooks && hooks->completed && hooks->completed(t, job, result, reply) < 0) {
        json_decref(job);
        return -1;
    }
    *job_out = job;
    return 0;
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

int
job_fail(struct tx *t, const struct job_work *w, const char *reason, const char *message,
         bool retryable, int64_t retry_after_ms, json_t **job_out)
{
    struct job j, done;
    int64_t delay, at;
    int rc;

    if (fence(t, w, &j) < 0)
        return -1;
    if (!retryable || j.attempts >= j.max_attempts) {
        rc = fail_final(t, &j, w->token, reason, message, w->worker,
                        json_pack("{s:b}", "retryable", retryable), job_out);
        job_free(&j);
        return rc;
    }
    delay = backoff_ms(j.attempts);
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    at = t->now + delay;
    rc = JOBS->fail_retry(t, w->id, w->token, at, reason, message, &done);
    if (rc <= 0) {
        if (!rc)
            claim_lost(t, w->id, w->worker, j.status);
        job_free(&j);
        return -1;
    }
    job_event(t, "warn", j.queue, "failed", w->id, w->worker, j.attempts, reason,
              json_pack("{s:b, s:I}", "willRetry", 1, "runAt", (json_int_t)at));
    queue_wake(t, j.queue, at);
    job_free(&j);
    rc = json_out(t, &done, job_out);
    job_free(&done);
    return rc;
}

int
job_progress(struct tx *t, const struct job_work *w, const char *text)
{
    struct job j;

    if (fence(t, w, &j) < 0)
        return -1;
    job_free(&j);
    if (hooks && hooks->progress && hooks->progress(t, w->id, w->token, text) < 0)
        return -1;
    return 0;
}

/* ---- the operator's calls: retry, fail-now -------------------------------- */

int
job_retry(struct tx *t, int64_t id, json_t **job_out)
{
    struct job j, done;
    int rc;

    if (job_load(t, id, &j) < 0)
        return -1;
    if (j.status != JOB_FAILED && j.status != JOB_PROCESSING) {
        rc = tx_fail(t, "conflict", json_pack("{s:s}", "status", job_status_name(j.status)),
                     "job %lld is %s; only failed or processing jobs can be retried",
                     (long long)id, job_status_name(j.status));
        job_free(&j);
        return rc;
    }
    if ((rc = JOBS->retry(t, id, &done)) <= 0) {
        job_free(&j);
        return rc < 0 ? -1 : tx_fail(t, "not_found", NULL, "no job %lld", (long long)id);
    }
    job_event(t, "info", j.queue, "retried", id, j.locked_by && *j.locked_by ? j.locked_by : NULL,
              j.attempts, NULL, json_pack("{s:s}", "previousStatus", job_status_name(j.status)));
    queue_wake(t, j.queue, t->now);
    job_free(&j);
    rc = json_out(t, &done, job_out);
    job_free(&done);
    return rc;
}

int
job_fail_now(struct tx *t, int64_t id, const char *reason, const char *message, json_t **job_out)
{
    struct job j;
    int rc;

    if (job_load(t, id, &j) < 0)
        return -1;
    if (j.status == JOB_COMPLETED || j.status == JOB_FAILED) {
        rc = tx_fail(t, "conflict", json_pack("{s:s}", "status", job_status_name(j.status)),
                     "job %lld is already %s", (long long)id, job_status_name(j.status));
        job_free(&j);
        return rc;
    }
    rc = fail_final(t, &j, NULL, reason, message, j.locked_by && *j.locked_by ? j.locked_by : NULL,
                    json_pack("{s:b, s:s}", "operator", 1, "previousStatus", job_status_name(j.status)),
                    job_out);
    job_free(&j);
    return rc;
}

/* ---- the stale sweep and retention --------------------------------------- */

/* The fields job_event writes for the lock expiry e, as text (the same
 * bytes: members in its order, escaped as jansson does; none of them is a
 * secret, so nothing to scrub), into b; its name into name. */
static void
expiry_fields(struct text *b, const struct job_expiry *e, char *name, size_t n)
{
    const char *account;

    job_event_name(e->queue, e->failed ? "failed" : "requeued", name, n, &account);
    text_str(b, "{\"jobId\":\"");
    text_int(b, e->id);
    text_str(b, "\",\"queue\":");
    text_json_str(b, e->queue);
    text_str(b, ",\"attempts\":");
    text_int(b, e->attempts);
    if (e->worker) {
        text_str(b, ",\"workerId\":");
        text_json_str(b, e->worker);
    }
    if (account) {
        text_str(b, ",\"accountId\":");
        text_json_str(b, account);
    }
    text_str(b, e->failed ? ",\"errorReason\":\"lock_expired\",\"willRetry\":false}"
                          : ",\"errorReason\":\"lock_expired\"}");
}

/* What follows a chunk of expire_locks: the events of each job (one
 * statement, lines built as text: event_emit_set), a wake-up of each queue
 * with a requeued job (or a failed one that passed its key on), the
 * failed hook of each failed job (which needs its row: one read each, a
 * path only jobs out of attempts take), and the ids into requeued /
 * failed (may be NULL). */
static int
expired_done(struct tx *t, const struct job_expiry *v, size_t n, json_t *requeued, json_t *failed)
{
    const char **fields = calloc(n ? n : 1, sizeof *fields), **names = calloc(n ? n : 1, sizeof *names);
    size_t *at = calloc(n ? n : 1, 2 * sizeof *at);
    json_t *woken = json_object();
    struct text b = {0};
    const char *q;
    json_t *x;
    int rc = 0;

    if (!fields || !names || !at || !woken) {
        rc = tx_fail(t, "unavailable", NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char name[JOBS_QUEUE_MAX + 64];
        at[2 * i] = b.len;
        /* the fields, then the name, each NUL-terminated in b */
        expiry_fields(&b, &v[i], name, sizeof name);
        text_add(&b, "", 1);
        at[2 * i + 1] = b.len;
        text_str(&b, name);
        text_add(&b, "", 1);
        if (!v[i].failed || v[i].order_key)
            json_object_set_new(woken, v[i].queue, json_true());
    }
    if (b.oom) {
        rc = tx_fail(t, "unavailable", NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        fields[i] = b.s + at[2 * i];
        names[i] = b.s + at[2 * i + 1];
    }
    /* a statement per run of one name (one per queue, in expiry order) */
    for (size_t i = 0, k; i < n; i = k) {
        for (k = i + 1; k < n && !strcmp(names[k], names[i]); k++)
            ;
        event_emit_set(t, v[i].failed ? "error" : "warn", names[i], fields + i, k - i);
    }
    json_object_foreach(woken, q, x)
        queue_wake(t, q, t->now);
    for (size_t i = 0; i < n; i++) {
        json_t *list = v[i].failed ? failed : requeued;
        if (list)
            json_array_append_new(list, id_json(v[i].id));
        if (v[i].failed && hooks && hooks->failed) {
            struct job j;
            json_t *job;
            if (job_load(t, v[i].id, &j) < 0) {
                rc = -1;
                break;
            }
            job = job_json(&j);
            job_free(&j);
            if (!job) {
                rc = tx_fail(t, "unavailable", NULL, "out of memory");
                break;
            }
            rc = hooks->failed(t, job);
            json_decref(job);
            if (rc < 0)
                break;
        }
    }
done:
    free(fields);
    free(names);
    free(at);
    json_decref(woken);
    text_free(&b);
    return rc;
}

/* Set-based (store_jobs.expire_locks): a chunk costs a few statements,
 * not a read, an update and an event per job. */
int
jobs_expire_locks(struct tx *t, json_t *requeued, json_t *failed, bool *more)
{
    bool again;

    do {
        struct job_expiry *v;
        size_t n;
        int rc;

        if (JOBS->expire_locks(t, JOBS_SWEEP_BATCH, LOCK_EXPIRED_FINAL, &v, &n, &again) < 0)
            return -1;
        rc = expired_done(t, v, n, requeued, failed);
        free(v);
        if (rc < 0)
            return -1;
        if (more) {
            /* one chunk per write: other writes run before the next one */
            *more = again;
            break;
        }
    } while (again);
    return 0;
}

/* Delete completed jobs past BATON_RETENTION_MS, a bounded chunk. */
static int
prune(struct tx *t, bool *more)
{
    size_t n;

    if (JOBS->prune(t, t->now - cfg.retention_ms, JOBS_DELETE_BATCH, &n, more) < 0)
        return -1;
    if (n > 0)
        event_emit(t, "info", "jobs.retention.deleted",
                   json_pack("{s:I, s:I}", "count", (json_int_t)n, "retentionMs",
                             (json_int_t)cfg.retention_ms));
    return 0;
}

int
jobs_sweep(struct tx *t, json_t *requeued, json_t *failed, bool *more)
{
    bool more_locks = false, more_old = false;

    if (jobs_expire_locks(t, requeued, failed, more ? &more_locks : NULL) < 0)
        return -1;
    if (prune(t, &more_old) < 0)
        return -1;
    if (more)
        *more = more_locks || more_old;
    return 0;
}
