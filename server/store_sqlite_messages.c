/* store_sqlite_messages.c -- the messages operations of the SQLite store
 * (struct store_messages): every SQL statement on the messages table.
 *
 * DESIGN
 * A row read from SQLite is copied into one allocation (its strings, in
 * struct message order) plus its parsed payload, so that the caller can
 * keep it past the statement. The reply state of an inbound message comes
 * from a join with the job answering it, in the same statement.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"

/* The columns of a full row; the last three are the reply state. */
#define MSG_COLS                                                                                   \
    "m.id, m.conversation_id, m.channel, m.account_id, m.direction, m.channel_message_id,"         \
    " m.sender, m.recipient, m.text, m.payload, m.status, m.delivery, m.error, m.job_id,"          \
    " m.created_at, m.sent_at,"                                                                    \
    " CASE WHEN j.status = 'processing' AND m.partial_token = j.claim_token THEN m.partial END,"   \
    " j.status, j.error_reason"
#define MSG_SELECT                                                                                 \
    "SELECT " MSG_COLS " FROM messages m LEFT JOIN jobs j ON j.id = m.job_id AND m.direction = 'in'"
/* The columns of a changed row (RETURNING). */
#define KEY_COLS " RETURNING id, conversation_id, channel, account_id"

struct textcol {
    int col;
    size_t off;             /* of a const char * in the row struct */
};

#define M(f) offsetof(struct message, f)
static const struct textcol full_cols[] = {
    {1, M(conversation)}, {2, M(channel)}, {3, M(account)}, {4, M(direction)},
    {5, M(channel_message_id)}, {6, M(sender)}, {7, M(recipient)}, {8, M(text)},
    {10, M(status)}, {11, M(delivery)}, {12, M(error)}, {16, M(reply_partial)},
    {17, M(reply_state)}, {18, M(reply_error)}, {-1, 0},
};
static const struct textcol key_cols[] = {
    {1, M(conversation)}, {2, M(channel)}, {3, M(account)}, {-1, 0},
};
#undef M
#define C(f) offsetof(struct conversation, f)
static const struct textcol conv_cols[] = {
    {0, C(id)}, {1, C(channel)}, {2, C(account)}, {-1, 0},
};
#undef C

/* Copy the text columns cols of the current row of st into one new
 * allocation (*mem) and point the fields of row at it. -1 when out of
 * memory. */
static int
copy_texts(sqlite3_stmt *st, const struct textcol *cols, void *row, void **mem)
{
    size_t total = 0;
    char *p;

    for (const struct textcol *c = cols; c->col >= 0; c++)
        if (sqlite3_column_type(st, c->col) != SQLITE_NULL) {
            sqlite3_column_text(st, c->col);
            total += (size_t)sqlite3_column_bytes(st, c->col) + 1;
        }
    if (!(*mem = p = malloc(total ? total : 1)))
        return -1;
    for (const struct textcol *c = cols; c->col >= 0; c++) {
        const char **field = (const char **)(void *)((char *)row + c->off);
        const unsigned char *s = sqlite3_column_text(st, c->col);
        size_t len = (size_t)sqlite3_column_bytes(st, c->col);

        if (!s) {
            *field = NULL;
            continue;
        }
        memcpy(p, s, len);
        p[len] = 0;
        *field = p;
        p += len + 1;
    }
    return 0;
}

/* The current row of st (MSG_SELECT when full, else KEY_COLS) into *m. */
static int
read_row(struct tx *t, sqlite3_stmt *st, bool full, struct message *m)
{
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    if (copy_texts(st, full ? full_cols : key_cols, m, &m->mem) < 0)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    if (!full)
        return 0;
    if (!m->text)
        m->text = "";       /* NOT NULL in the schema; never NULL for callers */
    if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
        m->payload = json_loads((const char *)sqlite3_column_text(st, 9), JSON_DECODE_ANY | JSON_ALLOW_NUL,
                                NULL);
    }
    m->job_id = sqlite3_column_type(st, 13) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 13);
    m->created_at = sqlite3_column_int64(st, 14);
    m->sent_at = sqlite3_column_type(st, 15) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 15);
    return 0;
}

