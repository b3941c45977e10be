/* check_queues.c -- pause and resume of a queue against a real batond: a
 * paused queue takes jobs and lets running ones finish but hands out no
 * claims, a waiting claim stays parked until the resume wakes it, the pause
 * survives a restart, the sweep still takes back expired locks, events
 * record who and why, the listing and /metrics show it, the CLI and the
 * Convex functions drive it, and bad input changes nothing. */
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"
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

/* The "job" of an answer (new reference, NULL for a 204); frees the answer. */
static json_t *
job_of(json_t *answer)
{
    json_t *job = json_incref(json_object_get(answer, "job"));

    json_decref(answer);
    return job;
}

static json_t *
enqueue(struct server *s, const char *queue)
{
    json_t *job = job_of(CALL(s, "POST", "/v1/jobs",
                              json_pack("{s:s, s:{s:i}}", "queue", queue, "payload", "n", 1), 201));

    ck_assert_ptr_nonnull(job);
    return job;
}

static json_t *
claim(struct server *s, const char *queue, long expect)
{
    return job_of(CALL(s, "POST", "/v1/jobs/claim",
                       json_pack("{s:s, s:s}", "workerId", "w", "queue", queue), expect));
}

static json_t *
control(struct server *s, const char *queue, const char *verb, json_t *body, long expect)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/queues/%s/%s", queue, verb);
    return CALL(s, "POST", path, body, expect);
}

/* The row of queue in GET /v1/queues (new reference), NULL when absent. */
static json_t *
queue_row(struct server *s, const char *queue)
{
    json_t *j = CALL(s, "GET", "/v1/queues", NULL, 200), *row, *out = NULL;
    size_t i;

    json_array_foreach(json_object_get(j, "queues"), i, row)
        if (!strcmp(sget(row, "queue"), queue))
            out = json_incref(row);
    json_decref(j);
    return out;
}

/* The events named name (new reference to the array). */
static json_t *
events_named(struct server *s, const char *name)
{
    char path[300];
    json_t *j, *ev;

    snprintf(path, sizeof path, "/v1/events?event=%s&limit=1000", name);
    j = CALL(s, "GET", path, NULL, 200);
    ev = json_incref(json_object_get(j, "events"));
    json_decref(j);
    ck_assert_ptr_nonnull(ev);
    return ev;
}

/* A claim long-poll on another thread. */
struct waiter {
    struct server *s;
    char body[200];
    struct resp r;
    int64_t done_at;
    volatile int done;
    int rc;
};

static void *
waiter_main(void *arg)
{
    struct waiter *w = arg;

    w->rc = http_req(w->s, "POST", "/v1/jobs/claim", w->body, strlen(w->body), NULL, NULL, &w->r);
    w->done_at = now_ms();
    w->done = 1;
    return NULL;
}

/* ---- a paused queue ---------------------------------------------------------- */

/* Pause: enqueues are accepted, claims get nothing (at once, and a waiting
 * one only at its deadline) although a job is pending, the job already
 * running heartbeats and completes; the listing shows the pause; a second
 * pause changes nothing and records no second event. */
