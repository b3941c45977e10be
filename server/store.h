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

struct store_jobs;

/* ---- end of jobs ---- */

/* ---- leases ---------------------------------------------------------------- */

struct store_leases;

/* ---- end of leases ---- */

/* ---- dedupe ---------------------------------------------------------------- */

struct store_dedupe;

/* ---- end of dedupe ---- */

/* ---- sessions ---------------------------------------------------------------- */

struct store_sessions;

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

struct store_events;

/* ---- end of events ---- */


/* ---- the backend --------------------------------------------------------- */

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

    const struct store_jobs *jobs;
    const struct store_leases *leases;
    const struct store_dedupe *dedupe;
    const struct store_sessions *sessions;
    const struct store_messages *messages;
    const struct store_events *events;
};

/* The backend in use (set by store_select before anything else). */
extern const struct store_ops *store;
extern const struct store_ops store_sqlite;
/* Choose the backend for cfg.db_path: SQLite for a path. -1 with a reason
 * when the path names a backend this build does not have. */
int store_select(char *why, size_t n);

#endif
