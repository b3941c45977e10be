/* check_client.c -- libbaton against a real batond (error mapping, retries
 * across a restart, typed calls) and against a scripted fake server (503
 * retries, keep-alive, escaping, Server-Sent Events reconnects). */
#define _GNU_SOURCE             /* asprintf */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "baton.h"
#include "fakehttp.h"
#include "harness.h"

static struct server srv;
static baton_client *b;

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    server_start(&srv, NULL);
    b = baton_new(srv.url, TEST_SECRET);
    ck_assert_ptr_nonnull(b);
}

static void
down(void)
{
    baton_free(b);
    b = NULL;
    server_cleanup(&srv);
}

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* A port nothing listens on (bound, then closed). */
static int
closed_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Number of recorded events named name. */
static size_t
count_events(const char *name)
{
    char path[200];
    json_t *out = NULL;
    size_t n;

    snprintf(path, sizeof path, "/v1/events?event=%s&limit=1000", name);
    ck_assert_int_eq(baton_call(b, "GET", path, NULL, &out, NULL), 200);
    n = json_array_size(json_object_get(out, "events"));
    json_decref(out);
    return n;
}

/* ---- against batond ---------------------------------------------------------- */

START_TEST(call_success_and_report)
{
    baton_error err;
    json_t *out = NULL, *fields, *e;

    ck_assert_int_eq(baton_call(b, "GET", "/health", NULL, &out, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(out, "status")), "ok");
    json_decref(out);

    fields = json_pack("{s:i, s:s}", "n", 7, "accountId", "acc 1");
    ck_assert_int_eq(baton_report_event(b, "client.test.reported", "warn", fields, &err), 201);
    json_decref(fields);
    ck_assert_int_eq(baton_call(b, "GET", "/v1/events?event=client.test.reported", NULL, &out, &err),
                     200);
    ck_assert_int_eq(json_array_size(json_object_get(out, "events")), 1);
    e = json_array_get(json_object_get(out, "events"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "level")), "warn");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "n")), 7);
    ck_assert_str_eq(json_string_value(json_object_get(e, "accountId")), "acc 1");
    json_decref(out);
    ck_assert_str_eq(baton_strerror(NULL), "no error");
}
END_TEST

START_TEST(http_errors_mapped)
{
    baton_error err;
    json_t *out = NULL, *body;
    baton_client *wrong = baton_new(srv.url, "not-the-secret");
    baton_client *none = baton_new(srv.url, NULL);

    ck_assert_int_eq(baton_call(b, "GET", "/v1/nothing-here", NULL, &out, &err), -1);
    ck_assert_int_eq(err.status, 404);
    ck_assert_str_eq(err.code, "not_found");
    ck_assert_ptr_nonnull(strstr(err.message, "/v1/nothing-here"));
    ck_assert_int_eq(err.transport, 0);
    /* the error object comes back for its details */
    ck_assert_str_eq(json_string_value(json_object_get(out, "code")), "not_found");
    json_decref(out);
    ck_assert_ptr_nonnull(strstr(baton_strerror(&err), "HTTP 404 not_found: "));

    ck_assert_int_eq(baton_call(wrong, "GET", "/v1/events", NULL, NULL, &err), -1);
    ck_assert_int_eq(err.status, 401);
    ck_assert_str_eq(err.code, "unauthorized");
    ck_assert(err.message[0]);
    ck_assert_int_eq(baton_call(none, "GET", "/v1/events", NULL, NULL, &err), -1);
    ck_assert_int_eq(err.status, 401);

    body = json_pack("{s:i}", "event", 7);
    ck_assert_int_eq(baton_call(b, "POST", "/v1/events", body, NULL, &err), -1);
    json_decref(body);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.code, "bad_request");
    ck_assert_ptr_nonnull(strstr(err.message, "event"));

    ck_assert_int_eq(baton_call(b, "DELETE", "/v1/events", NULL, NULL, &err), -1);
    ck_assert_int_eq(err.status, 405);
    ck_assert_str_eq(err.code, "method_not_allowed");
    /* a NULL err is allowed */
    ck_assert_int_eq(baton_call(b, "GET", "/v1/nothing-here", NULL, NULL, NULL), -1);
    baton_free(wrong);
    baton_free(none);
}
END_TEST

START_TEST(transport_error_to_closed_port)
{
    char url[64];
    baton_error err;
    json_t *out = (json_t *)1;
    baton_client *c;
    long t0;

    snprintf(url, sizeof url, "http://127.0.0.1:%d/", closed_port());
    c = baton_new(url, TEST_SECRET);
    url[strlen(url) - 1] = 0;
    ck_assert_str_eq(baton_url(c), url);        /* trailing slash dropped */
    baton_set_retry(c, 50, 100, 300);
    t0 = mono_ms();
    ck_assert_int_eq(baton_call(c, "GET", "/health", NULL, &out, &err), -1);
    /* retried (50 + 100 + 100 ms of backoff) but within its budget */
    ck_assert_int_ge(mono_ms() - t0, 200);
    ck_assert_int_lt(mono_ms() - t0, 5000);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(err.status, 0);
    ck_assert_str_eq(err.code, "transport");
    ck_assert_int_eq(err.transport, CURLE_COULDNT_CONNECT);
    ck_assert(err.message[0]);
    ck_assert_ptr_nonnull(strstr(baton_strerror(&err), "transport: "));
    /* without retries it fails at once */
    baton_set_retry(c, 50, 100, 0);
    t0 = mono_ms();
    ck_assert_int_eq(baton_call(c, "GET", "/health", NULL, NULL, &err), -1);
    ck_assert_int_lt(mono_ms() - t0, 150);
    baton_free(c);
}
END_TEST

