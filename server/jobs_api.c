/* jobs_api.c -- the routes of jobs (SPEC section 3): each checks its JSON
 * body or query, hands typed values to the rules of jobs.c in a write
 * (req_submit) or reads through store->jobs, and shapes the answer.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define JOBS_REASON_MAX     200
#define JOBS_MESSAGE_MAX    10000
#define JOBS_LOCK_MS_MAX    (7 * 86400000LL)
#define JOBS_DELAY_MS_MAX   (10 * 365 * 86400000LL)
#define JOBS_WAIT_MS_MAX    60000
#define JOBS_PRIORITY_MAX   1000000000LL
#define JOBS_ATTEMPTS_MAX   1000000

static int
bad_queue(struct req *r)
{
    return req_fail(r, "bad_request", NULL, JOBS_BAD_QUEUE);
}

/* {id} of the route: a positive integer; anything else is a malformed
 * path parameter (400 naming it), while a well-formed id that names no job
 * is the rules' 404. */
static int
path_id(struct req *r, int64_t *id)
{
    const char *p = req_param(r, 0);

    if (parse_int64(p, id) < 0 || *id <= 0)
        return req_fail(r, "bad_request", NULL, "path parameter id must be a positive integer (a job id), not '%.64s'",
                        p ? p : "");
    return 0;
}

static json_t *
id_json(int64_t id)
{
    char b[24];

    snprintf(b, sizeof b, "%lld", (long long)id);
    return json_string(b);
}

/* Answer {job} (stolen). */
static int
job_answer(struct req *r, int status, json_t *job)
{
    return req_ok(r, status, json_pack("{s:o}", "job", job));
}

/* ---- enqueue ---------------------------------------------------------------- */

#define JOBS_BATCH_MAX      1000            /* jobs in one POST /v1/jobs/batch */

/* The options of one job, as POST /v1/jobs takes them and as each element
 * of a batch does (strings and payload borrowed from the request's JSON). */
struct enqueue {
    const char *queue;
    json_t *payload;
    struct job_opts o;
};

/* The one parser of a job's options: obj (an object, or NULL for {}) into
 * *e with its defaults. -1 with a sentence naming the field in why. */
