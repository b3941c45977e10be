/* check_convex.c -- the incident playbooks' commands through the real,
 * unmodified convex CLI (`convex run <fn> '<args>'` with
 * CONVEX_SELF_HOSTED_URL / CONVEX_SELF_HOSTED_ADMIN_KEY) and through
 * ConvexHttpClient + anyApi, checking their effect on batond over REST.
 * The npm package is installed once into build/convex; without node the
 * suite says so and skips. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"

static struct server srv;
static char dir[512];
static int have_node = -1;

static bool
convex_ready(void)
{
    char cmd[1200];
    int rc;

    if (have_node >= 0)
        return have_node;
    snprintf(dir, sizeof dir, "%s", getenv("BATON_CONVEX_DIR") ? getenv("BATON_CONVEX_DIR") : "build/convex");
    snprintf(cmd, sizeof cmd, "sh tests/convex/setup.sh '%s'", dir);
    rc = system(cmd);
    have_node = WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77)
        fprintf(stderr, "convex: node is not installed, the convex CLI tests are skipped\n");
    else
        ck_assert_msg(have_node, "could not install the convex npm package (exit %d)", WEXITSTATUS(rc));
    return have_node;
}

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

/* Run a command in the convex package's directory; capture stdout and
 * stderr. Returns the exit status. */
static int
run_in_dir(const char *cmd, char *out, size_t outn, char *err, size_t errn)
{
    char full[4096], errfile[600];
    FILE *p, *e;
    size_t n;
    int rc;

    snprintf(errfile, sizeof errfile, "%s/stderr.txt", srv.dir);
    snprintf(full, sizeof full, "cd '%s' && CONVEX_SELF_HOSTED_URL='%s' CONVEX_SELF_HOSTED_ADMIN_KEY='%s' %s 2>'%s'",
             dir, srv.url, TEST_SECRET, cmd, errfile);
    p = popen(full, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, outn - 1, p);
    out[n] = 0;
    rc = pclose(p);
    e = fopen(errfile, "r");
    err[0] = 0;
    if (e) {
        n = fread(err, 1, errn - 1, e);
        err[n] = 0;
        fclose(e);
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* `convex run fn args`; returns the exit code, *value the parsed output. */
static int
cli(const char *fn, const char *args, json_t **value)
{
    char cmd[2048], out[65536], err[8192];
    int rc;

    snprintf(cmd, sizeof cmd, "node_modules/.bin/convex run %s %s%s%s", fn, args ? "'" : "", args ? args : "",
             args ? "'" : "");
    rc = run_in_dir(cmd, out, sizeof out, err, sizeof err);
    if (value)
        *value = *out ? json_loads(out, JSON_DECODE_ANY, NULL) : json_null();
    if (rc != 0)
        fprintf(stderr, "convex run %s: exit %d: %s\n", fn, rc, err);
    return rc;
}

static const char *
str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *
job(const char *id)
{
    char path[128];
    json_t *j, *v;

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    j = CALL(&srv, "GET", path, NULL, 200);
    v = json_incref(json_object_get(j, "job"));
    json_decref(j);
    ck_assert_ptr_nonnull(v);
    return v;
}

START_TEST(playbook_stuck_jobs)
{
    json_t *a, *b, *c, *pending, *j;
    char args[256];
    bool seen_stale = false;
    size_t i;

    static const char *const no_sweep[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};

    if (!convex_ready())
        return;
    /* no periodic sweep: the stale job must wait for the operator */
    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, no_sweep);
    a = CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{s:s}}", "payload", "text", "a"), 201);
    b = CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{s:s}}", "payload", "text", "b"), 201);
    /* a worker claims a with a short lock and dies */
    c = CALL(&srv, "POST", "/v1/jobs/claim", json_pack("{s:s, s:i}", "workerId", "dead-worker", "lockMs", 500), 200);
    usleep(700 * 1000);

    ck_assert_int_eq(cli("agent.getPendingJobs", NULL, &pending), 0);
    ck_assert(json_is_array(pending));
    ck_assert_int_eq(json_array_size(pending), 2);
    json_array_foreach(pending, i, j)
        if (json_is_true(json_object_get(j, "stale")))
            seen_stale = true;
    ck_assert(seen_stale);
    json_decref(pending);
    /* the colon form and the dotted form are the same function */
    ck_assert_int_eq(cli("agent:getPendingJobs", NULL, &pending), 0);
    ck_assert_int_eq(json_array_size(pending), 2);
    json_decref(pending);

    ck_assert_int_eq(cli("agent.requeueStaleJobs", NULL, NULL), 0);
    j = job(str(json_object_get(c, "job"), "id"));
    ck_assert_str_eq(str(j, "status"), "pending");
    json_decref(j);

    snprintf(args, sizeof args, "{\"jobId\":\"%s\",\"errorReason\":\"manual\",\"errorMessage\":\"operator gave up\"}",
             str(json_object_get(b, "job"), "id"));
    ck_assert_int_eq(cli("agent.failJob", args, NULL), 0);
    j = job(str(json_object_get(b, "job"), "id"));
    ck_assert_str_eq(str(j, "status"), "failed");
    ck_assert_str_eq(str(j, "errorReason"), "manual");
    json_decref(j);

    snprintf(args, sizeof args, "{\"jobId\":\"%s\"}", str(json_object_get(b, "job"), "id"));
    ck_assert_int_eq(cli("agent.retryJob", args, NULL), 0);
    j = job(str(json_object_get(b, "job"), "id"));
    ck_assert_str_eq(str(j, "status"), "pending");
    json_decref(j);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}
