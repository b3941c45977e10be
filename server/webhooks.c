/* webhooks.c -- Telegram Bot API and WhatsApp Cloud API webhooks: check the
 * channel's own secret, turn each message into one inbound message (dedupe
 * + message + agent job), record everything else as ignored and answer 200
 * so the channel never retries it.
 *
 * A webhook whose secret is not configured answers 503 not_configured:
 * it never accepts unauthenticated input. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batond.h"

/* true when id is in the comma list (unset list = everything allowed) */
static bool
allowed(const char *list, const char *id)
{
    size_t n = strlen(id);

    if (!list || !*list)
        return true;
    for (const char *p = list; *p;) {
        size_t len;
        while (*p == ' ' || *p == ',')
            p++;
        len = strcspn(p, ", ");
        if (len == n && !strncmp(p, id, n))
            return true;
        p += len;
    }
    return false;
}

static const char *
account_of(struct req *r)
{
    const char *a = req_param(r, 0);
    return a ? a : "default";
}

/* A JSON number or string id as text. */
static bool
id_text(json_t *v, char *buf, size_t n)
{
    if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v) && json_string_length(v) && json_string_length(v) < n)
        snprintf(buf, n, "%s", json_string_value(v));
    else
        return false;
    return true;
}

static void
ignored(struct tx *t, const char *channel, const char *account, const char *reason, json_t *fields)
{
    char name[64];

    snprintf(name, sizeof name, "%s.inbound.ignored", channel);
    if (!fields)
        fields = json_object();
    json_object_set_new(fields, "accountId", json_string(account));
    json_object_set_new(fields, "reason", json_string(reason));
    event_emit(t, "info", name, fields);
}

/* ---- Telegram --------------------------------------------------------------- */

static int
telegram_tx(struct tx *t, struct req *r)
{
    json_t *u = r->json, *msg, *chat, *from, *upd = json_object_get(u, "update_id");
    const char *account = account_of(r), *kind, *text;
    char chat_id[64], msg_id[32], cmid[160], conv[256], reason[96], idbuf[32];
    const char *key;
    json_t *v;

    kind = json_object_get(u, "message") ? "message" : json_object_get(u, "edited_message") ? "edited_message" : NULL;
    if (!kind) {
        const char *other = "empty";
        json_object_foreach(u, key, v)
            if (strcmp(key, "update_id")) {
                other = key;
                break;
            }
        snprintf(reason, sizeof reason, "unsupported update: %.60s", other);
        utf8_sanitize(reason);      /* the cut may fall inside a character */
        ignored(t, "telegram", account, reason, json_pack("{s:O}", "updateId", upd ? upd : json_null()));
        return req_ok(r, 200, json_pack("{s:b, s:s}", "ok", 1, "ignored", reason));
    }
    msg = json_object_get(u, kind);
    chat = json_object_get(msg, "chat");
    from = json_object_get(msg, "from");
    text = json_string_value(json_object_get(msg, "text"));
    if (!text)
        text = json_string_value(json_object_get(msg, "caption"));
    if (!json_is_object(msg) || !id_text(json_object_get(chat, "id"), chat_id, sizeof chat_id) ||
        !id_text(json_object_get(msg, "message_id"), msg_id, sizeof msg_id)) {
        ignored(t, "telegram", account, "malformed message: no chat.id or message_id",
                json_pack("{s:O}", "updateId", upd ? upd : json_null()));
        return req_ok(r, 200, json_pack("{s:b, s:s}", "ok", 1, "ignored", "malformed message"));
    }
    if (!allowed(cfg.telegram_allowed, chat_id)) {
        ignored(t, "telegram", account, "chat not allowed", json_pack("{s:s}", "chatId", chat_id));
        return req_ok(r, 200, json_pack("{s:b, s:s}", "ok", 1, "ignored", "chat not allowed"));
    }
    if (!text) {
        ignored(t, "telegram", account, "no text", json_pack("{s:s, s:s}", "chatId", chat_id, "messageId", msg_id));
        return req_ok(r, 200, json_pack("{s:b, s:s}", "ok", 1, "ignored", "no text"));
    }
    if (!strcmp(kind, "edited_message")) {
        /* an edit is a new message to act on, not a duplicate of the original */
        json_int_t ed = json_integer_value(json_object_get(msg, "edit_date"));
        snprintf(cmid, sizeof cmid, "%s:%s:edit:%lld", chat_id, msg_id, (long long)ed);
    } else
        snprintf(cmid, sizeof cmid, "%s:%s", chat_id, msg_id);
    snprintf(conv, sizeof conv, "telegram:%s:%s", account, chat_id);
    {
        char user[64] = "";
        json_t *payload;
        struct inbound in;
        bool dup;
        int64_t mid;
        json_t *job;

        id_text(json_object_get(from, "id"), user, sizeof user);
        payload = json_pack("{s:s, s:O, s:s, s:s, s:s?, s:O, s:O, s:O, s:O}", "kind", kind, "updateId",
                            upd ? upd : json_null(), "chatId", chat_id, "messageId", msg_id, "fromUserId",
                            *user ? user : NULL, "username",
                            json_object_get(from, "username") ? json_object_get(from, "username") : json_null(),
                            "firstName",
                            json_object_get(from, "first_name") ? json_object_get(from, "first_name") : json_null(),
                            "chatType",
                            json_object_get(chat, "type") ? json_object_get(chat, "type") : json_null(),
                            "date", json_object_get(msg, "date") ? json_object_get(msg, "date") : json_null());
        in = (struct inbound){"telegram", account, cmid, conv, chat_id, text, payload};
        if (inbound_apply(t, &in, &dup, &mid, &job) < 0) {
            json_decref(payload);
            return -1;
        }
        json_decref(payload);
        if (dup)
            return req_ok(r, 200, json_pack("{s:b, s:b}", "ok", 1, "duplicate", 1));
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
        req_ok(r, 200, json_pack("{s:b, s:b, s:s, s:O}", "ok", 1, "duplicate", 0, "messageId", idbuf,
                                 "jobId", json_object_get(job, "id")));
        json_decref(job);
        return 0;
    }
}

