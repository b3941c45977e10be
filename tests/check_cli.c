/* check_cli.c -- the real `baton` binary against a running batond (and a
 * scripted server for what batond does not serve itself): exit codes,
 * tables, --json, usage errors, authentication errors, backups. */
#define _GNU_SOURCE             /* asprintf */
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fakehttp.h"
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

/* build/baton beside build/batond (the sanitizer build has its own). */
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

struct run {
    int status;
    char *out, *err;
};


static void
run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Run baton with env (NULL-terminated KEY=VALUE, "-KEY" unsets; BATON_URL
 * and AGENT_SECRET default to the test server) and args. */
static int
cli_env(struct run *r, const char *const *env, const char *const *args)
{
    char out[300], err[300];
    const char *argv[40];
    int n = 0, st;
    pid_t pid;

    snprintf(out, sizeof out, "%s/cli.out", srv.dir);
    snprintf(err, sizeof err, "%s/cli.err", srv.dir);
    argv[n++] = "baton";
    for (; *args && n < 39; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("BATON_URL", srv.url, 1);
        setenv("AGENT_SECRET", TEST_SECRET, 1);
        unsetenv("BATON_DB");
        for (; env && *env; env++) {
            if (**env == '-')
                unsetenv(*env + 1);
            else
                putenv(strdup(*env));
        }
        execv(baton_bin(), (char *const *)argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->out = file_text(out);
    r->err = file_text(err);
    ck_assert_msg(r->status != 127, "cannot run %s", baton_bin());
    return r->status;
}

#define CLI(r, ...) cli_env((r), NULL, (const char *const[]){__VA_ARGS__, NULL})
#define CLI_ENV(r, env, ...) cli_env((r), (env), (const char *const[]){__VA_ARGS__, NULL})

/* Assert exit status; on a mismatch show what baton printed. */
#define EXPECT(r, st) \
    ck_assert_msg((r)->status == (st), "exit %d, expected %d\nstdout: %s\nstderr: %s", \
                  (r)->status, (st), (r)->out, (r)->err)

static void
report(const char *event, json_t *fields)
{
    json_t *body = fields ? fields : json_object();

    json_object_set_new(body, "event", json_string(event));
    json_decref(CALL(&srv, "POST", "/v1/events", body, 201));
}

START_TEST(help_and_usage_errors)
{
    struct run r;
    static const char *const bad[][4] = {
        {"frob"},
        {"jobs"},
        {"jobs", "frob"},
        {"jobs", "get"},
        {"jobs", "get", "a", "b"},
        {"events", "--bogus"},
        {"events", "--limit"},
        {"jobs", "enqueue", "{not json"},
        {"alerts", "check", "--lookback", "soon"},
        {"alerts", "check", "--threshold", "0"},
        {"run"},
        {"run", "agent:x", "{bad"},
        {"accounts", "set", "whatsapp", "default"},
        {"--url"},
    };

    CLI(&r, "--help");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "usage: baton"));
    ck_assert_ptr_nonnull(strstr(r.out, "alerts check"));
    run_free(&r);
    CLI(&r, "jobs", "--help");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "requeue-stale"));
    run_free(&r);
    CLI(&r, "jobs", "list", "--help");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "usage: baton jobs"));
    run_free(&r);
    CLI(&r, "alerts", "check", "--help");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "Exit 0 healthy, 2 alert"));
    run_free(&r);

    cli_env(&r, NULL, (const char *const[]){NULL});
    EXPECT(&r, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "usage: baton"));
    run_free(&r);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cli_env(&r, NULL, bad[i]);
        ck_assert_msg(r.status == 2, "%s %s: exit %d: %s", bad[i][0], bad[i][1] ? bad[i][1] : "",
                      r.status, r.err);
        ck_assert_msg(strstr(r.err, "usage: baton"), "%s: no usage on stderr: %s", bad[i][0], r.err);
        ck_assert_str_eq(r.out, "");
        run_free(&r);
    }
}
END_TEST

