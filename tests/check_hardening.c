/* check_hardening.c -- batond under a hostile client: slow and surplus
 * connections, URLs that are not text, filters it cannot apply, absurd
 * Content-Lengths, brute force and floods, a second batond on the same port
 * or database, logs that must stay JSON and secrets that must not reach
 * them. Each test failed on the code before its fix. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "batond.h"
#include "harness.h"

static struct server srv;

static void
fresh(const char *const *env)
{
    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, env);
}

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static int
connect_raw(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};

    ck_assert_int_ge(fd, 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Read what the server sends until it closes or timeout_ms passes; returns
 * the bytes read (NUL-terminated in buf) and whether it closed. */
static size_t
read_until_close(int fd, char *buf, size_t n, int timeout_ms, bool *closed)
{
    size_t len = 0;
    int64_t until = now_ms() + timeout_ms;

    *closed = false;
    while (now_ms() < until && len < n - 1) {
        struct timeval tv = {0, 100 * 1000};
        ssize_t k;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        k = recv(fd, buf + len, n - 1 - len, 0);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            *closed = true;
            break;
        }
        if (k > 0)
            len += (size_t)k;
    }
    buf[len] = 0;
    return len;
}

/* One request on a raw connection (keep-alive); the answer's status, and
 * its body into body (may be NULL). */
static int
raw_call(int fd, const char *method, const char *path, const char *json, char *body, size_t n)
{
    char req[2048], buf[8192];
    size_t len = 0;
    int blen = json ? (int)strlen(json) : 0;
    char *hdr_end, *cl;

    snprintf(req, sizeof req,
             "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TEST_SECRET "\r\n"
             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
             method, path, blen, json ? json : "");
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    for (;;) {
        struct timeval tv = {10, 0};
        ssize_t k;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        ck_assert_msg(k > 0, "connection closed before an answer to %s %s", method, path);
        len += (size_t)k;
        buf[len] = 0;
        if ((hdr_end = strstr(buf, "\r\n\r\n")) &&
            (cl = strcasestr(buf, "Content-Length:")) && cl < hdr_end &&
            len >= (size_t)(hdr_end + 4 - buf) + (size_t)atoi(cl + 15))
            break;
    }
    if (body)
        snprintf(body, n, "%s", hdr_end + 4);
    return atoi(buf + 9);
}

/* Every error answer carries SPEC's JSON body. */
static long
call_status(const char *method, const char *path, const char *body, const char *auth, char **code)
{
    struct resp r;
    long st;

    ck_assert_int_eq(http_req(&srv, method, path, body, body ? strlen(body) : 0, auth, NULL, &r), 0);
    st = r.status;
    if (st >= 400) {
        json_t *e = json_object_get(r.json, "error");
        ck_assert_msg(json_is_string(json_object_get(e, "code")), "%s %s -> %ld without error.code: '%s'",
                      method, path, st, r.body);
        ck_assert_msg(json_is_string(json_object_get(e, "message")), "no error.message in %s", r.body);
        if (code)
            *code = strdup(json_string_value(json_object_get(e, "code")));
    } else if (code)
        *code = NULL;
    resp_free(&r);
    return st;
}

/* Events written by requests (batond's own server.* rows left out). */
static int
event_count(void)
{
    json_t *j = CALL(&srv, "GET", "/v1/events?limit=1000", NULL, 200), *e;
    size_t i;
    int n = 0;

    json_array_foreach(json_object_get(j, "events"), i, e)
        n += strncmp(json_string_value(json_object_get(e, "event")), "server.", 7) != 0;
    json_decref(j);
    return n;
}

/* ---- slow and surplus connections ---------------------------------------- */

/* A client that dribbles its headers one byte at a time, never finishing,
 * is closed at the header deadline (408) although it is never idle long
 * enough for the idle timeout. */