struct restarter {
    struct server *s;
    int delay_ms;
    char listen[64];
    const char *env[2];
    int rc;
};

static void *
restart_later(void *arg)
{
    struct restarter *r = arg;

    msleep(r->delay_ms);
    r->env[0] = r->listen;
    r->env[1] = NULL;
    r->rc = server_try_start(r->s, r->env, NULL, 0);
    return NULL;
}

static void
restart_in_background(struct restarter *r, pthread_t *th, int delay_ms)
{
    int port = srv.port;

    ck_assert_int_eq(server_stop(&srv), 0);
    r->s = &srv;
    r->delay_ms = delay_ms;
    snprintf(r->listen, sizeof r->listen, "BATON_LISTEN=127.0.0.1:%d", port);
    ck_assert_int_eq(pthread_create(th, NULL, restart_later, r), 0);
}

START_TEST(idempotent_get_retried_across_restart)
{
    struct restarter r;
    pthread_t th;
    int port = srv.port, rc;
    json_t *out = NULL;
    baton_error err;
    long t0, took;

    /* a live keep-alive connection first: it dies with the server */
    ck_assert_int_eq(baton_call(b, "GET", "/health", NULL, NULL, &err), 200);
    restart_in_background(&r, &th, 700);
    t0 = mono_ms();
    rc = baton_call(b, "GET", "/v1/events", NULL, &out, &err);
    took = mono_ms() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(r.rc, -1);                 /* batond came back */
    ck_assert_int_eq(srv.port, port);
    ck_assert_msg(rc == 200, "GET across a restart: %s", baton_strerror(&err));
    ck_assert(json_is_array(json_object_get(out, "events")));
    ck_assert_int_ge(took, 500);                /* it really waited for the restart */
    json_decref(out);
}
END_TEST

START_TEST(non_idempotent_not_retried)
{
    struct restarter r;
    pthread_t th;
    baton_error err;
    json_t *body = json_pack("{s:s}", "event", "client.not.retried");
    long t0, took;
    int rc, rc2;

    ck_assert_int_eq(baton_call(b, "GET", "/health", NULL, NULL, &err), 200);
    restart_in_background(&r, &th, 700);
    t0 = mono_ms();
    rc = baton_call(b, "POST", "/v1/events", body, NULL, &err);
    took = mono_ms() - t0;
    rc2 = baton_report_event(b, "client.not.retried", NULL, NULL, NULL);
    pthread_join(th, NULL);
    json_decref(body);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(rc2, -1);
    ck_assert_str_eq(err.code, "transport");
    ck_assert_int_lt(took, 500);                /* failed at once, no backoff */
    /* the server is back and nothing was written behind the caller's back */
    ck_assert_int_eq(count_events("client.not.retried"), 0);
    ck_assert_int_eq(baton_report_event(b, "client.not.retried", NULL, NULL, &err), 201);
    ck_assert_int_eq(count_events("client.not.retried"), 1);
}
END_TEST

START_TEST(dedupe_typed)
{
    baton_error err;
    bool dup = true;

    ck_assert_int_eq(baton_dedupe(b, "telegram", "100:7", &dup, &err), 200);
    ck_assert(!dup);
    ck_assert_int_eq(baton_dedupe(b, "telegram", "100:7", &dup, &err), 200);
    ck_assert(dup);
    ck_assert_int_eq(baton_dedupe(b, "whatsapp", "100:7", &dup, &err), 200);
    ck_assert(!dup);                            /* per channel */
    dup = true;
    ck_assert_int_eq(baton_dedupe(b, "telegram", "", &dup, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.code, "bad_request");
    ck_assert_ptr_nonnull(strstr(err.message, "channelMessageId"));
    ck_assert(dup);                             /* untouched on error */
}
END_TEST

START_TEST(session_batch_typed)
{
    baton_error err;
    json_t *set = json_pack("{s:{s:s}, s:{s:i}, s:{s:i}}", "creds", "me", "x", "pre-key-1", "k", 1,
                            "pre-key-2", "k", 2);
    json_t *del = json_pack("[s]", "pre-key-1");
    json_t *entries = NULL;

    /* an account name that needs escaping (a "/" cannot be routed: the
     * server matches routes on the decoded path) */
    ck_assert_msg(baton_session_batch(b, "whatsapp", "acc 1+\xc3\xa9", set, NULL, 0, &err) == 200, "%s",
                  baton_strerror(&err));
    ck_assert_int_eq(baton_session_get_all(b, "whatsapp", "acc 1+\xc3\xa9", &entries, &err), 200);
    ck_assert_int_eq(json_object_size(entries), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(entries, "creds"), "me")), "x");
    json_decref(entries);
    ck_assert_int_eq(baton_session_batch(b, "whatsapp", "acc 1+\xc3\xa9", NULL, del, 0, &err), 200);
    ck_assert_int_eq(baton_session_get_all(b, "whatsapp", "acc 1+\xc3\xa9", &entries, &err), 200);
    ck_assert_int_eq(json_object_size(entries), 2);
    ck_assert_ptr_null(json_object_get(entries, "pre-key-1"));
    json_decref(entries);
    /* a stale lease token changes nothing */
    ck_assert_int_eq(baton_session_batch(b, "whatsapp", "acc 1+\xc3\xa9", NULL, del, 99, &err), -1);
    ck_assert_int_eq(err.status, 409);
    ck_assert_str_eq(err.code, "lease_not_held");
    ck_assert_int_eq(baton_session_get_all(b, "whatsapp", "acc 1+\xc3\xa9", &entries, &err), 200);
    ck_assert_int_eq(json_object_size(entries), 2);
    json_decref(entries);
    /* another account is another store */
    ck_assert_int_eq(baton_session_get_all(b, "whatsapp", "acc", &entries, &err), 200);
    ck_assert_int_eq(json_object_size(entries), 0);
    json_decref(entries);
    json_decref(set);
    json_decref(del);
}
END_TEST

