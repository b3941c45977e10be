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
#define RATE_PRUNE_BATCH   10000
/* Space back (store->shrink): at most SHRINK_PAGES free pages per run
 * (4 MiB of 4 KiB pages: docs/performance.md has the pause it costs), a
 * backlog in runs right after one another like the other parts; the last
 * SHRINK_KEEP free pages stay for the next inserts to reuse. */
#define SHRINK_PAGES       1024
#define SHRINK_KEEP        16

int
sweep_run(struct tx *t, bool *again)
{
    bool more_events = false, more_jobs = false, more_schedules = false, more_rates = false;
    bool more_pages = false;
    int64_t pruned, freed;
    size_t n;

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
    /* claims of rate-limited buckets older than any window (each claim
     * already drops its own bucket's; these are the idle buckets') */
    if (store->queues->rate_prune(t, t->now - QUEUE_RATE_PERIOD_MAX, RATE_PRUNE_BATCH, &n,
                                  &more_rates) < 0)
        return -1;
    /* last: what the parts above deleted is given back in the same write */
    if (store->shrink && store->shrink(t, SHRINK_KEEP, SHRINK_PAGES, &freed, &more_pages) < 0)
        return -1;
    *again = more_events || more_jobs || more_schedules || more_rates || more_pages;
    return 0;
}
