/* check_http.c -- the real batond over HTTP: health, auth, routing, body
 * limits and malformed input, start-up refusals, migrations, SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <curl/curl.h>

#include "batond.h"
#include "harness.h"

static struct server srv;

static void
up(void)
{
    memset(&srv, 0, sizeof srv);
    server_start(&srv, NULL);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static long
status_of(const char *method, const char *path, const char *body, const char *auth)
{
    struct resp r;
    long st;

    ck_assert_int_eq(http_req(&srv, method, path, body, body ? strlen(body) : 0, auth, NULL, &r), 0);
    st = r.status;
    if (st >= 400) {
        /* every error carries SPEC's shape */
        json_t *e = json_object_get(r.json, "error");
        ck_assert_msg(json_is_string(json_object_get(e, "code")), "no error.code in %s", r.body);
        ck_assert_msg(json_is_string(json_object_get(e, "message")), "no error.message in %s", r.body);
    }
    resp_free(&r);
    return st;
}

/* Event rows written by requests: batond's own server.* rows (its start,
 * its restarts) are not counted. */
static int
event_count(void)
{
    json_t *j = CALL(&srv, "GET", "/v1/events?limit=1000", NULL, 200), *e;
    size_t i;
    int n = 0;

    json_array_foreach(json_object_get(j, "events"), i, e)
        if (strncmp(json_string_value(json_object_get(e, "event")), "server.", 7))
            n++;
    json_decref(j);
    return n;
}

START_TEST(health_is_open)
{
    json_t *j = CALL(&srv, "GET", "/health", NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    ck_assert_str_eq(json_string_value(json_object_get(j, "db")), "ok");
    ck_assert(json_is_string(json_object_get(j, "version")));
    json_decref(j);
    ck_assert_int_eq(status_of("GET", "/health", NULL, ""), 200);
}
END_TEST

START_TEST(auth_required)
{
    ck_assert_int_eq(status_of("GET", "/v1/events", NULL, ""), 401);
    ck_assert_int_eq(status_of("GET", "/v1/events", NULL, "Bearer wrong"), 401);
    ck_assert_int_eq(status_of("GET", "/v1/events", NULL, "Bearer " TEST_SECRET "x"), 401);
    ck_assert_int_eq(status_of("GET", "/v1/events", NULL, "Basic " TEST_SECRET), 401);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"a.b\"}", "Bearer nope"), 401);
    ck_assert_int_eq(status_of("GET", "/v1/events", NULL, NULL), 200);
    ck_assert_int_eq(event_count(), 0);     /* the refused POST wrote nothing */
}
END_TEST

START_TEST(unknown_route_and_method)
{
    ck_assert_int_eq(status_of("GET", "/v1/nothing-here", NULL, NULL), 404);
    ck_assert_int_eq(status_of("GET", "/nothing-here", NULL, NULL), 404);
    ck_assert_int_eq(status_of("GET", "/", NULL, NULL), 302);     /* to the console */
    ck_assert_int_eq(status_of("DELETE", "/v1/events", NULL, NULL), 405);
    ck_assert_int_eq(status_of("POST", "/health", "{}", NULL), 405);
}
END_TEST

START_TEST(malformed_bodies_rejected)
{
    static const char *const bad[] = {
        "{\"event\":\"a.b\"",               /* truncated */
        "{\"event\":\"a\xff\xfe.b\"}",      /* invalid UTF-8 */
        "[{\"event\":\"a.b\"}]",            /* array, not object */
        "\"a.b\"",                          /* string */
        "{\"event\":42}",                   /* wrong type */
        "{\"event\":\"\"}",                 /* empty */
        "{\"event\":\"a.b\",\"level\":3}",  /* wrong type of optional */
        "{\"event\":\"a.b\",\"level\":\"loud\"}",
        "{\"event\":\"a.b\",\"event\":\"c.d\"}", /* duplicate key */
        "{}",                               /* missing */
        "nul",
    };
    int before = event_count();

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(status_of("POST", "/v1/events", bad[i], NULL) == 400, "body %zu not refused", i);
    ck_assert_int_eq(event_count(), before);
    {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/events", "{\"event\":7}", 11, NULL, NULL, &r), 0);
        ck_assert_ptr_nonnull(strstr(r.body, "event"));     /* names the field */
        resp_free(&r);
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/events", "<a/>", 4, NULL, "application/xml", &r), 0);
        ck_assert_int_eq(r.status, 415);
        resp_free(&r);
    }
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"good.one\",\"n\":1}", NULL), 201);
    ck_assert_int_eq(event_count(), before + 1);
}
END_TEST

