/* writer.c -- the one writer thread and group commit, over any store.
 *
 * DESIGN
 * One writer thread owns the only write connection. Writes are queued
 * (writer_submit); the writer takes every write waiting (group commit),
 * opens one transaction, runs each write in its own savepoint so a failing
 * one rolls back alone, commits once -- one fsync for the whole batch --
 * and only then prints the batch's events, publishes its wake-ups and
 * finishes each write through its done callback. A lone write is
 * committed at once: batching only happens when writes are already queued
 * behind one in progress. Readers never wait for the writer.
 *
 * When the store rolls the whole transaction back by itself (disk full,
 * I/O error), every write of the batch fails with "unavailable" -- none of
 * them is on disk -- and the rest of the batch is not run, so nothing is
 * committed piecemeal.
 *
 * A backend shared by several writers (PostgreSQL) adds two cases. A batch
 * that lost a conflict with another writer (serialization failure,
 * deadlock: store->conflict) kept nothing, so it runs again, up to
 * MAX_TRIES times before its writes are answered 503. A connection that is
 * lost (store->lost) fails its batch with 503 and is dropped; the next
 * batch connects again, no sooner than a backoff of 50 ms doubling to 2 s
 * after the last failed try (batches in between are answered 503 at once),
 * so a database that is down or restarting is neither hammered nor waited
 * for. batond may start with no connection at all: the writer then
 * connects on the first batch.
 *
 * A write that makes something available (an enqueue, a resume, a freed
 * order key: a topic in its tx's notify list) wakes this process's writes
 * parked on it into the same batch: they run after it, in the same
 * transaction, and are answered after the same commit -- a long-poll
 * claim woken by an enqueue costs no second commit. If that batch is not
 * committed they run again in the next one, as any woken write does.
 *
 * Wake-ups: the batch's topics and due times, collapsed to one per topic,
 * go to the other processes of the database inside the transaction, just
 * before COMMIT (notifier->publish_tx, in a savepoint of its own so that a
 * refusal cannot cost the batch), and to this process's parked writes
 * after it.
 *
 * Clocks: parked deadlines and due times are on the store's clock (due
 * times come from rows, deadlines from t->now or writer_clock_offset()).
 * The writer measures the store's clock against this process's at every
 * transaction and waits on the store's: a replica whose own clock is off
 * still wakes its long-polls when the database says they are due.
 *
 * TEST-ONLY HOOKS (environment, read once at start; a warning is logged when
 * one is set; see docs/performance.md and docs/testing.md for why they stay
 * in the binary):
 *   BATON_TEST_COMMIT_DELAY_MS=n  sleep n ms inside every transaction just
 *       before COMMIT, so that concurrent writes pile up and share commits.
 *   BATON_TEST_CLOCK_SKEW_MS=n  (read by now_ms in util.c) shifts this
 *       process's own clock by n ms; logged here.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define MAX_BATCH 256
#define MAX_TRIES 5                 /* runs of a batch that keeps losing conflicts */
#define BACKOFF_MIN_MS 50           /* between connection tries, doubling ... */
#define BACKOFF_MAX_MS 2000         /* ... up to this */

static struct sconn *wconn;
static pthread_t writer;
static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static struct wreq *wq_head, *wq_tail;
static bool running, stopping;
static _Atomic bool draining;       /* shutting down: park nothing, answer waiters */
static struct writer_hooks hooks;
static int64_t test_commit_delay_ms;
static double reconnect_at;         /* writer thread: no connection try before (mono ms) */
static double backoff_ms;           /* writer thread: the wait after the next failed try */

/* wake-ups delivered by the notifier: applied on the writer thread */
struct wake {
    char *topic;
    int64_t due;
    struct wake *next;
};
static struct wake *wakes;          /* under wq_lock */
static struct wreq *woken;          /* writer thread: to run again */
static _Atomic int64_t clock_offset;    /* store's clock - now_ms(), see DESIGN */

struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

void
writer_set_hooks(const struct writer_hooks *h)
{
    hooks = *h;
}

static void
finish(struct wreq *w)
{
    if (w->sync) {
        struct sync_wait *s = w->sync;
        pthread_mutex_lock(&s->lock);
        s->done = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
    } else if (w->done)
        w->done(w);
}

