/* check_jobs.c -- the jobs routes against a real batond: enqueue, claim
 * order, long-poll, concurrency, a killed worker, fencing, retries, the
 * operator's calls, the sweep, retention, listings and bad input. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static const char *
sget(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int64_t
iget(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* The "job" of an answer (new reference); frees the answer. */
static json_t *
job_of(json_t *answer)
{
    json_t *job = json_incref(json_object_get(answer, "job"));

    json_decref(answer);
    return job;
}

static json_t *
enqueue(struct server *s, json_t *body)
{
    json_t *job = job_of(CALL(s, "POST", "/v1/jobs", body, 201));

    ck_assert_ptr_nonnull(job);
    return job;
}

static json_t *
enqueue_in(struct server *s, const char *queue, int priority, int delay_ms)
{
    return enqueue(s, json_pack("{s:s, s:{s:i}, s:i, s:i}", "queue", queue, "payload", "n", priority,
                                "priority", priority, "delayMs", delay_ms));
}

/* Claim without waiting: the job, or NULL when the answer was 204. */
static json_t *
claim(struct server *s, const char *worker, const char *queue, long expect)
{
    return job_of(CALL(s, "POST", "/v1/jobs/claim",
                       json_pack("{s:s, s:s}", "workerId", worker, "queue", queue), expect));
}

/* POST /v1/jobs/{id}/{verb} */
static json_t *
job_call(struct server *s, const char *id, const char *verb, json_t *body, long expect)
{
    char path[128];

    snprintf(path, sizeof path, "/v1/jobs/%s/%s", id, verb);
    return CALL(s, "POST", path, body, expect);
}

/* complete / fail / heartbeat as the worker holding job's claim */
static json_t *
worker_call(struct server *s, json_t *job, const char *verb, json_t *extra, long expect)
{
    json_t *body = json_pack("{s:s, s:s}", "workerId", sget(job, "lockedBy"), "claimToken",
                             sget(job, "claimToken"));

    if (extra) {
        json_object_update(body, extra);
        json_decref(extra);
    }
    return job_call(s, sget(job, "id"), verb, body, expect);
}

static json_t *
get_job(struct server *s, const char *id)
{
    char path[128];

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    return job_of(CALL(s, "GET", path, NULL, 200));
}

static const char *
err_code(json_t *answer)
{
    return sget(json_object_get(answer, "error"), "code");
}

static const char *
err_message(json_t *answer)
{
    return sget(json_object_get(answer, "error"), "message");
}

/* ---- enqueue, get, claim order --------------------------------------------- */

START_TEST(enqueue_and_get_any_payload)
{
    struct server s = {0};
    json_t *payloads = json_pack("[{s:i}, s, i, f, n, [i, s], b]", "a", 1, "text", 42, 1.5, 7, "x", 1);
    json_t *p;
    size_t i;

    server_start(&s, NULL);
    json_array_foreach(payloads, i, p) {
        json_t *job = enqueue(&s, json_pack("{s:O}", "payload", p)), *got;
        const char *id = sget(job, "id");
        ck_assert_msg(id && atoll(id) > 0, "id is a numeric string");
        ck_assert_str_eq(sget(job, "queue"), "agent");
        ck_assert_str_eq(sget(job, "status"), "pending");
        ck_assert_int_eq(iget(job, "maxAttempts"), 5);
        ck_assert_int_eq(iget(job, "attempts"), 0);
        ck_assert_int_eq(iget(job, "priority"), 0);
        ck_assert(json_equal(json_object_get(job, "payload"), p));
        ck_assert(json_is_null(json_object_get(job, "claimToken")));
        got = get_job(&s, id);
        ck_assert(json_equal(got, job));
        json_decref(got);
        json_decref(job);
    }
    json_decref(payloads);
    json_decref(CALL(&s, "GET", "/v1/jobs/999999", NULL, 404));
    json_decref(CALL(&s, "GET", "/v1/jobs/abc", NULL, 400));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"agent.job.enqueued\""), 7);
    server_cleanup(&s);
}
END_TEST

START_TEST(claim_order_priority_then_run_at_then_id)
{
    struct server s = {0};
    json_t *a, *b, *c, *d, *e, *got;

    server_start(&s, NULL);
    a = enqueue_in(&s, "order", 0, 0);
    b = enqueue_in(&s, "order", 5, 0);
    c = enqueue_in(&s, "order", 5, 0);
    d = enqueue_in(&s, "order", 10, 1500);   /* best priority, not due yet */
    e = enqueue_in(&s, "other", 99, 0);      /* another queue */

    got = claim(&s, "w1", "order", 200);
    ck_assert_str_eq(sget(got, "id"), sget(b, "id"));
    ck_assert_str_eq(sget(got, "status"), "processing");
    ck_assert_str_eq(sget(got, "lockedBy"), "w1");
    ck_assert_int_eq(iget(got, "attempts"), 1);
    ck_assert_ptr_nonnull(sget(got, "claimToken"));
    ck_assert_int_ge(iget(got, "lockedUntil"), iget(got, "startedAt") + 299000); /* default lock 300 s */
    json_decref(got);
    got = claim(&s, "w1", "order", 200);
    ck_assert_str_eq(sget(got, "id"), sget(c, "id"));
    json_decref(got);
    got = claim(&s, "w1", "order", 200);
    ck_assert_str_eq(sget(got, "id"), sget(a, "id"));
    json_decref(got);
    ck_assert_ptr_null(claim(&s, "w1", "order", 204));
    msleep(1600);
    got = claim(&s, "w1", "order", 200);
    ck_assert_str_eq(sget(got, "id"), sget(d, "id"));
    json_decref(got);
    got = claim(&s, "w2", "other", 200);
    ck_assert_str_eq(sget(got, "id"), sget(e, "id"));
    json_decref(got);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"agent.job.claimed\""), 0);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"order.job.claimed\""), 4);
    json_decref(a), json_decref(b), json_decref(c), json_decref(d), json_decref(e);
    server_cleanup(&s);
}
END_TEST

/* ---- concurrency -------------------------------------------------------------- */

#define MANY 300
#define CLAIMERS 8

struct claimer {
    struct server *s;
    int ids[MANY];
    int n, errors;
};

static void *
claimer_main(void *arg)
{
    struct claimer *c = arg;
    char body[128];

    snprintf(body, sizeof body, "{\"workerId\":\"w%p\",\"queue\":\"many\"}", (void *)c);
    for (;;) {
        struct resp r;
        if (http_req(c->s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r) < 0) {
            c->errors++;
            break;
        }
        if (r.status == 204) {
            resp_free(&r);
            break;
        }
        if (r.status != 200 || c->n >= MANY) {
            c->errors++;
            resp_free(&r);
            break;
        }
        c->ids[c->n++] = atoi(sget(json_object_get(r.json, "job"), "id"));
        resp_free(&r);
    }
    return NULL;
}

START_TEST(concurrent_claims_take_each_job_once)
{
    struct server s = {0};
    struct claimer *cl = calloc(CLAIMERS, sizeof *cl);
    pthread_t th[CLAIMERS];
    int *seen, total = 0, first = 0;

    server_start(&s, NULL);
    for (int i = 0; i < MANY; i++) {
        json_t *job = enqueue_in(&s, "many", i % 3, 0);
        if (!first)
            first = atoi(sget(job, "id"));
        json_decref(job);
    }
    for (int i = 0; i < CLAIMERS; i++) {
        cl[i].s = &s;
        pthread_create(&th[i], NULL, claimer_main, &cl[i]);
    }
    for (int i = 0; i < CLAIMERS; i++)
        pthread_join(th[i], NULL);
    seen = calloc(MANY, sizeof *seen);
    for (int i = 0; i < CLAIMERS; i++) {
        ck_assert_int_eq(cl[i].errors, 0);
        for (int k = 0; k < cl[i].n; k++) {
            int idx = cl[i].ids[k] - first;
            ck_assert_msg(idx >= 0 && idx < MANY, "claimed an unknown id %d", cl[i].ids[k]);
            ck_assert_msg(seen[idx] == 0, "job %d claimed twice", cl[i].ids[k]);
            seen[idx] = 1;
            total++;
        }
    }
    ck_assert_int_eq(total, MANY);
    free(seen);
    free(cl);
    server_cleanup(&s);
}
END_TEST

/* A worker process claims with lockMs=1000 and is killed with SIGKILL: the
 * job is claimable by another worker shortly after the lock expires, and
 * the dead worker's token no longer completes it. */
START_TEST(killed_worker_job_reclaimed)
{
    struct server s = {0};
    json_t *job, *got, *answer;
    int fds[2];
    char line[256] = {0}, id[32], token[128];
    pid_t pid;
    ssize_t n, len = 0;
    int64_t t0;

    server_start(&s, NULL);
    job = enqueue_in(&s, "agent", 0, 0);
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        const char *body = "{\"workerId\":\"doomed\",\"lockMs\":1000}";
        struct resp r;
        close(fds[0]);
        if (http_req(&s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r) == 0 &&
            r.status == 200) {
            json_t *j = json_object_get(r.json, "job");
            dprintf(fds[1], "%s %s\n", sget(j, "id"), sget(j, "claimToken"));
        } else
            dprintf(fds[1], "failed -\n");
        for (;;)
            pause();        /* a worker stuck in its handler */
    }
    close(fds[1]);
    while (len < (ssize_t)sizeof line - 1 && !strchr(line, '\n') &&
           (n = read(fds[0], line + len, sizeof line - 1 - (size_t)len)) > 0)
        len += n;
    close(fds[0]);
    ck_assert_int_eq(sscanf(line, "%31s %127s", id, token), 2);
    ck_assert_str_eq(id, sget(job, "id"));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    t0 = now_ms();

    got = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                      json_pack("{s:s, s:i}", "workerId", "rescuer", "waitMs", 20000), 200));
    ck_assert_str_eq(sget(got, "id"), id);
    ck_assert_str_eq(sget(got, "lockedBy"), "rescuer");
    ck_assert_int_eq(iget(got, "attempts"), 2);
    ck_assert_str_ne(sget(got, "claimToken"), token);
    /* lockMs + sweep interval, plus generous slack for a slow machine */
    ck_assert_int_lt(now_ms() - t0, 1000 + 200 + 8000);
    answer = job_call(&s, id, "complete", json_pack("{s:s, s:s}", "workerId", "doomed", "claimToken", token), 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    json_decref(worker_call(&s, got, "complete", json_pack("{s:{s:b}}", "result", "ok", 1), 200));
    ck_assert_int_ge(server_log_count(&s, "\"event\":\"agent.job.requeued\""), 1);
    json_decref(got);
    json_decref(job);
    server_cleanup(&s);
}
END_TEST

/* ---- long-poll ------------------------------------------------------------- */

struct waiter {
    struct server *s;
    const char *body;
    struct resp r;
    int64_t done_at;
    int rc;
    const char *path;               /* NULL: POST /v1/jobs/claim */
};

static void *
waiter_main(void *arg)
{
    struct waiter *w = arg;

    w->rc = http_req(w->s, "POST", w->path ? w->path : "/v1/jobs/claim", w->body, strlen(w->body), NULL, NULL, &w->r);
    w->done_at = now_ms();
    return NULL;
}

START_TEST(waiting_claim_woken_by_enqueue)
{
    struct server s = {0};
    struct waiter w = {&s, "{\"workerId\":\"w\",\"queue\":\"lp\",\"waitMs\":30000}", {0}, 0, 0, NULL};
    pthread_t th;
    json_t *job;
    int64_t t0;

    server_start(&s, NULL);
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(500);
    t0 = now_ms();
    job = enqueue_in(&s, "lp", 0, 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_str_eq(sget(json_object_get(w.r.json, "job"), "id"), sget(job, "id"));
    ck_assert_int_lt(w.done_at - t0, 5000);     /* long before the 30 s deadline */
    resp_free(&w.r);
    json_decref(job);
    server_cleanup(&s);
}
END_TEST

START_TEST(waiting_claim_woken_when_delayed_job_due)
{
    struct server s = {0};
    json_t *job, *got;
    int64_t t0;

    server_start(&s, NULL);
    job = enqueue_in(&s, "later", 0, 1500);
    t0 = now_ms();
    got = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                      json_pack("{s:s, s:s, s:i}", "workerId", "w", "queue", "later", "waitMs", 30000), 200));
    ck_assert_str_eq(sget(got, "id"), sget(job, "id"));
    ck_assert_int_ge(now_ms() - t0, 1200);
    ck_assert_int_lt(now_ms() - t0, 8000);
    json_decref(got);
    json_decref(job);
    server_cleanup(&s);
}
END_TEST

