/* queues_api.c -- the routes of queue controls: POST
 * /v1/queues/{queue}/pause and /resume, and the settings merged into the
 * listing of GET /v1/queues. The rules are in queues.c (core.h). */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

struct control {
    bool pause;
    const char *queue, *reason;     /* borrowed from the request */
    char by[QUEUE_BY_MAX + 1];      /* the client's address */
};

static int
control_tx(struct tx *t, struct req *r)
{
    struct control *c = r->ctx;
    struct queue_settings s;
    bool changed;
    json_t *out;
    int rc = c->pause ? queue_pause(t, c->queue, c->by, c->reason, &s, &changed)
                      : queue_resume(t, c->queue, c->by, c->reason, &s, &changed);

    if (rc < 0)
        return req_fail_tx(r, t);
    if (!(out = queue_settings_json(&s)))
        return req_fail(r, "unavailable", NULL, "out of memory");
    json_object_set_new(out, "changed", json_boolean(changed));
    return req_ok(r, 200, out);
}

static int
control(struct req *r, bool pause)
{
    struct control *c = calloc(1, sizeof *c);
    struct field spec[] = {
        {"reason", F_STR, F_EMPTY_OK, NULL, 0, QUEUE_REASON_MAX, NULL},
        FIELD_END,
    };

    if (!c)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = c;
    r->ctx_free = free;
    c->pause = pause;
    c->queue = req_param(r, 0);
    if (!c->queue || !jobs_queue_valid(c->queue))
        return req_fail(r, "bad_request", NULL, JOBS_BAD_QUEUE);
    spec[0].out = &c->reason;
    if (req_fields(r, spec) < 0)
        return -1;
    req_client_addr(r, c->by, sizeof c->by);
    return req_submit(r, control_tx);
}

int
queues_pause(struct req *r)
{
    return control(r, true);
}

int
queues_resume(struct req *r)
{
    return control(r, false);
}

/* ---- rate limits: GET, PUT and DELETE /v1/queues/{queue}/limits ------------ */

struct limits {
    const char *queue;              /* borrowed from the request */
    bool set;                       /* PUT: set; DELETE: back to the defaults */
    bool has_rate, has_key_rate;
    struct rate_limit rate, key_rate;
    char by[QUEUE_BY_MAX + 1];
};

/* One element of `rate` (the i-th, or -1 when rate is an object) into l:
 * {limit, periodMs, byKey?}. -1 with r answered. */
static int
limit_parse(struct req *r, json_t *o, int i, struct limits *l)
{
    char where[32], why[256];
    int64_t limit = 0, period = 0;
    bool by_key = false;
    struct field spec[] = {
        FIELD_INT("limit", &limit, F_REQUIRED, 1, QUEUE_RATE_LIMIT_MAX),
        FIELD_INT("periodMs", &period, F_REQUIRED, 1, QUEUE_RATE_PERIOD_MAX),
        FIELD_BOOL("byKey", &by_key, 0),
        FIELD_END,
    };

    if (i < 0)
        snprintf(where, sizeof where, "rate");
    else
        snprintf(where, sizeof where, "rate[%d]", i);
    if (!json_is_object(o))
        return req_fail(r, "bad_request", NULL, "field '%s' must be an object {limit, periodMs, byKey?}",
                        where);
    /* "field 'limit' must..." becomes "field 'rate[1].limit' must..." */
    if (fields_parse(o, spec, why, sizeof why) < 0)
        return req_fail(r, "bad_request", NULL, "%s%s.%s", strncmp(why, "field '", 7) ? "" : "field '",
                        where, strncmp(why, "field '", 7) ? why : why + 7);
    if (by_key ? l->has_key_rate : l->has_rate)
        return req_fail(r, "bad_request", NULL,
                        "field 'rate' may hold one limit of the queue and one with byKey, not two of one kind");
    if (by_key) {
        l->has_key_rate = true;
        l->key_rate = (struct rate_limit){limit, period};
    } else {
        l->has_rate = true;
        l->rate = (struct rate_limit){limit, period};
    }
    return 0;
}

static int
limits_tx(struct tx *t, struct req *r)
{
    struct limits *l = r->ctx;
    struct queue_settings s;
    json_t *out;

    if (queue_set_limits(t, l->queue, l->set, l->has_rate ? &l->rate : NULL,
                         l->has_key_rate ? &l->key_rate : NULL, l->by, &s) < 0)
        return -1;
    if (!(out = queue_limits_json(&s)))
        return req_fail(r, "unavailable", NULL, "out of memory");
    return req_ok(r, 200, out);
}