START_TEST(auth_and_transport_errors)
{
    struct run r;
    static const char *const wrong_env[] = {"AGENT_SECRET=nope", NULL};
    static const char *const no_env[] = {"-AGENT_SECRET", NULL};
    static const char *const dead_env[] = {"BATON_URL=http://127.0.0.1:1", NULL};

    CLI(&r, "--secret", "wrong", "events");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "401"));
    ck_assert_ptr_nonnull(strstr(r.err, "unauthorized"));
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    CLI_ENV(&r, wrong_env, "events");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "401"));
    run_free(&r);
    CLI_ENV(&r, no_env, "--json", "events");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "401"));
    run_free(&r);
    /* --secret wins over the environment, --url over BATON_URL */
    CLI_ENV(&r, wrong_env, "events", "--secret=" TEST_SECRET);
    EXPECT(&r, 0);
    run_free(&r);
    CLI_ENV(&r, dead_env, "--json", "events");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "transport"));
    run_free(&r);
    CLI_ENV(&r, dead_env, "--url", srv.url, "--json", "events");
    EXPECT(&r, 0);
    run_free(&r);
    /* an unknown job names its status and code; a malformed id is a 400 */
    CLI(&r, "jobs", "get", "987654");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "404"));
    run_free(&r);
    CLI(&r, "jobs", "get", "job-that-is-not-there");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "400"));
    ck_assert_ptr_nonnull(strstr(r.err, "bad_request"));
    run_free(&r);
}
END_TEST

START_TEST(events_and_logs)
{
    struct run r;
    json_t *j;
    json_error_t je;
    char *one, *two, *line, *save = NULL;
    int lines = 0;

    report("cli.demo.one", json_pack("{s:s}", "accountId", "acc-7"));
    report("cli.demo.two", json_pack("{s:i}", "n", 2));
    report("other.thing", NULL);

    CLI(&r, "events", "--event", "cli.demo.*");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "EVENT"));
    ck_assert_ptr_nonnull(one = strstr(r.out, "cli.demo.one"));
    ck_assert_ptr_nonnull(two = strstr(r.out, "cli.demo.two"));
    ck_assert(two < one);                       /* newest first */
    ck_assert_ptr_nonnull(strstr(r.out, "acc-7"));
    ck_assert_ptr_null(strstr(r.out, "other.thing"));
    run_free(&r);

    CLI(&r, "--json", "events", "--event", "cli.demo.*", "--since", "1h");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, &je));
    ck_assert_int_eq(json_array_size(json_object_get(j, "events")), 2);
    json_decref(j);
    run_free(&r);
    CLI(&r, "--json", "events", "--where", "accountId=acc-7");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "cli.demo.one"));
    run_free(&r);

    CLI(&r, "logs", "--event", "cli.demo.*");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(one = strstr(r.out, "cli.demo.one"));
    ck_assert_ptr_nonnull(two = strstr(r.out, "cli.demo.two"));
    ck_assert(one < two);                       /* oldest first, like a log */
    ck_assert_ptr_nonnull(strstr(r.out, "accountId=acc-7"));
    run_free(&r);
    CLI(&r, "logs", "--json");
    EXPECT(&r, 0);
    for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        ck_assert_msg((j = json_loads(line, 0, &je)) != NULL, "not JSON: %s", line);
        ck_assert(json_is_string(json_object_get(j, "event")));
        /* the three reported above; batond's own server.started is a row too */
        if (strncmp(json_string_value(json_object_get(j, "event")), "server.", 7))
            lines++;
        json_decref(j);
    }
    ck_assert_int_eq(lines, 3);
    run_free(&r);
}
END_TEST

static atomic_bool writing;

static void *
writer(void *arg)
{
    int *n = arg;

    while (atomic_load(&writing)) {
        struct resp rs;
        const char body[] = "{\"event\":\"cli.backup.load\"}";
        if (http_req(&srv, "POST", "/v1/events", body, strlen(body), NULL, NULL, &rs) == 0 &&
            rs.status == 201)
            (*n)++;
        resp_free(&rs);
    }
    return NULL;
}

