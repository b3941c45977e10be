/* check_messages.c -- the inbound path, replies, outbound delivery, the web
 * chat's conversation API and the Telegram / WhatsApp webhooks, against a
 * real batond. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "harness.h"

#define TG_SECRET "tg-secret-xyz"
#define WA_SECRET "wa-app-secret"
#define WA_VERIFY "wa-verify-token"

static struct server srv;

static void
up(void)
{
    static const char *const env[] = {
        "TELEGRAM_WEBHOOK_SECRET=" TG_SECRET, "WHATSAPP_APP_SECRET=" WA_SECRET,
        "WHATSAPP_VERIFY_TOKEN=" WA_VERIFY, NULL,
    };
    memset(&srv, 0, sizeof srv);
    server_start(&srv, env);
}

static void
down(void)
{
    server_cleanup(&srv);
}

static json_t *
inbound(const char *channel, const char *cmid, const char *conv, const char *text, long expect)
{
    return CALL(&srv, "POST", "/v1/inbound",
                json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "channel", channel, "accountId", "default",
                          "channelMessageId", cmid, "conversationId", conv, "from", "123456789", "text", text),
                expect);
}

static json_t *
conversation(const char *conv)
{
    char path[512];
    json_t *j;

    snprintf(path, sizeof path, "/v1/conversations/%s/messages", conv);
    j = CALL(&srv, "GET", path, NULL, 200);
    ck_assert(json_is_array(json_object_get(j, "messages")));
    return j;
}

static size_t
count_jobs(const char *queue)
{
    char path[256];
    json_t *j;
    size_t n;

    snprintf(path, sizeof path, "/v1/jobs/pending?queue=%s", queue);
    j = CALL(&srv, "GET", path, NULL, 200);
    n = json_array_size(json_object_get(j, "jobs"));
    json_decref(j);
    return n;
}

static json_t *
claim(const char *queue, const char *worker)
{
    json_t *j = CALL(&srv, "POST", "/v1/jobs/claim",
                     json_pack("{s:s, s:s, s:i}", "queue", queue, "workerId", worker, "lockMs", 60000), 200);
    json_t *job = json_incref(json_object_get(j, "job"));
    json_decref(j);
    ck_assert_ptr_nonnull(job);
    return job;
}

static void
complete(json_t *job, const char *worker, json_t *result, json_t *reply, long expect)
{
    char path[128];
    json_t *body = json_pack("{s:s, s:O}", "workerId", worker, "claimToken", json_object_get(job, "claimToken"));

    if (result)
        json_object_set_new(body, "result", result);
    if (reply)
        json_object_set_new(body, "reply", reply);
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", json_string_value(json_object_get(job, "id")));
    json_decref(CALL(&srv, "POST", path, body, expect));
}

static const char *
str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* GET /v1/jobs/{id}: the job (unwrapped) */
static json_t *
get_job(const char *id)
{
    char path[128];
    json_t *j, *job;

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    j = CALL(&srv, "GET", path, NULL, 200);
    job = json_incref(json_object_get(j, "job"));
    json_decref(j);
    ck_assert_ptr_nonnull(job);
    return job;
}

/* ---- inbound ---------------------------------------------------------------- */

START_TEST(inbound_once)
{
    json_t *a = inbound("telegram", "123:1", "telegram:default:123", "hi", 201), *b, *c, *job;

    ck_assert(json_is_false(json_object_get(a, "duplicate")));
    ck_assert_ptr_nonnull(str(a, "messageId"));
    b = inbound("telegram", "123:1", "telegram:default:123", "hi", 200);
    ck_assert(json_is_true(json_object_get(b, "duplicate")));
    c = conversation("telegram:default:123");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    ck_assert_int_eq(count_jobs("agent"), 1);
    job = get_job(str(a, "jobId"));
    ck_assert_str_eq(str(job, "messageId"), str(a, "messageId"));
    ck_assert_str_eq(str(job, "conversationId"), "telegram:default:123");
    json_decref(job);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    /* the duplicate is visible to operators */
    c = CALL(&srv, "GET", "/v1/events?event=telegram.inbound.dedupe_skipped", NULL, 200);
    ck_assert_int_ge(json_array_size(json_object_get(c, "events")), 1);
    json_decref(c);
}
END_TEST

