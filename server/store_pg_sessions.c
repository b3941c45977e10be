/* store_pg_sessions.c -- the sessions operations of the PostgreSQL store
 * (store.h, struct store_sessions). */
#include "store_pg.h"

const struct store_sessions pg_sessions_ops = {0};