static void
msg_clear(struct message *m)
{
    if (!m)
        return;
    free(m->mem);
    json_decref(m->payload);
    memset(m, 0, sizeof *m);
}

static void
msg_free_rows(struct message *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        msg_clear(&v[i]);
    free(v);
}

static void
conv_free(struct conversation *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].mem);
    free(v);
}

/* Step st to the end, reading every row into a new array. The statement
 * is reset. 0 or -1. */
static int
read_rows(struct tx *t, sqlite3_stmt *st, bool full, struct message **out, size_t *n)
{
    struct message *v = NULL;
    size_t cap = 0, k = 0;
    int rc;

    *out = NULL;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k == cap) {
            struct message *nv = realloc(v, (cap ? cap * 2 : 8) * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap = cap ? cap * 2 : 8;
        }
        if (read_row(t, st, full, &v[k]) < 0)
            break;
        k++;
    }
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_ROW)
            tx_fail(t, "unavailable", NULL, "out of memory");
        else
            sq_fail(t);
        sqlite3_reset(st);
        msg_free_rows(v, k);
        return -1;
    }
    sqlite3_reset(st);
    *out = v;
    *n = k;
    return 0;
}

static int
msg_insert(struct tx *t, struct message *m)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "INSERT INTO messages(conversation_id, channel, account_id, direction, channel_message_id,"
        " sender, recipient, text, payload, status, created_at, sent_at)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    char *p = m->payload && !json_is_null(m->payload)
                  ? json_dumps(m->payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    bool sent = !strcmp(m->status, "sent");
    int rc;

    if (!st) {
        free(p);
        return sq_fail(t);
    }
    sqlite3_bind_text(st, 1, m->conversation, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, m->account, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, m->direction, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, m->channel_message_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, m->sender, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, m->recipient, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, m->text ? m->text : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, p, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, m->status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 11, t->now);
    if (sent)
        sqlite3_bind_int64(st, 12, t->now);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    free(p);
    if (rc != SQLITE_DONE)
        return sq_fail(t);
    m->id = sqlite3_last_insert_rowid(SQ(t));
    m->created_at = t->now;
    m->sent_at = sent ? t->now : 0;
    return 0;
}

static int
msg_set_job(struct tx *t, int64_t id, int64_t job_id)
{
    sqlite3_stmt *st = db_prep(SQ(t), "UPDATE messages SET job_id = ? WHERE id = ?");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_int64(st, 2, id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
msg_set_status(struct tx *t, int64_t id, const char *status, const char *channel_message_id,
               const char *error, char **conversation)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET status = ?1, channel_message_id = coalesce(?2, channel_message_id),"
        " error = ?3, sent_at = CASE WHEN ?1 = 'sent' THEN ?4 ELSE sent_at END,"
        " delivery = CASE WHEN ?1 = 'sent' THEN coalesce(delivery, 'sent') ELSE ?1 END"
        " WHERE id = ?5 AND direction = 'out' RETURNING conversation_id");
    int rc;

    if (conversation)
        *conversation = NULL;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, channel_message_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->now);
    sqlite3_bind_int64(st, 5, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (conversation && !(*conversation = col_strdup(st, 0))) {
            sqlite3_reset(st);
            return tx_fail(t, "unavailable", NULL, "out of memory");
        }
        rc = sqlite3_step(st);      /* to the end: RETURNING has done its work */
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            if (conversation) {
                free(*conversation);
                *conversation = NULL;
            }
            return sq_fail(t);
        }
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
msg_set_delivery(struct tx *t, const char *channel, const char *channel_message_id, const char *delivery,
                 const char *error, struct message **out, size_t *n)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET delivery = ?1,"
        " status = CASE WHEN ?1 = 'failed' THEN 'failed' WHEN status = 'queued' THEN 'sent' ELSE status END,"
        " error = CASE WHEN ?1 = 'failed' THEN ?2 ELSE error END,"
        " sent_at = coalesce(sent_at, ?3)"
        " WHERE channel = ?4 AND channel_message_id = ?5 AND direction = 'out'" KEY_COLS);

    *out = NULL;
    *n = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, delivery, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, t->now);
    sqlite3_bind_text(st, 4, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, channel_message_id, -1, SQLITE_TRANSIENT);
    return read_rows(t, st, false, out, n);
}

