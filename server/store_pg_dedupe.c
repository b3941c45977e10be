/* store_pg_dedupe.c -- the dedupe operations of the PostgreSQL store
 * (store.h, struct store_dedupe). */
#include "store_pg.h"

const struct store_dedupe pg_dedupe_ops = {0};