END_TEST

START_TEST(playbook_lease_contention)
{
    json_t *l, *v, *h;
    const char *args = "{\"accountId\":\"default\"}";

    if (!convex_ready())
        return;
    l = CALL(&srv, "POST", "/v1/leases/whatsapp/default/acquire",
             json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 45000), 200);
    ck_assert_int_eq(cli("whatsappLeases.getLease", args, &v), 0);
    ck_assert_str_eq(str(v, "ownerId"), "wa-1");
    json_decref(v);
    ck_assert_int_eq(cli("whatsappLeases.listOwnedAccounts", "{\"ownerId\":\"wa-1\"}", &v), 0);
    ck_assert_int_eq(json_array_size(v), 1);
    json_decref(v);

    ck_assert_int_eq(cli("whatsappLeases.forceRelease", args, NULL), 0);
    /* the old holder has lost it */
    h = CALL(&srv, "POST", "/v1/leases/whatsapp/default/heartbeat",
             json_pack("{s:s, s:O}", "ownerId", "wa-1", "token", json_object_get(json_object_get(l, "lease"), "token")),
             409);
    json_decref(h);
    json_decref(l);

    json_decref(CALL(&srv, "PUT", "/v1/accounts/whatsapp/default", json_pack("{s:b}", "enabled", 1), 200));
    json_decref(CALL(&srv, "PUT", "/v1/accounts/whatsapp/spare", json_pack("{s:b}", "enabled", 0), 200));
    ck_assert_int_eq(cli("whatsappLeases.listEnabledAccounts", NULL, &v), 0);
    ck_assert_int_eq(json_array_size(v), 1);
    ck_assert_str_eq(str(json_array_get(v, 0), "accountId"), "default");
    json_decref(v);
}
END_TEST

START_TEST(playbook_duplicates_and_auth_corruption)
{
    json_t *v;
    const char *args = "{\"channel\":\"whatsapp\",\"channelMessageId\":\"test-123\"}";

    if (!convex_ready())
        return;
    ck_assert_int_eq(cli("inboundDedupe.checkAndRegister", args, &v), 0);
    ck_assert(json_is_false(json_object_get(v, "duplicate")));
    json_decref(v);
    ck_assert_int_eq(cli("inboundDedupe.checkAndRegister", args, &v), 0);
    ck_assert(json_is_true(json_object_get(v, "duplicate")));
    json_decref(v);

    json_decref(CALL(&srv, "POST", "/v1/sessions/whatsapp/default/batch",
                     json_pack("{s:{s:{s:s}, s:{s:i}}}", "set", "creds", "corrupt", "yes", "pre-key-1", "k", 1), 200));
    ck_assert_int_eq(cli("whatsappSession.getAll", NULL, &v), 0);
    ck_assert_int_eq(json_object_size(v), 2);
    json_decref(v);
    ck_assert_int_eq(cli("whatsappSession.clearAll", NULL, NULL), 0);
    v = CALL(&srv, "GET", "/v1/sessions/whatsapp/default", NULL, 200);
    ck_assert_int_eq(json_object_size(json_object_get(v, "entries")), 0);
    json_decref(v);
}
END_TEST

