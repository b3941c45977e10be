/* messages.c -- messages and replies; the job hooks are filled in by the messages module. */
#include "batond.h"

int
messages_job_completed(struct tx *t, struct req *r, json_t *job, json_t *result, json_t *reply)
{
    (void)t, (void)r, (void)job, (void)result, (void)reply;
    return 0;
}

int
messages_job_failed(struct tx *t, struct req *r, json_t *job)
{
    (void)t, (void)r, (void)job;
    return 0;
}