/* Follow the real stream across a server restart: what was received is
 * not received again, and what happened after is. */
struct follow {
    atomic_int n;
    char names[8][64];
    int restart_rc;
};

static int
on_real_event(void *arg, const char *id, const char *event, json_t *data, const char *raw)
{
    struct follow *f = arg;
    int i = atomic_load(&f->n);

    (void)id;
    (void)data;
    (void)raw;
    if (i < 8)
        snprintf(f->names[i], sizeof f->names[i], "%s", event ? event : "");
    atomic_store(&f->n, i + 1);
    return event && !strcmp(event, "client.stream.after");
}

static void *
stream_driver(void *arg)
{
    struct follow *f = arg;
    const char a[] = "{\"event\":\"client.stream.before\"}", c[] = "{\"event\":\"client.stream.after\"}";
    char listen[64];
    const char *env[] = {listen, NULL};
    struct resp rs;

    snprintf(listen, sizeof listen, "BATON_LISTEN=127.0.0.1:%d", srv.port);
    for (int i = 0; i < 500 && atomic_load(&f->n) == 0; i++) {
        if (http_req(&srv, "POST", "/v1/events", a, strlen(a), NULL, NULL, &rs) == 0)
            resp_free(&rs);
        if (atomic_load(&f->n))
            break;
        msleep(200);
    }
    msleep(100);
    server_stop(&srv);
    f->restart_rc = server_try_start(&srv, env, NULL, 0);
    if (http_req(&srv, "POST", "/v1/events", c, strlen(c), NULL, NULL, &rs) == 0)
        resp_free(&rs);
    return NULL;
}

START_TEST(event_stream_follows_across_restart)
{
    struct follow f = {0};
    pthread_t th;
    baton_error err;
    int before = 0;

    ck_assert_int_eq(pthread_create(&th, NULL, stream_driver, &f), 0);
    ck_assert_msg(baton_events_follow(b, "client.stream.*", NULL, on_real_event, &f, &err) == 0,
                  "follow: %s", baton_strerror(&err));
    pthread_join(th, NULL);
    ck_assert_int_eq(f.restart_rc, -1);
    for (int i = 0; i < atomic_load(&f.n) && i < 8; i++)
        before += !strcmp(f.names[i], "client.stream.before");
    ck_assert_int_ge(before, 1);
    /* the last one is the event after the restart, and nothing came twice:
     * every "before" received is a distinct report, at most one per 200 ms */
    ck_assert_str_eq(f.names[atomic_load(&f.n) - 1], "client.stream.after");
    ck_assert_int_eq(atomic_load(&f.n), before + 1);
}
END_TEST

static void *
enqueue_later(void *arg)
{
    const char body[] = "{\"queue\":\"late\",\"payload\":{\"n\":1}}";
    struct resp rs;

    (void)arg;
    msleep(400);
    if (http_req(&srv, "POST", "/v1/jobs", body, strlen(body), NULL, NULL, &rs) == 0)
        resp_free(&rs);
    return NULL;
}