static int
copy_check(const char *file, int *events)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int ok;

    ck_assert_int_eq(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ok = !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    *events = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

START_TEST(backup_while_serving)
{
    struct run r;
    char file[400], dbopt[400], env_db[400];
    const char *env[] = {env_db, NULL};
    pthread_t th;
    int written = 0, before, events;
    struct stat a, b2;

    for (int i = 0; i < 200; i++)
        report("cli.backup.before", json_pack("{s:i, s:s}", "i", i, "pad",
                                              "................................................"));
    before = 200;
    snprintf(file, sizeof file, "%s/copy.db", srv.dir);
    snprintf(dbopt, sizeof dbopt, "%s/baton.db", srv.dir);
    snprintf(env_db, sizeof env_db, "BATON_DB=%s/baton.db", srv.dir);

    atomic_store(&writing, true);
    ck_assert_int_eq(pthread_create(&th, NULL, writer, &written), 0);
    CLI(&r, "backup", file, "--db", dbopt);
    atomic_store(&writing, false);
    pthread_join(th, NULL);
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "integrity ok"));
    run_free(&r);
    ck_assert(copy_check(file, &events));
    ck_assert_int_ge(events, before);
    ck_assert_int_gt(written, 0);               /* batond kept serving writes */
    ck_assert_int_ne(access(file, F_OK), -1);
    {
        char partial[420];
        snprintf(partial, sizeof partial, "%s.partial", file);
        ck_assert_int_eq(access(partial, F_OK), -1);
    }

    /* an existing file is kept unless --force */
    ck_assert_int_eq(stat(file, &a), 0);
    CLI_ENV(&r, env, "backup", file);
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "exists"));
    run_free(&r);
    ck_assert_int_eq(stat(file, &b2), 0);
    ck_assert_int_eq(a.st_ino, b2.st_ino);
    report("cli.backup.after", NULL);
    CLI_ENV(&r, env, "--json", "backup", file, "--force");
    EXPECT(&r, 0);
    run_free(&r);
    ck_assert(copy_check(file, &events));
    ck_assert_int_ge(events, before + written + 1);

    /* no database there */
    CLI(&r, "backup", file, "--force", "--db", "/nonexistent/baton.db");
    EXPECT(&r, 1);
    run_free(&r);
    ck_assert(copy_check(file, &events));       /* the old copy survived */
}
END_TEST

static char *fake_answers[4];

static const char *
fake_answer(int i, int status, const char *ctype, const char *body)
{
    free(fake_answers[i]);
    ck_assert_int_ge(asprintf(&fake_answers[i],
                              "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                              "Connection: close\r\n\r\n%s",
                              status, ctype, strlen(body), body), 0);
    return fake_answers[i];
}

START_TEST(run_calls_api_function)
{
    struct fake f = {0};
    struct run r;
    json_t *j;

    f.answers[0] = fake_answer(0, 200, "application/json",
                               "{\"status\":\"success\",\"value\":{\"jobs\":[{\"id\":\"j9\"}]},"
                               "\"logLines\":[]}");
    f.answers[1] = fake_answer(1, 560, "application/json",
                               "{\"status\":\"error\",\"errorMessage\":\"Server Error: no function "
                               "agent:nope\",\"errorData\":{\"code\":\"not_found\"}}");
    f.answers[2] = fake_answer(2, 200, "application/json",
                               "{\"status\":\"success\",\"value\":null,\"logLines\":[]}");
    fake_start(&f);
    CLI(&r, "--url", f.url, "run", "agent.getPendingJobs", "{\"queue\":\"agent\"}");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "jobs"), 0),
                                                       "id")), "j9");
    json_decref(j);
    run_free(&r);
    CLI(&r, "--url", f.url, "run", "agent:nope");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "no function agent:nope"));
    run_free(&r);
    CLI(&r, "--url", f.url, "run", "whatsappLeases:forceRelease", "{\"accountId\":\"default\"}");
    EXPECT(&r, 0);
    ck_assert_str_eq(r.out, "null\n");
    run_free(&r);
    fake_stop(&f);

    ck_assert_int_eq(f.requests, 3);
    ck_assert_ptr_nonnull(strstr(f.request[0], "POST /api/function HTTP"));
    ck_assert_ptr_nonnull(strstr(f.request[0], "Authorization: Bearer " TEST_SECRET));
    /* the name goes through untouched: the server maps it */
    ck_assert_ptr_nonnull(strstr(f.request[0], "\"path\":\"agent.getPendingJobs\""));
    ck_assert_ptr_nonnull(strstr(f.request[0], "\"args\":{\"queue\":\"agent\"}"));
    ck_assert_ptr_nonnull(strstr(f.request[0], "\"format\":\"json\""));
    ck_assert_ptr_nonnull(strstr(f.request[1], "\"args\":{}"));
    for (int i = 0; i < 4; i++) {
        free(fake_answers[i]);
        fake_answers[i] = NULL;
    }
}
END_TEST

