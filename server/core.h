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

/* ---- dedupe rules (dedupe.c) ------------------------------------------------- */

/* ---- sessions rules (sessions.c) --------------------------------------------- */

/* ---- messages rules (messages.c) --------------------------------------------- */

/* One inbound message as the channels deliver it (all strings borrowed). */
struct inbound {
    const char *channel, *account, *channel_message_id, *conversation, *from, *text;
    json_t *payload;            /* channel details, may be NULL */
};

/* Dedupe + message + agent job inside the caller's write. *dup is set
 * when the message had been seen (nothing written but the event). */
int inbound_apply(struct tx *t, const struct inbound *in, bool *dup,
                  int64_t *msg_id, json_t **job_out);
/* A delivery report (sent|delivered|read|failed) for an outbound message
 * the channel knows as channel_message_id. Returns 1 when one matched, 0
 * when none did, -1 on error (t->err set). */
int messages_delivery(struct tx *t, const char *channel,
                      const char *channel_message_id, const char *delivery, const char *error);
/* An outbound message (strings borrowed) and, except on the web channel
 * where it is final at once (sent), the job that sends it, inside the
 * caller's write. *msg_id gets the message's id, *job_out (may be NULL) a
 * new reference to the job's JSON, or NULL for a web message. 0 or -1. */
int messages_send(struct tx *t, const char *channel, const char *account, const char *to,
                  const char *text, json_t *payload, const char *conversation,
                  int64_t *msg_id, json_t **job_out);
/* The topic notified whenever anything shown of conversation changes. */
void messages_topic(const char *conversation, char *buf, size_t n);
/* Register the jobs hooks: a completion with a reply writes the outbound
 * message and its job, a final failure marks the message, progress keeps
 * the partial reply on the inbound message. Called by modules_init. */
void messages_init(void);

/* ---- maintenance (sweep.c) --------------------------------------------------- */

#endif
