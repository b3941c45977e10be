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
 *
 * Rate limits are columns of the same row, so the claim's one read gets
 * them too. A limit is "at most limit claims in any window of periodMs"
 * (a sliding window over the recorded claims, judged by the store's
 * clock): one for the queue as a whole (rate) and one for each rate key of
 * its jobs (keyRate). job_claim checks the queue's bucket before it looks
 * for a job, and asks the store to pass over the jobs of keys whose bucket
 * is full; a claim that finds nothing for that reason parks until the
 * earliest time a bucket frees (a due time, not polling). Every claim of
 * a limited bucket is recorded in the claim's own write, so a claim that
 * rolls back leaves no record. A queue whose limits were never set has the
 * defaults of queue_default_limits: the outbound queues of Telegram and
 * WhatsApp are paced as those APIs document; setting limits (even none)
 * replaces the defaults, and DELETE brings them back.
 */
#include <string.h>

#include "core.h"

#define QUEUES (store->queues)

void
queue_default_limits(const char *queue, struct rate_limit *rate, struct rate_limit *key_rate)
{
    /* Telegram Bot API: about 30 messages a second overall, one a second
     * per chat. WhatsApp Cloud API: 80 messages a second per business
     * number by default, and a pair rate of one message every 6 seconds
     * to one user (error 131056 beyond), where a burst of up to 45 is
     * allowed and then costs 6 s each: 45 in any 270 s. */
    static const struct {
        const char *prefix;
        struct rate_limit rate, key_rate;
    } defaults[] = {
        {"outbound.telegram.", {30, 1000}, {1, 1000}},
        {"outbound.whatsapp.", {80, 1000}, {45, 270000}},
    };

    memset(rate, 0, sizeof *rate);
    memset(key_rate, 0, sizeof *key_rate);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (!strncmp(queue, defaults[i].prefix, strlen(defaults[i].prefix))) {
            *rate = defaults[i].rate;
            *key_rate = defaults[i].key_rate;
        }
}

int
queue_settings_load(struct tx *t, const char *queue, struct queue_settings *s)
{
    if (QUEUES->get(t, queue, s) < 0)
        return -1;
    if (!s->limits_set)
        queue_default_limits(queue, &s->rate, &s->key_rate);
    return 0;
}

static json_t *
limit_json(const struct rate_limit *l, bool by_key)
{
    return json_pack("{s:I, s:I, s:b}", "limit", (json_int_t)l->limit, "periodMs",
                     (json_int_t)l->period_ms, "byKey", by_key);
}

json_t *
queue_limits_json(const struct queue_settings *s)
{
    json_t *rate = json_array();

    if (!rate)
        return NULL;
    if (s->rate.limit)
        json_array_append_new(rate, limit_json(&s->rate, false));
    if (s->key_rate.limit)
        json_array_append_new(rate, limit_json(&s->key_rate, true));
    return json_pack("{s:s, s:o, s:b}", "queue", s->queue, "rate", rate, "default", !s->limits_set);
}

json_t *
queue_settings_json(const struct queue_settings *s)
{
    json_t *o = json_pack("{s:s, s:b, s:o, s:o, s:o}", "queue", s->queue, "paused", s->paused,
                          "pausedAt", s->paused ? json_integer(s->paused_at) : json_null(),
                          "pausedBy", s->paused && *s->paused_by ? json_string(s->paused_by) : json_null(),
                          "pausedReason", s->paused && *s->reason ? json_string(s->reason) : json_null());
    json_t *limits = o ? queue_limits_json(s) : NULL;

    if (!limits) {
        json_decref(o);
        return NULL;
    }
    json_object_set(o, "rate", json_object_get(limits, "rate"));
    json_decref(limits);
    return o;
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
queue_set_limits(struct tx *t, const char *queue, bool set, const struct rate_limit *rate,
                 const struct rate_limit *key_rate, const char *by, struct queue_settings *s)
{
    char topic[QUEUE_NAME_MAX + 8];
    json_t *f, *shown;

    if (check_args(t, queue, NULL) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        const struct rate_limit *l = i ? key_rate : rate;
        const char *name = i ? "keyRate" : "rate";
        if (set && l && (l->limit < 1 || l->limit > QUEUE_RATE_LIMIT_MAX))
            return tx_fail(t, "bad_request", NULL, "field '%s.limit' must be between 1 and %d", name,
                           QUEUE_RATE_LIMIT_MAX);
        if (set && l && (l->period_ms < 1 || l->period_ms > QUEUE_RATE_PERIOD_MAX))
            return tx_fail(t, "bad_request", NULL, "field '%s.periodMs' must be between 1 and %d",
                           name, QUEUE_RATE_PERIOD_MAX);
    }
    if (QUEUES->set_limits(t, queue, set, rate, key_rate, NULL) < 0 ||
        queue_settings_load(t, queue, s) < 0)
        return -1;
    if ((shown = queue_limits_json(s)) && (f = json_pack("{s:s, s:O, s:O}", "queue", queue, "rate",
                                                         json_object_get(shown, "rate"), "default",
                                                         json_object_get(shown, "default")))) {
        char name[QUEUE_NAME_MAX + 32];
        if (by)
            json_object_set_new(f, "by", json_string(by));
        snprintf(name, sizeof name, "%s.queue.limits_set", queue);
        event_emit(t, "info", name, f);
    }
    json_decref(shown);
    /* a raised or removed limit may free the parked claimers now */
    snprintf(topic, sizeof topic, "jobs:%s", queue);
    tx_notify(t, topic);
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
