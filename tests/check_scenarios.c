/* check_scenarios.c -- the runbook scenarios with real processes: batond,
 * baton-agent workers (core, whatsapp, telegram) and fake WhatsApp Cloud /
 * Telegram Bot APIs served by this test process on loopback; plus unit
 * tests of the agent's configuration, handler contract, Telegram splitting
 * and API error mapping.
 *
 * Every wait polls with a deadline; the bounds are generous so that a slow
 * 2-core machine passes, and timing assertions compare against the lease
 * ttl, never against a tight figure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.h"
#include "fakehttp.h"
#include "harness.h"

/* ---- helpers -------------------------------------------------------------- */

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Poll cond every 20 ms until it holds or ms have passed; evaluates to it. */
#define WAIT_FOR(cond, ms)                                                  \
    ({                                                                      \
        long _end = now_ms() + (ms);                                        \
        while (!(cond) && now_ms() < _end)                                  \
            msleep(20);                                                     \
        (cond);                                                             \
    })

struct agentp {
    pid_t pid;
    char log[400];
};

/* Run baton-agent with exactly env (plus PATH), output into log. */
static pid_t
spawn(const char *log, const char *const *env, const char *arg)
{
    char path[600];
    pid_t pid;

    harness_bin("baton-agent", path, sizeof path);
    pid = fork();
    if (pid == 0) {
        const char *envp[48];
        int n = 0, fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no worker behind */
        dup2(fd, 1);
        dup2(fd, 2);
        for (int i = 0; env && env[i] && n < 46; i++)
            envp[n++] = env[i];
        envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
        envp[n] = NULL;
        execve(path, (char *const[]){"baton-agent", (char *)arg, NULL}, (char *const *)envp);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* Start a worker named name against s: extra settings first (they win). */
static void
agent_start(struct agentp *a, struct server *s, const char *name, const char *const *extra)
{
    const char *env[40];
    char url[100], wid[100];
    int n = 0;

    for (int i = 0; extra && extra[i] && n < 34; i++)
        env[n++] = extra[i];
    snprintf(url, sizeof url, "BATON_URL=%s", s->url);
    snprintf(wid, sizeof wid, "WORKER_ID=%s", name);
    env[n++] = url;
    env[n++] = wid;
    env[n++] = "AGENT_SECRET=" TEST_SECRET;
    env[n] = NULL;
    snprintf(a->log, sizeof a->log, "%s/agent-%s.log", s->dir, name);
    a->pid = spawn(a->log, env, NULL);
}

/* SIGTERM and wait (up to 30 s); the exit status, or -1. */
static int
agent_stop(struct agentp *a)
{
    int st;

    if (!a->pid)
        return -1;
    kill(a->pid, SIGTERM);
    for (int i = 0; i < 1500; i++) {
        if (waitpid(a->pid, &st, WNOHANG) == a->pid) {
            a->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        msleep(20);
    }
    kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
    a->pid = 0;
    return -1;
}

static void
agent_kill(struct agentp *a)
{
    int st;

    if (!a->pid)
        return;
    kill(a->pid, SIGCONT);
    kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
    a->pid = 0;
}

static int
log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}


/* Run a program with env, wait, return its exit status; its output in
 * *out (malloc'ed) when out is not NULL. */
static int
run_wait(pid_t pid, const char *log, char **out, long timeout_ms)
{
    int st = 0;
    long end = now_ms() + timeout_ms;

    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        msleep(10);
    }
    if (out)
        *out = file_text(log);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* `baton alerts check`; its exit status and output. */
static int
alerts_check(struct server *s, char **out)
{
    char path[600], log[400], url[100];
    pid_t pid;

    harness_bin("baton", path, sizeof path);
    snprintf(log, sizeof log, "%s/alerts.out", s->dir);
    snprintf(url, sizeof url, "BATON_URL=%s", s->url);
    pid = fork();
    if (pid == 0) {
        const char *envp[] = {url, "AGENT_SECRET=" TEST_SECRET, "PATH=/usr/bin:/bin", NULL};
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execle(path, "baton", "alerts", "check", (char *)NULL, (char *const *)envp);
        _exit(127);
    }
    return run_wait(pid, log, out, 30000);
}

static json_t *
get_job(struct server *s, const char *id)
{
    char path[200];
    json_t *j, *job;

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    j = CALL(s, "GET", path, NULL, 200);
    job = json_incref(json_object_get(j, "job"));
    json_decref(j);
    return job;
}

static bool
job_has(struct server *s, const char *id, const char *key, const char *value)
{
    json_t *job = get_job(s, id);
    const char *v = json_string_value(json_object_get(job, key));
    bool ok = v && !strcmp(v, value);

    json_decref(job);
    return ok;
}

static json_t *
get_message(struct server *s, const char *id)
{
    char path[200];
    json_t *j, *m;

    snprintf(path, sizeof path, "/v1/messages/%s", id);
    j = CALL(s, "GET", path, NULL, 200);
    m = json_object_get(j, "message") ? json_incref(json_object_get(j, "message")) : json_incref(j);
    json_decref(j);
    return m;
}

static bool
message_status(struct server *s, const char *id, const char *status)
{
    json_t *m = get_message(s, id);
    const char *v = json_string_value(json_object_get(m, "status"));
    bool ok = v && !strcmp(v, status);

    json_decref(m);
    return ok;
}

/* POST /v1/outbound; the new message's id (malloc'ed). */
static char *
outbound(struct server *s, const char *channel, const char *to, const char *text)
{
    json_t *r = CALL(s, "POST", "/v1/outbound",
                     json_pack("{s:s, s:s, s:s, s:s}", "channel", channel, "accountId", "default",
                               "to", to, "text", text),
                     201);
    char *id = strdup(json_string_value(json_object_get(r, "messageId")));

    json_decref(r);
    return id;
}

/* ---- the fake APIs ------------------------------------------------------------ */

/* The fields of a recorded JSON body. */
static const char *
body_str(const struct fakeapi_req *rq, json_t **keep, const char *a, const char *b)
{
    json_t *j = json_loads(rq->body, 0, NULL), *v;

    *keep = j;
    v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v);
}

/* How many of the first n requests had the same body. */
static int
seen_before(struct fakeapi *f, int n)
{
    int k = 0;

    for (int i = 0; i < n; i++)
        if (!strcmp(f->reqs[i].body, f->reqs[n].body))
            k++;
    return k;
}

/* WhatsApp Cloud: texts starting "err131047" fail permanently, "err130429"
 * are rate limited on their first try; the rest succeed. */
static void
wa_api(struct fakeapi *f, const struct fakeapi_req *rq, int n, int *status, char **body)
{
    json_t *j;
    const char *text = body_str(rq, &j, "text", "body");

    if (!strstr(rq->path, "/messages") || strncmp(rq->auth, "Bearer tok-", 11)) {
        *status = 401;
        *body = strdup("{\"error\":{\"message\":\"Invalid OAuth access token\",\"code\":190}}");
    } else if (text && !strncmp(text, "err131047", 9)) {
        *status = 400;
        *body = strdup("{\"error\":{\"message\":\"Re-engagement message\",\"type\":\"OAuthException\","
                       "\"code\":131047}}");
    } else if (text && !strncmp(text, "err130429", 9) && !seen_before(f, n)) {
        *status = 400;
        *body = strdup("{\"error\":{\"message\":\"Rate limit hit\",\"code\":130429}}");
    } else {
        *status = 200;
        if (asprintf(body, "{\"messaging_product\":\"whatsapp\",\"messages\":[{\"id\":\"wamid.%d\"}]}",
                     n) < 0)
            *body = NULL;
    }
    json_decref(j);
}

/* Telegram: chat 403 blocked the bot, chat 404 does not exist, chat -100
 * became supergroup -1009999, texts starting "rate" get a 429 with
 * retry_after 1 on their first try. */
static void
tg_api(struct fakeapi *f, const struct fakeapi_req *rq, int n, int *status, char **body)
{
    json_t *j = json_loads(rq->body, 0, NULL);
    json_int_t chat = json_integer_value(json_object_get(j, "chat_id"));
    const char *text = json_string_value(json_object_get(j, "text"));

    *status = 400;
    if (strcmp(rq->path, "/bot123:SECRETTOKEN/sendMessage")) {
        *status = 404;
        *body = strdup("{\"ok\":false,\"error_code\":404,\"description\":\"Not Found\"}");
    } else if (chat == 403) {
        *status = 403;
        *body = strdup("{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was blocked by the user\"}");
    } else if (chat == 404) {
        *body = strdup("{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}");
    } else if (chat == -100) {
        *body = strdup("{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
                       "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":-1009999}}");
    } else if (text && !strncmp(text, "rate", 4) && !seen_before(f, n)) {
        *status = 429;
        *body = strdup("{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
                       "after 1\",\"parameters\":{\"retry_after\":1}}");
    } else {
        *status = 200;
        if (asprintf(body, "{\"ok\":true,\"result\":{\"message_id\":%d,\"chat\":{\"id\":%lld}}}",
                     1000 + n, (long long)chat) < 0)
            *body = NULL;
    }
    json_decref(j);
}