START_TEST(slow_headers_closed_at_deadline)
{
    static const char *const env[] = {"BATON_HEADER_TIMEOUT_MS=1500", NULL};
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char buf[1024];
    bool closed = false;
    int64_t t0;
    int fd;

    fresh(env);
    fd = connect_raw(srv.port);
    t0 = now_ms();
    for (size_t i = 0; i < sizeof req - 1 && now_ms() - t0 < 8000; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1)
            break;
        read_until_close(fd, buf, sizeof buf, 200, &closed);
        if (closed)
            break;
    }
    ck_assert_msg(closed, "still open after %lld ms of dribbled headers", (long long)(now_ms() - t0));
    ck_assert_int_lt(now_ms() - t0, 5000);
    close(fd);
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
}
END_TEST

/* The same for a body: headers complete, then one byte at a time. */
START_TEST(slow_body_closed_at_deadline)
{
    static const char *const env[] = {"BATON_BODY_TIMEOUT_MS=2000", NULL};
    static const char head[] = "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TEST_SECRET
                               "\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{";
    char buf[1024] = {0};
    bool closed = false;
    int64_t t0;
    int fd;

    fresh(env);
    fd = connect_raw(srv.port);
    t0 = now_ms();
    ck_assert_int_eq(write(fd, head, sizeof head - 1), (ssize_t)(sizeof head - 1));
    while (now_ms() - t0 < 8000 && !closed) {
        if (send(fd, " ", 1, MSG_NOSIGNAL) != 1)
            break;
        read_until_close(fd, buf, sizeof buf, 300, &closed);
    }
    ck_assert_msg(closed, "still open after %lld ms of a dribbled body", (long long)(now_ms() - t0));
    ck_assert_int_lt(now_ms() - t0, 6000);
    close(fd);
    ck_assert_int_eq(event_count(), 0);
}
END_TEST

/* As many dribbling clients as the connection cap do not keep /health
 * from being served for longer than the header deadline. */
START_TEST(slowloris_does_not_starve_others)
{
    static const char *const env[] = {"BATON_MAX_CONNECTIONS=16", "BATON_HEADER_TIMEOUT_MS=1500", NULL};
    int fds[16];
    int64_t t0;
    long st = 0;

    fresh(env);
    for (int i = 0; i < 16; i++) {
        fds[i] = connect_raw(srv.port);
        ck_assert_int_eq(write(fds[i], "GET /he", 7), 7);
    }
    t0 = now_ms();
    while (now_ms() - t0 < 8000) {
        for (int i = 0; i < 16; i++)
            (void)!send(fds[i], "a", 1, MSG_NOSIGNAL);     /* keep them "active" */
        st = call_status("GET", "/health", NULL, "", NULL);
        if (st == 200)
            break;
        ck_assert_int_eq(st, 503);      /* answered at once, not left waiting */
        usleep(200 * 1000);
    }
    ck_assert_int_eq(st, 200);
    ck_assert_int_lt(now_ms() - t0, 5000);
    for (int i = 0; i < 16; i++)
        close(fds[i]);
}
END_TEST

/* One address cannot hold more than its share of connections. */
START_TEST(per_address_cap)
{
    static const char *const env[] = {"BATON_MAX_CONNECTIONS_PER_ADDRESS=4", "BATON_LIMIT_LOOPBACK=1", NULL};
    static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    int fds[4], extra;
    char buf[1024];
    bool closed;
    json_t *m;

    fresh(env);
    for (int i = 0; i < 4; i++)
        fds[i] = connect_raw(srv.port);
    usleep(200 * 1000);
    extra = connect_raw(srv.port);
    ck_assert_int_eq(write(extra, get, sizeof get - 1), (ssize_t)(sizeof get - 1));
    read_until_close(extra, buf, sizeof buf, 3000, &closed);
    ck_assert_msg(strstr(buf, "HTTP/1.1 429"), "over the address cap: %s", buf);
    ck_assert_ptr_nonnull(strcasestr(buf, "Retry-After:"));
    ck_assert_ptr_nonnull(strstr(buf, "\"code\":\"rate_limited\""));
    ck_assert(closed);
    close(extra);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    usleep(200 * 1000);
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
    m = NULL;
    {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
        ck_assert_ptr_nonnull(strstr(r.body, "baton_http_connections_closed_total{reason=\"over_address_cap\"} 1"));
        resp_free(&r);
    }
    json_decref(m);
}
END_TEST

