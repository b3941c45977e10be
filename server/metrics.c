/* metrics.c -- GET /metrics in Prometheus text format.
 *
 * Counters that only the process sees (HTTP requests and latency by route
 * and status, committed events by name) live in memory and restart at zero
 * with batond, as Prometheus counters may. Everything that is state -- jobs
 * by queue and status, lease holders, database size -- is read from the
 * database at scrape time, so it is never out of step with it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "batond.h"

static const double buckets[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
#define NBUCKETS (sizeof buckets / sizeof *buckets)

/* HTTP series, one per (route, method, status), recorded without a lock:
 * each route (and "unmatched") has a row of slots, allocated on its first
 * request and found by its index in the route table; a slot is claimed by
 * a compare-and-swap of its (method, status) key, found by a hash of the
 * key and linear probing, and counted with relaxed atomic adds (one per
 * counter, the histogram keeps per-bucket counts and is summed up when
 * rendered). A request costs no mutex and no scan of other routes'
 * series. A route answers with a few statuses of batond's fixed set
 * (http.c), far fewer than a row holds; a request that finds its row full
 * is not recorded. */
#define ROW_SLOTS 32                /* a power of two */
#define UNMATCHED_SLOTS 128         /* any method, 404 or 405 and the errors before routing */
#define MAX_ROWS 256                /* routes in the table, plus "unmatched" */

static const char *const method_names[] = {"GET", "POST", "PUT", "DELETE", "OTHER"};

struct slot {
    _Atomic uint32_t key;           /* (method + 1) << 16 | status; 0: free */
    _Atomic uint64_t le[NBUCKETS + 1];  /* requests per bucket; the last: over the top one */
    _Atomic uint64_t sum_ms;
};