START_TEST(oversized_body_413_and_keeps_serving)
{
    size_t n = 2u << 20;
    char *big = malloc(n + 1);
    struct resp r;

    memset(big, ' ', n);
    memcpy(big, "{\"event\":\"big.one\",\"x\":\"", 24);
    big[n - 2] = '"';
    big[n - 1] = '}';
    big[n] = 0;
    ck_assert_int_eq(http_req(&srv, "POST", "/v1/events", big, n, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
                     "payload_too_large");
    resp_free(&r);
    free(big);
    ck_assert_int_eq(status_of("GET", "/health", NULL, ""), 200);
    ck_assert_int_eq(event_count(), 0);
}
END_TEST

START_TEST(events_recorded_and_listed)
{
    json_t *j, *e;

    ck_assert_int_eq(status_of("POST", "/v1/events",
                               "{\"event\":\"whatsapp.outbound.loop.error\",\"level\":\"error\","
                               "\"accountId\":\"default\",\"secret\":\"hunter2\"}", NULL), 201);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"whatsapp.socket.reconnect\"}", NULL), 201);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"telegram.other\"}", NULL), 201);
    j = CALL(&srv, "GET", "/v1/events?event=whatsapp.*", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 2);
    e = json_array_get(json_object_get(j, "events"), 1);     /* newest first */
    ck_assert_str_eq(json_string_value(json_object_get(e, "event")), "whatsapp.outbound.loop.error");
    ck_assert_str_eq(json_string_value(json_object_get(e, "accountId")), "default");
    ck_assert_ptr_null(json_object_get(e, "secret"));
    json_decref(j);
    ck_assert_int_eq(server_log_count(&srv, "hunter2"), 0);
    ck_assert_int_eq(server_log_count(&srv, "whatsapp.outbound.loop.error"), 1);
    ck_assert_int_eq(status_of("GET", "/v1/events?limit=abc", NULL, NULL), 400);
    /* field filters */
    j = CALL(&srv, "GET", "/v1/events?event=whatsapp.*&accountId=default", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    j = CALL(&srv, "GET", "/v1/events?accountId=other", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"n.x\",\"attempts\":3}", NULL), 201);
    j = CALL(&srv, "GET", "/v1/events?attempts=3", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    ck_assert_int_eq(status_of("GET", "/v1/events?a%27b=1", NULL, NULL), 400);
}
END_TEST

START_TEST(migrations_once_across_restarts)
{
    char path[300], got[1024], want[1024];
    int n = db_known_count();

    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"keep.me\"}", NULL), 201);
    snprintf(path, sizeof path, "%s/baton.db", srv.dir);
    /* a fresh database: every migration recorded, nothing adopted */
    db_recorded(path, got, sizeof got);
    db_known(-1, want, sizeof want);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(server_log_count(&srv, "db.migrations_adopted"), 0);
    ck_assert_int_eq(db_int(path, "PRAGMA user_version"), n);
    /* mark the rows: a restart must not write them again (SQL: the test is
     * about schema_migrations itself, which no route writes) */
    ck_assert_int_eq(server_stop(&srv), 0);
    db_exec(path, "UPDATE schema_migrations SET applied_at = 1");
    server_start(&srv, NULL);
    server_restart(&srv);
    ck_assert_int_eq(db_int(path, "SELECT count(*) FROM schema_migrations WHERE applied_at = 1"), n);
    db_recorded(path, got, sizeof got);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(server_log_count(&srv, "db.migrations_adopted"), 0);
    ck_assert_int_eq(db_int(path, "PRAGMA user_version"), n);
    ck_assert_int_eq(event_count(), 1);     /* data survived, nothing re-created */
}
END_TEST

/* Upgrade in place of a database made before schema_migrations existed:
 * the first k migrations applied and counted in user_version, as batond
 * did, holding a job, a lease at token 5 and a session entry. batond
 * starts on it, keeps every row, records every migration (adopting 1..k
 * once) and a second start adopts nothing. The rows are written with SQL on
 * purpose: they must be in the old file before any batond of today opened
 * it, so no route can put them there. */