/* ---- URLs that are not text ------------------------------------------------ */

/* %00 no longer cuts a path or a query value: each is refused and changes
 * nothing. */
START_TEST(nul_in_url_refused)
{
    static const char *const env[] = {"TELEGRAM_WEBHOOK_SECRET=tg-secret", NULL};
    json_t *j;
    int before;

    fresh(env);
    json_decref(CALL(&srv, "PUT", "/v1/sessions/whatsapp/x/keys/creds", json_pack("{s:s}", "value", "orig"), 200));
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "agent", "payload"), 201));
    before = event_count();
    ck_assert_int_eq(call_status("PUT", "/v1/sessions/whatsapp/x/keys/creds%00junk", "{\"value\":\"evil\"}", NULL,
                                 NULL), 400);
    j = CALL(&srv, "GET", "/v1/sessions/whatsapp/x/keys/creds", NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "value")), "orig");
    json_decref(j);
    ck_assert_int_eq(call_status("GET", "/v1/jobs/1%00abc", NULL, NULL, NULL), 400);
    {
        struct resp r;
        ck_assert_int_eq(http_req_h(&srv, "POST", "/telegram/webhook/%00x",
                                    "{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":5},"
                                    "\"text\":\"hi\"}}", 71, "X-Telegram-Bot-Api-Secret-Token", "tg-secret", &r), 0);
        ck_assert_int_eq(r.status, 400);
        resp_free(&r);
    }
    ck_assert_int_eq(call_status("GET", "/v1/events?event=%00", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/jobs?queue=age%00nt", NULL, NULL, NULL), 400);
    ck_assert_int_eq(event_count(), before);
}
END_TEST

/* Invalid UTF-8 (and overlong forms, and malformed escapes) in a path or
 * query: 400 with SPEC's body, never 503 "out of memory" or an empty 404. */
START_TEST(bad_utf8_in_url_refused)
{
    char *code = NULL;
    char path[2400];
    int before;

    fresh(NULL);
    before = event_count();
    ck_assert_int_eq(call_status("POST", "/v1/conversations/%FF%FE/messages", "{\"text\":\"hi\"}", NULL, &code), 400);
    free(code);
    ck_assert_int_eq(call_status("GET", "/v1/jobs/%FF", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/jobs/%C0%AF", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/jobs/%ED%A0%80", NULL, NULL, NULL), 400);  /* a surrogate */
    ck_assert_int_eq(call_status("GET", "/v1/jobs/%G1", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events?jobId=%FF", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events?%FF=1", NULL, NULL, NULL), 400);
    /* a valid path long enough that the error text is cut inside a
     * character still answers with a JSON body */
    strcpy(path, "/v1/x");
    for (int i = 0; i < 300; i++)
        strcat(path, "%C3%A9");
    ck_assert_int_eq(call_status("GET", path, NULL, NULL, NULL), 404);
    ck_assert_int_eq(event_count(), before);
}
END_TEST

/* A filter batond cannot apply is a 400, never "no filter": on the list
 * and on the stream; field filters apply on the stream too. */
START_TEST(event_filters_never_dropped)
{
    char path[512], buf[8192];
    bool closed;
    int fd;

    fresh(NULL);
    json_decref(CALL(&srv, "POST", "/v1/events", json_pack("{s:s, s:s}", "event", "w.a", "jobId", "1"), 201));
    snprintf(path, sizeof path, "/v1/events?event=");
    for (int i = 0; i < 200; i++)
        strcat(path, "e");
    ck_assert_int_eq(call_status("GET", path, NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events/stream?event=a*b", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events?event=a%20b", NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events?event=w.a&event=w.b", NULL, NULL, NULL), 400);
    snprintf(path, sizeof path, "/v1/events/stream?event=");
    for (int i = 0; i < 200; i++)
        strcat(path, "e");
    ck_assert_int_eq(call_status("GET", path, NULL, NULL, NULL), 400);
    ck_assert_int_eq(call_status("GET", "/v1/events/stream?jobId=%FF", NULL, NULL, NULL), 400);

    /* the stream applies field filters */
    fd = connect_raw(srv.port);
    {
        static const char req[] = "GET /v1/events/stream?jobId=7 HTTP/1.1\r\nHost: x\r\n"
                                  "Authorization: Bearer " TEST_SECRET "\r\n\r\n";
        ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    }
    usleep(300 * 1000);
    json_decref(CALL(&srv, "POST", "/v1/events", json_pack("{s:s, s:s}", "event", "w.other", "jobId", "6"), 201));
    json_decref(CALL(&srv, "POST", "/v1/events", json_pack("{s:s, s:s}", "event", "w.mine", "jobId", "7"), 201));
    read_until_close(fd, buf, sizeof buf, 1500, &closed);
    close(fd);
    ck_assert_msg(strstr(buf, "w.mine"), "filtered stream: %s", buf);
    ck_assert_msg(!strstr(buf, "w.other"), "filtered stream let another job through: %s", buf);
}
END_TEST

/* Content-Length between 2^63 and 2^64-2 is refused at once (413), not read
 * until the idle timeout. */
START_TEST(huge_content_length_413)
{
    static const char *const lens[] = {"9223372036854775808", "18446744073709551614", "99999999999999999999"};
    char req[512], buf[2048];
    bool closed;

    fresh(NULL);
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        int fd = connect_raw(srv.port);
        int64_t t0 = now_ms();
        snprintf(req, sizeof req,
                 "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TEST_SECRET
                 "\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n{", lens[i]);
        ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        read_until_close(fd, buf, sizeof buf, 3000, &closed);
        ck_assert_msg(strstr(buf, "HTTP/1.1 413") || strstr(buf, "HTTP/1.1 400"), "Content-Length %s: '%s'",
                      lens[i], buf);
        ck_assert_int_lt(now_ms() - t0, 2500);
        close(fd);
    }
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
}
END_TEST

/* A Telegram update of an unknown kind is ignored with a reason that names
 * it; a name cut inside a character by the reason's buffer still gives a
 * JSON answer (found by fuzz_webhooks: 200 with an empty body). */
START_TEST(webhook_reason_cut_keeps_body)
{
    static const char *const env[] = {"TELEGRAM_WEBHOOK_SECRET=tg-secret", NULL};
    char body[1024] = "{\"update_id\":9,\"x";
    struct resp r;

    fresh(env);
    for (int i = 0; i < 60; i++)
        strcat(body, "\xc3\xa9");        /* é: the 60-byte cut falls inside one */
    strcat(body, "\":1}");
    ck_assert_int_eq(http_req_h(&srv, "POST", "/telegram/webhook", body, strlen(body),
                                "X-Telegram-Bot-Api-Secret-Token", "tg-secret", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(json_is_string(json_object_get(r.json, "ignored")), "answer: '%s'", r.body);
    resp_free(&r);
}
END_TEST

/* ---- logs and secrets ------------------------------------------------------ */

/* Secret-looking keys are dropped at any depth, from the row and the log
 * line; a numeric fencing token is not a secret and stays. */
START_TEST(secrets_scrubbed_at_any_depth)
{
    json_t *j, *e;
    char *dump;
    FILE *f;
    char line[8192];

    fresh(NULL);
    json_decref(CALL(&srv, "POST", "/v1/events",
                     json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:[{s:s}], s:s, s:i, s:s}", "event", "w.x",
                               "nested", "password", "pw-SECRET1", "note", "kept", "token", "tok-SECRET2",
                               "apiKey", "key-SECRET3", "list", "client_secret", "cs-SECRET4",
                               "X-Api-Key", "hdr-SECRET5", "leaseToken", 7, "botToken", "bt-SECRET6"),
                     201));
    j = CALL(&srv, "GET", "/v1/events?event=w.x", NULL, 200);
    e = json_array_get(json_object_get(j, "events"), 0);
    dump = json_dumps(e, 0);
    ck_assert_msg(!strstr(dump, "SECRET"), "stored: %s", dump);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "nested"), "note")), "kept");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "leaseToken")), 7);
    free(dump);
    json_decref(j);
    f = fopen(srv.log, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        ck_assert_msg(!strstr(line, "SECRET"), "logged: %s", line);
    fclose(f);
}
END_TEST

