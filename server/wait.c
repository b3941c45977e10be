/* wait.c -- parked writes (long-poll waiters). Only the writer thread touches this list,
 * so parking, waking and committing are ordered without locks: a request
 * that found nothing is parked after the commit of the batch that looked,
 * and any later commit that makes something available wakes it (into
 * that commit's own transaction when one of its writes notified the
 * topic, see merge_woken in writer.c). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static struct wreq *parked;          /* singly linked through r->next */
static _Atomic size_t nparked;    /* read by /metrics from other threads */

static void
push(struct wreq **list, struct wreq *r)
{
    r->next = *list;
    *list = r;
}

void
wait_add(struct wreq *r)
{
    r->parked = true;
    push(&parked, r);
    nparked++;
}

/* Unlink every parked request for which pick() says so onto *out. */
static void
take(struct wreq **out, bool (*pick)(struct wreq *, const void *), const void *arg)
{
    struct wreq **pp = &parked;

    while (*pp) {
        struct wreq *r = *pp;
        if (pick(r, arg)) {
            *pp = r->next;
            r->parked = false;
            nparked--;
            push(out, r);
        } else
            pp = &r->next;
    }
}

static bool
on_topic(struct wreq *r, const void *topic)
{
    return !topic || !strcmp(r->topic, topic);
}

void
wait_wake(const char *topic, struct wreq **retry)
{
    take(retry, on_topic, topic);
}

void
wait_note_due(const char *topic, int64_t at)
{
    for (struct wreq *r = parked; r; r = r->next)
        if (!strcmp(r->topic, topic) && (!r->due || at < r->due))
            r->due = at;
}

int64_t
wait_next(void)
{
    int64_t next = 0;

    for (struct wreq *r = parked; r; r = r->next) {
        if (!next || r->deadline < next)
            next = r->deadline;
        if (r->due && r->due < next)
            next = r->due;
    }
    return next;
}

static bool
is_due(struct wreq *r, const void *now)
{
    return r->due && r->due <= *(const int64_t *)now && r->due < r->deadline;
}

static bool
is_expired(struct wreq *r, const void *now)
{
    return r->deadline <= *(const int64_t *)now;
}

void
wait_expire(int64_t now, struct wreq **resume, struct wreq **retry)
{
    take(retry, is_due, &now);
    take(resume, is_expired, &now);
}

static bool
any(struct wreq *r, const void *arg)
{
    (void)r, (void)arg;
    return true;
}

void
wait_drain(struct wreq **resume)
{
    take(resume, any, NULL);
}

bool
wait_fresh(const char *topic, uint64_t after)
{
    for (struct wreq *r = parked; r; r = r->next)
        if (!strcmp(r->topic, topic) && r->run_seq <= after)
            return false;
    return true;
}

size_t
wait_count(void)
{
    return nparked;
}
