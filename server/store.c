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