START_TEST(waiting_claim_times_out_with_204)
{
    struct server s = {0};
    int64_t t0 = 0;

    server_start(&s, NULL);
    t0 = now_ms();
    ck_assert_ptr_null(CALL(&s, "POST", "/v1/jobs/claim",
                            json_pack("{s:s, s:s, s:i}", "workerId", "w", "queue", "none", "waitMs", 700), 204));
    ck_assert_int_ge(now_ms() - t0, 650);
    ck_assert_int_lt(now_ms() - t0, 8000);
    server_cleanup(&s);
}
END_TEST

/* A parked claim whose client hung up must not take the job it is woken for. */
START_TEST(gone_waiter_does_not_swallow_a_job)
{
    struct server s = {0};
    json_t *job, *got;
    pid_t pid;

    server_start(&s, NULL);
    pid = fork();
    if (pid == 0) {
        const char *body = "{\"workerId\":\"gone\",\"queue\":\"g\",\"waitMs\":30000}";
        struct resp r;
        http_req(&s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r);
        _exit(0);
    }
    msleep(500);
    kill(pid, SIGKILL);     /* the client's socket closes while it is parked */
    waitpid(pid, NULL, 0);
    msleep(200);
    job = enqueue_in(&s, "g", 0, 0);
    got = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                      json_pack("{s:s, s:s, s:i}", "workerId", "alive", "queue", "g", "waitMs", 5000), 200));
    ck_assert_str_eq(sget(got, "id"), sget(job, "id"));
    ck_assert_int_eq(iget(got, "attempts"), 1);
    json_decref(got);
    json_decref(job);
    server_cleanup(&s);
}
END_TEST

/* ---- dedupe ----------------------------------------------------------------- */

START_TEST(dedupe_key_until_completed)
{
    struct server s = {0};
    json_t *first, *again, *other, *claimed, *fresh;

    server_start(&s, NULL);
    first = enqueue(&s, json_pack("{s:s, s:s}", "payload", "a", "dedupeKey", "k1"));
    again = CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:s}", "payload", "b", "dedupeKey", "k1"), 200);
    ck_assert(json_is_true(json_object_get(again, "duplicate")));
    ck_assert_str_eq(sget(json_object_get(again, "job"), "id"), sget(first, "id"));
    ck_assert_str_eq(sget(json_object_get(again, "job"), "payload"), "a");   /* the first job's */
    json_decref(again);
    /* the same key in another queue is another job */
    other = enqueue(&s, json_pack("{s:s, s:s, s:s}", "queue", "q2", "payload", "a", "dedupeKey", "k1"));
    ck_assert_str_ne(sget(other, "id"), sget(first, "id"));
    /* still a duplicate while processing */
    claimed = claim(&s, "w", "agent", 200);
    json_decref(CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:s}", "payload", "c", "dedupeKey", "k1"), 200));
    json_decref(worker_call(&s, claimed, "complete", NULL, 200));
    /* completed: the key is free again */
    fresh = enqueue(&s, json_pack("{s:s, s:s}", "payload", "d", "dedupeKey", "k1"));
    ck_assert_str_ne(sget(fresh, "id"), sget(first, "id"));
    ck_assert_str_eq(sget(fresh, "dedupeKey"), "k1");
    json_decref(first), json_decref(other), json_decref(claimed), json_decref(fresh);
    server_cleanup(&s);
}
END_TEST

/* ---- failures, retries, operator calls ------------------------------------ */

START_TEST(retryable_fail_backs_off_then_exhausts)
{
    struct server s = {0};
    json_t *job, *c1, *after, *c2, *final;
    int64_t t0;

    server_start(&s, NULL);
    job = enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "rf", "payload", "x", "maxAttempts", 2));
    c1 = claim(&s, "w", "rf", 200);
    t0 = now_ms();
    after = job_of(worker_call(&s, c1, "fail", json_pack("{s:s, s:s}", "errorReason", "boom",
                                                         "errorMessage", "it broke"), 200));
    ck_assert_str_eq(sget(after, "status"), "pending");
    ck_assert_str_eq(sget(after, "errorReason"), "boom");
    ck_assert_str_eq(sget(after, "errorMessage"), "it broke");
    ck_assert(json_is_null(json_object_get(after, "claimToken")));
    /* backoff after attempt 1: 1000 ms with jitter in [0.5, 1.0] */
    ck_assert_int_ge(iget(after, "runAt"), t0 + 500 - 50);
    ck_assert_int_le(iget(after, "runAt"), now_ms() + 1000);
    ck_assert_ptr_null(claim(&s, "w", "rf", 204));          /* not due yet */
    /* the old claim is gone: failing it again is claim_lost */
    json_decref(worker_call(&s, c1, "fail", json_pack("{s:s}", "errorReason", "again"), 409));
    c2 = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                     json_pack("{s:s, s:s, s:i}", "workerId", "w", "queue", "rf", "waitMs", 10000), 200));
    ck_assert_int_ge(now_ms(), iget(after, "runAt"));
    ck_assert_int_eq(iget(c2, "attempts"), 2);
    final = job_of(worker_call(&s, c2, "fail", json_pack("{s:s}", "errorReason", "boom2"), 200));
    ck_assert_str_eq(sget(final, "status"), "failed");     /* attempts exhausted */
    ck_assert_str_eq(sget(final, "errorReason"), "boom2");
    ck_assert_int_ge(server_log_count(&s, "\"event\":\"rf.job.failed\""), 2);
    json_decref(job), json_decref(c1), json_decref(after), json_decref(c2), json_decref(final);
    server_cleanup(&s);
}
END_TEST

START_TEST(fail_retry_after_and_not_retryable)
{
    struct server s = {0};
    json_t *c, *after;
    int64_t t0;

    server_start(&s, NULL);
    json_decref(enqueue_in(&s, "ra", 0, 0));
    c = claim(&s, "w", "ra", 200);
    t0 = now_ms();
    after = job_of(worker_call(&s, c, "fail", json_pack("{s:s, s:i}", "errorReason", "rate_limited",
                                                        "retryAfterMs", 5000), 200));
    ck_assert_str_eq(sget(after, "status"), "pending");
    ck_assert_int_ge(iget(after, "runAt"), t0 + 5000 - 50);
    json_decref(after);
    json_decref(c);

    json_decref(enqueue_in(&s, "nr", 0, 0));
    c = claim(&s, "w", "nr", 200);
    after = job_of(worker_call(&s, c, "fail", json_pack("{s:s, s:b}", "errorReason", "fatal",
                                                        "retryable", 0), 200));
    ck_assert_str_eq(sget(after, "status"), "failed");
    ck_assert_int_eq(iget(after, "attempts"), 1);
    ck_assert_ptr_null(claim(&s, "w", "nr", 204));
    json_decref(after);
    json_decref(c);
    server_cleanup(&s);
}
END_TEST

START_TEST(operator_retry_of_exhausted_job)
{
    struct server s = {0};
    json_t *c, *failed, *retried, *again, *answer, *pend;

    server_start(&s, NULL);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "op", "payload", "x", "maxAttempts", 1)));
    c = claim(&s, "w", "op", 200);
    failed = job_of(worker_call(&s, c, "fail", json_pack("{s:s}", "errorReason", "boom"), 200));
    ck_assert_str_eq(sget(failed, "status"), "failed");
    retried = job_of(job_call(&s, sget(c, "id"), "retry", json_object(), 200));
    ck_assert_str_eq(sget(retried, "status"), "pending");
    ck_assert_int_eq(iget(retried, "attempts"), 1);
    ck_assert_int_eq(iget(retried, "maxAttempts"), 2);
    again = claim(&s, "w2", "op", 200);                 /* claimable at once */
    ck_assert_str_eq(sget(again, "id"), sget(c, "id"));
    ck_assert_int_eq(iget(again, "attempts"), 2);
    /* retry of a processing job takes it from its worker */
    json_decref(job_of(job_call(&s, sget(c, "id"), "retry", NULL, 200)));
    answer = worker_call(&s, again, "complete", NULL, 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    /* pending and completed jobs cannot be retried */
    answer = job_call(&s, sget(c, "id"), "retry", NULL, 409);
    ck_assert_str_eq(err_code(answer), "conflict");
    json_decref(answer);
    pend = claim(&s, "w3", "op", 200);
    json_decref(worker_call(&s, pend, "complete", NULL, 200));
    json_decref(job_call(&s, sget(c, "id"), "retry", NULL, 409));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"op.job.retried\""), 2);
    json_decref(job_call(&s, "424242", "retry", NULL, 404));
    json_decref(c), json_decref(failed), json_decref(retried), json_decref(again), json_decref(pend);
    server_cleanup(&s);
}
END_TEST

START_TEST(fail_now_and_cancel)
{
    struct server s = {0};
    json_t *c, *f, *answer, *p, *x;

    server_start(&s, NULL);
    json_decref(enqueue_in(&s, "fn", 0, 0));
    c = claim(&s, "w", "fn", 200);
    f = job_of(job_call(&s, sget(c, "id"), "fail-now",
                        json_pack("{s:s, s:s}", "errorReason", "operator_stop", "errorMessage", "stop it"), 200));
    ck_assert_str_eq(sget(f, "status"), "failed");
    ck_assert_str_eq(sget(f, "errorReason"), "operator_stop");
    ck_assert_str_eq(sget(f, "errorMessage"), "stop it");
    answer = worker_call(&s, c, "complete", NULL, 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    json_decref(worker_call(&s, c, "heartbeat", NULL, 409));
    answer = job_call(&s, sget(c, "id"), "fail-now", json_pack("{s:s}", "errorReason", "again"), 409);
    ck_assert_str_eq(err_code(answer), "conflict");
    json_decref(answer);
    json_decref(job_call(&s, sget(c, "id"), "cancel", NULL, 409));

    p = enqueue_in(&s, "fn", 0, 0);
    x = job_of(job_call(&s, sget(p, "id"), "cancel", json_object(), 200));
    ck_assert_str_eq(sget(x, "status"), "failed");
    ck_assert_str_eq(sget(x, "errorReason"), "cancelled");
    ck_assert_ptr_null(claim(&s, "w", "fn", 204));
    json_decref(job_call(&s, sget(p, "id"), "cancel", NULL, 409));
    json_decref(job_call(&s, "424242", "cancel", NULL, 404));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"fn.job.failed\""), 2);
    json_decref(c), json_decref(f), json_decref(p), json_decref(x);
    server_cleanup(&s);
}
END_TEST

START_TEST(heartbeat_extends_lock_and_tokens_fence)
{
    struct server s = {0};
    json_t *c, *hb, *answer, *done, *again;

    server_start(&s, NULL);
    json_decref(enqueue_in(&s, "hb", 0, 0));
    c = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                    json_pack("{s:s, s:s, s:i}", "workerId", "w", "queue", "hb", "lockMs", 1000), 200));
    hb = job_of(worker_call(&s, c, "heartbeat", json_pack("{s:i}", "lockMs", 60000), 200));
    ck_assert_int_ge(iget(hb, "lockedUntil"), iget(c, "lockedUntil") + 50000);
    /* wrong token or wrong worker: claim_lost, nothing changes */
    answer = job_call(&s, sget(c, "id"), "heartbeat",
                      json_pack("{s:s, s:s}", "workerId", "w", "claimToken", "c_forged"), 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    answer = job_call(&s, sget(c, "id"), "complete",
                      json_pack("{s:s, s:s}", "workerId", "intruder", "claimToken", sget(c, "claimToken")), 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    msleep(1500);   /* past the original lock: the heartbeat keeps it, the sweep leaves it */
    ck_assert_ptr_null(claim(&s, "other", "hb", 204));
    done = job_of(worker_call(&s, c, "complete", json_pack("{s:{s:s}}", "result", "answer", "42"), 200));
    ck_assert_str_eq(sget(done, "status"), "completed");
    ck_assert_str_eq(sget(json_object_get(done, "result"), "answer"), "42");
    ck_assert_int_gt(iget(done, "completedAt"), 0);
    /* a repeated completion of the same claim gets the same answer */
    again = job_of(worker_call(&s, c, "complete", NULL, 200));
    ck_assert(json_equal(again, done));
    json_decref(worker_call(&s, c, "heartbeat", NULL, 409));
    json_decref(worker_call(&s, c, "fail", json_pack("{s:s}", "errorReason", "late"), 409));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"hb.job.completed\""), 1);
    json_decref(c), json_decref(hb), json_decref(done), json_decref(again);
    server_cleanup(&s);
}
END_TEST