START_TEST(paused_queue_takes_jobs_hands_out_none)
{
    struct server s = {0};
    json_t *a, *b, *j, *row, *ev, *w;
    char path[200];
    struct resp r;
    const char *wait = "{\"workerId\":\"w\",\"queue\":\"agent\",\"waitMs\":1500}";
    int64_t t0;

    server_start(&s, NULL);
    json_decref(enqueue(&s, "agent"));
    a = claim(&s, "agent", 200);
    ck_assert_ptr_nonnull(a);

    j = control(&s, "agent", "pause", json_pack("{s:s}", "reason", "providers down"), 200);
    ck_assert(json_is_true(json_object_get(j, "paused")));
    ck_assert(json_is_true(json_object_get(j, "changed")));
    ck_assert_str_eq(sget(j, "pausedReason"), "providers down");
    ck_assert_str_eq(sget(j, "pausedBy"), "127.0.0.1");
    ck_assert(json_is_integer(json_object_get(j, "pausedAt")));
    json_decref(j);

    b = enqueue(&s, "agent");                       /* accepted */
    ck_assert_ptr_null(claim(&s, "agent", 204));    /* b is pending, yet nothing */

    /* a waiting claim is not answered with b: it waits out its time */
    t0 = now_ms();
    ck_assert_int_eq(http_req(&s, "POST", "/v1/jobs/claim", wait, strlen(wait), NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 204);
    ck_assert_int_ge(now_ms() - t0, 1400);
    resp_free(&r);

    /* the running job finishes its work */
    snprintf(path, sizeof path, "/v1/jobs/%s/heartbeat", sget(a, "id"));
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s}", "workerId", "w", "claimToken",
                                                 sget(a, "claimToken")), 200));
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", sget(a, "id"));
    j = CALL(&s, "POST", path, json_pack("{s:s, s:s, s:{s:b}}", "workerId", "w", "claimToken",
                                         sget(a, "claimToken"), "result", "ok", 1), 200);
    ck_assert_str_eq(sget(json_object_get(j, "job"), "status"), "completed");
    json_decref(j);

    row = queue_row(&s, "agent");
    ck_assert_ptr_nonnull(row);
    ck_assert(json_is_true(json_object_get(row, "paused")));
    ck_assert_str_eq(sget(row, "pausedReason"), "providers down");
    ck_assert(json_is_integer(json_object_get(row, "pausedAt")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(row, "counts"), "pending")), 1);
    json_decref(row);

    /* again: 200, nothing changes (the first reason stays), no second event */
    j = control(&s, "agent", "pause", json_pack("{s:s}", "reason", "other"), 200);
    ck_assert(json_is_false(json_object_get(j, "changed")));
    ck_assert_str_eq(sget(j, "pausedReason"), "providers down");
    json_decref(j);
    ev = events_named(&s, "agent.queue.paused");
    ck_assert_int_eq(json_array_size(ev), 1);
    w = json_array_get(ev, 0);
    ck_assert_str_eq(sget(w, "queue"), "agent");
    ck_assert_str_eq(sget(w, "by"), "127.0.0.1");
    ck_assert_str_eq(sget(w, "reason"), "providers down");
    json_decref(ev);

    /* other queues are not held */
    json_decref(enqueue(&s, "other"));
    j = claim(&s, "other", 200);
    ck_assert_ptr_nonnull(j);
    json_decref(j);

    json_decref(a);
    json_decref(b);
    server_cleanup(&s);
}
END_TEST

/* A claim parked on a paused queue stays parked while jobs arrive, and the
 * resume hands it the job at once. */
START_TEST(resume_wakes_parked_claimer)
{
    struct server s = {0};
    struct waiter w = {.s = &s};
    pthread_t th;
    json_t *job, *j, *ev;
    int64_t t0;

    server_start(&s, NULL);
    snprintf(w.body, sizeof w.body, "{\"workerId\":\"w\",\"queue\":\"agent\",\"waitMs\":30000}");
    json_decref(control(&s, "agent", "pause", NULL, 200));
    pthread_create(&th, NULL, waiter_main, &w);
    msleep(300);
    job = enqueue(&s, "agent");         /* wakes the queue: the claim looks, and parks again */
    msleep(1200);
    ck_assert_msg(!w.done, "a claim on a paused queue was answered %ld", w.r.status);

    t0 = now_ms();
    j = control(&s, "agent", "resume", json_pack("{s:s}", "reason", "providers back"), 200);
    ck_assert(json_is_false(json_object_get(j, "paused")));
    ck_assert(json_is_true(json_object_get(j, "changed")));
    ck_assert(json_is_null(json_object_get(j, "pausedReason")));
    json_decref(j);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_str_eq(sget(json_object_get(w.r.json, "job"), "id"), sget(job, "id"));
    ck_assert_int_lt(w.done_at - t0, 5000);     /* long before its 30 s deadline */
    resp_free(&w.r);

    ev = events_named(&s, "agent.queue.resumed");
    ck_assert_int_eq(json_array_size(ev), 1);
    ck_assert_str_eq(sget(json_array_get(ev, 0), "by"), "127.0.0.1");
    ck_assert_str_eq(sget(json_array_get(ev, 0), "reason"), "providers back");
    json_decref(ev);
    /* a second resume changes nothing */
    j = control(&s, "agent", "resume", NULL, 200);
    ck_assert(json_is_false(json_object_get(j, "changed")));
    json_decref(j);
    ev = events_named(&s, "agent.queue.resumed");
    ck_assert_int_eq(json_array_size(ev), 1);
    json_decref(ev);
    json_decref(job);
    server_cleanup(&s);
}
END_TEST

/* A pause is kept across a restart; a paused queue without jobs is listed
 * and shown in /metrics. */