int
webhooks_telegram(struct req *r)
{
    const char *h;

    if (!cfg.telegram_secret)
        return req_fail(r, "not_configured", NULL,
                        "TELEGRAM_WEBHOOK_SECRET is not set: the Telegram webhook is disabled");
    h = req_header(r, "X-Telegram-Bot-Api-Secret-Token");
    if (!h || !secret_equal(h, strlen(h), cfg.telegram_secret, strlen(cfg.telegram_secret)))
        return req_fail(r, "unauthorized", NULL, "missing or wrong x-telegram-bot-api-secret-token");
    if (!name_ok(account_of(r), ID_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL, "account id must be 1-100 characters of letters, digits and ._:@+-");
    if (req_parse_json(r) < 0)
        return -1;
    if (!r->json)
        return req_fail(r, "bad_request", NULL, "request body must be a Telegram Update object");
    return req_submit(r, telegram_tx);
}

/* ---- WhatsApp Cloud ------------------------------------------------------------ */

int
webhooks_whatsapp_verify(struct req *r)
{
    const char *mode = req_query(r, "hub.mode"), *token = req_query(r, "hub.verify_token"),
               *challenge = req_query(r, "hub.challenge");

    if (!cfg.whatsapp_verify)
        return req_fail(r, "not_configured", NULL,
                        "WHATSAPP_VERIFY_TOKEN is not set: the WhatsApp webhook is disabled");
    if (!mode || strcmp(mode, "subscribe") || !token || !challenge ||
        !secret_equal(token, strlen(token), cfg.whatsapp_verify, strlen(cfg.whatsapp_verify)))
        return req_fail(r, "forbidden", NULL, "verification failed");
    req_ok(r, 200, NULL);
    r->text = strdup(challenge);
    return r->text ? 0 : req_fail(r, "unavailable", NULL, "out of memory");
}

/* X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)> */
static bool
signature_ok(struct req *r)
{
    const char *h = req_header(r, "X-Hub-Signature-256");
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    size_t len;

    if (!h || strncmp(h, "sha256=", 7) || strlen(h + 7) != 2 * sizeof want ||
        sodium_hex2bin(want, sizeof want, h + 7, 2 * sizeof want, NULL, &len, NULL) || len != sizeof want)
        return false;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)cfg.whatsapp_app_secret,
                                strlen(cfg.whatsapp_app_secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)(r->body ? r->body : ""), r->body_len);
    crypto_auth_hmacsha256_final(&st, got);
    return sodium_memcmp(want, got, sizeof want) == 0;
}

/* The text a user sent: text, a media caption, or the label of a button
 * they pressed. NULL for kinds without text (reactions, stickers...). */
static const char *
wa_text(json_t *m, const char **type)
{
    static const char *const media[] = {"image", "video", "document", NULL};
    json_t *ia;

    *type = json_string_value(json_object_get(m, "type"));
    if (!*type)
        return NULL;
    if (!strcmp(*type, "text"))
        return json_string_value(json_object_get(json_object_get(m, "text"), "body"));
    for (int i = 0; media[i]; i++)
        if (!strcmp(*type, media[i]))
            return json_string_value(json_object_get(json_object_get(m, media[i]), "caption"));
    if (!strcmp(*type, "button"))
        return json_string_value(json_object_get(json_object_get(m, "button"), "text"));
    if (!strcmp(*type, "interactive")) {
        ia = json_object_get(m, "interactive");
        if (json_object_get(ia, "button_reply"))
            return json_string_value(json_object_get(json_object_get(ia, "button_reply"), "title"));
        if (json_object_get(ia, "list_reply"))
            return json_string_value(json_object_get(json_object_get(ia, "list_reply"), "title"));
    }
    return NULL;
}