/* ---- sweep, requeue-stale, retention ------------------------------------- */

static json_t *
claim_locked(struct server *s, const char *queue, int lock_ms)
{
    return job_of(CALL(s, "POST", "/v1/jobs/claim",
                       json_pack("{s:s, s:s, s:i}", "workerId", "sleepy", "queue", queue, "lockMs", lock_ms), 200));
}

static json_t *
wait_status(struct server *s, const char *id, const char *status, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;

    for (;;) {
        json_t *j = get_job(s, id);
        if (!strcmp(sget(j, "status"), status) || now_ms() > end)
            return j;
        json_decref(j);
        msleep(50);
    }
}

START_TEST(sweep_requeues_or_fails_expired_locks)
{
    struct server s = {0};
    json_t *a, *b, *ja, *jb;

    server_start(&s, NULL);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "sw1", "payload", "x", "maxAttempts", 3)));
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "sw2", "payload", "x", "maxAttempts", 1)));
    a = claim_locked(&s, "sw1", 200);
    b = claim_locked(&s, "sw2", 200);
    ja = wait_status(&s, sget(a, "id"), "pending", 10000);
    jb = wait_status(&s, sget(b, "id"), "failed", 10000);
    ck_assert_str_eq(sget(ja, "status"), "pending");
    ck_assert_str_eq(sget(ja, "errorReason"), "lock_expired");
    ck_assert(json_is_null(json_object_get(ja, "claimToken")));
    ck_assert_str_eq(sget(jb, "status"), "failed");
    ck_assert_str_eq(sget(jb, "errorReason"), "lock_expired");
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"sw1.job.requeued\""), 1);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"sw2.job.failed\""), 1);
    json_decref(worker_call(&s, a, "complete", NULL, 409));
    json_decref(a), json_decref(b), json_decref(ja), json_decref(jb);
    server_cleanup(&s);
}
END_TEST

START_TEST(requeue_stale_route_and_pending_flags)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    struct server s = {0};
    json_t *a, *b, *fresh, *pending, *out, *jobs, *j, *queues, *q;
    size_t i;
    int stale = 0, seen = 0;

    server_start(&s, env);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "st", "payload", "x", "maxAttempts", 3)));
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "st", "payload", "y", "maxAttempts", 1)));
    pending = enqueue(&s, json_pack("{s:s, s:s}", "queue", "st", "payload", "z"));
    /* locks long enough that the second claim cannot take back the first
     * job on a slow machine, short enough to expire before we look */
    a = claim_locked(&s, "st", 1500);
    b = claim_locked(&s, "st", 1500);
    fresh = enqueue(&s, json_pack("{s:s, s:s}", "queue", "st2", "payload", "w"));
    json_decref(claim_locked(&s, "st2", 600000));
    msleep(1800);

    out = CALL(&s, "GET", "/v1/jobs/pending?queue=st", NULL, 200);
    jobs = json_object_get(out, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 3);
    json_array_foreach(jobs, i, j) {
        if (json_is_true(json_object_get(j, "stale")))
            stale++;
    }
    ck_assert_int_eq(stale, 2);
    json_decref(out);
    out = CALL(&s, "GET", "/v1/jobs/pending", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "jobs")), 4);
    json_decref(out);

    queues = CALL(&s, "GET", "/v1/queues", NULL, 200);
    json_array_foreach(json_object_get(queues, "queues"), i, q) {
        json_t *counts = json_object_get(q, "counts");
        if (!strcmp(sget(q, "queue"), "st")) {
            seen++;
            ck_assert_int_eq(iget(counts, "pending"), 1);
            ck_assert_int_eq(iget(counts, "processing"), 2);
            ck_assert_int_eq(iget(counts, "completed"), 0);
            ck_assert_int_eq(iget(q, "stale"), 2);
            ck_assert_int_ge(iget(q, "oldestPendingAgeMs"), 250);
        } else if (!strcmp(sget(q, "queue"), "st2")) {
            seen++;
            ck_assert_int_eq(iget(counts, "processing"), 1);
            ck_assert_int_eq(iget(q, "stale"), 0);
            ck_assert(json_is_null(json_object_get(q, "oldestPendingAgeMs")));
        }
    }
    ck_assert_int_eq(seen, 2);
    json_decref(queues);

    out = CALL(&s, "POST", "/v1/jobs/requeue-stale", json_object(), 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "requeued")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(out, "failed")), 1);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(out, "requeued"), 0)), sget(a, "id"));
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(out, "failed"), 0)), sget(b, "id"));
    json_decref(out);
    out = CALL(&s, "POST", "/v1/jobs/requeue-stale", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "requeued")), 0);
    ck_assert_int_eq(json_array_size(json_object_get(out, "failed")), 0);
    json_decref(out);
    json_decref(a), json_decref(b), json_decref(fresh), json_decref(pending);
    server_cleanup(&s);
}
END_TEST

/* A claim takes over an expired lock itself -- without waiting for the
 * sweep -- but fails a job whose attempts are exhausted instead. */
START_TEST(claim_takes_expired_lock_without_sweep)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    struct server s = {0};
    json_t *a, *got, *b, *jb;

    server_start(&s, env);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "ex", "payload", "x", "maxAttempts", 1)));
    a = claim_locked(&s, "ex", 100);
    msleep(250);
    ck_assert_ptr_null(claim(&s, "w2", "ex", 204));    /* exhausted: failed, not handed out */
    jb = get_job(&s, sget(a, "id"));
    ck_assert_str_eq(sget(jb, "status"), "failed");
    ck_assert_str_eq(sget(jb, "errorReason"), "lock_expired");
    json_decref(jb);

    json_decref(enqueue(&s, json_pack("{s:s, s:s}", "queue", "ex", "payload", "y")));
    b = claim_locked(&s, "ex", 100);
    msleep(250);
    got = claim(&s, "w2", "ex", 200);
    ck_assert_str_eq(sget(got, "id"), sget(b, "id"));
    ck_assert_int_eq(iget(got, "attempts"), 2);
    json_decref(worker_call(&s, b, "heartbeat", NULL, 409));
    json_decref(a), json_decref(b), json_decref(got);
    server_cleanup(&s);
}
END_TEST

/* A mass lock expiry for the backlog test, made through the routes: BACKLOG
 * jobs enqueued, claimed and then heartbeaten with lockMs=1 by LOADERS
 * threads (the writer commits their requests in groups, which makes this
 * several times faster than one client). */
#define BACKLOG 1300
#define LOADERS 10

struct loader {
    struct server *s;
    int phase;                      /* 0 enqueue, 1 claim, 2 expire the locks */
    int todo;                       /* jobs to enqueue */
    int n, errors;
    int64_t *ids;                   /* the jobs this loader claimed... */
    char (*tokens)[48];             /* ...and their claim tokens */
};

static void *
loader_main(void *arg)
{
    struct loader *l = arg;
    char body[256];
    struct resp r;

    if (l->phase == 0) {
        for (int i = 0; i < l->todo; i++) {
            static const char job[] = "{\"queue\":\"mass\",\"payload\":1}";
            if (http_req(l->s, "POST", "/v1/jobs", job, strlen(job), NULL, NULL, &r) < 0 || r.status != 201)
                l->errors++;
            resp_free(&r);
        }
    } else if (l->phase == 1) {
        snprintf(body, sizeof body, "{\"workerId\":\"gone-%p\",\"queue\":\"mass\",\"lockMs\":600000}", (void *)l);
        for (;;) {
            json_t *job;
            if (http_req(l->s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r) < 0) {
                l->errors++;
                break;
            }
            if (r.status != 200 || l->n >= BACKLOG) {
                l->errors += r.status != 204;
                resp_free(&r);
                break;
            }
            job = json_object_get(r.json, "job");
            l->ids[l->n] = atoll(sget(job, "id"));
            snprintf(l->tokens[l->n++], sizeof *l->tokens, "%s", sget(job, "claimToken"));
            resp_free(&r);
        }
    } else {
        for (int i = 0; i < l->n; i++) {
            char path[64];
            snprintf(path, sizeof path, "/v1/jobs/%lld/heartbeat", (long long)l->ids[i]);
            snprintf(body, sizeof body, "{\"workerId\":\"gone-%p\",\"claimToken\":\"%s\",\"lockMs\":1}",
                     (void *)l, l->tokens[i]);
            if (http_req(l->s, "POST", path, body, strlen(body), NULL, NULL, &r) < 0 || r.status != 200)
                l->errors++;
            resp_free(&r);
        }
    }
    return NULL;
}

/* Run phase in every loader at once; the total of their counts. */
static int
loaders_run(struct loader *ls, int phase)
{
    pthread_t th[LOADERS];
    int total = 0;

    for (int i = 0; i < LOADERS; i++) {
        ls[i].phase = phase;
        pthread_create(&th[i], NULL, loader_main, &ls[i]);
    }
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(ls[i].errors, 0);
        total += ls[i].n;
    }
    return total;
}

/* The counts of queue in GET /v1/queues: pending into *pending, processing
 * into *processing. */
static void
queue_counts(struct server *s, const char *queue, int64_t *pending, int64_t *processing)
{
    json_t *q = CALL(s, "GET", "/v1/queues", NULL, 200), *s_q;
    size_t i;

    *pending = *processing = 0;
    json_array_foreach(json_object_get(q, "queues"), i, s_q)
        if (!strcmp(sget(s_q, "queue"), queue)) {
            *pending = iget(json_object_get(s_q, "counts"), "pending");
            *processing = iget(json_object_get(s_q, "counts"), "processing");
        }
    json_decref(q);
}

/* A mass lock expiry is worked off by the periodic sweep: every job
 * requeued once, none lost. (It is one set-based chunk now; the chunks
 * themselves are the store case sweep_and_prune_in_chunks.) */
START_TEST(sweep_works_off_a_backlog_in_chunks)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    static const char *const fast[] = {"BATON_SWEEP_INTERVAL_MS=300", NULL};
    struct server s = {0};
    struct loader ls[LOADERS];
    int64_t pending = 0, processing = 0;

    memset(ls, 0, sizeof ls);
    server_start(&s, env);
    for (int i = 0; i < LOADERS; i++) {
        ls[i].s = &s;
        ls[i].todo = BACKLOG / LOADERS + (i < BACKLOG % LOADERS);
        ls[i].tokens = calloc(BACKLOG, sizeof *ls[i].tokens);
        ls[i].ids = calloc(BACKLOG, sizeof *ls[i].ids);
    }
    loaders_run(ls, 0);
    ck_assert_int_eq(loaders_run(ls, 1), BACKLOG);     /* every job processing, locked by a gone worker */
    loaders_run(ls, 2);                                 /* ...whose locks have all expired */
    queue_counts(&s, "mass", &pending, &processing);
    ck_assert_int_eq(pending, 0);
    ck_assert_int_eq(processing, BACKLOG);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"mass.job.requeued\""), 0);
    ck_assert_int_eq(server_stop(&s), 0);
    server_start(&s, fast);
    for (int waited = 0; waited < 30000 && pending < BACKLOG; waited += 200) {
        msleep(200);
        queue_counts(&s, "mass", &pending, &processing);
    }
    ck_assert_int_eq(pending, BACKLOG);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"mass.job.requeued\""), BACKLOG);
    for (int i = 0; i < LOADERS; i++)
        free(ls[i].tokens), free(ls[i].ids);
    server_cleanup(&s);
}
END_TEST