/* Requests to the fake matching auth (NULL: any) and, when text is not
 * NULL, with that WhatsApp text body. */
static int
wa_sends(struct fakeapi *f, const char *auth, const char *text)
{
    int n = 0;

    fakeapi_lock(f);
    for (int i = 0; i < f->n; i++) {
        json_t *j;
        const char *t = body_str(&f->reqs[i], &j, "text", "body");
        if ((!auth || !strcmp(f->reqs[i].auth, auth)) && (!text || (t && !strcmp(t, text))))
            n++;
        json_decref(j);
    }
    fakeapi_unlock(f);
    return n;
}

static int
tg_sends(struct fakeapi *f, long long chat, const char *text)
{
    int n = 0;

    fakeapi_lock(f);
    for (int i = 0; i < f->n; i++) {
        json_t *j = json_loads(f->reqs[i].body, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "text"));
        if (json_integer_value(json_object_get(j, "chat_id")) == chat && (!text || (t && !strcmp(t, text))))
            n++;
        json_decref(j);
    }
    fakeapi_unlock(f);
    return n;
}

#define WA_ENV(name, api, ttl, hb)                                                  \
    (const char *const[]) {                                                         \
        "AGENT_ROLE=whatsapp", "WHATSAPP_PHONE_NUMBER_ID=1555000", api,             \
            "WHATSAPP_ACCESS_TOKEN=tok-" name, "WHATSAPP_LEASE_TTL_MS=" ttl,         \
            "WHATSAPP_HEARTBEAT_MS=" hb, "WHATSAPP_SEND_TIMEOUT_MS=2000", NULL       \
    }

static void
api_env(char *buf, size_t n, const char *var, struct fakeapi *f)
{
    snprintf(buf, n, "%s=%s", var, f->url);
}

/* ---- configuration and help ------------------------------------------------------ */

static int
config_run(const char *const *env, const char *arg, char **out)
{
    char log[] = "/tmp/baton-agent-cfg-XXXXXX";
    int fd = mkstemp(log), rc;

    ck_assert_int_ge(fd, 0);
    close(fd);
    rc = run_wait(spawn(log, env, arg), log, out, 10000);
    unlink(log);
    return rc;
}

START_TEST(test_config_refusals)
{
    static const struct {
        const char *env[6];
        const char *names;
    } cases[] = {
        {{"AGENT_ROLE=whatsapp", "WHATSAPP_PHONE_NUMBER_ID=1", NULL}, "WHATSAPP_ACCESS_TOKEN"},
        {{"AGENT_ROLE=whatsapp", "WHATSAPP_ACCESS_TOKEN=s3cr3t-token", NULL}, "WHATSAPP_PHONE_NUMBER_ID"},
        {{"AGENT_ROLE=worker", NULL}, "AGENT_ROLE"},
        {{"AGENT_ROLE=whatsapp", "WHATSAPP_PHONE_NUMBER_ID=1", "WHATSAPP_ACCESS_TOKEN=s3cr3t-token",
          "WHATSAPP_LEASE_TTL_MS=45s", NULL}, "WHATSAPP_LEASE_TTL_MS"},
        {{"WHATSAPP_HEARTBEAT_MS=5000", "WHATSAPP_LEASE_TTL_MS=4000", NULL}, "WHATSAPP_HEARTBEAT_MS"},
        {{"AGENT_ROLE=telegram", NULL}, "TELEGRAM_BOT_TOKEN"},
        {{"ENABLE_WHATSAPP=maybe", NULL}, "ENABLE_WHATSAPP"},
    };
    char *out;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = config_run(cases[i].env, NULL, &out);
        ck_assert_msg(rc == 78, "case %zu: exit %d, expected 78: %s", i, rc, out);
        ck_assert_msg(strstr(out, cases[i].names), "case %zu: reason does not name %s: %s", i,
                      cases[i].names, out);
        ck_assert_msg(!strchr(out, '\n') || strchr(out, '\n') == out + strlen(out) - 1,
                      "case %zu: more than one line: %s", i, out);
        ck_assert_msg(!strstr(out, "s3cr3t-token"), "case %zu: a secret was printed", i);
        free(out);
    }
    ck_assert_int_eq(config_run(NULL, "--help", &out), 0);
    for (const char *const *v = (const char *const[]){"AGENT_ROLE", "WORKER_ID", "ENABLE_WHATSAPP",
                                                      "WHATSAPP_ACCOUNT_ID", "WHATSAPP_LEASE_TTL_MS",
                                                      "45000", "WHATSAPP_HEARTBEAT_MS", "15000",
                                                      "TELEGRAM_ACCOUNT_ID", "TELEGRAM_BOT_TOKEN",
                                                      "AGENT_SECRET", "BATON_URL", "AGENT_HANDLER",
                                                      "120000", "WHATSAPP_API_BASE",
                                                      "https://graph.facebook.com/v21.0",
                                                      "WHATSAPP_PHONE_NUMBER_ID",
                                                      "WHATSAPP_ACCESS_TOKEN", "TELEGRAM_API_BASE",
                                                      "https://api.telegram.org", NULL};
         *v; v++)
        ck_assert_msg(strstr(out, *v), "--help does not mention %s", *v);
    free(out);
}
END_TEST

