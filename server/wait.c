/* wait.c -- long-poll waiters. Only the writer thread touches this list,
 * so parking, waking and committing are ordered without locks: a request
 * that found nothing is parked after the commit of the batch that looked,
 * and any later commit that makes something available wakes it. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "batond.h"

static struct req *parked;          /* singly linked through r->next */
static _Atomic size_t nparked;    /* read by /metrics from other threads */

static void
push(struct req **list, struct req *r)
{
    r->next = *list;
    *list = r;
}

void
wait_add(struct req *r)
{
    r->parked = true;
    push(&parked, r);
    nparked++;
}

/* Unlink every parked request for which pick() says so onto *out. */
static void
take(struct req **out, bool (*pick)(struct req *, const void *), const void *arg)
{
    struct req **pp = &parked;

    while (*pp) {
        struct req *r = *pp;
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
on_topic(struct req *r, const void *topic)
{
    return !strcmp(r->topic, topic);
}

void
wait_wake(const char *topic, struct req **retry)
{
    take(retry, on_topic, topic);
}

void
wait_note_due(const char *topic, int64_t at)
{
    for (struct req *r = parked; r; r = r->next)
        if (!strcmp(r->topic, topic) && (!r->due || at < r->due))
            r->due = at;
}

int64_t
wait_next(void)
{
    int64_t next = 0;

    for (struct req *r = parked; r; r = r->next) {
        if (!next || r->deadline < next)
            next = r->deadline;
        if (r->due && r->due < next)
            next = r->due;
    }
    return next;
}

static bool
is_due(struct req *r, const void *now)
{
    return r->due && r->due <= *(const int64_t *)now && r->due < r->deadline;
}

static bool
is_expired(struct req *r, const void *now)
{
    return r->deadline <= *(const int64_t *)now;
}

void
wait_expire(int64_t now, struct req **resume, struct req **retry)
{
    take(retry, is_due, &now);
    take(resume, is_expired, &now);
}

static bool
any(struct req *r, const void *arg)
{
    (void)r, (void)arg;
    return true;
}

void
wait_drain(struct req **resume)
{
    take(resume, any, NULL);
}

size_t
wait_count(void)
{
    return nparked;
}

/* ---- called from write functions: recorded in the tx, applied by the
 * writer only if that write commits ---------------------------------- */

void
tx_park(struct tx *t, struct req *r, const char *topic, int64_t deadline, int64_t due)
{
    (void)t;
    free(r->topic);
    r->topic = strdup(topic);
    r->deadline = deadline;
    r->due = due;
    r->parked = true;       /* the writer files it after the commit */
}

void
tx_notify(struct tx *t, const char *topic)
{
    json_array_append_new(t->notify, json_string(topic));
}

void
tx_due(struct tx *t, const char *topic, int64_t at)
{
    json_t *cur = json_object_get(t->due, topic);

    if (!cur || at < json_integer_value(cur))
        json_object_set_new(t->due, topic, json_integer(at));
}
