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
    /* times the write was parked by a batch that committed: a write that
     * does something before it parks (complete-and-next) must not do it
     * again when it runs after a wake-up (0 on every run of its first
     * batch, retries of a conflict included) */
    unsigned parks;

    /* private to the writer */
    struct wreq *next;
    bool parked;
    bool merged;                    /* woken into the batch that woke it */
    int64_t deadline, due;
    char *topic;
    void *sync;
    uint64_t run_seq;               /* when fn last ran, in the writer's count */
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
 * topic run again now (due 0) or at due (the store's clock); topic NULL:
 * every parked write runs again. */
void writer_wake(const char *topic, int64_t due);
/* The store's clock minus this process's (ms), as the writer measured it
 * at its last transaction: 0 for SQLite, the replica's skew from the
 * database on PostgreSQL. Parked deadlines and due times are on the
 * store's clock; add this to a now_ms() time to compare with them. */
int64_t writer_clock_offset(void);
size_t writer_parked(void);            /* parked long-polls, for /metrics */
/* Writer thread only (inside a write): run the maintenance hook no later
 * than at (ms), rather than at the next BATON_SWEEP_INTERVAL_MS -- a
 * schedule's due time. */
void writer_maintain_at(int64_t at);

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
void wait_wake(const char *topic, struct wreq **retry);   /* NULL: all */
void wait_note_due(const char *topic, int64_t at);
int64_t wait_next(void);           /* earliest deadline or due time, 0 = none */
void wait_expire(int64_t now, struct wreq **resume, struct wreq **retry);
void wait_drain(struct wreq **resume);
size_t wait_count(void);
/* true when every write parked on topic last ran after run_seq `after`. */
bool wait_fresh(const char *topic, uint64_t after);

/* ---- notify.c: wake-ups between writers ----------------------------------
 * The writer publishes each topic the batch notified, each due time it
 * recorded, and TOPIC_EVENTS when it recorded events: to the other
 * processes serving the same database inside the batch's transaction
 * (publish_tx, so they hear of it if and only if it commits), and to this
 * one after the commit (publish). notifier_local serves one process alone
 * (SQLite); notifier_replicas adds the store's wake-ups between processes
 * (store->replicas). serve.c picks one. */

#define TOPIC_EVENTS "events"

struct notifier {
    const char *name;
    /* deliver(topic, due) is called for every publication (of any
     * process), on any thread; deliver(NULL, 0) when publications may
     * have been missed: every waiter must look again */
    int (*start)(void (*deliver)(const char *topic, int64_t due), char *why, size_t n);
    /* NULL for notifier_local. In the batch's transaction, before COMMIT:
     * wakes is {topic: due ms, 0 = now}, one entry per topic. 0; -1 with
     * t->err (the caller runs it in a savepoint: the batch still commits,
     * the other processes' waits then end at their deadline). */
    int (*publish_tx)(struct tx *t, json_t *wakes);
    /* after the commit: deliver in this process */
    void (*publish)(const char *topic, int64_t due);
    void (*stop)(void);
};
extern const struct notifier *notifier;
extern const struct notifier notifier_local, notifier_replicas;

/* ---- events.c: every state change as a row and a log line ----------------- */

/* Record a state change inside t: a row in events and, once the batch has
 * committed, one JSON line on stdout. fields (stolen, may be NULL) must not
 * hold secrets; keys that look like secrets are dropped anyway. */
void event_emit(struct tx *t, const char *level, const char *name, json_t *fields);
/* Record n state changes of one level and name at once inside t (the
 * stale sweep), whose fields are fields[0..n) (compact JSON object texts
 * without secrets -- they are not scrubbed -- and without _time, level or
 * event members): rows at t->now with one statement (events.insert_set),
 * and for each the line event_emit would print, {"_time":..,"level":..,
 * "event":..,<its fields' members>}, built as text without a JSON object:
 * t->events gets them as one element [name, n, "lines"] (see
 * event_lines_count). A failed insert does not fail t (as event_emit). */
void event_emit_set(struct tx *t, const char *level, const char *name, const char *const *fields, size_t n);
/* An element of a batch's lines: *name and how many events it is (1 for a
 * line object of event_emit, the count of a run of event_emit_set). */
size_t event_lines_count(json_t *l, const char **name);
/* Print the lines collected in a committed batch (the writer). */
void events_flush(json_t *lines);
/* The event as the API shows it (new reference): its fields with id (a
 * string), time (ms), _time (RFC 3339), level and event. */
json_t *event_row_json(const struct event_row *e);
/* An event name filter: "a.b" is exact, "a.b.*" the name range [lo, hi).
 * Each buffer gets "" when unused. -1 when name is too long for n or is
 * not an event name or prefix. */
int event_filter(const char *name, char *exact, char *lo, char *hi, size_t n);
/* true when every field filter {field: text} matches the event's JSON,
 * compared as text as the store compares them (see struct event_field). */
bool event_matches(json_t *event, json_t *filters);

/* ---- jobs rules (jobs.c) ----------------------------------------------------- */

#define JOBS_QUEUE_MAX      200
#define JOBS_NAME_MAX       200             /* workerId, dedupeKey, conversation/message ids */
#define JOBS_TOKEN_MAX      64
#define JOBS_BAD_QUEUE "field 'queue' must be 1-200 characters of letters, digits, '.', '_', ':' or '-'" \
                       " (outbound queues: outbound.<channel>.<accountId>)"

/* 1-200 chars of [A-Za-z0-9._:-]; "outbound.*" must name channel and account. */
bool jobs_queue_valid(const char *queue);
/* The job as GET /v1/jobs/{id} shows it (new reference; NULL when out of
 * memory). */
json_t *job_json(const struct job *j);

/* Insert a job into queue (or find the not-completed job holding
 * dedupe_key there, then *duplicate = true), emit the enqueued event and
 * wake or schedule the queue's parked claimers. payload is borrowed;
 * dedupe_key, conversation_id and message_id may be NULL. *job_out (may be
 * NULL) receives a new reference to the job's JSON, which the caller
 * decrefs. Returns 0, or -1 with t->err set (tx_fail). */
int jobs_insert(struct tx *t, const char *queue, json_t *payload,
                int64_t priority, int64_t delay_ms, int64_t max_attempts,
                const char *dedupe_key, const char *conversation_id, const char *message_id,
                json_t **job_out, bool *duplicate);
/* The options of a job beyond its queue and payload (strings borrowed,
 * each may be NULL). order_key: the jobs of the queue with the same key
 * are claimed one at a time, in enqueue order (see store.h, "Ordered
 * keys"); rate_key: the key whose limit (the queue's keyRate) paces its
 * claims. Both not empty when given -- the API allows 1..JOBS_NAME_MAX
 * bytes, the server's own keys may be longer. */
struct job_opts {
    int64_t priority, delay_ms, max_attempts;
    const char *dedupe_key, *conversation_id, *message_id;
    const char *order_key, *rate_key;
};
/* jobs_insert with every option. */
int jobs_insert_opts(struct tx *t, const char *queue, json_t *payload, const struct job_opts *o,
                 json_t **job_out, bool *duplicate);

/* Claims refused since start because a rate limit was reached (the
 * queue's, or every due job's key's): /metrics. */
uint64_t jobs_claims_deferred_by_rate(void);

/* A claim (strings borrowed). */
struct job_claim {
    const char *queue, *worker;
    int64_t lock_ms;
    bool has_lease;                 /* leaseToken given (outbound queues of leased channels) */
    int64_t lease_token;
    int64_t deadline;               /* wait until then when nothing is there; 0 = no wait */
    /* out: the job handed out and its claim token */
    int64_t claimed;
    char token[JOBS_TOKEN_MAX + 1];
};
/* Hand the best available job of c->queue to c->worker: a due pending job,
 * or one whose lock has expired (taken back first: requeued, or failed when
 * no attempt is left and the next one looked for). Returns 1 with *job_out
 * (new reference) and c->claimed / c->token; 0 when there is none -- then
 * w is parked on the queue until c->deadline (when set and not passed),
 * woken by a job that becomes available or due; also 0, with nothing
 * claimed, when whoever waits for w has gone (w->alive). -1 with t->err. */
int job_claim(struct tx *t, struct wreq *w, struct job_claim *c, json_t **job_out);
/* A claim whose answer never reached its client: give the job back,
 * unless something changed it since. 0 (also when nothing was undone), -1. */
int job_unclaim(struct tx *t, int64_t id, const char *token);

/* A worker's call on the job it claimed (strings borrowed): the job must
 * still be processing under worker's claim token (else "not_found" or
 * "claim_lost"), and for an outbound queue of a leased channel the lease
 * token must be current (lease_fence). */
struct job_work {
    int64_t id;
    const char *worker, *token;
    bool has_lease;
    int64_t lease_token;
};
/* Extend the lock to now + lock_ms. 0 with *job_out, -1. */
int job_heartbeat(struct tx *t, const struct job_work *w, int64_t lock_ms, json_t **job_out);
/* Completed with result (borrowed; NULL = none) and run the completed hook
 * with reply (borrowed, may be NULL). A repeated completion of the same
 * claim answers the job again. 0 with *job_out, -1. */
int job_complete(struct tx *t, const struct job_work *w, json_t *result, json_t *reply,
                 json_t **job_out);
/* A failure: retried after a backoff (at least retry_after_ms) when
 * retryable and attempts are left, else final. message may be NULL.
 * 0 with *job_out, -1. */
int job_fail(struct tx *t, const struct job_work *w, const char *reason, const char *message,
             bool retryable, int64_t retry_after_ms, json_t **job_out);
/* A progress report: fenced like a heartbeat, handed to the progress hook. */
int job_progress(struct tx *t, const struct job_work *w, const char *text);
/* The operator's calls. retry: a failed or processing job pending again
 * now ("conflict" otherwise); fail_now: any job not yet completed or
 * failed, failed with reason / message ("conflict" otherwise; cancel is
 * fail_now with reason "cancelled"). 0 with *job_out, -1. */
int job_retry(struct tx *t, int64_t id, json_t **job_out);
int job_fail_now(struct tx *t, int64_t id, const char *reason, const char *message, json_t **job_out);

/* Requeue processing jobs whose lock has expired (or fail them with
 * lock_expired when attempts are exhausted), appending their ids (strings)
 * to requeued / failed when those are not NULL. With more NULL every
 * expired lock is handled; otherwise one chunk, and *more says whether
 * another remains. 0 or -1 (t->err set). */
int jobs_expire_locks(struct tx *t, json_t *requeued, json_t *failed, bool *more);
/* The stale sweep and retention: jobs_expire_locks, then delete completed
 * jobs older than BATON_RETENTION_MS (a chunk; *more, when not NULL, also
 * says whether more of them remain). 0 or -1 (t->err set). */
int jobs_sweep(struct tx *t, json_t *requeued, json_t *failed, bool *more);

/* What another module does inside a job's own transaction, so that jobs.c
 * calls nothing above it: the messages module registers these at start
 * (messages_init). completed: after a job was marked completed (result and
 * reply may be NULL; reply is an object when given); failed: after a job
 * became terminally failed; progress: a progress report of the claim
 * `token` of job `job_id` (text borrowed). job is the job's JSON as GET
 * shows it (borrowed). Each returns 0, or -1 with t->err set (tx_fail) to
 * roll the whole write back. A NULL member does nothing. */
struct jobs_hooks {
    int (*completed)(struct tx *t, json_t *job, json_t *result, json_t *reply);
    int (*failed)(struct tx *t, json_t *job);
    int (*progress)(struct tx *t, int64_t job_id, const char *token, const char *text);
};
/* Set the hooks (h is kept, not copied; static storage). Before any request. */
void jobs_set_hooks(const struct jobs_hooks *h);

/* ---- queue controls (queues.c) ----------------------------------------------- */

#define QUEUE_RATE_LIMIT_MAX  10000     /* claims in one window */
#define QUEUE_RATE_PERIOD_MAX 86400000  /* ms: a window of a day at most */

/* The settings in force for queue (a valid name): its row, or the defaults
 * (not paused), with queue_default_limits when its limits were never set.
 * One read by key; job_claim calls it first. 0 or -1 with t->err. */
int queue_settings_load(struct tx *t, const char *queue, struct queue_settings *s);
/* The limits a queue has until some are set: the documented pacing of the
 * Telegram and WhatsApp APIs for their outbound queues, none otherwise. */
void queue_default_limits(const char *queue, struct rate_limit *rate, struct rate_limit *key_rate);
/* Set the limits of queue: rate (its claims) and key_rate (the claims of
 * each of its rate keys), each NULL for none, limit 1..QUEUE_RATE_LIMIT_MAX
 * and period 1..QUEUE_RATE_PERIOD_MAX ms; set false goes back to the
 * defaults. Records <queue>.queue.limits_set {queue, rate, default, by}
 * and wakes the queue's parked claimers. 0 with *s (the settings after);
 * -1 with t->err (bad_request naming the field). */
int queue_set_limits(struct tx *t, const char *queue, bool set, const struct rate_limit *rate,
                     const struct rate_limit *key_rate, const char *by, struct queue_settings *s);
/* {queue, rate: [{limit, periodMs, byKey}...], default} (new reference). */
json_t *queue_limits_json(const struct queue_settings *s);
/* Pause / resume queue (a valid queue name; reason: at most
 * QUEUE_REASON_MAX bytes, may be NULL; by: who asked, may be NULL). The
 * pause is recorded with t->now, by and reason, and event
 * <queue>.queue.paused {queue, by, reason?}; a resume clears it, records
 * <queue>.queue.resumed {queue, by, reason?} and wakes the queue's parked
 * claimers. Pausing a paused queue or resuming a running one changes
 * nothing (*changed false, no event). 0 with *s, the settings after the
 * call; -1 with t->err (bad_request for a bad name or reason). */
int queue_pause(struct tx *t, const char *queue, const char *by, const char *reason,
                struct queue_settings *s, bool *changed);
int queue_resume(struct tx *t, const char *queue, const char *by, const char *reason,
                 struct queue_settings *s, bool *changed);
/* The settings as the API shows them (new reference): queue, paused,
 * pausedAt, pausedBy, pausedReason (null when not paused), rate (as
 * queue_limits_json). */
json_t *queue_settings_json(const struct queue_settings *s);

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

/* ---- schedules rules (cron.c, schedules.c) ------------------------------------ */

/* A parsed five-field cron expression: a bit per allowed value of minute,
 * hour, day-of-month, month and day-of-week (0 and 7 Sunday). */
struct cron {
    uint64_t bits[5];
    bool dom_star, dow_star;        /* day-of-month / day-of-week was '*' */
};
/* Parse expr. 0, or -1 with a reason in why that names the field
 * ("cron minute field: '61' ..."), or says it has not five fields. */
int cron_parse(const char *expr, struct cron *c, char *why, size_t n);
/* The first time (ms, UTC, a whole minute) strictly after `after` that c
 * matches; -1 when none within eight years. */
int64_t cron_next(const struct cron *c, int64_t after);

#define SCHEDULE_NAME_MAX   100
#define SCHEDULE_EVERY_MIN  1000
/* What a new schedule is (strings and payload borrowed). */
struct schedule_new {
    const char *name, *queue, *cron, *timezone;     /* cron NULL: every_ms */
    json_t *payload;
    int64_t every_ms;
    bool paused;
};
/* The schedule as the API shows it (new reference). */
json_t *schedule_json(const struct schedule *s);
/* Create a schedule (event schedules.<name>.created). "bad_request" when a
 * field is wrong (nothing written), "conflict" when the name is taken.
 * 0 with *out (new reference), -1. */
int schedule_create(struct tx *t, const struct schedule_new *n, json_t **out);
/* Delete, pause, resume (events deleted, paused, resumed): "not_found"
 * when there is none. Resume sets the next due time after now (missed due
 * times are not made up). 0 with *out (may be NULL; the schedule after,
 * null for a deletion), -1. */
int schedule_remove(struct tx *t, const char *name);
int schedule_pause(struct tx *t, const char *name, bool paused, json_t **out);
/* The maintenance: fire the due schedules (a bounded number; *more when
 * others remain), each one job with dedupe key schedule:<name>:<due ms>
 * and its next due time after now -- so due times missed while batond was
 * down give one job, not one each -- and ask the writer to run again at
 * the earliest next due time. 0 or -1. */
int schedules_run(struct tx *t, bool *more);

/* ---- maintenance (sweep.c) --------------------------------------------------- */

/* Periodic maintenance run by the writer every BATON_SWEEP_INTERVAL_MS (its
 * maintain hook), in bounded chunks: *again says whether work remained, and
 * the writer then runs the next chunk at once (behind the queued writes). */
int sweep_run(struct tx *t, bool *again);

#endif