START_TEST(logs_follow_prints_stream)
{
    struct fake f = {0};
    struct run r;
    char *a, *b;

    f.answers[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                   ": hello\n\n"
                   "id: 5\nevent: whatsapp.lease.released\n"
                   "data: {\"_time\":\"2024-01-01T00:00:00.000Z\",\"level\":\"info\","
                   "\"event\":\"whatsapp.lease.released\",\"ownerId\":\"wa-1\"}\n\n"
                   "id: 6\ndata: {\"event\":\"agent.job.claimed\",\"jobId\":\"j1\"}\n\n";
    f.answers[1] = fake_answer(1, 404, "application/json",
                               "{\"error\":{\"code\":\"not_found\",\"message\":\"gone\"}}");
    fake_start(&f);
    CLI(&r, "--url", f.url, "logs", "--follow");
    fake_stop(&f);
    EXPECT(&r, 1);                              /* the stream ended with a 404 */
    ck_assert_ptr_nonnull(strstr(r.err, "404"));
    ck_assert_ptr_nonnull(a = strstr(r.out, "whatsapp.lease.released ownerId=wa-1"));
    ck_assert_ptr_nonnull(b = strstr(r.out, "agent.job.claimed jobId=j1"));
    ck_assert(a < b);
    run_free(&r);
    ck_assert_int_eq(f.requests, 2);
    ck_assert_ptr_nonnull(strstr(f.request[1], "Last-Event-ID: 6\r\n"));
    free(fake_answers[1]);
    fake_answers[1] = NULL;
}
END_TEST

START_TEST(dedupe_and_sessions)
{
    struct run r;
    json_t *j;

    CLI(&r, "dedupe", "check", "telegram", "42:1");
    EXPECT(&r, 0);
    ck_assert_str_eq(r.out, "new\n");
    run_free(&r);
    CLI(&r, "dedupe", "check", "telegram", "42:1");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "duplicate"));
    run_free(&r);
    CLI(&r, "--json", "dedupe", "check", "telegram", "42:1");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    run_free(&r);
    CLI(&r, "dedupe", "check", "telegram");
    EXPECT(&r, 2);
    run_free(&r);

    json_decref(CALL(&srv, "POST", "/v1/sessions/whatsapp/default/batch",
                     json_pack("{s:{s:{s:s}, s:{s:i}}}", "set", "creds", "me", "secret-ish",
                               "pre-key-9", "k", 9), 200));
    CLI(&r, "sessions", "keys", "whatsapp", "default");
    EXPECT(&r, 0);
    ck_assert_str_eq(r.out, "creds\npre-key-9\n");
    ck_assert_ptr_null(strstr(r.out, "secret-ish"));    /* names only */
    run_free(&r);
    CLI(&r, "sessions", "get", "whatsapp", "default");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "pre-key-9"));
    ck_assert_ptr_nonnull(strstr(r.out, "secret-ish"));
    run_free(&r);
    CLI(&r, "sessions", "get", "whatsapp", "default", "pre-key-9");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "k")), 9);
    json_decref(j);
    run_free(&r);
    CLI(&r, "sessions", "get", "whatsapp", "default", "no-such-key");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "404"));
    run_free(&r);
    CLI(&r, "sessions", "clear", "whatsapp", "default");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "--json", "sessions", "keys", "whatsapp", "default");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(j, "keys")), 0);
    json_decref(j);
    run_free(&r);
}
END_TEST

START_TEST(run_against_batond)
{
    struct run r;
    json_t *j;

    CLI(&r, "run", "inboundDedupe:checkAndRegister",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"9:9\"}");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert(json_is_false(json_object_get(j, "duplicate")));
    json_decref(j);
    run_free(&r);
    /* the convex CLI's dotted spelling reaches the same function */
    CLI(&r, "run", "inboundDedupe.checkAndRegister",
        "{\"channel\":\"telegram\",\"channelMessageId\":\"9:9\"}");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    run_free(&r);
    CLI(&r, "run", "agent:noSuchFunction");
    EXPECT(&r, 1);
    ck_assert(r.err[0]);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    CLI(&r, "--secret", "wrong", "run", "whatsappSession:getAll");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "401"));
    run_free(&r);
}
END_TEST

START_TEST(logs_follow_against_batond)
{
    char out[400], err[400], *text = NULL;
    pid_t pid;
    int st;
    bool seen = false;

    snprintf(out, sizeof out, "%s/follow.out", srv.dir);
    snprintf(err, sizeof err, "%s/follow.err", srv.dir);
    report("cli.follow.old", NULL);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("BATON_URL", srv.url, 1);
        setenv("AGENT_SECRET", TEST_SECRET, 1);
        execl(baton_bin(), "baton", "logs", "--follow", "--event", "cli.follow.*", (char *)NULL);
        _exit(127);
    }
    /* report until the tail shows one (it starts at the newest event) */
    for (int i = 0; i < 100 && !seen; i++) {
        report("cli.follow.new", json_pack("{s:i}", "i", i));
        usleep(100000);
        free(text);
        text = file_text(out);
        seen = strstr(text, "cli.follow.new i=") != NULL;
    }
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    ck_assert_msg(seen, "logs --follow printed: %s", text);
    ck_assert_ptr_null(strstr(text, "cli.follow.old"));     /* only what is new */
    free(text);
}
END_TEST

