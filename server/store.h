/* store.h -- the storage interface of batond.
 *
 * DESIGN
 * Everything batond keeps goes through one table of operations, struct
 * store_ops: one function per operation over typed structs (a job, a lease,
 * a dedupe result, a session entry), the way a driver interface works. A
 * backend owns its SQL, its connections and its clock; nothing above this
 * header knows which database it runs on. The SQLite backend is
 * store_sqlite*.c; a second backend provides another struct store_ops and
 * is chosen at start (store_select).
 *
 * Connections: the writer owns one write connection (connect) and runs
 * every write of a batch inside one transaction (begin .. commit), each
 * write in its own savepoint. Readers use the calling thread's read
 * connection (reader). Every operation takes a struct tx: the connection,
 * the store's clock at the start of the write (`now`: what decides
 * ownership and due times comes from here, never from another clock) and
 * the fault of the last failure.
 *
 * Errors: an operation returns -1 (or another negative documented value)
 * after setting t->err with tx_fail: "unavailable" when the database cannot
 * be used (busy, full, I/O), "internal" otherwise. Results that are not
 * errors (no such row, a token that does not match) are return values or
 * out-parameters, never faults.
 *
 * This header is the bottom of the layers: it includes only base.h.
 */
#ifndef BATON_STORE_H
#define BATON_STORE_H

#include <stdlib.h>

#include "base.h"

struct sconn;                       /* a backend connection (opaque) */

/* The failure of a write or a read, in the words of SPEC section 2: code
 * is a static snake_case error code ("not_found", "lease_not_held",
 * "unavailable"...), msg a sentence, details (owned, may be NULL) extra
 * members of the error object. The API layer turns it into an answer. */
struct fault {
    const char *code;               /* NULL while nothing failed */
    char msg[512];
    json_t *details;
};

/* One write (inside the writer's batch) or one read. */
struct tx {
    struct sconn *c;                /* the connection it runs on */
    int64_t now;                    /* the store's clock, epoch ms */
    json_t *events;                 /* event lines to print after commit (writes) */
    json_t *notify;                 /* topics to wake after commit (writes) */
    json_t *due;                    /* {topic: ms} due times (writes) */
    struct fault err;
};