/* ENABLE_WHATSAPP=0: idles (never asks batond for the lease) until SIGTERM. */
START_TEST(test_whatsapp_disabled)
{
    struct agentp a = {0};
    struct server s = {0};

    server_start(&s, NULL);
    agent_start(&a, &s, "wa-off",
                (const char *const[]){"AGENT_ROLE=whatsapp", "ENABLE_WHATSAPP=false", NULL});
    ck_assert(WAIT_FOR(log_count(a.log, "WhatsApp is disabled"), 10000));
    msleep(300);
    ck_assert_int_eq(agent_stop(&a), 0);
    ck_assert_int_eq(server_log_count(&s, "whatsapp.lease.acquire"), 0);
    server_cleanup(&s);
}
END_TEST

/* ---- unit: splitting and error mapping ------------------------------------------- */

START_TEST(test_split_utf8)
{
    /* 9000 characters of 1, 2, 3 and 4 bytes, no spaces */
    static const char *const chars[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    char *text = malloc(9000 * 4 + 1), *p = text;
    size_t off = 0, parts = 0, total = 0;

    for (int i = 0; i < 9000; i++)
        p = stpcpy(p, chars[i % 4]);
    while (text[off]) {
        size_t len = agent_split_next(text + off, 4096), n = agent_utf8_chars(text + off, len);
        ck_assert_uint_gt(len, 0);
        ck_assert_uint_le(n, 4096);
        /* each part begins and ends on whole characters */
        ck_assert((text[off] & 0xC0) != 0x80);
        ck_assert(!text[off + len] || (text[off + len] & 0xC0) != 0x80);
        total += n;
        off += len;
        parts++;
    }
    ck_assert_uint_eq(parts, 3);
    ck_assert_uint_eq(total, 9000);
    /* with spaces, a part ends after a space in its final quarter */
    memset(text, 'x', 5000);
    text[4000] = ' ';
    text[5000] = 0;
    ck_assert_uint_eq(agent_split_next(text, 4096), 4001);
    ck_assert_uint_eq(agent_split_next("short", 4096), 5);
    free(text);
}
END_TEST

START_TEST(test_error_mapping)
{
    char reason[64], msg[200];
    long ra;
    long long mig;
    json_t *j;

    j = json_loads("{\"error\":{\"message\":\"Re-engagement\",\"code\":131047}}", 0, NULL);
    ck_assert_int_eq(agent_wa_classify(400, j, reason, sizeof reason, msg, sizeof msg), SEND_PERMANENT);
    ck_assert_str_eq(reason, "131047");
    json_decref(j);
    j = json_loads("{\"error\":{\"message\":\"rate\",\"code\":130429}}", 0, NULL);
    ck_assert_int_eq(agent_wa_classify(400, j, reason, sizeof reason, msg, sizeof msg), SEND_RETRY);
    ck_assert_str_eq(reason, "130429");
    json_decref(j);
    j = json_loads("{\"error\":{\"message\":\"pair\",\"code\":131056}}", 0, NULL);
    ck_assert_int_eq(agent_wa_classify(400, j, reason, sizeof reason, msg, sizeof msg), SEND_RETRY);
    json_decref(j);
    j = json_loads("{\"error\":{\"message\":\"token\",\"code\":190}}", 0, NULL);
    ck_assert_int_eq(agent_wa_classify(401, j, reason, sizeof reason, msg, sizeof msg), SEND_PERMANENT);
    json_decref(j);
    ck_assert_int_eq(agent_wa_classify(502, NULL, reason, sizeof reason, msg, sizeof msg), SEND_RETRY);
    ck_assert_int_eq(agent_wa_classify(0, NULL, reason, sizeof reason, msg, sizeof msg), SEND_RETRY);
    ck_assert_str_eq(reason, "transport");
    ck_assert_int_eq(agent_wa_classify(404, NULL, reason, sizeof reason, msg, sizeof msg), SEND_PERMANENT);

    j = json_loads("{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":7}}", 0, NULL);
    ck_assert_int_eq(agent_tg_classify(429, j, reason, sizeof reason, msg, sizeof msg, &ra, &mig), SEND_RETRY);
    ck_assert_int_eq(ra, 7000);
    json_decref(j);
    j = json_loads("{\"ok\":false,\"error_code\":400,\"parameters\":{\"migrate_to_chat_id\":-1001}}", 0, NULL);
    ck_assert_int_eq(agent_tg_classify(400, j, reason, sizeof reason, msg, sizeof msg, &ra, &mig), SEND_MIGRATE);
    ck_assert_int_eq(mig, -1001);
    json_decref(j);
    j = json_loads("{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden\"}", 0, NULL);
    ck_assert_int_eq(agent_tg_classify(403, j, reason, sizeof reason, msg, sizeof msg, &ra, &mig), SEND_PERMANENT);
    ck_assert_str_eq(reason, "403");
    json_decref(j);
    ck_assert_int_eq(agent_tg_classify(503, NULL, reason, sizeof reason, msg, sizeof msg, &ra, &mig), SEND_RETRY);
}
END_TEST

/* ---- the core's handler contract --------------------------------------------------- */

static const char handler_script[] =
    "#!/bin/sh\n"
    "in=$(cat)\n"
    "case \"$in\" in\n"
    "  *'\"text\":\"please retry\"'*) echo 'upstream_busy' >&2; echo 'more' >&2; exit 75;;\n"
    "  *'\"text\":\"please fail\"'*) echo 'boom' >&2; exit 1;;\n"
    "  *'\"text\":\"please hang\"'*) sleep 30; exit 0;;\n"
    "esac\n"
    "printf '%s' \"$in\" > \"$HANDLER_DIR/last.json\"\n"
    "echo 'handled: ok'\n";

/* POST a web chat message; its agent job id (malloc'ed). */
static char *
web_post(struct server *s, const char *conv, const char *text)
{
    char path[200];
    json_t *r;
    char *id;

    snprintf(path, sizeof path, "/v1/conversations/%s/messages", conv);
    r = CALL(s, "POST", path, json_pack("{s:s}", "text", text), 201);
    id = strdup(json_string_value(json_object_get(r, "jobId")));
    json_decref(r);
    return id;
}

static bool
job_status_reason(struct server *s, const char *id, const char *status, const char *reason)
{
    json_t *job = get_job(s, id);
    const char *st = json_string_value(json_object_get(job, "status"));
    const char *re = json_string_value(json_object_get(job, "errorReason"));
    bool ok = st && re && !strcmp(st, status) && !strcmp(re, reason);

    json_decref(job);
    return ok;
}