static struct slot *_Atomic rows[MAX_ROWS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;    /* events and commits */
static json_t *event_counts;    /* {name: count} */
static uint64_t deferred_order_key;    /* jobs enqueued behind an earlier job of their key */

/* group commit (the writer calls metrics_commit after every transaction) */
static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define NBATCH (sizeof batch_buckets / sizeof *batch_buckets)
static const double commit_buckets[] = {0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};
#define NCOMMIT (sizeof commit_buckets / sizeof *commit_buckets)
static struct {
    uint64_t commits, failed, writes;
    uint64_t batch_le[NBATCH];
    uint64_t ms_le[NCOMMIT];
    double ms_sum;
} gc;

static size_t
route_rows(void)
{
    static _Atomic size_t n;
    size_t k = atomic_load_explicit(&n, memory_order_relaxed);

    if (!k) {
        while (routes[k].method)
            k++;
        k = k + 1 < MAX_ROWS ? k + 1 : MAX_ROWS;   /* the last row: unmatched */
        atomic_store_explicit(&n, k, memory_order_relaxed);
    }
    return k;
}

static size_t
row_slots(size_t row)
{
    return row == route_rows() - 1 ? UNMATCHED_SLOTS : ROW_SLOTS;
}

void
metrics_http(const struct route *route, const char *method, int status, int64_t ms)
{
    size_t nrows = route_rows(), row = route ? (size_t)(route - routes) : nrows - 1, n, b;
    unsigned m = !strcmp(method, "GET") ? 0 : !strcmp(method, "POST") ? 1 : !strcmp(method, "PUT") ? 2 :
                 !strcmp(method, "DELETE") ? 3 : 4;
    uint32_t key = (uint32_t)(m + 1) << 16 | ((uint32_t)status & 0xffff);
    struct slot *slots;

    if (row >= nrows)
        row = nrows - 1;
    n = row_slots(row);
    if (!(slots = atomic_load_explicit(&rows[row], memory_order_acquire))) {
        struct slot *mine = calloc(n, sizeof *mine), *none = NULL;
        if (!mine)
            return;
        if (atomic_compare_exchange_strong_explicit(&rows[row], &none, mine, memory_order_acq_rel,
                                                    memory_order_acquire))
            slots = mine;
        else {
            free(mine);         /* another thread installed the row first */
            slots = none;
        }
    }
    for (size_t i = 0, at = (key * 2654435761u) & (n - 1); i < n; i++, at = (at + 1) & (n - 1)) {
        struct slot *sl = &slots[at];
        uint32_t k = atomic_load_explicit(&sl->key, memory_order_acquire), free_key = 0;

        if (!k && atomic_compare_exchange_strong_explicit(&sl->key, &free_key, key, memory_order_acq_rel,
                                                          memory_order_acquire))
            k = key;
        else if (!k)
            k = free_key;           /* taken meanwhile: by this key? */
        if (k != key)
            continue;
        for (b = 0; b < NBUCKETS && (double)ms > buckets[b]; b++)
            ;
        atomic_fetch_add_explicit(&sl->le[b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sl->sum_ms, ms > 0 ? (uint64_t)ms : 0, memory_order_relaxed);
        return;
    }
}

void
metrics_events(json_t *lines)
{
    size_t i;
    json_t *l;

    pthread_mutex_lock(&lock);
    if (!event_counts)
        event_counts = json_object();
    json_array_foreach(lines, i, l) {
        const char *name;
        size_t count = event_lines_count(l, &name);
        json_t *c = name ? json_object_get(event_counts, name) : NULL;
        if (!name)
            continue;
        if (json_is_true(json_object_get(l, "heldByKey")))
            deferred_order_key++;
        if (c)
            json_integer_set(c, json_integer_value(c) + (json_int_t)count);
        else
            json_object_set_new(event_counts, name, json_integer((json_int_t)count));
    }
    pthread_mutex_unlock(&lock);
}

void
metrics_commit(size_t writes, bool committed, double ms)
{
    pthread_mutex_lock(&lock);
    if (!committed) {
        gc.failed++;
        pthread_mutex_unlock(&lock);
        return;
    }
    gc.commits++;
    gc.writes += writes;
    for (size_t b = 0; b < NBATCH; b++)
        if ((double)writes <= batch_buckets[b])
            gc.batch_le[b]++;
    gc.ms_sum += ms;
    for (size_t b = 0; b < NCOMMIT; b++)
        if (ms <= commit_buckets[b])
            gc.ms_le[b]++;
    pthread_mutex_unlock(&lock);
}

/* ---- rendering ----------------------------------------------------------- */

struct out {
    char *p;
    size_t len, cap;
    bool oom;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        size_t room = o->cap - o->len;
        va_start(ap, fmt);
        n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if (o->p && (size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap + (size_t)n + 1) * 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

static void
help(struct out *o, const char *name, const char *type, const char *text)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Label values are escaped as the format requires: \\, \", \n. */
static void
label(struct out *o, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            out_printf(o, "\\%c", *v);
        else if (*v == '\n')
            out_printf(o, "\\n");
        else
            out_printf(o, "%c", *v);
    }
}

static void
render_queue(const struct queue_count *q, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_jobs{queue=\"");
    label(o, q->queue);
    out_printf(o, "\",status=\"%s\"} %lld\n", q->status, (long long)q->count);
}

static void
render_stale(const struct queue_count *q, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_jobs_stale{queue=\"");
    label(o, q->queue);
    out_printf(o, "\"} %lld\n", (long long)q->count);
}

static void
render_lease(const struct lease_gauge *l, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_lease_held{channel=\"");
    label(o, l->channel);
    out_printf(o, "\",account=\"");
    label(o, l->account);
    out_printf(o, "\",owner=\"");
    label(o, l->owner);
    out_printf(o, "\"} %d\n", l->held);
    out_printf(o, "baton_lease_transitions_total{channel=\"");
    label(o, l->channel);
    out_printf(o, "\",account=\"");
    label(o, l->account);
    out_printf(o, "\"} %lld\n", (long long)l->transitions);
    out_printf(o, "baton_lease_token{channel=\"");
    label(o, l->channel);
    out_printf(o, "\",account=\"");
    label(o, l->account);
    out_printf(o, "\"} %lld\n", (long long)l->token);
}

static int
render_paused(const struct queue_settings *s, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_queue_paused{queue=\"");
    label(o, s->queue);
    out_printf(o, "\"} %d\n", s->paused);
    return 0;
}

static int
render_schedule(const struct schedule *sc, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_schedule_runs_total{schedule=\"");
    label(o, sc->name);
    out_printf(o, "\"} %lld\n", (long long)sc->runs);
    return 0;
}

/* The gauges of what the database holds, judged at the store's clock. A
 * gauge that cannot be read is left out (the scrape still answers). */
static void
render_state(struct out *o, struct tx *t, int64_t *db_bytes, int64_t *wal_bytes)
{
    const struct store_stats *ss = store->stats;
    int64_t n;

    help(o, "baton_jobs", "gauge", "Jobs by queue and status.");
    ss->queue_counts(t, render_queue, o);
    help(o, "baton_jobs_stale", "gauge", "Processing jobs whose lock has expired.");
    ss->stale_counts(t, render_stale, o);
    help(o, "baton_queue_paused", "gauge", "1 while a queue is paused (hands out no claims); "
         "queues that were never paused are not listed.");
    store->queues->list(t, render_paused, o);
    help(o, "baton_lease_held", "gauge", "1 while an owner holds the lease of an account.");
    help(o, "baton_lease_transitions_total", "counter", "Times the holder of an account's lease changed.");
    help(o, "baton_lease_token", "gauge", "The fencing token of an account's latest grant.");
    ss->lease_gauges(t, render_lease, o);
    help(o, "baton_dedupe_entries", "gauge", "Inbound message ids remembered.");
    if (ss->dedupe_entries(t, &n) == 0)
        out_printf(o, "baton_dedupe_entries %lld\n", (long long)n);
    help(o, "baton_schedule_runs_total", "counter", "Due times each schedule has fired (jobs enqueued).");
    store->schedules->list(t, render_schedule, o);
    if (ss->sizes(t, db_bytes, wal_bytes) < 0)
        *db_bytes = *wal_bytes = 0;
    tx_clear_fault(t);
}

/* The labels of one HTTP series: {route="...",method="...",status="..." */
static void
series_labels(struct out *o, const char *name, const char *route, uint32_t key)
{
    out_printf(o, "%s{route=\"", name);
    label(o, route);
    out_printf(o, "\",method=\"%s\",status=\"%u\"", method_names[(key >> 16) - 1], key & 0xffff);
}

/* Every recorded series, in the order of the route table. */
static void
render_http(struct out *o)
{
    size_t nrows = route_rows();

    for (int pass = 0; pass < 2; pass++) {
        if (!pass)
            help(o, "baton_http_requests_total", "counter", "HTTP requests by route, method and status.");
        else
            help(o, "baton_http_request_duration_ms", "histogram",
                 "Time from the request's arrival to its answer, in ms (long-polls include their wait).");
        for (size_t row = 0; row < nrows; row++) {
            struct slot *slots = atomic_load_explicit(&rows[row], memory_order_acquire);
            const char *route = row == nrows - 1 ? "unmatched" : routes[row].pattern;

            for (size_t i = 0; slots && i < row_slots(row); i++) {
                uint32_t key = atomic_load_explicit(&slots[i].key, memory_order_acquire);
                uint64_t le[NBUCKETS + 1], count = 0;

                if (!key)
                    continue;
                for (size_t b = 0; b <= NBUCKETS; b++)
                    count += le[b] = atomic_load_explicit(&slots[i].le[b], memory_order_relaxed);
                if (!count)
                    continue;       /* claimed, not counted yet */
                if (!pass) {
                    series_labels(o, "baton_http_requests_total", route, key);
                    out_printf(o, "} %llu\n", (unsigned long long)count);
                    continue;
                }
                for (size_t b = 0, sum = 0; b < NBUCKETS; b++) {
                    sum += le[b];
                    series_labels(o, "baton_http_request_duration_ms_bucket", route, key);
                    out_printf(o, ",le=\"%g\"} %llu\n", buckets[b], (unsigned long long)sum);
                }
                series_labels(o, "baton_http_request_duration_ms_bucket", route, key);
                out_printf(o, ",le=\"+Inf\"} %llu\n", (unsigned long long)count);
                series_labels(o, "baton_http_request_duration_ms_sum", route, key);
                out_printf(o, "} %llu\n",
                           (unsigned long long)atomic_load_explicit(&slots[i].sum_ms, memory_order_relaxed));
                series_labels(o, "baton_http_request_duration_ms_count", route, key);
                out_printf(o, "} %llu\n", (unsigned long long)count);
            }
        }
    }
}

static void
render_process(struct out *o)
{
    render_http(o);
    pthread_mutex_lock(&lock);
    help(o, "baton_commits_total", "counter",
         "Transactions committed by the writer (one fsync each with BATON_SYNC=full).");
    out_printf(o, "baton_commits_total %llu\n", (unsigned long long)gc.commits);
    help(o, "baton_commit_failures_total", "counter",
         "Transactions that could not be committed (their writes were answered 503 or 500).");
    out_printf(o, "baton_commit_failures_total %llu\n", (unsigned long long)gc.failed);
    help(o, "baton_writes_total", "counter",
         "Write requests in committed transactions, kept or rolled back to their savepoint "
         "(including internal ones such as the sweep).");
    out_printf(o, "baton_writes_total %llu\n", (unsigned long long)gc.writes);
    help(o, "baton_commit_batch_size", "histogram", "Write requests sharing one commit.");
    for (size_t b = 0; b < NBATCH; b++)
        out_printf(o, "baton_commit_batch_size_bucket{le=\"%g\"} %llu\n", batch_buckets[b],
                   (unsigned long long)gc.batch_le[b]);
    out_printf(o, "baton_commit_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)gc.commits);
    out_printf(o, "baton_commit_batch_size_sum %llu\n", (unsigned long long)gc.writes);
    out_printf(o, "baton_commit_batch_size_count %llu\n", (unsigned long long)gc.commits);
    help(o, "baton_commit_duration_ms", "histogram",
         "Time from BEGIN to the end of COMMIT of one batch, in ms (includes the fsync).");
    for (size_t b = 0; b < NCOMMIT; b++)
        out_printf(o, "baton_commit_duration_ms_bucket{le=\"%g\"} %llu\n", commit_buckets[b],
                   (unsigned long long)gc.ms_le[b]);
    out_printf(o, "baton_commit_duration_ms_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)gc.commits);
    out_printf(o, "baton_commit_duration_ms_sum %.3f\n", gc.ms_sum);
    out_printf(o, "baton_commit_duration_ms_count %llu\n", (unsigned long long)gc.commits);
    help(o, "baton_claims_deferred_total", "counter",
         "Claims deferred since start: reason order_key counts jobs enqueued behind an earlier "
         "job of their orderKey; reason rate_limit counts claims refused because the queue's "
         "rate limit was reached, or every due job's rate key had reached its limit.");
    out_printf(o, "baton_claims_deferred_total{reason=\"order_key\"} %llu\n",
               (unsigned long long)deferred_order_key);
    out_printf(o, "baton_claims_deferred_total{reason=\"rate_limit\"} %llu\n",
               (unsigned long long)jobs_claims_deferred_by_rate());
    help(o, "baton_events_total", "counter",
         "Committed events by name since start: claims (agent.job.claimed), requeues (agent.job.requeued), "
         "dedupe hits (<channel>.inbound.dedupe_skipped), ...");
    if (event_counts) {
        const char *k;
        json_t *v;
        json_object_foreach(event_counts, k, v) {
            out_printf(o, "baton_events_total{event=\"");
            label(o, k);
            out_printf(o, "\"} %lld\n", (long long)json_integer_value(v));
        }
    }
    pthread_mutex_unlock(&lock);
}

static void
render_limit(const char *name, uint64_t refused, void *arg)
{
    struct out *o = arg;

    out_printf(o, "baton_rate_limited_total{limit=\"");
    label(o, name);
    out_printf(o, "\"} %llu\n", (unsigned long long)refused);
}

static void
render_conn(const char *name, const char *reason, uint64_t n, void *arg)
{
    struct out *o = arg;

    if (!reason) {
        help(o, name, "gauge", "Open client connections within the caps.");
        out_printf(o, "%s %llu\n", name, (unsigned long long)n);
        return;
    }
    if (!strcmp(reason, "header_timeout"))
        help(o, name, "counter",
             "Connections closed by batond: request too slow (header/body deadline) or over a cap.");
    out_printf(o, "%s{reason=\"%s\"} %llu\n", name, reason, (unsigned long long)n);
}

/* GET /metrics */
int
metrics_get(struct req *r)
{
    struct out o = {0};
    struct tx t;
    int64_t db_bytes, wal_bytes;

    if (tx_read(&t) < 0) {
        tx_read_end(&t);
        return req_fail(r, "unavailable", NULL, "database cannot be read");
    }
    render_state(&o, &t, &db_bytes, &wal_bytes);
    tx_read_end(&t);
    render_process(&o);
    help(&o, "baton_db_bytes", "gauge", "Size of the database file.");
    out_printf(&o, "baton_db_bytes %lld\n", (long long)db_bytes);
    help(&o, "baton_wal_bytes", "gauge", "Size of the write-ahead log.");
    out_printf(&o, "baton_wal_bytes %lld\n", (long long)wal_bytes);
    help(&o, "baton_parked_requests", "gauge", "Long-poll requests waiting (claims, conversation reads).");
    out_printf(&o, "baton_parked_requests %zu\n", writer_parked());
    help(&o, "baton_rate_limited_total", "counter",
         "Requests refused (429) or slowed by each limit since start.");
    ratelimit_foreach(render_limit, &o);
    http_metrics(render_conn, &o);
    if (o.oom) {
        free(o.p);
        return req_fail(r, "unavailable", NULL, "out of memory");
    }
    req_ok(r, 200, NULL);
    r->text = o.p;
    r->text_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}