/* Record a failure in t (details stolen). Returns -1. */
int tx_fail(struct tx *t, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Forget t's failure (after a caller handled it). */
void tx_clear_fault(struct tx *t);
/* Move t's failure into f (f's old details are dropped). */
void fault_move(struct fault *f, struct tx *t);

/* Make a row's strings its own: copy the n strings *dst[i] (len[i] bytes
 * each; NULL ones stay NULL) into one new allocation, *mem, and point each
 * *dst[i] at its copy (NUL-terminated). -1 when out of memory (*mem NULL,
 * the pointers untouched). Backends use it for the rows they hand out. */
int strings_own(const char **const dst[], const size_t len[], size_t n, void **mem);

/* Backends gather the jobs of expire_locks in one: add each (strings
 * copied), then finish -- *out one allocation (the array, then its
 * strings; NULL when empty) and *n; -1 when out of memory (nothing kept).
 * The list is empty again after finish. */
struct job_expiry;
struct expiry_list {
    struct job_expiry *v;
    size_t n, cap;
    struct text s;
    bool oom;
};
void expiry_add(struct expiry_list *l, int64_t id, const char *queue, const char *worker,
                const char *order_key, int64_t attempts, bool failed);
int expiry_finish(struct expiry_list *l, struct job_expiry **out, size_t *n);

/* The fields of events.insert_set as one JSON parameter, an array of
 * strings (so that the backend stores their bytes unchanged; a flat array:
 * SQLite's json_each reads it at twice the speed of an array of arrays): a
 * new string, caller frees; NULL when out of memory. */
char *event_fields_json(const char *const *fields, size_t n);

/* A read: t gets the calling thread's read connection and the store's
 * clock. -1 with t->err set when no connection could be opened. Call
 * tx_read_end when done (it releases the snapshot and the fault). */
int tx_read(struct tx *t);
void tx_read_end(struct tx *t);

/* ---- migrations: each backend's schema/<backend>/NNN_*.sql ------------- */

struct migration {
    const char *name;               /* "001_core.sql" */
    const char *sql;
};

/* ---- resource operations: typed rows ------------------------------------
 * Each resource's operations are a table of their own, filled by the
 * backend; the sections below are in the order of the layers above them. */

/* ---- jobs ---------------------------------------------------------------- */

/* A job's state; as text "pending", "processing", "completed", "failed". */
enum job_status { JOB_PENDING, JOB_PROCESSING, JOB_COMPLETED, JOB_FAILED };

static inline const char *
job_status_name(enum job_status s)
{
    static const char *const names[] = {"pending", "processing", "completed", "failed"};

    return names[s];
}

#define JOB_NONE INT64_MIN          /* an absent time (locked_until, started_at...) */

/* One row of jobs. Strings are NULL when absent; payload and result are
 * JSON text. The strings live in mem (malloc'ed by the store, freed with
 * job_free) -- except for the rows a listing hands to its callback, whose
 * strings are only valid during the call (mem NULL). */
struct job {
    int64_t id;
    const char *queue;
    enum job_status status;
    const char *payload;
    int64_t priority, run_at, attempts, max_attempts;
    const char *locked_by;          /* the worker of the latest claim */
    int64_t locked_until;           /* JOB_NONE unless processing */
    const char *claim_token;        /* the current (or, once completed, last) claim's */
    int64_t started_at, completed_at;
    const char *error_reason, *error_message;
    const char *result;
    int64_t created_at, updated_at;
    const char *dedupe_key, *conversation_id, *message_id;
    const char *order_key;          /* NULL: not ordered */
    bool held;                      /* waits behind an earlier job of its order key */
    const char *rate_key;           /* NULL: only the queue's own rate limit applies */
    void *mem;
};

static inline void
job_free(struct job *j)
{
    free(j->mem);
    j->mem = NULL;
}

/* What an insert needs (strings borrowed; the optional ones may be NULL). */
struct job_new {
    const char *queue, *payload;    /* payload: JSON text */
    int64_t priority, run_at, max_attempts;
    const char *dedupe_key, *conversation_id, *message_id;
    const char *order_key;          /* NULL: not ordered */
    const char *rate_key;           /* NULL: no key limit applies */
};

/* A rate limit: at most `limit` claims in any window of period_ms,
 * judged by t->now (a sliding window over the recorded claims: see
 * store_queues). limit 0: none. */
struct rate_limit {
    int64_t limit, period_ms;
};

/* The figures of one queue for /v1/queues. */
struct job_queue_stats {
    const char *queue;
    int64_t counts[4];              /* by enum job_status */
    int64_t oldest_due;             /* min run_at of due pending jobs, JOB_NONE when none */
    int64_t stale;                  /* processing jobs whose lock has expired */
};

/* A job the stale sweep took back (store_jobs.expire_locks). */
struct job_expiry {
    int64_t id;
    const char *queue;
    const char *worker;             /* locked_by of the lost claim; NULL when none */
    const char *order_key;          /* NULL: not ordered */
    int64_t attempts;               /* claims so far (unchanged by the sweep) */
    bool failed;                    /* no attempt was left: failed; else requeued */
};

/* Filters of a listing: NULL / -1 for "any". */
struct job_filter {
    const char *queue;
    int status;                     /* an enum job_status or -1 */
    int64_t before_id;              /* only ids below this (a cursor) */
    int64_t limit;
};

/* Ordered keys. Among the active (pending or processing) jobs of one queue
 * with the same order_key exactly one holds the key (held false); the
 * others wait behind it (held true) and are never claimed. A job without a
 * key always holds itself. insert: a new keyed job holds its key when no
 * active job of the key exists. complete and fail_final: when the job left
 * had a key and no active job of the key holds it any more, the earliest
 * (lowest id) waiting one takes it -- a pending job whose run_at is still
 * to come keeps holding it, so a delayed or retrying job holds back the
 * jobs behind it. retry: the job holds its key unless another active job
 * of the key does. fail_retry, unclaim and requeue_expired keep the job
 * holding its key. So claim needs no look at keys: it takes the best job
 * that holds its key, an indexed lookup whatever the number of waiting
 * jobs, and jobs without keys cost what they did.
 *
 * Every jobs operation. "Due", "expired" and every time written come from
 * t->now. Operations that fill a struct job *out (may be NULL) fill it
 * with the row as it is after the operation; the caller job_free()s it.
 * Counts returned as 1/0: 1 done (a row matched), 0 no row matched. */
struct store_jobs {
    /* A new pending job (created_at = updated_at = now). 0 and *id; -1. */
    int (*insert)(struct tx *t, const struct job_new *n, int64_t *id, struct job *out);
    /* The job id: 1 found, 0 none, -1. */
    int (*get)(struct tx *t, int64_t id, struct job *out);
    /* The newest not-completed job of queue holding dedupe key: 1 with *id, 0 none, -1. */
    int (*find_dedupe)(struct tx *t, const char *queue, const char *key, int64_t *id);
    /* The next job of queue in claim order (priority DESC, run_at, id) among
     * the due pending ones holding their key (not held) and the processing
     * ones whose lock has expired.
     * A pending one is claimed at once: processing, locked_by = worker,
     * locked_until = lock_until, claim_token = token, attempts + 1,
     * started_at = now; returns 1 with *out. An expired one is not touched:
     * returns 2 with *out, for the caller to take back (requeue_expired or
     * fail) before it claims again. 0 when none, -1. key_rate (NULL: none)
     * passes over the pending jobs whose rate_key has had key_rate->limit
     * claims recorded (queues->rate_record) in the window ending at now. */
    int (*claim)(struct tx *t, const char *queue, const char *worker, int64_t lock_until,
                 const char *token, const struct rate_limit *key_rate, struct job *out);
    /* The earliest time after now something of queue becomes claimable: a
     * pending run_at > now of a job not held, or an expiry of a lock (locked_until + 1). 0 and
     * *due (0 = none); -1. */
    int (*next_due)(struct tx *t, const char *queue, int64_t *due);
    /* Transitions of the claim holding token (processing, claim_token =
     * token); 1 done, 0 no such claim, -1. heartbeat: locked_until. complete:
     * completed, completed_at = now, the lock cleared, result (JSON text or
     * NULL), the claim token kept. fail_retry: back to pending at run_at, the
     * lock, worker and token cleared, the error recorded. unclaim: the claim
     * undone (pending, attempts - 1, started_at, lock, worker, token
     * cleared). */
    int (*heartbeat)(struct tx *t, int64_t id, const char *token, int64_t lock_until, struct job *out);
    int (*complete)(struct tx *t, int64_t id, const char *token, const char *result, struct job *out);
    int (*fail_retry)(struct tx *t, int64_t id, const char *token, int64_t run_at, const char *reason,
                    const char *message, struct job *out);
    int (*unclaim)(struct tx *t, int64_t id, const char *token, struct job *out);
    /* Terminally failed (token NULL: whatever its state, else only the
     * claim holding token): the lock and token cleared, the error set. */
    int (*fail_final)(struct tx *t, int64_t id, const char *token, const char *reason,
                      const char *message, struct job *out);
    /* A processing job whose lock has expired back to pending, run_at
     * unchanged, lock, worker and token cleared, error lock_expired. */
    int (*requeue_expired)(struct tx *t, int64_t id, struct job *out);
    /* The operator's retry: pending now, lock, worker and token cleared,
     * max_attempts raised to attempts + 1 when needed. */
    int (*retry)(struct tx *t, int64_t id, struct job *out);
    /* The stale sweep, set-based: of the processing jobs whose lock
     * expired before now, the first max by expiry (locked_until, then id)
     * are taken back in a few statements whatever their number -- the
     * ones with attempts < max_attempts requeued as requeue_expired does,
     * the others failed as fail_final(token NULL, "lock_expired",
     * message) does, their keys passed on (store.h: ordered keys). *out
     * gets them in that order, each as it was before (worker: the lost
     * claim's, NULL when it had none) and what became of it; one
     * allocation with the strings, free() it (NULL when *n is 0). *more
     * when other expired locks remain. On PostgreSQL the jobs taken are
     * locked with SKIP LOCKED: two replicas sweeping at once take
     * disjoint sets. 0 or -1 (t->err). */
    int (*expire_locks)(struct tx *t, size_t max, const char *message, struct job_expiry **out,
                        size_t *n, bool *more);
    /* Delete up to max completed jobs with completed_at < before; *n
     * deleted, *more when others remain. 0 or -1. */
    int (*prune)(struct tx *t, int64_t before, size_t max, size_t *n, bool *more);
    /* Listings: each(row, arg) per job (the row's strings borrowed for the
     * call; a non-zero return stops, and is returned). list: newest first,
     * filtered; pending: pending and processing jobs of queue (NULL: every
     * queue), oldest first, at most limit. 0, -1, or each's result. */
    int (*list)(struct tx *t, const struct job_filter *f, int (*each)(const struct job *j, void *arg),
                void *arg);
    int (*pending)(struct tx *t, const char *queue, int64_t limit,
                   int (*each)(const struct job *j, void *arg), void *arg);
    /* Every queue with jobs, by name, to each (borrowed for the call). */
    int (*queues)(struct tx *t, int (*each)(const struct job_queue_stats *q, void *arg), void *arg);
};

/* ---- end of jobs ---- */

/* ---- leases ---------------------------------------------------------------- */

#define LEASE_KEY_MAX 100           /* channel and accountId (ID_MAX) */
#define LEASE_OWNER_MAX 200         /* ownerId */

/* A lease of (channel, account): created by the first grant, never
 * deleted, so its token never goes back. Held while owner is set and
 * now < expires_at; expiry is never written, it is judged with the
 * store's clock. */
struct lease {
    char channel[LEASE_KEY_MAX + 1];
    char account[LEASE_KEY_MAX + 1];
    char owner[LEASE_OWNER_MAX + 1];    /* "" when released */
    int64_t token;                      /* fencing token of the latest grant */
    int64_t acquired_at;                /* ms, the latest grant */
    int64_t renewed_at;                 /* ms, the last grant or renewal */
    int64_t expires_at;                 /* ms; the release time once released */
    int64_t ttl_ms;                     /* of the last grant or renewal */
    int64_t transitions;                /* grants with a new token so far */
};

/* An entry of the accounts registry. */
struct account {
    char channel[LEASE_KEY_MAX + 1];
    char account[LEASE_KEY_MAX + 1];
    bool enabled;
    json_t *config;                     /* an object, owned: account_clear */
    int64_t created_at, updated_at;     /* ms, first and latest put */
};

/* Drop what a filled struct account owns. */
static inline void
account_clear(struct account *a)
{
    json_decref(a->config);
    a->config = NULL;
}

/* Listings call each once per row, in order; a row is borrowed for the
 * call. each returns 0 to go on, -1 to stop (the listing then returns -1
 * with whatever each put in t->err). */
typedef int (*lease_each_fn)(struct tx *t, const struct lease *l, void *arg);
typedef int (*account_each_fn)(struct tx *t, const struct account *a, void *arg);

/* Every operation that changes a lease is conditional, so that of
 * concurrent callers on separate connections exactly one succeeds; they
 * return 1 when they changed the lease (*l: the lease after), 0 when their
 * condition did not hold (nothing changed, *l untouched), -1 on error. */
struct store_leases {
    /* The lease of (channel, account): 1 with *l, 0 when never granted. */
    int (*get)(struct tx *t, const char *channel, const char *account, struct lease *l);
    /* The lease as get gives it, read by a write that is fenced by its
     * token (lease_fence): until t's transaction ends no other connection
     * can change it (a grant, renewal or release there waits), so the
     * lease the write was allowed by is still the latest when it commits.
     * 1 with *l, 0 when never granted. */
    int (*fence)(struct tx *t, const char *channel, const char *account, struct lease *l);
    /* A new grant to owner for ttl_ms from t->now, with the next token
     * (1 for the first grant) and transitions + 1 -- only when the lease
     * is not held at t->now (never granted, released, force-released or
     * expired). Tokens come from the lease row, which is never deleted:
     * they never go back, across releases and restarts. */
    int (*grant)(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t ttl_ms, struct lease *l);
    /* Renew the grant `token` of owner as long as it is still the latest
     * grant and not released -- and, when while_held, only if it has not
     * expired at t->now: renewed_at = t->now, expires_at = t->now + ttl,
     * ttl_ms = ttl where ttl is ttl_ms, or the stored ttl_ms when ttl_ms
     * is 0. */
    int (*renew)(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t token, int64_t ttl_ms, bool while_held, struct lease *l);
    /* Release the grant `token` of owner: owner cleared, expires_at =
     * t->now; the token stays. */
    int (*release)(struct tx *t, const char *channel, const char *account, const char *owner,
                   int64_t token, struct lease *l);
    /* Release the lease whoever holds it (an owner is set, expired or
     * not): as release. */
    int (*force_release)(struct tx *t, const char *channel, const char *account, struct lease *l);
    /* The leases held at t->now (owner set, not expired), by channel then
     * account; owner and channel (NULL: any) narrow it. 0 or -1. */
    int (*list_held)(struct tx *t, const char *owner, const char *channel, lease_each_fn each, void *arg);

    /* The account: 1 with *a (account_clear it), 0 when absent. */
    int (*account_get)(struct tx *t, const char *channel, const char *account, struct account *a);
    /* Create or update the account at t->now: enabled, and config when not
     * NULL (an object, borrowed; a new account without one gets {}).
     * *created says whether it was new. 0 with *a (the account after;
     * account_clear it) or -1. */
    int (*account_put)(struct tx *t, const char *channel, const char *account, bool enabled,
                       json_t *config, struct account *a, bool *created);
    /* Accounts by channel then account id; channel NULL: every channel;
     * enabled -1: both, 0 or 1: only those. 0 or -1. */
    int (*account_list)(struct tx *t, const char *channel, int enabled, account_each_fn each, void *arg);
    /* 1 deleted, 0 absent, -1 error. The account's lease is kept. */
    int (*account_delete)(struct tx *t, const char *channel, const char *account);
};

/* ---- end of leases ---- */

/* ---- dedupe ---------------------------------------------------------------- */

/* The live entry of a message id after a check-and-register. */
struct dedupe_result {
    bool duplicate;                     /* false for the call that registered it */
    int64_t first_seen_at;              /* ms, when the live entry was registered */
    int64_t expires_at;                 /* ms, when it is forgotten */
};

struct store_dedupe {
    /* Check-and-register (channel, id) at t->now for ttl_ms: insert it, or
     * replace an entry that has expired at t->now (it counts as absent),
     * and leave a live entry alone. Of concurrent callers on separate
     * connections exactly one sees duplicate false. 0 with *res, or -1. */
    int (*check_register)(struct tx *t, const char *channel, const char *id, int64_t ttl_ms,
                          struct dedupe_result *res);
    /* Delete up to limit entries expired at t->now, oldest expiry first;
     * *deleted says how many. 0 or -1. */
    int (*prune)(struct tx *t, int64_t limit, int64_t *deleted);
};

/* ---- end of dedupe ---- */

/* ---- sessions ---------------------------------------------------------------- */

/* One entry of an account's session store (SPEC section 6) as it is kept:
 * the store sees only bytes -- the compact JSON text of the value, or its
 * ciphertext -- and their format; encoding and encryption are the rules'
 * (sessions.c). Entry names are not secret and are kept in clear. */
struct session_entry {
    const char *channel;            /* "whatsapp" */
    const char *account;            /* the accountId */
    const char *key;                /* the entry name */
    int enc;                        /* format of value: 0 = JSON text in clear,
                                     * 1 = nonce || AEAD ciphertext of it */
    const unsigned char *value;     /* the stored bytes (may hold NULs);
                                     * NULL in a listing without values */
    size_t len;                     /* bytes of value as stored */
    int64_t updated_at;             /* ms, the last write of this entry */
};

/* Called for each entry of a listing, in key order. e and its strings and
 * bytes are the store's, valid only during the call. A non-zero result
 * stops the listing, which returns it. */
typedef int (*session_visit)(const struct session_entry *e, void *arg);

/* The operations; channel, account and key are names of 1..512 bytes of
 * valid UTF-8 (checked by the rules). */
struct store_sessions {
    /* The entry (channel, account, key) into *e: 1 when found (e->value is
     * a new allocation, caller frees; e's names point at the arguments),
     * 0 when there is none, -1 on error. */
    int (*get)(struct tx *t, const char *channel, const char *account, const char *key,
               struct session_entry *e);
    /* Every entry of (channel, account) in key order to fn, with its bytes
     * when values, else with value NULL and len the stored size. 0 when
     * all were visited, fn's non-zero result, or -1 on error. */
    int (*list)(struct tx *t, const char *channel, const char *account, bool values,
                session_visit fn, void *arg);
    /* Insert the entry, or replace the one with the same names (enc,
     * value and updated_at as given). 0 or -1. */
    int (*put)(struct tx *t, const struct session_entry *e);
    /* Delete one entry: 1 when it existed, 0 when not, -1 on error. */
    int (*del)(struct tx *t, const char *channel, const char *account, const char *key);
    /* Delete every entry of (channel, account); *deleted gets how many.
     * Other accounts are untouched. 0 or -1. */
    int (*clear)(struct tx *t, const char *channel, const char *account, int64_t *deleted);
};

/* ---- end of sessions ---- */

/* ---- messages ---------------------------------------------------------------- */

/* One message of a conversation. A row read from the store owns its
 * strings and payload (store->messages->clear / free_rows releases them);
 * a row given to insert only borrows them. */
struct message {
    int64_t id;                     /* > 0, in insertion order: orders a conversation */
    const char *conversation;
    const char *channel;            /* web | telegram | whatsapp | ... */
    const char *account;
    const char *direction;          /* "in" | "out" */
    const char *channel_message_id; /* in: the dedupe key; out: the channel's id once sent; or NULL */
    const char *sender;             /* "from", or NULL */
    const char *recipient;          /* "to", or NULL */
    const char *text;               /* never NULL in a row read ("" when none) */
    json_t *payload;                /* channel details, or NULL */
    const char *status;             /* received | queued | sent | failed */
    const char *delivery;           /* the channel's last delivery report, or NULL */
    const char *error;              /* why a send failed, or NULL */
    int64_t job_id;                 /* in: the agent job answering it; out: its send job; 0 = none */
    int64_t created_at;             /* ms, the store's clock */
    int64_t sent_at;                /* ms; 0 = not sent */
    /* get and list only, for an inbound message: the agent job answering
     * it (all NULL when there is none any more, and for outbound ones) */
    const char *reply_state;        /* the job's status */
    const char *reply_partial;      /* the reply so far, only while the claim that
                                     * reported it is the job's current claim */
    const char *reply_error;        /* the job's errorReason */
    void *mem;                      /* the backend's, for what the row owns */
};

/* A conversation as listed: its channel and account (of one of its
 * messages), how many messages it has, its last message id and time. */
struct conversation {
    const char *id, *channel, *account;
    int64_t messages, last_id, last_at;
    void *mem;
};

/* What changes whenever anything shown of a conversation changes: its last
 * message id, the count of progress reports on its messages and the last
 * change (ms) of a job answering one of them. */
struct conversation_rev {
    int64_t last_id, progress, job_changed;
};

/* Every op returns -1 with t->err set on a store failure. The ops that
 * change rows by a key other than the id give the rows they changed as
 * *out / *n (a new array, free with free_rows; n may be 0), with only id,
 * conversation, channel and account filled in. */
struct store_messages {
    /* Insert m: m->id and m->created_at are set (to t->now), and sent_at
     * too when status is "sent". The strings are copied. 0 or -1. */
    int (*insert)(struct tx *t, struct message *m);
    /* Record the job of message id. 0 (also when there is no such
     * message) or -1. */
    int (*set_job)(struct tx *t, int64_t id, int64_t job_id);
    /* The result of sending outbound message id: status "sent" (sent_at =
     * t->now, channel_message_id replaces the recorded one when not NULL,
     * delivery "sent" unless a report came first) or "failed" (delivery
     * "failed"); error is recorded as given. 1 with *conversation (may be
     * NULL; a new string, caller frees) of the message, 0 when there is no
     * outbound message id, -1. */
    int (*set_status)(struct tx *t, int64_t id, const char *status, const char *channel_message_id,
                      const char *error, char **conversation);
    /* A delivery report (sent | delivered | read | failed) for the
     * outbound messages of channel that the channel knows as
     * channel_message_id: delivery is set; "failed" also fails the message
     * and records error; a queued message becomes sent; sent_at is set if
     * it was not. Inbound messages and other channels are untouched. The
     * changed rows go to *out / *n. 0 or -1. */
    int (*set_delivery)(struct tx *t, const char *channel, const char *channel_message_id,
                        const char *delivery, const char *error, struct message **out, size_t *n);
    /* A progress report of claim token of job_id: the partial reply (text)
     * of the inbound message(s) that job answers, counted in the
     * conversation's revision. The changed rows go to *out / *n. 0 or -1. */
    int (*set_partial)(struct tx *t, int64_t job_id, const char *token, const char *text,
                       struct message **out, size_t *n);
    /* Message id with its reply state into *out (clear it). 1, 0 when
     * there is no such message, -1. */
    int (*get)(struct tx *t, int64_t id, struct message *out);
    /* At most limit messages of conversation with an id above after, in
     * id order, with their reply state. 0 or -1. */
    int (*list_after)(struct tx *t, const char *conversation, int64_t after, int64_t limit,
                      struct message **out, size_t *n);
    /* The revision of conversation (all 0 when it has no message). 0/-1. */
    int (*rev)(struct tx *t, const char *conversation, struct conversation_rev *out);
    /* At most limit conversations (of channel when not NULL), the one with
     * the latest message first. 0 or -1. */
    int (*conversations)(struct tx *t, const char *channel, int64_t limit,
                         struct conversation **out, size_t *n);
    /* Release what rows read by the ops own. */
    void (*clear)(struct message *m);
    void (*free_rows)(struct message *v, size_t n);         /* each row and v */
    void (*free_conversations)(struct conversation *v, size_t n);
};

/* ---- end of messages ---- */

/* ---- events ---------------------------------------------------------------- */

/* One row of the events table. In a visit the strings are borrowed: they
 * live until the visitor returns. */
struct event_row {
    int64_t id;                     /* increasing; the SSE event id */
    int64_t time;                   /* epoch ms */
    const char *level;              /* debug | info | warn | error */
    const char *name;               /* dotted, e.g. agent.job.claimed */
    const char *fields;             /* JSON object text, never secrets */
};

/* A field filter: the event's field `key`, as text, equals `value` (true
 * is "1", false "0"; objects and arrays never match). */
struct event_field {
    const char *key, *value;
};
#define EVENT_MAX_FIELDS 8

/* Which events a listing visits. Zero is "no bound" for every member but
 * until (INT64_MAX: none) and limit (required). */
struct event_query {
    int64_t after;                  /* ids > after */
    int64_t before;                 /* ids < before; 0 = no bound */
    const char *exact;              /* name = exact, when non-empty */
    const char *lo, *hi;            /* lo <= name < hi, when lo is non-empty */
    int64_t since, until;           /* since <= time <= until */
    const struct event_field *fields; /* all must match */
    size_t nfields;                 /* at most EVENT_MAX_FIELDS */
    int64_t limit;                  /* at most this many rows, > 0 */
    bool newest_first;              /* id descending; else ascending */
};

/* Called for each row of a listing, in order: 0 goes on, anything else
 * stops the listing (which still returns 0). */
typedef int (*event_visit)(const struct event_row *e, void *arg);

/* Gauges read at scrape time (GET /metrics) and the health check. They
 * read what other resources own, so they are a table of their own. */
struct queue_count {
    const char *queue;
    const char *status;             /* queued | processing | completed | failed ... */
    int64_t count;
};
struct lease_gauge {
    const char *channel, *account;
    const char *owner;              /* "" when nobody holds it */
    bool held;                      /* an owner holds it, unexpired at t->now */
    int64_t transitions;            /* times the holder changed */
    int64_t token;                  /* the fencing token of the latest grant */
};

struct store_stats {
    /* 0 when the database answers a trivial read; -1 with t->err */
    int (*ping)(struct tx *t);
    /* jobs by queue and status: fn for each (strings borrowed); 0 or -1 */
    int (*queue_counts)(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg);
    /* processing jobs whose lock expired before t->now, by queue (status
     * is "processing"); 0 or -1 */
    int (*stale_counts)(struct tx *t, void (*fn)(const struct queue_count *q, void *arg), void *arg);
    /* every lease, held judged at t->now; 0 or -1 */
    int (*lease_gauges)(struct tx *t, void (*fn)(const struct lease_gauge *l, void *arg), void *arg);
    /* inbound message ids remembered (expired or not); 0 or -1 */
    int (*dedupe_entries)(struct tx *t, int64_t *n);
    /* bytes the database takes and its write-ahead log (0 when the
     * backend has none); 0 or -1 */
    int (*sizes)(struct tx *t, int64_t *db, int64_t *wal);
};

struct store_events {
    /* Record e (its id is ignored) inside t's write; *id (may be NULL)
     * gets the new row's id. 0 or -1. */
    int (*insert)(struct tx *t, const struct event_row *e, int64_t *id);
    /* Record n events of one time, level and name, whose fields are
     * fields[0..n) (JSON object texts, stored byte for byte), inside t's
     * write with one statement whatever n is, in their order (increasing
     * ids). 0 or -1. */
    int (*insert_set)(struct tx *t, int64_t time, const char *level, const char *name,
                      const char *const *fields, size_t n);
    /* Visit the events q selects, in id order (q->newest_first: newest
     * first), at most q->limit. 0, or -1 with t->err (a query the backend
     * cannot run -- too many field filters -- is "internal"). */
    int (*list)(struct tx *t, const struct event_query *q, event_visit fn, void *arg);
    /* The newest event's id, 0 when there is none. 0 or -1. */
    int (*last_id)(struct tx *t, int64_t *id);
    /* Delete at most max (> 0) of the events older than `before` (epoch
     * ms), oldest first. *deleted gets how many went, *more whether older
     * ones remain. 0 or -1. */
    int (*prune)(struct tx *t, int64_t before, int64_t max, int64_t *deleted, bool *more);
};

/* ---- end of events ---- */

/* ---- queues: the operator's settings of a queue ---------------------------- */

#define QUEUE_NAME_MAX   200        /* a queue name (JOBS_QUEUE_MAX) */
#define QUEUE_BY_MAX     100        /* who changed it: a client address */
#define QUEUE_REASON_MAX 500        /* bytes of the operator's reason */

/* The settings of one queue. A queue without a row has the defaults
 * (not paused). */
struct queue_settings {
    char queue[QUEUE_NAME_MAX + 1];
    bool paused;                    /* no claims are handed out */
    int64_t paused_at;              /* ms, the pause in force; 0 when not paused */
    char paused_by[QUEUE_BY_MAX + 1];   /* "" when not paused */
    char reason[QUEUE_REASON_MAX + 1];  /* "" when none or not paused */
    bool limits_set;                /* rate and key_rate were set (else the defaults apply) */
    struct rate_limit rate;         /* the queue's claims */
    struct rate_limit key_rate;     /* the claims of each rate key of the queue */
    int64_t updated_at;             /* ms, the last change of the row */
};

/* Every op returns -1 with t->err set on a store failure. */
struct store_queues {
    /* The settings of queue into *out: 1 when it has a row, 0 when not
     * (*out is then the defaults, with its name), -1. One read by key:
     * every claim makes it. */
    int (*get)(struct tx *t, const char *queue, struct queue_settings *out);
    /* Pause queue (by and reason may be NULL) or resume it (by and
     * reason ignored). A pause of a paused queue and a resume of a queue
     * that is not paused change nothing and return 0; otherwise the row is
     * written (paused_at = updated_at = t->now on a pause; a resume clears
     * paused_at, paused_by and reason) and 1 is returned. *out (may be
     * NULL) gets the settings after the call. -1. */
    int (*set_paused)(struct tx *t, const char *queue, bool paused, const char *by,
                      const char *reason, struct queue_settings *out);
    /* Every queue with a row, by name, to each (s borrowed for the call; a
     * non-zero result stops the listing and is returned). 0 or -1. */
    int (*list)(struct tx *t, int (*each)(const struct queue_settings *s, void *arg), void *arg);
    /* Set the limits of queue (set false: back to the defaults, rate and
     * key_rate ignored), keeping its pause. *out (may be NULL) gets the
     * settings after. 0 or -1. */
    int (*set_limits)(struct tx *t, const char *queue, bool set, const struct rate_limit *rate,
                      const struct rate_limit *key_rate, struct queue_settings *out);

    /* Rate buckets: the claims of a limited queue (key "") or rate key,
     * one record each, judged by t->now. rate_record: a claim at t->now,
     * and the bucket's records older than period_ms go. rate_free_at: *at
     * = 0 when the bucket has fewer than l->limit records in the window
     * (now - period, now], else the time it frees (the limit-th newest
     * record + period). rate_keys_free_at: the earliest time one of the
     * queue's rate keys that has due pending jobs (not held) frees, among
     * those limited at now by l; 0 none. rate_prune: delete at most max
     * records made before `before`; *n how many, *more whether some
     * remain. All 0 or -1. */
    int (*rate_record)(struct tx *t, const char *queue, const char *key, int64_t period_ms);
    int (*rate_free_at)(struct tx *t, const char *queue, const char *key,
                        const struct rate_limit *l, int64_t *at);
    int (*rate_keys_free_at)(struct tx *t, const char *queue, const struct rate_limit *l, int64_t *at);
    int (*rate_prune)(struct tx *t, int64_t before, size_t max, size_t *n, bool *more);
};

/* ---- end of queues ---- */


/* ---- schedules ------------------------------------------------------------ */

/* A schedule: a job of queue with payload enqueued at each due time, by a
 * cron expression (UTC) or every every_ms. Strings as for struct job: in
 * mem (schedule_free) for a row read, borrowed for an insert or in a
 * listing's callback. */
struct schedule {
    const char *name, *queue;
    const char *payload;            /* JSON text */
    const char *cron;               /* NULL for an every_ms schedule */
    const char *timezone;           /* "UTC" */
    int64_t every_ms;               /* 0 for a cron schedule */
    bool paused;
    int64_t next_run;               /* ms: the next due time */
    int64_t last_run;               /* ms: the due time last fired, JOB_NONE before any */
    int64_t last_job_id;            /* the job it enqueued then, 0 before any */
    int64_t runs;                   /* due times fired so far */
    int64_t created_at, updated_at;
    void *mem;
};

static inline void
schedule_free(struct schedule *s)
{
    free(s->mem);
    s->mem = NULL;
}

/* Every schedules operation; times written come from t->now. */
struct store_schedules {
    /* A new schedule (paused, next_run as given; runs 0, no last run,
     * created_at = updated_at = now). 1 created, 0 the name is taken
     * (nothing changed), -1. */
    int (*insert)(struct tx *t, const struct schedule *s);
    /* The schedule name: 1 with *out (schedule_free), 0 none, -1. */
    int (*get)(struct tx *t, const char *name, struct schedule *out);
    /* Every schedule by name to each (borrowed for the call; a non-zero
     * return stops and is returned). 0, -1 or each's result. */
    int (*list)(struct tx *t, int (*each)(const struct schedule *s, void *arg), void *arg);
    /* Delete it: 1 done, 0 none, -1. */
    int (*del)(struct tx *t, const char *name);
    /* Pause or resume it, next_run set to next_run: 1, 0 none, -1. */
    int (*set_paused)(struct tx *t, const char *name, bool paused, int64_t next_run);
    /* The unpaused schedule with the earliest next_run <= now: 1 with *out
     * (schedule_free), 0 none, -1. */
    int (*due)(struct tx *t, struct schedule *out);
    /* A due time fired: only while next_run is still `from` (so of two
     * writers exactly one fires it) next_run = to, last_run = from,
     * last_job_id = job_id, runs + 1. 1 done, 0 not (fired already,
     * deleted), -1. */
    int (*advance)(struct tx *t, const char *name, int64_t from, int64_t to, int64_t job_id);
    /* The earliest next_run of an unpaused schedule: 0 with *at (0 when
     * there is none), -1. */
    int (*earliest)(struct tx *t, int64_t *at);
};

/* ---- end of schedules ---- */

/* ---- the backend --------------------------------------------------------- */

/* ---- several processes on one database ------------------------------------
 * What a backend that several batond processes (replicas) share provides
 * besides its operations: wake-ups between the processes and the election
 * of the one that runs the periodic maintenance. NULL in store_ops when one
 * process serves a database alone (SQLite): then the in-process notifier is
 * all there is and that process maintains. */
struct store_replicas {
    /* Open the store's own connection (after open) and start its thread:
     * deliver(topic, due) for each publication of another process, and
     * deliver(NULL, 0) when some may have been missed -- the connection was
     * lost or is not used (a periodic re-check until it is back) -- so
     * every parked wait must look again. Runs the maintainer election.
     * 0; -1 with a reason in why (nothing started). */
    int (*start)(void (*deliver)(const char *topic, int64_t due), char *why, size_t n);
    /* In the writer's transaction, just before COMMIT (t on the write
     * connection): hand wakes, {topic: due ms, 0 for now}, to the other
     * processes, which receive them if and only if the transaction
     * commits. 0; -1 with t->err when they could not be queued (the
     * transaction is unharmed: it is run in a savepoint by the caller). */
    int (*publish)(struct tx *t, json_t *wakes);
    /* true when this process is the elected maintainer; *elected (may be
     * NULL) true the first time it is asked after this process took the
     * role. Any thread. */
    bool (*maintainer)(bool *elected);
    void (*stop)(void);             /* stop the thread, close its connection */
};

struct store_ops {
    const char *name;               /* "sqlite" */

    /* Open the database named by cfg.db_path (creating it), lock it for
     * this process and apply the missing migrations. 0; -1 on error, -2
     * when another batond holds it, -3 when it is newer than this binary.
     * why gets a one-line reason. */
    int (*open)(char *why, size_t n);
    /* After the last connection is gone: checkpoint, unlock, close. */
    void (*close)(void);

    /* A write connection (the writer's; tests open several). */
    int (*connect)(struct sconn **c, char *why, size_t n);
    void (*disconnect)(struct sconn *c);
    /* The calling thread's read connection, opened on first use, closed
     * when the thread ends; NULL when it cannot be opened. */
    struct sconn *(*reader)(void);
    /* A read on c is over: release what it holds (statements, snapshot). */
    void (*read_done)(struct sconn *c);

    /* The clock every write uses (epoch ms). */
    int64_t (*now)(struct sconn *c);

    /* The writer's transaction: begin, one savepoint per write (release
     * keeps it, rollback_to undoes it), commit or rollback. aborted says
     * whether the backend rolled the whole transaction back by itself
     * (disk full, I/O error, a lost connection): nothing of the batch
     * is kept and no more of it may run. begin and commit set f on
     * failure. */
    int (*begin)(struct sconn *c, struct fault *f);
    int (*savepoint)(struct sconn *c);
    int (*release)(struct sconn *c);
    int (*rollback_to)(struct sconn *c);
    bool (*aborted)(struct sconn *c);
    int (*commit)(struct sconn *c, struct fault *f);
    void (*rollback)(struct sconn *c);
    /* After a failed batch (both may be NULL: never). lost: the
     * connection cannot be used any more; its owner disconnects and
     * connects again. conflict: the batch lost a conflict with another
     * writer (a serialization failure, a deadlock) and nothing of it was
     * kept: running it again may succeed. A backend with lost set may
     * also be open while its database is down: connect fails until it is
     * back. */
    bool (*lost)(struct sconn *c);
    bool (*conflict)(struct sconn *c);

    /* Periodic upkeep of the file (sweep.c), NULL when the backend needs
     * none (PostgreSQL: its autovacuum). Inside t's write, when more than
     * `keep` pages of the file are free, give at most max of them back to
     * the file system (SQLite: incremental_vacuum; the file shrinks at the
     * next checkpoint), so that the file follows the data down after
     * retention deletes. *freed how many; *more when more than keep are
     * still free. 0 or -1. */
    int (*shrink)(struct tx *t, int64_t keep, int64_t max, int64_t *freed, bool *more);

    const struct store_jobs *jobs;
    const struct store_leases *leases;
    const struct store_dedupe *dedupe;
    const struct store_sessions *sessions;
    const struct store_messages *messages;
    const struct store_events *events;
    const struct store_queues *queues;
    const struct store_stats *stats;    /* gauges of /metrics, the health check */
    const struct store_schedules *schedules;
    const struct store_replicas *replicas;  /* NULL: one process per database */
};

/* The backend in use (set by store_select before anything else). */
extern const struct store_ops *store;
extern const struct store_ops store_sqlite;
extern const struct store_ops store_pg;
/* Choose the backend for cfg.db_path: PostgreSQL (store_pg) for a
 * postgres:// or postgresql:// URL, SQLite for anything else (a path).
 * 0; -1 with a reason when the backend cannot be used. */
int store_select(char *why, size_t n);
/* cfg.db_path as logs may show it: a URL's password (user:PASSWORD@ or
 * password=...) replaced by ***. */
void store_describe(char *out, size_t n);

#endif