START_TEST(retention_deletes_only_old_completed)
{
    static const char *const env[] = {"BATON_RETENTION_MS=2000", NULL};
    struct server s = {0};
    json_t *old, *pend, *fail, *young, *c, *answer;
    char path[64];
    int64_t end;
    long status = 200;

    server_start(&s, env);
    old = enqueue_in(&s, "ret", 0, 0);
    c = claim(&s, "w", "ret", 200);
    json_decref(worker_call(&s, c, "complete", NULL, 200));
    json_decref(c);
    pend = enqueue_in(&s, "ret-p", 0, 0);
    fail = enqueue_in(&s, "ret-f", 0, 0);
    c = claim(&s, "w", "ret-f", 200);
    json_decref(worker_call(&s, c, "fail", json_pack("{s:s, s:b}", "errorReason", "x", "retryable", 0), 200));
    json_decref(c);
    snprintf(path, sizeof path, "/v1/jobs/%s", sget(old, "id"));
    for (end = now_ms() + 15000; now_ms() < end; msleep(100)) {
        struct resp r;
        ck_assert_int_eq(http_req(&s, "GET", path, NULL, 0, NULL, NULL, &r), 0);
        status = r.status;
        resp_free(&r);
        if (status == 404)
            break;
    }
    ck_assert_int_eq(status, 404);
    ck_assert_int_ge(server_log_count(&s, "\"event\":\"jobs.retention.deleted\""), 1);
    young = enqueue_in(&s, "ret", 0, 0);
    c = claim(&s, "w", "ret", 200);
    json_decref(worker_call(&s, c, "complete", NULL, 200));
    json_decref(c);
    msleep(700);    /* several sweeps */
    json_decref(get_job(&s, sget(young, "id")));
    json_decref(get_job(&s, sget(pend, "id")));        /* older, but pending */
    answer = get_job(&s, sget(fail, "id"));            /* older, but failed */
    ck_assert_str_eq(sget(answer, "status"), "failed");
    json_decref(answer);
    json_decref(old), json_decref(pend), json_decref(fail), json_decref(young);
    server_cleanup(&s);
}
END_TEST

/* ---- listing ------------------------------------------------------------------ */

START_TEST(list_newest_first_with_cursor)
{
    struct server s = {0};
    char ids[7][32], path[128];
    json_t *page, *jobs, *c;
    const char *cursor;

    server_start(&s, NULL);
    for (int i = 0; i < 7; i++) {
        json_t *j = enqueue_in(&s, "pg", 0, 0);
        snprintf(ids[i], sizeof ids[i], "%s", sget(j, "id"));
        json_decref(j);
    }
    json_decref(enqueue_in(&s, "elsewhere", 0, 0));
    page = CALL(&s, "GET", "/v1/jobs?queue=pg&limit=3", NULL, 200);
    jobs = json_object_get(page, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 3);
    ck_assert_str_eq(sget(json_array_get(jobs, 0), "id"), ids[6]);
    ck_assert_str_eq(sget(json_array_get(jobs, 2), "id"), ids[4]);
    cursor = sget(page, "nextCursor");
    ck_assert_ptr_nonnull(cursor);
    snprintf(path, sizeof path, "/v1/jobs?queue=pg&limit=3&cursor=%s", cursor);
    json_decref(page);
    page = CALL(&s, "GET", path, NULL, 200);
    jobs = json_object_get(page, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 3);
    ck_assert_str_eq(sget(json_array_get(jobs, 0), "id"), ids[3]);
    snprintf(path, sizeof path, "/v1/jobs?queue=pg&limit=3&cursor=%s", sget(page, "nextCursor"));
    json_decref(page);
    page = CALL(&s, "GET", path, NULL, 200);
    jobs = json_object_get(page, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 1);
    ck_assert_str_eq(sget(json_array_get(jobs, 0), "id"), ids[0]);
    ck_assert(json_is_null(json_object_get(page, "nextCursor")));
    json_decref(page);

    c = claim(&s, "w", "pg", 200);
    page = CALL(&s, "GET", "/v1/jobs?status=processing", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(page, "jobs")), 1);
    ck_assert_str_eq(sget(json_array_get(json_object_get(page, "jobs"), 0), "id"), sget(c, "id"));
    json_decref(page);
    page = CALL(&s, "GET", "/v1/jobs?queue=pg&status=pending", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(page, "jobs")), 6);
    json_decref(page);
    page = CALL(&s, "GET", "/v1/jobs", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(page, "jobs")), 8);
    json_decref(page);
    json_decref(CALL(&s, "GET", "/v1/jobs?status=done", NULL, 400));
    json_decref(CALL(&s, "GET", "/v1/jobs?cursor=abc", NULL, 400));
    json_decref(CALL(&s, "GET", "/v1/jobs?limit=0", NULL, 400));
    json_decref(CALL(&s, "GET", "/v1/jobs?limit=x", NULL, 400));
    json_decref(c);
    server_cleanup(&s);
}
END_TEST

/* ---- bad input --------------------------------------------------------------- */

struct bad {
    const char *verb;       /* NULL: POST /v1/jobs; "claim": /v1/jobs/claim; else /v1/jobs/{id}/verb */
    const char *body;
    long status;
    const char *names;      /* the message must mention this */
};

START_TEST(bad_input_answers_400_or_404_and_changes_nothing)
{
    static const struct bad cases[] = {
        {NULL, "{}", 400, "payload"},
        {NULL, "{\"payload\":1,\"priority\":\"high\"}", 400, "priority"},
        {NULL, "{\"payload\":1,\"priority\":1.5}", 400, "priority"},
        {NULL, "{\"payload\":1,\"delayMs\":-1}", 400, "delayMs"},
        {NULL, "{\"payload\":1,\"maxAttempts\":0}", 400, "maxAttempts"},
        {NULL, "{\"payload\":1,\"queue\":\"\"}", 400, "queue"},
        {NULL, "{\"payload\":1,\"queue\":\"has space\"}", 400, "queue"},
        {NULL, "{\"payload\":1,\"queue\":\"outbound.whatsapp\"}", 400, "queue"},
        {NULL, "{\"payload\":1,\"queue\":7}", 400, "queue"},
        {NULL, "{\"payload\":1,\"dedupeKey\":5}", 400, "dedupeKey"},
        {NULL, "[1,2]", 400, "object"},
        {NULL, "{\"payload\":", 400, "JSON"},
        {"claim", "{}", 400, "workerId"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"bq\",\"waitMs\":60001}", 400, "waitMs"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"bq\",\"waitMs\":-1}", 400, "waitMs"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"bq\",\"lockMs\":0}", 400, "lockMs"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"bq\",\"lockMs\":\"10\"}", 400, "lockMs"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"b q\"}", 400, "queue"},
        {"claim", "{\"workerId\":\"w\",\"queue\":\"bq\",\"leaseToken\":\"7\"}", 400, "leaseToken"},
        {"claim", "{\"workerId\":5,\"queue\":\"bq\"}", 400, "workerId"},
        {"heartbeat", "{\"workerId\":\"w\"}", 400, "claimToken"},
        {"heartbeat", "{\"claimToken\":\"TOKEN\"}", 400, "workerId"},
        {"heartbeat", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\",\"lockMs\":0}", 400, "lockMs"},
        {"complete", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\",\"reply\":\"hi\"}", 400, "reply"},
        {"complete", "{\"workerId\":\"w\",\"claimToken\":7}", 400, "claimToken"},
        {"fail", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\"}", 400, "errorReason"},
        {"fail", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\",\"errorReason\":\"x\",\"retryable\":\"yes\"}", 400, "retryable"},
        {"fail", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\",\"errorReason\":\"x\",\"retryAfterMs\":-5}", 400, "retryAfterMs"},
        {"fail-now", "{}", 400, "errorReason"},
        {"fail-now", "{\"errorReason\":3}", 400, "errorReason"},
        {"heartbeat", "{\"workerId\":\"w\",\"claimToken\":\"TOKEN\",\"leaseToken\":-1}", 400, "leaseToken"},
    };
    static const char *const verbs[] = {"heartbeat", "complete", "fail", "retry", "fail-now", "cancel"};
    struct server s = {0};
    json_t *job, *before, *after, *jobs_before, *jobs_after;
    char path[128];

    server_start(&s, NULL);
    json_decref(enqueue_in(&s, "bq", 0, 0));
    job = claim(&s, "w", "bq", 200);
    json_decref(enqueue_in(&s, "bq", 0, 0));   /* a pending one a bad claim must not take */
    before = get_job(&s, sget(job, "id"));
    jobs_before = CALL(&s, "GET", "/v1/jobs", NULL, 200);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad *b = &cases[i];
        char body[512];
        const char *tok = strstr(b->body, "TOKEN");
        struct resp r;
        if (!b->verb)
            snprintf(path, sizeof path, "/v1/jobs");
        else if (!strcmp(b->verb, "claim"))
            snprintf(path, sizeof path, "/v1/jobs/claim");
        else
            snprintf(path, sizeof path, "/v1/jobs/%s/%s", sget(job, "id"), b->verb);
        if (tok)
            snprintf(body, sizeof body, "%.*s%s%s", (int)(tok - b->body), b->body,
                     sget(job, "claimToken"), tok + 5);
        else
            snprintf(body, sizeof body, "%s", b->body);
        ck_assert_int_eq(http_req(&s, "POST", path, body, strlen(body), NULL, NULL, &r), 0);
        ck_assert_msg(r.status == b->status, "%s %s: %ld, expected %ld: %s", path, body, r.status,
                      b->status, r.body);
        ck_assert_msg(err_message(r.json) && strstr(err_message(r.json), b->names),
                      "%s %s: message does not name %s: %s", path, body, b->names, r.body);
        resp_free(&r);
    }
    /* unknown ids: 404; malformed ids (not a positive integer): 400 naming
     * the path parameter, on every route */
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        const char *body = "{\"workerId\":\"w\",\"claimToken\":\"c_x\",\"errorReason\":\"x\"}";
        const char *ids[] = {"999999", "abc", "0", "-3"};
        for (size_t k = 0; k < 4; k++) {
            json_t *answer;
            snprintf(path, sizeof path, "/v1/jobs/%s/%s", ids[k], verbs[i]);
            answer = CALL(&s, "POST", path, json_loads(body, 0, NULL), k ? 400 : 404);
            ck_assert_str_eq(err_code(answer), k ? "bad_request" : "not_found");
            if (k)
                ck_assert_ptr_nonnull(strstr(err_message(answer), "id"));
            json_decref(answer);
        }
    }
    after = get_job(&s, sget(job, "id"));
    ck_assert_msg(json_equal(before, after), "a rejected request changed the job");
    jobs_after = CALL(&s, "GET", "/v1/jobs", NULL, 200);
    ck_assert_msg(json_equal(jobs_before, jobs_after), "a rejected request changed some job");
    json_decref(job), json_decref(before), json_decref(after);
    json_decref(jobs_before), json_decref(jobs_after);
    server_cleanup(&s);
}
END_TEST

/* docs/api.md's error table: a malformed path parameter is 400 bad_request
 * naming it, an id that names nothing is 404 -- for GET /v1/jobs/{id} (what
 * `baton jobs get abc` calls) and GET /v1/messages/{id} alike. */
START_TEST(bad_path_id_is_400_naming_parameter)
{
    struct server s = {0};
    static const char *const bad[] = {"/v1/jobs/abc", "/v1/jobs/0", "/v1/jobs/-1", "/v1/jobs/1x",
                                      "/v1/messages/abc", "/v1/messages/0", "/v1/messages/-2", NULL};
    json_t *a;

    server_start(&s, NULL);
    for (int i = 0; bad[i]; i++) {
        a = CALL(&s, "GET", bad[i], NULL, 400);
        ck_assert_msg(err_code(a) && !strcmp(err_code(a), "bad_request"), "GET %s: code %s", bad[i],
                      err_code(a));
        ck_assert_msg(strstr(err_message(a), "path parameter id"), "GET %s: message does not name the parameter: %s",
                      bad[i], err_message(a));
        json_decref(a);
    }
    a = CALL(&s, "GET", "/v1/jobs/424242", NULL, 404);
    ck_assert_str_eq(err_code(a), "not_found");
    json_decref(a);
    a = CALL(&s, "GET", "/v1/messages/424242", NULL, 404);
    ck_assert_str_eq(err_code(a), "not_found");
    json_decref(a);
    server_cleanup(&s);
}
END_TEST

/* The stale sweep builds its log lines as text, without jansson: each
 * must still be the very line event_emit prints -- the bytes jansson
 * writes for {_time, level, event, jobId, queue, attempts, workerId,
 * errorReason[, willRetry]} in that order, whatever the worker id holds --
 * with the same fields in its event row and counted in /metrics. */