START_TEST(inbound_bad_input)
{
    static const char *const bad[] = {
        "{\"accountId\":\"default\",\"channelMessageId\":\"x\",\"conversationId\":\"c\",\"text\":\"t\"}",
        "{\"channel\":\"telegram\",\"accountId\":\"default\",\"channelMessageId\":\"\",\"conversationId\":\"c\",\"text\":\"t\"}",
        "{\"channel\":\"telegram\",\"accountId\":\"default\",\"conversationId\":\"c\",\"text\":\"t\"}",
        "{\"channel\":\"tele gram\",\"accountId\":\"default\",\"channelMessageId\":\"x\",\"conversationId\":\"c\",\"text\":\"t\"}",
        "{\"channel\":\"telegram\",\"accountId\":\"default\",\"channelMessageId\":\"x\",\"conversationId\":\"c\",\"text\":5}",
    };
    struct resp r;

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(http_req(&srv, "POST", "/v1/inbound", bad[i], strlen(bad[i]), NULL, NULL, &r), 0);
        ck_assert_msg(r.status == 400, "case %zu: %ld %s", i, r.status, r.body);
        resp_free(&r);
    }
    ck_assert_int_eq(count_jobs("agent"), 0);
}
END_TEST

struct racer {
    pthread_barrier_t *go;
    long status;
};

static void *
race_inbound(void *arg)
{
    struct racer *rc = arg;
    const char *body = "{\"channel\":\"whatsapp\",\"accountId\":\"default\",\"channelMessageId\":\"wamid.RACE\","
                       "\"conversationId\":\"whatsapp:default:15550001111\",\"from\":\"15550001111\",\"text\":\"once\"}";
    struct resp r;

    pthread_barrier_wait(rc->go);
    if (http_req(&srv, "POST", "/v1/inbound", body, strlen(body), NULL, NULL, &r) == 0)
        rc->status = r.status;
    resp_free(&r);
    return NULL;
}

