/* check_console.c -- the web console and the web chat: the HTTP security
 * properties (sign-in, session cookie flags, CSRF, CSP, visitor tokens,
 * chat limits, CORS, BATON_WEBCHAT=off), streaming progress of a reply,
 * and the browser tests (tests/browser/console.mjs in Debian's chromium
 * with playwright-core) against a real batond and a real baton-agent. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "harness.h"

/* ---- a request that shows answer headers and sends any headers --------- */

struct wresp {
    long status;
    char *body;
    char head[8192];        /* answer headers, as received */
    json_t *json;
};

static size_t
collect_body(char *p, size_t sz, size_t n, void *arg)
{
    char **b = arg;
    size_t old = *b ? strlen(*b) : 0;
    char *nb = realloc(*b, old + sz * n + 1);

    if (!nb)
        return 0;
    memcpy(nb + old, p, sz * n);
    nb[old + sz * n] = 0;
    *b = nb;
    return sz * n;
}

static size_t
collect_head(char *p, size_t sz, size_t n, void *arg)
{
    struct wresp *w = arg;
    size_t old = strlen(w->head);

    if (old + sz * n < sizeof w->head - 1) {
        memcpy(w->head + old, p, sz * n);
        w->head[old + sz * n] = 0;
    }
    return sz * n;
}

/* method path body, then NULL-terminated "Name: value" headers. */
static void
web(struct server *s, const char *method, const char *path, const char *body, const char *const *headers,
    struct wresp *w)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[1024];

    memset(w, 0, sizeof *w);
    snprintf(url, sizeof url, "%s%s", s->url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, w);
    for (int i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &w->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (w->body)
        w->json = json_loads(w->body, 0, NULL);
}

static void
wfree(struct wresp *w)
{
    free(w->body);
    json_decref(w->json);
    memset(w, 0, sizeof *w);
}

/* The value of answer header name (first one), into buf; NULL when absent. */
static const char *
header(const struct wresp *w, const char *name, char *buf, size_t n)
{
    size_t len = strlen(name);

    for (const char *p = w->head; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncasecmp(p, name, len) && p[len] == ':') {
            const char *v = p + len + 1;
            size_t vl;
            while (*v == ' ')
                v++;
            vl = strcspn(v, "\r\n");
            snprintf(buf, n, "%.*s", (int)vl, v);
            return buf;
        }
    }
    return NULL;
}

/* The error code of a SPEC error body, "" when none. */
static const char *
err_code(const struct wresp *w)
{
    const char *c = json_string_value(json_object_get(json_object_get(w->json, "error"), "code"));
    return c ? c : "";
}