START_TEST(pause_survives_restart)
{
    struct server s = {0};
    json_t *row;
    struct resp r;

    server_start(&s, NULL);
    json_decref(control(&s, "outbound.telegram.main", "pause", json_pack("{s:s}", "reason", "r1"), 200));
    row = queue_row(&s, "outbound.telegram.main");   /* no job ever: still listed */
    ck_assert_ptr_nonnull(row);
    ck_assert(json_is_true(json_object_get(row, "paused")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(row, "counts"), "pending")), 0);
    json_decref(row);

    server_restart(&s);
    row = queue_row(&s, "outbound.telegram.main");
    ck_assert_ptr_nonnull(row);
    ck_assert(json_is_true(json_object_get(row, "paused")));
    ck_assert_str_eq(sget(row, "pausedReason"), "r1");
    json_decref(row);
    json_decref(enqueue(&s, "outbound.telegram.main"));
    ck_assert_ptr_null(claim(&s, "outbound.telegram.main", 204));

    ck_assert_int_eq(http_req(&s, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "baton_queue_paused{queue=\"outbound.telegram.main\"} 1\n"),
                  "no paused gauge in /metrics");
    resp_free(&r);

    json_decref(control(&s, "outbound.telegram.main", "resume", NULL, 200));
    ck_assert_int_eq(http_req(&s, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "baton_queue_paused{queue=\"outbound.telegram.main\"} 0\n"));
    resp_free(&r);
    row = claim(&s, "outbound.telegram.main", 200);
    ck_assert_ptr_nonnull(row);
    json_decref(row);
    server_cleanup(&s);
}
END_TEST

/* The stale sweep still takes back an expired lock on a paused queue; the
 * job then waits, pending, for the resume. */
START_TEST(sweep_requeues_expired_lock_while_paused)
{
    static const char *const env[] = {"BATON_SWEEP_INTERVAL_MS=100", NULL};
    struct server s = {0};
    json_t *a, *j, *job = NULL;
    char path[200];
    int64_t t0;

    server_start(&s, env);
    json_decref(enqueue(&s, "sw"));
    a = job_of(CALL(&s, "POST", "/v1/jobs/claim",
                    json_pack("{s:s, s:s, s:i}", "workerId", "dead", "queue", "sw", "lockMs", 300), 200));
    ck_assert_ptr_nonnull(a);
    json_decref(control(&s, "sw", "pause", NULL, 200));
    snprintf(path, sizeof path, "/v1/jobs/%s", sget(a, "id"));
    for (t0 = now_ms(); now_ms() - t0 < 10000; msleep(100)) {
        json_decref(job);
        job = job_of(CALL(&s, "GET", path, NULL, 200));
        if (!strcmp(sget(job, "status"), "pending"))
            break;
    }
    ck_assert_str_eq(sget(job, "status"), "pending");
    ck_assert_str_eq(sget(job, "errorReason"), "lock_expired");
    json_decref(job);
    ck_assert_ptr_null(claim(&s, "sw", 204));
    json_decref(control(&s, "sw", "resume", NULL, 200));
    j = claim(&s, "sw", 200);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(sget(j, "id"), sget(a, "id"));
    json_decref(j);
    json_decref(a);
    server_cleanup(&s);
}
END_TEST

/* Bad names and reasons: 400 naming the problem, nothing paused, no event. */
START_TEST(bad_input_answers_400_and_changes_nothing)
{
    struct server s = {0};
    char long_reason[502], path[200];
    json_t *j, *ev;
    struct resp r;
    static const char *const bad_queues[] = {"bad%20name", "outbound.telegram", "a%2Fb", "%C3%A9t%C3%A9"};

    server_start(&s, NULL);
    memset(long_reason, 'x', 501);
    long_reason[501] = '\0';
    j = control(&s, "agent", "pause", json_pack("{s:s}", "reason", long_reason), 400);
    ck_assert_str_eq(sget(json_object_get(j, "error"), "code"), "bad_request");
    ck_assert_ptr_nonnull(strstr(sget(json_object_get(j, "error"), "message"), "reason"));
    json_decref(j);
    json_decref(control(&s, "agent", "pause", json_pack("{s:i}", "reason", 42), 400));
    json_decref(control(&s, "agent", "pause", json_pack("{s:b}", "reason", 1), 400));
    for (size_t i = 0; i < sizeof bad_queues / sizeof *bad_queues; i++) {
        snprintf(path, sizeof path, "/v1/queues/%s/pause", bad_queues[i]);
        ck_assert_int_eq(http_req(&s, "POST", path, NULL, 0, NULL, NULL, &r), 0);
        ck_assert_msg(r.status == 400, "%s: %ld", path, r.status);
        ck_assert_ptr_nonnull(strstr(r.body, "queue"));
        resp_free(&r);
    }
    ck_assert_int_eq(http_req(&s, "POST", "/v1/queues/agent/pause", "[1]", 3, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 400);
    resp_free(&r);
    ck_assert_int_eq(http_req(&s, "POST", "/v1/queues/agent/pause", NULL, 0, "", NULL, &r), 0);
    ck_assert_int_eq(r.status, 401);
    resp_free(&r);

    j = CALL(&s, "GET", "/v1/queues", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "queues")), 0);
    json_decref(j);
    ev = events_named(&s, "agent.queue.paused");
    ck_assert_int_eq(json_array_size(ev), 0);
    json_decref(ev);
    json_decref(enqueue(&s, "agent"));
    j = claim(&s, "agent", 200);
    ck_assert_ptr_nonnull(j);
    json_decref(j);

    /* exactly 500 bytes is a reason */
    long_reason[500] = '\0';
    j = control(&s, "agent", "pause", json_pack("{s:s}", "reason", long_reason), 200);
    ck_assert_int_eq(strlen(sget(j, "pausedReason")), 500);
    json_decref(j);
    server_cleanup(&s);
}
END_TEST

