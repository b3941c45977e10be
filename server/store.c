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
