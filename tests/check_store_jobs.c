/* check_store_jobs.c -- store conformance cases of the jobs operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_jobs(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
