/* messages.c -- messages and conversations: the inbound path (dedupe +
 * message + agent job in one transaction), replies that become outbound
 * jobs in the completion's transaction, delivery results, and the web
 * chat's conversation API with long-poll.
 *
 * DESIGN
 * Nothing here runs outside a write function except the plain listing:
 * every change to a conversation happens in the transaction of the event
 * that caused it, so a crash leaves either the whole step or none of it.
 * Each change notifies the topic "conv:<conversationId>", which wakes the
 * long-polls of that conversation after the commit.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define MAX_ID 512


/* ---- shapes --------------------------------------------------------------- */

/* A message with, for an inbound one, the state of the agent job answering
 * it: the partial reply counts only while the claim that reported it is
 * the job's current one. */
#define MSG_SELECT                                                                           \
    "SELECT m.id, m.conversation_id, m.channel, m.account_id, m.direction, m.channel_message_id," \
    " m.sender, m.recipient, m.text, m.payload, m.status, m.delivery, m.error, m.job_id,"      \
    " m.created_at, m.sent_at, m.partial, (j.status = 'processing' AND m.partial_token = j.claim_token)," \
    " j.status, j.error_reason FROM messages m LEFT JOIN jobs j ON j.id = m.job_id AND m.direction = 'in'"

static json_t *
msg_json(sqlite3_stmt *s)
{
    json_t *m = json_object();
    char id[24];

    snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(s, 0));
    json_object_set_new(m, "id", json_string(id));
    json_object_set_new(m, "conversationId", col_text(s, 1));
    json_object_set_new(m, "channel", col_text(s, 2));
    json_object_set_new(m, "accountId", col_text(s, 3));
    json_object_set_new(m, "direction", col_text(s, 4));
    json_object_set_new(m, "channelMessageId", col_text(s, 5));
    json_object_set_new(m, "from", col_text(s, 6));
    json_object_set_new(m, "to", col_text(s, 7));
    json_object_set_new(m, "text", col_text(s, 8));
    json_object_set_new(m, "payload", col_json(s, 9));
    json_object_set_new(m, "status", col_text(s, 10));
    json_object_set_new(m, "delivery", col_text(s, 11));
    json_object_set_new(m, "error", col_text(s, 12));
    if (sqlite3_column_type(s, 13) != SQLITE_NULL) {
        snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(s, 13));
        json_object_set_new(m, "jobId", json_string(id));
    } else
        json_object_set_new(m, "jobId", json_null());
    json_object_set_new(m, "createdAt", col_int(s, 14));
    json_object_set_new(m, "sentAt", col_int(s, 15));
    /* inbound: how its answer is doing (pending, processing with the text
     * so far, completed, failed), or null once the job is gone */
    if (sqlite3_column_type(s, 18) != SQLITE_NULL)
        json_object_set_new(m, "reply",
                            json_pack("{s:o, s:o, s:o}", "state", col_text(s, 18), "partial",
                                      sqlite3_column_int(s, 17) ? col_text(s, 16) : json_null(),
                                      "errorReason", col_text(s, 19)));
    else if (!strcmp((const char *)sqlite3_column_text(s, 4), "in"))
        json_object_set_new(m, "reply", json_null());
    return m;
}

static void
notify_conversation(struct tx *t, const char *conversation)
{
    char topic[MAX_ID + 8];

    snprintf(topic, sizeof topic, "conv:%s", conversation);
    tx_notify(t, topic);
}