/* Sign in; fills cookie ("Cookie: baton_session=...") and csrf header. */
static void
sign_in(struct server *s, char *cookie, size_t cn, char *csrf, size_t xn)
{
    struct wresp w;
    char sc[512];

    web(s, "POST", "/console/api/login", "{\"secret\":\"" TEST_SECRET "\"}", NULL, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_nonnull(header(&w, "Set-Cookie", sc, sizeof sc));
    snprintf(cookie, cn, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    snprintf(csrf, xn, "X-CSRF-Token: %s", json_string_value(json_object_get(w.json, "csrf")));
    wfree(&w);
}

static int
jobs_in(struct server *s, const char *queue)
{
    char path[200];
    json_t *j;
    int n;

    snprintf(path, sizeof path, "/v1/jobs?queue=%s", queue);
    j = CALL(s, "GET", path, NULL, 200);
    n = (int)json_array_size(json_object_get(j, "jobs"));
    json_decref(j);
    return n;
}

/* ---- console sign-in, sessions, CSRF ----------------------------------------- */

START_TEST(test_console_needs_session)
{
    struct server s = {0};
    struct wresp w;
    char v[512];

    server_start(&s, NULL);
    web(&s, "GET", "/", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 302);
    ck_assert_str_eq(header(&w, "Location", v, sizeof v), "/console");
    wfree(&w);
    /* no HTML of the console without a session: a redirect to sign-in */
    web(&s, "GET", "/console", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 303);
    ck_assert_str_eq(header(&w, "Location", v, sizeof v), "/console/login");
    ck_assert(!w.body || !strstr(w.body, "console.js"));
    wfree(&w);
    web(&s, "GET", "/console/console.js", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 401);
    ck_assert_str_eq(err_code(&w), "unauthorized");
    wfree(&w);
    /* a forged or stale cookie is no session */
    web(&s, "GET", "/v1/queues", NULL,
        (const char *[]){"Cookie: baton_session=00000000000000000000000000000000000000000000000000000000000000aa", NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    web(&s, "GET", "/console/login", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_nonnull(strstr(header(&w, "Content-Type", v, sizeof v), "text/html"));
    ck_assert_ptr_nonnull(strstr(w.body, "<form id=\"login\">"));
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

/* development without a secret: the console opens, and says so */
START_TEST(test_no_secret_console_warns)
{
    struct server s = {0};
    struct wresp w;

    server_start(&s, (const char *[]){"AGENT_SECRET=", NULL});
    web(&s, "GET", "/console", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_nonnull(strstr(w.body, "No secret set"));
    wfree(&w);
    web(&s, "GET", "/console/api/session", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert(json_is_false(json_object_get(w.json, "secretSet")));
    ck_assert(json_is_true(json_object_get(w.json, "signedIn")));
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_login_cookie_flags)
{
    struct server s = {0}, p = {0};
    struct wresp w;
    char v[512];

    server_start(&s, NULL);
    web(&s, "POST", "/console/api/login", "{\"secret\":\"wrong\"}", NULL, &w);
    ck_assert_int_eq(w.status, 401);
    ck_assert_str_eq(err_code(&w), "unauthorized");
    ck_assert_ptr_null(header(&w, "Set-Cookie", v, sizeof v));
    wfree(&w);
    web(&s, "POST", "/console/api/login", "{\"secret\":\"" TEST_SECRET "\"}",
        (const char *[]){"X-Forwarded-Proto: https", NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_nonnull(header(&w, "Set-Cookie", v, sizeof v));
    ck_assert_ptr_nonnull(strstr(v, "baton_session="));
    ck_assert_ptr_nonnull(strstr(v, "HttpOnly"));
    ck_assert_ptr_nonnull(strstr(v, "SameSite=Strict"));
    ck_assert_ptr_nonnull(strstr(v, "Max-Age="));
    ck_assert_ptr_null(strstr(v, "Secure"));    /* a proxy header is not believed by default */
    ck_assert_ptr_null(strstr(w.body, TEST_SECRET));
    wfree(&w);
    server_cleanup(&s);

    /* behind a proxy that says https: Secure */
    server_start(&p, (const char *[]){"BATON_TRUST_PROXY=1", NULL});
    web(&p, "POST", "/console/api/login", "{\"secret\":\"" TEST_SECRET "\"}",
        (const char *[]){"X-Forwarded-Proto: https", NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_nonnull(strstr(header(&w, "Set-Cookie", v, sizeof v), "; Secure"));
    wfree(&w);
    server_cleanup(&p);
}
END_TEST

START_TEST(test_csrf_required)
{
    struct server s = {0};
    struct wresp w;
    char cookie[300], csrf[200];
    const char *job = "{\"queue\":\"csrf\",\"payload\":{}}";

    server_start(&s, NULL);
    sign_in(&s, cookie, sizeof cookie, csrf, sizeof csrf);
    /* reads need the session only */
    web(&s, "GET", "/v1/queues", NULL, (const char *[]){cookie, NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    wfree(&w);
    /* a write without the CSRF token, or with another one, is refused and changes nothing */
    web(&s, "POST", "/v1/jobs", job, (const char *[]){cookie, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    ck_assert_str_eq(err_code(&w), "unauthorized");
    wfree(&w);
    web(&s, "POST", "/v1/jobs", job,
        (const char *[]){cookie, "X-CSRF-Token: 0000000000000000000000000000000000000000000000000000000000000000", NULL},
        &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    web(&s, "DELETE", "/v1/sessions/whatsapp/default", NULL, (const char *[]){cookie, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    ck_assert_int_eq(jobs_in(&s, "csrf"), 0);
    /* with it: the ordinary route answers */
    web(&s, "POST", "/v1/jobs", job, (const char *[]){cookie, csrf, NULL}, &w);
    ck_assert_int_eq(w.status, 201);
    wfree(&w);
    ck_assert_int_eq(jobs_in(&s, "csrf"), 1);
    /* the CSRF token alone is nothing */
    web(&s, "POST", "/v1/jobs", job, (const char *[]){csrf, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    /* sign-out ends the session */
    web(&s, "POST", "/console/api/logout", "{}", (const char *[]){cookie, csrf, NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    wfree(&w);
    web(&s, "GET", "/v1/queues", NULL, (const char *[]){cookie, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_login_failures_slowed)
{
    struct server s = {0};
    struct wresp w;
    char v[64];

    static const char *const env[] = {"BATON_AUTH_FAILURE_BURST=5", "BATON_LIMIT_LOOPBACK=1", NULL};

    /* the same limit as every other credential (BATON_AUTH_FAILURE_*) */
    server_start(&s, env);
    for (int i = 0; i < 5; i++) {
        web(&s, "POST", "/console/api/login", "{\"secret\":\"guess\"}", NULL, &w);
        ck_assert_int_eq(w.status, 401);
        wfree(&w);
    }
    web(&s, "POST", "/console/api/login", "{\"secret\":\"guess\"}", NULL, &w);
    ck_assert_int_eq(w.status, 429);
    ck_assert_str_eq(err_code(&w), "rate_limited");
    ck_assert_ptr_nonnull(header(&w, "Retry-After", v, sizeof v));
    ck_assert_int_ge(atoi(v), 1);
    wfree(&w);
    /* while slowed down even the right secret waits (no oracle) */
    web(&s, "POST", "/console/api/login", "{\"secret\":\"" TEST_SECRET "\"}", NULL, &w);
    ck_assert_int_eq(w.status, 429);
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_pages_headers)
{
    struct server s = {0};
    struct wresp w;
    char v[512];
    static const char *const pages[] = {"/console/login", "/chat", NULL};

    server_start(&s, NULL);
    for (int i = 0; pages[i]; i++) {
        web(&s, "GET", pages[i], NULL, NULL, &w);
        ck_assert_int_eq(w.status, 200);
        ck_assert_ptr_nonnull(header(&w, "Content-Security-Policy", v, sizeof v));
        ck_assert_ptr_nonnull(strstr(v, "default-src 'none'"));
        ck_assert_ptr_nonnull(strstr(v, "script-src 'self'"));
        ck_assert_ptr_nonnull(strstr(v, "frame-ancestors 'none'"));
        ck_assert_ptr_null(strstr(v, "http"));      /* no other origin anywhere */
        ck_assert_str_eq(header(&w, "Cache-Control", v, sizeof v), "no-store");
        ck_assert_str_eq(header(&w, "X-Content-Type-Options", v, sizeof v), "nosniff");
        ck_assert_ptr_null(strstr(w.body, "http://"));
        ck_assert_ptr_null(strstr(w.body, "https://"));
        wfree(&w);
    }
    web(&s, "GET", "/static/style.css", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_str_eq(header(&w, "Content-Type", v, sizeof v), "text/css; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(header(&w, "Cache-Control", v, sizeof v), "max-age="));
    wfree(&w);
    web(&s, "GET", "/static/chat.js", NULL, NULL, &w);
    ck_assert_str_eq(header(&w, "Content-Type", v, sizeof v), "text/javascript; charset=utf-8");
    wfree(&w);
    /* the console's script is not a public asset */
    web(&s, "GET", "/static/console.js", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 404);
    wfree(&w);
    web(&s, "GET", "/static/..%2fbatond.h", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 404);
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

/* ---- the web chat ----------------------------------------------------------------- */

struct chat {
    char conv[80], token[100], auth[140];
};

static void
chat_open(struct server *s, struct chat *c)
{
    struct wresp w;

    web(s, "POST", "/chat/api/open", "{}", NULL, &w);
    ck_assert_int_eq(w.status, 201);
    snprintf(c->conv, sizeof c->conv, "%s", json_string_value(json_object_get(w.json, "conversationId")));
    snprintf(c->token, sizeof c->token, "%s", json_string_value(json_object_get(w.json, "token")));
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", c->token);
    wfree(&w);
}

static long
chat_post(struct server *s, const struct chat *as, const char *conv, const char *text, struct wresp *w)
{
    char path[200], body[4096];

    snprintf(path, sizeof path, "/chat/api/conversations/%s/messages", conv);
    snprintf(body, sizeof body, "{\"text\":\"%s\"}", text);
    web(s, "POST", path, body, (const char *[]){as->auth, NULL}, w);
    return w->status;
}

START_TEST(test_visitor_token_scope)
{
    struct server s = {0};
    struct chat a, b;
    struct wresp w;
    char path[200];

    server_start(&s, NULL);
    chat_open(&s, &a);
    chat_open(&s, &b);
    ck_assert_str_ne(a.conv, b.conv);
    ck_assert_int_eq(chat_post(&s, &a, a.conv, "mine", &w), 201);
    wfree(&w);
    /* b's token on a's conversation: refused both ways, nothing written */
    ck_assert_int_eq(chat_post(&s, &b, a.conv, "intrusion", &w), 401);
    ck_assert_str_eq(err_code(&w), "unauthorized");
    wfree(&w);
    snprintf(path, sizeof path, "/chat/api/conversations/%s/messages", a.conv);
    web(&s, "GET", path, NULL, (const char *[]){b.auth, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    web(&s, "GET", path, NULL, (const char *[]){a.auth, NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(w.json, "messages")), 1);
    wfree(&w);
    /* no other route takes a visitor token */
    snprintf(path, sizeof path, "/v1/conversations/%s/messages", a.conv);
    web(&s, "GET", path, NULL, (const char *[]){a.auth, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    web(&s, "GET", "/v1/queues", NULL, (const char *[]){a.auth, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    web(&s, "GET", "/console", NULL, (const char *[]){a.auth, NULL}, &w);
    ck_assert_int_eq(w.status, 303);
    wfree(&w);
    /* nor does the service secret open the chat routes */
    web(&s, "GET", "/chat/api/conversations/web_00000000000000000000000000000000/messages", NULL,
        (const char *[]){"Authorization: Bearer " TEST_SECRET, NULL}, &w);
    ck_assert_int_eq(w.status, 401);
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_chat_limits)
{
    struct server s = {0};
    struct chat a, b, c;
    struct wresp w;
    char v[64], big[200];

    server_start(&s, (const char *[]){"BATON_WEBCHAT_RATE=3", "BATON_WEBCHAT_MAX_TEXT=50", NULL});
    chat_open(&s, &a);
    chat_open(&s, &b);
    chat_open(&s, &c);
    memset(big, 'x', 51);
    big[51] = 0;
    ck_assert_int_eq(chat_post(&s, &a, a.conv, big, &w), 400);
    ck_assert_str_eq(err_code(&w), "bad_request");
    wfree(&w);
    /* per conversation: 3 a minute */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chat_post(&s, &a, a.conv, "hi", &w), 201);
        wfree(&w);
    }
    ck_assert_int_eq(chat_post(&s, &a, a.conv, "hi", &w), 429);
    ck_assert_str_eq(err_code(&w), "rate_limited");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_object_get(w.json, "error"), "message")),
                                 "conversation"));
    ck_assert_ptr_nonnull(header(&w, "Retry-After", v, sizeof v));
    wfree(&w);
    /* per address: 9 a minute (the refused one above counted: 4 taken) */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chat_post(&s, &b, b.conv, "hi", &w), 201);
        wfree(&w);
    }
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(chat_post(&s, &c, c.conv, "hi", &w), 201);
        wfree(&w);
    }
    ck_assert_int_eq(chat_post(&s, &c, c.conv, "hi", &w), 429);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_object_get(w.json, "error"), "message")),
                                 "address"));
    wfree(&w);
    ck_assert_int_eq(jobs_in(&s, "agent"), 8);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_webchat_off)
{
    struct server s = {0};
    struct wresp w;

    server_start(&s, (const char *[]){"BATON_WEBCHAT=off", NULL});
    web(&s, "GET", "/chat", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 404);
    ck_assert_str_eq(err_code(&w), "not_found");
    wfree(&w);
    web(&s, "POST", "/chat/api/open", "{}", NULL, &w);
    ck_assert_int_eq(w.status, 404);
    ck_assert_str_eq(err_code(&w), "not_found");
    wfree(&w);
    web(&s, "POST", "/chat/api/conversations/web_00000000000000000000000000000000/messages", "{\"text\":\"x\"}",
        NULL, &w);
    ck_assert_int_eq(w.status, 404);
    wfree(&w);
    /* the console is unaffected */
    web(&s, "GET", "/console/login", NULL, NULL, &w);
    ck_assert_int_eq(w.status, 200);
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_cors_chat_only)
{
    struct server s = {0};
    struct wresp w;
    char v[256];

    server_start(&s, (const char *[]){"BATON_WEBCHAT_ORIGINS=https://shop.example, https://other.example", NULL});
    web(&s, "OPTIONS", "/chat/api/open", NULL, (const char *[]){"Origin: https://shop.example", NULL}, &w);
    ck_assert_int_eq(w.status, 204);
    ck_assert_str_eq(header(&w, "Access-Control-Allow-Origin", v, sizeof v), "https://shop.example");
    ck_assert_ptr_nonnull(strstr(header(&w, "Access-Control-Allow-Headers", v, sizeof v), "Authorization"));
    wfree(&w);
    web(&s, "POST", "/chat/api/open", "{}", (const char *[]){"Origin: https://other.example", NULL}, &w);
    ck_assert_int_eq(w.status, 201);
    ck_assert_str_eq(header(&w, "Access-Control-Allow-Origin", v, sizeof v), "https://other.example");
    wfree(&w);
    web(&s, "POST", "/chat/api/open", "{}", (const char *[]){"Origin: https://evil.example", NULL}, &w);
    ck_assert_ptr_null(header(&w, "Access-Control-Allow-Origin", v, sizeof v));
    wfree(&w);
    /* never on the API or the console */
    web(&s, "GET", "/v1/queues", NULL,
        (const char *[]){"Origin: https://shop.example", "Authorization: Bearer " TEST_SECRET, NULL}, &w);
    ck_assert_int_eq(w.status, 200);
    ck_assert_ptr_null(header(&w, "Access-Control-Allow-Origin", v, sizeof v));
    wfree(&w);
    web(&s, "GET", "/console/login", NULL, (const char *[]){"Origin: https://shop.example", NULL}, &w);
    ck_assert_ptr_null(header(&w, "Access-Control-Allow-Origin", v, sizeof v));
    wfree(&w);
    server_cleanup(&s);
}
END_TEST

/* ---- streaming progress ------------------------------------------------------------- */

/* Claim the next agent job as w1: fills id and token. */
static void
claim(struct server *s, char *id, size_t in, char *token, size_t tn)
{
    json_t *j = CALL(s, "POST", "/v1/jobs/claim", json_pack("{s:s}", "workerId", "w1"), 200);
    json_t *job = json_object_get(j, "job");

    snprintf(id, in, "%s", json_string_value(json_object_get(job, "id")));
    snprintf(token, tn, "%s", json_string_value(json_object_get(job, "claimToken")));
    json_decref(j);
}

static json_t *
reply_of(struct server *s, const char *conv)
{
    char path[200];
    json_t *j, *r;

    snprintf(path, sizeof path, "/v1/conversations/%s/messages", conv);
    j = CALL(s, "GET", path, NULL, 200);
    r = json_object_get(json_array_get(json_object_get(j, "messages"), 0), "reply");
    json_incref(r);
    json_decref(j);
    return r;
}

struct poll_arg {
    struct server *s;
    char path[300];
    long ms;
    json_t *out;
};

static void *
long_poll(void *p)
{
    struct poll_arg *a = p;
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    a->out = CALL(a->s, "GET", a->path, NULL, 200);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    a->ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    return NULL;
}

START_TEST(test_progress_partial_reply)
{
    struct server s = {0};
    char id[32], token[80], path[200], body[300], id2[32], token2[80];
    json_t *j, *r;
    struct poll_arg pa = {0};
    pthread_t th;
    const char *conv = "web_progress1";

    server_start(&s, NULL);
    json_decref(CALL(&s, "POST", "/v1/conversations/web_progress1/messages",
                     json_pack("{s:s}", "text", "hello"), 201));
    claim(&s, id, sizeof id, token, sizeof token);
    snprintf(path, sizeof path, "/v1/jobs/%s/progress", id);
    /* fenced like heartbeat */
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s, s:s}", "workerId", "w1", "claimToken", "c_nope",
                                                 "text", "x"), 409));
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s}", "workerId", "w1", "claimToken", token), 400));
    r = reply_of(&s, conv);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "processing");
    ck_assert(json_is_null(json_object_get(r, "partial")));
    json_decref(r);

    /* a long-poll on the conversation's rev is woken by progress */
    snprintf(pa.path, sizeof pa.path, "/v1/conversations/%s/messages", conv);
    j = CALL(&s, "GET", pa.path, NULL, 200);
    snprintf(pa.path, sizeof pa.path, "/v1/conversations/%s/messages?waitMs=20000&rev=%s", conv,
             json_string_value(json_object_get(j, "rev")));
    json_decref(j);
    pa.s = &s;
    ck_assert_int_eq(pthread_create(&th, NULL, long_poll, &pa), 0);
    usleep(300000);
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s, s:s}", "workerId", "w1", "claimToken", token,
                                                 "text", "Hel"), 200));
    pthread_join(th, NULL);
    ck_assert_int_lt(pa.ms, 10000);
    r = json_object_get(json_object_get(json_array_get(json_object_get(pa.out, "messages"), 0), "reply"), "partial");
    ck_assert_str_eq(json_string_value(r), "Hel");
    json_decref(pa.out);
    /* kept on the pending reply: still one message */
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s, s:s}", "workerId", "w1", "claimToken", token,
                                                 "text", "Hello wor"), 200));
    r = reply_of(&s, conv);
    ck_assert_str_eq(json_string_value(json_object_get(r, "partial")), "Hello wor");
    json_decref(r);

    /* a retried job starts over: the old claim's text is not shown */
    snprintf(body, sizeof body, "/v1/jobs/%s/retry", id);
    json_decref(CALL(&s, "POST", body, json_object(), 200));
    claim(&s, id2, sizeof id2, token2, sizeof token2);
    ck_assert_str_eq(id, id2);
    r = reply_of(&s, conv);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "processing");
    ck_assert(json_is_null(json_object_get(r, "partial")));
    json_decref(r);
    /* the old claim can no longer report */
    json_decref(CALL(&s, "POST", path, json_pack("{s:s, s:s, s:s}", "workerId", "w1", "claimToken", token,
                                                 "text", "stale"), 409));
    /* a failed one shows failed */
    snprintf(body, sizeof body, "/v1/jobs/%s/fail", id);
    json_decref(CALL(&s, "POST", body, json_pack("{s:s, s:s, s:s, s:b}", "workerId", "w1", "claimToken", token2,
                                                 "errorReason", "handler_failed", "retryable", 0), 200));
    r = reply_of(&s, conv);
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "failed");
    ck_assert_str_eq(json_string_value(json_object_get(r, "errorReason")), "handler_failed");
    json_decref(r);
    server_cleanup(&s);
}
END_TEST

START_TEST(test_progress_rate_limited)
{
    struct server s = {0};
    char id[32], token[80], path[200];
    struct resp out;
    int limited = 0;

    server_start(&s, NULL);
    json_decref(CALL(&s, "POST", "/v1/conversations/web_rate1/messages", json_pack("{s:s}", "text", "x"), 201));
    claim(&s, id, sizeof id, token, sizeof token);
    snprintf(path, sizeof path, "/v1/jobs/%s/progress", id);
    for (int i = 0; i < 40; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"workerId\":\"w1\",\"claimToken\":\"%s\",\"text\":\"%d\"}", token, i);
        ck_assert_int_eq(http_req(&s, "POST", path, body, strlen(body), NULL, "application/json", &out), 0);
        ck_assert(out.status == 200 || out.status == 429);
        limited += out.status == 429;
        resp_free(&out);
    }
    /* 40 reports at once: the burst of 20 passes, most of the rest wait */
    ck_assert_int_ge(limited, 10);
    server_cleanup(&s);
}
END_TEST

/* ---- the browser tests ---------------------------------------------------------------- */

/* Start a baton-agent core worker with handler against s, output to log. */
static pid_t
core_start(struct server *s, const char *handler, const char *log)
{
    char path[600], url[100], h[300];
    pid_t pid;

    harness_bin("baton-agent", path, sizeof path);
    snprintf(url, sizeof url, "BATON_URL=%s", s->url);
    snprintf(h, sizeof h, "AGENT_HANDLER=%s", handler);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const char *env[] = {"AGENT_ROLE=core", "WORKER_ID=core-browser", "AGENT_SECRET=" TEST_SECRET, url, h,
                             "PATH=/usr/local/bin:/usr/bin:/bin", NULL};
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 1);
        dup2(fd, 2);
        execve(path, (char *const[]){"baton-agent", NULL}, (char *const *)env);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    return pid;
}

static void
core_stop(pid_t pid)
{
    int st;

    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
}

/* Run the browser script for phase; its exit status. */
static int
browser_run(struct server *s, const char *phase)
{
    char cmd[1200];
    int rc;

    snprintf(cmd, sizeof cmd,
             "BATON_URL=%s AGENT_SECRET=%s SHOTS=build/screenshots PHASE=%s"
             " timeout 150 node tests/browser/console.mjs >%s/browser-%s.log 2>&1",
             s->url, TEST_SECRET, phase, s->dir, phase);
    rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/browser-%s.log >&2", s->dir, phase);
        if (system(cmd) < 0)
            perror("cat");
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(test_browser)
{
    struct server s = {0};
    char log[400];
    pid_t core;

    /* playwright-core from npm into tests/browser/node_modules (no browser download) */
    ck_assert_msg(access("/usr/bin/chromium", X_OK) == 0,
                  "Debian's chromium is missing: run sh deploy/install-deps.sh --test");
    if (access("tests/browser/node_modules/playwright-core/package.json", R_OK) != 0)
        ck_assert_msg(system("cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1"
                             " npm ci --no-audit --no-fund >/dev/null") == 0,
                      "npm ci in tests/browser failed");

    server_start(&s, NULL);
    snprintf(log, sizeof log, "%s/agent-echo.log", s.dir);
    core = core_start(&s, "echo", log);
    ck_assert_int_eq(browser_run(&s, "console"), 0);
    core_stop(core);
    /* a handler that prints slowly: the reply is seen growing */
    snprintf(log, sizeof log, "%s/agent-slow.log", s.dir);
    core = core_start(&s, "printf 'one '; sleep 1; printf 'two '; sleep 1; printf 'three'", log);
    ck_assert_int_eq(browser_run(&s, "stream"), 0);
    core_stop(core);
    server_cleanup(&s);
}
END_TEST

Suite *
suite_console(void)
{
    Suite *s = suite_create("console");
    TCase *http = tcase_create("http");
    TCase *stream = tcase_create("progress");
    TCase *browser = tcase_create("browser");

    tcase_set_timeout(http, 60);
    tcase_add_test(http, test_console_needs_session);
    tcase_add_test(http, test_no_secret_console_warns);
    tcase_add_test(http, test_login_cookie_flags);
    tcase_add_test(http, test_csrf_required);
    tcase_add_test(http, test_login_failures_slowed);
    tcase_add_test(http, test_pages_headers);
    tcase_add_test(http, test_visitor_token_scope);
    tcase_add_test(http, test_chat_limits);
    tcase_add_test(http, test_webchat_off);
    tcase_add_test(http, test_cors_chat_only);
    suite_add_tcase(s, http);
    tcase_set_timeout(stream, 60);
    tcase_add_test(stream, test_progress_partial_reply);
    tcase_add_test(stream, test_progress_rate_limited);
    suite_add_tcase(s, stream);
    tcase_set_timeout(browser, 180);
    tcase_add_test(browser, test_browser);
    suite_add_tcase(s, browser);
    return s;
}
