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

/* ---- the listing of GET /v1/queues ------------------------------------------ */

struct merge {
    json_t *rows;                   /* the listing, by queue name */
    json_t *extra;                  /* paused queues without jobs */
};

static void
set_paused(json_t *row, const struct queue_settings *s)
{
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
    if (!s->paused)
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
        json_object_set_new(row, "paused", json_false());
        json_object_set_new(row, "pausedReason", json_null());
        json_object_set_new(row, "pausedAt", json_null());
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
