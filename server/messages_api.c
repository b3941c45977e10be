/* messages_api.c -- the HTTP side of messages and conversations: POST
 * /v1/inbound, the web chat's posts, POST /v1/outbound, GET /v1/messages/
 * {id}, and the conversation listings with long-poll.
 *
 * DESIGN
 * Writes go through the rules (messages.c) inside req_submit. Reads use
 * the store's read operations directly; a listing asked to wait for news
 * looks once on the reader and, when nothing is new, submits the same look
 * as a write so that looking and parking on the conversation's topic are
 * ordered with the commits that add messages.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define MAX_ID 512

/* A message as GET /v1/messages/{id} and the listings show it. */
static json_t *
msg_json(const struct message *m)
{
    json_t *o = json_object();
    char id[24];

#define STR(s) ((s) ? json_string(s) : json_null())
    snprintf(id, sizeof id, "%lld", (long long)m->id);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "conversationId", STR(m->conversation));
    json_object_set_new(o, "channel", STR(m->channel));
    json_object_set_new(o, "accountId", STR(m->account));
    json_object_set_new(o, "direction", STR(m->direction));
    json_object_set_new(o, "channelMessageId", STR(m->channel_message_id));
    json_object_set_new(o, "from", STR(m->sender));
    json_object_set_new(o, "to", STR(m->recipient));
    json_object_set_new(o, "text", STR(m->text));
    json_object_set(o, "payload", m->payload ? m->payload : json_null());
    json_object_set_new(o, "status", STR(m->status));
    json_object_set_new(o, "delivery", STR(m->delivery));
    json_object_set_new(o, "error", STR(m->error));
    if (m->job_id) {
        snprintf(id, sizeof id, "%lld", (long long)m->job_id);
        json_object_set_new(o, "jobId", json_string(id));
    } else
        json_object_set_new(o, "jobId", json_null());
    json_object_set_new(o, "createdAt", json_integer(m->created_at));
    json_object_set_new(o, "sentAt", m->sent_at ? json_integer(m->sent_at) : json_null());
    /* inbound: how its answer is doing (pending, processing with the text
     * so far, completed, failed), or null once the job is gone */
    if (m->reply_state)
        json_object_set_new(o, "reply",
                            json_pack("{s:s, s:o, s:o}", "state", m->reply_state, "partial",
                                      STR(m->reply_partial), "errorReason", STR(m->reply_error)));
    else if (m->direction && !strcmp(m->direction, "in"))
        json_object_set_new(o, "reply", json_null());
#undef STR
    return o;
}

/* ---- the inbound path ----------------------------------------------------- */

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

/* ---- listing a conversation ------------------------------------------------ */

struct listing {
    const char *conversation;
    const char *rev;        /* ?rev= : wait until the conversation changes */
    int64_t after, limit, deadline;
};

/* The messages after the cursor (*msgs, a new array) and the revision of
 * the conversation (rev: opaque to clients, "<last id>.<progress
 * reports>.<last job change>"). 0 or -1 with t->err set. */
static int
listing_read(struct tx *t, const struct listing *l, json_t **msgs, char *rev, size_t n)
{
    struct message *v;
    struct conversation_rev cr;
    size_t k;

    *msgs = NULL;
    if (store->messages->list_after(t, l->conversation, l->after, l->limit, &v, &k) < 0)
        return -1;
    if (store->messages->rev(t, l->conversation, &cr) < 0) {
        store->messages->free_rows(v, k);
        return -1;
    }
    *msgs = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append_new(*msgs, msg_json(&v[i]));
    store->messages->free_rows(v, k);
    snprintf(rev, n, "%lld.%lld.%lld", (long long)cr.last_id, (long long)cr.progress,
             (long long)cr.job_changed);
    return 0;
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
    json_t *msgs;
    char topic[MAX_ID + 8], rev[96];

    if (listing_read(t, l, &msgs, rev, sizeof rev) < 0)
        return -1;
    if (listing_ready(l, msgs, rev) || t->now >= l->deadline)
        return answer_listing(r, msgs, rev);
    answer_listing(r, msgs, rev);   /* the answer if nothing comes */
    messages_topic(l->conversation, topic, sizeof topic);
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
    struct tx t;
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
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    if (listing_read(&t, l, &msgs, rev, sizeof rev) < 0) {
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    l->deadline = t.now + wait;
    tx_read_end(&t);
    if (listing_ready(l, msgs, rev) || !wait)
        return answer_listing(r, msgs, rev);
    json_decref(msgs);
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
    struct tx t;
    struct conversation *v;
    size_t n;
    json_t *out;

    if (req_query_int(r, "limit", 50, 1, 500, &limit) < 0)
        return -1;
    if (channel && !*channel)
        channel = NULL;
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    if (store->messages->conversations(&t, channel, limit, &v, &n) < 0) {
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:I, s:I}", "conversationId", v[i].id,
                                             "channel", v[i].channel, "accountId", v[i].account,
                                             "messages", (json_int_t)v[i].messages,
                                             "lastMessageAt", (json_int_t)v[i].last_at));
    store->messages->free_conversations(v, n);
    return req_ok(r, 200, json_pack("{s:o}", "conversations", out));
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
    int64_t mid;
    json_t *job;
    char idbuf[24];

    if (messages_send(t, o->channel, o->account, o->to, o->text, NULL, o->conversation, &mid, &job) < 0)
        return -1;
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)mid);
    req_ok(r, 201, json_pack("{s:s, s:O}", "messageId", idbuf, "jobId",
                             job ? json_object_get(job, "id") : json_null()));
    json_decref(job);
    return 0;
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
    struct tx t;
    struct message m;
    int rc;

    if (parse_int64(req_param(r, 0), &id) < 0 || id <= 0)
        return req_fail(r, "bad_request", NULL,
                        "path parameter id must be a positive integer (a message id), not '%.64s'", req_param(r, 0));
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = store->messages->get(&t, id, &m);
    if (rc < 0) {
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    if (!rc)
        return req_fail(r, "not_found", NULL, "no message %s", req_param(r, 0));
    req_ok(r, 200, msg_json(&m));
    store->messages->clear(&m);
    return 0;
}
