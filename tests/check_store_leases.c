/* check_store_leases.c -- store conformance cases of the leases operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_leases(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