START_TEST(sweep_lines_are_the_lines_jansson_prints)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    static const char worker[] = "w \"q\" \\ \xc3\xa9 \x01\x1f\n\t/";
    struct server s = {0};
    json_t *a, *b, *out, *ev;
    const char *jobs[2], *names[2] = {"agent.job.requeued", "lx.job.failed"};
    char *log, *line, *save = NULL;
    int found = 0;

    server_start(&s, env);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "agent", "payload", "a", "maxAttempts", 5)));
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "lx", "payload", "b", "maxAttempts", 1)));
    a = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                    json_pack("{s:s, s:s, s:i}", "workerId", worker, "queue", "agent", "lockMs", 300), 200));
    b = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                    json_pack("{s:s, s:s, s:i}", "workerId", worker, "queue", "lx", "lockMs", 300), 200));
    jobs[0] = sget(a, "id");
    jobs[1] = sget(b, "id");
    msleep(600);
    out = CALL(&s, "POST", "/v1/jobs/requeue-stale", json_object(), 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "requeued")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(out, "failed")), 1);
    json_decref(out);
    ck_assert_int_eq(server_stop(&s), 0);      /* every line is out */

    log = file_text(s.log);
    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *l = json_loads(line, 0, NULL), *want;
        char *text;
        int k;

        if (!l)
            continue;
        for (k = 0; k < 2 && strcmp(sget(l, "event") ? sget(l, "event") : "", names[k]); k++)
            ;
        if (k == 2) {
            json_decref(l);
            continue;
        }
        found++;
        want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "_time", sget(l, "_time"), "level",
                         k ? "error" : "warn", "event", names[k], "jobId", jobs[k], "queue", k ? "lx" : "agent",
                         "attempts", 1, "workerId", worker, "errorReason", "lock_expired");
        if (k)
            json_object_set_new(want, "willRetry", json_false());
        text = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
        ck_assert_str_eq(line, text);
        free(text);
        json_decref(want);
        json_decref(l);
    }
    free(log);
    ck_assert_int_eq(found, 2);

    server_start(&s, env);
    ev = CALL(&s, "GET", "/v1/events?event=agent.job.requeued", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    ck_assert_str_eq(sget(json_array_get(json_object_get(ev, "events"), 0), "workerId"), worker);
    ck_assert_str_eq(sget(json_array_get(json_object_get(ev, "events"), 0), "jobId"), jobs[0]);
    json_decref(ev);
    ev = CALL(&s, "GET", "/v1/events?event=lx.job.failed", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(ev, "events"), 0), "willRetry")));
    json_decref(ev);
    json_decref(a), json_decref(b);
    server_cleanup(&s);
}
END_TEST

/* /metrics counts each event of a sweep: two requeued, one failed. */
START_TEST(sweep_events_counted_in_metrics)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    struct server s = {0};
    json_t *out;

    server_start(&s, env);
    json_decref(enqueue(&s, json_pack("{s:s, s:s}", "queue", "mx", "payload", "a")));
    json_decref(enqueue(&s, json_pack("{s:s, s:s}", "queue", "mx", "payload", "b")));
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "my", "payload", "c", "maxAttempts", 1)));
    json_decref(claim_locked(&s, "mx", 300));
    json_decref(claim_locked(&s, "mx", 300));
    json_decref(claim_locked(&s, "my", 300));
    msleep(600);
    out = CALL(&s, "POST", "/v1/jobs/requeue-stale", json_object(), 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "requeued")), 2);
    json_decref(out);
    ck_assert_int_eq(server_metric(&s, "baton_events_total{event=\"mx.job.requeued\"}"), 2);
    ck_assert_int_eq(server_metric(&s, "baton_events_total{event=\"my.job.failed\"}"), 1);
    server_cleanup(&s);
}
END_TEST

/* A job that goes back to pending -- stale sweep, requeue-stale, a
 * retryable failure, an operator retry -- no longer shows the worker that
 * held it as lockedBy; the requeued event still names that worker. */
START_TEST(requeued_job_clears_lock_owner)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    struct server s = {0};
    json_t *a, *b, *c, *j, *out, *ev;
    char path[160];

    server_start(&s, env);
    json_decref(enqueue(&s, json_pack("{s:s, s:s, s:i}", "queue", "lo", "payload", "a", "maxAttempts", 5)));
    a = claim_locked(&s, "lo", 300);
    ck_assert_str_eq(sget(a, "lockedBy"), "sleepy");
    msleep(600);
    out = CALL(&s, "POST", "/v1/jobs/requeue-stale", json_object(), 200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "requeued")), 1);
    json_decref(out);
    j = get_job(&s, sget(a, "id"));
    ck_assert_str_eq(sget(j, "status"), "pending");
    ck_assert_msg(json_is_null(json_object_get(j, "lockedBy")), "requeued job still lockedBy %s",
                  sget(j, "lockedBy"));
    ck_assert(json_is_null(json_object_get(j, "lockedUntil")));
    json_decref(j);
    snprintf(path, sizeof path, "/v1/events?event=lo.job.requeued&jobId=%s", sget(a, "id"));
    ev = CALL(&s, "GET", path, NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    ck_assert_str_eq(sget(json_array_get(json_object_get(ev, "events"), 0), "workerId"), "sleepy");
    json_decref(ev);

    /* a retryable failure */
    b = claim(&s, "w-fail", "lo", 200);
    json_decref(worker_call(&s, b, "fail", json_pack("{s:s}", "errorReason", "flaky"), 200));
    j = get_job(&s, sget(b, "id"));
    ck_assert_str_eq(sget(j, "status"), "pending");
    ck_assert_msg(json_is_null(json_object_get(j, "lockedBy")), "job back to pending after fail still lockedBy %s",
                  sget(j, "lockedBy"));
    json_decref(j);

    /* an operator retry of a processing job */
    json_decref(enqueue(&s, json_pack("{s:s, s:s}", "queue", "lo2", "payload", "c")));
    c = claim(&s, "w-op", "lo2", 200);
    json_decref(job_call(&s, sget(c, "id"), "retry", json_object(), 200));
    j = get_job(&s, sget(c, "id"));
    ck_assert_str_eq(sget(j, "status"), "pending");
    ck_assert_msg(json_is_null(json_object_get(j, "lockedBy")), "retried job still lockedBy %s", sget(j, "lockedBy"));
    json_decref(j);
    json_decref(a), json_decref(b), json_decref(c);
    server_cleanup(&s);
}
END_TEST

/* ---- outbound queues and leases --------------------------------------------- */

/* POST /v1/leases/{channel}/{accountId}/{verb} with body: the answer. */
static json_t *
lease_call(struct server *s, const char *channel, const char *account, const char *verb, json_t *body,
           long expect)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/leases/%s/%s/%s", channel, account, verb);
    return CALL(s, "POST", path, body, expect);
}

/* owner acquires the lease on channel/account through the route: its token. */
static int64_t
acquire_lease(struct server *s, const char *channel, const char *account, const char *owner)
{
    json_t *j = lease_call(s, channel, account, "acquire",
                           json_pack("{s:s, s:i}", "ownerId", owner, "ttlMs", 60000), 200);
    int64_t token = iget(json_object_get(j, "lease"), "token");

    ck_assert_int_gt(token, 0);
    json_decref(j);
    return token;
}

/* owner gives up the lease it holds with token, through the route. */
static void
release_lease(struct server *s, const char *channel, const char *account, const char *owner, int64_t token)
{
    json_decref(lease_call(s, channel, account, "release",
                           json_pack("{s:s, s:I}", "ownerId", owner, "token", (json_int_t)token), 200));
}

/* Lines of batond's log holding both a and b. */
static int
log_lines_with_both(struct server *s, const char *a, const char *b)
{
    FILE *f = fopen(s->log, "r");
    char line[8192];
    int n = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && strstr(line, b);
    fclose(f);
    return n;
}

static json_t *
claim_leased(struct server *s, const char *queue, json_t *lease_token, long expect)
{
    json_t *body = json_pack("{s:s, s:s}", "workerId", "wa-1", "queue", queue);

    if (lease_token)
        json_object_set_new(body, "leaseToken", lease_token);
    return CALL(s, "POST", "/v1/jobs/claim", body, expect);
}

START_TEST(outbound_leased_queue_requires_lease_token)
{
    const char *q = "outbound.whatsapp.acc1";
    struct server s = {0};
    json_t *job, *answer, *c, *tg;
    int64_t old, cur, next;

    server_start(&s, NULL);
    job = enqueue(&s, json_pack("{s:s, s:{s:s}}", "queue", q, "payload", "text", "hello"));
    answer = claim_leased(&s, q, NULL, 409);
    ck_assert_str_eq(err_code(answer), "lease_not_held");
    json_decref(answer);
    json_decref(claim_leased(&s, q, json_integer(7), 409));    /* no lease at all yet */
    /* wa-1 holds the lease with cur; old is the token of its previous grant */
    old = acquire_lease(&s, "whatsapp", "acc1", "wa-1");
    release_lease(&s, "whatsapp", "acc1", "wa-1", old);
    cur = acquire_lease(&s, "whatsapp", "acc1", "wa-1");
    ck_assert_int_gt(cur, old);
    answer = claim_leased(&s, q, json_integer(old), 409);
    ck_assert_str_eq(err_code(answer), "lease_not_held");
    json_decref(answer);
    c = job_of(claim_leased(&s, q, json_integer(cur), 200));
    ck_assert_str_eq(sget(c, "id"), sget(job, "id"));
    /* heartbeat and complete need it too */
    answer = worker_call(&s, c, "heartbeat", NULL, 409);
    ck_assert_str_eq(err_code(answer), "lease_not_held");
    json_decref(answer);
    answer = worker_call(&s, c, "complete", json_pack("{s:I}", "leaseToken", (json_int_t)old), 409);
    ck_assert_str_eq(err_code(answer), "lease_not_held");
    json_decref(answer);
    /* the lease passes to a new holder: the old token cannot finish the send */
    release_lease(&s, "whatsapp", "acc1", "wa-1", cur);
    next = acquire_lease(&s, "whatsapp", "acc1", "wa-2");
    ck_assert_int_gt(next, cur);
    json_decref(worker_call(&s, c, "complete", json_pack("{s:I}", "leaseToken", (json_int_t)cur), 409));
    json_decref(worker_call(&s, c, "complete",
                            json_pack("{s:I, s:{s:s}}", "leaseToken", (json_int_t)next, "result", "channelMessageId",
                                      "wamid.1"), 200));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"whatsapp.outbound.enqueued\""), 1);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"whatsapp.outbound.claimed\""), 1);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"whatsapp.outbound.completed\""), 1);
    ck_assert_int_ge(log_lines_with_both(&s, "\"accountId\":\"acc1\"", "whatsapp.outbound."), 3);
    /* a channel that is not leased needs no token */
    json_decref(enqueue(&s, json_pack("{s:s, s:s}", "queue", "outbound.telegram.bot1", "payload", "x")));
    tg = job_of(claim_leased(&s, "outbound.telegram.bot1", NULL, 200));
    json_decref(worker_call(&s, tg, "complete", NULL, 200));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"telegram.outbound.completed\""), 1);
    json_decref(job), json_decref(c), json_decref(tg);
    server_cleanup(&s);
}
END_TEST

/* ---- complete-and-next ------------------------------------------------------ */

/* The "next" of a complete-and-next answer (new reference, may be NULL for
 * null); asserts the answer's "job" is id with status. */
static json_t *
next_of(json_t *answer, const char *id, const char *status)
{
    json_t *job = json_object_get(answer, "job"), *next = json_object_get(answer, "next");

    ck_assert_ptr_nonnull(job);
    ck_assert_str_eq(sget(job, "id"), id);
    ck_assert_str_eq(sget(job, "status"), status);
    ck_assert_ptr_nonnull(next);                /* present, maybe null */
    next = json_is_null(next) ? NULL : json_incref(next);
    json_decref(answer);
    return next;
}

