/* check_store_events.c -- store conformance cases of the events operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_events(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