/* Insert a message; *id_out gets its id. Returns 0 or -1 (answered). */
static int
msg_insert(struct tx *t, const char *conversation, const char *channel,
           const char *account, const char *direction, const char *channel_message_id,
           const char *from, const char *to, const char *text, json_t *payload, const char *status,
           int64_t *id_out)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO messages(conversation_id, channel, account_id, direction, channel_message_id,"
        " sender, recipient, text, payload, status, created_at, sent_at)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    char *p = payload && !json_is_null(payload) ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    int rc;

    if (!st) {
        free(p);
        return sq_fail(t);
    }
    sqlite3_bind_text(st, 1, conversation, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, account, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, direction, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, channel_message_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, from, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, to, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, text ? text : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, p, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, t->now);
    if (!strcmp(status, "sent"))
        sqlite3_bind_int64(st, 12, t->now);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    free(p);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    *id_out = sqlite3_last_insert_rowid(SQ(t));
    notify_conversation(t, conversation);
    return 0;
}

static int
msg_set_job(struct tx *t, int64_t msg, json_t *job)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE messages SET job_id = ? WHERE id = ?");
    const char *jid = json_string_value(json_object_get(job, "id"));
    int64_t j;

    if (!st)
        return sq_fail(t);
    if (!jid || parse_int64(jid, &j) < 0)
        return tx_fail(t, "internal", NULL, "job without an id");
    sqlite3_bind_int64(st, 1, j);
    sqlite3_bind_int64(st, 2, msg);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return sq_fail(t);
    }
    sqlite3_reset(st);
    return 0;
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
    if (msg_insert(t, in->conversation, in->channel, in->account, "in", in->channel_message_id,
                   in->from, NULL, in->text, in->payload, "received", &mid) < 0)
        return -1;
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    payload = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s}", "messageId", idbuf, "conversationId",
                        in->conversation, "channel", in->channel, "accountId", in->account, "from",
                        in->from, "text", in->text ? in->text : "", "channelMessageId",
                        in->channel_message_id);
    if (jobs_insert(t, "agent", payload, 0, 0, 5, NULL, in->conversation, idbuf, &job, NULL) < 0) {
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

static int
inbound_tx(struct tx *t, struct req *r)
{
    struct inbound *in = r->ctx;
    bool dup;
    int64_t mid;
    json_t *job;
    char idbuf[24];

    if (inbound_apply(t, in, &dup, &mid, &job) < 0)
        return -1;
    if (dup)
        return req_ok(r, 200, json_pack("{s:b}", "duplicate", 1));
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    req_ok(r, 201, json_pack("{s:b, s:s, s:O}", "duplicate", 0, "messageId", idbuf, "jobId",
                             json_object_get(job, "id")));
    json_decref(job);
    return 0;
}

static int
inbound_check(struct req *r, struct inbound *in)
{
    if (!name_ok(in->channel, ID_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL,
                        "field 'channel' must be 1-100 characters of letters, digits and ._:@+-");
    if (!name_ok(in->account, ID_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL,
                        "field 'accountId' must be 1-100 characters of letters, digits and ._:@+-");
    return 0;
}

/* POST /v1/inbound {channel, accountId, channelMessageId, conversationId, from, text, payload?} */
int
messages_inbound(struct req *r)
{
    struct inbound *in = calloc(1, sizeof *in);
    struct field spec[] = {
        {"channel", F_STR, F_REQUIRED, NULL, 0, 100, NULL},
        {"accountId", F_STR, F_REQUIRED, NULL, 0, 100, NULL},
        {"channelMessageId", F_STR, F_REQUIRED, NULL, 0, MAX_ID, NULL},
        {"conversationId", F_STR, F_REQUIRED, NULL, 0, MAX_ID, NULL},
        {"from", F_STR, 0, NULL, 0, MAX_ID, NULL},
        {"text", F_STR, F_REQUIRED | F_EMPTY_OK, NULL, 0, 0, NULL},
        FIELD_ANY("payload", NULL, 0),
        FIELD_END,
    };

    if (!in)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = in;
    r->ctx_free = free;
    spec[0].out = &in->channel;
    spec[1].out = &in->account;
    spec[2].out = &in->channel_message_id;
    spec[3].out = &in->conversation;
    spec[4].out = &in->from;
    spec[5].out = &in->text;
    spec[6].out = &in->payload;
    if (req_fields(r, spec) < 0 || inbound_check(r, in) < 0)
        return -1;
    return req_submit(r, inbound_tx);
}

/* ---- web chat ------------------------------------------------------------- */

struct webmsg {
    struct inbound in;
    char *generated;        /* channelMessageId when the client gave none */
};

static void
webmsg_free(void *p)
{
    struct webmsg *w = p;

    free(w->generated);
    free(w);
}

/* POST /v1/conversations/{id}/messages {text, from?, clientMessageId?} */
int
messages_web_post(struct req *r)
{
    struct webmsg *w = calloc(1, sizeof *w);
    const char *client_id = NULL;
    struct field spec[] = {
        {"text", F_STR, F_REQUIRED, NULL, 0, 0, NULL},
        {"from", F_STR, 0, NULL, 0, MAX_ID, NULL},
        {"clientMessageId", F_STR, 0, &client_id, 0, 200, NULL},
        FIELD_END,
    };

    if (!w)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = w;
    r->ctx_free = webmsg_free;
    spec[0].out = &w->in.text;
    spec[1].out = &w->in.from;
    w->in.from = "web-user";
    if (req_fields(r, spec) < 0)
        return -1;
    if (strlen(req_param(r, 0)) > MAX_ID)
        return req_fail(r, "bad_request", NULL, "conversation id is longer than %d bytes", MAX_ID);
    w->in.channel = "web";
    w->in.account = "default";
    w->in.conversation = req_param(r, 0);
    if (client_id) {
        /* a retried post with the same clientMessageId is answered as a duplicate */
        size_t n = strlen(w->in.conversation) + strlen(client_id) + 2;
        w->generated = malloc(n);
        if (w->generated)
            snprintf(w->generated, n, "%s:%s", w->in.conversation, client_id);
    } else
        w->generated = new_id("web_");
    if (!w->generated)
        return req_fail(r, "unavailable", NULL, "out of memory");
    w->in.channel_message_id = w->generated;
    return req_submit(r, inbound_tx);
}

struct listing {
    const char *conversation;
    const char *rev;        /* ?rev= : wait until the conversation changes */
    int64_t after, limit, deadline;
};

/* Messages of a conversation after a cursor, oldest first. */
static json_t *
list_after(sqlite3 *db, const struct listing *l)
{
    sqlite3_stmt *st = db_prep(db, MSG_SELECT " WHERE m.conversation_id = ? AND m.id > ? ORDER BY m.id LIMIT ?");
    json_t *out;

    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, l->conversation, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, l->after);
    sqlite3_bind_int64(st, 3, l->limit);
    out = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(out, msg_json(st));
    sqlite3_reset(st);
    return out;
}

/* The conversation's revision: changes with every new message, progress
 * report and state change of a job answering one of its messages. Opaque
 * to clients ("<last id>.<progress reports>.<last job change>"). */
static int
conversation_rev(sqlite3 *db, const char *conversation, char *buf, size_t n)
{
    sqlite3_stmt *st = db_prep(db, "SELECT coalesce(max(m.id), 0), coalesce(sum(m.partial_rev), 0),"
                                   " coalesce(max(j.updated_at), 0) FROM messages m"
                                   " LEFT JOIN jobs j ON j.id = m.job_id AND m.direction = 'in'"
                                   " WHERE m.conversation_id = ?");
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, conversation, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(buf, n, "%lld.%lld.%lld", (long long)sqlite3_column_int64(st, 0),
                 (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2));
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int
answer_listing(struct req *r, json_t *msgs, const char *rev)
{
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);

    return req_ok(r, 200, json_pack("{s:o, s:O, s:s}", "messages", msgs, "nextAfter",
                                    last ? json_object_get(last, "id") : json_null(), "rev", rev));
}

/* Whether a listing has something to say now: new messages, or with
 * ?rev= a revision other than the one the client holds. */
static bool
listing_ready(const struct listing *l, json_t *msgs, const char *rev)
{
    if (l->rev)
        return strcmp(rev, l->rev) != 0;
    return json_array_size(msgs) > 0;
}

/* The long-poll half: runs on the writer so that looking and parking are
 * ordered with the commits that add messages. */
static int
listing_wait_tx(struct tx *t, struct req *r)
{
    struct listing *l = r->ctx;
    json_t *msgs = list_after(SQ(t), l);
    char topic[MAX_ID + 8], rev[96];

    if (!msgs || conversation_rev(SQ(t), l->conversation, rev, sizeof rev) < 0) {
        json_decref(msgs);
        return db_fail(r, SQ(t));
    }
    if (listing_ready(l, msgs, rev) || t->now >= l->deadline)
        return answer_listing(r, msgs, rev);
    answer_listing(r, msgs, rev);   /* the answer if nothing comes */
    snprintf(topic, sizeof topic, "conv:%s", l->conversation);
    req_park(t, r, topic, l->deadline, 0);
    return 0;
}

/* GET /v1/conversations/{id}/messages?after=&limit=&waitMs=&rev= */
int
messages_list(struct req *r)
{
    struct listing *l = calloc(1, sizeof *l);
    int64_t wait;
    const char *after = req_query(r, "after");
    sqlite3 *db;
    json_t *msgs;
    char rev[96];

    if (!l)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = l;
    r->ctx_free = free;
    l->conversation = req_param(r, 0);
    l->rev = req_query(r, "rev");
    if (l->rev && !*l->rev)
        l->rev = NULL;
    if (req_query_int(r, "limit", 100, 1, 1000, &l->limit) < 0 ||
        req_query_int(r, "waitMs", 0, 0, 60000, &wait) < 0)
        return -1;
    if (after && *after && (parse_int64(after, &l->after) < 0 || l->after < 0))
        return req_fail(r, "bad_request", NULL, "query parameter 'after' must be a message id");
    if (l->rev && strlen(l->rev) > 90)
        return req_fail(r, "bad_request", NULL, "query parameter 'rev' must be a rev of this listing");
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    if (!(msgs = list_after(db, l)) || conversation_rev(db, l->conversation, rev, sizeof rev) < 0) {
        json_decref(msgs);
        return db_fail(r, db);
    }
    if (listing_ready(l, msgs, rev) || !wait)
        return answer_listing(r, msgs, rev);
    json_decref(msgs);
    l->deadline = now_ms() + wait;
    return req_submit(r, listing_wait_tx);
}

/* GET /v1/conversations?channel=&limit=: the most recently active
 * conversations first, with their channel, account, message count and
 * last message time. */
int
messages_conversations(struct req *r)
{
    const char *channel = req_query(r, "channel");
    int64_t limit;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *out;
    int rc;

    if (req_query_int(r, "limit", 50, 1, 500, &limit) < 0)
        return -1;
    if (channel && !*channel)
        channel = NULL;
    if (!(db = db_reader()))
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    st = db_prep(db, "SELECT conversation_id, channel, account_id, count(*), max(id), max(created_at)"
                     " FROM messages WHERE ?1 IS NULL OR channel = ?1"
                     " GROUP BY conversation_id ORDER BY max(id) DESC LIMIT ?2");
    if (!st)
        return db_fail(r, db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit);
    out = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(out, json_pack("{s:o, s:o, s:o, s:I, s:o}", "conversationId", col_text(st, 0),
                                             "channel", col_text(st, 1), "accountId", col_text(st, 2),
                                             "messages", (json_int_t)sqlite3_column_int64(st, 3),
                                             "lastMessageAt", col_int(st, 5)));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(out);
        return db_fail(r, db);
    }
    return req_ok(r, 200, json_pack("{s:o}", "conversations", out));
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

/* Queue an outbound message and its job; web messages are final at once. */
static int
queue_outbound(struct tx *t, const char *channel, const char *account, const char *to,
               const char *text, json_t *payload, const char *conversation, json_t **result)
{
    bool web = !strcmp(channel, "web");
    int64_t mid;
    char idbuf[24], queue[256];
    json_t *job = NULL, *jp;

    if (msg_insert(t, conversation, channel, account, "out", NULL, NULL, to, text, payload,
                   web ? "sent" : "queued", &mid) < 0)
        return -1;
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    if (web) {
        event_emit(t, "info", "web.outbound.sent",
                   json_pack("{s:s, s:s, s:s}", "messageId", idbuf, "conversationId", conversation,
                             "accountId", account));
        if (result)
            *result = json_pack("{s:s, s:n}", "messageId", idbuf, "jobId");
        return 0;
    }
    snprintf(queue, sizeof queue, "outbound.%s.%s", channel, account);
    jp = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s}", "messageId", idbuf, "channel", channel, "accountId",
                   account, "to", to, "text", text, "conversationId", conversation);
    if (jobs_insert(t, queue, jp, 0, 0, 5, NULL, conversation, idbuf, &job, NULL) < 0) {
        json_decref(jp);
        return -1;
    }
    json_decref(jp);
    if (msg_set_job(t, mid, job) < 0) {
        json_decref(job);
        return -1;
    }
    if (result)
        *result = json_pack("{s:s, s:O}", "messageId", idbuf, "jobId", json_object_get(job, "id"));
    json_decref(job);
    return 0;
}

