/* check_store_dedupe.c -- store conformance cases of the dedupe operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_dedupe(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