static void
upgrade_counted(int k)
{
    char path[300], got[1024], want[1024], sql[1200];
    long long now = (long long)now_ms();
    json_t *j, *job;

    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    strcpy(srv.dir, "/tmp/baton-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(srv.dir));
    snprintf(path, sizeof path, "%s/baton.db", srv.dir);
    db_make_counted(path, k);
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs(queue, status, payload, run_at, created_at, updated_at)"
             " VALUES('agent', 'pending', '{\"text\":\"kept\"}', %lld, %lld, %lld);"
             "INSERT INTO leases(channel, account_id, owner_id, token, acquired_at, renewed_at, expires_at,"
             " ttl_ms, transitions) VALUES('whatsapp', 'default', 'wa-1', 5, %lld, %lld, %lld, 600000, 5);"
             "INSERT INTO sessions(channel, account_id, key, enc, value, updated_at)"
             " VALUES('whatsapp', 'default', 'creds', 0, '{\"me\":\"kept\"}', %lld);",
             now, now, now, now, now, now + 600000, now);
    db_exec(path, sql);
    server_start(&srv, NULL);

    ck_assert_int_eq(server_log_count(&srv, "\"event\":\"db.migrations_adopted\""), 1);
    db_recorded(path, got, sizeof got);
    db_known(-1, want, sizeof want);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(db_int(path, "PRAGMA user_version"), db_known_count());

    j = CALL(&srv, "GET", "/v1/jobs/1", NULL, 200);
    job = json_object_get(j, "job") ? json_object_get(j, "job") : j;
    ck_assert_str_eq(json_string_value(json_object_get(job, "status")), "pending");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "payload"), "text")), "kept");
    json_decref(j);
    j = CALL(&srv, "GET", "/v1/leases/whatsapp/default", NULL, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "token")), 5);
    ck_assert_str_eq(json_string_value(json_object_get(j, "ownerId")), "wa-1");
    ck_assert(json_is_true(json_object_get(j, "held")));
    json_decref(j);
    j = CALL(&srv, "GET", "/v1/sessions/whatsapp/default/keys/creds", NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "value"), "me")), "kept");
    json_decref(j);
    /* the fencing token goes on growing from 5 */
    json_decref(CALL(&srv, "POST", "/v1/leases/whatsapp/default/force-release", json_object(), 200));
    j = CALL(&srv, "POST", "/v1/leases/whatsapp/default/acquire",
             json_pack("{s:s, s:i}", "ownerId", "wa-2", "ttlMs", 60000), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "lease"), "token")), 6);
    json_decref(j);

    server_restart(&srv);
    ck_assert_int_eq(server_log_count(&srv, "db.migrations_adopted"), 0);
    db_recorded(path, got, sizeof got);
    ck_assert_str_eq(got, want);
    j = CALL(&srv, "GET", "/v1/leases/whatsapp/default", NULL, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "token")), 6);
    json_decref(j);
}

/* a database of today's release: every migration counted */
START_TEST(upgrade_in_place_from_counted_schema)
{
    upgrade_counted(db_known_count());
}
END_TEST

/* one migration behind: adopted, then the last one applied over the rows */
START_TEST(upgrade_in_place_one_migration_behind)
{
    upgrade_counted(db_known_count() - 1);
}
END_TEST

/* Lines in batond's stderr. */
static int
err_lines(void)
{
    char p[300], line[1024];
    int c = 0;
    FILE *f;

    snprintf(p, sizeof p, "%s/batond.err", srv.dir);
    f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        c++;
    fclose(f);
    return c;
}

/* A database with a migration newer than this batond (a newer batond ran
 * on it): refused at start with exit 78 and one line naming it, and left
 * unchanged; the same for a count beyond ours from before the table. (The
 * newer migration row is SQL: that is what a newer batond leaves behind.) */
