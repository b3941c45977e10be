/* sweep.c -- periodic maintenance, run by the writer every
 * BATON_SWEEP_INTERVAL_MS as one more write in a batch. Each module's sweep
 * runs in this transaction; a failing one fails the sweep, which is retried
 * at the next interval. */
#include "batond.h"

static int
events_prune(struct tx *t)
{
    sqlite3_stmt *st = db_prep(t->db, "DELETE FROM events WHERE time < ?");

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->now - cfg.event_retention_ms);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

int
sweep_run(struct tx *t, struct req *r)
{
    if (events_prune(t) < 0)
        return db_fail(r, t->db);
    /* jobs */
    if (jobs_sweep(t, NULL, NULL) < 0)
        return db_fail(r, t->db);
    /* dedupe */
    if (dedupe_prune(t) < 0)
        return db_fail(r, t->db);
    return req_ok(r, 200, NULL);
}