/* The inbound message an agent job answers. */
static json_t *
msg_get(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *st = db_prep(db, MSG_SELECT " WHERE m.id = ?");
    json_t *m = NULL;

    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW)
        m = msg_json(st);
    sqlite3_reset(st);
    return m;
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

static int
set_status(struct tx *t, int64_t mid, const char *status, const char *channel_id,
           const char *error)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET status = ?1, channel_message_id = coalesce(?2, channel_message_id),"
        " error = ?3, sent_at = CASE WHEN ?1 = 'sent' THEN ?4 ELSE sent_at END,"
        " delivery = CASE WHEN ?1 = 'sent' THEN coalesce(delivery, 'sent') ELSE ?1 END"
        " WHERE id = ?5 AND direction = 'out' RETURNING conversation_id");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, channel_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, mid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char conv[MAX_ID + 1];
        snprintf(conv, sizeof conv, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        notify_conversation(t, conv);
        return 0;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
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
        int64_t mid = id_of(json_object_get(job, "messageId"));
        json_t *in;
        int rc;

        if (!text)
            return tx_fail(t, "bad_request", NULL, "field 'reply.text' must be a string");
        if (!mid)
            return tx_fail(t, "bad_request", NULL,
                            "a reply needs a job created from a message (this job has no messageId)");
        if (!(in = msg_get(SQ(t), mid)))
            return tx_fail(t, "conflict", NULL, "the message this job answers no longer exists");
        rc = queue_outbound(t, json_string_value(json_object_get(in, "channel")),
                            json_string_value(json_object_get(in, "accountId")),
                            json_string_value(json_object_get(in, "from")), text,
                            json_object_get(reply, "payload"),
                            json_string_value(json_object_get(in, "conversationId")), NULL);
        json_decref(in);
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
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET partial = ?1, partial_token = ?2, partial_rev = partial_rev + 1"
        " WHERE job_id = ?3 AND direction = 'in' RETURNING conversation_id");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, token, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, job_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char conv[MAX_ID + 1];
        snprintf(conv, sizeof conv, "%s", (const char *)sqlite3_column_text(st, 0));
        notify_conversation(t, conv);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