static void
finish_list(struct wreq *list)
{
    while (list) {
        struct wreq *next = list->next;
        list->next = NULL;
        finish(list);
        list = next;
    }
}

static void
enqueue_locked(struct wreq *w)
{
    w->next = NULL;
    if (wq_tail)
        wq_tail->next = w;
    else
        wq_head = w;
    wq_tail = w;
}

/* Woken writes run again -- unless whoever waits has gone, in which case
 * they must not take anything: they are finished (answered to nobody). */
static void
requeue_woken(void)
{
    struct wreq *list = woken;

    woken = NULL;
    while (list) {
        struct wreq *next = list->next;
        list->next = NULL;
        if (draining || (list->alive && !list->alive(list)))
            finish(list);
        else {
            pthread_mutex_lock(&wq_lock);
            enqueue_locked(list);
            pthread_mutex_unlock(&wq_lock);
        }
        list = next;
    }
}

void
writer_wake(const char *topic, int64_t due)
{
    struct wake *k;

    if (running && pthread_equal(pthread_self(), writer)) {
        if (due && topic)
            wait_note_due(topic, due);
        else
            wait_wake(topic, &woken);
        return;
    }
    if (!(k = calloc(1, sizeof *k)) || (topic && !(k->topic = strdup(topic)))) {
        free(k);
        return;     /* the parked writes still wake at their deadline */
    }
    k->due = due;
    pthread_mutex_lock(&wq_lock);
    k->next = wakes;
    wakes = k;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
}

/* Apply the wake-ups other threads delivered (writer thread). */
static void
apply_wakes(struct wake *list)
{
    while (list) {
        struct wake *next = list->next;
        if (list->due && list->topic)
            wait_note_due(list->topic, list->due);
        else
            wait_wake(list->topic, &woken);
        free(list->topic);
        free(list);
        list = next;
    }
}

size_t
writer_parked(void)
{
    return wait_count();
}

int64_t
writer_clock_offset(void)
{
    return clock_offset;
}

/* The store's clock as the writer last measured it. */
static int64_t
store_clock(void)
{
    return now_ms() + clock_offset;
}

static void
tx_begin(struct tx *t)
{
    memset(t, 0, sizeof *t);
    t->c = wconn;
    t->now = store->now(wconn);
    clock_offset = t->now - now_ms();
    t->events = json_array();
    t->notify = json_array();
    t->due = json_object();
}

static void
tx_end(struct tx *t)
{
    json_decref(t->events);
    json_decref(t->notify);
    json_decref(t->due);
    tx_clear_fault(t);
}

static void
fail_all(struct wreq *batch, const struct fault *f)
{
    for (struct wreq *w = batch; w; w = w->next) {
        w->failed = true;
        w->parked = false;
        json_decref(w->err.details);
        w->err.details = NULL;
        w->err.code = f->code ? f->code : "unavailable";
        snprintf(w->err.msg, sizeof w->err.msg, "%s", f->msg);
    }
}

/* Whether the writer has a connection; without one it tries to connect,
 * unless the backoff since the last failed try has not passed. f gets why
 * not ("unavailable"). */
static bool
connected(struct fault *f)
{
    char why[256];
    double now = mono_ms();

    if (wconn)
        return true;
    f->code = "unavailable";
    if (now < reconnect_at) {
        snprintf(f->msg, sizeof f->msg, "database unavailable: reconnecting");
        return false;
    }
    if (store->connect(&wconn, why, sizeof why) == 0) {
        backoff_ms = BACKOFF_MIN_MS;
        f->code = NULL;
        log_event("info", "db.reconnected", NULL);
        return true;
    }
    reconnect_at = now + backoff_ms;
    backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    snprintf(f->msg, sizeof f->msg, "database unavailable: %s", why);
    return false;
}

/* After a failed batch: a lost connection is dropped, to be replaced
 * before a later batch. */
static void
drop_if_lost(void)
{
    if (!wconn || !store->lost || !store->lost(wconn))
        return;
    store->disconnect(wconn);
    wconn = NULL;
    backoff_ms = BACKOFF_MIN_MS;
    reconnect_at = mono_ms() + backoff_ms;
    log_event("error", "db.connection_lost", NULL);
}

