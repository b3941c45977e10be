/* core.h -- the rules of batond and the machinery they run on: the writer
 * (group commit), long-poll parking, the notifier, events, and each
 * resource's state transitions.
 *
 * LAYERS (each calls only the ones below it)
 *   http.c                 libmicrohttpd: connections, limits, SSE, upgrade
 *   routes.c               the route table: method, pattern, auth, kind
 *   *_api.c, batond.h      JSON <-> typed parameters, the HTTP answer
 *   core.h (this)          rules: transitions, fencing, backoff; the writer
 *   store.h                one operation per function over typed rows
 *   store_sqlite*.c        SQLite: SQL, connections, migrations
 * Nothing declared here sees a struct req, a request body or an HTTP
 * status: a failure is a struct fault in the tx (tx_fail), and a write
 * is finished through its wreq's completion callback.
 */
#ifndef BATON_CORE_H
#define BATON_CORE_H

#include "store.h"

/* ---- writer.c: the one writer, group commit ------------------------------
 * Writes are queued as struct wreq. The writer takes every queued write,
 * opens one transaction, runs each write's fn in its own savepoint (a
 * failing one rolls back alone), commits once, and only then prints the
 * batch's events, publishes its wake-ups and calls each write's done. */

struct wreq {
    /* runs on the writer inside a savepoint: 0 keeps its changes, -1 rolls
     * them back; may park the write (tx_park) */
    int (*fn)(struct tx *t, struct wreq *w);
    /* called on the writer thread once the write is over (committed,
     * rolled back, or its batch failed: then `failed` and err say why) */
    void (*done)(struct wreq *w);
    /* may be NULL: false when whoever waits for the write has gone (a
     * woken long-poll then does not run again) */
    bool (*alive)(struct wreq *w);
    /* may be NULL: called by writer_submit once w is certain to be
     * queued, before the writer can see it (e.g. to suspend a connection) */
    void (*queued)(struct wreq *w);
    void *arg;                      /* the submitter's */
    int rc;                         /* fn's last result */
    bool failed;                    /* the batch was not committed */
    struct fault err;               /* why, when failed */

    /* private to the writer */
    struct wreq *next;
    bool parked;
    int64_t deadline, due;
    char *topic;
    void *sync;
};

/* What the writer reports upward, registered once before writer_start. */
struct writer_hooks {
    /* after each transaction: writes it held, committed?, ms BEGIN..COMMIT */
    void (*committed)(size_t writes, bool ok, double ms);
    /* the event lines of a committed batch (printed already) */
    void (*events)(json_t *lines);
    /* periodic maintenance (every BATON_SWEEP_INTERVAL_MS), one bounded
     * chunk per call; *again when more work remains (run again soon) */
    int (*maintain)(struct tx *t, bool *again);
};
void writer_set_hooks(const struct writer_hooks *h);

int writer_start(char *why, size_t n); /* connect, start the thread */
void writer_release_waiters(void);     /* shutdown: answer every parked write */
void writer_stop(void);                /* drain, stop, disconnect */
/* Queue w. -1 when the writer is stopping (w untouched, not queued). */
int writer_submit(struct wreq *w);
/* Queue w and wait until it is over. 0 when fn kept its changes and they
 * committed; -1 otherwise (w->failed / w->err, or fn's own -1). */
int writer_run(struct wreq *w);
/* A wake-up delivered by the notifier (any thread): the writes parked on
 * topic run again now (due 0) or at due. */
void writer_wake(const char *topic, int64_t due);
size_t writer_parked(void);            /* parked long-polls, for /metrics */

/* Inside a write: park w on topic. After the batch commits w is not done
 * but waits until a wake-up on topic, until `due` (ms, 0 = none), or until
 * `deadline` -- then fn runs again as a fresh write (on a wake-up or due
 * time) or w is done (deadline). */
void tx_park(struct tx *t, struct wreq *w, const char *topic, int64_t deadline, int64_t due);
/* After this write commits, wake every write parked on topic. */
void tx_notify(struct tx *t, const char *topic);
/* Something on topic becomes due at `at` (ms): wake its writes then. */
void tx_due(struct tx *t, const char *topic, int64_t at);

/* wait.c: the parked writes (writer thread only) */
void wait_add(struct wreq *w);
void wait_wake(const char *topic, struct wreq **retry);
void wait_note_due(const char *topic, int64_t at);
int64_t wait_next(void);           /* earliest deadline or due time, 0 = none */
void wait_expire(int64_t now, struct wreq **resume, struct wreq **retry);
void wait_drain(struct wreq **resume);
size_t wait_count(void);

/* ---- notify.c: wake-ups between writers ----------------------------------
 * After a commit the writer publishes each topic the batch notified, each
 * due time it recorded, and TOPIC_EVENTS when it recorded events. The
 * notifier delivers them to every process serving the same database --
 * for SQLite only this one, in the same call. */

#define TOPIC_EVENTS "events"