/* Delivery reports from a channel webhook (WhatsApp statuses[]). */
int
messages_delivery(struct tx *t, const char *channel, const char *channel_message_id,
                  const char *delivery, const char *error)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET delivery = ?1,"
        " status = CASE WHEN ?1 = 'failed' THEN 'failed' WHEN status = 'queued' THEN 'sent' ELSE status END,"
        " error = CASE WHEN ?1 = 'failed' THEN ?2 ELSE error END,"
        " sent_at = coalesce(sent_at, ?3)"
        " WHERE channel = ?4 AND channel_message_id = ?5 AND direction = 'out'"
        " RETURNING id, conversation_id, account_id");
    bool found = false;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, delivery, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_text(st, 4, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, channel_message_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char conv[MAX_ID + 1], name[96];
        found = true;
        snprintf(conv, sizeof conv, "%s", (const char *)sqlite3_column_text(st, 1));
        if (!strcmp(delivery, "failed")) {
            char mid[32];
            snprintf(mid, sizeof mid, "%lld", (long long)sqlite3_column_int64(st, 0));
            snprintf(name, sizeof name, "%s.send.failed", channel);
            event_emit(t, "warn", name,
                       json_pack("{s:s, s:s, s:s, s:s?}", "messageId", mid,
                                 "accountId", (const char *)sqlite3_column_text(st, 2), "channelMessageId",
                                 channel_message_id, "errorReason", error));
        }
        notify_conversation(t, conv);
    }
    sqlite3_reset(st);
    return found ? 1 : 0;
}