START_TEST(inbound_concurrent_once)
{
    pthread_t th[16];
    struct racer rc[16];
    pthread_barrier_t go;
    int created = 0, dups = 0;
    json_t *c;

    pthread_barrier_init(&go, NULL, 16);
    for (int i = 0; i < 16; i++) {
        rc[i] = (struct racer){&go, 0};
        pthread_create(&th[i], NULL, race_inbound, &rc[i]);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        created += rc[i].status == 201;
        dups += rc[i].status == 200;
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(dups, 15);
    c = conversation("whatsapp:default:15550001111");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    json_decref(c);
    ck_assert_int_eq(count_jobs("agent"), 1);
}
END_TEST

/* ---- replies -------------------------------------------------------------------- */

START_TEST(reply_becomes_outbound_job_and_is_sent)
{
    json_t *a = inbound("telegram", "555:9", "telegram:default:555", "question", 201);
    json_t *job = claim("agent", "core-1"), *c, *out, *ojob, *p, *msgs, *ev;

    complete(job, "core-1", NULL, json_pack("{s:s}", "text", "answer"), 200);
    c = conversation("telegram:default:555");
    msgs = json_object_get(c, "messages");
    ck_assert_int_eq(json_array_size(msgs), 2);
    out = json_array_get(msgs, 1);
    ck_assert_str_eq(str(out, "direction"), "out");
    ck_assert_str_eq(str(out, "status"), "queued");
    ck_assert_str_eq(str(out, "text"), "answer");
    ck_assert_str_eq(str(out, "to"), "123456789");
    ck_assert_int_eq(count_jobs("outbound.telegram.default"), 1);

    ojob = claim("outbound.telegram.default", "tg-1");
    p = json_object_get(ojob, "payload");
    ck_assert_str_eq(str(p, "messageId"), str(out, "id"));
    ck_assert_str_eq(str(p, "to"), "123456789");
    ck_assert_str_eq(str(p, "text"), "answer");
    ck_assert_str_eq(str(p, "channel"), "telegram");
    ck_assert_str_eq(str(p, "conversationId"), "telegram:default:555");
    complete(ojob, "tg-1", json_pack("{s:s}", "channelMessageId", "tg-777"), NULL, 200);
    json_decref(c);
    c = conversation("telegram:default:555");
    out = json_array_get(json_object_get(c, "messages"), 1);
    ck_assert_str_eq(str(out, "status"), "sent");
    ck_assert_str_eq(str(out, "channelMessageId"), "tg-777");
    ck_assert(json_is_integer(json_object_get(out, "sentAt")));
    ev = CALL(&srv, "GET", "/v1/events?event=telegram.outbound.sent", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    ck_assert_str_eq(str(json_array_get(json_object_get(ev, "events"), 0), "ownerId"), "tg-1");
    json_decref(ev);
    json_decref(c);
    json_decref(ojob);
    json_decref(job);
    json_decref(a);
}
END_TEST

START_TEST(failed_send_marks_message_failed)
{
    json_t *a = inbound("telegram", "556:1", "telegram:default:556", "q", 201);
    json_t *job = claim("agent", "core-1"), *ojob, *c, *ev;
    char path[128];

    complete(job, "core-1", NULL, json_pack("{s:s}", "text", "a"), 200);
    ojob = claim("outbound.telegram.default", "tg-1");
    snprintf(path, sizeof path, "/v1/jobs/%s/fail", str(ojob, "id"));
    json_decref(CALL(&srv, "POST", path,
                     json_pack("{s:s, s:O, s:s, s:b}", "workerId", "tg-1", "claimToken",
                               json_object_get(ojob, "claimToken"), "errorReason", "403", "retryable", 0),
                     200));
    c = conversation("telegram:default:556");
    ck_assert_str_eq(str(json_array_get(json_object_get(c, "messages"), 1), "status"), "failed");
    ev = CALL(&srv, "GET", "/v1/events?event=telegram.send.failed", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    json_decref(ev);
    json_decref(c);
    json_decref(ojob);
    json_decref(job);
    json_decref(a);
}
END_TEST

START_TEST(web_chat_reply_final_at_once)
{
    json_t *p = CALL(&srv, "POST", "/v1/conversations/web-42/messages", json_pack("{s:s}", "text", "hello"), 201);
    json_t *job = claim("agent", "core-1"), *c, *msgs;

    ck_assert_str_eq(str(json_object_get(job, "payload"), "text"), "hello");
    complete(job, "core-1", NULL, json_pack("{s:s}", "text", "echo: hello"), 200);
    c = conversation("web-42");
    msgs = json_object_get(c, "messages");
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(str(json_array_get(msgs, 1), "status"), "sent");
    ck_assert_str_eq(str(json_array_get(msgs, 1), "text"), "echo: hello");
    ck_assert_int_eq(count_jobs("outbound.web.default"), 0);
    /* a retried post with the same clientMessageId is not a second message */
    json_decref(CALL(&srv, "POST", "/v1/conversations/web-42/messages",
                     json_pack("{s:s, s:s}", "text", "again", "clientMessageId", "m1"), 201));
    json_decref(CALL(&srv, "POST", "/v1/conversations/web-42/messages",
                     json_pack("{s:s, s:s}", "text", "again", "clientMessageId", "m1"), 200));
    json_decref(c);
    json_decref(job);
    json_decref(p);
}
END_TEST

START_TEST(reply_to_job_without_message_refused)
{
    json_t *e = CALL(&srv, "POST", "/v1/jobs", json_pack("{s:{s:i}}", "payload", "x", 1), 201);
    json_t *job = claim("agent", "core-1"), *again;

    complete(job, "core-1", NULL, json_pack("{s:s}", "text", "nowhere to go"), 400);
    /* the failed completion changed nothing: the job is still ours to complete */
    again = get_job(str(job, "id"));
    ck_assert_str_eq(str(again, "status"), "processing");
    complete(job, "core-1", NULL, NULL, 200);
    json_decref(again);
    json_decref(job);
    json_decref(e);
}
END_TEST

START_TEST(outbound_proactive)
{
    json_t *o = CALL(&srv, "POST", "/v1/outbound",
                     json_pack("{s:s, s:s, s:s, s:s}", "channel", "telegram", "accountId", "default", "to", "999",
                               "text", "reminder"), 201), *c;

    ck_assert_ptr_nonnull(str(o, "messageId"));
    ck_assert_ptr_nonnull(str(o, "jobId"));
    c = conversation("telegram:default:999");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    ck_assert_int_eq(count_jobs("outbound.telegram.default"), 1);
    json_decref(c);
    json_decref(o);
    json_decref(CALL(&srv, "POST", "/v1/outbound", json_pack("{s:s, s:s}", "channel", "telegram", "text", "x"), 400));
}
END_TEST

struct poller {
    const char *path;
    long status;
    json_t *body;
    int64_t ms;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
poll_thread(void *arg)
{
    struct poller *p = arg;
    struct resp r;
    int64_t t0 = mono_ms();

    if (http_req(&srv, "GET", p->path, NULL, 0, NULL, NULL, &r) == 0) {
        p->status = r.status;
        p->body = json_incref(r.json);
    }
    p->ms = mono_ms() - t0;
    resp_free(&r);
    return NULL;
}

START_TEST(conversation_long_poll_woken)
{
    json_t *first = CALL(&srv, "POST", "/v1/conversations/web-7/messages", json_pack("{s:s}", "text", "one"), 201);
    char path[256];
    pthread_t th;
    struct poller p = {path, 0, NULL, 0};
    json_t *msgs;

    snprintf(path, sizeof path, "/v1/conversations/web-7/messages?after=%s&waitMs=30000", str(first, "messageId"));
    pthread_create(&th, NULL, poll_thread, &p);
    usleep(300 * 1000);
    json_decref(CALL(&srv, "POST", "/v1/conversations/web-7/messages", json_pack("{s:s}", "text", "two"), 201));
    pthread_join(th, NULL);
    ck_assert_int_eq(p.status, 200);
    msgs = json_object_get(p.body, "messages");
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(str(json_array_get(msgs, 0), "text"), "two");
    ck_assert_int_lt(p.ms, 15000);      /* woken, not timed out */
    json_decref(p.body);
    json_decref(first);
    /* nothing new: the wait ends empty at its deadline */
    snprintf(path, sizeof path, "/v1/conversations/nobody/messages?waitMs=300");
    p = (struct poller){path, 0, NULL, 0};
    poll_thread(&p);
    ck_assert_int_eq(p.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(p.body, "messages")), 0);
    ck_assert_int_ge(p.ms, 250);
    json_decref(p.body);
}
END_TEST

/* Completion + reply + outbound job are one transaction: after kill -9 at
 * any moment, every job is either completed with its reply and outbound
 * job, or still open with neither. */
struct completer {
    json_t *jobs;
    int done;
};

static void *
complete_all(void *arg)
{
    struct completer *c = arg;
    size_t i;
    json_t *job;

    json_array_foreach(c->jobs, i, job) {
        char path[128], *body;
        struct resp r;
        json_t *b = json_pack("{s:s, s:O, s:{s:s}}", "workerId", "core-1", "claimToken",
                              json_object_get(job, "claimToken"), "reply", "text", "r");
        body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", str(job, "id"));
        if (http_req(&srv, "POST", path, body, strlen(body), NULL, NULL, &r) < 0) {
            free(body);
            break;
        }
        free(body);
        if (r.status == 200)
            c->done++;
        resp_free(&r);
    }
    return NULL;
}

START_TEST(completion_with_reply_atomic_under_kill9)
{
    struct completer c = {json_array(), 0};
    pthread_t th;
    char conv[64], cmid[64];
    json_t *oj;
    int completed = 0;

    for (int i = 0; i < 40; i++) {
        snprintf(cmid, sizeof cmid, "900:%d", i);
        snprintf(conv, sizeof conv, "telegram:default:k%d", i);
        json_decref(inbound("telegram", cmid, conv, "q", 201));
        json_array_append_new(c.jobs, claim("agent", "core-1"));
    }
    pthread_create(&th, NULL, complete_all, &c);
    usleep((useconds_t)(20000 + (rand() % 60000)));
    server_kill(&srv);
    pthread_join(th, NULL);
    server_start(&srv, NULL);

    for (size_t i = 0; i < json_array_size(c.jobs); i++) {
        json_t *job = json_array_get(c.jobs, i), *now, *cv;
        bool is_done;
        size_t nmsg;

        now = get_job(str(job, "id"));
        is_done = !strcmp(str(now, "status"), "completed");
        completed += is_done;
        cv = conversation(str(now, "conversationId"));
        nmsg = json_array_size(json_object_get(cv, "messages"));
        ck_assert_msg(nmsg == (is_done ? 2u : 1u), "job %s %s with %zu messages", str(job, "id"),
                      str(now, "status"), nmsg);
        json_decref(cv);
        json_decref(now);
    }
    /* every acknowledged completion survived */
    ck_assert_int_ge(completed, c.done);
    oj = CALL(&srv, "GET", "/v1/jobs/pending?queue=outbound.telegram.default", NULL, 200);
    ck_assert_int_eq((int)json_array_size(json_object_get(oj, "jobs")), completed);
    json_decref(oj);
    json_decref(c.jobs);
}
END_TEST

/* ---- Telegram ----------------------------------------------------------------- */

static long
telegram(const char *path, const char *secret, const char *body, json_t **out)
{
    struct resp r;
    long st;

    ck_assert_int_eq(http_req_h(&srv, "POST", path, body, strlen(body), "x-telegram-bot-api-secret-token", secret, &r), 0);
    st = r.status;
    if (out)
        *out = json_incref(r.json);
    resp_free(&r);
    return st;
}

static const char SMOKE[] = "{\"message\":{\"message_id\":100,\"date\":1700000000,\"text\":\"hello from integration test\","
                            "\"chat\":{\"id\":123456789}}}";

START_TEST(telegram_runbook_smoke)
{
    json_t *c;

    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, SMOKE, NULL), 200);
    ck_assert_int_eq(count_jobs("agent"), 1);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, SMOKE, NULL), 200);
    ck_assert_int_eq(count_jobs("agent"), 1);
    c = conversation("telegram:default:123456789");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    ck_assert_str_eq(str(json_array_get(json_object_get(c, "messages"), 0), "channelMessageId"), "123456789:100");
    json_decref(c);
}
END_TEST