START_TEST(unknown_function_and_bad_key)
{
    char out[4096], err[8192];
    int rc;

    if (!convex_ready())
        return;
    rc = run_in_dir("node_modules/.bin/convex run agent.noSuchThing", out, sizeof out, err, sizeof err);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(strstr(err, "Could not find function"));
    ck_assert_ptr_nonnull(strstr(err, "noSuchThing"));
    rc = run_in_dir("CONVEX_SELF_HOSTED_ADMIN_KEY=wrong node_modules/.bin/convex run agent.getPendingJobs", out,
                    sizeof out, err, sizeof err);
    ck_assert_int_ne(rc, 0);
}
END_TEST

START_TEST(http_client_any_api)
{
    char cmd[1024], out[65536], err[8192];
    json_t *v;

    if (!convex_ready())
        return;
    /* an ES module resolves "convex/..." from its own directory: run it
     * beside the installed package */
    snprintf(cmd, sizeof cmd, "cp tests/convex/client.mjs '%s/client.mjs'", dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "node client.mjs '%s' '%s'", srv.url, TEST_SECRET);
    ck_assert_msg(run_in_dir(cmd, out, sizeof out, err, sizeof err) == 0, "client.mjs failed: %s", err);
    v = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(str(json_object_get(v, "claimed"), "id"), str(json_object_get(v, "enqueued"), "id"));
    ck_assert_str_eq(str(json_object_get(v, "completed"), "status"), "completed");
    ck_assert_str_eq(str(json_object_get(v, "lease"), "ownerId"), "ts-wa");
    ck_assert_int_eq(json_array_size(json_object_get(v, "owned")), 1);
    ck_assert(json_is_false(json_object_get(json_object_get(v, "first"), "duplicate")));
    ck_assert(json_is_true(json_object_get(json_object_get(v, "second"), "duplicate")));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(v, "session"), "creds"));
    ck_assert_str_eq(str(json_object_get(v, "staleError"), "code"), "claim_lost");
    ck_assert_ptr_null(strstr(str(v, "unknown"), "Could not find function"));
    json_decref(v);
}
END_TEST

/* POST body to an /api route with the admin key as the CLI sends it; the
 * answer must be JSON. */
static json_t *
api(const char *path, const char *body, long expect)
{
    struct resp r;
    json_t *out;
    char auth[128];

    snprintf(auth, sizeof auth, "Convex %s", TEST_SECRET);
    ck_assert_int_eq(http_req(&srv, "POST", path, body, strlen(body), auth, NULL, &r), 0);
    ck_assert_msg(r.status == expect, "%s %s: status %ld: %s", path, body, r.status, r.body);
    ck_assert_msg(r.json, "%s %s: the answer is not JSON: '%s'", path, body, r.body);
    out = r.json;
    r.json = NULL;
    resp_free(&r);
    return out;
}

/* A $float that decodes to NaN or +-Infinity is refused with a message that
 * says so (JSON cannot hold it); before, decode() failed without writing its
 * reason and the answer carried uninitialised stack bytes. */
/* agent:enqueueBatch runs POST /v1/jobs/batch: its value is the answer's
 * jobs, in order; a bad element is the route's 400 as a function error. */