START_TEST(enqueue_batch_typed)
{
    baton_error err;
    json_t *jobs = json_pack("[{s:s, s:i, s:i}, {s:s, s:i, s:i, s:s}, {s:s, s:i, s:s}]",
                             "queue", "cb", "payload", 1, "priority", 1,
                             "queue", "cb", "payload", 2, "priority", 9, "dedupeKey", "cb-k",
                             "queue", "cb", "payload", 3, "dedupeKey", "cb-k");
    json_t *res = NULL, *job = NULL, *bad;
    const char *first;

    ck_assert_int_eq(baton_enqueue_batch(b, jobs, &res, &err), 201);
    json_decref(jobs);
    ck_assert(json_is_array(res));
    ck_assert_int_eq(json_array_size(res), 3);
    ck_assert(json_is_false(json_object_get(json_array_get(res, 1), "duplicate")));
    ck_assert(json_is_true(json_object_get(json_array_get(res, 2), "duplicate")));
    first = json_string_value(json_object_get(json_object_get(json_array_get(res, 1), "job"), "id"));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(res, 2), "job"), "id")),
                     first);
    /* the priority 9 job first */
    ck_assert_int_eq(baton_claim(b, "cb", "w1", 0, 0, 0, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), first);
    json_decref(job);
    json_decref(res);

    /* a malformed element: 400 naming it, nothing enqueued */
    bad = json_pack("[{s:s, s:i}, {s:s, s:i, s:s}]", "queue", "cb2", "payload", 1, "queue", "cb2",
                    "payload", 2, "priority", "high");
    ck_assert_int_eq(baton_enqueue_batch(b, bad, &res, &err), -1);
    json_decref(bad);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.code, "bad_request");
    ck_assert_ptr_nonnull(strstr(err.message, "jobs[1].priority"));
    ck_assert_str_eq(json_string_value(json_object_get(res, "field")), "jobs[1].priority");
    json_decref(res);
    ck_assert_int_eq(baton_claim(b, "cb2", "w1", 0, 0, 0, &job, &err), 204);
    ck_assert_ptr_null(job);
}
END_TEST

START_TEST(jobs_typed)
{
    baton_error err;
    json_t *payload = json_pack("{s:s}", "text", "hi"), *opts = json_pack("{s:i}", "priority", 5);
    json_t *dopts = json_pack("{s:s}", "dedupeKey", "k-1"), *job = NULL, *result, *got;
    char id[64], id2[64], token[128], token2[128];
    long t0;
    int64_t locked;
    pthread_t th;

    ck_assert_int_eq(baton_enqueue(b, NULL, payload, opts, &job, &err), 201);
    ck_assert_str_eq(json_string_value(json_object_get(job, "status")), "pending");
    ck_assert_str_eq(json_string_value(json_object_get(job, "queue")), "agent");
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    ck_assert_int_eq(baton_enqueue(b, "agent", payload, dopts, &job, &err), 201);
    snprintf(id2, sizeof id2, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    ck_assert_int_eq(baton_enqueue(b, "agent", payload, dopts, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id2);
    ck_assert(json_is_true(json_object_get(job, "duplicate")));
    json_decref(job);

    /* the priority 5 job first */
    ck_assert_int_eq(baton_claim(b, NULL, "w1", 30000, 0, 0, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id);
    ck_assert_str_eq(json_string_value(json_object_get(job, "status")), "processing");
    ck_assert_str_eq(json_string_value(json_object_get(job, "lockedBy")), "w1");
    snprintf(token, sizeof token, "%s", json_string_value(json_object_get(job, "claimToken")));
    locked = json_integer_value(json_object_get(job, "lockedUntil"));
    json_decref(job);

    ck_assert_int_eq(baton_heartbeat_job(b, id, "w1", token, 120000, 0, &job, &err), 200);
    ck_assert_int_gt(json_integer_value(json_object_get(job, "lockedUntil")), locked + 60000);
    json_decref(job);
    ck_assert_int_eq(baton_heartbeat_job(b, id, "w1", "not-the-token", 0, 0, NULL, &err), -1);
    ck_assert_int_eq(err.status, 409);
    ck_assert_str_eq(err.code, "claim_lost");

    result = json_pack("{s:i}", "ok", 1);
    ck_assert_int_eq(baton_complete(b, id, "w1", token, result, NULL, 0, &err), 200);
    json_decref(result);
    ck_assert_int_eq(baton_complete(b, id, "w1", "stale-token", NULL, NULL, 0, &err), -1);
    ck_assert_int_eq(err.status, 409);
    ck_assert_str_eq(err.code, "claim_lost");
    ck_assert_int_eq(baton_job_get(b, id, &got, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(got, "status")), "completed");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(got, "result"), "ok")), 1);
    json_decref(got);

    ck_assert_int_eq(baton_claim(b, NULL, "w2", 0, 0, 0, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), id2);
    snprintf(token2, sizeof token2, "%s", json_string_value(json_object_get(job, "claimToken")));
    json_decref(job);
    ck_assert_int_eq(baton_fail(b, id2, "w2", token2, "boom", "it broke", false, 0, 0, &err), 200);
    ck_assert_int_eq(baton_job_get(b, id2, &got, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(got, "status")), "failed");
    ck_assert_str_eq(json_string_value(json_object_get(got, "errorReason")), "boom");
    ck_assert_str_eq(json_string_value(json_object_get(got, "errorMessage")), "it broke");
    json_decref(got);
    ck_assert_int_eq(baton_job_get(b, "999999", &got, &err), -1);
    ck_assert_int_eq(err.status, 404);
    json_decref(got);

    /* long-poll: the wait is added to the client's timeout, so a 1 s
     * timeout does not cut a 2.5 s wait short */
    baton_set_timeout_ms(b, 1000);
    t0 = mono_ms();
    job = (json_t *)1;
    ck_assert_msg(baton_claim(b, NULL, "w3", 0, 2500, 0, &job, &err) == 204, "%s",
                  baton_strerror(&err));
    ck_assert_ptr_null(job);
    ck_assert_int_ge(mono_ms() - t0, 2000);
    /* and a job that arrives during the wait is handed out at once */
    ck_assert_int_eq(pthread_create(&th, NULL, enqueue_later, NULL), 0);
    t0 = mono_ms();
    ck_assert_msg(baton_claim(b, "late", "w3", 0, 20000, 0, &job, &err) == 200, "%s",
                  baton_strerror(&err));
    pthread_join(th, NULL);
    ck_assert_int_lt(mono_ms() - t0, 10000);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(job, "payload"), "n")), 1);
    json_decref(job);
    json_decref(payload);
    json_decref(opts);
    json_decref(dopts);
}
END_TEST