/* A body for a worker call on job with extra members (a JSON text to free). */
static char *
worker_body(json_t *job, json_t *extra)
{
    json_t *body = json_pack("{s:s, s:s}", "workerId", sget(job, "lockedBy"), "claimToken",
                             sget(job, "claimToken"));
    char *text;

    json_object_update(body, extra);
    json_decref(extra);
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

START_TEST(complete_and_next_claims_in_the_same_request)
{
    struct server s = {0};
    json_t *j1, *j2, *j3, *c1, *n2, *n3, *answer;

    server_start(&s, NULL);
    j1 = enqueue_in(&s, "cn", 0, 0);
    j2 = enqueue_in(&s, "cn", 0, 0);
    j3 = enqueue_in(&s, "other", 0, 0);
    c1 = claim(&s, "w1", "cn", 200);
    ck_assert_str_eq(sget(c1, "id"), sget(j1, "id"));

    /* the completion and the claim of the next job of the same queue */
    answer = worker_call(&s, c1, "complete", json_pack("{s:{s:i}, s:{}}", "result", "ok", 1, "next"), 200);
    ck_assert_int_eq(iget(json_object_get(json_object_get(answer, "job"), "result"), "ok"), 1);
    n2 = next_of(answer, sget(j1, "id"), "completed");
    ck_assert_ptr_nonnull(n2);
    ck_assert_str_eq(sget(n2, "id"), sget(j2, "id"));
    ck_assert_str_eq(sget(n2, "status"), "processing");
    ck_assert_str_eq(sget(n2, "lockedBy"), "w1");
    ck_assert_ptr_nonnull(sget(n2, "claimToken"));
    ck_assert_str_ne(sget(n2, "claimToken"), sget(c1, "claimToken"));
    ck_assert_int_eq(iget(n2, "attempts"), 1);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"cn.job.completed\""), 1);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"cn.job.claimed\""), 2);

    /* another queue, with its own lock */
    answer = worker_call(&s, n2, "complete", json_pack("{s:{s:s, s:i}}", "next", "queue", "other", "lockMs", 5000),
                         200);
    n3 = next_of(answer, sget(j2, "id"), "completed");
    ck_assert_ptr_nonnull(n3);
    ck_assert_str_eq(sget(n3, "id"), sget(j3, "id"));
    ck_assert_int_eq(iget(n3, "lockedUntil") - iget(n3, "startedAt"), 5000);

    /* a failure asks for the next too; nothing there and no wait: null */
    answer = worker_call(&s, n3, "fail", json_pack("{s:s, s:b, s:{}}", "errorReason", "bad", "retryable", 0, "next"),
                         200);
    ck_assert_ptr_null(next_of(answer, sget(j3, "id"), "failed"));
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"other.job.failed\""), 1);

    /* without next the answer is what it always was */
    json_decref(enqueue_in(&s, "cn", 0, 0));
    json_decref(c1);
    c1 = claim(&s, "w1", "cn", 200);
    answer = worker_call(&s, c1, "complete", NULL, 200);
    ck_assert_ptr_null(json_object_get(answer, "next"));
    json_decref(answer);
    json_decref(j1), json_decref(j2), json_decref(j3), json_decref(c1), json_decref(n2), json_decref(n3);
    server_cleanup(&s);
}
END_TEST

/* A stale claim token, a stale lease token or a malformed next: the answer
 * says so and neither the completion nor the claim happened. */
START_TEST(complete_and_next_refused_changes_nothing)
{
    const char *q = "outbound.whatsapp.acc9";
    static const char *const bad[] = {
        "{\"next\":5}", "{\"next\":\"cn\"}", "{\"next\":{\"queue\":\"a/b\"}}", "{\"next\":{\"queue\":7}}",
        "{\"next\":{\"waitMs\":-1}}", "{\"next\":{\"waitMs\":600001}}", "{\"next\":{\"lockMs\":0}}",
        "{\"next\":{\"queue\":\"\"}}", "{\"next\":[]}",
    };
    static const char *const field[] = {
        "next", "next", "next.queue", "next.queue", "next.waitMs", "next.waitMs", "next.lockMs", "next.queue", "next",
    };
    struct server s = {0};
    json_t *j1, *j2, *c1, *o1, *o2, *co, *n, *answer, *stale;
    int64_t old, cur;

    server_start(&s, NULL);
    j1 = enqueue_in(&s, "cn", 0, 0);
    j2 = enqueue_in(&s, "cn", 0, 0);
    c1 = claim(&s, "w1", "cn", 200);

    stale = json_deep_copy(c1);
    json_object_set_new(stale, "claimToken", json_string("c_stale"));
    answer = worker_call(&s, stale, "complete", json_pack("{s:{}}", "next"), 409);
    ck_assert_str_eq(err_code(answer), "claim_lost");
    json_decref(answer);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *extra = json_loads(bad[i], 0, NULL);
        ck_assert_ptr_nonnull(extra);
        answer = worker_call(&s, c1, i % 2 ? "fail" : "complete",
                             i % 2 ? (json_object_set_new(extra, "errorReason", json_string("x")), extra) : extra, 400);
        ck_assert_msg(!strcmp(err_code(answer), "bad_request"), "%s", bad[i]);
        ck_assert_msg(!strcmp(sget(json_object_get(answer, "error"), "field"), field[i]), "%s: %s", bad[i],
                      err_message(answer));
        json_decref(answer);
    }
    n = get_job(&s, sget(j1, "id"));
    ck_assert_str_eq(sget(n, "status"), "processing");
    ck_assert_str_eq(sget(n, "claimToken"), sget(c1, "claimToken"));
    json_decref(n);
    n = get_job(&s, sget(j2, "id"));
    ck_assert_str_eq(sget(n, "status"), "pending");
    ck_assert_int_eq(iget(n, "attempts"), 0);
    json_decref(n);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"cn.job.claimed\""), 1);

    /* fencing: a send finished with a lease token that lost the lease
     * claims nothing either */
    o1 = enqueue(&s, json_pack("{s:s, s:{s:s}}", "queue", q, "payload", "text", "one"));
    o2 = enqueue(&s, json_pack("{s:s, s:{s:s}}", "queue", q, "payload", "text", "two"));
    old = acquire_lease(&s, "whatsapp", "acc9", "wa-1");
    co = job_of(claim_leased(&s, q, json_integer(old), 200));
    ck_assert_str_eq(sget(co, "id"), sget(o1, "id"));
    release_lease(&s, "whatsapp", "acc9", "wa-1", old);
    cur = acquire_lease(&s, "whatsapp", "acc9", "wa-2");
    answer = worker_call(&s, co, "complete", json_pack("{s:I, s:{}}", "leaseToken", (json_int_t)old, "next"), 409);
    ck_assert_str_eq(err_code(answer), "lease_not_held");
    json_decref(answer);
    n = get_job(&s, sget(o2, "id"));
    ck_assert_str_eq(sget(n, "status"), "pending");
    json_decref(n);
    /* with the current token both happen, the claim fenced by it too */
    answer = worker_call(&s, co, "complete", json_pack("{s:I, s:{}}", "leaseToken", (json_int_t)cur, "next"), 200);
    n = next_of(answer, sget(o1, "id"), "completed");
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(sget(n, "id"), sget(o2, "id"));
    json_decref(n);
    json_decref(j1), json_decref(j2), json_decref(c1), json_decref(stale);
    json_decref(o1), json_decref(o2), json_decref(co);
    server_cleanup(&s);
}
END_TEST

/* With waitMs the claim half long-polls; the completion is committed at
 * once, not held for the wait; a paused queue keeps it parked until the
 * resume; an empty wait ends with next null. */
START_TEST(complete_and_next_long_polls_after_committing)
{
    struct server s = {0};
    struct waiter w = {&s, NULL, {0}, 0, 0, NULL};
    json_t *j1, *c1, *j2, *n, *n2, *j3;
    pthread_t th;
    char *body, path[128];
    int64_t t0;

    server_start(&s, NULL);
    j1 = enqueue_in(&s, "lpn", 0, 0);
    c1 = claim(&s, "w1", "lpn", 200);
    w.body = body = worker_body(c1, json_pack("{s:{s:i}}", "next", "waitMs", 30000));
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", sget(c1, "id"));
    w.path = path;
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(500);
    ck_assert_msg(w.done_at == 0, "answered %ld: %.300s", w.r.status, w.r.body ? w.r.body : "");
    n = get_job(&s, sget(j1, "id"));
    ck_assert_str_eq(sget(n, "status"), "completed");
    json_decref(n);
    t0 = now_ms();
    j2 = enqueue_in(&s, "lpn", 0, 0);
    pthread_join(th, NULL);
    free(body);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_int_lt(w.done_at - t0, 5000);
    n2 = next_of(json_incref(w.r.json), sget(j1, "id"), "completed");
    ck_assert_ptr_nonnull(n2);
    ck_assert_str_eq(sget(n2, "id"), sget(j2, "id"));
    ck_assert_str_eq(sget(n2, "status"), "processing");
    resp_free(&w.r);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"lpn.job.completed\""), 1);

    /* a paused queue: the completion goes through, the claim waits for the resume */
    json_decref(CALL(&s, "POST", "/v1/queues/lpn/pause", json_object(), 200));
    j3 = enqueue_in(&s, "lpn", 0, 0);
    w = (struct waiter){&s, NULL, {0}, 0, 0, path};
    w.body = body = worker_body(n2, json_pack("{s:{s:i}}", "next", "waitMs", 30000));
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", sget(n2, "id"));
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(700);
    ck_assert_int_eq(w.done_at, 0);
    n = get_job(&s, sget(j2, "id"));
    ck_assert_str_eq(sget(n, "status"), "completed");
    json_decref(n);
    n = get_job(&s, sget(j3, "id"));
    ck_assert_str_eq(sget(n, "status"), "pending");
    json_decref(n);
    t0 = now_ms();
    json_decref(CALL(&s, "POST", "/v1/queues/lpn/resume", json_object(), 200));
    pthread_join(th, NULL);
    free(body);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_int_lt(w.done_at - t0, 5000);
    json_decref(n2);
    n2 = next_of(json_incref(w.r.json), sget(j2, "id"), "completed");
    ck_assert_ptr_nonnull(n2);
    ck_assert_str_eq(sget(n2, "id"), sget(j3, "id"));
    resp_free(&w.r);

    /* nothing comes: the wait ends with the completion and next null */
    t0 = now_ms();
    ck_assert_ptr_null(next_of(worker_call(&s, n2, "complete", json_pack("{s:{s:i}}", "next", "waitMs", 700), 200),
                               sget(j3, "id"), "completed"));
    ck_assert_int_ge(now_ms() - t0, 650);
    ck_assert_int_lt(now_ms() - t0, 8000);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"lpn.job.completed\""), 3);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"lpn.job.claimed\""), 3);
    json_decref(j1), json_decref(c1), json_decref(j2), json_decref(n2), json_decref(j3);
    server_cleanup(&s);
}
END_TEST

/* Acknowledged jobs survive a kill -9 of batond. */
START_TEST(jobs_survive_server_kill)
{
    struct server s = {0};
    json_t *a, *c, *got;

    server_start(&s, NULL);
    a = enqueue_in(&s, "dur", 3, 0);
    c = claim(&s, "w", "dur", 200);
    server_kill(&s);
    server_start(&s, NULL);
    got = get_job(&s, sget(a, "id"));
    ck_assert_str_eq(sget(got, "status"), "processing");
    ck_assert_str_eq(sget(got, "claimToken"), sget(c, "claimToken"));
    json_decref(worker_call(&s, c, "complete", NULL, 200));
    json_decref(a), json_decref(c), json_decref(got);
    server_cleanup(&s);
}
END_TEST

/* ---- bulk enqueue: POST /v1/jobs/batch --------------------------------------- */

static json_t *
batch(struct server *s, json_t *jobs, long expect)
{
    return CALL(s, "POST", "/v1/jobs/batch", json_pack("{s:o}", "jobs", jobs), expect);
}

/* How many jobs queue holds (any status), through the listing. */
static size_t
queue_jobs(struct server *s, const char *queue)
{
    char path[256];
    json_t *a;
    size_t n;

    snprintf(path, sizeof path, "/v1/jobs?queue=%s&limit=1000", queue);
    a = CALL(s, "GET", path, NULL, 200);
    n = json_array_size(json_object_get(a, "jobs"));
    json_decref(a);
    return n;
}

/* n jobs {queue, payload:{n:i, pad}} with a ~pad-byte payload each. */
static json_t *
numbered(const char *queue, int n, int pad)
{
    json_t *a = json_array();
    char *text = malloc((size_t)pad + 1);

    memset(text, 'x', (size_t)pad);
    text[pad] = 0;
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:{s:i, s:s}}", "queue", queue, "payload", "n", i,
                                           "pad", text));
    free(text);
    return a;
}

