/* check_migrate.c -- moving a SQLite database to PostgreSQL with
 * deploy/sqlite-to-postgres.sh: data made through batond's routes on
 * SQLite, batond stopped, the copy, batond started on the run's throwaway
 * PostgreSQL (pg.h), everything read back through the routes equal, and
 * what must keep holding after the move: a lease's next grant has a higher
 * token, a duplicate is still a duplicate, a claim in progress can still
 * complete, a job id is never reused (not even one retention deleted), an
 * encrypted session reads back with the same key. The copy refuses a
 * target that holds rows, and one without batond's tables. */
#define _GNU_SOURCE     /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"

#define KEY "BATON_SESSION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* text with what an escaping bug would break: newline, tab, CR,
 * backslashes, quotes, a "\N" (COPY's NULL), non-ASCII */
#define TRICKY "line one\nline\ttwo\r\\ back \\\\ \"quoted\" 'single' \\N h\xc3\xa9llo \xe2\x9c\x93"

static struct server sq, pgs;

static void
up(void)
{
    memset(&sq, 0, sizeof sq);
    memset(&pgs, 0, sizeof pgs);
}

static void
down(void)
{
    server_cleanup(&sq);
    server_cleanup(&pgs);
}

static void
msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Run the copy script; its exit status, its output into out. */
static int
copy(const char *from, const char *to, char *out, size_t n)
{
    char *cmd;
    FILE *p;
    size_t len = 0;
    int st;

    ck_assert_int_gt(asprintf(&cmd, "sh deploy/sqlite-to-postgres.sh --from '%s' --to '%s' 2>&1", from, to), 0);
    p = popen(cmd, "r");
    free(cmd);
    ck_assert_ptr_nonnull(p);
    while (len + 1 < n && !feof(p))
        len += fread(out + len, 1, n - 1 - len, p);
    out[len] = 0;
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The JSON answer of GET path (200 expected), compact text (caller frees),
 * without what changes with the time of the read (a queue's oldest pending
 * age). */
static char *
get_text(struct server *s, const char *path)
{
    json_t *j = CALL(s, "GET", path, NULL, 200), *q;
    size_t i;
    char *t;

    json_array_foreach(json_object_get(j, "queues"), i, q)
        json_object_del(q, "oldestPendingAgeMs");
    t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

    json_decref(j);
    return t;
}

/* What the test reads back on both sides: the answers of these routes,
 * the first four followed by one of the ids made. */
static const char *const reads[] = {
    "/v1/jobs/", "/v1/jobs/", "/v1/jobs/", "/v1/messages/", "/v1/leases/whatsapp/default",
    "/v1/accounts/whatsapp/default", "/v1/sessions/whatsapp/default", "/v1/conversations/web-move/messages",
    "/v1/conversations/telegram:default:42/messages", "/v1/queues",
};
#define NREADS (sizeof reads / sizeof reads[0])

START_TEST(sqlite_database_moves_to_postgres)
{
    const char *const sqlite_env[] = {KEY, "BATON_RETENTION_MS=1", NULL};
    char ids[4][32], path[256], out[8192], dbfile[300], *before[NREADS], *url;
    json_t *j;
    int64_t token, deleted_id;
    const char *claim_token, *pg_env[3] = {KEY, NULL, NULL};

    /* 1. data on SQLite, through the routes */
    server_start(&sq, sqlite_env);
    j = CALL(&sq, "POST", "/v1/jobs",
             json_pack("{s:s, s:{s:s}, s:i, s:s}", "queue", "moved", "payload", "text", TRICKY, "priority", 3,
                       "dedupeKey", "k-1"), 201);
    snprintf(ids[0], sizeof ids[0], "%s", json_string_value(json_object_get(json_object_get(j, "job"), "id")));
    json_decref(j);
    j = CALL(&sq, "POST", "/v1/jobs",
             json_pack("{s:s, s:{s:i}, s:s}", "queue", "working", "payload", "n", 2, "orderKey", "conv-1"), 201);
    snprintf(ids[1], sizeof ids[1], "%s", json_string_value(json_object_get(json_object_get(j, "job"), "id")));
    json_decref(j);
    /* a claim in progress while batond stops: its token still completes */
    j = CALL(&sq, "POST", "/v1/jobs/claim", json_pack("{s:s, s:s, s:i}", "workerId", "w-1", "queue", "working",
                                                      "lockMs", 3600000), 200);
    claim_token = json_string_value(json_object_get(json_object_get(j, "job"), "claimToken"));
    ck_assert_ptr_nonnull(claim_token);
    claim_token = strdup(claim_token);
    json_decref(j);
    /* a lease granted twice (token 2), released; an account */
    json_decref(CALL(&sq, "POST", "/v1/leases/whatsapp/default/acquire",
                     json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 45000), 200));
    json_decref(CALL(&sq, "POST", "/v1/leases/whatsapp/default/force-release", json_object(), 200));
    j = CALL(&sq, "POST", "/v1/leases/whatsapp/default/acquire",
             json_pack("{s:s, s:i}", "ownerId", "wa-2", "ttlMs", 45000), 200);
    token = json_integer_value(json_object_get(json_object_get(j, "lease"), "token"));
    ck_assert_int_eq(token, 2);
    json_decref(j);
    json_decref(CALL(&sq, "POST", "/v1/leases/whatsapp/default/release",
                     json_pack("{s:s, s:I}", "ownerId", "wa-2", "token", (json_int_t)token), 200));
    json_decref(CALL(&sq, "PUT", "/v1/accounts/whatsapp/default",
                     json_pack("{s:b, s:{s:s}}", "enabled", 1, "config", "note", TRICKY), 200));
    /* a dedupe entry, an encrypted session, messages, a paused queue */
    j = CALL(&sq, "POST", "/v1/dedupe", json_pack("{s:s, s:s}", "channel", "whatsapp", "channelMessageId", "m-1"),
             200);
    ck_assert(json_is_false(json_object_get(j, "duplicate")));
    json_decref(j);
    json_decref(CALL(&sq, "POST", "/v1/sessions/whatsapp/default/batch",
                     json_pack("{s:{s:{s:s, s:[i,i]}, s:s}}", "set", "creds", "me", TRICKY, "keys", 1, 2, "pre-key-1",
                               "x"),
                     200));
    json_decref(CALL(&sq, "POST", "/v1/conversations/web-move/messages", json_pack("{s:s}", "text", TRICKY), 201));
    j = CALL(&sq, "POST", "/v1/inbound",
             json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "channel", "telegram", "accountId", "default",
                       "channelMessageId", "42:1", "conversationId", "telegram:default:42", "from", "42", "text",
                       TRICKY), 201);
    snprintf(ids[2], sizeof ids[2], "%s", json_string_value(json_object_get(j, "jobId")));
    snprintf(ids[3], sizeof ids[3], "%s", json_string_value(json_object_get(j, "messageId")));
    json_decref(j);
    json_decref(CALL(&sq, "POST", "/v1/queues/moved/pause", json_pack("{s:s}", "reason", "moving"), 200));
    /* the highest id, completed and deleted by retention before the move */
    j = CALL(&sq, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "gone", "payload"), 201);
    deleted_id = atoll(json_string_value(json_object_get(json_object_get(j, "job"), "id")));
    json_decref(j);
    j = CALL(&sq, "POST", "/v1/jobs/claim", json_pack("{s:s, s:s}", "workerId", "w-2", "queue", "gone"), 200);
    snprintf(path, sizeof path, "/v1/jobs/%lld/complete", (long long)deleted_id);
    json_decref(CALL(&sq, "POST", path,
                     json_pack("{s:s, s:s}", "workerId", "w-2", "claimToken",
                               json_string_value(json_object_get(json_object_get(j, "job"), "claimToken"))),
                     200));
    json_decref(j);
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)deleted_id);
    for (int waited = 0;; waited += 100) {
        struct resp r;
        ck_assert_int_eq(http_req(&sq, "GET", path, NULL, 0, NULL, NULL, &r), 0);
        long st = r.status;
        resp_free(&r);
        if (st == 404)
            break;
        ck_assert_msg(waited < 20000, "retention did not delete job %lld", (long long)deleted_id);
        msleep(100);
    }

    for (size_t i = 0; i < NREADS; i++) {
        snprintf(path, sizeof path, "%s%s", reads[i], i < 4 ? ids[i] : "");
        before[i] = get_text(&sq, path);
    }
    ck_assert_int_eq(server_stop(&sq), 0);
    snprintf(dbfile, sizeof dbfile, "%s/baton.db", sq.dir);

    /* 2. batond once on the new database (its tables), then the copy */
    url = strdup(pg_test_url());
    ck_assert_int_gt(asprintf((char **)&pg_env[1], "BATON_DB=%s", url), 0);
    server_start(&pgs, pg_env);
    ck_assert_int_eq(server_stop(&pgs), 0);
    ck_assert_msg(copy(dbfile, url, out, sizeof out) == 0, "the copy failed:\n%s", out);
    ck_assert_msg(strstr(out, "jobs: 4 rows copied") && strstr(out, "sessions: 2 rows copied"),
                  "the copy did not report the rows:\n%s", out);
    ck_assert_msg(!strstr(out, "@"), "the copy printed the connection string:\n%s", out);

    /* 3. batond on PostgreSQL answers what SQLite answered */
    server_start(&pgs, pg_env);
    for (size_t i = 0; i < NREADS; i++) {
        char *after;
        snprintf(path, sizeof path, "%s%s", reads[i], i < 4 ? ids[i] : "");
        after = get_text(&pgs, path);
        ck_assert_msg(!strcmp(before[i], after), "GET %s differs after the move:\n  SQLite:     %s\n  PostgreSQL: %s",
                      path, before[i], after);
        free(after);
        free(before[i]);
    }

    /* and keeps its promises: the next grant has a higher token */
    j = CALL(&pgs, "POST", "/v1/leases/whatsapp/default/acquire",
             json_pack("{s:s, s:i}", "ownerId", "wa-3", "ttlMs", 45000), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "lease"), "token")), token + 1);
    json_decref(j);
    /* a duplicate is still a duplicate: the dedupe entry, the enqueue key,
     * the inbound message */
    j = CALL(&pgs, "POST", "/v1/dedupe", json_pack("{s:s, s:s}", "channel", "whatsapp", "channelMessageId", "m-1"),
             200);
    ck_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    j = CALL(&pgs, "POST", "/v1/jobs",
             json_pack("{s:s, s:{}, s:s}", "queue", "moved", "payload", "dedupeKey", "k-1"), 200);
    ck_assert(json_is_true(json_object_get(j, "duplicate")));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "job"), "id")), ids[0]);
    json_decref(j);
    j = CALL(&pgs, "POST", "/v1/inbound",
             json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "channel", "telegram", "accountId", "default",
                       "channelMessageId", "42:1", "conversationId", "telegram:default:42", "from", "42", "text",
                       "again"), 200);
    ck_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    /* the claim made on SQLite completes on PostgreSQL */
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", ids[1]);
    json_decref(CALL(&pgs, "POST", path, json_pack("{s:s, s:s}", "workerId", "w-1", "claimToken", claim_token), 200));
    /* no id is reused, not even the one retention deleted */
    j = CALL(&pgs, "POST", "/v1/jobs", json_pack("{s:s, s:{}}", "queue", "after", "payload"), 201);
    ck_assert_int_gt(atoll(json_string_value(json_object_get(json_object_get(j, "job"), "id"))), deleted_id);
    json_decref(j);
    j = CALL(&pgs, "POST", "/v1/conversations/web-move/messages", json_pack("{s:s}", "text", "after"), 201);
    json_decref(j);
    j = CALL(&pgs, "GET", "/v1/conversations/web-move/messages", NULL, 200);
    {
        json_t *msgs = json_object_get(j, "messages");
        size_t n = json_array_size(msgs);
        ck_assert_int_ge(n, 2);
        ck_assert_int_gt(atoll(json_string_value(json_object_get(json_array_get(msgs, n - 1), "id"))),
                         atoll(json_string_value(json_object_get(json_array_get(msgs, n - 2), "id"))));
    }
    json_decref(j);
    /* the session entry decrypts with the same key */
    j = CALL(&pgs, "GET", "/v1/sessions/whatsapp/default/keys/creds", NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "value"), "me")), TRICKY);
    json_decref(j);

    /* 4. a second copy into the same database is refused, nothing changed */
    ck_assert_int_eq(server_stop(&pgs), 0);
    ck_assert_msg(copy(dbfile, url, out, sizeof out) == 1 && strstr(out, "not empty"),
                  "a copy into a database holding rows was not refused:\n%s", out);
    server_start(&pgs, pg_env);
    j = CALL(&pgs, "GET", "/v1/jobs?queue=moved", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 1);
    json_decref(j);
    free(url);
    free((char *)pg_env[1]);
    free((char *)claim_token);
}
END_TEST

/* A database batond never ran on has none of its tables: the copy says
 * what to do instead of creating a schema of its own. */
START_TEST(copy_needs_batond_tables)
{
    char dbfile[300], out[4096];

    server_start(&sq, NULL);
    json_decref(CALL(&sq, "POST", "/v1/jobs", json_pack("{s:{}}", "payload"), 201));
    ck_assert_int_eq(server_stop(&sq), 0);
    snprintf(dbfile, sizeof dbfile, "%s/baton.db", sq.dir);
    ck_assert_int_eq(copy(dbfile, pg_test_url(), out, sizeof out), 1);
    ck_assert_msg(strstr(out, "start batond once"), "unclear refusal:\n%s", out);
    ck_assert_int_eq(copy(dbfile, "/tmp/not-a-url", out, sizeof out), 2);
}
END_TEST

Suite *
suite_migrate(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("copy");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sqlite_database_moves_to_postgres);
    tcase_add_test(tc, copy_needs_batond_tables);
    suite_add_tcase(s, tc);
    return s;
}
