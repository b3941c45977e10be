/* events_api.c -- the events routes: POST /v1/events (what a worker
 * reports) and GET /v1/events (a filtered listing, newest first), and the
 * query parser they share with the stream (stream.c). */
#include <stdlib.h>
#include <string.h>

#include "batond.h"

struct report {
    const char *event, *level;
    json_t *fields;
};

static void
report_free(void *p)
{
    struct report *rp = p;

    json_decref(rp->fields);
    free(rp);
}

static int
report_tx(struct tx *t, struct req *r)
{
    struct report *rp = r->ctx;

    event_emit(t, rp->level, rp->event, json_incref(rp->fields));
    return req_ok(r, 201, json_pack("{s:s}", "event", rp->event));
}

/* POST /v1/events {event, level?, ...fields}: what workers alone see. */
int
events_report(struct req *r)
{
    struct report *rp = calloc(1, sizeof *rp);
    struct field spec[] = {
        FIELD_STR("event", NULL, F_REQUIRED),
        FIELD_STR("level", NULL, 0),
        FIELD_END,
    };

    if (!rp)
        return req_fail(r, "unavailable", NULL, "out of memory");
    r->ctx = rp;
    r->ctx_free = report_free;
    rp->level = "info";
    spec[0].out = &rp->event;
    spec[1].out = &rp->level;
    if (req_fields(r, spec) < 0)
        return -1;
    if (!name_ok(rp->event, 128, "._-"))
        return req_fail(r, "bad_request", NULL,
                        "field 'event' must be 1-128 characters of letters, digits, '.', '_' or '-'");
    if (strcmp(rp->level, "debug") && strcmp(rp->level, "info") && strcmp(rp->level, "warn") &&
        strcmp(rp->level, "error"))
        return req_fail(r, "bad_request", NULL, "field 'level' must be debug, info, warn or error");
    rp->fields = json_deep_copy(r->json);
    json_object_del(rp->fields, "event");
    json_object_del(rp->fields, "level");
    json_object_set_new(rp->fields, "reported", json_true());
    return req_submit(r, report_tx);
}

#define MAX_FILTERS EVENT_MAX_FIELDS

int
events_query(struct req *r, char *exact, char *lo, char *hi, size_t n, const char *const *other,
             json_t **filters)
{
    const char *k;
    json_t *args, *v;
    int nf = 0;

    *filters = NULL;
    if (event_filter(req_query(r, "event"), exact, lo, hi, n) < 0)
        return req_fail(r, "bad_request", json_pack("{s:s}", "parameter", "event"),
                        "query parameter 'event' must be an event name (letters, digits, '.', '_', '-') "
                        "of at most %zu characters, or a prefix ending in '.*'", n - 1);
    args = req_query_all(r);
    *filters = json_object();
    json_object_foreach(args, k, v) {
        bool skip = !strcmp(k, "event");
        for (const char *const *o = other; o && *o && !skip; o++)
            skip = !strcmp(k, *o);
        if (skip)
            continue;
        if (!name_ok(k, 64, "_") || ++nf > MAX_FILTERS) {
            req_fail(r, "bad_request", NULL,
                     "field filters are at most %d names of letters, digits and '_' (got '%.64s')",
                     MAX_FILTERS, k);   /* k belongs to args: answer before freeing it */
            json_decref(args);
            json_decref(*filters);
            *filters = NULL;
            return -1;
        }
        json_object_set(*filters, k, v);
    }
    json_decref(args);
    return 0;
}

/* GET /v1/events?event=<name|prefix.*>&since=&until=&limit=&<field>=<value>:
 * newest first. Field filters compare the event's field, as text, with the
 * value given (accountId=default, jobId=12, ownerId=wa-1). */

struct listing {
    json_t *events;
    bool oom;
};

static int
list_one(const struct event_row *e, void *arg)
{
    struct listing *l = arg;

    if (json_array_append_new(l->events, event_row_json(e)) < 0)
        l->oom = true;
    return l->oom;
}

int
events_list(struct req *r)
{
    static const char *const paging[] = {"since", "until", "limit", NULL};
    struct event_field fields[EVENT_MAX_FIELDS];
    struct event_query q = {.exact = NULL};
    struct listing l = {NULL, false};
    char exact[160], lo[160], hi[160];
    const char *k;
    json_t *v, *filters;
    struct tx t;
    int rc;

    if (req_query_int(r, "since", 0, 0, INT64_MAX, &q.since) < 0 ||
        req_query_int(r, "until", INT64_MAX, 0, INT64_MAX, &q.until) < 0 ||
        req_query_int(r, "limit", 100, 1, 1000, &q.limit) < 0 ||
        events_query(r, exact, lo, hi, sizeof lo, paging, &filters) < 0)
        return -1;
    json_object_foreach(filters, k, v) {
        fields[q.nfields].key = k;
        fields[q.nfields++].value = json_string_value(v);
    }
    q.fields = fields;
    q.exact = exact;
    q.lo = lo;
    q.hi = hi;
    q.newest_first = true;
    if (tx_read(&t) < 0) {
        json_decref(filters);
        return req_fail_tx(r, &t);
    }
    if (!(l.events = json_array()))
        l.oom = true;
    rc = l.oom ? 0 : store->events->list(&t, &q, list_one, &l);
    json_decref(filters);
    if (rc < 0) {
        json_decref(l.events);
        rc = req_fail(r, "unavailable", NULL, "cannot read events");
    } else if (l.oom) {
        json_decref(l.events);
        rc = req_fail(r, "unavailable", NULL, "out of memory");
    } else
        rc = req_ok(r, 200, json_pack("{s:o}", "events", l.events));
    tx_read_end(&t);
    return rc;
}
