/* store.c -- the parts of the storage interface every backend shares: the
 * choice of backend, faults, and reads. */
#include <stdlib.h>
#include <string.h>

#include "store.h"

const struct store_ops *store = &store_sqlite;

int
store_select(char *why, size_t n)
{
    const char *p = cfg.db_path;

    (void)why;
    (void)n;
    if (!strncmp(p, "postgres://", 11) || !strncmp(p, "postgresql://", 13))
        store = &store_pg;
    else
        store = &store_sqlite;
    return 0;
}

void
store_describe(char *out, size_t n)
{
    const char *p = cfg.db_path, *auth = strstr(p, "://"), *end, *at = NULL, *colon = NULL;
    size_t len = 0;

    out[0] = 0;
    if (!auth) {
        snprintf(out, n, "%s", p);
        return;
    }
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    for (const char *q = auth; q < end; q++)
        if (*q == '@')
            at = q;
    if (at)
        colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon)
        len = (size_t)snprintf(out, n, "%.*s***%.*s", (int)(colon + 1 - p), p, (int)(end - at), at);
    else
        len = (size_t)snprintf(out, n, "%.*s", (int)(end - p), p);
    /* the rest, parameter by parameter: password=... is hidden too */
    for (const char *q = end; *q && len < n;) {
        size_t seg = strcspn(q + 1, "&?") + 1;

        if (!strncmp(q + 1, "password=", 9))
            len += (size_t)snprintf(out + len, n - len, "%c%s", *q, "password=***");
        else
            len += (size_t)snprintf(out + len, n - len, "%.*s", (int)seg, q);
        q += seg;
    }
}

int
tx_fail(struct tx *t, const char *code, json_t *details, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->err.msg, sizeof t->err.msg, fmt, ap);
    va_end(ap);
    json_decref(t->err.details);
    t->err.details = details;
    t->err.code = code;
    return -1;
}

void
tx_clear_fault(struct tx *t)
{
    json_decref(t->err.details);
    t->err.details = NULL;
    t->err.code = NULL;
    t->err.msg[0] = 0;
}

void
fault_move(struct fault *f, struct tx *t)
{
    json_decref(f->details);
    *f = t->err;
    t->err.details = NULL;
    t->err.code = NULL;
}

int
strings_own(const char **const dst[], const size_t len[], size_t n, void **mem)
{
    size_t need = 1;
    char *p;

    for (size_t i = 0; i < n; i++)
        if (*dst[i])
            need += len[i] + 1;
    if (!(p = *mem = malloc(need)))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!*dst[i])
            continue;
        memcpy(p, *dst[i], len[i]);
        p[len[i]] = 0;
        *dst[i] = p;
        p += len[i] + 1;
    }
    return 0;
}

int
tx_read(struct tx *t)
{
    memset(t, 0, sizeof *t);
    if (!(t->c = store->reader()))
        return tx_fail(t, "unavailable", NULL, "database unavailable: cannot open a read connection");
    t->now = store->now(t->c);
    return 0;
}

void
tx_read_end(struct tx *t)
{
    if (t->c)
        store->read_done(t->c);
    tx_clear_fault(t);
}

char *
event_fields_json(const char *const *fields, size_t n)
{
    struct text b = {0};

    text_add(&b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            text_add(&b, ",", 1);
        text_json_str(&b, fields[i] ? fields[i] : "{}");
    }
    text_add(&b, "]", 1);
    if (b.oom) {
        text_free(&b);
        return NULL;
    }
    return b.s;
}

/* A string of an expiry_list: its offset in l->s plus one, 0 for NULL,
 * until expiry_finish makes it a pointer. */
static const char *
expiry_str(struct expiry_list *l, const char *s)
{
    size_t at = l->s.len + 1;

    if (!s)
        return NULL;
    text_add(&l->s, s, strlen(s) + 1);
    return (const char *)(uintptr_t)at;
}

void
expiry_add(struct expiry_list *l, int64_t id, const char *queue, const char *worker,
           const char *order_key, int64_t attempts, bool failed)
{
    struct job_expiry *e;

    if (l->oom || l->s.oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct job_expiry *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    e = &l->v[l->n++];
    e->id = id;
    e->queue = expiry_str(l, queue ? queue : "");
    e->worker = worker && *worker ? expiry_str(l, worker) : NULL;
    e->order_key = expiry_str(l, order_key);
    e->attempts = attempts;
    e->failed = failed;
}

int
expiry_finish(struct expiry_list *l, struct job_expiry **out, size_t *n)
{
    size_t head = l->n * sizeof *l->v;
    struct job_expiry *v = NULL;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (l->oom || l->s.oom)
        rc = -1;
    else if (l->n && (v = malloc(head + l->s.len))) {
        char *strs = (char *)v + head;
        const char **p[3];

        memcpy(v, l->v, head);
        memcpy(strs, l->s.s, l->s.len);
        for (size_t i = 0; i < l->n; i++) {
            p[0] = &v[i].queue;
            p[1] = &v[i].worker;
            p[2] = &v[i].order_key;
            for (int k = 0; k < 3; k++)
                if (*p[k])
                    *p[k] = strs + (uintptr_t)*p[k] - 1;
        }
        *out = v;
        *n = l->n;
    } else if (l->n)
        rc = -1;
    free(l->v);
    text_free(&l->s);
    *l = (struct expiry_list){0};
    return rc;
}
