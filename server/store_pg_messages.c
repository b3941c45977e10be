/* store_pg_messages.c -- the messages operations of the PostgreSQL store
 * (store.h, struct store_messages): every SQL statement on the messages
 * table.
 *
 * DESIGN
 * A row read is copied into one allocation (its strings, in struct message
 * order) plus its parsed payload, so that the caller keeps it past the
 * result. The reply state of an inbound message comes from a join with the
 * job answering it, in the same statement.
 *
 * With two replicas: insert takes the stream lock (PG_STREAM_LOCK, see
 * store_pg_events.c) before its id, so message ids become visible in id
 * order and a listing after a cursor never skips a row for good. Every
 * update is one statement that decides and writes by key (set_status,
 * set_delivery, set_partial), so concurrent writers on other connections
 * each apply their change to the row as it is when they get its lock;
 * partial_rev = partial_rev + 1 counts every report of every replica.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

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

/* Copy the text columns cols of row i of r into one new allocation (*mem)
 * and point the fields of row at it (NULL for a NULL column). -1 when out
 * of memory. */
static int
copy_texts(const PGresult *r, int i, const struct textcol *cols, void *row, void **mem)
{
    size_t total = 0;
    char *p;

    for (const struct textcol *c = cols; c->col >= 0; c++)
        if (!PQgetisnull(r, i, c->col))
            total += (size_t)PQgetlength(r, i, c->col) + 1;
    if (!(*mem = p = malloc(total ? total : 1)))
        return -1;
    for (const struct textcol *c = cols; c->col >= 0; c++) {
        const char **field = (const char **)(void *)((char *)row + c->off);
        size_t len = (size_t)PQgetlength(r, i, c->col);

        if (PQgetisnull(r, i, c->col)) {
            *field = NULL;
            continue;
        }
        memcpy(p, PQgetvalue(r, i, c->col), len);
        p[len] = 0;
        *field = p;
        p += len + 1;
    }
    return 0;
}

