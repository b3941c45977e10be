/* store_pg_events.c -- the events operations of the PostgreSQL store
 * (store.h, struct store_events). */
#include "store_pg.h"

const struct store_events pg_events_ops = {0};
const struct store_stats pg_stats_ops = {0};