/* ---- POST /v1/outbound ---------------------------------------------------- */

struct outbound {
    const char *channel, *account, *to, *text, *conversation;
    char *conv_buf;
};

static void
outbound_free(void *p)
{
    struct outbound *o = p;

    free(o->conv_buf);
    free(o);
}

static int
outbound_tx(struct tx *t, struct req *r)
{
    struct outbound *o = r->ctx;
    json_t *res = NULL;

    if (queue_outbound(t, o->channel, o->account, o->to, o->text, NULL, o->conversation, &res) < 0)
        return -1;
    return req_ok(r, 201, res);
}

/* POST /v1/outbound {channel, accountId, to, text, conversationId?} */
int
messages_outbound(struct req *r)
{
    struct outbound *o = calloc(1, sizeof *o);
    struct field spec[] = {
        {"channel", F_STR, F_REQUIRED, NULL, 0, 100, NULL},
        {"accountId", F_STR, F_REQUIRED, NULL, 0, 100, NULL},
        {"to", F_STR, F_REQUIRED, NULL, 0, MAX_ID, NULL},
        {"text", F_STR, F_REQUIRED, NULL, 0, 0, NULL},
        {"conversationId", F_STR, 0, NULL, 0, MAX_ID, NULL},
        FIELD_END,
    };

    if (!o)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = o;
    r->ctx_free = outbound_free;
    spec[0].out = &o->channel;
    spec[1].out = &o->account;
    spec[2].out = &o->to;
    spec[3].out = &o->text;
    spec[4].out = &o->conversation;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!name_ok(o->channel, ID_MAX, ID_PUNCT) || !name_ok(o->account, ID_MAX, ID_PUNCT))
        return req_fail(r, "bad_request", NULL,
                        "fields 'channel' and 'accountId' must be 1-100 characters of letters, digits and ._:@+-");
    if (!o->conversation) {
        size_t n = strlen(o->channel) + strlen(o->account) + strlen(o->to) + 3;
        if (!(o->conv_buf = malloc(n)))
            return req_fail(r, "unavailable", NULL, "out of memory");
        snprintf(o->conv_buf, n, "%s:%s:%s", o->channel, o->account, o->to);
        o->conversation = o->conv_buf;
    }
    return req_submit(r, outbound_tx);
}

/* GET /v1/messages/{id} */
int
messages_get(struct req *r)
{
    int64_t id;
    sqlite3 *db = db_reader();
    json_t *m;

    if (parse_int64(req_param(r, 0), &id) < 0 || id <= 0)
        return req_fail(r, "bad_request", NULL,
                        "path parameter id must be a positive integer (a message id), not '%.64s'", req_param(r, 0));
    if (!db)
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    if (!(m = msg_get(db, id)))
        return req_fail(r, "not_found", NULL, "no message %s", req_param(r, 0));
    return req_ok(r, 200, m);
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