/* Whatever is thrown at it -- malformed HTTP, an SSE client that vanishes
 * -- every line batond prints is one JSON object (libmicrohttpd's own
 * messages included). */
START_TEST(every_log_line_is_json)
{
    static const char *const junk[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    char buf[2048], line[8192];
    bool closed;
    FILE *f;
    int lines = 0;

    fresh(NULL);
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        int fd = connect_raw(srv.port);
        ck_assert_int_eq(write(fd, junk[i], strlen(junk[i])), (ssize_t)strlen(junk[i]));
        read_until_close(fd, buf, sizeof buf, 1000, &closed);
        close(fd);
    }
    /* an SSE client that leaves with unread events pending */
    for (int k = 0; k < 3; k++) {
        int fd = connect_raw(srv.port);
        static const char req[] = "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n"
                                  "Authorization: Bearer " TEST_SECRET "\r\nLast-Event-ID: 0\r\n\r\n";
        struct linger lg = {1, 0};
        ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
        usleep(100 * 1000);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);      /* reset */
        for (int i = 0; i < 30; i++)
            json_decref(CALL(&srv, "POST", "/v1/events", json_pack("{s:s, s:s}", "event", "w.fill", "pad",
                                                                 "................................................"),
                             201));
    }
    ck_assert_int_eq(server_stop(&srv), 0);
    for (int k = 0; k < 2; k++) {
        char path[320];
        /* stdout, and stderr where libmicrohttpd writes by default */
        snprintf(path, sizeof path, "%s/%s", srv.dir, k ? "batond.err" : "batond.log");
        f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof line, f)) {
            json_error_t e;
            json_t *l = json_loads(line, 0, &e);
            ck_assert_msg(json_is_object(l), "not a JSON line in %s: %s", path, line);
            json_decref(l);
            lines++;
        }
        fclose(f);
    }
    ck_assert_int_gt(lines, 3);
}
END_TEST