/* complete-and-next through libbaton: the next job comes with the
 * report, NULL when none; a stale report claims nothing; a wait for the
 * next job long-polls with the client's timeout extended. */
START_TEST(complete_and_next_typed)
{
    baton_error err;
    json_t *payload = json_pack("{s:i}", "n", 0), *job = NULL, *next = NULL;
    baton_next after = {"cnq", 20000, 0}, wait = {"late", 0, 20000};
    char id[64], token[128];
    long t0;
    pthread_t th;

    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(baton_enqueue(b, "cnq", payload, NULL, NULL, &err), 201);
    ck_assert_int_eq(baton_claim(b, "cnq", "w1", 0, 0, 0, &job, &err), 200);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(job, "id")));
    snprintf(token, sizeof token, "%s", json_string_value(json_object_get(job, "claimToken")));
    json_decref(job);

    ck_assert_int_eq(baton_complete_next(b, id, "w1", "stale", NULL, NULL, 0, &after, &next, &err), -1);
    ck_assert_str_eq(err.code, "claim_lost");
    ck_assert_ptr_null(next);
    ck_assert_int_eq(baton_complete_next(b, id, "w1", token, NULL, NULL, 0, &after, &next, &err), 200);
    ck_assert_ptr_nonnull(next);
    ck_assert_str_eq(json_string_value(json_object_get(next, "status")), "processing");
    ck_assert_int_eq(json_integer_value(json_object_get(next, "lockedUntil")) -
                     json_integer_value(json_object_get(next, "startedAt")), 20000);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(next, "id")));
    snprintf(token, sizeof token, "%s", json_string_value(json_object_get(next, "claimToken")));
    json_decref(next);

    /* the queue is empty now: the failure goes through, next is NULL */
    ck_assert_int_eq(baton_fail_next(b, id, "w1", token, "boom", NULL, true, 0, 0, &after, &next, &err), 200);
    ck_assert_ptr_null(next);
    ck_assert_int_eq(baton_job_get(b, id, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(job, "status")), "pending");   /* retryable */
    json_decref(job);

    /* a long wait for the next job outlasts the client's 1 s timeout */
    ck_assert_int_eq(baton_claim(b, "cnq", "w1", 0, 20000, 0, &job, &err), 200);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(job, "id")));
    snprintf(token, sizeof token, "%s", json_string_value(json_object_get(job, "claimToken")));
    json_decref(job);
    baton_set_timeout_ms(b, 1000);
    ck_assert_int_eq(pthread_create(&th, NULL, enqueue_later, NULL), 0);
    t0 = mono_ms();
    ck_assert_msg(baton_complete_next(b, id, "w1", token, NULL, NULL, 0, &wait, &next, &err) == 200, "%s",
                  baton_strerror(&err));
    pthread_join(th, NULL);
    ck_assert_int_lt(mono_ms() - t0, 10000);
    ck_assert_ptr_nonnull(next);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(next, "payload"), "n")), 1);
    json_decref(next);
    json_decref(payload);
}
END_TEST