/* ---- Convex and the CLI --------------------------------------------------- */

static json_t *
convex(struct server *s, const char *body, long expect)
{
    struct resp r;
    json_t *out;
    char auth[128];

    snprintf(auth, sizeof auth, "Convex %s", TEST_SECRET);
    ck_assert_int_eq(http_req(s, "POST", "/api/mutation", body, strlen(body), auth, NULL, &r), 0);
    ck_assert_msg(r.status == expect, "%s: status %ld: %s", body, r.status, r.body);
    out = r.json;
    r.json = NULL;
    resp_free(&r);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(convex_pause_and_resume_queue)
{
    struct server s = {0};
    json_t *v, *row;

    server_start(&s, NULL);
    v = convex(&s, "{\"path\":\"agent:pauseQueue\",\"args\":{\"queue\":\"agent\",\"reason\":\"maint\"},"
                   "\"format\":\"json\"}", 200);
    ck_assert_str_eq(sget(v, "status"), "success");
    ck_assert(json_is_true(json_object_get(json_object_get(v, "value"), "paused")));
    json_decref(v);
    row = queue_row(&s, "agent");
    ck_assert_ptr_nonnull(row);
    ck_assert(json_is_true(json_object_get(row, "paused")));
    ck_assert_str_eq(sget(row, "pausedReason"), "maint");
    json_decref(row);
    json_decref(enqueue(&s, "agent"));
    ck_assert_ptr_null(claim(&s, "agent", 204));

    v = convex(&s, "{\"path\":\"agent:resumeQueue\",\"args\":{\"queue\":\"agent\"},\"format\":\"json\"}", 200);
    ck_assert_str_eq(sget(v, "status"), "success");
    ck_assert(json_is_false(json_object_get(json_object_get(v, "value"), "paused")));
    json_decref(v);
    row = claim(&s, "agent", 200);
    ck_assert_ptr_nonnull(row);
    json_decref(row);

    v = convex(&s, "{\"path\":\"agent:pauseQueue\",\"args\":{\"queue\":\"no way\"},\"format\":\"json\"}", 560);
    ck_assert_str_eq(sget(v, "status"), "error");
    json_decref(v);

    /* limits: set, read back, and a bad one refused */
    v = convex(&s, "{\"path\":\"agent:setQueueLimits\",\"args\":{\"queue\":\"agent\",\"rate\":"
                   "{\"limit\":4,\"periodMs\":1000}},\"format\":\"json\"}", 200);
    ck_assert_str_eq(sget(v, "status"), "success");
    json_decref(v);
    v = convex(&s, "{\"path\":\"agent:getQueueLimits\",\"args\":{\"queue\":\"agent\"},\"format\":\"json\"}",
               200);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(json_object_get(v, "value"), "rate"), 0), "limit")), 4);
    json_decref(v);
    v = convex(&s, "{\"path\":\"agent:setQueueLimits\",\"args\":{\"queue\":\"agent\",\"rate\":"
                   "{\"limit\":-4,\"periodMs\":1000}},\"format\":\"json\"}", 560);
    ck_assert_str_eq(sget(v, "status"), "error");
    json_decref(v);
    server_cleanup(&s);
}
END_TEST

static const char *
baton_bin(void)
{
    static char path[512];
    char dir[512];
    const char *d = getenv("BATOND");

    if (getenv("BATON_CLI"))
        return getenv("BATON_CLI");
    if (!d)
        return "build/baton";
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(path, sizeof path, "%s/baton", dirname(dir));
    return path;
}


/* Run baton with args against s; its exit status, stdout in *out (free). */
static int
cli(struct server *s, char **out, const char *const *args)
{
    char path[300];
    const char *argv[16];
    int n = 0, st;
    pid_t pid;

    snprintf(path, sizeof path, "%s/cli.out", s->dir);
    argv[n++] = "baton";
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fo, 1);
        dup2(fo, 2);
        setenv("BATON_URL", s->url, 1);
        setenv("AGENT_SECRET", TEST_SECRET, 1);
        execv(baton_bin(), (char *const *)argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    *out = file_text(path);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 127, "cannot run %s", baton_bin());
    return WEXITSTATUS(st);
}

#define CLI(s, out, ...) cli((s), (out), (const char *const[]){__VA_ARGS__, NULL})