/* ---- one batond per port and per database ---------------------------------- */

START_TEST(second_batond_on_same_port_refused)
{
    struct server b = {0};
    char listen[64], err[512];
    const char *env[2] = {listen, NULL};
    int rc;

    fresh(NULL);
    snprintf(listen, sizeof listen, "BATON_LISTEN=127.0.0.1:%d", srv.port);
    rc = server_try_start(&b, env, err, sizeof err);
    server_cleanup(&b);
    ck_assert_msg(rc == EX_INUSE, "second batond on port %d: exit %d (%s)", srv.port, rc, err);
    ck_assert_ptr_nonnull(strstr(err, "in use"));
    /* the first one still serves every request */
    for (int i = 0; i < 10; i++)
        json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "q", "payload"), 201));
    {
        json_t *j = CALL(&srv, "GET", "/v1/jobs?queue=q", NULL, 200);
        ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 10);
        json_decref(j);
    }
}
END_TEST

START_TEST(second_batond_on_same_db_refused)
{
    struct server b = {0};
    char err[512], log[300];
    int rc;

    fresh(NULL);
    snprintf(b.dir, sizeof b.dir, "%s", srv.dir);
    snprintf(log, sizeof log, "%s", srv.log);
    rc = server_try_start(&b, NULL, err, sizeof err);
    b.dir[0] = 0;               /* the directory is srv's */
    server_kill(&b);
    ck_assert_msg(rc == EX_INUSE, "second batond on one database: exit %d (%s)", rc, err);
    ck_assert_ptr_nonnull(strstr(err, "in use by another batond"));
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
    /* after the first stops, the database is free again */
    ck_assert_int_eq(server_stop(&srv), 0);
    server_start(&srv, NULL);
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
}
END_TEST

