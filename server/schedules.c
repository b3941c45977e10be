/* schedules.c -- the rules of schedules: a job enqueued at each due time
 * of a cron expression (UTC) or every everyMs. The routes are in
 * schedules_api.c, the SQL behind store->schedules.
 *
 * DESIGN
 * A schedule keeps its next due time (next_run). The writer's maintenance
 * (sweep.c) calls schedules_run, which takes the due schedules one at a
 * time and, in the maintenance's write, advances next_run (conditionally
 * on it still being the due time fired) and inserts the job with dedupe
 * key schedule:<name>:<due ms>: one job per due time, even when two
 * writers look at once or batond restarts in between. The next due time is
 * the first one after now, so due times missed while batond was down (or
 * the schedule was paused) give one job, not one each. So that a schedule
 * fires on time rather than at the next sweep interval, every write that
 * changes the earliest due time asks the writer to run its maintenance
 * then (writer_maintain_at).
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SCHED (store->schedules)
#define RUN_BATCH 100                   /* schedules fired per maintenance chunk */

static json_t *
time_or_null(int64_t ms)
{
    return ms == JOB_NONE ? json_null() : json_integer(ms);
}

json_t *
schedule_json(const struct schedule *s)
{
    json_t *payload = json_loads(s->payload, JSON_DECODE_ANY, NULL);
    char id[24];

    snprintf(id, sizeof id, "%lld", (long long)s->last_job_id);
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:b, s:I, s:o, s:o, s:I, s:I, s:I}",
                     "name", s->name, "queue", s->queue, "payload", payload ? payload : json_null(),
                     "cron", s->cron ? json_string(s->cron) : json_null(),
                     "everyMs", s->every_ms ? json_integer(s->every_ms) : json_null(),
                     "timezone", s->timezone ? s->timezone : "UTC", "paused", s->paused,
                     "nextRunAt", (json_int_t)s->next_run, "lastRunAt", time_or_null(s->last_run),
                     "lastJobId", s->last_job_id ? json_string(id) : json_null(),
                     "runs", (json_int_t)s->runs, "createdAt", (json_int_t)s->created_at,
                     "updatedAt", (json_int_t)s->updated_at);
}

static void
sched_event(struct tx *t, const char *name, const char *what, json_t *fields)
{
    char ev[SCHEDULE_NAME_MAX + 32];

    snprintf(ev, sizeof ev, "schedules.%s.%s", name, what);
    if (!fields)
        fields = json_object();
    json_object_set_new(fields, "schedule", json_string(name));
    event_emit(t, "info", ev, fields);
}

/* The first due time of s after `after`. -1 with t->err when none. */
static int64_t
next_of(struct tx *t, const struct schedule *s, int64_t after)
{
    struct cron c;
    char why[200];
    int64_t at;

    if (!s->cron) {
        if (s->every_ms < SCHEDULE_EVERY_MIN)
            return tx_fail(t, "internal", NULL, "schedule %s has no interval", s->name);
        /* keep the phase of the last due time when there is one */
        if (s->next_run > 0 && s->next_run <= after)
            return s->next_run + ((after - s->next_run) / s->every_ms + 1) * s->every_ms;
        return after + s->every_ms;
    }
    if (cron_parse(s->cron, &c, why, sizeof why) < 0)
        return tx_fail(t, "internal", NULL, "schedule %s: %s", s->name, why);
    if ((at = cron_next(&c, after)) < 0)
        return tx_fail(t, "internal", NULL, "schedule %s never comes due", s->name);
    return at;
}

/* Ask the writer to run the maintenance at the earliest due time. */
static int
wake_at_earliest(struct tx *t)
{
    int64_t at;

    if (SCHED->earliest(t, &at) < 0)
        return -1;
    if (at)
        writer_maintain_at(at);
    return 0;
}