START_TEST(newer_schema_refused_78)
{
    char path[300], sql[200], err[512];
    int n = db_known_count();
    long long events;

    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"keep.me\"}", NULL), 201);
    snprintf(path, sizeof path, "%s/baton.db", srv.dir);
    ck_assert_int_eq(server_stop(&srv), 0);
    snprintf(sql, sizeof sql, "INSERT INTO schema_migrations VALUES(%d, '%03d_future.sql', 1)", n + 1, n + 1);
    db_exec(path, sql);
    events = db_int(path, "SELECT count(*) FROM events");

    ck_assert_int_eq(server_try_start(&srv, NULL, err, sizeof err), 78);
    ck_assert_msg(strstr(err, "_future.sql") && strstr(err, "newer"), "%s", err);
    ck_assert_int_eq(err_lines(), 1);
    ck_assert_int_eq(db_int(path, "SELECT count(*) FROM events"), events);
    ck_assert_int_eq(db_int(path, "SELECT count(*) FROM schema_migrations"), n + 1);
    ck_assert_int_eq(db_int(path, "PRAGMA user_version"), n);

    /* without that row it is ours again */
    snprintf(sql, sizeof sql, "DELETE FROM schema_migrations WHERE version = %d", n + 1);
    db_exec(path, sql);
    server_start(&srv, NULL);
    ck_assert_int_eq(event_count(), 1);

    /* from before the table: user_version beyond our migrations */
    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    strcpy(srv.dir, "/tmp/baton-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(srv.dir));
    snprintf(path, sizeof path, "%s/baton.db", srv.dir);
    db_make_counted(path, n);
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", n + 1);
    db_exec(path, sql);
    ck_assert_int_eq(server_try_start(&srv, NULL, err, sizeof err), 78);
    ck_assert_msg(strstr(err, "newer"), "%s", err);
    ck_assert_int_eq(err_lines(), 1);
    db_recorded(path, err, sizeof err);
    ck_assert_str_eq(err, "(no table)");
    ck_assert_int_eq(db_int(path, "PRAGMA user_version"), n + 1);
}
END_TEST

START_TEST(sigterm_exits_zero)
{
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"a.b\"}", NULL), 201);
    ck_assert_int_eq(server_stop(&srv), 0);
    ck_assert_int_eq(server_log_count(&srv, "server.stopped"), 1);
}
END_TEST

START_TEST(kill9_keeps_acknowledged_writes)
{
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"durable.one\"}", NULL), 201);
    server_kill(&srv);
    server_start(&srv, NULL);
    ck_assert_int_eq(event_count(), 20);
}
END_TEST

static int
connect_raw(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* A client that sends half a request and stalls is cut off after the idle
 * timeout, and does not stop anyone else being served meanwhile. */
START_TEST(slow_client_cut_off)
{
    static const char *const env[] = {"BATON_IDLE_TIMEOUT_MS=1000", NULL};
    int fds[20];
    char b;
    struct timeval tv = {10, 0};

    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, env);
    for (int i = 0; i < 20; i++) {
        fds[i] = connect_raw(srv.port);
        ck_assert_int_eq(write(fds[i], "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Le", 46), 46);
    }
    ck_assert_int_eq(status_of("GET", "/health", NULL, ""), 200);
    for (int i = 0; i < 20; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ck_assert_int_eq(recv(fds[i], &b, 1, 0), 0);   /* closed by the server */
        close(fds[i]);
    }
    ck_assert_int_eq(status_of("GET", "/health", NULL, ""), 200);
    ck_assert_int_eq(event_count(), 0);
}
END_TEST

/* Beyond BATON_MAX_CONNECTIONS a new connection is answered at once with
 * 503 and closed, instead of waiting unanswered in the kernel's backlog;
 * once connections close, new ones are served again. */
START_TEST(connection_cap)
{
    static const char *const env[] = {"BATON_MAX_CONNECTIONS=8", NULL};
    static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fds[8], extra;
    char buf[512] = {0};
    struct timeval tv = {5, 0};
    int64_t t0;

    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, env);
    for (int i = 0; i < 8; i++)
        fds[i] = connect_raw(srv.port);
    usleep(300 * 1000);
    extra = connect_raw(srv.port);
    t0 = now_ms();
    ck_assert_int_eq(write(extra, get, sizeof get - 1), (ssize_t)(sizeof get - 1));
    setsockopt(extra, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_gt(recv(extra, buf, sizeof buf - 1, MSG_WAITALL), 12);
    ck_assert_msg(strstr(buf, "HTTP/1.1 503"), "over the cap: %s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "\"code\":\"unavailable\""));
    ck_assert_int_lt(now_ms() - t0, 3000);
    close(extra);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    usleep(300 * 1000);
    ck_assert_int_eq(status_of("GET", "/health", NULL, ""), 200);
}
END_TEST

