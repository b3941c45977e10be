/* agent_telegram.c -- the telegram role: delivers outbound.telegram.<account>
 * jobs with the Bot API's sendMessage.
 *
 * Texts over 4096 characters go out as several messages, in order; the job
 * completes when every part was sent, with the first part's message_id.
 * A 429 fails the job as retryable with retryAfterMs = retry_after; a chat
 * that became a supergroup (migrate_to_chat_id) is sent to the new id, once.
 * A failure after some parts went out retries the whole text (the parts
 * already sent are sent again): Telegram has no idempotency key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

struct tg {
    struct agent_api api;
    char url[1024];                 /* holds the bot token: never logged */
    char base_log[200];             /* printable: the base without the token */
};

/* chat_id as Telegram wants it: a number when it is one, else the string
 * (e.g. "@channelname"). */
static json_t *
chat_json(const char *to)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(to, &end, 10);
    if (!errno && *to && !*end)
        return json_integer(v);
    return json_string(to);
}

static enum agent_send
tg_send(void *arg, json_t *payload, json_t **result, char *reason, size_t rn, char *message,
        size_t mn, long *retry_after_ms)
{
    struct tg *t = arg;
    const char *text = json_string_value(json_object_get(payload, "text"));
    const char *to = json_string_value(json_object_get(payload, "to"));
    json_t *chat;
    long long first_id = 0, migrate_to = 0;
    bool migrated = false;
    size_t off = 0, parts = 0;

    if (!text || !to || !*to) {
        snprintf(reason, rn, "bad_payload");
        snprintf(message, mn, "the outbound job has no 'to' or 'text'");
        return SEND_PERMANENT;
    }
    chat = chat_json(to);
    do {
        size_t len = agent_split_next(text + off, AGENT_TG_MAX_CHARS);
        json_t *body = json_object(), *ans = NULL;
        long status;
        enum agent_send s;

        json_object_set(body, "chat_id", chat);
        json_object_set_new(body, "text", json_stringn(text + off, len));
        status = agent_api_post(&t->api, t->url, NULL, body, acfg.tg_send_timeout_ms, &ans);
        json_decref(body);
        s = agent_tg_classify(status, ans, reason, rn, message, mn, retry_after_ms, &migrate_to);
        if (!status)
            snprintf(message, mn, "%s: %s", t->base_log, t->api.err);
        if (s == SEND_OK) {
            if (!parts++)
                first_id = json_integer_value(
                    json_object_get(json_object_get(ans, "result"), "message_id"));
            off += len;
        } else if (s == SEND_MIGRATE && !migrated) {
            agent_log("[telegram] chat %s moved to %lld: sending there", to, migrate_to);
            migrated = true;
            json_decref(chat);
            chat = json_integer(migrate_to);
        } else {
            json_decref(ans);
            json_decref(chat);
            return s == SEND_MIGRATE ? SEND_PERMANENT : s;
        }
        json_decref(ans);
    } while (text[off]);
    {
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "%lld", first_id);
        *result = json_pack("{s:s, s:I}", "channelMessageId", idbuf, "parts", (json_int_t)parts);
        if (migrated)
            json_object_set(*result, "migratedToChatId", chat);
    }
    json_decref(chat);
    return SEND_OK;
}

int
agent_run_telegram(void)
{
    struct tg t = {0};
    struct agent_health health = {.channel = "telegram", .account = acfg.tg_account};
    struct agent_outbound o = {
        .channel = "telegram",
        .account = acfg.tg_account,
        .lock_ms = acfg.tg_send_timeout_ms * 2 + 10000,
        .send = tg_send,
        .arg = &t,
        .health = &health,
    };

    snprintf(t.url, sizeof t.url, "%s/bot%s/sendMessage", acfg.tg_api_base, acfg.tg_token);
    snprintf(t.base_log, sizeof t.base_log, "%s", acfg.tg_api_base);
    agent_outbound_loop(&o);
    agent_api_close(&t.api);
    return 0;
}