START_TEST(test_handler_contract)
{
    struct server s = {0};
    struct agentp core = {0};
    char script[400], handler[450], dirv[400], last[400];
    char *first, *retry, *fail, *hang, *ok;
    json_t *in, *msgs, *m, *job;
    size_t i;
    bool saw_first = false, saw_hello = false;
    FILE *f;

    server_start(&s, NULL);
    snprintf(script, sizeof script, "%s/handler.sh", s.dir);
    f = fopen(script, "w");
    fputs(handler_script, f);
    fclose(f);
    snprintf(handler, sizeof handler, "AGENT_HANDLER=sh %s", script);
    snprintf(dirv, sizeof dirv, "HANDLER_DIR=%s", s.dir);
    snprintf(last, sizeof last, "%s/last.json", s.dir);
    agent_start(&core, &s, "core-1",
                (const char *const[]){"AGENT_ROLE=core", handler, dirv,
                                      "AGENT_HANDLER_TIMEOUT_MS=1500", NULL});

    first = web_post(&s, "conv-ok", "first");
    ck_assert(WAIT_FOR(job_has(&s, first, "status", "completed"), 20000));
    retry = web_post(&s, "conv-retry", "please retry");
    fail = web_post(&s, "conv-fail", "please fail");
    hang = web_post(&s, "conv-hang", "please hang");
    ok = web_post(&s, "conv-ok", "hello there");

    /* exit 75: retryable, reason from stderr's first line */
    ck_assert(WAIT_FOR(job_has(&s, retry, "errorReason", "upstream_busy"), 20000));
    job = get_job(&s, retry);
    ck_assert_str_ne(json_string_value(json_object_get(job, "status")), "failed");
    json_decref(job);
    /* exit 1: permanent */
    ck_assert(WAIT_FOR(job_status_reason(&s, fail, "failed", "handler_failed"), 20000));
    job = get_job(&s, fail);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempts")), 1);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(job, "errorMessage")), "boom"));
    json_decref(job);
    /* past AGENT_HANDLER_TIMEOUT_MS: killed, permanent */
    ck_assert(WAIT_FOR(job_status_reason(&s, hang, "failed", "handler_timeout"), 20000));
    /* success: stdout is the reply; stdin had the job and the conversation */
    ck_assert(WAIT_FOR(job_has(&s, ok, "status", "completed"), 20000));
    in = json_load_file(last, 0, NULL);
    ck_assert_ptr_nonnull(in);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(in, "job"), "id")), ok);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(in, "job"), "payload"), "text")),
                     "hello there");
    msgs = json_object_get(in, "messages");
    ck_assert(json_is_array(msgs));
    json_array_foreach(msgs, i, m) {
        const char *t = json_string_value(json_object_get(m, "text"));
        saw_first |= t && !strcmp(t, "first");
        saw_hello |= t && !strcmp(t, "hello there");
    }
    ck_assert_msg(saw_first && saw_hello, "messages on stdin lack the conversation");
    json_decref(in);
    {
        json_t *l = CALL(&s, "GET", "/v1/conversations/conv-ok/messages", NULL, 200);
        int replies = 0;
        json_array_foreach(json_object_get(l, "messages"), i, m) {
            const char *t = json_string_value(json_object_get(m, "text"));
            if (!strcmp(json_string_value(json_object_get(m, "direction")), "out")) {
                ck_assert_str_eq(t, "handled: ok");
                replies++;
            }
        }
        ck_assert_int_eq(replies, 2);
        json_decref(l);
    }
    ck_assert_int_eq(agent_stop(&core), 0);
    free(first), free(retry), free(fail), free(hang), free(ok);
    server_cleanup(&s);
}
END_TEST

/* ---- the handler dies with its worker ------------------------------------------------ */

/* A handler with a background child and a pipeline, all sleeping. */
static const char orphan_script[] =
    "#!/bin/sh\n"
    "sleep 300 &\n"
    "echo $! > \"$HANDLER_DIR/child.pid\"\n"
    "echo $$ > \"$HANDLER_DIR/sh.pid.tmp\"\n"
    "mv \"$HANDLER_DIR/sh.pid.tmp\" \"$HANDLER_DIR/sh.pid\"\n"
    "sleep 300 | cat\n";

static long
read_pid(const char *dir, const char *name)
{
    char path[500];
    long pid = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "r"))) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

/* pid runs (exists and is not a zombie waiting for init to reap it) */
static bool
pid_alive(long pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    bool alive = false;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
        return false;
    if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')))
        alive = p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    fclose(f);
    return alive;
}

/* Every live process whose process group is pgid, into pids (max n). */
static int
group_members(long pgid, long *pids, int n)
{
    FILE *p;
    char line[100];
    int k = 0;

    snprintf(line, sizeof line, "ps -e -o pid=,pgid=,stat= 2>/dev/null");
    ck_assert_ptr_nonnull(p = popen(line, "r"));
    while (fgets(line, sizeof line, p)) {
        long pid, g;
        char st[16];
        if (sscanf(line, "%ld %ld %15s", &pid, &g, st) == 3 && g == pgid && st[0] != 'Z' && k < n)
            pids[k++] = pid;
    }
    pclose(p);
    return k;
}

static bool
all_gone(const long *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pid_alive(pids[i]))
            return false;
    return true;
}

START_TEST(test_kill9_core_kills_handler)
{
    struct server s = {0};
    struct agentp core = {0};
    char script[400], handler[450], dirv[400];
    long pids[32], sh, child, pgid;
    bool gone, sh_alive, child_alive;
    int n;
    char *id;
    FILE *f;

    server_start(&s, NULL);
    snprintf(script, sizeof script, "%s/orphan.sh", s.dir);
    f = fopen(script, "w");
    fputs(orphan_script, f);
    fclose(f);
    snprintf(handler, sizeof handler, "AGENT_HANDLER=sh %s", script);
    snprintf(dirv, sizeof dirv, "HANDLER_DIR=%s", s.dir);
    agent_start(&core, &s, "core-1", (const char *const[]){"AGENT_ROLE=core", handler, dirv, NULL});
    id = web_post(&s, "conv-orphan", "sleep please");
    ck_assert_msg(WAIT_FOR(read_pid(s.dir, "sh.pid") > 0 && read_pid(s.dir, "child.pid") > 0, 20000),
                  "the handler did not start");
    sh = read_pid(s.dir, "sh.pid");
    child = read_pid(s.dir, "child.pid");
    pgid = getpgid((pid_t)sh);
    ck_assert_int_gt(pgid, 0);
    /* the shell, its background sleep, the pipeline's sleep and cat */
    ck_assert(WAIT_FOR((n = group_members(pgid, pids, 28)) >= 4, 10000));
    pids[n++] = sh;
    pids[n++] = child;

    agent_kill(&core);
    gone = WAIT_FOR(all_gone(pids, n), 5000);
    sh_alive = pid_alive(sh);
    child_alive = pid_alive(child);
    for (int i = 0; i < n; i++)
        if (pid_alive(pids[i]))
            kill((pid_t)pids[i], SIGKILL);
    ck_assert_msg(gone, "handler processes outlived their killed worker (shell alive: %d, child alive: %d)",
                  sh_alive, child_alive);
    free(id);
    server_cleanup(&s);
}
END_TEST

/* ---- Telegram sender ----------------------------------------------------------------- */

