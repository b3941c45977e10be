/* messages.c -- the rules of messages and conversations: the inbound path
 * (dedupe + message + agent job in one transaction), replies that become
 * outbound jobs in the completion's transaction, delivery results, and the
 * conversation topics that wake the listings.
 *
 * DESIGN
 * Every change to a conversation happens in the transaction of the event
 * that caused it (a webhook, a job's completion, failure or progress), so
 * a crash leaves either the whole step or none of it. Each change notifies
 * the topic "conv:<conversationId>", which wakes the long-polls of that
 * conversation after the commit. The HTTP side is messages_api.c; the SQL
 * is the store's (store->messages).
 */
#include <stdlib.h>
#include <string.h>

/* transitional: jobs_insert, struct jobs_hooks and dedupe_register are
 * still declared in batond.h; this becomes "core.h" alone once they are in
 * core.h. Nothing of the API layer (struct req, SQLite) is used here. */
#include "core.h"
#include "core.h"

#define MAX_ID 512

void
messages_topic(const char *conversation, char *buf, size_t n)
{
    snprintf(buf, n, "conv:%s", conversation);
}

static void
notify_conversation(struct tx *t, const char *conversation)
{
    char topic[MAX_ID + 8];

    messages_topic(conversation, topic, sizeof topic);
    tx_notify(t, topic);
}

/* Notify the conversation of each changed row, then free the rows. */
static void
notify_rows(struct tx *t, struct message *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        notify_conversation(t, v[i].conversation);
    store->messages->free_rows(v, n);
}

/* Insert a message and notify its conversation; *id_out gets its id. */
static int
msg_insert(struct tx *t, struct message *m, int64_t *id_out)
{
    if (store->messages->insert(t, m) < 0)
        return -1;
    *id_out = m->id;
    notify_conversation(t, m->conversation);
    return 0;
}

/* Link message msg to job (its JSON as jobs_insert gives it). */
static int
msg_set_job(struct tx *t, int64_t msg, json_t *job)
{
    const char *jid = json_string_value(json_object_get(job, "id"));
    int64_t j;

    if (!jid || parse_int64(jid, &j) < 0)
        return tx_fail(t, "internal", NULL, "job without an id");
    return store->messages->set_job(t, msg, j);
}

/* ---- the inbound path ----------------------------------------------------- */

/* One inbound message through dedupe, the messages table and the agent
 * queue, inside the caller's write. Sets *dup when it had been seen;
 * fills msg_id/job (new reference) otherwise. */
int
inbound_apply(struct tx *t, const struct inbound *in, bool *dup, int64_t *msg_id,
              json_t **job_out)
{
    int64_t first_seen, mid;
    json_t *payload, *job = NULL;
    char idbuf[24];
    struct message m = {
        .conversation = in->conversation, .channel = in->channel, .account = in->account,
        .direction = "in", .channel_message_id = in->channel_message_id, .sender = in->from,
        .text = in->text, .payload = in->payload, .status = "received",
    };

    *dup = false;
    if (job_out)
        *job_out = NULL;
    /* Two bots in one Telegram group see the same chat:message ids, so the
     * dedupe key of an account other than "default" carries the account. */
    if (strcmp(in->account, "default")) {
        char key[2 * MAX_ID + 2];
        snprintf(key, sizeof key, "%s|%s", in->account, in->channel_message_id);
        if (dedupe_register(t, in->channel, key, cfg.dedupe_ttl_ms, dup, &first_seen) < 0)
            return -1;
    } else if (dedupe_register(t, in->channel, in->channel_message_id, cfg.dedupe_ttl_ms, dup,
                               &first_seen) < 0)
        return -1;
    if (*dup) {
        char name[64];
        snprintf(name, sizeof name, "%s.inbound.dedupe_skipped", in->channel);
        event_emit(t, "info", name,
                   json_pack("{s:s, s:s, s:s, s:I}", "channel", in->channel, "accountId", in->account,
                             "channelMessageId", in->channel_message_id, "firstSeenAt",
                             (json_int_t)first_seen));
        return 0;
    }
    if (msg_insert(t, &m, &mid) < 0)
        return -1;
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    payload = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s}", "messageId", idbuf, "conversationId",
                        in->conversation, "channel", in->channel, "accountId", in->account, "from",
                        in->from, "text", in->text ? in->text : "", "channelMessageId",
                        in->channel_message_id);
    /* one message of a conversation at a time, in the order they came */
    if (jobs_insert_opts(t, "agent", payload,
                     &(struct job_opts){.max_attempts = 5, .conversation_id = in->conversation,
                                        .message_id = idbuf, .order_key = in->conversation},
                     &job, NULL) < 0) {
        json_decref(payload);
        return -1;
    }
    json_decref(payload);
    if (msg_set_job(t, mid, job) < 0) {
        json_decref(job);
        return -1;
    }
    {
        char name[64];
        snprintf(name, sizeof name, "%s.inbound.queued", in->channel);
        event_emit(t, "info", name,
                   json_pack("{s:s, s:s, s:s, s:s, s:O}", "channel", in->channel, "accountId", in->account,
                             "channelMessageId", in->channel_message_id, "messageId", idbuf, "jobId",
                             json_object_get(job, "id")));
    }
    *msg_id = mid;
    if (job_out)
        *job_out = job;
    else
        json_decref(job);
    return 0;
}

