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

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = NULL;
    size_t n = 0;

    if (!f)
        return strdup("");
    if (getdelim(&s, &n, 0, f) < 0) {
        free(s);
        s = strdup("");
    }
    fclose(f);
    return s;
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
    *out = slurp(path);
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
    return s;
}