/* ---- the SSE tail ------------------------------------------------------------ */

struct tail {
    struct server *s;
    const char *path, *last_id;
    char buf[8192];
    size_t len;
    const char *until;      /* stop once this text arrived */
};

static size_t
tail_collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct tail *t = arg;
    size_t n = size * nmemb;

    if (t->len + n >= sizeof t->buf)
        return 0;
    memcpy(t->buf + t->len, data, n);
    t->len += n;
    t->buf[t->len] = 0;
    return strstr(t->buf, t->until) ? 0 : n;    /* 0 ends the transfer */
}

static void *
tail_thread(void *arg)
{
    struct tail *t = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TEST_SECRET);
    char url[256], hdr[64];

    if (t->last_id) {
        snprintf(hdr, sizeof hdr, "Last-Event-ID: %s", t->last_id);
        h = curl_slist_append(h, hdr);
    }
    snprintf(url, sizeof url, "%s%s", t->s->url, t->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tail_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(event_stream_tails_and_resumes)
{
    struct tail t = {&srv, "/v1/events/stream?event=job.*", NULL, {0}, 0, "job.three"};
    pthread_t th;

    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"job.before\"}", NULL), 201);
    pthread_create(&th, NULL, tail_thread, &t);
    usleep(300 * 1000);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"job.one\"}", NULL), 201);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"other.two\"}", NULL), 201);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"job.three\"}", NULL), 201);
    pthread_join(th, NULL);
    ck_assert_ptr_nonnull(strstr(t.buf, "event: job.one\n"));
    ck_assert_ptr_nonnull(strstr(t.buf, "event: job.three\n"));
    ck_assert_ptr_null(strstr(t.buf, "job.before"));    /* a new tail starts now */
    ck_assert_ptr_null(strstr(t.buf, "other.two"));     /* filtered */
    /* ids: 1 server.started, 2 job.before, 3 job.one */
    ck_assert_ptr_nonnull(strstr(t.buf, "id: 3\n"));
    /* resuming after id 3 replays what came since, from the table */
    t = (struct tail){&srv, "/v1/events/stream", "3", {0}, 0, "job.three"};
    tail_thread(&t);
    ck_assert_ptr_null(strstr(t.buf, "job.one"));
    ck_assert_ptr_nonnull(strstr(t.buf, "other.two"));
    ck_assert_ptr_nonnull(strstr(t.buf, "job.three"));
}
END_TEST

START_TEST(sigterm_ends_open_streams)
{
    struct tail t = {&srv, "/v1/events/stream", NULL, {0}, 0, "never-arrives"};
    pthread_t th;

    pthread_create(&th, NULL, tail_thread, &t);
    usleep(300 * 1000);
    ck_assert_int_eq(server_stop(&srv), 0);
    pthread_join(th, NULL);
    ck_assert_ptr_nonnull(strstr(t.buf, ": ping"));
}
END_TEST

START_TEST(metrics_scrape)
{
    struct resp r;

    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":\"m.one\"}", NULL), 201);
    ck_assert_int_eq(status_of("POST", "/v1/events", "{\"event\":5}", NULL), 400);
    ck_assert_int_eq(status_of("GET", "/metrics", NULL, ""), 401);
    ck_assert_int_eq(http_req(&srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE baton_http_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_requests_total{route=\"/v1/events\",method=\"POST\",status=\"201\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_requests_total{route=\"/v1/events\",method=\"POST\",status=\"400\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_request_duration_ms_bucket{route=\"/v1/events\",method=\"POST\",status=\"201\",le=\"+Inf\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_events_total{event=\"m.one\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE baton_db_bytes gauge\nbaton_db_bytes "));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_wal_bytes "));
    resp_free(&r);
}
END_TEST

/* Requests counted by many threads at once: none is lost, and each
 * series' histogram adds up to its count. */
