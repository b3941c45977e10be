/* store_pg_events.c -- the events operations (and the gauges of /metrics
 * and /health) on PostgreSQL: the only place with the SQL of the events
 * table in this backend.
 *
 * DESIGN
 * Ordering across replicas. Event and message ids come from identities,
 * drawn when a row is inserted and visible when its transaction commits.
 * With several writers a transaction could commit a lower id after a
 * reader has seen a higher one, and every listing that takes a cursor
 * (the event stream, GET /v1/events?after=, a conversation's long-poll)
 * would skip that row for good. So a transaction takes the stream lock
 * (PG_STREAM_LOCK, a transaction-level advisory lock) before it draws
 * such an id, and holds it until it commits or rolls back: the next
 * transaction draws its id only after the previous one's commit is
 * visible (PostgreSQL releases the locks of a transaction after marking
 * it committed), so ids become visible in id order and `id > after` is a
 * safe cursor with no change to the listings. One key serves events and
 * messages, so two transactions never wait for each other's lock in
 * opposite orders. Filtering rows by the writer's transaction id
 * (pg_current_xact_id() < pg_snapshot_xmin) is not enough: a transaction
 * gets its xid at its first write, often long before it draws an id, so
 * an old xid can carry a high id past a younger transaction's lower one
 * that is still running.
 * The cost: in one process the lock is never contended (one lock-table
 * entry per writer transaction; later inserts find it held). With several
 * replicas the writer transactions that insert events or messages -- most
 * of them -- commit one at a time from their first such insert; each
 * writer batches many requests into one transaction, and reads, claims'
 * waits and long-polls stay parallel. A writer holding the lock that
 * waits for a row another writer has locked while that one waits for the
 * lock is a deadlock PostgreSQL breaks after deadlock_timeout: the batch
 * fails with 40P01 and is run again (pg_fail).
 *
 * Listings: without an upper time bound they walk the primary key in
 * their order and stop at the limit; with one they use events_by_time
 * (the `+ 0` keeps the planner off the other index, as SQLite's unary +).
 * Field filters go as one JSON parameter (an array of [key, value] pairs
 * built with jansson), so the statements are fixed and nothing the client
 * sends becomes SQL text; a field compares as SQLite's CAST(json_extract
 * AS TEXT): strings and numbers by their text, true "1", false "0",
 * objects, arrays and null never.
 */
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

#define COLUMNS "SELECT id, time, level, event, fields FROM events"
#define NAMES " AND ($3::text IS NULL OR event = $3) AND ($4::text IS NULL OR (event >= $4 AND event < $5))"
#define FIELDS                                                                                     \
    " AND ($9::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements($9::jsonb) p"       \
    " WHERE (SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '1'" \
    " ELSE '0' END WHEN 'string' THEN v #>> '{}' WHEN 'number' THEN v #>> '{}' END"                \
    " FROM (SELECT fields::jsonb -> (p->>0) AS v) x) IS DISTINCT FROM p->>1))"

/* $1 after, $2 before, $3 exact, $4 lo, $5 hi, $6 limit, $7 since, $8
 * until, $9 field filters. */
#define BY_ID COLUMNS " WHERE id > $1 AND id < $2 AND time + 0 >= $7 AND time + 0 <= $8" NAMES FIELDS
#define BY_TIME COLUMNS " WHERE time >= $7 AND time <= $8 AND id + 0 > $1 AND id + 0 < $2" NAMES FIELDS
static const char by_id_asc[] = BY_ID " ORDER BY id LIMIT $6";
static const char by_id_desc[] = BY_ID " ORDER BY id DESC LIMIT $6";
static const char by_time_asc[] = BY_TIME " ORDER BY id LIMIT $6";
static const char by_time_desc[] = BY_TIME " ORDER BY id DESC LIMIT $6";

/* The id is drawn after the stream lock is held: the materialized CTE is
 * scanned before the row is formed. */
