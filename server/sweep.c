/* sweep.c -- periodic maintenance, run by the writer every
 * BATON_SWEEP_INTERVAL_MS as one more write in a batch (its maintain hook). Each module's sweep
 * runs in this transaction; a failing one fails the sweep, which is retried
 * at the next interval. Every part is bounded, so a backlog (a mass lock
 * expiry, a week of events) is worked off in chunks with other writes in
 * between rather than in one transaction that holds the writer.
 *
 * When several processes share the database (store->replicas) only the
 * elected maintainer runs it; the others skip it. The one that takes the
 * role records db.maintainer.elected in its first sweep. */
#include <unistd.h>

#include "core.h"

#define EVENTS_PRUNE_BATCH 10000

int
sweep_run(struct tx *t, bool *again)
{
    bool more_events = false, more_jobs = false, more_schedules = false;
    int64_t pruned;

    *again = false;
    if (store->replicas) {
        bool elected;

        if (!store->replicas->maintainer(&elected))
            return 0;
        if (elected)
            event_emit(t, "info", "db.maintainer.elected", json_pack("{s:I}", "pid", (json_int_t)getpid()));
    }
    /* each part sets t's fault when it fails */
    if (store->events->prune(t, t->now - cfg.event_retention_ms, EVENTS_PRUNE_BATCH, &pruned,
                             &more_events) < 0)
        return -1;
    if (jobs_sweep(t, NULL, NULL, &more_jobs) < 0)
        return -1;
    if (dedupe_prune(t) < 0)
        return -1;
    if (schedules_run(t, &more_schedules) < 0)
        return -1;
    *again = more_events || more_jobs || more_schedules;
    return 0;
}