/* Row i of r (MSG_SELECT when full, else KEY_COLS) into *m. */
static int
read_row(struct tx *t, const PGresult *r, int i, bool full, struct message *m)
{
    memset(m, 0, sizeof *m);
    m->id = pg_int(r, i, 0, 0);
    if (copy_texts(r, i, full ? full_cols : key_cols, m, &m->mem) < 0)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    if (!full)
        return 0;
    if (!m->text)
        m->text = "";       /* NOT NULL in the schema; never NULL for callers */
    if (!PQgetisnull(r, i, 9))
        m->payload = json_loads(pg_str(r, i, 9), JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    m->job_id = pg_int(r, i, 13, 0);
    m->created_at = pg_int(r, i, 14, 0);
    m->sent_at = pg_int(r, i, 15, 0);
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

/* Every row of r (NULL: the statement failed) into a new array; r is
 * cleared. 0 or -1. */
static int
read_rows(struct tx *t, PGresult *r, bool full, struct message **out, size_t *n)
{
    struct message *v;
    int rows, k;

    *out = NULL;
    *n = 0;
    if (!r)
        return -1;
    rows = PQntuples(r);
    if (!(v = calloc(rows ? (size_t)rows : 1, sizeof *v))) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    for (k = 0; k < rows; k++)
        if (read_row(t, r, k, full, &v[k]) < 0) {
            PQclear(r);
            msg_free_rows(v, (size_t)k);
            return -1;
        }
    PQclear(r);
    *out = v;
    *n = (size_t)k;
    return 0;
}

/* The id comes from the identity after the stream lock is held (the
 * materialized CTE is scanned before the row is formed), so that ids
 * commit in order across replicas. */
static int
msg_insert(struct tx *t, struct message *m)
{
    char now[24], *p = m->payload && !json_is_null(m->payload)
                           ? json_dumps(m->payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    bool sent = !strcmp(m->status, "sent");
    const char *v[] = {m->conversation, m->channel, m->account, m->direction, m->channel_message_id,
                       m->sender, m->recipient, m->text ? m->text : "", p, m->status,
                       pg_i64(now, t->now), sent ? now : NULL};
    PGresult *r = pg_exec(t,
        "WITH l AS MATERIALIZED (" PG_STREAM_LOCK ")"
        " INSERT INTO messages(conversation_id, channel, account_id, direction, channel_message_id,"
        " sender, recipient, text, payload, status, created_at, sent_at)"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM l RETURNING id",
        12, v);

    free(p);
    if (!r)
        return -1;
    m->id = pg_int(r, 0, 0, 0);
    PQclear(r);
    m->created_at = t->now;
    m->sent_at = sent ? t->now : 0;
    return 0;
}

static int
msg_set_job(struct tx *t, int64_t id, int64_t job_id)
{
    char a[24], b[24];
    const char *v[] = {pg_i64(a, job_id), pg_i64(b, id)};
    PGresult *r = pg_exec(t, "UPDATE messages SET job_id = $1 WHERE id = $2", 2, v);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static int
msg_set_status(struct tx *t, int64_t id, const char *status, const char *channel_message_id,
               const char *error, char **conversation)
{
    char a[24], b[24];
    const char *v[] = {status, channel_message_id, error, pg_i64(a, t->now), pg_i64(b, id)};
    PGresult *r;
    int rc;

    if (conversation)
        *conversation = NULL;
    r = pg_exec(t,
        "UPDATE messages SET status = $1, channel_message_id = coalesce($2, channel_message_id),"
        " error = $3, sent_at = CASE WHEN $1 = 'sent' THEN $4::bigint ELSE sent_at END,"
        " delivery = CASE WHEN $1 = 'sent' THEN coalesce(delivery, 'sent') ELSE $1 END"
        " WHERE id = $5 AND direction = 'out' RETURNING conversation_id",
        5, v);
    if (!r)
        return -1;
    rc = PQntuples(r) > 0;
    if (rc && conversation && !(*conversation = pg_strdup(r, 0, 0))) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    PQclear(r);
    return rc;
}

static int
msg_set_delivery(struct tx *t, const char *channel, const char *channel_message_id, const char *delivery,
                 const char *error, struct message **out, size_t *n)
{
    char a[24];
    const char *v[] = {delivery, error, pg_i64(a, t->now), channel, channel_message_id};

    return read_rows(t, pg_exec(t,
        "UPDATE messages SET delivery = $1,"
        " status = CASE WHEN $1 = 'failed' THEN 'failed' WHEN status = 'queued' THEN 'sent' ELSE status END,"
        " error = CASE WHEN $1 = 'failed' THEN $2 ELSE error END,"
        " sent_at = coalesce(sent_at, $3::bigint)"
        " WHERE channel = $4 AND channel_message_id = $5 AND direction = 'out'" KEY_COLS,
        5, v), false, out, n);
}

static int
msg_set_partial(struct tx *t, int64_t job_id, const char *token, const char *text, struct message **out,
                size_t *n)
{
    char a[24];
    const char *v[] = {text, token, pg_i64(a, job_id)};

    return read_rows(t, pg_exec(t,
        "UPDATE messages SET partial = $1, partial_token = $2, partial_rev = partial_rev + 1"
        " WHERE job_id = $3 AND direction = 'in'" KEY_COLS,
        3, v), false, out, n);
}

static int
msg_get(struct tx *t, int64_t id, struct message *out)
{
    char a[24];
    const char *v[] = {pg_i64(a, id)};
    PGresult *r = pg_exec(t, MSG_SELECT " WHERE m.id = $1", 1, v);
    int rc;

    memset(out, 0, sizeof *out);
    if (!r)
        return -1;
    rc = PQntuples(r) > 0 ? (read_row(t, r, 0, true, out) < 0 ? -1 : 1) : 0;
    PQclear(r);
    return rc;
}

static int
msg_list_after(struct tx *t, const char *conversation, int64_t after, int64_t limit, struct message **out,
               size_t *n)
{
    char a[24], b[24];
    const char *v[] = {conversation, pg_i64(a, after), pg_i64(b, limit)};

    return read_rows(t, pg_exec(t, MSG_SELECT " WHERE m.conversation_id = $1 AND m.id > $2"
                                   " ORDER BY m.id LIMIT $3", 3, v), true, out, n);
}

static int
msg_rev(struct tx *t, const char *conversation, struct conversation_rev *out)
{
    const char *v[] = {conversation};
    PGresult *r = pg_exec(t, "SELECT coalesce(max(m.id), 0), coalesce(sum(m.partial_rev), 0),"
                             " coalesce(max(j.updated_at), 0) FROM messages m"
                             " LEFT JOIN jobs j ON j.id = m.job_id AND m.direction = 'in'"
                             " WHERE m.conversation_id = $1", 1, v);

    memset(out, 0, sizeof *out);
    if (!r)
        return -1;
    out->last_id = pg_int(r, 0, 0, 0);
    out->progress = pg_int(r, 0, 1, 0);
    out->job_changed = pg_int(r, 0, 2, 0);
    PQclear(r);
    return 0;
}

/* channel and account of a conversation: those of its latest message. */
static int
msg_conversations(struct tx *t, const char *channel, int64_t limit, struct conversation **out, size_t *n)
{
    char a[24];
    const char *v[] = {channel, pg_i64(a, limit)};
    PGresult *r = pg_exec(t,
        "SELECT conversation_id, (array_agg(channel ORDER BY id DESC))[1],"
        " (array_agg(account_id ORDER BY id DESC))[1], count(*), max(id), max(created_at)"
        " FROM messages WHERE $1::text IS NULL OR channel = $1"
        " GROUP BY conversation_id ORDER BY max(id) DESC LIMIT $2", 2, v);
    struct conversation *c;
    int rows, k;

    *out = NULL;
    *n = 0;
    if (!r)
        return -1;
    rows = PQntuples(r);
    if (!(c = calloc(rows ? (size_t)rows : 1, sizeof *c))) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    for (k = 0; k < rows; k++) {
        if (copy_texts(r, k, conv_cols, &c[k], &c[k].mem) < 0) {
            PQclear(r);
            conv_free(c, (size_t)k);
            return tx_fail(t, "unavailable", NULL, "out of memory");
        }
        c[k].messages = pg_int(r, k, 3, 0);
        c[k].last_id = pg_int(r, k, 4, 0);
        c[k].last_at = pg_int(r, k, 5, 0);
    }
    PQclear(r);
    *out = c;
    *n = (size_t)k;
    return 0;
}

const struct store_messages pg_messages_ops = {
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