static void *
metrics_load(void *arg)
{
    struct resp r;

    (void)arg;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(http_req(&srv, "GET", "/v1/jobs/999999", NULL, 0, NULL, NULL, &r), 0);
        ck_assert_int_eq(r.status, 404);
        resp_free(&r);
        ck_assert_int_eq(http_req(&srv, i % 2 ? "GET" : "DELETE", "/no/such/route", NULL, 0, NULL, NULL, &r), 0);
        resp_free(&r);
    }
    return NULL;
}

START_TEST(metrics_count_every_request_under_concurrency)
{
    pthread_t th[8];
    struct resp r;

    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, metrics_load, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(http_req(&srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\","
                                         "status=\"404\"} 800\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_request_duration_ms_bucket{route=\"/v1/jobs/{id}\","
                                         "method=\"GET\",status=\"404\",le=\"+Inf\"} 800\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_request_duration_ms_count{route=\"/v1/jobs/{id}\","
                                         "method=\"GET\",status=\"404\"} 800\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_requests_total{route=\"unmatched\",method=\"GET\","
                                         "status=\"404\"} 400\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "baton_http_requests_total{route=\"unmatched\",method=\"DELETE\","
                                         "status=\"404\"} 400\n"));
    resp_free(&r);
}
END_TEST

/* Every writing route of the table, with bodies that are not JSON objects
 * (truncated, arrays, scalars, invalid UTF-8): a 4xx with SPEC's error body, never a 5xx, and nothing
 * recorded. (Webhooks without their secret configured answer 503
 * not_configured, which is not bad input's fault and is allowed.) */
START_TEST(every_route_refuses_bad_bodies)
{
    static const char *const bodies[] = {
        "{", "[]", "\"x\"", "nul", "{\"a\":1,}", "{\"a\":\"\xff\"}", "12",
    };
    int before = event_count();

    for (const struct route *rt = routes; rt->method; rt++) {
        char path[256];
        const char *p = rt->pattern;
        size_t len = 0;

        if (!strcmp(rt->method, "GET") || strstr(rt->pattern, "/stream"))
            continue;
        /* fill {params} with a plausible id */
        while (*p && len < sizeof path - 8) {
            if (*p == '{') {
                len += (size_t)snprintf(path + len, sizeof path - len, "p1");
                p = strchr(p, '}') + 1;
            } else
                path[len++] = *p++;
        }
        path[len] = 0;
        for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
            struct resp r;
            const char *code;

            ck_assert_int_eq(http_req(&srv, rt->method, path, bodies[i], strlen(bodies[i]), NULL, NULL, &r), 0);
            code = json_string_value(json_object_get(json_object_get(r.json, "error"), "code"));
            ck_assert_msg((r.status >= 400 && r.status < 500 && code) ||
                          (r.status == 503 && code && !strcmp(code, "not_configured")) ||
                          (r.status == 560 && !strncmp(rt->pattern, "/api/", 5)),
                          "%s %s with %s: %ld %s", rt->method, path, bodies[i], r.status, r.body);
            resp_free(&r);
        }
    }
    ck_assert_int_eq(event_count(), before);
}
END_TEST

Suite *
suite_http(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health_is_open);
    tcase_add_test(tc, auth_required);
    tcase_add_test(tc, unknown_route_and_method);
    tcase_add_test(tc, malformed_bodies_rejected);
    tcase_add_test(tc, oversized_body_413_and_keeps_serving);
    tcase_add_test(tc, events_recorded_and_listed);
    tcase_add_test(tc, migrations_once_across_restarts);
    tcase_add_test(tc, upgrade_in_place_from_counted_schema);
    tcase_add_test(tc, upgrade_in_place_one_migration_behind);
    tcase_add_test(tc, newer_schema_refused_78);
    tcase_add_test(tc, sigterm_exits_zero);
    tcase_add_test(tc, kill9_keeps_acknowledged_writes);
    tcase_add_test(tc, slow_client_cut_off);
    tcase_add_test(tc, connection_cap);
    tcase_add_test(tc, event_stream_tails_and_resumes);
    tcase_add_test(tc, sigterm_ends_open_streams);
    tcase_add_test(tc, metrics_scrape);
    tcase_add_test(tc, metrics_count_every_request_under_concurrency);
    tcase_add_test(tc, every_route_refuses_bad_bodies);
    suite_add_tcase(s, tc);
    return s;
}