START_TEST(enqueue_batch_function)
{
    json_t *v, *value;

    v = api("/api/mutation", "{\"path\":\"agent:enqueueBatch\",\"args\":{\"jobs\":["
                             "{\"queue\":\"cvb\",\"payload\":{\"n\":1}},"
                             "{\"queue\":\"cvb\",\"payload\":{\"n\":2}}]},\"format\":\"json\"}", 200);
    ck_assert_str_eq(str(v, "status"), "success");
    value = json_object_get(v, "value");
    ck_assert_int_eq(json_array_size(value), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(json_object_get(json_array_get(value, 1), "job"), "payload"), "n")), 2);
    json_decref(v);
    v = api("/api/mutation", "{\"path\":\"agent:enqueueBatch\",\"args\":{\"jobs\":["
                             "{\"queue\":\"cvb\",\"payload\":1}, {\"queue\":\"c b\",\"payload\":2}]},"
                             "\"format\":\"json\"}", 560);
    ck_assert_str_eq(str(json_object_get(v, "errorData"), "code"), "bad_request");
    ck_assert_ptr_nonnull(strstr(str(v, "errorMessage"), "jobs[1].queue"));
    json_decref(v);
}
END_TEST

START_TEST(encoded_nan_and_infinity_are_refused)
{
    static const struct {
        const char *b64, *word;
    } cases[] = {
        {"AAAAAAAA+H8=", "NaN"},        /* 0x7ff8000000000000 */
        {"AAAAAAAA8H8=", "Infinity"},   /* 0x7ff0000000000000 */
        {"AAAAAAAA8P8=", "-Infinity"},  /* 0xfff0000000000000 */
    };
    char body[256];

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v;
        snprintf(body, sizeof body,
                 "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":{\"$float\":\"%s\"}},"
                 "\"format\":\"convex_encoded_json\"}", cases[i].b64);
        v = api("/api/query", body, 560);
        ck_assert_str_eq(str(v, "status"), "error");
        ck_assert_str_eq(str(json_object_get(v, "errorData"), "code"), "bad_request");
        ck_assert_msg(strstr(str(v, "errorMessage"), cases[i].word) &&
                      strstr(str(v, "errorMessage"), "JSON cannot hold"),
                      "%s: errorMessage '%s'", cases[i].b64, str(v, "errorMessage"));
        json_decref(v);
    }
    /* an ordinary $float still works: 2.0 is job 2, which does not exist */
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{s:s}}", "payload", "text", "a"), 201));
    {
        json_t *v = api("/api/query", "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":{\"$float\":"
                                      "\"AAAAAAAA8D8=\"}},\"format\":\"convex_encoded_json\"}", 200);
        ck_assert_str_eq(str(v, "status"), "success");  /* 1.0 is job 1 */
        ck_assert_str_eq(str(json_object_get(v, "value"), "id"), "1");
        json_decref(v);
    }
}
END_TEST

/* A path or query argument given as a huge real is an error naming it,
 * never an integer conversion out of range (undefined behaviour). */
START_TEST(huge_real_arguments_are_out_of_range)
{
    static const char *const bodies[] = {
        "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":1e300}}",
        "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":-1e300}}",
        "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":9223372036854775808.0}}",
        "{\"path\":\"agent:getPendingJobs\",\"args\":{\"limit\":1e300}}",
    };

    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        json_t *v = api("/api/query", bodies[i], 560);
        ck_assert_str_eq(str(json_object_get(v, "errorData"), "code"), "bad_request");
        ck_assert_msg(strstr(str(v, "errorMessage"), "out of range"), "%s: errorMessage '%s'", bodies[i],
                      str(v, "errorMessage"));
        json_decref(v);
    }
    /* REST: an F_INT field */
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_loads("{\"payload\":1,\"priority\":1e300}", 0, NULL), 400));
}
END_TEST

/* Start a command in the convex package's directory in the background,
 * stdout and stderr to files in the server's dir. Returns its pid (the
 * command's own: exec). */