/* The id printed by "jobs enqueue": "enqueued job <id>". */
static char *
enqueued_id(const char *out)
{
    const char *p = strstr(out, "enqueued job ");

    ck_assert_ptr_nonnull(p);
    return strndup(p + 13, strcspn(p + 13, "\n"));
}

/* jobs enqueue-batch FILE: one request, each id printed in order; a bad
 * element exits 1 naming it, a file that is not a JSON array exits 2. */
START_TEST(jobs_enqueue_batch_from_file)
{
    struct run r;
    char path[300], bad[300], a[32], b[32], c[32];
    FILE *f;

    snprintf(path, sizeof path, "%s/batch.json", srv.dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[{\"queue\":\"clib\",\"payload\":{\"n\":1},\"dedupeKey\":\"x\"},"
          " {\"queue\":\"clib\",\"payload\":{\"n\":2}},"
          " {\"queue\":\"clib\",\"payload\":{\"n\":3},\"dedupeKey\":\"x\"}]", f);
    fclose(f);
    CLI(&r, "jobs", "enqueue-batch", path);
    EXPECT(&r, 0);
    ck_assert_int_eq(sscanf(r.out, "enqueued job %31s\nenqueued job %31s\nduplicate of job %31s", a, b, c), 3);
    ck_assert_str_eq(c, a);                 /* the third is the duplicate of the first */
    ck_assert_str_ne(b, a);
    ck_assert_ptr_nonnull(strstr(r.out, "3 jobs: 2 enqueued, 1 duplicates"));
    run_free(&r);

    snprintf(bad, sizeof bad, "%s/bad.json", srv.dir);
    f = fopen(bad, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[{\"queue\":\"clib2\",\"payload\":1}, {\"queue\":\"clib2\",\"payload\":2,\"delayMs\":-5}]", f);
    fclose(f);
    CLI(&r, "jobs", "enqueue-batch", bad);
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "jobs[1].delayMs"));
    run_free(&r);
    CLI(&r, "--json", "jobs", "list", "--queue", "clib2");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\"jobs\": []"));
    run_free(&r);

    f = fopen(bad, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"queue\":\"clib2\"}", f);
    fclose(f);
    CLI(&r, "jobs", "enqueue-batch", bad);
    EXPECT(&r, 2);
    run_free(&r);
}
END_TEST

START_TEST(jobs_and_queues)
{
    struct run r;
    json_t *j;
    char *id, *id2, path[200];

    CLI(&r, "jobs", "enqueue", "--priority", "3", "--max-attempts", "2", "--order-key", "chat-7",
        "{\"text\":\"hello\"}");
    EXPECT(&r, 0);
    id = enqueued_id(r.out);
    run_free(&r);
    CLI(&r, "--json", "jobs", "get", id);
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "job"), "orderKey")), "chat-7");
    json_decref(j);
    run_free(&r);
    CLI(&r, "jobs", "enqueue", "--queue", "outbound.telegram.default", "--dedupe-key", "d1");
    EXPECT(&r, 0);
    id2 = enqueued_id(r.out);
    run_free(&r);
    CLI(&r, "jobs", "enqueue", "--queue", "outbound.telegram.default", "--dedupe-key", "d1");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "duplicate of job"));
    ck_assert_ptr_nonnull(strstr(r.out, id2));
    run_free(&r);

    CLI(&r, "jobs", "list");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "STATUS"));
    ck_assert_ptr_nonnull(strstr(r.out, id));
    ck_assert_ptr_nonnull(strstr(r.out, id2));
    run_free(&r);
    CLI(&r, "--json", "jobs", "list", "--queue", "agent");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 1);
    json_decref(j);
    run_free(&r);
    CLI(&r, "jobs", "get", id);
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "pending"));
    ck_assert_ptr_nonnull(strstr(r.out, "hello"));
    run_free(&r);

    /* a worker takes it; the operator fails it, then retries it */
    json_decref(CALL(&srv, "POST", "/v1/jobs/claim", json_pack("{s:s}", "workerId", "w1"), 200));
    CLI(&r, "jobs", "pending");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, id));
    ck_assert_ptr_nonnull(strstr(r.out, "w1"));
    run_free(&r);
    CLI(&r, "jobs", "fail", id, "--reason", "operator_test", "--message", "stop it");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "failed"));
    run_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    j = CALL(&srv, "GET", path, NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "job") ? json_object_get(j, "job") : j,
                                                       "errorReason")), "operator_test");
    json_decref(j);
    CLI(&r, "jobs", "retry", id);
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "pending"));
    run_free(&r);
    CLI(&r, "jobs", "requeue-stale");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "requeued: 0"));
    run_free(&r);
    CLI(&r, "jobs", "retry", "424242");
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "404"));
    run_free(&r);

    CLI(&r, "queues");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "PENDING"));
    ck_assert_ptr_nonnull(strstr(r.out, "agent"));
    ck_assert_ptr_nonnull(strstr(r.out, "outbound.telegram.default"));
    run_free(&r);
    CLI(&r, "--json", "queues");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(j, "queues")), 2);
    json_decref(j);
    run_free(&r);
    free(id);
    free(id2);
}
END_TEST

