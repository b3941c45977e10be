/* stream.c -- the events table as a live feed: GET /v1/events/stream as
 * Server-Sent Events, and the long-polls of `convex logs`.
 *
 * DESIGN
 * Each subscriber is a streaming response whose reader callback reads the
 * events after the last id it sent. When there are none it suspends its
 * connection; the writer calls stream_wake() after every commit that
 * recorded events, which resumes them all. A ticker thread resumes them
 * every 15 s (or half the idle timeout) so that an idle stream still sends a comment
 * line (keeping proxies from closing it and noticing clients that left).
 * A sequence number taken before reading closes the gap between finding
 * nothing and suspending. Resume with the Last-Event-ID header.
 *
 * A long-poll (stream_park) is a request suspended the same way: the next
 * commit that recorded events, its deadline (checked by the ticker) or
 * shutdown resumes it, and its r->finish then reads what is new.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "batond.h"

#define PING_MS 15000   /* at most; half the idle timeout when that is shorter */
#define BATCH 100

struct sub {
    struct MHD_Connection *conn;
    char exact[160], lo[160], hi[160];   /* filter, see event_filter() */
    json_t *filters;                      /* field filters, see events_query() */
    int64_t last_id;
    int64_t last_write;                   /* ms, for pings */
    unsigned long seq;                    /* wake sequence seen before reading */
    char *pending;                        /* formatted, not yet sent */
    size_t len, off;
    bool suspended;
    struct sub *next;
};

