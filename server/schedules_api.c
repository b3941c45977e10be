/* schedules_api.c -- the routes of schedules: POST /v1/schedules, the
 * listing, one schedule, its deletion, pause and resume. The rules are in
 * schedules.c, the cron parser in cron.c.
 */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

#define SCHEDULE_EVERY_MAX  (366 * 86400000LL)     /* a year */
#define SCHEDULE_CRON_MAX   200

struct create {
    struct schedule_new n;
};

static int
create_tx(struct tx *t, struct req *r)
{
    struct create *c = r->ctx;
    json_t *s;

    if (schedule_create(t, &c->n, &s) < 0)
        return -1;
    return req_ok(r, 201, json_pack("{s:o}", "schedule", s));
}

int
schedules_create(struct req *r)
{
    struct create *c = calloc(1, sizeof *c);
    struct field spec[] = {
        {"name", F_STR, F_REQUIRED, NULL, 0, SCHEDULE_NAME_MAX, NULL},
        {"queue", F_STR, F_REQUIRED, NULL, 0, JOBS_QUEUE_MAX, NULL},
        FIELD_ANY("payload", NULL, F_REQUIRED),
        {"cron", F_STR, 0, NULL, 0, SCHEDULE_CRON_MAX, NULL},
        FIELD_INT("everyMs", NULL, 0, SCHEDULE_EVERY_MIN, SCHEDULE_EVERY_MAX),
        {"timezone", F_STR, 0, NULL, 0, 64, NULL},
        FIELD_BOOL("paused", NULL, 0),
        FIELD_END,
    };

    if (!c)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = c;
    r->ctx_free = free;
    spec[0].out = &c->n.name;
    spec[1].out = &c->n.queue;
    spec[2].out = &c->n.payload;
    spec[3].out = &c->n.cron;
    spec[4].out = &c->n.every_ms;
    spec[5].out = &c->n.timezone;
    spec[6].out = &c->n.paused;
    if (req_fields(r, spec) < 0)
        return -1;
    return req_submit(r, create_tx);
}

static int
list_row(const struct schedule *s, void *arg)
{
    json_t *o = schedule_json(s);

    return o ? json_array_append_new(arg, o) : -1;
}

int
schedules_list(struct req *r)
{
    json_t *all = json_array();
    struct tx t;
    int rc;

    if (!all)
        return req_fail(r, "unavailable", NULL, "out of memory");
    if (tx_read(&t) < 0) {
        json_decref(all);
        return req_fail_tx(r, &t);
    }
    rc = store->schedules->list(&t, list_row, all);
    if (rc) {
        json_decref(all);
        rc = rc < 0 && t.err.code ? req_fail_tx(r, &t) : req_fail(r, "unavailable", NULL, "out of memory");
        tx_read_end(&t);
        return rc;
    }
    tx_read_end(&t);
    return req_ok(r, 200, json_pack("{s:o}", "schedules", all));
}

int
schedules_get(struct req *r)
{
    const char *name = req_param(r, 0);
    struct schedule s;
    struct tx t;
    json_t *o;
    int rc;

    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = store->schedules->get(&t, name, &s);
    if (rc <= 0) {
        if (!rc)
            req_fail(r, "not_found", NULL, "no schedule named %.100s", name);
        else
            req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    o = schedule_json(&s);
    schedule_free(&s);
    if (!o)
        return req_fail(r, "unavailable", NULL, "out of memory");
    return req_ok(r, 200, json_pack("{s:o}", "schedule", o));
}

static int
delete_tx(struct tx *t, struct req *r)
{
    if (schedule_remove(t, req_param(r, 0)) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:b}", "deleted", 1));
}

int
schedules_delete(struct req *r)
{
    return req_submit(r, delete_tx);
}

static int
pause_tx(struct tx *t, struct req *r, bool paused)
{
    json_t *s;

    if (schedule_pause(t, req_param(r, 0), paused, &s) < 0)
        return -1;
    return req_ok(r, 200, json_pack("{s:o}", "schedule", s));
}

static int
pause_on(struct tx *t, struct req *r)
{
    return pause_tx(t, r, true);
}

static int
pause_off(struct tx *t, struct req *r)
{
    return pause_tx(t, r, false);
}

int
schedules_pause(struct req *r)
{
    return req_submit(r, pause_on);
}

int
schedules_resume(struct req *r)
{
    return req_submit(r, pause_off);
}
