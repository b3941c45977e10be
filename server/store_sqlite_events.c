/* store_sqlite_events.c -- the events operations (and the gauges of
 * /metrics and /health) on SQLite: the only place with the SQL of the
 * events table.
 *
 * DESIGN
 * A listing without an upper time bound (the stream, `convex logs`, GET
 * /v1/events without until) walks the rowid range in its order and stops
 * at its limit: it never sorts. A listing up to a time uses events_by_time
 * and sorts what the range holds. The shapes without field
 * filters are cached statements; field filters make the SQL text vary with
 * their number, so such a statement is prepared for the one listing, with
 * every key and value bound (nothing the client sends becomes SQL text).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_sqlite.h"

#define COLUMNS "SELECT id, time, level, event, fields FROM events"
#define NAMES " AND (?3 IS NULL OR event = ?3) AND (?4 IS NULL OR (event >= ?4 AND event < ?5))"

/* ?1 after, ?2 before, ?3 exact, ?4 lo, ?5 hi, ?6 limit, ?7 since, ?8
 * until; field filters ?9, ?10, ... go before the ORDER BY. A unary +
 * keeps SQLite from using an index for that term: BY_ID walks the rowid
 * range, BY_TIME the time range of events_by_time. */
#define BY_ID COLUMNS " WHERE id > ?1 AND id < ?2 AND +time >= ?7 AND +time <= ?8" NAMES
#define BY_TIME COLUMNS " WHERE time >= ?7 AND time <= ?8 AND +id > ?1 AND +id < ?2" NAMES
static const char by_id_asc[] = BY_ID " ORDER BY id LIMIT ?6";
static const char by_id_desc[] = BY_ID " ORDER BY id DESC LIMIT ?6";
static const char by_time_desc[] = BY_TIME " ORDER BY id DESC LIMIT ?6";

/* An upper time bound: the rows may lie far from the newest, where a walk
 * by id would start. */
static bool
by_time(const struct event_query *q)
{
    return q->until != INT64_MAX;
}