/* Hand the batch's wake-ups to the other processes inside its
 * transaction: one per topic (a wake now wins over a due time: the woken
 * writes look for their next due time themselves). -1 only when the store
 * aborted the transaction meanwhile; a refused publication is logged and
 * rolled back alone (waits elsewhere then end at their deadline). */
static int
publish_tx(json_t *notify, json_t *due, bool events)
{
    json_t *out = json_deep_copy(due), *v;
    struct tx t;
    size_t i;
    int rc;

    if (!out)
        return 0;
    json_array_foreach(notify, i, v)
        json_object_set_new(out, json_string_value(v), json_integer(0));
    if (events)
        json_object_set_new(out, TOPIC_EVENTS, json_integer(0));
    if (!json_object_size(out)) {
        json_decref(out);
        return 0;
    }
    tx_begin(&t);
    store->savepoint(wconn);
    rc = notifier->publish_tx(&t, out);
    if (store->aborted(wconn)) {
        tx_end(&t);
        json_decref(out);
        return -1;
    }
    if (rc < 0) {
        store->rollback_to(wconn);
        log_event("warn", "db.notify_failed", json_pack("{s:s}", "error", t.err.msg));
    }
    store->release(wconn);
    tx_end(&t);
    json_decref(out);
    return 0;
}

/* The writes parked on the topics of notify join the batch after tail
 * (see DESIGN); whoever waits for them must still be there. The new tail. */
static struct wreq *
merge_woken(json_t *notify, struct wreq *tail)
{
    size_t i;
    json_t *v;

    if (draining)
        return tail;
    json_array_foreach(notify, i, v) {
        struct wreq *got = NULL;
        wait_wake(json_string_value(v), &got);
        while (got) {
            struct wreq *w = got;
            got = w->next;
            if (w->alive && !w->alive(w)) {
                w->next = woken;        /* finished by requeue_woken */
                woken = w;
                continue;
            }
            w->merged = true;
            w->next = NULL;
            tail->next = w;
            tail = w;
        }
    }
    return tail;
}

/* One transaction of the batch: its writes' events, wake-ups and due
 * times are added to the arrays. true when it committed; else every write
 * is failed (f says why). */
static bool
run_tx(struct wreq *batch, json_t *events, json_t *notify, json_t *due, struct fault *f)
{
    struct wreq *w, *tail = batch;
    bool committed, aborted = false;

    while (tail->next)
        tail = tail->next;
    if (store->begin(wconn, f) < 0) {
        fail_all(batch, f);
        return false;
    }
    for (w = batch; w; w = w->next) {
        struct tx t;

        tx_begin(&t);
        w->parked = false;
        store->savepoint(wconn);
        w->rc = w->fn(&t, w);
        if (store->aborted(wconn)) {
            /* the store rolled the whole transaction back (full, I/O
             * error): what the batch did so far is gone. Fail all of it
             * and run nothing more outside a transaction. */
            tx_end(&t);
            aborted = true;
            break;
        }
        if (w->rc == 0) {
            store->release(wconn);
            json_array_extend(events, t.events);
            json_array_extend(notify, t.notify);
            json_object_update(due, t.due);
            tail = merge_woken(t.notify, tail);
        } else {
            store->rollback_to(wconn);
            store->release(wconn);
            w->parked = false;
        }
        tx_end(&t);
    }
    if (aborted) {
        f->code = "unavailable";
        snprintf(f->msg, sizeof f->msg, "database unavailable: the transaction was rolled back");
        fail_all(batch, f);
        store->rollback(wconn);
        return false;
    }
    if (notifier->publish_tx && publish_tx(notify, due, json_array_size(events) > 0) < 0) {
        f->code = "unavailable";
        snprintf(f->msg, sizeof f->msg, "database unavailable: the transaction was rolled back");
        fail_all(batch, f);
        store->rollback(wconn);
        return false;
    }
    if (test_commit_delay_ms > 0)
        sleep_ms(test_commit_delay_ms);
    committed = store->commit(wconn, f) == 0;
    if (!committed) {
        fail_all(batch, f);
        store->rollback(wconn);
    }
    return committed;
}

