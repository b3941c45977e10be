/* check_store_sessions.c -- store conformance cases of the sessions operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_sessions(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