static int
enqueue_parse(json_t *obj, struct enqueue *e, char *why, size_t n)
{
    struct field spec[] = {
        {"queue", F_STR, 0, NULL, 0, JOBS_QUEUE_MAX, NULL},
        FIELD_ANY("payload", NULL, F_REQUIRED),
        FIELD_INT("priority", NULL, 0, -JOBS_PRIORITY_MAX, JOBS_PRIORITY_MAX),
        FIELD_INT("delayMs", NULL, 0, 0, JOBS_DELAY_MS_MAX),
        FIELD_INT("maxAttempts", NULL, 0, 1, JOBS_ATTEMPTS_MAX),
        {"dedupeKey", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"conversationId", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"messageId", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"orderKey", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        {"rateKey", F_STR, 0, NULL, 0, JOBS_NAME_MAX, NULL},
        FIELD_END,
    };

    memset(e, 0, sizeof *e);
    e->queue = "agent";
    e->o.max_attempts = 5;
    spec[0].out = &e->queue;
    spec[1].out = &e->payload;
    spec[2].out = &e->o.priority;
    spec[3].out = &e->o.delay_ms;
    spec[4].out = &e->o.max_attempts;
    spec[5].out = &e->o.dedupe_key;
    spec[6].out = &e->o.conversation_id;
    spec[7].out = &e->o.message_id;
    spec[8].out = &e->o.order_key;
    spec[9].out = &e->o.rate_key;
    if (fields_parse(obj, spec, why, n) < 0)
        return -1;
    if (!jobs_queue_valid(e->queue)) {
        snprintf(why, n, "%s", JOBS_BAD_QUEUE);
        return -1;
    }
    return 0;
}

/* Insert (or find the duplicate of) one parsed job: {job, duplicate} as
 * POST /v1/jobs answers it into *out, and *dup. 0, or -1 with t->err. */
static int
enqueue_one(struct tx *t, const struct enqueue *e, json_t **out, bool *dup)
{
    json_t *job;

    if (jobs_insert_opts(t, e->queue, e->payload, &e->o, &job, dup) < 0)
        return -1;
    if (!(*out = json_pack("{s:o, s:b}", "job", job, "duplicate", *dup)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    return 0;
}

static int
enqueue_tx(struct tx *t, struct req *r)
{
    json_t *out;
    bool dup;

    if (enqueue_one(t, r->ctx, &out, &dup) < 0)
        return -1;
    return req_ok(r, dup ? 200 : 201, out);
}

int
jobs_enqueue(struct req *r)
{
    struct enqueue *e = calloc(1, sizeof *e);
    char why[256];

    if (!e)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = e;
    r->ctx_free = free;
    if (enqueue_parse(r->json, e, why, sizeof why) < 0)
        return req_fail(r, "bad_request", NULL, "%s", why);
    return req_submit(r, enqueue_tx);
}

struct batch {
    size_t n;
    struct enqueue e[];
};

/* Every job of the batch in this one write: a failure of any rolls back
 * all of them (the write's savepoint). */
static int
batch_tx(struct tx *t, struct req *r)
{
    struct batch *b = r->ctx;
    json_t *jobs = json_array(), *one;
    bool dup;

    if (!jobs)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    for (size_t i = 0; i < b->n; i++) {
        if (enqueue_one(t, &b->e[i], &one, &dup) < 0) {
            json_decref(jobs);
            return -1;
        }
        json_array_append_new(jobs, one);
    }
    return req_ok(r, 201, json_pack("{s:o}", "jobs", jobs));
}

/* A malformed member of a nested object named prefix: its parser's
 * sentence ("field 'x' ...") with the field renamed prefix.x, or why
 * (" must be ...") said of prefix itself; {field} and more (stolen) in
 * the details. */
static int
nested_fail(struct req *r, const char *prefix, const char *why, json_t *details)
{
    const char *name = "", *end = NULL;
    char field[JOBS_NAME_MAX];
    int len = 0;

    if (!strncmp(why, "field '", 7) && (end = strchr(why + 7, '\''))) {
        name = why + 7;
        len = (int)(end - name);
        why = end + 1;
    }
    snprintf(field, sizeof field, "%s%s%.*s", prefix, len ? "." : "", len, name);
    if (!details)
        details = json_object();
    json_object_set_new(details, "field", json_string(field));
    return req_fail(r, "bad_request", details, "field '%s'%s", field, why);
}

/* A malformed element i of a batch: its field is named jobs[i].x. */
static int
batch_element_fail(struct req *r, size_t i, const char *why)
{
    char prefix[32];

    snprintf(prefix, sizeof prefix, "jobs[%zu]", i);
    return nested_fail(r, prefix, why, json_pack("{s:I}", "index", (json_int_t)i));
}

/* POST /v1/jobs/batch {jobs: [...]}: 1..JOBS_BATCH_MAX jobs, each with the
 * options of POST /v1/jobs, all inserted in one write or none. */
int
jobs_enqueue_batch(struct req *r)
{
    struct field spec[] = {
        FIELD_ARRAY("jobs", NULL, F_REQUIRED),
        FIELD_END,
    };
    json_t *jobs = NULL, *el;
    struct batch *b;
    char why[256];
    size_t n, i;

    spec[0].out = &jobs;
    if (req_fields(r, spec) < 0)
        return -1;
    n = json_array_size(jobs);
    if (n < 1 || n > JOBS_BATCH_MAX)
        return req_fail(r, "bad_request", json_pack("{s:s}", "field", "jobs"),
                        "field 'jobs' must hold 1 to %d jobs, not %zu", JOBS_BATCH_MAX, n);
    if (!(b = calloc(1, sizeof *b + n * sizeof b->e[0])))
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = b;
    r->ctx_free = free;
    b->n = n;
    json_array_foreach(jobs, i, el) {
        if (!json_is_object(el))
            return batch_element_fail(r, i, " must be an object");
        if (enqueue_parse(el, &b->e[i], why, sizeof why) < 0)
            return batch_element_fail(r, i, why);
    }
    return req_submit(r, batch_tx);
}

/* ---- claim ----------------------------------------------------------------- */

struct undo {
    int64_t id;
    char token[JOBS_TOKEN_MAX + 1];
};

/* The claim's answer never reached its client: give the job back. */
static int
undo_tx(struct tx *t, struct req *r)
{
    struct undo *u = r->ctx;

    if (job_unclaim(t, u->id, u->token) < 0)
        return -1;
    return req_ok(r, 200, NULL);
}

static void
claim_lost(struct req *r)
{
    struct job_claim *c = r->ctx;
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

static int
claim_tx(struct tx *t, struct req *r)
{
    struct job_claim *c = r->ctx;
    json_t *job;
    int rc = job_claim(t, &r->w, c, &job);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return req_ok(r, 204, NULL);    /* sent when the wait (if parked) ends */
    r->lost = claim_lost;
    return job_answer(r, 200, job);
}

int
jobs_claim(struct req *r)
{
    struct job_claim *c = calloc(1, sizeof *c);
    int64_t wait_ms = 0;
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
    spec[3].out = &wait_ms;
    spec[4].out = &c->lease_token;
    spec[4].present = &c->has_lease;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!jobs_queue_valid(c->queue))
        return bad_queue(r);
    /* fixed at arrival, not per re-run; on the store's clock, as parked
     * waits are (writer.c) */
    c->deadline = wait_ms > 0 ? r->started + writer_clock_offset() + wait_ms : 0;
    return req_submit(r, claim_tx);
}

/* ---- the worker's calls: heartbeat, complete, fail, progress ------------- */

struct work {
    struct job_claim next;          /* first: claim_lost reads r->ctx as one */
    bool has_next;                  /* complete/fail asked for the next job */
    bool next_queue;                /* ... of a queue it named */
    json_t *done;                   /* their answer's job, kept across a park */
    struct job_work w;              /* strings borrowed from r->json */
    const char *reason, *message;
    int64_t lock_ms, retry_after_ms;
    bool retryable;
    json_t *result, *reply;         /* borrowed, may be NULL */
    bool has_result;
};

static void
work_free(void *p)
{
    struct work *w = p;

    json_decref(w->done);
    free(w);
}

static int
heartbeat_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    json_t *job;

    if (job_heartbeat(t, &w->w, w->lock_ms, &job) < 0)
        return -1;
    return job_answer(r, 200, job);
}

/* The second half of complete-and-next: claim the next job for the same
 * worker and answer {job: the finished one, next: the claimed one | null}.
 * Nothing to claim with a wait left parks the write like a claim; when it
 * runs again after a wake-up the finish has committed already (w->parks)
 * and only this half runs. */
static int
next_tx(struct tx *t, struct req *r, json_t *finished)
{
    struct work *w = r->ctx;
    json_t *job;
    int rc;

    if (finished != w->done) {
        json_decref(w->done);
        w->done = finished;
    }
    if (!w->next_queue)             /* the finished job's (w->done is new after a retried batch) */
        w->next.queue = json_string_value(json_object_get(w->done, "queue"));
    if ((rc = job_claim(t, &r->w, &w->next, &job)) < 0)
        return -1;
    if (rc == 1)
        r->lost = claim_lost;
    return req_ok(r, 200, json_pack("{s:O, s:o}", "job", w->done, "next", rc == 1 ? job : json_null()));
}

static int
complete_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    json_t *job;

    if (r->w.parks)
        return next_tx(t, r, w->done);
    if (job_complete(t, &w->w, w->has_result ? w->result : NULL, w->reply, &job) < 0)
        return -1;
    return w->has_next ? next_tx(t, r, job) : job_answer(r, 200, job);
}

static int
fail_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;
    json_t *job;

    if (r->w.parks)
        return next_tx(t, r, w->done);
    if (job_fail(t, &w->w, w->reason, w->message, w->retryable, w->retry_after_ms, &job) < 0)
        return -1;
    return w->has_next ? next_tx(t, r, job) : job_answer(r, 200, job);
}

