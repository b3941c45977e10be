/* sweep.c -- periodic maintenance, run by the writer every
 * BATON_SWEEP_INTERVAL_MS as one more write in a batch (its maintain hook). Each module's sweep
 * runs in this transaction; a failing one fails the sweep, which is retried
 * at the next interval. Every part is bounded, so a backlog (a mass lock
 * expiry, a week of events) is worked off in chunks with other writes in
 * between rather than in one transaction that holds the writer. */
#include "batond.h"

#define EVENTS_PRUNE_BATCH 10000

static int
events_prune(struct tx *t, bool *more)
{
    sqlite3_stmt *st = db_prep(SQ(t), "DELETE FROM events WHERE id IN"
                                      " (SELECT id FROM events WHERE time < ? ORDER BY time LIMIT ?)");

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->now - cfg.event_retention_ms);
    sqlite3_bind_int(st, 2, EVENTS_PRUNE_BATCH);
    if (sqlite3_step(st) != SQLITE_DONE)
        return -1;
    *more = sqlite3_changes(SQ(t)) == EVENTS_PRUNE_BATCH;
    return 0;
}

int
sweep_run(struct tx *t, bool *again)
{
    bool more_events = false, more_jobs = false;

    *again = false;
    if (events_prune(t, &more_events) < 0)
        return sq_fail(t);
    if (jobs_sweep(t, NULL, NULL, &more_jobs) < 0)
        return sq_fail(t);
    if (dedupe_prune(t) < 0)
        return sq_fail(t);
    *again = more_events || more_jobs;
    return 0;
}
