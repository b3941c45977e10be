/* modules.c -- start-up of the resource modules: each checks the settings
 * it owns here, so a bad value stops batond before it serves. */
#include "batond.h"

int
modules_init(char *why, size_t n)
{
    messages_init();
    if (sessions_init(why, n) < 0)
        return -1;
    if (web_init(why, n) < 0)
        return -1;
    return 0;
}

void
modules_free(void)
{
    sessions_free();
    web_free();
}
