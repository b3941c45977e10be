/* store_pg_messages.c -- the messages operations of the PostgreSQL store
 * (store.h, struct store_messages). */
#include "store_pg.h"

const struct store_messages pg_messages_ops = {0};