static int
ev_insert(struct tx *t, const struct event_row *e, int64_t *id)
{
    char tm[24];
    const char *v[] = {pg_i64(tm, e->time), e->level, e->name, e->fields ? e->fields : "{}"};
    PGresult *r = pg_exec(t,
        "WITH l AS MATERIALIZED (" PG_STREAM_LOCK ")"
        " INSERT INTO events(time, level, event, fields) SELECT $1, $2, $3, $4 FROM l RETURNING id",
        4, v);

    if (!r)
        return -1;
    if (id)
        *id = pg_int(r, 0, 0, 0);
    PQclear(r);
    return 0;
}

/* One statement for n rows, under the stream lock like a single insert;
 * WITH ORDINALITY keeps their order, so their ids increase in it. */
static int
ev_insert_set(struct tx *t, int64_t time, const char *level, const char *name, const char *const *fields,
              size_t n)
{
    char tm[24], *json;
    PGresult *r;

    if (!n)
        return 0;
    if (!(json = event_fields_json(fields, n)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    const char *v[] = {pg_i64(tm, time), level, name, json};
    r = pg_exec(t,
        "WITH l AS MATERIALIZED (" PG_STREAM_LOCK ")"
        " INSERT INTO events(time, level, event, fields)"
        " SELECT $1, $2, $3, f FROM l, json_array_elements_text($4::json) WITH ORDINALITY AS x(f, i) ORDER BY i",
        4, v);
    free(json);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* q's field filters as a JSON array of [key, value] pairs (a new string,
 * caller frees), NULL when there are none; *oom when it could not be
 * built. */
static char *
fields_param(const struct event_query *q, bool *oom)
{
    json_t *a;
    char *s;

    *oom = false;
    if (!q->nfields)
        return NULL;
    if (!(a = json_array()))
        goto fail;
    for (size_t i = 0; i < q->nfields; i++)
        if (json_array_append_new(a, json_pack("[s,s]", q->fields[i].key, q->fields[i].value)) < 0) {
            json_decref(a);
            goto fail;
        }
    s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (s)
        return s;
fail:
    *oom = true;
    return NULL;
}

static int
ev_list(struct tx *t, const struct event_query *q, event_visit fn, void *arg)
{
    char after[24], before[24], limit[24], since[24], until[24];
    bool by_time = q->until != INT64_MAX, oom;
    const char *sql = by_time ? (q->newest_first ? by_time_desc : by_time_asc)
                              : (q->newest_first ? by_id_desc : by_id_asc);
    const char *lo = q->lo && q->lo[0] ? q->lo : NULL;
    char *fields;
    PGresult *r;

    if (q->nfields > EVENT_MAX_FIELDS)
        return tx_fail(t, "internal", NULL, "at most %d field filters", EVENT_MAX_FIELDS);
    fields = fields_param(q, &oom);
    if (oom)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    const char *v[] = {pg_i64(after, q->after), pg_i64(before, q->before > 0 ? q->before : INT64_MAX),
                       q->exact && q->exact[0] ? q->exact : NULL, lo,
                       lo ? (q->hi ? q->hi : "") : NULL, pg_i64(limit, q->limit),
                       pg_i64(since, q->since), pg_i64(until, q->until), fields};
    r = pg_exec(t, sql, 9, v);
    free(fields);
    if (!r)
        return -1;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        struct event_row e = {
            .id = pg_int(r, i, 0, 0),
            .time = pg_int(r, i, 1, 0),
            .level = pg_str(r, i, 2),
            .name = pg_str(r, i, 3),
            .fields = pg_str(r, i, 4),
        };
        if (fn(&e, arg))
            break;
    }
    PQclear(r);
    return 0;
}

/* One integer: the first column of the first row of sql run with n
 * params. 0 with *out, or -1. */
static int
one_int(struct tx *t, const char *sql, int n, const char *const *params, int64_t *out)
{
    PGresult *r = pg_exec(t, sql, n, params);

    if (!r)
        return -1;
    *out = pg_int(r, 0, 0, 0);
    PQclear(r);
    return 0;
}

static int
ev_last_id(struct tx *t, int64_t *id)
{
    return one_int(t, "SELECT coalesce(max(id), 0) FROM events", 0, NULL, id);
}

/* Two replicas pruning at once take disjoint chunks (SKIP LOCKED); rows
 * another one is deleting count as remaining (*more), which costs at
 * most one more pass. */
static int
ev_prune(struct tx *t, int64_t before, int64_t max, int64_t *deleted, bool *more)
{
    char b[24], m[24];
    const char *v[] = {pg_i64(b, before), pg_i64(m, max)};
    PGresult *r;
    int64_t left = 0;

    *deleted = 0;
    *more = false;
    r = pg_exec(t, "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < $1"
                   " ORDER BY time LIMIT $2 FOR UPDATE SKIP LOCKED)", 2, v);
    if (!r)
        return -1;
    *deleted = pg_changes(r);
    PQclear(r);
    if (*deleted < max)
        return 0;           /* a short chunk took every old event */
    if (one_int(t, "SELECT EXISTS(SELECT 1 FROM events WHERE time < $1)::int", 1, v, &left) < 0)
        return -1;
    *more = left != 0;
    return 0;
}

/* ---- the gauges ------------------------------------------------------------ */

static int
st_ping(struct tx *t)
{
    int64_t n;

    return one_int(t, "SELECT 1", 0, NULL, &n);
}

/* Visit the (queue, status?, count) rows of r (NULL: failed): 0 or -1. */
static int
counts(PGresult *r, bool with_status, void (*fn)(const struct queue_count *q, void *arg), void *arg)
{
    if (!r)
        return -1;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        struct queue_count q = {
            .queue = pg_str(r, i, 0),
            .status = with_status ? pg_str(r, i, 1) : "processing",
            .count = pg_int(r, i, with_status ? 2 : 1, 0),
        };
        fn(&q, arg);
    }
    PQclear(r);
    return 0;
}