START_TEST(cli_pause_resume_and_listing)
{
    struct server s = {0};
    char *out;
    json_t *row, *ev;

    server_start(&s, NULL);
    ck_assert_int_eq(CLI(&s, &out, "queues", "pause", "agent", "--reason", "providers down"), 0);
    ck_assert_msg(strstr(out, "queue agent paused"), "%s", out);
    free(out);
    ev = events_named(&s, "agent.queue.paused");
    ck_assert_int_eq(json_array_size(ev), 1);
    ck_assert_str_eq(sget(json_array_get(ev, 0), "reason"), "providers down");
    json_decref(ev);

    ck_assert_int_eq(CLI(&s, &out, "queues"), 0);
    ck_assert_msg(strstr(out, "PAUSED") && strstr(out, "agent") && strstr(out, "true"), "%s", out);
    free(out);
    ck_assert_int_eq(CLI(&s, &out, "--json", "queues"), 0);
    ck_assert_msg(strstr(out, "\"pausedReason\": \"providers down\"") ||
                  strstr(out, "\"pausedReason\":\"providers down\""), "%s", out);
    free(out);

    ck_assert_int_eq(CLI(&s, &out, "queues", "resume", "agent"), 0);
    ck_assert_msg(strstr(out, "queue agent resumed"), "%s", out);
    free(out);
    row = queue_row(&s, "agent");                  /* resumed, no jobs: not listed */
    ck_assert_ptr_null(row);

    ck_assert_int_eq(CLI(&s, &out, "queues", "pause", "bad name"), 1);
    ck_assert_msg(strstr(out, "400"), "%s", out);
    free(out);
    ck_assert_int_eq(CLI(&s, &out, "queues", "pause"), 2);     /* usage */
    free(out);
    server_cleanup(&s);
}
END_TEST


/* ---- rate limits ------------------------------------------------------------- */

static json_t *
limits(struct server *s, const char *queue, const char *method, json_t *body, long expect)
{
    char path[300];

    snprintf(path, sizeof path, "/v1/queues/%s/limits", queue);
    return CALL(s, method, path, body, expect);
}

static json_t *
enqueue_keyed(struct server *s, const char *queue, const char *rate_key)
{
    json_t *b = json_pack("{s:s, s:i}", "queue", queue, "payload", 1);

    if (rate_key)
        json_object_set_new(b, "rateKey", json_string(rate_key));
    return job_of(CALL(s, "POST", "/v1/jobs", b, 201));
}

/* Claimers that claim from one queue (waiting up to 1 s each time) until a
 * deadline, on n threads. */
struct claimers {
    struct server *s;
    const char *queue;
    int64_t until;
    int claimed;                    /* jobs handed out, all threads */
    pthread_mutex_t lock;
};

static void *
claimer_main(void *arg)
{
    struct claimers *c = arg;
    char body[300];

    snprintf(body, sizeof body, "{\"queue\":\"%s\",\"workerId\":\"w\",\"waitMs\":1000}", c->queue);
    while (now_ms() < c->until) {
        struct resp r = {0};
        if (http_req(c->s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r) == 0 &&
            r.status == 200) {
            pthread_mutex_lock(&c->lock);
            c->claimed++;
            pthread_mutex_unlock(&c->lock);
        }
        resp_free(&r);
    }
    return NULL;
}

static void
run_claimers(struct server *s, const char *queue, int threads, int64_t ms)
{
    struct claimers c = {.s = s, .queue = queue, .until = now_ms() + ms};
    pthread_t th[8];

    pthread_mutex_init(&c.lock, NULL);
    for (int i = 0; i < threads; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, claimer_main, &c), 0);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&c.lock);
}

/* The startedAt (store clock) of the claimed jobs of queue (with rateKey
 * key, or every one when key is NULL; "" for those without a key) into v
 * (at most max). Returns how many. */
static int
claim_times(struct server *s, const char *queue, const char *key, int64_t *v, int max)
{
    char path[300];
    json_t *j, *job;
    size_t i;
    int n = 0;

    snprintf(path, sizeof path, "/v1/jobs?queue=%s&status=processing&limit=1000", queue);
    j = CALL(s, "GET", path, NULL, 200);
    json_array_foreach(json_object_get(j, "jobs"), i, job) {
        const char *k = sget(job, "rateKey");
        if (key && strcmp(k ? k : "", key))
            continue;
        ck_assert_int_lt(n, max);
        v[n++] = json_integer_value(json_object_get(job, "startedAt"));
    }
    json_decref(j);
    return n;
}

/* A queue limited to 10 claims per 600 ms, 4 claimers that always want
 * more, 60 jobs: no window of 600 ms holds 11 claims (by the store's
 * clock), and the first three windows hold 30 of them (within 10 %). The
 * claims refused are counted in /metrics. */