START_TEST(batch_1000_accepted_in_order_1001_refused)
{
    struct server s = {0};
    json_t *a, *jobs;
    int64_t last = 0;

    server_start(&s, NULL);
    /* 1000 jobs with 700-byte payloads fit the default BATON_MAX_BODY */
    a = batch(&s, numbered("bulk", 1000, 700), 201);
    jobs = json_object_get(a, "jobs");
    ck_assert_int_eq(json_array_size(jobs), 1000);
    for (size_t i = 0; i < 1000; i++) {
        json_t *e = json_array_get(jobs, i), *job = json_object_get(e, "job");
        int64_t id = strtoll(sget(job, "id"), NULL, 10);
        ck_assert(json_is_false(json_object_get(e, "duplicate")));
        ck_assert_int_eq(iget(json_object_get(job, "payload"), "n"), (int64_t)i);
        ck_assert_str_eq(sget(job, "status"), "pending");
        ck_assert_int_gt(id, last);             /* request order is insertion order */
        last = id;
    }
    json_decref(a);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"bulk.job.enqueued\""), 1000);

    a = batch(&s, numbered("bulk2", 1001, 10), 400);
    ck_assert_str_eq(err_code(a), "bad_request");
    ck_assert_ptr_nonnull(strstr(err_message(a), "'jobs'"));
    ck_assert_ptr_nonnull(strstr(err_message(a), "1001"));
    json_decref(a);
    a = batch(&s, json_array(), 400);
    ck_assert_ptr_nonnull(strstr(err_message(a), "'jobs'"));
    json_decref(a);
    json_decref(CALL(&s, "POST", "/v1/jobs/batch", json_object(), 400));
    json_decref(CALL(&s, "POST", "/v1/jobs/batch", json_pack("{s:{}}", "jobs"), 400));
    ck_assert_int_eq(queue_jobs(&s, "bulk2"), 0);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"bulk2.job.enqueued\""), 0);
    server_cleanup(&s);
}
END_TEST

START_TEST(batch_is_all_or_nothing)
{
    static const struct {
        const char *field, *bad;        /* the 500th element gets field: bad */
    } cases[] = {
        {"priority", "\"high\""},
        {"delayMs", "-1"},
        {"maxAttempts", "0"},
        {"queue", "\"has space\""},
        {"dedupeKey", "5"},
        {"payload", NULL},              /* removed: required */
        {"", "7"},                      /* the element itself is not an object */
    };
    struct server s = {0};

    server_start(&s, NULL);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        json_t *jobs = numbered("aon", 1000, 10), *el = json_array_get(jobs, 499), *a, *err;
        char want[64];

        if (!*cases[c].field)
            json_array_set_new(jobs, 499, json_integer(7));
        else if (!cases[c].bad)
            json_object_del(el, cases[c].field);
        else
            json_object_set_new(el, cases[c].field, json_loads(cases[c].bad, JSON_DECODE_ANY, NULL));
        a = batch(&s, jobs, 400);
        err = json_object_get(a, "error");
        snprintf(want, sizeof want, "jobs[499]%s%s", *cases[c].field ? "." : "", cases[c].field);
        ck_assert_str_eq(sget(err, "code"), "bad_request");
        ck_assert_str_eq(sget(err, "field"), want);
        ck_assert_int_eq(iget(err, "index"), 499);
        ck_assert_msg(strstr(sget(err, "message"), want), "%s", sget(err, "message"));
        json_decref(a);
    }
    ck_assert_int_eq(queue_jobs(&s, "aon"), 0);
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"aon.job.enqueued\""), 0);
    /* the same batch, corrected, goes in whole */
    json_decref(batch(&s, numbered("aon", 1000, 10), 201));
    ck_assert_int_eq(queue_jobs(&s, "aon"), 1000);
    server_cleanup(&s);
}
END_TEST

START_TEST(batch_dedupe_within_and_across_batches)
{
    struct server s = {0};
    json_t *a, *b, *j0, *j2, *one;

    server_start(&s, NULL);
    one = enqueue(&s, json_pack("{s:s, s:i, s:s}", "queue", "bd", "payload", 0, "dedupeKey", "old"));
    a = batch(&s, json_pack("[{s:s, s:i, s:s}, {s:s, s:i}, {s:s, s:i, s:s}, {s:s, s:i, s:s}]",
                            "queue", "bd", "payload", 1, "dedupeKey", "k1",
                            "queue", "bd", "payload", 2,
                            "queue", "bd", "payload", 3, "dedupeKey", "k1",
                            "queue", "bd", "payload", 4, "dedupeKey", "old"), 201);
    ck_assert_int_eq(json_array_size(json_object_get(a, "jobs")), 4);
    j0 = json_object_get(json_array_get(json_object_get(a, "jobs"), 0), "job");
    j2 = json_object_get(json_array_get(json_object_get(a, "jobs"), 2), "job");
    ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(a, "jobs"), 0), "duplicate")));
    ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(a, "jobs"), 1), "duplicate")));
    /* the second k1 of the same batch is the duplicate of the first */
    ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(a, "jobs"), 2), "duplicate")));
    ck_assert_str_eq(sget(j2, "id"), sget(j0, "id"));
    ck_assert_int_eq(json_integer_value(json_object_get(j2, "payload")), 1);
    /* a key enqueued before, singly */
    ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(a, "jobs"), 3), "duplicate")));
    ck_assert_str_eq(sget(json_object_get(json_array_get(json_object_get(a, "jobs"), 3), "job"), "id"),
                     sget(one, "id"));
    /* across batches */
    b = batch(&s, json_pack("[{s:s, s:i, s:s}, {s:s, s:i, s:s}]", "queue", "bd", "payload", 5,
                            "dedupeKey", "k1", "queue", "bd", "payload", 6, "dedupeKey", "k2"), 201);
    ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(b, "jobs"), 0), "duplicate")));
    ck_assert_str_eq(sget(json_object_get(json_array_get(json_object_get(b, "jobs"), 0), "job"), "id"),
                     sget(j0, "id"));
    ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(b, "jobs"), 1), "duplicate")));
    ck_assert_int_eq(queue_jobs(&s, "bd"), 4);      /* old, k1, the keyless one, k2 */
    ck_assert_int_eq(server_log_count(&s, "\"event\":\"bd.job.enqueued\""), 4);
    json_decref(a), json_decref(b), json_decref(one);
    server_cleanup(&s);
}
END_TEST

START_TEST(batch_jobs_claimable_with_their_options)
{
    struct server s = {0};
    struct waiter w = {&s, "{\"workerId\":\"w\",\"queue\":\"bw\",\"waitMs\":30000}", {0}, 0, 0, NULL};
    pthread_t th;
    json_t *a, *c;
    int64_t t0;

    server_start(&s, NULL);
    a = batch(&s, json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}, {s:s, s:s, s:i, s:i},"
                            " {s:s, s:s, s:i, s:i}]",
                            "queue", "bo", "payload", "p1", "priority", 1,
                            "queue", "bo", "payload", "p5", "priority", 5,
                            "queue", "bo", "payload", "p100-later", "priority", 100, "delayMs", 1500,
                            "queue", "bo", "payload", "p2", "priority", 2, "maxAttempts", 1), 201);
    json_decref(a);
    c = claim(&s, "w", "bo", 200);
    ck_assert_str_eq(json_string_value(json_object_get(c, "payload")), "p5");
    json_decref(c);
    c = claim(&s, "w", "bo", 200);
    ck_assert_str_eq(json_string_value(json_object_get(c, "payload")), "p2");
    ck_assert_int_eq(iget(c, "maxAttempts"), 1);
    json_decref(c);
    c = claim(&s, "w", "bo", 200);
    ck_assert_str_eq(json_string_value(json_object_get(c, "payload")), "p1");
    ck_assert_int_eq(iget(c, "maxAttempts"), 5);
    json_decref(c);
    ck_assert_ptr_null(claim(&s, "w", "bo", 204));  /* the delayed one is not due yet */
    t0 = now_ms();
    c = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                    json_pack("{s:s, s:s, s:i}", "workerId", "w", "queue", "bo", "waitMs", 30000), 200));
    ck_assert_str_eq(json_string_value(json_object_get(c, "payload")), "p100-later");
    ck_assert_int_lt(now_ms() - t0, 8000);
    json_decref(c);

    /* a parked claimer is woken by a batch as by a single enqueue */
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(500);
    t0 = now_ms();
    json_decref(batch(&s, json_pack("[{s:s, s:s}, {s:s, s:s}]", "queue", "other", "payload", "x",
                                    "queue", "bw", "payload", "woken"), 201));
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(w.r.json, "job"), "payload")),
                     "woken");
    ck_assert_int_lt(w.done_at - t0, 5000);     /* long before the 30 s deadline */
    resp_free(&w.r);
    server_cleanup(&s);
}
END_TEST

/* ---- ordered keys ------------------------------------------------------------- */

#define OK_CONVS 50
#define OK_MSGS 20
#define OK_CLAIMERS 8

/* What the claimers of one run share (under mu). */
struct ok_run {
    struct server *s;
    pthread_mutex_t mu;
    int next[OK_CONVS];         /* the next message expected of each conversation */
    bool busy[OK_CONVS];        /* a claimer works on one of its jobs (until it sends complete) */
    bool held[OK_CONVS];        /* ... or has not yet heard its completion answered */
    int claimed, errors, out_of_order, doubled, blocked, empty;
};

/* Conversations with messages left that no claimer holds. */
static int
ok_free_keys(struct ok_run *r)
{
    int n = 0;

    for (int c = 0; c < OK_CONVS; c++)
        n += r->next[c] < OK_MSGS && !r->held[c];
    return n;
}