START_TEST(telegram_secret_checked)
{
    ck_assert_int_eq(telegram("/telegram/webhook", "wrong", SMOKE, NULL), 401);
    ck_assert_int_eq(telegram("/telegram/webhook", "", SMOKE, NULL), 401);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET "x", SMOKE, NULL), 401);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, "{\"message\":", NULL), 400);
    ck_assert_int_eq(count_jobs("agent"), 0);
}
END_TEST

START_TEST(telegram_not_configured_refuses)
{
    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, NULL);
    ck_assert_int_eq(telegram("/telegram/webhook", "", SMOKE, NULL), 503);
    ck_assert_int_eq(count_jobs("agent"), 0);
}
END_TEST

START_TEST(telegram_kinds)
{
    /* fixtures after the Bot API's Update examples */
    const char *group = "{\"update_id\":10001,\"message\":{\"message_id\":7,\"from\":{\"id\":42,\"is_bot\":false,"
                        "\"first_name\":\"Ana\",\"username\":\"ana\"},\"chat\":{\"id\":-1001234567890,\"title\":\"Team\","
                        "\"type\":\"supergroup\"},\"date\":1700000100,\"text\":\"@bot status?\"}}";
    const char *edited = "{\"update_id\":10002,\"edited_message\":{\"message_id\":100,\"from\":{\"id\":42},"
                         "\"chat\":{\"id\":123456789,\"type\":\"private\"},\"date\":1700000000,"
                         "\"edit_date\":1700000050,\"text\":\"hello (edited)\"}}";
    const char *photo = "{\"update_id\":10003,\"message\":{\"message_id\":101,\"chat\":{\"id\":123456789,"
                        "\"type\":\"private\"},\"date\":1700000200,\"photo\":[{\"file_id\":\"AgAD\","
                        "\"file_unique_id\":\"AQAD\",\"width\":90,\"height\":67,\"file_size\":1200}],"
                        "\"caption\":\"look at this\"}}";
    const char *sticker = "{\"update_id\":10004,\"message\":{\"message_id\":102,\"chat\":{\"id\":123456789},"
                          "\"date\":1700000300,\"sticker\":{\"file_id\":\"CAAD\",\"width\":512,\"height\":512}}}";
    const char *callback = "{\"update_id\":10005,\"callback_query\":{\"id\":\"4382\",\"from\":{\"id\":42},"
                           "\"data\":\"yes\",\"chat_instance\":\"-1\"}}";
    const char *emoji = "{\"update_id\":10006,\"message\":{\"message_id\":103,\"chat\":{\"id\":123456789},"
                        "\"date\":1700000400,\"text\":\"caf\\u00e9 \\ud83d\\ude00 ok\","
                        "\"entities\":[{\"offset\":5,\"length\":2,\"type\":\"bold\"}]}}";
    json_t *c, *msgs, *ev;

    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, SMOKE, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, group, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, edited, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, photo, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, sticker, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, callback, NULL), 200);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, emoji, NULL), 200);
    /* smoke, group, edit, photo caption, emoji: five jobs; sticker and callback ignored */
    ck_assert_int_eq(count_jobs("agent"), 5);
    c = conversation("telegram:default:123456789");
    msgs = json_object_get(c, "messages");
    ck_assert_int_eq(json_array_size(msgs), 4);
    ck_assert_str_eq(str(json_array_get(msgs, 1), "text"), "hello (edited)");
    ck_assert_str_eq(str(json_array_get(msgs, 2), "text"), "look at this");
    ck_assert_str_eq(str(json_array_get(msgs, 3), "text"), "caf\xc3\xa9 \xf0\x9f\x98\x80 ok");
    json_decref(c);
    c = conversation("telegram:default:-1001234567890");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    json_decref(c);
    ev = CALL(&srv, "GET", "/v1/events?event=telegram.inbound.ignored", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 2);
    json_decref(ev);
    /* an account in the path */
    ck_assert_int_eq(telegram("/telegram/webhook/bot2", TG_SECRET, SMOKE, NULL), 200);
    c = conversation("telegram:bot2:123456789");
    ck_assert_int_eq(json_array_size(json_object_get(c, "messages")), 1);
    json_decref(c);
}
END_TEST