static pid_t
spawn_in_dir(const char *cmd, char *outfile, char *errfile, size_t n)
{
    char full[4096];
    pid_t pid;

    snprintf(outfile, n, "%s/spawn.out", srv.dir);
    snprintf(errfile, n, "%s/spawn.err", srv.dir);
    snprintf(full, sizeof full,
             "cd '%s' && CONVEX_SELF_HOSTED_URL='%s' CONVEX_SELF_HOSTED_ADMIN_KEY='%s' exec %s >'%s' 2>'%s'", dir,
             srv.url, TEST_SECRET, cmd, outfile, errfile);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* true once file holds needle, waiting up to ms */
static bool
file_has(const char *file, const char *needle, int ms)
{
    char buf[65536];

    for (int waited = 0; waited <= ms; waited += 100) {
        FILE *f = fopen(file, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (strstr(buf, needle))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

static void
report(const char *name, const char *marker)
{
    char body[256];

    snprintf(body, sizeof body, "{\"event\":\"%s\",\"level\":\"warn\",\"marker\":\"%s\"}", name, marker);
    json_decref(CALL(&srv, "POST", "/v1/events", json_loads(body, 0, NULL), 201));
}

/* `npx convex logs --history N` prints the last N of batond's events as
 * Convex log lines (before, /api/stream_function_logs was a 404 the CLI
 * retried forever). */
START_TEST(logs_history_shows_recorded_events)
{
    char out[65536], err[8192];

    if (!convex_ready())
        return;
    report("whatsapp.socket.reconnect", "older-one");
    report("whatsapp.outbound.loop.error", "newest-one");
    /* the CLI tails forever: stop it after the history had time to print */
    run_in_dir("timeout 8 node_modules/.bin/convex logs --history 1", out, sizeof out, err, sizeof err);
    ck_assert_msg(strstr(out, "whatsapp.outbound.loop.error") && strstr(out, "newest-one"),
                  "history missing: out '%s' err '%s'", out, err);
    ck_assert_msg(strstr(out, "[WARN]"), "level missing: '%s'", out);
    ck_assert_msg(!strstr(out, "older-one"), "--history 1 showed more than one event: '%s'", out);
    run_in_dir("timeout 8 node_modules/.bin/convex logs --history 10", out, sizeof out, err, sizeof err);
    ck_assert_msg(strstr(out, "older-one") && strstr(out, "newest-one") &&
                  strstr(out, "older-one") < strstr(out, "newest-one"), "--history 10, oldest first: '%s'", out);
}
END_TEST

/* A running `npx convex logs` prints an event within seconds of its commit. */
START_TEST(logs_follow_live_events)
{
    char outfile[600], errfile[600];
    pid_t pid;
    int status;
    bool seen;

    if (!convex_ready())
        return;
    report("whatsapp.socket.reconnect", "before-start");
    pid = spawn_in_dir("node_modules/.bin/convex logs", outfile, errfile, sizeof outfile);
    ck_assert_msg(file_has(errfile, "Watching logs", 30000), "convex logs did not start");
    usleep(1500 * 1000);        /* its first poll (the history) is answered at once */
    report("agent.job.custom", "live-one");
    seen = file_has(outfile, "live-one", 10000);
    usleep(1000 * 1000);
    report("agent.job.custom", "live-two");
    seen = seen && file_has(outfile, "live-two", 10000);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    ck_assert_msg(seen, "live events not printed within 10 s");
    ck_assert_msg(!file_has(outfile, "before-start", 0), "the history was printed without --history");
}
END_TEST

/* With a wrong admin key `convex logs` stops at once with a clear message
 * (the CLI retries every status but 403 forever). */
START_TEST(logs_wrong_key_stops)
{
    char out[8192], err[8192];
    struct timespec t0, t1;
    int rc;

    if (!convex_ready())
        return;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = run_in_dir("CONVEX_SELF_HOSTED_ADMIN_KEY=wrong timeout 60 node_modules/.bin/convex logs", out, sizeof out,
                    err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(rc != 0 && rc != 124, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "wrong admin key"), "no clear message: '%s'", err);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 30);
}
END_TEST

/* On PostgreSQL the maintainer's election is an event of its own
 * (db.maintainer.elected), recorded by the first maintenance after start:
 * wait for it, so that it is history before the test's own events, and
 * drop it (and any other db.* row) from a listing. */
static void
settle_maintainer(void)
{
    for (int i = 0; i < 200 && pg_test_backend(); i++) {
        json_t *j = CALL(&srv, "GET", "/v1/events?event=db.maintainer.elected", NULL, 200);
        size_t n = json_array_size(json_object_get(j, "events"));
        json_decref(j);
        if (n)
            return;
        usleep(50 * 1000);
    }
}

static void
drop_db_rows(json_t *entries)
{
    for (size_t i = json_array_size(entries); i-- > 0;)
        if (!strncmp(json_string_value(json_object_get(json_array_get(entries, i), "identifier")), "db.", 3))
            json_array_remove(entries, i);
}

/* The route itself: history, cursor, long-poll, filters, bad input. */
START_TEST(logs_route_cursor_and_filters)
{
    struct resp r;
    json_t *e;
    char path[256], auth[128];
    int64_t cursor;
    struct timespec t0, t1;

    snprintf(auth, sizeof auth, "Convex %s", TEST_SECRET);
    settle_maintainer();
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{s:s}}", "payload", "text", "a"), 201));
    report("whatsapp.socket.reconnect", "m1");
    ck_assert_int_eq(http_req(&srv, "GET", "/api/stream_function_logs?cursor=0", NULL, 0, auth, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    drop_db_rows(json_object_get(r.json, "entries"));
    /* batond's own server.started row first, then the two of this test */
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "entries")), 3);
    ck_assert_str_eq(str(json_array_get(json_object_get(r.json, "entries"), 0), "identifier"), "server.started");
    json_array_remove(json_object_get(r.json, "entries"), 0);
    e = json_array_get(json_object_get(r.json, "entries"), 0);
    ck_assert_str_eq(str(e, "identifier"), "agent.job.enqueued");
    ck_assert_str_eq(str(e, "udfType"), "Mutation");
    ck_assert_str_eq(str(e, "kind"), "Completion");
    ck_assert(json_is_real(json_object_get(e, "timestamp")));
    ck_assert(!strncmp(json_string_value(json_array_get(json_object_get(e, "logLines"), 0)), "[INFO] {", 8));
    e = json_array_get(json_object_get(r.json, "entries"), 1);
    ck_assert_str_eq(str(e, "udfType"), "Action");         /* reported by a worker */
    cursor = json_integer_value(json_object_get(r.json, "newCursor"));
    resp_free(&r);

    /* nothing new: the poll waits, and answers when an event commits */
    snprintf(path, sizeof path, "/api/stream_function_logs?cursor=%lld", (long long)cursor);
    if (fork() == 0) {
        usleep(1000 * 1000);
        report("agent.job.custom", "m2");
        _exit(0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(http_req(&srv, "GET", path, NULL, 0, auth, NULL, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wait(NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "entries")), 1);
    ck_assert_str_eq(str(json_array_get(json_object_get(r.json, "entries"), 0), "identifier"), "agent.job.custom");
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "newCursor")), cursor + 1);
    ck_assert_int_ge((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 500);
    resp_free(&r);

    /* ?function= maps a module to the events its functions produce */
    ck_assert_int_eq(http_req(&srv, "GET", "/api/stream_function_logs?cursor=0&function=agent.enqueue", NULL, 0, auth,
                              NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "entries")), 2);   /* enqueued, custom */
    resp_free(&r);
    ck_assert_int_eq(http_req(&srv, "GET", "/api/stream_function_logs?cursor=0&event=whatsapp.*", NULL, 0, auth,
                              NULL, &r), 0);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "entries")), 1);
    resp_free(&r);

    /* bad input: 400 with SPEC's error and Convex's top-level code/message */
    {
        static const char *const bad[] = {
            "/api/stream_function_logs?cursor=abc",
            "/api/stream_function_logs?cursor=-5",
            "/api/stream_function_logs?cursor=0&function=nope:nope",
            "/api/stream_function_logs?cursor=0&event=a%20b",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            ck_assert_int_eq(http_req(&srv, "GET", bad[i], NULL, 0, auth, NULL, &r), 0);
            ck_assert_msg(r.status == 400, "%s: %ld", bad[i], r.status);
            ck_assert_str_eq(str(json_object_get(r.json, "error"), "code"), "bad_request");
            ck_assert_str_eq(str(r.json, "code"), "bad_request");
            ck_assert_ptr_nonnull(str(r.json, "message"));
            resp_free(&r);
        }
    }
    ck_assert_int_eq(http_req(&srv, "GET", "/api/stream_function_logs?cursor=0", NULL, 0, "Bearer nope", NULL, &r),
                     0);
    ck_assert_int_eq(r.status, 403);
    ck_assert_str_eq(str(json_object_get(r.json, "error"), "code"), "forbidden");
    resp_free(&r);
}
END_TEST