/* ---- limits: brute force and floods ---------------------------------------- */

START_TEST(auth_failures_limited)
{
    static const char *const env[] = {"BATON_AUTH_FAILURE_BURST=3", "BATON_AUTH_FAILURES_PER_MIN=6", "BATON_LIMIT_LOOPBACK=1",
                                      "TELEGRAM_WEBHOOK_SECRET=tg-secret", NULL};
    struct resp r;
    char *code = NULL;

    fresh(env);
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, "Bearer wrong-1", NULL), 401);
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, "Bearer wrong-2", NULL), 401);
    /* a wrong webhook secret counts too */
    ck_assert_int_eq(http_req_h(&srv, "POST", "/telegram/webhook", "{}", 2, "X-Telegram-Bot-Api-Secret-Token",
                                "guess", &r), 0);
    ck_assert_int_eq(r.status, 401);
    resp_free(&r);
    /* the burst is spent: further attempts are refused before the secret
     * is even compared, the right one included, with Retry-After */
    ck_assert_int_eq(http_req(&srv, "GET", "/v1/jobs", NULL, 0, "Bearer wrong-4", NULL, &r), 0);
    ck_assert_int_eq(r.status, 429);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")), "rate_limited");
    resp_free(&r);
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, NULL, &code), 429);
    free(code);
    /* unauthenticated routes are not affected */
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
    /* the bucket refills: 6 a minute is one every 10 s */
    sleep(11);
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, NULL, NULL), 200);
    ck_assert_int_eq(http_req(&srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_msg(strstr(r.body, "baton_rate_limited_total{limit=\"auth_failures\"} 2"), "%s", r.body);
    resp_free(&r);
}
END_TEST

START_TEST(webhook_flood_limited)
{
    static const char *const env[] = {"BATON_WEBHOOK_RATE=5", "BATON_LIMIT_LOOPBACK=1", "TELEGRAM_WEBHOOK_SECRET=tg-secret", NULL};
    int ok = 0, limited = 0;

    fresh(env);
    for (int i = 0; i < 40; i++) {
        struct resp r;
        char body[256];
        snprintf(body, sizeof body, "{\"update_id\":%d,\"message\":{\"message_id\":%d,\"chat\":{\"id\":5},"
                                    "\"text\":\"hi\"}}", i, i);
        ck_assert_int_eq(http_req_h(&srv, "POST", "/telegram/webhook", body, strlen(body),
                                    "X-Telegram-Bot-Api-Secret-Token", "tg-secret", &r), 0);
        if (r.status == 429) {
            limited++;
            ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
                             "rate_limited");
        } else {
            ck_assert_int_eq(r.status, 200);
            ok++;
        }
        resp_free(&r);
    }
    ck_assert_int_ge(ok, 10);       /* the burst (2 x 5) */
    ck_assert_int_lt(ok, 30);
    ck_assert_int_gt(limited, 10);
    /* the API is not slowed by it */
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, NULL, NULL), 200);
}
END_TEST

/* By default loopback clients (workers on batond's own host) are exempt:
 * one worker with a stale secret does not lock the others out. */
START_TEST(loopback_exempt_by_default)
{
    static const char *const env[] = {"BATON_AUTH_FAILURE_BURST=2", NULL};

    fresh(env);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, "Bearer stale", NULL), 401);
    ck_assert_int_eq(call_status("GET", "/v1/jobs", NULL, NULL, NULL), 200);
}
END_TEST