START_TEST(leases_typed)
{
    baton_error err;
    json_t *lease = NULL, *job, *payload = json_pack("{s:s}", "text", "out");
    long long token, token2;

    ck_assert_int_eq(baton_lease_get(b, "whatsapp", "default", &lease, &err), 200);
    ck_assert_ptr_null(lease);                  /* never held */
    ck_assert_int_eq(baton_lease_acquire(b, "whatsapp", "default", "wa-1", 30000, &lease, &err), 200);
    token = json_integer_value(json_object_get(lease, "token"));
    ck_assert_int_gt(token, 0);
    ck_assert_str_eq(json_string_value(json_object_get(lease, "ownerId")), "wa-1");
    json_decref(lease);

    ck_assert_int_eq(baton_lease_acquire(b, "whatsapp", "default", "wa-2", 30000, &lease, &err), -1);
    ck_assert_int_eq(err.status, 409);
    ck_assert_str_eq(err.code, "lease_held");
    ck_assert_str_eq(json_string_value(json_object_get(lease, "currentOwnerId")), "wa-1");
    json_decref(lease);

    ck_assert_int_eq(baton_lease_heartbeat(b, "whatsapp", "default", "wa-1", token, 30000, &lease, &err),
                     200);
    ck_assert_int_eq(json_integer_value(json_object_get(lease, "token")), token);
    json_decref(lease);
    ck_assert_int_eq(baton_lease_get(b, "whatsapp", "default", &lease, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(lease, "ownerId")), "wa-1");
    json_decref(lease);

    /* outbound jobs on a leased channel are fenced by the lease token */
    ck_assert_int_eq(baton_enqueue(b, "outbound.whatsapp.default", payload, NULL, NULL, &err), 201);
    ck_assert_int_eq(baton_claim(b, "outbound.whatsapp.default", "wa-1", 0, 0, token + 1, &job, &err), -1);
    ck_assert_str_eq(err.code, "lease_not_held");
    json_decref(job);

    ck_assert_int_eq(baton_lease_release(b, "whatsapp", "default", "wa-1", token, &err), 200);
    ck_assert_int_eq(baton_lease_heartbeat(b, "whatsapp", "default", "wa-1", token, 0, NULL, &err), -1);
    ck_assert_int_eq(err.status, 409);
    ck_assert_str_eq(err.code, "lease_lost");
    ck_assert_int_eq(baton_lease_acquire(b, "whatsapp", "default", "wa-2", 30000, &lease, &err), 200);
    token2 = json_integer_value(json_object_get(lease, "token"));
    ck_assert_int_gt(token2, token);
    json_decref(lease);
    ck_assert_int_eq(baton_claim(b, "outbound.whatsapp.default", "wa-2", 0, 0, token2, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "payload"), "text")), "out");
    json_decref(job);
    json_decref(payload);
}
END_TEST

START_TEST(inbound_typed)
{
    baton_error err;
    json_t *out = NULL, *job;
    char path[200];

    ck_assert_msg(baton_inbound(b, "telegram", "default", "77:1", "telegram:default:77", "77", "hello",
                                &out, &err) == 201, "%s", baton_strerror(&err));
    ck_assert(json_is_false(json_object_get(out, "duplicate")));
    ck_assert(json_is_string(json_object_get(out, "jobId")));
    snprintf(path, sizeof path, "/v1/jobs/%s", json_string_value(json_object_get(out, "jobId")));
    json_decref(out);
    ck_assert_int_eq(baton_call(b, "GET", path, NULL, &job, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "job"), "queue")), "agent");
    json_decref(job);
    ck_assert_int_eq(baton_inbound(b, "telegram", "default", "77:1", "telegram:default:77", "77",
                                   "hello", &out, &err), 200);
    ck_assert(json_is_true(json_object_get(out, "duplicate")));
    json_decref(out);
}
END_TEST

/* ---- against a scripted server ------------------------------------------------- */

static char *answers[FAKE_MAX];

static const char *
answer(int i, int status, const char *body, bool close_after)
{
    free(answers[i]);
    ck_assert_int_ge(asprintf(&answers[i],
                              "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n%s\r\n%s",
                              status, strlen(body), close_after ? "Connection: close\r\n" : "", body),
                     0);
    return answers[i];
}

static void
free_answers(void)
{
    for (int i = 0; i < FAKE_MAX; i++) {
        free(answers[i]);
        answers[i] = NULL;
    }
}