START_TEST(leases_and_accounts)
{
    struct run r;
    json_t *j;

    json_decref(CALL(&srv, "POST", "/v1/leases/whatsapp/default/acquire",
                     json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 60000), 200));
    CLI(&r, "leases", "get", "whatsapp", "default");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "wa-1"));
    run_free(&r);
    CLI(&r, "leases", "get", "whatsapp", "never");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "no lease"));
    run_free(&r);
    CLI(&r, "leases", "list");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "OWNERID"));
    ck_assert_ptr_nonnull(strstr(r.out, "wa-1"));
    run_free(&r);
    CLI(&r, "leases", "list", "--owner", "nobody");
    EXPECT(&r, 0);
    ck_assert_ptr_null(strstr(r.out, "wa-1"));
    run_free(&r);
    CLI(&r, "leases", "force-release", "whatsapp", "default");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "--json", "leases", "get", "whatsapp", "default");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert(json_is_null(json_object_get(j, "ownerId")) || !json_object_get(j, "ownerId"));
    json_decref(j);
    run_free(&r);
    CLI(&r, "leases", "force-release", "whatsapp");
    EXPECT(&r, 2);
    run_free(&r);

    CLI(&r, "accounts", "set", "whatsapp", "default", "--enable", "--config", "{\"phone\":\"+1\"}");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "accounts", "set", "telegram", "bot2", "--disable");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "accounts", "list");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "default"));
    ck_assert_ptr_nonnull(strstr(r.out, "bot2"));
    run_free(&r);
    CLI(&r, "--json", "accounts", "list", "--enabled", "true");
    EXPECT(&r, 0);
    ck_assert_ptr_nonnull(j = json_loads(r.out, 0, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(j, "accounts")), 1);
    json_decref(j);
    run_free(&r);
    CLI(&r, "accounts", "delete", "telegram", "bot2");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "accounts", "list", "--channel", "telegram");
    EXPECT(&r, 0);
    ck_assert_ptr_null(strstr(r.out, "bot2"));
    run_free(&r);
}
END_TEST

/* force-release says whether anything was released: the route answers
 * released:false for a free account, and printing "released" then misleads
 * an operator during an incident. Both are exit 0 (the account is free). */
START_TEST(force_release_says_what_happened)
{
    struct run r;

    json_decref(CALL(&srv, "POST", "/v1/leases/whatsapp/fr/acquire",
                     json_pack("{s:s, s:i}", "ownerId", "wa-9", "ttlMs", 60000), 200));
    CLI(&r, "leases", "force-release", "whatsapp", "fr");
    EXPECT(&r, 0);
    ck_assert_msg(!strncmp(r.out, "released whatsapp/fr", 20), "first force-release printed: %s", r.out);
    run_free(&r);
    CLI(&r, "leases", "force-release", "whatsapp", "fr");
    EXPECT(&r, 0);
    ck_assert_msg(!strncmp(r.out, "not released", 12), "second force-release printed: %s", r.out);
    run_free(&r);
    CLI(&r, "leases", "force-release", "whatsapp", "never-leased");
    EXPECT(&r, 0);
    ck_assert_msg(!strncmp(r.out, "not released", 12), "force-release of a never-leased account printed: %s",
                  r.out);
    run_free(&r);
}
END_TEST

/* An empty list prints (none), like every other list of the CLI. */
START_TEST(sessions_keys_empty_prints_none)
{
    struct run r;

    CLI(&r, "sessions", "keys", "whatsapp", "nobody-here");
    EXPECT(&r, 0);
    ck_assert_str_eq(r.out, "(none)\n");
    run_free(&r);
}
END_TEST