/* One raw GET with a given bearer and X-Forwarded-For; the status. */
static int
xff_get(const char *bearer, const char *xff)
{
    char req[512], buf[2048];
    bool closed;
    int fd = connect_raw(srv.port);

    snprintf(req, sizeof req, "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "X-Forwarded-For: %s\r\nConnection: close\r\n\r\n", bearer, xff);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    read_until_close(fd, buf, sizeof buf, 3000, &closed);
    close(fd);
    return atoi(buf + 9);
}

/* Behind a proxy batond trusts (BATON_TRUST_PROXY), the limits key on the
 * client the proxy names: every client arrives from loopback, and one
 * guesser must not lock out the others nor escape the limit. */
START_TEST(trusted_proxy_client_is_limited)
{
    static const char *const env[] = {"BATON_TRUST_PROXY=1", "BATON_AUTH_FAILURE_BURST=2", NULL};

    fresh(env);
    ck_assert_int_eq(xff_get("guess-1", "203.0.113.5"), 401);
    ck_assert_int_eq(xff_get("guess-2", "203.0.113.5"), 401);
    ck_assert_int_eq(xff_get("guess-3", "203.0.113.5"), 429);
    ck_assert_int_eq(xff_get(TEST_SECRET, "203.0.113.5, 10.0.0.1"), 429);
    ck_assert_int_eq(xff_get(TEST_SECRET, "203.0.113.6"), 200);   /* another client */
}
END_TEST

/* ---- shutdown -------------------------------------------------------------- */

/* While batond drains on SIGTERM a lease holder can still release (so a
 * standby takes over at once); new work is refused. */
START_TEST(lease_release_during_shutdown_grace)
{
    static const char *const env[] = {"BATON_SHUTDOWN_GRACE_MS=5000", NULL};
    char body[1024];
    json_t *j;
    int keep, keep2, slow;
    int64_t token;
    static const char partial[] = "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TEST_SECRET
                                  "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

    fresh(env);
    j = CALL(&srv, "POST", "/v1/leases/whatsapp/acc/acquire", json_pack("{s:s, s:i}", "ownerId", "w1", "ttlMs", 60000),
             200);
    token = json_integer_value(json_object_get(json_object_get(j, "lease"), "token"));
    json_decref(j);
    keep = connect_raw(srv.port);
    ck_assert_int_eq(raw_call(keep, "GET", "/v1/leases/whatsapp/acc", NULL, body, sizeof body), 200);
    keep2 = connect_raw(srv.port);
    ck_assert_int_eq(raw_call(keep2, "GET", "/v1/queues", NULL, body, sizeof body), 200);
    slow = connect_raw(srv.port);       /* an upload in progress keeps the grace going */
    ck_assert_int_eq(write(slow, partial, sizeof partial - 1), (ssize_t)(sizeof partial - 1));
    usleep(200 * 1000);
    kill(srv.pid, SIGTERM);
    usleep(300 * 1000);
    snprintf(body, sizeof body, "{\"ownerId\":\"w1\",\"token\":%lld}", (long long)token);
    ck_assert_int_eq(raw_call(keep, "POST", "/v1/leases/whatsapp/acc/release", body, body, sizeof body), 200);
    ck_assert_int_eq(raw_call(keep2, "POST", "/v1/jobs", "{\"queue\":\"q\",\"payload\":{}}", body, sizeof body), 503);
    close(keep2);
    close(slow);
    close(keep);
    ck_assert_int_eq(server_stop(&srv), 0);
    server_start(&srv, NULL);
    j = CALL(&srv, "GET", "/v1/leases/whatsapp/acc", NULL, 200);
    ck_assert_msg(!json_is_string(json_object_get(j, "ownerId")), "lease still held after release");
    json_decref(j);
}
END_TEST

/* ---- every route with URLs that are not text ------------------------------- */

/* Each route of the table, each path parameter replaced by a hostile value
 * and a hostile query value: a 4xx with SPEC's error body, nothing
 * recorded, batond alive. A route added later is covered too. */
START_TEST(url_matrix_every_route)
{
    static const char *const env[] = {"TELEGRAM_WEBHOOK_SECRET=tg-secret", "WHATSAPP_VERIFY_TOKEN=wa-verify",
                                      "WHATSAPP_APP_SECRET=wa-secret", NULL};
    static const char *const values[] = {"%00", "1%00x", "%FF", "%C0%AF", "%E0%80%80", "%G0", "a%00b", NULL};
    static const char *const queries[] = {"?x=%00", "?x=%FF", "?%FF=1", "?x=%C0%AF", "?limit=%00", "?x=1&x=2", NULL};
    char *longv = malloc(5001);
    char path[8192];
    int before;

    memset(longv, 'a', 5000);
    longv[5000] = 0;
    fresh(env);
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "agent", "payload"), 201));
    before = event_count();
    for (const struct route *rt = routes; rt->method; rt++) {
        for (int v = -2; values[v < 0 ? 0 : v]; v++) {
            const char *val = v == -2 ? longv : v == -1 ? "a%2Fb" : values[v];
            const char *p = rt->pattern;
            size_t len = 0;
            struct resp r;
            char *code;
            bool has_param = strchr(p, '{') != NULL;

            if (!has_param && v > -2)
                continue;
            while (*p && len < sizeof path - 5100) {
                if (*p == '{') {
                    len += (size_t)snprintf(path + len, sizeof path - len, "%s", has_param ? val : "");
                    p = strchr(p, '}') + 1;
                } else
                    path[len++] = *p++;
            }
            path[len] = 0;
            if (!has_param) {
                /* no parameters: a hostile query instead */
                for (int q = 0; queries[q]; q++) {
                    char qp[512];
                    snprintf(qp, sizeof qp, "%s%s", rt->pattern, queries[q]);
                    ck_assert_int_eq(http_req(&srv, rt->method, qp, NULL, 0, NULL, NULL, &r), 0);
                    code = (char *)json_string_value(json_object_get(json_object_get(r.json, "error"), "code"));
                    ck_assert_msg(r.status == 400 && code, "%s %s: %ld %s", rt->method, qp, r.status, r.body);
                    resp_free(&r);
                }
                continue;
            }
            ck_assert_int_eq(http_req(&srv, rt->method, path, "{}", 2, NULL, NULL, &r), 0);
            code = (char *)json_string_value(json_object_get(json_object_get(r.json, "error"), "code"));
            if (v == -1 && (strstr(rt->pattern, "{key}") || strstr(rt->pattern, "/conversations/")) &&
                r.status < 400) {
                /* session keys and conversation ids are free text and may
                 * hold '/': %2F reaches them whole (it used to split them) */
                resp_free(&r);
                continue;
            }
            if (r.status == 560 && !strncmp(rt->pattern, "/api/", 5))
                code = "convex";    /* Convex's own error envelope, as for bad bodies */
            ck_assert_msg(((r.status >= 400 && r.status < 500) || r.status == 560) && code, "%s %s: %ld %s",
                          rt->method,
                          len > 200 ? rt->pattern : path, r.status, r.body);
            resp_free(&r);
        }
    }
    free(longv);
    ck_assert_int_eq(event_count(), before);
    ck_assert_int_eq(call_status("GET", "/health", NULL, "", NULL), 200);
}
END_TEST