START_TEST(telegram_allowed_chats)
{
    static const char *const env[] = {"TELEGRAM_WEBHOOK_SECRET=" TG_SECRET, "TELEGRAM_ALLOWED_CHAT_IDS=111, 123456789",
                                      NULL};
    const char *other = "{\"message\":{\"message_id\":1,\"date\":1,\"text\":\"spam\",\"chat\":{\"id\":555}}}";

    server_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    server_start(&srv, env);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, other, NULL), 200);
    ck_assert_int_eq(count_jobs("agent"), 0);
    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, SMOKE, NULL), 200);
    ck_assert_int_eq(count_jobs("agent"), 1);
}
END_TEST

/* ---- WhatsApp ------------------------------------------------------------------ */

static long
whatsapp(const char *body, const char *secret)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char hex[2 * sizeof mac + 1], sig[80];
    crypto_auth_hmacsha256_state st;
    struct resp r;
    long status;

    if (secret) {
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
        snprintf(sig, sizeof sig, "sha256=%s", hex);
    }
    ck_assert_int_eq(http_req_h(&srv, "POST", "/whatsapp/webhook", body, strlen(body), "X-Hub-Signature-256",
                                secret ? sig : NULL, &r), 0);
    status = r.status;
    resp_free(&r);
    return status;
}

