/* store_pg_schedules.c -- the schedules operations of the PostgreSQL store
 * (store.h, struct store_schedules). */
#include "store_pg.h"

const struct store_schedules pg_schedules_ops = {0};