static int
msg_set_partial(struct tx *t, int64_t job_id, const char *token, const char *text, struct message **out,
                size_t *n)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "UPDATE messages SET partial = ?1, partial_token = ?2, partial_rev = partial_rev + 1"
        " WHERE job_id = ?3 AND direction = 'in'" KEY_COLS);

    *out = NULL;
    *n = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, token, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, job_id);
    return read_rows(t, st, false, out, n);
}

static int
msg_get(struct tx *t, int64_t id, struct message *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), MSG_SELECT " WHERE m.id = ?");
    int rc;

    memset(out, 0, sizeof *out);
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rc = read_row(t, st, true, out);
        sqlite3_reset(st);
        return rc < 0 ? -1 : 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(t);
}

static int
msg_list_after(struct tx *t, const char *conversation, int64_t after, int64_t limit, struct message **out,
               size_t *n)
{
    sqlite3_stmt *st = db_prep(SQ(t), MSG_SELECT " WHERE m.conversation_id = ? AND m.id > ? ORDER BY m.id LIMIT ?");

    *out = NULL;
    *n = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, conversation, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, limit);
    return read_rows(t, st, true, out, n);
}

static int
msg_rev(struct tx *t, const char *conversation, struct conversation_rev *out)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT coalesce(max(m.id), 0), coalesce(sum(m.partial_rev), 0),"
                                      " coalesce(max(j.updated_at), 0) FROM messages m"
                                      " LEFT JOIN jobs j ON j.id = m.job_id AND m.direction = 'in'"
                                      " WHERE m.conversation_id = ?");
    int rc;

    memset(out, 0, sizeof *out);
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, conversation, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->last_id = sqlite3_column_int64(st, 0);
        out->progress = sqlite3_column_int64(st, 1);
        out->job_changed = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : sq_fail(t);
}

static int
msg_conversations(struct tx *t, const char *channel, int64_t limit, struct conversation **out, size_t *n)
{
    sqlite3_stmt *st = db_prep(SQ(t),
        "SELECT conversation_id, channel, account_id, count(*), max(id), max(created_at)"
        " FROM messages WHERE ?1 IS NULL OR channel = ?1"
        " GROUP BY conversation_id ORDER BY max(id) DESC LIMIT ?2");
    struct conversation *v = NULL;
    size_t cap = 0, k = 0;
    int rc;

    *out = NULL;
    *n = 0;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct conversation *c;
        if (k == cap) {
            struct conversation *nv = realloc(v, (cap ? cap * 2 : 8) * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap = cap ? cap * 2 : 8;
        }
        c = &v[k];
        memset(c, 0, sizeof *c);
        if (copy_texts(st, conv_cols, c, &c->mem) < 0)
            break;
        c->messages = sqlite3_column_int64(st, 3);
        c->last_id = sqlite3_column_int64(st, 4);
        c->last_at = sqlite3_column_int64(st, 5);
        k++;
    }
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_ROW)
            tx_fail(t, "unavailable", NULL, "out of memory");
        else
            sq_fail(t);
        sqlite3_reset(st);
        conv_free(v, k);
        return -1;
    }
    sqlite3_reset(st);
    *out = v;
    *n = k;
    return 0;
}

const struct store_messages sqlite_messages_ops = {
    .insert = msg_insert,
    .set_job = msg_set_job,
    .set_status = msg_set_status,
    .set_delivery = msg_set_delivery,
    .set_partial = msg_set_partial,
    .get = msg_get,
    .list_after = msg_list_after,
    .rev = msg_rev,
    .conversations = msg_conversations,
    .clear = msg_clear,
    .free_rows = msg_free_rows,
    .free_conversations = conv_free,
};