START_TEST(test_telegram_sender)
{
    struct server s = {0};
    struct fakeapi tg = {.fn = tg_api};
    struct agentp a = {0};
    char base[120], *text, *p, *m_long, *m_rate, *m_mig, *m_blocked, *m_missing;
    long first_at = 0, second_at = 0;
    json_t *msg;

    fakeapi_start(&tg);
    server_start(&s, NULL);
    api_env(base, sizeof base, "TELEGRAM_API_BASE", &tg);
    agent_start(&a, &s, "tg-1",
                (const char *const[]){"AGENT_ROLE=telegram", "TELEGRAM_BOT_TOKEN=123:SECRETTOKEN",
                                      base, NULL});
    /* 9000 characters with multi-byte ones -> 3 messages, in order */
    text = malloc(9000 * 3 + 1);
    p = text;
    for (int i = 0; i < 9000; i++)
        p = stpcpy(p, i % 3 ? "\xe2\x82\xac" : "b");
    m_long = outbound(&s, "telegram", "555", text);
    m_rate = outbound(&s, "telegram", "556", "rate me");
    m_mig = outbound(&s, "telegram", "-100", "moved");
    m_blocked = outbound(&s, "telegram", "403", "blocked");
    m_missing = outbound(&s, "telegram", "404", "nobody");

    ck_assert(WAIT_FOR(message_status(&s, m_long, "sent"), 20000));
    ck_assert_int_eq(tg_sends(&tg, 555, NULL), 3);
    {
        char *joined = calloc(1, strlen(text) + 1);
        int first_id = -1;
        fakeapi_lock(&tg);
        for (int i = 0; i < tg.n; i++) {
            json_t *j = json_loads(tg.reqs[i].body, 0, NULL);
            const char *t = json_string_value(json_object_get(j, "text"));
            if (json_integer_value(json_object_get(j, "chat_id")) == 555) {
                ck_assert_uint_le(agent_utf8_chars(t, strlen(t)), 4096);
                strcat(joined, t);
                if (first_id < 0)
                    first_id = 1000 + i;
            }
            json_decref(j);
        }
        fakeapi_unlock(&tg);
        ck_assert_str_eq(joined, text);
        msg = get_message(&s, m_long);
        ck_assert_int_eq(atoi(json_string_value(json_object_get(msg, "channelMessageId"))), first_id);
        json_decref(msg);
        free(joined);
    }
    /* 429: retried no sooner than retry_after */
    ck_assert(WAIT_FOR(message_status(&s, m_rate, "sent"), 20000));
    ck_assert_int_eq(tg_sends(&tg, 556, "rate me"), 2);
    fakeapi_lock(&tg);
    for (int i = 0; i < tg.n; i++)
        if (strstr(tg.reqs[i].body, "rate me"))
            *(first_at ? &second_at : &first_at) = tg.reqs[i].at_ms;
    fakeapi_unlock(&tg);
    ck_assert_msg(second_at - first_at >= 950, "resent after %ld ms, retry_after was 1 s",
                  second_at - first_at);
    /* migrate_to_chat_id: resent once to the new chat */
    ck_assert(WAIT_FOR(message_status(&s, m_mig, "sent"), 20000));
    ck_assert_int_eq(tg_sends(&tg, -100, "moved"), 1);
    ck_assert_int_eq(tg_sends(&tg, -1009999, "moved"), 1);
    /* blocked, chat not found: permanent, sent once */
    ck_assert(WAIT_FOR(message_status(&s, m_blocked, "failed"), 20000));
    ck_assert(WAIT_FOR(message_status(&s, m_missing, "failed"), 20000));
    ck_assert_int_eq(tg_sends(&tg, 403, NULL), 1);
    ck_assert_int_eq(tg_sends(&tg, 404, NULL), 1);
    msg = get_message(&s, m_blocked);
    ck_assert_str_eq(json_string_value(json_object_get(msg, "error")), "403");
    json_decref(msg);

    ck_assert_int_eq(agent_stop(&a), 0);
    ck_assert_int_eq(log_count(a.log, "SECRETTOKEN"), 0);
    ck_assert_int_eq(log_count(a.log, "[telegram] Starting outbound delivery loop..."), 1);
    free(text), free(m_long), free(m_rate), free(m_mig), free(m_blocked), free(m_missing);
    server_cleanup(&s);
    fakeapi_stop(&tg);
}
END_TEST

/* ---- WhatsApp sender: the request and error mapping --------------------------------- */

START_TEST(test_whatsapp_sender)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp a = {0};
    char base[120], *m_ok, *m_perm, *m_rate;
    json_t *j, *job;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&a, &s, "wa-1", WA_ENV("wa-1", base, "4000", "1000"));
    m_ok = outbound(&s, "whatsapp", "15550001", "hello");
    m_perm = outbound(&s, "whatsapp", "15550002", "err131047 too late");
    m_rate = outbound(&s, "whatsapp", "15550003", "err130429 slow down");

    ck_assert(WAIT_FOR(message_status(&s, m_ok, "sent"), 20000));
    fakeapi_lock(&wa);
    ck_assert_str_eq(wa.reqs[0].path, "/1555000/messages");
    ck_assert_str_eq(wa.reqs[0].auth, "Bearer tok-wa-1");
    j = json_loads(wa.reqs[0].body, 0, NULL);
    fakeapi_unlock(&wa);
    ck_assert_str_eq(json_string_value(json_object_get(j, "messaging_product")), "whatsapp");
    ck_assert_str_eq(json_string_value(json_object_get(j, "recipient_type")), "individual");
    ck_assert_str_eq(json_string_value(json_object_get(j, "to")), "15550001");
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "text");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "text"), "body")), "hello");
    json_decref(j);
    j = get_message(&s, m_ok);
    ck_assert_str_eq(json_string_value(json_object_get(j, "channelMessageId")), "wamid.0");
    job = get_job(&s, json_string_value(json_object_get(j, "jobId")));
    ck_assert_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    json_decref(job);
    json_decref(j);
    /* 131047: permanent, once */
    ck_assert(WAIT_FOR(message_status(&s, m_perm, "failed"), 20000));
    ck_assert_int_eq(wa_sends(&wa, NULL, "err131047 too late"), 1);
    j = get_message(&s, m_perm);
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "131047");
    json_decref(j);
    /* 130429: retried with backoff, then sent */
    ck_assert(WAIT_FOR(message_status(&s, m_rate, "sent"), 20000));
    ck_assert_int_eq(wa_sends(&wa, NULL, "err130429 slow down"), 2);

    ck_assert_int_eq(agent_stop(&a), 0);
    ck_assert_int_eq(log_count(a.log, "tok-wa-1"), 0);
    free(m_ok), free(m_perm), free(m_rate);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- A/E: web chat and Telegram answered by the core, delivered once --------------- */

static int
tg_webhook(struct server *s, int update, long long chat, int message_id, const char *text)
{
    char *body = NULL;
    struct resp r;
    long st;

    ck_assert_int_ge(asprintf(&body,
                              "{\"update_id\":%d,\"message\":{\"message_id\":%d,\"date\":1700000000,"
                              "\"chat\":{\"id\":%lld,\"type\":\"private\"},\"from\":{\"id\":%lld,"
                              "\"is_bot\":false,\"first_name\":\"T\"},\"text\":\"%s\"}}",
                              update, message_id, chat, chat, text),
                     0);
    ck_assert_int_eq(http_req_h(s, "POST", "/telegram/webhook", body, strlen(body),
                                "X-Telegram-Bot-Api-Secret-Token", "tg-hook-secret", &r),
                     0);
    st = r.status;
    resp_free(&r);
    free(body);
    return (int)st;
}

