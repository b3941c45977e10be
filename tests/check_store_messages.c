/* check_store_messages.c -- store conformance cases of the messages operations
 * (see check_store.h). */
#include <stdlib.h>
#include <string.h>

#include "check_store.h"

#define OPS (store->messages)

/* Insert m in its own committed write; returns its id. */
static int64_t
put(struct message *m)
{
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_msg(OPS->insert(&t, m) == 0, "insert: %s", t.err.msg);
    ck_assert_int_gt(m->id, 0);
    ck_assert_int_eq(st_commit(&t), 0);
    return m->id;
}

static int64_t
put_msg(const char *conv, const char *channel, const char *direction, const char *cmid,
        const char *status)
{
    struct message m = {
        .conversation = conv, .channel = channel, .account = "acc1", .direction = direction,
        .channel_message_id = cmid, .sender = "alice", .text = "hi", .status = status,
    };

    return put(&m);
}

/* A read of message id; asserts it exists. Clear *m after. */
static void
get(int64_t id, struct message *m)
{
    struct tx t;

    st_read(&t);
    ck_assert_int_eq(OPS->get(&t, id, m), 1);
    tx_read_end(&t);
}

static void
str_eq(const char *got, const char *want)
{
    if (!want)
        ck_assert_ptr_null(got);
    else {
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
    }
}

/* Every field written by insert and set_job comes back from get, text
 * byte for byte (UTF-8) and the payload as the same JSON. */
START_TEST(insert_and_get_every_field)
{
    const char *text = "h\xc3\xa9llo \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89";
    json_t *payload = json_pack("{s:[i,s,b], s:n, s:{s:s}}", "a", 1, "\xc3\xbc", 1, "b", "c", "d",
                                "\xe2\x82\xac");
    struct message in = {
        .conversation = "telegram:acc1:42", .channel = "telegram", .account = "acc1",
        .direction = "in", .channel_message_id = "42:7", .sender = "42", .recipient = "bot",
        .text = text, .payload = payload, .status = "received",
    };
    struct message out = {
        .conversation = "telegram:acc1:42", .channel = "telegram", .account = "acc1",
        .direction = "out", .recipient = "42", .text = "", .status = "sent",
    };
    struct message m;
    struct tx t;
    int64_t now;

    st_begin(st_conn, &t);
    now = t.now;
    ck_assert_int_eq(OPS->insert(&t, &in), 0);
    ck_assert_int_eq(OPS->set_job(&t, in.id, 9001), 0);
    ck_assert_int_eq(OPS->insert(&t, &out), 0);
    ck_assert_int_eq(in.created_at, now);
    ck_assert_int_eq(in.sent_at, 0);
    ck_assert_int_eq(out.sent_at, now);
    ck_assert_int_gt(out.id, in.id);
    ck_assert_int_eq(st_commit(&t), 0);

    get(in.id, &m);
    ck_assert_int_eq(m.id, in.id);
    str_eq(m.conversation, "telegram:acc1:42");
    str_eq(m.channel, "telegram");
    str_eq(m.account, "acc1");
    str_eq(m.direction, "in");
    str_eq(m.channel_message_id, "42:7");
    str_eq(m.sender, "42");
    str_eq(m.recipient, "bot");
    str_eq(m.text, text);
    ck_assert_ptr_nonnull(m.payload);
    ck_assert_msg(json_equal(m.payload, payload), "payload differs");
    str_eq(m.status, "received");
    str_eq(m.delivery, NULL);
    str_eq(m.error, NULL);
    ck_assert_int_eq(m.job_id, 9001);
    ck_assert_int_eq(m.created_at, now);
    ck_assert_int_eq(m.sent_at, 0);
    /* no such job: no reply state */
    str_eq(m.reply_state, NULL);
    str_eq(m.reply_partial, NULL);
    OPS->clear(&m);

    get(out.id, &m);
    str_eq(m.direction, "out");
    str_eq(m.channel_message_id, NULL);
    str_eq(m.sender, NULL);
    str_eq(m.recipient, "42");
    str_eq(m.text, "");
    ck_assert_ptr_null(m.payload);
    str_eq(m.status, "sent");
    ck_assert_int_eq(m.job_id, 0);
    ck_assert_int_eq(m.sent_at, now);
    OPS->clear(&m);

    /* a missing id is not an error */
    st_read(&t);
    ck_assert_int_eq(OPS->get(&t, out.id + 100, &m), 0);
    tx_read_end(&t);
    json_decref(payload);
}
END_TEST

/* list_after: one conversation only, in id order, after the cursor, at
 * most limit. */