struct poll {
    struct req *r;
    int64_t deadline;                     /* ms */
    struct poll *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick = PTHREAD_COND_INITIALIZER;
static struct sub *suspended;              /* linked through next */
static struct poll *polls;                 /* parked long-polls */
static unsigned long seq;
static bool closing, ticker_running;
static pthread_t ticker;

/* Resume every suspended subscriber; called with lock held. */
static void
resume_subs_locked(void)
{
    while (suspended) {
        struct sub *s = suspended;
        suspended = s->next;
        s->next = NULL;
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

/* Resume the long-polls whose deadline is before `before` (INT64_MAX:
 * all); called with lock held. */
static void
resume_polls_locked(int64_t before)
{
    for (struct poll **pp = &polls; *pp;) {
        struct poll *p = *pp;
        if (p->deadline < before) {
            *pp = p->next;
            http_resume(p->r);
            free(p);
        } else
            pp = &p->next;
    }
}

static void
resume_all_locked(void)
{
    resume_subs_locked();
    resume_polls_locked(INT64_MAX);
}

void
stream_wake(void)
{
    pthread_mutex_lock(&lock);
    seq++;
    resume_all_locked();
    pthread_mutex_unlock(&lock);
}

void
stream_close(void)
{
    pthread_mutex_lock(&lock);
    closing = true;
    seq++;
    resume_all_locked();
    pthread_cond_signal(&tick);
    pthread_mutex_unlock(&lock);
    if (ticker_running)
        pthread_join(ticker, NULL);
    ticker_running = false;
}

static int64_t
ping_ms(void)
{
    return cfg.idle_timeout_ms / 2 < PING_MS ? cfg.idle_timeout_ms / 2 : PING_MS;
}

/* Every ping interval the subscribers (they send a ping when idle); in
 * between, the long-polls as their deadlines pass. */
static void *
ticker_main(void *arg)
{
    int64_t ping_at = now_ms() + ping_ms();

    (void)arg;
    pthread_mutex_lock(&lock);
    while (!closing) {
        struct timespec ts;
        int64_t at = ping_at, now;
        for (struct poll *p = polls; p; p = p->next)
            if (p->deadline < at)
                at = p->deadline;
        ts = ms_timespec(at);
        pthread_cond_timedwait(&tick, &lock, &ts);
        now = now_ms();
        resume_polls_locked(now + 1);
        if (now >= ping_at) {
            resume_subs_locked();
            ping_at = now + ping_ms();
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Start the ticker once; called with lock held. */
static void
ticker_start_locked(void)
{
    if (!ticker_running && !closing && pthread_create(&ticker, NULL, ticker_main, NULL) == 0)
        ticker_running = true;
}

unsigned long
stream_seq(void)
{
    unsigned long v;

    pthread_mutex_lock(&lock);
    v = seq;
    pthread_mutex_unlock(&lock);
    return v;
}

bool
stream_park(struct req *r, unsigned long seen, int64_t deadline)
{
    struct poll *p = malloc(sizeof *p);
    bool parked = false;

    if (!p)
        return false;
    pthread_mutex_lock(&lock);
    if (seen == seq && !closing && r->conn) {
        ticker_start_locked();
        p->r = r;
        p->deadline = deadline;
        p->next = polls;
        polls = p;
        http_suspend(r);
        pthread_cond_signal(&tick);     /* the ticker may need to wake sooner */
        parked = true;
    }
    pthread_mutex_unlock(&lock);
    if (!parked)
        free(p);
    return parked;
}

struct fill {
    struct sub *s;
    size_t cap;
    int rows;                             /* visited, matching or not */
};

/* One event for s->pending, unless its field filters leave it out. */
static int
fill_one(const struct event_row *row, void *arg)
{
    struct fill *f = arg;
    struct sub *s = f->s;
    json_t *e = event_row_json(row);
    char *data, *p;
    size_t need;

    f->rows++;
    if (!event_matches(e, s->filters)) {
        s->last_id = row->id;
        json_decref(e);
        return 0;
    }
    json_object_del(e, "time");     /* the stream keeps the log line's shape */
    data = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (!data)
        return 1;
    need = s->len + strlen(data) + 200;
    if (need > f->cap) {
        f->cap = need * 2;
        p = realloc(s->pending, f->cap);
        if (!p) {
            free(data);
            return 1;
        }
        s->pending = p;
    }
    s->len += (size_t)snprintf(s->pending + s->len, f->cap - s->len, "id: %lld\nevent: %s\ndata: %s\n\n",
                               (long long)row->id, row->name, data);
    s->last_id = row->id;
    free(data);
    return 0;
}

/* Append the events after s->last_id to s->pending. -1 when the database
 * cannot be read at all; a listing that fails midway keeps what it read. */
static int
fill(struct sub *s)
{
    struct event_query q = {.exact = s->exact, .lo = s->lo, .hi = s->hi, .until = INT64_MAX, .limit = BATCH};
    struct fill f = {.s = s};
    struct tx t;

    if (tx_read(&t) < 0) {
        tx_read_end(&t);
        return -1;
    }
    do {
        free(s->pending);
        s->pending = NULL;
        s->len = s->off = 0;
        f.cap = 0;
        f.rows = 0;
        q.after = s->last_id;
        store->events->list(&t, &q, fill_one, &f);
    } while (!s->len && f.rows == BATCH);  /* a whole batch filtered out: more may follow */
    tx_read_end(&t);
    return 0;
}

static ssize_t
reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sub *s = cls;
    unsigned long seen;
    size_t n;

    (void)pos;
    if (s->off == s->len) {
        pthread_mutex_lock(&lock);
        seen = seq;
        if (closing) {
            pthread_mutex_unlock(&lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        pthread_mutex_unlock(&lock);
        if (fill(s) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->off == s->len && now_ms() - s->last_write >= ping_ms()) {
            free(s->pending);
            s->pending = strdup(": ping\n\n");
            s->len = s->pending ? strlen(s->pending) : 0;
            s->off = 0;
        }
        if (s->off == s->len) {
            /* nothing to say: sleep until a commit or the ticker wakes us,
             * unless a commit came in while we were reading */
            pthread_mutex_lock(&lock);
            if (seen == seq && !closing) {
                s->suspended = true;
                s->next = suspended;
                suspended = s;
                MHD_suspend_connection(s->conn);
            }
            pthread_mutex_unlock(&lock);
            return 0;
        }
    }
    n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->pending + s->off, n);
    s->off += n;
    s->last_write = now_ms();
    return (ssize_t)n;
}

static void
sub_free(void *cls)
{
    struct sub *s = cls;

    pthread_mutex_lock(&lock);
    for (struct sub **pp = &suspended; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&lock);
    free(s->pending);
    json_decref(s->filters);
    free(s);
}

/* GET /v1/events/stream?event=<name|prefix.*> with Last-Event-ID */
int
events_stream(struct req *r)
{
    const char *last = req_header(r, "Last-Event-ID");
    struct MHD_Response *resp;
    struct sub *s = calloc(1, sizeof *s);
    int64_t id;

    if (!s)
        return req_fail(r, "unavailable", NULL, "out of memory");
    if (last && *last && (parse_int64(last, &id) < 0 || id < 0)) {
        free(s);
        return req_fail(r, "bad_request", NULL, "Last-Event-ID must be an event id");
    }
    if (events_query(r, s->exact, s->lo, s->hi, sizeof s->exact, NULL, &s->filters) < 0) {
        free(s);
        return -1;
    }
    if (last && *last)
        s->last_id = id;
    else {
        /* a new tail starts at the newest event */
        struct tx t;
        int rc = tx_read(&t) < 0 ? -1 : store->events->last_id(&t, &s->last_id);
        tx_read_end(&t);
        if (rc < 0) {
            json_decref(s->filters);
            free(s);
            return req_fail(r, "unavailable", NULL, "database cannot be read");
        }
    }
    s->conn = r->conn;
    s->last_write = 0;          /* first call sends a ping at once: headers go out */
    pthread_mutex_lock(&lock);
    ticker_start_locked();
    pthread_mutex_unlock(&lock);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, reader, s, sub_free);
    if (!resp) {
        json_decref(s->filters);
        free(s);
        return req_fail(r, "unavailable", NULL, "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    r->raw = resp;
    r->status = 200;
    return 0;
}