static int
progress_tx(struct tx *t, struct req *r)
{
    struct work *w = r->ctx;

    if (job_progress(t, &w->w, w->message) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:b, s:I}", "accepted", 1, "length",
                                    (json_int_t)strlen(w->message)));
}

/* complete and fail: {next: {queue?, waitMs?, lockMs?}} asks for the next
 * job in the same write; its fields are those of POST /v1/jobs/claim. */
static int
next_parse(struct req *r, struct work *w)
{
    json_t *next = json_object_get(r->json, "next");
    int64_t wait_ms = 0;
    char why[256];
    struct field spec[] = {
        {"queue", F_STR, 0, NULL, 0, JOBS_QUEUE_MAX, NULL},
        FIELD_INT("lockMs", NULL, 0, 1, JOBS_LOCK_MS_MAX),
        FIELD_INT("waitMs", NULL, 0, 0, JOBS_WAIT_MS_MAX),
        FIELD_END,
    };

    if (!next || json_is_null(next))
        return 0;
    if (!json_is_object(next))
        return nested_fail(r, "next", " must be an object", NULL);
    w->has_next = true;
    w->next.worker = w->w.worker;
    w->next.has_lease = w->w.has_lease;
    w->next.lease_token = w->w.lease_token;
    w->next.lock_ms = cfg.job_lock_ms;
    spec[0].out = &w->next.queue;
    spec[1].out = &w->next.lock_ms;
    spec[2].out = &wait_ms;
    if (fields_parse(next, spec, why, sizeof why) < 0)
        return nested_fail(r, "next", why, NULL);
    if ((w->next_queue = w->next.queue != NULL) && !jobs_queue_valid(w->next.queue))
        return nested_fail(r, "next", JOBS_BAD_QUEUE, NULL);
    /* fixed at arrival, on the store's clock, as a claim's */
    w->next.deadline = wait_ms > 0 ? r->started + writer_clock_offset() + wait_ms : 0;
    return 0;
}