START_TEST(queue_rate_limit_paces_claims)
{
    struct server s = {0};
    int64_t v[64];
    struct resp r = {0};
    int n;

    server_start(&s, NULL);
    json_decref(limits(&s, "paced", "PUT", json_pack("{s:{s:i, s:i}}", "rate", "limit", 10, "periodMs", 600),
                       200));
    for (int i = 0; i < 60; i++)
        json_decref(enqueue_keyed(&s, "paced", NULL));
    run_claimers(&s, "paced", 4, 2000);
    n = claim_times(&s, "paced", NULL, v, 64);
    ck_assert_int_ge(n, 30);
    assert_paced(v, n, 10, 600, 3);
    ck_assert_int_eq(http_req(&s, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "baton_claims_deferred_total{reason=\"rate_limit\"} "));
    ck_assert_ptr_null(strstr(r.body, "baton_claims_deferred_total{reason=\"rate_limit\"} 0\n"));
    resp_free(&r);
    server_cleanup(&s);
}
END_TEST

/* A key limit of 5 claims per 1000 ms: the 20 jobs of key "slow" (enqueued
 * first, so each claim would take them first) go out 5 a window, 15 in
 * three windows; the 20 jobs of 20 other keys and 5 without a key are all
 * claimed within the first window -- the limited key holds nobody else up. */
START_TEST(key_rate_limit_paces_one_key_not_the_others)
{
    struct server s = {0};
    int64_t slow[32], all[64], first;
    char key[16];
    int n;

    server_start(&s, NULL);
    json_decref(limits(&s, "chats", "PUT",
                       json_pack("{s:[{s:i, s:i, s:b}]}", "rate", "limit", 5, "periodMs", 1000, "byKey", 1),
                       200));
    for (int i = 0; i < 20; i++)
        json_decref(enqueue_keyed(&s, "chats", "slow"));
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "chat-%d", i);
        json_decref(enqueue_keyed(&s, "chats", key));
    }
    for (int i = 0; i < 5; i++)
        json_decref(enqueue_keyed(&s, "chats", NULL));
    run_claimers(&s, "chats", 2, 3300);
    n = claim_times(&s, "chats", "slow", slow, 32);
    assert_paced(slow, n, 5, 1000, 3);
    first = slow[0];
    n = claim_times(&s, "chats", NULL, all, 64);
    ck_assert_int_ge(n, 25 + 15);
    /* every job of another key (or none) went out in the first window */
    {
        char path[300];
        json_t *j, *job;
        size_t i;
        int others = 0;

        snprintf(path, sizeof path, "/v1/jobs?queue=chats&limit=1000");
        j = CALL(&s, "GET", path, NULL, 200);
        json_array_foreach(json_object_get(j, "jobs"), i, job) {
            const char *k = sget(job, "rateKey");
            if (k && !strcmp(k, "slow"))
                continue;
            ck_assert_str_eq(sget(job, "status"), "processing");
            ck_assert_int_lt(json_integer_value(json_object_get(job, "startedAt")), first + 1000);
            others++;
        }
        ck_assert_int_eq(others, 25);
        json_decref(j);
    }
    server_cleanup(&s);
}
END_TEST

/* A claim that finds only rate-limited jobs parks until the window frees
 * -- woken then, not at its deadline and not by polling -- and gets the
 * job; the second claim starts at least a period after the first. */
START_TEST(rate_limited_claim_parks_until_due)
{
    struct server s = {0};
    struct waiter w = {.s = &s};
    json_t *a, *b;
    int64_t t0;
    pthread_t th;

    server_start(&s, NULL);
    json_decref(limits(&s, "slow", "PUT", json_pack("{s:{s:i, s:i}}", "rate", "limit", 1, "periodMs", 800), 200));
    json_decref(enqueue_keyed(&s, "slow", NULL));
    json_decref(enqueue_keyed(&s, "slow", NULL));
    a = claim(&s, "slow", 200);
    snprintf(w.body, sizeof w.body, "{\"queue\":\"slow\",\"workerId\":\"w\",\"waitMs\":5000}");
    t0 = now_ms();
    ck_assert_int_eq(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.r.status, 200);
    ck_assert_int_lt(w.done_at - t0, 2500);     /* the due time, not the 5 s deadline */
    b = json_object_get(w.r.json, "job");
    ck_assert_int_ge(json_integer_value(json_object_get(b, "startedAt")) -
                         json_integer_value(json_object_get(a, "startedAt")), 800);
    json_decref(a);
    resp_free(&w.r);
    server_cleanup(&s);
}
END_TEST

/* Limits are set, read, persisted across a restart, reset to the defaults
 * with DELETE, shown in GET /v1/queues and recorded as an event; the
 * outbound queues of Telegram and WhatsApp have documented defaults; bad
 * input is a 400 naming the field and changes nothing. */