/* A transport error names the request once, not "GET /x: transport: GET /x: ...". */
START_TEST(transport_error_names_route_once)
{
    struct run r;
    static const char *const dead_env[] = {"BATON_URL=http://127.0.0.1:1", NULL};
    const char *first;

    CLI_ENV(&r, dead_env, "jobs", "get", "5");
    EXPECT(&r, 1);
    first = strstr(r.err, "GET /v1/jobs/5");
    ck_assert_msg(first != NULL, "status %d stdout [%s] stderr [%s]", r.status, r.out, r.err);
    ck_assert_msg(!strstr(first + strlen("GET /v1/jobs/5"), "/v1/jobs/5"), "the route is repeated: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "transport"));
    ck_assert_int_eq(strncmp(r.err, "baton: ", 7), 0);
    run_free(&r);
}
END_TEST

/* `baton <command> <sub> --help` prints that subcommand's help, not the
 * whole command's. */
START_TEST(subcommand_help_is_its_own)
{
    static const char *const subs[][2] = {
        {"jobs", "list"},      {"jobs", "get"},          {"jobs", "pending"},
        {"jobs", "retry"},     {"jobs", "fail"},         {"jobs", "cancel"},
        {"jobs", "requeue-stale"}, {"jobs", "enqueue"},  {"leases", "get"},
        {"leases", "list"},    {"leases", "force-release"}, {"accounts", "list"},
        {"accounts", "set"},   {"accounts", "delete"},   {"sessions", "get"},
        {"sessions", "keys"},  {"sessions", "clear"},
    };
    struct run r;

    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        char want[80];
        snprintf(want, sizeof want, "usage: baton %s %s", subs[i][0], subs[i][1]);
        CLI(&r, subs[i][0], subs[i][1], "--help");
        EXPECT(&r, 0);
        ck_assert_msg(!strncmp(r.out, want, strlen(want)), "%s %s --help printed:\n%s", subs[i][0], subs[i][1],
                      r.out);
        /* no line of another subcommand of the same command */
        for (size_t k = 0; k < sizeof subs / sizeof *subs; k++) {
            char other[80];
            if (k == i || strcmp(subs[k][0], subs[i][0]))
                continue;
            snprintf(other, sizeof other, "\n  %s ", subs[k][1]);
            ck_assert_msg(!strstr(r.out, other), "%s %s --help also describes %s:\n%s", subs[i][0], subs[i][1],
                          subs[k][1], r.out);
        }
        run_free(&r);
    }
    /* a usage error of a subcommand shows that subcommand's usage */
    CLI(&r, "jobs", "retry");
    EXPECT(&r, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "usage: baton jobs retry ID"));
    run_free(&r);
}
END_TEST

/* baton jobs cancel ID: POST /v1/jobs/{id}/cancel */
START_TEST(jobs_cancel_cancels)
{
    struct run r;
    json_t *j, *job;
    char path[100], want[100];
    const char *id;

    j = CALL(&srv, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "cx", "payload"), 201);
    id = json_string_value(json_object_get(json_object_get(j, "job"), "id"));
    CLI(&r, "jobs", "cancel", id);
    EXPECT(&r, 0);
    snprintf(want, sizeof want, "job %s: failed", id);
    ck_assert_msg(strstr(r.out, want), "jobs cancel printed: %s", r.out);
    run_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    job = CALL(&srv, "GET", path, NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "job"), "status")), "failed");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "job"), "errorReason")), "cancelled");
    json_decref(job);
    /* a job already failed: 409, exit 1 */
    CLI(&r, "jobs", "cancel", id);
    EXPECT(&r, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "409"));
    run_free(&r);
    CLI(&r, "jobs", "cancel");
    EXPECT(&r, 2);
    run_free(&r);
    json_decref(j);
}
END_TEST