static int
ev_insert(struct tx *t, const struct event_row *e, int64_t *id)
{
    sqlite3_stmt *st = db_prep(SQ(t), "INSERT INTO events(time, level, event, fields) VALUES(?,?,?,?)");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, e->time);
    sqlite3_bind_text(st, 2, e->level, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, e->fields ? e->fields : "{}", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        sq_fail(t);
    else if (id)
        *id = sqlite3_last_insert_rowid(SQ(t));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int
ev_insert_set(struct tx *t, int64_t time, const char *level, const char *name, const char *const *fields,
              size_t n)
{
    sqlite3_stmt *st;
    char *json;
    int rc;

    if (!n)
        return 0;
    if (!(st = db_prep(SQ(t), "INSERT INTO events(time, level, event, fields)"
                              " SELECT ?1, ?2, ?3, value FROM json_each(?4) ORDER BY key")))
        return sq_fail(t);
    if (!(json = event_fields_json(fields, n)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_text(st, 2, level, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, json, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(json);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The statement for q: a cached one (*owned false) or one prepared for
 * this listing (*owned true: the caller finalizes it). NULL on error. */
static sqlite3_stmt *
list_stmt(sqlite3 *db, const struct event_query *q, bool *owned)
{
    char sql[sizeof BY_TIME + EVENT_MAX_FIELDS * 64 + 64];
    sqlite3_stmt *st;
    size_t len;

    *owned = false;
    if (!q->nfields && !by_time(q))
        return db_prep(db, q->newest_first ? by_id_desc : by_id_asc);
    if (!q->nfields && q->newest_first)
        return db_prep(db, by_time_desc);
    len = (size_t)snprintf(sql, sizeof sql, "%s", by_time(q) ? BY_TIME : BY_ID);
    for (size_t i = 0; i < q->nfields; i++)
        len += (size_t)snprintf(sql + len, sizeof sql - len,
                                " AND CAST(json_extract(fields, ?%zu) AS TEXT) = ?%zu", 9 + 2 * i, 10 + 2 * i);
    snprintf(sql + len, sizeof sql - len, " ORDER BY id%s LIMIT ?6", q->newest_first ? " DESC" : "");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    *owned = true;
    return st;
}

static int
ev_list(struct tx *t, const struct event_query *q, event_visit fn, void *arg)
{
    sqlite3_stmt *st;
    bool owned;
    int rc;

    if (q->nfields > EVENT_MAX_FIELDS)
        return tx_fail(t, "internal", NULL, "at most %d field filters", EVENT_MAX_FIELDS);
    if (!(st = list_stmt(SQ(t), q, &owned)))
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, q->after);
    sqlite3_bind_int64(st, 2, q->before > 0 ? q->before : INT64_MAX);
    if (q->exact && q->exact[0])
        sqlite3_bind_text(st, 3, q->exact, -1, SQLITE_STATIC);
    if (q->lo && q->lo[0]) {
        sqlite3_bind_text(st, 4, q->lo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, q->hi ? q->hi : "", -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 6, q->limit);
    sqlite3_bind_int64(st, 7, q->since);
    sqlite3_bind_int64(st, 8, q->until);
    for (size_t i = 0; i < q->nfields; i++) {
        char path[80];
        snprintf(path, sizeof path, "$.\"%s\"", q->fields[i].key);
        sqlite3_bind_text(st, (int)(9 + 2 * i), path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, (int)(10 + 2 * i), q->fields[i].value, -1, SQLITE_STATIC);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct event_row e = {
            .id = sqlite3_column_int64(st, 0),
            .time = sqlite3_column_int64(st, 1),
            .level = (const char *)sqlite3_column_text(st, 2),
            .name = (const char *)sqlite3_column_text(st, 3),
            .fields = (const char *)sqlite3_column_text(st, 4),
        };
        if (fn(&e, arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        sq_fail(t);
    if (owned)
        sqlite3_finalize(st);
    else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return rc == SQLITE_DONE ? 0 : -1;
}

/* One integer from a statement without parameters but those bound by the
 * caller: 0 with *out, or -1. */
static int
one_int(struct tx *t, sqlite3_stmt *st, int64_t *out)
{
    int rc;

    if (!st)
        return sq_fail(t);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        sq_fail(t);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int
ev_last_id(struct tx *t, int64_t *id)
{
    return one_int(t, db_prep(SQ(t), "SELECT coalesce(max(id), 0) FROM events"), id);
}

static int
ev_prune(struct tx *t, int64_t before, int64_t max, int64_t *deleted, bool *more)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM events WHERE id IN"
                                      " (SELECT id FROM events WHERE time < ? ORDER BY time LIMIT ?)");
    int64_t left = 0;
    int rc;

    *deleted = 0;
    *more = false;
    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int64(st, 2, max);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return -1;
    *deleted = sqlite3_changes(SQ(t));
    if (*deleted < max)
        return 0;           /* a short chunk took every old event */
    st = db_prep(SQ(t), "SELECT EXISTS(SELECT 1 FROM events WHERE time < ?)");
    if (st)
        sqlite3_bind_int64(st, 1, before);
    if (one_int(t, st, &left) < 0)
        return -1;
    *more = left != 0;
    return 0;
}

/* ---- the gauges ------------------------------------------------------------ */

static int
st_ping(struct tx *t)
{
    int64_t n;

    return one_int(t, db_prep(SQ(t), "SELECT count(*) FROM sqlite_master"), &n);
}

/* Visit (queue, status?, count) rows of st: 0 or -1 */
static int
counts(struct tx *t, sqlite3_stmt *st, bool with_status, void (*fn)(const struct queue_count *q, void *arg),
       void *arg)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_count q = {
            .queue = (const char *)sqlite3_column_text(st, 0),
            .status = with_status ? (const char *)sqlite3_column_text(st, 1) : "processing",
            .count = sqlite3_column_int64(st, with_status ? 2 : 1),
        };
        fn(&q, arg);
    }
    if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int
st_queue_counts(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status");

    return st ? counts(t, st, true, fn, arg) : sq_fail(t);
}

static int
st_stale_counts(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT queue, count(*) FROM jobs WHERE status = 'processing'"
                                      " AND locked_until < ? GROUP BY queue");

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    return counts(t, st, false, fn, arg);
}

static int
st_lease_gauges(struct tx *t, void (*fn)(const struct lease_gauge *l, void *arg), void *arg)
{
    sqlite3_stmt *st = db_prep(SQ(t), "SELECT channel, account_id, coalesce(owner_id, ''),"
                                      " owner_id IS NOT NULL AND expires_at > ?, transitions, token FROM leases");
    int rc;

    if (!st)
        return sq_fail(t);
    sqlite3_bind_int64(st, 1, t->now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct lease_gauge l = {
            .channel = (const char *)sqlite3_column_text(st, 0),
            .account = (const char *)sqlite3_column_text(st, 1),
            .owner = (const char *)sqlite3_column_text(st, 2),
            .held = sqlite3_column_int(st, 3) != 0,
            .transitions = sqlite3_column_int64(st, 4),
            .token = sqlite3_column_int64(st, 5),
        };
        fn(&l, arg);
    }
    if (rc != SQLITE_DONE)
        sq_fail(t);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int
st_dedupe_entries(struct tx *t, int64_t *n)
{
    return one_int(t, db_prep(SQ(t), "SELECT count(*) FROM dedupe"), n);
}

/* The sizes of the files at BATON_DB (0 for a file that is not there) */
static int
st_sizes(struct tx *t, int64_t *db, int64_t *wal)
{
    char p[4096];
    struct stat st;

    (void)t;
    *db = stat(cfg.db_path, &st) == 0 ? (int64_t)st.st_size : 0;
    snprintf(p, sizeof p, "%s-wal", cfg.db_path);
    *wal = stat(p, &st) == 0 ? (int64_t)st.st_size : 0;
    return 0;
}

const struct store_stats sqlite_stats_ops = {
    .ping = st_ping,
    .queue_counts = st_queue_counts,
    .stale_counts = st_stale_counts,
    .lease_gauges = st_lease_gauges,
    .dedupe_entries = st_dedupe_entries,
    .sizes = st_sizes,
};

const struct store_events sqlite_events_ops = {
    .insert = ev_insert,
    .insert_set = ev_insert_set,
    .list = ev_list,
    .last_id = ev_last_id,
    .prune = ev_prune,
};