static int
conv_out_count(struct server *s, const char *conv, const char *text, const char *status)
{
    char path[300];
    json_t *l, *m;
    size_t i;
    int n = 0;

    snprintf(path, sizeof path, "/v1/conversations/%s/messages", conv);
    l = CALL(s, "GET", path, NULL, 200);
    json_array_foreach(json_object_get(l, "messages"), i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "direction")), "out") &&
            !strcmp(json_string_value(json_object_get(m, "text")), text) &&
            (!status || !strcmp(json_string_value(json_object_get(m, "status")), status)))
            n++;
    }
    json_decref(l);
    return n;
}

START_TEST(test_web_and_telegram_replies)
{
    struct server s = {0};
    struct fakeapi tg = {.fn = tg_api};
    struct agentp core = {0}, tgw = {0};
    char base[120];

    fakeapi_start(&tg);
    server_start(&s, (const char *const[]){"TELEGRAM_WEBHOOK_SECRET=tg-hook-secret", NULL});
    api_env(base, sizeof base, "TELEGRAM_API_BASE", &tg);
    agent_start(&core, &s, "core-1", (const char *const[]){"AGENT_ROLE=core", NULL});
    agent_start(&tgw, &s, "tg-1",
                (const char *const[]){"AGENT_ROLE=telegram", "TELEGRAM_BOT_TOKEN=123:SECRETTOKEN",
                                      base, NULL});
    ck_assert(WAIT_FOR(log_count(core.log, "[agent] Starting agent loop — subscribing to pending jobs..."), 10000));
    ck_assert_int_eq(log_count(core.log, "[main] Agent is running (role: core)"), 1);
    ck_assert(WAIT_FOR(log_count(tgw.log, "[telegram] Starting outbound delivery loop..."), 10000));

    /* A: web chat */
    free(web_post(&s, "web-chat-1", "hi web"));
    ck_assert(WAIT_FOR(conv_out_count(&s, "web-chat-1", "echo: hi web", "sent") == 1, 20000));

    /* E: Telegram, through the webhook; Telegram's retry of the same update is a duplicate */
    ck_assert_int_eq(tg_webhook(&s, 1, 4242, 7, "hi tg"), 200);
    ck_assert_int_eq(tg_webhook(&s, 1, 4242, 7, "hi tg"), 200);
    ck_assert(WAIT_FOR(conv_out_count(&s, "telegram:default:4242", "echo: hi tg", "sent") == 1, 20000));
    /* a later message went through too: the first reply was not sent again */
    ck_assert_int_eq(tg_webhook(&s, 2, 4242, 8, "again"), 200);
    ck_assert(WAIT_FOR(conv_out_count(&s, "telegram:default:4242", "echo: again", "sent") == 1, 20000));
    ck_assert_int_eq(tg_sends(&tg, 4242, "echo: hi tg"), 1);
    ck_assert_int_eq(tg_sends(&tg, 4242, "echo: again"), 1);
    ck_assert_int_eq(tg_sends(&tg, 4242, NULL), 2);
    ck_assert_int_eq(conv_out_count(&s, "web-chat-1", "echo: hi web", NULL), 1);

    ck_assert_int_eq(agent_stop(&core), 0);
    ck_assert_int_eq(agent_stop(&tgw), 0);
    server_cleanup(&s);
    fakeapi_stop(&tg);
}
END_TEST

/* A backlog is worked off with one request per job: the core worker
 * reports each job and takes the next in the same request. */
START_TEST(test_backlog_one_request_per_job)
{
    struct server s = {0};
    struct agentp core = {0};
    char conv[32], text[32];

    server_start(&s, NULL);
    for (int i = 0; i < 20; i++) {
        snprintf(conv, sizeof conv, "backlog-%d", i);
        snprintf(text, sizeof text, "m%d", i);
        free(web_post(&s, conv, text));
    }
    agent_start(&core, &s, "core-1", (const char *const[]){"AGENT_ROLE=core", NULL});
    for (int i = 0; i < 20; i++) {
        snprintf(conv, sizeof conv, "backlog-%d", i);
        snprintf(text, sizeof text, "echo: m%d", i);
        ck_assert(WAIT_FOR(conv_out_count(&s, conv, text, "sent") == 1, 20000));
    }
    ck_assert_int_eq(server_metric(&s, "baton_http_requests_total{route=\"/v1/jobs/{id}/complete\","
                                       "method=\"POST\",status=\"200\"}"), 20);
    /* the first claim only: each job after it came with a completion */
    ck_assert_int_le(server_metric(&s, "baton_http_requests_total{route=\"/v1/jobs/claim\",method=\"POST\","
                                       "status=\"200\"}"), 1);
    ck_assert_int_eq(agent_stop(&core), 0);
    server_cleanup(&s);
}
END_TEST

/* ---- C and J: one holder sends everything; the standby sends nothing ------------------ */

static void
wait_holder(struct agentp *holder, const char *name, struct agentp *standby)
{
    char line[200];

    snprintf(line, sizeof line, "[whatsapp] Lease acquired for account 'default' by '%s'", name);
    ck_assert_msg(WAIT_FOR(log_count(holder->log, line) >= 1, 15000), "%s did not acquire", name);
    if (standby) {
        snprintf(line, sizeof line, "[whatsapp] Lease held by '%s' for account 'default', retrying...",
                 name);
        ck_assert_msg(WAIT_FOR(log_count(standby->log, line) >= 1, 15000),
                      "the standby did not log the contention");
    }
}

