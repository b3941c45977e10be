/* check_store_messages.c -- store conformance cases of the messages operations
 * (see check_store.h). */
#include "check_store.h"

void
store_cases_messages(Suite *s, void (*setup)(void), void (*teardown)(void))
{
    (void)s, (void)setup, (void)teardown;
}
