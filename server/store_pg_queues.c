/* store_pg_queues.c -- the queues operations of the PostgreSQL store
 * (store.h, struct store_queues). */
#include "store_pg.h"

const struct store_queues pg_queues_ops = {0};

