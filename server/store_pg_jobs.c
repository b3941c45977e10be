/* store_pg_jobs.c -- the jobs operations of the PostgreSQL store
 * (store.h, struct store_jobs). */
#include "store_pg.h"

const struct store_jobs pg_jobs_ops = {0};