/* ---- replies and delivery ------------------------------------------------- */

static int64_t
id_of(json_t *v)
{
    int64_t x = 0;

    if (json_is_string(v) && parse_int64(json_string_value(v), &x) == 0)
        return x;
    if (json_is_integer(v))
        return json_integer_value(v);
    return 0;
}

int
messages_send(struct tx *t, const char *channel, const char *account, const char *to,
              const char *text, json_t *payload, const char *conversation,
              int64_t *msg_id, json_t **job_out)
{
    bool web = !strcmp(channel, "web");
    int64_t mid;
    char idbuf[24], queue[256], dest[3 * 512 + 3];
    json_t *job = NULL, *jp;
    struct message m = {
        .conversation = conversation, .channel = channel, .account = account, .direction = "out",
        .recipient = to, .text = text, .payload = payload, .status = web ? "sent" : "queued",
    };

    if (job_out)
        *job_out = NULL;
    if (msg_insert(t, &m, &mid) < 0)
        return -1;
    *msg_id = mid;
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    if (web) {
        event_emit(t, "info", "web.outbound.sent",
                   json_pack("{s:s, s:s, s:s}", "messageId", idbuf, "conversationId", conversation,
                             "accountId", account));
        return 0;
    }
    snprintf(queue, sizeof queue, "outbound.%s.%s", channel, account);
    jp = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s}", "messageId", idbuf, "channel", channel, "accountId",
                   account, "to", to, "text", text, "conversationId", conversation);
    /* the replies to one destination go out one at a time, in order, and
     * paced by the queue's limit per destination (queues.c) */
    snprintf(dest, sizeof dest, "%s/%s/%s", channel, account, to ? to : conversation);
    if (jobs_insert_opts(t, queue, jp,
                     &(struct job_opts){.max_attempts = 5, .conversation_id = conversation,
                                        .message_id = idbuf, .order_key = dest,
                                        .rate_key = to ? to : conversation},
                     &job, NULL) < 0) {
        json_decref(jp);
        return -1;
    }
    json_decref(jp);
    if (msg_set_job(t, mid, job) < 0) {
        json_decref(job);
        return -1;
    }
    if (job_out)
        *job_out = job;
    else
        json_decref(job);
    return 0;
}

static bool
is_outbound_queue(const char *queue, char *channel, size_t n)
{
    const char *dot;

    if (strncmp(queue, "outbound.", 9))
        return false;
    dot = strchr(queue + 9, '.');
    if (!dot || (size_t)(dot - queue - 9) >= n)
        return false;
    snprintf(channel, n, "%.*s", (int)(dot - queue - 9), queue + 9);
    return true;
}

/* The result of sending outbound message mid; notifies its conversation. */
static int
set_status(struct tx *t, int64_t mid, const char *status, const char *channel_id,
           const char *error)
{
    char *conv = NULL;
    int rc = store->messages->set_status(t, mid, status, channel_id, error, &conv);

    if (rc < 0)
        return -1;
    if (rc > 0)
        notify_conversation(t, conv);
    free(conv);
    return 0;
}

