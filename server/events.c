/* events.c -- every state change as a row in `events` (inside the change's
 * own transaction) and as one JSON line on stdout once it has committed;
 * the scrubbing of secrets, the log, and what reading events shares: the
 * row as JSON, name filters and field filters. The routes are in
 * events_api.c, the SQL in store_sqlite_events.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

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

/* Write len bytes of whole lines to the log and flush them. */
static void
write_lines(const char *buf, size_t len)
{
    pthread_mutex_lock(&out_lock);
    FILE *f = log_stream ? log_stream : stdout;
    fwrite(buf, 1, len, f);
    fflush(f);
    pthread_mutex_unlock(&out_lock);
}

/* Print n lines (line objects, or runs of event_emit_set's ready lines)
 * with one write per 64 KiB: a batch's events cost one system call, not
 * one each. */
static void
print_lines(json_t *const *ls, size_t n)
{
    enum { CHUNK = 65536 };
    char *buf = NULL;
    size_t len = 0, cap = 0;

    for (size_t i = 0; i < n; i++) {
        char *s;
        size_t k;

        if (json_is_array(ls[i])) {
            /* [name, count, "lines\n..."]: written as they are */
            json_t *text = json_array_get(ls[i], 2);
            if (len)
                write_lines(buf, len);
            len = 0;
            if (json_string_length(text))
                write_lines(json_string_value(text), json_string_length(text));
            continue;
        }
        s = json_dumps(ls[i], JSON_COMPACT | JSON_PRESERVE_ORDER);
        k = s ? strlen(s) : 0;
        if (!s)
            continue;
        if (len && len + k + 1 > CHUNK) {
            write_lines(buf, len);
            len = 0;
        }
        if (len + k + 1 > cap) {
            size_t want = len + k + 1 > CHUNK ? len + k + 1 : CHUNK;
            char *p = realloc(buf, want);
            if (!p) {
                free(s);
                continue;   /* out of memory: this line is lost, not the others */
            }
            buf = p;
            cap = want;
        }
        memcpy(buf + len, s, k);
        buf[len + k] = '\n';
        len += k + 1;
        free(s);
    }
    if (len)
        write_lines(buf, len);
    free(buf);
}

void
event_emit(struct tx *t, const char *level, const char *name, json_t *fields)
{
    struct event_row e = {.time = t->now, .level = level, .name = name};
    struct fault kept;
    char *text;
    bool had_fault = t->err.code != NULL;

    if (!fields)
        fields = json_object();
    scrub(fields);
    text = json_dumps(fields, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
        /* A failed insert must not fail the change it describes (the line
         * below still reaches the log), nor replace a fault already set. */
        if (had_fault)
            kept = t->err;
        e.fields = text;
        if (store->events->insert(t, &e, NULL) < 0) {
            if (had_fault) {
                json_decref(t->err.details);
                t->err = kept;
            } else
                tx_clear_fault(t);
        }
    }
    free(text);
    json_array_append_new(t->events, line(t->now, level, name, fields));
    json_decref(fields);
}

/* One line of event_emit_set: the start of every line, then fields
 * without its opening brace. */
static void
line_text(struct text *b, const char *head, const char *fields)
{
    const char *f = fields && fields[0] == '{' ? fields + 1 : "}";

    text_str(b, head);
    if (*f != '}')
        text_add(b, ",", 1);
    text_str(b, f);
    text_add(b, "\n", 1);
}

void
event_emit_set(struct tx *t, const char *level, const char *name, const char *const *fields, size_t n)
{
    struct text head = {0}, b = {0};
    struct fault kept;
    bool had_fault = t->err.code != NULL;
    char ts[40];

    if (!n)
        return;
    if (had_fault)
        kept = t->err;
    if (store->events->insert_set(t, t->now, level, name, fields, n) < 0) {
        /* as event_emit: the lines still reach the log */
        if (had_fault) {
            json_decref(t->err.details);
            t->err = kept;
        } else
            tx_clear_fault(t);
    }
    fmt_time(t->now, ts, sizeof ts);
    text_str(&head, "{\"_time\":");
    text_json_str(&head, ts);
    text_str(&head, ",\"level\":");
    text_json_str(&head, level);
    text_str(&head, ",\"event\":");
    text_json_str(&head, name);
    for (size_t i = 0; i < n && !head.oom; i++)
        line_text(&b, head.s, fields[i]);
    if (!b.oom && !head.oom)
        json_array_append_new(t->events, json_pack("[s, I, s%]", name, (json_int_t)n, b.s, b.len));
    text_free(&head);
    text_free(&b);
}

size_t
event_lines_count(json_t *l, const char **name)
{
    if (json_is_array(l)) {
        *name = json_string_value(json_array_get(l, 0));
        return (size_t)json_integer_value(json_array_get(l, 1));
    }
    *name = json_string_value(json_object_get(l, "event"));
    return 1;
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
        print_lines(&l, 1);
    json_decref(l);
    json_decref(fields);
}

void
events_flush(json_t *lines)
{
    size_t n = json_array_size(lines);
    json_t **ls = n ? malloc(n * sizeof *ls) : NULL;

    if (!ls) {
        for (size_t i = 0; i < n; i++) {    /* out of memory: one by one */
            json_t *l = json_array_get(lines, i);
            print_lines(&l, 1);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        ls[i] = json_array_get(lines, i);
    print_lines(ls, n);
    free(ls);
}

/* ---- reading events ------------------------------------------------------ */

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
event_row_json(const struct event_row *e)
{
    char ts[40], id[24];
    json_t *o = e->fields ? json_loads(e->fields, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;

    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    fmt_time(e->time, ts, sizeof ts);
    snprintf(id, sizeof id, "%lld", (long long)e->id);  /* ids are strings everywhere (SPEC section 2) */
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "time", json_integer(e->time));
    json_object_set_new(o, "_time", json_string(ts));
    json_object_set_new(o, "level", e->level ? json_string(e->level) : json_null());
    json_object_set_new(o, "event", e->name ? json_string(e->name) : json_null());
    return o;
}