static void *
ok_claimer(void *arg)
{
    struct ok_run *r = arg;
    char body[128];

    snprintf(body, sizeof body, "{\"workerId\":\"w%lu\",\"queue\":\"conv\"}", (unsigned long)pthread_self());
    for (;;) {
        struct resp a;
        json_t *job, *p;
        int conv, seq, free_before;
        char path[96], done[256];

        pthread_mutex_lock(&r->mu);
        if (r->claimed == OK_CONVS * OK_MSGS || r->errors) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        free_before = ok_free_keys(r);
        pthread_mutex_unlock(&r->mu);
        if (http_req(r->s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &a) < 0) {
            __atomic_add_fetch(&r->errors, 1, __ATOMIC_SEQ_CST);
            break;
        }
        if (a.status == 204) {
            resp_free(&a);
            pthread_mutex_lock(&r->mu);
            r->empty++;
            /* the other claimers can have taken at most one key each
             * between our look and the server's: more keys free means the
             * claim waited on a blocked key while another key's job was due */
            if (free_before >= OK_CLAIMERS)
                r->blocked++;
            pthread_mutex_unlock(&r->mu);
            msleep(1);
            continue;
        }
        if (a.status != 200) {
            resp_free(&a);
            __atomic_add_fetch(&r->errors, 1, __ATOMIC_SEQ_CST);
            break;
        }
        job = json_object_get(a.json, "job");
        p = json_object_get(job, "payload");
        conv = (int)iget(p, "conv");
        seq = (int)iget(p, "seq");
        pthread_mutex_lock(&r->mu);
        if (r->busy[conv])
            r->doubled++;
        if (seq != r->next[conv])
            r->out_of_order++;
        r->busy[conv] = r->held[conv] = true;
        r->next[conv] = seq + 1;
        r->claimed++;
        pthread_mutex_unlock(&r->mu);
        msleep(1);                              /* the work */
        pthread_mutex_lock(&r->mu);
        r->busy[conv] = false;                  /* before the server can hand out the next */
        pthread_mutex_unlock(&r->mu);
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", sget(job, "id"));
        snprintf(done, sizeof done, "{\"workerId\":\"%s\",\"claimToken\":\"%s\"}", sget(job, "lockedBy"),
                 sget(job, "claimToken"));
        resp_free(&a);
        if (http_req(r->s, "POST", path, done, strlen(done), NULL, NULL, &a) < 0 || a.status != 200)
            __atomic_add_fetch(&r->errors, 1, __ATOMIC_SEQ_CST);
        resp_free(&a);
        pthread_mutex_lock(&r->mu);
        r->held[conv] = false;
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

/* 8 claimers, 50 conversations of 20 messages each (enqueued one
 * conversation after the other, with priorities that would reorder them):
 * every conversation is processed strictly in enqueue order, never two of
 * one conversation at once, and no claim comes back empty while a
 * conversation nobody holds still has messages (no head-of-line
 * blocking). */
START_TEST(order_key_conversations_in_order_claimers_busy)
{
    struct server s = {0};
    struct ok_run *r = calloc(1, sizeof *r);
    pthread_t th[OK_CLAIMERS];

    server_start(&s, NULL);
    r->s = &s;
    pthread_mutex_init(&r->mu, NULL);
    for (int c = 0; c < OK_CONVS; c++)
        for (int m = 0; m < OK_MSGS; m++) {
            char key[16];
            snprintf(key, sizeof key, "conv-%d", c);
            json_decref(enqueue(&s, json_pack("{s:s, s:{s:i, s:i}, s:i, s:s}", "queue", "conv", "payload",
                                              "conv", c, "seq", m, "priority", m % 4, "orderKey", key)));
        }
    for (int i = 0; i < OK_CLAIMERS; i++)
        pthread_create(&th[i], NULL, ok_claimer, r);
    for (int i = 0; i < OK_CLAIMERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(r->errors, 0);
    ck_assert_int_eq(r->claimed, OK_CONVS * OK_MSGS);
    ck_assert_msg(r->out_of_order == 0, "%d claims out of their conversation's order", r->out_of_order);
    ck_assert_msg(r->doubled == 0, "%d claims of a conversation already being processed", r->doubled);
    ck_assert_msg(r->blocked == 0, "%d empty claims while %d+ conversations were free (of %d empty)",
                  r->blocked, OK_CLAIMERS, r->empty);
    for (int c = 0; c < OK_CONVS; c++)
        ck_assert_int_eq(r->next[c], OK_MSGS);
    pthread_mutex_destroy(&r->mu);
    free(r);
    server_cleanup(&s);
}
END_TEST

static json_t *
enqueue_key(struct server *s, const char *queue, const char *key, int n, int max_attempts)
{
    json_t *b = json_pack("{s:s, s:{s:i}, s:i}", "queue", queue, "payload", "n", n, "maxAttempts", max_attempts);

    if (key)
        json_object_set_new(b, "orderKey", json_string(key));
    return enqueue(s, b);
}

/* A job of a key that fails and waits for its retry holds the key's later
 * jobs (a job without a key goes meanwhile); once retried and completed,
 * the next job of the key goes -- and a claim parked on the queue is woken
 * by that completion. */
START_TEST(order_key_retrying_job_holds_later_jobs)
{
    struct server s = {0};
    struct waiter w = {&s, "{\"workerId\":\"w2\",\"queue\":\"rk\",\"waitMs\":30000}", {0}, 0, 0, NULL};
    pthread_t th;
    json_t *a1, *a2, *u, *c, *got;
    int64_t t0;

    server_start(&s, NULL);
    a1 = enqueue_key(&s, "rk", "chat", 1, 5);
    a2 = enqueue_key(&s, "rk", "chat", 2, 5);
    u = enqueue_key(&s, "rk", NULL, 3, 5);
    ck_assert_str_eq(sget(a2, "orderKey"), "chat");
    ck_assert(json_is_null(json_object_get(u, "orderKey")));
    c = claim(&s, "w1", "rk", 200);
    ck_assert_str_eq(sget(c, "id"), sget(a1, "id"));
    json_decref(worker_call(&s, c, "fail",
                            json_pack("{s:s, s:b, s:i}", "errorReason", "flaky", "retryable", 1,
                                      "retryAfterMs", 1500), 200));
    json_decref(c);
    c = claim(&s, "w1", "rk", 200);               /* not a2: it waits behind a1's retry */
    ck_assert_str_eq(sget(c, "id"), sget(u, "id"));
    json_decref(worker_call(&s, c, "complete", NULL, 200));
    json_decref(c);
    ck_assert_ptr_null(claim(&s, "w1", "rk", 204));
    got = get_job(&s, sget(a2, "id"));
    ck_assert_str_eq(sget(got, "status"), "pending");
    json_decref(got);
    /* a1 comes back when due, before a2 */
    got = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                      json_pack("{s:s, s:s, s:i}", "workerId", "w1", "queue", "rk", "waitMs", 30000), 200));
    ck_assert_str_eq(sget(got, "id"), sget(a1, "id"));
    ck_assert_int_eq(iget(got, "attempts"), 2);
    /* a parked claim is woken when a1's completion passes the key to a2 */
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(300);
    t0 = now_ms();
    json_decref(worker_call(&s, got, "complete", NULL, 200));
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_str_eq(sget(json_object_get(w.r.json, "job"), "id"), sget(a2, "id"));
    ck_assert_int_lt(w.done_at - t0, 5000);
    resp_free(&w.r);
    /* a2 was the one job enqueued behind its key */
    ck_assert_int_eq(http_req(&s, "GET", "/metrics", NULL, 0, NULL, NULL, &w.r), 0);
    ck_assert_ptr_nonnull(strstr(w.r.body, "\nbaton_claims_deferred_total{reason=\"order_key\"} 1\n"));
    resp_free(&w.r);
    json_decref(got), json_decref(a1), json_decref(a2), json_decref(u);
    server_cleanup(&s);
}
END_TEST

/* A key's job whose worker died: the claim that takes the expired lock
 * back hands the same job out again before the key's later jobs; with no
 * attempt left it fails and the key passes to the next job. */
START_TEST(order_key_expired_lock_frees_the_key)
{
    struct server s = {0};
    json_t *a1, *a2, *c, *got;

    server_start(&s, NULL);
    a1 = enqueue_key(&s, "ek", "chat", 1, 2);
    a2 = enqueue_key(&s, "ek", "chat", 2, 5);
    for (int attempt = 1; attempt <= 2; attempt++) {
        c = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                        json_pack("{s:s, s:s, s:i}", "workerId", "dies", "queue", "ek", "lockMs", 200), 200));
        ck_assert_str_eq(sget(c, "id"), sget(a1, "id"));
        ck_assert_int_eq(iget(c, "attempts"), attempt);
        json_decref(c);
        ck_assert_ptr_null(claim(&s, "w", "ek", 204));   /* a2 waits while a1 is held */
        msleep(350);
    }
    c = claim(&s, "w", "ek", 200);
    ck_assert_str_eq(sget(c, "id"), sget(a2, "id"));
    got = get_job(&s, sget(a1, "id"));
    ck_assert_str_eq(sget(got, "status"), "failed");
    ck_assert_str_eq(sget(got, "errorReason"), "lock_expired");
    json_decref(got), json_decref(c), json_decref(a1), json_decref(a2);
    server_cleanup(&s);
}
END_TEST

/* Inbound messages are keyed by their conversation, replies by their
 * destination; GET /v1/jobs/{id} shows the key. A bad orderKey is a 400
 * naming the field, and nothing is enqueued. */
START_TEST(order_key_of_inbound_and_replies_and_bad_input)
{
    struct server s = {0};
    json_t *in, *out, *job, *bad, *list;
    char path[64], big[260];

    server_start(&s, NULL);
    in = CALL(&s, "POST", "/v1/inbound",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "channel", "telegram", "accountId", "default",
                        "channelMessageId", "m1", "conversationId", "telegram:default:42", "from", "42",
                        "text", "hi"), 201);
    ck_assert_ptr_nonnull(sget(in, "jobId"));
    job = get_job(&s, sget(in, "jobId"));
    ck_assert_str_eq(sget(job, "orderKey"), "telegram:default:42");
    ck_assert(json_is_null(json_object_get(job, "rateKey")));
    json_decref(job);
    out = CALL(&s, "POST", "/v1/outbound",
               json_pack("{s:s, s:s, s:s, s:s}", "channel", "telegram", "accountId", "default", "to", "42",
                         "text", "hello"), 201);
    job = get_job(&s, sget(out, "jobId"));
    ck_assert_str_eq(sget(job, "orderKey"), "telegram/default/42");
    /* paced per chat by the Telegram queue's default key limit */
    ck_assert_str_eq(sget(job, "rateKey"), "42");
    json_decref(job);
    memset(big, 'k', 201);
    big[201] = 0;
    bad = CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:i, s:s}", "queue", "bk", "payload", 1, "orderKey", ""), 400);
    ck_assert_str_eq(err_code(bad), "bad_request");
    ck_assert_ptr_nonnull(strstr(err_message(bad), "orderKey"));
    json_decref(bad);
    bad = CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:i, s:s}", "queue", "bk", "payload", 1, "orderKey", big), 400);
    ck_assert_ptr_nonnull(strstr(err_message(bad), "orderKey"));
    json_decref(bad);
    bad = CALL(&s, "POST", "/v1/jobs", json_pack("{s:s, s:i, s:i}", "queue", "bk", "payload", 1, "orderKey", 7), 400);
    ck_assert_ptr_nonnull(strstr(err_message(bad), "orderKey"));
    json_decref(bad);
    snprintf(path, sizeof path, "/v1/jobs?queue=bk");
    list = CALL(&s, "GET", path, NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(list, "jobs")), 0);
    json_decref(list), json_decref(in), json_decref(out);
    server_cleanup(&s);
}
END_TEST

Suite *
suite_jobs(void)
{
    Suite *s = suite_create("jobs");
    TCase *tc = tcase_create("jobs");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, enqueue_and_get_any_payload);
    tcase_add_test(tc, claim_order_priority_then_run_at_then_id);
    tcase_add_test(tc, concurrent_claims_take_each_job_once);
    tcase_add_test(tc, killed_worker_job_reclaimed);
    tcase_add_test(tc, waiting_claim_woken_by_enqueue);
    tcase_add_test(tc, waiting_claim_woken_when_delayed_job_due);
    tcase_add_test(tc, waiting_claim_times_out_with_204);
    tcase_add_test(tc, gone_waiter_does_not_swallow_a_job);
    tcase_add_test(tc, dedupe_key_until_completed);
    tcase_add_test(tc, retryable_fail_backs_off_then_exhausts);
    tcase_add_test(tc, fail_retry_after_and_not_retryable);
    tcase_add_test(tc, operator_retry_of_exhausted_job);
    tcase_add_test(tc, fail_now_and_cancel);
    tcase_add_test(tc, heartbeat_extends_lock_and_tokens_fence);
    tcase_add_test(tc, sweep_requeues_or_fails_expired_locks);
    tcase_add_test(tc, requeue_stale_route_and_pending_flags);
    tcase_add_test(tc, claim_takes_expired_lock_without_sweep);
    tcase_add_test(tc, sweep_works_off_a_backlog_in_chunks);
    tcase_add_test(tc, retention_deletes_only_old_completed);
    tcase_add_test(tc, list_newest_first_with_cursor);
    tcase_add_test(tc, bad_input_answers_400_or_404_and_changes_nothing);
    tcase_add_test(tc, bad_path_id_is_400_naming_parameter);
    tcase_add_test(tc, requeued_job_clears_lock_owner);
    tcase_add_test(tc, sweep_lines_are_the_lines_jansson_prints);
    tcase_add_test(tc, sweep_events_counted_in_metrics);
    tcase_add_test(tc, outbound_leased_queue_requires_lease_token);
    tcase_add_test(tc, jobs_survive_server_kill);
    suite_add_tcase(s, tc);
    tc = tcase_create("batch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, batch_1000_accepted_in_order_1001_refused);
    tcase_add_test(tc, batch_is_all_or_nothing);
    tcase_add_test(tc, batch_dedupe_within_and_across_batches);
    tcase_add_test(tc, batch_jobs_claimable_with_their_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("order_keys");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, order_key_conversations_in_order_claimers_busy);
    tcase_add_test(tc, order_key_retrying_job_holds_later_jobs);
    tcase_add_test(tc, order_key_expired_lock_frees_the_key);
    tcase_add_test(tc, order_key_of_inbound_and_replies_and_bad_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("complete_and_next");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, complete_and_next_claims_in_the_same_request);
    tcase_add_test(tc, complete_and_next_refused_changes_nothing);
    tcase_add_test(tc, complete_and_next_long_polls_after_committing);
    suite_add_tcase(s, tc);
    return s;
}