START_TEST(limits_set_read_persist_and_bad_input)
{
    static const char *const bad[] = {
        "{}", "{\"rate\":\"x\"}", "{\"rate\":{\"limit\":-1,\"periodMs\":1000}}",
        "{\"rate\":{\"limit\":0,\"periodMs\":1000}}", "{\"rate\":{\"limit\":1,\"periodMs\":0}}",
        "{\"rate\":{\"limit\":1}}", "{\"rate\":{\"limit\":\"1\",\"periodMs\":1000}}",
        "{\"rate\":{\"limit\":10001,\"periodMs\":1000}}", "{\"rate\":{\"limit\":1,\"periodMs\":86400001}}",
        "{\"rate\":[{\"limit\":1,\"periodMs\":1},{\"limit\":2,\"periodMs\":1}]}",
        "{\"rate\":[{\"limit\":1,\"periodMs\":1},{\"limit\":2,\"periodMs\":1,\"byKey\":true},{\"limit\":1,\"periodMs\":1}]}",
        "{\"rate\":{\"limit\":1,\"periodMs\":1,\"byKey\":\"yes\"}}", "[1]", "{\"rate\":",
    };
    struct server s = {0};
    json_t *l, *r, *row, *ev;
    const char *want = "[{\"limit\": 3, \"periodMs\": 1000, \"byKey\": false}, "
                       "{\"limit\": 1, \"periodMs\": 2000, \"byKey\": true}]";
    char *text;

    server_start(&s, NULL);
    l = limits(&s, "outbound.telegram.bot", "GET", NULL, 200);
    ck_assert(json_is_true(json_object_get(l, "default")));
    text = json_dumps(json_object_get(l, "rate"), JSON_PRESERVE_ORDER);
    ck_assert_str_eq(text, "[{\"limit\": 30, \"periodMs\": 1000, \"byKey\": false}, "
                           "{\"limit\": 1, \"periodMs\": 1000, \"byKey\": true}]");
    free(text), json_decref(l);
    l = limits(&s, "outbound.whatsapp.phone", "GET", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(l, "rate")), 2);
    json_decref(l);
    l = limits(&s, "agent", "GET", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(l, "rate")), 0);
    json_decref(l);
    json_decref(limits(&s, "q1", "PUT",
                       json_pack("{s:[{s:i, s:i}, {s:i, s:i, s:b}]}", "rate", "limit", 3, "periodMs", 1000,
                                 "limit", 1, "periodMs", 2000, "byKey", 1), 200));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct resp br = {0};
        ck_assert_int_eq(http_req(&s, "PUT", "/v1/queues/q1/limits", bad[i], strlen(bad[i]), NULL, NULL, &br), 0);
        ck_assert_msg(br.status == 400, "%s answered %ld", bad[i], br.status);
        ck_assert_ptr_nonnull(br.json);
        resp_free(&br);
    }
    r = limits(&s, "q1", "PUT", json_pack("{s:{s:i, s:i}}", "rate", "limit", -5, "periodMs", 10), 400);
    ck_assert_ptr_nonnull(strstr(sget(json_object_get(r, "error"), "message"), "rate.limit"));
    json_decref(r);
    json_decref(limits(&s, "bad%2Fname", "PUT", json_pack("{s:n}", "rate"), 400));
    server_restart(&s);
    l = limits(&s, "q1", "GET", NULL, 200);
    ck_assert(json_is_false(json_object_get(l, "default")));
    text = json_dumps(json_object_get(l, "rate"), JSON_PRESERVE_ORDER);
    ck_assert_str_eq(text, want);
    free(text), json_decref(l);
    row = queue_row(&s, "q1");
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(json_array_size(json_object_get(row, "rate")), 2);
    json_decref(row);
    ev = events_named(&s, "q1.queue.limits_set");
    ck_assert_int_eq(json_array_size(ev), 1);
    json_decref(ev);
    /* none at all, then back to the defaults */
    l = limits(&s, "outbound.telegram.bot", "PUT", json_pack("{s:n}", "rate"), 200);
    ck_assert_int_eq(json_array_size(json_object_get(l, "rate")), 0);
    ck_assert(json_is_false(json_object_get(l, "default")));
    json_decref(l);
    l = limits(&s, "outbound.telegram.bot", "DELETE", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(l, "rate")), 2);
    ck_assert(json_is_true(json_object_get(l, "default")));
    json_decref(l);
    server_cleanup(&s);
}
END_TEST

/* The CLI reads, sets and resets limits; libbaton drives pause, resume,
 * limits and schedules; a bad --rate is a usage error. */