Suite *
suite_hardening(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("hardening");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, slow_headers_closed_at_deadline);
    tcase_add_test(tc, slow_body_closed_at_deadline);
    tcase_add_test(tc, slowloris_does_not_starve_others);
    tcase_add_test(tc, per_address_cap);
    tcase_add_test(tc, nul_in_url_refused);
    tcase_add_test(tc, bad_utf8_in_url_refused);
    tcase_add_test(tc, event_filters_never_dropped);
    tcase_add_test(tc, huge_content_length_413);
    tcase_add_test(tc, webhook_reason_cut_keeps_body);
    tcase_add_test(tc, secrets_scrubbed_at_any_depth);
    tcase_add_test(tc, every_log_line_is_json);
    tcase_add_test(tc, second_batond_on_same_port_refused);
    tcase_add_test(tc, second_batond_on_same_db_refused);
    tcase_add_test(tc, auth_failures_limited);
    tcase_add_test(tc, webhook_flood_limited);
    tcase_add_test(tc, loopback_exempt_by_default);
    tcase_add_test(tc, trusted_proxy_client_is_limited);
    tcase_add_test(tc, lease_release_during_shutdown_grace);
    tcase_add_test(tc, url_matrix_every_route);
    suite_add_tcase(s, tc);
    return s;
}
