/* notify.c -- the in-process notifier: with one process per database (the
 * SQLite store) a publication is delivered at once, in the publishing
 * call. A backend shared by several processes provides a notifier that
 * also carries publications between them. */
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

const struct notifier notifier_local = {"local", local_start, local_publish, local_stop};
const struct notifier *notifier = &notifier_local;