static const char unavailable[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"busy\"}}";

START_TEST(retry_on_503_only_when_safe)
{
    struct fake f = {0};
    baton_client *c;
    baton_error err;
    json_t *out = NULL;

    f.answers[0] = answer(0, 503, unavailable, false);
    f.answers[1] = answer(1, 503, unavailable, false);
    f.answers[2] = answer(2, 200, "{\"ok\":true}", false);
    /* then: a POST that gets 503 once, and a job heartbeat (retried) */
    f.answers[3] = answer(3, 503, unavailable, false);
    f.answers[4] = answer(4, 503, unavailable, false);
    f.answers[5] = answer(5, 200, "{\"job\":{\"id\":\"j1\"}}", false);
    fake_start(&f);
    c = baton_new(f.url, "s");
    baton_set_retry(c, 20, 40, 5000);
    ck_assert_int_eq(baton_call(c, "GET", "/v1/queues", NULL, &out, &err), 200);
    ck_assert(json_is_true(json_object_get(out, "ok")));
    json_decref(out);
    ck_assert_int_eq(f.requests, 3);

    ck_assert_int_eq(baton_call(c, "POST", "/v1/jobs", NULL, &out, &err), -1);
    ck_assert_int_eq(err.status, 503);
    ck_assert_str_eq(err.code, "unavailable");
    ck_assert_str_eq(err.message, "busy");
    json_decref(out);
    ck_assert_int_eq(f.requests, 4);            /* once, not retried */

    ck_assert_int_eq(baton_heartbeat_job(c, "j1", "w", "tok", 0, 0, &out, &err), 200);
    ck_assert_str_eq(json_string_value(json_object_get(out, "id")), "j1");
    json_decref(out);
    baton_free(c);
    fake_stop(&f);
    ck_assert_int_eq(f.requests, 6);
    free_answers();
}
END_TEST

START_TEST(keepalive_auth_and_escaping)
{
    struct fake f = {0};
    baton_client *c;
    json_t *out = NULL, *set;
    baton_error err;

    f.answers[0] = answer(0, 200, "{\"lease\":null}", false);
    f.answers[1] = answer(1, 200, "{\"entries\":{\"creds\":{\"k\":1}}}", false);
    f.answers[2] = answer(2, 200, "{}", false);
    f.answers[3] = answer(3, 204, "", false);
    fake_start(&f);
    c = baton_new(f.url, "sekrit");
    ck_assert_int_eq(baton_lease_get(c, "whats app", "a/b?c", &out, &err), 200);
    ck_assert_ptr_null(out);                    /* never a lease: NULL */
    ck_assert_int_eq(baton_session_get_all(c, "whatsapp", "d\xc3\xa9j\xc3\xa0", &out, &err), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(out, "creds"), "k")), 1);
    json_decref(out);
    set = json_pack("{s:{s:i}}", "pre-key-1", "x", 1);
    ck_assert_int_eq(baton_session_batch(c, "whatsapp", "default", set, NULL, 42, &err), 200);
    json_decref(set);
    ck_assert_int_eq(baton_claim(c, NULL, "w1", 0, 0, 0, &out, &err), 204);
    ck_assert_ptr_null(out);
    baton_free(c);
    fake_stop(&f);

    ck_assert_int_eq(f.requests, 4);
    ck_assert_int_eq(f.connections, 1);         /* one connection, reused */
    ck_assert_ptr_nonnull(strstr(f.request[0], "GET /v1/leases/whats%20app/a%2Fb%3Fc HTTP/1.1"));
    ck_assert_ptr_nonnull(strstr(f.request[0], "Authorization: Bearer sekrit"));
    ck_assert_ptr_nonnull(strstr(f.request[1], "GET /v1/sessions/whatsapp/d%C3%A9j%C3%A0 HTTP"));
    ck_assert_ptr_nonnull(strstr(f.request[2], "POST /v1/sessions/whatsapp/default/batch HTTP"));
    ck_assert_ptr_nonnull(strstr(f.request[2], "\"leaseToken\":42"));
    ck_assert_ptr_nonnull(strstr(f.request[2], "\"delete\":[]"));
    ck_assert_ptr_nonnull(strstr(f.request[2], "\"pre-key-1\":{\"x\":1}"));
    ck_assert_ptr_nonnull(strstr(f.request[3], "POST /v1/jobs/claim HTTP"));
    ck_assert_ptr_nonnull(strstr(f.request[3], "\"queue\":\"agent\""));
    ck_assert_ptr_null(strstr(f.request[3], "leaseToken"));   /* <= 0: not sent */
    free_answers();
}
END_TEST

START_TEST(function_error_mapped)
{
    struct fake f = {0};
    baton_client *c;
    baton_error err;
    json_t *out = NULL, *body = json_pack("{s:s, s:{}}", "path", "agent:nothing", "args");

    f.answers[0] = answer(0, 560, "{\"status\":\"error\",\"errorMessage\":\"no such function\","
                                  "\"errorData\":{\"code\":\"not_found\"}}", false);
    fake_start(&f);
    c = baton_new(f.url, "s");
    ck_assert_int_eq(baton_call(c, "POST", "/api/function", body, &out, &err), -1);
    ck_assert_int_eq(err.status, 560);
    ck_assert_str_eq(err.code, "not_found");
    ck_assert_str_eq(err.message, "no such function");
    ck_assert_str_eq(json_string_value(json_object_get(out, "errorMessage")), "no such function");
    json_decref(out);
    json_decref(body);
    baton_free(c);
    fake_stop(&f);
    free_answers();
}
END_TEST

struct seen {
    int n;
    char ids[8][16];
    char names[8][32];
    json_t *data[8];
    char raw[8][64];
};

static int
on_event(void *arg, const char *id, const char *event, json_t *data, const char *raw)
{
    struct seen *s = arg;

    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", id ? id : "");
        snprintf(s->names[s->n], sizeof s->names[0], "%s", event ? event : "");
        s->data[s->n] = json_incref(data);
        snprintf(s->raw[s->n], sizeof s->raw[0], "%s", raw);
    }
    s->n++;
    return s->n >= 4;
}