START_TEST(cli_and_libbaton_limits_controls_schedules)
{
    struct server s = {0};
    baton_client *b;
    baton_error err;
    json_t *out = NULL, *rate, *sched;
    char *txt;

    server_start(&s, NULL);
    ck_assert_int_eq(CLI(&s, &txt, "queues", "limits", "outbound.telegram.bot"), 0);
    ck_assert_msg(strstr(txt, "(defaults)") && strstr(txt, "30 claims per 1000 ms") &&
                  strstr(txt, "1 claims per 1000 ms for each rateKey"), "%s", txt);
    free(txt);
    ck_assert_int_eq(CLI(&s, &txt, "queues", "limits", "q", "--rate", "5/1000", "--key-rate", "1/200"), 0);
    ck_assert_msg(strstr(txt, "5 claims per 1000 ms") && strstr(txt, "1 claims per 200 ms for each"), "%s", txt);
    free(txt);
    ck_assert_int_eq(CLI(&s, &txt, "queues", "limits", "q", "--rate", "5"), 2);
    free(txt);
    ck_assert_int_eq(CLI(&s, &txt, "queues", "limits", "q", "--rate", "0/1000"), 1);
    ck_assert_msg(strstr(txt, "400"), "%s", txt);
    free(txt);
    ck_assert_int_eq(CLI(&s, &txt, "queues", "limits", "q", "--reset"), 0);
    ck_assert_msg(strstr(txt, "(defaults)") && strstr(txt, "no rate limit"), "%s", txt);
    free(txt);
    ck_assert_int_eq(CLI(&s, &txt, "jobs", "enqueue", "--queue", "q", "--rate-key", "chat-1", "{}"), 0);
    free(txt);

    ck_assert_ptr_nonnull(b = baton_new(s.url, TEST_SECRET));
    ck_assert_int_eq(baton_queue_pause(b, "q", "maintenance", &out, &err), 200);
    ck_assert(json_is_true(json_object_get(out, "paused")));
    json_decref(out);
    ck_assert_int_eq(baton_queue_resume(b, "q", &out, &err), 200);
    ck_assert(json_is_false(json_object_get(out, "paused")));
    json_decref(out);
    rate = json_pack("{s:i, s:i}", "limit", 2, "periodMs", 500);
    ck_assert_int_eq(baton_queue_limits_set(b, "q", rate, &out, &err), 200);
    json_decref(rate), json_decref(out);
    ck_assert_int_eq(baton_queue_limits(b, "q", &out, &err), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(out, "rate"), 0),
                                                        "limit")), 2);
    json_decref(out);
    ck_assert_int_eq(baton_queue_limits_reset(b, "q", &out, &err), 200);
    ck_assert(json_is_true(json_object_get(out, "default")));
    json_decref(out);
    ck_assert_int_eq(baton_queue_pause(b, "bad name", NULL, NULL, &err), -1);
    ck_assert_int_eq(err.status, 400);

    sched = json_pack("{s:s, s:s, s:{}, s:i}", "name", "tick", "queue", "q", "payload", "everyMs", 60000);
    ck_assert_int_eq(baton_schedule_add(b, sched, &out, &err), 201);
    ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "tick");
    json_decref(out);
    ck_assert_int_eq(baton_schedule_add(b, sched, NULL, &err), -1);
    ck_assert_int_eq(err.status, 409);
    json_decref(sched);
    ck_assert_int_eq(baton_schedule_list(b, &out, &err), 200);
    ck_assert_int_eq(json_array_size(out), 1);
    json_decref(out);
    ck_assert_int_eq(baton_schedule_delete(b, "tick", &err), 200);
    ck_assert_int_eq(baton_schedule_delete(b, "tick", &err), -1);
    ck_assert_int_eq(err.status, 404);
    baton_free(b);
    server_cleanup(&s);
}
END_TEST

Suite *
suite_queues(void)
{
    Suite *s = suite_create("queues");
    TCase *tc = tcase_create("queues");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, paused_queue_takes_jobs_hands_out_none);
    tcase_add_test(tc, resume_wakes_parked_claimer);
    tcase_add_test(tc, pause_survives_restart);
    tcase_add_test(tc, sweep_requeues_expired_lock_while_paused);
    tcase_add_test(tc, bad_input_answers_400_and_changes_nothing);
    tcase_add_test(tc, convex_pause_and_resume_queue);
    tcase_add_test(tc, cli_pause_resume_and_listing);
    suite_add_tcase(s, tc);
    tc = tcase_create("rate_limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, queue_rate_limit_paces_claims);
    tcase_add_test(tc, key_rate_limit_paces_one_key_not_the_others);
    tcase_add_test(tc, rate_limited_claim_parks_until_due);
    tcase_add_test(tc, limits_set_read_persist_and_bad_input);
    tcase_add_test(tc, cli_and_libbaton_limits_controls_schedules);
    suite_add_tcase(s, tc);
    return s;
}