static int
limits_write(struct req *r, bool set)
{
    struct limits *l = calloc(1, sizeof *l);
    json_t *rate = NULL, *e;
    struct field spec[] = {
        FIELD_ANY("rate", NULL, F_REQUIRED),
        FIELD_END,
    };
    size_t i;

    if (!l)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = l;
    r->ctx_free = free;
    l->set = set;
    l->queue = req_param(r, 0);
    if (!l->queue || !jobs_queue_valid(l->queue))
        return req_fail(r, "bad_request", NULL, JOBS_BAD_QUEUE);
    if (set) {
        spec[0].out = &rate;
        if (req_fields(r, spec) < 0)
            return -1;
        if (json_is_array(rate)) {
            if (json_array_size(rate) > 2)
                return req_fail(r, "bad_request", NULL,
                                "field 'rate' holds at most two limits (one with byKey)");
            json_array_foreach(rate, i, e)
                if (limit_parse(r, e, (int)i, l) < 0)
                    return -1;
        } else if (!json_is_null(rate) && limit_parse(r, rate, -1, l) < 0)
            return -1;
    }
    req_client_addr(r, l->by, sizeof l->by);
    return req_submit(r, limits_tx);
}

int
queues_limits_put(struct req *r)
{
    return limits_write(r, true);
}

int
queues_limits_delete(struct req *r)
{
    return limits_write(r, false);
}

int
queues_limits_get(struct req *r)
{
    const char *queue = req_param(r, 0);
    struct queue_settings s;
    struct tx t;
    json_t *out;
    int rc;

    if (!queue || !jobs_queue_valid(queue))
        return req_fail(r, "bad_request", NULL, JOBS_BAD_QUEUE);
    if (tx_read(&t) < 0)
        return req_fail_tx(r, &t);
    rc = queue_settings_load(&t, queue, &s);
    if (rc < 0) {
        req_fail_tx(r, &t);
        tx_read_end(&t);
        return -1;
    }
    tx_read_end(&t);
    if (!(out = queue_limits_json(&s)))
        return req_fail(r, "unavailable", NULL, "out of memory");
    return req_ok(r, 200, out);
}

/* ---- the listing of GET /v1/queues ------------------------------------------ */

struct merge {
    json_t *rows;                   /* the listing, by queue name */
    json_t *extra;                  /* paused queues without jobs */
};

static void
set_paused(json_t *row, const struct queue_settings *s)
{
    struct queue_settings in_force = *s;
    json_t *limits;

    if (!in_force.limits_set)
        queue_default_limits(s->queue, &in_force.rate, &in_force.key_rate);
    if ((limits = queue_limits_json(&in_force)))
        json_object_set(row, "rate", json_object_get(limits, "rate"));
    json_decref(limits);
    json_object_set_new(row, "paused", json_boolean(s->paused));
    json_object_set_new(row, "pausedReason",
                        s->paused && *s->reason ? json_string(s->reason) : json_null());
    json_object_set_new(row, "pausedAt", s->paused ? json_integer(s->paused_at) : json_null());
}

static int
merge_row(const struct queue_settings *s, void *arg)
{
    struct merge *m = arg;
    size_t i;
    json_t *row;

    json_array_foreach(m->rows, i, row) {
        const char *q = json_string_value(json_object_get(row, "queue"));

        if (q && !strcmp(q, s->queue)) {
            set_paused(row, s);
            return 0;
        }
    }
    if (!s->paused && !s->limits_set)
        return 0;
    row = json_pack("{s:s, s:{s:i, s:i, s:i, s:i}, s:n, s:i}", "queue", s->queue, "counts",
                    "pending", 0, "processing", 0, "completed", 0, "failed", 0,
                    "oldestPendingAgeMs", "stale", 0);
    if (!row)
        return -1;
    set_paused(row, s);
    json_array_append_new(m->extra, row);
    return 0;
}

static int
by_queue(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

    return strcmp(json_string_value(json_object_get(x, "queue")),
                  json_string_value(json_object_get(y, "queue")));
}

int
queues_merge_settings(struct tx *t, json_t *rows)
{
    struct merge m = {.rows = rows, .extra = json_array()};
    size_t i, n;
    json_t *row, **v;
    int rc;

    if (!m.extra)
        return tx_fail(t, "unavailable", NULL, "out of memory");
    json_array_foreach(rows, i, row) {
        struct queue_settings d = {0};
        snprintf(d.queue, sizeof d.queue, "%s", json_string_value(json_object_get(row, "queue")));
        set_paused(row, &d);
    }
    rc = store->queues->list(t, merge_row, &m);
    if (rc > 0)
        rc = tx_fail(t, "unavailable", NULL, "out of memory");
    if (rc < 0 || !json_array_size(m.extra)) {
        json_decref(m.extra);
        return rc < 0 ? -1 : 0;
    }
    json_array_extend(rows, m.extra);
    json_decref(m.extra);
    /* keep the listing ordered by name */
    n = json_array_size(rows);
    if (!(v = malloc(n * sizeof *v)))
        return tx_fail(t, "unavailable", NULL, "out of memory");
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(rows, i));
    qsort(v, n, sizeof *v, by_queue);
    json_array_clear(rows);
    for (i = 0; i < n; i++)
        json_array_append_new(rows, v[i]);
    free(v);
    return 0;
}