/* An unknown function whose name the buffers cut mid-character, or whose
 * name from the URL is not UTF-8, still gets a JSON error (before: an
 * empty 560 body). */
START_TEST(unknown_function_with_long_or_raw_name)
{
    char body[1024] = "{\"path\":\"", auth[128];
    struct resp r;
    json_t *v;

    for (int i = 0; i < 200; i++)
        strcat(body, "\xc3\xa9");               /* é: 2 bytes each, 400 in all */
    strcat(body, "\"}");
    v = api("/api/query", body, 560);
    ck_assert_str_eq(str(json_object_get(v, "errorData"), "code"), "unknown_function");
    ck_assert_ptr_nonnull(strstr(str(v, "errorMessage"), "batond has no function '\xc3\xa9\xc3\xa9"));
    json_decref(v);

    snprintf(auth, sizeof auth, "Convex %s", TEST_SECRET);
    /* a path that is not text is refused before routing, with SPEC's body */
    ck_assert_int_eq(http_req(&srv, "POST", "/api/run/%C3/x", "{}", 2, auth, NULL, &r), 0);
    ck_assert_msg(r.status == 400 && r.json, "status %ld body '%s'", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(str(json_object_get(r.json, "error"), "message"), "not valid UTF-8"));
    resp_free(&r);
}
END_TEST

