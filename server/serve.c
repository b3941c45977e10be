/* serve.c -- the wiring of the layers below HTTP, shared by batond's main
 * and the fuzz targets: choose and open the store, register the writer's
 * hooks, start the notifier and the writer. */
#include <string.h>

#include "batond.h"

/* A publication of the notifier: the event stream's signal or a topic's
 * wake-up for the writer's parked long-polls; NULL: both look again. */
static void
deliver(const char *topic, int64_t due)
{
    if (!topic) {
        stream_wake();
        writer_wake(NULL, 0);
    } else if (!strcmp(topic, TOPIC_EVENTS))
        stream_wake();
    else
        writer_wake(topic, due);
}

static const struct writer_hooks hooks = {
    .committed = metrics_commit,
    .events = metrics_events,
    .maintain = sweep_run,
};

int
serve_start(char *why, size_t n)
{
    int rc;

    if (store_select(why, n) < 0)
        return -3;
    /* several processes may share the store's database: wake them too */
    notifier = store->replicas ? &notifier_replicas : &notifier_local;
    if ((rc = store->open(why, n)) < 0)
        return rc;
    writer_set_hooks(&hooks);
    if (notifier->start(deliver, why, n) < 0 || writer_start(why, n) < 0) {
        notifier->stop();
        store->close();
        return -1;
    }
    return 0;
}

void
serve_release_waiters(void)
{
    writer_release_waiters();
}

void
serve_stop(void)
{
    writer_stop();
    notifier->stop();
    store->close();
}