#define WA_ENTRY(msgs) \
    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{\"value\":" \
    "{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\"," \
    "\"phone_number_id\":\"106540352242922\"},\"contacts\":[{\"profile\":{\"name\":\"Kerry\"}," \
    "\"wa_id\":\"16315558151\"}]," msgs "},\"field\":\"messages\"}]}]}"

START_TEST(whatsapp_verify)
{
    struct resp r;

    ck_assert_int_eq(http_req(&srv, "GET", "/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=" WA_VERIFY
                              "&hub.challenge=1158201444", NULL, 0, "", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "1158201444");
    resp_free(&r);
    ck_assert_int_eq(http_req(&srv, "GET", "/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=nope"
                              "&hub.challenge=1", NULL, 0, "", NULL, &r), 0);
    ck_assert_int_eq(r.status, 403);
    resp_free(&r);
}
END_TEST

START_TEST(whatsapp_messages)
{
    const char *text = WA_ENTRY("\"messages\":[{\"from\":\"16315558151\",\"id\":\"wamid.HBgLMTYzMTU1NTgxNTEVAgASGBQzQTRBNjU5OUFFRThBN0U1RUQ1MQA=\","
                                "\"timestamp\":\"1700000000\",\"text\":{\"body\":\"hola\"},\"type\":\"text\"}]");
    const char *batch = WA_ENTRY("\"messages\":[{\"from\":\"16315558151\",\"id\":\"wamid.B1\",\"timestamp\":\"1\","
                                 "\"type\":\"image\",\"image\":{\"caption\":\"receipt\",\"mime_type\":\"image/jpeg\","
                                 "\"sha256\":\"x\",\"id\":\"123\"}},{\"from\":\"16315558151\",\"id\":\"wamid.B2\","
                                 "\"timestamp\":\"2\",\"type\":\"interactive\",\"interactive\":{\"type\":\"button_reply\","
                                 "\"button_reply\":{\"id\":\"yes\",\"title\":\"Yes please\"}}},{\"from\":\"16315558151\","
                                 "\"id\":\"wamid.B3\",\"timestamp\":\"3\",\"type\":\"reaction\",\"reaction\":"
                                 "{\"message_id\":\"wamid.B1\",\"emoji\":\"\\ud83d\\udc4d\"}}]");
    json_t *c, *msgs;

    ck_assert_int_eq(whatsapp(text, NULL), 401);
    ck_assert_int_eq(whatsapp(text, "not-the-secret"), 401);
    ck_assert_int_eq(count_jobs("agent"), 0);
    ck_assert_int_eq(whatsapp(text, WA_SECRET), 200);
    ck_assert_int_eq(whatsapp(text, WA_SECRET), 200);     /* redelivery */
    ck_assert_int_eq(count_jobs("agent"), 1);
    ck_assert_int_eq(whatsapp(batch, WA_SECRET), 200);
    ck_assert_int_eq(count_jobs("agent"), 3);               /* caption + button; reaction ignored */
    c = conversation("whatsapp:default:16315558151");
    msgs = json_object_get(c, "messages");
    ck_assert_int_eq(json_array_size(msgs), 3);
    ck_assert_str_eq(str(json_array_get(msgs, 0), "text"), "hola");
    ck_assert_str_eq(str(json_array_get(msgs, 1), "text"), "receipt");
    ck_assert_str_eq(str(json_array_get(msgs, 2), "text"), "Yes please");
    json_decref(c);
    ck_assert_int_eq(whatsapp("{\"entry\":", WA_SECRET), 400);
}
END_TEST

START_TEST(whatsapp_statuses_update_outbound)
{
    const char *sdel = WA_ENTRY("\"statuses\":[{\"id\":\"wamid.OUT1\",\"status\":\"delivered\",\"timestamp\":\"5\","
                                "\"recipient_id\":\"16315558151\"}]");
    const char *sfail = WA_ENTRY("\"statuses\":[{\"id\":\"wamid.OUT1\",\"status\":\"failed\",\"timestamp\":\"6\","
                                 "\"recipient_id\":\"16315558151\",\"errors\":[{\"code\":131047,"
                                 "\"title\":\"Re-engagement message\"}]}]");
    json_t *lease, *o, *job, *c, *m, *ev;
    char path[128];

    o = CALL(&srv, "POST", "/v1/outbound", json_pack("{s:s, s:s, s:s, s:s}", "channel", "whatsapp", "accountId",
                                                     "default", "to", "16315558151", "text", "hi"), 201);
    lease = CALL(&srv, "POST", "/v1/leases/whatsapp/default/acquire",
                 json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 60000), 200);
    job = CALL(&srv, "POST", "/v1/jobs/claim",
               json_pack("{s:s, s:s, s:O}", "queue", "outbound.whatsapp.default", "workerId", "wa-1", "leaseToken",
                         json_object_get(json_object_get(lease, "lease"), "token")), 200);
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", str(json_object_get(job, "job"), "id"));
    json_decref(CALL(&srv, "POST", path,
                     json_pack("{s:s, s:O, s:O, s:{s:s}}", "workerId", "wa-1", "claimToken",
                               json_object_get(json_object_get(job, "job"), "claimToken"), "leaseToken",
                               json_object_get(json_object_get(lease, "lease"), "token"), "result",
                               "channelMessageId", "wamid.OUT1"), 200));
    ck_assert_int_eq(whatsapp(sdel, WA_SECRET), 200);
    c = conversation("whatsapp:default:16315558151");
    m = json_array_get(json_object_get(c, "messages"), 0);
    ck_assert_str_eq(str(m, "status"), "sent");
    ck_assert_str_eq(str(m, "delivery"), "delivered");
    json_decref(c);
    ck_assert_int_eq(whatsapp(sfail, WA_SECRET), 200);
    c = conversation("whatsapp:default:16315558151");
    m = json_array_get(json_object_get(c, "messages"), 0);
    ck_assert_str_eq(str(m, "status"), "failed");
    ck_assert_ptr_nonnull(strstr(str(m, "error"), "131047"));
    ev = CALL(&srv, "GET", "/v1/events?event=whatsapp.send.failed", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    json_decref(ev);
    json_decref(c);
    json_decref(job);
    json_decref(lease);
    json_decref(o);
}
END_TEST

/* ---- ids are strings ----------------------------------------------------------- */

/* Every field named like an id (xxxId) of every recorded event is a string;
 * a sentence naming the first one that is not into bad (empty when all are). */
static void
event_ids_not_strings(char *bad, size_t n)
{
    json_t *ev = CALL(&srv, "GET", "/v1/events?limit=1000", NULL, 200), *e, *v;
    const char *k;
    size_t i;

    bad[0] = 0;
    ck_assert_int_gt(json_array_size(json_object_get(ev, "events")), 0);
    json_array_foreach(json_object_get(ev, "events"), i, e) {
        json_object_foreach(e, k, v) {
            size_t len = strlen(k);
            bool is_id = !strcmp(k, "id") || (len > 2 && !strcmp(k + len - 2, "Id"));
            if (is_id && !json_is_string(v) && !json_is_null(v) && !bad[0]) {
                char *dump = json_dumps(e, JSON_COMPACT);
                snprintf(bad, n, "%s of %s is not a string: %s", k, str(e, "event"), dump ? dump : "");
                free(dump);
            }
        }
    }
    json_decref(ev);
}

/* SPEC: ids are opaque strings -- in the Telegram webhook's answer and in
 * the events of a failed WhatsApp delivery as everywhere else. */
START_TEST(webhook_and_event_ids_are_strings)
{
    const char *sfail = WA_ENTRY("\"statuses\":[{\"id\":\"wamid.OUT9\",\"status\":\"failed\",\"timestamp\":\"6\","
                                 "\"recipient_id\":\"16315558151\",\"errors\":[{\"code\":131047,"
                                 "\"title\":\"Re-engagement message\"}]}]");
    json_t *ans = NULL, *c, *o, *lease, *job, *ev;
    char path[128], bad[2048];

    ck_assert_int_eq(telegram("/telegram/webhook", TG_SECRET, SMOKE, &ans), 200);
    ck_assert_msg(json_is_string(json_object_get(ans, "messageId")), "telegram webhook messageId is not a string");
    ck_assert_msg(json_is_string(json_object_get(ans, "jobId")), "telegram webhook jobId is not a string");
    c = conversation("telegram:default:123456789");
    ck_assert_str_eq(str(ans, "messageId"), str(json_array_get(json_object_get(c, "messages"), 0), "id"));
    json_decref(c);
    json_decref(ans);

    /* an outbound WhatsApp message, sent, then reported failed by Meta */
    o = CALL(&srv, "POST", "/v1/outbound", json_pack("{s:s, s:s, s:s, s:s}", "channel", "whatsapp", "accountId",
                                                     "default", "to", "16315558151", "text", "hi"), 201);
    lease = CALL(&srv, "POST", "/v1/leases/whatsapp/default/acquire",
                 json_pack("{s:s, s:i}", "ownerId", "wa-1", "ttlMs", 60000), 200);
    job = CALL(&srv, "POST", "/v1/jobs/claim",
               json_pack("{s:s, s:s, s:O}", "queue", "outbound.whatsapp.default", "workerId", "wa-1", "leaseToken",
                         json_object_get(json_object_get(lease, "lease"), "token")), 200);
    snprintf(path, sizeof path, "/v1/jobs/%s/complete", str(json_object_get(job, "job"), "id"));
    json_decref(CALL(&srv, "POST", path,
                     json_pack("{s:s, s:O, s:O, s:{s:s}}", "workerId", "wa-1", "claimToken",
                               json_object_get(json_object_get(job, "job"), "claimToken"), "leaseToken",
                               json_object_get(json_object_get(lease, "lease"), "token"), "result",
                               "channelMessageId", "wamid.OUT9"), 200));
    ck_assert_int_eq(whatsapp(sfail, WA_SECRET), 200);
    ev = CALL(&srv, "GET", "/v1/events?event=whatsapp.send.failed", NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1);
    ck_assert_msg(json_is_string(json_object_get(json_array_get(json_object_get(ev, "events"), 0), "messageId")),
                  "whatsapp.send.failed carries a messageId that is not a string");
    ck_assert_str_eq(str(json_array_get(json_object_get(ev, "events"), 0), "messageId"), str(o, "messageId"));
    json_decref(ev);

    event_ids_not_strings(bad, sizeof bad);
    ck_assert_msg(!bad[0], "%s", bad);
    json_decref(job);
    json_decref(lease);
    json_decref(o);
}
END_TEST

Suite *
suite_messages(void)
{
    Suite *s = suite_create("messages");
    TCase *tc = tcase_create("messages");

    tcase_add_checked_fixture(tc, up, down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, inbound_once);
    tcase_add_test(tc, inbound_bad_input);
    tcase_add_test(tc, inbound_concurrent_once);
    tcase_add_test(tc, reply_becomes_outbound_job_and_is_sent);
    tcase_add_test(tc, failed_send_marks_message_failed);
    tcase_add_test(tc, web_chat_reply_final_at_once);
    tcase_add_test(tc, reply_to_job_without_message_refused);
    tcase_add_test(tc, outbound_proactive);
    tcase_add_test(tc, conversation_long_poll_woken);
    tcase_add_test(tc, completion_with_reply_atomic_under_kill9);
    tcase_add_test(tc, telegram_runbook_smoke);
    tcase_add_test(tc, telegram_secret_checked);
    tcase_add_test(tc, telegram_not_configured_refuses);
    tcase_add_test(tc, telegram_kinds);
    tcase_add_test(tc, telegram_allowed_chats);
    tcase_add_test(tc, whatsapp_verify);
    tcase_add_test(tc, whatsapp_messages);
    tcase_add_test(tc, whatsapp_statuses_update_outbound);
    tcase_add_test(tc, webhook_and_event_ids_are_strings);
    suite_add_tcase(s, tc);
    return s;
}
