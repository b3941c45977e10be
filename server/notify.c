/* notify.c -- the notifiers. notifier_local: with one process per database
 * (the SQLite store) a publication is delivered at once, in the publishing
 * call. notifier_replicas: several processes share the database
 * (store->replicas); a publication is delivered in this process at once
 * as well, and reaches the others through the store, which sends it inside
 * the batch's transaction (publish_tx) and delivers theirs to this one
 * from its own thread. */
#include "core.h"

static void (*deliver_fn)(const char *topic, int64_t due);

static int
local_start(void (*deliver)(const char *topic, int64_t due), char *why, size_t n)
{
    (void)why, (void)n;
    deliver_fn = deliver;
    return 0;
}

static void
local_publish(const char *topic, int64_t due)
{
    if (deliver_fn)
        deliver_fn(topic, due);
}

static void
local_stop(void)
{
    deliver_fn = NULL;
}

const struct notifier notifier_local = {"local", local_start, NULL, local_publish, local_stop};
const struct notifier *notifier = &notifier_local;

static int
replicas_start(void (*deliver)(const char *topic, int64_t due), char *why, size_t n)
{
    deliver_fn = deliver;
    if (store->replicas->start(deliver, why, n) < 0) {
        deliver_fn = NULL;
        return -1;
    }
    return 0;
}

static int
replicas_publish_tx(struct tx *t, json_t *wakes)
{
    return store->replicas->publish(t, wakes);
}

static void
replicas_stop(void)
{
    if (deliver_fn)
        store->replicas->stop();
    deliver_fn = NULL;
}

const struct notifier notifier_replicas = {"replicas", replicas_start, replicas_publish_tx,
                                           local_publish, replicas_stop};