/* `npx convex data` (the sync WebSocket) exits with a clear message at once
 * instead of reconnecting forever; a plain GET of the route is a 404 with
 * the same sentence. */
START_TEST(data_stops_with_a_message)
{
    char out[8192], err[16384];
    struct timespec t0, t1;
    struct resp r;
    int rc;

    ck_assert_int_eq(http_req(&srv, "GET", "/api/1.48.0/sync", NULL, 0, "", NULL, &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(str(json_object_get(r.json, "error"), "code"), "not_found");
    ck_assert_ptr_nonnull(strstr(str(json_object_get(r.json, "error"), "message"), "sync WebSocket"));
    resp_free(&r);
    if (!convex_ready())
        return;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = run_in_dir("timeout 60 node_modules/.bin/convex data", out, sizeof out, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(rc != 124 && rc != 0, "convex data: exit %d (124: still reconnecting after 60 s): %s", rc, err);
    ck_assert_msg(strstr(err, "batond does not serve Convex's sync WebSocket"), "no clear message: '%s'", err);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 30);
    /* the server is fine afterwards */
    json_decref(CALL(&srv, "GET", "/health", NULL, 200));
}
END_TEST

Suite *
suite_convex(void)
{
    Suite *s = suite_create("convex");
    TCase *tc = tcase_create("convex");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, playbook_stuck_jobs);
    tcase_add_test(tc, enqueue_batch_function);
    tcase_add_test(tc, playbook_lease_contention);
    tcase_add_test(tc, playbook_duplicates_and_auth_corruption);
    tcase_add_test(tc, unknown_function_and_bad_key);
    tcase_add_test(tc, http_client_any_api);
    tcase_add_test(tc, encoded_nan_and_infinity_are_refused);
    tcase_add_test(tc, huge_real_arguments_are_out_of_range);
    /* the PostgreSQL pass leaves out the two runs of `convex logs` (about
     * 20 s of the CLI's own timeouts): the events they read are the store's
     * events operations, which store_pg covers, and the cursor and filters
     * still run below (time budget of make check, docs/testing.md) */
    if (!pg_test_backend()) {
        tcase_add_test(tc, logs_history_shows_recorded_events);
        tcase_add_test(tc, logs_follow_live_events);
    }
    tcase_add_test(tc, logs_wrong_key_stops);
    tcase_add_test(tc, logs_route_cursor_and_filters);
    tcase_add_test(tc, data_stops_with_a_message);
    tcase_add_test(tc, unknown_function_with_long_or_raw_name);
    suite_add_tcase(s, tc);
    return s;
}