START_TEST(test_one_holder_sends)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp w1 = {0}, w2 = {0};
    char base[120], *ids[20], text[32], *out;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "2000", "500"));
    wait_holder(&w1, "wa-1", NULL);
    agent_start(&w2, &s, "wa-2", WA_ENV("wa-2", base, "2000", "500"));
    wait_holder(&w1, "wa-1", &w2);
    ck_assert_int_eq(log_count(w1.log, "[whatsapp] Starting outbound delivery loop..."), 1);
    ck_assert_int_eq(log_count(w1.log, "[main] Agent is running (role: whatsapp)"), 1);

    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof text, "c-%d", i);
        ids[i] = outbound(&s, "whatsapp", "15550100", text);
    }
    for (int i = 0; i < 20; i++)
        ck_assert(WAIT_FOR(message_status(&s, ids[i], "sent"), 20000));
    ck_assert_int_eq(wa_sends(&wa, NULL, NULL), 20);
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-1", NULL), 20);
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof text, "c-%d", i);
        ck_assert_int_eq(wa_sends(&wa, NULL, text), 1);
        free(ids[i]);
    }
    ck_assert_int_eq(log_count(w2.log, "Lease acquired"), 0);

    /* a healthy run: nothing to alert on */
    ck_assert_msg(alerts_check(&s, &out) == 0, "alerts check on a healthy run: %s", out);
    free(out);
    ck_assert_int_eq(agent_stop(&w2), 0);
    ck_assert_int_eq(agent_stop(&w1), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- D: core only queues WhatsApp replies; they go out once a sender starts ------------- */

START_TEST(test_core_only_queues_whatsapp)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp core = {0}, w1 = {0};
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":"
                       "[{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\","
                       "\"metadata\":{\"phone_number_id\":\"1555000\"},\"messages\":[{\"from\":"
                       "\"15550001\",\"id\":\"wamid.IN1\",\"timestamp\":\"1700000000\",\"type\":"
                       "\"text\",\"text\":{\"body\":\"hola\"}}]}}]}]}";
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char sig[80] = "sha256=", base[120];
    crypto_auth_hmacsha256_state st;
    struct resp r;
    json_t *l;

    fakeapi_start(&wa);
    server_start(&s, (const char *const[]){"WHATSAPP_APP_SECRET=app-secret", NULL});
    agent_start(&core, &s, "core-1", (const char *const[]){"AGENT_ROLE=core", NULL});
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)"app-secret", 10);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(sig + 7, sizeof sig - 7, mac, sizeof mac);
    ck_assert_int_eq(http_req_h(&s, "POST", "/whatsapp/webhook", body, strlen(body),
                                "X-Hub-Signature-256", sig, &r), 0);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);

    ck_assert(WAIT_FOR(conv_out_count(&s, "whatsapp:default:15550001", "echo: hola", "queued") == 1,
                       20000));
    l = CALL(&s, "GET", "/v1/jobs?queue=outbound.whatsapp.default&status=pending", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(l, "jobs")), 1);
    json_decref(l);
    ck_assert_int_eq(fakeapi_count(&wa), 0);

    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "2000", "500"));
    ck_assert(WAIT_FOR(conv_out_count(&s, "whatsapp:default:15550001", "echo: hola", "sent") == 1,
                       20000));
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-1", "echo: hola"), 1);
    ck_assert_int_eq(fakeapi_count(&wa), 1);
    ck_assert_int_eq(agent_stop(&w1), 0);
    ck_assert_int_eq(agent_stop(&core), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- G: SIGTERM of the holder hands the lease over at once ------------------------------ */

START_TEST(test_sigterm_handover)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp w1 = {0}, w2 = {0};
    char base[120], *id;
    long t0, took;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    /* a long ttl: the handover must not wait for it */
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "10000", "1000"));
    wait_holder(&w1, "wa-1", NULL);
    agent_start(&w2, &s, "wa-2", WA_ENV("wa-2", base, "10000", "1000"));
    wait_holder(&w1, "wa-1", &w2);

    t0 = now_ms();
    kill(w1.pid, SIGTERM);
    ck_assert(WAIT_FOR(log_count(w2.log, "Lease acquired for account 'default' by 'wa-2'"), 15000));
    took = now_ms() - t0;
    /* the lease, renewed at most 1 s before, would have expired 9-10 s after */
    ck_assert_msg(took < 9000 - 1000, "standby took over %ld ms after SIGTERM (ttl 10000)", took);
    ck_assert_int_eq(agent_stop(&w1), 0);
    ck_assert_int_eq(log_count(w1.log, "Lease released for account 'default'"), 1);

    id = outbound(&s, "whatsapp", "15550200", "after handover");
    ck_assert(WAIT_FOR(message_status(&s, id, "sent"), 20000));
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-2", "after handover"), 1);
    free(id);
    ck_assert_int_eq(agent_stop(&w2), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- H: kill -9 of the holder during a stream of messages ------------------------------- */

#define STREAM_N 40

struct stream {
    struct server *s;
    char *ids[STREAM_N];
};

static void *
post_stream(void *arg)
{
    struct stream *st = arg;

    for (int i = 0; i < STREAM_N; i++) {
        char body[200];
        struct resp r;
        snprintf(body, sizeof body,
                 "{\"channel\":\"whatsapp\",\"accountId\":\"default\",\"to\":\"15550300\",\"text\":\"h-%d\"}", i);
        if (http_req(st->s, "POST", "/v1/outbound", body, strlen(body), NULL, NULL, &r) == 0 &&
            r.status == 201)
            st->ids[i] = strdup(json_string_value(json_object_get(r.json, "messageId")));
        resp_free(&r);
        msleep(100);
    }
    return NULL;
}

START_TEST(test_kill9_failover)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api, .delay_ms = 60};
    struct agentp w1 = {0}, w2 = {0};
    struct stream st = {.s = &s};
    char base[120], text[32];
    json_t *ev;
    pthread_t th;
    long t0, took;
    int dups = 0, w1_last = -1;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "2000", "500"));
    wait_holder(&w1, "wa-1", NULL);
    agent_start(&w2, &s, "wa-2", WA_ENV("wa-2", base, "2000", "500"));
    wait_holder(&w1, "wa-1", &w2);

    pthread_create(&th, NULL, post_stream, &st);
    ck_assert(WAIT_FOR(wa_sends(&wa, NULL, NULL) >= 10, 20000));
    t0 = now_ms();
    agent_kill(&w1);
    ck_assert(WAIT_FOR(log_count(w2.log, "Lease acquired for account 'default' by 'wa-2'"), 20000));
    took = now_ms() - t0;
    ck_assert_msg(took < 2000 + 3000 + 2000, "standby took over %ld ms after kill -9 (ttl 2000)", took);
    pthread_join(th, NULL);
    for (int i = 0; i < STREAM_N; i++) {
        ck_assert_ptr_nonnull(st.ids[i]);
        ck_assert_msg(WAIT_FOR(message_status(&s, st.ids[i], "sent"), 30000), "h-%d not sent", i);
    }
    /* the last send of the killed worker is the only one that may have been
     * in flight (sent, not completed): only it may go out twice */
    fakeapi_lock(&wa);
    for (int i = 0; i < wa.n; i++)
        if (!strcmp(wa.reqs[i].auth, "Bearer tok-wa-1"))
            w1_last = i;
    ck_assert_int_ge(w1_last, 0);
    fakeapi_unlock(&wa);
    ev = CALL(&s, "GET", "/v1/events?event=whatsapp.outbound.sent&limit=1000", NULL, 200);
    for (int i = 0; i < STREAM_N; i++) {
        int n, by_w2;
        const char *owner = NULL;
        size_t k;
        json_t *e;
        snprintf(text, sizeof text, "h-%d", i);
        n = wa_sends(&wa, NULL, text);
        by_w2 = wa_sends(&wa, "Bearer tok-wa-2", text);
        ck_assert_msg(n >= 1, "%s never sent", text);
        json_array_foreach(json_object_get(ev, "events"), k, e)
            if (!strcmp(json_string_value(json_object_get(e, "messageId")) ?: "", st.ids[i]))
                owner = json_string_value(json_object_get(e, "ownerId"));
        ck_assert_ptr_nonnull(owner);
        /* completed by wa-1: never sent again by wa-2 */
        if (!strcmp(owner, "wa-1"))
            ck_assert_msg(by_w2 == 0, "%s was completed by wa-1 and sent again by wa-2", text);
        if (n > 1) {
            json_t *j;
            const char *t;
            dups++;
            ck_assert_int_eq(n, 2);
            fakeapi_lock(&wa);
            t = body_str(&wa.reqs[w1_last], &j, "text", "body");
            ck_assert_msg(t && !strcmp(t, text), "%s sent twice but was not in flight at the kill", text);
            json_decref(j);
            fakeapi_unlock(&wa);
        }
        free(st.ids[i]);
    }
    json_decref(ev);
    ck_assert_int_le(dups, 1);
    ck_assert_int_eq(agent_stop(&w2), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- I: heartbeats keep the lease for many ttls under traffic ---------------------------- */

static long long
lease_token(struct server *s, char *owner, size_t n)
{
    json_t *j = CALL(s, "GET", "/v1/leases/whatsapp/default", NULL, 200);
    json_t *l = json_object_get(j, "lease") ? json_object_get(j, "lease") : j;
    long long t = json_integer_value(json_object_get(l, "token"));

    if (owner)
        snprintf(owner, n, "%s", json_string_value(json_object_get(l, "ownerId")) ?: "");
    json_decref(j);
    return t;
}

START_TEST(test_heartbeats_keep_lease)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp w1 = {0}, w2 = {0};
    char base[120], owner[64], text[32];
    long long token;
    long end;
    int sent = 0;
    json_t *ev;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "2000", "500"));
    wait_holder(&w1, "wa-1", NULL);
    agent_start(&w2, &s, "wa-2", WA_ENV("wa-2", base, "2000", "500"));
    wait_holder(&w1, "wa-1", &w2);
    token = lease_token(&s, owner, sizeof owner);
    ck_assert_str_eq(owner, "wa-1");

    end = now_ms() + 5 * 2000;                  /* 5 ttls */
    while (now_ms() < end) {
        snprintf(text, sizeof text, "i-%d", sent++);
        free(outbound(&s, "whatsapp", "15550400", text));
        msleep(250);
    }
    ck_assert(WAIT_FOR(wa_sends(&wa, NULL, NULL) == sent, 20000));
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-1", NULL), sent);
    ck_assert_int_eq(lease_token(&s, owner, sizeof owner), token);
    ck_assert_str_eq(owner, "wa-1");
    ev = CALL(&s, "GET", "/v1/events?event=whatsapp.lease.heartbeat.lost", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 0);
    json_decref(ev);
    ck_assert_int_eq(log_count(w1.log, "Lease heartbeat lost"), 0);
    ck_assert_int_eq(log_count(w2.log, "Lease acquired"), 0);
    ck_assert_int_eq(agent_stop(&w2), 0);
    ck_assert_int_eq(agent_stop(&w1), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

/* ---- a stopped holder loses the lease and, resumed, must not send ----------------------- */

START_TEST(test_sigstop_fencing)
{
    struct server s = {0};
    struct fakeapi wa = {.fn = wa_api};
    struct agentp w1 = {0}, w2 = {0};
    char base[120], *ids[10], text[32], *out, body[200];
    long long old_token;
    long t0, took;
    struct resp r;

    fakeapi_start(&wa);
    server_start(&s, NULL);
    api_env(base, sizeof base, "WHATSAPP_API_BASE", &wa);
    agent_start(&w1, &s, "wa-1", WA_ENV("wa-1", base, "2000", "500"));
    wait_holder(&w1, "wa-1", NULL);
    agent_start(&w2, &s, "wa-2", WA_ENV("wa-2", base, "2000", "500"));
    wait_holder(&w1, "wa-1", &w2);
    old_token = lease_token(&s, NULL, 0);

    kill(w1.pid, SIGSTOP);
    t0 = now_ms();
    ck_assert(WAIT_FOR(log_count(w2.log, "Lease acquired for account 'default' by 'wa-2'"), 20000));
    took = now_ms() - t0;
    ck_assert_msg(took < 2000 + 3000 + 2000, "standby took over %ld ms after SIGSTOP", took);
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "s-%d", i);
        ids[i] = outbound(&s, "whatsapp", "15550500", text);
    }
    for (int i = 0; i < 5; i++)
        ck_assert(WAIT_FOR(message_status(&s, ids[i], "sent"), 20000));

    kill(w1.pid, SIGCONT);
    ck_assert(WAIT_FOR(log_count(w1.log, "[whatsapp] Lease heartbeat lost for account 'default' (owner 'wa-1')"),
                       15000));
    for (int i = 5; i < 10; i++) {
        snprintf(text, sizeof text, "s-%d", i);
        ids[i] = outbound(&s, "whatsapp", "15550500", text);
    }
    for (int i = 5; i < 10; i++)
        ck_assert(WAIT_FOR(message_status(&s, ids[i], "sent"), 20000));
    ck_assert(WAIT_FOR(log_count(w1.log, "[whatsapp] Lease held by 'wa-2' for account 'default', retrying..."),
                       15000));
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-1", NULL), 0);
    ck_assert_int_eq(wa_sends(&wa, "Bearer tok-wa-2", NULL), 10);
    /* the fencing the resumed worker runs into */
    snprintf(body, sizeof body,
             "{\"workerId\":\"wa-1\",\"queue\":\"outbound.whatsapp.default\",\"leaseToken\":%lld}",
             old_token);
    ck_assert_int_eq(http_req(&s, "POST", "/v1/jobs/claim", body, strlen(body), NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 409);
    ck_assert_ptr_nonnull(strstr(r.body, "lease_not_held"));
    resp_free(&r);

    /* the loss is alertable */
    ck_assert_int_eq(alerts_check(&s, &out), 2);
    {
        bool found = false;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            found |= !strncmp(line, "whatsapp.lease.heartbeat.lost", 29);
        ck_assert_msg(found, "no heartbeat.lost finding line: %s", out);
    }
    free(out);
    for (int i = 0; i < 10; i++)
        free(ids[i]);
    ck_assert_int_eq(agent_stop(&w1), 0);
    ck_assert_int_eq(agent_stop(&w2), 0);
    server_cleanup(&s);
    fakeapi_stop(&wa);
}
END_TEST

Suite *
suite_scenarios(void)
{
    Suite *s = suite_create("scenarios");
    TCase *unit = tcase_create("agent_unit"), *tc = tcase_create("scenarios");

    tcase_set_timeout(unit, 120);
    tcase_add_test(unit, test_config_refusals);
    tcase_add_test(unit, test_split_utf8);
    tcase_add_test(unit, test_error_mapping);
    tcase_add_test(unit, test_whatsapp_disabled);
    tcase_add_test(unit, test_handler_contract);
    tcase_add_test(unit, test_kill9_core_kills_handler);
    tcase_add_test(unit, test_telegram_sender);
    tcase_add_test(unit, test_whatsapp_sender);
    suite_add_tcase(s, unit);

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_web_and_telegram_replies);
    tcase_add_test(tc, test_backlog_one_request_per_job);
    tcase_add_test(tc, test_one_holder_sends);
    tcase_add_test(tc, test_core_only_queues_whatsapp);
    tcase_add_test(tc, test_sigterm_handover);
    tcase_add_test(tc, test_kill9_failover);
    tcase_add_test(tc, test_heartbeats_keep_lease);
    tcase_add_test(tc, test_sigstop_fencing);
    suite_add_tcase(s, tc);
    return s;
}