static void
run_batch(struct wreq *batch)
{
    json_t *events = json_array(), *notify = json_array(), *due = json_object();
    struct wreq *w, *park = NULL, *done = NULL;
    struct fault f = {0};
    bool committed = false;
    size_t writes = 0;
    double t0 = mono_ms();

    for (int tries = 0; tries < MAX_TRIES; tries++) {
        for (w = batch; w; w = w->next) {
            w->failed = false;
            json_decref(w->err.details);
            w->err = (struct fault){0};
        }
        json_array_clear(events);
        json_array_clear(notify);
        json_object_clear(due);
        json_decref(f.details);
        f = (struct fault){0};
        if (!connected(&f)) {
            fail_all(batch, &f);
            break;
        }
        if ((committed = run_tx(batch, events, notify, due, &f)))
            break;
        /* nothing of it was kept: a lost conflict may simply run again */
        if (!store->conflict || !store->conflict(wconn) || (store->lost && store->lost(wconn)))
            break;
        log_event("warn", "db.batch_retried", json_pack("{s:i, s:s}", "try", tries + 1, "reason", f.msg));
    }
    if (!committed)
        drop_if_lost();
    json_decref(f.details);
    for (w = batch; w; w = w->next)
        writes++;
    if (hooks.committed)
        hooks.committed(writes, committed, mono_ms() - t0);
    /* Split the batch first: filing a write as parked (and waking it)
     * relinks w->next into the waiters' lists, so the batch must not be
     * walked through w->next after that. */
    for (w = batch; w;) {
        struct wreq *next = w->next;
        bool merged = w->merged;
        w->next = NULL;
        w->merged = false;
        if (committed && w->parked && !draining) {
            w->parks++;
            w->next = park;
            park = w;
        } else if (!committed && merged) {
            /* woken into a batch that failed: it runs again in the next */
            w->failed = false;
            json_decref(w->err.details);
            w->err = (struct fault){0};
            w->next = woken;
            woken = w;
        } else {
            w->parked = false;
            w->next = done;
            done = w;
        }
        w = next;
    }
    if (committed) {
        const char *topic;
        json_t *v;
        size_t i;

        events_flush(events);
        /* file the parked before waking, so a wake in this batch finds them
         * (they then run again instead of being answered) */
        while (park) {
            w = park;
            park = w->next;
            w->next = NULL;
            wait_add(w);
        }
        json_object_foreach(due, topic, v)
            notifier->publish(topic, json_integer_value(v));
        json_array_foreach(notify, i, v)
            notifier->publish(json_string_value(v), 0);
        if (json_array_size(events)) {
            if (hooks.events)
                hooks.events(events);
            notifier->publish(TOPIC_EVENTS, 0);
        }
    }
    finish_list(done);
    requeue_woken();
    json_decref(events);
    json_decref(notify);
    json_decref(due);
}

/* The periodic maintenance, as one more write of a batch. */
static bool maintain_again;

static int
maintain_fn(struct tx *t, struct wreq *w)
{
    (void)w;
    maintain_again = false;
    return hooks.maintain ? hooks.maintain(t, &maintain_again) : 0;
}

static struct wreq maintainer = {.fn = maintain_fn};
static int64_t next_sweep;          /* writer thread only */

void
writer_maintain_at(int64_t at)
{
    if (at > 0 && at < next_sweep)
        next_sweep = at;
}