static int
whatsapp_tx(struct tx *t, struct req *r)
{
    const char *account = account_of(r);
    json_t *entry, *change, *m, *s;
    size_t i, j, k;
    int queued = 0, dups = 0, skipped = 0, statuses = 0;

    json_array_foreach(json_object_get(r->json, "entry"), i, entry) {
        json_array_foreach(json_object_get(entry, "changes"), j, change) {
            json_t *value = json_object_get(change, "value");

            json_array_foreach(json_object_get(value, "messages"), k, m) {
                const char *type, *text = wa_text(m, &type);
                const char *from = json_string_value(json_object_get(m, "from"));
                const char *wamid = json_string_value(json_object_get(m, "id"));
                char conv[256];
                struct inbound in;
                bool dup;
                int64_t mid;

                if (!from || !*from || !wamid || !*wamid) {
                    ignored(t, "whatsapp", account, "malformed message: no from or id", NULL);
                    skipped++;
                    continue;
                }
                if (!allowed(cfg.whatsapp_allowed, from)) {
                    ignored(t, "whatsapp", account, "contact not allowed",
                            json_pack("{s:s, s:s}", "from", from, "channelMessageId", wamid));
                    skipped++;
                    continue;
                }
                if (!text) {
                    ignored(t, "whatsapp", account, "unsupported message type",
                            json_pack("{s:s, s:s, s:s}", "type", type ? type : "?", "from", from,
                                      "channelMessageId", wamid));
                    skipped++;
                    continue;
                }
                snprintf(conv, sizeof conv, "whatsapp:%s:%s", account, from);
                {
                    json_t *payload = json_pack("{s:s, s:O, s:O}", "type", type, "timestamp",
                                                json_object_get(m, "timestamp") ? json_object_get(m, "timestamp") : json_null(),
                                                "phoneNumberId",
                                                json_object_get(json_object_get(value, "metadata"), "phone_number_id")
                                                    ? json_object_get(json_object_get(value, "metadata"), "phone_number_id")
                                                    : json_null());
                    in = (struct inbound){"whatsapp", account, wamid, conv, from, text, payload};
                    if (inbound_apply(t, &in, &dup, &mid, NULL) < 0) {
                        json_decref(payload);
                        return -1;
                    }
                    json_decref(payload);
                }
                dup ? dups++ : queued++;
            }
            json_array_foreach(json_object_get(value, "statuses"), k, s) {
                const char *id = json_string_value(json_object_get(s, "id"));
                const char *st = json_string_value(json_object_get(s, "status"));
                json_t *err0 = json_array_get(json_object_get(s, "errors"), 0);
                char reason[160] = "";

                if (!id || !st || (strcmp(st, "sent") && strcmp(st, "delivered") && strcmp(st, "read") &&
                                   strcmp(st, "failed")))
                    continue;
                if (err0)
                    snprintf(reason, sizeof reason, "%lld %s",
                             (long long)json_integer_value(json_object_get(err0, "code")),
                             json_string_value(json_object_get(err0, "title"))
                                 ? json_string_value(json_object_get(err0, "title")) : "");
                utf8_sanitize(reason);
                if (messages_delivery(t, "whatsapp", id, st, *reason ? reason : NULL) < 0)
                    return -1;
                statuses++;
            }
        }
    }
    return req_ok(r, 200, json_pack("{s:b, s:i, s:i, s:i, s:i}", "ok", 1, "queued", queued, "duplicates", dups,
                                    "ignored", skipped, "statuses", statuses));
}

int
webhooks_whatsapp(struct req *r)
{
    if (!cfg.whatsapp_app_secret)
        return req_fail(r, "not_configured", NULL,
                        "WHATSAPP_APP_SECRET is not set: the WhatsApp webhook is disabled");
    if (!signature_ok(r))
        return req_fail(r, "unauthorized", NULL, "missing or wrong X-Hub-Signature-256");
    if (!name_ok(account_of(r), ID_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL, "account id must be 1-100 characters of letters, digits and ._:@+-");
    if (req_parse_json(r) < 0)
        return -1;
    if (!r->json || !json_is_array(json_object_get(r->json, "entry")))
        return req_fail(r, "bad_request", NULL, "field 'entry' must be an array");
    return req_submit(r, whatsapp_tx);
}
