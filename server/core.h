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

/* Decode BATON_SESSION_KEY (when set) into locked memory and wipe the text
 * of cfg.session_key (the pointer stays set). -1 with a one-line reason in
 * why when it is not 32 bytes in hex or base64. */
int sessions_init(char *why, size_t n);
void sessions_free(void);           /* wipe the key */

/* NULL when s is an acceptable channel / accountId / entry name (valid
 * UTF-8 without control characters, of bounded length; no '/' in a channel
 * or accountId, no '.' in a channel), else why not ("must not be empty"). */
const char *session_bad_channel(const char *s);
const char *session_bad_account(const char *s);
const char *session_bad_key(const char *s);

/* One change of a write: set key to a value as encoded by session_encode,
 * or delete key (data NULL). */
struct session_op {
    const char *key;                /* borrowed */
    unsigned char *data;            /* the stored bytes (owned: free); NULL: delete */
    size_t len;
    int enc;
};

/* A write to one account's entries: its changes, applied in order, and the
 * lease token when one was given (has_token). */
struct session_write {
    const char *channel, *account;  /* borrowed */
    bool has_token;
    int64_t token;
    struct session_op *ops;
    size_t nops;
};

/* Encode value (borrowed) as entry key of (channel, account) is stored into
 * op (a set of key): its compact JSON text, sealed with a fresh nonce when
 * BATON_SESSION_KEY is set. 0; -1 with *why a static reason ("is larger
 * than 1 MiB") and op untouched. */
int session_encode(const char *channel, const char *account, const char *key, json_t *value,
                   struct session_op *op, const char **why);

/* Reads (t from tx_read). The value of one entry (new reference): 0; -1
 * with t->err not_found, undecryptable (stored encrypted without the key
 * that sealed it, or tampered with), or the store's fault. */
int session_get(struct tx *t, const char *channel, const char *account, const char *key,
                json_t **value);
/* Every entry of (channel, account) as {key: value} (new object): 0; -1
 * with t->err undecryptable listing every such entry in
 * details.undecryptable, or the store's fault. */
int session_get_all(struct tx *t, const char *channel, const char *account, json_t **entries);
/* The size of an entry's value as JSON text (a listed entry's len less
 * the nonce and tag of a sealed one). */
int64_t session_size(const struct session_entry *e);

/* Writes, inside one savepoint: each first checks the lease token when
 * given (lease_fence: 409 lease_not_held changes nothing), then applies
 * w's changes and records its event (names and counts, never values).
 * 0; -1 with t->err. put: one set (ops[0]); remove: one delete, *deleted
 * when the entry existed; batch: every op, counting sets and deletions
 * that found an entry; clear: every entry of the account (w->ops unused). */
int session_put(struct tx *t, const struct session_write *w);
int session_remove(struct tx *t, const struct session_write *w, bool *deleted);
int session_batch(struct tx *t, const struct session_write *w, int64_t *nset, int64_t *ndel);
int session_clear(struct tx *t, const struct session_write *w, int64_t *deleted);
/* transitional: the lease fence (leases.c), until the leases rules are
 * declared in their own section above; the same declaration as there */
int lease_fence(struct tx *t, const char *channel, const char *account, int64_t token);

/* ---- messages rules (messages.c) --------------------------------------------- */

/* ---- maintenance (sweep.c) --------------------------------------------------- */

#endif