struct notifier {
    const char *name;
    /* deliver(topic, due) is called for every publication (of any
     * process), on any thread */
    int (*start)(void (*deliver)(const char *topic, int64_t due), char *why, size_t n);
    void (*publish)(const char *topic, int64_t due);
    void (*stop)(void);
};
extern const struct notifier *notifier;
extern const struct notifier notifier_local;

/* ---- events.c: every state change as a row and a log line ----------------- */

/* Record a state change inside t: a row in events and, once the batch has
 * committed, one JSON line on stdout. fields (stolen, may be NULL) must not
 * hold secrets; keys that look like secrets are dropped anyway. */
void event_emit(struct tx *t, const char *level, const char *name, json_t *fields);
/* Print the lines collected in a committed batch (the writer). */
void events_flush(json_t *lines);

/* ---- jobs rules (jobs.c) ----------------------------------------------------- */

/* ---- leases rules (leases.c) ------------------------------------------------- */

/* true when channel is listed in BATON_LEASED_CHANNELS */
bool channel_is_leased(const char *channel);
/* The fencing check used by outbound job routes and session writes: 0 when
 * token is the token of a lease on (channel, accountId) that is held and
 * not expired at t->now; otherwise -1 with t->err lease_not_held (with
 * currentOwnerId/currentToken details where a lease exists). */
int lease_fence(struct tx *t, const char *channel, const char *account,
                int64_t token);
/* true when l has an owner and has not expired at now */
bool lease_held(const struct lease *l, int64_t now);

/* The transitions of SPEC section 4. Each returns 0 with *l, the lease
 * after the change, or -1 with t->err set (a refusal in SPEC's words, or a
 * store failure). Refusals that must stay on record return 1 instead of
 * -1: t->err holds the refusal and its event has been recorded, so the
 * caller keeps the write (nothing else was written) and answers from
 * t->err. */

/* Grant the lease to owner for ttl_ms: a new grant with the next token
 * when it is free, released, force-released or expired under another
 * owner (event <channel>.lease.acquire.success); a renewal with the same
 * token when owner holds the latest grant (*after_expiry when that grant
 * had expired and nobody took it since). 1 when another owner holds it:
 * lease_held (currentOwnerId, expiresAt), event acquire.contended. */
int lease_acquire(struct tx *t, const char *channel, const char *account, const char *owner,
                  int64_t ttl_ms, struct lease *l, bool *after_expiry);
/* Renew the grant `token` of owner for ttl_ms (0: the last ttl), even
 * after expiry as long as nobody took it (*after_expiry then). 1 when it
 * is not the latest grant of owner: lease_lost (currentOwnerId,
 * currentToken), event heartbeat.lost. */
int lease_heartbeat(struct tx *t, const char *channel, const char *account, const char *owner,
                    int64_t token, int64_t ttl_ms, struct lease *l, bool *after_expiry);
/* Free the grant `token` of owner (even an expired one nobody took):
 * event <channel>.lease.released. -1 with lease_lost when it is not the
 * latest grant of owner (nothing recorded). */
int lease_release(struct tx *t, const char *channel, const char *account, const char *owner,
                  int64_t token, struct lease *l);
/* Free the lease whoever holds it (event force_released). 0 with *found
 * (false for an account never leased: *l untouched) and *released
 * (whether there was a holder, even an expired one, to free). */
int lease_force_release(struct tx *t, const char *channel, const char *account, struct lease *l,
                        bool *found, bool *released);

/* Create or update an account (event account.updated, without config):
 * 0 with *a (account_clear it) or -1. config as for store_leases. */
int account_set(struct tx *t, const char *channel, const char *account, bool enabled,
                json_t *config, struct account *a);
/* Delete an account (event account.deleted); its lease is kept, so that
 * its token is never reused. -1 with not_found when there is none. */
int account_remove(struct tx *t, const char *channel, const char *account);

/* ---- dedupe rules (dedupe.c) ------------------------------------------------- */

/* Check-and-register an inbound message id inside t (SPEC section 5). An
 * entry whose expiry has passed counts as absent and is replaced. Returns 0
 * with *duplicate (false for the one first call under any concurrency) and
 * *first_seen_at (of the live entry: now when first); -1 with t->err.
 * Emits no event: the caller names it (e.g. <channel>.inbound.dedupe_skipped). */
int dedupe_register(struct tx *t, const char *channel,
                    const char *channel_message_id, int64_t ttl_ms, bool *duplicate,
                    int64_t *first_seen_at);
/* The same with the whole result, recording <channel>.inbound.dedupe_skipped
 * for a duplicate (POST /v1/dedupe). */
int dedupe_check_register(struct tx *t, const char *channel, const char *channel_message_id,
                          int64_t ttl_ms, struct dedupe_result *res);
/* Sweep: delete expired entries (a bounded number per call). 0, or -1
 * with t->err. */
int dedupe_prune(struct tx *t);

/* ---- sessions rules (sessions.c) --------------------------------------------- */

/* ---- messages rules (messages.c) --------------------------------------------- */

/* ---- maintenance (sweep.c) --------------------------------------------------- */

#endif