START_TEST(event_stream_reconnects_with_last_id)
{
    struct fake f = {0};
    struct seen s = {0};
    baton_client *c;
    baton_error err;

    f.answers[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                   ": heartbeat\n\n"
                   "id: 1\nevent: a.b\ndata: {\"event\":\"a.b\",\"n\":1}\n\n"
                   "id: 2\r\ndata: {\"n\":\r\ndata: 2}\r\n\r\n";
    f.answers[1] = "HTTP/1.1 503 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    f.answers[2] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                   "id: 3\ndata: not json\n\n"
                   ": heartbeat\n\n"
                   "id: 4\ndata: {\"n\":4}\n\n";
    fake_start(&f);
    c = baton_new(f.url, "s");
    baton_set_retry(c, 20, 50, 5000);
    ck_assert_int_eq(baton_events_follow(c, "a.*", NULL, on_event, &s, &err), 0);
    baton_free(c);
    fake_stop(&f);

    ck_assert_int_eq(s.n, 4);
    ck_assert_str_eq(s.ids[0], "1");
    ck_assert_str_eq(s.names[0], "a.b");
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[0], "n")), 1);
    ck_assert_str_eq(s.ids[1], "2");                /* CRLF lines, data over two lines */
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[1], "n")), 2);
    ck_assert_str_eq(s.ids[2], "3");
    ck_assert_ptr_null(s.data[2]);
    ck_assert_str_eq(s.raw[2], "not json");
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[3], "n")), 4);
    ck_assert_int_eq(f.requests, 3);
    ck_assert_ptr_nonnull(strstr(f.request[0], "GET /v1/events/stream?event=a.%2A HTTP"));
    ck_assert_ptr_null(strstr(f.request[0], "Last-Event-ID"));
    ck_assert_ptr_nonnull(strstr(f.request[1], "Last-Event-ID: 2\r\n"));
    ck_assert_ptr_nonnull(strstr(f.request[2], "Last-Event-ID: 2\r\n"));
    for (int i = 0; i < 4; i++)
        json_decref(s.data[i]);
}
END_TEST

START_TEST(event_stream_lines_may_end_with_cr)
{
    struct fake f = {0};
    struct seen s = {0};
    baton_client *c;
    baton_error err;

    /* CR alone ends a line too: "id: 7\rdata: x" is two fields, and the id
     * sent back as Last-Event-ID never carries a CR into the header */
    f.answers[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                   "id: 7\revent: a.b\rdata: {\"n\":7}\r\r"
                   "id: 8\r\ndata: 8\r\n\r\n"
                   "id: 9\rX-Injected: 1\n\n";
    f.answers[1] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                   "data: {\"n\":10}\r\rdata: {\"n\":11}\r\r";
    fake_start(&f);
    c = baton_new(f.url, "s");
    baton_set_retry(c, 20, 50, 5000);
    ck_assert_int_eq(baton_events_follow(c, NULL, NULL, on_event, &s, &err), 0);
    baton_free(c);
    fake_stop(&f);

    ck_assert_int_eq(s.n, 4);
    ck_assert_str_eq(s.ids[0], "7");
    ck_assert_str_eq(s.names[0], "a.b");
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[0], "n")), 7);
    ck_assert_str_eq(s.ids[1], "8");
    ck_assert_int_eq(json_integer_value(s.data[1]), 8);
    ck_assert_str_eq(s.ids[2], "");      /* "id: 9" alone updated the last id only */
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[2], "n")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(s.data[3], "n")), 11);
    ck_assert_int_eq(f.requests, 2);
    ck_assert_ptr_nonnull(strstr(f.request[1], "Last-Event-ID: 9\r\n"));
    ck_assert_ptr_null(strstr(f.request[1], "X-Injected"));
    for (int i = 0; i < 4; i++)
        json_decref(s.data[i]);
}
END_TEST

START_TEST(event_stream_gives_up_on_http_error)
{
    struct fake f = {0};
    struct seen s = {0};
    baton_client *c;
    baton_error err;

    f.answers[0] = answer(0, 401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}", true);
    fake_start(&f);
    c = baton_new(f.url, "s");
    ck_assert_int_eq(baton_events_follow(c, NULL, "17", on_event, &s, &err), -1);
    ck_assert_int_eq(err.status, 401);
    baton_free(c);
    fake_stop(&f);
    ck_assert_int_eq(f.requests, 1);
    ck_assert_ptr_nonnull(strstr(f.request[0], "Last-Event-ID: 17\r\n"));
    ck_assert_int_eq(s.n, 0);
    free_answers();
}
END_TEST

Suite *
suite_client(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("client");
    TCase *fk = tcase_create("client-fake");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, call_success_and_report);
    tcase_add_test(tc, http_errors_mapped);
    tcase_add_test(tc, idempotent_get_retried_across_restart);
    tcase_add_test(tc, non_idempotent_not_retried);
    tcase_add_test(tc, dedupe_typed);
    tcase_add_test(tc, session_batch_typed);
    tcase_add_test(tc, event_stream_follows_across_restart);
    tcase_add_test(tc, jobs_typed);
    tcase_add_test(tc, complete_and_next_typed);
    tcase_add_test(tc, enqueue_batch_typed);
    tcase_add_test(tc, leases_typed);
    tcase_add_test(tc, inbound_typed);
    suite_add_tcase(s, tc);

    tcase_set_timeout(fk, 120);
    tcase_add_test(fk, transport_error_to_closed_port);
    tcase_add_test(fk, retry_on_503_only_when_safe);
    tcase_add_test(fk, keepalive_auth_and_escaping);
    tcase_add_test(fk, function_error_mapped);
    tcase_add_test(fk, event_stream_reconnects_with_last_id);
    tcase_add_test(fk, event_stream_lines_may_end_with_cr);
    tcase_add_test(fk, event_stream_gives_up_on_http_error);
    suite_add_tcase(s, fk);
    return s;
}
