/* store_pg_leases.c -- the leases operations of the PostgreSQL store
 * (store.h, struct store_leases). */
#include "store_pg.h"

const struct store_leases pg_leases_ops = {0};