static int
st_queue_counts(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg)
{
    return counts(pg_exec(t, "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status", 0, NULL),
                  true, fn, arg);
}

static int
st_stale_counts(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg)
{
    char now[24];
    const char *v[] = {pg_i64(now, t->now)};

    return counts(pg_exec(t, "SELECT queue, count(*) FROM jobs WHERE status = 'processing'"
                             " AND locked_until < $1 GROUP BY queue", 1, v),
                  false, fn, arg);
}

static int
st_lease_gauges(struct tx *t, void (*fn)(const struct lease_gauge *l, void *arg), void *arg)
{
    char now[24];
    const char *v[] = {pg_i64(now, t->now)};
    PGresult *r = pg_exec(t, "SELECT channel, account_id, coalesce(owner_id, ''),"
                             " owner_id IS NOT NULL AND expires_at > $1, transitions, token FROM leases",
                          1, v);

    if (!r)
        return -1;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        struct lease_gauge l = {
            .channel = pg_str(r, i, 0),
            .account = pg_str(r, i, 1),
            .owner = pg_str(r, i, 2),
            .held = pg_bool(r, i, 3),
            .transitions = pg_int(r, i, 4, 0),
            .token = pg_int(r, i, 5, 0),
        };
        fn(&l, arg);
    }
    PQclear(r);
    return 0;
}

static int
st_dedupe_entries(struct tx *t, int64_t *n)
{
    return one_int(t, "SELECT count(*) FROM dedupe", 0, NULL, n);
}

/* The database's size on disk; PostgreSQL's write-ahead log is the
 * server's, shared by every database, so it counts as none here. */
static int
st_sizes(struct tx *t, int64_t *db, int64_t *wal)
{
    *wal = 0;
    return one_int(t, "SELECT pg_database_size(current_database())", 0, NULL, db);
}

const struct store_stats pg_stats_ops = {
    .ping = st_ping,
    .queue_counts = st_queue_counts,
    .stale_counts = st_stale_counts,
    .lease_gauges = st_lease_gauges,
    .dedupe_entries = st_dedupe_entries,
    .sizes = st_sizes,
};

const struct store_events pg_events_ops = {
    .insert = ev_insert,
    .insert_set = ev_insert_set,
    .list = ev_list,
    .last_id = ev_last_id,
    .prune = ev_prune,
};