/* Parse a worker call: {workerId, claimToken, leaseToken?} plus extra,
 * and next when with_next. */
static int
work_parse(struct req *r, struct field *extra, void (*bind)(struct work *, struct field *),
           bool with_next, int (*fn)(struct tx *, struct req *))
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
    r->ctx_free = work_free;
    w->lock_ms = cfg.job_lock_ms;
    w->retryable = true;
    if (path_id(r, &w->w.id) < 0)
        return -1;
    base[0].out = &w->w.worker;
    base[1].out = &w->w.token;
    base[2].out = &w->w.lease_token;
    base[2].present = &w->w.has_lease;
    if (req_fields(r, base) < 0)
        return -1;
    if (extra) {
        bind(w, extra);
        if (req_fields(r, extra) < 0)
            return -1;
    }
    if (with_next && next_parse(r, w) < 0)
        return -1;
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

    return work_parse(r, f, bind_heartbeat, false, heartbeat_tx);
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

    return work_parse(r, f, bind_complete, true, complete_tx);
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

    return work_parse(r, f, bind_fail, true, fail_tx);
}

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
    return work_parse(r, f, bind_progress, false, progress_tx);
}

/* ---- the operator's calls: retry, fail-now, cancel ----------------------- */

struct oper {
    int64_t id;
    const char *reason, *message;   /* borrowed from r->json or static */
};

static int
retry_tx(struct tx *t, struct req *r)
{
    struct oper *o = r->ctx;
    json_t *job;

    if (job_retry(t, o->id, &job) < 0)
        return -1;
    return job_answer(r, 200, job);
}

