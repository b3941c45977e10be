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

struct store_messages;

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
    const struct store_stats *stats;
};

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