START_TEST(list_conversation_after_id_with_limit)
{
    int64_t a[5], b[3];
    struct message *v;
    size_t n;
    struct tx t;

    for (int i = 0; i < 5; i++) {
        a[i] = put_msg("conv-a", "web", "in", NULL, "received");
        if (i < 3)
            b[i] = put_msg("conv-b", "web", "out", NULL, "sent");
    }
    st_read(&t);
    ck_assert_int_eq(OPS->list_after(&t, "conv-a", 0, 100, &v, &n), 0);
    ck_assert_uint_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(v[i].id, a[i]);
        str_eq(v[i].conversation, "conv-a");
        str_eq(v[i].text, "hi");
    }
    OPS->free_rows(v, n);

    ck_assert_int_eq(OPS->list_after(&t, "conv-a", a[1], 2, &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(v[0].id, a[2]);
    ck_assert_int_eq(v[1].id, a[3]);
    OPS->free_rows(v, n);

    /* a cursor that is another conversation's id counts as a position */
    ck_assert_int_eq(OPS->list_after(&t, "conv-b", a[1], 100, &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(v[0].id, b[1]);
    ck_assert_int_eq(v[1].id, b[2]);
    OPS->free_rows(v, n);

    ck_assert_int_eq(OPS->list_after(&t, "conv-a", a[4], 100, &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_rows(v, n);
    ck_assert_int_eq(OPS->list_after(&t, "nobody", 0, 100, &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_rows(v, n);
    tx_read_end(&t);
}
END_TEST

/* A delivery report by channel message id changes only the outbound
 * message of that channel: not an inbound one with the same id, not
 * another channel's. */
START_TEST(delivery_by_channel_id_only_outbound_of_channel)
{
    int64_t wa_out = put_msg("wa:acc1:1", "whatsapp", "out", "wamid.X", "queued");
    int64_t wa_in = put_msg("wa:acc1:1", "whatsapp", "in", "wamid.X", "received");
    int64_t tg_out = put_msg("tg:acc1:1", "telegram", "out", "wamid.X", "queued");
    int64_t wa_other = put_msg("wa:acc1:2", "whatsapp", "out", "wamid.Y", "queued");
    struct message *v, m;
    size_t n;
    struct tx t;
    int64_t now;

    st_begin(st_conn, &t);
    now = t.now;
    ck_assert_int_eq(OPS->set_delivery(&t, "whatsapp", "wamid.X", "delivered", NULL, &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(v[0].id, wa_out);
    str_eq(v[0].conversation, "wa:acc1:1");
    str_eq(v[0].account, "acc1");
    OPS->free_rows(v, n);
    ck_assert_int_eq(OPS->set_delivery(&t, "whatsapp", "wamid.none", "read", NULL, &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_rows(v, n);
    ck_assert_int_eq(st_commit(&t), 0);

    get(wa_out, &m);
    str_eq(m.delivery, "delivered");
    str_eq(m.status, "sent");           /* a queued message reported is sent */
    ck_assert_int_eq(m.sent_at, now);
    OPS->clear(&m);
    get(wa_in, &m);
    str_eq(m.delivery, NULL);
    str_eq(m.status, "received");
    OPS->clear(&m);
    get(tg_out, &m);
    str_eq(m.delivery, NULL);
    str_eq(m.status, "queued");
    ck_assert_int_eq(m.sent_at, 0);
    OPS->clear(&m);
    get(wa_other, &m);
    str_eq(m.delivery, NULL);
    OPS->clear(&m);

    /* failed: the message fails with the reason; its sent time stays */
    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->set_delivery(&t, "whatsapp", "wamid.X", "failed", "131026 undeliverable", &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    OPS->free_rows(v, n);
    ck_assert_int_eq(st_commit(&t), 0);
    get(wa_out, &m);
    str_eq(m.delivery, "failed");
    str_eq(m.status, "failed");
    str_eq(m.error, "131026 undeliverable");
    ck_assert_int_eq(m.sent_at, now);
    OPS->clear(&m);
    get(wa_in, &m);
    str_eq(m.status, "received");
    str_eq(m.error, NULL);
    OPS->clear(&m);
}
END_TEST

/* set_status: the send result of an outbound message by id; an inbound
 * message is not one. */
START_TEST(send_status_by_id)
{
    int64_t out = put_msg("tg:acc1:9", "telegram", "out", NULL, "queued");
    int64_t in = put_msg("tg:acc1:9", "telegram", "in", "9:1", "received");
    int64_t out2 = put_msg("tg:acc1:9", "telegram", "out", NULL, "queued");
    struct message m;
    struct tx t;
    char *conv = NULL;
    int64_t now;

    st_begin(st_conn, &t);
    now = t.now;
    ck_assert_int_eq(OPS->set_status(&t, out, "sent", "9:2", NULL, &conv), 1);
    ck_assert_ptr_nonnull(conv);
    ck_assert_str_eq(conv, "tg:acc1:9");
    free(conv);
    ck_assert_int_eq(OPS->set_status(&t, in, "sent", "x", NULL, &conv), 0);
    ck_assert_ptr_null(conv);
    ck_assert_int_eq(OPS->set_status(&t, out2, "failed", NULL, "blocked by user", NULL), 1);
    ck_assert_int_eq(OPS->set_status(&t, out2 + 100, "failed", NULL, "x", NULL), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    get(out, &m);
    str_eq(m.status, "sent");
    str_eq(m.channel_message_id, "9:2");
    str_eq(m.delivery, "sent");
    ck_assert_int_eq(m.sent_at, now);
    OPS->clear(&m);
    get(in, &m);
    str_eq(m.status, "received");
    str_eq(m.channel_message_id, "9:1");
    ck_assert_int_eq(m.sent_at, 0);
    OPS->clear(&m);
    get(out2, &m);
    str_eq(m.status, "failed");
    str_eq(m.delivery, "failed");
    str_eq(m.error, "blocked by user");
    ck_assert_int_eq(m.sent_at, 0);
    OPS->clear(&m);
}
END_TEST

/* The revision moves with new messages and with progress reports on the
 * inbound message of a job, and only in that conversation. */
START_TEST(revision_follows_messages_and_progress)
{
    int64_t a = put_msg("conv-r", "web", "in", "r1", "received");
    int64_t b = put_msg("conv-s", "web", "in", "s1", "received");
    struct conversation_rev r0, r1, s0;
    struct message *v;
    size_t n;
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->set_job(&t, a, 501), 0);
    ck_assert_int_eq(OPS->set_job(&t, b, 502), 0);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(OPS->rev(&t, "conv-r", &r0), 0);
    ck_assert_int_eq(OPS->rev(&t, "conv-s", &s0), 0);
    ck_assert_int_eq(OPS->rev(&t, "nobody", &r1), 0);
    tx_read_end(&t);
    ck_assert_int_eq(r0.last_id, a);
    ck_assert_int_eq(s0.last_id, b);
    ck_assert_int_eq(r1.last_id, 0);
    ck_assert_int_eq(r1.progress, 0);

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->set_partial(&t, 501, "tok", "Hel", &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(v[0].id, a);
    str_eq(v[0].conversation, "conv-r");
    OPS->free_rows(v, n);
    ck_assert_int_eq(OPS->set_partial(&t, 501, "tok", "Hello", &v, &n), 0);
    OPS->free_rows(v, n);
    ck_assert_int_eq(OPS->set_partial(&t, 999, "tok", "nobody", &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_rows(v, n);
    ck_assert_int_eq(st_commit(&t), 0);

    st_read(&t);
    ck_assert_int_eq(OPS->rev(&t, "conv-r", &r1), 0);
    ck_assert_int_eq(OPS->rev(&t, "conv-s", &s0), 0);
    tx_read_end(&t);
    ck_assert_int_eq(r1.last_id, a);
    ck_assert_int_eq(r1.progress, r0.progress + 2);
    ck_assert_int_eq(s0.progress, 0);

    put_msg("conv-r", "web", "out", NULL, "sent");
    st_read(&t);
    ck_assert_int_eq(OPS->rev(&t, "conv-r", &r0), 0);
    tx_read_end(&t);
    ck_assert_int_gt(r0.last_id, r1.last_id);
}
END_TEST

/* conversations: latest activity first, with counts, channel filter and
 * limit. */
START_TEST(conversations_list)
{
    struct conversation *v;
    size_t n;
    struct tx t;
    int64_t last_x;

    put_msg("x", "web", "in", "x1", "received");
    put_msg("y", "telegram", "in", "y1", "received");
    put_msg("x", "web", "out", NULL, "sent");
    put_msg("z", "whatsapp", "in", "z1", "received");
    last_x = put_msg("x", "web", "in", "x2", "received");
    put_msg("y", "telegram", "out", NULL, "queued");

    st_read(&t);
    ck_assert_int_eq(OPS->conversations(&t, NULL, 50, &v, &n), 0);
    ck_assert_uint_eq(n, 3);
    str_eq(v[0].id, "y");
    str_eq(v[0].channel, "telegram");
    str_eq(v[0].account, "acc1");
    ck_assert_int_eq(v[0].messages, 2);
    str_eq(v[1].id, "x");
    ck_assert_int_eq(v[1].messages, 3);
    ck_assert_int_eq(v[1].last_id, last_x);
    ck_assert_int_gt(v[1].last_at, 0);
    str_eq(v[2].id, "z");
    ck_assert_int_eq(v[2].messages, 1);
    OPS->free_conversations(v, n);

    ck_assert_int_eq(OPS->conversations(&t, "web", 50, &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    str_eq(v[0].id, "x");
    OPS->free_conversations(v, n);

    ck_assert_int_eq(OPS->conversations(&t, NULL, 2, &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    str_eq(v[0].id, "y");
    str_eq(v[1].id, "x");
    OPS->free_conversations(v, n);

    ck_assert_int_eq(OPS->conversations(&t, "signal", 50, &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_conversations(v, n);
    tx_read_end(&t);
}
END_TEST

/* A rolled-back write leaves no message behind. */
START_TEST(rollback_leaves_nothing)
{
    struct message m = {
        .conversation = "gone", .channel = "web", .account = "default", .direction = "in",
        .text = "x", .status = "received",
    };
    struct message *v;
    size_t n;
    struct tx t;

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->insert(&t, &m), 0);
    st_rollback(&t);
    st_read(&t);
    ck_assert_int_eq(OPS->list_after(&t, "gone", 0, 10, &v, &n), 0);
    ck_assert_uint_eq(n, 0);
    OPS->free_rows(v, n);
    tx_read_end(&t);
}
END_TEST

/* Insert the message of arg (a struct message; its id is set). */
static int
insert_op(struct tx *t, void *arg)
{
    return OPS->insert(t, arg);
}

/* A conversation followed with an after-cursor (the long-poll) never
 * loses a message for good: while a write holding a message is open,
 * another connection writes and commits one in the same conversation; a
 * listing taken then and one after the first write commits, from the
 * highest id the first listing saw, see both messages between them. */
START_TEST(cursor_never_skips_a_late_commit)
{
    struct message early = {
        .conversation = "race", .channel = "web", .account = "default", .direction = "in",
        .text = "first", .status = "received",
    };
    struct message late = {
        .conversation = "race", .channel = "web", .account = "default", .direction = "out",
        .text = "second", .status = "queued",
    };
    struct message *v1, *v2;
    size_t n1, n2;
    struct st_async *a;
    struct tx t, r;
    int64_t cursor = 0;
    bool got_early = false, got_late = false;

    st_begin(st_conn, &t);
    ck_assert_int_eq(OPS->insert(&t, &early), 0);
    a = st_async_start(insert_op, &late);
    st_async_done(a, 500);              /* committed, or waiting for this write */
    st_read(&r);
    ck_assert_int_eq(OPS->list_after(&r, "race", 0, 100, &v1, &n1), 0);
    tx_read_end(&r);
    for (size_t i = 0; i < n1; i++)
        if (v1[i].id > cursor)
            cursor = v1[i].id;
    ck_assert_int_eq(st_commit(&t), 0);
    ck_assert_int_eq(st_async_join(a), 0);
    st_read(&r);
    ck_assert_int_eq(OPS->list_after(&r, "race", cursor, 100, &v2, &n2), 0);
    tx_read_end(&r);
    for (size_t i = 0; i < n1 + n2; i++) {
        int64_t id = i < n1 ? v1[i].id : v2[i - n1].id;
        got_early |= id == early.id;
        got_late |= id == late.id;
    }
    OPS->free_rows(v1, n1);
    OPS->free_rows(v2, n2);
    ck_assert_msg(got_early, "message %lld skipped: listed up to %lld before it was committed",
                  (long long)early.id, (long long)cursor);
    ck_assert(got_late);
    ck_assert_uint_eq(n1 + n2, 2);
}
END_TEST

void
store_cases_messages(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    TCase *tc = tcase_create("messages");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, insert_and_get_every_field);
    tcase_add_test(tc, list_conversation_after_id_with_limit);
    tcase_add_test(tc, delivery_by_channel_id_only_outbound_of_channel);
    tcase_add_test(tc, send_status_by_id);
    tcase_add_test(tc, revision_follows_messages_and_progress);
    tcase_add_test(tc, conversations_list);
    tcase_add_test(tc, rollback_leaves_nothing);
    tcase_add_test(tc, cursor_never_skips_a_late_commit);
    suite_add_tcase(s, tc);
}