START_TEST(alerts_from_events)
{
    struct run r;
    static const char *const dead_env[] = {"BATON_URL=http://127.0.0.1:1", NULL};

    CLI(&r, "alerts", "check");
    EXPECT(&r, 0);
    ck_assert_str_eq(r.out, "healthy\n");
    run_free(&r);
    CLI_ENV(&r, dead_env, "alerts", "check");
    EXPECT(&r, 1);
    run_free(&r);

    /* reconnects: a burst only at or above the threshold */
    for (int i = 0; i < 3; i++)
        report("telegram.socket.reconnect", json_pack("{s:s}", "accountId", "default"));
    CLI(&r, "alerts", "check", "--threshold", "4");
    EXPECT(&r, 0);
    run_free(&r);
    CLI(&r, "alerts", "check", "--threshold", "3", "--burst-window", "1m");
    EXPECT(&r, 2);
    ck_assert_ptr_nonnull(strstr(r.out, "telegram.socket.reconnect: burst of 3"));
    run_free(&r);
    /* events outside the lookback do not count */
    report("whatsapp.lease.heartbeat.lost", json_pack("{s:s, s:s}", "accountId", "default",
                                                      "ownerId", "wa-1"));
    report("whatsapp.outbound.loop.error", NULL);
    report("whatsapp.outbound.send.failed", NULL);
    report("whatsapp.outbound.sent", NULL);
    CLI(&r, "--json", "alerts", "check");
    EXPECT(&r, 2);
    {
        json_t *j = json_loads(r.out, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert(json_is_false(json_object_get(j, "healthy")));
        ck_assert_int_eq(json_array_size(json_object_get(j, "findings")), 3);
        json_decref(j);
    }
    run_free(&r);
    CLI(&r, "alerts", "check");
    EXPECT(&r, 2);
    ck_assert_ptr_nonnull(strstr(r.out, "whatsapp.lease.heartbeat.lost: 1 within 24h"));
    ck_assert_ptr_nonnull(strstr(r.out, "ownerId=wa-1"));
    ck_assert_ptr_nonnull(strstr(r.out, "whatsapp.outbound.loop.error"));
    ck_assert_ptr_nonnull(strstr(r.out, "whatsapp.outbound.send.failed"));
    ck_assert_ptr_null(strstr(r.out, "outbound.sent"));
    run_free(&r);
    usleep(1100000);
    CLI(&r, "alerts", "check", "--lookback", "1s");
    EXPECT(&r, 0);
    run_free(&r);
}
END_TEST

START_TEST(alerts_from_jobs)
{
    struct run r;
    static const char *const no_sweep[] = {"BATON_SWEEP_INTERVAL_MS=3600000", NULL};
    json_t *j;
    char *id, path[200];

    /* a server whose sweep does not requeue the stale job under our feet */
    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, no_sweep);
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{}}", "payload"), 201));
    json_decref(CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{}}", "payload"), 201));
    j = CALL(&srv, "POST", "/v1/jobs/claim", json_pack("{s:s, s:i}", "workerId", "w-dead", "lockMs", 1), 200);
    id = strdup(json_string_value(json_object_get(json_object_get(j, "job"), "id")));
    json_decref(j);
    usleep(50000);
    CLI(&r, "alerts", "check");
    EXPECT(&r, 2);
    ck_assert_ptr_nonnull(strstr(r.out, "stale job"));
    ck_assert_ptr_nonnull(strstr(r.out, id));
    ck_assert_ptr_nonnull(strstr(r.out, "w-dead"));
    run_free(&r);

    snprintf(path, sizeof path, "/v1/jobs/%s/fail-now", id);
    json_decref(CALL(&srv, "POST", path, json_pack("{s:s, s:s}", "errorReason", "poison",
                                                  "errorMessage", "bad payload"), 200));
    CLI(&r, "alerts", "check");
    EXPECT(&r, 2);
    ck_assert_ptr_null(strstr(r.out, "stale job"));
    ck_assert_ptr_nonnull(strstr(r.out, "failed job"));
    ck_assert_ptr_nonnull(strstr(r.out, "poison: bad payload"));
    run_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/retry", id);
    json_decref(CALL(&srv, "POST", path, json_object(), 200));
    CLI(&r, "alerts", "check");
    EXPECT(&r, 0);
    run_free(&r);
    free(id);
}
END_TEST

Suite *
suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, help_and_usage_errors);
    tcase_add_test(tc, jobs_enqueue_batch_from_file);
    tcase_add_test(tc, auth_and_transport_errors);
    tcase_add_test(tc, events_and_logs);
    tcase_add_test(tc, backup_while_serving);
    tcase_add_test(tc, run_calls_api_function);
    tcase_add_test(tc, logs_follow_prints_stream);
    tcase_add_test(tc, dedupe_and_sessions);
    tcase_add_test(tc, run_against_batond);
    tcase_add_test(tc, logs_follow_against_batond);
    tcase_add_test(tc, jobs_and_queues);
    tcase_add_test(tc, leases_and_accounts);
    tcase_add_test(tc, alerts_from_events);
    tcase_add_test(tc, alerts_from_jobs);
    tcase_add_test(tc, force_release_says_what_happened);
    tcase_add_test(tc, sessions_keys_empty_prints_none);
    tcase_add_test(tc, transport_error_names_route_once);
    tcase_add_test(tc, subcommand_help_is_its_own);
    tcase_add_test(tc, jobs_cancel_cancels);
    suite_add_tcase(s, tc);
    return s;
}
