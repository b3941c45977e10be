/* queues.c -- the rules of queue controls: pause and resume a queue, and
 * the check every claim makes (SPEC section 3, docs/jobs.md "Pausing a
 * queue"). The routes are in queues_api.c, the SQL behind store->queues.
 *
 * DESIGN
 * A pause is a row of queue_settings, so it survives restarts. It stops
 * claims only: job_claim asks queue_paused before it looks for a job (one
 * read by key) and, paused, answers nothing and parks a waiting claim on
 * "jobs:<queue>" as if the queue were empty. Enqueues, heartbeats,
 * completions, failures and the stale sweep do not look at it. A resume
 * notifies that topic, so the parked claimers run again at once. A pause
 * of a paused queue (a resume of a running one) changes nothing and
 * records no event.
 */
#include <string.h>

#include "core.h"

#define QUEUES (store->queues)

int
queue_paused(struct tx *t, const char *queue)
{
    struct queue_settings s;
    int rc = QUEUES->get(t, queue, &s);

    if (rc < 0)
        return -1;
    return rc && s.paused;
}

json_t *
queue_settings_json(const struct queue_settings *s)
{
    return json_pack("{s:s, s:b, s:o, s:o, s:o}", "queue", s->queue, "paused", s->paused,
                     "pausedAt", s->paused ? json_integer(s->paused_at) : json_null(),
                     "pausedBy", s->paused && *s->paused_by ? json_string(s->paused_by) : json_null(),
                     "pausedReason", s->paused && *s->reason ? json_string(s->reason) : json_null());
}

static void
queue_event(struct tx *t, const char *queue, const char *what, const char *by, const char *reason)
{
    char name[QUEUE_NAME_MAX + 32];
    json_t *f = json_pack("{s:s}", "queue", queue);

    if (!f)
        return;
    if (by)
        json_object_set_new(f, "by", json_string(by));
    if (reason && *reason)
        json_object_set_new(f, "reason", json_string(reason));
    snprintf(name, sizeof name, "%s.queue.%s", queue, what);
    event_emit(t, "info", name, f);
}

static int
check_args(struct tx *t, const char *queue, const char *reason)
{
    if (!jobs_queue_valid(queue))
        return tx_fail(t, "bad_request", NULL, JOBS_BAD_QUEUE);
    if (reason && strlen(reason) > QUEUE_REASON_MAX)
        return tx_fail(t, "bad_request", NULL, "field 'reason' must be at most %d bytes",
                       QUEUE_REASON_MAX);
    return 0;
}

int
queue_pause(struct tx *t, const char *queue, const char *by, const char *reason,
            struct queue_settings *s, bool *changed)
{
    int rc;

    *changed = false;
    if (check_args(t, queue, reason) < 0)
        return -1;
    if ((rc = QUEUES->set_paused(t, queue, true, by, reason && *reason ? reason : NULL, s)) < 0)
        return -1;
    if (rc) {
        *changed = true;
        queue_event(t, queue, "paused", by, reason);
    }
    return 0;
}

int
queue_resume(struct tx *t, const char *queue, const char *by, const char *reason,
             struct queue_settings *s, bool *changed)
{
    char topic[QUEUE_NAME_MAX + 8];
    int rc;

    *changed = false;
    if (check_args(t, queue, reason) < 0)
        return -1;
    if ((rc = QUEUES->set_paused(t, queue, false, NULL, NULL, s)) < 0)
        return -1;
    if (rc) {
        *changed = true;
        queue_event(t, queue, "resumed", by, reason);
        /* the claims parked while it was paused look again now */
        snprintf(topic, sizeof topic, "jobs:%s", queue);
        tx_notify(t, topic);
    }
    return 0;
}