static bool
name_valid(const char *s)
{
    size_t n = strlen(s);

    if (!n || n > SCHEDULE_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool
utc_name(const char *tz)
{
    return !strcmp(tz, "UTC") || !strcmp(tz, "Etc/UTC") || !strcmp(tz, "GMT") || !strcmp(tz, "Etc/GMT");
}

/* A read of the schedule just written into *out. */
static int
answer(struct tx *t, const char *name, json_t **out)
{
    struct schedule s;
    int rc;

    if (!out)
        return 0;
    if ((rc = SCHED->get(t, name, &s)) < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no schedule named %s", name);
    *out = schedule_json(&s);
    schedule_free(&s);
    return *out ? 0 : tx_fail(t, "unavailable", NULL, "out of memory");
}

int
schedule_create(struct tx *t, const struct schedule_new *n, json_t **out)
{
    struct schedule s = {.name = n->name, .queue = n->queue, .cron = n->cron,
                         .timezone = "UTC", .every_ms = n->every_ms, .paused = n->paused};
    struct cron c;
    char why[300];
    int rc;

    if (out)
        *out = NULL;
    if (!name_valid(n->name))
        return tx_fail(t, "bad_request", NULL,
                       "field 'name' must be 1-100 characters of letters, digits, '_' or '-'");
    if (!jobs_queue_valid(n->queue))
        return tx_fail(t, "bad_request", NULL, JOBS_BAD_QUEUE);
    if (!n->cron == !n->every_ms)
        return tx_fail(t, "bad_request", NULL, "exactly one of fields 'cron' and 'everyMs' must be given");
    if (!n->cron && n->every_ms < SCHEDULE_EVERY_MIN)
        return tx_fail(t, "bad_request", NULL, "field 'everyMs' must be at least %d", SCHEDULE_EVERY_MIN);
    if (n->cron && cron_parse(n->cron, &c, why, sizeof why) < 0)
        return tx_fail(t, "bad_request", NULL, "%s", why);
    if (n->timezone && !utc_name(n->timezone))
        return tx_fail(t, "bad_request", NULL,
                       "field 'timezone': only UTC is supported, not '%.64s'", n->timezone);
    if (!(s.payload = json_dumps(n->payload, JSON_COMPACT | JSON_ENCODE_ANY)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    if ((s.next_run = next_of(t, &s, t->now)) < 0) {
        free((char *)s.payload);
        return -1;
    }
    rc = SCHED->insert(t, &s);
    free((char *)s.payload);
    if (rc < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "conflict", NULL, "a schedule named %s exists already", n->name);
    sched_event(t, n->name, "created",
                json_pack("{s:s, s:I}", "queue", n->queue, "nextRunAt", (json_int_t)s.next_run));
    if (wake_at_earliest(t) < 0)
        return -1;
    return answer(t, n->name, out);
}

int
schedule_remove(struct tx *t, const char *name)
{
    int rc = SCHED->del(t, name);

    if (rc < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no schedule named %s", name);
    sched_event(t, name, "deleted", NULL);
    return 0;
}

int
schedule_pause(struct tx *t, const char *name, bool paused, json_t **out)
{
    struct schedule s;
    int64_t next;
    int rc;

    if (out)
        *out = NULL;
    if ((rc = SCHED->get(t, name, &s)) < 0)
        return -1;
    if (!rc)
        return tx_fail(t, "not_found", NULL, "no schedule named %s", name);
    next = s.next_run;
    /* resumed: the next due time after now, the ones missed are not made up */
    if (!paused && s.paused && next <= t->now && (next = next_of(t, &s, t->now)) < 0) {
        schedule_free(&s);
        return -1;
    }
    rc = s.paused == paused ? 1 : SCHED->set_paused(t, name, paused, next);
    if (rc > 0 && s.paused != paused)
        sched_event(t, name, paused ? "paused" : "resumed",
                    json_pack("{s:I}", "nextRunAt", (json_int_t)next));
    schedule_free(&s);
    if (rc < 0 || (!paused && wake_at_earliest(t) < 0))
        return -1;
    return answer(t, name, out);
}

/* Fire one due schedule: 1 fired, 0 it had fired already, -1. */
static int
fire(struct tx *t, const struct schedule *s)
{
    char key[SCHEDULE_NAME_MAX + 40], idtext[24];
    json_t *payload, *job = NULL;
    int64_t next, id = 0;
    bool dup;
    int rc;

    if ((next = next_of(t, s, t->now)) < 0)
        return -1;
    snprintf(key, sizeof key, "schedule:%s:%lld", s->name, (long long)s->next_run);
    if (!(payload = json_loads(s->payload, JSON_DECODE_ANY, NULL)))
        return tx_fail(t, "internal", NULL, "schedule %s has a payload that is not JSON", s->name);
    rc = jobs_insert(t, s->queue, payload, 0, 0, 5, key, NULL, NULL, &job, &dup);
    json_decref(payload);
    if (rc < 0)
        return -1;
    snprintf(idtext, sizeof idtext, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    if (parse_int64(idtext, &id) < 0)
        return tx_fail(t, "internal", NULL, "schedule %s: the job has no id", s->name);
    if ((rc = SCHED->advance(t, s->name, s->next_run, next, id)) <= 0)
        return rc < 0 ? -1 : tx_fail(t, "internal", NULL, "schedule %s changed while firing", s->name);
    sched_event(t, s->name, "fired",
                json_pack("{s:s, s:I, s:s, s:I, s:b}", "queue", s->queue, "dueAt", (json_int_t)s->next_run,
                          "jobId", idtext,
                          "nextRunAt", (json_int_t)next, "duplicate", dup));
    return 1;
}

int
schedules_run(struct tx *t, bool *more)
{
    *more = false;
    for (int i = 0; i < RUN_BATCH; i++) {
        struct schedule s;
        int rc = SCHED->due(t, &s);

        if (rc <= 0)
            return rc < 0 ? -1 : wake_at_earliest(t);
        rc = fire(t, &s);
        schedule_free(&s);
        if (rc < 0)
            return -1;
    }
    *more = true;
    return wake_at_earliest(t);
}