static void *
writer_main(void *arg)
{
    (void)arg;
    /* the first maintenance at start: schedules missed while batond was
     * down fire (once each) without waiting for the interval */
    next_sweep = store_clock();
    for (;;) {
        struct wreq *batch = NULL, **tail = &batch, *resume = NULL;
        struct wake *delivered;
        int64_t now;
        int count = 0;
        bool sweeping = false;

        pthread_mutex_lock(&wq_lock);
        while (!wq_head && !wakes && !stopping) {
            int64_t next = wait_next(), t = store_clock();
            struct timespec ts;

            if (!next || next > next_sweep)
                next = next_sweep;
            if (next <= t)
                break;
            ts = ms_timespec(next - clock_offset);
            if (pthread_cond_timedwait(&wq_cond, &wq_lock, &ts) == ETIMEDOUT)
                break;
        }
        if (stopping && !wq_head) {
            pthread_mutex_unlock(&wq_lock);
            break;
        }
        delivered = wakes;
        wakes = NULL;
        while (wq_head && count < MAX_BATCH) {
            struct wreq *w = wq_head;
            wq_head = w->next;
            if (!wq_head)
                wq_tail = NULL;
            w->next = NULL;
            *tail = w;
            tail = &w->next;
            count++;
        }
        pthread_mutex_unlock(&wq_lock);

        apply_wakes(delivered);
        now = store_clock();
        if (draining)
            wait_drain(&resume);
        else
            wait_expire(now, &resume, &woken);
        finish_list(resume);
        requeue_woken();
        if (now >= next_sweep && !draining) {
            sweeping = true;
            *tail = &maintainer;
            tail = &maintainer.next;
            next_sweep = now + cfg.sweep_interval_ms;
        }
        if (batch) {
            run_batch(batch);
            if (sweeping && maintain_again)
                next_sweep = now;   /* a backlog: next chunk right away */
        }
    }
    return NULL;
}

int
writer_submit(struct wreq *w)
{
    pthread_mutex_lock(&wq_lock);
    if (!running || stopping) {
        pthread_mutex_unlock(&wq_lock);
        return -1;
    }
    if (w->queued)
        w->queued(w);
    enqueue_locked(w);
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    return 0;
}

int
writer_run(struct wreq *w)
{
    struct sync_wait s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

    w->sync = &s;
    if (writer_submit(w) < 0) {
        w->sync = NULL;
        w->failed = true;
        w->err.code = "unavailable";
        snprintf(w->err.msg, sizeof w->err.msg, "server is shutting down");
        return -1;
    }
    pthread_mutex_lock(&s.lock);
    while (!s.done)
        pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
    w->sync = NULL;
    return w->failed || w->rc < 0 ? -1 : 0;
}

int
writer_start(char *why, size_t n)
{
    const char *d = getenv("BATON_TEST_COMMIT_DELAY_MS");
    const char *skew = getenv("BATON_TEST_CLOCK_SKEW_MS");

    backoff_ms = BACKOFF_MIN_MS;
    reconnect_at = 0;
    if (store->connect(&wconn, why, n) < 0) {
        /* a database that may come back later (store.h, lost): start
         * without a connection, the first batch tries again */
        if (!store->lost)
            return -1;
        wconn = NULL;
        reconnect_at = mono_ms() + backoff_ms;
    }
    test_commit_delay_ms = d && *d ? atoll(d) : 0;
    if (test_commit_delay_ms > 0)
        log_event("warn", "db.test_hooks_enabled",
                  json_pack("{s:I}", "commitDelayMs", (json_int_t)test_commit_delay_ms));
    if (skew && *skew && atoll(skew))
        log_event("warn", "db.test_hooks_enabled",
                  json_pack("{s:I}", "clockSkewMs", (json_int_t)atoll(skew)));
    running = true;
    stopping = false;
    draining = false;
    if (pthread_create(&writer, NULL, writer_main, NULL)) {
        running = false;
        if (wconn)
            store->disconnect(wconn);
        wconn = NULL;
        snprintf(why, n, "cannot start the writer thread");
        return -1;
    }
    return 0;
}

void
writer_release_waiters(void)
{
    pthread_mutex_lock(&wq_lock);
    draining = true;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
}

void
writer_stop(void)
{
    struct wreq *rest = NULL;

    if (!running)
        return;
    pthread_mutex_lock(&wq_lock);
    draining = stopping = true;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    pthread_join(writer, NULL);
    running = false;
    wait_drain(&rest);
    finish_list(rest);
    while (wakes) {             /* nobody is parked any more */
        struct wake *next = wakes->next;
        free(wakes->topic);
        free(wakes);
        wakes = next;
    }
    if (wconn)
        store->disconnect(wconn);
    wconn = NULL;
}

/* ---- recorded in the tx, applied by the writer if the write commits ---- */

void
tx_park(struct tx *t, struct wreq *w, const char *topic, int64_t deadline, int64_t due)
{
    (void)t;
    free(w->topic);
    w->topic = strdup(topic);
    w->deadline = deadline;
    w->due = due;
    w->parked = true;       /* the writer files it after the commit */
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
