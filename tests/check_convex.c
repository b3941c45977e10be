/* check_convex.c -- the incident playbooks' commands through the real,
 * unmodified convex CLI (`convex run <fn> '<args>'` with
 * CONVEX_SELF_HOSTED_URL / CONVEX_SELF_HOSTED_ADMIN_KEY) and through
 * ConvexHttpClient + anyApi, checking their effect on batond over REST.
 * The npm package is installed once into build/convex; without node the
 * suite says so and skips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

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

START_TEST(huge_real_arguments_are_function_errors)
{
    /* a real beyond int64 as a path argument: a function error, no crash */
    const char *bodies[] = {
        "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":1e300},\"format\":\"json\"}",
        "{\"path\":\"agent:getJob\",\"args\":{\"jobId\":-9.3e18},\"format\":\"json\"}",
        "{\"path\":\"agent:retryJob\",\"args\":{\"jobId\":9223372036854775808.0}}",
    };

    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "POST", "/api/query", bodies[i], strlen(bodies[i]), NULL, NULL, &r), 0);
        ck_assert_int_eq(r.status, 560);
        ck_assert_str_eq(str(r.json, "status"), "error");
        ck_assert_str_eq(str(json_object_get(r.json, "errorData"), "code"), "bad_request");
        resp_free(&r);
    }
}
END_TEST

START_TEST(run_without_args_and_exit_clean)
{
    /* /api/run with no body at all, and a function batond does not have:
     * what they allocate must be freed (under make sanitize a leak turns
     * batond's exit status non-zero) */
    for (int i = 0; i < 3; i++) {
        struct resp r;
        ck_assert_int_eq(http_req(&srv, "POST", "/api/run/agent/getPendingJobs", NULL, 0, NULL, NULL, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(str(r.json, "status"), "success");
        resp_free(&r);
        ck_assert_int_eq(http_req(&srv, "POST", "/api/run/nothing/here", "{}", 2, NULL, NULL, &r), 0);
        ck_assert_int_eq(r.status, 560);
        ck_assert_str_eq(str(json_object_get(r.json, "errorData"), "code"), "unknown_function");
        resp_free(&r);
    }
    ck_assert_int_eq(server_stop(&srv), 0);
}
END_TEST

START_TEST(non_finite_float_is_named)
{
    /* $float NaN / Infinity cannot become JSON: a 560 that says so */
    const char *args[] = {"{\"$float\":\"AAAAAAAA+H8=\"}", "{\"payload\":{\"$float\":\"AAAAAAAA8H8=\"}}",
                          "{\"payload\":[{\"$float\":\"AAAAAAAA8P8=\"}]}"};

    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        char body[256];
        struct resp r;
        snprintf(body, sizeof body, "{\"path\":\"agent:enqueue\",\"format\":\"convex_encoded_json\",\"args\":%s}",
                 args[i]);
        ck_assert_int_eq(http_req(&srv, "POST", "/api/mutation", body, strlen(body), NULL, NULL, &r), 0);
        ck_assert_int_eq(r.status, 560);
        ck_assert_str_eq(str(json_object_get(r.json, "errorData"), "code"), "bad_request");
        ck_assert_msg(strstr(str(r.json, "errorMessage"), "$float must be finite"), "message: %s", r.body);
        resp_free(&r);
    }
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
    tcase_add_test(tc, playbook_lease_contention);
    tcase_add_test(tc, playbook_duplicates_and_auth_corruption);
    tcase_add_test(tc, unknown_function_and_bad_key);
    tcase_add_test(tc, http_client_any_api);
    tcase_add_test(tc, huge_real_arguments_are_function_errors);
    tcase_add_test(tc, run_without_args_and_exit_clean);
    tcase_add_test(tc, non_finite_float_is_named);
    suite_add_tcase(s, tc);
    return s;
}