static int
messages_job_completed(struct tx *t, json_t *job, json_t *result, json_t *reply)
{
    const char *queue = json_string_value(json_object_get(job, "queue"));
    json_t *payload = json_object_get(job, "payload");
    char channel[64];

    if (!queue)
        return 0;
    if (is_outbound_queue(queue, channel, sizeof channel)) {
        int64_t mid = id_of(json_object_get(payload, "messageId"));
        const char *sent_id = json_string_value(json_object_get(result, "channelMessageId"));
        char name[96];

        if (!mid)
            return 0;       /* an outbound job nobody tracks as a message */
        if (set_status(t, mid, "sent", sent_id, NULL) < 0)
            return -1;
        snprintf(name, sizeof name, "%s.outbound.sent", channel);
        event_emit(t, "info", name,
                   json_pack("{s:O, s:O, s:O, s:O, s:s?}", "messageId", json_object_get(payload, "messageId"),
                             "jobId", json_object_get(job, "id"), "accountId",
                             json_object_get(payload, "accountId") ? json_object_get(payload, "accountId") : json_null(),
                             "ownerId", json_object_get(job, "lockedBy") ? json_object_get(job, "lockedBy") : json_null(),
                             "channelMessageId", sent_id));
        return 0;
    }
    if (!reply || json_is_null(reply))
        return 0;
    {
        const char *text = json_string_value(json_object_get(reply, "text"));
        int64_t mid = id_of(json_object_get(job, "messageId")), out_id;
        struct message in;
        int rc;

        if (!text)
            return tx_fail(t, "bad_request", NULL, "field 'reply.text' must be a string");
        if (!mid)
            return tx_fail(t, "bad_request", NULL,
                            "a reply needs a job created from a message (this job has no messageId)");
        if ((rc = store->messages->get(t, mid, &in)) < 0)
            return -1;
        if (!rc)
            return tx_fail(t, "conflict", NULL, "the message this job answers no longer exists");
        rc = messages_send(t, in.channel, in.account, in.sender, text, json_object_get(reply, "payload"),
                           in.conversation, &out_id, NULL);
        store->messages->clear(&in);
        return rc;
    }
}

static int
messages_job_failed(struct tx *t, json_t *job)
{
    const char *queue = json_string_value(json_object_get(job, "queue"));
    json_t *payload = json_object_get(job, "payload");
    char channel[64], name[96];
    int64_t mid;

    if (!queue)
        return 0;
    if (!is_outbound_queue(queue, channel, sizeof channel)) {
        /* an agent job: the conversation shows that its answer failed */
        const char *conv = json_string_value(json_object_get(job, "conversationId"));
        if (conv)
            notify_conversation(t, conv);
        return 0;
    }
    if (!(mid = id_of(json_object_get(payload, "messageId"))))
        return 0;
    if (set_status(t, mid, "failed", NULL, json_string_value(json_object_get(job, "errorReason"))) < 0)
        return -1;
    snprintf(name, sizeof name, "%s.send.failed", channel);
    event_emit(t, "warn", name,
               json_pack("{s:O, s:O, s:O, s:O, s:O}", "messageId", json_object_get(payload, "messageId"),
                         "jobId", json_object_get(job, "id"), "accountId",
                         json_object_get(payload, "accountId") ? json_object_get(payload, "accountId") : json_null(),
                         "ownerId", json_object_get(job, "lockedBy") ? json_object_get(job, "lockedBy") : json_null(),
                         "errorReason", json_object_get(job, "errorReason") ? json_object_get(job, "errorReason") : json_null()));
    return 0;
}

static int
messages_job_progress(struct tx *t, int64_t job_id, const char *token, const char *text)
{
    struct message *v;
    size_t n;

    if (store->messages->set_partial(t, job_id, token, text, &v, &n) < 0)
        return -1;
    notify_rows(t, v, n);
    return 0;
}

/* Delivery reports from a channel webhook (WhatsApp statuses[]). */
int
messages_delivery(struct tx *t, const char *channel, const char *channel_message_id,
                  const char *delivery, const char *error)
{
    struct message *v;
    size_t n;

    if (store->messages->set_delivery(t, channel, channel_message_id, delivery, error, &v, &n) < 0)
        return -1;
    if (!strcmp(delivery, "failed"))
        for (size_t i = 0; i < n; i++) {
            char mid[32], name[96];
            snprintf(mid, sizeof mid, "%lld", (long long)v[i].id);
            snprintf(name, sizeof name, "%s.send.failed", channel);
            event_emit(t, "warn", name,
                       json_pack("{s:s, s:s, s:s, s:s?}", "messageId", mid, "accountId", v[i].account,
                                 "channelMessageId", channel_message_id, "errorReason", error));
        }
    notify_rows(t, v, n);
    return n ? 1 : 0;
}

void
messages_init(void)
{
    static const struct jobs_hooks h = {
        .completed = messages_job_completed,
        .failed = messages_job_failed,
        .progress = messages_job_progress,
    };

    jobs_set_hooks(&h);
}