static int
fail_now_tx(struct tx *t, struct req *r)
{
    struct oper *o = r->ctx;
    json_t *job;

    if (job_fail_now(t, o->id, o->reason, o->message, &job) < 0)
        return -1;
    return job_answer(r, 200, job);
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

/* ---- the stale sweep on request ------------------------------------------- */

/* The ids taken back so far, across the request's writes. */
struct stale {
    json_t *requeued, *failed;
};

static void
stale_free(void *p)
{
    struct stale *s = p;

    json_decref(s->requeued);
    json_decref(s->failed);
    free(s);
}

/* One chunk of the sweep per write, as the periodic sweep takes them: a
 * backlog is one write per chunk with other writes in between, not one
 * transaction that holds the writer (and commits faster: 10^5 locks in
 * chunks took half the time of one transaction, docs/performance.md).
 * While locks remain the request parks due at once, so the next chunk
 * runs in the next batch; the answer lists every id when none are left.
 * A chunk that fails answers its error; the chunks before it stay done. */
static int
requeue_stale_tx(struct tx *t, struct req *r)
{
    struct stale *s = r->ctx;
    bool more;

    if (jobs_expire_locks(t, s->requeued, s->failed, &more) < 0)
        return -1;
    if (more) {
        /* the answer if the server stops first */
        req_fail(r, "unavailable", NULL, "the server stopped before the stale sweep finished; the next sweep "
                 "takes back the rest");
        req_park(t, r, "jobs:requeue-stale", t->now + 3600000, t->now);
        return 0;
    }
    return req_ok(r, 200, json_pack("{s:O, s:O}", "requeued", s->requeued, "failed", s->failed));
}

int
jobs_requeue_stale(struct req *r)
{
    struct stale *s = calloc(1, sizeof *s);

    if (!s || !(s->requeued = json_array()) || !(s->failed = json_array())) {
        if (s)
            stale_free(s);
        return req_fail(r, "unavailable", NULL, "out of memory");
    }
    r->ctx = s;
    r->ctx_free = stale_free;
    return req_submit(r, requeue_stale_tx);
}

/* ---- reads ------------------------------------------------------------------ */

int
jobs_get(struct req *r)
{
    struct tx t;
    struct job j;
    json_t *job;
    int64_t id;
    int rc;

    if (path_id(r, &id) < 0)
        return -1;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = store->jobs->get(&t, id, &j);
    if (rc <= 0) {
        if (!rc)
            req_fail(r, "not_found", NULL, "no job %lld", (long long)id);
        else
            req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    job = job_json(&j);
    job_free(&j);
    if (!job)
        return req_fail(r, "unavailable", NULL, "out of memory");
    return job_answer(r, 200, job);
}

struct listing {
    json_t *jobs;
    int64_t n, last, limit, now;
    bool stale;                     /* add stale:true|false (pending) */
};

static int
list_row(const struct job *j, void *arg)
{
    struct listing *l = arg;
    json_t *o;

    if (l->stale && l->n == l->limit) {
        l->n++;                     /* one row more than asked: there are more */
        return 1;
    }
    if (!(o = job_json(j)))
        return 0;
    if (l->stale)
        json_object_set_new(o, "stale", json_boolean(j->status == JOB_PROCESSING &&
                                                     j->locked_until != JOB_NONE &&
                                                     j->locked_until < l->now));
    json_array_append_new(l->jobs, o);
    l->last = j->id;
    l->n++;
    return 0;
}

static int
status_parse(const char *s)
{
    for (int i = JOB_PENDING; i <= JOB_FAILED; i++)
        if (!strcmp(s, job_status_name((enum job_status)i)))
            return i;
    return -1;
}

/* GET /v1/jobs?queue=&status=&limit=&cursor=: newest first; nextCursor is
 * the id to pass as cursor for the next page, null on the last one. */
int
jobs_list(struct req *r)
{
    const char *queue = req_query(r, "queue"), *status = req_query(r, "status");
    const char *cur = req_query(r, "cursor");
    struct job_filter f = {.status = -1, .before_id = INT64_MAX};
    struct listing l = {0};
    struct tx t;
    int rc;

    if (req_query_int(r, "limit", 50, 1, 1000, &f.limit) < 0)
        return -1;
    if (queue && *queue)
        f.queue = queue;
    if (status && *status && (f.status = status_parse(status)) < 0)
        return req_fail(r, "bad_request", NULL,
                        "query parameter 'status' must be pending, processing, completed or failed");
    if (cur && *cur && (parse_int64(cur, &f.before_id) < 0 || f.before_id <= 0))
        return req_fail(r, "bad_request", NULL, "query parameter 'cursor' must be a nextCursor value");
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    l.jobs = json_array();
    rc = store->jobs->list(&t, &f, list_row, &l);
    if (rc < 0) {
        json_decref(l.jobs);
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    return req_ok(r, 200, json_pack("{s:o, s:o}", "jobs", l.jobs, "nextCursor",
                                    l.n == f.limit ? id_json(l.last) : json_null()));
}

/* GET /v1/jobs/pending?queue=: every pending and processing job, oldest
 * first, with stale:true where the lock has expired. */
int
jobs_pending(struct req *r)
{
    const char *queue = req_query(r, "queue");
    struct listing l = {.stale = true};
    struct tx t;
    int rc;

    if (req_query_int(r, "limit", 10000, 1, 100000, &l.limit) < 0)
        return -1;
    if (queue && !*queue)
        queue = NULL;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    l.now = t.now;
    l.jobs = json_array();
    rc = store->jobs->pending(&t, queue, l.limit + 1, list_row, &l);
    if (rc < 0) {
        json_decref(l.jobs);
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    return req_ok(r, 200, json_pack("{s:o, s:b}", "jobs", l.jobs, "truncated", l.n > l.limit));
}

static int
queue_row(const struct job_queue_stats *q, void *arg)
{
    struct listing *l = arg;
    json_t *counts = json_object();

    for (int i = JOB_PENDING; i <= JOB_FAILED; i++)
        json_object_set_new(counts, job_status_name((enum job_status)i), json_integer(q->counts[i]));
    json_array_append_new(l->jobs, json_pack("{s:s, s:o, s:o, s:I}", "queue", q->queue, "counts", counts,
                                             "oldestPendingAgeMs", q->oldest_due == JOB_NONE
                                             ? json_null() : json_integer(l->now - q->oldest_due),
                                             "stale", (json_int_t)q->stale));
    return 0;
}

/* GET /v1/queues: per queue, counts by status, how long the oldest due
 * pending job has waited (null when none is due), the stale count and
 * whether it is paused (queues_api.c). */
int
jobs_queues(struct req *r)
{
    struct listing l = {0};
    struct tx t;

    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    l.now = t.now;
    l.jobs = json_array();
    if (store->jobs->queues(&t, queue_row, &l) < 0 || queues_merge_settings(&t, l.jobs) < 0) {
        json_decref(l.jobs);
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    return req_ok(r, 200, json_pack("{s:o}", "queues", l.jobs));
}
