/* events.c -- every state change as a row in `events` (inside the change's
 * own transaction) and as one JSON line on stdout once it has committed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "batond.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
FILE *log_stream;          /* NULL: stdout */

/* Keys whose values never reach a log line or an event row, whatever a
 * caller passes, at any depth of objects and arrays. A key is compared
 * case-insensitively with '_', '-' and '.' removed (api_key = apiKey =
 * API-KEY). Documented in docs/operations.md. */
static const char *const secret_exact[] = {"value", "creds", "auth", "pass", "pin", "otp", NULL};
static const char *const secret_parts[] = {
    "secret", "password", "passwd", "passphrase", "authorization", "apikey", "accesskey",
    "privatekey", "sessionkey", "signingkey", "credential", "cookie", "bearer", NULL,
};

/* "token" names a credential (botToken, accessToken, "token": "...") except
 * where it is a number: lease fencing tokens are counters, not secrets. */
static bool
secret_key(const char *key, const json_t *v)
{
    char k[64];
    size_t n = 0;

    for (const char *p = key; *p && n < sizeof k - 1; p++)
        if (*p != '_' && *p != '-' && *p != '.')
            k[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    k[n] = 0;
    for (const char *const *e = secret_exact; *e; e++)
        if (!strcmp(k, *e))
            return true;
    for (const char *const *e = secret_parts; *e; e++)
        if (strstr(k, *e))
            return true;
    return strstr(k, "token") && !json_is_integer(v);
}

static void
scrub(json_t *v)
{
    const char *key;
    json_t *x;
    void *tmp;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach_safe(v, tmp, key, x) {
            if (secret_key(key, x))
                json_object_del(v, key);
            else
                scrub(x);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
            scrub(x);
    }
}

static json_t *
line(int64_t ms, const char *level, const char *name, json_t *fields)
{
    char ts[40];
    json_t *l;

    fmt_time(ms, ts, sizeof ts);
    l = json_pack("{s:s, s:s, s:s}", "_time", ts, "level", level, "event", name);
    if (l && fields)
        json_object_update_missing(l, fields);
    return l;
}

static void
print_line(json_t *l)
{
    char *s = json_dumps(l, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (!s)
        return;
    pthread_mutex_lock(&out_lock);
    FILE *f = log_stream ? log_stream : stdout;
    fputs(s, f);
    fputc('\n', f);
    fflush(f);
    pthread_mutex_unlock(&out_lock);
    free(s);
}

void
event_emit(struct tx *t, const char *level, const char *name, json_t *fields)
{
    sqlite3_stmt *st;
    char *text;

    if (!fields)
        fields = json_object();
    scrub(fields);
    text = json_dumps(fields, JSON_COMPACT | JSON_PRESERVE_ORDER);
    st = db_prep(SQ(t), "INSERT INTO events(time, level, event, fields) VALUES(?,?,?,?)");
    if (st && text) {
        sqlite3_bind_int64(st, 1, t->now);
        sqlite3_bind_text(st, 2, level, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
        /* A failed insert must not fail the change it describes: the line
         * below still reaches the log. */
        sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    free(text);
    json_array_append_new(t->events, line(t->now, level, name, fields));
    json_decref(fields);
}

void
log_event(const char *level, const char *name, json_t *fields)
{
    json_t *l;

    if (!strcmp(level, "debug") && !cfg.debug) {
        json_decref(fields);
        return;
    }
    if (fields)
        scrub(fields);
    l = line(now_ms(), level, name, fields);
    if (l)
        print_line(l);
    json_decref(l);
    json_decref(fields);
}

void
events_flush(json_t *lines)
{
    size_t i;
    json_t *l;

    json_array_foreach(lines, i, l)
        print_line(l);
}

/* ---- routes: POST /v1/events, GET /v1/events ---------------------------- */

struct report {
    const char *event, *level;
    json_t *fields;
};

static void
report_free(void *p)
{
    struct report *rp = p;

    json_decref(rp->fields);
    free(rp);
}

static int
report_tx(struct tx *t, struct req *r)
{
    struct report *rp = r->ctx;

    event_emit(t, rp->level, rp->event, json_incref(rp->fields));
    return req_ok(r, 201, json_pack("{s:s}", "event", rp->event));
}

/* POST /v1/events {event, level?, ...fields}: what workers alone see. */
int
events_report(struct req *r)
{
    struct report *rp = calloc(1, sizeof *rp);
    struct field spec[] = {
        FIELD_STR("event", NULL, F_REQUIRED),
        FIELD_STR("level", NULL, 0),
        FIELD_END,
    };

    if (!rp)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = rp;
    r->ctx_free = report_free;
    rp->level = "info";
    spec[0].out = &rp->event;
    spec[1].out = &rp->level;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!name_ok(rp->event, 128, "._-"))
        return req_fail(r, "bad_request", NULL,
                        "field 'event' must be 1-128 characters of letters, digits, '.', '_' or '-'");
    if (strcmp(rp->level, "debug") && strcmp(rp->level, "info") && strcmp(rp->level, "warn") &&
        strcmp(rp->level, "error"))
        return req_fail(r, "bad_request", NULL, "field 'level' must be debug, info, warn or error");
    rp->fields = json_deep_copy(r->json);
    json_object_del(rp->fields, "event");
    json_object_del(rp->fields, "level");
    json_object_set_new(rp->fields, "reported", json_true());
    return req_submit(r, report_tx);
}

int
event_filter(const char *name, char *exact, char *lo, char *hi, size_t n)
{
    size_t len = name ? strlen(name) : 0;

    exact[0] = lo[0] = hi[0] = 0;
    if (!len)
        return 0;
    if (len >= n || !name_ok(name, n - 1, "._-*") || (strchr(name, '*') && strcmp(name + len - 1, "*")))
        return -1;
    if (len > 2 && !strcmp(name + len - 2, ".*")) {
        /* "a.b.*" is the key range ["a.b.", "a.b/"): exact, and uses the index */
        memcpy(lo, name, len - 1);
        lo[len - 1] = 0;
        memcpy(hi, lo, len);
        hi[len - 2] = '/';
    } else if (strchr(name, '*'))
        return -1;
    else
        memcpy(exact, name, len + 1);
    return 0;
}

#define MAX_FILTERS 8

int
events_query(struct req *r, char *exact, char *lo, char *hi, size_t n, const char *const *other,
             json_t **filters)
{
    const char *k;
    json_t *args, *v;
    int nf = 0;

    *filters = NULL;
    if (event_filter(req_query(r, "event"), exact, lo, hi, n) < 0)
        return req_fail(r, "bad_request", json_pack("{s:s}", "parameter", "event"),
                        "query parameter 'event' must be an event name (letters, digits, '.', '_', '-') "
                        "of at most %zu characters, or a prefix ending in '.*'", n - 1);
    args = req_query_all(r);
    *filters = json_object();
    json_object_foreach(args, k, v) {
        bool skip = !strcmp(k, "event");
        for (const char *const *o = other; o && *o && !skip; o++)
            skip = !strcmp(k, *o);
        if (skip)
            continue;
        if (!name_ok(k, 64, "_") || ++nf > MAX_FILTERS) {
            req_fail(r, "bad_request", NULL,
                     "field filters are at most %d names of letters, digits and '_' (got '%.64s')",
                     MAX_FILTERS, k);   /* k belongs to args: answer before freeing it */
            json_decref(args);
            json_decref(*filters);
            *filters = NULL;
            return -1;
        }
        json_object_set(*filters, k, v);
    }
    json_decref(args);
    return 0;
}

/* The text SQLite's CAST(json_extract(...) AS TEXT) gives for v. */
static bool
field_text_equal(json_t *v, const char *want)
{
    char buf[64];

    if (json_is_string(v))
        return !strcmp(json_string_value(v), want);
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_true(v))
        snprintf(buf, sizeof buf, "1");
    else if (json_is_false(v))
        snprintf(buf, sizeof buf, "0");
    else if (json_is_real(v))
        snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
    else
        return false;
    return !strcmp(buf, want);
}

bool
event_matches(json_t *event, json_t *filters)
{
    const char *k;
    json_t *v;

    json_object_foreach(filters, k, v)
        if (!field_text_equal(json_object_get(event, k), json_string_value(v)))
            return false;
    return true;
}

json_t *
event_row_json(sqlite3_stmt *st)
{
    char ts[40];
    json_t *e = col_json(st, 4);

    if (!json_is_object(e)) {
        json_decref(e);
        e = json_object();
    }
    fmt_time(sqlite3_column_int64(st, 1), ts, sizeof ts);
    {
        char id[24];        /* ids are strings everywhere (SPEC section 2) */
        snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(st, 0));
        json_object_set_new(e, "id", json_string(id));
    }
    json_object_set_new(e, "time", json_integer(sqlite3_column_int64(st, 1)));
    json_object_set_new(e, "_time", json_string(ts));
    json_object_set_new(e, "level", col_text(st, 2));
    json_object_set_new(e, "event", col_text(st, 3));
    return e;
}

/* GET /v1/events?event=<name|prefix.*>&since=&until=&limit=&<field>=<value>:
 * newest first. Field filters compare the event's field, as text, with the
 * value given (accountId=default, jobId=12, ownerId=wa-1). */
int
events_list(struct req *r)
{
    static const char base[] =
        "SELECT id, time, level, event, fields FROM events"
        " WHERE (?1 IS NULL OR event = ?1) AND (?2 IS NULL OR (event >= ?2 AND event < ?3))"
        "   AND time >= ?4 AND time <= ?5";
    static const char plain[] =
        "SELECT id, time, level, event, fields FROM events"
        " WHERE (?1 IS NULL OR event = ?1) AND (?2 IS NULL OR (event >= ?2 AND event < ?3))"
        "   AND time >= ?4 AND time <= ?5 ORDER BY id DESC LIMIT ?6";
    static const char *const paging[] = {"since", "until", "limit", NULL};
    const char *k;
    int64_t since, until, limit;
    char exact[160], lo[160], hi[160], sql[sizeof base + MAX_FILTERS * 64 + 64];
    json_t *v, *filters, *out;
    sqlite3 *db;
    sqlite3_stmt *st;
    int nf, rc;

    if (req_query_int(r, "since", 0, 0, INT64_MAX, &since) < 0 ||
        req_query_int(r, "until", INT64_MAX, 0, INT64_MAX, &until) < 0 ||
        req_query_int(r, "limit", 100, 1, 1000, &limit) < 0 ||
        events_query(r, exact, lo, hi, sizeof lo, paging, &filters) < 0)
        return -1;
    nf = (int)json_object_size(filters);
    if (!(db = db_reader())) {
        json_decref(filters);
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    }
    if (!nf) {
        st = db_prep(db, plain);
        if (!st) {
            json_decref(filters);
            return db_fail(r, db);
        }
    } else {
        /* the JSON path is bound as a parameter too: nothing the client
         * sends becomes SQL text */
        size_t len = (size_t)snprintf(sql, sizeof sql, "%s", base);
        for (int i = 0; i < nf; i++)
            len += (size_t)snprintf(sql + len, sizeof sql - len,
                                    " AND CAST(json_extract(fields, ?%d) AS TEXT) = ?%d", 7 + 2 * i, 8 + 2 * i);
        snprintf(sql + len, sizeof sql - len, " ORDER BY id DESC LIMIT ?6");
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            json_decref(filters);
            return db_fail(r, db);
        }
        nf = 0;
        json_object_foreach(filters, k, v) {
            char path[80];
            snprintf(path, sizeof path, "$.\"%s\"", k);
            sqlite3_bind_text(st, 7 + 2 * nf, path, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 8 + 2 * nf, json_string_value(v), -1, SQLITE_TRANSIENT);
            nf++;
        }
    }
    json_decref(filters);
    if (exact[0])
        sqlite3_bind_text(st, 1, exact, -1, SQLITE_TRANSIENT);
    if (lo[0]) {
        sqlite3_bind_text(st, 2, lo, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, hi, -1, SQLITE_TRANSIENT);
    }
    sqlite3_bind_int64(st, 4, since);
    sqlite3_bind_int64(st, 5, until);
    sqlite3_bind_int64(st, 6, limit);
    out = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(out, event_row_json(st));
    if (nf)
        sqlite3_finalize(st);
    else
        sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(out);
        return req_fail(r, "unavailable", NULL, "cannot read events");
    }
    return req_ok(r, 200, json_pack("{s:o}", "events", out));
}
